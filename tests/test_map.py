"""``x.map(fn)`` against the oracle: ``fn`` applied to every segment on its own, in a loop.

Chunks may split segments, so the chunking must never show in the result: not in the values,
not in the offsets, not in the gradients. Batch norm in training mode is the one documented
exception, and the tests pin down both sides of that trade-off.
"""

from __future__ import annotations

import copy
import functools
import gc
import math
import sys
import weakref

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
    equal_chunks,
    host,
    on,
    oracle_and_x,
    ragged_lists,
    requires_cuda,
    set_budgets,
    torch_dtype,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import raggedarray as ra
import raggedarray.map as mapping
from raggedarray import _backend

N = sum(LENGTHS)
LONG = LENGTHS * 3  # more items than one probe call takes
CPU_PLACES = [p for p in PLACES if p.values[0][1] == "cpu"]
NO_SEGMENTS = ([], (2,), [])
NO_ITEMS = ([0, 0], (1, 3, 2), [np.zeros((0, 1, 3, 2))] * 2)

# ---------------------------------------------------------------------------- helpers


def sin2(v):
    """Item-wise: a numpy function on numpy chunks, a torch function on tensors."""
    return np.sin(v) * 2 if isinstance(v, np.ndarray) else torch.sin(v) * 2


def flatten(v):
    return v.reshape(v.shape[0], math.prod(v.shape[1:]))


def item_sum(v):
    return flatten(v).sum(1)


FUNCS = [pytest.param(f, id=f.__name__) for f in (sin2, flatten, item_sum)]

IMAGES, VECTORS = (ra.RaggedImageBatch, (2, 5, 5)), (ra.RaggedArray, (4,))
MODULES = {  # kind -> ((class, item_shape), module factory)
    "conv": (IMAGES, lambda: nn.Conv2d(2, 3, 3)),
    "conv-flatten": (IMAGES, lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten())),
    "linear": (VECTORS, lambda: nn.Linear(4, 3)),
    "linear-score": (VECTORS, lambda: nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))),
}


def module_case(kind, place, lengths=LENGTHS, dtype="float32"):
    """A seeded module of ``kind`` on the place's device, the oracle list and the input."""
    layout, make = MODULES[kind]
    torch.manual_seed(0)
    module = make().to(dtype=torch_dtype(dtype), device=place[1])
    segments, x = oracle_and_x(place, dtype, layout, lengths)
    return module, segments, x


def oracle_map(fn, segments, place, item_shape, dtype="float32"):
    """``fn`` on each segment separately, as host arrays, and the item shape of its output."""
    empty = fn(on(np.zeros((0, *item_shape), dtype=dtype), place))
    return [host(fn(on(seg, place))) for seg in segments], tuple(empty.shape[1:])


