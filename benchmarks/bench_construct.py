"""Construction and indexing cost of RaggedArray against plain concatenation.

Run: python benchmarks/bench_construct.py

1. ``from_list`` against ``torch.cat`` / ``np.concatenate`` of the same list
   (m = 64 segments, n_i uniform in 1..100, 1x16x16 float32 images).
2. ``x[i]`` (a segment view) and ``x[a:b]`` (a ragged view) at m = 10 and m = 100 000:
   the cost must not grow with m.
3. Copies that scale with the batch: ``from_list``, ``to_padded`` and a permuting gather
   ``x[perm]`` against ``torch.cat``, ``pad_sequence`` and ``torch.cat`` of the permuted list,
   from small (3 MB) to large (90 MB) batches of 1x16x16 float32 images.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from _timing import fmt, median_times

import raggedarray as ra


def bench_from_list() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 101, size=64)
    arrays = [rng.standard_normal((n, 1, 16, 16)).astype(np.float32) for n in lengths]
    tensors = [torch.from_numpy(a) for a in arrays]
    print(f"from_list: m=64, N={lengths.sum()}, items 1x16x16 float32")
    for label, items, baseline_name, baseline in (
        ("torch", tensors, "torch.cat", lambda: torch.cat(tensors)),
        ("numpy", arrays, "np.concatenate", lambda: np.concatenate(arrays)),
    ):
        times = median_times(
            {
                baseline_name: baseline,
                "RaggedImageBatch.from_list": lambda items=items: ra.RaggedImageBatch.from_list(
                    items
                ),
            },
            repeats=101,
        )
        ratio = times["RaggedImageBatch.from_list"] / times[baseline_name]
        print(
            f"  {label:5s}  {baseline_name:15s} {fmt(times[baseline_name]):>9s}   "
            f"from_list {fmt(times['RaggedImageBatch.from_list']):>9s}   ratio {ratio:.2f}x"
        )


def bench_indexing() -> None:
    print("indexing: cost per call (median), items 1x16x16 float32, n_i = 3")
    for backend in ("numpy", "torch"):
        rows = {}
        for m in (10, 100_000):
            values = np.zeros((3 * m, 1, 16, 16), dtype=np.float32)
            x = ra.RaggedImageBatch.from_lengths(values, np.full(m, 3))
            if backend == "torch":
                x = x.torch()
            i = m // 2
            rows[m] = median_times(
                {"x[i]": lambda x=x, i=i: x[i], "x[a:b]": lambda x=x, i=i: x[i : i + 5]},
                repeats=51,
                number=200,
            )
        for op in ("x[i]", "x[a:b]"):
            small, large = rows[10][op], rows[100_000][op]
            print(
                f"  {backend:5s}  {op:6s}  m=10: {fmt(small):>8s}   m=100000: {fmt(large):>8s}"
                f"   ratio {large / small:.2f}x"
            )


def bench_batch_copies() -> None:
    from torch.nn.utils.rnn import pad_sequence

    print("batch copies (torch, CPU): raggedarray vs the plain-torch way, ratio = plain / ragged")
    rng = np.random.default_rng(1)
    for m, low, high in ((64, 1, 100), (1000, 20, 40), (3000, 20, 40)):
        items = [torch.randn(int(n), 1, 16, 16) for n in rng.integers(low, high + 1, m)]
        x = ra.RaggedImageBatch.from_list(items)
        perm = rng.permutation(m)
        pairs = {
            ("from_list", "torch.cat"): (
                lambda items=items: ra.RaggedImageBatch.from_list(items),
                lambda items=items: torch.cat(items),
            ),
            ("to_padded", "pad_sequence"): (
                lambda x=x: x.to_padded(),
                lambda items=items: pad_sequence(items, batch_first=True),
            ),
            ("x[perm]", "cat(perm)"): (
                lambda x=x, perm=perm: x[perm],
                lambda items=items, perm=perm: torch.cat([items[i] for i in perm]),
            ),
        }
        cells = []
        for (ours, theirs), (fn_ours, fn_theirs) in pairs.items():
            times = median_times({ours: fn_ours, theirs: fn_theirs}, repeats=21)
            cells.append(
                f"{ours} {fmt(times[ours])} vs {theirs} {fmt(times[theirs])} "
                f"({times[theirs] / times[ours]:.2f}x)"
            )
        print(f"  m={m} N={x.num_items} ({x.values.nbytes / 2**20:.1f} MiB)")
        for cell in cells:
            print(f"    {cell}")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    bench_from_list()
    bench_indexing()
    bench_batch_copies()


if __name__ == "__main__":
    main()
