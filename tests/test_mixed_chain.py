"""The neural issue's finish line: one chain mixing a stock plugin, a VST3, a .safetensors model and a
.nam capture, applied to a file by `chain apply`, with output that does not depend on the block size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from helpers import require_vst3

NAM_CAPTURE = Path(__file__).parent / "data" / "nam" / "wavenet_nano_0_5.nam"


def test_stock_vst3_safetensors_and_nam_in_one_chain(tmp_path: Path) -> None:
    comp = require_vst3("ZamCompX2")
    chain_file = tmp_path / "mixed.yaml"
    chain_file.write_text(
        "steps:\n"
        "  - plugin: HighpassFilter\n    cutoff_frequency_hz: 40\n"
        f"  - vst3: {comp}\n    threshold_db: -24\n    ratio: 4\n"
        "  - model: lowpass-5k\n    wet: 0.7\n"
        f"  - model: {NAM_CAPTURE}\n"
        "  - plugin: Reverb\n    room_size: 0.3\n",
        encoding="utf-8",
    )
    rng = np.random.default_rng(7)
    source = tmp_path / "in.wav"
    sf.write(source, (0.2 * rng.standard_normal((2 * 44100, 2))).astype(np.float32), 44100, subtype="FLOAT")
    outputs = []
    for block in ("300", "8192"):
        target = tmp_path / f"out-{block}.wav"
        result = subprocess.run(
            [sys.executable, "-m", "pedalchain.cli", "apply", str(chain_file), str(source), "-o", str(target),
             "--block", block, "--quiet"],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        data, rate = sf.read(target, dtype="float32")
        assert rate == 44100 and data.shape == (2 * 44100, 2)  # the 48 kHz .nam capture is resampled
        outputs.append(data)
    assert np.abs(outputs[0]).max() > 1e-3
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
