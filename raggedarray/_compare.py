"""Comparing ragged arrays: structure first (offsets, item shape), then values.

Values are compared on the host. Integers (and booleans) against integers compare exactly,
at any size: ``2**60`` and ``2**60 + 1`` differ, where a float64 comparison would call them
equal; a tolerance is then applied to the exact difference. ``equal`` compares 64-bit
integers with floats exactly too (``2**53 + 1`` is not ``2.0**53``). Other pairs of
dtypes compare as ``np.isclose`` does.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Any

import numpy as np

from . import _backend, _checks


def host_values(x: Any) -> np.ndarray:
    """The values of a ragged array as a host numpy array (a copy from a GPU)."""
    return host_array(x.values)


def host_array(values: Any) -> np.ndarray:
    """A host numpy array of values: a tensor detached, moved to the host, bfloat16 widened."""
    if _backend.is_tensor(values):
        if values.dtype == _backend.torch_module().bfloat16:
            values = values.float()
        values = _backend.host_numpy(values)
    return values


def structure_mismatch(a: Any, b: Any) -> str | None:
    """Why ``a`` and ``b`` differ in segments or item shape, or None when they agree."""
    if len(a) != len(b):
        return f"num_segments differ: {len(a)} != {len(b)}"
    if a.item_shape != b.item_shape:
        return f"item shapes differ: {a.item_shape} != {b.item_shape}"
    if not np.array_equal(a.host_offsets, b.host_offsets):
        i = int(np.flatnonzero(a.host_offsets != b.host_offsets)[0])
        return f"offsets differ first at offsets[{i}]: {a.host_offsets[i]} != {b.host_offsets[i]}"
    return None


def ragged_equal(a: Any, b: Any) -> bool:
    """Same segments, item shape and values (exactly; NaN never equals NaN)."""
    if structure_mismatch(a, b) is not None:
        return False
    va, vb = host_values(a), host_values(b)
    if va.dtype.kind in "biu" and vb.dtype.kind in "biu":
        return bool(_equal_integers(va, vb).all())
    wide = _wide_integers_and_floats(va, vb)
    if wide is not None:
        return bool(_equal_integer_float(*wide).all())
    return bool(np.array_equal(va, vb))


def _wide_integers_and_floats(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ints, floats)`` when one holds 64-bit integers and the other floats, else None.

    numpy compares such a pair through float64, which rounds the integers; floats hold
    every smaller integer exactly.
    """
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8 and b.dtype.kind == "f":
        return a, b
    if b.dtype.kind in "iu" and b.dtype.itemsize == 8 and a.dtype.kind == "f":
        return b, a
    return None


def _equal_integer_float(ints: np.ndarray, floats: np.ndarray) -> np.ndarray:
    """``ints == floats`` exactly, for 64-bit integers (numpy rounds them to float64).

    Where the rounded comparison holds, the float is an integer of at most 2**64: it is
    read back as an int64 (below 2**63) or a uint64 and compared as integers.
    """
    f = floats.astype(np.float64)
    equal = np.asarray(ints == f)
    maybe = np.flatnonzero(equal)
    if maybe.size:
        i, g = ints.reshape(-1)[maybe], f.reshape(-1)[maybe]
        low = g < 2.0**63
        exact = np.zeros(maybe.size, dtype=bool)
        exact[low] = _equal_integers(i[low], g[low].astype(np.int64))
        high = ~low & (g < 2.0**64)
        exact[high] = _equal_integers(i[high], g[high].astype(np.uint64))
        equal.reshape(-1)[maybe] = exact
    return equal


def ragged_allclose(a: Any, b: Any, rtol: float, atol: float, equal_nan: bool) -> bool:
    """Same segments and item shape, values within ``atol + rtol * |b|``."""
    if structure_mismatch(a, b) is not None:
        return False
    return bool(close_mask(host_values(a), host_values(b), rtol, atol, equal_nan).all())


def close_mask(
    a: np.ndarray, b: np.ndarray, rtol: float, atol: float, equal_nan: bool
) -> np.ndarray:
    """Where ``|a - b| <= atol + rtol * |b|``, elementwise; integers exactly (module doc)."""
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        return _close_integers(a, b, rtol, atol)
    wide = _wide_integers_and_floats(a, b)
    if wide is not None:
        exact = _equal_integer_float(*wide)
        if rtol or atol:
            exact |= _isclose(a, b, rtol, atol, equal_nan=False)
            _recheck_beyond_float64(exact, a, b, wide[0], rtol, atol)
        return exact
    return _isclose(a, b, rtol, atol, equal_nan)


