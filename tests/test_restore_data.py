"""models/restore/data.py on tiny inputs: file listing, splits by group, resampled reading, the full-band check,
the MIDI writer + FluidSynth render, synthesized clips, and a tiny corpus build with its cache and manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pedalchain.errors import AudioFileError, ParameterError
from pedalchain.models.restore.data import (
    SONIC_PI_DIR,
    SOUNDFONT,
    audio_files,
    clean_corpus,
    full_band_check,
    generate_song,
    read_clip,
    render_midi,
    sample_group,
    split_by_file,
    synth_clip,
    write_midi,
)

FS = 44100


def tone_file(path: Path, fs: int = FS, seconds: float = 0.5, channels: int = 2) -> Path:
    t = np.arange(round(seconds * fs)) / fs
    x = 0.5 * np.sin(2 * np.pi * 1000 * t)
    sf.write(str(path), np.tile(x[:, None], (1, channels)), fs, subtype="FLOAT")
    return path


def test_audio_files_lists_audio_only_sorted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.wav", "a.FLAC", "sub/c.wav", "notes.txt", ".hidden.wav"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in audio_files(tmp_path)] == ["a.FLAC", "b.wav", "sub/c.wav"]
    with pytest.raises(AudioFileError, match="no such folder"):
        audio_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match="no audio files"):
        audio_files(tmp_path / "empty")


def test_read_clip_resamples(tmp_path: Path) -> None:
    path = tone_file(tmp_path / "t.wav", fs=48000)
    same = read_clip(path, 48000)
    assert same.shape == (2, 24000) and same.dtype == np.float32
    down = read_clip(path, 44100)
    assert down.shape == (2, 22050)
    spectrum = np.abs(np.fft.rfft(down[0, 2000:20050] * np.hanning(18050)))
    peak_hz = np.argmax(spectrum) * 44100 / 18050
    assert abs(peak_hz - 1000) < 3
    assert np.abs(down[:, 2000:-2000]).max() == pytest.approx(0.5, abs=0.01)


def test_split_is_deterministic_covers_all_and_keeps_groups_together(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "midi").mkdir(parents=True)
    clips = {}
    for song in range(10):
        for part in range(3):  # three clips of one group: they must land in one split
            name = f"midi/song{song}_{part}.flac"
            (root / name).write_bytes(b"")
            clips[name] = {"group": f"song{song}"}
    (root / "manifest.json").write_text(json.dumps({"clips": clips}))
    paths = sorted(root / name for name in clips)
    train, val, test = split_by_file(paths, seed=3)
    assert sorted(train + val + test) == paths
    assert train and val and test
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert split_by_file(list(reversed(paths)), seed=3) == (train, val, test)
    assert split_by_file(paths, seed=4) != (train, val, test)
    for part in (train, val, test):
        for path in part:
            song = path.name.split("_")[0]
            assert all(p in part for p in paths if p.name.startswith(song + "_"))
    assert len(train) >= len(val) and len(train) >= len(test)


def test_split_without_manifest_and_bad_fractions(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{i:02d}.wav" for i in range(20)]
    train, val, test = split_by_file(paths, seed=0)
    assert (len(train), len(val), len(test)) == (16, 2, 2)
    with pytest.raises(ParameterError, match="fractions"):
        split_by_file(paths, fractions=(1.0, -0.1, 0.1))


def test_full_band_check_rejects_a_lowpassed_copy() -> None:
    import scipy.signal as ss

    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, FS)).astype(np.float32)
    passed, measured = full_band_check(noise, FS)
    assert passed, measured
    cut = ss.sosfiltfilt(ss.butter(10, 16000, fs=FS, output="sos"), noise).astype(np.float32)
    passed, measured = full_band_check(cut, FS)
    assert not passed and "kHz" in measured
    assert not full_band_check(noise[:, :100], FS)[0]


def test_sample_groups() -> None:
    assert sample_group("tabla_ghe3.flac") == sample_group("tabla_ghe8.flac") == "sonic-pi/tabla_ghe"
    assert sample_group("loop_amen_full.flac") == sample_group("loop_amen.flac")
    assert sample_group("drum_tom_hi_hard.flac") == sample_group("drum_tom_hi_soft.flac")
    assert sample_group("drum_tom_hi_hard.flac") != sample_group("drum_tom_lo_hard.flac")


def test_midi_writer_and_fluidsynth_render(tmp_path: Path) -> None:
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        pytest.skip("fluidsynth / fluid-soundfont-gm not installed")
    tracks, description = generate_song(seed=7, seconds=4.0)
    again, _ = generate_song(seed=7, seconds=4.0)
    assert tracks == again
    midi = tmp_path / "s.mid"
    write_midi(midi, tracks, tempo_bpm=description["tempo_bpm"])
    data = midi.read_bytes()
    assert data[:4] == b"MThd" and data.count(b"MTrk") == len(tracks) + 1
    wav = tmp_path / "s.wav"
    render_midi(midi, wav, 48000)
    audio, rate = sf.read(str(wav), always_2d=True)
    assert rate == 48000 and audio.shape[1] == 2
    assert audio.shape[0] / rate >= 4.0
    assert np.abs(audio).max() > 0.01
    assert not np.allclose(audio[:, 0], audio[:, 1])  # panned parts: really stereo


@pytest.mark.parametrize("kind", ["chords", "bursts", "speech"])
def test_synth_clips_are_seeded_full_band_stereo(kind: str) -> None:
    a = synth_clip(kind, seed=1, seconds=1.5, sample_rate=FS)
    assert a.shape == (2, round(1.5 * FS)) and np.all(np.isfinite(a)) and np.abs(a).max() > 0
    assert np.array_equal(a, synth_clip(kind, seed=1, seconds=1.5, sample_rate=FS))
    assert not np.array_equal(a, synth_clip(kind, seed=2, seconds=1.5, sample_rate=FS))
    passed, measured = full_band_check(a.astype(np.float32), FS)
    assert passed, f"{kind}: {measured}"


def test_tiny_corpus_is_cached_with_a_manifest(tmp_path: Path) -> None:
    if not SONIC_PI_DIR.exists() or shutil.which("fluidsynth") is None:
        pytest.skip("needs Debian sonic-pi-samples and fluidsynth")
    paths = clean_corpus(tmp_path, seed=1, midi_minutes=0.1, synth_minutes=0.05)
    assert paths == sorted(paths) and all(p.suffix == ".flac" for p in paths)
    manifest = json.loads((paths[0].parent.parent / "manifest.json").read_text())
    sources = {entry["source"] for entry in manifest["clips"].values()}
    assert sources == {"sonic-pi", "midi", "synth"}
    assert manifest["rejected_sonic_pi"], "some sonic-pi samples are band-limited and must be rejected"
    assert "elec_bong.flac" in manifest["rejected_sonic_pi"]  # measured: nothing above ~10 kHz
    for path in paths:
        info = sf.info(str(path))
        assert info.samplerate == FS
    midi = [p for p in paths if p.parent.name == "midi"]
    assert midi and sf.info(str(midi[0])).channels == 2
    stamp = {p: p.stat().st_mtime_ns for p in paths}
    assert clean_corpus(tmp_path, seed=1, midi_minutes=0.1, synth_minutes=0.05) == paths
    assert {p: p.stat().st_mtime_ns for p in paths} == stamp  # second call: from the cache
