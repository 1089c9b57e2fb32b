"""Elementwise math on ragged arrays, checked against a per-segment loop (the oracle).

Every operator, torch function and numpy ufunc applied to a ragged array is compared with the
same operation applied segment by segment (on the same backend, so the dtype rules are the
backend's): the result must hold, segment for segment, what the loop gives, with the same
offsets, and the inputs must be left untouched. Where the backend refuses an operation for a
dtype (``~`` of floats, ``-`` of bools), the ragged array must refuse it the same way.
"""

from __future__ import annotations

import operator
import warnings
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CUDA, LENGTH_CASES, LENGTHS, PLACES, TORCH_PLACES, host, on, ragged_lists
from hypothesis import given, settings
from hypothesis import strategies as st

import raggedarray as ra

BINARY = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
    "&": operator.and_,
    "|": operator.or_,
    "^": operator.xor,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
UNARY = {"-x": operator.neg, "+x": operator.pos, "abs": operator.abs, "~": operator.invert}
LAYOUTS = [
    pytest.param((ra.RaggedArray, ()), id="scalars"),
    pytest.param((ra.RaggedArray, (3,)), id="vectors"),
    pytest.param((ra.RaggedImageBatch, (1, 4, 4)), id="images"),
]
DTYPES = ["float32", "int64", "bool"]
# empty segments, zero segments and zero items (single segments: in the hypothesis cases)
LENGTH_CASES = [p for p in LENGTH_CASES if p.id in ("mixed", "zero-segments", "all-empty")]


def segments_of(rng, lengths, item_shape, dtype, *, positive=False):
    """Per-segment numpy arrays; ints in 1..9 (no division by zero), floats away from 0."""
    out = []
    for n in lengths:
        shape = (n, *item_shape)
        if dtype == "bool":
            a = rng.random(shape) > 0.5
        elif np.dtype(dtype).kind in "iu":
            a = rng.integers(1, 10, shape).astype(dtype)
        else:
            sign = 1 if positive else rng.choice([-1, 1], shape)
            a = (sign * rng.uniform(0.5, 4, shape)).astype(dtype)
        out.append(a)
    return out


def ragged(segments, place, layout, dtype):
    cls, item_shape = layout
    values = np.concatenate(segments) if segments else np.zeros((0, *item_shape), dtype)
    lengths = [len(s) for s in segments]
    return cls.from_lengths(on(values, place), lengths)


def snapshot(*xs):
    return [host(x.values).copy() for x in xs]


def check_untouched(before, *xs):
    for b, x in zip(before, xs, strict=True):
        np.testing.assert_array_equal(host(x.values), b)


def check_like_loop(result, x, expected_segments, expected_empty):
    """``result`` is ragged with x's offsets and holds the loop's segments."""
    assert isinstance(result, ra.RaggedArray)
    np.testing.assert_array_equal(result.host_offsets, x.host_offsets)
    assert result.backend == x.backend and result.device == x.device
    want_cls = ra.RaggedImageBatch if result.values.ndim == 4 else ra.RaggedArray
    assert type(result) is want_cls
    assert result.dtype == expected_empty.dtype
    assert result.item_shape == tuple(expected_empty.shape[1:])
    for got, want in zip(result.unbind(), expected_segments, strict=True):
        got, want = host(got), host(want)
        assert got.shape == want.shape
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True)
        else:
            np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- operators


def item_operand(kind, item_shape, dtype, place):
    """An operand that is not ragged: a Python scalar, a 0-d array, an item-shaped array."""
    value = True if dtype == "bool" else 3
    if kind == "scalar":
        return value
    if kind == "0-d":
        return on(np.array(value, dtype=dtype), place)
    shape = item_shape if kind == "item" else item_shape[-1:]
    a = np.arange(1, 1 + int(np.prod(shape))).reshape(shape) % 4 + 1
    return on(a.astype(dtype) if dtype != "bool" else a > 1, place)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["scalar", "0-d", "item", "last-dim", "ragged"])
@pytest.mark.parametrize("op", BINARY)
def test_binary_operators_match_the_loop(place, layout, lengths, dtype, kind, op):
    rng = np.random.default_rng(0)
    fn = BINARY[op]
    item_shape = layout[1]
    x_segs = segments_of(rng, lengths, item_shape, dtype)
    x = ragged(x_segs, place, layout, dtype)
    empty_x = on(np.zeros((0, *item_shape), dtype), place)
    if kind == "ragged":
        y = ragged(segments_of(rng, lengths, item_shape, dtype), place, layout, dtype)
        pairs = [(a, b) for a, b in zip(x.unbind(), y.unbind(), strict=True)]
        before = snapshot(x, y)
        for reflected in (False, True):
            order = (lambda a, b: (b, a)) if reflected else (lambda a, b: (a, b))
            _compare(fn, x, order(x, y), [order(a, b) for a, b in pairs], order(empty_x, empty_x))
        check_untouched(before, x, y)
        return
    other = item_operand(kind, item_shape, dtype, place)
    before = snapshot(x)
    segs = x.unbind()
    _compare(fn, x, (x, other), [(s, other) for s in segs], (empty_x, other))
    _compare(fn, x, (other, x), [(other, s) for s in segs], (other, empty_x))
    check_untouched(before, x)


