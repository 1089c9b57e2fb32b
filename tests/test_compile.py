"""``torch.compile``: reductions in one graph, modules equal to eager, few recompiles.

Compiling is slow on a small machine, so the cases are few and small, and most use the
``aot_eager`` backend (dynamo's graph capture and AOT autograd, without code generation);
one test runs the default inductor backend on a reduction forward and backward.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest

import raggedarray as ra

torch = pytest.importorskip("torch")
testing = pytest.importorskip("torch._dynamo.testing")

# Five batches with different m and N (and an empty segment in some), after a warm-up batch.
BATCHES = [[3, 0, 5], [2, 4, 1, 6], [5, 5], [1, 0, 2, 7, 3], [4, 2, 2], [6, 1, 3, 2, 2, 1]]
# At most this many compilations after the first one over the batches above.
MAX_RECOMPILES = 2
# Inductor is verified on torch 2.13. torch 2.6 (the declared floor) overflows in sympy on
# the block labels; its aot_eager graphs (every other test here) work. docs/compute.md says
# which torch to use.
OLD_TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13)
needs_recent_torch = pytest.mark.skipif(
    OLD_TORCH, reason="inductor on ragged reductions needs torch >= 2.13 (tested there)"
)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _offsets(lengths):
    return torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)


def _leaf(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()


def _all_reductions(values, offsets):
    return (
        ra.segment_sum(values, offsets),
        ra.segment_mean(values, offsets, fill=-1.0),
        ra.segment_max(values, offsets),
        ra.segment_min(values, offsets),
        ra.segment_logsumexp(values, offsets),
        ra.segment_softmax(values, offsets),
    )


def _value_and_grads(fn, inputs, params):
    """``fn(*inputs)`` and the gradients of a weighted sum of its outputs."""
    outputs = fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    weights = [
        torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape) for out in outputs
    ]
    loss = sum((w * out).sum() for w, out in zip(weights, outputs, strict=True))
    grads = torch.autograd.grad(loss, params)
    return [out.detach() for out in outputs], grads


def _assert_same(got, expected, *, atol=1e-10):
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=atol, rtol=1e-7)


def _centred(values, offsets):
    """A user's centring: per-segment means back to their items, with N given."""
    means = ra.segment_mean(values, offsets)
    return values - ra.segment_broadcast(means, offsets, num_items=values.shape[0])


@pytest.mark.parametrize("fn", [_all_reductions, _centred], ids=["reductions", "broadcast"])
def test_functions_compile_into_one_graph_equal_to_eager(fn):
    """The functional reductions, and ``segment_broadcast`` given ``num_items`` (it reads
    nothing on the host then), in one full graph with eager's results and gradients."""
    counter = testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    for k, lengths in enumerate(BATCHES):
        values = _leaf((sum(lengths), 3), k)
        offsets = _offsets(lengths)
        got, got_grads = _value_and_grads(compiled, (values, offsets), [values])
        expected, grads = _value_and_grads(fn, (values, offsets), [values])
        _assert_same(got, expected)
        _assert_same(got_grads, grads)
    assert counter.frame_count - 1 <= MAX_RECOMPILES


# a numpy scalar from outside: dynamo makes it symbolic (torch 2.6's reads it with .item(),
# which breaks a full graph; a Python float there)
_NUMPY_FILL = np.float32(3.0)


def _fills(ints, floats, offsets, fill):
    return (
        ra.segment_sum(ints, offsets, fill=-1),
        ra.segment_max(ints, offsets, fill=-7),
        ra.segment_min(ints.to(torch.uint8), offsets, fill=200),
        ra.segment_prod(ints, offsets, fill=5),
        ra.segment_max(ints > 0, offsets, fill=True).long(),  # (weights need numbers)
        ra.segment_sum(floats, offsets, fill=_NUMPY_FILL if not OLD_TORCH else 3.0),
        ra.segment_mean(floats, offsets, fill=fill),  # a 0-d tensor, read in the graph
        ra.segment_max(floats, offsets, fill=-0.0),
    )