def assert_mapped(y, x, oracle, *, rtol=1e-6, atol=1e-6):
    """``y`` has ``x``'s offsets, the class its item dims call for and the oracle's segments."""
    expected, item_shape = oracle
    np.testing.assert_array_equal(y.host_offsets, x.host_offsets)
    np.testing.assert_array_equal(host(y.offsets), x.host_offsets)
    if isinstance(y.values, torch.Tensor):
        assert y.offsets.device == y.values.device
    else:
        assert isinstance(y.offsets, np.ndarray)
    assert y.item_shape == item_shape
    assert type(y) is (ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray)
    assert len(y) == len(expected)
    for i, want in enumerate(expected):
        got = host(y[i])
        assert got.shape == want.shape, (i, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


class Recorder:
    """Wraps ``fn`` and keeps a host copy of every chunk it is called on."""

    def __init__(self, fn):
        self.fn = fn
        self.chunks = []

    def __call__(self, v):
        self.chunks.append(host(v).copy())
        return self.fn(v)

    @property
    def sizes(self):
        return [len(c) for c in self.chunks]


def assert_covers_in_order(rec, values, *, probed=False):
    """The chunks, end to end, are the values: every item once, in order.

    ``probed``: the calls of a first ``map`` of ``rec``, whose probe call on the first
    ``PROBE_ITEMS`` items is dropped (see ``after_probe``).
    """
    chunks = after_probe(rec, len(values)) if probed else rec.chunks
    np.testing.assert_array_equal(np.concatenate(chunks, axis=0), host(values))


def after_probe(rec, num_items):
    """The calls of a first ``map`` after its probe, which sees the first ``PROBE_ITEMS``
    items: its output is dropped, even when they are the whole batch, and the plan's calls
    start from the first item (so the first call splits the batch as every later one does)."""
    assert len(rec.chunks[0]) == min(num_items, mapping.PROBE_ITEMS)
    return rec.chunks[1:]


def count_calls(module):
    """A list that gets the batch size of every call of ``module``."""
    sizes = []
    module.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    return sizes


def even_chunks(n, size):
    """An explicit chunk size: chunks of exactly ``size`` items, the last one smaller."""
    return [min(size, n - a) for a in range(0, n, size)] or [0]


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Auto mode keeps the largest tensor of a call within 1 KiB: many small chunks."""
    set_budgets(monkeypatch, call=1024, chunk=1024, grad=1024)


# -------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", [*LAYOUTS, pytest.param((ra.RaggedArray, (2, 3, 3)), id="3d")])
@pytest.mark.parametrize("fn", FUNCS)
def test_functions_match_the_oracle(place, lengths, layout, fn):
    segments, x = oracle_and_x(place, "float32", layout, lengths)
    y = x.map(fn)
    assert y.backend == x.backend
    assert_mapped(y, x, oracle_map(fn, segments, place, layout[1]))
    if isinstance(y.values, torch.Tensor):
        assert y.values.device == x.values.device


@pytest.mark.parametrize("place", CPU_PLACES)
@pytest.mark.parametrize("lengths", [*LENGTH_CASES, pytest.param([20, 0, 13], id="past-the-probe")])
@pytest.mark.parametrize("bound", [0.0, math.inf], ids=["arithmetic-bound", "memory-bound"])
def test_both_sides_of_the_arithmetic_bound_match_the_oracle(monkeypatch, place, lengths, bound):
    # Tiny budgets split every batch past the probe; the bound picks the chunks' budget: the
    # one-call budget (3 items) from the bound on, else the chunk budget (1 item). These are
    # the CPU's budgets: on a GPU the batch is one call unless it would not fit in memory.
    item_bytes = 2 * 3 * 4  # (2, 3) float32
    set_budgets(monkeypatch, call=3 * item_bytes, chunk=item_bytes, grad=item_bytes, bound=bound)
    segments, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2, 3)), lengths)
    rec = Recorder(sin2)
    with torch.no_grad():  # under autograd the grad budget applies whatever the bound
        y = x.map(rec)
    assert_mapped(y, x, oracle_map(sin2, segments, place, (2, 3)))
    assert_covers_in_order(rec, x.values, probed=True)
    calls = [len(c) for c in after_probe(rec, x.num_items)]
    # (a batch no larger than the probe runs as its plan says, too: as the next one will)
    assert calls == (equal_chunks(x.num_items, 3 if bound == 0.0 else 1) or [0])


@pytest.mark.parametrize(
    ("item_shape", "fn", "cls"),
    [
        ((2, 3), lambda v: v[:, None], ra.RaggedImageBatch),
        ((2, 3, 3), flatten, ra.RaggedArray),
        ((2, 3, 3), item_sum, ra.RaggedArray),
        ((4,), lambda v: v.reshape(v.shape[0], 1, 2, 2), ra.RaggedImageBatch),
    ],
)
def test_result_class_follows_the_output_dims(item_shape, fn, cls):
    for input_cls in {
        ra.RaggedArray,
        ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray,
    }:
        segments, x = oracle_and_x(("torch", "cpu"), "float32", (input_cls, item_shape))
        y = x.map(fn, chunk_size=4)
        assert type(y) is cls
        assert_mapped(y, x, oracle_map(fn, segments, ("torch", "cpu"), item_shape))


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_modules_match_the_oracle(place, lengths, kind, chunk_size):
    module, segments, x = module_case(kind, place, lengths)
    y = x.map(module, chunk_size=chunk_size)
    assert y.backend == "torch"  # numpy values reach a module as tensors
    assert y.values.device.type == place[1]
    tplace = ("torch", place[1])
    with torch.no_grad():
        oracle = oracle_map(module, segments, tplace, x.item_shape)
    assert_mapped(y, x, oracle, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- chunking


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, np.int64(4), "N", "N+5"])
def test_explicit_chunk_sizes(place, lengths, chunk_size):
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (2,)), lengths)
    n = x.num_items
    size = {"N": max(n, 1), "N+5": n + 5}.get(chunk_size, chunk_size)
    rec = Recorder(sin2)
    y = x.map(rec, chunk_size=size)
    assert rec.sizes == even_chunks(n, int(size))
    assert_covers_in_order(rec, x.values)
    assert_mapped(y, x, oracle_map(sin2, segments, place, (2,), "float64"), rtol=0, atol=0)


@pytest.mark.parametrize("place", CPU_PLACES)
def test_auto_chunks_keep_the_largest_tensor_within_the_budget(tiny_chunks, place):
    lengths = [40, 0, 25, 35]
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (4,)), lengths)
    rec = Recorder(sin2)
    y = x.map(rec)
    assert_mapped(y, x, oracle_map(sin2, segments, place, (4,), "float64"), rtol=0, atol=0)
    assert_covers_in_order(rec, x.values, probed=True)
    item_bytes = 4 * 8  # input, sin and output are all (4,) float64 per item
    size = 1024 // item_bytes
    assert rec.sizes[0] == mapping.PROBE_ITEMS
    assert rec.sizes[1:] == equal_chunks(100, size)
    assert max(rec.sizes) * item_bytes <= 1024


def test_one_call_up_to_the_call_budget_then_equal_chunks_within_the_chunk_budget(monkeypatch):
    # Splitting costs a copy of the output: a batch is one call while its largest tensor fits
    # CPU_CALL_BYTES, and past that, chunks within the smaller CPU_CHUNK_BYTES.
    item_bytes = 4 * 8  # (4,) float64 per item
    set_budgets(monkeypatch, call=100 * item_bytes, chunk=30 * item_bytes, grad=1024)
    rec = Recorder(sin2)
    x = ra.RaggedArray.from_lengths(torch.randn(40, 4, dtype=torch.float64), [25, 15])
    with torch.no_grad():
        x.map(rec)  # probes, remembers
        plan = next(iter(mapping._chosen[rec].values()))
        assert (plan.whole, plan.chunk) == (100, 30)
        for n, sizes in [(1, [1]), (100, [100]), (101, [26, 25, 25, 25]), (240, [30] * 8)]:
            rec.chunks.clear()
            x = ra.RaggedArray.from_lengths(torch.randn(n, 4, dtype=torch.float64), [n])
            y = x.map(rec)
            assert rec.sizes == sizes, n
            assert_covers_in_order(rec, x.values)
            torch.testing.assert_close(y.values, sin2(x.values), rtol=0, atol=0)


def test_a_batch_that_fits_one_call_returns_fns_output_itself():
    outputs = []
    conv = nn.Conv2d(1, 2, 3)
    x = ra.RaggedImageBatch.from_lengths(torch.randn(20, 1, 8, 8), [5, 0, 15])
    with torch.no_grad():
        x.map(conv)  # the first call probes and remembers the plan
        conv.register_forward_hook(lambda _, args, out: outputs.append(out))
        y = x.map(conv)
    assert len(outputs) == 1 and y.values is outputs[0]  # no copy into another buffer
    torch.testing.assert_close(y.values, conv(x.values))


def test_autograd_has_its_own_chunk_budget(monkeypatch):
    # Under autograd every chunk's activations stay alive until backward, and the outputs are
    # joined anyway: calls within CPU_CHUNK_BYTES_GRAD, with no larger single call.
    set_budgets(monkeypatch, call=4096, chunk=2048, grad=1024)
    x = ra.RaggedArray.from_lengths(torch.randn(200, 4, dtype=torch.float64), [120, 80])
    calls = {}
    for grad in (False, True):
        sizes = []
        with torch.set_grad_enabled(grad):
            x.map(lambda v, sizes=sizes: sizes.append(len(v)) or torch.sin(v))
        calls[grad] = sizes[1:]  # the calls after the probe
    item_bytes = 4 * 8  # (4,) float64 per item
    # 200 items: more than 4096 // item_bytes, so split
    assert calls == {
        False: equal_chunks(200, 2048 // item_bytes),
        True: equal_chunks(200, 1024 // item_bytes),
    }


def test_numpy_functions_get_the_plan_without_autograd(monkeypatch):
    set_budgets(monkeypatch, call=4096, chunk=2048, grad=1024)
    x = ra.RaggedArray.from_lengths(np.random.default_rng(0).standard_normal((200, 4)), [200])
    rec = Recorder(sin2)
    with torch.enable_grad():
        y = x.map(rec)  # numpy chunks: autograd records nothing
    assert rec.sizes[1:] == equal_chunks(200, 2048 // 32)
    np.testing.assert_array_equal(y.values, sin2(x.values))


def test_auto_chunks_count_a_convolutions_unfolded_input(monkeypatch):
    unfolded = 1 * 5 * 5 * 12 * 12 * 4  # C_in * kernel * output positions, float32
    budget = 3 * unfolded + 100
    set_budgets(monkeypatch, call=budget, chunk=budget, grad=budget)
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 5)
    x = ra.RaggedImageBatch.from_lengths(torch.randn(40, 1, 16, 16), [30, 10])
    sizes = count_calls(conv)
    y = x.map(conv)
    assert sizes == [mapping.PROBE_ITEMS, *equal_chunks(40, 3)]
    torch.testing.assert_close(y.values, conv(x.values), rtol=1e-5, atol=1e-5)


def test_auto_choice_is_cached_per_function_and_item_kind(tiny_chunks):
    x = ra.RaggedArray.from_lengths(torch.randn(100, 4, dtype=torch.float64), [60, 40])
    rec = Recorder(sin2)
    x.map(rec)
    size = 1024 // 32  # (4,) float64 per item
    assert rec.sizes == [mapping.PROBE_ITEMS, *equal_chunks(100, size)]
    assert {plan.chunk for plan in mapping._chosen[rec].values()} == {size}
    rec.chunks.clear()
    y = x.map(rec)  # no probe this time: the same chunks
    assert rec.sizes == equal_chunks(100, size)
    torch.testing.assert_close(y.values, sin2(x.values), rtol=0, atol=0)
    rec.chunks.clear()
    x.to(dtype=torch.float32).map(rec)  # another dtype is another key: probed again
    assert rec.sizes[0] == mapping.PROBE_ITEMS
    assert len(mapping._chosen[rec]) == 2


def test_cached_choice_is_not_capped_by_a_small_first_batch(tiny_chunks):
    small = ra.RaggedArray.from_lengths(torch.randn(4, 4, dtype=torch.float64), [4])
    big = ra.RaggedArray.from_lengths(torch.randn(300, 4, dtype=torch.float64), [300])
    fresh = Recorder(sin2)
    big.map(fresh)
    rec = Recorder(sin2)
    small.map(rec)
    rec.chunks.clear()
    y = big.map(rec)
    torch.testing.assert_close(y.values, sin2(big.values), rtol=0, atol=0)
    # The choice is per function, item shape, dtype and device, not per batch size: a
    # 4-item first batch must not make every later call use 4-item chunks. (Measured on
    # fewer than PROBE_ITEMS items, it is measured again on the larger batch.)
    assert list(mapping._chosen[rec].values()) == list(mapping._chosen[fresh].values())
    assert [len(c) for c in after_probe(rec, 300)] == equal_chunks(300, max(fresh.sizes[1:]))


# ---------------------------------------------------------------------- autograd


def weighted_loss(values):
    weights = torch.linspace(-1, 1, values.numel(), dtype=values.dtype).reshape(values.shape)
    return (values * weights.to(values.device)).sum()


def gradients(module, x, chunk_size):
    """Gradients of a fixed loss w.r.t. the values and the parameters, and the call sizes."""
    module.zero_grad()
    values = x.values.detach().clone().requires_grad_(True)
    sizes = []
    hook = module.register_forward_pre_hook(lambda _, args: sizes.append(len(args[0])))
    y = type(x).from_lengths(values, x.host_lengths).map(module, chunk_size=chunk_size)
    weighted_loss(y.values).backward()
    hook.remove()
    return values.grad, [p.grad.clone() for p in module.parameters()], sizes


@pytest.mark.parametrize("kind", ["conv", "linear-score"])
@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_gradients_do_not_depend_on_chunking(tiny_chunks, kind, chunk_size):
    module, _, x = module_case(kind, ("torch", "cpu"), LONG, dtype="float64")
    want_values, want_params, sizes = gradients(module, x, x.num_items)
    assert sizes == [x.num_items]
    got_values, got_params, sizes = gradients(module, x, chunk_size)
    assert len(sizes) > 1
    torch.testing.assert_close(got_values, want_values, rtol=1e-12, atol=1e-12)
    for got, want in zip(got_params, want_params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gradcheck_through_chunks():
    torch.manual_seed(0)
    values = torch.randn(N, 3, dtype=torch.float64, requires_grad=True)

    def fn(v):
        return torch.tanh(v) * v.pow(2).sum(1, keepdim=True)

    def mapped(v):
        return ra.RaggedArray.from_lengths(v, LENGTHS).map(fn, chunk_size=3).values

    assert torch.autograd.gradcheck(mapped, (values,))


@pytest.mark.parametrize("chunk_size", [3, None])
def test_works_under_no_grad(chunk_size):
    module, _, x = module_case("linear", ("torch", "cpu"))
    x = ra.RaggedArray.from_lengths(x.values.requires_grad_(True), LENGTHS)
    want = x.map(module, chunk_size=chunk_size)
    assert want.values.requires_grad
    with torch.no_grad():
        got = x.map(module, chunk_size=chunk_size)
    assert not got.values.requires_grad
    torch.testing.assert_close(got.values, want.values.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("chunk_size", [3, None])
@pytest.mark.parametrize("grad", [True, False])
def test_works_under_autocast(chunk_size, grad):
    module, _, x = module_case("linear", ("torch", "cpu"))
    want = x.map(module, chunk_size=chunk_size).values.detach()
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
        got = x.map(module, chunk_size=chunk_size)
    assert got.dtype == torch.bfloat16
    assert got.values.requires_grad == grad
    np.testing.assert_array_equal(got.host_offsets, x.host_offsets)
    torch.testing.assert_close(got.values.float(), want, rtol=2e-2, atol=2e-2)


# -------------------------------------------------------------------- batch norm


def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())


def bn_case(lengths=LENGTHS):
    _, x = oracle_and_x(("torch", "cpu"), "float32", (ra.RaggedImageBatch, (2, 5, 5)), lengths)
    net = bn_net()
    return net, copy.deepcopy(net), x


def assert_same_bn_state(net, ref):
    for key, want in ref[1].state_dict().items():
        torch.testing.assert_close(net[1].state_dict()[key], want, rtol=1e-6, atol=1e-6)


def test_batchnorm_in_training_sees_the_whole_batch(tiny_chunks):
    net, ref, x = bn_case(LONG)
    sizes = count_calls(net)
    y = x.map(net)  # the tiny budget would otherwise make one-image chunks
    assert sizes == [x.num_items]
    torch.testing.assert_close(y.values, ref(x.values), rtol=1e-5, atol=1e-5)
    assert_same_bn_state(net, ref)
    assert int(net[1].num_batches_tracked) == 1


def test_batchnorm_with_explicit_chunk_size_normalises_each_chunk(tiny_chunks):
    net, ref, x = bn_case()
    sizes = count_calls(net)
    y = x.map(net, chunk_size=4)
    assert sizes == even_chunks(N, 4)
    want = torch.cat([ref(x.values[a : a + 4]) for a in range(0, N, 4)])
    torch.testing.assert_close(y.values, want, rtol=1e-5, atol=1e-5)
    assert_same_bn_state(net, ref)
    # The trade-off: per-chunk statistics are not the whole batch's.
    assert not torch.allclose(y.values, bn_net()(x.values), atol=1e-3)


def test_batchnorm_in_eval_mode_is_chunked_again(tiny_chunks):
    net, ref, x = bn_case(LONG)
    net.eval()
    ref.eval()
    sizes = count_calls(net)
    y = x.map(net)
    assert sizes[0] == mapping.PROBE_ITEMS  # the probe (its output dropped), then the chunks
    assert len(sizes) > 2 and sum(sizes[1:]) == x.num_items
    torch.testing.assert_close(y.values, ref(x.values), rtol=1e-5, atol=1e-5)
    assert_same_bn_state(net, ref)


def test_batchnorm_back_in_training_sees_the_whole_batch_again(tiny_chunks):
    # A plan remembered in eval mode must not chunk the module once it trains again.
    net, ref, x = bn_case(LONG)
    net.eval()
    x.map(net)
    net.train()
    sizes = count_calls(net)
    y = x.map(net)
    assert sizes == [x.num_items]
    torch.testing.assert_close(y.values, ref(x.values), rtol=1e-5, atol=1e-5)
    assert_same_bn_state(net, ref)


def test_a_bound_forward_or_an_eval_norm_without_running_stats_sees_the_whole_batch(tiny_chunks):
    """Batch norm behind a bound method, or in eval mode with track_running_stats=False (it
    normalises with the batch's statistics there too): one call, not chunks."""
    net, ref, x = bn_case(LONG)
    sizes = count_calls(net[1])  # (a bound forward skips the module's own hooks)
    y = x.map(net.forward)
    assert sizes == [x.num_items] and int(net[1].num_batches_tracked) == 1
    torch.testing.assert_close(y.values, ref(x.values), rtol=1e-5, atol=1e-5)
    assert_same_bn_state(net, ref)
    torch.manual_seed(0)
    eval_net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, track_running_stats=False))
    eval_net.eval()
    sizes = count_calls(eval_net)
    with torch.no_grad():
        y = x.map(eval_net)
        assert sizes == [x.num_items]
        torch.testing.assert_close(y.values, eval_net(x.values), rtol=0, atol=0)


