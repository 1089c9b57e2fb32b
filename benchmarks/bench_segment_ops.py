"""argmax/argmin/any/all/cumsum and sort/topk/median against their floors and alternatives.

Run: python benchmarks/bench_segment_ops.py [--quick] [--linear] [--threads N]

At N = 300 000, m = 10 000, F = 64 (float32). Targets: ``argmax``, ``argmin``, ``any``,
``all`` and ``cumsum`` at most 3x the floor ``values.sum(0)``; ``sort``, ``topk`` and
``median`` at most 3x one ``torch.sort(values, dim=0)`` of the flat buffer. Every ratio is a
median over interleaved rounds in one process (``_timing.median_times``), each group with
its own floor. Alternatives: the per-segment loop, the ``scatter`` engine (``scatter_reduce``
and ``index_add_``, what torch_scatter-style code does), and jagged ``torch.nested`` where
it has the operation. With numba installed, ``cumsum`` and ``argmax``/``argmin`` run its
compiled one-pass kernels; their torch paths are timed beside them. ``values + 1`` shows
what writing any fresh ``(N, F)`` result costs here (cumsum writes one; the floor does not).
"""

from __future__ import annotations

import argparse
import platform
import warnings

import numpy as np
import torch
from _timing import add_threads, fmt, median_times, parse_with_threads, switched_off
from bench_reduce import _batch  # the same random-cut batches as the reductions

import raggedarray as ra
from raggedarray import _jit, _kernels


def report(title: str, times: dict[str, float]) -> None:
    floor = next(iter(times.values()))
    print(f"  {title}")
    for name, t in times.items():
        print(f"    {name:<40}{fmt(t):>10}{t / floor:>8.2f}x")


def _torch_paths(fn):
    """``fn`` with the compiled kernels of ``_jit`` (numba) turned off: the torch paths."""
    return switched_off(_jit, fn)


def _scatter(fn):
    """``fn`` on the ``scatter`` engine (the torch paths: numba's kernels use no engine)."""

    def run():
        with _kernels.force_engine("scatter"):
            return fn()

    return _torch_paths(run)


def _nested(x: ra.RaggedArray, name: str, call) -> dict[str, object]:
    """``{label: fn}`` for a torch.nested operation, or nothing when torch lacks it."""
    nested = torch.nested.nested_tensor_from_jagged(
        x.values, x.offsets, min_seqlen=x.min_length, max_seqlen=x.max_length
    )
    try:
        call(nested)
    except Exception as error:  # report what torch.nested does not support
        print(f"    (torch.nested {name}: {type(error).__name__}: {str(error)[:70]})")
        return {}
    return {f"torch.nested {name}": lambda: call(nested)}


def linear(x: ra.RaggedArray, repeats: int) -> None:
    v = x.values
    positive = x > 0  # bool values, as masks usually come
    report(
        "raggedarray",
        median_times(
            {
                "floor values.sum(0)": lambda: v.sum(0),
                "ra argmax": x.argmax,
                "ra argmin": x.argmin,
                "ra any": x.any,
                "ra all": x.all,
                "ra any of bool values": positive.any,
                "ra all of bool values": positive.all,
                "ra cumsum": x.cumsum,
                "values + 1 (torch: a fresh (N, F) output)": lambda: v + 1,
                "ra argmax, torch paths (no numba)": _torch_paths(x.argmax),
                "ra argmin, torch paths (no numba)": _torch_paths(x.argmin),
                "ra cumsum, torch paths (no numba)": _torch_paths(x.cumsum),
            },
            repeats=repeats,
        ),
    )
    segments = [s for s in x if len(s)]
    fns = {
        "floor values.sum(0)": lambda: v.sum(0),
        "ra argmax, scatter engine": _scatter(x.argmax),
        "ra any, scatter engine": _scatter(x.any),
        "loop torch.argmax": lambda: [s.argmax(0) for s in segments],
        "loop torch.any": lambda: [s.any(0) for s in segments],
        "loop torch.cumsum": lambda: torch.cat([s.cumsum(0) for s in segments]),
        "global torch.cumsum (no restart)": lambda: v.cumsum(0),
    }
    fns.update(_nested(x, "argmax(dim=1)", lambda n: n.argmax(dim=1)))
    fns.update(_nested(x, "cumsum(dim=1)", lambda n: n.cumsum(dim=1)))
    report("alternatives", median_times(fns, repeats=max(3, repeats // 2)))


def pairs(x: ra.RaggedArray, repeats: int) -> None:
    """Each operation timed beside the floor alone: no other op's temporaries in between."""
    v = x.values
    print("  each beside the floor alone (ratio to the floor of its own pair)")
    for name, fn in (
        ("ra argmax", x.argmax),
        ("ra cumsum", x.cumsum),
        ("values + 1", lambda: v + 1),
    ):
        times = median_times({"floor": lambda: v.sum(0), name: fn}, repeats=repeats)
        print(f"    {name:<40}{fmt(times[name]):>10}{times[name] / times['floor']:>8.2f}x")


def ordering(x: ra.RaggedArray, repeats: int) -> None:
    v = x.values
    report(
        "raggedarray",
        median_times(
            {
                "floor torch.sort(values, dim=0)": lambda: torch.sort(v, dim=0),
                "ra sort": x.sort,
                "ra topk(5)": lambda: x.topk(5),
                "ra median": x.median,
            },
            repeats=repeats,
        ),
    )
    segments = [s for s in x if len(s)]
    fns = {
        "floor torch.sort(values, dim=0)": lambda: torch.sort(v, dim=0),
        "loop torch.sort(stable)": lambda: [torch.sort(s, dim=0, stable=True) for s in segments],
        "loop torch.median": lambda: [s.median(0) for s in segments],
        "loop torch.topk(5)": lambda: [s.topk(min(5, len(s)), 0) for s in segments],
    }
    fns.update(_nested(x, "sort(dim=1)", lambda n: torch.sort(n, dim=1)))
    report("alternatives", median_times(fns, repeats=repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="N = 30 000, m = 1 000 instead of 300 000, 10 000"
    )
    parser.add_argument(
        "--linear", action="store_true", help="skip sort/topk/median (they take minutes)"
    )
    add_threads(parser)  # e.g. one thread pinned to a core beside other work
    args = parse_with_threads(parser, argv)
    warnings.filterwarnings("ignore")
    num_items, m, features = (30_000, 1_000, 64) if args.quick else (300_000, 10_000, 64)
    machine = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {machine}, "
        f"{torch.get_num_threads()} threads, compiled kernels (numba): {_jit.available()}"
    )
    x = _batch(num_items, m, features)
    print(f"\nN={num_items}, m={m}, F={features} float32 (ratio to the first row)")
    linear(x, repeats=7)
    pairs(x, repeats=15)
    if not args.linear:  # the sorts take minutes
        ordering(x, repeats=3)


if __name__ == "__main__":
    main()
