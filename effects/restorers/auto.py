"""``restorer: auto``: detect what is wrong with the input and run only the restorers that fix it.

Routing (from :func:`pedalchain.chains.detect.detect_input` on what reaches the step, whole file or buffer):

==========================  ==========================================================================
finding                     restorer run (in this order)
==========================  ==========================================================================
doubled samples             ``doubled-samples`` (mode detect: only the damaged regions); at rates its model
                            does not run at (outside 32-50 kHz), a wholly doubled file as a hold by 2
sample-and-hold by N ≥ 3    ``dequantize`` with ``hold: N``; then ``bandwidth`` above the band the repair
                            keeps, fs/2N, where that is at least 4 kHz (N ≤ 5 at 44.1 kHz): the held
                            samples carry nothing above it, the staircase only mirror images
clipping                    ``declip`` (threshold auto); skipped after a hold repair, which moves the
                            clipped plateaus off the rail
mains hum                   ``denoise`` with ``hum_only``: the hum subtracted sample by sample, no gain
                            (its tests -- steady harmonics of 50 or 60 Hz, one of the first four among
                            them -- found it in 1 of 175 clean corpus clips, at -61 dBFS); not when it
                            holds over half the input's power (then it is the programme)
stationary noise (hiss)     reported only: the noise analysis cannot tell stationary noise from
                            sustained music (drones, pads, dense grooves all look stationary), and
                            denoising music is damage; add ``restorer: denoise`` where it is noise
DC offset (>= 0.01)         reported only: a high-pass filter removes it, changing every sample
band limit 8 kHz … 0.95·fs/2  ``bandwidth`` with the detected cutoff (not after a doubling repair, whose
                            own model restores the top band, nor after a hold repair: see above)
==========================  ==========================================================================

It is conservative: when nothing is found the input passes through unchanged, bit for bit, only delayed
by the fixed latency (which the file runner and one-shot processing remove).  The latency is the same
whatever is detected: the sum of every candidate restorer's latency, so a chain's timing never depends on
the file.  The findings (what was detected, what was applied, what was left alone and why) are returned by
:meth:`AutoRestore.analyze_input` and appear in the file summary.

Without an analysis (pure streaming with ``reset=False`` from the start) nothing is applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...chains.detect import detect_input
from ...errors import ParameterError
from ..streaming import DelayLine
from . import Restorer, restorer_class
from .bandwidth import MIN_CUTOFF_HZ
from .denoise import HUM_MIN_INPUT_S, Denoise
from .doubled import DoubledSampleRepair

PIPELINE = ("doubled-samples", "dequantize", "declip", "denoise", "bandwidth")
"""Every restorer ``auto`` may run, in the order they run."""
MIN_BANDWIDTH_CUTOFF_HZ = 8000.0
"""Band limits below this are left alone: the bandwidth model is trained for cutoffs of 8–20 kHz."""
DC_REPORT_MIN = 0.01
"""A DC offset (mean sample) at least this large (-40 dBFS) is mentioned in the findings, and left alone: a
high-pass filter removes it, and that is not a restoration (it changes every sample)."""
NOISE_REPORT_MIN_DBFS = -60.0
"""Stationary sound louder than this is mentioned in the findings (quieter is a clean recording's floor)."""
HUM_MAX_SHARE = 0.5
"""Mains "hum" holding more than this share of the input's power is left alone: a steady tone or buzz on the
50/60 Hz grid that loud is more likely the programme (a 100 Hz square wave passes every hum test) than a fault
under it."""
MAX_CUTOFF_SHARE = 0.95
"""A "band limit" above this share of Nyquist is the converter's own anti-alias filter: nothing to restore."""
DOUBLED_AS_HOLD_SHARE = 0.99
"""Doubled samples at a rate the doubled-samples model does not run at (it is trained at 44.1 kHz) are repaired
as a hold by 2 (``dequantize``: the true samples kept, the others interpolated), but only when they cover this
share of the file: that repair would take the band above fs/4 out of clean stretches."""


class AutoRestore(Restorer):
    """Detection-routed restoration; see the module docstring.  Takes no parameters."""

    name = "auto"

    def __init__(self) -> None:
        super().__init__()
        self._candidates: dict[str, Restorer] = {}
        self._active: list[Restorer] = []
        self._pad: DelayLine | None = None
        self._channels = 0
        self._analysed_rate: float | None = None

    def __repr__(self) -> str:
        active = ", ".join(restorer.name for restorer in self._active) or "passthrough"
        return f"AutoRestore({active})"

    @property
    def analyses_input(self) -> bool:
        return True

    @property
    def active(self) -> list[str]:
        """Names of the restorers the last analysis chose, in processing order."""
        return [restorer.name for restorer in self._active]

    # -- analysis ------------------------------------------------------------------------------------------------
    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        findings = detect_input(source, sample_rate)
        notes: list[str] = []
        # (restorer, params, index of its finding's note, what it does, what is said when it cannot run here)
        chosen: list[tuple[str, dict[str, Any], int, str, str]] = []
        findings_of: dict[int, str] = {}

        def route(finding: str, *steps: tuple[str, dict[str, Any], str, str]) -> None:
            findings_of[len(notes)] = finding
            chosen.extend((name, params, len(notes), done, undone) for name, params, done, undone in steps)
            notes.append(finding)

        doubled, hold = findings["doubled_samples"], findings["hold"]
        structural = doubled["detected"] or (hold["detected"] and (hold["factor"] or 0) >= 3)
        held = (f"sample-and-hold by {hold['factor']}", int(hold["factor"]), "repaired") \
            if hold["detected"] and hold["factor"] >= 3 else None
        if doubled["detected"]:
            finding = f"doubled samples (parity {doubled['parity']}, {doubled['share']:.0%} of the file)"
            model_runs = self._candidate("doubled-samples", {"mode": "detect"}, sample_rate, configured=True)
            if model_runs is None and doubled["share"] >= DOUBLED_AS_HOLD_SHARE:
                held = (finding, 2, f"repaired as a hold by 2 (the doubled-samples model runs at "
                        f"{DoubledSampleRepair.min_rate_hz / 1000:g}-{DoubledSampleRepair.max_rate_hz / 1000:g} kHz)")
            else:
                held = None
                route(finding, ("doubled-samples", {"mode": "detect"}, "repaired", "left alone"))
        if held is not None:
            finding, factor, repaired = held
            top = sample_rate / (2 * factor)  # the held signal's Nyquist
            repair = ("dequantize", {"hold": factor}, repaired, "left alone")
            if top >= MIN_CUTOFF_HZ:
                route(finding, repair, ("bandwidth", {"cutoff": top}, f"the band above {top / 1000:.1f} kHz extended",
                                        f"the band above {top / 1000:.1f} kHz not extended"))
            else:
                route(finding, (*repair[:2], f"{repaired} (its band ends at {top / 1000:.1f} kHz)", repair[3]))
        if findings["clipping"]["detected"]:
            share = findings["clipping"]["share"]
            if structural:
                notes.append(f"clipping ({share:.3%} of samples): left alone after the sample-structure repair")
            else:
                route(f"clipping ({share:.3%} of samples)", ("declip", {"threshold": "auto"}, "declipped",
                                                             "left alone"))
        dehum = self._candidate("denoise", {"hum_only": True}, sample_rate, configured=True)
        if dehum is None:  # "nothing to restore" would claim a search that did not run
            notes.append(f"mains hum and stationary noise: not searched at {sample_rate:g} Hz (denoise runs at "
                         f"{Denoise.min_rate_hz / 1000:g}-{Denoise.max_rate_hz / 1000:g} kHz)")
        else:
            dehum.analyze_input(source, sample_rate)
            if findings["duration_s"] < HUM_MIN_INPUT_S:
                notes.append(f"mains hum: not searched in under {HUM_MIN_INPUT_S:g} s of audio")
            if dehum.hum is not None:
                share = 10 ** ((dehum.hum.power_dbfs() - findings["mean_power_dbfs"]) / 10)
                if share > HUM_MAX_SHARE:
                    notes.append(f"{dehum.hum.describe()}: {min(share, 1):.0%} of the signal's power, taken for "
                                 "the programme (a steady tone or buzz), left alone; add '- restorer: denoise' if it "
                                 "is hum")
                else:
                    route(dehum.hum.describe(), ("denoise", {"hum_only": True}, "subtracted", "left alone"))
            if dehum.noise_found and dehum.noise_level_dbfs >= NOISE_REPORT_MIN_DBFS:
                notes.append(
                    f"stationary sound at {dehum.noise_level_dbfs:.0f} dBFS: noise or sustained music (drones, "
                    "pads look the same), left alone; add '- restorer: denoise' if it is noise"
                )
        if abs(findings["dc_offset"] or 0.0) >= DC_REPORT_MIN:
            notes.append(f"DC offset {findings['dc_offset']:+.3f}: left alone; add '- plugin: HighpassFilter' "
                         "(cutoff_frequency_hz: 10) to remove it")
        cutoff = findings["band_limit"]["cutoff_hz"]
        if findings["band_limit"]["detected"] and not structural:
            if cutoff < MIN_BANDWIDTH_CUTOFF_HZ:
                notes.append(f"band limit at {cutoff / 1000:.1f} kHz: below 8 kHz, left alone")
            elif cutoff <= MAX_CUTOFF_SHARE * sample_rate / 2:
                route(f"band limit at {cutoff / 1000:.1f} kHz",
                      ("bandwidth", {"cutoff": float(cutoff)}, "extended", "left alone"))
        self._active = []
        self._analysed_rate = float(sample_rate)
        outcomes: dict[int, list[str]] = {index: [] for index in findings_of}
        offset = 0  # the restorers run one after the other: each one's input lags the analysed one by this much
        for name, params, index, done, undone in sorted(chosen, key=lambda item: PIPELINE.index(item[0])):
            restorer = self._candidate(name, params, sample_rate, configured=True)
            if restorer is None:
                kind = restorer_class(name)
                outcomes[index].append(f"{undone} ({name} runs at {kind.min_rate_hz / 1000:g}-"
                                       f"{kind.max_rate_hz / 1000:g} kHz)")
                continue
            outcomes[index].append(done)
            if restorer is not dehum:  # analysed above already
                restorer.analyze_input(source, sample_rate)
            if isinstance(restorer, Denoise):
                restorer.input_offset = offset
            offset += restorer.latency_at(sample_rate, max(self._channels, 1))
            self._active.append(restorer)
        for index, finding in findings_of.items():
            notes[index] = f"{finding}: {', '.join(outcomes[index])}"
        self._reconfigured()
        return [f"auto: {note}" for note in notes] or ["auto: nothing to restore, passed through unchanged"]

    def _candidate(
        self, name: str, params: dict[str, Any], sample_rate: float, configured: bool = False
    ) -> Restorer | None:
        """The restorer ``name`` (built once per parameter set and sample rate), or None when it refuses this
        sample rate."""
        key = f"{name}@{sample_rate:g}:{sorted(params.items()) if configured else ''}"
        if key not in self._candidates:
            try:
                restorer = restorer_class(name).from_params(dict(params), where=f"restorer: auto ({name})")
                restorer.latency_at(sample_rate, max(self._channels, 1))
            except ParameterError:
                return None
            self._candidates[key] = restorer
        return self._candidates[key]

    # -- processing ----------------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self._channels = num_channels
        if self._analysed_rate != sample_rate:
            self._active = []  # chosen for another rate: as without an analysis, nothing is applied
        total = 0
        for name in PIPELINE:
            candidate = self._candidate(name, {}, sample_rate)
            total += candidate.latency_at(sample_rate, num_channels) if candidate is not None else 0
        active = sum(restorer.latency_at(sample_rate, num_channels) for restorer in self._active)
        self._pad = DelayLine(num_channels, total - active)
        return total

    def _reset_state(self) -> None:
        for restorer in self._active:
            restorer.reset()
        self._pad.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        for restorer in self._active:
            audio = restorer.process(audio, sample_rate, reset=False)
        return self._pad.process(audio)
