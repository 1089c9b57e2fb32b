"""Inputs at the edges of the contract: each is refused clearly or answered exactly.

Every case here was once answered wrongly or with a backend's own error; the oracle is the
plain backend (or Python's integers) on the same data.
"""

from __future__ import annotations

import enum
import operator

import numpy as np
import pytest
import torch
from conftest import host, requires_cuda

import raggedarray as ra

BACKENDS = ["numpy", "torch"]


def make(values, lengths, backend):
    values = np.asarray(values)
    return ra.RaggedArray.from_lengths(
        values if backend == "numpy" else torch.from_numpy(values.copy()), lengths
    )


# ---------------------------------------------------------------- read-only buffers


def test_torch_of_a_read_only_buffer_copies_it(tmp_path):
    path = tmp_path / "values.bin"
    np.arange(4, dtype=np.float32).tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r")  # a write through it would fault
    x = ra.RaggedArray.from_lengths(mapped, [1, 3])
    t = x.torch()
    t[0] = 9.0  # a tensor is writable: it must not be the mapped pages
    assert t.values.tolist() == [9.0, 1.0, 2.0, 3.0]
    assert mapped.tolist() == [0.0, 1.0, 2.0, 3.0]
    writable = ra.RaggedArray.from_lengths(np.zeros(3), [1, 2])
    assert np.shares_memory(writable.torch().values.numpy(), writable.values)  # zero-copy


def test_moving_a_read_only_buffer_keeps_it_read_only():
    values = np.arange(3.0)
    values.flags.writeable = False
    x = ra.RaggedArray.from_lengths(values, [1, 2])
    y = x.to(dtype=torch.float32)
    assert y.backend == "numpy" and y.values.dtype == np.float32
    with pytest.raises(ValueError, match="writable"):
        x[0] = 1.0


# --------------------------------------------------------------------- numpy kinds


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix is on its way out
def test_np_matrix_values_are_refused():
    # its * and ** are matrix products: x * x would multiply the buffer as a matrix
    with pytest.raises(TypeError, match=r"np\.matrix"):
        ra.RaggedArray(np.matrix([[1.0, 2.0], [3.0, 4.0]]), [0, 1, 2])
    x = ra.RaggedArray.from_lengths(np.arange(3), [1, 2])
    with pytest.raises(TypeError, match=r"np\.matrix"):
        x[np.matrix([[0, 1]])]


def test_implicit_numpy_conversion_is_refused():
    # numpy would read the segments as a sequence: dense when the lengths are equal,
    # an object array on numpy < 1.24 when they are not
    for lengths in ([2, 2], [1, 3]):
        x = ra.RaggedArray.from_lengths(np.arange(4.0), lengths)
        with pytest.raises(TypeError, match="does not convert to a numpy array"):
            np.asarray(x)
        with pytest.raises(TypeError, match="does not convert to a numpy array"):
            np.array(x, dtype=object)
    assert np.stack(list(ra.RaggedArray.from_lengths(np.arange(4.0), [2, 2]))).shape == (2, 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lengths", [[2, 2], [1, 1], [1, 3], [0, 0]])
@pytest.mark.parametrize(
    "convert", [torch.tensor, torch.as_tensor, torch.asarray, torch.from_dlpack, np.from_dlpack]
)
def test_implicit_tensor_conversion_is_refused(backend, lengths, convert):
    # torch would read the segments as a sequence: dense when the lengths are equal, and a
    # segment of one torch item as a number (lengths [1, 1] gave shape (2,), not (2, 1))
    x = make(np.arange(float(sum(lengths))), lengths, backend)
    with pytest.raises(TypeError, match=r"^RaggedArray: .* does not convert to a tensor"):
        convert(x)
    assert x.lengths.tolist() == lengths
    assert torch.as_tensor(x.values).shape == (sum(lengths),)  # the buffer still converts


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_is_any_equal_element(backend):
    x = make(np.arange(5.0), [2, 0, 3], backend)
    for value in (0.0, 4, 2.5, -1, np.float64(3)):
        assert (value in x) == any(value in np.asarray(s) for s in x.to_list())
    assert (7 in make(np.zeros(0), [0, 0], backend)) is False
    with pytest.raises(TypeError, match="__contains__"):
        None in x  # noqa: B015


# -------------------------------------------------------------- odd index tensors


def test_index_tensors_without_data_are_refused():
    x = ra.RaggedArray.from_lengths(torch.arange(5.0), [2, 0, 3])
    meta = torch.tensor([0, 1], device="meta")
    for key in (meta, meta[0]):
        with pytest.raises(ValueError, match="meta device"):
            x[key]
    with pytest.raises(TypeError, match="sparse_coo"):
        x[torch.tensor([0, 1]).to_sparse()]
    nested = torch.nested.nested_tensor([torch.tensor([0]), torch.tensor([1, 2])])
    with pytest.raises(TypeError, match="nested"):
        x[nested]
    with pytest.raises(ValueError, match="meta device"):
        ra.RaggedArray.from_lengths(torch.arange(5.0), torch.tensor([2, 0, 3], device="meta"))
    mask = torch.ones(2, 2, dtype=torch.bool, device="meta")
    with pytest.raises(ValueError, match="meta device"):
        ra.RaggedArray.from_padded(torch.zeros(2, 2), mask)


def test_masked_index_arrays_are_refused():
    x = ra.RaggedArray.from_lengths(np.arange(5.0), [2, 0, 3])
    with pytest.raises(TypeError, match="masked array"):
        x[np.ma.masked_array([0, 2], mask=[False, True])]


# ------------------------------------------------------------------ padding sizes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("length", [2**40, 2**62])
def test_padding_too_large_to_allocate_is_a_value_error(backend, length):
    x = make(np.arange(3.0), [1, 2], backend)
    with pytest.raises(ValueError, match="small enough to allocate"):
        x.to_padded(max_length=length)


# ------------------------------------------------------------- contiguous buffers


def test_new_buffers_are_c_contiguous():
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    built = [
        ra.RaggedArray.from_list([fortran, fortran]),
        ra.cat(
            [ra.RaggedArray.from_lengths(fortran, [3]), ra.RaggedArray.from_lengths(fortran, [3])]
        ),
        ra.RaggedArray.from_padded(np.arange(24.0).reshape(2, 3, 4).transpose(1, 0, 2), [1, 2, 0]),
        ra.RaggedArray.from_padded(torch.arange(24.0).reshape(2, 3, 4).transpose(0, 1), [1, 2, 0]),
    ]
    for x in built:
        values = x.values
        contiguous = (
            values.is_contiguous()
            if isinstance(values, torch.Tensor)
            else values.flags.c_contiguous
        )
        assert contiguous
    loop = np.concatenate([fortran, fortran])
    np.testing.assert_array_equal(built[0].values, loop)
    np.testing.assert_array_equal(built[1].values, loop)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_from_padded_takes_wide_unsigned_tensors(dtype):
    padded = torch.arange(12, dtype=torch.int64).reshape(3, 4).to(dtype)
    x = ra.RaggedArray.from_padded(padded, [2, 0, 4])
    assert x.dtype == dtype
    assert x.values.to(torch.int64).tolist() == [0, 1, 8, 9, 10, 11]


# ---------------------------------------------------------------- assignment casts


def test_tensor_assignment_follows_numpys_same_kind_rule():
    x = ra.RaggedArray.from_lengths(torch.zeros(3, dtype=torch.uint8), [1, 2])
    n = x.numpy()  # the same memory: both backends must refuse the same values
    for value in (torch.tensor([-1, -1]), torch.tensor([1.0, 2.0])):
        with pytest.raises(TypeError, match="same_kind"):
            x[1] = value
        with pytest.raises(TypeError, match="same_kind"):
            n[1] = value.numpy()
    for value in (torch.tensor(300), np.array(300), np.int64(300)):
        with pytest.raises(ValueError, match="representable"):
            x[0] = value
        with pytest.raises(ValueError, match="representable"):
            n[0] = value.numpy() if isinstance(value, torch.Tensor) else value
    assert x.values.tolist() == [0, 0, 0]
    x[0] = torch.tensor(200)
    x[1] = torch.tensor([1, 2], dtype=torch.uint8)
    halves = ra.RaggedArray.from_lengths(torch.zeros(3, dtype=torch.bfloat16), [1, 2])
    halves[1] = torch.tensor([1, 2])
    halves[1] += torch.tensor([0.5, 0.5])
    assert x.values.tolist() == [200, 1, 2] and halves.values.tolist() == [0.0, 1.5, 2.5]


NARROWING = [  # (values' dtype, value, whether it fits) for arrays whose cast narrows
    ("int8", [1, 300], False),
    ("int8", [1, -129], False),
    ("int8", [1, 100], True),
    ("int16", [70000, 1], False),
    ("int64", np.array([2**64 - 1, 1], dtype=np.uint64), False),
    ("int64", np.array([2**63 - 1, 1], dtype=np.uint64), True),
    ("float16", [1e10, 1.0], False),
    ("float16", [65504.0, -65504.0], True),
    ("float16", [np.inf, np.nan], True),  # (they are inf and NaN already)
    ("float32", [1e39, 0.0], False),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "value", "fits"), NARROWING)
