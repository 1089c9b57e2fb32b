"""``map``: run a function over the flat values of a ragged array, in cache-sized chunks.

The function sees a ``(k, *item_shape)`` slice of the buffer and must return one row per
item. Because the items of every segment lie side by side, a chunk may split segments and
the result still lines up with the input's offsets.

Why chunks, on a CPU: one call over a large batch is slower than many calls over small ones.
Past glibc's 32 MiB mmap threshold every temporary is a fresh mapping whose pages fault on
first touch, call after call, and the working set falls out of cache (``Conv2d(1, 4, 5)`` on
16x16 images, torch 2.13, 2 cores: 1.6 µs per image in calls of 128-1 024 images, 3.9 µs in
one call over 30 000). But splitting has a price too: without autograd every chunk's output
is copied into the result, which one call hands back as it is (~0.15 µs per image for that
network, ~8 %). The rule: a probe call on a copy of the first few items measures, per item,
the largest tensor any torch operation makes (a convolution counts its unfolded input, which
is ``kernel size`` times larger than its output). A batch whose largest tensor stays within
``CPU_CALL_BYTES`` is one call; a larger one is split into equal chunks (sizes within one
item, so no call is a small remainder) whose largest tensor stays within
``CPU_CHUNK_BYTES``, or within ``CPU_CALL_BYTES`` when the probe counts at least
``CPU_COMPUTE_BOUND`` multiply-adds per byte written (a network bound by arithmetic gains
little from the cache and pays each call's fixed costs). Before its first plan on a CPU,
``map`` brings glibc's heap to its settled state (``_allocator.settle``), so that neither
the plan's calls nor their timing depend on what the process allocated before. When autograd
records the calls, the outputs are joined whatever the split and the chunks stay within
``CPU_CHUNK_BYTES_GRAD``. On a GPU (values there, or ``device=`` naming one) the whole
buffer goes in one call unless the probe says the operations' outputs would not fit in half
the free memory. The plan is cached per function, item shape, dtype, device and autograd; a
batch within it then costs one call of the function plus a few µs.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from . import _allocator, _backend, _checks
from ._probe import Costs, buffers_of, probe, put_back, uncompiled

# The largest tensor of one call on a CPU (see the module docstring and docs/benchmarks.md).
# benchmarks/bench_chunks.py, torch 2.13, a quiet machine, no grad, the copy into the result
# included; Conv2d(1, 4, 5)+ReLU on 16x16 (largest tensor 14.4 KB per image). Two threads:
# one call was the fastest up to 1 600 images (22 MiB; 0.84-0.92 µs per image against 1.02-1.04
# in chunks of 400-533) and lost from 2 400 (33 MiB) to chunks of 600-1 200 (0.96-0.99 µs,
# one call 1.05-1.13). One thread: one call of 1 600 was the fastest (1.63 µs against 1.70-1.74),
# one of 3 200 (44 MiB) cost 1.19x chunks of 400-800. The ~420 000-parameter CNN (73.7 KB per
# image) was flat from 113 to 400 images on two threads and from 113 to 341 (24 MiB) on one,
# where 512 (36 MiB) cost 1.36x: the cliff is glibc's 32 MiB mmap threshold. Chunks stay at
# 8 MiB: 11-12 MiB chunks were as fast in some fresh sweeps and 1.3-1.4x slower in others, and
# in the seed grid's long runs (benchmarks/bench_grid.py) the cells of 2 400-4 800 images ran
# 1.4-1.7x one dense call in some runs with either budget (glibc's dynamic thresholds; see
# docs/compute.md), so the measurements do not favour a change. Under autograd the
# chunks of the two DeepSet networks in benchmarks/bench_train.py cost the same within the
# noise from 128 to 512 images (conv8-conv16, 41.5 KB per image; 768 is 1.14-1.23x the best)
# and from 384 to 768 (the demo's, 14.4 KB per image): 8 MiB lands in both bands.
CPU_CALL_BYTES = 24 << 20
CPU_CHUNK_BYTES = 8 << 20
CPU_CHUNK_BYTES_GRAD = 8 << 20
# Multiply-adds per byte written from which a network's chunks are sized like one call. Cache
# residency is what small chunks buy, and it matters little to a network bound by arithmetic,
# while every call costs its fixed overheads again (oneDNN primitives, packing the weights).
# bench_chunks.py --budgets 4,8,12,16,24,28, no grad, 2 threads, glibc's heap settled: the
# ~420k-parameter CNN (20.3 multiply-adds per byte) ran chunks of 24-28 MiB at 1.00-1.03 of the
# best and 4-16 MiB at 1.08; in the seed grid its hand chunks of 512 images beat map's 113 by
# 4-18 % in 15 of 24 cells. The small CNN (3.1) ran 8-12 MiB best and 24 MiB at 1.19, the demo's
# DeepSet psi (2.8) 4-8 MiB best and 16-28 MiB at 1.33-1.36.
CPU_COMPUTE_BOUND = 10.0
# Settle glibc's heap before the first CPU plan (``_allocator``); False leaves its thresholds to
# the process's history.
SETTLE_HEAP = True
# Items in the probe call that measures a function's memory per item.
PROBE_ITEMS = 16
# Fraction of free GPU memory the outputs of one call may take.
GPU_MEMORY_FRACTION = 0.5


class _ByIdentity:
    """Plans by holder: found by identity, dropped when the holder dies (a weak reference).

    Not a ``WeakKeyDictionary``, which compares keys with ``==``: a plan kept with an array
    (``x.map(t.mul)``) would compare arrays elementwise.
    """

    def __init__(self) -> None:
        self._table: dict[int, tuple[weakref.ref[Any], dict[Any, _Plan]]] = {}

    def get(self, holder: Any) -> dict[Any, _Plan] | None:
        entry = self._table.get(id(holder))
        return entry[1] if entry is not None and entry[0]() is holder else None

    def setdefault(self, holder: Any) -> dict[Any, _Plan]:
        """The plans of ``holder``, new if none; ``TypeError`` if it cannot be weakly held."""
        plans = self.get(holder)
        if plans is None:
            key, table = id(holder), self._table

            def drop(ref: weakref.ref[Any]) -> None:
                if table.get(key, (None,))[0] is ref:
                    del table[key]

            plans = {}
            table[key] = (weakref.ref(holder, drop), plans)
        return plans

    def __getitem__(self, holder: Any) -> dict[Any, _Plan]:
        plans = self.get(holder)
        if plans is None:
            raise KeyError(holder)
        return plans

    def __contains__(self, holder: Any) -> bool:
        return self.get(holder) is not None

    def __len__(self) -> int:
        return len(self._table)


_chosen = _ByIdentity()
# Plans of callables that cannot be weakly referenced (numpy ufuncs, builtins), held strongly;
# cleared when it reaches _KEPT_MAX (a bound builtin method holds its object).
_kept: dict[Any, dict[Any, _Plan]] = {}
_KEPT_MAX = 64


def map_lean(values: Any, fn: Callable[[Any], Any], owner: type) -> Any:
    """``fn(values)`` for the common call (no options, a tensor run in place), else ``None``.

    ``None`` also when no plan is remembered for ``fn`` on this kind of item, or when the
    remembered plan splits the batch and ``fn`` is coupled across the batch; the full path
    of ``map_values`` then decides. Kept lean: the smallest calls take ~60 µs, and after
    ``fn`` has flushed the caches every line here costs 0.2-1 µs (torch's functions and
    types are bound once, below). ``owner`` names the class in error messages.
    """
    # Whether a graph is traced is asked first, before any global bound below is read: a
    # graph guards on the globals it reads, and binding them later (an eager call after a
    # compiled one) would recompile every graph traced before.
    torch = _backend.loaded_torch()
    if torch is None or torch.compiler.is_compiling():
        return None  # torch is not loaded (values is not a tensor), or a graph is traced
    if _Tensor is None:  # torch's objects are bound once, eagerly (never while tracing:
        _bind_torch()  # torch 2.6's dynamo fails on the new globals)
    if type(values) is not _Tensor:
        return None
    last = _last
    grad = _grad_enabled()
    ref = last[1]
    if ref is not None and ref() is values and last[0]() is fn and last[2] is grad:
        plan = last[4]
    else:
        plan = _remembered(fn, values, grad)
    num_items = values.shape[0]
    if num_items > plan.measured < PROBE_ITEMS:  # (plan.covers, inline: measured on fewer
        return None  # items than this batch has, so map_values probes again)
    if plan.training is not None and getattr(fn, "training", None) is not plan.training:
        return None  # a module's mode changed since its probe (or a method's: map_values)
    if 0 < num_items <= plan.whole:
        output = fn(values)
        if not _usual_rows(output, num_items):
            _check_rows(output, num_items, f"{owner.__name__}.map")
        return output
    if plan is not _NONE and not _batch_coupled(fn):
        return _chunks(values, fn, plan, where=f"{owner.__name__}.map")
    return None


# Bound once torch is loaded (importing raggedarray does not import torch).
_Tensor: Any = None
_strided: Any = None
_real: Any = frozenset()  # the torch dtypes a ragged array may hold
_grad_enabled: Any = None


def _bind_torch() -> bool:
    """Bind the torch objects ``map_lean`` reads; False while torch is not loaded."""
    global _Tensor, _strided, _grad_enabled, _real
    torch = _backend.loaded_torch()
    if torch is None:
        return False
    _real = _checks.torch_real_dtypes()
    _strided = torch.strided
    _grad_enabled, _Tensor = torch.is_grad_enabled, torch.Tensor
    return True


def map_values(
    values: Any,
    fn: Callable[[Any], Any],
    *,
    chunk_size: int | None = None,
    device: Any = None,
    progress: bool = False,
    where: str = "map",
) -> Any:
    """``fn`` applied to ``values`` in chunks of items; returns the ``(N, ...)`` result.

    See [`RaggedArray.map`][raggedarray.RaggedArray.map] for the contract.
    """
    if not callable(fn):
        raise TypeError(f"{where}: fn must be callable; got {type(fn).__name__}")
    chunk_size = _check_chunk_size(chunk_size, where)
    progress = _checks.read_bool(progress, "progress", where)
    target = _target_device(values, fn, device, where)
    num_items = values.shape[0]
    if _backend.compiling():
        if chunk_size is None:
            return _whole(values, fn, target, where)
        return _chunks_outside_graph()(
            values, fn, _Plan(chunk_size, chunk_size, False), where=where, target=target
        )
    if chunk_size is None and _batch_coupled(fn):
        chunk_size = max(num_items, 1)
    key = _cache_key(values, target)
    if chunk_size is not None:
        plan: _Plan | None = _Plan(chunk_size, chunk_size, False)
    else:
        plan = _cached_choice(fn, key)
        if plan is not None and (not plan.covers(num_items) or plan.training != _training(fn)):
            plan = None  # measured on fewer items than this batch has, or in the other mode
    if plan is not None and 0 < num_items <= plan.whole and not progress:
        return _whole(values, fn, target, where)  # one call: no slicing, no assembling
    return _chunks(values, fn, plan, where=where, target=target, key=key, progress=progress)


def _chunks(
    values: Any,
    fn: Callable[[Any], Any],
    plan: _Plan | None,
    *,
    where: str,
    target: Any = None,
    key: tuple[Any, ...] = (),
    progress: bool = False,
) -> Any:
    """``fn`` over ``values`` in the plan's chunks; with no plan, probe, choose and remember one."""
    num_items = values.shape[0]
    bar = _progress_bar(num_items, where) if progress else None
    assembler = _Assembler(num_items, where)
    recast = _recasts_per_chunk(values, target)
    try:
        unproven = plan is None
        if plan is None:  # probe on the first items, then size the chunks
            plan, unproven = _probe_plan(fn, values, target, key, where)
        for a, b in _spans(num_items, plan):
            if recast:
                _backend.torch_module().clear_autocast_cache()
            chunk = _move(values[a:b], target)
            # (a view of the buffer; a chunk moved to another device is a copy of its own)
            view = _backend.is_tensor(chunk) and chunk._base is not None
            version = chunk._version if view else None
            output = fn(chunk)
            if version is not None and chunk._version != version and (a, b) != (0, num_items):
                _refuse_writes_across_chunks(output, where)
            assembler.add(output, b - a, a)
            if bar is not None:
                bar.update(b - a)
    finally:
        if bar is not None:
            bar.close()
    if unproven and num_items:  # the probe failed, and one call ran: remember that
        _remember(fn, key, plan)
    return assembler.result()


