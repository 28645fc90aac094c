"""CMA-ES (Hansen 2016, "The CMA Evolution Strategy: A Tutorial") as an ask/tell maximiser with an exactly resumable
state, on the `cma` package's `CMAEvolutionStrategy`.

A `cma` strategy object can only be saved by pickling it, and a run directory must not be able to execute code when
loaded (checkpoints load with `torch.load(weights_only=True)`). So the state saved here is what determines the
search: the settings (dimension, population, initial mean and step size, seed) and the fitness of every generation
told so far. `load_state_dict` rebuilds the strategy and replays those generations (ask, then tell the recorded
fitnesses): `cma` is deterministic given its random normals, which come from our own seeded `numpy.random.Generator`
(option `randn`) and never from numpy's global generator, so the rebuilt strategy is the same, bit for bit, and the
next `ask` returns the same candidates as an uninterrupted search. Replaying costs one tell per past generation
(covariance updates only, no fitness evaluations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wmbench.errors import WmbenchError

MIN_POPULATION = 2  # CMA-ES recombines the best half (mu = popsize // 2): at least one parent from two candidates


class EvolutionError(WmbenchError, ValueError):
    """Bad settings or calls of the evolution strategy; the message names the value and the fix."""


def check_population(popsize: Any, key: str = "population") -> int:
    if isinstance(popsize, bool) or not isinstance(popsize, (int, np.integer)) or popsize < MIN_POPULATION:
        raise EvolutionError(
            f"{key}={popsize!r}: CMA-ES needs a population of at least {MIN_POPULATION} (it recombines the best half "
            f"of each generation); its default for n parameters is 4 + 3 ln(n), World Models used 64 "
            f"(e.g. --set {key}=64)"
        )
    return int(popsize)


class CMAES:
    """Maximises a fitness over R^dim. `ask()` -> candidates [popsize, dim]; `tell(fitness)` with one value per
    candidate (higher is better); `mean` is the current search mean (the controller to deploy)."""

    def __init__(self, dim: int, popsize: int, sigma0: float, seed: int, x0: Sequence[float] | None = None):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise EvolutionError(f"CMA-ES dimension must be a positive integer, got {dim!r}")
        if not (isinstance(sigma0, (int, float)) and np.isfinite(sigma0) and sigma0 > 0):
            raise EvolutionError(f"CMA-ES initial step size sigma0 must be a finite number > 0, got {sigma0!r}")
        self.dim, self.popsize, self.sigma0, self.seed = int(dim), check_population(popsize), float(sigma0), int(seed)
        self.x0 = np.zeros(self.dim) if x0 is None else np.asarray(x0, dtype=np.float64).copy()
        if self.x0.shape != (self.dim,):
            raise EvolutionError(f"CMA-ES x0 has shape {self.x0.shape}, expected ({self.dim},)")
        self.history: list[np.ndarray] = []  # fitness of every told generation, [popsize] each
        self._start()

    def _start(self) -> None:
        try:
            import cma
        except ImportError as e:  # pragma: no cover - cma is a dependency of the worldmodels extra
            raise EvolutionError("CMA-ES needs the `cma` package: pip install 'wmbench[worldmodels]'") from e
        self.rng = np.random.default_rng(self.seed)
        options = {
            "popsize": self.popsize,
            "randn": lambda *shape: self.rng.standard_normal(shape),
            "seed": np.nan,  # never touch numpy's global generator (cma seeds it unless `seed` is nan)
            "verbose": -9, "verb_log": 0, "verb_disp": 0, "verb_filenameprefix": "",
        }
        self.es = cma.CMAEvolutionStrategy(self.x0, self.sigma0, options)
        self._asked: np.ndarray | None = None

    @property
    def generation(self) -> int:
        return len(self.history)

    @property
    def mean(self) -> np.ndarray:
        return np.array(self.es.mean, dtype=np.float64)

    def ask(self) -> np.ndarray:
        """This generation's candidates (the same array again until `tell`)."""
        if self._asked is None:
            self._asked = np.array(self.es.ask(), dtype=np.float64)
        return self._asked

    def tell(self, fitness: Sequence[float]) -> None:
        fitness = np.asarray(fitness, dtype=np.float64)
        if fitness.shape != (self.popsize,):
            raise EvolutionError(f"tell needs one fitness per candidate ({self.popsize}), got shape {fitness.shape}")
        if not np.all(np.isfinite(fitness)):
            raise EvolutionError(f"fitness values must be finite, got {fitness.tolist()}")
        candidates = self.ask()
        self.es.tell(list(candidates), list(-fitness))  # cma minimises
        self.history.append(fitness.copy())
        self._asked = None

    def state_dict(self) -> dict[str, Any]:
        history = np.stack(self.history) if self.history else np.zeros((0, self.popsize))
        return {
            "dim": self.dim, "popsize": self.popsize, "sigma0": self.sigma0, "seed": self.seed,
            "x0": torch.from_numpy(self.x0.copy()), "fitness": torch.from_numpy(history.astype(np.float64)),
            "asked": self._asked is not None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        settings = (int(state["dim"]), int(state["popsize"]), float(state["sigma0"]), int(state["seed"]))
        if settings != (self.dim, self.popsize, self.sigma0, self.seed):
            raise EvolutionError(
                f"CMA-ES state of (dim, population, sigma0, seed) = {settings} cannot load into a search with "
                f"{(self.dim, self.popsize, self.sigma0, self.seed)}"
            )
        self.x0 = state["x0"].numpy().astype(np.float64)
        self.history = []
        self._start()
        for fitness in state["fitness"].numpy():
            self.tell(fitness)
        if state.get("asked"):
            self.ask()


__all__ = ["CMAES", "EvolutionError", "MIN_POPULATION", "check_population"]
