"""Batch rendering: many files through one chain, resumable, on local worker processes or a Ray cluster.

The CLI turns its arguments into :class:`Job` s (:func:`expand_inputs` for globs and manifests,
:func:`plan_jobs` for output paths, collisions refused before any work), then :func:`run_batch` renders
them with an executor and reports each file through a callback; library code never prints.

Each worker builds the chain once from the YAML text (plugins and models cannot be pickled) and runs
:func:`~pedalchain.chains.runner.process_file` per file, so outputs are written atomically as always.
Stopping is cooperative: when the caller's ``stop`` event is set, workers give up at the next block
(the runner discards the temporary file) and the resume record stays consistent with what is on disk.

Resume record: ``<output folder>/.pedalchain-state.json``, rewritten atomically as files finish.  A file
is skipped by ``--resume`` when its input path, size and mtime, the settings digest (chain YAML plus the
files it references, output format/subtype, tail, sanitize, package versions) and the output's size and
mtime all match the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import glob
import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import AudioFileError, ChainFileError, OutputExistsError, ParameterError, PedalchainError
from .atomic import write_atomically
from .audio_io import CONTAINERS
from .engine import Chain
from .runner import FileSummary, RunOptions, default_output_path, process_file

if TYPE_CHECKING:  # process pools and logging load only with --jobs N / --executor ray (start-up time)
    from concurrent.futures import Future

STATE_NAME = ".pedalchain-state.json"
REPORT_NAME = "chain-report.json"
STATE_VERSION = 1
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "PEDALCHAIN_TORCH_THREADS": "1", "PEDALCHAIN_RESTORER_THREADS": "1"}
"""Set in every worker's environment before it imports numpy or torch: N workers on N cores, no oversubscription."""
IN_FLIGHT_PER_WORKER = 2
"""Files (Ray: tasks) queued per worker, so a worker never waits for the next file."""
FILES_PER_RAY_TASK = 4
"""Files one Ray task renders while many are left: each task costs the driver, the raylet and the actor about
2 ms, as much as rendering a 5-second file; near the end tasks shrink to one file so that no actor idles."""
RAY_TASK_EVENTS = {"RAY_task_events_report_interval_ms": "0"}
"""The driver does not report its task events to the dashboard: flushing them on disconnect took 0.25 s per
run.  Progress and failures are ours (the summary and chain-report.json); set the variable to report them."""
POLL_S = 0.2
"""How often a waiting executor looks at the stop event."""
RAY_INSTALL_HINT = "pip install 'pedalchain[ray]'"

Status = Literal["done", "skipped", "failed", "cancelled"]


# -- inputs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One input: its path, the folder its output mirrors the tree from (None: flat), and a known problem."""

    path: Path
    base: Path | None = None
    error: str | None = None


@dataclass
class Inputs:
    """Expanded inputs; ``expanded`` when a glob or manifest was among them (a batch, even of one file)."""

    files: list[InputFile]
    expanded: bool = False
    excluded: int = 0


def is_pattern(spec: str) -> bool:
    """Whether an input argument is a glob pattern the CLI expands itself (a file that exists is taken as named)."""
    return any(char in spec for char in "*?[") and not os.path.exists(spec)


def is_manifest(spec: str) -> bool:
    """Whether an input argument is a manifest: a ``.txt`` file listing one audio path per line."""
    return spec.lower().endswith(".txt") and not is_pattern(spec)


def expand_inputs(specs: Sequence[str], exclude: Path | None = None, chain_stem: str | None = None) -> Inputs:
    """Explicit paths as given; glob patterns expanded (recursive ``**``, sorted); ``.txt`` manifests read.

    Order follows the arguments.  Glob matches that are outputs of an earlier run are left out, so rerunning
    a pattern does not process them: those inside ``exclude`` (the output folder) or, when outputs go beside
    the inputs, those named ``*.<chain_stem>.<ext>``.  Raises ParameterError for a pattern or manifest
    without files.
    """
    inputs = Inputs(files=[])
    entries: list[InputFile | Path] = []  # a bare Path is a glob match: its base is known once all are found
    for spec in specs:
        if is_manifest(spec):
            inputs.expanded = True
            entries.extend(read_manifest(Path(spec)))
        elif is_pattern(spec):
            inputs.expanded = True
            found = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if os.path.isfile(p)]
            if not found:
                raise ParameterError("no files match this pattern", where=spec)
            kept = [path for path in found if not (_inside(path, exclude) or _named_as_output(path, chain_stem))]
            inputs.excluded += len(found) - len(kept)
            if not kept:
                raise ParameterError("every file matching this pattern is an output of an earlier run", where=spec)
            entries.extend(kept)
        else:
            entries.append(InputFile(Path(spec)))
    matched = [entry for entry in entries if isinstance(entry, Path)]
    base = Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in matched])) if matched else None
    inputs.files = [InputFile(entry, base) if isinstance(entry, Path) else entry for entry in entries]
    return inputs


