"""bench_reduce.py's cases timed against the raggedarray of a given source tree.

Run: python benchmarks/bench_reduce_trees.py PATH [PATH ...]

Compares two versions of the package side by side: each PATH (a checkout, for instance a
``git worktree add --detach /tmp/old <commit>``) is imported in its own process, one after
another, and prints the median forward ratios (sum, mean, max) and forward+backward ratios
(sum, max) to the floor ``values.sum(0)`` (forward+backward: ``values.sum(0).backward``)
for the cases of ``bench_reduce.py``. Alternate the paths and run it more than once: the
machine's noise moves a ratio by 10-30 % between runs. ``T=1`` in the environment runs on one
thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _timing import backward_step, median_times


def one_tree(path: str) -> None:
    sys.path.insert(0, path)
    import torch
    from bench_reduce import CASES, _batch

    import raggedarray as ra

    assert ra.__file__.startswith(os.path.abspath(path)), ra.__file__
    torch.set_num_threads(int(os.environ.get("T", "2")))
    print(path)
    for n, m, features in CASES:
        ratios = one_case(_batch(n, m, features), torch)
        print(f"  N={n}, F={features}: {ratios}", flush=True)


def one_case(x, torch) -> str:
    """Forward and forward+backward ratios of one batch, as a line."""
    v = x.values
    t = median_times(
        {"floor": lambda: v.sum(0), "sum": x.sum, "mean": x.mean, "max": x.max}, repeats=101
    )
    grad = v.clone().requires_grad_()
    xg = x._rewrap(grad)
    one, per_segment = torch.ones(v.shape[1]), torch.ones(len(x), v.shape[1])

    def step(fn, g):
        return backward_step(grad, fn, g)

    tb = median_times(
        {
            "floor": step(lambda: grad.sum(0), one),
            "sum": step(xg.sum, per_segment),
            "max": step(xg.max, per_segment),
        },
        repeats=41,
    )
    return (
        f"fwd sum {t['sum'] / t['floor']:.2f} mean {t['mean'] / t['floor']:.2f} "
        f"max {t['max'] / t['floor']:.2f} | fwd+bwd sum {tb['sum'] / tb['floor']:.2f} "
        f"max {tb['max'] / tb['floor']:.2f} (floor {t['floor'] * 1e6:.0f} us)"
    )


def source_tree(text: str) -> str:
    """A ``type=`` for PATH: a directory holding the ``raggedarray`` package."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    if not os.path.isfile(os.path.join(text, "raggedarray", "__init__.py")):
        raise argparse.ArgumentTypeError(
            f"{text!r} holds no raggedarray/__init__.py (give a checkout's root)"
        )
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s [-h] PATH [PATH ...]"
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=source_tree,
        metavar="PATH",
        help="a source tree (checkout) to import raggedarray from; each runs in its own "
        "process, in the order given (repeat paths to alternate them)",
    )
    # Internal: the child process that times one tree.
    parser.add_argument("--one", type=source_tree, metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = os.environ.get("T", "2")
    if not threads.isdigit() or int(threads) < 1:
        parser.error(f"T in the environment must be a thread count of at least 1; got {threads!r}")
    if args.one is not None:
        if args.paths:
            parser.error("--one takes one PATH and no others")
        one_tree(args.one)
        return
    if not args.paths:
        parser.error("give at least one PATH (a checkout to time), e.g. . /tmp/old")
    for path in args.paths:
        result = subprocess.run([sys.executable, __file__, "--one", path])
        if result.returncode:
            raise SystemExit(f"timing {path} failed (exit status {result.returncode})")


if __name__ == "__main__":
    main()
