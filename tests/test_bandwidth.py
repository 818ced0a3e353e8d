"""``restorer: bandwidth``: the seam at the cutoff, silence on material without highs, cutoff detection,
chunk invariance, parameters and the YAML round trip, with the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import soundfile as sf
from helpers import RANDOM, assert_close, stream
from pedalchain.chains.yaml_io import chain_from_yaml, chain_to_data
from pedalchain.effects.restorers.bandwidth import DEFAULT_WEIGHTS, BandwidthExtension, Layout, analysis_spectra
from pedalchain.errors import ChainFileError, ParameterError

FS = 44100


def pink_cut(cutoff_hz: float, seconds: float = 3.0, channels: int = 2, seed: int = 0, fs: int = FS) -> np.ndarray:
    """Pink noise (-3 dB/octave from 50 Hz) cut by an ideal (FFT-domain) lowpass at ``cutoff_hz``, RMS 0.1."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1 / fs)
    spectrum /= np.sqrt(np.maximum(freqs, 50.0) / 1000)
    spectrum[:, freqs >= cutoff_hz] = 0
    audio = np.fft.irfft(spectrum, n=n, axis=1)
    return (0.1 * audio / audio.std()).astype(np.float32)


def bass_line(seconds: float = 3.0, fs: int = FS) -> np.ndarray:
    """A bass line: sawtooth notes 41-98 Hz through a 4-pole lowpass at 600 Hz, with a pluck envelope; stereo."""
    notes = [41.2, 55.0, 61.7, 73.4, 98.0, 82.4]
    n = int(seconds * fs)
    step = n // len(notes)
    t = np.arange(step) / fs
    parts = [0.5 * ss.sawtooth(2 * np.pi * f * t) * np.exp(-3 * t) for f in notes]
    audio = np.concatenate(parts + [np.zeros(n - step * len(notes))])
    audio = ss.sosfilt(ss.butter(4, 600, fs=fs, output="sos"), audio)
    return np.stack([audio, 0.8 * audio]).astype(np.float32)