_CONTRACT_ERRORS = {
    TypeError: TypeError,  # numpy's UFuncTypeError among them
    ValueError: ValueError,
    NotImplementedError: TypeError,
    RuntimeError: (TypeError, ValueError),
    OverflowError: ValueError,
}


def _compare(fn, x, ragged_args, segment_args, empty_args):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            expected_empty = fn(*empty_args)
        except Exception as err:
            # the backend's refusal, in the contract's kinds: the backend's TypeError and
            # ValueError as they are, torch's NotImplementedError and RuntimeError (a dtype
            # without the kernel, division by zero) and numpy's OverflowError translated
            kind = next(v for k, v in _CONTRACT_ERRORS.items() if isinstance(err, k))
            with pytest.raises(kind):
                fn(*ragged_args)
            return
        expected = [fn(*a) for a in segment_args]
        got = fn(*ragged_args)
    check_like_loop(got, x, expected, expected_empty)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("dtype", [*DTYPES, "float64", "int32"])
@pytest.mark.parametrize("op", UNARY)
def test_unary_operators_match_the_loop(place, layout, lengths, dtype, op):
    segs = segments_of(np.random.default_rng(1), lengths, layout[1], dtype)
    x = ragged(segs, place, layout, dtype)
    before = snapshot(x)
    empty = on(np.zeros((0, *layout[1]), dtype), place)
    _compare(UNARY[op], x, (x,), [(s,) for s in x.unbind()], (empty,))
    check_untouched(before, x)


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_tensor_on_the_left_dispatches_to_the_ragged_array(place):
    segs = segments_of(np.random.default_rng(2), LENGTHS, (3,), "float32")
    x = ragged(segs, place, (ra.RaggedArray, (3,)), "float32")
    row = on(np.array([1.0, -2.0, 3.0], np.float32), place)
    zero_d = on(np.array(2.0, np.float32), place)
    for fn in (operator.add, operator.mul, operator.sub, operator.lt, operator.eq):
        for left in (row, zero_d):
            _compare(fn, x, (left, x), [(left, s) for s in x.unbind()], (left, x.values[:0]))


def test_numpy_on_the_left_dispatches_to_the_ragged_array():
    segs = segments_of(np.random.default_rng(3), LENGTHS, (3,), "float64")
    x = ragged(segs, ("numpy", "cpu"), (ra.RaggedArray, (3,)), "float64")
    row = np.array([1.0, -2.0, 3.0])
    for left in (row, np.float64(2.5), np.array(2.5)):
        for fn in (operator.add, operator.truediv, operator.ge):
            _compare(fn, x, (left, x), [(left, s) for s in x.unbind()], (left, x.values[:0]))


@pytest.mark.parametrize("place", PLACES)
def test_ragged_items_of_fewer_dims_align_to_the_right(place):
    rng = np.random.default_rng(4)
    vectors = segments_of(rng, LENGTHS, (3,), "float32")
    scalars = segments_of(rng, LENGTHS, (), "float32")
    x = ragged(vectors, place, (ra.RaggedArray, (3,)), "float32")
    s = ragged(scalars, place, (ra.RaggedArray, ()), "float32")
    got = x * s
    want = [a * b[:, None] for a, b in zip(vectors, scalars, strict=True)]
    assert got.item_shape == (3,)
    for g, w in zip(got.unbind(), want, strict=True):
        np.testing.assert_allclose(host(g), w, rtol=1e-6)
    assert (s + x).item_shape == (3,)


@pytest.mark.parametrize("place", PLACES)
def test_comparisons_are_elementwise_and_equal_is_the_whole_array_test(place):
    segs = segments_of(np.random.default_rng(5), LENGTHS, (2,), "float32")
    x = ragged(segs, place, (ra.RaggedArray, (2,)), "float32")
    same = x.clone()
    eq = x == same
    assert eq.backend == x.backend and host(eq.values).dtype == np.bool_
    assert host(eq.values).all() and not host((x != same).values).any()
    assert x.equal(same) and not x.equal(x + 1)
    assert (x == None) is False  # noqa: E711 -- unknown operands compare by identity
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x == same)
    with pytest.raises(ValueError, match="equal"):
        assert x == same


def test_ragged_arrays_stay_hashable_by_identity():
    x = ra.RaggedArray.from_lengths(np.arange(4.0), [1, 3])
    y = x.clone()
    table = {x: "x", y: "y"}  # dicts and sets compare keys by identity first
    assert table[x] == "x" and table[y] == "y" and len({x, y, x}) == 2
    assert hash(x) != hash(y)
    # as with torch tensors, weak references compare their referents with ==, so a weak
    # cache keyed on ragged arrays must compare keys by identity
    cache = torch.utils.weak.WeakIdKeyDictionary({x: "x", y: "y"})
    assert cache[x] == "x" and cache[y] == "y"
    with pytest.raises(ValueError, match="ambiguous"):
        weakref.WeakKeyDictionary({x: "x"})[x]