def test_fills_of_every_kind_compile_into_one_graph_equal_to_eager():
    """Integer fills were checked through numpy (a break), and a symbolic fill was compared
    with what the kernel leaves (a data-dependent guard)."""
    counter = testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(_fills, backend=counter, fullgraph=True)
    for k, lengths in enumerate(BATCHES[:3]):
        floats = _leaf((sum(lengths), 2), k)
        ints = (floats.detach() * 3).round().long()
        inputs = (ints, floats, _offsets(lengths), torch.tensor(-2.5, dtype=torch.float64))
        got, got_grads = _value_and_grads(compiled, inputs, [floats])
        expected, grads = _value_and_grads(_fills, inputs, [floats])
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == e.dtype
            torch.testing.assert_close(g, e, rtol=0, atol=0)
            assert torch.equal(g.signbit(), e.signbit())
        _assert_same(got_grads, grads)
    assert counter.frame_count - 1 <= MAX_RECOMPILES


class _NumpyFills(torch.nn.Module):
    """A user's module holding numpy fills of its own (not a ``SegmentPool``)."""

    def __init__(self):
        super().__init__()
        self.low, self.count, self.flag = np.float32(-1.5), np.int32(-3), np.bool_(True)

    def forward(self, x):
        ints = (x.values.detach() * 3).round().long()
        return (
            x.max(fill=self.low),
            ra.segment_sum(ints, x.offsets, fill=self.count).double(),
            ra.segment_max(ints > 0, x.offsets, fill=self.flag).double(),
        )


def test_a_user_module_holding_numpy_fills_compiles_as_eager():
    """dynamo holds a module's numpy scalar as a 0-d array: reading it on the host broke
    the graph on every call (6 graphs over four batches where a Python float gave 3)."""
    model = _NumpyFills()
    counter = testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    for k, lengths in enumerate(BATCHES):
        values = _leaf((sum(lengths), 2), k)
        x = ra.RaggedArray(values, _offsets(lengths))
        got, got_grads = _value_and_grads(compiled, (x,), [values])
        expected, grads = _value_and_grads(model, (x,), [values])
        _assert_same(got, expected)
        _assert_same(got_grads, grads)
    assert counter.frame_count - 1 <= MAX_RECOMPILES


@pytest.mark.parametrize("fill", [np.float32(0.0), np.float16(0.0), np.int32(0), np.bool_(0)])
def test_a_module_holding_a_numpy_fill_compiles_into_one_graph(fill):
    """dynamo reads a numpy scalar a module holds as an array, and its value on the host:
    a graph break on every call (3 per call in a DeepSet over five batches)."""
    x = ra.RaggedArray.from_lengths(torch.randn(8, 3), [3, 0, 5])
    explained = torch._dynamo.explain(ra.nn.SegmentPool("max", fill=fill))(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64, torch.float32])
def test_compiled_reductions_refuse_offsets_of_no_integer_dtype(dtype):
    """In a graph the offsets' values are trusted, not their kind: bool offsets were taken,
    and a mask [False, True, True] dropped an item (eager: TypeError)."""
    values = torch.tensor([5.0, 7.0])
    offsets = torch.tensor([0, 1, 2]).to(dtype)
    compiled = torch.compile(lambda v, o: ra.segment_sum(v, o), backend="aot_eager", fullgraph=True)
    with pytest.raises(TypeError, match="offsets must have an integer dtype"):
        ra.segment_sum(values, offsets)
    with pytest.raises(Exception) as caught:  # dynamo wraps the TypeError raised in a graph
        compiled(values, offsets)
    seen = f"{caught.value} {caught.value.__cause__!r}"  # (torch 2.6 drops its message)
    assert OLD_TORCH or "TypeError('segment_sum: offsets must have an integer dtype" in seen


