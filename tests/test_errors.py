"""One test per malformed input: the exception type and its message.

Messages follow ``"<function>: <what must hold>; got <what was seen>"``, so each test matches
the function name and the rule (and, where it is stable, what was seen).
"""

from __future__ import annotations

import copy
import functools
import re

import numpy as np
import pytest
import torch
from conftest import host, on, requires_cuda

import raggedarray as ra

R = ra.RaggedArray
I = ra.RaggedImageBatch  # noqa: E741

CLASSES = pytest.mark.parametrize("cls", [R, I], ids=["RaggedArray", "RaggedImageBatch"])


def item_shape_of(cls):
    return (1, 2, 2) if cls is I else (2,)


def values_for(cls, n, place):
    """``n`` items of the class's item shape on ``place``."""
    shape = (n, *item_shape_of(cls))
    return on(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), place)


def prefix(cls, method=None):
    """Regex of the message prefix: ``"RaggedArray.from_lengths: "``."""
    name = cls.__name__ if method is None else f"{cls.__name__}.{method}"
    return "^" + re.escape(name) + ": "


# --------------------------------------------------------------------- offsets


@CLASSES
def test_offsets_not_1d(place, cls):
    values = values_for(cls, 4, place)
    with pytest.raises(ValueError, match=prefix(cls) + r"offsets must be 1-D; got shape \(2, 2\)"):
        cls(values, on(np.array([[0, 2], [2, 4]]), place))


def test_offsets_0d(place):
    with pytest.raises(ValueError, match=prefix(R) + r"offsets must be 1-D; got shape \(\)"):
        R(on(np.zeros(3), place), on(np.array(3), place))


@CLASSES
def test_offsets_float(place, cls):
    values = values_for(cls, 4, place)
    with pytest.raises(
        TypeError, match=prefix(cls) + r"offsets must have an integer dtype; got .*float"
    ):
        cls(values, on(np.array([0.0, 2.0, 4.0]), place))


def test_offsets_float_list(place):
    with pytest.raises(
        TypeError, match=prefix(R) + r"offsets must have an integer dtype; got float64"
    ):
        R(on(np.zeros(4), place), [0, 2.5, 4])


def test_offsets_bool(place):
    with pytest.raises(
        TypeError, match=prefix(R) + r"offsets must have an integer dtype; got .*bool"
    ):
        R(on(np.zeros(1), place), on(np.array([False, True]), place))


@pytest.mark.parametrize("how", ["list", "int-array"])
def test_offsets_empty(place, how):
    offsets = [] if how == "list" else on(np.zeros(0, dtype=np.int64), place)
    with pytest.raises(
        ValueError, match=prefix(R) + r"offsets must have at least one entry .*; got \[\]"
    ):
        R(on(np.zeros(0), place), offsets)


def test_offsets_not_starting_at_zero(place):
    with pytest.raises(ValueError, match=prefix(R) + r"offsets\[0\] must be 0; got offsets\[0\]=1"):
        R(on(np.zeros(5), place), on(np.array([1, 3, 5]), place))


def test_offsets_decreasing(place):
    with pytest.raises(
        ValueError,
        match=prefix(R) + r"offsets must be non-decreasing; got offsets\[1\]=3 > offsets\[2\]=2",
    ):
        R(on(np.zeros(5), place), on(np.array([0, 3, 2, 5]), place))


@pytest.mark.parametrize("last", [3, 6])
def test_offsets_last_not_num_items(place, last):
    with pytest.raises(
        ValueError,
        match=prefix(R) + rf"offsets\[-1\] must equal the number of items values.shape\[0\]=5; "
        rf"got offsets\[-1\]={last}",
    ):
        R(on(np.zeros(5), place), on(np.array([0, 2, last]), place))


# ---------------------------------------------------------------------- lengths