def test_array_assignment_that_narrows_keeps_every_value(backend, dtype, value, fits):
    """A number is range-checked; an array must be too (both backends wrapped 300 to 44)."""
    x = make(np.zeros(3, dtype=dtype), [2, 1], backend)
    value = np.asarray(value)
    if value.dtype == np.float64 and np.dtype(dtype).kind in "iu":
        value = value.astype(np.int64)
    value = value if backend == "numpy" else torch.from_numpy(value)
    if not fits:
        with pytest.raises(ValueError, match=r"^RaggedArray.__setitem__: the value's elements"):
            x[0] = value
        assert host(x.values).tolist() == [0, 0, 0]
        return
    x[0] = value
    want = np.asarray(value if backend == "numpy" else value.numpy()).astype(dtype)
    np.testing.assert_array_equal(host(x.values)[:2], want)


@requires_cuda
@pytest.mark.parametrize(("dtype", "value", "fits"), NARROWING)
def test_array_assignment_that_narrows_keeps_every_value_on_cuda(dtype, value, fits):
    x = make(np.zeros(3, dtype=dtype), [2, 1], "torch").cuda()
    value = np.asarray(value)
    if value.dtype == np.float64 and np.dtype(dtype).kind in "iu":
        value = value.astype(np.int64)
    value = torch.from_numpy(value).cuda()
    if not fits:
        with pytest.raises(ValueError, match=r"^RaggedArray.__setitem__: the value's elements"):
            x[0] = value
        assert host(x.values).tolist() == [0, 0, 0]
    else:
        x[0] = value
        np.testing.assert_array_equal(host(x.values)[:2], host(value).astype(dtype))


@pytest.mark.parametrize(("source", "target"), [("float32", "bfloat16"), ("bfloat16", "float16")])
def test_bfloat16_narrowing_is_checked_too(source, target):
    x = ra.RaggedArray.from_lengths(torch.zeros(2, dtype=getattr(torch, target)), [2])
    big = torch.tensor([3.4e38 if target == "bfloat16" else 1e30, 1.0]).to(getattr(torch, source))
    with pytest.raises(ValueError, match="give inf"):
        x[0] = big
    assert x.values.float().tolist() == [0.0, 0.0]


def test_writes_torch_would_refuse_after_writing_are_refused_before():
    with torch.inference_mode():
        made = torch.zeros(3)
    x = ra.RaggedArray.from_lengths(made, [1, 2])
    with pytest.raises(ValueError, match=r"^RaggedArray.__setitem__: .* inference tensor"):
        x[0] = 1.0
    assert x.values.tolist() == [0.0, 0.0, 0.0]
    with torch.inference_mode():
        x[0] = 1.0  # inside inference mode torch takes it
    assert x.values.tolist() == [1.0, 0.0, 0.0]
    shared = ra.RaggedArray.from_lengths(torch.zeros(1).expand(4), [2, 2])
    for value in (1.0, torch.tensor([2.0, 3.0])):
        with pytest.raises(ValueError, match=r"share memory .* got strides \(0,\)"):
            shared[0] = value  # (a write into segment 0 wrote into segment 1 too)
    assert shared.values.tolist() == [0.0] * 4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["expanded", "overlapping"])
