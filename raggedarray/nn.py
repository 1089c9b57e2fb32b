"""Neural network parts for ragged batches: pooling over segments and DeepSets.

Each module takes a ragged batch (``RaggedArray`` or ``RaggedImageBatch``) and returns one row per
segment. Per-item networks run through [`RaggedArray.map`][raggedarray.RaggedArray.map], so they
inherit its cache-aware chunking; pooling runs through the segment reductions, so it is
differentiable and runs at memory speed.

Examples:
    >>> import torch
    >>> import raggedarray as ra
    >>> batch = ra.RaggedImageBatch.from_lengths(torch.randn(7, 1, 16, 16), [3, 4])
    >>> psi = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5), torch.nn.Flatten(), torch.nn.ReLU())
    >>> model = ra.nn.DeepSet(psi, torch.nn.Linear(4 * 12 * 12, 2), pool="mean")
    >>> model(batch).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from . import _checks
from ._backend import describe
from ._checks import check_fill, dtype_name, read_bool, read_int
from ._reductions import POOLS as _OPS
from .map import _check_chunk_size

if TYPE_CHECKING:
    from .ragged import RaggedArray

__all__ = ["AttentionPool", "DeepSet", "SegmentPool"]

# The dtypes torch.autocast casts to its own (float64, integers and bools it leaves alone).
_AUTOCAST_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _check_ragged(x: Any, where: str) -> None:
    from .ragged import RaggedArray

    if not isinstance(x, RaggedArray):
        raise TypeError(
            f"{where}: input must be a RaggedArray or RaggedImageBatch; got {describe(x)}"
            " (wrap plain values with ra.RaggedArray.from_lengths)"
        )


def _as_torch(x: Any) -> Any:
    return x if x.backend == "torch" else x.torch()


class SegmentPool(nn.Module):
    """Pool the items of each segment with a segment reduction: ``(m, *item_shape)``.

    Args:
        op: ``"sum"``, ``"mean"``, ``"max"``, ``"min"`` or ``"logsumexp"``.
        fill: result for segments with no items (their gradient is zero).

    Examples:
        >>> import torch
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(torch.tensor([[1.0], [3.0], [5.0]]), [2, 0, 1])
        >>> ra.nn.SegmentPool("mean")(x)
        tensor([[2.],
                [0.],
                [5.]])
    """

    def __init__(self, op: str = "mean", *, fill: float = 0.0) -> None:
        super().__init__()
        if not isinstance(op, str):
            raise TypeError(
                f"SegmentPool: op must be a str, one of {', '.join(_OPS)}; got {describe(op)}"
            )
        if op not in _OPS:
            raise ValueError(f"SegmentPool: op must be one of {', '.join(_OPS)}; got {op!r}")
        check_fill(fill, torch.float64, "SegmentPool")
        self.op = op
        # a numpy scalar as the Python number it holds: a compiled graph reads numpy
        # scalars as arrays, and their value on the host (a graph break on every call)
        self.fill = fill.item() if isinstance(fill, np.generic) else fill

    def forward(self, x: RaggedArray) -> torch.Tensor:
        """Pool ``x``: ``(m, *item_shape)``."""
        _check_ragged(x, "SegmentPool")
        return getattr(_as_torch(x), self.op)(fill=self.fill)

    def extra_repr(self) -> str:  # noqa: D102
        return f"op={self.op!r}, fill={self.fill}"


class AttentionPool(nn.Module):
    """Attention pooling of multiple-instance learning (Ilse et al., 2018): ``(m, in_features)``.

    Each item ``h_k`` of a segment gets a score
    ``w . (tanh(V h_k) * sigmoid(U h_k))`` (gated) or ``w . tanh(V h_k)``; the weights are the
    softmax of the scores over the segment's items, and the output is the weighted sum of
    the items. Empty segments give zeros.

    Args:
        in_features: size of each item (items are ``(in_features,)`` vectors).
        hidden: size of the attention's hidden layer.
        gated: use the gated variant.

    Examples:
        >>> import torch
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(torch.randn(5, 8), [2, 3])
        >>> pool = ra.nn.AttentionPool(8, 16)
        >>> pool(x).shape
        torch.Size([2, 8])
        >>> pool.weights(x).sum().detach().flatten()  # weights sum to 1 in each segment
        tensor([1., 1.])
    """

    def __init__(self, in_features: int, hidden: int, gated: bool = True) -> None:
        super().__init__()
        in_features = read_int(in_features, "in_features", "AttentionPool", low=1)
        hidden = read_int(hidden, "hidden", "AttentionPool", low=1)
        gated = read_bool(gated, "gated", "AttentionPool")
        self.in_features = in_features
        self.attention = nn.Linear(in_features, hidden)
        self.gate = nn.Linear(in_features, hidden) if gated else None
        self.score = nn.Linear(hidden, 1)
        self._score_items = self._scores

    def _scorer(self) -> Any:
        """One bound ``_scores`` for the module's life, bound to this module.

        ``map`` remembers its plan per function (weakly), and ``self._scores`` would be a
        new object, probed again, at every call. A copy made by copying ``__dict__`` (the
        replicas of ``nn.DataParallel``) gets its own: the kept one would score with the
        original's layers.
        """
        scorer: Any = self._score_items
        if scorer.__self__ is not self:
            scorer = self._score_items = self._scores
        return scorer

    def _scores(self, values: Any) -> Any:
        hidden = torch.tanh(self.attention(values))
        if self.gate is not None:
            hidden = hidden * torch.sigmoid(self.gate(values))
        return self.score(hidden)

    def weights(self, x: RaggedArray) -> RaggedArray:
        """Attention weights of every item, ``(N, 1)`` ragged like ``x``; each segment's sum to 1.

        Raises:
            TypeError: ``x`` is not ragged, or its dtype differs from the pool's weights
                (under ``torch.autocast``, float32, float16 and bfloat16 may differ: autocast
                casts them).
            ValueError: the items are not ``(in_features,)`` vectors, or ``x`` is on
                another device than the pool.
        """
        _check_ragged(x, "AttentionPool")
        x = _as_torch(x)
        if x.item_shape != (self.in_features,):
            raise ValueError(
                f"AttentionPool: items must have shape ({self.in_features},); "
                f"got item_shape {x.item_shape}"
            )
        weight = self.attention.weight
        if x.device != weight.device:
            raise ValueError(
                f"AttentionPool: values must be on the device of the pool's weights "
                f"({weight.device}); got {x.device} (move with x.to(device) or pool.to(device))"
            )
        if x.dtype != weight.dtype and not (  # autocast casts these floats, and no others
            torch.is_autocast_enabled(x.device.type)
            and x.dtype in _AUTOCAST_FLOATS
            and weight.dtype in _AUTOCAST_FLOATS
        ):
            raise TypeError(
                f"AttentionPool: values must have the dtype of the pool's weights "
                f"({dtype_name(weight.dtype)}); got {dtype_name(x.dtype)} (convert with "
                "x.float() or the pool "
                "with pool.to(dtype))"
            )
        return x.map(self._scorer()).softmax()

    def forward(self, x: RaggedArray) -> torch.Tensor:
        """Attention-weighted sum of each segment's items: ``(m, in_features)``.

        Empty segments give zeros. Raises as [`weights`][raggedarray.nn.AttentionPool.weights].
        """
        _check_ragged(x, "AttentionPool")
        x = _as_torch(x)
        weights = self.weights(x)
        return cast(torch.Tensor, x._rewrap(x.values * weights.values).sum())  # torch values

    def extra_repr(self) -> str:  # noqa: D102
        return f"gated={self.gate is not None}"


class DeepSet(nn.Module):
    """``phi(pool(psi(items)))``: a permutation-invariant network over each segment's items.

    ``psi`` runs on the flat items through [`map`][raggedarray.RaggedArray.map] (chunked,
    differentiable), the pool reduces each segment to one row, which is flattened, joined
    with the optional per-segment ``covariates``, and passed to ``phi``.

    Args:
        psi: per-item network (any callable on a ``(k, *item_shape)`` tensor).
        phi: network on the pooled ``(m, features)`` rows.
        pool: ``"sum"``, ``"mean"``, ``"max"``, ``"min"``, ``"logsumexp"`` (a
            [`SegmentPool`][raggedarray.nn.SegmentPool]), or a module that maps a ragged batch
            to ``(m, F)`` (an [`AttentionPool`][raggedarray.nn.AttentionPool], say).
        chunk_size: passed to ``map`` (None: chosen automatically).

    Raises:
        TypeError: ``psi``, ``phi`` or ``pool`` is not callable (or ``pool`` a name), or
            ``chunk_size`` is not an int.
        ValueError: ``pool`` names no pooling op, or ``chunk_size`` is below 1.

    Examples:
        >>> import torch
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(torch.randn(6, 3), [1, 5])
        >>> model = ra.nn.DeepSet(torch.nn.Linear(3, 8), torch.nn.Linear(8 + 2, 1), pool="sum")
        >>> model(x, covariates=torch.randn(2, 2)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        psi: Callable[[torch.Tensor], torch.Tensor],
        phi: Callable[[torch.Tensor], torch.Tensor],
        pool: str | Callable[[RaggedArray], torch.Tensor] = "mean",
        *,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, fn in (("psi", psi), ("phi", phi)):
            if not callable(fn):
                raise TypeError(
                    f"DeepSet: {name} must be callable (a module or a function); got {describe(fn)}"
                )
            _refuse_class(fn, name)
        self.psi = psi
        self.phi = phi
        if isinstance(pool, str):
            if pool not in _OPS:
                raise ValueError(f"DeepSet: pool must be one of {', '.join(_OPS)}; got {pool!r}")
            pool = SegmentPool(pool)
        elif not callable(pool):
            raise TypeError(
                f"DeepSet: pool must be one of {', '.join(_OPS)} or a module; got {describe(pool)}"
            )
        _refuse_class(pool, "pool")
        self.pool = pool
        self.chunk_size = _check_chunk_size(chunk_size, "DeepSet")

    def forward(
        self, x: RaggedArray, covariates: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """``phi([pool(psi(x)), covariates])``: ``(m, out_features)``.

        Args:
            x: ragged batch of items.
            covariates: optional ``(m, k)`` (or ``(m,)``) per-segment features joined to
                the pooled features before ``phi``: a tensor, or a numpy array (converted
                to a tensor on the pooled features' device).

        Raises:
            TypeError: ``x`` is not ragged, ``covariates`` is not a tensor or a numpy
                array of numbers, or the pool returns something other than a tensor.
            ValueError: ``covariates`` is not ``(m, k)`` or ``(m,)``, or is a tensor on
                another device than the pooled features; or the pool's output is not
                ``(m, ...)`` with a feature dim.
        """
        _check_ragged(x, "DeepSet")
        features = _as_torch(x).map(self.psi, chunk_size=self.chunk_size)
        pooled = _pooled(self.pool(features), len(x), features.item_shape)
        if covariates is not None:
            covariates = _covariates(covariates, pooled)
            pooled = torch.cat([pooled, covariates.to(pooled.dtype)], dim=1)
        return self.phi(pooled)


def _refuse_class(fn: Any, name: str) -> None:
    """Refuse a class where a module is wanted (``pool=AttentionPool``, without its sizes)."""
    if isinstance(fn, type):
        raise TypeError(
            f"DeepSet: {name} must be a module or a function, not a class; got the class "
            f"{fn.__name__} (pass an instance, e.g. {fn.__name__}(...))"
        )


def _pooled(pooled: Any, m: int, item_shape: tuple[int, ...]) -> torch.Tensor:
    """The pool's output as ``(m, F)``: a tensor with one row per segment is required.

    ``item_shape``: that of ``psi``'s outputs, named when they have no feature dim.
    """
    if not isinstance(pooled, torch.Tensor):
        raise TypeError(
            f"DeepSet: pool must return a tensor, (m, ...) with one row per segment; got "
            f"{describe(pooled)}"
        )
    if pooled.ndim < 2 or pooled.shape[0] != m:
        if item_shape == ():
            raise ValueError(
                "DeepSet: psi must return (k, ...) with at least one feature dim per item; "
                f"got one number per item, so the pool gave shape {tuple(pooled.shape)} (add "
                "a feature dim, e.g. end psi with .unsqueeze(1))"
            )
        raise ValueError(
            f"DeepSet: pool must return (m, ...) with one row per segment (m={m}) and at least "
            f"one feature dim; got shape {tuple(pooled.shape)}"
        )
    return pooled.flatten(1)


def _covariates(covariates: Any, pooled: torch.Tensor) -> torch.Tensor:
    """``covariates`` as an ``(m, k)`` tensor (numpy arrays go to ``pooled``'s device)."""
    readable = isinstance(covariates, np.ndarray) and covariates.dtype.kind in "biuf"
    if readable:  # (a masked array would lose its mask, a longdouble its precision)
        if isinstance(covariates, np.ma.MaskedArray):
            raise TypeError(_checks.masked_refusal("DeepSet", "covariates"))
        covariates = np.asarray(covariates)  # (an np.matrix is only read)
        readable = covariates.dtype.itemsize <= 8
    if readable:  # in the machine's byte order, strides positive: what torch reads
        native = covariates.astype(covariates.dtype.newbyteorder("="), copy=False)
        covariates = torch.as_tensor(np.ascontiguousarray(native), device=pooled.device)
    elif not isinstance(covariates, torch.Tensor) or covariates.dtype.is_complex:
        raise TypeError(
            "DeepSet: covariates must be a tensor or a numpy array of real numbers torch "
            f"holds, (m, k) or (m,); got {describe(covariates)}"
        )
    if covariates.device != pooled.device:
        raise ValueError(
            f"DeepSet: covariates must be on the device of the pooled features "
            f"({pooled.device}); got {describe(covariates)}"
        )
    _checks.dense_tensor(covariates, "DeepSet", "covariates")
    if covariates.ndim == 1:
        covariates = covariates.unsqueeze(1)
    if covariates.ndim != 2 or covariates.shape[0] != pooled.shape[0]:
        raise ValueError(
            f"DeepSet: covariates must be (m, k) or (m,) with one row per segment "
            f"(m={pooled.shape[0]}); got shape {tuple(covariates.shape)}"
        )
    return covariates
