"""Ragged batches in ``torch.utils.data`` pipelines: collation, datasets and batch sampling.

A sample holds one location: an ``(n_i, ...)`` array (its items), or a tuple or dict whose named
fields are such arrays and whose other fields are ordinary (a label, covariates).
[`collate`][raggedarray.data.collate] joins the samples of a batch into one ragged array per ragged
field, with one allocation (in shared memory inside a DataLoader worker, so the batch reaches the
main process without another copy), and hands the other fields to torch's ``default_collate``.

Examples:
    >>> import torch
    >>> import raggedarray as ra
    >>> samples = [(torch.zeros(n, 1, 8, 8), n % 2) for n in (3, 1, 2)]
    >>> images, labels = ra.collate(samples, ragged=0)
    >>> type(images).__name__, images.lengths.tolist(), labels
    ('RaggedImageBatch', [3, 1, 2], tensor([1, 1, 0]))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from typing import Any, TypeAlias, overload

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from . import _backend, _checks, _construct, _offsets
from ._sampler import BudgetBatchSampler
from ._types import Array
from .image import RaggedImageBatch
from .ragged import RaggedArray

__all__ = ["BudgetBatchSampler", "RaggedCollate", "RaggedDataset", "collate"]

_ARRAYS = (np.ndarray, torch.Tensor)

#: Which fields of tuple or dict samples are ragged: a position or key, or several.
FieldNames: TypeAlias = Hashable | Sequence[Hashable] | None
#: A collated batch: a ragged array (array samples), or the samples' tuple, list or dict
#: structure with ragged fields as ragged arrays and the rest as ``default_collate`` made them.
Batch: TypeAlias = RaggedArray | tuple[Any, ...] | list[Any] | dict[Any, Any]


@overload
def collate(samples: Sequence[Array], *, ragged: None = None) -> RaggedArray: ...
@overload
def collate(
    samples: Sequence[Mapping[str, object]], *, ragged: str | Sequence[str]
) -> dict[str, Any]: ...
@overload
def collate(
    samples: Sequence[tuple[object, ...]], *, ragged: int | Sequence[int]
) -> tuple[Any, ...]: ...
@overload
def collate(samples: Sequence[list[object]], *, ragged: int | Sequence[int]) -> list[Any]: ...
@overload
def collate(samples: Sequence[object], *, ragged: FieldNames = None) -> Batch: ...
def collate(samples: Sequence[Any], *, ragged: Any = None) -> Batch:
    """Join a batch of samples; ragged fields become one ragged array each.

    Args:
        samples: a non-empty list of samples of one kind: arrays ``(n_i, ...)`` (all
            ragged), tuples, or dicts.
        ragged: for tuple samples, the position (or positions, ints or numpy integers) of
            the ragged fields, or for named tuples their field names too; for dict samples,
            the key (or keys). Which fields are ragged is always explicit, so a batch's types
            never depend on whether its shapes happen to match. Must be None for bare array
            samples.

    Returns:
        A [`RaggedImageBatch`][raggedarray.RaggedImageBatch] for ``(n_i, C, H, W)``
            fields, else a [`RaggedArray`][raggedarray.RaggedArray], with torch values
            (numpy samples are converted, as ``default_collate`` does); tuples (named tuples
            too) and dicts keep their structure, their other fields collated by
            ``default_collate``. Dict samples may list their keys in any order; the batch
            follows the first sample's order. Inside a DataLoader worker the result is the
            same, its buffer born in shared memory.

    Raises:
        TypeError: tuple or dict samples without ``ragged=``, samples of mixed kinds, or a
            ragged field that is not an array.
        ValueError: no samples, a ``ragged=`` position or key the samples lack, or ragged
            items of different item shapes (dtypes are promoted: by numpy's rules when
            every item is a numpy array, as ``np.concatenate`` does, else as ``torch.cat``).

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> batch = ra.collate([np.ones((2, 3)), np.ones((0, 3)), np.ones((4, 3))])
        >>> batch.lengths.tolist(), batch.item_shape
        ([2, 0, 4], (3,))
        >>> out = ra.collate([{"x": np.ones((2, 3)), "y": 1.0}] * 2, ragged="x")
        >>> out["x"].num_items, out["y"]
        (4, tensor([1., 1.], dtype=torch.float64))
    """
    return _collate(samples, ragged, "collate")


def _collate(samples: Sequence[Any], ragged: Any, where: str) -> Any:
    if _backend.backend_of(samples) is not None or not isinstance(samples, Sequence):
        raise TypeError(
            f"{where}: samples must be a list of samples; got {_backend.describe(samples)}"
        )
    check_ragged(ragged, where)
    if len(samples) == 0:
        raise ValueError(f"{where}: samples must not be empty; got an empty batch")
    first = samples[0]
    if _backend.backend_of(first) is not None:
        if ragged is not None:
            raise ValueError(
                f"{where}: ragged= names fields of tuple or dict samples; got ragged={ragged!r} "
                "for bare array samples (which are ragged already)"
            )
        return _ragged_field(samples, where, None)
    if isinstance(first, Mapping):
        return _collate_dicts(samples, _names(ragged, where, "keys"), where)
    if isinstance(first, tuple | list):
        return _collate_sequences(samples, _names(ragged, where, "positions"), where)
    raise TypeError(f"{where}: samples must be arrays, tuples or dicts; got {type(first).__name__}")


def _collate_dicts(samples: Sequence[Any], keys: list[Any], where: str) -> Mapping[Any, Any]:
    """Dict samples: one entry per key, in the first sample's key order (as default_collate).

    Other mappings too (an ``OrderedDict``, a ``defaultdict``, a ``MappingProxyType``): the
    batch is of the first sample's type, a copy of it updated for a mutable mapping, else
    built from a dict where it can be, else a dict, as ``default_collate`` does.
    """
    first = samples[0]
    missing = [k for k in keys if k not in first]
    if missing:
        raise ValueError(f"{where}: ragged keys must be keys of the samples; got {missing}")
    _same_kind(samples, Mapping, where)
    for i, sample in enumerate(samples):
        if sample.keys() != first.keys():  # the same set of keys, in any order
            raise ValueError(
                f"{where}: every sample must have the keys of the first ({list(first)}); "
                f"got {list(sample)} in sample {i}"
            )
    batch = {
        key: _ragged_field([s[key] for s in samples], where, f"field {key!r}")
        if key in keys
        else _default_field([s[key] for s in samples], where, f"field {key!r}")
        for key in first
    }
    if type(first) is dict:
        return batch
    if isinstance(first, MutableMapping):  # (a defaultdict keeps its factory)
        clone = copy.copy(first)
        clone.update(batch)
        return clone
    try:
        return type(first)(batch)
    except TypeError:  # a mapping that is not built from a dict
        return batch


def _collate_sequences(samples: Sequence[Any], names: list[Any], where: str) -> Any:
    """Tuple (named tuples too) or list samples: the first sample's type, field by field."""
    first = samples[0]
    positions = _positions(first, names, where)
    _same_kind(samples, type(first), where)
    _same_fields(samples, len, "number of fields", where)
    fields = [
        _ragged_field([s[i] for s in samples], where, f"field {i}")
        if i in positions
        else _default_field([s[i] for s in samples], where, f"field {i}")
        for i in range(len(first))
    ]
    if not isinstance(first, tuple):
        return fields
    if hasattr(first, "_fields"):  # a named tuple takes its fields as arguments
        return type(first)(*fields)
    try:
        return type(first)(fields)
    except TypeError:  # a tuple subclass that cannot be built from one iterable
        return tuple(fields)


