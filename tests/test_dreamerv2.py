"""DreamerV2 (baselines/dreamerv2.py): shapes, the paper's settings and size, KL balancing, both actor gradients,
the slow critic, the schedule, bad input. The run-level contract (determinism, exact resume, weights_only) is
tests/test_method_contract.py (fake@1 image_discrete: REINFORCE) and `test_contract_with_continuous_actions` here
(image_continuous: dynamics backpropagation)."""

from __future__ import annotations

import io

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, IMAGE64, batch, obs  # the same fake pixel batches as PlaNet's tests
from wmbench_baselines.dreamerv2 import DMC_VISION, DreamerV2, DreamerV2Config, parameter_counts

from wmbench.config import ConfigError, make_config
from wmbench.errors import WmbenchError
from wmbench.method import MethodError
from wmbench.nn.rssm import RSSM

DISCRETE3 = gymnasium.spaces.Discrete(3)


def tiny(*overrides: str) -> DreamerV2Config:
    return make_config(DreamerV2Config, ["preset=tiny", "prefill=0", *overrides])


def discrete_batch(seed: int = 0) -> dict[str, np.ndarray]:
    data = batch(seed=seed)
    data["action"] = np.random.default_rng(seed).integers(0, 3, data["reward"].shape)
    return data


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize("act_space", [BOX2, DISCRETE3], ids=["continuous", "discrete"])
def test_shapes_actions_and_metrics(act_space):
    agent = DreamerV2(IMAGE16, act_space, tiny(), seed=0)
    action, (deter, stoch, prev) = agent.policy(obs(), None, mode="train")
    assert deter.shape == (1, 16) and stoch.shape == (1, 4 * 4)  # 4 one-hot groups of 4 classes
    assert torch.equal(stoch.reshape(1, 4, 4).sum(-1), torch.ones(1, 4))
    if act_space is BOX2:
        assert action.shape == (1, 2) and action.dtype == np.float32 and np.all(np.abs(action) < 1)
    else:
        assert action.shape == (1,) and 0 <= action[0] < 3 and prev.sum() == 1
    eval_action, _ = agent.policy(obs(), None, mode="eval")
    assert eval_action.shape == action.shape
    metrics = agent.train_batch(discrete_batch() if act_space is DISCRETE3 else batch())
    assert {"loss/image", "loss/reward", "loss/discount", "kl", "loss/kl", "loss/model", "loss/actor",
            "loss/critic", "grad_norm/model", "imag/return", "policy/entropy"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())


def test_paper_settings_and_size():
    c = DreamerV2Config()  # Table D.1 (Atari)
    assert (c.stoch, c.classes, c.deter, c.hidden, c.loss_kl, c.kl_balance, c.model_lr) == (32, 32, 600, 600, 0.1, 0.8, 2e-4)
    assert (c.imag_horizon, c.gamma, c.lam, c.actor_ent, c.actor_lr, c.critic_lr, c.slow_critic_every) == (
        15, 0.995, 0.95, 1e-3, 4e-5, 1e-4, 100)
    assert (c.batch_size, c.batch_length, c.train_every, c.layers, c.units, c.grad_clip, c.adam_eps, c.weight_decay) == (
        50, 50, 4, 4, 400, 100.0, 1e-5, 1e-6)
    assert c.reward_transform == "tanh" and c.pred_discount
    # App. C: "a change from 13M parameters to 22M parameters" (64x64 grayscale Atari, 18 actions)
    gray = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 1), np.uint8)}
    total = parameter_counts(gray, gymnasium.spaces.Discrete(18), c)["total"]
    assert abs(total - 22e6) / 22e6 < 0.02, total
    dmc = parameter_counts(IMAGE64, gymnasium.spaces.Box(-1, 1, (6,), np.float32), make_config(DreamerV2Config, DMC_VISION))
    assert "discount" not in dmc and dmc["total"] == 15_604_385


def test_dmc_vision_defaults_come_from_the_protocol():
    from wmbench.method import method_config
    from wmbench.protocols import load_protocol

    c = method_config(DreamerV2, load_protocol("dmc_vision@1"), [])
    assert (c.deter, c.model_lr, c.kl_free, c.loss_kl, c.actor_ent, c.gamma, c.pred_discount) == (
        200, 3e-4, 1.0, 1.0, 1e-4, 0.99, False)
    assert (c.batch_size, c.train_every, c.prefill, c.pretrain, c.reward_transform) == (16, 5, 1000, 100, "identity")
    assert method_config(DreamerV2, load_protocol("fake@1"), []) == DreamerV2Config()


