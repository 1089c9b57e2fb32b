"""Interop with awkward arrays and torch.nested tensors: round trips, sharing, errors.

Round trips are checked against the oracle list for every place, length case, layout and
dtype; buffer sharing with ``np.shares_memory`` / ``data_ptr``; awkward's reductions along
axis 1 serve as a second oracle for the segment reductions.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import (
    DTYPES,
    LAYOUTS,
    LENGTH_CASES,
    LENGTHS,
    PLACES,
    assert_same_segments,
    host,
    oracle_and_x,
    random_segments,
)

import raggedarray as ra

ak = pytest.importorskip("awkward")


# ---------------------------------------------------------------------------- helpers


def values_numpy(x):
    """The values of a CPU ragged array as a numpy array sharing its memory."""
    v = x.values
    return v.detach().numpy() if isinstance(v, torch.Tensor) else v


def awkward_values(a):
    """The innermost numpy buffer of an awkward array."""
    content = ak.to_layout(a).content
    while not isinstance(content, ak.contents.NumpyArray):
        content = content.content
    return np.asarray(content.data)


def type_string(m, item_shape, dtype):
    dims = "".join(f"{d} * " for d in item_shape)
    return f"{m} * var * {dims}{np.dtype(dtype).name}"


# ------------------------------------------------------------------- awkward round trips


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_awkward_round_trip(place, lengths, layout, dtype):
    segments, x = oracle_and_x(place, dtype, layout, lengths)
    cls, item_shape = layout
    a = x.to_awkward()
    assert isinstance(a, ak.Array)
    assert str(a.type) == type_string(len(segments), item_shape, dtype)
    assert len(a) == len(segments)
    for i, seg in enumerate(segments):
        np.testing.assert_array_equal(ak.to_numpy(a[i]).reshape(seg.shape), seg)
    if place[1] == "cpu" and x.num_items:
        assert np.shares_memory(awkward_values(a), values_numpy(x))

    y = cls.from_awkward(a)
    assert type(y) is cls
    assert y.backend == "numpy"
    assert y.item_shape == item_shape
    assert y.dtype == np.dtype(dtype)
    assert_same_segments(y, segments)
    if place[1] == "cpu" and x.num_items:
        assert np.shares_memory(y.values, values_numpy(x))


@pytest.mark.parametrize("place", PLACES)
def test_to_awkward_detaches_and_copies_cuda(place):
    if place[0] == "numpy":
        pytest.skip("torch only")
    segments, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)))
    x = ra.RaggedArray(x.values.clone().requires_grad_(True), x.offsets)
    a = x.to_awkward()
    for i, seg in enumerate(segments):
        np.testing.assert_array_equal(ak.to_numpy(a[i]), seg)


def test_awkward_slice_is_zero_copy():
    segments, x = oracle_and_x(("numpy", "cpu"), "float64", (ra.RaggedArray, (2, 3)))
    a = x.to_awkward()[2:5]
    assert ak.to_layout(a).offsets.data[0] != 0  # the sliced layout keeps the old offsets
    y = ra.RaggedArray.from_awkward(a)
    assert_same_segments(y, segments[2:5])
    assert y.offsets[0] == 0
    assert np.shares_memory(y.values, x.values)


def test_awkward_list_array_is_compacted():
    segments, x = oracle_and_x(("numpy", "cpu"), "float32", (ra.RaggedArray, (3,)))
    order = [3, 0, 6, 1, 1]
    a = x.to_awkward()[order]
    assert isinstance(ak.to_layout(a), ak.contents.ListArray)
    y = ra.RaggedArray.from_awkward(a)
    assert_same_segments(y, [segments[i] for i in order])
    assert not np.shares_memory(y.values, x.values)


def test_awkward_indexed_and_option_layouts_are_compacted():
    segments, x = oracle_and_x(("numpy", "cpu"), "int64")
    inner = ak.to_layout(x.to_awkward())
    index = ak.index.Index64(np.array([2, 0, 3], dtype=np.int64))
    indexed = ak.Array(ak.contents.IndexedArray(index, inner))
    assert_same_segments(ra.RaggedArray.from_awkward(indexed), [segments[i] for i in [2, 0, 3]])
    option = ak.Array(ak.contents.IndexedOptionArray(index, inner))
    assert str(option.type).startswith("3 * option[")
    assert_same_segments(ra.RaggedArray.from_awkward(option), [segments[i] for i in [2, 0, 3]])
    unmasked = ak.Array(ak.contents.UnmaskedArray(inner))
    assert_same_segments(ra.RaggedArray.from_awkward(unmasked), segments)
    reversed_items = x.to_awkward()[:, ::-1]
    assert_same_segments(
        ra.RaggedArray.from_awkward(reversed_items), [seg[::-1] for seg in segments]
    )


def test_awkward_from_python_lists():
    x = ra.RaggedArray.from_awkward(ak.Array([[[1, 2]], [], [[3, 4], [5, 6]]]))
    assert x.item_shape == (2,)
    assert x.lengths.tolist() == [1, 0, 2]
    np.testing.assert_array_equal(x.values, [[1, 2], [3, 4], [5, 6]])
    empty = ra.RaggedArray.from_awkward(ak.Array([[], []]))
    assert empty.lengths.tolist() == [0, 0]
    assert empty.values.shape == (0,)
    images = ra.RaggedImageBatch.from_awkward(ak.Array([np.zeros((2, 1, 2, 2)).tolist(), []]))
    assert images.item_shape == (1, 2, 2)
    assert images.lengths.tolist() == [2, 0]


def test_awkward_images_round_trip_through_regular_arrays():
    values = np.arange(5 * 2 * 3 * 3, dtype=np.float32).reshape(5, 2, 3, 3)
    a = ak.unflatten(ak.to_regular(ak.from_numpy(values, regulararray=True), axis=1), [2, 3])
    assert str(a.type) == "2 * var * 2 * 3 * 3 * float32"
    x = ra.RaggedImageBatch.from_awkward(a)
    assert type(x) is ra.RaggedImageBatch
    assert (x.channels, x.height, x.width) == (2, 3, 3)
    np.testing.assert_array_equal(x.values, values)
    assert np.shares_memory(x.values, values)


# ------------------------------------------------------------------------ awkward errors


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (ak.Array([[{"a": 1}], []]), TypeError, "not records"),
        (ak.Array([[1, "x"], []]), TypeError, "not a union"),
        (ak.Array([["ab", "c"], []]), TypeError, "not strings"),
        (ak.Array(["ab", "c"]), TypeError, "not strings"),
        (ak.Array([1.0, 2.0]), TypeError, r"list of variable-length lists.*2 \* float64"),
        (ak.Array(np.zeros((2, 3))), TypeError, "ak.from_regular"),
        (ak.Array([[1, None], [2]]), ValueError, r"no missing values .*; got 1 at axis=1"),
        (ak.Array([[1], None]), ValueError, r"no missing values .*; got 1 at axis=0"),
        (ak.Array([[[1, 2], [3]], []]), ValueError, "axis=2 have different lengths"),
        (ak.Array([[np.datetime64("2020-01-01")]]), TypeError, "numbers or booleans"),
        (ak.Array(ak.Array([[1.0], []]).layout.to_typetracer()), TypeError, "must hold data"),
        (
            ak.Array(ak.Array([[1.0], []]).layout.to_typetracer(forget_length=True)),
            TypeError,
            r"must hold data; got an awkward typetracer array of type ## \* var",
        ),
    ],
    ids=["record", "union", "strings", "flat-strings", "flat", "regular", "missing-inner",
         "missing-outer", "second-ragged-dim", "datetime", "typetracer", "typetracer-no-length"],
)  # fmt: skip
def test_from_awkward_errors(array, error, match):
    with pytest.raises(error, match=match) as info:
        ra.RaggedArray.from_awkward(array)
    assert str(info.value).startswith("RaggedArray.from_awkward: ")


def test_from_awkward_wrong_kind_and_image_items():
    with pytest.raises(TypeError, match="must be an awkward Array; got numpy array"):
        ra.RaggedArray.from_awkward(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="must be an awkward Array; got list"):
        ra.RaggedArray.from_awkward([[1.0], []])
    with pytest.raises(ValueError, match=r"RaggedImageBatch.from_awkward: items must be 3-D"):
        ra.RaggedImageBatch.from_awkward(ak.Array([[1.0, 2.0], []]))


def test_to_awkward_bfloat16():
    x = ra.RaggedArray.from_lengths(torch.zeros(3, dtype=torch.bfloat16), [1, 2])
    with pytest.raises(TypeError, match=r"RaggedArray.to_awkward: .*got torch.bfloat16"):
        x.to_awkward()


def test_missing_awkward_has_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "awkward", None)
    x = ra.RaggedArray.from_lengths(np.zeros(3), [1, 2])
    with pytest.raises(ImportError, match=r"pip install 'raggedarray\[awkward\]'"):
        x.to_awkward()
    with pytest.raises(ImportError, match="from_awkward needs awkward"):
        ra.RaggedArray.from_awkward(None)


# -------------------------------------------------------- awkward as a reduction oracle


def _filled(result, item_shape, fill):
    """Awkward's axis-1 reduction with empty segments filled, as a numpy array."""
    if item_shape:
        result = ak.pad_none(result, item_shape[0], axis=1)
    out = ak.to_numpy(ak.fill_none(result, fill)).astype(np.float64)
    return np.where(np.isnan(out), fill, out)  # ak.mean gives NaN for empty lists


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("item_shape", [(), (3,)], ids=["scalars", "vectors"])
@pytest.mark.parametrize("seed", range(5))
def test_reductions_match_awkward(place, item_shape, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 6, size=rng.integers(0, 12)).tolist()
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, item_shape), lengths, seed)
    a = ra.RaggedArray.from_list(segments).to_awkward()
    m = len(lengths)
    for name, reduce, fill in [
        ("sum", ak.sum, 0.0),
        ("mean", ak.mean, -1.0),
        ("max", ak.max, -7.0),
    ]:
        got = host(getattr(x, name)(fill=fill))
        want = _filled(reduce(a, axis=1), item_shape, fill).reshape(m, *item_shape)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------- torch.nested round trips


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "bool"])
def test_nested_round_trip(place, lengths, layout, dtype):
    segments, x = oracle_and_x(place, dtype, layout, lengths)
    cls, item_shape = layout
    nt = x.to_nested()
    assert nt.is_nested and nt.layout == torch.jagged
    assert nt._ragged_idx == 1
    assert nt.shape[0] == len(segments) and tuple(nt.shape[2:]) == item_shape
    assert nt._min_seqlen == x.min_length
    assert nt._max_seqlen == x.max_length
    values = x.values if isinstance(x.values, torch.Tensor) else torch.from_numpy(x.values)
    assert nt.values().data_ptr() == values.data_ptr()
    assert nt.values().device == values.device
    for i, seg in enumerate(segments):
        np.testing.assert_array_equal(host(nt[i]), seg)

    y = cls.from_nested(nt)
    assert type(y) is cls
    assert y.backend == "torch"
    assert y.device == values.device
    assert_same_segments(y, segments)
    assert y.values.data_ptr() == values.data_ptr()