def _default_field(values: list[Any], where: str, what: str) -> Any:
    """A field not named in ``ragged=``, collated by torch's ``default_collate``.

    Its errors (a ``RuntimeError`` from stacking items of different sizes, a ``TypeError``
    for ``None``, a ``KeyError`` or ``IndexError`` from nested dicts and sequences that
    differ) say which field it was and that ``ragged=`` names the ragged ones.
    """
    try:
        return default_collate(values)
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        text = str(err).strip().split("\n")[0]
        if isinstance(err, KeyError):
            text = f"a nested dict without the key {text} that the first sample's has"
        raise kind(
            f"{where}: {what} is not named in ragged=, so it must collate with torch's "
            f"default_collate (name it in ragged= if it is ragged); got {text}"
        ) from None


def _positions(first: Sequence[Any], names: list[Any], where: str) -> set[int]:
    """The ragged positions as non-negative ints; named tuples take field names too."""
    field_names = getattr(first, "_fields", ()) if isinstance(first, tuple) else ()
    positions, bad = set(), []
    for name in names:
        if isinstance(name, str) and name in field_names:
            positions.add(field_names.index(name))
        elif isinstance(name, int | np.integer) and -len(first) <= name < len(first):
            positions.add(int(name) % len(first))
        else:
            bad.append(name)
    if bad:
        also = f" or name the fields {list(field_names)}" if field_names else ""
        raise ValueError(
            f"{where}: ragged positions must index the samples' {len(first)} fields{also}; "
            f"got {bad}"
        )
    return positions