def test_a_bad_output_of_the_probe_fails_before_the_batch_runs():
    calls = []
    x = ra.RaggedArray.from_lengths(torch.zeros(50, 2), [20, 30])
    with pytest.raises(ValueError, match=r"map: fn must keep dim 0 .* a chunk of 16 items"):
        x.map(lambda v: calls.append(len(v)) or v.sum(0))
    assert calls == [mapping.PROBE_ITEMS]


@pytest.mark.parametrize("chunks", ["one call", "split"])
def test_the_first_call_splits_the_batch_as_every_later_one(monkeypatch, chunks):
    """A function that looks across items (centring by the batch's mean) gives on its first
    call, which probes, what it gives on every later call: the probe's output is not kept."""
    if chunks == "split":
        set_budgets(monkeypatch, call=1024, chunk=1024, grad=1024)
    x = ra.RaggedArray.from_lengths(torch.arange(100.0).reshape(50, 2), [5, 0, 45])
    centre = lambda v: v - v.mean(0)  # noqa: E731  (a new function: no plan yet)
    first, second = x.map(centre).values, x.map(centre).values
    assert torch.equal(first, second)
    if chunks == "one call":
        torch.testing.assert_close(first, centre(x.values), rtol=0, atol=0)


def in_place_add_one(v):
    """A function that writes into its input, as ``nn.ReLU(inplace=True)`` does."""
    v += 1
    return v


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", [[40, 0, 30], [3, 5]], ids=["past-the-probe", "the-probe"])
@pytest.mark.parametrize("chunks", ["one call", "split"])
def test_the_probe_does_not_apply_fn_twice(monkeypatch, place, lengths, chunks):
    """A function that writes into its input changes every item once on a first call too:
    the probe works on a copy of the first items, not on the buffer."""
    if chunks == "split":
        set_budgets(monkeypatch, call=256, chunk=256, grad=256)
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (2,)), lengths)
    fn = functools.partial(in_place_add_one)  # a new function: no plan yet
    y = x.map(fn)
    want = [seg + 1 for seg in segments]
    assert_mapped(y, x, (want, (2,)), rtol=0, atol=0)
    assert_same_segments(x, want)  # map hands fn views: x was written through, once


