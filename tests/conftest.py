"""Shared fixtures: backends x devices x dtypes, the per-segment oracle, hypothesis strategies.

The oracle is always a plain Python list of per-segment numpy arrays; every vectorised result
is compared with what a loop over that list gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

# (backend, device) pairs every container test runs on; CUDA ones skip cleanly without CUDA.
PLACES = [
    pytest.param(("numpy", "cpu"), id="numpy"),
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=requires_cuda),
]

# numpy dtype names; each has a torch twin via torch.from_numpy.
DTYPES = ["float32", "float64", "float16", "int64", "bool"]


@pytest.fixture(params=PLACES)
def place(request):
    """A (backend, device) pair."""
    return request.param


@pytest.fixture(params=DTYPES)
def dtype(request):
    """A numpy dtype name."""
    return request.param


def random_segments(rng, lengths, item_shape=(), dtype="float32"):
    """The oracle: a list of per-segment numpy arrays ``(n_i, *item_shape)``."""
    out = []
    for n in lengths:
        a = rng.standard_normal((n, *item_shape)) * 10
        out.append((a > 0) if dtype == "bool" else a.astype(dtype))
    return out


def on(array, place):
    """A numpy array moved to a (backend, device) place (a copy, never a view)."""
    backend, device = place
    array = np.array(array, copy=True)
    if backend == "numpy":
        return array
    return torch.from_numpy(array).to(device)


def host(a):
    """Any array (numpy or torch on any device) as a numpy array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:
            a = a.float()
        return a.numpy()
    return np.asarray(a)


def assert_same_segments(x, segments):
    """``x`` (ragged) holds exactly ``segments`` (the oracle list), in order."""
    assert len(x) == len(segments)
    for i, seg in enumerate(segments):
        got = host(x[i])
        assert got.shape == seg.shape, (i, got.shape, seg.shape)
        np.testing.assert_array_equal(got, seg)


@st.composite
def ragged_lists(draw, max_segments=8, max_length=6, item_shapes=((), (2,), (1, 3, 2))):
    """Hypothesis strategy: (lengths, item_shape, oracle list), empty segments included."""
    lengths = draw(st.lists(st.integers(0, max_length), min_size=0, max_size=max_segments))
    item_shape = draw(st.sampled_from(item_shapes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return lengths, item_shape, random_segments(rng, lengths, item_shape, "float64")
