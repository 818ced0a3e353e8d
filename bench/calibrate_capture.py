"""Measure the capture trainer's work rates on this machine, to set ``REFERENCE_SAMPLES_PER_S``.

    .venv/bin/python bench/calibrate_capture.py [--work-s 60] [--families fir,wiener-hammerstein,...]

Each family trains alone (target ESR out of reach) for ``--work-s`` seconds of work on the built-in 48 kHz
excitation rendered through a capture preset, on one torch thread.  The wall time from one charge of the trainer's
:class:`~pedalchain.models.capture.trainer.WorkClock` to the next is put down to the work the second charge is
for; the lines printed are, per kind of work, the samples per second this machine did (the constant that would
make a second of work take a second here) next to the constant, and per family the wall time against the work
time.  On the reference machine the constants are set from an idle run, so that ``--minutes`` is about wall
minutes there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))

from pedalchain.chains.yaml_io import load_chain  # noqa: E402
from pedalchain.models.capture import trainer  # noqa: E402
from pedalchain.models.capture.excitation import make_excitation  # noqa: E402
from pedalchain.models.capture.pairing import prepare_pair  # noqa: E402

PRESETS = ROOT / "chains" / "presets"
TARGETS = {"fir": "capture-lowpass.yaml", "wiener-hammerstein": "capture-fuzz.yaml",
           "compressor": "capture-compressor.yaml", "lstm": "capture-zamtube.yaml", "wavenet": "capture-fuzz.yaml"}
SAMPLES: dict[str, float] = defaultdict(float)
WALL: dict[str, float] = defaultdict(float)


class TimedClock(trainer.WorkClock):
    """A work clock that also puts the wall time since its last charge down to the work being charged."""

    def __init__(self) -> None:
        super().__init__()
        self.last = time.perf_counter()

    def charge(self, work: str, samples: int) -> None:
        super().charge(work, samples)
        now = time.perf_counter()
        SAMPLES[work] += samples
        WALL[work] += now - self.last
        self.last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-s", type=float, default=60.0)
    parser.add_argument("--families", default=",".join(TARGETS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    excitation = make_excitation(48000, seed=0)
    for family in args.families.split(","):
        wet = load_chain(PRESETS / TARGETS[family]).process(excitation.audio[None], excitation.sample_rate)
        pair = prepare_pair(excitation.audio, wet, excitation.sample_rate, excitation=excitation, rendered=True)
        began = time.perf_counter()
        result = trainer.train_emulator(pair, family, target_esr=1e-12, budget_s=args.work_s, device="cpu",
                                        clock=TimedClock())
        wall = time.perf_counter() - began
        print(f"{family:<19} work {result.seconds:6.1f} s  wall {wall:6.1f} s  wall/work {wall / result.seconds:5.2f}",
              flush=True)
    for work in sorted(SAMPLES):
        rate = SAMPLES[work] / max(WALL[work], 1e-9)
        constant = trainer.REFERENCE_SAMPLES_PER_S[work]
        print(f"  {work:<30} {rate:9.3g} samples/s here  constant {constant:9.3g}  wall {WALL[work]:6.1f} s  "
              f"wall/work {constant / rate:5.2f}", flush=True)


if __name__ == "__main__":
    main()
