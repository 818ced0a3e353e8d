"""Clean training audio for the restorers: a deterministic, cached corpus of full-band clips, file lists, splits.

:func:`clean_corpus` builds (once; later calls with the same settings reuse the cache) three kinds of FLAC clips
(24-bit, at the requested rate) in a folder of the cache directory named after the settings:

- ``sonic-pi/``: the Debian ``sonic-pi-samples`` (CC0) whose long-term spectrum really reaches 20 kHz
  (:func:`full_band_check`); the rejected ones are listed in the manifest with the reason.
- ``midi/``: FluidSynth renders (``fluid-soundfont-gm``, FluidR3_GM) of seeded generated songs written as
  Standard MIDI Files by :func:`write_midi` (several GM programs: pianos, guitars, strings, brass, reeds, organ,
  bass, drums on channel 10; varied tempo, velocity, pan; stereo).
- ``synth/``: synthesized material: chords of harmonic tones with decays, noise bursts, speech-like formant
  signals with fricatives.

``manifest.json`` beside the clips records each one: ``source`` (sonic-pi | midi | synth), ``group`` (clips of
one group never straddle train/validation/test in :func:`split_by_file`), ``seed``, ``programs`` and ``tempo_bpm``
for MIDI renders, ``kind`` for synthesized clips, ``duration_s``, ``peak_dbfs``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from ...chains.atomic import temporary_beside, write_atomically
from ...errors import AudioFileError, ParameterError

SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")
CORPUS_VERSION = 1
"""Bumped when the generated material changes, so old caches are not mistaken for the new corpus."""
FULL_BAND_MIN_REL_DB = -60.0
"""A clip is full-band when its 19–20.5 kHz level is at most this far below its 200 Hz–4 kHz level ..."""
FULL_BAND_MAX_CLIFF_DB = 20.0
"""... and at most this far below its own 15–17 kHz level (no lowpass cliff just below 20 kHz)."""
MIN_CLIP_S = 0.2

PROGRAMS = {
    "acoustic grand piano": 0, "electric piano": 4, "drawbar organ": 16, "nylon guitar": 24, "steel guitar": 25,
    "clean electric guitar": 27, "overdriven guitar": 29, "fingered bass": 33, "violin": 40, "cello": 42,
    "string ensemble": 48, "trumpet": 56, "trombone": 57, "brass section": 61, "alto sax": 65, "flute": 73,
}
"""General MIDI programs (0-based) the generated songs draw their parts from."""
DRUM_CHANNEL = 9
"""MIDI channel 10 (0-based 9): General MIDI percussion."""


# -- files ----------------------------------------------------------------------------------------------------------
def audio_files(folder: Path) -> list[Path]:
    """All audio files (``.wav .flac .aif .aiff .ogg .mp3``, any case) under ``folder``, recursively, sorted.

    Raises AudioFileError naming the folder when it does not exist, is not a folder, or holds no audio file.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise AudioFileError("no such folder", where=folder)
    if not folder.is_dir():
        raise AudioFileError("is a file; --data expects a folder of audio files", where=folder)
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not p.name.startswith("."))
    if not found:
        raise AudioFileError(f"holds no audio files ({' '.join(AUDIO_SUFFIXES)})", where=folder)
    return found


