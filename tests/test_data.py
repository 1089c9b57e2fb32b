"""Collation, datasets and subsampling against per-sample and per-segment oracles."""

from __future__ import annotations

import pickle
import types
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np
import pytest
import torch
from conftest import (
    LENGTH_CASES,
    PLACES,
    assert_same_segments,
    host,
    oracle_and_x,
    random_segments,
    requires_cuda,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, default_collate

import raggedarray as ra


def bags(lengths, item_shape=(1, 4, 4), seed=0):
    return random_segments(np.random.default_rng(seed), lengths, item_shape, "float32")


# --------------------------------------------------------------------------- collate


@pytest.mark.parametrize("item_shape", [(), (3,), (1, 4, 4)])
@pytest.mark.parametrize("lengths", LENGTH_CASES)
def test_collate_bare_arrays_matches_the_samples(lengths, item_shape):
    if not lengths:
        with pytest.raises(ValueError, match="must not be empty"):
            ra.collate([])
        return
    samples = bags(lengths, item_shape)
    for batch_in in (samples, [torch.from_numpy(s) for s in samples]):
        batch = ra.collate(batch_in)
        assert batch.backend == "torch"
        assert type(batch) is (ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray)
        assert batch.item_shape == item_shape
        assert_same_segments(batch, samples)


def test_collate_tuples_and_lists_keep_structure_and_default_collate_the_rest():
    samples = [
        (bag, np.float32(i), torch.tensor([i, 2 * i])) for i, bag in enumerate(bags([2, 0, 3]))
    ]
    images, labels, pairs = ra.collate(samples, ragged=0)
    assert_same_segments(images, [s[0] for s in samples])
    assert torch.equal(labels, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(pairs, torch.tensor([[0, 0], [1, 2], [2, 4]]))
    as_lists = ra.collate([list(s) for s in samples], ragged=[-3])
    assert isinstance(as_lists, list)
    assert_same_segments(as_lists[0], [s[0] for s in samples])


def test_collate_dicts_with_several_ragged_keys():
    a, b = bags([1, 4]), bags([3, 0], (2,), seed=1)
    samples = [{"img": a[i], "pts": b[i], "y": i} for i in range(2)]
    out = ra.collate(samples, ragged=("img", "pts"))
    assert isinstance(out["img"], ra.RaggedImageBatch) and type(out["pts"]) is ra.RaggedArray
    assert_same_segments(out["img"], a)
    assert_same_segments(out["pts"], b)
    assert torch.equal(out["y"], torch.tensor([0, 1]))


def test_collate_explains_what_it_needs():
    sample = (np.zeros((2, 3)), 1)
    with pytest.raises(TypeError, match="need ragged= naming"):
        ra.collate([sample])
    with pytest.raises(ValueError, match="ragged positions must index"):
        ra.collate([sample], ragged=2)
    with pytest.raises(ValueError, match="ragged keys must be keys"):
        ra.collate([{"a": np.zeros((1, 2))}], ragged="b")
    with pytest.raises(ValueError, match="bare array samples"):
        ra.collate([np.zeros((1, 2))], ragged=0)
    with pytest.raises(ValueError, match="same item shape"):
        ra.collate([np.zeros((1, 2)), np.zeros((1, 3))])
    mixed = ra.collate([np.zeros((1, 2), np.float32), torch.zeros(2, 2, dtype=torch.float64)])
    assert mixed.dtype == torch.float64  # promoted, as torch.cat does
    with pytest.raises(TypeError, match="every sample must be a tuple"):
        ra.collate([sample, [np.zeros((1, 3)), 1]], ragged=0)
    with pytest.raises(TypeError, match="must hold arrays"):
        ra.collate([(1, 2)], ragged=0)
    with pytest.raises(TypeError, match="arrays, tuples or dicts"):
        ra.collate([3.0])


GOOD_FIELDS = {
    "numpy": [np.zeros((2, 3), np.float32), np.ones((0, 3), np.float32)],
    "tensors": [torch.zeros(2, 3), torch.ones(1, 3)],
    "mixed": [np.zeros((1, 3), np.int16), torch.ones(2, 3, dtype=torch.uint8)],
    "bool, uint16": [np.zeros((1, 2), bool), np.zeros((1, 2), np.uint16)],
}
BAD_FIELDS = {  # each refused (or, big-endian, converted) by the one-by-one checks
    "complex": [np.zeros((1, 2)), np.zeros((1, 2), np.complex64)],
    "object": [np.zeros((1, 2), dtype=object)],
    "0-d": [np.zeros((1, 2)), np.float64(1.0) * np.ones(())],
    "big-endian": [np.zeros((1, 2), ">f4")],
    "longdouble": [np.zeros((1, 2), np.longdouble)],
    "masked": [np.ma.masked_array(np.zeros((1, 2)))],
    "matrix": [np.zeros((1, 2)).view(np.matrix)],  # (np.matrix() itself warns it is going)
    "a list": [np.zeros((1, 2)), [[1.0, 2.0]]],
    "sparse": [torch.zeros(1, 2).to_sparse()],
    "nested": [
        torch.nested.nested_tensor([torch.zeros(1, 2), torch.zeros(2, 2)], layout=torch.jagged)
    ],
    "meta": [torch.zeros(1, 2, device="meta")],
    "float8": [torch.zeros(1, 2).to(torch.float8_e4m3fn)],
    "complex tensor": [torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.complex64)],
}


@pytest.mark.parametrize("name", GOOD_FIELDS)
def test_collate_checks_a_batch_of_plain_arrays_at_once(name):
    """The C-level check of a whole batch passes what the one-by-one checks pass, and the
    batch equals the concatenation."""
    from raggedarray import _checks

    items = GOOD_FIELDS[name]
    assert _checks.arrays_accepted(items)
    x = ra.collate(items)
    if all(isinstance(a, np.ndarray) for a in items):
        want = torch.from_numpy(np.concatenate(items))  # numpy's promotion, as from_list
    else:
        want = torch.cat([torch.as_tensor(a) for a in items])
    assert x.dtype == want.dtype and torch.equal(x.values, want)
    assert x.lengths.tolist() == [len(a) for a in items]


@pytest.mark.parametrize("name", BAD_FIELDS)
def test_collate_sends_every_doubtful_batch_through_the_checks_that_name_the_sample(name):
    from raggedarray import _checks

    items = BAD_FIELDS[name]
    assert not _checks.arrays_accepted(items)
    if name == "big-endian":
        assert ra.collate(items).values.dtype == torch.float32
        return
    with pytest.raises((TypeError, ValueError), match="sample"):
        ra.collate(items)


def test_collate_dicts_with_keys_in_any_order_follow_the_first_like_default_collate():
    a = bags([2, 0, 3], (3,))
    samples = [
        {"a": a[0], "b": 1, "c": 0.5},
        {"b": 2, "c": 1.5, "a": a[1]},
        {"c": 2.5, "a": a[2], "b": 3},
    ]
    out = ra.collate(samples, ragged="a")
    want = default_collate([{**s, "a": 0} for s in samples])
    assert list(out) == list(want) == ["a", "b", "c"]
    assert_same_segments(out["a"], a)
    for key in ("b", "c"):
        assert torch.equal(out[key], want[key])
    with pytest.raises(ValueError, match=r"keys of the first \(\['a', 'b'\]\); got \['a'\]"):
        ra.collate([{"a": a[0], "b": 1}, {"a": a[1]}], ragged="a")
    with pytest.raises(ValueError, match=r"got \['b', 'a', 'z'\] in sample 1"):
        ra.collate([{"a": a[0], "b": 1}, {"b": 2, "a": a[1], "z": 0}], ragged="a")


def test_collate_keeps_the_mapping_type_as_default_collate_does():
    # OrderedDict samples came back as a plain dict; a mappingproxy was refused
    a = bags([2, 1], (3,))
    for kind in (OrderedDict, types.MappingProxyType, lambda d: defaultdict(list, d)):
        samples = [kind({"a": a[0], "b": 1}), kind({"a": a[1], "b": 2})]
        out = ra.collate(samples, ragged="a")
        want = default_collate([kind({"a": 0, "b": 1}), kind({"a": 0, "b": 2})])
        assert type(out) is type(want) is type(samples[0])
        assert_same_segments(out["a"], a)
        assert torch.equal(out["b"], want["b"])


Pair = namedtuple("Pair", "bag label")


@pytest.mark.parametrize("ragged", [0, -2, "bag", ["bag"], np.int64(0)])
def test_collate_named_tuples_stay_named_tuples_like_default_collate(ragged):
    segments = bags([2, 1, 0], (3,))
    samples = [Pair(bag, i) for i, bag in enumerate(segments)]
    out = ra.collate(samples, ragged=ragged)
    want = default_collate([Pair(0, i) for i in range(3)])
    assert type(out) is type(want) is Pair
    assert_same_segments(out.bag, segments)
    assert torch.equal(out.label, want.label)
    with pytest.raises(ValueError, match=r"name the fields \['bag', 'label'\]; got \['bags'\]"):
        ra.collate(samples, ragged="bags")


@pytest.mark.parametrize("ragged", [np.int64(0), np.int32(-2), np.uint8(0), [np.int16(0)]])
def test_collate_takes_numpy_integer_positions(ragged):
    segments = bags([2, 0], (3,))
    images, labels = ra.collate([(bag, i) for i, bag in enumerate(segments)], ragged=ragged)
    assert_same_segments(images, segments)
    assert torch.equal(labels, torch.tensor([0, 1]))
    assert ra.data.RaggedCollate(ragged=ragged).ragged is ragged
    for wrong in (np.bool_(False), True, 0.0, np.float64(0)):
        with pytest.raises(TypeError, match="ragged must be None, a position"):
            ra.collate([(segments[0], 0)], ragged=wrong)


def test_ragged_collate_pickles_and_repeats_itself():
    fn = pickle.loads(pickle.dumps(ra.data.RaggedCollate(ragged="x")))
    assert fn.ragged == "x" and repr(fn) == "RaggedCollate(ragged='x')"


# ------------------------------------------------------------------------ DataLoader


class Bags(torch.utils.data.Dataset):
    """Sample i: a bag of i % 7 images whose pixels all equal i, and i as its label."""

    def __len__(self):
        return 61

    def __getitem__(self, i):
        return {"bag": np.full((i % 7, 1, 4, 4), i, np.float32), "label": i}


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true")
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("pin", [False, True])
def test_dataloader_loses_and_reorders_nothing(workers, pin):
    loader = DataLoader(
        Bags(),
        batch_size=5,
        num_workers=workers,
        pin_memory=pin,
        collate_fn=ra.data.RaggedCollate(ragged="bag"),
        persistent_workers=workers > 0,
    )
    seen = []
    for _ in range(2):  # two epochs: persistent workers serve both
        for batch in loader:
            bag, labels = batch["bag"], batch["label"]
            assert isinstance(bag, ra.RaggedImageBatch)
            for i, label in enumerate(labels.tolist()):
                assert bag[i].shape[0] == label % 7
                assert (bag[i] == label).all()
            seen.extend(labels.tolist())
    assert seen == list(range(61)) * 2


@requires_cuda
@pytest.mark.parametrize("workers", [0, 2])
def test_pinned_batches_move_to_the_gpu_without_blocking(workers):
    loader = DataLoader(
        Bags(), batch_size=6, num_workers=workers, pin_memory=True,
        collate_fn=ra.data.RaggedCollate(ragged="bag"),
    )  # fmt: skip
    for batch in loader:
        bag = batch["bag"]
        assert bag.values.is_pinned()
        on_gpu = bag.to("cuda", non_blocking=True)
        assert on_gpu.values.device.type == "cuda" and on_gpu.offsets.device.type == "cuda"
        assert_same_segments(on_gpu, [host(s) for s in bag])


class SharedAtBirth(ra.data.RaggedCollate):
    """Reports whether the batch was in shared memory inside the worker, before pickling
    (which would otherwise copy it there)."""

    def __call__(self, samples):
        batch = super().__call__(samples)
        return batch, batch["bag"].values.is_shared()


@pytest.fixture(params=["private", "public"])
def shared_route(request, monkeypatch):
    """The allocation route of ``collate`` in a worker: torch's private ``_new_shared`` (as
    ``default_collate`` uses), or the public ``share_memory_()`` taken where it is missing."""
    if request.param == "public":
        monkeypatch.delattr(torch.TypedStorage, "_new_shared")
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.bfloat16])
@pytest.mark.parametrize("shape", [(0, 3), (5, 1, 4, 4)])
def test_shared_buffers_have_the_asked_shape_and_dtype(shared_route, shape, dtype):
    out = ra.data._shared_empty(shape, dtype)
    assert out.is_shared() and out.shape == shape and out.dtype == dtype
    assert out.is_contiguous()


