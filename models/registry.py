"""Architecture name -> :class:`~pedalchain.models.base.StreamingModel` subclass, imported on demand.

Model files name their architecture (``"fir"``, ``"lstm"``, ``"wavenet"``, ...); this registry turns that
name into a class without importing torch until a model is actually built.  Entries are ``"module:Class"``
strings (imported lazily) or classes registered at run time with :func:`register_architecture`.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelFileError, PluginLoadError

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of import time
    from .base import StreamingModel

NEEDS_TORCH = "neural steps need torch: pip install 'pedalchain[neural]'"

ARCHITECTURES: dict[str, Any] = {
    "fir": "pedalchain.models.fir:FIR",
    "lstm": "pedalchain.models.lstm:LSTM",
    "wavenet": "pedalchain.models.wavenet:WaveNet",
    "nam_lstm": "pedalchain.models.nam_lstm:NamLSTM",
    "nam_linear": "pedalchain.models.nam:NamLinear",
    "wiener_hammerstein": "pedalchain.models.capture.families:WienerHammerstein",
    "grey_box_compressor": "pedalchain.models.capture.families:GreyBoxCompressor",
}
"""Architecture name -> ``"module:Class"`` (imported on first use) or the class itself."""


def register_architecture(name: str, target: str | type[StreamingModel]) -> None:
    """Make ``name`` loadable: ``target`` is a StreamingModel subclass or a lazy ``"module:Class"`` string."""
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"lazy architecture target must look like 'package.module:Class', got {target!r}")
    ARCHITECTURES[name] = target


def known_architectures() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(ARCHITECTURES)


def architecture_class(name: str, where: str | Path | None = None) -> type[StreamingModel]:
    """The StreamingModel subclass registered as ``name``.

    Raises :class:`ModelFileError` (``where`` = the model file) for an unknown name, listing the known
    ones, or when the module that implements it is not installed.
    """
    if not isinstance(name, str) or name not in ARCHITECTURES:
        close = difflib.get_close_matches(str(name), ARCHITECTURES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ModelFileError(
            f"unknown model architecture {name!r}{hint}; this pedalchain knows: {', '.join(known_architectures())}",
            where=where,
        )
    target = ARCHITECTURES[name]
    if isinstance(target, str):
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == "torch":
                raise PluginLoadError(NEEDS_TORCH, where=where) from None
            raise ModelFileError(
                f"architecture '{name}' is not available in this installation ({error.name} is missing)",
                where=where,
            ) from None
        try:
            target = getattr(module, attribute)
        except AttributeError:
            raise ModelFileError(
                f"architecture '{name}' is not available in this installation ({target} is missing)", where=where
            ) from None
        ARCHITECTURES[name] = target
    return target
