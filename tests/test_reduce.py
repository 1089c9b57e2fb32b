"""Segment reductions, softmax and broadcast, checked against a per-segment loop (the oracle).

Every result is compared with what a plain Python loop over the oracle list of per-segment
numpy arrays gives (``np.sum(seg, axis=0)`` and friends, ``fill`` for empty segments);
gradients are compared with those of the same loop written in torch.
"""

from __future__ import annotations

import math
from itertools import pairwise, product

import numpy as np
import pytest
import torch
from conftest import (
    LAYOUTS,
    LENGTH_CASES,
    LENGTHS,
    PLACES,
    TORCH_PLACES,
    build,
    host,
    on,
    oracle_and_x,
    oracle_offsets,
    ragged_lists,
    random_segments,
    requires_cuda,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import raggedarray as ra
from raggedarray import _kernels, _partition, testing

REDUCTIONS = ["sum", "mean", "max", "min", "prod", "logsumexp", "var", "std"]
FLOAT_ONLY = ["mean", "logsumexp", "var", "std"]
VARIANCES = ("var", "std")
FLOATS = ["float32", "float64", "float16"]


def dtypes_for(op):
    """The dtypes an operation accepts, among conftest's (floats only for some)."""
    return FLOATS if op in FLOAT_ONLY or op.endswith("softmax") else [*FLOATS, "int64", "bool"]


FUNCTIONS = {op: getattr(ra, f"segment_{op}") for op in REDUCTIONS}
SOFTMAXES = {False: ra.segment_softmax, True: ra.segment_log_softmax}
APIS = ["method", "function", "function-host-offsets"]

# ------------------------------------------------------------------------------ oracle


def np_logsumexp(seg):
    top = seg.max(0)
    top = np.where(np.isinf(top), 0, top)
    return np.log(np.exp(seg - top).sum(0)) + top


# op: (numpy oracle, torch oracle), each a function of (one segment, correction).
OPS = {
    "sum": (lambda s, c: np.sum(s, axis=0), lambda s, c: s.sum(0)),
    "mean": (lambda s, c: np.mean(s, axis=0), lambda s, c: s.mean(0)),
    "max": (lambda s, c: np.max(s, axis=0), lambda s, c: s.amax(0)),
    "min": (lambda s, c: np.min(s, axis=0), lambda s, c: s.amin(0)),
    "prod": (lambda s, c: np.prod(s, axis=0), lambda s, c: s.prod(0)),
    "logsumexp": (lambda s, c: np_logsumexp(s), lambda s, c: torch.logsumexp(s, 0)),
    "var": (lambda s, c: np.var(s, axis=0, ddof=c), lambda s, c: s.var(0, correction=c)),
    "std": (lambda s, c: np.std(s, axis=0, ddof=c), lambda s, c: s.std(0, correction=c)),
}


def result_dtype(op, dtype):
    dtype = np.dtype(dtype)
    return np.dtype("int64") if op in ("sum", "prod") and dtype.kind in "biu" else dtype


def gives_fill(op, n, correction):
    return n == 0 or (op in VARIANCES and n <= correction)


def oracle(op, segments, item_shape, dtype, *, fill=0, correction=1):
    """One row per segment by a loop; half precision computed in float32, then cast."""
    out = result_dtype(op, dtype)
    rows = []
    for seg in segments:
        if gives_fill(op, seg.shape[0], correction):
            rows.append(np.full(item_shape, fill, dtype=out))
            continue
        work = seg.astype(np.float32 if seg.dtype == np.float16 else out)
        with np.errstate(over="ignore"):  # a float16 product may overflow to inf
            rows.append(np.asarray(OPS[op][0](work, correction)).astype(out))
    return np.stack(rows) if rows else np.zeros((0, *item_shape), dtype=out)


def np_softmax(seg, log):
    shifted = seg - seg.max(0)
    total = np.exp(shifted).sum(0)
    return shifted - np.log(total) if log else np.exp(shifted) / total


def oracle_softmax(segments, item_shape, dtype, log):
    rows = [
        np_softmax(s.astype(np.float32 if s.dtype == np.float16 else s.dtype), log)
        for s in segments
        if s.shape[0]
    ]
    out = np.concatenate(rows) if rows else np.zeros((0, *item_shape))
    return out.astype(dtype)


def oracle_repeat(per_segment, lengths):
    """Row ``i`` of ``per_segment`` repeated ``lengths[i]`` times, by a loop."""
    rows = [np.repeat(per_segment[i : i + 1], n, axis=0) for i, n in enumerate(lengths)]
    return np.concatenate([per_segment[:0], *rows])


def torch_oracle(op, values, offsets, *, fill, correction=1):
    """The torch twin of :func:`oracle` (differentiable), by a loop over segments."""
    rows = []
    for a, b in pairwise(offsets):
        if gives_fill(op, b - a, correction):
            rows.append(torch.full(values.shape[1:], fill, dtype=values.dtype))
        else:
            rows.append(OPS[op][1](values[a:b], correction))
    return torch.stack(rows)


# ----------------------------------------------------------------------------- helpers


TOLERANCES = {"float16": (2e-3, 2e-3), "float32": (1e-5, 1e-4), "float64": (1e-10, 1e-10)}


def assert_matches(got, want, where=""):
    """``got`` (any backend) has ``want``'s shape and dtype and matches its values."""
    got = host(got)
    assert got.shape == want.shape, (where, got.shape, want.shape)
    assert got.dtype == want.dtype, (where, got.dtype, want.dtype)
    if want.dtype.kind == "f":
        rtol, atol = TOLERANCES[str(want.dtype)]
        np.testing.assert_allclose(got, want, rtol, atol, equal_nan=True, err_msg=where)
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


def assert_on_place(result, x):
    if x.backend == "torch":
        assert isinstance(result, torch.Tensor)
        assert result.device == x.values.device
    else:
        assert isinstance(result, np.ndarray)


def reduce_with(api, x, op, **kw):
    """Reduce ``x`` by the method, or by the function with its own or host offsets."""
    if api == "method":
        return getattr(x, op)(**kw)
    offsets = x.offsets if api == "function" else x.host_offsets.tolist()
    return FUNCTIONS[op](x.values, offsets, **kw)


def check_reductions(x, segments, dtype, ops=REDUCTIONS, **kw):
    """Each reduction of ``x``, by every API, against the oracle; on ``x``'s place."""
    for op in ops:
        want = oracle(op, segments, x.item_shape, dtype, **kw)
        assert want.shape == (len(segments), *x.item_shape)
        for api in APIS:
            got = reduce_with(api, x, op, **kw)
            assert_on_place(got, x)
            assert_matches(got, want, f"{api} {op}")


def check_softmax(x, segments, dtype, logs=(False, True)):
    """Softmax and log-softmax of ``x``: same class and offsets, values as the oracle's."""
    for log in logs:
        want = oracle_softmax(segments, x.item_shape, dtype, log)
        y = x.log_softmax() if log else x.softmax()
        assert type(y) is type(x)  # the class is kept
        np.testing.assert_array_equal(host(y.offsets), x.host_offsets)
        assert_on_place(y.values, x)
        assert_matches(y.values, want, "method")
        for offsets in (x.offsets, x.host_offsets.tolist()):
            got = SOFTMAXES[log](x.values, offsets)
            assert_on_place(got, x)
            assert_matches(got, want, "function")


def grad_values(lengths=LENGTHS, item_shape=(2,), seed=0):
    segments = random_segments(np.random.default_rng(seed), lengths, item_shape, "float64")
    values = np.concatenate(segments) / 10  # keeps prod and exp well conditioned
    return torch.from_numpy(values).requires_grad_(), oracle_offsets(segments)


@pytest.fixture(params=list(_kernels.ENGINES))
def engine(request, monkeypatch):
    """The kernel engine, forced (segment and scatter run on the CPU too)."""
    with _kernels.force_engine(request.param):
        yield request.param


# ---------------------------------------------------------------------- reductions


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("place", PLACES)
def test_reduction_matches_oracle(place, lengths, layout, op):
    for dtype in dtypes_for(op):
        segments, x = oracle_and_x(place, dtype, layout, lengths)
        check_reductions(x, segments, dtype, [op])


@pytest.mark.parametrize("op", VARIANCES)
@pytest.mark.parametrize("correction", [0, 1, 2, 3, 0.5, 1.5, 2.5])
@pytest.mark.parametrize("place", PLACES)
def test_var_std_correction_and_fill(place, op, correction):
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (3,)))
    short = [gives_fill(op, s.shape[0], correction) for s in segments]
    assert any(short) and not all(short)
    check_reductions(x, segments, "float64", [op], correction=correction, fill=-2.5)
    assert (host(getattr(x, op)(correction=correction, fill=-2.5))[short] == -2.5).all()