_NUMBER = np.float32(1.5)  # a module-level numpy number, read by the graph below


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x * np.float64(2.5),
        lambda x: (x > np.float32(1)) & np.True_,
        lambda x: x + _NUMBER,
        lambda x: x.long() + np.float64(2.5),  # a float number gives the default dtype
        lambda x: x.to(torch.int8) + np.int64(3),
        lambda x: np.float32(2) - x,
        lambda x: torch.add(x, np.float32(2), alpha=2),
    ],
)
def test_numpy_numbers_in_a_compiled_function_give_the_eager_result(fn):
    """dynamo traces a numpy number as a 0-d array, refused as a numpy operand of torch
    values: the compiled function failed where the eager one ran."""
    x = ra.RaggedArray.from_lengths(torch.randn(10) * 3, [3, 0, 7])
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    got, want = compiled(x), fn(x)
    assert type(got) is type(want) and got.dtype == want.dtype
    assert torch.equal(got.values, want.values) and torch.equal(got.offsets, want.offsets)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.bool])
@pytest.mark.parametrize("number", [np.int64(256), np.int64(-1), np.int64(-129), np.int32(7)])
@pytest.mark.parametrize(
    "compare",
    [
        operator.eq,
        operator.lt,
        lambda x, n: n >= x,  # reflected
        torch.gt,
        lambda x, n: torch.le(x, other=n),
    ],
)
def test_numpy_ints_beyond_the_dtype_compare_exactly_in_a_compiled_function(dtype, number, compare):
    """dynamo reads a numpy int as a 0-d int64 tensor, which torch cast to the values'
    dtype: x == np.int64(256) on uint8 compared with 0, x < np.int64(300) with 44."""
    values = torch.tensor([0, 1, 5, 100, 127], dtype=torch.int64).to(dtype)
    x = ra.RaggedArray.from_lengths(values, [2, 0, 3])
    compiled = torch.compile(compare, backend="aot_eager", fullgraph=True)
    got, want = compiled(x, number), compare(x, number)
    truth = compare(values.long(), int(number))  # exact, in int64
    assert torch.equal(want.values, truth)
    assert got.dtype == torch.bool and torch.equal(got.values, truth)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint16, torch.uint64])
@pytest.mark.parametrize("op", ["argmax", "argmin", "median"])
def test_segment_ops_fill_empty_segments_without_a_host_read(op, dtype):
    """The fill of empty segments was read back with ``.item()`` in the graph: a graph
    break, and dynamo warned of ``Tensor.masked_fill`` in a user's compiled module."""
    values = torch.tensor([[3], [1], [2], [7], [5]]).to(dtype)
    x = ra.RaggedArray.from_lengths(values, [2, 0, 3])
    fill = 65_535 if op == "median" and dtype == torch.uint16 else 7
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = torch.compile(lambda x: getattr(x, op)(fill=fill), backend="aot_eager")
    got, want = compiled(x), getattr(x, op)(fill=fill)
    assert got.dtype == want.dtype and torch.equal(got, want)
    assert want[1].tolist() == [fill]
    breaks = " ".join(counters["graph_break"])
    assert "masked_fill" not in breaks
    assert op == "median" or "item()" not in breaks  # (median's sorted path reads positions)


EAGER_AFTER_COMPILED_PROCESS = """
import torch, raggedarray as ra
from torch._dynamo.utils import counters
pool = ra.nn.AttentionPool(4, 3)
model = ra.nn.DeepSet(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2), pool=pool)
compiled = torch.compile(model, dynamic=True, backend="aot_eager")
x = ra.RaggedArray.from_lengths(torch.randn(8, 3), [3, 0, 5])
y = ra.RaggedArray.from_lengths(torch.randn(13, 3), [2, 4, 1, 6])
def affine(x):
    return (x * 2 + 1).sum()


compiled_affine = torch.compile(affine, dynamic=True, backend="aot_eager")
compiled(x), compiled(y), compiled_affine(x), compiled_affine(y)
before = counters["stats"]["unique_graphs"]
model(x), affine(x)  # the process's first eager map and operator, a validation pass
compiled(y), compiled_affine(y)
print(before, counters["stats"]["unique_graphs"])
"""


