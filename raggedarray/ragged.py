"""``RaggedArray``: one contiguous buffer plus offsets, seen as a list or as one array."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from . import _backend, _compare, _construct, _offsets
from ._backend import NUMPY, TORCH
from ._compute import ComputeMethods
from ._display import DisplayMethods
from ._elementwise import ElementwiseMethods
from .interop import InteropMethods

R = TypeVar("R", bound="RaggedArray")

# Classes for results whose items have a given number of dimensions (``map`` returning 4-D
# values gives a RaggedImageBatch); filled in by the subclasses' modules.
_ITEM_CLASSES: dict[int, type[RaggedArray]] = {}


def register_item_class(cls: type[RaggedArray]) -> type[RaggedArray]:
    """Make ``cls`` the class of computed results whose items have ``cls._item_ndim`` dims."""
    _ITEM_CLASSES[cls._item_ndim] = cls
    return cls


class RaggedArray(ElementwiseMethods, ComputeMethods, InteropMethods, DisplayMethods):
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

    __slots__ = ("__weakref__", "_cache", "_host", "_offsets", "_values")
    _item_ndim: ClassVar[int | None] = None

    def __init__(self, values: Any, offsets: Any) -> None:
        where = type(self).__name__
        _construct.check_values(values, where, self._item_ndim)
        _construct.check_same_place(values, offsets, where, "offsets")
        host = _offsets.read_offsets(offsets, where)
        _offsets.validate(host, values.shape[0], where)
        self._set(values, *_construct.own_offsets(offsets, host, values))

    def _set(self, values: Any, offsets: Any, host: np.ndarray) -> None:
        read_only = host
        if host.flags.writeable:
            read_only = host.view()
            read_only.flags.writeable = False
        if offsets is None:  # derived from the host copy; numpy shares it, read-only
            tensor = _backend.is_tensor(values)
            offsets = _backend.upload(host, values) if tensor else read_only
        self._values = values
        self._offsets = offsets
        self._host = read_only
        self._cache: dict[str, Any] = {}

    @classmethod
    def _make(cls: type[R], values: Any, offsets: Any, host: np.ndarray) -> R:
        """Trusted constructor: no checks; ``offsets=None`` derives them from ``host``."""
        self = object.__new__(cls)
        self._set(values, offsets, host)
        return self

    def _like(self, values: Any, offsets: Any, host: np.ndarray) -> RaggedArray:
        """A ragged array of this class when the item shape still fits it, else a RaggedArray."""
        cls = type(self)
        if cls._item_ndim is not None and values.ndim != cls._item_ndim + 1:
            cls = RaggedArray
        return cls._make(values, offsets, host)

    def _rewrap(self, values: Any, *, same_place: bool | None = None) -> RaggedArray:
        """New values with these offsets, in the class their item shape calls for.

        ``same_place=True`` says the values share this backend and device (elementwise math
        on every operation), so the check is skipped.
        """
        cls = _ITEM_CLASSES.get(values.ndim - 1, RaggedArray)
        if same_place is None:
            same_place = _backend.backend_of(values) == self.backend and _backend.device_str(
                values
            ) == _backend.device_str(self._values)
        return cls._make(values, self._offsets if same_place else None, self._host)

    # ----------------------------------------------------------------------- construction

    @classmethod
    def from_list(
        cls: type[R],
        arrays: Sequence[Any],
        *,
        dtype: Any = None,
        device: Any = None,
        item_shape: tuple[int, ...] | None = None,
    ) -> R:
        """Concatenate per-segment arrays ``(n_i, *item_shape)`` into one buffer.

        One output allocation; numpy arrays, torch tensors and nested lists may be mixed.
        The result is a torch tensor when any input is one or ``device`` is given, else a
        numpy array. Dtypes are promoted as the backend promotes them (``dtype`` overrides).
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
        values, host = _construct.concat(
            arrays,
            dtype=dtype,
            device=device,
            where=where,
            image=image,
            item_shape=None if item_shape is None else tuple(item_shape),
        )
        _construct.check_values(values, where, cls._item_ndim)
        return cls._make(values, None, host)

    @classmethod
    def from_lengths(cls: type[R], values: Any, lengths: Any) -> R:
        """Split ``values`` into consecutive segments of the given lengths (zero-copy).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(5), [3, 0, 2]).offsets
            array([0, 3, 3, 5])
        """
        where = f"{cls.__name__}.from_lengths"
        _construct.check_values(values, where, cls._item_ndim)
        host = _offsets.from_lengths(lengths, where)
        if host[-1] != values.shape[0]:
            raise ValueError(
                f"{where}: lengths must sum to the number of items values.shape[0]="
                f"{values.shape[0]}; got sum {host[-1]}"
            )
        return cls._make(values, None, host)

    @classmethod
    def from_segment_ids(
        cls: type[R], values: Any, segment_ids: Any, num_segments: int | None = None
    ) -> R:
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
        _construct.check_values(values, where, cls._item_ndim)
        host = _offsets.from_segment_ids(segment_ids, num_segments, where)
        if host[-1] != values.shape[0]:
            raise ValueError(
                f"{where}: segment_ids must have one entry per item ({values.shape[0]}); "
                f"got {host[-1]}"
            )
        return cls._make(values, None, host)

    @classmethod
    def from_padded(cls: type[R], padded: Any, lengths: Any) -> R:
        """Copy the valid part of a padded ``(m, n_max, *item_shape)`` array.

        Row ``i`` keeps its first ``lengths[i]`` items. One allocation; differentiable.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_padded(np.array([[1, 2, 0], [3, 0, 0]]), [2, 1])
            >>> x.values, x.lengths
            (array([1, 2, 3]), array([2, 1]))
        """
        where = f"{cls.__name__}.from_padded"
        values, host = _construct.padded_values(padded, lengths, where)
        _construct.check_values(values, where, cls._item_ndim)
        return cls._make(values, None, host)

    # ------------------------------------------------------------------------- attributes

    @property
    def values(self) -> Any:
        """The ``(N, *item_shape)`` buffer of all items of all segments."""
        return self._values

    @property
    def offsets(self) -> Any:
        """``(m + 1,)`` int64 offsets on the values' backend and device (do not modify)."""
        return self._offsets

    @property
    def host_offsets(self) -> np.ndarray:
        """Read-only host (numpy) copy of the offsets; reading it never syncs a device."""
        return self._host

    @property
    def host_lengths(self) -> np.ndarray:
        """Read-only host (numpy) ``(m,)`` int64 segment lengths; never syncs a device."""
        lengths = self._cache.get("host_lengths")
        if lengths is None:
            lengths = self._cache["host_lengths"] = _offsets.lengths(self._host)
            lengths.flags.writeable = False
        return lengths

    @property
    def lengths(self) -> Any:
        """``(m,)`` int64 segment lengths on the values' backend and device."""
        if not _backend.is_tensor(self._values):
            return self.host_lengths
        lengths = self._cache.get("lengths")
        if lengths is None:
            lengths = self._cache["lengths"] = self._offsets[1:] - self._offsets[:-1]
        return lengths

    @property
    def segment_ids(self) -> Any:
        """``(N,)`` int64 segment id of every item, on the values' backend and device."""
        ids = self._cache.get("segment_ids")
        if ids is None:
            if _backend.is_tensor(self._values):
                torch = _backend.torch_module()
                ids = torch.repeat_interleave(
                    torch.arange(len(self), device=self._values.device),
                    self.lengths,
                    output_size=self.num_items,
                )
            else:
                ids = _offsets.segment_ids(self._host)
                ids.flags.writeable = False
            self._cache["segment_ids"] = ids
        return ids

    @property
    def num_segments(self) -> int:
        """Number of segments ``m`` (same as ``len(x)``)."""
        return self._host.shape[0] - 1

    @property
    def num_items(self) -> int:
        """Number of items ``N`` over all segments."""
        return int(self._host[-1])

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one item: ``values.shape[1:]``."""
        return tuple(self._values.shape[1:])

    @property
    def max_length(self) -> int:
        """Length of the longest segment (0 when there are no segments)."""
        return int(self.host_lengths.max()) if len(self) else 0

    @property
    def min_length(self) -> int:
        """Length of the shortest segment (0 when there are no segments)."""
        return int(self.host_lengths.min()) if len(self) else 0

    @property
    def dtype(self) -> Any:
        """The values' dtype (a ``numpy.dtype`` or a ``torch.dtype``)."""
        return self._values.dtype

    @property
    def device(self) -> Any:
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
        return self._host.shape[0] - 1

    def _segment(self, i: int) -> Any:
        return self._values[int(self._host[i]) : int(self._host[i + 1])]

    def __getitem__(self, key: Any) -> Any:
        """``x[i]``: segment view; ``x[a:b]``: ragged view; arrays, masks, steps: a copy."""
        where = f"{type(self).__name__}.__getitem__"
        m = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key)
            if not -m <= i < m:
                raise IndexError(f"{where}: segment index must be in [-{m}, {m}); got {i}")
            return self._segment(i + m if i < 0 else i)
        if isinstance(key, slice) and key.step == 0:
            raise ValueError(f"{where}: slice step must not be zero; got {key}")
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(m)
            b = max(a, b)
            return self._slice(a, b)
        if _backend.backend_of(key) is not None and key.ndim == 0:
            return self[key.item()]
        if isinstance(key, (tuple, bool, np.bool_, float, str, type(None), type(Ellipsis))):
            raise TypeError(
                f"{where}: index with an int, a slice, an index array or a boolean mask; "
                f"got {type(key).__name__} (for item j of segment i use x[i][j])"
            )
        return self._take(_offsets.segment_index(key, m, where))

    def _slice(self, a: int, b: int) -> RaggedArray:
        host = self._host[a : b + 1] - self._host[a]
        values = self._values[int(self._host[a]) : int(self._host[b])]
        return self._like(values, None, host)

    def _take(self, segments: np.ndarray) -> RaggedArray:
        host, index = _offsets.gather(self._host, segments)
        return self._like(_backend.index_rows(self._values, index), None, host)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.unbind())

    def unbind(self) -> tuple[Any, ...]:
        """All segments as a tuple of views.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(3), [1, 2]).unbind()
            (array([0]), array([1, 2]))
        """
        if len(self) == 0:
            return ()
        if _backend.is_tensor(self._values):
            return self._values.split(self.host_lengths.tolist())
        return tuple(np.split(self._values, self._host[1:-1]))

    def to_list(self) -> list[Any]:
        """All segments as a list of views ``(n_i, *item_shape)``."""
        return list(self.unbind())

    # ------------------------------------------------------------ conversion and movement

    def to(self, device: Any = None, dtype: Any = None, non_blocking: bool = False) -> RaggedArray:
        """Move to a device and/or convert the dtype; returns ``self`` when nothing changes.

        A dtype may be passed first, as in ``x.to(torch.float16)``. Numpy values stay numpy
        for ``device=None`` or ``"cpu"``; any other device gives torch values. Offsets reach
        the new device through the host copy, so moving never reads them back from a GPU.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(3), [1, 2])
            >>> x.to(dtype=np.float32).dtype
            dtype('float32')
        """
        where = f"{type(self).__name__}.to"
        if dtype is None and _backend.is_dtype(device):
            device, dtype = None, device
        if device is not None:
            try:
                device = _backend.torch_module().device(device)
            except (RuntimeError, TypeError):
                raise ValueError(
                    f"{where}: device must be a torch device or a device string such as 'cuda'; "
                    f"got {device!r} (pass a dtype as dtype=...)"
                ) from None
        if not _backend.is_tensor(self._values) and (device is None or device.type == "cpu"):
            if dtype is None:
                return self
            try:
                np_dtype = _backend.to_numpy_dtype(dtype)
            except TypeError:
                raise TypeError(
                    f"{where}: dtype must be one numpy can hold for numpy values; got {dtype!r} "
                    "(convert with .torch() first)"
                ) from None
            if np_dtype == self._values.dtype:
                return self
            return self._like(self._values.astype(np_dtype), self._offsets, self._host)
        source = self.torch()
        moved = source._values.to(
            device=device,
            dtype=None if dtype is None else _backend.to_torch_dtype(dtype),
            non_blocking=non_blocking,
        )
        if moved is source._values:
            return source
        offsets = source._offsets if moved.device == source._values.device else None
        return self._like(moved, offsets, self._host)

    def cpu(self) -> RaggedArray:
        """Values on the CPU (numpy values are returned as they are)."""
        return self.to("cpu")

    def cuda(self, device: Any = None, non_blocking: bool = False) -> RaggedArray:
        """Values on a CUDA device (``"cuda"`` when ``device`` is None)."""
        return self.to("cuda" if device is None else device, non_blocking=non_blocking)

    def pin_memory(self) -> RaggedArray:
        """Values in page-locked host memory for fast asynchronous copies to the GPU.

        Numpy values become a pinned torch tensor (pinning is a torch facility).
        """
        values = self.torch()._values
        if values.device.type != "cpu":
            raise ValueError(
                f"{type(self).__name__}.pin_memory: values must be on the CPU; "
                f"got values on {values.device}"
            )
        return self._like(values.pin_memory(), None, self._host)

    def numpy(self, *, force: bool = False) -> RaggedArray:
        """Numpy-backed ragged array: zero-copy from CPU tensors.

        Values on a GPU are copied to the host (a device sync, by nature).

        Args:
            force: detach values that require grad, like ``Tensor.numpy(force=True)``;
                without it such values are refused.
        """
        values = self._values
        if not _backend.is_tensor(values):
            return self
        where = f"{type(self).__name__}.numpy"
        if values.requires_grad and not force:
            raise TypeError(
                f"{where}: values require grad; use x.detach().numpy() or numpy(force=True)"
            )
        try:
            array = values.detach().cpu().numpy()
        except TypeError as err:
            raise TypeError(f"{where}: dtype {values.dtype} has no numpy equivalent") from err
        return self._like(array, None, self._host)

    def torch(self) -> RaggedArray:
        """Torch-backed ragged array: zero-copy from numpy values (when torch can share them).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.zeros(3), [1, 2])
            >>> t = x.torch()
            >>> t.values[0] = 5.0  # the same memory, seen from torch
            >>> x.values, t.offsets
            (array([5., 0., 0.]), tensor([0, 1, 3]))
            >>> np.shares_memory(t.numpy().values, x.values)
            True
        """
        values = self._values
        if _backend.is_tensor(values):
            return self
        torch = _backend.torch_module()
        if any(s < 0 for s in values.strides):
            values = np.ascontiguousarray(values)
        try:
            tensor = torch.from_numpy(values)
        except TypeError as err:
            raise TypeError(
                f"{type(self).__name__}.torch: dtype {values.dtype} has no torch equivalent"
            ) from err
        return self._like(tensor, None, self._host)

    def detach(self) -> RaggedArray:
        """Values detached from autograd (numpy values are returned as they are)."""
        if not self.requires_grad:
            return self
        return self._like(self._values.detach(), self._offsets, self._host)

    def clone(self) -> RaggedArray:
        """A copy with its own contiguous values buffer (differentiable for torch).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.zeros(3), [1, 2])
            >>> y = x.clone()
            >>> y.values[0] = 1.0
            >>> float(x.values[0]), y.equal(x)
            (0.0, False)
        """
        values = self._values
        if _backend.is_tensor(values):
            return self._like(
                _construct.cat_tensors([values], values.shape[0]),
                self._offsets.clone(),
                self._host.copy(),
            )
        host = self._host.copy()
        return self._like(np.array(values, order="C", copy=True), None, host)

    def to_padded(self, fill: Any = 0, max_length: int | None = None) -> tuple[Any, Any]:
        """Pad into ``(m, L, *item_shape)`` with a ``(m, L)`` boolean mask of real items.

        ``L`` is ``max_length`` when given (segments longer than it are cut to their first
        ``max_length`` items), else the longest segment. One allocation; differentiable;
        no device sync.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> padded, mask = ra.RaggedArray.from_lengths(np.arange(1, 4), [2, 0, 1]).to_padded()
            >>> padded
            array([[1, 2],
                   [0, 0],
                   [3, 0]])
            >>> mask
            array([[ True,  True],
                   [False, False],
                   [ True, False]])
        """
        where = f"{type(self).__name__}.to_padded"
        if max_length is None:
            length = self.max_length
        elif isinstance(max_length, (int, np.integer)) and not isinstance(max_length, bool):
            if max_length < 0:
                raise ValueError(f"{where}: max_length must be >= 0; got {max_length}")
            length = int(max_length)
        else:
            raise TypeError(f"{where}: max_length must be an int; got {type(max_length).__name__}")
        return _construct.pad(self._values, self._host, length, fill, where)

    # --------------------------------------------------------------------- comparison

    def equal(self, other: Any) -> bool:
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

    def __reduce__(self) -> tuple[Any, ...]:
        values = self._values
        if _backend.is_tensor(values) and values.untyped_storage().nbytes() > values.nbytes:
            # torch pickles a view's whole storage; a slice of a large batch sends its part only
            values = values.clone()
        return (_rebuild, (type(self), values, np.array(self._host)))

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


def _rebuild(cls: type[R], values: Any, host: np.ndarray) -> R:
    return cls._make(values, None, host)