def test_small_hand_computed_table():
    values, offsets = np.array([1.0, 3.0, 2.0, 2.0, 2.0, 7.0]), [0, 2, 2, 5, 6]
    table = {
        "sum": [4, 0, 6, 7],
        "mean": [2, 0, 2, 7],
        "max": [3, 0, 2, 7],
        "min": [1, 0, 2, 7],
        "prod": [3, 0, 8, 7],
        "var": [2, 0, 0, 0],
        "std": [math.sqrt(2), 0, 0, 0],
        "logsumexp": [math.log(math.e + math.e**3), 0, 2 + math.log(3), 7],
    }
    for op, want in table.items():
        np.testing.assert_allclose(FUNCTIONS[op](values, offsets), want, rtol=1e-12, err_msg=op)


@pytest.mark.parametrize("place", PLACES)
def test_views_and_non_contiguous_values(place):
    segments, x = oracle_and_x(place, "float64", (ra.RaggedArray, (3,)))
    transposed = on(np.ascontiguousarray(host(x.values).T), place).T  # (N, 3), not contiguous
    cases = [(ra.RaggedArray(transposed, x.offsets), segments)]
    cases += [
        (x[2:6], segments[2:6]),
        (x[::2], segments[::2]),
        (x[[4, 0, 2]], [segments[i] for i in (4, 0, 2)]),
    ]
    for y, segs in cases:
        check_reductions(y, segs, "float64")
        check_softmax(y, segs, "float64")


@pytest.mark.parametrize("place", PLACES)
def test_large_magnitudes_are_handled_stably(place):
    rng = np.random.default_rng(3)
    big = [rng.standard_normal((n, 2)) + 1000 * rng.choice([-1, 1], (1, 2)) for n in LENGTHS]
    x = build(big, place, item_shape=(2,), dtype="float64")
    check_reductions(x, big, "float64", ["logsumexp", "max", "var"])
    check_softmax(x, big, "float64")
    # Two passes: a mean 1e4 times the spread still gives a float32 variance to 1%.
    shifted = [(rng.standard_normal((n, 2)) + 1e4).astype("float32") for n in LENGTHS]
    x = build(shifted, place, item_shape=(2,), dtype="float32")
    want = oracle("var", [s.astype("float64") for s in shifted], (2,), "float64")
    np.testing.assert_allclose(host(x.var()), want, rtol=1e-2)


