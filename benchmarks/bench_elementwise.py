"""Fixed cost of elementwise math on ragged arrays: the op on ``values`` plus dispatch.

Run: PYTHONPATH=. python benchmarks/bench_elementwise.py   (from the repository root)

For each case the same operation runs on the ragged array (``x + 1``, ``torch.relu(x)``,
``np.exp(x)``, ``x + y`` with equal offsets) and on its flat ``values``, interleaved in one
process; the difference of the medians is the fixed overhead of the ragged path (operand
checks, dispatch, wrapping the result). A small N shows it bare, a large N shows it
relative to real work.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from _timing import fmt, median_times

import raggedarray as ra

CASES = [(1_000, 100, 64), (300_000, 10_000, 64)]


def _batch(num_items: int, m: int, features: int) -> ra.RaggedArray:
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(0, num_items + 1, size=m - 1))
    lengths = np.diff(np.concatenate([[0], cuts, [num_items]]))
    values = rng.standard_normal((num_items, features), dtype=np.float32)
    return ra.RaggedArray.from_lengths(torch.from_numpy(values), lengths)


def pairs(x: ra.RaggedArray) -> dict[str, tuple]:
    t, v = x, x.values
    n, nv = x.numpy(), x.values.numpy()
    y, yv = x.clone(), x.values.clone()
    row = torch.ones(x.item_shape)
    return {
        "torch x + 1": (lambda: t + 1, lambda: v + 1),
        "torch x * row": (lambda: t * row, lambda: v * row),
        "torch x + y (ragged)": (lambda: t + y, lambda: v + yv),
        "torch.relu(x)": (lambda: torch.relu(t), lambda: torch.relu(v)),
        "F.gelu(x)": (
            lambda: torch.nn.functional.gelu(t),
            lambda: torch.nn.functional.gelu(v),
        ),
        "numpy x + 1": (lambda: n + 1, lambda: nv + 1),
        "np.exp(x)": (lambda: np.exp(n), lambda: np.exp(nv)),
    }


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options
    torch.set_num_threads(torch.get_num_threads())
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, {torch.get_num_threads()} threads"
    )
    print("| N | m | F | op | ragged | values | fixed overhead |")
    print("|---|---|---|---|---|---|---|")
    for num_items, m, features in CASES:
        x = _batch(num_items, m, features)
        repeats = 401 if num_items <= 10_000 else 41
        number = 50 if num_items <= 10_000 else 1
        for name, (ragged_fn, flat_fn) in pairs(x).items():
            times = median_times(
                {"ragged": ragged_fn, "values": flat_fn}, repeats=repeats, number=number
            )
            extra = times["ragged"] - times["values"]
            print(
                f"| {num_items:,} | {m:,} | {features} | `{name}` | {fmt(times['ragged'])} | "
                f"{fmt(times['values'])} | {extra * 1e6:+.1f} us |"
            )


if __name__ == "__main__":
    main()
