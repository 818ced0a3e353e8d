"""Where `chain apply` spends its time beyond pedalboard's own processing.

    python bench/profile_apply.py [--minutes 5] [--top 20] [--no-results]

Same input and chain as bench/bench_apply.py.  Three views:

1. cProfile of the whole command (``pedalchain.cli.main([...apply...])`` in-process).  The runner may hand
   blocks to worker threads; ``python -m cProfile`` only sees the main thread (which then just waits in
   ``lock.acquire``), so every thread started during the run gets its own profiler here and the tables
   are printed per thread (main, then the others merged), sorted by own time (tottime).
2. The pieces of the file runner timed one at a time on the same file, serially, in-process (best of 3):
   decode (``read_blocks``), the chain alone (``Chain.process`` over the decoded blocks = pedalboard),
   the loudness meter (``LoudnessMeter.add``), the PCM_16 writer (``AtomicAudioWriter.write``: dither +
   encode), and the full ``process_file``.
3. `chain apply` as a subprocess with the default environment and with ``OPENBLAS_NUM_THREADS=1
   OMP_NUM_THREADS=1`` (median of 3 each): the meter's matrix products run in OpenBLAS, whose threads
   compete with pedalboard for the cores.

Replaces the `profile_apply` section of bench/RESULTS.md unless --no-results.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_audio  # noqa: E402
from _results import BENCH, CHAIN_YAML, DATA, ROOT, chain_command, load_now, machine, machine_lines, replace_section  # noqa: E402


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def profile_cli(source: Path, out: Path, top: int) -> tuple[str, str, float]:
    """cProfile of cli.main(apply) with one profiler per thread; returns (main table, others table, wall)."""
    from pedalchain import cli

    profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    try:
        started = time.perf_counter()
        main_profile.enable()
        code = cli.main(["apply", str(CHAIN_YAML), str(source), "-o", str(out), "--overwrite", "--quiet"])
        main_profile.disable()
        wall = time.perf_counter() - started
    finally:
        threading.Thread.run = original_run  # type: ignore[method-assign]
    if code != 0:
        raise SystemExit(f"chain apply failed with exit status {code}")

    def table(profs: list[cProfile.Profile]) -> str:
        if not profs:
            return "(no other threads were started)\n"
        stream = io.StringIO()
        stats = pstats.Stats(profs[0], stream=stream)
        for extra in profs[1:]:
            stats.add(extra)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        text = stream.getvalue()
        return text[text.index("   Ordered by"):] if "   Ordered by" in text else text

    return table([main_profile]), table(profiles), wall


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def components(source: Path, scratch: Path) -> list[tuple[str, float]]:
    """Serial timings of the runner's pieces on ``source`` (seconds, best of 3)."""
    import numpy as np
    from pedalchain.chains.audio_io import AtomicAudioWriter, OutputFormat, probe_audio, read_blocks
    from pedalchain.chains.loudness import LoudnessMeter
    from pedalchain.chains.runner import RunOptions, process_file
    from pedalchain.chains.yaml_io import load_chain

    info = probe_audio(source)
    chain = load_chain(CHAIN_YAML)
    sr, ch = info.sample_rate, info.channels
    blocks = list(read_blocks(info, 8192))  # 5 min stereo float32 = ~106 MB: fine for a benchmark
    chain.latency_at(sr, ch)

    def decode() -> None:
        for _ in read_blocks(info, 8192):
            pass

    outputs: list[np.ndarray] = []

    def process() -> None:
        chain.reset()
        outputs.clear()
        for block in blocks:
            outputs.append(chain.process(block, sr, reset=False))

    def meter() -> None:
        m = LoudnessMeter(sr, ch)
        for block in outputs:
            m.add(block)
        m.integrated_lufs()
        m.true_peak_dbtp()

    def write() -> None:
        w = AtomicAudioWriter(scratch, OutputFormat("WAV", "PCM_16"), sr, ch)
        for block in outputs:
            w.write(block)
        w.commit()

    def finite() -> None:
        for block in outputs:
            np.isfinite(block).all()

    def whole() -> None:
        process_file(chain, source, scratch, RunOptions(overwrite=True))

    rows = [
        ("decode: `read_blocks` (soundfile, int16 -> float32, channels-first copy)", best_of(decode)),
        ("chain alone: `Chain.process` per 8192-block (pedalboard + pedalchain glue)", best_of(process)),
        ("loudness meter: `LoudnessMeter.add` + readings", best_of(meter)),
        ("writer: `AtomicAudioWriter.write` PCM_16 (TPDF dither + encode)", best_of(write)),
        ("`np.isfinite(block).all()` per block (input/output checks, each)", best_of(finite)),
        ("sum of the pieces above (serial)", 0.0),
        ("full `process_file` in-process (whatever overlap the runner does)", best_of(whole)),
    ]
    rows[5] = (rows[5][0], sum(t for _, t in rows[:5]))
    scratch.unlink(missing_ok=True)
    return rows


