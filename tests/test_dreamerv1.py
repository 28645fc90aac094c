"""Dreamer v1 (baselines/dreamerv1.py): shapes, actions in bounds, what one update trains, Eq. 6's lambda-return by
hand, bad input. The run-level contract (determinism, exact resume, weights_only) is tests/test_method_contract.py."""

from __future__ import annotations

import io

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, IMAGE64, batch, obs  # the same fake pixel batches as PlaNet's tests
from wmbench_baselines.dreamerv1 import DreamerV1, DreamerV1Config, dreamer_lambda_return, parameter_counts

from wmbench.config import ConfigError, make_config
from wmbench.errors import WmbenchError
from wmbench.method import MethodError


def tiny(*overrides: str) -> DreamerV1Config:
    return make_config(DreamerV1Config, ["preset=tiny", *overrides])


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_shapes_and_metrics():
    agent = DreamerV1(IMAGE16, BOX2, tiny(), seed=0)
    action, (deter, stoch, prev) = agent.policy(obs(), None, mode="eval")
    assert action.shape == (1, 2) and action.dtype == np.float32
    assert deter.shape == (1, 16) and stoch.shape == (1, 4) and prev.shape == (1, 2)
    deter, stoch = agent.imagine(torch.zeros(6, 16), torch.zeros(6, 4))
    assert deter.shape == (4, 6, 16) and stoch.shape == (4, 6, 4)  # s_t .. s_t+H, H = 3
    metrics = agent.train_batch(batch())
    assert {"loss/image", "loss/reward", "kl", "loss/model", "loss/actor", "loss/value",
            "grad_norm/model", "grad_norm/actor", "grad_norm/value", "imag/return"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())


def test_paper_settings_are_the_defaults():
    c = DreamerV1Config()
    assert (c.model_lr, c.actor_lr, c.value_lr, c.grad_clip, c.adam_eps) == (6e-4, 8e-5, 8e-5, 100.0, 1e-7)
    assert (c.imag_horizon, c.lam, c.gamma, c.explore_noise, c.seed_episodes) == (15, 0.95, 0.99, 0.3, 5)
    assert (c.batch_size, c.batch_length, c.updates_per_episode, c.free_nats, c.deter, c.stoch) == (50, 50, 100, 3.0, 200, 30)
    counts = parameter_counts(IMAGE64, BOX2, c)
    # PlaNet's encoder and decoder; actor 4 x 400 ELU -> 2 x 2 outputs, value 3 x 400 -> 1
    assert counts["encoder"] == 690_144 and counts["decoder"] == 3_795_555
    assert counts["actor"] == 230 * 400 + 400 + 3 * (400 * 400 + 400) + 400 * 4 + 4
    assert counts["value"] == 230 * 400 + 400 + 2 * (400 * 400 + 400) + 400 + 1


def test_actions_stay_in_bounds():
    agent = DreamerV1(IMAGE16, BOX2, tiny("seed_episodes=0", "explore_noise=5.0"), seed=0)
    with torch.no_grad():  # a wide actor: pre-tanh means far beyond +-1
        agent.actor.out.bias.fill_(50.0)
    state = None
    for t in range(5):
        action, state = agent.policy(obs(first=t == 0, seed=t), state, mode="train")
        assert np.all(np.abs(action) <= 1.0)
    action, _ = agent.policy(obs(), None, mode="eval")
    assert np.all(np.abs(action) <= 1.0)
    mean, std = agent.action_dist(torch.zeros(3, 16), torch.zeros(3, 4))
    assert torch.all(mean.abs() <= agent.config.actor_mean_scale) and torch.all(std > 0)


