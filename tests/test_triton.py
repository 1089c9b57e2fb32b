"""The Triton broadcast of ``_triton``: exact copies on a GPU, the paths that take it, switches.

On a CUDA machine every reduction test already runs through the kernel (its backward, the
broadcasts); here are the cases only it has: every dtype and row width bit for bit against
``rows[ids]``, misaligned views, the package's operations with the kernel against the same
operations with ``index_select``, and what happens when Triton is missing or fails. Where
Triton is installed but no GPU is, the interpreter (``TRITON_INTERPRET=1``) runs the kernel
on CPU tensors in a child process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from conftest import CUDA

import raggedarray as ra
from raggedarray import _triton

# a kernel that fails to build warns and falls back: here that must fail the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_kernel = pytest.mark.skipif(
    not (CUDA and _triton.available()), reason="needs a CUDA device and Triton"
)
DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
]
WIDTHS = [1, 2, 3, 5, 64, 130, 300]


def random_rows(m: int, width: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """Rows of every bit pattern the dtype has (NaN payloads, -0.0, infinities included)."""
    size = m * width * torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (size,), dtype=torch.uint8, device=device)
    return (
        raw.view(dtype).reshape(m, width)
        if dtype != torch.bool
        else (raw % 2).bool().view(m, width)
    )


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    )


def sorted_ids(m: int, n: int, device: str) -> torch.Tensor:
    return torch.sort(torch.randint(0, m, (n,), device=device)).values


def check_fused_extremum_grad(dtype: torch.dtype, width: int, lengths: list[int]) -> None:
    """``_triton.extremum_grad`` against the unfused mask, counts and shares, bit for bit."""
    n, m = sum(lengths), len(lengths)
    values = torch.randint(-2, 3, (n, width)).to(dtype)
    values[::7, 0] = float("nan")
    values[3::11, -1] = float("inf")
    ids = torch.repeat_interleave(torch.arange(m), torch.tensor(lengths))
    for op in ("amax", "amin"):
        reduce = getattr(torch, op)  # the oracle: each segment alone (NaN propagates)
        starts = [sum(lengths[:i]) for i in range(m)]
        top = (
            torch.stack(
                [
                    reduce(values[a : a + k], 0) if k else torch.zeros(width, dtype=dtype)
                    for a, k in zip(starts, lengths, strict=True)
                ]
            )
            if m
            else torch.zeros(0, width, dtype=dtype)
        )
        grad = torch.randn(m, width).to(dtype)
        grad[0, 0] = float("inf")
        mask = ((values == top[ids]) | (values.isnan() & top[ids].isnan())).to(dtype)
        ties = torch.zeros(m, width, dtype=dtype).index_add_(0, ids, mask)
        want = mask * (grad / ties.clamp(min=1))[ids]
        got = _triton.extremum_grad(values, top, grad, ids)
        assert got is not None and same_bits(got, want), (dtype, width, lengths, op)


# ------------------------------------------------------------------------------ on a GPU


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("width", WIDTHS)
def test_copies_every_dtype_and_width_bit_for_bit(dtype, width):
    torch.manual_seed(width)
    rows = random_rows(37, width, dtype, "cuda")
    for n in (0, 1, 5000, 70_001):  # zero items too
        ids = sorted_ids(37, n, "cuda")
        assert same_bits(_triton.broadcast(rows, ids), rows[ids])


@needs_kernel
def test_misaligned_views_non_contiguous_rows_and_an_output_buffer():
    """A view starting one byte in (copied bytewise), a transposed view (made contiguous),
    lazy conjugate and negative bits (resolved, as index_select reads them), ``out=``."""
    torch.manual_seed(0)
    ids = sorted_ids(6, 4000, "cuda")
    base = torch.randint(0, 256, (1000,), dtype=torch.uint8, device="cuda")
    for start in (1, 2, 3, 4):
        rows = base[start : start + 6 * 40].view(6, 40)
        assert same_bits(_triton.broadcast(rows, ids), rows[ids])
    rows = torch.randn(8, 6, device="cuda").t()
    assert same_bits(_triton.broadcast(rows, ids), rows[ids])
    strided = torch.stack([ids, ids], 1)[:, 0]  # ids with stride 2
    assert same_bits(_triton.broadcast(rows, strided), rows[ids])
    z = torch.randn(6, 5, dtype=torch.complex64, device="cuda")
    for lazy in (z.conj(), z.conj().imag, -z.conj().imag):
        assert same_bits(_triton.broadcast(lazy, ids), lazy[ids].resolve_conj().resolve_neg())
    out = torch.empty(4000, 5, device="cuda")
    got = _triton.broadcast(torch.randn(6, 5, device="cuda"), ids, out)
    assert got is out
    empty = _triton.broadcast(torch.randn(6, 0, device="cuda"), ids)
    assert empty.shape == (4000, 0)


@needs_kernel
@pytest.mark.parametrize("lengths", [[3000, 0, 1, 5000, 0], [1] * 4000, [0] * 5 + [9000]])
def test_operations_equal_their_index_select_results(monkeypatch, lengths):
    """Every operation whose kernels broadcast, with the kernel and without: the same bits.

    Ties and NaN in ``max``/``min`` (their backward broadcasts twice), empty segments,
    second derivatives."""
    monkeypatch.setattr(_triton, "MIN_ROWS", 0)
    calls = []
    run = _triton.broadcast
    monkeypatch.setattr(_triton, "broadcast", lambda *a: calls.append(1) or run(*a))
    torch.manual_seed(len(lengths))
    n = sum(lengths)
    values = torch.randint(-3, 4, (n, 3), device="cuda").double()  # ties everywhere
    values[::97, 1] = float("nan")
    grad_rows = torch.randn(len(lengths), 3, device="cuda", dtype=torch.float64)

    def results():
        out = {}
        for name in ("sum", "mean", "max", "min", "softmax", "var", "std", "logsumexp"):
            leaf = values.clone().requires_grad_()
            x = ra.RaggedArray.from_lengths(leaf, lengths)
            y = getattr(x, name)()
            y = y.values if isinstance(y, ra.RaggedArray) else y
            (g,) = torch.autograd.grad(y, leaf, torch.ones_like(y), create_graph=True)
            out[name] = (y.detach(), g.detach())
            if g.requires_grad:  # (a sum's gradient is constant)
                out[name] += torch.autograd.grad(g.sum(), leaf, materialize_grads=True)
        x = ra.RaggedArray.from_lengths(values, lengths)
        out["broadcast"] = (x.broadcast(grad_rows).values,)
        return out

    with_kernel = results()
    assert calls, "the kernel did not run"
    monkeypatch.setattr(_triton, "ENABLED", False)
    without = results()
    for name, tensors in with_kernel.items():
        for a, b in zip(tensors, without[name], strict=True):
            assert same_bits(a, b), name


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("lengths", [[3000, 0, 1, 5000, 0], [1] * 4000, [0] * 5 + [9000]])
@pytest.mark.parametrize("width", [1, 3, 64, 130])
def test_fused_max_min_backward_equals_the_unfused_one(monkeypatch, dtype, lengths, width):
    """The backward of max/min in two fused kernels, against torch's operations: the same
    bits with ties, NaN, infinities, empty segments and a gradient holding inf and -0.0."""
    monkeypatch.setattr(_triton, "MIN_ROWS", 0)
    fused = []
    run = _triton.extremum_grad
    monkeypatch.setattr(_triton, "extremum_grad", lambda *a: fused.append(1) or run(*a))
    torch.manual_seed(width)
    n, m = sum(lengths), len(lengths)
    values = torch.randint(-3, 4, (n, width), device="cuda").to(dtype)  # ties everywhere
    values[::97, 0] = float("nan")
    values[5::101, -1] = float("inf")
    upstream = torch.randn(m, width, device="cuda").to(dtype)
    upstream[0, 0], upstream[-1, -1] = float("inf"), -0.0

    def gradients():
        out = []
        for name in ("max", "min"):
            leaf = values.clone().requires_grad_()
            y = getattr(ra.RaggedArray.from_lengths(leaf, lengths), name)()
            (g,) = torch.autograd.grad(y, leaf, upstream)
            out.append(g)
        return out

    with_kernels = gradients()
    assert len(fused) == 2, "the fused kernels did not run"
    monkeypatch.setattr(_triton, "ENABLED", False)
    for a, b in zip(with_kernels, gradients(), strict=True):
        assert same_bits(a, b)


@needs_kernel
def test_small_broadcasts_keep_index_select(monkeypatch):
    calls = []
    monkeypatch.setattr(_triton, "broadcast", lambda *a: calls.append(1))
    x = ra.RaggedArray.from_lengths(torch.randn(10, 4, device="cuda"), [4, 6])
    x.broadcast(torch.randn(2, 4, device="cuda"))
    assert calls == []


# ----------------------------------------------------------------- anywhere: the switches


def test_cpu_tensors_never_take_it(monkeypatch):
    monkeypatch.setattr(_triton, "MIN_ROWS", 0)
    assert not _triton.takes(torch.randn(3, 4), 100)
    if CUDA:
        assert _triton.takes(torch.randn(3, 4, device="cuda"), 100) == _triton.available()
        monkeypatch.setattr(_triton, "ENABLED", False)
        assert not _triton.takes(torch.randn(3, 4, device="cuda"), 100)


def test_turned_off_by_the_environment():
    code = "from raggedarray import _triton; print(_triton.ENABLED, _triton.available())"
    env = {**os.environ, "RAGGEDARRAY_TRITON": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize(
    "error", [ModuleNotFoundError("no triton", name="triton"), RuntimeError("no compiler")]
)
def test_without_triton_or_with_a_broken_one(monkeypatch, error):
    """No Triton: index_select, silently. A Triton that cannot build the kernel: the same,
    with one warning."""

    def build():
        raise error

    monkeypatch.setattr(_triton, "_kernel", None)
    monkeypatch.setattr(_triton, "_build", build)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not _triton.available()
        assert not _triton.available()
        rows, ids = torch.randn(4, 3), torch.tensor([0, 0, 3])
        assert torch.equal(_triton.broadcast(rows, ids), rows[ids])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if isinstance(error, ModuleNotFoundError):
        assert messages == []
    else:
        assert len(messages) == 1 and "could not run" in messages[0]


def test_a_launch_that_fails_warns_once_and_falls_back(monkeypatch):
    class Failing:
        launches = 0

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                Failing.launches += 1
                raise RuntimeError("ptxas not found")

            return launch

    monkeypatch.setattr(_triton, "_kernel", Failing())
    rows, ids = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 3])
    before = rows.clone()
    with pytest.warns(RuntimeWarning, match="ptxas not found"):
        got = _triton.broadcast(rows, ids)
    assert torch.equal(got, rows[ids]) and torch.equal(rows, before)
    assert _triton._kernel is False and not _triton.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(_triton.broadcast(rows, ids), rows[ids])  # no second warning
    assert Failing.launches == 1


def test_fused_max_min_kernels_that_fail_warn_once_and_give_none(monkeypatch):
    """The caller then takes torch's operations (``None``); the inputs are untouched."""

    class Failing:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("out of resources")

            return launch

    monkeypatch.setattr(_triton, "_extremum", (Failing(), Failing()))
    values, top = torch.randn(5, 2), torch.randn(2, 2)
    grad, ids = torch.randn(2, 2), torch.tensor([0, 0, 1, 1, 1])
    before = [t.clone() for t in (values, top, grad, ids)]
    with pytest.warns(RuntimeWarning, match="max/min backward kernels could not run"):
        assert _triton.extremum_grad(values, top, grad, ids) is None
    assert _triton._extremum is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _triton.extremum_grad(values, top, grad, ids) is None  # no second warning
    for a, b in zip((values, top, grad, ids), before, strict=True):
        assert torch.equal(a, b)


