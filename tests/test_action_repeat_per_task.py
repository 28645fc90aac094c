"""Per-task action repeat (`[env.action_repeat_per_task]`, wmbench/protocols.py): a run steps its env with its task's
repeat and records env steps with it; the budget is the same env steps for every task; bad tables name the entry;
protocols without the table behave as before (hashes, conversions, runs)."""

import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wmbench.envs import make_env
from wmbench.protocols import ProtocolError, list_protocols, load_protocol, parse_protocol
from wmbench.results import convert_units, published
from wmbench.runner import run


def fake_protocol(**env_extra):
    """fake@1 with a per-task table: vector_continuous at repeat 5, the other tasks at env.action_repeat 2."""
    data = tomllib.loads(Path(load_protocol("fake@1").path).read_text())
    data["name"] = "fake_repeats"
    data["budget"]["agent_steps"] = 100  # 200 env steps for every task
    data["smoke"]["agent_steps"] = 50
    data["eval"] = {"every": 0, "episodes": 0}
    data["env"]["action_repeat_per_task"] = {"vector_continuous": 5, **env_extra}
    return parse_protocol(data, "<fake_repeats>")


def test_a_run_steps_with_its_tasks_repeat_and_records_env_steps_with_it(tmp_path):
    p = fake_protocol()
    assert p.repeat_for("vector_continuous") == 5 and p.repeat_for("vector_discrete") == 2 and p.action_repeat == 2
    assert make_env(p, "vector_continuous", 0).env.unwrapped.action_repeat == 5
    assert make_env(p, "vector_discrete", 0).env.unwrapped.action_repeat == 2
    for task, repeat in (("vector_continuous", 5), ("vector_discrete", 2)):
        result = run("random", p, task, 0, tmp_path, progress=False)
        assert result.status == "finished"
        info = __import__("json").loads((result.run_dir / "run.json").read_text())
        assert info["protocol_hash"] == p.hash and info["protocol"] == "fake_repeats@1"
        assert info["budget_agent_steps"] == info["agent_steps"] == 200 // repeat  # the same 200 env steps
        scores = pd.read_csv(result.run_dir / "scores.csv")
        train = scores[scores.phase == "train"]
        assert set(train.step_unit) == {"env_steps"}
        # each episode ends `repeat` env steps per agent step after the previous one (the episode cap is 50 env
        # steps, so at most ceil(50 / repeat) agent steps)
        ends = np.cumsum(train.length.to_numpy()) * repeat
        assert np.array_equal(train.env_step.to_numpy(), ends) and ends[-1] <= 200
        assert train.length.max() <= -(-50 // repeat)


def test_for_task_and_unit_conversions():
    p = fake_protocol()
    q = p.for_task("vector_continuous")
    assert (q.id, q.hash, q.action_repeat, q.budget.agent_steps, q.smoke.agent_steps) == (p.id, p.hash, 5, 40, 20)
    assert q.to_unit(q.budget.agent_steps) == p.to_unit(p.budget.agent_steps) == 200  # the budget, in env steps
    assert p.to_unit(40, task="vector_continuous") == 200 and p.from_unit(200, "env_steps", task="vector_continuous") == 40
    assert p.to_unit(40, task="vector_discrete") == 80 and p.for_task("vector_discrete").budget.agent_steps == 100
    table = pd.DataFrame({
        "source": "x", "method": "m", "protocol": p.id, "task": ["vector_continuous", "vector_discrete"], "seed": "0",
        "env_step": [200.0, 200.0], "score": 1.0, "step_unit": "env_steps", "point_type": "curve",
    })
    assert list(convert_units(table, p, "agent_steps").env_step) == [40.0, 100.0]
    with pytest.raises(ProtocolError, match="unknown task 'vector_continous'"):
        p.repeat_for("vector_continous")


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"image_continous": 2}, r"action_repeat_per_task: 'image_continous' is not a task of this protocol\. "
                                 r"Did you mean: image_continuous"),
        ({"image_discrete": 0}, r"action_repeat_per_task\.image_discrete must be >= 1 .*got 0"),
        ({"image_discrete": -3}, r"action_repeat_per_task\.image_discrete must be >= 1 .*got -3"),
        ({"image_discrete": 2.5}, r"action_repeat_per_task\.image_discrete must be an integer, got 2\.5"),
        ({"image_discrete": 3}, r"action_repeat_per_task\.image_discrete = 3 does not divide the budget's 200 env"),
    ],
)
def test_a_bad_table_names_the_entry(extra, match):
    with pytest.raises(ProtocolError, match=match):
        fake_protocol(**extra)


