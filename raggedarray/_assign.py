"""Writing into one segment: ``x[i] = value`` and ``x[i] += value``.

A ragged array keeps its structure, so only a whole segment ``x[i]`` can be assigned. The
value is a number or an array of the segment's backend (and device):

* a number (Python or numpy) fills the segment; it must be of a kind the values' dtype
  takes (a bool anywhere, an integer into integers or floats, a float into floats) and be
  representable there (300 into uint8 is refused, as is 1e40 into float16), the same on
  both backends, where numpy would raise its own error or wrap and torch would wrap;
* a 0-d array (numpy, or a tensor on the CPU) is that number, checked the same way;
* an array must broadcast to the segment's shape without changing it (its length cannot
  change) and cast to the values' dtype by numpy's ``same_kind`` rule, on both backends
  (torch's ``can_cast`` allows int64 into uint8, which wraps); where that cast narrows,
  its values must be representable too, as a number's are (``[1, 300]`` into int8 is
  refused, where both backends would wrap 300 to 44; 1e10 into float16 would be inf).
  That check reads the value's smallest and largest elements, so on a GPU a narrowing
  cast waits for them; a widening one (float32 into float32 or float64) reads nothing.

Everything is checked before anything is written, so a refused assignment leaves the
array as it was. ``x[i] += v`` works because Python runs it as ``t = x[i]; t += v;
x[i] = t``: the view already holds the result, and writing it onto itself is skipped.
On a GPU a number is written with ``fill_``, so no host-to-device copy synchronises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, _checks

_NUMBERS = (bool, int, float, np.bool_, np.integer, np.floating)


def segment_key(key: Any, where: str) -> int:
    """The segment index of an assignment: an int (not a bool), else a TypeError."""
    index = _checks.index_of(key)
    if index is not None:
        return index
    raise TypeError(
        f"{where}: only a segment x[i] (an int i) can be assigned; got {type(key).__name__} "
        "(ragged arrays keep their structure: write into x.values, or into a view with "
        "x[i][...] = v)"
    )


def assign(segment: Any, value: Any, where: str, *, values: Any) -> None:
    """Write ``value`` into the ``segment`` view of ``values``, after every check."""
    if _backend.backend_of(segment) == _backend.NUMPY and not segment.flags.writeable:
        raise ValueError(
            f"{where}: the values must be writable; got a read-only numpy buffer (a file "
            "loaded with mmap=True, say: copy it first with x.clone())"
        )
    if _backend.is_tensor(segment):
        _check_writable_tensor(segment, where)
    _check_no_overlap(values, where)
    if isinstance(value, np.timedelta64):  # an integer type to numpy, but not a number
        raise TypeError(
            f"{where}: the value must be a number or an array; got timedelta64 {value!r} "
            "(convert it, e.g. value / np.timedelta64(1, 's'))"
        )
    if isinstance(value, _NUMBERS):
        _fill(segment, value, where)
    elif _is_host_scalar(value):  # a 0-d array is a number: checked as one, on both backends
        _fill(segment, value.item(), where)
    elif not _is_the_view(segment, value):
        if _backend.is_tensor(segment):
            _copy_tensor(segment, value, where)
        else:
            _copy_array(segment, value, where)


def _check_writable_tensor(segment: Any, where: str) -> None:
    """Refuse the writes torch would refuse after writing, or that would write elsewhere."""
    torch = _backend.torch_module()
    if _writes_into_a_grad_leaf(segment):
        raise ValueError(
            f"{where}: the values must not be a leaf tensor that requires grad (autograd "
            "refuses writes into it; write under torch.no_grad(), or build the ragged array "
            "from values.detach()); got values with requires_grad=True"
        )
    if segment.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError(
            f"{where}: the values must not be an inference tensor outside inference mode "
            "(torch refuses writes into one; write inside torch.inference_mode(), or copy "
            "them first with x.clone()); got values made under torch.inference_mode()"
        )


def _check_no_overlap(values: Any, where: str) -> None:
    """Refuse values whose elements may share memory: a write would change several items.

    The whole buffer is read, not the segment: a one-item segment of expanded values has no
    stride 0 of its own. Strides sorted by size must each pass what the axes below reach
    (expanded tensors and ``as_strided`` overlaps fail; slices such as ``[:, ::2]`` pass);
    contiguous values pass at once.
    """
    if _backend.is_tensor(values):
        if values.is_contiguous():
            return
        shape, strides, unit = tuple(values.shape), values.stride(), 1
    else:
        if values.flags.c_contiguous:
            return
        shape, strides, unit = values.shape, values.strides, values.itemsize
    reach = unit  # past the last byte (element) the axes with smaller strides can reach
    for step, size in sorted((abs(st), n) for n, st in zip(shape, strides, strict=True) if n > 1):
        if step < reach:
            raise ValueError(
                f"{where}: the values must not share memory between their elements (an "
                "expanded or overlapping array: one write would change several items, of "
                "other segments too; build the ragged array from a contiguous copy, "
                f"values.contiguous() or np.ascontiguousarray(values)); got strides "
                f"{tuple(strides)} for shape {tuple(shape)}"
            )
        reach += step * (size - 1)


def _writes_into_a_grad_leaf(segment: Any) -> bool:
    """Whether writing into the ``segment`` view is what autograd refuses: a leaf's view."""
    if not segment.requires_grad or not _backend.torch_module().is_grad_enabled():
        return False
    base = segment._base if segment._base is not None else segment
    return bool(base.is_leaf)


