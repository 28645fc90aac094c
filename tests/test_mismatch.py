"""Objective-mismatch analysis: losses by hand, the correlation pipeline on data with a known correlation, and a
small end-to-end run (datasets -> models -> tables/figures) on the inline and local sweep backends."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from wmbench.analysis import mismatch as mm
from wmbench.analysis.cli import QUICK, cli_analyze
from wmbench.envs.control import cartpole_reward, cartpole_step
from wmbench.errors import WmbenchError
from wmbench.nn.ensemble import ProbabilisticEnsemble

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# ---------------------------------------------------------------- losses by hand


def test_gaussian_nll_by_hand():
    zero = torch.zeros(1, 1)
    # N(1; 0, 1): 0.5 log 2pi + 0.5
    assert float(mm.gaussian_nll(zero, zero, torch.ones(1, 1))) == pytest.approx(HALF_LOG_2PI + 0.5)
    # N(2; 0, 4): 0.5 (log 2pi + log 4 + 4 / 4)
    nll = mm.gaussian_nll(zero, torch.full((1, 1), math.log(4.0)), torch.full((1, 1), 2.0))
    assert float(nll) == pytest.approx(HALF_LOG_2PI + 0.5 * math.log(4.0) + 0.5)
    # Two samples, unit variance, targets 0 and 2 (squared errors 0 and 4), weights 3 and 1:
    # (3 * 0.5 * 0 + 1 * 0.5 * 4) / 4 = 0.5 on top of the constant.
    mean, logvar = torch.zeros(2, 1), torch.zeros(2, 1)
    target = torch.tensor([[0.0], [2.0]])
    assert float(mm.gaussian_nll(mean, logvar, target, torch.tensor([3.0, 1.0]))) == pytest.approx(HALF_LOG_2PI + 0.5)
    assert float(mm.gaussian_nll(mean, logvar, target)) == pytest.approx(HALF_LOG_2PI + 1.0)
    # Dimensions are averaged: errors 0 and 2 in two dims of one sample -> (0 + 2) / 2.
    assert float(mm.gaussian_nll(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[0.0, 2.0]]))) == pytest.approx(
        HALF_LOG_2PI + 1.0
    )


def test_gaussian_nll_matches_the_ensemble_fit_term():
    # PETS's fit term (no 1/2, no constant) of a one-member ensemble = 2 x our NLL - log 2pi.
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(3, 2, members=1, hidden=8, layers=2)
    x, y = torch.randn(1, 10, 3), torch.randn(1, 10, 2)
    _, logs = model.loss(x, y)
    mean, logvar = model(x)
    ours = mm.gaussian_nll(mean[0], logvar[0], y[0])
    assert logs["model_fit"] == pytest.approx(2 * float(ours.detach()) - 2 * HALF_LOG_2PI, rel=1e-5)


def test_value_equivalence_loss_by_hand():
    pred_r, r = torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)  # reward errors 1, 2 -> 1 + 4 = 5
    pred_v, g = torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 3.0]])  # value errors 1, 1, -2 -> 6
    assert float(mm.value_equivalence_loss(pred_r, r, pred_v, g, value_coef=0.5)) == pytest.approx(5 + 0.5 * 6)
    # Batch mean: a second, perfect sequence halves it.
    two = mm.value_equivalence_loss(
        torch.cat([pred_r, r]), torch.zeros(2, 2), torch.cat([pred_v, g]), torch.cat([g, g]), value_coef=0.5
    )
    assert float(two) == pytest.approx((5 + 3) / 2)


def test_discounted_returns_by_hand():
    # gamma 0.5: G2 = 1, G1 = 1 + 0.5, G0 = 1 + 0.5 * 1.5
    np.testing.assert_allclose(mm.discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5), [1.75, 1.5, 1.0])
    np.testing.assert_allclose(mm.discounted_returns(np.array([0.0, 2.0]), 0.9), [1.8, 2.0])


def test_windows_pair_actions_rewards_and_returns():
    # One episode of 3 steps, rewards 1, 2, 4, gamma 0.5: returns G = [1 + 1 + 1, 2 + 2, 4] = [3, 4, 4].
    states = np.arange(16, dtype=float).reshape(1, 4, 4)
    data = mm.Trajectories(states, np.array([[[0.1], [0.2], [0.3]]]), np.array([[1.0, 2.0, 4.0]]))
    w = mm._windows(data, 2, 0.5)
    assert len(w["start"]) == 2  # windows starting at t = 0 and t = 1
    np.testing.assert_allclose(w["start"][1].numpy(), states[0, 1])
    np.testing.assert_allclose(w["actions"][1, :, 0].numpy(), [0.2, 0.3])
    np.testing.assert_allclose(w["rewards"][0].numpy(), [1.0, 2.0])
    np.testing.assert_allclose(w["returns"][0].numpy(), [3.0, 4.0, 4.0])
    np.testing.assert_allclose(w["returns"][1].numpy(), [4.0, 4.0, 0.0])  # past the end: 0


def test_unroll_adds_predicted_deltas():
    # A network with zero output weights predicts the target mean: every step adds out_mean.
    model = ProbabilisticEnsemble(6, 4, members=1, hidden=8, layers=2)
    with torch.no_grad():
        model.layers[-1].weight.zero_()
        model.layers[-1].bias.zero_()
        model.out_mean.copy_(torch.tensor([0.1, 0.0, -0.2, 0.5]))
    start = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    states = mm.unroll(model, start, torch.zeros(1, 3, 1))
    expected = start + torch.arange(4.0).view(4, 1) * torch.tensor([0.1, 0.0, -0.2, 0.5])
    torch.testing.assert_close(states[0], expected)


def test_expert_distance_weights():
    expert = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 1.0, 3.0, -1.0]])
    far = torch.tensor([[1e3, 0.0, 0.0, 0.0]])
    floor = 0.1
    w = mm.expert_distance_weights(torch.cat([expert[:1], far]), expert, tau=1.0, floor=floor)
    # raw weights 1 (on the expert trajectory) and floor (far away), normalised to mean 1
    np.testing.assert_allclose(w.numpy(), np.array([1.0, floor]) * 2 / (1 + floor), rtol=1e-5)


def test_grid_data_follows_the_true_dynamics():
    cfg = mm.MismatchConfig(grid_points=50)
    data = mm.collect_grid(cfg, seed=3)
    s, a, s2 = data.transitions()
    assert (s >= mm.GRID_LOW[:4]).all() and (s <= mm.GRID_HIGH[:4]).all()
    np.testing.assert_allclose(s2, cartpole_step(s, a[:, 0] * 10.0))
    np.testing.assert_allclose(data.rewards[:, 0], cartpole_reward(s2))


def test_lattice_is_a_regular_grid_over_the_stated_box():
    cfg = mm.MismatchConfig(lattice_points=3)
    data = mm.collect_lattice(cfg)
    s, a, s2 = data.transitions()
    sa = np.concatenate([s, a], 1)
    assert len(sa) == 3**5 and len(np.unique(sa, axis=0)) == 3**5  # every lattice point once
    width = mm.LATTICE_HIGH - mm.LATTICE_LOW
    for d in range(5):
        values = np.unique(sa[:, d])
        # three cell centres: low + (1/6, 3/6, 5/6) x width, equally spaced, inside the box
        np.testing.assert_allclose(values, mm.LATTICE_LOW[d] + np.array([1, 3, 5]) / 6 * width[d])
    np.testing.assert_allclose(mm.LATTICE_HIGH[2] - mm.LATTICE_LOW[2], 2 * np.pi)  # one turn of the pole
    np.testing.assert_allclose(s2, cartpole_step(s, a[:, 0] * 10.0))
    np.testing.assert_allclose(data.rewards[:, 0], cartpole_reward(s2))
    np.testing.assert_array_equal(mm.collect_lattice(cfg).states, data.states)  # no randomness
    with pytest.raises(WmbenchError, match="lattice_points=1"):
        mm.collect_lattice(mm.MismatchConfig(lattice_points=1))


def test_pets_kinds_are_all_of_one_pets_run_and_its_last_episodes():
    run = mm.Trajectories(np.arange(5.0)[:, None, None] * np.ones((5, 3, 4)), np.zeros((5, 2, 1)), np.zeros((5, 2)))
    kinds = mm.pets_datasets(run, mm.MismatchConfig(pets_episodes=5, pets_expert_episodes=2))
    assert kinds["pets_onpolicy"] is run
    np.testing.assert_array_equal(kinds["pets_expert"].states[:, 0, 0], [3.0, 4.0])  # the last two episodes
    with pytest.raises(WmbenchError, match="pets_expert_episodes=5"):
        mm.pets_datasets(run, mm.MismatchConfig(pets_episodes=5, pets_expert_episodes=5))


def test_pets_run_plans_with_a_ts_inf_ensemble_retrained_after_each_episode(monkeypatch):
    # The on-policy data must come from PETS (Chua et al. 2018): an ensemble of pets_members probabilistic
    # models, TS-inf particle propagation, retrained on all data after every episode; the first episode random.
    cfg = replace(mm.MismatchConfig(), **{**QUICK, "episode_steps": 5, "pets_episodes": 3, "pets_members": 3,
                                          "pets_particles": 3})
    calls, fits = [], []
    real_propagate, real_fit = mm.propagate, mm.train_ensemble

    def spy_propagate(model, *args, **kwargs):
        calls.append((model.members, kwargs["mode"], kwargs["particles"]))
        return real_propagate(model, *args, **kwargs)

    def spy_fit(model, optimizer, inputs, *args, **kwargs):
        fits.append(len(inputs))
        return real_fit(model, optimizer, inputs, *args, **kwargs)

    monkeypatch.setattr(mm, "propagate", spy_propagate)
    monkeypatch.setattr(mm, "train_ensemble", spy_fit)
    run = mm.collect_pets_run(cfg, seed=1, progress=lambda _: None)
    assert run.states.shape == (3, 6, 4)
    assert fits == [5, 10]  # after episode 1 on its 5 steps, after episode 2 on all 10
    assert set(calls) == {(3, "tsinf", 3)} and len(calls) == 2 * 5 * cfg.iterations  # 2 planned episodes
    assert np.all(np.abs(run.actions) <= 1.0)
    again = mm.collect_pets_run(cfg, seed=1, progress=lambda _: None)
    np.testing.assert_array_equal(again.actions, run.actions)  # deterministic in (cfg, seed)


# ---------------------------------------------------------------- value-gradient weighting (VaGraM)


def test_value_gradient_weighted_loss_by_hand():
    # dV/ds' = (1, 2), errors (3, 1): (1 x 3)^2 + (2 x 1)^2 = 13; a second sample with zero gradient costs 0.
    pred, target = torch.tensor([[3.0, 1.0], [5.0, 5.0]]), torch.zeros(2, 2)
    grad = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    assert float(mm.value_gradient_weighted_loss(pred[:1], target[:1], grad[:1])) == pytest.approx(13.0)
    assert float(mm.value_gradient_weighted_loss(pred, target, grad)) == pytest.approx(13.0 / 2)
    # Errors along a dimension the value does not depend on are free: the loss ignores dimension 0 here.
    assert float(mm.value_gradient_weighted_loss(torch.tensor([[7.0, 0.0]]), torch.zeros(1, 2),
                                                 torch.tensor([[0.0, 3.0]]))) == 0.0


def test_value_gradients_by_hand():
    w = torch.tensor([1.0, -2.0, 0.5, 0.0])
    states = torch.randn(3, 4)
    torch.testing.assert_close(mm.value_gradients(lambda s: s @ w, states), w.expand(3, 4))
    # V = x^2 + theta_dot: dV/dx = 2x, dV/dtheta_dot = 1
    grad = mm.value_gradients(lambda s: s[:, 0] ** 2 + s[:, 3], states)
    torch.testing.assert_close(grad, torch.stack([2 * states[:, 0], torch.zeros(3), torch.zeros(3), torch.ones(3)], 1))


def test_value_from_the_nll_solution_starts_at_the_nll_model():
    # value_init = nll trains the NLL model first; with a zero fine-tuning step size the result is that model.
    cfg = replace(mm.MismatchConfig(), hidden=8, batch_size=16, unroll=2, value_lr=0.0)
    rng = np.random.default_rng(0)
    data = mm.Trajectories(rng.normal(size=(3, 6, 4)), rng.uniform(-1, 1, (3, 5, 1)), rng.uniform(0, 1, (3, 5)))
    nll = mm.make_model(cfg, 4)
    mm.train(nll, None, data, "nll", cfg, 3, np.random.default_rng(1))
    value = mm.make_model(cfg, 4)
    torch.manual_seed(0)
    mm.train(value, mm.make_value_head(cfg), data, "value", cfg, 3, np.random.default_rng(1))
    for a, b in zip(nll.parameters(), value.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # ... and a non-zero fine-tuning step moves it.
    moved = mm.make_model(cfg, 4)
    mm.train(moved, mm.make_value_head(cfg), data, "value", replace(cfg, value_lr=1e-2), 3, np.random.default_rng(1))
    assert not torch.allclose(moved.layers[-1].weight, nll.layers[-1].weight)


# ---------------------------------------------------------------- correlations


def _correlated(rho: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n)
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)


def test_correlation_matches_scipy_and_its_ci_covers_the_truth():
    rng = np.random.default_rng(0)
    x, y = _correlated(0.6, 400, rng)
    r = mm.correlation(x, y, "pearson", reps=1000, seed=1)
    assert r.point == pytest.approx(sps.pearsonr(x, y)[0])
    assert r.low < 0.6 < r.high and r.high - r.low < 0.2
    s = mm.correlation(x, y, "spearman", reps=1000, seed=1)
    assert s.point == pytest.approx(sps.spearmanr(x, y)[0])
    assert s.low < s.point < s.high


def test_bootstrap_ci_coverage_is_near_nominal():
    # 60 data sets with true rho = 0.5: a 90% CI should miss about 6 of them (binomial sd ~ 2.3).
    rng = np.random.default_rng(5)
    covered = 0
    for k in range(60):
        x, y = _correlated(0.5, 80, rng)
        r = mm.correlation(x, y, "pearson", reps=400, confidence=0.9, seed=k)
        covered += r.low <= 0.5 <= r.high
    assert 46 <= covered <= 60


def test_correlation_table_on_synthetic_models():
    rng = np.random.default_rng(2)
    rows = []
    for dataset, rho in (("expert", 0.8), ("grid", 0.0)):
        loglik, reward = _correlated(rho, 300, rng)
        rows += [{"dataset": dataset, "objective": "nll", "nll": -a, "reward": b} for a, b in zip(loglik, reward, strict=True)]
    table = mm.correlation_table(pd.DataFrame(rows), reps=500).set_index("dataset")
    assert table.loc["expert", "pearson_low"] < 0.8 < table.loc["expert", "pearson_high"]
    assert table.loc["grid", "pearson_low"] < 0.0 < table.loc["grid", "pearson_high"]
    assert table.loc["expert", "paper_pearson"] == 0.59
    with pytest.raises(WmbenchError, match="equal-length"):
        mm.correlation([1.0, 2.0], [1.0, 2.0])


# ---------------------------------------------------------------- end to end

TINY = ["--quick", "--set", "episode_steps=8", "--set", "expert_episodes=2", "--set", "horizon=4",
        "--set", "expert_horizon=4", "--set", "expert_population=16", "--set", "grid_points=60",
        "--set", "max_epochs=3", "--reps", "200"]


def test_end_to_end_inline(tmp_path, capsys):
    out = tmp_path / "mm"
    argv = ["mismatch", "--models", "3", "--datasets", "pets_expert,grid_lattice", "--objectives",
            "nll,value,weighted,vagram",
            "--backend", "inline", "--curves", "1", "--out", str(out), *TINY]
    assert cli_analyze(argv) == 0
    models = pd.read_csv(out / "models.csv")
    assert len(models) == 2 * 4 * 3
    assert set(models.objective) == {"nll", "value", "weighted", "vagram"}
    assert set(models.dataset) == {"pets_expert", "grid_lattice"}
    assert np.isfinite(models[["nll", "reward"]]).all().all()
    assert models.reward.between(0, 8).all()  # at most 1 per step, 8 steps
    assert models.epochs.between(1, 3).all() and models.epochs.nunique() > 1  # models differ in training
    table = pd.read_csv(out / "correlations.csv")
    assert len(table) == 8 and {"pearson", "pearson_low", "spearman_high"} <= set(table.columns)
    epochs = pd.read_csv(out / "epochs.csv")
    # value models fine-tune after their NLL epochs: their curves run up to 3 + round(0.5 x 3) = 5
    assert set(epochs.epoch) <= {1, 2, 3, 4, 5} and len(epochs) >= 8
    for name in ("correlations.md", "correlations.png", "curves_reward.png", "scatter_grid_lattice_vagram.png"):
        assert (out / name).stat().st_size > 0
    # Re-running finds every record: nothing is retrained, the table is the same.
    before = (out / "models.csv").read_text()
    record = out / "models" / "grid_lattice.nll" / "000000.json"
    mtime = record.stat().st_mtime_ns
    assert cli_analyze(argv) == 0
    assert record.stat().st_mtime_ns == mtime and (out / "models.csv").read_text() == before
    # The attack rebuilds the stored model with the best reward exactly (same NLL and reward as its record) and
    # only accepts perturbations within the NLL tolerance.
    spec = mm.Spec.load(out / "spec.json")
    attack = mm.adversarial_attack(spec, "pets_expert", dim=4, popsize=4, generations=1, progress=lambda _: None)
    stored = models[(models.dataset == "pets_expert") & (models.objective == "nll")].set_index("model_id")
    assert attack["model_id"] == stored.reward.idxmax()
    assert attack["reward_before"] == pytest.approx(stored.reward.max(), abs=1e-9)
    assert attack["nll_before"] == pytest.approx(stored.loc[attack["model_id"], "nll"], abs=1e-6)
    assert attack["reward_after"] <= attack["reward_before"]
    assert attack["nll_after"] <= attack["nll_before"] + attack["tolerance"]
    assert attack["evaluations"] == 4
    # A different config in the same directory is refused (its records would be mixed).
    with pytest.raises(WmbenchError, match="another config"):
        cli_analyze([*argv, "--set", "lr=0.01"])


@pytest.mark.slow  # ~10 s unloaded, most of it the worker subprocess importing torch; ~60 s on a loaded 2-core box
def test_local_backend_gives_the_inline_records(tmp_path):
    # Each model is a pure function of (spec, dataset, objective, id): a worker subprocess must store exactly the
    # record the driver's own process computes.
    small = {"episode_steps": 6, "grid_points": 40, "horizon": 3}
    cfg = replace(mm.MismatchConfig(), **{**QUICK, **small})
    spec = mm.prepare_data(mm.Spec(cfg, 7, str(tmp_path)), ["grid"], progress=lambda _: None, with_expert=False)
    results = {}
    for backend in ("inline", "local"):
        mm.run_jobs(spec, [("grid.nll", 2)], backend=backend, workers=1, chunk=1, progress=lambda _: None)
        models, _ = mm.load_results(tmp_path)
        results[backend] = models.drop(columns=["wall_s"]).sort_values("model_id").reset_index(drop=True)
        shutil.rmtree(tmp_path / "models")
    assert len(results["local"]) == 2
    pd.testing.assert_frame_equal(results["inline"], results["local"])


def test_cli_errors_name_the_fix(tmp_path):
    with pytest.raises(WmbenchError, match="choose from pets_expert,pets_onpolicy,grid_lattice,expert,onpolicy,grid"):
        cli_analyze(["mismatch", "--datasets", "expert,pixels", "--out", str(tmp_path)])
    with pytest.raises(WmbenchError, match="--attack-dataset 'grid' is not among --datasets pets_expert"):
        cli_analyze(["mismatch", "--datasets", "pets_expert", "--attack", "--attack-dataset", "grid",
                     "--out", str(tmp_path)])
    with pytest.raises(WmbenchError, match="KEY one of"):
        cli_analyze(["mismatch", "--set", "nope=1", "--out", str(tmp_path)])
    with pytest.raises(WmbenchError, match="usage: wmbench analyze"):
        cli_analyze(["nothing"])
    with pytest.raises(WmbenchError, match="no model records"):
        cli_analyze(["mismatch", "--report-only", "--out", str(tmp_path)])
    assert {k: mm.PAPER_CARTPOLE[k] for k in mm.PAPER_DATASETS} == {"pets_expert": 0.59, "pets_onpolicy": 0.34,
                                                                    "grid_lattice": -0.06}
    assert json.loads(json.dumps(mm.PAPER_CARTPOLE))["grid"] == -0.06
