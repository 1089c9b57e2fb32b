"""The numerical promises of the reductions, checked at scale and at the edges.

Long segments against float64 truth on both engines and backends; NaN and infinities against
the per-segment torch loop (``ra.testing.reference_reduce``); gradients with NaN and ties;
items with a zero-size dimension; every dtype a constructor accepts; autocast.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import requires_cuda
from hypothesis import given, settings
from hypothesis import strategies as st

import raggedarray as ra
from raggedarray import _jit, _kernels, _partition
from raggedarray.reduce import REDUCTIONS

ENGINES = list(_kernels.ENGINES)
ALL_REDUCTIONS = list(REDUCTIONS)


def relative_error(got, truth):
    got = np.asarray(torch.as_tensor(got).double())
    truth = np.asarray(truth, dtype=np.float64)
    return float(np.max(np.abs(got - truth) / np.maximum(np.abs(truth), 1e-300)))


# ------------------------------------------------------------- long segments, accuracy

LONG = 1_000_000


def long_data(kind):
    g = torch.Generator().manual_seed(0)
    if kind == "constant":
        return torch.full((LONG, 2), 0.1)
    if kind == "large-mean":
        return torch.randn(LONG, 2, generator=g) + 1000
    return torch.rand(LONG, 2, generator=g)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["constant", "large-mean", "uniform"])
def test_sum_and_mean_of_a_million_items_are_as_accurate_as_torch_sum(engine, backend, kind):
    values = long_data(kind)
    # one long segment, a short one and an empty one
    offsets = [0, LONG - 7, LONG - 7, LONG]
    data = values.numpy() if backend == "numpy" else values
    truth = [values[a:b].double().sum(0).numpy() for a, b in ((0, LONG - 7), (LONG - 7, LONG))]
    baseline = relative_error(values[: LONG - 7].sum(0), truth[0])
    with _kernels.force_engine(engine):
        sums = ra.segment_sum(data, offsets)
        means = ra.segment_mean(data, offsets)
    assert relative_error(sums[0], truth[0]) <= max(1e-6, 2 * baseline)
    assert relative_error(sums[2], truth[1]) <= 1e-6
    assert relative_error(means[0], truth[0] / (LONG - 7)) <= max(1e-6, 2 * baseline)
    assert np.all(np.asarray(sums[1]) == 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_var_and_std_stay_accurate_when_the_mean_is_large(engine):
    values = long_data("large-mean")
    truth = values.double().var(0, correction=1).numpy()
    for data in (values, values.numpy()):
        with _kernels.force_engine(engine):
            var = ra.segment_var(data, [0, LONG])
            std = ra.segment_std(data, [0, LONG], correction=0)
        assert relative_error(var[0], truth) < 1e-3
        assert relative_error(std[0], np.sqrt(truth * (LONG - 1) / LONG)) < 1e-3


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_var_and_std_of_every_magnitude_are_the_rounded_float64_truth(engine):
    # squared deviations of values beyond ~1e19 overflow float32; the results must not
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 200, 300)
    scale = 10.0 ** rng.uniform(-30, 38.4, (300, 1))  # one magnitude per segment
    spread = np.repeat(scale, lengths, 0) * rng.uniform(-1, 1, (lengths.sum(), 3))
    values = torch.from_numpy(spread.astype(np.float32))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for op in ("var", "std"):
        for correction in (0, 1):
            want = ra.testing.reference_reduce(op, values.double(), offsets, correction=correction)
            with _kernels.force_engine(engine):
                got = getattr(ra, f"segment_{op}")(values, offsets, correction=correction)
            torch.testing.assert_close(got, want.float(), rtol=2e-6, atol=0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_sums_whose_blocks_overflow_are_the_rounded_float64_truth(engine, backend):
    """64-item blocks of 3e38 and -3e38 summed to inf and -inf in float32, and their float64
    combination was NaN for finite values (torch.sum gives inf; the truth is finite)."""
    big = np.float32(3e38)
    segments = [
        np.concatenate([np.full(64, big), np.full(64, -big)]),  # truth 0
        np.concatenate([np.full(64, big), np.full(63, -big)]),  # truth 3e38
        np.concatenate([np.full(70, big), [np.inf]]),  # an inf value: inf, as in float64
        np.concatenate([np.full(64, big), np.full(64, -big), [np.nan]]),  # NaN stays NaN
        np.concatenate([np.full(64, big), np.full(64, big)]),  # beyond float32: inf
        np.ones(3, np.float32),
    ]
    flat = np.concatenate(segments).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segments])])
    values = flat if backend == "numpy" else torch.from_numpy(flat)
    for op in ("sum", "mean"):
        with np.errstate(over="ignore", invalid="ignore"):  # (inf and NaN where they belong)
            want = np.array([getattr(s.astype(np.float64), op)() for s in segments], np.float32)
        with _kernels.force_engine(engine):
            got = getattr(ra, f"segment_{op}")(values, offsets)
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=op)
    with _kernels.force_engine(engine):  # half precision accumulates in float32 the same way
        halves = ra.segment_sum(torch.from_numpy(flat).bfloat16(), offsets)
    assert halves[0].item() == 0.0 and not halves[:3].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("engine", ENGINES)
def test_half_precision_mean_of_a_million_items_rounds_once(engine, dtype):
    values = torch.full((LONG, 1), 0.1, dtype=dtype)
    truth = values[:1].double()  # the mean of equal items is the item itself
    with _kernels.force_engine(engine):
        mean = ra.segment_mean(values, [0, LONG])
    assert mean.dtype == dtype
    assert mean.double().equal(truth)  # exact: accumulated in float32, then rounded once


@pytest.mark.parametrize("engine", ENGINES)
def test_logsumexp_and_softmax_of_long_segments(engine):
    values = long_data("uniform")
    with _kernels.force_engine(engine):
        lse = ra.segment_logsumexp(values, [0, LONG])
        soft = ra.segment_softmax(values, [0, LONG])
    assert relative_error(lse[0], torch.logsumexp(values.double(), 0)) < 1e-6
    assert relative_error(soft.double().sum(0), np.ones(2)) < 1e-5


# ------------------------------------------------------------------- NaN and infinities

# exactly representable sums, so the order of additions cannot matter
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, 1e3, -1e3]


@st.composite
def special_segments(draw):
    lengths = draw(st.lists(st.integers(0, 5), min_size=0, max_size=6))
    n = sum(lengths)
    flat = draw(st.lists(st.sampled_from(SPECIALS), min_size=2 * n, max_size=2 * n))
    values = np.array(flat, dtype=np.float64).reshape(n, 2)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    return values, offsets


def assert_same_with_nan(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(case=special_segments(), engine=st.sampled_from(ENGINES), block=st.sampled_from([2, 64]))
def test_nan_and_infinities_match_the_torch_loop(case, engine, block):
    values, offsets = case
    tensor = torch.from_numpy(values)
    old = _partition.BLOCK
    _partition.BLOCK = block
    try:
        with _kernels.force_engine(engine):
            for op in ALL_REDUCTIONS:
                want = ra.testing.reference_reduce(op, tensor, offsets, fill=-7.0)
                got = getattr(ra, f"segment_{op}")(tensor, offsets, fill=-7.0)
                assert_same_with_nan(got, want)
                numpy_want = ra.testing.reference_reduce(op, values, offsets, fill=-7.0)
                got = getattr(ra, f"segment_{op}")(values, offsets, fill=-7.0)
                with np.errstate(invalid="ignore"):
                    assert_same_with_nan(got, numpy_want)
            want = ra.testing.reference_softmax(tensor, offsets)
            assert_same_with_nan(ra.segment_softmax(tensor, offsets), want)
    finally:
        _partition.BLOCK = old


def extremum_grad_oracle(values, offsets, op):
    """Gradient of sum(segment_max) by a loop: 1/ties at the extrema (NaN counts as one)."""
    grad = torch.zeros_like(values)
    for a, b in itertools.pairwise(offsets):
        if a == b:
            continue
        seg = values[a:b]
        top = seg.amax(0) if op == "max" else seg.amin(0)
        hit = (seg == top) | (seg.isnan() & top.isnan())
        grad[a:b] = hit / hit.sum(0)
    return grad


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("op", ["max", "min"])
def test_extremum_gradient_goes_to_the_nan_and_is_shared_by_ties(engine, op):
    nan, inf = float("nan"), float("inf")
    rows = [[1.0, 3.0], [nan, 3.0], [3.0, -inf], [2.0, 2.0], [2.0, -inf], [inf, 5.0], [inf, 5.0]]
    offsets = [0, 3, 3, 5, 7]
    values = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    with _kernels.force_engine(engine):
        getattr(ra, f"segment_{op}")(values, offsets).sum().backward()
    want = extremum_grad_oracle(values.detach(), offsets, op)
    torch.testing.assert_close(values.grad, want)
    assert values.grad[0, 0] == 0 and values.grad[2, 0] == 0 and values.grad[1, 0] == 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("op", ["max", "min"])
def test_extremum_gradcheck_with_ties_and_double_backward(engine, op):
    values = torch.tensor([[1.0], [4.0], [4.0], [2.0], [0.5], [0.5]], dtype=torch.float64)
    values.requires_grad_()
    fn = getattr(ra, f"segment_{op}")
    with _kernels.force_engine(engine):
        # ties have no derivative in the classical sense: check the documented split instead
        weights = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)
        out = fn(values, [0, 3, 6])
        (grad,) = torch.autograd.grad(out, values, grad_outputs=weights, create_graph=True)
        want = extremum_grad_oracle(values.detach(), [0, 3, 6], op)
        torch.testing.assert_close(grad, want)
        grad.sum().backward()  # double backward: d(sum of grad)/d(weights) = 1 per segment
    torch.testing.assert_close(weights.grad, torch.ones(2, 1, dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(case=special_segments(), op=st.sampled_from(["max", "min"]))
def test_extremum_gradient_with_specials_matches_the_loop(case, op):
    values, offsets = case
    tensor = torch.from_numpy(values).requires_grad_()
    for engine in ENGINES:
        tensor.grad = None
        with _kernels.force_engine(engine):
            getattr(ra, f"segment_{op}")(tensor, offsets).sum().backward()
        want = extremum_grad_oracle(tensor.detach(), offsets, op)
        torch.testing.assert_close(tensor.grad, want, equal_nan=True)


# a value whose product with itself overflows each dtype
PRODUCT_BIG = {torch.float32: 1e30, torch.float64: 1e200}


@st.composite
def product_segments(draw):
    """Segments of 2-feature items drawn from zeros, NaN, infinities and values that overflow."""
    dtype = draw(st.sampled_from(list(PRODUCT_BIG)))
    big = PRODUCT_BIG[dtype]
    pool = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, 0.5, big, -big]
    lengths = draw(st.lists(st.integers(0, 6), min_size=1, max_size=5).filter(any))
    n = sum(lengths)
    flat = draw(st.lists(st.sampled_from(pool), min_size=2 * n, max_size=2 * n))
    values = torch.tensor(flat, dtype=torch.float64).reshape(n, 2).to(dtype)
    offsets = [0, *itertools.accumulate(lengths)]
    return values, offsets


@settings(max_examples=80, deadline=None)
@given(case=product_segments(), halving=st.booleans())
def test_prod_gradient_with_specials_matches_the_torch_loop(case, halving):
    values, offsets = case
    leaf = values.clone().requires_grad_()
    rows = [
        leaf[a:b].prod(0) if b > a else torch.ones(2, dtype=leaf.dtype)
        for a, b in itertools.pairwise(offsets)
    ]
    upstream = torch.arange(1.0, 2 * len(rows) + 1, dtype=leaf.dtype).reshape(-1, 2)
    (want,) = torch.autograd.grad((torch.stack(rows) * upstream).sum(), leaf)
    leaf = values.clone().requires_grad_()
    deterministic = _kernels.deterministic_off_cpu
    if halving:  # the products deterministic algorithms take off the CPU
        _kernels.deterministic_off_cpu = lambda device: True
    try:
        out = ra.segment_prod(leaf, offsets, fill=1.0)
    finally:
        _kernels.deterministic_off_cpu = deterministic
    (got,) = torch.autograd.grad((out * upstream).sum(), leaf)
    torch.testing.assert_close(got, want, equal_nan=True)


# ----------------------------------------------------------------- zero-size items

ZERO_ITEMS = [(0,), (1, 0, 0), (2, 0), (0, 3)]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("item_shape", ZERO_ITEMS)
@pytest.mark.parametrize("lengths", [[2, 0, 1], [], [0, 0]])
def test_zero_size_items_reduce_to_results_of_their_shape(lengths, item_shape, backend):
    values = np.zeros((sum(lengths), *item_shape), dtype=np.float32)
    data = values if backend == "numpy" else torch.from_numpy(values)
    cls = ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray
    x = cls.from_lengths(data, lengths)
    for op in ALL_REDUCTIONS:
        got = getattr(x, op)(fill=3.0)
        want = ra.testing.reference_reduce(op, values, x.host_offsets, fill=3.0)
        assert tuple(got.shape) == (len(lengths), *item_shape) == want.shape
    assert tuple(x.softmax().values.shape) == values.shape
    assert tuple(x.broadcast(x.sum()).values.shape) == values.shape


def test_the_empty_image_batch_reduces():
    batch = ra.RaggedImageBatch.from_list([])
    for op in ALL_REDUCTIONS:
        assert getattr(batch, op)().shape == (0, 1, 0, 0)


def test_zero_size_items_still_give_a_gradient_path():
    values = torch.zeros(3, 0, requires_grad=True)
    out = ra.segment_sum(values, [0, 2, 3])
    out.sum().backward()
    assert values.grad.shape == (3, 0)
    empty = torch.zeros(0, 2, requires_grad=True)
    out = ra.segment_mean(empty, [0, 0, 0], fill=1.0)
    assert out.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    out.sum().backward()
    assert empty.grad.shape == (0, 2)


# ----------------------------------------------------------------------- every dtype

INTEGER_DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "bool"]
FLOAT_DTYPES = ["float16", "float32", "float64"]


def integer_values(dtype, n=11):
    rng = np.random.default_rng(3)
    if dtype == "bool":
        return rng.random((n, 2)) > 0.5
    info = np.iinfo(dtype)
    extremes = np.array([info.min, info.max, 0, 1], dtype=dtype)
    rest = rng.integers(max(info.min, -100), min(info.max, 100), size=2 * n - 4, dtype=dtype)
    return np.concatenate([extremes, rest]).reshape(n, 2)


def as_torch(values):
    return torch.from_numpy(values)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_every_integer_dtype_reduces_like_the_loop(dtype, backend):
    values = integer_values(dtype)
    offsets = [0, 4, 4, 9, 11]
    data = values if backend == "numpy" else as_torch(values)
    x = ra.RaggedArray(data, offsets if backend == "numpy" else torch.tensor(offsets))
    for op in ("max", "min"):
        got = getattr(x, op)(fill=1)
        want = ra.testing.reference_reduce(op, values, offsets, fill=1)
        assert np.asarray(got if backend == "numpy" else got.numpy()).tolist() == want.tolist()
        assert (got.dtype == data.dtype) if backend == "numpy" else (str(got.dtype)[6:] == dtype)
    small = values if dtype != "uint64" else values % (2**63)
    data = small if backend == "numpy" else as_torch(small)
    for op in ("sum", "prod"):
        got = getattr(ra, f"segment_{op}")(data, offsets)
        want = ra.testing.reference_reduce(op, small.astype(np.int64), offsets)
        assert np.asarray(got).tolist() == want.tolist()
    # reductions that need floats take integers as numpy's mean does (float64), or give
    # torch's default dtype for torch values, as torch divides integers: the float64
    # result rounded once
    for op in ("mean", "var", "logsumexp"):
        got = getattr(ra, f"segment_{op}")(data, offsets)
        floats = np.float64 if backend == "numpy" else np.float32
        want = ra.testing.reference_reduce(op, small.astype(np.float64), offsets).astype(floats)
        assert got.dtype == (floats if backend == "numpy" else torch.float32)
        np.testing.assert_allclose(
            np.asarray(got), want, rtol=1e-6 if backend == "torch" else 1e-12
        )


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint32", "uint64"])
def test_wide_integers_keep_their_spread_in_float_reductions(dtype):
    """Cast to float32 first, 100_000_001..100_000_007 lost their spread: var 42.7 for 6.67,
    softmax [0.5, 0.5] for [0.12, 0.88]. Computed in float64, rounded once."""
    base = 100_000_001 if dtype != "int32" else 2**30 + 1
    values = (base + 2 * np.arange(4)).astype(dtype).reshape(4, 1)
    exact = values.astype(np.float64)
    tensor = torch.from_numpy(values)
    for op in ("var", "std", "mean", "logsumexp"):
        got = getattr(ra, f"segment_{op}")(tensor, [0, 4])
        want = ra.testing.reference_reduce(op, exact, [0, 4]).astype(np.float32)
        assert got.dtype == torch.float32 and got.numpy().tolist() == want.tolist(), op
    got = ra.segment_softmax(tensor[:2], [0, 2])
    want = torch.softmax(torch.from_numpy(exact[:2]), dim=0).float()
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES + FLOAT_DTYPES)
def test_every_dtype_moves_gathers_pads_and_subsamples(dtype):
    values = integer_values(dtype) if dtype in INTEGER_DTYPES else np.arange(22.0).reshape(11, 2)
    values = values.astype(dtype)
    for data in (values, as_torch(values)):
        x = ra.RaggedArray.from_lengths(data, [4, 0, 5, 2])
        want = [values[0:4], values[4:4], values[4:9], values[9:11]]
        picked = x[[2, 0]]
        assert [np.asarray(s).tolist() for s in picked] == [want[2].tolist(), want[0].tolist()]
        padded, mask = x.to_padded()
        assert np.asarray(padded)[2].tolist() == want[2].tolist()
        assert np.asarray(padded)[3][:2].tolist() == want[3].tolist()
        assert np.asarray(mask).sum() == 11
        sub = x.subsample(3, generator=0)
        assert sub.lengths.tolist() == [3, 0, 3, 2]
        assert ra.RaggedArray.from_list(x.to_list()).equal(x)
        assert x.broadcast(x.max()).values.shape == data.shape


def test_uint64_sums_refuse_values_int64_cannot_hold():
    values = np.array([2**63, 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"segment_sum: uint64 values must be below 2\*\*63"):
        ra.segment_sum(values, [0, 2])
    assert values.tolist() == [2**63, 1]  # untouched


def test_bfloat16_reduces_in_float32_and_returns_bfloat16():
    values = torch.full((1000, 3), 0.1, dtype=torch.bfloat16)
    for op in ALL_REDUCTIONS:
        out = getattr(ra, f"segment_{op}")(values, [0, 600, 1000])
        assert out.dtype == torch.bfloat16
        want = ra.testing.reference_reduce(op, values, [0, 600, 1000])
        torch.testing.assert_close(out.float(), want.float(), rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------------- autocast

AUTOCASTS = [
    pytest.param(("cpu", torch.bfloat16), id="cpu-bfloat16"),
    pytest.param(("cpu", torch.float16), id="cpu-float16"),
    pytest.param(("cuda", torch.float16), id="cuda-float16", marks=requires_cuda),
]


@pytest.mark.parametrize("features", [4, 16, 64])
@pytest.mark.parametrize("autocast", AUTOCASTS)
def test_every_reduction_runs_forward_and_backward_under_autocast(autocast, features):
    device, dtype = autocast
    lengths = [3, 0, 2, 70]
    values = torch.randn(sum(lengths), features, device=device, requires_grad=True)
    x = ra.RaggedArray.from_lengths(values, lengths)
    linear = torch.nn.Linear(features, features).to(device)
    with torch.autocast(device, dtype=dtype):
        h = x.map(linear)  # half precision values from here on
        outs = [getattr(h, op)() for op in ALL_REDUCTIONS]
        outs += [getattr(x, op)() for op in ALL_REDUCTIONS]
        outs.append(h.softmax().values)
        outs.append(h.log_softmax().values)
        outs.append(x.broadcast(x.mean()).values)
        loss = sum(o.float().sum() for o in outs)
    loss.backward()
    assert values.grad is not None and torch.isfinite(values.grad).all()


def test_cumsum_backward_run_under_autocast_keeps_float32():
    """The gradient went through the scan's matrix products, which a backward run inside
    autocast (torch.autograd.grad of a penalty, say) ran in bfloat16: an error of 0.96."""
    generator = torch.Generator().manual_seed(0)
    values = (torch.randn(3000, 5, generator=generator) * 100).requires_grad_()
    up = torch.randn(3000, 5, generator=generator)
    x = ra.RaggedArray.from_lengths(values, [100, 0, 2900])
    pieces = torch.split(up.double(), [100, 0, 2900])
    truth = torch.cat([p.flip(0).cumsum(0).flip(0) for p in pieces])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (grad,) = torch.autograd.grad((x.cumsum().values * up).sum(), values)
    assert (grad.double() - truth).abs().max() < 1e-4


@pytest.mark.parametrize("autocast", AUTOCASTS)
def test_nn_modules_train_under_autocast(autocast):
    device, dtype = autocast
    x = ra.RaggedImageBatch.from_lengths(torch.randn(9, 1, 8, 8, device=device), [4, 0, 5])
    psi = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.ReLU())
    modules = [
        ra.nn.DeepSet(psi, torch.nn.Linear(72, 1), pool=pool)
        for pool in ("sum", "mean", "max", "min", "logsumexp")
    ]
    modules.append(ra.nn.DeepSet(psi, torch.nn.Linear(72, 1), pool=ra.nn.AttentionPool(72, 8)))
    for model in modules:
        model = model.to(device)
        with torch.autocast(device, dtype=dtype):
            out = model(x)
        out.float().sum().backward()
        assert out.shape == (3, 1)
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad()
    pool = ra.nn.SegmentPool("mean")
    with torch.autocast(device, dtype=dtype):
        assert pool(x.map(psi)).shape == (3, 72)


# ------------------------------------------------------------------ the shared partition


def test_results_that_keep_the_offsets_share_one_partition():
    x = ra.RaggedArray.from_lengths(torch.randn(9, 4), [4, 0, 5])
    x.sum()  # builds what the kernels need
    part = x._part
    derived = [
        x.map(lambda v: v * 2),
        x.softmax(),
        x.log_softmax(),
        x.broadcast(x.mean()),
        x.to(dtype=torch.float64),
        x.numpy(),
        x.numpy().torch(),
        x.detach(),
    ]
    assert all(y._part is part for y in derived)
    cached = dict(part._cache)
    for y in derived:
        y.sum()
    # nothing built again for the same device (the float64 CSR matrix is new, nothing else)
    assert {k: v for k, v in part._cache.items() if k in cached} == cached


def test_attention_pool_builds_one_partition_per_batch():
    x = ra.RaggedArray.from_lengths(torch.randn(9, 4), [4, 0, 5])
    pool = ra.nn.AttentionPool(4, 3)
    pool(x)
    keys = set(x._part._cache)
    pool(x)
    assert set(x._part._cache) == keys  # the second call reuses every index


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_a_short_segments_sum_does_not_depend_on_its_neighbours(engine, op):
    """The float64 second pass, meant for blocks of long segments, also took short
    segments again whenever one segment of the batch was long: [3e38, 3e38, -3e38] gave
    3e38 beside a segment of 65 items, and inf alone."""
    short = torch.tensor([3e38, 3e38, -3e38])
    blocks = torch.cat([torch.full((64,), 3e38), torch.full((64,), -3e38)])
    x = ra.RaggedArray.from_lengths(torch.cat([short, torch.ones(65), blocks]), [3, 65, 128])
    with _kernels.force_engine(engine):
        together = getattr(x, op)()
        alone = [getattr(x[i : i + 1], op)()[0] for i in range(3)]
    alone_short = getattr(short, op)(0)  # one float32 block, as torch adds it
    assert torch.equal(together, torch.stack(alone))
    assert torch.equal(together[0], alone_short) and together[2].item() == 0  # (truth: 0)


@pytest.mark.parametrize("numba", [False, True])
@pytest.mark.parametrize("op", ["max", "min"])
def test_flushed_subnormals_make_no_ties_in_the_extremum_gradient(op, numba, monkeypatch):
    """x - max was 0 for nearly equal normal values under set_flush_denormal(True): the
    sign trick of the backward counted them as ties."""
    monkeypatch.setattr(_jit, "ENABLED", numba)
    monkeypatch.setattr(_jit, "MIN_VALUES", 0)  # (numba's kernel even for a few values)
    edge = 2.0**-103  # float32 tiny / eps: the binade below differs from it by tiny / 2
    below = float(np.nextafter(np.float32(edge), np.float32(0)))
    cases = [  # (a batch's extrema decide which backward runs: the edge alone)
        ([1.2e-38, 1.3e-38, 5.0, -2.5e-38, -2.4e-38], [0, 2, 3, 5]),
        ([edge, below, 5.0] if op == "max" else [-edge, -below, 5.0], [0, 2, 3]),
    ]
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    try:
        for numbers, offsets in cases:
            values = torch.tensor(numbers, requires_grad=True)
            reduced = getattr(ra, f"segment_{op}")(values, offsets)
            (grad,) = torch.autograd.grad(reduced.sum(), values)
            want = [
                torch.autograd.grad(getattr(values[a:b], f"a{op}")(0), values)[0]
                for a, b in itertools.pairwise(offsets)
            ]
            assert torch.equal(grad, sum(want)), numbers
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("engine", ENGINES)
def test_float64_blocks_that_overflow_give_the_truth(engine):
    """float64 has no wider type to take the sums again in: blocks of 1e308 and -1e308 met
    as inf and -inf, and the sum, mean and var were NaN from finite values."""
    big = torch.full((64,), 1e308, dtype=torch.float64)
    values = torch.cat([big, -big, big, big, big[:3]])
    offsets = [0, 128, 256, 259]
    with _kernels.force_engine(engine):
        sums = ra.segment_sum(values, offsets)
        means = ra.segment_mean(values, offsets)
    assert sums.tolist() == [0.0, math.inf, math.inf]  # (beyond float64, as the truth is)
    assert means[0].item() == 0.0 and means[1].item() == pytest.approx(1e308, rel=1e-15)
    assert means[2].item() == math.inf  # one block, as torch.mean adds it


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_segment_taken_again_leaves_its_neighbours_as_they_are(engine, dtype):
    """The second pass for blocks that overflowed replaced every long segment's result:
    a float64 neighbour of 100 values of 1e-305 summed to 0 (scaled with the overflowed
    one), and float32 neighbours changed in their last bit; the float64 variance of the
    overflowed segment was NaN (torch: inf)."""
    huge = 1e308 if dtype == torch.float64 else 3e38
    big = torch.full((64,), huge, dtype=dtype)
    small = 1e-305 if dtype == torch.float64 else 1e-30
    generator = torch.Generator().manual_seed(0)
    neighbours = [
        torch.full((100,), small, dtype=dtype),
        (torch.randn(300, generator=generator) * 1000).to(dtype),
    ]
    values = torch.cat([big, -big, *neighbours]).requires_grad_()
    quiet = torch.cat([torch.zeros(128, dtype=dtype), *neighbours])  # (same places: blocks
    offsets = [0, 128, 228, 528]  # are aligned to the buffer, so a sum follows its place)
    with _kernels.force_engine(engine):
        for op in ("sum", "mean", "var", "std"):
            together = getattr(ra, f"segment_{op}")(values, offsets)
            expected = getattr(ra, f"segment_{op}")(quiet, offsets)
            assert torch.equal(together[1:], expected[1:]), op
            first = together[0].item()
            if op in ("sum", "mean"):
                assert first == 0.0, op
            elif dtype == torch.float32:  # the float64 truth, rounded once
                truth = getattr(values[:128].detach().double(), op)().float().item()
                assert first == pytest.approx(truth, rel=1e-6), op
            else:  # beyond float64 (the std too: it is the root of the variance)
                assert first == math.inf, op
        (grad,) = torch.autograd.grad(ra.segment_var(values, offsets).sum(), values)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scale", [1e-18, 1e-22, 1e-27, 1e-35])
def test_float32_std_of_tiny_values_is_the_rounded_float64_truth(engine, scale):
    """Deviations below ~1e-19 square to subnormals or 0 in float32: the std of values
    near 1e-27 was 0, near 1e-22 28 % off (torch.std keeps them: it accumulates in
    float64). A feature that is 0 throughout stays 0."""
    generator = torch.Generator().manual_seed(1)
    values = torch.rand(103, 2, generator=generator) * scale
    values[:, 1] = 0  # a dead feature
    truth = values.double().std(0)
    with _kernels.force_engine(engine):
        std = ra.segment_std(values, [0, 103])[0]
        var = ra.segment_var(values, [0, 103])[0]
    torch.testing.assert_close(std, truth.float(), rtol=2e-6, atol=0)
    assert var[1].item() == 0 and var[0].item() == truth[0].square().float().item()