# ------------------------------------------------------------------------- dtype rules


@pytest.mark.parametrize("op", [*REDUCTIONS, "softmax", "log_softmax"])
@pytest.mark.parametrize("place", TORCH_PLACES)
def test_bfloat16_accumulates_in_float32_and_keeps_its_dtype(place, op):
    segments, x32 = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)))
    x = ra.RaggedArray(x32.values.to(torch.bfloat16), x32.offsets)
    rounded = [host(torch.from_numpy(s).to(torch.bfloat16)) for s in segments]
    got = getattr(x, op)()
    got = got.values if op.endswith("softmax") else got
    assert got.dtype == torch.bfloat16 and got.device == x.values.device
    if op.endswith("softmax"):
        want = oracle_softmax(rounded, (2,), "float32", op == "log_softmax")
    else:
        want = oracle(op, rounded, (2,), "float32")
    want = host(torch.from_numpy(want).to(torch.bfloat16))
    np.testing.assert_allclose(host(got), want, rtol=1.6e-2, atol=1.6e-2)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("place", PLACES)
def test_half_precision_accumulates_in_float32(place, half):
    if half == "bfloat16" and place[0] == "numpy":
        pytest.skip("numpy has no bfloat16")
    # Around `base` the dtype's spacing is 2, so the mean base + 3 needs more precision; the
    # float16 sum of the second segment overflows (> 65504) but its mean does not.
    base = 2048.0 if half == "float16" else 256.0
    values = on(np.concatenate([base + np.arange(0.0, 8.0, 2.0), np.full(100, 1000.0)]), place)
    values = values.astype(half) if place[0] == "numpy" else values.to(getattr(torch, half))
    offsets = [0, 4, 104]
    for function, want in [
        (ra.segment_mean, [base + 3, 1000.0]),
        (ra.segment_var, [20 / 3, 0.0]),  # (9 + 1 + 1 + 9) / 3
        (ra.segment_std, [math.sqrt(20 / 3), 0.0]),
    ]:
        got = function(values, offsets)
        assert got.dtype == values.dtype
        twin = torch.tensor(want, dtype=torch.float32).to(getattr(torch, half))
        np.testing.assert_array_equal(host(got), host(twin), err_msg=function.__name__)


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int16", "int32", "int64"])
@pytest.mark.parametrize("place", PLACES)
def test_integer_sums_and_products_are_int64_extrema_keep_the_dtype(place, dtype):
    segments, _ = oracle_and_x(place, "bool" if dtype == "bool" else "int64")
    if dtype != "bool":  # small values, wrapped into the dtype's range
        segments = [(s // 4).astype(dtype) for s in segments]
    x = build(segments, place, dtype=dtype)
    fill = 1 if dtype == "bool" else 7
    for op in ("sum", "prod", "max", "min"):
        want = oracle(op, segments, (), dtype)
        assert want.dtype == (np.int64 if op in ("sum", "prod") else np.dtype(dtype))
    check_reductions(x, segments, dtype, ["sum", "prod", "max", "min"], fill=fill)


@pytest.mark.parametrize("op", [*FLOAT_ONLY, "softmax", "log_softmax"])
@pytest.mark.parametrize("place", PLACES)
def test_floating_only_operations_take_integers_as_floats(place, op):
    # as np.mean does (float64) for numpy values, and in torch's default dtype for torch
    # values (as torch divides integers): the same op on the values converted first, in
    # float64 for integers float32 does not hold exactly (int64), then rounded once
    function = SOFTMAXES[op == "log_softmax"] if op.endswith("softmax") else FUNCTIONS[op]
    for dtype in ("int64", "bool", "uint8"):
        _, x = oracle_and_x(place, dtype)
        floats = np.float64 if x.backend == "numpy" else torch.get_default_dtype()
        wide = x.backend == "torch" and dtype == "int64"
        want = getattr(x.astype(torch.float64 if wide else floats), op)()
        want = want.values if op.endswith("softmax") else want
        want = want.to(floats) if wide else want
        for got in (getattr(x, op)(), function(x.values, x.offsets)):
            got = got.values if isinstance(got, ra.RaggedArray) else got
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(
                np.asarray(got.cpu() if x.backend == "torch" else got),
                np.asarray(want.cpu() if x.backend == "torch" else want),
            )


# -------------------------------------------------------------------------------- fill


@pytest.mark.parametrize("fill", [0, 7, -1.5, np.nan, -np.inf, np.inf])
@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("place", PLACES)
def test_custom_fill_appears_exactly_at_empty_segments(place, op, fill):
    segments, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)))
    check_reductions(x, segments, "float32", [op], fill=fill)
    empty = [gives_fill(op, s.shape[0], 1) for s in segments]
    for api in APIS:
        got = host(reduce_with(api, x, op, fill=fill))
        np.testing.assert_array_equal(got[empty], np.full((sum(empty), 2), fill, "float32"))
        assert not np.isnan(got[np.logical_not(empty)]).any()


@pytest.mark.parametrize(
    "op, dtype, fill",
    [
        ("sum", "int64", 0.5),
        ("sum", "bool", 2**70),
        ("prod", "int64", -(2**64)),
        ("max", "int64", np.nan),
        ("min", "int64", -np.inf),
        ("max", "bool", 2),
        ("min", "bool", -1),
    ],
)
@pytest.mark.parametrize("lengths", [LENGTHS, [2, 3]], ids=["with-empty", "no-empty"])
@pytest.mark.parametrize("place", PLACES)
def test_fill_not_representable_in_an_integer_result_is_rejected(place, lengths, op, dtype, fill):
    _, x = oracle_and_x(place, dtype, lengths=lengths)
    for api in APIS:
        with pytest.raises(ValueError, match="representable"):
            reduce_with(api, x, op, fill=fill)


