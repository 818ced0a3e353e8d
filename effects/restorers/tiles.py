"""Matrix products whose result does not depend on how a stream was split into blocks.

A BLAS product rounds one column of its result differently depending on how many columns the call holds
(OpenBLAS picks other kernels for small products and for the columns left over after its blocks: up to 2 ulp of
float32 apart here).  A streaming restorer's batches hold as many frames as its input blocks brought, so its
output differed in the last bit between block splits, and between the file runner and one-shot processing.
:func:`columns_in_tiles` runs every product on the same shape instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BIN_TILE = 1024
"""Columns per product where a column is an STFT bin of a frame (a 2048-sample frame has 1025 bins)."""
FRAME_TILE = 64
"""Columns per product where a column is a whole frame (a stream's batches hold a few frames to a few hundred)."""


def columns_in_tiles(function: Callable[[np.ndarray], np.ndarray], columns: np.ndarray, tile: int) -> np.ndarray:
    """``function`` applied to ``columns`` (k, n) as a stack of tiles of exactly ``tile`` columns (a multiple of
    every kernel's block width), the last one zero-padded: ``function`` takes (tiles, k, tile) float32 and returns
    (tiles, m, tile), each column computed from its own column alone (``w @ tiles`` runs one BLAS product of the
    same shape per tile); the result is (m, n)."""
    k, n = columns.shape
    full, rest = divmod(n, tile)
    stacked = np.zeros((full + (rest > 0), k, tile), np.float32)
    if full:
        stacked[:full] = columns[:, : full * tile].reshape(k, full, tile).transpose(1, 0, 2)
    if rest:
        stacked[full, :, :rest] = columns[:, full * tile :]
    result = function(stacked)
    return result.transpose(1, 0, 2).reshape(result.shape[1], result.shape[0] * tile)[:, :n]
