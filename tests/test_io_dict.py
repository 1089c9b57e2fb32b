"""``ra.save``/``ra.load`` of dicts: ragged arrays, numpy arrays and torch tensors in one file.

Round trips compare every entry with a host snapshot taken before saving (the oracle: class,
backend, dtype, shape and the exact bits), and check that saving changed nothing. Bad keys,
bad entries and forged or truncated dict files must raise with a message saying what is wrong.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import tempfile
import types

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
from conftest import assert_same_segments, host, oracle_and_x, oracle_offsets, requires_cuda
from hypothesis import example, given, settings
from hypothesis import strategies as st

import raggedarray as ra

MMAP = pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
NUMPY_DTYPES = [
    "float64",
    "float32",
    "float16",
    "int64",
    "int16",
    "int8",
    "uint8",
    "uint16",
    "bool",
]
TORCH_DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.int64, torch.uint8, torch.bool]


# ---------------------------------------------------------------------------- the oracle


def bits(a):
    """Exact host copy of any array, bfloat16 read as its int16 bits."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        return (a.view(torch.int16) if a.dtype == torch.bfloat16 else a).numpy().copy()
    return np.array(a, copy=True)


def snapshot(value):
    """What must come back for one entry: kind, class, backend, dtype and exact contents."""
    if isinstance(value, ra.RaggedArray):
        return (
            "ragged",
            type(value),
            value.backend,
            value.dtype,
            value.item_shape,
            [bits(s) for s in value],
            value.host_offsets.tolist(),
        )
    backend = "torch" if isinstance(value, torch.Tensor) else "numpy"
    dtype = value.dtype if backend == "torch" else value.dtype.newbyteorder("=")
    return (
        "array",
        np.ndarray if backend == "numpy" else torch.Tensor,
        backend,
        dtype,
        tuple(value.shape),
        bits(value),
        None,
    )


def assert_entry(got, want, mmap):
    kind, cls, backend, dtype, shape, content, offsets = want
    assert type(got) is cls
    if kind == "ragged":
        assert got.backend == backend and got.dtype == dtype and got.item_shape == shape
        assert got.host_offsets.tolist() == host(got.offsets).tolist()
        assert got.host_offsets.tolist() == oracle_offsets(content)
        assert got.host_offsets.tolist() == [o - offsets[0] for o in offsets]
        assert len(got) == len(content)
        for segment, expected in zip(got, content, strict=True):
            np.testing.assert_array_equal(bits(segment), expected)
        array = got.values
    else:
        assert got.dtype == dtype and tuple(got.shape) == shape
        np.testing.assert_array_equal(bits(got), content)
        array = got
    if backend == "torch":
        assert array.device.type == "cpu" and not array.requires_grad
    else:
        assert array.flags.writeable is not mmap


def round_trip(obj, mmap):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "d.safetensors")
        ra.save(path, obj)
        back = ra.load(path, mmap=mmap)
        yield back
        del back


