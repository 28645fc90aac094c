"""MB-MF's hand-off and fine-tune alone, started from a checkpoint taken in the MPC phase (no MPC phase to re-run).

    OMP_NUM_THREADS=1 nice .venv/bin/python scripts/mbmf_finetune_from_checkpoint.py RUN_DIR EPISODES [--set k=v ...]

RUN_DIR: an `mbmf` run on control@1 cart-pole checkpointed at agent step `mf_start` (2,000) in the MPC phase. The
method is rebuilt with `preset=cpu` plus `--set`, loaded from the checkpoint (model, labels, planner, generators,
the policy's initial weights; the initial std is this config's), and driven here like the runner drives it (policy, env step, update)
for EPISODES episodes on env seed 7: switch (behaviour cloning), DAgger, PPO. The model retrain pending after the
MPC phase's last episode is skipped (no replay here). Prints every return, then the mean of the imitation policy
before any policy update and of the last 10 episodes. For tuning the fine-tune in minutes; the figures of record
come from runner runs (docs/classic_mbrl.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from wmbench.config import make_config
from wmbench.envs import make_env
from wmbench.protocols import load_protocol


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("episodes", type=int)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override k=v")
    args = parser.parse_args()
    from wmbench_baselines.mbmf import MBMF

    torch.set_num_threads(1)
    checkpoint = torch.load(args.run_dir / "checkpoint" / "state.pt", weights_only=True)
    env = make_env(load_protocol("control@1"), "cartpole_swingup", 7)
    agent = MBMF(
        env.obs_space, env.act_space, make_config(MBMF.Config, ["preset=cpu", *args.overrides]), "cpu", 0
    )
    state = dict(checkpoint["method"])
    if state["phase"] not in ("random", "mpc"):
        raise SystemExit(
            f"{args.run_dir}: checkpoint is in phase {state['phase']!r}; need one from the MPC phase"
        )
    # The run's initial policy weights (the runner seeds the method with the run's derived seed), this config's
    # initial std and fresh optimisers (the policy is untouched before the switch).
    fresh = agent.pi.state_dict()
    state["pi"] = {**fresh, **state["pi"], "log_std": fresh["log_std"]}
    for key in ("actor_opt", "critic_opt", "bc_opt"):
        state[key] = getattr(agent, key).state_dict()
    agent.load_state_dict(state)
    agent.pending = ""
    step, returns = int(checkpoint["step"]), []
    for episode in range(args.episodes):
        obs, total = env.reset(), 0.0
        while True:
            action, _ = agent.policy({k: np.asarray(v)[None] for k, v in obs.items()}, None, "train")
            if obs["is_last"]:
                break
            obs = env.step(action[0])
            step += 1
            total += float(obs["reward"])
            agent.update(None, step)
        returns.append(total)
        print(f"episode {episode + 1} ({agent.phase}): {total:.1f}", flush=True)
    c = agent.config
    warmup_start = c.dagger_episodes
    warmup_episodes = c.value_warmup * agent.ppo_batch // 200
    imitation = returns[warmup_start : warmup_start + warmup_episodes]
    print("returns:", " ".join(f"{r:.0f}" for r in returns))
    print(
        f"imitation policy before any PPO policy update (episodes {warmup_start + 1}-{warmup_start + len(imitation)}): "
        f"{np.mean(imitation):.1f}; last 10 episodes: {np.mean(returns[-10:]):.1f}"
    )


if __name__ == "__main__":
    main()
