"""Sampling-based model-predictive control: the one planner module shared by PETS, MB-MF and PlaNet.

A planner searches action sequences [H, A] inside box bounds to maximise a return estimated by a caller-given
rollout function. It knows nothing about states: `rollout_fn(initial_state, actions [pop, H, A]) -> returns
[pop]`, so the state may be a raw observation (PETS, MB-MF) or a latent (PlaNet).

- `CEMPlanner` (PETS App. A.2; PlaNet Alg. 2): Gaussian over sequences refit to the top `elites` of
  `population` samples for `iterations` rounds, with smoothing `alpha` (weight kept on the old mean/variance, as
  PETS's `alpha = 0.1`). Samples are truncated normal (2 std) with the variance shrunk so that 2 std stay inside
  the bounds (PETS), or simply clipped (`sampling="clip"`).
- `RandomShootingPlanner` (Nagabandi et al. 2018, Sec. IV-C): `population` uniform random sequences, best kept.
- `MPPIPlanner` (Williams et al. 2017; Nagabandi et al. 2019): Gaussian perturbations of the mean, reweighted by
  exp(return / temperature).

All warm-start from the previous solution shifted by one step (the last step filled with the bounds' centre);
`reset()` at episode starts forgets it. `warm_start=False` starts every search from the centre instead (PlaNet's
CEM: mean 0, std `init_std` 1, plain clipped samples, no smoothing, Hafner et al. 2019 official `planning.py`). Randomness comes from the planner's own `torch.Generator`, saved in
`state_dict()` for exact resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from wmbench.errors import WmbenchError

RolloutFn = Callable[[Any, torch.Tensor], torch.Tensor]


class PlannerError(WmbenchError, ValueError):
    """Bad planner settings (horizon, population, elites, ...); the message names the value and the fix."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PlannerError(f"planner {name} must be a positive integer, got {value!r}")
    return value


