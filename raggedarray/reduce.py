"""Segment reductions on plain arrays: ``segment_sum(values, offsets)`` and friends.

Segment ``i`` is ``values[offsets[i]:offsets[i + 1]]``; every reduction returns one row per
segment, ``(m, *item_shape)``, in the backend (numpy or torch) and on the device of
``values``. The ragged classes' methods (``x.sum()``, ``x.softmax()``, ...) are thin wrappers
over these functions.

Rules shared by every function:

* Empty segments (and, for ``var``/``std``, segments with ``n_i <= correction``) give
  ``fill`` (default ``0``), never NaN, and receive zero gradient.
* float16 and bfloat16 values are accumulated in float32 and returned in their own dtype.
  Integer and boolean sums and products return int64; ``max``/``min`` keep the dtype.
  ``mean``, ``var``, ``std``, ``logsumexp``, ``softmax`` and ``log_softmax`` need floating
  values.
* numpy values run through the same torch kernels (sharing memory, no copy) and come back
  as numpy arrays. torch values are differentiable: every function passes
  ``torch.autograd.gradcheck``.
* ``max``/``min`` send the gradient to the extremum of each segment and feature; items tied
  for the extremum share it equally (as ``torch.amax`` does).
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
from typing import Any

import numpy as np

from . import _backend, _construct, _offsets


def _torch() -> Any:
    return _backend.torch_module()


def _segments() -> Any:
    from . import _segments

    return _segments


# --------------------------------------------------------------------------- inputs


def as_tensor(values: Any, where: str) -> Any:
    """``values`` as a tensor (numpy shares its memory), with kind and shape checked."""
    backend = _backend.backend_of(values)
    if backend is None:
        seen = _backend.describe(values)
        raise TypeError(f"{where}: values must be a numpy array or a torch tensor; got {seen}")
    if values.ndim == 0:
        raise ValueError(f"{where}: values must have at least 1 dimension; got a 0-d array")
    if backend == _backend.NUMPY:
        if values.dtype.kind not in "biuf":
            raise TypeError(
                f"{where}: values must be boolean, integer or float; got {values.dtype}"
            )
        return _backend.tensor_from_numpy(np.ascontiguousarray(values))
    if values.dtype.is_complex:
        raise TypeError(f"{where}: values must be boolean, integer or float; got {values.dtype}")
    return values


def layout_of(values: Any, offsets: Any, where: str) -> Any:
    """A segment layout for tensor ``values`` from user offsets (validated unless on a GPU)."""
    torch = _torch()
    if _backend.is_tensor(offsets) and offsets.device.type != "cpu":
        if offsets.device != values.device:
            raise ValueError(
                f"{where}: offsets must be on the device of values ({values.device}); "
                f"got offsets on {offsets.device}"
            )
        if offsets.ndim != 1 or offsets.shape[0] == 0 or offsets.dtype.is_floating_point:
            raise ValueError(
                f"{where}: offsets must be a non-empty 1-D integer array; "
                f"got {_backend.describe(offsets)}"
            )
        return _segments().Layout(offsets.to(torch.int64), None, values.shape[0])
    host = _offsets.read_offsets(offsets, where)
    _offsets.validate(host, values.shape[0], where)
    return _segments().Layout(_backend.upload(host, values), host, values.shape[0])


def _flat(values: Any) -> Any:
    """The ``(N, F)`` contiguous view of ``(N, *item_shape)`` values."""
    features = math.prod(values.shape[1:])
    return values.reshape(values.shape[0], features).contiguous()


def like_input(result: Any, values: Any) -> Any:
    """A result tensor handed back in the backend of the user's ``values``."""
    return result if _backend.is_tensor(values) else result.numpy()


def _compute_dtype(dtype: Any) -> Any:
    """The dtype kernels run in: half precisions accumulate in float32."""
    torch = _torch()
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _need_float(dtype: Any, where: str) -> None:
    if not dtype.is_floating_point:
        raise TypeError(
            f"{where}: values must have a floating dtype; got {dtype} "
            "(convert first, for example with x.to(dtype=torch.float32))"
        )


# ----------------------------------------------------------------------- reductions


# Reductions whose kernels leave the rows of empty segments at 0: with the default fill
# there is nothing left to do for them.
_ZERO_WHEN_EMPTY = frozenset({"sum", "mean", "max", "min"})


