"""Processors: the Processor protocol, native pedalboard segments, VST3 hosting, streaming helpers.

Nothing here imports torch at import time: ``NeuralProcessor`` is imported on first access, and torch
only when a model is loaded.
"""

from typing import Any

from .combinators import DryWet, Parallel
from .native import NativeSegment
from .processor import Processor
from .vst3 import MonoPerChannel, load_vst3, probe_vst3

__all__ = [
    "DryWet", "MonoPerChannel", "NativeSegment", "NeuralProcessor", "Parallel", "Processor", "load_vst3", "probe_vst3",
]


def __getattr__(name: str) -> Any:
    if name == "NeuralProcessor":
        from .neural import NeuralProcessor

        return NeuralProcessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
