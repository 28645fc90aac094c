"""DreamerPro (Deng, Jang and Ahn 2022, "DreamerPro: Reconstruction-Free Model-Based Reinforcement Learning with
Prototypical Representations", ICML; arXiv 2110.14565): DreamerV2's world model and behaviour learning with the image
decoder replaced by SwAV-style prototypes (Caron et al. 2020).

The agent as the paper's Sec. 3 and Algorithm 1 describe it (settings: the official code fdeng18/dreamer-pro 809b417,
`DreamerPro/dreamerv2/configs.yaml` `defaults` + `dmc`; docs/dreamerpro.md), run here step by step:
1. Prefill and schedule (DreamerV2 code, `StepSchedule`): `prefill` random agent steps, then 1 + `pretrain` updates,
   then one update every `train_every` agent steps on B x L replayed steps.
2. Two augmented views: the batch is repeated and every sequence of each copy is shifted by its own random
   translation of up to `aug_max_delta` pixels (the same for all its frames; bilinear, edges repeated): 2B sequences.
3. World model (no decoder): stride-2 ELU CNN encoder e(o_t); DreamerV2's RSSM with Gaussian latents (std
   2 sigmoid(x / 2) + 0.1, as the code's DMC setting) filters both views; reward head r(z_t).
4. Prototypes (Sec. 3.2): K = 2500 learnable unit vectors c_k of 32 dims. Observation projection
   u_t = normalise(W_o e(o_t)); the momentum (EMA) encoder and projection give v_t = normalise(W'_o e'(o_t)), whose
   scores c_k . v_t become targets by Sinkhorn-Knopp equipartition over each view's batch (eps 0.0125, 3 iterations):
   Q = sinkhorn(scores). Predictions: p(k | u_t) = softmax_k(c_k . u_t / tau), tau 0.1.
     SwAV loss   L_swav = -1/2 sum_k [Q^(2)_tk ln p^(1)(k | u_t) + Q^(1)_tk ln p^(2)(k | u_t)]   (views swapped)
     temporal    L_temp = -sum_k Q_tk ln softmax_k(c_k . normalise(W_z z_t) / tau)    (the RSSM state z_t predicts
                 the assignment of o_t, so the latent dynamics must carry what the prototypes capture)
     norm        L_norm = (|W_o e(o_t)| - 1)^2 + (|W_z z_t| - 1)^2   (off on standard DMC: `norm_off`)
   averaged over time steps after the first `warm_up`. Prototypes stay fixed for the first 10,000 updates; the
   EMA networks follow the online ones with fraction 0.05 after every update (the first update copies).
     L = loss_swav L_swav + loss_temp L_temp + loss_norm L_norm + loss_kl KL_balanced + loss_reward (r - r(z))^2 / 2
   with DreamerV2's KL balancing (0.8) and 1 free nat on the batch mean (`RSSM.balanced_kl_loss`).
5. Behaviour (DreamerV2, Sec. 3): from every posterior state of both views, imagine `imag_horizon` states under the
   tanh-Normal actor (the code's DMC actor), rewards from the head, constant discount gamma; lambda-targets from the
   slow critic (copied every 100 updates); actor trained by dynamics backpropagation with entropy bonus, critic by
   weighted regression (`wmbench.nn.behaviour`).
6. Acting: the RSSM filter on unaugmented images; training actions are samples of the actor, evaluation actions
   tanh of its mean.

Optimisers: Adam (eps 1e-5, clip 100, decoupled weight decay 1e-6; `decoupled_adamw`), learning rates 3e-4 (model
and prototypes), 8e-5 (actor and critic).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method, MethodError
from wmbench.nn.behaviour import (
    discounted_lambda_targets,
    imagine,
    tanh_normal_params,
    weighted_actor_loss,
    weighted_critic_loss,
)
from wmbench.nn.distributions import tanh_normal_entropy, tanh_normal_sample
from wmbench.nn.networks import MLP, StridedConvEncoder, linear
from wmbench.nn.optim import decoupled_adamw, step_each
from wmbench.nn.returns import ema_update
from wmbench.nn.rssm import RSSM
from wmbench.nn.world_model import (
    StepSchedule,
    finite_values,
    gaussian_latent_key_notes,
    image_kernels,
    load_networks,
    pixel_control_support,
)
from wmbench.seeding import derive_seed

# official `nat_*` runs: `--configs defaults dmc reward_1000` (the norm loss on, the reward loss x 1000)
NATURAL_BACKGROUND = {"loss_norm": 1.0, "loss_reward": 1000.0}


@dataclass(frozen=True)
class DreamerProConfig:
    """The official code's standard-DMC settings (`defaults dmc norm_off`); the natural-background settings per
    protocol; presets `cpu` (CPU learning runs) and `tiny` (tests)."""

    PROTOCOL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "dmc_natural_bg": NATURAL_BACKGROUND,
        "dmc_natural_bg_procedural": NATURAL_BACKGROUND,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # CPU learning runs: a third of the CNN channels, half-width MLPs, 4x smaller batches, 500 prototypes
        "cpu": {"depth": 16, "units": 200, "batch_size": 12, "prototypes": 500},
        # tests only: well under a second per update on 16x16 images
        "tiny": {
            "deter": 16, "hidden": 16, "stoch": 4, "depth": 4, "units": 16, "layers": 1, "prototypes": 8,
            "proto_dim": 4, "batch_size": 3, "batch_length": 6, "imag_horizon": 3, "prefill": 60, "pretrain": 0,
            "train_every": 5, "freeze_prototypes": 2,
        },
    }  # fmt: skip
    KEY_NOTES: ClassVar[dict[str, str]] = gaussian_latent_key_notes(
        "DreamerPro", "Deng et al. 2022, the code's DMC setting", stoch=32
    )
    preset: str = "paper"
    # --- world model (configs.yaml defaults + dmc: rssm, encoder, reward_head; no decoder)
    deter: int = bounded(200, low=1)
    hidden: int = bounded(200, low=1)
    stoch: int = bounded(32, low=1)
    min_std: float = bounded(0.1, above=0)
    depth: int = bounded(48, low=1)
    enc_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 4, 4, 4, 4
    units: int = bounded(400, low=1)
    layers: int = bounded(4, low=0)  # reward, actor and critic MLPs
    # --- prototypes (Sec. 3.2; rssm.num_prototypes, proto, temperature, sinkhorn_eps, sinkhorn_iters, warm_up)
    prototypes: int = bounded(2500, low=2)
    proto_dim: int = bounded(32, low=1)
    temperature: float = bounded(0.1, above=0)
    sinkhorn_eps: float = bounded(0.0125, above=0)
    sinkhorn_iters: int = bounded(3, low=1, high=1000)
    warm_up: int = bounded(1, low=0)
    freeze_prototypes: int = bounded(10000, low=0)  # updates (freeze_prototypes_iters)
    ema_fraction: float = bounded(0.05, above=0, high=1)  # ema_update_fraction
    ema_every: int = bounded(1, low=1)  # ema_update_every
    aug_max_delta: float = bounded(3.0, low=0)  # aug.max_delta (pixels; same across time, bilinear)
    # --- world-model loss (loss_scales; kl)
    loss_swav: float = bounded(1.0, low=0)
    loss_temp: float = bounded(1.0, low=0)
    loss_norm: float = bounded(0.0, low=0)  # norm_off (standard DMC); natural backgrounds: 1.0
    loss_kl: float = bounded(1.0, low=0)
    loss_reward: float = bounded(1.0, low=0)  # natural backgrounds: 1000.0 (reward_1000)
    kl_balance: float = bounded(0.8, low=0, high=1)
    kl_free: float = bounded(1.0, low=0)
    # --- behaviour (actor: tanh_normal, min_std 0.1; actor_grad dynamics)
    imag_horizon: int = bounded(15, low=2, high=1000)  # imagined states per rollout, the start state included
    gamma: float = bounded(0.99, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    actor_ent: float = bounded(1e-4, low=0)
    actor_min_std: float = bounded(0.1, above=0)
    actor_init_std: float = 0.0  # raw offset before the softplus (DistLayer init_std)
    slow_critic_every: int = bounded(100, low=1)
    slow_critic_fraction: float = bounded(1.0, above=0, high=1)
    # --- optimisers (model_opt, actor_opt, critic_opt)
    model_lr: float = bounded(3e-4, low=0, high=1)
    actor_lr: float = bounded(8e-5, low=0, high=1)
    critic_lr: float = bounded(8e-5, low=0, high=1)
    adam_eps: float = bounded(1e-5, above=0)
    grad_clip: float = bounded(100.0, above=0)
    weight_decay: float = bounded(1e-6, low=0, high=0.5)
    # --- schedule (dataset batch 50 x 51; train_every 5; pretrain 100; prefill 5000 env steps = 2500 agent steps)
    batch_size: int = bounded(50, low=1, high=65536)
    batch_length: int = bounded(51, low=2, high=4096)
    train_every: int = bounded(5, low=1)
    train_steps: int = bounded(1, low=1)
    prefill: int = bounded(2500, low=0)
    pretrain: int = bounded(100, low=0)


# ---------------------------------------------------------------------------------------------- what is new
def sinkhorn(scores: Tensor, eps: float, iters: int) -> Tensor:
    """Sinkhorn-Knopp equipartition (SwAV, Caron et al. 2020; DreamerPro Sec. 3.2): scores [N, K] of N samples against
    K prototypes -> soft assignments Q [N, K]. Q starts as exp(scores / eps) normalised over the whole batch; each of
    the `iters` rounds rescales every prototype's total to 1/K, then every sample's total to 1/N; Q x N is returned,
    so every row is a distribution over prototypes and, as the rounds grow, every prototype gets N/K of the mass (no
    collapse onto a few prototypes). Computed in log space (official `sinkhorn`, with samples as rows)."""
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise MethodError(
            f"dreamerpro: Sinkhorn-Knopp needs a non-empty [samples, prototypes] score matrix, got shape "
            f"{tuple(scores.shape)}; a batch has samples only after the first warm_up steps of each sequence: use "
            "batch_length > warm_up and batch_size >= 1, and prototypes >= 2"
        )
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise MethodError(
            f"dreamerpro: {bad} of {scores.numel()} prototype scores given to Sinkhorn-Knopp are not finite (NaN or "
            "inf): the encoder has diverged; resume from the run's last checkpoint with a lower learning rate "
            "(--set model_lr=... --allow-config-change)"
        )
    if not eps > 0 or iters < 1:
        raise MethodError(
            f"dreamerpro: Sinkhorn-Knopp needs eps > 0 and iters >= 1, got eps={eps}, iters={iters}"
        )
    samples, count = scores.shape
    log_q = torch.log_softmax((scores.float() / eps).flatten(), 0).reshape(samples, count)
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - math.log(count)  # each prototype: 1/K
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True) - math.log(samples)  # each sample: 1/N
    return torch.exp(log_q + math.log(samples))


def random_translate(images: Tensor, max_delta: float, generator: torch.Generator | None) -> Tensor:
    """Float images [B, T, H, W, C] shifted by a random translation per sequence (the same for all T frames), each
    coordinate uniform in [-max_delta, max_delta] pixels, bilinear interpolation, edge pixels repeated outside
    (official `random_translate` with same_across_time and bilinear: tfa translate, fill mode nearest)."""
    b, t, h, w, c = images.shape
    shift = (torch.rand(b, 1, 2, generator=generator, device=images.device) * 2 - 1) * max_delta
    shift = shift.expand(b, t, 2).reshape(b * t, 2)  # (dx, dy)
    # output pixel (y, x) reads input (y - dy, x - dx); grid_sample's normalised coordinate of pixel x is (2x + 1)/W - 1
    xs = torch.arange(w, device=images.device, dtype=images.dtype)
    ys = torch.arange(h, device=images.device, dtype=images.dtype)
    grid_x = (2 * (xs[None] - shift[:, :1]) + 1) / w - 1  # [N, W]
    grid_y = (2 * (ys[None] - shift[:, 1:]) + 1) / h - 1  # [N, H]
    grid = torch.stack([grid_x[:, None, :].expand(-1, h, -1), grid_y[:, :, None].expand(-1, -1, w)], -1)
    x = images.reshape(b * t, h, w, c).permute(0, 3, 1, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(b, t, h, w, c)


class Prototypes(nn.Module):
    """K prototype vectors (N(0, 1) at the start, renormalised to unit length before every use) and the two
    projections onto their space: of the observation embedding (`obs_proj`) and of the RSSM state (`feat_proj`)."""

    def __init__(self, embed_dim: int, feat_dim: int, count: int, dim: int):
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(count, dim))
        self.obs_proj = linear(embed_dim, dim, fan="avg")
        self.feat_proj = linear(feat_dim, dim, fan="avg")

    @torch.no_grad()
    def renormalise(self) -> None:
        self.vectors.copy_(F.normalize(self.vectors, dim=-1))


def prototype_losses(
    protos: Prototypes, embed: Tensor, feat: Tensor, target_proj: Tensor, c: DreamerProConfig
) -> dict[str, Tensor]:
    """L_swav, L_temp and L_norm (module docstring, step 4) of 2B sequences, the two views stacked along the batch:
    embed [2B, L, E] (online encoder), feat [2B, L, F] (posterior states), target_proj [2B, L, P] (normalised EMA
    projections, no gradient)."""
    half = embed.shape[0] // 2
    protos.renormalise()
    vectors = protos.vectors
    obs_raw, feat_raw = protos.obs_proj(embed), protos.feat_proj(feat)
    w = c.warm_up

    def log_probs(raw: Tensor) -> Tensor:  # ln softmax_k(c_k . normalise(x) / tau), after the warm-up steps
        return torch.log_softmax(F.normalize(raw[:, w:], dim=-1) @ vectors.T / c.temperature, -1)

    obs_logp, feat_logp = log_probs(obs_raw), log_probs(feat_raw)
    with torch.no_grad():
        scores = target_proj[:, w:] @ vectors.T  # [2B, L - w, K]
        k = scores.shape[-1]
        targets = [
            sinkhorn(view.reshape(-1, k), c.sinkhorn_eps, c.sinkhorn_iters).reshape(view.shape)
            for view in (scores[:half], scores[half:])
        ]  # equipartition within each view
    swav = (
        -0.5 * (targets[1] * obs_logp[:half]).sum(-1).mean()
        - 0.5 * (targets[0] * obs_logp[half:]).sum(-1).mean()
    )
    temp = -(torch.cat(targets) * feat_logp).sum(-1).mean()
    norm = (obs_raw.norm(dim=-1) - 1).square().mean() + (feat_raw.norm(dim=-1) - 1).square().mean()
    return {"loss/swav": swav, "loss/temp": temp, "loss/norm": norm}


# ---------------------------------------------------------------------------------------------- networks
NETWORKS = ("encoder", "rssm", "prototypes", "reward", "actor", "critic")


def build_networks(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: DreamerProConfig
) -> nn.ModuleDict:
    """Encoder, RSSM, prototypes with their projections, reward head, actor and critic; ELU everywhere."""
    shape = tuple(obs_space["image"].shape)
    act_dim = int(act_space.shape[0])
    try:
        enc_k = tuple(c.enc_kernels) or image_kernels(shape)[0]
        encoder = StridedConvEncoder(shape, c.depth, enc_k, act="elu")
        rssm = RSSM(
            encoder.out_dim,
            act_dim,
            c.deter,
            c.hidden,
            c.stoch,
            latent="gaussian",
            blocks=1,
            norm="none",
            img_layers=1,
            obs_layers=1,
            min_std=c.min_std,
            core="dense",
            fan="avg",
            act="elu",
            gru_norm="layer",
            std_act="sigmoid2",
        )
    except ValueError as e:
        raise ConfigError(f"dreamerpro: {e}") from e
    rssm.gru_norm.eps = 1e-3  # Keras LayerNormalization's default epsilon (official GRUCell)
    feat = rssm.feat_dim
    dense = {"norm": "none", "act": "elu", "fan": "avg"}
    return nn.ModuleDict(
        {
            "encoder": encoder,
            "rssm": rssm,
            "prototypes": Prototypes(encoder.out_dim, feat, c.prototypes, c.proto_dim),
            "reward": MLP(feat, c.units, c.layers, out_dim=1, **dense),
            "actor": MLP(feat, c.units, c.layers, out_dim=2 * act_dim, **dense),
            "critic": MLP(feat, c.units, c.layers, out_dim=1, **dense),
        }
    )


def parameter_counts(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: DreamerProConfig
) -> dict[str, int]:
    """Trained parameters per network (built on the meta device); the EMA encoder and projection and the slow
    critic are copies and not counted."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


