"""``restorer: denoise``: SI-SDR gain on a noisy music-like signal, a quiet passage never gated to silence, the
amount control, chunk invariance, passthrough without analysis, parameters and the YAML round trip, with the
shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import RANDOM, assert_close, stream
from pedalchain.chains.yaml_io import chain_from_yaml, chain_to_data
from pedalchain.effects.restorers import THREADS_ENV, restorer_threads
from pedalchain.effects.restorers.denoise import (
    DEFAULT_WEIGHTS,
    Denoise,
    NoiseProfiler,
    analyse_noise,
    spectral_subtraction_gain,
)
from pedalchain.effects.restorers.stft import StftStream, stft_size
from pedalchain.errors import ChainFileError, ParameterError

FS = 44100


def music_like(seconds: float = 4.0, seed: int = 0, fs: int = FS) -> np.ndarray:
    """Plucked harmonic notes (8 partials, 1/k amplitudes, decaying) on a chord progression, stereo, peak ~0.5."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    out = np.zeros((2, n))
    step = fs // 4
    for start in range(0, n - step, step):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        t = np.arange(min(2 * step, n - start)) / fs
        top = min(16000, 0.45 * fs)  # no partial above Nyquist
        note = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 9) if k * f0 < top)
        note *= np.exp(-4 * t)
        pan = rng.uniform(0.3, 1.0)
        out[0, start:start + len(t)] += pan * note
        out[1, start:start + len(t)] += (1.3 - pan) * note
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def with_noise(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(clean.shape)
    noise *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    x, y = reference.astype(np.float64).ravel(), estimate.astype(np.float64).ravel()
    r = np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))
    return float(10 * np.log10(r * r / (1 - r * r)))


def subtraction(noisy: np.ndarray, profile: np.ndarray, amount_db: float) -> np.ndarray:
    """The spectral-subtraction baseline with the restorer's own noise profile and floor, one-shot."""
    n_fft, hop = stft_size(FS)

    def hook(spectra, context):
        power = spectra.real ** 2 + spectra.imag ** 2
        return np.stack([spectra[c] * spectral_subtraction_gain(power[c], profile, 10 ** (-amount_db / 20))
                         for c in range(spectra.shape[0])])

    stft = StftStream(noisy.shape[0], n_fft, hop, hook, FS)
    padded = np.concatenate([noisy, np.zeros((noisy.shape[0], stft.latency), np.float32)], axis=1)
    return stft.process(padded)[:, stft.latency:]


def test_shipped_model_exists_and_is_small():
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} is missing"
    assert DEFAULT_WEIGHTS.stat().st_size < 200_000


def test_gains_si_sdr_on_noisy_music_and_beats_spectral_subtraction():
    clean = music_like()
    noisy = with_noise(clean, 10.0)
    restorer = Denoise()
    out = restorer.process(noisy, FS)
    assert restorer.noise_found
    before, after = si_sdr(clean, noisy), si_sdr(clean, out)
    profile = analyse_noise(noisy, FS, find_hum=False)[0].floor_profile()  # the classic profile, hum and all
    baseline = si_sdr(clean, subtraction(noisy, profile, restorer.amount_db))
    assert after - before >= 3.0, f"SI-SDR {before:.2f} -> {after:.2f} dB"
    assert after > baseline, f"learned {after:.2f} dB, spectral subtraction {baseline:.2f} dB"


