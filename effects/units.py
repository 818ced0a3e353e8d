"""Numbers with unit suffixes, as written in chain YAML files.

A parameter has one *canonical* unit (the unit pedalboard expects: ``Hz``, ``dB``, ``ms``, ``s``,
``semitones``, or none).  A YAML value may be a plain number (taken to be in the canonical unit) or a
string with a suffix that converts to it: ``"1.5 kHz"`` -> 1500.0 Hz, ``"0.5 s"`` -> 500.0 ms,
``"250ms"`` -> 0.25 s, ``"-18 dB"`` -> -18.0 dB.  A suffix of another dimension (``"-18 dB"`` for a Hz
parameter) is an error, and so is a bool: YAML's ``true`` is not the number 1.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from ..errors import ParameterError

__all__ = ["UNITS", "accepted_suffixes", "format_quantity", "parse_quantity", "unit_label"]

#: Canonical unit -> {accepted suffix (lower case): factor converting one suffix unit to the canonical unit}.
UNITS: dict[str | None, dict[str, float]] = {
    "Hz": {"hz": 1.0, "khz": 1000.0},
    "dB": {"db": 1.0, "dbfs": 1.0},
    "ms": {"ms": 1.0, "s": 1000.0, "sec": 1000.0},
    "s": {"s": 1.0, "sec": 1.0, "ms": 0.001},
    "semitones": {"st": 1.0, "semitone": 1.0, "semitones": 1.0, "cents": 0.01},
    None: {},
}

# How each suffix is spelled in messages.
_SPELLING = {
    "hz": "Hz",
    "khz": "kHz",
    "db": "dB",
    "dbfs": "dBFS",
    "ms": "ms",
    "s": "s",
    "sec": "sec",
    "st": "st",
    "semitone": "semitone",
    "semitones": "semitones",
    "cents": "cents",
}

_QUANTITY = re.compile(
    r"""^\s*
    (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    \s*
    (?P<suffix>[A-Za-z]*)
    \s*$""",
    re.VERBOSE,
)


def unit_label(unit: str | None) -> str:
    """The unit as shown after a number in messages (``""`` for unitless parameters)."""
    return unit or ""


def format_quantity(value: float, unit: str | None, *, exact: bool = False) -> str:
    """``value`` with its unit for messages: ``"22050 Hz"``; ``exact`` uses ``repr`` (``"30000.0 Hz"``)."""
    number = repr(float(value)) if exact else f"{value:g}"
    return f"{number} {unit}" if unit else number


def accepted_suffixes(unit: str | None) -> str:
    """Human-readable list of what a parameter in ``unit`` accepts, e.g. Hz: plain number, Hz or kHz."""
    if unit is None:
        return "a plain number (no unit)"
    spelled = ", ".join(_SPELLING[s] for s in UNITS[unit])
    return f"a plain number (in {unit}) or one of the units {spelled}"


def _problem(name: str, value: Any, unit: str | None, why: str, where: str | None,
             word: str | None = None) -> ParameterError:
    expected = accepted_suffixes(unit) if word is None else f"'{word}', {accepted_suffixes(unit)}"
    return ParameterError(
        f"Value received for parameter '{name}' ({value!r}) {why}; expected {expected}",
        where=where if where is not None else name,
    )


def parse_quantity(value: Any, unit: str | None, name: str, *, where: str | None = None,
                   word: str | None = None) -> float:
    """Convert ``value`` to a float in ``unit`` (the parameter's canonical unit; ``None`` = unitless).

    ``value`` is an int/float (already in ``unit``) or a string such as ``"440"``, ``"1.5 kHz"``,
    ``"-18 dB"``, ``"250ms"``, ``"0.5 s"``, ``"-3 st"``.  Suffixes are case-insensitive and must belong to
    the parameter's dimension (Hz/kHz for Hz; dB/dBFS for dB; ms/s/sec for ms and s;
    st/semitone(s)/cents for semitones; none for unitless parameters).

    Raises :class:`ParameterError` (``where`` defaults to ``name``) for bools, non-numbers, unknown or
    mismatched units, and NaN/infinite values.  ``word`` is a keyword the caller also accepts in place of a number
    (``"auto"``, handled before this is called): the message lists it with the units.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown canonical unit {unit!r}; expected one of {sorted(map(str, UNITS))}")
    if isinstance(value, bool):
        raise _problem(name, value, unit, "is a boolean, not a number", where, word)
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise _problem(name, value, unit, "is not a number", where, word)
        number = float(match["number"])
        suffix = match["suffix"].lower()
        if suffix:
            factor = UNITS[unit].get(suffix)
            if factor is None:
                target = f"{unit}" if unit else "a unitless value"
                raise _problem(name, value, unit,
                               f"has unit '{match['suffix']}', which cannot be converted to {target}", where, word)
            number *= factor
    else:
        raise _problem(name, value, unit, f"is a {type(value).__name__}, not a number", where, word)
    if not math.isfinite(number):
        raise _problem(name, value, unit, "is not a finite number", where, word)
    return number
