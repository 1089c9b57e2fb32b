"""A table of hostile inputs, one row per malformed call of a public entry point.

Every row asserts the exception type; the message shape ``"<public function>: <what must
hold>; got <what was seen>"`` (the function the user called, named once); a short message
that prints no array contents; and that the inputs are unchanged afterwards.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import struct
import tempfile

import numpy as np
import pytest
import torch
from conftest import CUDA

import raggedarray as ra
from raggedarray import data as rdata
from raggedarray import nn as rnn

R = ra.RaggedArray
I = ra.RaggedImageBatch  # noqa: E741
BIG = 2**63 - 1
U64_MAX = np.array([2**64 - 1], dtype=np.uint64)


def xf():
    """3 segments (2, 0, 3) of float64 pairs, numpy."""
    return R.from_lengths(np.arange(10.0).reshape(5, 2), [2, 0, 3])


def xt():
    return R.from_lengths(torch.arange(10.0).reshape(5, 2), [2, 0, 3])


def x32():
    return R.from_lengths(np.arange(5, dtype=np.float32), [2, 0, 3])


def xi():
    return R.from_lengths(np.arange(5), [2, 0, 3])


def xu8():
    return R.from_lengths(np.arange(5, dtype=np.uint8), [2, 0, 3])


def img():
    return I.from_lengths(torch.zeros(3, 1, 2, 2), [1, 2])


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def sparse():
    return torch.eye(3).to_sparse()


def nested():
    return torch.nested.nested_tensor([torch.zeros(2, 2), torch.zeros(3, 2)], layout=torch.jagged)


def strided_nested():
    return torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])


def meta():
    return torch.zeros(3, 2, device="meta")


def folder():
    return tempfile.mkdtemp(prefix="hostile-")


def saved(obj=None):
    path = os.path.join(folder(), "x.safetensors")
    ra.save(path, xf() if obj is None else obj)
    return path


def corrupt(edit):
    """A file ``save`` wrote, with its bytes passed through ``edit``."""
    path = saved()
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    with open(path, "wb") as f:
        f.write(bytes(edit(raw)))
    return path


def header_of(raw):
    (n,) = struct.unpack("<Q", bytes(raw[:8]))
    return n, json.loads(bytes(raw[8 : 8 + n]))


def with_header(raw, change):
    n, header = header_of(raw)
    change(header)
    text = json.dumps(header).encode()
    text += b" " * max(0, n - len(text))
    return struct.pack("<Q", len(text)) + text + bytes(raw[8 + n :])


def flip_bit(raw):
    raw[12] ^= 0x80
    return raw


def forge_offsets(raw):
    """Offsets [0, 2, 2, 5] rewritten as [0, 4, 2, 5] in place (the header unchanged)."""
    n, header = header_of(raw)
    start = 8 + n + header["offsets"]["data_offsets"][0]
    raw[start + 8 : start + 16] = struct.pack("<q", 4)
    return raw


def forge_offsets_huge(raw):
    n, header = header_of(raw)
    start = 8 + n + header["offsets"]["data_offsets"][0]
    raw[start + 8 : start + 16] = struct.pack("<q", BIG)
    return raw


def call(name):
    """A function calling method ``name`` on its first argument."""

    def method(x, *args, **kwargs):
        return getattr(x, name)(*args, **kwargs)

    return method


def index(x, key):
    return x[key]


def assign(x, key, value):
    x[key] = value


def collate_dicts_missing():
    return [{"a": np.zeros((2, 3)), "b": 1}, {"a": np.zeros((1, 3))}]


def ds_workers(ds):
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=rdata.collate)
    return list(loader)


CASES = []


def case(id, exc, where, fn, *args, **kwargs):
    """One row: ``fn(*args(), **kwargs)`` raises ``exc`` with a message naming ``where``.

    ``args`` are zero-argument factories (or plain values) so that each run builds fresh inputs.
    """
    CASES.append(pytest.param(exc, where, fn, args, kwargs, id=id))


def a(*shape, dtype=np.float64):
    return functools.partial(np.zeros, shape, dtype)


# ------------------------------------------------------------------ constructors
V52 = a(5, 2)
case("init-list-values", TypeError, "RaggedArray", R, lambda: [1.0, 2.0], lambda: [0, 2])
case("init-0d", ValueError, "RaggedArray", R, lambda: np.zeros(()), lambda: [0])
case("init-object", TypeError, "RaggedArray", R, lambda: np.array([1, "a"], object), lambda: [0, 2])
case("init-str", TypeError, "RaggedArray", R, lambda: np.array(["ab", "c"]), lambda: [0, 2])
case("init-complex", TypeError, "RaggedArray", R, lambda: np.zeros(2, complex), lambda: [0, 2])
case(
    "init-complex-t",
    TypeError,
    "RaggedArray",
    R,
    lambda: torch.zeros(2, dtype=torch.cfloat),
    lambda: torch.tensor([0, 2]),
)
case("init-datetime", TypeError, "RaggedArray", R, lambda: np.zeros(2, "M8[s]"), lambda: [0, 2])
case("init-big-endian", TypeError, "RaggedArray", R, a(5, 2, dtype=">f4"), lambda: [0, 5])
case("init-longdouble", TypeError, "RaggedArray", R, a(5, dtype=np.longdouble), lambda: [0, 5])
case(
    "init-float8",
    TypeError,
    "RaggedArray",
    R,
    lambda: torch.zeros(5, dtype=torch.float8_e4m3fn),
    lambda: torch.tensor([0, 5]),
)
case("init-masked", TypeError, "RaggedArray", R, lambda: np.ma.zeros(5), lambda: [0, 5])
case(
    "lengths-masked",
    TypeError,
    "RaggedArray.from_lengths",
    R.from_lengths,
    lambda: np.ma.zeros(5),
    [5],
)
case("init-off-float", TypeError, "RaggedArray", R, V52, lambda: np.array([0.0, 5.0]))
case("init-off-2d", ValueError, "RaggedArray", R, V52, lambda: np.array([[0, 5]]))
case("init-off-0d", ValueError, "RaggedArray", R, V52, lambda: np.array(5))
case("init-off-start", ValueError, "RaggedArray", R, V52, lambda: [1, 5])
case("init-off-decreasing", ValueError, "RaggedArray", R, V52, lambda: [0, 4, 2, 5])
case("init-off-end", ValueError, "RaggedArray", R, V52, lambda: [0, 2, 4])
case("init-off-empty", ValueError, "RaggedArray", R, V52, lambda: [])
case("init-off-big", ValueError, "RaggedArray", R, V52, lambda: np.array([0, BIG, 5]))
case(
    "init-off-u64",
    ValueError,
    "RaggedArray",
    R,
    V52,
    lambda: np.array([0, 2**64 - 1, 5], np.uint64),
)
case("init-off-pyint", ValueError, "RaggedArray", R, V52, lambda: [0, 2**64 - 1, 5])
case("init-off-hugeint", ValueError, "RaggedArray", R, V52, lambda: [0, 2**70, 5])
case("init-off-bool", TypeError, "RaggedArray", R, V52, lambda: np.array([False, True]))
case("init-off-ragged", ValueError, "RaggedArray", R, V52, lambda: [[0, 1], [5]])
case("init-off-str", TypeError, "RaggedArray", R, V52, lambda: "0,5")
case("init-off-none", TypeError, "RaggedArray", R, V52, lambda: None)
case("init-np-torch", TypeError, "RaggedArray", R, V52, lambda: torch.tensor([0, 5]))
case("init-torch-np", TypeError, "RaggedArray", R, lambda: torch.zeros(5), lambda: np.array([0, 5]))
case("init-sparse", TypeError, "RaggedArray", R, sparse, lambda: torch.tensor([0, 3]))
case("init-nested", TypeError, "RaggedArray", R, nested, lambda: torch.tensor([0, 2]))
case("init-meta", ValueError, "RaggedArray", R, meta, lambda: torch.tensor([0, 3]))
case("init-image-2d", ValueError, "RaggedImageBatch", I, V52, lambda: [0, 5])
case("init-image-list", TypeError, "RaggedImageBatch", I, lambda: [[1.0]], lambda: [0, 1])

FL = "RaggedArray.from_list"
case("fl-int", TypeError, FL, R.from_list, 5)
case("fl-one-array", TypeError, FL, R.from_list, a(3, 2))
case("fl-none", TypeError, FL, R.from_list, None)
case("fl-shapes", ValueError, FL, R.from_list, lambda: [np.zeros((2, 3)), np.zeros((2, 4))])
case("fl-ndims", ValueError, FL, R.from_list, lambda: [np.zeros((2, 3)), np.zeros(2)])
case("fl-0d", ValueError, FL, R.from_list, lambda: [np.zeros(()), np.zeros(())])
case("fl-strings", TypeError, FL, R.from_list, lambda: [np.array(["a", "b"])])
case("fl-object", TypeError, FL, R.from_list, lambda: [np.array([1, None], object)])
case("fl-complex", TypeError, FL, R.from_list, lambda: [np.zeros(2, complex)])
case("fl-ragged-item", ValueError, FL, R.from_list, lambda: [[[1, 2], [3]]])
case("fl-longdouble", TypeError, FL, R.from_list, lambda: [np.zeros(2, np.longdouble)])
case(
    "fl-longdouble-t",
    TypeError,
    FL,
    R.from_list,
    lambda: [np.zeros(2, np.longdouble)],
    device="cpu",
)
case("fl-float8", TypeError, FL, R.from_list, lambda: [torch.zeros(2, dtype=torch.float8_e5m2)])
case("fl-masked", TypeError, FL, R.from_list, lambda: [np.zeros(2), np.ma.zeros(2)])
case("fl-str", TypeError, FL, R.from_list, lambda: "abc")
case("fl-dict", TypeError, FL, R.from_list, lambda: {"a": np.zeros(2)})
case("fl-none-item", TypeError, FL, R.from_list, lambda: [np.zeros(2), None])
case("fl-str-item", TypeError, FL, R.from_list, lambda: ["ab"])
case("fl-strided-nested", TypeError, FL, R.from_list, lambda: [strided_nested()])
case("fl-mixed-nested", TypeError, FL, R.from_list, lambda: [np.zeros(2), strided_nested()])
case("fl-ragged-array", TypeError, FL, R.from_list, lambda: [xf()])
case("fl-nested", TypeError, FL, R.from_list, lambda: [torch.zeros(2, 2), nested()])
case("fl-dtype-U3", TypeError, FL, R.from_list, lambda: [np.zeros(2)], dtype="U3")
case("fl-dtype-object", TypeError, FL, R.from_list, lambda: [np.zeros(2)], dtype=object)
case("fl-dtype-junk", TypeError, FL, R.from_list, lambda: [np.zeros(2)], dtype="nonsense")
case(
    "fl-dtype-complex-t",
    TypeError,
    FL,
    R.from_list,
    lambda: [torch.zeros(2)],
    dtype=torch.complex64,
)
case("fl-device-gpu9", ValueError, FL, R.from_list, lambda: [np.zeros(2)], device="gpu9")
case("fl-device-float", TypeError, FL, R.from_list, lambda: [np.zeros(2)], device=1.5)
case("fl-device-neg", ValueError, FL, R.from_list, lambda: [np.zeros(2)], device=-1)
if not CUDA:
    case("fl-device-cuda", ValueError, FL, R.from_list, lambda: [np.zeros(2)], device="cuda")
    case("fl-device-cuda1", ValueError, FL, R.from_list, lambda: [torch.zeros(2)], device="cuda:1")
case("fl-item-shape-int", TypeError, FL, R.from_list, lambda: [np.zeros(2)], item_shape=5)
case("fl-item-shape-neg", ValueError, FL, R.from_list, lambda: [], item_shape=(-1,))
for _device in (None, "cpu"):  # numpy's and torch's own errors, before
    for _shape in [(2**62, 2**62), (0, 2**62, 2**62), (2**60,)]:
        case(
            f"fl-item-shape-huge-{_shape}-{_device}",
            ValueError,
            FL,
            R.from_list,
            lambda: [],
            item_shape=_shape,
            device=_device,
        )
case(
    "fl-item-shape-other", ValueError, FL, R.from_list, lambda: [np.zeros((2, 3))], item_shape=(4,)
)
case("fl-sparse", TypeError, FL, R.from_list, lambda: [sparse()])
case("fl-meta", ValueError, FL, R.from_list, lambda: [meta()])
case(
    "fl-image-2d", ValueError, "RaggedImageBatch.from_list", I.from_list, lambda: [np.zeros((2, 3))]
)

FLN = "RaggedArray.from_lengths"
case("len-overflow", ValueError, FLN, R.from_lengths, V52, lambda: np.array([BIG, BIG, 7]))
case("len-u64", ValueError, FLN, R.from_lengths, V52, lambda: np.array([2**64 - 1, 6], np.uint64))
case(
    "len-u32-ok-sum",
    ValueError,
    FLN,
    R.from_lengths,
    V52,
    lambda: np.array([2**32 - 1, 1], np.uint32),
)
case("len-pyint", ValueError, FLN, R.from_lengths, V52, lambda: [2**64 - 1, 6])
case("len-negative", ValueError, FLN, R.from_lengths, V52, lambda: [-1, 6])
case("len-float", TypeError, FLN, R.from_lengths, V52, lambda: [2.0, 3.0])
case("len-bool", TypeError, FLN, R.from_lengths, V52, lambda: [True, False])
case("len-bool-t", TypeError, FLN, R.from_lengths, V52, lambda: torch.tensor([True, False]))
case("len-sum", ValueError, FLN, R.from_lengths, V52, lambda: [2, 2])
case("len-2d", ValueError, FLN, R.from_lengths, V52, lambda: [[2, 3]])
case("len-scalar", ValueError, FLN, R.from_lengths, V52, 5)
case("len-str", TypeError, FLN, R.from_lengths, V52, "23")
case("len-none", TypeError, FLN, R.from_lengths, V52, None)
case("len-ragged", ValueError, FLN, R.from_lengths, V52, lambda: [[2], [3, 0]])
case("len-values-list", TypeError, FLN, R.from_lengths, lambda: [1.0, 2.0], lambda: [2])
case("len-values-sparse", TypeError, FLN, R.from_lengths, sparse, lambda: [3])
case("len-values-meta", ValueError, FLN, R.from_lengths, meta, lambda: [3])
case("len-values-nested", TypeError, FLN, R.from_lengths, nested, lambda: [2])
case("len-values-torch-off", TypeError, FLN, R.from_lengths, V52, lambda: torch.tensor([5.0]))

FS = "RaggedArray.from_segment_ids"
case("ids-unsorted", ValueError, FS, R.from_segment_ids, V52, lambda: [0, 1, 0, 1, 1])
case("ids-negative", ValueError, FS, R.from_segment_ids, V52, lambda: [-1, 0, 0, 0, 0])
case("ids-u64", ValueError, FS, R.from_segment_ids, V52, lambda: np.full(5, 2**64 - 1, np.uint64))
case("ids-huge", ValueError, FS, R.from_segment_ids, V52, lambda: np.array([0, 0, 0, 0, 2**62]))
case("ids-float", TypeError, FS, R.from_segment_ids, V52, lambda: np.zeros(5))
case("ids-bool", TypeError, FS, R.from_segment_ids, V52, lambda: np.zeros(5, bool))
case("ids-count", ValueError, FS, R.from_segment_ids, V52, lambda: [0, 0, 1])
case("ids-num-bool", TypeError, FS, R.from_segment_ids, V52, lambda: [0] * 5, num_segments=True)
case("ids-num-neg", ValueError, FS, R.from_segment_ids, V52, lambda: [0] * 5, num_segments=-1)
case(
    "ids-num-small",
    ValueError,
    FS,
    R.from_segment_ids,
    V52,
    lambda: [0, 0, 1, 1, 2],
    num_segments=2,
)
case("ids-num-huge", ValueError, FS, R.from_segment_ids, V52, lambda: [0] * 5, num_segments=2**70)
case("ids-num-float", TypeError, FS, R.from_segment_ids, V52, lambda: [0] * 5, num_segments=2.0)

FP = "RaggedArray.from_padded"
P = a(2, 3, 2)
case("pad-list", TypeError, FP, R.from_padded, lambda: [[1, 2]], lambda: [1])
case("pad-1d", ValueError, FP, R.from_padded, a(3), lambda: [1])
case("pad-too-long", ValueError, FP, R.from_padded, P, lambda: [4, 1])
case("pad-count", ValueError, FP, R.from_padded, P, lambda: [1, 1, 1])
case("pad-negative", ValueError, FP, R.from_padded, P, lambda: [-1, 1])
case("pad-overflow", ValueError, FP, R.from_padded, P, lambda: np.array([BIG, BIG]))
case("pad-u64", ValueError, FP, R.from_padded, P, lambda: np.array([2**64 - 1, 1], np.uint64))
case("pad-float", TypeError, FP, R.from_padded, P, lambda: [1.0, 1.0])
case(
    "pad-mask-prefix",
    ValueError,
    FP,
    R.from_padded,
    P,
    lambda: np.array([[0, 1, 0], [1, 0, 0]], bool),
)
case("pad-mask-shape", ValueError, FP, R.from_padded, P, lambda: np.ones((2, 2), bool))
case("pad-object", TypeError, FP, R.from_padded, lambda: np.zeros((2, 2), object), lambda: [1, 1])
case(
    "pad-sparse",
    TypeError,
    FP,
    R.from_padded,
    lambda: torch.zeros(2, 3).to_sparse(),
    lambda: [1, 1],
)
case(
    "pad-image-shape", ValueError, "RaggedImageBatch.from_padded", I.from_padded, P, lambda: [1, 1]
)

FA = "RaggedArray.from_awkward"
ak = pytest.importorskip("awkward")
case("ak-numpy", TypeError, FA, R.from_awkward, a(3))
case("ak-records", TypeError, FA, R.from_awkward, lambda: ak.Array([[{"a": 1}], []]))
case("ak-strings", TypeError, FA, R.from_awkward, lambda: ak.Array([["ab"], []]))
case("ak-missing", ValueError, FA, R.from_awkward, lambda: ak.Array([[1, None], []]))
case("ak-two-ragged", ValueError, FA, R.from_awkward, lambda: ak.Array([[[1], [2, 3]], []]))
case("ak-flat", TypeError, FA, R.from_awkward, lambda: ak.Array([1, 2, 3]))
FN = "RaggedArray.from_nested"
case("nested-dense", TypeError, FN, R.from_nested, lambda: torch.zeros(2, 3))
case("nested-list", TypeError, FN, R.from_nested, lambda: [torch.zeros(2)])
case(
    "nested-meta",
    ValueError,
    FN,
    R.from_nested,
    lambda: torch.nested.nested_tensor_from_jagged(
        torch.zeros(4, device="meta"), torch.tensor([0, 2, 4], device="meta")
    ),
)


def jagged(offsets, lengths=None):
    """A jagged nested tensor over 8 values with the given (possibly invalid) offsets."""
    lengths = None if lengths is None else torch.tensor(lengths)
    return lambda: torch.nested.nested_tensor_from_jagged(
        torch.arange(8.0), torch.tensor(offsets), lengths=lengths
    )


case("nested-decreasing", ValueError, FN, R.from_nested, jagged([0, 5, 3]))
case("nested-past-end", ValueError, FN, R.from_nested, jagged([0, 5, 20]))
case("nested-negative", ValueError, FN, R.from_nested, jagged([-2, 5, 6]))
case("nested-hole-negative", ValueError, FN, R.from_nested, jagged([0, 2, 4], [2, -1]))
case("nested-hole-past-end", ValueError, FN, R.from_nested, jagged([0, 2, 4], [2, 9]))

# ---------------------------------------------------------------------- indexing
GI = "RaggedArray.__getitem__"
SI = "RaggedArray.__setitem__"
case("set-slice", TypeError, SI, assign, xf, slice(0, 1), 0.0)
case("set-bool", TypeError, SI, assign, xt, True, 0.0)
case("set-list-key", TypeError, SI, assign, xf, lambda: [0], 0.0)
case("set-high", IndexError, SI, assign, xf, 3, 0.0)
case("set-length", ValueError, SI, assign, xf, 0, a(3, 2))
case("set-item-shape", ValueError, SI, assign, xt, 0, lambda: torch.zeros(2, 3))
case("set-cast", TypeError, SI, assign, xi, 0, lambda: np.array([0.5, 1.5]))
case("set-cast-t", TypeError, SI, assign, lambda: xt().long(), 0, lambda: torch.zeros(2, 2))
case("set-backend", TypeError, SI, assign, xf, 0, lambda: torch.zeros(2, 2))
case("set-backend-t", TypeError, SI, assign, xt, 0, a(2, 2))
case("set-str", TypeError, SI, assign, xt, 0, "a")
case("set-u8-300", ValueError, SI, assign, xu8, 0, 300)
case("set-u8-300-t", ValueError, SI, assign, lambda: xu8().torch(), 0, 300)
case("set-u8-minus-1-t", ValueError, SI, assign, lambda: xu8().torch(), 0, -1)
case("set-int-2**64", ValueError, SI, assign, xi, 0, 2**64)
case("set-float-into-int", TypeError, SI, assign, xi, 0, 2.0)
case("set-float-into-int-t", TypeError, SI, assign, lambda: xi().torch(), 0, 1.5)
case("set-int-into-bool-t", TypeError, SI, assign, lambda: xi().torch().bool(), 0, 1)
case("set-f16-huge", ValueError, SI, assign, lambda: xt().half(), 0, 1e40)
case("set-read-only", ValueError, SI, assign, lambda: R(readonly(np.zeros(3)), [0, 3]), 0, 1.0)
# values that are not plain arrays: torch's own errors came through, a mask was dropped
case("set-sparse", TypeError, SI, assign, xt, 0, lambda: torch.zeros(2, 2).to_sparse())
case("set-nested", TypeError, SI, assign, xt, 0, nested)
case("set-float8", TypeError, SI, assign, xt, 0, lambda: torch.zeros(2, 2).to(torch.float8_e4m3fn))
case("set-masked", TypeError, SI, assign, xf, 0, lambda: np.ma.masked_array(np.ones((2, 2)), True))
case("idx-high", IndexError, GI, index, xf, 3)
case("idx-bfloat16", IndexError, GI, index, xt, lambda: torch.tensor([1], dtype=torch.bfloat16))
case("idx-low", IndexError, GI, index, xf, -4)
case("idx-u64", IndexError, GI, index, xf, lambda: U64_MAX.copy())
case("idx-u64-scalar", IndexError, GI, index, xf, np.uint64(2**64 - 1))
case("idx-big", IndexError, GI, index, xf, lambda: np.array([BIG]))
case("idx-pyhuge", IndexError, GI, index, xf, lambda: [2**70])
case("idx-ragged-list", IndexError, GI, index, xf, lambda: [0, [1, 2]])
case("idx-float", TypeError, GI, index, xf, 0.5)
case("idx-float-slice", TypeError, GI, index, xf, slice(0.5, 2))
case("idx-str-slice", TypeError, GI, index, xf, slice(None, None, "a"))
case("idx-str", TypeError, GI, index, xf, "a")
case("idx-none", TypeError, GI, index, xf, None)
case("idx-tuple", TypeError, GI, index, xf, (0, 1))
case("idx-ragged", TypeError, GI, index, xf, xf)
case("idx-bool", TypeError, GI, index, xf, True)
# a 0-d boolean among ints: numpy reads it as 1, which selected segment 1
case("idx-bool-mixed", TypeError, GI, index, xf, lambda: [True, 0])
case("idx-0d-bool-mixed", TypeError, GI, index, xf, lambda: [np.array(True), 0])
case("idx-0d-bool-tensor-mixed", TypeError, GI, index, xt, lambda: [torch.tensor(True), 0])
case("idx-mask-short", IndexError, GI, index, xf, lambda: np.array([True, False]))
case("idx-2d", IndexError, GI, index, xf, lambda: np.zeros((2, 2), int))
case("idx-float-array", IndexError, GI, index, xf, lambda: np.array([0.5]))
case("idx-step0", ValueError, GI, index, xf, slice(None, None, 0))
case("idx-tensor-out", IndexError, GI, index, xt, lambda: torch.tensor([5]))
case("idx-0d-out", IndexError, GI, index, xf, lambda: np.array(5))
case("idx-dict", TypeError, GI, index, xf, lambda: {0: 1})

# --------------------------------------------------------------------------- map
MP = "RaggedArray.map"
case("map-int", TypeError, MP, call("map"), xf, 5)
case("map-dim0", ValueError, MP, call("map"), xf, lambda: lambda c: c[:1])
case("map-scalar", TypeError, MP, call("map"), xf, lambda: lambda c: 5)
case("map-0d", TypeError, MP, call("map"), xf, lambda: lambda c: c.sum())
case("map-strings", TypeError, MP, call("map"), xf, lambda: lambda c: np.array(["a"] * len(c)))
case("map-object", TypeError, MP, call("map"), xf, lambda: lambda c: c.astype(object))
case("map-complex", TypeError, MP, call("map"), xf, lambda: lambda c: c.astype(complex))
case("map-float8", TypeError, MP, call("map"), xt, lambda: lambda c: c.to(torch.float8_e4m3fn))
case("map-sparse", TypeError, MP, call("map"), xt, lambda: lambda c: c.to_sparse())
case("map-nested", TypeError, MP, call("map"), xt, lambda: lambda c: strided_nested())
case("map-meta", ValueError, MP, call("map"), xt, lambda: lambda c: c.to("meta"))
case("map-chunk0", ValueError, MP, call("map"), xf, lambda: np.abs, chunk_size=0)
case("map-chunk-bool", TypeError, MP, call("map"), xf, lambda: np.abs, chunk_size=True)
case("map-chunk-float", TypeError, MP, call("map"), xf, lambda: np.abs, chunk_size=2.5)
case("map-chunk-huge", ValueError, MP, call("map"), xf, lambda: np.abs, chunk_size=2**70)
case("map-gpu9", ValueError, MP, call("map"), xf, lambda: np.abs, device="gpu9")
case("map-device-float", TypeError, MP, call("map"), xf, lambda: np.abs, device=1.5)
if not CUDA:
    case("map-cuda", ValueError, MP, call("map"), xf, lambda: np.abs, device="cuda")

# -------------------------------------------------------------------- reductions
for op in ("sum", "mean", "max", "min", "prod", "logsumexp", "var", "std"):
    W = f"RaggedArray.{op}"
    case(f"{op}-fill-str", TypeError, W, call(op), xf, fill="a")
    case(f"{op}-fill-complex", TypeError, W, call(op), xf, fill=1j)
    case(f"{op}-fill-array", TypeError, W, call(op), xf, fill=lambda: np.zeros(2))
    case(f"{op}-fill-f32", ValueError, W, call(op), x32, fill=1e39)
case("sum-fill-int-overflow", ValueError, "RaggedArray.sum", call("sum"), xi, fill=2**70)
case("max-fill-u8", ValueError, "RaggedArray.max", call("max"), xu8, fill=300)
case("min-fill-frac", ValueError, "RaggedArray.min", call("min"), xi, fill=0.5)
case("var-correction-bool", TypeError, "RaggedArray.var", call("var"), xf, correction=True)
case("var-correction-huge", ValueError, "RaggedArray.var", call("var"), xf, correction=2**70)
case("var-correction-neg", ValueError, "RaggedArray.var", call("var"), xf, correction=-1)
case("var-correction-nan", ValueError, "RaggedArray.var", call("var"), xf, correction=float("nan"))
case("std-correction-str", TypeError, "RaggedArray.std", call("std"), xf, correction="1")
case(
    "sum-u64-big",
    ValueError,
    "RaggedArray.sum",
    call("sum"),
    lambda: R.from_lengths(U64_MAX.copy(), [1]),
)

SEG = [0, 2, 2, 5]
case("ssum-list", TypeError, "segment_sum", ra.segment_sum, lambda: [1.0, 2.0], lambda: [0, 2])
case(
    "ssum-overflow", ValueError, "segment_sum", ra.segment_sum, a(5), lambda: np.array([0, BIG, 5])
)
case(
    "ssum-u64",
    ValueError,
    "segment_sum",
    ra.segment_sum,
    a(5),
    lambda: np.array([0, 2**64 - 1, 5], np.uint64),
)
case("ssum-off-float", TypeError, "segment_sum", ra.segment_sum, a(5), lambda: [0.0, 5.0])
case("ssum-off-end", ValueError, "segment_sum", ra.segment_sum, a(5), lambda: [0, 4])
case("smax-off-bool", TypeError, "segment_max", ra.segment_max, a(5), lambda: [False, True])
case("smin-off-2d", ValueError, "segment_min", ra.segment_min, a(5), lambda: [[0, 5]])
case("svar-correction", ValueError, "segment_var", ra.segment_var, a(5), lambda: SEG, correction=-1)
case(
    "sstd-correction", TypeError, "segment_std", ra.segment_std, a(5), lambda: SEG, correction=True
)
case(
    "ssum-object",
    TypeError,
    "segment_sum",
    ra.segment_sum,
    lambda: np.zeros(5, object),
    lambda: SEG,
)
case("ssum-big-endian", TypeError, "segment_sum", ra.segment_sum, a(5, dtype=">f8"), lambda: SEG)
case(
    "ssum-float8",
    TypeError,
    "segment_sum",
    ra.segment_sum,
    lambda: torch.zeros(5, dtype=torch.float8_e4m3fn),
    lambda: SEG,
)
case(
    "ssum-complex",
    TypeError,
    "segment_sum",
    ra.segment_sum,
    lambda: np.zeros(5, complex),
    lambda: SEG,
)
case(
    "ssum-sparse",
    TypeError,
    "segment_sum",
    ra.segment_sum,
    lambda: torch.zeros(5, 2).to_sparse(),
    lambda: SEG,
)
case("ssum-meta", ValueError, "segment_sum", ra.segment_sum, meta, lambda: [0, 3])
case("sprod-fill", TypeError, "segment_prod", ra.segment_prod, a(5), lambda: SEG, fill="x")
case(
    "slogsoftmax-off",
    ValueError,
    "segment_log_softmax",
    ra.segment_log_softmax,
    a(5),
    lambda: [0, 6],
)
case("sbroadcast-rows", ValueError, "segment_broadcast", ra.segment_broadcast, a(2), lambda: SEG)
case("sbroadcast-0d", ValueError, "segment_broadcast", ra.segment_broadcast, a(), lambda: SEG)
case(
    "broadcast-0d",
    ValueError,
    "RaggedArray.broadcast",
    call("broadcast"),
    xt,
    lambda: torch.tensor(1.0),
)
case(
    "sbroadcast-list",
    TypeError,
    "segment_broadcast",
    ra.segment_broadcast,
    lambda: [1.0],
    lambda: [0, 1],
)
case(
    "sbroadcast-u64",
    ValueError,
    "segment_broadcast",
    ra.segment_broadcast,
    a(1),
    lambda: np.array([0, 2**64 - 1], np.uint64),
)
for bad_items, kind in ((True, TypeError), (3.0, TypeError), ("3", TypeError), (-1, ValueError)):
    case(
        f"sbroadcast-num-items-{bad_items!r}",
        kind,
        "segment_broadcast",
        ra.segment_broadcast,
        a(1),
        lambda: [0, 3],
        num_items=bad_items,
    )
case(
    "sbroadcast-num-items-mismatch",
    ValueError,
    "segment_broadcast",
    ra.segment_broadcast,
    a(1),
    lambda: [0, 3],
    num_items=4,
)

# ------------------------------------------------------------- softmax, broadcast
case("broadcast-rows", ValueError, "RaggedArray.broadcast", call("broadcast"), xf, a(2))
case(
    "broadcast-backend",
    TypeError,
    "RaggedArray.broadcast",
    call("broadcast"),
    xf,
    lambda: torch.zeros(3),
)
case(
    "broadcast-list",
    TypeError,
    "RaggedArray.broadcast",
    call("broadcast"),
    xf,
    lambda: [1.0, 2.0, 3.0],
)
case(
    "broadcast-0d", ValueError, "RaggedArray.broadcast", call("broadcast"), xf, lambda: np.zeros(())
)
case(
    "broadcast-object",
    TypeError,
    "RaggedArray.broadcast",
    call("broadcast"),
    xf,
    lambda: np.zeros(3, object),
)

# --------------------------------------------------------------------- movement
TO = "RaggedArray.to"
case("to-object", TypeError, TO, call("to"), xf, dtype=object)
case("to-U3", TypeError, TO, call("to"), xf, dtype="U3")
case("to-t-object", TypeError, TO, call("to"), xt, dtype=object)
case("to-junk", TypeError, TO, call("to"), xf, dtype="nonsense")
case("to-complex", TypeError, TO, call("to"), xf, dtype=np.complex64)
AS = "RaggedArray.astype"
case("astype-none", TypeError, AS, call("astype"), xf, None)  # (numpy's None is float64)
case("astype-junk", TypeError, AS, call("astype"), xf, "nonsense")
case("astype-t-object", TypeError, AS, call("astype"), xt, object)
case("to-complex-t", TypeError, TO, call("to"), xt, dtype=torch.complex64)
case("to-big-endian", TypeError, TO, call("to"), xf, dtype=">f4")
case("to-longdouble", TypeError, TO, call("to"), xf, dtype=np.longdouble)
case("to-float8", TypeError, TO, call("to"), xt, dtype=torch.float8_e4m3fn)
case("to-gpu9", ValueError, TO, call("to"), xf, device="gpu9")
case("to-device-float", TypeError, TO, call("to"), xt, device=1.5)
case("to-meta", ValueError, TO, call("to"), xt, device="meta")
if not CUDA:
    case("to-cuda", ValueError, TO, call("to"), xf, device="cuda")
    case("cuda", ValueError, "RaggedArray.cuda", call("cuda"), xf)
    case("pin-memory", ValueError, "RaggedArray.pin_memory", call("pin_memory"), xf)
case(
    "numpy-grad",
    TypeError,
    "RaggedArray.numpy",
    call("numpy"),
    lambda: R.from_lengths(torch.zeros(3, requires_grad=True), [3]),
)
case(
    "numpy-bf16",
    TypeError,
    "RaggedArray.numpy",
    call("numpy"),
    lambda: xt().to(dtype=torch.bfloat16),
)
TP = "RaggedArray.to_padded"
case("pad-max-neg", ValueError, TP, call("to_padded"), xf, max_length=-1)
case("pad-max-bool", TypeError, TP, call("to_padded"), xf, max_length=True)
case("pad-max-float", TypeError, TP, call("to_padded"), xf, max_length=2.0)
case("pad-max-huge", ValueError, TP, call("to_padded"), xf, max_length=2**70)
case("pad-fill-str", TypeError, TP, call("to_padded"), xf, fill="a")
case("pad-fill-complex", TypeError, TP, call("to_padded"), xf, fill=1j)
case("pad-fill-f32", ValueError, TP, call("to_padded"), x32, fill=1e39)
case("pad-fill-u8", ValueError, TP, call("to_padded"), xu8, fill=300)
case(
    "pad-fill-torch-f32",
    ValueError,
    TP,
    call("to_padded"),
    lambda: xt().to(dtype=torch.float32),
    fill=-1e39,
)

# ------------------------------------------------------------------------- cat
case("cat-int", TypeError, "cat", ra.cat, 5)
case("cat-none", TypeError, "cat", ra.cat, None)
case("cat-empty", ValueError, "cat", ra.cat, lambda: [])
case("cat-array", TypeError, "cat", ra.cat, lambda: [xf(), np.zeros(3)])
case("cat-item-shape", ValueError, "cat", ra.cat, lambda: [xf(), xi()])
case("cat-backends", TypeError, "cat", ra.cat, lambda: [xf(), xt()])
case("cat-one-ragged", TypeError, "cat", ra.cat, xf)

# -------------------------------------------------------------------- subsample
SS = "RaggedArray.subsample"
case("ss-neg", ValueError, SS, call("subsample"), xf, -1)
case("ss-bool", TypeError, SS, call("subsample"), xf, True)
case("ss-float", TypeError, SS, call("subsample"), xf, 2.5)
case("ss-str", TypeError, SS, call("subsample"), xf, "2")
case("ss-count", ValueError, SS, call("subsample"), xf, lambda: [1, 2])
case("ss-u64", ValueError, SS, call("subsample"), xf, np.uint64(2**64 - 1))
case("ss-huge", ValueError, SS, call("subsample"), xf, 2**70)
case(
    "ss-u64-array", ValueError, SS, call("subsample"), xf, lambda: np.full(3, 2**64 - 1, np.uint64)
)
case("ss-bool-array", TypeError, SS, call("subsample"), xf, lambda: np.ones(3, bool))
case("ss-gen-bool", TypeError, SS, call("subsample"), xf, 1, generator=True)
case("ss-gen-neg", ValueError, SS, call("subsample"), xf, 1, generator=-1)
case("ss-gen-str", TypeError, SS, call("subsample"), xf, 1, generator="a")
case("ss-gen-huge", ValueError, SS, call("subsample"), xf, 1, generator=2**200)

# ---------------------------------------------------------------------- collate
C = "collate"
case("col-none", TypeError, C, rdata.collate, None)
case("col-int", TypeError, C, rdata.collate, 5)
case("col-empty", ValueError, C, rdata.collate, lambda: [])
case("col-shapes", ValueError, C, rdata.collate, lambda: [np.zeros((2, 3)), np.zeros((2, 4))])
case("col-dict-missing", ValueError, C, rdata.collate, collate_dicts_missing, ragged="a")
case(
    "col-dict-extra",
    ValueError,
    C,
    rdata.collate,
    lambda: [{"a": np.zeros((2, 3))}, {"a": np.zeros((1, 3)), "b": 1}],
    ragged="a",
)
case(
    "col-tuple-lengths",
    ValueError,
    C,
    rdata.collate,
    lambda: [(np.zeros((2, 3)), 1), (np.zeros((1, 3)),)],
    ragged=0,
)
case("col-ragged-float", TypeError, C, rdata.collate, lambda: [(np.zeros((2, 3)), 1)], ragged=0.0)
case("col-ragged-bool", TypeError, C, rdata.collate, lambda: [(np.zeros((2, 3)), 1)], ragged=True)
case("col-ragged-none", TypeError, C, rdata.collate, lambda: [(np.zeros((2, 3)), 1)])
case("col-bare-ragged", ValueError, C, rdata.collate, lambda: [np.zeros((2, 3))], ragged=0)
case("col-scalars", TypeError, C, rdata.collate, lambda: [1, 2])
case(
    "col-mixed",
    TypeError,
    C,
    rdata.collate,
    lambda: [(np.zeros((2, 3)), 1), [np.zeros((2, 3)), 1]],
    ragged=0,
)
case("col-key", ValueError, C, rdata.collate, lambda: [{"a": np.zeros((2, 3))}], ragged="zz")
case("col-position", ValueError, C, rdata.collate, lambda: [(np.zeros((2, 3)), 1)], ragged=5)
case("col-field-not-array", TypeError, C, rdata.collate, lambda: [(1, np.zeros((2, 3)))], ragged=0)
case("col-object", TypeError, C, rdata.collate, lambda: [np.array([1, None], object)])
case("col-strings", TypeError, C, rdata.collate, lambda: [np.array(["a"])])
case("col-sparse", TypeError, C, rdata.collate, lambda: [torch.eye(2).to_sparse()])
case("col-0d", ValueError, C, rdata.collate, lambda: [np.zeros(())])
RC = "RaggedCollate"
case("rc-ragged-float", TypeError, RC, rdata.RaggedCollate, 0.0)
case(
    "rc-call-none",
    TypeError,
    RC,
    lambda samples: rdata.RaggedCollate()(samples),
    lambda: [(np.zeros((2, 3)), 1)],
)
case(
    "rc-call-shapes",
    ValueError,
    RC,
    lambda samples: rdata.RaggedCollate()(samples),
    lambda: [np.zeros((2, 3)), np.zeros((2, 4))],
)

# ---------------------------------------------------------------------- sampler
BS = "BudgetBatchSampler"
BBS = rdata.BudgetBatchSampler
case("bs-near-2-62", ValueError, BS, BBS, lambda: [2**62] * 5, max_items=3)
case("bs-u64", ValueError, BS, BBS, lambda: np.array([2**64 - 1], np.uint64), max_items=3)
case("bs-max-items-0", ValueError, BS, BBS, lambda: [1, 2], max_items=0)
case("bs-max-items-bool", TypeError, BS, BBS, lambda: [1, 2], max_items=True)
case("bs-max-items-float", TypeError, BS, BBS, lambda: [1, 2], max_items=2.5)
case("bs-max-items-huge", ValueError, BS, BBS, lambda: [1, 2], max_items=2**64)
case("bs-max-items-u64", ValueError, BS, BBS, lambda: [1, 2], max_items=np.uint64(2**64 - 1))
case("bs-max-segments-0", ValueError, BS, BBS, lambda: [1, 2], max_items=3, max_segments=0)
case("bs-max-segments-huge", ValueError, BS, BBS, lambda: [1, 2], max_items=3, max_segments=2**70)
case("bs-negative", ValueError, BS, BBS, lambda: [1, -2], max_items=3)
case("bs-float", TypeError, BS, BBS, lambda: [1.0, 2.0], max_items=3)
case("bs-bool", TypeError, BS, BBS, lambda: [True, False], max_items=3)
case("bs-2d", ValueError, BS, BBS, lambda: [[1, 2]], max_items=3)
case("bs-rank", ValueError, BS, BBS, lambda: [1, 2], max_items=3, num_replicas=2, rank=2)
case("bs-seed", ValueError, BS, BBS, lambda: [1, 2], max_items=3, seed=-1)
case("bs-seed-huge", ValueError, BS, BBS, lambda: [1, 2], max_items=3, seed=2**200)
case("bs-shuffle", TypeError, BS, BBS, lambda: [1, 2], max_items=3, shuffle="yes")
case("bs-strict", ValueError, BS, BBS, lambda: [1, 5], max_items=3, strict=True)
case(
    "bs-epoch",
    ValueError,
    "BudgetBatchSampler.set_epoch",
    lambda s, e: s.set_epoch(e),
    lambda: BBS([1], max_items=1),
    -1,
)
case(
    "bs-epoch-bool",
    TypeError,
    "BudgetBatchSampler.set_epoch",
    lambda s, e: s.set_epoch(e),
    lambda: BBS([1], max_items=1),
    True,
)

# ---------------------------------------------------------------------- dataset
DS = "RaggedDataset"
case("ds-array", TypeError, DS, rdata.RaggedDataset, a(3))
case("ds-targets", ValueError, DS, rdata.RaggedDataset, xf, lambda: [1, 2])
case("ds-targets-int", TypeError, DS, rdata.RaggedDataset, xf, 5)
case("ds-transform", TypeError, DS, rdata.RaggedDataset, xf, None, 5)
case(
    "ds-index", IndexError, "RaggedDataset.__getitem__", index, lambda: rdata.RaggedDataset(xf()), 7
)

# --------------------------------------------------------------------------- nn
case("pool-op", ValueError, "SegmentPool", rnn.SegmentPool, "median")
case(
    "pool-tensor",
    TypeError,
    "SegmentPool",
    lambda m, v: m(v),
    lambda: rnn.SegmentPool(),
    lambda: torch.arange(100.0),
)
case("pool-fill", TypeError, "SegmentPool", rnn.SegmentPool, "mean", fill="a")
case("attention-features", TypeError, "AttentionPool", rnn.AttentionPool, 2.5, 4)
case("attention-zero", ValueError, "AttentionPool", rnn.AttentionPool, 0, 4)
case(
    "attention-tensor",
    TypeError,
    "AttentionPool",
    lambda m, v: m(v),
    lambda: rnn.AttentionPool(2, 4),
    lambda: torch.arange(100.0),
)
case(
    "attention-shape",
    ValueError,
    "AttentionPool",
    lambda m, v: m(v),
    lambda: rnn.AttentionPool(3, 4),
    xt,
)
case(
    "deepset-tensor",
    TypeError,
    "DeepSet",
    lambda m, v: m(v),
    lambda: rnn.DeepSet(torch.nn.Identity(), torch.nn.Identity()),
    lambda: torch.arange(100.0),
)
case(
    "deepset-pool",
    ValueError,
    "DeepSet",
    rnn.DeepSet,
    lambda: torch.nn.Identity(),
    lambda: torch.nn.Identity(),
    "median",
)
case(
    "deepset-covariates",
    ValueError,
    "DeepSet",
    lambda m, v, c: m(v, c),
    lambda: rnn.DeepSet(torch.nn.Identity(), torch.nn.Identity()),
    xt,
    lambda: torch.zeros(5, 1),
)

# ------------------------------------------------------------------------ files
case(
    "save-array",
    TypeError,
    "save",
    lambda p, o: ra.save(p, o),
    lambda: os.path.join(folder(), "x"),
    a(3),
)
case("save-path-int", TypeError, "save", ra.save, 5, xf)
case(
    "save-key",
    TypeError,
    "save",
    lambda p, o: ra.save(p, o),
    lambda: os.path.join(folder(), "x"),
    lambda: {1: xf()},
)
case(
    "save-sparse",
    TypeError,
    "save",
    lambda p, o: ra.save(p, o),
    lambda: os.path.join(folder(), "x"),
    lambda: {"a": sparse()},
)
case(
    "save-meta",
    ValueError,
    "save",
    lambda p, o: ra.save(p, o),
    lambda: os.path.join(folder(), "x"),
    lambda: {"a": meta()},
)
case(
    "save-missing-folder",
    FileNotFoundError,
    "save",
    lambda p, o: ra.save(p, o),
    lambda: os.path.join(folder(), "no", "x"),
    xf,
)
case("load-missing", FileNotFoundError, "load", ra.load, lambda: os.path.join(folder(), "none"))
case("load-path-int", TypeError, "load", ra.load, 5)
case("load-mmap", TypeError, "load", ra.load, saved, mmap="yes")
case("load-empty", ValueError, "load", ra.load, lambda: corrupt(lambda raw: b""))
case(
    "load-truncated", ValueError, "load", ra.load, lambda: corrupt(lambda raw: raw[: len(raw) - 3])
)
case("load-truncated-header", ValueError, "load", ra.load, lambda: corrupt(lambda raw: raw[:20]))
case("load-bitflip", ValueError, "load", ra.load, lambda: corrupt(flip_bit))
case(
    "load-header-length",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(lambda raw: struct.pack("<Q", 2**64 - 1) + raw[8:]),
)
case("load-forged-offsets", ValueError, "load", ra.load, lambda: corrupt(forge_offsets))
case("load-forged-offsets-huge", ValueError, "load", ra.load, lambda: corrupt(forge_offsets_huge))
case(
    "load-forged-shape",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(lambda raw: with_header(raw, lambda h: h["values"].update(shape=[4, 2]))),
)
case(
    "load-forged-format",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(
        lambda raw: with_header(raw, lambda h: h["__metadata__"].update(format="other"))
    ),
)
case(
    "load-forged-class",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(
        lambda raw: with_header(raw, lambda h: h["__metadata__"].update({"class": "Tensor"}))
    ),
)
case(
    "load-forged-dtype",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(lambda raw: with_header(raw, lambda h: h["offsets"].update(dtype="F64"))),
)
case(
    "load-foreign",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(lambda raw: b"hello world, not safetensors"),
)
case(
    "load-mmap-truncated",
    ValueError,
    "load",
    ra.load,
    lambda: corrupt(lambda raw: raw[: len(raw) - 3]),
    mmap=True,
)


# ------------------------------------------- booleans among integers, bool options
case("init-bool-among-ints", TypeError, "RaggedArray", R, a(5), lambda: [0, True, 5])
case("init-npbool-among-ints", TypeError, "RaggedArray", R, a(5), lambda: (0, np.True_, 5))
case("fln-bool-among-ints", TypeError, FLN, R.from_lengths, a(5), lambda: [np.bool_(True), 4])
case("fs-bool-among-ids", TypeError, FS, R.from_segment_ids, a(5), lambda: [0, 0, True, 1, 2])
case("fn-bool-among-offsets", TypeError, "segment_sum", ra.segment_sum, a(5), lambda: [0, True, 5])
case("gi-bool-among-ints", TypeError, GI, call("__getitem__"), xf, lambda: [True, 0, 2])
case("ss-bool-among-counts", TypeError, SS, call("subsample"), xf, lambda: [True, 0, 2])
case("allclose-equal-nan-str", TypeError, "allclose", ra.allclose, xf, xf, equal_nan="no")
case("allclose-equal-nan-none", TypeError, "allclose", ra.allclose, xf, xf, equal_nan=None)
case("numpy-force-str", TypeError, "RaggedArray.numpy", call("numpy"), xt, force="no")
case("numpy-force-str-np", TypeError, "RaggedArray.numpy", call("numpy"), xf, force="no")
case("fl-one-meta", ValueError, FL, R.from_list, lambda: [meta()])
case("fl-one-sparse", TypeError, FL, R.from_list, lambda: [sparse()])
case(
    "si-grad-leaf",
    ValueError,
    SI,
    call("__setitem__"),
    lambda: R.from_lengths(torch.zeros(5, 2, requires_grad=True), [2, 0, 3]),
    0,
    1.0,
)


# ------------------------------------------------------------------------ the test


def _build(arg):
    return arg() if callable(arg) and not isinstance(arg, type) and _is_factory(arg) else arg


def _is_factory(arg):
    return (
        getattr(arg, "__name__", "") == "<lambda>"
        or isinstance(arg, functools.partial)
        or arg in FACTORIES
    )


FACTORIES = {xf, xt, x32, xi, xu8, img, sparse, nested, meta, saved, collate_dicts_missing}


def _snapshot(obj):
    """A deep copy of every array, tensor and ragged array inside ``obj`` (or None)."""
    if isinstance(obj, R):
        return ("ragged", _snapshot(obj.values), obj.host_offsets.copy())
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided or obj.is_nested:
            return ("layout", str(obj.layout), tuple(obj.shape) if not obj.is_nested else None)
        if obj.device.type == "meta":
            return ("meta", tuple(obj.shape), obj.dtype)
        return obj.detach().clone()
    if isinstance(obj, (list, tuple)):
        return [_snapshot(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    return copy.copy(obj) if isinstance(obj, (int, float, str, bytes)) else None


def _same(before, after):
    if isinstance(before, tuple) and before and before[0] == "ragged":
        return (
            isinstance(after, tuple)
            and _same(before[1], after[1])
            and np.array_equal(before[2], after[2])
        )
    if isinstance(before, np.ndarray):
        if before.dtype.kind in "OUSM":
            return before.dtype == after.dtype and before.tolist() == after.tolist()
        return before.dtype == after.dtype and np.array_equal(before, after, equal_nan=True)
    if isinstance(before, torch.Tensor):
        return before.dtype == after.dtype and torch.equal(before, after)
    if isinstance(before, list):
        return len(before) == len(after) and all(map(_same, before, after))
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_same(before[k], after[k]) for k in before)
    return before == after or (before != before and after != after)  # nan


def test_table_size():
    assert len(CASES) >= 150


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("exc", "where", "fn", "args", "kwargs"), CASES)
def test_hostile(exc, where, fn, args, kwargs):
    args = [_build(x) for x in args]
    kwargs = {k: _build(v) for k, v in kwargs.items()}
    before = _snapshot((args, kwargs))
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    if exc is FileNotFoundError:  # the OS's message, naming the user's path
        path = args[0]
        assert path in message or path in str(info.value.filename)
        assert ".tmp" not in message
    else:
        assert message.startswith(where), message
        rest = message[len(where) :]
        if where == "load" and rest.startswith("("):  # load('path'): ...
            rest = rest[rest.index("): ") + 1 :]
        assert rest.startswith(": "), message
        assert "; got " in message, message
        assert ": " + where not in rest and ": RaggedArray." not in rest, message  # named once
    assert len(message) < 400, message
    assert "tensor([" not in message and "array([" not in message, message
    assert _same(before, _snapshot((args, kwargs))), "the inputs changed"


# -------------------------------------------------- what must keep working, edge inputs


class _Flipped(torch.utils.data.Dataset):
    """Numpy samples whose transform returns a negative-stride view (a flipped image)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return np.arange((i + 1) * 4, dtype=np.float32).reshape(i + 1, 1, 2, 2)[..., ::-1]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_negative_stride_samples_collate_in_workers(num_workers):
    ds = _Flipped()
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, collate_fn=rdata.collate, num_workers=num_workers
    )
    (batch,) = list(loader)
    assert batch.lengths.tolist() == [1, 2, 3, 4]
    for i in range(4):
        np.testing.assert_array_equal(batch[i].numpy(), ds[i])


