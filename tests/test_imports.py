"""The chain engine stays free of torch: it loads only when a neural step is built."""

import subprocess
import sys

MODULES = [
    "pedalchain", "pedalchain.effects", "pedalchain.chains.runner", "pedalchain.chains.yaml_io", "pedalchain.cli",
]


def test_importing_the_engine_does_not_import_torch():
    code = f"import sys; import {', '.join(MODULES)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_applying_a_stock_chain_does_not_import_torch(tmp_path):
    code = (
        "import sys, numpy as np; from pedalchain import load_chain; "
        "chain = load_chain('remaster'); chain(np.zeros((2, 4410), np.float32), 44100); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
