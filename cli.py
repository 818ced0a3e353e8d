"""The ``chain`` command.

    chain apply my.yaml song.wav [-o OUT] [--tail S] [--block N] [--overwrite] [--format F] [--subtype S]
                                 [--quiet | --json] [--sanitize] [--plugin-timeout S]
    chain apply my.yaml "music/**/*.flac" list.txt -o OUT/ [--jobs N] [--resume] [--executor ray [--address A]]
    chain check my.yaml [--sample-rate HZ] [--channels N]
    chain plugins [PATH.vst3]
    chain presets
    chain info MODEL.safetensors|MODEL.nam|NAME       chain models
    chain detect FILES... [--json]                     chain compare REFERENCE CANDIDATE [--split HZ] [--json]

Exit status: 0 success, 1 a file could not be processed, 2 bad usage or chain file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .errors import ChainFileError, ModelFileError, OutputExistsError, ParameterError, PedalchainError, PluginLoadError

if TYPE_CHECKING:
    from .chains.batch import BatchReport, ChainSpec, Executor, FileResult, Job, Plan, ResumeState
    from .chains.engine import Chain
    from .chains.runner import RunOptions

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROGRESS_MIN_SECONDS = 30.0
"""Files shorter than this (audio seconds) get no progress bar."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chain", description="Apply audio chains of plugins and neural processors.")
    parser.add_argument("--version", action="version", version=f"pedalchain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    apply = commands.add_parser(
        "apply", help="process audio files through a chain",
        description="Process files block by block (memory does not grow with length). Output defaults to "
        "INPUT.<chain>.<ext> beside each input; an existing output is refused without --overwrite.",
    )
    apply.add_argument("chain", help="chain YAML file, or the name of a shipped preset (see `chain presets`)")
    apply.add_argument(
        "inputs", nargs="+", help="audio files (WAV, FLAC, AIFF, OGG, MP3), quoted glob patterns "
        "(\"music/**/*.flac\"), or .txt manifests (one path per line, relative to the manifest's folder; # comments)",
    )
    apply.add_argument(
        "-o", "--output", help="output file, or a folder (ends with /, exists as one, several inputs, a glob or "
        "a manifest); a folder mirrors globbed inputs' tree (manifests: from the manifest's folder) and holds the "
        "resume record and chain-report.json",
    )
    apply.add_argument("--tail", type=float, default=0.0, metavar="SECONDS", help="keep this much reverb/delay tail")
    apply.add_argument(
        "--block", type=int, default=8192, metavar="SAMPLES", help="block size (output does not depend on it)"
    )
    apply.add_argument("--overwrite", action="store_true", help="replace existing output files")
    apply.add_argument("--format", type=str.lower, choices=["wav", "flac", "aiff", "ogg", "mp3"],
                       help="output container (any case)")
    apply.add_argument("--subtype", help="output subtype, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    verbosity = apply.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print only errors")
    verbosity.add_argument("--json", action="store_true", help="print one JSON summary per file on stdout")
    apply.add_argument("--sanitize", action="store_true", help="replace NaN/Inf input samples with 0 (warns)")
    apply.add_argument(
        "--plugin-timeout", type=float, default=30.0, metavar="SECONDS", help="give up on a VST3 that loads longer"
    )
    apply.add_argument(
        "--jobs", "-j", type=int, metavar="N", help="worker processes, each loading the chain once (~its memory "
        "each); default 1 (in this process), with --executor ray one per cluster CPU",
    )
    apply.add_argument(
        "--resume", action="store_true", help="skip files the output folder's record says were rendered with the "
        "same input, chain and settings; re-render (replace) the others",
    )
    apply.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local worker processes, or a Ray cluster (pip install 'pedalchain[ray]')")
    apply.add_argument("--address", help="Ray cluster address (e.g. auto, or host:6379); default: RAY_ADDRESS, "
                       "else the cluster last started here, else a private one")

    check = commands.add_parser("check", help="validate a chain and print it with its latency")
    check.add_argument("chain", help="chain YAML file or preset name")
    check.add_argument("--sample-rate", type=float, default=44100.0, metavar="HZ", help="rate to check at")
    check.add_argument("--channels", type=int, default=2, help="channel count to check with")
    check.add_argument("--plugin-timeout", type=float, default=30.0, metavar="SECONDS")

    plugins = commands.add_parser("plugins", help="list built-in plugins and installed VST3s, or one VST3's parameters")
    plugins.add_argument("path", nargs="?", help="a .vst3 bundle to describe")
    plugins.add_argument("--plugin-timeout", type=float, default=30.0, metavar="SECONDS")

    commands.add_parser("presets", help="list shipped chain presets")

    info = commands.add_parser("info", help="describe a model file (.safetensors, .nam) or a shipped model")
    info.add_argument("model", help="a model file, or a shipped model's name (see `chain models`)")
    commands.add_parser("models", help="list shipped models")

    export = commands.add_parser(
        "export-nam", help="write a model as a Neural Amp Modeler .nam file",
        description="FIR, WaveNet and LSTM models without an input skip export (NAM has no other families); the "
        ".nam file gets the model's sample rate, its name, and pedalchain's training record in its metadata.",
    )
    export.add_argument("model", help="a .safetensors model file, or a shipped model's name (see `chain models`)")
    export.add_argument("-o", "--output", type=Path, required=True, help=".nam file to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    detect = commands.add_parser(
        "detect", help="report damage: doubled samples, sample-and-hold, band limit, clipping, mains hum, DC, "
        "noise floor, NaN/Inf samples",
        description="Reads each file once or twice in blocks; progress goes to stderr. Exit 1 if any file "
        "could not be read (the others are still reported).",
    )
    detect.add_argument("inputs", nargs="+", type=Path, help="audio files, quoted glob patterns or .txt manifests, "
                        "as for apply")
    detect.add_argument("--json", action="store_true", help="print a JSON list with one object per file")

    compare = commands.add_parser(
        "compare", help="measure a candidate against a reference: LSD, SNR, SI-SDR",
        description="Files of different rate or channel count are refused; the candidate is aligned to the reference "
        "by cross-correlation (the lag is reported) and both are cut to the shorter. Definitions: README, Metrics.",
    )
    compare.add_argument("reference", type=Path)
    compare.add_argument("candidate", type=Path)
    compare.add_argument("--split", type=float, metavar="HZ", help="LSD below/above this frequency (default fs/4)")
    compare.add_argument("--json", action="store_true", help="print the measures as one JSON object")
    compare.add_argument("--plot", type=Path, metavar="PNG", help="also write spectrograms of both files to this PNG")

    train = commands.add_parser("train", help="make excitation audio, train effect emulators and restorers")
    train_commands = train.add_subparsers(dest="train_command", required=True, metavar="WHAT")
    for module in ("capture", "restore"):
        _train_module(module).add_commands(train_commands)
    return parser


