"""Segment reductions against the floor (``values.sum(0)``) and the usual alternatives.

Run: python benchmarks/bench_reduce.py [--accuracy | --speed]   (neither: both parts)

Accuracy (``--accuracy``): relative error of one float32 segment sum against float64 truth,
at 10^4, 10^5 and 10^6 items per segment, for raggedarray (both engines), a per-segment
``torch.sum``, ``index_add_`` and ``torch.segment_reduce``, over three kinds of data.

Every row is the median time of one call divided by the floor's, measured in the same
process with the candidates interleaved. raggedarray and the alternatives are timed in
separate groups, each with its own floor: interleaving with the slow alternatives evicts
the caches and penalises whichever call comes next. Forward: raggedarray's sum / mean / max against
``Tensor.index_add_``, ``Tensor.scatter_reduce_``, ``torch.segment_reduce``, jagged
``torch.nested`` reductions over the ragged dim, awkward's ``ak.sum(axis=1)`` and
``np.add.reduceat``. Backward: forward+backward against the floor's
forward+backward (``values.sum(0).backward(g)``), and max's also with the compiled share of
its gradient switched off (where numba is installed).
"""

from __future__ import annotations

import argparse
import platform
import warnings

import numpy as np
import torch
from _timing import backward_step, fmt, median_times, switched_off

import raggedarray as ra
from raggedarray import _jit

CASES = [(30_000, 1_000, 32), (30_000, 1_000, 64), (30_000, 1_000, 256), (300_000, 10_000, 64)]


def _batch(num_items: int, m: int, features: int, seed: int = 0) -> ra.RaggedArray:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, num_items + 1, size=m - 1))
    lengths = np.diff(np.concatenate([[0], cuts, [num_items]]))
    values = torch.from_numpy(rng.standard_normal((num_items, features), dtype=np.float32))
    return ra.RaggedArray.from_lengths(values, lengths)


def forward(x: ra.RaggedArray) -> dict[str, float]:
    v = x.values
    return median_times(
        {
            "floor values.sum(0)": lambda: v.sum(0),
            "ra sum": x.sum,
            "ra sum of a rewrap": lambda: x._rewrap(v).sum(),
            "ra mean": x.mean,
            "ra max": x.max,
        },
        repeats=41,
    )


def alternatives(x: ra.RaggedArray) -> dict[str, float]:
    v, offsets, m = x.values, x.offsets, len(x)
    ids = x.segment_ids
    index = ids.unsqueeze(1).expand(v.shape)
    fns = {
        "floor values.sum(0)": lambda: v.sum(0),
        "index_add_ sum": lambda: torch.zeros(m, v.shape[1]).index_add_(0, ids, v),
        "scatter_reduce_ amax": lambda: torch.zeros(m, v.shape[1]).scatter_reduce_(
            0, index, v, "amax", include_self=False
        ),
        "torch.segment_reduce sum": lambda: torch.segment_reduce(v, "sum", offsets=offsets),
        "torch.segment_reduce max": lambda: torch.segment_reduce(v, "max", offsets=offsets),
    }
    # torch.nested, jagged layout, with the min/max lengths given so nothing syncs or pads to N.
    # (Its mean gives NaN for empty segments and amax -3.4e38; backward through mean over the
    # ragged dim fails in torch 2.13 with "SymIntArrayRef expected to contain only concrete
    # integers", so it appears in the forward table only.)
    nested = torch.nested.nested_tensor_from_jagged(
        v, offsets, min_seqlen=x.min_length, max_seqlen=x.max_length
    )
    fns["torch.nested sum(dim=1)"] = lambda: nested.sum(dim=1)
    fns["torch.nested mean(dim=1)"] = lambda: nested.mean(dim=1)
    fns["torch.nested amax(dim=1)"] = lambda: nested.amax(dim=1)
    numpy_values, starts = v.numpy(), x.host_offsets[:-1]
    nonempty = starts < v.shape[0]
    fns["np.add.reduceat"] = lambda: np.add.reduceat(numpy_values, starts[nonempty], axis=0)
    try:
        import awkward as ak

        array = ak.unflatten(numpy_values, x.host_lengths)
        fns["awkward ak.sum(axis=1)"] = lambda: ak.sum(array, axis=1)
    except ImportError:
        pass
    return median_times(fns, repeats=21)