@pytest.mark.parametrize("place", TORCH_PLACES)
@pytest.mark.parametrize("chunks", ["one call", "split"])
def test_the_probe_leaves_torchs_random_state_as_it_was(monkeypatch, place, chunks):
    """Dropout draws the same masks on a first call, which probes, as on every later call."""
    if chunks == "split":
        set_budgets(monkeypatch, call=512, chunk=512, grad=512)
    _, x = oracle_and_x(place, "float32", (ra.RaggedArray, (4,)), [60, 0, 40])
    drop = nn.Dropout(0.5)
    draws = []
    for _ in range(3):  # the first call probes, the others reuse its plan
        torch.manual_seed(1)
        draws.append(x.map(drop).values)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[1], draws[2])
    assert (draws[0] == 0).any() and (draws[0] != 0).any()  # it did draw


def test_the_probe_leaves_numpys_global_random_state_as_it_was():
    x = ra.RaggedArray.from_lengths(np.zeros((50, 3)), [20, 30])
    noise = lambda v: v + np.random.random(v.shape)  # noqa: E731  (a new function: no plan yet)
    draws = []
    for _ in range(2):
        np.random.seed(3)
        draws.append(x.map(noise).values)
    np.testing.assert_array_equal(draws[0], draws[1])


@pytest.mark.parametrize("wrap", ["module", "partial"])
def test_the_probe_leaves_a_modules_buffers_as_they_were(wrap):
    """Spectral norm's power iteration and a batch norm's counters ran once more in the probe."""
    torch.manual_seed(0)
    net = nn.utils.spectral_norm(nn.Linear(3, 3))
    twin = copy.deepcopy(net)
    fn = net if wrap == "module" else functools.partial(net)
    x = ra.RaggedArray.from_lengths(torch.randn(40, 3), [25, 15])
    with torch.no_grad():
        y = x.map(fn)
        want = twin(x.values)  # the same one call, without a probe before it
    torch.testing.assert_close(y.values, want)
    for (name, a), (_, b) in zip(net.named_buffers(), twin.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


class _Counter(nn.Module):
    """Counts its calls in a buffer it assigns anew, as ``self.n = self.n + 1``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("n", torch.tensor(0))

    def forward(self, v):
        self.n = self.n + 1
        return v * 2


@pytest.mark.parametrize("items", [10, 100])
def test_the_probe_puts_back_reassigned_buffers_and_skips_lazy_ones(items):
    """A buffer assigned anew was left with the probe's call counted; a lazy module's
    uninitialised buffers failed the probe (it copied them, and measured their sizes)."""
    values = torch.randn(items, 3)
    x = ra.RaggedArray.from_lengths(values, [items])
    counter = _Counter()
    x.map(counter)
    assert counter.n.item() == 1  # as after one call
    torch.manual_seed(0)
    lazy, twin = nn.LazyBatchNorm1d().eval(), nn.LazyBatchNorm1d().eval()
    torch.testing.assert_close(x.map(lazy).values, twin(values))
    torch.testing.assert_close(lazy.running_var, twin.running_var)


def test_a_partial_of_a_training_batch_norm_sees_the_whole_batch(tiny_chunks):
    norm = nn.BatchNorm1d(3)
    sizes = count_calls(norm)
    x = ra.RaggedArray.from_lengths(torch.randn(40, 3), [25, 15])
    x.map(functools.partial(norm))
    assert sizes == [40] and norm.num_batches_tracked.item() == 1


def test_a_plan_measured_on_a_few_items_is_measured_again_on_more():
    """A first batch of one item counted a per-call temporary (a weight built each call) as
    that item's cost: a later batch of 8 192 items ran in chunks of 2 (2.6 s, not 0.3 s)."""
    torch.manual_seed(0)
    weight, low = torch.randn(64, 64), torch.randn(64, 64)
    calls = []

    def adapted(v):
        calls.append(v.shape[0])
        return v @ (weight + low @ low)  # a (64, 64) temporary per call, whatever the batch

    with torch.no_grad():
        ra.RaggedArray.from_lengths(torch.randn(1, 64), [1]).map(adapted)
        (first,) = mapping._chosen[adapted].values()
        assert first.measured == 1
        calls.clear()
        x = ra.RaggedArray.from_lengths(torch.randn(4096, 64), [4096])
        y = x.map(adapted)
        (plan,) = mapping._chosen[adapted].values()
    assert plan.measured == mapping.PROBE_ITEMS and plan.chunk > first.chunk
    assert calls[0] == mapping.PROBE_ITEMS and min(calls[1:]) > first.chunk
    torch.testing.assert_close(y.values, x.values @ (weight + low @ low))


def test_an_empty_first_batch_leaves_no_plan():
    """A probe of no items measures nothing: its plan made every later batch one call."""
    conv = nn.Conv2d(1, 4, 3)
    with torch.no_grad():
        y = ra.RaggedImageBatch.from_lengths(torch.zeros(0, 1, 8, 8), [0, 0]).map(conv)
        assert y.item_shape == (4, 6, 6) and y.lengths.tolist() == [0, 0]
        assert conv not in mapping._chosen
        ra.RaggedImageBatch.from_lengths(torch.zeros(20, 1, 8, 8), [20]).map(conv)
    plan = next(iter(mapping._chosen[conv].values()))
    assert plan.whole < 10**6  # measured on real items


def test_a_buffer_fn_reuses_under_autograd_is_refused():
    """Kept until the end under autograd, every chunk came back as the last one."""
    values = torch.arange(12.0).reshape(6, 2).requires_grad_()
    buffer = torch.zeros(2, 2)

    def into_the_buffer(chunk):
        out = buffer[: chunk.shape[0]]
        out.copy_(chunk * 2)
        return out

    x = ra.RaggedArray.from_lengths(values, [2, 4])
    with pytest.raises(ValueError, match=r"map: fn must return a new array for each chunk"):
        x.map(into_the_buffer, chunk_size=2)
    with torch.no_grad():  # each chunk is copied out as it comes: right
        torch.testing.assert_close(x.map(into_the_buffer, chunk_size=2).values, values * 2)
    views = x.map(lambda c: c[:, :1], chunk_size=4)  # views of the input: distinct, kept
    torch.testing.assert_close(views.values, values[:, :1])


@pytest.mark.parametrize(
    "fn",
    [torch.nn.ReLU(inplace=True), torch.relu_, lambda v: v.mul_(2)],
    ids=["ReLU-inplace", "relu_", "mul_"],
)
def test_a_fn_writing_into_its_chunks_under_autograd_is_refused_clearly(fn):
    """The chunks share the buffer's version counter: each write invalidates what autograd
    saved for the others. The refusal said a buffer was reused; one call and no-grad work."""
    leaf = torch.randn(40, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"map: fn must not write into its input when autograd"):
        ra.RaggedArray.from_lengths(leaf * 1, [10, 30]).map(fn, chunk_size=7)
    dense = fn(leaf * 1)
    whole = ra.RaggedArray.from_lengths(leaf * 1, [10, 30]).map(fn, chunk_size=40)
    torch.testing.assert_close(whole.values, dense)
    (got,) = torch.autograd.grad(whole.values.sum(), leaf)
    (want,) = torch.autograd.grad(dense.sum(), leaf)
    torch.testing.assert_close(got, want)
    with torch.no_grad():  # each item written once, as by one call
        values = leaf.detach().clone()
        ra.RaggedArray.from_lengths(values, [10, 30]).map(fn, chunk_size=7)
        torch.testing.assert_close(values, fn(leaf.detach().clone()))


@pytest.mark.parametrize("chunk_size", [7, 1000, None])
def test_chunked_gradients_under_autocast_add_in_float32(chunk_size):
    """Autocast casts a weight once and keeps the copy: every chunk's gradient added into
    it in bfloat16 (683 % off over chunks of 7 rows). Each chunk now casts afresh."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    values = torch.randn(20_000, 16)
    x = ra.RaggedArray.from_lengths(values, [8_000, 0, 12_000])
    truth = values.double().sum(0)  # each row of the weight's gradient
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = x.map(linear, chunk_size=chunk_size).values
        (got,) = torch.autograd.grad(out.float().sum(), linear.weight)
        (dense,) = torch.autograd.grad(linear(values).float().sum(), linear.weight)
    error = ((got.double() - truth).abs().max() / truth.abs().max()).item()
    dense_error = ((dense.double() - truth).abs().max() / truth.abs().max()).item()
    assert error <= 3 * dense_error + 1e-3, (error, dense_error)


# ----------------------------------------------------------------------- devices


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_numpy_values_reach_a_module_as_cpu_tensors(chunk_size):
    module, segments, x = module_case("conv", ("numpy", "cpu"))
    seen = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    y = x.map(module, chunk_size=chunk_size)
    assert seen and all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in seen)
    first = seen[1 if chunk_size is None else 0]  # (the batch's first call, after a probe)
    assert first.data_ptr() == x.values.ctypes.data  # zero-copy
    assert y.backend == "torch" and y.values.device.type == "cpu"
    np.testing.assert_array_equal(host(y.lengths), x.host_lengths)
    with torch.no_grad():
        oracle = oracle_map(module, segments, ("torch", "cpu"), x.item_shape)
    assert_mapped(y, x, oracle, rtol=1e-5, atol=1e-5)


def test_device_cpu_turns_numpy_values_into_tensors():
    segments, x = oracle_and_x(("numpy", "cpu"), "float32", (ra.RaggedArray, (2,)))
    kinds = []

    def fn(v):
        kinds.append(type(v))
        return torch.sin(v) * 2

    y = x.map(fn, device="cpu", chunk_size=4)
    assert kinds == [torch.Tensor] * 4
    assert y.backend == "torch" and isinstance(y.offsets, torch.Tensor)
    assert_mapped(y, x, oracle_map(sin2, segments, ("torch", "cpu"), (2,)))


@requires_cuda
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_device_cuda_runs_there(backend, chunk_size):
    module, _, x = module_case("conv", (backend, "cpu"))
    want = x.map(module).values.detach()
    y = x.map(module.cuda(), device="cuda", chunk_size=chunk_size)
    assert y.values.device.type == "cuda" and y.offsets.device.type == "cuda"
    np.testing.assert_array_equal(y.host_offsets, x.host_offsets)
    torch.testing.assert_close(y.values.detach().cpu(), want, rtol=1e-4, atol=1e-4)
    back = ra.RaggedImageBatch(y.values.detach(), y.offsets).map(sin2, device="cpu")
    assert back.values.device.type == "cpu" and back.offsets.device.type == "cpu"
    torch.testing.assert_close(back.values, sin2(want), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- progress


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_progress_bar_counts_every_item(capsys, chunk_size):
    pytest.importorskip("tqdm")
    segments, x = oracle_and_x(("torch", "cpu"), "float32", (ra.RaggedArray, (2,)))
    y = x.map(sin2, chunk_size=chunk_size, progress=True)
    assert_mapped(y, x, oracle_map(sin2, segments, ("torch", "cpu"), (2,)))
    err = capsys.readouterr().err
    assert "RaggedArray.map" in err
    assert f"{N}/{N}" in err


def test_progress_without_tqdm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    _, x = oracle_and_x(("torch", "cpu"))
    with pytest.raises(ImportError, match=r"tqdm.*pip install"):
        x.map(sin2, progress=True)


# ------------------------------------------------------------------------ errors


def numpy_or_torch(v, np_fn, torch_fn):
    return np_fn(v) if isinstance(v, np.ndarray) else torch_fn(v)


def dtype_by_chunk(v):
    """float64 rows for a 4-item chunk, float32 rows otherwise."""
    if len(v) == 4:
        return numpy_or_torch(v, lambda a: a.astype(np.float64), lambda t: t.double())
    return v * 1


ERRORS = [
    pytest.param(3, TypeError, "fn must be callable", id="not-callable"),
    pytest.param(lambda v: v.tolist(), TypeError, "numpy array or a torch tensor.*list", id="list"),
    pytest.param(lambda v: (v, v), TypeError, "numpy array or a torch tensor.*tuple", id="tuple"),
    pytest.param(lambda v: v[:1], ValueError, "keep dim 0", id="first-row"),
    pytest.param(
        lambda v: numpy_or_torch(v, lambda a: a.sum(0, keepdims=True), lambda t: t.sum(0, True)),
        ValueError,
        "keep dim 0",
        id="sum-keepdim",
    ),
    pytest.param(
        lambda v: numpy_or_torch(v, lambda a: np.asarray(a.sum()), torch.sum),
        ValueError,
        "keep dim 0",
        id="scalar",
    ),
    pytest.param(lambda v: v[:, : len(v) % 2 + 1], ValueError, "same kind of rows", id="shapes"),
    pytest.param(dtype_by_chunk, ValueError, "same kind of rows", id="dtypes"),
]


@pytest.mark.parametrize("place", CPU_PLACES)
@pytest.mark.parametrize(("fn", "error", "match"), ERRORS)
def test_bad_functions_are_refused(place, fn, error, match):
    _, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)))
    with pytest.raises(error, match=match):
        x.map(fn, chunk_size=4)


class TurnsBad:
    """Good rows on the first call (which probes and remembers a plan), ``bad(v)`` after."""

    def __init__(self, bad, *, good_calls=1):
        self.bad, self.calls, self.good_calls = bad, 0, good_calls

    def __call__(self, v):
        self.calls += 1
        return v * 2 if self.calls <= self.good_calls else self.bad(v)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (lambda v: v.tolist(), TypeError, "numpy array or a torch tensor.*list"),
        (lambda v: v[:1], ValueError, "keep dim 0"),
        (torch.sum, ValueError, "keep dim 0"),
        (lambda v: v.to(torch.complex64), TypeError, "real numbers"),
        (lambda v: v.to_sparse(), TypeError, "dense"),
        (lambda v: torch.empty(v.shape, device="meta"), ValueError, "meta"),
    ],
)
@pytest.mark.parametrize("good_calls", [1, 2])
def test_bad_outputs_are_refused_when_the_batch_fits_one_call(bad, error, match, good_calls):
    # The lean path for a batch within the remembered plan checks the output all the same,
    # whether the plan comes from the dictionaries (second call) or the last-call memo (third).
    x = ra.RaggedArray.from_lengths(torch.randn(10, 3), [4, 6])
    fn = TurnsBad(bad, good_calls=good_calls + 1)  # (a first map calls fn twice: its probe)
    for _ in range(good_calls):
        x.map(fn)
    assert len(mapping._chosen[fn]) == 1  # the plan is remembered: the next call is lean
    with pytest.raises(error, match=f"RaggedArray.map: .*{match}"):
        x.map(fn)


def test_the_last_call_memo_keeps_neither_values_nor_fn_alive():
    # The memo holds weak references: a batch mapped twice is freed once the user drops it.
    x = ra.RaggedArray.from_lengths(torch.randn(12, 3), [5, 7])
    fn = Recorder(sin2)
    x.map(fn)
    x.map(fn)  # the second call leaves its values and fn in the memo
    values, calls = weakref.ref(x.values), weakref.ref(fn)
    del x, fn
    gc.collect()
    assert values() is None and calls() is None


def test_the_last_call_memo_follows_fn_values_and_grad_mode(monkeypatch):
    # The lean path remembers its last plan by fn, values tensor and grad mode: a call that
    # differs in any of them must get its own plan, not the memo's.
    item_bytes = 4 * 8  # (4,) float64 per item
    set_budgets(monkeypatch, call=100 * item_bytes, chunk=50 * item_bytes, grad=20 * item_bytes)
    x = ra.RaggedArray.from_lengths(torch.randn(60, 4, dtype=torch.float64), [60])
    y = ra.RaggedArray.from_lengths(torch.randn(90, 4, dtype=torch.float64), [90])
    first, second = Recorder(sin2), Recorder(torch.cos)
    with torch.no_grad():
        x.map(first)  # probes: one call up to 100 items
    x.map(first)  # probes again under autograd: chunks of 20
    for fn, batch, grad, sizes in [
        (first, x, False, [60]),
        (first, x, False, [60]),  # the memo
        (first, x, True, [20, 20, 20]),  # same fn and values, grad mode differs
        (first, x, False, [60]),
        (first, y, False, [90]),  # another tensor with an equal key
        (second, y, False, [16, 90]),  # another fn: no plan yet, it probes (then one call)
        (first, y, False, [90]),
    ]:
        fn.chunks.clear()
        with torch.set_grad_enabled(grad):
            out = batch.map(fn)
        assert fn.sizes == sizes
        torch.testing.assert_close(out.values, fn.fn(batch.values), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("chunk_size", "error"),
    [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError)],
)
def test_bad_chunk_sizes_are_refused(chunk_size, error):
    _, x = oracle_and_x(("torch", "cpu"))
    rec = Recorder(sin2)
    with pytest.raises(error, match="chunk_size"):
        x.map(rec, chunk_size=chunk_size)
    assert rec.chunks == []


@pytest.mark.parametrize(
    ("device", "error"),
    [("nonsense", ValueError), ("cpu:x", ValueError), ("", ValueError), (object(), TypeError)],
)
def test_bad_devices_are_refused(device, error):
    _, x = oracle_and_x(("numpy", "cpu"))
    with pytest.raises(error, match="device must be"):
        x.map(sin2, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_unavailable_cuda_is_a_value_error():
    _, x = oracle_and_x(("torch", "cpu"))
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        x.map(sin2, device="cuda")
    # a GPU's index, a numpy one too (it was called a dtype: np.dtype reads np.int64(0))
    for index in (0, np.int64(0), np.int32(1)):
        with pytest.raises(ValueError, match=r"device \d \(a GPU's index\) needs a CUDA GPU"):
            x.map(sin2, device=index)


# ----------------------------------------------------------------- one buffer


def bf16_times2(v):
    return (v * 2).to(torch.bfloat16)


BUFFER_CASES = [pytest.param(p.values[0], sin2, id=f"sin-{p.id}", marks=p.marks) for p in PLACES]
BUFFER_CASES += [pytest.param(("torch", "cpu"), bf16_times2, id="to-bf16-torch-cpu")]


@pytest.mark.parametrize(("place", "fn"), BUFFER_CASES)
@pytest.mark.parametrize("large", [False, True], ids=["small-buffers", "large-buffers"])
def test_no_grad_chunks_fill_one_buffer(monkeypatch, place, fn, large):
    if large:
        monkeypatch.setattr(_backend, "LARGE_BUFFER_BYTES", 0)
    segments, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2, 3)))
    made, new_buffer = [], _backend.new_buffer  # the package's allocator for big buffers
    monkeypatch.setattr(_backend, "new_buffer", lambda *a: made.append(new_buffer(*a)) or made[-1])
    outputs = []

    def fn_keeping_outputs(v):
        outputs.append(fn(v))
        return outputs[-1]

    with torch.no_grad():
        y = x.map(fn_keeping_outputs, chunk_size=4)
    assert len(outputs) == 4
    assert tuple(y.values.shape) == (N, 2, 3)
    if isinstance(y.values, torch.Tensor):
        assert y.values.is_contiguous() and not y.values.requires_grad
        assert all(y.values.data_ptr() != o.data_ptr() for o in outputs)
        assert len(made) == 1  # one output buffer asked for, not a cat
        if made and made[0] is not None:
            assert y.values.data_ptr() == made[0].data_ptr()
    else:
        assert y.values.flags.c_contiguous
        assert not any(np.shares_memory(y.values, o) for o in outputs)
    assert_mapped(y, x, oracle_map(fn, segments, place, (2, 3)), rtol=0, atol=0)


# -------------------------------------------------------------------- property


def edge_examples(test):
    """Besides what hypothesis draws: zero segments and all-empty segments, both backends."""
    for case in (NO_SEGMENTS, NO_ITEMS):
        for backend in ("numpy", "torch"):
            for chunk_size in (None, 1):
                test = example(case, backend, chunk_size)(test)
    return test


@settings(max_examples=60, deadline=None)
@given(
    ragged_lists(),
    st.sampled_from(["numpy", "torch"]),
    st.one_of(st.none(), st.integers(1, 60)),
)
@edge_examples
def test_property_map_matches_the_oracle(case, backend, chunk_size):
    _, item_shape, segments = case
    place = (backend, "cpu")
    x = build(segments, place, item_shape=item_shape, dtype="float64")
    rec = Recorder(sin2)
    y = x.map(rec, chunk_size=chunk_size)
    assert_mapped(y, x, oracle_map(sin2, segments, place, item_shape, "float64"), rtol=0, atol=0)
    assert_covers_in_order(rec, x.values, probed=chunk_size is None)
    if chunk_size is not None:
        assert max(rec.sizes) <= chunk_size
        assert len(rec.sizes) == max(1, math.ceil(x.num_items / chunk_size))


# ----------------------------------------------- the probe leaves no trace in the result


def test_a_fresh_module_under_checkpoint_trains_from_the_first_step():
    """The probe ran under autograd: a checkpoint's recomputation, which finds the plan and
    skips the probe, saved fewer tensors than the first forward and torch refused it."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    psi = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    v = torch.randn(40, 3, requires_grad=True)

    def block(u):
        return ra.RaggedArray.from_lengths(u, [15, 25]).map(psi).mean()

    (want,) = torch.autograd.grad(psi(v)[:15].mean(0).sum() + psi(v)[15:].mean(0).sum(), v)
    for _ in range(2):
        (got,) = torch.autograd.grad(checkpoint(block, v, use_reentrant=False).sum(), v)
        torch.testing.assert_close(got, want)


def _mode_sensitive(v):
    """What a transformer's fast path does: another result under a torch function mode."""
    return v * (2.0 if torch.overrides._is_torch_function_mode_enabled() else 1.0)


@pytest.mark.parametrize("num_items", [0, 5, mapping.PROBE_ITEMS, 40])
def test_a_first_call_gives_what_fn_gives_outside_the_probe(num_items):
    """A batch within the probe's items kept the probe's output, computed under its torch
    function mode (a transformer left its fast path there: 2.1 off on a first call)."""
    fn = functools.partial(_mode_sensitive)
    x = ra.RaggedArray.from_lengths(torch.randn(num_items, 3), [num_items])
    for _ in range(2):
        torch.testing.assert_close(x.map(fn).values, x.values)


def test_a_compiled_fn_is_measured_through_what_it_compiles():
    """dynamo cannot trace the probe's mode: a fullgraph-compiled fn failed on every call."""
    torch._dynamo.reset()
    lin = nn.Linear(3, 3)
    plain = nn.Sequential(lin, nn.ReLU())
    compiled = torch.compile(plain, backend="eager", fullgraph=True)
    function = torch.compile(lambda v: torch.relu(lin(v)), backend="eager", fullgraph=True)
    x = ra.RaggedArray.from_lengths(torch.randn(100, 3), [40, 60])
    with torch.no_grad():
        for fn in (compiled, function):
            torch.testing.assert_close(x.map(fn).values, plain(x.values))
    torch._dynamo.reset()


def test_a_chunked_map_runs_under_vmap():
    """Chunks were copied into a plain buffer, which a batched tensor cannot go into."""

    def f(u):
        return ra.RaggedArray.from_lengths(u, [3, 0, 5]).map(torch.sin, chunk_size=3).values

    batch = torch.randn(4, 8, 2)
    torch.testing.assert_close(torch.func.vmap(f)(batch), batch.sin())


def test_the_probe_leaves_buffers_it_did_not_change_alone():
    """Every buffer was written back: an inference-mode buffer or an expanded one failed,
    on every call (no plan was kept), though fn ran fine."""
    with torch.inference_mode():
        net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    wide = nn.Linear(3, 3)
    wide.register_buffer("shift", torch.ones(1, 3).expand(2, 3))
    x = ra.RaggedArray.from_lengths(torch.randn(40, 3), [15, 25])
    with torch.no_grad():
        for fn in (net, lambda v: wide(v) + wide.shift[0]):
            for _ in range(2):
                torch.testing.assert_close(x.map(fn).values, fn(x.values))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "norm",
    [
        pytest.param(lambda: torch.jit.script(nn.BatchNorm2d(4)), id="scripted-batch-norm"),
        pytest.param(lambda: nn.InstanceNorm2d(4, track_running_stats=True), id="instance-norm"),
    ],
)
def test_norms_coupled_to_their_batch_are_called_once(norm):
    """A scripted batch norm is no instance of torch's class (it normalised per chunk), and an
    instance norm tracking statistics updates them once per call (per chunk, they drifted)."""
    torch.manual_seed(0)
    layer = norm().train()
    net = nn.Sequential(nn.Conv2d(1, 4, 5), layer)
    twin = copy.deepcopy(net)
    values = torch.randn(3_000, 1, 16, 16)
    batch = ra.RaggedImageBatch.from_lengths(values, [1_200, 1_800])
    sizes = count_calls(net)
    with torch.no_grad():
        got = batch.map(net).values
        want = twin(values)
    assert sizes[-1] == 3_000  # (after the probe's call of 16)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(layer.running_mean, twin[1].running_mean)
