"""DeepMind Control adapter (dm_control 1.0.50 + mujoco 3.17): protocol `[env]` -> a gymnasium env.

- Task names are `<domain>_<task>` in snake_case (`ball_in_cup_catch` -> ("ball_in_cup", "catch"),
  `cartpole_balance_sparse` -> ("cartpole", "balance_sparse")); the domain is the longest known prefix.
- `obs` "vector": every observation entry flattened and concatenated in sorted-key order (float32);
  "image": `size` RGB pixels rendered from camera `camera` (`quadruped_camera` for quadruped tasks, as the
  official DreamerV3 adapter does: camera 0 of quadruped is a distant fixed view).
- `action_repeat` control steps per agent step, rewards summed.
- `time_limit` in env (control) steps: the episode is truncated there, never terminal. dm_control's own time
  limit is switched off so that the protocol's is the only one; a real termination signalled by a task
  (discount 0) would be terminal, though none of the benchmark tasks has one.
- Actions live in [-1, 1] and are mapped linearly onto the task's bounds (identity for all tasks except the
  quadruped ones, whose bounds reach 1.1 on some actuators); out-of-range actions are clipped first.
- Seeding: the gymnasium reset seed seeds `np_random`, which draws the seed of the task's `RandomState` at every
  reset, so `reset(seed=s)` always reproduces the same initial state.

Rendering needs an OpenGL backend chosen *before* dm_control is imported (`MUJOCO_GL` is read once, at import,
and EGL/OSMesa bind PyOpenGL for the whole process). `configure_gl` honours an explicit `MUJOCO_GL`, otherwise
it tries EGL, then OSMesa, each in a short-lived subprocess, and raises `SuiteNotInstalled` with the apt package
to install when pixels are needed and neither can create a context.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {
    "obs": str,
    "size": tuple[int, ...],
    "camera": int,
    "quadruped_camera": int,
    "action_repeat": int,
    "time_limit": int,
}
TASKS = frozenset(
    "acrobot_swingup ball_in_cup_catch cartpole_balance cartpole_balance_sparse cartpole_swingup "
    "cartpole_swingup_sparse cheetah_run finger_spin finger_turn_easy finger_turn_hard hopper_hop hopper_stand "
    "pendulum_swingup quadruped_run quadruped_walk quadruped_escape reacher_easy reacher_hard walker_run "
    "walker_stand walker_walk humanoid_stand humanoid_walk humanoid_run manipulator_bring_ball fish_swim "
    "fish_upright swimmer_swimmer6 swimmer_swimmer15 point_mass_easy".split()
)
INSTALL_HINT = "pip install 'wmbench[dmc]'   (mujoco==3.17.0 dm-control==1.0.50; pixels: MUJOCO_GL=egl, or apt-get install libosmesa6 and MUJOCO_GL=osmesa)"

DOMAINS = (
    "acrobot", "ball_in_cup", "cartpole", "cheetah", "finger", "fish", "hopper", "humanoid", "manipulator",
    "pendulum", "point_mass", "quadruped", "reacher", "swimmer", "walker",
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "obs": "vector",
    "size": (64, 64),
    "camera": 0,
    "quadruped_camera": 2,
    "action_repeat": 1,
    "time_limit": 1000,
}
OBS_MODES = ("vector", "image")
GL_PACKAGES = {"egl": "libegl1", "osmesa": "libosmesa6"}
_GL_PROBE = "from dm_control import _render; _render.Renderer(8, 8).free()"
_gl_probed: dict[str, str | None] = {}  # backend -> None if it works, else the error


def split_task(task: str) -> tuple[str, str]:
    """`ball_in_cup_catch` -> ("ball_in_cup", "catch"): the longest domain name that prefixes the task."""
    for domain in sorted(DOMAINS, key=len, reverse=True):
        if task.startswith(domain + "_"):
            return domain, task[len(domain) + 1 :]
    raise ValueError(f"DMC task {task!r} does not start with a domain name: {', '.join(DOMAINS)}")


def probe_gl(backend: str) -> str | None:
    """Try to create a dm_control rendering context with `MUJOCO_GL=backend` in a subprocess (~0.3 s, cached).

    Returns None if it works, else the error text. A subprocess because the choice cannot be undone in-process.
    """
    if backend not in _gl_probed:
        env = {**os.environ, "MUJOCO_GL": backend}
        env.pop("PYOPENGL_PLATFORM", None)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, text=True, timeout=60
            )
            lines = proc.stderr.strip().splitlines()
            _gl_probed[backend] = (
                None if proc.returncode == 0 else (lines[-1] if lines else f"exit {proc.returncode}")
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            _gl_probed[backend] = str(e)
    return _gl_probed[backend]


def configure_gl(render: bool) -> str:
    """Choose `MUJOCO_GL` before dm_control is imported; returns the backend in use.

    An explicit `MUJOCO_GL` is honoured as is (a broken one fails at the env's first render, with the fix in the
    message). Unset, the first of EGL, OSMesa that can create a context is chosen (one ~0.3 s probe per
    process), also for vector observations, so that a pixel env made later in the same process can render.
    If none works, vector observations run with rendering disabled and pixel observations raise
    `SuiteNotInstalled` naming the apt package to install.
    """
    requested = os.environ.get("MUJOCO_GL")
    if "dm_control._render" in sys.modules:
        return requested or "auto"  # already fixed for this process
    if requested is not None:
        return requested
    errors = []
    for backend in GL_PACKAGES:
        error = probe_gl(backend)
        if error is None:
            os.environ["MUJOCO_GL"] = backend
            return backend
        errors.append(f"MUJOCO_GL={backend}: {error}")
    if not render:
        os.environ["MUJOCO_GL"] = "disable"
        return "disable"
    fixes = " or ".join(f"`apt-get install {package}` (MUJOCO_GL={b})" for b, package in GL_PACKAGES.items())
    raise SuiteNotInstalled(
        f"DMC pixels need an OpenGL backend and none works ({'; '.join(errors)}). Install one: {fixes}."
    )


def check_installed(render: bool = False) -> None:
    try:
        import mujoco  # noqa: F401
    except ImportError as e:
        raise SuiteNotInstalled(f"suite 'dmc' needs mujoco ({e}). Install: {INSTALL_HINT}") from e
    backend = configure_gl(render)
    try:
        from dm_control import suite  # noqa: F401
    except ImportError as e:
        raise SuiteNotInstalled(
            f"suite 'dmc' cannot import dm_control with MUJOCO_GL={backend} ({e}). Install: {INSTALL_HINT}"
        ) from e


def _settings(protocol: Any) -> dict[str, Any]:
    from wmbench.protocols import ProtocolError

    cfg = {**DEFAULTS, **dict(protocol.env)}
    cfg["size"] = tuple(cfg["size"])
    where = f"protocol {getattr(protocol, 'id', '?')}: env"
    if cfg["obs"] not in OBS_MODES:
        raise ProtocolError(f"{where}.obs {cfg['obs']!r} is not one of {OBS_MODES}")
    if len(cfg["size"]) != 2 or min(cfg["size"]) <= 0:
        raise ProtocolError(
            f"{where}.size must be [height, width] of positive integers, got {list(cfg['size'])}"
        )
    if cfg["action_repeat"] < 1 or cfg["time_limit"] < 1:
        raise ProtocolError(f"{where}: action_repeat and time_limit must be >= 1")
    return cfg


class DMCEnv(gymnasium.Env):
    """One dm_control suite task; observations `{"vector": float32 (n,)}` or `{"image": uint8 (H, W, 3)}`."""

    metadata = {"render_modes": []}

    def __init__(self, task: str, seed: int = 0, **settings: Any):
        cfg = {**DEFAULTS, **settings}
        self.task = task
        self.pixels = cfg["obs"] == "image"
        check_installed(render=self.pixels)
        from dm_control import suite

        domain, task_name = split_task(task)
        self._np_random, _ = gymnasium.utils.seeding.np_random(seed)
        self._dm = suite.load(
            domain,
            task_name,
            task_kwargs={"random": int(self._np_random.integers(2**31)), "time_limit": float("inf")},
        )
        self.repeat = int(cfg["action_repeat"])
        self.time_limit = int(cfg["time_limit"])
        self.size = tuple(cfg["size"])
        self.camera = int(cfg["quadruped_camera"] if domain == "quadruped" else cfg["camera"])

        spec = self._dm.action_spec()
        low, high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self._unit_bounds = bool(np.all(low == -1.0) and np.all(high == 1.0))
        self._act_scale, self._act_offset = (high - low) / 2.0, (high + low) / 2.0
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, spec.shape, np.float32)

        self._keys = sorted(self._dm.observation_spec())
        if self.pixels:
            obs_space = {"image": gymnasium.spaces.Box(0, 255, (*self.size, 3), np.uint8)}
        else:
            dim = sum(int(np.prod(v.shape)) for v in self._dm.observation_spec().values())
            obs_space = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float32)}
        self.observation_space = gymnasium.spaces.Dict(obs_space)
        self._t = 0
        if self.pixels:
            try:  # create the rendering context now, so a broken backend fails here with the fix in the message
                self._dm.physics.render(8, 8, camera_id=self.camera)
            except Exception as e:
                backend = os.environ.get("MUJOCO_GL", "auto")
                raise SuiteNotInstalled(
                    f"DMC pixels: MUJOCO_GL={backend} cannot render ({type(e).__name__}: {e}). Install "
                    f"`apt-get install {GL_PACKAGES.get(backend, 'libegl1')}`, or start the process with another "
                    "backend (MUJOCO_GL=egl or MUJOCO_GL=osmesa; apt-get install libosmesa6)."
                ) from e

    def _obs(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.pixels:
            return {"image": self._dm.physics.render(*self.size, camera_id=self.camera)}
        return {
            "vector": np.concatenate([np.asarray(observation[k], np.float32).ravel() for k in self._keys])
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._dm.task.random.seed(int(self.np_random.integers(2**31)))
        self._t = 0
        return self._obs(self._dm.reset().observation), {}

    def step(self, action: Any):
        action = np.clip(np.asarray(action, np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        if not self._unit_bounds:
            action = action * self._act_scale + self._act_offset
        reward = 0.0
        for _ in range(self.repeat):
            timestep = self._dm.step(action)
            reward += timestep.reward or 0.0
            self._t += 1
            if timestep.last() or self._t >= self.time_limit:
                break
        # dm_control's own time limit is off, so `last` with discount 0 can only be a task's real termination.
        terminated = timestep.last() and timestep.discount == 0.0
        truncated = not terminated and (timestep.last() or self._t >= self.time_limit)
        return self._obs(timestep.observation), reward, terminated, truncated, {}

    def close(self) -> None:
        self._dm.close()


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    cfg = _settings(protocol)
    return DMCEnv(task, seed=seed, **cfg)
