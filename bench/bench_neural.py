"""Benchmark: pedalchain's NAM WaveNet and LSTM against NAM's own torch code, same ``.nam`` files, same run.

    .venv/bin/python bench/bench_neural.py --nam-python /tmp/namvenv/bin/python

(``/tmp/namvenv``: ``python3 -m venv /tmp/namvenv && /tmp/namvenv/bin/pip install torch==2.13.0
neural-amp-modeler==0.13.0``.)  Models: ``tests/data/nam/wavenet_a1_standard_0_7.nam`` (NAM's standard A1
WaveNet shape, 13,801 weights, receptive field 4,093; the 0.7 layout because NAM 0.13 no longer reads the
0.5 one) and ``tests/data/nam/lstm_standard_0_5.nam`` (NAM's standard LSTM, 24 units).  Input: mono 48 kHz
seeded noise with a loudness swell.

Each side runs in its own long-lived worker process (ours in this interpreter, NAM's in ``--nam-python``,
which never imports pedalchain), with the same torch version and thread count.  A measurement is the wall
time of processing the whole input one way:

* ``whole``: one call on the whole buffer (ours: ``model(x)``; NAM: ``model(x)``, which pads the start).
* ``block N``: blocks of N samples in order, output identical to ``whole``.  Ours: ``forward_stream`` with
  carried state.  NAM's torch code has no streaming API, so for its WaveNet each block is run with the
  ``receptive_field − 1`` input samples before it (``pad_start=False``), the exact way to stream a
  stateless convolutional model; for its LSTM its own ``_core`` and head are stepped with the carried
  ``(h, c)``, the way a streaming host would drive it.

The runs alternate (ours, NAM's, NAM's, ours, ...) and each figure is the median of ``--runs``; × real time
= audio seconds / wall seconds; the ratio is ours / NAM's (> 1: ours faster).  The script checks that both
sides' whole-buffer outputs agree, then writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = ROOT / "tests" / "data" / "nam"
MODELS = {"WaveNet A1 standard": DATA / "wavenet_a1_standard_0_7.nam", "LSTM standard": DATA / "lstm_standard_0_5.nam"}
SAMPLE_RATE = 48_000
BLOCKS = (512, 4096)
SECTION = "bench_neural"
OUR_SOURCES = ("models/wavenet.py", "models/nam_lstm.py", "models/nam.py")


def make_input(seconds: float) -> np.ndarray:
    """(samples,) float32: seeded noise (seed 0) under a 0.5 Hz loudness swell, about −30 to −6 dBFS."""
    rng = np.random.default_rng(0)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    return (rng.standard_normal(n) * (0.03 + 0.47 * (0.5 - 0.5 * np.cos(np.pi * t))) * 0.5).astype(np.float32)


# -- workers (one per side; they read commands on stdin, answer one JSON line each) --------------------------------
def _worker(side: str, model_path: str, input_path: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    x = torch.from_numpy(np.load(input_path, allow_pickle=False))[None]  # (1, samples)
    if side == "ours":
        from pedalchain.models.nam import load_nam

        model, _ = load_nam(model_path)

        def whole() -> torch.Tensor:
            return model(x)

        def blocks(size: int) -> torch.Tensor:
            state = model.initial_state(1, x.device)
            return torch.cat([model.forward_stream(x[:, i : i + size], state) for i in range(0, x.shape[1], size)],
                             dim=1)
    else:
        from nam.models import init_from_nam

        model = init_from_nam(json.loads(Path(model_path).read_text()))
        model.eval()
        context = model.receptive_field - 1
        padded = torch.nn.functional.pad(x, (context, 0))
        is_lstm = hasattr(model, "_core")

        def whole() -> torch.Tensor:
            return model(x)

        def blocks(size: int) -> torch.Tensor:
            if is_lstm:
                state = model._initial_state(1)
                outputs = []
                for i in range(0, x.shape[1], size):
                    features, state = model._core(x[:, i : i + size, None], state)
                    outputs.append(model._apply_head(features))
                return torch.cat(outputs, dim=1)
            return torch.cat([model(padded[:, i : i + context + size], pad_start=False)
                              for i in range(0, x.shape[1], size)], dim=1)

    with torch.inference_mode():
        whole()  # warm-up (allocator, oneDNN)
        for line in sys.stdin:
            command = json.loads(line)
            if command["mode"] == "overhead":  # seconds per forward_stream call of one sample (ours only)
                state = model.initial_state(1, x.device)
                start = time.perf_counter()
                for i in range(300):
                    model.forward_stream(x[:, i : i + 1], state)
                print(json.dumps({"seconds": (time.perf_counter() - start) / 300}), flush=True)
                continue
            if command["mode"] == "output":
                np.save(command["path"], whole()[0].numpy(), allow_pickle=False)
                print(json.dumps({"ok": True}), flush=True)
                continue
            start = time.perf_counter()
            y = whole() if command["mode"] == "whole" else blocks(int(command["mode"]))
            seconds = time.perf_counter() - start
            assert y.shape == x.shape
            print(json.dumps({"seconds": seconds}), flush=True)


class Worker:
    def __init__(self, python: str, side: str, model: Path, input_path: Path, threads: int) -> None:
        self.process = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", side, "--model", str(model), "--input",
             str(input_path), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def ask(self, command: dict) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker died (exit {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


# -- driver ------------------------------------------------------------------------------------------------------------
def bench_model(label: str, path: Path, args: argparse.Namespace, input_path: Path, seconds: float) -> dict:
    ours = Worker(sys.executable, "ours", path, input_path, args.threads)
    nam = Worker(args.nam_python, "nam", path, input_path, args.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours.ask({"mode": "output", "path": f"{tmp}/ours.npy"})
            nam.ask({"mode": "output", "path": f"{tmp}/nam.npy"})
            diff = float(np.max(np.abs(np.load(f"{tmp}/ours.npy") - np.load(f"{tmp}/nam.npy"))))
        overhead = statistics.median(ours.ask({"mode": "overhead"})["seconds"] for _ in range(5))
        modes = ["whole", *[str(b) for b in BLOCKS]]
        times: dict[str, dict[str, list[float]]] = {m: {"ours": [], "nam": []} for m in modes}
        for run in range(args.runs):
            for mode in modes:
                order = [("ours", ours), ("nam", nam)] if run % 2 == 0 else [("nam", nam), ("ours", ours)]
                for side, worker in order:
                    times[mode][side].append(worker.ask({"mode": mode})["seconds"])
            print(f"{label}: run {run + 1}/{args.runs} done", file=sys.stderr)
    finally:
        ours.close()
        nam.close()
    rows = {}
    for mode in modes:
        o, n = statistics.median(times[mode]["ours"]), statistics.median(times[mode]["nam"])
        rows[mode] = {"ours_s": o, "nam_s": n, "ours_x": seconds / o, "nam_x": seconds / n, "ratio": n / o,
                      "ours_runs": times[mode]["ours"], "nam_runs": times[mode]["nam"]}
    return {"max_abs_diff": diff, "rows": rows, "call_s": overhead}


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in OUR_SOURCES:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _nam_versions(python: str) -> str:
    code = "import nam, torch; print(f'neural-amp-modeler {nam.__version__}, torch {torch.__version__}')"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def report(results: dict, args: argparse.Namespace, seconds: float) -> str:
    sys.path.insert(0, str(BENCH))
    import torch
    from _results import machine, yes_no

    info = machine()
    lines = [
        "## bench_neural: NAM models, pedalchain vs NAM's own torch code",
        "",
        f"- date: `{info['date']}`",
        f"- machine: {info['nproc']} cores (`nproc`), CPU `{info['cpu']}`, RAM {info['ram']}; load average when "
        f"started: {info['load']} (other jobs were running on this shared box: absolute figures are noisy, "
        "the alternating ratios less so)",
        f"- ours: Python {sys.version.split()[0]}, torch {torch.__version__}; NAM: {_nam_versions(args.nam_python)}; "
        f"{args.threads} torch thread(s) on both sides",
        f"- pedalchain NAM source fingerprint: `{_fingerprint()}` (sha256 of {', '.join(OUR_SOURCES)})",
        f"- command: `python bench/bench_neural.py --nam-python {args.nam_python} --seconds {args.seconds:g} "
        f"--runs {args.runs} --threads {args.threads}`",
        f"- input: {seconds:g} s mono 48 kHz seeded noise; {args.runs} alternating runs per cell, medians; "
        "× real time = audio seconds / wall seconds; ratio = ours / NAM's speed",
        "- NAM's block mode: WaveNet blocks each carry the receptive field − 1 = 4,092 samples of input before "
        "them (NAM's torch code has no streaming state); LSTM blocks carry `(h, c)` through NAM's own `_core`",
        "",
        "| model | mode | ours × real time | NAM × real time | ratio ours/NAM | goal | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, result in results.items():
        for mode, row in result["rows"].items():
            name = "whole file" if mode == "whole" else f"block {mode}"
            goal = ">= 0.95" if mode in ("whole", "4096") else "(reported)"
            met = yes_no(row["ratio"] >= 0.95) if mode in ("whole", "4096") else ""
            lines.append(f"| {label} | {name} | {row['ours_x']:.1f}× | {row['nam_x']:.1f}× | {row['ratio']:.2f} | "
                         f"{goal} | {met} |")
    lines += ["", "| model | whole-buffer outputs, ours vs NAM: max \\|diff\\| |", "|---|---|"]
    for label, result in results.items():
        lines.append(f"| {label} | {result['max_abs_diff']:.2g} |")
    lines += ["", "All runs (s):", ""]
    for label, result in results.items():
        for mode, row in result["rows"].items():
            o = ", ".join(f"{t:.3f}" for t in row["ours_runs"])
            n = ", ".join(f"{t:.3f}" for t in row["nam_runs"])
            lines.append(f"- {label}, {mode}: ours {o}; NAM {n}")
    wn = results.get("WaveNet A1 standard", {}).get("rows", {})
    if wn:
        call_ms = 1000 * results["WaveNet A1 standard"]["call_s"]
        block_ms = 1000 * 512 / SAMPLE_RATE
        lines += [
            "",
            f"What limits block 512 (ours, WaveNet: {wn['512']['ours_x']:.1f}× vs {wn['whole']['ours_x']:.1f}× whole "
            f"file): a fixed cost per call, measured as {call_ms:.2f} ms for a 1-sample call (median of 5 × 300 "
            f"calls), against {block_ms:.1f} ms of audio per 512-sample block.  Each call dispatches ~12 small "
            "torch ops for each of the 20 layers (cache join, 3 tap matmuls, mixer, tanh, 1x1 + residual, head sum) "
            "and copies every layer's cache (up to 1,024 past samples × 16 channels) next to the block; the "
            "arithmetic per sample is the same as whole-file.  NAM's torch code pays far more at small blocks: "
            "it recomputes 4,092 samples of context per block (9× the work at 512).  The LSTM's ratios at 512 "
            "and 4096 are the same torch LSTM kernel on both sides (equal within the noise of this shared box); "
            "whole-file ours is faster because it runs 2,048-sample segments (NAM: 65,535), which keep the "
            "precomputed input projections in cache.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pedalchain NAM models vs NAM's torch code (× real time)")
    parser.add_argument("--nam-python", help="interpreter of a venv with neural-amp-modeler 0.13.0 (required)")
    parser.add_argument("--seconds", type=float, default=20.0, help="input length in seconds (default 20)")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs per cell (default 5, at least 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    parser.add_argument("--worker", choices=("ours", "nam"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.model, args.input, args.threads)
        return 0
    if not args.nam_python:
        parser.error("--nam-python is required (a venv with neural-amp-modeler==0.13.0)")
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    with tempfile.TemporaryDirectory() as tmp:
        input_path = Path(tmp) / "input.npy"
        x = make_input(args.seconds)
        np.save(input_path, x, allow_pickle=False)
        seconds = len(x) / SAMPLE_RATE
        results = {label: bench_model(label, path, args, input_path, seconds) for label, path in MODELS.items()}
    body = report(results, args, seconds)
    print(body)
    if not args.no_write:
        sys.path.insert(0, str(BENCH))
        from _results import replace_section

        replace_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
