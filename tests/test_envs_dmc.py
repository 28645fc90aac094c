"""DMC adapter against dmc_proprio@1 / dmc_vision@1: spaces, seeding, action repeat, time limits, pixels.

Expected values come from dm_control itself (its task registry, physics, an unwrapped env stepped by hand) or
from the protocol, never from the adapter's own output.
"""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import dmc as dmc_suite
from wmbench.protocols import ProtocolError, load_protocol, parse_protocol

try:
    dmc_suite.check_installed()
except SuiteNotInstalled as e:
    pytest.skip(str(e), allow_module_level=True)

from dm_control import suite  # noqa: E402

PROPRIO = load_protocol("dmc_proprio@1")
VISION = load_protocol("dmc_vision@1")


def variant(base, **env):
    data = tomllib.loads(Path(base.path).read_text())
    data["name"] = "dmc_test"
    data["env"].update(env)
    return parse_protocol(data, "<test>")


def test_every_task_name_maps_to_a_dm_control_task():
    for task in dmc_suite.TASKS:
        domain, name = dmc_suite.split_task(task)
        assert (domain, name) in suite.ALL_TASKS, task
    assert dmc_suite.split_task("ball_in_cup_catch") == ("ball_in_cup", "catch")
    assert dmc_suite.split_task("cartpole_balance_sparse") == ("cartpole", "balance_sparse")
    assert dmc_suite.split_task("point_mass_easy") == ("point_mass", "easy")


def test_vector_observation_is_sorted_flat_float32():
    env = make_env(PROPRIO, "walker_walk", seed=0)
    # walker: height (1) + orientations (7 bodies x 2) + velocity (9) = 24 entries
    assert env.obs_space["vector"].shape == (24,) and env.obs_space["vector"].dtype == np.float32
    assert env.act_space.shape == (6,) and np.all(env.act_space.low == -1) and np.all(env.act_space.high == 1)
    step = env.reset()
    assert step["vector"].dtype == np.float32 and step["vector"].shape == (24,)
    physics = env.env._dm.physics
    # sorted keys: height, orientations, velocity; height = torso z position
    assert step["vector"][0] == np.float32(physics.named.data.xpos["torso", "z"])
    np.testing.assert_array_equal(step["vector"][15:], physics.data.qvel[:9].astype(np.float32))
    assert step["is_first"] and step["reward"] == 0.0


def test_reset_seed_reproduces_initial_state():
    env = make_env(PROPRIO, "walker_walk", seed=0).env
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    c, _ = env.reset(seed=6)
    np.testing.assert_array_equal(a["vector"], b["vector"])
    assert not np.array_equal(a["vector"], c["vector"])
    other = make_env(PROPRIO, "walker_walk", seed=1).env
    np.testing.assert_array_equal(other.reset(seed=5)[0]["vector"], a["vector"])


def test_same_seed_same_trajectory():
    a, b = make_env(PROPRIO, "cheetah_run", seed=2), make_env(PROPRIO, "cheetah_run", seed=2)
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 6)).astype(np.float32)
    for _ in range(2):
        np.testing.assert_array_equal(a.reset()["vector"], b.reset()["vector"])
        for act in actions:
            sa, sb = a.step(act), b.step(act)
            np.testing.assert_array_equal(sa["vector"], sb["vector"])
            assert sa["reward"] == sb["reward"]


