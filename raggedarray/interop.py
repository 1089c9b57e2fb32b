"""Interop with awkward arrays and ``torch.nested`` tensors (optional imports).

The methods of ``InteropMethods`` are thin wrappers over the module functions
``to_awkward``, ``from_awkward``, ``to_nested`` and ``from_nested``. Awkward is
imported lazily, with an install hint when it is missing; torch only when a converter needs it.
Nothing here imports ``ragged.py``: classmethods receive the class to build.

Copies, in short: ``to_awkward`` and ``to_nested`` share the values buffer (``to_awkward``
copies CUDA values to the host); ``from_awkward`` shares the buffer of a contiguous list-offset
layout, sliced or not, and compacts other layouts with one copy; ``from_nested`` shares the
buffer of a jagged tensor without holes, and copies once otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _backend, _checks, _offsets
from ._types import RaggedFields, ValuesT

if TYPE_CHECKING:
    import awkward as ak
    import torch
    from typing_extensions import Self


def _import_awkward(where: str) -> Any:
    try:
        import awkward
    except ImportError:
        raise ImportError(f"{where} needs awkward: pip install 'raggedarray[awkward]'") from None
    return awkward


# --------------------------------------------------------------------------- awkward


def to_awkward(values: Any, host_offsets: np.ndarray, *, where: str = "to_awkward") -> Any:
    """An ``ak.Array`` of type ``m * var * <item dims> * dtype`` over ``values`` and offsets.

    Zero-copy for numpy and CPU torch values (a ``ListOffsetArray`` over a ``NumpyArray`` of
    the values, item dims as its inner shape). CUDA values are copied to the host; values that
    require grad are detached (awkward does not take part in autograd).

    Raises:
        ImportError: awkward is not installed.
        TypeError: the dtype has no awkward equivalent (bfloat16, complex32).
    """
    ak = _import_awkward(where)
    if _backend.is_tensor(values):
        try:
            values = _backend.host_numpy(values)
        except TypeError:
            raise TypeError(
                f"{where}: values must have a dtype numpy and awkward can hold; got "
                f"{values.dtype} (convert first, e.g. x.to(dtype=torch.float32))"
            ) from None
    offsets = ak.index.Index64(np.asarray(host_offsets, dtype=np.int64))
    layout = ak.contents.ListOffsetArray(offsets, ak.contents.NumpyArray(values))
    return ak.Array(layout)


def _describe_awkward(array: Any) -> str:
    return f"awkward array of type {array.type}"


def _check_awkward_type(ak: Any, array: Any, where: str) -> bool:
    """Reject records, unions, strings and non-list arrays; return whether options occur."""
    types = ak.types
    has_option = False
    node = array.type.content
    depth = 0
    while True:
        if isinstance(node, types.OptionType):
            has_option = True
            node = node.content
            continue
        if node.parameter("__array__") in ("string", "bytestring", "char", "byte"):
            raise TypeError(
                f"{where}: items must be numbers, not strings; got {_describe_awkward(array)}"
            )
        if isinstance(node, types.RecordType):
            raise TypeError(
                f"{where}: items must be numbers, not records (convert one field at a time, "
                f"e.g. array['x']); got {_describe_awkward(array)}"
            )
        if isinstance(node, types.UnionType):
            raise TypeError(
                f"{where}: items must have one type, not a union; got {_describe_awkward(array)}"
            )
        if depth == 0 and not isinstance(node, types.ListType):
            hint = (
                " (ak.from_regular(array, axis=1) turns a regular dimension into a ragged one)"
                if isinstance(node, types.RegularType)
                else ""
            )
            raise TypeError(
                f"{where}: array must be a list of variable-length lists (m * var * ...)"
                f"{hint}; got {_describe_awkward(array)}"
            )
        if isinstance(node, (types.ListType, types.RegularType)):
            node = node.content
            depth += 1
            continue
        return has_option  # NumpyType or UnknownType: the leaves


def _regular_items(ak: Any, array: Any, where: str) -> Any:
    """Make every list dimension below the first regular; raise if one is truly ragged."""
    for axis in range(2, array.ndim):
        try:
            array = ak.to_regular(array, axis=axis)
        except ValueError:
            raise ValueError(
                f"{where}: only the first list dimension may be ragged, but the lists at "
                f"axis={axis} have different lengths; got {_describe_awkward(array)}"
            ) from None
    return array


def _numpy_values(ak: Any, content: Any) -> np.ndarray:
    """The content below the first list dimension as one ``(N, *item_shape)`` numpy array."""
    if isinstance(content, ak.contents.EmptyArray):
        return np.zeros(0, dtype=np.float64)
    return ak.to_numpy(ak.Array(content), allow_missing=False)


def _is_plain(ak: Any, layout: Any) -> bool:
    """Whether ``layout`` is a ListOffsetArray over RegularArrays over a NumpyArray."""
    if not isinstance(layout, ak.contents.ListOffsetArray):
        return False
    content = layout.content
    while isinstance(content, ak.contents.RegularArray):
        content = content.content
    return isinstance(content, (ak.contents.NumpyArray, ak.contents.EmptyArray))


def from_awkward(array: Any, *, item_ndim: int | None, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Numpy ``(values, host_offsets)`` of an awkward array of type ``m * var * ... * dtype``.

    Zero-copy for a ``ListOffsetArray`` over regular content (offsets not starting at 0, as
    after ``array[1:]``, are shifted and the values sliced as a view); other list layouts
    (``ListArray``, ``IndexedArray``, option types) are compacted with ``ak.to_packed``, one
    copy. Option types are accepted when no value is missing. Inner ``var`` dimensions whose
    lists all have the same length are made regular (awkward infers ``var`` from nested
    Python lists). Offsets are always copied (they are ``m + 1`` integers).
    """
    ak = _import_awkward(where)
    if isinstance(array, ak.contents.Content):
        array = ak.Array(array)
    if not isinstance(array, ak.Array):
        raise TypeError(f"{where}: array must be an awkward Array; got {_backend.describe(array)}")
    if ak.backend(array) == "typetracer":  # (a dask-awkward graph's stand-in: types only)
        raise TypeError(
            f"{where}: array must hold data; got an awkward typetracer array of type "
            f"{array.type} (compute it first, e.g. with dask's .compute())"
        )
    if ak.backend(array) != "cpu":
        array = ak.to_backend(array, "cpu")
    if _check_awkward_type(ak, array, where):
        for axis in range(array.ndim):
            missing = ak.is_none(array, axis=axis)
            if ak.any(missing):
                raise ValueError(
                    f"{where}: array must have no missing values (fill them with ak.fill_none "
                    f"or drop them with ak.drop_none); got {int(ak.sum(missing))} at "
                    f"axis={axis} in an {_describe_awkward(array)}"
                )
        array = ak.drop_none(array)
    array = _regular_items(ak, array, where)
    layout = ak.to_layout(array)
    if not _is_plain(ak, layout):
        layout = ak.to_layout(ak.to_packed(array))
    host = np.asarray(layout.offsets.data)
    values = _numpy_values(ak, layout.content)
    start, stop = int(host[0]), int(host[-1])
    host = host.astype(np.int64, copy=True)
    if start:
        host -= start
    if start or stop != values.shape[0]:
        values = values[start:stop]
    if values.dtype.kind not in "biufc":
        raise TypeError(
            f"{where}: items must hold numbers or booleans; got {_describe_awkward(array)}"
        )
    _checks.check_values(values, where, item_ndim)
    _offsets.validate(host, values.shape[0], where)
    return values, host