def _fill(segment: Any, number: Any, where: str) -> None:
    """Fill the segment with a number of a kind its dtype takes, and that it represents."""
    dtype = segment.dtype
    have = _kind(dtype)
    got = (
        "b"
        if isinstance(number, (bool, np.bool_))
        else "f"
        if isinstance(number, (float, np.floating))
        else "i"
    )
    if not (got == "b" or (got == "i" and have in "iuf") or (got == "f" and have == "f")):
        raise TypeError(
            f"{where}: the value must cast to the values' {_checks.dtype_name(dtype)} by the "
            f"same_kind rule; got {type(number).__name__} {number!r}"
        )
    number = _checks.check_fill(number, dtype, where, "the value")
    if _backend.is_tensor(segment):
        segment.fill_(number)
    else:
        segment[...] = number


def _is_host_scalar(value: Any) -> bool:
    """A 0-d numpy array or 0-d CPU tensor of numbers (read on the host without a sync)."""
    backend = _backend.backend_of(value)
    if backend is None or value.ndim != 0:
        return False
    if backend == _backend.TORCH:
        # one that autograd records is copied, so that its gradient flows
        cpu = value.device.type == "cpu"
        return cpu and not value.requires_grad and not value.dtype.is_complex
    return value.dtype.kind in "biuf"


def _same_kind(value: Any, target: Any) -> bool:
    """Whether torch dtype ``value`` casts to ``target`` by numpy's ``same_kind`` rule.

    torch's ``can_cast`` allows int64 into uint8, which wraps. bfloat16 counts as a float.
    """
    torch = _backend.torch_module()

    def as_numpy(dtype: Any) -> np.dtype:
        if dtype == torch.bfloat16:
            return np.dtype(np.float32)
        return _backend.to_numpy_dtype(dtype)

    return bool(np.can_cast(as_numpy(value), as_numpy(target), casting="same_kind"))


def _kind(dtype: Any) -> str:
    """``b``, ``i``, ``u`` or ``f`` for a numpy or torch dtype."""
    if not _backend.is_tensor_dtype(dtype):
        return str(np.dtype(dtype).kind)
    if dtype.is_floating_point:
        return "f"
    return "b" if _checks.dtype_name(dtype) == "bool" else "i"


def _is_the_view(segment: Any, value: Any) -> bool:
    """Whether ``value`` is the same memory seen the same way (``x[i] += v``)."""
    if type(value) is not type(segment) or value.shape != segment.shape:
        return False
    if value.dtype != segment.dtype:
        return False
    if _backend.is_tensor(segment):
        if value.layout != segment.layout or value.is_nested:  # (sparse: no data pointer)
            return False
        if value.is_neg() != segment.is_neg():  # the same memory, read with the other sign
            return False
        return value.data_ptr() == segment.data_ptr() and value.stride() == segment.stride()
    same = value.__array_interface__["data"][0] == segment.__array_interface__["data"][0]
    return same and value.strides == segment.strides


def _copy_array(segment: np.ndarray, value: Any, where: str) -> None:
    if _backend.is_tensor(value):
        raise TypeError(
            f"{where}: the value must be a numpy array or a number like the values; got "
            f"{_backend.describe(value)}"
        )
    if isinstance(value, np.ma.MaskedArray):  # its mask would be dropped
        raise TypeError(_checks.masked_refusal(where, "the value"))
    # Python ints (a list) are numbers of no dtype, as a Python int is: [1, 2] into uint8
    # values casts with a range check, where numpy's int64 for them is no same_kind cast
    numbers = not isinstance(value, np.ndarray)
    if numbers:
        value = _checks.as_numpy(value, where, "the value")
    _check_shape(segment.shape, value.shape, where)
    if numbers and value.dtype.kind == "i" and segment.dtype.kind in "iu":
        _check_range(value, segment.dtype, where)
        np.copyto(segment, value, casting="unsafe")
        return
    if not np.can_cast(value.dtype, segment.dtype, casting="same_kind"):
        raise TypeError(
            f"{where}: the value must cast to the values' {segment.dtype} by the same_kind "
            f"rule; got {_backend.describe(value)}"
        )
    if not _widens(value.dtype, segment.dtype):
        _check_range(value, segment.dtype, where)
    np.copyto(segment, value, casting="same_kind")


def _check_range(value: Any, dtype: Any, where: str) -> None:
    """A narrowing cast must keep every value: integers in range, finite values finite.

    Decided by the smallest and largest (finite) elements of ``value``, read on the host.
    """
    ends = _ends(value)
    if ends is None:
        return
    lo, hi = ends
    integer = _kind(dtype) in "iu"
    if integer:
        info = np.iinfo(_backend.to_numpy_dtype(dtype))
        fits = info.min <= lo and hi <= info.max
    else:
        fits = _stay_finite(lo, hi, dtype)
    if not fits:
        raise ValueError(
            f"{where}: the value's elements must be representable in the values' dtype "
            f"{_checks.dtype_name(dtype)} (the cast would {'wrap' if integer else 'give inf'}); "
            f"got elements from {lo} to {hi}"
        )