def test_in_place_operators_make_new_arrays():
    x = ra.RaggedArray.from_lengths(np.arange(4.0), [1, 3])
    x0 = x
    x += 1
    assert x is not x0
    np.testing.assert_array_equal(x0.values, np.arange(4.0))
    np.testing.assert_array_equal(x.values, np.arange(4.0) + 1)


# ------------------------------------------------------------------ torch functions


TORCH_FUNCTIONS = {
    "exp": torch.exp,
    "log1p": lambda t: torch.log1p(torch.abs(t)),
    "abs": torch.abs,
    "clamp": lambda t: torch.clamp(t, -1.0, 2.0),
    "clamp-kw": lambda t: torch.clamp(t, min=-1.0),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "where": lambda t: torch.where(t > 1, t, -t),
    "where-scalar": lambda t: torch.where(t > 1, 0.5, t),
    "maximum": lambda t: torch.maximum(t, t * -2),
    "isnan": lambda t: torch.isnan(t / t),
    "nan_to_num": lambda t: torch.nan_to_num(torch.log(t), nan=0.0),
    "add-alpha": lambda t: torch.add(t, t, alpha=2),
    "F.relu": F.relu,
    "F.gelu": F.gelu,
    "F.gelu-tanh": lambda t: F.gelu(t, approximate="tanh"),
    "F.silu": F.silu,
    "F.softplus": F.softplus,
    "F.leaky_relu": lambda t: F.leaky_relu(t, 0.1),
    "F.hardswish": F.hardswish,
    "F.logsigmoid": F.logsigmoid,
    "F.dropout-eval": lambda t: F.dropout(t, 0.5, training=False),
    "floor_divide": lambda t: torch.floor_divide(t, 0.7),
    "frexp-mantissa": lambda t: torch.frexp(t).mantissa,
}
INT_FUNCTIONS = ["abs", "clamp", "maximum", "where", "add-alpha"]


# torch's aliases and torch.special's twins, beside the function they name (ATen tags
# only the canonical op as pointwise): (alias, canonical)
ALIASES = {
    "absolute": (torch.absolute, torch.abs),
    "negative": (torch.negative, torch.neg),
    "subtract": (lambda t: torch.subtract(t, 1.5), lambda t: t - 1.5),
    "multiply": (lambda t: torch.multiply(t, 2), lambda t: t * 2),
    "divide": (lambda t: torch.divide(t, 3), lambda t: t / 3),
    "arcsin": (torch.arcsin, torch.asin),
    "arctan2": (lambda t: torch.arctan2(t, t + 2), lambda t: torch.atan2(t, t + 2)),
    "greater_equal": (lambda t: torch.greater_equal(t, 0.5), lambda t: t >= 0.5),
    "not_equal": (lambda t: torch.not_equal(t, 0.5), lambda t: t != 0.5),
    "fix": (lambda t: torch.fix(t * 3), lambda t: torch.trunc(t * 3)),
    "special.erf": (torch.special.erf, torch.erf),
    "special.expm1": (torch.special.expm1, torch.expm1),
    "special.logit": (lambda t: torch.special.logit(t, eps=1e-3), lambda t: torch.logit(t, 1e-3)),
    "special.psi": (torch.special.psi, torch.digamma),
    "special.gammaln": (torch.special.gammaln, torch.lgamma),
    "special.gammainc": (
        lambda t: torch.special.gammainc(t.detach(), t),  # (torch has no grad for the first)
        lambda t: torch.igamma(t.detach(), t),
    ),
    "special.ndtr": (torch.special.ndtr, lambda t: 0.5 * (1 + torch.erf(t / 2**0.5))),
    "special.round": (torch.special.round, torch.round),
    "special.multigammaln": (
        lambda t: torch.special.multigammaln(t + 2, 2),
        lambda t: torch.mvlgamma(t + 2, 2),
    ),
    "isclose": (lambda t: torch.isclose(t, t + 1e-9), lambda t: torch.ones_like(t, dtype=bool)),
}