def subprocess_variants(source: Path, out: Path) -> list[tuple[str, float]]:
    cmd = [*chain_command(), "apply", str(CHAIN_YAML), str(source), "-o", str(out), "--overwrite", "--quiet"]
    variants = [
        ("default environment", {}),
        ("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(3):
        for name, extra in variants:  # alternating
            env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
            env.update(extra)
            started = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, check=True)
            times[name].append(time.perf_counter() - started)
    out.unlink(missing_ok=True)
    return [(name, statistics.median(ts)) for name, ts in times.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args()

    info = machine()
    source = make_audio.ensure(args.minutes, DATA / f"in_{args.minutes:g}min.wav", "PCM_16")
    out = DATA / "profile_out.wav"
    duration = args.minutes * 60.0

    print("profiling chain apply in-process ...", flush=True)
    main_table, thread_table, wall = profile_cli(source, out, args.top)
    out.unlink(missing_ok=True)
    print("timing the runner's pieces ...", flush=True)
    rows = components(source, DATA / "profile_scratch.wav")
    print("chain apply subprocess, BLAS thread variants ...", flush=True)
    variants = subprocess_variants(source, out)

    lines = [
        "## profile_apply: where `chain apply` spends its time",
        "",
        machine_lines(info).rstrip(),
        f"- input: `{_rel(source)}` ({args.minutes:g} min stereo 44.1 kHz PCM_16), chain `bench/bench.yaml`, "
        "output PCM_16 WAV",
        f"- script: `python bench/profile_apply.py --minutes {args.minutes:g} --top {args.top}`",
        "",
        f"### Pieces of the runner, timed alone (in-process, best of 3, {args.minutes:g} min of audio)",
        "",
        "| piece | seconds | × real time |",
        "|---|---|---|",
        *[f"| {name} | {t:.2f} | {duration / t:.0f}× |" for name, t in rows],
        "",
        "### `chain apply` subprocess, OpenBLAS threads (median of 3, alternating)",
        "",
        "| environment | seconds | × real time |",
        "|---|---|---|",
        *[f"| {name} | {t:.2f} | {duration / t:.0f}× |" for name, t in variants],
        "",
        f"### cProfile of `chain apply` in-process (wall {wall:.2f} s under the profiler), top {args.top} by tottime",
        "",
        "Main thread:",
        "",
        "```",
        main_table.rstrip(),
        "```",
        "",
        "Other threads started during the run (merged):",
        "",
        "```",
        thread_table.rstrip(),
        "```",
    ]
    lines.insert(3, f"- load average when finished: {load_now()} (other work on the machine skews timings)")
    report = "\n".join(lines)
    print()
    print(report)
    if not args.no_results:
        replace_section("profile_apply", report)
        print(f"\nwrote the profile_apply section of {_rel(BENCH / 'RESULTS.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
