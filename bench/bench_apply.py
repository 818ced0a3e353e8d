"""`chain apply` against a hand-written pedalboard script on the same file and chain.

    python bench/bench_apply.py [--minutes 5] [--runs 5] [--no-results]

Input: bench/data/in_<N>min.wav, stereo 44.1 kHz PCM_16 from bench/make_audio.py (generated if missing).
Chain: bench/bench.yaml = HighpassFilter 30 Hz -> Compressor -18 dB 3:1 -> Reverb room 0.5 -> Limiter.

  A  chain apply bench/bench.yaml IN -o OUT_A --overwrite --quiet        (subprocess)
  B  python bench/handwritten.py IN OUT_B                                 (subprocess)

One untimed warm-up of each (page cache, .pyc: PYTHONDONTWRITEBYTECODE is dropped from the environment), then
A B A B ... (``--runs`` pairs); wall time per run.
Reports the medians and chain/handwritten (target <= 1.05), the start-up cost of each on a 1-second file,
and two agreement checks:

* the two PCM_16 outputs: max |A - B| in 16-bit LSB (target <= 2; `chain` adds TPDF dither);
* `chain apply --subtype FLOAT` against pedalboard run in-process on the same decoded input: max |diff|
  (the processing itself should be sample-identical, so this isolates I/O and dither conventions).

Replaces the `bench_apply` section of bench/RESULTS.md unless --no-results.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_audio  # noqa: E402
from _results import (  # noqa: E402
    BENCH,
    CHAIN_YAML,
    DATA,
    ROOT,
    chain_command,
    load_now,
    machine,
    machine_lines,
    replace_section,
    yes_no,
)

TARGET_RATIO = 1.05
TARGET_LSB = 2
BLOCK = 8192


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


BLAS1 = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def timed(cmd: list[str], extra_env: dict[str, str] | None = None) -> float:
    # PYTHONDONTWRITEBYTECODE (set in some sandboxes) would recompile every module on every run: a user's
    # install has its bytecode cached, so the warm-up run writes it here too.
    env = {k: v for k, v in os.environ.items() if k not in BLAS1 and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra_env or {})
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {shlex.join(cmd)}\n{done.stderr}")
    return wall


def pcm_difference(a: Path, b: Path) -> tuple[int, list[int], int]:
    """Max |a - b| in LSB over both int16 files, a histogram of |a - b| (0, 1, 2, 3+), and frames compared."""
    worst, hist, frames = 0, [0, 0, 0, 0], 0
    with sf.SoundFile(str(a)) as fa, sf.SoundFile(str(b)) as fb:
        if fa.frames != fb.frames or fa.channels != fb.channels:
            raise SystemExit(f"outputs differ in shape: {fa.frames}x{fa.channels} vs {fb.frames}x{fb.channels}")
        while True:
            x = fa.read(65536, dtype="int16")
            y = fb.read(65536, dtype="int16")
            if not len(x):
                break
            d = np.abs(x.astype(np.int32) - y.astype(np.int32))
            worst = max(worst, int(d.max()))
            counts = np.bincount(np.minimum(d, 3).ravel(), minlength=4)
            hist = [h + int(c) for h, c in zip(hist, counts, strict=True)]
            frames += len(x)
    return worst, hist, frames


def float_identity(source: Path, chain_float: Path) -> float:
    """Max |chain FLOAT output - pedalboard in-process| with the input decoded the same way (soundfile)."""
    from pedalboard import Compressor, HighpassFilter, Limiter, Pedalboard, Reverb

    board = Pedalboard([HighpassFilter(30.0), Compressor(-18.0, 3.0), Reverb(room_size=0.5), Limiter()])
    worst = 0.0
    with sf.SoundFile(str(source)) as fin, sf.SoundFile(str(chain_float)) as fout:
        sr = fin.samplerate
        while True:
            x = fin.read(BLOCK, dtype="float32", always_2d=True)
            if not len(x):
                break
            ref = board.process(np.ascontiguousarray(x.T), sr, reset=False)
            got = fout.read(len(x), dtype="float32", always_2d=True).T
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def pedalboard_pcm16_conventions() -> tuple[float, str]:
    """How pedalboard.io.AudioFile maps int16 <-> float: (decode divisor, encode rule), measured on a probe file."""
    from pedalboard.io import AudioFile

    probe = DATA / "probe_pcm16.wav"
    sf.write(str(probe), np.array([32767, 16384], np.int16), 44100, subtype="PCM_16")
    with AudioFile(str(probe)) as f:
        divisor = float(32767 / f.read(f.frames)[0, 0])
    y = np.array([[0.4, 0.6, -0.4, -0.6, 1.4]], np.float32) / 32768
    with AudioFile(str(probe), "w", 44100, 1, bit_depth=16) as o:
        o.write(y)
    got = sf.read(str(probe), dtype="int16")[0].tolist()
    probe.unlink()
    scaled = (y[0] * 32768).astype(np.float64)
    rule = next((name for name, fn in (("floor", np.floor), ("round", np.round), ("trunc", np.trunc))
                 if fn(scaled).astype(int).tolist() == got), f"unknown ({got} for {scaled.tolist()})")
    return divisor, rule


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (alternating), >= 5 recommended")
    parser.add_argument("--no-results", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--no-blas1", action="store_true",
                        help="skip the informative third command: A with OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1")
    args = parser.parse_args()

    info = machine()
    source = make_audio.ensure(args.minutes, DATA / f"in_{args.minutes:g}min.wav", "PCM_16")
    tiny = make_audio.ensure(1 / 60, DATA / "in_1s.wav", "PCM_16")
    out_a, out_b = DATA / "apply_chain.wav", DATA / "apply_handwritten.wav"
    chain = chain_command()
    hand = [sys.executable, str(BENCH / "handwritten.py")]
    cmd_a = [*chain, "apply", str(CHAIN_YAML), str(source), "-o", str(out_a), "--overwrite", "--quiet"]
    cmd_b = [*hand, str(source), str(out_b)]
    shown_a = shlex.join(["chain", "apply", _rel(CHAIN_YAML), _rel(source), "-o", _rel(out_a),
                          "--overwrite", "--quiet"])
    shown_b = shlex.join(["python", _rel(BENCH / "handwritten.py"), _rel(source), _rel(out_b)])

    print(f"input: {_rel(source)} ({args.minutes:g} min stereo 44.1 kHz PCM_16)", flush=True)
    print("warm-up ...", flush=True)
    timed(cmd_a)
    timed(cmd_b)
    times_a: list[float] = []
    times_b: list[float] = []
    times_c: list[float] = []
    for i in range(args.runs):
        times_a.append(timed(cmd_a))
        times_b.append(timed(cmd_b))
        if not args.no_blas1:
            times_c.append(timed(cmd_a, BLAS1))
        print(f"  run {i + 1}: chain {times_a[-1]:.2f} s, handwritten {times_b[-1]:.2f} s"
              + (f", chain with OPENBLAS_NUM_THREADS=1 {times_c[-1]:.2f} s" if times_c else ""), flush=True)
    med_a, med_b = statistics.median(times_a), statistics.median(times_b)
    ratio = med_a / med_b
    duration = args.minutes * 60.0

    # start-up: the same two commands on a 1-second file (median of 5, after the warm-up above)
    start_a = statistics.median(timed([*chain, "apply", str(CHAIN_YAML), str(tiny), "-o", str(DATA / "tiny_a.wav"),
                                       "--overwrite", "--quiet"]) for _ in range(5))
    start_b = statistics.median(timed([*hand, str(tiny), str(DATA / "tiny_b.wav")]) for _ in range(5))

    worst_lsb, hist, frames = pcm_difference(out_a, out_b)
    out_f = DATA / "apply_chain_float.wav"
    timed([*chain, "apply", str(CHAIN_YAML), str(source), "-o", str(out_f), "--overwrite", "--quiet",
           "--subtype", "FLOAT"])
    worst_float = float_identity(source, out_f)
    out_f.unlink(missing_ok=True)

    divisor, rule = pedalboard_pcm16_conventions()
    total = sum(hist)
    ok_ratio, ok_lsb = ratio <= TARGET_RATIO, worst_lsb <= TARGET_LSB
    lines = [
        "## bench_apply: `chain apply` vs hand-written pedalboard",
        "",
        machine_lines(info).rstrip(),
        f"- input: {args.minutes:g} min stereo 44.1 kHz PCM_16 WAV from `bench/make_audio.py` (seed 0)",
        "- chain: `bench/bench.yaml` (HighpassFilter 30 Hz -> Compressor -18 dB 3:1 -> Reverb room 0.5 -> Limiter)",
        f"- A: `{shown_a}`",
        f"- B: `{shown_b}`",
        f"- script: `python bench/bench_apply.py --minutes {args.minutes:g} --runs {args.runs}` "
        f"(1 untimed warm-up each, then {args.runs} alternating A B{' C' if not args.no_blas1 else ''} rounds, "
        "wall time of each subprocess; OPENBLAS_NUM_THREADS/OMP_NUM_THREADS removed from the environment of A and B)",
        "",
        "| measure | chain apply (A) | handwritten (B) | A/B | target | met? |",
        "|---|---|---|---|---|---|",
        f"| median wall time, {args.minutes:g} min file | {med_a:.2f} s | {med_b:.2f} s | {ratio:.2f} | "
        f"<= {TARGET_RATIO} | {yes_no(ok_ratio)} |",
        f"| × real time (median) | {duration / med_a:.0f}× | {duration / med_b:.0f}× | | | |",
        f"| all runs (s) | {', '.join(f'{t:.2f}' for t in times_a)} | {', '.join(f'{t:.2f}' for t in times_b)} "
        "| | | |",
        *([f"| informative: A with `OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1` (C, run after each B), median | "
           f"{statistics.median(times_c):.2f} s ({', '.join(f'{t:.2f}' for t in times_c)}) | | "
           f"{statistics.median(times_c) / med_b:.2f} | | |"] if times_c else []),
        f"| start-up: same command on a 1 s file (median of 5) | {start_a:.2f} s | {start_b:.2f} s | "
        f"{start_a / start_b:.2f} | | |",
        f"| wall time minus 1 s-file start-up | {med_a - start_a:.2f} s | {med_b - start_b:.2f} s | "
        f"{(med_a - start_a) / max(med_b - start_b, 1e-9):.2f} | | |",
        "",
        "| agreement check | result | target | met? |",
        "|---|---|---|---|",
        f"| PCM_16 outputs A vs B: max \\|diff\\| | {worst_lsb} LSB | <= {TARGET_LSB} LSB | {yes_no(ok_lsb)} |",
        f"| ... samples with \\|diff\\| = 0 / 1 / 2 / >= 3 LSB (of {total}) | "
        f"{hist[0]} / {hist[1]} / {hist[2]} / {hist[3]} | | |",
        f"| `chain apply --subtype FLOAT` vs pedalboard in-process on the soundfile-decoded input: max \\|diff\\| | "
        f"{worst_float:.3g} ({worst_float * 32768:.3g} LSB16) | 0 (same processing) | {yes_no(worst_float == 0.0)} |",
        "",
        f"Why the PCM outputs can differ by more than the dither (measured on a probe file): `pedalboard.io.AudioFile` "
        f"decodes int16 as `v / {divisor:g}` where soundfile (used by `chain`) uses `v / 32768`, so B's input is "
        f"{32768 / divisor:.6f}× A's (up to {abs(32768 / divisor - 1) * 32768:.2f} LSB at full scale), and it encodes "
        f"with `{rule}(32768 y)`, while `chain` writes `floor(32768 y + 0.5 + TPDF)` (TPDF in (-1, 1) LSB).",
    ]
    lines.insert(3, f"- load average when finished: {load_now()} (other work on the machine skews timings)")
    report = "\n".join(lines)
    print()
    print(report)
    if not args.no_results:
        replace_section("bench_apply", report)
        print(f"\nwrote the bench_apply section of {_rel(BENCH / 'RESULTS.md')}")
    for path in (DATA / "tiny_a.wav", DATA / "tiny_b.wav"):
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
