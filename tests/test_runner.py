"""Runner: run directory contents, finished runs, damaged checkpoints, mismatched directories, full disks, CLI."""

from __future__ import annotations

import csv
import errno
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from wmbench_baselines.random_agent import RandomAgent

import wmbench.runner as runner
from wmbench.cli import main as cli_main
from wmbench.io import DiskFullError, RunLocked
from wmbench.method import register
from wmbench.protocols import load_protocol
from wmbench.runner import CheckpointError, RunDirError, load_checkpoint, run, run_dir_for

PROTOCOL = "fake@1"
TASK = "vector_discrete"


@dataclass(frozen=True)
class CrashyConfig:
    preset: str = "default"
    width: int = 4


class Crashy(RandomAgent):
    """Random actions; reports a metric every step and raises at `crash_at` (set by a test)."""

    Config = CrashyConfig
    crash_at: ClassVar[int | None] = None

    def update(self, replay, step):
        if step == Crashy.crash_at:
            raise RuntimeError(f"crash for the test at step {step}")
        return {"replay_len": float(len(replay))}


register("crashy", "test_runner:Crashy")


@pytest.fixture(autouse=True)
def _no_crash():
    Crashy.crash_at = None
    yield
    Crashy.crash_at = None


def go(root: Path, seed: int = 0, **kw):
    kw = {"steps": 400, "checkpoint_every": 100, "progress": False, **kw}
    return run("crashy", PROTOCOL, TASK, seed, root=root, **kw)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def crashed_run(root: Path, at: int = 250) -> Path:
    Crashy.crash_at = at
    with pytest.raises(RuntimeError, match="crash for the test"):
        go(root)
    Crashy.crash_at = None
    return run_dir_for(root, PROTOCOL, TASK, "crashy", 0)


def test_run_directory_contents(tmp_path):
    res = go(tmp_path)
    d = res.run_dir
    assert d == tmp_path / "fake@1" / TASK / "crashy" / "seed_0"
    assert res.status == "finished" and not res.resumed
    info = json.loads((d / "run.json").read_text())
    proto = load_protocol(PROTOCOL)
    for key in ("method", "protocol", "protocol_hash", "task", "seed", "run_seed", "config", "smoke",
                "budget_agent_steps", "step_unit", "device", "status", "started", "updated", "finished",
                "agent_steps", "versions", "git_sha", "host"):
        assert key in info, key
    assert info["protocol"] == "fake@1" and info["protocol_hash"] == proto.hash
    assert info["status"] == "finished" and info["agent_steps"] == 400 and info["budget_agent_steps"] == 400
    assert info["config"] == {"preset": "default", "width": 4}

    rows = list(csv.DictReader((d / "scores.csv").open()))
    train = [r for r in rows if r["phase"] == "train"]
    evals = [r for r in rows if r["phase"] == "eval"]
    # env_step is in the protocol's unit (env steps = agent steps x action repeat 2) at each episode's end.
    agent_steps = 0
    for i, r in enumerate(train, 1):
        agent_steps += int(r["length"])
        assert int(r["env_step"]) == 2 * agent_steps and int(r["episode"]) == i and r["step_unit"] == "env_steps"
    assert agent_steps <= 400
    # fake@1 evaluates 2 episodes every 500 env steps (250 agent steps) and at the budget: 2 rounds here.
    assert len(evals) == 4 and [int(r["episode"]) for r in evals] == [1, 2, 3, 4]
    assert int(evals[-1]["env_step"]) == 800 and 500 <= int(evals[0]["env_step"]) < 800
    metrics = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 400
    # replay_len after step s is s + (episodes finished by then) + 1 initial step; the mean over a window grows.
    assert all(a["replay_len"] < b["replay_len"] for a, b in zip(metrics, metrics[1:], strict=False))
    timing = (d / "timing.csv").read_text().splitlines()
    assert timing[0] == "env_step,wall_s,steps_per_s" and len(timing) == len(metrics) + 1
    assert "wall" not in (d / "scores.csv").read_text()
    assert res.final_score is not None and info["final_score"] == res.final_score
    assert not (d / "lock.json").exists()


