"""How ``map`` plans its calls: the probe's counts, the rule that turns them into chunk sizes,
the device a plan is chosen for, and the settled allocator the CPU plans assume."""

from __future__ import annotations

import ctypes
import math
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import equal_chunks, requires_cuda, set_budgets
from torch import nn

import raggedarray as ra
import raggedarray.map as mapping
from raggedarray import _allocator, _probe


@pytest.fixture
def fresh_plans(monkeypatch):
    """map's own budgets and rule, with no plan remembered."""
    set_budgets(
        monkeypatch,
        call=mapping.CPU_CALL_BYTES,
        chunk=mapping.CPU_CHUNK_BYTES,
        grad=mapping.CPU_CHUNK_BYTES_GRAD,
        bound=mapping.CPU_COMPUTE_BOUND,
    )


# ------------------------------------------------------------------ the probe's counts

WEIGHT = torch.randn(12, 3)
# (name, fn, items, multiply-adds per item counted by hand from the shapes)
OPERATIONS = [
    ("conv2d", nn.Conv2d(3, 8, 3), torch.randn(5, 3, 10, 10), 8 * 8 * 8 * 3 * 3 * 3),
    (
        "conv2d-groups-stride",
        nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2),
        torch.randn(5, 4, 10, 10),
        8 * 5 * 5 * (4 // 2) * 3 * 3,
    ),
    ("conv1d", nn.Conv1d(2, 6, 5), torch.randn(5, 2, 20), 6 * 16 * 2 * 5),
    (
        "conv-transpose2d",
        nn.ConvTranspose2d(3, 4, 3),
        torch.randn(5, 3, 6, 6),
        3 * 6 * 6 * 4 * 3 * 3,  # every input value meets C_out * kernel weights
    ),
    ("linear", nn.Linear(12, 7), torch.randn(5, 12), 12 * 7),
    ("linear-3d", nn.Linear(12, 7), torch.randn(5, 4, 12), 4 * 12 * 7),
    ("matmul", lambda v: torch.matmul(v, WEIGHT), torch.randn(5, 12), 12 * 3),
    ("matmul-operator", lambda v: v @ WEIGHT, torch.randn(5, 12), 12 * 3),
    ("mm-method", lambda v: v.mm(WEIGHT), torch.randn(5, 12), 12 * 3),
    ("bmm", lambda v: torch.bmm(v, v), torch.randn(5, 4, 4), 4 * 4 * 4),
    ("elementwise", torch.sin, torch.randn(5, 12), 0),
]


@pytest.mark.parametrize(
    ("fn", "items", "macs"), [pytest.param(*case[1:], id=case[0]) for case in OPERATIONS]
)
def test_probe_counts_multiply_adds_and_bytes_per_item(fn, items, macs):
    with torch.no_grad():
        output, costs = _probe.probe(fn, items)
        want = fn(items)
    torch.testing.assert_close(output, want)
    assert costs.macs == macs
    assert costs.total == want.element_size() * want[0].numel()  # one operation's output
    assert costs.intensity == pytest.approx(macs / costs.total)


def test_probe_sums_over_a_network_and_keeps_the_largest_tensor():
    net = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(576, 10))
    with torch.no_grad():
        _, costs = _probe.probe(net, torch.randn(3, 1, 16, 16))
    conv_out = 4 * 12 * 12
    assert costs.macs == conv_out * 25 + 576 * 10
    assert costs.largest == 1 * 25 * 144 * 4  # the convolution's unfolded input, float32
    # conv, relu, flatten (a view is an output too) and linear
    assert costs.total == 4 * (conv_out * 3 + 10)


def test_numpy_functions_count_their_output_and_no_arithmetic():
    _, costs = _probe.probe(np.sin, np.zeros((4, 6)))
    assert costs == _probe.Costs(6 * 8, 6 * 8, 0.0)
    assert costs.intensity == 0.0


# ------------------------------------------------------------------------- the rule


def plan_for(fn, values, *, grad=False):
    x = ra.RaggedArray.from_lengths(values, [values.shape[0]])
    with torch.set_grad_enabled(grad):
        x.map(fn)
    (plan,) = [plan for key, plan in mapping._chosen[fn].items() if key[-1] == grad]
    return plan


def test_arithmetic_bound_functions_get_chunks_sized_like_one_call(monkeypatch):
    linear = nn.Linear(64, 64)  # 64 * 64 multiply-adds per 256 bytes written: 16 per byte
    item = 64 * 4
    budgets = {"call": 40 * item, "chunk": 10 * item, "grad": 5 * item}
    for bound, chunk in [(16.0, 40), (16.5, 10), (0.0, 40)]:
        set_budgets(monkeypatch, **budgets, bound=bound)
        plan = plan_for(linear, torch.randn(100, 64))
        assert (plan.whole, plan.chunk) == (40, chunk), bound
    # Under autograd every chunk's activations stay alive: the grad budget, whatever the rule.
    assert (plan_for(linear, torch.randn(100, 64), grad=True).chunk) == 5
    # An elementwise function never counts as arithmetic-bound (0 per byte), unless the
    # bound is 0.
    monkeypatch.setattr(mapping, "CPU_COMPUTE_BOUND", 1e-9)
    assert plan_for(torch.sin, torch.randn(100, 64)).chunk == 10


