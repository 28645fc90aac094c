"""Sweeps: spec and expansion, idempotence, bounded retries, running-elsewhere, status, and the three backends.

Most tests inject `tests/test_sweep_support.py:fake_run` (the runner's contract without torch) so the sweep logic
runs in milliseconds per run; tests/test_sweep_faults.py uses the real runner for the kill -9 / resume checks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from wmbench import sweep
from wmbench.errors import WmbenchError
from wmbench.io import RunLock
from wmbench.sweep import ExecOptions, SweepError, make_spec, parse_seeds, run_sweep, sweep_status

TESTS = Path(__file__).resolve().parent
FAKE = "test_sweep_support:fake_run"
TASKS = "vector_discrete,image_discrete"


@pytest.fixture(autouse=True)
def _importable_fake(monkeypatch):
    # Workers (subprocesses, submitit jobs) import the stand-in target from tests/.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("COLUMNS", "250")


def fake_options(**kw) -> ExecOptions:
    return ExecOptions(**{"target": FAKE, "workers": 2, "retries": 1, "progress": False, "poll_s": 0.05, **kw})


def plan(root: Path, **actions: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.json").write_text(json.dumps({k.replace("__", "/"): v for k, v in actions.items()}))


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------------------------------ spec


@pytest.mark.parametrize(
    "text, expected",
    [("0-9", tuple(range(10))), ("0,3,5", (0, 3, 5)), ("0-2,7", (0, 1, 2, 7)), ("4", (4,)), ("1,1,0-1", (1, 0))],
)
def test_parse_seeds(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["", "a", "5-2", "0-x", "-1"])
def test_parse_seeds_rejects_bad_input(text):
    with pytest.raises(SweepError, match="--seeds"):
        parse_seeds(text)


def test_expansion_layout_and_spec_file(tmp_path):
    spec = make_spec("random", "fake@1", "0-2", TASKS)
    assert spec.runs() == [(t, s) for t in ("vector_discrete", "image_discrete") for s in (0, 1, 2)]
    directory = sweep.write_spec(tmp_path, spec, ["random", "fake@1"])
    data = json.loads((directory / "sweep.json").read_text())
    assert directory == tmp_path / "sweeps" / spec.id
    assert [r["run_dir"] for r in data["runs"]][:2] == [
        "fake@1/vector_discrete/random/seed_0",
        "fake@1/vector_discrete/random/seed_1",
    ]
    assert data["protocol"] == "fake@1" and data["seeds"] == [0, 1, 2]
    # The same request finds the same sweep; another seed list is another sweep.
    assert make_spec("random", "fake@1", "0,1,2", TASKS).id == spec.id
    assert make_spec("random", "fake@1", "0-3", TASKS).id != spec.id
    assert sweep.write_spec(tmp_path, make_spec("random", "fake@1", "0-2", TASKS)) == directory
    named = make_spec("random", "fake@1", "0-2", TASKS, name="mine")
    sweep.write_spec(tmp_path, named)
    with pytest.raises(SweepError, match="different seeds"):
        sweep.write_spec(tmp_path, make_spec("random", "fake@1", "0-3", TASKS, name="mine"))


def test_tasks_all_unknown_task_and_bad_config_fail_before_launch():
    assert make_spec("random", "fake@1", "0", "all").tasks == (
        "vector_discrete", "vector_continuous", "image_discrete", "image_continuous")
    with pytest.raises(WmbenchError, match="vector_discrete"):
        make_spec("random", "fake@1", "0", "vector_discrete,vektor_discrete")
    with pytest.raises(WmbenchError, match="unknown config key 'lr'"):
        make_spec("random", "fake@1", "0", "all", overrides=["lr=1"])
    with pytest.raises(WmbenchError, match="unknown method"):
        make_spec("randon", "fake@1", "0", "all")


def test_threads_per_run_does_not_oversubscribe(monkeypatch):
    monkeypatch.setattr(sweep, "cpu_cores", lambda: 16)
    assert sweep.threads_per_run(4) == 4
    assert sweep.threads_per_run(3) == 5
    assert sweep.threads_per_run(32) == 1


# ------------------------------------------------------------------------------------------ local backend


def test_local_sweep_completes_and_rerun_does_nothing_twice(tmp_path):
    root = tmp_path / "runs"
    plan(root)
    spec = make_spec("random", "fake@1", "0-2", TASKS)
    result = run_sweep(spec, root, fake_options(workers=2, threads=3))
    assert result.complete and sorted(result.finished) == sorted(spec.runs())
    executions = lines(root / "executions.jsonl")
    assert sorted((e["task"], e["seed"]) for e in executions) == sorted(spec.runs())
    assert {e["omp"] for e in executions} == {"3"} and {e["threads"] for e in executions} == {3}
    assert len({e["pid"] for e in executions}) == 6  # one process per run
    # One tidy table in the score schema; the fake's score is 10 * seed + len(task).
    table = pd.read_csv(result.scores_csv)
    assert {"source", "method", "protocol", "task", "seed", "env_step", "score"} <= set(table.columns)
    got = {(r.task, int(r.seed)): r.score for r in table.itertuples()}
    assert got == {(t, s): 10.0 * s + len(t) for t, s in spec.runs()}

    again = run_sweep(spec, root, fake_options())
    assert again.complete and len(lines(root / "executions.jsonl")) == 6


def test_deterministic_failure_reported_after_bounded_retries(tmp_path, capsys):
    root = tmp_path / "runs"
    plan(root, vector_discrete__1="fail")
    spec = make_spec("random", "fake@1", "0-2", TASKS)
    result = run_sweep(spec, root, fake_options(retries=2))
    assert result.failed == [("vector_discrete", 1)]
    assert len(result.finished) == 5
    calls = [c for c in lines(root / "calls.jsonl") if (c["task"], c["seed"]) == ("vector_discrete", 1)]
    assert len(calls) == 3  # first attempt + 2 retries
    records = [r for r in lines(result.sweep_dir / "attempts.jsonl") if r["seed"] == 1 and r["task"] == "vector_discrete"]
    assert [r["attempt"] for r in records] == [1, 2, 3] and [r["gave_up"] for r in records] == [False, False, True]
    failed = {(s.task, s.seed): s for s in sweep_status(root, spec)}[("vector_discrete", 1)]
    assert failed.state == "failed" and "bad config" in failed.reason
    assert failed.error_file == str(root.resolve() / "fake@1/vector_discrete/random/seed_1/error.txt")

    code = sweep.cli_sweep(["random", "fake@1", "--seeds", "0-2", "--tasks", TASKS, "--root", str(root), "--status"])
    out = capsys.readouterr().out
    assert code == 0 and "5 finished, 0 running, 1 failed, 0 pending" in out and "error.txt" in out
    code = sweep.cli_sweep(["random", "fake@1", "--seeds", "0-2", "--tasks", TASKS, "--root", str(root),
                            "--target", FAKE, "--retries", "0", "--no-progress"])
    assert code == 1  # still failing: reported again, the finished five untouched
    assert len(lines(root / "executions.jsonl")) == 5


def test_killed_worker_is_retried(tmp_path):
    root = tmp_path / "runs"
    plan(root, image_discrete__0="crash_once")
    spec = make_spec("random", "fake@1", "0-1", TASKS)
    result = run_sweep(spec, root, fake_options())
    assert result.complete and len(result.finished) == 4
    records = [r for r in lines(result.sweep_dir / "attempts.jsonl") if (r["task"], r["seed"]) == ("image_discrete", 0)]
    assert [r["status"] for r in records] == ["crashed", "finished"]
    assert "SIGKILL" in records[0]["error"]


def test_run_locked_by_live_process_is_running_elsewhere(tmp_path):
    root = tmp_path / "runs"
    plan(root)
    spec = make_spec("random", "fake@1", "0-1", "vector_discrete")
    held = root / "fake@1/vector_discrete/random/seed_1"
    held.mkdir(parents=True)
    with RunLock(held):
        result = run_sweep(spec, root, fake_options(retries=3))
        assert result.elsewhere == [("vector_discrete", 1)] and not result.failed
        assert result.finished == [("vector_discrete", 0)]
        status = {s.seed: s for s in sweep_status(root, spec)}
        assert status[1].state == "running" and f"pid {os.getpid()}" in status[1].reason
    attempts = [r for r in lines(result.sweep_dir / "attempts.jsonl") if r["seed"] == 1]
    assert [r["status"] for r in attempts] == ["locked"]  # not retried: it is not a failure
    assert f"pid {os.getpid()}" in attempts[0]["error"]
    assert not [c for c in lines(root / "calls.jsonl") if c["seed"] == 1]  # no worker started just to be refused
    assert run_sweep(spec, root, fake_options()).complete  # lock released: now it runs


def test_runner_refusing_a_locked_run_is_running_elsewhere_not_failure(tmp_path):
    # The lock can be taken between the driver's check and the worker's start: the runner's RunLocked then
    # comes back from the worker and means the same.
    plan(tmp_path)
    spec = make_spec("random", "fake@1", "0", "vector_discrete")
    result = run_sweep(spec, tmp_path, fake_options(target="test_sweep_support:locked_run", retries=3, workers=1))
    assert result.elsewhere == [("vector_discrete", 0)] and not result.failed
    [record] = lines(result.sweep_dir / "attempts.jsonl")
    assert record["status"] == "locked" and "in use by pid 1" in record["error"]


def test_status_of_all_sweeps_under_a_root(tmp_path, capsys):
    root = tmp_path / "runs"
    plan(root)
    run_sweep(make_spec("random", "fake@1", "0", "vector_discrete"), root, fake_options())
    assert sweep.cli_sweep(["--status", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 finished, 0 running, 0 failed, 0 pending" in out
    spec = make_spec("random", "fake@1", "5", "vector_discrete")
    [pending] = sweep_status(root, spec)
    assert pending.state == "pending" and pending.reason == "not started"


# ------------------------------------------------------------------------------------------ ray and submitit


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        # Ray's local workers inherit the driver's environment at init: make the stand-in importable there.
        mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=sweep_backends_temp())
    yield ray
    ray.shutdown()


def sweep_backends_temp() -> str:
    from wmbench.sweep_backends import ray_temp_dir

    return ray_temp_dir()


def test_ray_backend_runs_the_same_spec_and_retries_a_dead_worker(tmp_path, ray_instance):
    root = tmp_path / "runs"
    plan(root, vector_discrete__2="crash_once")
    spec = make_spec("random", "fake@1", "0-2", TASKS)
    result = run_sweep(spec, root, fake_options(backend="ray", workers=2))
    assert result.complete and sorted(result.finished) == sorted(spec.runs())
    records = [r for r in lines(result.sweep_dir / "attempts.jsonl") if (r["task"], r["seed"]) == ("vector_discrete", 2)]
    assert [r["status"] for r in records] == ["crashed", "finished"]
    assert ray_instance.is_initialized()  # the backend did not shut down an instance it did not start


def test_submitit_local_backend(tmp_path):
    pytest.importorskip("submitit")
    root = tmp_path / "runs"
    plan(root, image_discrete__1="crash_once")
    spec = make_spec("random", "fake@1", "0-1", TASKS)
    result = run_sweep(spec, root, fake_options(backend="submitit", submitit_local=True))
    assert result.complete and sorted(result.finished) == sorted(spec.runs())
    records = [r for r in lines(result.sweep_dir / "attempts.jsonl") if (r["task"], r["seed"]) == ("image_discrete", 1)]
    assert [r["status"] for r in records] == ["crashed", "finished"]


def test_missing_optional_backend_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails as if not installed
    plan(tmp_path)
    spec = make_spec("random", "fake@1", "0", "vector_discrete")
    with pytest.raises(WmbenchError, match=r"pip install 'wmbench\[sweep\]'"):
        run_sweep(spec, tmp_path, fake_options(backend="submitit"))


def test_dry_run_lists_the_expansion_and_launches_nothing(tmp_path, capsys):
    root = tmp_path / "runs"
    code = sweep.cli_sweep(["random", "fake@1", "--seeds", "0-2,7", "--tasks", "vector_discrete", "--root",
                            str(root), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "4 runs" in out
    assert str(root / "fake@1/vector_discrete/random/seed_7") in out
    assert not root.exists()


def test_reused_local_workers_serve_many_runs_and_survive_a_crash(tmp_path):
    root = tmp_path / "runs"
    plan(root, vector_discrete__1="crash_once", image_discrete__2="fail")
    spec = make_spec("random", "fake@1", "0-2", TASKS)
    result = run_sweep(spec, root, fake_options(workers=2, reuse_workers=True, retries=1))
    assert sorted(result.finished) == sorted(set(spec.runs()) - {("image_discrete", 2)})
    assert result.failed == [("image_discrete", 2)]
    executions = lines(root / "executions.jsonl")
    # 5 runs on 2 live workers + 1 replacement for the one killed: fewer processes than runs.
    assert len({e["pid"] for e in executions}) <= 3
    crashed = [r for r in lines(result.sweep_dir / "attempts.jsonl") if r["status"] == "crashed"]
    assert [(r["task"], r["seed"]) for r in crashed] == [("vector_discrete", 1)]
    # Each attempt's output (here the traceback) goes to its own log, also in a reused worker.
    [log] = (result.sweep_dir / "logs").glob("image_discrete.seed_2.attempt_1.*.log")
    assert "ValueError: bad config for image_discrete seed 2" in log.read_text()
    [other] = (result.sweep_dir / "logs").glob("image_discrete.seed_1.attempt_1.*.log")
    assert "Traceback" not in other.read_text()


def test_status_of_running_and_interrupted_runs_from_their_files(tmp_path):
    root = tmp_path / "runs"
    spec = make_spec("random", "fake@1", "0-1", "vector_discrete")
    for seed in (0, 1):
        d = root / f"fake@1/vector_discrete/random/seed_{seed}"
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"status": "running", "agent_steps": 300, "budget_agent_steps": 1000}))
        (d / "timing.csv").write_text("env_step,wall_s,steps_per_s\n400,4.0,40.00\n600,6.0,50.00\n")
    with RunLock(root / "fake@1/vector_discrete/random/seed_0"):  # seed 0 is live, seed 1's process is gone
        running, interrupted = sweep_status(root, spec)
    assert running.state == "running" and running.steps_per_s == 50.0
    assert running.eta_s == pytest.approx((1000 - 300) / 50.0)
    assert interrupted.state == "pending" and "interrupted at step 300" in interrupted.reason
    assert interrupted.eta_s is None


def test_submitit_on_slurm_submits_one_array_metered_by_workers(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from wmbench.sweep_backends import RunJob, SubmititBackend

    # Stand-in Slurm commands: enough for submitit to detect Slurm and "submit" (we check the batch script).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"srun": "exit 0", "scancel": "exit 0", "sbatch": 'echo "Submitted batch job 4242"'}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = SubmititBackend(tmp_path / "submitit", workers=3, threads=2, partition="gpu", timeout_min=90)
    assert backend.on_slurm and backend.capacity > 5  # Slurm meters the array, not the driver
    backend.submit([(RunJob("random", "fake@1", "vector_discrete", s, str(tmp_path)), 1) for s in range(5)])
    [script] = (tmp_path / "submitit").glob("*/4242_submission.sh")
    text = script.read_text()
    for line in ("--array=0-4%3", "--cpus-per-task=2", "--partition=gpu", "--time=90"):
        assert f"#SBATCH {line}\n" in text
    assert backend.in_flight == 5
    backend.close()  # scancel


def test_sweep_with_a_recipe_applies_and_records_it_and_skips_finished_runs(tmp_path):
    """`wmbench sweep ... --recipe NAME`: every run gets the recipe (then --set), run.json records it, the recipe is
    part of the sweep's identity, and a second call starts nothing."""
    pytest.importorskip("dm_control")
    args = ("dreamerv3", "dmc_proprio@1", "0", "cartpole_balance", ["preset=tiny"])
    spec = make_spec(*args, steps=600, recipe="dreamerv3_2023_dmc_proprio")
    assert spec.identity()["recipe"] == "dreamerv3_2023_dmc_proprio" and spec.id != make_spec(*args, steps=600).id
    assert "recipe" not in make_spec(*args, steps=600).identity()  # ids of sweeps without a recipe are unchanged
    result = run_sweep(spec, tmp_path, ExecOptions(workers=1, retries=0, progress=False, poll_s=0.05))
    assert result.complete and result.finished == [("cartpole_balance", 0)]
    info = json.loads((sweep.run_dir(tmp_path, spec, "cartpole_balance", 0) / "run.json").read_text())
    assert info["recipe"]["name"].startswith("dreamerv3_2023_dmc_proprio") and info["recipe"]["set"] == ["preset=tiny"]
    assert info["config"]["rssm_core"] == "dense" and info["config"]["prefill"] == 1024  # the recipe's keys
    again = run_sweep(spec, tmp_path, ExecOptions(workers=1, retries=0, progress=False, poll_s=0.05))
    assert again.skipped == [("cartpole_balance", 0)]
    with pytest.raises(WmbenchError, match="no_such_recipe"):  # refused before any run is launched
        make_spec(*args, recipe="no_such_recipe")


