"""Training of the ``doubled-samples`` restorer's high-band model (see effects/restorers/doubled.py for the method).

From clean clips: the damage keeps every second sample (parity drawn per clip, both parities of a clip when it
is short), ``z`` = the kept samples zero-stuffed; STFT frames of ``z`` and of the clean clip with the restorer's
own framing (:func:`~pedalchain.effects.restorers.doubled.frame_spectra`).  Frames whose low band is quieter than
-120 dB are left out; every second frame is used.  Three architectures are fitted and compared on the validation
clips (all keep the mirror's phase; they differ in where the magnitude comes from):

``bins-linear``           the "known fix": one linear layer, log power of every bin below fs/4 -> log power of
                          every bin above (ridge regression, closed form; 513 x 512 weights + bias).
``band-linear-residual``  residual over the mirror image: log power of 32 low bands -> 32 per-band log gains of
                          the mirror, which keeps its fine structure (ridge regression; 32 x 32 + bias).
``band-mlp``              an MLP over 5 neighbouring frames (2 before, 2 after: +1024 samples of latency): log
                          power of 64 low bands per frame, 320 -> 128 -> 128 -> 128 (ReLU), the absolute log
                          power of 128 high bands (4 bins each), interpolated (torch, Adam, 1 thread,
                          early-stopped on validation MSE).

Each is measured on the validation clips twice: on the restorer's own frames (mean over frames of the RMS over
bins above fs/4 of the log10 power difference, and the synthesised / true energy ratio), and by running the real
restorer on the first 10 s of each damaged validation clip (LSD, LSD high, SNR as ``chain compare``); the winner
is the lowest restorer LSD (the mirror itself, gain 1, is reported beside them).  Then a level offset (dB on the
synthesised band, :data:`OFFSETS_DB`) is chosen the same way: the lowest LSD among offsets whose SNR stays within
:data:`SNR_MARGIN_DB` of the naive repair (an uncorrelated synthesised band adds its own energy to the error).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...effects.restorers.doubled import (
    N_FFT,
    POWER_FLOOR,
    DoubledSampleRepair,
    band_matrix,
    frame_spectra,
    interpolation_matrix,
    low_band_features,
    zero_stuffed,
)

LOW_BANDS = 32
HIGH_BANDS = 32
MLP_BANDS = 64
"""Bands (8 bins, 172 Hz at 44.1 kHz) of the MLP's input frames."""
MLP_OUT_BANDS = 128
"""Bands (4 bins, 86 Hz at 44.1 kHz) of the MLP's absolute high-band log power."""
CONTEXT = (2, 2)
"""(lookbehind, lookahead) frames of the band-mlp."""
HIDDEN = (128, 128)
STEPS_PER_SECOND = 40
"""Optimisation steps (batches of 1024 frames) per second of ``budget_s``: about what one loaded core does."""
RIDGE = 1e-2
"""Ridge penalty per standardised feature (relative to the frame count)."""
QUIET_LOG10 = -12.0
"""Frames whose low band's mean power is below this (log10, sine = 1: -120 dB; digital silence, in effect) are not
training material: the restorer outputs silence there anyway (the mirror has no phase to reuse)."""
TARGET_RANGE = (-6.0, 2.0)
"""Residual targets (log10 power ratio to the mirror) are clipped to this range: a clean clip band-limited below
fs/2 would otherwise ask for -120 dB, a level the LSD's floor cannot tell from -60 dB."""
ABSOLUTE_FLOOR = -13.4
"""Absolute targets (log10 power, sine = 1) are floored at -134 dB, the level of the LSD's floor (1e-8 on an
unnormalised 2048-point Hann STFT, where a full-scale sine has power 512^2): below it the LSD cannot tell levels
apart, above it every bel counts, near-silent top bands of band-limited or decaying material included."""
OFFSETS_DB = (0.0, -3.0, -6.0)
SNR_MARGIN_DB = 2.0
MAX_CLIP_S = 20.0
"""Longer clips are cut to their first 20 s (memory; variety matters more than length)."""
FRAME_STRIDE = 2
"""Every second frame is used (frames overlap by 75 %: neighbours add little but memory and time)."""
EVAL_CLIP_S = 10.0
"""The level offset is chosen on the first 10 s of each validation clip."""


def _as_clip(item: Any, sample_rate: float) -> np.ndarray:
    if isinstance(item, np.ndarray):
        audio = np.atleast_2d(item).astype(np.float32)
    else:
        from .data import read_clip

        audio = np.atleast_2d(np.asarray(read_clip(Path(item), int(sample_rate)), dtype=np.float32))
    return np.ascontiguousarray(audio[:, : int(MAX_CLIP_S * sample_rate)])


