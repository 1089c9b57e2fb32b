"""Autograd functions for max, min and prod where eager's own ones cannot run.

Eager autograd records ``SegmentExtremum`` and ``SegmentProd`` (``_kernels``), whose
backward passes read the host and write into buffers in place. A compiled graph and the
``torch.func`` transforms (``grad``, ``vmap``, ``jvp``, ``jacrev``, ``jacfwd``) need
functions in the ``setup_context`` style built from out-of-place torch operations; before
these, the kernels there were bare ``scatter_reduce`` calls differentiated by torch, whose
derivative is not eager's:

- max/min: it counts the zeros the output starts from as ties wherever an extremum is 0
  (an all-zero ReLU feature: each of two true ties got a third of the gradient), and gives
  NaN to every item of a feature that holds a NaN, where eager sends the gradient to the
  NaN alone;
- prod: it has no forward-mode derivative (``torch.func.jvp`` returned zeros) and no vmap
  rule for its backward (``vmap(grad(...))`` raised).

Dynamo refuses a function that defines ``jvp`` and cannot carry a partition made outside a
function into the function's own graph, so compiled graphs get ``GraphExtremum`` (offsets in,
no ``jvp``) and ``torch.func`` the ``Transformed*`` functions.
"""

from __future__ import annotations

from typing import Any

import torch

from ._kernels import (
    _hits,
    broadcast,
    raw_extremum,
    raw_prod,
    recorded_extremum_grad,
    segment_sum,
)
from ._partition import Partition


class GraphExtremum(torch.autograd.Function):
    """Segment max/min in a compiled graph, with the eager gradient (see the module)."""

    @staticmethod
    def forward(values: Any, offsets: Any, op: str) -> Any:
        return raw_extremum(values, _graph_partition(values, offsets), op)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, Any, str], output: Any) -> None:
        values, offsets, _ = inputs
        ctx.save_for_backward(values, offsets, output)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        values, offsets, out = ctx.saved_tensors
        part = _graph_partition(values, offsets)
        return recorded_extremum_grad(values, out, grad, part), None, None


def _graph_partition(values: Any, offsets: Any) -> Partition:
    return Partition(None, offsets=offsets, num_items=values.shape[0])


class TransformedExtremum(torch.autograd.Function):
    """Segment max/min under ``torch.func``, with the eager gradient and a forward mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(values: Any, part: Partition, op: str) -> Any:
        return raw_extremum(values, part, op)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, Partition, str], output: Any) -> None:
        values, ctx.part, _ = inputs
        ctx.save_for_backward(values, output)
        ctx.save_for_forward(values, output)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        values, out = ctx.saved_tensors
        return recorded_extremum_grad(values, out, grad, ctx.part), None, None

    @staticmethod
    def jvp(ctx: Any, tangent: Any, *_: Any) -> Any:
        """The mean tangent of the ties (NaN ties: of the NaNs), as the backward shares."""
        values, out = ctx.saved_tensors
        hit = _hits(values, broadcast(out, ctx.part))
        return segment_sum(hit * tangent, ctx.part) / segment_sum(hit, ctx.part).clamp(min=1)


class TransformedProd(torch.autograd.Function):
    """Segment product under ``torch.func``, with the eager gradient and a forward mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(values: Any, part: Partition) -> Any:
        return raw_prod(values, part)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, Partition], output: Any) -> None:
        values, ctx.part = inputs
        ctx.save_for_backward(values, output)
        ctx.save_for_forward(values, output)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        values, out = ctx.saved_tensors
        return prod_partials(values, out, ctx.part) * broadcast(grad, ctx.part), None

    @staticmethod
    def jvp(ctx: Any, tangent: Any, *_: Any) -> Any:
        values, out = ctx.saved_tensors
        return segment_sum(prod_partials(values, out, ctx.part) * tangent, ctx.part)


def prod_partials(values: Any, out: Any, part: Partition) -> Any:
    """``(N, F)`` derivative of each segment's product by each of its items, as eager's.

    ``torch.prod``'s backward (and ``SegmentProd``'s) per segment: ``product / item`` where
    the segment holds no zero (NaN for an infinite item), else the product of the other
    items, from running products before and after each item. Here both are computed for
    every segment, without a host read of the values, and each segment takes its own: the
    running products run over a ``(m, n_max + 2, F)`` padded copy, so no infinity or NaN
    of one segment reaches another.
    """
    device = values.device
    ids = part.ids(device)
    local = torch.arange(part.num_items, device=device) - part.offsets(device)[:-1][ids]
    longest = part.max_length if part.host is not None else int(part.lengths(device).max())
    features = values.shape[1]
    padded = values.new_ones((part.num_segments, longest + 2, features))
    padded = padded.index_put((ids, local + 1), values)  # a 1 before and after each segment
    before = padded.cumprod(1)  # before[s, p]: the product of the items ahead of item p
    after = padded.flip(1).cumprod(1).flip(1)  # after[s, p + 2]: of the items behind it
    others = before[ids, local] * after[ids, local + 2]
    zeros = segment_sum((values == 0).any(1, keepdim=True).to(values.dtype), part)
    return torch.where(broadcast(zeros, part) > 0, others, broadcast(out, part) / values)
