"""MB-MF: neural-network dynamics + MPC, then model-free fine-tuning (Nagabandi, Kahn, Fearing & Levine, ICRA 2018).

Phases, switched at episode boundaries by agent step (the runner's one stream of env steps):
1. `random`  - the first `random_episodes` episodes act uniformly at random (paper Sec. IV-A, D_rand).
2. `mpc`     - random-shooting MPC (`wmbench.nn.planners.RandomShootingPlanner`, `candidates` sequences of
   `horizon` steps) through a deterministic MLP on normalised inputs predicting normalised state deltas
   (`wmbench.nn.ensemble.ProbabilisticEnsemble` with one member, `probabilistic=False`, paper Sec. IV-B) and the
   task's known reward. The model input is the state after the same per-task preprocessing as PETS
   (`wmbench_baselines.pets.TASKS`: cart-pole angle -> sin/cos) plus the action. On-policy data aggregation: the model is retrained on all data every
   `episodes_per_iteration` episodes (paper Alg. 1).
3. `dagger`  - from agent step `mf_start`: a Gaussian MLP policy is fit to the MPC's (state, action) pairs by
   behaviour cloning, then for `dagger_episodes` episodes the policy acts while the MPC labels the visited states,
   and the policy is refit on the aggregate (DAgger; paper Sec. V-A).
4. `ppo`     - model-free fine-tuning of that policy. The paper uses TRPO (rllab); this module uses a compact
   PPO-clip (Schulman et al. 2017) with GAE, which is a deliberate substitution (docs/classic_mbrl.md).

Per-task settings follow the released code (anagabandi/nn_dynamics, yaml_files/cheetah_forward.yaml: 10 random
rollouts, 500-unit ReLU layers, batch 512, lr 1e-3, 60 epochs, horizon 20, 1000 candidates, 10 rollouts per
aggregation iteration; policy std 0.5). Values left None take the task's defaults from `TASK_DEFAULTS`. Not
implemented: the paper's action noise during MPC rollouts and its 90/10 mixing of new and random data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from wmbench_baselines.pets import TASKS, infer_task, model_data, unsupported_reason

from wmbench.envs.control import task_reward
from wmbench.method import Method
from wmbench.nn.ensemble import ProbabilisticEnsemble, propagate, train_ensemble
from wmbench.nn.planners import RandomShootingPlanner
from wmbench.seeding import derive_seed, generator_state, set_generator_state

# Schedules per task: cheetah from the paper's code; cart-pole scaled to control@1's 15-episode budget (ours).
TASK_DEFAULTS = {
    "half_cheetah": {
        "random_episodes": 10,
        "episodes_per_iteration": 10,
        "mf_start": 80_000,
        "ppo_batch": 5000,
    },
    "cartpole_swingup": {
        "random_episodes": 1,
        "episodes_per_iteration": 1,
        "mf_start": 2_000,
        "ppo_batch": 400,
    },
    "reacher": {"random_episodes": 10, "episodes_per_iteration": 10, "mf_start": 5_000, "ppo_batch": 1000},
    "pusher": {"random_episodes": 10, "episodes_per_iteration": 10, "mf_start": 8_000, "ppo_batch": 1000},
}


@dataclass(frozen=True)
class MBMFConfig:
    preset: str = "paper"
    task: str = "auto"
    # dynamics model (paper Sec. IV-B / cheetah_forward.yaml)
    hidden: int = 500
    layers: int = 2
    model_lr: float = 1e-3
    model_batch: int = 512
    model_epochs: int = 60
    # random-shooting MPC
    horizon: int = 20
    candidates: int = 1000
    # schedule (None: TASK_DEFAULTS for the task)
    random_episodes: int | None = None
    episodes_per_iteration: int | None = None
    mf_start: int | None = None
    dagger_episodes: int = 3
    # policy: Gaussian MLP, behaviour cloning then PPO
    policy_hidden: int = 64
    policy_std: float = 0.5
    bc_epochs: int = 50
    bc_lr: float = 1e-3
    ppo_batch: int | None = None
    ppo_epochs: int = 10
    ppo_minibatch: int = 64
    ppo_lr: float = 3e-4
    ppo_clip: float = 0.2
    gamma: float = 0.99
    gae_lambda: float = 0.95

    PRESETS = {
        # CPU-only long runs: 1000 candidates x 20 steps through 2x500 units is ~11 GFLOP per half-cheetah step.
        "cpu": {"candidates": 250, "horizon": 15, "model_epochs": 20},
        "tiny": {
            "hidden": 16,
            "model_epochs": 2,
            "horizon": 4,
            "candidates": 32,
            "policy_hidden": 16,
            "bc_epochs": 2,
            "dagger_episodes": 1,
            "ppo_epochs": 2,
        },
    }


class GaussianPolicy(nn.Module):
    """tanh MLP mean, state-independent log-std (rllab's GaussianMLPPolicy), with fixed input normalisation."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, std: float):
        super().__init__()
        self.mean = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, act_dim),
        )
        self.value = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(std)))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        x = (obs - self.obs_mean) / self.obs_std
        return torch.distributions.Normal(self.mean(x), self.log_std.exp())

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value((obs - self.obs_mean) / self.obs_std).squeeze(-1)


