"""wmbench.nn.world_model.GaussianWorldModel's categorical-latent option (Director's 32 x 32 RSSM on the shared RSSM
class) and its KL choices: balancing and a weight computed from the KL term (an adaptive scale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pixel_batches import pixel_batch

from wmbench.nn.networks import Norm
from wmbench.nn.returns import AdaptiveScale
from wmbench.nn.world_model import GaussianWorldModel


def model(latent: str = "categorical", seed: int = 0) -> GaussianWorldModel:
    torch.manual_seed(seed)
    return GaussianWorldModel(
        (16, 16, 3), 2, deter=12, stoch=3, hidden=10, depth=4, reward_units=8, reward_layers=1, act="elu",
        image_bits=8, dequantise=False, latent=latent, classes=5,
    )  # fmt: skip


def batch(b: int = 2, t: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    return pixel_batch(b, t, seed)


def test_categorical_latents_are_one_hot_groups_with_the_director_layout():
    wm = model()
    rssm = wm.rssm
    assert (rssm.latent, rssm.stoch_dim, rssm.feat_dim, rssm.unimix, rssm.initial_kind) == (
        "categorical", 15, 27, 0.0, "learned"
    )
    assert all(m.eps == 1e-3 for m in rssm.modules() if isinstance(m, Norm))
    assert {m.kind for m in rssm.modules() if isinstance(m, Norm)} == {"layer"}  # LayerNorm on every RSSM layer
    _, _, seq = wm.loss(batch(), torch.Generator().manual_seed(0), free_nats=0.0, kl_balance=0.8)
    z = seq["stoch"].reshape(2, 4, 3, 5)
    assert torch.equal(z.sum(-1), torch.ones(2, 4, 3)) and set(z.unique().tolist()) == {0.0, 1.0}
    deter, stoch = wm.filter(batch()["image"][:, 0], None, torch.ones(2, dtype=torch.bool), torch.Generator())
    assert deter.shape == (2, 12) and torch.equal(stoch.reshape(2, 3, 5).sum(-1), torch.ones(2, 3))
    gaussian = model("gaussian").rssm
    assert (gaussian.latent, gaussian.stoch_dim) == ("gaussian", 3)
    with pytest.raises(ValueError, match="latent must be"):
        model("mixed")


def test_kl_balancing_is_the_loss_term_and_moves_the_prior_more():
    wm = model()
    data = batch()

    def loss(**kw):
        return wm.loss(data, torch.Generator().manual_seed(0), free_nats=0.0, **kw)

    balanced, terms, seq = loss(kl_balance=0.8)
    plain, _, _ = loss()
    recon = terms["loss/image"] + terms["loss/reward"]
    expected, _ = wm.rssm.balanced_kl_loss(seq["post"], seq["prior"], 0.8, 0.0)
    assert torch.allclose(balanced, recon + expected)
    # in value the balanced KL is the plain KL (alpha + 1 - alpha); the gradients differ
    assert torch.allclose(balanced, plain, rtol=1e-5)
    prior_grads = {}
    for alpha in (0.8, 0.2):
        wm.zero_grad()
        loss(kl_balance=alpha)[0].backward()
        prior_grads[alpha] = sum(p.grad.abs().sum() for p in wm.rssm.prior_net.parameters())
    assert prior_grads[0.8] > prior_grads[0.2]  # alpha weights the prior's pull towards the posterior


def test_a_callable_kl_scale_sees_the_kl_term_first_and_weights_it():
    wm = model()
    data = batch()
    seen = []

    def half(term: torch.Tensor) -> torch.Tensor:
        seen.append(term)
        return torch.tensor(0.5)

    fixed, terms, seq = wm.loss(data, torch.Generator().manual_seed(0), free_nats=0.0, kl_balance=0.8, kl_scale=0.5)
    adaptive, _, _ = wm.loss(data, torch.Generator().manual_seed(0), free_nats=0.0, kl_balance=0.8, kl_scale=half)
    kl_term, _ = wm.rssm.balanced_kl_loss(seq["post"], seq["prior"], 0.8, 0.0)
    assert torch.allclose(fixed, adaptive) and len(seen) == 1 and not seen[0].requires_grad
    assert torch.allclose(seen[0], kl_term.detach())
    scale = AdaptiveScale((), init=1.0, target=1e6, low=1e-5, high=1.0)  # KL far below target: weight shrinks
    wm.loss(data, torch.Generator().manual_seed(0), free_nats=0.0, kl_balance=0.8, kl_scale=scale)
    assert scale.scale.item() == pytest.approx(1 / 1.1)
    # Gaussian latents: a callable weight of 1 gives the plain per-step free-nats loss
    gwm = model("gaussian")
    plain, _, _ = gwm.loss(data, torch.Generator().manual_seed(0), free_nats=1.0)
    called, _, _ = gwm.loss(data, torch.Generator().manual_seed(0), free_nats=1.0, kl_scale=lambda t: 1.0)
    assert torch.allclose(plain, called)
