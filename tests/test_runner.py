"""The file runner through its Python API: loudness normalisation, non-streamable steps, progress."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pedalboard
import pyloudnorm
import pytest
import soundfile as sf
from pedalchain import Chain, Processor, StreamingError
from pedalchain.chains.loudness import LoudnessMeter
from pedalchain.chains.runner import TRUE_PEAK_TOLERANCE_DB, RunOptions, process_file

SR = 44100


def music_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo tones with a quiet middle section, so loudness gating matters."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = np.where((t > seconds / 3) & (t < 2 * seconds / 3), 0.05, 0.5)
    left = envelope * (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size))
    right = envelope * (np.sin(2 * np.pi * 330 * t) + 0.3 * rng.standard_normal(t.size))
    return (0.5 * np.stack([left, right])).astype(np.float32)


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, music_like(8.0).T, SR, subtype="FLOAT")
    return path


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_loudness_target_is_met_and_true_peak_stays_under_ceiling(tmp_path, song, target):
    chain = Chain([pedalboard.Compressor(-20, 2)], loudness_lufs=target)
    out = tmp_path / "out.wav"
    summary = process_file(chain, song, out, RunOptions())
    data, rate = sf.read(out, dtype="float32")
    reference = pyloudnorm.Meter(rate).integrated_loudness(data.astype(np.float64))
    meter = LoudnessMeter(rate, 2)
    meter.add(np.ascontiguousarray(data.T))
    if meter.true_peak_dbtp() < -1.05:  # the ceiling did not limit the gain: the target must be met
        assert reference == pytest.approx(target, abs=0.1)
    assert meter.true_peak_dbtp() <= -1.0 + TRUE_PEAK_TOLERANCE_DB
    assert summary.lufs == pytest.approx(reference, abs=0.1)
    assert summary.lufs_before_normalization is not None and summary.normalization_gain_db is not None
    assert not list(tmp_path.glob(".*"))  # no scratch or partial files left


def test_a_limited_file_still_lands_on_the_target(tmp_path):
    # music with sharp peaks: -8 LUFS needs far more gain than the -1 dBTP ceiling allows, the true-peak
    # limiter takes loudness away with the peaks, and the gain is raised by what it took
    audio = music_like(8.0)
    audio[:, :: SR] = 0.95
    song = tmp_path / "peaky.wav"
    sf.write(song, audio.T, SR, subtype="FLOAT")
    out = tmp_path / "out.wav"
    summary = process_file(Chain([pedalboard.Gain(0)], loudness_lufs=-8.0), song, out, RunOptions())
    data, rate = sf.read(out, dtype="float32")
    meter = LoudnessMeter(rate, 2)
    meter.add(np.ascontiguousarray(data.T))
    assert summary.true_peak_limited
    assert pyloudnorm.Meter(rate).integrated_loudness(data.astype(np.float64)) == pytest.approx(-8.0, abs=0.1)
    assert meter.true_peak_dbtp() <= -1.0 + TRUE_PEAK_TOLERANCE_DB
    assert summary.normalization_gain_db > -8.0 - summary.lufs_before_normalization  # more than the plain gain


def test_true_peak_ceiling_limits_the_gain(tmp_path):
    # A sparse, very peaky signal: reaching -5 LUFS would need far more headroom than it has.
    clicks = np.zeros((2, SR * 4), np.float32)
    clicks[:, :: SR // 4] = 0.9
    source = tmp_path / "clicks.wav"
    sf.write(source, clicks.T, SR, subtype="FLOAT")
    summary = process_file(Chain([pedalboard.Gain(0)], loudness_lufs=-5.0), source, tmp_path / "o.wav")
    data, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    meter = LoudnessMeter(SR, 2)
    meter.add(np.ascontiguousarray(data.T))
    assert meter.true_peak_dbtp() <= -1.0 + TRUE_PEAK_TOLERANCE_DB
    assert summary.lufs < -5.5


def test_drum_hits_the_limiter_lets_through_are_held_under_the_ceiling_and_a_shortfall_is_told(tmp_path):
    """Noise bursts 4000 samples long, decaying in 300: pedalboard's true-peak limiter at -1 dB let the output
    reach -0.88 dBTP (BS.1770) while the summary said "true-peak limited"; and -9 LUFS was out of reach."""
    rng = np.random.default_rng(3)
    bursts = np.zeros(10 * SR)
    for start in range(0, bursts.size - 4000, SR // 4):
        bursts[start:start + 4000] += rng.standard_normal(4000) * np.exp(-np.arange(4000) / 300)
    source = tmp_path / "bursts.wav"
    sf.write(source, np.stack([bursts, bursts]).T * 0.9 / np.abs(bursts).max(), SR, subtype="PCM_24")
    summary = process_file(Chain([pedalboard.Gain(0)], loudness_lufs=-9.0), source, tmp_path / "o.wav")
    data, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    meter = LoudnessMeter(SR, 2)
    meter.add(np.ascontiguousarray(data.T))
    assert summary.true_peak_limited and meter.true_peak_dbtp() <= -1.0 + TRUE_PEAK_TOLERANCE_DB
    assert summary.lufs < -10 and any("LU under the target" in warning for warning in summary.warnings)


def test_pitch_shift_is_processed_whole_and_matches_one_shot(tmp_path, song):
    chain = Chain([pedalboard.PitchShift(semitones=3)])
    out = tmp_path / "out.wav"
    process_file(chain, song, out, RunOptions(block=1000))
    data, _ = sf.read(out, dtype="float32")
    source, _ = sf.read(song, dtype="float32")
    expected = pedalboard.Pedalboard([pedalboard.PitchShift(semitones=3)])(source.T, SR)
    np.testing.assert_allclose(data.T, expected, atol=1e-6)


def test_non_streamable_chain_refuses_files_over_the_limit(tmp_path, song):
    chain = Chain([pedalboard.GSMFullRateCompressor()])
    with pytest.raises(StreamingError, match="GSMFullRateCompressor.*whole"):
        process_file(chain, song, tmp_path / "out.wav", RunOptions(whole_file_limit_s=5.0))
    assert not (tmp_path / "out.wav").exists()


class _Unstable(Processor):
    """A real (if badly behaved) processor: its output turns to NaN after one second."""

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self._seen = 0
        return 0

    def _reset_state(self) -> None:
        self._seen = 0

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        out = audio.copy()
        position = self._seen + np.arange(audio.shape[1])
        out[:, position > sample_rate] = np.nan
        self._seen += audio.shape[1]
        return out


def test_chain_producing_nan_fails_cleanly(tmp_path, song):
    with pytest.raises(StreamingError, match="NaN/Inf"):
        process_file(Chain([_Unstable()]), song, tmp_path / "out.wav")
    assert list(tmp_path.iterdir()) == [song]


def test_progress_reports_audio_seconds(tmp_path, song):
    seen: list[float] = []
    process_file(Chain([pedalboard.Gain(-1)]), song, tmp_path / "o.wav", RunOptions(block=SR), progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(8.0) and len(seen) == 8


def test_summary_reports_peak_and_json_friendly_fields(tmp_path, song):
    summary = process_file(Chain([pedalboard.Gain(-6)]), song, tmp_path / "o.flac")
    source, _ = sf.read(song, dtype="float32")
    expected_peak = 20 * np.log10(np.abs(source).max() * 10 ** (-6 / 20))
    assert summary.peak_dbfs == pytest.approx(expected_peak, abs=0.01)
    assert summary.subtype == "PCM_24" and summary.format == "FLAC"
    assert all(isinstance(v, (str, int, float, list, type(None))) for v in summary.as_dict().values())


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_samples_on_the_output_grid_are_written_exactly(tmp_path, subtype):
    # Integer input through a chain that leaves it unchanged must come out bit for bit: dither only
    # where rounding happens (here nowhere), digital silence stays silent.
    rng = np.random.default_rng(3)
    bits = 16 if subtype == "PCM_16" else 24
    ints = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(SR * 2, 2))
    ints[SR // 2 : SR] = 0
    source = tmp_path / "in.wav"
    sf.write(source, ints.astype(np.int32) << (32 - bits), SR, subtype=subtype)
    out = tmp_path / "out.wav"
    process_file(Chain([]), source, out, RunOptions(block=1000))
    assert sf.info(out).subtype == subtype
    assert np.array_equal(sf.read(out, dtype="int32")[0], sf.read(source, dtype="int32")[0])
    gained = tmp_path / "gained.wav"
    process_file(Chain([pedalboard.Gain(-0.1)]), source, gained, RunOptions(block=1000))
    written = sf.read(gained, dtype="int32")[0]
    assert not np.array_equal(written, sf.read(source, dtype="int32")[0])
    assert not written[SR // 2 : SR].any()  # silence is not turned into dither noise


@pytest.mark.parametrize("loudness", [None, -20.0])
def test_output_does_not_depend_on_overlapped_io(tmp_path, song, loudness):
    chain = Chain([pedalboard.Compressor(-20, 3), pedalboard.Reverb()], loudness_lufs=loudness)
    outputs = []
    for overlap in (True, False):
        out = tmp_path / f"out-{overlap}.wav"
        process_file(chain, song, out, RunOptions(block=3000, overlap_io=overlap, subtype="PCM_16"))
        outputs.append(sf.read(out, dtype="int32")[0])
    assert np.array_equal(outputs[0], outputs[1])
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("seconds, says", [(0.2, "too short for loudness (< 0.4 s)"), (1.0, "silent")])
def test_unmeasurable_loudness_is_named_and_the_level_left_alone(tmp_path, seconds, says):
    """Integrated loudness needs a 400 ms block above -70 LUFS: a short clip has none, silence none above the gate.
    Both keep their level under a loudness target, and the summary says which it was (not "silent" for a click)."""
    n = int(seconds * 44100)
    audio = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100) if seconds < 0.4 else np.zeros(n)
    source = tmp_path / "in.wav"
    sf.write(source, np.stack([audio, audio], axis=1), 44100, subtype="FLOAT")
    out = tmp_path / "out.wav"
    summary = process_file(Chain([pedalboard.Gain(0)], loudness_lufs=-14.0), source, out)
    assert f"{says}: loudness left as it was" in summary.line()
    assert summary.normalization_gain_db == 0.0
    written, _ = sf.read(out, dtype="float32")
    assert np.array_equal(written[:, 0], audio.astype(np.float32))


@pytest.mark.parametrize("sample_rate, quality", [(44100, "V2"), (22050, "64"), (8000, "32"), (48000, "320")])
def test_real_mp3s_pass_the_frame_check_with_a_tag_or_junk_in_front(tmp_path, sample_rate, quality):
    from pedalboard.io import AudioFile
    from pedalchain.chains.audio_io import mpeg_frame_length, probe_audio

    plain = tmp_path / "plain.mp3"
    with AudioFile(str(plain), "w", sample_rate, 1, quality=quality) as stream:
        stream.write(np.random.default_rng(0).standard_normal((1, sample_rate // 2)).astype(np.float32) * 0.1)
    data = plain.read_bytes()
    start = data.index(b"\xff")
    assert mpeg_frame_length(data[start:start + 4]) is not None
    tag_size = 200_000  # album art: the frames start after the ID3v2 tag
    syncsafe = bytes((tag_size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    variants = {"tagged.mp3": b"ID3\x03\x00\x00" + syncsafe + bytes(tag_size) + data,
                "junk.mp3": np.random.default_rng(1).bytes(3000) + data}
    for name, content in variants.items():
        (tmp_path / name).write_bytes(content)
    for name in ("plain.mp3", *variants):
        assert probe_audio(tmp_path / name).sample_rate == sample_rate


def test_the_mp3_decoders_frame_messages_are_dropped_and_other_stderr_passes(tmp_path, capfd):
    """libsndfile's libmpg123 prints frames it recovers from straight to fd 2 when an MP3 is read in blocks (this
    22.05 kHz mono 64 kbps file, encoded by pedalboard: 3 lines at 8192-sample blocks); nothing of it may reach our
    stderr, while a line written there during a read (another thread's message) still does, and the samples are
    the file's."""
    import contextlib
    import threading

    from helpers import plucked_notes
    from pedalboard.io import AudioFile
    from pedalchain.chains import audio_io

    path = tmp_path / "low.mp3"
    with AudioFile(str(path), "w", 22050, 1, quality=64) as stream:
        stream.write(plucked_notes(6.0, 22050, 0, note_every_s=0.2, harmonics=11, decay_per_s=4.0, peak=0.9,
                                   air=1e-3)[:1])
    info = audio_io.probe_audio(path)
    capfd.readouterr()
    whole = np.concatenate(list(audio_io.read_blocks(info, 8192)), axis=1)
    assert "libmpg123" not in capfd.readouterr().err
    assert np.allclose(whole, sf.read(str(path), dtype="float32", always_2d=True)[0].T, atol=1e-6)

    reading = threading.Event()
    real = audio_io.chatter_dropped

    @contextlib.contextmanager
    def while_reading(pattern, scratch):
        with real(pattern, scratch):
            reading.set()
            yield

    def message() -> None:
        reading.wait(10)
        os.write(2, b"a message from elsewhere\n")

    other = threading.Thread(target=message)
    other.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audio_io, "chatter_dropped", while_reading)
        for _ in audio_io.read_blocks(info, 8192):
            other.join(0.05)
    other.join()
    assert capfd.readouterr().err.count("a message from elsewhere") == 1


