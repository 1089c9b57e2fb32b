"""Joining ragged arrays along segments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

import numpy as np

from . import _backend, _checks, _construct, _offsets
from .ragged import RaggedArray

R = TypeVar("R", bound=RaggedArray)


def cat(arrays: Sequence[R]) -> R:
    """Join ragged arrays along segments: the segments of the first, then of the second, ...

    Values are concatenated in one allocation (dtypes promote as in ``from_list``); all inputs
    must share item shape, backend and device. The result is of the inputs' class when they
    all share one, else a ``RaggedArray``.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.arange(3), [1, 2])
        >>> ra.cat([x, x[1:]]).lengths
        array([1, 2, 2])
    """
    where = "cat"
    if isinstance(arrays, RaggedArray) or _backend.backend_of(arrays) is not None:
        # one ragged array or one plain array, not a list of them
        seen = _backend.describe(arrays)
        raise TypeError(f"{where}: arrays must be a list of ragged arrays; got {seen}")
    arrays = _checks.listed(arrays, where, "a list of ragged arrays")
    if not arrays:
        raise ValueError(f"{where}: needs at least one ragged array; got an empty list")
    for k, x in enumerate(arrays):
        if not isinstance(x, RaggedArray):
            raise TypeError(f"{where}: arrays[{k}] must be a RaggedArray; got {type(x).__name__}")
    first = arrays[0]
    for k, x in enumerate(arrays[1:], start=1):
        if x.item_shape != first.item_shape:
            raise ValueError(
                f"{where}: all arrays must have the same item shape; "
                f"got {first.item_shape} for arrays[0] and {x.item_shape} for arrays[{k}]"
            )
        _checks.check_same_place(first.values, x.values, where, f"arrays[{k}]", "arrays[0]")
    host = _offsets.from_lengths(np.concatenate([x.host_lengths for x in arrays]), where)
    if _backend.is_tensor(first.values):
        values = _construct.cat_tensors([x.values for x in arrays], int(host[-1]), where)
    else:
        values = np.ascontiguousarray(np.concatenate([x.values for x in arrays], axis=0))
    cls = type(first) if all(type(x) is type(first) for x in arrays) else RaggedArray
    # R is the inputs' common class: mixed classes make R their join, RaggedArray here
    return cast(R, cls._make(values, None, host))
