"""A stereo-linked compressor: pedalboard's Compressor with one gain for every channel.

pedalboard's (JUCE's) Compressor follows each channel's level on its own: on a master bus, a hit on one side
is turned down on that side only and the stereo image leans away from it.  :class:`LinkedCompressor` runs the
same compressor on one detector signal, the loudest channel's magnitude ``d = max_c |x_c|``, and applies the
gain it finds there, ``g = C(d) / d`` (JUCE's compressor outputs ``g(envelope of |x|) * x``, so that quotient is
its gain exactly), to every channel.  Its settings are the compressor's, with the same meaning; a mono input
comes out as the plain compressor's output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pedalboard

from .native import NativeSegment
from .processor import Processor

SETTINGS = ("threshold_db", "ratio", "attack_ms", "release_ms")


class LinkedCompressor(Processor):
    """pedalboard's Compressor with its gain linked across channels (see the module docstring).

    Args:
        compressor: the ``pedalboard.Compressor`` whose settings apply: ``threshold_db`` (dBFS), ``ratio``
            (x:1, >= 1), ``attack_ms`` and ``release_ms`` (ms).  They read and set through this object too
            (``linked.threshold_db = -20``), as on the plugin, from the next call.
    """

    name = "Compressor"

    def __init__(self, compressor: pedalboard.Compressor) -> None:
        super().__init__()
        if not isinstance(compressor, pedalboard.Compressor):
            raise TypeError(f"LinkedCompressor wraps a pedalboard.Compressor, not {type(compressor).__name__}")
        self.compressor = compressor
        self._detector = NativeSegment([compressor])  # pedalboard's own quirks with tiny and growing blocks handled

    def __getattr__(self, name: str) -> Any:
        if name in SETTINGS:
            return getattr(self.compressor, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SETTINGS:
            setattr(self.compressor, name, value)
        else:
            super().__setattr__(name, value)

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self.compressor, name):g}" for name in SETTINGS)
        return f"LinkedCompressor({settings})"

    def _runs(self) -> list[Processor]:
        return [self._detector]

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        return self._detector.latency_at(sample_rate, 1)  # 0: the compressor has no look-ahead

    def _reset_state(self) -> None:
        self._detector.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        detector = np.abs(audio).max(axis=0, keepdims=True)
        compressed = self._detector.process(detector, sample_rate, reset=False)
        gain = np.divide(compressed, detector, out=np.ones_like(detector), where=detector > 0)
        return audio * gain  # where the detector is 0, so is every channel