def test_read_only_inputs_work_on_every_path():
    values = readonly(np.arange(10.0).reshape(5, 2))
    lengths, offsets = readonly([2, 0, 3]), readonly([0, 2, 2, 5])
    expected = R.from_lengths(np.arange(10.0).reshape(5, 2), [2, 0, 3])
    made = [
        R(values, offsets),
        R.from_lengths(values, lengths),
        R.from_segment_ids(values, readonly([0, 0, 2, 2, 2]), num_segments=3),
        R.from_list([values[:2], values[2:2], values[2:]]),
        R.from_list([values[:2], values[2:2], values[2:]], device="cpu"),
        R.from_padded(readonly(expected.to_padded()[0]), lengths),
        rdata.collate([values[:2], values[2:2], values[2:]]),
    ]
    for x in made:
        assert x.equal(expected)
    x = made[1]
    assert x[readonly([2, 0])].equal(expected[[2, 0]])
    assert x[readonly([True, False, True])].equal(expected[[0, 2]])
    np.testing.assert_array_equal(ra.segment_sum(values, offsets), expected.sum())
    np.testing.assert_array_equal(x.sum(), expected.sum())
    assert x.subsample(readonly([1, 1, 1]), generator=0).lengths.tolist() == [1, 0, 1]
    assert x.torch().equal(expected) and x.map(np.abs).equal(expected)
    sampler = rdata.BudgetBatchSampler(lengths, max_items=3, shuffle=False)
    assert sorted(i for batch in sampler for i in batch) == [0, 1, 2]


