"""Wrappers shared by all suites: the gymnasium -> contract-step adapter and observation helpers."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from wmbench.seeding import derive_seed


class ContractEnv:
    """Turns a gymnasium env with a Dict observation space into contract steps.

    Every step returns a dict: the observation entries (`image` uint8 HWC and/or `vector` float32) plus
    `reward` (float32), `is_first`, `is_last`, `is_terminal`. `is_terminal` is True only for a real terminal
    state; a time-limit truncation ends the episode (`is_last`) without being terminal, so value targets
    bootstrap through it.

    Episode `k` of a run resets with seed `derive_seed(seed, "episode", k)`: a run restored at an episode
    boundary replays the same episodes (exact resume). `episode` is part of the runner's checkpoint.

    `episode_info` holds the adapter's `info` of the step that ended the current episode (empty until it ends):
    per-episode data a score rule needs, e.g. Crafter's unlocked `achievements` (docs/contracts.md).
    """

    def __init__(self, env: gymnasium.Env, seed: int):
        if not isinstance(env.observation_space, gymnasium.spaces.Dict):
            raise TypeError(
                f"suite adapters must return a Dict observation space (image/vector), got {env.observation_space}"
            )
        self.env = env
        self.seed = int(seed)
        self.episode = 0
        self.obs_space: dict[str, gymnasium.Space] = dict(env.observation_space.spaces)
        self.act_space: gymnasium.Space = env.action_space
        self.act_space.seed(derive_seed(self.seed, "action_space"))
        self.episode_info: dict[str, Any] = {}

    def reset(self) -> dict[str, Any]:
        obs, _ = self.env.reset(seed=derive_seed(self.seed, "episode", self.episode))
        self.episode += 1
        self.episode_info = {}
        return self._pack(obs, 0.0, first=True, last=False, terminal=False)

    def step(self, action: Any) -> dict[str, Any]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self.episode_info = dict(info)
        return self._pack(obs, reward, first=False, last=bool(terminated or truncated), terminal=bool(terminated))

    @staticmethod
    def _pack(obs: dict, reward: float, first: bool, last: bool, terminal: bool) -> dict[str, Any]:
        out = dict(obs)
        out["reward"] = np.float32(reward)
        out["is_first"] = first
        out["is_last"] = last
        out["is_terminal"] = terminal
        return out

    def close(self) -> None:
        self.env.close()


def protocol_settings(protocol: Any, defaults: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """An adapter's env settings: its `defaults` under the protocol's `[env]` table, `size` as a (height, width)
    tuple of positive integers; returns them and the `protocol <id>: env` prefix for the adapter's own errors."""
    from wmbench.protocols import ProtocolError

    cfg = {**defaults, **dict(protocol.env)}
    cfg["size"] = tuple(cfg["size"])
    where = f"protocol {getattr(protocol, 'id', '?')}: env"
    if len(cfg["size"]) != 2 or min(cfg["size"]) <= 0:
        raise ProtocolError(f"{where}.size must be [height, width] of positive integers, got {list(cfg['size'])}")
    return cfg, where

