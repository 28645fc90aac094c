"""Seconds per Plan2Explore update and per action on dmc_vision-sized inputs (64x64x3 images, 6 actions), one thread.

    nice .venv/bin/python scripts/plan2explore_cost.py PRESET UPDATES      e.g. cpu 2

Times `UPDATES` calls of `train_batch` on one random batch of the preset's size after one warm-up call, then 20
training-mode actions; prints the parameter counts and the load average (the figures depend on it).
"""

from __future__ import annotations

import os
import sys
import time

import gymnasium
import numpy as np
import torch
from wmbench_baselines.plan2explore import Plan2Explore, Plan2ExploreConfig, parameter_counts

from wmbench.config import make_config


def main(preset: str, updates: int) -> None:
    torch.set_num_threads(1)
    image = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    actions = gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32)
    config = make_config(Plan2ExploreConfig, [f"preset={preset}"])
    print(preset, parameter_counts(image, actions, config))
    agent = Plan2Explore(image, actions, config, seed=0)
    rng = np.random.default_rng(0)
    b, length = config.batch_size, config.batch_length
    data = {
        "image": rng.integers(0, 256, (b, length, 64, 64, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (b, length, 6)).astype(np.float32),
        "reward": rng.normal(size=(b, length)).astype(np.float32),
        "is_first": np.zeros((b, length), bool),
    }
    agent.train_batch(data)
    start = time.time()
    for _ in range(updates):
        agent.train_batch(data)
    per_update = (time.time() - start) / updates
    obs = {"image": data["image"][:1, 0], "is_first": np.array([True]), "is_last": np.array([False])}
    agent.schedule.episodes_started = config.seed_episodes + 1  # past the random seed episodes
    start, state = time.time(), None
    for _ in range(20):
        _, state = agent.policy(obs, state, "train")
    per_action = (time.time() - start) / 20
    print(f"{preset}: {per_update:.2f} s per update ({b} x {length}), {1000 * per_action:.1f} ms per action; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
