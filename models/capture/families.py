"""Structured (grey-box) capture models as StreamingModels: Wiener–Hammerstein and a feed-forward compressor.

Registered as ``"wiener_hammerstein"`` and ``"grey_box_compressor"`` in :mod:`pedalchain.models.registry`, so
their files load as ``- model: x.safetensors`` steps.  This module imports torch and numpy.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..base import StreamingModel


def _causal_fir(x: torch.Tensor, impulse: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """``y[n] = Σ_k h[k]·x[n−k]`` for (batch, n) ``x``; ``history`` (batch, taps − 1) precedes x (zeros if None)."""
    taps = impulse.shape[0]
    joined = F.pad(x, (taps - 1, 0)) if history is None else torch.cat([history, x], dim=1)
    return F.conv1d(joined.unsqueeze(1), impulse.flip(0).view(1, 1, taps)).squeeze(1)


class WienerHammerstein(StreamingModel):
    """``y = h_out ∗ f(h_in ∗ x)``: FIR → static waveshaper → FIR (a Wiener–Hammerstein cascade).

    ``f(u) = g·u + Σ_i w_i·(tanh(a_i·u + b_i) − tanh(b_i))``: a learned gain plus ``hidden`` tanh units (one hidden
    layer), zero at zero so silence stays silence.  Suits drive/fuzz/saturation with tone filters around them; no
    memory in the nonlinearity (no sag, no compression).  Streaming state: the last ``taps_in − 1`` inputs
    (``"x"``) and ``taps_out − 1`` waveshaper outputs (``"u"``) per stream.

    Args:
        taps_in: input filter length in samples (≥ 1).
        taps_out: output filter length in samples (≥ 1).
        hidden: tanh units (≥ 1); parameters = taps_in + taps_out + 3·hidden + 2.
    """

    architecture: ClassVar[str] = "wiener_hammerstein"

    def __init__(self, taps_in: int = 32, taps_out: int = 128, hidden: int = 24) -> None:
        super().__init__()
        for name, value in (("taps_in", taps_in), ("taps_out", taps_out), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        self.taps_in, self.taps_out, self.hidden = taps_in, taps_out, hidden
        delta_in, delta_out = torch.zeros(taps_in), torch.zeros(taps_out)
        delta_in[0] = delta_out[0] = 1.0
        self.h_in = torch.nn.Parameter(delta_in)
        self.h_out = torch.nn.Parameter(delta_out)
        self.gain = torch.nn.Parameter(torch.ones(()))
        # knees spread from |u| ≈ 2 down to 0.005 (slopes 0.5..200), seeded offsets for asymmetric curves
        slopes = torch.logspace(math.log10(0.5), math.log10(200.0), hidden)
        offsets = torch.linspace(-0.3, 0.3, hidden)[torch.randperm(hidden, generator=torch.Generator().manual_seed(0))]
        self.slopes = torch.nn.Parameter(slopes)
        self.offsets = torch.nn.Parameter(slopes * offsets)
        self.weights = torch.nn.Parameter(torch.zeros(hidden))

    @property
    def receptive_field(self) -> int:
        return self.taps_in + self.taps_out - 1

    def config(self) -> dict[str, Any]:
        return {"taps_in": self.taps_in, "taps_out": self.taps_out, "hidden": self.hidden}

    def basis(self, u: torch.Tensor) -> torch.Tensor:
        """``tanh(a_i·u + b_i) − tanh(b_i)`` for every unit: shape ``u.shape + (hidden,)``."""
        return torch.tanh(u.unsqueeze(-1) * self.slopes + self.offsets) - torch.tanh(self.offsets)

    def waveshaper(self, u: torch.Tensor) -> torch.Tensor:
        """``f(u)`` elementwise for any shape."""
        return self.gain * u + self.basis(u) @ self.weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _causal_fir(self.waveshaper(_causal_fir(x, self.h_in)), self.h_out)

    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        dtype = self.h_in.dtype
        return {"x": torch.zeros(batch, self.taps_in - 1, device=device, dtype=dtype),
                "u": torch.zeros(batch, self.taps_out - 1, device=device, dtype=dtype)}

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        u = self.waveshaper(_causal_fir(x, self.h_in, state["x"]))
        y = _causal_fir(u, self.h_out, state["u"])
        state["x"] = torch.cat([state["x"], x], dim=1)[:, x.shape[1]:] if self.taps_in > 1 else state["x"]
        state["u"] = torch.cat([state["u"], u], dim=1)[:, u.shape[1]:] if self.taps_out > 1 else state["u"]
        return y


# -- the compressor's envelope follower -------------------------------------------------------------------------
PYTHON_LOOP_ROWS = 32
"""Up to this many rows the recursion runs as plain Python float loops (≈0.25 µs per sample); above it as numpy
operations across rows per time step (≈10 µs per step)."""


def _follow_numpy(u: np.ndarray, attack: float, release: float, y0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y[t] = c_t·y[t−1] + (1 − c_t)·u[t]``, ``c_t = attack if u[t] > y[t−1] else release``; u (B, T) float64.

    Returns ``(y, attacking)``.  Few rows run as plain Python float loops (fast per sample), many rows as numpy
    operations across rows per time step.
    """
    rows, steps = u.shape
    y = np.empty_like(u)
    attacking = np.empty(u.shape, dtype=bool)
    if rows <= PYTHON_LOOP_ROWS:
        for row in range(rows):
            prev, out, flags = float(y0[row]), [0.0] * steps, [False] * steps
            for t, value in enumerate(u[row].tolist()):
                if value > prev:
                    prev = value + attack * (prev - value)
                    flags[t] = True
                else:
                    prev = value + release * (prev - value)
                out[t] = prev
            y[row], attacking[row] = out, flags
        return y, attacking
    prev = y0.astype(np.float64).copy()
    for t in range(steps):
        value = u[:, t]
        flags = value > prev
        coefficient = np.where(flags, attack, release)
        prev = value + coefficient * (prev - value)
        y[:, t], attacking[:, t] = prev, flags
    return y, attacking


