"""The examples run end to end (on a small scale: the full runs are reported in the docs)."""

from __future__ import annotations

import importlib.util
import sys
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


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("neural_bayes_grf", ["--draws", "0"], "--draws: must be at least 1; got 0"),
        ("neural_bayes_grf", ["--max-n", "-3"], "--max-n: must be at least 1; got -3"),
        ("neural_bayes_grf", ["--epochs", "x"], "--epochs: invalid int value: 'x'"),
        ("neural_bayes_grf", ["--test-draws", "0"], "--test-draws: must be at least 1; got 0"),
        ("mil_digits", ["--train-bags", "0"], "--train-bags: must be at least 1; got 0"),
        ("mil_digits", ["--max-items", "-1"], "--max-items: must be at least 1; got -1"),
        ("mil_digits", ["--workers", "-1"], "--workers: must be at least 0; got -1"),
        ("mil_digits", ["--seed", "-1"], "--seed: must be between 0 and 2**32 - 1; got -1"),
        ("neural_bayes_grf", ["--seed", "-1"], "--seed: must be between 0 and"),
        ("neural_bayes_grf", ["--plot", "nbe.xyz"], "must end in a format matplotlib writes"),
        ("neural_bayes_grf", ["--plot", ""], "expected a file name such as error.png"),
    ],
)
def test_bad_arguments_are_usage_errors(name, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        load(name).main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_plot_without_matplotlib_fails_before_simulating(monkeypatch, capsys):
    module = load("neural_bayes_grf")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails

    def must_not_run(*args, **kwargs):
        raise AssertionError("simulation started before the options were checked")

    monkeypatch.setattr(module, "simulate", must_not_run)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--draws", "10", "--plot", "nbe.png"])
    assert exit_.value.code == 2
    assert "pip install 'raggedarray[plot]'" in capsys.readouterr().err


def test_neural_bayes_reports_progress_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    module = load("neural_bayes_grf")  # loaded without tqdm: plain lines only
    module.main(["--draws", "20", "--epochs", "1", "--test-draws", "2", "--max-n", "3"])
    out = capsys.readouterr().out
    assert "simulating training fields: 20 parameter draws" in out
    assert "epoch  1:" in out and "testing on 2 fresh draws" in out