def _probe_plan(
    fn: Callable[[Any], Any], values: Any, target: Any, key: tuple[Any, ...], where: str
) -> tuple[_Plan, bool]:
    """The plan for ``fn`` from a probe on the first items; whether it is still unproven.

    A module whose call changed its state (running statistics, spectral norm's vectors, a
    quantization observer) is called once: chunks would update it once each. A function
    the probe cannot run (autograd inside it, which the probe's ``no_grad`` stops; a
    compiled part, which cannot trace the probe's mode) is called once too, as it would be
    by hand; that plan is remembered once the call has run (an error of ``fn`` itself is
    raised by the call).
    """
    num_items = values.shape[0]
    stop = min(num_items, PROBE_ITEMS)
    training = _training(fn)
    once = _Plan(_ALL, _ALL, True, stop, training)  # one call, whatever the batch
    try:
        output, costs, stateful = _probe_aside(fn, values[:stop], target)
    except Exception:
        return once, True
    if stateful:
        plan = once
    else:  # key: (item shape, dtype, device, grad)
        plan = _choose(costs, key[2], grad=key[-1])._replace(measured=stop, training=training)
    if num_items:  # (no items measured nothing: a plan from them would be one call)
        _remember(fn, key, plan)
    _check_rows(output, stop, where)  # (a bad output fails before the batch runs)
    # Dropped, even when those items are the whole batch: the batch runs in the plan's
    # calls from its first item, the calls every later batch of this size makes, outside
    # the probe's mode (under which a transformer leaves its fast path) and recorded by
    # autograd as a recomputation (checkpoint) records them. Kept, the probe's output made
    # the first call 16 items plus the rest, which differs for a function that looks
    # across items (v - v.mean(0)).
    return plan, False


