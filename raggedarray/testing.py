"""Assertions and per-segment reference loops for testing code built on ragged arrays.

The reference loops (``reference_reduce``, ``reference_softmax``, ``reference_broadcast``)
compute what the vectorised segment operations promise by a plain Python loop over the
segments, with the backend's own per-array functions (``np.sum(seg, axis=0)``,
``torch.amax(seg, 0)``, ...). They are the oracle of raggedarray's own tests, and serve
downstream projects that write kernels of their own. They are slow by design, and check
their inputs as the functions they stand in for do (valid offsets over the values, a dtype
ragged arrays hold, floating values where the operation needs them), so that an oracle
never answers an input the real operation refuses.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import _backend, _checks, _compare, _offsets
from ._types import Array, IntArrayLike, Scalar
from .ragged import RaggedArray

if TYPE_CHECKING:
    import torch

__all__ = [
    "allclose",
    "assert_ragged_equal",
    "reference_broadcast",
    "reference_cumsum",
    "reference_reduce",
    "reference_segment_op",
    "reference_softmax",
    "reference_sort",
]


def assert_ragged_equal(
    a: RaggedArray, b: RaggedArray, *, rtol: float = 0.0, atol: float = 0.0
) -> None:
    """Assert that two ragged arrays have the same segments, item shape and values.

    Values are compared on the host, across backends and devices, within
    ``atol + rtol * |b|`` (exactly by default; NaNs in the same places compare equal).
    Integers against integers are compared exactly at any size (``2**60`` differs from
    ``2**60 + 1``), a tolerance then applying to their exact difference. Classes and dtypes
    are not compared: a ``RaggedImageBatch`` equals a ``RaggedArray`` over the same data.

    Raises:
        AssertionError: with the first difference found: segment count, item shape, offsets,
            or the values: how many are not close, the segment, item and element of the
            first, and of the largest difference.
        TypeError: ``a`` or ``b`` is not a ragged array, or a tolerance not a real number.
        ValueError: a tolerance is negative or NaN.

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
    _compare.check_tolerances(rtol, atol, "assert_ragged_equal")
    why = _compare.structure_mismatch(a, b)
    if why is not None:
        raise AssertionError(f"ragged arrays differ: {why}")
    va, vb = _compare.host_values(a), _compare.host_values(b)
    close = _compare.close_mask(va, vb, rtol, atol, equal_nan=True)
    if close.all():
        return
    far = np.flatnonzero(~close.reshape(-1))
    first = np.unravel_index(int(far[0]), close.shape)
    message = (
        f"ragged arrays differ: {far.size} of {close.size} values are not close "
        f"(rtol={rtol}, atol={atol}); first at {_place(a, first)}: "
        f"{va[first].item()!r} != {vb[first].item()!r}"
    )
    with np.errstate(all="ignore"):  # (inf - inf, overflow: no largest difference there)
        gaps = np.abs(va.reshape(-1)[far].astype(np.float64) - vb.reshape(-1)[far])
    finite = np.where(np.isfinite(gaps), gaps, -1.0)  # (NaN and inf gaps: the first says it)
    widest = np.unravel_index(int(far[int(np.argmax(finite))]), close.shape)
    if finite.max() >= 0 and widest != first:
        message += (
            f"; largest difference at {_place(a, widest)}: {va[widest].item()!r} != "
            f"{vb[widest].item()!r}"
        )
    raise AssertionError(message)


def _place(x: RaggedArray, index: tuple[Any, ...]) -> str:
    """``segment s, item i[, element (j, k)]`` of a position in the values."""
    item = int(index[0])
    segment = int(np.searchsorted(x.host_offsets, item, side="right") - 1)
    place = f"segment {segment}, item {item - int(x.host_offsets[segment])}"
    if len(index) > 1:
        place += f", element {tuple(int(i) for i in index[1:])}"
    return place


