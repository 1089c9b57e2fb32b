"""The GPU check: CUDA tests and GPU benchmarks in one command, one markdown report.

Run: python benchmarks/gpu_check.py [--out FILE] [--quick] [--allow-cpu]

On a CUDA machine, in under 8 minutes (``--quick``: about 2):

1. the environment (device, torch, CUDA, cuDNN);
2. that ``len``, ``x[i]``, ``x[a:b]``, ``lengths``, ``max_length`` and ``to_padded`` never
   synchronise the device (``torch.cuda.set_sync_debug_mode("error")``);
3. the test cases about CUDA (``python -m pytest -p _cuda_only tests``), summary line kept;
4. ``map`` against a per-location loop and one dense call (the demo's Conv2d(1,4,5) and the
   ~420k-parameter CNN, m = 1 000, n_i in 20..40);
5. segment sum / mean / max, forward and forward+backward, against the device's copy
   bandwidth (N = 300 000 and 3 000 000, F = 64);
6. ``ra.collate`` of numpy samples and the host-to-device copy, pinned + non-blocking
   against pageable;
7. a DeepSet training step (forward, backward, SGD step): loop, ``ra.nn.DeepSet``, hand
   chunks, bf16 autocast (networks of ``bench_train.py``).

Times are medians of interleaved rounds, each call timed with CUDA events after a
synchronize; every part stops adding rounds at its time cap. The report goes to ``--out``
(default ``$OUT/gpu_report.md`` when ``OUT`` is set, else ``gpu_report.md``) and is printed.
Without CUDA the script says so and exits 0; ``--allow-cpu`` runs every part on the CPU
with tiny sizes, to test the script itself.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # check this checkout's package, not an installed one
import bench_train  # noqa: E402  (beside this file)
from _timing import backward_step, without_triton  # noqa: E402

import raggedarray as ra  # noqa: E402
from raggedarray import _demo, _triton  # noqa: E402

# Seconds per part: (full, quick). The CPU dry run uses the quick caps.
CAPS = {
    "tests": (180, 50),
    "map": (60, 15),
    "reductions": (60, 15),
    "transfer": (25, 8),
    "training": (80, 25),
}
QUICK_TEST_FILES = [
    "test_reduce.py",
    "test_segment_ops.py",
    "test_map.py",
    "test_movement.py",
    "test_construct.py",
    "test_refusals.py",
]


# ----------------------------------------------------------------------------- timing


class Timer:
    """Medians of interleaved rounds; CUDA events on a GPU, ``perf_counter`` on a CPU."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.device, self.repeats = device, repeats
        self.cuda = device.type == "cuda"
        self.failed: list[str] = []  # "name: error" of candidates whose first call raised

    def once(self, fn: Callable[[], object]) -> float:
        """Seconds of one call of ``fn``, from an idle device to the end of its work."""
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        torch.cuda.synchronize(self.device)
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3

    def __call__(self, fns: dict[str, Callable[[], object]], cap: float = 1e9) -> dict[str, float]:
        """Median seconds per call of each function; rounds stop at ``cap`` s (3 at least).

        A function whose first (warm-up) call raises is dropped and listed in ``failed``.
        """
        start = time.perf_counter()
        fns = dict(fns)
        for name, fn in list(fns.items()):  # warm-up: allocator, cuDNN algorithms, imports
            try:
                self.once(fn)
            except Exception as error:
                self.failed.append(f"{name}: {type(error).__name__}: {_one_line(error)}")
                del fns[name]
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for done in range(1, self.repeats + 1):
            for name, fn in fns.items():
                samples[name].append(self.once(fn))
            if done >= 3 and time.perf_counter() - start > cap:
                break
        return {name: statistics.median(s) for name, s in samples.items()}


def _one_line(error: Exception, limit: int = 200) -> str:
    """An error message on one line (it goes into a table cell), cut to ``limit``."""
    return " ".join(str(error).split()).replace("|", "/")[:limit]


