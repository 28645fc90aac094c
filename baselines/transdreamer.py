"""TransDreamer (Chen et al. 2022, "TransDreamer: Reinforcement Learning with Transformer World Models";
arXiv 2202.09481): the transformer state-space model (TSSM, wmbench/nn/tssm.py on the shared transformer) in place
of the RSSM's GRU, with DreamerV3-style heads and behaviour learning.

The algorithm as run here (the runner calls `policy` every env step and `update` after it):
1. World model on replayed [B, T] sequences (Sec. 3): z_t ~ q(z_t | x_t) from the observation alone; h_t =
   transformer(W [z_<t, a_<t]) of the same episode (one pass over the sequence); prior p(z_t | h_t); heads on
   (h_t, z_t): decoder, reward (two-hot symlog), continue (Bernoulli). Loss: DreamerV3 Eq. 5, reconstruction +
   reward + continue + 0.5 dyn + 0.1 rep with 1 free nat.
2. Behaviour (DreamerV3 Sec. 3) from *every* posterior state of the batch, each with its own history (the KV cache
   of the sequence split into per-step streams, KVCache.prefix_caches): imagine `imag_horizon` steps, each one
   cached transformer step (O(memory)); lambda-returns (gamma 0.997, lambda 0.95) normalised by the percentile
   scale; REINFORCE actor with entropy bonus 3e-4; critic two-hot towards the returns plus the slow-critic
   regulariser.
3. Acting: z_t from the observation, h_t from the acting cache, a_t ~ pi(. | h_t, z_t); the token (z_t, a_t) then
   extends the cache (each env step O(memory)).

Sizes: the TSSM of the official Atari config (changchencc/TransDreamer config_files/configs_atari.py: width 600,
4 layers, 8 heads, feed-forward 1024, dropout 0.1, pre-norm, 32 x 32 latents, hidden 600) with heads of 4 x 400 units;
everything else (losses, optimisers, two-hot heads, return normalisation, replay ratio) from DreamerV3's 2023 paper, as
wmbench's `dreamerv3` defaults. Known differences from the official TransDreamer (docs/transdreamer.md): DreamerV3
heads and losses instead of DreamerV2's (the issue asks for DreamerV3-style behaviour), relative Transformer-XL
positions instead of its temporal encodings, uniform replay.
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
from wmbench.nn.distributions import (
    bernoulli_loss,
    bernoulli_mode,
    bounded_normal,
    categorical_entropy,
    normal_entropy,
    normal_log_prob,
    normal_sample,
    sample_onehot,
    symlog_bins,
    symlog_mse,
    twohot_loss,
    twohot_losses,
    twohot_mean,
    unimix_logits,
)
from wmbench.nn.networks import MLP, ObsDecoder, ObsEncoder
from wmbench.nn.returns import PercentileNormalizer, ema_update, lambda_return
from wmbench.nn.tssm import TSSM
from wmbench.nn.world_model import load_networks
from wmbench.seeding import derive_seed


@dataclass(frozen=True)
class TransDreamerConfig:
    PROTOCOL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "atari100k": {"train_ratio": 1024.0},
        "dmc_proprio": {"train_ratio": 512.0},
        "dmc_vision": {"train_ratio": 512.0},
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "tiny": {
            "width": 16,
            "layers": 1,
            "heads": 2,
            "ff_dim": 16,
            "stoch": 4,
            "classes": 4,
            "hidden": 16,
            "units": 16,
            "head_layers": 1,
            "depth": 4,
            "mults": (2, 2),
            "batch_size": 2,
            "batch_length": 8,
            "memory": 16,
            "imag_horizon": 4,
            "train_ratio": 8.0,
        },
        # CPU: a transformer of 2 layers, width 128; DreamerV3 size1m-like heads
        "small": {
            "width": 128,
            "layers": 2,
            "heads": 4,
            "ff_dim": 256,
            "stoch": 16,
            "classes": 16,
            "hidden": 128,
            "units": 128,
            "head_layers": 2,
            "depth": 16,
            "batch_size": 8,
            "batch_length": 32,
            "memory": 48,
        },
    }
    preset: str = "paper"
    # --- TSSM (official configs_atari.py `transformer`, `RSSM`)
    width: int = bounded(600, low=1)
    layers: int = bounded(4, low=1)
    heads: int = bounded(8, low=1)
    ff_dim: int = bounded(1024, low=1)
    memory: int = bounded(64, low=1, high=4096)  # tokens (= steps) each step attends to, besides itself
    dropout: float = bounded(0.1, low=0, high=1)
    stoch: int = bounded(32, low=1)
    classes: int = bounded(32, low=2)
    hidden: int = bounded(600, low=1)
    # --- heads and encoder (configs_atari.py: reward, pcont, actor, value 4 x 400)
    units: int = bounded(400, low=1)
    head_layers: int = bounded(4, low=1)
    depth: int = bounded(32, low=1)
    mults: tuple[int, ...] = (2, 3, 4, 4)
    kernel: int = 5
    norm: str = "rms"
    unimix: float = 0.01
    bins: int = 255
    # --- DreamerV3 losses, optimisers and behaviour (2023 paper)
    free_nats: float = 1.0
    loss_dyn: float = 0.5
    loss_rep: float = 0.1
    model_lr: float = bounded(1e-4, low=0, high=1)
    model_clip: float = 1000.0
    actor_lr: float = bounded(3e-5, low=0, high=1)
    critic_lr: float = bounded(3e-5, low=0, high=1)
    ac_clip: float = 100.0
    imag_horizon: int = bounded(15, low=1, high=1000)
    horizon: int = 333
    lam: float = 0.95
    actent: float = 3e-4
    minstd: float = 0.1
    maxstd: float = 1.0
    slowreg: float = 1.0
    slow_critic_fraction: float = 0.02
    # --- schedule
    batch_size: int = bounded(16, low=1, high=65536)
    batch_length: int = bounded(64, low=2, high=4096)
    train_ratio: float = bounded(32.0, above=0, high=1e6)

    def check(self) -> None:
        if self.width % self.heads:
            raise ConfigError(
                f"transdreamer: heads={self.heads} does not divide width={self.width}; set --set "
                f"heads=... to a divisor of {self.width} (paper: 8 heads of width 600)"
            )
        if self.memory < self.imag_horizon:
            raise ConfigError(
                f"transdreamer: memory={self.memory} is smaller than imag_horizon={self.imag_horizon}; "
                f"set --set memory>={self.imag_horizon}"
            )
        if self.memory < self.batch_length:
            raise ConfigError(
                f"transdreamer: memory={self.memory} is smaller than batch_length={self.batch_length}: "
                "imagination from every replayed step needs its whole history in the cache; set --set "
                f"memory>={self.batch_length}"
            )


class TransDreamer(Method):
    name = "transdreamer"
    Config = TransDreamerConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        keys = set(obs_space) - {"image", "vector"}
        if keys or not obs_space:
            return f"observation entries must be 'image' and/or 'vector', got {sorted(obs_space)}"
        if "image" in obs_space and (
            len(obs_space["image"].shape) != 3 or obs_space["image"].dtype != np.uint8
        ):
            return f"'image' must be uint8 HxWxC, got {obs_space['image']}"
        if isinstance(act_space, gymnasium.spaces.Discrete):
            return None
        if isinstance(act_space, gymnasium.spaces.Box) and len(act_space.shape) == 1:
            return None
        return f"action space {act_space} is not supported (Discrete or 1-D Box in [-1, 1])"

    def __init__(
        self,
        obs_space,
        act_space,
        config: TransDreamerConfig | None = None,
        device: str = "cpu",
        seed: int = 0,
    ):
        config = config if config is not None else TransDreamerConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        c.check()
        self.device = torch.device(device)
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.act_dim = int(act_space.n) if self.discrete else int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "transdreamer/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        self.encoder, self.tssm, self.decoder = self.nets["encoder"], self.nets["tssm"], self.nets["decoder"]
        self.reward_head, self.cont_head = self.nets["reward"], self.nets["cont"]
        self.actor, self.critic = self.nets["actor"], self.nets["critic"]
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.world_model = nn.ModuleList(
            [self.encoder, self.tssm, self.decoder, self.reward_head, self.cont_head]
        )
        self.retnorm = PercentileNormalizer().to(self.device)
        self.bins = symlog_bins(c.bins, device=self.device)
        adam = lambda p, lr, eps: torch.optim.Adam(p, lr=lr, eps=eps)  # noqa: E731
        self.model_opt = adam(self.world_model.parameters(), c.model_lr, 1e-8)
        self.actor_opt = adam(self.actor.parameters(), c.actor_lr, 1e-5)
        self.critic_opt = adam(self.critic.parameters(), c.critic_lr, 1e-5)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "transdreamer/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "transdreamer/act"))
        self.gamma = 1.0 - 1.0 / c.horizon
        self.updates = 0
        self.ratio_start = -1

    # ------------------------------------------------------------------ helpers
    def _obs(self, data: dict[str, Any]) -> dict[str, Tensor]:
        return {
            k: torch.as_tensor(np.ascontiguousarray(data[k]), device=self.device)
            for k in ("image", "vector")
            if k in self.obs_space
        }

    def _action_input(self, action: Any) -> Tensor:
        """Replayed actions [B, T] (discrete) or [B, T, A] -> float inputs (one-hot for discrete)."""
        a = torch.as_tensor(np.asarray(action), device=self.device)
        return F.one_hot(a.long(), self.act_dim).float() if self.discrete else a.float()

    def _feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        return torch.cat([deter, stoch], -1)

    def _policy_dist(self, feat: Tensor) -> tuple[Tensor, ...]:
        out = self.actor(feat)
        if self.discrete:
            return (unimix_logits(out, self.config.unimix),)
        raw_mean, raw_std = out.chunk(2, -1)
        return bounded_normal(raw_mean, raw_std, self.config.minstd, self.config.maxstd)

    def _sample_action(self, dist: tuple[Tensor, ...], generator, mode: bool = False) -> Tensor:
        if self.discrete:
            logp = dist[0]
            return (
                F.one_hot(logp.argmax(-1), self.act_dim).float() if mode else sample_onehot(logp, generator)
            )
        mean, std = dist
        return mean if mode else normal_sample(mean, std, generator).clamp(-1, 1)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).bool().reshape(-1)
        n = is_first.shape[0]
        was_training = self.tssm.training
        self.tssm.eval()
        if state is None:
            cache, deter = (
                self.tssm.transformer.empty_cache(n, self.device),
                torch.zeros(n, self.tssm.deter, device=self.device),
            )
        else:
            cache, deter = state
        deter = torch.where(
            is_first[:, None], torch.zeros_like(deter), deter
        )  # no history at an episode start
        stoch = self.tssm.sample(self.tssm.post_stats(self.encoder(self._obs(obs))), self.gen_act)
        action = self._sample_action(
            self._policy_dist(self._feat(deter, stoch)), self.gen_act, mode == "eval"
        )
        next_deter, _, cache = self.tssm.img_step(cache, stoch, action, self.gen_act, is_first)
        self.tssm.train(was_training)
        env_action = (
            action.argmax(-1).cpu().numpy() if self.discrete else action.cpu().numpy().astype(np.float32)
        )
        return env_action, (cache, next_deter)

    # ------------------------------------------------------------------ learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        c = self.config
        if len(replay) < c.batch_length:
            return {}
        if self.ratio_start < 0:
            self.ratio_start = int(step)
        due = 1 + int((int(step) - self.ratio_start) * c.train_ratio / (c.batch_size * c.batch_length))
        metrics = []
        while self.updates < due:
            metrics.append(self.train_batch(replay.sample(c.batch_size, c.batch_length)))
        if not metrics:
            return {}
        return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.config
        obs = self._obs(data)
        action = self._action_input(data["action"])
        B, T = action.shape[:2]
        reward = torch.as_tensor(data["reward"], device=self.device).float().reshape(B, T)
        is_first = torch.as_tensor(data["is_first"], device=self.device).bool().reshape(B, T)
        cont_target = 1.0 - torch.as_tensor(data["is_terminal"], device=self.device).float().reshape(B, T)

        # ---- world model (TSSM, DreamerV3 Eq. 5)
        seq = self.tssm.observe(self.encoder(obs), action, is_first, self.gen_train)
        feat = self._feat(seq["deter"], seq["stoch"])
        recon = self.decoder(seq["deter"], seq["stoch"])
        terms: dict[str, Tensor] = {}
        rec = 0.0
        if "image" in recon:
            terms["loss/image"] = (
                (recon["image"].float() - obs["image"].float() / 255.0).square().sum((-3, -2, -1))
            )
            rec = rec + terms["loss/image"]
        if "vector" in recon:
            terms["loss/vector"] = symlog_mse(recon["vector"], obs["vector"].float())
            rec = rec + terms["loss/vector"]
        terms["loss/reward"] = twohot_loss(self.reward_head(feat), reward, self.bins)
        terms["loss/cont"] = bernoulli_loss(self.cont_head(feat).squeeze(-1), cont_target)
        terms["loss/dyn"], terms["loss/rep"] = self.tssm.kl_losses(seq["post"], seq["prior"], c.free_nats)
        model_loss = (
            rec
            + terms["loss/reward"]
            + terms["loss/cont"]
            + c.loss_dyn * terms["loss/dyn"]
            + c.loss_rep * terms["loss/rep"]
        ).mean()
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        model_gnorm = nn.utils.clip_grad_norm_(list(self.world_model.parameters()), c.model_clip)
        self.model_opt.step()

        # ---- behaviour from every posterior state, each with its own history
        behaviour = self._behaviour(seq, cont_target)
        out = {
            **{k: v.mean().detach() for k, v in terms.items()},
            "loss/model": model_loss.detach(),
            "grad_norm/model": model_gnorm,
            **behaviour,
        }
        values = torch.stack([v.float() for v in out.values()]).tolist()
        bad = [k for k, v in zip(out, values, strict=True) if not math.isfinite(v)]
        if bad:
            raise MethodError(
                f"transdreamer: loss terms {bad} became non-finite at update {self.updates}; resume "
                "from the last checkpoint with smaller learning rates (--set model_lr=... and "
                "--allow-config-change)"
            )
        self.updates += 1
        return dict(zip(out, values, strict=True))

    def _behaviour(self, seq: dict[str, Any], cont_target: Tensor) -> dict[str, Tensor]:
        c = self.config
        with torch.no_grad():
            seq = {k: v.detach() for k, v in seq.items()}  # tensors and the KV cache
            deter, stoch, cache = self.tssm.imagination_start(seq)
            was_training = self.tssm.training
            self.tssm.eval()
            deters, stochs, actions = [deter], [stoch], []
            for _ in range(c.imag_horizon):
                action = self._sample_action(self._policy_dist(self._feat(deter, stoch)), self.gen_train)
                deter, stoch, cache = self.tssm.img_step(cache, stoch, action, self.gen_train)
                deters.append(deter)
                stochs.append(stoch)
                actions.append(action)
            self.tssm.train(was_training)
            feat = self._feat(torch.stack(deters), torch.stack(stochs))  # [H+1, N, F]
            action = torch.stack(actions)
            imag_reward = twohot_mean(self.reward_head(feat[1:]), self.bins)
            cont = torch.cat(
                [cont_target.reshape(1, -1), bernoulli_mode(self.cont_head(feat[1:]).squeeze(-1))]
            )
            slow_value = twohot_mean(self.slow_critic(feat[:-1]), self.bins)
        critic_logits = self.critic(feat)
        value = twohot_mean(critic_logits.detach(), self.bins)
        ret = lambda_return(imag_reward, cont[1:], value, self.gamma, c.lam)
        weight = (torch.cumprod(self.gamma * cont, 0) / self.gamma)[:-1]
        _, scale = self.retnorm(ret)
        adv = (ret - value[:-1]) / scale
        dist = self._policy_dist(feat[:-1])
        if self.discrete:
            logp, entropy = (dist[0] * action).sum(-1), categorical_entropy(dist[0])
        else:
            logp, entropy = normal_log_prob(action, *dist), normal_entropy(dist[1])
        actor_loss = (-(logp * adv + c.actent * entropy) * weight).mean()
        return_term, slowreg_term = twohot_losses(critic_logits[:-1], (ret, slow_value), self.bins)
        critic_loss = ((return_term + c.slowreg * slowreg_term) * weight).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        nn.utils.clip_grad_norm_(list(self.actor.parameters()), c.ac_clip)
        nn.utils.clip_grad_norm_(list(self.critic.parameters()), c.ac_clip)
        self.actor_opt.step()
        self.critic_opt.step()
        ema_update(self.slow_critic, self.critic, c.slow_critic_fraction)
        return {
            "loss/actor": actor_loss.detach(),
            "loss/critic": critic_loss.detach(),
            "imag/return": ret.mean(),
            "imag/reward": imag_reward.mean(),
            "policy/entropy": entropy.mean().detach(),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "memory": self.config.memory,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "retnorm": self.retnorm.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "ratio_start": self.ratio_start,
            "gen_train": self.gen_train.get_state(),
            "gen_act": self.gen_act.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        c = self.config
        if state.get("memory") != c.memory:
            raise MethodError(
                f"transdreamer checkpoint was written with memory={state.get('memory')} (the transformer's context) "
                f"but this run uses memory={c.memory}; run with --set memory={state.get('memory')} or use a new run "
                "directory"
            )
        load_networks("transdreamer", self.nets, c, state)
        self.slow_critic.load_state_dict(state["slow_critic"])  # the same shapes as the critic just loaded
        self.retnorm.load_state_dict(state["retnorm"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates, self.ratio_start = int(state["updates"]), int(state["ratio_start"])
        self.gen_train.set_state(state["gen_train"])
        self.gen_act.set_state(state["gen_act"])


def build_networks(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: TransDreamerConfig
) -> nn.ModuleDict:
    vector_dim = int(obs_space["vector"].shape[0]) if "vector" in obs_space else None
    image_shape = tuple(obs_space["image"].shape) if "image" in obs_space else None
    discrete = isinstance(act_space, gymnasium.spaces.Discrete)
    act_dim = int(act_space.n) if discrete else int(act_space.shape[0])
    encoder = ObsEncoder(vector_dim, image_shape, c.units, 2, c.depth, c.mults, c.kernel, c.norm)
    tssm = TSSM(
        encoder.out_dim,
        act_dim,
        c.stoch,
        c.classes,
        c.width,
        c.layers,
        c.heads,
        c.ff_dim,
        c.memory,
        c.hidden,
        c.dropout,
        c.unimix,
        c.norm,
    )
    feat = tssm.feat_dim
    return nn.ModuleDict(
        {
            "encoder": encoder,
            "tssm": tssm,
            "decoder": ObsDecoder(
                c.width,
                tssm.stoch_dim,
                vector_dim,
                image_shape,
                c.units,
                2,
                c.depth,
                c.mults,
                c.kernel,
                c.norm,
                8,
            ),
            "reward": MLP(feat, c.units, c.head_layers, out_dim=c.bins, norm=c.norm, outscale=0.0),
            "cont": MLP(feat, c.units, c.head_layers, out_dim=1, norm=c.norm),
            "actor": MLP(
                feat,
                c.units,
                c.head_layers,
                out_dim=act_dim if discrete else 2 * act_dim,
                norm=c.norm,
                outscale=0.01,
            ),
            "critic": MLP(feat, c.units, c.head_layers, out_dim=c.bins, norm=c.norm, outscale=0.0),
        }
    )


def parameter_counts(obs_space, act_space, config: TransDreamerConfig) -> dict[str, int]:
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


__all__ = ["TransDreamer", "TransDreamerConfig", "build_networks", "parameter_counts"]
