"""The Chain engine against the real pedalboard: streaming contract over the whole built-in registry,
latency, list semantics, combinators, sample-rate checks, YAML round trips and the file runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pedalboard
import pytest
import soundfile as sf
import yaml
from helpers import (
    RANDOM,
    assert_close,
    noise_signal,
    plucked_notes,
    stream,
    stream_raw,
    write_impulse_response,
)
from pedalchain import Chain, ParameterError, StreamingError, load_chain
from pedalchain.chains.engine import Step
from pedalchain.chains.runner import RunOptions, process_file
from pedalchain.chains.yaml_io import chain_from_yaml, chain_to_data, save_chain
from pedalchain.effects.combinators import Parallel
from pedalchain.effects.stock import BUILTIN_PLUGINS, build_builtin

SECONDS = 0.5
STREAMABLE = sorted(name for name, spec in BUILTIN_PLUGINS.items() if spec.streamable)
NON_STREAMABLE = sorted(name for name, spec in BUILTIN_PLUGINS.items() if not spec.streamable)

# Settings that make each plugin audibly act on the test signal (defaults where they already do).
SETTINGS: dict[str, dict[str, Any]] = {
    "Compressor": {"threshold_db": -24, "ratio": 4, "attack_ms": 5},
    "NoiseGate": {"threshold_db": -30, "ratio": 10},
    "HighShelfFilter": {"cutoff_frequency_hz": 3000, "gain_db": 6},
    "LowShelfFilter": {"cutoff_frequency_hz": 200, "gain_db": -6},
    "PeakFilter": {"cutoff_frequency_hz": 1000, "gain_db": 9, "q": 2},
    "HighpassFilter": {"cutoff_frequency_hz": 500},
    "LowpassFilter": {"cutoff_frequency_hz": 2000},
    "LadderFilter": {"mode": "LPF24", "cutoff_hz": 1500, "resonance": 0.4},
    "BrickwallLimiter": {"ceiling_db": -12},
    "Limiter": {"threshold_db": -12},
    "Delay": {"delay_seconds": 0.05, "feedback": 0.4},
    "Resample": {"target_sample_rate": 8000},
    "MP3Compressor": {"vbr_quality": 2},
    "Bitcrush": {"bit_depth": 6},
    "PitchShift": {"semitones": 3},
}

EXPENSIVE_PER_CALL = {"Convolution"}
"""Too slow per call (~0.5 ms) for one-sample blocks within the suite's time budget."""

LATENT = ("BrickwallLimiter", "MP3Compressor", "Resample")

LAYOUTS = [
    pytest.param(44100, 1, id="44k1-mono"),
    pytest.param(44100, 2, id="44k1-stereo"),
    pytest.param(48000, 1, id="48k-mono"),
    pytest.param(48000, 2, id="48k-stereo"),
]


def build(name: str, ir: Path) -> pedalboard.Plugin:
    values = dict(SETTINGS.get(name, {}))
    if name == "Convolution":
        values = {"impulse_response_filename": str(ir), "mix": 0.7}
    return build_builtin(name, values)


# --- 1. chunked == one-shot over the whole registry ------------------------------------------------------------------


def test_registry_lists_are_complete() -> None:
    """Guard: the contract below really runs over every built-in, and the settings table has no stale names."""
    assert len(STREAMABLE) >= 20
    assert set(STREAMABLE) | set(NON_STREAMABLE) == set(BUILTIN_PLUGINS)
    assert set(STREAMABLE) == {name for name, spec in BUILTIN_PLUGINS.items() if spec.streamable}
    assert set(NON_STREAMABLE) == {"PitchShift", "GSMFullRateCompressor"}
    assert set(SETTINGS) <= set(BUILTIN_PLUGINS)
    assert set(LATENT) <= set(STREAMABLE)


