"""Conversion and movement methods of the ragged classes: devices, dtypes, backends, padding.

The mixin reads the ragged array's fields (``_values``, ``_part``, ``_host``) and builds
results with ``_with_values`` and ``_like``; it imports nothing from ``ragged.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from . import _backend, _checks, _construct
from ._types import DeviceLike, DTypeLike, RaggedFields, Scalar, ValuesT

if TYPE_CHECKING:
    from torch import Tensor  # not ``torch.Tensor``: the methods ``torch`` shadow the module
    from typing_extensions import Self

    from .ragged import RaggedArray


class MovementMethods(RaggedFields[ValuesT]):
    """Mixin giving [`RaggedArray`][raggedarray.RaggedArray] its conversion and movement methods."""

    __slots__ = ()

    @overload
    def to(self, dtype: DTypeLike, /, *, non_blocking: bool = False) -> Self: ...
    @overload
    def to(
        self,
        device: DeviceLike | None = None,
        dtype: DTypeLike | None = None,
        non_blocking: bool = False,
    ) -> Self: ...
    def to(self, device: Any = None, dtype: Any = None, non_blocking: bool = False) -> Self:
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
        if dtype is None and _backend.is_dtype(device):
            device, dtype = None, device
        return self._to(device, dtype, non_blocking, f"{type(self).__name__}.to")

    def _to(self, device: Any, dtype: Any, non_blocking: bool, where: str) -> Self:
        non_blocking = _checks.read_bool(non_blocking, "non_blocking", where)
        if device is not None:
            device = _checks.device(device, where)
        values = self._values
        if not _backend.is_tensor(values):
            if device is None or device.type == "cpu":
                if dtype is None:
                    return self
                np_dtype = _checks.result_dtype(
                    dtype, False, where, hint="convert first for a torch result: x.torch().to(...)"
                )
                if np_dtype == values.dtype:
                    return self
                return cast("Self", self._with_values(values.astype(np_dtype)))
            values = _backend.tensor_from_numpy(values)  # only read: the move copies it
        moved = values.to(
            device=device,
            dtype=None if dtype is None else _checks.result_dtype(dtype, True, where),
            non_blocking=non_blocking,
        )
        if moved is self._values:
            return self
        return cast("Self", self._with_values(moved))

    def cpu(self) -> Self:
        """Values on the CPU (numpy values are returned as they are)."""
        return self._to("cpu", None, False, f"{type(self).__name__}.cpu")

    def cuda(
        self, device: DeviceLike | None = None, non_blocking: bool = False
    ) -> RaggedArray[Tensor]:
        """Values on a CUDA device (``"cuda"`` when ``device`` is None)."""
        where = f"{type(self).__name__}.cuda"
        target = _checks.device("cuda" if device is None else device, where)
        if target.type != "cuda":  # (as Tensor.cuda("cpu") refuses)
            raise ValueError(f"{where}: device must be a CUDA device; got {device!r}")
        moved: Any = self._to(target, None, non_blocking, where)
        return moved

    def pin_memory(self) -> RaggedArray[Tensor]:
        """Values in page-locked host memory for fast asynchronous copies to the GPU.

        Numpy values become a pinned torch tensor (pinning is a torch facility).
        """
        where = f"{type(self).__name__}.pin_memory"
        values = self.torch()._values
        if values.device.type != "cpu":
            raise ValueError(f"{where}: values must be on the CPU; got values on {values.device}")
        if not _backend.torch_module().cuda.is_available():
            raise ValueError(
                f"{where}: pinned memory needs a CUDA GPU; got a torch without one "
                "(torch.cuda.is_available() is False)"
            )
        return self._with_values(values.pin_memory())

    def numpy(self, *, force: bool = False) -> RaggedArray[np.ndarray]:
        """Numpy-backed ragged array: zero-copy from CPU tensors.

        Values on a GPU are copied to the host (a device sync, by nature).

        Args:
            force: detach values that require grad, like ``Tensor.numpy(force=True)``;
                without it such values are refused.

        Raises:
            TypeError: the values require grad and ``force`` is False, their dtype has no
                numpy twin (bfloat16), or ``force`` is not a bool.

        Examples:
            >>> import numpy as np
            >>> import torch
            >>> import raggedarray as ra
            >>> t = ra.RaggedArray.from_lengths(torch.ones(3, requires_grad=True), [1, 2])
            >>> x = t.numpy(force=True)  # detached; without force: TypeError
            >>> x.backend, x.lengths, np.shares_memory(x.values, t.values.detach().numpy())
            ('numpy', array([1, 2]), True)
        """
        values = self._values
        where = f"{type(self).__name__}.numpy"
        force = _checks.read_bool(force, "force", where)
        if not _backend.is_tensor(values):
            return cast("RaggedArray[np.ndarray]", self)
        if values.requires_grad and not force:
            raise TypeError(
                f"{where}: values must not require grad (use x.detach().numpy() or "
                "numpy(force=True)); got values with requires_grad=True"
            )
        try:
            array = _backend.host_numpy(values)
        except TypeError as err:
            raise TypeError(
                f"{where}: values must have a dtype numpy can hold; got "
                f"{_checks.dtype_name(values.dtype)}"
            ) from err
        return self._with_values(array)

    def torch(self) -> RaggedArray[Tensor]:
        """Torch-backed ragged array: zero-copy from numpy values (when torch can share them).

        Torch has no read-only tensors, so a read-only numpy buffer (a file opened with
        ``mmap=True`` or ``np.memmap(mode="r")``, say) is copied: a tensor sharing it would
        let a write through, into the file or onto memory that faults.

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
            return cast("RaggedArray[Tensor]", self)
        try:
            tensor = _backend.writable_tensor(values)
        except TypeError as err:
            raise TypeError(
                f"{type(self).__name__}.torch: values must have a dtype torch can hold; "
                f"got {values.dtype}"
            ) from err
        return self._with_values(tensor)

    def detach(self) -> Self:
        """Values detached from autograd (numpy values are returned as they are)."""
        if not self.requires_grad:
            return self
        return cast("Self", self._with_values(self._values.detach()))

    def clone(self) -> Self:
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
            clone = self._like(
                _construct.cat_tensors([values], values.shape[0], f"{type(self).__name__}.clone"),
                self._offsets.clone(),
                self._host.copy(),
            )
            return cast("Self", clone)  # same item shape, same class
        host = self._host.copy()
        return cast("Self", self._like(np.array(values, order="C", copy=True), None, host))

    def to_padded(self, fill: Scalar = 0, max_length: int | None = None) -> tuple[ValuesT, ValuesT]:
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
        else:
            length = _checks.read_int(max_length, "max_length", where)
        return _construct.pad(self._values, self._host, length, fill, where)