def test_finished_run_is_returned_not_rerun(tmp_path):
    first = go(tmp_path)
    before = snapshot(first.run_dir)
    Crashy.crash_at = 5  # would fail if anything ran
    again = go(tmp_path)
    assert again.status == "finished" and not again.resumed and again.final_score == first.final_score
    assert snapshot(first.run_dir) == before


def test_failed_run_records_error_then_resumes_to_identical_logs(tmp_path):
    ref = go(tmp_path / "ref")
    d = crashed_run(tmp_path / "crash")
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "failed" and "crash for the test" in info["error"]
    assert "RuntimeError" in (d / "error.txt").read_text()
    res = go(tmp_path / "crash")
    assert res.resumed and res.status == "finished"
    for name in ("scores.csv", "metrics.jsonl"):
        assert (d / name).read_bytes() == (ref.run_dir / name).read_bytes()


def test_corrupted_checkpoints_raise_and_leave_run_intact(tmp_path):
    d = crashed_run(tmp_path)
    for name in ("checkpoint", "checkpoint.prev"):
        (d / name / "state.pt").write_bytes(b"this is not a checkpoint" * 10)
    before = snapshot(d)
    with pytest.raises(CheckpointError, match=r"checkpoint/state\.pt is corrupted"):
        go(tmp_path)
    assert snapshot(d) == before