def welch_db(audio: np.ndarray, fs: int = FS) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD (dB, channels averaged) of the middle of ``audio``: edges (where a one-shot cut starts and
    stops the added signal abruptly) are left out."""
    middle = audio[:, 8192:-8192].astype(np.float64)
    freqs, power = ss.welch(middle, fs, nperseg=8192, axis=-1)
    return freqs, 10 * np.log10(power.mean(axis=0) + 1e-30)


def band_db(freqs: np.ndarray, level: np.ndarray, lo: float, hi: float) -> float:
    keep = (freqs >= lo) & (freqs < hi)
    return float(10 * np.log10(np.mean(10 ** (level[keep] / 10))))


def test_shipped_model_exists_and_is_small():
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} is missing"
    assert DEFAULT_WEIGHTS.stat().st_size < 200_000


@pytest.mark.parametrize("cutoff", [11000.0, 16000.0])
def test_seam_adds_nothing_below_and_has_no_level_step(cutoff):
    audio = pink_cut(cutoff)
    out = BandwidthExtension(cutoff=cutoff).process(audio, FS)
    added = out.astype(np.float64) - audio
    freqs, added_db = welch_db(added)
    _, input_db = welch_db(audio)
    _, output_db = welch_db(out)
    below = freqs < cutoff - 500
    # below the transition band the added signal stays >= 60 dB under the input, bin by bin
    assert np.max(added_db[below] - input_db[below]) <= -60.0
    # something really was added above the cutoff
    assert band_db(freqs, output_db, cutoff + 200, cutoff + 1500) > band_db(freqs, input_db, cutoff + 200,
                                                                            cutoff + 1500) + 40
    # the level just above the seam matches the level just below it within 1 dB
    step = band_db(freqs, output_db, cutoff + 50, cutoff + 450) - band_db(freqs, output_db, cutoff - 900,
                                                                          cutoff - 500)
    assert abs(step) <= 1.0, f"level step across the seam {step:+.2f} dB"


def test_below_cutoff_is_bit_identical_path():
    """The input is passed through delayed; only the added signal goes through the STFT."""
    audio = pink_cut(11000, seconds=1.0)
    restorer = BandwidthExtension(cutoff=11000)
    out = restorer.process(audio, FS)
    lowpassed = ss.sosfiltfilt(ss.butter(8, 9000, fs=FS, output="sos"), out.astype(np.float64) - audio, axis=-1)
    assert np.sqrt(np.mean(lowpassed[:, 4096:-4096] ** 2)) < 1e-3 * np.sqrt(np.mean(audio ** 2.0))


def test_bass_line_stays_silent_above_the_cutoff():
    audio = bass_line()
    out = BandwidthExtension(cutoff=11000).process(audio, FS)
    freqs, output_db = welch_db(out)
    _, input_db = welch_db(audio)
    total = band_db(freqs, input_db, 0, FS / 2)
    above = band_db(freqs, output_db, 11000, FS / 2)
    assert above - total <= -60.0, f"added {above - total:.1f} dB above the cutoff on a bass line"


def test_bass_line_with_auto_cutoff_passes_through_unchanged():
    audio = bass_line()
    restorer = BandwidthExtension()
    findings = restorer.analyze_input(audio, FS)
    assert restorer.active_cutoff is None or restorer.active_cutoff < 4000
    assert findings and "passed through" in findings[0]
    assert np.array_equal(restorer.process(audio, FS), audio)


def test_auto_detects_the_cutoff_from_a_file_and_a_buffer(tmp_path: Path):
    audio = pink_cut(16000, seconds=4.0)
    path = tmp_path / "cut.wav"
    sf.write(path, audio.T, FS, subtype="FLOAT")
    from_file = BandwidthExtension()
    findings = from_file.analyze_input(path, FS)
    assert findings == ["bandwidth: band limit at 16.0 kHz: extended"]
    assert abs(from_file.detected - 16000) < 300
    from_buffer = BandwidthExtension()
    from_buffer.analyze_input(audio, FS)
    assert from_buffer.detected == from_file.detected
    from_file.reset()  # the detected setting survives reset
    assert from_file.detected == from_buffer.detected
    out = from_file.process(audio, FS)  # one-shot analyses the buffer again: same cutoff
    assert_close(out, BandwidthExtension(cutoff=from_buffer.detected).process(audio, FS), "auto vs explicit")


def test_pure_streaming_without_analysis_passes_through():
    audio = pink_cut(11000, seconds=1.0)
    restorer = BandwidthExtension()
    out = stream(restorer, audio, FS, 1000)
    assert_close(out, audio, "auto cutoff without analysis", atol=0.0)


@pytest.mark.parametrize("pattern", [1, 7, 512, 4096, 10000, RANDOM])
def test_chunk_invariant(pattern):
    seconds = 0.3 if pattern in (1, 7) else 1.5
    audio = pink_cut(11000, seconds=seconds, seed=3)
    restorer = BandwidthExtension(cutoff=11000)
    one_shot = restorer.process(audio, FS)
    assert_close(stream(restorer, audio, FS, pattern, seed=5), one_shot, f"blocks {pattern}", atol=0.0)


def test_mono_and_independent_channels():
    audio = pink_cut(11000, seconds=1.0)
    restorer = BandwidthExtension(cutoff=11000)
    mono = restorer.process(audio[0], FS)
    assert mono.ndim == 1
    stereo = restorer.process(np.stack([audio[0], np.zeros_like(audio[0])]), FS)
    assert_close(stereo[0], mono, "left channel alone")
    assert np.all(stereo[1] == 0)


def test_latency_does_not_depend_on_the_detection():
    cut, clean = BandwidthExtension(cutoff=11000), BandwidthExtension()
    assert cut.latency_at(FS) == clean.latency_at(FS) == 2047
    assert BandwidthExtension(cutoff=20000).latency_at(48000) == 2047
    assert BandwidthExtension(cutoff=20000).latency_at(96000) == 4095


@pytest.mark.parametrize("fs", [22050, 192000])
def test_refuses_unsupported_rates(fs):
    with pytest.raises(ParameterError, match="32–96 kHz"):
        BandwidthExtension(cutoff=8000).process(np.zeros((2, 4096), np.float32), fs)


def test_cutoff_takes_units_as_other_parameters_do():
    assert chain_from_yaml("steps:\n  - restorer: bandwidth\n    cutoff: 16 kHz\n")[0].cutoff == 16000.0
    with pytest.raises(ParameterError, match="cutoff"):
        BandwidthExtension(cutoff="16 dB")


def test_bad_parameters_name_the_parameter():
    with pytest.raises(ParameterError, match="cutoff"):
        BandwidthExtension(cutoff="banana")
    with pytest.raises(ParameterError, match="cutoff"):
        BandwidthExtension(cutoff=1000)
    with pytest.raises(ParameterError, match="cutoff"):
        BandwidthExtension(cutoff=21500).process(np.zeros((1, 4096), np.float32), FS)
    with pytest.raises(ParameterError, match="no parameter"):
        BandwidthExtension.from_params({"cutof": 11000})
    with pytest.raises(ParameterError, match="no such model file"):
        BandwidthExtension.from_params({"model": "missing.safetensors"})


def test_a_cutoff_set_after_building_applies_and_is_checked():
    cut = pink_cut(11000, seconds=1.0)
    restorer = BandwidthExtension(cutoff=16000)
    restorer.process(cut, FS)
    restorer.cutoff = 11000
    np.testing.assert_array_equal(restorer.process(cut, FS), BandwidthExtension(cutoff=11000).process(cut, FS))
    with pytest.raises(ParameterError, match="cutoff"):
        restorer.cutoff = "banana"


def test_yaml_round_trip(tmp_path: Path):
    chain = chain_from_yaml("steps:\n  - restorer: bandwidth\n    cutoff: 16000\n  - restorer: bandwidth\n")
    data = chain_to_data(chain, tmp_path)
    assert data["steps"] == [{"restorer": "bandwidth", "cutoff": 16000}, {"restorer": "bandwidth", "cutoff": "auto"}]
    again = chain_from_yaml(f"steps:\n  - restorer: bandwidth\n    cutoff: {data['steps'][0]['cutoff']}\n")
    audio = pink_cut(16000, seconds=1.0)
    assert_close(again.process(audio, FS), chain.steps[0].processor.process(audio, FS), "round trip")
    with pytest.raises((ParameterError, ChainFileError), match=r"cutoff.*expected 'auto', a plain number \(in Hz\)"):
        chain_from_yaml("steps:\n  - restorer: bandwidth\n    cutoff: loud\n")


def test_model_parameter_loads_a_model_file_relative_to_base_dir(tmp_path: Path):
    copy = tmp_path / "mine.safetensors"
    copy.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    restorer = BandwidthExtension.from_params({"cutoff": 11000, "model": "mine.safetensors"}, base_dir=tmp_path)
    assert restorer.params() == {"cutoff": 11000.0, "model": str(copy)}
    audio = pink_cut(11000, seconds=1.0)
    assert_close(restorer.process(audio, FS), BandwidthExtension(cutoff=11000).process(audio, FS), "same weights")


def cut_frames(count: int, seed: int) -> tuple[Layout, np.ndarray]:
    """(the Layout of an 11 kHz cutoff at 2048 bins, ``count`` spectra of white-noise frames at -40 dB with an
    empty stopband from the fade start up), as :func:`extend_frames` takes them."""
    layout = Layout(11000.0, FS, 2048)
    spectra = analysis_spectra(np.random.default_rng(seed).standard_normal((count, 2048)), 2048) * 1e-2
    spectra[:, layout.fade_bin:] = 0  # the stopband
    return layout, spectra


def test_holes_below_the_cutoff_are_not_copied_up_as_holes():
    """An MP3 zeroes whole scalefactor bands below its cutoff in many frames.  The fill copies that band's fine
    structure up, whitened; its holes are raised to TEXTURE_FLOOR of the local RMS instead of staying holes."""
    from pedalchain.effects.restorers.bandwidth import OUT_BANDS, TEXTURE_FLOOR, added_spectra, frame_features

    layout, spectra = cut_frames(40, seed=5)
    rng = np.random.default_rng(15)
    source = np.arange(layout.fade_bin - layout.patch, layout.fade_bin)
    holes = source[(source // 12) % 2 == 0]  # every other 12-bin band just below the cutoff: zeroed
    spectra[:, holes] = 1e-9 * rng.standard_normal((40, len(holes)))
    _, anchor = frame_features(np.abs(spectra) ** 2, layout)
    added = added_spectra(spectra, np.zeros((40, OUT_BANDS)), anchor, layout, 0.0)
    above = np.abs(added[:, layout.fade_bin + 40:layout.fade_bin + 200]) ** 2
    typical = np.median(above)
    assert np.mean(above < 1e-3 * typical) < 0.01  # no bin copied up from a hole stays a hole
    assert TEXTURE_FLOOR < 1.0  # the texture keeps its valleys, only holes are raised


def test_an_mp3_hole_in_the_anchor_band_is_bridged_but_a_note_end_is_not():
    """A low-bitrate MP3 empties the top scalefactor bands below its cutoff for a few frames while the bands under
    them play on: the fill keeps its level there.  When the whole spectrum stops, the fill stops with it."""
    from pedalchain.effects.restorers.bandwidth import HOLE_DECAY_BELS, frame_features, held_anchor

    layout, spectra = cut_frames(30, seed=6)
    anchor_bins = slice(layout.in_edges[-2], layout.fade_bin)
    spectra[10:13, anchor_bins] = 0  # the hole: 3 frames
    spectra[20:, :] = 0  # the note ends
    power = np.abs(spectra) ** 2
    features, anchor = frame_features(power, layout)
    held = held_anchor(features, anchor)
    assert anchor[10:13].max() < anchor[9] - 5  # the hole, as it was: 50 dB and more under
    assert np.all(held[10:13] >= anchor[9] - 3 * HOLE_DECAY_BELS - 0.2)
    assert np.all(held >= anchor)  # holding only ever raises the anchor
    assert held[20:].max() < anchor[19] - 5  # nothing held over silence


def test_a_sweep_that_ends_abruptly_in_the_top_band_is_not_blown_up():
    """A 20 Hz - 20 kHz sweep cut off at its loudest: its band limit is found near 19.8 kHz; while the sweep
    crosses the anchor band nothing plays under it, and the click at its end must not be taken for bands that
    play on under a held anchor (that gave a peak of 12 from a 0.3 sweep)."""
    t = np.arange(3 * FS) / FS
    sweep = (0.3 * np.sin(2 * np.pi * (20 * t + (20045 - 20) / 6 * t**2)))[None].astype(np.float32)
    restorer = BandwidthExtension()
    out = restorer.process(sweep, FS)
    assert restorer.active_cutoff is not None and restorer.active_cutoff > 19000
    assert np.abs(out - sweep).max() < 0.03


def test_the_fill_ducks_only_as_far_as_the_snr_goal_asks_and_its_lead_over_noise_allows():
    from pedalchain.models.restore.fit_bandwidth import choose_fill_duck

    def row(lsd: float, snr: float) -> dict[str, float]:
        return {"lsd_high": lsd, "lsd_high_noise_fill": 1.6, "snr_change_db": snr}

    # the unducked fill leads the noise fill by 0.2; a duck may spend half of that
    summary = {0.0: row(1.4, -1.4), 1.0: row(1.42, -0.9), 4.0: row(1.48, -0.6), 16.0: row(1.55, -0.2)}
    assert choose_fill_duck(summary) == 4.0  # 16 meets the SNR goal, but is hardly better than plain noise
    summary[1.0] = row(1.42, -0.3)
    assert choose_fill_duck(summary) == 1.0  # the smallest that meets the goal
    summary[0.0] = row(1.4, -0.2)
    assert choose_fill_duck(summary) == 0.0
    summary[0.0] = row(1.7, -1.4)  # no lead over the noise fill to spend: no ducking
    assert choose_fill_duck(summary) == 0.0


def test_the_fill_ducks_in_loud_frames_and_keeps_the_seam():
    """Frames whose anchor is louder than the input's mean get a fill brought down by 10 log10(1 + d x r) dB from
    1/4 octave up; the bins at the seam keep their level (no step), and quiet frames hardly change."""
    from pedalchain.effects.restorers.bandwidth import OUT_BANDS, added_spectra, frame_features

    layout, spectra = cut_frames(40, seed=8)
    spectra[:20] *= 10.0  # loud frames: 20 dB over the quiet ones
    _, anchor = frame_features(np.abs(spectra) ** 2, layout)
    mean = float(np.mean(10.0 ** anchor))
    predicted = np.zeros((40, OUT_BANDS))
    plain = np.abs(added_spectra(spectra, predicted, anchor, layout)) ** 2
    ducked = np.abs(added_spectra(spectra, predicted, anchor, layout, 4.0, mean)) ** 2
    high = layout.fade_bin + np.flatnonzero(layout.octaves >= 0.25)
    seam = layout.fade_bin + np.flatnonzero((layout.octaves >= 0) & (layout.octaves < 1 / 16))
    expected_db = 10 * np.log10(1 + 4.0 * 10.0 ** anchor / mean)
    loss_db = 10 * np.log10(plain[:, high].sum(axis=1) / ducked[:, high].sum(axis=1))
    np.testing.assert_allclose(loss_db, expected_db, atol=0.01)
    assert loss_db[:20].min() > 7.0 and loss_db[20:].max() < 1.0  # loud frames duck, quiet ones hardly
    np.testing.assert_allclose(ducked[:, seam], plain[:, seam], rtol=1e-9)


def test_after_the_analysis_the_restorer_ducks_the_fill_in_the_loud_passage():
    """The shipped model's duck, on a file whose first second is 20 dB louder than its second: against the same
    restorer streaming without an analysis (no reference, no ducking) the loud second gets several dB less fill,
    the quiet one nearly the same."""
    from pedalchain.effects.restorers.bandwidth import ARCHITECTURE, load_weights

    duck = load_weights(DEFAULT_WEIGHTS, ARCHITECTURE)[1]["fill_duck"]
    assert duck > 0
    audio = pink_cut(11000, seconds=2.0)
    audio[:, :FS] *= 10.0
    ducked = BandwidthExtension(cutoff=11000).process(audio, FS) - audio
    plain = stream(BandwidthExtension(cutoff=11000), audio, FS, 4096) - audio

    def high_db(signal: np.ndarray, part: slice) -> float:
        spectrum = np.abs(np.fft.rfft(signal[:, part], axis=1)) ** 2
        return 10 * np.log10(spectrum[:, np.fft.rfftfreq(signal[:, part].shape[1], 1 / FS) > 13000].sum())

    loud, quiet = slice(4096, FS - 4096), slice(FS + 4096, 2 * FS - 4096)
    expected = 10 * np.log10(1 + duck * 100 / 50.5)  # r = 100 / mean(100, 1) in the loud second
    assert high_db(plain, loud) - high_db(ducked, loud) > expected - 2
    assert abs(high_db(plain, quiet) - high_db(ducked, quiet)) < 1.0


def _pink(seconds: float, seed: int, rms: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / FS),
                                                                                     50.0) / 1000)
    audio = np.fft.irfft(spectrum, n=n, axis=1)
    return rms * audio / audio.std()


def _above(audio: np.ndarray, hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(audio, axis=1)
    spectrum[:, np.fft.rfftfreq(audio.shape[1], 1 / FS) < hz] = 0
    return np.fft.irfft(spectrum, n=audio.shape[1], axis=1)[:, 8192:-8192]


def test_a_lowpass_stopband_is_lifted_back_coherently():
    """What a lowpass leaves 50 dB down above its cutoff is the truth, attenuated: lifted, it comes back (a fill,
    uncorrelated with the truth, would leave an error as large as the highs themselves, or larger).  The lift
    aims LIFT_HEADROOM_DB (3 dB) under the predicted envelope: even a perfect prediction leaves -10 dB."""
    truth = _pink(3.0, 11, 0.1)
    spectrum = np.fft.rfft(truth, axis=1)
    spectrum[:, np.fft.rfftfreq(truth.shape[1], 1 / FS) >= 11000] *= 10 ** (-50 / 20)
    cut = np.fft.irfft(spectrum, n=truth.shape[1], axis=1).astype(np.float32)
    out = BandwidthExtension(cutoff=11000).process(cut, FS).astype(np.float64)
    highs = _above(truth, 13000)
    error_db = 10 * np.log10(np.sum((_above(out, 13000) - highs) ** 2) / np.sum(highs ** 2))
    assert error_db < -4.0, f"error above the cutoff {error_db:.1f} dB of the highs"


def test_a_decoders_residue_in_a_quiet_file_is_not_lifted_into_a_whistle():
    """An MP3 decoder leaves steady residues around -130 dB re full scale above its cutoff, whatever the level of
    the music: in a quiet file they lie within reach of the lift, and lifted they would whistle."""
    quiet = pink_cut(11000) * 0.01  # the music about -60 dBFS
    t = np.arange(quiet.shape[1]) / FS
    residue = 10 ** (-130 / 20) * np.sin(2 * np.pi * 18000.0 * t)
    out = BandwidthExtension(cutoff=11000).process((quiet + residue).astype(np.float32), FS)
    freqs, level = welch_db(out)
    at = np.argmin(np.abs(freqs - 18000.0))
    around = np.r_[level[at - 40:at - 5], level[at + 6:at + 41]]
    assert level[at] - np.median(around) < 6.0, f"18 kHz stands {level[at] - np.median(around):.1f} dB out"
