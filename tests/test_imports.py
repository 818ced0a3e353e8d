"""The chain engine stays free of torch: it loads only when a neural step is built.  The tests import what is
installed, whatever lies beside the clone."""

import subprocess
import sys
from pathlib import Path

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


def test_the_folder_holding_the_clone_is_not_on_the_import_path():
    """The repository root is a package; pytest's default import mode put its parent folder first on sys.path, where
    a stray module (an attr.py beside the clone) shadowed an installed one and Ray's tests skipped as uninstalled."""
    assert str(Path(__file__).resolve().parents[2]) not in sys.path


def test_the_restorers_import_from_the_package_on_first_use():
    """`from pedalchain import Denoise` gives the class the YAML's `restorer: denoise` builds; a plain
    `import pedalchain` does not load the restorers' modules."""
    code = ("import sys, pedalchain; print(any('restorers' in name for name in sys.modules)); "
            "from pedalchain import Denoise, Declip, DoubledSampleRepair; "
            "from pedalchain.effects.restorers import restorer_class; "
            "print(Denoise is restorer_class('denoise'), Declip.name, DoubledSampleRepair.name)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "declip", "doubled-samples"]