def read_manifest(manifest: Path) -> list[InputFile]:
    """Paths listed in ``manifest``, relative to its folder; blank lines and ``#`` comments are ignored.

    A listed file that does not exist becomes an input with an error (reported, the others still run).
    """
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParameterError("no such manifest file", where=manifest) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterError(f"cannot read manifest: {error}", where=manifest) from None
    base = Path(os.path.abspath(manifest.parent))
    files = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        error = None if path.exists() else f"{path}: no such file (listed in {manifest}:{number})"
        files.append(InputFile(path, base, error))
    if not files:
        raise ParameterError("manifest lists no files (one path per line; # starts a comment)", where=manifest)
    return files


def _named_as_output(path: Path, chain_stem: str | None) -> bool:
    """Whether ``path`` is named like an output written beside its input (``song.<chain>.wav``)."""
    return chain_stem is not None and path.stem.endswith(f".{chain_stem}")


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
    except ValueError:
        return False
    return True


# -- output planning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One file to render: ``index`` in the batch, paths as the user sees them, and a known problem."""

    index: int
    input: Path
    output: Path
    error: str | None = None


@dataclass
class Plan:
    """Jobs plus the output folder (None when outputs go beside the inputs or to one named file)."""

    jobs: list[Job]
    folder: Path | None
    batch: bool


def plan_jobs(inputs: Inputs, chain_stem: str, output: str | None, container: str | None = None) -> Plan:
    """Output paths for every input; creates the output folder; refuses two inputs with one output.

    Without ``output`` each file goes beside its input (``song.<chain>.wav``).  A folder output (ends with
    ``/``, exists as a folder, several inputs, or a glob/manifest) holds explicit inputs by name and
    mirrors globbed inputs' tree relative to their common parent folder (manifests: the manifest's folder).
    """
    files = inputs.files
    is_folder = bool(output) and (
        output.endswith(("/", "\\")) or Path(output).is_dir() or len(files) > 1 or inputs.expanded
    )
    folder = Path(output) if output and is_folder else None
    named = CONTAINERS.get(Path(output).suffix.lower()) if output and folder is None else None
    if container and named and named != container.upper():  # before any work: it would fail every file
        raise ParameterError(f"output extension '{Path(output).suffix}' does not match --format {container.upper()}",
                             where=output)
    if folder is not None and not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as error:
            raise AudioFileError(f"cannot create output folder: {error.strerror}", where=folder) from None
    jobs = []
    for index, item in enumerate(files):
        target = _target(item, chain_stem, Path(output) if output else None, folder)
        if container and (output is None or folder is not None):
            target = target.with_suffix("." + container)
        jobs.append(Job(index, item.path, target, item.error))
    check_collisions(jobs)
    return Plan(jobs, folder, batch=inputs.expanded or len(files) > 1)


def _target(item: InputFile, chain_stem: str, output: Path | None, folder: Path | None) -> Path:
    if folder is None:
        return default_output_path(item.path, chain_stem, output, False)
    subfolder = folder
    if item.base is not None:
        try:
            subfolder = folder / Path(os.path.abspath(item.path.parent)).relative_to(item.base)
        except ValueError:  # a manifest entry outside the manifest's folder: by name, at the top
            subfolder = folder
    return default_output_path(item.path, chain_stem, subfolder, True)


def check_collisions(jobs: Sequence[Job]) -> None:
    """Raise OutputExistsError, before any work, when two inputs would be written to one output."""
    seen: dict[str, Job] = {}
    for job in jobs:
        key = os.path.normcase(os.path.abspath(job.output))
        if key in seen:
            first = seen[key].input
            hint = " (a quoted glob pattern keeps the folder tree)" if first.parent != job.input.parent else ""
            raise OutputExistsError(
                f"both {first} and {job.input} would be written here; use separate folders{hint}", where=job.output
            )
        seen[key] = job


# -- the chain as workers get it ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChainSpec:
    """What a worker builds its chain from: the YAML text, its path (anchors relative paths) and a timeout."""

    text: str
    source: str
    plugin_timeout_s: float

    @classmethod
    def from_path(cls, path: Path, plugin_timeout_s: float) -> ChainSpec:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ChainFileError(f"cannot read chain file: {error}", where=path) from None
        return cls(text, str(path), plugin_timeout_s)

    def build(self) -> Chain:
        from .yaml_io import chain_from_yaml

        return chain_from_yaml(self.text, source=Path(self.source), plugin_timeout_s=self.plugin_timeout_s)

    def digest(self) -> str:
        """sha256 of the YAML text and every file it references (content; VST3 bundles by path and mtimes)."""
        import yaml

        hasher = hashlib.sha256(self.text.encode("utf-8"))
        data = yaml.safe_load(self.text) or {}
        steps = data.get("steps") if isinstance(data, dict) else None
        base_dir = Path(self.source).resolve().parent
        for path in sorted(set(_referenced_paths(steps, base_dir))):
            hasher.update(b"\0" + str(path).encode("utf-8") + b"\0" + _path_digest(path).encode("ascii"))
        return hasher.hexdigest()


SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models" / "weights"
"""Where models shipped with pedalchain live, so a ``model:`` step naming one by bare name is hashed too."""
MODEL_SUFFIXES = ("", ".safetensors", ".nam")


def _referenced_paths(node: Any, base_dir: Path) -> Iterator[Path]:
    """Every string value under ``node`` that names an existing file or ``.vst3`` bundle.

    A value is tried as a path (relative ones against the YAML's folder) and as a shipped model name.
    """
    if isinstance(node, dict):
        for value in node.values():
            yield from _referenced_paths(value, base_dir)
    elif isinstance(node, list):
        for value in node:
            yield from _referenced_paths(value, base_dir)
    elif isinstance(node, str) and node.strip():
        path = Path(node).expanduser()
        candidates = [path if path.is_absolute() else base_dir / path]
        if len(path.parts) == 1:
            candidates += [SHIPPED_MODELS / f"{node}{suffix}" for suffix in MODEL_SUFFIXES]
        for candidate in candidates:
            try:
                if candidate.is_file() or (candidate.is_dir() and candidate.suffix.lower() == ".vst3"):
                    yield candidate.resolve()
            except (OSError, ValueError):  # not a usable path (too long, NUL byte): a plain string
                continue


def _path_digest(path: Path) -> str:
    """Content sha256 of a file; for a bundle folder, sha256 of its files' relative paths, sizes and mtimes."""
    hasher = hashlib.sha256()
    if path.is_dir():
        for root, folders, names in os.walk(path):
            folders.sort()
            for name in sorted(names):
                stat = os.stat(os.path.join(root, name))
                relative = os.path.relpath(os.path.join(root, name), path)
                hasher.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        return hasher.hexdigest()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions that can change a rendering: pedalchain, pedalboard, numpy, soundfile, libsndfile, torch."""
    from importlib import metadata

    import soundfile

    from .. import __version__

    versions = {"pedalchain": __version__, "libsndfile": str(soundfile.__libsndfile_version__)}
    for name in ("pedalboard", "numpy", "soundfile", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def settings_for(spec: ChainSpec, options: RunOptions) -> dict[str, Any]:
    """Everything besides the input file that an output depends on (block size does not)."""
    return {
        "chain": spec.digest(), "format": options.container, "subtype": options.subtype, "tail_s": options.tail_s,
        "sanitize": options.sanitize, "versions": package_versions(),
    }


def _digest_of(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


# -- resume record -------------------------------------------------------------------------------------


def write_json_atomically(path: Path, data: Any, indent: int | None = None) -> None:
    """Write ``data`` as JSON to a hidden temporary file beside ``path``, then rename it into place."""
    text = json.dumps(data, indent=indent, separators=None if indent else (",", ":"))  # no indent: C encoder
    write_atomically(path, text)


class ResumeState:
    """The record of finished files in an output folder, keyed by output path relative to the folder.

    Writes are atomic and follow each finished file, coalesced only when the record is so large that
    rewriting it would cost more than ~5 % of the run; :meth:`flush` with ``force`` writes what is left.
    """

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.path = folder / STATE_NAME
        self.folder = folder
        self.settings = settings
        self.digest = _digest_of(settings)
        self.files: dict[str, dict[str, Any]] = {}
        self.warning: str | None = None
        self._dirty = False
        self._last_write = 0.0
        self._write_cost = 0.0
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            self.warning = f"{self.path}: unreadable resume record ({error}); starting a new one"
            return
        if isinstance(data, dict) and data.get("version") == STATE_VERSION and isinstance(data.get("files"), dict):
            self.files = data["files"]
        else:
            self.warning = f"{self.path}: resume record of another version; starting a new one"

    def key(self, job: Job) -> dict[str, Any] | None:
        """What must match for ``job`` to count as rendered: input path, size, mtime and the settings digest."""
        try:
            stat = job.input.stat()
        except OSError:
            return None
        return {"input": os.path.abspath(job.input), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "settings": self.digest}

    def _name(self, job: Job) -> str:
        return Path(os.path.relpath(os.path.abspath(job.output), os.path.abspath(self.folder))).as_posix()

    def is_current(self, job: Job) -> bool:
        """Whether the output is there, unchanged, and was rendered from this input with these settings."""
        entry = self.files.get(self._name(job))
        key = self.key(job)
        if entry is None or key is None or entry.get("key") != key:
            return False
        try:
            stat = job.output.stat()
        except OSError:
            return False
        return entry.get("output_size") == stat.st_size and entry.get("output_mtime_ns") == stat.st_mtime_ns

    def owns(self, job: Job) -> bool:
        """Whether an earlier run recorded rendering this output (so a stale one may be replaced)."""
        return self._name(job) in self.files

    def record(self, job: Job, key: dict[str, Any] | None, output_size: int, output_mtime_ns: int) -> None:
        self.files[self._name(job)] = {
            "key": key, "output_size": output_size, "output_mtime_ns": output_mtime_ns,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._dirty = True
        self.flush()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_write < 20 * self._write_cost):
            return
        write_json_atomically(self.path, {"version": STATE_VERSION, "settings": self.settings, "files": self.files})
        self._last_write = time.monotonic()
        self._write_cost = self._last_write - now
        self._dirty = False


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` so two runs never write one resume record (POSIX; best effort)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputExistsError(
                "another `chain apply` is writing into this folder; wait for it or choose another -o", where=folder
            ) from None
        except OSError:  # a file system without flock (some network mounts): go on unlocked
            pass
        yield
    finally:
        os.close(handle)


# -- workers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    """A job as sent to a worker (paths absolute for Ray, whose workers run elsewhere) and whether to overwrite."""

    index: int
    input: str
    output: str
    overwrite: bool
    output_before: tuple[int, int] | None = None
    """(size, mtime_ns) of the output when the batch was planned; None when there was none."""


@dataclass
class Outcome:
    """What a worker reports for one item; ``crashed`` when the worker process died under it."""

    index: int
    summary: FileSummary | None = None
    error: str | None = None
    cancelled: bool = False
    crashed: bool = False
    output_size: int = 0
    output_mtime_ns: int = 0


class Cancelled(KeyboardInterrupt):
    """Raised from the progress callback when the batch is stopping; the runner discards the temporary file."""


class Renderer:
    """A worker's chain, built once, and the per-file rendering every executor shares."""

    def __init__(self, chain: Chain | None, options: RunOptions, error: str | None = None) -> None:
        self.chain, self.options, self.error = chain, options, error

    @classmethod
    def build(cls, spec: ChainSpec, options: RunOptions) -> Renderer:
        """Build the chain from ``spec``; a failure is kept and reported for every file (the pool survives)."""
        try:
            return cls(spec.build(), options)
        except PedalchainError as error:
            return cls(None, options, str(error))

    def render(
        self, item: WorkItem, should_stop: Callable[[], bool], progress: Callable[[float], None] | None = None
    ) -> Outcome:
        """Render one file; its problems (errors, a stop) come back in the Outcome, never as exceptions."""
        if self.chain is None:
            return Outcome(item.index, error=self.error)
        if should_stop():
            return Outcome(item.index, cancelled=True)

        def on_progress(seconds: float) -> None:
            if should_stop():
                raise Cancelled
            if progress is not None:
                progress(seconds)

        options = dataclasses.replace(self.options, overwrite=self.options.overwrite or item.overwrite)
        try:
            summary = process_file(self.chain, item.input, item.output, options, progress=on_progress)
        except Cancelled:
            return Outcome(item.index, cancelled=True)
        except (PedalchainError, OSError) as error:
            message = str(error) if isinstance(error, PedalchainError) else str(error.strerror or error)
            # a chain's error names the YAML line; in a run over many files it must name the file too
            return Outcome(item.index, error=message if str(item.input) in message else f"{item.input}: {message}")
        except Exception as error:  # a bug or a plugin's own exception: this file fails, the batch goes on
            return Outcome(item.index, error=f"{item.input}: unexpected {type(error).__name__}: {error}")
        stat = os.stat(item.output)
        return Outcome(item.index, summary, output_size=stat.st_size, output_mtime_ns=stat.st_mtime_ns)


