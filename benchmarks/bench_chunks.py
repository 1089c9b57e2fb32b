"""Cost per image of one network over a flat buffer in chunks of k images: the sweep behind
``map``'s chunk budgets (``CPU_CALL_BYTES``, ``CPU_CHUNK_BYTES``, ``CPU_CHUNK_BYTES_GRAD``).

Run: PYTHONPATH=. python benchmarks/bench_chunks.py --network small [--grad] [--threads 1]
     [--images 12800] [--chunks 128,256,384,512,768,1024,1536,2048 | --budgets 4,8,16,24]
     [--reps 9]

Networks: ``small`` and ``large`` are the grid's CNNs (``raggedarray._demo``), ``A`` and ``B``
the two psi networks of ``benchmarks/bench_train.py``. Without ``--grad`` each chunk's output
is copied into one preallocated result (what ``map`` does under ``torch.no_grad()``); with
``--grad`` the outputs are concatenated and a sum is backpropagated (what a training step
does). A chunk size at or above ``--images`` is one call with no copy. Sizes run in a fresh
random order each round; the table gives the median per image and its ratio to the best, and
the largest tensor of one call of that size (for the images it holds: at most ``--images``)
as ``map``'s probe measures it, so that a budget in bytes can be read off the sweep
(``--budgets`` gives the sizes as such budgets, in MiB), and the network's multiply-adds per
byte written. Like ``map``, the script first settles glibc's heap
(``raggedarray._allocator``), so that no size is timed in another allocator state.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from _timing import (
    add_threads,
    parse_with_threads,
    positive_floats,
    positive_int,
    positive_ints,
    shuffled_times,
)
from bench_train import network_a
from torch import nn

from raggedarray import _allocator, _demo, _probe
from raggedarray import map as mapping

NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "small": _demo.small_cnn,
    "large": _demo.large_cnn,
    "A": lambda: network_a()[0],
    "B": lambda: _demo.deepset_parts()[0],
}


def costs_per_image(net: nn.Module, images: torch.Tensor) -> _probe.Costs:
    """What one image costs a call, as ``map``'s probe measures it (``_probe.Costs``)."""
    with torch.no_grad():
        _, costs = _probe.probe(net, images[: mapping.PROBE_ITEMS])
    return costs


def step(net: nn.Module, images: torch.Tensor, size: int, *, grad: bool) -> Callable[[], object]:
    """One pass of ``net`` over ``images`` in chunks of ``size`` (see the module docstring)."""
    total = images.shape[0]
    starts = range(0, total, size)
    if grad:

        def run_grad() -> object:
            net.zero_grad(set_to_none=True)
            torch.cat([net(images[s : s + size]) for s in starts]).sum().backward()
            return None

        return run_grad

    def run() -> object:
        with torch.no_grad():
            if size >= total:
                return net(images)
            first = net(images[:size])
            out = torch.empty((total, *first.shape[1:]), dtype=first.dtype)
            out[:size].copy_(first)
            for s in starts[1:]:
                out[s : s + size].copy_(net(images[s : s + size]))
            return out

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=list(NETWORKS), default="small")
    parser.add_argument("--grad", action="store_true", help="forward+backward")
    add_threads(parser)
    parser.add_argument(
        "--images", type=positive_int, default=12800, metavar="N", help="images in the buffer"
    )
    sizes_as = parser.add_mutually_exclusive_group()
    sizes_as.add_argument(
        "--chunks",
        type=positive_ints,
        default="128,256,384,512,768,1024,1536,2048",
        metavar="K,K,...",
        help="chunk sizes in images (default %(default)s)",
    )
    sizes_as.add_argument(
        "--budgets",
        type=positive_floats,
        default=None,
        metavar="MIB,MIB,...",
        help="chunk sizes as MiB of largest tensor, instead of --chunks",
    )
    parser.add_argument(
        "--reps", type=positive_int, default=9, metavar="N", help="rounds (default %(default)s)"
    )
    args = parse_with_threads(parser, argv)
    torch.manual_seed(0)
    net = NETWORKS[args.network]()
    images = _demo.images(np.full(1, args.images), seed=1).values
    _allocator.settle()
    costs = costs_per_image(net, images)
    largest = costs.largest
    if args.budgets:
        sizes = [int(b * 2**20 // largest) for b in args.budgets]
        if min(sizes) < 1:
            small = [f"{b:g}" for b, size in zip(args.budgets, sizes, strict=True) if size < 1]
            parser.error(
                f"argument --budgets: {', '.join(small)} MiB holds no image of network "
                f"{args.network} (its largest tensor is {largest / 2**20:.3g} MiB per image)"
            )
    else:
        sizes = args.chunks
    fns = {c: step(net, images, c, grad=args.grad) for c in sizes}
    medians, _ = shuffled_times(fns, repeats=args.reps)
    best = min(medians.values())
    print(
        f"network {args.network}, {'forward+backward' if args.grad else 'no grad'}, "
        f"{args.images} images, {torch.get_num_threads()} threads, largest tensor "
        f"{largest / 1e3:.1f} KB per image, {costs.intensity:.1f} multiply-adds per byte written"
    )
    print("\n| chunk | largest tensor | µs per image | / best |")
    print("|---|---|---|---|")
    for c, t in medians.items():
        held = min(c, args.images)  # a chunk of the whole buffer or more is one call of it
        print(
            f"| {c} | {held * largest / 2**20:.1f} MiB | {1e6 * t / args.images:.2f} | "
            f"{t / best:.2f} |"
        )


if __name__ == "__main__":
    main()
