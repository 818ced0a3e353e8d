"""``- loudness: LUFS`` as a step: a gain that brings what reaches it to an integrated loudness.

A chain's top-level ``loudness:`` sets the loudness of the file that comes out (a second pass, true-peak limited).
As a step it sets the level *inside* the chain, for the steps after it whose effect depends on the level they are
given: a compressor's threshold, a saturator's drive.  Without it a mastering chain squeezes a loud master hard and
leaves a quiet recording alone; with it, both reach the compressor at the same loudness.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..chains.audio_io import source_blocks
from ..chains.loudness import LoudnessMeter, parse_lufs
from .processor import Processor

MAX_TRIM_DB = 30.0
"""The most the trim raises or lowers anything, dB: a near-silent input is not raised to the target by 60 dB of
gain (its noise floor would come up with it)."""


class LoudnessTrim(Processor):
    """A fixed gain, ``target_lufs`` minus the integrated loudness of the whole input as it reaches this step.

    The loudness is ITU-R BS.1770-4's (:class:`~pedalchain.chains.loudness.LoudnessMeter`, gated), measured in
    :meth:`analyze_input` from the first sample that is not digital silence (a file is read in blocks; in a chain,
    the steps before this one rendered first, their latency in front).  The gain is at most :data:`MAX_TRIM_DB`
    either way.  Without an analysis (pure streaming with ``reset=False`` from
    the start), and on input below the meter's -70 LUFS gate (silence), the gain is 0 dB.

    Args:
        target_lufs: the integrated loudness to bring the input to, LUFS (-70 … 0; a number or "-20 LUFS").
    """

    name = "loudness"

    def __init__(self, target_lufs: float | str) -> None:
        super().__init__()
        self.target_lufs = target_lufs
        self.gain_db = 0.0
        """The trim from the last analysis, dB (0 before any)."""

    @property
    def target_lufs(self) -> float:
        """The loudness to bring the input to, LUFS; set (checked as in the constructor), it applies from the next
        analysis."""
        return self._target_lufs

    @target_lufs.setter
    def target_lufs(self, target_lufs: float | str) -> None:
        self._target_lufs = parse_lufs(target_lufs)

    def __repr__(self) -> str:
        return f"LoudnessTrim(target_lufs={self.target_lufs:g})"

    @property
    def analyses_input(self) -> bool:
        return True

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        meter: LoudnessMeter | None = None
        for block in source_blocks(source, 1 << 16):
            if meter is None:
                # digital silence in front (the latency of the steps before this one, an edit's padding) is left
                # out: its 400 ms gating blocks shift the grid, and it would lift a short input past 0.4 s
                sounding = np.flatnonzero(np.any(block != 0, axis=0))
                if not sounding.size:
                    continue
                block = block[:, sounding[0]:]
                meter = LoudnessMeter(sample_rate, block.shape[0], true_peak=False)
            meter.add(block)
        measured = meter.integrated_lufs() if meter is not None else -math.inf
        if not math.isfinite(measured):
            self.gain_db = 0.0
            return [f"loudness: input silent (below the -70 LUFS gate) or under 0.4 s: not trimmed to "
                    f"{self.target_lufs:g} LUFS"]
        self.gain_db = float(np.clip(self.target_lufs - measured, -MAX_TRIM_DB, MAX_TRIM_DB))
        reached = "" if abs(self.target_lufs - measured) <= MAX_TRIM_DB else f" (at most {MAX_TRIM_DB:g} dB)"
        return [f"loudness: {measured:.1f} LUFS in, trimmed by {self.gain_db:+.1f} dB{reached} towards "
                f"{self.target_lufs:g} LUFS"]

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        return 0

    def _reset_state(self) -> None:
        return None

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        if self.gain_db == 0.0:
            return audio.copy()
        return (audio * np.float32(10 ** (self.gain_db / 20))).astype(np.float32)
