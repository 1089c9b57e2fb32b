"""Comparing ragged arrays: structure first (offsets, item shape), then values."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend


def host_values(x: Any) -> np.ndarray:
    """The values of a ragged array as a host numpy array (a copy from a GPU)."""
    values = x.values
    if _backend.is_tensor(values):
        values = values.detach().cpu()
        if values.dtype == _backend.torch_module().bfloat16:
            values = values.float()
        values = values.numpy()
    return values


def structure_mismatch(a: Any, b: Any) -> str | None:
    """Why ``a`` and ``b`` differ in segments or item shape, or None when they agree."""
    if len(a) != len(b):
        return f"num_segments differ: {len(a)} != {len(b)}"
    if a.item_shape != b.item_shape:
        return f"item shapes differ: {a.item_shape} != {b.item_shape}"
    if not np.array_equal(a.host_offsets, b.host_offsets):
        i = int(np.flatnonzero(a.host_offsets != b.host_offsets)[0])
        return f"offsets differ first at offsets[{i}]: {a.host_offsets[i]} != {b.host_offsets[i]}"
    return None


def ragged_equal(a: Any, b: Any) -> bool:
    """Same segments, item shape and values (exactly; NaN never equals NaN)."""
    if structure_mismatch(a, b) is not None:
        return False
    return bool(np.array_equal(host_values(a), host_values(b)))


def ragged_allclose(a: Any, b: Any, rtol: float, atol: float, equal_nan: bool) -> bool:
    """Same segments and item shape, values within ``atol + rtol * |b|``."""
    if structure_mismatch(a, b) is not None:
        return False
    return bool(
        np.allclose(host_values(a), host_values(b), rtol=rtol, atol=atol, equal_nan=equal_nan)
    )
