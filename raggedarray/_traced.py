"""Autograd functions for max, min, prod and cumsum where eager's own ones cannot run.

Eager autograd records ``SegmentExtremum`` and ``SegmentProd`` (``_kernels``) and
``_order``'s ``_LinearScan``, whose passes read the host and write into buffers in place.
A compiled graph and the ``torch.func`` transforms (``grad``, ``vmap``, ``jvp``,
``jacrev``, ``jacfwd``) need functions in the ``setup_context`` style built from
out-of-place torch operations. Before these, the kernels there were plain torch operations
differentiated by torch, whose derivative is not eager's:

- max/min (``scatter_reduce``): it counts the zeros the output starts from as ties wherever
  an extremum is 0 (an all-zero ReLU feature: each of two true ties got a third of the
  gradient), and gives NaN to every item of a feature that holds a NaN, where eager sends
  the gradient to the NaN alone;
- prod (``scatter_reduce``): it has no forward-mode derivative (``torch.func.jvp`` returned
  zeros) and no vmap rule for its backward (``vmap(grad(...))`` raised);
- cumsum: its values for infinities and NaN are put in place with ``torch.where``, whose
  derivative gave the items whose sums it replaced no gradient.

Dynamo refuses a function that defines ``jvp``, so compiled graphs get ``GraphExtremum``
and ``torch.func`` the ``Transformed*`` functions.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _order
from ._kernels import (
    broadcast,
    extremum_ties,
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
        return raw_extremum(values, _partition(values, offsets), op)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, Any, str], output: Any) -> None:
        values, offsets, _ = inputs
        ctx.save_for_backward(values, offsets, output)
        ctx.save_for_forward(values, offsets, output)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        values, offsets, out = ctx.saved_tensors
        part = _partition(values, offsets)
        return recorded_extremum_grad(values, out, grad, part), None, None


class TransformedExtremum(GraphExtremum):
    """Segment max/min under ``torch.func``: ``GraphExtremum`` with a forward mode."""

    generate_vmap_rule = True

    @staticmethod
    def jvp(ctx: Any, tangent: Any, *_: Any) -> Any:
        """The mean tangent of the ties (NaN ties: of the NaNs), as the backward shares."""
        values, offsets, out = ctx.saved_tensors
        part = _partition(values, offsets)
        hit, ties = extremum_ties(values, out, part)
        return segment_sum(hit * tangent, part) / ties


class TransformedProd(torch.autograd.Function):
    """Segment product under ``torch.func``, with the eager gradient and a forward mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(values: Any, offsets: Any) -> Any:
        return raw_prod(values, _partition(values, offsets))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, Any], output: Any) -> None:
        ctx.save_for_backward(*inputs, output)
        ctx.save_for_forward(*inputs, output)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        values, offsets, out = ctx.saved_tensors
        part = _partition(values, offsets)
        return prod_partials(values, out, part) * broadcast(grad, part), None

    @staticmethod
    def jvp(ctx: Any, tangent: Any, *_: Any) -> Any:
        values, offsets, out = ctx.saved_tensors
        part = _partition(values, offsets)
        return segment_sum(prod_partials(values, out, part) * tangent, part)


class TransformedScan(torch.autograd.Function):
    """Running sums under ``torch.func``, with the running sum's derivative at any value.

    The values are those of the eager path for infinities and NaN (``_order``'s
    ``_non_finite_scan``, which puts them in place with ``torch.where``); differentiating
    that ``where`` gave no gradient to the items whose sums it replaced, where eager (and
    ``torch.cumsum``) gives every item the sum of the gradients from it to its segment's
    end: the sum is linear, its derivative does not depend on the values.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(flat: Any, offsets: Any) -> Any:
        return _order._non_finite_scan(flat, _partition(flat, offsets))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, Any], output: Any) -> None:
        offsets = inputs[1]
        ctx.save_for_backward(offsets)
        ctx.save_for_forward(offsets)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
        (offsets,) = ctx.saved_tensors
        return _order.sums_to_the_end(grad, _partition(grad, offsets)), None

    @staticmethod
    def jvp(ctx: Any, tangent: Any, *_: Any) -> Any:
        (offsets,) = ctx.saved_tensors
        return _order.cumsum(tangent, _partition(tangent, offsets))


def _partition(values: Any, offsets: Any) -> Partition:
    """The partition of ``offsets`` for ``values``, made inside the function.

    The functions take the offsets, not a partition: dynamo cannot carry a partition made
    outside (with the outer graph's symbolic sizes) into a function's own graph, and
    ``torch.func`` fails an internal assert on tensors made inside a transform and read by
    a function's forward other than as its arguments.
    """
    return Partition(None, offsets=offsets, num_items=values.shape[0])


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
    local = _order.local_positions(part, device)
    longest = part.max_length if part.host is not None else int(part.lengths(device).max())
    features = values.shape[1]
    padded = values.new_ones((part.num_segments, longest + 2, features))
    padded = padded.index_put((ids, local + 1), values)  # a 1 before and after each segment
    before = padded.cumprod(1)  # before[s, p]: the product of the items ahead of item p
    after = padded.flip(1).cumprod(1).flip(1)  # after[s, p + 2]: of the items behind it
    others = before[ids, local] * after[ids, local + 2]
    zeros = segment_sum((values == 0).any(1, keepdim=True).to(values.dtype), part)
    return torch.where(broadcast(zeros, part) > 0, others, broadcast(out, part) / values)