def test_one_update_trains_actor_and_value_and_the_actor_through_the_dynamics():
    agent = DreamerV1(IMAGE16, BOX2, tiny(), seed=0)
    wm, actor, value = params(agent.world_model), params(agent.actor), params(agent.value)
    agent.train_batch(batch())
    assert changed(wm, agent.world_model) and changed(actor, agent.actor) and changed(value, agent.value)
    # the actor's and value's losses reach only their own networks: with the model and value learning rates at
    # 0 only the actor moves, and it does so through gradients of the imagined dynamics (Eq. 7)
    agent = DreamerV1(IMAGE16, BOX2, tiny("model_lr=0", "value_lr=0"), seed=0)
    wm, actor, value = params(agent.world_model), params(agent.actor), params(agent.value)
    agent.train_batch(batch())
    assert not changed(wm, agent.world_model) and not changed(value, agent.value) and changed(actor, agent.actor)


def eq6_by_hand(r: list[float], v: list[float], gamma: float, lam: float) -> list[float]:
    """Eq. 5 and 6 of the paper written out: V_N^k(s_tau) sums k rewards and bootstraps with v (truncated at s_H);
    V_lambda = (1 - lam) sum_{n=1}^{H-tau-1} lam^(n-1) V_N^n + lam^(H-tau-1) V_N^(H-tau)."""
    horizon = len(r)
    out = []
    for tau in range(horizon):
        def v_n(k, tau=tau):
            h = min(tau + k, horizon)
            return sum(gamma ** (n - tau) * r[n] for n in range(tau, h)) + gamma ** (h - tau) * v[h]
        left = horizon - tau
        out.append((1 - lam) * sum(lam ** (n - 1) * v_n(n) for n in range(1, left)) + lam ** (left - 1) * v_n(left))
    return out


def test_lambda_return_matches_the_paper_by_hand():
    # H = 2: V_lambda(s_0) = (1 - lam)(r0 + g v1) + lam (r0 + g r1 + g^2 v2), V_lambda(s_1) = r1 + g v2
    r, v, g, lam = [1.0, 2.0], [0.5, -1.0, 3.0], 0.9, 0.8
    ret = dreamer_lambda_return(torch.tensor(r), torch.tensor(v), g, lam)
    expected = [(1 - lam) * (1.0 + g * -1.0) + lam * (1.0 + g * 2.0 + g * g * 3.0), 2.0 + g * 3.0]
    assert torch.allclose(ret, torch.tensor(expected)) and abs(expected[0] - 4.204) < 1e-9
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=5).tolist(), rng.normal(size=6).tolist()
    ret = dreamer_lambda_return(torch.tensor(r, dtype=torch.float64), torch.tensor(v, dtype=torch.float64), 0.99, 0.95)
    assert np.allclose(ret.numpy(), eq6_by_hand(r, v, 0.99, 0.95))


