"""Validation helpers shared by every public entry point: one place decides each kind of input.

Each helper takes ``where``, the public name the user called (``"RaggedArray.from_lengths"``,
``"collate"``), and raises ``TypeError`` (wrong kind) or ``ValueError`` (wrong value) with
``"<where>: <what must hold>; got <what was seen>"``, where *seen* is short: a shape, dtype,
device, or a value or two, never an array's contents. Integers (lengths, offsets, ids,
indices, counts, budgets) are read into int64 with their range checked before any
arithmetic, so nothing wraps.
"""

from __future__ import annotations

import math
import operator
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

import numpy as np

from . import _backend
from ._backend import TORCH

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def dtype_name(dtype: Any) -> str:
    """``float32`` for both ``np.float32`` and ``torch.float32``."""
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------- arrays


def check_array(x: Any, where: str, what: str = "values") -> str:
    """Check that ``x`` is a dense array of real numbers or booleans; return its backend.

    Refuses non-arrays, 0-d arrays, object/string/date and complex dtypes, sparse and nested
    tensors, and tensors on the ``meta`` device (which hold no data).
    """
    backend = _backend.backend_of(x)
    if backend is None:
        hint = (
            " (for a list of per-segment arrays use from_list)"
            if isinstance(x, (list, tuple)) and what == "values"
            else ""
        )
        raise TypeError(
            f"{where}: {what} must be a numpy array or a torch tensor; got {type(x).__name__}{hint}"
        )
    if backend == TORCH:
        dense_tensor(x, where, what)
    else:
        plain_ndarray(x, where, what)
    if x.ndim == 0:
        raise ValueError(f"{where}: {what} must have a leading item axis; got a 0-d array")
    check_dtype(x.dtype, where, what)
    return backend


def arrays_accepted(items: Sequence[Any]) -> bool:
    """Whether ``check_array`` accepts every item, all plain numpy arrays or tensors.

    The same rules, read in C-level passes over a batch (types, dims, each distinct dtype,
    the tensors' layouts): checked one by one, a thousand samples took ~2 ms, as long as
    joining them. False means "check them one by one", which names the item at fault
    (a numpy subclass, a big-endian array or a 0-d one, say).
    """
    kinds = set(map(type, items))
    torch = _backend.loaded_torch()  # (no tensor without it)
    plain = {np.ndarray} if torch is None else {np.ndarray, torch.Tensor}
    if not kinds <= plain or 0 in set(map(_ndim_of, items)):
        return False
    for dtype in set(map(_dtype_of, items)):
        try:
            check_dtype(dtype, "", "")  # (refuses the machine's other byte order too)
        except TypeError:
            return False
    if torch is None or torch.Tensor not in kinds:
        return True
    tensors = [a for a in items if type(a) is torch.Tensor] if len(kinds) > 1 else items
    return (
        set(map(_layout_of, tensors)) == {torch.strided}
        and not any(map(_is_nested, tensors))
        and not any(map(_is_meta, tensors))
    )


_dtype_of = operator.attrgetter("dtype")
_ndim_of = operator.attrgetter("ndim")
_layout_of = operator.attrgetter("layout")
_is_nested = operator.attrgetter("is_nested")
_is_meta = operator.attrgetter("is_meta")


def dense_tensor(x: Any, where: str, what: str) -> None:
    """Refuse nested, sparse and meta tensors: none holds strided data to read."""
    if x.is_nested or x.layout != _backend.torch_module().strided:
        layout = "nested" if x.is_nested else str(x.layout).removeprefix("torch.")
        raise TypeError(
            f"{where}: {what} must be a dense (strided) tensor; got a {layout} tensor "
            f"(use from_nested for nested tensors, .to_dense() for sparse ones)"
        )
    if x.device.type == "meta":
        raise ValueError(
            f"{where}: {what} must hold data; got a tensor of shape {tuple(x.shape)} on "
            "the meta device"
        )