def _training(fn: Any) -> bool | None:
    """The training mode of the module ``fn`` is (or is a method of); None for the others."""
    module = _module_of(fn)
    return None if module is None else bool(module.training)


def _probe_aside(fn: Callable[[Any], Any], head: Any, target: Any) -> tuple[Any, Costs, bool]:
    """``probe`` on a copy of the first items, leaving no trace the batch's calls could see.

    Its output is dropped and the batch then runs from its first item, so the probe must
    not be a second application of ``fn`` to those items: a function that writes into its
    input (``torch.relu_``, ``nn.ReLU(inplace=True)``) gets a copy, the global random
    state (torch's CPU generator and that of the CUDA device the call runs on, numpy's
    legacy global generator) is put back, so a function that draws (dropout) draws for the
    batch exactly as it would on a later call, and so are the buffers of a module (or of
    its bound method or a ``functools.partial`` of either): running statistics, spectral
    norm's vectors; whether any changed is returned. A plain function that changes state
    elsewhere sees one more call.

    Autograd records nothing (the output is dropped; a checkpoint's recomputation, which
    finds the plan and skips the probe, must save what the first forward saved), and a
    compiled function is measured through the function it compiles (dynamo cannot trace
    the probe's torch function mode).
    """
    head = head.clone() if _backend.is_tensor(head) else np.array(head, copy=True)
    torch = _backend.loaded_torch()  # not loaded: numpy values and a numpy function
    kept: Any = contextlib.nullcontext()
    module, buffers = _module_of(fn), []
    if torch is not None:
        device = target if target is not None else getattr(head, "device", None)
        kept = contextlib.ExitStack()
        kept.enter_context(torch.random.fork_rng(devices=[device] if _is_cuda(device) else []))
        kept.enter_context(torch.no_grad())
        if module is not None:  # running statistics, spectral norm's vectors, counters
            buffers = buffers_of(module, torch)
    numpy_state = np.random.get_state()
    try:
        with kept:
            output, costs = probe(uncompiled(fn), _move(head, target))
    finally:
        np.random.set_state(numpy_state)
        stateful = put_back(buffers)
    return output, costs, stateful


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", None) == "cuda"


