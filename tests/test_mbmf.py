"""MB-MF: the phase schedule (random -> MPC -> DAgger -> PPO) through the runner, exact resume mid-PPO, the PPO
fine-tune's value warm-up and KL limit; slow: imitation near the MPC, fine-tuning above its start and above scratch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_pets import short_protocol
from wmbench_baselines.mbmf import MBMF

from wmbench.method import register
from wmbench.nn.distributions import normal_kl
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
    bc_at = [i for i, k in enumerate(keys) if "bc_mse" in k]
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


def _method(overrides):
    from wmbench.config import make_config
    from wmbench.envs import make_env
    from wmbench.protocols import load_protocol

    env = make_env(load_protocol("control@1"), "cartpole_swingup", 0)
    return MBMF(env.obs_space, env.act_space, make_config(MBMF.Config, ["preset=tiny", *overrides]), "cpu", 0)


def _fill_rollout(agent, steps=201, episode=40):
    """A PPO batch of random states/actions with rewards, episode ends every `episode` steps."""
    rng = np.random.default_rng(1)
    agent.rollout = [
        {
            "vector": rng.normal(size=4).astype(np.float32),
            "action": rng.uniform(-1, 1, size=1).astype(np.float32),
            "reward": float(rng.uniform()),
            "last": t % episode == episode - 1,
            "terminal": False,
        }
        for t in range(steps)
    ]


def _policy_kl(agent, before, feat):
    with torch.no_grad():
        mean, std = agent.pi(feat)
        return float(normal_kl(before[0], before[1], mean, std).mean())


@pytest.mark.parametrize("target_kl", [0.01, 100.0])
def test_value_warmup_keeps_policy_then_kl_limit_bounds_the_step(target_kl):
    # A wide clip leaves the KL limit as the only brake on a large learning rate.
    agent = _method(
        [
            "value_warmup=1",
            "ppo_epochs=20",
            "ppo_lr=1e-2",
            "ppo_clip=10",
            "policy_std=0.5",
            f"target_kl={target_kl}",
        ]
    )
    _fill_rollout(agent)
    feat = agent._feat(np.stack([s["vector"] for s in agent.rollout]))
    agent.pi.fit_normaliser(feat)
    policy = {k: v.clone() for k, v in agent.pi.state_dict().items() if not k.startswith("value")}
    value = [p.clone() for p in agent.pi.value.parameters()]
    logs = agent._ppo_update()  # warm-up: the critic learns, the policy stays the imitation
    assert "ppo_kl" not in logs
    assert all(torch.equal(v, agent.pi.state_dict()[k]) for k, v in policy.items())
    assert any(not torch.equal(a, b) for a, b in zip(value, agent.pi.value.parameters(), strict=True))
    with torch.no_grad():
        before = agent.pi(feat)
    logs = agent._ppo_update()  # a policy update
    kl = _policy_kl(agent, before, feat)
    if target_kl < 1:
        assert kl < 3 * target_kl, kl  # stopped at the trust region's edge (one step past it at most)
        assert logs["ppo_policy_epochs"] < 20
    else:
        assert kl > 0.03, kl  # without the limit the same update goes far beyond it: the check above can fail


def test_mf_start_zero_is_ppo_from_scratch(tmp_path):
    result = run(
        "mbmf",
        short_protocol(tmp_path),
        "cartpole_swingup",
        0,
        root=tmp_path,
        overrides=["preset=tiny", "mf_start=0", "ppo_batch=30"],
        progress=False,
        threads=1,
        steps=160,
    )
    keys = set().union(*map(set, _metrics(result.run_dir)))
    assert "ppo_policy_loss" in keys  # PPO ran ...
    assert not keys & {"model_mse", "bc_mse"}  # ... without a model or an imitation before it


# control@1 cart-pole with the `cpu` preset and the task's schedule (TASK_DEFAULTS): episode 1 random, 2-10 MPC
# (mf_start 2,000 steps), 11-13 DAgger (the policy acts, the MPC labels), then PPO in batches of 1,000 steps whose
# first 2 train only the critic, so episodes 14-23 are the imitation policy unchanged; fine-tuning from episode 24.
STEPS = 22_000
MPC_AT_SWITCH = slice(7, 10)  # episodes 8-10
IMITATION = slice(13, 23)  # episodes 14-23
END = slice(-10, None)  # the last 10 episodes of the budget


@pytest.mark.slow
def test_imitation_starts_near_the_mpc_and_finetuning_keeps_it_above_scratch(tmp_path):
    """Nagabandi et al.'s hand-off on control@1 cart-pole, 3 seeds: (a) the imitation policy scores near the MPC it
    imitates; the PPO fine-tune keeps it (no collapse) and ends far above the same PPO from a random initialisation.

    Not asserted: that fine-tuning ends *above* its start, the paper's claim. Measured on seed 0 it did not on this
    budget (docs/classic_mbrl.md): the clone starts at ~165 of ~185 reachable and PPO's gains are within the noise."""
    from wmbench.testing import run_returns

    rows = []
    for seed in range(3):
        kwargs = dict(steps=STEPS, progress=False, threads=1)
        mbmf = run(
            "mbmf",
            "control@1",
            "cartpole_swingup",
            seed,
            tmp_path / "mbmf",
            overrides=["preset=cpu"],
            **kwargs,
        )
        scratch = run(
            "mbmf",
            "control@1",
            "cartpole_swingup",
            seed,
            tmp_path / "scratch",
            overrides=["preset=cpu", "mf_start=0"],
            **kwargs,
        )
        returns, scratch_returns = run_returns(mbmf.run_dir)[0], run_returns(scratch.run_dir)[0]
        assert len(returns) == len(scratch_returns) == STEPS // 200
        row = [np.mean(returns[MPC_AT_SWITCH]), np.mean(returns[IMITATION]), np.mean(returns[END])]
        rows.append([*row, np.mean(scratch_returns[END])])
        print(
            f"seed {seed}: MPC {row[0]:.1f}, imitation {row[1]:.1f}, fine-tuned {row[2]:.1f}, scratch {rows[-1][3]:.1f}"
        )
    mpc, imitation, finetuned, scratch = np.array(rows).T
    assert np.all(imitation >= 0.8 * mpc), (
        imitation,
        mpc,
    )  # (a) the imitation scores near the MPC at the switch
    assert np.all(finetuned >= 0.8 * imitation), (
        finetuned,
        imitation,
    )  # the fine-tune does not destroy it ...
    assert np.all(finetuned > scratch + 50), (finetuned, scratch)  # ... and ends far above PPO from scratch
