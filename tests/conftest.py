"""Fixtures shared by the engine and VST3 tests (real files in temporary folders)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_impulse_response


@pytest.fixture(scope="session")
def impulse_response(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 512-sample decaying-noise impulse response, mono FLOAT WAV at 44.1 kHz."""
    return write_impulse_response(tmp_path_factory.mktemp("ir") / "room.wav")
