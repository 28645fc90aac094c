"""Uniform random policy: the floor every protocol's scores are compared with.

Actions are drawn in blocks of `_BLOCK` steps: one generator call per step (5-14 us) costs about 3% of an Atari
step, as much as the adapter itself (benchmarks/env_overhead.py). The undrawn rest of a block is part of the state, so
a resumed run continues the same action sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmbench.method import Method
from wmbench.seeding import derive_seed, generator_state, set_generator_state

_BLOCK = 256


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
        self.block = self._draw(0)[:0]  # actions drawn, not yet handed out: [steps, batch, ...]

    def _draw(self, batch: int) -> np.ndarray:
        space = self.act_space
        if hasattr(space, "n"):
            return self.rng.integers(0, space.n, size=(_BLOCK, batch))
        return self.rng.uniform(space.low, space.high, size=(_BLOCK, batch, *space.shape)).astype(np.float32)

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train"):
        batch = len(obs["is_first"])
        if not len(self.block) or self.block.shape[1] != batch:
            self.block = self._draw(batch)
        action, self.block = self.block[0], self.block[1:]
        return action, state

    def state_dict(self):
        return {"rng": generator_state(self.rng), "block": torch.from_numpy(self.block.copy())}

    def load_state_dict(self, state):
        set_generator_state(self.rng, state["rng"])
        if "block" in state:  # absent in checkpoints of older versions, which drew one action per call
            self.block = state["block"].numpy().copy()
