"""The capture report: validation metrics, speed and size as JSON (``<stem>.report.json``) and a PNG figure
(``<stem>.report.png``: validation error per family over time, target-vs-model spectra).  Imports torch, numpy
and (for the PNG) matplotlib with the Agg backend.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...chains.atomic import write_atomically
from ..base import StreamingModel
from .losses import MultiResolutionSTFTLoss
from .pairing import Pair
from .trainer import TrainResult, validation_predictor

LEVEL_BANDS = ((-math.inf, -40.0), (-40.0, -20.0), (-20.0, -6.0), (-6.0, math.inf))
"""Target RMS bands (dBFS) of 4096-sample segments for the per-level ESR."""

SEGMENT = 4096


def band_name(low: float, high: float) -> str:
    if low == -math.inf:
        return f"below {high:g} dBFS"
    if high == math.inf:
        return f"above {low:g} dBFS"
    return f"{low:g} to {high:g} dBFS"


def esr_by_level(predicted: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """Plain ESR within each :data:`LEVEL_BANDS` band of 4096-sample segments (None for an empty band)."""
    n = (len(target) // SEGMENT) * SEGMENT
    t = target[:n].astype(np.float64).reshape(-1, SEGMENT)
    e = (predicted[:n].astype(np.float64).reshape(-1, SEGMENT) - t) ** 2
    energy = (t**2).sum(axis=1)
    level = 10 * np.log10(energy / SEGMENT + 1e-30)
    out: dict[str, float | None] = {}
    for low, high in LEVEL_BANDS:
        chosen = (level >= low) & (level < high) & (energy > 0)
        out[band_name(low, high)] = float(e[chosen].sum() / energy[chosen].sum()) if chosen.any() else None
    return out


def real_time_factor(model: StreamingModel, sample_rate: int, seconds: float = 5.0, block: int = 512,
                     seed: int = 0) -> dict[str, float]:
    """× real time of ``model`` on the CPU thread setting in force: streamed (``block`` samples) and whole-buffer."""
    model = copy_for_inference(model)
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-0.5, 0.5, (1, int(seconds * sample_rate)))
                         .astype(np.float32))
    with torch.inference_mode():
        started = time.perf_counter()
        model(x)
        whole = time.perf_counter() - started
        state = model.initial_state(1, torch.device("cpu"))
        started = time.perf_counter()
        for i in range(0, x.shape[1], block):
            model.forward_stream(x[:, i : i + block], state)
        streamed = time.perf_counter() - started
    return {"whole_file": seconds / whole, f"streamed_block_{block}": seconds / streamed}


def copy_for_inference(model: StreamingModel) -> StreamingModel:
    """A float32 CPU copy in eval mode (as the NeuralProcessor runs models)."""
    clone = type(model)(**model.config())
    clone.load_state_dict(model.state_dict())
    return clone.float().eval().requires_grad_(False)


def build_report(result: TrainResult, pair: Pair, output: Path, extra: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """All figures of the final report as a JSON-able dict."""
    model = copy_for_inference(result.model)
    predict, target = validation_predictor(pair, torch.device("cpu"))
    predicted = predict(model)
    esr = float(np.sum((target.astype(np.float64) - predicted) ** 2) / (np.sum(target.astype(np.float64) ** 2)
                                                                        + 1e-30))
    with torch.no_grad():
        stft = float(MultiResolutionSTFTLoss()(torch.from_numpy(predicted)[None].float(),
                                               torch.from_numpy(target)[None].float()))
    parameters = sum(p.numel() for p in model.parameters())
    report = {
        "output": str(output),
        "family": result.family,
        "architecture": model.architecture,
        "config": model.config(),
        "target_esr": result.target_esr,
        "reached_target": result.reached,
        "interrupted": result.interrupted,
        "training_seconds": round(result.seconds, 2),
        "device": result.device,
        "validation": {
            "seconds": round(len(target) / pair.sample_rate, 2),
            "esr": esr,
            "esr_by_level": esr_by_level(predicted, target),
            "mr_stft_distance": stft,
        },
        "real_time_factor": real_time_factor(model, pair.sample_rate),
        "model_size": {"parameters": parameters,
                       "bytes": output.stat().st_size if output.exists() else None},
        "families": [f.summary() for f in result.families],
        "checks": [{"name": c.name, "passed": c.passed, "critical": c.critical, "message": c.message,
                    "measured": c.measured} for c in pair.checks],
        "data": pair.description,
        "latency_samples": pair.latency.samples,
        "sample_rate": pair.sample_rate,
    }
    report.update(extra or {})
    report["_curves"] = {f.family: f.history for f in result.families}
    report["_spectra"] = _spectra(predicted, target, pair.sample_rate)
    return report


def _spectra(predicted: np.ndarray, target: np.ndarray, sample_rate: int, size: int = 4096) -> dict[str, list[float]]:
    """Averaged power spectra (dB) of target and model output on the validation region."""
    n = (len(target) // size) * size
    window = np.hanning(size)

    def power(x: np.ndarray) -> np.ndarray:
        frames = x[:n].astype(np.float64).reshape(-1, size) * window
        return 10 * np.log10(np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) + 1e-20)

    return {"frequency_hz": np.fft.rfftfreq(size, 1 / sample_rate).tolist(), "target_db": power(target).tolist(),
            "model_db": power(predicted).tolist()}


def summary_text(report: dict[str, Any]) -> str:
    """The report as lines for the terminal."""
    v = report["validation"]
    lines = [f"chosen: {report['family']} ({report['architecture']}, {report['model_size']['parameters']:,} "
             f"parameters) - validation ESR {v['esr']:.3g} "
             f"({'reached' if report['reached_target'] else 'did not reach'} target {report['target_esr']:g})"]
    lines.append("  per level: " + ", ".join(f"{k} {'-' if e is None else f'{e:.3g}'}"
                                            for k, e in v["esr_by_level"].items()))
    lines.append(f"  MR-STFT distance {v['mr_stft_distance']:.3g}; speed " + ", ".join(
        f"{k.replace('_', ' ')} {x:.0f}x real time" for k, x in report["real_time_factor"].items()))
    for family in report["families"]:
        reached = family["validation_esr"]
        reached_text = "not fitted" if not math.isfinite(reached) else f"ESR {reached:.3g}"
        lines.append(f"  {family['family']:<19} {reached_text:<16} {family['seconds']:7.1f} s  {family['note']}")
    if report["interrupted"]:
        lines.append("  interrupted (Ctrl-C): the best model so far was kept")
    return "\n".join(lines)


def write_report(report: dict[str, Any], json_path: Path, png_path: Path) -> bool:
    """Write the JSON (without the plotting data) and the PNG, each atomically.

    Returns False (and writes no PNG) when matplotlib is not installed.
    """
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    write_atomically(json_path, json.dumps(public, indent=2, default=_jsonable) + "\n")
    try:
        image = _figure(report)
    except ImportError:
        return False
    write_atomically(png_path, image)
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _figure(report: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100)
    curves, spectra = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for family, history in report["_curves"].items():
        if history:
            curves.semilogy([h["elapsed_s"] for h in history], [h["validation_esr"] for h in history], "o-",
                            label=family, markersize=3)
    curves.axhline(report["target_esr"], color="grey", linestyle="--", label="target")
    curves.set_xlabel("training time (s)")
    curves.set_ylabel("validation ESR")
    curves.set_title("validation error per family")
    curves.legend(fontsize=8)
    s = report["_spectra"]
    spectra.semilogx(s["frequency_hz"][1:], s["target_db"][1:], label="target", linewidth=1)
    spectra.semilogx(s["frequency_hz"][1:], s["model_db"][1:], label=f"model ({report['family']})", linewidth=1,
                     linestyle="--")
    spectra.set_xlabel("frequency (Hz)")
    spectra.set_ylabel("power (dB)")
    spectra.set_title(f"validation spectra, ESR {report['validation']['esr']:.3g}")
    spectra.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