class Emulated:
    """The kernel's memory traffic on CPU: row ``j`` written ``j * width`` words past the
    start of ``target``, whatever its strides (what the compiled kernel does)."""

    def __getitem__(self, grid):
        def launch(source, ids, target, num_items, width, **blocks):
            rows = torch.as_strided(source, (source.shape[0], width), (width, 1))
            torch.as_strided(target, (num_items, width), (width, 1)).copy_(rows[ids])

        return launch


def test_an_output_the_kernel_cannot_write_row_by_row_is_index_select_s(monkeypatch):
    """``out=`` with padded rows or transposed: the kernel would write past each row (and
    leave the last rows unwritten); index_select fills it, as its own ``out=`` does."""
    monkeypatch.setattr(_triton, "_kernel", Emulated())
    rows, ids = torch.arange(12.0).reshape(3, 4), torch.tensor([0, 0, 1, 2, 2, 2])
    assert torch.equal(_triton.broadcast(rows, ids), rows[ids])  # (the emulation holds)
    padded = torch.zeros(6, 8)
    got = _triton.broadcast(rows, ids, padded[:, :4])
    assert torch.equal(got, rows[ids]) and torch.equal(padded[:, 4:], torch.zeros(6, 4))
    transposed = torch.zeros(4, 6, dtype=torch.uint8).t()
    small = rows.to(torch.uint8)
    assert torch.equal(_triton.broadcast(small, ids, transposed), small[ids])


