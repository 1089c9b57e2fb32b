"""Type aliases of the public signatures (arrays, tensors, devices, dtypes, index kinds).

torch is imported only while type checking (``TYPE_CHECKING``), so importing raggedarray
still does not import torch; at run time the aliases hold ``"torch.X"`` forward references.

Where a result follows its input's backend (``ra.segment_sum(ndarray, ...)`` is an
``ndarray``, ``ra.segment_sum(Tensor, ...)`` a ``Tensor``), the functions carry
``typing.overload`` signatures. The ragged classes are generic over their values' type
(``ValuesT``): ``RaggedArray[np.ndarray]``, ``RaggedArray[torch.Tensor]``, and the bare
``RaggedArray``, which means ``RaggedArray[np.ndarray | torch.Tensor]`` (the backend is not
known statically). Their ``values``, segments and reductions follow that parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar, Union

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch

    from ._partition import Partition
    from .ragged import RaggedArray

#: A numpy array or a torch tensor: what ``values``, segments and reductions are.
Array: TypeAlias = Union[np.ndarray, "torch.Tensor"]
#: A function of a chunk of values (``map``'s ``fn``): typed for numpy, for torch, or both.
ArrayFunction: TypeAlias = Callable[[np.ndarray], Array] | Callable[["torch.Tensor"], Array]
#: The two array types, for signatures whose result follows the input.
ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")
#: The values' type of a ragged array built from ``values`` (a constructor's argument): a
#: numpy array, a tensor, or the union when the caller's backend is not known statically.
#: Constraints, not a bound, so the type is normalised: an ``ndarray[tuple[int],
#: dtype[float64]]`` or an ``nn.Parameter`` is taken as the plain ``ndarray`` or
#: ``Tensor``, the type of what the ragged array hands out (lengths, masks and reductions
#: have other shapes and dtypes).
NewValuesT = TypeVar("NewValuesT", np.ndarray, "torch.Tensor", Array)
if TYPE_CHECKING:
    from typing_extensions import TypeVar as TypeVarWithDefault

    #: The type parameter of the ragged classes: ``np.ndarray``, ``torch.Tensor`` or the
    #: union (the constructors pick one of these three). Covariant (a
    #: ``RaggedArray[Tensor]`` is a ``RaggedArray``: the structure is immutable and no
    #: method takes a ``ValuesT``); the bare class name means ``RaggedArray[ndarray |
    #: Tensor]``, as before the classes were generic, so ``mypy --strict`` takes
    #: ``x: ra.RaggedArray`` as it is. A bound rather than constraints: mypy joins
    #: constrained covariant parameters to ``object`` (``ra.cat([x, y])`` would fail).
    ValuesT = TypeVarWithDefault("ValuesT", bound=Array, covariant=True, default=Array)
else:  # at run time a plain TypeVar: only ``Generic``'s subscripting reads it
    ValuesT = TypeVar("ValuesT", bound=Array, covariant=True)
#: A Python or numpy number (a ``fill``, say).
Scalar: TypeAlias = bool | int | float | complex | np.generic
#: Anything numpy turns into an array (nested lists, scalars, arrays), or a torch tensor.
ArrayLike: TypeAlias = Union["npt.ArrayLike", "torch.Tensor"]
#: Integers ``(k,)`` (offsets, lengths, segment ids): a list, a numpy array or a tensor.
IntArrayLike: TypeAlias = Union[Sequence[int], np.ndarray, "torch.Tensor"]
OffsetsLike: TypeAlias = IntArrayLike
LengthsLike: TypeAlias = IntArrayLike
#: A boolean mask: nested lists of bools, a numpy array or a tensor.
MaskLike: TypeAlias = Union[Sequence[Sequence[bool]], np.ndarray, "torch.Tensor"]
#: A torch device, a device string (``"cuda:0"``) or a CUDA device index.
DeviceLike: TypeAlias = Union[str, "torch.device", int]
#: A numpy dtype (or what ``np.dtype`` takes: ``np.float32``, ``"float32"``) or a torch dtype.
DTypeLike: TypeAlias = Union[np.dtype, type, str, "torch.dtype"]
#: A dtype as a ragged array reports it.
DType: TypeAlias = Union[np.dtype, "torch.dtype"]
#: Segment indices that select a copy: a list of ints or bools, an index array or mask.
IndexArrayLike: TypeAlias = Union[Sequence[int], Sequence[bool], np.ndarray, "torch.Tensor"]
#: One segment: ``x[i]`` is a view of segment ``i``.
IntIndex: TypeAlias = int | np.integer
#: What ``x[...]`` takes: an int (a segment), a slice (a view), an index array or mask (a copy).
IndexLike: TypeAlias = IntIndex | slice | IndexArrayLike
#: Per-segment counts for ``subsample``: one int, or one count per segment.
CountsLike: TypeAlias = Union[int, np.integer, Sequence[int], np.ndarray, "torch.Tensor"]
#: A random source: a numpy or torch generator, an int seed, or None (fresh entropy).
GeneratorLike: TypeAlias = Union["np.random.Generator", "torch.Generator", int, None]

if TYPE_CHECKING:
    from typing_extensions import Self

    class RaggedFields(Generic[ValuesT]):
        """What the ragged classes' mixins read from ``RaggedArray`` (type checking only)."""

        _item_ndim: ClassVar[int | None]
        _values: Any  # internals duck-type the two backends
        _part: Partition

        @property
        def _host(self) -> np.ndarray: ...
        @property
        def _offsets(self) -> Any: ...
        @property
        def backend(self) -> str: ...
        @property
        def device(self) -> torch.device: ...
        @property
        def num_items(self) -> int: ...
        @property
        def min_length(self) -> int: ...
        @property
        def max_length(self) -> int: ...
        @property
        def item_shape(self) -> tuple[int, ...]: ...
        @property
        def host_lengths(self) -> np.ndarray: ...
        @property
        def dtype(self) -> DType: ...
        @property
        def requires_grad(self) -> bool: ...
        def __len__(self) -> int: ...
        @classmethod
        def _make(cls, values: Array, offsets: Array | None, host: np.ndarray) -> Self: ...
        def _like(
            self, values: Array, offsets: Array | None, host: np.ndarray
        ) -> RaggedArray[Any]: ...
        def _with_values(self, values: Array) -> RaggedArray[Any]: ...
        def _rewrap(self, values: Array) -> RaggedArray[Any]: ...
        def to(self, *args: Any, **kwargs: Any) -> Self: ...

else:  # ``RaggedFields[ValuesT]`` makes a mixin generic; nothing else at run time
    RaggedFields = Generic
