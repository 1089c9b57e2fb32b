"""Pickling, ``torch.save``/``torch.load(weights_only=True)``, ``copy.copy`` and ``copy.deepcopy``.

Every round trip is compared with the per-segment oracle list; the fresh-interpreter tests
check the import orders a user meets (raggedarray before torch, torch before raggedarray, no
torch at all).
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from conftest import (
    LAYOUTS,
    LENGTH_CASES,
    PLACES,
    assert_same_segments,
    host,
    oracle_and_x,
    oracle_offsets,
    requires_cuda,
)

import raggedarray as ra
import raggedarray._pickle
import raggedarray.ragged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_round_trip(obj, **load_options):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True, **load_options)


def assert_same(y, x, segments):
    """``y`` is ``x`` again: class, backend, device, dtype, item shape, offsets and segments."""
    assert type(y) is type(x)
    assert y.backend == x.backend and str(y.device) == str(x.device)
    assert y.dtype == x.dtype and y.item_shape == x.item_shape
    assert y.host_offsets.tolist() == oracle_offsets(segments)
    assert host(y.offsets).tolist() == oracle_offsets(segments)
    assert not y.host_offsets.flags.writeable
    assert_same_segments(y, segments)


def run_fresh(code):
    """Run ``code`` in a new interpreter with this worktree's package first on the path."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


# ------------------------------------------------------- torch.save / torch.load


@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool"])
def test_torch_load_weights_only(place, layout, lengths, dtype):
    segments, x = oracle_and_x(place, dtype, layout, lengths)
    for source, want in ((x, segments), (x[1:3], segments[1:3]), (x[::-1], segments[::-1])):
        assert_same(torch_round_trip(source), source, want)


@pytest.mark.parametrize("place", PLACES[1:])
def test_torch_load_bfloat16(place):
    segments, x = oracle_and_x(place, "float32")
    x = x.to(dtype=torch.bfloat16)
    segments = [s.float().numpy() for s in x.cpu().to_list()]
    y = torch_round_trip(x)
    assert y.dtype == torch.bfloat16 and str(y.device) == str(x.device)
    assert_same_segments(y.to(dtype=torch.float32), segments)


@pytest.mark.parametrize("place", PLACES)
def test_torch_load_checkpoint_dict(place):
    segments, x = oracle_and_x(place, "float32", LAYOUTS[2].values[0])
    images = x if isinstance(x, ra.RaggedImageBatch) else None
    net = torch.nn.Linear(3, 2)
    checkpoint = {
        "model": net.state_dict(),
        "batch": images,
        "parts": [x[1:3], x[::2]],
        "numpy_view": x.numpy()[2:],
        "epoch": 3,
        "targets": torch.arange(len(x)),
    }
    back = torch_round_trip(checkpoint)
    assert back.keys() == checkpoint.keys() and back["epoch"] == 3
    assert torch.equal(back["model"]["weight"], net.weight.detach())
    assert_same(back["batch"], images, segments)
    assert_same(back["parts"][0], x[1:3], segments[1:3])
    assert_same(back["parts"][1], x[::2], segments[::2])
    assert_same(back["numpy_view"], x.numpy()[2:], segments[2:])
    assert torch.equal(back["targets"], checkpoint["targets"])


def test_torch_load_keeps_requires_grad_of_leaves():
    x = ra.RaggedArray.from_lengths(torch.randn(5, 2, requires_grad=True), [2, 3])
    y = torch_round_trip(x)
    assert y.requires_grad and y.values.is_leaf and torch.equal(y.values, x.values)


def test_torch_load_of_a_numpy_slice_stores_only_its_items():
    x = ra.RaggedArray.from_lengths(np.zeros(100_000), [1, 99_999])
    sizes = []
    for part in (x[0:1], x):
        buffer = io.BytesIO()
        torch.save(part, buffer)
        sizes.append(buffer.tell())
    assert sizes[0] < sizes[1] / 10


