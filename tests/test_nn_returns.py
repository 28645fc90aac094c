"""wmbench.nn.returns: lambda-returns by hand, percentile normaliser, EMA, the Director code's running moment
normaliser and adaptive regulariser scale."""

import pytest
import torch

from wmbench.nn.returns import (
    AdaptiveScale,
    MomentNormalizer,
    PercentileNormalizer,
    ema_update,
    lambda_return,
    replay_lambda_return,
)


def _traj():
    reward = torch.tensor([1.0, 2.0])
    value = torch.tensor([0.0, 10.0, 20.0])
    return reward, value


def test_lambda_return_hand_values():
    reward, value = _traj()
    cont = torch.ones(2)
    # lam = 0: one-step TD targets r_t + gamma v_{t+1}
    assert torch.allclose(lambda_return(reward, cont, value, 0.5, 0.0), torch.tensor([6.0, 12.0]))
    # lam = 1: Monte Carlo with bootstrap v_H: R1 = 2 + .5*20 = 12, R0 = 1 + .5*12 = 7
    assert torch.allclose(lambda_return(reward, cont, value, 0.5, 1.0), torch.tensor([7.0, 12.0]))
    # lam = .5: R0 = 1 + .5 * (.5*10 + .5*12) = 6.5
    assert torch.allclose(lambda_return(reward, cont, value, 0.5, 0.5), torch.tensor([6.5, 12.0]))


def test_lambda_return_stops_at_terminal_and_batches():
    reward, value = _traj()
    ret = lambda_return(reward, torch.tensor([0.0, 1.0]), value, 0.5, 0.5)
    assert torch.isclose(ret[0], torch.tensor(1.0))  # nothing after a terminal transition
    batch = lambda_return(reward[:, None].repeat(1, 3), torch.ones(2, 3), value[:, None].repeat(1, 3), 0.5, 0.5)
    assert batch.shape == (2, 3) and torch.allclose(batch[:, 1], torch.tensor([6.5, 12.0]))


def test_percentile_normaliser_ema_and_floor():
    norm = PercentileNormalizer(decay=0.99, limit=1.0)
    returns = torch.linspace(0, 100, 101)  # P5 = 5, P95 = 95
    offset, scale = norm(returns)
    assert torch.isclose(offset, torch.tensor(0.05)) and torch.isclose(norm.high, torch.tensor(0.95))
    assert scale == 1.0  # max(1, 0.9)
    for _ in range(199):
        norm(returns)
    assert torch.isclose(norm.scale(), torch.tensor(90.0 * (1 - 0.99**200)), rtol=1e-4)
    small = PercentileNormalizer()
    for _ in range(20):
        small(torch.linspace(0, 0.5, 11))
    assert small.scale() == 1.0  # small returns are not scaled up
    restored = PercentileNormalizer()
    restored.load_state_dict(norm.state_dict())
    assert torch.equal(restored.scale(), norm.scale())


def test_ema_update():
    target, source = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    ema_update(target, source, 0.02)
    assert torch.allclose(target.weight, 0.98 * before + 0.02 * source.weight)


def test_replay_lambda_return_hand_values_and_relation_to_lambda_return():
    """2024 repl_loss returns: reward/flags stored with the arriving step, bootstrapped with `boot`; an episode's last
    step stops the recursion at its bootstrap."""
    reward = torch.tensor([[9.0, 1.0, 2.0]])  # reward[0] (arriving at step 0) is never used
    boot = torch.tensor([[5.0, 10.0, 20.0]])
    zeros = torch.zeros(1, 3)
    ret = replay_lambda_return(reward, zeros, zeros, boot, 0.5, 0.5)
    # R1 = 2 + .5 * 20 = 12; R0 = 1 + .5 * (.5 * 10 + .5 * 12) = 6.5 (the lambda_return hand values above)
    assert torch.allclose(ret, torch.tensor([[6.5, 12.0]]))
    same = lambda_return(reward[0, 1:], torch.ones(2), boot[0], 0.5, 0.5)
    assert torch.allclose(ret[0], same)
    last = torch.tensor([[0.0, 1.0, 0.0]])  # step 1 ends its episode: R0 = 1 + .5 * boot_1
    assert torch.allclose(replay_lambda_return(reward, last, zeros, boot, 0.5, 0.5)[0, 0], torch.tensor(6.0))
    term = torch.tensor([[0.0, 1.0, 0.0]])  # step 1 is terminal: nothing after the reward
    assert torch.allclose(replay_lambda_return(reward, zeros, term, boot, 0.5, 0.5)[0, 0], torch.tensor(1.0))


