"""``chain train restorer``: simulate a damage on clean files, split by file, fit, save, evaluate on the test split.

Steps (:func:`train_restorer`):

1. The clean files: ``--data DIR`` (every audio file under it), else the corpus that
   :func:`pedalchain.models.restore.data.clean_corpus` builds in ``~/.cache/pedalchain/corpus`` (Debian's
   sonic-pi samples, fluidsynth renders of generated MIDI, synthesized material).
2. Split train / validation / test **by file** (:func:`~pedalchain.models.restore.data.split_by_file`, seeded).
3. The damage's trainer (:data:`TRAINERS`, imported lazily) fits on train, selects on validation:
   ``fit(train_clips, val_clips, sample_rate, damage, seed, budget_s) -> (arrays, config, extra)``.
4. The model is saved with :func:`~pedalchain.models.model_file.save_arrays` (data list, seed, durations and the
   test metrics in the metadata), then loaded back *from the file* into its restorer, which processes every
   damaged test file; the metrics (:func:`measure`) are compared with passthrough (the damaged input) and the
   damage's obvious baseline (naive decimate + resample for doubled samples).  The table goes to the log and
   ``<stem>.report.json`` beside the model.

Metrics (:func:`measure`): LSD, LSD below/above fs/4 (bels: centred reflect-padded STFT, n_fft 2048, hop 512,
Hann, power floor 1e-8, log10, RMS over bins per frame, mean over frames, averaged over channels), SNR and
SI-SDR (dB).  LSD rewards a mirror image and SNR rewards an empty top band: both are always reported.
"""

from __future__ import annotations

import importlib
import inspect
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError

TRAINERS: dict[str, tuple[str, str]] = {
    "doubled-samples": ("fit_doubled", "doubled-samples"),
    "bandwidth": ("fit_bandwidth", "bandwidth"),
    "mp3": ("fit_bandwidth", "bandwidth"),
    "noise": ("fit_denoise", "denoise"),
    "clip": ("fit_declip", "declip"),
    "hold": ("fit_dequantize", "dequantize"),
    "bits": ("fit_dequantize", "dequantize"),
}
"""Damage kind (the part of ``--damage`` before ``:``) -> (trainer module in models/restore, restorer name)."""
SPLIT = (0.7, 0.15, 0.15)
"""Shares of the files for train, validation and test."""
MAX_EVAL_S = 30.0
"""Test files are evaluated on their first 30 s."""


def damage_kind(spec: str) -> str:
    return spec.split(":", 1)[0].strip()


def trainer_for(spec: str) -> tuple[Any, str]:
    """(trainer module, restorer name) for a ``--damage`` value; ParameterError when unknown or not installed."""
    kind = damage_kind(spec)
    if kind not in TRAINERS:
        raise ParameterError(f"unknown damage kind {kind!r} (known: {', '.join(TRAINERS)})", where="--damage")
    module_name, restorer = TRAINERS[kind]
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ModuleNotFoundError as error:
        if error.name and error.name.endswith(module_name):
            raise ParameterError(
                f"no trainer for {kind!r} in this pedalchain (models/restore/{module_name}.py is missing)",
                where="--damage",
            ) from None
        raise
    return module, restorer


# -- metrics ----------------------------------------------------------------------------------------------------------
def measure(reference: np.ndarray, candidate: np.ndarray, sample_rate: float) -> dict[str, float]:
    """LSD / lsd_low / lsd_high (bels, split fs/4), SNR and SI-SDR (dB) of ``candidate`` against ``reference``,
    both (channels, n) and aligned: :func:`pedalchain.chains.compare.compare_arrays`'s definitions."""
    from ...chains.compare import compare_arrays

    result = compare_arrays(reference, candidate, int(round(sample_rate)))
    return {key: float(result[key]) for key in ("lsd", "lsd_low", "lsd_high", "snr_db", "si_sdr_db")
            if result.get(key) is not None}


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = [key for key in rows[0] if all(key in row for row in rows)] if rows else []
    return {key: round(float(np.mean([row[key] for row in rows])), 4) for key in keys}


def format_table(results: dict[str, dict[str, float]], title: str) -> str:
    """A plain-text table: one row per method, columns LSD, LSD low, LSD high, SNR, SI-SDR."""
    lines = [title, f"{'method':<14}{'LSD':>8}{'LSD low':>9}{'LSD high':>10}{'SNR dB':>9}{'SI-SDR dB':>11}"]
    for name, row in results.items():
        lines.append(f"{name:<14}{row.get('lsd', float('nan')):>8.3f}{row.get('lsd_low', float('nan')):>9.3f}"
                     f"{row.get('lsd_high', float('nan')):>10.3f}{row.get('snr_db', float('nan')):>9.2f}"
                     f"{row.get('si_sdr_db', float('nan')):>11.2f}")
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------------------------------
def _restorer_params(restorer: str, damage: Any) -> dict[str, Any]:
    """Parameters the evaluation builds the trained restorer with (beside ``model``) for one damaged clip."""
    if restorer == "doubled-samples":
        parity = int(str(damage.variant).split()[-1]) if str(damage.variant).startswith("parity") else 0
        return {"mode": "always", "parity": parity}
    return {}


def _baselines(restorer: str, damage: Any) -> dict[str, Callable[[np.ndarray, float], np.ndarray]]:
    """The damage's obvious baselines beside passthrough: name -> function(damaged, sample_rate)."""
    if restorer == "doubled-samples":
        from ...effects.restorers.doubled import DoubledSampleRepair

        params = _restorer_params(restorer, damage)
        return {"naive": lambda audio, sr: DoubledSampleRepair("naive", params["parity"]).process(audio, sr)}
    return {}


