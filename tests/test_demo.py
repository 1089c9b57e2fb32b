"""The seed demo (``python -m raggedarray``): its three ways agree and its options work."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from raggedarray import __main__ as cli
from raggedarray import _demo


def test_seed_rows_agree_with_the_loop():
    batch = _demo.images(np.array([3, 1, 5, 2]))  # the naive loop gives NaN for empty ones
    rows = _demo.run_seed(batch, repeats=1)
    assert [r["method"] for r in rows] == ["loop", "dense", "map"] * 3
    for row in rows:
        assert row["diff"] < 1e-4, row
        assert row["ms"] > 0 and row["speedup"] > 0
    assert {r["speedup"] for r in rows if r["method"] == "loop"} == {1.0}


def test_models_have_the_seed_sizes():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(_demo.conv()) == count(_demo.small_cnn()) == 104
    assert 400_000 < count(_demo.large_cnn()) < 440_000
    psi, phi = _demo.deepset_parts()
    assert psi(torch.zeros(2, 1, 16, 16)).shape == (2, 16)
    assert phi(torch.zeros(2, 16)).shape == (2, 1)


def test_the_command_prints_the_three_tasks(capsys):
    assert cli.main(["--locations", "12", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for task in ("Conv2d(1,4,5) features", "DeepSet forward, no grad", "DeepSet forward+backward"):
        assert task in out
    assert out.count("\nmap ") == 3


def test_grid_and_plot(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the plot extra; installed with the test extra
    monkeypatch.setattr(_demo, "GRID_M", (2, 3))
    monkeypatch.setattr(_demo, "GRID_N", (1, 2))
    path = tmp_path / "grid.png"
    assert cli.main(["--grid", "--repeats", "1", "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "map faster than the loop in" in out and "of 8 cells" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_needs_the_grid():
    with pytest.raises(SystemExit):
        cli.main(["--plot", "x.png"])


def test_peak_memory_sees_a_large_allocation():
    peak = _demo.peak_memory_mib(lambda: np.ones(16 << 20))  # 128 MiB of float64
    if peak is None:
        pytest.skip("this system has no /proc/self/clear_refs")
    assert peak > 100


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--locations", "0"], "--locations: must be at least 1; got 0"),
        (["--locations", "-5"], "--locations: must be at least 1; got -5"),
        (["--locations", "many"], "--locations: expected a whole number; got 'many'"),
        (["--repeats", "0"], "--repeats: must be at least 1; got 0"),
        (["--repeats", "-1"], "--repeats: must be at least 1; got -1"),
        (["--device", "gpu0"], "--device: expected cpu, cuda or cuda:N; got 'gpu0'"),
        (["--device", "meta"], "--device: expected cpu, cuda or cuda:N; got 'meta'"),
        (["--locations", "9" * 20], "--locations: must be at most 10,000; got 9999"),
        (["--grid", "--locations", "5"], "--locations sizes the default comparison"),
        (["--grid", "--locations", "1000"], "--locations sizes the default comparison"),
        (["--plot", "x.png"], "--plot draws the sweep: add --grid"),
    ],
)
def test_bad_arguments_are_usage_errors_not_tracebacks(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2  # argparse's usage error
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_plot_without_matplotlib_fails_before_any_work(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setattr(_demo, "run_grid", _must_not_run)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--grid", "--plot", "grid.png"])
    assert exit_.value.code == 2
    assert "pip install 'raggedarray[plot]'" in capsys.readouterr().err


def test_plot_into_a_missing_folder_fails_before_any_work(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(_demo, "run_grid", _must_not_run)
    with pytest.raises(SystemExit):
        cli.main(["--grid", "--plot", str(tmp_path / "nowhere" / "grid.png")])
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("grid.xyz", "must end in a format matplotlib writes"),
        ("grid", "must end in a format matplotlib writes"),
        ("", "expected a file name such as speedups.png; got ''"),
        (".", "expected a file name such as speedups.png; got '.'"),
    ],
)
def test_a_plot_file_matplotlib_cannot_write_fails_before_any_work(
    monkeypatch, capsys, name, message
):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(_demo, "run_grid", _must_not_run)
    with pytest.raises(SystemExit):
        cli.main(["--grid", "--plot", name])
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_plot_file_that_cannot_be_written_fails_before_any_work(monkeypatch, capsys):
    """The folder existed but took no files: the figure failed after the whole sweep."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(_demo, "run_grid", _must_not_run)
    with pytest.raises(SystemExit):
        cli.main(["--grid", "--plot", "/proc/speedups.png"])
    assert "--plot: cannot write '/proc/speedups.png'" in capsys.readouterr().err


def test_the_write_check_leaves_files_as_they_were(tmp_path):
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"figure")
    assert _demo.write_problem(kept) is None and kept.read_bytes() == b"figure"
    new = tmp_path / "new.png"
    assert _demo.write_problem(new) is None and not new.exists()
    assert "Is a directory" in _demo.write_problem(tmp_path)


def _must_not_run(*args, **kwargs):
    raise AssertionError("the sweep started before the options were checked")


def test_run_seed_ticks_as_often_as_it_says():
    ticks = []
    _demo.run_seed(_demo.images(np.array([2, 0, 3])), repeats=2, tick=lambda: ticks.append(1))
    assert len(ticks) == _demo.seed_steps(2)


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_progress_goes_to_stderr_with_or_without_tqdm(tqdm_installed, monkeypatch, capsys):
    if tqdm_installed:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert cli.main(["--locations", "5", "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    assert "timing loop, dense and map" in err and "timing" not in out
    if not tqdm_installed:  # plain lines: the start, then every step up to the end
        steps = _demo.seed_steps(1)
        assert "timing loop, dense and map: 0/" in err and f"{steps}/{steps}" in err


def test_grid_rows_and_progress_count_every_cell(monkeypatch, capsys):
    monkeypatch.setattr(_demo, "GRID_M", (2,))
    monkeypatch.setattr(_demo, "GRID_N", (1, 3))
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert cli.main(["--grid", "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    assert _demo.grid_cells() == 4 and "of 4 cells" in out
    assert "timing the sweep: 4/4" in err
