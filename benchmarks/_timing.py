"""Side-by-side timing: candidates run interleaved in one process, medians compared."""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_times(fns: dict[str, Callable[[], object]], *, repeats: int = 31, number: int = 1):
    """Median seconds per call of each function, timed in interleaved rounds.

    Interleaving (a, b, a, b, ...) keeps a noisy shared machine from favouring whichever
    candidate happened to run during a quiet spell.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm up caches, allocator, lazy imports
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(s) for name, s in samples.items()}


def shuffled_samples(
    fns: dict[Any, Callable[[], object]], *, repeats: int
) -> dict[Any, list[float]]:
    """Seconds of every call of each function, in rounds of random order (round r is index r).

    A fixed order lets one candidate always follow the same other one (and inherit the
    caches and allocator state it leaves); a fresh order each round spreads that out.
    """
    samples: dict[Any, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    names = list(fns)
    for _ in range(repeats):
        random.shuffle(names)
        for name in names:
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def shuffled_times(
    fns: dict[Any, Callable[[], object]], *, repeats: int
) -> tuple[dict[Any, float], dict[Any, float]]:
    """Median and fastest seconds per call of each function, in rounds of random order."""
    return summary(shuffled_samples(fns, repeats=repeats))


def summary(samples: dict[Any, list[float]]) -> tuple[dict[Any, float], dict[Any, float]]:
    """Median and fastest of each candidate's samples."""
    medians = {name: statistics.median(s) for name, s in samples.items()}
    return medians, {name: min(s) for name, s in samples.items()}


def paired_ratio(samples: dict[Any, list[float]], a: Any, b: Any) -> float:
    """Median over rounds of ``a``'s time over ``b``'s in the same round.

    On a shared machine slow spells last seconds: within one round both candidates meet
    the same spell, so the per-round ratio cancels it where a ratio of medians may not.
    """
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def backward_step(leaf: Any, fn: Callable[[], Any], grad: Any) -> Callable[[], None]:
    """One forward+backward to time: clear ``leaf.grad``, run ``fn``, backpropagate ``grad``."""

    def step() -> None:
        leaf.grad = None
        fn().backward(grad)

    return step


def switched_off(module: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with ``module.ENABLED`` false: one of the package's compiled kernels off.

    ``raggedarray._jit`` (numba: the torch paths run instead) or ``raggedarray._triton``
    (``index_select`` broadcasts, and max/min's backward by torch's operations, instead).
    """

    def run(*args: Any) -> Any:
        saved, module.ENABLED = module.ENABLED, False
        try:
            return fn(*args)
        finally:
            module.ENABLED = saved

    return run


def without_triton(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with the package's Triton kernels off (torch's operations instead)."""
    from raggedarray import _triton

    return switched_off(_triton, fn)


def fmt(seconds: float) -> str:
    """Seconds as a short human string."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


# ----------------------------------------------------------------------------- command lines
# ``type=`` helpers for argparse: a bad value becomes a one-line usage error (exit 2) before
# any work starts, never a traceback from deep inside a timing.


def positive_int(text: str) -> int:
    """A whole number of at least 1 (counts: threads, rounds, images, locations)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def positive_ints(text: str) -> list[int]:
    """A comma-separated list of whole numbers of at least 1, such as ``16,32,64``."""
    values = []
    for item in text.split(","):
        try:
            values.append(positive_int(item.strip()))
        except argparse.ArgumentTypeError as error:
            if item == text:  # one value: its own message says it all
                raise
            raise argparse.ArgumentTypeError(
                f"expected whole numbers of at least 1, separated by commas; got {text!r} ({error})"
            ) from None
    return values


def positive_floats(text: str) -> list[float]:
    """A comma-separated list of numbers above 0, such as ``4,8,12.5``."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            what = "a number above 0" if item == text else "numbers above 0, separated by commas"
            raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}")
        values.append(value)
    return values


def names_of(choices: list[str]) -> Callable[[str], list[str]]:
    """A ``type=`` for a comma-separated list of names, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",")]
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"expected {', '.join(choices)} (or several, separated by commas); "
                f"got {', '.join(map(repr, unknown))}"
            )
        return names

    return parse


def existing_device(text: str) -> Any:
    """A ``torch.device`` that this machine has: ``cpu``, ``cuda`` or ``cuda:N``."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N; got {text!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text!r}: torch sees no CUDA device here (use --device cpu)"
            )
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: torch sees {count} CUDA device{'s' if count != 1 else ''}"
            )
    return device


def add_threads(parser: argparse.ArgumentParser, *, default: int | None = None) -> None:
    """Add ``--threads N``, torch's CPU threads (torch's own default when ``default`` is None)."""
    shown = "default %(default)s" if default is not None else "torch's default"
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        metavar="N",
        help=f"torch CPU threads ({shown})",
    )


def parse_with_threads(parser: argparse.ArgumentParser, argv: list[str] | None) -> Any:
    """``parser.parse_args(argv)``, with torch set to the ``--threads`` asked for, if any."""
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    return args