def backward(x: ra.RaggedArray) -> tuple[dict[str, float], dict[str, float]]:
    v = x.values.clone().requires_grad_()
    y = ra.RaggedArray(v, x.offsets)
    m, ids = len(x), x.segment_ids
    grad_m = torch.randn(m, v.shape[1])
    grad_1 = torch.randn(v.shape[1])

    def run(fn, grad):
        return backward_step(v, fn, grad)

    fns = {
        "floor fwd+bwd": run(lambda: v.sum(0), grad_1),
        "ra sum fwd+bwd": run(y.sum, grad_m),
        "ra mean fwd+bwd": run(y.mean, grad_m),
        "ra max fwd+bwd": run(y.max, grad_m),
    }
    if _jit.available():  # max's backward by torch's masks, side by side with numba's
        fns["ra max fwd+bwd, numba off"] = switched_off(_jit, run(y.max, grad_m))
    times = median_times(fns, repeats=31)
    fns = {
        "floor fwd+bwd": run(lambda: v.sum(0), grad_1),
        "index_add_ sum fwd+bwd": run(
            lambda: torch.zeros(m, v.shape[1]).index_add(0, ids, v), grad_m
        ),
        "torch.segment_reduce max fwd+bwd": run(
            lambda: torch.segment_reduce(v, "max", offsets=x.offsets), grad_m
        ),
    }
    return times, median_times(fns, repeats=15)


def report(title: str, times: dict[str, float]) -> None:
    floor_name = next(iter(times))
    floor = times[floor_name]
    print(f"  {title}")
    for name, t in times.items():
        print(f"    {name:<36}{fmt(t):>10}{t / floor:>8.2f}x")


ACCURACY_LENGTHS = (10_000, 100_000, 1_000_000)


def accuracy_data(kind: str, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "0.1 everywhere":
        return torch.full((n, 4), 0.1)
    if kind == "N(1000, 1)":
        return torch.randn(n, 4, generator=g) + 1000
    return torch.rand(n, 4, generator=g)


def accuracy() -> None:
    """Relative error against float64 truth of one long float32 segment's sum."""
    from raggedarray import _kernels

    print("\nAccuracy: max relative error of a float32 segment sum against float64 truth")
    print("(one segment of n items, 4 features; a short segment follows it)")
    for kind in ("0.1 everywhere", "N(1000, 1)", "U(0, 1)"):
        for n in ACCURACY_LENGTHS:
            v = accuracy_data(kind, n + 3)
            offsets = torch.tensor([0, n, n + 3])
            truth = v[:n].double().sum(0)
            m = 2
            ids = torch.repeat_interleave(torch.arange(m), offsets.diff())

            def err(got: torch.Tensor, truth: torch.Tensor = truth) -> str:
                return f"{((got.double() - truth).abs() / truth.abs()).max().item():.1e}"

            with _kernels.force_engine("csr"):
                csr = ra.segment_sum(v, offsets)[0]
            with _kernels.force_engine("scatter"):
                scatter = ra.segment_sum(v, offsets)[0]
            row = {
                "ra (csr)": err(csr),
                "ra (scatter)": err(scatter),
                "torch.sum": err(v[:n].sum(0)),
                "index_add_": err(torch.zeros(m, 4).index_add_(0, ids, v)[0]),
                "segment_reduce": err(torch.segment_reduce(v, "sum", offsets=offsets)[0]),
            }
            if n == ACCURACY_LENGTHS[0] and kind == "0.1 everywhere":
                print(f"  {'data':<16}{'n':>9}" + "".join(f"{k:>16}" for k in row))
            print(f"  {kind:<16}{n:>9}" + "".join(f"{e:>16}" for e in row.values()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--accuracy", action="store_true", help="only the accuracy table")
    only.add_argument("--speed", action="store_true", help="only the timings")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    if not args.speed:
        accuracy()
    if args.accuracy:
        return
    machine = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {machine}, "
        f"{torch.get_num_threads()} threads"
    )
    for num_items, m, features in CASES:
        x = _batch(num_items, m, features)
        print(f"\nN={num_items}, m={m}, F={features} float32 (ratio to the first row)")
        report("forward", forward(x))
        report("alternatives, forward", alternatives(x))
        ours, others = backward(x)
        report("forward+backward", ours)
        report("alternatives, forward+backward", others)


if __name__ == "__main__":
    main()
