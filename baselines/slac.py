"""SLAC (Lee et al. 2020, "Stochastic Latent Actor-Critic: Deep Reinforcement Learning with a Latent Variable
Model", NeurIPS; arXiv 1907.00953).

Algorithm 1 of the paper, as run here (the runner calls `policy` every env step and `update` after it):
1. Collect `initial_collect_steps` agent steps with the uniform random policy, then pre-train the latent model for
   `initial_model_train_steps` updates on that data (the released code: 10,000 steps, 100,000 updates), all in one
   `update` call as the released code (no env step in between). With `pretrain_updates_per_step` N > 0 it runs N
   updates per call instead, so the runner's checkpoints (at episode ends) save it part-way and a crash resumes at
   the update of the last checkpoint; the agent steps taken meanwhile act uniformly at random and are not added to
   the pre-training data.
2. Every `train_every` agent steps (1 in the released code) afterwards:
   - Model update: maximise the ELBO of `model_batch_size` sequences of tau + 1 steps (32 x 9):
         sum_t E_q[log p(x_t | z_t)] + E_q[log p(r_t | z_t, a_t, z_t+1)] - KL(q(z^1_t | x_t, z^2_t-1, a_t-1) ||
         p(z^1_t | z^2_t-1, a_t-1)),
     where z_t = (z^1_t, z^2_t) is the two-level latent of the paper's Fig. 2: z^1 (32 dims) is inferred from the
     image, z^2 (256 dims) follows from z^1 through the same conditional in the prior and the posterior, so only
     z^1 carries a KL term; first steps of episodes use p(z^1_1) = N(0, I) and q(z^1_1 | x_1).
   - Actor-critic update (SAC) on `batch_size` sequences (256 x 9): latent samples z_tau, z_tau+1 ~
     q(. | x_1:tau+1, a_1:tau) from the model (no gradient into it) feed the twin critics Q(z_tau, a_tau) with
     target r_tau+1 + gamma (min_i Qbar_i(z_tau+1, a') - alpha log pi(a' | x_2:tau+1, a_2:tau)); the actor pi(a |
     x_1:tau, a_1:tau-1) sees the model encoder's features of the last tau observations and the tau - 1 actions
     between them (not the latent: it must act from observations alone) and minimises E[alpha log pi -
     min_i Q_i(z_tau, a)]; alpha (from 1: log alpha 0) follows the automatic temperature with target entropy
     -|A|, as the released slac_agent.py's defaults; the target critics move by Polyak averaging (0.005).
   A window whose last transition crosses an episode end has its critic term masked, or is drawn again
   (`resample_boundary_windows`, the released code).
3. Acting: the actor on the history of the last tau encoder features and actions (before an episode's first
   step: zero actions, and zero features or, with `history_padding` "first" as the released code, the first
   observation's features); evaluation acts with tanh of the mean.

Networks (the released code alexlee-gk/slac, model_distribution_network.py, slac.gin and train_eval.py, where
the paper is not specific): image encoder of 5 convolutions (32 5x5/2, 64 3x3/2, 128 3x3/2, 256 3x3/2, 256 4x4 valid; leaky
ReLU) to 256 features, its transposed mirror as the decoder with a fixed std sqrt(0.1); every conditional a
diagonal Gaussian from an MLP of 2 x 256 leaky-ReLU units with std = softplus + 1e-5; the reward a Gaussian of
(z_t, a_t, z_t+1) with learned std; actor and critics 2 x 256 ReLU layers. Adam: 1e-4 (model), 3e-4 (actor,
critic, alpha); gamma 0.99; critic loss 0.5 x squared TD error. Differences from the released code: docs/slac.md.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method, MethodError
from wmbench.nn.distributions import normal_kl, normal_log_prob, normal_sample
from wmbench.nn.networks import MLP, StridedConvDecoder, StridedConvEncoder
from wmbench.nn.returns import ema_update
from wmbench.nn.sac import TanhGaussianActor, TwinQ, target_entropy, temperature_loss
from wmbench.nn.world_model import finite_values, load_networks, pixel_control_support
from wmbench.seeding import derive_seed

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
HISTORY_PADDINGS = ("zeros", "first")
RESAMPLE_TRIES = 100  # draws for windows that cross an episode end; any left after these keep their critic mask
PRETRAIN_PROGRESS_SECONDS = 30.0  # at most one pre-training progress line per this many seconds (stderr)


@dataclass(frozen=True)
class SLACConfig:
    """The released code's settings (slac.gin, train_eval.py); presets `cpu` and `tiny` (tests)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # tests only: tiny networks and batches on 16x16 images
        "tiny": {
            "latent1": 4, "latent2": 8, "depth": 4, "model_units": 16, "units": 16, "batch_size": 4,
            "model_batch_size": 4, "sequence_length": 3, "initial_collect_steps": 40, "initial_model_train_steps": 5,
        },
        # CPU learning checks: the paper's networks, 8x smaller actor-critic batches, a shorter random phase and
        # model pre-training (2 updates per agent step: over 1,000 agent steps, 2 dmc_vision@1 episodes, so a
        # checkpoint falls inside it), one update every 2 agent steps
        "cpu": {"batch_size": 32, "initial_collect_steps": 2000, "initial_model_train_steps": 2000,
                "pretrain_updates_per_step": 2, "train_every": 2},
    }
    preset: str = "paper"
    # --- sequential latent variable model (Fig. 2; released code ModelDistributionNetwork)
    latent1: int = bounded(32, low=1)  # z^1, inferred from images
    latent2: int = bounded(256, low=1)  # z^2, deterministic-free recurrence through its conditional
    depth: int = bounded(32, low=1)  # conv channels depth x (1, 2, 4, 8, 8); features 8 x depth
    model_units: int = bounded(256, low=1)  # every latent/reward conditional: 2 hidden layers
    decoder_std: float = bounded(math.sqrt(0.1), above=0)
    # --- SAC (Haarnoja et al. 2018; released code: 2 x 256 hidden layers)
    units: int = bounded(256, low=1)
    actor_layers: int = bounded(2, low=0)
    critic_layers: int = bounded(2, low=0)
    gamma: float = bounded(0.99, low=0, high=1)
    tau: float = bounded(0.005, above=0, high=1)  # Polyak averaging of the target critics
    target_entropy_per_dim: float = -1.0  # H_target = -|A|; must be negative (checked in __post_init__)
    init_alpha: float = bounded(1.0, above=0)
    # --- optimisers (released code train_eval.py)
    model_lr: float = bounded(1e-4, low=0, high=1)
    actor_lr: float = bounded(3e-4, low=0, high=1)
    critic_lr: float = bounded(3e-4, low=0, high=1)
    alpha_lr: float = bounded(3e-4, low=0, high=1)
    # --- schedule (Alg. 1; released code slac.gin / train_eval.py)
    batch_size: int = bounded(256, low=1, high=65536)  # actor-critic sequences
    model_batch_size: int = bounded(32, low=1, high=65536)
    sequence_length: int = bounded(8, low=1, high=1024)  # tau: sequences of tau + 1 steps
    initial_collect_steps: int = bounded(10000, low=0)
    initial_model_train_steps: int = bounded(100000, low=0)
    # 0: the whole pre-training in one `update` call, as the released code (no env step in between; a crash redoes
    # it). N > 0: N updates per call (agent step), so checkpoints fall inside it and a resumed run goes on from the
    # last; the agent acts at random meanwhile (e.g. 100: the released 100,000 updates over 1,000 agent steps, 1-4 DMC
    # episodes), which shifts the actor-critic's start by as many agent steps: a departure from the recipes, which a
    # reproduction verdict names
    pretrain_updates_per_step: int = bounded(0, low=0)
    train_every: int = bounded(1, low=1)
    # --- episode starts inside the tau + 1 windows (docs/slac.md, "Episode boundaries"); the released code:
    # slac_agent.py filter_before_first_step repeats the first observation of the window's last episode over the
    # steps before it (their actions zeroed), train_eval.py drops every window whose last transition crosses an
    # episode end (`~is_boundary()[-2]`); recipe slac_2020_dmc_vision@3 sets both
    history_padding: str = "zeros"  # the actor's history before an episode's first step: "zeros" or "first"
    resample_boundary_windows: bool = False  # False: such a window stays, its critic term masked

    def __post_init__(self) -> None:
        try:
            target_entropy(1, self.target_entropy_per_dim)
        except ValueError as e:
            raise ConfigError(f"slac: {e}") from e
        if self.history_padding not in HISTORY_PADDINGS:
            raise ConfigError(
                f"slac: history_padding {self.history_padding!r} must be one of {HISTORY_PADDINGS} ('zeros': zero "
                "features before an episode's first step; 'first': its first observation's features repeated, as "
                "the released code)"
            )


