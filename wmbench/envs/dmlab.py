"""DeepMind Lab adapter (`deepmind_lab` module): the DMLab-30 levels as run for the published DreamerV3 curves.

Settings follow DreamerV3 (danijar/dreamerv3 configs.yaml `env.dmlab` and `embodied/envs/dmlab.py`), written here
from those facts:

- Level `contributed/dmlab30/<task>`; training uses the `_train` variant of the `*_test` levels (the `_test` names
  are the DMLab-30 task names; their hold-out versions are for evaluation only).
- Observation `RGB_INTERLEAVED` rendered at `size` (64x64) -> `image` uint8 (H, W, 3). The five `language_*` levels
  also get `vector` (float32, 32 tokens x 32 dims): the `INSTR` text lower-cased, split into words and
  punctuation runs, each token hashed with CRC32 into 65,536 buckets of a fixed random N(0, 1) embedding table
  (numpy `default_rng(0)`), padded with bucket 0 and cut at 32 tokens.
- Actions: `Discrete` over an action set (`action_set`): "popart" (15 actions of the PopArt / R2D2 papers, DreamerV3's
  default) or "impala" (9 actions of IMPALA); each is a 7-vector of DMLab's action spec (look left/right, look
  down/up, strafe, move, fire, jump, crouch), applied for `action_repeat` frames (`num_steps`), rewards summed.
- Episodes: a level ends itself (most DMLab-30 levels on a time limit); as in DreamerV3 (`episodic=True`) that end
  is reported as terminal when `episodic` is true, else as a truncation. After the end DMLab has no observation, so
  the last image repeats. Each reset draws the level seed from a generator seeded by the env's seed.
- Budget and curves count `frames` (agent steps x 4).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import zlib
from functools import cache
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "action_repeat": int,
    "action_set": str,
    "episodic": bool,
}
LEVELS = (
    "explore_goal_locations_large", "explore_goal_locations_small", "explore_object_locations_large",
    "explore_object_locations_small", "explore_object_rewards_few", "explore_object_rewards_many",
    "explore_obstructed_goals_large", "explore_obstructed_goals_small", "language_answer_quantitative_question",
    "language_execute_random_task", "language_select_described_object", "language_select_located_object",
    "lasertag_one_opponent_large", "lasertag_one_opponent_small", "lasertag_three_opponents_large",
    "lasertag_three_opponents_small", "natlab_fixed_large_map", "natlab_varying_map_randomized",
    "natlab_varying_map_regrowth", "psychlab_arbitrary_visuomotor_mapping", "psychlab_continuous_recognition",
    "psychlab_sequential_comparison", "psychlab_visual_search", "rooms_collect_good_objects_test",
    "rooms_exploit_deferred_effects_test", "rooms_keys_doors_puzzle", "rooms_select_nonmatching_object",
    "rooms_watermaze", "skymaze_irreversible_path_hard", "skymaze_irreversible_path_varied",
)  # fmt: skip
TASKS = frozenset(LEVELS)
INSTALL_HINT = (
    "DeepMind Lab has no wheel on PyPI: build it with Bazel (github.com/google-deepmind/lab, docs/users/build.md: "
    "bazel build -c opt //python/pip_package:build_pip_package, then pip install the wheel it writes), or use a "
    "container image that has `deepmind_lab` importable; the DMLab-30 levels ship with it"
)
DEFAULTS: dict[str, Any] = {"size": (64, 64), "action_repeat": 4, "action_set": "popart", "episodic": True}

# 7-vectors: (look left/right px, look down/up px, strafe left/right, move back/forward, fire, jump, crouch).
ACTION_SETS: dict[str, tuple[tuple[int, ...], ...]] = {
    # IMPALA (Espeholt et al. 2018, Table D.2): 9 actions.
    "impala": (
        (0, 0, 0, 1, 0, 0, 0),  # forward
        (0, 0, 0, -1, 0, 0, 0),  # backward
        (0, 0, -1, 0, 0, 0, 0),  # strafe left
        (0, 0, 1, 0, 0, 0, 0),  # strafe right
        (-20, 0, 0, 0, 0, 0, 0),  # look left
        (20, 0, 0, 0, 0, 0, 0),  # look right
        (-20, 0, 0, 1, 0, 0, 0),  # look left + forward
        (20, 0, 0, 1, 0, 0, 0),  # look right + forward
        (0, 0, 0, 0, 1, 0, 0),  # fire
    ),
    # PopArt (Hessel et al. 2019) / R2D2: 15 actions, DreamerV3's default.
    "popart": (
        (0, 0, 0, 1, 0, 0, 0),  # forward
        (0, 0, 0, -1, 0, 0, 0),  # backward
        (0, 0, -1, 0, 0, 0, 0),  # strafe left
        (0, 0, 1, 0, 0, 0, 0),  # strafe right
        (-10, 0, 0, 0, 0, 0, 0),  # small look left
        (10, 0, 0, 0, 0, 0, 0),  # small look right
        (-60, 0, 0, 0, 0, 0, 0),  # large look left
        (60, 0, 0, 0, 0, 0, 0),  # large look right
        (0, 10, 0, 0, 0, 0, 0),  # look down
        (0, -10, 0, 0, 0, 0, 0),  # look up
        (-10, 0, 0, 1, 0, 0, 0),  # forward + small look left
        (10, 0, 0, 1, 0, 0, 0),  # forward + small look right
        (-60, 0, 0, 1, 0, 0, 0),  # forward + large look left
        (60, 0, 0, 1, 0, 0, 0),  # forward + large look right
        (0, 0, 0, 0, 1, 0, 0),  # fire
    ),
}
INSTR_TOKENS, INSTR_DIMS, INSTR_BUCKETS = 32, 32, 64 * 1024
_TOKEN = re.compile(r"([A-Za-z_]+|[^A-Za-z_ ]+)")


def check_installed() -> None:
    if importlib.util.find_spec("deepmind_lab") is None:
        raise SuiteNotInstalled(
            f"suite 'dmlab' needs the deepmind_lab module, which is not installed. Install: {INSTALL_HINT}"
        )


def check_level(level: str) -> str:
    """The DMLab-30 task name, or an error naming the close matches."""
    if level not in TASKS:
        from wmbench.protocols import ProtocolError

        close = difflib.get_close_matches(level, LEVELS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ProtocolError(f"unknown DMLab-30 level {level!r}.{hint} Levels: {', '.join(LEVELS)}")
    return level


def lab_level(level: str) -> str:
    """The level script a training env loads: `*_test` task names train on their `_train` variants."""
    check_level(level)
    name = level[: -len("_test")] + "_train" if level.endswith("_test") else level
    return f"contributed/dmlab30/{name}"


@cache
def _embeddings() -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 1.0, (INSTR_BUCKETS, INSTR_DIMS)).astype(np.float32)


def embed_instruction(text: str) -> np.ndarray:
    tokens = _TOKEN.findall(text.lower())[:INSTR_TOKENS]
    index = [zlib.crc32(t.encode("utf-8")) % INSTR_BUCKETS for t in tokens]
    index += [0] * (INSTR_TOKENS - len(index))
    return _embeddings()[index].reshape(-1)


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.envs.wrappers import protocol_settings
    from wmbench.protocols import ProtocolError

    cfg, where = protocol_settings(protocol, DEFAULTS)
    if cfg["action_repeat"] < 1:
        raise ProtocolError(f"{where}.action_repeat must be >= 1, got {cfg['action_repeat']}")
    if cfg["action_set"] not in ACTION_SETS:
        raise ProtocolError(f"{where}.action_set {cfg['action_set']!r} is not one of {sorted(ACTION_SETS)}")
    return cfg


class DMLabEnv(gymnasium.Env):
    """One DMLab-30 level through a `deepmind_lab.Lab` (given, so tests can pass a double)."""

    metadata = {"render_modes": []}

    def __init__(self, lab: Any, level: str, seed: int = 0, **settings: Any):
        cfg = {**DEFAULTS, **settings}
        self.lab = lab
        self.level = check_level(level)
        self.repeat = int(cfg["action_repeat"])
        self.episodic = bool(cfg["episodic"])
        self.actions = [np.array(a, np.intc) for a in ACTION_SETS[cfg["action_set"]]]
        self.text = level.startswith("language")
        height, width = cfg["size"]
        spaces = {"image": gymnasium.spaces.Box(0, 255, (height, width, 3), np.uint8)}
        if self.text:
            spaces["vector"] = gymnasium.spaces.Box(-np.inf, np.inf, (INSTR_TOKENS * INSTR_DIMS,), np.float32)
        self.observation_space = gymnasium.spaces.Dict(spaces)
        self.action_space = gymnasium.spaces.Discrete(len(self.actions))
        self._level_seeds = np.random.default_rng(seed)
        self._last: dict[str, np.ndarray] = {}

    def _observe(self) -> dict[str, np.ndarray]:
        raw = self.lab.observations()
        obs = {"image": np.array(raw["RGB_INTERLEAVED"], np.uint8)}
        if self.text:
            obs["vector"] = embed_instruction(str(raw["INSTR"]))
        self._last = obs
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._level_seeds = np.random.default_rng(seed)
        self.lab.reset(seed=int(self._level_seeds.integers(0, 2**31 - 1)))
        return self._observe(), {}

    def step(self, action: Any):
        reward = float(self.lab.step(self.actions[int(action)], num_steps=self.repeat))
        if self.lab.is_running():
            return self._observe(), reward, False, False, {}
        obs = {k: v.copy() for k, v in self._last.items()}  # DMLab has no observation after the end
        return obs, reward, self.episodic, not self.episodic, {}

    def close(self) -> None:
        if self.lab is not None:
            self.lab.close()
            self.lab = None


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    import deepmind_lab

    cfg = _settings(protocol)
    height, width = cfg["size"]
    observations = ["RGB_INTERLEAVED", "INSTR"] if task.startswith("language") else ["RGB_INTERLEAVED"]
    lab = deepmind_lab.Lab(
        lab_level(task),
        observations,
        config={"height": str(height), "width": str(width), "logLevel": "WARN"},
    )
    return DMLabEnv(lab, task, seed=seed, **cfg)
