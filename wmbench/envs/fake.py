"""A tiny deterministic suite for tests and demos without simulators: a point on a line chasing a goal.

Observations are `vector` (position, goal) and/or a small `image` drawing both; actions are discrete
(left/stay/right) or continuous in [-1, 1]. Leaving [-1, 1] is a real terminal state (penalised); otherwise the
episode is truncated at `max_steps` (not terminal). A policy that moves towards the goal earns up to ~max_steps.
`walls = true` (protocol [env]): the line ends in walls instead, the point stops at +-1 and no episode is terminal,
like DeepMind Control (for methods without a termination model, e.g. Plan2Explore's zero-shot check).
"""

from __future__ import annotations

import gymnasium
import numpy as np

ENV_SCHEMA = {"size": tuple[int, ...], "max_steps": int, "action_repeat": int, "obs": str, "walls": bool}
TASKS = frozenset({"vector_discrete", "vector_continuous", "image_discrete", "image_continuous"})
INSTALL_HINT = "built in; nothing to install"


def check_installed() -> None:
    return None


class PointEnv(gymnasium.Env):
    def __init__(self, task: str, size=(16, 16), max_steps: int = 50, action_repeat: int = 1, walls: bool = False):
        self.task = task
        self.walls = walls
        self.discrete = task.endswith("discrete")
        self.use_image = task.startswith("image")
        self.size = tuple(size)
        self.max_steps = max_steps
        self.action_repeat = action_repeat
        spaces = {"vector": gymnasium.spaces.Box(-2, 2, (2,), np.float32)}
        if self.use_image:
            spaces["image"] = gymnasium.spaces.Box(0, 255, (*self.size, 3), np.uint8)
        self.observation_space = gymnasium.spaces.Dict(spaces)
        if self.discrete:
            self.action_space = gymnasium.spaces.Discrete(3)
        else:
            self.action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)
        self.pos = 0.0
        self.goal = 0.0
        self.t = 0

    def _obs(self):
        obs = {"vector": np.array([self.pos, self.goal], np.float32)}
        if self.use_image:
            img = np.zeros((*self.size, 3), np.uint8)
            w = self.size[1]
            col = lambda v: int(np.clip((v + 1) / 2 * (w - 1), 0, w - 1))  # noqa: E731
            img[:, col(self.goal), 1] = 255
            img[:, col(self.pos), 0] = 255
            obs["image"] = img
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = float(self.np_random.uniform(-0.5, 0.5))
        self.goal = float(self.np_random.uniform(-0.8, 0.8))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if self.discrete:
            delta = (int(action) - 1) * 0.1
        else:
            delta = float(np.clip(np.asarray(action).reshape(-1)[0], -1, 1)) * 0.1
        reward = 0.0
        terminated = False
        for _ in range(self.action_repeat):
            self.pos += delta + float(self.np_random.normal(0, 0.01))
            self.t += 1
            if self.walls:
                self.pos = min(max(self.pos, -1.0), 1.0)
            elif abs(self.pos) > 1.0:
                terminated = True
                reward -= 1.0
                break
            reward += 1.0 - abs(self.pos - self.goal)
        truncated = not terminated and self.t >= self.max_steps
        return self._obs(), reward, terminated, truncated, {}


def make(protocol, task: str, seed: int) -> gymnasium.Env:
    env = protocol.env
    return PointEnv(
        task,
        size=tuple(env.get("size", (16, 16))),
        max_steps=int(env.get("max_steps", 50)),
        action_repeat=int(env.get("action_repeat", 1)),
        walls=bool(env.get("walls", False)),
    )
