"""Plan2Explore (baselines/plan2explore.py) and protocol stages: the disagreement reward on known ensemble outputs,
what one update trains while exploring and while adapting, which policy acts in which stage, the runner's stage
calls, stage validation, bad input. The run-level contract (determinism, exact resume, weights_only) is
tests/test_method_contract.py; the learning check is tests/test_plan2explore_learning.py (slow)."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path
from typing import ClassVar

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, batch, obs  # the same fake pixel batches as PlaNet's tests
from wmbench_baselines.plan2explore import Plan2Explore, Plan2ExploreConfig, intrinsic_reward
from wmbench_baselines.random_agent import RandomAgent

from wmbench.config import ConfigError, make_config
from wmbench.errors import WmbenchError
from wmbench.method import MethodError, register
from wmbench.nn.ensemble import ProbabilisticEnsemble, disagreement
from wmbench.protocols import ProtocolError, ScheduledStage, load_protocol, parse_protocol
from wmbench.runner import run


def tiny(*overrides: str) -> Plan2ExploreConfig:
    return make_config(Plan2ExploreConfig, ["preset=tiny", *overrides])


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


EXPLORE = ScheduledStage("explore", False, 0, 100)
ADAPT = ScheduledStage("adapt", True, 100, 150)


# ------------------------------------------------------------------ the disagreement reward
def test_disagreement_of_known_member_predictions():
    # 3 members, 2 inputs, 2 output dims. Input 0: per dim the members say (0, 2, 4) and (0, 4, 8): variances over
    # members 8/3 and 32/3 (divided by K = 3), mean over dims 20/3. Input 1: the members agree: 0.
    means = torch.tensor([[[0.0, 0.0], [1.0, -1.0]], [[2.0, 4.0], [1.0, -1.0]], [[4.0, 8.0], [1.0, -1.0]]])
    assert torch.allclose(disagreement(means), torch.tensor([20.0 / 3.0, 0.0]))
    with pytest.raises(WmbenchError, match="at least 2 members"):
        disagreement(torch.ones(1, 4, 3))


def test_intrinsic_reward_is_the_scaled_disagreement_of_the_ensemble():
    # members whose output is their own bias (zero weights in the last layer): member k predicts (k, 2k) for every
    # input, so the disagreement is the mean over dims of Var(0, 1, 2) = 2/3 and Var(0, 2, 4) = 8/3, i.e. 5/3
    ensemble = ProbabilisticEnsemble(6, 2, members=3, hidden=8, layers=2, probabilistic=False, activation="relu")
    with torch.no_grad():
        ensemble.layers[-1].weight.zero_()
        ensemble.layers[-1].bias.copy_(torch.tensor([[[0.0, 0.0]], [[1.0, 2.0]], [[2.0, 4.0]]]))
    reward = intrinsic_reward(ensemble, torch.randn(4, 5, 4), torch.randn(4, 5, 2), scale=10.0)
    assert reward.shape == (4, 5)
    assert torch.allclose(reward, torch.full((4, 5), 10.0 * 5.0 / 3.0))


# ------------------------------------------------------------------ one update, two stages
def test_shapes_and_metrics():
    agent = Plan2Explore(IMAGE16, BOX2, tiny(), seed=0)
    action, (deter, stoch, prev) = agent.policy(obs(), None, mode="eval")
    assert action.shape == (1, 2) and action.dtype == np.float32 and deter.shape == (1, 16) and stoch.shape == (1, 4)
    deter, stoch, actions = agent.imagine(agent.nets["explore_actor"], torch.zeros(6, 16), torch.zeros(6, 4))
    assert deter.shape == (4, 6, 16) and stoch.shape == (4, 6, 4) and actions.shape == (3, 6, 2)  # H = 3
    metrics = agent.train_batch(batch())
    assert {"loss/model", "loss/ensemble", "loss/actor", "loss/value", "loss/explore_actor", "loss/explore_value",
            "explore/intrinsic_reward", "imag/return", "grad_norm/ensemble"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["explore/intrinsic_reward"] > 0


def test_one_update_trains_every_network():
    agent = Plan2Explore(IMAGE16, BOX2, tiny(), seed=0)
    before = {name: params(net) for name, net in agent.nets.items()}
    agent.train_batch(batch())
    assert all(changed(before[name], net) for name, net in agent.nets.items())


def test_the_exploration_actor_learns_through_model_and_ensemble_without_changing_them():
    agent = Plan2Explore(IMAGE16, BOX2, tiny(), seed=0)
    for name, opt in agent.opts.items():
        if name != "explore_actor":
            opt.param_groups[0]["lr"] = 0.0
    before = {name: params(net) for name, net in agent.nets.items()}
    agent.train_batch(batch())
    moved = {name for name, net in agent.nets.items() if changed(before[name], net)}
    assert moved == {"explore_actor"}


def test_task_reward_shapes_the_model_only_in_a_stage_that_gives_it():
    # only the reward term left in the model loss: exploring, it trains the reward head and nothing under it
    settings = ("image_scale=0", "kl_scale=0")
    agent = Plan2Explore(IMAGE16, BOX2, tiny(*settings), seed=0)
    agent.set_stage(EXPLORE)
    encoder, reward = params(agent.world_model.encoder), params(agent.world_model.reward)
    agent.train_batch(batch())
    assert changed(reward, agent.world_model.reward) and not changed(encoder, agent.world_model.encoder)
    agent = Plan2Explore(IMAGE16, BOX2, tiny(*settings), seed=0)
    agent.set_stage(ADAPT)
    encoder = params(agent.world_model.encoder)
    agent.train_batch(batch())
    assert changed(encoder, agent.world_model.encoder)


def test_the_explorer_acts_while_exploring_and_the_task_policy_when_adapting_and_in_evaluation():
    agent = Plan2Explore(IMAGE16, BOX2, tiny("seed_episodes=0", "explore_noise=0"), seed=0)
    with torch.no_grad():  # saturated means, smallest std: the task actor pushes to +1, the explorer to -1
        for name, sign in (("actor", 1.0), ("explore_actor", -1.0)):
            agent.nets[name].out.weight.zero_()
            agent.nets[name].out.bias.copy_(torch.tensor([50.0 * sign, 50.0 * sign, -50.0, -50.0]))
    agent.set_stage(EXPLORE)
    assert np.all(agent.policy(obs(), None, mode="train")[0] < -0.99)
    assert np.all(agent.policy(obs(), None, mode="eval")[0] > 0.99)
    agent.set_stage(ADAPT)
    assert np.all(agent.policy(obs(), None, mode="train")[0] > 0.99)
    assert agent.state_dict()["stage"] == {"name": "adapt", "task_reward": True}


def test_state_dict_round_trip_continues_identically():
    a = Plan2Explore(IMAGE16, BOX2, tiny(), seed=0)
    a.set_stage(ADAPT)
    a.train_batch(batch())
    b = Plan2Explore(IMAGE16, BOX2, tiny(), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.task_reward and a.train_batch(batch(seed=1)) == b.train_batch(batch(seed=1))
    with pytest.raises(MethodError, match="ensemble_units"):
        Plan2Explore(IMAGE16, BOX2, tiny("ensemble_units=8"), seed=0).load_state_dict(a.state_dict())


def test_bad_input_names_the_setting():
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in Plan2Explore.supports(vector, BOX2)
    with pytest.raises(MethodError, match="continuous actions"):
        Plan2Explore(IMAGE16, gymnasium.spaces.Discrete(3), tiny())
    with pytest.raises(ConfigError, match="ensemble_members"):
        make_config(Plan2ExploreConfig, ["ensemble_members=1"])
    with pytest.raises(ConfigError, match="Gaussian"):
        make_config(Plan2ExploreConfig, ["classes=32"])
    with pytest.raises(ConfigError, match="imag_horizon"):
        Plan2Explore(IMAGE16, BOX2, Plan2ExploreConfig(imag_horizon=15.0))


# ------------------------------------------------------------------ protocol stages
def staged(stages: list[dict], budget: int = 1000) -> dict:
    data = tomllib.loads(Path(load_protocol("fake_stages@1").path).read_text())
    data["budget"]["agent_steps"] = budget
    data["stages"] = stages
    return data


def test_stages_that_do_not_add_up_to_the_budget_are_refused_with_the_numbers():
    with pytest.raises(ProtocolError, match=r"600 \(explore\) \+ 300 \(adapt\) = 900 agent steps.*1000.*\+100"):
        parse_protocol(staged([{"name": "explore", "agent_steps": 600, "task_reward": False},
                               {"name": "adapt", "agent_steps": 300}]), "x.toml")
    with pytest.raises(ProtocolError, match="must be positive"):
        parse_protocol(staged([{"name": "explore", "agent_steps": 1000}, {"name": "adapt", "agent_steps": 0}]))
    with pytest.raises(ProtocolError, match="duplicate stage names"):
        parse_protocol(staged([{"name": "explore", "agent_steps": 500}, {"name": "explore", "agent_steps": 500}]))
    with pytest.raises(ProtocolError, match="unknown key 'reward'.*task_reward"):
        parse_protocol(staged([{"name": "explore", "agent_steps": 1000, "reward": False}]))
    with pytest.raises(ProtocolError, match="task_reward must be true or false"):
        parse_protocol(staged([{"name": "explore", "agent_steps": 1000, "task_reward": "no"}]))
    with pytest.raises(ProtocolError, match="non-empty list"):
        parse_protocol(staged([]))


def test_stage_schedule_tiles_any_budget_in_proportion():
    p = load_protocol("dmc_vision_fewshot@1")
    assert sum(s.agent_steps for s in p.stages) == p.budget.agent_steps == 575_000
    full = p.stage_schedule()
    assert [(s.name, s.task_reward, s.start, s.end) for s in full] == [
        ("explore", False, 0, 500_000), ("adapt", True, 500_000, 575_000)]
    for budget in (1, 7, 240, 500, 12_345):
        sched = p.stage_schedule(budget)
        assert sched[0].start == 0 and sched[-1].end == budget
        assert all(a.end == b.start for a, b in zip(sched[:-1], sched[1:], strict=True))
        assert abs(sched[0].end - budget * 500 / 575) <= 0.5
    assert load_protocol("dmc_vision@1").stage_schedule() == ()
    zero = load_protocol("dmc_vision_zeroshot@1")
    assert [(s.name, s.task_reward, s.agent_steps) for s in zero.stages] == [("explore", False, 500_000)]


class StageRecorder(RandomAgent):
    """A random agent that records the stages the runner announces and the agent step it was at."""

    calls: ClassVar[list[tuple[str, int]]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step = 0

    def update(self, replay, step):
        self.step = step
        return {}

    def set_stage(self, stage):
        StageRecorder.calls.append((stage.name, self.step))


def test_the_runner_announces_each_stage_before_its_first_step(tmp_path):
    register("stage_recorder_test", f"{__name__}:StageRecorder")
    StageRecorder.calls.clear()
    result = run("stage_recorder_test", "fake_stages@1", "vector_continuous", 0, tmp_path, steps=240, progress=False)
    assert result.status == "finished"
    assert StageRecorder.calls == [("explore", 0), ("adapt", 180)]  # 240 x 1500 / 2000 = 180


def test_methods_and_protocols_that_do_not_fit_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(MethodError, match="fake_stages@1 splits its budget into stages.*dreamerv1"):
        run("dreamerv1", "fake_stages@1", "image_continuous", 0, tmp_path, progress=False)
    with pytest.raises(MethodError, match="needs a protocol whose \\[\\[stages\\]\\].*fake@1 has none"):
        run("plan2explore", "fake@1", "image_continuous", 0, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_recipe_is_the_code_defaults_and_names_the_published_zero_shot_curves():
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names
    from wmbench.results import published

    assert recipe_names("plan2explore") == ["plan2explore_2020_dmc_vision_zeroshot@1"]
    r = load_recipe("plan2explore", "plan2explore_2020_dmc_vision_zeroshot")
    assert r.protocol == "dmc_vision_zeroshot@1" and recipe_differences(Plan2ExploreConfig(), r) == {}
    assert r.sources == load_protocol(r.protocol).reproduce.published_sources
    rows = published(protocol="dmc_vision_zeroshot", source=r.sources[0])
    assert rows.task.nunique() == 20 and rows.seed.nunique() == 3 and set(rows.method) == {"plan2explore"}
    assert set(rows.task) == set(load_protocol(r.protocol).tasks)


def test_fake_walls_stop_the_point_and_end_no_episode_in_a_terminal_state():
    from wmbench.envs.fake import PointEnv

    for walls, terminal_seen in ((True, False), (False, True)):
        env = PointEnv("vector_continuous", max_steps=60, action_repeat=2, walls=walls)
        env.reset(seed=0)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, _ = env.step(np.ones(1, np.float32))
            if walls:
                assert -1.0 <= obs["vector"][0] <= 1.0
        assert terminated == terminal_seen and truncated != terminal_seen
