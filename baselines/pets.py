"""PETS: probabilistic ensembles with trajectory sampling (Chua, Calandra, McAllister & Levine, NeurIPS 2018).

Algorithm (paper Alg. 1), as run here:
1. The first `random_episodes` episodes act uniformly at random.
2. After every episode, the ensemble of `members` probabilistic MLPs is trained on all transitions so far
   (bootstrap resample per member, Gaussian NLL, `epochs` passes; `wmbench.nn.ensemble`).
3. Every step, CEM (`wmbench.nn.planners.CEMPlanner`) searches `horizon`-step action sequences; each candidate is
   scored by propagating `particles` particles through the ensemble (TS-inf by default) with the task's known
   reward (`wmbench.envs.control.task_reward`), and the first action of the best mean is executed (MPC).

The model input is the paper's preprocessed state (cart-pole angle -> sin/cos; half-cheetah drops the root x and
takes sin/cos of the root angle) plus the action; the target is the state delta. Per-task settings (network size,
weight decays, horizon, CEM population/elites) follow the released code's configs (kchua/handful-of-trials,
dmbrl/config/*.py); a config value of None means "the paper's value for this task". The task is recognised from the
observation/action sizes of the `control` suite (set `task` to force it).

The runner calls `update` after every env step; the method retrains at the first update of a new episode (the
previous episode is then complete in the replay), so the first action of each episode is planned with the
previous model. Presets: `paper` (default) and `cpu` (smaller search for CPU-only learning checks; see
docs/classic_mbrl.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch

from wmbench.envs.control import task_reward
from wmbench.method import Method, MethodError
from wmbench.nn.ensemble import PROPAGATIONS, ProbabilisticEnsemble, propagate, train_ensemble
from wmbench.nn.planners import PLANNERS, Planner
from wmbench.seeding import derive_seed, generator_state, set_generator_state


@dataclass(frozen=True)
class TaskSpec:
    """How PETS sees one task: model features, delta target, and the paper's per-task settings."""

    obs_dim: int
    act_dim: int
    features: Callable[[Any], Any]  # raw state [..., obs_dim] -> model input features
    hidden: int
    layers: int
    weight_decays: tuple[float, ...]
    horizon: int
    population: int
    elites: int


def _cartpole_features(s):
    # PETS's obs_preproc: angle -> (sin, cos) so the model never sees the unbounded unwrapped angle.
    lib = torch if isinstance(s, torch.Tensor) else np
    theta = s[..., 2:3]
    return lib.concatenate([lib.sin(theta), lib.cos(theta), s[..., 0:2], s[..., 3:4]], -1)


def _cheetah_features(s):
    # PETS's obs_preproc: drop root x (the reward uses its delta), root angle -> (sin, cos).
    lib = torch if isinstance(s, torch.Tensor) else np
    angle = s[..., 2:3]
    return lib.concatenate([s[..., 1:2], lib.sin(angle), lib.cos(angle), s[..., 3:]], -1)


def _identity(s):
    return s


TASKS: dict[str, TaskSpec] = {
    "cartpole_swingup": TaskSpec(4, 1, _cartpole_features, 500, 3, (1e-4, 2.5e-4, 2.5e-4, 5e-4), 25, 400, 40),
    "half_cheetah": TaskSpec(
        18, 6, _cheetah_features, 200, 4, (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4), 30, 500, 50
    ),
    # PETS's own reacher/pusher configs (its 7-DoF envs differ from gymnasium's: settings reused, not scores).
    "reacher": TaskSpec(10, 2, _identity, 200, 4, (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4), 25, 400, 40),
    "pusher": TaskSpec(23, 7, _identity, 200, 3, (2.5e-5, 5e-5, 7.5e-5, 1e-4), 25, 500, 50),
}


def infer_task(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, task: str = "auto") -> str:
    """The control-suite task whose observation/action sizes match (or `task` itself when given)."""
    if task != "auto":
        if task not in TASKS:
            raise MethodError(f"unknown task {task!r} for PETS/MB-MF; known: {', '.join(TASKS)}")
        return task
    vector = obs_space.get("vector")
    if vector is None or not isinstance(act_space, gymnasium.spaces.Box):
        raise MethodError("needs a `vector` observation and continuous actions (protocol control@1)")
    for name, spec in TASKS.items():
        if vector.shape == (spec.obs_dim,) and act_space.shape == (spec.act_dim,):
            return name
    raise MethodError(
        f"no known reward for observation {vector.shape} / action {act_space.shape}: PETS plans with the task's "
        f"reward function, available for the control suite's tasks ({', '.join(TASKS)}); set task=... to force one"
    )


@dataclass(frozen=True)
class PETSConfig:
    preset: str = "paper"
    task: str = "auto"
    members: int = 5
    hidden: int | None = None  # None: the paper's value for the task
    layers: int | None = None
    model_lr: float = 1e-3
    epochs: int = 5
    batch_size: int = 32
    holdout_ratio: float = 0.0
    propagation: str = "tsinf"
    particles: int = 20
    planner: str = "cem"
    horizon: int | None = None
    population: int | None = None
    elites: int | None = None
    iterations: int = 5
    alpha: float = 0.1
    random_episodes: int = 1

    PRESETS = {
        # CPU-only learning checks: a shared 2-core machine cannot afford 400 x 20 particles x 25 steps x 5
        # iterations through a 3x500 MLP per action (~1 TFLOP per step). Same algorithm, smaller search and
        # network (~0.4 s per step with one torch thread on the project's CPU machine).
        "cpu": {
            "hidden": 100,
            "particles": 5,
            "population": 100,
            "elites": 10,
            "iterations": 3,
            "horizon": 20,
        },
        "tiny": {
            "hidden": 16,
            "layers": 2,
            "particles": 5,
            "population": 16,
            "elites": 4,
            "iterations": 2,
            "horizon": 5,
            "epochs": 1,
        },
    }


