"""DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains through World Models"), CPU-fast PyTorch.

Read top to bottom like the paper's algorithm: a world model (encoder, RSSM, decoder, reward and continue heads)
learns from replayed sequences; an actor and a critic learn from 15-step imagined rollouts started at every
posterior state of the batch.

Which generation (the defaults; docs/dreamerv3.md has the table, and `wmbench list methods` the recipes that set
every key as one official release did): the *losses, optimisers and behaviour learning* are those of the 2023
paper and its code (arXiv v1; danijar/dreamerv3 of 2023, the release behind the shipped DMC proprio curves):
beta_dyn 0.5, beta_rep 0.1, free bits 1 nat; Adam with lr 1e-4 / eps 1e-8 / global-norm clip 1000 for the world
model and lr 3e-5 / eps 1e-5 / clip 100 for actor and critic; percentile return normalisation (EMA decay 0.99);
slow-critic regulariser (EMA fraction 0.02). The *actor gradient* is REINFORCE for every action space, as in the
2024 release (`actor_grad_cont=backprop` gives the 2023 code's gradient through the dynamics for continuous
actions). The *network layout and size presets* are those of the 2024 release (RMSNorm + SiLU, block-diagonal GRU
core, kernel-5 CNN, `size1m` ... `size400m`), whose parameter counts the paper's model-size table states.

Options give either release's pieces: `rssm_core=dense`, `initial=learned`, `bias=false`, `norm=layer`,
`norm_eps`, `init_fan=avg`, `enc_units`/`enc_layers`, `prefill`, `carry_state` (2023); `optimizer=laprop` with `agc` and
`warmup`, `loss_dyn=1.0`, `contdisc=true`, `loss_repval=0.3`, `joint_update=true`, `replay_context=1`,
`replay_online=true` (2024).

Losses, each under its name in the metrics: world model `loss/image`, `loss/vector`, `loss/reward`, `loss/cont`,
`loss/dyn`, `loss/rep` (Eq. 5); actor `loss/actor` (REINFORCE or backprop term plus entropy bonus); critic
`loss/critic` = `loss/critic_return` (two-hot towards the lambda-return) + slowreg x `loss/critic_slowreg`
(towards the slow critic), plus `loss_repval` x `loss/repval` (the same two terms on the replayed states, 2024).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, differing_keys, to_dict
from wmbench.errors import WmbenchError
from wmbench.method import Method, MethodError
from wmbench.nn.distributions import (
    bernoulli_loss,
    bernoulli_mode,
    bounded_normal,
    categorical_entropy,
    mode_onehot,
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
from wmbench.nn.networks import MLP, Norm, ObsDecoder, ObsEncoder
from wmbench.nn.optim import LaProp, global_norm
from wmbench.nn.returns import PercentileNormalizer, ema_update, lambda_return, replay_lambda_return
from wmbench.nn.rssm import RSSM
from wmbench.seeding import derive_seed


def _size(deter: int, hidden: int, classes: int, depth: int, units: int) -> dict[str, Any]:
    return {"deter": deter, "hidden": hidden, "classes": classes, "depth": depth, "units": units}


@dataclass(frozen=True)
class DreamerV3Config:
    """Paper defaults; sizes default to `size12m` (the smallest size in the paper's table). On CPU use `xs` or
    `size1m` (the official DMC-proprio size)."""

    # Replay ratio per benchmark as in the official 2023 configs (run.train_ratio): applied for those protocols
    # before any preset and --set, and recorded in run.json's config.
    PROTOCOL_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "atari100k": {"train_ratio": 1024.0},
        "dmc_proprio": {"train_ratio": 512.0},
        "dmc_vision": {"train_ratio": 512.0},
    }
    # keys that do not change what is computed, ignored when a run is compared with a recipe
    RECIPE_IGNORED: ClassVar[frozenset[str]] = frozenset({"compile"})
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # tests only: seconds per update, < 0.2M parameters
        "tiny": {
            **_size(64, 32, 4, 4, 32),
            "stoch": 4, "blocks": 4, "layers": 1, "img_layers": 1, "mults": (2, 2), "bspace": 4,
            "batch_size": 2, "batch_length": 16, "imag_horizon": 5, "train_ratio": 8.0,
        },
        # the peers' CPU benchmark configuration ("XS" of the 2023 paper's table with 1-layer MLPs)
        "xs": {**_size(256, 256, 32, 16, 256), "layers": 1, "img_layers": 1},
        # the 2023 release's configs.yaml `small` (danijar/dreamerv3 8fa35f8; the size of its dmc_proprio,
        # dmc_vision and atari100k configs): deter 512; the pattern `.*\.units: 512` sets the RSSM hidden size and
        # the actor, critic, reward and continue heads, `.*\.layers: 2` their depth, but matches neither
        # `encoder.mlp_units` nor `mlp_layers`, so the vector encoder and decoder keep the defaults 5 x 1024
        "small2023": {
            **_size(512, 512, 32, 32, 512), "stoch": 32, "layers": 2, "head_layers": 2,
            "enc_units": 1024, "enc_layers": 5,
        },
        # the 2024 release's configs.yaml presets (3 MLP layers, 32 latents, 8 blocks)
        "size1m": _size(512, 64, 4, 4, 64),
        "size12m": _size(2048, 256, 16, 16, 256),
        "size25m": _size(3072, 384, 24, 24, 384),
        "size50m": _size(4096, 512, 32, 32, 512),
        "size100m": _size(6144, 768, 48, 48, 768),
        "size200m": _size(8192, 1024, 64, 64, 1024),
        "size400m": _size(12288, 1536, 96, 96, 1536),
    }
    preset: str = "size12m"
    # --- model size (set by presets)
    deter: int = 2048
    hidden: int = 256
    stoch: int = 32
    classes: int = 16
    blocks: int = 8
    units: int = 256
    layers: int = 3  # encoder, decoder, actor, critic MLP layers
    head_layers: int = 1  # reward and continue heads
    img_layers: int = 2  # prior MLP layers
    obs_layers: int = 1  # posterior MLP layers
    depth: int = 16  # CNN base channels (x mults)
    mults: tuple[int, ...] = (2, 3, 4, 4)
    kernel: int = 5
    bspace: int = 8
    latent: Literal["categorical", "gaussian"] = "categorical"
    norm: Literal["rms", "layer"] = "rms"
    norm_eps: float = 1e-4  # epsilon of every norm (2024 1e-4; 2023 LayerNorm 1e-3)
    rssm_core: Literal["block", "dense"] = "block"  # 2024 block-diagonal GRU; "dense" = 2023 GRU with LayerNorm
    initial: Literal["zeros", "learned"] = "zeros"  # RSSM initial state: 2024 zeros; 2023 learned (tanh(w), mode z)
    bias: bool = True  # biases of normalised hidden layers (2024 yes; 2023 no, the LayerNorm offset replaces them)
    init_fan: Literal["in", "avg"] = "in"  # weight init variance 1/fan_in (2024) or 1/mean(fan_in, fan_out) (2023)
    enc_units: int = 0  # vector encoder/decoder MLP width (0: `units`; the 2023 DMC config keeps 1024 there)
    enc_layers: int = 0  # vector encoder/decoder MLP depth (0: `layers`; 2023 DMC: 5)
    unimix: float = 0.01
    bins: int = 255
    # --- world-model loss (2023 paper, Eq. 5; the 2024 release uses loss_dyn 1.0)
    free_nats: float = 1.0
    loss_rec: float = 1.0
    loss_rew: float = 1.0
    loss_con: float = 1.0
    loss_dyn: float = 0.5
    loss_rep: float = 0.1
    # --- optimisers: "adam" (2023 paper, Table W.1) with global-norm clips; "laprop" (2024 release: LaProp with
    # adaptive gradient clipping `agc` per parameter instead of the clips, and a linear lr warm-up of `warmup`
    # updates; eps/lr from the *_eps/*_lr keys)
    optimizer: Literal["adam", "laprop"] = "adam"
    agc: float = bounded(0.3, above=0)
    warmup: int = bounded(0, low=0)
    beta1: float = bounded(0.9, low=0, high=1)
    beta2: float = bounded(0.999, low=0, high=1)
    model_lr: float = bounded(1e-4, low=0, high=1)  # 0 freezes the network (used by tests)
    model_eps: float = 1e-8
    model_clip: float = 1000.0
    actor_lr: float = bounded(3e-5, low=0, high=1)
    actor_eps: float = 1e-5
    actor_clip: float = 100.0
    critic_lr: float = bounded(3e-5, low=0, high=1)
    critic_eps: float = 1e-5
    critic_clip: float = 100.0
    # --- behaviour learning
    imag_horizon: int = bounded(15, low=1, high=1000)
    horizon: int = 333  # discount gamma = 1 - 1/horizon = 0.997
    lam: float = 0.95
    # continue-probability discounting (2024 `contdisc`): the continue head learns (1 - terminal) * gamma and the
    # imagined returns discount by its probability alone; False (2023): gamma * mode of the continue head
    contdisc: bool = False
    # replay-value loss weight (2024 `repval`, 0.3): the critic also regresses bootstrapped lambda-returns of the
    # replayed sequence; 0 (2023) turns it off
    loss_repval: float = 0.0
    # 2024 update order: every loss is computed with the parameters before the update (behaviour imagines with the
    # world model not yet stepped) and all networks step together; the replay-value loss then also trains the world
    # model (official repval_grad). False (2023): the world model steps first, behaviour uses the stepped model
    joint_update: bool = False
    actent: float = 3e-4
    actor_grad_disc: Literal["reinforce", "backprop"] = "reinforce"
    actor_grad_cont: Literal["reinforce", "backprop"] = "reinforce"  # 2024 release; "backprop" = 2023
    actor_outscale: float = 0.01
    minstd: float = 0.1
    maxstd: float = 1.0
    retnorm_decay: float = 0.99
    retnorm_limit: float = 1.0
    retnorm_low: float = 5.0
    retnorm_high: float = 95.0
    slowreg: float = 1.0
    slow_critic_fraction: float = 0.02
    slow_critic_every: int = 1
    # --- schedule: replayed steps per agent step (official: 32 default, 512 DMC 2023, 1024 Atari100k 2023 /
    # 256 Atari100k 2024); training starts once the replay holds max(train_fill, batch_length) steps
    batch_size: int = bounded(16, low=1, high=65536)
    batch_length: int = bounded(64, low=2, high=4096)  # longer sequences: no training in any protocol budget
    train_ratio: float = bounded(32.0, above=0, high=1e6)
    train_fill: int = bounded(0, low=0)
    prefill: int = bounded(0, low=0)  # first agent steps act uniformly at random (2023 code: random agent until B x T steps)
    # each replayed batch row starts from the last posterior state and action of the previous batch's row (2023
    # code: the `state` returned by WorldModel.train); False: from the initial state
    carry_state: bool = False
    # 2024 replay context (official `replay_context`): each replayed sequence has this many extra leading steps;
    # the latent stored with the last of them (written when acting, refreshed by every training pass that replays
    # the step) is the start state, and the batch trains on the batch_length steps after them. 0: off
    replay_context: int = bounded(0, low=0, high=64)
    # 2024 online queue (official `replay.online`): every new window of replayed length is in one batch once,
    # as soon as it is complete, besides the uniform samples
    replay_online: bool = False
    # --- compute
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False


class NonFiniteLossError(WmbenchError, FloatingPointError):
    """A DreamerV3 loss became NaN/inf; the message names the update, the loss term and how to resume."""


@contextmanager
def _frozen(*modules: nn.Module):
    """Temporarily stop gradients into these modules' parameters (gradients still flow through them)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def build_networks(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: DreamerV3Config) -> nn.ModuleDict:
    """All trained networks (encoder, rssm, decoder, reward, cont, actor, critic) for these spaces."""
    vector_dim = int(obs_space["vector"].shape[0]) if "vector" in obs_space else None
    image_shape = tuple(obs_space["image"].shape) if "image" in obs_space else None
    discrete = isinstance(act_space, gymnasium.spaces.Discrete)
    act_dim = int(act_space.n) if discrete else int(act_space.shape[0])
    enc_units, enc_layers = c.enc_units or c.units, c.enc_layers or c.layers
    encoder = ObsEncoder(
        vector_dim, image_shape, enc_units, enc_layers, c.depth, c.mults, c.kernel, c.norm, c.bias, c.init_fan
    )
    rssm = RSSM(
        encoder.out_dim, act_dim, c.deter, c.hidden, c.stoch, c.classes, c.latent, c.blocks, c.norm, c.unimix,
        c.img_layers, c.obs_layers, core=c.rssm_core, initial=c.initial, bias=c.bias, fan=c.init_fan,
    )
    feat = rssm.feat_dim
    mlp = {"bias": c.bias, "fan": c.init_fan}
    nets = nn.ModuleDict(
        {
            "encoder": encoder,
            "rssm": rssm,
            "decoder": ObsDecoder(
                c.deter, rssm.stoch_dim, vector_dim, image_shape, enc_units, enc_layers, c.depth, c.mults, c.kernel,
                c.norm, c.bspace, c.bias, c.init_fan,
            ),
            # zero-initialised output layers: predicted rewards/values start at exactly 0 (Sec. 2)
            "reward": MLP(feat, c.units, c.head_layers, out_dim=c.bins, norm=c.norm, outscale=0.0, **mlp),
            "cont": MLP(feat, c.units, c.head_layers, out_dim=1, norm=c.norm, **mlp),
            "actor": MLP(feat, c.units, c.layers, out_dim=act_dim if discrete else 2 * act_dim, norm=c.norm,
                         outscale=c.actor_outscale, **mlp),
            "critic": MLP(feat, c.units, c.layers, out_dim=c.bins, norm=c.norm, outscale=0.0, **mlp),
        }
    )
    for module in nets.modules():  # one epsilon for every norm, as both official releases use
        if isinstance(module, Norm):
            module.eps = c.norm_eps
    return nets


class DreamerV3(Method):
    name = "dreamerv3"
    Config = DreamerV3Config

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        keys = set(obs_space) - {"image", "vector"}
        if keys:
            return f"observation entries {sorted(keys)} are not supported (only 'image' and 'vector')"
        if not obs_space:
            return "no observation entries"
        if "image" in obs_space:
            s = obs_space["image"]
            if len(s.shape) != 3 or s.dtype != np.uint8:
                return f"'image' must be uint8 HxWxC, got shape {s.shape} dtype {s.dtype}"
        if "vector" in obs_space and len(obs_space["vector"].shape) != 1:
            return f"'vector' must be 1-D, got shape {obs_space['vector'].shape}"
        if isinstance(act_space, gymnasium.spaces.Discrete):
            return None
        if isinstance(act_space, gymnasium.spaces.Box):
            if len(act_space.shape) != 1:
                return f"Box actions must be 1-D, got shape {act_space.shape}"
            if not (np.all(act_space.low == -1) and np.all(act_space.high == 1)):
                return "Box actions must lie in [-1, 1] (the env contract normalises them)"
            return None
        return f"action space {act_space} is not supported (Discrete or Box in [-1, 1])"

    def __init__(self, obs_space, act_space, config: DreamerV3Config | None = None, device: str = "cpu", seed: int = 0):
        config = config if config is not None else DreamerV3Config()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        if "image" in obs_space:
            h, w, _ = obs_space["image"].shape
            factor = 2 ** len(c.mults)
            if h % factor or w % factor or not (3 <= h // factor <= 16 and 3 <= w // factor <= 16):
                raise ConfigError(
                    f"image size {h}x{w} does not fit mults={c.mults}: {len(c.mults)} 2x poolings must end at 3..16 "
                    f"pixels; set --set mults=... with a different number of stages"
                )
        self.device = torch.device(device)
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.act_dim = int(act_space.n) if self.discrete else int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "dreamerv3/init"))
            nets = build_networks(obs_space, act_space, c)
        self.nets = nets.to(self.device)
        self.encoder, self.rssm, self.decoder = nets["encoder"], nets["rssm"], nets["decoder"]
        self.reward_head, self.cont_head = nets["reward"], nets["cont"]
        self.actor, self.critic = nets["actor"], nets["critic"]
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.world_model = nn.ModuleList([self.encoder, self.rssm, self.decoder, self.reward_head, self.cont_head])
        self.retnorm = PercentileNormalizer(c.retnorm_decay, c.retnorm_limit, c.retnorm_low, c.retnorm_high).to(self.device)
        self.bins = symlog_bins(c.bins, device=self.device)
        self.model_opt = self._optimizer(self.world_model.parameters(), c.model_lr, c.model_eps)
        self.actor_opt = self._optimizer(self.actor.parameters(), c.actor_lr, c.actor_eps)
        self.critic_opt = self._optimizer(self.critic.parameters(), c.critic_lr, c.critic_eps)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerv3/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "dreamerv3/act"))
        self.gamma = 1.0 - 1.0 / c.horizon
        # discount of imagined returns: gamma x continue mode (2023), or the continue probability alone, whose
        # target already holds gamma (2024 contdisc)
        self.disc = 1.0 if c.contdisc else self.gamma
        grad = c.actor_grad_disc if self.discrete else c.actor_grad_cont
        self.backprop_actor = grad == "backprop"
        self.updates = 0  # gradient updates done
        self.acted = 0  # agent steps acted in train mode (for the random prefill)
        self.carry: tuple[Tensor, Tensor, Tensor] | None = None  # (deter, stoch, action) ending the last batch
        if c.carry_state and c.replay_context:
            raise MethodError(
                "dreamerv3: carry_state (2023) and replay_context (2024) both choose the start state of a replayed "
                "sequence; set one of them (--set carry_state=false or --set replay_context=0)"
            )
        # replay context: posterior latents of the acted steps not yet written into the replay (deter, stoch)
        self.acted_latents: list[tuple[np.ndarray, np.ndarray]] = []
        self.fresh_latents: dict[str, np.ndarray] | None = None  # the last training pass's, for the replay
        self.ratio_start = -1  # agent step at which training began (train-ratio counter)
        self.autocast_dtype = torch.bfloat16 if c.precision == "bf16" else None
        if c.compile:
            # the per-step functions of the two Python time loops dominate; compile them, keep the loops eager
            self.rssm.core = torch.compile(self.rssm.core, dynamic=False)
            self.rssm.posterior = torch.compile(self.rssm.posterior, dynamic=False)
            self.actor.forward_feat = torch.compile(self.actor.forward_feat, dynamic=False)

    # ------------------------------------------------------------------ helpers
    def _optimizer(self, params, lr: float, eps: float) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "laprop":  # 2024: AGC per parameter tensor takes the place of the global-norm clip
            return LaProp(params, lr=lr, eps=eps, betas=(c.beta1, c.beta2), agc=c.agc, warmup=c.warmup)
        # 2023: Adam; fused: one kernel per step instead of a handful per parameter tensor (same arithmetic)
        return torch.optim.Adam(params, lr=lr, eps=eps, betas=(c.beta1, c.beta2), fused=True)

    def _clip(self, params: list[Tensor], clip: float) -> Tensor:
        """Global-norm clip for Adam (returns the norm before clipping); LaProp clips inside its step (AGC)."""
        if self.config.optimizer == "laprop":
            return global_norm(params)
        return nn.utils.clip_grad_norm_(params, clip, foreach=True)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _policy_dist(self, deter: Tensor, stoch: Tensor) -> tuple[Tensor, ...]:
        """Actor output as distribution statistics: unimix log-probs (discrete) or bounded-Normal (mean, std).
        `stoch` may be dense or index latents (see RSSM.sample)."""
        out = self.actor.forward_feat(deter, stoch)
        if self.discrete:
            return (unimix_logits(out, self.config.unimix),)
        raw_mean, raw_std = out.chunk(2, -1)
        return bounded_normal(raw_mean, raw_std, self.config.minstd, self.config.maxstd)

    def _sample_action(self, dist: tuple[Tensor, ...], mode: bool = False) -> Tensor:
        if self.discrete:
            return mode_onehot(dist[0]) if mode else sample_onehot(dist[0], self.gen_train)
        mean, std = dist
        return mean if mode else normal_sample(mean, std, self.gen_train)

    def _action_input(self, action: np.ndarray) -> Tensor:
        """Replayed actions -> float model inputs (one-hot for discrete)."""
        a = torch.as_tensor(action, device=self.device)
        if self.discrete:
            return F.one_hot(a.long().reshape(a.shape[:2]), self.act_dim).float()
        return a.float().reshape(*a.shape[:2], self.act_dim)

    def _obs_tensors(self, data: dict[str, np.ndarray]) -> dict[str, Tensor]:
        return {k: torch.as_tensor(data[k], device=self.device) for k in ("image", "vector") if k in self.obs_space}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1)
        batch = is_first.shape[0]
        if state is None:
            deter, stoch = self.rssm.initial(batch, self.device)
            prev_action = torch.zeros(batch, self.act_dim, device=self.device)
        else:
            deter, stoch, prev_action = state
        with self._autocast():
            embed = self.encoder(self._obs_tensors(obs))
            deter, stoch, _ = self.rssm.obs_step(deter, stoch, prev_action, embed, is_first, self.gen_act)
            dist = self._policy_dist(deter, stoch)
        if self.config.replay_context and mode != "eval":  # stored with the step the runner adds next
            self.acted_latents.append(self._latent_entry(deter, stoch))
        prefill = mode != "eval" and self.acted < self.config.prefill  # uniform random actions first
        if mode != "eval":
            self.acted += batch
        if self.discrete:
            if prefill:
                dist = (torch.zeros_like(dist[0]),)
            onehot = mode_onehot(dist[0]) if mode == "eval" else sample_onehot(dist[0], self.gen_act)
            env_action = onehot.argmax(-1).cpu().numpy()
            prev_action = onehot.float()
        else:
            mean, std = dist
            action = mean if mode == "eval" else normal_sample(mean, std, self.gen_act)
            if prefill:
                action = torch.rand(mean.shape, generator=self.gen_act, device=self.device) * 2 - 1
            prev_action = action.clamp(-1, 1).float()
            env_action = prev_action.cpu().numpy().astype(np.float32)
        return env_action, (deter.float(), stoch.float(), prev_action)

    # ------------------------------------------------------------------ learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        """Train on the replay at the configured train ratio (replayed steps per agent step)."""
        c = self.config
        if c.replay_context:  # the acted steps get their latents before anything samples them
            self._store_acted_latents(replay)
        if len(replay) < max(c.train_fill, c.batch_length + c.replay_context):
            return {}
        if self.ratio_start < 0:
            self.ratio_start = int(step)
        due = 1 + int((int(step) - self.ratio_start) * c.train_ratio / (c.batch_size * c.batch_length))
        K = c.replay_context
        metrics: list[dict[str, float]] = []
        while self.updates < due:
            data = replay.sample(c.batch_size, c.batch_length + K, online=c.replay_online, annotations=K > 0, index=K > 0)
            metrics.append(self.train_batch(data))
            if K:  # the posteriors of this pass become the replayed steps' context (official: replay.update)
                replay.annotate(data["index"][:, K:], self.fresh_latents)
        if not metrics:
            return {}
        return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}

    @staticmethod
    def _latent_entry(deter: Tensor, stoch: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """A latent state as stored in the replay: float16 (the GRU state is bounded, z is one-hot), halving the
        memory of the official code's float32 entries; bfloat16 compute rounds more."""
        return deter.detach().to("cpu", torch.float16).numpy(), stoch.detach().to("cpu", torch.float16).numpy()

    def _store_acted_latents(self, replay: Any) -> None:
        """Annotate the steps added since the last call with the latents the policy computed for them (the runner
        adds one step per train-mode policy call, then calls update)."""
        if not self.acted_latents:
            return
        n = len(self.acted_latents)
        index = np.arange(replay.total - n, replay.total)
        deter = np.concatenate([d for d, _ in self.acted_latents])
        stoch = np.concatenate([z for _, z in self.acted_latents])
        replay.annotate(index, {"ctx_deter": deter, "ctx_stoch": stoch})
        self.acted_latents = []

    def _context_start(self, data: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], tuple[Tensor, Tensor, Tensor]]:
        """Split a replayed [B, K + T] batch into its T training steps and their start (deter, stoch, action):
        the stored latent and the action of step K-1; rows whose latent was never stored start from the initial
        state (official: every stored step has one)."""
        K = self.config.replay_context
        deter = torch.as_tensor(data["ctx_deter"][:, K - 1], device=self.device).float()
        stoch = torch.as_tensor(data["ctx_stoch"][:, K - 1], device=self.device).float()
        known = ~(torch.isnan(deter).any(-1) | torch.isnan(stoch).any(-1))
        init_deter, init_stoch = self.rssm.initial(deter.shape[0], self.device)
        deter = torch.where(known[:, None], deter, init_deter.float())
        stoch = torch.where(known[:, None], stoch, init_stoch.float())
        action = self._action_input(data["action"][:, K - 1 : K])[:, 0]
        steps = {k: v[:, K:] for k, v in data.items() if k not in ("ctx_deter", "ctx_stoch", "index")}
        return steps, (deter, stoch, action)

    def _actor_terms(self, dist: tuple[Tensor, ...], action: Tensor) -> tuple[Tensor, Tensor]:
        """(log pi(action), entropy) per state, for discrete (one-hot actions) or continuous actions."""
        if self.discrete:
            return (dist[0] * action).sum(-1), categorical_entropy(dist[0])
        mean, std = dist
        return normal_log_prob(action, mean, std), normal_entropy(std)

    def _imag_cont(self, deter: Tensor, stoch: Tensor, start_cont: Tensor) -> Tensor:
        """Continuation of the imagined states [H+1, N]: the start state's from the data and the others as the
        continue head's mode (2023), or all as the head's probability (2024 contdisc, whose target holds gamma)."""
        if self.config.contdisc:
            return torch.sigmoid(self.cont_head.forward_feat(deter, stoch).squeeze(-1).float())
        return torch.cat([start_cont[None], bernoulli_mode(self.cont_head.forward_feat(deter[1:], stoch[1:]).squeeze(-1))])

    def _returns(self, imag_reward: Tensor, cont: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(lambda-returns [H, N], trajectory weights [H, N], return scale) of an imagined batch."""
        ret = lambda_return(imag_reward, cont[1:], value, self.disc, self.config.lam)
        # trajectory weight: probability of still being in the episode, sg (official `weight`)
        weight = (torch.cumprod(self.disc * cont, 0) / self.disc).detach()[:-1]
        _, scale = self.retnorm(ret.detach())
        return ret, weight, scale

    def _critic_loss(self, critic_logits: Tensor, ret: Tensor, slow_value: Tensor, weight: Tensor
                     ) -> tuple[Tensor, dict[str, Tensor]]:
        """Critic loss (Sec. 3, "Critic learning"): the return term, two-hot cross-entropy towards sg(R^lambda), plus
        the slow-critic regulariser, cross-entropy towards the slow (EMA) critic's prediction, weighted `slowreg`;
        both weighted per state by the trajectory weight."""
        return_term, slowreg_term = twohot_losses(critic_logits, (ret, slow_value), self.bins)
        loss = ((return_term + self.config.slowreg * slowreg_term) * weight).mean()
        return loss, {"loss/critic_return": (return_term * weight).mean(),
                      "loss/critic_slowreg": (slowreg_term * weight).mean()}

    def _replay_value_loss(self, feat: Tensor, reward: Tensor, is_last: Tensor, is_terminal: Tensor, boot: Tensor
                           ) -> Tensor:
        """Replay-value loss (2024 `repl_loss`): on the replayed posterior states [B, T] the critic also regresses
        the lambda-return of the real rewards, bootstrapped with the imagined return of each state (`boot`), plus
        the slow-critic regulariser; weighted by 1 - is_last. With `joint_update` its gradient also reaches the world
        model through `feat` (the official `repval_grad`); otherwise `feat` comes detached and only the critic
        learns from it."""
        c = self.config
        ret = replay_lambda_return(reward, is_last, is_terminal, boot, self.gamma, c.lam)  # [B, T-1]
        with self._autocast():
            logits = self.critic(feat[:, :-1])
            with torch.no_grad():
                slow_value = twohot_mean(self.slow_critic(feat[:, :-1]), self.bins)
        return_term, slowreg_term = twohot_losses(logits, (ret, slow_value), self.bins)
        weight = 1.0 - is_last[:, :-1].float()
        return ((return_term + c.slowreg * slowreg_term) * weight).mean()

    def _rollout(self, deter: Tensor, stoch: Tensor) -> tuple[Tensor, Tensor, Tensor, list[tuple[Tensor, ...]]]:
        """Imagine `imag_horizon` steps with the actor on sg(state): deter, stoch [H+1, N, .] (stoch dense or index
        latents, as given), actions [H, N, A] and the per-step policy statistics."""
        deters, stochs, actions, dists = [deter], [stoch], [], []
        for _ in range(self.config.imag_horizon):
            dist = self._policy_dist(deter.detach(), stoch.detach())  # the actor sees sg(state), as in the paper
            action = self._sample_action(dist)
            deter, stoch, _ = self.rssm.img_step(deter, stoch, action, self.gen_train)
            deters.append(deter)
            stochs.append(stoch)
            actions.append(action)
            dists.append(dist)
        return torch.stack(deters), torch.stack(stochs), torch.stack(actions), dists

    @staticmethod
    def _behaviour_stats(ret: Tensor, imag_reward: Tensor, scale: Tensor, entropy: Tensor) -> dict[str, Tensor]:
        return {"imag/return": ret.mean(), "imag/reward": imag_reward.mean(), "imag/return_scale": scale,
                "policy/entropy": entropy.mean()}

    def _behaviour_reinforce(self, start_deter: Tensor, start_stoch: Tensor, start_cont: Tensor):
        """REINFORCE actor (the 2024 release for all actions; the 2023 one for discrete actions): the rollout needs no
        gradient, so it runs under no_grad with categorical latents as indices (first layers become gathers), and the
        actor and critic are then evaluated once on all H x N imagined states."""
        c = self.config
        stoch = self.rssm.to_index(start_stoch) if self.rssm.latent == "categorical" else start_stoch
        with torch.no_grad(), self._autocast():
            deter, stoch, action, _ = self._rollout(start_deter, stoch)
            action = action.float()
            imag_reward = twohot_mean(self.reward_head.forward_feat(deter[1:], stoch[1:]), self.bins)  # r on arrival
            cont = self._imag_cont(deter, stoch, start_cont)
            slow_value = twohot_mean(self.slow_critic.forward_feat(deter[:-1], stoch[:-1]), self.bins)
        with self._autocast():
            critic_logits = self.critic.forward_feat(deter, stoch)
            value = twohot_mean(critic_logits.detach(), self.bins)
            ret, weight, scale = self._returns(imag_reward, cont, value)
            adv = (ret - value[:-1]) / scale
            logp, entropy = self._actor_terms(self._policy_dist(deter[:-1], stoch[:-1]), action)
            # REINFORCE: log pi(a | s) sg((R^lambda - v(s)) / max(1, S)) plus the entropy bonus eta H[pi(. | s)]
            actor_loss = (-(logp * adv + c.actent * entropy) * weight).mean()
            critic_loss, critic_terms = self._critic_loss(critic_logits[:-1], ret, slow_value, weight)
        return actor_loss, critic_loss, {**self._behaviour_stats(ret, imag_reward, scale, entropy), **critic_terms}, ret[0]

    def _behaviour_backprop(self, start_deter: Tensor, start_stoch: Tensor, start_cont: Tensor):
        """Backprop actor (the 2023 release for continuous actions): the actor's gradient flows through the frozen
        dynamics, reward and critic, so the rollout keeps its graph (dense latents, straight-through samples)."""
        c = self.config
        with _frozen(self.world_model), self._autocast():
            deter, stoch, action, dists = self._rollout(start_deter, start_stoch)
            imag_reward = twohot_mean(self.reward_head.forward_feat(deter[1:], stoch[1:]), self.bins)
            cont = self._imag_cont(deter, stoch, start_cont)
            # one critic forward serves both losses: the actor's backward is restricted to actor parameters and
            # the critic's to critic parameters, so the critic sees sg(states) exactly as in the paper
            critic_logits = self.critic.forward_feat(deter, stoch)
            value = twohot_mean(critic_logits, self.bins)
            ret, weight, scale = self._returns(imag_reward, cont, value)
            adv = (ret - value[:-1]) / scale
            dist = tuple(torch.stack(parts) for parts in zip(*dists, strict=True))
            _, entropy = self._actor_terms(dist, action.detach())
            # backprop: the normalised return itself, differentiated through the dynamics, plus the entropy bonus
            actor_loss = (-(adv + c.actent * entropy) * weight).mean()
            with torch.no_grad():
                slow_value = twohot_mean(self.slow_critic.forward_feat(deter[:-1].detach(), stoch[:-1].detach()), self.bins)
            critic_loss, critic_terms = self._critic_loss(critic_logits[:-1], ret, slow_value, weight)
        return actor_loss, critic_loss, {**self._behaviour_stats(ret, imag_reward, scale, entropy), **critic_terms}, ret[0]

    def _check_finite(self, terms: dict[str, Tensor]) -> list[float]:
        values = torch.stack([t.detach().float() for t in terms.values()]).tolist()  # one sync per update
        for (name, _), v in zip(terms.items(), values, strict=True):
            if not math.isfinite(v):
                raise NonFiniteLossError(
                    f"dreamerv3: loss term {name!r} is {v} at update {self.updates} (train ratio counter). "
                    "Resume from the last checkpoint (run the same wmbench run command again), ideally with a "
                    "lower learning rate or precision=fp32: add --set model_lr=... --set actor_lr=... and "
                    "--allow-config-change (run.json records the change and the step it applies from)."
                )
        return values

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient update of world model, actor and critic on a [B, T] batch of replayed steps."""
        c = self.config
        # the action that led to step t is the one chosen at t-1; the sequence starts from the initial state, or
        # from a stored latent (replay_context, 2024), or (carry_state, 2023) from the last posterior state and
        # action of the previous batch's same row
        if c.replay_context:
            data, start = self._context_start(data)
        else:
            start = self.carry if c.carry_state and self.carry is not None else None
        obs = self._obs_tensors(data)
        action = self._action_input(data["action"])
        reward = torch.as_tensor(data["reward"], device=self.device).float().reshape(action.shape[:2])
        is_first = torch.as_tensor(data["is_first"], device=self.device).bool().reshape(action.shape[:2])
        is_terminal = torch.as_tensor(data["is_terminal"], device=self.device).float().reshape(action.shape[:2])
        # continue target: 1 - terminal, times gamma under continue-probability discounting (2024 contdisc)
        cont_target = (1.0 - is_terminal) * (self.gamma if c.contdisc else 1.0)
        first_action = start[2] if start is not None else torch.zeros_like(action[:, 0])
        prev_action = torch.cat([first_action[:, None], action[:, :-1]], 1)

        # ---- world model (Sec. 2): prediction + 0.5 dyn + 0.1 rep, per step, mean over batch and time
        with self._autocast():
            embed = self.encoder(obs)
            state = start[:2] if start is not None else None
            seq = self.rssm.observe(embed, prev_action, is_first, state, generator=self.gen_train)
            feat = torch.cat([seq["deter"], seq["stoch"]], -1)
            recon = self.decoder(seq["deter"], seq["stoch"])
            wm_terms: dict[str, Tensor] = {}
            rec = 0.0
            if "image" in recon:
                target = obs["image"].float() / 255.0
                wm_terms["loss/image"] = (recon["image"].float() - target).square().sum((-3, -2, -1))
                rec = rec + wm_terms["loss/image"]
            if "vector" in recon:
                wm_terms["loss/vector"] = symlog_mse(recon["vector"], obs["vector"])
                rec = rec + wm_terms["loss/vector"]
            wm_terms["loss/reward"] = twohot_loss(self.reward_head(feat), reward, self.bins)
            wm_terms["loss/cont"] = bernoulli_loss(self.cont_head(feat).squeeze(-1), cont_target)
            wm_terms["loss/dyn"], wm_terms["loss/rep"] = self.rssm.kl_losses(seq["post"], seq["prior"], c.free_nats)
            model_loss = (
                c.loss_rec * rec
                + c.loss_rew * wm_terms["loss/reward"]
                + c.loss_con * wm_terms["loss/cont"]
                + c.loss_dyn * wm_terms["loss/dyn"]
                + c.loss_rep * wm_terms["loss/rep"]
            ).mean()
        if c.replay_context:
            deter_entry, stoch_entry = self._latent_entry(seq["deter"], seq["stoch"])
            self.fresh_latents = {"ctx_deter": deter_entry, "ctx_stoch": stoch_entry}
        if c.carry_state:
            self.carry = (seq["deter"][:, -1].detach().float(), seq["stoch"][:, -1].detach().float(), action[:, -1])
        model_terms = {**{k: v.mean() for k, v in wm_terms.items()}, "loss/model": model_loss}
        model_values = self._check_finite(model_terms)  # before stepping, so a NaN never reaches the weights
        model_params = list(self.world_model.parameters())
        repval_grad = c.joint_update and c.loss_repval > 0  # the replay-value loss also trains the world model
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward(retain_graph=repval_grad)
        if not c.joint_update:  # 2023 order: the world model steps first; behaviour imagines with the new model
            model_gnorm = self._clip(model_params, c.model_clip)
            self.model_opt.step()

        # ---- behaviour (Sec. 3): imagine H steps from every posterior state of the batch
        start_deter = seq["deter"].detach().reshape(-1, self.rssm.deter).float()
        start_stoch = seq["stoch"].detach().reshape(-1, self.rssm.stoch_dim).float()
        start_cont = cont_target.reshape(-1)
        if self.backprop_actor:
            actor_loss, critic_loss, stats, start_return = self._behaviour_backprop(start_deter, start_stoch, start_cont)
        else:
            actor_loss, critic_loss, stats, start_return = self._behaviour_reinforce(start_deter, start_stoch, start_cont)
        if c.loss_repval:  # 2024: the critic also learns on the replayed states, bootstrapped with the imagination
            is_last = torch.as_tensor(data["is_last"], device=self.device).bool().reshape(action.shape[:2])
            boot = start_return.detach().float().reshape(reward.shape)
            repval = self._replay_value_loss(feat if repval_grad else feat.detach(), reward, is_last, is_terminal, boot)
            critic_loss = critic_loss + c.loss_repval * repval
            stats = {**stats, "loss/repval": repval}
        behaviour_values = self._check_finite({"loss/actor": actor_loss, "loss/critic": critic_loss})
        actor_params, critic_params = list(self.actor.parameters()), list(self.critic.parameters())
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        if self.backprop_actor:  # the graphs share the critic forward: each loss reaches only its own network
            actor_loss.backward(inputs=actor_params, retain_graph=True)
            critic_loss.backward(inputs=critic_params + (model_params if repval_grad else []))
        else:  # disjoint graphs (states carry no gradient): one backward pass
            (actor_loss + critic_loss).backward()
        if c.joint_update:  # 2024: one step for all networks, every loss taken with the parameters before it
            model_gnorm = self._clip(model_params, c.model_clip)
            self.model_opt.step()
        actor_gnorm = self._clip(actor_params, c.actor_clip)
        critic_gnorm = self._clip(critic_params, c.critic_clip)
        self.actor_opt.step()
        self.critic_opt.step()
        if self.updates % c.slow_critic_every == 0:
            ema_update(self.slow_critic, self.critic, c.slow_critic_fraction)

        extra = {
            "grad_norm/model": model_gnorm,
            "grad_norm/actor": actor_gnorm,
            "grad_norm/critic": critic_gnorm,
            **stats,
        }
        extra_values = torch.stack([v.detach().float() for v in extra.values()]).tolist()
        self.updates += 1
        return {
            **dict(zip(model_terms, model_values, strict=True)),
            "loss/actor": behaviour_values[0],
            "loss/critic": behaviour_values[1],
            **dict(zip(extra, extra_values, strict=True)),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "slow_critic": self.slow_critic.state_dict(),
            "retnorm": self.retnorm.state_dict(),
            "model_opt": self.model_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "acted": self.acted,
            "carry": list(self.carry) if self.carry is not None else None,
            "acted_latents": [[torch.from_numpy(d), torch.from_numpy(z)] for d, z in self.acted_latents],
            "ratio_start": self.ratio_start,
            "gen_train": self.gen_train.get_state(),
            "gen_act": self.gen_act.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("preset") != self.config.preset:
            raise MethodError(
                f"dreamerv3 checkpoint was written with preset {state.get('preset')!r} but this run uses preset "
                f"{self.config.preset!r}; run with --set preset={state.get('preset')} or use a new run directory"
            )
        diff = differing_keys(self.config, state.get("config", {}))
        try:
            self.nets.load_state_dict(state["nets"])
            self.slow_critic.load_state_dict(state["slow_critic"])
        except RuntimeError as e:
            raise MethodError(
                f"dreamerv3 checkpoint does not fit this config (differing keys: {', '.join(diff) or 'none'}): "
                f"{str(e).splitlines()[0]}"
            ) from e
        self.retnorm.load_state_dict(state["retnorm"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = int(state["updates"])
        self.acted = int(state.get("acted", 0))  # checkpoints before the prefill option have none
        carry = state.get("carry")
        self.carry = tuple(t.to(self.device) for t in carry) if carry is not None else None
        self.acted_latents = [(d.numpy(), z.numpy()) for d, z in state.get("acted_latents", [])]
        self.ratio_start = int(state["ratio_start"])
        self.gen_train.set_state(state["gen_train"])
        self.gen_act.set_state(state["gen_act"])


def parameter_counts(obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: DreamerV3Config) -> dict[str, int]:
    """Trained parameters per network (built on the meta device: no memory, any size)."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


__all__ = ["DreamerV3", "DreamerV3Config", "NonFiniteLossError", "build_networks", "parameter_counts"]
