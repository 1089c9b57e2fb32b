"""Functional constructors: plain arrays in, ``(values, host_offsets)`` out.

The ragged classes wrap these; nothing here knows about them. Each function makes at most
one allocation for the values buffer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
from collections.abc import Iterator, Mapping, Set
from typing import Any

import numpy as np

from . import _backend, _checks, _offsets
from ._checks import check_fill


def own_offsets(offsets: Any, host: np.ndarray, values: Any) -> tuple[Any, np.ndarray]:
    """Offsets the ragged array owns: ``(device_offsets, host_offsets)``, both copies.

    ``device_offsets`` is None where the trusted constructor derives them from the host copy.

    The caller keeps its offsets array; editing it later must not change (or desynchronise)
    the ragged array. Offsets already on a GPU are copied there, without a host round trip.
    """
    if _backend.is_tensor(offsets) and offsets.device.type != "cpu":
        torch = _backend.torch_module()
        return offsets.detach().to(torch.int64, copy=True), host
    return None, host  # (read_offsets copies the caller's host memory)


def _items(arrays: Any, where: str, image: bool) -> tuple[list[Any], list[int], bool, bool]:
    """Read the per-segment arrays in one pass: ``(items, lengths, any_tensor, any_numpy)``.

    Arrays stay as they are, anything else goes through ``np.asarray``; ``(n_i, H, W)`` images
    gain a channel axis. Only the number of dimensions is checked here: the concatenation
    checks the rest, and a failure there is explained by ``_check_item_shapes``.
    """
    if type(arrays) is np.ndarray and arrays.dtype == object and arrays.ndim == 1:
        arrays = list(arrays)  # per-segment arrays held in a numpy object array
    if _backend.backend_of(arrays) is not None:
        way = "from_nested" if _backend.is_tensor(arrays) and arrays.is_nested else "from_lengths"
        raise TypeError(
            f"{where}: arrays must be a list of per-segment arrays; got one "
            f"{_backend.describe(arrays)} (for one buffer use {way} or the constructor)"
        )
    items = _checks.listed(arrays, where, "a list of per-segment arrays")
    torch = _backend.loaded_torch()
    tensor_type = torch.Tensor if torch is not None else ()
    kinds = set(map(type, items))
    if len(kinds) == 1 and (np.ndarray in kinds or tensor_type in kinds):
        # Fast path, a list of plain arrays of one backend: C-level loops only.
        try:
            shapes = list(map(_shape_of, items))
        except RuntimeError:  # a strided nested tensor has no shape to read: say which
            _check_item_shapes(items, where)
            raise
        ndims = set(map(len, shapes))
        if len(ndims) == 1 and 0 not in ndims and not (image and 3 in ndims):
            return items, list(map(_first, shapes)), tensor_type in kinds, np.ndarray in kinds
    lengths = [0] * len(items)
    any_tensor = any_numpy = False
    ndim = None
    untyped = []  # empty Python lists: np.asarray gives them float64, a dtype nobody chose
    for k, a in enumerate(items):
        if isinstance(a, tensor_type):
            any_tensor = True
            if a.is_nested:  # (no shape to read)
                _checks.dense_tensor(a, where, f"arrays[{k}]")
        else:
            any_numpy = True
            if a is None or isinstance(a, (str, bytes, Mapping, Set)):
                raise TypeError(
                    f"{where}: arrays[{k}] must be an array (or nested lists of numbers) of "
                    f"shape (n_i, *item_shape); got {type(a).__name__}"
                )
            if not isinstance(a, np.ndarray):
                a = items[k] = _checks.as_numpy(a, where, f"arrays[{k}]")
                if a.size == 0:
                    untyped.append(k)
            elif isinstance(a, np.ma.MaskedArray):
                raise TypeError(_checks.masked_refusal(where, f"arrays[{k}]"))
        shape = a.shape
        if image and len(shape) == 3:
            a = items[k] = a[:, None]
            shape = a.shape
        if len(shape) != ndim:
            if not shape:
                raise ValueError(
                    f"{where}: every array must have a leading item axis; "
                    f"got arrays[{k}] of shape ()"
                )
            if ndim is not None:
                _check_item_shapes(items[: k + 1], where)
            ndim = len(shape)
        lengths[k] = shape[0]
    if untyped and len(untyped) < len(items):
        any_numpy = _type_empty_lists(items, untyped)
    return items, lengths, any_tensor, any_numpy


def _type_empty_lists(items: list[Any], untyped: list[int]) -> bool:
    """Give empty Python lists the dtype (and device) of the first typed item.

    One of the dtypes promoted anyway adds nothing to the promotion, so ``[int32 tensor,
    []]`` stays int32, as ``torch.cat`` with an empty int32 tensor does. Returns whether a
    numpy array is left among the items.
    """
    skip = set(untyped)
    typed = next(a for k, a in enumerate(items) if k not in skip)
    for k in untyped:
        if isinstance(typed, np.ndarray):
            items[k] = np.empty(items[k].shape, dtype=typed.dtype)
        else:
            items[k] = typed.new_empty(items[k].shape)
    return any(isinstance(a, np.ndarray) for a in items)


_shape_of = operator.attrgetter("shape")
_first = operator.itemgetter(0)


def _check_item_shapes(items: list[Any], where: str) -> None:
    """Raise the error that explains why the items cannot be joined.

    A nested or sparse tensor among them (the fast path does not look), or item shapes
    that differ.
    """
    for k, a in enumerate(items):
        _checks.check_array(a, where, f"arrays[{k}]")
    first = tuple(items[0].shape[1:])
    for k, a in enumerate(items):
        shape = tuple(a.shape[1:])
        if shape != first:
            raise ValueError(
                f"{where}: all arrays must have the same item shape; got item shape {first} "
                f"for arrays[0] and {shape} for arrays[{k}]"
            )


def concat(
    arrays: Any,
    *,
    dtype: Any,
    device: Any,
    where: str,
    image: bool,
    item_shape: tuple[int, ...] | None,
) -> tuple[Any, np.ndarray]:
    """Concatenate per-segment arrays into one buffer (one allocation) and its offsets.

    The result is a torch tensor when any item is one or when ``device`` is given, else a
    numpy array. Dtypes are promoted (``dtype`` overrides); items must share one item shape.
    """
    items, lengths, any_tensor, any_numpy = _items(arrays, where, image)
    host = _checks.offsets_from_lengths(np.asarray(lengths, dtype=np.int64), where, "the lengths")
    to_torch = device is not None or any_tensor
    if device is not None:
        device = _checks.device(device, where)
    if dtype is not None:
        dtype = _requested_dtype(dtype, to_torch, where)
        _check_numbers(items, where)
    if not items:
        if item_shape is None:
            item_shape = (1, 0, 0) if image else ()
        return _empty_values(item_shape, dtype, device, to_torch), host
    first = tuple(items[0].shape[1:])
    if item_shape is not None and item_shape != first:
        raise ValueError(
            f"{where}: arrays must have the requested item_shape={item_shape}; "
            f"got item shape {first}"
        )
    if image and len(first) != 3:
        raise ValueError(
            f"{where}: image arrays must be (n_i, C, H, W) or (n_i, H, W); "
            f"got arrays[0] of shape {tuple(items[0].shape)}"
        )
    try:
        if to_torch:
            values = _concat_torch(items, int(host[-1]), dtype, device, where, any_numpy)
        else:
            values = _concat_numpy(items, dtype, where)
    except (RuntimeError, ValueError):
        _check_item_shapes(items, where)
        raise
    _checks.check_dtype(values.dtype, where, "arrays")
    return values, host


def _check_numbers(items: list[Any], where: str) -> None:
    """``dtype=`` casts numbers: items refused without it stay refused with it.

    (A cast would read None as NaN, parse strings, count days or drop imaginary parts.)
    Real numbers of any width or byte order cast, as ``astype`` does.
    """
    seen = set()
    for k, a in enumerate(items):
        if a.dtype in seen:
            continue
        seen.add(a.dtype)
        if _backend.is_tensor_dtype(a.dtype):
            real = not a.dtype.is_complex
        else:
            real = np.dtype(a.dtype).kind in "biuf"
        if not real:
            raise TypeError(
                f"{where}: arrays[{k}] must hold real numbers or booleans (dtype= casts "
                f"numbers); got dtype {_checks.dtype_name(a.dtype)}"
            )


def _requested_dtype(dtype: Any, to_torch: bool, where: str) -> Any:
    """The ``dtype=`` argument as a dtype of the result's backend, or a clear error."""
    return _checks.result_dtype(dtype, to_torch, where)


