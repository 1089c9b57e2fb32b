"""Engines for segment sums and maxima on a GPU: which one reads the values at memory speed.

Run (on a CUDA machine): PYTHONPATH=. python benchmarks/bench_gpu_engines.py [--cpu]

For float32 ``(N, F)`` values it times, with CUDA events (medians of interleaved rounds):
``copy_`` (the bandwidth bar), ``values.sum(0)``, ``ra.segment_sum`` / ``segment_max``
(what the package runs), ``index_add_`` / ``scatter_reduce_`` over per-item ids, a CSR
matrix of ones times the values (cuSPARSE), and ``torch.segment_reduce`` (CUB's segmented
reduction), forward and forward+backward where the candidate has a backward. It also
prints each sum's relative error against float64 on one segment of 10^6 equal items, the
worst case for accumulation order. ``--cpu`` runs tiny sizes on the CPU, to test the script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import raggedarray as ra
from raggedarray._partition import Partition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import backward_step, without_triton


def median_ms(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int) -> dict:
    """Median milliseconds of each function, in interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                start.record()
                fn()
                stop.record()
                torch.cuda.synchronize()
                samples[name].append(start.elapsed_time(stop))
            else:
                t = time.perf_counter()
                fn()
                samples[name].append(1e3 * (time.perf_counter() - t))
    return {name: statistics.median(s) for name, s in samples.items()}


def candidates(values: torch.Tensor, offsets: torch.Tensor) -> dict[str, dict[str, Callable]]:
    """Forward functions of every engine, for sum and max."""
    num_items, m = values.shape[0], offsets.shape[0] - 1
    lengths = offsets[1:] - offsets[:-1]
    ids = torch.repeat_interleave(
        torch.arange(m, device=values.device), lengths, output_size=num_items
    )
    columns = torch.arange(num_items, device=values.device)
    ones = torch.ones(num_items, dtype=values.dtype, device=values.device)
    csr = torch.sparse_csr_tensor(offsets, columns, ones, size=(m, num_items))
    shape = (m, values.shape[1])
    index = ids.unsqueeze(1).expand(values.shape)
    return {
        "sum": {
            "ra.segment_sum": lambda v: ra.segment_sum(v, offsets),
            "index_add_": lambda v: torch.zeros(shape, device=v.device).index_add(0, ids, v),
            "csr mm": lambda v: torch.sparse.mm(csr, v),
            "segment_reduce": lambda v: torch.segment_reduce(v, "sum", offsets=offsets, axis=0),
        },
        "max": {
            "ra.segment_max": lambda v: ra.segment_max(v, offsets),
            "ra.segment_max, without Triton": without_triton(lambda v: ra.segment_max(v, offsets)),
            "scatter_reduce": lambda v: torch.zeros(shape, device=v.device).scatter_reduce(
                0, index, v, "amax", include_self=False
            ),
            # (empty segments give -inf here, where the others give 0)
            "segment_reduce": lambda v: torch.segment_reduce(v, "max", offsets=offsets, axis=0),
        },
    }


def wide_rows(rows: torch.Tensor, ids: torch.Tensor) -> dict[str, Callable[[], object]]:
    """``index_select`` of the rows read as 8- and 16-byte elements (fewer, wider copies)."""
    out = {}
    for wide in (torch.int64, torch.complex128):
        if rows.shape[1] * rows.element_size() % wide.itemsize == 0:
            view = rows.view(wide)
            out[f"index_select, {wide.itemsize}-byte elements"] = lambda view=view: (
                view.index_select(0, ids).view(rows.dtype)
            )
    return out


def compiled_gather(rows: torch.Tensor, ids: torch.Tensor) -> dict[str, Callable[[], object]]:
    """``rows[ids]`` through ``torch.compile`` (a generated gather kernel), where it compiles."""
    try:
        gather = torch.compile(lambda r, i: r[i], dynamic=True)
        gather(rows, ids)
    except Exception as error:
        print(f"| broadcast: compiled rows[ids] | failed: {type(error).__name__} | | |")
        return {}
    return {"compiled rows[ids]": lambda: gather(rows, ids)}


def fresh_ids(part: Partition, device: torch.device) -> torch.Tensor:
    """The partition's segment ids built again (as for a new batch)."""
    part._cache.pop(("ids", str(device)), None)
    return part.ids(device)


