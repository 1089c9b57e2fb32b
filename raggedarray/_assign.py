"""Writing into one segment: ``x[i] = value`` and ``x[i] += value``.

A ragged array keeps its structure, so only a whole segment ``x[i]`` can be assigned, with a
value of the segment's backend and device whose shape broadcasts to the segment's without
changing it (its length cannot change) and whose dtype casts to the values' dtype by the
``same_kind`` rule. Everything is checked before anything is written, so a refused
assignment leaves the array as it was. ``x[i] += v`` works because Python runs it as
``t = x[i]; t += v; x[i] = t``: the view already holds the result, and writing it onto
itself is skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks


def segment_key(key: Any, where: str) -> int:
    """The segment index of an assignment: an int (not a bool), else a TypeError."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return int(key)
    raise TypeError(
        f"{where}: only a segment x[i] (an int i) can be assigned; got {type(key).__name__} "
        "(ragged arrays keep their structure: write into x.values, or into a view with "
        "x[i][...] = v)"
    )


def assign(segment: Any, value: Any, where: str) -> None:
    """Copy ``value`` into the ``segment`` view, after every check."""
    if _is_the_view(segment, value):
        return
    if _backend.is_tensor(segment):
        _assign_tensor(segment, value, where)
    else:
        _assign_array(segment, value, where)


def _is_the_view(segment: Any, value: Any) -> bool:
    """Whether ``value`` is the same memory seen the same way (``x[i] += v``)."""
    if type(value) is not type(segment) or value.shape != segment.shape:
        return False
    if value.dtype != segment.dtype:
        return False
    if _backend.is_tensor(segment):
        return value.data_ptr() == segment.data_ptr() and value.stride() == segment.stride()
    same = value.__array_interface__["data"][0] == segment.__array_interface__["data"][0]
    return same and value.strides == segment.strides


def _assign_array(segment: np.ndarray, value: Any, where: str) -> None:
    if _backend.is_tensor(value):
        raise TypeError(
            f"{where}: the value must be a numpy array or a scalar like the values; got "
            f"{_backend.describe(value)}"
        )
    if not segment.flags.writeable:
        raise ValueError(
            f"{where}: the values must be writable; got a read-only numpy buffer (a file "
            "loaded with mmap=True, say: copy it first with x.clone())"
        )
    if not isinstance(value, (np.ndarray, int, float, bool, np.generic)):
        value = _checks.as_numpy(value, where, "the value")
    _check_shape(segment.shape, np.shape(value), where)
    try:  # numpy checks the cast before it writes; Python scalars cast as numpy rules
        np.copyto(segment, value, casting="same_kind")
    except TypeError:
        raise TypeError(
            f"{where}: the value must cast to the values' {segment.dtype} by the same_kind "
            f"rule; got {_backend.describe(value)}"
        ) from None


def _assign_tensor(segment: Any, value: Any, where: str) -> None:
    torch = _backend.torch_module()
    if isinstance(value, (int, float, bool)):
        value = torch.tensor(value, device=segment.device)
    if not _backend.is_tensor(value):
        raise TypeError(
            f"{where}: the value must be a tensor or a Python scalar like the values; got "
            f"{_backend.describe(value)}"
        )
    if value.device != segment.device and not (value.ndim == 0 and value.device.type == "cpu"):
        raise ValueError(
            f"{where}: the value must be on the values' device ({segment.device}); got "
            f"{_backend.describe(value)}"
        )
    _check_shape(tuple(segment.shape), tuple(value.shape), where)
    if not torch.can_cast(value.dtype, segment.dtype):
        have, got = _checks.dtype_name(segment.dtype), _checks.dtype_name(value.dtype)
        raise TypeError(
            f"{where}: the value must cast to the values' {have} by the same_kind rule; "
            f"got dtype {got}"
        )
    segment.copy_(value)


def _check_shape(segment: tuple[int, ...], value: tuple[int, ...], where: str) -> None:
    """``value`` must broadcast to ``segment`` without changing it (no new length)."""
    fits = len(value) <= len(segment) and all(
        v in (1, s) for v, s in zip(value[::-1], segment[::-1], strict=False)
    )
    if not fits:
        raise ValueError(
            f"{where}: the value must broadcast to the segment's shape {segment} (a segment's "
            f"length cannot change); got shape {value}"
        )
