"""The `control` suite: the classic model-based RL control tasks (PILCO, PETS, Nagabandi et al. MB-MF).

Tasks
-----
`cartpole_swingup`
    The PILCO cart-pole (Deisenroth & Rasmussen, ICML 2011, Sec. 5; Deisenroth's thesis, App. C.2): a cart of
    0.5 kg on a track, a uniform pole of 0.5 kg and 0.6 m, cart friction 0.1 N/(m/s), g = 9.82 m/s^2, a horizontal
    force in [-10, 10] N held for dt = 0.1 s (zero-order hold), integrated here with RK4 (10 substeps, numpy, no
    simulator). We follow PILCO's physics, *not* PETS's MuJoCo cart-pole (PETS models its own XML; its pole is also
    0.6 m, but its mass/friction/timestep come from the XML). The start state is hanging down with small Gaussian
    noise, N(0, 0.1^2 I) as PILCO's `S0 = diag([0.1 0.1 0.1 0.1].^2)`.

    Observation `vector` = the raw state `[x, x_dot, theta, theta_dot]` (float32): x in m, theta in rad,
    *unwrapped*, theta = 0 hanging down, theta = +-pi upright. Feature preprocessing (PETS's sin/cos of theta,
    PILCO's augmentation) is the method's job, so every method sees the same data.

    Reward (on arriving at the next state) = 1 - PILCO's saturating cost = exp(-d^2 / (2 sigma_c^2)) with
    sigma_c = 0.25 m and d the distance of the pole tip to the upright target (x, y) = (0, l). It lies in [0, 1];
    no action cost, so returns are comparable across methods (PETS adds 0.01 a^2 to its cost; we do not).
    Episodes last 200 steps (20 s), PETS's cart-pole task horizon; time limits are truncations, never terminal.

`half_cheetah`, `reacher`, `pusher`
    Gymnasium's MuJoCo `HalfCheetah-v5` (1000 steps), `Reacher-v5` (50 steps), `Pusher-v5` (100 steps) with their
    default rewards, observations wrapped as `vector` and actions rescaled to [-1, 1]. HalfCheetah keeps the root
    x position in the observation (`exclude_current_positions_from_observation=False`) so that the reward is a
    function of (state, action, next_state) - PETS assumes a known reward. These are *not* PETS's own
    reacher/pusher (7-DoF PR2 arm, 150 steps): scores are not comparable with PETS's figures for those.

`CARTPOLE` (a `CartPoleParams`) holds the analytic dynamics and cost constants; `cartpole_derivatives`,
`cartpole_step` and `cartpole_reward` are the one implementation of the physics and reward that PILCO (given cost)
and PETS (given reward) reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from wmbench.envs import SuiteNotInstalled

ENV_SCHEMA = {"action_repeat": int, "time_limit": int}
TASKS = frozenset({"cartpole_swingup", "half_cheetah", "reacher", "pusher"})
INSTALL_HINT = (
    "pip install 'wmbench[control]'   (mujoco==3.17.0, gymnasium[mujoco]); cartpole_swingup needs nothing"
)

# Episode length (agent steps) of each task when the protocol does not set `time_limit`.
TIME_LIMITS = {"cartpole_swingup": 200, "half_cheetah": 1000, "reacher": 50, "pusher": 100}
GYM_IDS = {"half_cheetah": "HalfCheetah-v5", "reacher": "Reacher-v5", "pusher": "Pusher-v5"}


def check_installed() -> None:
    """The suite's cart-pole needs only numpy; the MuJoCo tasks are checked when built (`check_mujoco`)."""
    return None


def check_mujoco() -> None:
    """Raise `SuiteNotInstalled` (with the install command) when the MuJoCo tasks cannot be built."""
    try:
        import mujoco  # noqa: F401
        from gymnasium.envs.mujoco import MujocoEnv  # noqa: F401
    except ImportError as e:
        raise SuiteNotInstalled(
            f"suite 'control' needs MuJoCo for half_cheetah/reacher/pusher ({e}). Install: {INSTALL_HINT}"
        ) from e


@dataclass(frozen=True)
class CartPoleParams:
    """PILCO cart-pole constants (Deisenroth & Rasmussen 2011, Sec. 5; thesis App. C.2)."""

    cart_mass: float = 0.5  # M [kg]
    pole_mass: float = 0.5  # m [kg], uniform rod
    pole_length: float = 0.6  # l [m], full length (centre of mass at l/2)
    friction: float = 0.1  # b [N/(m/s)], cart-track friction
    gravity: float = 9.82  # g [m/s^2], PILCO's value
    dt: float = 0.1  # control period [s] (10 Hz), zero-order hold
    substeps: int = 10  # RK4 substeps per control period
    max_force: float = 10.0  # |u| <= 10 N; the env's action in [-1, 1] is scaled by this
    cost_width: float = 0.25  # sigma_c [m] of the saturating cost 1 - exp(-d^2 / (2 sigma_c^2))
    init_std: float = 0.1  # start state ~ N(0, init_std^2 I): hanging down, at rest
    target: tuple[float, float] = (0.0, 0.6)  # upright pole tip (x, y): cart at 0, tip l above the pivot


