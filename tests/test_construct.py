"""Every constructor against the oracle: a plain Python loop over per-segment numpy arrays.

Each test builds the oracle list with ``random_segments``, feeds a constructor the equivalent
input on a (backend, device) place, and checks every attribute and every segment against what
a loop over the oracle gives (``check_ragged``). Backends x devices x dtypes, with empty
segments, zero segments and zero items throughout.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from conftest import (
    PLACES,
    TORCH_PLACES,
    assert_same_segments,
    flat,
    host,
    numpy_dtype,
    on,
    oracle_offsets,
    ragged_lists,
    random_segments,
    requires_cuda,
    torch_dtype,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import raggedarray as ra

# (class, item_shape) pairs every constructor is checked with.
KINDS = [
    pytest.param((ra.RaggedArray, ()), id="scalar-items"),
    pytest.param((ra.RaggedArray, (3,)), id="vector-items"),
    pytest.param((ra.RaggedImageBatch, (2, 3, 4)), id="images"),
]

# Segment lengths: leading, inner and trailing empty segments; only empty ones; none at all.
LENGTHS = [
    pytest.param([0, 3, 0, 1, 4, 0, 2, 0], id="mixed"),
    pytest.param([0, 0], id="all-empty"),
    pytest.param([], id="no-segments"),
    pytest.param([5], id="one"),
]

FEW = settings(max_examples=50, deadline=None)

# Zero segments, and segments with zero items, always tried besides what hypothesis draws.
NO_SEGMENTS = ([], (2,), [])
NO_ITEMS = ([0, 0], (1, 3, 2), [np.zeros((0, 1, 3, 2))] * 2)


@pytest.fixture(params=KINDS)
def kind(request):
    """A (class, item_shape) pair."""
    return request.param


@pytest.fixture(params=LENGTHS)
def lengths(request):
    """Segment lengths of the oracle."""
    return request.param


@pytest.fixture(params=TORCH_PLACES)
def torch_place(request):
    """A (torch, device) pair."""
    return request.param


# ----------------------------------------------------------------------------- oracle


def oracle_segment_ids(segments):
    ids = []
    for i, seg in enumerate(segments):
        ids.extend([i] * seg.shape[0])
    return ids


def assert_dtype(x, np_dtype):
    """``x.dtype`` is ``np_dtype`` (numpy) or its torch twin (torch)."""
    if x.backend == "numpy":
        assert x.dtype == np.dtype(np_dtype), (x.dtype, np_dtype)
    else:
        assert x.dtype == torch_dtype(np_dtype), (x.dtype, np_dtype)


def address(a):
    if isinstance(a, torch.Tensor):
        return a.data_ptr()
    return a.__array_interface__["data"][0]


def row_bytes(a):
    if isinstance(a, torch.Tensor):
        return a.stride(0) * a.element_size()
    return a.strides[0]


def assert_is_row_view(segment, values, start):
    """``segment`` is a view into ``values`` starting at row ``start`` (no copy)."""
    assert type(segment) is type(values)
    if segment.shape[0] == 0:  # numpy does not offset the pointer of an empty slice
        assert segment._is_view() if isinstance(segment, torch.Tensor) else segment.base is not None
        return
    assert address(segment) == address(values) + start * row_bytes(values)


def shares_memory(a, b):
    """Whether two arrays (numpy or torch, any device) overlap in memory."""
    tensors = [t for t in (a, b) if isinstance(t, torch.Tensor)]
    if any(t.device.type != "cpu" for t in tensors):
        if len(tensors) < 2 or a.device != b.device or a.numel() == 0 or b.numel() == 0:
            return False
        a0, b0 = a.untyped_storage().data_ptr(), b.untyped_storage().data_ptr()
        a1 = a0 + a.untyped_storage().nbytes()
        b1 = b0 + b.untyped_storage().nbytes()
        return a0 < b1 and b0 < a1  # storages overlap (coarse, but never misses sharing)
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    return bool(np.shares_memory(a, b))


def is_contiguous(a):
    if isinstance(a, torch.Tensor):
        return a.is_contiguous()
    return a.flags.c_contiguous


def check_ragged(x, segments, place, item_shape, cls=None):
    """Every attribute of ``x`` against a loop over the oracle ``segments``."""
    backend, device = place
    offsets = oracle_offsets(segments)
    lengths = [seg.shape[0] for seg in segments]
    ids = oracle_segment_ids(segments)
    if cls is not None:
        assert type(x) is cls
    assert x.backend == backend
    array_type = np.ndarray if backend == "numpy" else torch.Tensor
    assert isinstance(x.values, array_type)
    assert x.device.type == torch.device(device).type
    if backend == "torch":
        assert x.device == x.values.device
    # offsets, lengths and segment ids: int64 on the values' backend and device
    for name, expected in (("offsets", offsets), ("lengths", lengths), ("segment_ids", ids)):
        got = getattr(x, name)
        assert isinstance(got, array_type), name
        if backend == "torch":
            assert got.dtype == torch.int64, name
            assert got.device == x.values.device, name
        else:
            assert got.dtype == np.int64, name
        assert got.shape == (len(expected),), name
        np.testing.assert_array_equal(host(got), np.asarray(expected, dtype=np.int64), name)
    # host copies: numpy int64, read-only
    for name, expected in (("host_offsets", offsets), ("host_lengths", lengths)):
        got = getattr(x, name)
        assert isinstance(got, np.ndarray) and got.dtype == np.int64, name
        assert not got.flags.writeable, name
        np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.int64), name)
    assert len(x) == x.num_segments == len(segments)
    assert x.num_items == offsets[-1] == x.values.shape[0]
    assert x.item_shape == tuple(item_shape)
    assert x.values.shape == (offsets[-1], *item_shape)
    assert x.max_length == max(lengths, default=0)
    assert x.min_length == min(lengths, default=0)
    assert x.dtype == x.values.dtype
    if isinstance(x, ra.RaggedImageBatch):
        assert (x.channels, x.height, x.width) == tuple(item_shape)
    assert_same_segments(x, segments)
    for i in range(len(segments)):
        assert_is_row_view(x[i], x.values, offsets[i])


def make_segments(lengths, item_shape=(), dtype="float32", seed=0):
    return random_segments(np.random.default_rng(seed), lengths, item_shape, dtype)


# ------------------------------------------------------------ RaggedArray(values, offsets)


@pytest.mark.parametrize("offsets_kind", ["int64", "int32", "list"])
def test_constructor_is_zero_copy(place, dtype, kind, lengths, offsets_kind):
    cls, item_shape = kind
    segments = make_segments(lengths, item_shape, dtype)
    values = on(flat(segments, item_shape, dtype), place)
    offsets = oracle_offsets(segments)
    if offsets_kind == "int64":
        offsets = on(np.array(offsets, dtype=np.int64), place)
    elif offsets_kind == "int32":
        offsets = on(np.array(offsets, dtype=np.int32), place)

    x = cls(values, offsets)

    assert x.values is values
    check_ragged(x, segments, place, item_shape, cls)
    assert_dtype(x, dtype)


def test_constructor_writes_through(place):
    segments = make_segments([2, 0, 3], (2,), "float64")
    values = on(flat(segments, (2,), "float64"), place)
    x = ra.RaggedArray(values, [0, 2, 2, 5])
    values[3] = -1.0
    x[2][0] = 7.0
    for i, seg in enumerate(segments):
        expected = seg.copy()
        if i == 2:
            expected[1] = -1.0
            expected[0] = 7.0
        np.testing.assert_array_equal(host(x[i]), expected)
    np.testing.assert_array_equal(host(values[2]), np.full(2, 7.0))


# ------------------------------------------------------------------------- from_list


def strided(a, place):
    """``a`` on ``place`` as a non-contiguous view (every other row of a doubled buffer)."""
    doubled = on(np.repeat(a, 2, axis=0), place)
    view = doubled[::2]
    assert a.shape[0] < 2 or not is_contiguous(view)
    return view


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_from_list(place, dtype, kind, lengths, layout):
    cls, item_shape = kind
    segments = make_segments(lengths, item_shape, dtype)
    if layout == "contiguous":
        items = [on(seg, place) for seg in segments]
    else:
        items = [strided(seg, place) for seg in segments]

    x = cls.from_list(items, item_shape=item_shape if not segments else None)

    # With zero segments there is no item to take the backend from: numpy by default.
    check_ragged(x, segments, place if segments else ("numpy", "cpu"), item_shape, cls)
    if segments:
        assert_dtype(x, dtype)
    assert is_contiguous(x.values)
    for item in items:
        assert not shares_memory(x.values, item)


def test_from_list_result_is_a_copy(place):
    segments = make_segments([3, 2], (2,), "float64")
    items = [on(seg, place) for seg in segments]
    x = ra.RaggedArray.from_list(items)
    x.values[...] = 0
    for item, seg in zip(items, segments, strict=True):
        np.testing.assert_array_equal(host(item), seg)


def test_from_list_single_segment_is_a_copy(place):
    (seg,) = make_segments([4], (2,), "float32")
    item = on(seg, place)
    x = ra.RaggedArray.from_list([item])
    assert x.values is not item
    assert not shares_memory(x.values, item)
    check_ragged(x, [seg], place, (2,))


def test_from_list_accepts_a_tuple_and_a_generator(place):
    segments = make_segments([2, 0, 3], (2,), "float32")
    a = ra.RaggedArray.from_list(tuple(on(s, place) for s in segments))
    b = ra.RaggedArray.from_list(on(s, place) for s in segments)
    check_ragged(a, segments, place, (2,))
    check_ragged(b, segments, place, (2,))


def test_cat_and_from_list_take_arrays_in_order_and_let_a_generators_errors_through():
    xs = [ra.RaggedArray.from_lengths(np.full(1, float(i)), [1]) for i in range(6)]
    # a set's order changes between runs; a dict was read as its keys
    for arrays in (set(xs), {"a": xs[0]}, frozenset(xs)):
        with pytest.raises(TypeError, match=r"^cat: arrays must be .*, in order; got a "):
            ra.cat(arrays)
    with pytest.raises(TypeError, match=r"^RaggedArray\.from_list: arrays must .*, in order"):
        ra.RaggedArray.from_list({np.zeros(1).tobytes(): np.zeros(1)})

    def failing(first):
        yield first
        raise TypeError("the user's own bug")

    # was "arrays must be a list ...; got generator", the user's error dropped
    with pytest.raises(TypeError, match=r"^the user's own bug$"):
        ra.cat(failing(xs[0]))
    with pytest.raises(TypeError, match=r"^the user's own bug$"):
        ra.RaggedArray.from_list(failing(np.zeros(2)))


def test_a_strided_nested_tensor_is_refused_by_the_package():
    """Writing the refusal read the shape of a strided nested tensor, which torch refuses
    ("Internal error: NestedTensorImpl doesn't support sizes")."""
    with warnings.catch_warnings():  # torch's note that its strided layout is a prototype
        warnings.simplefilter("ignore", UserWarning)
        nested = torch.nested.nested_tensor([torch.tensor([1.0, 2.0]), torch.tensor([3.0])])
    calls = {
        "RaggedArray.from_list": lambda: ra.RaggedArray.from_list(nested),
        "RaggedImageBatch.from_list": lambda: ra.RaggedImageBatch.from_list(nested),
        "cat": lambda: ra.cat(nested),
        "RaggedArray.from_awkward": lambda: ra.RaggedArray.from_awkward(nested),
        "RaggedArray.from_padded": lambda: ra.RaggedArray.from_padded(np.zeros((2, 2)), nested),
        "RaggedDataset": lambda: ra.data.RaggedDataset(nested),
        "SegmentPool": lambda: ra.nn.SegmentPool("sum")(nested),
    }
    for where, call in calls.items():
        with pytest.raises(TypeError, match=rf"^{where}: .*nested"):
            call()


def test_from_list_mixed_numpy_and_torch_gives_torch(dtype, kind):
    cls, item_shape = kind
    segments = make_segments([2, 0, 3, 1, 0], item_shape, dtype)
    items = [
        seg.copy() if i % 2 else torch.from_numpy(seg.copy()) for i, seg in enumerate(segments)
    ]

    x = cls.from_list(items)

    check_ragged(x, segments, ("torch", "cpu"), item_shape, cls)
    assert_dtype(x, dtype)
    for item in items:
        assert not shares_memory(x.values, item)


def test_from_list_numpy_first_then_torch_gives_torch():
    segments = make_segments([2, 3], (), "float64")
    x = ra.RaggedArray.from_list([segments[0], torch.from_numpy(segments[1].copy())])
    check_ragged(x, segments, ("torch", "cpu"), ())


@requires_cuda
def test_from_list_mixed_numpy_and_cuda_with_device(dtype):
    segments = make_segments([2, 0, 3, 1], (3,), dtype)
    items = [seg if i % 2 else on(seg, ("torch", "cuda")) for i, seg in enumerate(segments)]
    x = ra.RaggedArray.from_list(items, device="cuda")
    check_ragged(x, segments, ("torch", "cuda"), (3,))
    assert_dtype(x, dtype)


@pytest.mark.parametrize("dtype", ["float64", "int64", "bool", "float32"])
def test_from_list_nested_python_lists(dtype, kind):
    cls, item_shape = kind
    segments = make_segments([2, 0, 3, 1], item_shape, dtype)
    # Empty segments cannot state their item shape as a list: they stay numpy arrays.
    items = [seg.tolist() if seg.shape[0] else seg for seg in segments]
    expected = np.result_type(*(np.asarray(item).dtype for item in items))

    x = cls.from_list(items)

    check_ragged(x, segments, ("numpy", "cpu"), item_shape, cls)
    assert x.dtype == expected


def test_from_list_nested_lists_with_a_tensor_gives_torch():
    segments = make_segments([2, 3], (2,), "float64")
    x = ra.RaggedArray.from_list([segments[0].tolist(), torch.from_numpy(segments[1].copy())])
    check_ragged(x, segments, ("torch", "cpu"), (2,))
    assert x.dtype == torch.float64


def test_from_list_only_empty_segments(place, dtype, kind):
    cls, item_shape = kind
    segments = make_segments([0, 0, 0], item_shape, dtype)
    x = cls.from_list([on(seg, place) for seg in segments])
    check_ragged(x, segments, place, item_shape, cls)
    assert_dtype(x, dtype)


@pytest.mark.parametrize(
    ("cls", "default_shape"),
    [(ra.RaggedArray, ()), (ra.RaggedImageBatch, (1, 0, 0))],
    ids=["array", "images"],
)
def test_from_list_zero_segments_default_item_shape(cls, default_shape):
    x = cls.from_list([])
    check_ragged(x, [], ("numpy", "cpu"), default_shape, cls)


@pytest.mark.parametrize("device", [None, "cpu"])
@pytest.mark.parametrize("target", [None, np.float64, torch.int64, "bool"])
def test_from_list_zero_segments_item_shape_dtype_device(kind, device, target):
    cls, item_shape = kind
    x = cls.from_list([], item_shape=item_shape, dtype=target, device=device)
    place = ("numpy", "cpu") if device is None else ("torch", device)
    check_ragged(x, [], place, item_shape, cls)
    if target is not None:
        assert_dtype(x, numpy_dtype(target))


def test_from_list_item_shape_keyword_with_matching_arrays(place, kind):
    cls, item_shape = kind
    segments = make_segments([1, 0, 2], item_shape, "float32")
    x = cls.from_list([on(seg, place) for seg in segments], item_shape=item_shape)
    check_ragged(x, segments, place, item_shape, cls)


PROMOTIONS = [
    ("int64", "float32"),
    ("float16", "int64"),
    ("bool", "float16"),
    ("int32", "int64"),
    ("float32", "float64"),
    ("bool", "int64"),
    ("uint8", "int8"),
]


def promotion_segments(first, second, item_shape=(2,)):
    rng = np.random.default_rng(1)
    segments = []
    for i, n in enumerate([2, 0, 3, 1]):
        dtype = first if i % 2 == 0 else second
        segments += random_segments(rng, [n], item_shape, dtype)
    return segments


@pytest.mark.parametrize(("first", "second"), PROMOTIONS)
def test_from_list_promotes_numpy_items_like_numpy(first, second):
    segments = promotion_segments(first, second)
    expected = functools.reduce(np.promote_types, [seg.dtype for seg in segments])
    x = ra.RaggedArray.from_list(segments)
    assert x.dtype == expected
    check_ragged(x, [seg.astype(expected) for seg in segments], ("numpy", "cpu"), (2,))


@pytest.mark.parametrize(("first", "second"), PROMOTIONS)
def test_from_list_promotes_torch_items_like_torch(torch_place, first, second):
    segments = promotion_segments(first, second)
    expected = functools.reduce(torch.promote_types, [torch_dtype(s.dtype) for s in segments])
    x = ra.RaggedArray.from_list([on(seg, torch_place) for seg in segments])
    assert x.dtype == expected
    oracle = [seg.astype(numpy_dtype(expected)) for seg in segments]
    check_ragged(x, oracle, torch_place, (2,))


@pytest.mark.parametrize(("first", "second"), PROMOTIONS)
@pytest.mark.parametrize("torch_first", [True, False], ids=["torch-first", "numpy-first"])
def test_from_list_promotes_mixed_items_like_torch(first, second, torch_first):
    segments = promotion_segments(first, second)
    items = [
        torch.from_numpy(seg.copy()) if (i % 2 == 0) == torch_first else seg
        for i, seg in enumerate(segments)
    ]
    expected = functools.reduce(torch.promote_types, [torch_dtype(s.dtype) for s in segments])
    x = ra.RaggedArray.from_list(items)
    assert x.dtype == expected
    oracle = [seg.astype(numpy_dtype(expected)) for seg in segments]
    check_ragged(x, oracle, ("torch", "cpu"), (2,))


@pytest.mark.parametrize("dtype", ["int32", "uint8", "float16", "bool", "int64"])
@pytest.mark.parametrize("place", [*PLACES, "lists"])
def test_empty_python_lists_take_no_part_in_promotion(place, dtype):
    """np.asarray([]) is float64, a dtype nobody chose: [int32 tensor, []] was float64
    (torch.cat with an empty int32 tensor stays int32)."""
    typed = np.arange(3).astype(dtype)
    first = typed.tolist() if place == "lists" else on(typed, place)
    for items in ([first, []], [[], first, []]):
        x = ra.RaggedArray.from_list(items)
        want = np.asarray(typed.tolist()).dtype if place == "lists" else first.dtype
        assert x.dtype == want
        assert [host(s).tolist() for s in x] == [host(np.asarray(a)).tolist() for a in items]
        assert x.backend == ("numpy" if place == "lists" else place[0])
    x = ra.RaggedArray.from_list([[], []])  # nothing to follow: numpy's default
    assert x.dtype == np.float64 and x.num_items == 0


@pytest.mark.parametrize("source", ["float64", "float16", "int64", "bool"])
@pytest.mark.parametrize(
    "target",
    [np.float32, np.dtype("int64"), "float16", torch.float64, torch.int32, torch.bool],
    ids=[
        "np.float32",
        "np.dtype-int64",
        "str-float16",
        "torch.float64",
        "torch.int32",
        "torch.bool",
    ],
)
def test_from_list_dtype_override(place, source, target):
    segments = make_segments([2, 0, 3, 1], (2,), source)
    x = ra.RaggedArray.from_list([on(seg, place) for seg in segments], dtype=target)
    assert_dtype(x, numpy_dtype(target))
    oracle = [seg.astype(numpy_dtype(target)) for seg in segments]
    check_ragged(x, oracle, place, (2,))


WIDE_UNSIGNED_MIXES = [
    ("uint16", "uint8"),
    ("uint8", "uint16"),
    ("uint16", "int8"),
    ("uint32", "int16"),
    ("uint64", "int64"),
    ("uint16", "float32"),
    ("uint32", "uint64"),
]


@pytest.mark.parametrize("first, second", WIDE_UNSIGNED_MIXES)
def test_wide_unsigned_beside_other_dtypes_promote_like_numpy(first, second):
    # torch promotes no uint16-64 with another dtype; from_list and cat take numpy's rule,
    # which from_list of the same numpy arrays follows
    segments = [
        np.array([[np.iinfo(first).max if first[0] == "u" else 1]], dtype=first),
        np.array([[2], [3]], dtype=second),
    ]
    want = np.concatenate(segments)  # numpy's promotion, the values of the numpy path
    tensors = [torch.from_numpy(s) for s in segments]
    for x in (
        ra.RaggedArray.from_list(tensors),
        ra.RaggedArray.from_list(segments, device="cpu"),
        ra.cat([ra.RaggedArray.from_list([t]) for t in tensors]),
    ):
        assert x.dtype == torch_dtype(want.dtype)
        np.testing.assert_array_equal(host(x.values), want)
        np.testing.assert_array_equal(x.host_offsets, [0, 1, 3])
    y = ra.RaggedArray.from_list(tensors, dtype=torch.float64)
    np.testing.assert_array_equal(host(y.values), want.astype(np.float64))


def test_buffers_built_from_channels_last_images_are_contiguous():
    image = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    last = image.to(memory_format=torch.channels_last)
    x = ra.RaggedImageBatch.from_lengths(last, [2])
    for y in (ra.RaggedImageBatch.from_list([last, last]), ra.cat([x, x]), x.clone()):
        assert y.values.is_contiguous()
        assert torch.equal(y[0], image)


@pytest.mark.parametrize("target", [None, np.float32, torch.int64])
def test_from_list_device_cpu_turns_numpy_into_torch(dtype, target):
    segments = make_segments([2, 0, 3], (3,), dtype)
    x = ra.RaggedArray.from_list(segments, device="cpu", dtype=target)
    expected = np.dtype(dtype) if target is None else numpy_dtype(target)
    assert_dtype(x, expected)
    check_ragged(x, [seg.astype(expected) for seg in segments], ("torch", "cpu"), (3,))
    for seg in segments:
        assert not shares_memory(x.values, seg)


@requires_cuda
def test_from_list_device_cuda_moves_numpy_and_cpu_tensors():
    segments = make_segments([2, 0, 3], (3,), "float32")
    items = [segments[0], torch.from_numpy(segments[1]), segments[2]]
    x = ra.RaggedArray.from_list(items, device="cuda")
    check_ragged(x, segments, ("torch", "cuda"), (3,))


def grad_weights(x):
    gen = torch.Generator().manual_seed(3)
    return torch.randn(x.values.shape, generator=gen, dtype=x.values.dtype).to(x.values.device)


@pytest.mark.parametrize("variant", ["torch-items", "with-numpy-item", "dtype-override"])
def test_from_list_is_differentiable(torch_place, variant):
    _, device = torch_place
    segments = make_segments([2, 0, 3, 1, 0], (2,), "float64")
    leaves = [torch.tensor(seg, device=device, requires_grad=True) for seg in segments]
    items = list(leaves)
    kwargs = {}
    if variant == "with-numpy-item":
        items.insert(2, np.ones((2, 2)))
        kwargs["device"] = device
    if variant == "dtype-override":
        kwargs["dtype"] = torch.float32

    x = ra.RaggedArray.from_list(items, **kwargs)
    assert x.requires_grad
    assert x.values.requires_grad
    weights = grad_weights(x)
    (x.values * weights).sum().backward()

    offsets = oracle_offsets([np.asarray(host(item)) for item in items])
    for k, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            continue
        expected = weights[offsets[k] : offsets[k + 1]].to(torch.float64)
        assert item.grad is not None, k
        assert item.grad.shape == item.shape
        torch.testing.assert_close(item.grad, expected, rtol=0, atol=0)


def test_from_list_images_single_channel(place, dtype):
    segments = make_segments([2, 0, 3, 1], (5, 4), dtype)  # (n_i, H, W)
    x = ra.RaggedImageBatch.from_list([on(seg, place) for seg in segments])
    oracle = [seg[:, None] for seg in segments]
    check_ragged(x, oracle, place, (1, 5, 4), ra.RaggedImageBatch)
    assert x.channels == 1


def test_from_list_images_mixing_both_forms(place):
    segments = make_segments([2, 0, 3, 1, 2], (5, 4), "float32")  # (n_i, H, W)
    items = [on(seg if i % 2 else seg[:, None], place) for i, seg in enumerate(segments)]
    x = ra.RaggedImageBatch.from_list(items)
    oracle = [seg[:, None] for seg in segments]
    check_ragged(x, oracle, place, (1, 5, 4), ra.RaggedImageBatch)


def test_from_list_images_keep_channels(place):
    segments = make_segments([2, 1], (3, 5, 4), "float32")
    x = ra.RaggedImageBatch.from_list([on(seg, place) for seg in segments])
    check_ragged(x, segments, place, (3, 5, 4), ra.RaggedImageBatch)


# ---------------------------------------------------------------------- from_lengths


def lengths_as(lengths, how, place):
    if how == "list":
        return list(lengths)
    if how == "numpy":
        return np.array(lengths, dtype=np.int64)
    if how == "numpy-int32":
        return np.array(lengths, dtype=np.int32)
    if how == "torch-cpu":
        return torch.tensor(lengths, dtype=torch.int64)
    return on(np.array(lengths, dtype=np.int64), place)  # same place as values


LENGTH_KINDS = ["list", "numpy", "numpy-int32", "torch-cpu", "same-place"]


def test_from_lengths_is_zero_copy(place, dtype, kind, lengths):
    cls, item_shape = kind
    segments = make_segments(lengths, item_shape, dtype)
    values = on(flat(segments, item_shape, dtype), place)
    x = cls.from_lengths(values, lengths_as(lengths, "same-place", place))
    assert x.values is values
    check_ragged(x, segments, place, item_shape, cls)
    assert_dtype(x, dtype)


@pytest.mark.parametrize("how", LENGTH_KINDS)
def test_from_lengths_accepts_lists_arrays_and_tensors(place, lengths, how):
    segments = make_segments(lengths, (2,), "float32")
    values = on(flat(segments, (2,), "float32"), place)
    x = ra.RaggedArray.from_lengths(values, lengths_as(lengths, how, place))
    assert x.values is values
    check_ragged(x, segments, place, (2,))


# ------------------------------------------------------------------- from_segment_ids


@pytest.mark.parametrize("how", ["list", "numpy-int32", "torch-cpu", "same-place"])
@pytest.mark.parametrize("give_count", [True, False], ids=["num_segments", "inferred"])
def test_from_segment_ids(place, kind, lengths, how, give_count):
    cls, item_shape = kind
    segments = make_segments(lengths, item_shape, "float32")
    values = on(flat(segments, item_shape, "float32"), place)
    ids = lengths_as(oracle_segment_ids(segments), how, place)
    if give_count:
        x = cls.from_segment_ids(values, ids, num_segments=len(segments))
        expected = segments
    else:
        x = cls.from_segment_ids(values, ids)
        # Without num_segments, trailing empty segments cannot be known: drop them.
        expected = list(segments)
        while expected and expected[-1].shape[0] == 0:
            expected.pop()
    assert x.values is values
    check_ragged(x, expected, place, item_shape, cls)


def test_from_segment_ids_leading_empty_segments(place):
    values = on(np.arange(5.0), place)
    x = ra.RaggedArray.from_segment_ids(values, [2, 2, 3, 5, 5])
    segments = [
        np.arange(5.0)[[i for i, s in enumerate([2, 2, 3, 5, 5]) if s == k]] for k in range(6)
    ]
    check_ragged(x, segments, place, ())


@pytest.mark.parametrize("num_segments", [None, 0, 3])
def test_from_segment_ids_no_items(place, num_segments):
    values = on(np.zeros((0, 2), dtype=np.float32), place)
    x = ra.RaggedArray.from_segment_ids(values, [], num_segments=num_segments)
    segments = [np.zeros((0, 2), dtype=np.float32)] * (num_segments or 0)
    check_ragged(x, segments, place, (2,))


def test_from_segment_ids_numpy_integer_num_segments():
    values = np.arange(3.0)
    x = ra.RaggedArray.from_segment_ids(values, [0, 0, 1], num_segments=np.int64(4))
    check_ragged(x, [values[:2], values[2:], values[:0], values[:0]], ("numpy", "cpu"), ())


# ------------------------------------------------------------------------ from_padded


def padded_oracle(segments, item_shape, dtype, n_max, fill):
    """``(m, n_max, *item_shape)`` array, built row by row; padding set to ``fill``."""
    padded = np.full((len(segments), n_max, *item_shape), fill, dtype=dtype)
    for i, seg in enumerate(segments):
        padded[i, : seg.shape[0]] = seg
    return padded


def test_from_padded(place, dtype, kind, lengths):
    cls, item_shape = kind
    segments = make_segments(lengths, item_shape, dtype)
    n_max = max(lengths, default=0) + 1
    padded = on(padded_oracle(segments, item_shape, dtype, n_max, fill=1), place)
    x = cls.from_padded(padded, lengths_as(lengths, "same-place", place))
    check_ragged(x, segments, place, item_shape, cls)
    assert_dtype(x, dtype)
    assert is_contiguous(x.values)
    assert not shares_memory(x.values, padded)


@pytest.mark.parametrize("how", LENGTH_KINDS)
@pytest.mark.parametrize("extra", [0, 2], ids=["tight", "wide"])
def test_from_padded_lengths_kinds_and_widths(place, lengths, how, extra):
    segments = make_segments(lengths, (2,), "float64")
    n_max = max(lengths, default=0) + extra
    padded = on(padded_oracle(segments, (2,), "float64", n_max, fill=np.nan), place)
    x = ra.RaggedArray.from_padded(padded, lengths_as(lengths, how, place))
    check_ragged(x, segments, place, (2,))


def test_from_padded_is_differentiable(torch_place):
    _, device = torch_place
    lengths = [2, 0, 4, 1, 0]
    segments = make_segments(lengths, (3,), "float64")
    padded = torch.tensor(
        padded_oracle(segments, (3,), "float64", 5, fill=0.0), device=device, requires_grad=True
    )
    x = ra.RaggedArray.from_padded(padded, lengths)
    assert x.requires_grad
    weights = grad_weights(x)
    (x.values * weights).sum().backward()

    offsets = oracle_offsets(segments)
    expected = torch.zeros_like(padded)
    for i, n in enumerate(lengths):
        expected[i, :n] = weights[offsets[i] : offsets[i + 1]]
    torch.testing.assert_close(padded.grad, expected, rtol=0, atol=0)


# ------------------------------------------------------------ hypothesis properties


def edge_examples(*extra):
    """Besides what hypothesis draws, always try zero segments and all-empty segments on
    both backends (``extra`` fills the test's remaining arguments)."""

    def decorate(test):
        for case in (NO_SEGMENTS, NO_ITEMS):
            for backend in ("numpy", "torch"):
                test = example(case, backend, *extra)(test)
        return test

    return decorate


@FEW
@given(ragged_lists(), st.sampled_from(["numpy", "torch"]))
@edge_examples()
def test_property_list_round_trip(case, backend):
    _, item_shape, segments = case
    place = (backend, "cpu")
    items = [on(seg, place) for seg in segments]
    # With zero segments only device= says that the result is torch.
    device = "cpu" if backend == "torch" else None
    x = ra.RaggedArray.from_list(items, item_shape=item_shape, device=device)
    check_ragged(x, segments, place, item_shape)
    back = x.to_list()
    assert len(back) == len(segments)
    for i, (got, seg) in enumerate(zip(back, segments, strict=True)):
        assert_is_row_view(got, x.values, x.host_offsets[i])
        assert tuple(got.shape) == seg.shape
        np.testing.assert_array_equal(host(got), seg)
    again = ra.RaggedArray.from_list(back, item_shape=item_shape, device=device)
    check_ragged(again, segments, place, item_shape)


@FEW
@given(ragged_lists(), st.sampled_from(["numpy", "torch"]), st.integers(0, 2))
@edge_examples(1)
def test_property_padded_round_trip(case, backend, extra):
    lengths, item_shape, segments = case
    place = (backend, "cpu")
    device = "cpu" if backend == "torch" else None
    items = [on(s, place) for s in segments]
    x = ra.RaggedArray.from_list(items, item_shape=item_shape, device=device)
    n_max = max(lengths, default=0) + extra
    padded, mask = x.to_padded(fill=-3.0, max_length=n_max)

    expected = padded_oracle(segments, item_shape, "float64", n_max, fill=-3.0)
    expected_mask = np.zeros((len(lengths), n_max), dtype=bool)
    for i, n in enumerate(lengths):
        expected_mask[i, :n] = True
    assert tuple(padded.shape) == expected.shape
    np.testing.assert_array_equal(host(padded), expected)
    np.testing.assert_array_equal(host(mask), expected_mask)

    y = ra.RaggedArray.from_padded(padded, x.lengths)
    check_ragged(y, segments, place, item_shape)
    padded_again, mask_again = y.to_padded(fill=-3.0, max_length=n_max)
    np.testing.assert_array_equal(host(padded_again), expected)
    np.testing.assert_array_equal(host(mask_again), expected_mask)


@FEW
@given(ragged_lists(), st.sampled_from(["numpy", "torch"]))
@edge_examples()
def test_property_lengths_offsets_segment_ids_agree(case, backend):
    lengths, item_shape, segments = case
    place = (backend, "cpu")
    values = on(flat(segments, item_shape, "float64"), place)
    offsets = oracle_offsets(segments)
    ids = oracle_segment_ids(segments)

    built = [
        ra.RaggedArray(values, offsets),
        ra.RaggedArray.from_lengths(values, lengths),
        ra.RaggedArray.from_segment_ids(values, ids, num_segments=len(lengths)),
    ]
    for x in built:
        assert x.values is values
        check_ragged(x, segments, place, item_shape)
        # Each attribute rebuilds the same structure through the other constructors.
        for y in (
            ra.RaggedArray(x.values, x.offsets),
            ra.RaggedArray.from_lengths(x.values, x.lengths),
            ra.RaggedArray.from_segment_ids(x.values, x.segment_ids, num_segments=len(x)),
        ):
            check_ragged(y, segments, place, item_shape)
        # Every item's segment id points at the segment whose offsets bracket it.
        seg_ids = host(x.segment_ids)
        host_offsets = x.host_offsets
        for j, s in enumerate(seg_ids):
            assert host_offsets[s] <= j < host_offsets[s + 1]


@requires_cuda
def test_cuda_offsets_stay_on_device():
    segments = make_segments([2, 0, 3], (2,), "float32")
    values = on(flat(segments, (2,), "float32"), ("torch", "cuda"))
    for x in (
        ra.RaggedArray(values, [0, 2, 2, 5]),
        ra.RaggedArray.from_lengths(values, [2, 0, 3]),
        ra.RaggedArray.from_segment_ids(values, [0, 0, 2, 2, 2]),
        ra.RaggedArray.from_list([on(s, ("torch", "cuda")) for s in segments]),
    ):
        check_ragged(x, segments, ("torch", "cuda"), (2,))


@pytest.mark.parametrize("empty", [[], np.array([]), torch.tensor([])], ids=["list", "np", "torch"])
def test_empty_lengths_and_ids_of_any_float_kind_are_zero_segments(empty):
    values = torch.zeros(0) if isinstance(empty, torch.Tensor) else np.zeros(0)
    for x in (
        ra.RaggedArray.from_lengths(values, empty),
        ra.RaggedArray.from_segment_ids(values, empty),
    ):
        assert len(x) == 0 and x.num_items == 0 and x.host_offsets.tolist() == [0]
