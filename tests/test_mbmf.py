"""MB-MF: the phase schedule (random -> MPC -> DAgger -> PPO) through the runner, exact resume mid-PPO, GAE."""

from __future__ import annotations

import json

import pytest
from test_pets import short_protocol
from wmbench_baselines.mbmf import MBMF

from wmbench.method import register
from wmbench.runner import run

# 40-step episodes: 1 random, 1 MPC (model retrained after each), DAgger from step 80 for 1 episode, then PPO
# with 30-transition batches.
OVERRIDES = ["preset=tiny", "mf_start=80", "dagger_episodes=1", "ppo_batch=30"]


class CrashingMBMF(MBMF):
    crash_at = -1

    def update(self, replay, step):
        if step == CrashingMBMF.crash_at:
            CrashingMBMF.crash_at = -1
            raise RuntimeError("simulated crash")
        return super().update(replay, step)


register("mbmf_crashing", f"{__name__}:CrashingMBMF")


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_phases_run_in_order_and_resume_mid_ppo_is_identical(tmp_path):
    proto = short_protocol(tmp_path)
    kwargs = dict(overrides=OVERRIDES, progress=False, threads=1, checkpoint_every=40, steps=240)
    whole = run("mbmf_crashing", proto, "cartpole_swingup", 0, root=tmp_path / "a", **kwargs)
    assert whole.status == "finished"
    keys = [set(m) for m in _metrics(whole.run_dir)]
    model_at = [i for i, k in enumerate(keys) if "model_mse" in k]
    bc_at = [i for i, k in enumerate(keys) if "bc_loss" in k]
    ppo_at = [i for i, k in enumerate(keys) if "ppo_policy_loss" in k]
    assert model_at and bc_at and ppo_at
    assert max(model_at) <= min(bc_at) <= min(ppo_at)  # model learning, then cloning, then PPO
    CrashingMBMF.crash_at = 190  # during PPO, mid-episode 5, with a partly filled PPO batch in the checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        run("mbmf_crashing", proto, "cartpole_swingup", 0, root=tmp_path / "b", **kwargs)
    resumed = run("mbmf_crashing", proto, "cartpole_swingup", 0, root=tmp_path / "b", **kwargs)
    assert resumed.resumed
    for name in ("scores.csv", "metrics.jsonl"):
        assert (whole.run_dir / name).read_bytes() == (resumed.run_dir / name).read_bytes(), name


def test_gae_by_hand():
    import torch
    from wmbench_baselines.mbmf import gae_advantages

    # Two transitions of one episode that hits a time limit (bootstrap 2.0), then one of a new episode.
    reward = torch.tensor([1.0, 0.0, 3.0])
    value = torch.tensor([0.5, 1.0, 1.0])
    next_value = torch.tensor([1.0, 2.0, 0.0])
    ended = torch.tensor([0.0, 1.0, 1.0])
    gamma, lam = 0.9, 0.5
    d0, d1, d2 = 1 + 0.9 * 1.0 - 0.5, 0 + 0.9 * 2.0 - 1.0, 3 - 1.0
    expected = torch.tensor([d0 + gamma * lam * d1, d1, d2])
    assert torch.allclose(gae_advantages(reward, value, next_value, ended, gamma, lam), expected)