@pytest.mark.parametrize(
    "fill", [np.array(-2.5), torch.tensor(-2.5), torch.tensor(-2.5, requires_grad=True)]
)
def test_a_0_d_fill_is_its_number(fill):
    """``fill=x.min()`` (a 0-d array or tensor) fills as the number it holds; a 1-d one is
    still refused."""
    values = torch.tensor([1.0, 2.0, 3.0])
    for op in ("sum", "max", "mean"):
        got = getattr(ra, f"segment_{op}")(values, [0, 0, 3], fill=fill)
        assert got[0].item() == -2.5
    with pytest.raises(TypeError, match="fill must be a number; got ndarray"):
        ra.segment_sum(values.numpy(), [0, 0, 3], fill=np.array([1.0]))


@pytest.mark.parametrize("op", [*REDUCTIONS, "median"])
@pytest.mark.parametrize("lengths", [[2, 0, 3, 0], [0, 0], [1, 1]], ids=["some", "all", "none"])
@pytest.mark.parametrize("api", ["method", "function"])
def test_a_fill_tensor_autograd_records_gets_the_gradient_of_its_rows(op, lengths, api):
    """A learned value for empty locations (or ``fill=h.min()``) is trained like any other
    input: the oracle puts the fill tensor in the empty rows with torch.where."""
    values = torch.randn(sum(lengths), 2, dtype=torch.float64, requires_grad=True)
    fill = torch.tensor(0.0 if op == "sum" else -1.5, dtype=torch.float64, requires_grad=True)
    offsets = [0, *np.cumsum(lengths).tolist()]
    if api == "method":
        got = getattr(ra.RaggedArray(values, offsets), op)(fill=fill)
    else:
        got = getattr(ra, f"segment_{op}")(values, offsets, fill=fill)
    empty = torch.tensor(lengths)[:, None] <= (1 if op in VARIANCES else 0)
    loop = torch.stack(
        [
            getattr(torch, op)(seg, 0).values
            if op in ("median", "max", "min")
            else getattr(torch, op)(seg, 0)
            for seg in values.split(lengths)
            if len(seg) > (1 if op in VARIANCES else 0)
        ]
        or [values.new_zeros(2)]
    )
    want = fill.expand(len(lengths), 2).clone()
    want = want.masked_scatter(~empty, loop[: int((~empty).sum())]) if (~empty).any() else want
    weights = torch.linspace(-1, 2, got.numel(), dtype=got.dtype).reshape(got.shape)
    got_grads = torch.autograd.grad((got * weights).sum(), [values, fill], allow_unused=True)
    want_grads = torch.autograd.grad((want * weights).sum(), [values, fill], allow_unused=True)
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g if g is not None else 0 * w, w if w is not None else 0 * g)
    assert want_grads[1] is not None and (want_grads[1] != 0) == bool(empty.any())
    # numpy values give numpy results, which hold no gradient
    got_numpy = getattr(ra, f"segment_{op}")(values.detach().numpy(), offsets, fill=fill)
    np.testing.assert_allclose(got_numpy, want.detach().numpy())


@pytest.mark.parametrize("fill", ["0", None, [0.0]], ids=["str", "none", "list"])
@pytest.mark.parametrize("op", REDUCTIONS)
def test_fill_must_be_a_number(op, fill):
    _, x = oracle_and_x(("numpy", "cpu"), "float64")
    for api in APIS:
        with pytest.raises(TypeError, match="fill must be a number"):
            reduce_with(api, x, op, fill=fill)


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("place", PLACES)
def test_no_nan_by_accident(place, op):
    for lengths in ([0, 1, 0, 1, 2], [0, 0], [1]):
        _, x = oracle_and_x(place, "float32", (ra.RaggedArray, (2,)), lengths)
        for api in APIS:
            got = host(reduce_with(api, x, op))
            assert np.isfinite(got).all(), (api, lengths, got)


# --------------------------------------------------------------- softmax and broadcast


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("place", PLACES)
def test_softmax_matches_oracle(place, lengths, layout, log):
    for dtype in FLOATS:
        segments, x = oracle_and_x(place, dtype, layout, lengths)
        check_softmax(x, segments, dtype, [log])


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("place", PLACES)
def test_broadcast_matches_repeat(place, lengths, layout, dtype):
    _, x = oracle_and_x(place, "float32", layout, lengths)
    for shape in (layout[1], (4,)):  # rows like the items, and rows of another shape
        check_broadcast(x, place, lengths, dtype, shape)


