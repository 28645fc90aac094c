"""Meta-World adapter (metaworld 3.1.1): single-task manipulation from pixels, as Masked World Models (Seo et al.
2022, CoRL, Sec. 4 and App. A; official younggyoseo/MWM `mwm/common/envs.py` MetaWorld, configs.yaml `metaworld`)
runs it, written here from those facts:

- Task `<name>` in snake_case = Meta-World's `<name-with-dashes>` in its goal-observable form, with the goal
  re-drawn at every reset (`_freeze_rand_vec = False`, as the MWM code sets it), seeded from the run seed.
- Observation (`Dict`): `image` only, `size` RGB pixels from camera `camera` ("corner2"); MWM moves corner2 to
  `CORNER2_POSITION` (0.75, 0.075, 0.7) at every reset, and so does this adapter. The state vector is not given to the agent.
- `action_repeat` simulator steps per agent step (2), rewards summed; actions are Meta-World's 4-D Box [-1, 1].
- `time_limit` env steps (500, Meta-World's `max_path_length`; MWM's 250 agent steps at repeat 2), then truncation,
  never terminal (MWM ends episodes only by the time limit).
- Success: an episode succeeded when `info["success"]` was true at any simulator step of it (MWM's `per_episode`:
  sum(success) >= 1). The adapter reports `info["achievements"] = ["success"]` (or []) at the episode's end, which
  the runner records for protocols scored by `success_rate` (metaworld@1).

Install: metaworld 3.1.1 (the release on PyPI) pins mujoco==3.3.0 exactly, while wmbench's dmc, control and
memory_maze extras pin mujoco==3.17.0 (dm-control 1.0.50 needs it). pip refuses both in one environment
(ResolutionImpossible), and metaworld 3.1.1 placed beside mujoco 3.17.0 fails while building any env
(`reset_mocap_welds`: mujoco 3.17's `eq_data` rows have 11 values, metaworld writes 12). So Meta-World runs in its
own virtual environment without those extras (`INSTALL_HINT`). `MetaWorldPixels` wraps any object with Meta-World's
env API, so the adapter is tested without the simulator (`tests/metaworld_double.py`).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "size": tuple[int, ...],
    "camera": str,
    "action_repeat": int,
    "time_limit": int,
}
# the 50 Meta-World tasks of MWM's published scores (scores/score.json), names as there without `metaworld_`
TASKS = frozenset(
    "assembly basketball bin_picking box_close button_press button_press_topdown button_press_topdown_wall "
    "button_press_wall coffee_button coffee_pull coffee_push dial_turn disassemble door_close door_lock door_open "
    "door_unlock drawer_close drawer_open faucet_close faucet_open hammer hand_insert handle_press "
    "handle_press_side handle_pull handle_pull_side lever_pull peg_insert_side peg_unplug_side pick_out_of_hole "
    "pick_place pick_place_wall plate_slide plate_slide_back plate_slide_back_side plate_slide_side push push_back "
    "push_wall reach reach_wall shelf_place soccer stick_pull stick_push sweep sweep_into window_close "
    "window_open".split()
)
METAWORLD_VERSION = "3.1.1"
INSTALL_HINT = (
    "metaworld 3.1.1 pins mujoco==3.3.0, which cannot share an environment with wmbench's DMC pins "
    "(mujoco==3.17.0 for dm-control 1.0.50); make a separate virtual environment without the dmc/control/"
    "memory_maze extras: python -m venv .venv-metaworld && .venv-metaworld/bin/pip install -e '.[metaworld]' "
    "(installs metaworld==3.1.1 with mujoco 3.3.0), then run .venv-metaworld/bin/wmbench with MUJOCO_GL=egl "
    "(or apt-get install libosmesa6 and MUJOCO_GL=osmesa)"
)
CORNER2_POSITION = (0.75, 0.075, 0.7)  # MWM envs.py MetaWorld.reset
DEFAULTS: dict[str, Any] = {
    "size": (64, 64),
    "camera": "corner2",
    "action_repeat": 2,
    "time_limit": 500,
}


def check_installed() -> None:
    if importlib.util.find_spec("metaworld") is None:
        raise SuiteNotInstalled(
            f"suite 'metaworld' needs the metaworld package, which is not installed. {INSTALL_HINT}"
        )
    from importlib.metadata import version

    import mujoco

    need = _required_mujoco()
    if need is not None and mujoco.__version__ != need:
        raise SuiteNotInstalled(
            f"metaworld {version('metaworld')} needs mujoco=={need}, but mujoco {mujoco.__version__} is installed "
            f"(it fails while building any env). {INSTALL_HINT}"
        )


def _required_mujoco() -> str | None:
    """The exact mujoco version the installed metaworld pins (3.3.0 for 3.1.1), or None when it pins none."""
    from importlib.metadata import requires

    for req in requires("metaworld") or []:
        name, _, rest = req.partition("==")
        if name.strip() == "mujoco" and rest and ";" not in rest:
            return rest.strip()
    return None


def meta_world_name(task: str) -> str:
    """snake_case task -> Meta-World's env id (v3, the environments of metaworld 3.x)."""
    return f"{task.replace('_', '-')}-v3"


