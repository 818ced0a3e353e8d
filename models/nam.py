"""Neural Amp Modeler ``.nam`` files: load them as pedalchain StreamingModels, and export ours to them.

A ``.nam`` file is JSON (never a pickle)::

    {"version": "0.5.4", "architecture": "WaveNet" | "LSTM" | "Linear", "config": {...},
     "weights": [flat list of floats], "sample_rate": 48000, "metadata": {...}}

How ``weights`` maps onto the network is architecture-specific (NAM's ``_export_weights``); see
:meth:`pedalchain.models.wavenet.WaveNet.nam_tensors` and :meth:`pedalchain.models.nam_lstm.NamLSTM.nam_weights`.
Two layouts of the WaveNet config are read: 0.5.x (layer arrays with ``head_size``, ``gated``,
``head_bias``; the A1 networks of most community captures) and 0.6.x–0.7.x (per-array ``head``
``{out_channels, kernel_size, bias}``, ``bottleneck``, ``layer1x1``/``head1x1``, ``gating_mode``...).
A file without ``sample_rate`` is 48 kHz by NAM's convention.

Mapping: WaveNet -> :class:`~pedalchain.models.wavenet.WaveNet` ("wavenet"), LSTM ->
:class:`~pedalchain.models.nam_lstm.NamLSTM` ("nam_lstm"), Linear (NAM's FIR) ->
:class:`~pedalchain.models.fir.FIR` ("fir"), or :class:`NamLinear` ("nam_linear") when it has a bias.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..chains.atomic import write_atomically
from ..errors import ModelFileError
from .base import StreamingModel
from .fir import FIR
from .model_file import ModelInfo
from .nam_lstm import NamLSTM
from .registry import ARCHITECTURES, register_architecture
from .wavenet import WaveNet, normalize_activation

SUPPORTED_VERSIONS = ((0, 5), (0, 7))
"""Oldest and newest (major, minor) of the .nam format read here (0.5.x, 0.6.x, 0.7.x)."""

EXPORT_VERSION = "0.5.4"
"""Version written for networks the 0.5 layout can hold (NAM's plugins all read it)."""

EXPORT_VERSION_EXTENDED = "0.7.0"
"""Version written for WaveNets that need the 0.7 layout (bottleneck, head1x1, head kernel...)."""

DEFAULT_SAMPLE_RATE = 48_000.0
"""NAM's convention for files that do not state their sample rate."""

ARCHITECTURES_READ = ("WaveNet", "LSTM", "Linear")

_FILM_KEYS = (
    "conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film", "activation_pre_film",
    "activation_post_film", "layer1x1_post_film", "head1x1_post_film",
)
_TORCH_ACTIVATIONS_05 = {"Tanh", "ReLU", "Sigmoid", "SiLU", "Hardswish", "Hardsigmoid", "GELU", "Softsign",
                         "Hardtanh", "LeakyReLU", "ELU"}
"""Activations a 0.5-layout file can name (NAM 0.5 builds ``getattr(torch.nn, name)()``, default parameters)."""


class NamLinear(FIR):
    """NAM's ``Linear`` with a bias: ``y[n] = Σ_k h[k] · x[n − k] + b`` (architecture ``"nam_linear"``).

    A ``Linear`` without bias loads as a plain :class:`~pedalchain.models.fir.FIR`.
    """

    architecture: ClassVar[str] = "nam_linear"

    def __init__(self, taps: int = 256, latency: int = 0) -> None:
        super().__init__(taps=taps, latency=latency)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.bias

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().forward_stream(x, state) + self.bias


@dataclass
class NamInfo(ModelInfo):
    """:class:`~pedalchain.models.model_file.ModelInfo` of a ``.nam`` file, plus NAM's own metadata.

    ``nam_architecture`` is the file's name for the network ("WaveNet", "LSTM", "Linear");
    ``nam_metadata`` its ``metadata`` entry (name, modeled_by, gear, loudness, training...).
    """

    nam_architecture: str = ""
    nam_metadata: dict[str, Any] = field(default_factory=dict)
    sample_rate_stated: bool = True

    def describe(self) -> str:
        lines = [super().describe(), f"  NAM network      {self.nam_architecture}"]
        if not self.sample_rate_stated:
            lines.append("  NAM sample rate  not stated in the file: 48 kHz assumed (NAM's convention)")
        meta = self.nam_metadata
        for key, label in (("name", "name"), ("modeled_by", "modeled by"), ("gear_type", "gear type"),
                           ("tone_type", "tone type"), ("input_level_dbu", "input level"),
                           ("output_level_dbu", "output level")):
            if meta.get(key) is not None:
                unit = " dBu" if key.endswith("_dbu") else ""
                lines.append(f"  {label:<16} {meta[key]}{unit}")
        gear = " ".join(str(meta[k]) for k in ("gear_make", "gear_model") if meta.get(k))
        if gear:
            lines.append(f"  {'gear':<16} {gear}")
        for key in ("loudness", "gain"):
            if isinstance(meta.get(key), (int, float)):
                lines.append(f"  {key:<16} {meta[key]:.4g}" + (" dB" if key == "loudness" else ""))
        return "\n".join(lines)


# -- loading -------------------------------------------------------------------------------------------------------
def ensure_registered() -> None:
    """Register this module's extra architectures ("nam_lstm", "nam_linear") with the model registry."""
    for name, target in (("nam_lstm", "pedalchain.models.nam_lstm:NamLSTM"),
                         ("nam_linear", "pedalchain.models.nam:NamLinear")):
        if name not in ARCHITECTURES:
            register_architecture(name, target)


def parse_version(text: Any, where: str | Path) -> tuple[int, int, int]:
    """``"0.5.4"`` -> (0, 5, 4); ModelFileError for anything else, or a version outside 0.5.x..0.7.x."""
    parts = text.split(".") if isinstance(text, str) else []
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ModelFileError(f"its 'version' is not a version number like \"0.5.4\" (got {text!r})", where=where)
    version = tuple(int(p) for p in parts) + (0,) * (3 - len(parts))
    (oldest, newest) = SUPPORTED_VERSIONS
    if version[:2] > newest:
        raise ModelFileError(
            f".nam format version {text} is newer than supported (this pedalchain reads {oldest[0]}.{oldest[1]}.x "
            f"to {newest[0]}.{newest[1]}.x): upgrade pedalchain, or re-export the model with an older NAM",
            where=where,
        )
    if version[:2] < oldest:
        raise ModelFileError(
            f".nam format version {text} is older than supported (this pedalchain reads {oldest[0]}.{oldest[1]}.x "
            f"to {newest[0]}.{newest[1]}.x): re-export it with a current NAM",
            where=where,
        )
    return version  # type: ignore[return-value]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ModelFileError("is a folder, not a .nam model file", where=path) from None
    except FileNotFoundError:
        raise ModelFileError("no such model file", where=path) from None
    except UnicodeDecodeError:
        raise ModelFileError("not a .nam model file (not UTF-8 JSON text)", where=path) from None
    except OSError as error:
        raise ModelFileError(f"cannot read model file: {error.strerror or error}", where=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        hint = " (it ends early: truncated download or copy?)" if error.pos >= len(text.rstrip()) else ""
        raise ModelFileError(
            f"not a valid .nam model file: JSON error at line {error.lineno} column {error.colno}: {error.msg}{hint}",
            where=path,
        ) from None
    if not isinstance(data, dict):
        raise ModelFileError("not a .nam model file (its JSON is not an object)", where=path)
    for key in ("version", "architecture", "config", "weights"):
        if key not in data:
            raise ModelFileError(f"not a .nam model file: no '{key}' entry", where=path)
    return data


def _weights(raw: Any, path: Path) -> tuple[torch.Tensor, list[float]]:
    if not isinstance(raw, list) or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in raw):
        raise ModelFileError("its 'weights' entry is not a list of numbers", where=path)
    if not all(math.isfinite(w) for w in raw):
        raise ModelFileError("its weights contain NaN or infinity: the model is broken (re-train or re-export)",
                             where=path)
    return torch.tensor(raw, dtype=torch.float32), raw


def _count_mismatch(arch: str, expected: int, actual: int, path: Path) -> ModelFileError:
    return ModelFileError(
        f"{arch} config expects {expected} weights, the file has {actual}: the weights do not belong to this "
        "config (a corrupted or hand-edited file?)",
        where=path,
    )


def _convert_layer_array(lc: dict[str, Any], index: int) -> dict[str, Any]:
    """One NAM layer-array config (0.5 or 0.7 layout) -> WaveNet's canonical layer-array config."""
    if not isinstance(lc, dict):
        raise ValueError(f"layer array {index} is not a mapping")
    if "head_size" in lc:  # 0.5 layout
        activation = lc.get("activation", "Tanh")
        return {
            "input_size": lc["input_size"], "condition_size": lc["condition_size"], "channels": lc["channels"],
            "kernel_sizes": lc["kernel_size"], "dilations": lc["dilations"], "activations": activation,
            "gating": "gated" if lc.get("gated", False) else "none", "secondary_activations": "Sigmoid",
            "layer1x1": {"active": True, "groups": 1}, "head1x1": {"active": False},
            "head": {"out_channels": lc["head_size"], "kernel_size": 1, "bias": lc.get("head_bias", True)},
        }
    if not isinstance(lc.get("head"), dict):
        raise ValueError(f"layer array {index} has neither 'head_size' (0.5 layout) nor a 'head' mapping (0.7)")
    for key in _FILM_KEYS:
        if isinstance(lc.get(key), dict) and lc[key].get("active", False):
            raise ValueError(f"layer array {index} uses FiLM ({key}), which pedalchain does not run")
    if lc.get("slimmable"):
        raise ValueError(f"layer array {index} is slimmable, which pedalchain does not run")
    if lc.get("packing"):
        raise ValueError(f"layer array {index} is packed, which pedalchain does not run")
    n = len(lc["dilations"])
    activation = lc.get("activation", "Tanh")
    primaries = list(activation) if isinstance(activation, list) else [activation] * n
    if "gating_mode" in lc:
        gating = lc["gating_mode"]
        secondary = lc.get("secondary_activation")
    else:
        gating = "gated" if lc.get("gated", False) else "none"
        secondary = None
    gating = list(gating) if isinstance(gating, list) else [gating] * n
    secondary = list(secondary) if isinstance(secondary, list) else [secondary] * n
    # an activation given in NAM's init format {"name": "PairMultiply", "primary": ..., "secondary": ...}
    for i, act in enumerate(primaries):
        if isinstance(act, dict) and "primary" in act:
            gating[i] = {"PairMultiply": "gated", "PairBlend": "blended"}.get(act.get("name"), act.get("name"))
            secondary[i], primaries[i] = act["secondary"], act["primary"]
    head = lc["head"]
    return {
        "input_size": lc["input_size"], "condition_size": lc["condition_size"], "channels": lc["channels"],
        "bottleneck": lc.get("bottleneck", lc["channels"]),
        "kernel_sizes": lc.get("kernel_sizes", lc.get("kernel_size")), "dilations": lc["dilations"],
        "activations": primaries, "gating": gating, "secondary_activations": secondary,
        "layer1x1": {k: v for k, v in (lc.get("layer1x1") or {"active": True}).items() if k in ("active", "groups")},
        "head1x1": {k: v for k, v in (lc.get("head1x1") or {}).items() if k in ("active", "out_channels", "groups")},
        "head": {"out_channels": head["out_channels"], "kernel_size": head.get("kernel_size", 1),
                 "bias": head.get("bias", True)},
        "groups_input": lc.get("groups_input", 1), "groups_input_mixin": lc.get("groups_input_mixin", 1),
    }


def _build_wavenet(config: dict[str, Any], weights: torch.Tensor, raw: list[float], path: Path) -> WaveNet:
    try:
        if config.get("condition_dsp") is not None:
            raise ValueError("it has a condition_dsp network, which pedalchain does not run")
        layers = config["layers"]
        if not isinstance(layers, list) or not layers:
            raise ValueError("'layers' must be a non-empty list of layer arrays")
        arrays = [_convert_layer_array(lc, i) for i, lc in enumerate(layers)]
        head = config.get("head")
        if isinstance(head, dict):
            head = {k: v for k, v in head.items() if k != "in_channels"}
        model = WaveNet(arrays, head=head, head_scale=float(config.get("head_scale", 1.0)))
    except KeyError as error:
        raise ModelFileError(f"WaveNet config lacks {error}", where=path) from None
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"WaveNet config not supported: {error}", where=path) from None
    tensors = model.nam_tensors()
    expected = sum(t.numel() for t in tensors) + 1  # + head_scale
    if weights.numel() != expected:
        raise _count_mismatch("WaveNet", expected, weights.numel(), path)
    with torch.no_grad():
        i = 0
        for tensor in tensors:
            tensor.copy_(weights[i : i + tensor.numel()].view_as(tensor))
            i += tensor.numel()
    tail = float(raw[-1])  # NAM's C++ core reads head_scale here; its torch code keeps the config value if close
    if abs(tail - model.head_scale) > 1e-5:
        model.head_scale = tail
    return model


