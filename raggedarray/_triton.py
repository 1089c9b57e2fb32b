"""Triton kernels for what torch has no fast GPU kernel for: broadcasts, max/min backward.

Every sum's and mean's backward, every max's and min's (twice), ``broadcast``, ``softmax``
and the centring in ``var``/``std`` copy ``(m, F)`` per-segment rows to the ``(N, F)`` items.
On CUDA, torch's gathers (``index_select``, ``rows[ids]``, ``embedding``, ``gather``,
``repeat_interleave``) all cost the same per *row*, whatever its width: on an H100 they take
~1.84 ms for 3*10^6 rows of 64 or of 16 float32 features, 0.28 and 0.07 of ``copy_``'s
bandwidth (``benchmarks/bench_gpu_engines.py``). This module's gather copies blocks of rows
with coalesced, vectorised loads and stores, as ``torch.compile`` does for ``rows[ids]``: the
rows are read as 32-bit words (16- or 8-bit where the row's bytes ask for it), so one compiled
kernel per word size serves every dtype, and the copy is exact (NaN payloads, negative zeros,
any bits). On the H100 it broadcast the same 3*10^6 rows in 0.38 ms (F = 64) and 0.23 ms
(F = 16), and a segment sum's forward+backward took 0.89 ms where it took 2.34 ms with
``index_select``: as long as ``values.sum(0)``'s.

The backward of max and min found the extrema again by comparing every item with its
segment's, counted the ties and shared the gradient among them: a broadcast, two NaN tests,
a comparison, two logical ops, a cast, a segment sum, a second broadcast and a product, each a
pass over ``(N, F)``. [`extremum_grad`][raggedarray._triton.extremum_grad] does it in two
kernels that read the items once each, with the same bits.

They run when Triton imports (CUDA builds of torch on Linux bring it), the values are a plain
CUDA tensor broadcast to at least ``MIN_ROWS`` items, no ``torch.compile`` graph is being traced
(the compiler generates its own gather there), no ``torch.func`` transform sees the tensor,
and ``RAGGEDARRAY_TRITON`` is not ``0``; otherwise ``index_select`` runs, with the same
result. The first call in a process compiles a kernel (about a second; Triton caches it on
disk). Should Triton fail to compile or launch one, one warning says so and torch's
operations serve from then on.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import torch

from . import _backend

# Off with RAGGEDARRAY_TRITON=0 (read at import; tests and benchmarks switch it on the module).
ENABLED = os.environ.get("RAGGEDARRAY_TRITON", "1") != "0"
# Fewer rows keep ``index_select``: its cost is ~0.6 ns a row whatever the row's width (an
# H100), so below ~65 000 rows it saves the GPU under ~40 us, about what Triton's launch
# costs the host (a training step of ~9 000 images measured no gain).
MIN_ROWS = 1 << 16
# Words per program: a block of rows times a block of a row's words.
BLOCK_WORDS = 4096
MAX_BLOCK_WIDTH = 128

_kernel: Any = None  # the jitted kernel once built, False where Triton does not import or failed
# the extremum backward's two kernels once built, False where they failed (see extremum_grad)
_extremum: Any = None


def _load() -> Any:
    global _kernel
    if _kernel is None:
        try:
            _kernel = _build()
        except ModuleNotFoundError as error:
            _kernel = False
            if error.name != "triton":  # installed, but broken
                _cannot_run(error)
        except Exception as error:  # an install without a working compiler, say
            _kernel = False
            _cannot_run(error)
    return _kernel or None


def _build() -> Any:
    from . import _triton_kernels

    return _triton_kernels.gather_rows


def _cannot_run(error: BaseException, what: str = "broadcast kernel") -> None:
    instead = {
        "broadcast kernel": "broadcasts on the GPU take index_select",
        "max/min backward kernels": "the backward of max and min takes torch's operations",
    }[what]
    warnings.warn(
        f"raggedarray: the Triton {what} could not run ({error!r}); {instead}, which is "
        "slower (RAGGEDARRAY_TRITON=0 silences this)",
        RuntimeWarning,
        stacklevel=4,
    )


def _give_up(error: BaseException) -> None:
    """Warn once and let ``index_select`` serve from now on."""
    global _kernel
    _kernel = False
    _cannot_run(error)


def available() -> bool:
    """Whether the kernel can run here (Triton imports and it is not turned off)."""
    return ENABLED and _load() is not None


def takes(rows: Any, num_items: int) -> bool:
    """Whether [`broadcast`][raggedarray._triton.broadcast] takes ``(m, F)`` ``rows`` to N items."""
    return (
        not _backend.compiling()  # first: under dynamic shapes N >= MIN_ROWS would be a guard
        and num_items >= MIN_ROWS
        and type(rows) is torch.Tensor  # not a subclass, whose storage may not be its data
        and rows.device.type == "cuda"
        and rows.layout == torch.strided
        and not _backend.transformed(rows)
        and available()
    )


def _words(rows: Any) -> Any:
    """``rows`` (contiguous, ``(m, F)``) seen as the widest words its row bytes divide into."""
    data = rows.view(torch.uint8) if rows.dtype != torch.uint8 else rows
    width = data.shape[1]
    for word, size in ((torch.int32, 4), (torch.int16, 2)):
        if width % size == 0 and data.data_ptr() % size == 0:
            return data.view(word)
    return data


def broadcast(rows: Any, ids: Any, out: Any | None = None) -> Any:
    """``(N, F)`` tensor whose item ``j`` is ``rows[ids[j]]``: ``index_select`` at copy speed.

    Args:
        rows: ``(m, F)`` CUDA tensor of any dtype (made contiguous).
        ids: ``(N,)`` int64 segment of every item, on the same device, each in ``[0, m)``.
        out: optional ``(N, F)`` tensor of ``rows``' dtype to write into; the kernel
            writes a contiguous one, ``index_select`` any other (as its ``out=``).

    Returns:
        ``out``, or a new tensor, holding the rows' exact bits.
    """
    rows = rows.resolve_conj().resolve_neg().contiguous()  # lazy bits, as index_select reads
    ids = ids.contiguous()  # (the kernel steps through them one element at a time)
    num_items = ids.shape[0]
    if out is None:
        out = torch.empty((num_items, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    kernel = _load()
    # the kernel writes row j at j * F elements from out's start: any other out (padded rows,
    # a transposed view, another shape or dtype) is index_select's to fill, or to refuse
    fits = (
        out.is_contiguous()
        and tuple(out.shape) == (num_items, rows.shape[1])
        and out.dtype == rows.dtype
        and out.device == rows.device
    )
    if kernel is None or not fits:
        return torch.index_select(rows, 0, ids, out=out)
    if out.numel() == 0:
        return out
    source, target = _words(rows), _words(out)
    if source.dtype != target.dtype:  # the output's start is less aligned: copy it bytewise
        source, target = rows.view(torch.uint8), out.view(torch.uint8)
    width = source.shape[1]
    block_width = min(MAX_BLOCK_WIDTH, 1 << (width - 1).bit_length())
    block_rows = BLOCK_WORDS // block_width
    grid = (-(-num_items // block_rows), -(-width // block_width))
    try:
        # (the interpreter, TRITON_INTERPRET=1, runs it on CPU tensors: tests do)
        device = torch.cuda.device(rows.device) if rows.is_cuda else contextlib.nullcontext()
        with device:
            kernel[grid](
                source,
                ids,
                target,
                num_items,
                width,
                BLOCK_ROWS=block_rows,
                BLOCK_WIDTH=block_width,
            )
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as error:
        _give_up(error)
        return torch.index_select(rows, 0, ids, out=out)
    return out


def extremum_grad(values: Any, top: Any, grad: Any, ids: Any) -> Any | None:
    """The gradient of segment max/min ``top`` of ``values``, fused: 3 passes over the items.

    The same bits as ``mask * broadcast(grad / ties)`` with ``mask = _kernels._hits(values,
    broadcast(top))`` and ``ties`` its segment sums (the extrema of a segment and feature
    share its gradient equally; NaN hits a NaN extremum), which took 9 passes over
    ``(N, F)``: one kernel counts the extrema of every segment and feature (integers added
    atomically, so the order does not matter), one writes each item's share. Callers check
    [`takes`][raggedarray._triton.takes] first.

    Args:
        values: ``(N, F)`` contiguous floating CUDA tensor.
        top: ``(m, F)`` extrema of its segments, of ``values``' dtype.
        grad: ``(m, F)`` gradient of ``top``.
        ids: ``(N,)`` int64 segment of every item.

    Returns:
        The ``(N, F)`` gradient of ``values``, or None where the kernels cannot run (the
        caller then takes the unfused path).
    """
    global _extremum
    if _extremum is None:  # (the module imports: takes() loaded the broadcast kernel from it)
        from . import _triton_kernels

        _extremum = (_triton_kernels.count_extrema, _triton_kernels.extremum_grad)
    num_items, width = values.shape
    if _extremum is False or num_items >= 1 << 31:  # (int32 counts)
        return None
    out = torch.empty_like(values)
    if out.numel() == 0:
        return out
    count, share = _extremum
    ties = torch.zeros(top.shape, dtype=torch.int32, device=top.device)
    block_width = min(MAX_BLOCK_WIDTH, 1 << (width - 1).bit_length())
    blocks = {"BLOCK_ROWS": BLOCK_WORDS // block_width, "BLOCK_WIDTH": block_width}
    # 8 warps hide the counts' scattered atomics: 1.03 ms against 1.60 with 4 at N = 3*10^6,
    # m = 10^5, F = 64 on an H100 (one atomic per extremum, m * F at least)
    blocks["num_warps"] = 8
    grid = (-(-num_items // blocks["BLOCK_ROWS"]), -(-width // block_width))
    values, top, ids = values.contiguous(), top.contiguous(), ids.contiguous()
    try:
        device = torch.cuda.device(values.device) if values.is_cuda else contextlib.nullcontext()
        with device:
            count[grid](values, ids, top, ties, num_items, width, **blocks)
            part = (grad / ties.to(grad.dtype).clamp(min=1)).contiguous()
            share[grid](values, ids, top, part, out, num_items, width, **blocks)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as error:
        _extremum = False
        _cannot_run(error, "max/min backward kernels")
        return None
    return out