_outside_graph: list[Callable[..., Any]] = []  # built once (dynamo warns of functools.cache)


def _refuse_writes_across_chunks(output: Any, where: str) -> None:
    """Refuse ``fn`` writing into its chunk when autograd records the chunks.

    The chunks are views of one buffer and share its version counter: a write into one
    invalidates what autograd saved for the others (``relu_`` saves its output), and
    backward would fail.
    """
    if _backend.is_tensor(output) and _backend.needs_grad(output):
        raise ValueError(
            f"{where}: fn must not write into its input when autograd records it in chunks "
            "(the chunks share the buffer's version counter: each write invalidates what "
            "autograd saved for the others); got a function that writes into its input, "
            "such as nn.ReLU(inplace=True) or torch.relu_ (use the out-of-place form, or "
            "chunk_size=x.num_items for one call). Items of the chunks run so far were "
            "written"
        )


def _recasts_per_chunk(values: Any, target: Any) -> bool:
    """Whether each chunk must cast the weights afresh: autocast on, autograd recording.

    Autocast casts a weight to bfloat16 once and keeps the copy; every chunk's gradient
    then adds into that copy's in bfloat16 before one cast back (683 % off for a Linear
    over chunks of 7 rows). With the cache cleared, each chunk's gradient comes back to
    float32 on its own and the chunks add in float32, as one call's would.
    """
    if not _backend.is_tensor(values):
        return False
    torch = _backend.torch_module()
    device = (target if target is not None else values.device).type
    return torch.is_grad_enabled() and torch.is_autocast_enabled(device)