def check_broadcast(x, place, lengths, dtype, shape):
    per_segment = random_segments(np.random.default_rng(1), [len(lengths)], shape, dtype)[0]
    want = oracle_repeat(per_segment, lengths)
    y = x.broadcast(on(per_segment, place))
    cls = ra.RaggedImageBatch if len(shape) == 3 else ra.RaggedArray
    assert type(y) is cls
    np.testing.assert_array_equal(host(y.offsets), x.host_offsets)
    assert_on_place(y.values, x)
    assert_matches(y.values, want)
    got = ra.segment_broadcast(on(per_segment, place), x.host_offsets)
    assert_on_place(got, x)
    assert_matches(got, want)
    # N given: offsets on the values' device are used where they are
    got = ra.segment_broadcast(on(per_segment, place), x.offsets, num_items=x.num_items)
    assert_on_place(got, x)
    assert_matches(got, want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("place", PLACES)
def test_broadcast_of_the_mean_centres_every_segment(place, layout):
    segments, x = oracle_and_x(place, "float64", layout)
    centred = x.values - x.broadcast(x.mean()).values
    want = np.concatenate([s - s.mean(0) for s in segments if len(s)])
    assert_matches(centred, want)
    np.testing.assert_allclose(host(ra.RaggedArray(centred, x.offsets).sum()), 0, atol=1e-10)


@pytest.mark.parametrize("place", PLACES)
def test_broadcast_errors(place):
    _, x = oracle_and_x(place, "float32")
    m = len(x)
    for bad in (np.zeros(m + 1), np.zeros((m - 1, 2))):
        with pytest.raises(ValueError, match="one row per segment"):
            x.broadcast(on(bad, place))
        with pytest.raises(ValueError, match="one row per segment"):
            ra.segment_broadcast(on(bad, place), x.host_offsets)
    with pytest.raises(ValueError, match="must have a leading item axis"):
        x.broadcast(on(np.array(1.0), place))
    other = torch.zeros(m) if place[0] == "numpy" else np.zeros(m)
    with pytest.raises(TypeError, match="per_segment must be a"):
        x.broadcast(other)
    with pytest.raises(ValueError, match="non-decreasing"):
        ra.segment_broadcast(on(np.zeros(3), place), [0, 2, 1, 4])
    with pytest.raises(ValueError, match=r"number of items num_items=5; got offsets\[-1\]=4"):
        ra.segment_broadcast(on(np.zeros(3), place), [0, 2, 2, 4], num_items=5)
    with pytest.raises(TypeError, match="per_segment must be a numpy array or a torch"):
        ra.segment_broadcast([1.0, 2.0], [0, 1, 2])
    with pytest.raises(TypeError, match="real numbers or booleans"):
        ra.segment_broadcast(on(np.ones(2, np.complex128), place), [0, 1, 2])


@requires_cuda
def test_broadcast_from_another_device_is_rejected():
    _, x = oracle_and_x(("torch", "cuda"), "float32")
    with pytest.raises(ValueError, match="device"):
        x.broadcast(torch.zeros(len(x)))


# ------------------------------------------------------------------------------ autograd


def as_function(op, api, offsets, **kw):
    """``values -> result`` through a function or a method (``broadcast``: of per-segment rows)."""
    if op == "broadcast":
        if api == "method":
            return lambda v: ra.RaggedArray(torch.zeros(offsets[-1]), offsets).broadcast(v).values
        return lambda v: ra.segment_broadcast(v, offsets)
    if op in ("softmax", "log_softmax"):
        if api == "method":
            return lambda v: getattr(ra.RaggedArray(v, offsets), op)().values
        return lambda v: SOFTMAXES[op == "log_softmax"](v, offsets)
    if api == "method":
        return lambda v: getattr(ra.RaggedArray(v, offsets), op)(**kw)
    return lambda v: FUNCTIONS[op](v, offsets, **kw)


def grad_input(op):
    """Random float64 values over LENGTHS (per-segment rows for ``broadcast``)."""
    values, offsets = grad_values()
    if op == "broadcast":
        values = torch.randn(len(offsets) - 1, 2, dtype=torch.float64, requires_grad=True)
    return values, offsets


ITEMWISE = ["softmax", "log_softmax", "broadcast"]


@pytest.mark.parametrize("api", ["function", "method"])
@pytest.mark.parametrize("op", [*REDUCTIONS, *ITEMWISE])
def test_gradcheck(engine, op, api):
    values, offsets = grad_input(op)
    kw = {"fill": 1.5} if op in REDUCTIONS else {}
    assert torch.autograd.gradcheck(as_function(op, api, offsets, **kw), (values,))


@pytest.mark.parametrize("op", ["sum", "mean", "max", "logsumexp", "var", "prod", *ITEMWISE])
def test_gradgradcheck(engine, op):
    values, offsets = grad_input(op)
    assert torch.autograd.gradgradcheck(as_function(op, "function", offsets), (values,))


GRAD_CASES = [(op, c) for op in REDUCTIONS for c in ((0, 1, 2, 1.5) if op in VARIANCES else (1,))]


@pytest.mark.parametrize("fill", [1.5, np.nan], ids=["fill", "nan-fill"])
@pytest.mark.parametrize("op, correction", GRAD_CASES)
def test_gradient_matches_torch_loop(engine, op, correction, fill):
    values, offsets = grad_values()
    kw = {"fill": fill, **({"correction": correction} if op in VARIANCES else {})}
    upstream = torch.randn(len(offsets) - 1, 2, dtype=torch.float64)
    want_out = torch_oracle(op, values, offsets, fill=fill, correction=correction)
    (want,) = torch.autograd.grad((want_out * upstream).sum(), values)
    for api in ("function", "method"):
        out = as_function(op, api, offsets, **kw)(values)
        torch.testing.assert_close(out, want_out, equal_nan=True)
        (got,) = torch.autograd.grad((out * upstream).sum(), values)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want)
        for a, b in pairwise(offsets):
            if gives_fill(op, b - a, correction) and b > a:
                assert (got[a:b] == 0).all(), (a, b)


# ------------------------------------------------- products under deterministic algorithms


@pytest.fixture
def halving(monkeypatch):
    """Products by pairwise halving, the path deterministic algorithms take off the CPU."""
    monkeypatch.setattr(_kernels, "deterministic_off_cpu", lambda device: True)


PRODUCT_LENGTHS = [*LENGTH_CASES, pytest.param([1, 7, 0, 16, 17, 2], id="odd-and-powers-of-2")]


