"""Processors: the Processor protocol, native pedalboard segments, VST3 hosting, streaming helpers.

Nothing here imports torch at import time.
"""

from .combinators import DryWet, Parallel
from .native import NativeSegment
from .processor import Processor
from .vst3 import MonoPerChannel, load_vst3, probe_vst3

__all__ = ["DryWet", "MonoPerChannel", "NativeSegment", "Parallel", "Processor", "load_vst3", "probe_vst3"]
