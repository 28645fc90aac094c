"""Objective mismatch: does the model's training objective predict the return its planner earns?

Owns the objective-mismatch analysis (Lambert, Amos, Yadan & Calandra, L4DC 2020, "Objective Mismatch in
Model-based Reinforcement Learning"): one dynamics-model architecture trained with three objectives and judged by
the episode reward it earns under one fixed planner (CEM-MPC), plus the paper's correlation study, per-epoch curves
and parameter-space adversarial attack on cart-pole swing-up.

Pieces (reused, not copied): the model is `wmbench.nn.ensemble.ProbabilisticEnsemble` (one member, PETS's
sin/cos cart-pole features from `baselines.pets.TASKS`, delta targets), the planner is
`wmbench.nn.planners.CEMPlanner` over `wmbench.nn.ensemble.propagate` in `expectation` mode (the model's mean, no
sampling: the same deterministic planner for every objective), the env, physics and known reward are
`wmbench.envs.control`, jobs run on `wmbench.sweep` backends, figures come from `wmbench.plots`.

Objectives (plain loss functions below, each checked by hand in tests/test_mismatch.py):
- `nll`: next-state Gaussian negative log-likelihood of the (normalised) state delta, the usual MBRL objective
  (PETS Eq. 2), `gaussian_nll`.
- `value`: MuZero-style value equivalence (Schrittwieser et al. 2020, Eq. 1; Grimm et al. 2020): unroll the model
  k steps from a real start state along the data's actions; the loss is the squared error of the predicted rewards
  plus the squared error of a value head's predictions against the data's discounted returns; no observation loss.
  Predicted rewards come from the task's *known reward function* applied to predicted states (no reward head, so
  the planner, which also uses the known reward, sees exactly what was trained); the value head is a small MLP on
  the predicted state's features, trained jointly and unused by the planner. `value_equivalence_loss`. By default
  (`value_init = "nll"`) the model starts from the NLL solution, its value head is first fitted to the real
  returns, and the fine-tune keeps a one-step NLL term (`value_nll_coef`) at a small step (`value_lr`); measured
  in docs/mismatch.md.
- `weighted`: Lambert et al. Sec. 5's re-weighting: each transition's NLL term is weighted by how close its state is
  to the expert trajectory (`expert_distance_weights`; our kernel: floor + (1 - floor) exp(-d^2 / (2 tau^2)) of the
  feature-space distance d to the nearest expert state, normalised to mean 1), `gaussian_nll` with weights.
- `vagram`: Voelcker et al. (ICLR 2022)'s value-gradient-weighted loss, diagonal form: sum_d (dV/ds'_d (s_hat_d -
  s'_d))^2 with V fitted to the data's returns (`value_gradient_weighted_loss`, `fit_value_function`); the
  variance is fitted by NLL around the VaGraM mean held fixed.

Data kinds (Lambert et al. Sec. 4.1, our reading in docs/mismatch.md): one PETS run (`collect_pets_run`: ensemble,
TS-inf, CEM; PETS Alg. 1) gives `pets_onpolicy` (all its episodes) and `pets_expert` (its last episodes, the
converged policy); `grid_lattice` is a regular state-action lattice stepped once each (`collect_lattice`). The
first version's kinds stay selectable for its stored outputs: `expert` (CEM-MPC with the true dynamics),
`onpolicy` (a one-member PETS-style loop), `grid` (uniform random over a wide box). Each model is a pure function of (spec, dataset, objective, model id): the seed, epoch count and data subset
are derived from them, so local, Ray and in-process runs give identical tables.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from wmbench.envs.control import CARTPOLE, CartPoleSwingUp, cartpole_reward, cartpole_step, task_reward
from wmbench.errors import WmbenchError
from wmbench.nn.ensemble import ProbabilisticEnsemble, propagate, train_ensemble
from wmbench.nn.planners import CEMPlanner
from wmbench.seeding import derive_seed
from wmbench.stats import Interval

OBJECTIVES = ("nll", "value", "weighted", "vagram")
# The paper's three data kinds as rebuilt here (docs/mismatch.md, "Which reading we took"), then the first
# implementation's kinds, kept so that its stored outputs still report: `expert` (CEM-MPC with the true physics),
# `onpolicy` (a 6-episode one-member PETS-style loop) and `grid` (uniform random over a wide box).
PAPER_DATASETS = ("pets_expert", "pets_onpolicy", "grid_lattice")
LEGACY_DATASETS = ("expert", "onpolicy", "grid")
DATASETS = PAPER_DATASETS + LEGACY_DATASETS
ENVS = {"cartpole": "cartpole_swingup"}
TARGET = "wmbench.analysis.mismatch:mismatch_target"
LOG_2PI = math.log(2 * math.pi)

# Lambert et al. 2020, Table 1 (cart-pole row) as given in this project's brief; see docs/mismatch.md for the
# status of these numbers (not re-verified against the paper's PDF here).
PAPER_CARTPOLE = {"expert": 0.59, "onpolicy": 0.34, "grid": -0.06}
PAPER_CARTPOLE.update({"pets_expert": 0.59, "pets_onpolicy": 0.34, "grid_lattice": -0.06})


class MismatchError(WmbenchError, ValueError):
    """A bad analysis request (unknown objective/dataset, too few models...); the message names the fix."""


@dataclass(frozen=True)
class MismatchConfig:
    """Everything that defines the models and their evaluation (the analysis spec; part of each job's identity)."""

    env: str = "cartpole"
    hidden: int = 64
    layers: int = 2
    lr: float = 3e-3
    batch_size: int = 32
    max_epochs: int = 120  # each model trains for an epoch count drawn in [1, max_epochs]
    min_fraction: float = 0.3  # ... on a random subset of [min_fraction, 1] of the training transitions
    # The fixed planner (CEM-MPC over the model's mean prediction) and its evaluation episode.
    horizon: int = 15
    population: int = 100
    elites: int = 10
    iterations: int = 3
    episode_steps: int = 100
    eval_seed: int = 0  # the same start state and planner noise for every model: differences come from the model
    curve_every: int = 10  # per-epoch curves: evaluate after every this many epochs (and the last)
    # Value equivalence (MuZero-style).
    unroll: int = 5
    gamma: float = 0.9
    value_coef: float = 1.0
    # How `value` models start: "nll" = from the NLL solution (train NLL for the model's epochs, then
    # value_finetune x epochs of value equivalence at value_lr); "scratch" = value equivalence only (first version).
    value_init: str = "nll"
    value_finetune: float = 0.5
    value_lr: float = 1e-4
    value_nll_coef: float = 1.0  # weight of a one-step NLL term kept in the value loss (0: pure value equivalence)
    # Value-gradient weighting (VaGraM): the value function fitted to the data's discounted returns.
    vagram_value_epochs: int = 30
    # Lambert et al. Sec. 5 re-weighting.
    weight_tau: float = 1.0
    weight_floor: float = 0.05
    # Data collection.
    expert_episodes: int = 5
    expert_horizon: int = 25
    expert_population: int = 100
    onpolicy_episodes: int = 6
    grid_points: int = 2000
    # The paper's kinds: one PETS run (Chua et al. 2018: bootstrapped probabilistic ensemble, TS-inf particles,
    # CEM) gives `pets_onpolicy` (all its episodes) and `pets_expert` (its last `pets_expert_episodes`).
    pets_episodes: int = 15
    pets_expert_episodes: int = 5
    pets_members: int = 5
    pets_particles: int = 5
    pets_epochs: int = 5  # passes over all data after each episode (PETS Alg. 1, as baselines/pets.py)
    # `grid_lattice`: a regular lattice of lattice_points values per state and action dimension (LATTICE_LOW..HIGH).
    lattice_points: int = 6
    heldout_fraction: float = 0.2

    @property
    def task(self) -> str:
        if self.env not in ENVS:
            raise MismatchError(f"--env {self.env!r} is not supported; choose one of {sorted(ENVS)}")
        return ENVS[self.env]


# ---------------------------------------------------------------- task adapters (cart-pole)


def features(state: torch.Tensor) -> torch.Tensor:
    """PETS's cart-pole model input: angle -> (sin, cos) (reused from baselines.pets)."""
    from wmbench_baselines.pets import TASKS

    return TASKS["cartpole_swingup"].features(state)


def reward_of(state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
    return task_reward("cartpole_swingup", state, action, next_state)


# ---------------------------------------------------------------- losses (plain functions)


def gaussian_nll(
    mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-dimension Gaussian NLL 0.5 (log 2 pi + log var + (y - mu)^2 / var), averaged over dims, then a
    (weighted) mean over samples: sum_i w_i nll_i / sum_i w_i. `weights` [N] (None: uniform).

    With uniform weights this is PETS's fit term (`ProbabilisticEnsemble.loss`, one member) / 2 + log(2 pi) / 2.
    """
    per_sample = 0.5 * (LOG_2PI + logvar + (target - mean) ** 2 * torch.exp(-logvar)).mean(-1)
    if weights is None:
        return per_sample.mean()
    return (weights * per_sample).sum() / weights.sum()


def expert_distance_weights(
    states: torch.Tensor, expert_states: torch.Tensor, tau: float = 1.0, floor: float = 0.05
) -> torch.Tensor:
    """Lambert et al. Sec. 5: weight transitions near the expert trajectory more. d_i = distance of state i to the
    nearest expert state in feature space, each feature scaled by the expert states' std; w_i = floor + (1 - floor)
    exp(-d_i^2 / (2 tau^2)), then normalised to mean 1 (so the loss scale, hence the learning rate, is unchanged)."""
    f, e = features(states), features(expert_states)
    scale = e.std(0, unbiased=False).clamp_min(1e-6)
    d = torch.cdist(f / scale, e / scale).min(dim=1).values
    w = floor + (1.0 - floor) * torch.exp(-(d**2) / (2 * tau**2))
    return w / w.mean()


def value_gradient_weighted_loss(pred: torch.Tensor, target: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """VaGraM's model loss (Voelcker, Liao, Garg & Farahmand, ICLR 2022, Eq. 7, the diagonal form): each state
    dimension's squared prediction error scaled by the squared gradient of the value function w.r.t. the next state
    at the observed next state, sum_d (dV/ds'_d (s_hat_d - s'_d))^2, averaged over samples. pred, target, grad [N, D]."""
    return ((grad * (pred - target)) ** 2).sum(-1).mean()


def value_gradients(value_fn: Callable[[torch.Tensor], torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """dV/ds at each of `states` [N, D] (raw state coordinates; V may map them through features)."""
    s = states.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(value_fn(s).sum(), s)
    return grad.detach()


def fit_value_head(head: nn.Module, data: Trajectories, cfg: MismatchConfig, rng: np.random.Generator) -> nn.Module:
    """Regress `head` (state features -> V) on the data's discounted returns from its real states (gamma =
    cfg.gamma; one-step episodes: V of the next state on the reward received there, so that the gradient is
    taken where VaGraM takes it), MSE, Adam at cfg.lr for cfg.vagram_value_epochs passes."""
    if data.states.shape[1] == 2:
        states, returns = data.states[:, 1], data.rewards
    else:
        returns = np.stack([discounted_returns(r, cfg.gamma) for r in data.rewards])  # from states 0..T-1
        states = data.states[:, :-1]
    x = torch.as_tensor(states.reshape(-1, states.shape[-1]), dtype=torch.float32)
    y = torch.as_tensor(returns.reshape(-1), dtype=torch.float32)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    for _ in range(cfg.vagram_value_epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = ((head(features(x[idx])).squeeze(-1) - y[idx]) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head


def fit_value_function(
    data: Trajectories, cfg: MismatchConfig, rng: np.random.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """V(s) for VaGraM: a small MLP on the state features fitted to the data's discounted returns
    (`fit_value_head`). VaGraM uses the agent's critic; the planner here has none, so the behaviour data's own
    return stands in for it. Frozen: the model's loss does not train it."""
    head = fit_value_head(make_value_head(cfg), data, cfg, rng)
    for p in head.parameters():
        p.requires_grad_(False)
    return lambda s: head(features(s)).squeeze(-1)


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Reward-to-go of each step of one episode, G_t = sum_i gamma^i r_{t+i} (truncated at the episode's end);
    `rewards[t]` is the reward received on arriving at state t+1, so G_t is the return from state t."""
    out = np.zeros(len(rewards) + 1)
    for t in range(len(rewards) - 1, -1, -1):
        out[t] = rewards[t] + gamma * out[t + 1]
    return out[:-1]


def value_equivalence_loss(
    pred_rewards: torch.Tensor, rewards: torch.Tensor, pred_values: torch.Tensor, returns: torch.Tensor,
    value_coef: float = 1.0,
) -> torch.Tensor:
    """MuZero's loss without the policy term (Schrittwieser et al. 2020, Eq. 1): per unrolled sequence, the sum
    over k steps of (r_hat - r)^2 plus value_coef x the sum over k+1 states of (v_hat - G)^2, averaged over the
    batch. pred_rewards, rewards [B, k]; pred_values, returns [B, k+1]."""
    reward_term = ((pred_rewards - rewards) ** 2).sum(-1)
    value_term = ((pred_values - returns) ** 2).sum(-1)
    return (reward_term + value_coef * value_term).mean()


def unroll(model: ProbabilisticEnsemble, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Predicted states [B, k+1, D] from real start states [B, D] along actions [B, k, A] (model mean, member 0)."""
    states = [start]
    for j in range(actions.shape[1]):
        x = torch.cat([features(states[-1]), actions[:, j]], -1)
        delta, _ = model.predict(x.unsqueeze(0))
        states.append(states[-1] + delta[0])
    return torch.stack(states, 1)


# ---------------------------------------------------------------- data


@dataclass
class Trajectories:
    """Episodes of equal length T: states [N, T+1, 4], actions [N, T, 1], rewards [N, T] (reward on arrival)."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray

    def __len__(self) -> int:
        return len(self.states)

    def subset(self, idx: Sequence[int]) -> Trajectories:
        idx = np.asarray(idx)
        return Trajectories(self.states[idx], self.actions[idx], self.rewards[idx])

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, a, s') flattened over episodes and time."""
        s = self.states[:, :-1].reshape(-1, self.states.shape[-1])
        s2 = self.states[:, 1:].reshape(-1, self.states.shape[-1])
        return s, self.actions.reshape(len(s), -1), s2

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, states=self.states, actions=self.actions, rewards=self.rewards)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | str) -> Trajectories:
        with np.load(path) as data:
            return cls(data["states"], data["actions"], data["rewards"])