def remove_temporaries(outputs: Sequence[Path]) -> int:
    """Delete what killed writers of ``outputs`` left beside them; returns how many files went.

    The names are the runner's: ``.<name>.<random>.partial`` (AtomicAudioWriter) and ``.<name>.pass1.rf64``
    (the loudness pass).  Each folder is listed once.  Call it only when no live process can be writing
    these outputs.
    """
    names: dict[str, set[str]] = {}
    for output in outputs:
        names.setdefault(os.path.dirname(os.path.abspath(output)), set()).add(output.name)
    removed = 0
    for folder, wanted in names.items():
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(folder):
                if _temporary_of(entry.name) in wanted:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
    return removed


def _temporary_of(name: str) -> str | None:
    """The output name a runner temporary file ``name`` belongs to, or None when it is not one."""
    if not name.startswith("."):
        return None
    if name.endswith(".pass1.rf64"):
        return name[1 : -len(".pass1.rf64")]
    if name.endswith(".partial"):
        return name[1 : -len(".partial")].rsplit(".", 1)[0]
    return None


def make_output_folders(items: Sequence[WorkItem]) -> list[Path]:
    """Create the folders the items' outputs go to, and missing parents, before any worker starts (a worker that
    made its own folder and removed it when its file failed raced a sibling writing there); returns those
    created, for :func:`remove_empty_folders` when the batch ends."""
    created: list[Path] = []
    for folder in sorted({Path(item.output).parent for item in items}):
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except OSError:  # unwritable, or a file in the way: that file fails alone, saying so
                break
            created.append(path)
    return created


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Remove those of ``folders`` that no output went to (its file failed or was not rendered), deepest first."""
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty
            folder.rmdir()


def pin_threads() -> None:
    """Apply PEDALCHAIN_TORCH_THREADS to torch if a neural step loaded it (env vars cover BLAS/OpenMP)."""
    torch = sys.modules.get("torch")
    threads = os.environ.get("PEDALCHAIN_TORCH_THREADS")
    if torch is not None and threads:
        torch.set_num_threads(int(threads))


# -- executors -----------------------------------------------------------------------------------------


class WorkQueue:
    """Items not yet sent to a worker; an item whose worker crashed is retried once, first."""

    def __init__(self, items: Sequence[WorkItem]) -> None:
        self._items = deque(items)
        self._retries: deque[WorkItem] = deque()
        self._retried: set[int] = set()

    def pop(self) -> WorkItem | None:
        if self._retries:
            return self._retries.popleft()
        return self._items.popleft() if self._items else None

    def pop_many(self, limit: int) -> list[WorkItem]:
        """Up to ``limit`` items to send together; a retried item goes alone, so that when it crashes its worker
        again it takes no other file down with it."""
        if self._retries:
            return [self._retries.popleft()]
        return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    def retry(self, item: WorkItem) -> bool:
        """Queue ``item`` again unless it already crashed a worker once."""
        if item.index in self._retried:
            return False
        self._retried.add(item.index)
        self._retries.append(item)
        return True

    def __len__(self) -> int:
        return len(self._items) + len(self._retries)


OnOutcome = Callable[[WorkItem, Outcome], None]


class InProcessExecutor:
    """``--jobs 1``: this process renders the files one after another with the chain already loaded."""

    name = "in-process"

    def __init__(self, chain: Chain, options: RunOptions,
                 file_progress: Callable[[int, float], None] | None = None) -> None:
        self.renderer = Renderer(chain, options)
        self.file_progress = file_progress
        self.workers = 1

    def close(self) -> None:
        """Nothing to release: the chain belongs to the caller."""

    def run(self, queue: WorkQueue, on_outcome: OnOutcome, stop: threading.Event) -> None:
        from threadpoolctl import threadpool_limits

        # One limit for the whole run: the file runner limits BLAS to one thread per file as well, but
        # lifting that limit between files woke OpenBLAS's idle threads, which spun: 200 short files took
        # 6.4 s of wall and 11 s of CPU instead of 4.5 s and 5.7 s.
        with threadpool_limits(limits=1, user_api="blas"):
            while not stop.is_set() and (item := queue.pop()) is not None:
                progress = functools.partial(self.file_progress, item.index) if self.file_progress else None
                on_outcome(item, self.renderer.render(item, stop.is_set, progress))


_pool_renderer: Renderer | None = None
_pool_stop: Any = None


def _init_pool_worker(spec: ChainSpec, options: RunOptions, stop: Any) -> None:
    """ProcessPoolExecutor initializer: ignore Ctrl-C and SIGTERM/SIGHUP sent to the whole process group (the
    parent stops us, and removes what we were writing), build the chain once."""
    global _pool_renderer, _pool_stop
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _pool_stop = stop
    _pool_renderer = Renderer.build(spec, options)
    pin_threads()
    # freed while the worker exits, where the lines some plugins print when deleted can be dropped
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _release_pool_renderer, exitpriority=10)


def _release_pool_renderer() -> None:
    global _pool_renderer
    from ..effects.chatter import PLUGIN_TEARDOWN_CHATTER, chatter_dropped

    with chatter_dropped(PLUGIN_TEARDOWN_CHATTER):
        _pool_renderer = None
        gc.collect()


def _pool_render(item: WorkItem) -> Outcome:
    assert _pool_renderer is not None, "worker used before its initializer ran"
    return _pool_renderer.render(item, _pool_stop.is_set)


@contextlib.contextmanager
def _spawning() -> Iterator[None]:
    """Around starting worker processes: the thread-pinning environment, and Ctrl-C held back.

    A child inherits the blocked signal and discards it when its initializer ignores SIGINT, so a
    Ctrl-C while it is still importing cannot print a traceback; the parent gets the signal afterwards.
    """
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update(THREAD_ENV)
    can_mask = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can_mask:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if can_mask:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalPoolExecutor:
    """``--jobs N``: N spawned worker processes, each building the chain once in its initializer.

    A worker that dies (a plugin crashing the process) breaks the pool: the files it held are retried
    once in a fresh pool, then reported as failed.
    """

    name = "local"

    def __init__(self, spec: ChainSpec, options: RunOptions, workers: int) -> None:
        # N workers already fill N cores: helper I/O threads in each would only oversubscribe them
        self.spec, self.options, self.workers = spec, dataclasses.replace(options, overlap_io=False), workers

    def close(self) -> None:
        """Nothing to release: each pool is shut down when its run ends."""

    def run(self, queue: WorkQueue, on_outcome: OnOutcome, stop: threading.Event) -> None:
        while len(queue) and not stop.is_set():
            self._run_pool(queue, on_outcome, stop)

    def _run_pool(self, queue: WorkQueue, on_outcome: OnOutcome, stop: threading.Event) -> None:
        """One pool's life: keep IN_FLIGHT_PER_WORKER files per worker queued until done, stopped or broken."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        context = multiprocessing.get_context("spawn")
        cancel = context.Event()
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_pool_worker,
                                   initargs=(self.spec, self.options, cancel))
        pending: dict[Future[Outcome], WorkItem] = {}
        broken = False
        try:
            while True:
                while not (broken or stop.is_set()) and len(pending) < IN_FLIGHT_PER_WORKER * self.workers:
                    item = queue.pop()
                    if item is None:
                        break
                    with _spawning():
                        pending[pool.submit(_pool_render, item)] = item
                if not pending:
                    return
                if stop.is_set():
                    cancel.set()
                done, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    broken |= self._report(future, item, on_outcome)
        finally:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for future, item in pending.items():  # finished while we were being interrupted: still recorded
                if future.done() and not future.cancelled() and future.exception() is None:
                    on_outcome(item, future.result())

    @staticmethod
    def _report(future: Future[Outcome], item: WorkItem, on_outcome: OnOutcome) -> bool:
        """Hand the future's outcome on; True when the pool broke under it."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            outcome = future.result()
        except BrokenProcessPool:
            on_outcome(item, Outcome(item.index, crashed=True, error=(
                f"{item.input}: the worker process died while rendering it (a plugin crashed?)")))
            return True
        on_outcome(item, outcome)
        return False


class RayWorker:
    """A Ray actor body: builds the chain once, renders one file per task, stops when the flag says so.

    Ray starts its workers with OMP_NUM_THREADS=1 (OpenBLAS follows it); the other thread limits are set
    here, before the chain (and with it torch) is loaded.  Plain actors start on Ray's already running
    workers, where a ``runtime_env`` would cost a fresh process each.
    """

    def __init__(self, spec: ChainSpec, options: RunOptions, stop_flag: Any) -> None:
        os.environ.update(THREAD_ENV)
        self.renderer = Renderer.build(spec, options)
        self.stop_flag = stop_flag
        self._stopped = False
        self._asked: Any = None
        self._asked_at = 0.0
        pin_threads()

    def _should_stop(self) -> bool:
        """Look at the driver's flag without waiting: one question in flight, asked at most every POLL_S."""
        import ray

        if self._stopped:
            return True
        if self._asked is not None:
            ready, _ = ray.wait([self._asked], timeout=0)
            if ready:
                self._stopped, self._asked = bool(ray.get(ready[0])), None
        elif time.monotonic() - self._asked_at >= POLL_S:
            self._asked, self._asked_at = self.stop_flag.is_set.remote(), time.monotonic()
        return self._stopped

    def render(self, items: list[WorkItem]) -> list[Outcome]:
        return [self.renderer.render(item, self._should_stop) for item in items]


