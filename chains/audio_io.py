"""Audio files in and out: validated block reading, output format choice, TPDF dither, atomic writes."""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..effects.chatter import MPEG_DECODER_CHATTER, chatter_dropped
from ..errors import AudioFileError, ParameterError
from .atomic import publish, temporary_beside

SAMPLE_RATE_RANGE_HZ = (8000, 192000)
MAX_FILE_CHANNELS = 8
CONTAINERS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF", ".ogg": "OGG", ".mp3": "MP3"}
EXTENSIONS = {"WAV": ".wav", "FLAC": ".flac", "AIFF": ".aiff", "OGG": ".ogg", "MP3": ".mp3"}
LOSSY = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""The sample rates MPEG-1/2/2.5 layer III holds (in 1 or 2 channels)."""
"""Lossy containers and the subtype we write them with."""
INTEGER_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


@dataclass(frozen=True)
class AudioInfo:
    """An input file as opened: rate (Hz), channels, length (samples), container and subtype."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    container: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class OutputFormat:
    """Container (WAV, FLAC, AIFF, OGG, MP3) and subtype (PCM_16, PCM_24, FLOAT, VORBIS, ...)."""

    container: str
    subtype: str

    @property
    def integer_bits(self) -> int | None:
        return INTEGER_BITS.get(self.subtype)


