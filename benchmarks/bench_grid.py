"""The seed grid against the best of the loop, one dense call and hand-written chunks.

Run: PYTHONPATH=. python benchmarks/bench_grid.py [--threads 1] [--models small,large]
     [--m 16,32] [--n 1,10] [--reps 11] [--chunks 64,128,256,512,1024]

``python -m raggedarray --grid`` times ``map`` against the loop and one dense call; the
issue's target also counts hand chunks: ``map`` (no grad) within 5 % of the best of the
per-location loop, one dense call over the flat buffer, and that buffer pushed through the
network by hand in slices of c images (concatenated), in every cell of the grid (the two CNNs
of ``raggedarray._demo`` x m x n_i). Candidates run in rounds in one process, in a fresh
random order each round (so none always follows the slowest), after a warm-up that also
lets ``map`` probe. The table gives medians and three ratios of ``map`` to the best of the
others: of their medians; the median over rounds of the ratio within one round ("same
rounds", which cancels slow spells of a shared machine that last seconds and can hit the
two medians unevenly); and of their fastest single rounds. The "control" column is the
resolution of a cell: the dense call is timed twice, as two candidates, and the column gives
the larger ratio of their medians (1.000 where the two agree). It takes no part in the best;
where it passes 1.05 the cell cannot tell a 5 % difference. The last column counts the page
faults of one call of ``map`` and of the best (medians of three calls after the timing): a
call that faults in its temporaries afresh each time is meeting glibc's thresholds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable

import numpy as np
import torch
from _timing import (
    add_threads,
    names_of,
    paired_ratio,
    parse_with_threads,
    positive_int,
    positive_ints,
    shuffled_samples,
    summary,
)

from raggedarray import _demo

MODELS = {"small": _demo.GRID_MODELS[0], "large": _demo.GRID_MODELS[1]}
TARGET = 1.05
CONTROL = "dense, again"


def cell(model: torch.nn.Module, m: int, n: int, *, chunks: list[int], repeats: int) -> dict:
    """One grid cell: times of every candidate and map's ratio to the best of the others."""
    batch = _demo.images(np.full(m, n), seed=m * n)
    values = batch.values
    total = values.shape[0]
    fns: dict[str, Callable[[], object]] = {
        "loop": lambda: [model(images) for images in batch],
        "dense": lambda: model(values),
        "map": lambda: batch.map(model),
        CONTROL: lambda: model(values),  # the dense call again: the cell's resolution
    }
    for c in chunks:
        if c < total:
            fns[f"chunks of {c}"] = lambda c=c: torch.cat(
                [model(values[s : s + c]) for s in range(0, total, c)]
            )
    # Small cells are cheap and noisy: more rounds (up to 4x) where a call is short.
    rounds = max(repeats, min(4 * repeats, int(0.5 / max(1e-4, 2e-6 * total))))
    with torch.no_grad():
        samples = shuffled_samples(fns, repeats=rounds)
    medians, fastest = summary(samples)
    others = {name: t for name, t in medians.items() if name not in ("map", CONTROL)}
    best = min((t, name) for name, t in others.items())
    with torch.no_grad():
        faults = (page_faults(fns["map"]), page_faults(fns[best[1]]))
    best_fastest = min(t for name, t in fastest.items() if name not in ("map", CONTROL))
    return {
        "m": m,
        "n": n,
        "N": total,
        "map_ms": 1e3 * medians["map"],
        "best": best[1],
        "best_ms": 1e3 * best[0],
        "dense_ms": 1e3 * medians["dense"],
        "loop_ms": 1e3 * medians["loop"],
        "ratio": medians["map"] / best[0],
        "ratio_fastest": fastest["map"] / best_fastest,
        "ratio_paired": paired_ratio(samples, "map", best[1]),
        "faults": faults,
        "control": max(medians[CONTROL], medians["dense"])
        / min(medians[CONTROL], medians["dense"]),
    }


def page_faults(fn: Callable[[], object], calls: int = 3) -> float | None:
    """Median page faults per call of ``fn`` (in calls after the timed ones; None off Unix).

    Counted apart from the timing, which the two ``getrusage`` calls would otherwise add to.
    """
    try:
        import resource
    except ImportError:
        return None
    counts = []
    for _ in range(calls):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return statistics.median(counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_threads(parser)
    parser.add_argument(
        "--models",
        type=names_of(list(MODELS)),
        default="small,large",
        metavar="NAME,...",
        help="small, large or both (default %(default)s)",
    )
    parser.add_argument(
        "--m",
        type=positive_ints,
        default=",".join(map(str, _demo.GRID_M)),
        metavar="M,M,...",
        help="locations per cell (default %(default)s)",
    )
    parser.add_argument(
        "--n",
        type=positive_ints,
        default=",".join(map(str, _demo.GRID_N)),
        metavar="N,N,...",
        help="images per location (default %(default)s)",
    )
    parser.add_argument(
        "--chunks",
        type=positive_ints,
        default="64,128,256,512,1024",
        metavar="C,C,...",
        help="hand chunk sizes (default %(default)s)",
    )
    parser.add_argument(
        "--reps",
        type=positive_int,
        default=11,
        metavar="K",
        help="rounds per cell, at least (default %(default)s)",
    )
    args = parse_with_threads(parser, argv)
    chunks = args.chunks
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}"
    )
    print(
        "\n| network | m | n_i | N | best of the others | map | map / best "
        "| same rounds | fastest rounds | control | page faults per call (map, best) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    within = within_paired = total = unresolved = 0
    for key in args.models:
        name, make = MODELS[key]
        torch.manual_seed(0)
        model = make()
        for m in args.m:
            for n in args.n:
                row = cell(model, m, n, chunks=chunks, repeats=args.reps)
                total += 1
                within += row["ratio"] <= TARGET
                within_paired += row["ratio_paired"] <= TARGET
                unresolved += row["control"] > TARGET
                print(
                    f"| {name} | {m} | {n} | {row['N']} | {row['best']}: {row['best_ms']:.3f} ms "
                    f"| {row['map_ms']:.3f} ms | {row['ratio']:.3f} | {row['ratio_paired']:.3f} "
                    f"| {row['ratio_fastest']:.3f} | {row['control']:.3f} "
                    f"| {row['faults'][0]}, {row['faults'][1]} |",
                    flush=True,
                )
    print(
        f"\nmap within {TARGET - 1:.0%} of the best in {within} of {total} cells by the ratio of "
        f"medians, in {within_paired} by the median ratio within a round; the control (the "
        f"dense call timed twice) differed from itself by more than {TARGET - 1:.0%} in "
        f"{unresolved} cells"
    )


if __name__ == "__main__":
    main()