def plain_ndarray(x: np.ndarray, where: str, what: str) -> None:
    """Refuse the numpy subclasses whose meaning a plain array would lose or change.

    A masked array's mask would be dropped; an ``np.matrix`` makes ``*`` and ``**`` matrix
    products and keeps every result 2-D.
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(masked_refusal(where, what))
    if isinstance(x, np.matrix):
        raise TypeError(
            f"{where}: {what} must be a plain numpy array; got an np.matrix, whose * and ** "
            "are matrix products (convert it with np.asarray)"
        )


def masked_refusal(where: str, what: str) -> str:
    """The message refusing a numpy masked array, whose mask would be lost."""
    return (
        f"{where}: {what} must be a plain numpy array, since ragged arrays keep no mask; "
        "got a masked array (fill it first, e.g. a.filled(0), or keep the mask as a "
        "second ragged array)"
    )


def check_dtype(dtype: Any, where: str, what: str = "values") -> None:
    """Refuse dtypes the segment kernels cannot compute with.

    Accepted: bool, signed and unsigned integers of 8 to 64 bits, float16, bfloat16,
    float32 and float64, in the machine's byte order. Refused: objects, strings, dates,
    complex numbers, numpy's longdouble, torch's float8 and sub-byte types.
    """
    if _backend.is_tensor_dtype(dtype):
        name = dtype_name(dtype)  # by name: a graph (torch 2.6's dynamo) sees constants only
        if name not in _TORCH_REAL_NAMES:
            raise TypeError(_refusal(where, what, name, dtype.is_complex))
        return
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise TypeError(_refusal(where, what, dtype_name(dtype), dtype.kind != "f"))
    if not dtype.isnative:
        raise TypeError(
            f"{where}: {what} must be in the machine's byte order; got dtype {dtype.str} "
            "(convert with a.astype(a.dtype.newbyteorder('=')))"
        )


_TORCH_REAL_NAMES = frozenset(
    (
        "bool",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
    )
)


_torch_real: frozenset[Any] = frozenset()


def torch_real_dtypes() -> frozenset[Any]:
    """The torch dtypes a ragged array may hold (see ``check_dtype``); built once.

    For ``map``'s fast path, bound eagerly; a module global rather than ``functools.cache``,
    which dynamo warns about in a graph.
    """
    global _torch_real
    if not _torch_real:
        torch = _backend.torch_module()
        _torch_real = frozenset(getattr(torch, name) for name in _TORCH_REAL_NAMES)
    return _torch_real


def _refusal(where: str, what: str, name: str, not_real: bool) -> str:
    if not_real:
        return f"{where}: {what} must hold real numbers or booleans; got dtype {name}"
    must = "be one" if what == "dtype" else "have a dtype"
    return (
        f"{where}: {what} must {must} the segment kernels compute with (bool, integers of "
        f"8-64 bits, float16, bfloat16, float32, float64); got dtype {name} (convert "
        "first, for example to float32)"
    )


def check_values(values: Any, where: str, item_ndim: int | None, what: str = "values") -> str:
    """Check the values buffer of a ragged array; return its backend name."""
    backend = check_array(values, where, what)
    if item_ndim is not None and values.ndim != item_ndim + 1:
        raise ValueError(
            f"{where}: items must be {item_ndim}-D (C, H, W), so values must be "
            f"{item_ndim + 1}-D (N, C, H, W); got {_backend.describe(values)}"
        )
    return backend


def check_same_place(
    values: Any, other: Any, where: str, what: str, values_name: str = "values"
) -> None:
    """Reject ``other`` when it is an array of another backend or device than ``values``."""
    other_backend = _backend.backend_of(other)
    if other_backend is None:
        return
    backend = _backend.backend_of(values)
    if other_backend != backend:
        raise TypeError(
            f"{where}: {values_name} and {what} must have the same backend; "
            f"got {values_name} as {backend} and {what} as {other_backend}"
        )
    if backend == TORCH and other.device != values.device:
        raise ValueError(
            f"{where}: {values_name} and {what} must be on the same device; "
            f"got {values_name} on {values.device} and {what} on {other.device}"
        )


def result_dtype(dtype: Any, to_torch: bool, where: str, *, hint: str | None = None) -> Any:
    """A ``dtype=`` argument as a dtype of the result's backend (real numbers or bool only).

    ``hint``: how to get a torch result instead, where a numpy one cannot hold ``dtype``.
    """
    try:
        converted = _backend.to_torch_dtype(dtype) if to_torch else _backend.to_numpy_dtype(dtype)
    except (TypeError, ValueError):
        backend = "torch" if to_torch else "numpy"
        if hint is None:
            hint = "pass device= or torch tensors for a torch result"
        hint = "" if to_torch else f"; {hint}"
        raise TypeError(
            f"{where}: dtype must be one {backend} can hold (the result is {backend}); "
            f"got {dtype!r}{hint}"
        ) from None
    check_dtype(converted, where, "dtype")
    return converted


# -------------------------------------------------------------------------- devices


def device(device: Any, where: str) -> Any:
    """A ``device=`` argument as an available ``torch.device`` (``"cuda"`` gets its index)."""
    torch = _backend.torch_module()
    if not (isinstance(device, (str, torch.device)) or is_int(device)):
        raise TypeError(
            f"{where}: device must be a torch.device, a str such as 'cuda:0' or an int; "
            f"got {type(device).__name__}"
        )
    try:
        dev = torch.device(int(device) if isinstance(device, np.integer) else device)
    except (RuntimeError, TypeError, ValueError):
        if isinstance(device, (int, np.integer)) and device >= 0:  # an accelerator's index
            raise ValueError(
                f"{where}: device {int(device)} (a GPU's index) needs a CUDA GPU; got a torch "
                "without one (torch.cuda.is_available() is False)"
            ) from None
        hint = " (pass a dtype as dtype=...)" if _names_a_dtype(device) else ""
        raise ValueError(
            f"{where}: device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; "
            f"got {device!r}{hint}"
        ) from None
    if dev.type == "meta":
        raise ValueError(f"{where}: device must be one that holds data; got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{where}: device {str(dev)!r} needs a CUDA GPU; got a torch without one "
                "(torch.cuda.is_available() is False)"
            )
        index = torch.cuda.current_device() if dev.index is None else dev.index
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"{where}: device index must be < {count} GPUs; got {str(dev)!r}")
        return torch.device("cuda", index)
    if dev.type == "cpu":  # one host: "cpu:0" is "cpu" (torch's .to("cpu:0") copies)
        return torch.device("cpu")
    try:  # another accelerator: one torch can reach
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, ImportError):  # ('hpu': no torch.hpu module)
        raise ValueError(f"{where}: device must be available; got {str(dev)!r}") from None
    return dev


def _names_a_dtype(text: Any) -> bool:
    if not isinstance(text, str):  # (np.dtype reads a numpy int as its type)
        return False
    if text == "bfloat16":
        return True
    try:
        np.dtype(text)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------------- integers


def read_int(value: Any, name: str, where: str, *, low: int = 0, high: int = INT64_MAX) -> int:
    """An int argument (not a bool) in ``[low, high]`` (int64 by default), as a Python int."""
    index = index_of(value)
    if index is None:
        raise TypeError(f"{where}: {name} must be an int; got {type(value).__name__}")
    value = index
    if value < low:
        raise ValueError(f"{where}: {name} must be >= {low}; got {value}")
    if value > high:
        raise ValueError(f"{where}: {name} must be <= {high}; got {value}")
    return value


def read_bool(value: Any, name: str, where: str) -> bool:
    """A bool option (Python or numpy); anything else, ``"False"`` included, is a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be a bool; got {type(value).__name__} {value!r:.40}")
    return bool(value)