def test_negative_stride_inputs_work():
    flipped = np.arange(10.0).reshape(5, 2)[::-1]
    x = R.from_lengths(flipped, np.array([3, 0, 2])[::-1])
    assert x.lengths.tolist() == [2, 0, 3]
    np.testing.assert_array_equal(x.torch().values.numpy(), flipped)
    np.testing.assert_array_equal(ra.segment_sum(flipped, [0, 5]), flipped.sum(0, keepdims=True))
    assert R.from_list([torch.zeros(2), flipped[:, 0]]).backend == "torch"


def test_metadata_at_the_int64_edge_still_works():
    # lengths that fit int64 on their own and together are fine; only wrapping is refused
    x = R.from_lengths(np.zeros(3), np.array([1, 2], np.uint64))
    assert x.lengths.tolist() == [1, 2]
    assert x[np.array([1], np.uint64)].equal(x[1:])
    sampler = rdata.BudgetBatchSampler([2**61, 2**61, 1], max_items=2**62, shuffle=False)
    assert list(sampler) == [[0, 1], [2]]
    assert x.subsample(np.uint64(1), generator=0).lengths.tolist() == [1, 1]
    assert x.var(correction=2**62).tolist() == [0.0, 0.0]  # every segment too short: fill
    assert x.to_padded(fill=np.float32(3e38))[0].shape == (2, 2)


