"""The small numpy/torch surface the rest of the package needs.

Backends are told apart by type, lazily: torch is only looked at when it has already been
imported, so numpy-only work never pays for importing it. Every function here takes plain
arrays and knows nothing of ragged arrays.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import numpy as np

NUMPY = "numpy"
TORCH = "torch"


def torch_module() -> Any:
    """Import torch on first use and return the module."""
    import torch

    return torch


def loaded_torch() -> Any:
    """The torch module when it has been imported, else None (never imports it).

    A torch another thread is still importing is in ``sys.modules`` half built (no
    ``torch.dtype`` yet): it counts as not imported, since no tensor exists before its
    import ends. The checks run on every operation below catch that case as an
    ``AttributeError`` instead, which costs nothing when torch is whole.
    """
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.__spec__, "_initializing", False):
        return None
    return torch


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing the caller (no host reads, no caches, no numpy)."""
    torch = sys.modules.get("torch")
    try:
        return torch is not None and torch.compiler.is_compiling()
    except AttributeError:  # torch half imported by another thread (see loaded_torch)
        return False


def is_sym_int(x: Any) -> bool:
    """Whether ``x`` is a symbolic int of a ``torch.compile`` trace (a dynamic size)."""
    torch = loaded_torch()
    return torch is not None and isinstance(x, torch.SymInt)


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a ``torch.Tensor`` (without importing torch)."""
    torch = sys.modules.get("torch")
    try:
        return torch is not None and isinstance(x, torch.Tensor)
    except AttributeError:  # torch half imported by another thread (see loaded_torch)
        return False


def backend_of(x: Any) -> str | None:
    """``"numpy"`` or ``"torch"`` for arrays, ``None`` for anything else."""
    if isinstance(x, np.ndarray):
        return NUMPY
    if is_tensor(x):
        return TORCH
    return None


def describe(x: Any) -> str:
    """A short description of an array (or any object) for error messages."""
    backend = backend_of(x)
    if backend == NUMPY:
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    if backend == TORCH:
        if x.is_nested:  # (a strided nested tensor has no shape to read)
            return f"nested tensor of {x.size(0)} tensors, dtype {x.dtype} on {x.device}"
        return f"torch tensor of shape {tuple(x.shape)}, dtype {x.dtype} on {x.device}"
    return f"{type(x).__name__}"


def device_of(x: Any) -> Any:
    """The torch device of a tensor, ``torch.device("cpu")`` for a numpy array."""
    if is_tensor(x):
        return x.device
    return torch_module().device("cpu")


def device_str(x: Any) -> str:
    """The device as a string, without importing torch for numpy arrays."""
    return str(x.device) if is_tensor(x) else "cpu"


def resolve_device(device: Any) -> Any:
    """A ``torch.device`` with its index filled in (``"cuda"`` becomes the current GPU)."""
    torch = torch_module()
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def to_torch_dtype(dtype: Any) -> Any:
    """The torch dtype for a torch or numpy dtype (or anything ``np.dtype`` accepts)."""
    torch = torch_module()
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype == "bfloat16":  # the one torch dtype numpy lacks
        return torch.bfloat16
    np_dtype = to_numpy_dtype(dtype)
    try:
        return torch.from_numpy(np.empty(0, dtype=np.dtype(np_dtype.str))).dtype
    except TypeError:
        raise TypeError(f"dtype {np_dtype} has no torch equivalent") from None


def to_numpy_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype for a torch or numpy dtype."""
    torch = loaded_torch()
    if torch is not None and isinstance(dtype, torch.dtype):
        try:
            return torch.empty(0, dtype=dtype).numpy().dtype
        except TypeError:
            raise TypeError(f"dtype {dtype} has no numpy equivalent") from None
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{dtype!r} is not a dtype") from None


def is_dtype(obj: Any) -> bool:
    """Whether ``obj`` names a dtype (a torch dtype, a numpy dtype or a scalar type).

    Python's ``float``, ``int``, ``bool`` and ``complex`` count, as in ``Tensor.to(float)``.
    """
    torch = loaded_torch()
    if torch is not None and isinstance(obj, torch.dtype):
        return True
    if obj is float or obj is int or obj is bool or obj is complex:
        return True
    return isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic))


def numeric_dtype(dtype: Any) -> bool:
    """Whether a dtype holds numbers or booleans (not objects, strings, dates)."""
    if is_tensor_dtype(dtype):
        return True
    return np.dtype(dtype).kind in "biufc"


