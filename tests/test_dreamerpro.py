"""DreamerPro (baselines/dreamerpro.py): Sinkhorn-Knopp normalisation and assignment, the augmented views, the
prototype losses, what trains what (frozen prototypes, EMA targets, dynamics backpropagation), the schedule, resume,
the official settings and bad input. The run-level contract (determinism, exact resume, weights_only) is
tests/test_method_contract.py (fake@1 image_continuous)."""

from __future__ import annotations

import io
import math

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, IMAGE64, batch, obs  # the same fake pixel batches as PlaNet's tests
from wmbench_baselines.dreamerpro import (
    DreamerPro,
    DreamerProConfig,
    Prototypes,
    parameter_counts,
    prototype_losses,
    random_translate,
    sinkhorn,
)

from wmbench.config import ConfigError, make_config
from wmbench.errors import WmbenchError
from wmbench.method import MethodError


def tiny(*overrides: str) -> DreamerProConfig:
    return make_config(DreamerProConfig, ["preset=tiny", "prefill=0", *overrides])


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


# ------------------------------------------------------------------ Sinkhorn-Knopp
def sinkhorn_reference(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """SwAV's Algorithm (Caron et al. 2020, App. A) in probability space, prototypes as rows: an independent check
    of the log-space implementation."""
    q = torch.exp(scores.double().T / eps)  # [K, N]
    q = q / q.sum()
    k, n = q.shape
    for _ in range(iters):
        q = q / q.sum(1, keepdim=True) / k
        q = q / q.sum(0, keepdim=True) / n
    return (q * n).T


def test_sinkhorn_equals_the_probability_space_algorithm_and_normalises_rows():
    scores = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    for eps, iters in ((0.5, 1), (0.05, 3), (1.0, 20)):
        q = sinkhorn(scores, eps, iters)
        assert torch.allclose(q.double(), sinkhorn_reference(scores, eps, iters), atol=1e-5)
        assert torch.allclose(
            q.sum(1), torch.ones(12), atol=1e-5
        )  # each sample: a distribution over prototypes
        assert (q >= 0).all()


def test_sinkhorn_spreads_samples_equally_over_prototypes():
    # every sample prefers prototype 0: a softmax puts all of them there, Sinkhorn-Knopp divides the batch equally
    scores = torch.tensor([[1.0, 0.9, 0.8, 0.7]]).repeat(8, 1) + 0.01 * torch.arange(8.0)[
        :, None
    ] * torch.tensor([0.0, 1.0, 2.0, 3.0])
    softmax = torch.softmax(scores / 0.05, -1)
    assert softmax.sum(0)[0] > 5  # most of the 8 samples on one prototype
    q = sinkhorn(scores, 0.05, 200)
    assert torch.allclose(q.sum(0), torch.full((4,), 2.0), atol=1e-3)  # N / K = 2 samples per prototype
    assert torch.allclose(q.sum(1), torch.ones(8), atol=1e-5)


def test_sinkhorn_assigns_each_sample_its_own_prototype_when_scores_are_balanced():
    # a permutation of 6 samples onto 6 prototypes: the assignment follows the scores, and sharpens as eps falls
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    scores = torch.full((6, 6), -1.0)
    scores[torch.arange(6), perm] = 1.0
    q = sinkhorn(scores, 0.05, 3)
    assert torch.equal(q.argmax(1), perm)
    assert (q[torch.arange(6), perm] > 0.99).all()
    soft = sinkhorn(scores, 2.0, 3)
    assert torch.equal(soft.argmax(1), perm) and (soft[torch.arange(6), perm] < 0.5).all()


def test_sinkhorn_refuses_empty_and_non_finite_batches():
    for shape in ((0, 5), (4, 0), (5,)):
        with pytest.raises(MethodError, match=r"non-empty \[samples, prototypes\].*batch_length > warm_up"):
            sinkhorn(torch.zeros(shape), 0.05, 3)
    bad = torch.zeros(4, 3)
    bad[1, 2] = float("nan")
    bad[0, 0] = float("inf")
    with pytest.raises(MethodError, match=r"2 of 12 prototype scores .* not finite.*model_lr"):
        sinkhorn(bad, 0.05, 3)
    with pytest.raises(MethodError, match="eps > 0"):
        sinkhorn(torch.zeros(2, 2), 0.0, 3)


# ------------------------------------------------------------------ augmentation
def test_random_translate_shifts_whole_sequences_bilinearly_with_repeated_edges():
    b, t, h, w = 3, 4, 10, 12
    ramp = torch.arange(w, dtype=torch.float32)[None, None, None, :, None].expand(b, t, h, w, 2).clone()
    ramp[..., 1] = torch.arange(h, dtype=torch.float32)[None, None, :, None]
    gen = torch.Generator().manual_seed(3)
    shift = (
        torch.rand(b, 1, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ) * 2.5  # the draw it makes
    out = random_translate(ramp, 2.5, gen)
    dx, dy = shift[:, 0, 0], shift[:, 0, 1]
    # a linear ramp stays linear under bilinear interpolation: output x reads input x - dx, clamped at the edges
    expect_x = (torch.arange(w)[None] - dx[:, None]).clamp(0, w - 1)  # [B, W]
    expect_y = (torch.arange(h)[None] - dy[:, None]).clamp(0, h - 1)
    assert torch.allclose(out[..., 0], expect_x[:, None, None, :].expand(b, t, h, w), atol=1e-4)
    assert torch.allclose(out[..., 1], expect_y[:, None, :, None].expand(b, t, h, w), atol=1e-4)
    assert (dx.abs() <= 2.5).all() and dx.abs().max() > 0.5  # shifts of up to max_delta pixels
    img = torch.rand(2, 3, 8, 8, 3)
    assert torch.allclose(random_translate(img, 0.0, None), img, atol=1e-5)  # no shift: the image itself


# ------------------------------------------------------------------ prototype losses
def test_prototype_losses_skip_the_warm_up_and_send_gradients_where_the_paper_says():
    torch.manual_seed(0)
    c = tiny("warm_up=2", "sinkhorn_iters=3")
    protos = Prototypes(10, 7, count=c.prototypes, dim=c.proto_dim)
    embed = torch.randn(4, 6, 10, requires_grad=True)  # 2 views x 2 sequences
    feat = torch.randn(4, 6, 7, requires_grad=True)
    target = torch.nn.functional.normalize(torch.randn(4, 6, c.proto_dim), dim=-1)
    losses = prototype_losses(protos, embed, feat, target, c)
    assert torch.allclose(protos.vectors.norm(dim=-1), torch.ones(c.prototypes))  # unit prototypes
    # swav: observations only; temporal: the RSSM state only
    (g_embed,) = torch.autograd.grad(losses["loss/swav"], embed, retain_graph=True)
    assert g_embed[:, 2:].abs().sum() > 0 and g_embed[:, :2].abs().sum() == 0  # warm-up steps carry no target
    assert torch.autograd.grad(losses["loss/temp"], feat, retain_graph=True)[0][:, 2:].abs().sum() > 0
    assert torch.autograd.grad(losses["loss/swav"], feat, retain_graph=True, allow_unused=True)[0] is None
    # the swapped prediction: each view's observation predicts the other view's assignment
    swapped = target.clone()
    swapped[:2] = target[2:]
    swapped[2:] = target[:2]
    same_views = prototype_losses(protos, embed, feat, torch.cat([target[:2], target[:2]]), c)
    view1_targets = prototype_losses(protos, embed, feat, swapped, c)
    assert not torch.allclose(losses["loss/swav"], view1_targets["loss/swav"])
    assert torch.isfinite(same_views["loss/swav"])
    # the norm term pulls the raw projections to unit length and counts every step
    with torch.no_grad():
        protos.obs_proj.weight.zero_()
        protos.obs_proj.bias.copy_(torch.nn.functional.normalize(torch.ones(c.proto_dim), dim=0))
        protos.feat_proj.weight.zero_()
        protos.feat_proj.bias.copy_(torch.nn.functional.normalize(torch.ones(c.proto_dim), dim=0))
    assert prototype_losses(protos, embed, feat, target, c)["loss/norm"].item() == pytest.approx(
        0.0, abs=1e-10
    )


def test_swav_loss_is_the_cross_entropy_of_sinkhorn_targets():
    torch.manual_seed(1)
    c = tiny("warm_up=0", "temperature=0.5", "sinkhorn_eps=0.1")
    protos = Prototypes(5, 3, count=c.prototypes, dim=c.proto_dim)
    embed, feat = torch.randn(2, 3, 5), torch.randn(2, 3, 3)
    target = torch.nn.functional.normalize(torch.randn(2, 3, c.proto_dim), dim=-1)
    losses = prototype_losses(protos, embed, feat, target, c)
    vec = torch.nn.functional.normalize(protos.vectors, dim=-1)
    u = torch.nn.functional.normalize(protos.obs_proj(embed), dim=-1)
    logp = torch.log_softmax(u @ vec.T / 0.5, -1)
    q = [sinkhorn_reference((target[i] @ vec.T).detach(), 0.1, c.sinkhorn_iters).float() for i in (0, 1)]
    expect = -0.5 * (q[1] * logp[0]).sum(-1).mean() - 0.5 * (q[0] * logp[1]).sum(-1).mean()
    assert losses["loss/swav"].item() == pytest.approx(expect.item(), rel=1e-4)
    z = torch.nn.functional.normalize(protos.feat_proj(feat), dim=-1)
    temp = -(torch.stack(q) * torch.log_softmax(z @ vec.T / 0.5, -1)).sum(-1).mean()
    assert losses["loss/temp"].item() == pytest.approx(temp.item(), rel=1e-4)
    assert math.isfinite(losses["loss/norm"].item())


# ------------------------------------------------------------------ the agent
def test_shapes_actions_metrics_and_no_decoder():
    agent = DreamerPro(IMAGE16, BOX2, tiny(), seed=0)
    action, (deter, stoch, prev) = agent.policy(obs(), None, mode="train")
    assert action.shape == (1, 2) and action.dtype == np.float32 and np.all(np.abs(action) < 1)
    assert deter.shape == (1, 16) and stoch.shape == (1, 4) and prev.shape == (1, 2)
    eval_action, _ = agent.policy(obs(), None, mode="eval")
    assert eval_action.shape == (1, 2)
    metrics = agent.train_batch(batch(3, 6))
    assert {
        "loss/swav",
        "loss/temp",
        "loss/norm",
        "loss/reward",
        "kl",
        "loss/kl",
        "loss/model",
        "loss/actor",
        "loss/critic",
        "grad_norm/model",
        "imag/return",
        "policy/entropy",
    } <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert not any("decoder" in name for name, _ in agent.nets.named_modules())  # reconstruction-free
    assert agent.rssm.latent == "gaussian" and agent.rssm.std_act == "sigmoid2"


def test_prototypes_are_frozen_first_and_ema_targets_follow_the_encoder():
    agent = DreamerPro(IMAGE16, BOX2, tiny("freeze_prototypes=1", "ema_fraction=0.5"), seed=0)
    vectors = agent.protos.vectors.detach().clone()
    agent.train_batch(batch(3, 6, seed=0))  # update 0: prototypes fixed (only renormalised), EMA copies
    assert torch.allclose(agent.protos.vectors, torch.nn.functional.normalize(vectors, dim=-1))
    for ema, online in ((agent.ema_encoder, agent.encoder), (agent.ema_obs_proj, agent.protos.obs_proj)):
        assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), online.parameters(), strict=True))
    before = params(agent.ema_encoder)
    agent.train_batch(
        batch(3, 6, seed=1)
    )  # update 1: prototypes learn; EMA moves half-way to the new encoder
    assert not torch.allclose(agent.protos.vectors, torch.nn.functional.normalize(vectors, dim=-1))
    for old, ema, online in zip(
        before, agent.ema_encoder.parameters(), agent.encoder.parameters(), strict=True
    ):
        assert torch.allclose(ema, 0.5 * old + 0.5 * online)
    assert all(not p.requires_grad for p in agent.ema_encoder.parameters())


