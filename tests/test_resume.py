"""Exact resume (the acceptance test of issue 3): a run killed with SIGKILL mid-way and started again with the same
command ends with scores.csv and metrics.jsonl byte-identical to an uninterrupted run, and identical weights.

The method under test is a small learner defined here: a torch model trained on replay sequences after every
step, whose policy and update draw from the torch, numpy and python global RNGs and from the replay's generator,
with a replay small enough to evict and chunks small enough that several chunk files exist at the kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from wmbench.method import Method, register
from wmbench.runner import load_checkpoint, run, run_dir_for

TESTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class LearnerConfig:
    preset: str = "default"
    hidden: int = 16
    lr: float = 1e-2
    batch: int = 4
    length: int = 8
    train_start: int = 16
    fail_at: int = -1  # raise inside update at this step (tests of failed runs)
    replay_bytes: int = 150_000  # ~180 steps of the 16x16 image task: the replay evicts during the test
    replay_chunk: int = 64


class Learner(Method):
    """Predicts the next reward from (vector obs, action); acts by sampling a softmax over predicted rewards."""

    Config = LearnerConfig

    def __init__(self, obs_space, act_space, config, device="cpu", seed=0):
        super().__init__(obs_space, act_space, config, device, seed)
        self.n = int(act_space.n)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2 + self.n, config.hidden), torch.nn.Tanh(), torch.nn.Linear(config.hidden, 1)
        )
        # Hand-written SGD with momentum: torch.optim's first use imports torch._dynamo (seconds per process).
        self.momentum = [torch.zeros_like(p) for p in self.net.parameters()]
        self.updates = 0

    def _predict(self, vector: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.n)
        x = torch.cat([vector[:, None, :].expand(-1, self.n, -1), eye.expand(len(vector), -1, -1)], -1)
        return self.net(x).squeeze(-1)

    def policy(self, obs, state, mode="train"):
        with torch.no_grad():
            logits = self._predict(torch.as_tensor(obs["vector"]))
        action = torch.multinomial(torch.softmax(logits, -1), 1)[:, 0].numpy()
        if mode == "train" and random.random() < 0.2:  # python RNG
            action = np.random.randint(0, self.n, size=len(action))  # numpy global RNG
        return action, state

    def update(self, replay, step):
        if step == self.config.fail_at:
            raise RuntimeError(f"planned failure at step {step}")
        if len(replay) < self.config.train_start:
            return {}
        batch = replay.sample(self.config.batch, self.config.length)
        vector = torch.as_tensor(batch["vector"][:, :-1]).reshape(-1, 2)
        action = torch.as_tensor(batch["action"][:, :-1]).reshape(-1)
        reward = torch.as_tensor(batch["reward"][:, 1:]).reshape(-1)
        pred = self._predict(vector + 0.01 * torch.randn_like(vector)).gather(1, action[:, None])[:, 0]
        loss = ((pred - reward) ** 2).mean()
        grads = torch.autograd.grad(loss, list(self.net.parameters()))
        with torch.no_grad():
            for p, m, g in zip(self.net.parameters(), self.momentum, grads, strict=True):
                m.mul_(0.9).add_(g)
                p.sub_(self.config.lr * m)
        self.updates += 1
        metrics = {"loss": float(loss.detach())}
        if "image" in batch:
            metrics["image_mean"] = float(batch["image"][:, :, 0, 0].mean())
        return metrics

    def state_dict(self):
        return {"net": self.net.state_dict(), "momentum": list(self.momentum), "updates": self.updates}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])
        self.momentum = [m.clone() for m in state["momentum"]]
        self.updates = int(state["updates"])


register("resume_learner", "test_resume:Learner")

TASK = "image_discrete"
STEPS = 800
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from wmbench.method import register
register("resume_learner", "test_resume:Learner")
from wmbench.runner import run
r = run("resume_learner", "fake@1", {task!r}, 0, root={root!r}, steps={steps}, checkpoint_every=100,
        progress=False, threads=1)
print("RESULT", r.status, r.resumed, r.final_score)
"""


def _command(root: Path) -> list[str]:
    return [sys.executable, "-c", SCRIPT.format(tests=str(TESTS_DIR), task=TASK, root=str(root), steps=STEPS)]


def _run_json(run_dir: Path) -> dict:
    import json

    try:
        return json.loads((run_dir / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_kill9_midway_then_resume_equals_uninterrupted_run(tmp_path):
    # Uninterrupted reference, in this process (conftest: 1 torch thread, like the subprocesses).
    ref = run("resume_learner", "fake@1", TASK, 0, root=tmp_path / "ref", steps=STEPS, checkpoint_every=100,
              progress=False, threads=1)
    assert ref.status == "finished" and not ref.resumed

    root = tmp_path / "killed"
    run_dir = run_dir_for(root, "fake@1", TASK, "resume_learner", 0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_command(root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # Kill after a checkpoint past the replay's capacity (eviction) and several chunk files.
    while _run_json(run_dir).get("agent_steps", 0) < 250:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no checkpoint in time"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    info = _run_json(run_dir)
    assert info["status"] == "running", "the run finished before it could be killed; lengthen STEPS"
    assert info["agent_steps"] < STEPS
    assert (run_dir / "lock.json").exists()  # a dead process's lock is left behind; resume must take it over
    assert len(list((run_dir / "replay").glob("chunk_*.tar.zst"))) >= 3

    done = subprocess.run(_command(root), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RESULT finished True" in done.stdout

    ref_dir = ref.run_dir
    for name in ("scores.csv", "metrics.jsonl"):
        assert (run_dir / name).read_bytes() == (ref_dir / name).read_bytes(), name
    assert len((ref_dir / "metrics.jsonl").read_text().splitlines()) >= 20
    assert (ref_dir / "scores.csv").read_text().count(",eval\n") >= 2

    a, b = load_checkpoint(ref_dir / "checkpoint"), load_checkpoint(run_dir / "checkpoint")
    assert a["method"]["updates"] == b["method"]["updates"] > 700
    for key, value in a["method"]["net"].items():
        assert torch.equal(value, b["method"]["net"][key]), key
    assert _run_json(run_dir)["resumes"] == 1
    assert _run_json(run_dir)["final_score"] == _run_json(ref_dir)["final_score"]
    assert not (run_dir / "lock.json").exists()


def test_resume_after_failure_equals_uninterrupted_run(tmp_path):
    """A run that failed (exception in the loop) resumes from its last checkpoint to the same result."""
    kwargs = dict(steps=600, checkpoint_every=50, progress=False, threads=1)
    ref = run("resume_learner", "fake@1", "vector_discrete", 1, root=tmp_path / "ref", **kwargs)
    root = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="planned failure"):
        run("resume_learner", "fake@1", "vector_discrete", 1, root=root, overrides=["fail_at=333"], **kwargs)
    run_dir = run_dir_for(root, "fake@1", "vector_discrete", "resume_learner", 1)
    info = _run_json(run_dir)
    assert info["status"] == "failed" and "planned failure" in info["error"]
    assert "planned failure" in (run_dir / "error.txt").read_text()
    # Same config is required to resume: fail_at is part of it (run.json and checkpoint), so the change is explicit.
    res = run("resume_learner", "fake@1", "vector_discrete", 1, root=root, allow_config_change=True, **kwargs)
    assert res.resumed and res.status == "finished"
    [change] = _run_json(run_dir)["config_changes"]
    assert change["changes"] == {"fail_at": [333, -1]} and change["from_agent_step"] <= 333
    for name in ("scores.csv", "metrics.jsonl"):
        assert (run_dir / name).read_bytes() == (ref.run_dir / name).read_bytes(), name
