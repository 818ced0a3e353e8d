"""pedalchain: audio chains of pedalboard plugins, VST3 plugins and neural processors.

    >>> from pedalchain import Chain, load_chain
    >>> chain = load_chain("remaster")          # a shipped preset, or a path to a YAML file
    >>> out = chain(audio, 44100)               # channels-first float32, like pedalboard

Importing pedalchain does not import torch; neural steps load it when they are built.
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

__all__ = [
    "AudioFileError", "Chain", "ChainFileError", "ModelFileError", "OutputExistsError", "ParameterError",
    "PedalchainError",
    "PluginLoadError", "Processor", "Step", "StreamingError", "load_chain", "__version__",
]
