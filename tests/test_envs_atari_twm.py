"""The Atari adapter's jrobine/twm settings (protocol atari100k_twm@1) on the real ALE, and the runner's one score per
game when a lost life ends the episode.

Expected values come from ALE stepped by hand, from facts about the games (Breakout: NOOP FIRE RIGHT LEFT, 5 lives,
a ball is launched only by FIRE; Ms. Pac-Man has no FIRE) or from the episodes the agent itself saw, never from the
adapter's own output.
"""

import csv
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from wmbench_baselines.random_agent import RandomAgent

from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import atari as atari_suite
from wmbench.method import register
from wmbench.protocols import EvalSchedule, ProtocolError, load_protocol, parse_protocol
from wmbench.runner import run, run_dir_for

try:
    atari_suite.check_installed()
except SuiteNotInstalled as e:
    pytest.skip(str(e), allow_module_level=True)

import ale_py  # noqa: E402
from ale_py import roms  # noqa: E402
from PIL import Image  # noqa: E402

TWM = load_protocol("atari100k_twm@1")
NOOP, FIRE, RIGHT = 0, 1, 2  # Breakout's minimal action set: NOOP FIRE RIGHT LEFT


def variant(base=TWM, **env) -> object:
    """A throwaway copy of `base` with some `[env]` settings changed."""
    data = tomllib.loads(Path(base.path).read_text())
    data["name"] = "atari_twm_test"
    data["env"].update(env)
    return parse_protocol(data, "<test>")


def raw_ale(task: str) -> ale_py.ALEInterface:
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(str(roms.get_rom_path(task)))
    ale.reset_game()
    return ale


def test_protocol_states_twm_settings_and_atari100k_keeps_its_own():
    env = TWM.env
    assert env["grayscale"] and env["episodic_lives"] and env["fire_reset"] and env["fire_after_life_loss"]
    assert (env["noop_min"], env["noop_max"], env["eval_noop_max"]) == (1, 30, 0)
    assert env["sticky_actions"] == 0.0 and env["action_repeat"] == 4 and env["max_pool"]
    assert (TWM.score.rule, TWM.score.episodes, TWM.eval.episodes) == ("eval_mean", 100, 100)
    assert TWM.published_name == "atari100k" and TWM.reproduce.published_sources == (
        "twm:results/scores.json",
    )
    old = load_protocol("atari100k@1")
    assert old.published_name == "atari100k" and not {"fire_reset", "episodic_lives", "noop_min"} & set(
        old.env
    )