def test_quiet_passage_is_never_gated_to_silence():
    loud = music_like(seconds=2.0, seed=2)
    quiet = 10 ** (-40 / 20) * music_like(seconds=2.0, seed=3)  # a passage 40 dB down, at the noise level
    clean = np.concatenate([loud, quiet], axis=1)
    noisy = with_noise(clean, 10.0, seed=4)
    for amount_db in (6.0, 12.0, 24.0):
        out = Denoise(amount_db=amount_db).process(noisy, FS)
        part = slice(clean.shape[1] // 2 + 4096, clean.shape[1] - 4096)
        kept_db = 10 * np.log10(np.mean(out[:, part].astype(np.float64) ** 2) / np.mean(noisy[:, part] ** 2.0))
        assert kept_db >= -amount_db - 1.0, f"amount {amount_db} dB: the quiet passage lost {-kept_db:.1f} dB"
        assert kept_db <= -1.0, "the noise in the quiet passage was not reduced at all"


def test_amount_zero_passes_through_bit_for_bit():
    noisy = with_noise(music_like(seconds=1.0), 10.0)
    np.testing.assert_array_equal(Denoise(amount_db=0).process(noisy, FS), noisy)


def test_amount_set_after_building_applies_and_is_checked():
    """As a pedalboard plugin's parameter, also while streaming: turning the gain on from 0 loads the network (it
    ran with no weights before) and a bad value is refused (it was taken silently)."""
    noisy = with_noise(music_like(seconds=2.0), 10.0)
    restorer = Denoise(amount_db=0)
    restorer.analyze_input(noisy, FS)
    restorer.process(noisy[:, :4096], FS, reset=False)
    restorer.amount_db = 12
    fresh = Denoise(amount_db=12)
    fresh.analyze_input(noisy, FS)
    np.testing.assert_array_equal(restorer.process(noisy, FS, reset=False), fresh.process(noisy, FS, reset=False))
    for bad in (-3, 41, "loud", True, "12 Hz"):
        with pytest.raises(ParameterError, match="amount_db"):
            restorer.amount_db = bad
    restorer.amount_db = "20 dB"
    assert restorer.amount_db == 20.0


def test_pure_streaming_without_analysis_passes_through_bit_for_bit():
    noisy = with_noise(music_like(seconds=1.0), 10.0)
    np.testing.assert_array_equal(stream(Denoise(), noisy, FS, 1000), noisy)


@pytest.mark.parametrize("pattern", [1, 7, 512, 4096, 10000, RANDOM])
def test_chunk_invariant(pattern):
    seconds = 0.3 if pattern in (1, 7) else 1.5
    noisy = with_noise(music_like(seconds=seconds, seed=5), 10.0)
    restorer = Denoise()
    one_shot = restorer.process(noisy, FS)  # analyses the buffer; the profile survives reset
    assert_close(stream(restorer, noisy, FS, pattern, seed=6), one_shot, f"blocks {pattern}", atol=0.0)


def test_output_does_not_depend_on_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two channels are denoised on two threads by default; one thread gives the same samples."""
    noisy = with_noise(music_like(seconds=2.0, seed=7), 10.0)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert restorer_threads() == 2
    threaded = Denoise().process(noisy, FS)
    monkeypatch.setenv(THREADS_ENV, "1")
    single = Denoise().process(noisy, FS)
    assert noisy.shape[0] == 2 and not np.allclose(threaded, noisy, atol=1e-3)
    assert np.array_equal(threaded, single)


def test_profile_from_a_file_matches_the_buffer(tmp_path: Path):
    noisy = with_noise(music_like(seconds=3.0), 10.0)
    path = tmp_path / "noisy.wav"
    sf.write(path, noisy.T, FS, subtype="FLOAT")
    from_file, from_buffer = Denoise(), Denoise()
    findings = from_file.analyze_input(path, FS)
    from_buffer.analyze_input(noisy, FS)
    assert findings[0].startswith("denoise: stationary noise at")
    assert np.allclose(from_file.noise_profile, from_buffer.noise_profile)


def test_noise_profile_is_level_at_the_real_dc_and_nyquist_bins():
    """White noise has one power density at every frequency; its DC and Nyquist bins are real, with a 10th
    percentile 8 dB further below the mean than the complex bins' (read as exponential, DC came out 8 dB low).
    One bin's 10th percentile over 1,700 frames is good to about 1 dB here."""
    profiler = NoiseProfiler(2048, FS)
    profiler.add(np.random.default_rng(3).standard_normal((2, 40 * FS)))
    level = 10 * np.log10(profiler.profile())
    middle = np.median(level[1:-1])
    assert abs(level[0] - middle) < 3 and abs(level[-1] - middle) < 3, (level[0], level[-1], middle)
    spread = profiler.spread_db()
    assert abs(spread[0] - np.median(spread[1:-1])) < 3


def test_clean_tonal_music_is_not_reported_noisy():
    restorer = Denoise()
    restorer.analyze_input(music_like(seconds=4.0, seed=9), FS)
    assert not restorer.noise_found


def mains_hum(shape: tuple[int, int], base: float = 50.0, seed: int = 7, fs: int = FS) -> np.ndarray:
    """Steady hum: 6 harmonics of ``base`` Hz, random levels and phases, slightly different per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(shape[1]) / fs
    return sum(rng.uniform(0.3, 1.0) / k * np.sin(2 * np.pi * k * base * t + rng.uniform(0, 6.3, (shape[0], 1)))
               for k in range(1, 7))


def tone_power_db(audio: np.ndarray, frequency: float, fs: int = FS) -> float:
    """Power at one frequency (Hann-windowed projection over the whole signal, both channels), dB."""
    t = np.arange(audio.shape[1]) / fs
    window = np.hanning(audio.shape[1])
    projection = (audio.astype(np.float64) * window) @ np.exp(-2j * np.pi * frequency * t)
    return float(10 * np.log10(np.sum(np.abs(projection) ** 2) + 1e-30))


@pytest.mark.parametrize("base", [50.0, 60.0])
def test_mains_hum_is_subtracted_and_a_note_beside_it_kept(base: float):
    clean = music_like(seconds=6.0, seed=11)
    t = np.arange(clean.shape[1]) / FS
    clean = clean + (0.05 * np.sin(2 * np.pi * (2 * base - 3) * t)).astype(np.float32)  # a held note 3 Hz off
    hum = mains_hum(clean.shape, base)
    hum *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(hum ** 2) / 10)  # 10 dB below the music
    noisy = (clean + hum + 1e-4 * np.random.default_rng(8).standard_normal(clean.shape)).astype(np.float32)
    restorer = Denoise()
    out = restorer.process(noisy, FS)
    # the upper harmonics (1/k amplitudes) drown in the notes here; the strong ones must be found
    assert restorer.hum is not None and {1, 2} <= {round(f / base) for f in restorer.hum.frequencies}
    assert any(f"mains hum at {base:g} Hz (" in note for note in restorer.analyze_input(noisy, FS))
    for k in (1, 2):
        removed = tone_power_db(noisy, k * base) - tone_power_db(out, k * base)
        assert removed > 20, f"harmonic {k}: only {removed:.1f} dB removed"
    assert abs(tone_power_db(out, 2 * base - 3) - tone_power_db(clean, 2 * base - 3)) < 1.0
    assert si_sdr(clean, out) - si_sdr(clean, noisy) > 6


def test_with_hum_and_no_other_noise_only_the_hum_is_subtracted():
    """The noise profile of such a file is the music's own quiet frames: a gain against it would take them down."""
    clean = music_like(seconds=6.0, seed=12)
    hum = mains_hum(clean.shape, 60.0, seed=13)
    hum *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(hum ** 2) / 10)
    noisy = (clean + hum).astype(np.float32)
    restorer = Denoise()
    notes = restorer.analyze_input(noisy, FS)
    assert restorer.hum is not None and not restorer.noise_found, notes
    assert "only the hum subtracted" in notes[0]
    out = restorer.process(noisy, FS)
    # exactly the input less the hum, rounded to float32: no STFT round trip
    np.testing.assert_array_equal(out, (noisy - restorer.hum.synthesize(0, noisy.shape[1])).astype(np.float32))
    assert si_sdr(clean, out) - si_sdr(clean, noisy) > 6


