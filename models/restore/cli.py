"""``chain train restorer``: argparse only at import (``chain`` start-up); the work is in models/restore/train.py."""

from __future__ import annotations

import argparse
from pathlib import Path

DAMAGES = "doubled-samples | hold:N | bandwidth:HZ | mp3:KBPS | noise:DB | bits:N | clip:DB"
MIN_RATE_HZ, MAX_RATE_HZ = 8000.0, 192000.0
"""Rates a restorer model may be trained at (the restorers' own ranges lie within)."""


def add_commands(train: argparse._SubParsersAction) -> None:
    """Add ``restorer`` to the ``chain train`` sub-commands."""
    parser = train.add_parser(
        "restorer", help="train a restorer on clean audio with simulated damage; report test metrics",
        description="Simulates the damage on clean files, splits train/validation/test by file, trains, saves "
        "the model (.safetensors, with the data list and test metrics in its metadata) and prints test metrics "
        "against passthrough and the damage's baseline; the full report goes to <stem>.report.json. Takes "
        "the --minutes budget for fitting plus data preparation and evaluation (about as long again).",
    )
    parser.add_argument("--damage", required=True, metavar="SPEC", help=f"the damage to learn to repair: {DAMAGES}")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder of clean audio files (searched recursively); default: the corpus built in "
                        "~/.cache/pedalchain/corpus (sonic-pi samples, fluidsynth renders, synthesized material; "
                        "a few hundred MB, built once)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.safetensors",
                        help="model file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the damage draws and training")
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="optimisation budget in minutes (default 5; CPU, 1 thread)")
    parser.add_argument("--sample-rate", type=float, default=44100.0, metavar="HZ",
                        help="rate the clips are read at and the model runs at (default 44100)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train; progress on stderr, the test table and where the files went on stdout.  Errors propagate to
    ``pedalchain.cli.main`` (one line, exit 2 for bad arguments)."""
    import math
    import sys

    from ...errors import ParameterError
    from ..capture.cli import check_output_path
    from .train import train_restorer

    if not (math.isfinite(args.minutes) and args.minutes > 0):
        raise ParameterError(f"must be positive; got {args.minutes:g}", where="--minutes")
    if not (math.isfinite(args.sample_rate) and MIN_RATE_HZ <= args.sample_rate <= MAX_RATE_HZ):
        raise ParameterError(f"must be {MIN_RATE_HZ:g} to {MAX_RATE_HZ:g} Hz; got {args.sample_rate:g}",
                             where="--sample-rate")
    if args.seed < 0:
        raise ParameterError(f"must be 0 or more; got {args.seed}", where="--seed")
    check_output_path(args.output, ".safetensors", args.overwrite)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    report = train_restorer(args.damage, args.output, args.data, args.seed, args.minutes, args.sample_rate, log)
    print(report["table"])
    print(f"wrote {args.output} and {report['report_path']}")
    return 0
