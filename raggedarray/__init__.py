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

from . import testing
from .image import RaggedImageBatch
from .join import cat
from .ragged import RaggedArray
from .testing import allclose

__version__ = "0.1.0"

__all__ = [
    "RaggedArray",
    "RaggedImageBatch",
    "__version__",
    "allclose",
    "cat",
    "testing",
]
