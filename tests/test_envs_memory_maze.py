"""Memory Maze adapter (memory_maze@1): the protocol's facts, settings errors, the install hint without the suite,
and, with memory-maze installed, spaces, episode ends, seeding and `random` / DreamerV3 (tiny) runs.

Expected values come from memory-maze's README (sizes, episode steps, 6 actions) and its dm_env interface driven
by hand; the live tests skip with the reason when memory-maze (and the legacy gym it imports) is not installed.
"""

import dataclasses

import numpy as np
import pytest

from wmbench import cli
from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import memory_maze as mm
from wmbench.protocols import ProtocolError, load_protocol

PROTOCOL = load_protocol("memory_maze@1")


def test_protocol_facts():
    assert PROTOCOL.tasks == ("9x9", "11x11", "13x13", "15x15")
    assert PROTOCOL.action_repeat == 1 and PROTOCOL.budget.step_unit == "env_steps"
    assert PROTOCOL.to_unit(PROTOCOL.budget.agent_steps) == 100_000_000
    # The smoke budget ends at least one episode of the longest maze (4000 steps at 4 Hz), so every task scores.
    assert PROTOCOL.smoke.agent_steps >= max(steps for _, steps in mm.MAZES.values()) == 4000


def with_env(**changes):
    return dataclasses.replace(PROTOCOL, env={**PROTOCOL.env, **changes})


def test_bad_settings_and_tasks_name_the_value_and_the_fix():
    with pytest.raises(ProtocolError, match=r"size must be square.*\[64, 48\]"):
        mm.make(with_env(size=[64, 48]), "9x9", 0)
    with pytest.raises(ProtocolError, match="action_repeat must be 1: memory-maze already acts at control_freq"):
        mm.make(with_env(action_repeat=2), "9x9", 0)
    with pytest.raises(ProtocolError, match="time_limit 1001 is longer than Memory Maze 9x9's own episode"):
        mm.make(with_env(time_limit=1001), "9x9", 0)
    with pytest.raises(ProtocolError, match="unknown task '9x10' for protocol memory_maze@1. Did you mean: 9x9"):
        make_env(PROTOCOL, "9x10", seed=0)


def test_without_memory_maze_the_run_says_how_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "memory_maze" else real(name, *a))
    with pytest.raises(SuiteNotInstalled, match=r"needs memory_maze.*pip install 'wmbench\[memory_maze\]'"):
        make_env(PROTOCOL, "9x9", seed=0)
    code = cli.main(["run", "random", "memory_maze@1", "--task", "9x9", "--seed", "0", "--smoke",
                     "--root", str(tmp_path)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and "wmbench[memory_maze]" in captured.err and "Traceback" not in captured.err


try:
    mm.check_installed()
    MISSING = None
except SuiteNotInstalled as e:
    MISSING = str(e)
needs_memory_maze = pytest.mark.skipif(MISSING is not None, reason=f"memory-maze unavailable: {MISSING}")


@needs_memory_maze
def test_spaces_seeding_and_the_papers_setting():
    from memory_maze import tasks

    env = make_env(PROTOCOL, "9x9", seed=0)
    assert env.obs_space["image"].shape == (64, 64, 3) and env.obs_space["image"].dtype == np.uint8
    assert env.act_space.n == 6 and env.env.episode_steps == 1000
    # Same reset seed, same maze: the adapter equals memory-maze's own dm_env task built with that seed.
    raw = tasks.memory_maze_9x9(seed=7, image_only_obs=True)
    first = env.env.reset(seed=7)[0]["image"]
    np.testing.assert_array_equal(first, raw.reset().observation)
    actions = np.random.default_rng(0).integers(6, size=20)
    for action in actions:
        obs, reward, terminated, truncated, _ = env.env.step(int(action))
        expected = raw.step(int(action))
        np.testing.assert_array_equal(obs["image"], expected.observation)
        assert reward == (expected.reward or 0.0) and not terminated and not truncated
    other = env.env.reset(seed=8)[0]["image"]
    assert not np.array_equal(first, other)  # another seed, another maze or view
    np.testing.assert_array_equal(env.env.reset(seed=7)[0]["image"], first)
    env.close()


@needs_memory_maze
def test_episodes_end_by_time_limit_as_truncation():
    env = mm.make(with_env(time_limit=5), "9x9", 0)
    env.reset(seed=0)
    ends = [env.step(1)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]
    env.close()


def short_variant(tmp_path):
    """memory_maze@1 with 100-step episodes and a 200-step smoke budget (a throwaway protocol file)."""
    from pathlib import Path

    text = Path(PROTOCOL.path).read_text().replace('name = "memory_maze"', 'name = "memory_maze_short"')
    text = text.replace("control_freq = 4\n", "control_freq = 4\ntime_limit = 100\n")
    text = text.replace("[smoke]\nagent_steps = 4000", "[smoke]\nagent_steps = 200")
    assert "time_limit = 100" in text and "agent_steps = 200" in text
    path = tmp_path / "memory_maze_short@1.toml"
    path.write_text(text)
    return str(path)


@needs_memory_maze
def test_random_smoke_run(tmp_path):
    code = cli.main(["run", "random", short_variant(tmp_path), "--task", "9x9", "--seed", "0", "--smoke",
                     "--root", str(tmp_path / "runs"), "--no-progress"])  # fmt: skip
    assert code == 0
    rows = next((tmp_path / "runs").rglob("scores.csv")).read_text().splitlines()
    assert rows[1:] == [f"{100 * k},env_steps,{k},{r.split(',')[3]},100,train" for k, r in enumerate(rows[1:], 1)]
    assert len(rows) == 3


@needs_memory_maze
def test_dreamerv3_tiny_runs_end_to_end(tmp_path):
    code = cli.main(["run", "dreamerv3", short_variant(tmp_path), "--task", "9x9", "--seed", "0", "--smoke",
                     "--set", "preset=tiny", "--set", "batch_length=8", "--root", str(tmp_path / "runs"),
                     "--no-progress", "--threads", "1"])  # fmt: skip
    assert code == 0
    assert len(next((tmp_path / "runs").rglob("scores.csv")).read_text().splitlines()) == 3


@needs_memory_maze
def test_transdreamer_tiny_runs_end_to_end(tmp_path):
    """TransDreamer on the memory-demanding stand-in (the paper's Hidden Order Discovery tasks are not in wmbench)."""
    code = cli.main(["run", "transdreamer", short_variant(tmp_path), "--task", "9x9", "--seed", "0", "--smoke",
                     "--set", "preset=tiny", "--root", str(tmp_path / "runs"), "--no-progress",
                     "--threads", "1"])  # fmt: skip
    assert code == 0
    rows = next((tmp_path / "runs").rglob("scores.csv")).read_text().splitlines()
    assert [r.split(",")[4:] for r in rows[1:]] == [["100", "train"], ["100", "train"]]