def evaluate(model_path: Path, restorer: str, test_files: Sequence[Path], damage: Any, sample_rate: float,
             seed: int) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Mean metrics per method (passthrough, baselines, the trained restorer loaded from ``model_path``) over the
    damaged test files, and one row per file."""
    from ...effects.restorers import restorer_class
    from .data import read_clip

    rng = np.random.default_rng(seed)
    per_method: dict[str, list[dict[str, float]]] = {}
    rows = []
    for path in test_files:
        clean = np.atleast_2d(read_clip(Path(path), int(sample_rate)))[:, : int(MAX_EVAL_S * sample_rate)]
        damaged = damage.apply(clean, int(sample_rate), rng)
        outputs = {"passthrough": damaged}
        for name, function in _baselines(restorer, damage).items():
            outputs[name] = function(damaged, sample_rate)
        params = {"model": str(model_path), **_restorer_params(restorer, damage)}
        trained = restorer_class(restorer).from_params(params, where="evaluation")
        started = time.perf_counter()
        outputs["trained"] = trained.process(damaged, sample_rate)
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {"file": Path(path).name, "variant": damage.variant,
                               "realtime_x": round(clean.shape[1] / sample_rate / max(seconds, 1e-9), 1)}
        for name, output in outputs.items():
            metrics = measure(clean, output, sample_rate)
            per_method.setdefault(name, []).append(metrics)
            row[name] = {key: round(value, 4) for key, value in metrics.items()}
        rows.append(row)
    return {name: mean_metrics(values) for name, values in per_method.items()}, rows


def train_restorer(damage_spec: str, output: Path, data_dir: Path | None = None, seed: int = 0,
                   minutes: float = 5.0, sample_rate: float = 44100.0,
                   log: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Train a restorer for ``damage_spec`` and write ``output`` (.safetensors) and ``<stem>.report.json``.

    ``minutes`` bounds the trainer's optimisation budget (data preparation and evaluation come on top);
    ``sample_rate`` (Hz) is the rate clips are read at.  Returns the report (also written as JSON).
    """
    from ...chains.atomic import write_atomically
    from ...effects.restorers import RESTORERS, restorer_class
    from ...errors import PedalchainError
    from ..model_file import save_arrays
    from . import data
    from .damage import parse_damage

    output = Path(output)
    if output.suffix != ".safetensors":
        raise ParameterError(f"the model file must end in .safetensors; got {output.name}", where="-o")
    trainer, restorer = trainer_for(damage_spec)
    damage = parse_damage(damage_spec)
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise ParameterError(f"no such folder {data_dir}", where="--data")
        files = sorted(data.audio_files(Path(data_dir)))
        source = str(data_dir)
    else:
        cache = Path.home() / ".cache" / "pedalchain" / "corpus"
        log(f"building / using the clean corpus in {cache}")
        files = sorted(data.clean_corpus(cache, seed=0))
        source = str(cache)
    if len(files) < 3:
        raise ParameterError(f"needs at least 3 clean audio files to split train/validation/test; found {len(files)}",
                             where="--data")
    train, val, test = data.split_by_file(files, seed, SPLIT)
    log(f"{len(files)} files: {len(train)} train, {len(val)} validation, {len(test)} test")
    started = time.perf_counter()
    accepts_log = "log" in inspect.signature(trainer.fit).parameters
    arrays, config, extra = trainer.fit(train, val, sample_rate, damage, seed, 60.0 * minutes,
                                        **({"log": log} if accepts_log else {}))
    fit_seconds = time.perf_counter() - started
    durations = [float(data.read_clip(Path(path), int(sample_rate)).shape[-1]) / sample_rate for path in train]
    try:
        architecture = importlib.import_module(RESTORERS[restorer].split(":")[0]).ARCHITECTURE
    except (ModuleNotFoundError, AttributeError):
        raise ParameterError(f"the '{restorer}' restorer that runs this model is not in this pedalchain "
                             f"({RESTORERS[restorer]} is missing or has no ARCHITECTURE)", where="--damage") from None
    training = {
        "data": [Path(path).name for path in train], "validation": [Path(path).name for path in val],
        "test": [Path(path).name for path in test], "source": source, "seed": seed,
        "duration_s": round(sum(durations), 1), "damage": damage_spec, "fit_seconds": round(fit_seconds, 1),
        **extra,
    }
    save_arrays(output, arrays, architecture=architecture, config=config, sample_rate=sample_rate,
                training=training, metrics={})
    log(f"evaluating on {len(test)} test files")
    results, rows = evaluate(output, restorer, test, damage, sample_rate, seed + 1000)
    try:
        latency = restorer_class(restorer).from_params({"model": str(output)}).latency_at(sample_rate)
    except PedalchainError:
        latency = 0  # a restorer that needs more parameters to say: the file still loads
    info = save_arrays(output, arrays, architecture=architecture, config=config, sample_rate=sample_rate,
                       training=training, metrics={"test": results, "test_files": [row["file"] for row in rows]},
                       latency=latency)
    report = {"model": str(output), "damage": damage_spec, "restorer": restorer, "architecture": architecture,
              "config": config, "training": training, "test": results, "test_files": rows,
              "parameters": info.parameter_count}
    report_path = output.with_name(output.stem + ".report.json")
    write_atomically(report_path, json.dumps(report, indent=2, allow_nan=False, default=float) + "\n")
    report["table"] = format_table(results, f"test split ({len(test)} files, damage {damage_spec}), means:")
    report["report_path"] = str(report_path)
    return report