def int_vector(x: Any, where: str, what: str, *, allow_empty_float: bool = True) -> np.ndarray:
    """A 1-D integer vector (list, numpy array or tensor) as host int64, range-checked.

    Booleans and floats are refused (an empty float array, what ``np.asarray([])`` gives, is
    accepted); unsigned or Python integers beyond int64 raise instead of wrapping.
    """
    if _backend.is_tensor(x):
        dense_tensor(x, where, what)
        kind = (
            "b"
            if x.dtype == _backend.torch_module().bool
            else ("f" if x.dtype.is_floating_point or x.dtype.is_complex else "i")
        )
        if kind != "i" and not (allow_empty_float and x.numel() == 0 and kind == "f"):
            raise TypeError(
                f"{where}: {what} must have an integer dtype; got {dtype_name(x.dtype)}"
            )
        arr = _backend.host_numpy(x)
    else:
        if isinstance(x, np.ndarray):
            plain_ndarray(x, where, what)
        else:
            _refuse_non_arrays(x, where, what)
        arr = as_numpy(x, where, what)
        if arr.dtype.kind not in "iu" and not (
            allow_empty_float and arr.size == 0 and arr.dtype.kind == "f"
        ):
            big = big_python_int(x)
            if big is not None:
                raise ValueError(f"{where}: {what} must fit in int64; got {big}")
            ints = int_list(x)
            if ints is None:
                raise TypeError(f"{where}: {what} must have an integer dtype; got {arr.dtype}")
            arr = np.array(ints, dtype=np.int64)
        at = bool_among_ints(x) if arr.dtype.kind in "iu" else None
        if at is not None:
            raise TypeError(
                f"{where}: {what} must hold integers, not booleans; got {what}[{at}]={x[at]!r}"
            )
    if arr.ndim != 1:
        raise ValueError(f"{where}: {what} must be 1-D; got shape {tuple(arr.shape)}")
    return as_int64(arr, where, what)