@pytest.mark.usefixtures("halving")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", PRODUCT_LENGTHS)
@pytest.mark.parametrize("place", PLACES)
def test_product_by_halving_matches_oracle(place, lengths, layout):
    for dtype in ["float64", "float32", "int64", "int8", "bool"]:
        segments, x = oracle_and_x(place, dtype, layout, lengths)
        check_reductions(x, segments, dtype, ["prod"], fill=-2)


@pytest.mark.usefixtures("halving")
@given(
    lengths=st.lists(st.integers(0, 40), max_size=6),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_product_by_halving_is_exact_on_integers(lengths, seed):
    # int64 products wrap the same whatever the order, so halving must equal the loop.
    rng = np.random.default_rng(seed)
    segments = [rng.integers(-9, 10, size=(n, 2)) for n in lengths]
    values = np.concatenate([np.zeros((0, 2), dtype=np.int64), *segments])
    x = ra.RaggedArray.from_lengths(torch.from_numpy(values), lengths)
    want = [
        torch.from_numpy(s).prod(0) if len(s) else torch.ones(2, dtype=torch.int64)
        for s in segments
    ]
    got = x.prod(fill=1)
    assert got.dtype == torch.int64
    assert torch.equal(got, torch.stack(want) if want else got.new_zeros((0, 2)))


@pytest.mark.usefixtures("halving")
def test_product_by_halving_gradient_matches_torch_loop_with_zeros():
    values, offsets = grad_values(lengths=[3, 0, 2, 5, 0, 1, 9])
    with torch.no_grad():
        values[1] = 0.0  # one zero: the others get the product of the rest
        values[5:7] = 0.0  # two zeros in one segment: every gradient there is 0
    upstream = torch.randn(len(offsets) - 1, 2, dtype=torch.float64)
    want_out = torch_oracle("prod", values, offsets, fill=1.5)
    (want,) = torch.autograd.grad((want_out * upstream).sum(), values)
    out = ra.segment_prod(values, offsets, fill=1.5)
    (got,) = torch.autograd.grad((out * upstream).sum(), values)
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(as_function("prod", "method", offsets, fill=1.5), (values,))


@requires_cuda
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_reductions_on_cuda_run_under_deterministic_algorithms(dtype):
    lengths = [1, 7, 0, 16, 17, 2, 3, 3, 3, 3, 3, 3, 3, 3]  # 3 is common: a dense median
    segments, x = oracle_and_x(("torch", "cuda"), dtype, None, lengths)
    # the oracle's torch.median has no deterministic CUDA kernel: it runs before
    want = testing.reference_segment_op("median", x.values, x.host_offsets, fill=0)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        check_reductions(x, segments, dtype, ["sum", "max", "min", "prod"])
        torch.testing.assert_close(x.median(), want)
    finally:
        torch.use_deterministic_algorithms(previous)


# Segments: 4 items with ties, 1 item, empty. Upstream gradient rows: [2, 3], [5, 7], [100, 100].
TIE_VALUES = [[1.0, 5.0], [3.0, 5.0], [3.0, 2.0], [0.0, 5.0], [2.0, 2.0]]
TIE_GRADS = {
    "max": [[0, 1], [1, 1], [1, 0], [0, 1], [5, 7]],  # max of feature 1 is shared by 3 items
    "min": [[0, 0], [0, 0], [0, 3], [2, 0], [5, 7]],  # no ties: all to the arg-min
}


@pytest.mark.parametrize("op", ["max", "min"])
def test_extremum_gradient_ties_are_shared_equally(engine, op):
    values = torch.tensor(TIE_VALUES, dtype=torch.float64, requires_grad=True)
    offsets = [0, 4, 5, 5]
    upstream = torch.tensor([[2.0, 3.0], [5.0, 7.0], [100.0, 100.0]], dtype=torch.float64)
    want = torch_oracle(op, values, offsets, fill=0)
    (twin,) = torch.autograd.grad((want * upstream).sum(), values)
    for api, create_graph in product(("function", "method"), (False, True)):
        out = as_function(op, api, offsets)(values)
        (got,) = torch.autograd.grad((out * upstream).sum(), values, create_graph=create_graph)
        torch.testing.assert_close(got, torch.tensor(TIE_GRADS[op], dtype=torch.float64))
        torch.testing.assert_close(got, twin)


@pytest.mark.parametrize("op", ["max", "min"])
def test_extremum_gradient_with_infinite_extrema_matches_torch(engine, op):
    # inf - inf is NaN: an infinite extremum tied with itself must still count as a tie.
    inf = float("inf")
    values = torch.tensor([[inf], [inf], [1.0], [-inf], [-inf], [-inf], [2.0]])
    values = values.to(torch.float64).requires_grad_()
    offsets = [0, 3, 5, 7]
    want = torch_oracle(op, values, offsets, fill=0)
    (twin,) = torch.autograd.grad(want.sum(), values)
    (got,) = torch.autograd.grad(as_function(op, "function", offsets)(values).sum(), values)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, twin)


@pytest.mark.parametrize("correction", [0, 1])
def test_std_gradient_where_the_std_is_zero_is_zero_like_torch(engine, correction):
    # A segment of equal items (and, with correction 0, a one-item segment) has std 0.
    values = torch.tensor([[2.0, 1.0], [2.0, 3.0], [5.0, 4.0]], dtype=torch.float64)
    values.requires_grad_()
    offsets = [0, 2, 3]
    want = torch_oracle("std", values, offsets, fill=0, correction=correction)
    (twin,) = torch.autograd.grad(want.sum(), values)
    out = ra.segment_std(values, offsets, correction=correction)
    (got,) = torch.autograd.grad(out.sum(), values)
    assert twin[:, 0].eq(0).all()  # torch.std gives zero gradient where the std is 0
    torch.testing.assert_close(got, twin)


