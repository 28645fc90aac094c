"""Memory Maze adapter (`memory-maze` 1.0.3; Pasukonis, Lillicrap & Hafner 2022, "Evaluating Long-Term Memory in 3D
Mazes"): a pip-installable 3D-navigation stand-in for DMLab-30 (its mazes come from labmaze, DMLab's generator).

The task is the paper's standard online-RL setting, the `MemoryMaze-<size>-v0` environments, built through
memory-maze's `dm_env` interface (`memory_maze.tasks.memory_maze_<size>`) with image-only observations:

- a first-person 64x64 RGB image (`size`; memory-maze renders square images) whose border shows the colour of
  the current target object; 6 discrete actions (noop, forward, left, right, forward+left, forward+right);
- +1 reward when the agent touches the target object, after which another object becomes the target;
- control at 4 Hz (`control_freq`, memory-maze's default; no further action repeat) and a fixed episode length
  per maze size (9x9: 1000, 11x11: 2000, 13x13: 3000, 15x15: 4000 agent steps); the episode always ends at that
  time limit, a truncation, never terminal. `time_limit` (agent steps, 0: the size's own) may only shorten it,
  for short test and demo variants; memory_maze@1 leaves it at the size's own.

Seeding: `reset(seed=s)` builds a fresh maze environment with memory-maze seed `s` (its maze generator and object
placement draw from one `RandomState(seed)` created at construction and cannot be reseeded in place), so every
episode is a function of its reset seed, as exact resume requires.

memory-maze 1.0.3 imports the legacy `gym` package in its `__init__` (to register gym ids) and fails without it,
so the suite needs `gym==0.26.2` installed beside gymnasium (separate import names; only the dm_env path is used
here). Its import-time notice about gym being unmaintained is swallowed. Rendering uses MuJoCo through
dm_control; the OpenGL backend is chosen as for DMC pixels (`wmbench.envs.dmc.configure_gl`) before memory-maze
would default `MUJOCO_GL` to egl.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "action_repeat": int,
    "control_freq": int,
    "time_limit": int,
}
# Task name -> (memory_maze.tasks constructor, agent steps per episode at 4 Hz: the README's "Episode steps").
MAZES = {
    "9x9": ("memory_maze_9x9", 1000),
    "11x11": ("memory_maze_11x11", 2000),
    "13x13": ("memory_maze_13x13", 3000),
    "15x15": ("memory_maze_15x15", 4000),
}
TASKS = frozenset(MAZES)
INSTALL_HINT = (
    "pip install 'wmbench[memory_maze]'   (memory-maze==1.0.3 gym==0.26.2 mujoco==3.17.0 dm-control==1.0.50; "
    "rendering: MUJOCO_GL=egl, or apt-get install libosmesa6 and MUJOCO_GL=osmesa)"
)
DEFAULTS: dict[str, Any] = {"size": (64, 64), "action_repeat": 1, "control_freq": 4, "time_limit": 0}
ACTIONS = ("noop", "forward", "left", "right", "forward_left", "forward_right")


def check_installed() -> None:
    missing = [name for name in ("memory_maze", "gym", "dm_control") if importlib.util.find_spec(name) is None]
    if missing:
        raise SuiteNotInstalled(
            f"suite 'memory_maze' needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed. Install: {INSTALL_HINT}"
        )
    from wmbench.envs import dmc

    dmc.configure_gl(render=True)
    _tasks_module()


def _tasks_module() -> Any:
    """`memory_maze.tasks`, imported with gym's import-time notice swallowed."""
    from wmbench.envs import import_legacy_gym_quietly

    try:
        import_legacy_gym_quietly()
        from memory_maze import tasks
    except ImportError as e:
        raise SuiteNotInstalled(f"suite 'memory_maze' cannot import memory_maze ({e}). Install: {INSTALL_HINT}") from e
    return tasks


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.envs.wrappers import protocol_settings
    from wmbench.protocols import ProtocolError

    cfg, where = protocol_settings(protocol, DEFAULTS)
    if cfg["size"][0] != cfg["size"][1]:
        raise ProtocolError(f"{where}.size must be square (memory-maze renders square images), got {list(cfg['size'])}")
    if cfg["action_repeat"] != 1:
        raise ProtocolError(
            f"{where}.action_repeat must be 1: memory-maze already acts at control_freq (4 Hz, about 5 physics "
            f"control steps), got {cfg['action_repeat']}"
        )
    if cfg["control_freq"] < 1:
        raise ProtocolError(f"{where}.control_freq must be >= 1 Hz, got {cfg['control_freq']}")
    if cfg["time_limit"] < 0:
        raise ProtocolError(f"{where}.time_limit must be >= 0 agent steps (0: each maze size's own), got {cfg['time_limit']}")
    return cfg


class MemoryMazeEnv(gymnasium.Env):
    """One maze size; observations `{"image": uint8 (H, W, 3)}`, actions `Discrete(6)`."""

    metadata = {"render_modes": []}

    def __init__(
        self, task: str, seed: int = 0, size: tuple[int, int] = (64, 64), control_freq: int = 4, time_limit: int = 0
    ):
        if task not in MAZES:
            import difflib

            close = difflib.get_close_matches(task, list(MAZES), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown Memory Maze size {task!r}.{hint} Sizes: {', '.join(MAZES)}")
        check_installed()
        self.task = task
        self._constructor = getattr(_tasks_module(), MAZES[task][0])
        self._kwargs = {"camera_resolution": int(size[0]), "control_freq": float(control_freq),
                        "image_only_obs": True, "discrete_actions": True}  # fmt: skip
        own = MAZES[task][1] * int(control_freq) // 4
        if time_limit > own:
            raise ValueError(
                f"time_limit {time_limit} is longer than Memory Maze {task}'s own episode ({own} agent steps at "
                f"{control_freq} Hz); it can only shorten episodes (0: the size's own)"
            )
        self.episode_steps = int(time_limit) or own
        self._dm = self._build(int(seed))
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (int(size[0]), int(size[1]), 3), np.uint8)}
        )
        self.action_space = gymnasium.spaces.Discrete(len(ACTIONS))
        self._t = 0

    def _build(self, seed: int) -> Any:
        return self._constructor(seed=seed % (2**31 - 1), **self._kwargs)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._dm.close()
            self._dm = self._build(int(seed))
        self._t = 0
        return {"image": np.asarray(self._dm.reset().observation, np.uint8)}, {}

    def step(self, action: Any):
        timestep = self._dm.step(int(action))
        self._t += 1
        # memory-maze episodes end only at their time limit (discount stays 1): a truncation, never terminal.
        terminated = timestep.last() and timestep.discount == 0.0
        truncated = not terminated and (timestep.last() or self._t >= self.episode_steps)
        return {"image": np.asarray(timestep.observation, np.uint8)}, float(timestep.reward or 0.0), terminated, truncated, {}

    def close(self) -> None:
        self._dm.close()


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    from wmbench.protocols import ProtocolError

    cfg = _settings(protocol)
    own = MAZES[task][1] * cfg["control_freq"] // 4
    if cfg["time_limit"] > own:
        raise ProtocolError(
            f"protocol {getattr(protocol, 'id', '?')}: env.time_limit {cfg['time_limit']} is longer than Memory Maze "
            f"{task}'s own episode ({own} agent steps); it can only shorten episodes (0: each size's own)"
        )
    return MemoryMazeEnv(
        task, seed=seed, size=cfg["size"], control_freq=cfg["control_freq"], time_limit=cfg["time_limit"]
    )