def test_an_eager_call_after_compiled_ones_recompiles_nothing():
    """``map`` bound torch's objects at its first eager call, and a graph traced before
    guarded on them: the next compiled call recompiled (two graphs under dynamic=True)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", EAGER_AFTER_COMPILED_PROCESS],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = done.stdout.split()[-2:]
    assert before == after


def test_a_tensor_fill_of_wide_unsigned_values_compiles_as_eager():
    """uint64 values reduce as int64 shifted by 2**63; a 0-d tensor fill read in the graph
    skipped that shift: 7 came back as 9223372036854775815."""

    def fn(values, offsets, fill):
        return ra.segment_max(values, offsets, fill=fill), ra.segment_min(
            values, offsets, fill=fill
        )

    values = torch.from_numpy(np.array([1, 9, 3, 4, 2**63 + 5], dtype=np.uint64))
    offsets = _offsets([2, 0, 3])
    compiled = torch.compile(fn, backend="aot_eager")
    for fill in (torch.tensor(7, dtype=torch.uint64), torch.tensor(2**62, dtype=torch.int64)):
        for got, want in zip(
            compiled(values, offsets, fill), fn(values, offsets, fill), strict=True
        ):
            assert got.dtype == want.dtype == torch.uint64
            assert got.tolist() == want.tolist()


def test_the_gpu_broadcast_threshold_is_no_guard(monkeypatch):
    """Whether a broadcast is large enough for the Triton kernel is never asked in a graph:
    under dynamic shapes ``N >= MIN_ROWS`` would be a guard, one more compile per side."""
    from raggedarray import _triton

    def frames(min_rows):
        torch._dynamo.reset()
        monkeypatch.setattr(_triton, "MIN_ROWS", min_rows)
        counter = testing.CompileCounterWithBackend("aot_eager")
        compiled = torch.compile(ra.segment_softmax, backend=counter, fullgraph=True)
        for k, lengths in enumerate([[20], [10, 20], [30, 50], [5, 20], [40, 0, 50]]):
            compiled(_leaf((sum(lengths), 2), k), _offsets(lengths))
        return counter.frame_count

    assert frames(50) == frames(10**9)


@needs_recent_torch
def test_inductor_reduction_forward_and_backward():
    def fn(values, offsets):  # (max: the eager gradient as an autograd function, GraphExtremum)
        return ra.segment_mean(values, offsets), ra.segment_max(torch.relu(values), offsets)

    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    for k, lengths in enumerate([[70, 0, 5], [3, 130, 1, 2]]):  # several blocks per segment
        values = _leaf((sum(lengths), 2), k).float().detach().requires_grad_()
        offsets = _offsets(lengths)
        got, got_grads = _value_and_grads(compiled, (values, offsets), [values])
        expected, grads = _value_and_grads(fn, (values, offsets), [values])
        _assert_same(got, expected, atol=1e-6)
        _assert_same(got_grads, grads, atol=1e-6)


@needs_recent_torch
@pytest.mark.parametrize("features", [(), (1,)], ids=["scalars", "one-feature"])
def test_inductor_one_location_of_one_value_per_item(features):
    """m = 1 and one value per item: torch's derivative of the broadcast (an ``index_add``
    into a tensor of one element) failed in inductor's code, so a compiled AttentionPool
    over one bag (scores of shape (N, 1)) could not train."""

    def fn(values, offsets):
        return (*_all_reductions(values, offsets), ra.segment_log_softmax(values, offsets))

    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    for k, lengths in enumerate([[5], [9]]):
        values = _leaf((sum(lengths), *features), k)
        offsets = _offsets(lengths)
        got, got_grads = _value_and_grads(compiled, (values, offsets), [values])
        expected, grads = _value_and_grads(fn, (values, offsets), [values])
        _assert_same(got, expected)
        _assert_same(got_grads, grads)


@needs_recent_torch
def test_inductor_attention_pool_over_one_bag():
    torch.manual_seed(0)
    pool = ra.nn.AttentionPool(4, 8).double()
    compiled = torch.compile(pool)
    for lengths in ([5], [3, 6], [7]):
        x = ra.RaggedArray.from_lengths(_leaf((sum(lengths), 4), len(lengths)), lengths)
        params = [x.values, *pool.parameters()]
        got, got_grads = _value_and_grads(compiled, (x,), params)
        expected, grads = _value_and_grads(pool, (x,), params)
        _assert_same(got, expected)
        _assert_same(got_grads, grads)


def test_long_segments_stay_accurate_under_compile():
    # one 10^5-item segment of 0.1 in float32: the blocked float64 accumulation holds
    values = torch.full((100_000, 1), 0.1)
    offsets = torch.tensor([0, 1, 100_000])
    compiled = torch.compile(ra.segment_sum, backend="aot_eager", fullgraph=True)
    got = compiled(values, offsets)
    expected = values.double()[1:].sum()
    assert abs(got[1, 0].double() - expected) / expected < 1e-6


def test_compiled_functional_broadcast_gives_every_item_its_row():
    """``segment_broadcast`` reads N from the offsets, not from its ``(m, ...)`` rows: it
    may break the graph there (N is data), but a compiled call returns eager's rows and
    gradients (it once gave m rows, then failed on the next batch)."""
    compiled = torch.compile(ra.segment_broadcast, backend="aot_eager")
    for seed, lengths in enumerate(BATCHES):
        rows = _leaf((len(lengths), 2), seed)
        for offsets in (_offsets(lengths), _offsets(lengths).tolist()):
            got = _value_and_grads(compiled, (rows, offsets), [rows])
            expected = _value_and_grads(ra.segment_broadcast, (rows, offsets), [rows])
            assert got[0][0].shape == (sum(lengths), 2)
            _assert_same(got[0] + list(got[1]), expected[0] + list(expected[1]))


def test_compiled_cumsum_equals_eager_over_several_scan_levels():
    """``cumsum``'s scan levels follow N: the graphs may break there, the results may not."""

    def fn(values, offsets):
        return ra.RaggedArray(values, offsets).cumsum().values

    compiled = torch.compile(fn, backend="aot_eager")
    # The last location's float32 sum overflows; its neighbours stay finite, as eagerly.
    cases = [([5, 0, 30], torch.float64), ([1, 20_000, 3, 2], torch.float32)]
    for k, (lengths, dtype) in enumerate(cases):
        values = _leaf((sum(lengths), 2), k).to(dtype).detach()
        values[-2:] = 3e38 if dtype == torch.float32 else values[-2:]
        values.requires_grad_()
        offsets = _offsets(lengths)
        got, got_grads = _value_and_grads(compiled, (values, offsets), [values])
        expected, grads = _value_and_grads(fn, (values, offsets), [values])
        atol = 1e-10 if dtype == torch.float64 else 1e-3
        _assert_same(got, expected, atol=atol)
        _assert_same(got_grads, grads, atol=atol)
        (out,) = got
        assert out[:-1].isfinite().all() and out[-1].isinf().all() == (dtype == torch.float32)


