"""Segment kernels on ``(N, F)`` torch tensors, their engines, and their autograd functions.

Every kernel takes items flattened to ``F`` features and a
[`Partition`][raggedarray._partition.Partition]. Which engine runs is one decision,
[`choose_engine`][raggedarray._kernels.choose_engine]:

* ``"csr"`` (CPU, float32/float64, eager): a cached CSR matrix of ones, ``(m, N)``, reduced
  with ``torch.sparse.mm(P, values, reduce=...)``. Measured on 2 CPU cores it runs sum, mean,
  amax and amin at 0.6-1.5x the cost of ``values.sum(0)``, where ``index_add_`` costs
  1.3-4.9x and ``torch.segment_reduce`` 8-20x.
* ``"segment"`` (CUDA, float32/float64, eager): ``torch.segment_reduce`` (CUB's segmented
  reductions, no atomics, deterministic) over the device offsets, with ``unsafe=True`` so
  nothing synchronises. Measured on an H100 (``benchmarks/bench_gpu_engines.py``, N = 3*10^6,
  F = 64): a sum at 1.2-1.7x ``copy_``'s speed where ``index_add_`` ran at 0.3x, and a max at
  1.0-1.7x where ``scatter_reduce_`` ran at 0.03-0.2x.
* ``"scatter"`` (integers and booleans, other accelerators, and everything under
  ``torch.compile`` or ``torch.func`` transforms, where the package's autograd functions step
  aside and torch differentiates these operations itself): ``index_add`` and
  ``scatter_reduce`` (out of place, which ``vmap`` needs) over per-item
  segment ids built on the device with a known output size, so nothing synchronises a GPU
  and nothing reads the host in a compiled graph.

Accuracy: every engine adds a segment's items one after another, so a float32 sum over 10^6
items would drift by ~1e-2 relative. Floating sums over segments longer than
``_partition.BLOCK`` items therefore run in two levels: blocks of at most ``BLOCK`` items
inside one segment, then the blocks of each segment (in float32 while a segment spans at
most ``BLOCK`` blocks, in float64 beyond). The relative error stays below ~9e-7 at any
length, measured on the worst case of equal items (``torch.sum`` itself: ~9e-7 at 10^6).

The autograd functions give each reduction a backward made of segment kernels (a sum's
backward is a broadcast, a broadcast's backward is a sum), so backward runs at the speed of
the forward and double backward works. A broadcast is ``index_select`` of the per-segment
rows, except on CUDA, where torch's gathers cost ~0.6 ns a row whatever its width and a
Triton kernel ([`_triton`][raggedarray._triton]) copies large ones at memory speed; there
max's and min's backward is two fused Triton kernels too (on the CPU, one compiled numba
loop where numba is installed: [`_jit`][raggedarray._jit]).

Kernels run with autocast disabled: they take the dtype they are given (half precisions
arrive as float32), which keeps ``torch.sparse.mm`` off the bfloat16 paths that do not exist.
Torch is imported by this module; import it lazily.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from . import _backend, _jit, _triton
from ._partition import Partition

ENGINES = ("csr", "segment", "scatter")
_CSR_DTYPES = (torch.float32, torch.float64)
# Up to this many features the plain sparse product beats the ``reduce="sum"`` kernel
# (1.03x vs 1.40x the floor at F = 32; 1.49x vs 0.52x at F = 256).
_PLAIN_MM_FEATURES = 32
_forced: list[str] = []


@contextlib.contextmanager
def force_engine(name: str) -> Iterator[None]:
    """Run every kernel inside the block on engine ``name`` where it applies (for tests)."""
    if name not in ENGINES:
        raise ValueError(f"force_engine: name must be one of {ENGINES}; got {name!r}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def choose_engine(values: Any, part: Partition) -> str:
    """The engine for ``(N, F)`` ``values``: ``"csr"``, ``"segment"`` or ``"scatter"``.

    ``csr`` needs CPU float32/float64 values, eager mode and offsets known on the host (its
    matrices are built there); ``segment`` float32/float64 CUDA values and eager mode
    (offsets given only on the device will do: its block plan is built there).
    ``force_engine`` may pick ``segment`` or ``scatter`` anywhere, for tests.
    """
    floating = values.dtype in _CSR_DTYPES
    if not floating or torch.compiler.is_compiling() or _backend.transformed(values):
        # (dynamo traces neither sparse CSR tensors nor segment_reduce; torch.func transforms
        # have no rules for them)
        return "scatter"
    csr = values.device.type == "cpu" and part.host is not None
    if _forced and (_forced[-1] != "csr" or csr):
        return _forced[-1]
    if csr:
        return "csr"
    # segment_reduce is measured on CUDA; other accelerators keep the portable engine
    return "segment" if values.device.type == "cuda" else "scatter"


def no_autocast(device: Any) -> contextlib.AbstractContextManager[Any]:
    """Autocast off for the kernels, where it is on, eagerly and in a compiled graph.

    In a graph too: the scatter engine's ops are ones autocast leaves alone, but the scan of
    ``cumsum`` is matrix products, which autocast ran in bfloat16 (an error of 25 where
    eager's is 0.001); dynamo traces ``torch.autocast``, a class-based context manager.
    """
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------ raw kernels


def raw_sum(values: Any, part: Partition) -> Any:
    """``(m, F)`` sums of a contiguous ``(N, F)`` tensor; empty segments give 0."""
    with no_autocast(values.device):
        exact = not values.dtype.is_floating_point
        engine = choose_engine(values, part)
        if engine == "segment":
            return _segment_sum(values, part)
        if engine == "csr":
            if not part.blocked():
                return _mm(part.csr(values.dtype), values)
            items, extra = part.block_csr(values.dtype)
            blocks = _mm(items, values)
            out, rest = blocks[: part.num_segments], blocks[part.num_segments :]
            if part.wide():
                return out.double().index_add_(0, extra, rest.double()).to(values.dtype)
            return out.index_add_(0, extra, rest)
        shape = (part.num_segments, values.shape[1])
        if exact or not part.blocked():
            if torch.compiler.is_compiling():  # (see _one_more_row)
                out = _one_more_row(values.new_zeros(shape))
                return out.index_add(0, part.ids(values.device), values)[:-1]
            out = torch.zeros(shape, dtype=values.dtype, device=values.device)
            return out.index_add(0, part.ids(values.device), values)  # (vmap: out-of-place)
        item_block, block_segment, num_blocks = part.blocks(values.device)
        partial = values.new_zeros((num_blocks, values.shape[1]))
        partial = partial.index_add(0, item_block, values)
        wide = torch.float64 if part.wide() else values.dtype
        out = partial.new_zeros((shape[0] + 1, shape[1]), dtype=wide)
        out = out.index_add(0, block_segment, partial.to(wide))
        return out[:-1].to(values.dtype)


def _segment_reduce(values: Any, op: str, **where: Any) -> Any:
    """``torch.segment_reduce`` along dim 0, trusting the offsets (no device sync)."""
    return torch.segment_reduce(values, op, axis=0, unsafe=True, **where)


def _segment_sum(values: Any, part: Partition) -> Any:
    """Sums on the ``segment`` engine: in blocks of at most ``BLOCK`` items where needed."""
    device = values.device
    if not part.blocked():
        return _segment_reduce(values, "sum", offsets=part.offsets(device))
    block_lengths, block_offsets, used = part.block_runs(device)
    partial = _segment_reduce(values, "sum", lengths=block_lengths)[:used]
    wide = torch.float64 if part.wide() else values.dtype
    out = _segment_reduce(partial.to(wide), "sum", offsets=block_offsets)
    return out.to(values.dtype)


def _mm(csr: Any, values: Any) -> Any:
    if values.shape[1] <= _PLAIN_MM_FEATURES:
        return torch.sparse.mm(csr, values)
    return torch.sparse.mm(csr, values, reduce="sum")


def raw_extremum(values: Any, part: Partition, op: str) -> Any:
    """``(m, F)`` ``"amax"`` or ``"amin"``; NaN propagates; empty segments give 0."""
    with no_autocast(values.device):
        engine = choose_engine(values, part)
        if engine == "csr":
            return torch.sparse.mm(part.csr(values.dtype), values, reduce=op)
        if engine == "segment":  # empty segments give the dtype's lowest (highest): set 0
            out = _segment_reduce(values, op[1:], offsets=part.offsets(values.device))
            empty = part.empty(values.device)
            return out if empty is None else out.masked_fill_(empty.unsqueeze(1), 0)
        shape = (part.num_segments, values.shape[1])
        out = torch.zeros(shape, dtype=values.dtype, device=values.device)
        index = part.ids(values.device).unsqueeze(1).expand(values.shape)
        return out.scatter_reduce(0, index, values, op, include_self=False)


def raw_prod(values: Any, part: Partition) -> Any:
    """``(m, F)`` products; empty segments give 1.

    ``scatter_reduce(..., "prod")`` has no deterministic kernel on a GPU: under
    ``torch.use_deterministic_algorithms(True)`` off the CPU the products are taken by
    [`prod_by_halving`][raggedarray._kernels.prod_by_halving] instead.
    """
    if deterministic_off_cpu(values.device):
        return prod_by_halving(values, part)
    with no_autocast(values.device):
        shape = (part.num_segments, values.shape[1])
        out = torch.ones(shape, dtype=values.dtype, device=values.device)
        index = part.ids(values.device).unsqueeze(1).expand(values.shape)
        return out.scatter_reduce(0, index, values, "prod", include_self=True)


def deterministic_off_cpu(device: Any) -> bool:
    """Whether ``torch.use_deterministic_algorithms`` is on and ``device`` is not the CPU."""
    return device.type != "cpu" and torch.are_deterministic_algorithms_enabled()


def prod_by_halving(values: Any, part: Partition) -> Any:
    """``(m, F)`` products of a contiguous ``(N, F)`` tensor, by pairwise halving.

    Round ``r`` multiplies the item at local position ``p`` (a multiple of ``2 ** (r + 1)``)
    by the one at ``p + 2 ** r`` when that one is in the same segment, so after
    ``ceil(log2(n_max))`` rounds the first item of each segment holds its product. Every
    step is a gather, a product and a select: deterministic on every device, differentiable
    (zeros included: no division), exact for integers, and with no host read where the
    partition knows its offsets on the host. Each round touches all ``N`` items, so it
    costs ``log2(n_max)`` passes where ``scatter_reduce`` costs one.
    """
    with no_autocast(values.device):
        num_items, device = values.shape[0], values.device
        lengths = part.lengths(device)
        ones = torch.ones((part.num_segments, values.shape[1]), dtype=values.dtype, device=device)
        if num_items == 0:
            return ones
        longest = part.max_length if part.host is not None else num_items
        ids = part.ids(device)
        starts = torch.cumsum(lengths, 0) - lengths
        index = torch.arange(num_items, device=device)
        position = index - starts.index_select(0, ids)
        length = lengths.index_select(0, ids)
        out, step = values, 1
        while step < longest:
            take = (position % (2 * step) == 0) & (position + step < length)
            partner = out.index_select(0, (index + step).clamp_(max=num_items - 1))
            out = torch.where(take.unsqueeze(1), out * partner, out)
            step *= 2
        first = out.index_select(0, starts.clamp(max=num_items - 1))
        return torch.where((lengths > 0).unsqueeze(1), first, ones)


def raw_broadcast(per_segment: Any, part: Partition) -> Any:
    """``(N, F)``: row ``i`` of ``per_segment`` repeated for every item of segment ``i``."""
    ids = part.ids(per_segment.device)
    out = None
    if torch.compiler.is_compiling() and _backend.needs_grad(per_segment):
        # the derivative of index_select is an index_add into per_segment's shape
        return _one_more_row(per_segment).index_select(0, ids)
    if not _backend.needs_grad(per_segment):
        if _triton.takes(per_segment, part.num_items):  # CUDA: index_select is slow there
            return _triton.broadcast(per_segment, ids)
        shape = (part.num_items, per_segment.shape[1])
        out = _backend.new_buffer(shape, per_segment.dtype, per_segment.device)
    if out is None:
        return per_segment.index_select(0, ids)
    return torch.index_select(per_segment, 0, ids, out=out)


def _one_more_row(t: Any) -> Any:
    """``(m, F)`` ``t`` with a row of zeros below: ``(m + 1, F)``, never one element.

    Inductor's CPU code for an ``index_add`` into a tensor of one element fails (torch
    2.13: ``torch.zeros(1, 1).index_add(0, ids, v)`` compiled raises an ``AssertionError``),
    and a batch of one location with one value per item makes exactly that: a compiled
    ``AttentionPool`` over one bag, whose scores are ``(N, 1)``. A graph cannot branch on
    the shape without a recompile, so every graph takes the extra row.
    """
    return torch.cat([t, t.new_zeros((1, *t.shape[1:]))])


# ------------------------------------------------------------------------ autograd


class SegmentSum(torch.autograd.Function):
    """Differentiable segment sum; its backward is a broadcast."""

    @staticmethod
    def forward(ctx: Any, values: Any, part: Partition) -> Any:
        ctx.part = part
        return raw_sum(values, part)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        return broadcast(grad.contiguous(), ctx.part), None


class Broadcast(torch.autograd.Function):
    """Differentiable broadcast of per-segment rows to items; its backward is a segment sum."""

    @staticmethod
    def forward(ctx: Any, per_segment: Any, part: Partition) -> Any:
        ctx.part = part
        return raw_broadcast(per_segment, part)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        return segment_sum(grad.contiguous(), ctx.part), None


def _hits(values: Any, top: Any) -> Any:
    """Float mask of the items equal to their segment's extremum ``top`` (broadcast).

    A NaN extremum is hit by the NaN items only, as ``torch.max(dim)`` sends its gradient to
    the NaN; an infinite extremum is hit by the items with that infinity.
    """
    return ((values == top) | (values.isnan() & top.isnan())).to(values.dtype)


def _differences_normal(out: Any) -> bool:
    """Whether every extremum is finite, and 0 or far enough from 0 for ``x - out`` to be normal.

    Far enough: ``x - out`` is then 0 or a multiple of ``out``'s unit in the last place,
    for every item ``x``. A subnormal difference is 0 under
    ``torch.set_flush_denormal(True)``: the sign of ``x - max`` would then count ``x`` as
    a tie of the max.
    """
    info = torch.finfo(out.dtype)
    size = out.abs()
    # (at tiny/eps itself, an item of the binade below differs by tiny/2: subnormal)
    return bool((((size >= 2 * info.tiny / info.eps) & (size < math.inf)) | (size == 0)).all())


class SegmentExtremum(torch.autograd.Function):
    """Differentiable segment max/min: the gradient goes to the extrema of each segment.

    Ties share it equally (as ``torch.amax``); a NaN is the extremum of its segment and
    feature, so it takes the whole gradient there and the other items get none.
    """

    @staticmethod
    def forward(ctx: Any, values: Any, part: Partition, op: str) -> Any:
        out = raw_extremum(values, part, op)
        ctx.part, ctx.op = part, op
        ctx.save_for_backward(values, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        values, out = ctx.saved_tensors
        part = ctx.part
        if torch.is_grad_enabled():  # double backward: out-of-place, recorded ops only
            return recorded_extremum_grad(values, out, grad, part), None, None
        if _triton.takes(values, part.num_items):  # CUDA: one fused count, one fused share
            fused = _triton.extremum_grad(values, out, grad, part.ids(values.device))
            if fused is not None:
                return fused, None, None
        if _jit.shares(values, part):  # CPU with numba: counts and shares, segment by segment
            return _jit.extremum_grad(values, out, grad, part), None, None
        if values.device.type == "cpu" and _differences_normal(out):
            # 1 at the extrema and 0 elsewhere, from float ops done in place: x - max is 0
            # or negative, so sign + 1 is 1 or 0. Measured 2-3x cheaper than ``==`` and a
            # bool-by-float product, which are slow paths on CPU.
            mask = raw_broadcast(out, part)  # written over in place: one (N, F) buffer less
            if ctx.op == "amax":
                torch.sub(values, mask, out=mask)
            else:
                mask.sub_(values)
            mask.sign_().add_(1.0)
        else:  # infinities or NaN among the extrema (always on a GPU: no host read there)
            mask = _hits(values, raw_broadcast(out, part))
        ties = raw_sum(mask, part)
        return mask.mul_(raw_broadcast(grad / ties.clamp(min=1), part)), None, None


def recorded_extremum_grad(values: Any, out: Any, grad: Any, part: Partition) -> Any:
    """``SegmentExtremum``'s gradient from out-of-place, recorded torch operations.

    Autograd records them, dynamo traces them and ``torch.func`` batches them: the double
    backward, compiled graphs and transforms take this form.
    """
    hit, ties = extremum_ties(values, out, part)
    return broadcast(grad / ties, part) * hit


def extremum_ties(values: Any, out: Any, part: Partition) -> tuple[Any, Any]:
    """Where each item is its segment's max/min (``hit``), and how many share it (>= 1).

    NaN extrema count the NaNs. The gradient of an extremum is shared by its ties.
    """
    hit = _hits(values, broadcast(out, part))
    return hit, segment_sum(hit, part).clamp(min=1)


class SegmentProd(torch.autograd.Function):
    """Differentiable segment product, with the gradient ``torch.prod`` gives each segment.

    ``torch.prod(segment, dim=0)``'s backward divides when the segment holds no zero
    (``grad * (result / item)``, NaN for an infinite item, as torch) and otherwise
    multiplies the running products before and after each item, so that one zero's
    gradient is the product of the others (inf where that overflows) and every other item
    gets 0. Dividing the product, which is 0 or NaN there, gave NaN instead.
    """

    @staticmethod
    def forward(ctx: Any, values: Any, part: Partition) -> Any:
        out = raw_prod(values, part)
        ctx.part = part
        ctx.save_for_backward(values, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        values, out = ctx.saved_tensors
        return prod_grad(values, out, grad.contiguous(), ctx.part), None


def prod_grad(values: Any, out: Any, grad: Any, part: Partition) -> Any:
    """``(N, F)`` gradient of segment products ``out`` of ``values`` for upstream ``grad``.

    The product of a segment holding a zero is 0 or NaN, so when no row of ``out`` is,
    every item takes the division (one read of an ``(m, F)`` check). Otherwise the segments
    that hold a zero (in any feature: ``torch.prod`` decides per segment) are found on the
    host, a device read as ``torch.prod``'s backward makes too, and take the running
    products. Under ``create_graph`` only recorded, out-of-place operations run (double
    backward).
    """
    record = torch.is_grad_enabled()
    if not bool(((out == 0) | out.isnan()).any()):
        return _divided(values, out, grad, part, record=record)
    ids = part.ids(values.device)
    # |item| with NaN made 1, its smallest feature 0 where the item holds a zero (a float
    # reduction over the features: several times faster than ``(values == 0).any(1)``)
    smallest = values.detach().abs().nan_to_num_(1.0).amin(1, keepdim=True)
    zero_rows = raw_sum((smallest == 0).to(values.dtype), part).squeeze(1) > 0
    segments = np.flatnonzero(zero_rows.cpu().numpy())
    if segments.size == 0:
        return _divided(values, out, grad, part, record=record)
    items, others = exclusive_products(values, part, segments)
    taken = grad.index_select(0, ids.index_select(0, items)) * others
    if not record:  # the divisions by 0 in those segments are written over
        return _divided(values, out, grad, part, record=False).index_copy_(0, items, taken)
    # where the running products take over, divide 1 by 1: no NaN in double backward
    divided = _divided(
        values.masked_fill(zero_rows.index_select(0, ids).unsqueeze(1), 1.0),
        out.masked_fill(zero_rows.unsqueeze(1), 1.0),
        grad,
        part,
        record=True,
    )
    return divided.index_copy(0, items, taken)


def _divided(values: Any, out: Any, grad: Any, part: Partition, *, record: bool) -> Any:
    """``grad * (out / values)``, each row of ``out`` and ``grad`` spread over its items."""
    if record:
        return broadcast(out, part) / values * broadcast(grad, part)
    ratio = raw_broadcast(out, part).div_(values)
    return ratio.mul_(raw_broadcast(grad, part))


def exclusive_products(values: Any, part: Partition, segments: np.ndarray) -> tuple[Any, Any]:
    """The items of ``segments`` and, for each, the product of the other items of its segment.

    As ``torch.prod``'s backward forms it: the running product of the items before times
    the running product of those after, each multiplied in order (``cumprod``), so overflow
    and NaN come out as there. The segments are gathered into rows (forwards, and
    backwards for the products after), grouped by ``ceil(log2(length))`` so that padding
    at most doubles the work; padding comes after each segment's items, where no product
    of an item reads it.

    Args:
        values: ``(N, F)`` tensor.
        part: its partition.
        segments: host indices of non-empty segments.

    Returns:
        ``(K,)`` int64 item indices and ``(K, F)`` products.
    """
    device = values.device
    host = part.host if part.host is not None else part.offsets(device).cpu().numpy()
    starts = host[segments]
    lengths = host[segments + 1] - starts
    groups = np.ceil(np.log2(lengths)).astype(np.int64)
    items, products = [], []
    for group in np.unique(groups):
        first, length = starts[groups == group], lengths[groups == group]
        item, others = _group_products(values, first, length)
        items.append(item)
        products.append(others)
    return torch.from_numpy(np.concatenate(items)).to(device), torch.cat(products)


def _group_products(values: Any, first: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, Any]:
    """:func:`exclusive_products` for segments starting at ``first``, of ``length`` items."""
    device, features = values.device, values.shape[1]
    width = int(length.max())
    position, end = np.arange(width), length[:, None] - 1

    def running(order: np.ndarray) -> Any:  # inclusive running products along each row
        index = torch.from_numpy((first[:, None] + order).reshape(-1)).to(device)
        rows = values.index_select(0, index).view(len(first), width, features)
        return rows.cumprod(1).view(-1, features)

    forwards = running(np.minimum(position, end))  # x_0, x_0 x_1, ...
    backwards = running(np.maximum(end - position, 0))  # x_{n-1}, x_{n-1} x_{n-2}, ...
    row, local = np.nonzero(position < length[:, None])  # item j = local of segment row
    last, start = length[row] - 1, row * width

    def take(products: Any, at: np.ndarray, some: np.ndarray) -> Any:
        picked = products.index_select(0, torch.from_numpy(np.maximum(at, 0)).to(device))
        return torch.where(torch.from_numpy(some).to(device).unsqueeze(1), picked, 1.0)

    # x_0 ... x_{j-1} is forwards at j - 1, x_{n-1} ... x_{j+1} backwards at n - 2 - j
    before = take(forwards, start + local - 1, local > 0)
    after = take(backwards, start + last - 1 - local, local < last)
    return first[row] + local, before * after


# --------------------------------------------------------- differentiable when needed
#
# Inside a ``torch.compile`` graph the raw kernels run as they are: they are made of
# differentiable torch operations, AOT autograd derives their backward (dynamo's capture of
# autograd functions does not yet handle symbolic sizes), and ties still share the gradient
# of ``max``/``min`` equally. Two differences: a segment whose extremum is NaN gets NaN
# gradients there (torch's ``scatter_reduce`` backward), where eagerly the NaN takes it all;
# and ``prod``'s gradient is ``scatter_reduce``'s, NaN where a segment holds a zero and the
# product of its other items overflows, where eagerly it is ``torch.prod``'s.


def _record(t: Any) -> bool:
    """Whether our autograd functions record ``t``'s reduction.

    Not in a compiled graph, and not under ``torch.func`` transforms: there the kernels are
    plain torch operations (the ``scatter`` engine) whose derivatives torch itself gives,
    except for max, min and prod, which take the functions of ``_traced``.
    """
    return (
        _backend.needs_grad(t) and not torch.compiler.is_compiling() and not _backend.transformed(t)
    )


def segment_sum(values: Any, part: Partition) -> Any:
    """Sum, recording autograd only when needed (``Function.apply`` costs a few µs)."""
    if _record(values):
        return SegmentSum.apply(values, part)
    return raw_sum(values, part)


def broadcast(per_segment: Any, part: Partition) -> Any:
    """Broadcast, recording autograd only when needed."""
    if _record(per_segment):
        return Broadcast.apply(per_segment.contiguous(), part)
    return raw_broadcast(per_segment, part)


def extremum(values: Any, part: Partition, op: str) -> Any:
    """Max or min, recording autograd only when needed."""
    if _record(values):
        return SegmentExtremum.apply(values, part, op)
    if _backend.transformed(values):
        return traced().TransformedExtremum.apply(values, part.offsets(values.device), op)
    if torch.compiler.is_compiling() and _backend.needs_grad(values):
        return traced().GraphExtremum.apply(values, part.offsets(values.device), op)
    return raw_extremum(values, part, op)


def prod(values: Any, part: Partition) -> Any:
    """Product, recording autograd only when needed."""
    if _record(values):
        return SegmentProd.apply(values, part)
    if _backend.transformed(values):
        return traced().TransformedProd.apply(values, part.offsets(values.device))
    return raw_prod(values, part)


def traced() -> Any:
    """The module ``_traced`` (imported on first use: it imports this one)."""
    from . import _traced

    return _traced
