"""Bring glibc's heap to the state a long-running process reaches anyway, once, up front.

glibc's ``malloc`` serves a request from its heap below an mmap threshold and from a fresh
mapping above it. The threshold starts at 128 KiB and rises to the size of the largest mapped
block freed so far, up to 32 MiB; the heap's unused top is returned to the kernel whenever it
exceeds twice the threshold. So until a process has freed a block near 32 MiB, a call whose
temporaries together pass twice the threshold returns them to the kernel as it ends, and
faults every page in again on the next call. One call of a ~420k-parameter CNN over 160 16x16
images took 16 ms with ~3 000 page faults in a fresh process, 11 ms with none once a 32 MiB
block had been freed (torch 2.13, 2 threads). Which state a call meets depends on everything
the process ran before it, so timings, and the chunk sizes that ``map`` chose for them, swung
from run to run.

``settle`` frees one block just under 32 MiB, once per process: the threshold goes to its
ceiling and the trim threshold to 64 MiB, the state a process reaches anyway once it frees a
tensor near 32 MiB. The heap may then keep up to 64 MiB it no longer uses. Nothing happens
where the thresholds were set by ``mallopt`` or the ``MALLOC_MMAP_THRESHOLD_`` environment
variable (glibc then keeps them fixed), or on another C library. ``map`` calls ``settle``
unless ``raggedarray.map.SETTLE_HEAP`` is False.
"""

from __future__ import annotations

import ctypes
import platform
import sys

# glibc's ceiling for the dynamic mmap threshold on 64-bit systems, and the block freed to
# reach it: below the ceiling by more than a chunk header, above every lower threshold.
CEILING = 32 << 20
BLOCK = CEILING - (64 << 10)

_settled = False


def settle() -> bool:
    """Free one ``BLOCK``-byte block through glibc, once; True if that happened in this call."""
    global _settled
    if _settled:
        return False
    _settled = True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        malloc, free = libc.malloc, libc.free
    except (OSError, AttributeError):
        return False
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.restype, free.argtypes = None, [ctypes.c_void_p]
    block = malloc(BLOCK)  # a mapping: no page of it is touched
    if not block:
        return False
    free(block)
    return True