def case(num_items: int, m: int, features: int, device: torch.device, rounds: int) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.multinomial(num_items, np.full(m, 1.0 / m))
    host = np.concatenate([[0], np.cumsum(lengths)])
    offsets = torch.tensor(host, device=device)
    values = torch.randn(num_items, features, device=device)
    leaf = values.clone().requires_grad_()
    print(f"\nN={num_items:,}, m={m:,}, F={features} ({values.nbytes / 2**20:.0f} MiB)")
    out = torch.empty_like(values)
    base = median_ms(
        {"copy_": lambda: out.copy_(values), "values.sum(0)": lambda: values.sum(0)},
        device,
        rounds,
    )
    for name, ms in base.items():
        print(f"| {name} | {ms:.3f} ms | | |")
    lengths_t = offsets[1:] - offsets[:-1]
    ids = torch.repeat_interleave(torch.arange(m, device=device), lengths_t, output_size=num_items)
    rows = torch.randn(m, features, device=device)
    ids32 = ids.int()
    spread_index = ids.unsqueeze(1).expand(num_items, features)
    ragged = ra.RaggedArray(values, offsets)
    spread = median_ms(
        {
            "ra.segment_broadcast": lambda: ra.segment_broadcast(rows, host),
            "x.broadcast (ids cached)": lambda: ragged.broadcast(rows),
            "x.broadcast, index_select": without_triton(lambda: ragged.broadcast(rows)),
            "index_select": lambda: rows.index_select(0, ids),
            "repeat_interleave": lambda: torch.repeat_interleave(
                rows, lengths_t, dim=0, output_size=num_items
            ),
            "rows[ids]": lambda: rows[ids],
            "gather, expanded ids": lambda: rows.gather(0, spread_index),
            "embedding": lambda: torch.nn.functional.embedding(ids, rows),
            "index_select, int32 ids": lambda: rows.index_select(0, ids32),
            **wide_rows(rows, ids),
            "_segment_reduce_backward": lambda: torch.ops.aten._segment_reduce_backward(
                rows, rows, values, "sum", offsets=offsets, axis=0
            ),
            **compiled_gather(rows, ids),
        },
        device,
        rounds,
    )
    part = Partition(host, offsets=offsets)
    builds = median_ms(  # the ids of a fresh batch: one per partition
        {
            "the package (repeat_interleave)": lambda: fresh_ids(part, device),
            "marks at the ends + cumsum": lambda: (
                torch.zeros(num_items + 1, dtype=torch.int64, device=device)
                .index_add_(0, offsets[1:], torch.ones(m, dtype=torch.int64, device=device))[:-1]
                .cumsum(0)
            ),
        },
        device,
        rounds,
    )
    for name, ms in builds.items():
        print(f"| segment ids: {name} | {ms:.3f} ms | | |")
    for name, ms in spread.items():  # a sum's backward: (m, F) rows to (N, F) items
        print(f"| broadcast: {name} | {ms:.3f} ms ({base['copy_'] / ms:.2f} of copy) | | |")
    for op, fns in candidates(values, offsets).items():
        reference = next(iter(fns.values()))(values)
        forward, both, errors = {}, {}, {}
        for name, fn in fns.items():
            try:
                got = fn(values)
                errors[name] = float((got - reference).abs().max())
                forward[name] = lambda fn=fn: fn(values)
                grad = torch.ones_like(reference)
                fn(leaf).backward(grad)
                both[name] = backward_step(leaf, lambda fn=fn: fn(leaf), grad)
                if "without Triton" in name:  # the backward too
                    both[name] = without_triton(both[name])
            except Exception as err:  # a candidate without the kernel: say so, go on
                print(f"| {op}: {name} | failed: {type(err).__name__}: {str(err)[:90]} |")
        times = median_ms(forward, device, rounds)
        times_both = median_ms(both, device, rounds)
        for name in forward:
            fb = f"{times_both[name]:.3f} ms" if name in times_both else "-"
            print(
                f"| {op}: {name} | {times[name]:.3f} ms ({base['copy_'] / times[name]:.2f} of "
                f"copy) | fwd+bwd {fb} | max diff {errors[name]:.1e} |"
            )


def accuracy(device: torch.device, num_items: int) -> None:
    values = torch.full((num_items, 1), 0.1, device=device)
    offsets = torch.tensor([0, num_items], device=device)
    truth = float(values.double().sum())
    print(f"\none segment of {num_items:,} items of 0.1 (float32): relative error of the sum")
    for name, fn in candidates(values, offsets)["sum"].items():
        try:
            got = float(fn(values)[0, 0])
            print(f"| {name} | {abs(got - truth) / truth:.1e} |")
        except Exception as err:
            print(f"| {name} | failed: {type(err).__name__} |")
    print(f"| torch.sum | {abs(float(values.sum()) - truth) / truth:.1e} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error(
            "torch sees no CUDA device here; run it on a CUDA machine, or add --cpu for tiny "
            "sizes on the CPU (to test the script)"
        )
    warnings.simplefilter("ignore", UserWarning)  # sparse CSR is "beta"
    device = torch.device("cpu" if args.cpu else "cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if not args.cpu else 'cpu'}")
    sizes = [(300_000, 10_000, 64), (3_000_000, 100_000, 64), (3_000_000, 1_000, 64)]
    sizes.append((3_000_000, 1_000_000, 16))
    if args.cpu:
        sizes = [(3_000, 100, 8), (3_000, 1_000, 4)]
    for num_items, m, features in sizes:
        case(num_items, m, features, device, rounds=5 if args.cpu else 20)
    accuracy(device, 10_000 if args.cpu else 1_000_000)


if __name__ == "__main__":
    main()
