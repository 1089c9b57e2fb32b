"""argmax, argmin, median, any, all, cumsum, sort and topk against per-segment loops.

Every vectorised result is compared with ``ra.testing``'s reference loops (torch's own
``argmax``/``median``/``sort``/... per segment for floating tensors, numpy's otherwise), on
numpy and torch (CUDA cases skip without a GPU), over every dtype the constructors accept,
empty segments, zero segments, zero items, multi-dimensional and zero-size items, ties and
NaN. Gradients are compared with those of the torch loop. Every test runs twice: with the
compiled one-pass kernels of ``_jit`` (where numba is installed) and with the torch paths.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from conftest import LAYOUTS, LENGTH_CASES, LENGTHS, PLACES, TORCH_PLACES, host, on
from hypothesis import given, settings
from hypothesis import strategies as st

import raggedarray as ra
from raggedarray import _jit, _order, testing

REDUCING = ["argmax", "argmin", "median", "any", "all"]
ALL_DTYPES = [
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
]
FUNCTIONS = {op: getattr(ra, f"segment_{op}") for op in REDUCING}


@pytest.fixture(autouse=True, params=["numba", "torch"])
def kernels(request, monkeypatch):
    """Which CPU kernels cumsum and argmax/argmin run: numba's one pass, or torch's paths."""
    if request.param == "numba" and not _jit.available():
        pytest.skip("the compiled kernels need numba: pip install 'raggedarray[numba]'")
    monkeypatch.setattr(_jit, "ENABLED", request.param == "numba")
    monkeypatch.setattr(_jit, "MIN_VALUES", 0)  # the small cases here take them too
    return request.param


def make_values(rng, num_items, item_shape, dtype, place, *, nan=False):
    """Small integers (many ties) in ``dtype`` on ``place``; NaNs sprinkled in if asked."""
    a = rng.integers(-3, 4, size=(num_items, *item_shape)).astype(np.float64)
    if dtype == "bool":
        return on(a > 0, place)
    if dtype.startswith("uint"):
        a = a + 3
    if nan and (dtype.startswith("float") or dtype == "bfloat16"):
        a[rng.random(a.shape) < 0.15] = np.nan
    if dtype == "bfloat16":
        return on(a.astype(np.float32), place).to(torch.bfloat16)
    values = a.astype(dtype)
    if dtype == "uint64":  # values past 2**63 check the order-keeping view
        values = values + np.uint64(2**63 - 2)
    return on(values, place)


def ragged(values, lengths):
    return ra.RaggedArray.from_lengths(values, lengths)


def assert_same(got, want):
    got, want = host(got), host(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


def skip_unplaceable(place, dtype):
    if dtype == "bfloat16" and place[0] == "numpy":
        pytest.skip("numpy has no bfloat16")


def check_all_ops(x, values, offsets):
    """Every op of ``x`` (and the functional twins) against the reference loops."""
    for op in REDUCING:
        want = testing.reference_segment_op(op, values, offsets)
        assert_same(getattr(x, op)(), want)
        assert_same(FUNCTIONS[op](values, offsets), want)
    if host(values).dtype == np.uint64:  # past 2**63: int64 cannot hold the running sums
        with pytest.raises(ValueError, match="uint64 values must be below 2\\*\\*63"):
            x.cumsum()
    else:
        assert_same(x.cumsum().values, testing.reference_cumsum(values, offsets))
        assert_same(ra.segment_cumsum(values, offsets), testing.reference_cumsum(values, offsets))
    for descending in (False, True):
        want_v, want_i, _ = testing.reference_sort(values, offsets, descending=descending)
        got_v, got_i = x.sort(descending=descending)
        assert_same(got_v.values, want_v)
        assert_same(got_i.values, want_i)
        np.testing.assert_array_equal(got_v.host_offsets, x.host_offsets)
    for k in (0, 1, 3, 9):  # 9: past the rounds of a segment argmax, the sort
        for largest in (True, False):
            want_v, want_i, want_o = testing.reference_sort(
                values, offsets, descending=largest, k=k
            )
            got_v, got_i = x.topk(k, largest=largest)
            np.testing.assert_array_equal(got_v.host_offsets, want_o)
            np.testing.assert_array_equal(got_i.host_offsets, want_o)
            assert_same(got_v.values, want_v)
            assert_same(got_i.values, want_i)


@pytest.fixture(params=[8, 2, 1], ids=["median-sorted", "median-rest-copied", "median-grouped"])
def median_groups(request, monkeypatch):
    """How many segments of one length take the dense median: the default (none in these
    small cases: the sort), 2 (here every segment is "rest": the sort on a copy of their
    rows) and 1 (every segment in a dense block of its length)."""
    monkeypatch.setattr(_order, "_GROUP_MIN", request.param)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("item_shape", [(), (2, 3)], ids=["scalars", "items2x3"])
def test_every_dtype_against_the_loop(place, dtype, item_shape, median_groups):
    skip_unplaceable(place, dtype)
    rng = np.random.default_rng(0)
    values = make_values(rng, sum(LENGTHS), item_shape, dtype, place, nan=True)
    x = ragged(values, LENGTHS)
    check_all_ops(x, values, x.host_offsets)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_and_lengths_against_the_loop(place, lengths, layout):
    cls, item_shape = layout
    values = make_values(np.random.default_rng(1), sum(lengths), item_shape, "float32", place)
    x = cls.from_lengths(values, lengths)
    check_all_ops(x, values, x.host_offsets)
    assert type(x.cumsum()) is cls
    assert type(x.sort()[0]) is cls


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("item_shape", [(0,), (2, 0)])
def test_zero_size_items(place, item_shape):
    values = on(np.zeros((sum(LENGTHS), *item_shape), dtype=np.float32), place)
    x = ragged(values, LENGTHS)
    m = len(LENGTHS)
    for op in REDUCING:
        assert tuple(getattr(x, op)().shape) == (m, *item_shape)
    assert tuple(x.cumsum().values.shape) == tuple(values.shape)
    assert tuple(x.sort()[1].values.shape) == tuple(values.shape)
    assert tuple(x.topk(2)[0].values.shape) == (sum(min(n, 2) for n in LENGTHS), *item_shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(
    "shape", [(0,), (0, 2), (3, 2, 0)], ids=["no-items", "no-items-2", "0-size"]
)
def test_results_without_values_that_need_grad_keep_their_kind(dtype, shape):
    """Positions came back in the values' float dtype (bfloat16 read fill=257 as 256), and a
    median fill of -0.0 as +0.0, when the values needed grad and held none."""
    values = torch.zeros(shape, dtype=dtype, requires_grad=True)
    lengths = [0, 0] if shape[0] == 0 else [1, 2]
    x = ra.RaggedArray.from_lengths(values, lengths)
    want = (len(lengths), *shape[1:])
    for op in ("argmax", "argmin"):
        for got in (
            getattr(x, op)(fill=257),
            getattr(ra, f"segment_{op}")(values, x.offsets, fill=257),
        ):
            assert got.dtype == torch.int64 and not got.requires_grad and got.shape == want
            assert (got == 257).all()  # (every segment is empty, or its items have no size)
    median = x.median(fill=-0.0)
    assert median.dtype == dtype and median.requires_grad and median.shape == want
    assert torch.signbit(median).all()


def test_empty_segment_results():
    x = ragged(np.array([1.0, 0.0]), [0, 2, 0])
    np.testing.assert_array_equal(x.any(), [False, True, False])
    np.testing.assert_array_equal(x.all(), [True, False, True])
    np.testing.assert_array_equal(x.argmax(fill=-7), [-7, 0, -7])
    np.testing.assert_array_equal(x.median(fill=np.inf), [np.inf, 0.0, np.inf])


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 7), max_size=8),
    item_shape=st.sampled_from([(), (2,), (1, 3, 2)]),
    seed=st.integers(0, 2**32 - 1),
    nan=st.booleans(),
    backend=st.sampled_from(["numpy", "torch"]),
)
def test_hypothesis_ties_and_nan(lengths, item_shape, seed, nan, backend):
    rng = np.random.default_rng(seed)
    values = make_values(rng, sum(lengths), item_shape, "float64", (backend, "cpu"), nan=nan)
    x = ragged(values, lengths)
    check_all_ops(x, values, x.host_offsets)


# ------------------------------------------------------------------------- gradients


def distinct(rng, lengths, item_shape=(2,)):
    """float64 values without ties (so every gradient is unambiguous)."""
    n = sum(lengths)
    return torch.from_numpy(rng.permutation(n * 2).reshape(n, *item_shape) / 7.0)


def grads_of(fn, values, weights):
    v = values.clone().requires_grad_()
    (fn(v) * weights).sum().backward()
    return v.grad


@pytest.mark.parametrize(
    "lengths", [LENGTHS, [0, 5], [1, 1]], ids=["mixed", "leading-empty", "ones"]
)
def test_gradients_against_the_loop(lengths, median_groups):
    rng = np.random.default_rng(2)
    values = distinct(rng, lengths)
    offsets = ra.RaggedArray.from_lengths(values, lengths).host_offsets
    m, n = len(lengths), values.shape[0]

    def ours(op, **kw):
        return lambda v: getattr(ragged(v, lengths), op)(**kw)

    cases = [
        (lambda v: ours("cumsum")(v).values, lambda v: testing.reference_cumsum(v, offsets), n),
        (lambda v: ours("median")(v),
         lambda v: testing.reference_segment_op("median", v, offsets), m),
        (lambda v: ours("sort", descending=True)(v)[0].values,
         lambda v: testing.reference_sort(v, offsets, descending=True)[0], n),
        (lambda v: ours("topk", k=2)(v)[0].values,
         lambda v: testing.reference_sort(v, offsets, descending=True, k=2)[0],
         sum(min(k, 2) for k in lengths)),
    ]  # fmt: skip
    for fn, reference, rows in cases:
        weights = torch.from_numpy(rng.standard_normal((rows, 2)))
        torch.testing.assert_close(
            grads_of(fn, values, weights), grads_of(reference, values, weights)
        )


def test_gradcheck(median_groups):
    lengths = [3, 0, 4]
    values = distinct(np.random.default_rng(3), lengths).requires_grad_()
    for fn in (
        lambda v: ragged(v, lengths).cumsum().values,
        lambda v: ragged(v, lengths).median(),
        lambda v: ragged(v, lengths).sort()[0].values,
        lambda v: ragged(v, lengths).topk(2, largest=False)[0].values,
        lambda v: ra.segment_cumsum(v, [0, 3, 3, 7]),
    ):
        assert torch.autograd.gradcheck(fn, (values,))


def test_median_nan_gradient_goes_to_the_first_nan(median_groups):
    values = torch.tensor([1.0, float("nan"), 3.0, float("nan"), 2.0], requires_grad=True)
    ragged(values, [4, 1]).median().sum().backward()
    assert values.grad.tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]


def _no_dense_median(*args):
    raise AssertionError("torch.median has no deterministic GPU kernel: sort instead")


@pytest.mark.parametrize("deterministic", [False, True], ids=["default", "deterministic-gpu"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int16", "uint32", "bool"])
def test_median_of_grouped_and_other_lengths(monkeypatch, dtype, deterministic):
    """Lengths shared by enough segments (dense blocks) beside lengths that are not (the
    sort on a copy of their rows), with ties, NaN and empty segments. Under deterministic
    algorithms on a GPU (simulated) every segment is sorted, never ``torch.median``-ed."""
    monkeypatch.setattr(_order, "_GROUP_MIN", 3)
    if deterministic:
        monkeypatch.setattr(_order, "deterministic_off_cpu", lambda device: True)
        monkeypatch.setattr(_order, "length_groups", _no_dense_median)
    rng = np.random.default_rng(9)
    lengths = [3, 0, 3, 2, 5, 3, 2, 2, 0, 1, 4, 3]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = make_values(rng, int(offsets[-1]), (2,), dtype, ("torch", "cpu"), nan=True)
    want = testing.reference_segment_op("median", values, offsets, fill=0)
    assert_same(ragged(values, lengths).median(), want)
    if dtype == "float32":
        values = distinct(rng, lengths).requires_grad_()
        assert torch.autograd.gradcheck(lambda v: ragged(v, lengths).median(), (values,))


# -------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cumsum_of_a_long_float32_segment_is_accurate(backend):
    n = 1_000_000
    values = on(np.full((n + 3, 2), 0.1, dtype=np.float32), (backend, "cpu"))
    got = host(ragged(values, [3, n]).cumsum().values)[3:].astype(np.float64)
    truth = np.cumsum(np.full(n, np.float64(np.float32(0.1))))
    rel = np.abs(got[:, 0] - truth) / truth
    # at most _SCAN float32 additions inside a block plus two roundings (carry, result), at
    # every position of the 10^6; a float32 torch.cumsum of the segment drifts to ~1e-3
    assert rel.max() < (_order._SCAN + 1) * 2.0**-24


@pytest.mark.parametrize("place", TORCH_PLACES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("big", [1e3, 1e9, 1e12, 1e30])
def test_cumsum_of_a_segment_does_not_depend_on_its_neighbours(place, dtype, big):
    """Small segments beside long ones of huge values, forward and backward: a running sum
    over every block, minus its value where a segment began, lost the small one's digits
    (1e-3 after 1000 items of 1e12 in float32 came back 2x off; in float64 after 1e20,
    16 came back as 8). Each segment must be as accurate as its own cumsum."""
    if dtype == "float32" and big > 1e30 / 1000:
        big = 1e30 / 4000  # (the big segment's own sums stay finite in float32)
    lengths = [1000, 40, 3, 37, 700, 17]
    big_rows = np.repeat([True, False, True, False, True, False], lengths)
    rng = np.random.default_rng(3)
    values = np.where(big_rows[:, None], big, 1.0) * rng.uniform(0.5, 1.5, (sum(lengths), 2))
    values = on(values.astype(dtype), place).requires_grad_()  # (a GPU: the torch path)
    weights = torch.from_numpy(np.where(big_rows[:, None], big, 1.0)).to(values)
    x = ragged(values, lengths)
    got = ra.RaggedArray.from_lengths(host(x.cumsum().values), lengths)
    (x.cumsum().values * weights).sum().backward()
    grad, eps = host(values.grad), np.finfo(dtype).eps
    values, weights = host(values), host(weights)
    exact = np.longdouble  # the truth, in more digits than float64 (as sums of one segment)
    for i, (a, b) in enumerate(pairwise(x.host_offsets.tolist())):
        one, w = values[a:b].astype(exact), weights[a:b].astype(exact)
        want, want_grad = np.cumsum(one, 0), np.cumsum(w[::-1], 0)[::-1]
        # the bound of a sequential sum of the segment alone (numba's float64 one is)
        steps = (max(b - a, _order._SCAN) + 2) * eps
        error = np.abs(got[i].astype(exact) - want)
        assert (error <= steps * np.cumsum(np.abs(one), 0)).all(), i
        error = np.abs(grad[a:b].astype(exact) - want_grad)
        assert (error <= steps * np.abs(want_grad)).all(), i


@pytest.mark.parametrize("place", TORCH_PLACES)
@pytest.mark.parametrize(
    ("lengths", "big"), [([16] + [5] * 10, 3e37), ([33, 20], 2e37), ([5, 40, 30, 7], 1e37)]
)
def test_cumsum_of_a_location_past_float32s_range_leaves_the_others_alone(place, lengths, big):
    """The first location's running sum passes float32's largest value: it turns inf, as
    torch.cumsum's does, and the others stay exact (the carry's inf times the masks' zeros
    gave them NaN; with N not a multiple of 16 the check did not see it)."""
    values = np.ones(sum(lengths), dtype=np.float32)
    values[: lengths[0]] = big
    got = ragged(on(values, place), lengths).cumsum()
    for i, (a, b) in enumerate(pairwise(np.cumsum([0, *lengths]).tolist())):
        want = torch.from_numpy(values[a:b]).cumsum(0)
        torch.testing.assert_close(torch.from_numpy(host(got[i])), want)


def test_cumsum_of_finite_float32_sums_that_overflow_is_torchs():
    # 3e38 + 3e38 overflows float32 inside a block; torch.cumsum accumulates in float64
    values = torch.tensor([[3e38], [3e38], [-3e38], [1.0]])
    torch.testing.assert_close(ragged(values, [4]).cumsum().values, values.cumsum(0))


# ---------------------------------------------------------------------------- errors


def test_topk_errors():
    x = ragged(np.arange(3.0), [3])
    with pytest.raises(ValueError, match=r"RaggedArray\.topk: k must be >= 0; got -1"):
        x.topk(-1)
    with pytest.raises(TypeError, match=r"RaggedArray\.topk: k must be an int; got float"):
        x.topk(1.5)


@pytest.mark.parametrize("k", [4, 2**63, 10**30, np.uint64(2**64 - 1)])
def test_topk_of_more_than_every_item_keeps_every_item(k):
    values = torch.tensor([[3.0], [1.0], [2.0], [5.0]])
    got_v, got_i = ragged(values, [3, 0, 1]).topk(k)
    assert got_v.values.flatten().tolist() == [3.0, 2.0, 1.0, 5.0]
    assert got_i.values.flatten().tolist() == [0, 2, 1, 0]


def test_fill_must_fit_the_result():
    x = ragged(np.arange(3), [3, 0])
    with pytest.raises(ValueError, match=r"RaggedArray\.median: fill must be representable"):
        x.median(fill=0.5)
    with pytest.raises(TypeError, match="segment_argmax: fill must be a number"):
        ra.segment_argmax(np.arange(3), [0, 3], fill="x")


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_functional_with_device_offsets(place):
    values = make_values(np.random.default_rng(4), 7, (2,), "float32", place, nan=True)
    offsets = on(np.array([0, 3, 3, 7]), place)
    for op in REDUCING:
        want = testing.reference_segment_op(op, values, [0, 3, 3, 7])
        assert_same(FUNCTIONS[op](values, offsets), want)
    assert_same(ra.segment_cumsum(values, offsets), testing.reference_cumsum(values, [0, 3, 3, 7]))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(
    "lengths",
    [
        [70, 0, 1, 130, 63, 64, 65, 3],  # straddling the 64-row blocks of the integer scan
        [15, 16, 17, 1, 0, 33, 48, 2, 31],  # and the _SCAN-row blocks of the floating one
        [5, 0, 4],  # one short block
        [16],  # exactly one block
        [0, 32, 0],  # a segment spanning whole blocks
        [1] * 40,  # a segment in every row
        [3, 200, 1],  # a run of many blocks inside one segment
    ],
)
def test_cumsum_across_scan_blocks(backend, lengths):
    """Segments longer than, inside and straddling the scan blocks, with a ragged tail."""
    rng = np.random.default_rng(5)
    values = on(rng.standard_normal((sum(lengths), 2)), (backend, "cpu"))
    x = ragged(values, lengths)
    assert_same(x.cumsum().values, testing.reference_cumsum(values, x.host_offsets))
    for bad in (np.nan, np.inf, -np.inf):  # non-finite items stay inside their segment
        hostile = host(values).copy()
        hostile[rng.random(hostile.shape) < 0.05] = bad
        hostile[-1, 0] = bad
        hostile = on(hostile, (backend, "cpu"))
        want = testing.reference_cumsum(hostile, x.host_offsets)
        assert_same(ragged(hostile, lengths).cumsum().values, want)
    if backend == "torch":
        weights = torch.from_numpy(rng.standard_normal(tuple(values.shape)))
        torch.testing.assert_close(
            grads_of(lambda v: ragged(v, lengths).cumsum().values, values, weights),
            grads_of(lambda v: testing.reference_cumsum(v, x.host_offsets), values, weights),
        )


@pytest.mark.parametrize("nan", [False, True])
def test_ops_with_numpy_buffers(monkeypatch, nan):
    """The paths that write into a large numpy-made buffer (forced here for small inputs)."""
    from raggedarray import _backend

    monkeypatch.setattr(_backend, "LARGE_BUFFER_BYTES", 0)
    rng = np.random.default_rng(5)
    for dtype in ("float32", "float64"):
        values = make_values(rng, 40, (3,), dtype, ("torch", "cpu"), nan=nan)
        values[7] = 0
        lengths = [0, 5, 1, 0, 20, 14, 0]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for op in REDUCING:
            want = testing.reference_segment_op(op, values, offsets)
            assert_same(getattr(ragged(values, lengths), op)(), want)


@pytest.mark.parametrize("chunk_bytes", [1, 24, 100])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bool", "int16", "uint8"])
def test_masks_over_many_row_ranges(monkeypatch, chunk_bytes, dtype):
    """argmax/argmin/any/all over row ranges of a few items: ranges of one segment, of
    several, of empty segments only, and segments longer than a range."""
    from raggedarray import _chunked

    monkeypatch.setattr(_chunked, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(11)
    lengths = [0, 5, 1, 0, 0, 20, 3, 14, 0, 2]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = make_values(rng, int(offsets[-1]), (3,), dtype, ("torch", "cpu"))
    values[7] = 0
    x = ragged(values, lengths)
    for op in ("argmax", "argmin", "any", "all"):
        assert_same(getattr(x, op)(), testing.reference_segment_op(op, values, offsets))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_cumsum_keeps_one_non_finite_item_in_its_segment(bad):
    """One infinity or NaN inside a scan block whose other rows belong to other segments."""
    lengths = [3, 13, 20]
    values = torch.ones(36, 2)
    values[1, 0] = bad
    want = testing.reference_cumsum(values, np.concatenate([[0], np.cumsum(lengths)]))
    got = ragged(values, lengths).cumsum().values
    assert_same(got, want)
    assert bool(torch.isfinite(got[3:]).all())


@pytest.mark.parametrize("dtype", ["float32", "float64", "bool", "int32"])
def test_ops_on_a_partition_without_host_offsets(dtype):
    """The device-side paths (offsets known only as a tensor, as on a GPU or in a compiled
    graph), run on the CPU against the loops."""
    from raggedarray import segment_ops
    from raggedarray._partition import Partition

    rng = np.random.default_rng(8)
    lengths = [0, 5, 1, 0, 20, 14, 0, 3]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for nan in (False, True):
        values = make_values(rng, int(offsets[-1]), (3,), dtype, ("torch", "cpu"), nan=nan)
        values[7] = 0
        part = Partition(None, offsets=torch.from_numpy(offsets), num_items=int(offsets[-1]))
        for op in REDUCING:
            fill = 0 if op == "median" else -1
            want = testing.reference_segment_op(
                op, values, offsets, **({} if op in ("any", "all") else {"fill": fill})
            )
            got = segment_ops.segment_op(
                op, values, part, fill=None if op in ("any", "all") else fill, where="t"
            )
            assert_same(got, want)
        if dtype.startswith("float"):
            got = segment_ops.cumsum(values, part, where="t")
            assert_same(got, testing.reference_cumsum(values, offsets))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_sort_ties_signed_zeros_and_nans_as_torch(dtype):
    """-0.0 equals 0.0 (ties keep their order), every NaN is equal and largest, infinities
    sort at the ends: as a stable torch.sort of each segment."""
    raw = [0.0, -0.0, float("nan"), -float("inf"), 1.0, -float("nan"), -0.0, float("inf"), -2.0]
    values = torch.tensor(raw + raw[::-1], dtype=dtype).reshape(-1, 1)
    lengths = [9, 0, 9]
    x = ragged(values, lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for descending in (False, True):
        want_v, want_i, _ = testing.reference_sort(values, offsets, descending=descending)
        got_v, got_i = x.sort(descending=descending)
        assert_same(got_i.values, want_i)
        torch.testing.assert_close(got_v.values, want_v, equal_nan=True)
        number = ~torch.isnan(want_v)  # (a NaN's sign means nothing)
        assert torch.equal(torch.signbit(got_v.values[number]), torch.signbit(want_v[number]))
        for k in (4, 9):  # rounds of a segment argmax, and the sort
            want_v, want_i, _ = testing.reference_sort(values, offsets, descending=descending, k=k)
            got_v, got_i = x.topk(k, largest=descending)
            assert_same(got_i.values, want_i)
            torch.testing.assert_close(got_v.values, want_v, equal_nan=True)
    assert_same(x.median(fill=0), testing.reference_segment_op("median", values, offsets))


# ------------------------------------------------------------- the compiled kernels


def test_the_kernels_that_ran(kernels, monkeypatch):
    """The fixture's switch decides which kernels run (a test of the tests' own premise)."""
    calls = []
    monkeypatch.setattr(_jit, "_run", lambda kind, *a: calls.append(kind) or None)
    x = ragged(torch.randn(9, 2), [4, 0, 5])
    x.cumsum()
    x.argmax()
    assert calls == (["scan", "arg"] if kernels == "numba" else [])
