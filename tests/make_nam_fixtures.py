"""Make the ``.nam`` fixtures in tests/data/nam/ and NAM's own outputs for them (run by hand, not by the tests).

The fixtures are written and evaluated by the real ``neural-amp-modeler`` package, two releases of it, each
in its own virtual environment (never pedalchain's: NAM pins its own dependencies)::

    python3 -m venv /tmp/namvenv    && /tmp/namvenv/bin/pip install torch==2.13.0 neural-amp-modeler==0.13.0
    python3 -m venv /tmp/namvenv010 && /tmp/namvenv010/bin/pip install torch==2.13.0 \\
        neural-amp-modeler==0.10.0 "setuptools<81" requests
    .venv/bin/python tests/make_nam_fixtures.py --old-python /tmp/namvenv010/bin/python \\
        --new-python /tmp/namvenv/bin/python

* NAM 0.10.0 writes format 0.5.4 (the layout of the A1 WaveNets most community captures use): an
  A1-standard-shaped WaveNet, a nano one, a small gated one with a post-stack head, and a standard LSTM.
  The WaveNet references are that package's forward pass; each file is also rebuilt from its JSON with
  the package's own constructor + ``import_weights`` and must reproduce the reference (0.10.0 does not
  import post-stack head weights, so the file with a head is checked against the in-memory model only).
* NAM 0.13.0 writes format 0.7.0: a WaveNet using the 0.7 extras (bottleneck, grouped convs, layer1x1
  off, head1x1, per-array head kernels, gated/blended/Leaky activations, a post-stack head), an A1 standard
  WaveNet in the 0.7 layout, a 2-layer LSTM and two Linear models.  Every reference is the output of the
  model that 0.13.0's ``init_from_nam`` builds from the file, i.e. what the file means.  The 0.5.4 LSTM's
  reference also comes from 0.13.0 (0.10.0 cannot import LSTM weights).

Weights are NAM's own random initialisation under fixed seeds.  The input is 1 s at 48 kHz (seed 0): noise
with a loudness swell, a 110 Hz tone and a silent gap.  Outputs go to ``reference.safetensors``
(``input`` and one float32 tensor per fixture name; no pickles), written by this driver in pedalchain's
venv, which has safetensors; the NAM stages hand their arrays over as ``.npy`` files (no pickles either).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "data" / "nam"
SAMPLE_RATE = 48_000
SECONDS = 1.0


def make_input() -> np.ndarray:
    """(samples,) float32: seeded noise under a swell, a 110 Hz tone, 50 ms of silence near the end."""
    rng = np.random.default_rng(0)
    n = int(SAMPLE_RATE * SECONDS)
    t = np.arange(n) / SAMPLE_RATE
    swell = 0.05 + 0.45 * (0.5 - 0.5 * np.cos(2 * np.pi * 2 * t))
    x = 0.5 * rng.standard_normal(n) * swell + 0.3 * np.sin(2 * np.pi * 110 * t)
    x[int(0.9 * n) : int(0.95 * n)] = 0.0
    return np.clip(x, -1, 1).astype(np.float32)


# -- stages (run inside a NAM venv; import only numpy, torch and nam) --------------------------------------------------
A1_STANDARD_05 = [
    {"input_size": 1, "condition_size": 1, "channels": 16, "head_size": 8, "kernel_size": 3,
     "dilations": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], "activation": "Tanh", "gated": False, "head_bias": False},
    {"condition_size": 1, "input_size": 16, "channels": 8, "head_size": 1, "kernel_size": 3,
     "dilations": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], "activation": "Tanh", "gated": False, "head_bias": True},
]
NANO_05 = [
    {"input_size": 1, "condition_size": 1, "channels": 4, "head_size": 2, "kernel_size": 3,
     "dilations": [1, 2, 4, 8, 16, 32, 64], "activation": "Tanh", "gated": False, "head_bias": False},
    {"condition_size": 1, "input_size": 4, "channels": 2, "head_size": 1, "kernel_size": 3,
     "dilations": [128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512], "activation": "Tanh", "gated": False,
     "head_bias": True},
]
GATED_HEAD_05 = [
    {"input_size": 1, "condition_size": 1, "channels": 6, "head_size": 4, "kernel_size": 2,
     "dilations": [1, 2, 4, 8, 16], "activation": "Tanh", "gated": True, "head_bias": True},
]


def _to_05(layer_arrays: list[dict]) -> list[dict]:
    return [dict(lc) for lc in layer_arrays]


def _to_07(layer_arrays_05: list[dict]) -> list[dict]:
    """0.13.0 init config of the same networks (per-array head instead of head_size/head_bias)."""
    out = []
    for lc in layer_arrays_05:
        out.append({
            "input_size": lc["input_size"], "condition_size": lc["condition_size"], "channels": lc["channels"],
            "head": {"out_channels": lc["head_size"], "kernel_size": 1, "bias": lc["head_bias"]},
            "kernel_sizes": lc["kernel_size"], "dilations": lc["dilations"], "activation": lc["activation"],
        })
    return out


EXTRAS_07 = {
    "layers_configs": [
        {
            "input_size": 1, "condition_size": 1, "channels": 6, "bottleneck": 4,
            "head": {"out_channels": 3, "kernel_size": 2, "bias": True},
            "kernel_sizes": [3, 2, 3, 3], "dilations": [1, 3, 9, 27],
            "activation": [
                "Tanh",
                {"name": "PairMultiply", "primary": "Tanh", "secondary": "Sigmoid"},
                {"name": "LeakyReLU", "negative_slope": 0.1},
                {"name": "PairBlend", "primary": "Tanh", "secondary": "Sigmoid"},
            ],
            "groups_input": 2,
            "layer_1x1_config": {"active": True, "groups": 2},
            "head_1x1_config": {"active": True, "out_channels": 3, "groups": 1},
        },
        {
            "input_size": 6, "condition_size": 1, "channels": 3,
            "head": {"out_channels": 2, "kernel_size": 3, "bias": False},
            "kernel_sizes": 3, "dilations": [2, 5, 11], "activation": "Hardtanh",
            "layer_1x1_config": {"active": False, "groups": 1},
        },
    ],
    "head": {"channels": 4, "activation": "Tanh", "out_channels": 1, "kernel_sizes": [2, 3]},
    "head_scale": 0.5,
}


def _forward(model, x: np.ndarray) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)[None]).numpy()[0].astype(np.float32)


def stage_old(work: Path) -> None:
    """NAM 0.10.0: 0.5.4 files and references."""
    import nam
    import torch
    from nam.models.recurrent import LSTM
    from nam.models.wavenet import WaveNet

    x = np.load(work / "input.npy", allow_pickle=False)
    report = {"nam_version": nam.__version__}
    cases = [
        ("wavenet_a1_standard_0_5", A1_STANDARD_05, None, 0.02, 1),
        ("wavenet_nano_0_5", NANO_05, None, 0.02, 2),
        ("wavenet_gated_head_0_5", GATED_HEAD_05,
         {"in_channels": 4, "channels": 5, "activation": "ReLU", "num_layers": 2, "out_channels": 1}, 0.3, 3),
    ]
    for name, layers, head, head_scale, seed in cases:
        torch.manual_seed(seed)
        model = WaveNet(layers_configs=_to_05(layers), head_config=head, head_scale=head_scale, sample_rate=48000)
        model.export(work, basename=name)
        y = _forward(model, x)
        np.save(work / f"{name}.npy", y)
        data = json.loads((work / f"{name}.nam").read_text())
        entry = {"version": data["version"], "weights": len(data["weights"]),
                 "receptive_field": model.receptive_field, "rms_out": float(np.sqrt(np.mean(y**2)))}
        if head is None:  # rebuild from the file with the package's own code
            rebuilt = WaveNet(layers_configs=data["config"]["layers"], head_config=data["config"]["head"],
                              head_scale=data["config"]["head_scale"], sample_rate=data["sample_rate"])
            rebuilt.import_weights(data["weights"])
            entry["rebuilt_max_abs_diff"] = float(np.max(np.abs(_forward(rebuilt, x) - y)))
        report[name] = entry
    torch.manual_seed(4)
    lstm = LSTM(hidden_size=24, num_layers=1, sample_rate=48000)
    lstm.export(work, basename="lstm_standard_0_5")
    report["lstm_standard_0_5"] = {"version": json.loads((work / "lstm_standard_0_5.nam").read_text())["version"]}
    (work / "report_old.json").write_text(json.dumps(report, indent=1))


def stage_new(work: Path) -> None:
    """NAM 0.13.0: 0.7.0 files, and references of every file its init_from_nam reads (incl. the 0.5.4 LSTM)."""
    import nam
    import torch
    from nam.models import init_from_nam
    from nam.models.linear import Linear
    from nam.models.recurrent import LSTM
    from nam.models.wavenet import WaveNet

    x = np.load(work / "input.npy", allow_pickle=False)
    report = {"nam_version": nam.__version__}

    def reference(name: str) -> None:
        data = json.loads((work / f"{name}.nam").read_text())
        model = init_from_nam(data)
        y = _forward(model, x)
        np.save(work / f"{name}.npy", y)
        report[name] = {"version": data["version"], "weights": len(data["weights"]),
                        "receptive_field": model.receptive_field, "rms_out": float(np.sqrt(np.mean(y**2)))}

    torch.manual_seed(5)
    model = WaveNet.init_from_config({**EXTRAS_07, "sample_rate": 48000})
    model.export(work, basename="wavenet_extras_0_7")
    reference("wavenet_extras_0_7")
    torch.manual_seed(6)
    model = WaveNet.init_from_config({"layers_configs": _to_07(A1_STANDARD_05), "head": None, "head_scale": 0.02,
                                      "sample_rate": 48000})
    model.export(work, basename="wavenet_a1_standard_0_7")
    reference("wavenet_a1_standard_0_7")
    torch.manual_seed(7)
    LSTM(hidden_size=8, num_layers=2, sample_rate=48000).export(work, basename="lstm_2layer_0_7")
    reference("lstm_2layer_0_7")
    reference("lstm_standard_0_5")
    for name, bias, seed in (("linear_0_7", False, 8), ("linear_bias_0_7", True, 9)):
        torch.manual_seed(seed)
        Linear(receptive_field=32, bias=bias, sample_rate=44100).export(work, basename=name)
        reference(name)
    (work / "report_new.json").write_text(json.dumps(report, indent=1))


# -- driver (pedalchain's venv) ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-python", help="interpreter of a venv with neural-amp-modeler==0.10.0")
    parser.add_argument("--new-python", help="interpreter of a venv with neural-amp-modeler==0.13.0")
    parser.add_argument("--stage", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        (stage_old if args.stage == "old" else stage_new)(Path(args.work))
        return 0
    if not (args.old_python and args.new_python):
        parser.error("--old-python and --new-python are required")
    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x = make_input()
        np.save(work / "input.npy", x)
        for python, stage in ((args.old_python, "old"), (args.new_python, "new")):
            subprocess.run([python, __file__, "--stage", stage, "--work", str(work)], check=True)
        HERE.mkdir(parents=True, exist_ok=True)
        tensors = {"input": x}
        for path in sorted(work.glob("*.nam")):
            data = json.loads(path.read_text())
            data["metadata"].pop("date", None)  # keep the committed files stable between runs
            (HERE / path.name).write_text(json.dumps(data))
            tensors[path.stem] = np.load(work / f"{path.stem}.npy", allow_pickle=False)
        save_file(tensors, str(HERE / "reference.safetensors"),
                  metadata={"sample_rate": str(SAMPLE_RATE), "made_by": "tests/make_nam_fixtures.py"})
        (HERE / "reference.safetensors").chmod(0o644)  # safetensors writes it owner-only
        report = {"old": json.loads((work / "report_old.json").read_text()),
                  "new": json.loads((work / "report_new.json").read_text())}
        (HERE / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
