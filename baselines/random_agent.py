"""Uniform random policy: the floor every protocol's scores are compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wmbench.method import Method
from wmbench.seeding import derive_seed


@dataclass(frozen=True)
class RandomConfig:
    preset: str = "default"


class RandomAgent(Method):
    name = "random"
    Config = RandomConfig
    follows_stages = True  # it never uses the reward: the floor of staged protocols too (e.g. zero-shot exploration)

    def __init__(self, obs_space, act_space, config, device="cpu", seed=0):
        super().__init__(obs_space, act_space, config, device, seed)
        self.rng = np.random.default_rng(derive_seed(seed, "random_agent"))

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train"):
        batch = len(obs["is_first"])
        space = self.act_space
        if hasattr(space, "n"):
            action = self.rng.integers(0, space.n, size=batch)
        else:
            action = self.rng.uniform(space.low, space.high, size=(batch, *space.shape)).astype(np.float32)
        return action, state

    def state_dict(self):
        from wmbench.seeding import generator_state

        return {"rng": generator_state(self.rng)}

    def load_state_dict(self, state):
        from wmbench.seeding import set_generator_state

        set_generator_state(self.rng, state["rng"])