def _empty_values(item_shape: tuple[int, ...], dtype: Any, device: Any, to_torch: bool) -> Any:
    if to_torch:
        torch = _backend.torch_module()
        dtype = torch.float32 if dtype is None else dtype
        return torch.empty((0, *item_shape), dtype=dtype, device=device)
    return np.empty((0, *item_shape), dtype=np.float32 if dtype is None else dtype)


def _concat_numpy(items: list[np.ndarray], dtype: Any, where: str) -> np.ndarray:
    try:
        if dtype is None:
            values = np.concatenate(items, axis=0)
        else:
            values = np.concatenate(items, axis=0, dtype=dtype, casting="unsafe")
    except TypeError as err:
        raise TypeError(f"{where}: the arrays' dtypes do not promote to one dtype; {err}") from None
    if not _backend.numeric_dtype(values.dtype):
        k = next(k for k, a in enumerate(items) if not _backend.numeric_dtype(a.dtype))
        raise TypeError(
            f"{where}: arrays must hold numbers or booleans; got dtype {items[k].dtype} "
            f"for arrays[{k}]"
        )
    values = _backend.native_order(values)  # a new buffer anyway
    # numpy lays the result out like Fortran-ordered inputs; the buffer is C-ordered
    return np.ascontiguousarray(values)


