"""Crafter adapter (`crafter` 1.8): the Crafter benchmark (Hafner 2021, "Benchmarking the Spectrum of Agent
Capabilities") as a gymnasium env; a pip-installable stand-in for long-horizon crafting like Minecraft Diamond.

Everything is Crafter's own benchmark setting, passed explicitly from the protocol: a 64x64 world (`area`), a 9x9
local view (`view`, of which the bottom rows show the inventory), rendered at `size` (64x64 RGB), 17 discrete
actions, episodes of at most `length` (10,000) steps. Reward (Crafter's): +1 the first time in an episode each of
its 22 achievements is unlocked, plus the change of health / 10. Death is terminal (Crafter's `discount` 0); the
length cap is a truncation.

Seeding: `reset(seed=s)` builds the world of Crafter seed `s` (its world generator is seeded from the env seed and
its episode counter, so a fresh `crafter.Env(seed=s)` per seeded reset makes every episode a function of `s`).

Score: `step` reports the achievements unlocked in the episode in `info["achievements"]` at its end; the runner
records them for protocols scored by `success_geomean` (crafter@2: the Crafter paper's geometric mean of the 22
success rates, `wmbench.results.success_geomean`). crafter@1 scores the mean return. A protocol's
`score.achievements` must be Crafter's own list (`crafter.constants.achievements`), checked when the env is made.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "area": tuple[int, ...],
    "view": tuple[int, ...],
    "length": int,
    "action_repeat": int,
}
TASKS = frozenset({"reward"})
INSTALL_HINT = "pip install 'wmbench[crafter]'   (crafter==1.8.3; numba makes world generation ~10x faster)"
DEFAULTS: dict[str, Any] = {"size": (64, 64), "area": (64, 64), "view": (9, 9), "length": 10000, "action_repeat": 1}


def check_installed() -> None:
    if importlib.util.find_spec("crafter") is None:
        raise SuiteNotInstalled(f"suite 'crafter' needs the crafter package, which is not installed. Install: {INSTALL_HINT}")


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.protocols import ProtocolError

    cfg = {**DEFAULTS, **dict(protocol.env)}
    where = f"protocol {getattr(protocol, 'id', '?')}: env"
    for key in ("size", "area", "view"):
        cfg[key] = tuple(cfg[key])
        if len(cfg[key]) != 2 or min(cfg[key]) <= 0:
            raise ProtocolError(f"{where}.{key} must be two positive integers, got {list(cfg[key])}")
    if cfg["length"] < 1:
        raise ProtocolError(f"{where}.length must be >= 1, got {cfg['length']}")
    if cfg["action_repeat"] != 1:
        raise ProtocolError(f"{where}.action_repeat must be 1 (Crafter has no action repeat), got {cfg['action_repeat']}")
    listed = tuple(getattr(getattr(protocol, "score", None), "achievements", ()))
    if listed:
        from wmbench.envs import import_legacy_gym_quietly

        import_legacy_gym_quietly()
        import crafter.constants

        own = tuple(crafter.constants.achievements)
        if sorted(listed) != sorted(own):
            missing, extra = sorted(set(own) - set(listed)), sorted(set(listed) - set(own))
            raise ProtocolError(
                f"protocol {getattr(protocol, 'id', '?')}: score.achievements differ from Crafter's {len(own)} "
                f"achievements (missing {missing}, not Crafter's {extra}); list exactly: {', '.join(sorted(own))}"
            )
    return cfg


class CrafterEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, seed: int = 0, **settings: Any):
        from wmbench.envs import import_legacy_gym_quietly

        import_legacy_gym_quietly()  # crafter subclasses gym.Env when the legacy gym is installed (memory_maze needs it)
        import crafter

        cfg = {**DEFAULTS, **settings}
        self._crafter = crafter
        self._kwargs = {
            "area": tuple(cfg["area"]),
            "view": tuple(cfg["view"]),
            "size": tuple(cfg["size"]),
            "length": int(cfg["length"]),
            "reward": True,
        }
        self.raw = crafter.Env(seed=int(seed), **self._kwargs)
        height, width = self._kwargs["size"]
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (height, width, 3), np.uint8)}
        )
        self.action_space = gymnasium.spaces.Discrete(len(self.raw.action_names))
        self.action_names = tuple(self.raw.action_names)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.raw = self._crafter.Env(seed=int(seed) % (2**31 - 1), **self._kwargs)
        return {"image": self.raw.reset()}, {}

    def step(self, action: Any):
        image, reward, done, info = self.raw.step(int(action))
        terminated = bool(done) and info["discount"] == 0.0
        truncated = bool(done) and not terminated
        out = {}
        if done:
            out["achievements"] = tuple(sorted(k for k, n in info["achievements"].items() if n > 0))
        return {"image": image}, float(reward), terminated, truncated, out


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    return CrafterEnv(seed=seed, **_settings(protocol))