class Budget:
    """A part's time cap, shared out among what is left to run."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def share(self, parts_left: int) -> float:
        return max(self.end - time.perf_counter(), 0.0) / max(parts_left, 1)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3f}" if seconds < 1e-2 else f"{1e3 * seconds:.2f}"


# ------------------------------------------------------------------------------ parts


def environment(device: torch.device) -> str:
    rows = [
        ["device", torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"],
        ["torch", torch.__version__],
        ["CUDA (torch build)", torch.version.cuda or "none"],
        ["cuDNN", torch.backends.cudnn.version() or "none"],
        ["raggedarray", f"{ra.__version__} ({Path(ra.__file__).parent})"],
        ["numpy", np.__version__],
        ["python", platform.python_version()],
        ["host", f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"],
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rows.insert(1, ["memory", f"{props.total_memory / 2**30:.1f} GiB"])
        rows.insert(2, ["compute capability", f"{props.major}.{props.minor}"])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    if commit.returncode == 0:
        changed = subprocess.run(  # tracked files changed since the commit: say so
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "raggedarray"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        note = " with uncommitted changes to raggedarray/" if changed else ""
        rows.append(["git commit", commit.stdout.strip() + note])
    return md_table(["what", "value"], rows)


def sync_check(device: torch.device) -> str:
    """Run each cheap operation on a fresh batch under the sync debug mode "error"."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 1, 4, 4), dtype=np.float32) for n in (3, 0, 5, 2, 4)]
    sources: dict[str, Callable[[], ra.RaggedImageBatch]] = {
        "from_list(device=)": lambda: ra.RaggedImageBatch.from_list(arrays, device=device),
        "CPU batch .to(device)": lambda: ra.RaggedImageBatch.from_list(arrays).to(device),
        "collate + pin + non_blocking": lambda: _to_device(ra.collate(arrays), device),
    }
    ops: dict[str, Callable[[ra.RaggedImageBatch], object]] = {
        "len(x)": len,
        "x[i]": lambda x: x[3],
        "x[-1]": lambda x: x[-1],
        "x[a:b]": lambda x: x[1:4],
        "x.lengths": lambda x: x.lengths,
        "x.max_length": lambda x: x.max_length,
        "x.to_padded()": lambda x: x.to_padded(),
    }
    cuda = device.type == "cuda"
    rows = []
    for source_name, make in sources.items():
        for op_name, op in ops.items():
            x = make()
            if cuda:
                torch.cuda.synchronize(device)
            rows.append([op_name, source_name, _guarded(lambda op=op, x=x: op(x), cuda)])
    control = sources["from_list(device=)"]()
    result = _guarded(lambda: control.values.sum().item(), cuda)
    verdict = "raised, as it must" if result.startswith("fail") else f"did not raise ({result})"
    if not cuda:
        verdict = "not run (no CUDA: the sync debug mode needs it)"
    text = md_table(["operation", "batch made by", "result"], rows)
    passed = sum(r[2].startswith("pass") for r in rows)
    return (
        f"{passed} of {len(rows)} operations ran without a device synchronisation.\n\n{text}\n\n"
        f"Control (`x.values.sum().item()`, a sync): {verdict}."
    )


def _guarded(fn: Callable[[], object], cuda: bool) -> str:
    if not cuda:
        fn()
        return "pass (CPU: ran, not guarded)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    except RuntimeError as error:  # how the sync debug mode reports a synchronisation
        return f"fail: {_one_line(error)}"
    except Exception as error:
        return f"error (not a sync): {type(error).__name__}: {_one_line(error)}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return "pass"


def _to_device(x: ra.RaggedArray, device: torch.device) -> ra.RaggedArray:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def cuda_tests(device: torch.device, *, quick: bool, cap: float) -> str:
    """The test cases about CUDA, in a subprocess; the summary line and failures."""
    if device.type == "cuda":
        paths = [f"tests/{f}" for f in QUICK_TEST_FILES] if quick else ["tests"]
    else:  # dry run: one file, whose CUDA cases all skip here
        paths = ["tests/test_movement.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_cuda_only"]
    command += paths
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    shown = "python -m pytest -q -p no:cacheprovider -p _cuda_only " + " ".join(paths)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=cap
        )
        output, status = done.stdout + done.stderr, f"exit code {done.returncode}"
    except subprocess.TimeoutExpired as expired:
        output = _text(expired.stdout) + _text(expired.stderr)
        status = f"stopped at the time cap ({cap:.0f} s)"
    seconds = time.perf_counter() - start
    lines = [line for line in output.splitlines() if line.strip()]
    summary = next(
        (ln for ln in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|error)", ln)),
        None,
    )
    summary = summary or f"no summary line; progress so far: {_progress(lines)}"
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:40]
    text = (
        f"`{shown}` (PYTHONPATH=benchmarks; cases whose id or skip reason names CUDA)\n\n"
        f"**{summary.strip('= ')}** — {status}, {seconds:.0f} s"
    )
    if failures:
        text += "\n\n```\n" + "\n".join(failures) + "\n```"
    elif "passed" not in summary and "skipped" not in summary:
        text += "\n\n```\n" + "\n".join(lines[-25:]) + "\n```"
    return text


