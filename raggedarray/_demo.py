"""The seed comparison behind ``python -m raggedarray``: loop vs one dense call vs ``map``.

Models, data, timing and memory measurement live here so that the command line, the
benchmarks and the docs all measure the same things the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

import raggedarray as ra

# ------------------------------------------------------------------------------ models


def conv() -> nn.Module:
    """The seed's per-image network: ``Conv2d(1, 4, 5)`` (104 parameters)."""
    return nn.Conv2d(1, 4, 5)


def small_cnn() -> nn.Module:
    """The grid's ~100-parameter CNN: a 5x5 convolution to 4 channels and a ReLU."""
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU())


def large_cnn() -> nn.Module:
    """The grid's ~420 000-parameter CNN: three conv blocks and two dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128),
    )  # fmt: skip


def deepset_parts() -> tuple[nn.Module, nn.Module]:
    """A small DeepSet: psi maps a 16x16 image to 16 features, phi pooled features to 1."""
    psi = nn.Sequential(
        nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(144, 16), nn.ReLU()
    )  # fmt: skip
    phi = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    return psi, phi


def images(lengths: Any, *, seed: int = 0, device: Any = "cpu") -> ra.RaggedImageBatch:
    """A ragged batch of random 16x16 single-channel images with the given ``n_i``."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((int(np.sum(lengths)), 1, 16, 16), dtype=np.float32)
    return ra.RaggedImageBatch.from_lengths(torch.from_numpy(values), lengths).to(device)


# ---------------------------------------------------------------------------- measuring


