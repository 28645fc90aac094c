"""Plan2Explore (Sekar et al. 2020, "Planning to Explore via Self-Supervised World Models"), on Dreamer v1's world
model and behaviour learning.

Algorithm 1 of the paper, as run here (the runner calls `policy` every env step, `update` after it, and `set_stage`
when the protocol's stage changes; docs/plan2explore.md):
1. Seed: the first `seed_episodes` (S = 5) training episodes act uniformly at random.
2. After every completed training episode (from the S-th on), `updates_per_episode` (C = 100) updates, each on a
   batch of B x L = 50 x 50 replayed steps:
   - World model M: PlaNet's Gaussian RSSM and loss (the shared `GaussianWorldModel`: image reconstruction + KL
     clipped below 3 free nats). While the protocol's stage is task-agnostic, the reward head learns from sg(s_t):
     the recorded rewards label the exploration data for zero-shot learning but shape no latent state.
   - Latent disagreement ensemble E (Sec. 3.2): K = 5 one-step models, each predicting the encoder's embedding of
     o_t+1 from the deterministic model state h_t+1 and the action a_t (the code's `ensemble_model_type` 1), every
     member trained by squared error on its own bootstrap resample of the batch's sequences. The shared
     `wmbench.nn.ensemble.ProbabilisticEnsemble` with deterministic members.
   - Exploration actor-critic pi_LD (Sec. 3.3): Dreamer v1's behaviour learning (`wmbench.nn.behaviour`) in
     imagination of M from every posterior state, with the intrinsic reward
         r_LD(s_tau, a_tau) = intrinsic_scale * mean_d Var_k[mu_k(h_tau+1, a_tau)]_d   (`ensemble.disagreement`)
     (scale 10,000, the code's `intrinsic_reward_scale`), maximised by analytic gradients through M and E.
   - Task actor-critic pi_R (Sec. 4, zero-shot): the same behaviour learning with the reward head's predictions
     E[q(r_tau | s_tau)], trained all along from the exploration data alone.
3. Environment interaction: the RSSM filter updates the belief every step. In a stage without the task reward
   (`task_reward = false`, e.g. `explore`) pi_LD's sample acts, plus Gaussian noise (std 0.3); in a stage with it
   (few-shot adaptation) pi_R's sample acts, plus the same noise, and the reward head trains the world model too.
   Evaluation episodes always act with tanh of pi_R's mean: the zero-shot (or adapted) task policy.

Settings: the released TF1 code (ramanans1/plan2explore `scripts/configs.py`; its README: "the default settings of
the experiments reported in the paper"): RSSM with a 400-unit GRU, 400-unit hidden layers and 60 stochastic dims,
ELU dense layers of 400 units (reward 2, value 3, actor 4 layers), 8-bit images with dequantisation noise, Adam
(eps 1e-4) with learning rates 6e-4 (model and ensemble), 8e-5 (both actors, both values), gradient norms clipped
at 100; ensemble members of 2 ReLU layers as wide as the embedding (1024). Differences from the code (docs): the
ensemble members do not re-feed the action to every layer, the ensemble has its own optimiser (the code adds its
loss to the model's), and the imagined sums follow Dreamer v1's Algorithm 1 (as `dreamerv1` here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method
from wmbench.nn.behaviour import analytic_behaviour_losses, imagine, tanh_normal_params
from wmbench.nn.distributions import tanh_normal_sample
from wmbench.nn.ensemble import ProbabilisticEnsemble, disagreement
from wmbench.nn.networks import MLP
from wmbench.nn.world_model import (
    EpisodeSchedule,
    GaussianWorldModel,
    finite_values,
    gaussian_latent_key_notes,
    load_networks,
    pixel_control_support,
)
from wmbench.nn.world_model import parameter_counts as network_parameter_counts
from wmbench.seeding import derive_seed


@dataclass(frozen=True)
class Plan2ExploreConfig:
    """The released code's settings (its paper runs); presets `cpu` (CPU learning runs) and `tiny` (tests)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # tests only: a second or two per collected episode on 16x16 images
        "tiny": {
            "deter": 16, "stoch": 4, "hidden": 16, "depth": 4, "units": 16, "reward_units": 16,
            "ensemble_units": 16, "batch_size": 4, "batch_length": 8, "updates_per_episode": 2,
            "seed_episodes": 1, "imag_horizon": 3,
        },
        # CPU runs: Dreamer v1's model sizes (deter 200, stoch 30), 4x smaller batches, half the updates per episode
        "cpu": {"deter": 200, "stoch": 30, "hidden": 200, "ensemble_units": 400, "batch_size": 16,
                "updates_per_episode": 50},
    }
    KEY_NOTES: ClassVar[dict[str, str]] = gaussian_latent_key_notes("Plan2Explore", "Sekar et al. 2020", stoch=60)
    preset: str = "paper"
    # --- world model (configs.py: model_size 400, state_size 60, ELU; PlaNet's CNNs; image_bits 8)
    deter: int = bounded(400, low=1)
    stoch: int = bounded(60, low=1)
    hidden: int = bounded(400, low=1)
    min_std: float = bounded(0.1, above=0)
    depth: int = bounded(32, low=1)
    enc_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 4, 4, 4, 4
    dec_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 5, 5, 6, 6
    image_bits: int = bounded(8, low=1, high=8)
    reward_units: int = bounded(400, low=1)
    reward_layers: int = bounded(2, low=0)
    free_nats: float = bounded(3.0, low=0)
    kl_scale: float = bounded(1.0, low=0)
    image_scale: float = bounded(1.0, low=0)
    reward_scale: float = bounded(1.0, low=0)
    # --- latent disagreement ensemble (Sec. 3.2; one_step_model.py, configs.py)
    ensemble_members: int = bounded(5, low=2, high=64)
    ensemble_units: int = bounded(1024, low=1)
    ensemble_layers: int = bounded(2, low=1)
    intrinsic_scale: float = bounded(10000.0, above=0)
    ensemble_lr: float = bounded(6e-4, low=0, high=1)
    # --- both actor-critics (Dreamer v1's; configs.py: 400 units, action 4 layers, value 3, tanh_normal_tanh)
    units: int = bounded(400, low=1)
    actor_layers: int = bounded(4, low=0)
    value_layers: int = bounded(3, low=0)
    actor_init_std: float = bounded(5.0, above=0)
    actor_min_std: float = bounded(1e-4, above=0)
    actor_mean_scale: float = bounded(5.0, above=0)
    imag_horizon: int = bounded(15, low=1, high=1000)
    gamma: float = bounded(0.99, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    # --- optimisers (configs.py: Adam eps 1e-4; model 6e-4, action and value 8e-5, clipping 100)
    model_lr: float = bounded(6e-4, low=0, high=1)
    actor_lr: float = bounded(8e-5, low=0, high=1)
    value_lr: float = bounded(8e-5, low=0, high=1)
    adam_eps: float = bounded(1e-4, above=0)
    grad_clip: float = bounded(100.0, above=0)
    # --- schedule (num_seed_episodes 5; one episode collected per 100 train steps of 50 x 50 batches)
    batch_size: int = bounded(50, low=1, high=65536)
    batch_length: int = bounded(50, low=2, high=4096)
    updates_per_episode: int = bounded(100, low=0)
    seed_episodes: int = bounded(5, low=0)
    explore_noise: float = bounded(0.3, low=0)


NETWORKS = ("world_model", "ensemble", "actor", "value", "explore_actor", "explore_value")


def build_networks(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: Plan2ExploreConfig) -> nn.ModuleDict:
    """World model M, the one-step ensemble E, the task actor-critic pi_R and the exploration actor-critic pi_LD."""
    act_dim = int(act_space.shape[0])
    try:
        world_model = GaussianWorldModel(
            obs_space["image"].shape, act_dim, deter=c.deter, stoch=c.stoch, hidden=c.hidden, min_std=c.min_std,
            depth=c.depth, enc_kernels=c.enc_kernels, dec_kernels=c.dec_kernels, reward_units=c.reward_units,
            reward_layers=c.reward_layers, act="elu", image_bits=c.image_bits, dequantise=True,
        )
    except ValueError as e:
        raise ConfigError(f"plan2explore: {e}") from e
    feat = world_model.rssm.feat_dim
    dense = {"norm": "none", "act": "elu", "fan": "avg"}
    ensemble = ProbabilisticEnsemble(
        c.deter + act_dim, world_model.encoder.out_dim, members=c.ensemble_members, hidden=c.ensemble_units,
        layers=c.ensemble_layers, probabilistic=False, activation="relu",
    )
    return nn.ModuleDict({
        "world_model": world_model,
        "ensemble": ensemble,
        "actor": MLP(feat, c.units, c.actor_layers, out_dim=2 * act_dim, **dense),
        "value": MLP(feat, c.units, c.value_layers, out_dim=1, **dense),
        "explore_actor": MLP(feat, c.units, c.actor_layers, out_dim=2 * act_dim, **dense),
        "explore_value": MLP(feat, c.units, c.value_layers, out_dim=1, **dense),
    })


def parameter_counts(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: Plan2ExploreConfig) -> dict[str, int]:
    """Trained parameters per network (world-model parts, ensemble, both actor-critics; built on the meta device)."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = network_parameter_counts(nets["world_model"])
    del counts["total"]
    for name in NETWORKS[1:]:
        counts[name] = sum(p.numel() for p in nets[name].parameters())
    counts["total"] = sum(counts.values())
    return counts


def intrinsic_reward(ensemble: ProbabilisticEnsemble, deter: Tensor, action: Tensor, scale: float) -> Tensor:
    """r_LD of the transitions into states with deterministic part `deter` [..., D] by actions `action` [..., A]:
    `scale` x the members' disagreement about the next observation's embedding (Sec. 3.2)."""
    inputs = torch.cat([deter, action], -1)
    flat = inputs.reshape(1, -1, inputs.shape[-1]).expand(ensemble.members, -1, -1)
    means, _ = ensemble.predict(flat)  # [K, N, embed]
    return scale * disagreement(means).reshape(inputs.shape[:-1])


class Plan2Explore(Method):
    name = "plan2explore"
    Config = Plan2ExploreConfig
    follows_stages = True

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("Plan2Explore", obs_space, act_space)

    @classmethod
    def supports_protocol(cls, protocol: Any) -> str | None:
        if not protocol.stages:
            return (
                f"Plan2Explore explores without the task reward first and adapts to it afterwards, so it needs a "
                f"protocol whose [[stages]] say when the task reward may be used, and {protocol.id} has none; use "
                "dmc_vision_zeroshot@1 (zero-shot) or dmc_vision_fewshot@1 (few-shot), fake_stages@1 for tests"
            )
        return None

    def __init__(self, obs_space, act_space, config: Plan2ExploreConfig | None = None, device: str = "cpu", seed: int = 0):
        config = config if config is not None else Plan2ExploreConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        for key in ("imag_horizon", "batch_size", "batch_length", "ensemble_members"):
            value = getattr(c, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"plan2explore: {key} must be a positive integer, got {value!r} (e.g. --set {key}=15)")
        if c.ensemble_members < 2:
            raise ConfigError(f"plan2explore: ensemble_members must be at least 2 to disagree, got {c.ensemble_members}")
        self.device = torch.device(device)
        self.act_dim = int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "plan2explore/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        self.world_model, self.ensemble = self.nets["world_model"], self.nets["ensemble"]
        self.rssm = self.world_model.rssm

        def adam(net: nn.Module, lr: float) -> torch.optim.Adam:
            return torch.optim.Adam(net.parameters(), lr=lr, eps=c.adam_eps)

        self.opts = {
            "world_model": adam(self.world_model, c.model_lr), "ensemble": adam(self.ensemble, c.ensemble_lr),
            "actor": adam(self.nets["actor"], c.actor_lr), "value": adam(self.nets["value"], c.value_lr),
            "explore_actor": adam(self.nets["explore_actor"], c.actor_lr),
            "explore_value": adam(self.nets["explore_value"], c.value_lr),
        }
        self.raw_init_std = math.log(math.expm1(c.actor_init_std))  # softplus^-1: std starts at actor_init_std
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "plan2explore/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "plan2explore/act"))
        self.rng_bootstrap = torch.Generator(self.device).manual_seed(derive_seed(seed, "plan2explore/bootstrap"))
        self.schedule = EpisodeSchedule(c.seed_episodes, c.updates_per_episode, c.batch_size, c.batch_length)
        self.updates = 0
        self.stage = "explore"  # until the runner says otherwise: task-agnostic
        self.task_reward = False

    # ------------------------------------------------------------------ protocol stages
    def set_stage(self, stage: Any) -> None:
        """Explore (pi_LD acts, the reward head learns from sg(s)) while the stage withholds the task reward;
        adapt (pi_R acts, the reward trains the model) once it gives it. Idempotent."""
        self.stage, self.task_reward = stage.name, bool(stage.task_reward)

    # ------------------------------------------------------------------ action models
    def action_dist(self, actor: nn.Module, deter: Tensor, stoch: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        raw = actor(self.world_model.feat(deter, stoch))
        return tanh_normal_params(raw, self.raw_init_std, c.actor_min_std, c.actor_mean_scale)

    # ------------------------------------------------------------------ environment interaction (Alg. 1)
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        c = self.config
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1).bool()
        if self.schedule.observe(obs, mode):  # S seed episodes of random actions
            action = torch.rand(is_first.shape[0], self.act_dim, generator=self.gen_act, device=self.device)
            return (2 * action - 1).cpu().numpy().astype(np.float32), None
        deter, stoch = self.world_model.filter(obs["image"], state, is_first, self.gen_act)
        if mode == "train":
            actor = self.nets["actor"] if self.task_reward else self.nets["explore_actor"]
            action, _ = tanh_normal_sample(*self.action_dist(actor, deter, stoch), self.gen_act)
            noise = torch.randn(action.shape, generator=self.gen_act, device=self.device)
            action = (action + c.explore_noise * noise).clamp(-1, 1)
        else:  # the task policy, zero-shot (or adapted): tanh of its mean
            action = torch.tanh(self.action_dist(self.nets["actor"], deter, stoch)[0])
        return action.cpu().numpy().astype(np.float32), (deter, stoch, action)

    # ------------------------------------------------------------------ learning (Alg. 1)
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """C updates after every completed training episode, once the S seed episodes are in the replay."""
        return self.schedule.train(replay, self.train_batch)

    def imagine(self, actor: nn.Module, start_deter: Tensor, start_stoch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """s_0..s_H under `actor` (which sees sg(s)); deter, stoch [H+1, N, .], actions [H, N, A]."""
        def act(deter: Tensor, stoch: Tensor) -> Tensor:
            return tanh_normal_sample(*self.action_dist(actor, deter.detach(), stoch.detach()), self.gen_train)[0]

        return imagine(self.rssm, start_deter, start_stoch, self.config.imag_horizon, act, self.gen_train)

    def ensemble_loss(self, seq: dict[str, Tensor]) -> Tensor:
        """E's loss: member k predicts embed(o_t) from (h_t, a_t-1) on its own bootstrap resample of the batch's
        sequences; squared error averaged over the embedding, summed over members."""
        batch = seq["deter"].shape[0]
        members = self.ensemble.members
        rows = torch.randint(0, batch, (members, batch), generator=self.rng_bootstrap, device=self.device)
        inputs = torch.cat([seq["deter"], seq["prev_action"]], -1).detach()[rows]  # [K, B, L, .]
        targets = seq["embed"].detach()[rows]
        loss, _ = self.ensemble.loss(inputs.flatten(1, 2), targets.flatten(1, 2))
        return loss

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One update of M, E, pi_R and pi_LD on a [B, L] batch; all losses use the parameters before the update."""
        c = self.config
        # ---- world model M (reward head on sg(s) while exploring task-agnostically)
        model_loss, terms, seq = self.world_model.loss(
            data, self.gen_train, free_nats=c.free_nats, kl_scale=c.kl_scale, image_scale=c.image_scale,
            reward_scale=c.reward_scale, reward_grad=self.task_reward,
        )
        # ---- latent disagreement ensemble E
        ensemble_loss = self.ensemble_loss(seq)
        start_deter, start_stoch = seq["deter"].detach().flatten(0, 1), seq["stoch"].detach().flatten(0, 1)
        # ---- task actor-critic pi_R on the predicted task reward (zero-shot: from exploration data only)
        deter, stoch, _ = self.imagine(self.nets["actor"], start_deter, start_stoch)
        task_reward = self.world_model.predict_reward(deter[:-1], stoch[:-1])  # E[q(r_tau | s_tau)], tau < H
        actor_loss, value_loss, task_return = analytic_behaviour_losses(
            self.nets["value"], self.world_model.feat(deter, stoch), task_reward, c.gamma, c.lam
        )
        # ---- exploration actor-critic pi_LD on the disagreement of E about each imagined transition
        deter, stoch, actions = self.imagine(self.nets["explore_actor"], start_deter, start_stoch)
        reward_ld = intrinsic_reward(self.ensemble, deter[1:], actions, c.intrinsic_scale)  # tau -> tau + 1
        explore_actor_loss, explore_value_loss, explore_return = analytic_behaviour_losses(
            self.nets["explore_value"], self.world_model.feat(deter, stoch), reward_ld, c.gamma, c.lam
        )

        losses = {
            **terms, "loss/model": model_loss, "loss/ensemble": ensemble_loss, "loss/actor": actor_loss,
            "loss/value": value_loss, "loss/explore_actor": explore_actor_loss,
            "loss/explore_value": explore_value_loss,
        }
        values = finite_values("plan2explore", losses, self.updates,
                               ["model_lr", "ensemble_lr", "actor_lr", "value_lr"])
        grad_norms = {}
        for name, loss in (
            ("world_model", model_loss), ("ensemble", ensemble_loss), ("actor", actor_loss), ("value", value_loss),
            ("explore_actor", explore_actor_loss), ("explore_value", explore_value_loss),
        ):
            params = list(self.nets[name].parameters())
            self.opts[name].zero_grad(set_to_none=True)
            # each loss trains only its own network: the actors' gradients flow through M (and E, for pi_LD)
            # without changing them
            loss.backward(inputs=params)
            grad_norms[f"grad_norm/{name}"] = float(nn.utils.clip_grad_norm_(params, c.grad_clip))
        for opt in self.opts.values():
            opt.step()
        self.updates += 1
        return {
            **dict(zip(losses, values, strict=True)),
            **grad_norms,
            "imag/return": float(task_return.detach().mean()),
            "imag/reward": float(task_reward.detach().mean()),
            "explore/return": float(explore_return.detach().mean()),
            "explore/intrinsic_reward": float(reward_ld.detach().mean()),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "opts": {name: opt.state_dict() for name, opt in self.opts.items()},
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state(),
                    "bootstrap": self.rng_bootstrap.get_state()},
            "schedule": self.schedule.state_dict(),
            "updates": self.updates,
            "stage": {"name": self.stage, "task_reward": self.task_reward},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("plan2explore", self.nets, self.config, state)
        for name, opt in self.opts.items():
            opt.load_state_dict(state["opts"][name])
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        self.rng_bootstrap.set_state(state["rng"]["bootstrap"])
        self.schedule.load_state_dict(state["schedule"])
        self.updates = int(state["updates"])
        self.stage, self.task_reward = str(state["stage"]["name"]), bool(state["stage"]["task_reward"])


__all__ = ["Plan2Explore", "Plan2ExploreConfig", "build_networks", "intrinsic_reward", "parameter_counts"]