def _bounds(action_space: Any, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) from a gymnasium Box or a (low, high) pair."""
    if hasattr(action_space, "low") and hasattr(action_space, "high"):
        low, high = action_space.low, action_space.high
    else:
        try:
            low, high = action_space
        except (TypeError, ValueError) as e:
            raise PlannerError(
                f"action_space must be a Box or a (low, high) pair, got {action_space!r}"
            ) from e
    low = torch.as_tensor(low, dtype=torch.float32, device=device).reshape(-1)
    high = torch.as_tensor(high, dtype=torch.float32, device=device).reshape(-1)
    if not bool(torch.all(torch.isfinite(low) & torch.isfinite(high) & (high > low))):
        raise PlannerError(
            f"action bounds must be finite with high > low, got low={low.tolist()} high={high.tolist()}"
        )
    return low, high


class Planner:
    """Shared validation, bounds, warm start and generator; subclasses implement `_optimise`."""

    def __init__(self, population: int, seed: int = 0, device: torch.device | str = "cpu", warm_start: bool = True):
        self.population = _positive_int("population", population)
        self.warm_start = bool(warm_start)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.previous: torch.Tensor | None = None  # last solution [H, A], for warm starting

    def reset(self) -> None:
        """Forget the warm start (call at episode starts)."""
        self.previous = None

    @torch.no_grad()
    def plan(
        self, initial_state: Any, rollout_fn: RolloutFn, horizon: int, action_space: Any
    ) -> torch.Tensor:
        """Best action sequence [horizon, A] found for `initial_state` (execute its first action, then re-plan)."""
        horizon = _positive_int("horizon", horizon)
        low, high = _bounds(action_space, self.device)
        centre = (low + high) / 2
        init = centre.expand(horizon, -1).clone()
        if self.warm_start and self.previous is not None and self.previous.shape == init.shape:
            init[:-1] = self.previous[1:]  # shift: yesterday's step t+1 is today's step t
        solution = self._optimise(initial_state, rollout_fn, init, low, high)
        self.previous = solution
        return solution

    def _optimise(self, initial_state, rollout_fn, init, low, high) -> torch.Tensor:
        raise NotImplementedError

    def _evaluate(self, initial_state: Any, rollout_fn: RolloutFn, actions: torch.Tensor) -> torch.Tensor:
        returns = rollout_fn(initial_state, actions)
        if returns.shape != (actions.shape[0],):
            raise PlannerError(
                f"rollout_fn must return one return per action sequence, shape ({actions.shape[0]},); got "
                f"{tuple(returns.shape)}"
            )
        # A diverging model must not win the search: NaN returns rank last.
        return torch.nan_to_num(returns, nan=-float("inf"))

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "previous": self.previous.cpu() if self.previous is not None else torch.empty(0),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        prev = state["previous"]
        self.previous = prev.to(self.device) if prev.numel() else None


class CEMPlanner(Planner):
    def __init__(
        self,
        population: int = 400,
        elites: int = 40,
        iterations: int = 5,
        alpha: float = 0.1,
        sampling: str = "truncated",
        min_std: float = 0.0,
        return_mean_elites: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        init_std: float | None = None,
        warm_start: bool = True,
    ):
        super().__init__(population, seed, device, warm_start)
        self.elites = _positive_int("elites", elites)
        if self.elites > self.population:
            raise PlannerError(
                f"planner elites ({elites}) must be <= population ({population}); lower elites"
            )
        self.iterations = _positive_int("iterations", iterations)
        if not 0.0 <= alpha < 1.0:
            raise PlannerError(
                f"CEM alpha (weight on the previous iteration) must be in [0, 1), got {alpha!r}"
            )
        if sampling not in ("truncated", "clip"):
            raise PlannerError(f"CEM sampling must be 'truncated' or 'clip', got {sampling!r}")
        if init_std is not None and not (isinstance(init_std, (int, float)) and init_std > 0):
            raise PlannerError(f"CEM init_std must be a positive number or None (PETS: range / 4), got {init_std!r}")
        self.alpha, self.sampling, self.min_std, self.init_std = alpha, sampling, min_std, init_std
        self.return_mean_elites = return_mean_elites

    def _optimise(self, initial_state, rollout_fn, init, low, high):
        mean = init
        # PETS: initial variance ((high - low) / 4)^2, so 2 std span half the range around the centre; PlaNet: std 1.
        std0 = (high - low) / 4 if self.init_std is None else torch.full_like(low, float(self.init_std))
        var = std0.pow(2).expand_as(mean).clone()
        best_return, best = -float("inf"), mean
        for _ in range(self.iterations):
            if self.sampling == "truncated":
                # Shrink the variance so that mean +- 2 std stays inside the bounds (PETS's constrained var).
                bound_var = torch.minimum(((mean - low) / 2).pow(2), ((high - mean) / 2).pow(2))
                std = torch.minimum(var, bound_var).sqrt().clamp_min(self.min_std)
                noise = torch.empty(self.population, *mean.shape, device=mean.device)
                torch.nn.init.trunc_normal_(noise, 0.0, 1.0, -2.0, 2.0, generator=self.generator)
            else:
                std = var.sqrt().clamp_min(self.min_std)
                noise = torch.randn(
                    self.population, *mean.shape, generator=self.generator, device=mean.device
                )
            samples = torch.clamp(mean + std * noise, low, high)
            returns = self._evaluate(initial_state, rollout_fn, samples)
            top = torch.topk(returns, self.elites).indices
            elite = samples[top]
            if float(returns[top[0]]) > best_return:
                best_return, best = float(returns[top[0]]), samples[top[0]]
            mean = self.alpha * mean + (1 - self.alpha) * elite.mean(0)
            var = self.alpha * var + (1 - self.alpha) * elite.var(0, unbiased=False)
        return mean if self.return_mean_elites else best


class RandomShootingPlanner(Planner):
    """Uniform random sequences; the best one wins (Nagabandi et al. 2018). Warm start is not used by the search."""

    def _optimise(self, initial_state, rollout_fn, init, low, high):
        u = torch.rand(self.population, *init.shape, generator=self.generator, device=init.device)
        samples = low + u * (high - low)
        returns = self._evaluate(initial_state, rollout_fn, samples)
        return samples[torch.argmax(returns)]


class MPPIPlanner(Planner):
    def __init__(
        self,
        population: int = 400,
        iterations: int = 1,
        noise_std: float = 0.5,
        temperature: float = 1.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ):
        super().__init__(population, seed, device)
        self.iterations = _positive_int("iterations", iterations)
        if not noise_std > 0 or not temperature > 0:
            raise PlannerError(
                f"MPPI noise_std and temperature must be > 0, got {noise_std!r}, {temperature!r}"
            )
        self.noise_std, self.temperature = noise_std, temperature

    def _optimise(self, initial_state, rollout_fn, init, low, high):
        mean = init
        scale = self.noise_std * (high - low) / 2
        for _ in range(self.iterations):
            noise = torch.randn(self.population, *mean.shape, generator=self.generator, device=mean.device)
            samples = torch.clamp(mean + scale * noise, low, high)
            returns = self._evaluate(initial_state, rollout_fn, samples)
            if not bool(torch.isfinite(returns.max())):
                continue  # every sample diverged: keep the current mean rather than average NaN weights
            # Path-integral weights: softmax of returns / temperature (returns shifted by their max for stability).
            weights = torch.softmax((returns - returns.max()) / self.temperature, dim=0)
            mean = (weights.view(-1, 1, 1) * samples).sum(0)
        return mean


PLANNERS = {"cem": CEMPlanner, "random": RandomShootingPlanner, "mppi": MPPIPlanner}
