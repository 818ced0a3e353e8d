"""Benchmark of the ``bandwidth`` and ``denoise`` restorers on real recordings not used in training.

The files: the Debian sonic-pi samples (CC0 recordings) that fall in the *test* split of the shipped models
(``models/weights/restorers/{bandwidth,denoise}.safetensors`` record their train/validation/test lists; both were
trained with seed 0 on the same corpus, so the test split is the same).  Each file is damaged with the damages
of :mod:`pedalchain.models.restore.damage` (seeded), restored, and measured against the clean original with
:func:`pedalchain.chains.compare.compare_arrays` (LSD in bels; LSD above the cutoff; SNR; SI-SDR).

Bandwidth: ``bandwidth:11000``, ``bandwidth:16000`` (lowpass, shape drawn per file), ``mp3:64`` and ``mp3:128``
(real MP3 through pedalboard.io); methods: passthrough, sinc resampling (polyphase down to 2 x cutoff and back
up), noise fill (per frame, noise at the mean level of the 600 Hz just below the cutoff, flat above it, same
fade as the restorer), and the restorer with ``cutoff: auto`` (detected per file; LSD-high is measured above
the detected cutoff for every method).  Denoise: ``noise:10`` (kind drawn per file: white, pink, hum, mixtures);
methods: passthrough, power spectral subtraction with the restorer's own noise profile and floor, the restorer
at ``amount_db`` 12 and 20, and two oracle gains that know the clean signal (Wiener; phase-sensitive, the bound
of a per-bin gain at the 12 dB floor).  Speed: one-shot processing of a 30 s stereo 44.1 kHz excerpt, x real time
(denoise's channels on the restorers' threads, and on one).  Per file: each file's LSD-high against the noise
fill's, and its denoise gain against the oracles'.

Run: ``.venv/bin/python bench/bench_bandwidth_denoise.py [--no-results]`` (about 2–4 minutes); it rewrites its
section of bench/RESULTS.md and writes bench/bandwidth_example.png and bench/denoise_example.png, unless
``--no-results`` (print only).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _results import load_now, machine, machine_lines, one_restorer_thread, replace_section, yes_no  # noqa: E402
from pedalchain.chains.compare import compare_arrays, spectrogram_png  # noqa: E402
from pedalchain.effects.restorers import THREADS_ENV, restorer_threads  # noqa: E402
from pedalchain.effects.restorers.bandwidth import DEFAULT_WEIGHTS as BW_WEIGHTS  # noqa: E402
from pedalchain.effects.restorers.bandwidth import BandwidthExtension, detect_cutoff  # noqa: E402
from pedalchain.effects.restorers.denoise import DEFAULT_WEIGHTS as DN_WEIGHTS  # noqa: E402
from pedalchain.effects.restorers.denoise import Denoise, analyse_noise, spectral_subtraction_gain  # noqa: E402
from pedalchain.effects.restorers.stft import StftStream, stft_size  # noqa: E402
from pedalchain.models.model_file import read_model_info  # noqa: E402
from pedalchain.models.restore.damage import parse_damage  # noqa: E402
from pedalchain.models.restore.data import read_clip  # noqa: E402
from pedalchain.models.restore.fit_bandwidth import noise_fill_buffer  # noqa: E402

FS = 44100
SEED = 1234
MIN_S = 1.0
CORPUS = Path.home() / ".cache" / "pedalchain" / "corpus" / "v1-seed0-midi20-synth5-44100"
BANDWIDTH_DAMAGES = ("bandwidth:11000", "bandwidth:16000", "mp3:64", "mp3:128")
SECTION = "bandwidth_denoise"
ORACLE = "oracle Wiener mask, 12 dB floor (knows the clean signal)"
ORACLE_PSM = "oracle phase-sensitive gain in [12 dB floor, 1] (knows the clean signal)"


def test_files() -> list[Path]:
    """The sonic-pi recordings of both models' test split (at least MIN_S seconds long)."""
    lists = []
    for weights in (BW_WEIGHTS, DN_WEIGHTS):
        training = read_model_info(weights).training
        lists.append(set(training.get("test", [])))
        trained_on = set(training.get("data", [])) | set(training.get("validation", []))
        lists.append({name for name in lists[-1] if name not in trained_on})
    names = sorted(set.intersection(*lists))
    files = [CORPUS / "sonic-pi" / name for name in names if (CORPUS / "sonic-pi" / name).exists()]
    return [path for path in files if read_clip(path, FS).shape[-1] >= MIN_S * FS]