@CLASSES
def test_negative_lengths(place, cls):
    with pytest.raises(
        ValueError,
        match=prefix(cls, "from_lengths") + r"lengths must be non-negative; got lengths\[1\]=-1",
    ):
        cls.from_lengths(values_for(cls, 5, place), [3, -1, 3])


@CLASSES
def test_lengths_not_summing_to_num_items(place, cls):
    with pytest.raises(
        ValueError,
        match=prefix(cls, "from_lengths")
        + r"lengths must sum to the number of items values.shape\[0\]=5; got sum 4",
    ):
        cls.from_lengths(values_for(cls, 5, place), on(np.array([3, 1]), place))


def test_lengths_float(place):
    with pytest.raises(
        TypeError, match=prefix(R, "from_lengths") + r"lengths must have an integer dtype"
    ):
        R.from_lengths(on(np.zeros(3), place), on(np.array([1.0, 2.0]), place))


def test_lengths_not_1d(place):
    with pytest.raises(ValueError, match=prefix(R, "from_lengths") + r"lengths must be 1-D"):
        R.from_lengths(on(np.zeros(3), place), [[1, 2]])


# ------------------------------------------------------------------ segment ids


@CLASSES
def test_unsorted_segment_ids(place, cls):
    with pytest.raises(
        ValueError,
        match=prefix(cls, "from_segment_ids")
        + r"segment_ids must be sorted; got segment_ids\[1\]=1 > segment_ids\[2\]=0",
    ):
        cls.from_segment_ids(values_for(cls, 5, place), on(np.array([0, 1, 0, 1, 1]), place))


def test_negative_segment_ids(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_segment_ids") + r"segment_ids must be non-negative; got -1",
    ):
        R.from_segment_ids(on(np.zeros(3), place), [-1, 0, 0])


def test_segment_ids_not_below_num_segments(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_segment_ids") + r"segment ids must be < num_segments=2; got id 2",
    ):
        R.from_segment_ids(on(np.zeros(5), place), [0, 0, 1, 1, 2], num_segments=2)


def test_segment_ids_count_not_num_items(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_segment_ids") + r"segment_ids must have one entry per item \(5\)",
    ):
        R.from_segment_ids(on(np.zeros(5), place), [0, 0, 1, 1])


def test_segment_ids_float(place):
    with pytest.raises(
        TypeError, match=prefix(R, "from_segment_ids") + r"segment_ids must have an integer dtype"
    ):
        R.from_segment_ids(on(np.zeros(2), place), on(np.array([0.0, 1.0]), place))


@pytest.mark.parametrize("num_segments", [2.0, True, "2"])
def test_num_segments_not_an_int(num_segments):
    with pytest.raises(
        TypeError, match=prefix(R, "from_segment_ids") + r"num_segments must be an int; got "
    ):
        R.from_segment_ids(np.zeros(2), [0, 1], num_segments=num_segments)


# ----------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "build",
    [
        lambda cls, v: cls(v, [0]),
        lambda cls, v: cls.from_lengths(v, []),
        lambda cls, v: cls.from_segment_ids(v, []),
    ],
    ids=["constructor", "from_lengths", "from_segment_ids"],
)
def test_values_0d(place, build):
    values = on(np.array(1.0), place)
    with pytest.raises(
        ValueError,
        match=r"^RaggedArray(\.from_\w+)?: values must have a leading item axis; "
        r"got a 0-d array",
    ):
        build(R, values)


@pytest.mark.parametrize("values", [[1.0, 2.0], (1.0, 2.0)], ids=["list", "tuple"])
def test_values_not_an_array_hints_from_list(values):
    with pytest.raises(
        TypeError,
        match=prefix(R) + r"values must be a numpy array or a torch tensor; got "
        r"(list|tuple) \(for a list of per-segment arrays use from_list\)",
    ):
        R(values, [0, 2])


