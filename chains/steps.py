"""The step registry: each YAML step kind (``plugin:``, ``vst3:``, ``parallel:``, ``chain:``, ...) in one class.

A kind builds a step from its YAML mapping and writes it back.  New kinds (``model:``, ``restorer:``)
register themselves with :func:`register_step_kind`, or lazily through ``LAZY_STEP_KINDS``, so that
the loader never changes and torch is imported only when such a step is actually used.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard

from ..effects.combinators import Parallel
from ..effects.dynamics import LinkedCompressor
from ..effects.level import LoudnessTrim
from ..effects.stock import BUILTIN_PLUGINS, build_builtin, builtin_param_values
from ..effects.vst3 import DEFAULT_PLUGIN_TIMEOUT_S, MonoPerChannel, load_vst3, vst3_param_values, vst3_path
from ..errors import ChainFileError, ParameterError
from .engine import Chain, StepObject
from .loudness import parse_lufs

STEP_KEYWORDS = ("wet", "bypass", "id", "min_rate")
"""Keys allowed on every step besides its kind keyword and parameters."""


@dataclass
class LoadContext:
    """What a step kind needs while building: where relative paths start, and how to build sub-chains.

    Args:
        base_dir: folder that relative paths in the YAML resolve against.
        plugin_timeout_s: seconds a VST3 may take to load before it is given up.
        build_chain: builds a nested list of step mappings into a Chain (used by parallel/chain kinds).
    """

    base_dir: Path
    plugin_timeout_s: float
    build_chain: Callable[[Any, str], Chain]


@dataclass
class SaveContext:
    """Where the YAML is being written, so paths can be made relative to it."""

    base_dir: Path
    dump_chain: Callable[[Chain], list[dict[str, Any]]]

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the YAML's folder when it lies inside it, else absolute (system plugins)."""
        absolute = Path(path).resolve()
        try:
            return absolute.relative_to(self.base_dir.resolve()).as_posix()
        except ValueError:
            return str(absolute)


class StepKind(ABC):
    """One kind of YAML step, selected by its ``keyword``."""

    keyword: str
    summary: str

    @abstractmethod
    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> StepObject:
        """Build from the kind keyword's ``value`` and the remaining keys (``params``)."""

    @abstractmethod
    def owns(self, obj: StepObject) -> bool:
        """Whether :meth:`dump` can write this object."""

    @abstractmethod
    def dump(self, obj: StepObject, context: SaveContext) -> dict[str, Any]:
        """The YAML mapping for ``obj``, kind keyword first."""