def test_worker_batches_are_born_in_shared_memory(shared_route):
    collate = SharedAtBirth(ragged="bag")
    loader = DataLoader(Bags(), batch_size=8, num_workers=2, collate_fn=collate)
    batch, shared = next(iter(loader))
    assert shared and batch["bag"].values.is_shared()
    assert not collate([Bags()[i] for i in range(8)])[1]  # not in a worker


def in_a_worker(monkeypatch, fn):
    """``fn()`` as inside a DataLoader worker; its result, or its error's type and message."""
    with monkeypatch.context() as patch:
        patch.setattr(ra.data, "get_worker_info", lambda: object())
        try:
            return fn()
        except (TypeError, ValueError, RuntimeError) as err:
            return type(err), str(err)


def in_main(fn):
    try:
        return fn()
    except (TypeError, ValueError, RuntimeError) as err:
        return type(err), str(err)


def grad_samples():
    return [torch.ones(2, 3, requires_grad=True), torch.zeros(1, 3)]


WORKER_CASES = {
    "numpy-int64-float32": lambda: [np.ones((2, 3), np.int64), np.ones((1, 3), np.float32)],
    "numpy-float16-int16": lambda: [np.ones((2, 3), np.float16), np.ones((1, 3), np.int16)],
    "numpy-uint64-int64": lambda: [np.ones((2, 3), np.uint64), np.ones((1, 3), np.int64)],
    "numpy-bool-uint8": lambda: [np.ones((2, 3), bool), np.ones((0, 3), np.uint8)],
    "mixed-int64-float32": lambda: [np.ones((2, 3), np.int64), torch.ones(1, 3)],
    "torch-bfloat16-float32": lambda: [torch.ones(2, 3, dtype=torch.bfloat16), torch.ones(1, 3)],
    "torch-uint16-uint8": lambda: [
        torch.full((2, 3), 60000).to(torch.uint16),
        torch.ones(1, 3, dtype=torch.uint8),
    ],
    "images": lambda: bags([2, 0, 1]),
    "flipped-read-only": lambda: [np.broadcast_to(np.arange(3.0), (2, 3))[::-1]],
    "item-shapes": lambda: [np.ones((2, 3)), np.ones((2, 4))],
    "item-ndims": lambda: [np.ones((2, 3)), torch.ones(2)],
    "complex": lambda: [torch.ones(2, dtype=torch.complex64)],
}