def _refuse_non_arrays(x: Any, where: str, what: str) -> None:
    """Refuse what numpy would read as an object array, or by loading a dataset's items.

    Generators, mappings, sets, strings and None became object arrays ("must have an
    integer dtype; got object"); a torch ``Dataset`` (a ``Subset`` of a ``RaggedDataset``,
    which has no ``lengths``) was read item by item, loading every sample first.
    """
    data = sys.modules.get("torch.utils.data")
    dataset = data is not None and isinstance(x, data.Dataset)
    if dataset or x is None or isinstance(x, (str, bytes, Mapping, Set, Iterator)):
        hint = (
            " (a dataset without lengths: pass them, e.g. "
            "subset.dataset.lengths[subset.indices] for a Subset)"
            if dataset
            else ""
        )
        raise TypeError(
            f"{where}: {what} must be a 1-D list, array or tensor of ints; got "
            f"{type(x).__name__}{hint}"
        )


def index_range(where: str, m: int, i: int) -> str:
    """The message refusing segment index ``i`` of ``m`` segments."""
    if m == 0:
        return f"{where}: segment index must index a segment; got {i} with no segments"
    return f"{where}: segment index must be in [-{m}, {m}); got {i}"


def bool_among_ints(x: Any) -> int | None:
    """The position of the first boolean in a flat list or tuple, else None.

    numpy reads ``[0, True, 5]`` as int64 ``[0, 1, 5]``; a boolean is no integer here.
    """
    if not isinstance(x, (list, tuple)):
        return None
    return next((i for i, v in enumerate(x) if _is_bool(v)), None)


def _is_bool(v: Any) -> bool:
    """A Python or numpy bool, or a 0-d boolean array or tensor (numpy reads it as 1)."""
    if isinstance(v, (bool, np.bool_)):
        return True
    dtype = getattr(v, "dtype", None)
    return dtype is not None and getattr(v, "ndim", None) == 0 and str(dtype) in _BOOL_NAMES


_BOOL_NAMES = frozenset(("bool", "torch.bool"))


def as_int64(arr: np.ndarray, where: str, what: str) -> np.ndarray:
    """An integer numpy array as int64 (a view when it already is), refusing what wraps."""
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size:
        too_big = np.flatnonzero(arr > INT64_MAX)
        if too_big.size:
            i = int(too_big[0])
            raise ValueError(f"{where}: {what} must fit in int64; got {what}[{i}]={arr[i]}")
    return arr.astype(np.int64, copy=False)