def probe_audio(path: str | Path) -> AudioInfo:
    """Open ``path`` far enough to validate it; raises AudioFileError naming the file."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError("no such file", where=path)
    if path.is_dir():
        raise AudioFileError("is a folder, not an audio file", where=path)
    if not os.access(path, os.R_OK):
        raise AudioFileError("cannot read: permission denied", where=path)
    if path.stat().st_size == 0:
        raise AudioFileError("is empty (0 bytes)", where=path)
    if path.suffix.lower() in MPEG_SUFFIXES:
        _check_mpeg_frames(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = str(error).split(": ", 1)[-1] if ": " in str(error) else str(error)
        if reason.startswith("File does not exist"):  # libsndfile's words for content no decoder took
            reason = "format not recognised, or the file is damaged"
        raise AudioFileError(f"not a readable audio file ({reason.strip()})", where=path) from None
    if info.frames <= 0:
        raise AudioFileError("contains no audio (0 samples)", where=path)
    low, high = SAMPLE_RATE_RANGE_HZ
    if not low <= info.samplerate <= high:
        raise AudioFileError(f"sample rate {info.samplerate} Hz is outside the supported {low}–{high} Hz", where=path)
    if not 1 <= info.channels <= MAX_FILE_CHANNELS:
        raise AudioFileError(f"{info.channels} channels; 1 to {MAX_FILE_CHANNELS} are supported", where=path)
    audio = AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)
    _check_declared_length(audio)
    return audio


MPEG_SUFFIXES = (".mp3", ".mp2", ".mpga")
MPEG_SEARCH_BYTES = 65536
"""How far into an MPEG file (after any ID3v2 tag) the first of two chained frame headers must start."""
OTHER_CONTAINER_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM")
_MPEG_KBPS = {  # (MPEG-1?, layer) -> bitrate per index 1..14, kbit/s
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_KBPS[(False, 3)] = _MPEG_KBPS[(False, 2)]
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def mpeg_frame_length(header: bytes) -> int | None:
    """Bytes in the MPEG audio frame that starts with the 4-byte ``header``; None when it is not a frame header
    (or a free-format one, whose length the header does not give)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 3, (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    bitrate = _MPEG_KBPS[(mpeg1, layer)][bitrate_index - 1] * 1000
    rate = _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding


def _check_mpeg_frames(path: Path) -> None:
    """Refuse an .mp3 in which no MPEG audio frame is followed by the next one where its header says.

    Without this libmpg123 prints its resync notes to stderr and libsndfile then reports "File does not
    exist"; an ID3v2 tag (album art can make it large) is skipped first."""
    with path.open("rb") as stream:
        head = stream.read(10)
        if head[:4] in OTHER_CONTAINER_MAGIC:
            return  # a misnamed file: libsndfile goes by the content
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            start = 10 + sum((byte & 0x7F) << shift for byte, shift in zip(head[6:10], (21, 14, 7, 0), strict=True))
        stream.seek(start)
        data = stream.read(MPEG_SEARCH_BYTES + 4096)
        at_end = stream.read(1) == b""
    for offset in range(min(len(data), MPEG_SEARCH_BYTES)):
        length = mpeg_frame_length(data[offset:offset + 4])
        if length is None:
            continue
        following = offset + length
        if mpeg_frame_length(data[following:following + 4]) is not None or (at_end and following == len(data)):
            return
    raise AudioFileError(
        f"not a readable audio file (no MPEG audio frames in its first {MPEG_SEARCH_BYTES // 1024} KB: "
        "not an MP3, or a damaged one)", where=path)


def _check_declared_length(info: AudioInfo) -> None:
    """libsndfile quietly shortens a truncated WAV or AIFF; compare the header's data size with the file."""
    declared = _declared_data_bytes(info.path, info.container)
    if declared is None:
        return
    declared_bytes, available_bytes = declared
    if available_bytes < declared_bytes:
        raise AudioFileError(
            f"truncated: the header announces {declared_bytes} bytes of audio but only {available_bytes} are there "
            "(an interrupted copy or download?)",
            where=info.path,
        )


def _declared_data_bytes(path: Path, container: str) -> tuple[int, int] | None:
    if container not in ("WAV", "AIFF"):
        return None
    size = path.stat().st_size
    with path.open("rb") as stream:
        header = stream.read(12)
        if container == "WAV" and header[:4] == b"RIFF":
            chunk_id, endian, offset = b"data", "<", 12
        elif container == "AIFF" and header[:4] == b"FORM":
            chunk_id, endian, offset = b"SSND", ">", 12
        else:
            return None  # RF64/W64 and friends: trust libsndfile
        while offset + 8 <= size:
            stream.seek(offset)
            name, length = struct.unpack(f"{endian}4sI", stream.read(8))
            if name == chunk_id:
                return length, size - offset - 8
            offset += 8 + length + (length & 1)
    return None


def read_blocks(info: AudioInfo, block: int) -> Iterator[np.ndarray]:
    """Yield channels-first float32 blocks of ``block`` samples (the last may be shorter).

    Raises AudioFileError if the file ends before its announced length or cannot be decoded.
    """
    read = 0
    try:
        with sf.SoundFile(str(info.path)) as stream, contextlib.ExitStack() as stack:
            mpeg = info.path.suffix.lower() in MPEG_SUFFIXES
            scratch = stack.enter_context(tempfile.TemporaryFile()) if mpeg else None
            while True:
                with chatter_dropped(MPEG_DECODER_CHATTER, scratch) if mpeg else contextlib.nullcontext():
                    data = stream.read(block, dtype="float32", always_2d=True)
                if not len(data):
                    break
                read += len(data)
                yield np.ascontiguousarray(data.T)
    except sf.LibsndfileError as error:
        raise AudioFileError(f"cannot decode after {read} samples: {error} (truncated or corrupt?)",
                             where=info.path) from None
    if read < info.frames * 0.99:
        raise AudioFileError(f"truncated: announces {info.frames} samples, only {read} could be read", where=info.path)


def finite_blocks(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """``blocks`` with NaN/Inf samples replaced by 0: what an analysis sees, as ``--sanitize`` renders them (without
    it the render refuses such a file, after the analysis, which must not trip over them first)."""
    for block in blocks:
        finite = np.isfinite(block)
        yield block if finite.all() else np.where(finite, block, np.zeros((), block.dtype))


def source_blocks(source: str | Path | np.ndarray, block: int) -> Iterator[np.ndarray]:
    """Channels-first blocks of ``block`` samples of an audio file (probed now, read as :func:`read_blocks`
    reads) or of a (channels, n) or (n,) buffer, through :func:`finite_blocks`: what the analyses of a whole
    input walk through."""
    if isinstance(source, np.ndarray):
        audio = np.atleast_2d(source)
        return finite_blocks(audio[:, start:start + block] for start in range(0, audio.shape[1], block))
    return finite_blocks(read_blocks(probe_audio(Path(source)), block))


def choose_output_format(
    info: AudioInfo, output: Path, container: str | None = None, subtype: str | None = None
) -> OutputFormat:
    """Output container from ``container`` or the output's extension; subtype from ``subtype`` or the input's.

    Lossy inputs default to 24-bit PCM; float sources written to FLAC (which has no float) become 24-bit.
    """
    by_extension = CONTAINERS.get(output.suffix.lower())
    if container is None:
        if by_extension is None:
            raise ParameterError(
                f"unknown output extension '{output.suffix}'; use one of {', '.join(sorted(CONTAINERS))}",
                where=output,
            )
        container = by_extension
    container = container.upper()
    if container not in EXTENSIONS:
        raise ParameterError(f"unknown format '{container}'; choose from {', '.join(EXTENSIONS)}", where="--format")
    if by_extension is not None and by_extension != container:
        raise ParameterError(f"output extension '{output.suffix}' does not match --format {container}", where=output)
    if container == "MP3" and (info.channels > 2 or info.sample_rate not in MP3_RATES):
        raise ParameterError(
            f"MP3 holds 1 or 2 channels at {', '.join(f'{rate / 1000:g}' for rate in MP3_RATES)} kHz; this audio is "
            f"{info.channels} channel(s) at {info.sample_rate:g} Hz: write WAV or FLAC", where=output)
    if subtype is not None:
        subtype = subtype.upper()
        valid = sf.available_subtypes(container)
        if subtype not in valid:
            raise ParameterError(
                f"{container} cannot hold subtype {subtype}; choose from {', '.join(valid)}", where="--subtype"
            )
        return OutputFormat(container, subtype)
    if container in LOSSY:
        return OutputFormat(container, LOSSY[container])
    source = info.subtype
    if info.container in LOSSY or source not in sf.available_subtypes(container):
        source = "PCM_24"
    if container == "FLAC" and source in FLOAT_SUBTYPES + ("PCM_32",):
        source = "PCM_24"
    return OutputFormat(container, source)


_SFC_SET_ADD_PEAK_CHUNK = 0x1050


def _omit_peak_chunk(stream: sf.SoundFile) -> None:
    """libsndfile stamps float WAV/AIFF files with a PEAK chunk holding the wall-clock time, so two
    identical renders would differ byte for byte; leave it out (soundfile has no public switch)."""
    library = getattr(sf, "_snd", None)
    if library is not None:
        library.sf_command(stream._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)


class AtomicAudioWriter:
    """Writes to a hidden temporary file beside ``path`` and renames it into place on :meth:`commit`.

    Integer subtypes get TPDF dither (±1 LSB triangular, seeded, so reruns are identical) where a sample
    must be rounded (samples already on the output grid are written exactly) and hard clipping at full
    scale; clipped samples are counted in ``clipped``.

    Args:
        path: final output path.
        fmt: container and subtype.
        sample_rate: Hz.
        channels: 1..8.
        seed: dither seed.
    """

    def __init__(self, path: Path, fmt: OutputFormat, sample_rate: int, channels: int, seed: int = 0) -> None:
        self.path = path
        self.format = fmt
        self.clipped = 0
        self.over_full_scale = 0
        self.peak = 0.0
        """Largest absolute sample written (linear, before clipping)."""
        self._bits_source = np.random.PCG64(seed)
        self._pool = np.zeros(0, np.uint16)
        self._bits = fmt.integer_bits or 0
        # Dither only where it matters: 32-bit integers already exceed float32's 24-bit mantissa.
        self._scale = float(2 ** (self._bits - 1)) if 0 < self._bits < 32 else None
        try:
            self._temporary = temporary_beside(path, ".partial")
        except OSError as error:
            raise AudioFileError(f"cannot write in this folder: {error.strerror}", where=path.parent) from None
        try:
            self._file = sf.SoundFile(
                str(self._temporary), "w", samplerate=sample_rate, channels=channels, format=fmt.container,
                subtype=fmt.subtype,
            )
        except (sf.LibsndfileError, RuntimeError) as error:
            self._temporary.unlink(missing_ok=True)
            raise AudioFileError(f"cannot write {fmt.container}/{fmt.subtype}: {error}", where=path) from None
        _omit_peak_chunk(self._file)

    def write(self, block: np.ndarray) -> float:
        """Write channels-first float32 samples (nominal range ±1.0); returns the block's peak |x|.  A block
        holding NaN or Inf is not written and its peak is NaN or inf: the caller reports it, at no extra pass."""
        magnitude = np.abs(block)
        block_peak = float(magnitude.max()) if magnitude.size else 0.0
        if not math.isfinite(block_peak):
            return block_peak
        self.peak = max(self.peak, block_peak)
        over = int(np.count_nonzero(magnitude > 1.0))
        self.over_full_scale += over
        if self._scale is None:
            if self.format.integer_bits is not None or self.format.container in LOSSY:
                self.clipped += over
                block = np.clip(block, -1.0, 1.0)
            self._file.write(block.T)
            return block_peak
        self.clipped += over  # |x| > 1 lands on the rails after rounding (give or take half an LSB)
        pairs = self._uniform16(2 * block.size).reshape(block.shape[1], block.shape[0], 2)
        dither = np.subtract(pairs[..., 0], pairs[..., 1], dtype=np.float32)
        dither *= np.float32(1.0 / 65536.0)  # TPDF in (-1, 1) LSB, sample-major
        dither += np.float32(0.5)  # rounding
        scaled = block.T * np.float32(self._scale)
        # Samples already on the output grid (digital silence, integer input passed through) need no
        # rounding, so they get no dither either: they are written exactly.
        exact = np.rint(scaled)
        on_grid = exact == scaled
        if self._bits <= 16:  # float32 keeps 8+ fractional bits here: round directly
            scaled += dither
            rounded = np.floor(scaled, out=scaled)
        else:  # near 24-bit full scale float32 has no fraction left: split off the whole part first (exact)
            whole = np.floor(scaled)
            scaled -= whole
            scaled += dither
            rounded = np.floor(scaled, out=scaled)
            rounded += whole
        np.copyto(rounded, exact, where=on_grid)
        np.clip(rounded, -self._scale, self._scale - 1.0, out=rounded)
        if self._bits == 16:  # libsndfile takes int16 as is: no widening pass
            self._file.write(rounded.astype(np.int16))
            return block_peak
        quantized = rounded.astype(np.int32)
        quantized <<= 32 - self._bits
        self._file.write(quantized)
        return block_peak

    def _uniform16(self, count: int) -> np.ndarray:
        """``count`` uniform 16-bit integers, continuing one stream whatever the block sizes."""
        if self._pool.size < count:
            fresh = self._bits_source.random_raw((count - self._pool.size + 3) // 4).view(np.uint16)
            self._pool = np.concatenate([self._pool, fresh])
        taken, self._pool = self._pool[:count], self._pool[count:]
        return taken

    def commit(self) -> None:
        self._file.close()
        publish(self._temporary, self.path)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._temporary.unlink(missing_ok=True)
