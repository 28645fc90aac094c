"""MB-MF: neural-network dynamics + MPC, then model-free fine-tuning (Nagabandi, Kahn, Fearing & Levine, ICRA 2018).

Phases, switched at episode starts by agent step (the runner's one stream of env steps):
1. `random` - the first `random_episodes` episodes act uniformly at random (paper Sec. IV-A, D_rand).
2. `mpc`    - random-shooting MPC (`wmbench.nn.planners.RandomShootingPlanner`, `candidates` sequences of
   `horizon` steps) through a deterministic MLP on normalised inputs predicting normalised state deltas
   (`wmbench.nn.ensemble.ProbabilisticEnsemble` with one member, `probabilistic=False`, paper Sec. IV-B) and the
   task's known reward. Model input: the state after PETS's per-task preprocessing (`wmbench_baselines.pets.TASKS`:
   cart-pole angle -> sin/cos) plus the action. On-policy data aggregation: the model is retrained on all data every
   `episodes_per_iteration` episodes (paper Alg. 1). The MPC's own (state, action) pairs are kept as labels.
3. `dagger` - from agent step `mf_start`: the policy is fitted by behaviour cloning (squared error of its mean)
   to the MPC's actions of the last `label_episodes` MPC episodes (the controller at its best; earlier episodes
   planned with worse models), then for `dagger_episodes` episodes the policy acts, the MPC labels every visited
   state, and the policy is refitted on the aggregate (DAgger, Ross et al. 2011; paper Sec. V-A). The policy sees
   the same features as the model (sin/cos of angles), never the raw unwrapped angle.
4. `ppo`    - model-free fine-tuning of that policy. The paper uses TRPO (rllab); this module uses PPO-clip
   (Schulman et al. 2017) with GAE (Schulman et al. 2016), a deliberate substitution, kept close to TRPO's trust
   region so that the first updates cannot destroy the imitation: the first `value_warmup` batches train only the
   value function (an untrained critic's advantages are noise), and each batch's policy epochs stop once the
   policy's KL from the collecting policy exceeds `target_kl` (TRPO's step size, Schulman et al. 2015).

The policy's initial std is per task (`TASK_DEFAULTS`: 0.1 on cart-pole, where more noise undoes the clone) and
its critic predicts returns in units of the first PPO batch's return mean/std. `mf_start=0` runs the same PPO from
a random initialisation (the model-free baseline the paper compares with).

Per-task settings follow the released code (anagabandi/nn_dynamics, yaml_files/cheetah_forward.yaml: 10 random
rollouts, 500-unit ReLU layers, batch 512, lr 1e-3, 60 epochs, horizon 20, 1000 candidates, 10 rollouts per
aggregation iteration; policy std 0.5 for the MuJoCo tasks). Values left None take the task's defaults from `TASK_DEFAULTS`. Not
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

from wmbench.config import bounded
from wmbench.envs.control import task_reward
from wmbench.method import Method
from wmbench.nn.distributions import normal_kl, normal_log_prob
from wmbench.nn.ensemble import ProbabilisticEnsemble, propagate, train_ensemble
from wmbench.nn.networks import MLP
from wmbench.nn.planners import RandomShootingPlanner
from wmbench.nn.returns import replay_lambda_return
from wmbench.seeding import derive_seed, generator_state, set_generator_state

# Schedules per task: cheetah from the paper's code; cart-pole scaled to control@1's 15-episode budget (ours).
TASK_DEFAULTS = {
    "half_cheetah": {
        "random_episodes": 10,
        "episodes_per_iteration": 10,
        "mf_start": 80_000,
        "ppo_batch": 5000,
        "policy_std": 0.5,
    },
    "cartpole_swingup": {
        "random_episodes": 1,
        "episodes_per_iteration": 1,
        "mf_start": 2_000,
        "ppo_batch": 1000,
        # Balancing the pole tolerates little action noise: on seed 0 the cloned policy's mean scored 172-187,
        # with Gaussian noise of std 0.5 17-42, 0.2 94-131, 0.1 155-180 (scripts/mbmf_imitation_noise.py).
        "policy_std": 0.1,
    },
    "reacher": {
        "random_episodes": 10,
        "episodes_per_iteration": 10,
        "mf_start": 5_000,
        "ppo_batch": 1000,
        "policy_std": 0.5,
    },
    "pusher": {
        "random_episodes": 10,
        "episodes_per_iteration": 10,
        "mf_start": 8_000,
        "ppo_batch": 1000,
        "policy_std": 0.5,
    },
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
    # imitation of the MPC: behaviour cloning on its last episodes, then DAgger
    label_episodes: int = bounded(5, low=1)
    dagger_episodes: int = bounded(3, low=0)
    bc_epochs: int = bounded(50, low=1)
    bc_lr: float = bounded(1e-3, above=0)
    bc_batch: int = bounded(64, low=1)
    # policy: Gaussian MLP (tanh units, state-independent std), fine-tuned by PPO
    policy_hidden: int = 64
    policy_std: float | None = bounded(
        None, above=0
    )  # the policy's initial std (None: the task's, TASK_DEFAULTS)
    ppo_batch: int | None = bounded(None, low=1)
    ppo_epochs: int = bounded(10, low=1)
    ppo_minibatch: int = bounded(64, low=1)
    ppo_lr: float = bounded(3e-4, above=0)
    value_lr: float = bounded(1e-3, above=0)
    ppo_clip: float = bounded(0.2, above=0)
    target_kl: float = bounded(0.01, above=0)
    value_warmup: int = bounded(2, low=0)
    gamma: float = bounded(0.99, low=0, high=1)
    gae_lambda: float = bounded(0.95, low=0, high=1)

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
            "label_episodes": 1,
            "dagger_episodes": 1,
            "ppo_epochs": 2,
            "value_warmup": 1,
        },
    }


class GaussianPolicy(nn.Module):
    """rllab's GaussianMLPPolicy: tanh-MLP mean, state-independent log-std; a tanh-MLP value function beside it.

    Both read the task's model features (`TASKS[task].features`), normalised by a mean/std fitted once, on the
    first data the policy learns from (the MPC's labels, or the first PPO batch when starting from scratch). The
    value function predicts returns in units of a mean/std fitted once too, on the first PPO batch's Monte-Carlo
    returns (cart-pole's returns reach ~100: an unscaled critic would still be catching up when its advantages
    start steering the policy)."""

    def __init__(self, feat_dim: int, act_dim: int, hidden: int, std: float):
        super().__init__()
        # A small output layer starts the mean near 0 (PPO's usual 0.01 init); imitation overwrites it anyway.
        self.mean = MLP(feat_dim, hidden, 2, act_dim, norm="none", act="tanh", outscale=0.01)
        self.value = MLP(feat_dim, hidden, 2, 1, norm="none", act="tanh")
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(std)))
        self.register_buffer("feat_mean", torch.zeros(feat_dim))
        self.register_buffer("feat_std", torch.ones(feat_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("value_mean", torch.zeros(()))
        self.register_buffer("value_std", torch.ones(()))
        self.register_buffer("value_fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_normaliser(self, feat: torch.Tensor) -> None:
        if not bool(self.fitted):
            self.feat_mean.copy_(feat.mean(0))
            self.feat_std.copy_(feat.std(0, unbiased=False).clamp_min(1e-6))
            self.fitted.fill_(True)

    @torch.no_grad()
    def fit_value_normaliser(self, returns: torch.Tensor) -> None:
        if not bool(self.value_fitted):
            self.value_mean.copy_(returns.mean())
            self.value_std.copy_(returns.std(unbiased=False).clamp_min(1e-6))
            self.value_fitted.fill_(True)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the action distribution."""
        mean = self.mean((feat - self.feat_mean) / self.feat_std)
        return mean, self.log_std.exp().expand_as(mean)

    def v(self, feat: torch.Tensor) -> torch.Tensor:
        return self.value_mean + self.value_std * self.value((feat - self.feat_mean) / self.feat_std).squeeze(
            -1
        )


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
        policy_std = c.policy_std if c.policy_std is not None else defaults["policy_std"]
        self.features = TASKS[self.task].features
        spec = TASKS[self.task]
        torch.manual_seed(derive_seed(seed, "mbmf_init"))
        feat_dim = int(spec.features(np.zeros((1, spec.obs_dim))).shape[-1])
        self.model = ProbabilisticEnsemble(
            feat_dim + spec.act_dim,
            spec.obs_dim,
            1,
            c.hidden,
            c.layers,
            probabilistic=False,
            activation="relu",
        ).to(device)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=c.model_lr)
        self.planner = RandomShootingPlanner(c.candidates, seed=derive_seed(seed, "plan"), device=device)
        self.pi = GaussianPolicy(feat_dim, spec.act_dim, c.policy_hidden, policy_std).to(device)
        self.actor_opt = torch.optim.Adam([*self.pi.mean.parameters(), self.pi.log_std], lr=c.ppo_lr)
        self.critic_opt = torch.optim.Adam(self.pi.value.parameters(), lr=c.value_lr)
        self.bc_opt = torch.optim.Adam(self.pi.mean.parameters(), lr=c.bc_lr)
        self.rng = np.random.default_rng(derive_seed(seed, "mbmf"))
        self.torch_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "mbmf_policy"))
        self.phase = "random"
        self.episodes = 0  # train episodes started
        self.agent_step = 0  # last step seen by update
        self.pending = ""  # work for the next update: "model" (retrain) or "bc" (refit policy)
        self.dagger_left = 0
        self.labels: list[tuple[np.ndarray, np.ndarray, int]] = []  # (state, MPC action, episode)
        self.rollout: list[dict[str, Any]] = []  # PPO: the steps of the batch being collected
        self.ppo_updates = 0
        self.pending_metrics: dict[str, float] = {}

    def _feat(self, states: Any) -> torch.Tensor:
        return self.features(torch.as_tensor(np.asarray(states), dtype=torch.float32, device=self.device))

    # ------------------------------------------------------------------ acting
    def _mpc_action(self, x: torch.Tensor) -> torch.Tensor:
        def rollout(state, actions):
            return propagate(
                self.model,
                state,
                actions,
                lambda s, a, s2: task_reward(self.task, s, a, s2),
                mode="expectation",
                features=self.features,
            )

        return self.planner.plan(x, rollout, self.config.horizon, self.act_space)[0]

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train"):
        vector = obs["vector"][0]
        x = torch.as_tensor(vector, dtype=torch.float32, device=self.device)
        first, last = bool(obs["is_first"][0]), bool(obs["is_last"][0])
        train = mode == "train"
        if train and first:
            self._start_episode()
        if train and last:
            self.pending = self.pending or self._episode_end_work()
        if self.phase == "random":
            a = self.rng.uniform(self.act_space.low, self.act_space.high).astype(np.float32)
            return a[None], state
        if self.phase == "mpc":
            a = self._mpc_action(x).cpu().numpy()
            if train:
                self.labels.append((vector.copy(), a, self.episodes))
            return a[None].astype(np.float32), state
        if self.phase == "dagger" and train:  # the policy acts, the MPC says what it would have done
            self.labels.append((vector.copy(), self._mpc_action(x).cpu().numpy(), self.episodes))
        if self.phase == "ppo" and train:
            self.rollout.append(
                {
                    "vector": vector.copy(),
                    "reward": float(obs["reward"][0]),
                    "last": last,
                    "terminal": bool(obs["is_terminal"][0]),
                }
            )
            if len(self.rollout) > self.ppo_batch:  # batch full; its last step is the bootstrap state
                self.pending_metrics.update(self._ppo_update())
                self.rollout = self.rollout[-1:]
        with torch.no_grad():
            mean, std = self.pi(self.features(x))
            a = (
                mean
                if not train
                else mean + std * torch.randn(mean.shape, generator=self.torch_gen, device=self.device)
            )
        if self.phase == "ppo" and train:
            self.rollout[-1]["action"] = a.cpu().numpy()
        low, high = self.act_space.low, self.act_space.high
        return np.clip(a.cpu().numpy(), low, high)[None].astype(np.float32), state

    def _start_episode(self) -> None:
        self.planner.reset()
        self.episodes += 1
        if self.phase == "random" and self.episodes > self.random_episodes:
            self.phase = "mpc"
        if self.phase in ("random", "mpc") and self.agent_step >= self.mf_start:
            self._switch_to_policy()
        elif self.phase == "dagger":
            self.dagger_left -= 1
            if self.dagger_left <= 0:
                self.phase = "ppo"

    def _switch_to_policy(self) -> None:
        """MB -> MF: imitate the MPC of its last `label_episodes` episodes, then DAgger (none ran: PPO from scratch)."""
        mpc_episodes = sorted({episode for _, _, episode in self.labels})
        keep = set(mpc_episodes[-self.config.label_episodes :])
        self.labels = [label for label in self.labels if label[2] in keep]
        if not self.labels:
            self.phase = "ppo"
            return
        self.pending_metrics.update(self._fit_policy())
        self.phase, self.dagger_left = "dagger", self.config.dagger_episodes
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
        """Behaviour cloning: squared error of the policy's mean to the MPC's actions, on all labels so far."""
        c = self.config
        feat = self._feat(np.stack([s for s, _, _ in self.labels]))
        act = torch.as_tensor(
            np.stack([a for _, a, _ in self.labels]), dtype=torch.float32, device=self.device
        )
        self.pi.fit_normaliser(feat)
        loss = torch.zeros(())
        for _ in range(c.bc_epochs):
            order = torch.as_tensor(self.rng.permutation(len(feat)), device=self.device)
            for start in range(0, len(feat), c.bc_batch):
                idx = order[start : start + c.bc_batch]
                loss = ((self.pi(feat[idx])[0] - act[idx]) ** 2).mean()
                self.bc_opt.zero_grad()
                loss.backward()
                self.bc_opt.step()
        with torch.no_grad():
            mse = float(((self.pi(feat)[0] - act) ** 2).mean())
        return {"bc_mse": mse, "bc_labels": float(len(feat))}

    def _ppo_update(self) -> dict[str, float]:
        """One PPO iteration on the collected batch: critic regression, then the clipped surrogate (PPO Eq. 7)."""
        c = self.config
        steps = self.rollout
        feat = self._feat(np.stack([s["vector"] for s in steps]))
        # The last step only bootstraps (its action comes from the updated policy, in the next batch).
        action = torch.as_tensor(
            np.stack([s["action"] for s in steps[:-1]]), dtype=torch.float32, device=self.device
        )
        reward = torch.tensor([s["reward"] for s in steps], device=self.device)
        last = torch.tensor([s["last"] for s in steps], device=self.device)
        terminal = torch.tensor([s["terminal"] for s in steps], device=self.device)
        # Transitions: actions taken at steps that are not an episode's last.
        index = torch.nonzero(~last[:-1]).squeeze(-1)
        n = len(index)
        self.pi.fit_normaliser(feat)  # from scratch: the first batch fixes the feature normaliser
        with torch.no_grad():
            no_bootstrap = torch.zeros_like(reward)[None]
            monte_carlo = replay_lambda_return(
                reward[None], last[None], terminal[None], no_bootstrap, c.gamma, 1.0
            )
            self.pi.fit_value_normaliser(monte_carlo[0, index])
            old_mean, old_std = self.pi(feat[:-1])
            old_logp = normal_log_prob(action, old_mean, old_std)
            value = self.pi.v(feat)
            # GAE(gamma, lambda) = lambda-return - V (Schulman et al. 2016); cut at episode ends, V(s) bootstraps
            # time limits and the batch's end.
            returns = replay_lambda_return(
                reward[None], last[None], terminal[None], value[None], c.gamma, c.gae_lambda
            )[0]
            advantage = returns - value[:-1]
        for _ in range(c.ppo_epochs):
            order = index[torch.as_tensor(self.rng.permutation(n), device=self.device)]
            for start in range(0, n, c.ppo_minibatch):
                idx = order[start : start + c.ppo_minibatch]
                value_loss = 0.5 * (((self.pi.v(feat[idx]) - returns[idx]) / self.pi.value_std) ** 2).mean()
                self.critic_opt.zero_grad()
                value_loss.backward()
                self.critic_opt.step()
        logs = {"ppo_value_loss": float(value_loss.detach()), "ppo_return_mean": float(returns[index].mean())}
        self.ppo_updates += 1
        if self.ppo_updates <= c.value_warmup:
            return logs  # value-function warm-up: the policy acts unchanged meanwhile
        kl, epochs, within_trust_region, policy_loss = 0.0, 0, True, torch.zeros(())
        while within_trust_region and epochs < c.ppo_epochs:
            order = index[torch.as_tensor(self.rng.permutation(n), device=self.device)]
            for start in range(0, n, c.ppo_minibatch):
                idx = order[start : start + c.ppo_minibatch]
                mean, std = self.pi(feat[idx])
                kl = float(normal_kl(old_mean[idx], old_std[idx], mean, std).mean().detach())
                if kl > c.target_kl:  # trust region left: stop this batch's policy updates (TRPO's KL limit)
                    within_trust_region = False
                    break
                adv = advantage[idx]
                adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
                ratio = torch.exp(normal_log_prob(action[idx], mean, std) - old_logp[idx])
                policy_loss = -torch.min(
                    ratio * adv, ratio.clamp(1 - c.ppo_clip, 1 + c.ppo_clip) * adv
                ).mean()
                self.actor_opt.zero_grad()
                policy_loss.backward()
                nn.utils.clip_grad_norm_([*self.pi.mean.parameters(), self.pi.log_std], 0.5)
                self.actor_opt.step()
            epochs += 1
        logs.update(
            {
                "ppo_policy_loss": float(policy_loss.detach()),
                "ppo_kl": kl,
                "ppo_policy_epochs": float(epochs),
                "policy_std": float(self.pi.log_std.detach().exp().mean()),
            }
        )
        return logs

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        def stacked(key: str, rows: list) -> torch.Tensor:
            return torch.as_tensor(np.stack([r[key] for r in rows])) if rows else torch.empty(0)

        labels = [{"s": s, "a": a} for s, a, _ in self.labels]
        # The step being acted on holds no action until `policy` returns; a checkpoint is taken between steps.
        return {
            "model": self.model.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "pi": self.pi.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "bc_opt": self.bc_opt.state_dict(),
            "planner": self.planner.state_dict(),
            "rng": generator_state(self.rng),
            "torch_gen": self.torch_gen.get_state(),
            "phase": self.phase,
            "episodes": self.episodes,
            "agent_step": self.agent_step,
            "pending": self.pending,
            "dagger_left": self.dagger_left,
            "ppo_updates": self.ppo_updates,
            "label_obs": stacked("s", labels),
            "label_act": stacked("a", labels),
            "label_episode": torch.tensor([e for _, _, e in self.labels], dtype=torch.long),
            "rollout_vector": stacked("vector", self.rollout),
            "rollout_action": stacked("action", self.rollout),
            "rollout_reward": [s["reward"] for s in self.rollout],
            "rollout_flags": [[s["last"], s["terminal"]] for s in self.rollout],
            "pending_metrics": dict(self.pending_metrics),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.pi.load_state_dict(state["pi"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.bc_opt.load_state_dict(state["bc_opt"])
        self.planner.load_state_dict(state["planner"])
        set_generator_state(self.rng, state["rng"])
        self.torch_gen.set_state(state["torch_gen"])
        self.phase, self.episodes = str(state["phase"]), int(state["episodes"])
        self.agent_step, self.pending = int(state["agent_step"]), str(state["pending"])
        self.dagger_left, self.ppo_updates = int(state["dagger_left"]), int(state["ppo_updates"])
        self.labels = [
            (s.numpy(), a.numpy(), int(e))
            for s, a, e in zip(state["label_obs"], state["label_act"], state["label_episode"], strict=True)
        ]
        self.rollout = [
            {
                "vector": v.numpy(),
                "action": a.numpy(),
                "reward": float(r),
                "last": bool(f[0]),
                "terminal": bool(f[1]),
            }
            for v, a, r, f in zip(
                state["rollout_vector"],
                state["rollout_action"],
                state["rollout_reward"],
                state["rollout_flags"],
                strict=True,
            )
        ]
        self.pending_metrics = dict(state["pending_metrics"])
