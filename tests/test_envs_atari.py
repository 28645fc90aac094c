"""Atari adapter against the atari100k@1 protocol: spaces, preprocessing, seeding and episode semantics.

Expected values come from the protocol, ALE itself (stepped by hand here) or facts about the games (Pong's
minimal action set has 6 actions, Breakout starts with 5 lives), never from the adapter's own output.
"""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import atari as atari_suite
from wmbench.protocols import ProtocolError, load_protocol, parse_protocol

try:
    atari_suite.check_installed()
except SuiteNotInstalled as e:
    pytest.skip(str(e), allow_module_level=True)

import ale_py  # noqa: E402
from ale_py import roms  # noqa: E402
from PIL import Image  # noqa: E402

PROTOCOL = load_protocol("atari100k@1")


def variant(**env) -> object:
    """atari100k@1 with some `[env]` settings changed (a throwaway protocol, as a user would write one)."""
    data = tomllib.loads(Path(PROTOCOL.path).read_text())
    data["name"] = "atari_test"
    data["env"].update(env)
    return parse_protocol(data, "<test>")


def raw_ale(task: str, noops: int = 0) -> ale_py.ALEInterface:
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(str(roms.get_rom_path(task)))
    ale.reset_game()
    for _ in range(noops):
        ale.act(ale_py.Action.NOOP)
    return ale


@pytest.mark.parametrize("task", sorted(PROTOCOL.tasks))
def test_all_games_construct(task):
    env = make_env(PROTOCOL, task, seed=0)
    assert env.obs_space["image"].shape == (64, 64, 3)
    # Minimal action sets of the Atari 100k games have 3 (freeway) to 18 actions.
    assert 3 <= env.act_space.n <= 18
    env.close()


def test_spaces_and_first_steps_follow_the_contract():
    env = make_env(PROTOCOL, "pong", seed=0)
    assert env.obs_space["image"].dtype == np.uint8
    assert env.obs_space["image"].shape == (*PROTOCOL.env["size"], 3)
    assert env.act_space.n == 6  # Pong's minimal action set: NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE
    first = env.reset()
    assert first["is_first"] and not first["is_last"] and not first["is_terminal"]
    assert first["reward"] == 0.0 and first["reward"].dtype == np.float32
    assert first["image"].shape == (64, 64, 3) and first["image"].dtype == np.uint8
    step = env.step(1)
    assert not step["is_first"] and not step["is_last"]
    assert step["image"].flags.writeable and step["image"].flags.c_contiguous
    assert step["image"] is not first["image"]


def test_full_action_space_and_grayscale():
    env = make_env(variant(full_action_space=True, grayscale=True), "pong", seed=0)
    assert env.act_space.n == 18
    assert env.obs_space["image"].shape == (64, 64, 1)
    assert env.reset()["image"].shape == (64, 64, 1)


def test_same_seed_same_episodes_other_seed_other_noops():
    a, b = make_env(PROTOCOL, "breakout", seed=3), make_env(PROTOCOL, "breakout", seed=3)
    actions = np.random.default_rng(0).integers(0, a.act_space.n, 30)
    for _ in range(2):  # two episodes: episode seeds derive from the run seed
        sa, sb = a.reset(), b.reset()
        np.testing.assert_array_equal(sa["image"], sb["image"])
        for act in actions:
            sa, sb = a.step(act), b.step(act)
            np.testing.assert_array_equal(sa["image"], sb["image"])
            assert sa["reward"] == sb["reward"]


def test_noops_are_drawn_from_the_reset_seed():
    env = make_env(PROTOCOL, "pong", seed=0).env
    # ALE's episode frame counter after reset = number of no-ops taken (reset_game's own frames are not counted).
    counts = []
    for seed in range(12):
        env.reset(seed=seed)
        counts.append(env.ale.getEpisodeFrameNumber())
        env.reset(seed=seed)
        assert env.ale.getEpisodeFrameNumber() == counts[-1]
    assert 0 <= min(counts) and max(counts) <= PROTOCOL.env["noop_max"]
    assert len(set(counts)) > 4  # 12 draws from 31 values: P(<= 4 distinct) is negligible
    no_noops = make_env(variant(noop_max=0), "pong", seed=0).env
    no_noops.reset(seed=1)
    assert no_noops.ale.getEpisodeFrameNumber() == 0


