"""Director (Hafner, Lee, Fischer and Abbeel 2022, "Deep Hierarchical Planning from Pixels", NeurIPS; arXiv
2206.04114): a manager that picks latent goals every K steps and a worker that learns to reach them, both trained in
the imagination of the shared world model.

The agent as the paper's Sec. 2 (and the official code danijar/director a6a649e, `hierarchy.py`, `configs.yaml`
`defaults`) describes it, run here step by step:
1. World model: the shared pixel world model (`wmbench.nn.world_model.GaussianWorldModel`: CNN encoder, RSSM,
   decoder, reward head) learns from replayed sequences; goals live in the space of its deterministic state h. By
   default its RSSM is the code's: 32 x 32 categorical latents, KL balanced 0.8 without free nats, the KL weight
   adapted towards 3.5 nats (`wmkl`); `latent=gaussian` gives PlaNet's Gaussian one.
2. Goal autoencoder (Sec. 2.1), trained on the replayed posterior states h: enc(h) gives 8 categorical codes of 8
   classes, z ~ enc(h) (one-hot, straight-through); dec(z) reconstructs h. Loss ||dec(z) - sg(h)||^2 / 2 +
   w KL[enc(h) || uniform], w starting at goal_kl = 1 and adapted towards 10 nats (the code's `goal_kl: True` with
   `encdec_kl` impl mult, whose AutoAdapt starts at 1 whatever its `scale` key says).
3. Imagination (Sec. 2.2-2.3, the code's `train_jointly`): from every posterior state, H = 16 steps under the
   hierarchy: every K = 8 steps the manager samples a code z ~ pi_m(z | s_t) and the goal becomes g = dec(z); in
   between the worker acts a ~ pi_w(a | s_t, g).
4. Rewards of the step into s_t+1:
     extrinsic  r_extr = reward head at s_t+1
     exploration r_expl = ||dec(z') - h_t+1||^2 / |h| with z' ~ enc(h_t+1)  (states the goal autoencoder cannot yet
                reconstruct are novel; the code's `elbo_reward` with `adver_impl: squared`)
     goal       r_goal = (g / m) . (h_t+1 / m), m = max(||g||, ||h_t+1||)   ("max-cosine", the code's cosine_max)
5. Worker (Sec. 2.3): on each K-step segment with its fixed goal, lambda-returns of r_goal from its slow critic
   v_w(s, g) and dynamics backpropagation through the world model, with entropy bonus.
6. Manager (Sec. 2.2): on the abstract trajectory s_0, s_K, ..., s_H, the segment means of r_extr and r_expl with one
   critic each; REINFORCE on its codes with the advantages of the two critics weighted 1.0 (extrinsic) and 0.1
   (exploration), with entropy bonus.
   Both actors as the code's `ImagActorCritic` (defaults; docs/director.md): per critic (R - v) / running std of R
   (`retnorm`), weighted, summed, then centred and scaled by running moments (`advnorm`); the worker differentiates
   this score through R and v; entropy bonuses per action dim / code group on entropies normalised to [0, 1], each
   weight adapted towards 0.5 (`actent`); critics regress symlog(R) (`critic.dist: symlog`).
   `adv_norm=batch` and the fixed-scale keys give the earlier wmbench variant (each critic's advantage normalised
   over the batch, fixed entropy scales, MSE critics).
7. Acting: the RSSM filter every step; every K steps of an episode a new code from the manager, then the worker's
   action for the current goal (evaluation: the worker's mode).
Schedule (`StepSchedule`): `prefill` random agent steps, then updates every `train_every` agent steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method, MethodError
from wmbench.nn.behaviour import discounted_lambda_targets, weighted_actor_loss, weighted_critic_loss
from wmbench.nn.distributions import (
    bounded_normal,
    categorical_entropy,
    mode_onehot,
    normal_entropy,
    normal_log_prob,
    normal_sample,
    sample_onehot,
    symexp,
    symlog_mse,
    unimix_logits,
)
from wmbench.nn.networks import MLP
from wmbench.nn.optim import step_each
from wmbench.nn.returns import AdaptiveScale, MomentNormalizer, ema_update
from wmbench.nn.world_model import (
    GaussianWorldModel,
    StepSchedule,
    finite_values,
    load_networks,
    pixel_control_support,
)
from wmbench.seeding import derive_seed


def _key_notes() -> dict[str, str]:
    kl = (
        "Director weighs the world model's KL by kl_scale (adapted towards kl_target with kl_adapt, the code's "
        "wmkl), balances it with kl_balance (latent=categorical) and clips it with free_nats"
    )
    return {
        "unimix": "Director's categorical latents (latent=categorical) have no uniform mix, as the code's RSSM; the "
        "manager's and the discrete worker's mix is manager_unimix",
        "blocks": "Director's RSSM core is one dense GRU layer, as the code's",
        "loss_dyn": kl, "loss_rep": kl, "free_bits": kl,
    }  # fmt: skip


@dataclass(frozen=True)
class DirectorConfig:
    """The official `defaults` where a key maps onto the shared world model; presets `cpu` and `tiny` (tests)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # CPU learning runs: Dreamer v1's model sizes, 200-unit MLPs
        "cpu": {"deter": 200, "hidden": 200, "stoch": 30, "depth": 32, "units": 200, "goal_units": 200},
        # tests only
        "tiny": {
            "deter": 16, "hidden": 16, "stoch": 4, "depth": 4, "units": 16, "layers": 1, "goal_units": 16,
            "goal_layers": 1, "skill_groups": 2, "skill_classes": 3, "skill_duration": 2, "imag_horizon": 4,
            "batch_size": 3, "batch_length": 6, "prefill": 60, "train_every": 5, "classes": 4,
        },
    }  # fmt: skip
    KEY_NOTES: ClassVar[dict[str, str]] = _key_notes()
    preset: str = "paper"
    # --- world model (shared GaussianWorldModel; official rssm deter 1024, units 1024, cnn_depth 64, heads 4 x 512)
    deter: int = bounded(1024, low=1)
    hidden: int = bounded(1024, low=1)
    stoch: int = bounded(32, low=1)
    min_std: float = bounded(0.1, above=0)
    depth: int = bounded(64, low=1)
    enc_kernels: tuple[int, ...] = ()
    dec_kernels: tuple[int, ...] = ()
    free_nats: float = bounded(0.0, low=0)  # the code has none (PlaNet's Gaussian world model: 1.0 or 3.0)
    kl_scale: float = bounded(1.0, low=0)  # with kl_adapt: the adaptive weight's start (the code's wmkl starts at 1)
    # latents: the code's categorical (rssm stoch 32 groups x classes 32, wmkl_balance 0.8) or Gaussian (`stoch` dims)
    latent: Literal["gaussian", "categorical"] = "categorical"
    classes: int = bounded(32, low=2)  # categorical: classes per group
    kl_balance: float = bounded(0.8, low=0, high=1)  # categorical: KL balancing alpha (Gaussian: PlaNet's plain KL)
    kl_adapt: bool = True  # the KL weight adapted towards kl_target nats (wmkl: impl mult, target 3.5, in [1e-5, 1])
    kl_target: float = bounded(3.5, above=0)
    # --- goal autoencoder (skill_shape [8, 8]; goal_encoder / goal_decoder 4 x 512; encdec_kl scale 0)
    skill_groups: int = bounded(8, low=1)
    skill_classes: int = bounded(8, low=2)
    goal_units: int = bounded(512, low=1)
    goal_layers: int = bounded(4, low=0)
    goal_kl: float = bounded(1.0, low=0)  # with goal_kl_adapt: the adaptive weight's start (the code: 1)
    goal_kl_adapt: bool = True  # the code's goal_kl True with encdec_kl impl mult: target 10 nats, in [1e-5, 1]
    goal_kl_target: float = bounded(10.0, above=0)
    # --- hierarchy (train/env_skill_duration 8; imag_horizon 16; manager_rews extr 1.0, expl 0.1; worker goal 1.0)
    skill_duration: int = bounded(8, low=1)  # K: the manager picks a new goal every K steps
    imag_horizon: int = bounded(16, low=1, high=1000)
    manager_extr: float = bounded(1.0, low=0)
    manager_expl: float = bounded(0.1, low=0)
    # --- actor-critics (4 x 512 ELU; discount 0.99, lambda 0.95; actent scale 3e-3; actor unimix 0.01)
    units: int = bounded(512, low=1)
    layers: int = bounded(4, low=0)
    gamma: float = bounded(0.99, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    worker_ent: float = bounded(1.0, low=0)  # with ent_adapt: the adaptive scales' start (the code: 1)
    manager_ent: float = bounded(1.0, low=0)
    # the code's actent (impl mult, actent_norm, actent_perdim): one scale per action dim (per code group for the
    # manager) on the entropy normalised to [0, 1], adapted towards its target (0.5 both: actent.target,
    # manager_actent) within [1e-5, 100]
    ent_adapt: bool = True
    worker_ent_target: float = bounded(0.5, above=0, high=1)
    manager_ent_target: float = bounded(0.5, above=0, high=1)
    critic_loss: Literal["mse", "symlog"] = "symlog"  # symlog: the code's critic dist (squared error in symlog space)
    return_norm: bool = True  # the code's retnorm: returns / running std per critic (decay 0.999, at most x100)
    adv_norm: Literal["batch", "running"] = "running"  # running: the code's advnorm (mean_std, decay 0.99)
    worker_min_std: float = bounded(0.03, above=0)
    worker_max_std: float = bounded(1.0, above=0)
    manager_unimix: float = bounded(0.01, low=0, high=1)
    slow_critic_every: int = bounded(100, low=1)
    slow_critic_fraction: float = bounded(1.0, above=0, high=1)
    # --- optimisers (Adam lr 1e-4, eps 1e-6, clip 100, weight decay 1e-2 on kernels)
    model_lr: float = bounded(1e-4, low=0, high=1)
    goal_lr: float = bounded(1e-4, low=0, high=1)
    actor_lr: float = bounded(1e-4, low=0, high=1)
    critic_lr: float = bounded(1e-4, low=0, high=1)
    adam_eps: float = bounded(1e-6, above=0)
    grad_clip: float = bounded(100.0, above=0)
    weight_decay: float = bounded(1e-2, low=0, high=0.5)
    # --- schedule (batch_size 16, replay_chunk 64, train_every 16, train_fill 1e4, pretrain 1)
    batch_size: int = bounded(16, low=1, high=65536)
    batch_length: int = bounded(64, low=2, high=4096)
    train_every: int = bounded(16, low=1)
    train_steps: int = bounded(1, low=1)
    prefill: int = bounded(10000, low=0)
    pretrain: int = bounded(1, low=0)


# ---------------------------------------------------------------------------------------------- what is new
class GoalAutoencoder(nn.Module):
    """enc: goal h -> logits of `groups` categorical codes of `classes` classes; dec: one-hot codes -> h."""

    def __init__(self, goal_dim: int, groups: int, classes: int, units: int, layers: int):
        super().__init__()
        self.groups, self.classes = groups, classes
        self.enc = MLP(goal_dim, units, layers, out_dim=groups * classes, norm="layer", act="elu", fan="avg")
        self.dec = MLP(groups * classes, units, layers, out_dim=goal_dim, norm="layer", act="elu", fan="avg")

    def encode(self, goal: Tensor) -> Tensor:
        """Log-probabilities [..., groups, classes] of q(z | h) (no uniform mix: the code's unimix 0.0)."""
        logits = self.enc(goal)
        return torch.log_softmax(logits.reshape(*logits.shape[:-1], self.groups, self.classes).float(), -1)

    def decode(self, code: Tensor) -> Tensor:
        return self.dec(code.flatten(-2))

    def loss(
        self, goal: Tensor, generator: torch.Generator | None, kl_scale: float | Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(mean loss, reconstruction error per goal, KL to the uniform prior per goal) on sg(goal). `kl_scale` may
        be a callable that gets the KL per goal (detached) and returns its weight (an `AdaptiveScale`: the code's
        encdec_kl, updated on the batch before it weighs it)."""
        goal = goal.detach()
        logp = self.encode(goal)
        recon = self.decode(sample_onehot(logp, generator))
        rec = 0.5 * (recon - goal).square().sum(-1)
        kl = (logp.exp() * (logp + np.log(self.classes))).sum((-2, -1))  # KL[q(z | h) || uniform]
        scale = kl_scale(kl.detach()) if callable(kl_scale) else kl_scale
        return (rec + scale * kl).mean(), rec, kl


def exploration_reward(goal_ae: GoalAutoencoder, deter: Tensor, generator: torch.Generator | None) -> Tensor:
    """r_expl: the goal autoencoder's squared reconstruction error of h, averaged over its dims (module step 4)."""
    code = sample_onehot(goal_ae.encode(deter), generator)
    return (goal_ae.decode(code) - deter).square().mean(-1)


def goal_reward(goal: Tensor, deter: Tensor) -> Tensor:
    """Max-cosine goal reward (g / m) . (h / m), m = max(||g||, ||h||): 1 only when h = g, the cosine scaled down
    when h is shorter or longer than g (the code's `cosine_max`, with its 1e-12 guard)."""
    norm = torch.maximum(goal.norm(dim=-1, keepdim=True), deter.norm(dim=-1, keepdim=True)) + 1e-12
    return ((goal / norm) * (deter / norm)).sum(-1)


def segments(x: Tensor, k: int) -> Tensor:
    """[H+1, N, ...] time-major states -> [K+1, (H/K) N, ...]: K-step segments sharing their boundary states."""
    h = x.shape[0] - 1
    parts = [x[j * k : (j + 1) * k + 1] for j in range(h // k)]
    return torch.cat(parts, 1)


def normalised(advantage: Tensor) -> Tensor:
    """Advantages with zero mean and unit std over the batch (the code normalises each critic's advantage)."""
    return (advantage - advantage.mean()) / (advantage.std() + 1e-8)


NETWORKS = ("world_model", "goal_ae", "worker", "worker_critic", "manager", "manager_extr", "manager_expl")


def build_networks(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: DirectorConfig
) -> nn.ModuleDict:
    discrete = isinstance(act_space, gymnasium.spaces.Discrete)
    act_dim = int(act_space.n) if discrete else int(act_space.shape[0])
    try:
        world_model = GaussianWorldModel(
            obs_space["image"].shape,
            act_dim,
            deter=c.deter,
            stoch=c.stoch,
            hidden=c.hidden,
            min_std=c.min_std,
            depth=c.depth,
            enc_kernels=c.enc_kernels,
            dec_kernels=c.dec_kernels,
            reward_units=c.units,
            reward_layers=c.layers,
            act="elu",
            image_bits=8,
            dequantise=False,
            latent=c.latent,
            classes=c.classes,
        )
    except ValueError as e:
        raise ConfigError(f"director: {e}") from e
    feat = world_model.rssm.feat_dim
    skill = c.skill_groups * c.skill_classes
    dense = {"norm": "layer", "act": "elu", "fan": "avg"}
    return nn.ModuleDict({
        "world_model": world_model,
        "goal_ae": GoalAutoencoder(c.deter, c.skill_groups, c.skill_classes, c.goal_units, c.goal_layers),
        "worker": MLP(feat + c.deter, c.units, c.layers, out_dim=act_dim if discrete else 2 * act_dim, **dense),
        "worker_critic": MLP(feat + c.deter, c.units, c.layers, out_dim=1, **dense),
        "manager": MLP(feat, c.units, c.layers, out_dim=skill, **dense),
        "manager_extr": MLP(feat, c.units, c.layers, out_dim=1, **dense),
        "manager_expl": MLP(feat, c.units, c.layers, out_dim=1, **dense),
    })  # fmt: skip


def parameter_counts(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: DirectorConfig
) -> dict[str, int]:
    """Trained parameters per network (the slow critics are copies and not counted)."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


class Director(Method):
    name = "director"
    Config = DirectorConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return pixel_control_support("Director", obs_space, act_space, allow_discrete=True)

    def __init__(
        self, obs_space, act_space, config: DirectorConfig | None = None, device: str = "cpu", seed: int = 0
    ):
        config = config if config is not None else DirectorConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        k = c.skill_duration
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(
                f"director: skill_duration (the goal period K: the manager picks a new goal every K steps) must be a "
                f"positive integer, got {k!r}; the paper uses K = 8 (--set skill_duration=8)"
            )
        if c.imag_horizon % k:
            raise ConfigError(
                f"director: imag_horizon ({c.imag_horizon}) must be a multiple of skill_duration ({k}) so that the "
                f"imagined trajectory splits into whole goal periods (e.g. --set imag_horizon={2 * k})"
            )
        self.device = torch.device(device)
        self.discrete = isinstance(act_space, gymnasium.spaces.Discrete)
        self.act_dim = int(act_space.n) if self.discrete else int(act_space.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "director/init"))
            self.nets = build_networks(obs_space, act_space, c).to(self.device)
        n = self.nets
        self.world_model, self.goal_ae, self.rssm = n["world_model"], n["goal_ae"], n["world_model"].rssm
        self.critics = ("worker_critic", "manager_extr", "manager_expl")
        self.slow = nn.ModuleDict(
            {name: copy.deepcopy(n[name]).requires_grad_(False) for name in self.critics}
        )
        lrs = {"world_model": c.model_lr, "goal_ae": c.goal_lr, "worker": c.actor_lr, "manager": c.actor_lr}
        self.opts = {name: self._adamw(n[name], lrs.get(name, c.critic_lr)) for name in NETWORKS}
        self.controls = nn.ModuleDict(self._controls()).to(self.device)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "director/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "director/act"))
        self.schedule = StepSchedule(
            c.prefill, c.pretrain, c.train_every, c.train_steps, c.batch_size, c.batch_length
        )
        self.updates = 0

    def _controls(self) -> dict[str, nn.Module]:
        """The code's adaptive scales (`AutoAdapt`) and running normalisers (`Normalize`); each is used only by the
        option that names it, all are saved with the agent."""
        c = self.config
        worker_dims = (1,) if self.discrete else (self.act_dim,)  # the code: one scale per action dim (actent_perdim)
        return {
            "kl": AdaptiveScale((), c.kl_scale, c.kl_target, 1e-5, 1.0),  # wmkl
            "goal_kl": AdaptiveScale((), c.goal_kl, c.goal_kl_target, 1e-5, 1.0),  # encdec_kl
            "worker_ent": AdaptiveScale(worker_dims, c.worker_ent, c.worker_ent_target, 1e-5, 100.0, inverse=True),
            "manager_ent": AdaptiveScale(
                (c.skill_groups,), c.manager_ent, c.manager_ent_target, 1e-5, 100.0, inverse=True
            ),
            **{f"ret_{name}": MomentNormalizer(0.999, 100.0, center=False) for name in ("goal", "extr", "expl")},
            "adv_worker": MomentNormalizer(0.99, 1e8, center=True),  # advnorm
            "adv_manager": MomentNormalizer(0.99, 1e8, center=True),
        }

    def _adamw(self, net: nn.Module, lr: float) -> torch.optim.AdamW:
        # the code decays kernels only, by (1 - wd * lr) per step: torch AdamW on the weight matrices
        c = self.config
        decay = [p for p in net.parameters() if p.dim() > 1]
        rest = [p for p in net.parameters() if p.dim() <= 1]
        groups = [{"params": decay, "weight_decay": c.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, eps=c.adam_eps)

    # ------------------------------------------------------------------ policies
    def manager_logp(self, feat: Tensor) -> Tensor:
        logits = self.nets["manager"](feat)
        shape = (*logits.shape[:-1], self.config.skill_groups, self.config.skill_classes)
        return unimix_logits(logits.reshape(shape), self.config.manager_unimix)

    def worker_dist(self, feat: Tensor, goal: Tensor) -> tuple[Tensor, ...]:
        """(mean, std) of the bounded Normal (continuous actions), or (log-probs,) of the one-hot categorical with
        1% uniform mix (discrete actions; the code's actor `unimix`)."""
        c = self.config
        out = self.nets["worker"](torch.cat([feat, goal], -1))
        if self.discrete:
            return (unimix_logits(out, c.manager_unimix),)
        raw_mean, raw_std = out.chunk(2, -1)
        return bounded_normal(raw_mean, raw_std, c.worker_min_std, c.worker_max_std)

    def worker_sample(
        self, dist: tuple[Tensor, ...], generator: torch.Generator, mode: bool = False
    ) -> Tensor:
        if self.discrete:
            return mode_onehot(dist[0]) if mode else sample_onehot(dist[0], generator)
        return dist[0] if mode else normal_sample(*dist, generator)

    def worker_terms(self, dist: tuple[Tensor, ...], action: Tensor) -> tuple[Tensor, Tensor]:
        """(log pi(action), entropy) per state."""
        if self.discrete:
            return (dist[0] * action).sum(-1), categorical_entropy(dist[0])
        return normal_log_prob(action, *dist), normal_entropy(dist[1])

    def worker_entropy_normalised(self, dist: tuple[Tensor, ...]) -> Tensor:
        """The worker's entropy per action dimension [..., A] (continuous; the categorical's as [..., 1]) scaled to
        [0, 1] between the least and the most entropy the head can have (the code's actent_norm: N(0, min_std) and
        N(0, max_std) per dim; 0 and ln(actions))."""
        c = self.config
        if self.discrete:
            return (categorical_entropy(dist[0]) / np.log(self.act_dim)).unsqueeze(-1)
        low, high = (normal_entropy(torch.tensor([std])).item() for std in (c.worker_min_std, c.worker_max_std))
        return (normal_entropy(dist[1].unsqueeze(-1)) - low) / (high - low)

    def entropy_term(self, name: str, entropy: Tensor, normalised_entropy: Tensor) -> Tensor:
        """The entropy bonus per state: the fixed scale x the entropy, or (ent_adapt) sum over dims of the adaptive
        scale x the normalised entropy, each scale updated on this batch first (the code's actent)."""
        c = self.config
        if not c.ent_adapt:
            return getattr(c, f"{name}_ent") * entropy
        scale = self.controls[f"{name}_ent"](normalised_entropy)
        return (scale * normalised_entropy).sum(-1)

    def critic_value(self, net: nn.Module, feat: Tensor) -> Tensor:
        """v(s) of a critic network: its output, or symexp of it (critic_loss symlog, the code's `symlog` dist)."""
        out = net(feat).squeeze(-1)
        return symexp(out) if self.config.critic_loss == "symlog" else out

    def critic_loss(self, name: str, feat: Tensor, ret: Tensor, weight: Tensor) -> Tensor:
        """Critic regression on sg(feat) towards sg(ret), weighted per state: half the squared error, or (symlog)
        the squared error of the output against symlog(ret) (the code's SymlogDist log-prob)."""
        if self.config.critic_loss == "mse":
            return weighted_critic_loss(self.nets[name], feat, ret, weight)
        steps = ret.shape[0]
        pred = self.nets[name](feat[:steps].detach())
        return (weight[:steps] * symlog_mse(pred, ret.detach().unsqueeze(-1))).mean()

    def advantage(self, name: str, ret: Tensor, value: Tensor) -> Tensor:
        """R - v, or (return_norm) R and v each divided by the critic's running return std, updated on R first (the
        code's retnorm); both keep their gradients."""
        if not self.config.return_norm:
            return ret - value
        norm = self.controls[f"ret_{name}"]
        return norm(ret) - norm(value, update=False)

    def new_goal(self, feat: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(code z ~ pi_m(z | s), goal dec(z)); no gradient reaches the decoder from the policies."""
        code = sample_onehot(self.manager_logp(feat), generator)
        with torch.no_grad():
            goal = self.goal_ae.decode(code.detach())
        return code, goal

    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).reshape(-1).bool()
        batch = is_first.shape[0]
        if self.schedule.act_randomly(batch, mode):
            if self.discrete:
                return torch.randint(
                    self.act_dim, (batch,), generator=self.gen_act, device=self.device
                ).cpu().numpy(), None
            action = torch.rand(batch, self.act_dim, generator=self.gen_act, device=self.device) * 2 - 1
            return action.cpu().numpy().astype(np.float32), None
        if state is None:
            wm_state, steps, goal = None, torch.zeros(batch, dtype=torch.long, device=self.device), None
        else:
            wm_state, steps, goal = state[:3], state[3], state[4]
        deter, stoch = self.world_model.filter(obs["image"], wm_state, is_first, self.gen_act)
        feat = torch.cat([deter, stoch], -1)
        steps = torch.where(is_first, torch.zeros_like(steps), steps)
        switch = (steps % self.config.skill_duration == 0).unsqueeze(-1)  # every K steps of the episode
        _, proposed = self.new_goal(feat, self.gen_act)
        goal = proposed if goal is None else torch.where(switch, proposed, goal)
        action = self.worker_sample(self.worker_dist(feat, goal), self.gen_act, mode=mode == "eval")
        if self.discrete:
            env_action = action.argmax(-1).cpu().numpy()
        else:
            action = action.clamp(-1, 1)
            env_action = action.cpu().numpy().astype(np.float32)
        return env_action, (deter, stoch, action, steps + 1, goal)

    # ------------------------------------------------------------------ learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        return self.schedule.train(replay, step, self.train_batch)

    def imagine(self, start_deter: Tensor, start_stoch: Tensor) -> dict[str, Tensor]:
        """Step 3: H steps of the hierarchy; time-major deter/stoch/goal/code [H+1, N, .], actions [H, N, A]."""
        c = self.config
        deter, stoch = start_deter, start_stoch
        out = {"deter": [deter], "stoch": [stoch], "goal": [], "code": [], "action": []}
        code = goal = None
        for t in range(c.imag_horizon + 1):
            feat = torch.cat([deter, stoch], -1)
            if t % c.skill_duration == 0:
                code, goal = self.new_goal(feat.detach(), self.gen_train)
            out["goal"].append(goal)
            out["code"].append(code)
            if t == c.imag_horizon:
                break
            action = self.worker_sample(self.worker_dist(feat.detach(), goal), self.gen_train)
            deter, stoch, _ = self.rssm.img_step(deter, stoch, action, self.gen_train)
            out["deter"].append(deter)
            out["stoch"].append(stoch)
            out["action"].append(action)
        return {key: torch.stack(value) for key, value in out.items()}

    def critic_targets(
        self, name: str, feat: Tensor, reward: Tensor, gamma: float, grad: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(lambda-returns, state weights, slow-critic values) of `name` along time-major `feat` [T+1, N, F];
        `grad`: the values keep the gradient of `feat` (the code evaluates its slow critic on the imagined
        trajectory itself, so dynamics backpropagation reaches the bootstrap values)."""
        value = self.critic_value(self.slow[name], feat if grad else feat.detach())
        ret, weight = discounted_lambda_targets(
            reward, torch.full_like(reward, gamma), value, self.config.lam
        )
        return ret, weight, value

    def behaviour_losses(self, seq: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Steps 3-6: the worker's, the manager's and the three critics' losses."""
        c = self.config
        k = c.skill_duration
        start_deter, start_stoch = seq["deter"].detach().flatten(0, 1), seq["stoch"].detach().flatten(0, 1)
        frozen = [p for p in [*self.world_model.parameters(), *self.goal_ae.parameters()] if p.requires_grad]
        for p in frozen:  # the worker's gradients flow through the world model but never into it
            p.requires_grad_(False)
        try:
            traj = self.imagine(start_deter, start_stoch)
            feat = torch.cat([traj["deter"], traj["stoch"]], -1)
            deter_next = traj["deter"][1:]
            rewards = {
                "extr": self.world_model.reward(feat[1:]).squeeze(-1),
                "expl": exploration_reward(self.goal_ae, deter_next.detach(), self.gen_train),
                "goal": goal_reward(traj["goal"][:-1], deter_next),  # the goal pursued when acting
            }
        finally:
            for p in frozen:
                p.requires_grad_(True)
        losses = {}
        # ---- worker: K-step segments with fixed goals, r_goal, dynamics backpropagation
        w_goal = segments(traj["goal"], k)
        w_goal = torch.cat(
            [w_goal[:-1], w_goal[:1]]
        )  # bootstrap each segment against its own goal, not the next
        w_feat = torch.cat([segments(feat, k), w_goal], -1)  # [K+1, S N, F + D]
        w_reward = segments(torch.cat([rewards["goal"][:1], rewards["goal"]]), k)[1:]  # [K, S N]
        running = c.adv_norm == "running"
        ret, weight, value = self.critic_targets("worker_critic", w_feat, w_reward, c.gamma, grad=running)
        dist = self.worker_dist(*w_feat[:-1].detach().split([feat.shape[-1], c.deter], -1))
        w_action = segments(torch.cat([traj["action"][:1], traj["action"]]), k)[
            1:
        ]  # a_t of each segment state
        logp, w_entropy = self.worker_terms(dist, w_action.detach())
        if running:  # the code: advnorm(retnorm(R) - retnorm(v)), differentiated through R and v (backprop)
            score = self.controls["adv_worker"](self.advantage("goal", ret, value[:-1]))
        elif self.discrete or c.return_norm:
            score = self.advantage("goal", ret, value[:-1])
        else:  # the goal return itself (v carries no gradient here, so its baseline would change nothing)
            score = ret
        # discrete: REINFORCE against the slow critic (the code's actor_grad_disc); continuous: dynamics
        # backpropagation (actor_grad_cont: backprop)
        objective = logp * score.detach() if self.discrete else score
        if c.ent_adapt:
            w_bonus = self.entropy_term("worker", w_entropy, self.worker_entropy_normalised(dist))
            losses["worker"] = weighted_actor_loss(objective, w_bonus, weight, 1.0)
        else:
            losses["worker"] = weighted_actor_loss(objective, w_entropy, weight, c.worker_ent)
        losses["worker_critic"] = self.critic_loss("worker_critic", w_feat, ret, weight)
        stats = {"worker/return": ret.mean()}
        # ---- manager: the abstract trajectory s_0, s_K, ..., s_H; REINFORCE on its codes
        m_feat = feat[::k].detach()
        objective = 0.0
        for name, scale in (("extr", c.manager_extr), ("expl", c.manager_expl)):
            m_reward = (
                rewards[name].detach().reshape(-1, k, *rewards[name].shape[1:]).mean(1)
            )  # segment means
            ret, weight, value = self.critic_targets(f"manager_{name}", m_feat, m_reward, c.gamma)
            losses[f"manager_{name}"] = self.critic_loss(f"manager_{name}", m_feat, ret, weight)
            advantage = self.advantage(name, ret, value[:-1])
            # batch: each critic's advantage normalised over the batch; running: the weighted sum normalised below
            objective = objective + scale * (advantage if running else normalised(advantage))
            stats[f"manager/return_{name}"] = ret.mean()
        if running:
            objective = self.controls["adv_manager"](objective)
        logp = self.manager_logp(m_feat[:-1])
        code = traj["code"][::k][:-1].detach()
        m_logp = (logp * code).sum((-2, -1))
        group_entropy = categorical_entropy(logp)  # [..., groups]
        m_entropy = group_entropy.sum(-1)
        if c.ent_adapt:  # per code group, normalised by its most entropy ln(classes) (the code's actent_perdim)
            m_bonus = self.entropy_term("manager", m_entropy, group_entropy / np.log(c.skill_classes))
            losses["manager"] = weighted_actor_loss(m_logp * objective.detach(), m_bonus, weight, 1.0)
        else:
            losses["manager"] = weighted_actor_loss(m_logp * objective.detach(), m_entropy, weight, c.manager_ent)
        stats.update({
            "reward/extr": rewards["extr"].mean(), "reward/expl": rewards["expl"].mean(),
            "reward/goal": rewards["goal"].mean(), "worker/entropy": w_entropy.mean(),
            "manager/entropy": m_entropy.mean(),
        })  # fmt: skip
        return losses, stats

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One update: world model, goal autoencoder (on replayed states), then worker, manager and critics."""
        c = self.config
        if self.discrete:  # the replay holds action indices; the world model reads one-hot vectors
            data = {
                **data,
                "action": np.eye(self.act_dim, dtype=np.float32)[np.asarray(data["action"]).astype(np.int64)],
            }
        model_loss, terms, seq = self.world_model.loss(
            data,
            self.gen_train,
            free_nats=c.free_nats,
            kl_scale=self.controls["kl"] if c.kl_adapt else c.kl_scale,
            kl_balance=c.kl_balance if c.latent == "categorical" else None,
        )
        goal_kl = self.controls["goal_kl"] if c.goal_kl_adapt else c.goal_kl
        goal_loss, rec, kl = self.goal_ae.loss(seq["deter"].flatten(0, 1), self.gen_train, goal_kl)
        losses, stats = self.behaviour_losses(seq)
        losses = {"world_model": model_loss, "goal_ae": goal_loss, **losses}
        values = finite_values(
            "director",
            {f"loss/{k}": v for k, v in losses.items()},
            self.updates,
            ["model_lr", "goal_lr", "actor_lr", "critic_lr"],
        )
        # each loss trains only its own network (the worker's gradients pass through the world model unchanged)
        grad_norms = step_each([(losses[name], list(self.nets[name].parameters()), self.opts[name]) for name in NETWORKS],
                               c.grad_clip, retain_graph=True)  # fmt: skip
        norms = {f"grad_norm/{name}": float(norm) for name, norm in zip(NETWORKS, grad_norms, strict=True)}
        if self.updates % c.slow_critic_every == 0:
            for name in self.critics:
                ema_update(
                    self.slow[name], self.nets[name], 1.0 if self.updates == 0 else c.slow_critic_fraction
                )
        self.updates += 1
        adaptive = {"kl": c.kl_adapt, "goal_kl": c.goal_kl_adapt, "worker_ent": c.ent_adapt, "manager_ent": c.ent_adapt}
        scales = {f"scale/{name}": float(self.controls[name].scale.mean()) for name, on in adaptive.items() if on}
        return {
            **{k: float(v.detach()) for k, v in terms.items()},
            **scales,
            **dict(zip([f"loss/{k}" for k in losses], values, strict=True)),
            "goal/reconstruction": float(rec.detach().mean()),
            "goal/kl": float(kl.detach().mean()),
            **norms,
            **{k: float(v.detach()) for k, v in stats.items()},
        }

    # ------------------------------------------------------------------ checkpoints
    def uses_controls(self) -> bool:
        c = self.config
        return c.kl_adapt or c.goal_kl_adapt or c.ent_adapt or c.return_norm or c.adv_norm == "running"

    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "slow": self.slow.state_dict(),
            "controls": self.controls.state_dict(),
            "opts": {name: opt.state_dict() for name, opt in self.opts.items()},
            "rng": {"train": self.gen_train.get_state(), "act": self.gen_act.get_state()},
            "counters": {
                "updates": self.updates,
                "acted": self.schedule.acted,
                "next_train": self.schedule.next_train,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_networks("director", self.nets, self.config, state)
        self.slow.load_state_dict(state["slow"])
        if "controls" in state:
            self.controls.load_state_dict(state["controls"])
        elif self.uses_controls():
            raise MethodError(
                "director: this checkpoint has no adaptive scales or running normalisers (written before they "
                "existed), but this config uses them; resume it with the settings it was made with"
            )
        for name, opt in self.opts.items():
            opt.load_state_dict(state["opts"][name])
        self.gen_train.set_state(state["rng"]["train"])
        self.gen_act.set_state(state["rng"]["act"])
        counters = state["counters"]
        self.updates = int(counters["updates"])
        self.schedule.acted, self.schedule.next_train = int(counters["acted"]), int(counters["next_train"])


__all__ = [
    "Director",
    "DirectorConfig",
    "GoalAutoencoder",
    "build_networks",
    "exploration_reward",
    "goal_reward",
    "parameter_counts",
    "segments",
]