def _build_lstm(config: dict[str, Any], weights: torch.Tensor, path: Path) -> NamLSTM:
    try:
        if config.get("input_size", 1) != 1:
            raise ValueError(f"input_size {config['input_size']} (pedalchain runs mono audio: 1)")
        model = NamLSTM(hidden_size=config["hidden_size"], num_layers=config.get("num_layers", 1))
    except KeyError as error:
        raise ModelFileError(f"LSTM config lacks {error}", where=path) from None
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"LSTM config not supported: {error}", where=path) from None
    if weights.numel() != model.nam_weight_count():
        raise _count_mismatch("LSTM", model.nam_weight_count(), weights.numel(), path)
    model.load_nam_weights(weights)
    return model


def _build_linear(config: dict[str, Any], weights: torch.Tensor, path: Path) -> FIR:
    taps, bias = config.get("receptive_field"), config.get("bias", False)
    if isinstance(taps, bool) or not isinstance(taps, int) or taps < 1 or not isinstance(bias, bool):
        raise ModelFileError(
            f"Linear config needs a whole receptive_field ≥ 1 and a true/false bias, got {config!r}", where=path
        )
    expected = taps + (1 if bias else 0)
    if weights.numel() != expected:
        raise _count_mismatch("Linear", expected, weights.numel(), path)
    model = NamLinear(taps) if bias else FIR(taps)
    with torch.no_grad():
        model.weight.copy_(weights[:taps].flip(0))  # NAM's conv1d correlates: its last tap is the current sample
        if bias:
            model.bias.copy_(weights[taps:])
    return model


