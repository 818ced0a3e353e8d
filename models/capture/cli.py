"""`chain train excitation` and `chain train emulator`: argparse only at import (the CLI starts fast).

    chain train excitation -o dry.wav [--sample-rate 48000] [--extra-audio DIR]
    chain train emulator --target chains/presets/capture-fuzz.yaml -o fuzz.safetensors
    chain train emulator --dry dry.wav --wet amp.wav -o amp.safetensors
    chain train emulator ... --model auto|fir|wiener-hammerstein|compressor|lstm|wavenet --target-esr 1e-3
                             --minutes 5 --seed 0
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

MODEL_CHOICES = ("auto", "fir", "wiener-hammerstein", "compressor", "lstm", "wavenet")
DEFAULT_CAPTURE_RATE = 48000
"""Excitation rate (Hz) of a ``--target`` capture unless ``--sample-rate`` says otherwise."""
REPORT_RESERVE_S = 10.0
"""Seconds of ``--minutes`` not given to training: the render and pairing before it, the model and report after."""


def add_commands(train: argparse._SubParsersAction) -> None:
    """Add ``excitation`` and ``emulator`` to the `chain train` sub-commands (each sets ``handler``)."""
    excitation = train.add_parser(
        "excitation", help="write the built-in capture excitation (about 2 minutes of test audio) to re-amp gear",
        description="Write the deterministic capture excitation (mono 32-bit float WAV, about 117 s) and a "
        "<stem>.layout.json beside it naming its train/validation regions, blips and repeated section. "
        "Play it through the gear, record the result from the first sample, then run `chain train emulator "
        "--dry DRY --wet WET -o MODEL.safetensors`.")
    excitation.add_argument("-o", "--output", type=Path, required=True, help="WAV file to write")
    excitation.add_argument("--sample-rate", type=int, default=48000, help="Hz, 16000-192000 (default 48000)")
    excitation.add_argument("--extra-audio", type=Path, help="folder of real recordings appended to the training "
                            "part (up to 120 s in total, resampled, mono)")
    excitation.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    excitation.set_defaults(handler=run_excitation)

    emulator = train.add_parser(
        "emulator", help="train a model that emulates a chain or a recorded device (loads as a `model:` step)",
        description="Fit model families cheapest first (FIR, Wiener-Hammerstein, grey-box compressor, LSTM, "
        "WaveNet) within --minutes and keep the first that reaches --target-esr on validation audio (the best "
        "otherwise). Ctrl-C stops and keeps the best model so far. Writes MODEL.safetensors, "
        "MODEL.report.json and MODEL.report.png. CPU is fine: FIR fits in seconds, the structured models in "
        "about a minute; LSTM/WaveNet use whatever time is left (a GPU is used when present).")
    source = emulator.add_mutually_exclusive_group(required=True)
    source.add_argument("--target", help="chain YAML (or preset name) to capture: the excitation is rendered "
                        "through it")
    source.add_argument("--dry", type=Path, help="the excitation (or any dry recording) that was played")
    emulator.add_argument("--wet", type=Path, help="the device's recorded output (with --dry)")
    emulator.add_argument("-o", "--output", type=Path, required=True, help="model file to write (.safetensors)")
    emulator.add_argument("--model", choices=MODEL_CHOICES, default="auto",
                          help="model family (default auto: cheapest first, stop at the first reaching the target)")
    emulator.add_argument("--target-esr", type=float, default=1e-3,
                          help="validation ESR to reach, Σ(y-ŷ)²/Σy² (default 1e-3)")
    emulator.add_argument("--minutes", type=float, default=5.0,
                          help="budget of work for every family tried, in minutes on the reference machine: "
                          "the same command and seed write the same model anywhere (default 5)")
    emulator.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    emulator.add_argument("--sample-rate", type=int, default=None,
                          help="excitation rate for --target captures, Hz (default 48000)")
    emulator.add_argument("--extra-audio", type=Path, help="with --target: real recordings added to the training "
                          "audio")
    emulator.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="auto: CUDA when available")
    emulator.add_argument("--threads", type=int, default=1,
                          help="CPU threads for torch (default 1: several threads contend on small models)")
    emulator.add_argument("--quiet", action="store_true", help="no progress bar")
    emulator.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    emulator.set_defaults(handler=run_emulator)


def check_output_path(path: Path, suffix: str, overwrite: bool) -> None:
    """Before any work: refuse an output of another suffix, a folder, an existing file (unless ``overwrite``) or
    one whose folder does not exist (training first and failing to write after wastes the run)."""
    from ...errors import OutputExistsError, ParameterError

    if path.suffix.lower() != suffix:
        raise ParameterError(f"the output must end in {suffix}", where=path)
    if path.is_dir():
        raise ParameterError("is a folder", where=path)
    if path.exists() and not overwrite:
        raise OutputExistsError("exists; pass --overwrite to replace it", where=path)
    if not path.parent.is_dir():
        raise ParameterError("its folder does not exist", where=path)


def layout_path(audio_path: Path) -> Path:
    """``dry.wav`` -> ``dry.layout.json`` (written by `chain train excitation`)."""
    return audio_path.with_name(audio_path.stem + ".layout.json")


def run_excitation(args: argparse.Namespace) -> int:
    """Write the excitation WAV and its layout JSON; returns 0."""
    import json

    from pedalboard.io import AudioFile

    from ...chains.atomic import publish, temporary_beside, write_atomically
    from ...errors import AudioFileError
    from .excitation import make_excitation

    output: Path = args.output
    check_output_path(output, ".wav", args.overwrite)
    excitation = make_excitation(args.sample_rate, extra_audio=args.extra_audio)
    temporary = temporary_beside(output, suffix=".wav")
    try:
        with AudioFile(str(temporary), "w", excitation.sample_rate, 1, bit_depth=32) as stream:
            stream.write(excitation.audio[None])
        publish(temporary, output)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise AudioFileError(f"cannot write: {error}", where=output) from None
    write_atomically(layout_path(output), json.dumps(excitation.layout(), indent=1) + "\n")
    print(f"wrote {output} ({len(excitation.audio) / excitation.sample_rate:.1f} s, {excitation.sample_rate} Hz, "
          f"mono 32-bit float) and {layout_path(output).name}")
    return 0


def _read(path: Path) -> tuple[object, int]:
    from pedalboard.io import AudioFile

    from ...errors import AudioFileError

    try:
        with AudioFile(str(path)) as stream:
            if stream.frames == 0:  # pedalboard's own message for it is about reading a file at once
                raise AudioFileError("holds no audio (0 samples)", where=path)
            return stream.read(stream.frames), int(stream.samplerate)
    except AudioFileError:
        raise
    except FileNotFoundError:
        raise AudioFileError("no such audio file", where=path) from None
    except Exception as error:  # noqa: BLE001 - pedalboard raises several types; report the file
        raise AudioFileError(f"cannot read audio: {error}", where=path) from None


def _known_excitation(dry: object, sample_rate: int, dry_path: Path | None) -> object | None:
    """The Excitation the dry file is, from its layout JSON or by matching the built-in one; else None."""
    import json

    import numpy as np

    from .excitation import Excitation, make_excitation

    mono = np.asarray(dry)[0]
    if dry_path is not None and layout_path(dry_path).exists():
        try:
            layout = json.loads(layout_path(dry_path).read_text())
            if layout.get("length") == len(mono) and layout.get("sample_rate") == sample_rate:
                return Excitation(mono, sample_rate, layout["seed"], {k: tuple(v) for k, v in
                                                                       layout["regions"].items()},
                                  layout["blips"], f"pedalchain capture excitation (from {dry_path.name} and its "
                                  "layout)")
        except (OSError, ValueError, KeyError):
            pass
    if 16000 <= sample_rate <= 192000:
        built = make_excitation(sample_rate)
        if len(built.audio) == len(mono) and float(np.max(np.abs(built.audio - mono))) < 1e-3:
            return built
    return None


class _Bar:
    """One status line on stderr: family, time used of the budget, train loss, validation ESR, best."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.tty = quiet, sys.stderr.isatty()

    def __call__(self, update: dict) -> None:
        if self.quiet:
            return
        fraction = min(1.0, update["elapsed_s"] / max(update["budget_s"], 1e-9))
        filled = int(20 * fraction)
        loss = update["train_loss"]
        loss_text = f"{loss:.3g}" if loss == loss else "-"  # NaN: a closed-form fit has no training loss
        text = (f"{update['family']:<18} [{'#' * filled}{'.' * (20 - filled)}] {update['elapsed_s']:5.0f}/"
                f"{update['budget_s']:.0f} s  train {loss_text}  validation ESR {update['validation_esr']:.3g}  "
                f"best {update['best_esr']:.3g}")
        sys.stderr.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if not self.quiet and self.tty:
            sys.stderr.write("\n")