@pytest.mark.parametrize("item", [meta, sparse])
def test_from_list_of_one_array_names_that_array(item):
    """One array passes through unjoined; its refusal said "values", an argument from_list
    does not have."""
    with pytest.raises((TypeError, ValueError), match=r"from_list: arrays\[0\] must"):
        R.from_list([item()])


@pytest.mark.parametrize("counts", [-1, [1, 2], [True, 0, 2], "2"])
def test_a_refused_subsample_leaves_the_callers_generator_where_it_was(counts):
    numpy_generator = np.random.default_rng(0)
    torch_generator = torch.Generator().manual_seed(0)
    numpy_state = copy.deepcopy(numpy_generator.bit_generator.state)
    torch_state = torch_generator.get_state().clone()
    for generator in (numpy_generator, torch_generator):
        with pytest.raises((TypeError, ValueError), match="subsample: k must"):
            xf().subsample(counts, generator=generator)
    assert numpy_generator.bit_generator.state == numpy_state
    assert torch.equal(torch_generator.get_state(), torch_state)


@pytest.mark.parametrize("code", ["Q", "q", "L", "l", "I", "i", "H", "B"])
def test_every_c_type_of_a_dtype_works_as_its_canonical_type(code):
    """``array.array('Q')`` and ``np.frombuffer(b, 'Q')`` give ``np.ulonglong``, which equals
    ``np.uint64`` but is another type: torch refused it in every operation."""
    raw = np.frombuffer(np.arange(1, 6, dtype=np.dtype(code)).tobytes(), dtype=code)
    canonical = raw.view(np.dtype(raw.dtype.str))
    x, want = R.from_lengths(raw, [2, 0, 3]), R.from_lengths(canonical, [2, 0, 3])
    assert x.dtype == want.dtype
    np.testing.assert_array_equal(x.sum(), want.sum())
    np.testing.assert_array_equal(x.max(), want.max())
    for op in ("cumsum", "torch", "clone"):
        ra.testing.assert_ragged_equal(getattr(x, op)(), getattr(want, op)())
    for a, b in zip(x.sort(), want.sort(), strict=True):
        ra.testing.assert_ragged_equal(a, b)
    ra.testing.assert_ragged_equal(copy.deepcopy(x), want)
    ra.testing.assert_ragged_equal(
        ra.collate([raw[:2], raw[2:]]), ra.collate([canonical[:2], canonical[2:]])
    )
    np.testing.assert_array_equal(ra.segment_sum(raw, [0, 2, 5]), want.sum()[[0, 2]])
    np.testing.assert_array_equal(x.values, np.arange(1, 6))  # nothing written


