"""The control suite: cart-pole physics (against an independent Lagrangian solve), reward, contract; MuJoCo tasks."""

from types import SimpleNamespace

import numpy as np
import pytest

from wmbench.envs import control
from wmbench.envs.control import CARTPOLE, CartPoleParams, cartpole_derivatives, cartpole_step


def _lagrangian_accelerations(state, force, p):
    """Solve the cart-pole's Euler-Lagrange equations M(q) q'' = rhs as a 2x2 linear system (independent of the
    closed form in the module). Pole: uniform rod, mass m, length l, angle from hanging down."""
    x_dot, th, th_dot = state[1], state[2], state[3]
    M, m, L, g, b = p.cart_mass, p.pole_mass, p.pole_length, p.gravity, p.friction
    mass = np.array([[M + m, m * L / 2 * np.cos(th)], [m * L / 2 * np.cos(th), m * L**2 / 3]])
    rhs = np.array([force - b * x_dot + m * L / 2 * th_dot**2 * np.sin(th), -m * g * L / 2 * np.sin(th)])
    return np.linalg.solve(mass, rhs)


@pytest.mark.parametrize("seed", range(5))
def test_derivatives_match_lagrangian_solve(seed):
    rng = np.random.default_rng(seed)
    state = rng.normal(0, 2, size=4)
    force = rng.uniform(-10, 10)
    d = cartpole_derivatives(state, force)
    assert d[0] == state[1] and d[2] == state[3]
    np.testing.assert_allclose(d[[1, 3]], _lagrangian_accelerations(state, force, CARTPOLE), rtol=1e-10)


def test_energy_conserved_without_friction_and_dissipated_with_it():
    frictionless = CartPoleParams(friction=0.0)
    state = np.array([0.0, 0.5, 2.0, 0.0])
    e0 = control.cartpole_energy(state, frictionless)
    s = state
    for _ in range(200):  # 20 s
        s = cartpole_step(s, 0.0, frictionless)
    assert abs(control.cartpole_energy(s, frictionless) - e0) < 1e-4 * abs(e0)
    energies = [control.cartpole_energy(state)]
    s = state
    for _ in range(100):
        s = cartpole_step(s, 0.0)
        energies.append(control.cartpole_energy(s))
    assert np.all(np.diff(energies) <= 1e-9) and energies[-1] < energies[0] - 0.01


def test_equilibria_upright_unstable_hanging_stable():
    upright = np.array([0.0, 0.0, np.pi, 0.0])
    s = upright
    for _ in range(10):
        s = cartpole_step(s, 0.0)
    assert abs(s[2] - np.pi) < 1e-9  # exact equilibrium stays put
    s = upright + np.array([0, 0, 1e-3, 0])
    for _ in range(30):
        s = cartpole_step(s, 0.0)
    assert abs(s[2] - np.pi) > 0.5  # a small push topples it
    s = np.array([0, 0, 1e-3, 0])
    for _ in range(30):
        s = cartpole_step(s, 0.0)
    assert abs(s[2]) < 2e-3  # hanging down stays near the bottom (friction only damps)


def test_reward_is_one_minus_saturating_cost():
    # Tip at the target -> 1; hanging down at x = 0 the tip is 2 l = 1.2 m below it -> exp(-1.44 / (2 * 0.0625)).
    assert control.cartpole_reward(np.array([0.0, 0, np.pi, 0])) == pytest.approx(1.0)
    assert control.cartpole_reward(np.array([0.0, 0, 0.0, 0])) == pytest.approx(np.exp(-1.44 / 0.125))
    # Cart 0.25 m off with the pole upright: d = sigma_c -> exp(-1/2).
    assert control.cartpole_reward(np.array([0.25, 0, np.pi, 0])) == pytest.approx(np.exp(-0.5))


def test_env_contract_determinism_and_action_scaling():
    proto = SimpleNamespace(env={})
    env = control.make(proto, "cartpole_swingup", 0)
    obs, _ = env.reset(seed=7)
    assert obs["vector"].dtype == np.float32 and obs["vector"].shape == (4,)
    start = env.state.copy()
    assert np.all(np.abs(start) < 0.5)  # N(0, 0.1^2): hanging down, near rest
    obs1, r, terminated, truncated, _ = env.step(np.array([1.0], np.float32))
    np.testing.assert_allclose(obs1["vector"], cartpole_step(start, 10.0), rtol=1e-6)
    assert r == pytest.approx(float(control.cartpole_reward(cartpole_step(start, 10.0))))
    env.step(np.array([5.0]))  # clipped to 1 -> 10 N, never more
    env2 = control.make(proto, "cartpole_swingup", 0)
    env2.reset(seed=7)
    env2.step(np.array([1.0]))
    obs2, *_ = env2.step(np.array([1.0]))
    np.testing.assert_array_equal(env.state, env2.state)
    steps = 2
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(1))
        steps += 1
        assert not terminated
    assert steps == 200


def test_protocol_builds_contract_env():
    from wmbench.envs import make_env
    from wmbench.protocols import load_protocol

    env = make_env(load_protocol("control@1"), "cartpole_swingup", seed=0)
    step = env.reset()
    assert step["is_first"] and set(env.obs_space) == {"vector"}
    assert env.act_space.low[0] == -1 and env.act_space.high[0] == 1


@pytest.mark.parametrize(
    "task, obs_dim, act_dim", [("half_cheetah", 18, 6), ("reacher", 10, 2), ("pusher", 23, 7)]
)
def test_mujoco_tasks_and_known_rewards(task, obs_dim, act_dim):
    try:
        control.check_mujoco()
    except control.SuiteNotInstalled as e:
        pytest.skip(str(e))
    env = control.make(SimpleNamespace(env={}), task, 0)
    obs, _ = env.reset(seed=0)
    assert obs["vector"].shape == (obs_dim,) and env.action_space.shape == (act_dim,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, act_dim)
        nxt, reward, *_ = env.step(a)
        known = control.task_reward(
            task, obs["vector"].astype(np.float64), a, nxt["vector"].astype(np.float64)
        )
        assert known == pytest.approx(reward, abs=1e-4)
        obs = nxt


@pytest.mark.parametrize(
    "protocol, task, length, episodes",
    [("control_cheetah@1", "half_cheetah", 1000, 300), ("control_reacher@1", "reacher", 50, 100),
     ("control_pusher@1", "pusher", 100, 100)],
)
def test_mujoco_task_protocols_budget_in_paper_episodes(protocol, task, length, episodes):
    """Each MuJoCo task has its own protocol file whose budget is PETS's number of episodes (released configs:
    300 half-cheetah, 100 reacher, 100 pusher iterations of one rollout) at the gymnasium episode length."""
    try:
        control.check_mujoco()
    except control.SuiteNotInstalled as e:
        pytest.skip(str(e))
    from wmbench_baselines.pets import infer_task

    from wmbench.envs import make_env
    from wmbench.protocols import load_protocol

    p = load_protocol(protocol)
    assert p.tasks == (task,) and p.budget.agent_steps == length * episodes
    env = make_env(p, task, seed=0)
    step, steps = env.reset(), 0
    assert infer_task(env.obs_space, env.act_space) == task
    while not step["is_last"]:
        step = env.step(np.zeros(env.act_space.shape, np.float32))
        steps += 1
    assert steps == length