def test_arithmetic_bound_chunks_cover_the_batch_in_order(monkeypatch):
    torch.manual_seed(0)
    linear = nn.Linear(8, 8).double()
    item = 8 * 8  # (8,) float64
    # 8 * 8 multiply-adds per 64 bytes written: 1 per byte, past the bound of 0.5.
    set_budgets(monkeypatch, call=24 * item, chunk=4 * item, grad=4 * item, bound=0.5)
    x = ra.RaggedArray.from_lengths(torch.randn(100, 8, dtype=torch.float64), [30, 0, 70])
    sizes = []
    hook = linear.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    with torch.no_grad():
        y = x.map(linear)
        hook.remove()
        want = linear(x.values)
    assert sizes == [mapping.PROBE_ITEMS, *equal_chunks(100, 24)]  # the probe, then the plan
    torch.testing.assert_close(y.values, want, rtol=0, atol=0)


def test_the_demo_networks_fall_on_their_measured_sides_of_the_bound():
    from raggedarray import _demo

    images = torch.randn(mapping.PROBE_ITEMS, 1, 16, 16)
    intensity = {}
    for name, make in {"small": _demo.small_cnn, "large": _demo.large_cnn}.items():
        with torch.no_grad():
            intensity[name] = _probe.probe(make(), images)[1].intensity
    assert intensity["small"] < mapping.CPU_COMPUTE_BOUND <= intensity["large"]


# ------------------------------------------------------------------------ the device


def test_a_cuda_plan_is_one_call_unless_half_the_free_memory_would_not_hold_it(monkeypatch):
    # Free: what the driver reports plus what torch's allocator holds without using it.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (600_000, 4_000_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 500_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 100_000)
    free = 600_000 + 500_000 - 100_000
    costs = _probe.Costs(largest=10.0, total=100.0, macs=0.0)
    for device in (torch.device("cuda"), torch.device("cuda", 0)):
        for grad in (False, True):
            plan = mapping._choose(costs, device, grad=grad)
            assert plan == mapping._Plan(free // 2 // 100, free // 2 // 100, True)


def test_plans_are_chosen_for_the_device_the_calls_run_on(monkeypatch, fresh_plans):
    seen = []
    choose = mapping._choose
    monkeypatch.setattr(
        mapping,
        "_choose",
        lambda costs, device, *, grad: seen.append(device) or choose(costs, device, grad=grad),
    )
    ra.RaggedArray.from_lengths(torch.randn(20, 3), [20]).map(torch.sin)
    ra.RaggedArray.from_lengths(np.zeros((20, 3)), [20]).map(np.sin)
    ra.RaggedArray.from_lengths(np.zeros((20, 3)), [20]).map(torch.cos, device="cpu")
    assert [getattr(d, "type", d) for d in seen] == ["cpu", "cpu", "cpu"]


@requires_cuda
def test_cuda_values_run_in_one_call_where_they_lie(fresh_plans):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 5).cuda()
    sizes = []
    conv.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    x = ra.RaggedImageBatch.from_lengths(torch.randn(5000, 1, 16, 16, device="cuda"), [3000, 2000])
    with torch.no_grad():
        x.map(conv)  # probe, then the rest
        sizes.clear()
        y = x.map(conv)
    assert sizes == [5000]
    torch.testing.assert_close(y.values, conv(x.values))


# --------------------------------------------------------------------- the allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
HAS_MALLINFO2 = GLIBC and hasattr(ctypes.CDLL(None), "mallinfo2")

# Run in a fresh interpreter: where a block comes from (glibc's heap or a mapping of its own), as
# mallinfo2 reports it, before (16 MiB) and after (20 MiB) the step under test. The second block
# is larger because freeing the first raises the threshold to its size.
WHERE_BLOCKS_GO = textwrap.dedent(
    """
    import ctypes, sys

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def where(size):
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(size)
        mapped = libc.mallinfo2().hblkhd - before >= size
        libc.free(block)
        return "mapped" if mapped else "heap"

    import raggedarray, raggedarray._allocator as allocator, raggedarray.map as mapping
    first = where(16 << 20)
    exec(sys.argv[1])
    print(first, where(20 << 20))
    """
)


def where_blocks_go(step, env=None):
    done = subprocess.run(
        [sys.executable, "-c", WHERE_BLOCKS_GO, step],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return done.stdout.split()


@pytest.mark.skipif(not HAS_MALLINFO2, reason="glibc's mallinfo2 reports where blocks go")
def test_settle_moves_the_mmap_threshold_to_its_ceiling_once():
    # Importing raggedarray changes nothing: a fresh process maps such blocks of their own.
    assert where_blocks_go("pass") == ["mapped", "mapped"]
    assert where_blocks_go("assert allocator.settle() and not allocator.settle()") == [
        "mapped",
        "heap",
    ]
    # The first map on a CPU settles; SETTLE_HEAP = False leaves the thresholds alone.
    first_map = (
        "raggedarray.RaggedArray.from_lengths(__import__('numpy').zeros((40, 2)), [40]).map(abs)"
    )
    assert where_blocks_go(first_map) == ["mapped", "heap"]
    assert where_blocks_go(f"mapping.SETTLE_HEAP = False; {first_map}") == ["mapped", "mapped"]


@pytest.mark.skipif(not HAS_MALLINFO2, reason="glibc's mallinfo2 reports where blocks go")
def test_settle_leaves_thresholds_fixed_by_the_environment_alone():
    import os

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(8 << 20)}
    assert where_blocks_go("allocator.settle()", env=env) == ["mapped", "mapped"]


def test_settle_does_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(_allocator, "_settled", False)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert _allocator.settle() is False
    assert _allocator._settled  # and does not try again
    assert _allocator.settle() is False


def test_the_settled_state_is_within_glibcs_ceiling():
    assert _allocator.BLOCK < _allocator.CEILING == 32 << 20
    assert (
        mapping.CPU_CALL_BYTES < _allocator.CEILING
    )  # one call's largest tensor stays on the heap
    assert math.isfinite(mapping.CPU_COMPUTE_BOUND)