def check_round_trip(obj, mmap):
    before = {k: snapshot(v) for k, v in obj.items()}
    for back in round_trip(obj, mmap):
        assert type(back) is dict and list(back) == list(obj)
        for key in obj:
            assert_entry(back[key], before[key], mmap)
    for key, value in obj.items():  # saving changed nothing
        after, was = snapshot(value), before[key]
        assert after[:5] == was[:5] and after[6] == was[6]
        for a, b in zip(
            after[5] if after[0] == "ragged" else [after[5]],
            was[5] if was[0] == "ragged" else [was[5]],
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------- strategies


@st.composite
def entries(draw):
    """One dict value: a ragged array (numpy/torch, either class) or a plain array/tensor."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["ragged", "numpy", "torch"]))
    backend = draw(st.sampled_from(["numpy", "torch"])) if kind == "ragged" else kind
    dtype = draw(st.sampled_from(NUMPY_DTYPES if backend == "numpy" else TORCH_DTYPES))
    np_dtype = "float32" if dtype == torch.bfloat16 else str(dtype).replace("torch.", "")
    if kind == "ragged":
        lengths = draw(st.lists(st.integers(0, 4), max_size=5))
        cls, item_shape = draw(
            st.sampled_from(
                [
                    (ra.RaggedArray, ()),
                    (ra.RaggedArray, (2, 0)),
                    (ra.RaggedArray, (3,)),
                    (ra.RaggedImageBatch, (1, 2, 3)),
                ]
            )
        )
        shape = (sum(lengths), *item_shape)
    else:
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    values = rng.standard_normal(shape) * 40
    values = np.asarray((values > 0) if np_dtype == "bool" else np.abs(values).astype(np_dtype))
    if backend == "torch":
        values = torch.from_numpy(values).to(dtype)
    if draw(st.booleans()) and values.ndim >= 1:  # a non-contiguous or reversed view
        values = values.flip(0) if backend == "torch" else values[::-1]
    if kind == "ragged":
        return cls.from_lengths(values, lengths)
    return values


keys = st.text(alphabet="ab.é/ 0", min_size=1, max_size=4)


def tensor_names(obj):
    names = []
    for key, value in obj.items():
        names += [f"{key}.values", f"{key}.offsets"] if isinstance(value, ra.RaggedArray) else [key]
    return names


# ------------------------------------------------------------------------- round trips


@settings(max_examples=80, deadline=None)
@given(obj=st.dictionaries(keys, entries(), max_size=5), mmap=st.booleans())
@example(obj={}, mmap=True)
@example(obj={"x": ra.RaggedArray.from_lengths(np.zeros((0, 2)), [])}, mmap=True)
@example(
    obj={"x": ra.RaggedArray.from_lengths(np.zeros(4), [4]), "x.values": np.ones(2)}, mmap=False
)
def test_dict_round_trip(obj, mmap):
    names = tensor_names(obj)
    if len(set(names)) < len(names):
        with pytest.raises(ValueError, match="tensor names of its own"):
            next(round_trip(obj, mmap))
        return
    check_round_trip(obj, mmap)


@MMAP
def test_every_kind_and_dtype_in_one_file(mmap):
    _, images = oracle_and_x(("torch", "cpu"), "float32", (ra.RaggedImageBatch, (1, 4, 4)))
    _, bags = oracle_and_x(("numpy", "cpu"), "int16", None, [0, 3, 0])
    obj = {
        "images": images,
        "bags": bags,
        "zero_segments": ra.RaggedArray.from_lengths(torch.zeros(0, 3, dtype=torch.bfloat16), []),
        "theta": torch.randn(3, 2).to(torch.bfloat16),
        "ids": np.arange(3, dtype=np.uint16),
        "flags": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float16),
        "torch_scalar": torch.tensor(7, dtype=torch.int64),
        "empty": np.zeros((0, 5), np.uint8),
        "strided": np.arange(24.0).reshape(4, 6)[::-2, 1::2],
        "big_endian": np.arange(4, dtype=">i4"),
        "transposed": torch.arange(6.0).reshape(2, 3).T,
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    check_round_trip(obj, mmap)


def test_shared_storages_are_saved_as_separate_tensors(tmp_path):
    base = torch.arange(10.0)
    x = ra.RaggedArray.from_lengths(base, [4, 6])
    obj = {"x": x, "base": base, "again": base, "tail": base[5:], "np": base.numpy()[2:]}
    ra.save(tmp_path / "d.safetensors", obj)
    back = ra.load(tmp_path / "d.safetensors")
    for key in ("base", "again"):
        assert torch.equal(back[key], base)
    assert torch.equal(back["tail"], base[5:]) and back["np"].tolist() == base[2:].tolist()
    assert back["x"].equal(x)
    assert back["base"].untyped_storage().data_ptr() != back["again"].untyped_storage().data_ptr()


def test_requires_grad_is_saved_detached(tmp_path):
    w = torch.randn(3, requires_grad=True)
    y = w * 2  # not a leaf
    x = ra.RaggedArray.from_lengths(y, [1, 2])
    ra.save(tmp_path / "d.safetensors", {"w": w, "y": y, "x": x})
    back = ra.load(tmp_path / "d.safetensors")
    assert not any(t.requires_grad for t in (back["w"], back["y"], back["x"].values))
    assert torch.equal(back["y"], y.detach()) and back["x"].equal(x)
    assert w.requires_grad and y.grad_fn is not None  # the inputs keep their graph


@requires_cuda
@MMAP
def test_cuda_entries_come_back_on_the_cpu(tmp_path, mmap):
    segments, x = oracle_and_x(("torch", "cuda"), "float16")
    t = torch.arange(6, device="cuda").reshape(2, 3)
    ra.save(tmp_path / "d.safetensors", {"x": x, "t": t})
    back = ra.load(tmp_path / "d.safetensors", mmap=mmap)
    assert back["t"].device.type == "cpu" and torch.equal(back["t"], t.cpu())
    assert back["x"].values.device.type == "cpu"
    assert_same_segments(back["x"], segments)


def test_file_is_plain_safetensors_with_readable_names(tmp_path):
    segments, x = oracle_and_x(("numpy", "cpu"), "float32", (ra.RaggedArray, (2,)))
    path = tmp_path / "d.safetensors"
    ra.save(path, {"x": x, "y": np.arange(3)})
    with safetensors.safe_open(path, framework="np") as f:
        assert sorted(f.keys()) == ["x.offsets", "x.values", "y"]
        meta = f.metadata()
        assert meta["format"] == "raggedarray" and meta["format_version"] == "2"
        assert json.loads(meta["entries"]) == [
            {
                "key": "x",
                "kind": "ragged",
                "class": "RaggedArray",
                "backend": "numpy",
                "item_shape": [2],
            },
            {"key": "y", "kind": "array", "backend": "numpy"},
        ]
        assert f.get_tensor("x.offsets").tolist() == oracle_offsets(segments)
        np.testing.assert_array_equal(f.get_tensor("x.values"), np.concatenate(segments))


def test_a_single_ragged_array_still_writes_version_1(tmp_path):
    _, x = oracle_and_x(("torch", "cpu"))
    ra.save(tmp_path / "x.safetensors", x)
    with safetensors.safe_open(tmp_path / "x.safetensors", framework="np") as f:
        assert f.metadata()["format_version"] == "1" and sorted(f.keys()) == ["offsets", "values"]
    assert isinstance(ra.load(tmp_path / "x.safetensors"), ra.RaggedArray)


@pytest.mark.parametrize("mapping", [types.MappingProxyType, collections.OrderedDict])
def test_any_mapping_is_saved_as_a_dict(tmp_path, mapping):
    _, x = oracle_and_x(("numpy", "cpu"))
    ra.save(tmp_path / "m.st", mapping({"x": x, "ids": np.arange(3)}))
    back = ra.load(tmp_path / "m.st")
    assert type(back) is dict and list(back) == ["x", "ids"]
    ra.testing.assert_ragged_equal(back["x"], x)
    np.testing.assert_array_equal(back["ids"], np.arange(3))


# ------------------------------------------------------------------ bad keys and entries


@pytest.mark.parametrize(
    ("obj", "error", "match"),
    [
        ({3: np.zeros(2)}, TypeError, "dict keys must be str; got int 3"),
        ({"": np.zeros(2)}, ValueError, "non-empty .* got ''"),
        ({"__metadata__": np.zeros(2)}, ValueError, "got '__metadata__'"),
        ({"\ud800": np.zeros(2)}, ValueError, "UTF-8"),
        (
            {"x.offsets": np.zeros(2), "x": ra.RaggedArray.from_lengths(np.zeros(2), [2])},
            ValueError,
            "got 'x.offsets' from both key 'x.offsets' and key 'x'",
        ),
        ({"a": [1, 2]}, TypeError, r"obj\['a'\] must be a RaggedArray, .* got list"),
        ({"a": {"b": np.zeros(1)}}, TypeError, r"obj\['a'\] must be .* got dict"),
        ({"a": 3.0}, TypeError, "got float"),
        ({"a": np.float64(3.0)}, TypeError, "got float64 .*np.asarray"),
        ({"a": np.array([None])}, TypeError, r"obj\['a'\] dtype must be one of .* got object"),
        ({"a": np.zeros(2, np.complex64)}, TypeError, "got complex64"),
        ({"a": np.array(["x"])}, TypeError, "got <U1"),
        ({"a": torch.zeros(2, dtype=torch.complex64)}, TypeError, "got complex64"),
        ({"a": torch.zeros(2).to_sparse()}, TypeError, "dense .* got layout torch.sparse_coo"),
        ({"a": torch.zeros(2, device="meta")}, ValueError, "meta device"),
        (
            {
                "a": torch.nested.nested_tensor(
                    [torch.zeros(2), torch.zeros(3)], layout=torch.jagged
                )
            },
            TypeError,
            "nested.*from_nested",
        ),
    ],
    ids=[
        "int-key",
        "empty-key",
        "metadata-key",
        "surrogate-key",
        "clash",
        "list",
        "dict",
        "float",
        "numpy-scalar",
        "object",
        "complex",
        "str",
        "torch-complex",
        "sparse",
        "meta",
        "nested",
    ],
)
def test_bad_keys_and_entries(tmp_path, obj, error, match):
    path = tmp_path / "d.safetensors"
    with pytest.raises(error, match=f"save: .*{match}"):
        ra.save(path, {"fine": np.ones(2), **obj})
    assert os.listdir(tmp_path) == []  # checked before anything is written


def test_bfloat16_numpy_arrays_are_refused(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="bfloat16: torch only"):
        ra.save(tmp_path / "d.safetensors", {"a": np.zeros(2, ml_dtypes.bfloat16)})


# --------------------------------------------------------------------------- bad files


def good_file(tmp_path):
    _, x = oracle_and_x(("torch", "cpu"), "float32")
    obj = {"x": x, "n": x.numpy()[1:], "t": torch.arange(5)}
    path = tmp_path / "good.safetensors"
    ra.save(path, obj)
    return path, obj


@MMAP
def test_truncated_dict_file(tmp_path, mmap):
    path, obj = good_file(tmp_path)
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in range(0, len(data), max(1, len(data) // 40)):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"load\(.*bad.safetensors'\)"):
            ra.load(bad, mmap=mmap)
    back = ra.load(path, mmap=mmap)
    assert back["x"].equal(obj["x"]) and back["n"].equal(obj["n"])


def forge_dict(path, tensors, specs, meta):
    metadata = {"format": "raggedarray", "format_version": "2", "entries": json.dumps(specs)}
    safetensors.numpy.save_file(tensors, path, metadata={**metadata, **meta})


RAGGED = {
    "key": "x",
    "kind": "ragged",
    "class": "RaggedArray",
    "backend": "numpy",
    "item_shape": [],
}
TENSORS = {"x.values": np.arange(4.0), "x.offsets": np.array([0, 1, 4])}
FORGED = [
    pytest.param(TENSORS, [RAGGED], {"entries": "[oops"}, "entries must be a JSON list", id="json"),
    pytest.param(TENSORS, [RAGGED], {"entries": "{}"}, "JSON list of objects", id="not-list"),
    pytest.param(TENSORS, [[1]], {}, "JSON list of objects", id="not-objects"),
    pytest.param(TENSORS, [{**RAGGED, "key": 3}], {}, "own non-empty str key; got 3", id="key"),
    pytest.param(TENSORS, [RAGGED, RAGGED], {}, "own non-empty str key; got 'x'", id="dup-key"),
    pytest.param(TENSORS, [{**RAGGED, "kind": "list"}], {}, "kind 'ragged' or 'array'", id="kind"),
    pytest.param(TENSORS, [{**RAGGED, "backend": "jax"}], {}, "got 'jax'", id="backend"),
    pytest.param(TENSORS, [{**RAGGED, "class": "Tensor"}], {}, "class must be", id="class"),
    pytest.param(  # (a list was looked up as a key: TypeError, unhashable)
        TENSORS, [{**RAGGED, "class": ["RaggedArray"]}], {}, "class must be", id="class-list"
    ),
    pytest.param(TENSORS, [{**RAGGED, "class": {}}], {}, "class must be", id="class-object"),
    pytest.param(TENSORS, [{**RAGGED, "item_shape": "[]"}], {}, "list of sizes", id="shape-str"),
    pytest.param(TENSORS, [{**RAGGED, "item_shape": [2]}], {}, r"item_shape=\(2,\)", id="shape"),
    pytest.param(
        TENSORS,
        [{"key": "x", "kind": "array", "backend": "numpy"}],
        {},
        r"tensors must be 'x'; got \['x.offsets', 'x.values'\]",
        id="kind-swapped",
    ),
    pytest.param(
        {**TENSORS, "y": np.zeros(1)},
        [RAGGED],
        {},
        r"must be 'x.offsets' and 'x.values'; got \['x.offsets', 'x.values', 'y'\]",
        id="extra",
    ),
    pytest.param(
        {"x.values": np.arange(4.0), "x.offsets": np.array([0, 3, 1, 4])},
        [RAGGED],
        {},
        r"\['x'\]: offsets must be non-decreasing",
        id="offsets",
    ),
    pytest.param(
        {"x.values": np.arange(4.0), "x.offsets": np.array([0.0, 4.0])},
        [RAGGED],
        {},
        "1-D int64",
        id="float-offsets",
    ),
    pytest.param(
        {**TENSORS, "y": np.zeros(1)},
        [RAGGED],
        {"format_version": "1"},
        "class must be one of",
        id="v1-with-dict-layout",
    ),
]


@MMAP
@pytest.mark.parametrize(("tensors", "entries", "meta", "match"), FORGED)
def test_forged_dict_file(tmp_path, tensors, entries, meta, match, mmap):
    path = tmp_path / "d.safetensors"
    forge_dict(path, tensors, entries, meta)
    with pytest.raises(ValueError, match=match):
        ra.load(path, mmap=mmap)


@MMAP
@pytest.mark.parametrize("kind", ["array", "ragged"])
def test_corrupted_bool_byte_in_a_dict_entry(tmp_path, kind, mmap):
    flags = np.array([[True, False], [False, True], [True, True]])
    value = flags if kind == "array" else ra.RaggedArray.from_lengths(flags, [1, 2])
    path = tmp_path / "d.safetensors"
    ra.save(path, {"ids": np.arange(3), "flags": value})
    name = "flags" if kind == "array" else "flags.values"
    text = path.read_bytes()
    (n,) = struct.unpack("<Q", text[:8])
    begin = json.loads(text[8 : 8 + n])[name]["data_offsets"][0]
    data = bytearray(text)
    data[8 + n + begin + 3] = 9
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"\['flags'\]: a bool tensor must hold only bytes "
                       r"0 and 1; got byte 9 at item 3"):  # fmt: skip
        ra.load(path, mmap=mmap)


@MMAP
def test_numpy_array_entry_with_bfloat16_data(tmp_path, mmap):
    path = tmp_path / "d.safetensors"
    entries = [{"key": "a", "kind": "array", "backend": "numpy"}]
    metadata = {"format": "raggedarray", "format_version": "2", "entries": json.dumps(entries)}
    tensors = {"a": torch.zeros(2, dtype=torch.bfloat16)}
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    with pytest.raises(ValueError, match=r"\['a'\]: numpy values cannot be bfloat16"):
        ra.load(path, mmap=mmap)
    entries[0]["backend"] = "torch"
    safetensors.torch.save_file(
        tensors, path, metadata={**metadata, "entries": json.dumps(entries)}
    )
    assert ra.load(path, mmap=mmap)["a"].dtype == torch.bfloat16


def test_failed_dict_write_leaves_the_old_file(tmp_path, monkeypatch):
    path, _ = good_file(tmp_path)
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        ra.save(path, {"t": torch.zeros(3)})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["good.safetensors"]
