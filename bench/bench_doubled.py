"""Doubled-samples repair on held-out real recordings: quality against baselines, and speed.

    python bench/bench_doubled.py [--runs 3] [--no-results]

Material: the files of the shipped model's **test split** (``training.test`` in its metadata, never used for
fitting or selection) that are real recordings: Debian's sonic-pi samples (CC0, 44.1 kHz).  Each is damaged
with ``y[2n+1] = y[2n]`` (parity 0) and repaired by four methods, all measured against the clean file with
:func:`pedalchain.chains.compare.compare_arrays` (LSD: centred reflect-padded STFT n_fft 2048, hop 512, Hann,
power floor 1e-8, log10, RMS over bins per frame, mean over frames, averaged over channels; split at fs/4):

- damaged: the input itself;
- naive: decimate + resample (``mode: naive``: the kept samples through the restorer's half-band interpolator);
- noise-fill: naive low band, high band = noise with the mirror image's envelope (32-band average of the mirror's
  magnitude per frame, random phase, seeded), through the same STFT and transition band;
- ours: ``restorer: doubled-samples`` with the shipped model (``mode: always``, parity from detection).

Means over files are per-file averages (each file counts once).  Speed on a 60 s stereo 44.1 kHz buffer (the
test files concatenated and looped, BLAS on one thread as the file runner holds it): the render (``process``
with the whole buffer as one block after ``analyze_input``), wall clock best and median of ``--runs`` and CPU time; the
analysis pass alone; and ``chain apply repair`` end to end on that buffer written as a WAV (median wall time,
start-up, analysis and WAV I/O included).  A before/after spectrogram of one file goes to
``bench/doubled_spectrogram.png``.

Replaces the ``bench_doubled`` section of bench/RESULTS.md unless --no-results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import BENCH, DATA, chain_command, load_now, machine, machine_lines, replace_section, yes_no  # noqa: E402


def _bare_machine_imports() -> None:
    """``--speed-only`` on a benchmark box without pedalboard, soundfile or PyYAML (e.g. an idle machine with only
    numpy): the repair's numpy code never calls them, so stand-ins are registered for them and for the two package
    ``__init__`` modules that would import them; nothing else is faked."""
    class _Anything(type):
        def __getattr__(cls, name: str) -> type:
            if name.startswith("__"):
                raise AttributeError(name)
            return _Anything(name, (), {})

    class _Module(types.ModuleType):
        def __getattr__(self, name: str) -> type:
            if name.startswith("__"):
                raise AttributeError(name)
            return _Anything(name, (), {})

    for name in ("pedalboard", "pedalboard.io", "yaml", "soundfile"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = _Module(name)
            sys.modules[name].__version__ = "not installed (stand-in)"
    try:
        import pedalchain  # noqa: F401
    except Exception:  # the checkout is not installed as 'pedalchain', or its __init__ needs the real pedalboard
        root = Path(__file__).resolve().parents[1]
        for name, path in (("pedalchain", root), ("pedalchain.chains", root / "chains"),
                           ("pedalchain.effects", root / "effects")):
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module
        steps = types.ModuleType("pedalchain.chains.steps")
        steps.LoadContext = steps.SaveContext = steps.StepKind = type("StepKind", (), {})
        steps.yaml_number = lambda value: value
        sys.modules["pedalchain.chains.steps"] = steps


if "--speed-only" in sys.argv:
    _bare_machine_imports()

from pedalchain.effects.restorers.doubled import (  # noqa: E402
    DEFAULT_WEIGHTS,
    N_FFT,
    DoubledSampleRepair,
    band_matrix,
    interpolation_matrix,
)
from pedalchain.effects.restorers.stft import FrameContext, one_shot_blas_limited  # noqa: E402

SR = 44100
PNG = BENCH / "doubled_spectrogram.png"
SPEED_AUDIO = DATA / "doubled_speed.npy"
"""The 60 s speed buffer, saved for ``--speed-only`` runs elsewhere (bench/data is not committed)."""
CORPUS = Path.home() / ".cache" / "pedalchain" / "corpus"


class NoiseFill(DoubledSampleRepair):
    """Baseline: the mirror's 32-band envelope with random phase above fs/4 (same low band and transition)."""

    def __init__(self, parity: int, seed: int = 0) -> None:
        super().__init__("always", parity)
        self._seed = seed

    def _reset_state(self) -> None:
        super()._reset_state()
        self._rng = np.random.default_rng(self._seed)

    def _synthesise_high_band(self, spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        quarter = N_FFT // 4
        middle = spectra[:, :, context.lookbehind : spectra.shape[2] - context.lookahead]
        magnitude = np.abs(middle[:, quarter + 1 :])
        envelope = np.matmul(band_matrix(quarter + 1, 2 * quarter, 32), magnitude)  # (ch, 32, F)
        smooth = np.matmul(envelope.transpose(0, 2, 1), interpolation_matrix(quarter, 32)).transpose(0, 2, 1)
        phase = np.exp(2j * np.pi * self._rng.random(smooth.shape)).astype(np.complex64)
        out = np.zeros_like(middle)
        first = self._first_bin
        out[:, first : quarter + 1] = middle[:, first : quarter + 1] * self._weight[:, first : quarter + 1]
        out[:, quarter + 1 :] = smooth * phase * self._weight[:, quarter + 1 :]
        return out


def doubled(clean: np.ndarray, parity: int = 0) -> np.ndarray:
    damaged = clean.copy()
    damaged[:, parity + 1 :: 2] = clean[:, parity::2][:, : damaged[:, parity + 1 :: 2].shape[1]]
    return damaged


def held_out_recordings() -> list[Path]:
    """The shipped model's test-split files that are sonic-pi recordings, found in the corpus cache."""
    from pedalchain.models.model_file import read_model_info

    info = read_model_info(DEFAULT_WEIGHTS)
    names = set(info.training["test"])
    found = sorted(p for p in CORPUS.glob("*/sonic-pi/*.flac") if p.name in names)
    if not found:
        raise SystemExit(f"none of the model's test files {sorted(names)} found under {CORPUS}: run `chain train "
                         "restorer --damage doubled-samples -o /tmp/x.safetensors` once to build the corpus")
    return found


def methods(parity: int) -> dict:
    return {
        "damaged": lambda audio: audio,
        "naive": lambda audio: DoubledSampleRepair("naive", parity).process(audio, SR),
        "noise-fill": lambda audio: NoiseFill(parity).process(audio, SR),
        "ours": lambda audio: DoubledSampleRepair("always").process(audio, SR),
    }


def quality(files: list[Path]) -> tuple[dict[str, dict[str, float]], list[str], dict]:
    import soundfile as sf
    from pedalchain.chains.compare import compare_arrays

    rows: dict[str, list[dict]] = {}
    per_file = []
    example: dict = {}
    for path in files:
        clean, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == SR, f"{path} is {rate} Hz"
        clean = np.ascontiguousarray(clean.T)
        damaged = doubled(clean)
        line = [path.name, f"{clean.shape[1] / SR:.1f} s", f"{clean.shape[0]} ch"]
        outputs = {}
        for name, method in methods(0).items():
            outputs[name] = method(damaged)
            result = compare_arrays(clean, outputs[name], SR)
            rows.setdefault(name, []).append(result)
            line.append(f"{name} {result['lsd']:.2f}/{result['snr_db']:.1f}")
        per_file.append(" · ".join(line))
        if not example or clean.shape[1] > example["clean"].shape[1]:
            example = {"clean": clean, **outputs, "file": path.name}
    means = {name: {key: float(np.mean([r[key] for r in results])) for key in
                    ("lsd", "lsd_low", "lsd_high", "snr_db", "si_sdr_db")} for name, results in rows.items()}
    return means, per_file, example


def speed_audio(files: list[Path]) -> np.ndarray:
    """60 s of stereo 44.1 kHz: the held-out files concatenated (mono ones doubled), looped, then damaged."""
    import soundfile as sf

    pieces = [np.atleast_2d(sf.read(p, dtype="float32", always_2d=True)[0].T) for p in files]
    stereo = np.concatenate([np.repeat(p, 2, axis=0)[:2] for p in pieces], axis=1)
    reps = int(np.ceil(60 * SR / stereo.shape[1]))
    return doubled(np.tile(stereo, (1, reps))[:, : 60 * SR])


def render_speed(audio: np.ndarray, runs: int) -> dict[str, float]:
    """× real time of the analysis pass and of the render after it (wall best / median, CPU median)."""
    seconds = audio.shape[1] / SR
    walls, cpus, analysis = [], [], []
    for _ in range(runs):
        restorer = DoubledSampleRepair("always")
        start = time.perf_counter()
        restorer.analyze_input(audio, SR)
        analysis.append(time.perf_counter() - start)
        start, cpu = time.perf_counter(), time.process_time()
        one_shot_blas_limited(restorer.process, audio, SR, 65536, False)  # the render after the analysis
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return {"wall_best": seconds / min(walls), "wall_median": seconds / statistics.median(walls),
            "cpu_median": seconds / statistics.median(cpus), "analysis_median": seconds / statistics.median(analysis)}


def apply_speed(audio: np.ndarray, runs: int) -> dict[str, float]:
    """``chain apply repair`` on the buffer written as a 16-bit WAV: × real time and seconds (median)."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.wav", Path(folder) / "out.wav"
        sf.write(source, audio.T, SR, subtype="PCM_16")
        applies = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([*chain_command(), "apply", "repair", str(source), "-o", str(target), "--overwrite",
                            "--quiet"], check=True, capture_output=True)
            applies.append(time.perf_counter() - start)
    median = statistics.median(applies)
    return {"apply_median": audio.shape[1] / SR / median, "apply_wall_s": median}


def speed_only(args: argparse.Namespace) -> None:
    """Measure the render on ``SPEED_AUDIO`` here and write the figures (with this machine's description) as JSON."""
    audio = np.load(SPEED_AUDIO)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = machine()
    result = {**render_speed(audio, args.runs), "cpu": info["cpu"], "cores_usable": cores, "date": info["date"],
              "load": info["load"], "runs": args.runs, "numpy": np.__version__}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument("--speed-only", action="store_true",
                        help=f"only time the render on {SPEED_AUDIO.relative_to(BENCH.parent)} (written by a full run) "
                        "and print JSON; runs without pedalboard/soundfile/PyYAML, e.g. on an idle machine")
    parser.add_argument("--out", type=Path, help="with --speed-only: also write the JSON here")
    parser.add_argument("--idle-speed", type=Path, metavar="JSON",
                        help="add the figures of a --speed-only run on another (idle) machine to the section")
    args = parser.parse_args()
    if args.speed_only:
        speed_only(args)
        return
    from pedalchain.chains.compare import spectrogram_png
    from pedalchain.models.model_file import read_model_info

    info_machine = machine()
    files = held_out_recordings()
    means, per_file, example = quality(files)
    audio = speed_audio(files)
    SPEED_AUDIO.parent.mkdir(parents=True, exist_ok=True)
    np.save(SPEED_AUDIO, audio)
    rates = {**render_speed(audio, args.runs), **apply_speed(audio, args.runs)}
    idle = json.loads(args.idle_speed.read_text()) if args.idle_speed else None
    excerpt = slice(0, min(example["clean"].shape[1], 6 * SR))
    spectrogram_png(PNG, {label: example[label][:, excerpt] for label in ("clean", "damaged", "naive", "ours")},
                    SR, f"doubled samples: {example['file']} (held out)")
    model = read_model_info(DEFAULT_WEIGHTS)
    naive, ours, noise = means["naive"], means["ours"], means["noise-fill"]
    table = ["| method | LSD | LSD low | LSD high | SNR dB | SI-SDR dB |", "|---|---|---|---|---|---|"]
    for name, row in means.items():
        table.append(f"| {name} | {row['lsd']:.3f} | {row['lsd_low']:.3f} | {row['lsd_high']:.3f} | "
                     f"{row['snr_db']:.2f} | {row['si_sdr_db']:.2f} |")
    checks = [
        f"| LSD of ours | {ours['lsd']:.3f} | <= 0.95 | {yes_no(ours['lsd'] <= 0.95)} |",
        f"| SNR of ours vs naive | {ours['snr_db'] - naive['snr_db']:+.2f} dB | >= -3 dB | "
        f"{yes_no(ours['snr_db'] >= naive['snr_db'] - 3)} |",
        f"| LSD of ours vs noise-fill | {ours['lsd']:.3f} vs {noise['lsd']:.3f} | lower | "
        f"{yes_no(ours['lsd'] < noise['lsd'])} |",
        f"| speed: repair of 60 s stereo 44.1 kHz, wall clock, best of {args.runs} (the machine is shared: the "
        f"best run is the one least disturbed) | {rates['wall_best']:.0f}x real time | >= 100x | "
        f"{yes_no(rates['wall_best'] >= 100)} |",
        f"| speed: same, median wall clock / median CPU time of the process | {rates['wall_median']:.0f}x / "
        f"{rates['cpu_median']:.0f}x | (informative) | |",
        *([f"| speed: the same render on an idle machine ({idle['cpu']}, {idle['cores_usable']} cores usable, "
           f"`taskset`; `--speed-only` run of {idle['date']}, load {idle['load']}), wall best / median | "
           f"{idle['wall_best']:.0f}x / {idle['wall_median']:.0f}x | >= 100x | "
           f"{yes_no(idle['wall_median'] >= 100)} |"] if idle else []),
        f"| speed: the analysis pass (hold scan for parity and regions), wall clock, median | "
        f"{rates['analysis_median']:.0f}x | (informative) | |",
        f"| speed, `chain apply repair` end to end incl. start-up, detection pass, WAV I/O (median) | "
        f"{rates['apply_median']:.0f}x ({rates['apply_wall_s']:.2f} s) | (informative) | |",
    ]
    body = "\n".join([
        "## bench_doubled: doubled-samples repair on held-out real recordings",
        "",
        machine_lines(info_machine).rstrip(),
        f"- load average when finished: {load_now()} (other jobs on the 2 cores make the speeds lower bounds)",
        f"- model: `models/weights/restorers/doubled-samples.safetensors` ({model.config.get('variant')}, "
        f"{model.parameter_count} weights), trained on {len(model.training['data'])} files "
        f"(seed {model.training['seed']})",
        f"- material: {len(files)} sonic-pi recordings of the model's test split (never used in training or "
        f"selection), damaged y[2n+1] = y[2n]: {', '.join(p.name for p in files)}",
        "- script: `python bench/bench_doubled.py" + (f" --idle-speed {args.idle_speed}`" if idle else "`")
        + "; definitions in its docstring",
        "",
        *table,
        "",
        "| target | measured | target | met? |",
        "|---|---|---|---|",
        *checks,
        "",
        "Per file (LSD / SNR dB): " + "; ".join(per_file),
        "",
        f"![before/after spectrogram](doubled_spectrogram.png) — `{example['file']}`: clean, damaged (mirror "
        "image above fs/4), naive (empty top band), ours.",
    ])
    print(body)
    if not args.no_results:
        replace_section("bench_doubled", body)


if __name__ == "__main__":
    main()