def test_no_hum_is_subtracted_after_the_input_ends(tmp_path: Path):
    """A reverb's tail (``--tail``) and the zeros that flush the latency hold no hum: subtracting it there would
    write the hum, inverted, into what should be silence."""
    from pedalchain import Chain
    from pedalchain.chains.runner import RunOptions, process_file

    clean = music_like(seconds=4.0, seed=3)
    noisy = (clean + 0.05 * mains_hum(clean.shape, 50.0)).astype(np.float32)
    source, rendered = tmp_path / "hum.wav", tmp_path / "out.wav"
    sf.write(source, noisy.T, FS, subtype="FLOAT")
    process_file(Chain([Denoise()]), source, rendered, RunOptions(tail_s=1.0))
    out, _ = sf.read(rendered, dtype="float32", always_2d=True)
    assert out.shape[0] == noisy.shape[1] + FS
    assert np.max(np.abs(out[noisy.shape[1] + 4096:])) < 1e-6


def test_digital_silence_around_noisy_music_stays_silent_and_does_not_become_the_noise_estimate(tmp_path: Path):
    """An edit's padding (3 s of zeros either side, 43 % of the file): it used to be the 10th-percentile noise
    estimate (-179 dBFS: 'no gain applied'), and the hum model, interpolated over 2-second blocks, wrote inverted
    hum into it."""
    from pedalchain import Chain
    from pedalchain.chains.runner import process_file

    clean = music_like(seconds=4.0, seed=5)
    noisy = with_noise(clean, 10.0) + (0.03 * mains_hum(clean.shape, 50.0)).astype(np.float32)
    pad = np.zeros((2, 3 * FS), np.float32)
    scores = {}
    for name, audio in (("plain", noisy), ("padded", np.concatenate([pad, noisy, pad], axis=1))):
        source, rendered = tmp_path / f"{name}.wav", tmp_path / f"{name}_out.wav"
        sf.write(source, audio.T, FS, subtype="FLOAT")
        summary = process_file(Chain([Denoise()]), source, rendered)
        assert "reduced by at most 12 dB" in summary.analysis[0] and "mains hum" in summary.analysis[1]
        out = sf.read(rendered, dtype="float32", always_2d=True)[0].T
        if name == "padded":
            assert not out[:, : pad.shape[1] - 4096].any() and not out[:, -pad.shape[1] + 4096:].any()
            out = out[:, pad.shape[1]:pad.shape[1] + noisy.shape[1]]
        scores[name] = si_sdr(clean, out)
    # (the hum's 2-second blocks fall differently on the music: within 1 dB, not equal; 6 dB better before)
    assert scores["padded"] > scores["plain"] - 1.0, scores
    assert scores["plain"] - si_sdr(clean, noisy) > 4