def test_writes_into_any_segment_of_values_sharing_memory_are_refused(backend, layout):
    """A one-item segment of expanded values has no stride 0 of its own: the check read the
    segment, and x[0] = 5 wrote into every segment."""
    memory = np.zeros(20)
    if layout == "expanded":
        values = np.lib.stride_tricks.as_strided(memory, (4, 3), (0, 8))
    else:  # rows one element apart: rows 0 to 2 all hold element 2
        values = np.lib.stride_tricks.as_strided(memory, (4, 3), (8, 8))
    if backend == "torch":
        memory = torch.zeros(20)
        values = memory.as_strided((4, 3), (0, 1) if layout == "expanded" else (1, 1))
    x = ra.RaggedArray(values, [0, 1, 2, 4])
    for key in (0, 1, 2):
        with pytest.raises(ValueError, match=r"share memory between their elements.*strides"):
            x[key] = 5.0
    assert not host(memory).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_writes_into_strided_values_that_do_not_overlap_go_through(backend):
    rows = np.zeros((12, 3))
    wide = np.zeros((12, 7))  # a column step that does not divide the row: interleaved
    crops = np.zeros((12, 3, 5, 5))[..., ::2, ::2]  # a ::2 crop of odd-sized images
    for values in (rows[::2], rows[::-1], np.asfortranarray(rows), rows.T.copy().T,
                   wide[:, ::2], rows[:, ::2], crops):  # fmt: skip
        values = values if backend == "numpy" else torch.from_numpy(values.copy())
        x = ra.RaggedArray(values, [0, 1, values.shape[0]])
        x[0] = 5.0
        x[1] = 7.0
        assert (host(x.values)[0] == 5).all() and (host(x.values)[1:] == 7).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_longdouble_numbers_past_float64_are_not_read_as_inf(backend, dtype):
    """math.isfinite reads a longdouble as a float64: 1e4000 was an infinity, and taken."""
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("this platform's longdouble is float64")  # (x86-64 Linux: 80 bits)
    x = make(np.zeros(3, dtype=dtype), [1, 2], backend)
    for big in (
        np.longdouble("1e4000"),
        np.longdouble("-1e400"),
        np.array(np.longdouble("1e4000")),
    ):
        with pytest.raises(ValueError, match="must be representable"):
            x[0] = big
        with pytest.raises(ValueError, match="fill must be representable"):
            x.sum(fill=big)
    assert not host(x.values).any()
    x[0] = np.longdouble("inf")
    assert np.isinf(host(x.values)[0])


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int32"])
def test_python_int_lists_go_into_narrow_integer_values_within_range(dtype):
    """numpy reads [1, 2] as int64, which no same_kind rule casts to uint8: an image segment
    took no Python list. Lists are numbers, range-checked as a Python int is."""
    info = np.iinfo(dtype)
    x = ra.RaggedArray.from_lengths(np.zeros((3, 2), dtype=dtype), [1, 2])
    x[1] = [[int(info.min), int(info.max)], [0, 7]]
    assert x.values.tolist() == [[0, 0], [int(info.min), int(info.max)], [0, 7]]
    for bad in ([[int(info.max) + 1, 0]], [[int(info.min) - 1, 0]]):
        with pytest.raises(ValueError, match="must be representable"):
            x[0] = bad
    if info.min == 0:
        with pytest.raises(TypeError, match="same_kind"):  # an int64 array: numpy's rule
            x[0] = np.array([[1, 2]])
    with pytest.raises(TypeError, match="same_kind"):  # floats are no integers
        x[0] = [[1.5, 2]]
    assert x.values[0].tolist() == [0, 0]


def test_assigning_a_recorded_scalar_tensor_keeps_its_gradient():
    leaf = torch.tensor(2.0, requires_grad=True)
    x = ra.RaggedArray.from_lengths(torch.zeros(3) * leaf, [1, 2])
    x[1] = leaf * 3
    x.values.sum().backward()
    assert leaf.grad.item() == 6.0


# ------------------------------------------------------------------ operand ranges


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32"])
@pytest.mark.parametrize("other", [-1, 300, -(2**15) - 1, 2**40, 2**32 + 5, -(2**62)])
def test_comparisons_with_ints_outside_the_dtype_answer_as_numpy(dtype, other):
    """torch wraps an int outside the values' dtype (x < 300 on uint8 compared with 44)."""
    values = np.array([0, 5, 100, np.iinfo(dtype).max], dtype=dtype)
    x = make(values, [1, 3], "torch")
    kinds = [other, np.int64(other)] + ([np.uint64(other)] if other >= 0 else [])
    for op in (operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne):
        want = op(values.astype(object), other).astype(bool)  # Python's exact answer
        for kind in kinds:  # torch reads a numpy int as a Python int
            assert host(op(x, kind).values).tolist() == want.tolist(), (op, type(kind))
        assert host(op(other, x).values).tolist() == op(other, values.astype(object)).tolist()
    assert x.dtype == getattr(torch, dtype)


