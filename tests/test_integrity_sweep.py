"""Sweep integrity (issue 29.5, 29.3 sweep.json, 29.4 --seeds, 27.3): the sweep's table covers every finished run
whichever driver ran it; an interrupted run is `pending`; a deterministic error is not retried and the run shows as
failed with its reason; a damaged sweep.json and absurd --seeds are one-line errors."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from integrity_support import PROTOCOL, TASK, cli, one_error_line, reset, stopped_run

from wmbench import sweep
from wmbench.io import RunLock
from wmbench.runner import Terminated, run, run_dir_for
from wmbench.sweep import ExecOptions, make_spec, run_sweep, sweep_status
from wmbench.sweep_backends import Backend, execute


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    reset()
    yield
    reset()


class Inline(Backend):
    """Runs each job in this process with the real runner; `on_wait` plays what other processes do meanwhile."""

    name = "inline"
    capacity = 1

    def __init__(self, on_wait=None):
        self.ended: list = []
        self.on_wait = on_wait

    def submit(self, jobs):
        self.ended += [(job, attempt, execute(job)) for job, attempt in jobs]

    def wait(self, timeout):
        if self.on_wait is not None:
            self.on_wait()
            self.on_wait = None
        ended, self.ended = self.ended, []
        return ended

    @property
    def in_flight(self):
        return len(self.ended)


def options(**kw) -> ExecOptions:
    return ExecOptions(**{"workers": 1, "threads": 1, "retries": 2, "progress": False, "poll_s": 0.01, **kw})


def test_table_covers_runs_finished_by_another_driver(tmp_path):
    """Driver A runs seeds 0-1 while driver B holds seeds 2-3; B's runs finish before A ends: A writes all four."""
    spec = make_spec("random", PROTOCOL, "0-3", TASK, steps=60)
    held = [RunLock(run_dir_for(tmp_path, PROTOCOL, TASK, "random", s)) for s in (2, 3)]
    for lock in held:
        lock.path.parent.mkdir(parents=True)
        lock.acquire()

    def driver_b_finishes():
        for seed, lock in zip((2, 3), held, strict=True):
            lock.release()
            run("random", PROTOCOL, TASK, seed, root=tmp_path, steps=60, progress=False, threads=1)

    result = run_sweep(spec, tmp_path, options(), backend=Inline(on_wait=driver_b_finishes))
    assert sorted(result.finished) == [(TASK, 0), (TASK, 1)] and sorted(result.elsewhere) == [(TASK, 2), (TASK, 3)]
    table = pd.read_csv(result.scores_csv)
    assert sorted(set(table["seed"])) == [0, 1, 2, 3]
    assert (result.sweep_dir / "scores.lock").exists()


def test_conflicting_run_directory_is_not_retried_and_shows_failed(tmp_path, capsys):
    for seed in (0, 1):  # finished runs of another budget already hold the directories
        run("random", PROTOCOL, TASK, seed, root=tmp_path, steps=60, progress=False, threads=1)
    spec = make_spec("random", PROTOCOL, "0-1", TASK, steps=80)
    result = run_sweep(spec, tmp_path, options(retries=2), backend=Inline())
    assert sorted(result.failed) == [(TASK, 0), (TASK, 1)] and result.finished == []
    attempts = sweep.read_attempts(result.sweep_dir)
    assert len(attempts) == 2 and all(a["gave_up"] and a["deterministic"] for a in attempts)
    for status in sweep_status(tmp_path, spec):
        assert status.state == "failed"
        assert status.reason.startswith("failed (not retried: the same error would recur): RunDirError: run directory ")
        assert "budget_agent_steps: directory has 60, requested 80" in status.reason
    assert result.scores_csv is None  # no finished run of this sweep
    code, out, _ = cli(["sweep", "random", PROTOCOL, "--seeds", "0-1", "--tasks", TASK, "--steps", "80", "--root",
                        str(tmp_path), "--status"], capsys)
    assert code == 0 and f"sweep {spec.id}: 0 finished, 0 running, 2 failed, 0 pending" in out
    assert "final score" not in out and "not retried" in out


def test_interrupted_run_is_pending(tmp_path):
    """A killed driver's workers get SIGTERM (PR_SET_PDEATHSIG): their runs are interrupted, not failed."""
    stopped_run(tmp_path, error=Terminated("terminated by SIGTERM"))
    spec = make_spec("stopper", PROTOCOL, "0", TASK, steps=400)
    [status] = sweep_status(tmp_path, spec)
    assert status.state == "pending"
    assert status.reason.startswith("interrupted: terminated by SIGTERM at agent step 250; saved: the checkpoint at")


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is damaged (Expecting property name"), ("[1, 2]", "is damaged (holds list, not a JSON object)"),
     ('{"method": "random"}', "is damaged (key 'protocol' is missing)")],
)
def test_damaged_sweep_json(tmp_path, capsys, content, message):
    spec = make_spec("random", PROTOCOL, "0-1", TASK, steps=60)
    path = sweep.sweep_dir(tmp_path, spec) / "sweep.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    fix = f"Move {path.parent} aside (or delete it) and run the sweep command again"
    argv = ["sweep", "random", PROTOCOL, "--seeds", "0-1", "--tasks", TASK, "--steps", "60", "--root", str(tmp_path),
            "--no-progress"]
    code, _, err = cli(argv, capsys)
    assert code == 2 and f"error: {path} {message}" in one_error_line(err) and fix in err
    code, _, err = cli(["sweep", "--status", "--root", str(tmp_path)], capsys)
    assert code == 2 and f"error: {path} {message}" in one_error_line(err)
    assert path.read_text() == content


def test_seed_ranges_are_bounded(tmp_path, capsys):
    started = time.monotonic()
    code, _, err = cli(["sweep", "random", PROTOCOL, "--seeds", "0-100000000", "--root", str(tmp_path), "--dry-run"],
                       capsys)
    assert code == 2 and one_error_line(err) == (
        "error: --seeds '0-100000000' selects more than 10000 seeds; a sweep takes at most 10000 (e.g. --seeds 0-9)"
    )
    assert time.monotonic() - started < 10
    code, _, err = cli(["sweep", "random", PROTOCOL, "--seeds", f"0,{2**63}", "--root", str(tmp_path)], capsys)
    assert code == 2 and "seed indices are integers from 0 to 2**63-1" in one_error_line(err)


def test_sweep_arguments_are_checked_like_the_runner(tmp_path, capsys):
    code, _, err = cli(["sweep", "random", PROTOCOL, "--seeds", "0", "--threads", "-1", "--root", str(tmp_path)],
                       capsys)
    assert code == 2 and one_error_line(err) == "error: --threads must be at least 1, got -1; omit it to let torch choose"
    assert not (tmp_path / "sweeps").exists()


def test_sweep_root_that_is_a_file(tmp_path, capsys):
    root = tmp_path / "afile"
    root.write_text("mine")
    code, _, err = cli(["sweep", "random", PROTOCOL, "--seeds", "0", "--root", str(root), "--no-progress"], capsys)
    assert code == 2 and "(Not a directory); pass a writable directory as --root" in one_error_line(err)
    assert root.read_text() == "mine"


def test_smoke_sweep_runs_live_apart(tmp_path, capsys):
    code, out, _ = cli(["sweep", "random", PROTOCOL, "--seeds", "0", "--tasks", TASK, "--smoke", "--root",
                        str(tmp_path), "--dry-run"], capsys)
    assert code == 0 and f"-> {run_dir_for(tmp_path, PROTOCOL, TASK, 'random', 0, smoke=True)}" in out
    assert "/random/smoke/seed_0" in out