@pytest.mark.parametrize("method", ["from_lengths", "from_segment_ids"])
def test_values_not_an_array_in_factories(method):
    with pytest.raises(
        TypeError,
        match=prefix(R, method) + r"values must be a numpy array or a torch tensor; got list",
    ):
        getattr(R, method)([1.0, 2.0], [0, 1] if method == "from_segment_ids" else [1, 1])


def test_values_of_strings():
    with pytest.raises(
        TypeError, match=prefix(R) + r"values must hold real numbers or booleans; got dtype <U1"
    ):
        R(np.array(["a", "b"]), [0, 2])


def test_numpy_values_torch_offsets():
    with pytest.raises(
        TypeError,
        match=prefix(R) + r"values and offsets must have the same backend; "
        r"got values as numpy and offsets as torch",
    ):
        R(np.zeros(5), torch.tensor([0, 2, 5]))


def test_torch_values_numpy_offsets():
    with pytest.raises(
        TypeError,
        match=prefix(R) + r"values and offsets must have the same backend; "
        r"got values as torch and offsets as numpy",
    ):
        R(torch.zeros(5), np.array([0, 2, 5]))


@requires_cuda
@pytest.mark.parametrize("where", ["values-on-cuda", "offsets-on-cuda"])
def test_values_and_offsets_on_different_devices(where):
    values, offsets = torch.zeros(5), torch.tensor([0, 2, 5])
    if where == "values-on-cuda":
        values = values.cuda()
    else:
        offsets = offsets.cuda()
    with pytest.raises(
        ValueError, match=prefix(R) + r"values and offsets must be on the same device; got "
    ):
        R(values, offsets)


# -------------------------------------------------------------------- from_list


def test_from_list_different_item_shapes(place):
    items = [on(np.zeros((2, 3)), place), on(np.zeros((1, 2)), place)]
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_list") + r"all arrays must have the same item shape; "
        r"got item shape \(3,\) for arrays\[0\] and \(2,\) for arrays\[1\]",
    ):
        R.from_list(items)


def test_from_list_different_item_ndims(place):
    items = [
        on(np.zeros((2, 3)), place),
        on(np.zeros((0, 3)), place),
        on(np.zeros((1, 3, 1)), place),
    ]
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_list") + r"all arrays must have the same item shape; "
        r"got item shape \(3,\) for arrays\[0\] and \(3, 1\) for arrays\[2\]",
    ):
        R.from_list(items)


def test_from_list_different_item_shapes_mixed_backends():
    items = [np.zeros((2, 3)), torch.zeros((1, 2))]
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_list") + r"all arrays must have the same item shape; "
        r"got item shape \(3,\) for arrays\[0\] and \(2,\) for arrays\[1\]",
    ):
        R.from_list(items)


def test_from_list_different_item_shapes_with_dtype(place):
    items = [on(np.zeros((2, 3)), place), on(np.zeros((1, 2)), place)]
    with pytest.raises(
        ValueError, match=prefix(R, "from_list") + r"all arrays must have the same item shape"
    ):
        R.from_list(items, dtype=np.float32)


