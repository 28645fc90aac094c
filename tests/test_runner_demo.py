"""The demo driver at a tiny budget: runs, the table with per-episode returns, a report of its own smoke runs
(labelled as smoke), the 'not a result' statement, the next commands, and reuse of finished runs."""

from __future__ import annotations

import json

from wmbench import demo
from wmbench.protocols import load_protocol


def test_demo_runs_reports_smoke_runs_and_reuses_them(tmp_path, capsys):
    # --threads 0: leave torch's thread count alone in the test process (the demo itself runs with 1).
    argv = ["--cases", "control@1:cartpole_swingup", "--methods", "random", "pets:preset=tiny", "--steps", "600",
            "--threads", "0", "--root", str(tmp_path), "--no-progress", "--reps", "50"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    # Found by their run.json, wherever the runner puts smoke runs (e.g. <method>/seed_0 or <method>/smoke/seed_0).
    runs = {m: next((tmp_path / "control@1" / "cartpole_swingup" / m).rglob("run.json")).parent
            for m in ("random", "pets")}
    for method, run_dir in runs.items():
        info = json.loads((run_dir / "run.json").read_text())
        assert info["smoke"] is True and info["budget_agent_steps"] == 600 and info["status"] == "finished"
        returns = demo.episode_returns(run_dir)
        assert len(returns) == 3  # 600 steps = 3 episodes of 200
        row = next(line for line in out.splitlines() if line.startswith(method))
        assert row.split()[-3:] == [f"{x:.0f}" for x in returns]  # the returns column is the run's scores.csv
    # The report is built from the demo's own runs: both entries, labelled as smoke, with the warning why.
    page = (tmp_path / "report_control_1.html").read_text()
    md = (tmp_path / "report_control_1.md").read_text()
    assert "random (smoke, 600 agent steps)" in md and "pets (smoke, 600 agent steps)" in md
    assert "not results" in md and "not results" in page
    assert "P(pets (smoke, 600 agent steps) > random (smoke, 600 agent steps))" in out
    assert "Not a result: these are smoke runs" in out
    assert "next commands to try" in out and "docs/submitting.md" in out
    # Second call reuses the finished runs (not re-run): their files are untouched.
    before = {m: (d / "scores.csv").stat().st_mtime_ns for m, d in runs.items()}
    assert demo.main(argv) == 0
    assert "reused (finished earlier)" in capsys.readouterr().out
    assert {m: (d / "scores.csv").stat().st_mtime_ns for m, d in runs.items()} == before


def test_default_demo_is_a_short_learning_run_below_the_budget():
    # The defaults are what the docstring and README promise: PETS's CPU preset beside random on control@1,
    # for fewer agent steps than the protocol's budget (so the runs are smoke runs, never results).
    assert demo.DEFAULT_CASES == ("control@1:cartpole_swingup",)
    assert demo.parse_method(demo.DEFAULT_METHODS[1]) == ("pets", ["preset=cpu"])
    assert demo.DEFAULT_STEPS < load_protocol("control@1").budget.agent_steps


def test_demo_reports_bad_case_and_fails(tmp_path, capsys):
    argv = ["--cases", "fake@1:no_such_task", "--methods", "random", "--root", str(tmp_path), "--no-progress"]
    assert demo.main(argv) == 1
    out = capsys.readouterr().out
    assert "error" in out and "unknown task 'no_such_task'" in out
