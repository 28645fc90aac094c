"""wmbench.nn.optim: LaProp with adaptive gradient clipping and warm-up, checked against a hand-computed step."""

import math

import pytest
import torch

from wmbench.nn.optim import LaProp, global_norm


def _hand_laprop(p, grads, lr, eps, b1, b2, agc, pmin, warmup):
    """The 2024 DreamerV3 chain written out with Python floats on a 1-element parameter list (p, g are lists)."""
    p = list(p)
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        gnorm = math.sqrt(sum(x * x for x in g))
        pnorm = max(pmin, math.sqrt(sum(x * x for x in p)))
        g = [x / max(1.0, gnorm / (agc * pnorm)) for x in g] if agc else list(g)
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        u = [gi / (math.sqrt(vi / (1 - b2**t)) + eps) for gi, vi in zip(g, v, strict=True)]
        m = [b1 * mi + (1 - b1) * ui for mi, ui in zip(m, u, strict=True)]
        lr_t = lr * (min(1.0, (t - 1) / warmup) if warmup else 1.0)
        p = [pi - lr_t * mi / (1 - b1**t) for pi, mi in zip(p, m, strict=True)]
    return p


@pytest.mark.parametrize("agc,warmup", [(0.3, 0), (0.3, 2), (0.0, 0)])
def test_laprop_matches_hand_computed_steps(agc, warmup):
    start = [0.5, -1.0, 2.0]
    grads = [[3.0, -0.2, 0.1], [0.01, 0.02, -5.0], [-1.0, 1.0, 0.5], [0.3, 0.3, 0.3]]
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = LaProp([w], lr=0.1, eps=1e-8, betas=(0.9, 0.999), agc=agc, pmin=1e-3, warmup=warmup)
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    want = _hand_laprop(start, grads, 0.1, 1e-8, 0.9, 0.999, agc, 1e-3, warmup)
    assert torch.allclose(w.detach(), torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)


def test_laprop_first_warmup_step_moves_nothing_and_agc_bounds_the_gradient():
    w = torch.tensor([1.0, 0.0], requires_grad=True)
    opt = LaProp([w], lr=1.0, warmup=10)
    w.grad = torch.tensor([100.0, 100.0])
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([1.0, 0.0]))  # optax linear_schedule(0, lr, warmup) at count 0
    assert opt.lr_at(opt.param_groups[0], 6) == pytest.approx(0.5)
    # AGC: the clipped gradient norm is agc x ||p|| = 0.3 (the moments saw the clipped gradient)
    v = opt.state[w]["exp_avg_sq"]
    assert torch.allclose(v.sum().sqrt() / math.sqrt(1 - 0.999), torch.tensor(0.3), atol=1e-6)


def test_laprop_state_dict_round_trip_and_global_norm():
    w = torch.nn.Parameter(torch.randn(3))
    opt = LaProp([w], lr=0.01)
    w.grad = torch.ones(3)
    opt.step()
    other = LaProp([torch.nn.Parameter(w.detach().clone())], lr=0.01)
    other.load_state_dict(opt.state_dict())
    assert other.state_dict()["state"][0]["step"] == 1
    assert global_norm([w]).item() == pytest.approx(math.sqrt(3))
