"""Shared helpers for the benchmark scripts: machine description, tool paths, RESULTS.md sections.

Each script owns one section of bench/RESULTS.md, delimited by ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``; running the script replaces that section (or appends it) and leaves the others.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "RESULTS.md"
CHAIN_YAML = BENCH / "bench.yaml"

HEADER = """# Benchmark results

Written by the scripts in `bench/` (see `bench/README.md`); every figure below comes from a script's own
output.  Each section is replaced when its script is run again.
"""


def chain_command() -> list[str]:
    """The `chain` entry point installed next to this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "chain"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("chain")
    if found:
        return [found]
    return [sys.executable, "-m", "pedalchain.cli"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, str]:
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    try:
        import numpy
        import pedalboard

        versions = f"Python {platform.python_version()}, pedalboard {pedalboard.__version__}, numpy {numpy.__version__}"
    except ImportError:
        versions = f"Python {platform.python_version()}"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": date, "nproc": nproc, "cpu": _cpu_model(), "ram": _ram_gib(), "versions": versions, "load": load,
        "fingerprint": source_fingerprint(),
    }


SOURCES = ("chains/runner.py", "chains/audio_io.py", "chains/loudness.py", "chains/engine.py", "effects/native.py",
           "cli.py")
"""Library files whose content fingerprint is recorded with each result (the code changes under us)."""


def source_fingerprint() -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in SOURCES:
        path = ROOT / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"<missing>") + b"\0")
    return digest.hexdigest()[:12]


def machine_lines(info: dict[str, str]) -> str:
    return (
        f"- date: `{info['date']}`\n"
        f"- machine: {info['nproc']} cores (`nproc`), CPU `{info['cpu']}`, RAM {info['ram']}\n"
        f"- software: {info['versions']}\n"
        f"- load average when started: {info['load']}\n"
        f"- library source fingerprint: `{info['fingerprint']}` (sha256 of {', '.join(SOURCES)})\n"
    )


def replace_section(name: str, body: str) -> None:
    """Put ``body`` between this section's markers in RESULTS.md (creating the file or section)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text)


def load_now() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def yes_no(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


@contextlib.contextmanager
def one_restorer_thread() -> Iterator[None]:
    """The restorers on one thread inside (``PEDALCHAIN_RESTORER_THREADS=1``)."""
    from pedalchain.effects.restorers import THREADS_ENV

    saved = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[THREADS_ENV]
        else:
            os.environ[THREADS_ENV] = saved
