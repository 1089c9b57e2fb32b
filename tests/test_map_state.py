"""``map``'s probe against modules with state, functions it cannot run, and plan caching.

Chunks call ``fn`` several times: a module whose call updates its state (a batch norm's
running statistics, spectral norm's power iteration, a quantization observer) must see
the batch in one call, as one call by hand would, whatever its class. The probe call
before the first plan must leave no trace, and a function it cannot run (autograd inside
it, a compiled part) must still map.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import set_budgets
from torch import nn

import raggedarray as ra
import raggedarray.map as mapping


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Auto mode keeps the largest tensor of a call within 1 KiB: many small chunks."""
    set_budgets(monkeypatch, call=1024, chunk=1024, grad=1024)


def count_calls(module):
    sizes = []
    module.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    return sizes


class NormAct(nn.BatchNorm1d):
    """A batch norm and its activation in one layer, as timm's ``BatchNormAct2d``."""

    def forward(self, v):
        return torch.relu(super().forward(v))


class OwnNorm(nn.Module):
    """A layer calling ``F.batch_norm`` on running statistics of its own."""

    def __init__(self, features):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("var", torch.ones(features))

    def forward(self, v):
        return nn.functional.batch_norm(v, self.mean, self.var, training=self.training)


def _spectral():
    return nn.utils.parametrizations.spectral_norm(nn.Linear(6, 6))


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("make", [lambda: NormAct(6), lambda: OwnNorm(6), _spectral])
def test_a_module_whose_call_changes_its_state_sees_the_batch_in_one_call(tiny_chunks, make, grad):
    """A subclass of a batch norm was chunked (results 4.6 off), and batch norm's running
    statistics, which torch updates without moving their version, kept the probe's update;
    spectral norm's power iteration ran once per chunk."""
    torch.manual_seed(0)
    net = make().train()
    twin = copy.deepcopy(net)
    values = torch.randn(300, 6) * torch.linspace(0.1, 3, 300)[:, None] + 1
    x = ra.RaggedArray.from_lengths(values, [120, 0, 180])
    sizes = count_calls(net)
    with torch.set_grad_enabled(grad):
        for _ in range(2):  # the first call probes, the second runs the remembered plan
            got, want = x.map(net).values, twin(values)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert sizes[-1] == 300 and sizes[-2] == 300  # one call each time
    state, expected = dict(net.named_buffers()), dict(twin.named_buffers())
    assert state.keys() == expected.keys()
    for name in state:
        torch.testing.assert_close(state[name], expected[name], rtol=0, atol=0, msg=name)


def test_a_module_probed_in_one_mode_is_probed_again_in_the_other(tiny_chunks):
    """A plan is kept per module mode: spectral norm changes nothing in evaluation (chunks
    are right there), and updates its vectors in training (one call)."""
    torch.manual_seed(0)
    net = _spectral()
    twin = copy.deepcopy(net)
    x = ra.RaggedArray.from_lengths(torch.randn(300, 6), [300])
    sizes = count_calls(net)
    with torch.no_grad():
        for mode in (False, True, False, True):
            net.train(mode), twin.train(mode)
            sizes.clear()
            torch.testing.assert_close(x.map(net).values, twin(x.values))
            calls = sizes[1:]  # (after the probe's call)
            assert calls == [300] if mode else len(calls) > 1
    u, expected = net.parametrizations.weight[0]._u, twin.parametrizations.weight[0]._u
    torch.testing.assert_close(u, expected, rtol=0, atol=0)


def _saliency(net):
    def saliency(v):  # d(output)/d(item), item by item: autograd inside fn
        v = v.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(v).sum(), v)
        return g

    return saliency