def load_nam(path: str | Path) -> tuple[StreamingModel, NamInfo]:
    """Load a Neural Amp Modeler ``.nam`` file: ``(model in eval mode on the CPU, its info)``.

    Raises :class:`ModelFileError` naming the file for: unreadable, truncated or garbage JSON, a format
    version newer (or older) than 0.5.x..0.7.x, an architecture other than WaveNet, LSTM or Linear (named),
    an unsupported config (FiLM, condition_dsp...), and a weight count that does not fit the config
    (expected and actual named).
    """
    path = Path(path)
    data = _read_json(path)
    version = data["version"]
    parse_version(version, path)
    arch, config = data["architecture"], data["config"]
    if arch not in ARCHITECTURES_READ:
        raise ModelFileError(
            f"NAM architecture {arch!r} is not supported: pedalchain reads {', '.join(ARCHITECTURES_READ)}",
            where=path,
        )
    if not isinstance(config, dict):
        raise ModelFileError("its 'config' entry is not a mapping", where=path)
    weights, raw = _weights(data["weights"], path)
    if arch == "WaveNet":
        model: StreamingModel = _build_wavenet(config, weights, raw, path)
    elif arch == "LSTM":
        model = _build_lstm(config, weights, path)
    else:
        model = _build_linear(config, weights, path)
    ensure_registered()
    model.eval()
    rate = data.get("sample_rate")
    stated = isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    training_meta = metadata.get("training") if isinstance(metadata.get("training"), dict) else {}
    metrics = {}
    validation_esr = training_meta.get("validation_esr")
    if isinstance(validation_esr, (int, float)):
        metrics["esr_validation"] = validation_esr
    # `chain export-nam` keeps the model file's record here (NAM ignores keys it does not know)
    record = metadata.get("pedalchain") if isinstance(metadata.get("pedalchain"), dict) else {}
    training = {"data": None, "seed": None, "duration_s": None}
    if isinstance(record.get("training"), dict):
        training.update(record["training"])
    if isinstance(record.get("metrics"), dict):
        metrics.update(record["metrics"])
    info = NamInfo(
        path=path,
        architecture=model.architecture,
        config=model.config(),
        sample_rate=float(rate) if stated else DEFAULT_SAMPLE_RATE,
        kind="emulator",
        latency=int(model.latency),
        receptive_field=int(model.receptive_field),
        parameter_count=len(raw) - (1 if arch == "WaveNet" else 0),  # head_scale is no parameter
        training=training,
        metrics=metrics,
        versions=record.get("versions") if isinstance(record.get("versions"), dict) else {},
        format_version=str(version),
        file_format="nam",
        nam_architecture=arch,
        nam_metadata=metadata,
        sample_rate_stated=stated,
    )
    return model, info