class RayStopFlag:
    """A tiny Ray actor the driver sets when the batch is stopping."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


def import_ray() -> Any:
    """The ray module, or a one-line ParameterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ParameterError(
            f"the Ray executor needs the ray package: {RAY_INSTALL_HINT}", where="--executor"
        ) from None
    return ray


class RayExecutor:
    """``--executor ray``: one actor per CPU of the cluster (or ``workers``), a few files per task
    (:data:`FILES_PER_RAY_TASK`).

    Every node must see the inputs, outputs, chain file and what it references at the same paths
    (a network mount); results (summaries) stream back as files finish, audio never goes through Ray.
    """

    name = "ray"

    def __init__(self, spec: ChainSpec, options: RunOptions, address: str | None, workers: int | None) -> None:
        self.spec = dataclasses.replace(spec, source=os.path.abspath(spec.source))  # workers run elsewhere
        self.options, self.address = dataclasses.replace(options, overlap_io=False), address  # as LocalPoolExecutor
        self.ray = import_ray()
        self._connect()
        self.workers = workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        # started now, so that they load while the caller plans the batch
        self.flag = self.ray.remote(RayStopFlag).options(num_cpus=0).remote()
        self.worker_class = self.ray.remote(RayWorker).options(num_cpus=1)
        self.actors = [self._actor() for _ in range(self.workers)]

    def _connect(self) -> None:
        import logging

        for name, value in RAY_TASK_EVENTS.items():
            os.environ.setdefault(name, value)  # read when ray.init creates this process's core worker
        _ray_messages_to_stderr(self.ray)
        _check_reachable(self.address if self.address not in (None, "auto") else os.environ.get("RAY_ADDRESS"))
        try:
            self.ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            reason = str(error).strip().split("\n")[0].split(". ")[0] or type(error).__name__
            raise ParameterError(
                f"cannot connect to a Ray cluster at {self.address or 'auto'}: {reason} "
                "(start one with `ray start --head`)",
                where="--address",
            ) from None

    def close(self) -> None:
        """Disconnect from the cluster (our actors go with the connection; the cluster stays up)."""
        if self.ray.is_initialized():
            self.ray.shutdown()

    def run(self, queue: WorkQueue, on_outcome: OnOutcome, stop: threading.Event) -> None:
        self._dispatch(queue, on_outcome, stop)

    def _actor(self) -> Any:
        return self.worker_class.remote(self.spec, self.options, self.flag)

    def _dispatch(self, queue: WorkQueue, on_outcome: OnOutcome, stop: threading.Event) -> None:
        ray, actors = self.ray, self.actors
        in_flight: dict[Any, tuple[int, Any, list[WorkItem]]] = {}  # task -> (slot, actor, items)
        load = [0] * len(actors)
        stopping = False
        while True:
            while not stop.is_set() and min(load) < IN_FLIGHT_PER_WORKER:
                size = max(1, min(FILES_PER_RAY_TASK, len(queue) // (IN_FLIGHT_PER_WORKER * len(actors))))
                items = queue.pop_many(size)
                if not items:
                    break
                slot = load.index(min(load))
                task = actors[slot].render.remote([_absolute(item) for item in items])
                in_flight[task] = (slot, actors[slot], items)
                load[slot] += 1
            if not in_flight:
                return
            if stop.is_set() and not stopping:
                stopping = True
                self.flag.set.remote()
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
            for ref in ready:
                slot, actor, items = in_flight.pop(ref)
                load[slot] -= 1
                outcomes = self._outcomes(ref, items)
                if outcomes[0].crashed and actors[slot] is actor:  # the first of its tasks to report it: replace it
                    actors[slot] = self._actor()
                for item, outcome in zip(items, outcomes, strict=True):
                    on_outcome(item, outcome)

    def _outcomes(self, ref: Any, items: list[WorkItem]) -> list[Outcome]:
        """The task's outcomes, one per item; when its actor died, every item crashed (each is retried alone)."""
        ray = self.ray
        try:
            outcomes: list[Outcome] = ray.get(ref)
        except ray.exceptions.RayActorError as error:
            return [Outcome(item.index, crashed=True, error=(
                f"{item.input}: the Ray worker died while rendering it ({_last_line(error)})")) for item in items]
        except ray.exceptions.RayError as error:
            return [Outcome(item.index, error=f"{item.input}: Ray task failed: {_last_line(error)}") for item in items]
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.error is not None:  # name the files as the user did
                remote = _absolute(item)
                outcome.error = outcome.error.replace(remote.output, item.output).replace(remote.input, item.input)
        return outcomes


RAY_CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str | None) -> None:
    """ParameterError unless something accepts a TCP connection at a ``host:port`` cluster address within
    :data:`RAY_CONNECT_TIMEOUT_S`: ``ray.init`` retries a dead address for minutes, logging each try.  ``auto``
    (``RAY_ADDRESS`` unset), none and other forms are left to Ray (it says at once when it finds no cluster)."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ParameterError(
            f"cannot connect to a Ray cluster at {address}: nothing answers there ({error.strerror or error}); "
            "start one with `ray start --head`",
            where="--address",
        ) from None


def _ray_messages_to_stderr(ray: Any) -> None:
    """Ray's driver prints the cluster's messages ("(raylet) A worker died ...") to stdout, where our per-file
    lines go (JSON objects with --json); send them to stderr, with our own messages.  Ray has no setting for this,
    so the printer (``ray._private.worker.print_to_stdstream``, ray 2.60) is wrapped; left alone if it moved."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    printer = getattr(module, "print_to_stdstream", None)
    if printer is None or getattr(printer, "pedalchain_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    to_stderr.pedalchain_stderr = True  # type: ignore[attr-defined]
    module.print_to_stdstream = to_stderr


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _absolute(item: WorkItem) -> WorkItem:
    """``item`` with absolute paths, for workers whose working folder is not ours."""
    return dataclasses.replace(item, input=os.path.abspath(item.input), output=os.path.abspath(item.output))


Executor = InProcessExecutor | LocalPoolExecutor | RayExecutor


# -- the batch -----------------------------------------------------------------------------------------


@dataclass
class FileResult:
    """One file's fate, as the caller's callback gets it."""

    job: Job
    status: Status
    summary: FileSummary | None = None
    error: str | None = None


@dataclass
class BatchReport:
    """Counts, audio time and failures of a batch; ``as_dict()`` is ``chain-report.json``."""

    chain: str
    executor: str
    workers: int
    files: int
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    done: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    audio_s: float = 0.0
    wall_s: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def not_rendered(self) -> int:
        """Files neither done, skipped nor failed (the batch was interrupted before or while rendering them)."""
        return self.files - self.done - self.skipped - self.failed

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def add(self, result: FileResult) -> None:
        if result.status == "done":
            self.done += 1
            self.audio_s += result.summary.duration_s if result.summary else 0.0
        elif result.status == "skipped":
            self.skipped += 1
        elif result.status == "failed":
            self.failed += 1
            self.failures.append({"input": str(result.job.input), "output": str(result.job.output),
                                  "error": result.error or "failed"})

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain, "executor": self.executor, "workers": self.workers, "started": self.started,
            "files": self.files, "done": self.done, "skipped": self.skipped, "failed": self.failed,
            "not_rendered": self.not_rendered, "interrupted": self.interrupted,
            "audio_hours": self.audio_s / 3600.0, "wall_s": self.wall_s, "realtime_factor": self.realtime_factor,
            "failures": self.failures,
        }


def run_batch(
    plan: Plan,
    executor: Executor,
    on_result: Callable[[FileResult], None],
    stop: threading.Event,
    state: ResumeState | None = None,
    resume: bool = False,
    chain_label: str = "",
) -> BatchReport:
    """Render ``plan`` with ``executor``; every file's result goes to ``on_result`` as it is known.

    With ``state``, finished files are recorded; with ``resume`` too, files recorded as rendered with the
    same settings are skipped and stale outputs recorded there may be replaced.  Setting ``stop`` makes
    the workers give up at their next block; what finished is still recorded.
    """
    started = time.perf_counter()
    report = BatchReport(chain_label, executor.name, executor.workers, len(plan.jobs))

    def emit(result: FileResult) -> None:
        report.add(result)
        on_result(result)

    if state is not None:  # the folder is locked: temporaries there are from a run that was killed
        remove_temporaries([job.output for job in plan.jobs])
    items, keys = _triage(plan, state, resume, emit)
    queue = WorkQueue(items)

    def on_outcome(item: WorkItem, outcome: Outcome) -> None:
        job = plan.jobs[item.index]
        if outcome.crashed:
            remove_temporaries([job.output])  # its writer is dead
            if _stat(job.output) != item.output_before:  # it got as far as renaming its output into place
                item = dataclasses.replace(item, overwrite=True)
            if queue.retry(item):
                return
        if outcome.cancelled:
            on_result(FileResult(job, "cancelled"))
            return
        if outcome.error is not None or outcome.summary is None:
            emit(FileResult(job, "failed", error=outcome.error))
            return
        summary = dataclasses.replace(outcome.summary, input=str(job.input), output=str(job.output))
        if state is not None:
            state.record(job, keys[item.index], outcome.output_size, outcome.output_mtime_ns)
        emit(FileResult(job, "done", summary))

    created = make_output_folders(items)
    try:
        if items:
            executor.run(queue, on_outcome, stop)
    except BaseException:
        report.interrupted = True
        raise
    finally:
        remove_empty_folders(created)
        report.interrupted = report.interrupted or stop.is_set()
        report.wall_s = time.perf_counter() - started
        if state is not None:
            state.flush(force=True)
    return report


def _triage(
    plan: Plan, state: ResumeState | None, resume: bool, emit: Callable[[FileResult], None]
) -> tuple[list[WorkItem], dict[int, dict[str, Any] | None]]:
    """Report the files known to fail or to be current (skipped); the rest become work items.

    Also returns each item's resume key, taken now: the input as it was when the batch started.
    """
    items, keys = [], {}
    for job in plan.jobs:
        if job.error is not None:
            emit(FileResult(job, "failed", error=job.error))
        elif resume and state is not None and state.is_current(job):
            emit(FileResult(job, "skipped"))
        else:
            keys[job.index] = state.key(job) if state is not None else None
            overwrite = resume and state is not None and state.owns(job)
            items.append(WorkItem(job.index, str(job.input), str(job.output), overwrite, _stat(job.output)))
    return items, keys


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def stop_on_sigint(stop: threading.Event, notice: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside: the first Ctrl-C sets ``stop`` (a clean stop), a second one raises KeyboardInterrupt.

    Only in the main thread (elsewhere Python cannot install handlers: this does nothing).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if notice is not None:
            notice()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
