"""A test double of a metaworld 3.1.1 goal-observable env (the API `wmbench.envs.metaworld` drives) for adapter tests
without the simulator, which cannot be installed beside wmbench's mujoco pin.

What is copied from metaworld 3.1.1 (`sawyer_xyz_env.SawyerXYZEnv`): the gymnasium 5-tuple `step` that is never
terminal and truncates at `max_path_length` (500) steps, raising when stepped past it; `reset() -> (obs, info)`;
`info["success"]` each step; a 4-D Box action space in [-1, 1]; a 39-D state observation; `seed(s)`;
`render()` of the configured size; `model.cam_pos` (one row per camera; corner2 is row 2 here as in MWM's code).

What is not Meta-World: the world is a point hand moving by 0.1 x action[:3] towards a goal drawn at each reset;
reward 1 - distance, success while the hand is within 0.1 of the goal; the image shows the hand's position."""

from __future__ import annotations

import types

import gymnasium
import numpy as np


class FakeMetaWorld:
    max_path_length = 500

    def __init__(self, size=(64, 64), seed: int = 0):
        self.size = tuple(size)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (39,), np.float64)
        self.model = types.SimpleNamespace(cam_pos=np.zeros((5, 3)))
        self.rng = np.random.default_rng(seed)
        self.curr_path_length = 0
        self.hand = np.zeros(3)
        self.goal = np.zeros(3)
        self.resets = 0

    def seed(self, seed: int) -> list[int]:
        self.rng = np.random.default_rng(seed)
        return [seed]

    def _obs(self) -> np.ndarray:
        obs = np.zeros(39)
        obs[:3], obs[-3:] = self.hand, self.goal
        return obs

    def reset(self, seed=None, options=None):
        self.curr_path_length = 0
        self.hand = np.zeros(3)
        self.goal = self.rng.uniform(-0.3, 0.3, 3)
        self.resets += 1
        return self._obs(), {}

    def step(self, action):
        assert len(action) == 4, f"Actions should be size 4, got {len(action)}"
        if self.curr_path_length >= self.max_path_length:
            raise ValueError("You must reset the env manually once truncate==True")
        self.hand = np.clip(self.hand + 0.1 * np.asarray(action[:3]), -1, 1)
        self.curr_path_length += 1
        distance = float(np.linalg.norm(self.hand - self.goal))
        info = {"success": float(distance < 0.1), "near_object": 0.0}
        return self._obs(), 1.0 - distance, False, self.curr_path_length == self.max_path_length, info

    def render(self) -> np.ndarray:
        image = np.zeros((*self.size, 3), np.uint8)
        row, col = ((self.hand[:2] + 1) / 2 * (np.array(self.size) - 1)).astype(int)
        image[row, col] = 255
        return image

    def close(self) -> None:
        pass
