"""`wmbench plot RUN_DIR` (wmbench.runplot): returns and metric panels from a run's files, torn lines tolerated."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from wmbench import runplot
from wmbench.cli import main
from wmbench.errors import WmbenchError


def _run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"method": "pets", "protocol": "control@1", "task": "cartpole_swingup",
                                              "seed": 0, "status": "running", "agent_steps": 600,
                                              "budget_agent_steps": 3000}))
    (run / "scores.csv").write_text("env_step,step_unit,episode,score,length,phase\n200,env_steps,1,0.5,200,train\n"
                                    "400,env_steps,2,30.0,200,train\n400,env_steps,1,25.0,200,eval\n")
    lines = [json.dumps({"step": s, "env_step": s, "model_loss": 1.0 / s, "model_mse": 0.5, "note": "x"})
             for s in (200, 400)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 600, "model_lo')  # killed mid-write
    return run


def test_plot_has_a_returns_panel_and_one_panel_per_numeric_metric(tmp_path, monkeypatch) -> None:
    run = _run_dir(tmp_path)
    assert list(runplot.read_metrics(run)["step"]) == [200, 400]  # the torn line is skipped
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    out = runplot.plot_run(run)
    assert out == run / "plot.png" and out.read_bytes()[:4] == b"\x89PNG"
    titles = [ax.get_title() for ax in figures[0].axes if ax.get_visible()]
    assert titles == ["episode return", "model_loss", "model_mse"]  # step/env_step and text fields are not panels
    returns = figures[0].axes[0]
    assert [len(line.get_xdata()) for line in returns.get_lines()] == [2, 1]  # train and eval episodes
    assert "600 of 3,000 agent steps" in figures[0]._suptitle.get_text()


def test_cli_plot_and_errors(tmp_path, capsys) -> None:
    run = _run_dir(tmp_path)
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists() and "wrote" in capsys.readouterr().out
    with pytest.raises(WmbenchError, match="no run.json"):
        runplot.plot_run(tmp_path)


def test_tensorboard_export_holds_the_runs_metrics_and_returns(tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="optional extra: pip install 'wmbench[tracking]'")
    from wmbench import tracking

    run = _run_dir(tmp_path)
    assert main(["plot", str(run), "--tensorboard"]) == 0
    scalars = tracking.read_scalars(run / "tensorboard")
    assert scalars["metrics/model_loss"] == [(200, pytest.approx(1 / 200)), (400, pytest.approx(1 / 400))]
    assert scalars["return/train"] == [(200, 0.5), (400, 30.0)] and scalars["return/eval"] == [(400, 25.0)]
    assert "metrics/note" not in scalars and "metrics/step" not in scalars
    tracking.export_run(run)  # rebuilt, not appended: the same points once
    assert tracking.read_scalars(run / "tensorboard")["return/train"] == [(200, 0.5), (400, 30.0)]


def test_live_writer_is_off_without_tensorboard_or_when_switched_off(tmp_path, monkeypatch) -> None:
    from wmbench import tracking

    monkeypatch.setenv("WMBENCH_TENSORBOARD", "0")
    assert tracking.open_writer(tmp_path) is None
    monkeypatch.setenv("WMBENCH_TENSORBOARD", "1")
    monkeypatch.setattr(tracking, "available", lambda: False)
    assert tracking.open_writer(tmp_path) is None
    with pytest.raises(WmbenchError, match=r"wmbench\[tracking\]"):
        tracking.export_run(_run_dir(tmp_path))


def test_runner_writes_tensorboard_events_live_and_shows_the_eval_return(tmp_path, capsys) -> None:
    pytest.importorskip("tensorboard", reason="optional extra: pip install 'wmbench[tracking]'")
    import pandas as pd

    from wmbench import tracking
    from wmbench.runner import run

    result = run("random", "fake@1", "vector_discrete", 0, root=tmp_path, steps=600, progress=True)
    scores = pd.read_csv(result.run_dir / "scores.csv")
    scalars = tracking.read_scalars(result.run_dir / "tensorboard")
    train = scores[scores.phase == "train"]
    assert [v for _, v in scalars["return/train"]] == pytest.approx(train.score.tolist())
    evals = scores[scores.phase == "eval"]
    assert len(evals) and len(scalars["return/eval"]) == len(evals)
    assert "last eval return" in capsys.readouterr().err
