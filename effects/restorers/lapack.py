"""LAPACK's banded Cholesky solve (``dpbsv``), called without holding the GIL.

scipy.linalg's wrappers (``solveh_banded``, ``lapack.dpbsv``) hold the GIL through the factorisation, so two
threads solving declip's systems ran slower than one.  scipy also exports its LAPACK to C as
``scipy.linalg.cython_lapack`` (function pointers in capsules); calling that pointer through ctypes releases the
GIL for the duration of the call.

The pointer is looked up when this module is imported: that loads scipy's BLAS library, which a thread limit
(``threadpoolctl``) only reaches when it is loaded before the limit is entered.  Loaded later, under a limit
already in place, the first solves ran on OpenBLAS's own threads as well, twice as slow.
"""

from __future__ import annotations

import ctypes

import numpy as np

_INT_P = ctypes.POINTER(ctypes.c_int)
_DOUBLE_P = ctypes.POINTER(ctypes.c_double)
_DPBSV_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, _INT_P, _INT_P, _INT_P, _DOUBLE_P, _INT_P, _DOUBLE_P, _INT_P,
                               _INT_P)


def _load_dpbsv() -> ctypes._CFuncPtr:
    import scipy.linalg.cython_lapack

    capsule = scipy.linalg.cython_lapack.__pyx_capi__["dpbsv"]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return _DPBSV_TYPE(get_pointer(capsule, get_name(capsule)))


def solve_banded_spd(bands: np.ndarray, rhs: np.ndarray) -> bool:
    """Solve A x = rhs for a symmetric positive definite banded A, in place: ``rhs`` (n,) becomes x and ``bands``
    is overwritten by the Cholesky factor.  False (and both arrays undefined) when A is not positive definite.

    Args:
        bands: (n, kd + 1) float64, C-contiguous: row j holds A's column j from kd rows above the diagonal down
            to it, ``bands[j, kd - q] = A[j - q, j]`` for q = 0..kd (LAPACK's upper band storage, transposed);
            entries with j - q < 0 are ignored.
        rhs: (n,) float64, contiguous.
    """
    n, width = bands.shape
    if bands.dtype != np.float64 or rhs.dtype != np.float64 or not bands.flags.c_contiguous \
            or not rhs.flags.c_contiguous or rhs.shape != (n,):
        raise ValueError("solve_banded_spd needs C-contiguous float64 bands (n, kd + 1) and rhs (n,)")
    size, kd, columns, leading, info = (ctypes.c_int(n), ctypes.c_int(width - 1), ctypes.c_int(1),
                                        ctypes.c_int(width), ctypes.c_int(0))
    _dpbsv(b"U", ctypes.byref(size), ctypes.byref(kd), ctypes.byref(columns), bands.ctypes.data_as(_DOUBLE_P),
           ctypes.byref(leading), rhs.ctypes.data_as(_DOUBLE_P), ctypes.byref(size), ctypes.byref(info))
    return info.value == 0


_dpbsv = _load_dpbsv()


__all__ = ["solve_banded_spd"]