def _collect(clips: Sequence[Any], sample_rate: float, seed: int) -> dict[str, np.ndarray]:
    """Per usable frame: z's power spectrum (context frames kept by index) and the clean power above fs/4."""
    rng = np.random.default_rng(seed)
    quarter = N_FFT // 4
    z_power, clean_high, keep = [], [], []
    for item in clips:
        clean = _as_clip(item, sample_rate)
        parities = (0, 1) if clean.shape[1] < 5 * sample_rate else (int(rng.integers(0, 2)),)
        for parity in parities:
            # only bins 0..n_fft/4 of z are kept: above, z's power is their exact mirror (bin q + j = bin q - j)
            zp = np.square(np.abs(frame_spectra(zero_stuffed(clean, parity))[:, : quarter + 1]))
            cp = np.square(np.abs(frame_spectra(clean)[:, quarter + 1 :]))
            loud = np.log10(np.maximum(zp[:, 1 : quarter + 1].mean(axis=1), POWER_FLOOR)) > QUIET_LOG10
            for channel in range(clean.shape[0]):
                z_power.append(zp[channel])
                clean_high.append(cp[channel])
                keep.append(loud[channel])
    if not z_power:
        raise ValueError("no clips to train on")
    return {"z": z_power, "clean": clean_high, "keep": keep}


def _targets(data: dict[str, Any], config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features, targets, mirror log power, clean log power) over the kept central frames of every sequence."""
    quarter = N_FFT // 4
    behind, ahead = int(config.get("lookbehind", 0)), int(config.get("lookahead", 0))
    high = band_matrix(quarter + 1, 2 * quarter, int(config["high_bands"]))
    features, targets, mirrors, cleans = [], [], [], []
    for zp, cp, keep in zip(data["z"], data["clean"], data["keep"], strict=True):
        padded = np.concatenate([np.zeros((zp.shape[0], behind), np.float32), zp,
                                 np.zeros((zp.shape[0], ahead), np.float32)], axis=1)
        feats = low_band_features(padded[np.newaxis], config)[0]
        mirror_power = zp[quarter - 1 :: -1]  # bins q + 1 .. 2q of z
        mirror = np.log10(np.maximum(mirror_power, POWER_FLOOR)).T
        clean = np.log10(np.maximum(cp, POWER_FLOOR)).T
        if config["variant"] == "bins-linear":
            target = np.maximum(clean, ABSOLUTE_FLOOR)
        elif config.get("target") == "absolute":
            target = np.maximum(np.log10(np.maximum(high @ cp, POWER_FLOOR)), ABSOLUTE_FLOOR).T
        else:
            target = np.clip(np.log10(np.maximum(high @ cp, POWER_FLOOR)) - np.log10(
                np.maximum(high @ mirror_power, POWER_FLOOR)), *TARGET_RANGE).T
        chosen = keep & (np.arange(keep.size) % FRAME_STRIDE == 0)
        features.append(feats[chosen])
        targets.append(target[chosen])
        mirrors.append(mirror[chosen])
        cleans.append(clean[chosen])
    return (np.concatenate(features), np.concatenate(targets).astype(np.float32), np.concatenate(mirrors),
            np.concatenate(cleans))


def _standardiser(features: np.ndarray) -> dict[str, np.ndarray]:
    mean = features.mean(axis=0)
    std = np.maximum(features.std(axis=0), 1e-3)
    return {"feature_mean": mean.astype(np.float32), "feature_std": std.astype(np.float32)}


def _ridge(features: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    arrays = _standardiser(features)
    x = (features - arrays["feature_mean"]) / arrays["feature_std"]
    x = np.concatenate([x, np.ones((x.shape[0], 1), np.float32)], axis=1).astype(np.float64)
    gram = x.T @ x + RIDGE * x.shape[0] * np.diag(np.r_[np.ones(x.shape[1] - 1), 0.0])
    solution = np.linalg.solve(gram, x.T @ targets.astype(np.float64))
    arrays["w0"] = solution[:-1].astype(np.float32)
    arrays["b0"] = solution[-1].astype(np.float32)
    return arrays


def _train_mlp(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], seed: int,
               budget_s: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    arrays = _standardiser(train[0])

    def tensor(features: np.ndarray) -> Any:
        return torch.from_numpy(((features - arrays["feature_mean"]) / arrays["feature_std"]).astype(np.float32))

    x_train, y_train = tensor(train[0]), torch.from_numpy(train[1])
    x_val, y_val = tensor(val[0]), torch.from_numpy(val[1])
    sizes = (x_train.shape[1], *HIDDEN, y_train.shape[1])
    layers: list[Any] = []
    for index in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[index], sizes[index + 1]))
        if index < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    network = torch.nn.Sequential(*layers)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    # the budget is turned into a number of steps, not watched on the clock: the result must not depend on load
    total_steps = max(1, int(budget_s * STEPS_PER_SECOND))
    best, best_state, epochs, steps, start = float("inf"), None, 0, 0, time.perf_counter()
    while steps < total_steps:
        order = torch.randperm(x_train.shape[0], generator=generator)
        for begin in range(0, len(order), 1024):
            steps += 1
            index = order[begin : begin + 1024]
            loss = torch.mean((network(x_train[index]) - y_train[index]) ** 2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        epochs += 1
        with torch.no_grad():
            val_loss = float(torch.mean((network(x_val) - y_val) ** 2))
        if val_loss < best:
            best, best_state = val_loss, {k: v.clone() for k, v in network.state_dict().items()}
    network.load_state_dict(best_state)
    linear = [module for module in network if isinstance(module, torch.nn.Linear)]
    for index, module in enumerate(linear):
        arrays[f"w{index}"] = module.weight.detach().numpy().T.copy()
        arrays[f"b{index}"] = module.bias.detach().numpy().copy()
    return arrays, {"epochs": epochs, "steps": steps, "val_mse": best,
                    "seconds": round(time.perf_counter() - start, 1)}


def _frame_scores(arrays: dict[str, np.ndarray], config: dict[str, Any], data: dict[str, Any]) -> dict[str, float]:
    """High-band LSD (bels) on the restorer's frames, and the synthesised / true high-band energy ratio (dB)."""
    features, _, mirror, clean = _targets(data, config)
    predicted = run_prediction(arrays, config, features, mirror)
    difference = np.maximum(predicted, ABSOLUTE_FLOOR) - np.maximum(clean, ABSOLUTE_FLOOR)
    lsd = float(np.mean(np.sqrt(np.mean(difference**2, axis=1))))
    energy = float(10 * np.log10(np.sum(10.0 ** predicted) / max(np.sum(10.0 ** clean), 1e-30)))
    return {"lsd_high": round(lsd, 4), "energy_ratio_db": round(energy, 2)}


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _rounded(value) if isinstance(value, dict) else round(value, 3) if isinstance(value, float) else value
            for key, value in values.items()}


