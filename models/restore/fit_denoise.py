"""Training of the ``denoise`` restorer's gain network (``chain train restorer --damage noise:DB``).

:func:`fit` adds noise to every training clip several times -- the damage asked for and further ``noise:DB``
damages at SNRs drawn from 0–25 dB (each of a drawn kind: white, pink, hum, mixtures; see
:mod:`pedalchain.models.restore.damage`) -- measures the noise profile of each noisy clip exactly as the
restorer does at run time (:func:`pedalchain.effects.restorers.denoise.analyse_noise` over the whole clip, mains
hum subtracted; a clip with hum and no other stationary noise gets no gain there, so it is left out here),
and fits the gain MLP (15 -> 24 -> 12 -> 1, ReLU, sigmoid) with Adam on the phase-sensitive loss
sum |g Y - S|^2 / sum |S|^2 per clip (Y noisy, S clean STFT), early-stopped on the validation clips.

Torch is imported lazily and runs on one thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...effects.restorers import denoise as dn
from ...effects.restorers.stft import sqrt_hann
from .fit_bandwidth import load_clip

HIDDEN = (24, 12)
SNR_RANGE_DB = (0.0, 25.0)
ROWS_PER_CASE = 10000
"""(bin, frame) rows drawn from each noisy clip and channel."""
VARIANTS_PER_CLIP = 3
STEPS_PER_SECOND = 250
"""Optimisation steps (batches of 4096 rows, gathered from millions) per second of the budget: about what one
loaded core does."""
TRAIN_SHARE = 0.6
"""Share of ``budget_s`` given to the optimisation (the rest: collecting the rows, the validation run)."""


def clip_spectra(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(channels, bins, F) unscaled sqrt-Hann spectra of the frames fully inside ``audio``, as StftStream's."""
    window = sqrt_hann(n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), n_fft, axis=1)[:, ::hop]
    return np.fft.rfft(frames * window, axis=-1).transpose(0, 2, 1)


def noise_variants(damage: Any, rng: np.random.Generator, count: int) -> list[Any]:
    """The asked ``damage`` (or None) and ``count`` ``noise:DB`` damages at drawn SNRs."""
    from .damage import Noise

    variants = [damage] if damage is not None else []
    variants += [Noise(float(rng.uniform(*SNR_RANGE_DB))) for _ in range(count)]
    return variants


def collect(clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
            variants: int = VARIANTS_PER_CLIP) -> dict[str, np.ndarray]:
    """Rows of features and the loss terms a = |Y|^2, b = Re(Y S*), c = |S|^2 (normalised per clip)."""
    rng = np.random.default_rng(seed)
    n_fft, hop = dn.frame_size(sample_rate)
    xs, terms = [], []
    for item in clips:
        clean = load_clip(item, sample_rate)
        if clean.shape[1] < 8 * n_fft or not np.any(clean):
            continue
        clean_spectra = clip_spectra(clean, n_fft, hop)
        scale = float(np.mean(np.abs(clean_spectra) ** 2)) + 1e-20
        for noise in noise_variants(damage, rng, variants):
            noisy = noise.apply(clean, int(sample_rate), np.random.default_rng(int(rng.integers(1 << 31))))
            profiler, hum = dn.analyse_noise(noisy, sample_rate)
            if dn.only_hum(profiler.noise_found()[0], hum):
                continue  # as at run time: hum and no other stationary noise, only the hum is subtracted
            profile, spread = profiler.profile(), profiler.spread_db()
            if hum is not None:  # as at run time: the hum is subtracted before the gain
                noisy = noisy - hum.synthesize(0, noisy.shape[1])
            spectra = clip_spectra(noisy, n_fft, hop)
            for channel in range(spectra.shape[0]):
                y = spectra[channel]
                s = clean_spectra[channel]
                features = dn.gain_features(dn.gamma_db(np.abs(y) ** 2, profile), sample_rate, spread)
                central = slice(dn.LOOKBEHIND, y.shape[1] - dn.LOOKAHEAD)
                y, s = y[:, central], s[:, central]
                flat = features.reshape(dn.FEATURES, -1).T
                # importance sampling: half the rows uniformly, half in proportion to the noisy power (the loss
                # is dominated by loud bins); each row's loss terms are divided by its sampling probability
                energy = np.abs(y.ravel()) ** 2
                probability = 0.5 / len(energy) + 0.5 * energy / max(float(energy.sum()), 1e-30)
                pick = rng.choice(len(flat), size=min(ROWS_PER_CASE, len(flat)), replace=True, p=probability)
                xs.append(flat[pick])
                yv, sv = y.ravel()[pick], s.ravel()[pick]
                weight = 1.0 / (probability[pick] * len(energy))
                terms.append(np.column_stack([np.abs(yv) ** 2, (yv * sv.conj()).real, np.abs(sv) ** 2])
                             * (weight / scale)[:, None])
    if not xs:
        raise ValueError("no usable training clips (each needs at least 8 STFT frames of non-silent audio)")
    return {"x": np.concatenate(xs).astype(np.float32), "terms": np.concatenate(terms)}


