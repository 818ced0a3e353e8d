"""``restorer: auto``: routing by detection, bit-exact passthrough of clean input, fixed latency, chunk invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from pedalchain.chains.runner import RunOptions, process_file
from pedalchain.chains.yaml_io import chain_from_yaml, chain_to_data
from pedalchain.effects.restorers.auto import AutoRestore

SR = 44100


def full_band_music(seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Stereo notes with bright harmonics up to Nyquist, plucked envelopes and a little air noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros((2, n))
    for start in np.arange(0, seconds, 0.25):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        onset = int(start * SR)
        env = np.exp(-3 * np.maximum(t - start, 0)) * (t >= start)
        harmonics = np.arange(1, int(SR / 2 / f0))
        tone = (np.sin(2 * np.pi * f0 * np.outer(harmonics, t[onset:] - start) + rng.uniform(0, 6, (len(harmonics), 1)))
                / harmonics[:, None] ** 0.8).sum(axis=0)
        out[rng.integers(0, 2), onset:] += 0.15 * env[onset:] * tone
    out += 1e-3 * rng.standard_normal(out.shape)  # a little air: about -70 dBFS, a clean recording's floor
    out *= 0.5 / np.abs(out).max()
    return out.astype(np.float32)


def auto_chain():
    return chain_from_yaml("steps:\n  - restorer: auto\n")


def write(path: Path, audio: np.ndarray, subtype: str = "FLOAT") -> Path:
    sf.write(path, audio.T, SR, subtype=subtype)
    return path


def render(tmp_path: Path, source: Path, name: str = "out.wav", block: int = 8192):
    out = tmp_path / name
    summary = process_file(auto_chain(), source, out, RunOptions(block=block))
    return sf.read(out, dtype="float32", always_2d=True)[0].T, summary


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_clean_input_passes_through_bit_for_bit(tmp_path, subtype):
    source = write(tmp_path / "clean.wav", full_band_music(), subtype)
    out = tmp_path / "out.wav"
    summary = process_file(auto_chain(), source, out)
    assert summary.analysis == ["auto: nothing to restore, passed through unchanged"]
    dtype = "float32" if subtype == "FLOAT" else "int32"
    assert np.array_equal(sf.read(out, dtype=dtype)[0], sf.read(source, dtype=dtype)[0])


@pytest.mark.parametrize(("hz", "subtype"), [(220, "PCM_16"), (220, "FLOAT"), (1000, "FLOAT")])
def test_a_steady_test_tone_passes_through_bit_for_bit(tmp_path, hz, subtype):
    # 220 Hz repeats every 2205 samples at 44.1 kHz, and so does its rounding error: lines on the 20 Hz grid,
    # steady and 10 dB over their surroundings like mains hum, at -121 dBFS (int16) or -191 dBFS (float32);
    # 1 kHz repeats every 441 samples: rounding lines on the 100 Hz grid, and the tone is the 20th harmonic of 50
    t = np.arange(3 * SR) / SR
    source = write(tmp_path / "tone.wav", (0.2 * np.sin(2 * np.pi * hz * t))[None].astype(np.float32), subtype)
    out = tmp_path / "out.wav"
    summary = process_file(auto_chain(), source, out)
    assert not any("hum" in line for line in summary.analysis), summary.analysis
    dtype = "float32" if subtype == "FLOAT" else "int32"
    assert np.array_equal(sf.read(out, dtype=dtype)[0], sf.read(source, dtype=dtype)[0])


def test_a_dc_offset_is_mentioned_and_left_alone():
    music = full_band_music(2.0)
    auto = AutoRestore()
    notes = auto.analyze_input(music + np.float32(0.1), SR)
    assert any("DC offset +0.100: left alone" in note for note in notes), notes
    assert np.array_equal(auto(music + np.float32(0.1), SR), music + np.float32(0.1))
    assert not any("DC offset" in note for note in AutoRestore().analyze_input(music, SR))


def test_a_steady_square_wave_on_the_hum_grid_is_programme_not_hum(tmp_path):
    # 100 Hz: its harmonics (100, 300, 500, ...) are steady multiples of 50 Hz, so it passes every hum test;
    # holding nearly all of the power, it is taken for the programme, not a fault under it
    t = np.arange(3 * SR) / SR
    square = (0.3 * np.sign(np.sin(2 * np.pi * 100 * t)))[None].astype(np.float32)
    source = write(tmp_path / "square.wav", square, "PCM_16")
    out = tmp_path / "out.wav"
    summary = process_file(auto_chain(), source, out)
    assert any("mains hum at 50 Hz" in note and "left alone" in note for note in summary.analysis), summary.analysis
    assert np.array_equal(sf.read(out, dtype="int32")[0], sf.read(source, dtype="int32")[0])


def doubled(audio: np.ndarray, parity: int = 0) -> np.ndarray:
    damaged = audio.copy()
    repeated = damaged[:, 1 + parity :: 2].shape[1]
    damaged[:, 1 + parity :: 2] = damaged[:, parity : damaged.shape[1] - 1 : 2][:, :repeated]
    return damaged


def held(audio: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(audio[:, ::factor], factor, axis=1)[:, : audio.shape[1]]


def lowpassed(audio: np.ndarray, cutoff_hz: float) -> np.ndarray:
    sos = scipy.signal.ellip(10, 0.1, 90, cutoff_hz, fs=SR, output="sos")
    return scipy.signal.sosfiltfilt(sos, audio, axis=1).astype(np.float32)


def clipped(audio: np.ndarray, over_db: float) -> np.ndarray:
    threshold = np.abs(audio).max() * 10 ** (-over_db / 20)
    return np.clip(audio, -threshold, threshold)


def with_hum(audio: np.ndarray, base: float = 50.0, below_db: float = 15.0) -> np.ndarray:
    """``audio`` plus steady mains hum (4 harmonics of ``base`` Hz, 1/k amplitudes) ``below_db`` under it."""
    t = np.arange(audio.shape[1]) / SR
    hum = sum(np.sin(2 * np.pi * k * base * t + k) / k for k in range(1, 5)) * np.ones((audio.shape[0], 1))
    hum *= np.sqrt(np.mean(audio.astype(np.float64) ** 2) / np.mean(hum ** 2) / 10 ** (below_db / 10))
    return (audio + hum).astype(np.float32)


def hum_power_db(audio: np.ndarray, base: float = 50.0) -> float:
    """Power at the first two hum harmonics (Hann-windowed projections over the whole signal), dB."""
    t = np.arange(audio.shape[1]) / SR
    window = np.hanning(audio.shape[1])
    return float(10 * np.log10(sum(np.sum(np.abs((audio * window) @ np.exp(-2j * np.pi * k * base * t)) ** 2)
                                   for k in (1, 2))))


DAMAGES = {
    "doubled-samples": lambda audio: doubled(audio, 1),
    "dequantize": lambda audio: held(audio, 3),
    "bandwidth": lambda audio: lowpassed(audio, 11000),
    "declip": lambda audio: clipped(audio, 6),
    "denoise": with_hum,
}


ROUTES = {name: [name] for name in DAMAGES} | {"dequantize": ["dequantize", "bandwidth"]}
"""What auto runs for each damage: a hold by 3 keeps the band up to fs / 6 = 7.35 kHz, extended above."""


@pytest.mark.parametrize("restorer", list(DAMAGES))
def test_damage_is_routed_to_its_restorer(tmp_path, restorer):
    source = write(tmp_path / "damaged.wav", DAMAGES[restorer](full_band_music()))
    auto = AutoRestore()
    notes = auto.analyze_input(source, SR)
    assert auto.active == ROUTES[restorer], notes
    assert any(word in " ".join(notes) for word in ("repaired", "extended", "declipped", "subtracted")), notes


@pytest.mark.parametrize("factor, extended", [(3, True), (4, True), (6, False)])
def test_a_hold_repair_gets_its_top_band_back_where_the_model_reaches(factor, extended):
    """The held samples carry nothing above fs / 2N: the bandwidth model fills it from 4 kHz up (holds by 3 and 4
    at 44.1 kHz), a hold by 6 keeps its 3.7 kHz band alone."""
    clean = full_band_music(3.0)
    damaged = held(clean, factor)
    auto = AutoRestore()
    out = auto.process(damaged, SR)
    top = SR / (2 * factor)
    assert auto.active == (["dequantize", "bandwidth"] if extended else ["dequantize"])
    spectrum = np.abs(np.fft.rfft(out, axis=1)) ** 2
    freqs = np.fft.rfftfreq(out.shape[1], 1 / SR)
    above = spectrum[:, (freqs > top + 500) & (freqs < 2 * top)].sum() / spectrum.sum()
    truth = np.abs(np.fft.rfft(clean, axis=1)) ** 2
    truth_above = truth[:, (freqs > top + 500) & (freqs < 2 * top)].sum() / truth.sum()
    if extended:
        assert 10 * np.log10(above / truth_above) > -10, (above, truth_above)  # within 10 dB of the truth's level
    else:
        assert 10 * np.log10(above / truth_above) < -15  # only what the sinc leaves of the images: nothing added


@pytest.mark.parametrize("rate", [96000, 24000])
def test_doubled_samples_where_the_doubling_model_does_not_run_are_repaired_as_a_hold_by_2(rate):
    # the doubled-samples model is trained at 44.1 kHz (it runs at 32-50 kHz); at 96 kHz (a 48 kHz interface
    # doubling its samples) the repair by interpolation loses only the band above 24 kHz
    clean = scipy.signal.resample_poly(full_band_music(3.0), rate // 100, SR // 100, axis=1).astype(np.float32)
    damaged = doubled(clean)
    auto = AutoRestore()
    notes = auto.analyze_input(damaged, rate)
    assert auto.active[0] == "dequantize", notes
    assert "repaired as a hold by 2 (the doubled-samples model runs at 32-50 kHz)" in notes[0]
    out = auto.process(damaged, rate)
    snr_before, snr_after = (10 * np.log10(np.sum(clean ** 2) / np.sum((clean - x) ** 2)) for x in (damaged, out))
    assert snr_after > snr_before + (20 if rate == 96000 else 1.5), (snr_before, snr_after)


def test_one_instance_serves_any_rate_in_turn():
    """A restorer refusing the new rate was built for the last one: it must not be reused (one instance, as in a
    chain applied to files at several rates, said at 16 kHz that doubled-samples runs at 32-50 kHz)."""
    auto = AutoRestore()
    clean = full_band_music(2.0)
    assert np.array_equal(auto(clean, SR), clean)
    rate = 96000
    fast = scipy.signal.resample_poly(clean, rate // 100, SR // 100, axis=1).astype(np.float32)
    out = auto(doubled(fast), rate)
    assert auto.active[0] == "dequantize"
    assert np.sum((out - fast) ** 2) < 0.01 * np.sum((doubled(fast) - fast) ** 2)  # 20 dB better
    slow = scipy.signal.resample_poly(clean, 160, 441, axis=1).astype(np.float32)
    assert np.array_equal(auto(slow, 16000), slow) and auto.active == []
    assert np.array_equal(auto(clean, SR), clean)


def test_latency_does_not_depend_on_what_is_detected(tmp_path):
    clean = full_band_music(3.0)
    latencies = set()
    for name, audio in [("clean", clean), *((key, damage(clean)) for key, damage in DAMAGES.items())]:
        auto = AutoRestore()
        auto.analyze_input(write(tmp_path / f"{name}.wav", audio), SR)
        latencies.add(auto.latency_at(SR, 2))
    assert len(latencies) == 1


@pytest.mark.parametrize("restorer", ["doubled-samples", "bandwidth", "denoise"])
def test_damaged_file_renders_the_same_in_any_block_size(tmp_path, restorer):
    source = write(tmp_path / "damaged.wav", DAMAGES[restorer](full_band_music(4.0)))
    first, summary = render(tmp_path, source, "a.wav", block=8192)
    second, _ = render(tmp_path, source, "b.wav", block=997)
    finding = {"doubled-samples": "doubled samples", "bandwidth": "band limit", "denoise": "mains hum"}[restorer]
    assert finding in " ".join(summary.analysis), summary.analysis
    assert first.shape == second.shape
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, sf.read(source, dtype="float32")[0].T)  # it did restore something


def test_one_shot_buffer_is_analysed_too():
    audio = DAMAGES["doubled-samples"](full_band_music(3.0))
    chain = auto_chain()
    out = chain(audio, SR)
    assert out.shape == audio.shape
    assert chain[0].active == ["doubled-samples"]
    clean = full_band_music(3.0, seed=1)
    assert np.array_equal(chain(clean, SR), clean)
    assert chain[0].active == []


def test_yaml_round_trip(tmp_path):
    chain = auto_chain()
    assert chain_to_data(chain, tmp_path)["steps"] == [{"restorer": "auto"}]


def test_auto_takes_no_parameters():
    from pedalchain.errors import ParameterError

    with pytest.raises(ParameterError, match="auto"):
        chain_from_yaml("steps:\n  - restorer: auto\n    amount_db: 3\n")


def test_stationary_noise_is_reported_not_removed(tmp_path):
    # Noise and sustained music look alike to the noise analysis, so auto leaves it to `restorer: denoise`.
    audio = full_band_music(4.0)
    noisy = audio + np.random.default_rng(5).standard_normal(audio.shape).astype(np.float32) * 0.03
    auto = AutoRestore()
    notes = auto.analyze_input(write(tmp_path / "noisy.wav", noisy), SR)
    assert auto.active == []
    assert any("restorer: denoise" in note for note in notes), notes


@pytest.mark.parametrize("clip_db", [None, 6.0])
def test_mains_hum_is_subtracted_alone(tmp_path, clip_db):
    """Hum is routed to ``denoise`` with ``hum_only`` (no gain), after a declip when the file is clipped too:
    the hum is then subtracted from the declipper's delayed output at the input's own sample positions."""
    clean = full_band_music(4.0)
    damaged = with_hum(clean)
    if clip_db is not None:
        damaged = clipped(damaged, clip_db)
    out, summary = render(tmp_path, write(tmp_path / "hum.wav", damaged))
    assert any("mains hum at 50 Hz" in note and "subtracted" in note for note in summary.analysis), summary.analysis
    removed = hum_power_db(damaged) - hum_power_db(out)
    assert removed > 20, f"only {removed:.1f} dB of the hum removed"
    if clip_db is None:  # nothing but the hum is touched: the rest of the band passes as it was
        residual = (out - damaged).astype(np.float64) + (damaged - clean)
        assert 10 * np.log10(np.mean(residual ** 2) / np.mean(clean.astype(np.float64) ** 2)) < -30


def test_hum_under_hiss_is_subtracted_and_the_hiss_reported(tmp_path):
    clean = full_band_music(4.0)
    noisy = with_hum(clean) + np.random.default_rng(6).standard_normal(clean.shape).astype(np.float32) * 0.03
    auto = AutoRestore()
    notes = auto.analyze_input(write(tmp_path / "noisy.wav", noisy), SR)
    assert auto.active == ["denoise"], notes
    assert any("mains hum" in note for note in notes) and any("restorer: denoise" in note for note in notes), notes
    out = auto.process(noisy, SR)
    high = np.fft.rfftfreq(noisy.shape[1], 1 / SR) > 2000  # hiss: no gain applied, it passes as it was
    power = [float(np.sum(np.abs(np.fft.rfft(x, axis=1)[:, high]) ** 2)) for x in (noisy, out)]
    assert abs(10 * np.log10(power[1] / power[0])) < 0.1


def test_remaster_preset_renders_mp3_and_wav(tmp_path, capsys):
    from pedalchain.cli import main

    audio = full_band_music(4.0)
    mp3 = tmp_path / "song.mp3"
    sf.write(mp3, audio.T, SR, format="MP3")
    wav = write(tmp_path / "song.wav", audio, "PCM_16")
    for source in (mp3, wav):
        out = tmp_path / f"{source.stem}-{source.suffix[1:]}.wav"
        assert main(["apply", "remaster", str(source), "-o", str(out)]) == 0
        data, rate = sf.read(out, dtype="float32")
        assert rate == SR and data.shape[1] == 2 and np.abs(data).max() > 0.1
    assert "auto:" in capsys.readouterr().out


def test_remaster_preset_renders_16_khz_audio_without_its_air_shelf(tmp_path, capsys):
    from pedalchain.cli import main

    rate = 16000
    source = tmp_path / "speech.wav"
    sf.write(source, scipy.signal.resample_poly(full_band_music(3.0), 160, 441, axis=1).T, rate, subtype="PCM_16")
    out = tmp_path / "out.wav"
    assert main(["apply", "remaster", str(source), "-o", str(out)]) == 0
    data, written_rate = sf.read(out, dtype="float32")
    assert written_rate == rate and data.shape == (3 * rate, 2) and np.abs(data).max() > 0.1
    assert "HighShelfFilter (remaster.yaml:15): not run at 16000 Hz (min_rate 22050 Hz)" in capsys.readouterr().out


def test_below_the_denoise_rates_the_summary_says_hum_and_noise_were_not_searched(tmp_path):
    rate = 16000
    audio = scipy.signal.resample_poly(full_band_music(3.0), 160, 441, axis=1).astype(np.float32)
    source = tmp_path / "low_rate.wav"
    sf.write(source, audio.T, rate, subtype="FLOAT")
    out = tmp_path / "out.wav"
    summary = process_file(auto_chain(), source, out)
    assert summary.analysis == ["auto: mains hum and stationary noise: not searched at 16000 Hz (denoise runs at "
                                "22.05-96 kHz)"]
    assert np.array_equal(sf.read(out, dtype="float32")[0], sf.read(source, dtype="float32")[0])


def test_a_finding_whose_restorer_refuses_the_rate_is_reported_as_left_alone(tmp_path):
    # 22.05 kHz audio cut at 8.5 kHz: detection finds the band limit, but bandwidth runs at 32-96 kHz; the summary
    # used to say "extended" and then "bandwidth: not available", and nothing was extended
    rate = 22050
    sos = scipy.signal.ellip(10, 0.1, 90, 8500, fs=rate, output="sos")
    audio = scipy.signal.sosfiltfilt(sos, scipy.signal.resample_poly(full_band_music(4.0), 1, 2, axis=1), axis=1)
    source = tmp_path / "narrow.wav"
    sf.write(source, audio.T.astype(np.float32), rate, subtype="FLOAT")
    out = tmp_path / "out.wav"
    summary = process_file(auto_chain(), source, out)
    band = [note for note in summary.analysis if "band limit" in note]
    assert band and band[0].endswith(": left alone (bandwidth runs at 32-96 kHz)"), summary.analysis
    assert not any("extended" in note or "not available" in note for note in summary.analysis)
    assert np.array_equal(sf.read(out, dtype="float32")[0], sf.read(source, dtype="float32")[0])


@pytest.mark.parametrize("name", ["bandwidth", "declip", "denoise", "dequantize", "doubled-samples"])
def test_a_restorer_model_is_checked_alike_from_python_and_from_yaml(tmp_path, name):
    from pedalchain.effects.restorers import restorer_class
    from pedalchain.errors import ModelFileError, ParameterError

    cls = restorer_class(name)
    with pytest.raises(ParameterError, match=rf"^restorer: {name}\.model: model: no such model file "):
        cls(model=tmp_path / "gone.safetensors")
    with pytest.raises(ParameterError, match=r"^steps\.yaml:3: model: no such model file "):
        cls.from_params({"model": "gone.safetensors"}, "steps.yaml:3", base_dir=tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.safetensors: not a safetensors model file"):
        cls(model=tmp_path / "junk.safetensors")


@pytest.mark.parametrize("name, damage", [
    (name, damage) for name in ("bandwidth", "declip", "denoise", "dequantize", "doubled-samples")
    for damage in ("missing", "nan", "shape")
    # declip's and dequantize's tables are read by position: only dense layers have shapes to check each other by
    if damage != "shape" or name not in ("declip", "dequantize")
])
def test_a_damaged_model_file_is_refused_when_the_chain_loads(tmp_path, name, damage):
    """A model file of the right architecture whose tensors were damaged since training loaded, passed `chain
    check`, then failed mid-render with a KeyError or a broadcasting error (or filled the output with NaN)."""
    from pedalchain.errors import ModelFileError
    from pedalchain.models.model_file import read_header, shipped_restorer_models
    from safetensors.numpy import load_file, save_file

    shipped = shipped_restorer_models()[name]
    arrays = load_file(str(shipped))
    victim = sorted(arrays)[0]  # b0 for the dense networks, a table of their own for declip and dequantize
    if damage == "missing":
        del arrays[victim]
    elif damage == "nan":
        arrays[victim] = np.full_like(arrays[victim], np.nan)
    else:
        arrays[victim] = arrays[victim][..., :-1].copy()
    save_file(arrays, str(tmp_path / "damaged.safetensors"), metadata=read_header(shipped)[1])
    yaml_path = tmp_path / "steps.yaml"
    yaml_path.write_text(f"steps:\n  - restorer: {name}\n    model: damaged.safetensors\n")
    with pytest.raises(ModelFileError, match="damaged.safetensors: (missing tensor|tensors .* hold NaN|dense layer)"):
        chain_from_yaml(yaml_path.read_text(), source=yaml_path)


@pytest.mark.parametrize("name, setting", [("bandwidth", "cutoff"), ("declip", "threshold"), ("denoise", "amount_db"),
                                           ("dequantize", "hold"), ("doubled-samples", "mode")])
def test_a_misspelt_setting_is_refused_as_pedalboard_refuses_one(name, setting):
    from pedalchain.effects.restorers import restorer_class

    restorer = restorer_class(name)()
    value = getattr(restorer, setting)
    setattr(restorer, setting, value)  # a real one is set (checked as in YAML)
    typo = setting[:-1] + setting[-1] * 2
    with pytest.raises(AttributeError, match=rf"has no setting '{typo}'; did you mean '{setting}'\?"):
        setattr(restorer, typo, value)
    assert not hasattr(restorer, typo)


def test_a_short_input_is_not_said_to_be_free_of_hum():
    """Under 1.5 s the hum search does not run: "nothing to restore" claimed a search that never happened."""
    t = np.arange(int(0.3 * 44100)) / 44100
    tone = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    assert AutoRestore().analyze_input(np.stack([tone, tone]), 44100) == [
        "auto: mains hum: not searched in under 1.5 s of audio"]