@pytest.mark.parametrize(("sample_rate", "channels"), LAYOUTS)
@pytest.mark.parametrize("name", STREAMABLE)
def test_streamed_equals_one_shot(name: str, sample_rate: int, channels: int, impulse_response: Path) -> None:
    plugin = build(name, impulse_response)
    chain = Chain([plugin])
    audio = noise_signal(channels, int(SECONDS * sample_rate), seed=channels * sample_rate)
    one_shot = chain(audio, sample_rate)
    reference = pedalboard.Pedalboard([plugin])(audio, sample_rate)
    assert one_shot.shape == audio.shape
    assert_close(one_shot, reference, f"{name}: chain(x) vs pedalboard.Pedalboard([plugin])(x)")
    assert np.abs(one_shot - audio).max() > 1e-3, f"{name} with {SETTINGS.get(name, {})} leaves the test signal as is"

    for pattern in (RANDOM, 100, 512, 4096, 8192, 10000):
        streamed = stream(chain, audio, sample_rate, pattern, seed=len(name))
        assert_close(streamed, one_shot, f"{name}: streamed in blocks of {pattern} vs one-shot")
        assert_close(streamed, reference, f"{name}: streamed in blocks of {pattern} vs pedalboard")

    if channels == 1 and name not in EXPENSIVE_PER_CALL:
        short = audio[:, :3000]
        assert_close(stream(chain, short, sample_rate, 1), chain(short, sample_rate), f"{name}: one-sample blocks")


@pytest.mark.parametrize("name", STREAMABLE)
def test_stream_survives_a_block_larger_than_any_before(name: str, impulse_response: Path) -> None:
    """Blocks of 1000 and 500 samples, then one of 9000, then 512s: the 9000-sample block is larger than
    any before it and than pedalboard's default buffer size (8192).  Streaming must not care."""
    chain = Chain([build(name, impulse_response)])
    audio = noise_signal(2, 22050, seed=31)
    one_shot = chain(audio, 44100)
    latency = chain.latency_at(44100, 2)
    padded = np.concatenate([audio, np.zeros((2, latency), np.float32)], axis=1)
    raw = stream_raw(chain, padded, 44100, [1000, 500, 9000] + [512] * 100)
    assert_close(raw[:, latency:], one_shot, f"{name}: 1000, 500, then a 9000-sample block")


@pytest.mark.parametrize("name", ["Reverb", "BrickwallLimiter"])
@pytest.mark.parametrize("first", [1, 2])
def test_stereo_stream_may_start_with_tiny_blocks(name: str, first: int) -> None:
    """A first streamed block no longer than the channel count ((2, 1) or (2, 2)) must still be channels-first.

    pedalboard guesses the layout of such arrays (the smaller side as channels, square arrays refused) and
    forgets the layout on reset(); the engine has to keep them unambiguous.
    """
    chain = Chain([build(name, Path())])
    audio = noise_signal(2, 8000, seed=3)
    one_shot = chain(audio, 44100)
    latency = chain.latency_at(44100, 2)
    padded = np.concatenate([audio, np.zeros((2, latency), np.float32)], axis=1)
    raw = stream_raw(chain, padded, 44100, [first] + [512] * 100)
    assert_close(raw[:, latency:], one_shot, f"{name}: stereo stream starting with a block of {first}")


@pytest.mark.parametrize("length", [1, 2, 3])
def test_one_shot_of_a_few_stereo_samples(length: int) -> None:
    """A (2, 1) or (2, 2) buffer is stereo: the Reverb (causal) gives the start of the longer render."""
    chain = Chain([pedalboard.Reverb(room_size=0.9)])
    audio = noise_signal(2, 1000, seed=19)
    full = chain(audio, 44100)
    assert_close(chain(audio[:, :length], 44100), full[:, :length], f"one-shot of {length} stereo samples")


# --- 2. plugins that cannot stream -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NON_STREAMABLE)
def test_non_streamable_refuses_streaming_but_runs_one_shot(name: str) -> None:
    plugin = build(name, Path())
    chain = Chain([pedalboard.Gain(-1), plugin])
    audio = noise_signal(2, 22050, seed=5)
    assert not chain.streamable
    with pytest.raises(StreamingError, match=name):
        chain.process(audio, 44100, reset=False)
    nested = Chain([Chain([plugin])])
    with pytest.raises(StreamingError, match=name):
        nested.process(audio, 44100, reset=False)
    out = chain(audio, 44100)
    assert out.shape == audio.shape
    assert np.isfinite(out).all()
    assert_close(out, pedalboard.Pedalboard([pedalboard.Gain(-1), plugin])(audio, 44100), f"{name} one-shot")