def _chunks_outside_graph() -> Callable[..., Any]:
    """``_chunks`` run eagerly from inside a ``torch.compile`` graph (a graph break).

    Traced, the loop would make the number of chunks part of the graph, and every batch
    with another ``ceil(N / chunk_size)`` would recompile. Run eagerly, the chunks keep
    the memory bound the user asked for, and the graphs before and after it keep ``N``
    symbolic.
    """
    if not _outside_graph:
        _outside_graph.append(_backend.torch_module().compiler.disable(_chunks))
    return _outside_graph[0]


def _whole(values: Any, fn: Callable[[Any], Any], target: Any, where: str) -> Any:
    """One call on the whole buffer: one chunk, or ``map`` inside a ``torch.compile`` graph.

    In a graph, a chunk loop would make the number of chunks, and so ``N``, part of the graph: every
    batch of another size would recompile. One call keeps ``N`` symbolic; the compiler
    fuses ``fn``'s operations, so the large temporaries that make chunks pay off eagerly
    are fewer there.
    """
    output = fn(_move(values, target))
    _check_rows(output, values.shape[0], where)
    return output


def _check_chunk_size(chunk_size: Any, where: str) -> int | None:
    if chunk_size is None:
        return None
    return _checks.read_int(chunk_size, "chunk_size", where, low=1)


class _Plan(NamedTuple):
    """How ``map`` splits a batch: one call up to ``whole`` items, else ``chunk``-item calls.

    An explicit ``chunk_size`` is taken literally (chunks of exactly that size, the last one
    smaller); a chosen plan splits into equal chunks (sizes differ by at most one), so no call
    is a small remainder. ``measured``: the items its probe saw. A probe of fewer than
    ``PROBE_ITEMS`` (a first batch that small) counts a function's fixed temporaries (a
    weight it builds per call) as the cost of those few items, so a larger batch probes
    again rather than run in the tiny chunks that plan gives. ``training``: the mode of the
    module probed (None for a function); in the other mode it is probed again.
    """

    whole: int
    chunk: int
    equal: bool
    measured: int = PROBE_ITEMS
    training: bool | None = None

    def covers(self, num_items: int) -> bool:
        """Whether the plan was measured on enough items for a batch of ``num_items``."""
        return self.measured >= PROBE_ITEMS or num_items <= self.measured


_NONE = _Plan(0, 0, False)  # nothing remembered: no batch is whole
_ALL = sys.maxsize  # a plan's ``whole`` for a function called once whatever the batch
# The last plan looked up for a tensor run in place: (weak reference to fn, weak reference to
# the values, grad mode, key, plan). A call on the same tensor with the same fn skips building
# the key; one on another tensor with an equal key skips the dictionaries. Replaced whole,
# never mutated, so a thread reads one consistent entry.
_NO_MEMO: tuple[Any, ...] = (None, None, None, None, _NONE)
_last = _NO_MEMO