CARTPOLE = CartPoleParams()


def cartpole_derivatives(state: np.ndarray, force: float, p: CartPoleParams = CARTPOLE) -> np.ndarray:
    """d/dt [x, x_dot, theta, theta_dot] for a uniform pole on a cart (Lagrangian; theta = 0 hanging down).

    From L = 1/2 (M+m) x'^2 + m (l/2) x' theta' cos(theta) + 1/2 (m l^2/3) theta'^2 + m g (l/2) cos(theta):
        x''     = (4 u - 4 b x' + 3 m g sin cos + 2 m l theta'^2 sin) / (4 (M+m) - 3 m cos^2)
        theta'' = -3/(2 l) (cos x'' + g sin)
    (the same equations as PILCO's `dynamics_cp.m`).
    """
    x_dot, theta, theta_dot = state[..., 1], state[..., 2], state[..., 3]
    sin, cos = np.sin(theta), np.cos(theta)
    m, total, length, g = p.pole_mass, p.cart_mass + p.pole_mass, p.pole_length, p.gravity
    x_acc = (
        4 * force - 4 * p.friction * x_dot + 3 * m * g * sin * cos + 2 * m * length * theta_dot**2 * sin
    ) / (4 * total - 3 * m * cos**2)
    theta_acc = -1.5 / length * (cos * x_acc + g * sin)
    return np.stack([x_dot, x_acc, theta_dot, theta_acc], axis=-1)


def cartpole_step(state: np.ndarray, force: float, p: CartPoleParams = CARTPOLE) -> np.ndarray:
    """Advance the state by one control period dt with the force held constant (RK4, `p.substeps` substeps)."""
    state = np.asarray(state, dtype=np.float64)
    h = p.dt / p.substeps
    for _ in range(p.substeps):
        k1 = cartpole_derivatives(state, force, p)
        k2 = cartpole_derivatives(state + 0.5 * h * k1, force, p)
        k3 = cartpole_derivatives(state + 0.5 * h * k2, force, p)
        k4 = cartpole_derivatives(state + h * k3, force, p)
        state = state + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return state


def cartpole_tip(state: Any, p: CartPoleParams = CARTPOLE) -> tuple[Any, Any]:
    """Pole tip (x, y) relative to the track, for numpy arrays or torch tensors of states [..., 4]."""
    lib = _array_lib(state)
    x, theta = state[..., 0], state[..., 2]
    return x + p.pole_length * lib.sin(theta), -p.pole_length * lib.cos(theta)


def cartpole_reward(next_state: Any, p: CartPoleParams = CARTPOLE) -> Any:
    """1 - PILCO's saturating cost: exp(-d^2 / (2 sigma_c^2)), d = distance of the tip to the upright target.

    Works on numpy arrays and torch tensors of raw states [..., 4] (PETS evaluates it on predicted states).
    """
    lib = _array_lib(next_state)
    tip_x, tip_y = cartpole_tip(next_state, p)
    d2 = (tip_x - p.target[0]) ** 2 + (tip_y - p.target[1]) ** 2
    return lib.exp(-d2 / (2 * p.cost_width**2))


def _norm(v: Any) -> Any:
    return (v**2).sum(-1) ** 0.5


def task_reward(task: str, state: Any, action: Any, next_state: Any) -> Any:
    """The env's reward as a function of (state, action in [-1, 1], next_state) [..., dim], numpy or torch.

    PETS assumes the reward is known (Chua et al. 2018, Sec. 6); this is that knowledge, checked against the envs
    in tests/test_control_env.py. Observation layouts: HalfCheetah-v5 with x position = qpos(9) + qvel(9);
    Reacher-v5 = cos q(2), sin q(2), target(2), qvel(2), fingertip - target(2); Pusher-v5 = qpos(7), qvel(7),
    tips_arm(3), object(3), goal(3).
    """
    if task == "cartpole_swingup":
        return cartpole_reward(next_state)
    if task == "half_cheetah":
        # forward_reward_weight 1 x (x' - x) / dt (dt = 5 x 0.01 s) - ctrl_cost_weight 0.1 x |a|^2
        return (next_state[..., 0] - state[..., 0]) / 0.05 - 0.1 * (action**2).sum(-1)
    if task == "reacher":
        # -|fingertip - target| - 1.0 x |a|^2 (Reacher-v5 defaults; action bounds are already [-1, 1])
        return -_norm(next_state[..., 8:10]) - (action**2).sum(-1)
    if task == "pusher":
        # -0.5 |object - tip| - |object - goal| - 0.1 |a_env|^2 with a_env = 2 a (bounds [-2, 2])
        tip, obj, goal = next_state[..., 14:17], next_state[..., 17:20], next_state[..., 20:23]
        return -0.5 * _norm(obj - tip) - _norm(obj - goal) - 0.1 * ((2 * action) ** 2).sum(-1)
    raise KeyError(f"no known reward for task {task!r}; tasks: {sorted(TASKS)}")


