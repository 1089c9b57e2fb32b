"""Ragged batches of images and arrays: one contiguous buffer plus offsets.

Examples:
    >>> import numpy as np
    >>> import raggedarray as ra
    >>> batch = ra.RaggedImageBatch.from_list([np.zeros((n, 1, 16, 16)) for n in (3, 1, 2)])
    >>> batch.values.shape  # one 4D array for one call of a network
    (6, 1, 16, 16)
    >>> [b.shape[0] for b in batch]  # or a list of per-location views
    [3, 1, 2]
"""

from typing import TYPE_CHECKING

from . import _pickle, testing
from .image import RaggedImageBatch
from .io import load, save
from .join import cat
from .ragged import RaggedArray
from .reduce import (
    segment_broadcast,
    segment_log_softmax,
    segment_logsumexp,
    segment_max,
    segment_mean,
    segment_min,
    segment_prod,
    segment_softmax,
    segment_std,
    segment_sum,
    segment_var,
)
from .segment_ops import (
    segment_all,
    segment_any,
    segment_argmax,
    segment_argmin,
    segment_cumsum,
    segment_median,
)
from .testing import allclose

if TYPE_CHECKING:  # loaded lazily below; named here so type checkers see their types
    from . import data, nn
    from .data import collate

__version__ = "0.1.0"

_pickle.allow_in_torch_load(RaggedArray, RaggedImageBatch)  # torch.load(weights_only=True)


def __getattr__(name: str) -> object:
    # ``ra.nn`` and ``ra.data`` import torch, so they load on first use: numpy-only work
    # never pays for it.
    import importlib

    if name in ("nn", "data"):
        return importlib.import_module(f"{__name__}.{name}")
    if name == "collate":  # kept as a global once loaded: a DataLoader looks it up per batch
        collate = globals()["collate"] = importlib.import_module(f"{__name__}.data").collate
        return collate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "RaggedArray",
    "RaggedImageBatch",
    "__version__",
    "allclose",
    "cat",
    "collate",
    "data",
    "load",
    "nn",
    "save",
    "segment_all",
    "segment_any",
    "segment_argmax",
    "segment_argmin",
    "segment_broadcast",
    "segment_cumsum",
    "segment_log_softmax",
    "segment_logsumexp",
    "segment_max",
    "segment_mean",
    "segment_median",
    "segment_min",
    "segment_prod",
    "segment_softmax",
    "segment_std",
    "segment_sum",
    "segment_var",
    "testing",
]
