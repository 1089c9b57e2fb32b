"""Order kernels on ``(N, F)`` torch tensors: segment argmax/argmin, any/all, median, cumsum, sort.

Every kernel takes items flattened to ``F`` features and a
[`Partition`][raggedarray._partition.Partition], works on all segments at once (no loop over
segments), and is differentiable where the operation is (through ``gather``, ``bmm`` and
``cumsum``).

* ``argmax``/``argmin``: the segment extremum (a sparse CSR product on CPU, as for ``max``),
  the items equal to it, then the smallest local position among them; on CPU the mask of
  those items is written and reduced one cache-sized range of rows at a time
  ([`_chunked`][raggedarray._chunked]).
* ``any``/``all``: extrema of the values for float ``any``; else a mask of the zeros or
  nonzeros, on CPU over the same ranges; no sort.
* ``sort`` (and ``topk`` for k > 8, ``median`` of lengths few segments share): **one**
  stable sort. Where a value fits 32 bits (float32, the half precisions, integers up to 32
  bits) the value's order-preserving bits and the segment id are packed into one int64 key,
  ``segment << 32 | bits``, so one sort orders every segment at once. Wider values take a
  stable sort by value followed by a stable sort by segment id. Sorts run along a
  contiguous dimension (``(F, N)``), which measured 2x faster than
  ``torch.sort(values, dim=0)``.
* ``topk`` for small k: k rounds of the segment argmax
  ([`topk_index`][raggedarray._order.topk_index]); ``median`` of a length many segments
  share: ``torch.median`` of one dense block
  ([`median_index`][raggedarray._order.median_index]).
* ``cumsum``: see [`cumsum`][raggedarray._order.cumsum].

On a CPU with numba installed, ``cumsum`` and ``argmax``/``argmin`` run the one-pass compiled
kernels of [`_jit`][raggedarray._jit] instead (same results).

Torch is imported by this module; import it lazily.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from . import _backend, _chunked, _jit
from ._kernels import (
    deterministic_off_cpu,
    no_autocast,
    raw_broadcast,
    raw_extremum,
    raw_sum,
    traced,
)
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


def order_value(number: Any, dtype: Any) -> int:
    """The int ``number`` of ``dtype`` as ``order_view`` holds it: uint64's shifted by 2**63.

    Python arithmetic (not a tensor and ``.item()``), so a compiled graph takes it as is.
    """
    return int(number) - 2**63 if dtype == torch.uint64 else int(number)


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
    if _jit.finds(flat, part):
        return _jit.arg_extremum(flat, part, op)
    per_segment = raw_extremum(flat, part, op)
    exact32 = part.host is not None and part.max_length < _FLOAT32_EXACT
    in_place = flat.dtype == torch.float64 or (flat.dtype == torch.float32 and exact32)
    cpu = flat.device.type == "cpu" and part.host is not None and not _backend.transformed(flat)
    if in_place and cpu and not bool(per_segment.isnan().any()):
        # CPU, no NaN extremum: the items equal to their segment's extremum, one cache-sized
        # range at a time, and the position of the first of them
        def hits(chunk: Any, out: Any) -> None:
            torch.index_select(per_segment[chunk.segments], 0, chunk.ids, out=out)
            torch.eq(flat[chunk.rows], out, out=out)

        first, longest = _chunked.first_hits(part, flat.shape[1], flat.dtype, hits)
        return longest.sub(first).masked_fill_(first == 0, 0).to(torch.int64)
    top = raw_broadcast(per_segment, part)
    hit = flat == top
    if flat.dtype.is_floating_point:
        hit |= flat.isnan() & top.isnan()
    del top
    position = local_positions(part, flat.device).to(torch.float32 if exact32 else torch.float64)
    candidates = torch.where(hit, position.unsqueeze(1), torch.inf)
    return raw_extremum(candidates, part, "amin").to(torch.int64)


# -------------------------------------------------------------------------- any / all


def any_all(flat: Any, part: Partition, op: str) -> Any:
    """``(m, F)`` bool: whether any (``op="any"``) or all items are nonzero (NaN is nonzero)."""
    if flat.dtype.is_floating_point and op == "any":  # float32/float64: no (N, F) temporary
        # some item nonzero <=> max != 0 or min != 0 (a NaN makes both NaN, so != 0)
        return (raw_extremum(flat, part, "amax") != 0) | (raw_extremum(flat, part, "amin") != 0)
    if flat.device.type == "cpu" and part.host is not None and not _backend.transformed(flat):
        # masks one cache-sized range at a time: the zeros of floats (all <=> no zero; NaN
        # is nonzero), or the nonzeros of integers and booleans as float32 copied from
        # bytes (comparing straight into a float32 buffer takes a slow casting path, 25x
        # the floor, and a uint8 mask went to the scatter engine, also 25x)
        floating = flat.dtype.is_floating_point
        dtype = flat.dtype if floating else torch.float32

        def mask(chunk: Any, out: Any) -> None:
            rows = flat[chunk.rows]
            if floating:
                torch.eq(rows, 0, out=out)
            else:
                out.copy_((rows if rows.dtype == torch.bool else rows != 0).view(torch.uint8))

        reduce_op = "amin" if op == "all" and not floating else "amax"
        found, _ = _chunked.first_hits(part, flat.shape[1], dtype, mask, op=reduce_op)
        out = found == 0 if floating else found != 0
    elif flat.dtype.is_floating_point:
        out = raw_extremum((flat == 0).to(flat.dtype), part, "amax") == 0
    else:
        nonzero = (flat if flat.dtype == torch.bool else flat != 0).to(torch.uint8)
        out = raw_extremum(nonzero, part, "amax" if op == "any" else "amin") != 0
    empty = part.empty(flat.device)
    if op == "all" and empty is not None:
        out |= empty.unsqueeze(1)
    return out


# ----------------------------------------------------------------------------- sorting


def _packed_keys(work: Any, part: Partition, *, descending: bool) -> Any:
    """``(F, N)`` int64 keys ``segment << 32 | bits``, ``bits`` ordered as the values.

    NaNs are equal and largest, -0.0 equals 0.0; ``descending`` reverses the bits. Built in
    the ``(F, N)`` layout the sort runs along, from a transposed float32 (or int32) copy,
    in five passes over the values, where building them as ``(N, F)`` and transposing the
    int64 result took ten (together more time than the sort itself).
    """
    if work.dtype.is_floating_point:
        f = _transposed(work, torch.float32).add_(0.0)  # -0.0 + 0.0 = +0.0; halves exact
        if f.device.type != "cpu" or bool(torch.isnan(f.sum(1)).any()):
            f = torch.where(f.isnan(), torch.nan, f)  # one NaN, positive: above +inf
        bits = f.view(torch.int32)
        flip = torch.bitwise_right_shift(
            bits, 31, out=_backend.empty(bits.shape, bits.dtype, f.device)
        )
        bits ^= flip.bitwise_and_(0x7FFFFFFF)  # negative floats: their order reversed
        del flip
    else:
        bits = _transposed(work, torch.int32)
    # (segment << 32) + 2**31 + bits, or (segment << 32) + 2**31 - 1 - bits
    row = (part.ids(work.device) << 32).add_(2**31 - 1 if descending else 2**31).unsqueeze(0)
    wide = _backend.empty(bits.shape, torch.int64, bits.device).copy_(bits)
    return torch.sub(row, wide, out=wide) if descending else wide.add_(row)


# Up to this k, ``topk`` takes k rounds of a segment argmax instead of sorting everything.
_TOPK_ROUNDS = 8


def topk_index(flat: Any, part: Partition, k: int, *, largest: bool) -> Any | None:
    """``(m, k, F)`` global indices of the first ``k`` items of each segment's stable sort.

    Descending where ``largest`` (NaNs the largest values, as ``sort``). Found by ``k``
    rounds of ``arg_extremum`` on keys ordered as that sort (``_topk_keys``), each round
    taking the items it finds out of the next (their key becomes -inf), where sorting every
    segment costs O(N log N) (k = 5 at N = 300 000, m = 10 000, F = 64: 0.22 s against
    1.6 s for the sort and 0.36 s for a loop of ``torch.topk``). Rows past a segment's
    length are meaningless. None where the sort is used instead: larger ``k``, values wider
    than 32 bits, offsets not on the host, a GPU.
    """
    work = order_view(flat.detach())
    if k > _TOPK_ROUNDS or part.host is None or work.device.type != "cpu":
        return None
    if _backend.transformed(work):  # (in-place rounds that branch on NaN: sort instead)
        return None
    if work.dtype not in _PACKED:
        return None
    n, features = work.shape
    keys = _topk_keys(work, largest=largest)
    ordered = keys[:n]
    starts = part.offsets("cpu")[:-1].unsqueeze(1)
    empty = part.empty("cpu")
    index = torch.empty((part.num_segments, k, features), dtype=torch.int64)
    for rank in range(k):
        rows = arg_extremum(ordered, part, "amax").add_(starts)
        if empty is not None:
            rows.masked_fill_(empty.unsqueeze(1), n)
        index[:, rank] = rows
        keys.scatter_(0, rows, -torch.inf)
    return index


def _topk_keys(work: Any, *, largest: bool) -> Any:
    """``(N + 1, F)`` keys ordered as the stable sort of ``topk`` puts the items (largest first).

    The values themselves (float32 where that is exact and they are all finite; -0.0 made
    +0.0), else float64 with NaN, +inf and -inf made finite values beyond every float32 so
    that NaN > +inf > the rest and -inf stays above the -inf that marks taken items. The
    last row is a place to discard writes into.
    """
    floating = work.dtype.is_floating_point
    finite = not floating or bool(torch.isfinite(work.sum(0)).all())  # one pass
    narrow = work.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.int8)
    narrow = narrow or work.dtype in (torch.int16, torch.uint8)
    dtype = torch.float32 if finite and narrow else torch.float64
    keys = _backend.empty((work.shape[0] + 1, work.shape[1]), dtype, work.device)
    head = keys[:-1]
    if floating:
        torch.add(work, 0.0, out=head)  # -0.0 + 0.0 = +0.0
    else:
        head.copy_(work)
    if not finite:
        top = torch.finfo(torch.float64).max
        head.masked_fill_(head == torch.inf, top / 2)
        head.masked_fill_(head == -torch.inf, -top / 2)
        head.masked_fill_(head.isnan(), top)
    return keys if largest else keys.neg_()


def _transposed(t: Any, dtype: Any) -> Any:
    """A contiguous transposed copy of 2-d ``t`` in ``dtype``.

    ``copy_`` from the transposed view takes torch's blocked transpose path: measured 26 ms
    at N = 300 000, F = 64 on one thread, against 69 ms for ``t.t().contiguous()`` and
    153 ms for an elementwise op reading the transposed view.
    """
    if _backend.transformed(t):  # (vmap cannot copy a batched tensor into a buffer of ours)
        return t.t().to(dtype).contiguous()
    return _backend.empty((t.shape[1], t.shape[0]), dtype, t.device).copy_(t.t())


def sort_permutation(flat: Any, part: Partition, *, descending: bool) -> Any:
    """``(F, N)`` int64 item indices sorting every segment, per feature, stably.

    Row ``f`` holds the order of feature ``f``; its column ``r`` belongs to the segment of
    item ``r``: the segments stay where they are and each is sorted in place. NaNs are the
    largest values (as ``torch.sort``). The layout is the one the sort runs along; see
    ``take_sorted`` and ``local_sorted`` for the ``(N, F)`` results.
    """
    work = order_view(flat.detach())
    # (the packed keys are built in place and branch on NaN: not under torch.func)
    if work.dtype in _PACKED and part.num_segments < 2**31 and not _backend.transformed(work):
        key = _packed_keys(work, part, descending=descending)
        # outputs from new_buffer: their first touch costs a quarter of a torch allocation's
        out = (_backend.empty(key.shape, torch.int64, key.device) for _ in range(2))
        return torch.sort(key, dim=1, stable=True, out=tuple(out))[1]
    ids = part.ids(flat.device)
    by_value = torch.sort(_transposed(work, work.dtype), dim=1, stable=True, descending=descending)
    perm = by_value.indices
    by_segment = torch.sort(ids[perm], dim=1, stable=True).indices
    return perm.gather(1, by_segment)


def take(flat: Any, index: Any) -> Any:
    """``flat.gather(0, index)`` for every dtype (unsigned ones moved as their signed twins)."""
    signed = _backend.signed_view(flat)
    out = signed.gather(0, index)
    return out if signed is flat else out.view(flat.dtype)


def take_sorted(flat: Any, perm: Any) -> Any:
    """``(N, F)``: ``flat`` in the ``(F, N)`` order ``perm`` of ``sort_permutation``.

    Gathered along the rows of a transposed copy and transposed back, both by ``copy_``'s
    blocked path: gathering ``(N, F)`` through the transposed ``perm`` cost 6x more.
    """
    signed = _backend.signed_view(flat)
    out = _transposed(_transposed(signed, signed.dtype).gather(1, perm), signed.dtype)
    return out if signed is flat else out.view(flat.dtype)


def local_sorted(perm: Any, part: Partition, *, in_place: bool) -> Any:
    """``(N, F)`` positions within their segments of the ``(F, N)`` indices ``perm``.

    With ``in_place`` they are made in ``perm``, which is used up (a fresh ``(F, N)`` int64
    result cost more than the subtraction); not where autograd saved ``perm`` for a gather.
    """
    device = perm.device
    starts = part.offsets(device)[:-1].index_select(0, part.ids(device))
    return _transposed(perm.sub_(starts) if in_place else perm - starts, perm.dtype)


# Segments of one length, where at least this many share it, take the median together as
# one dense (segments, length, F) block.
_GROUP_MIN = 8


def length_groups(part: Partition, like: Any) -> tuple[list[tuple[Any, Any, int]], Any]:
    """Segments grouped by length, for dense per-group operations (cached; host offsets).

    Returns ``(groups, rest)``: for every length ``L > 0`` shared by at least
    ``_GROUP_MIN`` segments, ``(segments, rows, L)`` with the ``(k,)`` segment indices and
    the ``(k * L,)`` item rows of those segments in order, on the device of tensor
    ``like``; and the host indices of the other non-empty segments.
    """

    def build() -> tuple[list[tuple[Any, Any, int]], Any]:
        assert part.host is not None
        lengths = part.host_lengths
        sizes, counts = np.unique(lengths[lengths > 0], return_counts=True)
        groups = []
        for size in sizes[counts >= _GROUP_MIN]:
            segments = np.flatnonzero(lengths == size)
            rows = (part.host[segments][:, None] + np.arange(size)).reshape(-1)
            upload = _backend.upload
            groups.append((upload(segments, like), upload(rows, like), int(size)))
        common = np.isin(lengths, sizes[counts >= _GROUP_MIN])
        return groups, np.flatnonzero(~common & (lengths > 0))

    return part._get(("length_groups", str(like.device)), build)


def median_index(flat: Any, part: Partition) -> Any:
    """``(m, F)`` global item index of each segment's lower median (0 for empty segments).

    As ``torch.median``: a segment and feature holding a NaN gives its first NaN. Lengths
    that many segments share take ``torch.median(dim=1)`` of one dense block each (one copy
    of their rows, then a selection: 2-3x faster than sorting everything at N = 300 000,
    m = 10 000, and faster than a loop of ``torch.median`` over the segments); the other
    segments take the sort of ``_sorted_median_index`` on a copy of their rows. Under
    deterministic algorithms off the CPU every segment is sorted, since ``torch.median``
    has no deterministic kernel there.
    """
    if part.host is None or deterministic_off_cpu(flat.device) or _backend.transformed(flat):
        return _sorted_median_index(flat, part)  # (torch.func: no writes into ours)
    device = flat.device
    groups, rest = length_groups(part, flat)
    if not groups:
        return _sorted_median_index(flat, part)
    work = order_view(flat.detach())
    if work.dtype in (torch.float16, torch.bfloat16):
        work = work.float()  # exact, and torch.median has every float32 kernel
    features = flat.shape[1]
    index = torch.zeros((part.num_segments, features), dtype=torch.int64, device=device)
    for segments, rows, size in groups:
        block = work.index_select(0, rows).view(segments.shape[0], size, features)
        local = block.median(dim=1).indices
        index[segments] = rows.view(segments.shape[0], size).gather(1, local)
    if rest.shape[0]:
        lengths = part.host_lengths[rest]
        chosen = np.zeros(part.num_segments, dtype=bool)
        chosen[rest] = True
        items = np.flatnonzero(np.repeat(chosen, part.host_lengths))  # their rows, in order
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        items_t = _backend.upload(items, flat)
        sub = _sorted_median_index(flat.index_select(0, items_t), Partition(offsets))
        index[_backend.upload(rest, flat)] = items_t[sub]
    return index


def _sorted_median_index(flat: Any, part: Partition) -> Any:
    """``median_index`` by one stable sort of every segment (any partition)."""
    device = flat.device
    perm = sort_permutation(flat, part, descending=False)
    lengths = part.lengths(device).unsqueeze(1)
    position = ((lengths - 1).clamp(min=0) // 2).expand(-1, flat.shape[1])
    # a column sum without NaN (one pass, half the cost of isnan) means no NaN in the column
    floating = flat.dtype.is_floating_point
    if floating and (
        device.type != "cpu"
        or _backend.transformed(flat)  # (torch.func: no branch on the data)
        or bool(torch.isnan(flat.detach().sum(0)).any())
    ):
        # counted in int64: a half-precision count stops being exact past 256 (bfloat16)
        nans = raw_sum(flat.detach().isnan().to(torch.int64), part)
        position = torch.where(nans > 0, lengths - nans, position)  # NaNs sort last, stably
    rows = (part.offsets(device)[:-1].unsqueeze(1) + position).clamp(max=part.num_items - 1)
    return perm.gather(1, rows.t()).t()


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
    """A global running sum in ``dtype`` minus its value just before each segment.

    Exact for integers, where wrap-around cancels.
    """
    device = flat.device
    total = _running_sum(flat, dtype)
    starts = part.offsets(device)[:-1]
    before = total.index_select(0, (starts - 1).clamp(min=0))
    before = before.masked_fill((starts == 0).unsqueeze(1), 0)
    return total - before.index_select(0, part.ids(device))


# Rows per block of the floating scan: each row costs SCAN rows' worth of multiply-adds.
_SCAN = 16


# Rows from which a level above the items is scanned in blocks rather than by one product
# with a (rows, rows) mask (512: 2 MiB of float64).
_DENSE = 512


class _Level(NamedTuple):
    """One level of the blocked scan, whose rows are cut into blocks of ``_SCAN``.

    The blocks ignore the segments; the last may be shorter.

    * ``within``: ``(blocks, _SCAN, _SCAN)``, row ``r`` sums the rows of its block up to
      ``r`` that lie in the segment of ``r`` (lower triangular, same segment); bool for the
      items (made their dtype per call), float64 above them. A last level of at most
      ``_DENSE`` rows is one ``(rows, rows)`` float64 mask of the same kind over all rows,
      with ``carried`` and ``last`` None;
    * ``carried``: ``(blocks, _SCAN, 1)`` in the level's dtype, 1 for the rows whose segment
      began in an earlier block (they add that segment's sum before the block);
    * ``last``: ``(blocks,)`` the segment of each block's last row: the segments of the next
      level, whose rows are the blocks' last rows.
    """

    within: Any
    carried: Any
    last: Any


def _scan_plan(part: Partition, dtype: Any, device: Any) -> list[_Level]:
    """The levels of the blocked floating scan, cached on the partition.

    Level 0 scans the items in ``dtype``; level ``k + 1`` scans, in float64, the sums at the
    ends of level ``k``'s blocks, whose segments are those of the blocks' last rows, up to
    a level of one block or of at most ``_DENSE`` rows. The items' ``within`` is kept as
    bool (``_SCAN`` bytes per item, about what the partition's CSR matrix takes) and made
    ``dtype`` per call (~0.4 floor at F = 64); the levels above take ~1/2 byte per item.
    """

    def build() -> list[_Level]:
        levels = [_level(part.ids(device), dtype, device)]
        while levels[-1].last.shape[0] > 1:
            ids = levels[-1].last
            if ids.shape[0] <= _DENSE:
                same = (ids.unsqueeze(1) == ids.unsqueeze(0)).tril()
                levels.append(_Level(same.to(torch.float64), None, None))
                break
            level = _level(ids, torch.float64, device)
            levels.append(level._replace(within=level.within.to(torch.float64)))
        return levels

    return part._get(("scan", dtype, str(device)), build)


def _level(ids: Any, dtype: Any, device: Any) -> _Level:
    n = ids.shape[0]
    blocks = -(-n // _SCAN)
    padded = ids.new_full((blocks * _SCAN,), -1)
    padded[:n] = ids
    ids = padded.view(blocks, _SCAN)
    same = ids.unsqueeze(2) == ids.unsqueeze(1)
    within = same & torch.ones(_SCAN, _SCAN, dtype=torch.bool, device=device).tril()
    first = ids[:, 0]
    began_before = torch.zeros(blocks, dtype=torch.bool, device=device)
    began_before[1:] = first[1:] == ids[:-1, -1]
    carried = ((ids == first.unsqueeze(1)) & began_before.unsqueeze(1)).to(dtype)
    last_row = (n - 1 - torch.arange(blocks, device=device) * _SCAN).clamp(max=_SCAN - 1)
    last = ids.gather(1, last_row.unsqueeze(1)).squeeze(1)
    return _Level(within, carried.unsqueeze(2), last)


def _scan(flat: Any, part: Partition) -> tuple[Any, Any]:
    """Running sums restarting at each segment of float32/float64 ``flat``, and a check.

    Blocks of ``_SCAN`` rows are scanned by one batched product with masks that keep each
    sum inside its segment (measured 4x the floor ``values.sum(0)`` on one thread, against
    5x for ``torch.cumsum`` of the same blocks and 45x for a float64 ``torch.cumsum``). The
    sum of each segment before a block is the same scan one level up, in float64, over the
    sums at the blocks' ends, and so on (``_scan_plan``): every sum adds values of one
    segment only, so a segment's results do not depend on what other segments hold (a
    running sum over all blocks, minus its value where the segment began, lost a small
    segment's digits after a large one). Each result is rounded once.

    The second result, ``(F,)``, is the float64 sum of the blocks' last rows. An infinity
    or NaN among the values turns the masks' zeros into NaN in every row of its block, the
    last row included, and so makes that sum non-finite: where it is finite, the values
    were (and the running sums are right).
    """
    levels = _scan_plan(part, flat.dtype, flat.device)
    out = None  # written in place unless autograd records or torch.func transforms
    if not _backend.out_of_place(flat):
        out = _backend.empty(flat.shape, flat.dtype, flat.device)
    out = _scan_level(flat, levels, 0, out)
    # every block's last row after its carry: an infinity or NaN inside a block, or a carry
    # that overflowed the dtype (a location's sum past float32's range) shows there
    rows = torch.cat([out[_SCAN - 1 :: _SCAN], out[-1:]])
    return out, rows.sum(0, dtype=torch.float64)


def _scan_level(flat: Any, levels: list[_Level], k: int, out: Any) -> Any:
    """Level ``k`` of the scan of ``flat``, written into ``out`` when given."""
    n, features = flat.shape
    within, carried, _ = levels[k]
    if carried is None:  # a last level of few rows: one product
        return within @ flat
    if within.dtype == torch.bool:
        masks = _backend.empty(within.shape, flat.dtype, flat.device)
        within = masks.copy_(within.view(torch.uint8))  # from bytes: 2x faster than from bool
    full, split = n // _SCAN, (n // _SCAN) * _SCAN
    # sums inside each block and segment
    head = flat[:split].view(full, _SCAN, features)
    if out is None:
        head = torch.bmm(within[:full], head)
    else:
        head = torch.bmm(within[:full], head, out=out[:split].view(full, _SCAN, features))
    ends = [head[:, -1]]  # each block's sums: the rows of the level above
    tail = None
    if split < n:  # the last, shorter block
        tail = torch.matmul(within[full:, : n - split, : n - split], flat[split:].unsqueeze(0))
        if out is not None:
            tail = out[split:].unsqueeze(0).copy_(tail)
        ends.append(tail[:, -1])
    if k + 1 < len(levels):  # the carry into each block: its segment's sum up to there
        above = torch.cat(ends) if len(ends) > 1 else ends[0]
        total = _scan_level(above.to(torch.float64), levels, k + 1, None)
        carry = torch.nn.functional.pad(total[:-1].to(flat.dtype), (0, 0, 1, 0)).unsqueeze(1)
        if out is not None:
            head.addcmul_(carried[:full], carry[:full])
            if tail is not None:
                tail.addcmul_(carried[full:, : n - split], carry[full:])
        else:
            head = head + carried[:full] * carry[:full]
            if tail is not None:
                tail = tail + carried[full:, : n - split] * carry[full:]
    if out is not None:
        return out
    head = head.reshape(split, features)
    if tail is None:
        return head
    return torch.cat([head, tail.reshape(n - split, features)])


def cumsum(flat: Any, part: Partition) -> Any:
    """``(N, F)`` running sums restarting at each segment (differentiable).

    Integers and booleans accumulate in int64, exactly (a global running sum minus the sum
    before each segment: wrap-around cancels). Floating values (float32 or float64; halves
    arrive as float32) take the blocked scan of [`_scan`][raggedarray._order._scan]: each
    item's error is that of adding at most ``_SCAN`` items plus one rounding, at any
    segment length, where a float32 ``torch.cumsum`` of one segment of 10^6 items drifts by
    ~1e-3 relative.

    Infinities and NaNs must not reach other items through the scan's masks: where there
    are any (the scan's check says so; a GPU never checks), the finite values are scanned
    and each item's result is then set from per-segment running counts of NaN, +inf and
    -inf (exact integer sums): NaN after a NaN or after both infinities, else the infinity
    seen. That result is computed without autograd, and its gradient is the running sum's,
    which does not depend on the values (the sum is linear): each item receives the sum of
    the gradients of the results from it to its segment's end, as with ``torch.cumsum``.

    The scan's matrix products run in the dtype given, also under ``torch.autocast``.
    """
    if _jit.scans(flat, part):
        return _jit.cumsum(flat, part)
    if not flat.dtype.is_floating_point:
        return _restarted(flat, part, torch.int64)
    with no_autocast(flat.device):
        if _backend.transformed(flat):  # torch.func: no branch on the data
            return traced().TransformedScan.apply(flat, part.offsets(flat.device))
        if flat.device.type == "cpu":  # (a GPU would wait for the check: it takes the safe way)
            # detached, the gradient being _LinearScan's: a backward run under autocast
            # does not go through the scan's matrix products, nor inductor through their
            # reshapes (which it fails to lower with symbolic shapes). torch 2.6's dynamo
            # fails on that function after the check's graph break: it keeps the products.
            linear = not _backend.compiling() or _LINEAR_SCAN_IN_GRAPHS
            out, check = _scan(flat.detach() if linear else flat, part)
            if bool(torch.isfinite(check).all()):
                grad = linear and _backend.needs_grad(flat)
                return _LinearScan.apply(flat, out, part) if grad else out
        # infinities or NaNs, or finite float32 values whose sums overflow (3e38 + 3e38 -
        # 3e38 inside a block; a location's sum past float32's range, whose carry would turn
        # the masks' zeros into NaN for the others): scanned in float64 and rounded once, as
        # torch.cumsum accumulates. A GPU always takes this way (float64 products there
        # also keep TF32 out of the masks' products).
        with torch.no_grad():
            out = _non_finite_scan(flat.detach(), part)
    if _backend.needs_grad(flat):
        out = _LinearScan.apply(flat, out, part)
    return out


def _non_finite_scan(flat: Any, part: Partition) -> Any:
    """Running sums of values with infinities or NaNs, as ``torch.cumsum`` gives them.

    The finite values are scanned in float64, so no sum of them overflows the way one in
    float32 does, and each result is rounded once to ``flat``'s dtype.
    """
    wide = flat.double()
    out, _ = _scan(torch.where(torch.isfinite(wide), wide, 0.0), part)
    seen = [
        _restarted(hit, part, torch.int64) > 0
        for hit in (flat.isnan(), flat == torch.inf, flat == -torch.inf)
    ]
    nan, plus, minus = seen
    out = torch.where(plus, torch.inf, out)
    out = torch.where(minus, -torch.inf, out)
    return torch.where(nan | (plus & minus), torch.nan, out).to(flat.dtype)


_LINEAR_SCAN_IN_GRAPHS = tuple(map(int, torch.__version__.split("+")[0].split(".")[:2])) >= (2, 13)


class _LinearScan(torch.autograd.Function):
    """Running sums computed without autograd, given the running sum's gradient."""

    @staticmethod
    def forward(ctx: Any, flat: Any, out: Any, part: Partition) -> Any:
        ctx.part = part
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        return sums_to_the_end(grad, ctx.part), None, None


def sums_to_the_end(grad: Any, part: Partition) -> Any:
    """``(N, F)`` sums of ``grad`` from each item to its segment's end (cumsum's backward).

    A running sum over the reversed buffer, whose segments are the reversed segments in
    reversed order.
    """
    return cumsum(grad.flip(0), _reversed(part, grad.device)).flip(0)


def _reversed(part: Partition, device: Any) -> Partition:
    """The partition of the buffer read backwards."""
    if part.host is not None:
        return Partition(part.num_items - part.host[::-1])
    offsets = part.offsets(device)
    return Partition(None, offsets=part.num_items - offsets.flip(0), num_items=part.num_items)
