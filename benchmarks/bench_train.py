"""A DeepSet training step: the per-location loop, ``ra.nn.DeepSet`` and hand-written chunks.

Run: python benchmarks/bench_train.py   (--quick for a short run, --device cuda on a GPU)

One step is zero_grad, forward, an MSE loss against fixed targets, backward and (with
``--optimizer``) an SGD step. Candidates, all over the same ragged batch and the same
modules, timed side by side in one process (interleaved rounds, medians):

- ``loop``: psi on each location's images, mean, stack, phi;
- ``ra.nn.DeepSet``: psi through ``map`` on the flat buffer, segment mean, phi;
- ``hand, chunks of c``: psi by hand over the flat buffer in slices of c images (64..512),
  concatenated, pooled with ``ra.segment_mean``, phi -- the limit DeepSet is held to;
- ``torch.compile(DeepSet)``: graphs compiled, graph breaks and the graphs added by new
  batches of other sizes are reported; a compile that fails is reported, not fatal;
- ``DeepSet, bf16 autocast``: the forward under ``torch.autocast(dtype=torch.bfloat16)``.

Networks: (A) psi = Conv2d(1,8,3)-ReLU-Conv2d(8,16,3)-ReLU-Flatten-Linear(2304, 32),
phi = 32-64-1; (B) the demo's DeepSet (``raggedarray._demo.deepset_parts``). m = 300
locations, n_i uniform in 20..40, 1x16x16 float32 images. The last column is the largest
difference of psi's first weight gradient from the loop's (float32 sums in another order;
bf16 differs more).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _timing import add_threads, existing_device, parse_with_threads, positive_int
from torch import nn

import raggedarray as ra
from raggedarray import _demo

CHUNKS = (64, 128, 256, 512)


def network_a() -> tuple[nn.Module, nn.Module]:
    """psi: two 3x3 convolutions to 16 channels and a linear layer to 32; phi: 32-64-1."""
    psi = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 12 * 12, 32),
    )  # fmt: skip
    phi = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
    return psi, phi


NETWORKS: dict[str, Callable[[], tuple[nn.Module, nn.Module]]] = {
    "A: conv8-conv16-linear32": network_a,
    "B: the demo's DeepSet": _demo.deepset_parts,
}


def batch_of(m: int, *, seed: int = 0, device: Any = "cpu") -> ra.RaggedImageBatch:
    """m locations of n_i uniform in 20..40 random 1x16x16 images."""
    lengths = np.random.default_rng(seed).integers(20, 41, size=m)
    return _demo.images(lengths, seed=seed, device=device)


def first_weight(module: nn.Module) -> torch.Tensor:
    """The first parameter of a module (psi's first layer weight)."""
    return next(module.parameters())


class Steps:
    """The training-step candidates on one network and one batch; each call runs one step."""

    def __init__(
        self,
        psi: nn.Module,
        phi: nn.Module,
        batch: ra.RaggedImageBatch,
        *,
        optimizer: bool = False,
        chunks: tuple[int, ...] = CHUNKS,
    ) -> None:
        self.psi, self.phi, self.batch = psi, phi, batch
        self.model = ra.nn.DeepSet(psi, phi, pool="mean")
        self.target = torch.randn(len(batch), 1, generator=torch.Generator().manual_seed(1))
        self.target = self.target.to(batch.device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-6) if optimizer else None
        self.forwards: dict[str, Callable[[], torch.Tensor]] = {
            "loop": self.loop,
            "ra.nn.DeepSet": lambda: self.model(self.batch),
        }
        for c in chunks:
            label = "hand, one call" if c >= batch.num_items else f"hand, chunks of {c}"
            self.forwards[label] = lambda c=c: self.hand_chunks(c)

    def loop(self) -> torch.Tensor:
        return self.phi(torch.stack([self.psi(images).mean(0) for images in self.batch]))

    def hand_chunks(self, size: int) -> torch.Tensor:
        values = self.batch.values
        parts = [self.psi(values[s : s + size]) for s in range(0, values.shape[0], size)]
        return self.phi(ra.segment_mean(torch.cat(parts), self.batch.offsets))

    def add_autocast(self, dtype: torch.dtype = torch.bfloat16) -> None:
        """Add the DeepSet forward under autocast (``dtype``) on the batch's device type."""
        kind = torch.device(self.batch.device).type

        def forward() -> torch.Tensor:
            with torch.autocast(kind, dtype=dtype):
                return self.model(self.batch)

        self.forwards[f"DeepSet, {str(dtype).split('.')[-1]} autocast"] = forward

    def step(self, forward: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        """One training step around ``forward``; returns psi's first weight gradient."""

        def run() -> torch.Tensor:
            self.model.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(forward().float(), self.target)
            loss.backward()
            if self.opt is not None:
                self.opt.step()
            return first_weight(self.psi).grad

        return run

    def fns(self) -> dict[str, Callable[[], torch.Tensor]]:
        return {name: self.step(f) for name, f in self.forwards.items()}


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""


def add_compiled(steps: Steps, *, other_batches: list[ra.RaggedImageBatch]) -> str:
    """Add ``torch.compile(DeepSet)`` to ``steps`` if it compiles; returns a one-line note.

    The note gives the graphs compiled by the first call, its graph breaks, whether the
    compiled step matches eager, and the graphs added by ``other_batches`` (other m and N).
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(steps.model)
    start = time.perf_counter()
    try:
        eager = steps.step(steps.forwards["ra.nn.DeepSet"])().clone()
        got = steps.step(lambda: compiled(steps.batch))()
    except Exception as error:
        return f"torch.compile failed: {type(error).__name__}: {_first_line(error)}"
    seconds = time.perf_counter() - start
    graphs = counters["stats"]["unique_graphs"]
    breaks = sum(counters["graph_break"].values())
    diff = _demo.max_abs_diff(got, eager)
    added = []
    for other in other_batches:
        before = counters["stats"]["unique_graphs"]
        try:
            steps.model.zero_grad(set_to_none=True)
            compiled(other).square().mean().backward()
        except Exception as error:
            added.append(f"failed ({type(error).__name__}: {_first_line(error)[:80]})")
            continue
        added.append(str(counters["stats"]["unique_graphs"] - before))
    steps.forwards["torch.compile(DeepSet)"] = lambda: compiled(steps.batch)
    sizes = ", ".join(f"m={len(b)}" for b in other_batches)
    return (
        f"torch.compile(DeepSet): {graphs} graphs compiled ({seconds:.0f} s with the eager "
        f"reference step), {breaks} graph breaks, grad diff vs eager {diff:.1e}; graphs added "
        f"by new batches ({sizes}): {', '.join(added) or 'not tried'}"
    )


def run(
    network: str,
    *,
    m: int = 300,
    repeats: int = 11,
    device: Any = "cpu",
    optimizer: bool = False,
    compiled: bool = True,
    autocast: bool = True,
    chunks: tuple[int, ...] = CHUNKS,
    timer: Callable[..., dict[str, float]] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Time every candidate on one network; returns (rows, notes).

    Rows: ``name``, ``ms``, ``vs_loop`` (loop time / this time), ``vs_best_chunk`` (this
    time / the best hand chunk's) and ``grad_diff`` (from the loop's gradient).
    """
    torch.manual_seed(0)
    psi, phi = (part.to(device) for part in NETWORKS[network]())
    batch = batch_of(m, device=device)
    steps = Steps(psi, phi, batch, optimizer=optimizer, chunks=chunks)
    notes = [f"N = {batch.num_items} images, m = {m}"]
    if autocast:
        steps.add_autocast()
    opt, steps.opt = steps.opt, None  # no weight moves during warm-ups and cross-checks
    if compiled:
        others = [batch_of(k, seed=k, device=device) for k in (m // 2, m + 17)]
        notes.append(add_compiled(steps, other_batches=others))
    fns, grads = {}, {}
    for name, fn in steps.fns().items():
        try:
            grads[name] = fn().clone()
        except Exception as error:
            notes.append(f"{name} failed: {type(error).__name__}: {_first_line(error)}")
            continue
        fns[name] = fn
    steps.opt = opt
    timer = timer or (lambda f: _demo.median_times(f, repeats=repeats, device=device))
    times = timer(fns)
    best_chunk = min(t for name, t in times.items() if name.startswith("hand"))
    rows = [
        {
            "name": name,
            "ms": 1e3 * t,
            "vs_loop": times["loop"] / t,
            "vs_best_chunk": t / best_chunk,
            "grad_diff": _demo.max_abs_diff(grads[name], grads["loop"]),
        }
        for name, t in times.items()
    ]
    return rows, notes


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| step | ms | loop time / this | this / best hand chunk | grad diff vs loop |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['ms']:.1f} | {r['vs_loop']:.2f}x | {r['vs_best_chunk']:.3f} "
            f"| {r['grad_diff']:.1e} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> str:
    """DeepSet against the best hand chunk (target <= 1.05) and the loop (target >= 1.8x)."""
    by = {r["name"]: r for r in rows}
    best = min((r for r in rows if r["name"].startswith("hand")), key=lambda r: r["ms"])
    deepset = by["ra.nn.DeepSet"]
    return (
        f"DeepSet / best hand chunk ({best['name']}) = {deepset['vs_best_chunk']:.3f} "
        f"(target <= 1.05); DeepSet vs loop = {deepset['vs_loop']:.2f}x (target >= 1.8x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reps",
        type=positive_int,
        default=None,
        metavar="K",
        help="interleaved rounds (11; quick 3)",
    )
    parser.add_argument("--quick", action="store_true", help="few rounds, no torch.compile")
    parser.add_argument(
        "--device",
        type=existing_device,
        default="cpu",
        help="cpu (default), cuda or cuda:N",
    )
    parser.add_argument(
        "--m", type=positive_int, default=300, metavar="M", help="locations per batch (300)"
    )
    parser.add_argument("--optimizer", action="store_true", help="include an SGD step")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    add_threads(parser)
    args = parse_with_threads(parser, argv)
    reps = args.reps if args.reps is not None else (3 if args.quick else 11)
    warnings.filterwarnings("ignore")
    machine = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, {machine}, {torch.get_num_threads()} threads, "
        f"device {args.device}, {reps} rounds, optimizer step: {args.optimizer}"
    )
    for network in NETWORKS:
        rows, notes = run(
            network,
            m=args.m,
            repeats=reps,
            device=args.device,
            optimizer=args.optimizer,
            compiled=not (args.quick or args.no_compile),
        )
        print(f"\n### {network}\n")
        for note in notes:
            print(f"- {note}")
        print(f"\n{table(rows)}\n\n{summary(rows)}", flush=True)


if __name__ == "__main__":
    main()
