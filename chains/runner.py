"""The file runner: a chain applied to an audio file block by block, with bounded memory.

Streaming: the chain's ``latency`` samples at the start are dropped and as many zeros (plus the
requested tail) are fed at the end, so the output is aligned with the input and full length, and
equals one-shot processing of the whole file whatever the block size.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard
from threadpoolctl import threadpool_limits

from ..errors import AudioFileError, OutputExistsError, ParameterError, StreamingError
from .audio_io import (
    INTEGER_BITS,
    AtomicAudioWriter,
    AudioInfo,
    OutputFormat,
    choose_output_format,
    probe_audio,
    read_blocks,
)
from .engine import Chain
from .loudness import LoudnessMeter, loudness_gain_db

Progress = Callable[[float], None]
"""Called with the seconds of input audio processed so far (the CLI draws the bar)."""

TRUE_PEAK_CEILING_DBTP = -1.0
LIMITER_MAKEUP_MAX_DB = 3.0
"""Where the true-peak limiter takes loudness away, the gain is raised by what it took (measured, at most this
much), so the file lands on the target instead of under it."""
LOUDNESS_TOLERANCE_LU = 0.05
MAX_TAIL_S = 600.0
"""Longest ``--tail`` (seconds): room for any reverb or feedback delay, not for hours of output by a typo."""
TRUE_PEAK_TOLERANCE_DB = 0.02
"""The output's true peak (BS.1770's 4x interpolation, :class:`LoudnessMeter`) may exceed the ceiling by this
much; pedalboard's true-peak limiter reads peaks lower than that (up to 0.2 dB over the ceiling on drum hits), so
its ceiling is lowered by what it let through in the metering pass, and the final pass is checked."""
FINAL_PASS_ATTEMPTS = 3
"""Final passes tried, each with the limiter's ceiling lowered by what the one before let over it."""
SHORTFALL_WARNING_LU = 0.5
"""A file that lands this far under its loudness target (the limiter may not take more than
:data:`LIMITER_MAKEUP_MAX_DB`) gets a warning."""
LIMITER_PROBE_DB = 1.0
"""The second gain tried in the metering pass, above the plain one: the two readings give loudness(gain)."""


@dataclass(frozen=True)
class RunOptions:
    """How to render a file.

    Args:
        block: samples per block read, processed and written (≥ 1); the output does not depend on it.
        tail_s: seconds of reverb/delay tail to keep after the input ends (≥ 0).
        overwrite: replace an existing output file.
        container: output container (WAV, FLAC, AIFF, OGG, MP3); None = from the output extension.
        subtype: output subtype (PCM_16, PCM_24, FLOAT, ...); None = the input's, see choose_output_format.
        sanitize: replace NaN/Inf input samples with 0 instead of refusing the file.
        whole_file_limit_s: longest file (seconds) processed whole when a step cannot stream.
        measure_loudness: meter the output's integrated loudness for the summary (costs ~0.2 % of a
            core per real-time second); normalisation meters regardless.
        overlap_io: decode and encode on helper threads while the chain runs (faster for one file; batch
            workers that already fill every core turn it off to avoid oversubscription).  The output does
            not depend on it.
    """

    block: int = 8192
    tail_s: float = 0.0
    overwrite: bool = False
    container: str | None = None
    subtype: str | None = None
    sanitize: bool = False
    whole_file_limit_s: float = 900.0
    measure_loudness: bool = True
    overlap_io: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.block, int) or self.block < 1:
            raise ParameterError(
                f"block size must be a whole number of samples ≥ 1, got {self.block!r}", where="--block"
            )
        if not (math.isfinite(self.tail_s) and 0 <= self.tail_s <= MAX_TAIL_S):
            raise ParameterError(f"tail must be 0 to {MAX_TAIL_S:g} seconds, got {self.tail_s!r}", where="--tail")