def test_deepcopy_of_values_autograd_computed():
    """torch's deepcopy refuses tensors that are not leaves: a slice of a leaf, ``x * 2``."""
    leaf = torch.arange(6.0, requires_grad=True)
    x = R.from_lengths(leaf, [2, 0, 3, 1])
    for y in (x[1:3], x * 2, x):
        z = copy.deepcopy(y)
        ra.testing.assert_ragged_equal(z, y)
        assert z.values.requires_grad and z.values.data_ptr() != y.values.data_ptr()
    computed = (x * 2).values
    shared = copy.deepcopy([R.from_lengths(computed, [6]), R.from_lengths(computed, [3, 3])])
    assert shared[0].values.data_ptr() == shared[1].values.data_ptr()  # still one buffer


def test_a_uint8_index_tensor_is_refused_as_ambiguous():
    # torch reads a uint8 index tensor as a mask, numpy (and this package) read uint8 as indices
    x = R.from_lengths(torch.arange(4.0), [1, 1, 1, 1])
    with pytest.raises(TypeError, match=r"^RaggedArray.__getitem__: a uint8 index tensor is"):
        x[torch.tensor([1, 0, 1, 1], dtype=torch.uint8)]
    assert x[torch.tensor([1, 0, 1, 1]).bool()].values.tolist() == [0.0, 2.0, 3.0]
    assert x[np.array([1, 0], dtype=np.uint8)].values.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_totals_past_int64_of_items_of_no_size_are_refused(backend):
    empty = (
        (lambda n: np.empty((n, 0), np.uint8))
        if backend == "numpy"
        else (lambda n: torch.empty(n, 0))
    )
    with pytest.raises(ValueError, match=r"^RaggedArray.from_list: the lengths must sum to at"):
        R.from_list([empty(2**62)] * 4)  # (the offsets wrapped: [0, 2**62, -2**63, ...])
    x = R.from_lengths(empty(2**59), [2**58, 2**58])
    for picks in ([0] * 64, [0] * 32):  # (np.repeat of the wrapped total crashed the process)
        with pytest.raises(ValueError, match=r"^RaggedArray.__getitem__: the selected lengths"):
            x[picks]
    assert x[[1, 0, 1]].host_offsets.tolist() == [0, 2**58, 2**59, 3 * 2**58]  # no N index
    assert x[::-1].values.shape == (2**59, 0)
