"""metaworld@1: the adapter on a double with Meta-World's API (metaworld 3.1.1 cannot be installed beside the DMC
pins), the install error, and the success-rate score rule on runs and on published curves."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from metaworld_double import FakeMetaWorld

from wmbench import cli, results
from wmbench.envs import SuiteNotInstalled, make_env
from wmbench.envs import metaworld as mw
from wmbench.envs.wrappers import ContractEnv
from wmbench.protocols import ProtocolError, load_protocol, parse_protocol

PROTOCOL = load_protocol("metaworld@1")


def adapter(seed: int = 0, **kw) -> tuple[FakeMetaWorld, mw.MetaWorldPixels]:
    raw = FakeMetaWorld(seed=seed)
    return raw, mw.MetaWorldPixels(raw, (64, 64), 2, mw.CORNER2_POSITION, 2, 500, seed, **kw)


def test_protocol_is_mwms_setting_and_its_published_tasks():
    assert PROTOCOL.action_repeat == 2 and PROTOCOL.budget.agent_steps == 250_000
    assert PROTOCOL.budget.step_unit == "env_steps" and PROTOCOL.episode_cap == 500
    assert len(PROTOCOL.tasks) == 50 and set(PROTOCOL.tasks) == mw.TASKS
    assert (PROTOCOL.score.rule, PROTOCOL.score.phase, PROTOCOL.score.achievements) == (
        "success_rate",
        "eval",
        ("success",),
    )
    assert (PROTOCOL.eval.every, PROTOCOL.eval.episodes) == (20_000, 10)
    assert mw.meta_world_name("button_press_topdown_wall") == "button-press-topdown-wall-v3"


def test_spaces_repeat_truncation_and_success_event():
    raw, env = adapter()
    obs, _ = env.reset(seed=3)
    assert env.observation_space["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert env.action_space.shape == (4,) and np.all(env.action_space.low == -1)
    assert np.allclose(raw.model.cam_pos[2], mw.CORNER2_POSITION)  # MWM's corner2 placement, at every reset
    _, reward, terminated, truncated, info = env.step(np.zeros(4))
    assert raw.curr_path_length == 2 and not terminated and not truncated  # action repeat 2
    assert reward == pytest.approx(2 * (1 - np.linalg.norm(raw.goal)))  # rewards of both sim steps summed
    assert info["success"] is False and "achievements" not in info  # reported only when the episode ends
    steps = 1
    while not truncated:
        _, _, terminated, truncated, info = env.step(np.zeros(4))
        steps += 1
        assert not terminated  # Meta-World episodes only end by the time limit
    assert steps == 250 and raw.curr_path_length == 500 and info["achievements"] == []


def test_an_episode_succeeds_when_any_step_succeeded():
    raw, env = adapter()
    env.reset(seed=0)
    direction = np.append(np.clip(raw.goal / 0.2, -1, 1), 0.0)
    for _ in range(5):  # reach the goal ...
        env.step(direction)
    assert env._success
    truncated, info = False, {}
    while not truncated:  # ... then move away: the episode still counts as a success
        _, _, _, truncated, info = env.step(np.array([1.0, 1.0, 1.0, 0.0]))
    assert info["achievements"] == ["success"]


def test_contract_env_wraps_it():
    _, env = adapter()
    contract = ContractEnv(env, seed=0)
    first = contract.reset()
    assert first["is_first"] and set(first) >= {"image", "reward", "is_last", "is_terminal"}
    step = contract.step(contract.act_space.sample())
    assert not step["is_first"] and step["image"].shape == (64, 64, 3)


def test_without_metaworld_the_run_says_why_and_how_to_install(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "metaworld" else real(name, *a)
    )
    with pytest.raises(
        SuiteNotInstalled, match=r"mujoco==3.3.0.*mujoco==3.17.0.*separate virtual environment"
    ):
        make_env(PROTOCOL, "reach", seed=0)
    code = cli.main(
        ["run", "mwm", "metaworld@1", "--task", "reach", "--seed", "0", "--smoke", "--root", str(tmp_path)]
    )
    captured = capsys.readouterr()
    assert code == 2 and "pip install -e '.[metaworld]'" in captured.err and "Traceback" not in captured.err


def test_metaworld_beside_the_wrong_mujoco_is_refused_with_both_versions(monkeypatch):
    import importlib.metadata

    import mujoco

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "metaworld" else real(name, *a)
    )
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: ["gymnasium>=1.1", "mujoco==3.3.0"])
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "3.1.1")
    if mujoco.__version__ == "3.3.0":
        pytest.skip("mujoco 3.3.0 is what metaworld needs")
    with pytest.raises(
        SuiteNotInstalled, match=rf"needs mujoco==3.3.0, but mujoco {mujoco.__version__} is installed"
    ):
        mw.check_installed()


def _patch_double(monkeypatch):
    monkeypatch.setattr(mw, "check_installed", lambda: None)
    monkeypatch.setattr(mw, "_metaworld_env", lambda task, seed, size, camera: (FakeMetaWorld(size, seed), 2))


def test_random_run_on_the_double_records_success_and_scores_the_success_rate(monkeypatch, tmp_path):
    _patch_double(monkeypatch)
    code = cli.main(["run", "random", "metaworld@1", "--task", "reach", "--seed", "0", "--steps", "1000",
                     "--root", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    scores = pd.read_csv(next(tmp_path.rglob("scores.csv")), dtype={"achievements": str})
    assert list(scores.columns)[-1] == "achievements" and len(scores[scores.phase == "train"]) == 4
    evals = scores[scores.phase == "eval"]
    assert len(evals) == 10 and set(evals["achievements"].fillna("")) <= {"", "success"}
    table = results.load_scores([next(tmp_path.rglob("scores.csv")).parent])
    expected = float((evals["achievements"].fillna("") == "success").mean())
    assert results.final_score(table, PROTOCOL, budget=2000) == pytest.approx(expected)


def test_success_rate_rule_on_run_episodes_and_on_published_rates():
    runs = pd.DataFrame({
        "method": "m", "task": "reach", "seed": 0, "env_step": [480_000, 500_000, 500_000, 500_000, 500_000],
        "score": [900.0, 10.0, 20.0, 30.0, 40.0], "phase": "eval",
        "achievements": ["success", "success", "", "success", ""],
    })  # fmt: skip
    # the 480k episode is outside the last 20k env steps; 2 of the 4 inside succeeded
    assert results.final_score(runs, PROTOCOL) == pytest.approx(0.5)
    published = pd.DataFrame({
        "source": "mwm:x", "method": "mwm", "protocol": "metaworld", "task": "reach", "seed": ["0", "0", "1"],
        "env_step": [470_000, 490_000, 490_000], "score": [0.2, 0.8, 1.0], "step_unit": "env_steps",
        "point_type": "curve",
    })  # fmt: skip
    finals = results.final_scores(published, PROTOCOL)
    assert finals.set_index("seed")["final"].to_dict() == {"0": 0.8, "1": 1.0}


def test_success_rate_needs_exactly_one_event_name():
    base = {
        "name": "x",
        "version": 1,
        "suite": "fake",
        "tasks": ["vector_discrete"],
        "budget": {"agent_steps": 100},
    }
    for bad in ([], ["success", "other"], ["bad name"]):
        with pytest.raises(ProtocolError, match="success_rate.*one event name"):
            parse_protocol({**base, "score": {"rule": "success_rate", "achievements": bad}})
    assert (
        parse_protocol({**base, "score": {"rule": "success_rate", "achievements": ["success"]}}).score.rule
        == "success_rate"
    )


def test_live_metaworld():
    try:
        mw.check_installed()
    except SuiteNotInstalled as e:
        pytest.skip(f"metaworld is not installed here (it pins mujoco==3.3.0 against wmbench's 3.17.0): {e}")
    env = make_env(PROTOCOL, "reach", seed=0)
    step = env.reset()
    assert step["image"].shape == (64, 64, 3)
    for _ in range(5):
        step = env.step(env.act_space.sample())
    env.close()


def test_mwm_runs_on_the_double_under_the_harness(monkeypatch, tmp_path):
    _patch_double(monkeypatch)
    code = cli.main(["run", "mwm", "metaworld@1", "--task", "peg_insert_side", "--seed", "0", "--steps", "300",
                     "--set", "preset=tiny", "--set", "patch_size=16", "--set", "conv_stages=4", "--root",
                     str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    metrics = (next(tmp_path.rglob("metrics.jsonl"))).read_text()
    assert "mae/pixels" in metrics and "loss/feature" in metrics  # both schedules ran on the 64x64 images