def _train_module(name: str):
    """models/<name>/cli.py: its ``add_commands`` adds `chain train` sub-commands (argparse only: fast start-up)."""
    import importlib

    return importlib.import_module(f".models.{name}.cli", __package__)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "apply": _apply, "check": _check, "plugins": _plugins, "presets": _presets, "info": _info,
        "models": _models, "export-nam": _export_nam, "detect": _detect, "compare": _compare,
        "train": lambda args: args.handler(args),
    }[args.command]
    try:
        with _terminated_like_interrupted():
            return _run(handler, args)
    finally:
        # what the command loaded is freed here, where the lines some VST3s print when deleted can be dropped
        from .effects.chatter import PLUGIN_TEARDOWN_CHATTER, chatter_dropped

        with chatter_dropped(PLUGIN_TEARDOWN_CHATTER):
            _KEPT_TO_THE_END.clear()
            gc.collect()  # plugins in reference cycles


_KEPT_TO_THE_END: list[object] = []
"""Chains a command built, held until :func:`main` frees them (see there)."""


def _kept_to_the_end(chain: Chain) -> Chain:
    _KEPT_TO_THE_END.append(chain)
    return chain


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``kill``, ``timeout``, a closed terminal, a service manager stopping us): handled as a
    second Ctrl-C, so temporary files are removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminated_like_interrupted() -> Iterator[None]:
    """While inside (main thread only): SIGTERM and SIGHUP raise :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``handler(args)``, its errors turned into one line on stderr and an exit status."""
    try:
        return handler(args)
    except KeyboardInterrupt as interruption:
        what = "terminated" if isinstance(interruption, Terminated) else "interrupted"
        _error(f"{what}; no partial output was left behind")
        return 128 + interruption.signum if isinstance(interruption, Terminated) else EXIT_INTERRUPTED
    except (ChainFileError, ParameterError, PluginLoadError, ModelFileError, OutputExistsError) as error:
        _error(str(error))
        return EXIT_USAGE
    except PedalchainError as error:
        _error(str(error))
        return EXIT_FAILED
    except BrokenPipeError:
        # whoever read stdout stopped (`chain plugins | head`): stop quietly, as other command-line tools do; stdout
        # goes to devnull so that Python's flush at exit does not fail on the closed pipe again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as error:  # disk full, permissions changing under us: still one line, no traceback
        _error(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        return EXIT_FAILED


def _error(message: str) -> None:
    print(f"chain: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"chain: warning: {message}", file=sys.stderr)


def _apply(args: argparse.Namespace) -> int:
    from .chains import batch
    from .chains.runner import RunOptions
    from .chains.yaml_io import resolve_chain_path

    options = RunOptions(
        block=args.block, tail_s=args.tail, overwrite=args.overwrite, container=args.format, subtype=args.subtype,
        sanitize=args.sanitize, measure_loudness=not args.quiet,
    )
    _check_executor_options(args)
    chain_path = resolve_chain_path(args.chain)
    spec = batch.ChainSpec.from_path(chain_path, args.plugin_timeout)
    chain = _kept_to_the_end(spec.build())  # chain errors (exit 2) before any output folder or worker exists
    if args.output:
        inputs = batch.expand_inputs(args.inputs, exclude=Path(args.output))
        where = f"inside the output folder {args.output}"
    else:
        inputs = batch.expand_inputs(args.inputs, chain_stem=chain_path.stem)
        where = f"named like outputs of this chain (*.{chain_path.stem}.*)"
    console = _Console(args)
    if inputs.excluded and not args.quiet:
        console.warn(f"left out {inputs.excluded} files matching the pattern {where}")
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        executor = _executor(args, spec, chain, options, len(inputs.files), console)  # Ray connects here
        stack.callback(executor.close)
        plan = batch.plan_jobs(inputs, chain_path.stem, args.output, args.format)
        if args.resume and plan.folder is None:
            raise ParameterError("needs an output folder (-o DIR/): the resume record lives there", where="--resume")
        console.start(plan.jobs, plan.batch)
        stack.callback(console.close)
        state = _open_state(plan, spec, options, console, stack)
        stack.enter_context(batch.stop_on_sigint(stop, notice=_stopping_notice))
        report = batch.run_batch(plan, executor, console.result, stop, state, args.resume, str(chain_path))
        report_path = plan.folder / batch.REPORT_NAME if plan.folder is not None and plan.batch else None
        if report_path is not None:
            batch.write_json_atomically(report_path, report.as_dict(), indent=1)
    if plan.batch:
        console.summary(report, report_path)
    if report.interrupted:
        _error("interrupted; no partial output was left behind")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report.failed else EXIT_OK


def _open_state(
    plan: Plan, spec: ChainSpec, options: RunOptions, console: _Console, stack: contextlib.ExitStack
) -> ResumeState | None:
    """The output folder's resume record, locked for this run (None without an output folder)."""
    from .chains import batch

    if plan.folder is None:
        return None
    stack.enter_context(batch.folder_lock(plan.folder))
    state = batch.ResumeState(plan.folder, batch.settings_for(spec, options))
    if state.warning:
        console.warn(state.warning)
    return state


def _check_executor_options(args: argparse.Namespace) -> None:
    if args.jobs is not None and args.jobs < 1:
        raise ParameterError(f"expects a number of worker processes ≥ 1, got {args.jobs}", where="--jobs")
    if args.address is not None and args.executor != "ray":
        raise ParameterError("applies to --executor ray only", where="--address")


def _executor(
    args: argparse.Namespace, spec: ChainSpec, chain: Chain, options: RunOptions, files: int, console: _Console
) -> Executor:
    """--executor ray: Ray actors; --jobs 1 (or one file): this process; else a local process pool."""
    from .chains import batch

    if args.executor == "ray":
        return batch.RayExecutor(spec, options, args.address, args.jobs)
    workers = min(args.jobs or 1, files)
    if workers <= 1:
        return batch.InProcessExecutor(chain, options, file_progress=console.file_progress)
    return batch.LocalPoolExecutor(spec, options, workers)


def _stopping_notice() -> None:
    """Called from the SIGINT handler: os.write is safe there, print is not."""
    os.write(2, b"chain: stopping after the current block (Ctrl-C again to abort at once)\n")


class _Console:
    """What the user sees: a line (or JSON object) per file, errors on stderr, a bar on a terminal, a summary.

    A batch gets one bar over files; a single file keeps its bar in audio seconds.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.quiet, self.json = args.quiet, args.json
        self.jobs: list[Job] = []
        self.bar = None
        self.file_bar = _ProgressBar(enabled=False, label="")

    def start(self, jobs: list[Job], is_batch: bool) -> None:
        """Jobs are planned: open the bar (over files for a batch, in audio seconds for one file)."""
        self.jobs = jobs
        show = not (self.quiet or self.json) and sys.stderr.isatty()
        if show and is_batch:
            from tqdm import tqdm

            self.bar = tqdm(total=len(jobs), unit="file", desc="files", file=sys.stderr, dynamic_ncols=True)
        self.file_bar = _ProgressBar(enabled=show and not is_batch, label="")

    def _say(self, text: str, stream: TextIO) -> None:
        if self.bar is not None:
            self.bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def warn(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(f"chain: warning: {message}", file=sys.stderr)
        else:
            _warn(message)

    def file_progress(self, index: int, seconds: float) -> None:
        self.file_bar.label = self.jobs[index].input.name
        self.file_bar.update(seconds, self.jobs[index].input)

    def result(self, result: FileResult) -> None:
        if result.status == "cancelled":
            return
        if self.bar is not None:
            self.bar.update(1)
        self.file_bar.close()
        if result.status == "failed":
            self._say(f"chain: error: {result.error}", sys.stderr)
            if self.json:
                self._say(json.dumps({"input": str(result.job.input), "output": None, "error": result.error}),
                          sys.stdout)
        elif result.status == "skipped":
            if self.json:
                self._say(json.dumps({"input": str(result.job.input), "output": str(result.job.output),
                                      "skipped": True}), sys.stdout)
        elif self.json:
            self._say(json.dumps(result.summary.as_dict()), sys.stdout)
        elif not self.quiet:
            for warning in result.summary.warnings:
                self.warn(f"{result.job.input}: {warning}")
            self._say(result.summary.line(), sys.stdout)

    def summary(self, report: BatchReport, report_path: Path | None) -> None:
        self.close()
        if self.quiet:
            return
        head = "interrupted" if report.interrupted else f"{report.files} files"
        counts = f"{report.done} done, {report.skipped} skipped, {report.failed} failed"
        if report.not_rendered:
            counts += f", {report.not_rendered} not rendered"
        hours = report.audio_s / 3600
        audio = f"{hours:.2f} h" if hours >= 0.1 else f"{report.audio_s / 60:.1f} min"
        speed = f"{report.realtime_factor:.0f}x real time, " if report.audio_s else ""
        workers = f"{report.workers} {report.executor} worker{'s' if report.workers != 1 else ''}"
        print(f"chain: {head}: {counts}; {audio} of audio in {report.wall_s:.1f} s ({speed}{workers})",
              file=sys.stderr)
        for failure in report.failures:
            print(f"chain: failed: {failure['error']}", file=sys.stderr)
        if report_path is not None:
            print(f"chain: report: {report_path}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.file_bar.close()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _ProgressBar:
    """A tqdm bar in audio seconds on stderr, only for long files on a terminal."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def update(self, seconds: float, source: Path) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            from .chains.audio_io import probe_audio

            total = probe_audio(source).duration_s
            if total < PROGRESS_MIN_SECONDS:
                self.enabled = False
                return
            self.bar = tqdm(
                desc=self.label, total=total, unit="s", leave=False, file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
            )
        self.bar.n = seconds
        self.bar.refresh()


def _check(args: argparse.Namespace) -> int:
    import yaml

    from .chains.yaml_io import chain_to_data, load_chain, resolve_chain_path
    from .effects.processor import MAX_CHANNELS

    rate = args.sample_rate
    if not (math.isfinite(rate) and rate > 0):
        raise ParameterError(f"expects a sample rate in Hz above 0, got {rate:g}", where="--sample-rate")
    if not 1 <= args.channels <= MAX_CHANNELS:
        raise ParameterError(f"expects 1 to {MAX_CHANNELS} channels, got {args.channels}", where="--channels")
    path = resolve_chain_path(args.chain)
    chain = _kept_to_the_end(load_chain(path, plugin_timeout_s=args.plugin_timeout))
    latency = chain.latency_at(rate, args.channels)
    data = chain_to_data(chain, path.parent)
    for entry in data["steps"]:
        entry.pop("state", None)  # base64 blobs say nothing to a reader
    print(f"{path}: OK")
    print(yaml.safe_dump(data, sort_keys=False, width=100).rstrip())
    print(f"runs as: {', '.join(type(stage).__name__ for stage in chain.stages()) or 'nothing (empty chain)'}")
    for line in chain.passed_over(rate):
        print(f"passed over: {line}")
    if not chain.streamable:
        print(f"note: {chain._not_streamable_reason()}; files are processed whole (up to 15 min)")
    print(f"latency at {rate:g} Hz, {args.channels} ch: {latency} samples ({1000 * latency / rate:.2f} ms)")
    if chain.loudness_lufs is not None:
        print(f"loudness target: {chain.loudness_lufs:g} LUFS (second pass, true peak ≤ -1 dBTP)")
    return EXIT_OK


def _plugins(args: argparse.Namespace) -> int:
    from .effects.stock import describe_builtins
    from .effects.vst3 import installed_vst3_plugins, probe_vst3

    if args.path:
        print(probe_vst3(args.path, args.plugin_timeout).describe())
        return EXIT_OK
    print(describe_builtins())
    print()
    found = installed_vst3_plugins()
    print(f"Installed VST3 plugins ({len(found)}):" if found else "No VST3 plugins found in the usual folders.")
    for path in found:
        print(f"  {path}")
    return EXIT_OK


def _presets(args: argparse.Namespace) -> int:
    from .chains.yaml_io import list_presets

    for name, description in list_presets().items():
        print(f"{name:<20} {description}")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from .models.model_file import describe_model_file

    print(describe_model_file(args.model))
    return EXIT_OK


def _export_nam(args: argparse.Namespace) -> int:
    from .models.capture.cli import check_output_path
    from .models.model_file import load_model, resolve_model
    from .models.nam import export_nam

    check_output_path(args.output, ".nam", args.overwrite)
    source = resolve_model(args.model, Path.cwd())
    if source.suffix.lower() != ".safetensors":
        raise ParameterError("is a .nam file already", where=source)
    model, info = load_model(source)
    record = {"architecture": info.architecture, "training": info.training, "metrics": info.metrics,
              "versions": info.versions}
    export_nam(model, args.output, sample_rate=info.sample_rate, metadata={"name": source.stem, "pedalchain": record})
    rate = f"{info.sample_rate:g} Hz" if info.sample_rate is not None else "no sample rate (NAM assumes 48 kHz)"
    print(f"wrote {args.output} ({info.architecture}, {rate})")
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from .models.model_file import describe_shipped_models

    print(describe_shipped_models())
    return EXIT_OK


def _detect(args: argparse.Namespace) -> int:
    from .chains.batch import expand_inputs
    from .chains.detect import detect_file, format_detect_table

    paths = [entry.path for entry in expand_inputs([str(path) for path in args.inputs]).files]  # as apply does
    results = []
    for position, path in enumerate(paths, 1):
        if sys.stderr.isatty():
            print(f"chain: detect {position}/{len(paths)}: {path}", file=sys.stderr, flush=True)
        results.append(detect_file(path))
    print(json.dumps(results, indent=1) if args.json else format_detect_table(results))
    return EXIT_FAILED if any(result["error"] for result in results) else EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from .chains.compare import compare_files, format_compare

    result = compare_files(args.reference, args.candidate, split_hz=args.split, plot=args.plot)
    print(json.dumps(result) if args.json else format_compare(result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