def gae_advantages(
    reward: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    ended: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """GAE (Schulman et al. 2016) over a time-ordered batch of transitions [T].

    Each transition carries its own bootstrap value `next_value` (0 after a terminal state, V(s_T) after a time
    limit), and the lambda-recursion is cut where an episode ended.
    """
    advantage = torch.zeros_like(reward)
    gae = torch.zeros((), device=reward.device)
    for t in reversed(range(len(reward))):
        delta = reward[t] + gamma * next_value[t] - value[t]
        gae = delta + gamma * lam * (1 - ended[t]) * gae
        advantage[t] = gae
    return advantage


class MBMF(Method):
    name = "mbmf"
    Config = MBMFConfig

    @classmethod
    def supports(cls, obs_space, act_space):
        return unsupported_reason(obs_space, act_space)

    def __init__(self, obs_space, act_space, config: MBMFConfig, device: str = "cpu", seed: int = 0):
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        self.task = infer_task(obs_space, act_space, c.task)
        defaults = TASK_DEFAULTS[self.task]
        self.random_episodes = (
            c.random_episodes if c.random_episodes is not None else defaults["random_episodes"]
        )
        self.per_iteration = c.episodes_per_iteration or defaults["episodes_per_iteration"]
        self.mf_start = c.mf_start if c.mf_start is not None else defaults["mf_start"]
        self.ppo_batch = c.ppo_batch or defaults["ppo_batch"]
        spec = TASKS[self.task]
        torch.manual_seed(derive_seed(seed, "mbmf_init"))
        in_dim = int(spec.features(np.zeros((1, spec.obs_dim))).shape[-1]) + spec.act_dim
        self.model = ProbabilisticEnsemble(
            in_dim, spec.obs_dim, 1, c.hidden, c.layers, probabilistic=False, activation="relu"
        ).to(device)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=c.model_lr)
        self.planner = RandomShootingPlanner(c.candidates, seed=derive_seed(seed, "plan"), device=device)
        self.pi = GaussianPolicy(spec.obs_dim, spec.act_dim, c.policy_hidden, c.policy_std).to(device)
        self.pi_opt = torch.optim.Adam(self.pi.parameters(), lr=c.ppo_lr)
        self.rng = np.random.default_rng(derive_seed(seed, "mbmf"))
        self.torch_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "mbmf_policy"))
        self.phase = "random"
        self.episodes = 0  # train episodes started
        self.agent_step = 0  # last step seen by update
        self.pending = ""  # work for the next update: "model" (retrain) or "bc" (refit policy)
        self.labels: list[tuple[np.ndarray, np.ndarray]] = []  # (state, MPC action) pairs for BC/DAgger
        self.ppo: list[dict[str, Any]] = []  # on-policy transitions for PPO
        self.pending_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ acting
    def _mpc_action(self, x: torch.Tensor) -> torch.Tensor:
        def rollout(state, actions):
            return propagate(
                self.model,
                state,
                actions,
                lambda s, a, s2: task_reward(self.task, s, a, s2),
                mode="expectation",
                features=TASKS[self.task].features,
            )

        return self.planner.plan(x, rollout, self.config.horizon, self.act_space)[0]

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train"):
        x = torch.as_tensor(obs["vector"][0], dtype=torch.float32, device=self.device)
        first, last = bool(obs["is_first"][0]), bool(obs["is_last"][0])
        if mode == "train":
            if self.phase == "ppo":
                self._close_ppo_transition(x, float(obs["reward"][0]), last, bool(obs["is_terminal"][0]))
            if first:
                self._start_episode()
            if last:
                self.pending = self.pending or self._episode_end_work()
        if self.phase == "random":
            a = self.rng.uniform(self.act_space.low, self.act_space.high).astype(np.float32)
            return a[None], state
        if self.phase == "mpc":
            a = self._mpc_action(x)
            if mode == "train":
                self.labels.append((obs["vector"][0].copy(), a.cpu().numpy()))
            return a.cpu().numpy()[None].astype(np.float32), state
        if self.phase == "dagger" and mode == "train":
            self.labels.append((obs["vector"][0].copy(), self._mpc_action(x).cpu().numpy()))
        with torch.no_grad():
            dist = self.pi.dist(x)
            a = (
                dist.mean
                if mode == "eval"
                else dist.mean
                + dist.stddev * torch.randn(dist.mean.shape, generator=self.torch_gen, device=self.device)
            )
            if self.phase == "ppo" and mode == "train" and not last:
                self.ppo.append(
                    {
                        "obs": x,
                        "action": a,
                        "logp": dist.log_prob(a).sum(),
                        "value": self.pi.v(x),
                        "reward": 0.0,
                        "next_value": torch.zeros((), device=self.device),
                        "ended": False,
                    }
                )
        low, high = self.act_space.low, self.act_space.high
        return np.clip(a.cpu().numpy(), low, high)[None].astype(np.float32), state

    def _start_episode(self) -> None:
        self.planner.reset()
        self.episodes += 1
        if self.phase == "random" and self.episodes > self.random_episodes:
            self.phase = "mpc"
        if self.phase == "mpc" and self.agent_step >= self.mf_start:
            self.phase, self.dagger_left = "dagger", self.config.dagger_episodes
            self.pending_metrics.update(
                self._fit_policy()
            )  # behaviour cloning on the MPC's (state, action) pairs
        elif self.phase == "dagger":
            self.dagger_left -= 1
            if self.dagger_left <= 0:
                self.phase = "ppo"

    def _episode_end_work(self) -> str:
        if self.phase == "random" and self.episodes == self.random_episodes:
            return "model"
        if self.phase == "mpc" and (self.episodes - self.random_episodes) % self.per_iteration == 0:
            return "model"
        if self.phase == "dagger":
            return "bc"
        return ""

    # ---------------------------------------------------------------- learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        self.agent_step = step
        metrics, self.pending_metrics = self.pending_metrics, {}
        if self.pending == "model":
            inputs, targets = model_data(self.task, replay)
            result = train_ensemble(
                self.model,
                self.model_opt,
                inputs.to(self.device),
                targets.to(self.device),
                self.rng,
                epochs=self.config.model_epochs,
                batch_size=self.config.model_batch,
            )
            metrics.update({"model_mse": result.train_mse, "model_data": float(len(inputs))})
        elif self.pending == "bc":
            metrics.update(self._fit_policy())
        self.pending = ""
        return metrics

    def _fit_policy(self) -> dict[str, float]:
        """Behaviour cloning (MSE of the policy mean to the MPC's actions) on all labels so far (DAgger)."""
        obs = torch.as_tensor(np.stack([s for s, _ in self.labels]), dtype=torch.float32, device=self.device)
        act = torch.as_tensor(np.stack([a for _, a in self.labels]), dtype=torch.float32, device=self.device)
        with torch.no_grad():
            self.pi.obs_mean.copy_(obs.mean(0))
            self.pi.obs_std.copy_(obs.std(0, unbiased=False).clamp_min(1e-6))
        opt = torch.optim.Adam(self.pi.mean.parameters(), lr=self.config.bc_lr)
        loss = torch.zeros(())
        for _ in range(self.config.bc_epochs):
            order = torch.as_tensor(self.rng.permutation(len(obs)), device=self.device)
            for start in range(0, len(obs), 64):
                idx = order[start : start + 64]
                loss = ((self.pi.dist(obs[idx]).mean - act[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return {"bc_loss": float(loss.detach()), "bc_labels": float(len(obs))}

    def _close_ppo_transition(self, x: torch.Tensor, reward: float, last: bool, terminal: bool) -> None:
        """The reward of the previous action arrives with this observation; close that transition, maybe train."""
        if not self.ppo or self.ppo[-1]["ended"] or self.ppo[-1].get("closed"):
            return
        with torch.no_grad():
            self.ppo[-1].update(
                reward=reward,
                next_value=torch.zeros((), device=self.device) if terminal else self.pi.v(x),
                ended=last,
                closed=True,
            )
        if len(self.ppo) >= self.ppo_batch:
            self.pending_metrics.update(self._ppo_update())

    def _ppo_update(self) -> dict[str, float]:
        c = self.config
        batch = self.ppo
        self.ppo = []
        obs = torch.stack([t["obs"] for t in batch])
        act = torch.stack([t["action"] for t in batch])
        old_logp = torch.stack([t["logp"] for t in batch])
        value = torch.stack([t["value"] for t in batch])
        reward = torch.tensor([t["reward"] for t in batch], device=self.device)
        next_value = torch.stack([t["next_value"] for t in batch])
        ended = torch.tensor([float(t["ended"]) for t in batch], device=self.device)
        advantage = gae_advantages(reward, value, next_value, ended, c.gamma, c.gae_lambda)
        returns = advantage + value
        logs = {}
        for _ in range(c.ppo_epochs):
            order = torch.as_tensor(self.rng.permutation(len(batch)), device=self.device)
            for start in range(0, len(batch), c.ppo_minibatch):
                idx = order[start : start + c.ppo_minibatch]
                adv = advantage[idx]
                adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
                ratio = torch.exp(self.pi.dist(obs[idx]).log_prob(act[idx]).sum(-1) - old_logp[idx])
                policy_loss = -torch.min(
                    ratio * adv, ratio.clamp(1 - c.ppo_clip, 1 + c.ppo_clip) * adv
                ).mean()
                value_loss = 0.5 * ((self.pi.v(obs[idx]) - returns[idx]) ** 2).mean()
                loss = policy_loss + value_loss
                self.pi_opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.pi.parameters(), 0.5)
                self.pi_opt.step()
                logs = {
                    "ppo_policy_loss": float(policy_loss.detach()),
                    "ppo_value_loss": float(value_loss.detach()),
                }
        return logs

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        ppo_keys = ("obs", "action", "logp", "value", "next_value")
        return {
            "model": self.model.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "pi": self.pi.state_dict(),
            "pi_opt": self.pi_opt.state_dict(),
            "planner": self.planner.state_dict(),
            "rng": generator_state(self.rng),
            "torch_gen": self.torch_gen.get_state(),
            "phase": self.phase,
            "episodes": self.episodes,
            "agent_step": self.agent_step,
            "pending": self.pending,
            "dagger_left": getattr(self, "dagger_left", 0),
            "label_obs": torch.as_tensor(np.stack([s for s, _ in self.labels]))
            if self.labels
            else torch.empty(0),
            "label_act": torch.as_tensor(np.stack([a for _, a in self.labels]))
            if self.labels
            else torch.empty(0),
            "ppo": {
                k: torch.stack([t[k] for t in self.ppo]).cpu() if self.ppo else torch.empty(0)
                for k in ppo_keys
            },
            "ppo_reward": [float(t["reward"]) for t in self.ppo],
            "ppo_flags": [[bool(t["ended"]), bool(t.get("closed", False))] for t in self.ppo],
            "pending_metrics": dict(self.pending_metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.pi.load_state_dict(state["pi"])
        self.pi_opt.load_state_dict(state["pi_opt"])
        self.planner.load_state_dict(state["planner"])
        set_generator_state(self.rng, state["rng"])
        self.torch_gen.set_state(state["torch_gen"])
        self.phase, self.episodes = str(state["phase"]), int(state["episodes"])
        self.agent_step, self.pending = int(state["agent_step"]), str(state["pending"])
        self.dagger_left = int(state["dagger_left"])
        obs, act = state["label_obs"], state["label_act"]
        self.labels = [(o.numpy(), a.numpy()) for o, a in zip(obs, act, strict=True)] if obs.numel() else []
        self.ppo = []
        for i, (reward, (ended, closed)) in enumerate(
            zip(state["ppo_reward"], state["ppo_flags"], strict=True)
        ):
            t = {k: v[i].to(self.device) for k, v in state["ppo"].items()}
            t.update(reward=reward, ended=ended, closed=closed)
            self.ppo.append(t)
        self.pending_metrics = dict(state["pending_metrics"])