def test_moment_normalizer_bias_corrected_moments_by_hand():
    norm = MomentNormalizer(decay=0.5, max_scale=1e8, center=True)
    x = torch.tensor([1.0, 3.0])
    assert torch.equal(norm(x, update=False), x)  # no statistics yet: unchanged
    # one update: mean 2, mean square 5 (bias-corrected by 1 - 0.5), var 1
    assert torch.allclose(norm(x), torch.tensor([-1.0, 1.0]))
    # second batch [5, 7]: EMAs 0.5 * 1 + 0.5 * 6 = 3.5 and 0.5 * 2.5 + 0.5 * 37 = 19.75, corrected by 0.75
    y = torch.tensor([5.0, 7.0])
    mean, sqrs = 3.5 / 0.75, 19.75 / 0.75
    expected = (y - mean) / (sqrs - mean**2) ** 0.5
    assert torch.allclose(norm(y), expected)
    scaled = MomentNormalizer(decay=0.5, max_scale=1e8, center=False)
    scaled.update(x)
    assert torch.allclose(scaled(y, update=False), y)  # std 1: no centring, no scaling
    # a constant input is scaled up at most max_scale times (the code's retnorm max 100)
    const = MomentNormalizer(decay=0.999, max_scale=100.0, center=False)
    assert torch.allclose(const(torch.full((4,), 0.01)), torch.ones(4))
    # gradients pass through the input (dynamics backpropagation), never into the statistics
    z = torch.tensor([2.0, 4.0], requires_grad=True)
    (norm(z) * torch.tensor([1.0, 2.0])).sum().backward()
    _, inv_std = norm.stats()
    assert torch.allclose(z.grad, torch.tensor([1.0, 2.0]) * inv_std)
    state = norm.state_dict()
    assert set(state) == {"mean", "sqrs", "step"} and state["step"].item() == 3


def test_adaptive_scale_moves_towards_its_target_and_stops_inside_the_band():
    kl = AdaptiveScale((), init=1.0, target=3.5, low=1e-5, high=1.0)  # the code's wmkl
    assert kl(torch.full((4, 5), 1.0)).item() == pytest.approx(1 / 1.1)  # KL below target: weight shrinks
    assert kl(torch.tensor(10.0)).item() == pytest.approx(1.0)  # above: grows, clipped at high
    assert kl(torch.tensor(10.0)).item() == pytest.approx(1.0)
    assert kl(torch.tensor(3.6)).item() == pytest.approx(1.0)  # within 10% of the target: unchanged
    for _ in range(200):
        kl(torch.tensor(0.0))
    assert kl.scale.item() == pytest.approx(1e-5)  # clipped at low
    # inverse (an entropy bonus), one scale per action dimension: dim 0 below target, dim 1 above, dim 2 inside
    ent = AdaptiveScale((3,), init=1.0, target=0.5, low=1e-5, high=100.0, inverse=True)
    scale = ent(torch.tensor([[0.1, 0.9, 0.5], [0.2, 0.8, 0.52]]))
    assert torch.allclose(scale, torch.tensor([1.1, 1 / 1.1, 1.0]))
    # a policy whose entropy sits above the target sees its bonus fall geometrically (3e-3 after ~61 updates)
    for _ in range(60):
        scale = ent(torch.tensor([0.9, 0.9, 0.9]))
    assert (scale < 0.01).all() and scale.requires_grad is False