class _UserModel(torch.nn.Module):
    """A model written against the ragged API: ``map`` and several reductions."""

    def __init__(self):
        super().__init__()
        self.psi = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
        self.head = torch.nn.Linear(12, 1)

    def forward(self, x):
        h = x.map(self.psi)
        attention = h.softmax()
        pooled = torch.cat([h.mean(), h.max(fill=-1.0), h.logsumexp()], dim=1)
        weighted = h._rewrap(h.values * attention.values).sum()
        return self.head(pooled) + weighted.sum(1, keepdim=True)


def _images_psi():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 4)
    )


MODELS = {  # DeepSet with an AttentionPool covers AttentionPool and DeepSet in one compile
    "SegmentPool": (lambda: ra.nn.SegmentPool("max", fill=0.5), (3,)),
    "DeepSet+AttentionPool": (
        lambda: ra.nn.DeepSet(_images_psi(), torch.nn.Linear(4, 2), pool=ra.nn.AttentionPool(4, 3)),
        (1, 6, 6),
    ),
    "user module": (_UserModel, (3,)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_modules_equal_eager_and_recompile_at_most_twice(name):
    make, item_shape = MODELS[name]
    torch.manual_seed(0)
    _assert_compiles_as_eager(make().double(), item_shape)


def _assert_compiles_as_eager(model, item_shape, **options):
    """Compiled ``model`` gives eager's results and gradients over ``BATCHES``, recompiling
    at most ``MAX_RECOMPILES`` times."""
    counter = testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True, **options)
    params = list(model.parameters())
    for k, lengths in enumerate(BATCHES):
        values = _leaf((sum(lengths), *item_shape), k)
        cls = ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray
        x = cls.from_lengths(values, lengths)
        got, got_grads = _value_and_grads(compiled, (x,), [values, *params])
        expected, grads = _value_and_grads(model, (x,), [values, *params])
        _assert_same(got, expected)
        _assert_same(got_grads, grads)
    assert counter.frame_count - 1 <= MAX_RECOMPILES


DYNAMIC_MODELS = {  # a module's float fill is a symbolic float under dynamic=True
    "SegmentPool-mean": lambda: ra.nn.SegmentPool("mean", fill=0.5),
    "SegmentPool-sum": lambda: ra.nn.SegmentPool("sum", fill=-2.0),
    "DeepSet-mean": lambda: ra.nn.DeepSet(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)),
}


