"""The stereo-linked compressor (effects/dynamics.py), the loudness step (effects/level.py) and the mastering
presets' dynamics: real pedalboard plugins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pedalboard
import pytest
import yaml
from helpers import RANDOM, stream
from pedalchain import ChainFileError, ParameterError, load_chain
from pedalchain.chains.loudness import LoudnessMeter
from pedalchain.chains.yaml_io import chain_from_yaml, save_chain
from pedalchain.effects.dynamics import LinkedCompressor
from pedalchain.effects.level import LoudnessTrim

SR = 44100
GLUE = "steps:\n  - plugin: Compressor\n    threshold_db: -18\n    ratio: 2\n    attack_ms: 30\n    release_ms: 250\n"


def hits(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Mono decaying noise bursts, four a second, peaking near full scale."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SR))
    for start in range(0, out.size - SR // 4, SR // 4):
        out[start:start + SR // 4] += rng.standard_normal(SR // 4) * np.exp(-np.arange(SR // 4) / 2000)
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def balance_db(audio: np.ndarray, window: int = SR // 10) -> np.ndarray:
    """Left over right level (dB) per window, where the right channel is not silent."""
    count = audio.shape[1] // window
    power = (audio[:, : count * window].astype(np.float64) ** 2).reshape(2, count, window).mean(axis=2)
    audible = power[1] > 1e-8
    return 10 * np.log10(power[0, audible] / power[1, audible])


def test_a_linked_compressor_keeps_the_stereo_image_where_the_plain_one_moves_it():
    """A source panned 8 dB left: compressed per channel, the left side is turned down on every hit and the
    image swings towards the centre (to 4.4 dB); linked, both sides get the same gain."""
    mono = hits()
    panned = np.stack([mono * 10 ** (-3 / 20), mono * 10 ** (-11 / 20)]).astype(np.float32)
    hard = GLUE.replace("-18", "-30").replace("ratio: 2", "ratio: 4")
    plain = chain_from_yaml(hard)(panned, SR)
    linked = chain_from_yaml(hard + "    stereo_link: true\n")(panned, SR)
    assert balance_db(plain).min() < 6.0
    np.testing.assert_allclose(balance_db(linked), 8.0, atol=1e-3)
    assert np.sum(linked.astype(np.float64) ** 2) < 0.5 * np.sum(panned.astype(np.float64) ** 2)  # it compresses


def test_on_mono_it_is_the_plain_compressor_and_it_streams_exactly():
    mono = hits(2.0, seed=1)
    linked = LinkedCompressor(pedalboard.Compressor(threshold_db=-18, ratio=4, attack_ms=5, release_ms=100))
    expected = pedalboard.Compressor(threshold_db=-18, ratio=4, attack_ms=5, release_ms=100)(mono, SR)
    np.testing.assert_array_equal(linked(mono, SR), expected)
    stereo = np.stack([mono, 0.5 * hits(2.0, seed=2)])
    one_shot = linked(stereo, SR)
    np.testing.assert_array_equal(stream(linked, stereo, SR, RANDOM, seed=3), one_shot)


def test_settings_read_and_set_through_it_and_it_saves_as_a_compressor(tmp_path: Path):
    chain = chain_from_yaml(GLUE.replace("Compressor\n", "Compressor\n    id: glue\n") + "    stereo_link: true\n")
    chain["glue"].threshold_db = -24
    assert chain["glue"].compressor.threshold_db == -24 and "threshold_db=-24" in repr(chain["glue"])
    save_chain(chain, tmp_path / "saved.yaml")
    step = yaml.safe_load((tmp_path / "saved.yaml").read_text())["steps"][0]
    assert step["plugin"] == "Compressor" and step["stereo_link"] is True and step["threshold_db"] == -24
    audio = np.stack([hits(1.0), hits(1.0, seed=4)])
    np.testing.assert_array_equal(load_chain(tmp_path / "saved.yaml")(audio, SR), chain(audio, SR))


@pytest.mark.parametrize("text, message", [
    ("  - plugin: Limiter\n    stereo_link: true\n", "only a Compressor takes it"),
    ("  - plugin: Compressor\n    stereo_link: yes please\n", "expects true or false"),
])
def test_stereo_link_is_checked(text: str, message: str):
    with pytest.raises(ParameterError, match=message):
        chain_from_yaml("steps:\n" + text)


@pytest.mark.parametrize("preset", ["remaster", "lofi"])
def test_a_full_scale_file_is_not_clipped_by_a_preset(preset: str):
    """remaster's last step was pedalboard's Limiter, which adds the threshold back as gain and clips at 0 dBFS
    (hundreds of samples at 1.0 on sonic-pi loops, before the loudness pass turned them down); lofi's drive and
    room took full-scale input over 0 dBFS."""
    noise = 0.05 * np.random.default_rng(5).standard_normal((2, 3 * SR))
    loud = np.clip(np.stack([hits(3.0, seed=6), hits(3.0, seed=7)]) * 1.1 + noise, -1, 1).astype(np.float32)
    chain = load_chain(preset)
    chain.loudness_lufs = None  # what the chain itself does, before any loudness pass
    out = chain(loud, SR)
    assert np.abs(out).max() <= 10 ** (-1 / 20) + 1e-4


def test_lofi_blend_has_no_notch_at_its_filter_cutoff():
    """The 4-pole ladder is at -180 degrees at its cutoff: blended 60 % wet with the dry signal it cut 4.2 kHz by
    14.6 dB, against 8 dB above the cutoff."""
    import scipy.signal

    noise = (0.05 * np.random.default_rng(8).standard_normal((1, 10 * SR))).astype(np.float32)
    chain = load_chain("lofi")
    blend = chain[0]  # the crushed and filtered part, 60 % wet
    step = chain.step(0)
    out = pedalboard.Pedalboard(list(blend))(noise, SR) * step.wet + noise * (1 - step.wet)
    freqs, before = scipy.signal.welch(noise[0], SR, nperseg=4096)
    _, after = scipy.signal.welch(out[0], SR, nperseg=4096)
    response = 10 * np.log10(after / before)
    around_cutoff = response[(freqs > 3000) & (freqs < 5500)].min()
    above = np.median(response[(freqs > 10000) & (freqs < 15000)])
    assert around_cutoff > above - 1.0, (around_cutoff, above)


def test_remaster_compresses_a_quiet_recording_as_it_does_a_loud_master():
    """The glue compressor's threshold is in dBFS: before the `- loudness: -20` step, a master 12 dB louder came
    out of the chain 8-10 dB louder (compressed hard), a quiet recording uncompressed.  Now what reaches the
    compressor is at -20 LUFS either way."""
    loud = np.stack([hits(4.0, seed=1), hits(4.0, seed=2)])
    chain = load_chain("remaster")
    chain.loudness_lufs = None
    outputs = []
    for trim_db in (0.0, -12.0, -24.0):
        notes = chain.analyze_input(loud * np.float32(10 ** (trim_db / 20)), SR)
        assert any(note.startswith("loudness: ") and "towards -20 LUFS" in note for note in notes), notes
        outputs.append(chain(loud * np.float32(10 ** (trim_db / 20)), SR))
    for quieter in outputs[1:]:
        np.testing.assert_allclose(quieter, outputs[0], atol=2e-5)


@pytest.mark.parametrize("text, error, message", [
    ("  - loudness: loud\n", ParameterError, "expects integrated LUFS such as -14, got 'loud'"),
    ("  - loudness: 3\n", ParameterError, r"3 LUFS is out of range \[-70, 0\] LUFS"),
    ("  - loudness: true\n", ParameterError, "expects integrated LUFS such as -14, got True"),
    ("  - loudness: -20\n    gain_db: 2\n", ChainFileError, "loudness: takes no parameters, got gain_db"),
])
def test_a_loudness_step_is_checked(text: str, error: type, message: str):
    with pytest.raises(error, match=message):
        chain_from_yaml("steps:\n" + text)


def test_a_loudness_step_round_trips_and_trims_once_analysed(tmp_path: Path):
    chain = chain_from_yaml("steps:\n  - loudness: -23 LUFS\n")
    save_chain(chain, tmp_path / "trim.yaml")
    assert yaml.safe_load((tmp_path / "trim.yaml").read_text())["steps"] == [{"loudness": -23}]
    trim = load_chain(tmp_path / "trim.yaml")[0]
    assert isinstance(trim, LoudnessTrim) and trim.target_lufs == -23
    audio = np.stack([hits(2.0, seed=3), hits(2.0, seed=4)]) * np.float32(0.1)
    assert np.array_equal(stream(trim, audio, SR, 512), audio)  # streamed from the start: nothing measured
    out = trim(audio, SR)  # one shot: measured first
    meter = LoudnessMeter(SR, 2, true_peak=False)
    meter.add(out)
    assert meter.integrated_lufs() == pytest.approx(-23, abs=0.01)
    assert np.array_equal(stream(trim, audio, SR, 1000), out)  # the measured gain stays for streaming


def test_a_loudness_step_leaves_silence_and_raises_a_whisper_at_most_30_db():
    trim = LoudnessTrim(-20)
    silence = np.zeros((2, SR), np.float32)
    assert "silent" in trim.analyze_input(silence, SR)[0] and np.array_equal(trim(silence, SR), silence)
    whisper = np.stack([hits(2.0, seed=5), hits(2.0, seed=6)]) * np.float32(10 ** (-55 / 20))
    assert "(at most 30 dB)" in trim.analyze_input(whisper, SR)[0]
    assert trim.gain_db == 30.0


def test_a_loudness_step_leaves_out_the_silence_in_front():
    """In a chain the step is shown its input after the steps before it, their latency as zeros in front: those
    shifted the 400 ms gating grid (a 1 s clip read 0.3 LU loud) and took a 0.3 s clip past the 0.4 s minimum."""
    audio = np.stack([hits(1.0, seed=8), hits(1.0, seed=9)]) * np.float32(0.3)
    trim = LoudnessTrim(-20)
    trim.analyze_input(audio, SR)
    alone = trim.gain_db
    delayed = np.concatenate([np.zeros((2, 16408), np.float32), audio], axis=1)
    trim.analyze_input(delayed, SR)
    assert trim.gain_db == pytest.approx(alone, abs=1e-9)
    short = np.concatenate([np.zeros((2, 16408), np.float32), audio[:, : int(0.3 * SR)]], axis=1)
    assert "under 0.4 s" in trim.analyze_input(short, SR)[0] and trim.gain_db == 0.0