# ------------------------------------------------------------------------ numpy == torch


@pytest.mark.parametrize("op", [*REDUCTIONS, "softmax", "log_softmax"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_numpy_and_torch_cpu_agree_exactly(layout, op):
    for dtype in dtypes_for(op):
        _, a = oracle_and_x(("numpy", "cpu"), dtype, layout)
        _, b = oracle_and_x(("torch", "cpu"), dtype, layout)
        got_a, got_b = getattr(a, op)(), getattr(b, op)()
        if op.endswith("softmax"):
            got_a, got_b = got_a.values, got_b.values
        assert isinstance(got_a, np.ndarray) and isinstance(got_b, torch.Tensor)
        assert got_a.dtype == host(got_b).dtype
        np.testing.assert_array_equal(got_a, host(got_b), err_msg=dtype)


# --------------------------------------------------------------------- scatter engine


def test_forcing_the_scatter_engine_avoids_the_csr_kernel(monkeypatch):
    calls = []
    real = torch.sparse.mm
    monkeypatch.setattr(torch.sparse, "mm", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, x = oracle_and_x(("torch", "cpu"), "float64")
    x.sum()
    assert calls, "the csr engine should run float64 sums on CPU"
    calls.clear()
    _, x = oracle_and_x(("torch", "cpu"), "float64")
    with _kernels.force_engine("scatter"):
        for op in REDUCTIONS:
            getattr(x, op)()
        x.softmax()
    assert not calls


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("place", PLACES[:2])
@pytest.mark.parametrize("block", [None, 2], ids=["one-level", "blocks-of-2"])
def test_both_engines_and_blocked_sums_match_oracle(
    engine, monkeypatch, place, lengths, layout, block
):
    if block is not None:  # two-level sums even on short segments
        monkeypatch.setattr(_partition, "BLOCK", block)
    for dtype in ("float32", "float64"):
        segments, x = oracle_and_x(place, dtype, layout, lengths)
        check_reductions(x, segments, dtype, fill=-3.0)
        check_softmax(x, segments, dtype)


# --------------------------------------------------------------------------- properties

NO_ROWS = np.zeros((0, 2))
NO_SEGMENTS = ([], (2,), [])
NO_ITEMS = ([0, 0], (1, 3, 2), [np.zeros((0, 1, 3, 2))] * 2)
ONE_ITEM_EACH = ([1, 1, 0], (2,), [np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]]), NO_ROWS])


def edge_examples(test):
    """Always try zero segments, all-empty segments and one-item segments on both backends."""
    for case in (NO_SEGMENTS, NO_ITEMS, ONE_ITEM_EACH):
        for backend in ("numpy", "torch"):
            test = example(case, backend)(test)
    return test


@settings(max_examples=50, deadline=None)
@given(ragged_lists(), st.sampled_from(["numpy", "torch"]))
@edge_examples
def test_property_reductions_match_oracle(case, backend):
    lengths, item_shape, segments = case
    x = build(segments, (backend, "cpu"), item_shape=item_shape, dtype="float64")
    check_reductions(x, segments, "float64", ["sum", "mean", "max", "var", "logsumexp"])
    check_softmax(x, segments, "float64")
    sums = oracle("sum", segments, item_shape, "float64")
    assert_matches(x.broadcast(x.sum()).values, oracle_repeat(sums, lengths))


# ------------------------------------------------------------------------------- errors

ALL_FUNCTIONS = [*FUNCTIONS.values(), ra.segment_softmax, ra.segment_log_softmax]


@pytest.mark.parametrize("function", ALL_FUNCTIONS, ids=lambda f: f.__name__)
def test_input_errors(function):
    name = function.__name__
    for bad in ([1.0, 2.0], "abc", None):
        with pytest.raises(TypeError, match=f"{name}: values must be a numpy array or a torch"):
            function(bad, [0, 2])
    for zero_d in (np.array(1.0), torch.tensor(1.0)):
        with pytest.raises(ValueError, match=f"{name}: values must have a leading item axis"):
            function(zero_d, [0, 1])
    for complex_values in (np.ones(3, np.complex64), torch.ones(3, dtype=torch.complex64)):
        with pytest.raises(TypeError, match="real numbers or booleans"):
            function(complex_values, [0, 3])
    values = np.arange(4.0)
    bad_offsets = {
        r"offsets\[-1\] must equal the number of items": [0, 2, 5],
        "offsets must be non-decreasing": [0, 3, 2, 4],
        r"offsets\[0\] must be 0": [1, 2, 4],
        "offsets must be 1-D": [[0, 4]],
    }
    for message, offsets in bad_offsets.items():
        for form in (offsets, np.array(offsets), torch.tensor(offsets)):
            with pytest.raises(ValueError, match=f"{name}: {message}"):
                function(values, form)
    with pytest.raises(TypeError, match="integer dtype"):
        function(values, [0.0, 4.0])


# --------------------------------------------------------------------------------- CUDA


@requires_cuda
@pytest.mark.parametrize("op", ["sum", "mean", "max", "softmax"])
def test_cuda_reductions_do_not_synchronise(op):
    segments, x = oracle_and_x(("torch", "cuda"), "float32", (ra.RaggedArray, (2,)))
    function = ra.segment_softmax if op == "softmax" else FUNCTIONS[op]
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        method = getattr(x, op)()
        functional = function(x.values, x.offsets)  # offsets on the GPU are not checked
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert torch.cuda.get_sync_debug_mode() == previous
    if op == "softmax":
        want = oracle_softmax(segments, (2,), "float32", False)
        method = method.values
    else:
        want = oracle(op, segments, (2,), "float32")
    assert_matches(method, want)
    assert_matches(functional, want)


