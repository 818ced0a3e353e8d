"""Restorers: processors that repair damaged audio, as ``restorer:`` steps in a chain.

``- restorer: NAME`` with the restorer's parameters beside it (``- restorer: denoise`` / ``amount_db: 12``).
Each name maps to a :class:`Restorer` subclass imported on first use, so a chain without restorers never
loads their code or weights.  Restorers run at the file's own sample rate and stream block by block with a
fixed latency, like every Processor.

Some restorers decide from the whole input what to do (``restorer: auto`` routes by detection,
``cutoff: auto`` finds a band limit): they implement :meth:`Processor.analyze_input`, which the file
runner calls with the input file before rendering and one-shot ``process`` calls with the buffer; in a chain,
with what reaches the step (the steps before it rendered: :meth:`pedalchain.chains.engine.Chain.analyze_input`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from abc import ABCMeta
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ...chains.steps import LoadContext, SaveContext, StepKind, yaml_number
from ...errors import ChainFileError, ModelFileError, ParameterError
from ..processor import Processor

RESTORERS: dict[str, str] = {
    "doubled-samples": "pedalchain.effects.restorers.doubled:DoubledSampleRepair",
    "bandwidth": "pedalchain.effects.restorers.bandwidth:BandwidthExtension",
    "denoise": "pedalchain.effects.restorers.denoise:Denoise",
    "declip": "pedalchain.effects.restorers.declip:Declip",
    "dequantize": "pedalchain.effects.restorers.dequantize:Dequantize",
    "auto": "pedalchain.effects.restorers.auto:AutoRestore",
}
"""Restorer name (the YAML value) -> ``"module:Class"`` of a :class:`Restorer` subclass."""


class _Built(ABCMeta):
    """Marks an instance as built once its constructor has returned: from then on :class:`Restorer` refuses
    settings it does not have."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        object.__setattr__(instance, "_built", True)
        return instance


class Restorer(Processor, metaclass=_Built):
    """Base class of the restorers: a Processor that is built from, and saved back to, YAML parameters.

    Its settings are attributes, as a pedalboard plugin's are; like pedalboard, setting one it does not have
    (``denoise.amunt_db = 3``) raises AttributeError instead of doing nothing.  So a subclass creates its public
    attributes in ``__init__`` and keeps state it makes later in ``_private`` ones."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (not name.startswith("_") and self.__dict__.get("_built") and name not in self.__dict__
                and not hasattr(type(self), name)):
            known = [attribute for attribute in dir(self) if not attribute.startswith("_")]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise AttributeError(f"{type(self).__name__} has no setting '{name}'{hint}")
        super().__setattr__(name, value)

    #: the YAML value naming this restorer, e.g. "doubled-samples"
    name: str
    #: sample rates it runs at (Hz), and why, when that is not obvious
    min_rate_hz: float = 8000.0
    max_rate_hz: float = 192000.0
    rate_note: str = ""

    def check_format(self, sample_rate: float, num_channels: int) -> None:
        self.check_rate(sample_rate)

    def check_rate(self, sample_rate: float) -> None:
        """ParameterError naming this restorer unless ``sample_rate`` lies in [min_rate_hz, max_rate_hz]."""
        if not self.min_rate_hz <= sample_rate <= self.max_rate_hz:
            raise ParameterError(
                f"runs at {self.min_rate_hz / 1000:g}–{self.max_rate_hz / 1000:g} kHz{self.rate_note}; this audio "
                f"is {sample_rate:g} Hz (resample it first)", where=f"restorer: {self.name}")

    @classmethod
    def from_params(
        cls, params: dict[str, Any], where: str | None = None, base_dir: str | Path | None = None
    ) -> Restorer:
        """Build from the step's YAML parameters; bad values raise ParameterError naming the parameter.

        ``base_dir`` is the YAML file's folder: relative paths (a ``model:`` file) resolve against it.
        """
        if params:
            raise ParameterError(f"restorer '{cls.name}' takes no parameters, got {', '.join(params)}", where=where)
        return cls()

    def params(self) -> dict[str, Any]:
        """The YAML parameters that rebuild this restorer through :meth:`from_params` (defaults may be left out)."""
        return {}


MAX_THREADS = 2
"""Threads the restorers spread independent work over (channels, segments): their speed goals are set on 2
cores.  The output never depends on it: each piece reads the input and writes only its own samples."""
THREADS_ENV = "PEDALCHAIN_RESTORER_THREADS"
"""Environment variable: threads for that work instead of MAX_THREADS (1: none); ``chain apply --jobs N`` sets 1
in its workers, whose N processes already fill N cores."""
_thread_pool: ThreadPoolExecutor | None = None
_blas: Any = None
"""threadpoolctl's controller of the BLAS libraries, made with the pool: limiting through it costs 0.03 ms, a fresh
``threadpool_limits`` 1.3 ms (it looks the libraries up each time)."""
_thread_pool_lock = threading.Lock()
Item = TypeVar("Item")
Result = TypeVar("Result")


def on_threads(function: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """``[function(item) for item in items]``, on :func:`restorer_threads` threads shared by all restorers when
    there are two items or more.  Worth it only where ``function`` spends its time without the GIL: numpy's FFTs and
    matrix products, LAPACK through :mod:`.lapack`.  BLAS is held to one thread meanwhile: these threads are the
    parallelism, and BLAS's own pool on top of them oversubscribed the 2 cores (denoise streamed by a script in
    64k-sample blocks, outside the file runner's limit, ran 1.3-1.8x slower than on one thread)."""
    global _thread_pool, _blas
    if len(items) < 2 or restorer_threads() < 2:
        return [function(item) for item in items]
    with _thread_pool_lock:
        if _thread_pool is None:
            from threadpoolctl import ThreadpoolController

            _thread_pool = ThreadPoolExecutor(restorer_threads(), thread_name_prefix="pedalchain-restorer")
            _blas = ThreadpoolController()  # numpy's BLAS and scipy's (loaded with .lapack) are in by now
    with _blas.limit(limits=1, user_api="blas"):
        return list(_thread_pool.map(function, items))