@pytest.mark.parametrize("name", ALIASES)
def test_torch_aliases_are_elementwise_as_what_they_name(name):
    """They were refused as not elementwise: ATen tags only the canonical operators."""
    alias, canonical = ALIASES[name]
    values = torch.rand(6, 2, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    x = ra.RaggedArray.from_lengths(values, [2, 0, 4, 0])
    got = alias(x)
    want = canonical(values)
    assert type(got) is ra.RaggedArray and got.host_offsets.tolist() == [0, 2, 2, 6, 6]
    torch.testing.assert_close(got.values, want)
    if want.requires_grad:
        (g,) = torch.autograd.grad(got.values.sum(), values)
        (w,) = torch.autograd.grad(want.sum(), values)
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("place", TORCH_PLACES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("name", TORCH_FUNCTIONS)
def test_torch_functions_match_the_loop(place, layout, lengths, dtype, name):
    if dtype == "int64" and name not in INT_FUNCTIONS:
        pytest.skip("a float function")
    fn = TORCH_FUNCTIONS[name]
    x = ragged(
        segments_of(np.random.default_rng(6), lengths, layout[1], dtype), place, layout, dtype
    )
    before = snapshot(x)
    empty = x.values[:0]
    _compare(fn, x, (x,), [(s,) for s in x.unbind()], (empty,))
    check_untouched(before, x)


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_torch_functions_of_two_ragged_arrays_and_item_tensors(place):
    rng = np.random.default_rng(7)
    layout = (ra.RaggedArray, (3,))
    x = ragged(segments_of(rng, LENGTHS, (3,), "float32"), place, layout, "float32")
    y = ragged(segments_of(rng, LENGTHS, (3,), "float32"), place, layout, "float32")
    row = on(np.array([0.5, -1.0, 2.0], np.float32), place)
    cases = [
        (torch.maximum, (x, y)),
        (torch.where, (x > y, x, row)),
        (torch.atan2, (row, x)),
        (lambda a, b: torch.lerp(a, b, 0.25), (x, y)),
        (lambda a, b: torch.clamp(a, min=b), (x, row)),
    ]
    for fn, args in cases:
        per_segment = [
            tuple(a.unbind()[i] if isinstance(a, ra.RaggedArray) else a for a in args)
            for i in range(len(x))
        ]
        empty = tuple(a.values[:0] if isinstance(a, ra.RaggedArray) else a for a in args)
        _compare(fn, x, args, per_segment, empty)


@pytest.mark.parametrize("place", TORCH_PLACES)
def test_dropout_zeroes_or_scales_each_element(place):
    x = ragged(
        segments_of(np.random.default_rng(8), [400, 0, 600], (), "float32"),
        place,
        (ra.RaggedArray, ()),
        "float32",
    )
    y = F.dropout(x, 0.5, training=True)
    np.testing.assert_array_equal(y.host_offsets, x.host_offsets)
    kept = host(y.values) != 0
    np.testing.assert_allclose(host(y.values)[kept], 2 * host(x.values)[kept], rtol=1e-6)
    assert 0.3 < kept.mean() < 0.7


def test_torch_gradients_match_the_loop():
    rng = np.random.default_rng(9)
    layout = (ra.RaggedArray, (3,))
    xs = segments_of(rng, LENGTHS, (3,), "float64")
    ys = segments_of(rng, LENGTHS, (3,), "float64")

    def f(a, b, w):
        return ((a * w + torch.exp(a) - a**2) / (1 + abs(b)) + F.softplus(-b) * torch.tanh(a)) ** 2

    x = ragged(xs, ("torch", "cpu"), layout, "float64")
    y = ragged(ys, ("torch", "cpu"), layout, "float64")
    xv = x.values.clone().requires_grad_()
    yv = y.values.clone().requires_grad_()
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    out = f(ra.RaggedArray.from_lengths(xv, LENGTHS), ra.RaggedArray.from_lengths(yv, LENGTHS), w)
    assert out.requires_grad
    out.values.sum().backward()

    seg_x = [torch.from_numpy(s).requires_grad_() for s in xs]
    seg_y = [torch.from_numpy(s).requires_grad_() for s in ys]
    w2 = w.detach().clone().requires_grad_()
    sum(f(a, b, w2).sum() for a, b in zip(seg_x, seg_y, strict=True)).backward()
    np.testing.assert_allclose(xv.grad.numpy(), torch.cat([s.grad for s in seg_x]).numpy())
    np.testing.assert_allclose(yv.grad.numpy(), torch.cat([s.grad for s in seg_y]).numpy())
    np.testing.assert_allclose(w.grad.numpy(), w2.grad.numpy())


def test_torch_gradcheck_through_operators_and_functions():
    values = torch.rand(7, 2, dtype=torch.float64, requires_grad=True)

    def f(v):
        x = ra.RaggedArray.from_lengths(v, [3, 0, 4])
        return (torch.sigmoid(x) * 3 - 1 / (1 + x) + F.gelu(x)).values

    assert torch.autograd.gradcheck(f, (values,))


# ----------------------------------------------------------------------- numpy ufuncs


UFUNCS = {
    "exp": np.exp,
    "add-1": lambda a: np.add(a, 1),
    "maximum": lambda a: np.maximum(a, a * -2),
    "isnan": lambda a: np.isnan(np.log(a)),
    "sqrt-abs": lambda a: np.sqrt(np.abs(a)),
    "negative": np.negative,
    "logical_not": np.logical_not,
    "add-dtype": lambda a: np.add(a, 2, dtype=np.float64),
    "divmod": lambda a: np.divmod(a, 3)[0],
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
@pytest.mark.parametrize("dtype", [*DTYPES, "float64"])
@pytest.mark.parametrize("name", UFUNCS)
def test_numpy_ufuncs_match_the_loop(layout, lengths, dtype, name):
    place = ("numpy", "cpu")
    x = ragged(
        segments_of(np.random.default_rng(10), lengths, layout[1], dtype), place, layout, dtype
    )
    before = snapshot(x)
    fn = UFUNCS[name]
    _compare(fn, x, (x,), [(s,) for s in x.unbind()], (x.values[:0],))
    check_untouched(before, x)


def test_ufuncs_with_several_outputs_give_a_tuple_of_ragged_arrays():
    x = ra.RaggedArray.from_lengths(np.arange(1.0, 6.0), [2, 0, 3])
    quotient, remainder = np.divmod(x, 2)
    for got, want in ((quotient, np.arange(1.0, 6.0) // 2), (remainder, np.arange(1.0, 6.0) % 2)):
        assert isinstance(got, ra.RaggedArray)
        np.testing.assert_array_equal(got.values, want)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("place", PLACES)
def test_different_offsets_are_refused(place):
    x = ra.RaggedArray.from_lengths(on(np.arange(5.0), place), [2, 3])
    for other in (x[::-1], x[:1], ra.RaggedArray.from_lengths(x.values, [5])):
        with pytest.raises(ValueError, match="equal offsets"):
            x + other
        with pytest.raises(ValueError, match="equal offsets"):
            x < other  # noqa: B015


@pytest.mark.parametrize("place", PLACES)
def test_operands_with_more_dims_than_items_are_refused(place):
    x = ra.RaggedArray.from_lengths(on(np.zeros((5, 3)), place), [2, 0, 3])
    per_segment = on(np.ones((3, 3)), place)  # (m, 3): never broadcast implicitly
    for other in (per_segment, on(np.ones((5, 3)), place), on(np.ones((1, 1, 3)), place)):
        with pytest.raises(ValueError, match=r"x\.broadcast"):
            x + other
        with pytest.raises(ValueError, match=r"x\.broadcast"):
            other * x
    # the explicit way works
    np.testing.assert_array_equal(host((x + x.broadcast(per_segment)).values), np.ones((5, 3)))


def test_backends_are_never_mixed():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    t = x.torch()
    for a, b in ((x, torch.tensor(1.0)), (t, np.array(1.0)), (x, t), (t, x)):
        with pytest.raises(TypeError, match=r"numpy|torch"):
            a + b
        with pytest.raises(TypeError):
            b + a
    with pytest.raises(TypeError, match=r"x\.torch\(\)"):
        torch.exp(x)
    with pytest.raises(TypeError, match="torch-backed"):
        np.exp(t)
    with pytest.raises(TypeError, match="torch-backed"):
        np.multiply(t, np.float64(2.0))
    assert (t * np.float64(2.0)).backend == "torch"  # numpy scalars are scalars


def test_ufunc_methods_and_generalized_ufuncs_are_refused():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    for call in (
        lambda: np.add.reduce(x),
        lambda: np.add.accumulate(x),
        lambda: np.add.reduceat(x, [0]),
        lambda: np.add.outer(x, x),
        lambda: np.add.at(x, [0], 1),
        lambda: np.matmul(x, x),
        lambda: np.exp(x, out=np.empty(3)),
        lambda: np.sum(x),
        lambda: np.concatenate([x, x]),
    ):
        with pytest.raises(TypeError, match=r"map|out="):
            call()


@pytest.mark.parametrize(
    "call",
    [
        torch.sum,
        lambda t: torch.matmul(t, t),
        torch.max,
        lambda t: torch.cumsum(t, 0),
        lambda t: torch.cat([t, t]),
        lambda t: torch.softmax(t, 0),
        lambda t: torch.where(t > 0),
        lambda t: torch.exp(t, out=torch.empty(3)),
        lambda t: torch.Tensor.add_(t, 1),
        lambda t: F.linear(t, torch.ones(1, 1)),
    ],
)
def test_torch_functions_that_are_not_elementwise_are_refused(call):
    t = ra.RaggedArray.from_lengths(torch.arange(3.0), [1, 2])
    before = t.values.clone()
    with pytest.raises(TypeError, match=r"map|out=|one row per item|descriptor"):
        call(t)
    assert torch.equal(t.values, before)


def test_not_elementwise_message_names_map_and_the_reductions():
    t = ra.RaggedArray.from_lengths(torch.arange(3.0), [1, 2])
    with pytest.raises(TypeError, match=r"torch\.sum: .*x\.map\(fn\).*x\.sum\(\)"):
        torch.sum(t)
    # one-argument where gives positions (it said an elementwise call must return rows)
    with pytest.raises(TypeError, match=r"torch\.where: with one argument .*x\.map\(fn\)"):
        torch.where(t > 0)


def test_the_elementwise_verdicts_come_from_torch_tags():
    from raggedarray._elementwise import torch_elementwise

    for fn in (torch.exp, torch.where, torch.clamp, F.relu, F.gelu, torch.special.i1e):
        assert torch_elementwise(fn), fn
    for fn in (torch.sum, torch.max, torch.equal, torch.matmul, torch.Tensor.exp_, torch.cumsum):
        assert not torch_elementwise(fn), fn


# ------------------------------------------------------------------- shape and dtypes


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("lengths", LENGTH_CASES)
def test_shape_and_ndim(place, layout, lengths):
    x = ragged(
        segments_of(np.random.default_rng(11), lengths, layout[1], "float32"),
        place,
        layout,
        "float32",
    )
    assert x.shape == (len(lengths), None, *layout[1])
    assert x.ndim == 2 + len(layout[1])


CASTS = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "int": "int32",
    "long": "int64",
    "bool": "bool",
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("method", CASTS)
def test_dtype_shortcuts(place, method):
    segs = segments_of(np.random.default_rng(12), LENGTHS, (2,), "float64")
    x = ragged(segs, place, (ra.RaggedArray, (2,)), "float64")
    y = getattr(x, method)()
    want = np.dtype(CASTS[method])
    assert y.backend == x.backend and type(y) is type(x)
    np.testing.assert_array_equal(y.host_offsets, x.host_offsets)
    assert host(y.values).dtype == want
    for got, seg in zip(y.unbind(), segs, strict=True):
        np.testing.assert_array_equal(host(got), seg.astype(want))
    assert y.equal(x.astype(want)) and y.equal(x.astype(CASTS[method]))


def test_astype_maps_dtypes_across_backends_and_bfloat16_needs_torch():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    assert x.astype(torch.float16).dtype == np.float16  # numpy values stay numpy
    assert x.torch().astype(np.float32).dtype == torch.float32
    assert x.torch().bfloat16().dtype == torch.bfloat16
    with pytest.raises(TypeError, match="bfloat16"):
        x.bfloat16()
    with pytest.raises(TypeError, match="numpy"):
        x.astype(torch.bfloat16)


# ------------------------------------------------------------- operands and results


def test_lists_and_tuples_are_arrays_for_numpy_values():
    segs = segments_of(np.random.default_rng(11), LENGTHS, (3,), "float64")
    x = ragged(segs, ("numpy", "cpu"), (ra.RaggedArray, (3,)), "float64")
    before = snapshot(x)
    for row in ([1.0, -2.0, 3.0], (1, 2, 3), [[0.5], [2.0], [4.0]][0]):
        as_array = np.asarray(row)
        cases = [
            (operator.add, (x, row), [(s, as_array) for s in x.unbind()]),
            (operator.sub, (row, x), [(as_array, s) for s in x.unbind()]),
            (operator.lt, (row, x), [(as_array, s) for s in x.unbind()]),
            (np.maximum, (x, row), [(s, as_array) for s in x.unbind()]),
        ]
        for fn, args, per_segment in cases:
            empty = tuple(x.values[:0] if a is x else np.asarray(a) for a in args)
            _compare(fn, x, args, per_segment, empty)
    check_untouched(before, x)


def test_lists_are_checked_like_arrays_or_refused_for_torch_values():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])  # item_shape ()
    for call in (
        lambda: np.add(x, [10, 20, 30]),  # one value per item: a per-segment-like operand
        lambda: np.add([10, 20, 30], x),
        lambda: operator.add(x, [10, 20, 30]),
        lambda: operator.mul((10, 20, 30), x),
        lambda: np.add(x, [10]),
    ):
        with pytest.raises(ValueError, match=r"at most 0 dims.*x\.broadcast"):
            call()
    with pytest.raises(ValueError, match="rectangular"):
        operator.add(x.broadcast(np.zeros((2, 2))), [[1], [2, 3]])
    t = x.torch()
    for call in (
        lambda: operator.add(t, [1.0]),
        lambda: operator.add([1.0], t),
        lambda: t == (1.0,),
    ):
        with pytest.raises(TypeError, match=r"torch\.as_tensor"):
            call()
    for call in (lambda: torch.add(t, [1.0]), lambda: torch.where(t > 0, t, [1.0])):
        with pytest.raises(TypeError):  # torch's own refusal, as for a plain tensor
            call()
    np.testing.assert_array_equal(x.values, np.arange(3.0))


def test_ufunc_where_is_refused_like_out():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    for where in (np.array(False), True, np.array([True, False, True])):
        with pytest.raises(TypeError, match=r"numpy\.add: where= is not supported"):
            np.add(x, 1, where=where)
    np.testing.assert_array_equal(x.values, np.arange(3.0))


def test_ufunc_out_is_refused_naming_what_was_passed():
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    out = np.zeros(3)
    with pytest.raises(TypeError, match=r"got out=numpy array of shape \(3,\) and dtype float64$"):
        np.add(x, 1, out=out)
    with pytest.raises(TypeError, match=r"numpy\.divmod: .*got out=RaggedArray, NoneType$"):
        np.divmod(x, 2, out=(x, None))
    np.testing.assert_array_equal(x.values, np.arange(3.0))
    assert not out.any()


@pytest.mark.parametrize("place", PLACES)
def test_augmented_assignment_to_a_segment_writes_through(place):
    x = ra.RaggedArray.from_lengths(on(np.arange(5.0), place), [2, 0, 3])
    want = [host(s).copy() for s in x.unbind()]
    x[2] += 10  # t = x[2]; t += 10 (in the view); x[2] = t: nothing left to copy
    want[2] += 10
    x[0] = on(np.array([7.0, 8.0]), place)  # an array of the segment's shape is copied in
    want[0] = np.array([7.0, 8.0])
    x[-1] *= 2
    want[2] *= 2
    for got, w in zip(x.unbind(), want, strict=True):
        np.testing.assert_array_equal(host(got), w)
    before = snapshot(x)
    with pytest.raises(ValueError, match=r"__setitem__: .*shape"):
        x[0] = on(np.zeros(3), place)  # the segment holds 2 items: its length is fixed
    for key in (slice(0, 1), [0], 0.0):
        with pytest.raises(TypeError, match=r"__setitem__: "):
            x[key] = x[0]
    with pytest.raises(IndexError):
        x[3] = on(np.zeros(2), place)
    check_untouched(before, x)


def test_assigning_a_value_over_the_same_memory_from_another_storage():
    """Overlap was read from the storages' first addresses: two tensors made over one
    buffer (torch.frombuffer, torch.from_numpy twice) have storages starting apart, and
    copy_ read what it had written ([3, 3, 3, 3])."""
    raw = bytearray(np.arange(8.0).tobytes())
    x = ra.RaggedArray(torch.frombuffer(raw, dtype=torch.float64), torch.tensor([0, 4, 8]))
    x[1] = torch.frombuffer(raw, dtype=torch.float64, offset=24, count=4)
    assert x.values.tolist() == [0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0]
    array = np.arange(8.0)
    y = ra.RaggedArray(torch.from_numpy(array), torch.tensor([0, 4, 8]))
    y[1] = torch.from_numpy(array[3:7])
    assert array.tolist() == [0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("place", PLACES)
def test_assigning_numbers_and_overlapping_views_to_a_segment(place):
    # numbers fill the segment on both backends alike: numpy scalars, 0-d keys, and a
    # source that overlaps the segment (copied first) are what plain code writes
    x = ra.RaggedArray.from_lengths(on(np.arange(5.0), place), [2, 3])
    want = [np.arange(2.0), np.arange(2.0, 5.0)]
    x[1] = np.float32(9)
    want[1][:] = 9
    x[on(np.array(0), place)] = 4
    want[0][:] = 4
    x[0] = x.values[1:3]  # overlaps segment 0 itself
    want[0] = np.array([4.0, 9.0])
    for got, w in zip(x.unbind(), want, strict=True):
        np.testing.assert_array_equal(host(got), w)
    u = ra.RaggedArray.from_lengths(on(np.zeros(3, np.uint8), place), [1, 2])
    u[1] = 255
    assert host(u.values).tolist() == [0, 255, 255]
    before = snapshot(u)
    for number, error in ((256, ValueError), (-1, ValueError), (1.0, TypeError)):
        with pytest.raises(error, match=r"__setitem__: the value must"):
            u[0] = number
    check_untouched(before, u)


NUMPY_SCALARS = [np.float64(2.5), np.float32(0.5), np.int64(3), np.bool_(True)]
# s OP t for a tensor t: the dunder of t that Python calls once s defers
TENSOR_REFLECTED = {
    "+": "__radd__",
    "-": "__rsub__",
    "*": "__rmul__",
    "/": "__rtruediv__",
    "//": "__rfloordiv__",
    "%": "__rmod__",
    "**": "__rpow__",
    "&": "__rand__",
    "|": "__ror__",
    "^": "__rxor__",
    "==": "__eq__",
    "!=": "__ne__",
    "<": "__gt__",
    "<=": "__ge__",
    ">": "__lt__",
    ">=": "__le__",
}


@pytest.mark.parametrize("dtype", ["float32", "int64"])
@pytest.mark.parametrize("op", BINARY)
def test_numpy_scalars_on_the_left_of_torch_values_are_the_reflected_operators(dtype, op):
    # np.float64(2) * x becomes np.multiply(np.float64(2), x): the ragged array answers with
    # its reflected operator, as a plain tensor does (torch tensors outrank numpy scalars,
    # which defer to the tensor's reflected dunder: the loop calls that on each segment;
    # numpy 1's comparisons gave a plain tensor a single bool instead)
    layout = (ra.RaggedArray, (3,))
    x = ragged(
        segments_of(np.random.default_rng(12), LENGTHS, (3,), dtype),
        ("torch", "cpu"),
        layout,
        dtype,
    )
    before = snapshot(x)

    def on_the_left(scalar, a):
        if isinstance(a, ra.RaggedArray):
            return BINARY[op](scalar, a)
        # the Python number it holds: torch alone reads an np.bool_ as a float
        return getattr(a, TENSOR_REFLECTED[op])(scalar.item())

    for scalar in NUMPY_SCALARS:
        segs = [(scalar, s) for s in x.unbind()]
        _compare(on_the_left, x, (scalar, x), segs, (scalar, x.values[:0]))
    check_untouched(before, x)


@pytest.mark.parametrize("place", PLACES)
def test_strings_are_not_numbers(place):
    x = ra.RaggedArray.from_lengths(on(np.arange(3.0), place), [1, 2])
    for text in ("a", np.str_("a"), b"a", np.bytes_(b"a")):
        for fn in (operator.eq, operator.ne, operator.add, operator.lt):
            with pytest.raises(TypeError, match="a string is not a number"):
                fn(x, text)
            with pytest.raises(TypeError, match="not a number"):
                fn(text, x)
    if place[0] == "numpy":
        with pytest.raises(TypeError, match="a string is not a number"):
            np.equal(x, "a")
    np.testing.assert_array_equal(host(x.values), np.arange(3.0))


@pytest.mark.parametrize("place", PLACES)
def test_operands_must_fit_the_items(place):
    x = ra.RaggedArray.from_lengths(on(np.ones((3, 2)), place), [1, 2])
    narrow = ra.RaggedArray.from_lengths(on(np.ones((3, 1)), place), [1, 2])
    wide = ra.RaggedArray.from_lengths(on(np.ones((3, 3)), place), [1, 2])
    before = snapshot(x, narrow, wide)
    fits = (
        r"operands must broadcast against the items of shape \({n},\); "
        r"got an operand of shape \(3,\)"
    )
    for fn in (operator.add, operator.mul, operator.lt):
        for a, b in ((x, on(np.ones(3), place)), (on(np.ones(3), place), x)):
            with pytest.raises(ValueError, match=fits.format(n=2)):
                fn(a, b)
        # an operand never grows the items: (1,) items with a (3,) operand
        with pytest.raises(ValueError, match=fits.format(n=1)):
            fn(narrow, on(np.ones(3), place))
        for a, b in ((x, wide), (wide, x)):
            with pytest.raises(ValueError, match=r"items that broadcast together; got item shapes"):
                fn(a, b)
    if place[0] == "torch":
        with pytest.raises(ValueError, match=r"torch\.where: .*item shapes \(2,\) and \(3,\)"):
            torch.where(x > 0, x, wide)
        with pytest.raises(ValueError, match=fits.format(n=2)):
            torch.maximum(x, torch.ones(3))
    else:
        with pytest.raises(ValueError, match=fits.format(n=2)):
            np.maximum(x, np.ones(3))
    check_untouched(before, x, narrow, wide)
    # what fits: ragged items broadcast together; operands of size 1 repeat within an item
    got = narrow * wide
    assert got.item_shape == (3,)
    loop = [a * b for a, b in zip(narrow.unbind(), wide.unbind(), strict=True)]
    check_like_loop(got, x, loop, wide.values[:0])
    one = on(np.array([2.0]), place)
    check_like_loop(x * one, x, [s * one for s in x.unbind()], x.values[:0])


def test_operands_on_another_device_are_named():
    x = ra.RaggedArray.from_lengths(torch.ones(3, 2), [1, 2])
    for other in (torch.ones(1, device="meta"), torch.ones((), device="meta")):
        with pytest.raises(
            ValueError, match=r"__add__: operands must be on the device .*cpu.*meta"
        ):
            x + other
        with pytest.raises(ValueError, match=r"torch\.maximum: .*device.*meta"):
            torch.maximum(x, other)
    assert (x + torch.tensor(1.0)).device == x.device  # a 0-d CPU tensor goes anywhere


@pytest.mark.parametrize("place", PLACES)
def test_results_of_dtypes_ragged_arrays_do_not_hold_are_refused(place):
    x = ra.RaggedArray.from_lengths(on(np.arange(3.0), place), [1, 2])
    before = snapshot(x)
    calls = [lambda: x + 1j, lambda: 1j * x, lambda: x ** (0.5 + 1j)]
    if place[0] == "numpy":
        calls += [
            lambda: x * np.complex64(1),
            lambda: np.add(x, 1, dtype=object),
            lambda: x.long() + np.timedelta64(1, "s"),
            lambda: x * np.clongdouble(1),
            lambda: np.multiply(x, 1, dtype=np.longdouble),
        ]
    else:
        calls += [lambda: x * torch.tensor(1j), lambda: torch.mul(x, 1j)]
    for call in calls:
        with pytest.raises(TypeError, match=r"an elementwise result must .*; got dtype"):
            call()
    check_untouched(before, x)
    assert (x + 1).dtype == x.dtype  # the refusals are not remembered as held dtypes


# --------------------------------------------------------------------------- cuda


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_operands_never_synchronise():
    x = ra.RaggedArray.from_lengths(torch.randn(50, 3, device="cuda"), [20, 0, 30])
    y = x.clone()
    row = torch.ones(3, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        z = torch.relu(x + y * row) == x
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert z.device == x.device and z.offsets.device == x.values.device


# ------------------------------------------------------------------------- hypothesis


@settings(max_examples=60, deadline=None)
@given(
    ragged_lists(),
    st.sampled_from(["numpy", "torch"]),
    st.sampled_from(["+", "-", "*", "/", "**", "<", "=="]),
    st.sampled_from(["scalar", "ragged", "last-dim"]),
    st.booleans(),
)
def test_hypothesis_operators_match_the_loop(case, backend, op, kind, reflected):
    _, item_shape, segs = case
    place = (backend, "cpu")
    cls = ra.RaggedImageBatch if len(item_shape) == 3 else ra.RaggedArray
    x = ragged(segs, place, (cls, item_shape), "float64")
    fn = BINARY[op]
    if kind == "scalar":
        other, per_seg = 1.5, [1.5] * len(segs)
    elif kind == "ragged":
        other = x * 0.5 + 1
        per_seg = list(other.unbind())
    else:
        other = on(
            np.linspace(-1, 1, item_shape[-1] if item_shape else 1).reshape(item_shape[-1:]), place
        )
        per_seg = [other] * len(segs)
    order = (lambda a, b: (b, a)) if reflected else (lambda a, b: (a, b))
    empty_other = other.values[:0] if kind == "ragged" else other
    before = snapshot(x)
    _compare(
        fn,
        x,
        order(x, other),
        [order(s, o) for s, o in zip(x.unbind(), per_seg, strict=True)],
        order(x.values[:0], empty_other),
    )
    check_untouched(before, x)