def reduce(op: str, values: Any, layout: Any, *, fill: Any, where: str, **options: Any) -> Any:
    """Run reduction ``op`` on tensor ``values`` over ``layout``; returns ``(m, *item_shape)``.

    This is the engine behind the public functions and the ragged methods; ``values`` must
    already be a tensor on the layout's device.
    """
    seg = _segments()
    dtype = values.dtype
    flat = _flat(values)
    mask = layout.empty
    if not dtype.is_floating_point:
        if op in ("sum", "prod"):
            flat = flat.to(_torch().int64)
            out = layout.sum(flat) if op == "sum" else layout.prod(flat)
        elif op in ("max", "min"):
            out = layout.extremum(flat, "a" + op)
        else:
            _need_float(dtype, where)
        _construct.check_fill(fill, out.dtype, where)
        return _fill_rows(op, out, mask, fill).reshape(-1, *values.shape[1:])
    _construct.check_fill(fill, dtype, where)
    flat = flat.to(_compute_dtype(dtype))
    if op == "sum":
        out = seg.segment_sum(flat, layout)
    elif op == "mean":
        out = seg.segment_sum(flat, layout)
        counts = layout.counts(flat.dtype)
        out = out / counts if out.requires_grad else out.div_(counts)
    elif op in ("max", "min"):
        out = seg.extremum(flat, layout, "a" + op)
    elif op == "prod":
        out = layout.prod(flat)
    elif op == "logsumexp":
        out = _logsumexp(flat, layout)
    else:  # var, std
        out, mask = _variance(flat, layout, options["correction"], op == "std")
    return _fill_rows(op, out, mask, fill).to(dtype).reshape(-1, *values.shape[1:])


def _fill_rows(op: str, out: Any, mask: Any | None, fill: Any) -> Any:
    """``out`` with the rows where ``mask`` holds set to ``fill``, with zero gradient there.

    In place when autograd does not record ``out`` (it is a fresh result of ours).
    """
    if mask is None or (fill == 0 and op in _ZERO_WHEN_EMPTY):
        return out
    if out.requires_grad:
        return out.masked_fill(mask.unsqueeze(1), fill)
    return out.masked_fill_(mask.unsqueeze(1), fill)


def _shift(flat: Any, layout: Any) -> Any:
    """Per-segment maxima with infinities replaced by 0: a safe shift for ``exp``."""
    torch = _torch()
    top = layout.extremum(flat.detach(), "amax")
    return torch.where(torch.isinf(top), torch.zeros_like(top), top)


def _logsumexp(flat: Any, layout: Any) -> Any:
    seg = _segments()
    top = _shift(flat, layout)
    total = seg.segment_sum((flat - layout.broadcast(top)).exp(), layout)
    if layout.empty is not None:
        total = total.masked_fill(layout.empty.unsqueeze(1), 1.0)
    return total.log() + top


def _variance(flat: Any, layout: Any, correction: Any, root: bool) -> tuple[Any, Any]:
    seg = _segments()
    counts = layout.counts(flat.dtype)
    mean = seg.segment_sum(flat, layout) / counts
    centred = flat - seg.broadcast(mean, layout)
    squares = seg.segment_sum(centred * centred, layout)
    short = layout.lengths <= correction
    divisor = (layout.lengths - correction).clamp(min=1).to(flat.dtype).unsqueeze(1)
    var = squares / divisor
    if root:
        # sqrt has an infinite slope at 0: where the variance is 0 (or the segment too short)
        # take the root of 1 and mask it, so the gradient there is 0 as for torch.std.
        flat_spread = (var <= 0) | short.unsqueeze(1)
        root_var = var.masked_fill(flat_spread, 1.0).sqrt()
        return root_var.masked_fill(flat_spread, 0.0), short
    return var, short


def softmax(values: Any, layout: Any, *, log: bool, where: str) -> Any:
    """Softmax (or log-softmax) over the items of each segment; returns ``values``' shape."""
    seg = _segments()
    _need_float(values.dtype, where)
    flat = _flat(values)
    flat = flat.to(_compute_dtype(values.dtype))
    shifted = flat - layout.broadcast(_shift(flat, layout))
    if log:
        total = seg.segment_sum(shifted.exp(), layout)
        out = shifted - seg.broadcast(total.log(), layout)
    else:
        exp = shifted.exp()
        out = exp / seg.broadcast(seg.segment_sum(exp, layout), layout)
    return out.to(values.dtype).reshape(values.shape)


def broadcast(per_segment: Any, layout: Any, *, where: str) -> Any:
    """``(m, ...)`` rows repeated to ``(N, ...)`` over ``layout``."""
    if per_segment.ndim == 0 or per_segment.shape[0] != layout.num_segments:
        raise ValueError(
            f"{where}: per_segment must have one row per segment, shape "
            f"({layout.num_segments}, ...); got shape {tuple(per_segment.shape)}"
        )
    out = _segments().broadcast(_flat(per_segment), layout)
    return out.reshape(layout.num_items, *per_segment.shape[1:])


# ------------------------------------------------------------------- public functions


def _public(op: str, values: Any, offsets: Any, fill: Any, where: str, **options: Any) -> Any:
    tensor = as_tensor(values, where)
    layout = layout_of(tensor, offsets, where)
    result = reduce(op, tensor, layout, fill=fill, where=where, **options)
    return like_input(result, values)


