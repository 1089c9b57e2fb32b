"""``map`` and ``ra.nn.DeepSet`` against the per-location loop, one dense call and padding.

Run: python benchmarks/bench_map.py   (add --device cuda on a GPU machine)

1. The seed batch (m = 1 000, n_i uniform in 20..40, 1x16x16 float32 images):
   Conv2d(1, 4, 5) features without grad, and a small DeepSet forward (also with
   ``torch.nested`` pooling) and forward+backward, run as a per-location loop, one dense
   call over the flat view, padded + mask, and raggedarray.
2. One image per location (n_i = 1, m = 1 000): the loop's per-call overhead at its worst.
3. Peak memory of a no-grad ``map`` as N grows, against the size of its output.

All times are medians of interleaved rounds in one process; ratios are to the loop.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import existing_device

import raggedarray as ra
from raggedarray import _demo


def _ratio_table(title: str, times: dict[str, float], base: str = "loop") -> None:
    print(f"\n{title}")
    for name, t in times.items():
        print(f"  {name:<26}{1e3 * t:>10.2f} ms   speed-up over {base} {times[base] / t:>6.2f}x")


def seed(device: torch.device) -> None:
    lengths = np.random.default_rng(0).integers(20, 41, size=1000)
    batch = _demo.images(lengths, device=device)
    torch.manual_seed(0)
    conv = _demo.conv().to(device)
    psi, phi = (m.to(device) for m in _demo.deepset_parts())
    model = ra.nn.DeepSet(psi, phi, pool="mean")

    def padded_features():
        padded, _ = batch.to_padded()
        return conv(padded.flatten(0, 1))

    def padded_deepset():
        padded, mask = batch.to_padded()
        features = psi(padded.flatten(0, 1)).unflatten(0, padded.shape[:2])
        mask = mask.unsqueeze(-1).to(features.dtype)
        return phi((features * mask).sum(1) / mask.sum(1).clamp(min=1))

    with torch.no_grad():
        times = _demo.median_times(
            {
                "loop": lambda: [conv(images) for images in batch],
                "dense (one call)": lambda: conv(batch.values),
                "padded": padded_features,
                "RaggedImageBatch.map": lambda: batch.map(conv),
            },
            device=device,
        )
    _ratio_table(f"Conv2d(1,4,5) features, no grad, N={batch.num_items}", times)

    def nested_deepset():
        # torch.nested (jagged, lengths given): psi over its flat values, mean over the
        # ragged dim. Forward only: backward through that mean fails in torch 2.13.
        features = psi(batch.values)
        nested = torch.nested.nested_tensor_from_jagged(
            features, batch.offsets, min_seqlen=batch.min_length, max_seqlen=batch.max_length
        )
        return phi(nested.mean(dim=1))

    with torch.no_grad():
        times = _demo.median_times(
            {
                "loop": lambda: phi(torch.stack([psi(images).mean(0) for images in batch])),
                "dense (one call)": lambda: phi(ra.segment_mean(psi(batch.values), batch.offsets)),
                "padded + mask": padded_deepset,
                "torch.nested (jagged)": nested_deepset,
                "ra.nn.DeepSet": lambda: model(batch),
            },
            device=device,
        )
    _ratio_table("DeepSet forward, no grad", times)

    def step(forward):
        def run():
            model.zero_grad(set_to_none=True)
            forward().sum().backward()

        return run

    times = _demo.median_times(
        {
            "loop": step(lambda: phi(torch.stack([psi(images).mean(0) for images in batch]))),
            "dense (one call)": step(
                lambda: phi(ra.segment_mean(psi(batch.values), batch.offsets))
            ),
            "padded + mask": step(padded_deepset),
            "ra.nn.DeepSet": step(lambda: model(batch)),
        },
        device=device,
    )
    _ratio_table("DeepSet forward+backward", times)


def single_images(device: torch.device) -> None:
    batch = _demo.images(np.ones(1000, dtype=np.int64), device=device)
    conv = _demo.small_cnn().to(device)
    with torch.no_grad():
        times = _demo.median_times(
            {
                "loop": lambda: [conv(images) for images in batch],
                "RaggedImageBatch.map": lambda: batch.map(conv),
            },
            device=device,
        )
    _ratio_table("n_i = 1, m = 1000, ~100-param CNN, no grad", times)


def memory(device: torch.device) -> None:
    print("\nno-grad map peak memory (Conv2d(1,4,5)), MiB")
    print(f"  {'N':>8}{'output':>10}{'map peak':>10}{'dense peak':>12}")
    conv = _demo.conv().to(device)
    for num_items in (10_000, 30_000, 100_000, 300_000):
        batch = _demo.images([num_items], device=device)
        with torch.no_grad():
            output = 4 * 12 * 12 * 4 * num_items / 2**20
            peak = _demo.peak_memory_mib(lambda b=batch: b.map(conv), device)
            dense = _demo.peak_memory_mib(lambda b=batch: conv(b.values), device)
        print(f"  {num_items:>8}{output:>10.1f}{_mib(peak):>10}{_mib(dense):>12}")
        del batch


def _mib(peak: float | None) -> str:
    """A peak in MiB, or n/a where it cannot be measured (no /proc/self/clear_refs)."""
    return "n/a" if peak is None else f"{peak:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", type=existing_device, default="cpu", help="cpu (default), cuda or cuda:N"
    )
    device = parser.parse_args(argv).device
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    seed(device)
    single_images(device)
    memory(device)


if __name__ == "__main__":
    main()