# -- exporting -----------------------------------------------------------------------------------------------------
def _activation_05(spec: dict[str, Any]) -> str | None:
    """The 0.5-layout name of an activation, or None when 0.5 cannot express it (parameters, non-torch)."""
    name = spec["type"]
    if name in _TORCH_ACTIVATIONS_05 and spec == normalize_activation(name):
        return name
    return None


def _fits_05(config: dict[str, Any]) -> bool:
    for array in config["layer_arrays"]:
        names = {_activation_05(a) for a in array["activations"]}
        if (
            array["bottleneck"] != array["channels"] or not array["layer1x1"]["active"]
            or array["layer1x1"]["groups"] != 1 or array["head1x1"]["active"] or array["head"]["kernel_size"] != 1
            or array["groups_input"] != 1 or array["groups_input_mixin"] != 1
            or len(set(array["kernel_sizes"])) != 1 or len(names) != 1 or None in names
            or len(set(array["gating"])) != 1 or array["gating"][0] == "blended"
            or any(s is not None and s != {"type": "Sigmoid"} for s in array["secondary_activations"])
        ):
            return False
    head = config["head"]
    return head is None or (set(head["kernel_sizes"]) == {1} and _activation_05(head["activation"]) is not None)


def _activation_07(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    if out["type"] == "PReLU" and len(out["negative_slopes"]) == 1:
        out["negative_slope"] = out.pop("negative_slopes")[0]
    return out


def _wavenet_config(model: WaveNet) -> tuple[str, dict[str, Any]]:
    config = model.config()
    if _fits_05(config):
        layers = [
            {
                "input_size": a["input_size"], "condition_size": a["condition_size"],
                "head_size": a["head"]["out_channels"], "channels": a["channels"], "kernel_size": a["kernel_sizes"][0],
                "dilations": a["dilations"], "activation": a["activations"][0]["type"],
                "gated": a["gating"][0] == "gated", "head_bias": a["head"]["bias"],
            }
            for a in config["layer_arrays"]
        ]
        head = config["head"]
        if head is not None:
            head = {"channels": head["channels"], "activation": head["activation"]["type"],
                    "num_layers": len(head["kernel_sizes"]), "out_channels": head["out_channels"]}
        return EXPORT_VERSION, {"layers": layers, "head": head, "head_scale": model.head_scale}
    layers = []
    for a in config["layer_arrays"]:
        layers.append({
            "input_size": a["input_size"], "condition_size": a["condition_size"], "head": a["head"],
            "channels": a["channels"], "kernel_sizes": a["kernel_sizes"], "dilations": a["dilations"],
            "activation": [_activation_07(s) for s in a["activations"]], "bottleneck": a["bottleneck"],
            "head1x1": a["head1x1"], "layer1x1": a["layer1x1"], "groups_input": a["groups_input"],
            "groups_input_mixin": a["groups_input_mixin"],
            **{key: {"active": False, "shift": True, "groups": 1} for key in _FILM_KEYS},
            "gating_mode": a["gating"],
            "secondary_activation": [None if s is None else _activation_07(s) for s in a["secondary_activations"]],
            "slimmable": None,
        })
    head = config["head"]
    if head is not None:
        activation = _activation_07(head["activation"])
        name = activation.pop("type")
        head = {"channels": head["channels"], "activation": {"name": name, **activation} if activation else name,
                "out_channels": head["out_channels"], "kernel_sizes": head["kernel_sizes"]}
    return EXPORT_VERSION_EXTENDED, {"layers": layers, "head": head, "head_scale": model.head_scale}


def _lstm_weights_from_pedalchain(model: Any, path: Path) -> tuple[dict[str, Any], torch.Tensor]:
    """pedalchain's own ``lstm`` (no skip) in NAM's LSTM layout, starting from its silence state."""
    if model.skip:
        raise ModelFileError(
            "cannot export lstm with skip=True to .nam: NAM's LSTM has no input-to-output skip", where=path
        )
    nam = NamLSTM(hidden_size=model.hidden_size, num_layers=1)
    h, c = model.silence_state()
    with torch.no_grad():
        nam.core.load_state_dict(model.lstm.state_dict())
        nam.head.load_state_dict(model.head.state_dict())
        nam.initial_hidden.copy_(h.reshape(1, -1))
        nam.initial_cell.copy_(c.reshape(1, -1))
    return nam.config() | {"input_size": 1}, nam.nam_weights()


def nam_dict(model: StreamingModel, *, sample_rate: float | None = DEFAULT_SAMPLE_RATE,
             metadata: dict[str, Any] | None = None, where: str | Path | None = None) -> dict[str, Any]:
    """The ``.nam`` JSON object for ``model`` (see :func:`export_nam`)."""
    arch = getattr(model, "architecture", type(model).__name__)
    if isinstance(model, WaveNet):
        version, config = _wavenet_config(model)
        flat = torch.cat([t.detach().float().flatten() for t in model.nam_tensors()])
        weights = flat.tolist() + [float(torch.tensor(model.head_scale, dtype=torch.float32))]  # as NAM writes it
        nam_arch = "WaveNet"
    elif isinstance(model, NamLSTM):
        version, nam_arch = EXPORT_VERSION, "LSTM"
        config, weights = model.config() | {"input_size": 1}, model.nam_weights().tolist()
    elif isinstance(model, FIR):
        if model.latency:
            raise ModelFileError(
                f"cannot export fir with latency {model.latency} to .nam: NAM files have no latency field",
                where=where,
            )
        version, nam_arch = EXPORT_VERSION, "Linear"
        bias = isinstance(model, NamLinear)
        config = {"receptive_field": model.taps, "bias": bias}
        weights = model.weight.detach().float().flip(0).tolist() + (model.bias.detach().float().tolist() if bias
                                                                    else [])
    elif arch == "lstm" and hasattr(model, "silence_state"):
        version, nam_arch = EXPORT_VERSION, "LSTM"
        config, flat = _lstm_weights_from_pedalchain(model, Path(str(where)))
        weights = flat.tolist()
    else:
        raise ModelFileError(f"cannot export {arch} to .nam: NAM has no equivalent", where=where)
    now = datetime.datetime.now()
    meta: dict[str, Any] = {"date": {"year": now.year, "month": now.month, "day": now.day, "hour": now.hour,
                                     "minute": now.minute, "second": now.second}}
    meta.update(metadata or {})
    data: dict[str, Any] = {"version": version, "metadata": meta, "architecture": nam_arch, "config": config,
                            "weights": weights}
    if sample_rate is not None:
        data["sample_rate"] = sample_rate
    return data


def export_nam(model: StreamingModel, path: str | Path, *, sample_rate: float | None = DEFAULT_SAMPLE_RATE,
               metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a ``.nam`` file (atomically: a temporary file, then a rename); returns the path.

    WaveNets the 0.5 layout can hold (NAM's A1 family) and LSTMs are written as version 0.5.4, other
    WaveNets (bottleneck, head1x1, head kernels, blended gating...) as 0.7.0; a ``fir`` becomes NAM's
    ``Linear``; pedalchain's ``lstm`` (without skip) becomes NAM's LSTM starting from its silence state.
    Anything else raises :class:`ModelFileError` "cannot export <arch> to .nam: NAM has no equivalent".

    Args:
        model: the network.
        path: target file (``.nam``).
        sample_rate: rate (Hz) the model runs at; None leaves it out (NAM then assumes 48 kHz).
        metadata: NAM metadata (``name``, ``modeled_by``, ``gear_make``...), merged over the export date.
    """
    path = Path(path)
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float))
                                    or not sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number of Hz or None; got {sample_rate!r}")
    data = nam_dict(model, sample_rate=sample_rate, metadata=metadata, where=path)
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"cannot write .nam: {error} (non-finite weights or non-JSON metadata?)",
                             where=path) from None
    write_atomically(path, text)
    return path
