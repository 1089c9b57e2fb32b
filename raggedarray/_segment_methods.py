"""Order-based segment methods of the ragged classes: argmax, median, any, cumsum, sort, topk.

Thin wrappers over ``raggedarray.segment_ops``; the mixin reads the ragged array's fields
(``_values``, ``_part``, ``_host``) and builds ragged results with ``_with_values``,
``_rewrap`` and ``_like`` (results with the same offsets share the partition).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from . import _checks, reduce, segment_ops
from ._types import RaggedFields, Scalar, ValuesT

if TYPE_CHECKING:
    from typing_extensions import Self

    from .ragged import RaggedArray


class SegmentMethods(RaggedFields[ValuesT]):
    """Mixin giving [`RaggedArray`][raggedarray.RaggedArray] argmax, median, cumsum, sort, ..."""

    __slots__ = ()

    def _segment_op(self, op: str, fill: Any) -> ValuesT:
        where = f"{type(self).__name__}.{op}"
        values = reduce.as_tensor(self._values, where)
        result = segment_ops.segment_op(
            op, values, self._part, fill=fill, where=where, source=self._values
        )
        return reduce.like_input(result, self._values)

    def argmax(self, *, fill: int = -1) -> ValuesT:
        """Position within its segment of the first maximum, ``(m, *item_shape)`` int64.

        As ``torch.argmax(segment, dim=0)`` for every segment: a NaN counts as the maximum;
        empty segments give ``fill``.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.array([3, 7, 7, 2, 5]), [3, 0, 2])
            >>> x.argmax()
            array([ 1, -1,  1])
        """
        return self._segment_op("argmax", fill)

    def argmin(self, *, fill: int = -1) -> ValuesT:
        """Position within its segment of the first minimum (a NaN counts as the minimum).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.array([3, 7, 2, 2, 5]), [3, 0, 2])
            >>> x.argmin()
            array([ 2, -1,  0])
        """
        return self._segment_op("argmin", fill)

    def median(self, *, fill: Scalar = 0) -> ValuesT:
        """Lower median of each segment, ``(m, *item_shape)``, as ``torch.median(seg, 0)``.

        A segment and feature holding a NaN gives NaN. Differentiable: the gradient goes to
        the median item.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.array([4.0, 1.0, 3.0, 2.0, 7.0]), [4, 0, 1])
            >>> x.median(fill=np.nan)
            array([ 2., nan,  7.])
        """
        return self._segment_op("median", fill)

    def any(self) -> ValuesT:
        """Whether any item of each segment is nonzero, ``(m, *item_shape)`` bool.

        An empty segment gives False; NaN counts as nonzero.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([0, 3, 0]), [2, 0, 1]).any()
            array([ True, False, False])
        """
        return self._segment_op("any", None)

    def all(self) -> ValuesT:
        """Whether every item of each segment is nonzero, ``(m, *item_shape)`` bool.

        An empty segment gives True; NaN counts as nonzero.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([1, 3, 0]), [2, 0, 1]).all()
            array([ True,  True, False])
        """
        return self._segment_op("all", None)

    def cumsum(self) -> Self:
        """Running sums restarting at each segment; a ragged array with these offsets.

        Integers and booleans give int64. Floating values come back in their own dtype and
        stay accurate at any length: on a CPU with numba installed each item is the float64
        running sum rounded once (one compiled pass); otherwise items are added in blocks of
        16 and each segment's sum before a block in float64. Differentiable.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.array([1, 2, 3, 4, 5]), [3, 0, 2])
            >>> x.cumsum().values
            array([1, 3, 6, 4, 9])
        """
        where = f"{type(self).__name__}.cumsum"
        values = reduce.as_tensor(self._values, where)
        result = segment_ops.cumsum(values, self._part, where=where)
        return cast("Self", self._with_values(reduce.like_input(result, self._values)))

    def sort(self, *, descending: bool = False) -> tuple[Self, RaggedArray[ValuesT]]:
        """Each segment sorted along its items, per feature: ``(values, indices)``.

        As ``torch.sort(segment, dim=0, stable=True)`` for every segment: both results are
        ragged arrays with these offsets, ``indices`` int64 positions within the segment.
        NaNs sort as the largest values. Differentiable through the values.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.array([3, 1, 2, 9, 8]), [3, 2])
            >>> values, indices = x.sort()
            >>> values.values, indices.values
            (array([1, 2, 3, 8, 9]), array([1, 2, 0, 1, 0]))
        """
        where = f"{type(self).__name__}.sort"
        values = reduce.as_tensor(self._values, where)
        out, index = segment_ops.sort(
            values, self._part, descending=_checks.read_bool(descending, "descending", where)
        )
        return (
            cast("Self", self._with_values(reduce.like_input(out, self._values))),
            self._rewrap(reduce.like_input(index, self._values)),
        )

    def topk(self, k: int, *, largest: bool = True) -> tuple[Self, RaggedArray[ValuesT]]:
        """The ``k`` largest (or smallest) items of each segment, per feature, sorted.

        Returns ``(values, indices)``, ragged arrays with ``min(n_i, k)`` items per segment;
        ``indices`` are int64 positions within the segment. Ties keep the first items
        first; NaNs count as the largest values. Differentiable through the values.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.array([3, 1, 2, 9, 8, 5]), [3, 0, 3])
            >>> values, indices = x.topk(2)
            >>> values.lengths, values.values, indices.values
            (array([2, 0, 2]), array([3, 2, 9, 8]), array([0, 2, 0, 1]))
        """
        where = f"{type(self).__name__}.topk"
        values = reduce.as_tensor(self._values, where)
        out, index, host = segment_ops.topk(
            values, self._part, k, largest=_checks.read_bool(largest, "largest", where), where=where
        )
        out, index = (reduce.like_input(t, self._values) for t in (out, index))
        values_result = self._like(out, None, host)
        return cast("Self", values_result), values_result._rewrap(index)