class DreamerPro(Method):
    name = "dreamerpro"
    Config = DreamerProConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("DreamerPro", obs_space, act_space)

    def __init__(
        self, obs_space, act_space, config: DreamerProConfig | None = None, device: str = "cpu", seed: int = 0
    ):
        config = config if config is not None else DreamerProConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        if c.batch_length <= c.warm_up:
            raise ConfigError(
                f"dreamerpro: batch_length ({c.batch_length}) must exceed warm_up ({c.warm_up}): the prototype losses "
                f"skip the first warm_up steps of each sequence (e.g. --set batch_length={c.warm_up + 50})"
            )
        self.device = torch.device(device)
        self.act_dim = int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "dreamerpro/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        n = self.nets
        self.encoder, self.rssm, self.protos, self.reward_head = (
            n["encoder"],
            n["rssm"],
            n["prototypes"],
            n["reward"],
        )
        self.actor, self.critic = n["actor"], n["critic"]
        # momentum targets of the prototype assignments: EMA copies of the encoder and the observation projection
        self.ema_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.ema_obs_proj = copy.deepcopy(self.protos.obs_proj).requires_grad_(False)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.world_model = nn.ModuleList([self.encoder, self.rssm, self.protos, self.reward_head])
        self.model_opt = decoupled_adamw(
            self.world_model.parameters(), c.model_lr, c.adam_eps, c.weight_decay
        )
        self.actor_opt = decoupled_adamw(self.actor.parameters(), c.actor_lr, c.adam_eps, c.weight_decay)
        self.critic_opt = decoupled_adamw(self.critic.parameters(), c.critic_lr, c.adam_eps, c.weight_decay)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerpro/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerpro/act"))
        self.schedule = StepSchedule(
            c.prefill, c.pretrain, c.train_every, c.train_steps, c.batch_size, c.batch_length
        )
        self.updates = 0

    # ------------------------------------------------------------------ actor pi(a | z): tanh-Normal
    def action_dist(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        return tanh_normal_params(self.actor(feat), c.actor_init_std, c.actor_min_std, 5.0)

    # ------------------------------------------------------------------ environment interaction
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1).bool()
        batch = is_first.shape[0]
        if self.schedule.act_randomly(batch, mode):  # uniform random actions during the prefill
            action = torch.rand(batch, self.act_dim, generator=self.gen_act, device=self.device) * 2 - 1
            return action.cpu().numpy().astype(np.float32), None
        if state is None:
            deter, stoch = self.rssm.initial(batch, self.device)
            prev_action = torch.zeros(batch, self.act_dim, device=self.device)
        else:
            deter, stoch, prev_action = state
        image = torch.as_tensor(np.ascontiguousarray(obs["image"]), device=self.device)
        deter, stoch, _ = self.rssm.obs_step(
            deter, stoch, prev_action, self.encoder(image), is_first, self.gen_act
        )
        mean, std = self.action_dist(torch.cat([deter, stoch], -1))
        action = torch.tanh(mean) if mode == "eval" else tanh_normal_sample(mean, std, self.gen_act)[0]
        return action.cpu().numpy().astype(np.float32), (deter, stoch, action)

    # ------------------------------------------------------------------ learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        return self.schedule.train(replay, step, self.train_batch)

    def world_model_loss(
        self, data: dict[str, np.ndarray]
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Steps 2-4 on a [B, L] batch: (loss, per-term means, posterior sequence of both views [2B, L])."""
        c = self.config
        image = torch.as_tensor(data["image"], device=self.device).float() / 255.0 - 0.5
        shape = tuple(image.shape[:2])
        action = torch.as_tensor(data["action"], device=self.device).float().reshape(*shape, self.act_dim)
        reward = torch.as_tensor(data["reward"], device=self.device).float().reshape(shape)
        is_first = torch.as_tensor(data["is_first"], device=self.device).bool().reshape(shape)

        def both(x: Tensor) -> Tensor:
            return torch.cat([x, x], 0)

        views = random_translate(
            both(image), c.aug_max_delta, self.gen_train
        )  # two augmented views, [2B, L, ...]
        action, reward, is_first = both(action), both(reward), both(is_first)
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)  # a_{t-1} leads to z_t
        embed = self.encoder(views)
        seq = self.rssm.observe(embed, prev_action, is_first, generator=self.gen_train)
        feat = torch.cat([seq["deter"], seq["stoch"]], -1)
        with torch.no_grad():
            target_proj = F.normalize(self.ema_obs_proj(self.ema_encoder(views)), dim=-1)
        terms = prototype_losses(self.protos, embed, feat, target_proj, c)
        terms["loss/reward"] = 0.5 * (self.reward_head(feat).squeeze(-1) - reward).square().mean()
        kl_loss, kl = self.rssm.balanced_kl_loss(seq["post"], seq["prior"], c.kl_balance, c.kl_free)
        terms.update({"kl": kl.detach().mean(), "loss/kl": kl_loss})
        loss = (
            c.loss_swav * terms["loss/swav"]
            + c.loss_temp * terms["loss/temp"]
            + c.loss_norm * terms["loss/norm"]
            + c.loss_kl * kl_loss
            + c.loss_reward * terms["loss/reward"]
        )
        return loss, terms, seq

    def behaviour_losses(self, seq: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Step 5: actor (dynamics backpropagation) and critic losses from every posterior state of both views."""
        c = self.config
        start_deter, start_stoch = seq["deter"].detach().flatten(0, 1), seq["stoch"].detach().flatten(0, 1)

        def act(deter: Tensor, stoch: Tensor) -> Tensor:  # the actor sees sg(z)
            mean, std = self.action_dist(torch.cat([deter, stoch], -1).detach())
            return tanh_normal_sample(mean, std, self.gen_train)[0]

        wm_params = [p for p in self.world_model.parameters() if p.requires_grad]
        for p in wm_params:  # gradients flow through the world model into the actor, never into the model
            p.requires_grad_(False)
        try:
            # the official rollout holds imag_horizon states z_0..z_H-1, the start state first
            deter, stoch, _ = imagine(
                self.rssm, start_deter, start_stoch, c.imag_horizon - 1, act, self.gen_train
            )
            feat = torch.cat([deter, stoch], -1)
            reward = self.reward_head(feat).squeeze(-1)  # r(z_t), mode of the unit-variance Gaussian
            disc = torch.full_like(reward, c.gamma)  # no discount head on DMC (pred_discount False)
            target_value = self.slow_critic(feat).squeeze(-1)
            ret, weight = discounted_lambda_targets(reward[:-1], disc[:-1], target_value, c.lam)  # V_0..V_H-2
        finally:
            for p in wm_params:
                p.requires_grad_(True)
        mean, std = self.action_dist(feat[:-1].detach())
        entropy = tanh_normal_entropy(mean, std, self.gen_train)
        actor_loss = weighted_actor_loss(ret, entropy, weight, c.actor_ent)  # official: objective = target
        critic_loss = weighted_critic_loss(self.critic, feat, ret, weight)
        stats = {
            "imag/return": ret.detach().mean(),
            "imag/reward": reward.detach().mean(),
            "policy/entropy": entropy.detach().mean(),
        }
        return actor_loss, critic_loss, stats

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One update: the world model and prototypes step first, then actor and critic learn in its imagination;
        then the EMA targets and (every 100 updates) the slow critic follow."""
        c = self.config
        model_loss, terms, seq = self.world_model_loss(data)
        model_terms = {**terms, "loss/model": model_loss}
        metrics = dict(
            zip(
                model_terms, finite_values("dreamerpro", model_terms, self.updates, ["model_lr"]), strict=True
            )
        )
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        if self.updates < c.freeze_prototypes and self.protos.vectors.grad is not None:
            self.protos.vectors.grad.zero_()  # prototypes fixed for the first updates (freeze_prototypes_iters)
        metrics["grad_norm/model"] = float(
            nn.utils.clip_grad_norm_(self.world_model.parameters(), c.grad_clip)
        )
        self.model_opt.step()

        actor_loss, critic_loss, stats = self.behaviour_losses(seq)
        behaviour_terms = {"loss/actor": actor_loss, "loss/critic": critic_loss}
        values = finite_values("dreamerpro", behaviour_terms, self.updates, ["actor_lr", "critic_lr"])
        metrics.update(zip(behaviour_terms, values, strict=True))
        norms = step_each(
            [(actor_loss, list(self.actor.parameters()), self.actor_opt),
             (critic_loss, list(self.critic.parameters()), self.critic_opt)], c.grad_clip)  # fmt: skip
        metrics.update({"grad_norm/actor": float(norms[0]), "grad_norm/critic": float(norms[1])})
        metrics.update({k: float(v) for k, v in stats.items()})
        if self.updates % c.ema_every == 0:  # the first update copies (official ema_update)
            fraction = 1.0 if self.updates == 0 else c.ema_fraction
            ema_update(self.ema_encoder, self.encoder, fraction)
            ema_update(self.ema_obs_proj, self.protos.obs_proj, fraction)
        if self.updates % c.slow_critic_every == 0:
            ema_update(self.slow_critic, self.critic, 1.0 if self.updates == 0 else c.slow_critic_fraction)
        self.updates += 1
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "ema_encoder": self.ema_encoder.state_dict(),
            "ema_obs_proj": self.ema_obs_proj.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state()},
            "counters": {
                "updates": self.updates,
                "acted": self.schedule.acted,
                "next_train": self.schedule.next_train,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("dreamerpro", self.nets, self.config, state)
        for name in ("ema_encoder", "ema_obs_proj", "slow_critic", "model_opt", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        counters = state["counters"]
        self.updates = int(counters["updates"])
        self.schedule.acted, self.schedule.next_train = int(counters["acted"]), int(counters["next_train"])


__all__ = [
    "NATURAL_BACKGROUND",
    "DreamerPro",
    "DreamerProConfig",
    "Prototypes",
    "build_networks",
    "parameter_counts",
    "prototype_losses",
    "random_translate",
    "sinkhorn",
]
