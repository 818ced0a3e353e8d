"""Training of the ``bandwidth`` restorer's envelope model (``chain train restorer --damage bandwidth:HZ``).

:func:`fit` cuts every training clip several ways -- the damage asked for, plus lowpass cuts at cutoffs drawn
from 8–20 kHz (shapes drawn from :data:`pedalchain.models.restore.damage.LOWPASS_SHAPES`) and real MP3 at drawn
bitrates (pedalboard.io encode/decode) -- so the model is tied neither to one filter nor to one cutoff.  Clips
whose clean version shows a band limit of its own are left out; :data:`SYNTHETIC_CLIPS` coloured-noise clips
(smooth spectra that continue across any cutoff) are added.  For each cut the cutoff is *detected* on the damaged
clip (as ``cutoff: auto`` does at run time; the nominal one when detection finds none), the frames' features and
the clean spectrum's band levels above the cutoff are collected (:mod:`pedalchain.effects.restorers.bandwidth`),
and a small MLP (10 -> 16 -> 16 -> 8, tanh) is fitted with AdamW on the squared error in bels (overshoots weighted
x3: they add error energy and hiss), early-stopped on the validation clips.  Then how far the fill ducks in loud
frames is chosen on the validation recordings, not the MIDI renders and synthesized clips (:func:`choose_fill_duck`):
the fill is uncorrelated with the true highs, so it adds its own energy to the error; the duck goes as far as
keeping the mean SNR within 0.4 dB of passthrough asks, but not so far that the fill loses more than half its lead
in LSD above the cutoff over the noise-fill baseline (:func:`noise_fill_buffer`).

Torch is imported lazily and runs on one thread.  The shipped model was built with ``chain train restorer
--damage bandwidth:11000 --minutes 3 -o models/weights/restorers/bandwidth.safetensors`` (seed 0, the default
corpus; test metrics in its metadata).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...effects.restorers import bandwidth as bw

HIDDEN = (16, 16)
OVERSHOOT_WEIGHT = 3.0
"""Loss weight of predictions above the truth: an overshoot adds error energy (and hiss), an undershoot only
leaves a band a little dull."""
GAIN_RANGE_DB = (-30.0, 6.0)
"""Each damaged version is scaled by a random gain in this range, so the model does not learn absolute levels."""
LOWPASS_RANGE_HZ = (8000.0, 20000.0)
MP3_KBPS = (96, 128, 160, 192)
FILL_DUCKS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""The fill ducks searched on the validation clips (``fill_duck`` of :func:`pedalchain.effects.restorers.bandwidth.
added_spectra`: in a frame whose anchor is r times the channel's mean, the fill's power is divided by 1 + duck x r)."""
STEPS_PER_SECOND = 1000
"""Optimisation steps (batches of 512 frames) per second of the budget: about what one loaded core does."""
TRAIN_SHARE = 0.6
"""Share of ``budget_s`` given to the optimisation (the rest: collecting the frames, the fill duck search)."""
SNR_ALLOWANCE_DB = 0.4
"""The fill duck chosen aims to keep the mean SNR at most this far below passthrough on the validation clips..."""
LSD_LEAD_KEPT = 0.5
"""...while keeping at least this share of the unducked fill's lead in LSD above the cutoff over the noise fill."""
GENERATED_SOURCES = ("midi", "synth")
"""Corpus sources left out of the fill duck's choice (see :func:`fit`)."""
MAX_CLIP_S = 8.0
SYNTHETIC_CLIPS = 40
"""Coloured-noise clips (random slope 0 to -12 dB/octave, random swells) added to the training clips: their
spectrum continues smoothly across any cutoff, which teaches the model to continue it (no step at the seam)."""