class MetaWorldPixels(gymnasium.Env):
    """Meta-World task -> the env contract: image observations, action repeat, truncation, success as an event.

    `env` has Meta-World's API: `reset() -> (state, info)`, `step(a) -> (state, reward, terminated, truncated,
    info)` with `info["success"]`, `render() -> uint8 HxWx3`, `action_space` (4-D Box in [-1, 1]), `model.cam_pos`."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        env: Any,
        size=(64, 64),
        camera_index: int | None = None,
        camera_position=None,
        action_repeat: int = 2,
        time_limit: int = 500,
        seed: int = 0,
    ):
        self._env = env
        self.size = tuple(size)
        self.camera_index, self.camera_position = camera_index, camera_position
        self.action_repeat, self.time_limit = int(action_repeat), int(time_limit)
        low, high = np.asarray(env.action_space.low), np.asarray(env.action_space.high)
        if not (np.all(low == -1) and np.all(high == 1)):
            raise ValueError(f"Meta-World actions should lie in [-1, 1], got [{low}, {high}]")
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, low.shape, np.float32)
        self.observation_space = gymnasium.spaces.Dict(
            {"image": gymnasium.spaces.Box(0, 255, (*self.size, 3), np.uint8)}
        )
        self._steps = 0
        self._success = False
        self._seed = seed

    def _image(self) -> dict[str, np.ndarray]:
        image = np.asarray(self._env.render(), dtype=np.uint8)
        if image.shape != (*self.size, 3):
            raise RuntimeError(f"Meta-World rendered {image.shape}, expected {(*self.size, 3)}")
        return {"image": np.ascontiguousarray(image)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None and hasattr(self._env, "seed"):
            self._env.seed(int(seed))
        if self.camera_index is not None and self.camera_position is not None:
            self._env.model.cam_pos[self.camera_index][:] = self.camera_position  # MWM's corner2 placement
        self._env.reset()
        self._steps, self._success = 0, False
        return self._image(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        reward = 0.0
        for _ in range(self.action_repeat):
            _, r, _, _, info = self._env.step(action)
            reward += float(r or 0.0)
            self._success = self._success or bool(info.get("success", False))
            self._steps += 1
            if self._steps >= self.time_limit:
                break
        truncated = self._steps >= self.time_limit
        info = {"success": self._success}
        if truncated:
            info["achievements"] = ["success"] if self._success else []
        return self._image(), np.float32(reward), False, truncated, info

    def close(self):
        if hasattr(self._env, "close"):
            self._env.close()


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.protocols import ProtocolError

    cfg = {**DEFAULTS, **dict(protocol.env)}
    where = f"protocol {getattr(protocol, 'id', '?')}: env"
    cfg["size"] = tuple(cfg["size"])
    if len(cfg["size"]) != 2 or min(cfg["size"]) <= 0:
        raise ProtocolError(f"{where}.size must be two positive integers, got {list(cfg['size'])}")
    for key in ("action_repeat", "time_limit"):
        if cfg[key] < 1:
            raise ProtocolError(f"{where}.{key} must be >= 1, got {cfg[key]}")
    return cfg


def _metaworld_env(task: str, seed: int, size: tuple[int, int], camera: str) -> tuple[Any, int]:
    """The goal-observable Meta-World env rendering `size` pixels from `camera`, and that camera's index."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco
    from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{meta_world_name(task)}-goal-observable"](
        seed=seed, render_mode="rgb_array"
    )
    env._freeze_rand_vec = False  # a new goal at every reset (MWM)
    height, width = size
    env.mujoco_renderer = MujocoRenderer(env.model, env.data, width=width, height=height, camera_name=camera)
    return env, mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    cfg = _settings(protocol)
    check_installed()
    env, camera = _metaworld_env(task, seed, cfg["size"], cfg["camera"])
    env.max_path_length = max(env.max_path_length, cfg["time_limit"])
    position = CORNER2_POSITION if cfg["camera"] == "corner2" else None
    return MetaWorldPixels(env, cfg["size"], camera, position, cfg["action_repeat"], cfg["time_limit"], seed)