def test_action_repeat_sums_rewards_and_max_pools_last_two_frames():
    env = make_env(variant(noop_max=0), "pong", seed=0)
    env.reset()
    ale = raw_ale("pong")
    actions = ale.getMinimalActionSet()
    frame_a, frame_b = np.zeros((210, 160, 3), np.uint8), np.zeros((210, 160, 3), np.uint8)
    rng = np.random.default_rng(1)
    rewards = []
    for _ in range(400):
        if any(rewards) and len(rewards) >= 50:
            break
        a = int(rng.integers(len(actions)))
        raw_reward = 0
        for k in range(4):
            raw_reward += ale.act(actions[a])
            if k == 2:
                ale.getScreenRGB(frame_a)
        ale.getScreenRGB(frame_b)
        expected = np.array(Image.fromarray(np.maximum(frame_a, frame_b)).resize((64, 64), Image.BILINEAR))
        step = env.step(a)
        assert step["reward"] == raw_reward
        np.testing.assert_array_equal(step["image"], expected)
        rewards.append(raw_reward)
        if step["is_last"]:
            break
    assert any(rewards)  # Pong scores within 400 random steps: the sum was really checked


FIRE = 1  # Breakout's minimal set is NOOP FIRE RIGHT LEFT; always firing with a still paddle loses balls fast


def test_game_over_is_terminal():
    env = make_env(variant(noop_max=0), "breakout", seed=0)
    env.reset()
    for _ in range(3000):
        step = env.step(FIRE)
        if step["is_last"]:
            break
    assert step["is_last"] and step["is_terminal"]
    assert env.env.ale.game_over()


@pytest.mark.parametrize("max_frames, steps", [(40, 10), (42, 11)])
def test_max_frames_truncates_without_terminal(max_frames, steps):
    env = make_env(variant(max_frames=max_frames, noop_max=0), "pong", seed=0)
    env.reset()
    for i in range(steps):
        step = env.step(0)
        assert step["is_last"] == (i == steps - 1)
        assert not step["is_terminal"]
    assert env.env.ale.getEpisodeFrameNumber() == max_frames
    again = env.reset()
    assert again["is_first"] and env.env.ale.getEpisodeFrameNumber() == 0


def test_life_loss_terminal_ends_episode_and_continues_game():
    env = make_env(variant(life_loss_terminal=True, noop_max=0), "breakout", seed=0)
    env.reset()
    assert env.env.ale.lives() == 5
    for _ in range(3000):
        step = env.step(FIRE)
        if step["is_last"]:
            break
    assert step["is_last"] and step["is_terminal"]
    assert env.env.ale.lives() == 4 and not env.env.ale.game_over()
    frames = env.env.ale.getEpisodeFrameNumber()
    env.reset()  # the next episode continues the same game
    assert env.env.ale.lives() == 4 and env.env.ale.getEpisodeFrameNumber() == frames


def test_life_loss_not_terminal_by_default():
    env = make_env(variant(noop_max=0), "breakout", seed=0)
    env.reset()
    for _ in range(3000):
        step = env.step(FIRE)
        assert not step["is_last"]
        if env.env.ale.lives() < 5:
            break
    assert env.env.ale.lives() == 4 and not step["is_last"]


def test_sticky_actions_are_seeded():
    proto = variant(sticky_actions=0.25)
    a, b = make_env(proto, "breakout", seed=1), make_env(proto, "breakout", seed=1)
    a.reset(), b.reset()
    actions = np.random.default_rng(0).integers(0, a.act_space.n, 50)
    for act in actions:
        np.testing.assert_array_equal(a.step(act)["image"], b.step(act)["image"])


def test_unknown_resize_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="resize"):
        make_env(variant(resize="nearest"), "pong", seed=0)
