"""How well does MB-MF's behaviour-cloned policy act, with and without Gaussian action noise?

    OMP_NUM_THREADS=1 nice .venv/bin/python scripts/mbmf_imitation_noise.py RUN_DIR [--stds 0.5 0.2 0.1 0.05]
        [--episodes 3] [--set label_episodes=9]

RUN_DIR is an `mbmf` run on control@1 cart-pole whose checkpoint was taken in the MPC phase (e.g. `wmbench run
mbmf control@1 --task cartpole_swingup --steps 2000 --set preset=cpu`, or any run checkpointed at agent step
2000). The policy is fitted by the method's own `_fit_policy` to the MPC's labels of the last `label_episodes`
MPC episodes (as at the switch), then acts for `--episodes` episodes with its mean and with noise of each std
(env seed 100). This measured why control@1's cart-pole starts the fine-tune at policy std 0.1
(docs/classic_mbrl.md).
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
    parser.add_argument("--stds", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override k=v")
    args = parser.parse_args()
    from wmbench_baselines.mbmf import MBMF

    torch.set_num_threads(1)
    checkpoint = torch.load(args.run_dir / "checkpoint" / "state.pt", weights_only=True)
    env = make_env(load_protocol("control@1"), "cartpole_swingup", 100)
    agent = MBMF(
        env.obs_space, env.act_space, make_config(MBMF.Config, ["preset=cpu", *args.overrides]), "cpu", 0
    )
    state = checkpoint["method"]
    labels = [
        (s.numpy(), a.numpy(), int(e))
        for s, a, e in zip(state["label_obs"], state["label_act"], state["label_episode"], strict=True)
    ]
    keep = sorted({e for _, _, e in labels})[-agent.config.label_episodes :]
    agent.labels = [label for label in labels if label[2] in keep]
    print(
        f"step {checkpoint['step']}: cloning {len(agent.labels)} labels of MPC episodes {keep}:",
        agent._fit_policy(),
    )
    rng = np.random.default_rng(0)

    def returns(std: float) -> list[float]:
        out = []
        for _ in range(args.episodes):
            step, total = env.reset(), 0.0
            while not step["is_last"]:
                with torch.no_grad():
                    mean = agent.pi(agent.features(torch.as_tensor(step["vector"])))[0].numpy()
                step = env.step(np.clip(mean + std * rng.normal(size=mean.shape), -1, 1).astype(np.float32))
                total += float(step["reward"])
            out.append(round(total, 1))
        return out

    print("mean action:", returns(0.0))
    for std in args.stds:
        print(f"noise std {std}:", returns(std))


if __name__ == "__main__":
    main()
