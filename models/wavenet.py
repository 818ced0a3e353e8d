"""Neural Amp Modeler's WaveNet as a StreamingModel (architecture ``"wavenet"``).

The network is NAM's (sdatkinson/neural-amp-modeler ``nam/models/wavenet``): a stack of *layer arrays*,
each a 1x1 "rechannel" conv followed by dilated causal conv layers whose activations feed both a
residual path and a summed "head" path, then an optional post-stack head.  Every option that NAM's
0.5.x and 0.7.x model files use is here: gated / blended activations, bottleneck, optional layer 1x1
and head 1x1 convs, grouped convs, per-layer kernel sizes and the per-array ``head`` rechannel (with
kernel size and bias) of file version 0.7.0.  FiLM, ``condition_dsp``, slimmable and packed networks
are not (:func:`pedalchain.models.nam.load_nam` refuses them by name).

One layer ``l`` with input ``h`` (B, C, T), condition ``c`` = the model input (B, 1, T)::

    z      = conv_dilated(h) + mixer(c)                      # (B, M, T), M = bottleneck or 2·bottleneck
    a      = act(z)                    (gating "none")       # (B, bottleneck, T)
           = act(z₁) · act₂(z₂)        (gating "gated")
           = s · act(z₁) + (1 − s) · z₁, s = act₂(z₂)  ("blended")
    h_next = h + layer1x1(a)           (or h + a when layer1x1 is off)
    head  += head1x1(a)                (or a)

A layer array sums its layers' head terms (starting from the previous array's head output) and ends
with ``head_rechannel`` (a causal conv of kernel ``head.kernel_size``); the last array's head output,
times ``head_scale``, passes through the post-stack head (blocks of activation then causal conv), if any.

Streaming: every conv with a kernel longer than one sample keeps a cache of its last
``dilation·(kernel − 1)`` input samples (state key ``"a{i}.l{j}"`` etc., shape (B, C, dilation·(kernel−1))).
NAM starts from zero input history (its torch code pads ``receptive_field − 1`` zeros; its C++ core
pre-warms with as many zeros).  The intermediate signals that silence produces are not zero (biases),
so :meth:`WaveNet.initial_state` fills each cache with the constant value silence leaves there, and any
block split gives the whole-buffer output.  The whole-buffer :meth:`WaveNet.forward` pads the input
as NAM does and runs every conv "valid" (no caches, no copies); both paths share the layer code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .base import StreamingModel

GATING_MODES = ("none", "gated", "blended")
"""How a layer's pre-activation is split: "none" (one half), "gated" (act · act₂), "blended"."""

_SIMPLE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Tanh": torch.tanh,
    "ReLU": torch.relu,
    "Sigmoid": torch.sigmoid,
    "SiLU": F.silu,
    "Hardswish": F.hardswish,
    "Hardsigmoid": F.hardsigmoid,
    "GELU": F.gelu,
    "Softsign": F.softsign,
    "Softsigmoid": lambda x: 0.5 * (1.0 + x / (1.0 + x.abs())),
}
_ACTIVATION_DEFAULTS: dict[str, dict[str, float]] = {
    "Hardtanh": {"min_val": -1.0, "max_val": 1.0},
    "LeakyReLU": {"negative_slope": 0.01},
    "ELU": {"alpha": 1.0},
    "LeakyHardtanh": {"min_val": -1.0, "max_val": 1.0, "min_slope": 0.01, "max_slope": 0.01},
}
ACTIVATIONS = tuple(sorted([*_SIMPLE_ACTIVATIONS, *_ACTIVATION_DEFAULTS, "PReLU"]))
"""Activation ``type`` names this WaveNet runs (NAM's names, i.e. torch.nn class names)."""