def unsupported_reason(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
    """`Method.supports` for the methods that plan with a known task reward (PETS, MB-MF)."""
    try:
        infer_task(obs_space, act_space)
    except MethodError as e:
        return str(e)
    return None


def model_data(task: str, replay: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for the dynamics model from all stored transitions: [features(s), a] -> s' - s."""
    data = replay.transitions()
    if not data:
        raise MethodError("no transitions stored yet; the model is trained after the first episode")
    s = torch.as_tensor(data["vector"], dtype=torch.float32)
    a = torch.as_tensor(data["action"], dtype=torch.float32).reshape(len(s), -1)
    s2 = torch.as_tensor(data["next_vector"], dtype=torch.float32)
    return torch.cat([TASKS[task].features(s), a], -1), s2 - s


class PETS(Method):
    name = "pets"
    Config = PETSConfig

    @classmethod
    def supports(cls, obs_space, act_space):
        return unsupported_reason(obs_space, act_space)

    def __init__(self, obs_space, act_space, config: PETSConfig, device: str = "cpu", seed: int = 0):
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        if c.propagation not in PROPAGATIONS:
            raise MethodError(f"propagation {c.propagation!r} not one of {PROPAGATIONS}")
        if c.planner not in PLANNERS:
            raise MethodError(f"planner {c.planner!r} not one of {tuple(PLANNERS)}")
        self.task = infer_task(obs_space, act_space, c.task)
        spec = TASKS[self.task]
        self.horizon = c.horizon or spec.horizon
        layers = c.layers or spec.layers
        weight_decays = spec.weight_decays if layers == spec.layers else None
        torch.manual_seed(derive_seed(seed, "pets_init"))
        in_dim = int(spec.features(np.zeros((1, spec.obs_dim))).shape[-1]) + spec.act_dim
        self.model = ProbabilisticEnsemble(
            in_dim, spec.obs_dim, c.members, c.hidden or spec.hidden, layers, weight_decays
        ).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.model_lr)
        population = c.population or spec.population
        if c.planner == "cem":
            self.planner: Planner = PLANNERS["cem"](
                population,
                c.elites or spec.elites,
                c.iterations,
                c.alpha,
                seed=derive_seed(seed, "plan"),
                device=device,
            )
        else:
            self.planner = PLANNERS[c.planner](population, seed=derive_seed(seed, "plan"), device=device)
        self.rollout_generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "particles"))
        self.rng = np.random.default_rng(derive_seed(seed, "pets"))
        self.episodes_started = 0
        self.trained = False
        self.pending_train = False

    # ------------------------------------------------------------------ acting
    def _rollout(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return propagate(
            self.model,
            state,
            actions,
            lambda s, a, s2: task_reward(self.task, s, a, s2),
            particles=self.config.particles,
            mode=self.config.propagation,
            features=TASKS[self.task].features,
            generator=self.rollout_generator,
        )

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train"):
        if bool(obs["is_first"][0]):
            self.planner.reset()
            if mode == "train":
                self.episodes_started += 1
        if bool(obs["is_last"][0]) and mode == "train":
            self.pending_train = True  # retrained at the next update, once the replay holds the whole episode
        random_phase = mode == "train" and self.episodes_started <= self.config.random_episodes
        if random_phase or not self.trained:
            low, high = self.act_space.low, self.act_space.high
            return self.rng.uniform(low, high, size=(1, *self.act_space.shape)).astype(np.float32), state
        x = torch.as_tensor(obs["vector"][0], dtype=torch.float32, device=self.device)
        plan = self.planner.plan(x, self._rollout, self.horizon, self.act_space)
        return plan[:1].cpu().numpy().astype(np.float32), state

    # ---------------------------------------------------------------- learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        if not self.pending_train:
            return {}
        self.pending_train = False
        inputs, targets = model_data(self.task, replay)
        result = train_ensemble(
            self.model,
            self.optimizer,
            inputs.to(self.device),
            targets.to(self.device),
            self.rng,
            epochs=self.config.epochs,
            batch_size=self.config.batch_size,
            holdout_ratio=self.config.holdout_ratio,
        )
        self.trained = True
        metrics = {
            "model_loss": result.train_loss,
            "model_mse": result.train_mse,
            "model_data": float(len(inputs)),
        }
        if result.holdout_mse is not None:
            metrics["model_holdout_mse"] = result.holdout_mse
        return metrics

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "planner": self.planner.state_dict(),
            "rollout_generator": self.rollout_generator.get_state(),
            "rng": generator_state(self.rng),
            "episodes_started": self.episodes_started,
            "trained": self.trained,
            "pending_train": self.pending_train,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.planner.load_state_dict(state["planner"])
        self.rollout_generator.set_state(state["rollout_generator"])
        set_generator_state(self.rng, state["rng"])
        self.episodes_started = int(state["episodes_started"])
        self.trained = bool(state["trained"])
        self.pending_train = bool(state["pending_train"])