def test_rssm_is_dreamerv2s_layer_norm_gru_with_straight_through_latents():
    rssm = RSSM(8, 2, deter=6, hidden=5, stoch=3, classes=4, blocks=1, norm="none", unimix=0.0, img_layers=1,
                core="dense", act="elu", gru_norm="layer")
    norms = [m for m in rssm.modules() if type(m).__name__ == "Norm" and m.kind != "none"]
    assert norms == [rssm.gru_norm] and rssm.gru_norm.kind == "layer"  # LayerNorm on the GRU gates only
    stats = rssm.prior(torch.randn(2, 6))
    assert torch.allclose(stats.exp().sum(-1), torch.ones(2, 3))  # no uniform mix: plain softmax
    z = rssm.sample(stats, torch.Generator().manual_seed(0))
    assert set(z.detach().unique().tolist()) == {0.0, 1.0}
    (z * torch.randn(z.shape)).sum().backward()  # straight-through: the one-hot sample passes gradients
    assert rssm.prior_net.out.weight.grad.abs().sum() > 0


def test_kl_balancing_scales_the_priors_gradient_by_alpha_and_free_nats_clip_the_mean():
    def prior_grad(balance: float, free: float = 0.0) -> tuple[torch.Tensor, float]:
        agent = DreamerV2(IMAGE16, BOX2, tiny(f"kl_balance={balance}", f"kl_free={free}"), seed=0)
        _, terms, _ = agent.world_model_loss(batch())
        terms["loss/kl"].backward()
        grad = agent.rssm.prior_net.out.weight.grad
        return (grad.clone() if grad is not None else torch.zeros(())), float(terms["loss/kl"].detach())

    # the prior p only learns from alpha KL[sg(q) || p]; the posterior's term (1 - alpha) KL[q || sg(p)] holds it fixed
    g8, kl8 = prior_grad(0.8)
    g4, kl4 = prior_grad(0.4)
    assert g8.abs().sum() > 0 and torch.allclose(g8, 2 * g4, rtol=1e-4, atol=1e-8)
    assert kl8 == pytest.approx(kl4)  # the two KL terms have the same value: balancing changes only gradients
    zero, kl = prior_grad(0.8, free=1000.0)  # free nats on the batch mean: below them no gradient at all
    assert kl == 1000.0 and zero.abs().sum() == 0


def test_dynamics_backprop_trains_only_the_actor_through_the_world_model():
    agent = DreamerV2(IMAGE16, BOX2, tiny("model_lr=0", "critic_lr=0", "weight_decay=0"), seed=0)
    assert agent.dynamics_grad  # continuous actions: rho = 0
    wm, actor, critic = params(agent.world_model), params(agent.actor), params(agent.critic)
    agent.train_batch(batch())
    assert not changed(wm, agent.world_model) and not changed(critic, agent.critic) and changed(actor, agent.actor)
    # with the entropy bonus off, the actor still learns: from returns differentiated through the dynamics
    agent = DreamerV2(IMAGE16, BOX2, tiny("actor_ent=0"), seed=0)
    _, _, seq = agent.world_model_loss(batch())
    actor_loss, _, _ = agent.behaviour_losses(seq)
    actor_loss.backward()
    assert sum(p.grad.abs().sum() for p in agent.actor.parameters()) > 0
    assert all(p.grad is None for p in agent.world_model.parameters())  # never into the world model


def test_reinforce_uses_the_slow_critic_baseline_and_no_dynamics_gradient():
    agent = DreamerV2(IMAGE16, DISCRETE3, tiny("actor_ent=0"), seed=0)
    assert not agent.dynamics_grad  # discrete actions: rho = 1
    _, _, seq = agent.world_model_loss(discrete_batch())
    actor_loss, _, _ = agent.behaviour_losses(seq)
    actor_loss.backward()
    assert sum(p.grad.abs().sum() for p in agent.actor.parameters()) > 0
    # REINFORCE rollouts carry no graph: the loss reaches the actor only through log pi(a | sg(z))
    assert all(p.grad is None for p in agent.world_model.parameters())
    # the advantage's baseline is the slow critic: a slow critic that equals every lambda-return (here: all
    # rewards, discounts and values zero) leaves no advantage, and without entropy no gradient
    agent = DreamerV2(IMAGE16, DISCRETE3, tiny("actor_ent=0", "pred_discount=false"), seed=0)
    with torch.no_grad():
        for head in (agent.reward_head.out, agent.slow_critic.out):
            head.weight.zero_()
            head.bias.zero_()
    _, _, seq = agent.world_model_loss(discrete_batch())
    actor_loss, _, _ = agent.behaviour_losses(seq)
    actor_loss.backward()
    assert all(p.grad.abs().sum() == 0 for p in agent.actor.parameters())


def test_slow_critic_is_a_copy_refreshed_every_n_updates():
    agent = DreamerV2(IMAGE16, BOX2, tiny("slow_critic_every=2"), seed=0)
    pairs = lambda: zip(agent.slow_critic.parameters(), agent.critic.parameters(), strict=True)  # noqa: E731
    same = lambda: all(torch.equal(a, b) for a, b in pairs())  # noqa: E731
    agent.train_batch(batch(seed=0))
    assert same()  # update 0 copies
    agent.train_batch(batch(seed=1))
    assert not same()  # update 1: the critic moved, the target did not
    agent.train_batch(batch(seed=2))
    assert same()  # update 2 copies again


