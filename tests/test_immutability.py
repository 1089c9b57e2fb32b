"""A ragged array owns its segmentation: nothing the caller does later can change it."""

from __future__ import annotations

import array
import pickle

import numpy as np
import pytest
import torch
from conftest import PLACES, TORCH_PLACES, host, on

import raggedarray as ra


@pytest.mark.parametrize("place", PLACES)
def test_caller_editing_its_offsets_changes_nothing(place):
    values = on(np.arange(5.0), place)
    offsets = on(np.array([0, 2, 5]), place)
    x = ra.RaggedArray(values, offsets)
    offsets[1] = 4
    assert x.host_offsets.tolist() == [0, 2, 5]
    assert np.asarray(x.offsets.tolist()).tolist() == [0, 2, 5]
    assert x[0].shape[0] == 2


@pytest.mark.parametrize("offsets_kind", ["numpy", "tensor"])
@pytest.mark.parametrize(
    "reduce",
    [
        ra.segment_sum,
        ra.segment_mean,
        ra.segment_max,
        ra.segment_prod,
        ra.segment_var,
        ra.segment_std,
        ra.segment_logsumexp,
        ra.segment_softmax,
        ra.segment_log_softmax,
    ],
    ids=lambda f: f.__name__,
)
def test_functional_reductions_own_the_offsets_their_backward_reads(offsets_kind, reduce):
    """The caller reuses its offsets buffer between forward and backward: the gradient is
    still that of the offsets given (it read the new ones, or crashed on an index out of
    range, when the partition kept a view of the caller's memory)."""
    offsets = np.array([0, 2, 5]) if offsets_kind == "numpy" else torch.tensor([0, 2, 5])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([[0.3], [-1.7]], dtype=torch.float64)
    if reduce in (ra.segment_softmax, ra.segment_log_softmax):
        upstream = torch.tensor([0.3, -1.7, 0.5, 2.0, -0.4], dtype=torch.float64)

    def gradient(out):
        return torch.autograd.grad(out, values, upstream.reshape(out.shape))[0]

    want = gradient(reduce(values, offsets.copy() if offsets_kind == "numpy" else offsets.clone()))
    out = reduce(values, offsets)
    offsets[1] = 4  # reused for the next batch before backward
    torch.testing.assert_close(gradient(out), want, rtol=0, atol=0)
    offsets[1] = 10**12  # (out of range: read by the backward, this crashed the process)
    torch.testing.assert_close(gradient(reduce(values, [0, 2, 5])), want, rtol=0, atol=0)


def test_segment_broadcast_owns_its_offsets():
    offsets = np.array([0, 2, 5])
    rows = torch.tensor([[1.0], [2.0]], requires_grad=True)
    out = ra.segment_broadcast(rows, offsets)
    offsets[1] = 4
    (grad,) = torch.autograd.grad(out, rows, torch.ones(5, 1))
    assert grad.tolist() == [[2.0], [3.0]]


