"""pedalchain: audio chains of pedalboard plugins, VST3 plugins and neural processors.

    >>> from pedalchain import Chain, load_chain
    >>> chain = load_chain("remaster")          # a shipped preset, or a path to a YAML file
    >>> out = chain(audio, 44100)               # channels-first float32, like pedalboard
    >>> from pedalchain import Denoise          # the restorers, as processors of their own
    >>> clean = Denoise(amount_db=12)(noisy, 44100)

Importing pedalchain does not import torch; neural steps load it when they are built.  The restorers'
modules load on first use.
"""

from .chains.engine import Chain, Step
from .chains.yaml_io import load_chain
from .effects.processor import Processor
from .errors import (
    AudioFileError,
    ChainFileError,
    ModelFileError,
    OutputExistsError,
    ParameterError,
    PedalchainError,
    PluginLoadError,
    StreamingError,
)

__version__ = "0.1.0"

_RESTORER_CLASSES = ("AutoRestore", "BandwidthExtension", "Declip", "Denoise", "Dequantize", "DoubledSampleRepair")


def __getattr__(name: str) -> type:
    # the restorer classes, imported on first use like the YAML's `restorer:` steps (numpy/scipy work at import)
    if name in _RESTORER_CLASSES:
        from .effects.restorers import RESTORERS, restorer_class

        return restorer_class(next(key for key, target in RESTORERS.items() if target.endswith(f":{name}")))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AudioFileError", "Chain", "ChainFileError", "ModelFileError", "OutputExistsError", "ParameterError",
    "PedalchainError",
    "PluginLoadError", "Processor", "Step", "StreamingError", "load_chain", "__version__", *_RESTORER_CLASSES,
]