@pytest.mark.parametrize(
    ("dtypes", "dtype"),
    [
        (("float32", "float32"), "int8"),  # a narrowing cast: copied piece by piece
        (("uint16", "int16"), None),  # torch has no promotion: copied piece by piece
        (("float32", "uint8"), "uint8"),
    ],
)
@pytest.mark.parametrize("api", ["from_list", "collate", "image"])
def test_items_that_would_broadcast_are_refused_on_every_copy_path(dtypes, dtype, api):
    """(3,) items beside (1,) items, each copied into its rows: torch's copy_ broadcasts,
    which filled every column with the one (and a grayscale image into every channel)."""
    shapes = [(2, 3, 2, 2), (1, 1, 2, 2)] if api == "image" else [(2, 3), (2, 1)]
    items = [torch.ones(s).to(getattr(torch, d)) for s, d in zip(shapes, dtypes, strict=True)]
    want = r"all arrays must have the same item shape; got item shape \(3(,|, 2, 2)\) for "
    with pytest.raises(ValueError, match=want):
        if api == "collate":
            ra.collate(items)
        else:
            cls = ra.RaggedImageBatch if api == "image" else R
            cls.from_list(items, dtype=None if dtype is None else getattr(torch, dtype))


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(lambda: np.array([None]), id="None"),
        pytest.param(lambda: [["1.5", "2"]], id="strings"),
        pytest.param(lambda: np.array(["2020-01-01"], "M8[D]"), id="dates"),
        pytest.param(lambda: np.ones(2, np.complex64), id="numpy-complex"),
        pytest.param(lambda: torch.ones(2, dtype=torch.complex64), id="torch-complex"),
    ],
)
@pytest.mark.parametrize("dtype", [None, "float32", torch.float32, np.int64])
def test_from_list_refuses_what_is_not_numbers_with_or_without_dtype(item, dtype):
    """dtype= casts numbers: before, it read None as NaN, parsed strings, counted days and
    dropped imaginary parts, where the same items without dtype= were refused."""
    source = item()
    before = copy.deepcopy(source)
    cast = r"arrays\[1\] must hold real numbers or booleans( \(dtype= casts numbers\))?; got "
    with pytest.raises(TypeError, match=prefix(R, "from_list") + (cast if dtype else "")):
        R.from_list([np.ones(1), source], dtype=dtype)
    assert type(source) is type(before) and np.array_equal(np.asarray(source), before)


def test_from_list_with_dtype_casts_real_numbers_of_any_width_or_byte_order():
    items = [np.array([1.5, 2.5], ">f8"), np.array([3.0], np.longdouble), [4]]
    x = R.from_list(items, dtype="float32")
    assert x.dtype == np.float32 and x.values.tolist() == [1.5, 2.5, 3.0, 4.0]


def test_from_list_item_shape_keyword_mismatch(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_list")
        + r"arrays must have the requested item_shape=\(2,\); got item shape \(3,\)",
    ):
        R.from_list([on(np.zeros((2, 3)), place)], item_shape=(2,))


def test_from_list_0d_item(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_list")
        + r"every array must have a leading item axis; got arrays\[1\] of shape \(\)",
    ):
        R.from_list([on(np.zeros(2), place), on(np.array(1.0), place)])


@pytest.mark.parametrize("position", [0, 1])
def test_from_list_strings(position):
    items = [np.zeros(2), np.zeros(2)]
    items[position] = np.array(["a", "b"])
    with pytest.raises(
        TypeError,
        match=prefix(R, "from_list")
        + rf"arrays must hold numbers or booleans; got dtype <U1 for arrays\[{position}\]",
    ):
        R.from_list(items)


def test_from_list_strings_mixed_with_a_tensor():
    with pytest.raises(TypeError, match=prefix(R, "from_list") + r".*arrays\[1\].*<U1"):
        R.from_list([torch.zeros(2), np.array(["a", "b"])])


def test_from_list_objects():
    with pytest.raises(
        TypeError,
        match=prefix(R, "from_list") + r"arrays must hold numbers or booleans; got dtype object",
    ):
        R.from_list([np.array([1, None], dtype=object)])


@pytest.mark.parametrize("cls", [R, I], ids=["RaggedArray", "RaggedImageBatch"])
def test_from_list_single_array(place, cls):
    array = on(np.zeros((3, 1, 2, 2)), place)
    with pytest.raises(
        TypeError,
        match=prefix(cls, "from_list")
        + r"arrays must be a list of per-segment arrays; got one (numpy array|torch tensor) "
        r"of shape \(3, 1, 2, 2\)",
    ):
        cls.from_list(array)


def test_from_list_not_iterable():
    with pytest.raises(
        TypeError,
        match=prefix(R, "from_list") + r"arrays must be a list of per-segment arrays; got int",
    ):
        R.from_list(5)


