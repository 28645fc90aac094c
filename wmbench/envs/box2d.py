"""Box2D adapter (`gymnasium[box2d]`): CarRacing-v3, the World Models car-racing task (Ha & Schmidhuber 2018,
Car Racing experiment; the paper ran CarRacing-v0, whose track, reward and 1,000-step limit v3 keeps).

Observations: the 96x96 RGB frame with the bottom `crop_bottom` rows (the indicator bar) removed, resized to `size`
(64x64) with bilinear filtering, as the paper's released code did (`frame[0:84]`, then 64x64). Actions: the contract's
[-1, 1]^3, mapped linearly onto the env's steer [-1, 1], gas [0, 1] and brake [0, 1]. Reward (the env's): -0.1 per
frame plus 1000 / N for each of the N track tiles visited; leaving the playfield ends the episode with -100
(terminal); finishing the lap is terminal; the `max_steps` limit (1,000) is a truncation. No action repeat.
Seeding: `reset(seed=s)` builds the track of seed s (the contract env seeds every episode).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {"size": tuple[int, ...], "crop_bottom": int, "max_steps": int, "action_repeat": int}
TASKS = frozenset({"car_racing"})
INSTALL_HINT = "pip install 'wmbench[worldmodels]'   (gymnasium[box2d]: box2d-py / Box2D, needs swig to build)"
DEFAULTS: dict[str, Any] = {"size": (64, 64), "crop_bottom": 12, "max_steps": 1000, "action_repeat": 1}


def check_installed() -> None:
    if importlib.util.find_spec("Box2D") is None:
        raise SuiteNotInstalled(f"suite 'box2d' needs Box2D (gymnasium[box2d]), which is not installed. Install: {INSTALL_HINT}")


def _settings(protocol: Any) -> dict[str, Any]:
    # imported here: the wrappers import torch, and `wmbench list` must not
    from wmbench.envs.wrappers import protocol_settings
    from wmbench.protocols import ProtocolError

    cfg, where = protocol_settings(protocol, DEFAULTS)
    if not 0 <= cfg["crop_bottom"] < 96:
        raise ProtocolError(f"{where}.crop_bottom must be in [0, 96), got {cfg['crop_bottom']}")
    if cfg["max_steps"] < 1:
        raise ProtocolError(f"{where}.max_steps must be >= 1, got {cfg['max_steps']}")
    if cfg["action_repeat"] != 1:
        raise ProtocolError(f"{where}.action_repeat must be 1 (World Models acts every frame), got {cfg['action_repeat']}")
    return cfg


class CarRacingEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, size: tuple[int, int] = (64, 64), crop_bottom: int = 12, max_steps: int = 1000, **_: Any):
        from PIL import Image

        self.env = gymnasium.make("CarRacing-v3", continuous=True, max_episode_steps=int(max_steps))
        self.size, self.crop = tuple(size), int(crop_bottom)
        self._fromarray, self._bilinear = Image.fromarray, Image.Resampling.BILINEAR
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (*self.size, 3), np.uint8)}
        )
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def _image(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        frame = frame[: frame.shape[0] - self.crop] if self.crop else frame
        height, width = self.size
        return {"image": np.array(self._fromarray(frame).resize((width, height), self._bilinear))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        frame, info = self.env.reset(seed=seed)
        return self._image(frame), info

    def step(self, action: Any):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), -1.0, 1.0)
        env_action = np.array([a[0], (a[1] + 1) / 2, (a[2] + 1) / 2])  # gas and brake live in [0, 1]
        frame, reward, terminated, truncated, info = self.env.step(env_action)
        return self._image(frame), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    return CarRacingEnv(**_settings(protocol))