# --- 3. latency ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LATENT)
def test_latent_plugins_delay_stream_by_exactly_their_latency(name: str) -> None:
    chain = Chain([build(name, Path())])
    audio = noise_signal(2, 22050, seed=11)
    latency = chain.latency_at(44100, 2)
    assert latency > 0
    assert chain.latency == latency
    one_shot = chain(audio, 44100)
    padded = np.concatenate([audio, np.zeros((2, latency), np.float32)], axis=1)
    sizes = [int(n) for n in np.random.default_rng(17).integers(3, 5000, 200)]
    raw = stream_raw(chain, padded, 44100, sizes)  # checks len(out) == len(block) on every call
    assert raw.shape == padded.shape
    assert not raw[:, :latency].any(), "the first `latency` streamed samples should be the delay's silence"
    assert_close(raw[:, latency:], one_shot, f"{name}: streamed output shifted back by {latency}")
    assert np.abs(raw[:, latency : latency + 2000]).max() > 1e-3


def test_latency_block_lengths_mono_1d() -> None:
    chain = Chain([pedalboard.BrickwallLimiter(ceiling_db=-12), pedalboard.Reverb()])
    audio = noise_signal(1, 20000, seed=2)[0]
    chain.reset()
    rng = np.random.default_rng(23)
    start = 0
    while start < audio.size:
        block = audio[start : start + int(rng.integers(1, 3000))]
        out = chain.process(block, 48000, reset=False)
        assert out.shape == block.shape
        start += block.size
    assert chain.latency == int(round(0.005 * 48000))  # BrickwallLimiter's default 5 ms lookahead


# --- 4. chain semantics ----------------------------------------------------------------------------------------------


def test_mono_1d_in_gives_1d_out() -> None:
    audio = noise_signal(1, 4000, seed=1)[0]
    chain = Chain([pedalboard.Gain(gain_db=-6)])
    out = chain(audio, 44100)
    assert out.shape == audio.shape
    assert_close(out, audio * np.float32(10 ** (-6 / 20)), "Gain -6 dB")
    assert chain.process(audio[:100], 44100, reset=False).shape == (100,)


def test_channels_last_input_raises() -> None:
    chain = Chain([pedalboard.Gain(-6)])
    with pytest.raises(ValueError, match="channels-last"):
        chain(noise_signal(2, 4000).T, 44100)
    with pytest.raises(ValueError, match="1-D .* or 2-D"):
        chain(np.zeros((1, 2, 100), np.float32), 44100)


def test_integer_samples_are_refused_as_pedalboard_does() -> None:
    """int16 PCM (scipy.io.wavfile's) is not taken as amplitudes 32767 x full scale; float64 is processed."""
    chain = Chain([pedalboard.Gain(-6)])
    for dtype in (np.int16, np.int32, np.uint8, bool):
        with pytest.raises(ValueError, match=f"audio is {np.dtype(dtype)}; .*float32 or float64"):
            chain(np.zeros((2, 100), dtype), 44100)
    assert chain(np.full((2, 100), 0.5), 44100).dtype == np.float32


def test_chain_is_list_like() -> None:
    gain, comp, verb = pedalboard.Gain(-3), pedalboard.Compressor(threshold_db=-20), pedalboard.Reverb()
    chain = Chain([gain], name="vocal")
    chain.append(verb, id="room", wet=0.25)
    chain.insert(1, comp, id="comp")
    assert len(chain) == 3
    assert list(chain) == [gain, comp, verb]
    assert chain[1] is comp and chain[-1] is verb
    assert chain["comp"] is comp and chain["room"] is verb
    assert chain.index(verb) == 2
    assert chain.step("room").wet == 0.25
    text = repr(chain)
    assert text.startswith("<pedalchain.Chain 'vocal' with 3 steps")
    assert "Compressor" in text and "id=comp" in text and "wet=0.25" in text
    with pytest.raises(KeyError, match="comp, room|'comp', 'room'"):
        chain["nope"]
    with pytest.raises(ValueError):
        chain.index(pedalboard.Gain())
    del chain[0]
    assert list(chain) == [comp, verb] and len(chain) == 2
    chain.remove(comp)
    assert list(chain) == [verb]