def test_dynamics_backprop_trains_only_the_actor_through_the_world_model():
    agent = DreamerPro(IMAGE16, BOX2, tiny("model_lr=0", "critic_lr=0", "weight_decay=0"), seed=0)
    model = torch.nn.ModuleList([agent.encoder, agent.rssm, agent.reward_head])  # prototypes: renormalised
    wm, actor, critic = params(model), params(agent.actor), params(agent.critic)
    agent.train_batch(batch(3, 6))
    assert not changed(wm, model) and not changed(critic, agent.critic) and changed(actor, agent.actor)
    agent = DreamerPro(IMAGE16, BOX2, tiny("actor_ent=0"), seed=0)
    _, _, seq = agent.world_model_loss(batch(3, 6))
    actor_loss, _, _ = agent.behaviour_losses(seq)
    actor_loss.backward()
    assert sum(p.grad.abs().sum() for p in agent.actor.parameters()) > 0
    assert all(p.grad is None for p in agent.world_model.parameters())  # never into the world model
    assert seq["deter"].shape[0] == 6  # both augmented views of the 3 sequences


class FakeReplay:
    def __len__(self):
        return 1000

    def sample(self, b, t):
        return batch(b, t)


def test_prefill_then_pretrain_then_train_every():
    agent = DreamerPro(IMAGE16, BOX2, tiny("prefill=3", "pretrain=1", "train_every=2"), seed=0)
    for step in range(1, 4):
        action, state = agent.policy(obs(first=step == 1, seed=step), None, mode="train")
        assert state is None and np.all(np.abs(action) <= 1)
        assert (agent.update(FakeReplay(), step) != {}) == (step == 3)
    assert agent.updates == 2
    assert [agent.update(FakeReplay(), s) != {} for s in range(4, 8)] == [False, True, False, True]


