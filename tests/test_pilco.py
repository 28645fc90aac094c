"""PILCO (wmbench_baselines.pilco): controllers, the moment-matched rollout step vs Monte Carlo, the runner smoke
run (runs, saves, resumes, deterministic under a seed)."""

import io
import json

import gymnasium
import numpy as np
import pytest
import torch
from wmbench_baselines.pilco import (
    PILCO,
    PILCOConfig,
    augment,
    policy_inputs,
    tip_cost_moments,
)

from wmbench.config import make_config
from wmbench.envs.control import CARTPOLE
from wmbench.nn.gp import GP, squash

f64 = torch.float64
OBS = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)}
ACT = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)


def make(overrides=(), seed=0) -> PILCO:
    return PILCO(OBS, ACT, make_config(PILCOConfig, ["preset=tiny", *overrides]), seed=seed)


def samples(m, S, n=100_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return m + torch.randn(n, len(m), generator=g, dtype=f64) @ torch.linalg.cholesky(S).T


def test_supports_only_the_cartpole_spaces():
    assert PILCO.supports(OBS, ACT) is None
    assert "cartpole" in PILCO.supports({"vector": gymnasium.spaces.Box(-1, 1, (17,))}, ACT)
    assert PILCO.supports(OBS, gymnasium.spaces.Discrete(3)) is not None


@pytest.mark.parametrize("controller", ["rbf", "linear"])
def test_controller_output_moments_match_monte_carlo(controller):
    pilco = make([f"controller={controller}", "n_basis=10"], seed=3)
    params = pilco.controller.params
    if controller == "linear":
        params["W"] = torch.tensor([[0.5, -0.3, 0.8, 1.2, -0.7]], dtype=f64)
        params["b"] = torch.tensor([0.2], dtype=f64)
    m = torch.tensor([0.1, -0.2, 0.4, 0.6, -0.5], dtype=f64)
    A = torch.randn(5, 5, generator=torch.Generator().manual_seed(1), dtype=f64) * 0.3
    S = A @ A.T + 0.01 * torch.eye(5, dtype=f64)
    M, V, Ct = pilco.controller.moments(pilco.controller.prepare(params), m, S)
    xs = samples(m, S)
    u = pilco.controller(params, xs)
    assert torch.allclose(M, u.mean(0), atol=0.01)
    assert torch.allclose(V, u.var(0).reshape(1, 1), rtol=0.03, atol=1e-3)
    cov = (xs - xs.mean(0)).T @ (u - u.mean(0)) / (len(xs) - 1)
    assert torch.allclose(S @ Ct, cov, rtol=0.03, atol=2e-3)


def test_tip_cost_matches_monte_carlo_of_the_env_reward():
    # Near the upright target with moderate spread: the env's reward is 1 - cost at each sampled state.
    from wmbench.envs.control import cartpole_reward

    m = torch.tensor([0.1, 0.0, 3.0, 0.0], dtype=f64)
    S = torch.diag(torch.tensor([0.05, 0.1, 0.1, 0.1], dtype=f64) ** 2)
    expected = float(tip_cost_moments(*augment(m, S), CARTPOLE))
    mc = float((1 - cartpole_reward(samples(m, S))).mean())
    # The closed form treats [x, sin, cos] as jointly Gaussian (PILCO's approximation): close, not exact.
    assert abs(expected - mc) < 0.02
    assert 0.05 < mc < 0.6  # the test point is informative: neither at the target nor saturated
    # Far from the target (hanging down, cart at 0) the cost saturates at ~1.
    down = float(tip_cost_moments(*augment(torch.zeros(4, dtype=f64), S), CARTPOLE))
    assert down == pytest.approx(1.0, abs=1e-3)


def test_rollout_step_matches_monte_carlo_through_the_gp():
    """One moment-matched step p(x_t) -> p(x_t+1) vs sampling x_t, the controller, the squashing and the GP."""
    pilco = make(["n_basis=8"], seed=1)
    g = torch.Generator().manual_seed(5)
    X = torch.randn(80, 6, generator=g, dtype=f64)
    X[:, 5] *= 5  # forces in N
    Y = torch.stack([0.1 * X[:, 1], 0.05 * X[:, 5], 0.1 * X[:, 2], 0.2 * torch.sin(X[:, 3])], 1)
    gp = GP(X, Y + 0.01 * torch.randn(80, 4, generator=g, dtype=f64))
    gp.fit(30)
    post = gp.posterior()
    m = torch.tensor([0.0, 0.1, 0.3, -0.2], dtype=f64)
    S = torch.diag(torch.tensor([0.1, 0.1, 0.1, 0.1], dtype=f64) ** 2)
    ctrl = pilco.controller.prepare(pilco.controller.params)
    m1, S1 = pilco.step(*augment(m, S), post, ctrl)
    xs = samples(m, S, n=50_000)
    u = squash(pilco.controller(pilco.controller.params, policy_inputs(xs)), pilco.u_max)
    mean, var = post.predict(torch.cat([policy_inputs(xs), u], 1), include_noise=True)
    nxt = xs + mean + var.sqrt() * torch.randn(mean.shape, generator=g, dtype=f64)
    assert torch.allclose(m1, nxt.mean(0), atol=0.01)
    assert torch.allclose(S1, torch.cov(nxt.T), rtol=0.1, atol=5e-4)


def test_policy_random_first_then_controller_and_state_dict_roundtrip():
    pilco = make(seed=0)
    obs = {"vector": np.zeros((1, 4), np.float32), "is_first": np.array([True]), "is_last": np.array([False])}
    a, _ = pilco.policy(obs, None)
    assert a.shape == (1, 1) and a.dtype == np.float32 and abs(float(a[0, 0])) <= 1
    pilco.trials = 1  # past the random trial: the deterministic controller acts
    a1, _ = pilco.policy(obs, None)
    a2, _ = pilco.policy(obs, None)
    assert np.array_equal(a1, a2)
    x = policy_inputs(torch.zeros(1, 4, dtype=f64))
    force = squash(pilco.controller(pilco.controller.params, x), CARTPOLE.max_force)
    assert np.allclose(a1, (force / CARTPOLE.max_force).numpy())
    other = make(seed=1)
    other.load_state_dict(pilco.state_dict())
    assert np.array_equal(other.policy(obs, None)[0], a1)


def read_run(run_dir):
    scores = (run_dir / "scores.csv").read_text()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return scores, metrics


def test_smoke_run_through_runner_is_deterministic(tmp_path):
    from wmbench.runner import load_checkpoint, run

    # Two 200-step episodes: one random, one with the controller learned from it (sparse GP above 60 points).
    common = dict(overrides=["preset=tiny"], smoke=True, progress=False)
    first = run("pilco", "control@1", "cartpole_swingup", 0, root=tmp_path / "a", **common)
    assert first.status == "finished", first
    scores, metrics = read_run(first.run_dir)
    assert len(scores.strip().splitlines()) == 1 + 2
    learned = [m for m in metrics if "policy_cost" in m]
    assert learned and learned[0]["gp_sparse"] == 1.0 and learned[0]["gp_points"] == 200
    state = load_checkpoint(first.run_dir / "checkpoint")["method"]
    assert state["trials"] == 1 and state["gp"]["inputs"].shape == (200, 6)
    second = run("pilco", "control@1", "cartpole_swingup", 0, root=tmp_path / "b", **common)
    assert read_run(second.run_dir)[0] == scores  # same seed, same episodes


def test_state_dict_restores_gp_and_controller_after_learning():
    pilco = make(["max_full=30", "n_inducing=10"], seed=2)
    g = torch.Generator().manual_seed(0)
    states = torch.randn(41, 4, generator=g, dtype=f64) * 0.3
    u = torch.rand(40, 1, generator=g, dtype=f64) * 2 - 1
    episode = {"vector": states.numpy(), "action": torch.cat([u, u[-1:]]).numpy()}
    pilco.trials = 1
    metrics = pilco.learn(*pilco.dataset([episode]))
    assert metrics["gp_sparse"] == 1.0 and metrics["policy_cost"] <= metrics["policy_cost_start"]
    state = pilco.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    other = make(["max_full=30", "n_inducing=10"], seed=7)
    other.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        cost = pilco.rollout(pilco.controller.params, pilco.gp.posterior())[0]
        cost_loaded = other.rollout(other.controller.params, other.gp.posterior())[0]
    assert float(cost) == float(cost_loaded)