def test_a_wav_named_mp3_is_read_by_its_content(tmp_path, song):
    from pedalchain.chains.audio_io import probe_audio

    misnamed = tmp_path / "misnamed.mp3"
    misnamed.write_bytes(Path(song).read_bytes())
    assert probe_audio(misnamed).container == "WAV"


@pytest.mark.parametrize("stop_after_calls", [9, 20, 38])
def test_a_stop_is_honoured_in_the_passes_after_the_first(tmp_path, song, stop_after_calls):
    """With a loudness target the metering passes of the limiter and the final pass took as long as the first
    pass and never asked whether to stop: a Ctrl-C there was ignored, and the output written in full."""
    calls = 0

    class Stop(KeyboardInterrupt):
        pass

    def progress(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls >= stop_after_calls:
            raise Stop

    loud = Chain([pedalboard.Gain(-6)])  # -8 LUFS takes the limiter: two metering passes, then the final one
    loud.loudness_lufs = -8.0  # (41 progress calls in all, 8 of them the first pass's)
    with pytest.raises(Stop):
        process_file(loud, song, tmp_path / "o.wav", RunOptions(block=SR), progress=progress)
    # the two metering threads may each ask once more before the stop reaches the caller
    assert stop_after_calls <= calls <= stop_after_calls + 2 < 41
    assert list(tmp_path.iterdir()) == [song]