def is_tensor_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a ``torch.dtype``."""
    torch = sys.modules.get("torch")
    try:
        return torch is not None and isinstance(dtype, torch.dtype)
    except AttributeError:  # torch half imported by another thread (see loaded_torch)
        return False


def positive_strides(a: np.ndarray) -> np.ndarray:
    """``a``, or a copy of it where a stride is negative (torch cannot view those).

    Not ``np.ascontiguousarray``: numpy calls a flipped ``(1, n)`` view contiguous and
    hands it back with its negative stride.
    """
    return a.copy() if any(s < 0 for s in a.strides) else a


def native_order(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order: itself, or a converted copy (torch holds no other)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def canonical_type(a: np.ndarray) -> np.ndarray:
    """``a`` seen through the scalar type numpy names its dtype by (zero-copy).

    Two C types can share a dtype: on Linux ``np.ulonglong`` (code ``'Q'``, what
    ``array.array('Q')`` and ``np.frombuffer(b, 'Q')`` give) equals ``np.uint64``
    (``'L'``) but is another type, which ``torch.from_numpy`` refuses.
    """
    if a.dtype.type in _CANONICAL_TYPES:  # (one attribute read: this runs on every call)
        return a
    canonical = np.dtype(a.dtype.str)  # (the byte order is kept)
    return a if canonical.type is a.dtype.type else a.view(canonical)


# The scalar types numpy names its numeric dtypes by (``np.dtype("uint64").type``, ...).
_CANONICAL_TYPES = frozenset(
    np.dtype(name).type
    for name in (
        *("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
        *("float16", "float32", "float64", "complex64", "complex128"),
    )
)


def tensor_from_numpy(a: np.ndarray) -> Any:
    """``torch.from_numpy`` that accepts read-only arrays we only read from.

    Views with negative strides (``a[::-1]``) are copied first, since torch cannot view them.

    Torch warns once per process about non-writable arrays; the tensors made here are only
    read (sources of a copy), so the warning would be noise.
    """
    torch = torch_module()
    a = positive_strides(canonical_type(a))
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


def writable_tensor(a: np.ndarray) -> Any:
    """A CPU tensor over ``a``'s memory, or over a C-ordered copy when ``a`` is read-only.

    A tensor cannot keep memory read-only: handed to a user or to a function that may write
    (an in-place activation), it would write into, say, a memory-mapped file's pages.
    """
    return tensor_from_numpy(a if a.flags.writeable else np.array(a, order="C"))


def host_numpy(t: Any) -> np.ndarray:
    """A tensor as a host numpy array, detached: a view of CPU memory where numpy can share it.

    A real tensor may carry torch's negative bit (``z.conj().imag`` of a complex ``z``),
    which ``Tensor.numpy`` refuses: ``resolve_neg`` writes it out (a no-op otherwise).
    """
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_neg()
    try:
        return t.numpy()
    except RuntimeError:
        # torch.func.grad refuses Tensor.numpy() for every tensor ("Cannot access data
        # pointer"), the offsets a caller closed over included (torch 2.6 refuses tolist()
        # too): metadata (offsets, lengths, an index) is read with the transforms paused.
        pause = getattr(torch_module()._C, "_DisableFuncTorch", None)
        if pause is None or not _under_func_transform():
            raise
    with pause():
        return t.numpy()


def _under_func_transform() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) is running now."""
    functorch = getattr(torch_module()._C, "_functorch", None)
    level = getattr(functorch, "maybe_current_level", None)
    return level is not None and level() is not None


def host_int64(x: Any) -> np.ndarray:
    """A host numpy int64 copy or view of an integer array, list or tensor (syncs for CUDA)."""
    if is_tensor(x):
        return host_numpy(x).astype(np.int64, copy=False)
    return np.asarray(x).astype(np.int64, copy=False)


def upload(host: np.ndarray, like: Any) -> Any:
    """Put a host array (offsets, an index, a mask) on the backend and device of ``like``.

    For CUDA the host array is first pinned and then copied with ``non_blocking=True``, so no
    device synchronisation happens; the caching host allocator keeps the pinned block alive
    until the copy has run.
    """
    if not is_tensor(like):
        return host
    t = tensor_from_numpy(host)
    if like.device.type == "cpu":
        return t
    if like.device.type == "cuda":
        t = t.pin_memory()
    return t.to(like.device, non_blocking=True)


