"""Probabilistic ensembles of MLP dynamics models and trajectory-sampling propagation (Chua et al. 2018, PETS).

Owns:
- `EnsembleLinear`: E independent linear layers evaluated in one batched matmul (`torch.baddbmm` over members).
- `ProbabilisticEnsemble`: E MLPs mapping normalised inputs (state features + action) to a Gaussian over normalised
  targets (state deltas). Input/target normalisers are fitted on data (`fit_normalisers`). The log-variance is
  softly bounded by learned `max_logvar` / `min_logvar` (PETS App. A.1), and the loss is the Gaussian NLL
  (PETS Eq. 2: sum over members of (mu - y)^T Sigma^-1 (mu - y) + log det Sigma) plus 0.01 (max_logvar -
  min_logvar) and per-layer weight decay. `probabilistic=False` gives deterministic members trained with MSE
  (Nagabandi et al. 2018 use one such network: `members=1`).
- `train_ensemble`: bootstrap batches per member (each member sees its own resample with replacement, PETS
  Sec. 4.1), optional holdout split with early stopping on holdout MSE, and a clear error when a loss is NaN/inf.
- `disagreement`: the variance of the members' predictions, averaged over output dims (Plan2Explore's intrinsic
  reward, Sekar et al. 2020, Sec. 3.2).
- `propagate`: particle rollouts of action sequences through the ensemble with a known reward function: TS-1
  (member re-drawn each step), TS-inf (member fixed per particle), or `expectation` (the members' mean, no
  sampling) - PETS Sec. 5. Returns the expected return per action sequence, the interface of
  `wmbench.nn.planners`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wmbench.errors import WmbenchError

PROPAGATIONS = ("ts1", "tsinf", "expectation")


class ModelDivergedError(WmbenchError, FloatingPointError):
    """A dynamics-model loss became NaN/inf; the message names the loss and what to lower."""


class EnsembleLinear(nn.Module):
    """`members` independent affine maps: x [E, N, in] -> [E, N, out] in one batched matmul."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_features))
        # PETS initialises weights with a truncated normal of std 1 / (2 sqrt(fan_in)).
        std = 1.0 / (2.0 * math.sqrt(in_features))
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class ProbabilisticEnsemble(nn.Module):
    """E MLPs -> Gaussian over normalised targets. Call `fit_normalisers` before training on new data."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        members: int = 5,
        hidden: int = 200,
        layers: int = 4,
        weight_decays: tuple[float, ...] | None = None,
        probabilistic: bool = True,
        activation: str = "silu",
    ):
        super().__init__()
        if members < 1 or hidden < 1 or layers < 1:
            raise WmbenchError(
                f"ensemble needs members, hidden, layers >= 1; got {members}, {hidden}, {layers}"
            )
        self.in_dim, self.out_dim, self.members = in_dim, out_dim, members
        self.probabilistic = probabilistic
        sizes = [in_dim] + [hidden] * layers + [out_dim * (2 if probabilistic else 1)]
        self.layers = nn.ModuleList(
            EnsembleLinear(members, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        n = len(self.layers)
        self.weight_decays = tuple(weight_decays) if weight_decays is not None else (0.0,) * n
        if len(self.weight_decays) != n:
            raise WmbenchError(
                f"weight_decays needs {n} values (one per layer), got {len(self.weight_decays)}"
            )
        self.act = {"silu": F.silu, "relu": F.relu, "tanh": torch.tanh}[activation]
        # PETS App. A.1: learned soft bounds, initialised at 0.5 and -10 (log-variance of normalised targets).
        self.max_logvar = nn.Parameter(torch.full((1, 1, out_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, out_dim), -10.0))
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(out_dim))
        self.register_buffer("out_std", torch.ones(out_dim))

    @torch.no_grad()
    def fit_normalisers(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Set input/target mean and std from data [N, dim] (std floored at 1e-6 for constant features)."""
        self.in_mean.copy_(inputs.mean(0))
        self.in_std.copy_(inputs.std(0, unbiased=False).clamp_min(1e-6))
        self.out_mean.copy_(targets.mean(0))
        self.out_std.copy_(targets.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw inputs [E, N, in] -> (mean, logvar) of *normalised* targets, each [E, N, out] (logvar None if
        deterministic)."""
        x = (inputs - self.in_mean) / self.in_std
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        out = self.layers[-1](x)
        if not self.probabilistic:
            return out, None
        mean, logvar = out.split(self.out_dim, dim=-1)
        # Soft clamp (PETS App. A.1): smooth, so gradients still reach the bounds.
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def predict(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs [E, N, in] -> mean and variance of the *raw* target, [E, N, out] (variance 0 if deterministic)."""
        mean, logvar = self(inputs)
        raw_mean = mean * self.out_std + self.out_mean
        if logvar is None:
            return raw_mean, torch.zeros_like(raw_mean)
        return raw_mean, logvar.exp() * self.out_std**2

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on raw inputs/targets [E, B, dim]: Gaussian NLL (or MSE) + logvar-bound term + L2."""
        mean, logvar = self(inputs)
        target = (targets - self.out_mean) / self.out_std
        if logvar is None:
            fit = ((mean - target) ** 2).mean(dim=(1, 2)).sum()
            bound = torch.zeros((), device=mean.device)
        else:
            # Gaussian NLL up to a constant (PETS Eq. 2), averaged over batch and dims, summed over members.
            fit = (((mean - target) ** 2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
            bound = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        decay = sum(
            wd * 0.5 * (layer.weight**2).sum()
            for wd, layer in zip(self.weight_decays, self.layers, strict=True)
        )
        total = fit + bound + decay
        mse = ((mean - target) ** 2).mean()
        return total, {
            "model_loss": float(total.detach()),
            "model_fit": float(fit.detach()),
            "model_mse": float(mse.detach()),
        }


def disagreement(means: torch.Tensor) -> torch.Tensor:
    """Ensemble disagreement of mean predictions [E, ..., D] -> [...]: the variance over the E members (divided by
    E, as the Plan2Explore code's `tf.nn.moments`), averaged over the D output dimensions (Sekar et al. 2020,
    Sec. 3.2: high where the members, trained on the same data, disagree, i.e. where the model has seen too little)."""
    if means.dim() < 2 or means.shape[0] < 2:
        raise WmbenchError(
            f"disagreement needs predictions of at least 2 members, shaped [members, ..., dims]; got shape "
            f"{tuple(means.shape)}; use an ensemble of 2 or more members (Plan2Explore: 5)"
        )
    return means.var(0, unbiased=False).mean(-1)


def bootstrap_indices(rng: np.random.Generator, members: int, n: int) -> np.ndarray:
    """[members, n] indices into n samples, each row an independent resample with replacement (PETS Sec. 4.1)."""
    return rng.integers(0, n, size=(members, n))


@dataclass
class TrainResult:
    epochs: int
    train_loss: float
    train_mse: float
    holdout_mse: float | None


def train_ensemble(
    model: ProbabilisticEnsemble,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    rng: np.random.Generator,
    epochs: int = 5,
    batch_size: int = 32,
    holdout_ratio: float = 0.0,
    patience: int = 5,
    max_holdout: int = 5000,
    bootstrap: bool = True,
    refit_normalisers: bool = True,
) -> TrainResult:
    """Fit the ensemble on all data (inputs [N, in], targets [N, out]).

    Each member trains on its own bootstrap resample (indices drawn with replacement, PETS Sec. 4.1) in shuffled
    minibatches. With `holdout_ratio > 0` a random holdout set is kept out; training stops once holdout MSE has not
    improved by 1% for `patience` epochs (as mbrl-lib), restoring each member's best weights. Randomness comes
    only from `rng` (resume-safe).
    """
    n_total = inputs.shape[0]
    if n_total == 0:
        raise WmbenchError("train_ensemble got no transitions; collect at least one step before training")
    perm = rng.permutation(n_total)
    n_hold = min(int(holdout_ratio * n_total), max_holdout) if holdout_ratio > 0 else 0
    hold_idx, train_idx = perm[:n_hold], perm[n_hold:]
    x_train, y_train = inputs[train_idx], targets[train_idx]
    if refit_normalisers:
        model.fit_normalisers(x_train, y_train)
    n = x_train.shape[0]
    E = model.members
    boot = bootstrap_indices(rng, E, n) if bootstrap and E > 1 else np.tile(np.arange(n), (E, 1))
    best_mse = _holdout_mse(model, inputs[hold_idx], targets[hold_idx]) if n_hold else None
    best_state = {k: v.clone() for k, v in model.state_dict().items()} if n_hold else None
    since_best = 0
    epoch = 0
    logs: dict[str, float] = {"model_loss": float("nan"), "model_mse": float("nan")}
    for epoch in range(1, epochs + 1):
        order = np.take_along_axis(boot, rng.random(boot.shape).argsort(axis=1), axis=1)
        for start in range(0, n, batch_size):
            idx = torch.as_tensor(order[:, start : start + batch_size], device=inputs.device)
            loss, logs = model.loss(x_train[idx], y_train[idx])
            if not torch.isfinite(loss):
                raise ModelDivergedError(
                    f"dynamics-model loss became {float(loss.detach())} at epoch {epoch} ({logs}); lower the learning rate "
                    "(config model_lr) or check the observations for NaN/inf values"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if n_hold:
            mse = _holdout_mse(model, inputs[hold_idx], targets[hold_idx])
            improved = (best_mse - mse) / max(best_mse, 1e-12) > 0.01
            if improved:
                best_mse, since_best = mse, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
                if since_best >= patience:
                    break
    if n_hold and best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(epoch, logs["model_loss"], logs["model_mse"], best_mse)


@torch.no_grad()
def _holdout_mse(model: ProbabilisticEnsemble, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    mean, _ = model(inputs.unsqueeze(0).expand(model.members, -1, -1))
    target = (targets - model.out_mean) / model.out_std
    return float(((mean - target) ** 2).mean())


@torch.no_grad()
def propagate(
    model: ProbabilisticEnsemble,
    initial_state: torch.Tensor,
    actions: torch.Tensor,
    reward_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    particles: int = 20,
    mode: str = "tsinf",
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    next_state: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Expected return of each action sequence [P, H, A] from `initial_state` [D], estimated with particles.

    `features(state) -> model input features` (e.g. PETS's sin/cos of angles; default identity) and
    `next_state(state, predicted_target) -> state` (default state + delta) adapt the model to a task;
    `reward_fn(state, action, next_state) -> [N]` is the known reward. Modes (PETS Sec. 5): `ts1` re-draws each
    particle's member at every step, `tsinf` fixes it for the whole horizon, both sampling the member's Gaussian;
    `expectation` propagates one particle through the members' mean prediction without sampling. Non-finite
    returns count as -1e6 (PETS replaces NaN costs with a large cost).
    """
    if mode not in PROPAGATIONS:
        raise WmbenchError(f"unknown propagation {mode!r}; choose one of {PROPAGATIONS}")
    features = features or (lambda s: s)
    next_state = next_state or (lambda s, delta: s + delta)
    E = model.members
    pop, horizon, _ = actions.shape
    K = 1 if mode == "expectation" else particles
    if mode != "expectation" and K % E:
        raise WmbenchError(f"particles ({K}) must be a multiple of the ensemble size ({E}) for {mode}")
    # Particle k of every candidate uses member k % E: with exchangeable particles this is TS-inf's random
    # assignment with balanced counts; TS-1 shuffles particles between steps so assignments are re-drawn.
    state = initial_state.reshape(1, 1, -1).expand(pop, K, -1).contiguous()
    returns = torch.zeros(pop, K, device=actions.device)
    for t in range(horizon):
        if mode == "ts1" and t > 0:
            perm = torch.rand(pop, K, generator=generator, device=state.device).argsort(dim=1)
            state = torch.gather(state, 1, perm.unsqueeze(-1).expand_as(state))
            returns = torch.gather(returns, 1, perm)
        action = actions[:, t].unsqueeze(1).expand(pop, K, -1)
        x = torch.cat([features(state), action], dim=-1)  # [P, K, in]
        if mode == "expectation":
            mean, _ = model.predict(x.reshape(1, pop, -1).expand(E, -1, -1))
            delta = mean.mean(0).reshape(pop, 1, -1)
        else:
            # [P, K, in] -> [E, P*K/E, in], rows of member e are particles k = e, e+E, ...
            grouped = x.reshape(pop, K // E, E, -1).permute(2, 0, 1, 3).reshape(E, pop * K // E, -1)
            mean, var = model.predict(grouped)
            noise = torch.randn(mean.shape, generator=generator, device=mean.device)
            sample = mean + var.sqrt() * noise
            delta = sample.reshape(E, pop, K // E, -1).permute(1, 2, 0, 3).reshape(pop, K, -1)
        new_state = next_state(state, delta)
        returns = returns + reward_fn(state, action, new_state)
        state = new_state
    returns = torch.where(torch.isfinite(returns), returns, torch.full_like(returns, -1e6))
    return returns.mean(dim=1)
