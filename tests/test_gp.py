"""GP regression, sparse FITC, jitter escalation and closed-form Gaussian moment matching (wmbench.nn.gp).

Moment-matching results are checked against Monte Carlo sampling of the same quantities, computed only through
deterministic evaluations (GP predictions at points, sin/cos, the cost formula), never the closed forms.
"""

import math
import warnings

import pytest
import torch

from wmbench.errors import WmbenchError
from wmbench.nn.gp import (
    GP,
    GPError,
    GPPosterior,
    cholesky,
    expected_saturating_cost,
    gaussian_append,
    moment_match,
    sin_squash,
    squash,
    trig_augment,
)

f64 = torch.float64


def gaussian(D: int, seed: int, scale: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(D, generator=g, dtype=f64) * 0.3
    A = torch.randn(D, D, generator=g, dtype=f64) * scale
    return m, A @ A.T + 0.02 * torch.eye(D, dtype=f64)


def mc_samples(m, S, n=100_000, seed=1):
    g = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(S)
    return m + torch.randn(n, len(m), generator=g, dtype=f64) @ L.T


def mc_moments(x, y):
    """Mean and covariance of y, and cov[x, y], from paired samples."""
    my = y.mean(0)
    return my, torch.cov(y.T).reshape(y.shape[1], y.shape[1]), (x - x.mean(0)).T @ (y - my) / (len(x) - 1)


def sine_data(n=40, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=f64) * 4 - 2
    y = torch.sin(3 * x) + noise * torch.randn(n, 1, generator=g, dtype=f64)
    return x, y


def test_gp_fits_1d_function_and_hyperparameters_move_sensibly():
    x, y = sine_data()
    gp = GP(x, y)
    ls0 = float(gp.log_ls.exp())
    stats = gp.fit(200)
    assert stats["gp_nlml"] < stats["gp_nlml_start"]
    # sin(3x) varies on a scale of ~1/3: the length-scale shrinks from the input std (~1) to a fraction of it...
    assert ls0 > 0.8 and 0.25 < float(gp.log_ls.exp()) < 0.75 * ls0
    # ...and sits at a minimum of the marginal likelihood along that axis.
    nlml = float(gp.nlml(gp.log_ls, gp.log_sf, gp.log_sn))
    for factor in (0.8, 1.25):
        assert float(gp.nlml(gp.log_ls + math.log(factor), gp.log_sf, gp.log_sn)) > nlml
    # The fitted noise recovers the true 0.1 within a factor of 2; the signal std is O(1) like sin.
    assert 0.05 < float(gp.log_sn.exp()) < 0.2
    assert 0.4 < float(gp.log_sf.exp()) < 3.0
    xt = torch.linspace(-1.8, 1.8, 50, dtype=f64)[:, None]
    mean, var = gp.predict(xt)
    assert (mean - torch.sin(3 * xt)).abs().max() < 0.2
    assert bool((var > 0.005).all()) and bool((var < 0.1).all())  # noise 0.01 plus a little model variance


def test_gp_ard_switches_off_irrelevant_input():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 2, generator=g, dtype=f64)
    y = torch.sin(2 * x[:, :1]) + 0.05 * torch.randn(60, 1, generator=g, dtype=f64)
    gp = GP(x, y)
    gp.fit(200)
    ls = gp.log_ls.exp()[0]
    assert ls[1] > 10 * ls[0]


def test_gp_moment_matching_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g, dtype=f64)
    Y = torch.stack([torch.sin(X[:, 0]) + 0.5 * X[:, 1], torch.cos(X[:, 2]) * X[:, 0]], 1)
    gp = GP(X, Y + 0.05 * torch.randn(50, 2, generator=g, dtype=f64))
    gp.fit(100)
    post = gp.posterior()
    m, S = gaussian(3, seed=4)
    M, V, Ct = moment_match(post, m, S, include_noise=True)
    xs = mc_samples(m, S)
    mu, var = post.predict(xs, include_noise=True)
    # Law of total variance: cov f = cov_x E[f|x] + E_x diag var[f|x] (outputs independent given x).
    Mmc, Cmu, Cxf = mc_moments(xs, mu)
    Vmc = Cmu + torch.diag(var.mean(0))
    assert torch.allclose(M, Mmc, atol=0.01)
    assert torch.allclose(V, Vmc, atol=0.01, rtol=0.03)
    assert torch.allclose(S @ Ct, Cxf, atol=0.01, rtol=0.03)


def test_sparse_gp_matches_full_gp_on_small_data():
    x, y = sine_data(n=120, seed=2)
    full = GP(x, y, max_full=1000)
    full.fit(150)
    sparse = GP(x, y, max_full=50, n_inducing=25)
    assert sparse.sparse and sparse.inducing.shape == (25, 1)
    z0 = sparse.inducing.clone()
    sparse.fit(150)
    assert not torch.equal(z0, sparse.inducing)  # pseudo-inputs are optimised
    xt = torch.linspace(-1.5, 1.5, 60, dtype=f64)[:, None]  # inside the data: FITC differs most at the edges
    mf, vf = full.predict(xt)
    ms, vs = sparse.predict(xt)
    assert (mf - ms).abs().max() < 0.05
    assert (vf.sqrt() - vs.sqrt()).abs().max() < 0.05
    # Moment matching uses the same posterior form for FITC (pseudo-inputs, iK = Kmm^-1 - Q^-1).
    m, S = torch.tensor([0.3], dtype=f64), torch.tensor([[0.2]], dtype=f64)
    M, V, _ = moment_match(sparse.posterior(), m, S, include_noise=True)
    xs = mc_samples(m, S)
    mu, var = sparse.predict(xs)
    assert abs(float(M) - float(mu.mean())) < 0.01
    assert abs(float(V) - float(mu.var() + var.mean())) < 0.01