@pytest.mark.parametrize("place", PLACES)
def test_to_nested_pads_to_max_length(place):
    _, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)))
    padded = torch.nested.to_padded_tensor(x.to_nested(), -1.0)
    assert padded.shape == (len(LENGTHS), max(LENGTHS), 2)
    want, _ = x.to_padded(fill=-1.0)
    np.testing.assert_array_equal(host(padded), host(want))


def test_to_nested_of_a_read_only_buffer_copies_it(tmp_path):
    """A memory-mapped file's values: a tensor cannot keep them read-only, so they are copied
    (as ``torch()`` does) and a write into the nested tensor leaves the ragged array alone."""
    ra.save(tmp_path / "x.safetensors", ra.RaggedArray.from_lengths(np.arange(6.0), [2, 4]))
    x = ra.load(tmp_path / "x.safetensors", mmap=True)
    assert not x.values.flags.writeable
    nt = x.to_nested()
    nt.values()[0] = 42.0
    assert x.values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    writable = ra.RaggedArray.from_lengths(np.arange(6.0), [2, 4])
    assert np.shares_memory(writable.to_nested().values().numpy(), writable.values)  # no copy


def test_to_nested_is_differentiable():
    values = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    x = ra.RaggedArray.from_lengths(values, [4, 0, 6])
    nt = x.to_nested()
    assert nt.requires_grad
    y = ra.RaggedArray.from_nested(nt * 2)
    y.values.sum().backward()
    np.testing.assert_array_equal(values.grad.numpy(), np.full((10, 2), 2.0))


