"""``RaggedArray``: one contiguous buffer plus offsets, seen as a list or as one array."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

import numpy as np

from . import _assign, _backend, _checks, _compare, _construct, _offsets
from ._backend import NUMPY, TORCH
from ._compute import ComputeMethods
from ._display import DisplayMethods
from ._elementwise import ElementwiseMethods
from ._movement import MovementMethods
from ._partition import Partition
from ._pickle import PickleMethods
from ._segment_methods import SegmentMethods
from ._types import (
    ArrayLike,
    DeviceLike,
    DType,
    DTypeLike,
    IndexArrayLike,
    IntArrayLike,
    IntIndex,
    MaskLike,
    NewValuesT,
    ValuesT,
)
from .interop import InteropMethods

if TYPE_CHECKING:
    import torch
    from typing_extensions import Self

R = TypeVar("R", bound="RaggedArray")

# Classes for results whose items have a given number of dimensions (``map`` returning 4-D
# values gives a RaggedImageBatch); filled in by the subclasses' modules.
_ITEM_CLASSES: dict[int, type[RaggedArray]] = {}


def register_item_class(cls: type[RaggedArray]) -> type[RaggedArray]:
    """Make ``cls`` the class of computed results whose items have ``cls._item_ndim`` dims."""
    _ITEM_CLASSES[cast(int, cls._item_ndim)] = cls
    return cls


class RaggedArray(
    MovementMethods[ValuesT],
    ElementwiseMethods[ValuesT],
    ComputeMethods[ValuesT],
    SegmentMethods[ValuesT],
    InteropMethods[ValuesT],
    DisplayMethods[ValuesT],
    PickleMethods,
):
    """``m`` segments; segment ``i`` holds ``lengths[i]`` items of shape ``item_shape``.

    Invariants (checked by every public constructor)::

        values  : (N, *item_shape)   numpy.ndarray or torch.Tensor, any device
        offsets : (m + 1,) int64     same backend and device as values
        offsets[0] == 0,  offsets[i] <= offsets[i + 1],  offsets[-1] == N
        segment i == values[offsets[i] : offsets[i + 1]]     # a view, never a copy

    The object is immutable: no method changes its offsets, and methods return new objects
    that share buffers wherever they can. Writing into ``values`` or into a segment view
    writes through. A host copy of the offsets is kept, so ``len``, ``host_lengths``,
    ``max_length``, integer and slice indexing and padding never synchronise a CUDA device.

    Args:
        values: the ``(N, *item_shape)`` buffer, used as it is (no copy).
        offsets: ``(m + 1,)`` integer offsets of the same backend and device as ``values``
            (a list is accepted too). Integer dtypes other than int64 are converted.

    Raises:
        TypeError: ``values`` is not an array, offsets are not integers, or the two have
            different backends.
        ValueError: the invariants above do not hold, or values and offsets live on
            different devices.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray(np.arange(10.0).reshape(5, 2), [0, 2, 2, 5])
        >>> x
        RaggedArray(num_segments=3, num_items=5, n_i=0..3 (mean 1.67), item_shape=(2,), dtype=float64, device=cpu, backend=numpy)
        >>> x[0]
        array([[0., 1.],
               [2., 3.]])
        >>> x.lengths
        array([2, 0, 3])
        >>> x.values.shape
        (5, 2)
    """  # noqa: E501

    __slots__ = ("__weakref__", "_part", "_values")
    _item_ndim: ClassVar[int | None] = None

    def __init__(self: RaggedArray[NewValuesT], values: NewValuesT, offsets: IntArrayLike) -> None:
        where = type(self).__name__
        _checks.check_values(values, where, self._item_ndim)
        _checks.check_same_place(values, offsets, where, "offsets")
        host = _offsets.read_offsets(offsets, where)
        _offsets.validate(host, values.shape[0], where)
        self._set(values, *_construct.own_offsets(offsets, host, values))

    def _set(self, values: Any, offsets: Any, host: np.ndarray) -> None:
        tensor_offsets = offsets if _backend.is_tensor(offsets) else None
        self._values = values
        self._part = Partition(host, offsets=tensor_offsets)

    @classmethod
    def _make(cls: type[R], values: Any, offsets: Any, host: np.ndarray) -> R:
        """Trusted constructor: no checks; ``offsets=None`` derives them from ``host``."""
        self = object.__new__(cls)
        self._set(values, offsets, host)
        return self

    @classmethod
    def _share(cls: type[R], values: Any, part: Partition) -> R:
        """Trusted constructor over an existing partition (its caches are shared)."""
        self = object.__new__(cls)
        self._values = values
        self._part = part
        return self

    def _like(self, values: Any, offsets: Any, host: np.ndarray) -> RaggedArray[Any]:
        """A ragged array of this class when the item shape still fits it, else a RaggedArray."""
        return self._fitting_class(values)._make(values, offsets, host)

    def _fitting_class(self, values: Any) -> type[RaggedArray[Any]]:
        cls = type(self)
        if cls._item_ndim is not None and values.ndim != cls._item_ndim + 1:
            cls = RaggedArray
        return cls

    def _with_values(self, values: Any) -> RaggedArray[Any]:
        """New values over these offsets, in this class when the item shape still fits it.

        The partition (offsets on every device, lengths, segment ids, kernel indices) is
        shared, so nothing derived from the offsets is built again.
        """
        return self._fitting_class(values)._share(values, self._part)

    def _rewrap(self, values: Any) -> RaggedArray[Any]:
        """New values over these offsets, in the class their item shape calls for.

        The partition is shared whatever the values' backend or device: it holds the offsets
        for every device.
        """
        return _ITEM_CLASSES.get(values.ndim - 1, RaggedArray)._share(values, self._part)

    @property
    def _host(self) -> np.ndarray:
        return self._part.host  # type: ignore[return-value]

    @property
    def _offsets(self) -> Any:
        return self._part.offsets_like(self._values)

    # ----------------------------------------------------------------------- construction

    # The result's backend follows the inputs: numpy arrays and lists give numpy, tensors or a
    # device give torch; a list of both kinds is typed as either.
    @overload
    @classmethod
    def from_list(
        cls,
        arrays: Sequence[np.ndarray | Sequence[object]],
        *,
        dtype: DTypeLike | None = None,
        device: None = None,
        item_shape: tuple[int, ...] | None = None,
    ) -> RaggedArray[np.ndarray]: ...
    @overload
    @classmethod
    def from_list(
        cls,
        arrays: Sequence[torch.Tensor],
        *,
        dtype: DTypeLike | None = None,
        device: DeviceLike | None = None,
        item_shape: tuple[int, ...] | None = None,
    ) -> RaggedArray[torch.Tensor]: ...
    @overload
    @classmethod
    def from_list(
        cls,
        arrays: Sequence[ArrayLike],
        *,
        dtype: DTypeLike | None = None,
        device: DeviceLike,
        item_shape: tuple[int, ...] | None = None,
    ) -> RaggedArray[torch.Tensor]: ...
    @overload
    @classmethod
    def from_list(
        cls,
        arrays: Sequence[ArrayLike],
        *,
        dtype: DTypeLike | None = None,
        device: DeviceLike | None = None,
        item_shape: tuple[int, ...] | None = None,
    ) -> RaggedArray: ...
    @classmethod
    def from_list(
        cls,
        arrays: Sequence[ArrayLike | Sequence[object]],
        *,
        dtype: DTypeLike | None = None,
        device: DeviceLike | None = None,
        item_shape: tuple[int, ...] | None = None,
    ) -> RaggedArray:
        """Concatenate per-segment arrays ``(n_i, *item_shape)`` into one buffer.

        One output allocation; numpy arrays, torch tensors and nested lists may be mixed.
        The result is a torch tensor when any input is one or ``device`` is given, else a
        numpy array. Dtypes are promoted as the backend promotes them (a nested list is
        read with ``np.asarray`` first, as float64 or int64, and promotes as such: beside
        bfloat16 tensors, ``[1.0]`` makes the buffer float64); ``dtype`` overrides,
        converting as ``astype`` does (out-of-range integers wrap, as in numpy and torch);
        it casts real numbers, so items refused without it (objects, strings, dates, complex
        numbers) are refused with it.
        Inputs that require grad give a differentiable result.

        Args:
            arrays: the segments, in order. Empty segments are ``(0, *item_shape)`` arrays.
            dtype: dtype of the result (numpy or torch dtype); promoted from inputs if None.
            device: torch device of the result; inputs are gathered on the host and moved
                once when they live elsewhere.
            item_shape: item shape of the result when ``arrays`` is empty (default ``()``,
                ``(1, 0, 0)`` for images); when given, the arrays must have it.

        Raises:
            TypeError: an input is not array-like or has a dtype the result cannot hold.
            ValueError: inputs have different item shapes or live on several devices
                while ``device`` is None.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_list([np.ones((2, 3)), np.zeros((0, 3)), [[1, 2, 3]]])
            >>> x.lengths, x.values.shape, x.dtype
            (array([2, 0, 1]), (3, 3), dtype('float64'))
        """
        where = f"{cls.__name__}.from_list"
        image = cls._item_ndim == 3
        shape = None if item_shape is None else _item_shape(item_shape, where)
        if shape is not None and cls._item_ndim is not None and len(shape) != cls._item_ndim:
            raise ValueError(
                f"{where}: items must be {cls._item_ndim}-D (C, H, W), so item_shape must "
                f"have {cls._item_ndim} dims; got item_shape={shape}"
            )
        values, host = _construct.concat(
            arrays, dtype=dtype, device=device, where=where, image=image, item_shape=shape
        )
        # (one array passes through as it is: a refusal names it)
        what = "arrays[0]" if host.shape[0] == 2 else "the joined arrays"
        _checks.check_values(values, where, cls._item_ndim, what)
        built: RaggedArray = cls._make(values, None, host)  # of this class
        return built

    @classmethod
    def from_lengths(cls, values: NewValuesT, lengths: IntArrayLike) -> RaggedArray[NewValuesT]:
        """Split ``values`` into consecutive segments of the given lengths (zero-copy).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(5), [3, 0, 2]).offsets
            array([0, 3, 3, 5])
        """
        where = f"{cls.__name__}.from_lengths"
        _checks.check_values(values, where, cls._item_ndim)
        host = _offsets.from_lengths(lengths, where)
        if host[-1] != values.shape[0]:
            raise ValueError(
                f"{where}: lengths must sum to the number of items values.shape[0]="
                f"{values.shape[0]}; got sum {host[-1]}"
            )
        built: RaggedArray[Any] = cls._make(values, None, host)  # of this class
        return built

    @classmethod
    def from_segment_ids(
        cls, values: NewValuesT, segment_ids: IntArrayLike, num_segments: int | None = None
    ) -> RaggedArray[NewValuesT]:
        """Group items by sorted segment ids (zero-copy).

        Args:
            values: the ``(N, *item_shape)`` buffer.
            segment_ids: ``(N,)`` sorted, non-negative segment id of every item.
            num_segments: number of segments; ids must be below it, and trailing empty
                segments are kept. Defaults to ``max(segment_ids) + 1`` (0 when N is 0).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_segment_ids(np.arange(4), [0, 0, 2, 2], num_segments=4).lengths
            array([2, 0, 2, 0])
        """
        where = f"{cls.__name__}.from_segment_ids"
        _checks.check_values(values, where, cls._item_ndim)
        host = _offsets.from_segment_ids(
            segment_ids, num_segments, where, num_items=values.shape[0]
        )
        built: RaggedArray[Any] = cls._make(values, None, host)  # of this class
        return built

    @classmethod
    def from_padded(
        cls, padded: NewValuesT, lengths: IntArrayLike | MaskLike
    ) -> RaggedArray[NewValuesT]:
        """Copy the valid part of a padded ``(m, n_max, *item_shape)`` array.

        Row ``i`` keeps its first ``lengths[i]`` items. ``lengths`` may instead be the
        ``(m, n_max)`` boolean mask of ``to_padded`` (numpy or torch, any device; read on the
        host), whose True slots must form a prefix of every row. One allocation; differentiable.

        Raises:
            TypeError: ``padded`` is not an array, or ``lengths`` is neither integers nor a
                boolean mask.
            ValueError: ``padded`` is not at least 2-D, ``lengths`` has not one entry per
                row or holds a length outside ``[0, n_max]``, or the mask's shape is not
                ``(m, n_max)`` or a row's True slots are not a prefix.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_padded(np.array([[1, 2, 0], [3, 0, 0]]), [2, 1])
            >>> x.values, x.lengths
            (array([1, 2, 3]), array([2, 1]))
            >>> padded, mask = x.to_padded()
            >>> ra.RaggedArray.from_padded(padded, mask).equal(x)
            True
        """
        where = f"{cls.__name__}.from_padded"
        values, host = _construct.padded_values(padded, lengths, where, cls._item_ndim)
        _checks.check_values(values, where, cls._item_ndim)
        built: RaggedArray[Any] = cls._make(values, None, host)  # of this class
        return built

    # ------------------------------------------------------------------------- attributes

    @property
    def values(self) -> ValuesT:
        """The ``(N, *item_shape)`` buffer of all items of all segments."""
        return self._values

    @property
    def offsets(self) -> ValuesT:
        """``(m + 1,)`` int64 offsets on the values' backend and device.

        numpy offsets are read-only; torch has no read-only tensors, so torch offsets are
        the ragged array's copy for you: writing into it changes nothing here, and the next
        access hands out a fresh copy. The same holds for ``lengths`` and ``segment_ids``.
        """
        return self._part.handed_out("offsets", self._offsets)

    @property
    def host_offsets(self) -> np.ndarray:
        """Read-only host (numpy) copy of the offsets; reading it never syncs a device."""
        return self._host

    @property
    def host_lengths(self) -> np.ndarray:
        """Read-only host (numpy) ``(m,)`` int64 segment lengths; never syncs a device."""
        return self._part.host_lengths

    @property
    def lengths(self) -> ValuesT:
        """``(m,)`` int64 segment lengths on the values' backend and device."""
        return self._part.handed_out("lengths", self._part.lengths_like(self._values))

    @property
    def segment_ids(self) -> ValuesT:
        """``(N,)`` int64 segment id of every item, on the values' backend and device."""
        return self._part.handed_out("ids", self._part.segment_ids_like(self._values))

    @property
    def num_segments(self) -> int:
        """Number of segments ``m`` (same as ``len(x)``)."""
        return self._part.num_segments

    @property
    def num_items(self) -> int:
        """Number of items ``N`` over all segments."""
        return self._part.num_items

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one item: ``values.shape[1:]``."""
        return tuple(self._values.shape[1:])

    @property
    def max_length(self) -> int:
        """Length of the longest segment (0 when there are no segments)."""
        return self._part.max_length

    @property
    def min_length(self) -> int:
        """Length of the shortest segment (0 when there are no segments)."""
        return self._part.min_length

    @property
    def dtype(self) -> DType:
        """The values' dtype (a ``numpy.dtype`` or a ``torch.dtype``)."""
        return self._values.dtype

    @property
    def device(self) -> torch.device:
        """The values' ``torch.device`` (``torch.device("cpu")`` for numpy values)."""
        return _backend.device_of(self._values)

    @property
    def backend(self) -> str:
        """``"numpy"`` or ``"torch"``."""
        return TORCH if _backend.is_tensor(self._values) else NUMPY

    @property
    def requires_grad(self) -> bool:
        """Whether the values take part in autograd (always False for numpy)."""
        return bool(getattr(self._values, "requires_grad", False))

    # ------------------------------------------------------------------ views and indexing

    def __len__(self) -> int:
        return self._part.num_segments

    def _segment(self, i: int) -> Any:
        return self._values[int(self._host[i]) : int(self._host[i + 1])]

    @overload
    def __getitem__(self, key: IntIndex) -> ValuesT: ...
    @overload
    def __getitem__(self, key: slice | IndexArrayLike) -> Self: ...
    def __getitem__(self, key: Any) -> ValuesT | Self:
        """``x[i]``: segment view; ``x[a:b]``: ragged view; arrays, masks, steps: a copy.

        ``x[i]`` is the ``(n_i, *item_shape)`` view ``values[offsets[i]:offsets[i + 1]]``
        (``i`` may be negative). ``x[a:b]`` is a ragged array over the same buffer. An
        index array (a list, a numpy array or a CPU tensor of ints, whatever the backend of
        ``x``), a boolean mask of ``m`` entries, or a slice with another step gathers the
        segments in the order asked into a new buffer, in one allocation.

        Raises:
            TypeError: an index of another kind (a float, a string, ``None``, a tuple).
            IndexError: an integer out of range, or an index array that is not 1-D
                integers or booleans (as numpy says), or a mask of another length.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(6.0), [2, 0, 4])
            >>> x[0], x[-1].shape
            (array([0., 1.]), (4,))
            >>> x[1:].lengths, x[[2, 0]].lengths, x[np.array([True, False, True])].lengths
            (array([0, 4]), array([4, 2]), array([2, 4]))
        """
        return self._getitem(key, f"{type(self).__name__}.__getitem__")

    def __setitem__(self, key: IntIndex, value: ArrayLike) -> None:
        """``x[i] = value``: write into segment ``i``, whose length stays.

        ``value`` is a number, which fills the segment, or an array of the values' backend
        (and device) that broadcasts to the segment's shape. It must cast to the values'
        dtype by numpy's ``same_kind`` rule and be representable there (300 into uint8 is
        refused, on both backends). Everything is checked before anything is written.
        ``x[i] += v`` works in place.

        Raises:
            TypeError: a key that is not an int (slices and arrays cannot be assigned: the
                structure is immutable), or a value of another kind or backend.
            ValueError: a value that does not broadcast to the segment, or does not fit its
                dtype.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.zeros(3), [1, 2])
            >>> x[1] += 5.0
            >>> x[0] = [7.0]
            >>> x.values
            array([7., 5., 5.])
        """
        where = f"{type(self).__name__}.__setitem__"
        segment = self._getitem(_assign.segment_key(key, where), where)
        _assign.assign(segment, value, where, values=self._values)

    def _getitem(self, key: Any, where: str) -> Any:
        m = len(self)
        if _checks.is_int(key):
            i = int(key)
            if not -m <= i < m:
                raise IndexError(_checks.index_range(where, m, i))
            return self._segment(i + m if i < 0 else i)
        if isinstance(key, slice) and key.step == 0:
            raise ValueError(f"{where}: slice step must not be zero; got {key}")
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = _offsets.slice_indices(key, m, where)
            b = max(a, b)
            return self._slice(a, b)
        if _backend.is_tensor(key):
            _checks.dense_tensor(key, where, "an index tensor")
        if _backend.backend_of(key) is not None and key.ndim == 0:
            return self._getitem(key.item(), where)
        index = _checks.index_of(key)  # a class of the user's own with __index__
        if index is not None:
            return self._getitem(index, where)
        if isinstance(
            key, (tuple, bool, np.bool_, float, str, type(None), type(Ellipsis), RaggedArray)
        ):
            raise TypeError(
                f"{where}: index with an int, a slice, an index array or a boolean mask; "
                f"got {type(key).__name__} (for item j of segment i use x[i][j])"
            )
        return self._take(_offsets.segment_index(key, m, where), where)

    def _slice(self, a: int, b: int) -> Self:
        host = self._host[a : b + 1] - self._host[a]
        values = self._values[int(self._host[a]) : int(self._host[b])]
        return cast("Self", self._like(values, None, host))  # same item shape, same class

    def _take(self, segments: np.ndarray, where: str) -> Self:
        if math.prod(self.item_shape) == 0:  # items of no size need no index of N entries
            host = _offsets.gathered_offsets(self._host, segments, where)
            try:
                values = self._values[:0].reshape(int(host[-1]), *self.item_shape)  # no memory
            except (ValueError, RuntimeError):  # numpy: N times the item size must fit int64
                raise ValueError(
                    f"{where}: the selection must have a shape its backend can hold; got "
                    f"{int(host[-1])} items of shape {self.item_shape} and dtype "
                    f"{_checks.dtype_name(self.dtype)}"
                ) from None
        else:
            host, index = _offsets.gather(self._host, segments, where)
            values = _backend.index_rows(self._values, index)
        return cast("Self", self._like(values, None, host))

    def __iter__(self) -> Iterator[ValuesT]:
        return iter(self.unbind())

    def unbind(self) -> tuple[ValuesT, ...]:
        """All segments as a tuple of views.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(3), [1, 2]).unbind()
            (array([0]), array([1, 2]))
        """
        if len(self) == 0:
            return ()
        values = self._values
        if _backend.is_tensor(values):
            if not values.requires_grad:
                return values.split(self.host_lengths.tolist())
            # split's views are one multi-output view, which autograd lets no one write into
            # (and a write through x[i] breaks): slices, as x[i] gives
            bounds = self._host.tolist()
            return tuple(values[a:b] for a, b in itertools.pairwise(bounds))
        parts: list[Any] = np.split(values, self._host[1:-1])
        return tuple(parts)

    def to_list(self) -> list[ValuesT]:
        """All segments as a list of views ``(n_i, *item_shape)``.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(3), [1, 0, 2]).to_list()
            [array([0]), array([], dtype=int64), array([1, 2])]
        """
        return list(self.unbind())

    # --------------------------------------------------------------------- comparison

    def equal(self, other: object) -> bool:
        """Whether ``other`` is a ragged array with the same offsets, item shape and values.

        Values are compared exactly, across backends and devices; dtypes may differ, and so
        may the classes (a ``RaggedImageBatch`` equals a ``RaggedArray`` over the same data).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(3), [1, 2])
            >>> x.equal(x.torch()), x.equal(x[::-1])
            (True, False)
        """
        return isinstance(other, RaggedArray) and _compare.ragged_equal(self, other)

    # ------------------------------------------------------------------ python protocols

    def __repr__(self) -> str:
        lengths = self.host_lengths
        if len(self):
            spread = f"{lengths.min()}..{lengths.max()} (mean {lengths.mean():.3g})"
        else:
            spread = "none"
        dtype = str(self.dtype).replace("torch.", "")
        grad = ", requires_grad=True" if self.requires_grad else ""
        return (
            f"{type(self).__name__}(num_segments={len(self)}, num_items={self.num_items}, "
            f"n_i={spread}, item_shape={self.item_shape}, dtype={dtype}, "
            f"device={_backend.device_str(self._values)}, backend={self.backend}{grad})"
        )


def _item_shape(item_shape: Any, where: str) -> tuple[int, ...]:
    """The ``item_shape=`` argument as a tuple of non-negative ints."""
    if not isinstance(item_shape, (tuple, list)):
        raise TypeError(
            f"{where}: item_shape must be a tuple of ints; got {type(item_shape).__name__}"
        )
    shape = tuple(_checks.read_int(n, "item_shape entries", where) for n in item_shape)
    # an item's bytes at the widest dtype, zero-size axes counted as 1 (as strides are)
    if math.prod(max(n, 1) for n in shape) * 16 > _checks.INT64_MAX:
        raise ValueError(
            f"{where}: item_shape must describe items small enough for an array (their "
            f"bytes must fit in int64); got item_shape={shape}"
        )
    return shape


def _rebuild(cls: type[R], values: Any, host: np.ndarray) -> R:
    # pickles made before _pickle.restore (raggedarray 0.1.0) name this function
    return cls._make(values, None, host)
