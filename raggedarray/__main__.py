"""``python -m raggedarray``: the seed comparison, per-location loop vs dense call vs ``map``.

m = 1 000 locations hold n_i ~ uniform(20..40) single-channel 16x16 images. Three tasks are
run three ways and timed side by side (medians of interleaved rounds):

* loop: a Python loop over locations, one network call per location (the usual code);
* dense: one network call over all N images (the flat 4D view), then segment pooling;
* map: ``RaggedImageBatch.map`` (cache-sized chunks) and ``ra.nn.DeepSet``.

The table gives median time, speed-up over the loop, the peak memory one call adds, and the
largest absolute difference from the loop's result. ``--grid`` runs the seed's sweep over
m and n_i for a ~100- and a ~420 000-parameter CNN; ``--plot FILE`` draws it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

import raggedarray as ra

from . import _demo


def _fmt_mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _print_seed(rows: list[dict]) -> None:
    header = f"{'method':<8}{'median ms':>11}{'speed-up':>10}{'peak MiB':>10}{'max |diff|':>12}"
    task = None
    for row in rows:
        if row["task"] != task:
            task = row["task"]
            print(f"\n{task}\n{header}")
        print(
            f"{row['method']:<8}{row['ms']:>11.1f}{row['speedup']:>9.2f}x"
            f"{_fmt_mib(row['peak_mib']):>10}{row['diff']:>12.2e}"
        )


def _print_grid_row(row: dict) -> None:
    print(
        f"{row['model']:<16}{row['m']:>5}{row['n']:>5}{row['loop']:>10.2f}{row['dense']:>10.2f}"
        f"{row['map']:>10.2f}{row['speedup']:>9.2f}x",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; ``--help`` lists the options."""
    parser = argparse.ArgumentParser(
        prog="python -m raggedarray",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--grid", action="store_true", help="run the seed's m x n_i sweep")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument("--plot", metavar="FILE", help="with --grid: save a figure of the sweep")
    parser.add_argument("--locations", type=int, default=1000, help="m (default 1000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.plot and not args.grid:
        parser.error("--plot draws the sweep: add --grid")

    print(
        f"raggedarray {ra.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {torch.get_num_threads()} threads, device {device}"
    )
    start = time.perf_counter()
    if args.grid:
        columns = ("loop ms", "dense ms", "map ms", "map")
        print(f"{'model':<16}{'m':>5}{'n_i':>5}" + "".join(f"{c:>10}" for c in columns))
        rows = _demo.run_grid(device=device, repeats=args.repeats, report=_print_grid_row)
        slower = [r for r in rows if r["speedup"] <= 1.0]
        print(f"\nmap faster than the loop in {len(rows) - len(slower)} of {len(rows)} cells")
        if args.plot:
            _demo.plot_grid(rows, args.plot)
            print(f"figure written to {args.plot}")
    else:
        lengths = np.random.default_rng(0).integers(20, 41, size=args.locations)
        batch = _demo.images(lengths, device=device)
        print(f"{batch!r}")
        _print_seed(_demo.run_seed(batch, repeats=args.repeats))
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