def restorer_threads() -> int:
    """Threads :func:`on_threads` uses: :data:`THREADS_ENV` when it holds a whole number >= 1, else MAX_THREADS."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else MAX_THREADS


def resolve_model_param(value: Any, where: str | None, base_dir: str | Path | None, architecture: str) -> Path:
    """The ``model:`` parameter of a restorer: a path to a ``.safetensors`` file, relative to ``base_dir``
    (the YAML's folder; the working directory when not given), holding an ``architecture`` model.  Checked when
    the chain is loaded (its tensors too), not when the restorer first needs its weights: ParameterError when it
    is not such a file, ModelFileError when it is not a model of this restorer."""
    from ...models.model_file import load_arrays, read_model_info

    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise ParameterError(f"model: expects a path to a .safetensors file, got {value!r}", where=where)
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    if path.suffix != ".safetensors":
        raise ParameterError(f"model: {value} is not a .safetensors file", where=where)
    if not path.is_file():
        raise ParameterError(f"model: no such model file {path}", where=where)
    found = read_model_info(path).architecture
    if found != architecture:
        raise ModelFileError(f"holds a '{found}' model, this step needs '{architecture}'", where=path)
    load_arrays(path, architecture, shipped_tensor_names(architecture))  # checked now, not mid-render
    return path


def shipped_tensor_names(architecture: str) -> list[str]:
    """The tensors besides dense layers (``w0``, ``b0``...) that the shipped model of ``architecture`` holds:
    what a model file for the same restorer must hold too."""
    from ...models.model_file import is_dense_layer, read_header, read_model_info, shipped_restorer_models

    for path in shipped_restorer_models().values():
        if read_model_info(path).architecture == architecture:
            return [name for name in read_header(path)[0] if not is_dense_layer(name)]
    return []


def restorer_class(name: str, where: str | None = None) -> type[Restorer]:
    """The Restorer subclass registered as ``name``; ChainFileError with a suggestion for unknown names."""
    if name not in RESTORERS:
        close = difflib.get_close_matches(name, RESTORERS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ChainFileError(f"unknown restorer '{name}'{hint} (known: {', '.join(RESTORERS)})", where=where)
    module, attribute = RESTORERS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


class RestorerStep(StepKind):
    keyword = "restorer"
    summary = f"a repair of damaged audio: {', '.join(RESTORERS)}, with its parameters beside it"

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> Restorer:
        if not isinstance(value, str) or not value.strip():
            raise ChainFileError(f"restorer: expects a restorer name ({', '.join(RESTORERS)}), got {value!r}",
                                 where=where)
        return restorer_class(value.strip(), where).from_params(dict(params), where, base_dir=context.base_dir)

    def owns(self, obj: Any) -> bool:
        return isinstance(obj, Restorer)

    def dump(self, obj: Any, context: SaveContext) -> dict[str, Any]:
        values = {key: yaml_number(value) for key, value in obj.params().items()}
        if values.get("model") is not None:  # a trained file: written relative to the YAML like other paths
            values["model"] = context.relative(values["model"])
        return {"restorer": obj.name, **values}


RESTORER_STEP = RestorerStep()

__all__ = ["MAX_THREADS", "RESTORERS", "RESTORER_STEP", "THREADS_ENV", "Restorer", "on_threads",
           "resolve_model_param", "restorer_class", "restorer_threads"]
