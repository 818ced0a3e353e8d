"""Atomic file writes: a hidden temporary file beside the target, renamed into place when complete."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


@functools.cache
def _umask() -> int:
    """The process umask (read once: setting it to read it is not thread-safe)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty hidden file in ``path``'s folder (raises OSError when the folder is not writable)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    return Path(temporary)


def publish(temporary: Path, path: Path) -> None:
    """Give ``temporary`` the permissions of a normally created file and rename it to ``path``."""
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600
    os.replace(temporary, path)


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    temporary = temporary_beside(path)
    try:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
