"""Shared fixtures: backends x devices x dtypes, the per-segment oracle, hypothesis strategies.

The oracle is always a plain Python list of per-segment numpy arrays; every vectorised result
is compared with what a loop over that list gives.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

import raggedarray as ra
import raggedarray.map as mapping

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

# (backend, device) pairs every container test runs on; CUDA ones skip cleanly without CUDA.
PLACES = [
    pytest.param(("numpy", "cpu"), id="numpy"),
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=requires_cuda),
]

LENGTHS = [3, 0, 2, 5, 0, 1, 4]  # empty segments in the middle, a last one that is not empty

LENGTH_CASES = [
    pytest.param(LENGTHS, id="mixed"),
    pytest.param([], id="zero-segments"),
    pytest.param([0, 0, 0], id="all-empty"),
    pytest.param([0], id="one-empty"),
    pytest.param([6], id="one-segment"),
]

# (class, item_shape): scalar items, vector-ish items, images (C, H, W).
LAYOUTS = [
    pytest.param((ra.RaggedArray, ()), id="scalars"),
    pytest.param((ra.RaggedArray, (2, 3)), id="items2x3"),
    pytest.param((ra.RaggedImageBatch, (2, 3, 3)), id="images"),
]

# numpy dtype names; each has a torch twin via torch.from_numpy.
DTYPES = ["float32", "float64", "float16", "int64", "bool"]


TORCH_PLACES = [p for p in PLACES if p.values[0][0] == "torch"]


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


def oracle_offsets(segments):
    """Offsets of the oracle list, by a running sum over its segments."""
    offsets = [0]
    for seg in segments:
        offsets.append(offsets[-1] + seg.shape[0])
    return offsets


def flat(segments, item_shape, dtype):
    """All oracle segments end to end in one numpy buffer."""
    if not segments:
        return np.zeros((0, *item_shape), dtype=dtype)
    return np.concatenate(segments, axis=0)


def build(segments, place, *, item_shape=(), dtype="float32", cls=None):
    """A ragged array (``cls``, RaggedArray by default) on ``place`` holding the oracle list."""
    cls = ra.RaggedArray if cls is None else cls
    values = flat(segments, item_shape, dtype)
    return cls(on(values, place), on(np.array(oracle_offsets(segments), dtype=np.int64), place))


def oracle_and_x(place, dtype="float32", layout=None, lengths=None, seed=0):
    """A random oracle list and the ragged array holding it on ``place``.

    ``layout`` is a (class, item_shape) pair (scalar items of a RaggedArray by default);
    ``lengths`` defaults to ``LENGTHS``.
    """
    cls, item_shape = (ra.RaggedArray, ()) if layout is None else layout
    lengths = LENGTHS if lengths is None else lengths
    segments = random_segments(np.random.default_rng(seed), lengths, item_shape, dtype)
    return segments, build(segments, place, item_shape=item_shape, dtype=dtype, cls=cls)


def torch_dtype(np_dtype):
    """The torch twin of a numpy dtype."""
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


def numpy_dtype(dtype):
    """The numpy twin of a torch or numpy dtype."""
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype
    return np.dtype(dtype)


def different(a):
    """A numpy array of the same shape and dtype that differs from ``a`` everywhere."""
    return ~a if a.dtype == np.bool_ else a + 1


def write(view, new):
    """Write the numpy array ``new`` into ``view`` (numpy array or tensor) in place."""
    if isinstance(view, torch.Tensor):
        view.copy_(torch.from_numpy(np.ascontiguousarray(new)).to(view.device))
    else:
        view[...] = new


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


# ------------------------------------------------------------------ map's plans


def equal_chunks(n, size):
    """A chosen chunk size: as few chunks of at most ``size`` as cover n, sizes within one."""
    parts = -(-n // size)
    return [n // parts + (i < n % parts) for i in range(parts)]


def set_budgets(monkeypatch, *, call, chunk, grad, bound=math.inf):
    """``map``'s budgets, with no plan remembered: bytes of the largest tensor in one call, in
    each chunk when split, in each chunk under autograd; and the multiply-adds per byte from
    which chunks get the one-call budget (never, by default)."""
    monkeypatch.setattr(mapping, "CPU_CALL_BYTES", call)
    monkeypatch.setattr(mapping, "CPU_CHUNK_BYTES", chunk)
    monkeypatch.setattr(mapping, "CPU_CHUNK_BYTES_GRAD", grad)
    monkeypatch.setattr(mapping, "CPU_COMPUTE_BOUND", bound)
    monkeypatch.setattr(mapping, "_chosen", type(mapping._chosen)())
    monkeypatch.setattr(mapping, "_kept", {})
    monkeypatch.setattr(mapping, "_last", mapping._NO_MEMO)
