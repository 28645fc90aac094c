"""A test double of the `deepmind_lab` module for adapter tests without a Bazel build of DeepMind Lab.

What is copied from DeepMind Lab's Python API (python/dmlab_module.c, docs/users/python_api.md): `Lab(level,
observations, config=None, renderer=..., level_cache=None)` with string config values; `action_spec()` (7 entries
with name/min/max), `observation_spec()`; `reset(seed=...)`; `step(action, num_steps=1) -> float` where the action
must be an int32 (`np.intc`) array of shape (7,), the action held for `num_steps` frames and the rewards summed;
`is_running()`; `observations()` (dict of arrays; `RGB_INTERLEAVED` (H, W, 3) uint8, `INSTR` a str) which raises
after the episode ended; `num_steps()` (frames so far); `close()`. Unknown levels raise at construction.

What is not DeepMind Lab: the world. An episode lasts `EPISODE_FRAMES` frames; a frame with fire pressed earns 1;
the image encodes the frame count; `INSTR` is a fixed sentence.
"""

from __future__ import annotations

import numpy as np

ACTION_NAMES = ("LOOK_LEFT_RIGHT_PIXELS_PER_FRAME", "LOOK_DOWN_UP_PIXELS_PER_FRAME", "STRAFE_LEFT_RIGHT",
                "MOVE_BACK_FORWARD", "FIRE", "JUMP", "CROUCH")  # fmt: skip
ACTION_RANGE = {0: (-512, 512), 1: (-512, 512), 2: (-1, 1), 3: (-1, 1), 4: (0, 1), 5: (0, 1), 6: (0, 1)}
EPISODE_FRAMES = 40
INSTRUCTION = "Pick up the red balloon."
created: list[Lab] = []


def _known_levels() -> set[str]:
    from wmbench.envs.dmlab import LEVELS

    return {f"contributed/dmlab30/{name.removesuffix('_test') + '_train' if name.endswith('_test') else name}"
            for name in LEVELS}  # fmt: skip


class Lab:
    def __init__(self, level, observations, config=None, renderer="software", level_cache=None):
        if level not in _known_levels():
            raise ValueError(f"Failed to open level {level!r}")
        config = dict(config or {})
        assert all(isinstance(v, str) for v in config.values()), config
        self.level = level
        self.requested = list(observations)
        self.config = config
        self.height, self.width = int(config.get("height", 240)), int(config.get("width", 320))
        self.seeds: list[int] = []
        self.actions: list[tuple[np.ndarray, int]] = []
        self._frames = 0
        self._running = False
        self.closed = False
        created.append(self)

    def action_spec(self):
        return [{"name": n, "min": ACTION_RANGE[i][0], "max": ACTION_RANGE[i][1]} for i, n in enumerate(ACTION_NAMES)]

    def observation_spec(self):
        return [{"name": "RGB_INTERLEAVED", "shape": (self.height, self.width, 3), "dtype": np.uint8},
                {"name": "INSTR", "shape": (), "dtype": str}]  # fmt: skip

    def reset(self, seed=None, episode=-1):
        self.seeds.append(seed)
        self._frames = 0
        self._running = True
        return True

    def step(self, action, num_steps=1):
        if not self._running:
            raise RuntimeError("Environment is not running; call reset()")
        action = np.asarray(action)
        if action.dtype != np.intc or action.shape != (7,):
            raise ValueError(f"action must be an int32 array of shape (7,), got {action.dtype} {action.shape}")
        for i, v in enumerate(action):
            lo, hi = ACTION_RANGE[i]
            if not lo <= v <= hi:
                raise ValueError(f"action {ACTION_NAMES[i]}={v} outside [{lo}, {hi}]")
        self.actions.append((action.copy(), num_steps))
        reward = 0.0
        for _ in range(num_steps):
            self._frames += 1
            reward += float(action[4])
            if self._frames >= EPISODE_FRAMES:
                self._running = False
                break
        return reward

    def is_running(self):
        return self._running

    def num_steps(self):
        return self._frames

    def observations(self):
        if not self._running:
            raise RuntimeError("Environment is not running; no observations")
        image = np.full((self.height, self.width, 3), self._frames % 256, np.uint8)
        obs = {"RGB_INTERLEAVED": image}
        if "INSTR" in self.requested:
            obs["INSTR"] = INSTRUCTION
        return obs

    def close(self):
        self.closed = True