def test_state_dict_round_trip_continues_identically():
    a = DreamerV1(IMAGE16, BOX2, tiny(), seed=0)
    a.train_batch(batch())
    b = DreamerV1(IMAGE16, BOX2, tiny(), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(batch(seed=1)) == b.train_batch(batch(seed=1))
    with pytest.raises(MethodError, match="units"):
        DreamerV1(IMAGE16, BOX2, tiny("units=8"), seed=0).load_state_dict(a.state_dict())


def test_bad_input_names_the_setting():
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in DreamerV1.supports(vector, BOX2)
    with pytest.raises(WmbenchError, match="image"):
        DreamerV1(vector, BOX2, tiny())
    with pytest.raises(MethodError, match="Discrete.*continuous actions|continuous actions.*Discrete"):
        DreamerV1(IMAGE16, gymnasium.spaces.Discrete(3), tiny())
    for key in ("classes=32", "latent=categorical", "kl_balance=0.8"):
        with pytest.raises(ConfigError, match="Gaussian") as e:
            make_config(DreamerV1Config, [key])
        assert key.split("=")[0] in str(e.value)
    with pytest.raises(ConfigError, match="imag_horizon"):
        make_config(DreamerV1Config, ["imag_horizon=0"])
    with pytest.raises(ConfigError, match="imag_horizon"):
        DreamerV1(IMAGE16, BOX2, DreamerV1Config(imag_horizon=15.0))  # a config built in code, bypassing --set
    with pytest.raises(ConfigError, match="enc_kernels"):
        DreamerV1({"image": gymnasium.spaces.Box(0, 255, (24, 24, 3), np.uint8)}, BOX2, tiny())


def test_recipe_is_the_paper_defaults_and_names_the_published_dreamer_curves():
    from wmbench.protocols import load_protocol
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names, resolve_config
    from wmbench.results import published

    assert recipe_names("dreamerv1") == ["dreamerv1_2020_dmc_vision@1", "dreamerv1_2020_dmc_vision@2"]
    r = load_recipe("dreamerv1", "dreamerv1_2020_dmc_vision")
    assert r.protocol == "dmc_vision@1" and r.sources == ("dreamer_v1:scores/dreamer.json",)
    rows = published(protocol="dmc_vision", source=r.sources[0], method="dreamer")
    assert rows.task.nunique() == 20 and rows.seed.nunique() == 5 and set(rows.point_type) == {"curve"}
    # the recipe is the method's defaults (the paper) but for the released code's batch-mean free nats
    assert recipe_differences(DreamerV1Config(), r) == {"free_nats_mean": (False, True)}
    assert recipe_differences(DreamerV1Config(), load_recipe("dreamerv1", "dreamerv1_2020_dmc_vision@1")) == {}
    config, record = resolve_config(DreamerV1, load_protocol("dmc_vision@1"), ["preset=tiny"], r.id)
    assert record["name"] == r.id and config.batch_size == 4


def test_seed_episodes_then_c_updates_per_collected_episode():
    agent = DreamerV1(IMAGE16, BOX2, tiny("seed_episodes=1"), seed=0)
    action, state = agent.policy(obs(), None, mode="train")
    assert state is None and np.all(np.abs(action) <= 1)  # the seed episode acts at random, keeps no belief

    class Replay:
        def __len__(self):
            return 100

        def sample(self, b, t):
            return batch(b, t)

    agent.policy({**obs(first=False), "is_last": np.ones(1, bool)}, None, mode="train")
    metrics = agent.update(Replay(), 10)
    assert agent.updates == agent.config.updates_per_episode == 2 and "loss/actor" in metrics
    assert agent.update(Replay(), 11) == {}  # C updates per collected episode, then wait for the next one
    _, state = agent.policy(obs(), None, mode="train")
    assert state is not None  # after the seed episodes: the actor acts on the filtered belief


def test_free_nats_clip_the_batch_mean_kl_as_the_released_code():
    """dreamer.py `_train`: div = max(mean KL, free_nats). With the free nats just above the batch's mean KL the whole
    KL term is flat (no gradient), although some steps' KL lie above them; PlaNet's per-step clip still trains
    those steps."""
    agent = DreamerV1(IMAGE16, BOX2, tiny(), seed=0)
    assert not agent.config.free_nats_mean  # the method's default: per step, as the paper's "as in PlaNet"
    wm, data = agent.world_model, batch()

    def kl_loss(free: float, mean: bool) -> tuple[float, float, float]:
        wm.zero_grad()
        loss, terms, _ = wm.loss(data, torch.Generator().manual_seed(0), free_nats=free, free_nats_mean=mean,
                                 image_scale=0.0, reward_scale=0.0)
        loss.backward()
        grad = sum(float(p.grad.abs().sum()) for p in wm.parameters() if p.grad is not None)
        return loss.item(), terms["kl"].item(), grad

    _, mean_kl, _ = kl_loss(0.0, True)
    free = 1.01 * mean_kl
    loss, _, grad = kl_loss(free, True)
    assert loss == pytest.approx(free) and grad == 0.0
    loss, _, grad = kl_loss(free, False)
    assert loss > free and grad > 0.0