def test_chain_type_checks_on_insert() -> None:
    chain = Chain()
    with pytest.raises(TypeError, match="str"):
        chain.append("Gain")
    with pytest.raises(TypeError):
        chain.insert(0, 3.0)
    with pytest.raises(TypeError):
        Chain([pedalboard.Gain(), None])
    with pytest.raises(ValueError, match="wet"):
        chain.append(pedalboard.Gain(), wet=1.5)
    assert len(chain) == 0


def test_edits_after_processing_take_effect() -> None:
    audio = noise_signal(2, 4000, seed=4)
    chain = Chain([pedalboard.Gain(-6)])
    before = chain(audio, 44100)
    chain.append(pedalboard.Gain(-6))
    assert_close(chain(audio, 44100), before * np.float32(10 ** (-6 / 20)), "after append", atol=1e-6)
    del chain[0]
    assert_close(chain(audio, 44100), before, "after del")


def test_wet_blend_is_linear_for_latency_free_plugin() -> None:
    audio = noise_signal(2, 22050, seed=6)
    dist = pedalboard.Distortion(drive_db=20)
    chain = Chain()
    chain.append(dist, wet=0.3)
    expected = 0.3 * pedalboard.Pedalboard([dist])(audio, 44100) + 0.7 * audio
    assert_close(chain(audio, 44100), expected, "wet=0.3 one-shot")
    assert_close(stream(chain, audio, 44100, 700), expected, "wet=0.3 streamed")


def test_wet_blend_is_latency_aligned() -> None:
    audio = noise_signal(2, 22050, seed=7)
    limiter = pedalboard.BrickwallLimiter(ceiling_db=-18)
    chain = Chain([Step(limiter, wet=0.5)])
    assert chain.latency_at(44100, 2) > 0
    expected = 0.5 * pedalboard.Pedalboard([limiter])(audio, 44100) + 0.5 * audio
    assert_close(chain(audio, 44100), expected, "wet=0.5 limiter one-shot")
    assert_close(stream(chain, audio, 44100, RANDOM, seed=3), expected, "wet=0.5 limiter streamed")


def test_bypass_leaves_audio_untouched() -> None:
    audio = noise_signal(2, 8000, seed=8)
    chain = Chain([Step(pedalboard.Gain(12), bypass=True), Step(pedalboard.BrickwallLimiter(), bypass=True)])
    assert np.array_equal(chain(audio, 44100), audio)
    assert chain.latency_at(44100, 2) == 0
    assert np.array_equal(stream(chain, audio, 44100, 333), audio)
    chain.step(0).bypass = False  # the Step objects are live
    assert_close(chain(audio, 44100), audio * np.float32(10 ** (12 / 20)), "un-bypassed gain", atol=1e-5)


def test_step_keywords_changed_after_a_run_apply_from_the_next_call() -> None:
    audio = noise_signal(2, 8000, seed=8)
    limiter = pedalboard.BrickwallLimiter(ceiling_db=-12)
    chain = Chain([pedalboard.Gain(-6)])
    chain.append(limiter, id="limit", bypass=True)
    assert chain.latency_at(44100, 2) == 0
    assert_close(chain(audio, 44100), pedalboard.Gain(-6)(audio, 44100), "limiter bypassed")
    chain.step("limit").bypass = False  # the limiter's latency joins: the output must stay aligned
    expected = pedalboard.Pedalboard([pedalboard.Gain(-6), limiter])(audio, 44100)
    assert_close(chain(audio, 44100), expected, "limiter on")
    assert chain.latency > 0
    chain.step("limit").wet = 0.5
    assert_close(chain(audio, 44100), 0.5 * expected + 0.5 * pedalboard.Gain(-6)(audio, 44100), "wet 0.5")
    assert_close(stream(chain, audio, 44100, 700), 0.5 * expected + 0.5 * pedalboard.Gain(-6)(audio, 44100),
                 "wet 0.5 streamed")