def _isclose(a: np.ndarray, b: np.ndarray, rtol: Any, atol: Any, equal_nan: bool) -> np.ndarray:
    """``np.isclose`` with the tolerances as floats, quiet about infinite ones.

    (A Python int past 2**64 is an object to numpy; numpy warns about an infinite
    tolerance, then answers as the formula does.)
    """
    rtol, atol = _as_float(rtol), _as_float(atol)
    if math.isinf(rtol) or math.isinf(atol):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


def _exact(tolerance: Any) -> Fraction:
    """A tolerance as an exact fraction (numpy floats read through float, exactly)."""
    if isinstance(tolerance, (int, np.integer)):
        return Fraction(int(tolerance))
    return Fraction(float(tolerance))


def _as_float(tolerance: Any) -> float:
    """A tolerance as a float; an int too large for one is infinite."""
    try:
        return float(tolerance)
    except OverflowError:
        return math.inf


def _recheck_beyond_float64(
    close: np.ndarray, a: np.ndarray, b: np.ndarray, ints: np.ndarray, rtol: Any, atol: Any
) -> None:
    """Redo ``close`` exactly where the integers exceed float64's 53 bits (in place).

    There ``np.isclose`` rounds them first, which both admits (2**60 + 100 within 1 of
    2.0**60) and refuses (2**60 + 200 not within 200) pairs wrongly. Such integers are few;
    each pair is compared as exact fractions.
    """
    rtol_x, atol_x = _as_float(rtol), _as_float(atol)
    if math.isinf(rtol_x) or math.isinf(atol_x):
        return  # (every finite pair is close, as isclose said)
    flat_a, flat_b, flat_close = a.reshape(-1), b.reshape(-1), close.reshape(-1)
    beyond = np.flatnonzero(np.abs(ints.reshape(-1).astype(np.float64)) >= 2.0**53)
    if beyond.size:  # only pairs whose float64 answer rounding could flip: near the bound
        fa, fb = flat_a[beyond].astype(np.float64), flat_b[beyond].astype(np.float64)
        with np.errstate(all="ignore"):
            margin = np.abs(np.abs(fa - fb) - (atol_x + rtol_x * np.abs(fb)))
            near = ~(margin > np.maximum(np.abs(fa), np.abs(fb)) * 2.0**-48)
        beyond = beyond[near]
    if not beyond.size:
        return
    rtol_f, atol_f = _exact(rtol), _exact(atol)
    for k in beyond:
        x, y = flat_a[k].item(), flat_b[k].item()
        if not (math.isfinite(x) and math.isfinite(y)):
            continue  # (a float NaN or inf: isclose's answer holds)
        fx, fy = Fraction(x), Fraction(y)
        flat_close[k] = abs(fx - fy) <= atol_f + rtol_f * abs(fy)


def _close_integers(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    close = _equal_integers(a, b)
    if (rtol or atol) and not close.all():
        if math.isinf(_as_float(rtol)) or math.isinf(_as_float(atol)):
            close[...] = True  # (an int tolerance past float64 too: every pair is within it)
            return close
        differ = ~close  # exact differences as Python ints, where the values differ
        da, db = a[differ].astype(object), b[differ].astype(object)
        rtol_f, atol_f = _exact(rtol), _exact(atol)  # (a float plus a huge int overflowed)
        close[differ] = (abs(da - db) <= atol_f + rtol_f * abs(db)).astype(bool)
    return close


def _equal_integers(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a == b`` exactly: numpy 1 compares int64 with uint64 through float64.

    A signed value equals an unsigned one when it is not negative and its uint64 twin is.
    """
    unsigned = [x.dtype.kind == "u" and x.dtype.itemsize == 8 for x in (a, b)]
    if unsigned[0] == unsigned[1] or "i" not in (a.dtype.kind, b.dtype.kind):
        return np.asarray(a == b)
    u, i = (a, b) if unsigned[0] else (b, a)
    return np.asarray((i >= 0) & (u == i.astype(np.uint64)))


def check_tolerances(rtol: Any, atol: Any, where: str) -> None:
    """``rtol`` and ``atol``: real numbers, not negative (inf allowed, NaN refused)."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not _checks.is_real(value):
            raise TypeError(f"{where}: {name} must be a real number; got {type(value).__name__}")
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"{where}: {name} must be >= 0; got {value!r}")
