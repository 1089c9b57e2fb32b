"""The Triton kernel of [`_triton`][raggedarray._triton]; importing this module imports Triton.

Triton reads a kernel's source and resolves its names in this module's globals, so the kernel
lives at the top level of a module of its own, with no annotations but ``tl.constexpr``.
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