def conv_stack(size: int, depth: int) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Encoder and decoder layer specs (kernels, strides, paddings, channels) for square `size` images: the paper's
    64x64 stack, with one stride-2 stage fewer per halving of the size (16x16: 5x5/2, 3x3/2, 4x4 valid)."""
    stages = int(round(math.log2(size / 4))) if size >= 8 else 0
    if size < 8 or 4 * 2**stages != size:
        raise ConfigError(f"slac: image size {size}x{size} is not supported; use square images of 4 x 2^k pixels "
                          "(16, 32, 64: dmc_vision@1 renders 64x64)")
    kernels = (5, *([3] * (stages - 1)))
    enc = {"kernels": (*kernels, 4), "strides": (*([2] * stages), 1), "paddings": (*(k // 2 for k in kernels), 0),
           "channels": (*(depth * 2**i for i in range(stages)), 8 * depth)}
    dec = {"kernels": (4, *kernels[::-1]), "strides": (1, *([2] * stages)), "paddings": (0, *(k // 2 for k in kernels[::-1])),
           "channels": (8 * depth, *(depth * 2 ** (stages - 2 - i) for i in range(stages - 1)))}
    return enc, dec


class GaussianHead(nn.Module):
    """A diagonal Gaussian conditional: MLP (2 x units, leaky ReLU) on the concatenated inputs -> mean,
    softplus + 1e-5 std (the released code's MultivariateNormalDiag)."""

    def __init__(self, in_dim: int, out_dim: int, units: int):
        super().__init__()
        self.net = MLP(in_dim, units, 2, out_dim=2 * out_dim, norm="none", act="leaky_relu", fan="avg")

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw_std = self.net(torch.cat(inputs, -1)).chunk(2, -1)
        return mean, F.softplus(raw_std) + 1e-5


class SequentialLatentModel(nn.Module):
    """The graphical model of the paper's Fig. 2 with its image encoder, image decoder and reward model."""

    def __init__(self, image_shape: tuple[int, ...], action_dim: int, c: SLACConfig):
        super().__init__()
        h, w, _ = image_shape
        if h != w:
            raise ConfigError(f"slac: images must be square, got {h}x{w}")
        enc, dec = conv_stack(h, c.depth)
        self.latent1, self.latent2, self.decoder_std = c.latent1, c.latent2, c.decoder_std
        # registration order = parameter order (optimiser state, checkpoints)
        self.encoder = StridedConvEncoder(image_shape, act="leaky_relu", **enc)
        feat, latent, a, u = self.encoder.out_dim, c.latent1 + c.latent2, action_dim, c.model_units
        self.z1_first_post = GaussianHead(feat, c.latent1, u)  # q(z^1_1 | x_1)
        self.z2_first = GaussianHead(c.latent1, c.latent2, u)  # p(z^2_1 | z^1_1) = q(z^2_1 | z^1_1)
        self.z1_prior = GaussianHead(c.latent2 + a, c.latent1, u)  # p(z^1_t+1 | z^2_t, a_t)
        self.z1_post = GaussianHead(feat + c.latent2 + a, c.latent1, u)  # q(z^1_t+1 | x_t+1, z^2_t, a_t)
        self.z2 = GaussianHead(c.latent1 + c.latent2 + a, c.latent2, u)  # p(z^2_t+1 | z^1_t+1, z^2_t, a_t) = q(...)
        self.decoder = StridedConvDecoder(latent, image_shape, act="leaky_relu", linear_in=False, **dec)
        self.reward = GaussianHead(2 * latent + a, 1, u)  # p(r_t+1 | z_t, a_t, z_t+1)

    def encode(self, pixels: Any) -> Tensor:
        """uint8 HWC pixels (array or tensor) -> 8 x depth features, the input of q and of the actor."""
        device = self.reward.net.out.weight.device
        return self.encoder(torch.as_tensor(np.ascontiguousarray(pixels), device=device))

    def posterior(self, feat: Tensor, action: Tensor, is_first: Tensor, generator: torch.Generator | None
                  ) -> dict[str, Tensor]:
        """Filter a [B, T] window: samples z1, z2 [B, T, .] of q(z_t | x_1:t, a_1:t-1) and, for z^1, the posterior
        and prior statistics (mean, std) [B, T, latent1]. action[:, t] is chosen at step t (fed to step t+1); a
        window's first step and every `is_first` step restart from q(z^1_1 | x_1), p(z^1_1) = N(0, I)."""
        b, t = feat.shape[:2]
        z1s, z2s, post_mean, post_std, prior_mean, prior_std = [], [], [], [], [], []
        z2 = None
        for i in range(t):
            first = is_first[:, i : i + 1] if i else torch.ones(b, 1, dtype=torch.bool, device=feat.device)
            q1_first = self.z1_first_post(feat[:, i])
            if z2 is None:
                q1, p1 = q1_first, (torch.zeros_like(q1_first[0]), torch.ones_like(q1_first[1]))
            else:
                q1_next = self.z1_post(feat[:, i], z2, action[:, i - 1])
                p1_next = self.z1_prior(z2, action[:, i - 1])
                q1 = tuple(torch.where(first, f, n) for f, n in zip(q1_first, q1_next, strict=True))
                p1 = tuple(torch.where(first, f, n) for f, n in
                           zip((torch.zeros_like(p1_next[0]), torch.ones_like(p1_next[1])), p1_next, strict=True))
            z1 = normal_sample(*q1, generator)
            q2_first = self.z2_first(z1)
            q2 = q2_first if z2 is None else tuple(
                torch.where(first, f, n) for f, n in zip(q2_first, self.z2(z1, z2, action[:, i - 1]), strict=True))
            z2 = normal_sample(*q2, generator)
            z1s.append(z1)
            z2s.append(z2)
            post_mean.append(q1[0])
            post_std.append(q1[1])
            prior_mean.append(p1[0])
            prior_std.append(p1[1])
        stack = lambda xs: torch.stack(xs, 1)  # noqa: E731
        return {"z1": stack(z1s), "z2": stack(z2s), "post": (stack(post_mean), stack(post_std)),
                "prior": (stack(prior_mean), stack(prior_std))}

    def loss(self, data: dict[str, np.ndarray], generator: torch.Generator | None
             ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Negative ELBO of a [B, T] batch, summed over time and averaged over the batch: (loss, terms,
        posterior). Rewards: r_t+1 (stored with step t+1) given (z_t, a_t, z_t+1), only where t+1 is no episode
        start."""
        feat = self.encode(data["image"])
        device, shape = feat.device, feat.shape[:2]
        action = torch.as_tensor(data["action"], device=device).float().reshape(*shape, -1)
        reward = torch.as_tensor(data["reward"], device=device).float().reshape(shape)
        is_first = torch.as_tensor(data["is_first"], device=device).bool().reshape(shape)
        post = self.posterior(feat, action, is_first, generator)
        kl = normal_kl(*post["post"], *post["prior"])  # [B, T]; z^2 has none: its q is its p
        z = torch.cat([post["z1"], post["z2"]], -1)
        image = torch.as_tensor(np.ascontiguousarray(data["image"]), device=device).float() / 255.0 - 0.5
        std = self.decoder_std
        image_ll = (-0.5 * ((image - self.decoder(z)) / std).square() - math.log(std) - _HALF_LOG_2PI).sum((-3, -2, -1))
        r_mean, r_std = self.reward(z[:, :-1], action[:, :-1], z[:, 1:])
        valid = (~is_first[:, 1:]).float()
        reward_ll = normal_log_prob(reward[:, 1:, None], r_mean, r_std) * valid
        elbo = image_ll.sum(1) + reward_ll.sum(1) - kl.sum(1)
        terms = {"model/image_ll": image_ll.mean(), "model/reward_ll": reward_ll.sum() / valid.sum().clamp(min=1),
                 "model/kl_z1": kl.mean()}
        return -elbo.mean(), terms, post

    def kl(self, data: dict[str, np.ndarray], generator: torch.Generator | None = None) -> Tensor:
        """Per-step KL(q(z^1_t | .) || p(z^1_t | .)) [B, T] of a batch (the ELBO's only KL term)."""
        feat = self.encode(data["image"])
        shape = feat.shape[:2]
        action = torch.as_tensor(data["action"], device=feat.device).float().reshape(*shape, -1)
        is_first = torch.as_tensor(data["is_first"], device=feat.device).bool().reshape(shape)
        post = self.posterior(feat, action, is_first, generator)
        return normal_kl(*post["post"], *post["prior"])


def history(feat: Tensor, action: Tensor, is_first: Tensor, padding: str = "zeros") -> Tensor:
    """The actor's input at the last step of a [B, tau] window: features of the tau observations and the tau - 1
    actions chosen between them, flattened. What precedes the window's last episode start is padded as `policy`
    pads when an episode starts: actions zeroed (the action chosen at step i is kept when step i is kept), features
    zeroed (`padding` "zeros") or replaced by the episode's first features ("first": the released code's
    filter_before_first_step)."""
    tau = feat.shape[1]
    index = torch.arange(tau, device=feat.device)
    last_start = (is_first.bool() & (index > 0)).long().mul(index).amax(1, keepdim=True)  # 0 when none
    keep = (index >= last_start).float()
    if padding == "first":
        source = torch.maximum(index, last_start)  # [B, tau]: a step before the start reads the start
        feat = feat.gather(1, source[..., None].expand(-1, -1, feat.shape[-1]))
    else:
        feat = feat * keep[..., None]
    action = action[:, : tau - 1] * keep[:, : tau - 1, None]
    return torch.cat([feat.flatten(1), action.flatten(1)], -1)


class SLAC(Method):
    name = "slac"
    Config = SLACConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("SLAC", obs_space, act_space)

    def __init__(self, obs_space, act_space, config: SLACConfig | None = None, device: str = "cpu", seed: int = 0):
        config = config if config is not None else SLACConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        self.device = torch.device(device)
        self.act_dim = int(act_space.shape[0])
        self.target_entropy = target_entropy(self.act_dim, c.target_entropy_per_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "slac/init"))
            model = SequentialLatentModel(tuple(obs_space["image"].shape), self.act_dim, c)
            feat, latent = model.encoder.out_dim, c.latent1 + c.latent2
            actor = TanhGaussianActor(c.sequence_length * feat + (c.sequence_length - 1) * self.act_dim, self.act_dim,
                                      c.units, c.actor_layers)
            critic = TwinQ(latent, self.act_dim, c.units, c.critic_layers)
        self.nets = nn.ModuleDict({"model": model, "actor": actor, "critic": critic,
                                   "critic_target": critic.target_copy()}).to(self.device)
        self.model, self.actor, self.critic, self.critic_target = model, actor, critic, self.nets["critic_target"]
        self.log_alpha = torch.tensor(math.log(c.init_alpha), device=self.device, requires_grad=True)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=c.model_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=c.alpha_lr)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "slac/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "slac/act"))
        self.acted = 0  # training agent steps taken (the random phase counts them)
        self.pretrain_updates = 0  # model pre-training updates done (resumes from here)
        self.pretrain_data_end = 0  # global replay index one past the pre-training data (the random phase's steps)
        self.updates = 0
        # progress lines (stderr only): (time, updates) at this process's first slice, time of the last line
        self._pretrain_clock: tuple[float, int] | None = None
        self._pretrain_line = 0.0

    @property
    def pretrained(self) -> bool:
        return self.pretrain_updates >= self.config.initial_model_train_steps

    @property
    def pretraining(self) -> bool:
        """The model pre-training has started and not ended: the agent acts uniformly at random meanwhile."""
        return 0 < self.pretrain_updates < self.config.initial_model_train_steps

    # ------------------------------------------------------------------ acting (Alg. 1, environment step)
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        c = self.config
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1).bool()
        n = is_first.shape[0]
        if mode == "train":
            self.acted += n
            # uniform random data for the model's pre-training; random too while it runs over later update calls
            if self.acted <= c.initial_collect_steps or self.pretraining:
                action = torch.rand(n, self.act_dim, generator=self.gen_act, device=self.device)
                return (2 * action - 1).cpu().numpy().astype(np.float32), None
        feat = self.model.encode(obs["image"])
        if state is None:  # the first acting step (an episode start, or the step after the random phase)
            feats = torch.zeros(n, c.sequence_length, feat.shape[-1], device=self.device)
            actions = torch.zeros(n, c.sequence_length - 1, self.act_dim, device=self.device)
            is_first = torch.ones_like(is_first)
        else:
            feats, actions = state
        reset = is_first[:, None, None]
        pad = feat[:, None].expand_as(feats) if c.history_padding == "first" else torch.zeros_like(feats)
        feats = torch.where(reset, pad, feats)
        actions = torch.where(reset, 0.0, actions)
        feats = torch.cat([feats[:, 1:], feat[:, None]], 1)
        inp = torch.cat([feats.flatten(1), actions.flatten(1)], -1)
        if mode == "train":
            action, _ = self.actor.sample(inp, self.gen_act)
        else:
            action = self.actor.mode(inp)
        if c.sequence_length > 1:
            actions = torch.cat([actions[:, 1:], action[:, None]], 1)
        return action.cpu().numpy().astype(np.float32), (feats, actions)

    # ------------------------------------------------------------------ learning (Alg. 1, gradient steps)
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """After the random phase: the model's pre-training (`pretrain_updates_per_step` updates per call until
        `initial_model_train_steps` are done), then one model and one actor-critic update every `train_every` agent
        steps."""
        c = self.config
        length = c.sequence_length + 1
        if self.acted <= c.initial_collect_steps or len(replay) < length:
            return {}
        metrics: dict[str, float] = {}
        if not self.pretrained:
            metrics = self.pretrain(replay)
            if not self.pretrained:
                return metrics  # more slices to come: checkpoints may fall between them
        if self.acted % c.train_every:
            return metrics
        metrics.update(self.train_model(self.sample(replay, c.model_batch_size)))
        metrics.update(self.train_actor_critic(self.sample(replay, c.batch_size)))
        self.updates += 1
        return metrics

    def pretrain(self, replay: Any) -> dict[str, float]:
        """One slice of the model's pre-training (Alg. 1, after the random phase): up to `pretrain_updates_per_step`
        updates on windows of the random phase's steps (the replay's steps before `pretrain_data_end`, fixed at the
        first slice), with a progress line on stderr. Returns the last update's metrics as `pretrain/...`."""
        c = self.config
        total = c.initial_model_train_steps
        per = c.pretrain_updates_per_step or total  # 0: all in one call (the released schedule)
        if self.pretrain_updates == 0:
            self.pretrain_data_end = int(replay.total)
        if self._pretrain_clock is None:  # this process's first slice (a resumed run continues where it stopped)
            self._pretrain_clock = (time.monotonic(), self.pretrain_updates)
            self._pretrain_line = self._pretrain_clock[0]
            resumed = f" (resumed at update {self.pretrain_updates:,})" if self.pretrain_updates else ""
            slices = "in this agent step" if per >= total else (
                f"{per:,} per agent step, acting at random meanwhile, so checkpoints can fall "
                "inside it")
            print(f"slac: model pre-training, {total:,} updates on the replay's first {self.pretrain_data_end:,} steps "
                  f"(the random phase), {slices}{resumed}", file=sys.stderr, flush=True)
        metrics: dict[str, float] = {}
        for _ in range(min(per, total - self.pretrain_updates)):
            metrics = self.train_model(self.sample(replay, c.model_batch_size, before=self.pretrain_data_end))
            self.pretrain_updates += 1
            now = time.monotonic()
            if now - self._pretrain_line >= PRETRAIN_PROGRESS_SECONDS or self.pretrained:
                self._pretrain_line = now
                self._pretrain_progress(now)
        return {f"pretrain/{k}": v for k, v in metrics.items()}

    def _pretrain_progress(self, now: float) -> None:
        """A stderr line: updates done, rate and ETA (wall time is printed, never logged, so metrics.jsonl stays
        the same in a resumed run)."""
        total, done = self.config.initial_model_train_steps, self.pretrain_updates
        t0, done0 = self._pretrain_clock or (now, done)
        rate = (done - done0) / max(now - t0, 1e-9)
        if done >= total:
            print(f"slac: model pre-training done ({total:,} updates; {rate:.2f} updates/s in this process)",
                  file=sys.stderr, flush=True)
            return
        eta = str(datetime.timedelta(seconds=int((total - done) / rate))) if rate > 0 else "?"
        print(f"slac: model pre-training {done:,}/{total:,} updates ({100 * done / total:.0f}%), {rate:.2f} updates/s, "
              f"ETA {eta}", file=sys.stderr, flush=True)

    def sample(self, replay: Any, batch: int, before: int | None = None) -> dict[str, np.ndarray]:
        """`batch` windows of tau + 1 steps. With `resample_boundary_windows`, a window whose last step starts an
        episode (its last transition crosses an episode end) is drawn again, so the windows are uniform over those
        whose last transition lies in one episode, as the released train_eval.py's dataset filter keeps them (for
        the model's batches as for the actor-critic's); after RESAMPLE_TRIES draws any left keep their mask.
        `before`: only windows of the replay's steps before this global index (the pre-training data), by drawing
        the others again; while the replay holds no later step, the draws are those without it."""
        length = self.config.sequence_length + 1
        limit = before if before is not None and replay.total > before else None
        if limit is not None and limit - (replay.total - len(replay)) < length:
            raise MethodError(
                f"slac: the replay no longer holds {length} consecutive steps of the model pre-training's data (global "
                f"steps before {limit}; it holds {replay.total - len(replay)} ... {replay.total - 1}): the replay "
                "evicted them; raise --set pretrain_updates_per_step (fewer agent steps in the pre-training)"
            )
        data = replay.sample(batch, length, index=True) if limit is not None else replay.sample(batch, length)
        draws = 0
        while True:
            redraw = np.zeros(batch, dtype=bool)
            if limit is not None:
                redraw |= data["index"][:, -1] >= limit
            if self.config.resample_boundary_windows and draws < RESAMPLE_TRIES:
                redraw |= np.asarray(data["is_first"]).reshape(batch, length)[:, -1].astype(bool)
            rows = np.flatnonzero(redraw)
            if not len(rows):
                break
            fresh = replay.sample(len(rows), length, index=limit is not None)
            for key, value in data.items():
                value[rows] = fresh[key]
            draws += 1
        data.pop("index", None)
        return data

    def train_model(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        loss, terms, _ = self.model.loss(data, self.gen_train)
        losses = {"loss/model": loss, **terms}
        values = finite_values("slac", losses, self.updates, ["model_lr"])
        self.model_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.model_opt.step()
        return dict(zip(losses, values, strict=True))

    def train_actor_critic(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One SAC step at the last transition of [B, tau + 1] windows (SAC on latent samples)."""
        c = self.config
        tau = c.sequence_length
        with torch.no_grad():  # the model is trained by its own loss only (released code: stop gradients)
            feat = self.model.encode(data["image"])
            shape, device = feat.shape[:2], feat.device
            action = torch.as_tensor(data["action"], device=device).float().reshape(*shape, -1)
            reward = torch.as_tensor(data["reward"], device=device).float().reshape(shape)
            is_first = torch.as_tensor(data["is_first"], device=device).bool().reshape(shape)
            terminal = torch.as_tensor(data["is_terminal"], device=device).float().reshape(shape)
            post = self.model.posterior(feat, action, is_first, self.gen_train)
            z = torch.cat([post["z1"], post["z2"]], -1)
            hist_now = history(feat[:, :tau], action[:, :tau], is_first[:, :tau], c.history_padding)
            hist_next = history(feat[:, 1:], action[:, 1:], is_first[:, 1:], c.history_padding)
            alpha = self.log_alpha.exp()
            # soft Bellman target: r + gamma (min_i Qbar_i(z', a') - alpha log pi(a' | history'))
            next_action, next_logp = self.actor.sample(hist_next, self.gen_train)
            q1_next, q2_next = self.critic_target(z[:, tau], next_action)
            soft_value = torch.minimum(q1_next, q2_next) - alpha * next_logp
            target_q = reward[:, tau] + c.gamma * (1 - terminal[:, tau]) * soft_value
            valid = (~is_first[:, tau]).float()  # the last two steps form a transition only within an episode
        q1, q2 = self.critic(z[:, tau - 1], action[:, tau - 1])
        critic_loss = (0.5 * ((q1 - target_q).square() + (q2 - target_q).square()) * valid).sum() / valid.sum().clamp(min=1)

        new_action, logp = self.actor.sample(hist_now, self.gen_train)
        q1_pi, q2_pi = self.critic(z[:, tau - 1], new_action)
        actor_loss = (alpha * logp - torch.minimum(q1_pi, q2_pi)).mean()
        alpha_loss = temperature_loss(self.log_alpha, logp, self.target_entropy)

        losses = {"loss/critic": critic_loss, "loss/actor": actor_loss, "loss/alpha": alpha_loss}
        values = finite_values("slac", losses, self.updates, ["actor_lr", "critic_lr", "alpha_lr"])
        for loss, params, opt in ((critic_loss, list(self.critic.parameters()), self.critic_opt),
                                  (actor_loss, list(self.actor.parameters()), self.actor_opt),
                                  (alpha_loss, [self.log_alpha], self.alpha_opt)):
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=params)  # the actor's loss trains the actor only (the critic is held fixed)
        for opt in (self.critic_opt, self.actor_opt, self.alpha_opt):
            opt.step()
        ema_update(self.critic_target, self.critic, c.tau)
        return {**dict(zip(losses, values, strict=True)), "alpha": float(alpha), "entropy": float(-logp.detach().mean()),
                "q": float(q1.detach().mean())}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            **{name: getattr(self, name).state_dict() for name in ("model_opt", "actor_opt", "critic_opt", "alpha_opt")},
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state()},
            "counters": {"acted": self.acted, "pretrain_updates": self.pretrain_updates,
                         "pretrain_data_end": self.pretrain_data_end, "updates": self.updates},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("slac", self.nets, self.config, state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        for name in ("model_opt", "actor_opt", "critic_opt", "alpha_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        counters = state["counters"]
        self.acted, self.updates = int(counters["acted"]), int(counters["updates"])
        if "pretrain_updates" in counters:
            self.pretrain_updates = int(counters["pretrain_updates"])
            self.pretrain_data_end = int(counters["pretrain_data_end"])
        else:  # checkpoints from before issue 25 hold a flag: the pre-training ran whole or not at all
            self.pretrain_updates = self.config.initial_model_train_steps if counters["pretrained"] else 0
            self.pretrain_data_end = 0


__all__ = ["SLAC", "SLACConfig", "SequentialLatentModel", "conv_stack", "history"]