@pytest.mark.parametrize("place", PLACES)
def test_from_nested_with_holes_compacts(place):
    device = place[1]
    base = torch.arange(4 * 5 * 2, dtype=torch.float32, device=device).reshape(4, 5, 2)
    starts = torch.tensor([0, 1, 2, 0], device=device)
    lengths = torch.tensor([2, 3, 0, 5], device=device)
    nt = torch.nested.narrow(base, 1, starts, lengths, layout=torch.jagged)
    assert nt.lengths() is not None
    x = ra.RaggedArray.from_nested(nt)
    want = [
        base[i, s : s + n].cpu().numpy()
        for i, (s, n) in enumerate([(0, 2), (1, 3), (2, 0), (0, 5)])
    ]
    assert_same_segments(x, want)
    assert x.values.device == base.device
    assert x.values.is_contiguous() and x.num_items == 10


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("place", PLACES)
def test_from_nested_strided_copies(place):
    segments = random_segments(np.random.default_rng(1), [3, 0, 2], (2, 3, 3), "float32")
    device = place[1]
    nt = torch.nested.nested_tensor([torch.from_numpy(s).to(device) for s in segments])
    assert nt.layout == torch.strided
    x = ra.RaggedImageBatch.from_nested(nt)
    assert type(x) is ra.RaggedImageBatch
    assert x.values.device == nt.device
    assert_same_segments(x, segments)


