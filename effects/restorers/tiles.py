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


def dense_layers(arrays: dict[str, np.ndarray], columns: np.ndarray, tile: int) -> np.ndarray:
    """The dense layers ``w0, b0, w1, b1, ...`` of ``arrays`` (w: inputs x units; ReLU between, linear output)
    on each column of ``columns`` (inputs, n), on tiles (:func:`columns_in_tiles`): (outputs, n)."""
    layers = sum(1 for name in arrays if name.startswith("w"))

    def network(hidden: np.ndarray) -> np.ndarray:
        for index in range(layers):
            hidden = arrays[f"w{index}"].T @ hidden
            hidden += arrays[f"b{index}"][:, None]
            if index < layers - 1:
                np.maximum(hidden, 0.0, out=hidden)
        return hidden

    return columns_in_tiles(network, columns, tile)