def test_a_table_needs_a_base_repeat_and_no_stages():
    data = tomllib.loads(Path(load_protocol("fake@1").path).read_text())
    data["env"]["action_repeat_per_task"] = "fast"
    with pytest.raises(ProtocolError, match="action_repeat_per_task must be a non-empty table of task = repeat"):
        parse_protocol(data, "<t>")
    del data["env"]["action_repeat"]
    data["env"]["action_repeat_per_task"] = {"vector_discrete": 1}
    with pytest.raises(ProtocolError, match="needs env.action_repeat beside it"):
        parse_protocol(data, "<t>")
    data["env"]["action_repeat"] = 2
    data["budget"]["step_unit"] = "agent_steps"
    with pytest.raises(ProtocolError, match="needs budget.step_unit 'env_steps' or 'frames' \\(got 'agent_steps'\\)"):
        parse_protocol(data, "<t>")
    data["budget"]["step_unit"] = "env_steps"
    data["stages"] = [{"name": "all", "agent_steps": data["budget"]["agent_steps"]}]
    with pytest.raises(ProtocolError, match="action_repeat_per_task and \\[\\[stages\\]\\] cannot be combined"):
        parse_protocol(data, "<t>")


def test_protocols_without_the_table_are_unchanged():
    # hashes recorded before per-task repeats existed (a versioned protocol never changes)
    assert load_protocol("dmc_vision@1").hash == "f2cc2e980d96a03b"
    assert load_protocol("fake@1").hash == parse_protocol(tomllib.loads(Path(load_protocol("fake@1").path)
                                                                        .read_text()), "<copy>").hash
    for pid in list_protocols():
        p = load_protocol(pid)
        if p.action_repeat_per_task:
            continue
        # the one protocol without the table that reads another benchmark's published data (docs/protocols.md)
        assert p.reproduce.published_name == ("atari100k" if p.name == "atari100k_twm" else "")
        for task in p.tasks[:3]:
            assert p.for_task(task) is p and p.repeat_for(task) == p.action_repeat
            assert p.to_unit(123, task=task) == p.to_unit(123)


def test_dmc_vision_planet_runs_each_task_at_the_papers_repeat_for_1m_env_steps():
    p = load_protocol("dmc_vision_planet@1")
    paper = {"cartpole_swingup": 8, "reacher_easy": 4, "cheetah_run": 4, "ball_in_cup_catch": 4, "finger_spin": 2,
             "walker_walk": 2}
    assert {t: p.repeat_for(t) for t in p.tasks} == paper
    for task, repeat in paper.items():
        q = p.for_task(task)
        assert q.env["action_repeat"] == repeat and q.budget.agent_steps * repeat == 1_000_000
        assert q.smoke.agent_steps * repeat == 1_000 and q.episode_cap == 1000
    rows = published(protocol=p.id, method="planet")  # filed under dmc_vision (reproduce.published_name)
    assert sorted(rows.task) == sorted(paper) and set(rows.protocol) == {p.name} and set(rows.env_step) == {1e6}
    assert p.name not in set(published().protocol)  # the bare tables are untouched
    # the env really repeats: the adapter's repeat comes from the task's entry
    dmc = pytest.importorskip("wmbench.envs.dmc")
    try:
        dmc.check_installed()
    except Exception as e:  # noqa: BLE001 - no dm_control here: the protocol-level facts above still hold
        pytest.skip(f"dm_control unavailable: {e}")
    vector = dataclasses.replace(p, env={**p.env, "obs": "vector"})  # no rendering needed to read the repeat
    assert make_env(vector, "cartpole_swingup", 0).env.unwrapped.repeat == 8
    assert make_env(vector, "walker_walk", 0).env.unwrapped.repeat == 2


def test_report_and_listing_count_a_tasks_own_budget_as_the_full_one(capsys):
    from wmbench.info import cli_list
    from wmbench.report import _reduced_budget

    p = load_protocol("dmc_vision_planet@1")
    assert _reduced_budget({"task": "cartpole_swingup", "budget_agent_steps": 125_000}, p) is None  # full: 1M env
    assert _reduced_budget({"task": "walker_walk", "budget_agent_steps": 500_000}, p) is None
    # smoke and --steps runs: counted at env.action_repeat (2) as budget.agent_steps is, so tasks compare
    assert _reduced_budget({"task": "cartpole_swingup", "smoke": True, "budget_agent_steps": 125}, p) == 500
    assert _reduced_budget({"task": "walker_walk", "smoke": True, "budget_agent_steps": 500}, p) == 500
    assert _reduced_budget({"task": "cartpole_swingup", "budget_agent_steps": 1_000}, p) == 4_000
    vision = load_protocol("dmc_vision@1")  # without the table: as before
    assert _reduced_budget({"task": "walker_walk", "budget_agent_steps": 1_000}, vision) == 1_000
    assert _reduced_budget({"task": "walker_walk", "budget_agent_steps": 500_000}, vision) is None
    assert cli_list(["protocols"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("dmc_vision_planet@1 "))
    assert "1M env_steps (action repeat per task: 2, 4, 8)" in line


def test_a_sweep_expects_each_tasks_own_budget():
    from wmbench.sweep import _expected_identities, make_spec

    spec = make_spec("random", "dmc_vision_planet@1", "0", tasks="cartpole_swingup,walker_walk", smoke=True)
    identities = _expected_identities(spec)
    # the runner records the task's own agent steps (smoke: 1,000 env steps at the task's repeat)
    assert identities[("cartpole_swingup", 0)]["budget_agent_steps"] == 125
    assert identities[("walker_walk", 0)]["budget_agent_steps"] == 500