def _concat_torch(
    items: list[Any], num_items: int, dtype: Any, device: Any, where: str, any_numpy: bool
) -> Any:
    torch = _backend.torch_module()
    tensors = items
    if any_numpy:
        tensors = [
            a if isinstance(a, torch.Tensor) else numpy_as_tensor(a, k, where)
            for k, a in enumerate(items)
        ]
    if device is None and dtype is None:  # the common case: one cat, checked by torch
        try:
            return cat_tensors(tensors, num_items, where)
        except RuntimeError:
            _single_device(tensors, where)
            raise
    devices = {t.device for t in tensors}
    target = _single_device(tensors, where) if device is None else device
    # Concatenate where the sources are (one host buffer, pinned for an async upload),
    # then move once: many small host-to-device copies would cost far more.
    staging = target if devices == {target} else torch.device("cpu")
    tensors = [t if t.device == staging else t.to(staging) for t in tensors]
    if dtype is None:
        values = cat_tensors(tensors, num_items, where)
    elif _backend.needs_grad(*tensors):
        values = cat_tensors(tensors, num_items, where).to(dtype)
    else:
        pin = staging.type == "cpu" and target.type == "cuda"
        shape = (num_items, *tensors[0].shape[1:])
        values = torch.empty(shape, dtype=dtype, device=staging, pin_memory=pin)
        if all(torch.can_cast(t.dtype, dtype) for t in tensors) and not unsigned_mix(tensors):
            torch.cat(tensors, dim=0, out=values)
        else:  # a cast cat refuses (narrowing, or uint16-64 beside other dtypes): piecewise
            copy_pieces(tensors, values)
    if staging != target:
        if target.type == "cuda" and not values.is_pinned():
            values = values.pin_memory()
        values = values.to(target, non_blocking=True)
    return values


