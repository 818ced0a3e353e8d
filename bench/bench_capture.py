"""Benchmark: `chain train emulator` captures against NAM's trainer, judged on real recordings not used for training.

    .venv/bin/python bench/bench_capture.py [--cases lowpass-1k,fuzz] [--nam-python /tmp/namvenv/bin/python]
                                            [--budget-scale 1.0] [--nam-cap-s 300]

(``/tmp/namvenv``: ``python3 -m venv /tmp/namvenv && /tmp/namvenv/bin/pip install torch==2.13.0
neural-amp-modeler==0.13.0``.)  For every case (a capture preset and an ESR bound from issue 4):

1. ``chain train emulator --target PRESET --minutes M --target-esr BOUND/3 --threads 1`` trains on the built-in
   excitation only; wall time and the child's CPU time are measured.
2. Unseen test audio: Debian ``sonic-pi-samples`` (CC0) files listed in :data:`TEST_FILES`, each resampled to
   48 kHz, mono, peak −1 dBFS, then the same files again 20 dB quieter, 0.2 s of silence between.  The preset
   renders the target; the saved model file (loaded with ``load_model``) renders the prediction; the figure is
   the plain whole-file ESR ``Σ(y − ŷ)² / Σy²`` (no pre-emphasis), and the model's whole-file × real time.
3. NAM (``--nam-python``): NAM's standard A1 WaveNet with its lightning trainer (``nam.train.core`` data/model
   plumbing, Adam lr 0.004, batch 16, ny 8192, no output normalisation) on the same excitation/target pair and
   the same train/validation split, given the same wall time as our command used (at least 60 s, at most
   ``--nam-cap-s``), one torch thread; then the same test audio and ESR.

The machine is shared with other work (load average recorded): timings are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _results import chain_command, load_now, machine, machine_lines, replace_section, yes_no  # noqa: E402

SECTION = "bench_capture"
SAMPLE_RATE = 48000
SAMPLES = Path("/usr/share/sonic-pi/samples")
TEST_FILES = ("guit_em9.flac", "guit_e_slide.flac", "bass_hard_c.flac", "loop_amen.flac", "ambi_piano.flac",
              "drum_snare_hard.flac", "elec_bell.flac", "loop_compus.flac")
PRESETS = ROOT / "chains" / "presets"


@dataclass
class Case:
    name: str
    chain: Path
    bound: float
    minutes: float


CASES = [
    Case("lowpass-1k", PRESETS / "capture-lowpass.yaml", 1e-4, 1.0),
    Case("lowpass-5k", BENCH / "capture_lowpass5k.yaml", 1e-4, 1.0),
    Case("fuzz", PRESETS / "capture-fuzz.yaml", 1e-3, 5.0),
    Case("compressor", PRESETS / "capture-compressor.yaml", 1e-2, 5.0),
    Case("ladder", PRESETS / "capture-ladder.yaml", 1e-2, 5.0),
    Case("zamcomp", PRESETS / "capture-zamcomp.yaml", 2e-2, 5.0),
    Case("zamtube", PRESETS / "capture-zamtube.yaml", 1e-2, 10.0),
]

NAM_SCRIPT = r'''
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
import pytorch_lightning as pl
from nam.train import core
a = json.loads(sys.argv[1])
data_config = {
    "train": {"start_samples": a["train"][0], "stop_samples": a["train"][1], "ny": 8192},
    "validation": {"start_samples": a["validation"][0], "stop_samples": a["validation"][1], "ny": None},
    "common": {"x_path": a["dry"], "y_path": a["wet"], "delay": 0, "allow_unequal_lengths": True,
               "require_input_pre_silence": None},
}
dilations = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
model_config = {
    "net": {"name": "WaveNet", "config": {"layers_configs": [
        {"input_size": 1, "condition_size": 1, "channels": 16, "kernel_size": 3, "dilations": dilations,
         "activation": "Tanh", "head": {"out_channels": 8, "kernel_size": 1, "bias": False}},
        {"input_size": 16, "condition_size": 1, "channels": 8, "kernel_size": 3, "dilations": dilations,
         "activation": "Tanh", "head": {"out_channels": 1, "kernel_size": 1, "bias": True}}],
        "head_scale": 0.02}},
    "loss": {"val_loss": "esr"},
    "optimizer": {"lr": 0.004},
    "lr_scheduler": {"class": "ExponentialLR", "kwargs": {"gamma": 0.993}},
}
learning_config = {
    "train_dataloader": {"batch_size": 16, "shuffle": True, "pin_memory": False, "drop_last": True,
                         "num_workers": 0},
    "val_dataloader": {},
    "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 100000},
}
torch.manual_seed(0)
model = core._get_lightning_module_cls(model_config).init_from_config(model_config)
train_dl, val_dl = core._get_dataloaders(data_config, learning_config, model)
trainer = pl.Trainer(max_time={"seconds": a["seconds"]}, enable_checkpointing=False, logger=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     **learning_config["trainer"])
started = time.perf_counter()
trainer.fit(model, train_dl, val_dl)
train_s = time.perf_counter() - started
x = np.load(a["test_x"]).astype(np.float32)
y = np.load(a["test_y"]).astype(np.float64)
model.eval()
with torch.no_grad():
    started = time.perf_counter()
    out = model.net(torch.from_numpy(x)[None], pad_start=True)[0].numpy()
    infer_s = time.perf_counter() - started
out = out[-len(y):] / a["y_scale"]
print(json.dumps({"esr": float(np.sum((y - out) ** 2) / np.sum(y ** 2)), "train_s": train_s,
                  "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
                  "realtime": len(x) / 48000 / infer_s}))
'''


def test_audio() -> tuple[np.ndarray, list[str]]:
    """(samples,) float32 at 48 kHz: each file at −1 dBFS peak, then each again 20 dB down, 0.2 s gaps."""
    from pedalboard.io import AudioFile

    pieces, names = [], []
    for name in TEST_FILES:
        path = SAMPLES / name
        if not path.exists():
            continue
        with AudioFile(str(path)).resampled_to(SAMPLE_RATE) as stream:
            audio = stream.read(stream.frames).mean(axis=0)
        pieces.append(audio / np.max(np.abs(audio)) * 10 ** (-1 / 20))
        names.append(name)
    if not pieces:
        raise SystemExit(f"no test audio: install Debian's sonic-pi-samples ({SAMPLES})")
    gap = np.zeros(int(0.2 * SAMPLE_RATE))
    loud = [p for piece in pieces for p in (piece, gap)]
    quiet = [p * 0.1 for p in loud]
    return np.concatenate(loud + quiet).astype(np.float32), names


def render(chain_path: Path, audio: np.ndarray) -> np.ndarray:
    """Mono render through the chain (two identical channels for stereo-only steps; channel 0 kept)."""
    from pedalchain.chains.yaml_io import load_chain
    from pedalchain.errors import PedalchainError

    chain = load_chain(chain_path)
    try:
        return chain.process(audio[None], SAMPLE_RATE)[0]
    except (PedalchainError, ValueError, RuntimeError):
        return chain.process(np.repeat(audio[None], 2, axis=0), SAMPLE_RATE)[0]


def esr(predicted: np.ndarray, target: np.ndarray) -> float:
    target = target.astype(np.float64)
    return float(np.sum((target - predicted.astype(np.float64)) ** 2) / np.sum(target**2))


def run_ours(case: Case, folder: Path, scale: float, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    import torch
    from pedalchain.models.model_file import load_model

    output = folder / f"{case.name}.safetensors"
    minutes = case.minutes * scale
    command = chain_command() + ["train", "emulator", "--target", str(case.chain), "-o", str(output), "--minutes",
                                 f"{minutes:g}", "--target-esr", f"{case.bound / 3:g}", "--threads", "1", "--quiet",
                                 "--overwrite"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not output.exists():
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:], "wall_s": wall, "cpu_s": cpu}
    report = json.loads((folder / f"{case.name}.report.json").read_text())
    torch.set_num_threads(1)
    model, info = load_model(output)
    model = model.float().eval()
    with torch.inference_mode():
        started = time.perf_counter()
        predicted = model(torch.from_numpy(x_test)[None])[0].numpy()
        infer = time.perf_counter() - started
    return {"esr": esr(predicted, y_test), "wall_s": wall, "cpu_s": cpu, "family": report["family"],
            "validation_esr": report["validation"]["esr"], "parameters": info.parameter_count,
            "realtime": len(x_test) / SAMPLE_RATE / infer, "minutes": minutes,
            "families": [(f["family"], f["validation_esr"], f["seconds"]) for f in report["families"]]}


def run_nam(case: Case, folder: Path, nam_python: str, seconds: float, x_test: np.ndarray, y_test: np.ndarray) -> dict:
    from pedalboard.io import AudioFile
    from pedalchain.models.capture.excitation import make_excitation

    excitation = make_excitation(SAMPLE_RATE)
    wet = render(case.chain, excitation.audio)
    dry_path, wet_path = folder / f"{case.name}.nam-dry.wav", folder / f"{case.name}.nam-wet.wav"
    peak = float(np.max(np.abs(wet)))
    scale = 0.9 / peak if peak > 0.9 else 1.0  # NAM's data loader refuses a clipped (|y| ≥ 1) target
    wet = wet * scale
    for path, audio in ((dry_path, excitation.audio), (wet_path, wet)):
        with AudioFile(str(path), "w", SAMPLE_RATE, 1, bit_depth=24) as stream:
            stream.write(np.clip(audio, -1.0, 1.0 - 2**-23)[None])
    np.save(folder / "test_x.npy", x_test)
    np.save(folder / f"{case.name}.test_y.npy", y_test)
    arguments = {"dry": str(dry_path), "wet": str(wet_path), "train": list(excitation.regions["train"]),
                 "validation": list(excitation.regions["validation"]), "seconds": int(seconds),
                 "test_x": str(folder / "test_x.npy"), "test_y": str(folder / f"{case.name}.test_y.npy"),
                 "y_scale": scale}
    done = subprocess.run([nam_python, "-c", NAM_SCRIPT, json.dumps(arguments)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated subset of: " + ", ".join(c.name for c in CASES))
    parser.add_argument("--nam-python", help="python of a venv with neural-amp-modeler (skip NAM when absent)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every case's --minutes")
    parser.add_argument("--nam-cap-s", type=float, default=300.0, help="at most this much NAM training per case")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    info = machine()
    x_test, names = test_audio()
    earlier_nam = {case.name: _earlier_nam_cells(case.name) for case in chosen}  # before this run rewrites them
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in chosen:
            y_test = render(case.chain, x_test)
            ours = run_ours(case, folder, args.budget_scale, x_test, y_test)
            print(case.name, "ours", json.dumps(ours), flush=True)
            nam = None
            if args.nam_python:
                seconds = min(max(60.0, ours.get("wall_s", 60.0)), args.nam_cap_s)
                nam = run_nam(case, folder, args.nam_python, seconds, x_test, y_test)
                nam["budget_s"] = seconds
                print(case.name, "nam", json.dumps(nam), flush=True)
            rows.append((case, ours, nam))
            body = write_section(rows, info, names, x_test, args, earlier_nam)
    print(body)
    return 0


def _case_of(line: str) -> str:
    return line.strip("|- ").split("|")[0].split(":")[0].strip()


def _earlier_lines(rerun: set[str]) -> tuple[list[str], list[str]]:
    """Table rows and per-family lines of cases in the current RESULTS.md section that are not being rerun."""
    from _results import RESULTS

    text = RESULTS.read_text() if RESULTS.exists() else ""
    start, end = f"<!-- {SECTION}:start -->", f"<!-- {SECTION}:end -->"
    if start not in text or end not in text:
        return [], []
    section = text.split(start, 1)[1].split(end, 1)[0]
    names = {c.name for c in CASES} - rerun
    rows = [line + "\n" for line in section.splitlines() if line.startswith("| ") and _case_of(line) in names]
    families = [line + "\n" for line in section.splitlines() if line.startswith("- ") and ":" in line
                and _case_of(line) in names]
    return rows, families


def _earlier_nam_cells(name: str) -> str | None:
    """The NAM cells of case ``name`` in the current RESULTS.md section, marked with the date of the run that
    measured them (kept when NAM is not rerun), or None."""
    from _results import RESULTS

    text = RESULTS.read_text() if RESULTS.exists() else ""
    start, end = f"<!-- {SECTION}:start -->", f"<!-- {SECTION}:end -->"
    if start not in text or end not in text:
        return None
    section = text.split(start, 1)[1].split(end, 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and _case_of(line) == name]
    dates = [line.split("`")[1] for line in section.splitlines() if line.startswith("- date: `")]
    if not rows or not dates:
        return None
    cells = [cell.strip() for cell in rows[0].strip().strip("|").split("|")][-3:]
    if cells[0].startswith("not run") or cells[0].startswith("failed"):
        return None
    if "measured " not in cells[0]:
        cells[0] += f" (measured {' '.join(dates[0].split()[1:3])})"
    return " | ".join(cells)


def write_section(rows: list, info: dict, names: list[str], x_test: np.ndarray, args: argparse.Namespace,
                  earlier_nam: dict[str, str | None]) -> str:
    """Replace this script's section of RESULTS.md with the rows so far; returns the text."""
    body = ["## Effect-emulation captures (`bench/bench_capture.py`)\n", machine_lines(info),
            f"- load average at the end: {load_now()} (other jobs on the 2 cores make times upper bounds)\n",
            f"- test audio (never used for training): Debian sonic-pi-samples (CC0) {', '.join(names)}: 48 kHz mono, "
            f"−1 dBFS peak each, then all again 20 dB quieter ({len(x_test) / SAMPLE_RATE:.1f} s)\n",
            "- training audio: the built-in excitation only (`chain train excitation`); our command ran with "
            "`--threads 1`, `--target-esr` = bound/3\n",
            "- ESR: plain whole-file Σ(y−ŷ)²/Σy² on the test audio; × real time: whole-file torch inference, "
            "1 thread\n",
            f"- command: `.venv/bin/python bench/bench_capture.py --budget-scale {args.budget_scale:g}"
            + (f" --nam-python {args.nam_python} --nam-cap-s {args.nam_cap_s:g}" if args.nam_python else "")
            + (f" --cases {args.cases}" if args.cases else "") + "`\n\n",
            "| case | bound | ours: family | ours: test ESR | ours: wall min (CPU min) | bound met in time | ours × RT "
            "| NAM A1 standard: test ESR (same wall time) | NAM steps | NAM × RT |\n",
            "|---|---|---|---|---|---|---|---|---|---|\n"]
    rerun = {case.name for case, _, _ in rows}
    kept_rows, kept_families = _earlier_lines(rerun)
    for case, ours, nam in rows:
        if "error" in ours:
            our_cells = f"failed: {ours['error']} | - | - | - | -"
        else:
            met = ours["esr"] < case.bound and ours["wall_s"] <= case.minutes * 60
            our_cells = (f"{ours['family']} ({ours['parameters']:,} params) | {ours['esr']:.3g} | "
                         f"{ours['wall_s'] / 60:.2f} ({ours['cpu_s'] / 60:.2f}) | {yes_no(met)} | "
                         f"{ours['realtime']:.0f}×")
        if nam is None:
            nam_cells = earlier_nam.get(case.name) or "not run | - | -"
        elif "error" in nam:
            nam_cells = f"failed: {nam['error'][:80]} | - | -"
        else:
            nam_cells = f"{nam['esr']:.3g} ({nam['budget_s'] / 60:.1f} min) | {nam['steps']} | {nam['realtime']:.0f}×"
        kept_rows.append(f"| {case.name} | {case.bound:g} in {case.minutes:g} min | {our_cells} | {nam_cells} |\n")
    order = [c.name for c in CASES]
    kept_rows.sort(key=lambda line: order.index(_case_of(line)) if _case_of(line) in order else len(order))
    body.extend(kept_rows)
    earlier = [line for line in kept_rows if _case_of(line) not in rerun]
    if earlier:
        kept = ", ".join(_case_of(line) for line in earlier)
        body.append(f"\nRows for {kept} are kept from the previous run of this script (same machine; "
                    "that run's date, load and code are in git history).\n")
    body.append("\nPer family (validation ESR on the excitation's held-out part, seconds since the start):\n\n")
    body.extend(kept_families)
    for case, ours, _ in rows:
        if "families" in ours:
            body.append(f"- {case.name}: " + "; ".join(f"{f} {e:.3g} at {s:.0f} s" for f, e, s in ours["families"])
                        + "\n")
    replace_section(SECTION, "".join(body))
    return "".join(body)


if __name__ == "__main__":
    raise SystemExit(main())