# ----------------------------------------------------------------------- torch.nested


def to_nested(values: Any, offsets: Any, *, min_length: int, max_length: int) -> Any:
    """A jagged-layout nested tensor sharing ``values`` (numpy values become CPU tensors).

    The min and max sequence lengths are passed, so that padding later pads to the longest
    segment without a device sync. ``offsets`` must be what the ragged array hands out
    (``x.offsets``, never its own tensor), since ``nt.offsets()`` reaches the user: nested
    tensors of arrays over the same offsets then share them, and so one ragged size.
    """
    torch = _backend.torch_module()
    if not _backend.is_tensor(values):
        values = _backend.writable_tensor(values)
    # torch's jagged operations drop a negative bit (nt + 0, relu): resolved, so a copy
    values = values.resolve_neg()
    return torch.nested.nested_tensor_from_jagged(
        values, offsets, min_seqlen=min_length, max_seqlen=max_length
    )


def from_nested(nt: Any, *, item_ndim: int | None, where: str) -> tuple[Any, np.ndarray]:
    """Torch ``(values, host_offsets)`` of a nested tensor whose ragged dimension is dim 1.

    Jagged tensors without holes are shared as they are (values sliced when their offsets do
    not start at 0); jagged tensors with ``lengths`` (holes, as made by ``torch.nested.narrow``)
    are compacted with one gather; strided nested tensors are concatenated (one copy). Reading
    the offsets to the host synchronises a CUDA device once.
    """
    if not (_backend.is_tensor(nt) and nt.is_nested):
        raise TypeError(
            f"{where}: nested_tensor must be a torch.nested tensor; got {_backend.describe(nt)}"
        )
    torch = _backend.torch_module()
    if nt.device.type == "meta":  # (reading its offsets would fail in torch)
        raise ValueError(f"{where}: nested_tensor must hold data; got one on the meta device")
    if nt.layout == torch.jagged:
        values, host = _from_jagged(nt, where)
    else:
        values, host = _from_strided(torch, nt, where)
    _checks.check_values(values, where, item_ndim)
    return values, host