def allclose(
    a: RaggedArray,
    b: RaggedArray,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    equal_nan: bool = False,
) -> bool:
    """Whether two ragged arrays share segments and item shape, with values within tolerance.

    Values are within ``atol + rtol * |b|`` as in ``np.allclose``; integers against integers
    are compared exactly at any size (see ``assert_ragged_equal``).

    Args:
        a: a ragged array.
        b: a ragged array, compared with ``a`` across backends and devices.
        rtol: relative tolerance, ``>= 0``.
        atol: absolute tolerance, ``>= 0``.
        equal_nan: NaNs in the same places compare equal (by default a NaN differs from
            everything, as in ``np.allclose``).

    Raises:
        TypeError: ``a`` or ``b`` is not a ragged array, a tolerance not a real number, or
            ``equal_nan`` not a bool.
        ValueError: a tolerance is negative or NaN.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.array([1.0, 2.0, 3.0]), [1, 2])
        >>> ra.allclose(x, x.to(dtype=np.float32))
        True
        >>> y = ra.RaggedArray.from_lengths(np.array([np.nan, 2.0, 3.0]), [1, 2])
        >>> ra.allclose(y, y), ra.allclose(y, y, equal_nan=True)
        (False, True)
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, RaggedArray):
            raise TypeError(f"allclose: {name} must be a RaggedArray; got {type(x).__name__}")
    _compare.check_tolerances(rtol, atol, "allclose")
    equal_nan = _checks.read_bool(equal_nan, "equal_nan", "allclose")
    return _compare.ragged_allclose(a, b, rtol, atol, equal_nan)


# ------------------------------------------------------------------ reference loops

_INTEGER_RESULT = {"sum": "int64", "prod": "int64", "max": "same", "min": "same"}


def _np_logsumexp(seg: np.ndarray) -> np.ndarray:
    top = seg.max(0)
    top = np.where(np.isinf(top), 0, top)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(seg - top).sum(0)) + top


_NUMPY_OPS: dict[str, Any] = {
    "sum": lambda s, c: np.sum(s, axis=0),
    "mean": lambda s, c: np.mean(s, axis=0),
    "max": lambda s, c: np.max(s, axis=0),
    "min": lambda s, c: np.min(s, axis=0),
    "prod": lambda s, c: np.prod(s, axis=0),
    "logsumexp": lambda s, c: _np_logsumexp(s),
    "var": lambda s, c: np.var(s, axis=0, ddof=c),
    "std": lambda s, c: np.std(s, axis=0, ddof=c),
}


def _torch_ops() -> dict[str, Any]:
    torch = _backend.torch_module()
    return {
        "sum": lambda s, c: s.sum(0),
        "mean": lambda s, c: s.mean(0),
        "max": lambda s, c: s.amax(0),
        "min": lambda s, c: s.amin(0),
        "prod": lambda s, c: s.prod(0),
        "logsumexp": lambda s, c: torch.logsumexp(s, 0),
        "var": lambda s, c: s.var(0, correction=c),
        "std": lambda s, c: s.std(0, correction=c),
    }


@overload
def reference_reduce(
    op: str, values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0, correction: int = 1
) -> np.ndarray: ...
@overload
def reference_reduce(
    op: str, values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0, correction: int = 1
) -> torch.Tensor: ...
def reference_reduce(
    op: str, values: Any, offsets: IntArrayLike, *, fill: Scalar = 0, correction: int = 1
) -> Any:
    """What ``ra.segment_<op>(values, offsets)`` promises, by a loop over the segments.

    Each non-empty segment is reduced by the backend's own function over dim 0 (numpy for
    numpy values, torch for tensors, differentiable there); segments with no items (for
    ``var``/``std``: with ``n_i <= correction``) give ``fill``. Half precisions are reduced
    in float32 and cast back; integer and boolean sums and products are int64.

    Args:
        op: ``"sum"``, ``"mean"``, ``"max"``, ``"min"``, ``"prod"``, ``"logsumexp"``,
            ``"var"`` or ``"std"``.
        values: ``(N, *item_shape)`` numpy array or torch tensor.
        offsets: ``(m + 1,)`` offsets (any integer array or list).
        fill: result for segments that give no value.
        correction: for ``var`` and ``std``.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> values, offsets = np.array([1.0, 2.0, 4.0]), [0, 2, 2, 3]
        >>> ra.testing.reference_reduce("mean", values, offsets, fill=-1.0)
        array([ 1.5, -1. ,  4. ])
        >>> ra.testing.reference_reduce("mean", values, offsets, fill=-1.0).tolist() == (
        ...     ra.segment_mean(values, offsets, fill=-1.0).tolist())
        True
    """
    _check_op(op, sorted(_NUMPY_OPS), "reference_reduce")
    spans = _spans(values, offsets, "reference_reduce")
    target = None
    if op in ("mean", "logsumexp", "var", "std"):
        values, target = _as_floats(values)
    item_shape = tuple(values.shape[1:])
    short = (lambda n: n <= correction) if op in ("var", "std") else (lambda n: n == 0)
    if _backend.is_tensor(values):
        torch = _backend.torch_module()
        out = _result_dtype(op, values.dtype, torch.int64, values.dtype.is_floating_point)
        work = torch.float32 if values.dtype in (torch.float16, torch.bfloat16) else out
        reduce_one = _torch_ops()[op]
        rows = [
            torch.full(item_shape, fill, dtype=out, device=values.device)
            if short(b - a)
            else reduce_one(values[a:b].to(work), correction).to(out)
            for a, b in spans
        ]
        if not rows:
            return torch.zeros((0, *item_shape), dtype=target or out, device=values.device)
        return torch.stack(rows).to(target or out)
    out = _result_dtype(op, values.dtype, np.dtype(np.int64), values.dtype.kind == "f")
    work = np.float32 if values.dtype == np.float16 else out
    rows = []
    for a, b in spans:
        if short(b - a):
            rows.append(np.full(item_shape, fill, dtype=out))
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            rows.append(np.asarray(_NUMPY_OPS[op](values[a:b].astype(work), correction)))
    if not rows:
        return np.zeros((0, *item_shape), dtype=out)
    return np.stack(rows).astype(out)


def _result_dtype(op: str, dtype: Any, int64: Any, floating: bool) -> Any:
    if floating or _INTEGER_RESULT.get(op) != "int64":
        return dtype
    return int64


@overload
def reference_softmax(
    values: np.ndarray, offsets: IntArrayLike, *, log: bool = False
) -> np.ndarray: ...
@overload
def reference_softmax(
    values: torch.Tensor, offsets: IntArrayLike, *, log: bool = False
) -> torch.Tensor: ...
def reference_softmax(values: Any, offsets: IntArrayLike, *, log: bool = False) -> Any:
    """What ``ra.segment_softmax`` (or ``segment_log_softmax``) promises, by a segment loop.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.testing.reference_softmax(np.log(np.array([1.0, 3.0, 2.0])), [0, 2, 3])
        array([0.25, 0.75, 1.  ])
    """
    spans = _spans(values, offsets, "reference_softmax")
    values, target = _as_floats(values)
    if _backend.is_tensor(values):
        torch = _backend.torch_module()
        fn = torch.log_softmax if log else torch.softmax
        rows = [
            fn(
                values[a:b].float()
                if values.dtype in (torch.float16, torch.bfloat16)
                else values[a:b],
                0,
            ).to(values.dtype)
            for a, b in spans
        ]
        result = torch.cat([values[:0], *rows])
        return result if target is None else result.to(target)
    rows = []
    for a, b in spans:
        seg = values[a:b].astype(np.float32 if values.dtype == np.float16 else values.dtype)
        if seg.shape[0] == 0:
            continue
        shifted = seg - seg.max(0)
        total = np.exp(shifted).sum(0)
        rows.append(shifted - np.log(total) if log else np.exp(shifted) / total)
    return np.concatenate([values[:0], *rows]).astype(values.dtype)


@overload
def reference_broadcast(per_segment: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def reference_broadcast(per_segment: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def reference_broadcast(per_segment: Any, offsets: IntArrayLike) -> Any:
    """What ``ra.segment_broadcast`` promises: row ``i`` repeated ``n_i`` times, by a loop.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.testing.reference_broadcast(np.array([10, 20, 30]), [0, 2, 2, 3])
        array([10, 10, 30])
    """
    where = "reference_broadcast"
    _checks.check_array(per_segment, where, "per_segment")
    host = _offsets.read_offsets(offsets, where)
    _offsets.validate(host, int(host[-1]), where)
    lengths = np.diff(host)
    if per_segment.shape[0] != lengths.shape[0]:
        raise ValueError(
            f"{where}: per_segment must have one row per segment ({lengths.shape[0]}); got "
            f"{per_segment.shape[0]} rows"
        )
    if _backend.is_tensor(per_segment):
        torch = _backend.torch_module()
        rows = [
            per_segment[i : i + 1].expand(int(n), *per_segment.shape[1:])
            for i, n in enumerate(lengths)
        ]
        return torch.cat([per_segment[:0], *rows])
    rows = [np.repeat(per_segment[i : i + 1], n, axis=0) for i, n in enumerate(lengths)]
    return np.concatenate([per_segment[:0], *rows])


# ------------------------------------------------- reference loops: order-based operations


def _check_op(op: Any, ops: list[str], where: str) -> None:
    if not isinstance(op, str):  # (an array first: the arguments in another order)
        raise TypeError(f"{where}: op must be a str, the first argument; got {type(op).__name__}")
    if op not in ops:
        raise ValueError(f"{where}: op must be one of {ops}; got {op!r}")


def _spans(values: Any, offsets: Any, where: str) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of each segment, with the inputs checked as ``ra`` checks them.

    ``values`` must be an array of a dtype ragged arrays hold, and ``offsets`` valid
    offsets over its items: an oracle that answered wrong inputs would compare a wrong
    answer with a right one.
    """
    _checks.check_array(values, where)
    host = _offsets.read_offsets(offsets, where)
    _offsets.validate(host, values.shape[0], where)
    return [(int(a), int(b)) for a, b in itertools.pairwise(host)]