# -- configuration ---------------------------------------------------------------------------------------------------
def normalize_activation(spec: str | dict[str, Any]) -> dict[str, Any]:
    """``"Tanh"`` or ``{"type": "LeakyReLU", "negative_slope": 0.2}`` -> a full ``{"type": ..., params}`` dict.

    Raises ValueError naming the activation for an unknown type or parameter.
    """
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("type", spec.get("name")), str):
        raise ValueError(f"activation must be a name or a mapping with 'type', got {spec!r}")
    spec = dict(spec)
    name = spec.pop("type", None) or spec.pop("name")
    if name in _SIMPLE_ACTIVATIONS:
        if spec:
            raise ValueError(f"activation {name} takes no parameters, got {sorted(spec)}")
        return {"type": name}
    if name in _ACTIVATION_DEFAULTS:
        unknown = set(spec) - set(_ACTIVATION_DEFAULTS[name])
        if unknown:
            raise ValueError(f"activation {name} has no parameter(s) {sorted(unknown)}")
        return {"type": name, **{k: float(spec.get(k, v)) for k, v in _ACTIVATION_DEFAULTS[name].items()}}
    if name == "PReLU":
        slopes = spec.get("negative_slopes", spec.get("negative_slope", 0.25))
        slopes = [float(s) for s in slopes] if isinstance(slopes, (list, tuple)) else [float(slopes)]
        return {"type": "PReLU", "negative_slopes": slopes}
    raise ValueError(f"unknown activation {name!r}; supported: {', '.join(ACTIVATIONS)}")


def _activation_function(spec: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise function of a normalized activation spec, for tensors of shape (B, C, T)."""
    name = spec["type"]
    if name in _SIMPLE_ACTIVATIONS:
        return _SIMPLE_ACTIVATIONS[name]
    if name == "Hardtanh":
        return lambda x: F.hardtanh(x, spec["min_val"], spec["max_val"])
    if name == "LeakyReLU":
        return lambda x: F.leaky_relu(x, spec["negative_slope"])
    if name == "ELU":
        return lambda x: F.elu(x, spec["alpha"])
    if name == "LeakyHardtanh":
        lo, hi, s_lo, s_hi = spec["min_val"], spec["max_val"], spec["min_slope"], spec["max_slope"]
        return lambda x: torch.where(
            x < lo, (x - lo) * s_lo + lo, torch.where(x > hi, (x - hi) * s_hi + hi, x)
        )
    if name == "PReLU":
        slopes = torch.tensor(spec["negative_slopes"], dtype=torch.float32)

        def prelu(x: torch.Tensor) -> torch.Tensor:
            weight = slopes.to(x.device, x.dtype)
            if weight.numel() not in (1, x.shape[1]):
                raise ValueError(f"PReLU has {weight.numel()} slopes for {x.shape[1]} channels")
            return F.prelu(x, weight)

        return prelu
    raise ValueError(f"unknown activation {name!r}")  # normalize_activation rejects it first


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
    return value


def normalize_layer_array(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check one layer-array config (pedalchain's canonical form, JSON-able).

    Keys: ``input_size``, ``condition_size``, ``channels``, ``bottleneck`` (default ``channels``),
    ``kernel_sizes`` (list, or an int for all layers), ``dilations`` (list), ``activations`` (list, or one
    spec for all layers), ``gating`` (list of "none" | "gated" | "blended", or one mode),
    ``secondary_activations`` (list; "Sigmoid" where gating and none given), ``layer1x1``
    ``{"active", "groups"}``, ``head1x1`` ``{"active", "out_channels", "groups"}``, ``head``
    ``{"out_channels", "kernel_size", "bias"}``, ``groups_input``, ``groups_input_mixin``.
    """
    spec = copy.deepcopy(spec)
    known = {
        "input_size", "condition_size", "channels", "bottleneck", "kernel_sizes", "dilations", "activations",
        "gating", "secondary_activations", "layer1x1", "head1x1", "head", "groups_input", "groups_input_mixin",
    }
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown layer-array key(s) {sorted(unknown)}; known: {sorted(known)}")
    out: dict[str, Any] = {}
    for key in ("input_size", "condition_size", "channels"):
        out[key] = _positive_int(spec.get(key), key)
    out["bottleneck"] = _positive_int(spec.get("bottleneck", out["channels"]), "bottleneck")
    dilations = spec.get("dilations")
    if not isinstance(dilations, (list, tuple)) or not dilations:
        raise ValueError(f"dilations must be a non-empty list, got {dilations!r}")
    out["dilations"] = [_positive_int(d, "dilation") for d in dilations]
    n = len(out["dilations"])

    def per_layer(value: Any, name: str) -> list[Any]:
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} layers (one per dilation)")
            return list(value)
        return [value] * n

    out["kernel_sizes"] = [_positive_int(k, "kernel size") for k in per_layer(spec.get("kernel_sizes", 3),
                                                                               "kernel_sizes")]
    out["activations"] = [normalize_activation(a) for a in per_layer(spec.get("activations", "Tanh"), "activations")]
    out["gating"] = per_layer(spec.get("gating", "none"), "gating")
    for mode in out["gating"]:
        if mode not in GATING_MODES:
            raise ValueError(f"gating must be one of {', '.join(GATING_MODES)}, got {mode!r}")
    secondary = per_layer(spec.get("secondary_activations"), "secondary_activations")
    out["secondary_activations"] = [
        None if mode == "none" else normalize_activation(s if s is not None else "Sigmoid")
        for mode, s in zip(out["gating"], secondary, strict=True)
    ]
    layer1x1 = {"active": True, "groups": 1, **(spec.get("layer1x1") or {})}
    head1x1 = {"active": False, "out_channels": 1, "groups": 1, **(spec.get("head1x1") or {})}
    head = {"out_channels": out["bottleneck"], "kernel_size": 1, "bias": False, **(spec.get("head") or {})}
    out["layer1x1"] = {"active": bool(layer1x1["active"]), "groups": _positive_int(layer1x1["groups"], "groups")}
    out["head1x1"] = {
        "active": bool(head1x1["active"]),
        "out_channels": _positive_int(head1x1["out_channels"], "head1x1 out_channels"),
        "groups": _positive_int(head1x1["groups"], "head1x1 groups"),
    }
    out["head"] = {
        "out_channels": _positive_int(head["out_channels"], "head out_channels"),
        "kernel_size": _positive_int(head["kernel_size"], "head kernel_size"),
        "bias": bool(head["bias"]),
    }
    out["groups_input"] = _positive_int(spec.get("groups_input", 1), "groups_input")
    out["groups_input_mixin"] = _positive_int(spec.get("groups_input_mixin", 1), "groups_input_mixin")
    if not out["layer1x1"]["active"] and out["bottleneck"] != out["channels"]:
        raise ValueError("without layer1x1 the bottleneck must equal channels (the residual adds them)")
    return out