def run_emulator(args: argparse.Namespace) -> int:
    """Train, save the model, write and print the report; 0 when the target was reached, 1 when not, 130 after
    Ctrl-C."""
    import numpy as np
    import torch

    from ...cli import EXIT_INTERRUPTED, Terminated  # after Ctrl-C, as chain apply (the best model is written)
    from ...errors import ParameterError, PedalchainError
    from ..model_file import save_model
    from .excitation import make_excitation
    from .pairing import prepare_pair
    from .report import build_report, summary_text, write_report
    from .trainer import train_emulator

    output: Path = args.output
    check_output_path(output, ".safetensors", args.overwrite)
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        raise ParameterError(f"--minutes must be positive, got {args.minutes:g}")
    if not 0 < args.target_esr < 1:
        raise ParameterError(f"--target-esr must be within (0, 1), got {args.target_esr:g}")
    if args.threads < 1:
        raise ParameterError(f"--threads must be at least 1, got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    torch.set_num_threads(args.threads)
    if args.target is None:
        for option, value in (("--sample-rate", args.sample_rate), ("--extra-audio", args.extra_audio)):
            if value is not None:
                raise ParameterError(f"{option} goes with --target (with --dry the recordings set the audio)")
    if args.target is not None:
        if args.wet is not None:
            raise ParameterError("--wet goes with --dry, not with --target")
        from ...chains.yaml_io import load_chain

        chain = load_chain(args.target)
        excitation = make_excitation(args.sample_rate or DEFAULT_CAPTURE_RATE, seed=0, extra_audio=args.extra_audio)
        try:
            wet = chain.process(excitation.audio[None], excitation.sample_rate)
        except (PedalchainError, ValueError, RuntimeError):  # a stereo-only step: feed two identical channels
            wet = chain.process(np.repeat(excitation.audio[None], 2, axis=0), excitation.sample_rate)
        pair = prepare_pair(excitation.audio, wet, excitation.sample_rate, excitation=excitation, where=args.target,
                            rendered=True)
        pair.description = f"{excitation.description}, rendered through {args.target}"
        source = {"target": str(args.target)}
    else:
        if args.wet is None:
            raise ParameterError("--dry needs --wet (the recording of the device's output)")
        dry, dry_rate = _read(args.dry)
        wet, wet_rate = _read(args.wet)
        excitation = _known_excitation(dry, dry_rate, args.dry)
        pair = prepare_pair(dry, wet, dry_rate, wet_rate, excitation=excitation, where=args.wet)
        pair.description = f"{pair.description}; dry {args.dry.name}, wet {args.wet.name}"
        source = {"dry": str(args.dry), "wet": str(args.wet)}
    for warning in pair.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    bar = _Bar(args.quiet)
    try:
        # work, not wall time (the trainer's WorkClock), so that one command fits one model anywhere; the reserve
        # leaves room for the render and pairing before and the report after on the reference machine
        budget_s = args.minutes * 60.0 - REPORT_RESERVE_S
        result = train_emulator(pair, args.model, args.target_esr, max(budget_s, 1.0), args.seed, progress=bar,
                                device=args.device)
    except KeyboardInterrupt:
        bar.done()
        print("interrupted before any model was fitted: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:  # a named family failing, a GPU error
        bar.done()
        raise PedalchainError(f"training failed: {error}", where=output) from None
    bar.done()
    training_seconds = (pair.train[1] - pair.train[0]) / pair.sample_rate
    info = save_model(
        output, result.model, sample_rate=pair.sample_rate,
        training={"data": pair.description, "seed": args.seed, "duration_s": round(training_seconds, 3),
                  "family": result.family, "target_esr": args.target_esr, "budget_minutes": args.minutes,
                  "seconds": round(result.seconds, 1), "latency_removed_samples": pair.latency.samples, **source},
        metrics={"esr_holdout": result.validation_esr},
    )
    stem = output.with_suffix("")
    json_path, png_path = Path(f"{stem}.report.json"), Path(f"{stem}.report.png")
    try:
        report = build_report(result, pair, output, extra={"source": source, "seed": args.seed})
        plotted = write_report(report, json_path, png_path)
    except KeyboardInterrupt as interruption:  # the model is written and complete: say so, not that nothing was
        print(f"interrupted while writing the report: {info.path} is written (validation ESR "
              f"{result.validation_esr:.3g}), its report is not", file=sys.stderr)
        return 128 + interruption.signum if isinstance(interruption, Terminated) else EXIT_INTERRUPTED
    print(summary_text(report))
    png_text = png_path.name if plotted else "no PNG (pip install matplotlib for the figure)"
    print(f"wrote {info.path} ({info.parameter_count:,} parameters), {json_path.name}, {png_text}")
    return EXIT_INTERRUPTED if result.interrupted else 0 if result.reached else 1