@dataclass
class FileSummary:
    """What happened to one file; ``line()`` is the CLI's one-line report, ``as_dict()`` its --json."""

    input: str
    output: str
    sample_rate: int
    channels: int
    duration_s: float
    wall_s: float
    realtime_factor: float
    format: str
    subtype: str
    latency_samples: int
    peak_dbfs: float
    lufs: float | None
    lufs_before_normalization: float | None = None
    normalization_gain_db: float | None = None
    true_peak_limited: bool | None = None
    clipped_samples: int = 0
    samples_above_full_scale: int = 0
    nonfinite_replaced: int = 0
    warnings: list[str] = field(default_factory=list)
    analysis: list[str] = field(default_factory=list)
    """What steps that look at the whole input first (``restorer: auto``) found and decided."""

    def as_dict(self) -> dict[str, Any]:
        return {key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in asdict(self).items()}

    def line(self) -> str:
        # integrated loudness gates 400 ms blocks: a shorter file has none, a silent one none above -70 LUFS
        unmetered = "too short for loudness (< 0.4 s)" if self.duration_s < 0.4 else "silent"
        if self.lufs is None:
            lufs = "LUFS not measured"
        else:
            lufs = f"{self.lufs:.1f} LUFS" if math.isfinite(self.lufs) else unmetered
        if self.lufs_before_normalization is not None:
            limiter = ", then true-peak limited" if self.true_peak_limited else ""
            if math.isfinite(self.lufs_before_normalization):
                lufs = (f"chain out {self.lufs_before_normalization:.1f} LUFS -> {lufs} "
                        f"({self.normalization_gain_db:+.1f} dB{limiter})")
            else:
                lufs = f"{unmetered}: loudness left as it was"
        peak = f"{self.peak_dbfs:.1f} dBFS" if math.isfinite(self.peak_dbfs) else "-inf dBFS"
        analysis = f" [{'; '.join(self.analysis)}]" if self.analysis else ""
        return (
            f"{self.output}: {self.duration_s:.1f} s in {self.wall_s:.1f} s ({self.realtime_factor:.0f}x real time), "
            f"peak {peak}, {lufs}, {self.clipped_samples} clipped{analysis}"
        )


def default_output_path(input_path: Path, chain_stem: str, output: Path | None, is_folder: bool) -> Path:
    """``song.wav`` + chain ``my`` -> ``song.my.wav`` beside it (or in folder ``output``); lossy inputs -> .wav."""
    suffix = input_path.suffix.lower()
    suffix = ".wav" if suffix in (".mp3", ".ogg") else input_path.suffix
    if output is None:
        return input_path.with_name(f"{input_path.stem}.{chain_stem}{suffix}")
    if is_folder:
        return output / f"{input_path.stem}{suffix}"
    return output


