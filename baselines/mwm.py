"""Masked World Models (Seo et al. 2022, "Masked World Models for Visual Control", CoRL; arXiv 2206.14244).

The agent as the paper's Sec. 3 and Algorithm 1 describe it and the official code runs it (younggyoseo/MWM at
8394788, `mwm/agent.py`, `train.py`, `configs.yaml`; the code is DreamerV2's with the autoencoder added), step by
step here (the runner calls `policy` every env step and `update` after it):
1. Prefill: the first `prefill` agent steps act uniformly at random. Then one autoencoder update and one world-model
   and behaviour update, `mae_pretrain - pretrain` autoencoder updates, and `pretrain` x (autoencoder + world
   model); afterwards every `train_mae_every` agent steps `train_mae_steps` autoencoder updates on `mae_batch` x
   `mae_length` replayed images, and every `train_every` agent steps `train_steps` world-model and behaviour
   updates on `batch_size` x `batch_length` sequences (official `train.py`).
2. Visual representation learning (Sec. 3.1): a ViT masked autoencoder over *convolutional features* (early
   convolution: 3 stride-2 convolutions, one token per 8x8-pixel patch), 75% of the tokens masked at random per
   image; the decoder reconstructs every patch's pixels (ImageNet-standardised, mean squared error over all
   patches) and, from one extra token, the reward (symlog squared error): L_mae = L_pixels + L_reward.
   The autoencoder has its own optimiser (lr warm-up over 2,500 updates) and learns from images only.
3. Latent dynamics learning (Sec. 3.2): the autoencoder's unmasked token features z = sg(f(o)) ([CLS] + 64 tokens x
   256) enter a small ViT whose mean-pooled output is the RSSM's observation embedding; DreamerV2's RSSM (1024-unit
   LayerNorm GRU, 32 x 32 categorical latents) is trained with
       L_wm = L_feature + L_reward + clip(beta KL_balanced, kl_min, 100)
   where L_feature is the squared error (summed over channels, averaged over tokens) of a ViT decoder that predicts
   all of z from the model state, L_reward the symlog squared error of a reward MLP, and KL_balanced = alpha
   KL[sg(q) || p] + (1 - alpha) KL[q || sg(p)] (alpha 0.8), clipped per step below at `kl_min`.
4. Behaviour learning: DreamerV2's actor-critic in imagination (H = 15, lambda 0.95, gamma 0.99, slow target
   critic every 100 updates, truncated-Normal actor by dynamics backpropagation for continuous actions, REINFORCE
   for discrete ones, entropy 1e-4), on the reward head's mean symexp(r) scaled by a running magnitude
   (`reward_norm_momentum`; 1 = off, the DMC setting; 0.99 on Meta-World).
5. Acting: the unmasked autoencoder -> ViT -> belief filter every step; training actions are actor samples,
   evaluation its mode.

Optimisers (official `configs.yaml`): Adam, eps 1e-5, global-norm clip 100, decoupled weight decay 1e-6 per step;
world model 3e-4, autoencoder 3e-4 with warm-up, actor and critic 1e-4. Defaults are the Meta-World settings (the
paper's main benchmark); `PROTOCOL_DEFAULTS["dmc_vision"]` holds the official `dmc_vision` config. Differences
from the official code: docs/mwm.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method
from wmbench.nn.behaviour import (
    discounted_lambda_targets,
    onehot_or_trunc_normal_sample,
    onehot_or_trunc_normal_terms,
    trunc_normal_params,
    weighted_actor_loss,
    weighted_critic_loss,
)
from wmbench.nn.distributions import (
    bernoulli_loss,
    symexp,
    symlog,
)
from wmbench.nn.mae import (
    MaskedViTDecoder,
    MaskedViTEncoder,
    TokenViTDecoder,
    TokenViTEncoder,
    check_mask_ratio,
    patchify,
)
from wmbench.nn.networks import MLP
from wmbench.nn.optim import decoupled_adamw
from wmbench.nn.returns import ema_update
from wmbench.nn.rssm import RSSM
from wmbench.nn.world_model import finite_values, load_networks, pixel_control_support
from wmbench.seeding import derive_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # official WorldModel.standardize
IMAGENET_STD = (0.229, 0.224, 0.225)

# the official dmc_vision config over its defaults (configs.yaml `dmc_vision`): batch 16 x 50, no reward scaling
DMC_VISION = {"batch_size": 16, "reward_norm_momentum": 1.0, "kl_min": 0.01}


@dataclass(frozen=True)
class MWMConfig:
    """The official defaults with the `metaworld` config (the paper's main benchmark); DMC per protocol; presets
    `cpu` (learning checks on this project's CPUs) and `tiny` (tests, 16x16 images)."""

    PROTOCOL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"dmc_vision": DMC_VISION}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # CPU learning checks: half-width model, smaller batches, shorter prefill and autoencoder pre-training
        "cpu": {
            "deter": 256,
            "hidden": 256,
            "units": 256,
            "mae_dim": 128,
            "mae_depth": 2,
            "mae_decoder_dim": 128,
            "mae_decoder_depth": 2,
            "wm_dim": 64,
            "wm_depth": 1,
            "wm_decoder_depth": 1,
            "batch_size": 16,
            "batch_length": 32,
            "mae_batch": 16,
            "mae_length": 8,
            "prefill": 1000,
            "mae_pretrain": 500,
            "mae_warmup": 250,
        },
        # tests only: 16x16 images, one block everywhere
        "tiny": {
            "patch_size": 4,
            "conv_stages": 2,
            "mae_dim": 16,
            "mae_depth": 1,
            "mae_heads": 2,
            "mae_decoder_dim": 16,
            "mae_decoder_depth": 1,
            "mae_decoder_heads": 2,
            "wm_dim": 16,
            "wm_depth": 1,
            "wm_heads": 2,
            "wm_decoder_depth": 1,
            "deter": 16,
            "hidden": 16,
            "stoch": 4,
            "classes": 4,
            "units": 16,
            "layers": 1,
            "batch_size": 4,
            "batch_length": 8,
            "mae_batch": 4,
            "mae_length": 4,
            "imag_horizon": 3,
            "prefill": 100,
            "mae_pretrain": 2,
            "mae_warmup": 0,
        },
    }
    preset: str = "paper"
    # --- masked autoencoder (Sec. 3.1; official `mask_ratio`, `mae`)
    mask_ratio: float = 0.75  # checked in __post_init__: 0 < ratio < 1
    patch_size: int = bounded(
        8, low=1
    )  # pixels per token side; one token per feature cell with 3 conv stages
    conv_stages: int = bounded(3, low=0, high=8)  # early convolution; 0 = ViT patch embedding (the ablation)
    mae_dim: int = bounded(256, low=4)
    mae_depth: int = bounded(4, low=0)
    mae_heads: int = bounded(4, low=1)
    mae_decoder_dim: int = bounded(256, low=4)
    mae_decoder_depth: int = bounded(3, low=0)
    mae_decoder_heads: int = bounded(4, low=1)
    mae_reward_pred: bool = True
    loss_mae_reward: float = bounded(1.0, low=0)
    # --- latent dynamics model (Sec. 3.2; official `wm_flat_vit`, `rssm`, `reward_head`)
    wm_dim: int = bounded(128, low=4)
    wm_depth: int = bounded(2, low=0)
    wm_heads: int = bounded(4, low=1)
    wm_decoder_depth: int = bounded(2, low=0)
    deter: int = bounded(1024, low=1)
    hidden: int = bounded(1024, low=1)
    stoch: int = bounded(32, low=1)
    classes: int = bounded(32, low=2)
    units: int = bounded(512, low=1)
    layers: int = bounded(4, low=0)  # reward, discount, actor and critic MLPs
    pred_discount: bool = False
    loss_kl: float = bounded(1.0, low=0)  # beta (official wmkl.scale; the README's 2022-08-17 fix)
    kl_balance: float = bounded(0.8, low=0, high=1)
    kl_min: float = bounded(
        0.01, low=0, high=99.0
    )  # official wmkl_minloss (metaworld and dmc_vision configs)
    loss_feature: float = bounded(1.0, low=0)
    loss_reward: float = bounded(1.0, low=0)
    loss_discount: float = bounded(1.0, low=0)
    # --- behaviour (DreamerV2; official actor, critic, aent, slow_target, reward_norm)
    imag_horizon: int = bounded(15, low=2, high=1000)
    gamma: float = bounded(0.99, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    actor_grad: Literal["auto", "reinforce", "dynamics"] = "auto"
    actor_ent: float = bounded(1e-4, low=0)  # official aent.scale (the README's 2022-08-17 fix)
    actor_min_std: float = bounded(0.1, above=0)
    slow_critic_every: int = bounded(100, low=1)
    reward_norm_momentum: float = bounded(0.99, low=0, high=1)  # 1 = off
    # --- optimisers (official model_opt, mae_opt, actor_opt, critic_opt)
    model_lr: float = bounded(3e-4, low=0, high=1)
    mae_lr: float = bounded(3e-4, low=0, high=1)
    mae_warmup: int = bounded(2500, low=0)
    actor_lr: float = bounded(1e-4, low=0, high=1)
    critic_lr: float = bounded(1e-4, low=0, high=1)
    adam_eps: float = bounded(1e-5, above=0)
    grad_clip: float = bounded(100.0, above=0)
    weight_decay: float = bounded(1e-6, low=0, high=0.5)
    # --- schedule (official train.py, configs.yaml; metaworld dataset 50 x 50)
    batch_size: int = bounded(50, low=1, high=65536)
    batch_length: int = bounded(50, low=2, high=4096)
    mae_batch: int = bounded(32, low=1, high=65536)
    mae_length: int = bounded(32, low=1, high=4096)
    train_every: int = bounded(5, low=1)
    train_steps: int = bounded(1, low=1)
    train_mae_every: int = bounded(5, low=1)
    train_mae_steps: int = bounded(1, low=1)
    prefill: int = bounded(5000, low=0)
    mae_pretrain: int = bounded(5000, low=0)
    pretrain: int = bounded(1, low=0)

    def __post_init__(self) -> None:
        try:
            check_mask_ratio(self.mask_ratio, allow_zero=False)
        except ValueError as e:
            raise ConfigError(f"mwm: {e}") from e
        if self.pretrain > self.mae_pretrain:
            raise ConfigError(
                f"mwm: pretrain={self.pretrain} must not exceed mae_pretrain={self.mae_pretrain} (the official "
                "pre-training runs mae_pretrain autoencoder updates, the last `pretrain` of them with a world-model "
                "update each)"
            )


def build_networks(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: MWMConfig
) -> nn.ModuleDict:
    """Autoencoder (encoder, decoder), the world model's ViTs, RSSM, heads, actor and critic."""
    shape = tuple(obs_space["image"].shape)
    discrete = isinstance(act_space, gymnasium.spaces.Discrete)
    act_dim = int(act_space.n) if discrete else int(act_space.shape[0])
    try:
        mae_encoder = MaskedViTEncoder(
            shape, c.patch_size, c.mae_dim, c.mae_depth, c.mae_heads, c.conv_stages
        )
        grid = mae_encoder.grid
        mae_decoder = MaskedViTDecoder(
            grid,
            c.patch_size,
            shape[-1],
            c.mae_dim,
            c.mae_decoder_dim,
            c.mae_decoder_depth,
            c.mae_decoder_heads,
            reward_pred=c.mae_reward_pred,
        )
        wm_encoder = TokenViTEncoder(grid, c.mae_dim, c.wm_dim, c.wm_depth, c.wm_heads)
        rssm = RSSM(
            wm_encoder.out_dim,
            act_dim,
            c.deter,
            c.hidden,
            c.stoch,
            c.classes,
            latent="categorical",
            blocks=1,
            norm="none",
            unimix=0.0,
            img_layers=1,
            obs_layers=1,
            core="dense",
            fan="avg",
            act="elu",
            gru_norm="layer",
        )
        wm_decoder = TokenViTDecoder(grid, rssm.feat_dim, c.mae_dim, c.wm_dim, c.wm_decoder_depth, c.wm_heads)
    except ValueError as e:
        raise ConfigError(f"mwm: {e}") from e
    rssm.gru_norm.eps = 1e-3  # Keras LayerNormalization's default epsilon (official GRUCell)
    feat = rssm.feat_dim
    dense = {"norm": "none", "act": "elu", "fan": "avg"}
    nets = {
        "mae_encoder": mae_encoder,
        "mae_decoder": mae_decoder,
        "wm_encoder": wm_encoder,
        "rssm": rssm,
        "wm_decoder": wm_decoder,
        "reward": MLP(feat, c.units, c.layers, out_dim=1, **dense),
    }
    if c.pred_discount:
        nets["discount"] = MLP(feat, c.units, c.layers, out_dim=1, **dense)
    nets["actor"] = MLP(feat, c.units, c.layers, out_dim=act_dim if discrete else 2 * act_dim, **dense)
    nets["critic"] = MLP(feat, c.units, c.layers, out_dim=1, **dense)
    return nn.ModuleDict(nets)


def parameter_counts(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: MWMConfig
) -> dict[str, int]:
    """Trained parameters per network (built on the meta device); the slow critic is a copy and not counted."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


def standardise(image: Tensor) -> Tensor:
    """uint8 HWC -> float, ImageNet mean and std per channel (official `WorldModel.preprocess`); grey or other
    channel counts use the mean of the three statistics."""
    x = image.float() / 255.0
    channels = x.shape[-1]
    mean, std = torch.tensor(IMAGENET_MEAN, device=x.device), torch.tensor(IMAGENET_STD, device=x.device)
    if channels != 3:
        mean, std = mean.mean().expand(channels), std.mean().expand(channels)
    return (x - mean) / std


def mae_pixel_target(image: Tensor, patch: int) -> Tensor:
    """The autoencoder's reconstruction target: the standardised image cut into patch x patch patches [N, L, p*p*C]."""
    return patchify(standardise(image), patch)


class MWM(Method):
    name = "mwm"
    Config = MWMConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("MWM", obs_space, act_space, allow_discrete=True)

    def __init__(
        self, obs_space, act_space, config: MWMConfig | None = None, device: str = "cpu", seed: int = 0
    ):
        config = config if config is not None else MWMConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        self.device = torch.device(device)
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.act_dim = int(act_space.n) if self.discrete else int(act_space.shape[0])
        self.dynamics_grad = c.actor_grad == "dynamics" or (c.actor_grad == "auto" and not self.discrete)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "mwm/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        n = self.nets
        self.mae_encoder, self.mae_decoder = n["mae_encoder"], n["mae_decoder"]
        self.wm_encoder, self.rssm, self.wm_decoder, self.reward_head = (
            n["wm_encoder"],
            n["rssm"],
            n["wm_decoder"],
            n["reward"],
        )
        self.discount_head = n["discount"] if c.pred_discount else None
        self.actor, self.critic = n["actor"], n["critic"]
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.autoencoder = nn.ModuleList([self.mae_encoder, self.mae_decoder])
        self.world_model = nn.ModuleList(
            [
                m
                for m in (self.wm_encoder, self.rssm, self.wm_decoder, self.reward_head, self.discount_head)
                if m is not None
            ]
        )
        self.mae_opt = self._adamw(self.autoencoder.parameters(), c.mae_lr)
        self.model_opt = self._adamw(self.world_model.parameters(), c.model_lr)
        self.actor_opt = self._adamw(self.actor.parameters(), c.actor_lr)
        self.critic_opt = self._adamw(self.critic.parameters(), c.critic_lr)
        self.reward_mag = torch.ones((), dtype=torch.float64, device=self.device)  # official StreamNorm `mag`
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "mwm/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "mwm/act"))
        self.mae_updates = 0
        self.updates = 0  # world-model and behaviour updates
        self.acted = 0
        self.next_train = -1  # agent step of the next world-model update (-1: training has not begun)
        self.next_mae = -1

    def _adamw(self, params, lr: float) -> torch.optim.Optimizer:
        # the official decay multiplies every variable by (1 - wd) per step (DreamerV2's `Optimizer`)
        return decoupled_adamw(params, lr, self.config.adam_eps, self.config.weight_decay)

    # ------------------------------------------------------------------ representation
    def embed(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 [N, H, W, C] -> (sg(autoencoder tokens) [N, L + 1, D] with [CLS] moved last, RSSM embedding [N, E]).
        The autoencoder runs unmasked and receives no gradient from the world model (official `WorldModel.loss`)."""
        with torch.no_grad():
            tokens, _, _ = self.mae_encoder(standardise(image), 0.0)
        tokens = torch.cat([tokens[:, 1:], tokens[:, :1]], 1).detach()
        return tokens, self.wm_encoder(tokens)

    def mae_loss(self, data: dict[str, np.ndarray]) -> tuple[Tensor, dict[str, Tensor]]:
        """L_mae on replayed images: pixel reconstruction of every patch from 25% of the tokens, plus the reward
        from the extra decoder token (symlog squared error)."""
        c = self.config
        image = torch.as_tensor(np.ascontiguousarray(data["image"]), device=self.device)
        image = image.reshape(-1, *image.shape[-3:])
        tokens, mask, restore = self.mae_encoder(standardise(image), c.mask_ratio, self.gen_train)
        pixels, reward_pred = self.mae_decoder(tokens, restore)
        target = mae_pixel_target(image, c.patch_size)
        terms = {"mae/pixels": (pixels - target).square().mean(), "mae/mask_fraction": mask.mean().detach()}
        loss = terms["mae/pixels"]
        if reward_pred is not None:
            reward = torch.as_tensor(data["reward"], device=self.device).float().reshape(-1)
            terms["mae/reward"] = (reward_pred - symlog(reward)).square().mean()
            loss = loss + c.loss_mae_reward * terms["mae/reward"]
        return loss, terms

    # ------------------------------------------------------------------ actor
    def policy_dist(self, feat: Tensor) -> tuple[Tensor, ...]:
        out = self.actor(feat)
        if self.discrete:
            return (torch.log_softmax(out, -1),)
        return trunc_normal_params(out, 0.0, self.config.actor_min_std)

    def sample_action(self, dist: tuple[Tensor, ...], generator: torch.Generator, mode: bool = False) -> Tensor:
        """One-hot (straight-through) or truncated-Normal (reparameterised) action; `mode`: the most likely one."""
        return onehot_or_trunc_normal_sample(dist, generator, mode)

    def action_terms(self, dist: tuple[Tensor, ...], action: Tensor) -> tuple[Tensor, Tensor]:
        """(log pi(action), entropy) per state."""
        return onehot_or_trunc_normal_terms(dist, action)

    # ------------------------------------------------------------------ environment interaction
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1).bool()
        batch = is_first.shape[0]
        if mode != "eval":
            self.acted += batch
            if self.acted <= self.config.prefill:
                if self.discrete:
                    action = torch.randint(self.act_dim, (batch,), generator=self.gen_act, device=self.device)
                    return action.cpu().numpy(), None
                action = torch.rand(batch, self.act_dim, generator=self.gen_act, device=self.device) * 2 - 1
                return action.cpu().numpy().astype(np.float32), None
        if state is None:
            deter, stoch = self.rssm.initial(batch, self.device)
            prev_action = torch.zeros(batch, self.act_dim, device=self.device)
        else:
            deter, stoch, prev_action = state
        image = torch.as_tensor(np.ascontiguousarray(obs["image"]), device=self.device)
        _, embed = self.embed(image)
        deter, stoch, _ = self.rssm.obs_step(deter, stoch, prev_action, embed, is_first, self.gen_act)
        action = self.sample_action(
            self.policy_dist(torch.cat([deter, stoch], -1)), self.gen_act, mode=mode == "eval"
        )
        env_action = (
            action.argmax(-1).cpu().numpy() if self.discrete else action.cpu().numpy().astype(np.float32)
        )
        return env_action, (deter, stoch, action)

    # ------------------------------------------------------------------ schedule
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """Official train.py: after the prefill, the pre-training block once; then the autoencoder every
        `train_mae_every` and the world model with behaviour every `train_every` agent steps."""
        c = self.config
        if self.acted < c.prefill or len(replay) < max(c.batch_length, c.mae_length):
            return {}
        step = int(step)
        metrics: list[dict[str, float]] = []
        if self.next_train < 0:
            metrics.append(self.train_mae_batch(self._mae_sample(replay)))
            metrics.append(self.train_batch(replay.sample(c.batch_size, c.batch_length)))
            for _ in range(c.mae_pretrain - c.pretrain):
                metrics.append(self.train_mae_batch(self._mae_sample(replay)))
            for _ in range(c.pretrain):
                metrics.append(self.train_mae_batch(self._mae_sample(replay)))
                metrics.append(self.train_batch(replay.sample(c.batch_size, c.batch_length)))
            self.next_mae, self.next_train = step + c.train_mae_every, step + c.train_every
        else:
            if step >= self.next_mae:
                metrics += [self.train_mae_batch(self._mae_sample(replay)) for _ in range(c.train_mae_steps)]
                self.next_mae += c.train_mae_every
            if step >= self.next_train:
                metrics += [
                    self.train_batch(replay.sample(c.batch_size, c.batch_length))
                    for _ in range(c.train_steps)
                ]
                self.next_train += c.train_every
        if not metrics:
            return {}
        keys = sorted({k for m in metrics for k in m})
        return {k: float(np.mean([m[k] for m in metrics if k in m])) for k in keys}

    def _mae_sample(self, replay: Any) -> dict[str, np.ndarray]:
        return replay.sample(self.config.mae_batch, self.config.mae_length)

    # ------------------------------------------------------------------ learning
    def train_mae_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One autoencoder update; the learning rate warms up linearly over `mae_warmup` updates (official)."""
        c = self.config
        loss, terms = self.mae_loss(data)
        values = finite_values("mwm", {**terms, "loss/mae": loss}, self.mae_updates, ["mae_lr"])
        scale = min(1.0, self.mae_updates / c.mae_warmup) if c.mae_warmup else 1.0
        for group in self.mae_opt.param_groups:
            group["lr"] = c.mae_lr * scale
        self.mae_opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.autoencoder.parameters(), c.grad_clip)
        self.mae_opt.step()
        self.mae_updates += 1
        return {**dict(zip([*terms, "loss/mae"], values, strict=True)), "grad_norm/mae": float(norm)}

    def _action_input(self, action: np.ndarray, shape: tuple[int, ...]) -> Tensor:
        a = torch.as_tensor(action, device=self.device)
        if self.discrete:
            return F.one_hot(a.long().reshape(shape), self.act_dim).float()
        return a.float().reshape(*shape, self.act_dim)

    def world_model_loss(
        self, data: dict[str, np.ndarray]
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """L_wm on a [B, L] batch: (loss, per-term means, posterior sequence)."""
        c = self.config
        image = torch.as_tensor(np.ascontiguousarray(data["image"]), device=self.device)
        shape = tuple(image.shape[:2])
        action = self._action_input(data["action"], shape)
        reward = torch.as_tensor(data["reward"], device=self.device).float().reshape(shape)
        is_first = torch.as_tensor(data["is_first"], device=self.device).bool().reshape(shape)
        is_terminal = torch.as_tensor(data["is_terminal"], device=self.device).float().reshape(shape)
        tokens, embed = self.embed(image.flatten(0, 1))
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)  # a_{t-1} leads to z_t
        seq = self.rssm.observe(embed.reshape(*shape, -1), prev_action, is_first, generator=self.gen_train)
        feat = torch.cat([seq["deter"], seq["stoch"]], -1)
        # KL balancing (DreamerV2 Algorithm 2), scaled, then clipped per step to [kl_min, 100] (official wmkl_minloss)
        dyn, rep = self.rssm.kl_losses(seq["post"], seq["prior"], free=0.0)
        kl_loss = (c.loss_kl * (c.kl_balance * dyn + (1 - c.kl_balance) * rep)).clamp(c.kl_min, 100.0).mean()
        predicted = self.wm_decoder(feat.flatten(0, 1))
        terms = {
            "loss/feature": (predicted - tokens).square().sum(-1).mean(),
            "loss/reward": (self.reward_head(feat).squeeze(-1) - symlog(reward)).square().mean(),
            "loss/kl": kl_loss,
            "kl": rep.detach().mean(),
        }
        loss = c.loss_feature * terms["loss/feature"] + c.loss_reward * terms["loss/reward"] + kl_loss
        if self.discount_head is not None:
            discount_target = c.gamma * (1.0 - is_terminal)
            terms["loss/discount"] = bernoulli_loss(
                self.discount_head(feat).squeeze(-1), discount_target
            ).mean()
            loss = loss + c.loss_discount * terms["loss/discount"]
        seq["cont"] = 1.0 - is_terminal
        return loss, terms, seq

    def imagine(
        self, start_deter: Tensor, start_stoch: Tensor
    ) -> tuple[Tensor, Tensor, list[tuple[Tensor, ...]]]:
        """z_0..z_H under the actor (which sees sg(z)): feat [H+1, N, F], actions [H, N, A], the actor's dists."""
        deter, stoch = start_deter, start_stoch
        feats, actions, dists = [torch.cat([deter, stoch], -1)], [], []
        for _ in range(self.config.imag_horizon):
            dist = self.policy_dist(feats[-1].detach())
            action = self.sample_action(dist, self.gen_train)
            deter, stoch, _ = self.rssm.img_step(deter, stoch, action, self.gen_train)
            feats.append(torch.cat([deter, stoch], -1))
            actions.append(action)
            dists.append(dist)
        return torch.stack(feats), torch.stack(actions), dists

    def normalise_reward(self, reward: Tensor) -> Tensor:
        """Official StreamNorm: mag <- m mag + (1 - m) mean|r|; r / (mag + 1e-8). Momentum 1 leaves r unchanged."""
        m = self.config.reward_norm_momentum
        self.reward_mag = m * self.reward_mag + (1 - m) * reward.detach().abs().mean().double()
        return reward / (self.reward_mag.to(reward.dtype) + 1e-8)

    def behaviour_losses(self, seq: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """DreamerV2's actor and critic losses from H-step imagination started at every posterior state."""
        c = self.config
        start_deter = seq["deter"].detach().flatten(0, 1)
        start_stoch = seq["stoch"].detach().flatten(0, 1)
        wm_params = [p for p in self.world_model.parameters() if p.requires_grad]
        for (
            p
        ) in wm_params:  # gradients may flow through the world model (dynamics backprop) but never into it
            p.requires_grad_(False)
        try:
            with torch.set_grad_enabled(self.dynamics_grad):
                feat, action, dists = self.imagine(start_deter, start_stoch)
                reward = self.normalise_reward(symexp(self.reward_head(feat).squeeze(-1)))
                if self.discount_head is not None:
                    disc = torch.sigmoid(self.discount_head(feat[1:]).squeeze(-1))
                    disc = torch.cat([c.gamma * seq["cont"].flatten()[None], disc])
                else:
                    disc = torch.full_like(reward, c.gamma)
                target_value = self.slow_critic(feat).squeeze(-1)
                ret, weight = discounted_lambda_targets(reward[:-1], disc[:-1], target_value, c.lam)  # Eq. 4
        finally:
            for p in wm_params:
                p.requires_grad_(True)
        # the actor at z_0..z_H-2 against the targets V_1..V_H-1 (Eq. 6)
        if self.dynamics_grad:
            dist = tuple(torch.stack(parts[:-1]) for parts in zip(*dists, strict=True))
            _, entropy = self.action_terms(dist, action[:-1].detach())
            objective = ret[1:]
        else:
            logp, entropy = self.action_terms(self.policy_dist(feat[:-2]), action[:-1])
            objective = logp * (ret[1:] - target_value[:-2]).detach()  # baseline: the target critic v'(z_t)
        actor_loss = weighted_actor_loss(objective, entropy, weight, c.actor_ent)
        # critic 'mse' as a unit-variance Normal: half the squared error (Eq. 5), states z_0..z_H-1
        critic_loss = weighted_critic_loss(self.critic, feat, ret, weight)
        stats = {
            "imag/return": ret.detach().mean(),
            "imag/reward": reward.detach().mean(),
            "policy/entropy": entropy.detach().mean(),
        }
        return actor_loss, critic_loss, stats

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One world-model update, then actor and critic in its imagination (official `Agent.train`)."""
        c = self.config
        model_loss, terms, seq = self.world_model_loss(data)
        model_values = finite_values("mwm", {**terms, "loss/model": model_loss}, self.updates, ["model_lr"])
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        model_norm = nn.utils.clip_grad_norm_(self.world_model.parameters(), c.grad_clip)
        self.model_opt.step()

        actor_loss, critic_loss, stats = self.behaviour_losses(seq)
        behaviour_values = finite_values(
            "mwm",
            {"loss/actor": actor_loss, "loss/critic": critic_loss},
            self.updates,
            ["actor_lr", "critic_lr"],
        )
        actor_params, critic_params = list(self.actor.parameters()), list(self.critic.parameters())
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=actor_params)
        critic_loss.backward(inputs=critic_params)
        actor_norm = nn.utils.clip_grad_norm_(actor_params, c.grad_clip)
        critic_norm = nn.utils.clip_grad_norm_(critic_params, c.grad_clip)
        self.actor_opt.step()
        self.critic_opt.step()
        if self.updates % c.slow_critic_every == 0:  # the first update copies; then every 100 (official)
            ema_update(self.slow_critic, self.critic, 1.0)
        self.updates += 1
        extra = {
            "grad_norm/model": model_norm,
            "grad_norm/actor": actor_norm,
            "grad_norm/critic": critic_norm,
            **stats,
        }
        return {
            **dict(zip([*terms, "loss/model"], model_values, strict=True)),
            "loss/actor": behaviour_values[0],
            "loss/critic": behaviour_values[1],
            **{k: float(v) for k, v in extra.items()},
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "mae_opt": self.mae_opt.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "reward_mag": self.reward_mag.clone(),
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state()},
            "counters": {
                "mae_updates": self.mae_updates,
                "updates": self.updates,
                "acted": self.acted,
                "next_train": self.next_train,
                "next_mae": self.next_mae,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("mwm", self.nets, self.config, state)
        self.slow_critic.load_state_dict(state["slow_critic"])
        for name in ("mae_opt", "model_opt", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.reward_mag = state["reward_mag"].to(self.device)
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        counters = state["counters"]
        for key in ("mae_updates", "updates", "acted", "next_train", "next_mae"):
            setattr(self, key, int(counters[key]))


__all__ = [
    "DMC_VISION",
    "MWM",
    "MWMConfig",
    "build_networks",
    "mae_pixel_target",
    "parameter_counts",
    "standardise",
]
