"""The seed demo (``python -m raggedarray``): its three ways agree and its options work."""

from __future__ import annotations

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