def test_from_nested_sliced_jagged():
    segments, x = oracle_and_x(("torch", "cpu"), "float32", (ra.RaggedArray, (2,)))
    nt = torch.nested.nested_tensor_from_jagged(x.values, x.offsets[2:])
    y = ra.RaggedArray.from_nested(nt)
    assert_same_segments(y, segments[2:])
    assert y.values.data_ptr() == x[2].data_ptr()


# ------------------------------------------------------------------------- nested errors


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
def test_from_nested_errors():
    with pytest.raises(TypeError, match=r"RaggedArray.from_nested: .*torch.nested tensor; got"):
        ra.RaggedArray.from_nested(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="got numpy array"):
        ra.RaggedArray.from_nested(np.zeros((3, 2)))
    ragged2 = torch.nested.nested_tensor(
        [torch.zeros(3, 2), torch.zeros(3, 1)], layout=torch.jagged
    )
    with pytest.raises(ValueError, match=r"ragged dimension must be dim 1; .*ragged in dim 2"):
        ra.RaggedArray.from_nested(ragged2)
    strided2 = torch.nested.nested_tensor([torch.zeros(3, 2), torch.zeros(3, 1)])
    with pytest.raises(ValueError, match=r"dim 1 .*tensor 1 of shape \(3, 1\)"):
        ra.RaggedArray.from_nested(strided2)
    with pytest.raises(ValueError, match="at least one tensor"):
        ra.RaggedArray.from_nested(torch.nested.nested_tensor([]))
    scalars = torch.nested.nested_tensor([torch.tensor(1.0), torch.tensor(2.0)])
    with pytest.raises(ValueError, match=r"must be dim 1, .*got tensor 0 of shape \(\) \(0-d\)$"):
        ra.RaggedArray.from_nested(scalars)
    flat = torch.nested.nested_tensor([torch.zeros(3, 2), torch.zeros(1, 2)], layout=torch.jagged)
    with pytest.raises(ValueError, match=r"RaggedImageBatch.from_nested: items must be 3-D"):
        ra.RaggedImageBatch.from_nested(flat)
