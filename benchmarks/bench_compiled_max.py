"""A compiled max pool's forward+backward: the eager gradient rule against torch's derivative.

Run: python benchmarks/bench_compiled_max.py [--threads N]

Inside ``torch.compile`` a segment max is ``scatter_reduce``. Differentiated by torch, it
counts the zeros its output starts from as ties and gives NaN to every item of a feature
holding a NaN; ``raggedarray._traced.GraphExtremum`` states the eager rule instead (what
the package runs). This times both, compiled with the default backend, over the same ReLU
features (m = 1 000 locations of 20-40 items, F = 64, float32), interleaved in one process.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import add_threads, fmt, median_times, parse_with_threads

import raggedarray as ra
from raggedarray import _kernels


def _torch_derivative(values, part, op):
    """The kernel before ``GraphExtremum``: the bare ``scatter_reduce`` in a graph."""
    if torch.compiler.is_compiling():
        return _kernels.raw_extremum(values, part, op)
    return _eager(values, part, op)


_eager = _kernels.extremum


def _with_derivative(compiled):
    """``compiled`` called with torch's derivative in place, as it was traced."""

    def call(*args):
        _kernels.extremum = _torch_derivative
        try:
            return compiled(*args)
        finally:
            _kernels.extremum = _eager

    return call


def _grad(fn, values, offsets):
    (grad,) = torch.autograd.grad(fn(values, offsets).sum(), values)
    return grad


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_threads(parser, default=2)
    parse_with_threads(parser, argv)
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 41, 1000)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]))
    values = torch.relu(torch.randn(int(offsets[-1]), 64))
    values[: lengths[0], 0] = 0  # one all-zero ReLU feature: where the two rules differ
    values.requires_grad_()
    weights = torch.randn(len(lengths), 64)

    def step(fn):
        def run():
            (fn(values, offsets) * weights).sum().backward()
            values.grad = None

        return run

    eager_rule = torch.compile(lambda v, o: ra.segment_max(v, o), fullgraph=True)
    derivative = _with_derivative(torch.compile(lambda v, o: ra.segment_max(v, o), fullgraph=True))
    rule_grad, derivative_grad = (
        _grad(eager_rule, values, offsets),
        _grad(derivative, values, offsets),
    )
    # The graph guards on the kernel it traced: each candidate runs with its own, and a
    # recompile (which would time the other rule) fails the run.
    if torch.equal(rule_grad, derivative_grad):
        raise SystemExit("the two candidates gave one gradient: they are not the two rules")
    print(
        "gradients differ where a location's max is a tie of zeros: "
        f"{int((rule_grad != derivative_grad).sum())} of {rule_grad.numel()} items"
    )
    with torch.compiler.set_stance("fail_on_recompile"):
        times = median_times(
            {
                "eager rule (GraphExtremum)": step(eager_rule),
                "torch's derivative": step(derivative),
            },
            repeats=41,
        )
    for name, seconds in times.items():
        print(f"{name:28s} {fmt(seconds)}")
    ratio = times["eager rule (GraphExtremum)"] / times["torch's derivative"]
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
