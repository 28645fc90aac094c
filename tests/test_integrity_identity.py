"""Run identity (issue 29.1, 29.4 last item, 27.2, 27.3): a run directory is only ever continued by the run that made
it. The checkpoint records the identity too, so deleting run.json does not let another run take over; deleted
checkpoints need an explicit --restart; a changed setting needs an explicit --allow-config-change and is recorded;
smoke and full runs never share a directory; an interrupted run says truthfully what was saved."""

from __future__ import annotations

import shutil

import pytest
from integrity_support import (
    METHOD,
    PROTOCOL,
    TASK,
    Stopper,
    cli,
    go,
    one_error_line,
    reset,
    run_argv,
    run_json,
    snapshot,
    stopped_run,
)

from wmbench.protocols import load_protocol
from wmbench.reproduce import find_runs
from wmbench.runner import CheckpointError, RunDirError, Terminated, load_checkpoint, run_dir_for


@pytest.fixture(autouse=True)
def _reset():
    reset()
    yield
    reset()


def test_checkpoint_records_the_run_identity(tmp_path):
    d = stopped_run(tmp_path)
    identity = load_checkpoint(d / "checkpoint")["identity"]
    proto = load_protocol(PROTOCOL)
    assert identity == {
        "method": METHOD, "protocol": "fake@1", "protocol_hash": proto.hash, "task": TASK, "seed": 0,
        "smoke": False, "budget_agent_steps": 400, "config": {"preset": "default", "lr": 1e-3, "replay_chunk": 32},
    }


def test_without_run_json_the_checkpoint_refuses_another_budget(tmp_path, capsys):
    d = stopped_run(tmp_path)
    (d / "run.json").unlink()
    before = snapshot(d)
    code, _, err = cli(run_argv(tmp_path, "--steps", "300", "--checkpoint-every", "100"), capsys)
    line = one_error_line(err)
    assert code == 2
    assert "holds a different run (by its checkpoint/state.pt: budget_agent_steps: directory has 400, requested 300)" in line
    assert snapshot(d) == before  # nothing resumed, nothing rewritten
    with pytest.raises(RunDirError, match=r"config.lr: directory has 0.001, requested 0.01"):
        go(tmp_path, overrides=["lr=0.01"])
    assert snapshot(d) == before
    with pytest.raises(RunDirError, match="budget_agent_steps: directory has 400, requested 300"):
        go(tmp_path, steps=300, restart=True)  # --restart never discards another run's checkpoint
    assert snapshot(d) == before
    # The same command still resumes (the checkpoint's identity matches) and records the resume.
    res = go(tmp_path)
    assert res.resumed and res.status == "finished" and run_json(d)["budget_agent_steps"] == 400


def test_deleted_checkpoints_need_restart(tmp_path, capsys):
    ref = go(tmp_path / "ref")
    d = stopped_run(tmp_path / "run")
    for name in ("checkpoint", "checkpoint.prev"):
        shutil.rmtree(d / name)
    before = snapshot(d)
    code, _, err = cli(run_argv(tmp_path / "run", "--steps", "400", "--checkpoint-every", "100"), capsys)
    line = one_error_line(err)
    assert code == 2
    assert "holds an earlier attempt (run.json records a checkpoint at agent step 2" in line
    assert "no checkpoint to resume it from" in line and "pass --restart" in line
    assert snapshot(d) == before
    code, _, err = cli(run_argv(tmp_path / "run", "--steps", "400", "--checkpoint-every", "100", "--restart"), capsys)
    assert code == 0, err
    assert (d / "scores.csv").read_bytes() == (ref.run_dir / "scores.csv").read_bytes()


def test_crash_before_the_first_checkpoint_starts_over_and_says_so(tmp_path, capsys):
    d = stopped_run(tmp_path, at=50)
    assert not (d / "checkpoint").exists()
    res = go(tmp_path, progress=True)
    assert res.status == "finished" and not res.resumed
    err = capsys.readouterr().err
    assert "starts over from agent step 0 (no checkpoint was written by the earlier attempt)" in err


def test_old_checkpoint_without_identity_and_no_run_json_is_refused(tmp_path):
    d = stopped_run(tmp_path)
    (d / "run.json").unlink()
    state = load_checkpoint(d / "checkpoint")
    del state["identity"]  # a checkpoint of an older wmbench
    import torch

    torch.save(state, d / "checkpoint" / "state.pt")
    with pytest.raises(CheckpointError, match="records no run identity"):
        go(tmp_path)