def _progress(lines: list[str]) -> str:
    """Counts from pytest's ``-q`` progress lines (``..s.F [ 42%]``) of an unfinished run."""
    marks = "".join(
        m.group(1) for ln in lines if (m := re.fullmatch(r"([.sxXFE]+)(\s+\[\s*\d+%\])?", ln))
    )
    names = {".": "passed", "s": "skipped", "F": "failed", "E": "errors", "x": "xfailed"}
    return ", ".join(f"{marks.count(k)} {v}" for k, v in names.items() if k in marks) or "none"


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def map_part(device: torch.device, timer: Timer, budget: Budget, *, tiny: bool) -> str:
    """Loop vs one dense call vs ``map``, no grad, two networks."""
    m = 8 if tiny else 1000
    batch = _demo.images(np.random.default_rng(0).integers(20, 41, size=m), device=device)
    out = [f"m = {m} locations, N = {batch.num_items} 1x16x16 float32 images, no grad.\n"]
    models = {"Conv2d(1,4,5) (the demo's)": _demo.conv, "~420k-parameter CNN": _demo.large_cnn}
    rows = []
    for left, (name, make) in zip(range(len(models), 0, -1), models.items(), strict=True):
        torch.manual_seed(0)
        net = make().to(device)
        fns = {
            "loop": lambda net=net: [net(images) for images in batch],
            "one dense call": lambda net=net: net(batch.values),
            "map": lambda net=net: batch.map(net),
        }
        with torch.no_grad():
            t = timer(fns, budget.share(left))
        rows.append(
            [name, *(ms(t[k]) if k in t else "failed" for k in fns),
             _ratio(t, "loop", "map", "{:.2f}x"), _ratio(t, "map", "one dense call", "{:.3f}")]
        )  # fmt: skip
        del net
    header = ["network", "loop ms", "dense ms", "map ms", "map vs loop", "map / dense"]
    return out[0] + "\n" + md_table(header, rows)


def _ratio(times: dict[str, float], a: str, b: str, form: str) -> str:
    return form.format(times[a] / times[b]) if a in times and b in times else "-"


def copy_seconds(values: torch.Tensor, timer: Timer, cap: float) -> float:
    """Median seconds of ``dst.copy_(values)``."""
    dst = torch.empty_like(values)
    return timer({"copy": lambda: dst.copy_(values)}, cap)["copy"]


def reductions_part(device: torch.device, timer: Timer, budget: Budget, *, tiny: bool) -> str:
    """Segment sum/mean/max against the copy bandwidth of the same buffer."""
    cases = [(3000, 100, 8)] if tiny else [(300_000, 10_000, 64), (3_000_000, 100_000, 64)]
    rows = []
    for left, case in zip(range(len(cases), 0, -1), cases, strict=True):
        rows += _reduction_rows(*case, device=device, timer=timer, cap=budget.share(left))
    header = ["case", "operation", "ms", "GB/s", "fraction of copy"]
    return (
        "Bytes counted: forward reads the values once; sum/mean forward+backward reads them and "
        "writes the gradient (2x); max forward+backward reads them twice and writes the "
        "gradient (3x). GB/s = bytes / median time; the fraction is of `copy_`'s (read + "
        "write) bandwidth on the same buffer. float32.\n\n" + md_table(header, rows)
    )


