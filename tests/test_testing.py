"""``ra.testing.assert_ragged_equal`` and ``ra.allclose``: exact integers, checked tolerances.

The oracle is a loop over the items with Python ints (exact at any size) or floats.
"""

from __future__ import annotations

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
