"""Assertions for tests of code that produces ragged arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _compare
from .ragged import RaggedArray


def assert_ragged_equal(a: Any, b: Any, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Assert that two ragged arrays have the same segments, item shape and values.

    Values are compared on the host, across backends and devices, within
    ``atol + rtol * |b|`` (exactly by default; NaNs in the same places compare equal).
    Classes and dtypes are not compared: a ``RaggedImageBatch`` equals a ``RaggedArray``
    over the same data.

    Raises:
        AssertionError: with the first difference found: segment count, item shape, offsets,
            or the segment and item of the largest value difference.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.array([1.0, 2.0, 3.0]), [1, 2])
        >>> ra.testing.assert_ragged_equal(x, x.torch())
        >>> ra.testing.assert_ragged_equal(x, ra.RaggedArray.from_lengths(x.values + 1e-9, [1, 2]),
        ...                                atol=1e-6)
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, RaggedArray):
            raise TypeError(
                f"assert_ragged_equal: {name} must be a RaggedArray; got {type(x).__name__}"
            )
    why = _compare.structure_mismatch(a, b)
    if why is not None:
        raise AssertionError(f"ragged arrays differ: {why}")
    va, vb = _compare.host_values(a), _compare.host_values(b)
    close = np.isclose(va, vb, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return
    item = int(np.flatnonzero(~close.reshape(close.shape[0], -1).all(axis=1))[0])
    segment = int(np.searchsorted(a.host_offsets, item, side="right") - 1)
    start = int(a.host_offsets[segment])
    raise AssertionError(
        f"ragged arrays differ: {int((~close).sum())} of {close.size} values are not close "
        f"(rtol={rtol}, atol={atol}); first in segment {segment}, item {item - start}: "
        f"{va[item].tolist()!r} != {vb[item].tolist()!r}"
    )


def allclose(
    a: RaggedArray,
    b: RaggedArray,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    equal_nan: bool = False,
) -> bool:
    """Whether two ragged arrays share segments and item shape, with values within tolerance.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.array([1.0, 2.0, 3.0]), [1, 2])
        >>> ra.allclose(x, x.to(dtype=np.float32))
        True
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, RaggedArray):
            raise TypeError(f"allclose: {name} must be a RaggedArray; got {type(x).__name__}")
    return _compare.ragged_allclose(a, b, rtol, atol, equal_nan)
