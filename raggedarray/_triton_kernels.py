"""The Triton kernels of [`_triton`][raggedarray._triton]; importing this module imports Triton.

Triton reads a kernel's source and resolves its names in this module's globals, so the kernels
live at the top level of a module of their own, with no annotations but ``tl.constexpr``.
"""

import triton
import triton.language as tl


@triton.jit
def gather_rows(
    src, ids, out, num_rows, width, BLOCK_ROWS: tl.constexpr, BLOCK_WIDTH: tl.constexpr
):
    """Row ``ids[j]`` of ``src`` into row ``j`` of ``out``; rows are ``width`` words long.

    A program copies a block of ``BLOCK_ROWS`` rows by ``BLOCK_WIDTH`` words, so a warp reads
    and writes consecutive words of a row (coalesced, vectorised where aligned).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    words = tl.program_id(1) * BLOCK_WIDTH + tl.arange(0, BLOCK_WIDTH)
    inside = rows < num_rows
    segment = tl.load(ids + rows, mask=inside, other=0)
    mask = inside[:, None] & (words[None, :] < width)
    row = tl.load(src + segment[:, None] * width + words[None, :], mask=mask)
    tl.store(out + rows[:, None] * width + words[None, :], row, mask=mask)


@triton.jit
def _hit_block(
    values, ids, top, num_rows, width, BLOCK_ROWS: tl.constexpr, BLOCK_WIDTH: tl.constexpr
):
    """One program's block of items, and which equal their segment's extremum.

    Returns the rows, columns and mask of the block, each item's offset into ``top``, and the
    hits (a NaN item hits a NaN extremum, as in ``_kernels._hits``).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    columns = tl.program_id(1) * BLOCK_WIDTH + tl.arange(0, BLOCK_WIDTH)
    inside = rows < num_rows
    segment = tl.load(ids + rows, mask=inside, other=0)
    mask = inside[:, None] & (columns[None, :] < width)
    at_segment = segment[:, None] * width + columns[None, :]
    item = tl.load(values + rows[:, None] * width + columns[None, :], mask=mask)
    extremum = tl.load(top + at_segment, mask=mask)
    hit = (item == extremum) | ((item != item) & (extremum != extremum))
    return rows, columns, mask, at_segment, hit & mask


@triton.jit
def count_extrema(
    values, ids, top, ties, num_rows, width, BLOCK_ROWS: tl.constexpr, BLOCK_WIDTH: tl.constexpr
):
    """``ties[s, f]`` += the items of segment ``s`` whose feature ``f`` equals ``top[s, f]``.

    The counts are integers added atomically, so their order does not change them; only the
    hits (a few per segment and feature) issue an atomic.
    """
    _, _, _, at_segment, hit = _hit_block(
        values, ids, top, num_rows, width, BLOCK_ROWS, BLOCK_WIDTH
    )
    tl.atomic_add(ties + at_segment, hit.to(tl.int32), mask=hit)


@triton.jit
def extremum_grad(
    values,
    ids,
    top,
    share,
    out,
    num_rows,
    width,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_WIDTH: tl.constexpr,
):
    """``out[j, f] = hit[j, f] * share[ids[j], f]``: each extremum's part of the gradient.

    The product (not a select) keeps what the unfused ``mask * broadcast(share)`` gives
    bit for bit: ``-0.0`` and NaN where a missed item meets a negative or infinite share.
    """
    rows, columns, mask, at_segment, hit = _hit_block(
        values, ids, top, num_rows, width, BLOCK_ROWS, BLOCK_WIDTH
    )
    part = tl.load(share + at_segment, mask=mask)
    tl.store(out + rows[:, None] * width + columns[None, :], hit.to(part.dtype) * part, mask=mask)
