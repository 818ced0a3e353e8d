"""``chain train restorer`` end to end on CPU: a tiny doubled-samples training run through the real CLI on a few
synthesized clips, the model file it writes (metadata, weights) loaded back into the restorer, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pedalchain.cli import main
from pedalchain.effects.restorers.doubled import DoubledSampleRepair
from pedalchain.models.model_file import load_arrays, read_model_info

SR = 44100


def write_clips(folder: Path, count: int = 6, seconds: float = 2.0) -> list[Path]:
    """Seeded stereo clips with content up to Nyquist: harmonic tones with decays over a little noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        t = np.arange(int(seconds * SR)) / SR
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, int(20000 / f0)))
        x = 0.3 * tone / np.abs(tone).max() * np.exp(-t * rng.uniform(0.5, 2)) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"clip{index}.flac"
        sf.write(path, np.stack([x, 0.8 * np.roll(x, 23)]).T.astype(np.float32), SR, subtype="PCM_24")
        paths.append(path)
    return paths


def test_tiny_doubled_samples_training_run_through_the_cli(tmp_path: Path, capsys) -> None:
    clips = write_clips(tmp_path / "clean")
    model = tmp_path / "out" / "doubling.safetensors"
    model.parent.mkdir()
    code = main(["train", "restorer", "--damage", "doubled-samples", "--data", str(tmp_path / "clean"),
                 "-o", str(model), "--minutes", "0.05", "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "passthrough" in printed and "naive" in printed and "trained" in printed

    info = read_model_info(model)
    assert info.kind == "restorer" and info.architecture == "doubled-samples-spectral"
    assert info.latency == DoubledSampleRepair("always", model=model).latency_at(SR) > 0
    training = info.training
    names = {p.name for p in clips}
    assert set(training["data"]) | set(training["validation"]) | set(training["test"]) == names
    assert not set(training["data"]) & set(training["test"])
    assert training["seed"] == 3 and training["duration_s"] > 0
    assert training["winner"] in training["architectures"]
    test = info.metrics["test"]
    assert set(test) == {"passthrough", "naive", "trained"}
    assert all(np.isfinite(row["lsd"]) and np.isfinite(row["snr_db"]) for row in test.values())

    report = json.loads(model.with_name("doubling.report.json").read_text())
    assert report["test"] == test and report["test_files"][0]["file"] in training["test"]

    # the file runs in the restorer and gives the top band energy the naive repair does not have
    clean, _ = sf.read(clips[0], dtype="float32", always_2d=True)
    damaged = clean.T.copy()
    damaged[:, 1::2] = damaged[:, 0::2][:, : damaged[:, 1::2].shape[1]]
    repaired = DoubledSampleRepair("always", 0, model=model).process(damaged, SR)
    naive = DoubledSampleRepair("naive", 0, model=model).process(damaged, SR)
    top = np.fft.rfftfreq(damaged.shape[1], 1 / SR) > 0.3 * SR
    assert np.sum(np.abs(np.fft.rfft(repaired)[:, top]) ** 2) > 10 * np.sum(np.abs(np.fft.rfft(naive)[:, top]) ** 2)


def test_training_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    write_clips(tmp_path / "clean", count=4, seconds=1.0)
    outputs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.safetensors"
        assert main(["train", "restorer", "--damage", "doubled-samples", "--data", str(tmp_path / "clean"),
                     "-o", str(path), "--minutes", "0.02"]) == 0
        outputs.append(read_model_info(path))
    assert outputs[0].training["data"] == outputs[1].training["data"]
    assert outputs[0].training["winner"] == outputs[1].training["winner"]
    first, second = (load_arrays(tmp_path / f"{name}.safetensors", "doubled-samples-spectral")[0] for name in "ab")
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[key], second[key]) for key in first), "same seed, different weights"


@pytest.mark.parametrize(("args", "message"), [
    (["--damage", "scratches"], "unknown damage kind 'scratches'"),
    (["--damage", "doubled-samples", "--minutes", "0"], "--minutes"),
    (["--damage", "doubled-samples", "-o", "model.pt"], ".safetensors"),
    # tracebacks, or a model written over, or training done before the output turned out unusable
    (["--damage", "doubled-samples", "--minutes", "nan"], "--minutes"),
    (["--damage", "doubled-samples", "--sample-rate", "0"], "--sample-rate: must be 8000 to 192000 Hz"),
    (["--damage", "doubled-samples", "--seed", "-1"], "--seed: must be 0 or more"),
    (["--damage", "doubled-samples", "-o", "exists.safetensors"], "exists; pass --overwrite"),
    (["--damage", "doubled-samples", "-o", "folder.safetensors"], "is a folder"),
    (["--damage", "doubled-samples", "-o", "nowhere/m.safetensors"], "its folder does not exist"),
])
def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys, args: list[str], message: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_clips(tmp_path / "clean", count=3, seconds=0.5)
    (tmp_path / "exists.safetensors").write_bytes(b"a model")
    (tmp_path / "folder.safetensors").mkdir()
    monkeypatch.chdir(tmp_path)
    argv = ["train", "restorer", "--data", str(tmp_path / "clean"), *args]
    if "-o" not in args:
        argv += ["-o", str(tmp_path / "m.safetensors")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_training_budget_is_counted_in_steps_not_on_the_clock():
    """The same data, seed and budget give the same weights on a busy machine as on an idle one: the budget becomes
    a number of optimisation steps (here 12 batches of 4096 rows: 3 epochs of 4), the clock is not watched."""
    from pedalchain.effects.restorers import denoise as dn
    from pedalchain.models.restore.fit_denoise import STEPS_PER_SECOND, train_gain

    rng = np.random.default_rng(0)

    def rows(count: int) -> dict[str, np.ndarray]:
        x = rng.standard_normal((count, dn.FEATURES)).astype(np.float32)
        clean = rng.random(count)
        return {"x": x, "terms": np.column_stack([np.ones(count), clean, clean ** 2])}

    train, val = rows(4 * 4096), rows(2048)
    budget = 12 / STEPS_PER_SECOND
    first, report = train_gain(train, val, seed=3, budget_s=budget)
    second, again = train_gain(train, val, seed=3, budget_s=budget)
    assert report["epochs"] == again["epochs"] == 3
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_denoise_validation_reports_the_gain_per_noise_kind(tmp_path: Path):
    """Hum subtraction gains far more than a gain on hiss: the report splits the mean by the noise kind drawn."""
    from pedalchain.models.restore.damage import NOISE_KINDS
    from pedalchain.models.restore.fit_denoise import evaluate

    result = evaluate(write_clips(tmp_path, count=6), SR, None, 10.0, seed=0)
    by_noise = result["si_sdr_gain_db_by_noise"]
    assert result["clips"] == 6 and len(by_noise) >= 2 and set(by_noise) <= set(NOISE_KINDS)
    assert sum(row["clips"] for row in by_noise.values()) == 6
    weighted = sum(row["clips"] * row["si_sdr_gain_db"] for row in by_noise.values()) / 6
    assert weighted == pytest.approx(result["si_sdr_gain_db"], abs=1e-9)
    assert all(np.isfinite(row["si_sdr_gain_db"]) for row in by_noise.values())
