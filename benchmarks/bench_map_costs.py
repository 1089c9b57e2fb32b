"""``map``'s own costs on the ~100-parameter CNN: its fixed cost, and how it joins chunk outputs.

Run: PYTHONPATH=. python benchmarks/bench_map_costs.py [--threads N] [--rounds 61]

1. Fixed cost: ``batch.map(cnn)`` against ``cnn(batch.values)`` on batches that are one call
   (16-128 images), in µs over the dense call.
2. Joining, at 1 200, 1 600, 2 400 and 4 800 images. A batch within ``map``'s one-call
   budget (``CPU_CALL_BYTES``: 1 200 and 1 600 images of this CNN) is one call, for ``map``
   and by hand alike (the "chunks" column says 1). Past it (2 400 and 4 800) ``map`` splits
   the batch into equal chunks and, without autograd, copies each chunk's output into one
   preallocated result (peak memory: the output plus one chunk); against it, the same equal
   split by hand, joined by one ``torch.cat`` at the end (peak: twice the output).

Candidates run in rounds of random order in one process (``_timing.shuffled_times``);
the table gives medians.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from _timing import add_threads, parse_with_threads, positive_int, shuffled_times

from raggedarray import _demo
from raggedarray import map as mapping


def fixed_cost(model: torch.nn.Module, rounds: int) -> None:
    print("\n| images | dense | map | map - dense |\n|---|---|---|---|")
    for n in (16, 64, 128):
        batch = _demo.images(np.full(n, 1), seed=n)
        values = batch.values
        fns = {
            "dense": lambda v=values: model(v),
            "map": lambda b=batch: b.map(model),
        }
        med, _ = shuffled_times(fns, repeats=rounds * 8)
        d, m = 1e6 * med["dense"], 1e6 * med["map"]
        print(f"| {n} | {d:.1f} µs | {m:.1f} µs | {m - d:+.1f} µs |")


def _equal_split(values, model, parts):
    def run():
        size, longer = divmod(values.shape[0], parts)
        bounds = np.cumsum([0] + [size + (i < longer) for i in range(parts)])
        return torch.cat([model(values[a:b]) for a, b in itertools.pairwise(bounds)])

    return run


def joining(model: torch.nn.Module, rounds: int) -> None:
    print("\n| images | chunks | map (preallocated) | hand split, cat | map / hand |")
    print("|---|---|---|---|---|")
    for n in (1200, 1600, 2400, 4800):
        batch = _demo.images(np.full(16, n // 16), seed=n)
        batch.map(model)  # the probe: the plan is remembered
        plan = next(iter(mapping._chosen[model].values()))
        parts = -(-n // plan.chunk) if n > plan.whole else 1
        fns = {
            "map": lambda b=batch: b.map(model),
            "hand": _equal_split(batch.values, model, parts),
        }
        med, _ = shuffled_times(fns, repeats=rounds)
        ms = {k: f"{1e3 * t:.3f} ms" for k, t in med.items()}
        ratio = med["map"] / med["hand"]
        print(f"| {n} | {parts} | {ms['map']} | {ms['hand']} | {ratio:.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_threads(parser)
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=61,
        metavar="K",
        help="rounds per joining case; the fixed-cost cases run 8x as many (default %(default)s)",
    )
    args = parse_with_threads(parser, argv)
    torch.manual_seed(0)
    model = _demo.GRID_MODELS[0][1]()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.no_grad():
        fixed_cost(model, args.rounds)
        joining(model, args.rounds)


if __name__ == "__main__":
    main()
