"""benchmarks/gpu_check.py runs end to end: a CPU dry run writes every section of its report.

The check itself needs a GPU; here CUDA is hidden from the subprocess
(``CUDA_VISIBLE_DEVICES=""``) so the same cases run, and take seconds, on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = [
    "# raggedarray GPU check (CPU dry run, tiny sizes)",
    "## Environment",
    "## Synchronisation",
    "## CUDA tests",
    "## map: loop vs one dense call vs map",
    "## Segment reductions against copy bandwidth",
    "## Collate and host-to-device transfer",
    "## Training step",
    "## Time",
]


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_cuda_says_so_and_exits_zero(tmp_path):
    out = tmp_path / "report.md"
    done = run_check("--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1
    assert not out.exists()


def test_a_report_that_cannot_be_written_is_refused_before_any_part(tmp_path):
    """The report was written after every part had run: a folder given as --out (or a
    file in the way of its folder) lost minutes of device time to a traceback."""
    (tmp_path / "afile").write_text("")
    for out, message in (
        (tmp_path, "Is a directory"),
        (tmp_path / "afile" / "report.md", "cannot make the folder"),
    ):
        done = run_check("--allow-cpu", "--quick", "--out", str(out))
        assert done.returncode == 2 and "--out: " in done.stderr and message in done.stderr
        assert "done (" not in done.stderr  # no part ran


def test_cpu_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "sub" / "report.md"
    done = run_check("--allow-cpu", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert headings == SECTIONS
    assert "**error**" not in report  # every part ran to its end
    assert report in done.stdout  # and the report was printed
    # The test subset ran through the CUDA-only plugin: its cases skip here, the rest are
    # deselected.
    tests = report.split("## CUDA tests")[1].split("\n## ")[0]
    assert "skipped" in tests and "deselected" in tests
    for row in (
        "| ra.nn.DeepSet |",
        "| loop |",
        "sum fwd+bwd",
        "| x.to_padded() |",
        "| Conv2d(1,4,5)",
    ):
        assert row in report, row


def test_quick_run_lists_existing_files_with_the_new_cuda_paths():
    # Read from the script's source: importing it would import the benchmarks' helpers.
    listed = SCRIPT.read_text().split("QUICK_TEST_FILES = [")[1].split("]")[0]
    quick = {name.strip().strip('"') for name in listed.split(",") if name.strip()}
    for name in quick:
        assert (ROOT / "tests" / name).is_file(), name
    # The refusals and segment operations hold CUDA cases of paths added since the last GPU
    # run (the float64 scan on a GPU, writes refused before they reach the device).
    assert {"test_refusals.py", "test_segment_ops.py"} <= quick
