"""DreamerV2 (Hafner et al. 2021, "Mastering Atari with Discrete World Models", ICLR; arXiv 2010.02193).

The agent as the paper's Sec. 2-3 and Algorithm 1/2 describe it, run here step by step (the runner calls `policy`
every env step and `update` after it):
1. Prefill: the first `prefill` agent steps act uniformly at random; then one update plus `pretrain` updates, then
   `train_steps` updates every `train_every` agent steps on batches of `batch_size` x `batch_length` replayed steps
   (official `train.py`).
2. World model learning (Sec. 2): stride-2 ELU CNN encoder; RSSM with a 600-unit GRU (LayerNorm on its gates) and
   32 categorical latents of 32 classes, sampled with straight-through gradients (Algorithm 1); image decoder
   (unit-variance Gaussian), reward MLP (Gaussian; rewards through tanh on Atari) and discount MLP (Bernoulli with
   target gamma (1 - terminal)). Loss (Eq. 2): reconstruction + reward + 5 x discount + beta x KL, where the KL
   is balanced (Algorithm 2): alpha KL[sg(q) || p] + (1 - alpha) KL[q || sg(p)], alpha 0.8, each term clipped below
   `kl_free` nats on its batch mean (official `free_avg`).
3. Behaviour learning (Sec. 3), with the world model already stepped: imagine H = 15 steps from every posterior
   state; rewards and discounts from the heads (the start state's discount from the data); the slow target critic
   v' gives the lambda-returns V^lambda (Eq. 4) and the REINFORCE baseline. Actor loss (Eq. 6):
   -rho ln pi(a_t | z_t) sg(V^lambda_{t+1} - v'(z_t)) - (1 - rho) V^lambda_{t+1} - eta H[pi(. | z_t)],
   weighted by the cumulative predicted discount; rho = 1 (REINFORCE) for discrete actions and rho = 0 (dynamics
   backpropagation) for continuous ones (`actor_grad` auto). Critic loss (Eq. 5): squared error towards
   sg(V^lambda_t). The target critic is a copy of the critic refreshed every 100 updates.
4. Acting: the belief filter every step; training actions are samples of the actor (one-hot categorical, or a
   Normal truncated to [-1, 1] with mean tanh(x) and std 2 sigmoid(x / 2) + 0.1), evaluation its mode.

Optimisers (Table D.1): Adam with eps 1e-5, global-norm clip 100 and decoupled weight decay 1e-6 (official
`Optimizer`: every variable times (1 - 1e-6) per step = torch AdamW with weight_decay = 1e-6 / lr).

Defaults are the paper's Atari hyper-parameters (Table D.1); `PROTOCOL_DEFAULTS["dmc_vision"]` holds the official
`dmc_vision` config (danijar/dreamerv2 07d906e, configs.yaml), the settings behind the shipped DMC curves.
docs/dreamerv2.md lists every source and every known difference.
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
)
from wmbench.nn.networks import MLP, StridedConvDecoder, StridedConvEncoder
from wmbench.nn.optim import decoupled_adamw, step_each
from wmbench.nn.returns import ema_update
from wmbench.nn.rssm import RSSM
from wmbench.nn.world_model import (
    StepSchedule,
    finite_values,
    image_kernels,
    load_networks,
    pixel_control_support,
    preprocess_image,
)
from wmbench.seeding import derive_seed

GAUSSIAN_LATENT_KEYS = ("latent", "min_std", "std_act", "free_nats", "overshooting")


def _discrete_latent_key_notes() -> dict[str, str]:
    note = (
        "DreamerV2's latents are categorical only (stoch={stoch} groups of classes={classes}, straight-through "
        "gradients, Hafner et al. 2021 Sec. 2); {key!r} is a Gaussian-latent (PlaNet / Dreamer v1) setting. For "
        "Gaussian latents use `wmbench run dreamerv1 ...` or `planet`; DreamerV2's KL settings are kl_balance, "
        "kl_free and loss_kl."
    )
    return {key: note.format(stoch=32, classes=32, key=key) for key in GAUSSIAN_LATENT_KEYS}


# the official dmc_vision config (danijar/dreamerv2 07d906e, dreamerv2/configs.yaml `dmc_vision` over `defaults`)
DMC_VISION = {
    "deter": 200, "hidden": 200, "reward_transform": "identity", "pred_discount": False, "loss_kl": 1.0,
    "kl_free": 1.0, "model_lr": 3e-4, "actor_lr": 8e-5, "critic_lr": 8e-5, "actor_ent": 1e-4, "gamma": 0.99,
    "batch_size": 16, "batch_length": 50, "train_every": 5, "prefill": 1000, "pretrain": 100,
}


@dataclass(frozen=True)
class DreamerV2Config:
    """The paper's Atari hyper-parameters (Table D.1; official configs.yaml where the table is silent); DMC vision
    settings per protocol; preset `tiny` for tests."""

    PROTOCOL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"dmc_vision": DMC_VISION}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # CPU learning runs: the paper's structure with a third of the CNN channels and half-width MLPs
        "cpu": {"depth": 16, "units": 200},
        # tests only: well under a second per update on 16x16 images
        "tiny": {
            "deter": 16, "hidden": 16, "stoch": 4, "classes": 4, "depth": 4, "units": 16, "layers": 1,
            "batch_size": 4, "batch_length": 8, "imag_horizon": 3, "prefill": 100, "pretrain": 0, "train_every": 5,
        },
    }
    KEY_NOTES: ClassVar[dict[str, str]] = _discrete_latent_key_notes()
    preset: str = "paper"
    # --- world model (Sec. 2, Table D.1; official `rssm`, `encoder`, `decoder`, `*_head`)
    deter: int = bounded(600, low=1)
    hidden: int = bounded(600, low=1)
    stoch: int = bounded(32, low=1)
    classes: int = bounded(32, low=2)
    depth: int = bounded(48, low=1)
    enc_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 4, 4, 4, 4
    dec_kernels: tuple[int, ...] = ()  # () = by image size; 64x64: 5, 5, 6, 6
    units: int = bounded(400, low=1)
    layers: int = bounded(4, low=0)  # reward, discount, actor and critic MLPs
    pred_discount: bool = True  # discount head (Atari); DMC uses gamma everywhere
    reward_transform: Literal["tanh", "identity"] = "tanh"
    # --- world-model loss (Eq. 2, Algorithm 2)
    loss_kl: float = bounded(0.1, low=0)  # beta
    kl_balance: float = bounded(0.8, low=0, high=1)  # alpha
    kl_free: float = bounded(0.0, low=0)
    loss_image: float = bounded(1.0, low=0)
    loss_reward: float = bounded(1.0, low=0)
    loss_discount: float = bounded(5.0, low=0)
    # --- behaviour (Sec. 3)
    imag_horizon: int = bounded(15, low=2, high=1000)
    gamma: float = bounded(0.995, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    actor_grad: Literal["auto", "reinforce", "dynamics"] = "auto"  # auto: reinforce (discrete), dynamics (continuous)
    actor_ent: float = bounded(1e-3, low=0)  # eta
    actor_min_std: float = bounded(0.1, above=0)
    actor_init_std: float = 0.0
    slow_critic_every: int = bounded(100, low=1)
    slow_critic_fraction: float = bounded(1.0, above=0, high=1)
    # --- optimisers (Table D.1)
    model_lr: float = bounded(2e-4, low=0, high=1)
    actor_lr: float = bounded(4e-5, low=0, high=1)
    critic_lr: float = bounded(1e-4, low=0, high=1)
    adam_eps: float = bounded(1e-5, above=0)
    grad_clip: float = bounded(100.0, above=0)
    weight_decay: float = bounded(1e-6, low=0, high=0.5)
    # --- schedule (Table D.1 "policy steps per gradient step" 4; official train.py prefill / pretrain)
    batch_size: int = bounded(50, low=1, high=65536)
    batch_length: int = bounded(50, low=2, high=4096)
    train_every: int = bounded(4, low=1)
    train_steps: int = bounded(1, low=1)
    prefill: int = bounded(50000, low=0)
    pretrain: int = bounded(1, low=0)


def build_networks(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: DreamerV2Config) -> nn.ModuleDict:
    """Encoder, RSSM, decoder, reward (and discount) heads, actor and critic; ELU everywhere, Glorot-variance init."""
    shape = tuple(obs_space["image"].shape)
    discrete = isinstance(act_space, gymnasium.spaces.Discrete)
    act_dim = int(act_space.n) if discrete else int(act_space.shape[0])
    try:
        enc_k, dec_k = image_kernels(shape, c.enc_kernels, c.dec_kernels)
        encoder = StridedConvEncoder(shape, c.depth, enc_k, act="elu")
        rssm = RSSM(
            encoder.out_dim, act_dim, c.deter, c.hidden, c.stoch, c.classes, latent="categorical", blocks=1,
            norm="none", unimix=0.0, img_layers=1, obs_layers=1, core="dense", fan="avg", act="elu", gru_norm="layer",
        )
        decoder = StridedConvDecoder(rssm.feat_dim, shape, c.depth, dec_k, act="elu")
    except ValueError as e:
        raise ConfigError(f"dreamerv2: {e}") from e
    rssm.gru_norm.eps = 1e-3  # Keras LayerNormalization's default epsilon (official GRUCell)
    feat = rssm.feat_dim
    dense = {"norm": "none", "act": "elu", "fan": "avg"}
    nets = {"encoder": encoder, "rssm": rssm, "decoder": decoder,
            "reward": MLP(feat, c.units, c.layers, out_dim=1, **dense)}
    if c.pred_discount:
        nets["discount"] = MLP(feat, c.units, c.layers, out_dim=1, **dense)
    nets["actor"] = MLP(feat, c.units, c.layers, out_dim=act_dim if discrete else 2 * act_dim, **dense)
    nets["critic"] = MLP(feat, c.units, c.layers, out_dim=1, **dense)
    return nn.ModuleDict(nets)


def parameter_counts(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: DreamerV2Config) -> dict[str, int]:
    """Trained parameters per network (built on the meta device); the slow critic is a copy and not counted."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