def run_prediction(arrays: dict[str, np.ndarray], config: dict[str, Any], features: np.ndarray,
                   mirror: np.ndarray) -> np.ndarray:
    """Predicted log10 power of the high bins (frames, n_fft/4) from features and the mirror's log10 power."""
    from ...effects.restorers.doubled import run_network

    predicted = run_network(features, arrays) + float(config.get("offset_db", 0.0)) / 10
    if config["variant"] == "bins-linear":
        return predicted
    smooth = predicted @ interpolation_matrix(N_FFT // 4, int(config["high_bands"]))
    return smooth if config.get("target") == "absolute" else mirror + smooth


def _evaluate(weights: tuple[dict[str, np.ndarray], dict[str, Any]] | None, clips: Sequence[np.ndarray],
              sample_rate: float, seed: int) -> dict[str, float]:
    """Mean LSD / LSD high / SNR of the real restorer (``mode: always``; None = naive) over damaged clips."""
    from .damage import DoubledSamples
    from .train import measure

    rng = np.random.default_rng(seed)
    rows = []
    for clean in clips:
        parity = int(rng.integers(0, 2))
        damaged = DoubledSamples(parity).apply(clean, int(sample_rate), rng)
        restorer = DoubledSampleRepair("naive" if weights is None else "always", parity, weights=weights)
        rows.append(measure(clean, restorer.process(damaged, sample_rate), sample_rate))
    return {key: float(np.mean([row[key] for row in rows])) for key in ("lsd", "lsd_high", "snr_db")}


def fit(train_clips: Sequence[Any], val_clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
        budget_s: float, log: Any = None) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit the three architectures on ``train_clips``, keep the best on ``val_clips`` and choose its level offset.

    ``train_clips``/``val_clips``: clean (channels, n) arrays or audio file paths; ``sample_rate`` Hz (44.1 kHz
    for the shipped model); ``damage``: the parsed ``doubled-samples`` damage (its parity is drawn here);
    ``budget_s``: seconds for the MLP's optimisation (the rest takes about as long again); ``log``: optional
    ``log(text)`` for progress.  Returns (arrays, config, training extra: the comparison and the choices).
    """
    say = log or (lambda text: None)
    start = time.perf_counter()
    train = _collect(train_clips, sample_rate, seed)
    val = _collect(val_clips, sample_rate, seed + 1)
    say(f"frames: {sum(int(k.sum()) for k in train['keep'])} train, {sum(int(k.sum()) for k in val['keep'])} val")
    base = {"n_fft": N_FFT, "hop": N_FFT // 4, "low_bands": LOW_BANDS, "high_bands": HIGH_BANDS,
            "lookbehind": 0, "lookahead": 0, "offset_db": 0.0}
    candidates: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
    comparison: dict[str, dict[str, Any]] = {}

    config = {**base, "variant": "bins-linear"}
    features, targets, _, _ = _targets(train, config)
    candidates["bins-linear"] = (_ridge(features, targets), config)
    config = {**base, "variant": "band-mlp", "target": "residual", "hidden": []}
    features, targets, _, _ = _targets(train, config)
    candidates["band-linear-residual"] = (_ridge(features, targets), config)
    config = {**base, "variant": "band-mlp", "target": "absolute", "low_bands": MLP_BANDS,
              "high_bands": MLP_OUT_BANDS,
              "hidden": list(HIDDEN), "lookbehind": CONTEXT[0], "lookahead": CONTEXT[1]}
    train_xy = _targets(train, config)[:2]
    val_xy = _targets(val, config)[:2]
    arrays, mlp_report = _train_mlp(train_xy, val_xy, seed, budget_s)
    candidates["band-mlp"] = (arrays, config)
    mirror_config = {**base, "variant": "band-mlp", "target": "residual", "hidden": []}
    identity = {"feature_mean": np.zeros(LOW_BANDS, np.float32), "feature_std": np.ones(LOW_BANDS, np.float32),
                "w0": np.zeros((LOW_BANDS, HIGH_BANDS), np.float32), "b0": np.zeros(HIGH_BANDS, np.float32)}
    eval_clips = [_as_clip(item, sample_rate)[:, : int(EVAL_CLIP_S * sample_rate)] for item in val_clips]
    naive = _evaluate(None, eval_clips, sample_rate, seed + 2)
    say(f"{'naive repair':<22} restorer on validation clips {_rounded(naive)}")
    comparison["mirror (gain 1)"] = {**_frame_scores(identity, mirror_config, val),
                                     "restorer_val": _evaluate((identity, mirror_config), eval_clips, sample_rate,
                                                               seed + 2)}
    say(f"{'mirror':<22} {_rounded(comparison['mirror (gain 1)'])}")
    for name, (arrays, config) in candidates.items():
        comparison[name] = {**_frame_scores(arrays, config, val),
                            "parameters": int(sum(v.size for k, v in arrays.items() if k[0] in "wb")),
                            "restorer_val": _evaluate((arrays, config), eval_clips, sample_rate, seed + 2)}
        say(f"{name:<22} {_rounded(comparison[name])}")
    comparison["band-mlp"]["training"] = mlp_report
    winner = min(candidates, key=lambda name: comparison[name]["restorer_val"]["lsd"])
    arrays, config = candidates[winner]

    offsets: dict[str, dict[str, float]] = {"0": comparison[winner]["restorer_val"]}
    for offset in OFFSETS_DB[1:]:
        trial = {**config, "offset_db": offset}
        offsets[f"{offset:g}"] = _evaluate((arrays, trial), eval_clips, sample_rate, seed + 2)
        say(f"{winner} offset {offset:+.1f} dB: {_rounded(offsets[f'{offset:g}'])}")
    allowed = [o for o in OFFSETS_DB if offsets[f"{o:g}"]["snr_db"] >= naive["snr_db"] - SNR_MARGIN_DB] or [
        min(OFFSETS_DB)]
    chosen = min(allowed, key=lambda o: offsets[f"{o:g}"]["lsd"])
    config = {**config, "offset_db": chosen}
    extra = {
        "architectures": comparison, "winner": winner, "naive_val": naive, "offsets_val": offsets,
        "offset_db": chosen, "fit_seconds": round(time.perf_counter() - start, 1),
        "selection": "architecture: lowest LSD of the restorer on the validation clips; offset: lowest validation "
                     f"LSD with SNR within {SNR_MARGIN_DB} dB of the naive repair",
    }
    return arrays, config, extra
