"""Dreamer v1 (Hafner et al. 2020, "Dream to Control: Learning Behaviors by Latent Imagination").

Algorithm 1 of the paper, as run here (the runner calls `policy` every env step and `update` after it):
1. Seed: the first `seed_episodes` (S = 5) training episodes act uniformly at random.
2. After every completed training episode (from the S-th on), `updates_per_episode` (C = 100) update steps, each on
   a batch of `batch_size` x `batch_length` (B = 50 sequences of L = 50 steps) from the replay:
   - Dynamics learning: PlaNet's world model and loss (the shared `wmbench.nn.world_model.GaussianWorldModel`;
     Eq. 10: image and reward reconstruction + KL clipped below 3 free nats, beta = 1).
   - Behaviour learning: from every posterior state s_t of the batch, imagine {(s_tau, a_tau)} for tau = t..t+H
     (`imag_horizon` H = 15) with the action model a_tau ~ q(a | s_tau) (tanh-Normal, reparameterised); predict
     rewards E[q(r_tau | s_tau)] and values v(s_tau); compute V_lambda(s_tau) (Eq. 6, lambda 0.95, gamma 0.99);
     update the actor by the analytic gradient of sum_tau V_lambda(s_tau) through the learned dynamics (Eq. 7),
     and the value model to regress sg(V_lambda(s_tau)) (Eq. 8).
3. Environment interaction: the RSSM filter updates the belief every step; the actor's sample plus Gaussian
   exploration noise (std 0.3, clipped to [-1, 1]) is executed (evaluation: tanh of the actor's mean, no noise).

Optimisers (Sec. 6, "Implementation"): Adam with learning rates 6e-4 (world model), 8e-5 (actor), 8e-5 (value),
gradient norms clipped at 100; Adam eps 1e-7 (the released code, danijar/dreamer, uses `tf.optimizers.Adam` with
its default epsilon). Network sizes the paper leaves open come from the released `dreamer.py` `define_config`:
dense layers of 400 ELU units (reward 2, value 3, actor 4 layers), ELU in the RSSM, actor std
softplus(x + softplus^-1(5)) + 1e-4 and mean 5 tanh(x / 5), images as pixel / 255 - 0.5, reward loss unscaled.
Free nats clip each step's KL, as the paper says ("as in PlaNet"); the released code clips the batch-mean KL, which
`free_nats_mean` (set by the recipe) does. Differences from the released code (docs/dreamerv1.md): the sums over tau follow Algorithm 1 (tau = t..t+H-1, no gamma^tau weighting, the start state
included); evaluation acts with tanh(mean) instead of the most likely of 100 samples.
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
from wmbench.nn.networks import MLP
from wmbench.nn.returns import lambda_return
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
class DreamerV1Config:
    """The paper's settings (Sec. 6 and Alg. 1) and the released code's sizes; presets `cpu` and `tiny` (tests)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # tests only: a second or two per collected episode on 16x16 images
        "tiny": {
            "deter": 16, "stoch": 4, "hidden": 16, "depth": 4, "units": 16, "reward_units": 16,
            "batch_size": 4, "batch_length": 8, "updates_per_episode": 2, "seed_episodes": 1, "imag_horizon": 3,
        },
        # CPU learning checks: the paper's networks, 4x smaller batches and half the updates per episode
        "cpu": {"batch_size": 16, "updates_per_episode": 50},
    }
    KEY_NOTES: ClassVar[dict[str, str]] = gaussian_latent_key_notes("Dreamer v1", "Hafner et al. 2020")
    preset: str = "paper"
    # --- world model (PlaNet's RSSM, Dreamer App. A; dense sizes of the released dreamer.py)
    deter: int = bounded(200, low=1)
    stoch: int = bounded(30, low=1)
    hidden: int = bounded(200, low=1)
    min_std: float = bounded(0.1, above=0)
    depth: int = bounded(32, low=1)
    enc_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 4, 4, 4, 4
    dec_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 5, 5, 6, 6
    reward_units: int = bounded(400, low=1)
    reward_layers: int = bounded(2, low=0)
    # --- world-model loss (Eq. 10): beta = 1, free nats 3 as in PlaNet; rewards unscaled (released code)
    free_nats: float = bounded(3.0, low=0)
    # False: each step's KL clipped, as the paper's "as in PlaNet"; the released code (and recipe @2): the batch mean
    free_nats_mean: bool = False
    kl_scale: float = bounded(1.0, low=0)
    image_scale: float = bounded(1.0, low=0)
    reward_scale: float = bounded(1.0, low=0)
    # --- action and value models (released code: 4 and 3 dense layers of 400 ELU units)
    units: int = bounded(400, low=1)
    actor_layers: int = bounded(4, low=0)
    value_layers: int = bounded(3, low=0)
    actor_init_std: float = bounded(5.0, above=0)
    actor_min_std: float = bounded(1e-4, above=0)
    actor_mean_scale: float = bounded(5.0, above=0)
    # --- behaviour learning (Sec. 6)
    imag_horizon: int = bounded(15, low=1, high=1000)
    gamma: float = bounded(0.99, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    # --- optimisers (Sec. 6; eps: the released code's tf.optimizers.Adam default)
    model_lr: float = bounded(6e-4, low=0, high=1)
    actor_lr: float = bounded(8e-5, low=0, high=1)
    value_lr: float = bounded(8e-5, low=0, high=1)
    adam_eps: float = bounded(1e-7, above=0)
    grad_clip: float = bounded(100.0, above=0)
    # --- schedule (Alg. 1: S seed episodes, C updates per collected episode, B x L batches)
    batch_size: int = bounded(50, low=1, high=65536)
    batch_length: int = bounded(50, low=2, high=4096)
    updates_per_episode: int = bounded(100, low=0)
    seed_episodes: int = bounded(5, low=0)
    explore_noise: float = bounded(0.3, low=0)


def build_networks(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: DreamerV1Config) -> nn.ModuleDict:
    """PlaNet's world model (ELU dense layers, as the released Dreamer code), the action model and the value model."""
    act_dim = int(act_space.shape[0])
    try:
        world_model = GaussianWorldModel(
            obs_space["image"].shape, act_dim, deter=c.deter, stoch=c.stoch, hidden=c.hidden, min_std=c.min_std,
            depth=c.depth, enc_kernels=c.enc_kernels, dec_kernels=c.dec_kernels, reward_units=c.reward_units,
            reward_layers=c.reward_layers, act="elu", image_bits=8, dequantise=False,
        )
    except ValueError as e:
        raise ConfigError(f"dreamerv1: {e}") from e
    feat = world_model.rssm.feat_dim
    dense = {"norm": "none", "act": "elu", "fan": "avg"}
    return nn.ModuleDict({
        "world_model": world_model,
        "actor": MLP(feat, c.units, c.actor_layers, out_dim=2 * act_dim, **dense),
        "value": MLP(feat, c.units, c.value_layers, out_dim=1, **dense),
    })


def parameter_counts(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: DreamerV1Config) -> dict[str, int]:
    """Trained parameters per network (world-model parts, actor, value; built on the meta device)."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = network_parameter_counts(nets["world_model"])
    del counts["total"]
    counts["actor"] = sum(p.numel() for p in nets["actor"].parameters())
    counts["value"] = sum(p.numel() for p in nets["value"].parameters())
    counts["total"] = sum(counts.values())
    return counts


def dreamer_lambda_return(reward: Tensor, value: Tensor, gamma: float, lam: float) -> Tensor:
    """V_lambda(s_tau) of Eq. 6 for tau = 0..H-1, time-major: reward[tau] = E[q(r_tau | s_tau)] for tau < H, value
    [H+1, ...] = v(s_0..s_H). Eq. 6's exponentially weighted mix of the k-step estimates V_N^k (Eq. 5, truncated at
    s_H) obeys V_lambda(s_tau) = r_tau + gamma ((1 - lambda) v(s_tau+1) + lambda V_lambda(s_tau+1)), V_lambda(s_H)
    = v(s_H): the shared TD(lambda) recursion with no terminal states."""
    return lambda_return(reward, torch.ones_like(reward), value, gamma, lam)


class DreamerV1(Method):
    name = "dreamerv1"
    Config = DreamerV1Config

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("Dreamer v1", obs_space, act_space)

    def __init__(self, obs_space, act_space, config: DreamerV1Config | None = None, device: str = "cpu", seed: int = 0):
        config = config if config is not None else DreamerV1Config()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        for key in ("imag_horizon", "batch_size", "batch_length"):
            value = getattr(c, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dreamerv1: {key} must be a positive integer, got {value!r} (e.g. --set {key}=15)")
        self.device = torch.device(device)
        self.act_dim = int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "dreamerv1/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        self.world_model, self.actor, self.value = self.nets["world_model"], self.nets["actor"], self.nets["value"]
        self.rssm = self.world_model.rssm
        self.model_opt = torch.optim.Adam(self.world_model.parameters(), lr=c.model_lr, eps=c.adam_eps)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr, eps=c.adam_eps)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=c.value_lr, eps=c.adam_eps)
        self.raw_init_std = math.log(math.expm1(c.actor_init_std))  # softplus^-1: std starts at actor_init_std
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerv1/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerv1/act"))
        self.schedule = EpisodeSchedule(c.seed_episodes, c.updates_per_episode, c.batch_size, c.batch_length)
        self.updates = 0

    # ------------------------------------------------------------------ action model q(a | s)
    def action_dist(self, deter: Tensor, stoch: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of the pre-tanh Normal: mean 5 tanh(x / 5), std softplus(x + softplus^-1(5)) + 1e-4 (the
        released code's `tanh_normal` head)."""
        c = self.config
        raw = self.actor(self.world_model.feat(deter, stoch))
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
        mean, std = self.action_dist(deter, stoch)
        if mode == "train":
            action, _ = tanh_normal_sample(mean, std, self.gen_act)
            noise = torch.randn(action.shape, generator=self.gen_act, device=self.device)
            action = (action + c.explore_noise * noise).clamp(-1, 1)  # additive Gaussian exploration
        else:
            action = torch.tanh(mean)
        return action.cpu().numpy().astype(np.float32), (deter, stoch, action)

    # ------------------------------------------------------------------ learning (Alg. 1)
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """C update steps after every completed training episode, once the S seed episodes are in the replay."""
        return self.schedule.train(replay, self.train_batch)

    def imagine(self, start_deter: Tensor, start_stoch: Tensor) -> tuple[Tensor, Tensor]:
        """s_t..s_t+H from each start state under the action model: deter, stoch [H+1, N, .], differentiable w.r.t.
        the actor through the dynamics (reparameterised latents and actions); the actor sees sg(s_tau)."""
        def act(deter: Tensor, stoch: Tensor) -> Tensor:
            return tanh_normal_sample(*self.action_dist(deter.detach(), stoch.detach()), self.gen_train)[0]

        deter, stoch, _ = imagine(self.rssm, start_deter, start_stoch, self.config.imag_horizon, act, self.gen_train)
        return deter, stoch

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One update of world model, actor and value model on a [B, L] batch of replayed steps; all three losses
        use the parameters before the update (as the released code's three gradient tapes)."""
        c = self.config
        # ---- dynamics learning (Eq. 10, PlaNet's loss)
        model_loss, terms, seq = self.world_model.loss(
            data, self.gen_train, free_nats=c.free_nats, free_nats_mean=c.free_nats_mean, kl_scale=c.kl_scale,
            image_scale=c.image_scale, reward_scale=c.reward_scale,
        )

        # ---- behaviour learning: imagine H steps from every posterior state (Sec. 3-4)
        deter, stoch = self.imagine(seq["deter"].detach().flatten(0, 1), seq["stoch"].detach().flatten(0, 1))
        imag_reward = self.world_model.predict_reward(deter[:-1], stoch[:-1])  # E[q(r_tau | s_tau)], tau < H
        # Eq. 6-8: V_lambda(s_tau) from v(s_tau), tau <= H; the actor maximises sum_tau V_lambda(s_tau) by analytic
        # gradients, the value model regresses sg(V_lambda)
        actor_loss, value_loss, lambda_ret = analytic_behaviour_losses(
            self.value, self.world_model.feat(deter, stoch), imag_reward, c.gamma, c.lam
        )

        losses = {**terms, "loss/model": model_loss, "loss/actor": actor_loss, "loss/value": value_loss}
        values = finite_values("dreamerv1", losses, self.updates, ["model_lr", "actor_lr", "value_lr"])
        grad_norms = {}
        for name, loss, net, opt in (
            ("model", model_loss, self.world_model, self.model_opt),
            ("actor", actor_loss, self.actor, self.actor_opt),
            ("value", value_loss, self.value, self.value_opt),
        ):
            params = list(net.parameters())
            opt.zero_grad(set_to_none=True)
            # each loss reaches only its own network: the actor's gradient flows through the (unchanged) dynamics,
            # reward and value models without training them; the three graphs share no intermediate results
            loss.backward(inputs=params)
            grad_norms[f"grad_norm/{name}"] = float(nn.utils.clip_grad_norm_(params, c.grad_clip))
        for opt in (self.model_opt, self.actor_opt, self.value_opt):
            opt.step()
        self.updates += 1
        return {
            **dict(zip(losses, values, strict=True)),
            **grad_norms,
            "imag/return": float(lambda_ret.detach().mean()),
            "imag/reward": float(imag_reward.detach().mean()),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "value_opt": self.value_opt.state_dict(),
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state()},
            "schedule": self.schedule.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("dreamerv1", self.nets, self.config, state)
        for name in ("model_opt", "actor_opt", "value_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        self.schedule.load_state_dict(state["schedule"])
        self.updates = int(state["updates"])


__all__ = ["DreamerV1", "DreamerV1Config", "build_networks", "dreamer_lambda_return", "parameter_counts"]