def _spans(stop: int, plan: _Plan) -> Iterator[tuple[int, int]]:
    """Chunk boundaries; zero items still make one (empty) call so the output has a shape."""
    if stop <= plan.whole:
        yield 0, stop
        return
    if not plan.equal:
        for a in range(0, stop, plan.chunk):
            yield a, min(a + plan.chunk, stop)
        return
    parts = -(-stop // plan.chunk)
    size, longer = divmod(stop, parts)  # the first ``longer`` chunks take one item more
    a = 0
    for i in range(parts):
        b = a + size + (i < longer)
        yield a, b
        a = b


# --------------------------------------------------------------------------- devices


def _is_module(fn: Any) -> bool:
    torch = _backend.loaded_torch()
    return torch is not None and isinstance(fn, torch.nn.Module)


def _target_device(values: Any, fn: Any, device: Any, where: str) -> Any:
    """The torch device chunks are moved to, or None to hand them over as they are."""
    if device is not None:
        return _checks.device(device, where)
    if not _backend.is_tensor(values) and _is_module(fn):
        return _backend.torch_module().device("cpu")  # modules take tensors
    return None


def _move(chunk: Any, target: Any) -> Any:
    """A chunk on the target device: pinned and copied without blocking for CUDA."""
    if target is None:
        return chunk
    if not _backend.is_tensor(chunk):  # fn may write into it: a read-only buffer is copied
        chunk = _backend.writable_tensor(np.ascontiguousarray(chunk))
    if chunk.device == target:
        return chunk
    if target.type != "cuda":  # a copy to the host must be complete before fn reads it
        return chunk.to(target)
    if chunk.device.type == "cpu" and not chunk.is_pinned():
        chunk = chunk.pin_memory()
    return chunk.to(target, non_blocking=True)


def _batch_coupled(fn: Any) -> bool:
    """Whether ``fn`` is a module (or a module's bound method) whose results depend on the batch.

    That is one holding a batch norm that normalises with the batch's statistics: in training
    mode, or in evaluation mode without running statistics (``track_running_stats=False``).
    """
    module = _module_of(fn)
    if module is None:
        return False
    return any(_couples(m) for m in module.modules())


# The layers whose results (or running statistics) follow the batch they are called on,
# by class (a subclass too) or by class name: a scripted or traced module is no instance
# of torch's class, but keeps its name in ``original_name``.
_BATCH_NORMS = frozenset(f"{lazy}BatchNorm{d}d" for lazy in ("", "Lazy") for d in (1, 2, 3)) | {
    "SyncBatchNorm"
}
_INSTANCE_NORMS = frozenset(f"{lazy}InstanceNorm{d}d" for lazy in ("", "Lazy") for d in (1, 2, 3))


def _couples(layer: Any) -> bool:
    """Whether ``layer``'s results or statistics follow the batch it is called on.

    A batch norm using its batch's statistics, or an instance norm whose running statistics
    a call updates once (tracking them, in training mode).
    """
    modules = _backend.torch_module().nn.modules
    name = getattr(layer, "original_name", None) or type(layer).__name__
    tracks = getattr(layer, "track_running_stats", True)
    if name in _BATCH_NORMS or isinstance(layer, modules.batchnorm._BatchNorm):
        return bool(layer.training or not tracks)  # (SyncBatchNorm is a _BatchNorm)
    instance = name in _INSTANCE_NORMS or isinstance(layer, modules.instancenorm._InstanceNorm)
    return instance and bool(layer.training and tracks)


def _module_of(fn: Any) -> Any:
    """The module ``fn`` is, or is a bound method or ``functools.partial`` of; else None."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    module = fn if _is_module(fn) else getattr(fn, "__self__", None)
    return module if _is_module(module) else None


# ---------------------------------------------------------------------- chunk choice


def _cache_key(values: Any, target: Any) -> tuple[Any, ...]:
    """What the chunk choice depends on besides ``fn``: item shape, dtype, device, autograd.

    For a tensor run where it lies this is the key ``_remembered`` builds, from the
    tensor's own fields (no strings to format on every call).
    """
    if target is None and _backend.is_tensor(values):
        device = values.device
    else:
        device = target if target is not None else "cpu"
    chunks_are_tensors = _backend.is_tensor(values) or target is not None
    grad = chunks_are_tensors and _backend.torch_module().is_grad_enabled()
    return (values.shape[1:], values.dtype, device, grad)


def _remembered(fn: Any, values: Any, grad: bool) -> _Plan:
    """The plan remembered for ``fn`` on the tensor ``values`` run in place; ``_NONE`` if none.

    Reads each tensor field once, and a key like the last one skips the dictionaries, whose
    lookups cost several µs once ``fn`` has flushed the caches. A plan found becomes the
    memo ``map_lean`` checks first.
    """
    global _last
    key = (values.shape[1:], values.dtype, values.device, grad)
    last = _last
    if last[3] == key and last[0] is not None and last[0]() is fn:
        plan = last[4]
    else:
        plan = _cached_choice(fn, key) or _NONE
        if plan is _NONE:
            return _NONE
    with contextlib.suppress(TypeError):  # (not weakly referenceable: no memo)
        _last = (weakref.ref(fn), weakref.ref(values), grad, key, plan)
    return plan


def _slot(fn: Any, key: tuple[Any, ...]) -> tuple[Any, Any]:
    """``(holder, slot)``: ``fn``'s plan for ``key`` is kept in the holder's plans, at slot.

    A bound method (``model.forward``, ``array.__mul__``, ``tensor.mul``) is a new object
    at every access: its plans are kept with its object (weakly, so a plan never keeps an
    array alive), by its function or name and the key. A builtin of a module (``len``) is
    bound to the module: it is kept as itself.
    """
    kind = type(fn)
    if kind is types.MethodType:
        return fn.__self__, (fn.__func__, key)
    if kind in _BOUND_BUILTINS:
        owner = fn.__self__
        if owner is not None and not isinstance(owner, (types.ModuleType, type)):
            return owner, (fn.__name__, key)
    return fn, key


# Bound methods of builtin types: ``np.ones(3).__mul__``, ``torch.ones(3).mul``.
_BOUND_BUILTINS = (types.BuiltinMethodType, types.MethodWrapperType)


def _plans_of(holder: Any, *, create: bool = False) -> dict[Any, _Plan] | None:
    """The plans kept for ``holder`` (None if there are none, or it cannot hold any).

    Weakly referenced, so that a function's plans go with it; one that cannot be (a numpy
    ufunc, a builtin) is held in ``_kept``; an unhashable one keeps no plans.
    """
    plans = _chosen.get(holder)
    if plans is None:
        with contextlib.suppress(TypeError):  # (not hashable: never in _kept)
            plans = _kept.get(holder)
    if plans is None and create:
        try:
            plans = _chosen.setdefault(holder)
        except TypeError:  # not weakly referenceable
            if len(_kept) >= _KEPT_MAX:
                _kept.clear()
            try:
                plans = _kept.setdefault(holder, {})
            except TypeError:  # nor hashable
                return None
    return plans


def _cached_choice(fn: Any, key: tuple[Any, ...]) -> _Plan | None:
    holder, slot = _slot(fn, key)
    plans = _plans_of(holder)
    return None if plans is None else plans.get(slot)


def _remember(fn: Any, key: tuple[Any, ...], plan: _Plan) -> None:
    global _last
    holder, slot = _slot(fn, key)
    plans = _plans_of(holder, create=True)
    if plans is not None:
        plans[slot] = plan
        _last = _NO_MEMO  # the memo may hold an older plan


def _choose(costs: Costs, device: Any, *, grad: bool) -> _Plan:
    """The plan from the probe's costs per item, for chunks that run on ``device``.

    ``grad``: autograd records the calls (tensor chunks with gradients enabled).

    It is not capped by this call's number of items: it is remembered for later calls,
    whose batches may be larger.
    """
    if getattr(device, "type", device) == "cuda":
        cuda = _backend.torch_module().cuda
        free, _ = cuda.mem_get_info(device)
        # Blocks torch's allocator holds but no tensor uses are free to this call too.
        free += cuda.memory_reserved(device) - cuda.memory_allocated(device)
        size = max(1, int(GPU_MEMORY_FRACTION * free // max(costs.total, 1.0)))
        return _Plan(size, size, True)
    if SETTLE_HEAP:
        _allocator.settle()
    if grad:
        size = _items_within(CPU_CHUNK_BYTES_GRAD, costs.largest)
        return _Plan(size, size, True)
    chunk = CPU_CALL_BYTES if costs.intensity >= CPU_COMPUTE_BOUND else CPU_CHUNK_BYTES
    return _Plan(
        _items_within(CPU_CALL_BYTES, costs.largest), _items_within(chunk, costs.largest), True
    )


def _items_within(budget: int, per_item: float) -> int:
    return max(1, int(budget // max(per_item, 1.0)))


# ------------------------------------------------------------------------ assembling


class _Assembler:
    """Checks each chunk's output and joins the outputs.

    Without autograd they are copied into one preallocated buffer as they come (peak memory:
    the output plus one chunk); when autograd records them they are concatenated at the end.
    """

    def __init__(self, num_items: int, where: str) -> None:
        self.num_items = num_items
        self.where = where
        # the kept outputs, each with its version when it came (None: the only part)
        self.parts: list[tuple[Any, int | None]] = []
        self.out: Any = None
        self.first: Any = None

    def add(self, output: Any, items: int, start: int) -> None:
        self.check(output, items)
        if self.first is None:
            self.first = output
            if output.shape[0] == self.num_items:
                self.parts.append((output, None))  # the only part: nothing can rewrite it
                return
            # (a tensor of torch.func's vmap or grad cannot be copied into a plain one)
            recorded = _backend.is_tensor(output) and (
                _backend.needs_grad(output) or _backend.transformed(output)
            )
            if not recorded:
                self.out = _allocate(output, self.num_items)
        if self.out is None:  # (a recorded tensor: untracked ones go into self.out)
            self.parts.append((output, output._version))
        elif _backend.is_tensor(self.out):
            self.out[start : start + items].copy_(output)
        else:
            self.out[start : start + items] = output

    def check(self, output: Any, items: int) -> None:
        """Refuse an output that is not an array with one row per item, like the first."""
        _check_rows(output, items, self.where)
        first = self.first
        if first is None:
            return
        if (  # the usual case, in one expression (numpy arrays before 2.0 have no device)
            type(output) is type(first)
            and output.shape[1:] == first.shape[1:]
            and output.dtype == first.dtype
            and getattr(output, "device", None) == getattr(first, "device", None)
        ):
            return
        if (
            _backend.backend_of(output) != _backend.backend_of(first)
            or output.shape[1:] != first.shape[1:]
            or output.dtype != first.dtype
            or _backend.device_str(output) != _backend.device_str(first)
        ):
            raise ValueError(
                f"{self.where}: fn must return the same kind of rows for every chunk; got "
                f"{_backend.describe(output)} after {_backend.describe(first)}"
            )

    def result(self) -> Any:
        if self.out is not None:
            return self.out
        if len(self.parts) == 1:
            return self.parts[0][0]
        if any(v is not None and p._version != v for p, v in self.parts):
            # kept until the end under autograd: one written again since came back wrong
            raise ValueError(
                f"{self.where}: fn must return a new array for each chunk; got an output "
                "that was written again after it was returned (a buffer fn reuses): return "
                "a new tensor, or a clone"
            )
        return _backend.torch_module().cat([p for p, _ in self.parts], dim=0)


def _usual_rows(output: Any, items: int) -> bool:
    """Whether ``output`` is the usual one: a dense real tensor with ``items`` rows.

    One expression over the fields ``map_lean`` binds (False before torch is loaded), so the
    common call pays a few field reads; anything else goes to ``_check_rows``'s full checks.
    """
    return (
        type(output) is _Tensor
        and output.layout is _strided
        and not output.is_nested
        and output.ndim > 0
        and output.shape[0] == items
        and not output.is_meta  # not device.type: after a large call that read costs ~10 µs
        and output.dtype in _real
    )


def _check_rows(output: Any, items: int, where: str) -> None:
    """Refuse an output that is not a dense array of real numbers with one row per item."""
    # (always False before map_lean bound torch's objects; never read by a graph, which
    # would guard on them)
    if not _backend.compiling() and _usual_rows(output, items):
        return
    if _backend.backend_of(output) is None:
        raise TypeError(
            f"{where}: fn must return a numpy array or a torch tensor; "
            f"got {_backend.describe(output)}"
        )
    if _backend.is_tensor(output):  # (a strided nested tensor has no shape to read)
        _checks.dense_tensor(output, where, "fn's output")
    if output.ndim == 0 or output.shape[0] != items:
        raise ValueError(
            f"{where}: fn must keep dim 0 (one output row per item); got output shape "
            f"{tuple(output.shape)} for a chunk of {items} items"
        )
    _checks.check_array(output, where, "fn's output")


def _allocate(first: Any, num_items: int) -> Any:
    shape = (num_items, *first.shape[1:])
    if not _backend.is_tensor(first):
        return np.empty(shape, dtype=first.dtype)
    return _backend.empty(shape, first.dtype, first.device)


def _progress_bar(total: int, where: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            f"{where}: progress=True needs tqdm: pip install 'raggedarray[progress]'"
        ) from None
    return tqdm(total=total, unit="item", desc=where)