def _reduction_rows(
    n: int, m: int, f: int, *, device: torch.device, timer: Timer, cap: float
) -> list[list[str]]:
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(0, n + 1, size=m - 1))
    lengths = np.diff(np.concatenate([[0], cuts, [n]]))
    values = torch.randn(n, f, device=device)
    x = ra.RaggedArray.from_lengths(values, lengths)
    nbytes = values.numel() * values.element_size()
    copy_bw = 2 * nbytes / copy_seconds(values, timer, cap / 8)  # read + write
    fwd = timer(
        {
            "floor values.sum(0)": lambda: values.sum(0),
            "sum": x.sum,
            "mean": x.mean,
            "max": x.max,
        },
        cap * 3 / 8,
    )
    leaf = values.clone().requires_grad_()
    y = ra.RaggedArray(leaf, x.offsets)
    grad_m, grad_1 = torch.randn(m, f, device=device), torch.randn(f, device=device)

    def step(fn: Callable[[], torch.Tensor], grad: torch.Tensor) -> Callable[[], None]:
        return backward_step(leaf, fn, grad)

    steps = {
        "floor values.sum(0)": step(lambda: leaf.sum(0), grad_1),
        "sum": step(y.sum, grad_m),
        "mean": step(y.mean, grad_m),
        "max": step(y.max, grad_m),
    }
    if _triton.available():  # the backward by torch's operations alone, side by side
        for name in ("sum", "mean", "max"):
            steps[f"{name} (without Triton)"] = without_triton(steps[name])
    bwd = timer(steps, cap / 2)
    label = f"N={n:,}, m={m:,}, F={f} ({nbytes / 2**20:.0f} MiB)"
    rows = [[label, "copy_ (read + write)", ms(2 * nbytes / copy_bw), f"{copy_bw / 1e9:.0f}", "1"]]
    for kind, times, factor in (("forward", fwd, 1), ("fwd+bwd", bwd, 2)):
        for name, t in times.items():
            moved = (3 if name.startswith("max") and kind == "fwd+bwd" else factor) * nbytes
            rate = moved / t
            rows.append(
                [label, f"{name} {kind}", ms(t), f"{rate / 1e9:.0f}", f"{rate / copy_bw:.2f}"]
            )
    return rows


def transfer_part(device: torch.device, timer: Timer, budget: Budget, *, tiny: bool) -> str:
    """``ra.collate`` of numpy samples, then pinned non-blocking vs pageable copies."""
    cuda = device.type == "cuda"
    sizes = [4] if tiny else [256, 1000]
    rows = []
    for left, m in zip(range(len(sizes), 0, -1), sizes, strict=True):
        rng = np.random.default_rng(m)
        samples = [
            rng.standard_normal((n, 1, 16, 16), dtype=np.float32)
            for n in rng.integers(20, 41, size=m)
        ]
        host = ra.collate(samples)
        fns: dict[str, Callable[[], object]] = {
            "ra.collate (CPU only)": lambda s=samples: ra.collate(s),
            "collate -> .to(device)": lambda s=samples: ra.collate(s).to(device),
            "pageable batch .to(device)": lambda h=host: h.to(device),
        }
        if cuda:
            pinned = host.pin_memory()
            fns["collate -> pin_memory -> .to(non_blocking)"] = lambda s=samples: (
                ra.collate(s).pin_memory().to(device, non_blocking=True)
            )
            fns["pinned batch .to(non_blocking)"] = lambda p=pinned: p.to(device, non_blocking=True)
        t = timer(fns, budget.share(left))
        nbytes = host.values.nbytes + 8 * (len(host) + 1)
        label = f"m={m}, N={host.num_items} ({nbytes / 2**20:.1f} MiB)"
        for name, s in t.items():
            rate = "" if name.startswith("ra.collate") else f"{nbytes / s / 1e9:.1f}"
            rows.append([label, name, ms(s), rate])
    note = "" if cuda else "\n\n(no CUDA: pinned copies not run, `.to(device)` is a CPU no-op)"
    header = ["batch", "step", "ms", "GB/s moved"]
    return (
        "Samples are numpy `(n_i, 1, 16, 16)` float32 arrays, n_i in 20..40.\n\n"
        + md_table(header, rows)
        + note
    )