def check_ragged(ragged: Any, where: str) -> None:
    """``ragged=``: None, a position (int), a key (str), or a list or tuple of them."""
    names = ragged if isinstance(ragged, (list, tuple)) else [ragged]
    for name in names:
        if name is None and ragged is None:
            continue
        if isinstance(name, bool) or not isinstance(name, (int, np.integer, str)):
            raise TypeError(
                f"{where}: ragged must be None, a position (int), a key (str) or a list of "
                f"them; got {type(name).__name__} {name!r}"
            )


def _same_fields(samples: Sequence[Any], fields: Any, what: str, where: str) -> None:
    """Every sample has the fields (keys, or number of fields) of the first."""
    expected = fields(samples[0])
    for i, sample in enumerate(samples):
        seen = fields(sample)
        if seen != expected:
            raise ValueError(
                f"{where}: every sample must have the {what} of the first ({expected}); "
                f"got {seen} in sample {i}"
            )


def _names(ragged: Any, where: str, what: str) -> list[Any]:
    if ragged is None:
        raise TypeError(
            f"{where}: tuple and dict samples need ragged= naming the ragged {what} "
            "(for example ragged=0 or ragged='images'); got ragged=None"
        )
    if isinstance(ragged, str | int | np.integer):
        return [ragged]
    return list(ragged)


def _same_kind(samples: Sequence[Any], kind: type, where: str) -> None:
    for i, sample in enumerate(samples):
        if not isinstance(sample, kind):
            raise TypeError(
                f"{where}: every sample must be a {kind.__name__} like the first; "
                f"got {type(sample).__name__} at {i}"
            )


def _ragged_field(items: Sequence[Any], where: str, what: str | None) -> RaggedArray:
    """One ragged array from per-sample ``(n_i, ...)`` arrays: one allocation.

    Outside DataLoader workers this is ``from_list`` (C-level passes over the inputs);
    inside a worker the buffer is allocated in shared memory first. Errors name ``where``
    and the field (``what``) once.
    """
    try:
        return _join_field(items, where)
    except (TypeError, ValueError) as err:
        if what is None:
            raise
        message = str(err).removeprefix(f"{where}: ")
        raise type(err)(f"{where}: {what}: {message}") from None


def _join_field(items: Sequence[Any], where: str) -> RaggedArray:
    if not _checks.arrays_accepted(items):
        # samples are copied anyway: big-endian ones are converted, as from_list does
        items = [_backend.native_order(a) if isinstance(a, np.ndarray) else a for a in items]
        for i, item in enumerate(items):
            if not isinstance(item, _ARRAYS):
                raise TypeError(
                    f"{where}: ragged fields must hold arrays (n_i, ...); got "
                    f"{type(item).__name__} in sample {i}"
                )
            _checks.check_array(item, where, f"the array of sample {i}")
    cls = RaggedImageBatch if items[0].ndim == 4 else RaggedArray
    if get_worker_info() is not None:
        _refuse_graphs(items, where)
        if _shareable(items):
            return cls._make(*_join_shared(items, where))
    values, host = _construct.concat(
        items, dtype=None, device=None, where=where, image=False, item_shape=None
    )
    x = cls._make(values, None, host)
    return x if x.backend == "torch" else x.torch()


