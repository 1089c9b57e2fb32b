"""Order kernels on ``(N, F)`` torch tensors: segment argmax/argmin, any/all, median, cumsum, sort.

Every kernel takes items flattened to ``F`` features and a
[`Partition`][raggedarray._partition.Partition], works on all segments at once (no loop over
segments), and is differentiable where the operation is (through ``gather`` and ``cumsum``).

* ``argmax``/``argmin``: the segment extremum (a sparse CSR product on CPU, as for ``max``),
  the items equal to it, then the smallest local position among them (a second extremum).
* ``any``/``all``: extrema of the values (or of ``values != 0``); no sort.
* ``sort``, ``topk`` and ``median``: **one** stable sort. Where a value fits 32 bits (float32,
  the half precisions, integers up to 32 bits) the value's order-preserving bits and the
  segment id are packed into one int64 key, ``segment << 32 | bits``, so one sort orders every
  segment at once. Wider values take a stable sort by value followed by a stable sort by
  segment id. Sorts run along a contiguous dimension (``(F, N)``), which measured 2x faster
  than ``torch.sort(values, dim=0)``.
* ``cumsum``: see [`cumsum`][raggedarray._order.cumsum].

Torch is imported by this module; import it lazily.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _backend
from ._kernels import raw_broadcast, raw_extremum, raw_sum
from ._partition import Partition

# Values whose order fits in 32 bits are sorted with their segment in one int64 key.
_PACKED = (
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.uint8,
)
_FLOAT32_EXACT = 2**24  # positions up to here are exact in float32


def local_positions(part: Partition, device: Any) -> Any:
    """``(N,)`` int64 position of every item within its segment (cached on the partition)."""

    def build() -> Any:
        ids = part.ids(device)
        starts = part.offsets(device)[:-1]
        return torch.arange(part.num_items, device=device) - starts.index_select(0, ids)

    return part._get(("local_positions", str(device)), build)


def order_view(t: Any) -> Any:
    """``t`` in a dtype torch compares and sorts, with the same order.

    bool becomes uint8, uint16 int32, uint32 int64; uint64 is viewed as int64 with its top
    bit flipped, which keeps the order. Other dtypes pass through.
    """
    if t.dtype == torch.uint64:
        return t.view(torch.int64) ^ -(2**63)
    wider = {torch.bool: torch.uint8, torch.uint16: torch.int32, torch.uint32: torch.int64}
    return t.to(wider[t.dtype]) if t.dtype in wider else t


def from_order_view(t: Any, dtype: Any) -> Any:
    """The inverse of ``order_view``: ``t`` back in ``dtype``."""
    if dtype == torch.uint64:
        return (t ^ -(2**63)).view(torch.uint64)
    return t.to(dtype)


# ------------------------------------------------------------------- argmax / argmin


def arg_extremum(flat: Any, part: Partition, op: str) -> Any:
    """``(m, F)`` int64 local position of the first ``"amax"``/``"amin"`` of each segment.

    ``flat`` is in a dtype ``raw_extremum`` takes (``order_view`` of integers, float32 or
    float64). A NaN is the extremum where there is one (as ``torch.argmax``/``argmin``).
    Empty segments give 0.
    """
    flat = flat.detach()  # positions have no gradient
    top = raw_broadcast(raw_extremum(flat, part, op), part)
    exact32 = part.host is not None and part.max_length < _FLOAT32_EXACT
    in_place = flat.dtype == torch.float64 or (flat.dtype == torch.float32 and exact32)
    if in_place and flat.device.type == "cpu" and not bool(top.isnan().any()):
        # CPU, no NaN extremum: three ops written in place into the broadcast buffer (each
        # fresh (N, F) buffer or op costs about one floor here): 1/0 at the hits, then
        # (position + 1) / hit is position + 1 at the hits and inf elsewhere.
        torch.eq(flat, top, out=top)
        torch.div(_positions_plus_one(part, top.dtype).expand_as(top), top, out=top)
        return raw_extremum(top, part, "amin").sub_(1).clamp_(min=0).to(torch.int64)
    hit = flat == top
    if flat.dtype.is_floating_point:
        hit |= flat.isnan() & top.isnan()
    del top
    position = local_positions(part, flat.device).to(torch.float32 if exact32 else torch.float64)
    candidates = torch.where(hit, position.unsqueeze(1), torch.inf)
    return raw_extremum(candidates, part, "amin").to(torch.int64)


def _positions_plus_one(part: Partition, dtype: Any) -> Any:
    """``(N, 1)`` local positions + 1 in ``dtype`` on the CPU (cached on the partition)."""

    def build() -> Any:
        return (local_positions(part, "cpu") + 1).to(dtype).unsqueeze(1)

    return part._get(("positions_plus_one", dtype), build)


# -------------------------------------------------------------------------- any / all


def any_all(flat: Any, part: Partition, op: str) -> Any:
    """``(m, F)`` bool: whether any (``op="any"``) or all items are nonzero (NaN is nonzero)."""
    if flat.dtype.is_floating_point and op == "any":  # float32/float64: no (N, F) temporary
        # some item nonzero <=> max != 0 or min != 0 (a NaN makes both NaN, so != 0)
        return (raw_extremum(flat, part, "amax") != 0) | (raw_extremum(flat, part, "amin") != 0)
    if flat.dtype.is_floating_point:  # all <=> no zero item (NaN is nonzero)
        zeros = _backend.new_buffer(flat.shape, flat.dtype, flat.device)
        zeros = torch.eq(flat, 0, out=zeros) if zeros is not None else (flat == 0).to(flat.dtype)
        out = raw_extremum(zeros, part, "amax") == 0
    else:
        nonzero = (flat != 0).to(torch.uint8)
        out = raw_extremum(nonzero, part, "amax" if op == "any" else "amin") != 0
    empty = part.empty(flat.device)
    if op == "all" and empty is not None:
        out |= empty.unsqueeze(1)
    return out


# ----------------------------------------------------------------------------- sorting


def _ordered_bits(work: Any) -> Any:
    """int64 in ``[0, 2**32)`` ordered as the values (NaNs equal and largest, -0.0 == 0.0)."""
    if work.dtype.is_floating_point:
        f = work.float() + 0.0  # halves are exact in float32; -0.0 + 0.0 is +0.0
        f = torch.where(f.isnan(), torch.nan, f)  # one NaN, positive: above +inf
        bits = f.view(torch.int32)
        return (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64) + 2**31
    return work.to(torch.int64) + 2**31


def sort_permutation(flat: Any, part: Partition, *, descending: bool) -> Any:
    """``(N, F)`` int64 item indices sorting every segment, per feature, stably.

    Row ``r`` of the result belongs to the segment of item ``r``: the segments stay where
    they are and each is sorted in place. NaNs are the largest values (as ``torch.sort``).
    """
    device = flat.device
    ids = part.ids(device)
    work = order_view(flat.detach())
    if work.dtype in _PACKED and part.num_segments < 2**31:
        bits = _ordered_bits(work)
        if descending:
            bits = (2**32 - 1) - bits
        key = bits.add_(ids.unsqueeze(1) << 32).t().contiguous()
        return torch.sort(key, dim=1, stable=True).indices.t()
    by_value = torch.sort(work.t().contiguous(), dim=1, stable=True, descending=descending)
    perm = by_value.indices
    by_segment = torch.sort(ids[perm], dim=1, stable=True).indices
    return perm.gather(1, by_segment).t()


def take(flat: Any, index: Any) -> Any:
    """``flat.gather(0, index)`` for every dtype (unsigned ones moved as their signed twins)."""
    signed = _backend.signed_view(flat)
    out = signed.gather(0, index)
    return out if signed is flat else out.view(flat.dtype)


def to_local(perm: Any, part: Partition) -> Any:
    """Global item indices whose row ``r`` lies in segment ``ids[r]``, made local."""
    device = perm.device
    starts = part.offsets(device)[:-1].index_select(0, part.ids(device))
    return perm - starts.unsqueeze(1)


def median_index(flat: Any, part: Partition) -> Any:
    """``(m, F)`` global item index of each segment's lower median (0 for empty segments).

    As ``torch.median``: a segment and feature holding a NaN gives its first NaN.
    """
    device = flat.device
    perm = sort_permutation(flat, part, descending=False)
    lengths = part.lengths(device).unsqueeze(1)
    position = ((lengths - 1).clamp(min=0) // 2).expand(-1, flat.shape[1])
    if flat.dtype.is_floating_point and (device.type != "cpu" or bool(flat.isnan().any())):
        nans = raw_sum(flat.detach().isnan().to(flat.dtype), part).to(torch.int64)
        position = torch.where(nans > 0, lengths - nans, position)  # NaNs sort last, stably
    rows = (part.offsets(device)[:-1].unsqueeze(1) + position).clamp(max=part.num_items - 1)
    return perm.gather(0, rows)


# ------------------------------------------------------------------------------ cumsum


_SCAN_BLOCK = 64


def _running_sum(flat: Any, dtype: Any) -> Any:
    """``torch.cumsum(flat, 0, dtype=dtype)``, scanned in blocks of ``_SCAN_BLOCK`` rows.

    ``torch.cumsum`` along dim 0 of an ``(N, F)`` buffer walks each column over the whole
    buffer; scanning ``(N / B, B, F)`` blocks along their middle dim and adding each block's
    carry measured ~3x faster at N = 300 000, F = 64.
    """
    blocks = flat.shape[0] // _SCAN_BLOCK
    if blocks < 2:
        return torch.cumsum(flat, 0, dtype=dtype)
    split = blocks * _SCAN_BLOCK
    head = torch.cumsum(flat[:split].reshape(blocks, _SCAN_BLOCK, -1), 1, dtype=dtype)
    carry = torch.cumsum(head[:, -1], 0)  # running sum at the end of each block
    head[1:] += carry[:-1].unsqueeze(1)
    head = head.reshape(split, -1)
    if split == flat.shape[0]:
        return head
    return torch.cat([head, torch.cumsum(flat[split:], 0, dtype=dtype) + carry[-1]])


def _restarted(flat: Any, part: Partition, dtype: Any) -> Any:
    """A global running sum in ``dtype`` minus its value just before each segment."""
    device = flat.device
    total = _running_sum(flat, dtype)
    starts = part.offsets(device)[:-1]
    before = total.index_select(0, (starts - 1).clamp(min=0))
    before = before.masked_fill((starts == 0).unsqueeze(1), 0)
    return total - before.index_select(0, part.ids(device))


def cumsum(flat: Any, part: Partition) -> Any:
    """``(N, F)`` running sums restarting at each segment (differentiable).

    Integers and booleans accumulate in int64, exactly (a global running sum minus the sum
    before each segment: wrap-around cancels). Floating values accumulate in float64 the
    same way: an item's error is then ~1e-16 times the running sum of the whole buffer up to
    it, far below float32 (and half) resolution, where a float32 ``torch.cumsum`` of one
    segment of 10^6 items drifts by ~1e-3 relative. float64 values get the same global
    float64 running sum, so their error grows with the buffer, not only with the segment.

    Infinities and NaNs must not leak into later segments through the global sum: where
    there are any, the finite values are summed as above and each item's result is then
    set from per-segment running counts of NaN, +inf and -inf (exact integer sums): NaN
    after a NaN or after both infinities, else the infinity seen. Those items receive no
    gradient through the non-finite values.
    """
    if not flat.dtype.is_floating_point:
        return _restarted(flat, part, torch.int64)
    finite = torch.isfinite(flat.detach())
    if flat.device.type == "cpu" and bool(finite.all()):
        return _restarted(flat, part, torch.float64).to(flat.dtype)
    out = _restarted(torch.where(finite, flat, 0.0), part, torch.float64)
    detached = flat.detach()
    seen = [
        _restarted(hit, part, torch.int64) > 0
        for hit in (detached.isnan(), detached == torch.inf, detached == -torch.inf)
    ]
    nan, plus, minus = seen
    out = torch.where(plus, torch.inf, out)
    out = torch.where(minus, -torch.inf, out)
    out = torch.where(nan | (plus & minus), torch.nan, out)
    return out.to(flat.dtype)