def test_digital_silence_alone_passes_through_and_says_so():
    silence = np.zeros((2, 3 * FS), np.float32)
    restorer = Denoise()
    assert restorer.analyze_input(silence, FS) == ["denoise: digital silence throughout: passed through"]
    assert not restorer.process(silence, FS).any()


def kick_loop(hz: float, bpm: float, seconds: float = 10.0) -> np.ndarray:
    """A kick (a sine swept down to ``hz``, 150 ms decay) on every beat, stereo, 0.7 peak."""
    t = np.arange(int(0.25 * FS)) / FS
    kick = np.sin(2 * np.pi * np.cumsum(hz + 100 * np.exp(-t / 0.03)) / FS) * np.exp(-t / 0.15)
    loop = np.zeros(int(seconds * FS))
    for start in range(0, loop.size - kick.size, round(60 / bpm * FS)):
        loop[start:start + kick.size] += kick
    return np.stack([loop, loop]).astype(np.float32) * np.float32(0.7 / np.abs(loop).max())


@pytest.mark.parametrize("hz, bpm", [(58.3, 150), (50.0, 120), (51.9, 120), (50.0, 100)])
def test_a_kick_loop_whose_beat_divides_the_mains_is_not_hum(hz: float, bpm: float):
    """A kick on every beat repeats in a whole number of mains periods at these tempos: its spectrum is a comb of
    steady lines, on 50 or 60 Hz and their harmonics among them, as steady as hum (``restorer: auto`` subtracted
    it from such loops, changing them by up to 10 % of full scale)."""
    restorer = Denoise()
    restorer.analyze_input(kick_loop(hz, bpm), FS)
    assert restorer.hum is None


def test_hum_under_a_kick_loop_is_found_where_it_stands_out_of_the_comb():
    loop = kick_loop(50.0, 120)
    restorer = Denoise()
    restorer.analyze_input((loop + 0.1 * mains_hum(loop.shape, 60.0)).astype(np.float32), FS)
    assert restorer.hum is not None and {180.0, 240.0} <= set(restorer.hum.frequencies)


