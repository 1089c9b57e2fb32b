"""The probe call of ``map``: what one item costs a call of a function, counted as it runs.

``probe`` calls the function on a few items under a torch function mode that sees every
operation: it records the largest tensor (a convolution counts its unfolded input, which is
``kernel size`` times larger than its output), the bytes of all outputs, and the
multiply-adds of convolutions and matrix products. ``map`` sizes its calls from these.
A compiled function is measured through the one it compiles, and the buffers of a module
the probe changed are put back afterwards (``map`` then calls that module once per batch:
chunks would update its state once each).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import _backend


def probe(fn: Any, chunk: Any) -> tuple[Any, Costs]:
    """Call ``fn`` on ``chunk`` while measuring its costs per item (see ``Costs``)."""
    items = max(chunk.shape[0], 1)
    if not _backend.is_tensor(chunk):
        output = fn(chunk)
        size = float(getattr(output, "nbytes", 0)) / items
        return output, Costs(size, size, 0.0)
    from torch.overrides import TorchFunctionMode

    counts = _Counts(chunk.element_size() * chunk.numel())

    class Measure(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            _measure(func, args, result, counts)
            return result

    with Measure():
        output = fn(chunk)
    return output, Costs(counts.largest / items, counts.total / items, counts.macs / items)


def uncompiled(fn: Any) -> Any:
    """The function ``torch.compile`` made ``fn`` from (``fn`` itself if it is not compiled)."""
    module = getattr(fn, "_orig_mod", None)  # an OptimizedModule
    if module is not None and isinstance(fn, _backend.torch_module().nn.Module):
        return module
    return getattr(fn, "_torchdynamo_orig_callable", fn)


def buffers_of(module: Any, torch: Any) -> list[tuple[Any, str, Any, int | None, Any]]:
    """``(owner, name, buffer, version, copy)`` of a module's buffers, to put back.

    Uninitialised (lazy) buffers hold no values to keep: the probe's call initialises them,
    as the first call of the batch would. An inference tensor has no version (and cannot
    be written outside inference mode): only a new tensor in its place is undone.
    """
    lazy = torch.nn.parameter.is_lazy
    kept: list[tuple[Any, str, Any, int | None, Any]] = []
    for owner in module.modules():
        for name, b in owner.named_buffers(recurse=False):
            if lazy(b):
                continue
            if b.is_inference():
                kept.append((owner, name, b, None, None))
            else:
                kept.append((owner, name, b, b._version, b.detach().clone()))
    return kept


def put_back(buffers: list[tuple[Any, str, Any, int | None, Any]]) -> bool:
    """Undo what the probe did to a module's buffers; whether it changed any.

    A buffer changed when ``fn`` put a new tensor in its place, wrote into it (its version
    moved), or holds other bytes: torch's batch norm updates its running statistics
    without moving their version. Only those are touched.
    """
    if not buffers:
        return False
    changed = False
    with _backend.torch_module().no_grad():
        for owner, name, buffer, version, before in buffers:
            if getattr(owner, name, None) is not buffer:  # fn assigned a new tensor
                setattr(owner, name, buffer)
                changed = True
            if version is not None and (buffer._version != version or _differ(buffer, before)):
                buffer.copy_(before)
                changed = True
    return changed


def _differ(buffer: Any, before: Any) -> bool:
    """Whether two tensors of one dtype and shape hold other bytes (NaN equals NaN there)."""
    if buffer.numel() == 0:
        return False
    torch = _backend.torch_module()
    if buffer.is_quantized:  # (a byte view of one crashes the process)
        return not torch.equal(buffer, before)
    try:
        mine = buffer.detach().contiguous().reshape(-1).view(torch.uint8)
        theirs = before.contiguous().reshape(-1).view(torch.uint8)
    except (RuntimeError, TypeError):  # no bytes to view: by value
        return not torch.equal(buffer, before)
    return not torch.equal(mine, theirs)


class Costs(NamedTuple):
    """What one item costs a call, as the probe counts it.

    ``largest``: bytes of the largest tensor; ``total``: bytes of all operations' outputs;
    ``macs``: multiply-adds of its convolutions and matrix products.
    """

    largest: float
    total: float
    macs: float

    @property
    def intensity(self) -> float:
        """Multiply-adds per byte written: how much a call computes for what it moves."""
        return self.macs / max(self.total, 1.0)


class _Counts:
    """Running totals of one probe call (bytes and multiply-adds over all items)."""

    def __init__(self, largest: int) -> None:
        self.largest, self.total, self.macs = largest, 0, 0


def _measure(func: Any, args: Any, result: Any, counts: _Counts) -> None:
    torch = _backend.torch_module()
    if not isinstance(result, torch.Tensor) or torch.nn.parameter.is_lazy(result):
        return  # (a lazy module's uninitialised buffer, made in the call: no data yet)
    size = result.element_size() * result.numel()
    counts.total += size
    counts.largest = max(counts.largest, size)
    if len(args) < 2 or not isinstance(args[0], torch.Tensor):
        return
    first, weight = args[0], args[1]
    if not isinstance(weight, torch.Tensor) or weight.ndim == 0 or first.ndim == 0:
        return
    convolution = func in _convolutions(torch)
    if convolution or func in _transposed(torch):
        # weight: (C_out, C_in / groups, *kernel), transposed (C_in, C_out / groups, *kernel).
        # The unfolded input: this many values per output position of a convolution; a
        # transposed one is estimated the same way over its output positions.
        per_position = weight.shape[1] * math.prod(weight.shape[2:])
        unfolded = per_position * math.prod(result.shape[2:]) * result.shape[0]
        counts.largest = max(counts.largest, unfolded * result.element_size())
        # A multiply-add per weight met: by each output value, or by each input value.
        counts.macs += per_position * (result if convolution else first).numel()
    elif func in _products(torch):  # one multiply-add per output and inner index
        counts.macs += result.numel() * first.shape[-1]


def _convolutions(torch: Any) -> tuple[Any, ...]:
    return (torch.conv1d, torch.conv2d, torch.conv3d)


def _transposed(torch: Any) -> tuple[Any, ...]:
    functional = torch.nn.functional
    return (functional.conv_transpose1d, functional.conv_transpose2d, functional.conv_transpose3d)


def _products(torch: Any) -> tuple[Any, ...]:
    tensor = torch.Tensor
    return (
        torch.nn.functional.linear,
        *(torch.matmul, torch.mm, torch.bmm),
        *(tensor.__matmul__, tensor.matmul, tensor.mm, tensor.bmm),
    )