@requires_cuda
def test_from_list_items_on_several_devices_without_device():
    with pytest.raises(
        ValueError, match=prefix(R, "from_list") + r"arrays are on several devices \(cpu, cuda:0\)"
    ):
        R.from_list([torch.zeros(2), torch.zeros(2, device="cuda")])


# ------------------------------------------------------------- RaggedImageBatch


def test_image_constructor_3d_values(place):
    with pytest.raises(
        ValueError,
        match=prefix(I) + r"items must be 3-D \(C, H, W\), so values must be 4-D \(N, C, H, W\); "
        r"got .*shape \(3, 2, 2\)",
    ):
        I(on(np.zeros((3, 2, 2)), place), [0, 3])


@pytest.mark.parametrize("shape", [(3, 2, 2), (3, 1, 2, 2, 1)], ids=["3d", "5d"])
def test_image_from_lengths_wrong_ndim(place, shape):
    with pytest.raises(
        ValueError, match=prefix(I, "from_lengths") + r"items must be 3-D \(C, H, W\)"
    ):
        I.from_lengths(on(np.zeros(shape), place), [1, 2])


def test_image_from_segment_ids_wrong_ndim(place):
    with pytest.raises(
        ValueError, match=prefix(I, "from_segment_ids") + r"items must be 3-D \(C, H, W\)"
    ):
        I.from_segment_ids(on(np.zeros((3, 2)), place), [0, 0, 1])


def test_image_from_padded_wrong_ndim(place):
    with pytest.raises(
        ValueError, match=prefix(I, "from_padded") + r"items must be 3-D \(C, H, W\)"
    ):
        I.from_padded(on(np.zeros((2, 3, 4, 4)), place), [1, 2])


@pytest.mark.parametrize("shape", [(3, 2), (3, 1, 2, 2, 1)], ids=["2d", "5d"])
def test_image_from_list_wrong_ndim(place, shape):
    with pytest.raises(
        ValueError,
        match=prefix(I, "from_list")
        + r"image arrays must be \(n_i, C, H, W\) or \(n_i, H, W\); "
        + rf"got arrays\[0\] of shape {re.escape(str(shape))}",
    ):
        I.from_list([on(np.zeros(shape), place)])


def test_image_from_list_empty_with_non_image_item_shape():
    with pytest.raises(ValueError, match=prefix(I, "from_list") + r"items must be 3-D"):
        I.from_list([], item_shape=(2, 2))


# ------------------------------------------------------------------ from_padded


def test_from_padded_lengths_longer_than_n_max(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_padded")
        + r"lengths must be <= padded.shape\[1\]=3; got lengths\[1\]=4",
    ):
        R.from_padded(on(np.zeros((2, 3)), place), [1, 4])


@pytest.mark.parametrize("count", [1, 3])
def test_from_padded_wrong_number_of_lengths(place, count):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_padded")
        + rf"lengths must have one entry per row of padded \(2\); got {count}",
    ):
        R.from_padded(on(np.zeros((2, 3)), place), [1] * count)


def test_from_padded_1d(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_padded")
        + r"padded must be \(m, n_max, \*item_shape\), at least 2-D; got .*shape \(3,\)",
    ):
        R.from_padded(on(np.zeros(3), place), [1, 1, 1])


def test_from_padded_negative_lengths(place):
    with pytest.raises(
        ValueError,
        match=prefix(R, "from_padded") + r"lengths must be non-negative; got lengths\[0\]=-1",
    ):
        R.from_padded(on(np.zeros((2, 3)), place), [-1, 1])


def test_from_padded_not_an_array():
    with pytest.raises(
        TypeError,
        match=prefix(R, "from_padded")
        + r"padded must be a numpy array or a torch tensor; got list",
    ):
        R.from_padded([[1, 2], [3, 4]], [1, 2])


# ------------------------------------------------------------------- indexing


@pytest.fixture
def ragged(place):
    """Two segments of lengths 2 and 3 on ``place``."""
    return R.from_lengths(on(np.arange(5.0), place), [2, 3])


