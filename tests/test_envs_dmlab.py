"""DMLab adapter (dmlab30@1) against a double of the `deepmind_lab` module with its Python API's semantics.

Expected values come from DreamerV3's published settings (15 PopArt actions, repeat 4, `_test` -> `_train`,
64x64), the DMLab-30 level list of the shipped normalisers, and the double's own state. The live test needs a
Bazel build of DeepMind Lab and skips with the reason.
"""

import sys
import zlib

import deepmind_lab_double
import numpy as np
import pytest

from wmbench import cli
from wmbench.envs import SuiteNotInstalled, dmlab, make_env
from wmbench.protocols import ProtocolError, load_protocol
from wmbench.results import normalise, published

PROTOCOL = load_protocol("dmlab30@1")


@pytest.fixture
def fake_lab(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepmind_lab", deepmind_lab_double)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "deepmind_lab" else real(name, *a)
    )
    deepmind_lab_double.created.clear()
    return deepmind_lab_double


def test_protocol_covers_the_30_levels_with_normalisers_and_the_published_unit():
    assert set(PROTOCOL.tasks) == dmlab.TASKS and len(PROTOCOL.tasks) == 30
    normalise(np.zeros(30), np.array(PROTOCOL.tasks), "dmlab30")  # every level has [low, high]
    curves = published(protocol="dmlab30@1")
    assert set(curves["task"]) == set(PROTOCOL.tasks) and set(curves["step_unit"]) == {"frames"}
    assert PROTOCOL.to_unit(PROTOCOL.budget.agent_steps) == 100_000_000 == curves["env_step"].max()


def test_level_scripts_and_config(fake_lab):
    env = make_env(PROTOCOL, "rooms_collect_good_objects_test", seed=0)
    lab = fake_lab.created[-1]
    assert lab.level == "contributed/dmlab30/rooms_collect_good_objects_train"
    assert lab.config == {"height": "64", "width": "64", "logLevel": "WARN"}
    assert lab.requested == ["RGB_INTERLEAVED"] and set(env.obs_space) == {"image"}
    assert env.act_space.n == 15
    make_env(PROTOCOL, "explore_goal_locations_small", seed=0)
    assert fake_lab.created[-1].level == "contributed/dmlab30/explore_goal_locations_small"


def test_steps_repeat_four_frames_and_end_terminal(fake_lab):
    env = make_env(PROTOCOL, "explore_goal_locations_small", seed=0)
    lab = fake_lab.created[-1]
    first = env.reset()
    assert first["image"].shape == (64, 64, 3) and first["image"].dtype == np.uint8
    fire = 14  # the PopArt set's last action
    step = env.step(fire)
    action, num_steps = lab.actions[-1]
    assert num_steps == 4 and action.dtype == np.intc and list(action) == [0, 0, 0, 0, 1, 0, 0]
    assert step["reward"] == 4.0 and lab.num_steps() == 4 and step["image"][0, 0, 0] == 4
    steps = [env.step(0) for _ in range(fake_lab.EPISODE_FRAMES // 4 - 1)]
    assert steps[-1]["is_last"] and steps[-1]["is_terminal"] and not any(s["is_last"] for s in steps[:-1])
    np.testing.assert_array_equal(steps[-1]["image"], steps[-2]["image"])  # no observation after the end
    env.reset()
    assert len(set(lab.seeds)) == 2  # a fresh level seed per episode


def test_level_seeds_follow_the_env_seed(fake_lab):
    seeds = []
    for _ in range(2):
        env = make_env(PROTOCOL, "rooms_watermaze", seed=7)
        env.reset()
        env.reset()
        seeds.append(fake_lab.created[-1].seeds)
    assert seeds[0] == seeds[1]


def test_language_levels_embed_the_instruction(fake_lab):
    env = make_env(PROTOCOL, "language_select_described_object", seed=0)
    assert fake_lab.created[-1].requested == ["RGB_INTERLEAVED", "INSTR"]
    step = env.reset()
    assert step["vector"].shape == (32 * 32,) and step["vector"].dtype == np.float32
    tokens = ["pick", "up", "the", "red", "balloon", "."]
    table = np.random.default_rng(0).normal(0.0, 1.0, (65536, 32)).astype(np.float32)
    expected = [table[zlib.crc32(t.encode()) % 65536] for t in tokens] + [table[0]] * (32 - len(tokens))
    np.testing.assert_array_equal(step["vector"], np.concatenate(expected))


def test_impala_action_set_and_non_episodic_variant(fake_lab):
    env = dmlab.DMLabEnv(fake_lab.Lab("contributed/dmlab30/rooms_watermaze", ["RGB_INTERLEAVED"]),
                         "rooms_watermaze", action_set="impala", episodic=False, action_repeat=40)  # fmt: skip
    assert env.action_space.n == 9
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(0)
    assert (terminated, truncated) == (False, True)


def test_unknown_level_names_close_matches(fake_lab):
    with pytest.raises(ProtocolError, match="Did you mean: rooms_watermaze"):
        dmlab.check_level("rooms_watermase")
    with pytest.raises(ProtocolError, match="Did you mean: explore_goal_locations_small"):
        make_env(PROTOCOL, "explore_goal_location_small", seed=0)


def test_without_deepmind_lab_the_run_says_how_to_install(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepmind_lab" else real(name, *a))
    with pytest.raises(SuiteNotInstalled, match="Bazel"):
        make_env(PROTOCOL, "rooms_watermaze", seed=0)
    code = cli.main(["run", "random", "dmlab30@1", "--task", "rooms_watermaze", "--seed", "0", "--smoke",
                     "--root", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Bazel" in err and "Traceback" not in err


def test_random_agent_smoke_run_on_the_double(fake_lab, tmp_path):
    code = cli.main(["run", "random", "dmlab30@1", "--task", "rooms_watermaze", "--seed", "0", "--smoke",
                     "--root", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    scores = next(tmp_path.rglob("scores.csv")).read_text().splitlines()
    assert scores[0].startswith("env_step") and len(scores) > 1 and ",frames," in scores[1]


def test_live_deepmind_lab():
    try:
        dmlab.check_installed()
    except SuiteNotInstalled as e:
        pytest.skip(f"DeepMind Lab is not installed (no wheel; Bazel build): {e}")
    env = make_env(PROTOCOL, "explore_goal_locations_small", seed=0)
    assert env.reset()["image"].shape == (64, 64, 3)
    env.step(0)
    env.close()