def test_a_nested_chain_changed_after_a_run_keeps_the_outer_one_aligned() -> None:
    audio = noise_signal(2, 8000, seed=9)
    limiter = pedalboard.BrickwallLimiter(ceiling_db=-12)
    inner, branch = Chain([pedalboard.Gain(0)]), Chain([pedalboard.Gain(-6)])
    outer = Chain([inner, Parallel([branch, Chain([pedalboard.Gain(-6)])])])
    half = np.float32(10 ** (-6 / 20))
    assert_close(outer(audio, 44100), 2 * half * audio, "before")
    inner.append(limiter)  # latency 221 samples, which the outer chain must now remove
    branch.append(pedalboard.BrickwallLimiter(ceiling_db=-12))  # the other branch must be delayed to align
    limited = pedalboard.Pedalboard([limiter])(audio, 44100)
    expected = pedalboard.Pedalboard([pedalboard.BrickwallLimiter(ceiling_db=-12)])(limited * half, 44100)
    expected = expected + limited * half
    assert_close(outer(audio, 44100), expected, "after the nested changes")
    assert outer.latency == 2 * inner.latency > 0


def test_nested_chain_equals_flat_pedalboard() -> None:
    audio = noise_signal(2, 22050, seed=9)
    gain, dist, limiter = pedalboard.Gain(3), pedalboard.Distortion(drive_db=10), pedalboard.BrickwallLimiter(-6)
    chain = Chain([gain, Chain([dist, Chain([limiter])])])
    expected = pedalboard.Pedalboard([gain, dist, limiter])(audio, 44100)
    assert_close(chain(audio, 44100), expected, "nested one-shot")
    assert_close(stream(chain, audio, 44100, 1000), expected, "nested streamed")
    assert chain.latency == int(round(0.005 * 44100))  # BrickwallLimiter's default 5 ms lookahead


def test_parallel_sums_branches_with_latencies_aligned() -> None:
    audio = noise_signal(2, 22050, seed=10)
    limiter, gain = pedalboard.BrickwallLimiter(ceiling_db=-12), pedalboard.Gain(-6)
    chain = Chain([Parallel([Chain([limiter]), Chain([gain])])])
    expected = pedalboard.Pedalboard([limiter])(audio, 44100) + pedalboard.Pedalboard([gain])(audio, 44100)
    assert chain.latency_at(44100, 2) == Chain([limiter]).latency_at(44100, 2) > 0
    assert_close(chain(audio, 44100), expected, "parallel one-shot")
    assert_close(stream(chain, audio, 44100, 512), expected, "parallel streamed")
    assert_close(stream(chain, audio, 44100, RANDOM, seed=8), expected, "parallel streamed, random blocks")


def test_native_mix_inside_chain_streams_correctly() -> None:
    audio = noise_signal(2, 22050, seed=12)
    limiter, gain = pedalboard.BrickwallLimiter(ceiling_db=-12), pedalboard.Gain(-6)
    mix = pedalboard.Mix([limiter, pedalboard.Chain([gain, pedalboard.Invert()])])
    chain = Chain([pedalboard.HighpassFilter(100), mix])
    expected = pedalboard.Pedalboard([pedalboard.HighpassFilter(100), mix])(audio, 44100)
    assert_close(chain(audio, 44100), expected, "Mix one-shot")
    for pattern in (512, 4096, RANDOM):
        assert_close(stream(chain, audio, 44100, pattern, seed=2), expected, f"Mix streamed in blocks of {pattern}")


def test_from_pedalboard_matches_the_board() -> None:
    audio = noise_signal(2, 22050, seed=13)
    board = pedalboard.Pedalboard(
        [pedalboard.HighpassFilter(120), pedalboard.Compressor(threshold_db=-20, ratio=3), pedalboard.Reverb()]
    )
    chain = Chain.from_pedalboard(board, name="board")
    assert len(chain) == 3 and chain.name == "board"
    assert list(chain) == list(board)
    expected = board(audio, 44100)
    assert_close(chain(audio, 44100), expected, "from_pedalboard one-shot")
    assert_close(stream(chain, audio, 44100, 2048), expected, "from_pedalboard streamed")


# --- 5. sample-rate validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda f: Chain([f]), id="flat"),
        pytest.param(lambda f: Chain([pedalboard.Gain(), Chain([f])]), id="nested"),
        pytest.param(lambda f: Chain([Parallel([Chain([f]), Chain([pedalboard.Gain()])])]), id="parallel"),
        pytest.param(lambda f: Chain([pedalboard.Mix([f, pedalboard.Gain()])]), id="native-mix"),
    ],
)
def test_cutoff_above_nyquist_is_refused(make) -> None:
    chain = make(pedalboard.LowpassFilter(cutoff_frequency_hz=20000))
    with pytest.raises(ParameterError, match="cutoff_frequency_hz.*4000 Hz"):
        chain.latency_at(8000)
    with pytest.raises(ParameterError, match="cutoff_frequency_hz"):
        chain(noise_signal(2, 4000), 8000)
    with pytest.raises(ParameterError, match="cutoff_frequency_hz"):
        chain.process(noise_signal(2, 4000), 8000, reset=False)
    out = chain(noise_signal(2, 4000), 44100)
    assert out.shape == (2, 4000) and np.isfinite(out).all()