@pytest.mark.parametrize("index", [2, 7, -3, np.int64(2), np.int32(-3)], ids=str)
def test_integer_index_out_of_range(ragged, index):
    with pytest.raises(
        IndexError,
        match=prefix(R, "__getitem__") + rf"segment index must be in \[-2, 2\); got {int(index)}$",
    ):
        ragged[index]


@pytest.mark.parametrize(
    "index", [[0, 2], [-3], np.array([1, 5])], ids=["list", "negative", "array"]
)
def test_index_array_out_of_range(ragged, index):
    with pytest.raises(
        IndexError, match=prefix(R, "__getitem__") + r"segment index out of range for 2 segments"
    ):
        ragged[index]


@pytest.mark.parametrize(
    "mask",
    [
        np.array([True]),
        [True, False, True],
        torch.tensor([True, False, True]),
        np.array([[True, False]]),
    ],
    ids=["numpy-short", "list-long", "torch-long", "numpy-2d"],
)
def test_boolean_mask_wrong_length(ragged, mask):
    with pytest.raises(
        IndexError,
        match=prefix(R, "__getitem__")
        + r"a boolean mask must have shape \(2,\), one entry per segment; got shape",
    ):
        ragged[mask]


@pytest.mark.parametrize(
    "index", [np.array([0.0, 1.0]), [0.0], torch.tensor([0.0])], ids=["numpy", "list", "torch"]
)
def test_float_index_array(ragged, index):
    with pytest.raises(
        IndexError,
        match=prefix(R, "__getitem__")
        + r"segment indices must be integers or booleans; got dtype float",
    ):
        ragged[index]


@pytest.mark.parametrize("index", [(0, 1), (0,), 1.0, True, None, "a"], ids=repr)
def test_index_of_the_wrong_kind(ragged, index):
    with pytest.raises(
        TypeError,
        match=prefix(R, "__getitem__")
        + r"index with an int, a slice, an index array or a boolean mask; got "
        + re.escape(type(index).__name__),
    ):
        ragged[index]


def test_index_array_2d(ragged):
    with pytest.raises(IndexError, match=prefix(R, "__getitem__") + r"an index array must be 1-D"):
        ragged[[[0, 1]]]


# ------------------------------------------------------------------------ cat


def test_cat_mismatched_item_shapes(place):
    x = R.from_lengths(on(np.zeros(3), place), [1, 2])
    y = R.from_lengths(on(np.zeros((3, 2)), place), [3])
    with pytest.raises(
        ValueError,
        match=r"^cat: all arrays must have the same item shape; "
        r"got \(\) for arrays\[0\] and \(2,\) for arrays\[1\]",
    ):
        ra.cat([x, y])


@pytest.mark.parametrize("order", ["numpy-torch", "torch-numpy"])
def test_cat_mismatched_backends(order):
    x = R.from_lengths(np.zeros(3), [1, 2])
    y = x.torch()
    pair = [x, y] if order == "numpy-torch" else [y, x]
    with pytest.raises(TypeError, match=r"^cat: .*must have the same backend; got "):
        ra.cat(pair)


@requires_cuda
def test_cat_mismatched_devices():
    x = R.from_lengths(torch.zeros(3), [1, 2])
    with pytest.raises(ValueError, match=r"^cat: .*must be on the same device; got "):
        ra.cat([x, x.cuda()])


def test_cat_empty():
    with pytest.raises(
        ValueError, match=r"^cat: needs at least one ragged array; got an empty list"
    ):
        ra.cat([])


def test_cat_not_ragged():
    x = R.from_lengths(np.zeros(3), [1, 2])
    with pytest.raises(TypeError, match=r"^cat: arrays\[1\] must be a RaggedArray; got ndarray"):
        ra.cat([x, np.zeros(3)])


# ------------------------------------------------------------------ to_padded