@pytest.mark.parametrize("name", list(DYNAMIC_MODELS))
def test_modules_compile_with_dynamic_shapes_into_one_graph(name):
    """``dynamic=True`` (what docs/compute.md suggests): reading the fill to check it broke
    the graph, so fullgraph=True failed and each call ran ~10 graphs."""
    torch.manual_seed(0)
    _assert_compiles_as_eager(DYNAMIC_MODELS[name]().double(), (3,), dynamic=True)


class _Recording(torch.nn.Module):
    """psi that records the largest number of items it was called on."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.largest = 0

    def forward(self, items):
        self.largest = max(self.largest, items.shape[0])
        return torch.tanh(self.linear(items))


def test_compiled_map_with_chunk_size_keeps_its_chunks_without_recompiling():
    # a traced chunk loop would bake ceil(N / chunk_size) into the graph, one recompile per
    # count; the loop runs eagerly instead (a graph break), in chunks of at most chunk_size
    torch.manual_seed(0)
    psi = _Recording()
    model = ra.nn.DeepSet(psi, torch.nn.Linear(4, 2), pool="mean", chunk_size=4).double()
    counter = testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter)
    params = list(model.parameters())
    for k, lengths in enumerate([*BATCHES, [9, 9, 9], [1, 1]]):
        values = _leaf((sum(lengths), 3), k)
        x = ra.RaggedArray.from_lengths(values, lengths)
        got, got_grads = _value_and_grads(compiled, (x,), [values, *params])
        expected, grads = _value_and_grads(model, (x,), [values, *params])
        _assert_same(got, expected)
        _assert_same(got_grads, grads)
    assert psi.largest == 4
    assert counter.frame_count - 1 <= MAX_RECOMPILES


FRESH_PROCESS = """
import torch, raggedarray as ra
from torch._dynamo import testing
torch.manual_seed(0)
model = ra.nn.DeepSet(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2), pool=ra.nn.AttentionPool(4, 3))
counter = testing.CompileCounterWithBackend("aot_eager")
compiled = torch.compile(model, backend=counter)

def weigh(h):
    return (h * h.softmax() + 2.0).sum()

for lengths in ([3, 0, 5], [2, 4, 1, 6], [5, 5]):
    x = ra.RaggedArray.from_lengths(torch.randn(sum(lengths), 3), lengths)
    assert torch.allclose(compiled(x), model(x), atol=1e-6)
    h = x.map(torch.nn.Identity())
    assert torch.allclose(torch.compile(weigh, backend="aot_eager")(h), weigh(h))