class _Lends:
    """An object whose ``__array__`` hands out its own array (as a pandas Series does)."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array


@pytest.mark.parametrize("kind", ["array.array", "memoryview", "__array__"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_offsets_lent_through_the_buffer_protocol_are_copied(kind, backend):
    """Before, these offsets were kept as views: a later edit by the caller moved the
    segments, or crashed the process in a reduction."""
    storage = array.array("q", [0, 2, 6]) if kind == "array.array" else np.array([0, 2, 6])
    offsets = {"memoryview": memoryview, "__array__": _Lends}.get(kind, lambda a: a)(storage)
    values = np.arange(6.0) if backend == "numpy" else torch.arange(6.0)
    x = ra.RaggedArray(values, offsets)
    part = ra.segment_sum(values, offsets)
    storage[2] = 10_000_000
    assert x.host_offsets.tolist() == [0, 2, 6] and x.host_lengths.tolist() == [2, 4]
    assert host(x.sum()).tolist() == [1.0, 14.0] == host(part).tolist()
    assert host(ra.segment_sum(values, [0, 2, 6])).tolist() == [1.0, 14.0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_numpy_metadata_is_read_only(backend):
    values = np.arange(5.0) if backend == "numpy" else torch.arange(5.0)
    x = ra.RaggedArray.from_lengths(values, [2, 3])
    arrays = [x.host_offsets, x.host_lengths, x[1:].host_offsets, x[[1, 0]].host_lengths]
    if backend == "numpy":
        arrays += [x.offsets, x.lengths, x.segment_ids]
    for a in arrays:
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 1
    assert host(x.sum()).tolist() == [1.0, 9.0]


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_writing_torch_metadata_changes_nothing(place):
    # torch has no read-only tensors: what the user gets is a copy, so everyday in-place code
    # (lengths.clamp_(min=1)) cannot move the boundaries of x or of results sharing them.
    x = ra.RaggedArray.from_lengths(on(np.arange(5.0), place), [2, 0, 3])
    y = x * 2  # shares x's offsets
    nested = x.to_nested()
    for z in (x, y):
        z.offsets[1] = 4
        z.lengths.clamp_(min=1)
        z.segment_ids.zero_()
    nested.offsets()[1] = 4
    for z in (x, y):
        np.testing.assert_array_equal(z.host_offsets, [0, 2, 2, 5])
        assert host(z.offsets).tolist() == [0, 2, 2, 5]
        assert host(z.lengths).tolist() == [2, 0, 3]
        assert host(z.segment_ids).tolist() == [0, 0, 2, 2, 2]
        assert z.max_length == 3
    assert host(x.sum()).tolist() == [1.0, 0.0, 9.0]
    assert [host(s).tolist() for s in x] == [[0.0, 1.0], [], [2.0, 3.0, 4.0]]


def test_handed_out_metadata_under_a_fake_tensor_mode():
    # comparing the kept copy read data a FakeTensorMode does not have
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = ra.RaggedArray.from_lengths(torch.arange(6.0), [2, 0, 4])
    kept = x.offsets
    with FakeTensorMode():
        assert x.offsets is kept


def test_writes_past_the_version_counter_change_nothing_on_the_cpu():
    # numpy's in-place calls on .numpy() and writes through .data leave torch's version
    # counter alone: the kept copy is compared, so x, arrays sharing its offsets and the
    # nested tensors built from them keep the boundaries
    x = ra.RaggedArray.from_lengths(torch.arange(6.0), [2, 0, 4])
    y = x * 2
    x.lengths.numpy().sort()
    x.offsets.numpy()[1] = 1
    for z in (x, y):  # (segment ids, N values, are trusted to torch's version counter)
        assert z.lengths.tolist() == [2, 0, 4]
        assert z.offsets.tolist() == [0, 2, 2, 6]
        assert [s.tolist() for s in z.to_nested().unbind()] == [s.tolist() for s in z]


@pytest.mark.parametrize("place", PLACES)
def test_metadata_handed_out_is_kept_until_written(place):
    # cached as the contract asks: the same copy each time (and for every array over the
    # same offsets), so nested tensors share one ragged size; a write makes the next fresh
    x = ra.RaggedArray.from_lengths(on(np.arange(10.0).reshape(10, 1), place), [3, 0, 4, 3])
    y = x * 2
    for name in ("offsets", "lengths", "segment_ids"):
        assert getattr(x, name) is getattr(x, name) is getattr(y, name)
    nested = x.to_nested() + y.to_nested()  # one ragged size: the offsets are shared
    assert nested.shape[0] == 4 and x.to_nested().offsets() is y.to_nested().offsets()
    if x.backend == "torch":
        kept = x.offsets
        kept[1] = 9
        assert x.offsets is not kept and host(x.offsets).tolist() == [0, 3, 3, 7, 10]


def test_pickling_a_torch_slice_sends_only_its_items():
    x = ra.RaggedArray.from_lengths(torch.zeros(10_000), [1, 9_999])
    part = pickle.dumps(x[0:1])
    whole = pickle.dumps(x)
    assert len(part) < len(whole) / 10
    back = pickle.loads(part)
    assert back.equal(x[0:1])


def test_a_dtype_string_passed_as_device_is_explained():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    with pytest.raises(ValueError, match=r"RaggedArray\.to: device must be .*got 'float32'"):
        x.to("float32")
    assert x.to(dtype="float32").dtype == np.float32
