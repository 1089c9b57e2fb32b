"""The numba kernels of [`_jit`][raggedarray._jit]; importing this module imports numba.

Each kernel walks the items of whole segments in order, one task per range of segments
(``tasks``: ``(T + 1,)`` segment boundaries, balanced by items), so a range runs on one thread
and no two threads write the same row. The ``_parallel`` kernels spread the tasks over
numba's threads; the ``_serial`` ones run them in the calling thread. They are separate
functions (not one function compiled twice) so numba's on-disk cache keeps both.
"""

from __future__ import annotations

import numba  # noqa: F401  (_jit reads numba.config and set_num_threads through here)
import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _scan_range(x, offsets, first, last, out, acc_like, reverse):  # pragma: no cover
    features = x.shape[1]
    acc = np.zeros(features, acc_like.dtype)
    for s in range(first, last):
        a, b = offsets[s], offsets[s + 1]
        start, stop, step = (b - 1, a - 1, -1) if reverse else (a, b, 1)
        acc[:] = 0
        for i in range(start, stop, step):
            for f in range(features):
                acc[f] += x[i, f]
                out[i, f] = acc[f]


@njit(cache=True, nogil=True)
def _arg_range(x, offsets, first, last, out, largest):  # pragma: no cover
    features = x.shape[1]
    best = np.empty(features, x.dtype)
    for s in range(first, last):
        a, b = offsets[s], offsets[s + 1]
        if a == b:
            out[s, :] = 0
            continue
        for f in range(features):
            best[f] = x[a, f]
            out[s, f] = 0
        for i in range(a + 1, b):
            for f in range(features):
                v = x[i, f]
                c = best[f]
                # the first strictly better item wins (ties keep the first); a NaN beats
                # any number and no later NaN replaces it, as torch.argmax/argmin
                better = (v > c) if largest else (v < c)
                if better or (v != v and c == c):
                    best[f] = v
                    out[s, f] = i - a


@njit(cache=True, nogil=True, parallel=True)
def scan_parallel(x, offsets, tasks, out, acc_like, reverse):  # pragma: no cover
    for t in prange(tasks.shape[0] - 1):
        _scan_range(x, offsets, tasks[t], tasks[t + 1], out, acc_like, reverse)


@njit(cache=True, nogil=True)
def scan_serial(x, offsets, tasks, out, acc_like, reverse):  # pragma: no cover
    for t in range(tasks.shape[0] - 1):
        _scan_range(x, offsets, tasks[t], tasks[t + 1], out, acc_like, reverse)


@njit(cache=True, nogil=True, parallel=True)
def arg_parallel(x, offsets, tasks, out, largest):  # pragma: no cover
    for t in prange(tasks.shape[0] - 1):
        _arg_range(x, offsets, tasks[t], tasks[t + 1], out, largest)


@njit(cache=True, nogil=True)
def arg_serial(x, offsets, tasks, out, largest):  # pragma: no cover
    for t in range(tasks.shape[0] - 1):
        _arg_range(x, offsets, tasks[t], tasks[t + 1], out, largest)


@njit(cache=True, nogil=True)
def _share_range(x, offsets, first, last, top, grad, out):  # pragma: no cover
    features = x.shape[1]
    count = np.zeros(features, np.int64)
    share = np.empty(features, x.dtype)
    miss = np.empty(features, x.dtype)
    zero = np.zeros(1, x.dtype)
    for s in range(first, last):
        a, b = offsets[s], offsets[s + 1]
        count[:] = 0
        for i in range(a, b):  # the extrema of each feature (NaN hits a NaN extremum)
            for f in range(features):
                v = x[i, f]
                t = top[s, f]
                if v == t or (v != v and t != t):
                    count[f] += 1
        for f in range(features):
            share[f] = max(count[f], 1)  # (in the values' dtype, as torch's division)
            share[f] = grad[s, f] / share[f]
            miss[f] = share[f] * zero[0]  # 0, -0.0 or NaN: what mask * share gives a miss
        for i in range(a, b):  # the segment is still in cache
            for f in range(features):
                v = x[i, f]
                t = top[s, f]
                out[i, f] = share[f] if v == t or (v != v and t != t) else miss[f]


@njit(cache=True, nogil=True, parallel=True)
def share_parallel(x, offsets, tasks, out, top, grad):  # pragma: no cover
    for t in prange(tasks.shape[0] - 1):
        _share_range(x, offsets, tasks[t], tasks[t + 1], top, grad, out)


@njit(cache=True, nogil=True)
def share_serial(x, offsets, tasks, out, top, grad):  # pragma: no cover
    for t in range(tasks.shape[0] - 1):
        _share_range(x, offsets, tasks[t], tasks[t + 1], top, grad, out)