def as_numpy(x: Any, where: str, what: str) -> np.ndarray:
    """``np.asarray(x)``, with a ValueError naming ``what`` for ragged nested lists.

    A ragged array is refused (numpy would read it as a sequence of its segments).
    """
    if hasattr(x, "host_offsets"):
        raise TypeError(
            f"{where}: {what} must be an array or a nested list; got a {type(x).__name__} "
            "(join ragged arrays with ra.cat, or pass x.values)"
        )
    # numpy < 1.24 makes an object array of a ragged nested list (with a warning); newer
    # numpy raises ValueError: both become the same error here
    ragged_warning = getattr(np, "exceptions", np).VisibleDeprecationWarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ragged_warning)
            return np.asarray(x)
    except (ValueError, TypeError, ragged_warning):
        raise ValueError(
            f"{where}: {what} must be an array or a rectangular nested list; "
            f"got a ragged {type(x).__name__}"
        ) from None


def big_python_int(x: Any) -> int | None:
    """The first out-of-int64 integer of a list of ints, or None (numpy made it float)."""
    if isinstance(x, np.ndarray) or _backend.is_tensor(x):
        return None
    try:
        flat = np.array(x, dtype=object).ravel().tolist()
    except (ValueError, TypeError):
        return None
    if not all(is_int(v) for v in flat):
        return None
    return next((int(v) for v in flat if not INT64_MIN <= v <= INT64_MAX), None)


def int_list(x: Any) -> list[int] | None:
    """The values of a flat list or tuple of Python or numpy integers, else None.

    numpy reads ``[np.int64(0), np.uint64(5)]`` as float64 (no integer dtype holds both),
    though every entry is an integer: callers read such lists exactly instead.
    """
    if not isinstance(x, (list, tuple)) or not all(is_int(v) for v in x):
        return None
    return [int(v) for v in x]


def listed(items: Any, where: str, what: str) -> list[Any]:
    """``items``, an iterable in order, as a list: ``arrays`` of ``from_list`` and ``cat``.

    Strings, mappings and sets are refused (iterable, but not of arrays in order: a set's
    order changes between runs). Only a non-iterable is reported as such: an error raised
    by a generator while it runs is the caller's own, and passes through.
    """
    if isinstance(items, (str, bytes, Mapping, Set)):
        raise TypeError(f"{where}: arrays must be {what}, in order; got a {type(items).__name__}")
    try:
        iterator = iter(items)
    except TypeError:
        raise TypeError(f"{where}: arrays must be {what}; got {_backend.describe(items)}") from None
    return list(iterator)


def is_int(v: Any) -> bool:
    """Whether ``v`` is a Python or numpy int: not a bool, and not a ``np.timedelta64``.

    (numpy makes a timedelta an integer type, but no index or count means a span of time.)
    """
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.timedelta64))


def index_of(v: Any) -> int | None:
    """``v`` as one integer (an index, a count), or None when it is not one.

    A Python or numpy int, a 0-d integer array or tensor, or an object of another kind that
    is an integer by ``__index__`` (as ``range`` and lists read it); never a bool, a
    ``np.timedelta64``, or a float or boolean array.
    """
    if is_int(v):
        return int(v)
    if integer_0d(v):
        return int(v.item())
    if isinstance(v, (bool, np.generic)) or _backend.backend_of(v) is not None:
        return None
    if not hasattr(type(v), "__index__"):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def integer_0d(x: Any) -> bool:
    """Whether ``x`` is a 0-d numpy array or tensor of integers (not booleans)."""
    if isinstance(x, np.ndarray):
        return x.ndim == 0 and x.dtype.kind in "iu"
    if _backend.is_tensor(x):
        dtype = x.dtype
        return x.ndim == 0 and not (
            dtype.is_floating_point or dtype.is_complex or x.dtype == _backend.torch_module().bool
        )
    return False


def is_real(v: Any) -> bool:
    """Whether ``v`` is a Python or numpy int or float: no bool, no ``np.timedelta64``."""
    return is_int(v) or isinstance(v, (float, np.floating))


def offsets_from_lengths(lengths: np.ndarray, where: str, what: str = "lengths") -> np.ndarray:
    """``[0, l0, l0 + l1, ...]`` from non-negative int64 lengths, refusing a total past int64."""
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # lengths are >= 0, so the running total only decreases where it wrapped past 2**63 - 1
    if lengths.shape[0] and (offsets[-1] < 0 or bool((offsets[1:] < offsets[:-1]).any())):
        raise ValueError(
            f"{where}: {what} must sum to at most 2**63 - 1 items (int64); got a total of "
            f"{sum(map(int, lengths.tolist()))}"
        )
    return offsets