def cat_tensors(tensors: list[Any], num_items: int, where: str) -> Any:
    """``torch.cat(tensors)``: a new contiguous buffer (a copy, for one tensor).

    The result is C-contiguous whatever the inputs' memory format. Large CPU results
    without grad go into a numpy-allocated buffer (see ``new_buffer``). torch does not
    promote uint16-64 beside other dtypes: such a mix takes numpy's promotion (as
    ``from_list`` of numpy arrays does) and is copied piece by piece.
    """
    torch = _backend.torch_module()
    first = tensors[0]
    shape = (num_items, *first.shape[1:])
    try:
        # A cheap size test first: most concatenations are small and must stay fast.
        big = math.prod(shape) * first.element_size() >= _backend.LARGE_BUFFER_BYTES
        if big and first.device.type == "cpu" and not _backend.needs_grad(*tensors):
            dtype = functools.reduce(torch.promote_types, {t.dtype for t in tensors})
            out = _backend.new_buffer(shape, dtype, first.device)
            if out is not None:
                return torch.cat(tensors, dim=0, out=out)
        values = torch.cat(tensors, dim=0)
        # cat keeps the inputs' memory format (channels_last): a buffer is C-contiguous
        if values.layout == torch.strided and not values.is_contiguous():
            values = values.contiguous()
        return values
    except RuntimeError:
        if not unsigned_mix(tensors):
            raise
    values = torch.empty(shape, dtype=promoted_dtype(tensors, where), device=first.device)
    return copy_pieces(tensors, values)


def cat_into(tensors: list[Any], allocate: Any, shape: tuple[int, ...], where: str) -> Any:
    """``torch.cat(tensors)`` into ``allocate(shape, dtype)``, promoting as ``cat_tensors``.

    torch's promotion where torch has one, numpy's where it has none (uint16-64 beside
    other integers): a DataLoader worker, which allocates in shared memory, gets the
    dtype the main process gets.
    """
    torch = _backend.torch_module()
    try:
        dtype = functools.reduce(torch.promote_types, {t.dtype for t in tensors})
        return torch.cat(tensors, dim=0, out=allocate(shape, dtype))
    except RuntimeError:
        if not unsigned_mix(tensors):
            raise
    return copy_pieces(tensors, allocate(shape, promoted_dtype(tensors, where)))


def unsigned_mix(tensors: list[Any]) -> bool:
    """Whether uint16-64 tensors sit beside tensors of another dtype (torch cannot promote)."""
    first = tensors[0].dtype
    if all(t.dtype == first for t in tensors):
        return False
    return any(_backend.signed_view(t) is not t for t in tensors)


def promoted_dtype(tensors: list[Any], where: str) -> Any:
    """The tensors' dtypes promoted by numpy's rules, as a torch dtype."""
    dtypes = sorted({t.dtype for t in tensors}, key=str)
    try:
        common = np.result_type(*(_backend.to_numpy_dtype(d) for d in dtypes))
        return _backend.to_torch_dtype(common)
    except TypeError:
        names = ", ".join(_checks.dtype_name(d) for d in dtypes)
        raise TypeError(
            f"{where}: the arrays' dtypes must promote to one dtype; got {names} "
            f"({_choose_hint(where, 'dtype')})"
        ) from None


def copy_pieces(tensors: list[Any], values: Any) -> Any:
    """Copy (and cast) each tensor into its rows of ``values``; returns ``values``.

    Raises:
        ValueError: when item shapes differ (``copy_`` would broadcast them; callers turn
            this into ``_check_item_shapes``'s message).
    """
    item_shape = values.shape[1:]
    for t, piece in zip(tensors, values.split([t.shape[0] for t in tensors]), strict=True):
        if t.shape[1:] != item_shape:
            raise ValueError(
                f"arrays must have the same item shape; got {tuple(t.shape[1:])} beside "
                f"{tuple(item_shape)}"
            )
        piece.copy_(t)
    return values