@pytest.mark.parametrize("case", WORKER_CASES)
def test_collate_in_a_worker_matches_the_main_process(monkeypatch, case):
    samples = WORKER_CASES[case]()
    main = in_main(lambda: ra.collate(samples))
    worker = in_a_worker(monkeypatch, lambda: ra.collate(samples))
    if isinstance(main, tuple):
        assert worker == main
        return
    assert type(worker) is type(main) and worker.dtype == main.dtype
    assert worker.values.requires_grad == main.values.requires_grad
    assert worker.equal(main)
    assert worker.values.is_shared() or main.values.requires_grad


def test_collate_keeps_the_graph_in_the_main_process():
    samples = grad_samples()
    images, _ = ra.collate([(s, 0) for s in samples], ragged=0)
    images.values.sum().backward()
    assert torch.equal(samples[0].grad, torch.ones(2, 3))


class _GradSamples(torch.utils.data.Dataset):
    """Samples computed with autograd on (features made outside no_grad)."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.ones(2, 3, requires_grad=True) * (i + 1)


@pytest.mark.parametrize("ragged", [None, 0])
def test_a_worker_refuses_ragged_fields_that_require_grad(ragged):
    """torch cannot send a tensor recording autograd to the main process: its feeder
    thread failed, and the loader waited for ever (default_collate raises)."""
    collate = ra.data.RaggedCollate(ragged=ragged)
    dataset = _GradSamples()
    if ragged is not None:
        dataset = [(dataset[i], i) for i in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate, timeout=60)
    with pytest.raises(ValueError, match=r"must not require grad .* in sample 0 \(detach it"):
        next(iter(loader))


class MixedDtypes(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return np.full((i, 2), i, dtype=np.int64 if i % 2 else np.float32)


def test_workers_promote_dtypes_as_the_main_process_does():
    batches = [
        next(iter(DataLoader(MixedDtypes(), batch_size=4, num_workers=n, collate_fn=ra.collate)))
        for n in (0, 2)
    ]
    assert batches[0].dtype == batches[1].dtype == torch.float64  # numpy's promotion
    assert batches[0].equal(batches[1])


# --------------------------------------------------------------------------- dataset


def test_dataset_gives_segments_targets_and_lengths():
    segments, x = oracle_and_x(("numpy", "cpu"))
    targets = np.arange(len(segments)) * 10
    ds = ra.data.RaggedDataset(x, targets=targets, transform=lambda a: a * 2)
    assert len(ds) == len(segments)
    np.testing.assert_array_equal(ds.lengths, [len(s) for s in segments])
    for i, seg in enumerate(segments):
        item, target = ds[i]
        np.testing.assert_array_equal(item, seg * 2)
        assert target == targets[i]
    assert np.shares_memory(ra.data.RaggedDataset(x)[0], x.values)
    with pytest.raises(ValueError, match="one entry per segment"):
        ra.data.RaggedDataset(x, targets=[1])
    with pytest.raises(TypeError, match="must be a RaggedArray"):
        ra.data.RaggedDataset(segments)
    with pytest.raises(TypeError, match="callable"):
        ra.data.RaggedDataset(x, transform=3)


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (
            np.array(3),
            ValueError,
            "targets must have one entry per segment .*; got a 0-d numpy array",
        ),
        (
            torch.tensor(3),
            ValueError,
            "targets must have one entry per segment .*; got a 0-d torch tensor",
        ),
        (3, TypeError, "targets must be a sequence, array or tensor .*; got int"),
        ({1, 2, 3}, TypeError, "targets must be a sequence, array or tensor .*; got set"),
        ("abc", TypeError, "targets must be a sequence, array or tensor .*; got str"),
    ],
)
def test_dataset_refuses_targets_without_one_entry_per_segment(targets, error, match):
    x = ra.RaggedArray.from_lengths(np.arange(6.0), [2, 0, 4])
    with pytest.raises(error, match=rf"^RaggedDataset: {match}"):
        ra.data.RaggedDataset(x, targets=targets)


@pytest.mark.parametrize("targets", [None, [10, 11, 12], np.array([10, 11, 12])])
def test_dataset_index_is_one_segment(targets):
    x = ra.RaggedArray.from_lengths(np.arange(6.0), [2, 0, 4])
    ds = ra.data.RaggedDataset(x, targets=targets)
    for i in (2, -1, np.int64(2), np.uint8(2), np.array(2), torch.tensor(2), torch.tensor(-1)):
        got = ds[i] if targets is None else ds[i][0]
        np.testing.assert_array_equal(got, x[2])
        if targets is not None:
            assert ds[i][1] == 12
    for bad in (slice(0, 2), [0, 2], np.array([0, 2]), True, np.bool_(False), 1.0,
                torch.tensor(True), torch.tensor(1.0), torch.tensor([1]), "0"):  # fmt: skip
        with pytest.raises(TypeError, match=r"^RaggedDataset.__getitem__: index must be an int"):
            ds[bad]
    with pytest.raises(IndexError):
        ds[3]


# ------------------------------------------------------------------------- subsample


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("k", [0, 1, 3, "per-segment"])
def test_subsample_draws_without_replacement_within_each_segment(place, lengths, k):
    segments, x = oracle_and_x(place, "float64", lengths=lengths)
    if k == "per-segment":
        k = np.arange(len(lengths)) % 4
    y = x.subsample(k, generator=np.random.default_rng(1))
    ks = np.broadcast_to(k, (len(lengths),))
    np.testing.assert_array_equal(y.host_lengths, np.minimum([len(s) for s in segments], ks))
    assert y.device == x.device and y.backend == x.backend
    for seg, got in zip(segments, y, strict=True):
        got = host(got)
        position = [int(np.flatnonzero(seg == v)[0]) for v in got]  # values are distinct
        assert position == sorted(set(position))  # a subset, in the original order
        if len(got) == len(seg):
            np.testing.assert_array_equal(got, seg)


def test_subsample_is_uniform_and_reproducible():
    x = ra.RaggedArray.from_lengths(np.arange(5), [5])
    counts = np.zeros(5)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        counts[x.subsample(2, generator=rng).values] += 1
    np.testing.assert_allclose(counts / 2000, 0.4, atol=0.05)  # each item kept 2/5 of times
    a = x.subsample(2, generator=torch.Generator().manual_seed(3)).values
    b = x.subsample(2, generator=torch.Generator().manual_seed(3)).values
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        x.subsample(3, generator=7).values, x.subsample(3, generator=7).values
    )


def test_subsample_refuses_bad_arguments():
    x = ra.RaggedArray.from_lengths(np.arange(5), [2, 3])
    with pytest.raises(ValueError, match="k must be >= 0"):
        x.subsample(-1)
    with pytest.raises(ValueError, match="one count per segment"):
        x.subsample([1, 2, 3])
    with pytest.raises(ValueError, match=r"k must be >= 0; got k\[1\]=-2"):
        x.subsample([1, -2])
    with pytest.raises(TypeError, match="generator must be"):
        x.subsample(1, generator="seed")


def test_subsample_keeps_gradients():
    values = torch.arange(6.0, requires_grad=True)
    y = ra.RaggedArray.from_lengths(values, [4, 2]).subsample(1, generator=0)
    y.values.sum().backward()
    assert values.grad.sum() == 2 and set(values.grad.tolist()) <= {0.0, 1.0}


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 6), max_size=8), k=st.integers(0, 7), seed=st.integers(0, 99)
)
@example(lengths=[], k=2, seed=0)
@example(lengths=[0, 0], k=1, seed=0)
def test_subsample_property(lengths, k, seed):
    x = ra.RaggedArray.from_lengths(np.arange(float(sum(lengths))), lengths)
    y = x.subsample(k, generator=seed)
    np.testing.assert_array_equal(y.host_lengths, np.minimum(lengths, k))
    for i in range(len(lengths)):
        assert set(y[i].tolist()) <= set(x[i].tolist())
        assert len(set(y[i].tolist())) == len(y[i])


def test_subsample_takes_a_0d_integer_count_as_an_int():
    x = ra.RaggedArray.from_lengths(torch.arange(6.0), [4, 0, 2])
    for k in (np.array(1), torch.tensor(1), np.int64(1)):
        y = x.subsample(k, generator=0)
        assert y.lengths.tolist() == [1, 0, 1]
    for bad in (np.array(1.0), np.array(True), torch.tensor(1.5)):
        with pytest.raises(TypeError, match=r"RaggedArray\.subsample: k must"):
            x.subsample(bad)


def test_dataset_targets_as_a_mapping_need_every_segment_index():
    """A dict keyed by labels was taken, then ds[2] raised a bare KeyError."""
    x = ra.RaggedArray.from_lengths(np.arange(6.0), [1, 2, 3])
    with pytest.raises(
        ValueError, match=r"mapping must have the segment indices 0\.\.2 .*no key 0"
    ):
        ra.data.RaggedDataset(x, targets={"a": 1, "b": 2, "c": 3})
    with pytest.raises(ValueError, match=r"no key 2"):
        ra.data.RaggedDataset(x, targets={0: 1, 1: 2, 3: 3})
    assert ra.data.RaggedDataset(x, targets={0: "a", 1: "b", 2: "c"})[-1][1] == "c"
    empty = ra.data.RaggedDataset(ra.RaggedArray.from_lengths(np.arange(0.0), []))
    with pytest.raises(IndexError, match=r"must index a segment; got 0 with no segments"):
        empty[0]