def _refuse_graphs(items: Sequence[Any], where: str) -> None:
    """Refuse, in a DataLoader worker, items that require grad.

    Joined, they make a tensor recording autograd, which torch cannot send to the main
    process: its queue's feeder thread fails and the loader waits for ever.
    """
    for i, a in enumerate(items):
        if not isinstance(a, np.ndarray) and _backend.needs_grad(a):
            raise ValueError(
                f"{where}: ragged fields in a DataLoader worker must not require grad (torch "
                "cannot send a tensor that records autograd to the main process); got "
                f"{_backend.describe(a)} requiring grad in sample {i} (detach it in the "
                "dataset, or load with num_workers=0)"
            )


def _shareable(items: Sequence[Any]) -> bool:
    """Whether a worker can join ``items`` straight into shared memory.

    That takes host arrays (none requires grad: ``_refuse_graphs``). Other batches (on a
    GPU) take the main process's path.
    """
    return all(isinstance(a, np.ndarray) or a.device.type == "cpu" for a in items)


def _join_shared(items: Sequence[Any], where: str) -> tuple[torch.Tensor, None, np.ndarray]:
    """``(values, None, host offsets)`` of the batch, ``values`` born in shared memory.

    The dtype follows the main process's rules: numpy's promotion when every item is a numpy
    array (``np.concatenate``), torch's when any is a tensor (``torch.cat``).
    """
    first = tuple(items[0].shape[1:])
    if any(tuple(a.shape[1:]) != first for a in items):
        _construct._check_item_shapes(list(items), where)
    lengths = np.fromiter((a.shape[0] for a in items), dtype=np.int64, count=len(items))
    host = _offsets.from_lengths(lengths, where)
    # As default_collate does: a shared-memory buffer crosses to the main process as a
    # handle, not a copy.
    shape = (int(host[-1]), *first)
    if all(isinstance(a, np.ndarray) for a in items):
        numpy_dtype = np.result_type(*(a.dtype for a in items))  # (items are native already)
        values = _shared_empty(shape, _backend.to_torch_dtype(numpy_dtype))
        np.concatenate(items, axis=0, out=values.numpy())
        return values, None, host
    tensors = [
        a if isinstance(a, torch.Tensor) else _construct.numpy_as_tensor(a, k, where)
        for k, a in enumerate(items)
    ]
    return _construct.cat_into(tensors, _shared_empty, shape, where), None, host


