"""Compute methods of the ragged classes: ``map``, segment reductions, softmax, broadcast.

Thin wrappers: the work is done by ``raggedarray.map`` and ``raggedarray.reduce``.
The mixin reads the ragged array's fields (``_values``, ``_part``, ``_host``)
and builds results with ``_rewrap``; it imports nothing from ``ragged.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from . import _backend, _checks, _offsets, reduce
from ._partition import Partition
from ._types import (
    Array,
    ArrayFunction,
    ArrayT,
    CountsLike,
    DeviceLike,
    GeneratorLike,
    RaggedFields,
    Scalar,
    ValuesT,
)
from .map import map_lean, map_values

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module  # a module's result is a tensor, whatever it is given
    from typing_extensions import Self

    from .ragged import RaggedArray


class ComputeMethods(RaggedFields[ValuesT]):
    """Mixin giving [`RaggedArray`][raggedarray.RaggedArray] its compute methods."""

    __slots__ = ()

    @overload
    def map(
        self,
        fn: Module,
        *,
        chunk_size: int | None = None,
        device: DeviceLike | None = None,
        progress: bool = False,
    ) -> RaggedArray[Tensor]: ...
    # A function gets the values' backend (tensors where numpy values go to a ``device``);
    # the result's backend is what it returns.
    @overload
    def map(
        self: ComputeMethods[np.ndarray],
        fn: Callable[[np.ndarray], ArrayT],
        *,
        chunk_size: int | None = None,
        device: None = None,
        progress: bool = False,
    ) -> RaggedArray[ArrayT]: ...
    @overload
    def map(
        self: ComputeMethods[np.ndarray],
        fn: Callable[[Tensor], ArrayT],
        *,
        chunk_size: int | None = None,
        device: DeviceLike,
        progress: bool = False,
    ) -> RaggedArray[ArrayT]: ...
    @overload
    def map(
        self: ComputeMethods[Tensor],
        fn: Callable[[Tensor], ArrayT],
        *,
        chunk_size: int | None = None,
        device: DeviceLike | None = None,
        progress: bool = False,
    ) -> RaggedArray[ArrayT]: ...
    @overload
    def map(
        self,
        fn: ArrayFunction,
        *,
        chunk_size: int | None = None,
        device: DeviceLike | None = None,
        progress: bool = False,
    ) -> RaggedArray: ...
    def map(
        self,
        fn: ArrayFunction,
        *,
        chunk_size: int | None = None,
        device: DeviceLike | None = None,
        progress: bool = False,
    ) -> RaggedArray:
        """Apply ``fn`` to the flat values, in chunks; the result keeps these offsets.

        ``fn`` (an ``nn.Module``, a torch or a numpy function) receives ``(k, *item_shape)``
        slices of ``values`` and must return one row per item. A chunk may split segments:
        ``fn`` is assumed to treat items independently (for one that looks across items,
        such as ``v - v.mean(0)`` or a softmax over dim 0, pass ``chunk_size=x.num_items``
        for one call, or use the segment reductions). The result is a
        [`RaggedImageBatch`][raggedarray.RaggedImageBatch] when ``fn`` returns 4-D arrays, else a
        [`RaggedArray`][raggedarray.RaggedArray].

        With ``chunk_size=None`` the chunk size is chosen for speed: on a CPU, calls are
        kept small enough that the largest temporary stays cache- and allocator-friendly
        (one call over tens of thousands of images is 2-4x slower than cache-sized calls),
        and a batch within that is one call whose output becomes the result's values as it
        is (no copy); on a GPU, one call unless it would not fit in memory. The first call
        of a function also runs it on a copy of the first 16 items to measure it, then puts
        the global random state (torch's, numpy's legacy one) and a module's buffers
        (running statistics, spectral norm's vectors) back; that output is not kept,
        so every call splits a batch the same way, a function that writes into its input
        changes each item once, and dropout draws as on any later call. Pass the same
        function object (or the same object's method) again to reuse its plan (a new lambda
        is measured anew). A module (or its bound ``forward``) whose batch normalisation
        uses the batch's statistics (training mode, or ``track_running_stats=False``) is
        called once on the whole buffer by default, so it sees the statistics it would see
        unchunked; an explicit ``chunk_size`` makes each chunk a batch-norm batch. So is a
        module whose probe call changed its buffers (spectral norm's power iteration in
        training mode, a quantization observer), which chunks would update once each, and a
        function the probe cannot run (autograd inside it, a compiled part). An explicit
        ``chunk_size`` always wins.

        Gradients flow through every chunk, and equal those of one unchunked call up to
        floating-point summation order. Works under ``torch.no_grad()`` (the chunks are then
        written into one preallocated output, so peak memory is the output plus one chunk's
        temporaries) and under ``torch.autocast``.

        Args:
            fn: callable from a ``(k, *item_shape)`` array to a ``(k, ...)`` array.
            chunk_size: at most this many items per call; None chooses automatically.
            device: run on this device (chunks are pinned and copied without blocking);
                the result lives there. None keeps the values where they are; numpy values
                handed to an ``nn.Module`` become CPU tensors (zero-copy).
            progress: show a tqdm progress bar (``pip install 'raggedarray[progress]'``).

        Raises:
            TypeError: ``fn`` is not callable or returns something other than an array.
            ValueError: ``fn`` changes dim 0, or returns different shapes for different chunks.

        Examples:
            >>> import torch
            >>> import raggedarray as ra
            >>> batch = ra.RaggedImageBatch.from_lengths(torch.randn(6, 1, 16, 16), [2, 0, 4])
            >>> conv = torch.nn.Conv2d(1, 4, 5)
            >>> features = batch.map(conv)
            >>> type(features).__name__, features.item_shape, features.lengths.tolist()
            ('RaggedImageBatch', (4, 12, 12), [2, 0, 4])
            >>> torch.allclose(features.values, conv(batch.values), atol=1e-6)
            True
            >>> batch.map(lambda v: v.flatten(1), chunk_size=4).item_shape
            (256,)
        """
        if chunk_size is None and device is None and not progress:
            output = map_lean(self._values, fn, type(self))
            if output is not None:
                return self._rewrap(output)
        where = f"{type(self).__name__}.map"
        values = map_values(
            self._values,
            fn,
            chunk_size=chunk_size,
            device=device,
            progress=progress,
            where=where,
        )
        return self._rewrap(values)

    # ---------------------------------------------------------------------- reductions

    def _partition(self) -> Partition:
        """The partition kernels use: this one, or its view inside a compiled graph."""
        if _backend.compiling():
            return self._part.in_graph(self._values)
        return self._part

    def _reduce(self, op: str, fill: Scalar, **options: Any) -> ValuesT:
        where = f"{type(self).__name__}.{op}"
        values = reduce.as_tensor(self._values, where)
        part = self._partition()
        source = self._values
        result = reduce.reduce(op, values, part, fill=fill, where=where, source=source, **options)
        return reduce.like_input(result, self._values)

    def sum(self, *, fill: Scalar = 0) -> ValuesT:
        """Per-segment sums, ``(m, *item_shape)``; ``fill`` for empty segments.

        Integer and boolean values sum to int64; float16/bfloat16 accumulate in float32.
        See [the rules][reduction-rules] every reduction shares.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(5), [2, 0, 3]).sum()
            array([1, 0, 9])
        """
        return self._reduce("sum", fill)

    def mean(self, *, fill: Scalar = 0) -> ValuesT:
        """Per-segment means, ``(m, *item_shape)``, of floating values.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.arange(5.0), [2, 0, 3]).mean(fill=np.nan)
            array([0.5, nan, 3. ])
        """
        return self._reduce("mean", fill)

    def max(self, *, fill: Scalar = 0) -> ValuesT:
        """Per-segment maxima, ``(m, *item_shape)``; tied items share the gradient.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([4, 1, 3, 9, 2]), [2, 0, 3]).max(fill=-1)
            array([ 4, -1,  9])
        """
        return self._reduce("max", fill)

    def min(self, *, fill: Scalar = 0) -> ValuesT:
        """Per-segment minima, ``(m, *item_shape)``; tied items share the gradient.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([4, 1, 3, 9, 2]), [2, 0, 3]).min()
            array([1, 0, 2])
        """
        return self._reduce("min", fill)

    def prod(self, *, fill: Scalar = 0) -> ValuesT:
        """Per-segment products, ``(m, *item_shape)`` (int64 for integer values).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([2, 3, 4]), [2, 1]).prod()
            array([6, 4])
        """
        return self._reduce("prod", fill)

    def logsumexp(self, *, fill: Scalar = 0) -> ValuesT:
        """Per-segment ``log(sum(exp(items)))``, computed stably.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.log(np.array([1.0, 3.0, 5.0])), [2, 1])
            >>> np.exp(x.logsumexp())
            array([4., 5.])
        """
        return self._reduce("logsumexp", fill)

    def var(self, *, correction: int = 1, fill: Scalar = 0) -> ValuesT:
        """Per-segment variances with ``correction`` (1: unbiased).

        Segments with ``n_i <= correction`` give ``fill``.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([1.0, 3.0, 7.0]), [2, 1]).var()
            array([2., 0.])
        """
        return self._reduce("var", fill, correction=correction)

    def std(self, *, correction: int = 1, fill: Scalar = 0) -> ValuesT:
        """Per-segment standard deviations (see [`var`][raggedarray.RaggedArray.var]).

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> ra.RaggedArray.from_lengths(np.array([1.0, 3.0, 7.0]), [2, 1]).std(fill=-1.0)
            array([ 1.41421356, -1.        ])
        """
        return self._reduce("std", fill, correction=correction)

    # ---------------------------------------------------------------- item-wise results

    def softmax(self) -> Self:
        """Softmax over the items of each segment (per feature), with these offsets.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.log(np.array([1.0, 3.0, 2.0])), [2, 1])
            >>> x.softmax().values
            array([0.25, 0.75, 1.  ])
        """
        return self._softmax(log=False)

    def log_softmax(self) -> Self:
        """Log-softmax over the items of each segment (per feature), with these offsets.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.zeros(3), [2, 1])
            >>> np.exp(x.log_softmax().values)
            array([0.5, 0.5, 1. ])
        """
        return self._softmax(log=True)

    def _softmax(self, *, log: bool) -> Self:
        where = f"{type(self).__name__}.{'log_softmax' if log else 'softmax'}"
        values = reduce.as_tensor(self._values, where)
        part, source = self._partition(), self._values
        result = reduce.softmax(values, part, log=log, where=where, source=source)
        result = reduce.like_input(result, self._values)
        return cast("Self", self._with_values(result))  # same class, same offsets

    def broadcast(self, per_segment: Array) -> RaggedArray[ValuesT]:
        """Repeat row ``i`` of ``per_segment`` (``(m, ...)``) for every item of segment ``i``.

        The inverse of a reduction: ``x.broadcast(x.mean())`` lines up with ``x``, so
        ``x.values - x.broadcast(x.mean()).values`` centres every segment.

        Raises:
            TypeError: ``per_segment`` is not an array of this array's backend.
            ValueError: it has no row per segment, or lives on another device.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(5.0), [2, 0, 3])
            >>> x.broadcast(x.mean()).values
            array([0.5, 0.5, 3. , 3. , 3. ])
        """
        where = f"{type(self).__name__}.broadcast"
        backend = _backend.backend_of(per_segment)
        if backend != self.backend:
            raise TypeError(
                f"{where}: per_segment must be a {self.backend} array like the values; "
                f"got {_backend.describe(per_segment)}"
            )
        if _backend.device_str(per_segment) != _backend.device_str(self._values):
            raise ValueError(
                f"{where}: per_segment must be on the values' device ({self.device}); "
                f"got {_backend.describe(per_segment)}"
            )
        tensor = reduce.as_tensor(per_segment, where, "per_segment")
        result = reduce.broadcast(tensor, self._partition(), where=where)
        return self._rewrap(reduce.like_input(result, per_segment))

    # ------------------------------------------------------------------------- sampling

    def subsample(self, k: CountsLike, *, generator: GeneratorLike = None) -> Self:
        """``k`` items drawn without replacement from each segment, in their original order.

        Segments with ``n_i <= k`` are kept whole, so lengths become ``min(n_i, k)``: a
        common augmentation when training set models on varying ``n_i``. One gather over
        the buffer (no per-segment loop); the random draw happens on the host, so values on
        a GPU are not synchronised (a CUDA ``torch.Generator`` draws on its device, and
        reading the draw synchronises it once).

        Args:
            k: items per segment, an int or one count per segment.
            generator: a ``numpy.random.Generator``, a ``torch.Generator``, an int seed, or
                None (fresh entropy).

        Raises:
            ValueError: a negative ``k``, or per-segment counts of the wrong length.
            TypeError: ``generator`` is none of the kinds above.

        Examples:
            >>> import numpy as np
            >>> import raggedarray as ra
            >>> x = ra.RaggedArray.from_lengths(np.arange(10), [6, 1, 3])
            >>> y = x.subsample(2, generator=0)
            >>> y.lengths, all(np.isin(y[i], x[i]).all() for i in range(3))
            (array([2, 1, 2]), True)
        """
        where = f"{type(self).__name__}.subsample"
        host, index = _offsets.subsample(
            self._host, k, lambda: _random_keys(self.num_items, generator, where), where
        )
        return cast("Self", self._like(_backend.index_rows(self._values, index), None, host))


def _random_keys(count: int, generator: Any, where: str) -> Any:
    """``count`` uniform random numbers on the host from a numpy or torch generator."""
    if isinstance(generator, (int, np.integer, bool, np.bool_)):
        generator = _checks.read_int(generator, "generator (a seed)", where, high=2**128)
    if generator is None or isinstance(generator, int):
        return np.random.default_rng(generator).random(count)
    if isinstance(generator, np.random.Generator):
        return generator.random(count)
    torch = _backend.loaded_torch()
    if torch is not None and isinstance(generator, torch.Generator):
        keys = torch.rand(count, generator=generator, dtype=torch.float64, device=generator.device)
        return _backend.host_numpy(keys)
    raise TypeError(
        f"{where}: generator must be a numpy Generator, a torch Generator, an int seed or "
        f"None; got {type(generator).__name__}"
    )