def test_state_dict_round_trip_continues_identically():
    a = DreamerPro(IMAGE16, BOX2, tiny(), seed=0)
    a.train_batch(batch(3, 6))
    b = DreamerPro(IMAGE16, BOX2, tiny(), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(batch(3, 6, seed=1)) == b.train_batch(batch(3, 6, seed=1))
    assert np.array_equal(a.policy(obs(), None)[0], b.policy(obs(), None)[0])
    with pytest.raises(MethodError, match="prototypes"):
        DreamerPro(IMAGE16, BOX2, tiny("prototypes=9"), seed=0).load_state_dict(a.state_dict())


def test_official_settings_protocol_defaults_and_size():
    from wmbench.method import method_config
    from wmbench.protocols import load_protocol

    c = DreamerProConfig()  # configs.yaml defaults + dmc + norm_off
    assert (c.deter, c.hidden, c.stoch, c.depth, c.units, c.layers) == (200, 200, 32, 48, 400, 4)
    assert (c.prototypes, c.proto_dim, c.temperature, c.sinkhorn_eps, c.sinkhorn_iters, c.warm_up) == (
        2500,
        32,
        0.1,
        0.0125,
        3,
        1,
    )
    assert (c.freeze_prototypes, c.ema_fraction, c.aug_max_delta, c.loss_norm, c.loss_reward, c.kl_free) == (
        10000,
        0.05,
        3.0,
        0.0,
        1.0,
        1.0,
    )
    assert (c.model_lr, c.actor_lr, c.critic_lr, c.actor_ent, c.gamma, c.batch_size, c.batch_length) == (
        3e-4,
        8e-5,
        8e-5,
        1e-4,
        0.99,
        50,
        51,
    )
    natural = method_config(DreamerPro, load_protocol("dmc_natural_bg@2"), [])
    assert (natural.loss_norm, natural.loss_reward) == (1.0, 1000.0)  # reward_1000, norm on
    assert method_config(DreamerPro, load_protocol("dmc_vision@1"), []) == c
    counts = parameter_counts(IMAGE64, gymnasium.spaces.Box(-1, 1, (6,), np.float32), c)
    assert "decoder" not in counts and counts["prototypes"] == 2500 * 32 + (1536 + 1) * 32 + (232 + 1) * 32
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_bad_input_names_the_setting():
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in DreamerPro.supports(vector, BOX2)
    with pytest.raises(WmbenchError, match="image"):
        DreamerPro(vector, BOX2, tiny())
    with pytest.raises(MethodError, match="continuous"):
        DreamerPro(IMAGE16, gymnasium.spaces.Discrete(3), tiny())
    with pytest.raises(ConfigError, match=r"batch_length \(2\) must exceed warm_up \(2\)"):
        DreamerPro(IMAGE16, BOX2, tiny("batch_length=2", "warm_up=2"))
    for key in ("classes=32", "unimix=0.01"):
        with pytest.raises(ConfigError, match="Gaussian"):
            make_config(DreamerProConfig, [key])
    for key in ("sinkhorn_eps=0", "sinkhorn_iters=0", "prototypes=1", "ema_fraction=0", "temperature=-1"):
        with pytest.raises(ConfigError, match=key.split("=")[0]):
            make_config(DreamerProConfig, [key])
    with pytest.raises(ConfigError, match="enc_kernels"):
        DreamerPro({"image": gymnasium.spaces.Box(0, 255, (24, 24, 3), np.uint8)}, BOX2, tiny())


def test_recipes_are_the_method_defaults_per_protocol_and_name_the_published_curves():
    from wmbench.method import method_config
    from wmbench.protocols import load_protocol
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names
    from wmbench.results import published

    assert recipe_names("dreamerpro") == ["dreamerpro_2022_dmc_natural_bg@1", "dreamerpro_2022_dmc_vision@1"]
    expected = {
        "dreamerpro_2022_dmc_vision": ("dmc_vision@1", "dreamerpro:plots/standard_dmc/runs.json"),
        "dreamerpro_2022_dmc_natural_bg": (
            "dmc_natural_bg@2",
            "dreamerpro:plots/natural_background_dmc/runs.json",
        ),
    }
    for name, (protocol, source) in expected.items():
        r = load_recipe("dreamerpro", name)
        assert r.protocol == protocol and r.sources == (source,)
        assert recipe_differences(method_config(DreamerPro, load_protocol(protocol), []), r) == {}
        curves = published(source=source)
        assert set(curves.method) >= {"dreamerpro"} and set(curves.protocol) == {protocol.split("@")[0]}
    r = load_recipe("dreamerpro", "dreamerpro_2022_dmc_vision")
    assert recipe_differences(make_config(DreamerProConfig, ["preset=cpu"]), r)["depth"] == (
        16,
        48,
    )  # reduced
