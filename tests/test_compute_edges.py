"""Reductions, map and ra.nn at their edges: each case was once answered wrongly.

The oracle is plain torch on each segment (or float64), as everywhere in the suite.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

import raggedarray as ra
from raggedarray import _kernels

# ------------------------------------------------------------------- reductions


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_median_of_half_segments_with_many_nans_is_nan(dtype):
    # the NaN count was summed in the half dtype, inexact past 256 (bfloat16) / 2048
    nans = 303 if dtype == torch.bfloat16 else 2051
    values = torch.cat([torch.tensor([1.0, 5.0]), torch.full((nans,), float("nan"))]).to(dtype)
    got = ra.segment_median(values, [0, values.shape[0]])
    assert torch.isnan(got).all() and torch.isnan(torch.median(values, 0).values)


@pytest.mark.parametrize("grad", [False, True])
def test_cumsum_under_autocast_keeps_its_precision(grad):
    values = (
        torch.randn(3000, 5, generator=torch.Generator().manual_seed(0)) * 100
    ).requires_grad_(grad)
    x = ra.RaggedArray.from_lengths(values, [100, 0, 2900])
    truth = torch.cat([s.double().cumsum(0) for s in x.detach().unbind()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = x.cumsum().values
    assert got.dtype == torch.float32
    assert float((got.detach().double() - truth).abs().max()) < 0.05  # bfloat16 matmuls gave 2.5-23


@pytest.mark.parametrize("n", [4, 300])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_cumsum_gradient_ignores_the_values(n, bad):
    # a running sum is linear: its gradient is the sum of the later upstream gradients, as
    # torch.cumsum's, whatever the values (infinities and NaNs included)
    values = torch.ones(n, 2, dtype=torch.float64)
    values[1, 0] = bad
    upstream = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    leaf = values.clone().requires_grad_()
    (ra.RaggedArray.from_lengths(leaf, [1, n - 1]).cumsum().values * upstream).sum().backward()
    want = torch.cat(
        [upstream[:1].flip(0).cumsum(0).flip(0), upstream[1:].flip(0).cumsum(0).flip(0)]
    )
    torch.testing.assert_close(leaf.grad, want)
    got = ra.RaggedArray.from_lengths(values, [1, n - 1]).cumsum().values
    loop = torch.cat([values[:1].cumsum(0), values[1:].cumsum(0)])
    torch.testing.assert_close(got, loop, equal_nan=True)


def test_var_with_a_fractional_correction_keeps_float32_digits():
    values = torch.tensor([3.0, 100.0, 300.0, 700.0, 400.0])
    got = ra.segment_var(values, [0, 1, 5], correction=3.999)
    want = values[1:].double().var(correction=3.999)
    assert abs(float(got[1]) - float(want)) / float(want) < 1e-6


# float32 segments whose squared deviations (or sums) overflow float32 where the float64
# truth (what torch.var accumulates in on a CPU) is finite, and one where it is not
HUGE_SEGMENTS = [
    [1e19, -1e19, 3e19],  # squares overflow: var 2.7e38 (correction 0) or inf, std 1.6e19
    [3e38, 3e38],  # the sum overflows: var 0
    [3e38, -3e38, 3e38],  # deviations overflow: var inf, std 2.8e38 (correction 0) or inf
    [3e38] * 64 + [-3e38] * 64,  # blocks of 64 items sum to inf and -inf: a NaN sum
    [2e19],  # short for correction >= 1: fill
    [1.0, 2.0, 4.0],
    [],
]


def huge_spread(dtype, op, correction, fill):
    """Values, offsets, the float64 truth of ``op`` in ``dtype`` and its gradient."""
    values = torch.tensor([v for s in HUGE_SEGMENTS for v in s], dtype=dtype)
    lengths = [len(s) for s in HUGE_SEGMENTS]
    offsets = [0, *itertools.accumulate(lengths)]
    leaf = values.double().requires_grad_()
    rows = [
        getattr(torch, op)(leaf[a:b], 0, correction=correction)
        if b - a > correction
        else torch.tensor(float(fill), dtype=torch.float64)
        for a, b in itertools.pairwise(offsets)
    ]
    truth = torch.stack(rows)
    upstream = torch.linspace(0.5, 2.0, len(rows), dtype=torch.float64)
    (grad,) = torch.autograd.grad((truth * upstream).sum(), leaf)
    return values, offsets, truth.detach().float().to(dtype), grad.float().to(dtype), upstream


@pytest.mark.parametrize("correction", [0, 1, 1.5, 2])
@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize(
    ("backend", "dtype"),
    [("torch", torch.float32), ("numpy", torch.float32), ("torch", torch.bfloat16)],
)
def test_var_and_std_of_huge_float32_values_are_the_float64_truth(backend, dtype, op, correction):
    # the squared deviations were summed in float32 and overflowed to inf
    values, offsets, truth, _, _ = huge_spread(dtype, op, correction, fill=-1.0)
    data = values.numpy() if backend == "numpy" else values
    fn = getattr(ra, f"segment_{op}")
    for engine in _kernels.ENGINES:
        with _kernels.force_engine(engine):
            got = torch.as_tensor(fn(data, offsets, correction=correction, fill=-1.0))
        assert got.dtype == dtype
        rtol = 1e-6 if dtype == torch.float32 else 1e-2
        torch.testing.assert_close(got, truth, rtol=rtol, atol=0, msg=engine)


@pytest.mark.parametrize("engine", list(_kernels.ENGINES))
def test_std_of_finite_blocks_that_sum_to_nan_is_the_float64_truth(engine):
    # blocks of 64 items sum to inf and -inf: the mean, and so the variance, is NaN (not
    # inf) for finite values, as it is for the segment that holds a NaN
    values = torch.tensor([3e38] * 64 + [-3e38] * 64 + [1.0] * 99 + [float("nan")])
    offsets = [0, 128, 228]
    with _kernels.force_engine(engine):
        got = ra.segment_std(values, offsets, correction=0)
    want = torch.stack([values[a:b].double().std(correction=0) for a, b in ((0, 128), (128, 228))])
    torch.testing.assert_close(got, want.float(), equal_nan=True)
    assert got[0] == torch.tensor(3e38)


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("op", ["var", "std"])
def test_var_and_std_gradients_of_huge_float32_values(op, correction):
    values, _, _, want, upstream = huge_spread(torch.float32, op, correction, fill=0.0)
    leaf = values.clone().requires_grad_()
    out = getattr(ra.RaggedArray.from_lengths(leaf, [len(s) for s in HUGE_SEGMENTS]), op)(
        correction=correction
    )
    (got,) = torch.autograd.grad((out * upstream.float()).sum(), leaf)
    assert not got.isnan().any()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_negative_zero_fill_is_kept(op, backend):
    values = np.array([3.0, 1.0])
    x = ra.RaggedArray.from_lengths(
        values if backend == "numpy" else torch.from_numpy(values), [2, 0]
    )
    got = np.asarray(getattr(x, op)(fill=-0.0))
    assert got[1] == 0 and np.signbit(got[1])


@pytest.mark.parametrize(
    ("dtype", "op", "fill"),
    [
        (np.uint64, "max", np.uint64(7)),
        (np.uint64, "min", np.uint64(7)),
        (np.int32, "max", np.float32(7.0)),
        (np.int32, "median", np.float32(7.0)),
        (np.bool_, "max", np.bool_(True)),
        (np.float32, "argmax", np.int64(-3)),
        (np.float32, "median", np.float16(7.0)),
    ],
)
def test_numpy_scalar_fills(dtype, op, fill):
    values = np.array([1, 0, 1], dtype=dtype)
    x = ra.RaggedArray.from_lengths(values, [2, 0, 1])
    got = getattr(x, op)(fill=fill)
    first = np.sort(values[:2])
    want = {"max": first[-1], "min": first[0], "median": first[0], "argmax": 0}[op]
    assert got[1] == fill and got[0] == want


def test_correction_beyond_int64_is_refused_on_every_numpy():
    with pytest.raises(ValueError, match="correction must be in"):
        ra.segment_var(np.arange(4.0), [0, 2, 4], correction=np.uint64(2**63))


@pytest.mark.parametrize(("method", "flag"), [("sort", "descending"), ("topk", "largest")])
@pytest.mark.parametrize("value", ["False", None, 1, np.array([1, 0])])
def test_order_flags_must_be_bools(method, flag, value):
    x = ra.RaggedArray.from_lengths(np.arange(5.0), [2, 3])
    args = (2,) if method == "topk" else ()
    with pytest.raises(TypeError, match=f"{flag} must be a bool"):
        getattr(x, method)(*args, **{flag: value})
    getattr(x, method)(*args, **{flag: np.bool_(True)})


def test_arrays_used_under_inference_mode_still_train():
    # the partition's cached tensors were made inference tensors, which autograd then
    # refused ("cannot be saved for backward", "do not track version counter")
    v = torch.randn(10, 3, requires_grad=True)
    x = ra.RaggedArray.from_lengths(v, [4, 0, 6])
    with torch.inference_mode():
        for op in ("mean", "prod", "logsumexp", "var", "std", "median"):
            getattr(x, op)()
        x.cumsum()
        lengths = x.lengths.tolist()
    for op in ("mean", "prod", "logsumexp", "var", "std"):
        getattr(x, op)().sum().backward()
    x.cumsum().values.sum().backward()
    assert lengths == [4, 0, 6] and x.lengths.tolist() == [4, 0, 6] and v.grad is not None
    values = torch.randn(4, 2)
    with torch.inference_mode():  # the array (not its values) made under inference_mode
        y = ra.RaggedArray.from_lengths(values, [1, 3])
    w = torch.ones(2, requires_grad=True)
    (y * w).mean().sum().backward()  # made under inference_mode, used outside it


@pytest.mark.parametrize("engine", list(_kernels.ENGINES))
def test_every_engine_matches_the_loop_on_long_segments_with_specials(engine):
    rng = np.random.default_rng(3)
    values = torch.from_numpy(rng.standard_normal((5000, 3)))
    values[7, 1], values[4000, 2], values[4500, 0] = float("nan"), float("inf"), -float("inf")
    lengths = [0, 4096, 1, 0, 903]
    x = ra.RaggedArray.from_lengths(values, lengths)
    with _kernels.force_engine(engine):
        got = {op: getattr(x, op)() for op in ("sum", "max", "min", "mean")}
    for i, s in enumerate(x.unbind()):
        if len(s) == 0:
            continue
        want = {"sum": s.sum(0), "max": s.amax(0), "min": s.amin(0), "mean": s.mean(0)}
        for op, w in want.items():
            torch.testing.assert_close(got[op][i], w, equal_nan=True)


# ------------------------------------------------------------ products' gradients

HALVES = (torch.float16, torch.bfloat16)
# a value whose square overflows the dtype the products are taken in (halves: float32)
BIG = {torch.float32: 1e30, torch.float64: 1e200, torch.float16: 300.0, torch.bfloat16: 1e30}
INF, NAN = float("inf"), float("nan")


@pytest.fixture(params=["scatter", "halving"])
def product_path(request, monkeypatch):
    """``scatter_reduce`` products, or pairwise halving (deterministic algorithms off CPU)."""
    if request.param == "halving":
        monkeypatch.setattr(_kernels, "deterministic_off_cpu", lambda device: True)
    return request.param


def prod_loop(values, offsets, upstream, *, fill):
    """Products and the gradient of ``sum(products * upstream)`` by torch.prod per segment."""
    leaf = values.detach().clone().requires_grad_()
    rows = []
    for a, b in itertools.pairwise(offsets):
        if a == b:
            rows.append(torch.full(leaf.shape[1:], fill, dtype=leaf.dtype))
            continue
        work = leaf[a:b].float() if leaf.dtype in HALVES else leaf[a:b]
        rows.append(torch.prod(work, dim=0).to(leaf.dtype))
    out = torch.stack(rows)
    (grad,) = torch.autograd.grad((out * upstream).sum(), leaf)
    return out.detach(), grad


def prod_segments(big):
    """Segments of 2-feature items: zeros beside products that overflow, NaN, infinities."""
    return [
        [[big, 2.0], [big, 3.0], [0.0, 4.0]],  # one zero after an overflowing product
        [[0.0, 1.0], [big, 1.0], [big, 1.0]],  # one zero before it
        [[big, 1.0], [0.0, 1.0], [big, 1.0]],  # one zero between
        [[big, 1.0], [big, 1.0], [0.0, 1.0], [5.0, 1.0]],  # running product inf * 0: NaN
        [],
        [[0.0, 2.0], [big, 2.0], [0.0, 2.0], [big, 2.0]],  # two zeros
        [[INF, 0.0], [2.0, 1.0]],  # a zero in the other feature: no division at all
        [[INF, 3.0], [2.0, 1.0]],  # no zero: result / item, inf / inf is NaN
        [[NAN, 1.0], [0.0, 1.0], [2.0, 1.0]],
        [[INF, 1.0], [0.0, 1.0], [2.0, 1.0]],
        [[-0.0, 1.0], [big, -1.0]],
        [[3.0, 0.5]],
        [],
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, *HALVES])
def test_prod_gradient_with_zeros_and_overflow_matches_torch_prod(product_path, dtype):
    # scatter_reduce's backward divided the product (inf * 0: NaN) by each item, so every
    # item of a segment like [big, big, 0] got NaN where torch.prod gives [0, 0, inf]
    segments = prod_segments(BIG[dtype])
    lengths = [len(s) for s in segments]
    values = torch.tensor([row for s in segments for row in s], dtype=torch.float64).to(dtype)
    offsets = [0, *itertools.accumulate(lengths)]
    upstream = torch.linspace(-2.0, 3.0, 2 * len(lengths)).reshape(-1, 2).to(dtype)
    want_out, want = prod_loop(values, offsets, upstream, fill=-1.5)
    leaf = values.clone().requires_grad_()
    out = ra.segment_prod(leaf, offsets, fill=-1.5)
    (got,) = torch.autograd.grad((out * upstream).sum(), leaf)
    if product_path == "scatter":  # halving multiplies in another order: its NaN differ
        torch.testing.assert_close(out, want_out, equal_nan=True)
    torch.testing.assert_close(got, want, equal_nan=True)
    assert got.dtype == dtype and not got[:9].isnan().any()


def test_prod_gradient_of_the_reported_segment():
    leaf = torch.tensor([1e30, 1e30, 0.0], requires_grad=True)
    ra.segment_prod(leaf, [0, 3]).sum().backward()
    assert leaf.grad.tolist() == [0.0, 0.0, INF]


@pytest.mark.parametrize("item_shape", [(), (2, 1, 2)])
def test_prod_gradient_of_multi_dim_items_with_zeros(product_path, item_shape):
    rng = np.random.default_rng(4)
    values = torch.from_numpy(rng.uniform(0.5, 2.0, (11, *item_shape)))
    values[1] = 0.0  # every feature of one item
    values.view(11, -1)[6, 0] = 0.0  # one feature of another: the segment takes no division
    values.view(11, -1)[7, -1] = 1e200
    values.view(11, -1)[8, -1] = 1e200
    offsets = [0, 3, 3, 9, 11]
    upstream = torch.from_numpy(rng.standard_normal((4, *item_shape)))
    _, want = prod_loop(values, offsets, upstream, fill=2.0)
    leaf = values.clone().requires_grad_()
    out = ra.RaggedArray.from_lengths(leaf, [3, 0, 6, 2]).prod(fill=2.0)
    (got,) = torch.autograd.grad((out * upstream).sum(), leaf)
    # scalars: inf * 0 in the running product after the zero item makes NaN, as in torch
    torch.testing.assert_close(got, want, equal_nan=True)
    assert got.isnan().any() == (item_shape == ())


def test_prod_with_zeros_passes_gradcheck_and_gradgradcheck(product_path):
    values = torch.tensor(
        [[0.5, 2.0], [0.0, 1.5], [3.0, 0.0], [0.0, 0.0], [0.0, -1.0], [1.5, 0.7]],
        dtype=torch.float64,
        requires_grad=True,
    )
    offsets = [0, 3, 3, 5, 6]
    fn = lambda v: ra.segment_prod(v, offsets, fill=1.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (values,))
    assert torch.autograd.gradgradcheck(fn, (values,))


# -------------------------------------------------------------------------- map


def test_map_hands_read_only_buffers_over_as_copies():
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    values.flags.writeable = False
    x = ra.RaggedArray.from_lengths(values, [2, 4])
    y = x.map(torch.nn.Hardtanh(-1.0, 1.0, inplace=True))
    assert values.tolist() == np.arange(12, dtype=np.float32).reshape(6, 2).tolist()
    assert float(y.values.max()) == 1.0


def test_map_progress_must_be_a_bool():
    x = ra.RaggedArray.from_lengths(torch.zeros(3, 2), [1, 2])
    with pytest.raises(TypeError, match="progress must be a bool"):
        x.map(torch.nn.Identity(), progress="yes")


# ------------------------------------------------------------------------- ra.nn


def test_attention_pool_copies_score_with_their_own_layers():
    # nn.DataParallel's replicas copy __dict__: a kept bound method scored with the original
    pool = ra.nn.AttentionPool(3, 4)
    x = ra.RaggedArray.from_lengths(torch.randn(6, 3), [2, 4])
    pool(x)  # the scorer is kept
    replica = pool._replicate_for_data_parallel()
    for name in ("attention", "gate", "score"):
        layer = copy.deepcopy(getattr(pool, name))
        with torch.no_grad():
            for p in layer.parameters():
                p.mul_(-3.0)
        replica._modules[name] = layer
    fresh = copy.deepcopy(pool)
    fresh.load_state_dict({k: v for k, v in replica.state_dict().items()})
    torch.testing.assert_close(replica(x), fresh(x))
    assert not torch.allclose(replica(x), pool(x))


def test_attention_pool_names_a_dtype_mismatch():
    x = ra.RaggedArray.from_lengths(torch.randn(6, 3, dtype=torch.float64), [2, 4])
    with pytest.raises(TypeError, match=r"dtype of the pool's weights \(float32\); got float64"):
        ra.nn.AttentionPool(3, 4)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for the layers
        ra.nn.AttentionPool(3, 4)(x.float())


class _Pool(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, h):
        return self.fn(h)


@pytest.mark.parametrize(
    ("fn", "kind", "text"),
    [
        (lambda h: h, TypeError, "pool must return a tensor"),
        (lambda h: h.sum()[:, 0], ValueError, r"got shape \(3,\)"),
        (lambda h: h.sum().detach().numpy(), TypeError, "pool must return a tensor"),
        (lambda h: h.sum()[:2], ValueError, "one row per segment"),
    ],
)
def test_deepset_checks_what_the_pool_returns(fn, kind, text):
    x = ra.RaggedArray.from_lengths(torch.randn(8, 3), [3, 0, 5])
    model = ra.nn.DeepSet(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1), pool=_Pool(fn))
    with pytest.raises(kind, match=text):
        model(x)


def test_deepset_covariates_must_be_real_and_beside_the_features():
    x = ra.RaggedArray.from_lengths(torch.randn(8, 3), [3, 0, 5])
    model = ra.nn.DeepSet(torch.nn.Linear(3, 4), torch.nn.Linear(6, 1))
    with pytest.raises(ValueError, match="on the device of the pooled features"):
        model(x, torch.zeros(3, 2, device="meta"))
    with pytest.raises(TypeError, match="real numbers"):
        model(x, torch.zeros(3, 2, dtype=torch.complex64))
    assert model(x, np.zeros((3, 2), np.float32)).shape == (3, 1)


@pytest.mark.parametrize("engine", list(_kernels.ENGINES))
@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_variance_sends_no_nan_back_from_a_filled_segment(engine, op, bad):
    values = torch.tensor([[bad, 1.0], [1.0, 2.0], [4.0, 2.0], [bad, bad]], requires_grad=True)
    x = ra.RaggedArray.from_lengths(values, [1, 2, 1, 0])  # n_i <= correction: filled
    with _kernels.force_engine(engine):
        out = getattr(x, op)(fill=-1.0)
    out.sum().backward()
    ref = values.detach()[1:3].clone().requires_grad_(True)
    getattr(ref, op)(0).sum().backward()
    assert out[[0, 2, 3]].eq(-1).all()
    torch.testing.assert_close(values.grad[1:3], ref.grad)
    assert values.grad[[0, 3]].eq(0).all()