print("frames", counter.frame_count)
"""


def test_compiling_before_any_eager_call_works():
    # the first map or elementwise call of a process used to be traced: map bound torch's
    # objects into module globals and the elementwise result check grew module sets, which
    # torch 2.6's dynamo could not trace (earlier eager calls in this process would hide it)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) - 1 <= MAX_RECOMPILES


COLD_OPERAND_PROCESS = """
import torch, raggedarray as ra
import torch.nn.functional as F
torch.manual_seed(0)
w = torch.linspace(-1, 1, 4)
cases = {
    "tensor operand": lambda x: (x * w).sum(),
    "softmax": lambda x: (x * w).softmax().values.sum(),
    "where": lambda x: torch.where(x > 0, F.silu(x) * w, torch.exp(x) - 1).mean(),
    "row operand": lambda x: (x + x.values[0]).max(),
}
for name, fn in cases.items():
    torch._dynamo.reset()
    x = ra.RaggedArray.from_lengths(torch.randn(10, 4), [3, 0, 7])
    explained = torch._dynamo.explain(fn)(x)
    assert torch.allclose(torch.compile(fn, backend="aot_eager")(x), fn(x)), name
    print(name, explained.graph_count, explained.graph_break_count)
"""


def test_the_first_operations_of_a_process_compile_into_one_graph():
    """In a fresh process every verdict and dtype check is cold: dynamo traced torch's
    elementwise classification (ATen tags) and the names of functions for messages, broke
    inside __torch_function__ and fell back to eager, and the reductions after it then
    read the host offsets in a graph: 5 to 18 breaks on every call."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", COLD_OPERAND_PROCESS], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]  # (and each result equals eager)
    if OLD_TORCH:  # torch 2.6's dynamo still breaks a few times here; verified on 2.13
        return
    for line in done.stdout.strip().splitlines():
        *_, graphs, breaks = line.split()
        assert (int(graphs), int(breaks)) == (1, 0), line


def test_verdicts_are_constants_as_torch_marks_them():
    """The package marks pure functions as torch.compiler.assume_constant_result would,
    without importing torch; this pins the attribute torch reads."""
    from raggedarray import _pointwise

    def probe():
        return True

    marked = torch.compiler.assume_constant_result(probe)
    flags = {k for k, v in vars(marked).items() if v is True}
    assert flags  # (torch marks the function itself)
    for fn in (_pointwise._classify, _pointwise.torch_name, _pointwise._inplace_slot):
        assert flags <= {k for k, v in vars(fn).items() if v is True}, flags


WARNINGS_PROCESS = """
import warnings
import torch
import raggedarray as ra

warnings.simplefilter("always")
torch.manual_seed(0)
psi = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
model = torch.compile(ra.nn.DeepSet(psi, torch.nn.Linear(2, 1)), backend="aot_eager")
lin = torch.nn.Linear(16, 2)


def attend(x):  # a user's module: a ragged operand of the same offsets
    h = x.map(lambda v: lin(v.flatten(1)))
    return (h * h.softmax()).sum().sum()


attend = torch.compile(attend, backend="aot_eager")
with warnings.catch_warnings(record=True) as caught:
    for lengths in ([3, 5, 2], [4, 1, 6, 2, 2], [7, 3]):
        x = ra.RaggedImageBatch.from_list([torch.randn(n, 1, 4, 4) for n in lengths])
        model(x).sum().backward()
        attend(x).backward()
print(repr([str(w.message)[:80] for w in caught if "raggedarray" in str(w.message)
            or "writable" in str(w.message)]))
"""


def test_compiled_cumsum_under_autocast_equals_eager():
    """The scan's matrix products ran under autocast in a graph (the kernels turn it off
    eagerly only): bfloat16 sums, an error of 25 where eager's is 0.001, gradients too."""
    generator = torch.Generator().manual_seed(0)
    values = (torch.randn(3000, 5, generator=generator) * 100).requires_grad_()
    up = torch.randn(3000, 5, generator=generator)
    x = ra.RaggedArray.from_lengths(values, [100, 0, 2900])

    def scan(x):
        return x.cumsum().values

    results = []
    for fn in (scan, torch.compile(scan, backend="aot_eager")):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(x)
        results.append((out, *torch.autograd.grad((out * up).sum(), values)))
    for got, want in zip(results[1], results[0], strict=True):  # (summed in another order
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)  # by torch 2.6's graph)


