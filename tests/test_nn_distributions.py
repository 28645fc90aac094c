"""wmbench.nn.distributions: values derived by hand or from scipy, shapes and gradients."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from wmbench.nn import distributions as D


def test_symlog_known_values_and_inverse():
    e = math.e
    x = torch.tensor([0.0, e - 1, -(e - 1), e**2 - 1])
    assert torch.allclose(D.symlog(x), torch.tensor([0.0, 1.0, -1.0, 2.0]))
    y = torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64)
    assert torch.allclose(D.symexp(D.symlog(y)), y, rtol=1e-10, atol=1e-8)


def test_twohot_hand_values():
    bins = torch.tensor([0.0, 1.0, 2.0, 3.0])
    enc = D.twohot(torch.tensor([1.25, 2.0, -5.0, 7.0, 0.0]), bins)
    expected = torch.tensor(
        [[0, 0.75, 0.25, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]], dtype=torch.float32
    )
    assert torch.allclose(enc, expected)


def test_twohot_round_trip_over_paper_bins():
    bins = D.symlog_bins()  # 255 bins in [-20, 20]
    assert bins.shape == (255,) and bins[0] == -20 and bins[-1] == 20 and torch.isclose(bins[127], torch.tensor(0.0))
    x = torch.empty(1000).uniform_(-20, 20, generator=torch.Generator().manual_seed(0))
    enc = D.twohot(x, bins)
    assert torch.allclose(enc.sum(-1), torch.ones(1000))
    assert ((enc > 0).sum(-1) <= 2).all()
    assert torch.allclose((enc * bins).sum(-1), x, atol=1e-4)  # the encoding's mean is the value


def test_twohot_mean_and_loss():
    bins = D.symlog_bins()
    # uniform logits over symmetric bins: expected value 0 exactly by symmetry
    assert torch.allclose(D.twohot_mean(torch.zeros(3, 255), bins), torch.zeros(3), atol=1e-5)
    # all mass on the bin at symlog value 2 -> prediction symexp(2) = e^2 - 1
    idx = int(torch.argmin((bins - 2.0).abs()))
    logits = torch.full((255,), -1e4)
    logits[idx] = 0
    assert torch.isclose(D.twohot_mean(logits, bins), D.symexp(bins[idx]), rtol=1e-5)
    # bins [-1, 0, 1], target with symlog 0.5 -> weights (0, .5, .5); uniform logits -> loss = ln 3
    small = torch.tensor([-1.0, 0.0, 1.0])
    loss = D.twohot_loss(torch.zeros(3), D.symexp(torch.tensor(0.5)), small)
    assert torch.isclose(loss, torch.tensor(math.log(3)), atol=1e-6)


def test_twohot_loss_minimiser_predicts_target():
    bins = D.symlog_bins()
    target = torch.tensor(123.0)
    # the cross-entropy is minimised by logits = log(twohot target); its prediction is the target itself
    logits = torch.log(D.twohot(D.symlog(target), bins) + 1e-30).requires_grad_(True)
    assert torch.isclose(D.twohot_mean(logits.detach(), bins), target, rtol=1e-4)
    D.twohot_loss(logits, target, bins).backward()
    assert logits.grad.abs().max() < 1e-6
    # and a gradient step from uniform logits moves the prediction towards the target
    logits = torch.zeros(255, requires_grad=True)
    D.twohot_loss(logits, target, bins).backward()
    assert D.twohot_mean(-logits.grad, bins) > 0


def test_unimix_bounds_probabilities():
    logits = torch.tensor([100.0, 0.0, 0.0, 0.0])
    probs = D.unimix_logits(logits, 0.01).exp()
    assert torch.allclose(probs, torch.tensor([0.99 + 0.0025, 0.0025, 0.0025, 0.0025]), atol=1e-6)
    assert torch.allclose(D.unimix_logits(logits, 0.0).exp().sum(), torch.tensor(1.0))


def test_sample_onehot_frequencies_and_straight_through_gradient():
    logits = torch.log(torch.tensor([0.2, 0.3, 0.5])).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    s = D.sample_onehot(logits, gen)
    assert torch.all((s == 0) | (s == 1)) and torch.allclose(s.sum(-1), torch.ones(20000))
    assert torch.allclose(s.mean(0), torch.tensor([0.2, 0.3, 0.5]), atol=0.015)
    # gradient of w . sample equals the gradient of w . probs (straight-through estimator)
    raw = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(4)
    lp = torch.log_softmax(raw, -1)
    (D.sample_onehot(lp, gen) * w).sum().backward()
    g_st = raw.grad.clone()
    raw.grad = None
    (torch.softmax(raw, -1) * w).sum().backward()
    assert torch.allclose(g_st, raw.grad, atol=1e-6)


def test_sample_index_probs_frequencies_never_picks_zero_probability_classes():
    probs = torch.tensor([0.0, 0.25, 0.0, 0.75, 0.0]).repeat(40000, 1)
    k = D.sample_index_probs(probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(k, minlength=5).float() / len(k)
    assert counts[0] == counts[2] == counts[4] == 0
    assert abs(counts[1] - 0.25) < 0.01 and abs(counts[3] - 0.75) < 0.01
    # unnormalised rows (rounding) are handled by scaling the uniform draw by the total
    assert D.sample_index_probs(torch.tensor([[0.0, 0.0, 0.5]]), torch.Generator().manual_seed(1)).item() == 2
    # the log-prob entry point draws the same classes from the same generator state
    lp = torch.log(torch.tensor([0.2, 0.3, 0.5])).repeat(100, 1)
    a = D.sample_index(lp, torch.Generator().manual_seed(3))
    b = D.sample_index_probs(lp.exp(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_twohot_loss_with_several_weighted_targets_is_the_weighted_sum():
    bins = D.symlog_bins(255)
    logits = torch.randn(7, 255)
    a, b = torch.randn(7) * 30, torch.randn(7)
    joint = D.twohot_loss(logits, (a, b), bins, weights=(1.0, 0.5))
    assert torch.allclose(joint, D.twohot_loss(logits, a, bins) + 0.5 * D.twohot_loss(logits, b, bins), atol=1e-5)


@pytest.mark.parametrize("classes", [2, 4, 32])
def test_softmax_matches_torch_values_and_gradients(classes):
    x = (torch.randn(50, 3, classes) * 30).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    w = torch.randn(50, 3, classes)
    (D.softmax(x) * w).sum().backward()
    (torch.softmax(y, -1) * w).sum().backward()
    assert torch.allclose(D.softmax(x), torch.softmax(y, -1), atol=1e-6)
    assert torch.allclose(x.grad, y.grad, atol=1e-5)


def test_categorical_kl_and_entropy():
    p = torch.log(torch.tensor([0.5, 0.5]))
    q = torch.log(torch.tensor([0.25, 0.75]))
    assert torch.isclose(D.categorical_kl(p, q), torch.tensor(0.5 * math.log(2) + 0.5 * math.log(2 / 3)))
    assert torch.isclose(D.categorical_kl(p, p), torch.tensor(0.0))
    assert torch.isclose(D.categorical_entropy(p), torch.tensor(math.log(2)))


def test_bernoulli():
    assert torch.isclose(D.bernoulli_loss(torch.tensor(0.0), torch.tensor(1.0)), torch.tensor(math.log(2)))
    x = torch.tensor(1.3)
    assert torch.isclose(D.bernoulli_loss(x, torch.tensor(0.0)), -torch.log(1 - torch.sigmoid(x)))
    assert D.bernoulli_mode(torch.tensor([-0.1, 0.1])).tolist() == [0.0, 1.0]


def test_bounded_normal_range():
    mean, std = D.bounded_normal(torch.tensor([-1e3, 0.0, 1e3]), torch.tensor([-1e3, -2.0, 1e3]), 0.1, 1.0)
    assert torch.allclose(mean, torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(std, torch.tensor([0.1, 0.55, 1.0]))  # sigmoid(-2 + 2) = 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_normal_functions_match_scipy(seed):
    rng = np.random.default_rng(seed)
    x, m, s = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.uniform(0.2, 2, size=(3, 4))
    t = lambda a: torch.tensor(a)  # noqa: E731
    assert np.allclose(D.normal_log_prob(t(x), t(m), t(s)).numpy(), scipy.stats.norm.logpdf(x, m, s).sum(-1))
    assert np.allclose(D.normal_entropy(t(s)).numpy(), scipy.stats.norm.entropy(0, s).sum(-1))


def test_normal_kl_hand_value_and_sample_gradient():
    # KL(N(0,1) || N(1,2)) = ln 2 + (1 + 1) / 8 - 1/2
    kl = D.normal_kl(torch.zeros(1), torch.ones(1), torch.ones(1), 2 * torch.ones(1))
    assert torch.isclose(kl, torch.tensor(math.log(2) + 0.25 - 0.5))
    mean = torch.zeros(3, requires_grad=True)
    D.normal_sample(mean, torch.ones(3), torch.Generator().manual_seed(0)).sum().backward()
    assert torch.allclose(mean.grad, torch.ones(3))


def test_tanh_normal_matches_torch_transformed_distribution():
    from torch.distributions import Normal, TanhTransform, TransformedDistribution

    torch.manual_seed(0)
    mean, std = torch.randn(500, 3) * 2, torch.rand(500, 3) + 0.1
    gen = torch.Generator().manual_seed(1)
    action, u = D.tanh_normal_sample(mean, std, gen)
    assert torch.all(action.abs() <= 1) and torch.allclose(torch.tanh(u), action)
    reference = TransformedDistribution(Normal(mean, std), [TanhTransform()]).log_prob(action.clamp(-0.999, 0.999)).sum(-1)
    ours = D.tanh_normal_log_prob(u, mean, std)
    inside = (action.abs() < 0.99).all(-1)  # torch's version inverts tanh, which loses precision near +-1
    assert torch.allclose(ours[inside], reference[inside], atol=1e-3)
    assert torch.isfinite(D.tanh_normal_log_prob(torch.full((1, 3), 30.0), torch.zeros(1, 3), torch.ones(1, 3))).all()


def test_tanh_normal_entropy_estimate_and_gradient():
    mean = torch.zeros(20000, 1, requires_grad=True)
    std = torch.full((20000, 1), 0.3, requires_grad=True)
    ent = D.tanh_normal_entropy(mean, std, torch.Generator().manual_seed(0))
    # exact: H = H(N(0, 0.3)) + E[log(1 - tanh(u)^2)], the expectation by Gauss-Hermite quadrature
    x, w = np.polynomial.hermite_e.hermegauss(80)
    jacobian = float((w * np.log(1 - np.tanh(0.3 * x) ** 2)).sum() / w.sum())
    exact = 0.5 * math.log(2 * math.pi * math.e) + math.log(0.3) + jacobian
    assert abs(ent.mean().item() - exact) < 0.02
    ent.mean().backward()
    assert std.grad.sum() > 0  # wider -> more entropy


def test_twohot_losses_are_the_single_target_losses():
    bins = D.symlog_bins(21, -5, 5)
    logits, a, b = torch.randn(4, 21), torch.randn(4) * 3, torch.randn(4)
    ra, rb = D.twohot_losses(logits, (a, b), bins)
    assert torch.allclose(ra, D.twohot_loss(logits, a, bins)) and torch.allclose(rb, D.twohot_loss(logits, b, bins))


@pytest.mark.parametrize("seed", [0, 1])
def test_trunc_normal_log_prob_entropy_mode_match_scipy(seed):
    rng = np.random.default_rng(seed)
    m, s = np.tanh(rng.normal(size=(5, 3)) * 2), rng.uniform(0.1, 2.1, size=(5, 3))  # the actor's ranges
    x = rng.uniform(-1, 1, size=(5, 3))
    ref = scipy.stats.truncnorm((-1 - m) / s, (1 - m) / s, loc=m, scale=s)
    t = lambda a: torch.tensor(a)  # noqa: E731
    assert np.allclose(D.trunc_normal_log_prob(t(x), t(m), t(s)).numpy(), ref.logpdf(x).sum(-1))
    assert np.allclose(D.trunc_normal_entropy(t(m), t(s)).numpy(), ref.entropy().sum(-1))
    assert torch.equal(D.trunc_normal_mode(torch.tensor([-2.0, 0.3, 1.5])), torch.tensor([-1.0, 0.3, 1.0]))


def test_trunc_normal_samples_follow_the_distribution_and_are_reparameterised():
    mean = torch.tensor([[0.9, -0.2]]).expand(20000, 2).clone().requires_grad_(True)
    std = torch.tensor([[0.5, 1.5]]).expand(20000, 2).clone().requires_grad_(True)
    x = D.trunc_normal_sample(mean, std, generator=torch.Generator().manual_seed(0))
    assert x.min() >= -1 + 1e-6 and x.max() <= 1 - 1e-6  # clipped inside the bounds
    ref = scipy.stats.truncnorm((-1 - np.array([0.9, -0.2])) / [0.5, 1.5], (1 - np.array([0.9, -0.2])) / [0.5, 1.5],
                                loc=[0.9, -0.2], scale=[0.5, 1.5])
    assert np.allclose(x.detach().mean(0).numpy(), ref.mean(), atol=0.02)
    assert np.allclose(x.detach().std(0).numpy(), ref.std(), atol=0.02)
    first = scipy.stats.truncnorm((-1 - 0.9) / 0.5, (1 - 0.9) / 0.5, loc=0.9, scale=0.5)
    assert scipy.stats.kstest(x[:, 0].detach().numpy(), first.cdf).pvalue > 0.01
    x.sum().backward()
    # d E[x] / d mean of a truncated Normal lies in (0, 1) and E[x] grows with the mean; the sample-path gradient
    # of the inverse-CDF sampler is its unbiased estimate (finite differences of the scipy mean)
    eps = 1e-4
    for i, (m, s) in enumerate(((0.9, 0.5), (-0.2, 1.5))):
        hi = scipy.stats.truncnorm((-1 - m - eps) / s, (1 - m - eps) / s, loc=m + eps, scale=s).mean()
        lo = scipy.stats.truncnorm((-1 - m + eps) / s, (1 - m + eps) / s, loc=m - eps, scale=s).mean()
        assert abs(mean.grad[:, i].mean().item() - (hi - lo) / (2 * eps)) < 0.02
