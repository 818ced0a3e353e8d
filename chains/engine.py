"""The Chain: an ordered, list-like sequence of steps that is itself a Processor.

Consecutive native pedalboard plugins run as one native ``pedalboard.Pedalboard`` (pedalboard cannot
host Python plugins, its issue #12); our Python processors run between those native segments.
This module must not import torch: neural steps bring it in only when they are built.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard
import soundfile as sf

from ..effects.combinators import DryWet, Parallel
from ..effects.native import NativeSegment, walk_plugins
from ..effects.processor import Processor, input_analysed
from ..effects.stock import BUILTIN_PLUGINS, check_sample_rate
from ..effects.units import format_quantity
from ..effects.vst3 import prepare_vst3
from ..errors import ParameterError

StepObject = pedalboard.Plugin | Processor


@dataclass
class Step:
    """One entry of a Chain: the plugin or processor and the step keywords that apply to any step.

    Args:
        processor: a native pedalboard plugin (built-in or VST3) or a pedalchain Processor.
        wet: dry/wet blend, 0.0 (dry only) to 1.0 (processed only); the dry path is latency-aligned.
        bypass: when True the step is kept (and saved) but does not process.
        id: an optional name to find the step by (``chain["comp"]``).
        min_rate_hz: the step runs only on audio at this sample rate (Hz) or higher and is passed over below
            it, with a note in the file summary: a preset's 9 kHz "air" shelf, say, which 16 kHz audio cannot
            take, where the rest of the preset should still run.  None: every rate (an invalid setting is
            refused).
    """

    processor: StepObject
    wet: float = 1.0
    bypass: bool = False
    id: str | None = None
    min_rate_hz: float | None = None
    origin: str | None = field(default=None, compare=False)
    """Where the step was defined ("file.yaml:12"), for error messages; not saved."""

    def __post_init__(self) -> None:
        if not isinstance(self.processor, (pedalboard.Plugin, Processor)):
            raise TypeError(
                f"a chain step must be a pedalboard plugin or a pedalchain Processor, "
                f"not {type(self.processor).__name__}"
            )
        if isinstance(self.wet, bool) or not isinstance(self.wet, (int, float)) or not 0.0 <= self.wet <= 1.0:
            raise ValueError(f"wet must be a number within [0, 1]; got {self.wet!r}")
        self.wet = float(self.wet)
        if self.min_rate_hz is not None:
            if (
                isinstance(self.min_rate_hz, bool)
                or not isinstance(self.min_rate_hz, (int, float))
                or not self.min_rate_hz > 0
            ):
                raise ValueError(f"min_rate_hz must be a positive sample rate (Hz); got {self.min_rate_hz!r}")
            self.min_rate_hz = float(self.min_rate_hz)

    def runs_at(self, sample_rate: float | None) -> bool:
        """Whether the step runs at ``sample_rate`` (None: not known yet, taken as yes)."""
        return self.min_rate_hz is None or sample_rate is None or sample_rate >= self.min_rate_hz

    def describe(self) -> str:
        """The step for messages: its id, else its processor's name (a restorer's, a VST3's) or type, and where it
        was defined."""
        own = getattr(self.processor, "name", None)
        name = self.id or (own if isinstance(own, str) and own else type(self.processor).__name__)
        return f"{name} ({Path(self.origin).name})" if self.origin else name


def _own_stage(processor: StepObject) -> Processor | None:
    """The Processor that runs ``processor``, or None for a native leaf plugin that joins a NativeSegment.

    pedalboard's own containers become ours: a native ``Mix`` streamed block by block misaligns
    branches of different latency (measured with pedalboard 0.9.26), so it runs as a :class:`Parallel`.
    """
    if isinstance(processor, pedalboard.Mix):
        return Parallel([Chain(_members(branch)) for branch in processor])
    if isinstance(processor, pedalboard.PluginContainer):
        return Chain(list(processor))
    if isinstance(processor, pedalboard.Plugin):
        return None
    return processor


def _members(branch: pedalboard.Plugin) -> list[pedalboard.Plugin]:
    if isinstance(branch, pedalboard.PluginContainer) and not isinstance(branch, pedalboard.Mix):
        return list(branch)
    return [branch]


class Chain(Processor):
    """An ordered chain of steps, processed in sequence; list-like and itself a Processor, so chains nest.

    Args:
        steps: pedalboard plugins, pedalchain Processors or :class:`Step` objects.
        name: a label, written to YAML by :meth:`save`.
        description: a line saying what the chain is for (``chain presets`` shows a preset's), written to YAML.
        loudness_lufs: integrated loudness target (LUFS) applied by the file runner after the chain
            in a second pass; buffers processed with ``chain(audio, sr)`` are not normalised.
    """

    def __init__(
        self,
        steps: Iterable[StepObject | Step] = (),
        name: str | None = None,
        loudness_lufs: float | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.description = description
        self.loudness_lufs = loudness_lufs
        self._steps: list[Step] = [self._as_step(item) for item in steps]
        self._stages: list[Processor] | None = None
        self._built_from: list[tuple[int, float, bool, float | None]] = []
        """:meth:`_layout` when the stages were built."""
        self._rate: float | None = None
        """The sample rate the stages were built for (steps with ``min_rate_hz`` above it left out)."""

    # -- list-like ----------------------------------------------------------------------------------------
    @staticmethod
    def _as_step(item: StepObject | Step, **options: Any) -> Step:
        return item if isinstance(item, Step) and not options else Step(item, **options)

    def _changed(self) -> None:
        self._stages = None
        self._set_up_again()

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[StepObject]:
        return (step.processor for step in self._steps)

    def __getitem__(self, key: int | str) -> StepObject:
        return self.step(key).processor

    def __setitem__(self, index: int, item: StepObject | Step) -> None:
        self._steps[index] = self._as_step(item)
        self._changed()

    def __delitem__(self, index: int) -> None:
        del self._steps[index]
        self._changed()

    def step(self, key: int | str) -> Step:
        """The :class:`Step` at an index, or with an ``id``."""
        if isinstance(key, str):
            for step in self._steps:
                if step.id == key:
                    return step
            known = [step.id for step in self._steps if step.id]
            raise KeyError(f"no step with id '{key}'; ids in this chain: {known or 'none'}")
        return self._steps[key]

    @property
    def steps(self) -> list[Step]:
        """The steps (a copy of the list; the Step objects themselves are live)."""
        return list(self._steps)

    def append(self, item: StepObject | Step, **options: Any) -> None:
        """Add a step at the end; ``options`` are Step keywords (wet, bypass, id, min_rate_hz)."""
        self._steps.append(self._as_step(item, **options))
        self._changed()

    def insert(self, index: int, item: StepObject | Step, **options: Any) -> None:
        self._steps.insert(index, self._as_step(item, **options))
        self._changed()

    def remove(self, item: StepObject) -> None:
        del self._steps[self.index(item)]
        self._changed()

    def index(self, item: StepObject) -> int:
        for position, step in enumerate(self._steps):
            if step.processor is item:
                return position
        raise ValueError(f"{item!r} is not in this chain")

    def __repr__(self) -> str:
        shown = []
        for step in self._steps:
            text = repr(step.processor)
            extras = [f"id={step.id}"] if step.id else []
            extras += [f"wet={step.wet:g}"] if step.wet != 1.0 else []
            extras += ["bypassed"] if step.bypass else []
            shown.append(f"{text} ({', '.join(extras)})" if extras else text)
        label = f" '{self.name}'" if self.name else ""
        return f"<pedalchain.Chain{label} with {len(self)} steps: [{', '.join(shown)}]>"

    # -- conversion ---------------------------------------------------------------------------------------
    @classmethod
    def from_pedalboard(cls, board: pedalboard.Pedalboard, name: str | None = None) -> Chain:
        """A Chain holding the plugins of a live ``pedalboard.Pedalboard`` (VST3 included)."""
        return cls(list(board), name=name)

    def save(self, path: str | Path) -> None:
        """Write this chain as YAML (paths relative to the file's folder, VST3 state included)."""
        from .yaml_io import save_chain

        save_chain(self, path)

    # -- processing ---------------------------------------------------------------------------------------
    @property
    def streamable(self) -> bool:  # type: ignore[override]
        return all(stage.streamable for stage in self.stages())

    def stages(self) -> list[Processor]:
        """What actually runs: native segments and Python processors, bypassed steps left out."""
        if self._stages is None or self._layout() != self._built_from:
            self._built_from = self._layout()
            self._stages = self._build_stages()
        return self._stages

    def _layout(self) -> list[tuple[int, float, bool, float | None]]:
        """What the stages are built from: each step's processor and keywords.  The Step objects are live (a
        bypass set on ``chain.step("comp")`` applies from the next call)."""
        return [(id(step.processor), step.wet, step.bypass, step.min_rate_hz) for step in self._steps]

    def _runs(self) -> list[Processor]:
        return self.stages()

    def _build_stages(self) -> list[Processor]:
        stages: list[Processor] = []
        pending: list[pedalboard.Plugin] = []
        for step in self._steps:
            if step.bypass or step.wet == 0.0 or not step.runs_at(self._rate):
                continue
            stage = _own_stage(step.processor)
            if stage is None and step.wet == 1.0:
                pending.append(step.processor)
                continue
            if pending:
                stages.append(NativeSegment(pending))
                pending = []
            if stage is None:
                stage = NativeSegment([step.processor])
            stages.append(stage if step.wet == 1.0 else DryWet(stage, step.wet))
        if pending:
            stages.append(NativeSegment(pending))
        return stages

    @property
    def analyses_input(self) -> bool:
        return any(stage.analyses_input for stage in self.stages())

    def check_format(self, sample_rate: float, num_channels: int) -> None:
        """Refuse settings invalid at ``sample_rate`` (a cutoff above Nyquist) or channel counts a plugin
        cannot take (a stereo-only VST3 on 6 channels); errors name the step's YAML line when known."""
        for step in self._steps:
            if not step.runs_at(sample_rate):
                continue
            try:
                _check_step_format(step.processor, sample_rate, num_channels)
            except ParameterError as error:
                if step.origin is None or (error.where or "").startswith(step.origin):
                    raise
                raise ParameterError(f"{error.where}: {error.message}", where=step.origin) from None

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        """Each stage's findings, in order.  A stage that sets itself from its input
        (:attr:`~pedalchain.effects.processor.Processor.analyses_input`) is shown what reaches it: after a
        6 dB cut declip's rails must be where the cut put them, and after a step with latency the phase of a hold
        or the parity of doubled samples moves with it.  So the stages before it are rendered first
        (:func:`render_for_analysis`), once each however many analysing stages follow."""
        if self._use_rate(sample_rate):
            self._set_up_again()  # prepared with other stages
        notes = self.passed_over(sample_rate)
        stages = self.stages()
        with contextlib.ExitStack() as renders:
            seen, reaches = source, 0  # ``seen`` is what reaches stages[reaches]
            for index, stage in enumerate(stages):
                if stage.analyses_input and index > reaches:
                    seen = renders.enter_context(
                        render_for_analysis(stages[reaches:index], seen, sample_rate, streamed=self.streamable))
                    reaches = index
                notes += stage.analyze_input(seen, sample_rate)
        return notes

    def passed_over(self, sample_rate: float) -> list[str]:
        """One line per step (of this chain, not nested ones) that ``min_rate_hz`` keeps from running at
        ``sample_rate``."""
        return [
            f"{step.describe()}: not run at {format_quantity(sample_rate, 'Hz')} "
            f"(min_rate {format_quantity(step.min_rate_hz, 'Hz')})"
            for step in self._steps
            if not step.runs_at(sample_rate) and not step.bypass
        ]

    def _use_rate(self, sample_rate: float) -> bool:
        """Build the stages for ``sample_rate`` from now on; whether that changes which steps run."""
        changed = any(step.runs_at(sample_rate) != step.runs_at(self._rate) for step in self._steps)
        self._rate = sample_rate
        if changed:
            self._stages = None
        return changed

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self._use_rate(sample_rate)
        self.check_format(sample_rate, num_channels)
        return sum(stage.latency_at(sample_rate, num_channels) for stage in self.stages())

    def _reset_state(self) -> None:
        for stage in self.stages():
            stage.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        stages = self.stages()
        if not stages:
            return audio.copy()
        for stage in stages:
            audio = stage.process(audio, sample_rate, reset=False)
        return audio

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        stages = self.stages()
        if not stages:
            return audio.copy()
        if len(stages) == 1:
            return stages[0].process(audio, sample_rate, buffer_size, reset=True)
        if self.streamable:
            # Stage by stage, each one-shot would cut the tail that a later latent stage still needs;
            # streaming the buffer plus `latency` zeros gives exactly what the file runner writes.
            return super()._process_whole(audio, sample_rate, buffer_size)
        for stage in stages:
            audio = stage.process(audio, sample_rate, buffer_size, reset=True)
        return audio

    def _not_streamable_reason(self) -> str:
        return next(stage._not_streamable_reason() for stage in self.stages() if not stage.streamable)


ANALYSIS_BLOCK = 1 << 16
"""Samples per block when stages are rendered for a later stage's analysis."""


@contextlib.contextmanager
def render_for_analysis(stages: Sequence[Processor], source: Path | np.ndarray, sample_rate: float,
                        streamed: bool = True) -> Iterator[Path | np.ndarray]:
    """What ``stages`` hand on when ``source`` (a file or a (channels, n) buffer) streams through them, as the
    stage after them receives it: from its first sample, the stages' latency in front, and with their tails
    flushed (n + latency samples).  A buffer gives a buffer; a file gives a temporary float32 W64 file (read in
    blocks like the input, so memory stays bounded; deleted on exit).  ``streamed=False`` (a chain with a step
    that cannot stream, which renders stage by stage one-shot) runs each stage one-shot on the whole input."""
    from .audio_io import source_blocks

    if not streamed:
        audio = np.atleast_2d(source) if isinstance(source, np.ndarray) else np.concatenate(
            list(source_blocks(source, ANALYSIS_BLOCK)), axis=1)
        with input_analysed():  # the stages were analysed before this render
            for stage in stages:
                audio = stage.process(audio, sample_rate, reset=True)
        yield audio
    elif isinstance(source, np.ndarray):
        blocks = list(_streamed_through(stages, source, sample_rate))
        yield np.concatenate(blocks, axis=1) if blocks else source
    else:
        with _temporary_w64(_streamed_through(stages, source, sample_rate), sample_rate) as path:
            yield path


def _streamed_through(stages: Sequence[Processor], source: Path | np.ndarray, sample_rate: float
                      ) -> Iterator[np.ndarray]:
    """The blocks ``stages`` give for ``source`` streamed through them and then their latency in zeros; the
    stages are reset before and after (the real run starts from silence, as if nothing had been rendered)."""
    from .audio_io import probe_audio, source_blocks

    channels = np.atleast_2d(source).shape[0] if isinstance(source, np.ndarray) else probe_audio(source).channels

    def through(block: np.ndarray) -> np.ndarray:
        for stage in stages:
            block = stage.process(block, sample_rate, reset=False)
        return block

    for stage in stages:
        stage.reset()
    try:
        seen = False
        for block in source_blocks(source, ANALYSIS_BLOCK):
            seen = True
            yield through(block)
        tail = sum(stage.latency for stage in stages) if seen else 0  # the first block prepared them
        for start in range(0, tail, ANALYSIS_BLOCK):
            yield through(np.zeros((channels, min(ANALYSIS_BLOCK, tail - start)), np.float32))
    finally:
        for stage in stages:
            stage.reset()


@contextlib.contextmanager
def _temporary_w64(blocks: Iterable[np.ndarray], sample_rate: float) -> Iterator[Path]:
    """``blocks`` written to a float32 W64 file (no 4 GB limit) in a new temporary folder, removed on exit."""
    from ..errors import AudioFileError

    def cannot_write(error: Exception, where: str | Path) -> AudioFileError:
        reason = getattr(error, "strerror", None) or str(error)
        return AudioFileError(f"cannot write what reaches a later step, for its analysis ({reason})", where=where)

    try:
        folder = Path(tempfile.mkdtemp(prefix="pedalchain-analysis-"))
    except OSError as error:
        raise cannot_write(error, tempfile.gettempdir()) from None
    try:
        path = folder / "reaching-the-step.w64"
        writer: sf.SoundFile | None = None
        try:
            for block in blocks:
                try:
                    if writer is None:
                        writer = sf.SoundFile(str(path), "w", int(round(sample_rate)), block.shape[0], "FLOAT",
                                              format="W64")
                    writer.write(block.T)
                except (OSError, sf.LibsndfileError) as error:
                    raise cannot_write(error, folder) from None
        finally:
            if writer is not None:
                writer.close()
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_step_format(processor: StepObject, sample_rate: float, num_channels: int) -> None:
    if isinstance(processor, Parallel):
        for branch in processor.branches:
            _check_step_format(branch, sample_rate, num_channels)
    elif isinstance(processor, pedalboard.Plugin):
        for plugin in walk_plugins(processor):
            if type(plugin).__name__ in BUILTIN_PLUGINS:
                check_sample_rate(plugin, sample_rate)
            elif isinstance(plugin, pedalboard.VST3Plugin):
                prepare_vst3(plugin, num_channels)
    elif isinstance(processor, Processor):
        processor.check_format(sample_rate, num_channels)