# Python's own comparisons: exact for every int
_EXACT = {stem: getattr(operator, stem) for stem in ("eq", "ne", "lt", "le", "gt", "ge")}
_SWAPPED = {"eq": "eq", "ne": "ne", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
_TORCH_ALIASES = {"gt": "greater", "ge": "greater_equal", "lt": "less", "le": "less_equal"}


def _exact(values, stem, other):
    return [_EXACT[stem](int(v), int(other)) for v in values.tolist()]


@pytest.mark.parametrize(
    "dtype", ["bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64"]
)
@pytest.mark.parametrize("other", [-1, 2, 300, 65537, 2**32 + 1, -(2**40), 2**62 + 1])
def test_comparisons_answer_exactly_in_every_spelling(dtype, other):
    """torch wraps an int beyond the dtype: uint16 1 == 65537, uint64 2**64-1 == -1, and
    torch.gt(uint8, 300) / torch.eq(int8, 257) missed the operators' check; an IntEnum, an
    int subclass, skipped it too."""
    info = np.iinfo(dtype) if dtype != "bool" else None
    values = (
        np.array([True, False, True])
        if info is None
        else np.array([0, 1, 2, 100, info.max], dtype=dtype)
    )
    x = make(values, [1, values.size - 1], "torch")
    before = x.values.clone()
    intenum = enum.IntEnum("E", {"A": other}).A

    def spellings(stem):
        yield "operator", lambda o: _EXACT[stem](x, o)
        yield f"torch.{stem}", lambda o: getattr(torch, stem)(x, o)
        yield "reflected", lambda o: _EXACT[_SWAPPED[stem]](o, x)  # np.int64(300) > x too
        if stem in _TORCH_ALIASES:
            yield (
                f"torch.{_TORCH_ALIASES[stem]}",
                lambda o: getattr(torch, _TORCH_ALIASES[stem])(x, o),
            )

    for stem in _EXACT:
        try:  # the backend's own verdict for a number in range: does it compare this dtype?
            getattr(torch, stem)(before[:0], 0)
        except (RuntimeError, NotImplementedError):
            with pytest.raises(TypeError, match=f"must be defined for {dtype} values"):
                _EXACT[stem](x, other)
            continue
        want = _exact(values, stem, other)
        for name, call in spellings(stem):
            for kind in (other, np.int64(other), intenum):
                got = call(kind)
                assert type(got) is ra.RaggedArray, name
                assert got.values.tolist() == want, (name, type(kind))
    assert torch.equal(x.values, before)


def test_numpy_scalars_are_read_as_numpy_reads_them():
    """torch read an np.bool_ as a float (an int64 sum rounded, mask & np.True_ refused), an
    np.complex64 as its real part and an np.longdouble past float64 as inf."""
    big = np.array([2**53 + 1, 2, 3])
    ints = {b: make(big, [1, 2], b) for b in BACKENDS}
    masks = {b: make(np.array([True, False, True]), [1, 2], b) for b in BACKENDS}
    for op in (operator.add, operator.mul, operator.floordiv):
        for args in ((0, np.True_), (np.True_, 0)):
            want, got = (op(*(ints[b] if a == 0 else a for a in args)) for b in BACKENDS)
            assert got.dtype == torch.int64 and host(got.values).tolist() == want.values.tolist()
    for op in (operator.and_, operator.or_, operator.xor, operator.eq):
        for flag in (np.True_, np.False_):
            want, got = (op(masks[b], flag) for b in BACKENDS)
            assert got.dtype == torch.bool and host(got.values).tolist() == want.values.tolist()
    t = ints["torch"]
    with pytest.raises(TypeError, match="with a bool tensor is not supported"):
        t - np.True_  # as t - True: torch's rule for torch values
    assert torch.add(t, np.True_).values.tolist() == [2**53 + 2, 3, 4]
    assert torch.where(masks["torch"], t, np.False_).values.tolist() == [2**53 + 1, 0, 3]
    floats = make(np.arange(3.0), [1, 2], "torch")
    for number in (np.complex64(1 + 1j), np.complex128(1j)):  # complex results are refused
        for call in (operator.add, torch.add):
            with pytest.raises(TypeError, match="real numbers or booleans; got dtype complex"):
                call(floats, number)
    longdouble = np.finfo(np.longdouble).bits > 64  # (on some platforms it is a double)
    for number in (np.longdouble("1e400"), np.longdouble(1), np.clongdouble(1)) * longdouble:
        for call in (operator.add, torch.mul):
            with pytest.raises(TypeError, match="torch has no dtype for numpy"):
                call(floats, number)
    assert floats.values.tolist() == [0.0, 1.0, 2.0]


def test_updating_a_tensor_in_place_with_a_ragged_array_is_refused():
    """t += x rebound t to a new ragged array (torch turns the in-place TypeError into
    NotImplemented, and Python falls back to t + x), leaving the tensor as it was."""
    x = make(np.arange(3), [1, 2], "torch")
    statements = ["t += x", "t *= x", "t |= x", "t <<= x", "t.add_(x)", "t.copy_(x)"]
    for statement in statements:
        t = torch.zeros((), dtype=torch.int64)
        scope = {"t": t, "x": x}
        with pytest.raises(ValueError, match="cannot be updated in place with a ragged array"):
            exec(statement, scope)
        assert scope["t"] is t and t.item() == 0, statement
    with pytest.raises(TypeError, match=r"torch\.zero_: .*; work in place on x\.values"):
        torch.zero_(x)  # no out-of-place twin to suggest
    with pytest.raises(TypeError, match=r"call torch\.relu\(\.\.\.\)"):
        torch.relu_(x)
    assert x.values.tolist() == [0, 1, 2]


def test_backend_refusals_name_every_ragged_dtype_and_bad_arguments():
    cond = make(np.array([True, False, True]), [1, 2], "torch")
    a = make(np.arange(3, dtype=np.uint16), [1, 2], "torch")
    b = make(np.arange(3, dtype=np.uint32), [1, 2], "torch")
    with pytest.raises(TypeError, match=r"^torch\.where: .* bool, uint16 and uint32 values"):
        torch.where(cond, a, b)
    n = make(np.arange(3.0), [1, 2], "numpy")
    with pytest.raises(TypeError, match=r"^numpy\.add: the arguments must be ones numpy takes"):
        np.add(n, 1, dtype="bogus")


@pytest.mark.parametrize("backend", BACKENDS)
def test_timedeltas_are_no_numbers(backend):
    """np.timedelta64 subclasses numpy's int: torch values added it as a plain int.

    (numpy compares ints with it, and numpy values follow numpy there.)
    """
    x = make(np.array([1, 2, 3]), [1, 2], backend)
    ops = (operator.add, operator.mul) + ((operator.lt,) if backend == "torch" else ())
    for other in (np.timedelta64(5), np.timedelta64(5, "ns"), np.timedelta64(5, "D")):
        for op in ops:
            for args in ((x, other), (other, x)):
                with pytest.raises(TypeError, match=r"^(RaggedArray\.__\w+__|numpy\.\w+): "):
                    op(*args)
    assert host(x.values).tolist() == [1, 2, 3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_timedeltas_are_no_indices_counts_or_options(backend):
    """Nor a segment index, a count, a fill or a tolerance: x[np.timedelta64(1)] selected
    segment 1, x[np.timedelta64(0)] = 9 wrote segment 0 and subsample(np.timedelta64(1))
    kept one item."""
    x = make(np.array([1.0, 2.0, 3.0]), [1, 2], backend)
    span = np.timedelta64(1)
    calls = {
        "index": lambda: x[span],
        "index a day": lambda: x[np.timedelta64(1, "D")],
        "assign into": lambda: x.__setitem__(span, 9.0),
        "assign a span": lambda: x.__setitem__(0, np.timedelta64(4)),
        "max_length": lambda: x.to_padded(max_length=span),
        "subsample": lambda: x.subsample(span),
        "topk": lambda: x.topk(span),
        "fill": lambda: x.mean(fill=span),
        "correction": lambda: x.var(correction=span),
        "rtol": lambda: ra.allclose(x, x, rtol=span),
        "device": lambda: x.to(np.timedelta64(0)),
        "max_items": lambda: ra.data.BudgetBatchSampler([1, 2], max_items=span),
    }
    for name, call in calls.items():
        with pytest.raises((TypeError, IndexError), match=r"^[\w.]+: .*timedelta64"):
            call()
            pytest.fail(f"{name}: a timedelta was taken as an int")
    assert host(x.values).tolist() == [1.0, 2.0, 3.0]
    assert host(x[np.int8(1)]).tolist() == [2.0, 3.0]  # numpy's own ints still index


def test_ints_beyond_int64_against_torch_values():
    ints = ra.RaggedArray.from_lengths(torch.arange(3), [1, 2])
    big = np.uint64(2**64 - 1)
    for op in (
        lambda x: x < 2**63,
        lambda x: x + 2**63,
        lambda x: x * -(2**64),
        lambda x: x == big,  # torch answered one Python bool
        lambda x: x + big,  # torch handed the sum to numpy
        lambda x: x >= big,
    ):
        with pytest.raises(ValueError, match="fit in int64"):
            op(ints)
    floats = ints.float()
    np.testing.assert_array_equal((floats + 2**70).values.numpy(), np.arange(3.0) + 2.0**70)
    assert (floats < 2**70).values.all()
    assert (floats < big).values.all() and not (floats == big).values.any()


def test_backend_refusals_name_the_operation_and_dtype():
    t = ra.RaggedArray.from_lengths(torch.arange(3), [1, 2])
    n = t.numpy()
    cases = [
        (lambda: t.float() & 1, TypeError, "float32"),
        (lambda: -t.bool(), TypeError, "__neg__.*bool"),
        (lambda: -n.bool(), TypeError, "__neg__.*bool"),
        (lambda: t // 0, ValueError, "__floordiv__"),
        (lambda: np.bitwise_and(n.double(), 1), TypeError, "numpy.bitwise_and.*float64"),
    ]
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":  # numpy 1 made it a float64 sum
        cases.append((lambda: n + 2**63, ValueError, "__add__.*OverflowError"))
    for fn, kind, text in cases:
        with pytest.raises(kind, match=text):
            fn()


def test_non_blocking_must_be_a_bool():
    for backend in BACKENDS:
        x = make(np.arange(3.0), [1, 2], backend)
        with pytest.raises(TypeError, match="non_blocking must be a bool"):
            x.to("cpu", non_blocking="yes")


def test_np_where_selects_elementwise():
    x = ra.RaggedArray.from_lengths(np.arange(5.0), [2, 0, 3])
    y = np.where(x > 2, x, -x)
    assert type(y) is ra.RaggedArray and y.equal(
        x.from_lengths(np.array([-0.0, -1, -2, 3, 4]), [2, 0, 3])
    )
    with pytest.raises(TypeError, match="numpy functions do not take ragged arrays"):
        np.where(x > 2)
    with pytest.raises(TypeError, match=r"np\.where\(cond, x, y\), which takes ragged arrays"):
        np.exp(x, where=np.array(True))


# ------------------------------------------------------------------- exact equality


def test_equal_compares_64_bit_integers_with_floats_exactly():
    def one(values, dtype):
        return ra.RaggedArray.from_lengths(np.array(values, dtype=dtype), [len(values)])

    cases = [
        ([2**53 + 1], np.int64, [2.0**53], np.float64),
        ([2**53], np.int64, [2.0**53], np.float64),
        ([2**64 - 1], np.uint64, [2.0**64], np.float64),
        ([2**63], np.uint64, [2.0**63], np.float64),
        ([-5, 7], np.int64, [-5.0, 7.0], np.float32),
        ([1, 2], np.int64, [1.0, np.nan], np.float64),
        ([3, 16777217], np.int32, [3.0, 16777217.0], np.float64),
    ]
    for a, da, b, db in cases:
        truth = all(int(p) == q for p, q in zip(a, b, strict=True) if q == q) and not any(
            q != q for q in b
        )
        if any(q == 2.0**64 for q in b):
            truth = False  # 2**64 is past every uint64
        x, y = one(a, da), one(b, db)
        assert x.equal(y) is truth and y.equal(x) is truth and x.torch().equal(y) is truth


# ----------------------------------------------------------- data pipeline and files


PROMOTIONS = [
    (np.ones((2, 3), np.uint16), torch.ones(1, 3, dtype=torch.float16)),
    (np.ones((2, 3), np.uint32), torch.ones(1, 3, dtype=torch.float32)),
    (np.ones((2, 3), np.uint16), torch.ones(1, 3, dtype=torch.bfloat16)),
    (np.full((2, 3), 65535, np.uint16), torch.ones(1, 3, dtype=torch.int8)),
    (np.ones((2, 3), np.uint8), torch.ones(1, 3, dtype=torch.int16)),
    (np.ones((2, 3), ">f4"), np.ones((1, 3), "<f8")),
]


@pytest.mark.parametrize("samples", PROMOTIONS)
def test_collate_in_a_worker_gives_the_main_process_result(monkeypatch, samples):
    from raggedarray import data

    main = ra.collate(list(samples))
    monkeypatch.setattr(data, "get_worker_info", lambda: object())  # what a worker sees
    worker = ra.collate(list(samples))
    assert worker.dtype == main.dtype
    assert worker.equal(main)


def test_collate_names_a_field_left_out_of_ragged():
    samples = [(np.ones((2, 3)), np.ones(2)), (np.ones((1, 3)), np.ones(3))]
    with pytest.raises(ValueError, match=r"^collate: field 1 is not named in ragged="):
        ra.collate(samples, ragged=0)
    with pytest.raises(TypeError, match=r"^collate: field 'y' is not named in ragged="):
        ra.collate([{"x": np.ones((1, 2)), "y": None}] * 2, ragged="x")
    assert ra.collate(samples, ragged=[0, 1])[1].lengths.tolist() == [2, 3]
    x = np.ones((2, 3))
    mismatched = [{"x": x, "meta": {"a": 1}}, {"x": x, "meta": {"b": 2}}]  # (a KeyError)
    with pytest.raises(ValueError, match=r"^collate: field 'meta' .* without the key 'a'"):
        ra.collate(mismatched, ragged="x")


def test_collate_converts_big_endian_samples():
    batch = ra.collate([np.arange(6, dtype=">f4").reshape(2, 3), np.ones((1, 3), ">f4")])
    assert batch.dtype == torch.float32 and batch.values[1].tolist() == [3.0, 4.0, 5.0]


def test_exact_comparisons_of_64_bit_integers_with_floats():
    a = ra.RaggedArray.from_lengths(np.array([2**53 + 1]), [1])
    b = ra.RaggedArray.from_lengths(np.array([2.0**53]), [1])
    with pytest.raises(AssertionError, match="not close"):
        ra.testing.assert_ragged_equal(a, b)
    assert not ra.allclose(a, b, rtol=0, atol=0) and ra.allclose(a, b, rtol=0, atol=1)
    ra.testing.assert_ragged_equal(a, b, atol=1)


def test_budget_plans_stay_linearithmic_when_windows_never_fill(monkeypatch):
    # all-empty segments never fill a batch: each window used to carry everything before
    # it into the next, sorting it again (quadratic); count the items sorted instead of time
    from raggedarray import _sampler

    sorted_items = []
    argsort = np.argsort

    def counting(a, *args, **kwargs):
        sorted_items.append(len(a))
        return argsort(a, *args, **kwargs)

    monkeypatch.setattr(_sampler.np, "argsort", counting)
    n = 200_000
    sampler = ra.data.BudgetBatchSampler(np.zeros(n, dtype=np.int64), max_items=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert sum(sorted_items) <= 4 * n


def test_dataset_targets_by_label_take_negative_indices():
    x = ra.RaggedArray.from_lengths(np.arange(6.0), [1, 2, 3])
    ds = ra.data.RaggedDataset(x, targets={0: "a", 1: "b", 2: "c"})
    assert ds[-1][1] == "c" and ds[-3][1] == "a"


def test_save_refuses_directories_and_masked_arrays(tmp_path):
    x = ra.RaggedArray.from_lengths(np.arange(3.0), [1, 2])
    with pytest.raises(ValueError, match="path must name a file; got the directory"):
        ra.save(tmp_path, x)
    assert list(tmp_path.iterdir()) == []  # no temporary file left beside it
    masked = np.ma.masked_array([1.0, -999.0], mask=[False, True])
    with pytest.raises(TypeError, match="masked array"):
        ra.save(tmp_path / "f.st", {"x": x, "y": masked})
    assert not (tmp_path / "f.st").exists()


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64"])
def test_wide_unsigned_torch_values_gather(dtype):
    # torch has no index_select kernel for them: the rows are gathered as signed bits
    values = np.array([1, 2, 2**15, 2**16 - 1, 7], dtype=dtype)
    if dtype != "uint16":
        values[3] = np.iinfo(dtype).max
    n = ra.RaggedArray.from_lengths(values, [2, 3])
    t = n.torch()
    for key in ([1, 0], [True, False], slice(None, None, -1), np.array([1, 1])):
        got = t[key]
        assert got.dtype == t.dtype and got.equal(n[key])


# ------------------------------------------------------- lists of mixed numpy integers

MIXED = [np.int64(0), np.int32(2), np.uint8(2), np.uint64(5)]  # numpy reads it as float64


def test_offsets_and_lengths_of_mixed_numpy_ints_are_integers():
    values = np.arange(10.0).reshape(5, 2)
    assert ra.RaggedArray(values, MIXED).lengths.tolist() == [2, 0, 3]
    assert ra.RaggedArray.from_lengths(values, [np.int64(2), np.uint64(3)]).num_segments == 2
    with pytest.raises(ValueError, match=r"^RaggedArray: offsets must fit in int64; got 1844"):
        ra.RaggedArray(values, [np.int64(0), np.uint64(2**64 - 1), np.int64(5)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_indexing_with_mixed_numpy_ints(backend):
    x = make(np.arange(5.0), [2, 0, 3], backend)
    assert x[[np.int64(-1), np.uint64(0)]].equal(x[[2, 0]])
    with pytest.raises(IndexError, match=r"out of range for 3 segments; got 184467"):
        x[[np.int64(0), np.uint64(2**64 - 1)]]


# ------------------------------------------------------ tensors with the negative bit


def test_values_with_the_negative_bit_leave_torch():
    values = torch.randn(5, 2, dtype=torch.complex64).conj().imag  # a real "negative view"
    assert values.is_neg()
    x = ra.RaggedArray(values, torch.tensor([0, 2, 5]))
    want = values.resolve_neg().numpy()
    assert np.array_equal(x.numpy().values, want)
    assert x.equal(x) and ra.allclose(x, x)
    ra.testing.assert_ragged_equal(x, ra.RaggedArray(torch.from_numpy(want), [0, 2, 5]))
    assert np.array_equal(x.to_awkward()[1].to_numpy(), want[2:])
    assert values.is_neg()  # the input is left as it was


def test_assignment_reads_the_sign_a_negative_view_gives():
    """A value over the segment's own memory with the other sign was taken for the segment
    itself (the x[i] += v shortcut): the write was dropped, both ways round."""
    z = torch.complex(torch.zeros(4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = ra.RaggedArray(z.conj().imag, torch.tensor([0, 2, 4]))  # reads -1, -2, -3, -4
    x[0] = z.imag[:2]
    assert x[0].tolist() == [1.0, 2.0] and x[1].tolist() == [-3.0, -4.0]
    pairs = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 4.0]])
    y = ra.RaggedArray(pairs[:, 1], torch.tensor([0, 2, 4]))
    y[0] = torch.view_as_complex(pairs).conj().imag[:2]  # reads -1, -2
    assert y[0].tolist() == [-1.0, -2.0]


def test_nested_tensors_of_negative_views_keep_their_sign():
    """torch's jagged operations drop the bit of their buffer: (nt + 0) read +0..+5."""
    z = torch.complex(torch.zeros(6, 1), torch.arange(6.0).reshape(6, 1))
    x = ra.RaggedArray(z.conj().imag, torch.tensor([0, 2, 6]))
    nested = x.to_nested()
    assert (nested + 0).values().ravel().tolist() == (x.values + 0).ravel().tolist()
    assert torch.relu(nested).values().ravel().tolist() == [0.0] * 6


def test_compiled_kernels_read_contiguous_negative_views():
    """numba's kernels (from 2**18 values) called .numpy() on a contiguous negative view."""
    jit = pytest.importorskip("raggedarray._jit")
    if not jit.available():
        pytest.skip("numba is not installed")
    n = jit.MIN_VALUES
    base = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), requires_grad=True)
    offsets = torch.tensor([0, 100, n])
    x = ra.RaggedArray(torch._neg_view(base), offsets)
    plain = ra.RaggedArray(-base, offsets)
    assert torch.equal(x.cumsum().values, plain.cumsum().values)
    assert torch.equal(x.argmax(), plain.argmax()) and torch.equal(x.argmin(), plain.argmin())
    (grad,) = torch.autograd.grad(x.max().sum(), base)
    (want,) = torch.autograd.grad(plain.max().sum(), base)
    assert torch.equal(grad, want)


# --------------------------------------------------------------- operand kinds


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("number", [__import__("fractions").Fraction(1, 2)])
def test_numbers_no_backend_reads_are_refused(backend, number):
    x = make(np.array([0.5, 1.0]), [1, 1], backend)
    for op in ("__eq__", "__add__", "__radd__", "__lt__"):
        with pytest.raises(TypeError, match=r"^RaggedArray.__r?\w+__: number operands must be"):
            getattr(x, op)(number)  # x == Fraction(1, 2) was False, not elementwise
    with pytest.raises(TypeError, match="number operands"):
        x == __import__("decimal").Decimal(1)  # noqa: B015


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix is on its way out
def test_numpy_subclass_operands_are_refused_as_values_are():
    """A masked operand lost its mask into values no constructor accepts; an np.matrix
    operand made the items 2-D and ``*`` a matrix product."""
    x = make(np.arange(6.0).reshape(3, 1, 2), [1, 2], "numpy")
    before = x.values.copy()
    matrix, masked = np.matrix([[1.0, 2.0]]), np.ma.array([10.0, 1.0], mask=[True, False])
    calls = [
        lambda: x + matrix,
        lambda: x * matrix,
        lambda: matrix * x,
        lambda: np.add(x, matrix),
        lambda: x + masked,
        lambda: np.maximum(x, masked),
        lambda: np.where(x > 0, x, masked),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"an array operand must be a plain numpy array"):
            call()
    with pytest.raises(TypeError, match="does not convert to a numpy array"):
        masked + x  # (the masked array's own __add__ runs first, and reads x as an array)
    np.testing.assert_array_equal(x.values, before)
    np.testing.assert_array_equal((x + np.asarray(matrix)).values, before + np.array([[1.0, 2.0]]))


def test_sparse_and_nested_tensor_operands_are_refused():
    x = make(np.ones((3, 2)), [1, 2], "torch")
    nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged)
    for operand, seen in (
        (torch.ones(2).to_sparse(), "a sparse_coo tensor"),
        (torch.ones(1, 2).to_sparse_csr(), "a sparse_csr tensor"),
        (nested, "a nested tensor"),
    ):
        for call in (
            lambda o=operand: x + o,
            lambda o=operand: o * x,
            lambda o=operand: torch.maximum(x, o),
        ):
            with pytest.raises(
                TypeError, match=rf"a tensor operand must be a dense .*; got {seen}"
            ):
                call()
    assert torch.equal(x.values, torch.ones(3, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_errors_are_given_in_the_package_s_form(backend):
    """Integers to negative powers: the backend's words, after what must hold."""
    x = make(np.array([1, 2, 3]), [1, 2], backend)
    with pytest.raises(
        ValueError, match=r"^RaggedArray.__pow__: the operands must be .*negative integer powers"
    ):
        x**-1
    t = make(np.array([1.0, 2.0]), [2], "torch")
    with pytest.raises(ValueError, match=r"^torch\.where: the operands must be .*boolean"):
        torch.where(t.long(), t, t)
    assert x.values.tolist() == [1, 2, 3]


def test_in_place_torch_functions_are_refused_as_in_place():
    x = make(np.array([1.0, -2.0, 3.0]), [1, 2], "torch")
    for fn, name in ((torch.relu_, "torch.relu_"), (torch.exp_, "torch.exp_")):
        with pytest.raises(TypeError, match=rf"^{name}: in-place torch functions do not take"):
            fn(x)
    assert x.values.tolist() == [1.0, -2.0, 3.0]


F = torch.nn.functional


@pytest.mark.parametrize(
    "name, call",
    [
        ("relu", lambda x: F.relu(x, inplace=True)),
        ("relu", lambda x: torch.nn.ReLU(inplace=True)(x)),
        ("relu6", lambda x: F.relu6(x, True)),  # positional
        ("leaky_relu", lambda x: F.leaky_relu(x, 0.1, True)),
        ("hardtanh", lambda x: F.hardtanh(x, inplace=True)),
        ("elu", lambda x: torch.nn.ELU(inplace=True)(x)),
        ("silu", lambda x: F.silu(x, inplace=True)),
        ("_threshold", lambda x: F.threshold(x, 0.0, 1.0, True)),
        ("dropout", lambda x: torch.nn.Dropout(0.5, inplace=True)(x)),
        ("hardswish", lambda x: F.hardswish(x, inplace=True)),
    ],
)
def test_inplace_true_is_refused_as_in_place(name, call):
    """``inplace=True`` would write into ``x.values`` behind the ragged array's back."""
    x = make(np.array([1.0, -2.0, 3.0]), [1, 2], "torch")
    with pytest.raises(
        TypeError, match=rf"^torch\.nn\.functional\.{name}: in-place torch functions do not take"
    ):
        call(x)
    assert x.values.tolist() == [1.0, -2.0, 3.0]


@pytest.mark.parametrize("inplace", [False, None])
def test_inplace_false_gives_a_new_ragged_array(inplace):
    x = make(np.array([1.0, -2.0, 3.0]), [1, 2], "torch")
    options = {} if inplace is None else {"inplace": inplace}
    for y in (F.relu(x, **options), torch.nn.ReLU(**options)(x), F.leaky_relu(x, 0.5, False)):
        assert isinstance(y, ra.RaggedArray) and y.values.min() != -2.0
    assert x.values.tolist() == [1.0, -2.0, 3.0]


@pytest.mark.parametrize("reflected", [False, True])
def test_object_array_operands_are_refused_before_numpy_runs(reflected):
    x = make(np.array([0.0, 1.0, 2.0]), [1, 2], "numpy")
    objects = np.array([1, 2, 3], dtype=object)[:1]
    for op in ("truediv", "floordiv", "mod", "eq", "lt", "add"):
        name = f"__r{op}__" if reflected and op not in ("eq", "lt") else f"__{op}__"
        with pytest.raises(TypeError, match=r"^RaggedArray.__\w+__: array operands must hold"):
            getattr(x, name)(objects)  # 1 / 0 in Python raised ZeroDivisionError
    with pytest.raises(TypeError, match="array operands must hold"):
        np.add(x, objects)


# ------------------------------------------------- checks before work, integer-likes


def test_segment_ids_are_counted_before_the_offsets_are_built():
    """3 ids for 2 items with a stray large id built 2e8 offsets (11 s, 1.5 GB) first."""
    ids = np.array([0, 0, 10**15])
    with pytest.raises(ValueError, match=r"one entry per item \(2\); got 3"):
        ra.RaggedArray.from_segment_ids(np.ones(2), ids)
    assert ids.tolist() == [0, 0, 10**15]


def test_image_batches_check_item_dims_before_copying():
    """from_padded copied the whole input, then named an internal (N, H, W) shape."""
    padded = np.ones((2, 3, 4, 4), np.float32)  # (m, n_max, H, W): no channel axis
    with pytest.raises(ValueError, match=r"padded must be 5-D .*shape \(2, 3, 4, 4\)"):
        ra.RaggedImageBatch.from_padded(padded, [3, 1])
    with pytest.raises(ValueError, match=r"item_shape must have 3 dims; got item_shape=\(4, 4\)"):
        ra.RaggedImageBatch.from_list([], item_shape=(4, 4))
    assert ra.RaggedImageBatch.from_list([], item_shape=(2, 4, 4)).item_shape == (2, 4, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_index_selects_no_segment_whatever_its_dtype(backend):
    x = make(np.arange(5.0), [2, 1, 2], backend)
    for key in ([], np.array([]), torch.tensor([]), torch.tensor([], dtype=torch.bfloat16)):
        y = x[key]
        assert type(y) is ra.RaggedArray and len(y) == 0 and y.backend == backend
    for key in (torch.tensor([1.0]), torch.zeros(0, 2)):
        with pytest.raises(IndexError, match="must be integers or booleans"):
            x[key]


class _Index:
    """An integer by ``__index__``, as ``range`` and lists read it."""

    def __init__(self, value=1):
        self.value = value

    def __index__(self):
        return self.value


@pytest.mark.parametrize("backend", BACKENDS)
def test_integers_by_index_are_indices_and_counts(backend):
    """x[obj] for an object with __index__ was refused, though x[obj:] worked."""
    x = make(np.arange(5.0), [2, 1, 2], backend)
    assert host(x[_Index()]).tolist() == host(x[1]).tolist()
    assert x.topk(_Index())[0].lengths.tolist() == [1, 1, 1]
    assert x.subsample(_Index()).lengths.tolist() == [1, 1, 1]
    for count in (np.array(4), torch.tensor(4), _Index(4)):
        y = ra.RaggedArray.from_segment_ids(np.arange(3.0), [0, 0, 1], num_segments=count)
        assert len(y) == int(operator.index(count))
    for bad in (np.array(4.0), torch.tensor(True), np.array([4]), torch.tensor(4.0), 4.0):
        with pytest.raises(TypeError, match="num_segments must be an int"):
            ra.RaggedArray.from_segment_ids(np.arange(3.0), [0, 0, 1], num_segments=bad)
        with pytest.raises(TypeError, match="k must be an int"):
            x.topk(bad)


def test_a_numpy_object_array_of_segments_is_a_list_of_them():
    held = np.empty(2, dtype=object)
    held[0], held[1] = np.ones((2, 3)), np.zeros((1, 3))
    x = ra.RaggedArray.from_list(held)
    assert x.equal(ra.RaggedArray.from_list(list(held)))
    held[1] = "a"
    with pytest.raises(TypeError, match=r"arrays\[1\] must be an array"):
        ra.RaggedArray.from_list(held)


def test_show_refuses_images_without_channels_and_takes_any_max_items():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    no_channels = ra.RaggedImageBatch.from_lengths(np.zeros((2, 0, 4, 4)), [2])
    with pytest.raises(ValueError, match="at least one pixel"):
        no_channels.show()  # numpy's IndexError before
    images = ra.RaggedImageBatch.from_lengths(np.zeros((3, 1, 4, 4)), [1, 2])
    for many in (2**63, 2**70, _Index()):
        assert images.show(max_items=many) is not None


def test_integer_comparisons_take_tolerances_past_float64():
    """atol=2**1024 on integers overflowed adding the default float rtol term."""
    x = ra.RaggedArray.from_lengths(np.array([1, 5, 2**62 + 3]), [3])
    y = ra.RaggedArray.from_lengths(np.array([1, 2, 2**62]), [3])
    for tolerances in ({"atol": 2**1024}, {"rtol": 10**400}, {"atol": 3}, {"atol": 3.0}):
        assert ra.allclose(x, y, **tolerances)
        ra.testing.assert_ragged_equal(x, y, **tolerances)
    assert not ra.allclose(x, y, atol=2)
    with pytest.raises(AssertionError):
        ra.testing.assert_ragged_equal(x, y, atol=2)


def test_a_fill_on_the_meta_device_is_refused_by_name():
    values = torch.tensor([5.0, 7.0])
    with pytest.raises(ValueError, match=r"^segment_sum: fill must hold a value; got a tensor on"):
        ra.segment_sum(values, [0, 0, 2], fill=torch.tensor(1.0, device="meta"))


def test_comparison_functions_check_a_number_given_by_keyword():
    """torch.lt(x, other=300) skipped the range check torch.lt(x, 300) has: 300 became 44."""
    x = make(np.array([0, 5, 200], dtype=np.uint8), [2, 1], "torch")
    assert torch.lt(x, other=300).values.tolist() == [True, True, True]
    assert torch.lt(input=x, other=300).values.tolist() == [True, True, True]
    assert torch.gt(x, -3, out=None).values.tolist() == [True, True, True]
    y = make(np.array([5], dtype=np.int16), [1], "torch")
    assert torch.eq(y, other=65541).values.tolist() == [False]
