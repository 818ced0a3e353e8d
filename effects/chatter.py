"""Lines that native libraries print straight to the process's stderr (fd 2), where Python cannot catch them.

Only lines we know to be harmless are dropped, and only around the calls that print them (:func:`chatter_dropped`);
anything else written meanwhile (another thread's message) is passed on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

MPEG_DECODER_CHATTER = re.compile(rb"^\[src/libmpg123/[^\]\n]*\] (?:error|warning): [^\n]*(?:\n|$)", re.MULTILINE)
"""A line libmpg123 prints about a frame it recovered from.  libsndfile's MP3 decoder prints them ("part2_3_length
(1600) too large for available bit count") when a file is read in blocks -- dozens for a low-bitrate mono MP3 that
pedalboard itself encoded, none when it is read whole, and the samples agree with a whole read to 2e-7."""
PLUGIN_TEARDOWN_CHATTER = re.compile(rb"^DPF warning: asked to delete component while [^\n]*(?:\n|$)", re.MULTILINE)
"""A pair of lines a DPF-built VST3 (zam-plugins) prints whenever its host deletes an instance that is still
active: pedalboard never deactivates one first, when loading, when it reloads one to reset it, or at the end."""
_stderr_lock = threading.RLock()
"""Re-entrant: a nested use (a plugin loaded while another is being freed) redirects again and restores in turn."""


@contextlib.contextmanager
def chatter_dropped(pattern: re.Pattern[bytes], scratch: BinaryIO | None = None) -> Iterator[None]:
    """Inside, fd 2 points at ``scratch`` (a temporary file, emptied here; a fresh one when None); on exit the
    lines ``pattern`` matches are dropped and anything else written meanwhile is passed on to stderr.  Without an
    fd 2 (a daemon), nothing is redirected."""
    with _stderr_lock, contextlib.ExitStack() as stack:
        if sys.stderr is not None:
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        scratch = scratch if scratch is not None else stack.enter_context(tempfile.TemporaryFile())
        scratch.seek(0)
        scratch.truncate()
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            scratch.seek(0)
            passed_on = pattern.sub(b"", scratch.read())
            while passed_on:
                passed_on = passed_on[os.write(2, passed_on):]
