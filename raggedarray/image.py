"""``RaggedImageBatch``: a ragged array whose items are ``(C, H, W)`` images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, overload

import numpy as np

from ._types import (
    ArrayLike,
    DeviceLike,
    DTypeLike,
    IntArrayLike,
    MaskLike,
    NewValuesT,
    ValuesT,
)
from .ragged import RaggedArray, register_item_class

if TYPE_CHECKING:
    from torch import Tensor


@register_item_class
class RaggedImageBatch(RaggedArray[ValuesT]):
    """A ragged batch of images: location ``i`` holds ``n_i`` images of shape ``(C, H, W)``.

    ``values`` is the ``(N, C, H, W)`` 4D view of all images of all locations, ready for a
    convolution; ``batch[i]`` is the ``(n_i, C, H, W)`` view of location ``i``. Everything
    else is as in [`RaggedArray`][raggedarray.RaggedArray]; ``from_list`` also accepts
    ``(n_i, H, W)`` arrays as single-channel images.

    Raises:
        ValueError: values are not 4-D (items are not 3-D).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> batch = ra.RaggedImageBatch.from_list([np.zeros((2, 16, 16)), np.zeros((3, 16, 16))])
        >>> batch.values.shape, batch[1].shape
        ((5, 1, 16, 16), (3, 1, 16, 16))
        >>> batch.channels, batch.height, batch.width
        (1, 16, 16)
    """

    # No ``__slots__ = ()`` here: torch 2.6's dynamo cannot type a slot read through a
    # subclass that declares empty slots, and graph-breaks at every such read (a compiled
    # pool over image batches then recompiled ~10 times over five batches). A ``__dict__``
    # per batch is the price.
    _item_ndim: ClassVar[int | None] = 3

    if TYPE_CHECKING:
        # What the type checker needs to keep the class where the values' type changes (a
        # type cannot say "this class, of other values"); the methods are RaggedArray's.
        def __init__(
            self: RaggedImageBatch[NewValuesT], values: NewValuesT, offsets: IntArrayLike
        ) -> None: ...
        @overload
        @classmethod
        def from_list(
            cls,
            arrays: Sequence[np.ndarray | Sequence[object]],
            *,
            dtype: DTypeLike | None = None,
            device: None = None,
            item_shape: tuple[int, ...] | None = None,
        ) -> RaggedImageBatch[np.ndarray]: ...
        @overload
        @classmethod
        def from_list(
            cls,
            arrays: Sequence[Tensor],
            *,
            dtype: DTypeLike | None = None,
            device: DeviceLike | None = None,
            item_shape: tuple[int, ...] | None = None,
        ) -> RaggedImageBatch[Tensor]: ...
        @overload
        @classmethod
        def from_list(
            cls,
            arrays: Sequence[ArrayLike],
            *,
            dtype: DTypeLike | None = None,
            device: DeviceLike,
            item_shape: tuple[int, ...] | None = None,
        ) -> RaggedImageBatch[Tensor]: ...
        @overload
        @classmethod
        def from_list(
            cls,
            arrays: Sequence[ArrayLike],
            *,
            dtype: DTypeLike | None = None,
            device: DeviceLike | None = None,
            item_shape: tuple[int, ...] | None = None,
        ) -> RaggedImageBatch: ...
        @classmethod
        def from_list(  # noqa: D102
            cls,
            arrays: Sequence[ArrayLike | Sequence[object]],
            *,
            dtype: DTypeLike | None = None,
            device: DeviceLike | None = None,
            item_shape: tuple[int, ...] | None = None,
        ) -> RaggedImageBatch: ...
        @classmethod
        def from_lengths(  # noqa: D102
            cls, values: NewValuesT, lengths: IntArrayLike
        ) -> RaggedImageBatch[NewValuesT]: ...
        @classmethod
        def from_segment_ids(  # noqa: D102
            cls, values: NewValuesT, segment_ids: IntArrayLike, num_segments: int | None = None
        ) -> RaggedImageBatch[NewValuesT]: ...
        @classmethod
        def from_padded(  # noqa: D102
            cls, padded: NewValuesT, lengths: IntArrayLike | MaskLike
        ) -> RaggedImageBatch[NewValuesT]: ...
        def numpy(self, *, force: bool = False) -> RaggedImageBatch[np.ndarray]: ...  # noqa: D102
        def torch(self) -> RaggedImageBatch[Tensor]: ...  # noqa: D102
        def cuda(  # noqa: D102
            self, device: DeviceLike | None = None, non_blocking: bool = False
        ) -> RaggedImageBatch[Tensor]: ...
        def pin_memory(self) -> RaggedImageBatch[Tensor]: ...  # noqa: D102

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self._values.shape[1])

    @property
    def height(self) -> int:
        """Image height ``H``."""
        return int(self._values.shape[2])

    @property
    def width(self) -> int:
        """Image width ``W``."""
        return int(self._values.shape[3])