@requires_cuda
def test_torch_load_map_location_moves_torch_values_and_keeps_numpy_on_host():
    segments, x = oracle_and_x(("torch", "cuda"), "float32")
    y = torch_round_trip({"cuda": x, "numpy": x.numpy()}, map_location="cpu")
    assert y["cuda"].device.type == "cpu" and y["cuda"].offsets.device.type == "cpu"
    assert_same_segments(y["cuda"], segments)
    assert_same(y["numpy"], x.numpy(), segments)
    z = torch_round_trip(x.numpy(), map_location="cuda")
    assert_same(z, x.numpy(), segments)


def test_registered_globals_are_exactly_the_package_ones():
    names = {f"{g.__module__}.{g.__qualname__}" for g in torch.serialization.get_safe_globals()}
    assert {
        "raggedarray._pickle.restore",
        "raggedarray.ragged.RaggedArray",
        "raggedarray.image.RaggedImageBatch",
    } <= names
    assert not any(n.startswith("numpy") for n in names)  # numpy is not opened up for users


def test_torch_load_refuses_forged_offsets():
    forged = ForgedReduce(
        (
            raggedarray._pickle.restore,
            (ra.RaggedArray, torch.zeros(3), torch.tensor([0, 5, 3]), "torch"),
        )
    )
    with pytest.raises(Exception, match=r"offsets must be non-decreasing"):
        torch_round_trip(forged)


class ForgedReduce:
    """Pickles as whatever reduce tuple it is given (to forge streams)."""

    def __init__(self, reduced):
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((int, np.zeros(2), np.array([0, 2]), "numpy"), TypeError, "ragged array class"),
        ((ra.RaggedArray, [1, 2], np.array([0, 2]), "numpy"), TypeError, "got list"),
        ((ra.RaggedArray, np.zeros(2), np.array([0, 2]), "jax"), TypeError, "backend 'jax'"),
        ((ra.RaggedArray, np.zeros(2), np.array([0, 2]), "torch"), TypeError, "must be a tensor"),
        ((ra.RaggedArray, np.zeros(2), np.array([0, 3]), "numpy"), ValueError, "offsets"),
        ((ra.RaggedArray, np.zeros(2), np.array([1.0, 2.0]), "numpy"), TypeError, "integer"),
        ((ra.RaggedImageBatch, np.zeros(2), np.array([0, 2]), "numpy"), ValueError, "4-D"),
        ((ra.RaggedArray, np.zeros(2), b"\0" * 12, "numpy"), ValueError, "not a multiple of 8"),
        ((ra.RaggedArray, np.zeros(2), np.int64(2).tobytes(), "numpy"), ValueError, r"\[0\]"),
    ],
    ids=[
        *("cls", "values", "backend", "torch-numpy", "offsets", "float-offsets", "image-ndim"),
        *("odd-bytes", "bytes-offsets"),
    ],
)
def test_forged_pickles_are_refused(args, error, match):
    data = pickle.dumps(ForgedReduce((raggedarray._pickle.restore, args)))
    with pytest.raises(error, match=match):
        pickle.loads(data)


# ------------------------------------------------------------------------- pickle


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pickle_protocols(place, layout, protocol):
    segments, x = oracle_and_x(place, "float64", layout)
    assert_same(pickle.loads(pickle.dumps(x, protocol=protocol)), x, segments)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_torch_save_at_pickle_protocol_3_loads(backend):
    """Protocol 3 writes bytes with an opcode torch's weights_only unpickler lacks: the
    offsets travel as ints there (past 2**31 too), as a plain tensor saved so loads."""
    x = ra.RaggedArray.from_lengths(torch.arange(6.0), [2, 0, 4])
    x = x if backend == "torch" else x.numpy()
    huge = ra.RaggedArray.from_lengths(torch.zeros(3_000_000_000, 0), [1, 2_999_999_999])
    for obj in (x, {"x": x, "huge": huge}):
        buffer = io.BytesIO()
        torch.save(obj, buffer, pickle_protocol=3)
        buffer.seek(0)
        with warnings.catch_warnings():  # torch's note that 2 is its default protocol
            warnings.simplefilter("ignore", UserWarning)
            back = torch.load(buffer)
        if isinstance(obj, dict):
            assert back["huge"].equal(huge)
            back = back["x"]
        assert back.equal(x) and back.backend == backend
        assert pickle.loads(pickle.dumps(x, protocol=3)).equal(x)