def _ends(value: Any) -> tuple[Any, Any] | None:
    """The smallest and largest (finite) elements of an array as Python numbers, or None."""
    kind = _kind(value.dtype)
    if kind == "b":
        return None
    if _backend.is_tensor(value):
        if _checks.dtype_name(value.dtype) in ("uint16", "uint32", "uint64"):
            value = value.cpu().numpy()  # (torch has no min or max of these)
        else:
            finite = value[value.isfinite()] if kind == "f" else value
            if finite.numel() == 0:
                return None
            lo, hi = _backend.torch_module().aminmax(finite)
            return lo.item(), hi.item()
    finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
    if finite.size == 0:
        return None
    return finite.min().item(), finite.max().item()


def _stay_finite(lo: Any, hi: Any, dtype: Any) -> bool:
    """Whether ``lo`` and ``hi`` stay finite in float ``dtype`` (numpy's or torch's)."""
    ends = np.array([lo, hi], dtype=np.float64)
    if _backend.is_tensor_dtype(dtype):
        torch = _backend.torch_module()
        return bool(torch.from_numpy(ends).to(dtype).isfinite().all())
    with np.errstate(over="ignore"):
        return bool(np.isfinite(ends.astype(dtype)).all())


def _copy_tensor(segment: Any, value: Any, where: str) -> None:
    if not _backend.is_tensor(value):
        raise TypeError(
            f"{where}: the value must be a tensor or a number like the values; got "
            f"{_backend.describe(value)}"
        )
    _checks.dense_tensor(value, where, "the value")  # (nested, sparse: no strided data)
    _checks.check_dtype(value.dtype, where, "the value")  # (float8: no numpy twin to check)
    if value.device != segment.device and not (value.ndim == 0 and value.device.type == "cpu"):
        raise ValueError(
            f"{where}: the value must be on the values' device ({segment.device}); got "
            f"{_backend.describe(value)}"
        )
    _check_shape(tuple(segment.shape), tuple(value.shape), where)
    if not _same_kind(value.dtype, segment.dtype):
        have, got = _checks.dtype_name(segment.dtype), _checks.dtype_name(value.dtype)
        raise TypeError(
            f"{where}: the value must cast to the values' {have} by the same_kind rule; "
            f"got dtype {got}"
        )
    if not _widens(value.dtype, segment.dtype):
        _check_range(value.detach(), segment.dtype, where)
    if value.device == segment.device and _overlap(value, segment):
        value = value.clone()  # a view of the same buffer (x[0] = x.values[1:3]) may overlap
    segment.copy_(value)


def _overlap(a: Any, b: Any) -> bool:
    """Whether the bytes two tensors of one device span intersect.

    By address, not by storage: two storages may hold the same memory (``torch.frombuffer``
    or ``torch.from_numpy`` twice over one buffer), and a storage may start inside another.
    """
    spans = []
    for t in (a, b):
        if t.numel() == 0:
            return False
        reach = sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
        spans.append((t.data_ptr(), t.data_ptr() + (reach + 1) * t.element_size()))
    (lo_a, hi_a), (lo_b, hi_b) = spans
    return lo_a < hi_b and lo_b < hi_a


def _widens(value: Any, target: Any) -> bool:
    """Whether no value of dtype ``value`` overflows ``target`` (rounding aside).

    Numpy or torch dtypes, both of one backend. Integers into floats overflow only past the
    float's largest value: int64 into float32 never does (9.2e18 < 3.4e38), int32 into
    float16 can (65 504), so no value is read for the first (on a GPU that read would wait
    for the device).
    """
    have, want = _kind(value), _kind(target)
    if value == target or have == "b":
        return True
    if want == "f":
        return _largest(value) <= _largest(target)
    if have == "f":
        return False
    source, goal = _backend.to_numpy_dtype(value), _backend.to_numpy_dtype(target)
    return bool(np.can_cast(source, goal, casting="safe"))


def _largest(dtype: Any) -> float:
    """The largest value of a numpy or torch dtype (bfloat16's is torch's)."""
    if _backend.is_tensor_dtype(dtype):
        torch = _backend.torch_module()
        return float((torch.finfo if dtype.is_floating_point else torch.iinfo)(dtype).max)
    return float((np.finfo if dtype.kind == "f" else np.iinfo)(dtype).max)


def _check_shape(segment: tuple[int, ...], value: tuple[int, ...], where: str) -> None:
    """``value`` must broadcast to ``segment`` without changing it (no new length)."""
    fits = len(value) <= len(segment) and all(
        v in (1, s) for v, s in zip(value[::-1], segment[::-1], strict=False)
    )
    if not fits:
        raise ValueError(
            f"{where}: the value must broadcast to the segment's shape {segment} (a segment's "
            f"length cannot change); got shape {value}"
        )
