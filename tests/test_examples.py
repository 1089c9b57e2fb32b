"""The examples run end to end (on a small scale: the full runs are reported in the docs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true")
@pytest.mark.parametrize("workers", [0, 2])
def test_mil_digits_trains_through_the_whole_pipeline(workers, capsys):
    accuracy, found = load("mil_digits").main(
        ["--train-bags", "80", "--test-bags", "30", "--epochs", "2", "--workers", str(workers)]
    )
    out = capsys.readouterr().out
    assert "mean fill" in out and "held-out bag accuracy" in out
    assert 0.0 <= accuracy <= 1.0 and 0.0 <= found <= 1.0


def test_neural_bayes_estimator_trains_and_reports_error_by_n(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the plot extra; installed with the test extra
    path = tmp_path / "nbe.png"
    rmse = load("neural_bayes_grf").main(
        ["--draws", "60", "--epochs", "1", "--test-draws", "5", "--plot", str(path)]
    )
    assert set(rmse) == {1, 2, 5, 10, 20, 30}
    assert all(np.isfinite(e) and e >= 0 for e in rmse.values())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test RMSE of the range" in capsys.readouterr().out