def _from_jagged(nt: Any, where: str) -> tuple[Any, np.ndarray]:
    ragged_idx = nt._ragged_idx
    if ragged_idx != 1:
        raise ValueError(
            f"{where}: the ragged dimension must be dim 1; got a nested tensor of shape "
            f"{tuple(nt.shape)} ragged in dim {ragged_idx}"
        )
    values, offsets, lengths = nt.values(), nt.offsets(), nt.lengths()
    if lengths is not None:  # holes: offsets and lengths come to the host in one copy
        torch = _backend.torch_module()
        both = _backend.host_int64(torch.cat([offsets, lengths.to(offsets.dtype)]))
        starts, lengths = both[: offsets.shape[0] - 1], both[offsets.shape[0] :]
        _check_spans(starts, lengths, values.shape[0], where)
        compact, index = _offsets.spans(starts, lengths)
        return _backend.index_rows(values, index), compact
    host = _backend.host_int64(offsets).copy()
    start, stop = int(host[0]), int(host[-1])
    if not 0 <= start <= stop <= values.shape[0]:
        raise ValueError(
            f"{where}: the nested tensor's offsets must lie within its {values.shape[0]} "
            f"values; got offsets from {start} to {stop}"
        )
    if start:
        host -= start
    _offsets.validate(host, stop - start, where)  # non-decreasing
    if start or stop != values.shape[0]:
        values = values[start:stop]
    return values, host


def _check_spans(starts: np.ndarray, lengths: np.ndarray, num_values: int, where: str) -> None:
    """A holed jagged tensor's segments must be non-negative spans inside its values."""
    bad = np.flatnonzero((lengths < 0) | (starts < 0) | (starts + lengths > num_values))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: the nested tensor's segments must lie within its {num_values} values; "
            f"got segment {i} at offset {starts[i]} with length {lengths[i]}"
        )


def _from_strided(torch: Any, nt: Any, where: str) -> tuple[Any, np.ndarray]:
    parts = nt.unbind()
    if not parts:
        raise ValueError(
            f"{where}: a strided nested tensor must hold at least one tensor (its item shape "
            f"is unknown otherwise); got {len(parts)}"
        )
    item_shape = tuple(parts[0].shape[1:])
    for i, part in enumerate(parts):
        if part.ndim == 0:
            raise ValueError(
                f"{where}: the ragged dimension must be dim 1, so every tensor must have one "
                f"(n_i, *item_shape); got tensor {i} of shape () (0-d)"
            )
        if tuple(part.shape[1:]) != item_shape:
            raise ValueError(
                f"{where}: the ragged dimension must be dim 1 (all tensors "
                f"(n_i, *item_shape) with one item shape); got tensor 0 of shape "
                f"{tuple(parts[0].shape)} and tensor {i} of shape {tuple(part.shape)}"
            )
    lengths = np.array([part.shape[0] for part in parts], dtype=np.int64)
    return torch.cat(parts), _offsets.from_lengths(lengths, where)


# ----------------------------------------------------------------------------- mixin


