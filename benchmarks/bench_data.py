"""Collation cost against ``torch.cat`` of the same list.

Run: python benchmarks/bench_data.py

A batch of m bags of n_i single-channel 16x16 float32 images (tensors, as a Dataset
returns them): ``ra.collate`` of the bare bags and of ``(bag, label)`` tuples against
``torch.cat`` of the bags alone (the floor: one allocation and one copy), and ``collate``
with its samples checked one by one (its path before the batch-wide check). Medians of
interleaved rounds in one process.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from _timing import fmt, median_times
from torch.utils.data import default_collate

import raggedarray as ra
from raggedarray import _checks


def one_by_one(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with collate's batch-wide sample check answering "doubt": each sample is
    checked alone, as before that check existed."""

    def run() -> object:
        accepted = _checks.arrays_accepted
        _checks.arrays_accepted = lambda items: False
        try:
            return fn()
        finally:
            _checks.arrays_accepted = accepted

    return run


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for m, low, high in ((64, 1, 100), (32, 20, 40), (256, 20, 40)):
        rng = np.random.default_rng(0)
        lengths = rng.integers(low, high + 1, size=m)
        bags = [
            torch.from_numpy(rng.standard_normal((n, 1, 16, 16), dtype=np.float32)) for n in lengths
        ]
        samples = [(bag, i % 2) for i, bag in enumerate(bags)]
        times = median_times(
            {
                "torch.cat": lambda b=bags: torch.cat(b),
                "ra.collate(bags)": lambda b=bags: ra.collate(b),
                "ra.collate(bags), samples checked one by one": one_by_one(
                    lambda b=bags: ra.collate(b)
                ),
                "torch.cat + default_collate(labels)": lambda b=bags, s=samples: (
                    torch.cat(b),
                    default_collate([label for _, label in s]),
                ),
                "ra.collate((bag, label))": lambda s=samples: ra.collate(s, ragged=0),
            },
            repeats=51,
        )
        base = times["torch.cat"]
        mib = lengths.sum() * 16 * 16 * 4 / 2**20
        print(f"\nm={m}, n_i in {low}..{high}, {mib:.1f} MiB")
        for name, t in times.items():
            print(f"  {name:<38}{fmt(t):>10}{t / base:>8.2f}x")


if __name__ == "__main__":
    main()