class _OwnReduce(ra.RaggedArray):
    def __reduce__(self):
        return (_rebuilt, (self.values, self.offsets))


def _rebuilt(values, offsets):
    return ("rebuilt", values.shape[0], offsets.shape[0])


def test_a_subclass_reduce_is_honoured():
    # __reduce_ex__ (which pickle calls first) ignored a subclass's own __reduce__
    x = _OwnReduce.from_lengths(torch.arange(6.0), [2, 4])
    assert pickle.loads(pickle.dumps(x)) == ("rebuilt", 6, 3)


def test_numpy_values_that_travelled_as_an_unreadable_tensor_are_refused():
    """map_location="meta", a bfloat16 or a grad-requiring tensor failed inside torch."""
    buffer = io.BytesIO()
    torch.save({"x": ra.RaggedArray.from_lengths(np.arange(6.0), [2, 4])}, buffer)
    buffer.seek(0)
    with pytest.raises(ValueError, match=r"^raggedarray: unpickling: values must hold data"):
        torch.load(buffer, map_location="meta")
    restore = raggedarray._pickle.restore
    with pytest.raises(TypeError, match=r"^raggedarray: unpickling: numpy values must travel"):
        restore(ra.RaggedArray, torch.zeros(3, dtype=torch.bfloat16), [0, 3], "numpy")
    grad = restore(ra.RaggedArray, torch.ones(3, requires_grad=True), [0, 3], "numpy")
    assert grad.backend == "numpy" and grad.values.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64"])