def test_truncated_latest_checkpoint_falls_back_to_previous(tmp_path):
    ref = go(tmp_path / "ref")
    d = crashed_run(tmp_path / "crash")
    state = d / "checkpoint" / "state.pt"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(d / "checkpoint")
    res = go(tmp_path / "crash")
    assert res.resumed and res.status == "finished"
    aside = [p for p in d.iterdir() if p.name.startswith("checkpoint.damaged-")]
    assert len(aside) == 1 and (aside[0] / "state.pt").read_bytes() == data[: len(data) // 2]  # kept, not deleted
    for name in ("scores.csv", "metrics.jsonl"):
        assert (d / name).read_bytes() == (ref.run_dir / name).read_bytes()


def test_truncated_only_checkpoint_is_an_error(tmp_path):
    d = crashed_run(tmp_path, at=150)  # checkpoint_every 100: one checkpoint at the first episode end >= 100
    assert not (d / "checkpoint.prev").exists()
    state = d / "checkpoint" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    before = snapshot(d)
    with pytest.raises(CheckpointError, match=str(state)):
        go(tmp_path)
    assert snapshot(d) == before


def test_other_protocol_content_is_refused(tmp_path):
    go(tmp_path, steps=50)
    # Same name@version, edited content (another hash): the run directory must not be reused.
    text = (Path(runner.__file__).parents[1] / "protocols" / "fake@1.toml").read_text()
    edited = tmp_path / "edited" / "fake@1.toml"
    edited.parent.mkdir()
    edited.write_text(text.replace("max_steps = 50", "max_steps = 60"))
    with pytest.raises(RunDirError, match=r"protocol_hash.*--root"):
        run("crashy", load_protocol(edited), TASK, 0, root=tmp_path, steps=50, progress=False)
    # A run.json recording another protocol version (e.g. a directory copied by hand) is refused too.
    info_path = run_dir_for(tmp_path, PROTOCOL, TASK, "crashy", 0) / "run.json"
    info = json.loads(info_path.read_text())
    info["protocol"] = "fake@2"
    info["status"] = "finished"
    info_path.write_text(json.dumps(info))
    with pytest.raises(RunDirError, match=r"protocol: directory has 'fake@2', requested 'fake@1'"):
        go(tmp_path, steps=50)


def test_other_config_or_budget_is_refused(tmp_path):
    go(tmp_path, steps=50)
    with pytest.raises(RunDirError, match=r"config\.width: directory has 4, requested 5"):
        go(tmp_path, steps=50, overrides=["width=5"])
    with pytest.raises(RunDirError, match="budget_agent_steps"):
        go(tmp_path, steps=60)


def test_disk_full_while_checkpointing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    ref = go(tmp_path / "ref")
    real_save = torch.save
    calls = []

    def failing_save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 3:  # the third checkpoint hits a full disk half-way
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(runner.torch, "save", failing_save)
    with pytest.raises(DiskFullError, match="state.pt"):
        go(tmp_path / "full")
    monkeypatch.setattr(runner.torch, "save", real_save)
    d = run_dir_for(tmp_path / "full", PROTOCOL, TASK, "crashy", 0)
    ckpt = load_checkpoint(d / "checkpoint")  # the second checkpoint, intact
    assert 200 <= ckpt["step"] < 400
    assert not (d / "checkpoint.tmp").exists()
    assert json.loads((d / "run.json").read_text())["status"] == "failed"
    res = go(tmp_path / "full")
    assert res.resumed and res.status == "finished"
    assert (d / "scores.csv").read_bytes() == (ref.run_dir / "scores.csv").read_bytes()


def test_live_lock_refuses_second_process(tmp_path):
    d = run_dir_for(tmp_path, PROTOCOL, TASK, "crashy", 0)
    d.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = {"host": socket.gethostname(), "pid": sleeper.pid, "started": 0, "heartbeat": time.time()}
        (d / "lock.json").write_text(json.dumps(lock))
        with pytest.raises(RunLocked, match=str(sleeper.pid)):
            go(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()


def cli(argv, capsys):
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_run_prints_dir_and_score(tmp_path, capsys):
    code, out, err = cli(["run", "crashy", PROTOCOL, "--task", TASK, "--seed", "3", "--steps", "60",
                          "--root", str(tmp_path), "--no-progress"], capsys)
    assert code == 0, err
    d = run_dir_for(tmp_path, PROTOCOL, TASK, "crashy", 3)
    assert f"run directory: {d}" in out
    score = json.loads((d / "run.json").read_text())["final_score"]
    assert f"final score: {score:.6g}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "width=wide"], "config key 'width' expects an integer, got 'wide'"),
        (["--set", "widht=3"], "Did you mean: width"),
        (["--task", "vector_discrte"], "Did you mean: vector_discrete"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    base = ["run", "crashy", PROTOCOL, "--task", TASK, "--seed", "0", "--root", str(tmp_path), "--no-progress"]
    code, out, err = cli(base + argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "fake@1").exists()


def test_cli_unknown_method_and_protocol(tmp_path, capsys):
    code, _, err = cli(["run", "crashi", PROTOCOL, "--task", TASK, "--seed", "0", "--root", str(tmp_path)], capsys)
    assert code == 2 and "Did you mean: crashy" in err
    code, _, err = cli(["run", "crashy", "fak@1", "--task", TASK, "--seed", "0", "--root", str(tmp_path)], capsys)
    assert code == 2 and "fake@1" in err


def test_sigterm_marks_failed_and_releases_lock(tmp_path):
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_runner; "
        f"from wmbench.runner import run; "
        f"run('crashy', 'fake@1', {TASK!r}, 0, root={str(tmp_path)!r}, steps=10**7, checkpoint_every=100, "
        f"progress=False)"
    )
    # a budget the run cannot finish before it is terminated, however long a loaded machine keeps this test waiting
    # (with 20,000 steps the run once finished, exit code 0, between the first checkpoint and the SIGTERM)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        d = run_dir_for(tmp_path, PROTOCOL, TASK, "crashy", 0)
        deadline = time.monotonic() + 60
        while not (d / "checkpoint" / "state.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0 and b"Terminated" in err
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "failed" and "SIGTERM" in info["error"]
    assert not (d / "lock.json").exists()


class NumpyState(Crashy):
    """Puts a numpy array in its state_dict: weights_only loading refuses it, so the first checkpoint must fail."""

    def state_dict(self):
        import numpy as np

        return {"rng": super().state_dict()["rng"], "array": np.zeros(3)}


register("numpy_state", "test_runner:NumpyState")


def test_state_dict_that_weights_only_refuses_fails_at_first_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="weights_only"):
        run("numpy_state", PROTOCOL, TASK, 0, root=tmp_path, steps=200, checkpoint_every=50, progress=False)


def _without_run_json(files: dict[str, bytes]) -> dict[str, bytes]:
    """A run directory's files but run.json (its times) and the TensorBoard events (derived, rebuilt on resume)."""
    return {k: v for k, v in files.items() if k != "run.json" and not k.startswith("tensorboard/")}


def test_pause_at_stops_at_an_episode_end_and_resumes_to_identical_logs(tmp_path):
    ref = go(tmp_path / "ref")
    paused = go(tmp_path / "slices", pause_at=150)
    d = paused.run_dir
    info = json.loads((d / "run.json").read_text())
    assert paused.status == "paused" and paused.final_score is None
    assert info["status"] == "paused" and "final_score" not in info and info["finished"] is None
    # The pause comes at the first training episode end at or after agent step 150, and the checkpoint is there.
    train = [r for r in csv.DictReader((d / "scores.csv").open()) if r["phase"] == "train"]
    ends = [int(r["env_step"]) // 2 for r in train]  # fake@1 repeats each action twice
    assert info["paused_at"] == ends[-1] and ends[-1] >= 150 > ends[-2]
    assert info["agent_steps"] == info["checkpoint_step"] == load_checkpoint(d / "checkpoint")["step"] == ends[-1]
    # The same command again pauses at once, running nothing.
    before = _without_run_json(snapshot(d))
    Crashy.crash_at = ends[-1] + 1  # would fail if a step ran
    again = go(tmp_path / "slices", pause_at=150)
    assert again.status == "paused" and again.resumed and _without_run_json(snapshot(d)) == before
    Crashy.crash_at = None
    # A later pause, then none: the run ends as if it had never stopped.
    assert go(tmp_path / "slices", pause_at=300).status == "paused"
    done = go(tmp_path / "slices")
    assert done.status == "finished" and done.final_score == ref.final_score
    for name in ("scores.csv", "metrics.jsonl"):
        assert (d / name).read_bytes() == (ref.run_dir / name).read_bytes(), name
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "finished" and "paused_at" not in info


def test_paused_run_is_pending_in_a_sweep_and_a_sweep_finishes_it(tmp_path):
    from wmbench.sweep import make_spec, sweep_status

    go(tmp_path, pause_at=150)
    spec = make_spec("crashy", PROTOCOL, "0", TASK)
    [status] = sweep_status(tmp_path, spec)
    assert status.state == "pending" and status.reason.startswith("paused at agent step 1")


@pytest.mark.parametrize(("pause_at", "message"), [(0, "--pause-at must be an agent step from 1"),
                                                   (400, "--pause-at 400 is not before the run's budget of 400")])
def test_pause_at_outside_the_run_is_refused(tmp_path, pause_at, message):
    with pytest.raises(runner.WmbenchError, match=message):
        go(tmp_path, pause_at=pause_at)
    assert not (tmp_path / "fake@1").exists()


def test_cli_pause_at_says_paused(tmp_path, capsys):
    base = ["run", "crashy", PROTOCOL, "--task", TASK, "--seed", "1", "--steps", "200", "--root", str(tmp_path)]
    code, out, err = cli([*base, "--pause-at", "50"], capsys)
    assert code == 0, err
    assert "status: paused (no final score yet)" in out and "final score:" not in out
    assert "paused at agent step" in err and "without --pause-at" in err
    code, out, err = cli([*base, "--no-progress"], capsys)
    assert code == 0 and "final score: " in out


def test_progress_rate_and_eta_follow_the_last_minutes_not_the_start(capsys):
    from wmbench.runner import _Progress

    now = [0.0]
    show = _Progress("m p t seed 0", 10_000, True, interval=5.0, window=600.0, clock=lambda: now[0])
    step = 0
    for _ in range(20):  # a fast prefill: 1,000 steps in 10 s
        now[0] += 0.5
        step += 50
        show(step, None)
    for _ in range(400):  # then training at 1 step/s for 2,000 s
        now[0] += 5.0
        step += 5
        show(step, 1.0)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3000/10000 agent steps (30%), 1.0 steps/s, ETA 1:56:40" in last  # 7,000 steps at 1/s
    # since the start it would have read 3,000 / 2,010 s = 1.5 steps/s, ETA 1:17
