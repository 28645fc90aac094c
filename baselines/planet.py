"""PlaNet (Hafner et al. 2019, "Learning Latent Dynamics for Planning from Pixels"), on the shared RSSM and CEM.

Algorithm 1 of the paper, as run here (the runner calls `policy` every env step and `update` after it):
1. Seed: the first `seed_episodes` (S = 5) training episodes act uniformly at random.
2. Model fitting: after every completed training episode (from the S-th on), `updates_per_episode` (C = 100)
   gradient steps on batches of `batch_size` x `batch_length` (B = 50 sequences of L = 50 steps) from the replay,
   minimising the negative ELBO of Eq. 3 per time step:
       loss = -log p(o_t | s_t) - log p(r_t | s_t) + max(free_nats, KL[q(s_t | h_t, o_t) || p(s_t | h_t)])
   (unit-variance Gaussian image and reward likelihoods, free nats 3), optionally plus latent overshooting (Eq. 7,
   `overshooting` = D > 0: KL from the open-loop prior d = 1..D steps ahead to the stopped posterior).
   Adam, lr 1e-3, eps 1e-4, gradients clipped to global norm 1000; the released code ramps the learning rate up
   linearly over its first 10,000 sequences (`lr_warmup` = 200 updates of 50; 0 at the first update).
3. Data collection: every step, the belief q(s_t | o_<=t, a_<t) is updated by the RSSM filter and CEM in latent
   space (Alg. 2: `horizon` H = 12, `population` J = 1000, `iterations` I = 10, `elites` K = 100) searches action
   sequences by the sum of predicted rewards along one prior rollout per candidate; the first action of the final
   mean is executed with Gaussian exploration noise (std 0.3) and clipped to [-1, 1] (evaluation: no noise).

Models (App. A; shared blocks from `wmbench.nn`): the Gaussian RSSM (`RSSM(core="gru", norm="none", act="relu")`,
deterministic GRU state 200, stochastic state 30, hidden layers 200, std = softplus + 0.1), the stride-2 ReLU CNN
encoder (1024 features on 64x64) and its transposed-CNN decoder, and a reward MLP (2 x 100 ReLU, the official
`feed_forward`). Images are reduced to 5 bits with uniform dequantisation noise and centred on 0 (official
`preprocess`). Values the paper does not state come from the released code (google-research/planet): the reward
loss scale 10 (`configs.py` `reward_scale`), the reward MLP size and the learning-rate warm-up. Not implemented (see
docs/planet.md): the released code's discount 0.99 inside CEM (the paper sums rewards), Glorot
initialisation (ours: the shared blocks' initialisers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method
from wmbench.nn.planners import CEMPlanner
from wmbench.nn.world_model import (
    EpisodeSchedule,
    GaussianWorldModel,
    finite_values,
    gaussian_latent_key_notes,
    load_networks,
    pixel_control_support,
    preprocess_image,
)
from wmbench.nn.world_model import parameter_counts as network_parameter_counts
from wmbench.seeding import derive_seed


@dataclass(frozen=True)
class PlaNetConfig:
    """The paper's settings (App. A and Alg. 1); presets `cpu` (smaller search and batch) and `tiny` (tests)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},  # the defaults: App. A and Alg. 1 as they are
        # tests only: a second or two per collected episode on 16x16 images
        "tiny": {
            "deter": 16, "stoch": 4, "hidden": 16, "depth": 4, "reward_units": 16,
            "batch_size": 4, "batch_length": 8, "updates_per_episode": 2, "seed_episodes": 1,
            "horizon": 3, "population": 16, "elites": 4, "iterations": 2, "lr_warmup": 0,
        },
        # CPU learning checks: the paper's model, a 10x smaller CEM search and 4x smaller batches
        "cpu": {"batch_size": 16, "population": 100, "elites": 10, "iterations": 5, "updates_per_episode": 50},
    }
    # keys of discrete-latent methods, refused with an explanation instead of "unknown key"
    KEY_NOTES: ClassVar[dict[str, str]] = gaussian_latent_key_notes("PlaNet", "Hafner et al. 2019")
    preset: str = "paper"
    # --- world model (App. A)
    deter: int = bounded(200, low=1)  # GRU state h_t
    stoch: int = bounded(30, low=1)  # Gaussian s_t dims
    hidden: int = bounded(200, low=1)  # RSSM hidden layers
    min_std: float = bounded(0.1, above=0)
    depth: int = bounded(32, low=1)  # CNN channels depth x (1, 2, 4, 8)
    enc_kernels: tuple[int, ...] = ()  # () = by image size (KERNELS); 64x64: 4, 4, 4, 4
    dec_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 5, 5, 6, 6
    reward_units: int = bounded(100, low=1)
    reward_layers: int = bounded(2, low=0)
    image_bits: int = bounded(5, low=1, high=8)
    # --- loss (Eq. 3, Eq. 7)
    free_nats: float = bounded(3.0, low=0)
    kl_scale: float = bounded(1.0, low=0)
    image_scale: float = bounded(1.0, low=0)
    reward_scale: float = bounded(10.0, low=0)  # released configs.py; the paper is silent
    overshooting: int = bounded(0, low=0)  # latent overshooting distance D (0 = off, as the paper's main results)
    overshooting_scale: float = bounded(1.0, low=0)  # beta for the d > 0 KL terms (official divergence scale)
    # --- optimiser
    lr: float = bounded(1e-3, above=0, high=1)
    adam_eps: float = bounded(1e-4, above=0)
    grad_clip: float = bounded(1000.0, above=0)
    # released configs.py: lr x min(step / 10000, 1), its step counting sequences (50 per update): 200 updates
    lr_warmup: int = bounded(200, low=0)  # updates; 0: none
    # --- schedule (Alg. 1)
    batch_size: int = bounded(50, low=1, high=65536)
    batch_length: int = bounded(50, low=2, high=4096)
    updates_per_episode: int = bounded(100, low=0)  # C
    seed_episodes: int = bounded(5, low=0)  # S
    explore_noise: float = bounded(0.3, low=0)
    # --- planner (Alg. 2)
    horizon: int = bounded(12, low=1, high=1000)
    population: int = bounded(1000, low=1)
    elites: int = bounded(100, low=1)
    iterations: int = bounded(10, low=1)
    init_std: float = bounded(1.0, above=0)


