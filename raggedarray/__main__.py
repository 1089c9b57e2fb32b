"""``python -m raggedarray``: how much faster a ragged batch runs a network than a loop.

It generates 1 000 locations (``--locations``), each holding 20 to 40 random single-channel
16x16 images, and runs three tasks on them, each in three ways:

* loop: a Python loop over the locations, one network call per location (the usual code);
* dense: one network call over all images at once, then averaging per location;
* map: ``batch.map(network)`` and ``ra.nn.DeepSet``, which do the same in cache-sized chunks.

The tasks: a convolution's features, a small DeepSet's forward pass, and its forward and
backward pass (a training step without the optimiser). Each way is run ``--repeats`` times,
interleaved with the others, and the table gives, per task and way: the median time of one
run in milliseconds, the speed-up over the loop (2.00x: twice as fast), the extra memory one
run needs at its peak (MiB), and the largest difference from the loop's result (rounding
only, ~1e-6). Progress goes to stderr (a bar with ``pip install 'raggedarray[progress]'``).

``--grid`` instead times the loop, the dense call and ``map`` (no gradients) for two networks,
a small CNN (~100 parameters) and a large one (~420 000 parameters), over 16 to 128 locations
holding 1 to 100 images each, and prints the speed-up of ``map`` over the loop in every
combination; ``--plot FILE`` also draws it (needs matplotlib).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

import raggedarray as ra

from . import _demo
from ._progress import Progress


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


def _grid_row(row: dict) -> str:
    return (
        f"{row['model']:<16}{row['m']:>5}{row['n']:>5}{row['loop']:>10.2f}{row['dense']:>10.2f}"
        f"{row['map']:>10.2f}{row['speedup']:>9.2f}x"
    )


# Each location holds ~30 images of 1 KiB, but the comparison's peak is the dense call's
# forward+backward: 406 MiB for 1 000 locations (the demo's table), linear in them. 10 000
# locations (~300 000 images) peak near 4 GiB; 100 000 would need ~40 GiB.
MAX_LOCATIONS = 10_000


def _count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}; got {value}")
        return value

    return parse


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, torch.device]:
    parser = argparse.ArgumentParser(
        prog="python -m raggedarray",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--grid", action="store_true", help="time the sweep over networks, m and n_i instead"
    )
    parser.add_argument(
        "--device", default="cpu", help="where to run: cpu (default), cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--plot", metavar="FILE", help="with --grid: also save a figure of the speed-ups (PNG)"
    )
    parser.add_argument(
        "--locations", type=_count(1, MAX_LOCATIONS), default=None, metavar="M",
        help=f"number of locations in the batch (default 1000, at most {MAX_LOCATIONS:,})",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=_count(1), default=7, metavar="K",
        help="timed runs of each way; the median is reported (default 7)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        parser.error(f"--device: expected cpu, cuda or cuda:N; got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device: torch sees {torch.cuda.device_count()} CUDA devices; got {device}")
    if args.grid and args.locations is not None:
        parser.error("--locations sizes the default comparison; --grid sweeps its own sizes")
    if args.plot is not None:
        if not args.grid:
            parser.error("--plot draws the sweep: add --grid")
        problem = _demo.plot_path_problem(args.plot)
        if problem is not None:
            parser.error(f"--plot: {problem}")
    return args, device


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; ``--help`` lists the options."""
    args, device = _parse(argv)
    print(
        f"raggedarray {ra.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {torch.get_num_threads()} threads, device {device}"
    )
    start = time.perf_counter()
    if args.grid:
        columns = ("loop ms", "dense ms", "map ms", "map")
        print(f"{'model':<16}{'m':>5}{'n_i':>5}" + "".join(f"{c:>10}" for c in columns))
        with Progress(_demo.grid_cells(), "timing the sweep") as progress:

            def report(row: dict) -> None:
                progress.write(_grid_row(row))
                progress.step()

            rows = _demo.run_grid(device=device, repeats=args.repeats, report=report)
        slower = [r for r in rows if r["speedup"] <= 1.0]
        print(f"\nmap faster than the loop in {len(rows) - len(slower)} of {len(rows)} cells")
        if args.plot:
            _demo.plot_grid(rows, args.plot)
            print(f"figure written to {args.plot}")
    else:
        lengths = np.random.default_rng(0).integers(20, 41, size=args.locations or 1000)
        batch = _demo.images(lengths, device=device)
        print(f"{batch!r}", flush=True)
        with Progress(_demo.seed_steps(args.repeats), "timing loop, dense and map") as progress:
            rows = _demo.run_seed(batch, repeats=args.repeats, tick=progress.step)
        _print_seed(rows)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
