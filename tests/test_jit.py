"""The compiled one-pass kernels of ``_jit`` (numba): threads, tasks, forks, layouts, switches.

``tests/test_segment_ops.py`` runs every segment-op test with and without these kernels;
here are the cases only they have: serial against parallel runs, ranges of whole segments
as tasks, a forked child, odd memory layouts, second derivatives, the environment switch.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import host
from test_segment_ops import assert_same, make_values, ragged

import raggedarray as ra
from raggedarray import _jit, testing

needs_numba = pytest.mark.skipif(
    not _jit.available(), reason="the compiled kernels need numba: pip install 'raggedarray[numba]'"
)


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    monkeypatch.setattr(_jit, "ENABLED", True)
    monkeypatch.setattr(_jit, "MIN_VALUES", 0)


def test_small_inputs_take_the_torch_paths(monkeypatch):
    """Below MIN_VALUES the torch paths run (no numba import for a small interactive call)."""
    monkeypatch.setattr(_jit, "MIN_VALUES", 10)
    calls = []
    monkeypatch.setattr(_jit, "_run", lambda kind, *a: calls.append(kind))
    ragged(torch.randn(3, 3), [1, 2]).cumsum()  # 9 values
    assert calls == []
    if _jit.available():
        ragged(torch.randn(4, 3), [1, 3]).cumsum()  # 12 values
        assert calls == ["scan"]


@needs_numba
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("lengths", [[7, 0, 1, 300, 0, 2], [1000], [0, 0], [1] * 50])
def test_serial_and_parallel_runs_over_tasks(monkeypatch, threads, lengths):
    """One thread, two, three (more than numba may have): tasks of one long segment, of many
    short ones, of empty ones; every kernel dtype, with NaN, against the loops."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    rng = np.random.default_rng(threads)
    n = sum(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for dtype in ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"):
        values = make_values(rng, n, (3,), dtype, ("torch", "cpu"), nan=True)
        x = ragged(values, lengths)
        assert_same(x.cumsum().values, testing.reference_cumsum(values, offsets))
        for op in ("argmax", "argmin"):
            assert_same(getattr(x, op)(), testing.reference_segment_op(op, values, offsets))


@needs_numba
def test_tasks_are_ranges_of_whole_segments_balanced_by_items():
    x = ragged(torch.zeros(100, 1), [60, 0, 10, 10, 10, 10, 0])
    tasks = _jit._tasks(x._part, 4)
    assert tasks[0] == 0 and tasks[-1] == 7
    assert np.all(np.diff(tasks) > 0)
    # the long first segment is a task of its own; the rest share the others
    assert tasks.tolist()[:2] == [0, 1]


@needs_numba
def test_a_forked_child_runs_the_serial_kernels():
    """GNU OpenMP cannot run a thread pool in a child forked after the parent used one."""
    x = ragged(torch.randn(3000, 8), [1000, 0, 2000])
    want = x.cumsum().values  # the parent runs the parallel kernels first
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's coverage is not collected)
        code = 3
        try:
            import faulthandler

            faulthandler.dump_traceback_later(60, exit=True)  # a hang fails, not blocks
            code = 0 if torch.equal(x.cumsum().values, want) else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@needs_numba
@pytest.mark.parametrize("layout", ["transposed", "strided", "readonly-numpy"])
def test_odd_layouts_give_the_loops_results_and_leave_the_input_alone(layout):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((12, 4)).astype(np.float32)
    if layout == "transposed":
        values = torch.from_numpy(base.T.copy()).T  # (12, 4) with strides (1, 12)
    elif layout == "strided":
        values = torch.from_numpy(base)[::2]
    else:
        base.flags.writeable = False
        values = base
    before = host(values).copy()
    n = values.shape[0]
    lengths = [n // 2, 0, n - n // 2]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    x = ra.RaggedArray.from_lengths(values, lengths)
    assert_same(x.cumsum().values, testing.reference_cumsum(values, offsets))
    assert_same(x.argmin(), testing.reference_segment_op("argmin", values, offsets))
    np.testing.assert_array_equal(host(values), before)


@needs_numba
def test_cumsum_gradients_twice():
    """The backward of the compiled scan is itself differentiable (a reversed scan)."""
    offsets = [0, 3, 3, 7]
    values = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda v: ra.segment_cumsum(v, offsets), (values,))
    torch.autograd.gradgradcheck(lambda v: ra.segment_cumsum(v, offsets), (values,))
    assert not ragged(values.detach(), [3, 0, 4]).cumsum().values.requires_grad


@needs_numba
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("special", [False, True], ids=["finite", "nan-inf"])
@pytest.mark.parametrize("lengths", [[7, 0, 1, 300, 0, 2], [1000], [0, 0], [1] * 50])
def test_max_min_backward_equals_the_torch_path_bit_for_bit(
    monkeypatch, threads, dtype, special, lengths
):
    """The compiled share of max's/min's gradient against torch's masks (both of its paths:
    finite extrema, and NaN or infinities among them): ties, empty segments, an upstream
    gradient holding inf (0 * inf is NaN for the items that miss) and -0.0."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    calls = []
    run = _jit.extremum_grad
    monkeypatch.setattr(_jit, "extremum_grad", lambda *a: calls.append(1) or run(*a))
    gen = torch.Generator().manual_seed(len(lengths))
    n, m = sum(lengths), len(lengths)
    values = torch.randint(-3, 4, (n, 3), generator=gen).to(dtype)  # ties everywhere
    if special:
        values[::13, 0], values[5::17, 2], values[3::19, 1] = torch.nan, torch.inf, -torch.inf
    upstream = torch.randn(m, 3, generator=gen, dtype=dtype)
    upstream[0, 0], upstream[-1, -1] = torch.inf, -0.0

    def gradients():
        out = []
        for name in ("max", "min"):
            leaf = values.clone().requires_grad_()
            y = getattr(ragged(leaf, lengths), name)()
            (g,) = torch.autograd.grad(y, leaf, upstream)
            out.append(g)
        return out

    compiled = gradients()
    assert len(calls) == (2 if n else 0)
    monkeypatch.setattr(_jit, "ENABLED", False)
    for got, want in zip(compiled, gradients(), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.numpy().tobytes() == want.numpy().tobytes()  # the same bits


@needs_numba
def test_cumsum_of_non_finite_values_as_torch_per_segment():
    """NaN and infinities run through the sums item by item, as ``torch.cumsum`` does."""
    values = torch.tensor([1.0, torch.inf, 2.0, -torch.inf, 5.0, torch.nan, 1.0, 7.0])
    got = ragged(values, [4, 3, 1]).cumsum().values
    want = torch.cat([values[:4].cumsum(0), values[4:7].cumsum(0), values[7:].cumsum(0)])
    torch.testing.assert_close(got, want, equal_nan=True)


@needs_numba
def test_integer_sums_wrap_as_numpy():
    values = torch.tensor([2**62, 2**62, 2**62, -5, 1], dtype=torch.int64)
    got = ragged(values, [3, 2]).cumsum().values
    assert_same(got, testing.reference_cumsum(values, [0, 3, 5]))


@needs_numba
def test_turned_off_by_the_environment():
    """RAGGEDARRAY_NUMBA=0 turns the kernels off at import."""
    code = "from raggedarray import _jit; print(_jit.ENABLED, _jit.available())"
    env = {**os.environ, "RAGGEDARRAY_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize("missing", ["numba", "raggedarray._jit_kernels"])
def test_without_numba_or_with_a_broken_one(monkeypatch, missing):
    """No numba: the torch paths, silently. numba that does not load: the same, with a warning."""
    import warnings

    monkeypatch.setattr(_jit, "_kernels", None)
    monkeypatch.delitem(sys.modules, "raggedarray._jit_kernels", raising=False)
    monkeypatch.delattr(ra, "_jit_kernels", raising=False)
    monkeypatch.setitem(sys.modules, missing, None)  # importing it now fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not _jit.available()
        x = ragged(torch.tensor([1.0, 2.0, 3.0]), [2, 1])
        assert x.cumsum().values.tolist() == [1.0, 3.0, 3.0]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if missing == "numba":
        assert messages == []
    else:
        assert len(messages) == 1 and "did not load" in messages[0]


@needs_numba
def test_torch_func_transforms_take_the_torch_paths(monkeypatch):
    """torch.func.grad sees wrapped tensors: the torch paths run, and give the loop's gradient."""
    calls = []
    run = _jit._run
    monkeypatch.setattr(_jit, "_run", lambda *a: calls.append(a[0]) or run(*a))
    offsets = [0, 3, 3, 7]
    values = torch.randn(7, 2, dtype=torch.float64)
    grad = torch.func.grad(lambda v: (ra.segment_cumsum(v, offsets) ** 2).sum())(values)
    want = torch.func.grad(lambda v: (testing.reference_cumsum(v, offsets) ** 2).sum())(values)
    torch.testing.assert_close(grad, want)
    assert calls == []
    ra.segment_cumsum(values, offsets)  # outside the transform, the kernels run
    assert calls == ["scan"]
