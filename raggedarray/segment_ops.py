"""Order-based segment operations: argmax, argmin, median, any, all, cumsum, sort, topk.

``segment_argmax(values, offsets)`` and friends work on plain arrays as the reductions of
:mod:`raggedarray.reduce` do (numpy values run through the torch kernels without a copy and
come back as numpy); the ragged methods ``x.argmax()``, ``x.sort()``, ... are thin wrappers.

* ``argmax``/``argmin`` give ``(m, *item_shape)`` int64 positions *within the segment* of
  the first maximum/minimum, as ``torch.argmax(segment, dim=0)``: a NaN counts as the
  extremum (for both, as in torch); empty segments give ``fill`` (default -1).
* ``median`` gives the lower median, as ``torch.median(segment, dim=0).values``: NaN where
  the segment holds one; differentiable, the gradient goes to the median item.
* ``any``/``all`` give ``(m, *item_shape)`` bool; an empty segment gives False/True.
* ``cumsum`` gives ``(N, *item_shape)`` running sums restarting at each segment
  (int64 for integers and booleans; floats stay accurate at any length: a float64 running
  sum in numba's compiled pass on a CPU, else blocks of 16 items, then each segment's sum
  before a block in float64).
* ``sort``/``topk`` (methods only) give ragged values and local indices.

Every dtype the constructors accept is handled (bool, int8 to uint64, the half precisions,
float32, float64), and so are zero segments, empty segments and zero-size items.

Examples:
    >>> import numpy as np
    >>> import raggedarray as ra
    >>> values, offsets = np.array([3.0, 1.0, 4.0, 1.0, 5.0]), [0, 2, 2, 5]
    >>> ra.segment_argmax(values, offsets)
    array([ 0, -1,  2])
    >>> ra.segment_median(values, offsets, fill=np.nan)
    array([ 1., nan,  4.])
    >>> ra.segment_cumsum(values, offsets)
    array([ 3.,  4.,  4.,  5., 10.])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import _backend, _checks, _offsets
from ._partition import Partition
from ._reductions import compute_dtype, integer_codec
from ._types import Array, IntArrayLike, Scalar
from .reduce import _flat, as_tensor, learned_fill, like_input, partition_of

if TYPE_CHECKING:
    import torch


def _torch() -> Any:
    return _backend.torch_module()


def _order() -> Any:
    from . import _order

    return _order


# ------------------------------------------------------------- the per-segment kernels


def _arg(op: str) -> Callable[[Any, Partition], Any]:
    def kernel(flat: Any, part: Partition) -> Any:
        order = _order()
        work = order.order_view(flat)
        if work.dtype.is_floating_point:
            work = work.to(compute_dtype(work.dtype))
        return order.arg_extremum(work, part, op)

    return kernel


def _any_all(op: str) -> Callable[[Any, Partition], Any]:
    def kernel(flat: Any, part: Partition) -> Any:
        work = flat.to(compute_dtype(flat.dtype)) if flat.dtype.is_floating_point else flat
        return _order().any_all(work, part, op)

    return kernel


def _median(flat: Any, part: Partition) -> Any:
    order = _order()
    return order.take(flat, order.median_index(flat, part))


@dataclasses.dataclass(frozen=True)
class SegmentOp:
    """One order-based segment reduction to ``(m, *item_shape)``.

    Attributes:
        kernel: ``(flat, partition) -> (m, F)`` on the ``(N, F)`` values in their own dtype.
        result: ``"int64"``, ``"bool"`` or ``"same"`` (the values' dtype).
        default_fill: what empty segments give unless told (None: no ``fill`` option).
        pool: usable as a pooling op by ``ra.nn`` (none of these is).
    """

    kernel: Callable[[Any, Partition], Any]
    result: str
    default_fill: Any
    pool: bool = False


SEGMENT_OPS: dict[str, SegmentOp] = {
    "argmax": SegmentOp(_arg("amax"), result="int64", default_fill=-1),
    "argmin": SegmentOp(_arg("amin"), result="int64", default_fill=-1),
    "median": SegmentOp(_median, result="same", default_fill=0),
    "any": SegmentOp(_any_all("any"), result="bool", default_fill=None),
    "all": SegmentOp(_any_all("all"), result="bool", default_fill=None),
}


def _result_dtype(spec: SegmentOp, dtype: Any) -> Any:
    torch = _torch()
    return {"int64": torch.int64, "bool": torch.bool}.get(spec.result, dtype)


def segment_op(
    op: str, values: Any, part: Partition, *, fill: Any, where: str, source: Any = None
) -> Any:
    """Run ``op`` of ``SEGMENT_OPS`` on tensor ``values``; returns ``(m, *item_shape)``.

    ``source`` is the user's values (None: torch's), as for ``reduce.reduce``.
    """
    spec = SEGMENT_OPS[op]
    dtype = _result_dtype(spec, values.dtype)
    learned = learned_fill(fill, dtype, source)
    if spec.default_fill is not None:
        fill = _checks.check_fill(fill, dtype, where)
    flat = _flat(values)
    shape = (part.num_segments, *values.shape[1:])
    if flat.numel() == 0:
        torch = _torch()
        empty_result = spec.default_fill is None and op == "all"
        out = torch.full(shape, empty_result, dtype=torch.bool, device=values.device)
        if learned is not None:  # every result is the fill
            out = learned.to(values.device, dtype).expand(shape).clone()
        elif spec.default_fill is not None:
            out = torch.full(shape, fill, dtype=dtype, device=values.device)
        if spec.result == "same" and _backend.needs_grad(flat):  # (median: linked to autograd;
            out = out - flat.sum() * 0  # positions are int64; minus keeps a fill of -0.0)
        return out
    out = spec.kernel(flat, part)
    empty = part.empty(flat.device)
    if learned is not None and empty is not None:  # its gradient, as in reduce.reduce
        out = out.masked_fill(empty.unsqueeze(1), learned.to(out.device, out.dtype))
    elif spec.default_fill is not None and empty is not None:
        fill_bits = _backend.signed_number(fill, dtype)
        out = _backend.signed_view(out).masked_fill(empty.unsqueeze(1), fill_bits)
        out = out.view(dtype) if out.dtype != dtype else out
    return out.reshape(shape)


def cumsum(values: Any, part: Partition, *, where: str) -> Any:
    """Running sums restarting at each segment, ``(N, *item_shape)`` (int64 for integers)."""
    flat = _flat(values)
    floating = values.dtype.is_floating_point
    encode, _ = integer_codec(values.dtype, "int64", where)
    out = _order().cumsum(encode(flat), part) if flat.numel() else encode(flat).clone()
    if floating:
        out = out.to(values.dtype)
    return out.reshape(values.shape)


def sort(values: Any, part: Partition, *, descending: bool) -> tuple[Any, Any]:
    """``(sorted values, local indices)``, both ``(N, *item_shape)``, each segment sorted."""
    order = _order()
    flat = _flat(values)
    if flat.numel() == 0:
        index = _torch().zeros(flat.shape, dtype=_torch().int64, device=values.device)
        return values.clone(), index.reshape(values.shape)
    perm = order.sort_permutation(flat, part, descending=descending)
    taken = order.take_sorted(flat, perm)  # before local_sorted, which may use perm up
    local = order.local_sorted(perm, part, in_place=not _backend.needs_grad(flat))
    return taken.reshape(values.shape), local.reshape(values.shape)


def topk(
    values: Any, part: Partition, k: int, *, largest: bool, where: str
) -> tuple[Any, Any, np.ndarray]:
    """Each segment's first ``min(n_i, k)`` items of its stable sort (descending: largest).

    Returns ``(values, local indices, new host offsets)``, the first two ``(N', *item_shape)``.
    """
    assert part.host is not None  # a ragged array's partition knows its offsets
    host, rows, k = topk_rows(part.host, k, where)
    flat = _flat(values)
    index = _order().topk_index(flat, part, k, largest=largest) if flat.numel() else None
    if index is None:
        out, local = sort(values, part, descending=largest)
        return _rows(out, rows), _rows(local, rows), host
    torch = _torch()
    kept = np.minimum(part.host_lengths, k)
    chosen = index[torch.from_numpy(np.arange(k) < kept[:, None])]  # (N', F), by segment
    segment = torch.from_numpy(np.repeat(np.arange(part.num_segments), kept))
    local = chosen - part.offsets(chosen.device)[:-1][segment].unsqueeze(1)
    shape = (chosen.shape[0], *values.shape[1:])
    return _order().take(flat, chosen).reshape(shape), local.reshape(shape), host


def _rows(values: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of a tensor of any dtype, in a new buffer."""
    signed = _backend.signed_view(values)
    out = _backend.index_rows(signed, rows)
    return out if signed is values else out.view(values.dtype)


def topk_rows(host: np.ndarray, k: int, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """New offsets keeping ``min(n_i, k)`` leading items of each segment, and their rows.

    Also returns ``k`` capped at the longest length: any larger ``k`` keeps the same items.
    """
    count = _checks.index_of(k)
    if count is None:
        raise TypeError(f"{where}: k must be an int; got {type(k).__name__}")
    if count < 0:
        raise ValueError(f"{where}: k must be >= 0; got {count}")
    k = min(count, int(np.diff(host).max(initial=0)))
    keep = np.minimum(np.diff(host), k)
    new_offsets = np.zeros_like(host)
    np.cumsum(keep, out=new_offsets[1:])
    rows = np.flatnonzero(_offsets.positions(host) < k)
    return new_offsets, rows, k


# ------------------------------------------------------------------- public functions


def _public(op: str, values: Any, offsets: Any, fill: Any, where: str) -> Any:
    tensor = as_tensor(values, where)
    part = partition_of(tensor, offsets, where)
    result = segment_op(op, tensor, part, fill=fill, where=where, source=values)
    return like_input(result, values)


@overload
def segment_argmax(values: np.ndarray, offsets: IntArrayLike, *, fill: int = -1) -> np.ndarray: ...
@overload
def segment_argmax(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: int = -1
) -> torch.Tensor: ...
def segment_argmax(values: Array, offsets: IntArrayLike, *, fill: int = -1) -> Array:
    """Position within its segment of the first maximum of each segment, per feature.

    As ``torch.argmax(segment, dim=0)`` (a NaN counts as the maximum); empty segments give
    ``fill``.

    Args:
        values: ``(N, *item_shape)`` numpy array or torch tensor.
        offsets: ``(m + 1,)`` integer offsets.
        fill: position given to empty segments.

    Returns:
        ``(m, *item_shape)`` int64 positions.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_argmax(np.array([[1, 9], [5, 9], [2, 0]]), [0, 2, 2, 3])
        array([[ 1,  0],
               [-1, -1],
               [ 0,  0]])
    """
    return _public("argmax", values, offsets, fill, "segment_argmax")


@overload
def segment_argmin(values: np.ndarray, offsets: IntArrayLike, *, fill: int = -1) -> np.ndarray: ...
@overload
def segment_argmin(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: int = -1
) -> torch.Tensor: ...
def segment_argmin(values: Array, offsets: IntArrayLike, *, fill: int = -1) -> Array:
    """Position within its segment of the first minimum of each segment (a NaN counts).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_argmin(np.array([3.0, 1.0, 1.0, np.nan, 0.0]), [0, 3, 5])
        array([1, 0])
    """
    return _public("argmin", values, offsets, fill, "segment_argmin")


@overload
def segment_median(
    values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0
) -> np.ndarray: ...
@overload
def segment_median(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_median(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """Lower median of each segment, as ``torch.median(segment, dim=0).values``.

    A segment and feature holding a NaN gives NaN. Differentiable: the gradient goes to the
    median item.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_median(np.array([4.0, 1.0, 3.0, 2.0, 7.0]), [0, 4, 4, 5], fill=-1.0)
        array([ 2., -1.,  7.])
    """
    return _public("median", values, offsets, fill, "segment_median")


@overload
def segment_any(values: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def segment_any(values: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def segment_any(values: Array, offsets: IntArrayLike) -> Array:
    """Whether any item of each segment is nonzero (True), per feature; empty: False.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_any(np.array([0, 2, 0, 0]), [0, 2, 2, 4])
        array([ True, False, False])
    """
    return _public("any", values, offsets, None, "segment_any")


@overload
def segment_all(values: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def segment_all(values: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def segment_all(values: Array, offsets: IntArrayLike) -> Array:
    """Whether every item of each segment is nonzero (True), per feature; empty: True.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_all(np.array([1, 2, 0, 3]), [0, 2, 2, 4])
        array([ True,  True, False])
    """
    return _public("all", values, offsets, None, "segment_all")


@overload
def segment_cumsum(values: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def segment_cumsum(values: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def segment_cumsum(values: Array, offsets: IntArrayLike) -> Array:
    """Running sums over the items of each segment, restarting at each segment.

    Integers and booleans give int64. Floating values come back in their own dtype, at any
    length each within one rounding of the float64 running sum (CPU with numba installed:
    one compiled pass) or within the error of 16 additions (in float32 for the half
    precisions) and two roundings (the torch path). Differentiable.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_cumsum(np.array([1, 2, 3, 4]), [0, 3, 4])
        array([1, 3, 6, 4])
    """
    where = "segment_cumsum"
    tensor = as_tensor(values, where)
    part = partition_of(tensor, offsets, where)
    return like_input(cumsum(tensor, part, where=where), values)
