"""One-pass CPU kernels compiled by numba: segment cumsum, argmax, max/min's backward.

torch has no segmented scan and no segment argmax, so the torch paths of
[`_order`][raggedarray._order] build them from several passes over the buffer and its
masks. At N = 300 000, m = 10 000, F = 64 float32 on this project's 2-core machine the
blocked scan costs 7-16x the floor ``values.sum(0)`` and the masked argmax 2.5-5x; a loop
that walks each segment's items once, in compiled code, costs ~2x and ~1x
(``benchmarks/bench_segment_ops.py``). The kernels live in
[`_jit_kernels`][raggedarray._jit_kernels]; this module decides when they run and feeds them.
The backward of max and min takes six passes in torch (a broadcast of the extrema, the
mask, the tie counts, a broadcast of the shares, the product); its compiled loop reads each
segment twice while it is in cache.

They run when numba imports (``pip install 'raggedarray[numba]'``), the values are a CPU
tensor of a dtype they take with at least ``MIN_VALUES`` values, the partition knows its
offsets on the host, no ``torch.compile`` graph is being traced, and ``RAGGEDARRAY_NUMBA``
is not ``0``; otherwise the torch paths run, with the same results. The running sums add
float32 and float64 items in float64 (as ``torch.cumsum`` does on a CPU) and integers in
int64, one item after the other, so NaN and infinities behave as in a per-segment
``torch.cumsum``.

Threads: as many as ``torch.get_num_threads()`` (capped by numba's), over ranges of whole
segments balanced by items. One thread, and any process forked after this one ran the
parallel kernels (GNU OpenMP cannot run a pool in a forked child), run the serial kernels
instead; parallel calls hold a lock, since numba's fallback thread pool is not reentrant.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import numpy as np
import torch

from . import _backend
from ._partition import Partition

# Off with RAGGEDARRAY_NUMBA=0 (read at import; tests switch it on the module).
ENABLED = os.environ.get("RAGGEDARRAY_NUMBA", "1") != "0"
# Smaller inputs take the torch paths: there the compiled pass saves well under a
# millisecond a call, while the first call in a process spends ~0.8 s importing numba and
# loading the kernels from its cache (~2-3 s compiling them, once per install and dtype).
MIN_VALUES = 1 << 18
# Tasks per thread: ranges of whole segments, several per thread so one long segment
# does not leave the other threads idle for long.
TASKS_PER_THREAD = 4

_SCAN_DTYPES = {
    torch.float32: np.float64,
    torch.float64: np.float64,
    torch.int64: np.int64,
}
_ARG_DTYPES = frozenset(
    (
        torch.float32,
        torch.float64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
    )
)

_kernels: Any = None  # the kernels module once imported, False where numba does not import
_lock = threading.Lock()
_parallel_pid: int | None = None  # the process that started numba's thread pool


def _load() -> Any:
    global _kernels
    if _kernels is None:
        try:
            from . import _jit_kernels
        except ModuleNotFoundError as error:
            _kernels = False
            if error.name not in ("numba", "llvmlite"):  # installed, but broken
                _cannot_load(error)
        except Exception as error:  # e.g. too old for this numpy, or no cache directory
            _kernels = False
            _cannot_load(error)
        else:
            _kernels = _jit_kernels
    return _kernels or None


def _cannot_load(error: BaseException) -> None:
    warnings.warn(
        f"raggedarray: numba is installed but its compiled kernels did not load ({error!r}); "
        "cumsum, argmax/argmin and the backward of max/min take the slower torch paths "
        "(RAGGEDARRAY_NUMBA=0 silences this)",
        RuntimeWarning,
        stacklevel=4,
    )


def available() -> bool:
    """Whether the compiled kernels can run here (numba imports and they are not turned off)."""
    return ENABLED and _load() is not None


def _usable(flat: Any, part: Partition, dtypes: Any) -> bool:
    return (
        type(flat) is torch.Tensor  # not a subclass, whose data numpy may not see
        and flat.device.type == "cpu"
        and flat.numel() >= MIN_VALUES
        and part.host is not None
        and flat.dtype in dtypes
        and flat.layout == torch.strided
        and not _backend.compiling()
        and not _backend.transformed(flat)
        and available()
    )


def scans(flat: Any, part: Partition) -> bool:
    """Whether [`cumsum`][raggedarray._jit.cumsum] takes ``flat`` (N, F) over ``part``."""
    return _usable(flat, part, _SCAN_DTYPES)


def finds(flat: Any, part: Partition) -> bool:
    """Whether [`arg_extremum`][raggedarray._jit.arg_extremum] takes ``flat`` over ``part``."""
    return _usable(flat, part, _ARG_DTYPES)


def cumsum(flat: Any, part: Partition) -> Any:
    """``(N, F)`` running sums of ``flat`` restarting at each segment (differentiable).

    The gradient of a running sum is the running sum of the gradient from the segment's
    end, which the same kernel computes walking backwards.
    """
    return _Scan.apply(flat, part, False)


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, flat: Any, part: Partition, reverse: bool) -> Any:
        ctx.part, ctx.reverse = part, reverse
        return _scan(flat, part, reverse=reverse)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        return _Scan.apply(grad, ctx.part, not ctx.reverse), None, None


def _readable(t: Any) -> Any:
    """``t`` as numpy may read it: detached, contiguous, its negative bit resolved.

    (A contiguous ``torch._neg_view`` stays contiguous, and ``.numpy()`` refuses the bit.)
    """
    return t.detach().resolve_neg().contiguous()


def _scan(flat: Any, part: Partition, *, reverse: bool) -> Any:
    x = _readable(flat)
    out = _backend.empty(tuple(x.shape), x.dtype, x.device)
    acc_like = np.zeros(1, _SCAN_DTYPES[x.dtype])
    _run("scan", part, x.numpy(), out.numpy(), acc_like, reverse)
    return out


def arg_extremum(flat: Any, part: Partition, op: str) -> Any:
    """``(m, F)`` int64 local position of the first ``"amax"``/``"amin"`` of each segment.

    A NaN is the extremum where there is one (the first NaN), ties give the first item, and
    empty segments give 0, as [`_order.arg_extremum`][raggedarray._order.arg_extremum].
    """
    x = _readable(flat)
    out = torch.empty((part.num_segments, x.shape[1]), dtype=torch.int64)
    _run("arg", part, x.numpy(), out.numpy(), op == "amax")
    return out


_SHARE_DTYPES = frozenset((torch.float32, torch.float64))


def shares(flat: Any, part: Partition) -> bool:
    """Whether [`extremum_grad`][raggedarray._jit.extremum_grad] takes ``flat`` over ``part``."""
    return _usable(flat, part, _SHARE_DTYPES)


def extremum_grad(flat: Any, top: Any, grad: Any, part: Partition) -> Any:
    """``(N, F)`` gradient of the segment max/min ``top`` of ``flat`` for upstream ``grad``.

    Each segment's items are read twice while they are in cache: once to count the
    extrema of every feature, once to give each its share (``grad / count``; the others
    get ``0 * share``). The same bits as the torch path's ``mask * broadcast(grad /
    ties)``, in one pass over the buffer where that took six.
    """
    x = _readable(flat)
    out = _backend.empty(tuple(x.shape), x.dtype, x.device)
    top, grad = _readable(top.to(x.dtype)), _readable(grad.to(x.dtype))
    _run("share", part, x.numpy(), out.numpy(), top.numpy(), grad.numpy())
    return out


def _run(kind: str, part: Partition, x: np.ndarray, out: np.ndarray, *args: Any) -> None:
    """Run kernel ``kind`` on ``x`` into ``out``, on torch's number of threads."""
    global _parallel_pid
    kernels = _load()
    numba = kernels.numba
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    forked = _parallel_pid is not None and _parallel_pid != os.getpid()
    if threads <= 1 or forked or part.num_segments <= 1:
        tasks = _tasks(part, 1)
        getattr(kernels, f"{kind}_serial")(x, part.host, tasks, out, *args)
        return
    tasks = _tasks(part, threads * TASKS_PER_THREAD)
    with _lock:
        _parallel_pid = os.getpid()
        numba.set_num_threads(threads)
        getattr(kernels, f"{kind}_parallel")(x, part.host, tasks, out, *args)


def _tasks(part: Partition, count: int) -> np.ndarray:
    """Segment boundaries of ``count`` ranges of whole segments with about equal items."""

    def build() -> np.ndarray:
        host = part.host
        assert host is not None
        if count <= 1:
            return np.array([0, part.num_segments], dtype=np.int64)
        marks = np.linspace(0, part.num_items, count + 1)
        bounds = np.searchsorted(host, marks, side="left").astype(np.int64)
        bounds[0], bounds[-1] = 0, part.num_segments
        return np.unique(bounds)

    return part._get(("jit_tasks", count), build)