def normalize_head(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """Post-stack head ``{"channels", "activation", "out_channels", "kernel_sizes"}`` (or None)."""
    if spec is None:
        return None
    spec = dict(spec)
    if "num_layers" in spec and "kernel_sizes" not in spec:  # NAM 0.5.x: 1x1 convs only
        spec["kernel_sizes"] = [1] * _positive_int(spec.pop("num_layers"), "head num_layers")
    unknown = set(spec) - {"channels", "activation", "out_channels", "kernel_sizes"}
    if unknown:
        raise ValueError(f"unknown head key(s) {sorted(unknown)}")
    kernel_sizes = spec.get("kernel_sizes")
    if not isinstance(kernel_sizes, (list, tuple)) or not kernel_sizes:
        raise ValueError(f"head kernel_sizes must be a non-empty list, got {kernel_sizes!r}")
    return {
        "channels": _positive_int(spec.get("channels"), "head channels"),
        "activation": normalize_activation(spec.get("activation", "Tanh")),
        "out_channels": _positive_int(spec.get("out_channels", 1), "head out_channels"),
        "kernel_sizes": [_positive_int(k, "head kernel size") for k in kernel_sizes],
    }


# -- modules -----------------------------------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, kernel: int, *, bias: bool, groups: int = 1, dilation: int = 1) -> torch.nn.Conv1d:
    if c_in % groups or c_out % groups:
        raise ValueError(f"a conv of {c_in} -> {c_out} channels cannot be split into {groups} groups")
    return torch.nn.Conv1d(c_in, c_out, kernel, bias=bias, groups=groups, dilation=dilation)


class _Layer(torch.nn.Module):
    """One dilated layer; parameters named as NAM orders them (conv, mixer, layer1x1, head1x1)."""

    def __init__(self, spec: dict[str, Any], index: int) -> None:
        super().__init__()
        channels, bottleneck = spec["channels"], spec["bottleneck"]
        self.kernel_size = spec["kernel_sizes"][index]
        self.dilation = spec["dilations"][index]
        self.gating = spec["gating"][index]
        self.bottleneck = bottleneck
        mid = bottleneck if self.gating == "none" else 2 * bottleneck
        self.conv = _conv(channels, mid, self.kernel_size, bias=True, groups=spec["groups_input"],
                          dilation=self.dilation)
        self.mixer = _conv(spec["condition_size"], mid, 1, bias=False, groups=spec["groups_input_mixin"])
        self.layer1x1 = (_conv(bottleneck, channels, 1, bias=True, groups=spec["layer1x1"]["groups"])
                         if spec["layer1x1"]["active"] else None)
        self.head1x1 = (_conv(bottleneck, spec["head1x1"]["out_channels"], 1, bias=True,
                              groups=spec["head1x1"]["groups"]) if spec["head1x1"]["active"] else None)
        self._act = _activation_function(spec["activations"][index])
        second = spec["secondary_activations"][index]
        self._act2 = _activation_function(second) if second is not None else None
        # condition_size == 1 and one group: the mixer is an outer product, done as one multiply-add
        self._mix_outer = spec["condition_size"] == 1 and spec["groups_input_mixin"] == 1
        self.history = self.dilation * (self.kernel_size - 1)

    @property
    def head_channels(self) -> int:
        return self.head1x1.out_channels if self.head1x1 is not None else self.bottleneck

    def forward(self, joined: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``joined`` (B, C, history + n): this layer's input with its past in front; ``c`` (B, Dc, ≥ n).

        Returns ``(h_next, head term)``, each (B, ·, n) for the last ``n`` samples.
        """
        n = joined.shape[2] - self.history
        c = c[:, :, c.shape[2] - n:]
        bias = self.conv.bias.view(1, -1, 1)
        if self._mix_outer:  # mixer and conv bias in one pass: b + (1, M, 1)·(B, 1, n)
            z = torch.addcmul(bias, self.mixer.weight.view(1, -1, 1), c)
        else:
            z = F.conv1d(c, self.mixer.weight, groups=self.mixer.groups).add_(bias)
        z = _taps(joined, self.conv, n, self.dilation, into=z)  # (B, M, n)
        if self.gating == "none":
            a = z.tanh_() if self._act is torch.tanh else self._act(z)
        else:
            z1, z2 = z[:, : self.bottleneck], z[:, self.bottleneck:]
            s = self._act2(z2)
            a = self._act(z1) * s if self.gating == "gated" else s * self._act(z1) + (1.0 - s) * z1
        residual = joined[:, :, self.history:]
        if self.layer1x1 is None:
            h_next = residual + a
        elif self.layer1x1.groups == 1:  # (residual + b) + W·a: one pass, then one BLAS call per stream
            w = _tap_weights(self.layer1x1)[0].expand(a.shape[0], -1, -1)
            h_next = torch.add(residual, self.layer1x1.bias.view(1, -1, 1)).baddbmm_(w, a)
        else:
            h_next = residual + F.conv1d(a, self.layer1x1.weight, self.layer1x1.bias, groups=self.layer1x1.groups)
        term = a if self.head1x1 is None else _taps(a, self.head1x1, n, 1)
        return h_next, term


def _taps(x: torch.Tensor, conv: torch.nn.Conv1d, n: int, dilation: int, into: torch.Tensor | None = None
          ) -> torch.Tensor:
    """Valid causal ``conv`` over the last ``n + dilation·(kernel − 1)`` samples of ``x`` (B, C_in, L)
    -> (B, C_out, n); with ``into`` (B, C_out, n), the taps are added to it in place and ``conv.bias`` is
    not applied (the caller put it there).

    ``y[:, :, t] = b + Σ_j W[:, :, j] · x[:, :, t0 + t + j·dilation]``, one batched matmul per tap on strided
    views of ``x`` (no copy); on this CPU that is about twice as fast as torch's dilated ``conv1d``
    for NAM's 8–16 channels.  Grouped convs use ``conv1d``.
    """
    w, b = conv.weight, conv.bias
    k = w.shape[2]
    start = x.shape[2] - n - dilation * (k - 1)
    if conv.groups != 1:
        if into is not None:
            return into.add_(F.conv1d(x[:, :, start:], w, dilation=dilation, groups=conv.groups))
        return F.conv1d(x[:, :, start:], w, b, dilation=dilation, groups=conv.groups)
    batch = x.shape[0]
    taps = _tap_weights(conv)
    out = into
    for j in reversed(range(k)):  # the current-sample tap first
        view = x[:, :, start + j * dilation : start + j * dilation + n]
        wj = taps[j] if batch == 1 else taps[j].expand(batch, -1, -1)
        if out is None:
            out = torch.bmm(wj, view) if b is None else torch.baddbmm(b.view(1, -1, 1), wj, view)
        else:
            out = out.baddbmm_(wj, view)
    return out


def _tap_weights(conv: torch.nn.Conv1d) -> list[torch.Tensor]:
    """``conv.weight[:, :, j]`` for each tap ``j`` as a contiguous (1, C_out, C_in) matrix.

    Without autograd they are cached on the conv (refreshed when its weight changes), which saves a copy
    and several dispatches per tap and call: that matters when streaming small blocks.
    """
    w = conv.weight
    if torch.is_grad_enabled() and w.requires_grad:
        return [w[None, :, :, j] for j in range(w.shape[2])]
    key = (w.data_ptr(), w._version, w.dtype, w.device)
    cached = conv.__dict__.get("_tap_cache")
    if cached is None or cached[0] != key:
        cached = (key, [w.detach()[:, :, j].contiguous()[None] for j in range(w.shape[2])])
        conv.__dict__["_tap_cache"] = cached
    return cached[1]


class _LayerArray(torch.nn.Module):
    """Rechannel (1x1, no bias), the dilated layers, and the head rechannel (kernel ``head.kernel_size``)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        self.rechannel = _conv(spec["input_size"], spec["channels"], 1, bias=False)
        self.layers = torch.nn.ModuleList(_Layer(spec, i) for i in range(len(spec["dilations"])))
        head_in = self.layers[0].head_channels
        head = spec["head"]
        self.head_rechannel = _conv(head_in, head["out_channels"], head["kernel_size"], bias=head["bias"])
        self.head_history = head["kernel_size"] - 1

    @property
    def receptive_field(self) -> int:
        return 1 + sum(layer.history for layer in self.layers) + self.head_history


class _Head(torch.nn.Module):
    """Post-stack head: blocks of ``activation`` then a causal conv (kernel ``kernel_sizes[i]``)."""

    def __init__(self, spec: dict[str, Any], in_channels: int) -> None:
        super().__init__()
        sizes = spec["kernel_sizes"]
        channels = [in_channels] + [spec["channels"]] * (len(sizes) - 1) + [spec["out_channels"]]
        self.convs = torch.nn.ModuleList(_conv(channels[i], channels[i + 1], k, bias=True) for i, k in enumerate(sizes))
        self._act = _activation_function(spec["activation"])


NAM_PRESETS: dict[str, tuple[int, int, list[int]]] = {
    "standard": (16, 8, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
    "lite": (12, 6, [128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
    "feather": (8, 4, [128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
    "nano": (4, 2, [128, 256, 512, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
}
"""NAM's A1 WaveNet sizes: (first array channels, second array channels, second array dilations); the first
array of "lite", "feather" and "nano" has dilations 1..64, of "standard" 1..512."""


class WaveNet(StreamingModel):
    """NAM's WaveNet: ``y = head(head_scale · Σ head terms)`` over stacked dilated layer arrays.

    Shapes: ``forward(x)`` takes (batch, samples) float32 and returns (batch, samples); the model input is
    also every layer's condition.  The receptive field is
    ``1 + Σ_arrays (Σ_layers dilation·(kernel − 1) + head.kernel_size − 1) + Σ_head (kernel − 1)``
    (4,093 samples for NAM's standard A1 network).

    Args:
        layer_arrays: one dict per layer array, see :func:`normalize_layer_array`.  An array's
            ``input_size`` must equal the previous array's ``channels``, and its head terms must have as
            many channels as the previous array's ``head.out_channels``.
        head: post-stack head (see :func:`normalize_head`) or None (NAM's A1 networks have none).
        head_scale: factor on the summed head before the post-stack head (NAM's standard: 0.02).
    """

    architecture: ClassVar[str] = "wavenet"

    def __init__(self, layer_arrays: Sequence[dict[str, Any]], head: dict[str, Any] | None = None,
                 head_scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(layer_arrays, (list, tuple)) or not layer_arrays:
            raise ValueError("layer_arrays must be a non-empty list of layer-array configs")
        specs = [normalize_layer_array(spec) for spec in layer_arrays]
        if specs[0]["input_size"] != 1 or any(s["condition_size"] != 1 for s in specs):
            raise ValueError("the first layer array's input_size and every condition_size must be 1 (mono audio)")
        for i in range(1, len(specs)):
            if specs[i]["input_size"] != specs[i - 1]["channels"]:
                raise ValueError(
                    f"layer array {i} has input_size {specs[i]['input_size']}, but layer array {i - 1} "
                    f"outputs {specs[i - 1]['channels']} channels"
                )
            head_in = specs[i]["head1x1"]["out_channels"] if specs[i]["head1x1"]["active"] else specs[i]["bottleneck"]
            if head_in != specs[i - 1]["head"]["out_channels"]:
                raise ValueError(
                    f"layer array {i} makes head terms of {head_in} channels, but layer array {i - 1}'s head "
                    f"has {specs[i - 1]['head']['out_channels']} (head out_channels / head_size)"
                )
        self.arrays = torch.nn.ModuleList(_LayerArray(spec) for spec in specs)
        self._head_spec = normalize_head(head)
        last_head = specs[-1]["head"]["out_channels"]
        self.head = _Head(self._head_spec, last_head) if self._head_spec is not None else None
        out_channels = self._head_spec["out_channels"] if self._head_spec is not None else last_head
        if out_channels != 1:
            raise ValueError(f"the network must end in 1 channel (mono audio), it ends in {out_channels}")
        if isinstance(head_scale, bool) or not isinstance(head_scale, (int, float)):
            raise ValueError(f"head_scale must be a number, got {head_scale!r}")
        self.head_scale = float(head_scale)

    @classmethod
    def nam_preset(cls, size: str = "standard") -> WaveNet:
        """NAM's A1 WaveNet of ``size`` "standard" (13,801 weights), "lite", "feather" or "nano", with torch's
        default random initialisation (as NAM starts training); receptive field 4,093 samples."""
        if size not in NAM_PRESETS:
            raise ValueError(f"unknown NAM WaveNet size {size!r}; choose one of {', '.join(NAM_PRESETS)}")
        first, second, dilations = NAM_PRESETS[size]
        first_dilations = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] if size == "standard" else [1, 2, 4, 8, 16, 32, 64]
        arrays = [
            {"input_size": 1, "condition_size": 1, "channels": first, "kernel_sizes": 3, "dilations": first_dilations,
             "head": {"out_channels": second, "kernel_size": 1, "bias": False}},
            {"input_size": first, "condition_size": 1, "channels": second, "kernel_sizes": 3, "dilations": dilations,
             "head": {"out_channels": 1, "kernel_size": 1, "bias": True}},
        ]
        return cls(arrays, head=None, head_scale=0.02)

    # -- StreamingModel --------------------------------------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        head = sum(k - 1 for k in self._head_spec["kernel_sizes"]) if self._head_spec is not None else 0
        return 1 + sum(array.receptive_field - 1 for array in self.arrays) + head

    def config(self) -> dict[str, Any]:
        return {
            "layer_arrays": [copy.deepcopy(array.spec) for array in self.arrays],
            "head": copy.deepcopy(self._head_spec),
            "head_scale": self.head_scale,
        }

    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Caches filled with what silence leaves in them, each (batch, channels, history)."""
        weight = self.arrays[0].rechannel.weight
        state: dict[str, torch.Tensor | None] = {key: None for key in self._cache_keys()}
        with torch.no_grad():
            self._step(torch.zeros(1, 1, device=device, dtype=weight.dtype), state)
        return {key: value.expand(batch, -1, -1).contiguous() for key, value in state.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, samples) -> (batch, samples), from zero input history.

        As NAM does (``pad_start``): ``receptive_field − 1`` zeros in front, then every conv "valid", so
        no layer copies its input; streaming (:meth:`forward_stream`) gives the same output within float
        rounding (≈1e-7).
        """
        if x.ndim != 2:
            raise ValueError(f"WaveNet takes (batch, samples), got shape {tuple(x.shape)}")
        return self._step(F.pad(x, (self.receptive_field - 1, 0)), None)

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next block ``x`` (batch, n ≥ 1) -> (batch, n); replaces the caches in ``state``."""
        if x.ndim != 2:
            raise ValueError(f"WaveNet takes (batch, samples), got shape {tuple(x.shape)}")
        return self._step(x, state)

    # -- computation -------------------------------------------------------------------------------------------------
    def _cache_keys(self) -> list[str]:
        keys = []
        for i, array in enumerate(self.arrays):
            keys += [f"a{i}.l{j}" for j, layer in enumerate(array.layers) if layer.history]
            if array.head_history:
                keys.append(f"a{i}.head")
        if self.head is not None:
            keys += [f"head{j}" for j, conv in enumerate(self.head.convs) if conv.kernel_size[0] > 1]
        return keys

    @staticmethod
    def _join(x: torch.Tensor, state: dict[str, Any] | None, key: str, history: int) -> torch.Tensor:
        """``x`` (B, C, n) with its ``history`` past samples in front, from and back into ``state[key]``.

        ``state`` None: whole-buffer mode, the past is already in ``x``.  ``state[key]`` None: the past is
        taken equal to the first sample (used once, on silence, to find the state silence leaves).
        """
        if not history or state is None:
            return x
        past = state[key] if state[key] is not None else x[:, :, :1].expand(-1, -1, history)
        joined = torch.cat((past, x), dim=2)  # (B, C, history + n)
        state[key] = joined[:, :, joined.shape[2] - history:]
        return joined

    def _step(self, x: torch.Tensor, state: dict[str, Any] | None) -> torch.Tensor:
        """(B, n) -> (B, n) with ``state`` caches, or (B, n) -> (B, n − receptive_field + 1) when ``state`` is None."""
        in_place = not torch.is_grad_enabled()  # summing head terms into a tensor autograd still needs is unsafe
        c = x.unsqueeze(1)  # (B, 1, n): input and condition
        h, head = c, None
        for i, array in enumerate(self.arrays):
            h = _taps(h, array.rechannel, h.shape[2], 1)  # (B, channels, n)
            for j, layer in enumerate(array.layers):
                h, term = layer(self._join(h, state, f"a{i}.l{j}", layer.history), c)
                if head is None:
                    head = term
                else:
                    head = head[:, :, head.shape[2] - term.shape[2]:]
                    head = head.add_(term) if in_place else head + term
            joined = self._join(head, state, f"a{i}.head", array.head_history)
            head = _taps(joined, array.head_rechannel, joined.shape[2] - array.head_history, 1)
            h = h[:, :, h.shape[2] - head.shape[2]:]
        y = head * self.head_scale
        if self.head is not None:
            for j, conv in enumerate(self.head.convs):
                history = conv.kernel_size[0] - 1
                joined = self._join(self.head._act(y), state, f"head{j}", history)
                y = _taps(joined, conv, joined.shape[2] - history, 1)
        return y[:, 0]

    # -- NAM weight order --------------------------------------------------------------------------------------------
    def nam_tensors(self) -> list[torch.Tensor]:
        """Parameters in the order of a ``.nam`` file's flat ``weights`` (``head_scale`` follows them).

        Per array: rechannel, per layer (conv weight, conv bias, mixer, layer1x1 weight+bias,
        head1x1 weight+bias), head rechannel weight (+bias); then the post-stack head convs.
        """
        tensors: list[torch.Tensor] = []
        for array in self.arrays:
            tensors.append(array.rechannel.weight)
            for layer in array.layers:
                tensors += [layer.conv.weight, layer.conv.bias, layer.mixer.weight]
                for conv in (layer.layer1x1, layer.head1x1):
                    if conv is not None:
                        tensors += [conv.weight, conv.bias]
            tensors.append(array.head_rechannel.weight)
            if array.head_rechannel.bias is not None:
                tensors.append(array.head_rechannel.bias)
        if self.head is not None:
            for conv in self.head.convs:
                tensors += [conv.weight, conv.bias]
        return tensors