# CPU buffers at least this large come from numpy rather than torch's allocator. Past glibc's
# largest mmap threshold (32 MiB) every torch allocation is a fresh mmap whose small pages fault
# on first touch, call after call: filling a new 40 MB torch buffer here costs ~9 ms. numpy asks
# the kernel for huge pages (madvise), and the same buffer costs ~2.5 ms. Below the threshold
# glibc reuses already-touched heap memory, and torch's allocator is the faster one.
LARGE_BUFFER_BYTES = 32 << 20


def new_buffer(shape: tuple[int, ...], dtype: Any, device: Any) -> Any | None:
    """An uninitialised tensor for an ``out=`` argument, or None where one is no faster.

    Only large CPU buffers of dtypes numpy can hold are made here (see ``LARGE_BUFFER_BYTES``);
    the caller falls back to letting torch allocate.
    """
    torch = torch_module()
    if torch.device(device).type != "cpu" or compiling():
        return None
    size = math.prod(shape)  # Python ints: no numpy call on every chunk loop
    if size * dtype.itemsize < LARGE_BUFFER_BYTES:
        return None
    try:
        np_dtype = to_numpy_dtype(dtype)
    except TypeError:
        return None
    return torch.from_numpy(np.empty(shape, dtype=np_dtype))


def empty(shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
    """An uninitialised torch tensor; large CPU ones come from ``new_buffer``."""
    out = new_buffer(shape, dtype, device)
    return torch_module().empty(shape, dtype=dtype, device=device) if out is None else out


def transformed(t: Any) -> bool:
    """Whether a ``torch.func`` transform runs (grad, vmap, jvp) or ``t`` carries a tangent.

    The package's own compiled kernels (numba's, Triton's) have no vmap rule and no jvp; the
    torch operations they stand in for have what torch gives them. A transform's level is
    what counts, not whether ``t`` is wrapped: a custom Function's forward sees plain tensors
    inside a transform, where sparse tensors made inside a vmap level break torch's asserts.
    """
    torch = torch_module()
    if torch.compiler.is_compiling():  # (dynamo traces none of the checks below)
        return False
    if _under_func_transform():
        return True
    forward_ad = torch.autograd.forward_ad
    # (tangents live only inside a dual level; -1 outside any, on torch 2.6 to 2.13)
    if getattr(forward_ad, "_current_level", 0) < 0:
        return False
    return forward_ad.unpack_dual(t).tangent is not None


def signed_view(t: Any) -> Any:
    """Unsigned 16-64 bit tensors seen as their signed twins (the same bits), else ``t``.

    torch has copy, gather and fill kernels for uint16/uint32/uint64 only partly; bit-exact
    data movement runs on the signed twin and is viewed back with ``.view(dtype)``.
    """
    if not is_tensor(t):
        return t
    twin = _signed_twin(t.dtype)
    return t if twin is None else t.view(twin)


def signed_number(value: Any, dtype: Any) -> Any:
    """An int ``value`` of unsigned 16-64 bit ``dtype`` as ``signed_view`` holds its bits.

    Computed on the host (a tensor's ``item()`` would break a compiled graph); ``value``
    itself for the other dtypes.
    """
    twin = _signed_twin(dtype)
    if twin is None:
        return value
    bits = 8 * twin.itemsize
    return int(value) - (1 << bits) if value >= 1 << (bits - 1) else value


def _signed_twin(dtype: Any) -> Any:
    """The signed dtype of the same width as unsigned 16-64 bit ``dtype``; else None."""
    torch = torch_module()
    twins = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}
    return twins.get(dtype)


def needs_grad(*tensors: Any) -> bool:
    """Whether autograd would record an operation on these tensors (``out=`` then is refused)."""
    torch = torch_module()
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def out_of_place(t: Any) -> bool:
    """Whether writing ``t`` into a fresh buffer (``out=``, ``copy_``) is refused or lost.

    Autograd does not record such writes into a buffer of ours, and under ``torch.func``
    (``vmap`` batches ``t``, the buffer not) they raise; the functional form serves there.
    """
    return needs_grad(t) or transformed(t)


def index_rows(values: Any, index: np.ndarray) -> Any:
    """Gather rows ``values[index]`` into one new buffer (``index`` is host int64)."""
    if not is_tensor(values):
        return np.take(values, index, axis=0)
    dtype = values.dtype
    values = signed_view(values)  # uint16-64 have no index_select kernel: gather their bits
    index_t = upload(index, values)
    out = None
    if not needs_grad(values):
        out = new_buffer((index.shape[0], *values.shape[1:]), values.dtype, values.device)
    if out is None:
        rows = values.index_select(0, index_t)
    else:
        rows = torch_module().index_select(values, 0, index_t, out=out)
    return rows if rows.dtype == dtype else rows.view(dtype)