def numpy_as_tensor(a: np.ndarray, k: int, where: str) -> Any:
    a = _backend.native_order(a)  # copied anyway
    try:
        return _backend.tensor_from_numpy(a)
    except TypeError:
        raise TypeError(
            f"{where}: arrays[{k}] must have a dtype torch can hold; got {a.dtype}"
        ) from None


def _single_device(tensors: list[Any], where: str) -> Any:
    """The one device all tensors share; a ValueError naming them when there are several."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(
            f"{where}: arrays are on several devices ({', '.join(sorted(map(str, devices)))})"
            f"; {_choose_hint(where, 'device')}"
        )
    return tensors[0].device


def _choose_hint(where: str, option: str) -> str:
    """How to choose a dtype or device: ``from_list``'s option, or converting the samples."""
    if where.startswith(("collate", "RaggedCollate")):  # which takes no such option
        return f"convert the samples to one {option} first"
    return f"pass {option}= to choose it"


def padded_values(
    padded: Any, lengths: Any, where: str, item_ndim: int | None = None
) -> tuple[Any, np.ndarray]:
    """Copy the valid part of ``padded`` ``(m, n_max, *item_shape)`` into one buffer.

    ``item_ndim``: the dims items must have (3 for images), checked before the copy.
    """
    _checks.check_array(padded, where, "padded")
    if padded.ndim < 2:
        raise ValueError(
            f"{where}: padded must be (m, n_max, *item_shape), at least 2-D; "
            f"got {_backend.describe(padded)}"
        )
    if item_ndim is not None and padded.ndim != item_ndim + 2:
        raise ValueError(
            f"{where}: items must be {item_ndim}-D (C, H, W), so padded must be "
            f"{item_ndim + 2}-D (m, n_max, C, H, W); got {_backend.describe(padded)}"
        )
    m, n_max = padded.shape[0], padded.shape[1]
    mask = _bool_matrix(lengths, where)
    host = _offsets.from_lengths(
        lengths if mask is None else _prefix_lengths(mask, (m, n_max), where), where
    )
    counts = np.diff(host)
    if counts.shape[0] != m:
        raise ValueError(
            f"{where}: lengths must have one entry per row of padded ({m}); got {counts.shape[0]}"
        )
    too_long = np.flatnonzero(counts > n_max)
    if too_long.size:
        i = int(too_long[0])
        raise ValueError(
            f"{where}: lengths must be <= padded.shape[1]={n_max}; got lengths[{i}]={counts[i]}"
        )
    rows = _backend.upload(_offsets.segment_ids(host), padded)
    # uint16-64 tensors lack index kernels on older torch: gather their signed twins' bits
    source = _backend.signed_view(padded)
    values = source[rows, _backend.upload(_offsets.positions(host), padded)]
    if values.dtype != padded.dtype:
        values = values.view(padded.dtype)
    # the gather keeps a strided input's layout; the buffer is C-ordered
    if _backend.is_tensor(values):
        return values.contiguous(), host
    return np.ascontiguousarray(values), host


def _bool_matrix(lengths: Any, where: str) -> np.ndarray | None:
    """A host copy of ``lengths`` when it is a 2-D boolean mask (array, tensor or lists).

    A 2-D mask of another dtype (a 0/1 ``attention_mask``, say) is refused by name, rather
    than as lengths that are not 1-D.
    """
    if _backend.is_tensor(lengths):
        _checks.dense_tensor(lengths, where, "lengths (or a mask in place of them)")
        if lengths.dtype != _backend.torch_module().bool:
            return _not_a_mask(lengths, where)
        return _backend.host_numpy(lengths)
    if isinstance(lengths, np.ndarray):
        return lengths if lengths.dtype == np.bool_ else _not_a_mask(lengths, where)
    if isinstance(lengths, (list, tuple)) and lengths and isinstance(lengths[0], (list, tuple)):
        try:
            mask = np.asarray(lengths)
        except ValueError:  # rows of different lengths: not a mask
            return None
        if mask.size == 0 and mask.ndim == 2:  # [[], []]: numpy's float64 of no values
            return mask.astype(np.bool_)
        return mask if mask.dtype == np.bool_ else _not_a_mask(mask, where)
    return None