def test_changed_setting_needs_allow_config_change_and_is_recorded(tmp_path, capsys):
    """DreamerV3's advice after a NaN loss ('resume ... with a lower learning rate (--set model_lr=...)') works."""
    d = stopped_run(tmp_path)
    code, _, err = cli(run_argv(tmp_path, "--steps", "400", "--checkpoint-every", "100", "--set", "lr=1e-4"), capsys)
    line = one_error_line(err)
    assert code == 2 and "config.lr: directory has 0.001, requested 0.0001" in line
    assert "add --allow-config-change" in line
    step = run_json(d)["checkpoint_step"]
    code, _, err = cli(run_argv(tmp_path, "--steps", "400", "--checkpoint-every", "100", "--set", "lr=1e-4",
                                "--allow-config-change"), capsys)
    assert code == 0, err
    assert f"continues from agent step {step} with changed config (lr: 0.001 -> 0.0001)" in err
    info = run_json(d)
    assert info["config"]["lr"] == 1e-4 and info["status"] == "finished"
    [change] = info["config_changes"]
    assert change["from_agent_step"] == step and change["changes"] == {"lr": [1e-3, 1e-4]}
    # Protocol, budget, seed never change, flag or not.
    with pytest.raises(RunDirError, match="budget_agent_steps"):
        go(tmp_path, steps=300, allow_config_change=True)


def test_smoke_and_full_runs_never_share_a_directory(tmp_path):
    full = go(tmp_path, steps=None)
    smoke = go(tmp_path, steps=None, smoke=True)
    assert full.run_dir == tmp_path / "fake@1" / TASK / METHOD / "seed_0"
    assert smoke.run_dir == tmp_path / "fake@1" / TASK / METHOD / "smoke" / "seed_0"
    assert smoke.run_dir == run_dir_for(tmp_path, PROTOCOL, TASK, METHOD, 0, smoke=True)
    assert run_json(full.run_dir)["smoke"] is False and run_json(smoke.run_dir)["smoke"] is True
    assert find_runs(tmp_path, load_protocol(PROTOCOL), METHOD, [TASK]) == {TASK: [full.run_dir]}


@pytest.mark.parametrize("minutes, saved", [(None, False), (1e-9, True)])
def test_checkpoints_also_by_wall_time(tmp_path, minutes, saved):
    """27.2: a checkpoint comes after `checkpoint_minutes` of wall time even when the step interval is far off."""
    d = stopped_run(tmp_path, checkpoint_every=10**6, checkpoint_minutes=minutes)
    assert (d / "checkpoint").exists() == saved
    assert run_json(d)["checkpoint_minutes"] == (minutes or 5.0)


def test_ctrl_c_says_what_was_saved_and_where_it_resumes(tmp_path, capsys):
    d = stopped_run(tmp_path, error=KeyboardInterrupt())
    step = run_json(d)["checkpoint_step"]
    err = capsys.readouterr().err
    assert (f"interrupted (Ctrl-C) at agent step 250; saved: the checkpoint at agent step {step} "
            f"({d / 'checkpoint'}); running the same command resumes from agent step {step}") in err
    info = run_json(d)
    assert info["status"] == "failed" and info["interrupted"] is True


def test_ctrl_c_before_any_checkpoint_says_nothing_was_saved(tmp_path, capsys):
    d = stopped_run(tmp_path, at=50, error=KeyboardInterrupt())
    err = capsys.readouterr().err
    assert ("interrupted (Ctrl-C) at agent step 50; nothing was saved yet (checkpoints come every 100 agent steps "
            "or 5 minutes, at an episode end): running the same command starts this run over from agent step 0") in err
    assert not (d / "checkpoint").exists()


def test_sigterm_message_names_the_resume_step(tmp_path):
    Stopper.stop_at, Stopper.stop_with = 250, Terminated("terminated by SIGTERM")
    with pytest.raises(Terminated, match=r"^terminated by SIGTERM at agent step 250; saved: the checkpoint at agent "
                                         r"step (2\d\d) .*resumes from agent step \1$") as info:
        go(tmp_path)
    d = run_dir_for(tmp_path, PROTOCOL, TASK, METHOD, 0)
    assert run_json(d)["error"] == str(info.value) and run_json(d)["interrupted"] is True


def test_cli_ctrl_c_message_is_not_a_promise(tmp_path, capsys):
    Stopper.stop_at, Stopper.stop_with = 50, KeyboardInterrupt()
    code, _, err = cli(run_argv(tmp_path, "--steps", "400", "--checkpoint-every", "100"), capsys)
    assert code == 130
    assert "nothing was saved yet" in err and "can be resumed" not in err