# The expert plans with the true physics integrated by RK4 at 2 substeps instead of 10 (h = 0.05 s: RK4's error is
# far below what matters for planning) - 5x cheaper; the env itself still steps with 10.
EXPERT_PHYSICS = replace(CARTPOLE, substeps=2)


def true_rollout(state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Return of each action sequence [P, H, 1] under the true cart-pole physics (the expert's 'model')."""
    s = np.tile(state.cpu().numpy().astype(np.float64), (actions.shape[0], 1))
    forces = actions[..., 0].cpu().numpy().astype(np.float64) * CARTPOLE.max_force
    total = np.zeros(actions.shape[0])
    for t in range(actions.shape[1]):
        s = cartpole_step(s, forces[:, t], EXPERT_PHYSICS)
        total += cartpole_reward(s)
    return torch.as_tensor(total, dtype=torch.float32)


def run_episode(
    rollout_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    planner: CEMPlanner | None,
    steps: int,
    horizon: int,
    seed: int,
    rng: np.random.Generator | None = None,
) -> Trajectories:
    """One cart-pole episode with CEM-MPC over `rollout_fn` (or uniform random actions when planner is None)."""
    env = CartPoleSwingUp(time_limit=steps)
    obs, _ = env.reset(seed=seed)
    if planner is not None:
        planner.reset()
    states, actions, rewards = [obs["vector"].astype(np.float64)], [], []
    for _ in range(steps):
        if planner is None:
            action = rng.uniform(-1, 1, size=1)
        else:
            state = torch.as_tensor(obs["vector"], dtype=torch.float32)
            action = planner.plan(state, rollout_fn, horizon, (np.array([-1.0]), np.array([1.0])))[0].numpy()
        obs, reward, _, truncated, _ = env.step(action)
        states.append(env.state.copy())
        actions.append(np.asarray(action, np.float64).reshape(1))
        rewards.append(reward)
        if truncated:
            break
    return Trajectories(np.array(states)[None], np.array(actions)[None], np.array(rewards)[None])


def concat(parts: Iterable[Trajectories]) -> Trajectories:
    parts = list(parts)
    return Trajectories(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("states", "actions", "rewards")))


def collect_expert(cfg: MismatchConfig, seed: int, progress: Callable[[str], None] = print) -> Trajectories:
    """Expert episodes: CEM-MPC with the true dynamics (a stronger search than the evaluation planner)."""
    episodes = []
    for i in range(cfg.expert_episodes):
        planner = CEMPlanner(cfg.expert_population, max(1, cfg.expert_population // 10), 5, seed=derive_seed(seed, "x", i))
        ep = run_episode(true_rollout, planner, cfg.episode_steps, cfg.expert_horizon, derive_seed(seed, "xs", i))
        progress(f"expert episode {i + 1}/{cfg.expert_episodes}: reward {ep.rewards.sum():.1f}")
        episodes.append(ep)
    return concat(episodes)


def collect_onpolicy(cfg: MismatchConfig, seed: int, progress: Callable[[str], None] = print) -> Trajectories:
    """A PETS-style run (Chua et al. 2018, Alg. 1): one random episode, then CEM-MPC episodes with a model
    retrained (NLL, fresh weights) on all data so far; the dataset is every episode of that run."""
    rng = np.random.default_rng(derive_seed(seed, "onpolicy"))
    episodes = [run_episode(None, None, cfg.episode_steps, cfg.horizon, derive_seed(seed, "os", 0), rng)]
    for i in range(1, cfg.onpolicy_episodes):
        data = concat(episodes)
        model = make_model(cfg, derive_seed(seed, "om", i))
        train(model, None, data, "nll", cfg, cfg.max_epochs, np.random.default_rng(derive_seed(seed, "ot", i)))
        ep = run_episode(planner_rollout(model), make_planner(cfg, derive_seed(seed, "op", i)),
                         cfg.episode_steps, cfg.horizon, derive_seed(seed, "os", i))
        progress(f"on-policy episode {i + 1}/{cfg.onpolicy_episodes}: reward {ep.rewards.sum():.1f}")
        episodes.append(ep)
    return concat(episodes)


def collect_pets_run(cfg: MismatchConfig, seed: int, progress: Callable[[str], None] = print) -> Trajectories:
    """One PETS run (Chua et al. 2018, Alg. 1), the policy family Lambert et al. study: one uniform-random
    episode, then `pets_episodes - 1` episodes of CEM-MPC over a bootstrapped ensemble of `pets_members`
    probabilistic MLPs propagated with TS-inf particles; the ensemble keeps training (`pets_epochs` passes over all
    data, `wmbench.nn.ensemble.train_ensemble`) after every episode. Episodes are in run order, so the last ones
    are the run's most competent policy. Deterministic in (cfg, seed)."""
    rng = np.random.default_rng(derive_seed(seed, "pets"))
    episodes = [run_episode(None, None, cfg.episode_steps, cfg.horizon, derive_seed(seed, "ps", 0), rng)]
    torch.manual_seed(derive_seed(seed, "pm"))
    model = ProbabilisticEnsemble(6, 4, members=cfg.pets_members, hidden=cfg.hidden, layers=cfg.layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    progress(f"PETS episode 1/{cfg.pets_episodes} (random): reward {episodes[0].rewards.sum():.1f}")
    for i in range(1, cfg.pets_episodes):
        s, a, s2 = concat(episodes).transitions()
        train_ensemble(model, optimizer, _inputs(s, a), torch.as_tensor(s2 - s, dtype=torch.float32), rng,
                       epochs=cfg.pets_epochs, batch_size=cfg.batch_size)
        generator = torch.Generator().manual_seed(derive_seed(seed, "pg", i))
        rollout = lambda state, actions, generator=generator: propagate(  # noqa: E731
            model, state, actions, reward_of, particles=cfg.pets_particles, mode="tsinf", features=features,
            generator=generator)
        ep = run_episode(rollout, make_planner(cfg, derive_seed(seed, "pp", i)), cfg.episode_steps, cfg.horizon,
                         derive_seed(seed, "ps", i))
        progress(f"PETS episode {i + 1}/{cfg.pets_episodes}: reward {ep.rewards.sum():.1f}")
        episodes.append(ep)
    return concat(episodes)


def pets_datasets(run: Trajectories, cfg: MismatchConfig) -> dict[str, Trajectories]:
    """The paper's trajectory kinds from one PETS run: `pets_onpolicy` = every episode (the data a PETS agent
    trains on), `pets_expert` = its last `pets_expert_episodes` (the converged PETS policy)."""
    if not 2 <= cfg.pets_expert_episodes < cfg.pets_episodes:
        raise MismatchError(f"pets_expert_episodes={cfg.pets_expert_episodes} must be in [2, pets_episodes - 1 = "
                            f"{cfg.pets_episodes - 1}]; change --set pets_expert_episodes or pets_episodes")
    return {"pets_onpolicy": run, "pets_expert": run.subset(range(len(run) - cfg.pets_expert_episodes, len(run)))}


# Box of the lattice: cart position and velocity, pole angle over one turn (the model sees sin/cos, so one turn
# covers every angle), angular velocity, action. Values are the centres of lattice_points equal cells per axis.
LATTICE_LOW = np.array([-1.5, -4.0, -np.pi, -12.0, -1.0])
LATTICE_HIGH = -LATTICE_LOW


def lattice_axes(points: int) -> list[np.ndarray]:
    """Per dimension, the centres of `points` equal cells of LATTICE_LOW..LATTICE_HIGH."""
    if points < 2:
        raise MismatchError(f"lattice_points={points}: need >= 2 values per dimension; use --set lattice_points=6")
    frac = (np.arange(points) + 0.5) / points
    return [lo + frac * (hi - lo) for lo, hi in zip(LATTICE_LOW, LATTICE_HIGH, strict=True)]


def collect_lattice(cfg: MismatchConfig) -> Trajectories:
    """One-step 'episodes' from every point of a regular state-action lattice (lattice_points ** 5 points),
    each stepped once with the true physics. No randomness: the lattice is the same for every seed."""
    sa = np.stack(np.meshgrid(*lattice_axes(cfg.lattice_points), indexing="ij"), -1).reshape(-1, 5)
    s, a = sa[:, :4], sa[:, 4:]
    s2 = cartpole_step(s, a[:, 0] * CARTPOLE.max_force)
    return Trajectories(np.stack([s, s2], 1), a[:, None, :], cartpole_reward(s2)[:, None])


# Box of the legacy `grid` dataset: x, x_dot, theta (one full turn each way of hanging down), theta_dot, action.
GRID_LOW = np.array([-1.5, -4.0, -2 * np.pi, -12.0, -1.0])
GRID_HIGH = -GRID_LOW


def collect_grid(cfg: MismatchConfig, seed: int, n: int | None = None) -> Trajectories:
    """One-step 'episodes' from state-action pairs drawn uniformly over GRID_LOW..GRID_HIGH (true next state)."""
    rng = np.random.default_rng(derive_seed(seed, "grid"))
    sa = rng.uniform(GRID_LOW, GRID_HIGH, size=(n or cfg.grid_points, 5))
    s, a = sa[:, :4], sa[:, 4:]
    s2 = cartpole_step(s, a[:, 0] * CARTPOLE.max_force)
    return Trajectories(np.stack([s, s2], 1), a[:, None, :], cartpole_reward(s2)[:, None])


def split(data: Trajectories, fraction: float, seed: int) -> tuple[Trajectories, Trajectories]:
    """(train, held-out) by whole episodes: at least one held-out episode."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_hold = max(1, int(round(fraction * len(data))))
    if n_hold >= len(data):
        raise MismatchError(f"need at least 2 episodes to hold some out, got {len(data)}; collect more episodes")
    return data.subset(np.sort(order[n_hold:])), data.subset(np.sort(order[:n_hold]))


# ---------------------------------------------------------------- model, training, evaluation


def make_model(cfg: MismatchConfig, seed: int) -> ProbabilisticEnsemble:
    torch.manual_seed(seed)
    return ProbabilisticEnsemble(6, 4, members=1, hidden=cfg.hidden, layers=cfg.layers)


def make_value_head(cfg: MismatchConfig) -> nn.Module:
    return nn.Sequential(nn.Linear(5, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, 1))


def _inputs(s: np.ndarray, a: np.ndarray) -> torch.Tensor:
    return torch.cat([features(torch.as_tensor(s, dtype=torch.float32)), torch.as_tensor(a, dtype=torch.float32)], -1)


def _windows(data: Trajectories, k: int, gamma: float) -> dict[str, torch.Tensor]:
    """All length-k windows of the episodes with their rewards and discounted returns (value targets)."""
    k = min(k, data.actions.shape[1])
    T = data.actions.shape[1]
    returns = np.stack([discounted_returns(r, gamma) for r in data.rewards])
    starts = [(n, t) for n in range(len(data)) for t in range(T - k + 1)]
    n_idx = np.array([n for n, _ in starts])
    t_idx = np.array([t for _, t in starts])[:, None] + np.arange(k + 1)
    # The value target of the window's last state may lie past the episode's end: its return is then 0.
    ret = np.concatenate([returns, np.zeros((len(data), 1))], 1)
    f = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    return {
        "start": f(data.states[n_idx, t_idx[:, 0]]),
        "next": f(data.states[n_idx, t_idx[:, 1]]),
        "actions": f(data.actions[n_idx[:, None], t_idx[:, :-1]]),
        "rewards": f(data.rewards[n_idx[:, None], t_idx[:, :-1]]),
        "returns": f(ret[n_idx[:, None], t_idx]),
    }


def train(
    model: ProbabilisticEnsemble,
    value_head: nn.Module | None,
    data: Trajectories,
    objective: str,
    cfg: MismatchConfig,
    epochs: int,
    rng: np.random.Generator,
    weights: torch.Tensor | None = None,
    on_epoch: Callable[[int], None] | None = None,
    grads: torch.Tensor | None = None,
    refit: bool = True,
) -> None:
    """Fit `model` (and the value head for `value`) to `data` with one objective; minibatch Adam. `weights`:
    per-transition NLL weights (`weighted`); `grads`: dV/ds' per transition (`vagram`)."""
    s, a, s2 = data.transitions()
    x, y = _inputs(s, a), torch.as_tensor(s2 - s, dtype=torch.float32)
    if refit:
        model.fit_normalisers(x, y)  # every objective sees the same input scaling
    if objective == "value" and cfg.value_init == "nll":
        # Start from the NLL solution, then fine-tune for value equivalence (the epoch count of the fine-tune is
        # value_finetune x the NLL epochs; per-epoch callbacks count both phases).
        train(model, None, data, "nll", cfg, epochs, rng, on_epoch=on_epoch)
        # A fresh value head's errors would flow into the dynamics as noise: fit it on the real states first.
        fit_value_head(value_head, data, cfg, rng)
        tuned = replace(cfg, value_init="scratch", lr=cfg.value_lr)
        offset = epochs
        train(model, value_head, data, "value", tuned, max(1, round(cfg.value_finetune * epochs)), rng,
              on_epoch=None if on_epoch is None else (lambda e: on_epoch(offset + e)), refit=False)
        return
    if objective == "value" and cfg.value_init != "scratch":
        raise MismatchError(f"value_init={cfg.value_init!r}: use nll or scratch")
    params = list(model.parameters()) + (list(value_head.parameters()) if value_head is not None else [])
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    if objective == "value":
        windows = _windows(data, cfg.unroll, cfg.gamma)
        n = len(windows["start"])
    else:
        n = len(x)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            idx = torch.as_tensor(order[start : start + cfg.batch_size])
            if objective == "value":
                w = {k: v[idx] for k, v in windows.items()}
                states = unroll(model, w["start"], w["actions"])
                pred_rewards = reward_of(states[:, :-1], w["actions"], states[:, 1:])
                pred_values = value_head(features(states)).squeeze(-1)
                loss = value_equivalence_loss(pred_rewards, w["rewards"], pred_values, w["returns"], cfg.value_coef)
                if cfg.value_nll_coef > 0:  # keep the one-step likelihood of each window's first transition
                    mean, logvar = model(torch.cat([features(w["start"]), w["actions"][:, 0]], -1).unsqueeze(0))
                    target = (w["next"] - w["start"] - model.out_mean) / model.out_std
                    loss = loss + cfg.value_nll_coef * gaussian_nll(mean[0], logvar[0], target)
            elif objective == "vagram":
                mean, logvar = model(x[idx].unsqueeze(0))
                target = (y[idx] - model.out_mean) / model.out_std
                # The mean follows VaGraM (errors in raw state units, as the value gradient is); the variance is
                # fitted by NLL around that mean held fixed, so the held-out likelihood is still a likelihood.
                pred = mean[0] * model.out_std + model.out_mean
                loss = value_gradient_weighted_loss(pred, y[idx], grads[idx])
                loss = loss + gaussian_nll(mean[0].detach(), logvar[0], target)
                loss = loss + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
            else:
                mean, logvar = model(x[idx].unsqueeze(0))
                target = (y[idx] - model.out_mean) / model.out_std
                loss = gaussian_nll(mean[0], logvar[0], target, None if weights is None else weights[idx])
                # PETS App. A.1's penalty keeping the learned log-variance bounds tight.
                loss = loss + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
            if not torch.isfinite(loss):
                raise MismatchError(f"{objective} loss became {float(loss)} at epoch {epoch}; lower lr (now {cfg.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if on_epoch is not None:
            on_epoch(epoch)


@torch.no_grad()
def heldout_nll(model: ProbabilisticEnsemble, data: Trajectories, scale: np.ndarray) -> float:
    """Gaussian NLL of held-out next-state deltas, in units of the held-out deltas' std (`scale`, fixed per
    dataset) so that models with different training normalisers are compared on one scale."""
    s, a, s2 = data.transitions()
    mean, var = model.predict(_inputs(s, a).unsqueeze(0))
    sc = torch.as_tensor(scale, dtype=torch.float32)
    y = torch.as_tensor(s2 - s, dtype=torch.float32) / sc
    return float(gaussian_nll(mean[0] / sc, torch.log(var[0] / sc**2), y))


def make_planner(cfg: MismatchConfig, seed: int) -> CEMPlanner:
    return CEMPlanner(cfg.population, cfg.elites, cfg.iterations, seed=seed)


def planner_rollout(model: ProbabilisticEnsemble) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda state, actions: propagate(model, state, actions, reward_of, mode="expectation", features=features)


def episode_reward(model: ProbabilisticEnsemble, cfg: MismatchConfig) -> float:
    """Return of one episode of the fixed planner (CEM-MPC, expectation propagation) using `model`."""
    ep = run_episode(planner_rollout(model), make_planner(cfg, derive_seed(cfg.eval_seed, "plan")),
                     cfg.episode_steps, cfg.horizon, derive_seed(cfg.eval_seed, "start"))
    return float(ep.rewards.sum())


# ---------------------------------------------------------------- one model = one pure job


@dataclass
class Spec:
    """An analysis: its config, master seed and where its datasets live (written as spec.json in the out dir)."""

    config: MismatchConfig
    seed: int
    out: str
    datasets: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> {train, heldout} npz paths

    def to_json(self) -> str:
        return json.dumps({"config": asdict(self.config), "seed": self.seed, "out": self.out,
                           "datasets": self.datasets}, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: Path | str) -> Spec:
        data = json.loads(Path(path).read_text())
        return cls(MismatchConfig(**data["config"]), int(data["seed"]), data["out"], data["datasets"])


def model_plan(spec: Spec, dataset: str, objective: str, model_id: int) -> dict[str, Any]:
    """What varies between models (Lambert et al. Sec. 4.1: seeds, training length, data): derived, never drawn."""
    seed = derive_seed(spec.seed, dataset, objective, model_id)
    rng = np.random.default_rng(seed)
    return {"seed": seed, "epochs": int(rng.integers(1, spec.config.max_epochs + 1)),
            "fraction": float(rng.uniform(spec.config.min_fraction, 1.0))}


def _load_data(spec: Spec, dataset: str) -> tuple[Trajectories, Trajectories]:
    paths = spec.datasets[dataset]
    return Trajectories.load(paths["train"]), Trajectories.load(paths["heldout"])


def build_model(
    spec: Spec, dataset: str, objective: str, model_id: int, curve: bool = False
) -> tuple[ProbabilisticEnsemble, nn.Module | None, Trajectories, Trajectories, torch.Tensor | None, np.random.Generator,
           dict[str, Any]]:
    """The untrained model of one study member with everything its training needs: (model, value head, training
    subset, held-out data, transition weights, rng, plan). Deterministic in its arguments."""
    cfg, plan = spec.config, model_plan(spec, dataset, objective, model_id)
    if curve:  # a curve model trains for the full max_epochs so that the curve covers the whole range
        plan["epochs"] = cfg.max_epochs
    full, heldout = _load_data(spec, dataset)
    rng = np.random.default_rng(plan["seed"])
    # Subset of training episodes (of transitions for one-step grid data): at least one episode.
    keep = max(1, int(round(plan["fraction"] * len(full))))
    data = full.subset(np.sort(rng.permutation(len(full))[:keep]))
    model = make_model(cfg, plan["seed"])
    value_head = None
    if objective == "value":
        torch.manual_seed(derive_seed(plan["seed"], "value_head"))
        value_head = make_value_head(cfg)
    weights = None
    if objective == "weighted":
        expert, _ = _load_data(spec, expert_kind([dataset]))
        weights = expert_distance_weights(torch.as_tensor(data.transitions()[0], dtype=torch.float32),
                                          torch.as_tensor(expert.states.reshape(-1, 4), dtype=torch.float32),
                                          cfg.weight_tau, cfg.weight_floor)
    if objective == "vagram":
        torch.manual_seed(derive_seed(plan["seed"], "value_fn"))
        value_fn = fit_value_function(data, cfg, rng)
        weights = value_gradients(value_fn, torch.as_tensor(data.transitions()[2], dtype=torch.float32))
    return model, value_head, data, heldout, weights, rng, plan


def heldout_scale(heldout: Trajectories) -> np.ndarray:
    s, _, s2 = heldout.transitions()
    return (s2 - s).std(0).clip(1e-6)


def train_and_evaluate(spec: Spec, dataset: str, objective: str, model_id: int, curve: bool = False) -> dict[str, Any]:
    """Train one model and measure its held-out NLL and its planner's episode reward (+ per-epoch rows if
    `curve`). A pure function of its arguments: the same record on every backend."""
    cfg = spec.config
    started = time.perf_counter()
    model, value_head, data, heldout, weights, rng, plan = build_model(spec, dataset, objective, model_id, curve)
    scale = heldout_scale(heldout)
    epochs_rows: list[dict[str, float]] = []

    def on_epoch(epoch: int) -> None:
        if curve and (epoch % cfg.curve_every == 0 or epoch == plan["epochs"]):
            epochs_rows.append({"epoch": epoch, "nll": heldout_nll(model, heldout, scale),
                                "reward": episode_reward(model, cfg)})

    grads = weights if objective == "vagram" else None
    weights = None if objective == "vagram" else weights
    train(model, value_head, data, objective, cfg, plan["epochs"], rng, weights, on_epoch, grads)
    record = {
        "model_id": model_id, "dataset": dataset, "objective": objective, "seed": plan["seed"],
        "epochs": plan["epochs"], "fraction": plan["fraction"], "transitions": int(data.actions.shape[0]
                                                                                   * data.actions.shape[1]),
        "nll": heldout_nll(model, heldout, scale), "reward": episode_reward(model, cfg),
    }
    record["wall_s"] = round(time.perf_counter() - started, 3)
    if curve:
        record["curve"] = epochs_rows
    return record


def result_path(out: Path | str, dataset: str, objective: str, model_id: int, curve: bool = False) -> Path:
    return Path(out) / ("curves" if curve else "models") / f"{dataset}.{objective}" / f"{model_id:06d}.json"


def run_model(spec: Spec, dataset: str, objective: str, model_id: int, curve: bool = False) -> dict[str, Any]:
    """`train_and_evaluate` with its record stored atomically; a stored record is returned as is (resume)."""
    path = result_path(spec.out, dataset, objective, model_id, curve)
    if path.exists():
        return json.loads(path.read_text())
    record = train_and_evaluate(spec, dataset, objective, model_id, curve)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return record


def mismatch_target(method: str, protocol: str, task: str, seed: int, root: str = "", overrides: Sequence[str] = (),
                    **_: Any) -> SimpleNamespace:
    """Sweep-backend entry (`wmbench.sweep_backends.execute` calls it like `wmbench.runner.run`): `protocol` is
    the spec.json path, `task` is '<dataset>.<objective>[.curve]', `seed` the chunk index, overrides
    ('chunk=N', 'models=M') which model ids the chunk holds."""
    spec = Spec.load(protocol)
    opts = dict(o.split("=", 1) for o in overrides)
    chunk, models = int(opts["chunk"]), int(opts["models"])
    dataset, objective, *rest = task.split(".")
    ids = range(seed * chunk, min((seed + 1) * chunk, models))
    rewards = [run_model(spec, dataset, objective, i, curve=bool(rest))["reward"] for i in ids]
    return SimpleNamespace(status="finished", run_dir=str(Path(spec.out) / "models"),
                           final_score=float(np.mean(rewards)) if rewards else None, resumed=False)


# ---------------------------------------------------------------- driver


def prepare_data(
    spec: Spec, kinds: Sequence[str], progress: Callable[[str], None] = print, with_expert: bool = True
) -> Spec:
    """Collect (once; cached under <out>/data) each dataset kind, plus the expert data that the `weighted`
    objective needs (`with_expert`)."""
    cfg, out = spec.config, Path(spec.out) / "data"
    out.mkdir(parents=True, exist_ok=True)
    datasets = dict(spec.datasets)
    expert = expert_kind(kinds)
    pets_run: Trajectories | None = None
    for kind in dict.fromkeys([expert, *kinds] if with_expert else kinds):
        train_path, hold_path = out / f"{kind}.train.npz", out / f"{kind}.heldout.npz"
        if not (train_path.exists() and hold_path.exists()):
            started = time.perf_counter()
            if kind in ("pets_expert", "pets_onpolicy"):
                run_path = out / "pets_run.npz"
                if pets_run is None and run_path.exists():
                    pets_run = Trajectories.load(run_path)
                if pets_run is None:
                    pets_run = collect_pets_run(cfg, derive_seed(spec.seed, "pets"), progress)
                    pets_run.save(run_path)
                data = pets_datasets(pets_run, cfg)[kind]
            elif kind == "grid_lattice":
                data = collect_lattice(cfg)
            elif kind == "expert":
                data = collect_expert(cfg, derive_seed(spec.seed, "expert"), progress)
            elif kind == "onpolicy":
                data = collect_onpolicy(cfg, derive_seed(spec.seed, "onpolicy"), progress)
            elif kind == "grid":
                data = collect_grid(cfg, derive_seed(spec.seed, "grid"))
            else:
                raise MismatchError(f"unknown dataset {kind!r}; choose from {', '.join(DATASETS)}")
            tr, ho = split(data, cfg.heldout_fraction, derive_seed(spec.seed, "split", kind))
            tr.save(train_path)
            ho.save(hold_path)
            progress(f"dataset {kind}: {len(tr)} train / {len(ho)} held-out episodes "
                     f"({time.perf_counter() - started:.0f} s)")
        datasets[kind] = {"train": str(train_path), "heldout": str(hold_path)}
    return replace(spec, datasets=datasets)


def expert_kind(kinds: Sequence[str]) -> str:
    """The expert trajectories the `weighted` and attack steps use: the PETS expert unless only legacy kinds run."""
    return "expert" if kinds and all(k in LEGACY_DATASETS for k in kinds) else "pets_expert"


def write_spec(spec: Spec) -> Path:
    path = Path(spec.out) / "spec.json"
    if path.exists():
        old = Spec.load(path)
        if asdict(old.config) != asdict(spec.config) or old.seed != spec.seed:
            raise MismatchError(f"{spec.out} holds an analysis with another config or seed; use a new --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.to_json())
    return path


def run_jobs(
    spec: Spec, tasks: Sequence[tuple[str, int]], backend: str = "local", workers: int = 1, chunk: int = 5,
    progress: Callable[[str], None] = print,
) -> None:
    """Train/evaluate every (task, models) in `tasks` ('<dataset>.<objective>[.curve]', number of models) on a
    sweep backend; `inline` runs them in this process. Chunks already stored are skipped by `run_model`."""
    spec_path = write_spec(spec)
    # Chunk-major order: every dataset/objective advances together, so a run stopped early stays balanced.
    jobs = sorted(((task, c, models) for task, models in tasks for c in range(math.ceil(models / chunk))),
                  key=lambda job: (job[1], tasks.index((job[0], job[2]))))
    started, done = time.perf_counter(), 0
    if backend == "inline":
        for task, c, models in jobs:
            mismatch_target("mismatch", str(spec_path), task, c, overrides=(f"chunk={chunk}", f"models={models}"))
            done += 1
            progress(f"[{done}/{len(jobs)}] {task} chunk {c} ({time.perf_counter() - started:.0f} s)")
        return
    from wmbench import sweep
    from wmbench.sweep_backends import RunJob

    options = sweep.ExecOptions(backend=backend, workers=workers, threads=1, target=TARGET, reuse_workers=True)
    be = sweep.make_backend(options, Path(spec.out), workers, 1)
    pending = [(RunJob("mismatch", str(spec_path), task, c, spec.out, (f"chunk={chunk}", f"models={models}"),
                       target=TARGET), 1) for task, c, models in jobs]
    failures: list[str] = []
    try:
        while pending or be.in_flight:
            free = be.capacity - be.in_flight
            if free > 0 and pending:
                be.submit(pending[:free])
                pending = pending[free:]
            for job, attempt, outcome in be.wait(1.0):
                if outcome.status == "finished":
                    done += 1
                    progress(f"[{done}/{len(jobs)}] {job.task} chunk {job.seed} "
                             f"({time.perf_counter() - started:.0f} s)")
                elif attempt < 3:  # crashed worker: retry; finished models of the chunk are kept on disk
                    pending.append((job, attempt + 1))
                else:
                    failures.append(f"{job.task} chunk {job.seed}: {outcome.error} ({outcome.error_file})")
    finally:
        be.close()
    if failures:
        raise MismatchError("some model jobs failed after 3 attempts:\n  " + "\n  ".join(failures))


def load_results(out: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(models table, per-epoch table) from the stored records under `out`."""
    rows, curve_rows = [], []
    for path in sorted(Path(out).glob("models/*/*.json")):
        rows.append(json.loads(path.read_text()))
    for path in sorted(Path(out).glob("curves/*/*.json")):
        rec = json.loads(path.read_text())
        for row in rec.get("curve", []):
            curve_rows.append({"model_id": rec["model_id"], "dataset": rec["dataset"],
                               "objective": rec["objective"], **row})
    return pd.DataFrame(rows), pd.DataFrame(curve_rows)


# ---------------------------------------------------------------- correlations


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (works for one pair or a batch of bootstrap resamples)."""
    xc, yc = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    denom = np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(-1) / denom


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def correlation(
    x: Sequence[float], y: Sequence[float], method: str = "pearson", reps: int = 2000, confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Correlation of paired samples with a percentile bootstrap CI over resampled pairs (Efron & Tibshirani
    1993, Ch. 13). method: pearson | spearman (Pearson of average ranks, recomputed within each resample)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise MismatchError(f"correlation needs two equal-length 1-D samples of >= 3 values, got {x.shape}, {y.shape}")
    if method not in ("pearson", "spearman"):
        raise MismatchError(f"unknown correlation {method!r}; use pearson or spearman")
    f = (lambda a, b: _pearson(_ranks(a), _ranks(b))) if method == "spearman" else _pearson
    point = float(f(x, y))
    idx = np.random.default_rng(seed).integers(0, len(x), size=(reps, len(x)))
    boot = f(x[idx], y[idx])
    boot = boot[np.isfinite(boot)]  # a resample of identical values has no correlation
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(boot, [alpha, 1 - alpha]) if len(boot) else (float("nan"),) * 2)
    return Interval(point, float(low), float(high))


def correlation_table(models: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (dataset, objective): Pearson and Spearman correlation of held-out log-likelihood (-NLL) with reward,
    with bootstrap CIs. Positive = a better likelihood goes with more reward (the hoped-for relation)."""
    rows = []
    for (dataset, objective), g in models.groupby(["dataset", "objective"], sort=False):
        row: dict[str, Any] = {"dataset": dataset, "objective": objective, "models": len(g),
                               "reward_mean": g.reward.mean(), "reward_max": g.reward.max(),
                               "nll_median": g.nll.median()}
        for method in ("pearson", "spearman"):
            if len(g) >= 3:
                r = correlation(-g.nll.to_numpy(), g.reward.to_numpy(), method, reps, seed=seed)
            else:
                r = Interval(float("nan"), float("nan"), float("nan"))
            row.update({method: r.point, f"{method}_low": r.low, f"{method}_high": r.high})
        row["paper_pearson"] = PAPER_CARTPOLE.get(dataset) if objective == "nll" else None
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    header = "| dataset | objective | models | Pearson [95% CI] | Spearman [95% CI] | paper (Pearson) | mean reward |"
    lines = [header, "|" + "---|" * 7]
    for r in table.itertuples():
        paper = "" if r.paper_pearson is None or pd.isna(r.paper_pearson) else f"{r.paper_pearson:.2f}"
        lines.append(f"| {r.dataset} | {r.objective} | {r.models} | {r.pearson:.2f} [{r.pearson_low:.2f}, "
                     f"{r.pearson_high:.2f}] | {r.spearman:.2f} [{r.spearman_low:.2f}, {r.spearman_high:.2f}] | "
                     f"{paper} | {r.reward_mean:.1f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- adversarial attack (Lambert et al. Sec. 4.3)


def adversarial_attack(
    spec: Spec, dataset: str = "expert", model_id: int | None = None, tolerance: float = 0.1, dim: int = 16,
    sigma: float = 0.02, popsize: int = 8, generations: int = 6, progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """CMA-ES (Hansen 2016, package `cma`) over a perturbation of the model's parameters that keeps the held-out
    NLL within `tolerance` nats of the original while minimising the planner's reward (the paper reports cart-pole
    reward 176 -> 98 at near-equal likelihood). The attacked model is study member `model_id` of the `nll`
    objective (default: the stored one with the highest reward - attacking a model that already fails shows
    nothing), rebuilt exactly. To keep CMA-ES tractable the perturbation lives in a random `dim`-dimensional
    subspace of the output layer's mean weights, each direction scaled by those weights' std."""
    import cma

    cfg = spec.config
    if model_id is None:
        stored, _ = load_results(spec.out)
        mine = stored[(stored.dataset == dataset) & (stored.objective == "nll")] if len(stored) else stored
        model_id = int(mine.loc[mine.reward.idxmax(), "model_id"]) if len(mine) else 0
    model, _, data, heldout, _, rng, plan = build_model(spec, dataset, "nll", model_id)
    train(model, None, data, "nll", cfg, plan["epochs"], rng)
    scale = heldout_scale(heldout)
    layer = model.layers[-1]
    base = layer.weight.detach().clone()
    g = torch.Generator().manual_seed(derive_seed(spec.seed, "attack"))
    # Only the mean outputs are perturbed: the log-variance columns would change the NLL without changing the plan.
    basis = torch.randn(dim, *base.shape, generator=g) * base[..., : model.out_dim].std()
    basis[..., model.out_dim :] = 0.0
    nll0, reward0 = heldout_nll(model, heldout, scale), episode_reward(model, cfg)
    progress(f"attack on {dataset}/nll model {model_id}: nll {nll0:.3f}, reward {reward0:.1f}")
    history = []

    def evaluate(z: np.ndarray) -> tuple[float, float]:
        with torch.no_grad():
            layer.weight.copy_(base + torch.einsum("d,d...->...", torch.as_tensor(z, dtype=torch.float32), basis))
        return heldout_nll(model, heldout, scale), episode_reward(model, cfg)

    es = cma.CMAEvolutionStrategy(np.zeros(dim), sigma, {"popsize": popsize, "seed": derive_seed(spec.seed, "cma")
                                                         % 2**31 + 1, "verbose": -9})
    best = {"reward": reward0, "nll": nll0, "z": np.zeros(dim)}
    for gen in range(generations):
        zs = es.ask()
        fitness = []
        for z in zs:
            nll, reward = evaluate(z)
            ok = nll <= nll0 + tolerance
            history.append({"generation": gen, "nll": nll, "reward": reward, "feasible": ok})
            # Infeasible candidates rank behind every feasible one, ordered by how far they break the tolerance.
            fitness.append(reward if ok else reward0 + 1e3 * (1 + nll - nll0 - tolerance))
            if ok and reward < best["reward"]:
                best = {"reward": reward, "nll": nll, "z": np.asarray(z)}
        es.tell(zs, fitness)
        progress(f"attack generation {gen + 1}/{generations}: best feasible reward {best['reward']:.1f} "
                 f"(nll {best['nll']:.3f})")
    return {"dataset": dataset, "model_id": model_id, "tolerance": tolerance, "dim": dim, "nll_before": nll0,
            "reward_before": reward0, "nll_after": best["nll"], "reward_after": best["reward"],
            "evaluations": len(history), "history": history}


__all__ = [
    "DATASETS", "OBJECTIVES", "MismatchConfig", "Spec", "Trajectories", "adversarial_attack", "correlation",
    "correlation_table", "discounted_returns", "expert_distance_weights", "gaussian_nll", "heldout_nll",
    "value_gradient_weighted_loss", "value_gradients", "fit_value_function", "collect_pets_run", "collect_lattice",
    "load_results", "prepare_data", "run_jobs", "train_and_evaluate", "value_equivalence_loss"
]


# ---------------------------------------------------------------- report


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path | str, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Tables (models.csv, epochs.csv, correlations.csv/.md) and figures (scatter per dataset and objective,
    correlation bars with CIs, per-epoch curves) from the records stored under `out`."""
    from wmbench import plots

    out = Path(out)
    models, epochs = load_results(out)
    if models.empty:
        raise MismatchError(f"no model records under {out}/models; run `wmbench analyze mismatch --out {out}` first")
    models = models.sort_values(["dataset", "objective", "model_id"])
    models.to_csv(out / "models.csv", index=False)
    table = correlation_table(models, reps, seed)
    table.to_csv(out / "correlations.csv", index=False)
    attack_path = out / "attack.json"
    md = ["# Objective mismatch (Lambert et al. 2020) - cart-pole swing-up", "",
          "Correlation of held-out log-likelihood (-NLL) with the fixed planner's episode reward, per dataset kind "
          f"and training objective; 95% percentile-bootstrap CIs over models ({reps} resamples).", "",
          markdown_table(table)]
    if attack_path.exists():
        a = json.loads(attack_path.read_text())
        md += ["## Adversarial attack (CMA-ES on output-layer weights)", "",
               f"reward {a['reward_before']:.1f} -> {a['reward_after']:.1f} with held-out NLL {a['nll_before']:.3f} "
               f"-> {a['nll_after']:.3f} (tolerance {a['tolerance']} nats, {a['evaluations']} evaluations)", ""]
    (out / "correlations.md").write_text("\n".join(md))
    for (dataset, objective), g in models.groupby(["dataset", "objective"]):
        fig = plots.scatter(g.nll, g.reward, xlabel="held-out NLL (per dim)", ylabel="episode reward",
                            title=f"{dataset} data, {objective} objective ({len(g)} models)")
        _save(fig, out / f"scatter_{dataset}_{objective}.png")
    values = {f"{r.dataset}/{r.objective}": r.pearson for r in table.itertuples() if np.isfinite(r.pearson)}
    errors = {f"{r.dataset}/{r.objective}": (r.pearson_low, r.pearson_high) for r in table.itertuples()
              if np.isfinite(r.pearson)}
    if values:
        _save(plots.bar(values, errors, ylabel="Pearson r (-NLL, reward)", title="likelihood-reward correlation"),
              out / "correlations.png")
    if not epochs.empty:
        epochs.to_csv(out / "epochs.csv", index=False)
        for metric, label in (("reward", "episode reward"), ("nll", "held-out NLL")):
            curves: dict[str, dict[str, tuple]] = {}
            for (dataset, objective), g in epochs.groupby(["dataset", "objective"]):
                s = g.groupby("epoch")[metric]
                x = np.asarray(s.mean().index, float)
                curves.setdefault(dataset, {})[objective] = (x, s.mean().to_numpy(), s.min().to_numpy(),
                                                             s.max().to_numpy())
            _save(plots.learning_curves(curves, xlabel="training epoch", ylabel=label, columns=3),
                  out / f"curves_{metric}.png")
    return table