def test_a_kick_on_the_hum_grid_is_not_taken_for_hum():
    # a 60 Hz kick with its octave at 128 bpm (a tempo whose beats are not whole periods of 60 Hz)
    t = np.arange(4 * FS) / FS
    since = t % (60 / 128)
    beat = np.exp(-8 * since) * (np.sin(2 * np.pi * 60 * since) + 0.5 * np.sin(2 * np.pi * 120 * since))
    noisy = with_noise(np.stack([beat, beat]).astype(np.float32) * 0.5, 20.0)
    restorer = Denoise()
    restorer.analyze_input(noisy, FS)
    assert restorer.hum is None


def test_a_held_note_and_its_octave_high_on_the_hum_grid_are_not_hum():
    """E5 (held at 660 Hz) and E6 are the 11th and 22nd harmonics of 60 Hz, steady, and not multiples of 50:
    they passed every hum test but the one for the low harmonics mains hum always has (the bundled demo's pad
    was taken for 60 Hz hum).  Real hum with its low harmonics is still found beside the same note."""
    t = np.arange(4 * FS) / FS
    note = 0.2 * np.sin(2 * np.pi * 660 * t) + 0.05 * np.sin(2 * np.pi * 1320 * t + 1.0)
    noisy = with_noise(np.stack([note, note]).astype(np.float32), 20.0)
    restorer = Denoise()
    restorer.analyze_input(noisy, FS)
    assert restorer.hum is None
    hum = 0.01 * (np.sin(2 * np.pi * 60 * t) + 0.5 * np.sin(2 * np.pi * 180 * t + 2.0))
    restorer.analyze_input((noisy + hum).astype(np.float32), FS)
    assert restorer.hum is not None and 60.0 in restorer.hum.frequencies and 180.0 in restorer.hum.frequencies


def test_a_held_drone_is_not_taken_for_noise():
    t = np.arange(4 * FS) / FS
    drone = sum(np.sin(2 * np.pi * k * 97.0 * t) / k for k in range(1, 6)).astype(np.float32)
    clean = 0.3 * np.stack([drone, drone]) / np.abs(drone).max()
    noisy = with_noise(clean, 10.0)
    out = Denoise().process(noisy, FS)
    for k in (1, 2, 3):
        lost = tone_power_db(clean, 97.0 * k) - tone_power_db(out, 97.0 * k)
        assert lost < 1.5, f"partial {k} of the drone lost {lost:.1f} dB"


def test_pink_hiss_rising_towards_dc_is_noise_not_a_held_note():
    """Pink hiss rises towards DC, so its lowest bins stand far over the floor around them (the spectrum's edge is
    padded with its own level).  Taken for held notes, they kept their noise, the bulk of pink noise's energy.  A
    drone's partial on that slope, where the level rises again, is still a line."""
    n = 8 * FS
    rng = np.random.default_rng(21)
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    hiss = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / FS), 1.0)), n, axis=1)
    profiler = NoiseProfiler(2048, FS)
    profiler.add((0.1 * hiss / hiss.std()).astype(np.float32))
    assert not profiler.line_bins()[:8].any()
    t = np.arange(n) / FS
    drone = 0.05 * np.sin(2 * np.pi * 65.0 * t)  # bin 3, on top of the slope
    with_drone = NoiseProfiler(2048, FS)
    with_drone.add((0.1 * hiss / hiss.std() + drone).astype(np.float32))
    assert with_drone.line_bins()[3]


@pytest.mark.parametrize("pattern", [1000, RANDOM])
def test_chunk_invariant_with_hum(pattern):
    clean = music_like(seconds=2.5, seed=12)
    noisy = (clean + 0.05 * mains_hum(clean.shape, 60.0)).astype(np.float32)
    restorer = Denoise()
    one_shot = restorer.process(noisy, FS)
    assert restorer.hum is not None
    assert_close(stream(restorer, noisy, FS, pattern, seed=13), one_shot, f"blocks {pattern}", atol=0.0)


@pytest.mark.parametrize("value", [-1, 41, "lots", True])
def test_bad_amount_names_the_parameter(value):
    with pytest.raises(ParameterError, match="amount_db"):
        Denoise(amount_db=value)