def synchronize(device: Any) -> None:
    """Wait for queued GPU work (nothing to do on a CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_times(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 7,
    device: Any = "cpu",
    tick: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds after a warm-up.

    Interleaving (a, b, c, a, b, c, ...) keeps a noisy shared machine from favouring
    whichever candidate ran during a quiet spell. ``tick`` is called after the warm-up and
    after every round (``repeats + 1`` times), to report progress.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    tick()
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
        tick()
    return {name: statistics.median(s) for name, s in samples.items()}


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Hand freed heap memory back to the kernel, so that reusing it shows in the RSS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def _peak_cpu() -> Iterator[list[float | None]]:
    result: list[float | None] = [None]
    gc.collect()
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as clear:  # reset the high-water mark
            clear.write("5")
    except OSError:
        yield result
        return
    before = _rss_kib("VmRSS")
    yield result
    peak = _rss_kib("VmHWM")
    if before is not None and peak is not None:
        result[0] = max(peak - before, 0) / 1024


def peak_memory_mib(fn: Callable[[], object], device: Any = "cpu") -> float | None:
    """Memory in MiB that one call of ``fn`` adds at its peak (None where unmeasurable).

    On a CPU it is the rise of the process's resident-set high-water mark; on a GPU, the
    rise of torch's peak allocated memory.
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with _peak_cpu() as result:
        fn()
    return result[0]


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two tensors of the same shape."""
    return float((a.detach().float() - b.detach().float()).abs().max()) if a.numel() else 0.0


# ----------------------------------------------------------------------------- the seed


def seed_tasks(batch: ra.RaggedImageBatch) -> dict[str, dict[str, Callable[[], Any]]]:
    """The three ways of running each seed task on ``batch``: loop, dense and map.

    Each function returns a tensor comparable across the three (for forward+backward:
    the gradient of the first layer's weight).
    """
    torch.manual_seed(0)
    layer = conv().to(batch.device)
    psi, phi = (m.to(batch.device) for m in deepset_parts())
    model = ra.nn.DeepSet(psi, phi, pool="mean")

    def loop_deepset() -> Any:
        return phi(torch.stack([psi(images).mean(0) for images in batch]))

    def dense_deepset() -> Any:
        return phi(ra.segment_mean(psi(batch.values), batch.offsets))

    def backward(forward: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            psi.zero_grad(set_to_none=True)
            forward().sum().backward()
            return psi[0].weight.grad

        return run

    features = {
        "loop": lambda: torch.cat([layer(images) for images in batch]),
        "dense": lambda: layer(batch.values),
        "map": lambda: batch.map(layer).values,
    }
    deepset = {
        "loop": loop_deepset,
        "dense": dense_deepset,
        "map": lambda: model(batch),
    }
    return {
        "Conv2d(1,4,5) features, no grad": {k: _no_grad(f) for k, f in features.items()},
        "DeepSet forward, no grad": {k: _no_grad(f) for k, f in deepset.items()},
        "DeepSet forward+backward": {k: backward(f) for k, f in deepset.items()},
    }


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.no_grad():
            return fn()

    return run


SEED_TASKS = 3  # the number of tasks ``seed_tasks`` returns


def seed_steps(repeats: int) -> int:
    """How many times ``run_seed`` calls its ``tick`` for ``repeats`` timed rounds.

    Per task: a cross-check, a memory measurement, a warm-up and ``repeats`` rounds.
    """
    return SEED_TASKS * (repeats + 3)


def run_seed(
    batch: ra.RaggedImageBatch, *, repeats: int = 7, tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """Time, measure and cross-check every task of ``seed_tasks``; one row per method.

    ``tick`` is called ``seed_steps(repeats)`` times as the work proceeds.
    """
    rows = []
    for task, fns in seed_tasks(batch).items():
        results = {name: fn() for name, fn in fns.items()}
        tick()
        peaks = {name: peak_memory_mib(fn, batch.device) for name, fn in fns.items()}
        tick()
        times = median_times(fns, repeats=repeats, device=batch.device, tick=tick)
        for name in fns:
            rows.append(
                {
                    "task": task,
                    "method": name,
                    "ms": 1e3 * times[name],
                    "speedup": times["loop"] / times[name],
                    "peak_mib": peaks[name],
                    "diff": max_abs_diff(results[name], results["loop"]),
                }
            )
    return rows


# ------------------------------------------------------------------------------ the grid

GRID_M = (16, 32, 64, 128)
GRID_N = (1, 10, 25, 50, 75, 100)
GRID_MODELS = (("~100-param CNN", small_cnn), ("~420k-param CNN", large_cnn))


def grid_cells() -> int:
    """How many rows ``run_grid`` reports."""
    return len(GRID_MODELS) * len(GRID_M) * len(GRID_N)


def run_grid(
    *, device: Any = "cpu", repeats: int = 5, report: Callable[[dict[str, Any]], None] = print
) -> list[dict[str, Any]]:
    """The seed's sweep: loop vs dense vs map for two CNNs over m x n_i (no grad)."""
    rows = []
    for model_name, make in GRID_MODELS:
        torch.manual_seed(0)
        model = make().to(device)
        for m in GRID_M:
            for n in GRID_N:
                batch = images(np.full(m, n), seed=m * n, device=device)
                fns = {
                    "loop": lambda b=batch, f=model: [f(images) for images in b],
                    "dense": lambda b=batch, f=model: f(b.values),
                    "map": lambda b=batch, f=model: b.map(f),
                }
                with torch.no_grad():
                    times = median_times(fns, repeats=repeats, device=device)
                row = {
                    "model": model_name,
                    "m": m,
                    "n": n,
                    **{k: 1e3 * t for k, t in times.items()},
                }
                row["speedup"] = times["loop"] / times["map"]
                rows.append(row)
                report(row)
    return rows


def plot_path_problem(path: str) -> str | None:
    """Why a figure could not be written to ``path``, or None: checked before any work.

    The path must name a file in an existing folder, with an extension matplotlib writes
    (``.png``, ``.pdf``, ``.svg``, ...), and matplotlib must be installed.
    """
    if importlib.util.find_spec("matplotlib") is None:
        return "needs matplotlib: pip install 'raggedarray[plot]'"
    folder = os.path.dirname(os.path.abspath(path)) if path else ""
    if not path or os.path.isdir(path):
        return f"expected a file name such as speedups.png; got {path!r}"
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix not in formats:
        names = ", ".join(f".{f}" for f in sorted(formats))
        return f"the file name must end in a format matplotlib writes ({names}); got {path!r}"
    return write_problem(path)


def write_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be written, or None: tried before any work.

    The file is opened for appending (an existing one is left as it was; one made for the
    try is removed), so a folder without write permission, a read-only file system or a
    file used as a folder is found before minutes of measuring, not after.
    """
    existed = os.path.lexists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        return f"cannot write {os.fspath(path)!r}: {err.strerror or err}"
    if not existed:
        os.remove(path)
    return None


def plot_grid(rows: list[dict[str, Any]], path: str) -> None:
    """Speed-up of ``map`` over the loop against n_i, one line per m, one panel per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'raggedarray[plot]'") from None
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for m in GRID_M:
            cells = [r for r in rows if r["model"] == model and r["m"] == m]
            ax.plot([r["n"] for r in cells], [r["speedup"] for r in cells], "o-", label=f"m={m}")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="images per location n_i", ylabel="loop time / map time", title=model)
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
