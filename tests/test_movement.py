"""Conversion and movement: numpy/torch faces, dtypes, devices, clone, padding, cat, pickling,
repr and comparisons, each checked against a loop over the oracle list of segments.
"""

from __future__ import annotations

import pickle
from functools import reduce

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
    flat,
    host,
    numpy_dtype,
    on,
    oracle_and_x,
    oracle_offsets,
    random_segments,
    requires_cuda,
    torch_dtype,
    write,
)

import raggedarray as ra

CPU_PLACES = [p for p in PLACES if p.values[0][1] == "cpu"]


# ---------------------------------------------------------------------------- helpers


def overlap(a, b):
    """Whether the memory of two arrays (numpy or torch, any device) overlaps."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        sa, sb = a.untyped_storage(), b.untyped_storage()
        a0, a1 = sa.data_ptr(), sa.data_ptr() + sa.nbytes()
        b0, b1 = sb.data_ptr(), sb.data_ptr() + sb.nbytes()
        return a0 < a1 and b0 < b1 and a0 < b1 and b0 < a1
    if isinstance(a, torch.Tensor):
        a = a.numpy()
    if isinstance(b, torch.Tensor):
        b = b.numpy()
    return np.shares_memory(a, b)


def contiguous(a):
    return a.is_contiguous() if isinstance(a, torch.Tensor) else a.flags.c_contiguous


def assert_place(x, backend, device_type="cpu"):
    """Values and offsets of ``x`` are on ``backend`` (and a device of ``device_type``)."""
    assert x.backend == backend
    if backend == "numpy":
        assert isinstance(x.values, np.ndarray)
        assert isinstance(x.offsets, np.ndarray)
        assert x.device == torch.device("cpu")
    else:
        assert isinstance(x.values, torch.Tensor)
        assert isinstance(x.offsets, torch.Tensor)
        assert x.values.device.type == device_type
        assert x.offsets.device == x.values.device
        assert x.offsets.dtype == torch.int64
        assert x.device == x.values.device


# --------------------------------------------------------------- numpy() and torch()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_numpy_and_torch_faces_share_memory(dtype, layout):
    segments, x = oracle_and_x(("numpy", "cpu"), dtype, layout)
    t = x.torch()
    assert type(t) is type(x)
    assert_place(t, "torch")
    assert t.dtype == torch_dtype(dtype)
    assert_same_segments(t, segments)
    np.testing.assert_array_equal(host(t.offsets), oracle_offsets(segments))
    assert overlap(t.values, x.values)
    assert t.torch() is t
    assert x.numpy() is x

    # A write through the torch face is seen by the numpy one ...
    new = different(segments[3])
    write(t[3], new)
    np.testing.assert_array_equal(x[3], new)

    # ... and back: numpy() of torch values is zero-copy too, with numpy offsets.
    back = t.numpy()
    assert type(back) is type(x)
    assert_place(back, "numpy")
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.offsets, oracle_offsets(segments))
    assert overlap(back.values, t.values)
    newer = different(segments[0])
    write(back[0], newer)
    np.testing.assert_array_equal(host(t[0]), newer)
    np.testing.assert_array_equal(x[0], newer)


def test_numpy_of_torch_values_is_zero_copy(dtype):
    segments, t = oracle_and_x(("torch", "cpu"), dtype, (ra.RaggedArray, (2,)))
    n = t.numpy()
    assert_place(n, "numpy")
    assert_same_segments(n, segments)
    assert overlap(n.values, t.values)
    new = different(segments[-1])
    n[-1][...] = new
    np.testing.assert_array_equal(host(t[-1]), new)


def test_numpy_refuses_values_that_require_grad():
    segments, t = oracle_and_x(("torch", "cpu"), "float64")
    t.values.requires_grad_(True)
    with pytest.raises(TypeError, match="require grad"):
        t.numpy()
    forced = t.numpy(force=True)
    assert_place(forced, "numpy")
    assert_same_segments(forced, segments)
    assert_same_segments(t.detach().numpy(), segments)
    assert t.values.requires_grad  # the source is left as it was


def test_a_dtype_numpy_cannot_hold_names_the_way_to_a_torch_result():
    x = ra.RaggedArray.from_lengths(np.zeros(3), [1, 2])
    for device in (None, "cpu"):  # numpy values stay numpy on the CPU
        with pytest.raises(TypeError, match=r"numpy can hold .*bfloat16.*x\.torch\(\)\.to"):
            x.to(device=device, dtype=torch.bfloat16)
    assert x.torch().to(dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="pass device= or torch tensors"):
        ra.RaggedArray.from_list([np.zeros(3)], dtype=torch.bfloat16)


def test_a_flipped_view_numpy_calls_contiguous_reaches_torch():
    # one row flipped: strides (-8, 4), yet numpy flags it C-contiguous, so
    # np.ascontiguousarray hands it back unchanged and torch.from_numpy refuses it
    flipped = np.arange(2, dtype=np.float32).reshape(1, 2)[::-1]
    assert flipped.strides[0] < 0 and flipped.flags.c_contiguous
    x = ra.RaggedArray.from_lengths(flipped, [1])
    np.testing.assert_array_equal(x.torch().values.numpy(), flipped)
    expected = torch.exp(torch.from_numpy(flipped.copy())).numpy()
    np.testing.assert_array_equal(x.map(torch.exp, device="cpu").values.numpy(), expected)
    np.testing.assert_array_equal(x.sum(), flipped.sum(0, keepdims=True))
    y = ra.RaggedArray.from_list([flipped], device="cpu")
    np.testing.assert_array_equal(y.values.numpy(), flipped)


@pytest.mark.parametrize("item_shape", [(), (3,)])
def test_torch_of_negative_strides_copies(item_shape):
    segments = random_segments(np.random.default_rng(1), LENGTHS, item_shape, "float32")
    values = flat(segments, item_shape, "float32")
    reversed_rows = np.ascontiguousarray(values[::-1])[::-1]  # same content, negative stride
    assert reversed_rows.strides[0] < 0
    cases = [reversed_rows]
    if item_shape:
        reversed_cols = np.ascontiguousarray(values[:, ::-1])[:, ::-1]
        assert reversed_cols.strides[1] < 0
        cases.append(reversed_cols)
    for v in cases:
        x = ra.RaggedArray(v, oracle_offsets(segments))
        t = x.torch()
        assert_place(t, "torch")
        assert_same_segments(t, segments)
        assert t.values.is_contiguous()


# ----------------------------------------------------------------------------- to()

TARGET_DTYPES = [
    pytest.param(np.float64, id="np.float64"),
    pytest.param(np.dtype("float16"), id="np.dtype-float16"),
    pytest.param("int64", id="str-int64"),
    pytest.param(torch.float64, id="torch.float64"),
    pytest.param(torch.int64, id="torch.int64"),
    pytest.param(torch.bool, id="torch.bool"),
    pytest.param(torch.float16, id="torch.float16"),
    pytest.param(float, id="python-float"),  # as Tensor.to(float): float64
    pytest.param(int, id="python-int"),
    pytest.param(bool, id="python-bool"),
]


@pytest.mark.parametrize("target", TARGET_DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_to_dtype(place, target, layout):
    segments, x = oracle_and_x(place, "float32", layout)
    want = numpy_dtype(target)
    expected = [seg.astype(want) for seg in segments]
    results = [x.to(dtype=target)]
    if not isinstance(target, str):
        results.append(x.to(target))  # a dtype passed first, as in x.to(torch.float16)
    for y in results:
        assert type(y) is type(x)
        assert_place(y, x.backend, x.values.device.type if x.backend == "torch" else "cpu")
        assert numpy_dtype(y.dtype) == want
        np.testing.assert_array_equal(y.host_offsets, x.host_offsets)
        assert_same_segments(y, expected)
    assert_same_segments(x, segments)  # the source is unchanged


def test_to_with_nothing_to_change_returns_self(place):
    _, x = oracle_and_x(place, "float32")
    same_dtype_other_spelling = np.float32 if place[0] == "torch" else torch.float32
    assert x.to() is x
    assert x.to(dtype=x.dtype) is x
    assert x.to(x.dtype) is x
    assert x.to(dtype=same_dtype_other_spelling) is x
    assert x.to(device=x.device) is x
    assert x.to(x.device, x.dtype) is x
    assert x.detach() is x


@pytest.mark.parametrize("place", CPU_PLACES)
def test_cpu_moves_nothing_on_the_cpu(place):
    _, x = oracle_and_x(place, "float32")
    assert x.to("cpu") is x
    assert x.to(torch.device("cpu")) is x
    assert x.to("cpu:0") is x  # (torch's own .to("cpu:0") copies; numpy's never did)
    assert x.to(torch.device("cpu", 0)) is x
    assert x.cpu() is x
    assert x.to("cpu").backend == place[0]


@pytest.mark.parametrize("place", CPU_PLACES)
def test_to_cpu_with_a_dtype_stays_on_the_backend(place):
    segments, x = oracle_and_x(place, "float32")
    y = x.to("cpu", dtype=torch.float64)
    assert_place(y, place[0])
    assert numpy_dtype(y.dtype) == np.float64
    assert_same_segments(y, [seg.astype(np.float64) for seg in segments])


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_detach(place):
    segments, x = oracle_and_x(place, "float64")
    x.values.requires_grad_(True)
    y = x.detach()
    assert not y.requires_grad
    assert x.requires_grad
    assert y.values.data_ptr() == x.values.data_ptr()
    assert type(y) is type(x)
    assert_place(y, "torch", place[1])
    assert_same_segments(y, segments)


# ----------------------------------------------------------------------------- CUDA


@requires_cuda
@pytest.mark.parametrize("place", CPU_PLACES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_to_cuda_and_back(place, layout):
    segments, x = oracle_and_x(place, "float32", layout)
    moved = [x.to("cuda"), x.cuda(), x.cuda(non_blocking=True), x.to(torch.device("cuda"))]
    torch.cuda.synchronize()
    for y in moved:
        assert type(y) is type(x)
        assert_place(y, "torch", "cuda")
        np.testing.assert_array_equal(y.host_offsets, x.host_offsets)
        np.testing.assert_array_equal(host(y.offsets), oracle_offsets(segments))
        assert_same_segments(y, segments)
        for back in (y.cpu(), y.to("cpu")):
            assert_place(back, "torch")
            ra.testing.assert_ragged_equal(back, x)
        n = y.numpy()
        assert_place(n, "numpy")
        ra.testing.assert_ragged_equal(n, x)
    half = x.to("cuda", dtype=torch.float16)
    assert_place(half, "torch", "cuda")
    assert half.dtype == torch.float16
    assert_same_segments(half, [seg.astype(np.float16) for seg in segments])


@requires_cuda
@pytest.mark.parametrize("place", CPU_PLACES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pin_memory(place, layout):
    segments, x = oracle_and_x(place, "float32", layout)
    p = x.pin_memory()
    assert type(p) is type(x)
    assert_place(p, "torch")
    assert p.values.is_pinned()
    assert_same_segments(p, segments)
    y = p.cuda(non_blocking=True)
    torch.cuda.synchronize()
    assert_same_segments(y, segments)


def test_cuda_needs_a_cuda_device_and_devices_torch_lacks_are_named():
    # Tensor.cuda("cpu") refuses; x.cuda("cpu") returned x on the CPU. A device torch
    # knows by name but has no module for ('hpu') failed inside torch with an ImportError
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    for target in ("cpu", torch.device("cpu")):
        for z in (x, x.torch()):
            with pytest.raises(ValueError, match=r"^RaggedArray\.cuda: device must be a CUDA"):
                z.cuda(target)
    calls = {
        "RaggedArray.to": lambda: x.to("hpu"),
        "RaggedArray.cuda": lambda: x.cuda("hpu"),
        "RaggedArray.from_list": lambda: ra.RaggedArray.from_list([np.zeros(2)], device="hpu"),
        "RaggedArray.map": lambda: x.map(np.exp, device="hpu"),
    }
    for where, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{where}: device must be available; got 'hpu'"):
            call()


def test_bfloat16_and_complex_are_named_as_dtypes():
    t = ra.RaggedArray.from_lengths(torch.arange(3.0), [1, 2])
    assert t.to(dtype="bfloat16").dtype == t.astype("bfloat16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"got 'bfloat16' \(pass a dtype as dtype=\.\.\.\)"):
        t.to("bfloat16")
    with pytest.raises(TypeError, match=r"^RaggedArray\.to: dtype must hold real numbers"):
        t.to(complex)


@requires_cuda
def test_cuda_values_refuse_pinning_and_copy_to_numpy():
    segments, x = oracle_and_x(("torch", "cuda"), "float32")
    with pytest.raises(ValueError, match="CPU"):
        x.pin_memory()
    n = x.numpy()
    assert_place(n, "numpy")
    assert_same_segments(n, segments)


# --------------------------------------------------------------------------- clone()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clone(place, dtype, layout):
    segments, x = oracle_and_x(place, dtype, layout)
    for source, want in ((x, segments), (x[2:6], segments[2:6]), (x[::-1], segments[::-1])):
        y = source.clone()
        assert type(y) is type(x)
        assert y.dtype == x.dtype
        assert_place(y, x.backend, x.values.device.type if x.backend == "torch" else "cpu")
        assert_same_segments(y, want)
        np.testing.assert_array_equal(y.host_offsets, source.host_offsets)
        np.testing.assert_array_equal(host(y.offsets), oracle_offsets(want))
        assert contiguous(y.values)
        assert not overlap(y.values, x.values)
        if y.num_items:
            write(y.values, different(host(y.values)))
        assert_same_segments(x, segments)


def test_clone_of_strided_values_is_contiguous(place):
    segments = random_segments(np.random.default_rng(6), LENGTHS, (3,), "float64")
    wide = np.stack([flat(segments, (3,), "float64")] * 2, axis=-1)  # (N, 3, 2)
    base = on(wide, place)
    x = ra.RaggedArray(base[..., 0], on(np.array(oracle_offsets(segments)), place))
    assert not contiguous(x.values)
    y = x.clone()
    assert contiguous(y.values)
    assert_same_segments(y, segments)


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_clone_is_differentiable(place):
    rng = np.random.default_rng(7)
    _, x = oracle_and_x(place, "float64", (ra.RaggedArray, (2,)))
    x.values.requires_grad_(True)
    y = x.clone()
    assert y.requires_grad
    w = rng.standard_normal(tuple(y.values.shape))
    (y.values * on(w, place)).sum().backward()
    np.testing.assert_array_equal(host(x.values.grad), w)


# ----------------------------------------------------------------------- to_padded()


def padded_by_loop(segments, length, fill, item_shape, dtype):
    """The oracle for ``to_padded``: fill everywhere, then copy segment by segment."""
    out = np.full((len(segments), length, *item_shape), fill, dtype=dtype)
    mask = np.zeros((len(segments), length), dtype=bool)
    for i, seg in enumerate(segments):
        for j in range(min(seg.shape[0], length)):
            out[i, j] = seg[j]
            mask[i, j] = True
    return out, mask


def fills_for(dtype):
    if dtype == "bool":
        return [0, True, False]
    if dtype.startswith("int"):
        return [0, 7, -3]
    return [0, -1.5, float("nan"), float("inf")]


@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_to_padded_matches_the_loop(place, dtype, lengths, layout):
    item_shape = layout[1]
    segments, x = oracle_and_x(place, dtype, layout, lengths)
    longest = max((seg.shape[0] for seg in segments), default=0)
    values_before = flat(segments, item_shape, dtype)
    for max_length in (None, longest + 3, 2, 0):
        for fill in fills_for(dtype):
            length = longest if max_length is None else max_length
            if max_length is None and fill == 0:
                padded, mask = x.to_padded()  # defaults: fill 0, the longest segment
            else:
                padded, mask = x.to_padded(fill=fill, max_length=max_length)
            want, want_mask = padded_by_loop(segments, length, fill, item_shape, dtype)
            assert tuple(padded.shape) == (len(segments), length, *item_shape)
            assert padded.dtype == x.dtype
            assert type(padded) is type(x.values)
            assert type(mask) is type(x.values)
            if x.backend == "torch":
                assert padded.device == x.values.device
                assert mask.device == x.values.device
                assert mask.dtype == torch.bool
            else:
                assert mask.dtype == np.bool_
            np.testing.assert_array_equal(host(padded), want)
            np.testing.assert_array_equal(host(mask), want_mask)
            # No fill leaks into the values; the padded array is a buffer of its own.
            assert not overlap(padded, x.values)
            np.testing.assert_array_equal(host(x.values), values_before)
            if padded.numel() if x.backend == "torch" else padded.size:
                write(padded, different(host(padded)))
                np.testing.assert_array_equal(host(x.values), values_before)


def test_to_padded_of_a_view_uses_its_own_segments(place):
    segments, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)))
    padded, mask = x[3:6].to_padded(fill=-1.0)
    want, want_mask = padded_by_loop(segments[3:6], 5, -1.0, (2,), "float32")
    np.testing.assert_array_equal(host(padded), want)
    np.testing.assert_array_equal(host(mask), want_mask)


@pytest.mark.parametrize("place", TORCH_PLACES)
@pytest.mark.parametrize("max_length", [None, 3, 8])
def test_to_padded_gradient_reaches_valid_slots_only(place, max_length):
    rng = np.random.default_rng(8)
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (2,)))
    x.values.requires_grad_(True)
    padded, _ = x.to_padded(fill=5.0, max_length=max_length)
    assert padded.requires_grad
    w = rng.standard_normal(tuple(padded.shape))
    (padded * on(w, place)).sum().backward()
    expected = np.zeros((x.num_items, 2))
    start = 0
    for i, seg in enumerate(segments):
        for j in range(seg.shape[0]):
            if max_length is None or j < max_length:
                expected[start + j] = w[i, j]
        start += seg.shape[0]
    np.testing.assert_array_equal(host(x.values.grad), expected)


# ------------------------------------------------------------------------------- cat

CAT_GROUPS = [
    pytest.param([[3, 0, 2], [1], [0, 4]], id="three"),
    pytest.param([[2, 2]], id="one-input"),
    pytest.param([[], [1, 2], []], id="zero-segment-inputs"),
    pytest.param([[], []], id="all-zero-segments"),
    pytest.param([[0], [0, 0]], id="all-empty-segments"),
]


@pytest.mark.parametrize("groups", CAT_GROUPS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cat_matches_concatenated_lists(place, groups, layout):
    cls, item_shape = layout
    rng = np.random.default_rng(9)
    oracles = [random_segments(rng, lengths, item_shape, "float32") for lengths in groups]
    parts = [build(o, place, item_shape=item_shape, dtype="float32", cls=cls) for o in oracles]
    y = ra.cat(parts)
    want = [seg for o in oracles for seg in o]
    assert type(y) is cls
    assert y.item_shape == item_shape
    assert y.dtype == parts[0].dtype
    assert_place(y, place[0], place[1])
    assert_same_segments(y, want)
    np.testing.assert_array_equal(y.host_offsets, oracle_offsets(want))
    np.testing.assert_array_equal(host(y.offsets), oracle_offsets(want))
    for part in parts:
        assert not overlap(y.values, part.values)
    assert ra.cat(iter(parts)).equal(y)  # any iterable of ragged arrays


def test_cat_keeps_the_image_class_only_when_all_are_images(place):
    rng = np.random.default_rng(10)
    a = random_segments(rng, [2, 1], (1, 2, 2), "float32")
    b = random_segments(rng, [0, 3], (1, 2, 2), "float32")
    img_a = build(a, place, cls=ra.RaggedImageBatch)
    img_b = build(b, place, cls=ra.RaggedImageBatch)
    arr_b = build(b, place, cls=ra.RaggedArray)
    assert type(ra.cat([img_a, img_b])) is ra.RaggedImageBatch
    for parts in ([img_a, arr_b], [arr_b, img_a]):
        y = ra.cat(parts)
        assert type(y) is ra.RaggedArray
        assert y.item_shape == (1, 2, 2)
    assert_same_segments(ra.cat([img_a, arr_b]), a + b)


@pytest.mark.parametrize(
    "dtypes", [("float32", "int64"), ("int64", "bool"), ("float16", "float64", "int64")]
)
def test_cat_promotes_dtypes(place, dtypes):
    rng = np.random.default_rng(11)
    oracles = [random_segments(rng, [2, 0, 1], (2,), d) for d in dtypes]
    parts = [
        build(o, place, item_shape=(2,), dtype=d) for o, d in zip(oracles, dtypes, strict=True)
    ]
    y = ra.cat(parts)
    if place[0] == "numpy":
        want = np.result_type(*dtypes)
    else:
        want = numpy_dtype(reduce(torch.promote_types, [torch_dtype(d) for d in dtypes]))
    assert numpy_dtype(y.dtype) == want
    assert_same_segments(y, [seg.astype(want) for o in oracles for seg in o])


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_cat_is_differentiable(place):
    rng = np.random.default_rng(12)
    sa = random_segments(rng, [2, 0, 1], (), "float64")
    sb = random_segments(rng, [3], (), "float64")
    a, b = build(sa, place, dtype="float64"), build(sb, place, dtype="float64")
    a.values.requires_grad_(True)
    b.values.requires_grad_(True)
    y = ra.cat([a, b])
    w = rng.standard_normal(y.num_items)
    (y.values * on(w, place)).sum().backward()
    np.testing.assert_array_equal(host(a.values.grad), w[: a.num_items])
    np.testing.assert_array_equal(host(b.values.grad), w[a.num_items :])


# -------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pickle_round_trip(place, lengths, layout):
    cls, item_shape = layout
    segments, x = oracle_and_x(place, "float32", layout, lengths)
    for source, want in ((x, segments), (x[1:3], segments[1:3]), (x[::-1], segments[::-1])):
        y = pickle.loads(pickle.dumps(source))
        assert type(y) is cls
        assert y.dtype == x.dtype
        assert y.item_shape == item_shape
        assert_place(y, x.backend, x.values.device.type if x.backend == "torch" else "cpu")
        assert_same_segments(y, want)
        np.testing.assert_array_equal(y.host_offsets, oracle_offsets(want))
        np.testing.assert_array_equal(host(y.offsets), oracle_offsets(want))
        assert not y.host_offsets.flags.writeable
        assert not y.host_lengths.flags.writeable
        assert y.max_length == max((s.shape[0] for s in want), default=0)


# ------------------------------------------------------------------------------ repr


@pytest.mark.parametrize("layout", LAYOUTS)
def test_repr_describes_without_values(place, layout):
    cls, item_shape = layout
    segments = random_segments(np.random.default_rng(13), LENGTHS, item_shape, "float64")
    marked = [np.full_like(seg, 123456.75) for seg in segments]
    x = build(marked, place, item_shape=item_shape, dtype="float64", cls=cls)
    r = repr(x)
    lengths = [seg.shape[0] for seg in segments]
    assert r.startswith(cls.__name__ + "(")
    assert f"num_segments={len(segments)}" in r
    assert f"num_items={sum(lengths)}" in r
    assert f"{min(lengths)}..{max(lengths)}" in r
    assert f"item_shape={item_shape}" in r
    assert "float64" in r
    assert f"device={x.values.device if place[0] == 'torch' else 'cpu'}" in r
    assert f"backend={place[0]}" in r
    assert "123456" not in r


@pytest.mark.parametrize("lengths", [[], [0, 0]])
def test_repr_of_empty_arrays(place, lengths):
    segments = random_segments(np.random.default_rng(14), lengths, (2,), "int64")
    x = build(segments, place, item_shape=(2,), dtype="int64")
    r = repr(x)
    assert f"num_segments={len(lengths)}" in r
    assert "num_items=0" in r
    assert "int64" in r


def test_repr_of_a_large_array_is_short(place):
    lengths = np.random.default_rng(15).integers(0, 20, size=10_000).tolist()
    values = on(np.arange(sum(lengths), dtype=np.float32), place)
    x = ra.RaggedArray.from_lengths(values, on(np.array(lengths), place))
    r = repr(x)
    assert len(r) < 300
    assert f"num_segments={len(lengths)}" in r
    assert f"num_items={sum(lengths)}" in r
    assert f"{min(lengths)}..{max(lengths)}" in r


# ------------------------------------------------------------------------ comparisons


def first_difference(sa, sb):
    """(segment, item) of the first item that differs, by a loop over the two oracles."""
    for i, (a, b) in enumerate(zip(sa, sb, strict=True)):
        for j in range(a.shape[0]):
            if not np.array_equal(a[j], b[j]):
                return i, j
    return None


def test_equal_across_backends(place):
    segments, a = oracle_and_x(("numpy", "cpu"), "float32", (ra.RaggedArray, (2,)))
    b = build(segments, place, item_shape=(2,))
    for x, y in ((a, b), (b, a), (b, b.clone())):
        assert x.equal(y)
        assert ra.allclose(x, y)
        ra.testing.assert_ragged_equal(x, y)
    wider = b.to(dtype=torch.float64)  # dtypes may differ
    assert a.equal(wider)
    assert wider.equal(a)
    assert ra.allclose(a, wider)
    ra.testing.assert_ragged_equal(wider, a)


def test_equal_against_non_ragged_objects(place):
    _, x = oracle_and_x(place, "float32")
    assert not x.equal(x.values)
    assert not x.equal(x.to_list())
    assert not x.equal(None)


def test_different_values(place):
    segments, a = oracle_and_x(("numpy", "cpu"), "float64")
    changed = [seg.copy() for seg in segments]
    changed[5][0] = 2.25
    changed[3][1] = 1.5
    b = build(changed, place, dtype="float64")
    i, j = first_difference(segments, changed)
    assert not a.equal(b)
    assert not b.equal(a)
    assert not ra.allclose(a, b)
    largest = 0.0
    for seg, new in zip(segments, changed, strict=True):
        for n in range(seg.shape[0]):
            largest = max(largest, abs(float(seg[n]) - float(new[n])))
    assert ra.allclose(a, b, rtol=0, atol=largest * 1.01)
    assert not ra.allclose(a, b, rtol=0, atol=largest * 0.99)
    with pytest.raises(AssertionError, match=rf"segment {i}, item {j}\b") as info:
        ra.testing.assert_ragged_equal(a, b)
    assert "2 of" in str(info.value)  # how many values differ
    assert repr(float(segments[i][j])) in str(info.value)
    assert "1.5" in str(info.value)
    ra.testing.assert_ragged_equal(a, b, atol=largest * 1.01)


def test_different_offsets(place):
    segments, a = oracle_and_x(("numpy", "cpu"), "float32")
    values = flat(segments, (), "float32")
    other = [2, 1, 2, 5, 0, 1, 4]  # same number of items and segments, other boundaries
    assert sum(other) == values.shape[0] and len(other) == len(segments)
    b = ra.RaggedArray.from_lengths(on(values, place), on(np.array(other), place))
    want = oracle_offsets(segments)
    got = [0]
    for n in other:
        got.append(got[-1] + n)
    k = next(k for k, (p, q) in enumerate(zip(want, got, strict=True)) if p != q)
    assert not a.equal(b)
    assert not ra.allclose(a, b, atol=np.inf)
    with pytest.raises(AssertionError, match=rf"offsets\[{k}\]: {want[k]} != {got[k]}"):
        ra.testing.assert_ragged_equal(a, b)


def test_different_item_shapes_and_segment_counts(place):
    segments, a = oracle_and_x(("numpy", "cpu"), "float32", (ra.RaggedArray, (2, 3)))
    values = flat(segments, (2, 3), "float32")
    offsets = on(np.array(oracle_offsets(segments)), place)
    b = ra.RaggedArray(on(values.reshape(-1, 6), place), offsets)
    assert not a.equal(b)
    assert not ra.allclose(a, b)
    with pytest.raises(AssertionError, match=r"item shapes differ: \(2, 3\) != \(6,\)"):
        ra.testing.assert_ragged_equal(a, b)
    c = build(segments[:-1], place, item_shape=(2, 3))
    assert not a.equal(c)
    assert not ra.allclose(a, c)
    with pytest.raises(AssertionError, match=rf"num_segments differ: {len(segments)} != "):
        ra.testing.assert_ragged_equal(a, c)


def test_nan_handling(place):
    segments, a = oracle_and_x(place, "float32")
    values = flat(segments, (), "float32")
    values[4] = np.nan
    x = ra.RaggedArray(on(values, place), on(np.array(oracle_offsets(segments)), place))
    y = x.clone()
    assert not x.equal(y)  # NaN never equals NaN
    assert not ra.allclose(x, y)
    assert ra.allclose(x, y, equal_nan=True)
    ra.testing.assert_ragged_equal(x, y)  # NaNs in the same places compare equal
    with pytest.raises(AssertionError):
        ra.testing.assert_ragged_equal(x, a)


# ------------------------------------------------------------------ no device sync


@requires_cuda
def test_metadata_and_views_never_sync_the_device():
    segments = random_segments(np.random.default_rng(16), LENGTHS, (2, 3), "float32")
    x = build(segments, ("torch", "cuda"), item_shape=(2, 3))  # may sync once, by design
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        m = len(x)
        host_lengths = x.host_lengths
        host_offsets = x.host_offsets
        longest, shortest = x.max_length, x.min_length
        n = x.num_items
        seg = x[3]
        last = x[-1]
        sub = x[1:5]
        padded, mask = x.to_padded()
        cut, cut_mask = x.to_padded(fill=-1.0, max_length=2)
        ids = x.segment_ids
        lengths = x.lengths
        gathered = x[[2, 0]]
        stepped = x[::-2]
        masked = x[[True, False, True, False, False, True, True]]
        views = x.unbind()
        text = repr(x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    lens = [s.shape[0] for s in segments]
    assert m == len(segments)
    assert n == sum(lens)
    np.testing.assert_array_equal(host_lengths, lens)
    np.testing.assert_array_equal(host_offsets, oracle_offsets(segments))
    assert (longest, shortest) == (max(lens), min(lens))
    np.testing.assert_array_equal(host(seg), segments[3])
    np.testing.assert_array_equal(host(last), segments[-1])
    assert_same_segments(sub, segments[1:5])
    want, want_mask = padded_by_loop(segments, max(lens), 0, (2, 3), "float32")
    np.testing.assert_array_equal(host(padded), want)
    np.testing.assert_array_equal(host(mask), want_mask)
    want, want_mask = padded_by_loop(segments, 2, -1.0, (2, 3), "float32")
    np.testing.assert_array_equal(host(cut), want)
    np.testing.assert_array_equal(host(cut_mask), want_mask)
    np.testing.assert_array_equal(host(ids), [i for i, k in enumerate(lens) for _ in range(k)])
    np.testing.assert_array_equal(host(lengths), lens)
    assert_same_segments(gathered, [segments[2], segments[0]])
    assert_same_segments(stepped, segments[::-2])
    assert_same_segments(masked, [segments[i] for i in (0, 2, 5, 6)])
    for view, s in zip(views, segments, strict=True):
        np.testing.assert_array_equal(host(view), s)
    assert "cuda" in text