def test_sweep_pause_at_takes_every_run_to_that_step_then_on_to_identical_scores(tmp_path, capsys):
    """`wmbench sweep --pause-at STEP`: every run stops at its first episode end at or after STEP (status paused,
    listed as pending), a second call with it starts nothing new, and the call without it finishes them exactly as
    uninterrupted runs (the real runner, random on fake@1)."""
    from wmbench.runner import run

    steps, seeds = 600, (0, 1)
    reference = {s: run("random", "fake@1", "vector_discrete", s, root=tmp_path / "ref", steps=steps,
                        progress=False, threads=1) for s in seeds}
    root = tmp_path / "runs"
    spec = make_spec("random", "fake@1", "0-1", "vector_discrete", steps=steps)
    options = ExecOptions(workers=1, threads=1, retries=0, progress=False, poll_s=0.05, pause_at=200)
    result = run_sweep(spec, root, options)
    assert sorted(result.paused) == [("vector_discrete", s) for s in seeds] and not result.finished
    assert result.complete and result.scores_csv is None
    for status in sweep_status(root, spec):
        info = json.loads((Path(status.run_dir) / "run.json").read_text())
        assert status.state == "pending" and info["status"] == "paused" and 200 <= info["paused_at"] < 300
    assert sorted(run_sweep(spec, root, options).paused) == sorted(result.paused)  # nothing ran further
    done = run_sweep(spec, root, ExecOptions(workers=1, threads=1, retries=0, progress=False, poll_s=0.05))
    assert sorted(done.finished) == [("vector_discrete", s) for s in seeds] and done.scores_csv is not None
    for s in seeds:
        d = sweep.run_dir(root, spec, "vector_discrete", s)
        assert (d / "scores.csv").read_bytes() == (reference[s].run_dir / "scores.csv").read_bytes()
    with pytest.raises(SweepError, match="--pause-at 600 is not before the budget of vector_discrete"):
        run_sweep(spec, root, ExecOptions(workers=1, progress=False, pause_at=600))
