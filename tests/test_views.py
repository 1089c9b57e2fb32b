"""Indexing and views, checked against the oracle: a plain Python list of per-segment arrays.

``x[i]`` and ``x[a:b]`` must be views of the one values buffer (checked by writing through
them); index arrays, masks and other steps must give copies in the requested order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    LAYOUTS,
    LENGTH_CASES,
    LENGTHS,
    PLACES,
    TORCH_PLACES,
    assert_same_segments,
    build,
    different,
    host,
    on,
    oracle_and_x,
    ragged_lists,
    random_segments,
    write,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import raggedarray as ra

# ---------------------------------------------------------------------------- helpers


def starts_and_stops(segments):
    """Item range of every segment in the flat buffer, by a loop over the oracle."""
    bounds, start = [], 0
    for seg in segments:
        bounds.append((start, start + seg.shape[0]))
        start += seg.shape[0]
    return bounds


def root(a):
    while a.base is not None:
        a = a.base
    return a


def same_buffer(a, b):
    """Whether ``a`` is a view into the buffer of ``b`` (works for empty views too)."""
    if isinstance(a, torch.Tensor):
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    return root(a) is root(b)


def overlap(a, b):
    """Whether the memory of ``a`` and ``b`` overlaps."""
    if isinstance(a, torch.Tensor):
        sa, sb = a.untyped_storage(), b.untyped_storage()
        a0, a1 = sa.data_ptr(), sa.data_ptr() + sa.nbytes()
        b0, b1 = sb.data_ptr(), sb.data_ptr() + sb.nbytes()
        return a0 < a1 and b0 < b1 and a0 < b1 and b0 < a1
    return np.shares_memory(a, b)


def contiguous(a):
    return a.is_contiguous() if isinstance(a, torch.Tensor) else a.flags.c_contiguous


def assert_on_place(a, x):
    """``a`` is an array of the same backend (and device) as the values of ``x``."""
    if x.backend == "torch":
        assert isinstance(a, torch.Tensor)
        assert a.device == x.values.device
    else:
        assert isinstance(a, np.ndarray)


def key_to_list(key):
    """An index array, list or mask as a plain Python list."""
    return key.tolist() if hasattr(key, "tolist") else list(key)


def oracle_index(segments, key):
    """The oracle indexed by ``key`` (slice, index array or boolean mask), by a loop."""
    if isinstance(key, slice):
        return segments[key]
    keys = key_to_list(key)
    if keys and all(isinstance(k, bool) for k in keys):
        return [seg for seg, keep in zip(segments, keys, strict=True) if keep]
    return [segments[k] for k in keys]


def oracle_positions(m, key):
    """Segment numbers selected by ``key``, in order, by a loop (negatives resolved)."""
    return oracle_index(list(range(m)), key)


# ------------------------------------------------------------------------------ x[i]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_integer_index_is_the_segment(place, dtype, layout):
    segments, x = oracle_and_x(place, dtype, layout)
    m = len(segments)
    for i, seg in enumerate(segments):
        keys = [i, i - m, np.int64(i), np.int32(i - m), np.uint8(i), np.array(i), torch.tensor(i)]
        for key in keys:
            got = x[key]
            assert_on_place(got, x)
            assert tuple(got.shape) == seg.shape, (key, got.shape, seg.shape)
            np.testing.assert_array_equal(host(got), seg)
            assert same_buffer(got, x.values), key


@pytest.mark.parametrize("layout", LAYOUTS)
def test_integer_index_writes_through(place, dtype, layout):
    segments, x = oracle_and_x(place, dtype, layout)
    m = len(segments)
    expected = [seg.copy() for seg in segments]
    for i in (0, 3, -1, -4):
        view = x[i]
        new = different(host(view))
        write(view, new)
        expected[i % m] = new
    assert_same_segments(x, expected)
    np.testing.assert_array_equal(host(x.values), np.concatenate(expected))


# ---------------------------------------------------------------------------- x[a:b]

SLICES = [
    slice(None),
    slice(0, 7),
    slice(1, 4),
    slice(3, None, 1),
    slice(-3, None),
    slice(None, -2),
    slice(-100, 100),
    slice(2, 2),
    slice(0, 0),
    slice(5, 1),
    slice(7, 9),
    slice(-1, -5),
    slice(np.int64(1), np.int32(6)),
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_slice_is_a_ragged_view(place, dtype, layout):
    segments, _ = oracle_and_x(place, dtype, layout)
    for sl in SLICES:
        x = build(segments, place, item_shape=layout[1], dtype=dtype, cls=layout[0])
        y = x[sl]
        want = segments[sl]
        assert type(y) is type(x), sl
        assert y.item_shape == x.item_shape
        assert_same_segments(y, want)
        offsets = [0]
        for seg in want:
            offsets.append(offsets[-1] + seg.shape[0])
        np.testing.assert_array_equal(y.host_offsets, offsets)
        assert_on_place(y.offsets, x)
        np.testing.assert_array_equal(host(y.offsets), offsets)
        assert same_buffer(y.values, x.values), sl
        # Write through the view: the parent sees it in the right place.
        expected = [seg.copy() for seg in segments]
        new = [different(seg) for seg in want]
        if new:
            write(y.values, np.concatenate(new).reshape(tuple(y.values.shape)))
        for i, seg in zip(range(len(segments))[sl], new, strict=True):
            expected[i] = seg
        assert_same_segments(x, expected)


def test_slice_of_a_slice_is_still_a_view(place):
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (2,)))
    y = x[1:6][1:3]
    assert_same_segments(y, segments[1:6][1:3])
    assert same_buffer(y.values, x.values)
    assert y.host_offsets[0] == 0


# ------------------------------------------------------------------------- gathers


def gather_keys():
    """Index arrays, masks and stepped slices for the 7 segments of ``LENGTHS``."""
    mask = [True, False, True, True, False, False, True]
    return [
        [4, 0, 2],
        [2, 2, 0, -1, -7, 2],
        np.array([6, 1, 1], dtype=np.int64),
        np.array([3, -2], dtype=np.int32),
        np.array([0, 5, 5], dtype=np.uint8),
        torch.tensor([5, 0, 5]),
        torch.tensor([1, -3], dtype=torch.int32),
        [],
        np.array([], dtype=np.int64),
        torch.tensor([], dtype=torch.int64),
        mask,
        np.array(mask),
        torch.tensor(mask),
        [False] * 7,
        np.ones(7, dtype=bool),
        slice(None, None, 2),
        slice(None, None, -1),
        slice(5, 1, -2),
        slice(1, None, 3),
        slice(100, -100, -1),
        slice(-2, -100, -3),
        slice(3, 3, 2),
        slice(2, 6, 2),
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gather_returns_a_copy_in_the_requested_order(place, dtype, layout):
    segments, _ = oracle_and_x(place, dtype, layout)
    for key in gather_keys():
        x = build(segments, place, item_shape=layout[1], dtype=dtype, cls=layout[0])
        y = x[key]
        want = oracle_index(segments, key)
        assert type(y) is type(x), key
        assert y.item_shape == x.item_shape, key
        assert y.dtype == x.dtype
        assert tuple(y.values.shape) == (sum(s.shape[0] for s in want), *x.item_shape)
        assert_same_segments(y, want)
        assert y.host_offsets[0] == 0
        np.testing.assert_array_equal(host(y.offsets), y.host_offsets)
        assert_on_place(y.values, x)
        assert_on_place(y.offsets, x)
        # A new contiguous buffer of its own: no shared memory, writes stay there.
        assert contiguous(y.values), key
        assert not overlap(y.values, x.values), key
        if y.num_items:
            write(y.values, different(host(y.values)))
        assert_same_segments(x, segments)


@pytest.mark.parametrize("item_shape", [(), (2, 3)])
def test_gather_of_zero_segments_keeps_item_shape(place, item_shape):
    x = build([], place, item_shape=item_shape, dtype="float64")
    for key in ([], np.array([], dtype=np.int64), torch.tensor([], dtype=torch.int64)):
        y = x[key]
        assert len(y) == 0
        assert y.item_shape == item_shape
        assert tuple(y.values.shape) == (0, *item_shape)
        assert y.dtype == x.dtype
    for sl in (slice(None, None, -1), slice(None, None, 2), slice(None), slice(3, 1)):
        y = x[sl]
        assert len(y) == 0
        assert tuple(y.values.shape) == (0, *item_shape)


def test_gather_of_all_empty_segments(place):
    segments = random_segments(np.random.default_rng(1), [0, 0, 0, 0], (3,), "int64")
    x = build(segments, place, item_shape=(3,), dtype="int64")
    y = x[[3, 1, 1]]
    assert_same_segments(y, [segments[3], segments[1], segments[1]])
    assert tuple(y.values.shape) == (0, 3)
    np.testing.assert_array_equal(y.host_offsets, [0, 0, 0, 0])


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_gathers_and_slices_are_differentiable(place):
    rng = np.random.default_rng(2)
    segments = random_segments(rng, LENGTHS, (2,), "float64")
    bounds = starts_and_stops(segments)
    mask = [True, True, False, True, False, True, True]
    keys = [
        [3, 0, 3, 6, 1, 3],
        torch.tensor([-1, -1, 2]),
        mask,
        slice(None, None, -2),
        slice(1, 5),  # a view, differentiable as well
        slice(6, 0, -3),
    ]
    for key in keys:
        x = build(segments, place, item_shape=(2,), dtype="float64")
        x.values.requires_grad_(True)
        y = x[key]
        assert y.requires_grad
        w = rng.standard_normal(tuple(y.values.shape))
        (y.values * on(w, place)).sum().backward()
        expected = np.zeros((bounds[-1][1], 2))
        ws = np.split(w, np.cumsum([seg.shape[0] for seg in oracle_index(segments, key)])[:-1])
        for i, wk in zip(oracle_positions(len(segments), key), ws, strict=True):
            start, stop = bounds[i]
            expected[start:stop] += wk
        np.testing.assert_allclose(host(x.values.grad), expected, rtol=1e-12, atol=0)


def test_gather_passes_gradcheck():
    segments = random_segments(np.random.default_rng(3), [2, 0, 1, 3], (), "float64")
    x = build(segments, ("torch", "cpu"), dtype="float64")

    def f(values):
        return ra.RaggedArray(values, x.offsets)[[3, 1, 0, 3, 2]].values

    values = x.values.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (values,))


# ------------------------------------------------------- len, iter, unbind, to_list


@pytest.mark.parametrize("lengths", LENGTH_CASES)
def test_len_iter_unbind_to_list(place, lengths):
    segments = random_segments(np.random.default_rng(4), lengths, (2,), "float32")
    x = build(segments, place, item_shape=(2,))
    assert len(x) == len(segments)
    assert x.num_segments == len(segments)
    views = x.unbind()
    assert isinstance(views, tuple)
    listed = x.to_list()
    assert isinstance(listed, list)
    iterated = list(iter(x))
    for got in (views, listed, iterated):
        assert len(got) == len(segments)
        for view, seg in zip(got, segments, strict=True):
            assert_on_place(view, x)
            assert tuple(view.shape) == seg.shape
            np.testing.assert_array_equal(host(view), seg)
            assert same_buffer(view, x.values)
    # The unbound segments are views: writing into them writes into x.values.
    expected = []
    for view, seg in zip(views, segments, strict=True):
        new = different(seg)
        write(view, new)
        expected.append(new)
    assert_same_segments(x, expected)
    if expected:
        np.testing.assert_array_equal(host(x.values), np.concatenate(expected))


@pytest.mark.parametrize("lengths", [[2, 0, 3], [1], [0, 0]])
def test_views_of_values_autograd_records_take_writes_as_x_i_does(lengths):
    """split's views are one multi-output view: autograd refused writes into them, and a
    write through x[i] broke every one of them."""
    leaf = torch.arange(2.0 * sum(lengths)).reshape(-1, 2).requires_grad_()
    for views in ("unbind", "to_list", "iter"):
        x = ra.RaggedArray.from_lengths(leaf * 1, lengths)
        got = {"unbind": x.unbind, "to_list": x.to_list, "iter": lambda x=x: list(x)}[views]()
        assert [tuple(v.shape) for v in got] == [(n, 2) for n in lengths]
        if lengths[0]:
            x[0] = 5.0
        total = sum((v * 1).sum() for v in got)  # (after the write: read the new values)
        for v in got:
            v.mul_(2)  # writes through, as into x[i]
        want = leaf.detach() * 1
        want[: lengths[0]] = 5.0
        torch.testing.assert_close(x.values.detach(), want * 2)
        if sum(lengths):
            (grad,) = torch.autograd.grad(x.values.sum() + total, leaf)
            mask = torch.ones_like(leaf)
            mask[: lengths[0]] = 0
            torch.testing.assert_close(grad, 3 * mask)  # (1 from total, 2 from the values)


def test_unbind_views_of_image_batch(place):
    segments, x = oracle_and_x(place, "float32", (ra.RaggedImageBatch, (1, 4, 5)))
    for view, seg in zip(x.unbind(), segments, strict=True):
        assert tuple(view.shape) == seg.shape
        assert same_buffer(view, x.values)
    assert [v.shape[0] for v in x] == [seg.shape[0] for seg in segments]


# ------------------------------------------------------------------------ attributes


def read_only(a):
    assert isinstance(a, np.ndarray)
    assert not a.flags.writeable
    if a.size:
        with pytest.raises(ValueError):
            a[0] = 99


@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_length_attributes(place, lengths, layout):
    cls, item_shape = layout
    segments = random_segments(np.random.default_rng(5), lengths, item_shape, "float64")
    x = build(segments, place, item_shape=item_shape, dtype="float64", cls=cls)
    want_lengths = [seg.shape[0] for seg in segments]
    want_offsets = [0]
    for n in want_lengths:
        want_offsets.append(want_offsets[-1] + n)
    want_ids = [i for i, n in enumerate(want_lengths) for _ in range(n)]

    assert_on_place(x.lengths, x)
    assert host(x.lengths).dtype == np.int64
    np.testing.assert_array_equal(host(x.lengths), want_lengths)
    assert x.host_lengths.dtype == np.int64
    np.testing.assert_array_equal(x.host_lengths, want_lengths)
    read_only(x.host_lengths)
    assert x.host_offsets.dtype == np.int64
    np.testing.assert_array_equal(x.host_offsets, want_offsets)
    read_only(x.host_offsets)
    assert_on_place(x.offsets, x)
    np.testing.assert_array_equal(host(x.offsets), want_offsets)
    assert_on_place(x.segment_ids, x)
    assert host(x.segment_ids).dtype == np.int64
    np.testing.assert_array_equal(host(x.segment_ids).reshape(-1), want_ids)
    assert tuple(x.segment_ids.shape) == (len(want_ids),)
    assert x.max_length == max(want_lengths, default=0)
    assert x.min_length == min(want_lengths, default=0)
    assert isinstance(x.max_length, int)
    assert isinstance(x.min_length, int)
    assert x.num_segments == len(segments) == len(x)
    assert x.num_items == sum(want_lengths)
    assert x.item_shape == item_shape
    assert x.backend == place[0]
    assert x.device == torch.device(x.values.device if place[0] == "torch" else "cpu")
    if cls is ra.RaggedImageBatch:
        assert (x.channels, x.height, x.width) == item_shape


# ------------------------------------------------------------ property-based indexing


@st.composite
def index_keys(draw, m):
    """Any kind of segment index for ``m`` segments, in any container."""
    kind = draw(st.sampled_from(["int", "ints", "mask", "slice"]))
    if kind == "int" and m:
        return draw(st.integers(-m, m - 1))
    if kind == "slice":
        bound = st.none() | st.integers(-m - 3, m + 3)
        step = st.none() | st.integers(-4, 4).filter(bool)
        return slice(draw(bound), draw(bound), draw(step))
    if kind == "mask":
        keys = draw(st.lists(st.booleans(), min_size=m, max_size=m))
        dtype = bool
    else:
        keys = draw(st.lists(st.integers(-m, m - 1), max_size=10)) if m else []
        dtype = np.int64
    form = draw(st.sampled_from(["list", "numpy", "torch"]))
    if form == "list":
        return keys
    if form == "numpy":
        return np.array(keys, dtype=dtype)
    return torch.tensor(keys, dtype=torch.bool if dtype is bool else torch.int64)


@pytest.mark.parametrize("place", PLACES)
@settings(max_examples=50, deadline=None)
@given(data=ragged_lists(), choice=st.data())
def test_indexing_matches_the_oracle(place, data, choice):
    _, item_shape, segments = data
    x = build(segments, place, item_shape=item_shape, dtype="float64")
    key = choice.draw(index_keys(len(segments)), label="key")
    y = x[key]
    if isinstance(key, int):
        np.testing.assert_array_equal(host(y), segments[key])
        assert tuple(y.shape) == segments[key].shape
        return
    want = oracle_index(segments, key)
    assert_same_segments(y, want)
    assert y.item_shape == item_shape
    assert tuple(y.values.shape) == (sum(s.shape[0] for s in want), *item_shape)
    if isinstance(key, slice) and key.step in (None, 1):
        assert same_buffer(y.values, x.values)
    else:
        assert not overlap(y.values, x.values)