def test_fire_reset_presses_fire_then_the_third_action():
    env = make_env(variant(noop_max=0, noop_min=0, grayscale=False, resize="bilinear"), "breakout", seed=0)
    first = env.reset()
    ale = raw_ale("breakout")
    actions = ale.getMinimalActionSet()
    for action in (actions[FIRE], actions[RIGHT]):
        for _ in range(4):
            ale.act(action)
    screen = ale.getScreenRGB()
    expected = np.array(Image.fromarray(screen).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(first["image"], expected)
    assert env.env.ale.getEpisodeFrameNumber() == 8
    off = make_env(variant(noop_max=0, noop_min=0, fire_reset=False), "breakout", seed=0)
    off.reset()
    assert off.env.ale.getEpisodeFrameNumber() == 0
    no_fire = make_env(
        variant(noop_max=0, noop_min=0), "ms_pacman", seed=0
    )  # NOOP UP RIGHT ...: no FIRE second
    no_fire.reset()
    assert no_fire.env.ale.getEpisodeFrameNumber() == 0


def test_noops_come_after_the_fire_and_evaluation_takes_none():
    train = make_env(TWM, "pong", seed=0).env
    counts = []
    for seed in range(12):
        train.reset(seed=seed)
        frames = train.ale.getEpisodeFrameNumber() - 8  # 8 frames: FIRE and RIGHT, one agent step each
        assert frames % 4 == 0  # after a FIRE the no-ops are agent steps of 4 frames (jrobine/twm NoopStart)
        counts.append(frames // 4)
    assert min(counts) >= 1 and max(counts) <= 30 and len(set(counts)) > 4
    no_fire = make_env(TWM, "ms_pacman", seed=0).env  # no FIRE: single no-op frames, 1 to 30
    frames = []
    for seed in range(12):
        no_fire.reset(seed=seed)
        frames.append(no_fire.ale.getEpisodeFrameNumber())
    assert min(frames) >= 1 and max(frames) <= 30 and len(set(frames)) > 4
    evaluation = make_env(TWM, "pong", seed=0, mode="eval").env
    for seed in range(4):
        evaluation.reset(seed=seed)
        assert evaluation.ale.getEpisodeFrameNumber() == 8


def _noop_until(env, lives: int, limit: int = 4000):
    for _ in range(limit):
        step = env.step(NOOP)
        if env.env.ale.lives() <= lives or step["is_last"]:
            return step
    return step


def test_fire_after_life_loss_relaunches_the_ball():
    # Never pressing FIRE, Breakout loses its first ball (launched by the reset's FIRE) and then waits forever; with
    # FIRE after each lost life every ball is launched again, and NOOP play loses all five.
    on = make_env(variant(episodic_lives=False, noop_max=0, noop_min=0), "breakout", seed=0)
    on.reset()
    for lives in (4, 3, 2, 1):
        step = _noop_until(on, lives)
        assert on.env.ale.lives() == lives and not step["is_last"]
    step = _noop_until(on, 0)
    assert step["is_last"] and step["is_terminal"] and on.env.ale.game_over()
    off = make_env(
        variant(episodic_lives=False, fire_after_life_loss=False, noop_max=0, noop_min=0), "breakout", 0
    )
    off.reset()
    _noop_until(off, 4)
    frames = off.env.ale.getEpisodeFrameNumber()
    for _ in range(500):
        assert not off.step(NOOP)["is_last"]
    assert off.env.ale.lives() == 4 and off.env.ale.getEpisodeFrameNumber() == frames + 2000


def test_life_loss_step_runs_the_whole_repeat_then_one_fire_step():
    env = make_env(variant(episodic_lives=False, noop_max=0, noop_min=0), "breakout", seed=0)
    env.reset()
    for _ in range(4000):
        frames = env.env.ale.getEpisodeFrameNumber()
        env.step(NOOP)
        if env.env.ale.lives() < 5:
            break
    assert env.env.ale.lives() == 4
    assert env.env.ale.getEpisodeFrameNumber() - frames == 8  # 4 frames of NOOP, 4 of FIRE


def test_episodic_lives_end_each_life_as_terminal_and_continue_the_game():
    env = make_env(TWM, "breakout", seed=3)
    rng = np.random.default_rng(0)
    env.reset()
    lives_seen = []
    for _ in range(5):
        start_lives = env.env.ale.lives()
        while True:
            step = env.step(int(rng.integers(env.act_space.n)))
            if step["is_last"]:
                break
        assert step["is_terminal"]
        lives_seen.append((start_lives, env.env.ale.lives()))
        game_over = env.env.ale.game_over()
        assert env.episode_info.get("score_continues", False) == (not game_over)
        if game_over:
            break
        frames = env.env.ale.getEpisodeFrameNumber()
        env.reset()  # the next life of the same game: no reset of the game, no no-ops, one NOOP agent step
        assert env.env.ale.getEpisodeFrameNumber() == frames + 4 and env.env.ale.lives() == start_lives - 1
    assert lives_seen == [(5, 4), (4, 3), (3, 2), (2, 1), (1, 0)]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"noop_min": 31}, "noop_min"),
        ({"eval_noop_max": -1}, "eval_noop_max"),
        ({"life_loss_terminal": True}, "episodic_lives and life_loss_terminal"),
    ],
)
def test_bad_settings_are_protocol_errors(settings, message):
    with pytest.raises(ProtocolError, match=message):
        make_env(variant(**settings), "pong", seed=0)


def test_area_resize_is_pillows_box_filter_of_the_grayscale_screen():
    env = make_env(variant(noop_max=0, noop_min=0, fire_reset=False), "pong", seed=0)
    first = env.reset()
    ale = raw_ale("pong")
    expected = np.array(Image.fromarray(ale.getScreenGrayscale()).resize((64, 64), Image.BOX))[:, :, None]
    np.testing.assert_array_equal(first["image"], expected)


class Witness(RandomAgent):
    """Random actions; keeps every step the agent is shown, per mode, so the test can rebuild the games."""

    seen: ClassVar[dict[str, list[tuple[float, bool, bool, bool]]]] = {}

    def policy(self, obs, state, mode="train"):
        Witness.seen.setdefault(mode, []).append(
            (
                float(obs["reward"][0]),
                bool(obs["is_first"][0]),
                bool(obs["is_last"][0]),
                bool(obs["is_terminal"][0]),
            )
        )
        return super().policy(obs, state, mode)


