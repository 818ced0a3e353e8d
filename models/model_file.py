"""pedalchain model files: one ``.safetensors`` file, weights plus a ``pedalchain`` JSON metadata entry.

Layout (safetensors): 8-byte little-endian header length, a JSON header naming every tensor's dtype,
shape and byte range, then the raw tensor bytes.  The header's ``__metadata__`` holds one key,
``pedalchain``, whose JSON value is::

    {"format_version": 1, "architecture": "fir", "config": {...}, "sample_rate": 48000,
     "latency": 0, "receptive_field": 256, "kind": "emulator", "stereo_linked": false,
     "training": {"data": "...", "seed": 0, "duration_s": 12.0, ...},
     "metrics": {"esr_holdout": 1.2e-14, ...},
     "versions": {"pedalchain": "0.1.0", "torch": "2.13.0", "numpy": "2.4.6", "python": "3.12.3"}}

Loading never unpickles: the header is parsed here (so ``chain info`` and ``chain models`` need no torch)
and tensors are decoded by safetensors.  Every problem is a one-line :class:`ModelFileError` naming the file.
Only the functions that build or write models import torch.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import platform
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chains.atomic import write_atomically
from ..errors import ModelFileError, PluginLoadError
from .registry import NEEDS_TORCH, architecture_class

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of import time
    from .base import StreamingModel

FORMAT_VERSION = 1
"""Newest model format this pedalchain reads and the one it writes."""

METADATA_KEY = "pedalchain"
KINDS = ("emulator", "restorer")
"""emulator: declares its sample rate, other rates are resampled in and out; restorer: runs at the file's rate."""

TRAINING_KEYS = ("data", "seed", "duration_s")
"""Keys every model file's ``training`` entry has (values may be null when unknown)."""