def test_refuses_unsupported_rates():
    with pytest.raises(ParameterError, match="22.05–96 kHz"):
        Denoise().process(np.zeros((2, 4096), np.float32), 16000)


def test_at_22_05_khz_it_denoises_on_frames_of_the_trained_resolution():
    """Below 32 kHz the frames are 1024 samples: at 22.05 kHz the bins (21.5 Hz) and hop (11.6 ms) the gain
    network was trained on at 44.1 kHz with 2048.  It gains as it does there, and streams as it renders."""
    rate = 22050
    clean = music_like(fs=rate)
    noisy = with_noise(clean, 10.0)
    restorer = Denoise()
    out = restorer.process(noisy, rate)
    assert restorer.stft_size(rate) == (1024, 256) and restorer.noise_profile.shape == (513,)
    assert si_sdr(clean, out) - si_sdr(clean, noisy) >= 3.0
    assert_close(stream(restorer, noisy, rate, RANDOM, seed=7), out, "22.05 kHz in blocks", atol=0.0)


def test_yaml_round_trip(tmp_path: Path):
    chain = chain_from_yaml("steps:\n  - restorer: denoise\n    amount_db: 18\n")
    data = chain_to_data(chain, tmp_path)
    assert data["steps"] == [{"restorer": "denoise", "amount_db": 18}]
    again = chain_from_yaml("steps:\n  - restorer: denoise\n    amount_db: 18\n")
    noisy = with_noise(music_like(seconds=1.0), 10.0)
    assert_close(again.process(noisy, FS), chain.process(noisy, FS), "round trip")
    with pytest.raises((ParameterError, ChainFileError), match="amount_db"):
        chain_from_yaml("steps:\n  - restorer: denoise\n    amount_db: 99\n")
    hum_only = chain_from_yaml("steps:\n  - restorer: denoise\n    hum_only: true\n")
    assert chain_to_data(hum_only, tmp_path)["steps"] == [{"restorer": "denoise", "amount_db": 12, "hum_only": True}]
    with pytest.raises((ParameterError, ChainFileError), match="hum_only"):
        chain_from_yaml("steps:\n  - restorer: denoise\n    hum_only: 1\n")


def test_hum_only_subtracts_the_hum_and_applies_no_gain():
    clean = music_like(seconds=6.0, seed=11)
    hum = mains_hum(clean.shape)
    hum *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(hum ** 2) / 10)
    noisy = (with_noise(clean, 20.0) + hum).astype(np.float32)
    restorer = Denoise(hum_only=True)
    notes = restorer.analyze_input(noisy, FS)
    assert restorer.hum is not None and restorer.noise_found, notes  # hiss too, which it leaves alone
    out = restorer.process(noisy, FS)
    np.testing.assert_array_equal(out, (noisy - restorer.hum.synthesize(0, noisy.shape[1])).astype(np.float32))


def test_a_model_for_other_features_is_refused_when_the_chain_loads(tmp_path: Path):
    """A denoise file written by an earlier version (13 features, one frame of look-ahead) would fail in a
    matrix product mid-render; it is refused when the chain loads, saying to retrain."""
    from pedalchain.effects.restorers.denoise import ARCHITECTURE, FEATURES
    from pedalchain.errors import ModelFileError
    from pedalchain.models.model_file import read_model_info, save_arrays

    shipped = read_model_info(DEFAULT_WEIGHTS)
    assert shipped.config["features"] == FEATURES
    old = tmp_path / "old.safetensors"
    save_arrays(old, {"w0": np.zeros((13, 4)), "b0": np.zeros(4), "w1": np.zeros((4, 1)), "b1": np.zeros(1)},
                architecture=ARCHITECTURE, config={**shipped.config, "features": 13, "lookahead": 1},
                sample_rate=FS, training=shipped.training, metrics={})
    (tmp_path / "chain.yaml").write_text("steps:\n  - restorer: denoise\n    model: old.safetensors\n")
    from pedalchain.chains.yaml_io import load_chain

    with pytest.raises(ModelFileError, match="retrain"):
        load_chain(tmp_path / "chain.yaml")