def _not_a_mask(lengths: Any, where: str) -> None:
    """Refuse a 2-D array of another dtype than bool in place of lengths; pass the rest."""
    if lengths.ndim == 2:
        raise TypeError(
            f"{where}: a (m, n_max) mask in place of lengths must be boolean; got "
            f"{_backend.describe(lengths)} (for a 0/1 mask such as an attention mask, pass "
            "mask.bool() or mask.astype(bool))"
        )


def _prefix_lengths(mask: np.ndarray, shape: tuple[int, int], where: str) -> np.ndarray:
    """The row lengths of a ``(m, n_max)`` mask whose True slots start every row."""
    if mask.shape != shape:
        raise ValueError(
            f"{where}: a mask in place of lengths must have shape (m, n_max)={shape}, the first "
            f"two dims of padded; got shape {tuple(mask.shape)}"
        )
    lengths = mask.sum(axis=1, dtype=np.int64)
    bad = np.flatnonzero((mask != (np.arange(shape[1]) < lengths[:, None])).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: each mask row's True slots must form a prefix (True..., then False...); "
            f"got row {i} = {mask[i].astype(int).tolist()}"
        )
    return lengths


def pad(values: Any, host: np.ndarray, length: int, fill: Any, where: str) -> tuple[Any, Any]:
    """Pad segments into ``(m, length, *item_shape)`` plus a ``(m, length)`` validity mask.

    The padded buffer is filled once and the items are scattered into it: that writes each
    real item once, where gathering every slot would read ``m * length`` rows.
    """
    fill = check_fill(fill, values.dtype, where)
    m = host.shape[0] - 1
    flat_shape = (m * length, *values.shape[1:])
    dtype = values.dtype
    with _allocation(where, m, length):
        dest, src, mask = _offsets.pad_positions(host, length)
        if not _backend.is_tensor(values):
            padded = np.full(flat_shape, fill, dtype=dtype)
        else:
            values = _backend.signed_view(values)  # uint16-64 lack index_copy_ and fill_
            padded = _backend.empty(flat_shape, values.dtype, values.device)
    mask_out = _backend.upload(mask, values)
    if not _backend.is_tensor(values):
        padded[dest] = values if src is None else np.take(values, src, axis=0)
        return padded.reshape(m, length, *values.shape[1:]), mask_out
    torch = _backend.torch_module()
    if values.dtype != dtype:  # the fill's bits, seen the same way
        fill = _backend.signed_view(torch.tensor([fill], dtype=dtype)).item()
    padded.fill_(fill)
    items = values if src is None else _backend.index_rows(values, src)
    index = _backend.upload(dest, values)
    if _backend.transformed(items):  # (vmap cannot write a batched tensor into ours)
        padded = padded.index_copy(0, index, items)
    else:
        padded.index_copy_(0, index, items)  # recorded by autograd
    padded = padded.view(m, length, *values.shape[1:])
    return (padded if padded.dtype == dtype else padded.view(dtype)), mask_out


@contextlib.contextmanager
def _allocation(where: str, m: int, length: int) -> Iterator[None]:
    """Allocating ``m * length`` padded rows: a size too large to allocate is a ValueError."""
    try:
        yield
    except (MemoryError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{where}: the padded array must be small enough to allocate; got {m} segments "
            f"padded to {length} items ({type(err).__name__}: {err})"
        ) from None