def test_cholesky_jitter_warns_then_errors():
    singular = torch.ones(3, 3, dtype=f64)  # rank 1: plain Cholesky fails, a little jitter fixes it
    with pytest.warns(RuntimeWarning, match=r"3x3 matrix needed jitter 1\.0e-0\d"):
        L = cholesky(singular)
    assert torch.allclose(L @ L.T, singular, atol=1e-5)
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=f64)  # eigenvalue -1: no jitter <= 1e-3 helps
    with pytest.raises(GPError, match=r"2x2 matrix failed even with jitter 1\.0e-03") as info:
        cholesky(indefinite)
    assert isinstance(info.value, WmbenchError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cholesky(torch.eye(4, dtype=f64))  # a healthy matrix neither warns nor errors


def test_trig_augment_matches_monte_carlo_and_closed_form():
    m, S = gaussian(3, seed=5, scale=0.6)
    M, V, Ct = trig_augment(m, S, [0, 2])
    xs = mc_samples(m, S)
    feats = torch.stack([xs[:, 0].sin(), xs[:, 0].cos(), xs[:, 2].sin(), xs[:, 2].cos()], 1)
    Mmc, Vmc, _ = mc_moments(xs, feats)
    _, _, Cmc = mc_moments(xs[:, [0, 2]], feats)
    assert torch.allclose(M, Mmc, atol=0.01)  # MC standard errors are <= 0.003 here
    assert torch.allclose(V, Vmc, atol=0.01)
    assert torch.allclose(S[[0, 2]][:, [0, 2]] @ Ct, Cmc, atol=0.01)
    # Textbook value: E[sin t] = exp(-s^2/2) sin(mu).
    assert math.isclose(float(M[0]), math.exp(-float(S[0, 0]) / 2) * math.sin(float(m[0])), rel_tol=1e-12)


def test_gaussian_append_cross_covariance_to_other_variables():
    m, S = gaussian(3, seed=6, scale=0.5)
    M, V, Ct = trig_augment(m, S, [1])
    mj, Sj = gaussian_append(m, S, [1], M, V, Ct)
    xs = mc_samples(m, S)
    joint = torch.cat([xs, xs[:, 1:2].sin(), xs[:, 1:2].cos()], 1)
    assert torch.equal(Sj[:3, :3], S)
    assert torch.allclose(Sj, torch.cov(joint.T), rtol=0.02, atol=0.005)
    assert torch.allclose(mj, joint.mean(0), atol=0.02)  # MC standard errors <= 0.004


def test_sin_squash_matches_monte_carlo():
    m, S = gaussian(2, seed=7, scale=0.8)
    u_max = torch.tensor([10.0, 2.0], dtype=f64)
    M, V, Ct = sin_squash(m, S, u_max)
    xs = mc_samples(m, S)
    us = squash(xs, u_max)
    assert bool((us.abs() <= u_max + 1e-12).all())  # the squashing saturates at u_max
    Mmc, Vmc, Cmc = mc_moments(xs, us)
    assert torch.allclose(M, Mmc, atol=0.03)
    assert torch.allclose(V, Vmc, rtol=0.02, atol=0.05)
    assert torch.allclose(S @ Ct, Cmc, rtol=0.02, atol=0.03)


def test_expected_saturating_cost_matches_monte_carlo():
    m, S = gaussian(2, seed=8, scale=0.3)
    target = torch.tensor([0.1, -0.2], dtype=f64)
    cost = expected_saturating_cost(m, S, target, 0.25)
    xs = mc_samples(m, S)
    mc = 1 - torch.exp(-((xs - target) ** 2).sum(1) / (2 * 0.25**2))
    assert abs(float(cost) - float(mc.mean())) < 0.003
    # A point mass at the target costs nothing; far away it costs 1.
    zero = torch.zeros(2, 2, dtype=f64)
    assert float(expected_saturating_cost(target, zero, target, 0.25)) == pytest.approx(0.0, abs=1e-12)
    assert float(expected_saturating_cost(target + 10, zero, target, 0.25)) == pytest.approx(1.0, abs=1e-12)


def test_rbf_network_moments_leave_out_model_variance():
    """A GPPosterior without iK is a deterministic RBF network: its output variance is only Var_x[f(x)]."""
    g = torch.Generator().manual_seed(9)
    post = GPPosterior(
        points=torch.randn(10, 2, generator=g, dtype=f64),
        beta=torch.randn(1, 10, generator=g, dtype=f64),
        iK=None,
        log_ls=torch.zeros(1, 2, dtype=f64),
        log_sf=torch.zeros(1, dtype=f64),
        log_sn=torch.full((1,), math.log(0.01), dtype=f64),
    )
    m, S = gaussian(2, seed=10)
    M, V, Ct = moment_match(post, m, S)
    xs = mc_samples(m, S)
    f = post.predict(xs)[0]
    Mmc, Vmc, Cmc = mc_moments(xs, f)
    assert torch.allclose(M, Mmc, atol=0.005)
    assert torch.allclose(V, Vmc, rtol=0.02, atol=1e-4)
    assert torch.allclose(S @ Ct, Cmc, rtol=0.02, atol=1e-3)