def in_stream(audio: np.ndarray, hook) -> np.ndarray:
    """One-shot run of an StftStream hook over ``audio`` (latency removed)."""
    n_fft, hop = stft_size(FS)
    stft = StftStream(audio.shape[0], n_fft, hop, hook, FS)
    padded = np.concatenate([audio, np.zeros((audio.shape[0], stft.latency), np.float32)], axis=1)
    return stft.process(padded)[:, stft.latency:]


def noise_fill(audio: np.ndarray, cutoff: float, seed: int) -> np.ndarray:
    """Baseline: noise shaped by the spectral envelope just below the cutoff (the mean power of the 600 Hz below
    the fade start, per frame and channel), flat above the cutoff, faded in like the restorer."""
    return noise_fill_buffer(audio, FS, cutoff, seed)


def sinc_resample(audio: np.ndarray, cutoff: float) -> np.ndarray:
    """Baseline: polyphase (windowed sinc) resampling down to 2 x cutoff and back up to the file's rate."""
    import scipy.signal as ss

    low = int(round(2 * cutoff / 100) * 100)
    g = math.gcd(low, FS)
    down = ss.resample_poly(audio, low // g, FS // g, axis=-1)
    return ss.resample_poly(down, FS // g, low // g, axis=-1)[:, :audio.shape[1]].astype(np.float32)


def spectral_subtraction(noisy: np.ndarray, amount_db: float) -> np.ndarray:
    """Baseline: the plain 10th-percentile profile of the noisy input (hum and held notes in it, no hum search)."""
    floor = 10 ** (-amount_db / 20)
    profile = analyse_noise(noisy, FS, find_hum=False)[0].floor_profile()

    def hook(spectra, context):
        power = spectra.real ** 2 + spectra.imag ** 2
        return np.stack([spectra[c] * spectral_subtraction_gain(power[c], profile, floor)
                         for c in range(spectra.shape[0])])

    return in_stream(noisy, hook)


def oracle_mask(clean: np.ndarray, noisy: np.ndarray, floor_db: float = 12.0, phase_sensitive: bool = False
                ) -> np.ndarray:
    """A reference, not a method: a gain per bin and frame computed from the *known* clean signal S and noise N
    (Y = S + N), floored at ``floor_db`` like the restorer, on the same STFT frames.  The Wiener gain |S|^2 /
    (|S|^2 + |N|^2), or with ``phase_sensitive`` the gain that minimises |g Y - S|^2, Re(S Y*) / |Y|^2, clipped
    to [floor, 1]: the best any real gain in 0..1 can do here, the bound for denoise's learned gain."""
    spectra: list[list[np.ndarray]] = [[], []]

    def remember(into: list[np.ndarray]):
        def hook(frames, context):
            into.append(frames.copy())
            return frames
        return hook

    in_stream(clean, remember(spectra[0]))
    in_stream(noisy, remember(spectra[1]))
    s, y = (np.concatenate(part, axis=-1) for part in spectra)
    if phase_sensitive:
        gains = (s * y.conj()).real / np.maximum(np.abs(y) ** 2, 1e-30)
    else:
        clean_power, noise_power = np.abs(s) ** 2, np.abs(y - s) ** 2
        gains = clean_power / np.maximum(clean_power + noise_power, 1e-30)
    gains = np.clip(gains, 10 ** (-floor_db / 20), 1.0)
    used = [0]

    def apply(frames, context):
        count = frames.shape[-1]
        out = frames * gains[..., used[0]:used[0] + count]
        used[0] += count
        return out

    return in_stream(noisy, apply)


def realtime(make_restorer, audio: np.ndarray, runs: int = 3) -> float:
    """x real time of one-shot processing (analysis included) by a fresh restorer, the best of ``runs``: other
    jobs on the machine only ever slow a run down."""
    best = math.inf
    for _ in range(runs):
        restorer = make_restorer()
        started = time.perf_counter()
        restorer.process(audio, FS)
        best = min(best, time.perf_counter() - started)
    return audio.shape[1] / FS / best


def mean(rows: list[dict], key: str) -> float:
    values = [row[key] for row in rows if row.get(key) is not None]
    return float(np.mean(values)) if values else float("nan")


def bench_bandwidth(files: list[Path], figures: bool) -> tuple[str, dict]:
    methods = ("passthrough", "sinc resampling", "noise fill", "bandwidth (auto)")
    table, summary = [], {}
    example = None
    for spec in BANDWIDTH_DAMAGES:
        damage = parse_damage(spec)
        rng = np.random.default_rng(SEED)
        rows: dict[str, list[dict]] = {m: [] for m in methods}
        cutoffs, skipped, names = [], [], []
        for index, path in enumerate(files):
            clean = np.atleast_2d(read_clip(path, FS))
            damaged = damage.apply(clean, FS, rng)
            if detect_cutoff(clean, FS) is not None:
                skipped.append(f"{path.name} (band-limited itself)")
                continue
            cutoff = detect_cutoff(damaged, FS)
            if cutoff is None:
                skipped.append(f"{path.name} (no cutoff detected)")
                continue
            cutoffs.append(cutoff)
            names.append(path.name)
            outputs = {"passthrough": damaged, "sinc resampling": sinc_resample(damaged, cutoff),
                       "noise fill": noise_fill(damaged, cutoff, SEED + index),
                       "bandwidth (auto)": BandwidthExtension().process(damaged, FS)}
            for name, output in outputs.items():
                rows[name].append(compare_arrays(clean, output, FS, split_hz=cutoff))
            if spec == "mp3:128" and (example is None or clean.shape[1] > example[0].shape[1]):
                example = (clean, outputs, cutoff, path.name)
        base = {key: mean(rows["passthrough"], key) for key in ("lsd_high", "snr_db")}
        for name in methods:
            lsd_high, snr = mean(rows[name], "lsd_high"), mean(rows[name], "snr_db")
            change = 100 * (lsd_high / base["lsd_high"] - 1)
            table.append(f"| {spec} | {name} | {len(rows[name])} | {mean(rows[name], 'lsd'):.3f} | {lsd_high:.3f} "
                         f"| {change:+.0f} % | {snr:.2f} | {snr - base['snr_db']:+.2f} "
                         f"| {mean(rows[name], 'si_sdr_db'):.2f} |")
        summary[spec] = {name: {key: mean(rows[name], key) for key in ("lsd", "lsd_high", "snr_db", "si_sdr_db")}
                         for name in methods}
        summary[spec]["cutoff_hz_median"] = float(np.median(cutoffs)) if cutoffs else None
        summary[spec]["skipped_no_cutoff"] = skipped
        summary[spec]["per_file"] = [(name, fill["lsd_high"], ours["lsd_high"]) for name, fill, ours
                                     in zip(names, rows["noise fill"], rows["bandwidth (auto)"], strict=True)]
    clean, outputs, cutoff, name = example
    if figures:
        spectrogram_png(BENCH / "bandwidth_example.png",
                        {"clean": clean, "MP3 128 kbps": outputs["passthrough"], "noise fill": outputs["noise fill"],
                         "bandwidth (auto)": outputs["bandwidth (auto)"]},
                        FS, f"{name}: MP3 128 kbps, cutoff {cutoff / 1000:.1f} kHz detected")
    return "\n".join(table), summary


def per_file_lsd_high(spec: str, summary: dict) -> str:
    """One line: each file's LSD-high under ``spec``, the restorer's against the noise fill's (lower wins)."""
    rows = summary[spec]["per_file"]
    wins = sum(ours < fill for _, fill, ours in rows)
    return (f"- {spec}: " + ", ".join(f"{name.removesuffix('.flac')} {ours:.3f} / {fill:.3f}"
                                       for name, fill, ours in rows)
            + f" (lower on {wins} of {len(rows)})")


def bench_denoise(files: list[Path], figures: bool) -> tuple[str, dict, list[tuple]]:
    damage = parse_damage("noise:10")
    rng = np.random.default_rng(SEED)
    methods = ("passthrough", "spectral subtraction (12 dB floor)", "denoise amount_db 12", "denoise amount_db 20",
               ORACLE, ORACLE_PSM)
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    per_file = []
    example = None
    for path in files:
        clean = np.atleast_2d(read_clip(path, FS))
        noisy = damage.apply(clean, FS, rng)
        learned = Denoise(amount_db=12)
        outputs = {"passthrough": noisy, "denoise amount_db 12": learned.process(noisy, FS)}
        outputs["spectral subtraction (12 dB floor)"] = spectral_subtraction(noisy, learned.amount_db)
        outputs["denoise amount_db 20"] = Denoise(amount_db=20).process(noisy, FS)
        outputs[ORACLE] = oracle_mask(clean, noisy)
        outputs[ORACLE_PSM] = oracle_mask(clean, noisy, phase_sensitive=True)
        for name in methods:
            rows[name].append(compare_arrays(clean, outputs[name], FS))
        gain_of = {name: rows[name][-1]["si_sdr_db"] - rows["passthrough"][-1]["si_sdr_db"]
                   for name in ("denoise amount_db 12", ORACLE, ORACLE_PSM)}
        per_file.append((path.name, damage.variant, gain_of["denoise amount_db 12"], gain_of[ORACLE],
                         gain_of[ORACLE_PSM]))
        if damage.variant in ("white", "pink") and (example is None or clean.shape[1] > example[0].shape[1]):
            example = (clean, outputs, path.name, damage.variant)
    base = mean(rows["passthrough"], "si_sdr_db")
    table = [f"| {name} | {len(rows[name])} | {mean(rows[name], 'snr_db'):.2f} | {mean(rows[name], 'si_sdr_db'):.2f} "
             f"| {mean(rows[name], 'si_sdr_db') - base:+.2f} | {mean(rows[name], 'lsd'):.3f} |" for name in methods]
    summary = {name: {key: mean(rows[name], key) for key in ("snr_db", "si_sdr_db", "lsd")} for name in methods}
    clean, outputs, name, kind = example
    if figures:
        spectrogram_png(BENCH / "denoise_example.png",
                        {"clean": clean, f"noisy (10 dB, {kind})": outputs["passthrough"],
                         "spectral subtraction": outputs["spectral subtraction (12 dB floor)"],
                         "denoise (12 dB)": outputs["denoise amount_db 12"]},
                        FS, f"{name}: {kind} noise at 10 dB SNR")
    return "\n".join(table), summary, per_file


def per_file_denoise(per_file: list[tuple[str, str, float, float, float]]) -> str:
    """The per-file table of SI-SDR gains, then each noise kind's mean gain against the Wiener oracle's."""
    lines = ["| file | noise | denoise amount_db 12 | oracle Wiener, 12 dB floor | oracle phase-sensitive |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {kind} | {ours:+.2f} | {wiener:+.2f} | {psm:+.2f} |"
              for name, kind, ours, wiener, psm in per_file]
    kinds = sorted({kind for _, kind, *_ in per_file})
    means = []
    for kind in kinds:
        rows = [row for row in per_file if row[1] == kind]
        files = f"{len(rows)} file" + "s" * (len(rows) > 1)
        means.append(f"{kind} ({files}) {np.mean([row[2] for row in rows]):+.2f} / "
                     f"{np.mean([row[3] for row in rows]):+.2f}")
    lines.append("\nMean gain per noise kind, denoise / Wiener oracle: " + "; ".join(means) + ".")
    return "\n".join(lines)


def bench_denoise_low_rate(files: list[Path], rate: int = 22050) -> float:
    """Mean SI-SDR gain (dB) of ``denoise`` (amount_db 12) on the same files read at ``rate``, noise:10 drawn with
    the same seed: below 32 kHz denoise runs on 1024-sample frames (``denoise.frame_size``)."""
    damage = parse_damage("noise:10")
    rng = np.random.default_rng(SEED)
    gains = []
    for path in files:
        clean = np.atleast_2d(read_clip(path, rate))
        noisy = damage.apply(clean, rate, rng)
        out = Denoise(amount_db=12).process(noisy, rate)
        gains.append(compare_arrays(clean, out, rate)["si_sdr_db"] - compare_arrays(clean, noisy, rate)["si_sdr_db"])
    return float(np.mean(gains))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-results", action="store_true",
                        help="print the section only: bench/RESULTS.md and the two PNGs stay as they are")
    args = parser.parse_args()
    info = machine()
    files = test_files()
    if not files:
        raise SystemExit("no test files: build the corpus and ship the models first")
    started = time.perf_counter()
    bw_table, bw_summary = bench_bandwidth(files, not args.no_results)
    dn_table, dn_summary, dn_per_file = bench_denoise(files, not args.no_results)
    low_rate_gain = bench_denoise_low_rate(files)
    clips = [np.atleast_2d(read_clip(path, FS)) for path in files]
    excerpt = np.concatenate([np.repeat(clip, 2 // clip.shape[0], axis=0)[:2] for clip in clips], axis=1)
    excerpt = np.tile(excerpt, (1, math.ceil(30 * FS / excerpt.shape[1])))[:, :30 * FS]
    cut = parse_damage("mp3:128").apply(excerpt, FS, np.random.default_rng(0))
    noisy = parse_damage("noise:10").apply(excerpt, FS, np.random.default_rng(0))
    speed_bw = realtime(BandwidthExtension, cut)
    speed_dn = realtime(Denoise, noisy)
    with one_restorer_thread():
        speed_dn_one = realtime(Denoise, noisy)
    elapsed = time.perf_counter() - started

    def goal_bandwidth(spec: str) -> tuple[bool, str]:
        row = bw_summary[spec]
        ours, base, fill = row["bandwidth (auto)"], row["passthrough"], row["noise fill"]
        drop = 1 - ours["lsd_high"] / base["lsd_high"]
        ok = drop >= 0.4 and ours["lsd_high"] < fill["lsd_high"] and ours["snr_db"] >= base["snr_db"] - 0.5
        return ok, (f"{spec}: LSD-high {100 * drop:.0f} % lower than passthrough, {ours['lsd_high']:.3f} vs noise "
                    f"fill {fill['lsd_high']:.3f}, SNR {ours['snr_db'] - base['snr_db']:+.2f} dB")

    goals = [goal_bandwidth(spec) for spec in BANDWIDTH_DAMAGES]
    gain = dn_summary["denoise amount_db 12"]["si_sdr_db"] - dn_summary["passthrough"]["si_sdr_db"]
    oracle_gain = dn_summary[ORACLE]["si_sdr_db"] - dn_summary["passthrough"]["si_sdr_db"]
    bound_gain = dn_summary[ORACLE_PSM]["si_sdr_db"] - dn_summary["passthrough"]["si_sdr_db"]
    names = ", ".join(path.name for path in files)
    body = f"""## Restorers: bandwidth extension and denoise

Written by `bench/bench_bandwidth_denoise.py` ({elapsed:.0f} s); load average at the end {load_now()} (other
jobs on the 2 cores make the speeds lower bounds).

{machine_lines(info)}
**Files** ({len(files)} real recordings, Debian sonic-pi samples, CC0, in the *test* split of both shipped models,
never used for training or for choosing settings): {names}.

Metrics from `pedalchain.chains.compare.compare_arrays` against the clean original: LSD in bels (Hann 2048 / hop
512), LSD-high = LSD over the bins above the cutoff detected on the damaged file, SNR and
SI-SDR in dB; means over files.  LSD as defined in the README's "Metrics" (power clamped at 1e-8).

### Bandwidth extension (`restorer: bandwidth`, `cutoff: auto`)

| damage | method | files | LSD | LSD-high | LSD-high vs passthrough | SNR dB | SNR vs passthrough | SI-SDR dB |
|---|---|---|---|---|---|---|---|---|
{bw_table}

Left out (a clean reference with a band limit of its own cannot score an extension; or no cutoff found on the
damaged file): {"; ".join(sorted({f"{spec}: {name}" for spec in BANDWIDTH_DAMAGES
                                   for name in bw_summary[spec]['skipped_no_cutoff']})) or "none"}.
Detected cutoffs (median): {", ".join(f"{spec} {bw_summary[spec]['cutoff_hz_median'] / 1000:.1f} kHz"
                                    for spec in BANDWIDTH_DAMAGES if bw_summary[spec]['cutoff_hz_median'])}.
Goal (LSD-high ≥ 40 % lower than passthrough, below the noise fill, SNR within 0.5 dB):
{chr(10).join(f"- {text}: {yes_no(ok)}" for ok, text in goals)}

LSD-high per file, the restorer's / the noise fill's:
{chr(10).join(per_file_lsd_high(spec, bw_summary) for spec in BANDWIDTH_DAMAGES)}

![bandwidth example](bandwidth_example.png)

### Denoise (`restorer: denoise`), `noise:10` (10 dB input SNR)

| method | files | SNR dB | SI-SDR dB | SI-SDR gain dB | LSD |
|---|---|---|---|---|---|
{dn_table}

Per file (SI-SDR gain in dB; the noise kind is drawn per file):

{per_file_denoise(dn_per_file)}

Goal (≥ 6 dB SI-SDR gain at 10 dB input SNR, default `amount_db: 12`): {gain:+.2f} dB, {yes_no(gain >= 6.0)}.
The oracle rows know the clean signal S and the noise N (Y = S + N), on denoise's own STFT frames, floored at
12 dB: the Wiener gain |S|^2 / (|S|^2 + |N|^2) ({oracle_gain:+.2f} dB) and the phase-sensitive gain Re(S Y*) / |Y|^2
clipped to [floor, 1] ({bound_gain:+.2f} dB): for each bin, the gain in that range with the least error |g Y - S|^2,
which denoise's network is trained to estimate.  The goal asks for {100 * 6.0 / bound_gain:.0f} % of the latter.
Denoise's hum subtraction (step 1 in `effects/restorers/denoise.py`) is no gain at all; on files with hum denoise
can beat both.
Spectral subtraction uses the plain 10th-percentile profile (hum and held notes included), the classic way.
At 22.05 kHz (the same files read at that rate, noise drawn with the same seed; 1024-sample frames, the bins and
hop the network was trained on at 44.1 kHz) denoise gains {low_rate_gain:+.2f} dB SI-SDR (informative: the goal
is stated at the files' own 44.1 kHz).

![denoise example](denoise_example.png)

### Speed (one-shot, 30 s stereo 44.1 kHz, BLAS on one thread, best of 3 runs)

- bandwidth (cutoff auto, MP3 128 kbps input, analysis included): {speed_bw:.0f}x real time ({yes_no(speed_bw >= 30)})
- denoise (analysis included; its two channels on {restorer_threads()} threads): {speed_dn:.0f}x real time
  ({yes_no(speed_dn >= 30)}; on one thread, `{THREADS_ENV}=1`: {speed_dn_one:.0f}x)
"""
    if not args.no_results:
        replace_section(SECTION, body)
    print(body)


if __name__ == "__main__":
    main()