def build_networks(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: PlaNetConfig) -> GaussianWorldModel:
    """Encoder, RSSM, image decoder and reward model for these spaces (the shared `GaussianWorldModel`)."""
    try:
        return GaussianWorldModel(
            obs_space["image"].shape, int(act_space.shape[0]), deter=c.deter, stoch=c.stoch, hidden=c.hidden,
            min_std=c.min_std, depth=c.depth, enc_kernels=c.enc_kernels, dec_kernels=c.dec_kernels,
            reward_units=c.reward_units, reward_layers=c.reward_layers, act="relu", image_bits=c.image_bits,
        )
    except ValueError as e:
        raise ConfigError(f"planet: {e}") from e


def parameter_counts(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: PlaNetConfig) -> dict[str, int]:
    """Trained parameters per network (built on the meta device)."""
    with torch.device("meta"):
        return network_parameter_counts(build_networks(obs_space, act_space, config))


class PlaNet(Method):
    name = "planet"
    Config = PlaNetConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("PlaNet", obs_space, act_space)

    def __init__(self, obs_space, act_space, config: PlaNetConfig | None = None, device: str = "cpu", seed: int = 0):
        config = config if config is not None else PlaNetConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        for key in ("horizon", "population", "elites", "iterations", "batch_size", "batch_length"):
            value = getattr(c, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"planet: {key} must be a positive integer, got {value!r} (e.g. --set {key}=12)")
        if c.elites > c.population:
            raise ConfigError(f"planet: elites ({c.elites}) must be <= population ({c.population}); lower elites")
        if c.overshooting >= c.batch_length:
            raise ConfigError(
                f"planet: overshooting distance {c.overshooting} must be < batch_length {c.batch_length}"
            )
        self.device = torch.device(device)
        self.act_dim = int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "planet/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        self.encoder, self.rssm = self.nets.encoder, self.nets.rssm
        self.decoder, self.reward_head = self.nets.decoder, self.nets.reward
        self.optimizer = torch.optim.Adam(self.nets.parameters(), lr=c.lr, eps=c.adam_eps)
        # PlaNet's CEM: mean 0 / std 1 at every step (no warm start), clipped samples, plain refit to the top K
        self.planner = CEMPlanner(
            c.population, c.elites, c.iterations, alpha=0.0, sampling="clip", init_std=c.init_std, warm_start=False,
            seed=derive_seed(seed, "planet/plan"), device=self.device,
        )
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "planet/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "planet/act"))
        self.schedule = EpisodeSchedule(c.seed_episodes, c.updates_per_episode, c.batch_size, c.batch_length)
        self.updates = 0

    # ------------------------------------------------------------------ acting (Alg. 1, data collection)
    def _plan_return(self, state: tuple[Tensor, Tensor], actions: Tensor) -> Tensor:
        """Sum of predicted rewards along one prior rollout per candidate sequence [J, H, A] (Alg. 2)."""
        deter, stoch = (x.expand(actions.shape[0], -1) for x in state)
        total = torch.zeros(actions.shape[0], device=actions.device)
        for t in range(actions.shape[1]):
            deter, stoch, _ = self.rssm.img_step(deter, stoch, actions[:, t], self.gen_act)
            total = total + self.reward_head(torch.cat([deter, stoch], -1)).squeeze(-1)
        return total

    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        c = self.config
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1).bool()
        n = is_first.shape[0]
        if self.schedule.observe(obs, mode):  # S seed episodes of random actions
            action = torch.rand(n, self.act_dim, generator=self.gen_act, device=self.device) * 2 - 1
            return action.cpu().numpy().astype(np.float32), None
        deter, stoch = self.nets.filter(obs["image"], state, is_first, self.gen_act)
        actions = []
        for i in range(n):
            plan = self.planner.plan((deter[i:i + 1], stoch[i:i + 1]), self._plan_return, c.horizon, self.act_space)
            actions.append(plan[0])
        action = torch.stack(actions)
        if mode == "train" and c.explore_noise > 0:
            noise = torch.randn(action.shape, generator=self.gen_act, device=self.device)
            action = action + c.explore_noise * noise
        action = action.clamp(-1, 1)
        return action.cpu().numpy().astype(np.float32), (deter, stoch, action)

    # ------------------------------------------------------------------ model fitting (Alg. 1, Eq. 3)
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """C gradient steps after every completed training episode, once the S seed episodes are in the replay."""
        return self.schedule.train(replay, self.train_batch)

    def _latent_overshooting(self, seq: dict[str, Tensor], prev_action: Tensor, is_first: Tensor) -> Tensor:
        """Eq. 7: from every posterior state s_t, roll the prior open loop d = 1..D steps with the replayed actions
        and pull p(s_{t+d} | s_t, a_t:t+d-1) towards the stopped posterior q(s_{t+d}), with free nats; the mean over
        all (t, d) pairs that stay inside one episode (the official overshooting loss, posterior gradient stopped)."""
        c = self.config
        deter, stoch, post = seq["deter"], seq["stoch"], seq["post"].detach()
        inside = torch.ones(is_first.shape, device=is_first.device)
        total, count = deter.new_zeros(()), deter.new_zeros(())
        for d in range(1, c.overshooting + 1):
            deter, stoch, prior = self.rssm.img_step(deter[:, :-1], stoch[:, :-1], prev_action[:, d:], self.gen_train)
            inside = inside[:, :-1] * (~is_first[:, d:]).float()  # an episode start at t + d ends the chain
            kl = self.rssm.kl(post[:, d:], prior).clamp(min=c.free_nats)
            total = total + (kl * inside).sum()
            count = count + inside.sum()
        return total / count.clamp(min=1.0)

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient step of the world model on a [B, L] batch of replayed steps."""
        c = self.config
        loss, terms, seq = self.nets.loss(
            data, self.gen_train, free_nats=c.free_nats, kl_scale=c.kl_scale, image_scale=c.image_scale,
            reward_scale=c.reward_scale,
        )
        if c.overshooting:
            overshoot = self._latent_overshooting(seq, seq["prev_action"], seq["is_first"])
            loss = loss + c.overshooting_scale * overshoot
            terms["loss/overshooting"] = overshoot
        terms["loss/model"] = loss
        values = finite_values("planet", terms, self.updates, ["lr"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.nets.parameters(), c.grad_clip)
        lr = c.lr * min(self.updates / c.lr_warmup, 1.0) if c.lr_warmup else c.lr  # linear warm-up (released code)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.updates += 1
        return {**dict(zip(terms, values, strict=True)), "grad_norm": float(grad_norm), "lr": lr}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "planner": self.planner.state_dict(),
            "gen_train": self.gen_train.get_state(),
            "gen_act": self.gen_act.get_state(),
            **self.schedule.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("planet", self.nets, self.config, state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.planner.load_state_dict(state["planner"])
        self.gen_train.set_state(state["gen_train"])
        self.gen_act.set_state(state["gen_act"])
        self.schedule.load_state_dict(state)
        self.updates = int(state["updates"])


__all__ = ["PlaNet", "PlaNetConfig", "build_networks", "parameter_counts", "preprocess_image"]
