"""Director (baselines/director.py): the goal autoencoder, the goal (max-cosine) and exploration rewards, goals held
for K steps in imagination and in the environment, what trains what, resume, settings and bad input. The run-level
contract (determinism, exact resume, weights_only) is tests/test_method_contract.py (fake@1 image_continuous)."""

from __future__ import annotations

import io

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, IMAGE64, batch, obs  # the same fake pixel batches as PlaNet's tests
from wmbench_baselines.director import (
    Director,
    DirectorConfig,
    GoalAutoencoder,
    exploration_reward,
    goal_reward,
    parameter_counts,
    segments,
)

from wmbench.config import ConfigError, make_config
from wmbench.method import MethodError
from wmbench.nn.returns import MomentNormalizer


def tiny(*overrides: str) -> DirectorConfig:
    return make_config(DirectorConfig, ["preset=tiny", "prefill=0", *overrides])


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


# ------------------------------------------------------------------ goal autoencoder and rewards
def test_goal_autoencoder_codes_and_kl_to_the_uniform_prior():
    torch.manual_seed(0)
    ae = GoalAutoencoder(goal_dim=6, groups=8, classes=8, units=32, layers=2)
    goals = torch.randn(5, 6)
    logp = ae.encode(goals)
    assert logp.shape == (5, 8, 8) and torch.allclose(logp.exp().sum(-1), torch.ones(5, 8))
    assert ae.decode(torch.nn.functional.one_hot(torch.zeros(5, 8, dtype=torch.long), 8).float()).shape == (
        5,
        6,
    )
    _, rec, kl = ae.loss(goals, torch.Generator().manual_seed(0), kl_scale=1.0)
    assert rec.shape == (5,) and (kl >= -1e-6).all()
    with (
        torch.no_grad()
    ):  # a uniform encoder has no KL to the uniform prior; a sure one has groups x ln(classes)
        ae.enc.out.weight.zero_()
        ae.enc.out.bias.zero_()
    assert torch.allclose(ae.loss(goals, None, 1.0)[2], torch.zeros(5), atol=1e-6)
    with torch.no_grad():
        ae.enc.out.bias.copy_(torch.tensor([100.0, 0, 0, 0, 0, 0, 0, 0]).repeat(8))
    assert torch.allclose(ae.loss(goals, None, 1.0)[2], torch.full((5,), 8 * np.log(8)), atol=1e-3)