def _shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor in shared memory, allocated there directly.

    torch's ``default_collate`` does this with the private ``TypedStorage._new_shared``
    (present from torch 2.0 to at least 2.13; tests/test_data.py pins it at both ends of
    the supported range). Where it is missing, the public ``share_memory_()`` gives the same
    result at the cost of one more pass over the buffer (about 1.5x the allocation time,
    measured on 4 MB).
    """
    private = hasattr(torch.Tensor, "_typed_storage") and hasattr(torch.TypedStorage, "_new_shared")
    if not private:
        return torch.empty(shape, dtype=dtype).share_memory_()
    numel = int(np.prod(shape, dtype=np.int64))
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=dtype).new(storage).resize_(shape)


class RaggedCollate:
    """A picklable ``collate_fn`` for ``DataLoader``: ``collate(samples, ragged=ragged)``.

    Examples:
        >>> import pickle
        >>> import torch
        >>> import raggedarray as ra
        >>> fn = pickle.loads(pickle.dumps(ra.data.RaggedCollate(ragged="bag")))
        >>> fn([{"bag": torch.ones(2, 4), "label": 0}, {"bag": torch.ones(5, 4), "label": 1}])["bag"]
        RaggedArray(num_segments=2, num_items=7, n_i=2..5 (mean 3.5), item_shape=(4,), dtype=float32, device=cpu, backend=torch)
    """  # noqa: E501

    def __init__(self, ragged: FieldNames = None) -> None:
        check_ragged(ragged, "RaggedCollate")
        self.ragged = ragged

    def __call__(self, samples: Sequence[object]) -> Batch:
        """Collate one batch."""
        return _collate(samples, self.ragged, "RaggedCollate")

    def __repr__(self) -> str:
        return f"RaggedCollate(ragged={self.ragged!r})"


class RaggedDataset(Dataset):
    """A dataset over the segments of a ragged array (in memory or memory-mapped).

    ``ds[i]`` is segment ``i`` (a view), passed through ``transform`` when given, and paired
    with ``targets[i]`` as a tuple when targets are given. ``ds.lengths`` (host int64) feeds
    a [`BudgetBatchSampler`][raggedarray.data.BudgetBatchSampler].

    Args:
        x: the ragged array.
        targets: one target per segment (an array, tensor or sequence), or None.
        transform: a callable applied to each segment's ``(n_i, ...)`` array, or None.

    Examples:
        >>> import numpy as np
        >>> import raggedarray as ra
        >>> x = ra.RaggedArray.from_lengths(np.arange(6.0), [2, 0, 4])
        >>> ds = ra.data.RaggedDataset(x, targets=[1, 0, 1])
        >>> len(ds), ds[2], ds.lengths.tolist()
        (3, (array([2., 3., 4., 5.]), 1), [2, 0, 4])
    """

    def __init__(
        self,
        x: RaggedArray,
        targets: Sequence[object] | Array | None = None,
        transform: Callable[[np.ndarray], object] | Callable[[torch.Tensor], object] | None = None,
    ) -> None:
        where = "RaggedDataset"
        if not isinstance(x, RaggedArray):
            raise TypeError(f"{where}: x must be a RaggedArray; got {_backend.describe(x)}")
        if targets is not None:
            _check_targets(targets, len(x), where)
        if transform is not None and not callable(transform):
            raise TypeError(f"{where}: transform must be callable; got {type(transform).__name__}")
        self.x = x
        self.targets = targets
        self.transform = transform

    @property
    def lengths(self) -> np.ndarray:
        """Items per segment (host int64, read-only)."""
        return self.x.host_lengths

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Any:
        """Segment ``i`` (an int, negative allowed), transformed and paired with its target.

        Raises:
            TypeError: ``i`` is not an integer (a slice, a list, a bool, a float, ...): a
                dataset item is one segment; index ``ds.x`` for several.
            IndexError: ``i`` is out of range.
        """
        i = _segment_index(i, "RaggedDataset.__getitem__")
        item: Any = self.x._getitem(i, "RaggedDataset.__getitem__")
        i %= len(self.x)  # (in range now) targets keyed by label, a dict say, see no negatives
        if self.transform is not None:
            item = self.transform(item)
        if self.targets is None:
            return item
        return item, self.targets[i]


def _check_targets(targets: Any, m: int, where: str) -> None:
    """``targets``: an indexable collection (not a string) with one entry per segment."""
    if isinstance(targets, str | bytes) or not (
        hasattr(targets, "__len__") and hasattr(targets, "__getitem__")
    ):
        raise TypeError(
            f"{where}: targets must be a sequence, array or tensor with one entry per segment; "
            f"got {type(targets).__name__}"
        )
    if isinstance(targets, _ARRAYS) and targets.ndim == 0:
        raise ValueError(
            f"{where}: targets must have one entry per segment ({m}); got a 0-d "
            f"{_backend.describe(targets)}"
        )
    if len(targets) != m:
        raise ValueError(
            f"{where}: targets must have one entry per segment ({m}); got {len(targets)}"
        )
    if isinstance(targets, Mapping):  # keyed by segment index: every one must be there
        missing = next((i for i in range(m) if i not in targets), None)
        if missing is not None:
            raise ValueError(
                f"{where}: targets as a mapping must have the segment indices 0..{m - 1} as "
                f"keys; got no key {missing} (keys such as {next(iter(targets))!r})"
            )


def _segment_index(i: Any, where: str) -> int:
    """An integer index as an int.

    Python and numpy integers and 0-d integer arrays or tensors are indices; bools (and
    bool arrays), slices, lists and floats are refused.
    """
    index = _checks.index_of(i)
    if index is not None:
        return index
    raise TypeError(
        f"{where}: index must be an int (ds[i] is segment i); got {_backend.describe(i)}"
        " (for several segments index the ragged array, ds.x[...])"
    )