def test_min_rate_passes_a_step_over_below_its_rate() -> None:
    shelf = pedalboard.HighShelfFilter(cutoff_frequency_hz=9000, gain_db=6)
    for chain in (Chain([pedalboard.Gain(gain_db=-6), Step(shelf, min_rate_hz=22050)]),
                  Chain([pedalboard.Gain(gain_db=-6), Chain([Step(shelf, min_rate_hz=22050)])])):
        low = noise_signal(2, 8000)
        expected = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6)])(low, 16000)
        assert np.array_equal(chain(low, 16000), expected)
        assert np.array_equal(stream(chain, low, 16000, 1000), expected)
        audio = noise_signal(2, 22050, seed=3)
        full = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6), shelf])(audio, 44100)
        assert np.array_equal(chain(audio, 44100), full), "at and above min_rate the step runs again"
        assert np.abs(full - pedalboard.Gain(gain_db=-6)(audio, 44100)).max() > 1e-2  # the shelf acts there
    flat = Chain([Step(shelf, min_rate_hz=22050, id="air")])
    assert flat.analyze_input(noise_signal(2, 8000), 16000) == ["air: not run at 16000 Hz (min_rate 22050 Hz)"]
    assert flat.passed_over(22050) == []
    with pytest.raises(ValueError, match="min_rate_hz"):
        Step(shelf, min_rate_hz=0)


# --- 6. YAML round trips ---------------------------------------------------------------------------------------------

ROUND_TRIP_YAML = """\
name: round trip
description: every kind of step
loudness: -16 LUFS
steps:
  - plugin: HighpassFilter
    cutoff_frequency_hz: 80 Hz
  - plugin: LadderFilter
    mode: HPF24
    cutoff_hz: 1.5 kHz
    resonance: 0.3
    id: ladder
  - parallel:
      - - plugin: BrickwallLimiter
          ceiling_db: -12
      - - plugin: Gain
          gain_db: -6
        - plugin: Delay
          delay_seconds: 50 ms
          mix: 0.3
  - chain:
      - plugin: Distortion
        drive_db: 12
      - plugin: Convolution
        impulse_response_filename: ir/room.wav
        mix: 0.5
    wet: 0.4
    id: grit
  - plugin: Reverb
    room_size: 0.8
    bypass: true
  - plugin: Compressor
    threshold_db: -20
    ratio: 4
    wet: 0.75
    min_rate: 22.05 kHz
"""


def test_yaml_round_trip(tmp_path: Path) -> None:
    source_dir = tmp_path / "chains"
    (source_dir / "ir").mkdir(parents=True)
    write_impulse_response(source_dir / "ir" / "room.wav")
    source = source_dir / "original.yaml"
    source.write_text(ROUND_TRIP_YAML, encoding="utf-8")

    original = chain_from_yaml(ROUND_TRIP_YAML, source=source)
    assert original.step("ladder").processor.mode == pedalboard.LadderFilter.Mode.HPF24
    target = source_dir / "copy.yaml"
    save_chain(original, target)
    text = target.read_text(encoding="utf-8")
    assert "mode: HPF24" in text, "enums are saved by member name"
    assert "!!python" not in text
    data = yaml.safe_load(text)
    assert data["steps"][3]["chain"][1]["impulse_response_filename"] == "ir/room.wav", "saved relative to the YAML"
    assert data["steps"][2]["parallel"][1][1]["delay_seconds"] == 0.05

    reloaded = load_chain(target)
    assert chain_to_data(reloaded, source_dir) == chain_to_data(original, source_dir)
    assert reloaded.name == "round trip" and reloaded.loudness_lufs == -16
    assert reloaded.description == "every kind of step"
    assert [s.id for s in reloaded.steps] == [None, "ladder", None, "grit", None, None]
    assert [s.wet for s in reloaded.steps] == [1.0, 1.0, 1.0, 0.4, 1.0, 0.75]
    assert [s.bypass for s in reloaded.steps] == [False, False, False, False, True, False]
    assert [s.min_rate_hz for s in reloaded.steps] == [None] * 5 + [22050.0]
    assert isinstance(reloaded[2], Parallel) and len(reloaded[2].branches) == 2
    assert isinstance(reloaded["grit"], Chain) and len(reloaded["grit"]) == 2

    audio = noise_signal(2, 22050, seed=14)
    expected = original(audio, 44100)
    assert np.array_equal(reloaded(audio, 44100), expected)
    assert np.abs(expected - audio).max() > 1e-2

    # a second save of the reloaded chain writes the same file
    again = source_dir / "again.yaml"
    save_chain(reloaded, again)
    assert again.read_text(encoding="utf-8") == text