@given(lengths=st.lists(st.integers(0, 30), max_size=8), device_offsets=st.booleans())
@settings(max_examples=80, deadline=None)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_cuda)])
def test_segment_ids_match_the_loop(device, lengths, device_offsets):
    """Every item's segment, from the offsets known on the host or only on the device, with
    empty segments first, last and between, zero segments and zero items."""
    from raggedarray._partition import Partition

    host = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    want = [i for i, n in enumerate(lengths) for _ in range(n)]
    place = torch.empty(0, device=device).device  # "cuda:0", as values.device names it
    if device_offsets:
        offsets = torch.from_numpy(host).to(place)
        part = Partition(None, offsets=offsets, num_items=int(host[-1]))
    else:
        part = Partition(host)
    ids = part.ids(place)
    assert ids.dtype == torch.int64 and ids.device == place
    assert ids.tolist() == want
    assert part.ids(place) is ids  # built once


# ------------------------------------------------------------------- torch.func transforms

FUNC_REDUCTIONS = ["sum", "mean", "max", "min", "prod", "var", "std", "logsumexp"]
FUNC_ITEMWISE = ["softmax", "log_softmax"]


@pytest.mark.parametrize("name", FUNC_REDUCTIONS + FUNC_ITEMWISE)
def test_torch_func_grad_jacrev_and_vmap_equal_autograd_and_the_loop(name):
    """Under ``torch.func`` the kernels are plain torch operations whose derivatives torch
    gives: grad and jacrev equal eager autograd (ties in max/min share, as torch.amax), vmap
    equals a loop over the batch, and vmap of grad a loop of grads. (Our autograd functions
    have no functorch rules, and sparse CSR products none either: these raised.)"""
    from torch.func import grad, jacrev, vmap

    fn = getattr(ra, f"segment_{name}")
    offsets = [0, 2, 2, 5, 6]
    v = torch.tensor([[1.0, 3.0], [3.0, 3.0], [2.0, 2.0], [2.0, -1.0], [-1.0, 0.5], [4.0, 4.0]])
    v = v.double()
    weights = torch.linspace(-1.0, 1.0, fn(v, offsets).numel(), dtype=torch.float64)

    def loss(t):
        return (fn(t, offsets).reshape(-1) * weights).sum()

    leaf = v.clone().requires_grad_()
    loss(leaf).backward()
    torch.testing.assert_close(grad(loss)(v), leaf.grad, rtol=1e-12, atol=1e-12)
    jacobian = jacrev(lambda t: fn(t, offsets))(v)
    assert jacobian.shape == (*fn(v, offsets).shape, *v.shape)
    batch = torch.stack([v, v * 2 - 1, v.flip(0)])
    torch.testing.assert_close(
        vmap(lambda t: fn(t, offsets))(batch), torch.stack([fn(b, offsets) for b in batch])
    )
    batched = vmap(grad(loss))(batch)
    torch.testing.assert_close(batched, torch.stack([grad(loss)(b) for b in batch]))


# --------------------------------------------------- functional calls reuse partitions


def loop_means(values, offsets):
    """The oracle: each segment's mean in a loop (zeros for empty segments)."""
    rows = [
        values[a:b].mean(0) if b > a else torch.zeros(values.shape[1:], dtype=values.dtype)
        for a, b in pairwise(np.asarray(offsets).tolist())
    ]
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_offsets_changed_in_place_between_calls_give_their_own_result(kind):
    """Partitions are remembered by the offsets' content, never by the object."""
    values = torch.randn(10, 3, dtype=torch.float64)
    offsets = np.array([0, 4, 4, 10]) if kind == "numpy" else torch.tensor([0, 4, 4, 10])
    for new in ([0, 4, 4, 10], [0, 1, 7, 10], [0, 10, 10, 10], [0, 4, 4, 10]):
        offsets[:] = np.array(new) if kind == "numpy" else torch.tensor(new)
        torch.testing.assert_close(ra.segment_mean(values, offsets), loop_means(values, new))
        assert ra.reduce._recent[np.array(new, dtype=np.int64).tobytes()].num_items == 10
    with pytest.raises(ValueError, match=r"offsets\[-1\] must equal the number of items"):
        ra.segment_mean(values[:9], offsets)  # the same offsets, another N: checked again


def test_remembered_partitions_are_few_and_of_moderate_size(monkeypatch):
    monkeypatch.setattr(ra.reduce, "RECENT_MAX_ITEMS", 100)
    monkeypatch.setattr(ra.reduce, "_recent", {})
    for n in range(1, 10):
        ra.segment_sum(torch.ones(n), [0, n])
    assert len(ra.reduce._recent) == ra.reduce.RECENT_PARTITIONS
    assert np.frombuffer(next(reversed(ra.reduce._recent)), np.int64).tolist() == [0, 9]
    ra.segment_sum(torch.ones(101), [0, 101])
    assert np.array([0, 101]).tobytes() not in ra.reduce._recent


def test_a_partition_first_seen_in_inference_mode_serves_autograd():
    values = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([0, 3, 3, 7])
    with torch.inference_mode():
        ra.segment_max(values.detach(), offsets)
        ra.segment_mean(values.detach(), offsets)
    for op in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp"):
        fn = getattr(ra, op)
        assert torch.autograd.gradcheck(lambda v, fn=fn: fn(v, offsets), (values,))
