"""The public names of the design contract that the container provides, and what it must not be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import raggedarray as ra

CONSTRUCTORS = ["from_list", "from_lengths", "from_segment_ids", "from_padded"]
ATTRIBUTES = [
    "values",
    "offsets",
    "lengths",
    "segment_ids",
    "num_segments",
    "num_items",
    "item_shape",
    "max_length",
    "dtype",
    "device",
    "backend",
]
METHODS = [
    "unbind",
    "to_list",
    "to",
    "cpu",
    "cuda",
    "pin_memory",
    "numpy",
    "torch",
    "to_padded",
    "clone",
    "equal",
    "map",
    "sum",
    "mean",
    "max",
    "min",
    "prod",
    "logsumexp",
    "var",
    "std",
    "softmax",
    "log_softmax",
    "broadcast",
]
FUNCTIONS = [
    "cat",
    "allclose",
    "testing",
    "segment_sum",
    "segment_mean",
    "segment_max",
    "segment_min",
    "segment_prod",
    "segment_logsumexp",
    "segment_var",
    "segment_std",
    "segment_softmax",
    "segment_log_softmax",
    "segment_broadcast",
]


@pytest.mark.parametrize("cls", [ra.RaggedArray, ra.RaggedImageBatch])
def test_contract_names(cls):
    for name in CONSTRUCTORS + ATTRIBUTES + METHODS:
        assert hasattr(cls, name), name
    assert issubclass(ra.RaggedImageBatch, ra.RaggedArray)
    for name in ("channels", "height", "width"):
        assert hasattr(ra.RaggedImageBatch, name)
    for name in FUNCTIONS:
        assert hasattr(ra, name), name
    assert hasattr(ra.testing, "assert_ragged_equal")
    for name in ("SegmentPool", "AttentionPool", "DeepSet"):
        assert issubclass(getattr(ra.nn, name), torch.nn.Module), name
    assert set(ra.__all__) <= set(dir(ra))


def test_not_an_array_subclass_and_no_array_protocol():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    assert not isinstance(x, (np.ndarray, torch.Tensor))
    assert not hasattr(x, "__array__")
    # numpy arithmetic must not turn a ragged array into an object array behind the user's back:
    # an operand with more dims than the items is refused (a per-segment one included)
    with pytest.raises(ValueError, match=r"x\.broadcast"):
        np.ones(2) + x


def test_attribute_values_on_both_backends():
    x = ra.RaggedImageBatch.from_lengths(np.zeros((5, 2, 3, 4), np.float32), [2, 0, 3])
    for y in (x, x.torch()):
        assert (len(y), y.num_segments, y.num_items) == (3, 3, 5)
        assert y.item_shape == (2, 3, 4)
        assert (y.channels, y.height, y.width) == (2, 3, 4)
        assert (y.max_length, y.min_length) == (3, 0)
        assert y.device == torch.device("cpu")
    assert (x.backend, x.torch().backend) == ("numpy", "torch")
    assert x.dtype == np.float32 and x.torch().dtype == torch.float32
    assert x.offsets.dtype == np.int64 and x.torch().offsets.dtype == torch.int64