def test_unsigned_values_pickle_save_and_copy(dtype, backend):
    # pickle cannot write uint16-64 tensors (torch 2.13), and numpy values travel as tensors
    # once torch is loaded: both go as their signed twins and come back bit for bit
    top = np.iinfo(dtype).max
    values = np.array([top, 0, 1, top - 1, top // 2], dtype=dtype)
    x = ra.RaggedArray.from_lengths(values, [3, 0, 2])
    x = x if backend == "numpy" else x.torch()
    for y in (pickle.loads(pickle.dumps(x)), torch_round_trip(x), copy.deepcopy(x)):
        assert type(y) is type(x) and y.backend == x.backend and y.dtype == x.dtype
        np.testing.assert_array_equal(host(y.values), values)
        np.testing.assert_array_equal(y.host_offsets, [0, 3, 3, 5])


def test_unpickling_refuses_a_forged_unsigned_view():
    signed = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(TypeError, match=r"unpickling: unsigned values must travel as their"):
        raggedarray._pickle.restore(ra.RaggedArray, signed, torch.tensor([0, 2]), "torch", "uint16")
    with pytest.raises(TypeError, match=r"unpickling: unsigned values must travel as their"):
        raggedarray._pickle.restore(
            ra.RaggedArray, signed, torch.tensor([0, 2]), "torch", "float32"
        )


def test_read_only_numpy_values_pickle(tmp_path):
    segments, x = oracle_and_x(("numpy", "cpu"), "float32")
    ra.save(tmp_path / "x.safetensors", x)
    mapped = ra.load(tmp_path / "x.safetensors", mmap=True)
    assert not mapped.values.flags.writeable
    assert_same(torch_round_trip(mapped), x, segments)
    assert_same(pickle.loads(pickle.dumps(mapped)), x, segments)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("weights_only", [True, False])
def test_torch_legacy_format_round_trip(place, weights_only):
    """torch's legacy writer fills the tensors' memory after the pickle is read: offsets
    that travelled as a tensor were read before they held anything."""
    segments, x = oracle_and_x(place, "float32", LAYOUTS[1].values[0])
    buffer = io.BytesIO()
    torch.save({"x": x, "view": x[1:4]}, buffer, _use_new_zipfile_serialization=False)
    buffer.seek(0)
    back = torch.load(buffer, weights_only=weights_only)
    assert_same(back["x"], x, segments)
    assert_same(back["view"], x[1:4], segments[1:4])


@pytest.mark.parametrize("offsets", [np.array([0, 1, 3]), torch.tensor([0, 1, 3])])
def test_pickles_with_offsets_as_an_array_still_load(offsets):
    # offsets used to travel as an array (a tensor once torch was loaded)
    old = ForgedReduce(
        (raggedarray._pickle.restore, (ra.RaggedArray, torch.arange(3.0), offsets, "torch"))
    )
    y = pickle.loads(pickle.dumps(old))
    assert type(y) is ra.RaggedArray and y.host_offsets.tolist() == [0, 1, 3]
    assert y.values.tolist() == [0.0, 1.0, 2.0]


def test_pickles_of_raggedarray_0_1_still_load():
    old = ForgedReduce(
        (raggedarray.ragged._rebuild, (ra.RaggedArray, np.arange(3.0), np.array([0, 1, 3])))
    )
    y = pickle.loads(pickle.dumps(old))
    assert type(y) is ra.RaggedArray and y.host_offsets.tolist() == [0, 1, 3]


def test_fresh_interpreters_in_both_import_orders(tmp_path):
    path = tmp_path / "x.pt"
    _, x = oracle_and_x(("torch", "cpu"), "float32", LAYOUTS[2].values[0])
    torch.save({"x": x, "n": x.numpy()}, path)
    load = (
        f"y = torch.load({str(path)!r})\n"  # weights_only=True is torch's default
        "print(type(y['x']).__name__, y['x'].backend, y['n'].backend, y['x'].equal(y['n']))"
    )
    want = [type(x).__name__, "torch", "numpy", "True"]
    before = run_fresh(
        f"import sys, raggedarray\nprint('torch' in sys.modules)\nimport torch\n{load}"
    )
    assert before == ["False", *want]  # importing raggedarray alone does not import torch
    assert run_fresh(f"import torch, raggedarray\n{load}") == want


def test_numpy_pickle_made_without_torch_loads_without_torch(tmp_path):
    path = tmp_path / "x.pkl"
    code = f"""
        import pickle, sys
        import numpy as np
        import raggedarray as ra
        x = ra.RaggedImageBatch.from_list([np.ones((2, 1, 2, 2)), np.zeros((0, 1, 2, 2))])
        with open({str(path)!r}, "wb") as f:
            pickle.dump(x, f)
        with open({str(path)!r}, "rb") as f:
            y = pickle.load(f)
        print(type(y).__name__, y.lengths.tolist(), y.equal(x), "torch" in sys.modules)
    """
    assert run_fresh(code) == ["RaggedImageBatch", "[2,", "0]", "True", "False"]


# ---------------------------------------------------------------------------- copy


@pytest.mark.parametrize("layout", LAYOUTS)
def test_copy_shares_everything(place, layout):
    segments, x = oracle_and_x(place, "float32", layout)
    for source, want in ((x, segments), (x[2:5], segments[2:5])):
        y = copy.copy(source)
        assert y is not source
        assert y.values is source.values and y._part is source._part
        assert_same(y, source, want)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_deepcopy_copies_values(place, layout):
    segments, x = oracle_and_x(place, "float32", layout)
    for source, want in ((x, segments), (x[2:5], segments[2:5]), (x[::-1], segments[::-1])):
        y = copy.deepcopy(source)
        assert_same(y, source, want)
        if x.backend == "torch":
            assert y.values.untyped_storage().data_ptr() != x.values.untyped_storage().data_ptr()
        else:
            assert not np.shares_memory(y.values, x.values)
        y.values[...] = 0  # writing the copy leaves the original alone
        assert_same_segments(source, want)


def test_deepcopy_keeps_sharing_and_grad_inside_a_container():
    x = ra.RaggedArray.from_lengths(torch.randn(5, 2, requires_grad=True), [2, 3])
    box = {"a": x, "b": x, "raw": x.values}
    back = copy.deepcopy(box)
    assert back["a"] is back["b"] and back["a"].values is back["raw"]
    assert back["a"].requires_grad and back["a"].values.is_leaf
    assert torch.equal(back["a"].values, x.values)


def test_numpy_map_leaves_torch_unloaded_and_torch_map_works_after():
    # map's lean path binds torch's objects only once torch is loaded.
    out = run_fresh(
        """
        import sys, numpy as np, raggedarray as ra
        x = ra.RaggedArray.from_lengths(np.arange(6.0).reshape(3, 2), [1, 2])
        same = [np.array_equal(x.map(np.sin).values, np.sin(x.values)) for _ in range(2)]
        print('torch' in sys.modules, all(same))
        import torch
        t = ra.RaggedArray.from_lengths(torch.arange(6.0).reshape(3, 2), [1, 2])
        double = lambda v: v * 2
        print(all(torch.equal(t.map(double).values, t.values * 2) for _ in range(3)))
        """
    )
    assert out == ["False", "True", "True"]


# ------------------------------------------------------------- between processes

# Run as a script, so that spawned children can import ``echo`` from it. The children
# receive ragged arrays as Process arguments (pickled before they start, the path on which
# shared-memory descriptors of temporaries used to close too early), send them back through
# a queue, and a DataLoader over a RaggedDataset runs its workers the same way.
SPAWNED = """
import sys
if sys.argv[2] == "package first":  # torch loads after raggedarray: its import hook registers
    import raggedarray as ra
import numpy as np
import torch
import raggedarray as ra
from torch.utils.data import DataLoader

class Mine(ra.RaggedArray):
    pass

def echo(queue, arrays):
    queue.put([(type(x).__name__, x.backend, str(x.dtype), x.host_offsets.tolist(),
                np.asarray(x.values if x.backend == "numpy" else x.values.float()).tolist())
               for x in arrays])

def described(arrays):
    return [(type(x).__name__, x.backend, str(x.dtype), x.host_offsets.tolist(),
             np.asarray(x.values if x.backend == "numpy" else x.values.float()).tolist())
            for x in arrays]

if __name__ == "__main__":
    method = sys.argv[1]
    torch.manual_seed(0)
    big = ra.RaggedArray.from_lengths(torch.randn(20, 2), [3, 0, 5, 4, 8])
    arrays = [
        ra.RaggedImageBatch.from_lengths(np.arange(24.0).reshape(6, 1, 2, 2), [2, 0, 4]),
        big[1:4],  # a view of a larger storage
        ra.RaggedArray.from_lengths(torch.arange(5).to(torch.uint16), [2, 3]),
        Mine.from_lengths(torch.ones(3), [1, 2]),
        ra.RaggedArray.from_lengths(np.zeros((0, 3)), [0, 0]),
    ]
    ctx = torch.multiprocessing.get_context(method)
    queue = ctx.Queue()
    child = ctx.Process(target=echo, args=(queue, arrays))
    child.start()
    got = queue.get(timeout=120)
    child.join(timeout=60)
    assert got == described(arrays), (got, described(arrays))
    for backend in ("numpy", "torch"):
        x = ra.RaggedImageBatch.from_lengths(np.arange(36.0).reshape(9, 1, 2, 2), [2, 0, 4, 3])
        x = x if backend == "numpy" else x.torch()
        dataset = ra.data.RaggedDataset(x, targets=np.arange(4))
        collate = ra.data.RaggedCollate(ragged=0)
        batches = {}
        for workers in (0, 1):  # in this process (the oracle), then in a spawned worker
            loader = DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=collate,
                                multiprocessing_context=method if workers else None)
            batches[workers] = [(described([b]), t.tolist()) for b, t in loader]
        assert batches[1] == batches[0] and len(batches[0]) == 2, batches
    print("ok")
"""


@pytest.mark.parametrize(
    ("method", "order"), [("spawn", "torch first"), ("forkserver", "package first")]
)
def test_ragged_arrays_reach_spawned_processes_and_dataloader_workers(method, order, tmp_path):
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script), method, order],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]
