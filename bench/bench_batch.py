"""`chain apply` on a batch of short files: 1 and 2 local workers, and the Ray executor on this machine.

    python bench/bench_batch.py [--files 200] [--seconds 5] [--runs 5] [--no-ray] [--no-results]

Input: ``--files`` stereo 44.1 kHz PCM_16 WAVs of ``--seconds`` each from bench/make_audio.py (file ``i`` uses
seed ``i``), in 10 sub-folders of bench/data/batch/in/ (generated once; bench/data/ is git-ignored).
Chain: bench/bench.yaml (stock plugins: HighpassFilter -> Compressor -> Reverb -> Limiter).

  J1   chain apply bench/bench.yaml "bench/data/batch/in/**/*.wav" -o bench/data/batch/out/ --overwrite --json --jobs 1
  J2   ... --jobs 2
  RAY  ... --executor ray --address 127.0.0.1:PORT --jobs 2

RAY runs against a 2-CPU head started here with `ray start --head --block` before the timings (its start-up
is excluded) and stopped afterwards (SIGTERM to that process only).  One untimed warm-up of each, then
``--runs`` rounds J1 J2 RAY (order rotated every round); per command the median of:

* wall time of the whole command (interpreter start, chain check, workers started, every file written);
* steady-state rate: (files - 1) / (time from the first file's JSON line to the last one), i.e. without
  the executor's start-up (pool spawn or Ray connect + actors).

Replaces the `batch` section of bench/RESULTS.md unless --no-results.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_audio  # noqa: E402
from _results import BENCH, CHAIN_YAML, DATA, ROOT, chain_command, machine, machine_lines, replace_section, yes_no  # noqa: E402

TARGET_SPEEDUP = 1.6
TARGET_RAY_OVERHEAD = 0.25
BATCH = DATA / "batch"
FOLDERS = 10


def make_inputs(files: int, seconds: float) -> Path:
    """``files`` deterministic inputs under bench/data/batch/in/dNN/ (existing ones with the right shape kept)."""
    folder = BATCH / "in"
    wanted = {folder / f"d{i % FOLDERS:02d}" / f"f{i:04d}.wav" for i in range(files)}
    for path in folder.rglob("*.wav") if folder.exists() else []:
        if path not in wanted:
            path.unlink()  # left over from a run with other --files
    for i in range(files):
        make_audio.ensure(seconds / 60.0, folder / f"d{i % FOLDERS:02d}" / f"f{i:04d}.wav", "PCM_16", seed=i)
    return folder


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], files: int) -> tuple[float, float, float]:
    """(wall seconds, steady files per second, CPU seconds) of one `chain apply --json` run; exits on failure.

    CPU counts the command and its worker processes (not Ray's actors, which are the cluster's children).
    """
    cpu = _children_cpu_s()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stamps = [time.perf_counter() for line in process.stdout if line.startswith("{")]
    err = process.stderr.read()
    process.wait()
    wall = time.perf_counter() - started
    if process.returncode != 0 or len(stamps) != files:
        raise SystemExit(f"failed ({process.returncode}, {len(stamps)} of {files} files): {shlex.join(command)}\n{err}")
    steady = (files - 1) / max(stamps[-1] - stamps[0], 1e-9)
    return wall, steady, _children_cpu_s() - cpu


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RayHead:
    """A 2-CPU Ray head for the benchmark: `ray start --head --block` in its own session; stop() ends only it."""

    def __init__(self, cpus: int = 2) -> None:
        ray_cli = Path(sys.executable).parent / "ray"
        if not ray_cli.exists():
            raise SystemExit("ray is not installed here: pip install '.[ray]' (or pass --no-ray)")
        self.temp_dir = tempfile.mkdtemp(prefix="pcray-", dir="/tmp")
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(ray_cli), "start", "--head", "--block", "--num-cpus", str(cpus), "--port", str(self.port),
             "--temp-dir", self.temp_dir, "--include-dashboard=false", "--disable-usage-stats",
             "--dashboard-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        started = threading.Event()
        threading.Thread(target=self._drain, args=(started,), daemon=True).start()
        if not started.wait(90):
            self.stop()
            raise SystemExit("ray start did not come up within 90 s")

    def _drain(self, started: threading.Event) -> None:
        for line in self.process.stdout:
            if "Ray runtime started" in line:
                started.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # A user's install has its bytecode cached; PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make
    # every worker recompile every module.  The warm-up run writes the cache.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each file")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (>= 5 recommended)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    parser.add_argument("--no-results", action="store_true", help="do not touch bench/RESULTS.md")
    args = parser.parse_args()

    info = machine()
    make_inputs(args.files, args.seconds)
    pattern = str((BATCH / "in").relative_to(ROOT) / "**" / "*.wav")
    out = str((BATCH / "out").relative_to(ROOT)) + "/"
    base = [*chain_command(), "apply", str(CHAIN_YAML.relative_to(ROOT)), pattern, "-o", out, "--overwrite", "--json"]
    commands = {"J1": [*base, "--jobs", "1"], "J2": [*base, "--jobs", "2"]}
    head = None if args.no_ray else RayHead()
    try:
        if head is not None:
            commands["RAY"] = [*base, "--executor", "ray", "--address", head.address, "--jobs", "2"]
        print(f"{args.files} files x {args.seconds:g} s; warm-up ...", flush=True)
        for command in commands.values():
            run(command, args.files)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.runs):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                results[name].append(run(commands[name], args.files))
            print(f"  round {round_ + 1}: " + ", ".join(
                f"{name} {results[name][-1][0]:.2f} s ({results[name][-1][1]:.1f} files/s steady)" for name in names
            ), flush=True)
    finally:
        if head is not None:
            head.stop()
    text = report(args, info, commands, results)
    print()
    print(text)
    if not args.no_results:
        replace_section("batch", text)
        print(f"\nwrote the batch section of {BENCH.relative_to(ROOT) / 'RESULTS.md'}")
    return 0


def report(args: argparse.Namespace, info: dict[str, str], commands: dict[str, list[str]],
           results: dict[str, list[tuple[float, float, float]]]) -> str:
    wall = {name: statistics.median(t for t, _, _ in runs) for name, runs in results.items()}
    steady = {name: statistics.median(r for _, r, _ in runs) for name, runs in results.items()}
    cores = {name: statistics.median(c / t for t, _, c in runs) for name, runs in results.items()}
    cpu = {name: statistics.median(c for _, _, c in runs) for name, runs in results.items()}
    rate = {name: args.files / wall[name] for name in wall}
    audio_s = args.files * args.seconds
    speedup, speedup_steady = rate["J2"] / rate["J1"], steady["J2"] / steady["J1"]
    shown = {name: shlex.join(["chain", *command[len(chain_command()):]]) for name, command in commands.items()}
    if "RAY" in shown:
        shown["RAY"] = shown["RAY"].replace(commands["RAY"][-3], "127.0.0.1:PORT")
    lines = [
        "## batch: `chain apply` on many short files, local workers and Ray",
        "",
        machine_lines(info).rstrip(),
        f"- load average when finished: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other work on this 2-core machine skews timings)",
        f"- input: {args.files} files x {args.seconds:g} s stereo 44.1 kHz PCM_16 ({audio_s / 60:.1f} min of audio) "
        "from `bench/make_audio.py` (seed = file number), in 10 sub-folders",
        "- chain: `bench/bench.yaml` (HighpassFilter 30 Hz -> Compressor -18 dB 3:1 -> Reverb room 0.5 -> Limiter)",
        *[f"- {name}: `{command}`" for name, command in shown.items()],
        f"- script: `python bench/bench_batch.py --files {args.files} --seconds {args.seconds:g} --runs {args.runs}"
        f"{' --no-ray' if args.no_ray else ''}` (1 untimed warm-up each, then {args.runs} rounds, order rotated; "
        "Ray head with 2 CPUs started before and stopped after the timings, not timed)",
        "- wall: the whole command; steady: (files - 1) / (first to last file's JSON line), i.e. without start-up",
        "",
        "| command | median wall | files/s (wall) | x real time | files/s (steady, median) | CPU time (median) | "
        "CPU cores busy | all walls (s) |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {wall[name]:.2f} s | {rate[name]:.1f} | {audio_s / wall[name]:.0f}x | {steady[name]:.1f} | "
          + ("n/a (actors) | n/a" if name == "RAY" else f"{cpu[name]:.1f} s | {cores[name]:.2f}")
          + f" | {', '.join(f'{t:.2f}' for t, _, _ in results[name])} |" for name in results],
        "",
        "| measure | result | target | met? |",
        "|---|---|---|---|",
        f"| speed-up J2/J1, files/s from wall | {speedup:.2f} | >= {TARGET_SPEEDUP} | "
        f"{yes_no(speedup >= TARGET_SPEEDUP)} |",
        f"| speed-up J2/J1, steady files/s | {speedup_steady:.2f} | >= {TARGET_SPEEDUP} | "
        f"{yes_no(speedup_steady >= TARGET_SPEEDUP)} |",
    ]
    if "RAY" in results:
        overhead, overhead_steady = wall["RAY"] / wall["J2"] - 1, steady["J2"] / steady["RAY"] - 1
        lines += [
            f"| Ray overhead vs J2, wall (connect + actors + files) | {overhead * 100:+.0f} % | "
            f"<= {TARGET_RAY_OVERHEAD * 100:.0f} % | {yes_no(overhead <= TARGET_RAY_OVERHEAD)} |",
            f"| Ray overhead vs J2, steady files/s | {overhead_steady * 100:+.0f} % | "
            f"<= {TARGET_RAY_OVERHEAD * 100:.0f} % | {yes_no(overhead_steady <= TARGET_RAY_OVERHEAD)} |",
            "",
            "Ray sends up to 4 files per task (`FILES_PER_RAY_TASK`), so its JSON lines arrive in groups and its "
            "first one later: the steady figure flatters Ray, the wall figure is the fair one.",
        ]
    lines += [
        "",
        "CPU time: the command and its worker processes (user + sys); CPU cores busy = CPU time / wall.  "
        f"J2 spends {cpu['J2'] / cpu['J1'] - 1:+.0%} CPU time over J1 (two workers each importing and building "
        f"the chain, results passed back).  {_cpu_note(cores['J1'])}",
    ]
    return "\n".join(lines)


def _cpu_note(j1_cores: float) -> str:
    if j1_cores > 1.0:
        return (f"One in-process job already keeps {j1_cores:.2f} cores busy (the runner decodes and runs the chain "
                "in one thread while another meters, dithers and encodes), so on 2 cores two workers can be at most "
                f"{2 / j1_cores:.2f}x as fast as one, less whatever else runs on the machine (see the load average).")
    return (f"One in-process job got only {j1_cores:.2f} of a core: other work on the machine took the rest, so "
            "these figures measure the contention more than the executors.")


if __name__ == "__main__":
    sys.exit(main())