@needs_recent_torch
def test_inductor_cumsum_backward_with_dynamic_shapes():
    """Autograd ran through the scan's reshapes, which inductor failed to lower once
    shapes were symbolic (IndexError: pop from empty list)."""
    compiled = torch.compile(lambda x: x.cumsum().values, dynamic=True)
    for k, lengths in enumerate(BATCHES[:2]):
        values = _leaf((sum(lengths), 3), k).float().detach().requires_grad_()
        x = ra.RaggedArray.from_lengths(values, lengths)
        got = _value_and_grads(compiled, (x,), [values])
        want = _value_and_grads(lambda x: x.cumsum().values, (x,), [values])
        _assert_same(got[0] + list(got[1]), want[0] + list(want[1]), atol=1e-5)


def test_compiled_models_warn_about_nothing_of_the_package():
    # len(x) read the read-only host offsets inside the graph: dynamo turned them into a
    # guarded tensor and torch warned, once per process, about a non-writable numpy array
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", WARNINGS_PROCESS], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == "[]"


def _extrema(values, offsets):
    return ra.segment_max(values, offsets), ra.segment_min(values, offsets)


def test_compiled_max_and_min_send_the_eager_gradient_at_zeros_ties_and_nan():
    """In a graph the forward is ``scatter_reduce``, whose own derivative counted the zeros
    its output starts from as one more tie wherever an extremum is 0 (an all-zero ReLU
    feature: each true tie got a third, not a half) and gave NaN to every item of a feature
    holding a NaN. The compiled gradient must be eager's: ties share, NaN takes it all."""
    nan, inf = float("nan"), float("inf")
    values = torch.tensor(
        [
            [0.0, 0.0, 1.0, -0.0],
            [0.0, 3.0, nan, 0.0],
            [2.0, 3.0, 2.0, inf],
            [0.0, 0.0, -1.0, 0.0],
            [0.0, 0.0, 0.0, -inf],
        ],
        dtype=torch.float64,
    )
    for lengths in ([2, 0, 3], [1, 4], [5]):
        offsets = _offsets(lengths)
        compiled = torch.compile(_extrema, backend="aot_eager", fullgraph=True)
        leaf = values.clone().requires_grad_()
        got, got_grads = _value_and_grads(compiled, (leaf, offsets), [leaf])
        expected, grads = _value_and_grads(_extrema, (leaf, offsets), [leaf])
        for g, e in zip(got + list(got_grads), expected + list(grads), strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=0, equal_nan=True)
        assert not grads[0].isnan().any()  # (the eager rule sends no NaN anywhere here)


def test_compiled_max_pool_over_relu_features_trains_as_eager():
    """A max pool over ReLU features: whole segments of a feature are 0, and the zeros tie."""
    pool = ra.nn.SegmentPool("max")
    compiled = torch.compile(pool, backend="aot_eager")
    for lengths in ([3, 0, 5], [2, 4, 1, 6]):
        values = torch.relu(_leaf((sum(lengths), 4), sum(lengths))).detach()
        values[:, 0] = 0.0  # every segment's feature 0 is all ties at 0
        values.requires_grad_()
        x = ra.RaggedArray(values, _offsets(lengths))
        got, got_grads = _value_and_grads(compiled, (x,), [values])
        expected, grads = _value_and_grads(pool, (x,), [values])
        _assert_same(got, expected, atol=0)
        _assert_same(got_grads, grads, atol=0)


def test_uint64_sums_compile_without_reading_their_values():
    """Eagerly, uint64 values of 2**63 and more are refused (int64 sums cannot hold them);
    that check read the values, which a graph cannot: it broke ``fullgraph``."""
    values = torch.tensor([1, 2, 3, 4, 5], dtype=torch.uint64)
    offsets = _offsets([3, 0, 2])
    compiled = torch.compile(ra.segment_sum, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(values, offsets), ra.segment_sum(values, offsets))