def train_gain(train: dict[str, np.ndarray], val: dict[str, np.ndarray], seed: int, budget_s: float,
               hidden: tuple[int, ...] = HIDDEN) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the gain MLP with Adam on sum(g^2 a - 2 g b + c) / sum(c); keep the best validation weights."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    sizes = (dn.FEATURES, *hidden, 1)
    layers: list[Any] = []
    for index in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[index], sizes[index + 1]))
        if index < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    tx, tt = torch.from_numpy(train["x"]), torch.from_numpy(train["terms"].astype(np.float32))
    vx, vt = torch.from_numpy(val["x"]), torch.from_numpy(val["terms"].astype(np.float32))

    def loss_of(x: Any, t: Any) -> Any:
        g = torch.sigmoid(net(x)[:, 0])
        return (g * g * t[:, 0] - 2 * g * t[:, 1] + t[:, 2]).sum() / t[:, 2].sum()

    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    best = (math.inf, None, 0)
    # the budget is turned into a number of steps, not watched on the clock: the result must not depend on load
    total_steps, steps, epochs = max(1, int(budget_s * STEPS_PER_SECOND)), 0, 0
    while steps < total_steps:
        order = torch.randperm(len(tx), generator=generator)
        for begin in range(0, len(tx), 4096):
            steps += 1
            index = order[begin:begin + 4096]
            loss = loss_of(tx[index], tt[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        epochs += 1
        with torch.no_grad():
            val_loss = float(loss_of(vx, vt))
        if val_loss < best[0]:
            best = (val_loss, [p.detach().clone() for p in net.parameters()], epochs)
        elif epochs - best[2] >= 8:
            break
    params = best[1]
    arrays = {}
    for index in range(len(params) // 2):
        arrays[f"w{index}"] = params[2 * index].numpy().T.copy()
        arrays[f"b{index}"] = params[2 * index + 1].numpy().copy()
    with torch.no_grad():
        unity = float((vt[:, 0] - 2 * vt[:, 1] + vt[:, 2]).sum() / vt[:, 2].sum())
    return arrays, {"epochs": epochs, "best_epoch": best[2], "val_loss": best[0], "val_loss_passthrough": unity,
                    "train_rows": int(len(tx)), "val_rows": int(len(vx))}


class _InMemoryDenoise(dn.Denoise):
    """A Denoise running weights held in memory (for evaluation during training)."""

    def __init__(self, arrays: dict[str, np.ndarray], amount_db: float) -> None:
        super().__init__(amount_db)
        self._memory = {name: np.asarray(value, np.float32) for name, value in arrays.items()}

    def _prepare_frames(self, sample_rate: float, num_channels: int, n_fft: int, hop: int) -> None:
        self._arrays = self._memory


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR (dB), all channels pooled, as :mod:`pedalchain.chains.compare` defines it."""
    x, y = reference.astype(np.float64).ravel(), estimate.astype(np.float64).ravel()
    r = float(np.dot(x, y) / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-30))
    r = min(abs(r), 1 - 1e-20) * (1 if r >= 0 else -1)
    return 10 * math.log10(r * r / (1 - r * r))


def denoise_buffer(noisy: np.ndarray, sample_rate: float, arrays: dict[str, np.ndarray] | None,
                   amount_db: float = dn.DEFAULT_AMOUNT_DB) -> np.ndarray:
    """One-shot denoising of ``noisy`` (channels, n) with in-memory weights (None: the shipped model)."""
    restorer = _InMemoryDenoise(arrays, amount_db) if arrays is not None else dn.Denoise(amount_db)
    return restorer.process(noisy, sample_rate)


def evaluate(clips: Sequence[Any], sample_rate: float, arrays: dict[str, np.ndarray] | None, snr_db: float,
             seed: int, amount_db: float = dn.DEFAULT_AMOUNT_DB) -> dict[str, Any]:
    """Mean SI-SDR (dB) of noisy and denoised ``clips`` at ``snr_db`` input SNR (noise kind drawn per clip) with
    the weights ``arrays`` (None: the shipped model), and the mean gain per noise kind: hum subtraction gains far
    more than any gain on hiss can, so the overall mean says little about the network where some clips drew hum."""
    from .damage import Noise

    rng = np.random.default_rng(seed)
    rows, kinds = [], []
    for item in clips:
        clean = load_clip(item, sample_rate)
        if clean.shape[1] < 8 * 2048 or not np.any(clean):
            continue
        noise = Noise(snr_db)
        noisy = noise.apply(clean, int(sample_rate), rng)
        out = denoise_buffer(noisy, sample_rate, arrays, amount_db)
        rows.append((si_sdr_db(clean, noisy), si_sdr_db(clean, out)))
        kinds.append(noise.variant)
    values = np.array(rows) if rows else np.full((1, 2), np.nan)
    gains = values[:, 1] - values[:, 0]
    by_kind = {kind: {"clips": kinds.count(kind),
                      "si_sdr_gain_db": float(np.mean([g for g, k in zip(gains, kinds, strict=True) if k == kind]))}
               for kind in sorted(set(kinds))}
    return {"si_sdr_noisy_db": float(values[:, 0].mean()), "si_sdr_denoised_db": float(values[:, 1].mean()),
            "si_sdr_gain_db": float(gains.mean()), "si_sdr_gain_db_by_noise": by_kind, "clips": len(rows),
            "input_snr_db": snr_db, "amount_db": amount_db}


def fit(train_clips: Sequence[Any], val_clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
        budget_s: float) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Train the denoise gain network: (arrays, config, training_extra) for ``save_arrays`` with architecture
    :data:`pedalchain.effects.restorers.denoise.ARCHITECTURE`.  ``budget_s`` sets the optimisation steps
    (:data:`STEPS_PER_SECOND`), so the weights do not depend on how busy the machine is."""
    started = time.perf_counter()
    train = collect(train_clips, sample_rate, damage, seed)
    val = collect(val_clips, sample_rate, damage, seed + 1)
    arrays, report = train_gain(train, val, seed, TRAIN_SHARE * budget_s)
    validation = evaluate(val_clips, sample_rate, arrays, 10.0, seed + 2)
    config = {"hidden": list(HIDDEN), "features": dn.FEATURES, "activation": "relu", "output": "sigmoid",
              "quantile": dn.QUANTILE, "lookbehind": dn.LOOKBEHIND, "lookahead": dn.LOOKAHEAD,
              "analysis": "StftStream sqrt-Hann, 2048/512 at 32-48 kHz"}
    extra = {**report, "validation_at_10db": validation,
             "damage": [damage.spec if damage is not None else None,
                        f"noise:DB, DB uniform in {SNR_RANGE_DB[0]:g}-{SNR_RANGE_DB[1]:g}, kinds of "
                        "models.restore.damage.NOISE_KINDS"],
             "fit_seconds": round(time.perf_counter() - started, 1)}
    return arrays, config, extra