def read_clip(path: Path, sample_rate: int) -> np.ndarray:
    """The whole file as (channels, n) float32 at ``sample_rate`` Hz, resampled with a polyphase Kaiser-windowed
    sinc filter (scipy ``resample_poly``, beta 8.6: > 80 dB stopband) when the file's rate differs."""
    path = Path(path)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioFileError(f"not a readable audio file ({error})", where=path) from None
    audio = np.ascontiguousarray(audio.T)
    if rate != sample_rate:
        audio = resample(audio, rate, sample_rate)
    return audio


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``audio`` (channels, n) from ``from_rate`` to ``to_rate`` Hz, float32 (polyphase, Kaiser beta 8.6)."""
    import scipy.signal as ss

    ratio = Fraction(int(to_rate), int(from_rate))
    out = ss.resample_poly(audio.astype(np.float64), ratio.numerator, ratio.denominator, axis=-1,
                           window=("kaiser", 8.6))
    return out.astype(np.float32)


def _group_of(path: Path) -> str:
    """The group of a file: from the corpus ``manifest.json`` one folder up when it lists the file, else the
    file itself."""
    entry = _manifest_entry(path)
    return str(entry.get("group") or f"{path.parent.name}/{path.name}") if entry else str(path)


def clip_source(path: Path) -> str | None:
    """The corpus ``source`` of a file (``sonic-pi``, ``midi`` or ``synth``) from the ``manifest.json`` one folder
    up, or None for a file no manifest lists (a user's own recording)."""
    source = _manifest_entry(Path(path)).get("source")
    return str(source) if source is not None else None


_MANIFEST_CACHE: dict[tuple[Path, float], dict[str, dict]] = {}


def _manifest_entry(path: Path) -> dict:
    """The corpus manifest's record of ``path`` (empty when there is none)."""
    manifest = path.parent.parent / "manifest.json"
    if not manifest.exists():
        return {}
    key = (manifest, manifest.stat().st_mtime)
    if key not in _MANIFEST_CACHE:
        try:
            entries = json.loads(manifest.read_text()).get("clips", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            entries = {}
        _MANIFEST_CACHE[key] = {name: entry for name, entry in entries.items() if isinstance(entry, dict)}
    return _MANIFEST_CACHE[key].get(f"{path.parent.name}/{path.name}", {})


def split_by_file(
    paths: list[Path], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list[Path], list[Path], list[Path]]:
    """Deterministic train / validation / test split of ``paths`` by file and by source group.

    Files of one group (renders of one song, variants of one sonic-pi sample, as recorded in the corpus
    manifest; a file elsewhere is its own group) all go to one split.  Groups are shuffled with ``seed`` and
    dealt out so each split's share of files tracks ``fractions`` (three non-negative numbers, sum > 0); with
    at least three groups and all fractions positive, no split is empty.  Each returned list is sorted.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ParameterError(f"fractions must be three non-negative numbers with a positive sum, got {fractions}",
                             where="fractions")
    groups: dict[str, list[Path]] = {}
    for path in sorted(Path(p) for p in paths):
        groups.setdefault(_group_of(path), []).append(path)
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    target = np.asarray(fractions, float) / sum(fractions)
    splits: list[list[Path]] = [[], [], []]
    counts = np.zeros(3)
    for position, index in enumerate(order):
        members = groups[names[index]]
        empty = [k for k in range(3) if target[k] > 0 and counts[k] == 0]
        remaining = len(order) - position
        if empty and remaining <= len(empty):
            choice = empty[0]  # the last groups fill splits that would otherwise stay empty
        else:
            # the split furthest behind its share after this group is added
            total = counts.sum() + len(members)
            deficit = target * total - counts
            deficit[target == 0] = -np.inf
            choice = int(np.argmax(deficit))
        splits[choice].extend(members)
        counts[choice] += len(members)
    return sorted(splits[0]), sorted(splits[1]), sorted(splits[2])


# -- the full-band check -------------------------------------------------------------------------------------------
def full_band_check(audio: np.ndarray, sample_rate: int) -> tuple[bool, str]:
    """Whether ``audio`` (channels, n) reaches 20 kHz: ``(passed, what was measured)``.

    Measured on the channel-averaged Welch spectrum (Hann, 2048 samples): L(19–20.5 kHz) - L(0.2–4 kHz) must be
    >= :data:`FULL_BAND_MIN_REL_DB` and L(19–20.5 kHz) - L(15–17 kHz) >= -:data:`FULL_BAND_MAX_CLIFF_DB`.
    """
    import scipy.signal as ss

    if audio.shape[1] < MIN_CLIP_S * sample_rate:
        return False, f"shorter than {MIN_CLIP_S:g} s"
    freqs, power = ss.welch(audio.mean(axis=0).astype(np.float64), sample_rate, nperseg=2048)

    def level(lo: float, hi: float) -> float:
        return 10 * math.log10(float(power[(freqs >= lo) & (freqs < hi)].mean()) + 1e-30)

    top, body, below = level(19000, 20500), level(200, 4000), level(15000, 17000)
    text = f"19–20.5 kHz at {top - body:.1f} dB re 0.2–4 kHz, {top - below:.1f} dB re 15–17 kHz"
    return (top - body >= FULL_BAND_MIN_REL_DB and top - below >= -FULL_BAND_MAX_CLIFF_DB), text


def sample_group(name: str) -> str:
    """Group of a sonic-pi sample: its name without hardness/variant suffixes (tabla_ghe1..8 -> tabla_ghe,
    loop_amen_full -> loop_amen, drum_tom_hi_hard -> drum_tom_hi)."""
    stem = Path(name).stem
    stem = re.sub(r"_(full|hard|soft|closed|open|pedal|hit)$", "", stem)
    stem = re.sub(r"_[a-g]$", "", stem)
    return "sonic-pi/" + re.sub(r"\d+$", "", stem)


# -- MIDI ----------------------------------------------------------------------------------------------------------
def _var_len(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, tracks: list[list[tuple[int, bytes]]], ticks_per_beat: int = 480,
               tempo_bpm: float = 120.0) -> None:
    """Write a Standard MIDI File (format 1) atomically: a tempo track, then one track per list of
    ``(absolute tick, raw event bytes)`` (events are sorted by tick; note-offs before note-ons at equal ticks)."""
    micro = round(60_000_000 / tempo_bpm)
    chunks = [b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks) + 1, ticks_per_beat)]
    tempo_track = b"\x00\xff\x51\x03" + micro.to_bytes(3, "big") + b"\x00\xff\x2f\x00"
    chunks.append(b"MTrk" + struct.pack(">I", len(tempo_track)) + tempo_track)
    for events in tracks:
        data = bytearray()
        now = 0
        for tick, raw in sorted(events, key=lambda e: (e[0], (e[1][0] & 0xF0) == 0x90)):
            data += _var_len(tick - now) + raw
            now = tick
        data += b"\x00\xff\x2f\x00"
        chunks.append(b"MTrk" + struct.pack(">I", len(data)) + bytes(data))
    write_atomically(path, b"".join(chunks))


def generate_song(seed: int, seconds: float) -> tuple[list[list[tuple[int, bytes]]], dict]:
    """A seeded song of about ``seconds``: chord progression in a random key, 2–4 pitched parts with random GM
    programs, pans and velocities (melody, chords, arpeggio or bass), and a drum part on channel 10 most times.

    Returns ``(tracks for write_midi, description)`` with tempo, programs and key.
    """
    rng = np.random.default_rng(seed)
    tempo = float(rng.uniform(70, 160))
    tpb = 480
    beats = max(8, int(seconds * tempo / 60))
    bars = beats // 4
    key = int(rng.integers(0, 12))
    minor = bool(rng.integers(0, 2))
    scale = np.array([0, 2, 3, 5, 7, 8, 10] if minor else [0, 2, 4, 5, 7, 9, 11])
    degrees = rng.choice([0, 3, 4, 5, 1], size=bars)
    names = list(PROGRAMS)
    chosen = [names[i] for i in rng.choice(len(names), size=int(rng.integers(2, 5)), replace=False)]
    roles = ["bass" if PROGRAMS[n] in (33, 42, 57) else role
             for n, role in zip(chosen, rng.choice(["melody", "chords", "arpeggio"], size=len(chosen)), strict=True)]
    tracks = []
    for channel, (name, role) in enumerate(zip(chosen, roles, strict=True)):
        events: list[tuple[int, bytes]] = [
            (0, bytes([0xC0 | channel, PROGRAMS[name]])),
            (0, bytes([0xB0 | channel, 10, int(rng.integers(10, 118))])),  # pan
            (0, bytes([0xB0 | channel, 7, int(rng.integers(80, 128))])),  # volume
        ]
        base_velocity = int(rng.integers(50, 115))
        octave = {"bass": 36, "chords": 60, "arpeggio": 60, "melody": 72}[role]

        def note(tick: int, length: int, pitch: int, velocity: int, ch: int = channel,
                 out: list = events) -> None:
            pitch = int(np.clip(pitch, 21, 108))
            velocity = int(np.clip(velocity, 1, 127))
            out.append((tick, bytes([0x90 | ch, pitch, velocity])))
            out.append((tick + max(1, length), bytes([0x80 | ch, pitch, 0])))

        for bar, degree in enumerate(degrees):
            start = bar * 4 * tpb
            chord = [key + octave + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
            jitter = lambda: int(rng.integers(-12, 13))  # noqa: E731 - velocity humanisation
            if role == "chords":
                for beat in range(0, 4, int(rng.choice([1, 2, 4]))):
                    for pitch in chord:
                        note(start + beat * tpb, int(tpb * rng.uniform(0.8, 2.0)), pitch, base_velocity + jitter())
            elif role == "arpeggio":
                for step in range(8):
                    note(start + step * tpb // 2, tpb // 2, chord[step % 3] + 12 * (step // 3 % 2),
                         base_velocity + jitter())
            elif role == "bass":
                for beat in range(4):
                    note(start + beat * tpb, int(tpb * 0.9), chord[0] - 12 * (beat % 2 == 1 and rng.random() < 0.3),
                         base_velocity + jitter())
            else:  # melody: scale steps around the chord, random rhythm
                tick = start
                position = int(rng.integers(0, 7))
                while tick < start + 4 * tpb:
                    length = int(rng.choice([tpb // 4, tpb // 2, tpb, 2 * tpb], p=[0.2, 0.4, 0.3, 0.1]))
                    position = int(np.clip(position + rng.integers(-2, 3), -3, 10))
                    pitch = key + octave + scale[position % 7] + 12 * (position // 7)
                    if rng.random() > 0.1:
                        note(tick, int(length * 0.95), pitch, base_velocity + jitter())
                    tick += length
        tracks.append(events)
    with_drums = rng.random() < 0.75
    if with_drums:
        events = []
        velocity = int(rng.integers(60, 120))
        hat = int(rng.choice([42, 46, 51]))  # closed hat, open hat, ride
        for bar in range(bars):
            start = bar * 4 * tpb
            for step in range(8):
                tick = start + step * tpb // 2
                events.append((tick, bytes([0x99, hat, int(np.clip(velocity - 20 + rng.integers(-15, 15), 1, 127))])))
                events.append((tick + tpb // 4, bytes([0x89, hat, 0])))
                if step in (0, 4) or (step == 5 and rng.random() < 0.3):
                    events += [(tick, bytes([0x99, 36, velocity])), (tick + tpb // 4, bytes([0x89, 36, 0]))]
                if step in (2, 6):
                    events += [(tick, bytes([0x99, 38, velocity])), (tick + tpb // 4, bytes([0x89, 38, 0]))]
            if bar % 4 == 0:
                events += [(start, bytes([0x99, 49, velocity])), (start + tpb, bytes([0x89, 49, 0]))]
        tracks.append(events)
    # a silent controller event 2 s after the last note lets releases ring out before the render stops
    end = bars * 4 * tpb + round(2.0 * tempo / 60 * tpb)
    tracks[0].append((end, bytes([0xB0, 1, 0])))
    description = {"tempo_bpm": round(tempo, 2), "programs": [f"{PROGRAMS[n]} {n}" for n in chosen]
                   + (["drums (channel 10)"] if with_drums else []), "key": key, "minor": minor}
    return tracks, description


def render_midi(midi: Path, wav: Path, sample_rate: int) -> None:
    """Render ``midi`` with FluidSynth and FluidR3_GM to a stereo WAV at ``sample_rate`` (one CPU core)."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None or not SOUNDFONT.exists():
        raise AudioFileError("needs Debian's fluidsynth and fluid-soundfont-gm (apt-get install fluidsynth "
                             "fluid-soundfont-gm)", where=SOUNDFONT)
    command = [fluidsynth, "-ni", "-q", "-F", str(wav), "-r", str(int(sample_rate)), "-g", "0.5", "-T", "wav",
               "-O", "float", "-o", "synth.cpu-cores=1", str(SOUNDFONT), str(midi)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not wav.exists():
        raise AudioFileError(f"fluidsynth failed: {(result.stderr or result.stdout).strip()[:300]}", where=midi)


# -- synthesized material ----------------------------------------------------------------------------------------
def synth_clip(kind: str, seed: int, seconds: float, sample_rate: int) -> np.ndarray:
    """A seeded stereo clip (2, n) float64 of ``kind``: ``chords`` (harmonic tones up to Nyquist, 1/h^a
    rolloff, exponential decays), ``bursts`` (filtered noise bursts with fast attacks) or ``speech``
    (glottal pulse train with jitter through 4 moving formant resonators, plus fricative noise)."""
    import scipy.signal as ss

    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros((2, n))
    if kind == "chords":
        onset = 0.0
        while onset < seconds:
            root = 55 * 2 ** (rng.integers(0, 36) / 12)
            decay = rng.uniform(0.3, 3.0)
            rolloff = rng.uniform(0.7, 1.6)
            start = round(onset * sample_rate)
            local = t[: n - start]
            envelope = np.exp(-local / decay) * (1 - np.exp(-local / 0.002))
            brightness = np.exp(-local / (decay * rng.uniform(0.05, 0.5)))  # the top harmonics die away first
            for interval in rng.choice([0, 3, 4, 7, 10, 12, 14], size=3, replace=False):
                f0 = root * 2 ** (interval / 12)
                pan = rng.uniform(0.2, 0.8)
                bright, dull = _wavetables(f0, rolloff, sample_rate, rng)
                position = (f0 * local + rng.uniform()) % 1.0 * WAVETABLE
                tone = brightness * np.interp(position, np.arange(WAVETABLE + 1), bright) \
                    + (1 - brightness) * np.interp(position, np.arange(WAVETABLE + 1), dull)
                out[0, start:] += (1 - pan) * tone * envelope
                out[1, start:] += pan * tone * envelope
            onset += rng.uniform(0.25, 1.5)
    elif kind == "bursts":
        onset = 0.0
        while onset < seconds:
            start = round(onset * sample_rate)
            length = min(n - start, round(rng.uniform(0.02, 0.5) * sample_rate))
            local = np.arange(length) / sample_rate
            burst = rng.standard_normal((2, length)) * np.exp(-local / rng.uniform(0.01, 0.2))
            low, high = sorted(rng.uniform(100, sample_rate / 2 * 0.99, size=2))
            if rng.random() < 0.5:
                burst = ss.sosfilt(ss.butter(2, [low, max(high, low * 1.5)] if max(high, low * 1.5) < sample_rate / 2
                                             else low, btype="bandpass" if max(high, low * 1.5) < sample_rate / 2
                                             else "highpass", fs=sample_rate, output="sos"), burst, axis=-1)
            out[:, start:start + length] += rng.uniform(0.2, 1.0) * burst
            onset += rng.uniform(0.05, 0.6)
    elif kind == "speech":
        f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
        phase = np.cumsum(f0 * (1 + 0.01 * rng.standard_normal(n)) / sample_rate)
        pulses = np.diff(np.floor(phase), prepend=0.0)
        source = ss.lfilter([1.0], [1.0, -0.95], pulses)  # glottal spectral tilt
        vowels = np.array([[730, 1090, 2440, 3400], [270, 2290, 3010, 3700], [300, 870, 2240, 3300],
                           [530, 1840, 2480, 3500], [570, 840, 2410, 3400]], float)
        syllable = round(rng.uniform(0.12, 0.3) * sample_rate)
        voiced = np.zeros(n)
        fricatives = np.zeros(n)
        for start in range(0, n, syllable):
            segment = source[start:start + syllable]
            formants = vowels[rng.integers(0, len(vowels))] * rng.uniform(0.9, 1.15)
            shaped = np.zeros_like(segment)
            for k, f in enumerate(formants):
                b, a = ss.iirpeak(f, f / (60 + 20 * k), fs=sample_rate)
                shaped += ss.lfilter(b, a, segment) / (k + 1)
            gate = np.hanning(len(segment)) if rng.random() < 0.8 else np.zeros(len(segment))
            voiced[start:start + syllable] = shaped * gate
            if rng.random() < 0.4:  # a fricative: high-passed noise ("s", "sh", "f")
                length = min(len(segment), round(rng.uniform(0.04, 0.12) * sample_rate))
                cut = rng.uniform(2500, 6000)
                fricatives[start:start + length] += ss.sosfilt(
                    ss.butter(4, cut, "highpass", fs=sample_rate, output="sos"), rng.standard_normal(length)
                ) * np.hanning(length) * rng.uniform(0.3, 1.0)
        if np.any(voiced) and np.any(fricatives):  # fricatives 10-20 dB below the vowels (power)
            gain = np.sqrt(np.mean(voiced ** 2) / np.mean(fricatives ** 2)) * 10 ** (-rng.uniform(10, 20) / 20)
            voiced += gain * fricatives
        pan = rng.uniform(0.3, 0.7)
        out[0], out[1] = (1 - pan) * voiced, pan * voiced
        out += 1e-4 * rng.standard_normal(out.shape) * np.abs(voiced).max()  # room tone
    else:
        raise ValueError(f"unknown synth kind {kind!r}")
    return out


SYNTH_KINDS = ("chords", "bursts", "speech")
WAVETABLE = 65536
"""Samples per period of the chord tones' wavetables (linear interpolation error < -80 dB at 20 kHz)."""


def _wavetables(f0: float, rolloff: float, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One period (WAVETABLE + 1 samples, wrapped) of a tone with every harmonic of ``f0`` below Nyquist at
    1/h^rolloff with random phases (``bright``), and the same with 4 harmonics only (``dull``)."""
    count = max(1, int(sample_rate / 2 / f0))
    spectrum = np.zeros(WAVETABLE // 2 + 1, complex)
    h = np.arange(1, count + 1)
    spectrum[h] = h ** -rolloff * np.exp(1j * rng.uniform(0, 2 * np.pi, count)) * WAVETABLE / 2
    bright = np.fft.irfft(spectrum, n=WAVETABLE)
    spectrum[5:] = 0
    dull = np.fft.irfft(spectrum, n=WAVETABLE)
    return np.append(bright, bright[0]), np.append(dull, dull[0])


# -- the corpus ----------------------------------------------------------------------------------------------------
def _write_flac(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    temporary = temporary_beside(path, ".flac")
    try:
        sf.write(str(temporary), np.ascontiguousarray(audio.T), sample_rate, subtype="PCM_24", format="FLAC")
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _normalised(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``audio`` scaled to a peak drawn in -12 … -1 dBFS; returns (float32 audio, peak dBFS)."""
    peak = float(np.abs(audio).max())
    target_db = float(rng.uniform(-12.0, -1.0))
    if peak == 0:
        return audio.astype(np.float32), -200.0
    return (audio * (10 ** (target_db / 20) / peak)).astype(np.float32), round(target_db, 2)


def clean_corpus(cache_dir: Path, seed: int = 0, midi_minutes: float = 20.0, synth_minutes: float = 5.0,
                 sample_rate: int = 44100) -> list[Path]:
    """Build (once; cached; deterministic for the same settings) the clean training corpus; sorted FLAC paths.

    The clips go to ``cache_dir / f"v{CORPUS_VERSION}-seed{seed}-midi{midi_minutes:g}-synth{synth_minutes:g}-
    {sample_rate}"`` with a ``manifest.json`` (see the module docstring).  ``midi_minutes`` (>= 0) of songs of
    30–60 s, ``synth_minutes`` (>= 0) of clips of 5–12 s.  Takes about 1–3 minutes of one CPU core at 20 + 5
    minutes (FluidSynth renders far faster than real time).
    """
    if midi_minutes < 0 or synth_minutes < 0:
        raise ParameterError("midi_minutes and synth_minutes must be >= 0", where="clean_corpus")
    root = Path(cache_dir).expanduser() / (f"v{CORPUS_VERSION}-seed{seed}-midi{midi_minutes:g}-"
                                           f"synth{synth_minutes:g}-{sample_rate}")
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
            paths = [root / name for name in manifest["clips"]]
            if all(p.exists() for p in paths):
                return sorted(paths)
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            pass
    for sub in ("sonic-pi", "midi", "synth"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    clips: dict[str, dict] = {}
    rejected: dict[str, str] = {}
    rng = np.random.default_rng(seed)

    # 1. sonic-pi samples that reach 20 kHz
    for source in sorted(SONIC_PI_DIR.glob("*.flac")) if SONIC_PI_DIR.exists() else []:
        audio = read_clip(source, sample_rate)
        passed, measured = full_band_check(audio, sample_rate)
        if not passed:
            rejected[source.name] = measured
            continue
        name = f"sonic-pi/{source.stem}.flac"
        _write_flac(root / name, audio, sample_rate)
        clips[name] = {"source": "sonic-pi", "original": str(source), "group": sample_group(source.name),
                       "seed": None, "full_band": measured, "licence": "CC0 (Debian sonic-pi-samples)",
                       "duration_s": round(audio.shape[1] / sample_rate, 3),
                       "peak_dbfs": round(20 * math.log10(float(np.abs(audio).max()) + 1e-10), 2)}

    # 2. FluidSynth renders of generated songs
    remaining = midi_minutes * 60.0
    song = 0
    while remaining > 1.0:
        song_seed = int(rng.integers(0, 2**31))
        seconds = min(remaining, float(rng.uniform(30, 60)))
        tracks, description = generate_song(song_seed, seconds)
        midi_path = root / "midi" / f"song{song:03d}.mid"
        wav_path = root / "midi" / f".song{song:03d}.wav"
        write_midi(midi_path, tracks, tempo_bpm=description["tempo_bpm"])
        render_midi(midi_path, wav_path, sample_rate)
        audio = read_clip(wav_path, sample_rate)
        wav_path.unlink()
        audio, peak = _normalised(audio, rng)
        name = f"midi/song{song:03d}.flac"
        _write_flac(root / name, audio, sample_rate)
        clips[name] = {"source": "midi", "group": f"midi/song{song:03d}", "seed": song_seed,
                       "midi": f"midi/song{song:03d}.mid", "soundfont": str(SOUNDFONT), **description,
                       "duration_s": round(audio.shape[1] / sample_rate, 3), "peak_dbfs": peak}
        remaining -= seconds
        song += 1

    # 3. synthesized material
    remaining = synth_minutes * 60.0
    index = 0
    while remaining > 1.0:
        clip_seed = int(rng.integers(0, 2**31))
        kind = SYNTH_KINDS[index % len(SYNTH_KINDS)]
        seconds = min(remaining, float(rng.uniform(5, 12)))
        audio, peak = _normalised(synth_clip(kind, clip_seed, seconds, sample_rate), rng)
        name = f"synth/{kind}{index:03d}.flac"
        _write_flac(root / name, audio, sample_rate)
        clips[name] = {"source": "synth", "kind": kind, "group": f"synth/{kind}{index:03d}", "seed": clip_seed,
                       "duration_s": round(seconds, 3), "peak_dbfs": peak}
        remaining -= seconds
        index += 1

    manifest = {"version": CORPUS_VERSION, "seed": seed, "sample_rate": sample_rate, "midi_minutes": midi_minutes,
                "synth_minutes": synth_minutes, "clips": clips, "rejected_sonic_pi": rejected,
                "total_s": round(sum(c["duration_s"] for c in clips.values()), 1)}
    write_atomically(manifest_path, json.dumps(manifest, indent=1))
    return sorted(root / name for name in clips)


def corpus_manifest(paths: list[Path]) -> dict[str, dict]:
    """Manifest entries (see the module docstring) of corpus clips ``paths``, keyed by ``sub-folder/name``;
    files outside a corpus get ``{"source": "user"}``.  For model metadata ("what it was trained on")."""
    out: dict[str, dict] = {}
    for path in paths:
        path = Path(path)
        manifest = path.parent.parent / "manifest.json"
        key = f"{path.parent.name}/{path.name}"
        entry = None
        if manifest.exists():
            try:
                entry = json.loads(manifest.read_text())["clips"].get(key)
            except (OSError, json.JSONDecodeError, KeyError):
                entry = None
        out[key if entry else str(path)] = entry or {"source": "user"}
    return out
