"""Functional reductions with the same offsets every call: remembered partitions vs none.

Run: python benchmarks/bench_functional.py [--threads N]

``ra.segment_mean(values, offsets)`` validates the offsets and builds the indices its
kernels need on every call unless it has seen the same offsets lately
(``raggedarray.reduce._recent``); a ragged array's method builds them once. This times,
interleaved in one process: the method, the functional call with the partitions it
remembers, and with none remembered (the behaviour before them), forward and
forward+backward, at m = 300 locations of 20-40 items (a DeepSet batch) and m = 3 000.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import add_threads, median_times, parse_with_threads

import raggedarray as ra
from raggedarray import reduce


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_threads(parser, default=2)
    parse_with_threads(parser, argv)
    rng = np.random.default_rng(0)
    print("| m | F | op | method | functional, remembered | functional, none | none / remembered |")
    print("|---|---|---|---|---|---|---|")
    for m, features in ((300, 32), (3000, 32)):
        lengths = rng.integers(20, 41, m)
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
        values = torch.randn(int(lengths.sum()), features, requires_grad=True)
        x = ra.RaggedArray(values, offsets)
        for op, grad in (("mean", False), ("mean", True), ("max", True)):
            times = median_times(candidates(x, op, grad), repeats=41, number=5)
            us = {k: v * 1e6 for k, v in times.items()}
            name = f"{op} fwd+bwd" if grad else f"{op} forward"
            print(
                f"| {m} | {features} | {name} | {us['method']:.0f} us | "
                f"{us['remembered']:.0f} us | {us['none']:.0f} us | "
                f"{us['none'] / us['remembered']:.2f} |"
            )
    reduce.RECENT_MAX_ITEMS = 1 << 20


def candidates(x, op, grad):
    """The method, and the functional call with and without remembered partitions."""
    fn, values, offsets = getattr(ra, f"segment_{op}"), x.values, x.offsets

    def remembered():
        reduce.RECENT_MAX_ITEMS = 1 << 20
        run(lambda: fn(values, offsets), grad)

    def none():
        reduce.RECENT_MAX_ITEMS = -1  # nothing is stored: every call builds
        reduce._recent.clear()
        run(lambda: fn(values, offsets), grad)

    def method():
        run(lambda: getattr(x, op)(), grad)

    return {"method": method, "remembered": remembered, "none": none}


def run(call, grad):
    if grad:
        call().sum().backward()
    else:
        with torch.no_grad():
            call()


if __name__ == "__main__":
    main()