def check_paths(input_path: Path, output_path: Path, overwrite: bool) -> None:
    """Refuse an output that is the input, that exists (unless ``overwrite``), or whose folder is unusable."""
    if output_path.resolve() == input_path.resolve() or (
        output_path.exists() and input_path.exists() and output_path.samefile(input_path)
    ):
        raise OutputExistsError("output path is the input file; choose another with -o", where=output_path)
    if output_path.exists() and not overwrite:
        raise OutputExistsError("output exists; pass --overwrite to replace it", where=output_path)
    folder = output_path.parent
    if not folder.is_dir():
        raise AudioFileError("output folder does not exist", where=folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AudioFileError("output folder is not writable", where=folder)


def process_file(
    chain: Chain,
    input_path: str | Path,
    output_path: str | Path,
    options: RunOptions = RunOptions(),
    progress: Progress | None = None,
) -> FileSummary:
    """Render ``input_path`` through ``chain`` into ``output_path`` (atomically); see :class:`RunOptions`."""
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    info = probe_audio(input_path)
    check_paths(input_path, output_path, options.overwrite)
    fmt = choose_output_format(info, output_path, options.container, options.subtype)
    latency = chain.latency_at(info.sample_rate, info.channels)  # also checks rate-dependent settings
    if not chain.streamable and info.duration_s > options.whole_file_limit_s:
        raise StreamingError(
            f"{chain._not_streamable_reason()}; files up to {options.whole_file_limit_s / 60:g} min are processed "
            f"whole, this one is {info.duration_s / 60:.1f} min: split it or remove that step",
            where=input_path,
        )
    analysis = chain.analyze_input(input_path, info.sample_rate)
    render = _Render(chain, info, options, progress)
    target = chain.loudness_lufs
    # The meter's small matrix products only slow down with BLAS threads fighting the chain for cores.
    with threadpool_limits(limits=1, user_api="blas"):
        measured, summary_extra = render.render(output_path, fmt, target)
    wall = time.perf_counter() - started
    summary = FileSummary(
        input=str(input_path), output=str(output_path), sample_rate=info.sample_rate, channels=info.channels,
        duration_s=info.duration_s, wall_s=wall, realtime_factor=info.duration_s / max(wall, 1e-9),
        format=fmt.container, subtype=fmt.subtype, latency_samples=latency,
        peak_dbfs=20.0 * math.log10(measured.peak) if measured.peak > 0 else -math.inf,
        lufs=measured.meter.integrated_lufs() if measured.meter else None,
        clipped_samples=measured.clipped, samples_above_full_scale=measured.over_full_scale,
        nonfinite_replaced=render.nonfinite, analysis=analysis, **summary_extra,
    )
    if summary.clipped_samples:
        summary.warnings.append(
            f"{summary.clipped_samples} samples clipped at full scale in the {fmt.subtype} output (peaks a repair "
            "rebuilt above it are lost): write a float file (--subtype FLOAT) or lower the level in the chain"
        )
    elif summary.samples_above_full_scale:
        summary.warnings.append(
            f"{summary.samples_above_full_scale} samples above 0 dBFS (kept in float; would clip in integer formats)"
        )
    if render.nonfinite:
        summary.warnings.append(f"{render.nonfinite} NaN/Inf input samples replaced with 0 (--sanitize)")
    return summary


@dataclass
class _Written:
    meter: LoudnessMeter | None
    clipped: int
    over_full_scale: int
    peak: float


class _Render:
    """One file's rendering: runs the chain (streamed or whole) and hands output blocks to a sink."""

    def __init__(self, chain: Chain, info: AudioInfo, options: RunOptions, progress: Progress | None) -> None:
        self.chain, self.info, self.options, self.progress = chain, info, options, progress
        self.nonfinite = 0

    def _checked(self, block: np.ndarray, position: int) -> np.ndarray:
        if self.info.subtype in INTEGER_BITS:  # integer PCM decodes to finite samples: nothing to scan
            return block
        finite = np.isfinite(block)
        if finite.all():
            return block
        if not self.options.sanitize:
            first = position + int(np.argmin(finite.all(axis=0)))
            raise AudioFileError(
                f"contains NaN/Inf samples (first at {first / self.info.sample_rate:.3f} s); "
                "pass --sanitize to replace them with silence",
                where=self.info.path,
            )
        self.nonfinite += int(finite.size - np.count_nonzero(finite))
        return np.where(finite, block, np.float32(0.0))

    def run(self, sink: Callable[[np.ndarray], None]) -> None:
        """Feed the whole file (plus tail) through the chain; ``sink`` gets aligned output blocks."""
        info, block_size, chain = self.info, self.options.block, self.chain
        tail = int(round(self.options.tail_s * info.sample_rate))
        position = 0
        if not chain.streamable:
            blocks = []
            for block in read_blocks(info, block_size):
                blocks.append(self._checked(block, position))
                position += block.shape[1]
            blocks.append(np.zeros((info.channels, tail), np.float32))
            out = chain(np.concatenate(blocks, axis=1), info.sample_rate, buffer_size=block_size)
            for start in range(0, out.shape[1], block_size):
                sink(self._same_channels(out[:, start : start + block_size]))
            if self.progress:
                self.progress(info.duration_s)
            return
        to_skip = chain.latency_at(info.sample_rate, info.channels)  # resets the chain

        def emit(out: np.ndarray) -> None:
            nonlocal to_skip
            if to_skip:
                dropped = min(to_skip, out.shape[1])
                out, to_skip = out[:, dropped:], to_skip - dropped
            if out.shape[1]:
                sink(self._same_channels(out))

        source = read_blocks(info, block_size)
        for block in _read_ahead(source) if self.options.overlap_io else source:
            emit(chain.process(self._checked(block, position), info.sample_rate, reset=False))
            position += block.shape[1]
            if self.progress:
                self.progress(position / info.sample_rate)
        pending = tail + chain.latency
        while pending > 0:
            count = min(block_size, pending)
            emit(chain.process(np.zeros((info.channels, count), np.float32), info.sample_rate, reset=False))
            pending -= count
            if self.progress:  # where a batch that is stopping stops (a tail can take as long as the file)
                self.progress(info.duration_s)

    def _same_channels(self, out: np.ndarray) -> np.ndarray:
        if out.shape[0] != self.info.channels:
            raise StreamingError(
                f"the chain turns {self.info.channels} channels into {out.shape[0]}; output keeps the input's "
                "channel count, so use steps that preserve it",
                where=self.info.path,
            )
        return out

    def _finite(self, peak: float) -> None:
        """``peak``: a written block's largest |x|, NaN or inf when it held such samples."""
        if not math.isfinite(peak):
            raise StreamingError(
                "the chain produced NaN/Inf samples: a step is unstable with these settings "
                "(feedback ≥ 1, a filter cutoff at Nyquist?)",
                where=self.info.path,
            )

    def render(self, path: Path, fmt: OutputFormat, target_lufs: float | None) -> tuple[_Written, dict[str, Any]]:
        """Render to ``path``: in one pass, or in two when a loudness target is set."""
        if target_lufs is not None:
            return self.normalized(path, fmt, target_lufs)
        info = self.info
        measure = self.options.measure_loudness
        meter = LoudnessMeter(info.sample_rate, info.channels, true_peak=False) if measure else None
        return self.to_file(path, fmt, meter), {}

    def to_file(self, path: Path, fmt: OutputFormat, meter: LoudnessMeter | None) -> _Written:
        """Render straight to ``path`` (atomically), feeding ``meter`` (if any) what is written."""
        writer = AtomicAudioWriter(path, fmt, self.info.sample_rate, self.info.channels)

        def sink(out: np.ndarray) -> None:
            self._finite(writer.write(out))  # a non-finite block aborts the file: the partial output is discarded
            if meter is not None:
                meter.add(out)

        self._write(self.run, sink, writer)
        return _Written(meter, writer.clipped, writer.over_full_scale, writer.peak)

    def _write(
        self, produce: Callable[[Callable[[np.ndarray], None]], None], sink: Callable[[np.ndarray], None],
        writer: AtomicAudioWriter,
    ) -> None:
        """``produce(sink)`` then commit ``writer``; on a helper thread when overlapping I/O."""
        if self.options.overlap_io:
            _write_in_background(produce, sink, writer)
            return
        try:
            produce(sink)
            writer.commit()
        except BaseException:
            writer.discard()
            raise

    def _rendered_all(self, _seconds: float = 0.0) -> None:
        """Progress during the passes after the first: the bar stays full, and a batch that is stopping stops
        here too (a metering or final pass over an hour of audio takes minutes)."""
        if self.progress:
            self.progress(self.info.duration_s)

    def _finish(self, scratch: AudioInfo, gain_db: float, ceiling_dbtp: float | None) -> _Render:
        """The second pass over the scratch file: the gain, then (a ``ceiling_dbtp``) the true-peak limiter."""
        finish = Chain([pedalboard.Gain(gain_db)])
        if ceiling_dbtp is not None:
            finish.append(pedalboard.BrickwallLimiter(ceiling_db=ceiling_dbtp, true_peak=True))
        return _Render(finish, scratch, RunOptions(block=self.options.block, overlap_io=self.options.overlap_io),
                       self._rendered_all)

    def _limited_gain(self, scratch: AudioInfo, gain_db: float, target_lufs: float) -> tuple[float, float]:
        """The gain that brings the limited second pass to ``target_lufs``, and the limiter's ceiling.  One
        metering pass over the scratch file runs the limiter at ``gain_db`` and, on a second thread, at
        :data:`LIMITER_PROBE_DB` more; the loudness they reach gives the slope (a limiter gives less than 1 LU per
        dB) for a linear step, at most :data:`LIMITER_MAKEUP_MAX_DB` above ``gain_db``; where the gain found misses
        the target by more than :data:`LOUDNESS_TOLERANCE_LU`, a second metering pass gives one more step (a
        limiter's loudness is not linear in its gain).  The ceiling is lowered by the most the limiter let the true
        peak over it (:data:`TRUE_PEAK_TOLERANCE_DB`)."""
        from concurrent.futures import ThreadPoolExecutor

        rate, channels = self.info.sample_rate, self.info.channels

        def reading(gain: float, ceiling: float = TRUE_PEAK_CEILING_DBTP) -> tuple[float, float]:
            limiter = pedalboard.BrickwallLimiter(ceiling_db=ceiling, true_peak=True)
            meter = LoudnessMeter(rate, channels)
            for block in read_blocks(scratch, self.options.block):
                meter.add(limiter.process(block * np.float32(10 ** (gain / 20)), rate, reset=False))
                self._rendered_all()
            return meter.integrated_lufs(), meter.true_peak_dbtp()

        with ThreadPoolExecutor(2) as pool:  # the limiter releases the GIL: the two readings cost about one
            (reached, peak), (probe, probe_peak) = pool.map(reading, (gain_db, gain_db + LIMITER_PROBE_DB))
        over = max(peak, probe_peak, TRUE_PEAK_CEILING_DBTP) - TRUE_PEAK_CEILING_DBTP
        ceiling = TRUE_PEAK_CEILING_DBTP - (over + TRUE_PEAK_TOLERANCE_DB if over > TRUE_PEAK_TOLERANCE_DB else 0.0)
        lowered = TRUE_PEAK_CEILING_DBTP - ceiling
        if not (math.isfinite(reached) and math.isfinite(probe)) or (
                not lowered and abs(target_lufs - reached) <= LOUDNESS_TOLERANCE_LU):
            return gain_db, ceiling
        slope = min(max((probe - reached) / LIMITER_PROBE_DB, 0.1), 1.0)
        # a brickwall limiter scales: its ceiling lowered by d dB gives the output of an input d dB louder, d dB down
        highest = gain_db + LIMITER_MAKEUP_MAX_DB
        gain = min(gain_db + (target_lufs - reached + lowered) / slope - lowered, highest)
        if gain < highest:  # at the most limiting allowed, the file stays under the target (a warning says so)
            landed = reading(gain, ceiling)[0]
            if math.isfinite(landed) and abs(target_lufs - landed) > LOUDNESS_TOLERANCE_LU:
                gain = min(gain + (target_lufs - landed) / slope, highest)
        return gain, ceiling

    def normalized(self, path: Path, fmt: OutputFormat, target_lufs: float) -> tuple[_Written, dict[str, Any]]:
        """Two passes: render to a float scratch file while metering loudness and true peak; then apply the
        gain, and where that would push the true peak over the ceiling, a true-peak brickwall limiter.  The
        limiter lowers the loudness it was given, so then the gain is chosen by :meth:`_limited_gain`."""
        scratch_path = path.with_name(f".{path.name}.pass1.rf64")  # RF64: no 4 GB limit
        try:
            first_meter = LoudnessMeter(self.info.sample_rate, self.info.channels, true_peak=True)
            self.to_file(scratch_path, OutputFormat("RF64", "FLOAT"), first_meter)
            before = first_meter.integrated_lufs()
            gain_db = target_lufs - before if math.isfinite(before) else 0.0
            peak_safe_db = loudness_gain_db(before, first_meter.true_peak_dbtp(), target_lufs, TRUE_PEAK_CEILING_DBTP)
            limited = gain_db > peak_safe_db + 0.01
            scratch = probe_audio(scratch_path)
            ceiling = None
            if limited:
                gain_db, ceiling = self._limited_gain(scratch, gain_db, target_lufs)
            for attempt in range(FINAL_PASS_ATTEMPTS):
                meter = LoudnessMeter(self.info.sample_rate, self.info.channels, true_peak=limited)
                writer = AtomicAudioWriter(path, fmt, self.info.sample_rate, self.info.channels)
                second = self._finish(scratch, gain_db, ceiling)
                second._write(second.run, _metered(meter, writer), writer)
                over = meter.true_peak_dbtp() - TRUE_PEAK_CEILING_DBTP if limited else 0.0
                if over <= TRUE_PEAK_TOLERANCE_DB or attempt == FINAL_PASS_ATTEMPTS - 1:
                    break
                ceiling -= over + TRUE_PEAK_TOLERANCE_DB  # the limiter let more through at this gain than metered
        finally:
            scratch_path.unlink(missing_ok=True)
        warnings = []
        if over > TRUE_PEAK_TOLERANCE_DB:
            warnings.append(f"true peak {meter.true_peak_dbtp():.2f} dBTP, over the {TRUE_PEAK_CEILING_DBTP:g} dBTP "
                            "ceiling: the limiter let it through")
        lufs = meter.integrated_lufs()
        if math.isfinite(before) and lufs < target_lufs - SHORTFALL_WARNING_LU:
            warnings.append(f"{lufs:.1f} LUFS, {target_lufs - lufs:.1f} LU under the target: reaching it would take "
                            f"more than {LIMITER_MAKEUP_MAX_DB:g} dB of true-peak limiting")
        extra = {"lufs_before_normalization": before, "normalization_gain_db": gain_db, "true_peak_limited": limited,
                 "warnings": warnings}
        return _Written(meter, writer.clipped, writer.over_full_scale, writer.peak), extra


def _metered(meter: LoudnessMeter, writer: AtomicAudioWriter) -> Callable[[np.ndarray], None]:
    """A sink that meters each block and writes it."""
    def sink(block: np.ndarray) -> None:
        meter.add(block)
        writer.write(block)

    return sink


def _read_ahead(blocks: Iterator[np.ndarray], depth: int = 4) -> Iterator[np.ndarray]:
    """Yield ``blocks``, decoded on a helper thread up to ``depth`` blocks ahead of the consumer.

    Decoding then overlaps with the chain (pedalboard releases the GIL); an error while decoding is
    re-raised here, and closing this generator early stops the helper.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for block in blocks:
                if not offer(("block", block)):
                    return
            offer(("end", None))
        except BaseException as error:  # handed to the consumer
            offer(("error", error))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=work, name="pedalchain-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        reader.join()


_QUEUE_BLOCKS = 8
"""Blocks in flight between the chain and the writer thread; bounds memory."""


def _write_in_background(
    produce: Callable[[Callable[[np.ndarray], None]], None],
    sink: Callable[[np.ndarray], None],
    writer: AtomicAudioWriter,
) -> None:
    """Run ``produce(put)`` here and ``sink`` on a worker thread, then commit ``writer``.

    Metering, dithering and encoding overlap with the chain (pedalboard and numpy release the GIL).
    Any error on either side, Ctrl-C included, discards the temporary file and is re-raised here.
    """
    blocks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=_QUEUE_BLOCKS)
    failure: list[BaseException] = []

    def work() -> None:
        while (block := blocks.get()) is not None:
            if not failure:
                try:
                    sink(block)
                except BaseException as error:  # handed to the main thread below
                    failure.append(error)

    def put(block: np.ndarray) -> None:
        if failure:
            raise failure[0]
        blocks.put(block)

    worker = threading.Thread(target=work, name="pedalchain-writer", daemon=True)
    worker.start()
    try:
        try:
            produce(put)
        finally:
            blocks.put(None)
            worker.join()
        if failure:
            raise failure[0]
        writer.commit()
    except BaseException:
        writer.discard()
        raise
