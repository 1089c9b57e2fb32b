"""``python -m raggedarray``: a short tour of the container on generated images.

Builds a ragged batch of 16x16 single-channel images (m locations, n_i images each), shows
both views of the one buffer, runs a small convolution once over the flat 4D view and
compares it with a per-location loop, then pads and gathers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import raggedarray as ra


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    """Run the tour; ``--help`` lists the options."""
    parser = argparse.ArgumentParser(prog="python -m raggedarray", description=__doc__)
    parser.add_argument("--locations", type=int, default=64, help="m, the number of locations")
    parser.add_argument("--min-images", type=int, default=1, help="smallest n_i")
    parser.add_argument("--max-images", type=int, default=20, help="largest n_i")
    parser.add_argument("--repeats", type=int, default=21, help="timing repeats (median)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 <= args.min_images <= args.max_images:
        parser.error("need 0 <= --min-images <= --max-images")

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    lengths = rng.integers(args.min_images, args.max_images + 1, size=args.locations)
    images = [torch.randn(int(n), 16, 16) for n in lengths]

    batch = ra.RaggedImageBatch.from_list(images)  # (n_i, H, W) items become single-channel
    print(batch)
    print(f"list view : batch[0].shape = {tuple(batch[0].shape)}, len(batch) = {len(batch)}")
    print(f"array view: batch.values.shape = {tuple(batch.values.shape)}")
    print(f"offsets   : {batch.offsets[:6].tolist()} ... (shared by every derived array)")

    conv = torch.nn.Conv2d(1, 4, 5)
    with torch.no_grad():

        def per_location():
            return [conv(batch[i]) for i in range(len(batch))]

        def flat():
            return ra.RaggedImageBatch(conv(batch.values), batch.offsets)

        loop_ms = _median_ms(per_location, args.repeats)
        flat_ms = _median_ms(flat, args.repeats)
        out = flat()
        diff = max(
            (
                float((a - b).abs().max())
                for a, b in zip(per_location(), out, strict=True)
                if len(a)
            ),
            default=0.0,
        )
    print(
        f"Conv2d(1, 4, 5) over {batch.num_items} images: per-location loop {loop_ms:.2f} ms, "
        f"one call on the flat view {flat_ms:.2f} ms ({loop_ms / flat_ms:.1f}x), "
        f"max abs difference {diff:.1e}"
    )
    print(f"output    : {out}")

    padded, mask = batch.to_padded()
    print(f"padded    : {tuple(padded.shape)}, {int(mask.sum())} real images of {mask.numel()}")
    picked = batch[[3, 0, 3]]
    print(f"gathered  : batch[[3, 0, 3]] has n_i = {picked.lengths.tolist()}")


if __name__ == "__main__":
    main()