@pytest.mark.parametrize(
    ("dtype", "fill"),
    [
        ("int64", 0.5),
        ("int64", float("inf")),
        ("bool", 2),
        ("bool", -1),
        ("uint8", 300),
        ("uint8", -1),
        ("int64", 2**70),
    ],
)
def test_to_padded_fill_the_dtype_cannot_hold(place, dtype, fill):
    x = R.from_lengths(on(np.zeros(3, dtype=dtype), place), [1, 2])
    with pytest.raises(
        ValueError,
        match=prefix(R, "to_padded")
        + rf"fill must be representable in dtype (torch\.)?{dtype}; got {re.escape(repr(fill))}",
    ):
        x.to_padded(fill=fill)


@pytest.mark.parametrize(("dtype", "fill"), [("uint8", 255), ("uint8", 0), ("int64", -(2**63))])
def test_to_padded_fill_at_the_edge_of_the_range(place, dtype, fill):
    x = R.from_lengths(on(np.ones(3, dtype=dtype), place), [1, 2])
    padded, mask = x.to_padded(fill=fill)
    assert host(padded)[0, 1] == fill and not host(mask)[0, 1]


def test_to_padded_fill_not_a_number(place):
    x = R.from_lengths(on(np.zeros(3), place), [1, 2])
    with pytest.raises(TypeError, match=prefix(R, "to_padded") + r"fill must be a number; got str"):
        x.to_padded(fill="0")


def test_to_padded_negative_max_length(place):
    x = R.from_lengths(on(np.zeros(3), place), [1, 2])
    with pytest.raises(
        ValueError, match=prefix(R, "to_padded") + r"max_length must be >= 0; got -1"
    ):
        x.to_padded(max_length=-1)


@pytest.mark.parametrize("max_length", [1.5, "2", True])
def test_to_padded_max_length_not_an_int(max_length):
    x = R.from_lengths(np.zeros(3), [1, 2])
    with pytest.raises(
        TypeError, match=prefix(R, "to_padded") + r"max_length must be an int; got "
    ):
        x.to_padded(max_length=max_length)


# ------------------------------------------------- constructors leave inputs alone