class FakeReplay:
    def __len__(self):
        return 1000

    def sample(self, b, t):
        return batch(b, t)


def test_prefill_then_pretrain_then_train_every():
    agent = DreamerV2(IMAGE16, BOX2, tiny("prefill=3", "pretrain=2", "train_every=4", "train_steps=1"), seed=0)
    for step in range(1, 4):
        action, state = agent.policy(obs(first=step == 1, seed=step), None, mode="train")
        assert state is None and np.all(np.abs(action) <= 1)  # uniform random during the prefill
        metrics = agent.update(FakeReplay(), step)
        assert (metrics != {}) == (step == 3)  # training begins once the prefill is collected
    assert agent.updates == 1 + 2  # then one update plus `pretrain`
    _, state = agent.policy(obs(first=False), None, mode="train")
    assert state is not None  # the actor acts on its belief
    done = [agent.update(FakeReplay(), step) != {} for step in range(4, 12)]
    assert done == [False, False, False, True, False, False, False, True] and agent.updates == 5
    agent.policy(obs(), None, mode="eval")
    assert agent.acted == 4  # evaluation steps do not count


def test_state_dict_round_trip_continues_identically():
    a = DreamerV2(IMAGE16, DISCRETE3, tiny(), seed=0)
    a.train_batch(discrete_batch())
    b = DreamerV2(IMAGE16, DISCRETE3, tiny(), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(discrete_batch(1)) == b.train_batch(discrete_batch(1))
    assert a.policy(obs(), None)[0] == b.policy(obs(), None)[0]
    with pytest.raises(MethodError, match="units"):
        DreamerV2(IMAGE16, DISCRETE3, tiny("units=8"), seed=0).load_state_dict(a.state_dict())


def test_contract_with_continuous_actions(tmp_path):
    from wmbench.testing import check_method

    check_method("dreamerv2", tmp_path, protocol="fake@1", task="image_continuous", overrides=["preset=tiny"])


def test_bad_input_names_the_setting():
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in DreamerV2.supports(vector, BOX2)
    with pytest.raises(WmbenchError, match="image"):
        DreamerV2(vector, DISCRETE3, tiny())
    with pytest.raises(MethodError, match=r"\[-1, 1\]"):
        DreamerV2(IMAGE16, gymnasium.spaces.Box(-2, 2, (2,), np.float32), tiny())
    with pytest.raises(MethodError, match="Discrete"):
        DreamerV2(IMAGE16, gymnasium.spaces.MultiBinary(3), tiny())
    for key in ("latent=gaussian", "min_std=0.1", "free_nats=3.0", "std_act=softplus"):
        with pytest.raises(ConfigError, match="categorical only") as e:
            make_config(DreamerV2Config, [key])
        assert key.split("=")[0] in str(e.value) and "dreamerv1" in str(e.value)
    for key in ("imag_horizon=1", "kl_balance=1.5", "actor_grad=both", "reward_transform=sign"):
        with pytest.raises(ConfigError, match=key.split("=")[0]):
            make_config(DreamerV2Config, [key])
    with pytest.raises(ConfigError, match="imag_horizon"):
        DreamerV2(IMAGE16, BOX2, DreamerV2Config(imag_horizon=15.0))  # a config built in code, bypassing --set
    with pytest.raises(ConfigError, match="enc_kernels"):
        DreamerV2({"image": gymnasium.spaces.Box(0, 255, (24, 24, 3), np.uint8)}, BOX2, tiny())


def test_recipes_are_the_method_defaults_per_protocol_and_name_the_published_curves():
    from wmbench.method import method_config
    from wmbench.protocols import load_protocol
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names, resolve_config
    from wmbench.results import published

    assert recipe_names("dreamerv2") == ["dreamerv2_2021_atari200m@1", "dreamerv2_2021_dmc_vision@1"]
    for name, protocol, tasks in (("dreamerv2_2021_dmc_vision", "dmc_vision@1", 20),
                                  ("dreamerv2_2021_atari200m", "atari200m@1", 55)):
        r = load_recipe("dreamerv2", name)
        p = load_protocol(protocol)
        assert r.protocol == protocol and r.sources[0].startswith("dreamerv2:scores/")
        rows = published(protocol=p.name, source=r.sources[0], method="dreamerv2")
        assert rows.task.nunique() == tasks and rows.seed.nunique() >= 5
        assert recipe_differences(method_config(DreamerV2, p, []), r) == {}  # the recipe is the method's defaults
        assert recipe_differences(method_config(DreamerV2, p, ["gamma=0.999"]), r) == {"gamma": (0.999, r.config["gamma"])}
    config, record = resolve_config(DreamerV2, load_protocol("dmc_vision@1"), ["preset=tiny"], "dreamerv2_2021_dmc_vision")
    assert record["name"] == "dreamerv2_2021_dmc_vision@1" and config.batch_size == 4 and config.kl_free == 1.0