# -- damage ---------------------------------------------------------------------------------------------------------
def damage_variants(damage: Any, rng: np.random.Generator, count_lowpass: int = 3,
                    count_mp3: int = 2) -> list[tuple[str, Any]]:
    """(label, function(clean, sample_rate) -> (damaged, nominal cutoff Hz or None)) for one clip: the asked
    ``damage`` (a :class:`models.restore.damage.Damage`, or None), lowpass cuts at random cutoffs of 8–20 kHz
    with a drawn shape, and MP3 round trips at drawn bitrates."""
    from .damage import Bandwidth, Mp3

    variants: list[tuple[str, Any]] = []

    def make(cut: Any, nominal: float | None, seed: int) -> Any:
        return lambda clean, fs: (cut.apply(clean, int(fs), np.random.default_rng(seed)),
                                  min(nominal, 0.9 * fs / 2) if nominal else None)

    if damage is not None:
        variants.append((damage.spec, make(damage, getattr(damage, "cutoff_hz", None), int(rng.integers(1 << 31)))))
    for _ in range(count_lowpass):
        cutoff = float(rng.uniform(*LOWPASS_RANGE_HZ))
        seed = int(rng.integers(1 << 31))
        variants.append((f"bandwidth:{cutoff:.0f}", make(_Capped(Bandwidth, cutoff), cutoff, seed)))
    for _ in range(count_mp3):
        kbps = MP3_KBPS[int(rng.integers(len(MP3_KBPS)))]
        variants.append((f"mp3:{kbps}", make(Mp3(kbps), None, int(rng.integers(1 << 31)))))
    return variants


class _Capped:
    """A lowpass damage whose cutoff is capped at 0.9 x Nyquist of the rate it is applied at."""

    def __init__(self, kind: Any, cutoff_hz: float) -> None:
        self.kind, self.cutoff_hz = kind, cutoff_hz

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        return self.kind(min(self.cutoff_hz, 0.9 * sample_rate / 2)).apply(clean, sample_rate, rng)


