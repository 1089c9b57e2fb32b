"""Pure functions on host offsets: validation, lengths <-> offsets <-> segment ids, gathers.

Everything here works on host ``numpy.int64`` arrays and never touches a device: the ragged
classes keep a host copy of their offsets precisely so that this arithmetic needs no sync.
``where`` arguments name the public function for error messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _backend, _checks


def _as_host_integer_vector(x: Any, where: str, what: str) -> np.ndarray:
    """Read an integer vector (list, numpy array or tensor) into host int64, range-checked."""
    return _checks.int_vector(x, where, what)


def read_offsets(offsets: Any, where: str) -> np.ndarray:
    """Host int64 copy of user offsets, with kind and shape checked (values not checked).

    A copy, never a view of the caller's numpy array or CPU tensor: a ragged array keeps its
    offsets, and a functional reduction's backward reads them again, after the caller may
    have reused its buffer (wrong gradients, or a crash on indices out of range).
    """
    host = _as_host_integer_vector(offsets, where, "offsets")
    if host.shape[0] == 0:
        raise ValueError(f"{where}: offsets must have at least one entry (offsets[0] == 0); got []")
    # Only a Python sequence surely gave a new array: memoryviews, array.array and objects
    # with __array__ (a pandas Series) may lend theirs, as numpy arrays and tensors do.
    return host if type(offsets) in _FRESH else host.copy()


_FRESH = (list, tuple, range)


def validate(
    offsets: np.ndarray, num_items: int, where: str, items: str = "values.shape[0]"
) -> None:
    """Check the offsets invariants against a buffer of ``num_items`` items.

    ``items``: what the message calls ``num_items``.

    Raises:
        ValueError: unless ``offsets[0] == 0``, offsets are non-decreasing and
            ``offsets[-1] == num_items``.
    """
    if offsets[0] != 0:
        raise ValueError(f"{where}: offsets[0] must be 0; got offsets[0]={offsets[0]}")
    steps = np.diff(offsets)
    bad = np.flatnonzero(steps < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: offsets must be non-decreasing; "
            f"got offsets[{i}]={offsets[i]} > offsets[{i + 1}]={offsets[i + 1]}"
        )
    if offsets[-1] != num_items:
        raise ValueError(
            f"{where}: offsets[-1] must equal the number of items {items}={num_items}; "
            f"got offsets[-1]={offsets[-1]}"
        )


def read_lengths(lengths: Any, where: str) -> np.ndarray:
    """Host int64 lengths (a list, array or tensor), checked to be non-negative integers."""
    host = _as_host_integer_vector(lengths, where, "lengths")
    bad = np.flatnonzero(host < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: lengths must be non-negative; got lengths[{i}]={host[i]}")
    return host


def from_lengths(lengths: Any, where: str) -> np.ndarray:
    """Offsets ``[0, l0, l0 + l1, ...]`` from non-negative lengths."""
    return _checks.offsets_from_lengths(read_lengths(lengths, where), where)


def from_segment_ids(
    segment_ids: Any, num_segments: int | None, where: str, *, num_items: int | None = None
) -> np.ndarray:
    """Offsets from sorted, non-negative segment ids (trailing empty segments when asked).

    ``num_items``, when given, is the number of ids there must be: checked before anything
    the size of the largest id is allocated.
    """
    ids = _as_host_integer_vector(segment_ids, where, "segment_ids")
    if num_items is not None and ids.size != num_items:
        raise ValueError(
            f"{where}: segment_ids must have one entry per item ({num_items}); got {ids.size}"
        )
    if ids.size:
        if ids[0] < 0:
            raise ValueError(f"{where}: segment_ids must be non-negative; got {ids[0]}")
        bad = np.flatnonzero(np.diff(ids) < 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{where}: segment_ids must be sorted; "
                f"got segment_ids[{i}]={ids[i]} > segment_ids[{i + 1}]={ids[i + 1]}"
            )
    needed = int(ids[-1]) + 1 if ids.size else 0
    if num_segments is None:
        num_segments = needed
    else:
        num_segments = _checks.read_int(num_segments, "num_segments", where)
        if num_segments < needed:
            raise ValueError(
                f"{where}: segment ids must be < num_segments={num_segments}; got id {needed - 1}"
            )
    try:
        offsets = np.zeros(num_segments + 1, dtype=np.int64)
    except (ValueError, MemoryError):
        raise ValueError(
            f"{where}: the number of segments must be small enough to allocate offsets for; "
            f"got {num_segments} segments"
        ) from None
    np.cumsum(np.bincount(ids, minlength=num_segments), out=offsets[1:])
    return offsets


def lengths(offsets: np.ndarray) -> np.ndarray:
    """Segment lengths ``offsets[1:] - offsets[:-1]``."""
    return np.diff(offsets)


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """Segment id of every item: ``[0] * n_0 + [1] * n_1 + ...``."""
    return np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))


def positions(offsets: np.ndarray) -> np.ndarray:
    """Position of every item within its segment: ``[0, 1, .., n_0 - 1, 0, 1, ..]``."""
    return np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], np.diff(offsets))


def gather(
    offsets: np.ndarray, segments: np.ndarray, where: str = "gather"
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and item index of the segments ``segments`` taken in that order.

    Returns:
        ``(new_offsets, item_index)`` such that ``values[item_index]`` laid out with
        ``new_offsets`` holds segment ``segments[k]`` of the input as its segment ``k``.
    """
    starts = offsets[segments]
    return spans(starts, offsets[segments + 1] - starts, where)