def test_yaml_saved_elsewhere_still_finds_the_impulse_response(tmp_path: Path) -> None:
    ir = write_impulse_response(tmp_path / "room.wav")
    chain = Chain([build_builtin("Convolution", {"impulse_response_filename": str(ir), "mix": 0.5})])
    (tmp_path / "elsewhere").mkdir()
    target = tmp_path / "elsewhere" / "conv.yaml"
    save_chain(chain, target)
    saved = yaml.safe_load(target.read_text(encoding="utf-8"))["steps"][0]["impulse_response_filename"]
    assert (target.parent / saved).resolve() == ir.resolve()
    audio = noise_signal(2, 8000, seed=15)
    assert np.array_equal(load_chain(target)(audio, 44100), chain(audio, 44100))


# --- 7. the file runner ----------------------------------------------------------------------------------------------


def _write_input(path: Path, subtype: str, seconds: float = 1.0, sample_rate: int = 44100) -> np.ndarray:
    audio = noise_signal(2, int(seconds * sample_rate), seed=21)
    sf.write(str(path), audio.T, sample_rate, subtype=subtype)
    return sf.read(str(path), dtype="float32", always_2d=True)[0].T  # what the runner will read


def _limiter_reverb() -> Chain:
    return Chain([pedalboard.BrickwallLimiter(ceiling_db=-6), pedalboard.Reverb(room_size=0.7)])