# -- data -----------------------------------------------------------------------------------------------------------
def load_clip(item: Any, sample_rate: float, max_s: float = MAX_CLIP_S) -> np.ndarray:
    """A clip as (channels, n) float32 at ``sample_rate``: an array as it is, a path through
    ``models.restore.data.read_clip`` when present (else soundfile + polyphase resampling); at most ``max_s``."""
    if isinstance(item, np.ndarray):
        audio = np.atleast_2d(item).astype(np.float32)
    else:
        try:
            from .data import read_clip
        except ImportError:
            read_clip = None
        if read_clip is not None:
            audio = np.atleast_2d(np.asarray(read_clip(Path(item), sample_rate), dtype=np.float32))
        else:
            import scipy.signal as ss
            import soundfile as sf

            data, rate = sf.read(str(item), dtype="float32", always_2d=True)
            audio = data.T
            if rate != sample_rate:
                g = math.gcd(int(rate), int(sample_rate))
                audio = ss.resample_poly(audio, int(sample_rate) // g, int(rate) // g, axis=-1).astype(np.float32)
    return np.ascontiguousarray(audio[:, :int(max_s * sample_rate)])


def clip_name(item: Any) -> str:
    return Path(item).name if isinstance(item, (str, Path)) else "<array>"


def spectra_of(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Analysis spectra (channels, F, bins) of frames fully inside ``audio`` (channels, n)."""
    if audio.shape[1] < n_fft:
        audio = np.pad(audio, ((0, 0), (0, n_fft - audio.shape[1])))
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), n_fft, axis=1)[:, ::hop]
    return bw.analysis_spectra(frames, n_fft)


def coloured_noise(rng: np.random.Generator, sample_rate: float, seconds: float = 4.0) -> np.ndarray:
    """Stereo noise with a spectral slope of 0 to -12 dB/octave above 200 Hz and a slow random swell."""
    n = int(seconds * sample_rate)
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 200.0)
    spectrum *= (freqs / 1000.0) ** (rng.uniform(-12.0, 0.0) / 20 / math.log10(2))
    audio = np.fft.irfft(spectrum, n=n, axis=1)
    swell = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * np.arange(n) / sample_rate)
    audio *= swell * 10 ** (rng.uniform(-30, -10) / 20) / audio.std()
    return audio.astype(np.float32)


def collect(clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
            variants_per_clip: tuple[int, int] = (2, 1), synthetic: int = 0) -> dict[str, np.ndarray]:
    """Features, targets and target masks of every frame of every damaged version of ``clips`` (those whose
    clean version shows no band limit of its own) and of ``synthetic`` coloured-noise clips."""
    rng = np.random.default_rng(seed)
    n_fft = bw.stft_size(sample_rate)[0]
    xs, ys, masks = [], [], []
    for item in [*clips, *range(synthetic)]:
        clean = coloured_noise(rng, sample_rate) if isinstance(item, int) else load_clip(item, sample_rate)
        if clean.shape[1] < 2 * n_fft or not np.any(clean) or bw.detect_cutoff(clean, sample_rate) is not None:
            continue
        clean_spectra = spectra_of(clean, n_fft, n_fft // 2)
        clean_power = clean_spectra.real ** 2 + clean_spectra.imag ** 2
        for _label, make in damage_variants(damage, rng, *variants_per_clip):
            damaged, nominal = make(clean, sample_rate)
            cutoff = bw.detect_cutoff(damaged, sample_rate) or nominal
            if cutoff is None or not bw.MIN_CUTOFF_HZ <= cutoff <= bw.MAX_CUTOFF_SHARE * sample_rate / 2:
                continue
            layout = bw.Layout(cutoff, sample_rate, n_fft)
            gain = 10 ** (rng.uniform(*GAIN_RANGE_DB) / 20)
            spectra = spectra_of(damaged, n_fft, n_fft // 2) * gain
            power = spectra.real ** 2 + spectra.imag ** 2
            for channel in range(power.shape[0]):
                features, anchor = bw.frame_features(power[channel], layout)
                xs.append(features)
                ys.append(bw.target_bands(clean_power[channel] * gain ** 2, anchor, layout))
                masks.append(np.broadcast_to(layout.out_valid, (len(features), bw.OUT_BANDS)))
    if not xs:
        raise ValueError("no usable training frames: clips too short, silent, or no detectable cutoff")
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "mask": np.concatenate(masks).astype(np.float64)}


# -- model ------------------------------------------------------------------------------------------------------
def train_mlp(train: dict[str, np.ndarray], val: dict[str, np.ndarray], seed: int, budget_s: float,
              hidden: tuple[int, ...] = HIDDEN) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the envelope MLP (Adam, masked MSE in bels), keep the weights with the best validation loss."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_mean = train["x"].mean(axis=0)
    x_std = train["x"].std(axis=0) + 1e-3
    sizes = (train["x"].shape[1], *hidden, bw.OUT_BANDS)
    layers = []
    for index in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[index], sizes[index + 1]))
        if index < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers).double()

    def tensors(data: dict[str, np.ndarray]) -> tuple[Any, Any, Any]:
        return (torch.from_numpy((data["x"] - x_mean) / x_std), torch.from_numpy(data["y"]),
                torch.from_numpy(data["mask"]))

    tx, ty, tm = tensors(train)
    vx, vy, vm = tensors(val)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)

    def weighted_loss(predicted: Any, target: Any, mask: Any) -> Any:
        error = predicted - target
        weight = mask * (1.0 + (OVERSHOOT_WEIGHT - 1.0) * (error > 0))
        return (error ** 2 * weight).sum() / weight.sum()

    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, 0.97)
    generator = torch.Generator().manual_seed(seed)
    best = (math.inf, None, 0)
    # the budget is turned into a number of steps, not watched on the clock: the result must not depend on load
    total_steps, steps, epochs = max(1, int(budget_s * STEPS_PER_SECOND)), 0, 0
    while steps < total_steps:
        order = torch.randperm(len(tx), generator=generator)
        for begin in range(0, len(tx), 512):
            steps += 1
            index = order[begin:begin + 512]
            loss = weighted_loss(net(tx[index]), ty[index], tm[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        scheduler.step()
        epochs += 1
        with torch.no_grad():
            val_loss = float(weighted_loss(net(vx), vy, vm))
        if val_loss < best[0]:
            best = (val_loss, [p.detach().clone() for p in net.parameters()], epochs)
        elif epochs - best[2] >= 15:
            break
    params = best[1]
    arrays = {"x_mean": x_mean, "x_std": x_std}
    for index in range(len(params) // 2):
        arrays[f"w{index}"] = params[2 * index].numpy().T.copy()
        arrays[f"b{index}"] = params[2 * index + 1].numpy().copy()
    with torch.no_grad():
        train_loss = float(weighted_loss(net(tx), ty, tm))
    return arrays, {"epochs": epochs, "best_epoch": best[2], "val_loss_bels2": best[0],
                    "train_loss_bels2_last": train_loss, "train_frames": int(len(tx)), "val_frames": int(len(vx))}


# -- evaluation -----------------------------------------------------------------------------------------------------
def extend_buffer(audio: np.ndarray, sample_rate: float, cutoff_hz: float, arrays: dict[str, np.ndarray],
                  fill_duck: float = 0.0) -> np.ndarray:
    """What the restorer outputs for ``audio`` (channels, n) with a known cutoff, from in-memory weights (the
    fill ducks against the mean anchor power of ``audio``, as after the restorer's analysis)."""
    layout = bw.Layout(cutoff_hz, sample_rate, bw.stft_size(sample_rate)[0])
    weights = {name: np.asarray(value, dtype=np.float64) for name, value in arrays.items()}
    anchor_mean = bw.mean_anchor_power(bw.long_term_spectrum(audio, sample_rate), layout) if fill_duck > 0 else None
    stream = bw.added_stream(audio.shape[0], sample_rate, layout, weights, fill_duck, anchor_mean)
    latency = stream.latency
    padded = np.concatenate([audio, np.zeros((audio.shape[0], latency), np.float32)], axis=1)
    added = stream.process(padded)[:, latency:]
    return (audio + added).astype(np.float32)


def noise_fill_buffer(audio: np.ndarray, sample_rate: float, cutoff_hz: float, seed: int) -> np.ndarray:
    """The noise-fill baseline: per frame and channel, complex Gaussian noise at the mean power of the 600 Hz just
    below the fade start, flat above the cutoff, with the restorer's fade; added to ``audio`` (channels, n)."""
    rng = np.random.default_rng(seed)
    n_fft, hop = bw.stft_size(sample_rate)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edge = cutoff_hz - bw.TRANSITION_HZ
    reference = (freqs >= edge - 600) & (freqs < edge)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.clip((freqs - edge) / bw.TRANSITION_HZ, 0, 1))

    def hook(spectra: np.ndarray, context: Any) -> np.ndarray:
        level = np.sqrt(np.mean(np.abs(spectra[:, reference, :]) ** 2, axis=1, keepdims=True))
        noise = (rng.standard_normal(spectra.shape) + 1j * rng.standard_normal(spectra.shape)) / math.sqrt(2)
        return (noise * level * fade[None, :, None]).astype(np.complex64)

    stream = bw.StftStream(audio.shape[0], n_fft, hop, hook, sample_rate)
    padded = np.concatenate([audio, np.zeros((audio.shape[0], stream.latency), np.float32)], axis=1)
    return (audio + stream.process(padded)[:, stream.latency:]).astype(np.float32)


def lsd_bels(reference: np.ndarray, candidate: np.ndarray, sample_rate: float,
             lo_hz: float = 0.0, hi_hz: float | None = None) -> float:
    """LSD as :mod:`pedalchain.chains.compare` defines it (Hann 2048, hop 512, power floor 1e-10, bels),
    over bins with lo_hz <= f < hi_hz."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)

    def power(signal: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(signal.astype(np.float64), 2048, axis=-1)[:, ::512]
        return np.maximum(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2, 1e-10)

    freqs = np.fft.rfftfreq(2048, 1 / sample_rate)
    keep = (freqs >= lo_hz) & (freqs < (hi_hz if hi_hz is not None else np.inf))
    diff = np.log10(power(reference)[..., keep]) - np.log10(power(candidate)[..., keep])
    return float(np.sqrt((diff ** 2).mean(axis=-1)).mean())


def snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    error = float(np.sum((reference.astype(np.float64) - candidate) ** 2))
    return 10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(error, 1e-30))


def evaluate(clips: Sequence[Any], sample_rate: float, arrays: dict[str, np.ndarray], fill_ducks: Sequence[float],
             damage: Any, seed: int, variants_per_clip: tuple[int, int] = (2, 1)) -> dict[float, dict[str, float]]:
    """Mean LSD above the cutoff and SNR change against passthrough for each fill duck over damaged
    ``clips``, with the noise-fill baseline's LSD above the cutoff beside them."""
    rng = np.random.default_rng(seed)
    results: dict[float, list[tuple[float, float, float, float, float]]] = {duck: [] for duck in fill_ducks}
    for index, item in enumerate(clips):
        clean = load_clip(item, sample_rate)
        if clean.shape[1] < 4 * 2048 or not np.any(clean) or bw.detect_cutoff(clean, sample_rate) is not None:
            continue  # a reference with a band limit of its own cannot score an extension above it
        for _label, make in damage_variants(damage, rng, *variants_per_clip):
            damaged, nominal = make(clean, sample_rate)
            cutoff = bw.detect_cutoff(damaged, sample_rate) or nominal
            if cutoff is None or not bw.MIN_CUTOFF_HZ <= cutoff <= bw.MAX_CUTOFF_SHARE * sample_rate / 2:
                continue
            base_lsd = lsd_bels(clean, damaged, sample_rate, cutoff)
            base_snr = snr_db(clean, damaged)
            fill_lsd = lsd_bels(clean, noise_fill_buffer(damaged, sample_rate, cutoff, seed + index), sample_rate,
                                cutoff)
            for duck in fill_ducks:
                restored = extend_buffer(damaged, sample_rate, cutoff, arrays, duck)
                results[duck].append((lsd_bels(clean, restored, sample_rate, cutoff), base_lsd,
                                       snr_db(clean, restored), base_snr, fill_lsd))
    summary = {}
    for duck, rows in results.items():
        values = np.array(rows) if rows else np.full((1, 5), np.nan)
        summary[duck] = {"lsd_high": float(values[:, 0].mean()), "lsd_high_passthrough": float(values[:, 1].mean()),
                          "lsd_high_noise_fill": float(values[:, 4].mean()),
                          "snr_db": float(values[:, 2].mean()), "snr_db_passthrough": float(values[:, 3].mean()),
                          "snr_change_db": float((values[:, 2] - values[:, 3]).mean()), "cases": len(rows)}
    return summary


def choose_fill_duck(summary: dict[float, dict[str, float]]) -> float:
    """Of the fill ducks that keep at least LSD_LEAD_KEPT of the unducked fill's lead over the noise fill (mean
    LSD above the cutoff on the validation clips), the smallest whose mean SNR change is >= -SNR_ALLOWANCE_DB;
    when none of them is, the one closest to it.  0 (no ducking) when the unducked fill has no lead to spend.
    Ducking buys SNR and spends spectral fidelity: it goes as far as the SNR goal asks, and no further than a fill
    that stays clearly better than plain noise."""
    lead = summary[0.0]["lsd_high_noise_fill"] - summary[0.0]["lsd_high"]
    if lead <= 0:
        return 0.0
    keeping = sorted(duck for duck, row in summary.items()
                     if row["lsd_high_noise_fill"] - row["lsd_high"] >= LSD_LEAD_KEPT * lead)
    meeting = [duck for duck in keeping if summary[duck]["snr_change_db"] >= -SNR_ALLOWANCE_DB]
    return meeting[0] if meeting else max(keeping, key=lambda duck: summary[duck]["snr_change_db"])


def fit(train_clips: Sequence[Any], val_clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
        budget_s: float) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Train the bandwidth model: returns (arrays, config, training_extra) for ``save_arrays`` with architecture
    :data:`pedalchain.effects.restorers.bandwidth.ARCHITECTURE`.  ``budget_s`` sets the optimisation steps
    (:data:`STEPS_PER_SECOND`), so the weights do not depend on how busy the machine is."""
    started = time.perf_counter()
    train = collect(train_clips, sample_rate, damage, seed, synthetic=SYNTHETIC_CLIPS)
    val = collect(val_clips, sample_rate, damage, seed + 1)
    arrays, report = train_mlp(train, val, seed, TRAIN_SHARE * budget_s)
    # the goals are stated on real recordings, and generated clips (MIDI renders, synthesized signals) have highs
    # of their own kind: steadier, so a duck costs them less fidelity than a recording's hits and decays
    from .data import clip_source

    recordings = [clip for clip in val_clips if not isinstance(clip, (str, Path))
                  or clip_source(Path(clip)) not in GENERATED_SOURCES]
    summary = evaluate(recordings or val_clips, sample_rate, arrays, FILL_DUCKS, damage, seed + 2)
    fill_duck = choose_fill_duck(summary)
    config = {"hidden": list(HIDDEN), "in_bands": bw.IN_BANDS, "out_bands": bw.OUT_BANDS,
              "transition_hz": bw.TRANSITION_HZ, "fill_duck": fill_duck,
              "analysis": "StftStream sqrt-Hann, 2048/512 at 32-48 kHz"}
    extra = {**report, "fill_duck_search_val": {str(duck): row for duck, row in summary.items()},
             "damage": [damage.spec if damage is not None else None, "bandwidth:HZ, HZ uniform in 8–20 kHz, "
                        "shapes of models.restore.damage.LOWPASS_SHAPES", f"mp3:{'|'.join(map(str, MP3_KBPS))}"],
             "fit_seconds": round(time.perf_counter() - started, 1)}
    return arrays, config, extra