def cartpole_energy(state: np.ndarray, p: CartPoleParams = CARTPOLE) -> np.ndarray:
    """Total mechanical energy (J) with zero potential at the pivot height: conserved when b = 0 and u = 0."""
    x_dot, theta, theta_dot = state[..., 1], state[..., 2], state[..., 3]
    m, total, length = p.pole_mass, p.cart_mass + p.pole_mass, p.pole_length
    kinetic = (
        0.5 * total * x_dot**2
        + 0.5 * m * length * x_dot * theta_dot * np.cos(theta)
        + 0.5 * (m * length**2 / 3) * theta_dot**2
    )
    potential = -m * p.gravity * (length / 2) * np.cos(theta)
    return kinetic + potential


def _array_lib(value: Any) -> Any:
    if type(value).__module__.startswith("torch"):
        import torch

        return torch
    return np


class CartPoleSwingUp(gymnasium.Env):
    """PILCO cart-pole swing-up: see the module docstring for the state, reward and constants."""

    metadata = {"render_modes": []}

    def __init__(self, params: CartPoleParams = CARTPOLE, time_limit: int = 200, action_repeat: int = 1):
        self.params = params
        self.time_limit = int(time_limit)
        self.action_repeat = int(action_repeat)
        high = np.full(4, np.inf, np.float32)
        self.observation_space = gymnasium.spaces.Dict(
            {"vector": gymnasium.spaces.Box(-high, high, (4,), np.float32)}
        )
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.state = np.zeros(4)
        self.t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"vector": self.state.astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = self.np_random.normal(0.0, self.params.init_std, size=4)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        u = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        force = u * self.params.max_force
        reward = 0.0
        for _ in range(self.action_repeat):
            self.state = cartpole_step(self.state, force, self.params)
            reward += float(cartpole_reward(self.state, self.params))
            self.t += 1
        if not np.all(np.isfinite(self.state)):
            raise FloatingPointError(f"cart-pole state became non-finite: {self.state}")
        truncated = self.t >= self.time_limit * self.action_repeat
        return self._obs(), reward, False, truncated, {}


class MujocoTask(gymnasium.Wrapper):
    """A gymnasium MuJoCo env with a Dict `vector` observation and actions rescaled from [-1, 1] to its bounds."""

    def __init__(self, env: gymnasium.Env, action_repeat: int = 1):
        super().__init__(env)
        inner = env.observation_space
        self.observation_space = gymnasium.spaces.Dict(
            {"vector": gymnasium.spaces.Box(-np.inf, np.inf, inner.shape, np.float32)}
        )
        self._low = env.action_space.low.astype(np.float64)
        self._high = env.action_space.high.astype(np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self.action_repeat = int(action_repeat)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return {"vector": np.asarray(obs, np.float32)}, info

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(self._low.shape), -1.0, 1.0)
        scaled = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        reward = 0.0
        for _ in range(self.action_repeat):
            obs, r, terminated, truncated, info = self.env.step(scaled)
            reward += float(r)
            if terminated or truncated:
                break
        return {"vector": np.asarray(obs, np.float32)}, reward, terminated, truncated, info


def make(protocol: Any, task: str, seed: int) -> gymnasium.Env:
    settings = protocol.env
    repeat = int(settings.get("action_repeat", 1))
    time_limit = int(settings.get("time_limit", TIME_LIMITS[task]))
    if task == "cartpole_swingup":
        return CartPoleSwingUp(CARTPOLE, time_limit=time_limit, action_repeat=repeat)
    check_mujoco()
    kwargs = {"exclude_current_positions_from_observation": False} if task == "half_cheetah" else {}
    # Gymnasium's TimeLimit counts inner env steps, hence time_limit x action_repeat.
    env = gymnasium.make(GYM_IDS[task], max_episode_steps=time_limit * repeat, **kwargs)
    return MujocoTask(env, action_repeat=repeat)