def test_runner_output_is_block_size_invariant_float(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    audio = _write_input(source, "FLOAT")
    chain = _limiter_reverb()
    outputs = {}
    for block in (64, 1000, 8192, 65536):
        target = tmp_path / f"out-{block}.wav"
        summary = process_file(chain, source, target, RunOptions(block=block))
        assert summary.latency_samples == chain.latency_at(44100, 2) > 0
        assert summary.subtype == "FLOAT"
        outputs[block] = target.read_bytes()
    assert len(set(outputs.values())) == 1, "output files differ between block sizes"
    rendered, rate = sf.read(str(tmp_path / "out-64.wav"), dtype="float32", always_2d=True)
    assert rate == 44100
    assert_close(rendered.T, chain(audio, 44100), "file runner vs one-shot chain(x)")


def test_runner_output_is_block_size_invariant_pcm24(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    _write_input(source, "PCM_24", seconds=0.5)
    chain = _limiter_reverb()
    rendered = []
    for block in (64, 1000, 8192, 65536):
        target = tmp_path / f"out-{block}.wav"
        process_file(chain, source, target, RunOptions(block=block))
        assert sf.info(str(target)).subtype == "PCM_24"
        rendered.append(sf.read(str(target), dtype="int32")[0])
    for block, ints in zip((1000, 8192, 65536), rendered[1:], strict=True):
        assert np.array_equal(ints, rendered[0]), f"PCM_24 output with --block {block} differs from --block 64"
    assert np.count_nonzero(rendered[0]) > rendered[0].size * 0.9


def test_runner_tail_extends_output(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    audio = _write_input(source, "FLOAT", seconds=0.5)
    chain = _limiter_reverb()
    tail_s = 0.3
    tail = int(round(tail_s * 44100))
    target = tmp_path / "tail.wav"
    process_file(chain, source, target, RunOptions(block=1000, tail_s=tail_s))
    rendered = sf.read(str(target), dtype="float32", always_2d=True)[0].T
    assert rendered.shape == (2, audio.shape[1] + tail)
    padded = np.concatenate([audio, np.zeros((2, tail), np.float32)], axis=1)
    assert_close(rendered, chain(padded, 44100), "output with tail vs one-shot of input + silence")
    tail_rms = float(np.sqrt(np.mean(rendered[:, audio.shape[1] :] ** 2)))
    assert tail_rms > 1e-3, "the reverb tail should ring on after the input ends"


def test_a_step_that_analyses_its_input_sees_what_reaches_it() -> None:
    """Analysis is shown the steps before the analysing one rendered: after a 6 dB cut declip's rails are where the
    cut put them (analysing the chain's input, it found rails above every sample it received and repaired nothing),
    and after a step with latency a hold's phase moves with it (it used to be read off the chain's input: the repair
    then made a hold by 3 worse than the staircase itself)."""
    from pedalchain.effects.restorers.declip import Declip
    from pedalchain.effects.restorers.dequantize import Dequantize
    from pedalchain.models.restore.damage import Hold

    music = plucked_notes(2.0, 44100, 3, note_every_s=0.25, harmonics=8, decay_per_s=3.0, peak=0.9)
    clipped = np.clip(music, -0.5, 0.5)
    gain = np.float32(10 ** (-6 / 20))
    declipped = Declip().process(clipped, 44100)
    chained = Chain([pedalboard.Gain(gain_db=-6), Declip()])
    assert not np.allclose(declipped, clipped, atol=1e-3)
    assert_close(chained.process(clipped, 44100), declipped * gain, "Gain -6 dB, declip vs declip, then the gain",
                 atol=1e-4)
    assert "declip: clipping at +0.2506" in chained.analyze_input(clipped, 44100)[0]

    staircase = Hold(3).apply(music, 44100, np.random.default_rng(1))
    alone = Dequantize().process(staircase, 44100)
    after_latency = Chain([Declip(threshold=-0.01), Dequantize()])  # latency 5440: no sample reaches -0.01 dBFS
    assert after_latency.latency_at(44100) % 3 != 0
    assert_close(after_latency.process(staircase, 44100), alone, "dequantize after a latent step vs alone",
                 atol=1e-6)
    # the render leaves no state behind: the reverb starts from silence again for the real run
    reverb = pedalboard.Reverb(room_size=0.9, wet_level=0.5)
    reverberant = Chain([reverb]).process(clipped, 44100)
    assert_close(Chain([reverb, Declip(), pedalboard.Gain(gain_db=0)]).process(clipped, 44100),
                 Declip().process(reverberant, 44100), "Reverb, declip vs declip of the reverb's output", atol=1e-6)


@pytest.mark.parametrize("before", ["  - plugin: Gain\n    gain_db: -6\n",
                                    "  - plugin: PitchShift\n    semitones: 0\n  - plugin: Gain\n    gain_db: -6\n"])
def test_the_file_runner_shows_an_analysing_step_what_reaches_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 before: str) -> None:
    """From a file, the steps before it are rendered into a temporary file (streamed: memory stays bounded),
    deleted afterwards; a chain that cannot stream (PitchShift) renders them one-shot, as it renders the file."""
    import tempfile

    music = plucked_notes(2.0, 44100, 4, note_every_s=0.25, harmonics=8, decay_per_s=3.0, peak=0.9)
    clipped = np.clip(music, -0.5, 0.5)
    source = tmp_path / "in.wav"
    sf.write(str(source), clipped.T, 44100, subtype="FLOAT")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made: list[str] = []
    make = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **options: made.append(make(**options)) or made[-1])
    chain = chain_from_yaml(f"steps:\n{before}  - restorer: declip\n")
    summary = process_file(chain, source, tmp_path / "out.wav", RunOptions())
    out = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)[0].T
    assert any("declip: clipping at +0.2506" in line for line in summary.analysis), summary.analysis
    assert_close(out, chain.process(clipped, 44100), "file runner vs one-shot", atol=1e-6)
    assert not np.allclose(out, clipped * np.float32(10 ** (-6 / 20)), atol=1e-3)  # the peaks were rebuilt
    assert len(made) == (1 if chain.streamable else 0) and list(scratch.iterdir()) == []
