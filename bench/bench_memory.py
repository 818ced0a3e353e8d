"""Peak memory (RSS) of `chain apply` on long files: memory must not grow with length.

    python bench/bench_memory.py [--short 10] [--long 60] [--no-remaster] [--no-results]

Inputs: bench/data/in_10min.wav and in_60min.wav, stereo 44.1 kHz PCM_16 from bench/make_audio.py
(generated if missing; the 60-minute file is ~635 MB and takes about a minute to make).

Runs, each in a fresh process, measured with ``/usr/bin/time -v`` ("Maximum resident set size") or, where
that is missing, ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` from a fresh intermediate child:

  chain apply bench/bench.yaml in_10min.wav -o out.wav --overwrite --quiet     (stock chain, no loudness)
  chain apply bench/bench.yaml in_60min.wav -o out.wav --overwrite --quiet
  chain apply remaster         in_60min.wav -o out.wav --overwrite --quiet     (shipped preset, loudness
                                                                                target: two passes)

Targets: peak RSS <= 300 MB for each stock run, and the 60-minute run within 25 % of the 10-minute run.
Outputs are deleted after each run.  Replaces the `bench_memory` section of bench/RESULTS.md unless
--no-results.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

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

TARGET_MB = 300.0
TARGET_GROWTH = 0.25
NEURAL_TARGET_MB = 600.0  # a chain with one neural step (torch loaded)
NEURAL_YAML = BENCH / "bench_neural_chain.yaml"
TIME = "/usr/bin/time"


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def measure(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` in a fresh process; return (peak RSS in MB (10^6 bytes), wall seconds, method)."""
    started = time.perf_counter()
    if shutil.which(TIME) or Path(TIME).exists():
        done = subprocess.run([TIME, "-v", *cmd], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {shlex.join(cmd)}\n{done.stderr[-3000:]}")
        match = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", done.stderr)
        if not match:
            raise SystemExit(f"no RSS line in /usr/bin/time output:\n{done.stderr[-2000:]}")
        return int(match.group(1)) * 1024 / 1e6, wall, "`/usr/bin/time -v` (Maximum resident set size)"
    # Fallback: ru_maxrss of RUSAGE_CHILDREN is the max over all waited-for children, so use a fresh
    # intermediate interpreter whose only child is the command.
    probe = (
        "import json, resource, subprocess, sys\n"
        "rc = subprocess.run(json.loads(sys.argv[1])).returncode\n"
        "print(json.dumps([rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(cmd)], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    rc, kib = json.loads(done.stdout.strip().splitlines()[-1])
    if rc != 0:
        raise SystemExit(f"failed ({rc}): {shlex.join(cmd)}\n{done.stderr[-3000:]}")
    return kib * 1024 / 1e6, wall, "`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` from a fresh child"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=float, default=10.0, help="minutes of the short file")
    parser.add_argument("--long", type=float, default=60.0, help="minutes of the long file")
    parser.add_argument("--no-remaster", action="store_true", help="skip the remaster preset run")
    parser.add_argument("--no-neural", action="store_true", help="skip the run with a neural step")
    parser.add_argument("--no-results", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args()

    info = machine()
    chain = chain_command()
    out = DATA / "memory_out.wav"
    runs = []
    stock = (str(CHAIN_YAML), _rel(CHAIN_YAML))
    plan = [(args.short, *stock, TARGET_MB), (args.long, *stock, TARGET_MB)]
    if not args.no_remaster:
        plan.append((args.long, "remaster", "remaster", None))
    if not args.no_neural:
        plan.append((args.long, str(NEURAL_YAML), _rel(NEURAL_YAML), NEURAL_TARGET_MB))
    for minutes, chain_arg, chain_shown, target_mb in plan:
        source = make_audio.ensure(minutes, DATA / f"in_{minutes:g}min.wav", "PCM_16")
        cmd = [*chain, "apply", chain_arg, str(source), "-o", str(out), "--overwrite", "--quiet"]
        shown = shlex.join(["chain", "apply", chain_shown, _rel(source), "-o", _rel(out), "--overwrite", "--quiet"])
        print(f"running: {shown}", flush=True)
        rss, wall, method = measure(cmd)
        out.unlink(missing_ok=True)
        runs.append({"minutes": minutes, "chain": chain_shown, "cmd": shown, "rss": rss, "wall": wall,
                     "method": method, "target": target_mb})
        print(f"  peak RSS {rss:.1f} MB, wall {wall:.1f} s ({minutes * 60 / wall:.0f}x real time)", flush=True)

    short, long = runs[0], runs[1]
    growth = long["rss"] / short["rss"] - 1.0
    ok_growth = abs(growth) <= TARGET_GROWTH
    lines = [
        "## bench_memory: peak RSS of `chain apply` on long files",
        "",
        machine_lines(info).rstrip(),
        "- inputs: stereo 44.1 kHz PCM_16 WAV from `bench/make_audio.py` (seed 0); output PCM_16 WAV, deleted after",
        f"- measured with {runs[0]['method']}, one fresh process per run; MB = 10^6 bytes",
        f"- script: `python bench/bench_memory.py --short {args.short:g} --long {args.long:g}`",
        "",
        "| run | command | peak RSS | wall | × real time | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        target = f"<= {run['target']:g} MB" if run["target"] is not None else "(reported only)"
        met = yes_no(run["rss"] <= run["target"]) if run["target"] is not None else ""
        lines.append(
            f"| {run['minutes']:g} min, {run['chain']} | `{run['cmd']}` | {run['rss']:.1f} MB | {run['wall']:.1f} s | "
            f"{run['minutes'] * 60 / run['wall']:.0f}× | {target} | {met} |"
        )
    lines.append(
        f"| {args.long:g} min vs {args.short:g} min (stock) | | {growth * 100:+.1f} % | | | "
        f"within ±{TARGET_GROWTH * 100:g} % | {yes_no(ok_growth)} |"
    )
    lines.insert(3, f"- load average when finished: {load_now()} (other work on the machine skews timings)")
    report = "\n".join(lines)
    print()
    print(report)
    if not args.no_results:
        replace_section("bench_memory", report)
        print(f"\nwrote the bench_memory section of {_rel(BENCH / 'RESULTS.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