@pytest.mark.skipif(not HAS_TRITON, reason="the interpreter needs Triton installed")
def test_the_kernel_in_triton_s_interpreter():
    """The kernel itself, on CPU tensors: every dtype and width, misaligned starts, strided
    ids, bit for bit."""
    script = textwrap.dedent(
        f"""
        import torch
        from raggedarray import _triton
        from test_triton import (
            DTYPES, check_fused_extremum_grad, random_rows, same_bits, sorted_ids
        )
        assert _triton.available()
        torch.manual_seed(0)
        for dtype in DTYPES:
            for width in {WIDTHS}:
                rows = random_rows(7, width, dtype, "cpu")
                ids = sorted_ids(7, 45, "cpu")
                assert same_bits(_triton.broadcast(rows, ids), rows[ids]), (dtype, width)
        base = torch.randint(0, 256, (400,), dtype=torch.uint8)
        for start in (1, 2, 3):
            rows = base[start : start + 7 * 12].view(7, 12)
            ids = sorted_ids(7, 30, "cpu")
            assert same_bits(_triton.broadcast(rows, ids), rows[ids]), start
        strided = torch.stack([ids, ids], 1)[:, 0]  # ids with stride 2
        assert same_bits(_triton.broadcast(rows, strided), rows[ids])
        none = torch.zeros(0, dtype=torch.int64)  # zero items, of some segments or of none
        for segments in (rows, rows[:0]):
            assert same_bits(_triton.broadcast(segments, none), segments[none])
        padded = torch.zeros(30, 20, dtype=torch.uint8)
        assert same_bits(_triton.broadcast(rows, ids, padded[:, :12]), rows[ids])
        assert not padded[:, 12:].any()
        # max/min's fused backward (bfloat16 only on a GPU: the interpreter misreads it)
        for dtype in (torch.float16, torch.float32, torch.float64):
            for width in (1, 3, 130):
                for lengths in ([5, 0, 1, 40, 0], [1] * 30, [0, 0, 70], [0, 0]):
                    check_fused_extremum_grad(dtype, width, lengths)
        print("ok")
        """
    )
    here = os.path.dirname(__file__)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([here, *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.stdout.strip() == "ok", out.stderr[-3000:]