def test_goal_autoencoder_learns_to_reconstruct_and_novel_states_earn_exploration_reward():
    torch.manual_seed(0)
    ae = GoalAutoencoder(goal_dim=4, groups=4, classes=4, units=32, layers=1)
    gen = torch.Generator().manual_seed(1)
    seen = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]).repeat(8, 1)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    before = ae.loss(seen, gen, 0.0)[1].mean().item()
    for _ in range(300):
        loss, _, _ = ae.loss(seen, gen, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = ae.loss(seen, gen, 0.0)[1].mean().item()
    assert after < 0.1 * before  # the codes carry the goals
    novel = torch.tensor([[0, 0, 0, 3.0], [-2.0, 0, 2.0, 0]])
    with torch.no_grad():
        assert exploration_reward(ae, novel, gen).min() > 5 * exploration_reward(ae, seen[:3], gen).max()


def test_max_cosine_goal_reward():
    g = torch.tensor([[3.0, 4.0]])
    assert goal_reward(g, g).item() == pytest.approx(1.0)  # reaching the goal
    assert goal_reward(g, 2 * g).item() == pytest.approx(
        0.5
    )  # overshooting the goal's length is not rewarded more
    assert goal_reward(g, 0.5 * g).item() == pytest.approx(0.5)
    assert goal_reward(g, torch.tensor([[-4.0, 3.0]])).item() == pytest.approx(0.0, abs=1e-6)  # orthogonal
    assert goal_reward(g, -g).item() == pytest.approx(-1.0)
    assert goal_reward(torch.zeros(1, 2), torch.zeros(1, 2)).item() == 0.0  # finite at the origin
    h = torch.randn(100, 2)
    assert (goal_reward(g.expand(100, 2), h) <= 1.0 + 1e-6).all()


def test_segments_share_their_boundary_states():
    x = torch.arange(5.0)[:, None].expand(5, 2)  # H = 4 steps, 2 rollouts
    seg = segments(x, 2)
    assert seg.shape == (3, 4) and seg[:, 0].tolist() == [0, 1, 2] and seg[:, 2].tolist() == [2, 3, 4]


# ------------------------------------------------------------------ the agent
def test_imagined_goals_change_only_every_k_steps():
    agent = Director(IMAGE16, BOX2, tiny("skill_duration=2", "imag_horizon=6"), seed=0)
    traj = agent.imagine(torch.zeros(5, 16), torch.zeros(5, agent.rssm.stoch_dim))
    assert (
        traj["deter"].shape == (7, 5, 16)
        and traj["action"].shape == (6, 5, 2)
        and traj["goal"].shape == (7, 5, 16)
    )
    for t in (1, 3, 5):  # within a period the code and the goal are held
        assert torch.equal(traj["goal"][t], traj["goal"][t - 1]) and torch.equal(
            traj["code"][t], traj["code"][t - 1]
        )
    assert set(traj["code"].unique().tolist()) == {0.0, 1.0}  # one-hot codes
    assert not torch.equal(traj["goal"][0], traj["goal"][2])  # a new goal at the period's start (5 rollouts)


def test_the_manager_sets_a_new_goal_every_k_env_steps_and_at_episode_starts():
    agent = Director(
        IMAGE16, BOX2, tiny("skill_duration=3", "imag_horizon=6", "skill_groups=4", "skill_classes=8"), seed=0
    )
    state, goals = None, []
    for step in range(7):
        action, state = agent.policy(obs(first=step == 0, seed=step), state, mode="train")
        goals.append(state[4].clone())
        assert action.shape == (1, 2) and np.all(np.abs(action) <= 1)
    held = [torch.equal(goals[t], goals[t - 1]) for t in range(1, 7)]
    assert held == [True, True, False, True, True, False]  # steps 3 and 6 switch
    _, state = agent.policy(obs(first=True, seed=9), state, mode="train")
    assert state[3].item() == 1  # the period restarts with the episode


def test_worker_learns_through_the_model_which_behaviour_never_changes():
    agent = Director(IMAGE16, BOX2, tiny(), seed=0)
    _, _, seq = agent.world_model.loss(batch(3, 6), agent.gen_train, free_nats=1.0)
    losses, stats = agent.behaviour_losses(seq)
    losses["worker"].backward(retain_graph=True)
    assert sum(p.grad.abs().sum() for p in agent.nets["worker"].parameters()) > 0
    assert all(
        p.grad is None for p in agent.world_model.parameters()
    )  # gradients pass through, never into it
    assert all(p.grad is None for p in agent.goal_ae.parameters())
    losses["manager"].backward(retain_graph=True)
    assert sum(p.grad.abs().sum() for p in agent.nets["manager"].parameters()) > 0
    assert {"reward/extr", "reward/expl", "reward/goal", "manager/return_extr", "manager/return_expl"} <= set(
        stats
    )
    agent = Director(IMAGE16, BOX2, tiny(), seed=0)
    nets = {name: params(agent.nets[name]) for name in agent.nets}
    metrics = agent.train_batch(batch(3, 6))
    assert all(changed(before, agent.nets[name]) for name, before in nets.items())
    assert all(np.isfinite(v) for v in metrics.values())


def test_state_dict_round_trip_continues_identically():
    a = Director(IMAGE16, BOX2, tiny(), seed=0)
    a.train_batch(batch(3, 6))
    b = Director(IMAGE16, BOX2, tiny(), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(batch(3, 6, seed=1)) == b.train_batch(batch(3, 6, seed=1))
    assert np.array_equal(a.policy(obs(), None)[0], b.policy(obs(), None)[0])
    with pytest.raises(MethodError, match="skill_classes"):
        Director(IMAGE16, BOX2, tiny("skill_classes=5"), seed=0).load_state_dict(a.state_dict())


def test_official_settings_and_size():
    c = DirectorConfig()
    assert (
        c.skill_duration,
        c.imag_horizon,
        c.skill_groups,
        c.skill_classes,
        c.manager_extr,
        c.manager_expl,
    ) == (8, 16, 8, 8, 1.0, 0.1)
    assert (c.goal_kl, c.gamma, c.lam, c.batch_size, c.batch_length, c.train_every, c.prefill) == (
        1.0,
        0.99,
        0.95,
        16,
        64,
        16,
        10000,
    )
    # the released code's (danijar/director a6a649e configs.yaml defaults), every one a default here
    assert make_config(DirectorConfig, RELEASED) == c
    assert (c.stoch, c.classes, c.kl_balance, c.kl_target, c.goal_kl_target, c.worker_ent_target) == (
        32, 32, 0.8, 3.5, 10.0, 0.5
    )
    counts = parameter_counts(IMAGE64, gymnasium.spaces.Box(-1, 1, (6,), np.float32), c)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total") and counts["goal_ae"] > 0


def test_goal_period_zero_and_other_bad_input():
    with pytest.raises(ConfigError, match="skill_duration"):
        make_config(DirectorConfig, ["skill_duration=0"])
    with pytest.raises(ConfigError, match=r"goal period K.*got 0.*skill_duration=8"):
        Director(IMAGE16, BOX2, DirectorConfig(preset="tiny", skill_duration=0, prefill=0))  # built in code
    with pytest.raises(ConfigError, match=r"imag_horizon \(5\) must be a multiple of skill_duration \(2\)"):
        Director(IMAGE16, BOX2, tiny("imag_horizon=5"))
    with pytest.raises(MethodError, match="Discrete"):
        Director(IMAGE16, gymnasium.spaces.MultiBinary(3), tiny())
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in Director.supports(vector, BOX2)


def test_discrete_actions_train_the_worker_by_reinforce(tmp_path):
    from wmbench.testing import check_method

    agent = Director(IMAGE16, gymnasium.spaces.Discrete(3), tiny(), seed=0)
    action, state = agent.policy(obs(), None, mode="train")
    assert (
        action.shape == (1,) and 0 <= action[0] < 3 and state[2].sum().item() == 1
    )  # one-hot previous action
    data = batch(3, 6)
    data["action"] = np.random.default_rng(0).integers(0, 3, (3, 6))  # indices, as the replay holds them
    onehot = {**data, "action": np.eye(3, dtype=np.float32)[data["action"]]}
    _, _, seq = agent.world_model.loss(onehot, agent.gen_train, free_nats=1.0)
    losses, _ = agent.behaviour_losses(seq)
    losses["worker"].backward(retain_graph=True)
    assert sum(p.grad.abs().sum() for p in agent.nets["worker"].parameters()) > 0
    assert all(
        p.grad is None for p in agent.world_model.parameters()
    )  # REINFORCE: no gradient through the model
    assert all(np.isfinite(v) for v in agent.train_batch(data).values())  # index actions from the replay
    check_method("director", tmp_path, protocol="fake@1", task="image_discrete", overrides=["preset=tiny"])


# ------------------------------------------------------------------ the released code's options (issue 23)
RELEASED = [
    "latent=categorical", "free_nats=0.0", "kl_adapt=true", "kl_scale=1.0", "goal_kl=1.0", "goal_kl_adapt=true",
    "ent_adapt=true", "worker_ent=1.0", "manager_ent=1.0", "critic_loss=symlog", "return_norm=true",
    "adv_norm=running",
]  # fmt: skip
BEFORE = [  # the defaults before issue 23 (docs/director.md)
    "latent=gaussian", "free_nats=1.0", "kl_adapt=false", "goal_kl=0.0", "goal_kl_adapt=false", "ent_adapt=false",
    "worker_ent=3e-3", "manager_ent=3e-3", "critic_loss=mse", "return_norm=false", "adv_norm=batch",
]  # fmt: skip


def test_categorical_latents_are_one_hot_and_train_with_the_balanced_kl(monkeypatch):
    agent = Director(IMAGE16, BOX2, tiny("latent=categorical", "kl_balance=0.7", "free_nats=0.5"), seed=0)
    rssm = agent.rssm
    assert (rssm.latent, rssm.stoch, rssm.classes, rssm.stoch_dim) == ("categorical", 4, 4, 16)
    calls = []
    balanced = type(rssm).balanced_kl_loss

    def spy(self, post, prior, balance, free):
        calls.append((balance, free))
        return balanced(self, post, prior, balance, free)

    monkeypatch.setattr(type(rssm), "balanced_kl_loss", spy)
    agent.train_batch(batch(3, 6))
    assert calls == [(0.7, 0.5)]  # the KL-balanced loss with free nats on its batch means
    _, _, seq = agent.world_model.loss(batch(3, 6), agent.gen_train, free_nats=0.0, kl_balance=0.8)
    z = seq["stoch"].reshape(3, 6, 4, 4)
    assert torch.equal(z.sum(-1), torch.ones(3, 6, 4)) and set(z.unique().tolist()) == {0.0, 1.0}
    traj = agent.imagine(seq["deter"][:, 0], seq["stoch"][:, 0])
    assert set(traj["stoch"].unique().tolist()) == {0.0, 1.0}  # imagined latents are one-hot too
    action, state = agent.policy(obs(), None, mode="train")
    assert state[1].shape == (1, 16) and state[1].sum().item() == 4
    gaussian = Director(IMAGE16, BOX2, tiny("latent=gaussian"), seed=0)
    calls.clear()
    gaussian.train_batch(batch(3, 6))
    assert calls == [] and gaussian.rssm.latent == "gaussian"


def test_adaptive_kl_weights_move_towards_their_targets():
    agent = Director(IMAGE16, BOX2, tiny("latent=categorical", "kl_adapt=true", "kl_target=1e6"), seed=0)
    metrics = agent.train_batch(batch(3, 6))  # the KL is far below 1e6 nats: its weight shrinks from 1
    assert metrics["scale/kl"] == pytest.approx(1 / 1.1)
    agent = Director(IMAGE16, BOX2, tiny("kl_adapt=true", "kl_scale=0.5", "kl_target=1e-3", "free_nats=0"), seed=0)
    assert agent.train_batch(batch(3, 6))["scale/kl"] == pytest.approx(0.55)  # far above: grows
    agent = Director(IMAGE16, BOX2, tiny("goal_kl=1.0", "goal_kl_adapt=true"), seed=0)
    kl = [agent.train_batch(batch(3, 6, seed=i))["goal/kl"] for i in range(3)]
    assert max(kl) < 10 / 1.1  # below the code's 10-nat target: the goal autoencoder's KL weight shrinks
    assert agent.controls["goal_kl"].scale.item() == pytest.approx(1.1**-3)
    assert "scale/kl" not in Director(IMAGE16, BOX2, tiny(*BEFORE), seed=0).train_batch(batch(3, 6))


def test_adaptive_entropy_scales_per_action_dim_and_code_group_move_towards_the_target():
    agent = Director(IMAGE16, BOX2, tiny("ent_adapt=true", "worker_ent=1.0", "manager_ent=1.0"), seed=0)
    assert agent.controls["worker_ent"].scale.shape == (2,) and agent.controls["manager_ent"].scale.shape == (2,)
    # normalised entropy below the target: the bonus grows; above: it shrinks; one scale per dim
    bonus = agent.entropy_term("worker", torch.zeros(5), torch.tensor([[0.1, 0.9]]).expand(5, 2))
    assert torch.allclose(agent.controls["worker_ent"].scale, torch.tensor([1.1, 1 / 1.1]))
    assert torch.allclose(bonus, torch.full((5,), 1.1 * 0.1 + 0.9 / 1.1))
    # the worker's Normal starts near its largest std (normalised entropy ~0.96 > 0.5): both scales fall
    dist = agent.worker_dist(torch.zeros(4, agent.rssm.feat_dim), torch.zeros(4, 16))
    norm_ent = agent.worker_entropy_normalised(dist)
    assert norm_ent.shape == (4, 2) and ((norm_ent > 0.9) & (norm_ent <= 1)).all()
    low = DirectorConfig().worker_min_std
    assert agent.worker_entropy_normalised((dist[0], torch.full_like(dist[1], low))).abs().max() < 1e-5
    agent = Director(IMAGE16, BOX2, tiny("ent_adapt=true", "worker_ent=1.0", "manager_ent=1.0"), seed=0)
    for i in range(3):
        metrics = agent.train_batch(batch(3, 6, seed=i))
    assert metrics["scale/worker_ent"] == pytest.approx(1.1**-3) and metrics["scale/manager_ent"] < 1.0
    discrete = Director(IMAGE16, gymnasium.spaces.Discrete(3), tiny("ent_adapt=true"), seed=0)
    assert discrete.controls["worker_ent"].scale.shape == (1,)
    logp = torch.log(torch.full((2, 3), 1 / 3))
    assert torch.allclose(discrete.worker_entropy_normalised((logp,)), torch.ones(2, 1))  # uniform: most entropy


def test_symlog_critics_predict_symlog_values_and_regress_in_symlog_space():
    agent = Director(IMAGE16, BOX2, tiny("critic_loss=symlog"), seed=0)
    critic = agent.nets["manager_extr"]
    with torch.no_grad():
        critic.out.weight.zero_()
        critic.out.bias.fill_(float(np.log1p(5.0)))  # symlog(5)
    feat = torch.randn(3, 4, agent.rssm.feat_dim)
    assert torch.allclose(agent.critic_value(critic, feat), torch.full((3, 4), 5.0))
    weight = torch.ones(3, 4)
    assert agent.critic_loss("manager_extr", feat, torch.full((2, 4), 5.0), weight).item() == pytest.approx(0.0)
    expected = (np.log1p(5.0) - np.log1p(100.0)) ** 2  # squared error in symlog space, no half
    assert agent.critic_loss("manager_extr", feat, torch.full((2, 4), 100.0), weight).item() == pytest.approx(
        expected, rel=1e-5
    )
    mse = Director(IMAGE16, BOX2, tiny("critic_loss=mse"), seed=0)
    with torch.no_grad():
        mse.nets["manager_extr"].out.weight.zero_()
        mse.nets["manager_extr"].out.bias.fill_(5.0)
    assert torch.allclose(mse.critic_value(mse.nets["manager_extr"], feat), torch.full((3, 4), 5.0))
    assert np.isfinite(list(agent.train_batch(batch(3, 6)).values())).all()


def test_return_and_running_advantage_normalisers_update_and_scale():
    agent = Director(IMAGE16, BOX2, tiny("return_norm=true", "adv_norm=batch"), seed=0)
    ret, value = torch.tensor([2.0, 6.0]), torch.tensor([1.0, 1.0])
    adv = agent.advantage("extr", ret, value)
    _, inv_std = agent.controls["ret_extr"].stats()
    assert torch.allclose(adv, (ret - value) * inv_std) and inv_std.item() != 1.0
    plain = Director(IMAGE16, BOX2, tiny("return_norm=false"), seed=0)
    assert torch.equal(plain.advantage("extr", ret, value), ret - value)
    agent = Director(IMAGE16, BOX2, tiny("return_norm=true", "adv_norm=batch"), seed=0)
    agent.train_batch(batch(3, 6))
    steps = {name: int(m.step) for name, m in agent.controls.items() if isinstance(m, MomentNormalizer)}
    assert steps == {"ret_goal": 1, "ret_extr": 1, "ret_expl": 1, "adv_worker": 0, "adv_manager": 0}
    agent = Director(IMAGE16, BOX2, tiny("adv_norm=running", "return_norm=false"), seed=0)
    agent.train_batch(batch(3, 6))
    steps = {name: int(m.step) for name, m in agent.controls.items() if isinstance(m, MomentNormalizer)}
    assert steps == {"ret_goal": 0, "ret_extr": 0, "ret_expl": 0, "adv_worker": 1, "adv_manager": 1}


def test_running_advantages_backpropagate_through_the_bootstrap_values(monkeypatch):
    """With no goal reward the worker's return is its slow critic's bootstrap alone: the code differentiates it
    through the imagined states (`adv_norm=running`); the batch mode's return carries no gradient then."""
    import wmbench_baselines.director as director

    monkeypatch.setattr(director, "goal_reward", lambda goal, deter: 0.0 * deter.sum(-1))
    grads = {}
    for mode in ("batch", "running"):
        agent = Director(IMAGE16, BOX2, tiny(f"adv_norm={mode}", "ent_adapt=false", "worker_ent=0"), seed=0)
        _, _, seq = agent.world_model.loss(batch(3, 6), agent.gen_train, free_nats=1.0)
        losses, _ = agent.behaviour_losses(seq)
        losses["worker"].backward()
        grads[mode] = sum(p.grad.abs().sum().item() for p in agent.nets["worker"].parameters())
        assert all(p.grad is None for p in agent.slow.parameters())  # never into the slow critic
    assert grads["batch"] == 0.0 and grads["running"] > 0


def test_released_settings_round_trip_and_refuse_checkpoints_without_their_state():
    a = Director(IMAGE16, BOX2, tiny(*RELEASED), seed=0)
    a.train_batch(batch(3, 6))
    b = Director(IMAGE16, BOX2, tiny(*RELEASED), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(batch(3, 6, seed=1)) == b.train_batch(batch(3, 6, seed=1))
    old = a.state_dict()
    del old["controls"]  # a checkpoint written before the options existed
    with pytest.raises(MethodError, match="adaptive scales or running normalisers"):
        Director(IMAGE16, BOX2, tiny(*RELEASED), seed=0).load_state_dict(old)
    plain = Director(IMAGE16, BOX2, tiny(*BEFORE), seed=0)
    state = plain.state_dict()
    del state["controls"]
    Director(IMAGE16, BOX2, tiny(*BEFORE), seed=0).load_state_dict(state)  # nothing of them is used: loads
    with pytest.raises(ConfigError, match="no uniform mix"):
        make_config(DirectorConfig, ["unimix=0.01"])


def test_contract_with_the_settings_before_issue_23(tmp_path):
    """The released settings are the defaults (tests/test_method_contract.py, and image_discrete above)."""
    from wmbench.testing import check_method

    check_method("director", tmp_path, protocol="fake@1", task="image_continuous", overrides=["preset=tiny", *BEFORE])
