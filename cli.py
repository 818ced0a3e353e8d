"""The ``chain`` command.

    chain apply my.yaml song.wav [-o OUT] [--tail S] [--block N] [--overwrite] [--format F] [--subtype S]
                                 [--quiet | --json] [--sanitize] [--plugin-timeout S]
    chain check my.yaml [--sample-rate HZ] [--channels N]
    chain plugins [PATH.vst3]
    chain presets

Exit status: 0 success, 1 a file could not be processed, 2 bad usage or chain file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import AudioFileError, ChainFileError, OutputExistsError, ParameterError, PedalchainError, PluginLoadError

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
    apply.add_argument("inputs", nargs="+", type=Path, help="audio files (WAV, FLAC, AIFF, OGG, MP3)")
    apply.add_argument(
        "-o", "--output", help="output file, or a folder (ends with /, exists as one, or several inputs)"
    )
    apply.add_argument("--tail", type=float, default=0.0, metavar="SECONDS", help="keep this much reverb/delay tail")
    apply.add_argument(
        "--block", type=int, default=8192, metavar="SAMPLES", help="block size (output does not depend on it)"
    )
    apply.add_argument("--overwrite", action="store_true", help="replace existing output files")
    apply.add_argument("--format", choices=["wav", "flac", "aiff", "ogg", "mp3"], help="output container")
    apply.add_argument("--subtype", help="output subtype, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    verbosity = apply.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print only errors")
    verbosity.add_argument("--json", action="store_true", help="print one JSON summary per file on stdout")
    apply.add_argument("--sanitize", action="store_true", help="replace NaN/Inf input samples with 0 (warns)")
    apply.add_argument(
        "--plugin-timeout", type=float, default=30.0, metavar="SECONDS", help="give up on a VST3 that loads longer"
    )

    check = commands.add_parser("check", help="validate a chain and print it with its latency")
    check.add_argument("chain", help="chain YAML file or preset name")
    check.add_argument("--sample-rate", type=float, default=44100.0, metavar="HZ", help="rate to check at")
    check.add_argument("--channels", type=int, default=2, help="channel count to check with")
    check.add_argument("--plugin-timeout", type=float, default=30.0, metavar="SECONDS")

    plugins = commands.add_parser("plugins", help="list built-in plugins and installed VST3s, or one VST3's parameters")
    plugins.add_argument("path", nargs="?", help="a .vst3 bundle to describe")
    plugins.add_argument("--plugin-timeout", type=float, default=30.0, metavar="SECONDS")

    commands.add_parser("presets", help="list shipped chain presets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"apply": _apply, "check": _check, "plugins": _plugins, "presets": _presets}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        _error("interrupted; no partial output was left behind")
        return EXIT_INTERRUPTED
    except (ChainFileError, ParameterError, PluginLoadError, OutputExistsError) as error:
        _error(str(error))
        return EXIT_USAGE
    except PedalchainError as error:
        _error(str(error))
        return EXIT_FAILED
    except OSError as error:  # disk full, permissions changing under us: still one line, no traceback
        _error(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        return EXIT_FAILED


def _error(message: str) -> None:
    print(f"chain: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"chain: warning: {message}", file=sys.stderr)


def _output_paths(args: argparse.Namespace, chain_stem: str) -> list[Path]:
    from .chains.runner import default_output_path

    output = Path(args.output) if args.output else None
    is_folder = bool(args.output) and (
        args.output.endswith(("/", "\\")) or Path(args.output).is_dir() or len(args.inputs) > 1
    )
    if output is not None and is_folder and not output.exists():
        try:
            output.mkdir(parents=True)
        except OSError as error:
            raise AudioFileError(f"cannot create output folder: {error.strerror}", where=output) from None
    paths = [default_output_path(path, chain_stem, output, is_folder) for path in args.inputs]
    seen: dict[Path, Path] = {}
    for source, target in zip(args.inputs, paths, strict=True):
        key = target.resolve()
        if key in seen:
            raise OutputExistsError(f"both {seen[key]} and {source} would be written here; use separate folders",
                                    where=target)
        seen[key] = source
    if args.format:
        paths = [path.with_suffix("." + args.format) if is_folder or output is None else path for path in paths]
    return paths


def _apply(args: argparse.Namespace) -> int:
    from .chains.runner import RunOptions, process_file
    from .chains.yaml_io import load_chain, resolve_chain_path

    options = RunOptions(
        block=args.block, tail_s=args.tail, overwrite=args.overwrite, container=args.format, subtype=args.subtype,
        sanitize=args.sanitize,
    )
    chain_path = resolve_chain_path(args.chain)
    chain = load_chain(chain_path, plugin_timeout_s=args.plugin_timeout)
    failures = 0
    for source, target in zip(args.inputs, _output_paths(args, chain_path.stem), strict=True):
        try:
            with _ProgressBar(enabled=not (args.quiet or args.json), label=source.name) as bar:
                summary = process_file(chain, source, target, options, progress=bar.update)
        except (PedalchainError, OSError) as error:
            failures += 1
            _error(str(error) if isinstance(error, PedalchainError) else f"{source}: {error.strerror or error}")
            if args.json:
                print(json.dumps({"input": str(source), "output": None, "error": str(error)}), flush=True)
            continue
        if args.json:
            print(json.dumps(summary.as_dict()), flush=True)
        elif not args.quiet:
            for warning in summary.warnings:
                _warn(f"{source}: {warning}")
            print(summary.line(), flush=True)
    return EXIT_FAILED if failures else EXIT_OK


class _ProgressBar:
    """A tqdm bar in audio seconds on stderr, only for long files on a terminal."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.bar = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, seconds: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.label, unit="s", unit_scale=False, leave=False, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s [{elapsed}<{remaining}]")
        self.bar.n = seconds
        self.bar.refresh()


def _check(args: argparse.Namespace) -> int:
    import yaml

    from .chains.yaml_io import chain_to_data, load_chain, resolve_chain_path

    path = resolve_chain_path(args.chain)
    chain = load_chain(path, plugin_timeout_s=args.plugin_timeout)
    rate = args.sample_rate
    latency = chain.latency_at(rate, args.channels)
    data = chain_to_data(chain, path.parent)
    for entry in data["steps"]:
        entry.pop("state", None)  # base64 blobs say nothing to a reader
    print(f"{path}: OK")
    print(yaml.safe_dump(data, sort_keys=False, width=100).rstrip())
    print(f"runs as: {', '.join(type(stage).__name__ for stage in chain.stages()) or 'nothing (empty chain)'}")
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


if __name__ == "__main__":
    sys.exit(main())