class _Follower(torch.autograd.Function):
    """Autograd wrapper of :func:`_follow_numpy`; the backward pass is the adjoint recursion (branches fixed)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, attack: torch.Tensor, release: torch.Tensor, y0: torch.Tensor
                ) -> torch.Tensor:
        u64 = u.detach().double().cpu().numpy()
        y, attacking = _follow_numpy(u64, float(attack), float(release), y0.detach().double().cpu().numpy())
        ctx.save_for_backward(u, y0)
        ctx.numpy = (u64, y, attacking, float(attack), float(release))
        ctx.parameter_device = attack.device
        return torch.from_numpy(y).to(u.dtype).to(u.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u, y0 = ctx.saved_tensors
        u64, y, attacking, attack, release = ctx.numpy
        g = grad.detach().double().cpu().numpy()
        rows, steps = u64.shape
        coefficient = np.where(attacking, attack, release)
        previous = np.concatenate([y0.detach().double().cpu().numpy()[:, None], y[:, :-1]], axis=1)
        lam = np.empty_like(g)
        if rows <= PYTHON_LOOP_ROWS:  # adjoint recursion λ[t] = g[t] + c[t+1]·λ[t+1], per row in plain floats
            carry = np.zeros(rows)
            for row in range(rows):
                value, out = 0.0, [0.0] * steps
                gs, cs = g[row].tolist(), coefficient[row].tolist()
                for t in range(steps - 1, -1, -1):
                    value = gs[t] + value
                    out[t] = value
                    value = cs[t] * value
                lam[row], carry[row] = out, value
        else:
            carry = np.zeros(rows)
            for t in range(steps - 1, -1, -1):
                carry = g[:, t] + carry
                lam[:, t] = carry
                carry = coefficient[:, t] * carry
        grad_u = (1.0 - coefficient) * lam
        grad_c = lam * (previous - u64)
        grad_attack = float(np.sum(grad_c[attacking]))
        grad_release = float(np.sum(grad_c[~attacking]))
        grad_y0 = carry  # = c_0·λ_0
        device, dtype = u.device, u.dtype
        parameter_device = ctx.parameter_device
        return (torch.from_numpy(grad_u).to(device=device, dtype=dtype),
                torch.tensor(grad_attack, dtype=dtype, device=parameter_device),
                torch.tensor(grad_release, dtype=dtype, device=parameter_device),
                torch.from_numpy(grad_y0).to(device=device, dtype=dtype))


def envelope_follow(u: torch.Tensor, attack: torch.Tensor, release: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """Attack/release one-pole follower over (batch, T) ``u`` from start values ``y0`` (batch,); differentiable."""
    return _Follower.apply(u, attack, release, y0)


class GreyBoxCompressor(StreamingModel):
    """A feed-forward compressor with learned threshold, ratio, knee, attack, release and makeup.

    Detector ``d[n] = |x[n]|`` ("peak") or ``x[n]²`` ("rms"); ``smoothing="level"`` follows the detector with an
    attack/release one-pole (``e[n] = d + c·(e[n−1] − d)``, c = exp(−1/(τ·fs)), attack when rising) and applies the
    static curve to ``e`` (JUCE/pedalboard style); ``smoothing="gain"`` applies the curve to the instantaneous level
    and smooths the gain reduction instead (Giannoulis et al. 2012, "smooth branching").  Static curve in dB with
    soft knee W: below T − W/2 unity, above T + W/2 slope 1/R, quadratic in between.  ``y = x·10^((G + M)/20)``.
    With ``stereo_linked`` the detector takes the maximum over the batch rows (the channels of one stream).

    Args:
        detector: "peak" or "rms".
        smoothing: "level" or "gain".
        stereo_linked: link the rows' detectors.
        sample_rate: Hz, to express attack/release in ms.
    """

    architecture: ClassVar[str] = "grey_box_compressor"

    def __init__(self, detector: str = "peak", smoothing: str = "level", stereo_linked: bool = False,
                 sample_rate: float = 48000.0) -> None:
        super().__init__()
        if detector not in ("peak", "rms"):
            raise ValueError(f"detector must be 'peak' or 'rms', got {detector!r}")
        if smoothing not in ("level", "gain"):
            raise ValueError(f"smoothing must be 'level' or 'gain', got {smoothing!r}")
        self.detector, self.smoothing, self.stereo_linked = detector, smoothing, bool(stereo_linked)
        self.sample_rate = float(sample_rate)
        self.threshold_db = torch.nn.Parameter(torch.tensor(-20.0, dtype=torch.float64))
        self.log_ratio_minus_one = torch.nn.Parameter(torch.tensor(math.log(3.0), dtype=torch.float64))
        self.knee_raw = torch.nn.Parameter(torch.tensor(-3.0, dtype=torch.float64))
        self.log_attack_ms = torch.nn.Parameter(torch.tensor(math.log(5.0), dtype=torch.float64))
        self.log_release_ms = torch.nn.Parameter(torch.tensor(math.log(50.0), dtype=torch.float64))
        self.makeup_db = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))

    @property
    def receptive_field(self) -> int:
        return 1

    def config(self) -> dict[str, Any]:
        return {"detector": self.detector, "smoothing": self.smoothing, "stereo_linked": self.stereo_linked,
                "sample_rate": self.sample_rate}

    def set_parameters(self, threshold_db: float, ratio: float, attack_ms: float, release_ms: float,
                       knee_db: float = 0.05, makeup_db: float = 0.0) -> None:
        """Set the human-readable parameters (dB, ratio > 1, ms > 0)."""
        with torch.no_grad():
            self.threshold_db.fill_(threshold_db)
            self.log_ratio_minus_one.fill_(math.log(max(ratio - 1.0, 1e-6)))
            self.knee_raw.fill_(math.log(math.expm1(max(knee_db, 1e-6))))
            self.log_attack_ms.fill_(math.log(attack_ms))
            self.log_release_ms.fill_(math.log(release_ms))
            self.makeup_db.fill_(makeup_db)

    def parameters_readable(self) -> dict[str, float]:
        """threshold_db, ratio, knee_db, attack_ms, release_ms, makeup_db as floats."""
        with torch.no_grad():
            return self._readable()

    def _readable(self) -> dict[str, float]:
        return {"threshold_db": float(self.threshold_db), "ratio": 1.0 + float(self.log_ratio_minus_one.exp()),
                "knee_db": float(F.softplus(self.knee_raw)), "attack_ms": float(self.log_attack_ms.exp()),
                "release_ms": float(self.log_release_ms.exp()), "makeup_db": float(self.makeup_db)}

    def _coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        attack = torch.exp(-1000.0 / (self.log_attack_ms.exp() * self.sample_rate))
        release = torch.exp(-1000.0 / (self.log_release_ms.exp() * self.sample_rate))
        return attack, release

    def _curve(self, level_db: torch.Tensor) -> torch.Tensor:
        """Gain (dB, ≤ 0) of the static curve at ``level_db``."""
        slope = 1.0 / (1.0 + self.log_ratio_minus_one.exp()) - 1.0  # 1/R − 1
        knee = F.softplus(self.knee_raw) + 1e-3
        over = level_db - self.threshold_db
        soft = slope * (over + knee / 2) ** 2 / (2 * knee)
        return torch.where(2 * over < -knee, torch.zeros_like(over), torch.where(2 * over > knee, slope * over, soft))

    def _detect(self, x: torch.Tensor) -> torch.Tensor:
        d = x.double().abs() if self.detector == "peak" else x.double() ** 2
        if self.stereo_linked and d.shape[0] > 1:
            d = d.max(dim=0, keepdim=True).values.expand_as(d)
        return d

    def _level_db(self, d: torch.Tensor) -> torch.Tensor:
        scale = 20.0 if self.detector == "peak" else 10.0
        return scale * torch.log10(d + 1e-12)

    def _process(self, x: torch.Tensor, y0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attack, release = self._coefficients()
        d = self._detect(x)
        if self.smoothing == "level":
            envelope = envelope_follow(d, attack, release, y0)
            gain_db = self._curve(self._level_db(envelope))
            last = envelope[:, -1]
        else:
            reduction = -self._curve(self._level_db(d))  # ≥ 0 dB; attack when reduction grows
            smoothed = envelope_follow(reduction, attack, release, y0)
            gain_db = -smoothed
            last = smoothed[:, -1]
        y = x.double() * torch.pow(10.0, (gain_db + self.makeup_db) / 20.0)
        return y.to(x.dtype), last.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._process(x, torch.zeros(x.shape[0], dtype=torch.float64, device=x.device))[0]

    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"envelope": torch.zeros(batch, dtype=torch.float64, device=device)}

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        y, state["envelope"] = self._process(x, state["envelope"])
        return y

    def forward_rows(self, x: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        """Training helper: ``x`` (batch, T) from per-row start states ``y0`` (batch,), differentiable."""
        return self._process(x, y0)[0]