def _compiled_inside():
    block = nn.Sequential(nn.Linear(6, 4), nn.ReLU())
    compiled = torch.compile(block, backend="eager", fullgraph=True)
    return nn.Sequential(compiled, nn.Linear(4, 2))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _saliency(nn.Sequential(nn.Linear(6, 8), nn.Tanh())), id="autograd"),
        pytest.param(_compiled_inside, id="compiled-part"),
    ],
)
def test_a_function_the_probe_cannot_run_is_called_once(make, monkeypatch):
    """The probe runs under no_grad and a torch function mode: a function using autograd
    inside, or holding a fullgraph-compiled module, failed on every call without
    chunk_size, though one call and explicit chunks ran."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    fn = make()
    x = ra.RaggedArray.from_lengths(torch.randn(50, 6), [20, 30])
    want = fn(x.values).detach()
    probes = []
    probe = mapping._probe_aside
    monkeypatch.setattr(mapping, "_probe_aside", lambda *a: probes.append(1) or probe(*a))
    for _ in range(3):
        torch.testing.assert_close(x.map(fn).values.detach(), want)
    torch.testing.assert_close(x.map(fn, chunk_size=7).values.detach(), want)
    assert probes == [1]  # the one-call plan is remembered once the call has run
    torch._dynamo.reset()


def test_an_error_of_fn_is_its_own_and_leaves_no_plan():
    """A function the probe cannot run is called once: its own error comes from there."""

    def broken(v):
        raise KeyError("broken")

    x = ra.RaggedArray.from_lengths(torch.randn(50, 6), [20, 30])
    for _ in range(2):
        with pytest.raises(KeyError, match="broken"):
            x.map(broken)
    assert mapping._cached_choice(broken, mapping._cache_key(x.values, None)) is None


class Scaler:
    def __init__(self):
        self.sizes = []

    def scale(self, v):
        self.sizes.append(len(v))
        return v * 2


@pytest.mark.parametrize("values", [np.random.rand(100, 3), torch.rand(100, 3)])
def test_plans_are_kept_for_bound_methods_and_builtin_functions(tiny_chunks, values, monkeypatch):
    """A bound method is a new object at every access, and a numpy ufunc cannot be weakly
    referenced: their plans were lost, and every map ran the probe again."""
    x = ra.RaggedArray.from_lengths(values, [40, 60])
    s = Scaler()
    for _ in range(3):
        x.map(s.scale)
    assert s.sizes[0] == mapping.PROBE_ITEMS and mapping.PROBE_ITEMS not in s.sizes[1:]
    assert sum(s.sizes[1:]) == 3 * 100
    probes = []
    probe = mapping._probe_aside
    monkeypatch.setattr(mapping, "_probe_aside", lambda *a: probes.append(1) or probe(*a))
    builtin = np.sqrt if isinstance(values, np.ndarray) else torch.Tensor.sqrt
    for _ in range(3):
        y = x.map(builtin)
    assert probes == [1]
    want = builtin(values)
    assert type(y.values) is type(want) and (y.values == want).all()


def test_plans_held_strongly_are_bounded():
    """Callables that cannot be weakly referenced are held by a table that stays small."""
    key = ((3,), torch.float32, torch.device("cpu"), False)
    for number in range(3 * mapping._KEPT_MAX):  # (ints: hashable, not weakly referenceable)
        mapping._remember(number, key, mapping._Plan(5, 5, True))
    assert len(mapping._kept) <= mapping._KEPT_MAX
    assert mapping._cached_choice(3 * mapping._KEPT_MAX - 1, key) == mapping._Plan(5, 5, True)
    mapping._kept.clear()


QUANTIZED_BUFFER = """
import warnings
import torch, raggedarray as ra
warnings.simplefilter("ignore")
class Quantized(torch.nn.Module):
    def __init__(self):
        super().__init__()
        scale = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)
        self.register_buffer("scale", scale)
    def forward(self, v):
        return v * 2
x = ra.RaggedArray.from_lengths(torch.randn(50, 4), [20, 30])
print(torch.equal(x.map(Quantized()).values, x.values * 2))
"""


def test_a_module_with_a_quantized_buffer_maps():
    """The probe's check of its buffers viewed a quantized one as bytes: the process
    crashed (exit 139)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", QUANTIZED_BUFFER], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


def test_plans_of_bound_builtins_keep_no_array_alive_and_are_reused(monkeypatch):
    """numpy's bound builtins cannot be weakly referenced: their plans were held strongly,
    keeping each array alive; torch's were keyed by the method object, which dies at once,
    so every call probed again (and keys compared elementwise when kept by the array)."""
    import gc
    import weakref

    probes = []
    probe = mapping._probe_aside
    monkeypatch.setattr(mapping, "_probe_aside", lambda *a: probes.append(1) or probe(*a))
    for module in (np, torch):
        values, weights = module.ones((50, 8)), module.arange(8.0)
        probes.clear()
        x = ra.RaggedArray.from_lengths(values, [20, 30])
        alive = weakref.ref(weights)
        multiply = weights.__mul__ if isinstance(weights, np.ndarray) else weights.mul
        for _ in range(3):
            y = x.map(multiply)
            multiply = weights.__mul__ if isinstance(weights, np.ndarray) else weights.mul
        assert probes == [1] and (y.values == values * weights).all()
        del weights, multiply
        gc.collect()
        assert alive() is None


def test_a_function_the_probe_cannot_run_leaves_no_trace_of_an_extra_call():
    """Retried on the probe's items in the caller's grad mode, a function that calls
    backward inside counted the first items' gradients twice, and under a non-reentrant
    checkpoint the retry's saved tensors made the recomputation fail."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    def accumulate(v):
        out = model(v)
        out.sum().backward()
        return out.detach()

    x = ra.RaggedArray.from_lengths(torch.randn(20, 3), [5, 15])
    x.map(accumulate)
    got = model.weight.grad.clone()
    model.weight.grad = None
    accumulate(x.values)
    torch.testing.assert_close(got, model.weight.grad)

    def forces(positions):
        energy = (positions**3).sum()
        return -torch.autograd.grad(energy, positions, create_graph=True)[0]

    def block(v):
        return ra.RaggedArray.from_lengths(v, [5, 15]).map(forces).values

    values = torch.randn(20, 3, requires_grad=True)
    torch.utils.checkpoint.checkpoint(block, values, use_reentrant=False).sum().backward()
    torch.testing.assert_close(values.grad, -6 * values.detach())