def yaml_number(value: Any) -> Any:
    """Shortest YAML-friendly form of a plugin value: pedalboard stores float32, so print it as such.  A VST3's
    text values come as a subclass of str, which yaml's safe dumper refuses: plain str."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (float, np.floating)):
        shortest = float(str(np.float32(value)))
        return int(shortest) if shortest.is_integer() and abs(shortest) < 2**31 else shortest
    return value


STEREO_LINK = "stereo_link"
"""A Compressor step's own key beside pedalboard's parameters: true runs it as a :class:`LinkedCompressor`."""


class PluginStep(StepKind):
    keyword = "plugin"
    summary = "a pedalboard built-in by class name, e.g. {plugin: Compressor, threshold_db: -18}"

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> StepObject:
        if not isinstance(value, str):
            raise ChainFileError(f"plugin: expects a built-in plugin name, got {value!r}", where=where)
        params = dict(params)
        link = params.pop(STEREO_LINK, False)
        if link is not False and value != "Compressor":
            raise ParameterError("only a Compressor takes it", where=f"{value}.{STEREO_LINK}")
        if not isinstance(link, bool):
            raise ParameterError(f"expects true or false, got {link!r}", where=f"{value}.{STEREO_LINK}")
        plugin = build_builtin(value, params, base_dir=context.base_dir)
        return LinkedCompressor(plugin) if link else plugin

    def owns(self, obj: StepObject) -> bool:
        return isinstance(obj, LinkedCompressor) or (
            type(obj).__name__ in BUILTIN_PLUGINS and isinstance(obj, pedalboard.Plugin))

    def dump(self, obj: StepObject, context: SaveContext) -> dict[str, Any]:
        plugin = obj.compressor if isinstance(obj, LinkedCompressor) else obj
        values = builtin_param_values(plugin)
        if "impulse_response_filename" in values:
            values["impulse_response_filename"] = context.relative(values["impulse_response_filename"])
        link = {STEREO_LINK: True} if isinstance(obj, LinkedCompressor) else {}
        return {"plugin": type(plugin).__name__, **{k: yaml_number(v) for k, v in values.items()}, **link}


class VST3Step(StepKind):
    keyword = "vst3"
    summary = "a VST3 plugin by path (relative to the YAML), parameters by pedalboard's python names, state"

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> StepObject:
        if not isinstance(value, str):
            raise ChainFileError(f"vst3: expects a path to a .vst3 bundle, got {value!r}", where=where)
        path = Path(value).expanduser()
        path = path if path.is_absolute() else context.base_dir / path
        state = params.pop("state", None)
        if state is not None:
            try:
                state = base64.b64decode(state, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ChainFileError("state: is not valid base64 (write it with Chain.save)", where=where) from None
        return load_vst3(path, params, state=state, timeout_s=context.plugin_timeout_s)

    def owns(self, obj: StepObject) -> bool:
        return isinstance(obj, (pedalboard.VST3Plugin, MonoPerChannel))

    def dump(self, obj: StepObject, context: SaveContext) -> dict[str, Any]:
        plugin = obj.plugin if isinstance(obj, MonoPerChannel) else obj
        values = {k: yaml_number(v) for k, v in vst3_param_values(plugin).items()}
        state = base64.b64encode(plugin.raw_state).decode("ascii")
        return {"vst3": context.relative(vst3_path(plugin)), **values, "state": state}


class ParallelStep(StepKind):
    keyword = "parallel"
    summary = "branches fed the same input and summed, latencies aligned: parallel: [[steps...], [steps...]]"

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> StepObject:
        if params:
            raise ChainFileError(f"parallel: takes no parameters, got {', '.join(params)}", where=where)
        if not isinstance(value, list) or not value:
            raise ChainFileError("parallel: expects a non-empty list of branches (each a list of steps)", where=where)
        return Parallel([context.build_chain(branch, where) for branch in value])

    def owns(self, obj: StepObject) -> bool:
        return isinstance(obj, (Parallel, pedalboard.Mix))

    def dump(self, obj: StepObject, context: SaveContext) -> dict[str, Any]:
        branches = obj.branches if isinstance(obj, Parallel) else list(obj)
        as_chains = [branch if isinstance(branch, Chain) else Chain([branch]) for branch in branches]
        return {"parallel": [context.dump_chain(branch) for branch in as_chains]}


class ChainStep(StepKind):
    keyword = "chain"
    summary = "a nested chain: chain: [steps...] (lets wet/bypass apply to a group of steps)"

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> StepObject:
        if params:
            raise ChainFileError(f"chain: takes no parameters, got {', '.join(params)}", where=where)
        return context.build_chain(value, where)

    def owns(self, obj: StepObject) -> bool:
        return isinstance(obj, (Chain, pedalboard.Pedalboard, pedalboard.Chain))

    def dump(self, obj: StepObject, context: SaveContext) -> dict[str, Any]:
        return {"chain": context.dump_chain(obj if isinstance(obj, Chain) else Chain(list(obj)))}


class LoudnessStep(StepKind):
    keyword = "loudness"
    summary = ("a gain bringing what reaches it to an integrated loudness, measured over the whole input: "
               "loudness: -20 (LUFS), before a level-dependent step such as a compressor")

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> StepObject:
        if params:
            raise ChainFileError(f"loudness: takes no parameters, got {', '.join(params)}", where=where)
        return LoudnessTrim(parse_lufs(value, where))

    def owns(self, obj: StepObject) -> bool:
        return isinstance(obj, LoudnessTrim)

    def dump(self, obj: StepObject, context: SaveContext) -> dict[str, Any]:
        return {"loudness": yaml_number(obj.target_lufs)}


STEP_KINDS: dict[str, StepKind] = {}
LAZY_STEP_KINDS: dict[str, str] = {
    "model": "pedalchain.effects.neural:MODEL_STEP",
    "restorer": "pedalchain.effects.restorers:RESTORER_STEP",
}
"""keyword -> "module:attribute" of a StepKind instance, imported the first time the keyword is used."""
SHARED_PARAMETER_NAMES: dict[str, tuple[str, ...]] = {"restorer": ("model",)}
"""Kinds with a parameter named like another kind (a restorer's ``model:`` file): beside this kind's keyword
such a key is a parameter, not a second kind."""


def register_step_kind(kind: StepKind) -> None:
    """Make ``kind.keyword`` usable in YAML chains."""
    STEP_KINDS[kind.keyword] = kind


def known_keywords() -> list[str]:
    return sorted({*STEP_KINDS, *LAZY_STEP_KINDS})


def step_kind(keyword: str) -> StepKind:
    if keyword not in STEP_KINDS and keyword in LAZY_STEP_KINDS:
        module, attribute = LAZY_STEP_KINDS[keyword].split(":")
        register_step_kind(getattr(importlib.import_module(module), attribute))
    return STEP_KINDS[keyword]


def kind_for(obj: StepObject) -> StepKind:
    """The registered kind that can write ``obj`` to YAML."""
    for keyword, target in LAZY_STEP_KINDS.items():
        if keyword not in STEP_KINDS and target.split(":")[0] in sys.modules:  # its objects may exist
            step_kind(keyword)
    for kind in STEP_KINDS.values():
        if kind.owns(obj):
            return kind
    raise ChainFileError(f"cannot save {type(obj).__name__} to YAML: no step kind knows how to write it")


for _kind in (PluginStep(), VST3Step(), ParallelStep(), ChainStep(), LoudnessStep()):
    register_step_kind(_kind)

__all__ = [
    "DEFAULT_PLUGIN_TIMEOUT_S", "SHARED_PARAMETER_NAMES", "STEP_KEYWORDS", "LoadContext", "SaveContext", "StepKind",
    "register_step_kind", "step_kind", "kind_for", "known_keywords",
]