MODEL_SUFFIXES = (".safetensors", ".nam")
MAX_HEADER_BYTES = 100 * 1024 * 1024
_FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_DTYPE_BYTES = {**_FLOAT_DTYPES, "I8": 1, "U8": 1, "BOOL": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8,
                "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass
class ModelInfo:
    """What a model file says about itself (``chain info`` prints :meth:`describe`).

    Args:
        path: the file.
        architecture: registry name ("fir", "lstm", "wavenet", ...).
        config: keyword arguments that rebuild the architecture.
        sample_rate: rate (Hz) the model was trained at; None when the file does not say (NAM captures
            without ``sample_rate`` are 48 kHz by convention; their loader fills that in).
        kind: "emulator" (resampled to its rate) or "restorer" (runs at the file's rate).
        latency: samples (at ``sample_rate``) by which the output lags the input.
        receptive_field: samples of input that affect one output sample.
        parameter_count: number of trainable weights.
        training: data description, seed, duration_s and anything else recorded.
        metrics: e.g. ``{"esr_holdout": 1.2e-14}``.
        versions: library versions that wrote the file.
        format_version: the file's format version (an int for pedalchain files; NAM's string for .nam).
        file_format: "safetensors" or "nam".
        stereo_linked: the model takes both channels as one linked stream (reserved; none do yet).
    """

    path: Path
    architecture: str
    config: dict[str, Any]
    sample_rate: float | None
    kind: str = "emulator"
    latency: int = 0
    receptive_field: int = 1
    parameter_count: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    format_version: int | str = FORMAT_VERSION
    file_format: str = "safetensors"
    stereo_linked: bool = False

    @property
    def name(self) -> str:
        """The file name without suffix (a shipped model's bare name)."""
        return Path(self.path).stem

    def describe(self) -> str:
        """Multi-line, human-readable summary: architecture, size, rate, latency, training, metrics."""
        rate = self.sample_rate
        config = ", ".join(f"{k}={v}" for k, v in self.config.items())
        config = config if len(config) <= 100 else config[:97] + "..."

        def duration(samples: int) -> str:
            text = f"{samples} sample{'' if samples == 1 else 's'}"
            return text + (f" ({1000.0 * samples / rate:.2f} ms)" if rate else "")

        if self.kind == "emulator":
            runs = "emulator: other sample rates are resampled to its rate and back"
        else:
            runs = "restorer: runs at the audio file's own rate"
        lines = [
            f"{self.name} ({self.path})",
            f"  architecture     {self.architecture}" + (f" ({config})" if config else ""),
            f"  parameters       {self.parameter_count:,}",
            f"  kind             {runs}",
            f"  sample rate      {_number(rate)} Hz" if rate else "  sample rate      not stated",
            f"  latency          {duration(self.latency)}",
        ]
        if self.kind == "emulator":  # a restorer looks at the whole file (analysis) and its frames' context
            lines.append(f"  receptive field  {duration(self.receptive_field)}")
        lines.append(f"  training data    {self.training.get('data') or 'not recorded'}")
        seed, seconds = self.training.get("seed"), self.training.get("duration_s")
        if seed is not None or seconds is not None:
            seed_text = f"seed {seed}" if seed is not None else "seed not recorded"
            seconds_text = f"{_number(seconds)} s of audio" if seconds is not None else "duration not recorded"
            lines.append(f"                   {seed_text}, {seconds_text}")
        for key, value in self.training.items():
            if key not in TRAINING_KEYS:
                lines.append(f"                   {key}: {_number(value)}")
        if self.metrics:
            lines.append("  metrics          " + ", ".join(f"{k} {_number(v)}" for k, v in self.metrics.items()))
        else:
            lines.append("  metrics          not recorded")
        if self.versions:
            lines.append("  written by       " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        lines.append(f"  format           {self.file_format}, version {self.format_version}")
        if self.stereo_linked:
            lines.append("  channels         stereo-linked")
        return "\n".join(lines)

    def summary_line(self) -> str:
        """One line for ``chain models``: name, architecture, size, rate, what it was trained on."""
        rate = f"{_number(self.sample_rate / 1000)} kHz" if self.sample_rate else "any rate"
        if self.kind == "restorer":
            rate = f"trained at {rate}, runs at the file's rate"
        esr = self.metrics.get("esr_holdout")
        fit = f", ESR {esr:.2g} on held-out audio" if isinstance(esr, (int, float)) else ""
        return f"{self.name:<16} {self.architecture}, {self.parameter_count:,} params, {rate}, {self.kind}{fit}"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if not value.is_integer() or abs(value) >= 1e6 else str(int(value))
    return str(value)


# -- reading -----------------------------------------------------------------------------------------------------
def read_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    """Parse and check a safetensors file's header without torch.

    Returns ``(tensors, metadata, data_start)``: tensor name -> ``{"dtype", "shape", "data_offsets"}``,
    the ``__metadata__`` mapping (str -> str) and the byte offset where tensor data starts.
    Raises :class:`ModelFileError` for a missing, truncated or malformed file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"not a safetensors model file: only {size} bytes", where=path)
            (header_size,) = struct.unpack("<Q", prefix)
            if header_size > min(MAX_HEADER_BYTES, size - 8):
                if header_size <= MAX_HEADER_BYTES and size > 8:
                    raise ModelFileError(
                        f"truncated: its header needs {header_size} bytes, the file has {size - 8} after the size "
                        "field (an interrupted download or copy?)",
                        where=path,
                    )
                raise ModelFileError("not a safetensors model file (its first 8 bytes are no header size)", where=path)
            raw = stream.read(header_size)
    except IsADirectoryError:
        raise ModelFileError("is a folder, not a model file", where=path) from None
    except FileNotFoundError:
        raise ModelFileError("no such model file", where=path) from None
    except OSError as error:
        raise ModelFileError(f"cannot read model file: {error.strerror or error}", where=path) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("not a safetensors model file (its header is not JSON)", where=path) from None
    if not isinstance(header, dict):
        raise ModelFileError("not a safetensors model file (its header is not a JSON object)", where=path)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError("malformed safetensors header: __metadata__ must map text to text", where=path)
    data_size = size - 8 - header_size
    end_of_data = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
            expected = _DTYPE_BYTES[dtype] * math.prod(shape)
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"malformed safetensors header entry for tensor '{name}'", where=path) from None
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end and end - begin == expected):
            raise ModelFileError(f"malformed safetensors header: byte range of tensor '{name}'", where=path)
        end_of_data = max(end_of_data, end)
    if end_of_data > data_size:
        raise ModelFileError(
            f"truncated: tensor data should be {end_of_data} bytes, the file holds {data_size} "
            "(an interrupted download or copy?)",
            where=path,
        )
    return header, metadata, 8 + header_size


def _metadata(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """The checked ``pedalchain`` metadata entry of ``path``."""
    if METADATA_KEY not in metadata:
        raise ModelFileError(
            "a safetensors file without pedalchain metadata (architecture, sample rate, ...): "
            "it was not written by pedalchain's save_model, so pedalchain cannot tell how to run it",
            where=path,
        )
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError:
        raise ModelFileError("its pedalchain metadata is not valid JSON", where=path) from None
    if not isinstance(meta, dict):
        raise ModelFileError("its pedalchain metadata is not a JSON object", where=path)
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"its pedalchain metadata has no valid format_version (got {version!r})", where=path)
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"written in model format {version}, this pedalchain reads up to format {FORMAT_VERSION}: "
            "upgrade pedalchain (pip install -U pedalchain)",
            where=path,
        )
    checks = {
        "architecture": lambda v: isinstance(v, str) and v != "",
        "config": lambda v: isinstance(v, dict),
        "sample_rate": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
        "kind": lambda v: v in KINDS,
    }
    for key, valid in checks.items():
        if key not in meta:
            raise ModelFileError(f"its pedalchain metadata lacks '{key}'", where=path)
        if not valid(meta[key]):
            raise ModelFileError(f"its pedalchain metadata has an invalid '{key}': {meta[key]!r}", where=path)
    for key in ("training", "metrics", "versions"):
        if not isinstance(meta.get(key, {}), dict):
            raise ModelFileError(f"its pedalchain metadata has an invalid '{key}' (expected a mapping)", where=path)
    return meta


def read_model_info(path: str | Path) -> ModelInfo:
    """:class:`ModelInfo` of a ``.safetensors`` model file from its header alone (no torch, no weights read)."""
    path = Path(path)
    tensors, metadata, _ = read_header(path)
    meta = _metadata(path, metadata)
    return _info(path, meta, sum(math.prod(entry["shape"]) for entry in tensors.values()))


def _info(path: Path, meta: dict[str, Any], parameter_count: int) -> ModelInfo:
    return ModelInfo(
        path=path,
        architecture=meta["architecture"],
        config=dict(meta["config"]),
        sample_rate=float(meta["sample_rate"]),
        kind=meta["kind"],
        latency=int(meta.get("latency", 0)),
        receptive_field=int(meta.get("receptive_field", 1)),
        parameter_count=parameter_count,
        training=dict(meta.get("training", {})),
        metrics=dict(meta.get("metrics", {})),
        versions=dict(meta.get("versions", {})),
        format_version=meta["format_version"],
        file_format="safetensors",
        stereo_linked=bool(meta.get("stereo_linked", False)),
    )


def load_model(path: str | Path) -> tuple[StreamingModel, ModelInfo]:
    """Build the model stored in a ``.safetensors`` file: ``(model in eval mode on the CPU, its info)``.

    Raises :class:`ModelFileError` naming the file for: not a safetensors file, truncated, no pedalchain
    metadata, a newer format_version, an unknown architecture, a config the architecture refuses, and
    missing, unexpected or wrongly shaped tensors (all named).
    """
    path = Path(path)
    tensors, metadata, _ = read_header(path)
    meta = _metadata(path, metadata)
    cls = architecture_class(meta["architecture"], where=path)
    model = build_model(cls, meta["config"], where=path)
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    found = {name: tuple(entry["shape"]) for name, entry in tensors.items()}
    problems = []
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if missing:
        problems.append(f"missing tensors {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected tensors {', '.join(extra)}")
    for name in expected:
        if name in found and found[name] != expected[name]:
            problems.append(f"tensor '{name}' has shape {list(found[name])}, expected {list(expected[name])}")
    for name, entry in tensors.items():
        if entry["dtype"] not in _FLOAT_DTYPES:
            problems.append(f"tensor '{name}' is {entry['dtype']}, expected floating point")
    if problems:
        raise ModelFileError(
            f"weights do not fit architecture '{meta['architecture']}' ({_config_text(meta['config'])}): "
            + "; ".join(problems),
            where=path,
        )
    state = _read_tensors(path)
    import torch

    model.load_state_dict({name: value.to(torch.float32) for name, value in state.items()}, strict=True)
    model.eval()
    return model, _info(path, meta, sum(math.prod(shape) for shape in found.values()))


def _config_text(config: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in config.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _read_tensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFileError(f"cannot decode tensors: {detail}", where=path) from None


def build_model(cls: type[StreamingModel], config: dict[str, Any], where: str | Path | None = None) -> StreamingModel:
    """``cls(**config)``, with a config the architecture refuses reported as a :class:`ModelFileError`."""
    try:
        return cls(**config)
    except (TypeError, ValueError) as error:
        detail = str(error).splitlines()[0]
        raise ModelFileError(
            f"config {_config_text(config)} does not fit architecture '{cls.architecture}': {detail}", where=where
        ) from None


# -- writing -----------------------------------------------------------------------------------------------------
def library_versions() -> dict[str, str]:
    """Versions of pedalchain, torch, numpy and python, recorded in every model file."""
    import numpy

    from .. import __version__

    versions = {"pedalchain": __version__, "numpy": numpy.__version__, "python": platform.python_version()}
    try:
        import torch
    except ImportError:  # numpy-only restorer files can be written without torch
        return versions
    return {**versions, "torch": torch.__version__.split("+")[0]}


def save_model(
    path: str | Path,
    model: StreamingModel,
    *,
    sample_rate: float,
    training: dict[str, Any],
    metrics: dict[str, Any],
    kind: str = "emulator",
    stereo_linked: bool = False,
) -> ModelInfo:
    """Write ``model`` and its metadata to one ``.safetensors`` file, atomically (temporary file, then rename).

    Args:
        path: target file; its suffix must be ``.safetensors``.
        model: a StreamingModel whose ``architecture`` is registered (see :mod:`pedalchain.models.registry`).
        sample_rate: rate (Hz) the model was trained at.
        training: at least ``data`` (a description), ``seed`` and ``duration_s`` (seconds of audio); any more
            JSON-able keys are kept (steps, loss, ...).
        metrics: JSON-able measurements, e.g. ``{"esr_holdout": 1.2e-14}``.
        kind: "emulator" or "restorer" (see :data:`KINDS`).
        stereo_linked: reserved: the model treats both channels as one stream.

    Returns the :class:`ModelInfo` of the written file.
    """
    import torch
    from safetensors.torch import save

    path = Path(path)
    cls = architecture_class(getattr(model, "architecture", None))
    if not isinstance(model, cls):
        raise ValueError(
            f"architecture '{model.architecture}' is registered as {cls.__name__}, not {type(model).__name__}"
        )
    extra = {"latency": int(model.latency), "receptive_field": int(model.receptive_field),
             "stereo_linked": bool(stereo_linked)}
    meta, text = _checked_meta(path, model.architecture, model.config(), sample_rate, kind, training, metrics, extra)
    tensors = {name: value.detach().to("cpu", torch.float32, copy=True) for name, value in model.state_dict().items()}
    data = save(tensors, metadata={METADATA_KEY: text})  # one key: byte-identical files on every run
    write_atomically(path, data)
    return _info(path, meta, sum(value.numel() for value in tensors.values()))


def _checked_meta(
    path: Path, architecture: str, config: dict[str, Any], sample_rate: float, kind: str,
    training: dict[str, Any], metrics: dict[str, Any], extra: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """The metadata entry for a new model file and its JSON text; ValueError for anything a loader would refuse."""
    if path.suffix != ".safetensors":
        raise ValueError(f"model files end in .safetensors; got {path.name}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    missing = [key for key in TRAINING_KEYS if key not in training]
    if missing:
        raise ValueError(f"training must record {', '.join(TRAINING_KEYS)}; missing {', '.join(missing)}")
    meta = {
        "format_version": FORMAT_VERSION, "architecture": architecture, "config": config,
        "sample_rate": sample_rate, **extra, "kind": kind,
        "training": training, "metrics": metrics, "versions": library_versions(),
    }
    try:
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model metadata must be JSON-able (finite numbers, text, lists, mappings): {error}") from None
    return meta, text


def save_arrays(
    path: str | Path,
    arrays: dict[str, Any],
    *,
    architecture: str,
    config: dict[str, Any],
    sample_rate: float,
    training: dict[str, Any],
    metrics: dict[str, Any],
    kind: str = "restorer",
    latency: int = 0,
) -> ModelInfo:
    """Write numpy weights and the pedalchain metadata to one ``.safetensors`` file, atomically, without torch.

    For models that run in numpy (the restorers): ``arrays`` maps tensor names to float arrays (stored as
    float32); ``architecture`` and ``config`` are read back by the code that runs them (:func:`load_arrays`).
    The other arguments are as for :func:`save_model`; ``latency`` is in samples at ``sample_rate``.
    """
    import numpy as np
    from safetensors.numpy import save

    path = Path(path)
    meta, text = _checked_meta(
        path, architecture, config, sample_rate, kind, training, metrics, {"latency": int(latency)}
    )
    tensors = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}
    write_atomically(path, save(tensors, metadata={METADATA_KEY: text}))
    return _info(path, meta, sum(value.size for value in tensors.values()))


def is_dense_layer(name: str) -> bool:
    """Whether a tensor name is one of the dense layers ``w0, b0, w1, b1, ...`` of a restorer's network."""
    return name[:1] in ("w", "b") and name[1:].isdigit()


def check_arrays(arrays: dict[str, Any], path: Path, required: Sequence[str] = ()) -> None:
    """:class:`ModelFileError` naming ``path`` unless ``arrays`` can run: every name in ``required`` present, every
    value finite, and dense layers ``w0, b0, w1, b1, ...`` (where there are any) chained: ``w_i`` (in, out_i),
    ``b_i`` (out_i,), each layer's input as wide as the last one's output, an input standardisation (``*_mean``,
    ``*_std``) as wide as ``w0``'s input.  Training writes such files; this finds one damaged or edited since,
    when the chain is loaded rather than in the middle of a render."""
    import numpy as np

    missing = [name for name in required if name not in arrays]
    if missing:
        raise ModelFileError(f"missing tensors {', '.join(missing)}", where=path)
    broken = [name for name, value in arrays.items() if not np.all(np.isfinite(value))]
    if broken:
        raise ModelFileError(f"tensors {', '.join(broken)} hold NaN or infinity: the model is broken (re-train it)",
                             where=path)
    layers = sorted(int(name[1:]) for name in arrays if is_dense_layer(name))
    if not layers:
        return
    width = None
    for index in range(max(layers) + 1):
        weight, bias = arrays.get(f"w{index}"), arrays.get(f"b{index}")
        if weight is None or bias is None:
            raise ModelFileError(f"missing tensor {'w' if weight is None else 'b'}{index} of its dense layers",
                                 where=path)
        if weight.ndim != 2 or bias.shape != (weight.shape[1],) or width not in (None, weight.shape[0]):
            after = f" after {width} outputs of layer {index - 1}" if width is not None else ""
            raise ModelFileError(f"dense layer {index} does not fit together: w{index} {list(weight.shape)}, "
                                 f"b{index} {list(bias.shape)}{after}", where=path)
        width = weight.shape[1]
    inputs = arrays["w0"].shape[0]
    for name, value in arrays.items():
        if name.endswith(("_mean", "_std")) and value.shape != (inputs,):
            raise ModelFileError(f"tensor '{name}' has shape {list(value.shape)}, the first layer takes {inputs}",
                                 where=path)


def load_arrays(path: str | Path, architecture: str, required: Sequence[str] = ()) -> tuple[dict[str, Any], ModelInfo]:
    """The float32 numpy weights and info of a file written by :func:`save_arrays` (no torch).

    Raises :class:`ModelFileError` naming the file when it is not a pedalchain model file, holds another
    architecture than ``architecture``, or fails :func:`check_arrays` (with ``required``).
    """
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    tensors, metadata, _ = read_header(path)
    meta = _metadata(path, metadata)
    if meta["architecture"] != architecture:
        raise ModelFileError(
            f"holds a '{meta['architecture']}' model, this step needs '{architecture}'", where=path
        )
    bad = [name for name, entry in tensors.items() if entry["dtype"] not in _FLOAT_DTYPES]
    if bad:
        raise ModelFileError(f"tensors {', '.join(bad)} are not floating point", where=path)
    try:
        arrays = load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFileError(f"cannot decode tensors: {detail}", where=path) from None
    arrays = {name: value.astype(np.float32, copy=False) for name, value in arrays.items()}
    check_arrays(arrays, path, required)
    return arrays, _info(path, meta, sum(value.size for value in arrays.values()))


# -- finding models ------------------------------------------------------------------------------------------------
def weights_dir() -> Path:
    """Folder of the models shipped with pedalchain."""
    return Path(__file__).resolve().parent / "weights"


def shipped_models() -> dict[str, Path]:
    """Shipped model name -> file, over ``models/weights/*.safetensors`` (emulators, for ``model: NAME``)."""
    return {path.stem: path for path in sorted(weights_dir().glob("*.safetensors"))}


def shipped_restorer_models() -> dict[str, Path]:
    """Restorer name -> its shipped weights, over ``models/weights/restorers/*.safetensors`` (``restorer: NAME``
    loads them; they are not ``model:`` steps)."""
    return {path.stem: path for path in sorted((weights_dir() / "restorers").glob("*.safetensors"))}


def is_bare_name(spec: str | Path) -> bool:
    """A bare name has no folder and no suffix: it names a shipped model."""
    text = str(spec)
    return "/" not in text and os.sep not in text and not Path(text).suffix and text not in ("", ".", "..")


def resolve_model(spec: str | Path, base_dir: str | Path) -> Path:
    """A model file from a YAML ``model:`` value: a bare name (no ``/``, no suffix) is a shipped model,
    anything else a path, relative paths resolving against ``base_dir`` (the YAML file's folder)."""
    if is_bare_name(spec):
        shipped = shipped_models()
        if str(spec) in shipped:
            return shipped[str(spec)]
        if str(spec) in shipped_restorer_models():
            raise ModelFileError(f"is a restorer, not a model step: use '- restorer: {spec}'", where=str(spec))
        close = difflib.get_close_matches(str(spec), shipped, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        names = ", ".join(shipped) or "none"
        raise ModelFileError(
            f"no shipped model of that name{hint} (shipped: {names}); a model file needs its suffix, e.g. "
            f"{spec}.safetensors",
            where=str(spec),
        )
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else Path(base_dir) / path
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelFileError(
            f"unknown model file type '{path.suffix}': expected {' or '.join(MODEL_SUFFIXES)}", where=path
        )
    if not path.is_file():
        raise ModelFileError("no such model file" if not path.exists() else "is not a file", where=path)
    return path


def open_model(path: str | Path) -> tuple[StreamingModel, ModelInfo]:
    """Load a ``.safetensors`` or ``.nam`` model file (torch is imported here)."""
    path = Path(path)
    if path.suffix.lower() == ".nam":
        return _nam_module(path).load_nam(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(f"unknown model file type '{path.suffix}': expected .safetensors or .nam", where=path)
    return load_model(path)


def _nam_module(path: Path) -> Any:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise PluginLoadError(NEEDS_TORCH, where=path) from None
    try:
        from . import nam
    except ModuleNotFoundError as error:
        if error.name and error.name.endswith("models.nam"):
            raise ModelFileError(".nam support is not installed in this pedalchain", where=path) from None
        raise
    return nam


def model_info(path: str | Path) -> ModelInfo:
    """:class:`ModelInfo` of a ``.safetensors`` (header only, no torch) or ``.nam`` model file."""
    path = Path(path)
    if path.suffix.lower() == ".nam":
        return _nam_module(path).load_nam(path)[1]
    return read_model_info(path)


# -- CLI handlers --------------------------------------------------------------------------------------------------
def describe_model_file(spec: str | Path) -> str:
    """Text for ``chain info PATH``: a model file (.safetensors or .nam), a shipped model's bare name, or a
    restorer's (its shipped weights: training data and test metrics)."""
    restorers = shipped_restorer_models()
    if is_bare_name(spec) and str(spec) not in shipped_models():
        if str(spec) in restorers:
            return model_info(restorers[str(spec)]).describe()
        names = sorted({*shipped_models(), *restorers})
        close = difflib.get_close_matches(str(spec), names, n=1)
        raise ModelFileError(f"no shipped model of that name{f'; did you mean {close[0]!r}?' if close else ''} "
                             f"(shipped: {', '.join(names)}); a model file needs its suffix", where=str(spec))
    return model_info(resolve_model(spec, Path.cwd())).describe()


def describe_shipped_models() -> str:
    """Text for ``chain models``: one line per shipped model, then how to use one."""
    lines = []
    for group, how in ((shipped_models(), "use one in a chain with '- model: NAME'"),
                       (shipped_restorer_models(), "restorers' weights, used by '- restorer: NAME'")):
        for path in group.values():
            try:
                lines.append(read_model_info(path).summary_line())
            except ModelFileError as error:
                lines.append(f"{path.stem:<16} unreadable: {error.message}")
        if group:
            lines.append(f"  ({how})")
    if not lines:
        return "no shipped models"
    lines.append("details, training data and test metrics: 'chain info NAME'")
    return "\n".join(lines)