def segment_sum(values: Any, offsets: Any, *, fill: Any = 0) -> Any:
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


def segment_mean(values: Any, offsets: Any, *, fill: Any = 0) -> Any:
    """Mean of the items of each segment (floating values).

    Examples:
        >>> import torch
        >>> import raggedarray as ra
        >>> ra.segment_mean(torch.tensor([1.0, 2.0, 6.0]), [0, 2, 2, 3], fill=-1.0)
        tensor([ 1.5000, -1.0000,  6.0000])
    """
    return _public("mean", values, offsets, fill, "segment_mean")


def segment_max(values: Any, offsets: Any, *, fill: Any = 0) -> Any:
    """Maximum of the items of each segment (ties share the gradient).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_max(np.array([3, 1, 4, 1, 5]), [0, 2, 5])
        array([3, 5])
    """
    return _public("max", values, offsets, fill, "segment_max")


def segment_min(values: Any, offsets: Any, *, fill: Any = 0) -> Any:
    """Minimum of the items of each segment (ties share the gradient).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_min(np.array([3, 1, 4, 1, 5]), [0, 2, 5])
        array([1, 1])
    """
    return _public("min", values, offsets, fill, "segment_min")


def segment_prod(values: Any, offsets: Any, *, fill: Any = 0) -> Any:
    """Product of the items of each segment (int64 for integer or boolean values).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_prod(np.array([2.0, 3.0, 4.0]), [0, 2, 2, 3], fill=1.0)
        array([6., 1., 4.])
    """
    return _public("prod", values, offsets, fill, "segment_prod")


def segment_logsumexp(values: Any, offsets: Any, *, fill: Any = 0) -> Any:
    """``log(sum(exp(items)))`` of each segment, computed stably (floating values).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_logsumexp(np.log(np.array([1.0, 3.0, 5.0])), [0, 2, 3]).round(4)
        array([1.3863, 1.6094])
    """
    return _public("logsumexp", values, offsets, fill, "segment_logsumexp")


def segment_var(values: Any, offsets: Any, *, correction: int = 1, fill: Any = 0) -> Any:
    """Variance of the items of each segment, ``sum((x - mean)**2) / (n_i - correction)``.

    Segments with ``n_i <= correction`` give ``fill``. Computed in two passes (mean first),
    which stays accurate when the mean is large compared with the spread.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_var(np.array([1.0, 3.0, 7.0]), [0, 2, 3])
        array([2., 0.])
        >>> ra.segment_var(np.array([1.0, 3.0, 7.0]), [0, 2, 3], correction=0)
        array([1., 0.])
    """
    return _public("var", values, offsets, fill, "segment_var", correction=correction)


def segment_std(values: Any, offsets: Any, *, correction: int = 1, fill: Any = 0) -> Any:
    """Standard deviation of each segment's items (see [`segment_var`][raggedarray.segment_var]).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_std(np.array([1.0, 3.0, 7.0]), [0, 2, 3], fill=np.nan)
        array([1.41421356,        nan])
    """
    return _public("std", values, offsets, fill, "segment_std", correction=correction)


def segment_softmax(values: Any, offsets: Any) -> Any:
    """Softmax over the items of each segment, per feature; returns ``values``' shape.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_softmax(np.log(np.array([1.0, 3.0, 2.0])), [0, 2, 3])
        array([0.25, 0.75, 1.  ])
    """
    return _public_items(values, offsets, "segment_softmax", log=False)


def segment_log_softmax(values: Any, offsets: Any) -> Any:
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
    layout = layout_of(tensor, offsets, where)
    return like_input(softmax(tensor, layout, log=log, where=where), values)


def segment_broadcast(per_segment: Any, offsets: Any) -> Any:
    """Repeat row ``i`` of ``per_segment`` for every item of segment ``i``.

    The inverse of a reduction: ``segment_broadcast(segment_mean(v, o), o)`` has ``v``'s
    shape, so ``v - segment_broadcast(segment_mean(v, o), o)`` centres every segment.

    Args:
        per_segment: ``(m, ...)`` numpy array or torch tensor.
        offsets: ``(m + 1,)`` integer offsets.

    Returns:
        ``(N, ...)`` array of ``per_segment``'s backend.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> ra.segment_broadcast(np.array([10, 20, 30]), [0, 2, 2, 3])
        array([10, 10, 30])
    """
    where = "segment_broadcast"
    tensor = as_tensor(per_segment, where)
    if _backend.is_tensor(offsets) and offsets.device.type != "cpu":
        raise ValueError(
            f"{where}: offsets must be on the host (the number of items is read from them); "
            f"got offsets on {offsets.device}"
        )
    host = _offsets.read_offsets(offsets, where)
    _offsets.validate(host, int(host[-1]), where)
    layout = _segments().Layout(_backend.upload(host, tensor), host, int(host[-1]))
    return like_input(broadcast(tensor, layout, where=where), per_segment)
