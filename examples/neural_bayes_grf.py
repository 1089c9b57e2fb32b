"""A neural Bayes estimator for the range of a Gaussian random field, with varying replicates.

Each parameter draw theta (the range of an exponential covariance on a 16x16 grid of the unit
square) comes with n_i independent replicates of the field, n_i varying from draw to draw.
A DeepSet-CNN maps the n_i replicates to an estimate of theta: a CNN (psi) summarises every
replicate, a mean over the replicates pools them (so the estimate is permutation-invariant
and works for any n_i), and an MLP (phi) maps the pooled summary and log n_i to log theta.
Trained on simulated (theta, replicates) pairs with absolute-error loss, it approximates the
posterior median under the uniform prior, and its error falls as n_i grows.

Every training batch is a ragged batch of images (``RaggedImageBatch``): one network call
covers all replicates of all draws, whatever their n_i.

Run: python examples/neural_bayes_grf.py [--plot docs/nbe_error.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np
import torch
from torch import nn

import raggedarray as ra

GRID = 16
RANGE = (0.05, 0.5)  # uniform prior on the range
TEST_N = (1, 2, 5, 10, 20, 30)


try:  # a progress bar with the progress extra: pip install 'raggedarray[progress]'
    from tqdm.auto import tqdm
except ImportError:  # without it, the printed lines below are the progress report

    def tqdm(iterable, **kwargs):
        """No bar: hand the items back as they are."""
        return iterable


def distances() -> torch.Tensor:
    """Pairwise distances between the 256 grid points of the unit square."""
    axis = torch.linspace(0, 1, GRID, dtype=torch.float64)
    points = torch.cartesian_prod(axis, axis)
    return torch.cdist(points, points)


def simulate(
    theta: np.ndarray, lengths: np.ndarray, seed: int, label: str | None = None
) -> ra.RaggedImageBatch:
    """``lengths[i]`` replicates of a zero-mean, unit-variance field with range ``theta[i]``.

    With a ``label``, reports progress under it.
    """
    generator = torch.Generator().manual_seed(seed)
    d = distances()
    fields = []
    starts = range(0, len(theta), 256)  # batched Cholesky factors, 256 at a time
    if label is not None:
        print(f"{label}: {len(theta)} parameter draws, {int(np.sum(lengths))} fields", flush=True)
        starts = tqdm(starts, desc=label, unit="x256 draws", leave=False)
    for start in starts:
        t = torch.as_tensor(theta[start : start + 256], dtype=torch.float64)
        cov = torch.exp(-d / t[:, None, None]) + 1e-6 * torch.eye(GRID * GRID, dtype=torch.float64)
        chol = torch.linalg.cholesky(cov)
        for k, n in enumerate(lengths[start : start + 256]):
            eps = torch.randn(GRID * GRID, int(n), dtype=torch.float64, generator=generator)
            fields.append((chol[k] @ eps).T.reshape(int(n), 1, GRID, GRID).float())
    return ra.RaggedImageBatch.from_list(fields)


class Estimator(nn.Module):
    """DeepSet-CNN: psi summarises a field, the mean pools, phi maps (pool, log n) -> log theta."""

    def __init__(self) -> None:
        super().__init__()
        psi = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        )  # fmt: skip
        phi = nn.Sequential(nn.Linear(64 + 1, 64), nn.ReLU(), nn.Linear(64, 1))
        self.deepset = ra.nn.DeepSet(psi, phi, pool="mean")

    def forward(self, fields: ra.RaggedImageBatch) -> torch.Tensor:
        """Estimates of theta, one per location."""
        log_n = torch.log(fields.lengths.to(torch.float32)).unsqueeze(1)
        return self.deepset(fields, covariates=log_n).squeeze(1).exp()


def main(argv: list[str] | None = None) -> dict[int, float]:
    """Train, then return the test RMSE of theta for each n in ``TEST_N``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--draws", type=int, default=6000, help="parameter draws to train on (default 6000)"
    )
    parser.add_argument(
        "--max-n", type=int, default=30,
        help="each draw has 1 to MAX_N replicate fields (default 30)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=15, help="passes over the draws (default 15)")
    parser.add_argument(
        "--max-items", type=int, default=1024,
        help="fields per training step, at most (default 1024); a longer draw is a step alone",
    )  # fmt: skip
    parser.add_argument(
        "--test-draws", type=int, default=300,
        help="fresh draws per number of replicates for the test error (default 300)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--plot", metavar="FILE", help="save the error-vs-n figure (FILE.png)")
    args = parser.parse_args(argv)
    counts = {"draws": 1, "max-n": 1, "epochs": 1, "max-items": 1, "test-draws": 1}
    for option, least in counts.items():  # no zero or negative sizes
        value = getattr(args, option.replace("-", "_"))
        if value < least:
            parser.error(f"--{option}: must be at least {least}; got {value}")
    if not 0 <= args.seed < 2**32 - 1000 - max(TEST_N):  # numpy seeds; the tests add 1000 + n
        parser.error(f"--seed: must be between 0 and {2**32 - 1001 - max(TEST_N)}; got {args.seed}")
    if args.plot is not None:  # checked now, not after minutes of training
        problem = plot_path_problem(args.plot)
        if problem:
            parser.error(f"--plot: {problem}")
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    theta = rng.uniform(*RANGE, size=args.draws)
    lengths = rng.integers(1, args.max_n + 1, size=args.draws)
    fields = simulate(theta, lengths, seed=args.seed, label="simulating training fields")
    targets = torch.as_tensor(theta, dtype=torch.float32)
    print(f"simulated {fields!r} in {time.perf_counter() - start:.0f} s")

    model = Estimator()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = ra.data.BudgetBatchSampler(lengths, max_items=args.max_items, seed=args.seed)
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        total = 0.0
        for batch in tqdm(sampler, desc=f"epoch {epoch + 1}", unit="step", leave=False):
            index = np.asarray(batch)
            loss = (model(fields[index]) - targets[index]).abs().mean()  # posterior median
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(index)
        print(f"epoch {epoch + 1:2d}: mean absolute error {total / args.draws:.4f}")

    model.eval()
    rmse = {}
    print(f"testing on {args.test_draws} fresh draws for each n in {TEST_N}", flush=True)
    for n in tqdm(TEST_N, desc="testing", leave=False):
        test_theta = rng.uniform(*RANGE, size=args.test_draws)
        test = simulate(test_theta, np.full(args.test_draws, n), seed=args.seed + 1000 + n)
        with torch.no_grad():
            estimate = model(test).numpy()
        rmse[n] = float(np.sqrt(np.mean((estimate - test_theta) ** 2)))
    prior = float(np.sqrt(np.mean((np.mean(RANGE) - rng.uniform(*RANGE, 100_000)) ** 2)))
    print(
        "test RMSE of the range by replicates n: "
        + ", ".join(f"n={n}: {e:.4f}" for n, e in rmse.items())
    )
    print(f"(prior mean as the estimate: {prior:.4f}); {time.perf_counter() - start:.0f} s in all")
    if args.plot:
        plot(rmse, prior, args.plot)
    return rmse


def plot_path_problem(path: str) -> str | None:
    """Why the figure could not be saved to ``path`` (None if it can): before any work."""
    if importlib.util.find_spec("matplotlib") is None:
        return "needs matplotlib: pip install 'raggedarray[plot]'"
    if not path or os.path.isdir(path):
        return f"expected a file name such as error.png; got {path!r}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if os.path.splitext(path)[1].lstrip(".").lower() not in formats:
        return (
            f"the file name must end in a format matplotlib writes (.png, .pdf, ...); got {path!r}"
        )
    existed = os.path.lexists(path)  # tried now, not after minutes of training
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        return f"cannot write {path!r}: {err.strerror or err}"
    if not existed:
        os.remove(path)
    return None


def plot(rmse: dict[int, float], prior: float, path: str) -> None:
    """Error of the estimator against the number of replicates."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.plot(list(rmse), list(rmse.values()), "o-", label="DeepSet-CNN estimator")
    ax.axhline(prior, color="grey", ls="--", label="prior mean")
    ax.set(xlabel="replicates per parameter draw n", ylabel="RMSE of the range", xscale="log")
    ax.set_title("Neural Bayes estimator of a GRF's range")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