class InteropMethods(RaggedFields[ValuesT]):
    """Mixin: awkward and torch.nested converters of [`RaggedArray`][raggedarray.RaggedArray]."""

    __slots__ = ()

    def to_awkward(self) -> ak.Array:
        """An ``ak.Array`` of type ``m * var * <item dims> * dtype`` sharing the values.

        Zero-copy for numpy and CPU torch values. CUDA values are copied to the host (awkward
        arrays handed back live on awkward's CPU backend); values that require grad are
        detached. Needs awkward (``pip install 'raggedarray[awkward]'``).

        Raises:
            ImportError: awkward is not installed.
            TypeError: the dtype has no numpy equivalent (bfloat16).

        Examples:
            >>> import numpy as np
            >>> import awkward as ak
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(6.0).reshape(3, 2), [2, 0, 1])
            >>> a = x.to_awkward()
            >>> str(a.type)
            '3 * var * 2 * float64'
            >>> a.tolist()
            [[[0.0, 1.0], [2.0, 3.0]], [], [[4.0, 5.0]]]
            >>> ak.sum(a, axis=1).tolist()
            [[2.0, 4.0], [0.0, 0.0], [4.0, 5.0]]
        """
        where = f"{type(self).__name__}.to_awkward"
        return to_awkward(self._values, self._host, where=where)

    @classmethod
    def from_awkward(cls, array: ak.Array) -> Self:
        """Build from an awkward array of type ``m * var * <item dims> * dtype``.

        Zero-copy when the layout is a ``ListOffsetArray`` over regular numeric content,
        sliced (``array[1:]``) or not; other list layouts (``ListArray`` with starts and
        stops, as made by ``array[[2, 0]]``, indexed layouts, option types) are compacted
        with one copy. Option types are accepted when no value is actually missing. Inner
        ``var`` dimensions whose lists all have the same length (as awkward infers from
        nested Python lists) become regular item dimensions. The values are numpy arrays.

        Args:
            array: an ``ak.Array`` (or an awkward layout) on any awkward backend; non-CPU
                arrays are copied to the host.

        Raises:
            ImportError: awkward is not installed.
            TypeError: ``array`` is not an awkward array, is not a list of lists, or holds
                records, unions, strings or other non-numeric items.
            ValueError: values are missing, an inner dimension is ragged too, or (for
                ``RaggedImageBatch``) items are not 3-D.

        Examples:
            >>> import awkward as ak
            >>> import raggedarray as ra
            >>> a = ak.Array([[1.0, 2.0], [], [3.0, 4.0, 5.0]])
            >>> x = ra.RaggedArray.from_awkward(a)
            >>> x.lengths, x.values
            (array([2, 0, 3]), array([1., 2., 3., 4., 5.]))
            >>> ra.RaggedArray.from_awkward(a[1:]).offsets
            array([0, 0, 3])
            >>> ra.RaggedArray.from_awkward(ak.Array([[[1, 2]], [[3, 4], [5, 6]]])).item_shape
            (2,)
        """
        where = f"{cls.__name__}.from_awkward"
        values, host = from_awkward(array, item_ndim=cls._item_ndim, where=where)
        return cls._make(values, None, host)

    def to_nested(self) -> torch.Tensor:
        """A jagged-layout ``torch.nested`` tensor sharing the values buffer.

        Shape ``(m, j, *item_shape)``; numpy values become CPU tensors without a copy (a
        read-only buffer, such as a memory-mapped file's, is copied, as ``torch()`` does, and so
        are values with torch's negative bit, whose sign jagged operations would drop), and
        values that require grad stay in the autograd graph. The min and max segment lengths
        are always passed (``min_seqlen``, ``max_seqlen``), so that padding the result pads
        to the longest segment rather than to ``N``, and never syncs the device.

        Examples:
            >>> import torch
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(torch.arange(6.0).reshape(3, 2), [2, 0, 1])
            >>> nt = x.to_nested()
            >>> nt.is_nested, nt.layout, nt.values().data_ptr() == x.values.data_ptr()
            (True, torch.jagged, True)
            >>> torch.nested.to_padded_tensor(nt, 0.0).shape
            torch.Size([3, 2, 2])
        """
        part = self._part
        offsets = self._offsets if _backend.is_tensor(self._values) else part.offsets("cpu")
        return to_nested(
            self._values,
            part.handed_out("offsets", offsets),
            min_length=self.min_length,
            max_length=self.max_length,
        )

    @classmethod
    def from_nested(cls, nested_tensor: torch.Tensor) -> Self:
        """Build from a ``torch.nested`` tensor ragged in dim 1.

        Zero-copy from a jagged-layout tensor (its ``values()`` and ``offsets()``); a jagged
        tensor with holes (``lengths()``, as made by ``torch.nested.narrow``) is compacted
        with one gather, and a strided-layout nested tensor is concatenated (one copy). The
        result is differentiable. Reading the offsets synchronises a CUDA device once.

        Raises:
            TypeError: the input is not a nested tensor.
            ValueError: the ragged dimension is not dim 1, a strided nested tensor is empty,
                or (for ``RaggedImageBatch``) items are not 3-D.

        Examples:
            >>> import torch
            >>> import raggedarray as ra
            >>> nt = torch.nested.nested_tensor(
            ...     [torch.ones(2, 3), torch.zeros(1, 3)], layout=torch.jagged
            ... )
            >>> x = ra.RaggedArray.from_nested(nt)
            >>> x.lengths.tolist(), x.item_shape, x.values.data_ptr() == nt.values().data_ptr()
            ([2, 1], (3,), True)
        """
        where = f"{cls.__name__}.from_nested"
        values, host = from_nested(nested_tensor, item_ndim=cls._item_ndim, where=where)
        return cls._make(values, None, host)