register("witness", "test_envs_atari_twm:Witness")


def _episodes(steps):
    """(return, length) of every episode the agent saw to its end."""
    out, ret, length = [], 0.0, 0
    for reward, first, last, _terminal in steps:
        if first:
            ret, length = 0.0, 0
        else:
            ret, length = ret + reward, length + 1
        if last:
            out.append((ret, length))
    return out


def _scores(run_dir, phase):
    with open(run_dir / "scores.csv") as f:
        return [(float(r["score"]), int(r["length"])) for r in csv.DictReader(f) if r["phase"] == phase]


def test_runner_records_one_score_per_game_summed_over_its_lives(tmp_path):
    # Without no-ops no life is lost during a reset (FIRE and RIGHT take 8 frames), so a game is five episodes.
    proto = replace(variant(noop_max=0, noop_min=0), eval=EvalSchedule(every=0, episodes=2))
    proto = replace(proto, score=replace(proto.score, episodes=2))
    Witness.seen = {}
    run("witness", proto, "breakout", 0, root=tmp_path, steps=1200, progress=False)
    run_dir = run_dir_for(tmp_path, proto, "breakout", "witness", 0)
    for phase in ("train", "eval"):
        lives = _episodes(Witness.seen[phase])
        scores = _scores(run_dir, phase)
        assert len(scores) >= 2
        assert len(lives) >= 5 * len(scores)  # Breakout: five lives, five episodes per scored game
        games = [lives[5 * g : 5 * g + 5] for g in range(len(scores))]
        expected = [(sum(r for r, _ in game), sum(n for _, n in game)) for game in games]
        assert scores == expected  # Breakout rewards are integers: exact sums
        terminal = [t for _r, _f, last, t in Witness.seen[phase] if last]
        assert all(terminal[: 5 * len(scores)])


def test_a_run_resumed_after_a_crash_mid_game_writes_the_same_scores(tmp_path):
    proto = replace(variant(), eval=EvalSchedule(every=0, episodes=1))
    proto = replace(proto, score=replace(proto.score, episodes=1))
    kw = {"steps": 900, "checkpoint_every": 50, "progress": False}
    run("witness", proto, "breakout", 1, root=tmp_path / "a", **kw)
    whole = (run_dir_for(tmp_path / "a", proto, "breakout", "witness", 1) / "scores.csv").read_bytes()

    class Crash(Exception):
        pass

    calls = [0]
    original = Witness.update

    def crashing(self, replay, step):
        calls[0] += 1
        if calls[0] == 430:
            raise Crash
        return original(self, replay, step)

    Witness.update = crashing
    try:
        with pytest.raises(Crash):
            run("witness", proto, "breakout", 1, root=tmp_path / "b", **kw)
    finally:
        Witness.update = original
    run("witness", proto, "breakout", 1, root=tmp_path / "b", **kw)
    resumed = (run_dir_for(tmp_path / "b", proto, "breakout", "witness", 1) / "scores.csv").read_bytes()
    assert resumed == whole and resumed.count(b"\n") >= 3


def test_a_life_lost_during_the_noop_steps_is_followed_by_fire():
    # Breakout's first ball, launched at the reset's FIRE, can fall during up to 30 no-op steps (120 frames); with FIRE
    # after a lost life the next ball is in play (NOOP play loses it too), without it the game waits.
    for fire, expected in ((True, 3), (False, 4)):
        env = make_env(variant(episodic_lives=False, fire_after_life_loss=fire), "breakout", seed=0)
        seed = next(s for s in range(200) if env.env.reset(seed=s) and env.env.ale.lives() == 4)
        env.env.reset(seed=seed)
        assert env.env.ale.lives() == 4  # a life was lost during this reset's no-op steps
        for _ in range(600):
            env.step(NOOP)
            if env.env.ale.lives() < 4:
                break
        assert env.env.ale.lives() == expected


def test_after_a_lost_life_training_takes_one_noop_step_and_evaluation_none():
    for mode, frames in (("train", 4), ("eval", 0)):
        env = make_env(TWM, "breakout", seed=0, mode=mode)
        env.reset()
        lives = env.env.ale.lives()
        for _ in range(4000):
            if env.step(NOOP)["is_last"]:
                break
        assert env.episode_info.get("score_continues") and env.env.ale.lives() == lives - 1
        before = env.env.ale.getEpisodeFrameNumber()
        env.reset()
        assert env.env.ale.getEpisodeFrameNumber() - before == frames
