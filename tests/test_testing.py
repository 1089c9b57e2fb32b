"""``ra.testing.assert_ragged_equal`` and ``ra.allclose``: exact integers, checked tolerances.

The oracle is a loop over the items with Python ints (exact at any size) or floats.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import PLACES, on

import raggedarray as ra

BIG = 2**60  # past 2**53: float64 cannot tell BIG from BIG + 1


def _ints(values, place, dtype="int64"):
    return ra.RaggedArray.from_lengths(on(np.array(values, dtype=dtype), place), [1, 2])


def _loop_close(a, b, rtol, atol):
    """|a - b| <= atol + rtol * |b| item by item, with Python ints (exact)."""
    pairs = zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True)
    return all(abs(p - q) <= atol + rtol * abs(q) for p, q in pairs)


@pytest.mark.parametrize("place", PLACES)
def test_integers_compare_exactly_at_any_size(place):
    a = _ints([BIG, 1, 2], place)
    b = _ints([BIG + 1, 1, 2], place)
    assert not _loop_close([BIG, 1, 2], [BIG + 1, 1, 2], 0, 0)
    with pytest.raises(AssertionError, match=r"1 of 3 values are not close"):
        ra.testing.assert_ragged_equal(a, b)
    assert not ra.allclose(a, b, rtol=0, atol=0)
    ra.testing.assert_ragged_equal(a, a.clone())
    # a tolerance applies to the exact difference (1), not to float64 roundings (0)
    for atol, close in ((1, True), (0.5, False)):
        assert _loop_close([BIG], [BIG + 1], 0, atol) is close
        assert ra.allclose(a, b, rtol=0, atol=atol) is close
        if close:
            ra.testing.assert_ragged_equal(a, b, atol=atol)
        else:
            with pytest.raises(AssertionError):
                ra.testing.assert_ragged_equal(a, b, atol=atol)
    # relative: |BIG - (BIG + 1)| = 1 <= 2**-60 * (BIG + 1), but not 2**-61 * (BIG + 1)
    assert ra.allclose(a, b, rtol=2.0**-60, atol=0)
    assert not ra.allclose(a, b, rtol=2.0**-61, atol=0)


def test_unsigned_and_signed_integers_compare_exactly():
    big = ra.RaggedArray.from_lengths(np.array([2**64 - 1], dtype=np.uint64), [1])
    minus_one = ra.RaggedArray.from_lengths(np.array([-1]), [1])
    with pytest.raises(AssertionError):
        ra.testing.assert_ragged_equal(big, minus_one)
    assert not ra.allclose(big, minus_one)
    assert ra.allclose(big, minus_one, rtol=0, atol=2**64)
    # past 2**53, as the same value and one apart: numpy 1 compared these through float64
    signed = ra.RaggedArray.from_lengths(np.array([BIG, 7]), [1, 1])
    for other, equal in (([BIG, 7], True), ([BIG + 1, 7], False)):
        unsigned = ra.RaggedArray.from_lengths(np.array(other, dtype=np.uint64), [1, 1])
        for a, b in ((signed, unsigned), (unsigned, signed)):
            assert ra.allclose(a, b, rtol=0, atol=0) is equal
            assert a.equal(b) is equal
            assert (ra.testing.assert_ragged_equal(a, b) is None) if equal else True
            if not equal:
                with pytest.raises(AssertionError):
                    ra.testing.assert_ragged_equal(a, b)


def test_floats_compare_as_documented():
    x = ra.RaggedArray.from_lengths(np.array([1.0, 2.0, np.nan]), [1, 2])
    near = ra.RaggedArray.from_lengths(x.values + 1e-9, [1, 2])
    ra.testing.assert_ragged_equal(x, x.clone())  # NaNs in the same places are equal
    with pytest.raises(AssertionError):
        ra.testing.assert_ragged_equal(x, near)
    ra.testing.assert_ragged_equal(x, near, atol=1e-6)
    assert ra.allclose(x, near, equal_nan=True) and not ra.allclose(x, near)


@pytest.mark.parametrize(
    "check",
    [
        lambda a, **kw: ra.allclose(a, a, **kw),
        lambda a, **kw: ra.testing.assert_ragged_equal(a, a, **kw),
    ],
    ids=["allclose", "assert_ragged_equal"],
)
def test_tolerances_must_be_real_numbers(check):
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    for name in ("rtol", "atol"):
        for bad in ("x", None, True, np.array([0.1]), 1j):
            with pytest.raises(TypeError, match=rf"{name} must be a real number; got "):
                check(x, **{name: bad})
        for bad in (-1e-3, float("nan")):
            with pytest.raises(ValueError, match=rf"{name} must be >= 0; got "):
                check(x, **{name: bad})
        for good in (0, 1e-3, np.float32(0.5), np.int64(1), 1e300):
            check(x, **{name: good})


def _exact_close(p, q, rtol, atol):
    """|p - q| <= atol + rtol * |q| with exact fractions (floats read exactly)."""
    from fractions import Fraction

    p, q = Fraction(p), Fraction(q)
    return abs(p - q) <= Fraction(atol) + Fraction(rtol) * abs(q)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_64_bit_integers_against_floats_within_a_tolerance_exactly(place, dtype):
    """numpy's isclose rounds the integers to float64 first: 2**60 + 100 was within 1 of
    2.0**60, and 2**60 + 200 not within 200."""
    rng = np.random.default_rng(0)
    tolerances = [(0, 1), (0, 0.5), (0, 100), (0, 200), (1e-17, 0), (1e-16, 0), (0, 2**11)]
    for _ in range(30):
        base = int(rng.integers(2**53, 2**62))
        ints = [base + int(d) for d in rng.integers(0, 400, 3)]
        floats = [float(base), float(ints[1]), float(base + 2**10)]
        for i, f in zip(ints, floats, strict=True):  # one pair per array: each one counts
            a = ra.RaggedArray.from_lengths(on(np.array([i], dtype=dtype), place), [1])
            b = ra.RaggedArray.from_lengths(on(np.array([f]), place), [1])
            for (p, q), (x, y) in (((i, f), (a, b)), ((f, i), (b, a))):
                for rtol, atol in tolerances:
                    want = _exact_close(p, q, rtol, atol)
                    assert ra.allclose(x, y, rtol=rtol, atol=atol) is want, (p, q, rtol, atol)


def test_numpy_tolerances_and_many_large_integers():
    """Fraction() refused a numpy float32 tolerance; every integer past 2**53 was compared
    again in Python (1.5 s for 200 000 nanosecond timestamps), now only those near the bound."""
    a = ra.RaggedArray.from_lengths(np.array([2**60 + 100], np.uint64), [1])
    b = ra.RaggedArray.from_lengths(np.array([2.0**60]), [1])
    for tolerance in (np.float32(1e-3), np.float16(1e-3), np.int64(200)):
        assert ra.allclose(a, b, rtol=0, atol=tolerance) is _exact_close(
            2**60 + 100, 2.0**60, 0, tolerance.item()
        )
        if tolerance.dtype.kind == "f":  # relative: 1e-3 of 2**60 covers 100
            assert ra.allclose(a, b, rtol=tolerance, atol=0)
    stamps = np.arange(200_000, dtype=np.int64) + 1_700_000_000_000_000_000
    x = ra.RaggedArray.from_lengths(stamps, [200_000])
    y = ra.RaggedArray.from_lengths(stamps.astype(np.float64), [200_000])
    calls = []
    import fractions

    real = fractions.Fraction

    class Counting(real):
        def __new__(cls, *args):
            calls.append(1)
            return real.__new__(real, *args)

    import raggedarray._compare as compare

    compare.Fraction, saved = Counting, compare.Fraction
    try:
        assert ra.allclose(x, y, rtol=1e-9, atol=0)
    finally:
        compare.Fraction = saved
    assert len(calls) < 1000  # (pairs near the bound only: the float answer stands elsewhere)


def test_infinite_and_huge_tolerances_answer_without_warnings():
    x = ra.RaggedArray.from_lengths(np.array([1.0, 2.0, np.nan]), [1, 2])
    y = ra.RaggedArray.from_lengths(np.array([1.0, 5.0, np.nan]), [1, 2])
    big = ra.RaggedArray.from_lengths(np.array([2**60, 1, 2], dtype=np.int64), [1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for atol in (float("inf"), 2**64, 10**400):
            assert ra.allclose(x, y, atol=atol, equal_nan=True)
            assert not ra.allclose(x, y, atol=atol)  # (NaN is never close unless equal_nan)
            assert ra.allclose(big, x, atol=atol, equal_nan=True) is False  # NaN
            assert ra.allclose(big, big.double(), atol=atol)
        assert ra.allclose(x, y, rtol=float("inf"), equal_nan=True)


def test_failures_name_the_element_the_first_and_the_largest():
    values = np.zeros((2, 3, 64, 64), np.float32)
    other = values.copy()
    other[1, 2, 40, 7] = 1.0
    other[0, 0, 0, 1] = 0.5
    a = ra.RaggedImageBatch.from_lengths(values, [0, 2])
    with pytest.raises(AssertionError) as info:
        ra.testing.assert_ragged_equal(a, ra.RaggedImageBatch.from_lengths(other, [0, 2]))
    message = str(info.value)
    assert len(message) < 400  # (it printed both whole items: 1.5 MB for 224 x 224 images)
    assert "2 of 24576 values are not close" in message
    assert "first at segment 1, item 0, element (0, 0, 1): 0.0 != 0.5" in message
    assert "largest difference at segment 1, item 1, element (2, 40, 7): 0.0 != 1.0" in message


REFERENCES = {
    "reference_reduce": lambda v, o: ra.testing.reference_reduce("sum", v, o),
    "reference_softmax": lambda v, o: ra.testing.reference_softmax(v, o),
    "reference_segment_op": lambda v, o: ra.testing.reference_segment_op("argmax", v, o),
    "reference_cumsum": lambda v, o: ra.testing.reference_cumsum(v, o),
    "reference_sort": lambda v, o: ra.testing.reference_sort(v, o),
}


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize(
    "offsets, match",
    [
        ([0, 2, 3], r"offsets\[-1\] must equal the number of items"),
        ([0, 3, 2, 5], "offsets must be non-decreasing"),
        ([1, 5], r"offsets\[0\] must be 0"),
    ],
    ids=["short", "decreasing", "not-from-0"],
)
def test_reference_loops_refuse_offsets_the_operations_refuse(name, offsets, match):
    # an oracle that answered these would compare a wrong answer with a right one
    values = np.array([1.0, 2.0, 4.0, 7.0, 7.0])
    with pytest.raises(ValueError, match=f"{name}: {match}"):
        REFERENCES[name](values, offsets)
    with pytest.raises(ValueError, match=f"{name}: {match}"):
        REFERENCES[name](torch.from_numpy(values), offsets)


@pytest.mark.parametrize("op", ["mean", "logsumexp", "var", "std"])
def test_reference_reduce_takes_integers_as_the_operation_does(op):
    for values in (np.array([1, 2]), torch.tensor([1, 2]), np.array([True, False])):
        want = ra.testing.reference_reduce(op, values, [0, 2])
        got = getattr(ra, f"segment_{op}")(values, [0, 2])
        assert got.dtype == want.dtype
        assert np.allclose(np.asarray(got), np.asarray(want))


def test_reference_inputs_of_the_wrong_kind_are_refused():
    for fn in (ra.testing.reference_reduce, ra.testing.reference_segment_op):
        with pytest.raises(TypeError, match=r"op must be a str, the first argument; got ndarray"):
            fn(np.arange(3.0), [0, 3], "sum")  # (the order of the functional reductions)
    with pytest.raises(TypeError, match="reference_reduce: values must be a numpy array"):
        ra.testing.reference_reduce("sum", [1.0, 2.0], [0, 2])
    with pytest.raises(TypeError, match="reference_reduce: values must hold real numbers"):
        ra.testing.reference_reduce("sum", np.array(["a", "b"]), [0, 2])
    with pytest.raises(TypeError, match="reference_softmax: values must hold real numbers"):
        ra.testing.reference_softmax(np.array(["a", "b"]), [0, 2])
    np.testing.assert_allclose(  # integers: as the operation takes them, float64 for numpy
        ra.testing.reference_softmax(np.array([1, 2]), [0, 2]),
        ra.segment_softmax(np.array([1, 2]), [0, 2]),
    )
    with pytest.raises(ValueError, match="reference_sort: k must be >= 0"):
        ra.testing.reference_sort(np.array([3.0, 1.0]), [0, 2], k=-1)
    for rows in (np.array([10, 20]), np.array([10, 20, 30, 40])):
        with pytest.raises(ValueError, match="reference_broadcast: per_segment must have one"):
            ra.testing.reference_broadcast(rows, [0, 2, 2, 3])


def test_the_oracle_takes_wide_torch_integers_as_the_reductions_do():
    # it cast them to float32 first: var 42.7 where the library gives the true 6.67
    values = torch.tensor([[100_000_001], [100_000_003], [100_000_005], [100_000_007]])
    for op in ("var", "std", "mean", "logsumexp"):
        want = getattr(ra, f"segment_{op}")(values, [0, 4])
        got = ra.testing.reference_reduce(op, values, [0, 4])
        assert got.dtype == want.dtype == torch.float32 and torch.equal(got, want), op
    got = ra.testing.reference_softmax(values[:2], [0, 2])
    assert torch.equal(got, ra.segment_softmax(values[:2], [0, 2]))
