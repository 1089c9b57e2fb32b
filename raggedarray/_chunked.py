"""Per-item masks reduced per segment over cache-sized row ranges (CPU kernels).

``argmax``/``argmin``, ``any`` and ``all`` each reduce a 0/1 mask of the items (the items
equal to their segment's extremum, the zeros, the nonzeros). Written for the whole buffer,
that mask is a fresh ``(N, F)`` temporary: at N = 300 000, F = 64 float32 its allocation,
first touch and the passes over it cost 3-4x the floor ``values.sum(0)`` on this project's
2-core machine. Here the mask is written one range of rows at a time into one reused buffer
of ``CHUNK_BYTES``, so it stays in cache, and each range is reduced at once by a sparse
product whose entries weigh item ``j`` of a segment by ``L - j`` (``L`` the longest segment
of the range, so every weight is at least 1): the product's ``"amax"`` over a segment is 0
when the mask has no 1 there, and otherwise ``L`` minus the position of its first 1.
Measured side by side at N = 300 000, m = 10 000, F = 64 (one thread): argmax 1.9-2.1x the
floor in ranges of 2-8 MiB, against 3.9x with whole-buffer temporaries.

Ranges are aligned to segments (a segment longer than a range is a range of its own) and
planned once per partition, row count and dtype. Torch is imported by this module; import
it lazily.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import _offsets
from ._partition import Partition, _csr

# The mask buffer's size: ranges of 2, 8 and 32 MiB measured 2.4x, 2.1x and 1.9x the floor
# for argmax on one thread, and 2.2x, 1.5x and 1.3-1.5x on two.
CHUNK_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One range of whole segments.

    Attributes:
        segments: the segments ``s0:s1`` of the range.
        rows: their items ``offsets[s0]:offsets[s1]``.
        ids: ``(rows,)`` int64 segment of each item, counted from ``s0``.
        weights: ``(s1 - s0, rows)`` CSR matrix, item ``j`` of a segment weighing ``L - j``.
        longest: ``L``, the longest segment of the range.
    """

    segments: slice
    rows: slice
    ids: Any
    weights: Any
    longest: int


def plan(part: Partition, rows: int, dtype: Any) -> tuple[list[Chunk], Any]:
    """Ranges of whole segments of about ``rows`` items each (cached on the partition).

    Also returns the ``(m, 1)`` ``L`` of each segment's range, in ``dtype``.
    """

    def build() -> tuple[list[Chunk], Any]:
        host = part.host
        assert host is not None  # callers check: ranges need the offsets on the host
        lengths = part.host_lengths
        m = part.num_segments
        chunks = []
        start = 0
        while start < m:
            # the last segment that starts within ``rows`` items of this one; at least one
            stop = int(np.searchsorted(host, host[start] + rows, side="right")) - 1
            stop = min(max(stop, start + 1), m)
            offsets = host[start : stop + 1] - host[start]
            position = _offsets.positions(offsets)
            longest = int(lengths[start:stop].max())
            weights = torch.from_numpy(longest - position)
            chunks.append(
                Chunk(
                    segments=slice(start, stop),
                    rows=slice(int(host[start]), int(host[stop])),
                    ids=torch.from_numpy(_offsets.segment_ids(offsets)),
                    weights=_csr(torch.from_numpy(offsets), int(offsets[-1]), dtype, weights),
                    longest=longest,
                )
            )
            start = stop
        longest_of_segment = torch.empty((m, 1), dtype=dtype)
        for chunk in chunks:
            longest_of_segment[chunk.segments] = chunk.longest
        return chunks, longest_of_segment

    return part._get(("chunks", rows, dtype), build)


def first_hits(
    part: Partition,
    features: int,
    dtype: Any,
    fill: Callable[[Chunk, Any], None],
    *,
    op: str = "amax",
) -> tuple[Any, Any]:
    """Reduce the masks that ``fill(chunk, out)`` writes, one range at a time.

    Args:
        part: the partition (host offsets known, CPU).
        features: ``F``.
        dtype: float32 or float64, the mask's dtype.
        fill: writes the ``(rows, F)`` 0/1 mask of a chunk into ``out``.
        op: ``"amax"``: 0 where a segment's mask has no 1, else ``L`` minus the position of
            its first 1. ``"amin"``: 0 where the mask has a 0 (or the segment is empty).

    Returns:
        The ``(m, F)`` reduced weights and the ``(m, 1)`` ``L`` of each segment's range.
    """
    rows = max(1, CHUNK_BYTES // (features * dtype.itemsize))
    chunks, longest = plan(part, rows, dtype)
    size = max(c.rows.stop - c.rows.start for c in chunks)
    buffer = torch.empty((size, features), dtype=dtype)
    out = torch.empty((part.num_segments, features), dtype=dtype)
    for chunk in chunks:
        if chunk.rows.start == chunk.rows.stop:  # empty segments only
            out[chunk.segments] = 0
            continue
        mask = buffer[: chunk.rows.stop - chunk.rows.start]
        fill(chunk, mask)
        out[chunk.segments] = torch.sparse.mm(chunk.weights, mask, reduce=op)
    return out, longest
