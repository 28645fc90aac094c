"""Probabilistic ensemble: batched members, NLL training, calibrated variance, bootstrap, propagation modes."""

import numpy as np
import pytest
import torch

from wmbench.errors import WmbenchError
from wmbench.nn.ensemble import (
    EnsembleLinear,
    ModelDivergedError,
    ProbabilisticEnsemble,
    bootstrap_indices,
    propagate,
    train_ensemble,
)


def test_ensemble_linear_matches_per_member_matmul():
    layer = EnsembleLinear(3, 4, 2)
    x = torch.randn(3, 5, 4)
    expected = torch.stack([x[e] @ layer.weight[e] + layer.bias[e] for e in range(3)])
    assert torch.allclose(layer(x), expected, atol=1e-6)


def _toy(n, rng):
    # y = sin(3x) + noise whose std grows with |x|: a calibrated model predicts var ~= (0.05 + 0.2|x|)^2.
    x = rng.uniform(-1, 1, size=(n, 1))
    std = 0.05 + 0.2 * np.abs(x)
    y = np.sin(3 * x) + std * rng.normal(size=(n, 1))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def test_nll_decreases_and_variance_is_calibrated():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = _toy(2000, rng)
    model = ProbabilisticEnsemble(1, 1, members=3, hidden=64, layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.fit_normalisers(x, y)
    with torch.no_grad():
        first, _ = model.loss(x.expand(3, -1, -1), y.expand(3, -1, -1))
    train_ensemble(model, opt, x, y, rng, epochs=60, batch_size=128)
    with torch.no_grad():
        last, _ = model.loss(x.expand(3, -1, -1), y.expand(3, -1, -1))
    assert float(last) < float(first) - 1.0
    grid = torch.tensor([[-0.9], [0.0], [0.9]])
    mean, var = model.predict(grid.expand(3, -1, -1))
    true_std = 0.05 + 0.2 * grid.abs()
    assert torch.allclose(mean.mean(0), torch.sin(3 * grid), atol=0.1)
    ratio = var.mean(0).sqrt() / true_std
    assert torch.all((ratio > 0.5) & (ratio < 2.0)), ratio.flatten()


def test_bootstrap_indices_differ_per_member_and_resample_with_replacement():
    idx = bootstrap_indices(np.random.default_rng(1), 5, 200)
    assert idx.shape == (5, 200) and idx.min() >= 0 and idx.max() < 200
    assert all(not np.array_equal(idx[0], idx[e]) for e in range(1, 5))
    # With replacement: each row misses about 1/e of the samples.
    unique = np.mean([len(np.unique(row)) for row in idx]) / 200
    assert 0.55 < unique < 0.72


def test_holdout_early_stop_restores_best_and_reports():
    rng = np.random.default_rng(0)
    x, y = _toy(500, rng)
    model = ProbabilisticEnsemble(1, 1, members=2, hidden=32, layers=2)
    result = train_ensemble(
        model,
        torch.optim.Adam(model.parameters(), 1e-3),
        x,
        y,
        rng,
        epochs=200,
        holdout_ratio=0.2,
        patience=3,
    )
    assert result.holdout_mse is not None and result.epochs < 200


def test_nan_loss_raises_clear_error():
    rng = np.random.default_rng(0)
    x, y = _toy(64, rng)
    y[3] = float("nan")
    model = ProbabilisticEnsemble(1, 1, members=2, hidden=8, layers=1)
    with pytest.raises(ModelDivergedError, match="model_lr"):
        train_ensemble(
            model, torch.optim.Adam(model.parameters()), x, y, rng, epochs=1, refit_normalisers=False
        )


def _constant_delta_model(delta: float, logvar: float, members: int = 5) -> ProbabilisticEnsemble:
    """A model whose prediction is delta (raw) with variance exp(logvar) whatever the input."""
    model = ProbabilisticEnsemble(2, 1, members=members, hidden=4, layers=1)
    with torch.no_grad():
        last = model.layers[-1]
        last.weight.zero_()
        last.bias[..., 0] = delta
        last.bias[..., 1] = logvar
        model.max_logvar.fill_(5.0)
    return model


def test_propagation_modes_match_analytic_returns():
    # state' = state + 0.5 (+ N(0, var) noise); reward = next state; from s0 = 1 over H = 4 steps the expected
    # return is sum_{t=1..4} (1 + 0.5 t) = 9.
    reward = lambda s, a, s2: s2[..., 0]  # noqa: E731
    actions = torch.zeros(3, 4, 1)
    exact = propagate(
        _constant_delta_model(0.5, -30.0), torch.tensor([1.0]), actions, reward, mode="expectation"
    )
    assert torch.allclose(exact, torch.full((3,), 9.0), atol=1e-4)
    # Noise var 0.25 per step: the return's variance is sum_t (5 - t) ^2 * 0.25 = 7.5 per particle; mean over
    # 2000 particles has std ~0.06.
    noisy_model = _constant_delta_model(0.5, float(np.log(0.25)))
    for mode in ("ts1", "tsinf"):
        g = torch.Generator().manual_seed(0)
        r = propagate(
            noisy_model, torch.tensor([1.0]), actions, reward, particles=2000, mode=mode, generator=g
        )
        assert torch.allclose(r, torch.full((3,), 9.0), atol=0.3), (mode, r)


def test_propagation_rejects_bad_mode_and_particles():
    model = _constant_delta_model(0.0, 0.0)
    with pytest.raises(WmbenchError, match="propagation"):
        propagate(model, torch.zeros(1), torch.zeros(2, 3, 1), lambda s, a, n: n[..., 0], mode="ts2")
    with pytest.raises(WmbenchError, match="multiple"):
        propagate(model, torch.zeros(1), torch.zeros(2, 3, 1), lambda s, a, n: n[..., 0], particles=7)
