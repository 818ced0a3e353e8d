"""Chains to and from YAML, with file:line in every error.

Parsing uses a ``yaml.SafeLoader`` subclass that only records line numbers: no Python tags, ever.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from ..effects.units import parse_quantity
from ..errors import ChainFileError, PedalchainError
from .atomic import write_atomically
from .engine import Chain, Step
from .loudness import parse_lufs
from .steps import (
    DEFAULT_PLUGIN_TIMEOUT_S,
    SHARED_PARAMETER_NAMES,
    STEP_KEYWORDS,
    LoadContext,
    SaveContext,
    kind_for,
    known_keywords,
    step_kind,
)

TOP_LEVEL_KEYS = ("name", "description", "steps", "loudness")


class _Mapping(dict):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise ChainFileError(f"keys must be text, got {key!r}", where=f"line {line}")
        if key in mapping:
            first = mapping.key_lines[key]
            raise ChainFileError(f"duplicate key '{key}' (first on line {first})", where=f"line {line}")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def presets_dir() -> Path:
    """Folder of the shipped presets (package data installed beside this module)."""
    return Path(__file__).resolve().parent / "presets"


def list_presets() -> dict[str, str]:
    """Shipped preset name -> its ``description`` (or name) line."""
    presets = {}
    for path in sorted(presets_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        presets[path.stem] = str(data.get("description") or data.get("name") or "")
    return presets


def resolve_chain_path(spec: str | Path) -> Path:
    """A YAML path as given, or for a bare name (no folder, no suffix) the shipped preset of that name (also where
    a folder of that name is in the way: ``chain apply lofi in/ -o lofi/`` twice)."""
    path = Path(spec).expanduser()
    if path.exists() and not path.is_dir():
        return path
    text = str(spec)
    if "/" not in text and os.sep not in text and not path.suffix:
        preset = presets_dir() / f"{text}.yaml"
        if preset.exists():
            return preset
        names = list(list_presets())
        close = difflib.get_close_matches(text, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ChainFileError(f"no such chain file or preset{hint} (presets: {', '.join(names)})", where=spec)
    raise ChainFileError("no such chain file", where=spec)


def load_chain(spec: str | Path, plugin_timeout_s: float = DEFAULT_PLUGIN_TIMEOUT_S) -> Chain:
    """Load a chain from a YAML file, or a shipped preset by bare name (see ``chain presets``)."""
    path = resolve_chain_path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ChainFileError(f"cannot read chain file: {error}", where=path) from None
    return chain_from_yaml(text, source=path, plugin_timeout_s=plugin_timeout_s)


def chain_from_yaml(
    text: str, source: Path | None = None, plugin_timeout_s: float = DEFAULT_PLUGIN_TIMEOUT_S
) -> Chain:
    """Build a Chain from YAML text; ``source`` names the file in errors and anchors relative paths."""
    label = str(source) if source else "<yaml>"
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = error.problem or "invalid YAML"
        if "could not determine a constructor" in problem:
            problem = f"tag {problem.split('tag', 1)[-1].strip()} is not allowed: chain files are plain YAML"
        raise ChainFileError(problem, where=f"{label}{line}") from None
    except yaml.YAMLError as error:
        raise ChainFileError(f"invalid YAML: {error}", where=label) from None
    except ChainFileError as error:
        raise ChainFileError(error.message, where=f"{label}:{error.where.removeprefix('line ')}") from None
    if not isinstance(data, dict):
        raise ChainFileError("a chain file is a mapping with a 'steps:' list", where=label)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ChainFileError(
                f"unknown top-level key '{key}'{hint}; allowed: {', '.join(TOP_LEVEL_KEYS)}",
                where=f"{label}:{data.key_lines[key]}",
            )
    if "steps" not in data:
        raise ChainFileError("missing 'steps:' list", where=f"{label}:{data.line}")
    base_dir = (source.parent if source else Path.cwd()).resolve()
    builder = _Builder(label, base_dir, plugin_timeout_s)
    chain = builder.chain(data["steps"], f"{label}:{data.key_lines['steps']}")
    chain.name = str(data["name"]) if data.get("name") is not None else (source.stem if source else None)
    chain.description = str(data["description"]) if data.get("description") is not None else None
    chain.loudness_lufs = _loudness(data, label)
    return chain


def _loudness(data: _Mapping, label: str) -> float | None:
    value = data.get("loudness")
    if value is None:
        return None
    return parse_lufs(value, f"{label}:{data.key_lines['loudness']}")


class _Builder:
    def __init__(self, label: str, base_dir: Path, plugin_timeout_s: float) -> None:
        self.label = label
        self.context = LoadContext(base_dir, plugin_timeout_s, self.chain)

    def chain(self, steps: Any, where: str) -> Chain:
        if not isinstance(steps, list):
            raise ChainFileError("expected a list of steps ('- plugin: ...' lines)", where=where)
        chain = Chain()
        ids: set[str] = set()
        for entry in steps:
            step = self.step(entry, where)
            if step.id is not None:
                if step.id in ids:
                    raise ChainFileError(f"id '{step.id}' is used twice", where=step.origin)
                ids.add(step.id)
            chain.append(step)
        return chain

    def step(self, entry: Any, parent_where: str) -> Step:
        if not isinstance(entry, _Mapping):
            raise ChainFileError(f"a step is a mapping such as '- plugin: Gain', got {entry!r}", where=parent_where)
        where = f"{self.label}:{entry.line}"
        kinds = [key for key in entry if key in known_keywords()]
        for kind in list(kinds):
            kinds = [key for key in kinds if key == kind or key not in SHARED_PARAMETER_NAMES.get(kind, ())]
        if len(kinds) != 1:
            if kinds:
                raise ChainFileError(f"a step has exactly one kind, got {' and '.join(kinds)}", where=where)
            guesses = [difflib.get_close_matches(key, known_keywords(), n=1) for key in entry]
            guess = next((g[0] for g in guesses if g), None)
            hint = f" (did you mean '{guess}'?)" if guess else ""
            raise ChainFileError(f"step has no kind key{hint}; use one of: {', '.join(known_keywords())}", where=where)
        keyword = kinds[0]
        params = {key: value for key, value in entry.items() if key != keyword and key not in STEP_KEYWORDS}
        options = self.options(entry, where)
        try:
            built = step_kind(keyword).build(entry[keyword], params, self.context, where)
        except PedalchainError as error:
            if error.where and error.where.startswith(self.label):
                raise
            param = (error.where or "").rsplit(".", 1)[-1]
            line = entry.key_lines.get(param, entry.line)
            prefix = f"{error.where}: " if error.where else ""
            raise type(error)(f"{prefix}{error.message}", where=f"{self.label}:{line}") from None
        try:
            return Step(built, origin=where, **options)
        except (TypeError, ValueError) as error:
            raise ChainFileError(str(error), where=where) from None

    def options(self, entry: _Mapping, where: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if "wet" in entry:
            wet = entry["wet"]
            if isinstance(wet, bool) or not isinstance(wet, (int, float)) or not 0.0 <= wet <= 1.0:
                raise ChainFileError(
                    f"wet: expects a number within [0, 1] (dry/wet blend), got {wet!r}",
                    where=f"{self.label}:{entry.key_lines['wet']}",
                )
            options["wet"] = float(wet)
        if "bypass" in entry:
            if not isinstance(entry["bypass"], bool):
                raise ChainFileError(
                    f"bypass: expects true or false, got {entry['bypass']!r}",
                    where=f"{self.label}:{entry.key_lines['bypass']}",
                )
            options["bypass"] = entry["bypass"]
        if "id" in entry:
            options["id"] = str(entry["id"])
        if "min_rate" in entry:
            where = f"{self.label}:{entry.key_lines['min_rate']}"
            rate = parse_quantity(entry["min_rate"], "Hz", "min_rate", where=where)
            if not rate > 0:
                raise ChainFileError(f"min_rate: expects a positive sample rate (Hz), got {entry['min_rate']!r}",
                                     where=where)
            options["min_rate_hz"] = rate
        return options


def chain_to_data(chain: Chain, base_dir: Path) -> dict[str, Any]:
    """The YAML-ready mapping for ``chain`` (paths relative to ``base_dir``)."""
    context = SaveContext(base_dir, lambda sub: _dump_steps(sub, context))
    data: dict[str, Any] = {}
    if chain.name:
        data["name"] = chain.name
    if chain.description:
        data["description"] = chain.description
    data["steps"] = _dump_steps(chain, context)
    if chain.loudness_lufs is not None:
        data["loudness"] = chain.loudness_lufs
    return data


def _dump_steps(chain: Chain, context: SaveContext) -> list[dict[str, Any]]:
    dumped = []
    for step in chain.steps:
        entry = kind_for(step.processor).dump(step.processor, context)
        if step.wet != 1.0:
            entry["wet"] = step.wet
        if step.bypass:
            entry["bypass"] = True
        if step.id is not None:
            entry["id"] = step.id
        if step.min_rate_hz is not None:
            entry["min_rate"] = step.min_rate_hz
        dumped.append(entry)
    return dumped


def save_chain(chain: Chain, path: str | Path) -> None:
    """Write ``chain`` to ``path`` as YAML, atomically (temporary file, then rename)."""
    target = Path(path)
    text = yaml.safe_dump(chain_to_data(chain, target.parent), sort_keys=False, allow_unicode=True, width=100)
    write_atomically(target, text)
