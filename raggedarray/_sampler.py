"""``BudgetBatchSampler``: batches of segments whose total item count fits a budget.

Re-exported as ``ra.data.BudgetBatchSampler``. Pure numpy and Python on the host; torch is
imported only to read the ``torch.distributed`` defaults.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _checks, _offsets
from ._types import IntArrayLike

_WINDOW_BATCHES = 10  # a shuffled window holds about this many batches' worth of segments
# A window is sorted by length times exp(JITTER * normal noise), drawn anew each epoch. Sorted
# exactly, a window that holds all the data (m = 64 locations, say) is packed the same way
# whatever the permutation: the same segments shared a batch in every epoch. Of the pairs of
# segments sharing a batch, the share that shared one again the next epoch (10 epochs, seed 0):
# 0.59 -> 0.16 for m = 64 of lengths 20..40, max_items=256 (random batches: 0.12); 0.35 -> 0.16
# to 0.20 for m = 128 of 1..100, 512; 1.0 -> 0.33 for lengths 1..64, 300. Mean fill over 100 000
# segments is unchanged for lengths 5..15 / 128 and lognormal / 512, and 0.894 -> 0.872 for
# 1..100 / 128, where segments are large next to the budget (0.3 gave 0.834, 0.1 kept 0.882
# but repeated 0.21-0.42 of pairs).
JITTER = 0.15


class BudgetBatchSampler:
    """Batches of segment indices whose total item count stays within ``max_items``.

    Use it as ``DataLoader(dataset, batch_sampler=sampler)``: it yields lists of ``int`` like
    ``torch.utils.data.BatchSampler``, so memory per step is bounded however ragged the data.
    Its options are fixed when it is made (read-only attributes: the plans depend on them);
    only the epoch changes, through ``set_epoch``.

    Plan of an epoch (a function of ``(seed, epoch)`` and the arguments only):

    * ``shuffle=True``: segments are permuted with ``numpy.random.default_rng((seed, epoch))``
      and cut into windows of about 10 batches' worth of segments. Each window is sorted by
      length, jittered at random (by a factor ``exp(0.15 * normal)``, so that the batches
      hold other segments each epoch even when one window holds all of them), and packed
      from both ends: a batch takes the longest segments left that fit, then fills the rest
      of the budget with the shortest ones. The last, partial batch of a window goes back
      into the next window. Finally the order of the batches is shuffled.
    * ``shuffle=False``: segments in index order, cut greedily (next fit) into runs of
      consecutive indices, so the batches concatenate back to ``0, 1, ..., n - 1``.

    Every segment is in exactly one batch per epoch (one replica). Zero-length segments cost
    no items and are bounded only by ``max_segments``. A segment longer than ``max_items`` is
    a batch on its own, or a ``ValueError`` at construction when ``strict=True``. No batch is
    empty; an empty dataset gives no batches.

    Mean fill (items per batch / ``max_items``, an over-long batch counting as 1) over
    100 000 segments with ``shuffle=True``: 0.985 for lengths uniform in 5..15 with
    ``max_items=128``; 0.992 for lengths ``round(lognormal(3, 1))`` (median 20, 61 over budget)
    with ``max_items=512``; 0.87 for lengths uniform in 1..100 with ``max_items=128``, where
    segments are as large as the budget. Next fit in shuffled order (as ``shuffle=False``
    packs) gives 0.96, 0.92 and 0.74. Planning an epoch of 1 000 000 segments takes 0.2-0.7 s
    (half that unshuffled; two shared cores), once per epoch: ``len`` and iteration share
    the plan.

    Distributed: all ranks compute the same plan of ``B`` batches. Without ``drop_last`` it is
    padded to a multiple of ``num_replicas`` by repeating whole batches from its start (so a
    few segments are seen twice); with ``drop_last`` the last ``B % num_replicas`` batches are
    dropped (with one replica nothing is ever dropped). Rank ``r`` then takes batches
    ``r, r + R, r + 2R, ...``, so every rank gets the same number of batches, and the
    ``R`` batches of one step are neighbours in the shuffled plan. Items are not rebalanced
    across ranks: batches are nearly full, so the ranks of one step differ little. The sampler
    pickles without its cached plan.

    Args:
        lengths: segment lengths, a 1-D list, array or tensor of non-negative integers, or an
            object with ``host_lengths`` (a ragged array) or ``lengths`` (a dataset).
        max_items: the item budget of a batch, ``>= 1``.
        max_segments: at most this many segments per batch (``>= 1``), or ``None``.
        shuffle: random plan per epoch, or consecutive runs in index order.
        seed: a non-negative int; the same on every rank.
        drop_last: drop the batches that do not divide among the replicas instead of padding.
        num_replicas: number of ranks; ``None`` reads ``torch.distributed`` when initialised,
            else 1.
        rank: this rank, ``0 <= rank < num_replicas``; ``None`` reads ``torch.distributed``
            when initialised, else 0.
        strict: raise for a segment longer than ``max_items`` instead of batching it alone.

    Raises:
        TypeError: an argument of the wrong kind (float lengths, a non-int budget, ...).
        ValueError: negative lengths, a budget or count below its minimum, ``rank`` out of
            range, or (``strict=True``) a segment longer than ``max_items``.

    Examples:
        >>> import raggedarray as ra
        >>> s = ra.data.BudgetBatchSampler([3, 5, 2, 6, 1], max_items=8, shuffle=False)
        >>> list(s), len(s)
        ([[0, 1], [2, 3], [4]], 3)
        >>> s = ra.data.BudgetBatchSampler([3, 5, 2, 6, 1, 9], max_items=8, seed=1)
        >>> s.set_epoch(2)
        >>> list(s)  # segment 5 is over budget: a batch on its own
        [[2], [4, 3], [5], [0, 1]]
        >>> [list(ra.data.BudgetBatchSampler([4] * 5, max_items=8, num_replicas=2, rank=r))
        ...  for r in (0, 1)]  # 3 batches padded to 4: batch [4, 3] is repeated
        [[[4, 3], [0, 2]], [[1], [4, 3]]]
    """

    def __init__(
        self,
        lengths: IntArrayLike,
        *,
        max_items: int,
        max_segments: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        strict: bool = False,
    ) -> None:
        where = type(self).__name__
        self._lengths = _read_lengths(lengths, where)
        self.max_items = _int(max_items, "max_items", 1, where)
        self.max_segments = (
            None if max_segments is None else _int(max_segments, "max_segments", 1, where)
        )
        self.shuffle = _checks.read_bool(shuffle, "shuffle", where)
        self.seed = _int(seed, "seed", 0, where)
        self.drop_last = _checks.read_bool(drop_last, "drop_last", where)
        self.strict = _checks.read_bool(strict, "strict", where)
        if num_replicas is None or rank is None:
            world, me = _distributed_defaults()
            num_replicas = world if num_replicas is None else num_replicas
            rank = me if rank is None else rank
        self.num_replicas = _int(num_replicas, "num_replicas", 1, where)
        self.rank = _int(rank, "rank", 0, where)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"{where}: rank must be < num_replicas={self.num_replicas}; got rank={self.rank}"
            )
        if self.strict:
            over = np.flatnonzero(self._lengths > self.max_items)
            if over.size:
                i = int(over[0])
                raise ValueError(
                    f"{where}: with strict=True every segment must fit in "
                    f"max_items={self.max_items}; got lengths[{i}]={self._lengths[i]}"
                )
        self.epoch = 0
        self._cache: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name in _FIXED and name in self.__dict__:  # (set once, by __init__)
            raise self._fixed(name, f"an assignment of {value!r}")
        if name == "epoch":  # (set_epoch's check, for an assignment too)
            value = _int(value, "epoch", 0, f"{type(self).__name__}.epoch")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _FIXED:
            raise self._fixed(name, "a deletion")
        object.__delattr__(self, name)

    def _fixed(self, name: str, seen: str) -> AttributeError:
        return AttributeError(
            f"{type(self).__name__}: {name} is fixed when the sampler is made (its plans "
            f"depend on it); got {seen} (make a new sampler)"
        )

    @property
    def lengths(self) -> np.ndarray:
        """The segment lengths (a read-only host int64 array)."""
        view = self._lengths.view()
        view.flags.writeable = False
        return view

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan ``len`` and iteration give (call it on every rank)."""
        object.__setattr__(
            self, "epoch", _int(epoch, "epoch", 0, f"{type(self).__name__}.set_epoch")
        )

    def __len__(self) -> int:
        return int(self._plan()[3].shape[0])

    def __iter__(self) -> Iterator[list[int]]:
        _, order, bounds, mine = self._plan()
        for b in mine.tolist():
            yield order[bounds[b] : bounds[b + 1]].tolist()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._lengths.shape[0]} segments, "
            f"max_items={self.max_items}, max_segments={self.max_segments}, "
            f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, "
            f"rank={self.rank}/{self.num_replicas})"
        )

    def _plan(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """``(epoch, order, bounds, mine)``: batch ``b`` is ``order[bounds[b]:bounds[b+1]]``."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache
        lengths, n = self._lengths, self._lengths.shape[0]
        most = n if self.max_segments is None else self.max_segments
        if self.shuffle and n:
            rng = np.random.default_rng((self.seed, self.epoch))
            perm = rng.permutation(n)
            keys = lengths * np.exp(JITTER * rng.standard_normal(n))
            clipped = float(np.minimum(lengths, self.max_items).mean())
            per_batch = min(max(self.max_items / max(clipped, 1.0), 1.0), most)
            window = max(int(_WINDOW_BATCHES * per_batch), 1)
            order, counts = _pack_windows(lengths, keys, perm, self.max_items, most, window)
            bounds = _offsets.from_lengths(counts, "BudgetBatchSampler")
            bounds, item = _offsets.gather(bounds, rng.permutation(counts.shape[0]))
            order = order[item]
        else:
            bounds = _next_fit(np.cumsum(lengths).tolist(), self.max_items, most)
            order = np.arange(n, dtype=np.int64)
        num, r = bounds.shape[0] - 1, self.num_replicas
        total = (num // r) * r if self.drop_last else -(-num // r) * r
        mine = (np.arange(self.rank, total, r) % max(num, 1)).astype(np.int64)
        self._cache = (self.epoch, order, bounds, mine)
        return self._cache


_FIXED = frozenset(
    ("max_items", "max_segments", "shuffle", "seed", "drop_last", "strict", "num_replicas", "rank")
)


def _pack_windows(
    lengths: np.ndarray, keys: np.ndarray, perm: np.ndarray, budget: int, most: int, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Segments in batch order and batch sizes: windows of ``perm``, each packed from both ends.

    A window is sorted by ``keys`` (the lengths, jittered); the packing reads the lengths.
    """
    pieces: list[np.ndarray] = []
    counts: list[int] = []
    carry = perm[:0]
    n, start = perm.shape[0], 0
    while start < n:
        # A carry as long as a window (segments so short that windows never fill a batch)
        # widens the next window to its length: the carry is sorted again at every window,
        # which would otherwise make the plan quadratic in the number of segments.
        step = max(window, carry.shape[0])
        idx = np.concatenate([carry, perm[start : start + step]])
        idx = idx[np.argsort(keys[idx], kind="stable")]
        asc = [0, *np.cumsum(lengths[idx]).tolist()]  # asc[k] = sum of the k shortest
        last = start + step >= n
        start += step
        lo, hi = 0, idx.shape[0]  # [lo, hi) is still to pack
        while lo < hi:
            if asc[hi] - asc[hi - 1] > budget:  # over-long: a batch on its own
                j, k = lo, hi - 1
            else:  # the longest that fit, then the shortest that fit in what is left
                k = max(bisect_left(asc, asc[hi] - budget, lo, hi), hi - most)
                room = budget - (asc[hi] - asc[k])
                j = min(bisect_right(asc, asc[lo] + room, lo, k + 1) - 1, lo + most - (hi - k))
            if j == k and not last:  # the window's last batch waits for the next window
                carry = np.concatenate([idx[lo:j], idx[k:hi]])
                break
            pieces += [idx[lo:j], idx[k:hi]]
            counts.append(j - lo + hi - k)
            lo, hi = j, k
    order = np.concatenate(pieces) if pieces else perm[:0]
    return order.astype(np.int64, copy=False), np.array(counts, dtype=np.int64)


def _next_fit(cumsum: list[int], budget: int, most: int) -> np.ndarray:
    """Batch bounds of consecutive runs, each within ``budget`` items and ``most`` segments."""
    cum, n = [0, *cumsum], len(cumsum)
    bounds, i = [0], 0
    while i < n:
        j = min(bisect_right(cum, cum[i] + budget, i + 1) - 1, i + most)
        i = max(j, i + 1)
        bounds.append(i)
    return np.array(bounds, dtype=np.int64)


def _read_lengths(lengths: Any, where: str) -> np.ndarray:
    """Own host int64 copy of non-negative lengths, from an array or a ``.lengths`` holder."""
    for name in ("host_lengths", "lengths"):
        attr = getattr(lengths, name, None)
        if attr is not None:
            lengths = attr() if callable(attr) else attr
            break
    host = np.array(_offsets.read_lengths(lengths, where), dtype=np.int64)
    _checks.offsets_from_lengths(host, where)  # the running totals of a plan must fit in int64
    return host


def _int(value: Any, name: str, low: int, where: str) -> int:
    return _checks.read_int(value, name, where, low=low)


def _distributed_defaults() -> tuple[int, int]:
    """``(world_size, rank)`` from ``torch.distributed`` when initialised, else ``(1, 0)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0