def test_action_repeat_sums_rewards_of_the_raw_env():
    env = make_env(PROPRIO, "walker_walk", seed=0)
    env.reset()
    raw = suite.load("walker", "walk")
    raw.reset()
    with raw.physics.reset_context():
        raw.physics.set_state(env.env._dm.physics.get_state())
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 6))
    for act in actions:
        expected = sum(raw.step(act).reward for _ in range(PROPRIO.env["action_repeat"]))
        step = env.step(act.astype(np.float32))
        assert step["reward"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert expected > 0  # walker_walk rewards are positive near standing: the sum was really compared


@pytest.mark.parametrize("time_limit, steps", [(10, 5), (11, 6)])
def test_time_limit_truncates_without_terminal(time_limit, steps):
    env = make_env(variant(PROPRIO, time_limit=time_limit), "cartpole_swingup", seed=0)
    env.reset()
    for i in range(steps):
        step = env.step(np.zeros(1, np.float32))
        assert step["is_last"] == (i == steps - 1)
        assert not step["is_terminal"]
    assert env.env._dm.physics.time() == pytest.approx(time_limit * env.env._dm.control_timestep())
    assert env.reset()["is_first"]


def test_default_episode_is_1000_env_steps():
    env = make_env(PROPRIO, "cartpole_balance", seed=0)
    env.reset()
    n = 0
    while True:
        n += 1
        step = env.step(np.zeros(1, np.float32))
        if step["is_last"]:
            break
    assert n * PROPRIO.env["action_repeat"] == 1000 and not step["is_terminal"]


def test_actions_are_rescaled_to_the_task_bounds():
    env = make_env(PROPRIO, "walker_walk", seed=0).env  # bounds are [-1, 1]: identity, and clipping
    env.reset(seed=0)
    env.step(np.full(6, 2.0, np.float32))
    np.testing.assert_array_equal(env._dm.physics.data.ctrl, np.ones(6))
    quad = dmc_suite.DMCEnv("quadruped_walk", seed=0, obs="vector")
    spec = quad._dm.action_spec()
    assert np.any(spec.maximum != 1.0)  # quadruped's bounds are not [-1, 1]: the rescaling matters
    quad.reset(seed=0)
    quad.step(np.ones(12, np.float32))
    np.testing.assert_allclose(quad._dm.physics.data.ctrl, spec.maximum)
    quad.step(-np.ones(12, np.float32))
    np.testing.assert_allclose(quad._dm.physics.data.ctrl, spec.minimum)


def test_bad_obs_mode_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="obs"):
        make_env(variant(PROPRIO, obs="pixels"), "walker_walk", seed=0)


@pytest.fixture(scope="module")
def pixels_available():
    try:
        dmc_suite.configure_gl(render=True)
    except SuiteNotInstalled as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("task, camera", [("cartpole_swingup", 0), ("quadruped_walk", 2)])
def test_pixels(pixels_available, task, camera):
    env = make_env(VISION, task, seed=0)
    assert set(env.obs_space) == {"image"}
    assert env.obs_space["image"].shape == (64, 64, 3) and env.obs_space["image"].dtype == np.uint8
    first = env.reset()
    assert first["image"].shape == (64, 64, 3) and first["image"].dtype == np.uint8
    physics = env.env._dm.physics
    np.testing.assert_array_equal(first["image"], physics.render(64, 64, camera_id=camera))
    assert first["image"].std() > 0  # a real picture, not a blank buffer
    step = env.step(np.ones(env.act_space.shape, np.float32))
    assert step["image"].shape == (64, 64, 3) and not step["is_last"]
    a, _ = env.env.reset(seed=7)
    b, _ = env.env.reset(seed=7)
    np.testing.assert_array_equal(a["image"], b["image"])


def test_gl_probe_reports_a_broken_backend():
    error = dmc_suite.probe_gl("no_such_backend")
    assert error is not None and "no_such_backend" in error


def test_no_working_gl_backend_names_the_packages(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "dm_control._render")  # pretend dm_control is not imported yet
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(dmc_suite, "probe_gl", lambda backend: f"{backend} is broken")
    with pytest.raises(SuiteNotInstalled, match="apt-get install libegl1.*apt-get install libosmesa6"):
        dmc_suite.configure_gl(render=True)
    assert dmc_suite.configure_gl(render=False) == "disable"  # state-only tasks need no renderer
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(dmc_suite, "probe_gl", lambda backend: None if backend == "osmesa" else "no EGL")
    assert dmc_suite.configure_gl(render=True) == "osmesa"
    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert dmc_suite.configure_gl(render=True) == "egl"  # an explicit choice is kept