# ---------------------------------------------------------------------------- scalars


def check_fill(fill: Any, dtype: Any, where: str, what: str = "fill") -> bool | int | float:
    """Check that ``fill`` is a real scalar that ``dtype`` holds (floats: within range).

    Returns it as the Python number torch takes for ``dtype`` (numpy scalars are not taken
    everywhere: ``np.float32(7.0)`` as an integer fill, ``np.uint64`` at all): a float for
    floating dtypes (``-0.0`` and NaN kept), a bool for bool, else an int. A 0-d array or
    tensor is read as its number.
    """
    if _backend.backend_of(fill) is not None and fill.ndim == 0:  # fill=x.min(), say
        if _backend.compiling():  # read in the graph, not on the host: dynamo holds a
            # numpy scalar a module keeps (np.float32(0.0)) as a 0-d array, a tensor inside
            return fill if _backend.is_tensor(fill) else _backend.torch_module().as_tensor(fill)
        if _backend.is_tensor(fill) and fill.device.type == "meta":
            raise ValueError(f"{where}: {what} must hold a value; got a tensor on the meta device")
        fill = fill.item()  # (a CUDA tensor's value is read once, here)
    if isinstance(fill, (complex, np.complexfloating)):
        raise TypeError(f"{where}: {what} must be a real number; got complex {fill!r}")
    if not (is_real(fill) or isinstance(fill, (bool, np.bool_))):
        raise TypeError(f"{where}: {what} must be a number; got {type(fill).__name__}")
    tensor_dtype = _backend.is_tensor_dtype(dtype)
    floating = dtype.is_floating_point if tensor_dtype else np.dtype(dtype).kind == "f"
    if floating:
        if _backend.compiling():  # a module's float fill is symbolic under dynamic=True:
            return fill  # (reading it breaks the graph)
        finfo = _backend.torch_module().finfo if tensor_dtype else np.finfo
        largest = float(finfo(dtype).max)
        if isinstance(fill, np.floating):  # in its own precision: a longdouble past float64
            # reads as inf in one (the bound too, so numpy does not cast it to float16)
            ok = not np.isfinite(fill) or bool(abs(fill) <= np.longdouble(largest))
        elif isinstance(fill, float):
            ok = not math.isfinite(fill) or abs(fill) <= largest
        else:  # ints and bools, compared exactly
            ok = abs(int(fill)) <= largest
        if not ok:
            raise ValueError(
                f"{where}: {what} must be representable in dtype {dtype_name(dtype)} (at most "
                f"{largest:.4g} in size, or inf/nan); got {fill!r}"
            )
        return float(fill)
    ok, real = True, fill
    if isinstance(real, (float, np.floating)):
        ok = math.isfinite(real) and float(real).is_integer()
    boolean = dtype == _backend.torch_module().bool if tensor_dtype else np.dtype(dtype).kind == "b"
    if ok:
        value = int(real)
        if boolean:
            ok = value in (0, 1)
        else:  # torch's iinfo for torch dtypes: a compiled graph traces it, not numpy's
            limits = _backend.torch_module().iinfo(dtype) if tensor_dtype else np.iinfo(dtype)
            ok = int(limits.min) <= value <= int(limits.max)
    if not ok:
        raise ValueError(
            f"{where}: {what} must be representable in dtype {dtype_name(dtype)}; got {fill!r}"
        )
    return bool(value) if boolean else value


def check_correction(correction: Any, where: str) -> float | int:
    """``correction`` of var/std: a non-negative, finite real number within int64."""
    if not is_real(correction):
        raise TypeError(
            f"{where}: correction must be an int or float; got {type(correction).__name__}"
        )
    if isinstance(correction, np.integer):  # numpy 1 compares uint64 with ints via float64
        correction = int(correction)
    if not (0 <= correction <= INT64_MAX):  # also refuses nan
        raise ValueError(f"{where}: correction must be in [0, 2**63 - 1]; got {correction!r}")
    return int(correction) if isinstance(correction, (int, np.integer)) else float(correction)
