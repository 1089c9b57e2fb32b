"""Segment reductions on plain arrays: ``segment_sum(values, offsets)`` and friends.

Segment ``i`` is ``values[offsets[i]:offsets[i + 1]]``; every reduction returns one row per
segment, ``(m, *item_shape)``, in the backend (numpy or torch) and on the device of
``values``. The ragged classes' methods (``x.sum()``, ``x.softmax()``, ...) are thin wrappers
over these functions.

Rules shared by every function:

* Empty segments (and, for ``var``/``std``, segments with ``n_i <= correction``) give
  ``fill`` (default ``0``), never NaN, and receive zero gradient. A 0-d tensor ``fill``
  that autograd records (a learned value for empty sets) gets the gradient of those rows.
* float16 and bfloat16 values are accumulated in float32 and returned in their own dtype.
  Integer and boolean sums and products return int64; ``max``/``min`` keep the dtype.
  ``mean``, ``var``, ``std``, ``logsumexp``, ``softmax`` and ``log_softmax`` of integers and
  booleans are floats: float64 for numpy values (as ``np.mean``), torch's default dtype for
  torch values (as torch divides integers).
* numpy values run through the same torch kernels (sharing memory, no copy) and come back
  as numpy arrays. torch values are differentiable: every function passes
  ``torch.autograd.gradcheck``.
* Accuracy does not decay with segment length: floating sums (and so means, variances,
  log-sum-exps and softmaxes) add blocks of at most 64 items, then the blocks in float64, so
  a float32 sum over 10^6 items is as accurate as ``torch.sum`` of that segment (relative
  error below ~1e-6); ``var``/``std`` subtract an accurate mean first, so they stay accurate
  when the mean is large compared with the spread.
* NaN behaves as in torch: sums, means and ``max``/``min`` propagate it. ``max``/``min``
  send the gradient to the extremum of each segment and feature (a NaN, where there is one);
  items tied for the extremum share it equally (as ``torch.amax`` does), and the others get
  none.
* Items with a zero-size dimension reduce to ``(m, *item_shape)`` results. Every integer
  width reduces, unsigned ones included (uint8 to uint64 images).
* Under ``torch.autocast`` the kernels run in the dtype they are given (autocast does not
  push them to bfloat16), forward and backward.
* Offsets given on the host (a list, a numpy array, a CPU tensor) are validated; offsets
  already on a GPU are trusted as they are, since checking them would synchronise.

Examples:
    >>> import numpy as np
    >>> import raggedarray as ra
    >>> values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> offsets = [0, 2, 2, 5]
    >>> ra.segment_sum(values, offsets)
    array([ 3.,  0., 12.])
    >>> ra.segment_max(values, offsets, fill=np.nan)
    array([ 2., nan,  5.])
    >>> ra.segment_softmax(np.zeros(5), offsets)
    array([0.5       , 0.5       , 0.33333333, 0.33333333, 0.33333333])
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import _backend, _checks, _offsets
from ._partition import Partition
from ._reductions import REDUCTIONS, compute_dtype, integer_codec
from ._types import Array, IntArrayLike, Scalar

if TYPE_CHECKING:
    import torch


def _torch() -> Any:
    return _backend.torch_module()


def _kernels() -> Any:
    from . import _kernels

    return _kernels


# --------------------------------------------------------------------------- inputs


def as_tensor(values: Any, where: str, what: str = "values") -> Any:
    """``values`` as a tensor (numpy shares its memory), with kind and shape checked."""
    backend = _checks.check_array(values, where, what)
    if backend == _backend.NUMPY:
        return _backend.tensor_from_numpy(np.ascontiguousarray(values))
    return values


def partition_of(values: Any, offsets: Any, where: str, *, num_items: Any = None) -> Partition:
    """A partition for tensor ``values`` from user offsets (validated unless on a GPU).

    ``num_items``: N when ``values`` are not the items (a broadcast's per-segment rows).
    """
    torch = _torch()
    count = values.shape[0] if num_items is None else num_items
    if _backend.compiling():
        return _graph_partition(values, offsets, where, count)
    if _backend.is_tensor(offsets) and offsets.device.type != "cpu":
        if offsets.device != values.device:
            raise ValueError(
                f"{where}: offsets must be on the device of values ({values.device}); "
                f"got offsets on {offsets.device}"
            )
        _check_trusted(offsets, where)
        # a copy: the backward reads the offsets again, after the caller may have reused them
        offsets = offsets.detach().to(torch.int64, copy=True)
        return Partition(None, offsets=offsets, num_items=count)
    host = _offsets.read_offsets(offsets, where)  # (a copy: the backward reads it again)
    # a CUDA graph keeps pointers to the partition's tensors: they must come from its own
    # memory pool and live as long as it does, not be freed when _recent moves on
    capturing = values.is_cuda and torch.cuda.is_current_stream_capturing()
    items = "values.shape[0]" if num_items is None else "num_items"
    return _host_partition(host, count, where, remember=not capturing, items=items)


# Partitions of the offsets functional calls saw last, by content: a training loop that
# calls ``ra.segment_mean(h, offsets)`` with the same offsets every step then skips their
# validation and the indices the kernels derive (a ragged array's methods build those once
# too). Few, and only for batches of moderate size: a partition keeps its indices on each
# device it ran on (8-40 bytes per item, more with a cumsum's scan masks). Not used while
# a CUDA graph is captured.
RECENT_PARTITIONS = 4
RECENT_MAX_ITEMS = 1 << 20
_recent: dict[bytes, Partition] = {}
_recent_lock = threading.Lock()


def _host_partition(
    host: np.ndarray, num_items: int, where: str, *, remember: bool, items: str = "values.shape[0]"
) -> Partition:
    """The partition of validated host offsets, from ``_recent`` when the same were seen.

    ``remember``: look in ``_recent`` and keep this partition there. ``items``: what an
    error calls ``num_items``.
    """
    key = host.tobytes()
    part = _recent.get(key) if remember else None
    if part is not None and part.num_items == num_items:
        return part
    _offsets.validate(host, num_items, where, items)
    part = Partition(host)
    if remember and num_items <= RECENT_MAX_ITEMS:
        with _recent_lock:  # (threads calling at once changed the dict under next(iter))
            while len(_recent) >= RECENT_PARTITIONS:  # the oldest goes
                _recent.pop(next(iter(_recent)))
            _recent[key] = part
    return part


def _graph_partition(values: Any, offsets: Any, where: str, num_items: Any) -> Partition:
    """The partition inside a ``torch.compile`` graph: offsets are trusted, as on a GPU.

    Their kind and shape are checked; their values are not, since that would read them on
    the host and break the graph (validate them eagerly, or build a ragged array, which
    does). Offsets given as a list become constants of the graph.
    """
    torch = _torch()
    if not _backend.is_tensor(offsets):
        offsets = torch.tensor(offsets, device=values.device)
    _check_trusted(offsets, where)
    offsets = offsets.to(device=values.device, dtype=torch.int64)
    return Partition(None, offsets=offsets, num_items=num_items)


def _check_trusted(offsets: Any, where: str) -> None:
    """The kind and shape of offsets whose values are trusted (on a GPU, in a graph).

    The same refusals as for host offsets: an integer dtype (``TypeError``; bools and
    complex numbers were taken, a bool mask dropping items), one non-empty dimension.
    """
    dtype = offsets.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == _torch().bool:
        raise TypeError(
            f"{where}: offsets must have an integer dtype; got {_checks.dtype_name(dtype)}"
        )
    if offsets.ndim != 1 or offsets.shape[0] == 0:
        raise ValueError(
            f"{where}: offsets must be a non-empty 1-D integer array; "
            f"got {_backend.describe(offsets)}"
        )


def _flat(values: Any) -> Any:
    """The ``(N, F)`` contiguous view of ``(N, *item_shape)`` values."""
    features = math.prod(values.shape[1:])
    return values.reshape(values.shape[0], features).contiguous()


def like_input(result: Any, values: Any) -> Any:
    """A result tensor handed back in the backend of the user's ``values``."""
    return result if _backend.is_tensor(values) else result.numpy()


def _as_floats(values: Any, source: Any) -> tuple[Any, Any]:
    """Integer and boolean values as floats to compute in, and the dtype of the result.

    Floating values are as they are. The result's float dtype follows the backend of
    ``source``, the user's values before ``as_tensor``: numpy's float64 (``np.mean`` of
    integers), or torch's default dtype (float32 unless set, as torch divides integers).
    Integers that dtype holds exactly (8 and 16 bits, uint8 images, into float32) are
    computed in it; wider ones in float64, then rounded once: int32 or int64 values past
    2**24 lost their spread in float32 (a variance 6x too large).
    """
    if values.dtype.is_floating_point:
        return values, values.dtype
    torch = _torch()
    target = torch.float64 if isinstance(source, np.ndarray) else torch.get_default_dtype()
    exact = target == torch.float64 or (values.element_size() <= 2 and target == torch.float32)
    return values.to(target if exact else torch.float64), target


def _graph_view(part: Partition, values: Any, num_items: Any = None) -> Partition:
    """The partition as a compiled graph must see it (see ``Partition.in_graph``).

    A method picks it, but after a graph break the method may have run eagerly and handed
    its host partition to a frame dynamo traces again: host reads there break every call.
    ``num_items``: N when ``values`` are not the items (a broadcast's per-segment rows).
    """
    if part.host is not None and _backend.compiling():
        return part.in_graph(values, num_items)
    return part


def _zero_rows(flat: Any, part: Partition) -> Any:
    """``(m, F)`` zeros for a buffer with no values, still linked to autograd."""
    out = flat.new_zeros((part.num_segments, flat.shape[1]))
    if _backend.needs_grad(flat):
        out = out + flat.sum() * 0
    return out


def reduce(
    op: str,
    values: Any,
    part: Partition,
    *,
    fill: Any,
    where: str,
    source: Any = None,
    **options: Any,
) -> Any:
    """Run reduction ``op`` on tensor ``values`` over ``part``; returns ``(m, *item_shape)``.

    This is the engine behind the public functions and the ragged methods; ``values`` must
    already be a tensor on a device the partition can reach. Integer and boolean values of
    a reduction that needs floats (mean, var, std, logsumexp) become floats by the rule of
    ``source``'s backend (the user's values; None: torch's).
    """
    spec = REDUCTIONS[op]
    part = _graph_view(part, values)
    target = None
    if spec.integers is None:
        values, target = _as_floats(values, source)
    dtype = values.dtype
    integer = not dtype.is_floating_point
    result_dtype = _torch().int64 if integer and spec.integers == "int64" else (target or dtype)
    learned = learned_fill(fill, result_dtype, source)
    if type(fill) is not int or fill != 0:  # the default fill holds in every dtype
        fill = _checks.check_fill(fill, result_dtype, where)
    if learned is not None:  # checked as a number; put in as the tensor, for its gradient
        fill = learned
    if "correction" in options:
        options["correction"] = _checks.check_correction(options["correction"], where)
    encode, decode = integer_codec(dtype, spec.integers, where)
    flat = encode(_flat(values))
    empty_value: float | None
    if flat.numel() == 0:
        out, empty_value = _zero_rows(flat, part), 0
        rows = part.empty(flat.device)
        if "correction" in options:
            rows = part.lengths(flat.device) <= options["correction"]
    else:
        (out, rows), empty_value = spec.kernel(flat, part, options), spec.empty_value
    if integer and spec.integers == "same":  # the fill as the kernels hold it
        if _backend.is_tensor(fill):  # (compiling: a 0-d tensor, encoded as the values are)
            fill = encode(fill.reshape(1).to(dtype)).reshape(())
        else:
            from ._order import order_value  # (imports torch)

            fill = order_value(fill, dtype)
    if rows is not None:
        out = _fill_rows(out, rows, fill, empty_value)
    out = decode(out).reshape(part.num_segments, *values.shape[1:])
    return out if target is None or out.dtype == target else out.to(target)


def _fill_rows(out: Any, rows: Any, fill: Any, empty_value: float | None) -> Any:
    """``out`` with ``fill`` in the ``rows`` the kernel leaves empty (``empty_value`` there).

    A 0-d tensor ``fill`` (one autograd records, which gets the gradient of those rows, or
    any while compiling, read inside the graph) goes in as the tensor.
    """
    mask = rows.unsqueeze(1)
    if _backend.is_tensor(fill):
        return out.masked_fill(mask, fill.to(out.device, out.dtype))
    fill_value = fill
    # Compiling, the fill may be symbolic (a module's float under dynamic=True, a numpy
    # scalar): comparing it would be a guard, or a break; one masked_fill more costs little.
    if not _backend.compiling():
        # a fill equal to what the kernel leaves costs nothing, unless it is -0.0 (== 0.0)
        negative_zero = fill_value == 0 and math.copysign(1.0, fill_value) < 0
        if empty_value is not None and fill_value == empty_value and not negative_zero:
            return out
        if not out.requires_grad:  # in place: a fresh result of ours autograd does not record
            return out.masked_fill_(mask, fill_value)
    return out.masked_fill(mask, fill_value)


def learned_fill(fill: Any, dtype: Any, source: Any) -> Any:
    """``fill`` when it is a tensor autograd records into a floating torch result, else None.

    Such a fill (a learned value for empty segments, or ``fill=h.min()``) is put in with
    ``masked_fill`` of the tensor, which sends it the gradient of the rows it fills. Results
    for numpy ``source`` values are numpy arrays, which hold no gradient.
    """
    if not (_backend.is_tensor(fill) and fill.requires_grad and dtype.is_floating_point):
        return None
    if isinstance(source, np.ndarray):
        return None
    return fill if _torch().is_grad_enabled() else None


def softmax(values: Any, part: Partition, *, log: bool, where: str, source: Any = None) -> Any:
    """Softmax (or log-softmax) over the items of each segment; returns ``values``' shape.

    Integer and boolean values become floats first, as in ``reduce``.
    """
    kernels = _kernels()
    part = _graph_view(part, values)
    values, target = _as_floats(values, source)
    flat = _flat(values)
    if flat.numel() == 0:
        return values.to(target, copy=True) if not _backend.needs_grad(values) else values * 1
    flat = flat.to(compute_dtype(values.dtype))
    # the raw maxima, infinities included: an infinite maximum gives NaN, as torch.softmax
    top = kernels.raw_extremum(flat.detach(), part, "amax")
    shifted = flat - kernels.raw_broadcast(top, part)
    if log:
        total = kernels.segment_sum(shifted.exp(), part)
        out = shifted - kernels.broadcast(total.log(), part)
    else:
        exp = shifted.exp()
        out = exp / kernels.broadcast(kernels.segment_sum(exp, part), part)
    return out.to(target).reshape(values.shape)


def broadcast(per_segment: Any, part: Partition, *, where: str) -> Any:
    """``(m, ...)`` rows repeated to ``(N, ...)`` over ``part``."""
    part = _graph_view(part, per_segment, part.num_items)
    if per_segment.ndim == 0 or per_segment.shape[0] != part.num_segments:
        raise ValueError(
            f"{where}: per_segment must have one row per segment, shape "
            f"({part.num_segments}, ...); got shape {tuple(per_segment.shape)}"
        )
    flat = _flat(per_segment)
    if flat.shape[1] == 0 or part.num_items == 0:
        out = flat.new_zeros((part.num_items, flat.shape[1]))
        if _backend.needs_grad(flat):
            out = out + flat.sum() * 0
    else:
        out = _kernels().broadcast(_backend.signed_view(flat), part)
        out = out if out.dtype == flat.dtype else out.view(flat.dtype)
    return out.reshape(part.num_items, *per_segment.shape[1:])


# ------------------------------------------------------------------- public functions


def _public(op: str, values: Any, offsets: Any, fill: Any, where: str, **options: Any) -> Any:
    tensor = as_tensor(values, where)
    part = partition_of(tensor, offsets, where)
    result = reduce(op, tensor, part, fill=fill, where=where, source=values, **options)
    return like_input(result, values)


@overload
def segment_sum(values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0) -> np.ndarray: ...
@overload
def segment_sum(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_sum(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """Sum of the items of each segment.

    Args:
        values: ``(N, *item_shape)`` numpy array or torch tensor.
        offsets: ``(m + 1,)`` integer offsets (list, numpy array or tensor).
        fill: value for empty segments.

    Returns:
        ``(m, *item_shape)`` sums, int64 for integer or boolean values.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_sum(np.arange(6).reshape(3, 2), [0, 1, 1, 3])
        array([[0, 1],
               [0, 0],
               [6, 8]])
    """
    return _public("sum", values, offsets, fill, "segment_sum")


@overload
def segment_mean(values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0) -> np.ndarray: ...
@overload
def segment_mean(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_mean(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """Mean of the items of each segment (floating values).

    Examples:
        >>> import torch
        >>> import raggedarray as ra
        >>> ra.segment_mean(torch.tensor([1.0, 2.0, 6.0]), [0, 2, 2, 3], fill=-1.0)
        tensor([ 1.5000, -1.0000,  6.0000])
    """
    return _public("mean", values, offsets, fill, "segment_mean")


@overload
def segment_max(values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0) -> np.ndarray: ...
@overload
def segment_max(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_max(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """Maximum of the items of each segment (ties share the gradient).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_max(np.array([3, 1, 4, 1, 5]), [0, 2, 5])
        array([3, 5])
    """
    return _public("max", values, offsets, fill, "segment_max")


@overload
def segment_min(values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0) -> np.ndarray: ...
@overload
def segment_min(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_min(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """Minimum of the items of each segment (ties share the gradient).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_min(np.array([3, 1, 4, 1, 5]), [0, 2, 5])
        array([1, 1])
    """
    return _public("min", values, offsets, fill, "segment_min")


@overload
def segment_prod(values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0) -> np.ndarray: ...
@overload
def segment_prod(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_prod(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """Product of the items of each segment (int64 for integer or boolean values).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_prod(np.array([2.0, 3.0, 4.0]), [0, 2, 2, 3], fill=1.0)
        array([6., 1., 4.])
    """
    return _public("prod", values, offsets, fill, "segment_prod")


@overload
def segment_logsumexp(
    values: np.ndarray, offsets: IntArrayLike, *, fill: Scalar = 0
) -> np.ndarray: ...
@overload
def segment_logsumexp(
    values: torch.Tensor, offsets: IntArrayLike, *, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_logsumexp(values: Array, offsets: IntArrayLike, *, fill: Scalar = 0) -> Array:
    """``log(sum(exp(items)))`` of each segment, computed stably (floating values).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_logsumexp(np.log(np.array([1.0, 3.0, 5.0])), [0, 2, 3]).round(4)
        array([1.3863, 1.6094])
    """
    return _public("logsumexp", values, offsets, fill, "segment_logsumexp")


@overload
def segment_var(
    values: np.ndarray, offsets: IntArrayLike, *, correction: int = 1, fill: Scalar = 0
) -> np.ndarray: ...
@overload
def segment_var(
    values: torch.Tensor, offsets: IntArrayLike, *, correction: int = 1, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_var(
    values: Array, offsets: IntArrayLike, *, correction: int = 1, fill: Scalar = 0
) -> Array:
    """Variance of the items of each segment, ``sum((x - mean)**2) / (n_i - correction)``.

    Segments with ``n_i <= correction`` give ``fill``. Computed in two passes (mean first),
    which stays accurate when the mean is large compared with the spread. On the CPU, float32
    values whose squared deviations overflow float32 (beyond ~1.8e19) are taken again in
    float64, as ``torch.var`` accumulates there: only results beyond float32's range are inf.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_var(np.array([1.0, 3.0, 7.0]), [0, 2, 3])
        array([2., 0.])
        >>> ra.segment_var(np.array([1.0, 3.0, 7.0]), [0, 2, 3], correction=0)
        array([1., 0.])
    """
    return _public("var", values, offsets, fill, "segment_var", correction=correction)


@overload
def segment_std(
    values: np.ndarray, offsets: IntArrayLike, *, correction: int = 1, fill: Scalar = 0
) -> np.ndarray: ...
@overload
def segment_std(
    values: torch.Tensor, offsets: IntArrayLike, *, correction: int = 1, fill: Scalar = 0
) -> torch.Tensor: ...
def segment_std(
    values: Array, offsets: IntArrayLike, *, correction: int = 1, fill: Scalar = 0
) -> Array:
    """Standard deviation of each segment's items (see [`segment_var`][raggedarray.segment_var]).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_std(np.array([1.0, 3.0, 7.0]), [0, 2, 3], fill=np.nan)
        array([1.41421356,        nan])
    """
    return _public("std", values, offsets, fill, "segment_std", correction=correction)


@overload
def segment_softmax(values: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def segment_softmax(values: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def segment_softmax(values: Array, offsets: IntArrayLike) -> Array:
    """Softmax over the items of each segment, per feature; returns ``values``' shape.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_softmax(np.log(np.array([1.0, 3.0, 2.0])), [0, 2, 3])
        array([0.25, 0.75, 1.  ])
    """
    return _public_items(values, offsets, "segment_softmax", log=False)


@overload
def segment_log_softmax(values: np.ndarray, offsets: IntArrayLike) -> np.ndarray: ...
@overload
def segment_log_softmax(values: torch.Tensor, offsets: IntArrayLike) -> torch.Tensor: ...
def segment_log_softmax(values: Array, offsets: IntArrayLike) -> Array:
    """Log-softmax over the items of each segment, per feature; returns ``values``' shape.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> np.exp(ra.segment_log_softmax(np.zeros(4), [0, 1, 4])).round(4)
        array([1.    , 0.3333, 0.3333, 0.3333])
    """
    return _public_items(values, offsets, "segment_log_softmax", log=True)


def _public_items(values: Any, offsets: Any, where: str, *, log: bool) -> Any:
    tensor = as_tensor(values, where)
    part = partition_of(tensor, offsets, where)
    return like_input(softmax(tensor, part, log=log, where=where, source=values), values)


@overload
def segment_broadcast(
    per_segment: np.ndarray, offsets: IntArrayLike, *, num_items: int | None = None
) -> np.ndarray: ...
@overload
def segment_broadcast(
    per_segment: torch.Tensor, offsets: IntArrayLike, *, num_items: int | None = None
) -> torch.Tensor: ...
def segment_broadcast(per_segment: Array, offsets: Any, *, num_items: Any = None) -> Array:
    """Repeat row ``i`` of ``per_segment`` for every item of segment ``i``.

    The inverse of a reduction: ``segment_broadcast(segment_mean(v, o), o)`` has ``v``'s
    shape, so ``v - segment_broadcast(segment_mean(v, o), o)`` centres every segment.

    Args:
        per_segment: ``(m, ...)`` numpy array or torch tensor.
        offsets: ``(m + 1,)`` integer offsets.
        num_items: ``N``, when known (``values.shape[0]`` of the items the rows go back
            to). Without it ``N`` is read from the offsets, which must then be on the host;
            with it, offsets on a GPU are used where they are (trusted, as by the
            reductions) and a compiled call keeps ``N`` in the graph instead of reading
            it (no graph break under ``torch.compile``).

    Returns:
        ``(N, ...)`` array of ``per_segment``'s backend.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_broadcast(np.array([10, 20, 30]), [0, 2, 2, 3])
        array([10, 10, 30])
        >>> ra.segment_broadcast(np.array([10, 20, 30]), [0, 2, 2, 3], num_items=3)
        array([10, 10, 30])
    """
    where = "segment_broadcast"
    tensor = as_tensor(per_segment, where, "per_segment")
    if num_items is not None:
        if not _backend.is_sym_int(num_items):
            num_items = _checks.read_int(num_items, "num_items", where)
        part = partition_of(tensor, offsets, where, num_items=num_items)
        return like_input(broadcast(tensor, part, where=where), per_segment)
    if _backend.is_tensor(offsets) and offsets.device.type != "cpu":
        raise ValueError(
            f"{where}: offsets must be on the host (the number of items is read from them), "
            f"or num_items given; got offsets on {offsets.device}"
        )
    host = _offsets.read_offsets(offsets, where)
    _offsets.validate(host, int(host[-1]), where)
    return like_input(broadcast(tensor, Partition(host), where=where), per_segment)
