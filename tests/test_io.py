"""``ra.save`` / ``ra.load``: round trips against the oracle, memory mapping, bad files, atomicity.

Round trips compare what comes back with the per-segment oracle list (class, backend, dtype,
item shape, offsets and values). Bad files are forged byte by byte or with safetensors itself,
and each must raise ``ValueError`` with a message that says what is wrong.
"""

from __future__ import annotations

import json
import mmap as mmap_module
import os
import stat
import struct
import sys
import tempfile

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
from conftest import (
    LAYOUTS,
    LENGTH_CASES,
    LENGTHS,
    PLACES,
    TORCH_PLACES,
    assert_same_segments,
    build,
    host,
    oracle_and_x,
    oracle_offsets,
    ragged_lists,
    random_segments,
    requires_cuda,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import raggedarray as ra
import raggedarray.io

MMAP = pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
BACKENDS = pytest.mark.parametrize("backend", ["numpy", "torch"])
META = {
    "format": "raggedarray",
    "format_version": "1",
    "class": "RaggedArray",
    "backend": "numpy",
    "item_shape": "[]",
}

# ---------------------------------------------------------------------------- helpers


def assert_loaded(y, x, segments):
    """``y`` (loaded) is ``x`` (saved) again: class, backend, dtype, shapes, offsets, values."""
    assert type(y) is type(x)
    assert y.backend == x.backend
    assert y.dtype == x.dtype
    assert y.item_shape == x.item_shape
    assert len(y) == len(segments)
    if x.backend == "torch":
        assert isinstance(y.values, torch.Tensor) and y.values.device.type == "cpu"
        assert isinstance(y.offsets, torch.Tensor) and y.offsets.device.type == "cpu"
    else:
        assert isinstance(y.values, np.ndarray) and isinstance(y.offsets, np.ndarray)
    expected = oracle_offsets(segments)
    assert host(y.offsets).tolist() == expected
    assert y.host_offsets.tolist() == expected
    assert tuple(y.values.shape) == (expected[-1], *x.item_shape)
    assert_same_segments(y, segments)


def save_and_load(tmp_path, x, mmap=False):
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    return ra.load(path, mmap=mmap)


def header_of(path):
    """The JSON header of a safetensors file and where its data starts, parsed by hand."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), 8 + n


def raw_file(path, header, data=b""):
    """Write a file with the safetensors layout by hand: length, JSON header, data."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def forge(path, values, offsets, **meta):
    """A safetensors file written by safetensors itself, with raggedarray-like metadata."""
    metadata = {k: v for k, v in {**META, **meta}.items() if v is not None}
    tensors = {"values": np.asarray(values), "offsets": np.asarray(offsets)}
    safetensors.numpy.save_file({k: v for k, v in tensors.items()}, path, metadata=metadata)


def mapped_root(a):
    """The object at the bottom of a numpy array's chain of bases."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


# ------------------------------------------------------------------------- round trips


@MMAP
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
def test_round_trip(tmp_path, place, dtype, layout, lengths, mmap):
    segments, x = oracle_and_x(place, dtype, layout, lengths)
    assert_loaded(save_and_load(tmp_path, x, mmap), x, segments)


@MMAP
@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64"])
def test_round_trip_numpy_integer_dtypes(tmp_path, dtype, mmap):
    segments = random_segments(np.random.default_rng(1), LENGTHS, (2,), "float64")
    segments = [np.abs(s * 10).astype(dtype) for s in segments]
    x = build(segments, ("numpy", "cpu"), item_shape=(2,), dtype=dtype)
    assert_loaded(save_and_load(tmp_path, x, mmap), x, segments)


@MMAP
@pytest.mark.parametrize("place", TORCH_PLACES)
@pytest.mark.parametrize(
    "dtype", [torch.bfloat16, torch.int8, torch.int16, torch.int32, torch.uint8, torch.uint16]
)
def test_round_trip_torch_dtypes(tmp_path, place, dtype, mmap):
    values = (torch.randn(15, 3, generator=torch.Generator().manual_seed(0)) * 50).abs()
    x = ra.RaggedArray.from_lengths(values.to(dtype).to(place[1]), LENGTHS)
    y = save_and_load(tmp_path, x, mmap)
    assert y.dtype == dtype and y.values.device.type == "cpu"
    assert torch.equal(y.values, x.values.cpu())
    assert y.host_offsets.tolist() == oracle_offsets([np.zeros(n) for n in LENGTHS])


@settings(max_examples=40, deadline=None)
@given(case=ragged_lists(), backend=st.sampled_from(["numpy", "torch"]), mmap=st.booleans())
@example(case=([], (), []), backend="numpy", mmap=True)
@example(case=([], (1, 3, 2), []), backend="torch", mmap=False)
@example(case=([0, 0, 0], (2,), [np.zeros((0, 2))] * 3), backend="torch", mmap=True)
@example(case=([0, 0], (), [np.zeros(0)] * 2), backend="numpy", mmap=False)
def test_round_trip_property(case, backend, mmap):
    _, item_shape, segments = case
    x = build(segments, (backend, "cpu"), item_shape=item_shape, dtype="float64")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.safetensors")
        ra.save(path, x)
        y = ra.load(path, mmap=mmap)
        assert_loaded(y, x, segments)
        del y  # release the mapping before the folder goes


def test_str_and_pathlike_paths(tmp_path):
    segments, x = oracle_and_x(("numpy", "cpu"))
    ra.save(str(tmp_path / "a.safetensors"), x)
    assert_loaded(ra.load(tmp_path / "a.safetensors"), x, segments)
    ra.save(tmp_path / "b.safetensors", x)
    assert_loaded(ra.load(str(tmp_path / "b.safetensors"), mmap=True), x, segments)


def test_a_path_with_a_nul_character_is_refused_by_name(tmp_path):
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    bad = str(tmp_path / "x\0.safetensors")
    with pytest.raises(ValueError, match=r"^save: path must not contain a NUL"):
        ra.save(bad, x)
    with pytest.raises(ValueError, match=r"^load: path must not contain a NUL"):
        ra.load(bad)


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_values_requiring_grad_are_detached(tmp_path, place):
    segments, x = oracle_and_x(place, "float32")
    x = ra.RaggedArray(x.values.clone().requires_grad_(True), x.offsets)
    y = save_and_load(tmp_path, x)
    assert not y.requires_grad
    assert_same_segments(y, segments)


@requires_cuda
@MMAP
def test_cuda_round_trip_gives_cpu_tensors(tmp_path, mmap):
    segments, x = oracle_and_x(("torch", "cuda"), "float16", LAYOUTS[2].values[0])
    assert x.values.is_cuda
    y = save_and_load(tmp_path, x, mmap)
    assert y.values.device.type == "cpu" and y.offsets.device.type == "cpu"
    assert_loaded(y, x, segments)


# ----------------------------------------------------------------- what lands in the file


@pytest.mark.parametrize("place", PLACES[:2])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_file_is_plain_safetensors(tmp_path, place, layout):
    segments, x = oracle_and_x(place, "float32", layout)
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    with safetensors.safe_open(path, framework="np") as f:
        assert sorted(f.keys()) == ["offsets", "values"]
        assert f.metadata() == {
            "format": "raggedarray",
            "format_version": "1",
            "class": layout[0].__name__,
            "backend": place[0],
            "item_shape": json.dumps(list(layout[1])),
        }
        assert f.get_tensor("offsets").tolist() == oracle_offsets(segments)
        np.testing.assert_array_equal(f.get_tensor("values"), np.concatenate(segments))
    # nothing else in the file (no pickle, no extra tensors): header, values, offsets
    _, data_start = header_of(path)
    values_bytes = sum(s.nbytes for s in segments)
    assert os.path.getsize(path) == data_start + values_bytes + 8 * (len(segments) + 1)


@MMAP
@pytest.mark.parametrize("layout", LAYOUTS)
def test_slice_saves_only_its_segments(tmp_path, place, layout, mmap):
    segments, x = oracle_and_x(place, "float32", layout)
    view = x[2:5]  # starts at item 3 of x's buffer
    assert int(x.host_offsets[2]) > 0
    y = save_and_load(tmp_path, view, mmap)
    assert_loaded(y, view, segments[2:5])
    header, _ = header_of(tmp_path / "x.safetensors")
    assert header["values"]["shape"][0] == sum(LENGTHS[2:5])
    assert header["offsets"]["shape"] == [4]


@MMAP
@pytest.mark.parametrize(
    "key", [[4, 0, 2], slice(None, None, -2), [True, False] * 3 + [True]], ids=str
)
def test_gathered_copy_saves_what_it_shows(tmp_path, place, key, mmap):
    segments, x = oracle_and_x(place, "int64")
    picked = x[key]
    if isinstance(key, slice):
        expected = segments[key]
    elif isinstance(key[0], bool):
        expected = [s for s, keep in zip(segments, key, strict=True) if keep]
    else:
        expected = [segments[i] for i in key]
    assert_loaded(save_and_load(tmp_path, picked, mmap), picked, expected)


@MMAP
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_non_contiguous_values_save_their_items(tmp_path, backend, mmap):
    base = np.arange(15 * 8, dtype=np.float32).reshape(15, 8)
    values = base[::-1, ::2] if backend == "numpy" else torch.from_numpy(base.T.copy()).T[:, ::2]
    assert not (values.flags.c_contiguous if backend == "numpy" else values.is_contiguous())
    x = ra.RaggedArray.from_lengths(values, LENGTHS)
    segments = [np.asarray(host(s)).copy() for s in x]
    assert_loaded(save_and_load(tmp_path, x, mmap), x, segments)


# ---------------------------------------------------------------------- memory mapping


def test_mmap_numpy_values_are_a_read_only_view_of_the_mapped_file(tmp_path):
    segments, x = oracle_and_x(("numpy", "cpu"), "float64", LAYOUTS[1].values[0])
    y = save_and_load(tmp_path, x, mmap=True)
    values = y.values
    assert not values.flags.owndata and not values.flags.writeable
    root = mapped_root(values)
    assert isinstance(root, mmap_module.mmap)
    assert np.shares_memory(values, np.frombuffer(root, np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        values[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        y[0][...] = 1.0
    assert_same_segments(y, segments)


def test_read_values_own_writable_memory(tmp_path):
    _, x = oracle_and_x(("numpy", "cpu"), "float64")
    y = save_and_load(tmp_path, x, mmap=False)
    root = mapped_root(y.values)
    assert isinstance(root, np.ndarray) and root.flags.owndata and root.flags.writeable
    y.values[0] = 123.0  # no error; the file is not involved
    assert ra.load(tmp_path / "x.safetensors").equal(x)


@pytest.mark.skipif(sys.platform != "linux", reason="private mappings see file writes on Linux")
@BACKENDS
def test_mmap_reads_the_file_lazily_without_copying(tmp_path, backend):
    _, x = oracle_and_x((backend, "cpu"), "float64")
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    mapped, read = ra.load(path, mmap=True), ra.load(path, mmap=False)
    header, data_start = header_of(path)
    with open(path, "r+b") as f:  # change the first value in the file, behind the loads' backs
        f.seek(data_start + header["values"]["data_offsets"][0])
        f.write(np.float64(12345.0).tobytes())
    assert float(mapped.values[0]) == 12345.0  # the mapping is the file: nothing was copied
    assert float(read.values[0]) == float(host(x.values)[0])


def test_mmap_torch_writes_never_reach_the_file(tmp_path):
    _, x = oracle_and_x(("torch", "cpu"), "float32")
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    before = path.read_bytes()
    y = ra.load(path, mmap=True)
    y.values[:] = 7.0  # copy-on-write pages, private to this process
    assert bool((y.values == 7.0).all())
    del y
    assert path.read_bytes() == before
    assert ra.load(path).equal(x)


@BACKENDS
def test_saving_over_a_mapped_file_leaves_the_mapping_intact(tmp_path, backend):
    segments, old = oracle_and_x((backend, "cpu"), "float32")
    new_segments, new = oracle_and_x((backend, "cpu"), "float32", lengths=[2, 1], seed=5)
    path = tmp_path / "x.safetensors"
    ra.save(path, old)
    mapped = ra.load(path, mmap=True)
    ra.save(path, new)
    assert_same_segments(mapped, segments)
    assert_same_segments(ra.load(path, mmap=True), new_segments)


# ------------------------------------------------------------------------- bad files


@MMAP
def test_empty_file(tmp_path, mmap):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"load\(.*x.safetensors'\): .*got a file of 0 bytes"):
        ra.load(path, mmap=mmap)


@MMAP
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_truncated_anywhere(tmp_path, backend, mmap):
    _, x = oracle_and_x((backend, "cpu"), "float32", LAYOUTS[1].values[0])
    good = tmp_path / "good.safetensors"
    ra.save(good, x)
    data = good.read_bytes()
    _, data_start = header_of(good)
    cuts = [1, 7, 8, 9, data_start // 2, data_start - 1, data_start, data_start + 3]
    cuts += [len(data) - 9, len(data) - 8, len(data) - 1]
    bad = tmp_path / "bad.safetensors"
    for cut in cuts:
        bad.write_bytes(data[:cut])
        if cut < 8:
            match = "8-byte header length"
        elif cut < data_start:
            match = "header length field must fit"
        else:
            match = "must be valid safetensors"
        with pytest.raises(ValueError, match=match):
            ra.load(bad, mmap=mmap)
    assert ra.load(good, mmap=mmap).equal(x)


@MMAP
@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(
            np.random.default_rng(0).bytes(4096), "header length field", id="random-bytes"
        ),
        pytest.param(
            struct.pack("<Q", 100) + np.random.default_rng(1).bytes(300),
            "UTF-8 JSON",
            id="random-header",
        ),
        pytest.param(struct.pack("<Q", 2**63) + b"{}", "got 9223372036854775808", id="huge-len"),
        pytest.param(struct.pack("<Q", 3) + b"{}", "header length field", id="len-past-end"),
        pytest.param(struct.pack("<Q", 6) + b"[1, 2]", "JSON object; got list", id="json-list"),
        pytest.param(b"PK\x03\x04" + bytes(100), "header length field", id="zip-file"),
    ],
)
def test_not_a_safetensors_file(tmp_path, content, match, mmap):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        ra.load(path, mmap=mmap)


@MMAP
@pytest.mark.parametrize("where", ["header", "entries", "item_shape"])
def test_json_nested_past_the_stack_is_a_corrupt_file(tmp_path, where, mmap):
    """json raised RecursionError, which is no ValueError; a message echoed all of it."""
    path = tmp_path / "x.safetensors"
    deep = "[" * 100_000 + "]" * 100_000
    if where == "header":
        raw = ('{"a":' + deep + "}").encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    else:
        meta = {"format": "raggedarray", "format_version": "2", where: deep}
        safetensors.numpy.save_file({}, str(path), metadata=meta)
    with pytest.raises(ValueError, match=r"^load\(") as refused:
        ra.load(path, mmap=mmap)
    assert len(str(refused.value)) < 400


@MMAP
def test_header_that_safetensors_rejects(tmp_path, mmap):
    path = tmp_path / "x.safetensors"
    header = {
        "__metadata__": META,
        "values": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},  # 3 floats in 8 bytes
        "offsets": {"dtype": "I64", "shape": [2], "data_offsets": [8, 24]},
    }
    raw_file(path, header, bytes(24))
    with pytest.raises(ValueError, match="must be valid safetensors; got SafetensorError"):
        ra.load(path, mmap=mmap)


@MMAP
def test_foreign_safetensors_file(tmp_path, mmap):
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file({"weight": np.zeros((3, 2), np.float32)}, path)
    with pytest.raises(ValueError, match="format='raggedarray'; got no metadata"):
        ra.load(path, mmap=mmap)
    safetensors.numpy.save_file({"weight": np.zeros(3)}, path, metadata={"author": "me"})
    with pytest.raises(ValueError, match=r"got metadata keys \['author'\]"):
        ra.load(path, mmap=mmap)


VALUES = np.arange(4.0)

FORGED = [
    pytest.param(
        dict(offsets=[0, 3, 1, 4]),
        r"non-decreasing; got offsets\[1\]=3 > offsets\[2\]=1",
        id="decreasing",
    ),
    pytest.param(
        dict(offsets=[0, 1, 3]), r"offsets\[-1\] must equal .* got offsets\[-1\]=3", id="last-not-N"
    ),
    pytest.param(dict(offsets=[0, 1, 9]), r"offsets\[-1\] must equal", id="last-past-N"),
    pytest.param(
        dict(offsets=[1, 2, 4]), r"offsets\[0\] must be 0; got offsets\[0\]=1", id="first-not-0"
    ),
    pytest.param(dict(offsets=np.array([0.0, 4.0])), "1-D int64 .* got dtype F64", id="float"),
    pytest.param(dict(offsets=np.array([0, 4], np.int32)), "got dtype I32", id="int32"),
    pytest.param(dict(offsets=np.array([[0, 4]])), r"shape \(1, 2\)", id="2d-offsets"),
    pytest.param(dict(offsets=np.zeros(0, np.int64)), "at least one entry", id="no-offsets"),
    pytest.param(
        dict(values=np.float64(1.0), offsets=[0, 1]), r"shape \(N, \*item_shape\)", id="0d-values"
    ),
    pytest.param(
        dict(item_shape="[2]"),
        r"item_shape=\(2,\) from the metadata; got shape \(4,\)",
        id="item-shape-mismatch",
    ),
    pytest.param(dict(item_shape="two"), "JSON list of sizes; got 'two'", id="item-shape-junk"),
    pytest.param(dict(item_shape="[-1]"), "JSON list of sizes", id="item-shape-negative"),
    pytest.param(dict(item_shape=None), "JSON list of sizes; got None", id="no-item-shape"),
    pytest.param(dict(**{"class": "Tensor"}), "class must be one of .* got 'Tensor'", id="class"),
    pytest.param(
        dict(**{"class": "RaggedImageBatch"}),
        "items of 3 dims; got item_shape ()",
        id="image-not-4d",
    ),
    pytest.param(
        dict(backend="jax"), "backend must be 'numpy' or 'torch'; got 'jax'", id="backend"
    ),
    pytest.param(
        dict(format_version="3"), "format_version must be '1' or '2'.*got '3'", id="version"
    ),
    pytest.param(
        dict(format_version=None), "format_version must be '1' or '2'.*got None", id="no-version"
    ),
    pytest.param(dict(format_version="2"), "entries must be a JSON list", id="v2-no-entries"),
    pytest.param(dict(format="numpy"), "format='raggedarray'", id="other-format"),
]


@MMAP
@pytest.mark.parametrize(("change", "match"), FORGED)
def test_forged_raggedarray_file(tmp_path, change, match, mmap):
    path = tmp_path / "x.safetensors"
    change = dict(change)
    values = change.pop("values", VALUES)
    offsets = change.pop("offsets", [0, 1, 1, 4])
    forge(path, values, offsets, **change)
    with pytest.raises(ValueError, match=match):
        ra.load(path, mmap=mmap)


@MMAP
@pytest.mark.parametrize("dims", [[0, 0, 2**63 - 1], [0, 2**40, 2**40], [2**62, 0]])
def test_forged_shape_too_large_for_any_array(tmp_path, mmap, dims):
    # zero items, so no bytes: but numpy refuses such a shape with its own words
    path = tmp_path / "x.safetensors"
    ra.save(path, ra.RaggedArray.from_lengths(np.zeros((0, 0, 5)), []))
    header, start = header_of(path)
    header["values"]["shape"] = dims
    header["__metadata__"]["item_shape"] = json.dumps(dims[1:])
    raw_file(path, header, path.read_bytes()[start:])
    with pytest.raises(ValueError, match=r"^load\(.*\): tensor 'values' must have a shape an"):
        ra.load(path, mmap=mmap)


@MMAP
def test_forged_tensor_names(tmp_path, mmap):
    path = tmp_path / "x.safetensors"
    meta = dict(META)
    safetensors.numpy.save_file({"values": VALUES}, path, metadata=meta)
    with pytest.raises(ValueError, match=r"'offsets' and 'values'; got \['values'\]"):
        ra.load(path, mmap=mmap)
    tensors = {"values": VALUES, "offsets": np.array([0, 4]), "extra": np.zeros(1)}
    safetensors.numpy.save_file(tensors, path, metadata=meta)
    with pytest.raises(ValueError, match=r"got \['extra', 'offsets', 'values'\]"):
        ra.load(path, mmap=mmap)


@MMAP
def test_numpy_file_with_bfloat16_values(tmp_path, mmap):
    path = tmp_path / "x.safetensors"
    tensors = {"values": torch.zeros(4, dtype=torch.bfloat16), "offsets": torch.tensor([0, 4])}
    safetensors.torch.save_file(tensors, path, metadata=META)
    with pytest.raises(ValueError, match="numpy values cannot be bfloat16"):
        ra.load(path, mmap=mmap)
    safetensors.torch.save_file(tensors, path, metadata={**META, "backend": "torch"})
    assert ra.load(path, mmap=mmap).dtype == torch.bfloat16


@MMAP
@pytest.mark.parametrize(
    ("entry", "new", "match"),
    [
        (2, 100, r"non-decreasing; got offsets\[2\]=100 > offsets\[3\]=5"),
        (-1, 99, r"offsets\[-1\] must equal the number of items values.shape\[0\]=15"),
    ],
    ids=["middle", "last"],
)
def test_corrupted_offsets_bytes(tmp_path, entry, new, match, mmap):
    _, x = oracle_and_x(("numpy", "cpu"))
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    header, data_start = header_of(path)
    begin, end = header["offsets"]["data_offsets"]
    data = bytearray(path.read_bytes())
    offsets = np.frombuffer(bytes(data[data_start + begin : data_start + end]), "<i8").copy()
    offsets[entry] = new
    data[data_start + begin : data_start + end] = offsets.tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=match):
        ra.load(path, mmap=mmap)


@MMAP
def test_missing_file_stays_file_not_found(tmp_path, mmap):
    with pytest.raises(FileNotFoundError):
        ra.load(tmp_path / "nothing.safetensors", mmap=mmap)


@MMAP
def test_a_directory_is_not_a_file(tmp_path, mmap):
    with pytest.raises(ValueError, match=r"^load: path must be a file; got directory '.*'$"):
        ra.load(tmp_path, mmap=mmap)
    with pytest.raises(ValueError, match="got directory"):
        ra.load(str(tmp_path), mmap=mmap)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="path must be a file; got a special file"):
        ra.load(fifo)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
def test_save_refuses_to_replace_a_special_file(tmp_path):
    # renamed over, a FIFO (or /dev/null, for root) would be destroyed
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    with pytest.raises(ValueError, match=r"^save: path must be a regular file .* special file"):
        ra.save(fifo, x)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary file left


@pytest.mark.parametrize("path", ["", "new/", f"new{os.sep}"])
def test_save_refuses_paths_that_name_no_file(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    with pytest.raises(ValueError, match=r"^save: path must name a file; got "):
        ra.save(path, x)
    assert list(tmp_path.iterdir()) == [] and list(tmp_path.parent.glob(".*.tmp")) == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
@pytest.mark.parametrize("existing", [True, False], ids=["to-a-file", "dangling"])
def test_save_writes_through_a_symbolic_link(tmp_path, existing):
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    real, link = tmp_path / "real.st", tmp_path / "link.st"
    if existing:
        ra.save(real, x)
    os.symlink("real.st", link)
    ra.save(link, x * 10)
    assert link.is_symlink()  # the link stays, as with open(link, "wb")
    ra.testing.assert_ragged_equal(ra.load(real), x * 10)
    ra.testing.assert_ragged_equal(ra.load(link), x * 10)


@pytest.mark.parametrize("mode", [0o200, 0o444, 0o640])
def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path, mode):
    path = tmp_path / "f.st"
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    ra.save(path, x)
    os.chmod(path, mode)
    ra.save(path, x * 2)  # flushed before the mode is set: a 0o200 file is replaced too
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    os.chmod(path, 0o600)
    ra.testing.assert_ragged_equal(ra.load(path), x * 2)


def flip_bool_byte(path, name, k, byte):
    """Overwrite byte ``k`` of the bool tensor ``name`` in a saved file."""
    header, data_start = header_of(path)
    data = bytearray(path.read_bytes())
    data[data_start + header[name]["data_offsets"][0] + k] = byte
    path.write_bytes(bytes(data))


@MMAP
@BACKENDS
@pytest.mark.parametrize("k", [0, 4])
@pytest.mark.parametrize("byte", [2, 7, 255])
def test_corrupted_bool_bytes(tmp_path, backend, mmap, k, byte):
    x = ra.RaggedArray.from_lengths(np.array([True, False, True, True, False]), [2, 0, 3])
    x = x if backend == "numpy" else x.torch()
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    assert ra.load(path, mmap=mmap).equal(x)  # the 0/1 bytes of a good file pass
    flip_bool_byte(path, "values", k, byte)
    with pytest.raises(ValueError, match=rf"bool tensor must hold only bytes 0 and 1; got byte "
                       rf"{byte} at item {k} "):  # fmt: skip
        ra.load(path, mmap=mmap)


# --------------------------------------------------------------------- wrong arguments


def test_wrong_kinds_raise_type_error(tmp_path):
    _, x = oracle_and_x(("numpy", "cpu"))
    path = tmp_path / "x.safetensors"
    with pytest.raises(
        TypeError,
        match=r"save: obj must be a RaggedArray, a RaggedImageBatch or a dict .* got list",
    ):
        ra.save(path, [x])
    with pytest.raises(TypeError, match=r"save: path must be a str or os\.PathLike; got int"):
        ra.save(3, x)
    with pytest.raises(TypeError, match="got bytes"):
        ra.save(b"x.safetensors", x)
    ra.save(path, x)
    with pytest.raises(TypeError, match="load: mmap must be a bool; got str"):
        ra.load(path, mmap="yes")
    with pytest.raises(TypeError, match="load: path must be"):
        ra.load(None)
    with pytest.raises(TypeError):
        ra.load(path, True)  # mmap is keyword-only


@pytest.mark.parametrize(
    "values",
    [np.zeros(4, np.complex128), torch.zeros(4, dtype=torch.complex64)],
    ids=["numpy-complex", "torch-complex"],
)
def test_unsupported_dtype_raises_type_error(tmp_path, values):
    # complex values never make a ragged array, so save never meets them; in a dict they are
    # refused before anything is written
    with pytest.raises(TypeError, match=r"values must hold real numbers or booleans"):
        ra.RaggedArray.from_lengths(values, [4])
    with pytest.raises(TypeError, match=r"save: .* got complex"):
        ra.save(tmp_path / "x.safetensors", {"x": values})
    assert os.listdir(tmp_path) == []


def test_public_names():
    assert ra.save is raggedarray.io.save and ra.load is raggedarray.io.load
    assert {"load", "save"} <= set(ra.__all__)


# ------------------------------------------------------------------------ atomic write


def broken_writer(calls):
    def write(tensors, filename, metadata=None):
        calls.append(os.fspath(filename))
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    return write


@BACKENDS
def test_failed_write_leaves_the_old_file_untouched(tmp_path, monkeypatch, backend):
    path = tmp_path / "x.safetensors"
    _, old = oracle_and_x((backend, "cpu"))
    ra.save(path, old)
    before, listing = path.read_bytes(), sorted(os.listdir(tmp_path))
    calls = []
    module = safetensors.numpy if backend == "numpy" else safetensors.torch
    monkeypatch.setattr(module, "save_file", broken_writer(calls))
    _, new = oracle_and_x((backend, "cpu"), lengths=[1, 2], seed=1)
    with pytest.raises(OSError, match="disk full"):
        ra.save(path, new)
    assert len(calls) == 1
    assert os.path.dirname(calls[0]) == str(tmp_path) and calls[0] != str(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == listing
    monkeypatch.undo()
    assert ra.load(path).equal(old)


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(safetensors.numpy, "save_file", broken_writer(calls))
    _, x = oracle_and_x(("numpy", "cpu"))
    with pytest.raises(OSError, match="disk full"):
        ra.save(tmp_path / "x.safetensors", x)
    assert calls and os.listdir(tmp_path) == []


def test_failed_rename_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "x.safetensors"
    _, old = oracle_and_x(("numpy", "cpu"))
    ra.save(path, old)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        ra.save(path, old[1:])
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["x.safetensors"]
    assert path.read_bytes() == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_has_ordinary_permissions(tmp_path):
    _, x = oracle_and_x(("numpy", "cpu"))
    umask = os.umask(0o022)
    try:
        ra.save(tmp_path / "x.safetensors", x)
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "x.safetensors").st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["x.safetensors"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_overwriting_keeps_the_file_mode(tmp_path):
    _, x = oracle_and_x(("numpy", "cpu"))
    path = tmp_path / "x.safetensors"
    ra.save(path, x)
    os.chmod(path, 0o640)
    ra.save(path, x[1:])
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert ra.load(path).equal(x[1:])
