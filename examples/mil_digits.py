"""Multiple-instance learning on scikit-learn's handwritten digits, through the whole pipeline.

A bag holds 5-15 digit images (8x8); it is positive when it contains at least one 9. The
model never sees which image is the 9: it learns from bag labels only, with attention
pooling (Ilse et al., 2018) over per-image CNN features.

Pipeline: bags -> ``ra.save`` / ``ra.load(mmap=True)`` -> ``RaggedDataset`` ->
``BudgetBatchSampler`` (at most ``--max-items`` images per step) -> ``DataLoader`` with
worker processes and ``RaggedCollate`` -> ``ra.nn.DeepSet`` (psi through ``map``, then
``AttentionPool``) -> held-out bag accuracy.

Run: python examples/mil_digits.py      (needs scikit-learn: pip install 'raggedarray[examples]')
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

import raggedarray as ra

NINE = 9


try:  # a progress bar with the progress extra: pip install 'raggedarray[progress]'
    from tqdm.auto import tqdm
except ImportError:  # without it, the printed lines below are the progress report

    def tqdm(iterable, **kwargs):
        """No bar: hand the items back as they are."""
        return iterable


def make_bags(images, labels, num_bags, rng):
    """Bags of 5-15 images, half of them positive (one or two 9s), as a ragged batch.

    Returns the bags, their labels, and each image's digit (to check the attention later).
    """
    nines, others = np.flatnonzero(labels == NINE), np.flatnonzero(labels != NINE)
    bags, targets, digits = [], [], []
    for _ in range(num_bags):
        n = int(rng.integers(5, 16))
        positive = rng.random() < 0.5
        k = int(rng.integers(1, 3)) if positive else 0
        members = np.concatenate([rng.choice(nines, k), rng.choice(others, n - k)])
        rng.shuffle(members)
        bags.append(images[members])
        targets.append(float(positive))
        digits.append(labels[members])
    batch = ra.RaggedImageBatch.from_list(bags)
    return batch, np.array(targets, dtype=np.float32), np.concatenate(digits)


def make_model():
    """psi: a small CNN from an 8x8 digit to 64 features; attention pooling; phi: a logit."""
    psi = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(),
    )  # fmt: skip
    return ra.nn.DeepSet(psi, nn.Linear(64, 1), pool=ra.nn.AttentionPool(64, 32))


def main(argv=None):
    """Train and evaluate; returns (held-out bag accuracy, share of 9s found by attention)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--train-bags", type=int, default=1000, help="bags to train on (default 1000)"
    )
    parser.add_argument("--test-bags", type=int, default=400, help="held-out bags (default 400)")
    parser.add_argument("--epochs", type=int, default=12, help="passes over the bags (default 12)")
    parser.add_argument(
        "--max-items", type=int, default=256,
        help="images per training step, at most (default 256); a longer bag is a step alone",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=2,
        help="DataLoader worker processes; 0 loads in this process (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed, 0 to 2**32 - 1 (default 0)"
    )
    args = parser.parse_args(argv)
    counts = {"train-bags": 1, "test-bags": 1, "epochs": 1, "max-items": 1, "workers": 0}
    for option, least in counts.items():  # no zero or negative sizes
        value = getattr(args, option.replace("-", "_"))
        if value < least:
            parser.error(f"--{option}: must be at least {least}; got {value}")
    if not 0 <= args.seed < 2**32:  # what numpy and scikit-learn take as a seed
        parser.error(f"--seed: must be between 0 and 2**32 - 1; got {args.seed}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit(
            "this example needs scikit-learn: pip install 'raggedarray[examples]'"
        ) from None

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=0.3, stratify=digits.target, random_state=args.seed
    )
    # Bags are drawn from disjoint image pools: no test image is ever seen in training.
    train_x, train_y, _ = make_bags(
        images[train_idx], digits.target[train_idx], args.train_bags, rng
    )
    test_x, test_y, test_digits = make_bags(
        images[test_idx], digits.target[test_idx], args.test_bags, rng
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.safetensors")
        ra.save(path, train_x)
        dataset = ra.data.RaggedDataset(ra.load(path, mmap=True), targets=train_y)
        sampler = ra.data.BudgetBatchSampler(
            dataset.lengths, max_items=args.max_items, seed=args.seed
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
            pin_memory=device.type == "cuda",  # pinning needs a GPU to copy to
            collate_fn=ra.data.RaggedCollate(ragged=0),
        )
        # (a bag longer than --max-items is a step of its own: it counts as full)
        fill = np.mean([min(1.0, dataset.lengths[b].sum() / args.max_items) for b in sampler])
        print(
            f"train: {len(dataset)} bags, {train_x.num_items} images; test: {len(test_x)} bags; "
            f"{len(sampler)} steps per epoch, mean fill {fill:.3f}"
        )
        model = make_model().to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
        loss_fn = nn.BCEWithLogitsLoss()
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            model.train()
            total = 0.0
            for bags, targets in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False):
                bags = bags.to(device, non_blocking=True)
                logits = model(bags).squeeze(1)
                loss = loss_fn(logits, targets.to(device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(targets)
            model.eval()
            with torch.no_grad():  # all test bags in one call: map chunks the images
                logits = model(test_x.to(device)).squeeze(1).cpu()
            accuracy = float(((logits > 0).numpy() == (test_y > 0.5)).mean())
            mean_loss = total / len(dataset)
            print(f"epoch {epoch + 1:2d}: train loss {mean_loss:.4f}, test accuracy {accuracy:.3f}")
        del loader, dataset

    # Where does the attention look? In each positive test bag, is the image with the largest
    # weight a 9? The model was never told which images are 9s.
    with torch.no_grad():
        weights = model.pool.weights(test_x.to(device).map(model.psi)).cpu()
    top = [int(np.argmax(w)) for w in weights.numpy()]
    positive = np.flatnonzero(test_y > 0.5)
    hits = [test_digits[test_x.host_offsets[i] + top[i]] == NINE for i in positive]
    found = float(np.mean(hits)) if hits else math.nan
    where = (
        f"in {found:.0%} of positive bags the most attended image is a 9"
        if hits
        else "no positive bag among the test bags to look into"
    )
    print(
        f"held-out bag accuracy {accuracy:.3f}; {where}; {time.perf_counter() - start:.0f} s in all"
    )
    return accuracy, found


if __name__ == "__main__":
    main()