class DreamerV2(Method):
    name = "dreamerv2"
    Config = DreamerV2Config

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("DreamerV2", obs_space, act_space, allow_discrete=True)

    def __init__(self, obs_space, act_space, config: DreamerV2Config | None = None, device: str = "cpu", seed: int = 0):
        config = config if config is not None else DreamerV2Config()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        for key in ("imag_horizon", "batch_size", "batch_length", "train_every"):
            value = getattr(c, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dreamerv2: {key} must be a positive integer, got {value!r} (e.g. --set {key}=15)")
        self.device = torch.device(device)
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.act_dim = int(act_space.n) if self.discrete else int(act_space.shape[0])
        self.dynamics_grad = c.actor_grad == "dynamics" or (c.actor_grad == "auto" and not self.discrete)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "dreamerv2/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        n = self.nets
        self.encoder, self.rssm, self.decoder, self.reward_head = n["encoder"], n["rssm"], n["decoder"], n["reward"]
        self.discount_head = n["discount"] if c.pred_discount else None
        self.actor, self.critic = n["actor"], n["critic"]
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.world_model = nn.ModuleList([m for m in (self.encoder, self.rssm, self.decoder, self.reward_head,
                                                      self.discount_head) if m is not None])
        self.model_opt = self._adamw(self.world_model.parameters(), c.model_lr)
        self.actor_opt = self._adamw(self.actor.parameters(), c.actor_lr)
        self.critic_opt = self._adamw(self.critic.parameters(), c.critic_lr)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerv2/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerv2/act"))
        self.updates = 0  # gradient updates done
        self.schedule = StepSchedule(c.prefill, c.pretrain, c.train_every, c.train_steps, c.batch_size, c.batch_length)

    @property
    def acted(self) -> int:
        """Agent steps acted outside evaluation (the prefill counts them)."""
        return self.schedule.acted

    def _adamw(self, params, lr: float) -> torch.optim.Optimizer:
        c = self.config
        return decoupled_adamw(params, lr, c.adam_eps, c.weight_decay)

    # ------------------------------------------------------------------ actor p(a | z)
    def policy_dist(self, deter: Tensor, stoch: Tensor) -> tuple[Tensor, ...]:
        """(log-probs,) of the one-hot categorical, or (mean, std) of the Normal truncated to [-1, 1] with mean
        tanh(x) and std 2 sigmoid((x + init) / 2) + min_std (official `DistLayer` 'onehot' / 'trunc_normal')."""
        out = self.actor(torch.cat([deter, stoch], -1))
        if self.discrete:
            return (torch.log_softmax(out, -1),)
        return trunc_normal_params(out, self.config.actor_init_std, self.config.actor_min_std)

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
        if self.schedule.act_randomly(batch, mode):  # uniform random actions until the replay holds the prefill
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
        deter, stoch, _ = self.rssm.obs_step(deter, stoch, prev_action, self.encoder(image), is_first, self.gen_act)
        action = self.sample_action(self.policy_dist(deter, stoch), self.gen_act, mode=mode == "eval")
        if self.discrete:
            env_action = action.argmax(-1).cpu().numpy()
        else:
            env_action = action.cpu().numpy().astype(np.float32)
        return env_action, (deter, stoch, action)

    # ------------------------------------------------------------------ learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """After the prefill: 1 + `pretrain` updates once, then `train_steps` updates every `train_every` steps."""
        return self.schedule.train(replay, step, self.train_batch)

    def _action_input(self, action: np.ndarray, shape: tuple[int, ...]) -> Tensor:
        a = torch.as_tensor(action, device=self.device)
        if self.discrete:
            return F.one_hot(a.long().reshape(shape), self.act_dim).float()
        return a.float().reshape(*shape, self.act_dim)

    def world_model_loss(self, data: dict[str, np.ndarray]) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Eq. 2 on a [B, L] batch: (loss, per-term means, posterior sequence)."""
        c = self.config
        image = torch.as_tensor(data["image"], device=self.device)
        shape = tuple(image.shape[:2])
        action = self._action_input(data["action"], shape)
        reward = torch.as_tensor(data["reward"], device=self.device).float().reshape(shape)
        is_first = torch.as_tensor(data["is_first"], device=self.device).bool().reshape(shape)
        is_terminal = torch.as_tensor(data["is_terminal"], device=self.device).float().reshape(shape)
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)  # a_{t-1} leads to z_t
        seq = self.rssm.observe(self.encoder(image), prev_action, is_first, generator=self.gen_train)
        feat = torch.cat([seq["deter"], seq["stoch"]], -1)
        target = preprocess_image(image, 8, None, dequantise=False)  # x / 255 - 0.5
        terms = {"loss/image": 0.5 * (self.decoder(feat) - target).square().sum((-3, -2, -1)).mean()}
        reward_target = torch.tanh(reward) if c.reward_transform == "tanh" else reward
        terms["loss/reward"] = 0.5 * (self.reward_head(feat).squeeze(-1) - reward_target).square().mean()
        loss = c.loss_image * terms["loss/image"] + c.loss_reward * terms["loss/reward"]
        if self.discount_head is not None:
            discount_target = c.gamma * (1.0 - is_terminal)
            terms["loss/discount"] = bernoulli_loss(self.discount_head(feat).squeeze(-1), discount_target).mean()
            loss = loss + c.loss_discount * terms["loss/discount"]
        # KL balancing (Algorithm 2): the prior moves towards the posterior (weight alpha) faster than the
        # posterior towards the prior (1 - alpha); free nats on each batch mean (official kl.free_avg)
        kl_loss, rep = self.rssm.balanced_kl_loss(seq["post"], seq["prior"], c.kl_balance, c.kl_free)
        terms.update({"kl": rep.detach().mean(), "loss/kl": kl_loss})
        loss = loss + c.loss_kl * kl_loss
        seq["cont"] = 1.0 - is_terminal
        return loss, terms, seq

    def imagine(self, start_deter: Tensor, start_stoch: Tensor) -> tuple[Tensor, Tensor, list[tuple[Tensor, ...]]]:
        """z_0..z_H from each start state under the actor, which sees sg(z): feat [H+1, N, F], actions [H, N, A]
        (action t taken at z_t) and the actor's distribution at z_0..z_H-1. Differentiable through the dynamics
        (straight-through latents, reparameterised actions) unless run under no_grad."""
        deter, stoch = start_deter, start_stoch
        feats, actions, dists = [torch.cat([deter, stoch], -1)], [], []
        for _ in range(self.config.imag_horizon):
            dist = self.policy_dist(deter.detach(), stoch.detach())
            action = self.sample_action(dist, self.gen_train)
            deter, stoch, _ = self.rssm.img_step(deter, stoch, action, self.gen_train)
            feats.append(torch.cat([deter, stoch], -1))
            actions.append(action)
            dists.append(dist)
        return torch.stack(feats), torch.stack(actions), dists

    def behaviour_losses(self, seq: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Actor (Eq. 6) and critic (Eq. 5) losses from H-step imagination started at every posterior state."""
        c = self.config
        start_deter = seq["deter"].detach().flatten(0, 1)
        start_stoch = seq["stoch"].detach().flatten(0, 1)
        wm_params = [p for p in self.world_model.parameters() if p.requires_grad]
        for p in wm_params:  # gradients may flow through the world model (dynamics backprop) but never into it
            p.requires_grad_(False)
        try:
            with torch.set_grad_enabled(self.dynamics_grad):
                feat, action, dists = self.imagine(start_deter, start_stoch)
                reward = self.reward_head(feat).squeeze(-1)  # r(z_t), mode of the unit-variance Gaussian
                if self.discount_head is not None:  # predicted discount; the start state's from the data
                    disc = torch.sigmoid(self.discount_head(feat[1:]).squeeze(-1))
                    disc = torch.cat([c.gamma * seq["cont"].flatten()[None], disc])
                else:
                    disc = torch.full_like(reward, c.gamma)
                target_value = self.slow_critic(feat).squeeze(-1)
                # Eq. 4: V_t = r_t + d_t ((1 - lambda) v'(z_t+1) + lambda V_t+1), V_H = v'(z_H); weight of state t:
                # probability of still being in the episode, prod_{k<t} d_k (official `weight`)
                ret, weight = discounted_lambda_targets(reward[:-1], disc[:-1], target_value, c.lam)
        finally:
            for p in wm_params:
                p.requires_grad_(True)
        # the actor at z_0..z_H-2 (its last action leads nowhere that has a target), targets V_1..V_H-1
        if self.dynamics_grad:
            dist = tuple(torch.stack(parts[:-1]) for parts in zip(*dists, strict=True))
            _, entropy = self.action_terms(dist, action[:-1].detach())
            objective = ret[1:]
        else:
            dist = self.policy_dist(*feat[:-2].split([self.rssm.deter, self.rssm.stoch_dim], -1))
            logp, entropy = self.action_terms(dist, action[:-1])
            advantage = (ret[1:] - target_value[:-2]).detach()  # baseline: the target critic v'(z_t)
            objective = logp * advantage
        actor_loss = weighted_actor_loss(objective, entropy, weight, c.actor_ent)  # states z_0..z_H-2
        critic_loss = weighted_critic_loss(self.critic, feat, ret, weight)  # states z_0..z_H-1
        stats = {"imag/return": ret.detach().mean(), "imag/reward": reward.detach().mean(),
                 "policy/entropy": entropy.detach().mean()}
        return actor_loss, critic_loss, stats

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One update: the world model steps first, then actor and critic learn in its imagination (official
        `Agent.train`)."""
        c = self.config
        model_loss, terms, seq = self.world_model_loss(data)
        model_values = finite_values("dreamerv2", {**terms, "loss/model": model_loss}, self.updates, ["model_lr"])
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        model_norm = nn.utils.clip_grad_norm_(self.world_model.parameters(), c.grad_clip)
        self.model_opt.step()

        actor_loss, critic_loss, stats = self.behaviour_losses(seq)
        behaviour_values = finite_values(
            "dreamerv2", {"loss/actor": actor_loss, "loss/critic": critic_loss}, self.updates, ["actor_lr", "critic_lr"]
        )
        actor_norm, critic_norm = step_each(
            [(actor_loss, list(self.actor.parameters()), self.actor_opt),
             (critic_loss, list(self.critic.parameters()), self.critic_opt)], c.grad_clip)
        if self.updates % c.slow_critic_every == 0:  # the first update copies; then every 100 (official)
            ema_update(self.slow_critic, self.critic, 1.0 if self.updates == 0 else c.slow_critic_fraction)
        self.updates += 1
        extra = {"grad_norm/model": model_norm, "grad_norm/actor": actor_norm, "grad_norm/critic": critic_norm, **stats}
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
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state()},
            "counters": {"updates": self.updates, "acted": self.schedule.acted, "next_train": self.schedule.next_train},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("dreamerv2", self.nets, self.config, state)
        self.slow_critic.load_state_dict(state["slow_critic"])
        for name in ("model_opt", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        counters = state["counters"]
        self.updates = int(counters["updates"])
        self.schedule.acted, self.schedule.next_train = int(counters["acted"]), int(counters["next_train"])


__all__ = ["DMC_VISION", "DreamerV2", "DreamerV2Config", "build_networks", "parameter_counts"]