def gathered_offsets(offsets: np.ndarray, segments: np.ndarray, where: str) -> np.ndarray:
    """The offsets of ``gather`` alone (items of no size need no index of N entries)."""
    return _checks.offsets_from_lengths(
        offsets[segments + 1] - offsets[segments], where, "the selected lengths"
    )


def spans(
    starts: np.ndarray, counts: np.ndarray, where: str = "gather"
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and item index of the runs ``[starts[k], starts[k] + counts[k])`` laid end to end.

    Returns:
        ``(new_offsets, item_index)``: ``values[item_index]`` holds run ``k`` as segment ``k``.
        A total past int64 is a ValueError (possible only for items of no size).
    """
    new_offsets = _checks.offsets_from_lengths(counts, where, "the selected lengths")
    shift = np.repeat(starts - new_offsets[:-1], counts)
    return new_offsets, shift + np.arange(new_offsets[-1], dtype=np.int64)


def segment_index(key: Any, num_segments: int, where: str) -> np.ndarray:
    """Host int64 segment indices (in range, negatives resolved) from an index array or mask.

    Accepts lists, numpy arrays and tensors (on any device) of integers or booleans, and
    slices of any step.
    """
    if isinstance(key, slice):
        return np.arange(*slice_indices(key, num_segments, where), dtype=np.int64)
    if isinstance(key, np.ndarray):
        _checks.plain_ndarray(key, where, "an index array")
    if _backend.is_tensor(key):
        _checks.dense_tensor(key, where, "an index tensor")
        if key.dtype.is_floating_point or key.dtype.is_complex:  # bfloat16 has no numpy twin
            if key.ndim == 1 and not key.numel():  # none, as an empty list or array selects
                return np.zeros(0, dtype=np.int64)
            raise IndexError(
                f"{where}: segment indices must be integers or booleans; got dtype "
                f"{_checks.dtype_name(key.dtype)}"
            )
        if _checks.dtype_name(key.dtype) == "uint8":
            raise TypeError(
                f"{where}: a uint8 index tensor is ambiguous (torch reads it as a mask, numpy "
                "as indices); got dtype uint8: pass key.bool() for a mask or key.long() for "
                "indices"
            )
        key = _backend.host_numpy(key)
    try:
        arr = _checks.as_numpy(key, where, "index")
    except ValueError:
        raise IndexError(
            f"{where}: an index list must be rectangular (1-D); got a ragged {type(key).__name__}"
        ) from None
    at = _checks.bool_among_ints(key) if arr.dtype.kind in "iu" else None
    if at is not None:  # (numpy and torch read [True, 0] as [1, 0]: ambiguous here)
        raise TypeError(
            f"{where}: an index list must hold integers or only booleans (a mask); got "
            f"index[{at}]={key[at]!r} among integers"
        )
    ints = _checks.int_list(key) if arr.dtype.kind in "fO" else None
    if ints:  # a list of ints numpy made floats or objects of (np.uint64 beside np.int64)
        big = next((i for i in ints if not -num_segments <= i < num_segments), None)
        if big is not None:
            raise IndexError(
                f"{where}: segment index out of range for {num_segments} segments; got {big}"
            )
        arr = np.array(ints, dtype=np.int64)
    if arr.dtype == object:
        big = _checks.big_python_int(key) if arr.ndim == 1 else None
        if big is None:
            raise TypeError(
                f"{where}: index with an int, a slice, an index array or a boolean mask; "
                f"got {type(key).__name__} of objects"
            )
        raise IndexError(
            f"{where}: segment index out of range for {num_segments} segments; got {big}"
        )
    if arr.dtype == np.bool_:
        if arr.shape != (num_segments,):
            raise IndexError(
                f"{where}: a boolean mask must have shape ({num_segments},), one entry per "
                f"segment; got shape {arr.shape}"
            )
        return np.flatnonzero(arr).astype(np.int64, copy=False)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise IndexError(
            f"{where}: segment indices must be integers or booleans; got dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise IndexError(f"{where}: an index array must be 1-D; got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and (arr > 2**63 - 1).any():
        k = int(np.flatnonzero(arr > 2**63 - 1)[0])
        raise IndexError(
            f"{where}: segment index out of range for {num_segments} segments; "
            f"got {arr[k]} at position {k}"
        )
    idx = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((idx < -num_segments) | (idx >= num_segments))
    if bad.size:
        raise IndexError(
            f"{where}: segment index out of range for {num_segments} segments; "
            f"got {idx[bad[0]]} at position {bad[0]}"
        )
    return np.where(idx < 0, idx + num_segments, idx)


def slice_indices(key: slice, num_segments: int, where: str) -> tuple[int, int, int]:
    """``key.indices(num_segments)``, with a TypeError naming ``where`` for non-int bounds."""
    try:
        return key.indices(num_segments)
    except TypeError:
        seen = ", ".join(type(v).__name__ for v in (key.start, key.stop, key.step))
        raise TypeError(
            f"{where}: slice bounds and step must be ints or None; got ({seen})"
        ) from None


def pad_positions(
    offsets: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Where each item goes when segments are padded to ``length`` slots.

    Returns:
        ``(dest, src, mask)``: item ``src[k]`` (every item in order when ``src`` is None) goes
        to row ``dest[k]`` of the flattened ``(m * length, ...)`` padded array; ``mask`` is the
        ``(m, length)`` map of real items. Items past ``length`` in a segment are dropped.
    """
    counts = np.diff(offsets)
    slots = positions(offsets)
    dest = segment_ids(offsets) * length + slots
    src = None
    if counts.size and counts.max() > length:
        src = np.flatnonzero(slots < length)
        dest = dest[src]
    mask = np.arange(length, dtype=np.int64)[None, :] < counts[:, None]
    return dest, src, mask


def subsample(
    offsets: np.ndarray, k: Any, draw: Callable[[], np.ndarray], where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and item index keeping ``min(n_i, k_i)`` items of each segment, drawn by keys.

    ``draw()`` returns one random number per item, and is called only once ``k`` is valid
    (a refused call leaves the caller's generator where it was); each segment keeps the
    items with its ``k_i`` smallest keys (a uniform draw without replacement), in their
    original order.

    Returns:
        ``(new_offsets, item_index)`` as ``gather`` does.
    """
    lengths = np.diff(offsets)
    if isinstance(k, (bool, np.bool_)) or _checks.index_of(k) is not None:  # one count
        # (read_int refuses bools; a timedelta64 is no count, and no vector either)
        keep = np.minimum(lengths, _checks.read_int(k, "k", where))
    else:
        per_segment = _as_host_integer_vector(k, where, "k")
        if per_segment.shape[0] != lengths.shape[0]:
            raise ValueError(
                f"{where}: k must be an int or hold one count per segment ({lengths.shape[0]}); "
                f"got {per_segment.shape[0]} counts"
            )
        bad = np.flatnonzero(per_segment < 0)
        if bad.size:
            raise ValueError(f"{where}: k must be >= 0; got k[{bad[0]}]={per_segment[bad[0]]}")
        keep = np.minimum(lengths, per_segment)
    keys = draw()
    new_offsets = np.zeros_like(offsets)
    np.cumsum(keep, out=new_offsets[1:])
    ids = segment_ids(offsets)
    order = np.lexsort((keys, ids))  # each segment's items in random order, segments in place
    chosen = order[positions(offsets) < keep[ids]]
    chosen.sort()
    return new_offsets, chosen