def snapshot(obj):
    """A deep copy of arrays (and lists of arrays) to compare with afterwards."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(o) for o in obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    return obj


def assert_unchanged(before, after):
    if isinstance(before, (list, tuple)):
        assert type(after) is type(before)
        assert len(after) == len(before)
        for b, a in zip(before, after, strict=True):
            assert_unchanged(b, a)
        return
    if isinstance(before, (torch.Tensor, np.ndarray)):
        assert type(after) is type(before)
        assert tuple(after.shape) == tuple(before.shape)
        assert after.dtype == before.dtype
        np.testing.assert_array_equal(host(after), host(before))
        return
    assert after == before


def _inputs(place):
    """``name -> (constructor, args, exception type or None)``."""
    v5 = on(np.arange(10.0).reshape(5, 2), place)
    img = on(np.arange(24.0).reshape(3, 2, 4), place)  # (n, H, W) items
    padded = on(np.arange(12.0).reshape(2, 3, 2), place)
    return {
        "constructor": (R, (v5, on(np.array([0, 2, 5]), place)), None),
        "constructor-int32": (R, (v5, on(np.array([0, 2, 5], dtype=np.int32), place)), None),
        "constructor-list": (R, (v5, [0, 2, 5]), None),
        "constructor-decreasing": (R, (v5, on(np.array([0, 3, 2, 5]), place)), ValueError),
        "constructor-bad-end": (R, (v5, on(np.array([0, 2, 4]), place)), ValueError),
        "constructor-float": (R, (v5, on(np.array([0.0, 5.0]), place)), TypeError),
        "from_lengths": (R.from_lengths, (v5, on(np.array([2, 0, 3]), place)), None),
        "from_lengths-negative": (
            R.from_lengths,
            (v5, on(np.array([3, -1, 3]), place)),
            ValueError,
        ),
        "from_lengths-bad-sum": (R.from_lengths, (v5, [2, 2]), ValueError),
        "from_segment_ids": (
            R.from_segment_ids,
            (v5, on(np.array([0, 0, 2, 2, 2]), place), 4),
            None,
        ),
        "from_segment_ids-unsorted": (
            R.from_segment_ids,
            (v5, on(np.array([0, 2, 1, 2, 2]), place)),
            ValueError,
        ),
        "from_segment_ids-too-big": (
            R.from_segment_ids,
            (v5, on(np.array([0, 0, 2, 2, 3]), place), 3),
            ValueError,
        ),
        "from_list": (R.from_list, ([v5[:2], v5[:0], on(np.ones((1, 2)), place)],), None),
        "from_list-dtype": (
            functools.partial(R.from_list, dtype=np.float16),
            ([v5[:2], on(np.ones((1, 2)), place)],),
            None,
        ),
        "from_list-shapes": (R.from_list, ([v5[:2], on(np.ones((1, 3)), place)],), ValueError),
        "from_list-images": (I.from_list, ([img[:1], img[1:]],), None),
        "from_list-images-2d": (I.from_list, ([img[0], img[1]],), ValueError),
        "from_padded": (R.from_padded, (padded, on(np.array([3, 1]), place)), None),
        "from_padded-too-long": (R.from_padded, (padded, on(np.array([4, 1]), place)), ValueError),
    }


CASES = list(_inputs(("numpy", "cpu")))


@pytest.mark.parametrize("case", CASES)
def test_constructors_never_modify_their_inputs(place, case):
    build, args, error = _inputs(place)[case]
    before = snapshot(args)
    list_args = [a for a in args if isinstance(a, list)]
    ids_before = [[id(o) for o in a] for a in list_args]
    if error is None:
        build(*args)
    else:
        with pytest.raises(error, match=r"^Ragged(Array|ImageBatch)(\.\w+)?: "):
            build(*args)
    assert_unchanged(before, args)
    # lists keep the very same objects, in order
    assert [[id(o) for o in a] for a in list_args] == ids_before


# ------------------------------------------------------------------ requested dtypes and others


@pytest.mark.parametrize(
    ("items", "dtype", "rule"),
    [
        ("numpy", "U3", r"dtype must hold real numbers or booleans; got dtype <U3"),
        ("numpy", object, r"dtype must hold real numbers or booleans; got dtype object"),
        ("numpy", torch.bfloat16, r"dtype must be one numpy can hold .*; got torch\.bfloat16"),
        ("empty", torch.bfloat16, r"dtype must be one numpy can hold .*; got torch\.bfloat16"),
        ("torch", "float77", r"dtype must be one torch can hold .*; got 'float77'"),
        ("torch", "U3", r"dtype must be one torch can hold .*; got 'U3'"),
    ],
)
def test_from_list_requested_dtype_it_cannot_make(items, dtype, rule):
    arrays = {"numpy": [np.zeros(2)], "torch": [torch.zeros(2)], "empty": []}[items]
    with pytest.raises(TypeError, match=prefix(R, "from_list") + rule):
        R.from_list(arrays, dtype=dtype)


def test_num_segments_negative():
    with pytest.raises(
        ValueError, match=prefix(R, "from_segment_ids") + r"num_segments must be >= 0; got -1"
    ):
        R.from_segment_ids(np.zeros(0), [], num_segments=-1)


def test_slice_step_zero(ragged):
    with pytest.raises(ValueError, match=r"__getitem__: slice step must not be zero"):
        ragged[::0]


def test_cat_message_names_both_arrays():
    x = R.from_lengths(np.zeros(3), [1, 2])
    with pytest.raises(TypeError, match=r"^cat: arrays\[0\] and arrays\[1\] must have the same"):
        ra.cat([x, x.torch()])