def _as_floats(values: Any) -> tuple[Any, Any]:
    """Integers and booleans as the operations take them where they need floats.

    Returns them with the dtype of the result (None: the values'): float64 for numpy
    values (``np.mean``'s rule); for tensors, torch's default dtype, computed in float64
    for 32- and 64-bit integers (which float32 does not hold exactly) and rounded once.
    """
    if _is_floating(values):
        return values, None
    if _backend.is_tensor(values):
        torch = _backend.torch_module()
        target = torch.get_default_dtype()
        exact = target == torch.float64 or (values.element_size() <= 2 and target == torch.float32)
        return values.to(target if exact else torch.float64), target
    return values.astype(np.float64), None


def _is_floating(values: Any) -> bool:
    if _backend.is_tensor(values):
        return bool(values.dtype.is_floating_point)
    return bool(values.dtype.kind == "f")


def _np_stable_order(seg: np.ndarray, descending: bool) -> np.ndarray:
    """Stable argsort over dim 0 (NaN largest); descending keeps ties in their order."""
    if not descending:
        return np.argsort(seg, axis=0, kind="stable")
    n = seg.shape[0]
    return (n - 1 - np.argsort(seg[::-1], axis=0, kind="stable"))[::-1]


def _np_segment_op(op: str, seg: np.ndarray) -> np.ndarray:
    if op in ("argmax", "argmin"):
        if seg.dtype.kind == "f" and np.isnan(seg).any(axis=0).any():
            nan_first = np.argmax(np.isnan(seg), axis=0)
            plain = np.argmax(seg, axis=0) if op == "argmax" else np.argmin(seg, axis=0)
            return np.where(np.isnan(seg).any(axis=0), nan_first, plain)
        return np.argmax(seg, axis=0) if op == "argmax" else np.argmin(seg, axis=0)
    if op == "median":
        order = _np_stable_order(seg, False)
        lower = np.take_along_axis(seg, order, axis=0)[(seg.shape[0] - 1) // 2]
        if seg.dtype.kind == "f":
            return np.where(np.isnan(seg).any(axis=0), np.nan, lower).astype(seg.dtype)
        return lower
    return np.any(seg != 0, axis=0) if op == "any" else np.all(seg != 0, axis=0)


_EMPTY_RESULT = {"any": False, "all": True}


@overload
def reference_segment_op(
    op: str, values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar | None = None
) -> np.ndarray: ...
@overload
def reference_segment_op(
    op: str, values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar | None = None
) -> torch.Tensor: ...
def reference_segment_op(
    op: str, values: Any, offsets: IntArrayLike, *, fill: Scalar | None = None
) -> Any:
    """What ``x.argmax()``, ``argmin``, ``median``, ``any`` and ``all`` promise, by a loop.

    Floating torch values use torch's own ``argmax``/``argmin``/``median``/``any``/``all``
    over dim 0 of each segment (differentiable for ``median``); other values use numpy's
    (the lower median of a stable sort, NaN where the segment holds one). Empty segments
    give ``fill`` (default -1 for the arg ops, 0 for the median), False for ``any`` and
    True for ``all``.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.testing.reference_segment_op("argmax", np.array([1, 5, 5, 2]), [0, 3, 3, 4])
        array([ 1, -1,  0])
    """
    _check_op(op, ["argmax", "argmin", "median", "any", "all"], "reference_segment_op")
    if fill is None:
        fill = {"argmax": -1, "argmin": -1, "median": 0}.get(op, _EMPTY_RESULT.get(op))
    spans = _spans(values, offsets, "reference_segment_op")
    item_shape = tuple(values.shape[1:])
    if _backend.is_tensor(values) and values.dtype.is_floating_point:
        torch = _backend.torch_module()
        one = {
            "argmax": lambda s: torch.argmax(s, 0),
            "argmin": lambda s: torch.argmin(s, 0),
            "median": lambda s: torch.median(s, 0).values,
            "any": lambda s: torch.any(s, 0),
            "all": lambda s: torch.all(s, 0),
        }[op]
        dtype = {"argmax": torch.int64, "argmin": torch.int64, "median": values.dtype}
        out = dtype.get(op, torch.bool)
        rows = [
            torch.full(item_shape, fill, dtype=out, device=values.device)
            if a == b
            else one(values[a:b]).to(out)
            for a, b in spans
        ]
        return torch.stack(rows) if rows else torch.zeros((0, *item_shape), dtype=out)
    host = _host_array(values)
    dtypes: dict[str, Any] = {"argmax": np.int64, "argmin": np.int64, "median": host.dtype}
    dtype = dtypes.get(op, np.bool_)
    rows = [
        np.full(item_shape, fill, dtype=dtype) if a == b else _np_segment_op(op, host[a:b])
        for a, b in spans
    ]
    out = np.stack(rows).astype(dtype) if rows else np.zeros((0, *item_shape), dtype=dtype)
    return _like_backend(out, values)


def _host_array(values: Any) -> np.ndarray:
    if _backend.is_tensor(values):
        return _backend.host_numpy(values)
    return np.asarray(values)


def _like_backend(out: np.ndarray, values: Any) -> Any:
    if not _backend.is_tensor(values):
        return out
    return _backend.tensor_from_numpy(np.ascontiguousarray(out)).to(values.device)


@overload
def reference_cumsum(values: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def reference_cumsum(values: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def reference_cumsum(values: Any, offsets: IntArrayLike) -> Any:
    """What ``x.cumsum()`` promises: ``cumsum`` of each segment, by a loop.

    Floating values are summed in float64 and cast back (torch values: differentiable);
    integers and booleans give int64.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.testing.reference_cumsum(np.array([1, 2, 3, 4]), [0, 3, 3, 4])
        array([1, 3, 6, 4])
    """
    spans = _spans(values, offsets, "reference_cumsum")
    if _backend.is_tensor(values) and values.dtype.is_floating_point:
        torch = _backend.torch_module()
        rows = [torch.cumsum(values[a:b].double(), 0).to(values.dtype) for a, b in spans]
        return torch.cat([values[:0], *rows])
    host = _host_array(values)
    work = np.float64 if host.dtype.kind == "f" else np.int64
    rows = [np.cumsum(host[a:b].astype(work), axis=0) for a, b in spans]
    out = np.concatenate([host[:0].astype(work), *rows])
    return _like_backend(out.astype(host.dtype) if host.dtype.kind == "f" else out, values)


def reference_sort(
    values: Array, offsets: IntArrayLike, *, descending: bool = False, k: int | None = None
) -> tuple[Array, Array, np.ndarray]:
    """What ``x.sort()`` (and, with ``k``, ``x.topk(k, largest=descending)``) promise.

    Each segment is sorted stably along dim 0 (torch's ``sort`` for floating tensors,
    differentiable; numpy's for the rest, NaN largest); with ``k``, its first ``k`` rows are
    kept. Returns ``(values, local indices, offsets)``.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> v, i, o = ra.testing.reference_sort(np.array([3, 1, 2, 5]), [0, 3, 4], k=2)
        >>> v, i, o
        (array([1, 2, 5]), array([1, 2, 0]), array([0, 2, 3]))
    """
    if k is not None:
        k = _checks.read_int(k, "k", "reference_sort")
    return _reference_sort(values, offsets, descending=descending, k=k)


def _reference_sort(
    values: Any, offsets: IntArrayLike, *, descending: bool, k: int | None
) -> tuple[Any, Any, np.ndarray]:
    spans = _spans(values, offsets, "reference_sort")
    keep = [(b - a) if k is None else min(b - a, k) for a, b in spans]
    new_offsets = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)]).astype(np.int64)
    if _backend.is_tensor(values) and values.dtype.is_floating_point:
        torch = _backend.torch_module()
        pairs = [
            torch.sort(values[a:b], dim=0, descending=descending, stable=True) for a, b in spans
        ]
        sorted_rows = [p.values[:n] for p, n in zip(pairs, keep, strict=True)]
        index_rows = [p.indices[:n] for p, n in zip(pairs, keep, strict=True)]
        empty_index = torch.zeros(values[:0].shape, dtype=torch.int64, device=values.device)
        return (
            torch.cat([values[:0], *sorted_rows]),
            torch.cat([empty_index, *index_rows]),
            new_offsets,
        )
    host = _host_array(values)
    orders = [
        _np_stable_order(host[a:b], descending)[:n] for (a, b), n in zip(spans, keep, strict=True)
    ]
    sorted_rows = [
        np.take_along_axis(host[a:b], order, axis=0)
        for (a, b), order in zip(spans, orders, strict=True)
    ]
    empty_index = np.zeros(host[:0].shape, dtype=np.int64)
    return (
        _like_backend(np.concatenate([host[:0], *sorted_rows]), values),
        _like_backend(np.concatenate([empty_index, *orders]).astype(np.int64), values),
        new_offsets,
    )
