"""Errors raised by pedalchain.

Every error the package raises on purpose derives from :class:`PedalchainError`; each subclass also
inherits the matching built-in so callers can catch ``ValueError`` or ``OSError`` as usual.  The CLI
turns them into one line on stderr and an exit code; library code never prints.
"""

from __future__ import annotations

from pathlib import Path


class PedalchainError(Exception):
    """Base class. ``where`` names the file, YAML line or parameter the message is about."""

    def __init__(self, message: str, *, where: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = str(where) if where is not None else None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ChainFileError(PedalchainError, ValueError):
    """A chain description (YAML or Python list) is malformed: syntax, unknown step, bad structure."""


class ParameterError(PedalchainError, ValueError):
    """A parameter has an unknown name, a wrong type or a value out of range."""


class PluginLoadError(PedalchainError, RuntimeError):
    """A plugin could not be loaded: missing file, not a plugin, or it hung past the timeout."""


class AudioFileError(PedalchainError, OSError):
    """An audio file cannot be read or written: missing, unreadable, truncated, empty or non-finite."""


class StreamingError(PedalchainError, RuntimeError):
    """A chain cannot process audio the way it was asked to (e.g. streaming a non-streamable plugin)."""


class OutputExistsError(PedalchainError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class ModelFileError(PedalchainError, ValueError):
    """A model file (.safetensors or .nam) is unreadable, truncated, of a newer format or inconsistent."""
