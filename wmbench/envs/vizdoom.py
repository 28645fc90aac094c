"""VizDoom adapter (`vizdoom` 1.3.2, its gymnasium env `VizdoomTakeCover-v1`): the World Models Doom task
(Ha & Schmidhuber 2018, VizDoom experiment), surviving fireballs in the take_cover scenario by moving left or right.

Observations: the 320x240 RGB screen resized to `size` (64x64, bilinear), as the paper's 64x64 frames. Actions:
Discrete(3) in the paper's order, 0 = move left, 1 = stay, 2 = move right (the gymnasium env's own indices are
found from its button map, so its order does not leak in). One frame per step (`frame_skip` 1). Reward (the
scenario's): +1 for every step alive, so a return counts the steps survived; death is terminal. Episodes are cut
after `max_steps` (2,100 steps, about 60 s at 35 fps, the paper's limit) as a truncation.
Seeding: `reset(seed=s)` seeds the Doom engine (the contract env seeds every episode).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {"size": tuple[int, ...], "frame_skip": int, "max_steps": int}
TASKS = frozenset({"take_cover"})
INSTALL_HINT = "pip install 'wmbench[worldmodels]'   (vizdoom==1.3.2 ships binary wheels for Linux x86-64)"
DEFAULTS: dict[str, Any] = {"size": (64, 64), "frame_skip": 1, "max_steps": 2100}
BUTTONS = ("MOVE_LEFT", None, "MOVE_RIGHT")  # our actions 0, 1, 2 (None: no button pressed)


def check_installed() -> None:
    if importlib.util.find_spec("vizdoom") is None:
        raise SuiteNotInstalled(f"suite 'vizdoom' needs the vizdoom package, which is not installed. Install: {INSTALL_HINT}")


def _settings(protocol: Any) -> dict[str, Any]:
    # imported here: the wrappers import torch, and `wmbench list` must not
    from wmbench.envs.wrappers import protocol_settings
    from wmbench.protocols import ProtocolError

    cfg, where = protocol_settings(protocol, DEFAULTS)
    for key in ("frame_skip", "max_steps"):
        if cfg[key] < 1:
            raise ProtocolError(f"{where}.{key} must be >= 1, got {cfg[key]}")
    return cfg


class TakeCoverEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, size: tuple[int, int] = (64, 64), frame_skip: int = 1, max_steps: int = 2100, **_: Any):
        from PIL import Image
        from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the Vizdoom* envs)

        self.env = gymnasium.make("VizdoomTakeCover-v1", frame_skip=int(frame_skip))
        self.size, self.max_steps = tuple(size), int(max_steps)
        self._fromarray, self._bilinear = Image.fromarray, Image.Resampling.BILINEAR
        raw = self.env.unwrapped
        names = [str(b).split(".")[-1].split(":")[0] for b in raw.game.get_available_buttons()]
        pressed = [tuple(int(x) for x in m) for m in raw.button_map]
        self._actions = []
        for button in BUTTONS:
            want = tuple(int(n == button) for n in names)
            if want not in pressed:
                raise RuntimeError(f"VizdoomTakeCover-v1 has no action pressing {button or 'nothing'}: {pressed}")
            self._actions.append(pressed.index(want))
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (*self.size, 3), np.uint8)}
        )
        self.action_space = gymnasium.spaces.Discrete(len(BUTTONS))
        self._steps = 0

    def _image(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        height, width = self.size
        return {"image": np.array(self._fromarray(obs["screen"]).resize((width, height), self._bilinear))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self.env.reset(seed=None if seed is None else int(seed) % (2**31 - 1))
        self._steps = 0
        return self._image(obs), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(self._actions[int(action)])
        self._steps += 1
        truncated = bool(truncated) or (not terminated and self._steps >= self.max_steps)
        if not isinstance(obs, dict) or "screen" not in obs:  # no screen after the last tic
            obs = {"screen": np.zeros(self.env.observation_space["screen"].shape, np.uint8)}
        return self._image(obs), float(reward), bool(terminated), truncated, info

    def close(self) -> None:
        self.env.close()


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    return TakeCoverEnv(**_settings(protocol))
