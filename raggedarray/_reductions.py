"""The table of segment reductions: each one's kernel and its rules for dtypes and fills.

``reduce.reduce`` looks an operation up here, converts integer values with
``integer_codec``, runs the kernel on the ``(N, F)`` view and fills the rows it names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _backend, _offsets
from ._partition import BLOCK, Partition


def _torch() -> Any:
    return _backend.torch_module()


def _kernels() -> Any:
    from . import _kernels

    return _kernels


def compute_dtype(dtype: Any) -> Any:
    """The dtype kernels run in: half precisions accumulate in float32."""
    torch = _torch()
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# -------------------------------------------------------------------- the kernels


def _sum(flat: Any, part: Partition, options: dict[str, Any]) -> tuple[Any, Any]:
    out = _kernels().segment_sum(flat, part)
    if _blocks_overflowed(flat, part, out):
        out = _where_blocked(part, _wide_sum(flat, part, 1.0), out)
    return out, part.empty(flat.device)


def _mean(flat: Any, part: Partition, options: dict[str, Any]) -> tuple[Any, Any]:
    out = _kernels().segment_sum(flat, part)
    counts = part.counts(flat.dtype, flat.device)
    if _blocks_overflowed(flat, part, out):  # (a mean within range of a sum beyond it too)
        wide = _wide_sum(flat, part, counts)
        return _where_blocked(part, wide, out / counts), part.empty(flat.device)
    return (out / counts if out.requires_grad else out.div_(counts)), part.empty(flat.device)


# float64 sums taken again are scaled by this power of two (exact): blocks of 64 values
# below float64's largest then stay finite, and so does their total unless the truth is not.
_FLOAT64_SCALE = 2.0**-64


def _wide_sum(flat: Any, part: Partition, divisor: Any) -> Any:
    """Sums (divided by ``divisor``) taken again where float32 or float64 blocks overflowed.

    float32 values are summed in float64 and rounded once. float64 has no wider type: its
    values are scaled down by a power of two, summed and scaled back (values below ~1e-289
    beside ones near 1e308 are lost, as they would be in the unscaled sum).
    """
    if flat.dtype == _torch().float64:
        total = _kernels().segment_sum(flat * _FLOAT64_SCALE, part) / divisor
        return total / _FLOAT64_SCALE
    wide = _kernels().segment_sum(flat.double(), part)
    if not isinstance(divisor, float):
        wide = wide / divisor.double()
    return wide.to(flat.dtype)


def _where_blocked(part: Partition, wide: Any, out: Any) -> Any:
    """``wide`` where a segment summed in blocks (longer than ``BLOCK``) overflowed, else ``out``.

    A segment of at most ``BLOCK`` items is one block, as ``torch.sum`` would add it, and a
    finite result stays as it was: no segment's result depends on another segment's.
    """
    long = (part.lengths(out.device) > BLOCK).unsqueeze(1)
    return _torch().where(long & ~out.isfinite(), wide, out)


def _blocks_overflowed(flat: Any, part: Partition, sums: Any) -> bool:
    """Whether float32 or float64 sums of long segments must be taken again (``_wide_sum``).

    Blocks of 64 items are summed in the values' dtype, so in one segment a block of large
    positive values can give inf and one of large negative values -inf: their combination
    is NaN where every value is finite (torch.sum gives inf there). The sums (and means)
    are then the truth, rounded once: inf only beyond the dtype's range.
    """
    if not part.blocked() or not _on_host(sums, wide=True):
        return False
    try:  # the common answer first: _backend.transformed costs as much as the sum
        if _all_finite(sums):
            return False
    except RuntimeError:  # (vmap reads nothing back)
        return False
    if _backend.transformed(sums):  # (nor does torch.func otherwise: as on a GPU)
        return False
    # every inf or NaN of a segment without NaN: an inf value adds to a float64 total as
    # it should, and a running block sum that overflowed is taken again
    return bool((~_torch().isfinite(sums) & ~_largest(flat, part).isnan()).any())


def _extremum(op: str) -> Callable[..., tuple[Any, Any]]:
    def kernel(flat: Any, part: Partition, options: dict[str, Any]) -> tuple[Any, Any]:
        return _kernels().extremum(flat, part, op), part.empty(flat.device)

    return kernel


def _prod(flat: Any, part: Partition, options: dict[str, Any]) -> tuple[Any, Any]:
    return _kernels().prod(flat, part), part.empty(flat.device)


def _shift(flat: Any, part: Partition) -> Any:
    """Per-segment maxima with infinities replaced by 0: a safe shift for ``exp``."""
    torch = _torch()
    top = _kernels().raw_extremum(flat.detach(), part, "amax")
    return torch.where(torch.isinf(top), torch.zeros_like(top), top)


def _logsumexp(flat: Any, part: Partition, options: dict[str, Any]) -> tuple[Any, Any]:
    kernels = _kernels()
    top = _shift(flat, part)
    total = kernels.segment_sum((flat - kernels.raw_broadcast(top, part)).exp(), part)
    empty = part.empty(flat.device)
    if empty is not None:
        total = total.masked_fill(empty.unsqueeze(1), 1.0)
    return total.log() + top, empty


def _variance(root: bool) -> Callable[..., tuple[Any, Any]]:
    def kernel(flat: Any, part: Partition, options: dict[str, Any]) -> tuple[Any, Any]:
        correction = options["correction"]
        out, var = _spread(flat, part, correction, root=root)
        bad = _underflowed(flat, part, var)  # (m, F) entries to take again, or None
        if _overflowed(flat, part, var):
            bad = ~var.isfinite() if bad is None else bad | ~var.isfinite()
        if bad is not None:
            out = _spread_again(flat, part, correction, root, bad, out)
        return out, _divisor(part, correction, flat.dtype, flat.device)[0]

    return kernel


def _spread(
    flat: Any, part: Partition, correction: Any, *, root: bool, scaled_mean: bool = False
) -> tuple[Any, Any]:
    """``(var or std, var)``, both ``(m, F)`` in ``flat``'s dtype.

    Two passes: the mean first, then the squared deviations from it, which stays accurate
    when the mean is large compared with the spread. ``scaled_mean``: the float64 mean is
    ``_wide_sum``'s, from values scaled down by 2^64, whose blocks cannot overflow
    (``_spread_again``).
    """
    kernels = _kernels()
    counts = part.counts(flat.dtype, flat.device)
    if scaled_mean:
        mean = _wide_sum(flat, part, counts)
    else:
        mean = kernels.segment_sum(flat, part) / counts
    centred = flat - kernels.broadcast(mean, part)
    short, divisor = _divisor(part, correction, flat.dtype, flat.device)
    if _backend.needs_grad(centred):
        centred = _quiet_short_items(centred, short, part, correction)
    squares = kernels.segment_sum(centred * centred, part)
    var = squares / divisor
    if not root:
        return var, var
    # sqrt has an infinite slope at 0: where the variance is 0 (or the segment too
    # short) take the root of 1 and mask it, so the gradient there is 0 as for torch.std.
    flat_spread = (var <= 0) | short.unsqueeze(1)
    root_var = var.masked_fill(flat_spread, 1.0).sqrt()
    return root_var.masked_fill(flat_spread, 0.0), var


def _spread_again(
    flat: Any, part: Partition, correction: Any, root: bool, bad: Any, out: Any
) -> Any:
    """``out`` with its ``bad`` entries taken again: squares that overflowed or underflowed.

    Squares of float32 deviations beyond ~1.8e19 overflow, and below ~1e-19 underflow,
    where their float64 truth (torch.var's CPU accumulator) does not: float32 is taken
    again in float64 and rounded once. float64 has no wider type: where its blocks met
    as inf and -inf the mean is taken again from values scaled down by 2^64 (exact), so
    the variance is its truth, inf where that is beyond float64, not NaN.
    Only the bad entries change, so no segment's result depends on another's; under
    autograd the others are taken again with the bad entries' items set to 0, so that no
    inf or NaN of the first pass reaches the gradient.
    """
    torch = _torch()
    if flat.dtype == torch.float64:  # (the squares of a variance this large are inf anyway)
        wide = _spread(flat, part, correction, root=root, scaled_mean=True)[0]
    else:
        wide = _spread(flat.double(), part, correction, root=root)[0].to(flat.dtype)
    if _backend.needs_grad(out):
        quiet = flat.masked_fill(_kernels().raw_broadcast(bad, part), 0)
        out = _spread(quiet, part, correction, root=root)[0]
    return torch.where(bad, wide, out)


def _quiet_short_items(centred: Any, short: Any, part: Partition, correction: float) -> Any:
    """``centred`` with the items of segments of ``n_i <= correction`` items set to 0.

    Those segments are filled, so their gradient is 0; but a NaN or infinite item there
    would still send back ``2 * centred * 0 = NaN``. With host offsets only the few items of
    such segments are written (in place: the subtraction that made ``centred`` keeps no
    copy of it for its backward); without them (in a graph) every item is masked.
    """
    if part.host is None:
        return centred.masked_fill(_kernels().raw_broadcast(short.unsqueeze(1), part), 0)
    lengths = part.host_lengths
    if not lengths.size or lengths.min() > correction:
        return centred
    items = _offsets.gather(part.host, np.flatnonzero(lengths <= correction))[1]
    return centred.index_fill_(0, _backend.upload(items, centred), 0)


def _divisor(part: Partition, correction: Any, dtype: Any, device: Any) -> tuple[Any, Any]:
    """``(m,)`` mask of the segments with ``n_i <= correction`` and ``(m, 1)`` ``n_i - correction``.

    Kept by the partition per correction, dtype and device: five small operations fewer
    on every call, which pays for the overflow check.
    """

    def build() -> tuple[Any, Any]:
        lengths = part.lengths(device)
        short = lengths <= correction
        # n_i - correction may be fractional (correction=1.5): only the rows filled later
        # are set to 1, so that nothing divides by zero or a negative number
        # formed in float64: n_i - 3.999 in float32 keeps 4 digits fewer
        divisor = (lengths.to(_torch().float64) - correction).masked_fill(short, 1.0)
        return short, divisor.to(dtype).unsqueeze(1)

    return part._get(("var divisor", correction, dtype, str(device)), build)


def _overflowed(flat: Any, part: Partition, var: Any) -> bool:
    """Whether a float32 or float64 variance is inf or NaN where the values are all finite.

    Checked on the CPU, where reading the result costs one small sum (a GPU is not
    synchronised: there float32 accumulates as in ``torch.var`` on CUDA), and never inside
    a compiled graph or under ``torch.func``. A NaN or an infinity among a segment's values
    makes its variance NaN in any precision, while finite values that overflow make it inf,
    or NaN only where blocks of one segment summed to inf and -inf: only then are the
    values looked at. A variance beyond float32's range is inf in float64 too: taking it
    again costs time only.
    """
    if not _on_host(var, wide=True) or _backend.transformed(var) or _all_finite(var):
        return False
    if bool((var == math.inf).any()):
        return True
    if not part.blocked():
        return False
    return bool((var.isnan() & _torch().isfinite(_largest(flat, part))).any())


# A float32 variance below this may have lost digits to squares below float32's normal range;
# items of magnitude at least _NORMAL_ITEMS differ from a mean by 0 or by enough that their
# squares are normal (multiples of their unit in the last place, at least 2^-63).
_SMALL_VARIANCE = 2.0**-100
_NORMAL_ITEMS = 2.0**-40


def _underflowed(flat: Any, part: Partition, var: Any) -> Any:
    """The ``(m, F)`` float32 variances whose squares underflowed, or None if there are none.

    Deviations below ~1e-19 square to subnormals or 0 in float32, where torch.var's float64
    accumulator keeps them: a std of values near 1e-27 came out 0, one near 1e-22 28 % off.
    Those entries are taken again in float64 (``_spread_again``). Only entries whose
    variance is below ``_SMALL_VARIANCE`` are looked at, and of those only the ones whose
    items are all below ``_NORMAL_ITEMS`` and not all 0 (a dead ReLU feature is 0 exactly).
    """
    if not _on_host(var) or _backend.transformed(var):  # (float32 only: not wide)
        return None
    small = var < _SMALL_VARIANCE
    if not bool(small.any()):
        return None
    largest = _largest(flat, part)
    tiny = small & (largest < _NORMAL_ITEMS) & (largest > 0)
    return tiny if bool(tiny.any()) else None


def _on_host(result: Any, *, wide: bool = False) -> bool:
    """Whether a float32 (or, ``wide``, float64) result is checked: on the CPU, eagerly.

    (A GPU is not synchronised, and nothing is read back in a graph.)
    """
    torch = _torch()
    checked = result.dtype == torch.float32 or (wide and result.dtype == torch.float64)
    return checked and result.is_cpu and not _backend.compiling()


def _all_finite(result: Any) -> bool:
    """Whether every entry of ``result`` is finite: one small sum, read back."""
    return math.isfinite(result.detach().sum().item())


def _largest(flat: Any, part: Partition) -> Any:
    """Each segment's largest magnitude per feature; NaN where a value is NaN."""
    return _kernels().raw_extremum(flat.detach().abs(), part, "amax")


# ---------------------------------------------------------------- the reduction table


@dataclasses.dataclass(frozen=True)
class Reduction:
    """One segment reduction: its kernel and the rules around it.

    Attributes:
        kernel: ``(flat, partition, options) -> (out, rows_to_fill)`` on a floating (or, for
            ``integers`` reductions, an integer) ``(N, F)`` tensor; ``rows_to_fill`` is an
            ``(m,)`` bool mask or None.
        integers: how integer and boolean values reduce: ``"int64"`` (accumulate and return
            int64), ``"same"`` (keep the dtype), or None (floating values only).
        empty_value: what the kernel leaves in rows to fill, so that a ``fill`` equal to it
            costs nothing; None when those rows must always be written.
        pool: usable as a pooling op by ``ra.nn.SegmentPool`` and ``DeepSet``.
    """

    kernel: Callable[[Any, Partition, dict[str, Any]], tuple[Any, Any]]
    integers: str | None
    empty_value: float | None
    pool: bool


REDUCTIONS: dict[str, Reduction] = {
    "sum": Reduction(_sum, integers="int64", empty_value=0, pool=True),
    "mean": Reduction(_mean, integers=None, empty_value=0, pool=True),
    "max": Reduction(_extremum("amax"), integers="same", empty_value=0, pool=True),
    "min": Reduction(_extremum("amin"), integers="same", empty_value=0, pool=True),
    "prod": Reduction(_prod, integers="int64", empty_value=1, pool=False),
    "logsumexp": Reduction(_logsumexp, integers=None, empty_value=0, pool=True),
    "var": Reduction(_variance(root=False), integers=None, empty_value=None, pool=False),
    "std": Reduction(_variance(root=True), integers=None, empty_value=None, pool=False),
}

POOLS = tuple(name for name, spec in REDUCTIONS.items() if spec.pool)


def integer_codec(dtype: Any, rule: str | None, where: str) -> tuple[Any, Any]:
    """``(encode, decode)``: integer or boolean values to the dtype the kernels take, and back.

    Sums and products accumulate in int64. Extrema keep the dtype where torch has the
    kernels, else run on a signed type that holds every value (uint16 in int32, uint32 in
    int64, bool in uint8); uint64 maps to int64 by flipping its top bit, which keeps the
    order. Floating values pass through.
    """
    torch = _torch()
    if dtype == torch.float32 or dtype == torch.float64:
        return _same, _same
    if dtype.is_floating_point:
        return (lambda t: t.to(compute_dtype(dtype))), (lambda t: t.to(dtype))
    if rule == "int64":
        return (lambda t: _checked_int64(t, where)), (lambda t: t)
    from . import _order

    return _order.order_view, (lambda t: _order.from_order_view(t, dtype))


def _same(t: Any) -> Any:
    return t


def _checked_int64(t: Any, where: str) -> Any:
    """``t`` as int64, refusing uint64 values that int64 cannot hold (checks the values).

    Eagerly only: a compiled graph or a ``torch.func`` transform cannot branch on the
    values, so there uint64 values of 2**63 and more are taken as their int64 bits.
    """
    torch = _torch()
    if t.dtype == torch.uint64:
        signed = t.view(torch.int64)
        if _backend.compiling() or _backend.transformed(t):
            return signed
        if t.numel() and bool((signed < 0).any()):
            raise ValueError(
                f"{where}: uint64 values must be below 2**63 to reduce in int64; got larger "
                "values (convert to float64 first)"
            )
        return signed
    return t.to(torch.int64)