def training_part(device: torch.device, timer: Timer, budget: Budget, *, tiny: bool) -> str:
    """A DeepSet training step (with an SGD step) on bench_train's two networks."""
    m = 4 if tiny else 300
    chunks = (64, 128) if tiny else (128, 512, 2048, 1 << 30)
    out = []
    networks = list(bench_train.NETWORKS)
    for left, network in zip(range(len(networks), 0, -1), networks, strict=True):
        share = budget.share(left)
        rows, notes = bench_train.run(
            network,
            m=m,
            device=device,
            optimizer=True,
            compiled=False,
            chunks=chunks,
            timer=lambda fns, share=share: timer(fns, share),
        )
        out.append(
            f"**{network}** ({'; '.join(notes)})\n\n{bench_train.table(rows)}\n\n"
            f"{bench_train.summary(rows)}"
        )
    return (
        "zero_grad, forward, MSE loss, backward, SGD step; m = "
        f"{m}, n_i in 20..40, 1x16x16 images.\n\n" + "\n\n".join(out)
    )


# ------------------------------------------------------------------------------- main


def default_out() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_report.md" if out else Path("gpu_report.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="report file (gpu_report.md)")
    parser.add_argument("--quick", action="store_true", help="a ~2-minute version")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="without CUDA, dry-run every part on the CPU"
    )
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}); nothing to check.")
        return 0
    out = args.out or default_out()
    problem = _folder_problem(out.parent) or _demo.write_problem(out)
    if problem is not None:  # found now, not after minutes of device time
        parser.error(f"--out: {problem}")
    device = torch.device("cuda" if cuda else "cpu")
    tiny = not cuda
    quick = args.quick or tiny
    if tiny:  # a dry run of the script, not a measurement: one thread is fastest when shared
        torch.set_num_threads(1)
    if cuda:
        torch.backends.cudnn.benchmark = False  # the same algorithms for every candidate
    timer = Timer(device, repeats=2 if tiny else (7 if quick else 15))
    started = time.perf_counter()
    title = "raggedarray GPU check" + (" (CPU dry run, tiny sizes)" if tiny else "")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/gpu_check.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    sections = [f"# {title}\n\n{when}; `{command.strip()}`; {'quick' if quick else 'full'} run."]
    seconds: list[list[str]] = []

    def part(heading: str, key: str | None, fn: Callable[..., str]) -> None:
        start = time.perf_counter()
        timer.failed.clear()
        try:
            if key is None:
                body = fn()
            else:
                cap = CAPS[key][1 if quick else 0]
                body = fn(cap) if key == "tests" else fn(Budget(cap))
        except Exception:
            body = "**error**\n\n```\n" + traceback.format_exc()[-3000:] + "\n```"
        if timer.failed:
            body += "\n\n**Failed** (dropped from the tables):\n\n"
            body += "\n".join(f"- `{line}`" for line in timer.failed)
        seconds.append([heading, f"{time.perf_counter() - start:.1f}"])
        sections.append(f"## {heading}\n\n{body}")
        print(f"gpu_check: {heading} done ({seconds[-1][1]} s)", file=sys.stderr, flush=True)

    part("Environment", None, lambda: environment(device))
    part("Synchronisation", None, lambda: sync_check(device))
    part("CUDA tests", "tests", lambda cap: cuda_tests(device, quick=quick, cap=cap))
    for heading, key, fn in (
        ("map: loop vs one dense call vs map", "map", map_part),
        ("Segment reductions against copy bandwidth", "reductions", reductions_part),
        ("Collate and host-to-device transfer", "transfer", transfer_part),
        ("Training step", "training", training_part),
    ):
        part(heading, key, lambda b, fn=fn: fn(device, timer, b, tiny=tiny))
    total = f"{time.perf_counter() - started:.0f}"
    sections.append("## Time\n\n" + md_table(["part", "seconds"], [*seconds, ["total", total]]))
    report = "\n\n".join(sections) + "\n"
    print(report, flush=True)  # (first: a report that cannot be written is still seen)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(f"gpu_check: report written to {out}", file=sys.stderr)
    return 0


def _folder_problem(folder: Path) -> str | None:
    """Why the report's ``folder`` cannot be made, or None (it is made now, if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot make the folder {str(folder)!r}: {err.strerror or err}"
    return None


if __name__ == "__main__":
    sys.exit(main())
