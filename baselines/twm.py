"""TWM (Robine et al. 2023, "Transformer-based World Models Are Happy With 100k Interactions", ICLR; arXiv 2303.07109).

The algorithm as run here (the runner calls `policy` every env step and `update` after it):
1. Act uniformly at random for the first `prefill` agent steps (paper: 5,000). Then, once, pre-train on the prefill
   data (the official trainer's `_pretrain`; `pretrain_budget` samples, 50M there, split by `pretrain_obs_p` 0.6,
   `pretrain_dyn_p` 0.3 and `pretrain_ac_p` 0.7): the observation model alone (reconstruction + entropy hinge) on
   single stacked observations; then, the encoder fixed, the dynamics on its sampled latents; then the critic on
   lambda-returns of the real rewards and the actor towards maximal entropy (the prefill policy was uniform).
2. Then every `train_every` agent steps (the official trainer's 0.76: 1.3 updates per step), one update:
   - World model on `batch_size` x (`batch_length` + 1) replayed steps (100 x 17; one leading context step), start
     steps drawn by *balanced sampling*: p(start i) = softmax(-visits_i / `buffer_temperature`) (temperature 20),
     where visits_i counts how often step i started a batch, so new data is sampled about as often as old (Sec. 2.3).
   - Observation model (Sec. 2.1): a discrete VAE, x_t -> z_t of 32 categoricals x 32 classes (straight-through
     samples), on the last `frame_stack` (4) grayscale frames; loss = reconstruction (unit-variance Gaussian) +
     5 relu(0.1 - H(z)/H_max) (entropy hinge) + 0.01 CE(sg(p_dyn(z_t)), q(z_t | x_t)) (consistency with the
     dynamics' prediction).
   - Dynamics (Sec. 2.2): a causal Transformer-XL (wmbench.nn.transformer; 10 layers, width 256, 4 heads, relative
     positions, memory of 16 steps) over the token sequence ... r_t, z_t, a_t, r_t+1, ... (reward received on
     arriving at t, latent, action); the output at a_t predicts z_t+1 (cross-entropy to the encoder's sg(q)),
     r_t+1 (unit-variance Gaussian of tanh(reward), weight 10) and the discount gamma (1 - terminal_t+1)
     (Bernoulli, weight 50); no attention across an episode start, no loss on a prediction across one.
   - Actor-critic in imagination (Sec. 2.4): `ac_batch` (400) starts among the batch's steps, each with the step
     before it as context; imagine `imag_horizon` (15) steps with the KV cache (each step costs O(memory)), sampling
     z from the predicted categoricals; an imagined state ends when its predicted discount drops below 0.1.
     Critic v(z): lambda-returns (gamma from the discount head, lambda 0.95) with half squared error; actor pi(a | z):
     REINFORCE on the advantages R^lambda - v plus 0.01 relu(0.1 - H(pi)/log|A|) (entropy hinge); both weighted by
     the probability of not having ended.
3. Acting: z_t = the encoder's mode on the stacked frames, a_t ~ pi(. | z_t) (the policy needs no transformer).

Networks and optimisers from the official code (jrobine/twm, twm/config.py, nets.py, world_model.py,
actor_critic.py): CNN 48-96-192-384 (4x4 stride 2, SiLU) + MLP 2 x 512 to the logits; decoder Linear to 768
channels at 1x1, transposed CNN 5-5-6-6; heads MLPs of 4 x 512 (z) and 4 x 256 (reward, discount); actor and critic
4 x 512 SiLU on z; Adam with L2 weight decay 1e-6, eps 1e-5: lr 1e-4 (observation model, dynamics, actor), 1e-5
(critic); clips 100 (world model) and 1 (actor, critic); dropout 0.1 in the dynamics. Known differences from the
official code (docs/twm.md): pre-training batches are drawn uniformly with replacement (official: the observation
phase walks random permutations of the buffer), imagination weights are the product of not-ended indicators
(official: cumulative discounts), orthogonal initialisation not used (truncated-normal fan-in as elsewhere in
wmbench.nn)."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.config import ConfigError, bounded, to_dict
from wmbench.method import Method, MethodError
from wmbench.nn.distributions import categorical_entropy, sample_index, sample_onehot
from wmbench.nn.networks import MLP, StridedConvDecoder, StridedConvEncoder
from wmbench.nn.returns import lambda_return
from wmbench.nn.transformer import TransformerXL
from wmbench.nn.world_model import load_networks
from wmbench.seeding import derive_seed

GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as OpenCV's RGB2GRAY (gymnasium AtariPreprocessing)


@dataclass(frozen=True)
class TWMConfig:
    """Paper defaults (official twm/config.py `default`)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        # tests only: seconds per update
        "tiny": {
            "z_categoricals": 4,
            "z_categories": 4,
            "obs_channels": 4,
            "obs_units": 16,
            "vector_units": 16,
            "embed_dim": 16,
            "heads": 2,
            "layers": 1,
            "ff_dim": 16,
            "memory_length": 6,
            "head_units": 16,
            "head_layers": 1,
            "actor_units": 16,
            "actor_layers": 1,
            "batch_size": 2,
            "batch_length": 6,
            "ac_batch": 4,
            "imag_horizon": 4,
            "prefill": 30,
            "train_every": 4.0,
            "pretrain_budget": 0,
        },
        # CPU learning checks: 8x smaller model and batches, the paper's schedule and losses
        "small": {
            "obs_channels": 16,
            "obs_units": 256,
            "embed_dim": 128,
            "heads": 4,
            "layers": 2,
            "ff_dim": 256,
            "head_units": 128,
            "head_layers": 2,
            "actor_units": 128,
            "actor_layers": 2,
            "batch_size": 16,
            "ac_batch": 64,
            "train_every": 4.0,
            "prefill": 1000,
            # 5% of a 100k-step run's samples, as the official 50M of its 1G
            "pretrain_budget": 1_500_000,
        },
    }
    preset: str = "paper"
    # --- observation model (Sec. 2.1)
    z_categoricals: int = bounded(32, low=1)
    z_categories: int = bounded(32, low=2)
    obs_channels: int = bounded(48, low=1)  # CNN channels x (1, 2, 4, 8)
    kernels: tuple[int, ...] = (4, 4, 4, 4)  # stride-2 encoder kernels (64x64 -> 2x2)
    dec_kernels: tuple[int, ...] = (5, 5, 6, 6)  # transposed decoder kernels (1x1 -> 64x64)
    obs_units: int = bounded(512, low=1)  # encoder MLP, 2 layers
    vector_units: int = bounded(
        512, low=1
    )  # vector observations (not in the paper): 2-layer MLP encoder/decoder
    frame_stack: int = bounded(4, low=1, high=16)
    grayscale: bool = True
    obs_lr: float = bounded(1e-4, low=0, high=1)
    obs_clip: float = bounded(100.0, above=0)
    obs_entropy_coef: float = bounded(5.0, low=0)
    obs_entropy_threshold: float = bounded(0.1, low=0, high=1)
    obs_consistency_coef: float = bounded(0.01, low=0)
    # --- dynamics (Sec. 2.2)
    embed_dim: int = bounded(256, low=1)
    heads: int = bounded(4, low=1)
    layers: int = bounded(10, low=1)
    ff_dim: int = bounded(1024, low=1)
    memory_length: int = bounded(16, low=1, high=4096)  # past time steps each token attends to
    dropout: float = bounded(0.1, low=0, high=1)
    head_units: int = bounded(512, low=1)  # z head; the reward and discount heads use half of it (256)
    head_layers: int = bounded(4, low=1)
    dyn_lr: float = bounded(1e-4, low=0, high=1)
    dyn_clip: float = bounded(100.0, above=0)
    loss_z: float = bounded(1.0, low=0)
    loss_reward: float = bounded(10.0, low=0)
    loss_discount: float = bounded(50.0, low=0)
    # --- actor-critic (Sec. 2.4)
    ac_batch: int = bounded(400, low=1, high=65536)
    imag_horizon: int = bounded(15, low=1, high=1000)
    actor_units: int = bounded(512, low=1)
    actor_layers: int = bounded(4, low=1)
    actor_lr: float = bounded(1e-4, low=0, high=1)
    critic_lr: float = bounded(1e-5, low=0, high=1)
    ac_clip: float = bounded(1.0, above=0)
    actent: float = bounded(0.01, low=0)
    actent_threshold: float = bounded(0.1, low=0, high=1)
    gamma: float = bounded(0.99, low=0, high=1)
    lam: float = bounded(0.95, low=0, high=1)
    discount_threshold: float = bounded(0.1, low=0, high=1)  # imagined states end below this discount
    reward_transform: str = "tanh"  # "tanh" (paper) or "none"
    # --- shared optimiser settings (Adam with L2 weight decay, as torch.optim.Adam's weight_decay)
    eps: float = bounded(1e-5, above=0)
    weight_decay: float = bounded(1e-6, low=0)
    # --- schedule and replay
    batch_size: int = bounded(100, low=1, high=65536)
    batch_length: int = bounded(16, low=2, high=4096)
    prefill: int = bounded(5000, low=0)
    train_every: float = bounded(0.76, above=0)  # agent steps per update after the prefill
    buffer_temperature: float = bounded(20.0, above=0)
    # --- pre-training on the prefill data (official trainer.py `_pretrain`, config `pretrain_*`)
    pretrain_budget: int = bounded(50_000_000, low=0)  # samples (steps) over the three phases; 0: none
    pretrain_obs_p: float = bounded(0.6, low=0, high=1)
    pretrain_dyn_p: float = bounded(0.3, low=0, high=1)
    # The released trainer gives the actor-critic phase 1 - obs_p + dyn_p of the budget (0.7 with the defaults; 0.1,
    # 1 - obs_p - dyn_p, may have been meant): the released value, as its own key.
    pretrain_ac_p: float = bounded(0.7, low=0, high=1)

    def check(self) -> None:
        """Cross-field checks (run when the method is built: presets apply one key at a time)."""
        if self.embed_dim % self.heads:
            raise ConfigError(
                f"twm: heads={self.heads} does not divide embed_dim={self.embed_dim}; set --set "
                f"heads=... to a divisor of {self.embed_dim} (paper: 4 heads of width 256)"
            )
        if self.memory_length < self.imag_horizon:
            raise ConfigError(
                f"twm: memory_length={self.memory_length} is smaller than imag_horizon="
                f"{self.imag_horizon}: imagined steps would lose their own start; set --set "
                f"memory_length>={self.imag_horizon} (paper: 16 and 15)"
            )
        if self.pretrain_obs_p + self.pretrain_dyn_p > 1:
            raise ConfigError(
                f"twm: pretrain_obs_p={self.pretrain_obs_p} + pretrain_dyn_p={self.pretrain_dyn_p} exceeds 1 (the "
                "official trainer refuses it too); lower one of them (paper: 0.6 and 0.3)"
            )
        if self.reward_transform not in ("tanh", "none"):
            raise ConfigError(
                f"twm: reward_transform must be 'tanh' or 'none', got {self.reward_transform!r}"
            )


TOKENS_PER_STEP = 3  # r_t, z_t, a_t


def stack_frames(images: Tensor, is_first: Tensor, k: int) -> Tensor:
    """[B, L, H, W, C] frames -> [B, L-k+1, H, W, C*k]: each step with the k-1 frames before it (oldest first),
    never reaching before its episode's first frame (which is repeated instead), as frame-stacking wrappers do."""
    B, L = is_first.shape
    t = torch.arange(L, device=images.device)
    start = (
        torch.where(is_first.bool(), t, torch.zeros_like(t)).cummax(1).values
    )  # first step of each step's episode
    frames = []
    for j in range(k - 1, -1, -1):
        idx = torch.maximum(t[k - 1 :] - j, start[:, k - 1 :])  # [B, L-k+1]
        frames.append(images[torch.arange(B, device=images.device)[:, None], idx])
    return torch.cat(frames, -1)


class ObservationModel(nn.Module):
    """Discrete VAE: observations -> logits of z (categoricals x classes), z -> reconstructions."""

    def __init__(self, image_shape: tuple[int, int, int] | None, vector_dim: int | None, c: TWMConfig):
        super().__init__()
        self.z_dim = c.z_categoricals * c.z_categories
        feat = 0
        if image_shape is not None:
            h, w, ch = image_shape
            channels = (1 if c.grayscale else ch) * c.frame_stack
            self.conv = StridedConvEncoder((h, w, channels), c.obs_channels, c.kernels, act="silu")
            feat += self.conv.out_dim
            self.image_shape = (h, w, channels)
            n = len(c.dec_kernels)
            hidden = tuple(c.obs_channels * 2 ** (n - 2 - i) for i in range(n - 1))
            width = 16 * c.obs_channels
            self.dec_in = nn.Sequential(nn.Linear(self.z_dim, width), nn.SiLU())
            self.deconv = StridedConvDecoder(
                width, self.image_shape, kernels=c.dec_kernels, act="silu", channels=hidden, linear_in=False
            )
        if vector_dim is not None:
            self.vec_enc = MLP(vector_dim, c.vector_units, 2, norm="none")
            self.vec_dec = MLP(self.z_dim, c.vector_units, 2, out_dim=vector_dim, norm="none")
            feat += self.vec_enc.out_dim
        self.mlp = MLP(feat, c.obs_units, 2, out_dim=self.z_dim, norm="none")
        self.groups = (c.z_categoricals, c.z_categories)

    def encode(self, obs: dict[str, Tensor]) -> Tensor:
        """Float observations (image [.., H, W, C*k] in [0, 1], vector) -> z log-probs [.., categoricals, classes]."""
        parts = []
        if "image" in obs:
            parts.append(self.conv(obs["image"]))
        if "vector" in obs:
            parts.append(self.vec_enc(obs["vector"]))
        logits = self.mlp(torch.cat(parts, -1)).unflatten(-1, self.groups)
        return torch.log_softmax(logits.float(), -1)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        out = {}
        if hasattr(self, "deconv"):
            out["image"] = self.deconv(self.dec_in(z))
        if hasattr(self, "vec_dec"):
            out["vector"] = self.vec_dec(z)
        return out


class Dynamics(nn.Module):
    """Token embeddings, the shared Transformer-XL and the prediction heads (z, reward, discount)."""

    def __init__(self, z_dim: int, act_dim: int, c: TWMConfig):
        super().__init__()
        E = c.embed_dim
        self.embed_z = nn.Sequential(nn.Linear(z_dim, E), nn.SiLU())
        self.embed_a = nn.Embedding(act_dim, E)
        self.embed_r = nn.Sequential(nn.Linear(1, E), nn.SiLU())
        # a token sees itself and the tokens of the last memory_length steps (+ the current step's earlier ones)
        self.transformer = TransformerXL(
            E,
            c.layers,
            c.heads,
            c.ff_dim,
            memory=TOKENS_PER_STEP * (c.memory_length + 1) - 1,
            dropout=c.dropout,
            positions="relative",
            act="silu",
        )
        half = max(c.head_units // 2, 1)
        self.z_head = MLP(E, c.head_units, c.head_layers, out_dim=z_dim, norm="none")
        self.reward_head = MLP(E, half, c.head_layers, out_dim=1, norm="none")
        self.discount_head = MLP(E, half, c.head_layers, out_dim=1, norm="none")

    def tokens(self, reward: Tensor, z: Tensor, action: Tensor) -> Tensor:
        """[B, T] rewards, [B, T, z_dim] latents, [B, T] action indices -> [B, 3T, E] (r_t, z_t, a_t per step)."""
        tok = torch.stack([self.embed_r(reward[..., None]), self.embed_z(z), self.embed_a(action)], 2)
        return tok.flatten(1, 2)

    def forward(self, reward, z, action, is_first, cache=None):
        """Hidden state at every a_t token [B, T, E] (predicts step t+1) and the new cache."""
        B, T = reward.shape
        first = torch.zeros(B, T, TOKENS_PER_STEP, dtype=torch.bool, device=reward.device)
        first[..., 0] = is_first  # a new episode starts at its r_t token
        h, cache = self.transformer(self.tokens(reward, z, action), cache, first.flatten(1))
        return h[:, TOKENS_PER_STEP - 1 :: TOKENS_PER_STEP], cache

    def heads(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.z_head(h), self.reward_head(h).squeeze(-1), self.discount_head(h).squeeze(-1)


class TWM(Method):
    name = "twm"
    Config = TWMConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        if not isinstance(act_space, gymnasium.spaces.Discrete):
            return f"TWM's actor is categorical: discrete actions only, got {act_space}"
        keys = set(obs_space) - {"image", "vector"}
        if keys or not obs_space:
            return f"observation entries must be 'image' and/or 'vector', got {sorted(obs_space)}"
        if "image" in obs_space and (
            len(obs_space["image"].shape) != 3 or obs_space["image"].dtype != np.uint8
        ):
            return f"'image' must be uint8 HxWxC, got {obs_space['image']}"
        if "vector" in obs_space and len(obs_space["vector"].shape) != 1:
            return f"'vector' must be 1-D, got shape {obs_space['vector'].shape}"
        return None

    def __init__(
        self, obs_space, act_space, config: TWMConfig | None = None, device: str = "cpu", seed: int = 0
    ):
        config = config if config is not None else TWMConfig()
        super().__init__(obs_space, act_space, config, device, seed)
        c = config
        c.check()
        self.device = torch.device(device)
        self.act_dim = int(act_space.n)
        self.image_shape = tuple(obs_space["image"].shape) if "image" in obs_space else None
        self.vector_dim = int(obs_space["vector"].shape[0]) if "vector" in obs_space else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "twm/init"))
            try:
                self.nets = build_networks(obs_space, act_space, c).to(self.device)
            except ValueError as e:  # image sizes the kernels do not fit
                raise ConfigError(
                    f"twm: {e}; set --set kernels=... dec_kernels=... for this image size"
                ) from e
        self.obs_model, self.dynamics = self.nets["obs_model"], self.nets["dynamics"]
        self.actor, self.critic = self.nets["actor"], self.nets["critic"]
        adam = lambda params, lr: torch.optim.Adam(params, lr=lr, eps=c.eps, weight_decay=c.weight_decay)  # noqa: E731
        self.obs_opt = adam(self.obs_model.parameters(), c.obs_lr)
        self.dyn_opt = adam(self.dynamics.parameters(), c.dyn_lr)
        self.actor_opt = adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), c.critic_lr)
        self.gen_train = torch.Generator(self.device).manual_seed(derive_seed(seed, "twm/train"))
        self.gen_act = torch.Generator(self.device).manual_seed(derive_seed(seed, "twm/act"))
        self.updates = 0
        self.acted = 0
        self.pretrained = False
        self.visits = np.zeros(0, np.int64)  # batch starts per global replay index (balanced sampling)

    # ------------------------------------------------------------------ observations
    def _obs_floats(self, images: Tensor | None, vector: Tensor | None) -> dict[str, Tensor]:
        out = {}
        if images is not None:
            out["image"] = images
        if vector is not None:
            out["vector"] = vector.float()
        return out

    def _frames(self, image: Tensor) -> Tensor:
        """uint8 [..., H, W, C] -> float frames in [0, 1], grayscale [..., H, W, 1] when configured."""
        x = image.float() / 255.0
        if self.config.grayscale:
            x = (x * torch.tensor(GRAY, device=x.device)[: x.shape[-1]]).sum(-1, keepdim=True) / sum(
                GRAY[: x.shape[-1]]
            )
        return x

    def _z_sample(self, logprobs: Tensor, generator: torch.Generator) -> Tensor:
        """Straight-through one-hot sample, flattened to [.., z_dim]."""
        return sample_onehot(logprobs, generator).flatten(-2)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        c = self.config
        is_first = torch.as_tensor(np.asarray(obs["is_first"]), device=self.device).bool().reshape(-1)
        n = is_first.shape[0]
        inputs: dict[str, Tensor] = {}
        stack = None
        if self.image_shape is not None:
            frame = self._frames(torch.as_tensor(np.ascontiguousarray(obs["image"]), device=self.device))
            if state is None:
                stack = frame.repeat(1, 1, 1, c.frame_stack)
            else:
                stack = torch.cat([state[:, :, :, frame.shape[-1] :], frame], -1)
                stack = torch.where(
                    is_first[:, None, None, None], frame.repeat(1, 1, 1, c.frame_stack), stack
                )
            inputs["image"] = stack
        if self.vector_dim is not None:
            inputs["vector"] = (
                torch.as_tensor(np.ascontiguousarray(obs["vector"]), device=self.device)
                .float()
                .reshape(n, -1)
            )
        z = (
            F.one_hot(self.obs_model.encode(inputs).argmax(-1), c.z_categories).float().flatten(-2)
        )  # mode (official)
        logits = torch.log_softmax(self.actor(z), -1)
        if mode != "eval" and self.acted < c.prefill:
            logits = torch.zeros_like(logits)  # uniform random prefill
        if mode != "eval":
            self.acted += n
        action = sample_index(logits, self.gen_act)
        return action.cpu().numpy(), stack

    # ------------------------------------------------------------------ learning
    def update(self, replay: Any, step: int) -> dict[str, float]:
        c = self.config
        length = c.batch_length + 1 + (c.frame_stack - 1 if self.image_shape else 0)
        if self.acted < c.prefill or len(replay) < length:
            return {}
        pretrain_metrics: dict[str, float] = {}
        if not self.pretrained:
            self.pretrained = True
            if c.pretrain_budget > 0:
                pretrain_metrics = self.pretrain(replay)
        due = 1 + int((int(step) - max(c.prefill, 0)) / c.train_every)
        metrics: list[dict[str, float]] = []
        while self.updates < due:
            metrics.append(self.train_batch(self._sample(replay, length)))
        if not metrics:
            return pretrain_metrics
        return {**pretrain_metrics, **{k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}}

    def pretrain(self, replay: Any) -> dict[str, float]:
        """Pre-training on the prefill data, once, before the first update (official trainer `_pretrain`). Budgets
        are samples, as there: `pretrain_budget` x p per phase, a world-model batch counting batch_size x
        batch_length samples and an actor-critic batch ac_batch x imag_horizon. Batches are drawn uniformly (the
        balanced sampler's visit counts are left alone)."""
        c = self.config
        skip = c.frame_stack - 1 if self.image_shape else 0
        wm_samples = c.batch_size * c.batch_length
        n_obs = math.ceil(c.pretrain_budget * c.pretrain_obs_p / wm_samples)
        n_dyn = math.ceil(c.pretrain_budget * c.pretrain_dyn_p / wm_samples)
        n_ac = math.ceil(c.pretrain_budget * c.pretrain_ac_p / (c.ac_batch * c.imag_horizon))
        out: dict[str, Tensor] = {}
        print(f"twm: pre-training on the {len(replay)} prefill steps: {n_obs} observation-model, {n_dyn} dynamics and "
              f"{n_ac} actor-critic updates (official trainer._pretrain; the progress line waits for them)",
              file=sys.stderr, flush=True)
        # 1. The observation model alone on single (stacked) observations: reconstruction + entropy hinge.
        for _ in range(n_obs):
            obs, *_ = self._tensors(replay.sample(wm_samples, 1 + skip))
            _, _, obs_loss, _ = self._observation_loss(obs)
            self._step(self.obs_opt, obs_loss, self.obs_model, c.obs_clip)
            out["pretrain/obs"] = obs_loss.detach()
        # 2. The dynamics on latents sampled from the (now fixed) encoder.
        for _ in range(n_dyn):
            obs, is_first, action, reward, terminal = self._tensors(
                replay.sample(c.batch_size, c.batch_length + 1 + skip)
            )
            with torch.no_grad():
                logp = self.obs_model.encode(obs)
                z = self._z_sample(logp, self.gen_train)
            dyn_loss, *_ = self._dynamics_loss(logp, z, action, reward, terminal, is_first)
            self._step(self.dyn_opt, dyn_loss, self.dynamics, c.dyn_clip)
            out["pretrain/dyn"] = dyn_loss.detach()
        # 3. The critic on lambda-returns of the real rewards (no value across an episode's end), the actor towards
        #    maximal entropy ("ok since data was collected with random policy", the official comment).
        for _ in range(n_ac):
            data = replay.sample(c.ac_batch, c.imag_horizon + 1 + skip)
            obs, is_first, _, reward, _ = self._tensors(data)
            last = torch.as_tensor(data["is_last"], device=self.device).float()[:, skip:]
            with torch.no_grad():
                zs = self._z_sample(self.obs_model.encode(obs), self.gen_train).transpose(0, 1)  # [H+1, N, Z]
                valid = 1.0 - is_first[:, 1:].float().T  # a transition into a new episode is none
                cont = c.gamma * (1.0 - last[:, 1:].T) * valid  # done (terminal or time limit) ends the return
                ret = lambda_return(reward[:, 1:].T * valid, cont, self.critic(zs).squeeze(-1), 1.0, c.lam)
            critic_loss = (valid * 0.5 * (self.critic(zs[:-1]).squeeze(-1) - ret).square()).mean()
            entropy = categorical_entropy(torch.log_softmax(self.actor(zs), -1)).mean() / math.log(self.act_dim)
            actor_loss = -c.actent * entropy
            self._step(self.actor_opt, actor_loss, self.actor, c.ac_clip)
            self._step(self.critic_opt, critic_loss, self.critic, c.ac_clip)
            out.update({"pretrain/critic": critic_loss.detach(), "pretrain/policy_entropy": entropy.detach()})
        values = {k: float(v) for k, v in out.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise MethodError(f"twm: pre-training losses {bad} became non-finite; lower the learning rates or "
                              "--set pretrain_budget=0")
        return {**values, "pretrain/updates": float(n_obs + n_dyn + n_ac)}

    def _sample(self, replay: Any, length: int) -> dict[str, np.ndarray]:
        """Balanced sampling (Sec. 2.3): start steps weighted softmax(-visits / temperature)."""
        total, size = replay.total, len(replay)
        if self.visits.shape[0] < total:
            self.visits = np.concatenate([self.visits, np.zeros(total - self.visits.shape[0], np.int64)])
        visits = self.visits[total - size : total].astype(np.float64)
        logits = -(visits - visits.min()) / self.config.buffer_temperature
        data = replay.sample(self.config.batch_size, length, index=True, start_weights=np.exp(logits))
        np.add.at(self.visits, data["index"][:, 0], 1)
        return data

    def _tensors(self, data: dict[str, np.ndarray]) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, Tensor]:
        """A replayed batch [B, T + frame_stack - 1] as model inputs [B, T]: observations (frames stacked), is_first,
        actions, (tanh) rewards, terminals."""
        c = self.config
        dev = self.device
        is_first_all = torch.as_tensor(data["is_first"], device=dev).bool()
        skip = c.frame_stack - 1 if self.image_shape else 0
        obs: dict[str, Tensor] = {}
        if self.image_shape is not None:
            frames = self._frames(torch.as_tensor(data["image"], device=dev))
            obs["image"] = stack_frames(frames, is_first_all, c.frame_stack)
        if self.vector_dim is not None:
            obs["vector"] = torch.as_tensor(data["vector"], device=dev).float()[:, skip:]
        is_first = is_first_all[:, skip:]
        B = is_first.shape[0]
        action = torch.as_tensor(data["action"], device=dev).long().reshape(B, -1)[:, skip:]
        reward = torch.as_tensor(data["reward"], device=dev).float().reshape(B, -1)[:, skip:]
        reward = torch.tanh(reward) if c.reward_transform == "tanh" else reward
        terminal = torch.as_tensor(data["is_terminal"], device=dev).float().reshape(B, -1)[:, skip:]
        return obs, is_first, action, reward, terminal

    def _observation_loss(self, obs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Sec. 2.1: encode, sample z (straight-through), decode: (log q [.., G, K], z, reconstruction + entropy
        hinge, the terms)."""
        c = self.config
        logp = self.obs_model.encode(obs)  # [B, T, G, K]
        z = self._z_sample(logp, self.gen_train)
        recon = self.obs_model.decode(z)
        terms: dict[str, Tensor] = {}
        rec = torch.zeros((), device=self.device)
        if (
            "image" in recon
        ):  # unit-variance Gaussian: 1/2 squared error summed over pixels (constant dropped)
            terms["loss/image"] = 0.5 * (recon["image"] - obs["image"]).square().sum((-3, -2, -1)).mean()
            rec = rec + terms["loss/image"]
        if "vector" in recon:
            terms["loss/vector"] = 0.5 * (recon["vector"] - obs["vector"]).square().sum(-1).mean()
            rec = rec + terms["loss/vector"]
        max_ent = c.z_categoricals * math.log(c.z_categories)
        z_entropy = categorical_entropy(logp).sum(-1).mean() / max_ent
        terms["loss/z_entropy"] = c.obs_entropy_coef * torch.relu(c.obs_entropy_threshold - z_entropy)
        terms["z/norm_entropy"] = z_entropy
        return logp, z, rec + terms["loss/z_entropy"], terms

    def _dynamics_loss(
        self, logp: Tensor, z: Tensor, action: Tensor, reward: Tensor, terminal: Tensor, is_first: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Sec. 2.2: the Transformer-XL's predictions of z_t+1 (cross-entropy to sg q), r_t+1 and the discount:
        (weighted loss, log p_dyn(z_t+1) [B, T-1, G, K], weights and their sum (no prediction across an episode
        start), the terms)."""
        c = self.config
        terms: dict[str, Tensor] = {}
        h, _ = self.dynamics(reward, z.detach(), action, is_first)
        z_logits, r_pred, g_logits = self.dynamics.heads(h[:, :-1])
        z_logp_pred = torch.log_softmax(z_logits.unflatten(-1, logp.shape[-2:]).float(), -1)
        weight = (~is_first[:, 1:]).float()  # no prediction across an episode start
        wsum = weight.sum().clamp(min=1.0)
        target_probs = logp[:, 1:].detach().exp()
        z_ce = -(target_probs * z_logp_pred).sum((-2, -1))
        terms["loss/dyn_z"] = (z_ce * weight).sum() / wsum
        terms["loss/dyn_reward"] = (0.5 * (r_pred - reward[:, 1:]).square() * weight).sum() / wsum
        g_target = c.gamma * (1.0 - terminal[:, 1:])
        g_loss = F.binary_cross_entropy_with_logits(g_logits, g_target, reduction="none")
        terms["loss/dyn_discount"] = (g_loss * weight).sum() / wsum
        dyn_loss = (
            c.loss_z * terms["loss/dyn_z"]
            + c.loss_reward * terms["loss/dyn_reward"]
            + (c.loss_discount * terms["loss/dyn_discount"])
        )
        return dyn_loss, z_logp_pred, weight, wsum, terms

    def train_batch(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.config
        obs, is_first, action, reward, terminal = self._tensors(data)

        # ---- observation model and dynamics (Sec. 2.1-2.2)
        logp, z, obs_loss, terms = self._observation_loss(obs)
        z_entropy = terms.pop("z/norm_entropy")
        dyn_loss, z_logp_pred, weight, wsum, dyn_terms = self._dynamics_loss(
            logp, z, action, reward, terminal, is_first
        )
        terms.update(dyn_terms)
        # consistency: the encoder towards the dynamics' sg prediction of the same step (official 'enc_prior')
        consistency = -(z_logp_pred.detach().exp() * logp[:, 1:]).sum((-2, -1))
        terms["loss/consistency"] = c.obs_consistency_coef * (consistency * weight).sum() / wsum
        obs_loss = obs_loss + terms["loss/consistency"]
        self._step(self.dyn_opt, dyn_loss, self.dynamics, c.dyn_clip)
        self._step(self.obs_opt, obs_loss, self.obs_model, c.obs_clip)

        # ---- actor-critic in imagination (Sec. 2.4)
        ac_terms = self._behaviour(reward, z.detach(), action, is_first)
        self.updates += 1
        out = {k: v.detach() for k, v in terms.items()}
        out.update(
            {
                "loss/obs": obs_loss.detach(),
                "loss/dyn": dyn_loss.detach(),
                "z/norm_entropy": z_entropy.detach(),
            }
        )
        out.update(ac_terms)
        values = torch.stack([v.float() for v in out.values()]).tolist()
        bad = [k for k, v in zip(out, values, strict=True) if not math.isfinite(v)]
        if bad:
            raise MethodError(
                f"twm: loss terms {bad} became non-finite at update {self.updates}; resume from the last "
                "checkpoint with smaller learning rates (--set dyn_lr=... --set obs_lr=... and "
                "--allow-config-change)"
            )
        return dict(zip(out, values, strict=True))

    @staticmethod
    def _step(opt: torch.optim.Optimizer, loss: Tensor, module: nn.Module, clip: float) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(module.parameters()))
        nn.utils.clip_grad_norm_(list(module.parameters()), clip)
        opt.step()

    @torch.no_grad()
    def imagine(
        self, reward: Tensor, z: Tensor, action: Tensor, is_first: Tensor, starts: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Imagined rollouts from replayed starts: `starts` [N, 2] (row, step >= 1) of the [B, T] batch; the step
        before each start is its context. Returns z [H+1, N, Z], actions [H, N], rewards [H, N], discounts [H, N]
        and weights [H+1, N] (1 until the rollout's predicted discount fell below the threshold)."""
        c = self.config
        rows, t = starts[:, 0], starts[:, 1]
        was_training = self.dynamics.training
        self.dynamics.eval()  # no dropout in imagination
        # context step t-1, then the start step's reward and latent before its (imagined) action
        _, cache = self.dynamics(
            reward[rows, t - 1][:, None],
            z[rows, t - 1][:, None],
            action[rows, t - 1][:, None],
            is_first[rows, t - 1][:, None],
        )
        r_t, z_t, first = reward[rows, t], z[rows, t], is_first[rows, t]
        zs, acts, rews, discs = [z_t], [], [], []
        alive = torch.ones_like(r_t)
        weights = [alive]
        for _ in range(c.imag_horizon):
            a_t = sample_index(torch.log_softmax(self.actor(z_t), -1), self.gen_train)
            h, cache = self.dynamics(r_t[:, None], z_t[:, None], a_t[:, None], first[:, None], cache)
            z_logits, r_t, g_logits = self.dynamics.heads(h[:, 0])
            logp = torch.log_softmax(z_logits.unflatten(-1, (c.z_categoricals, c.z_categories)).float(), -1)
            z_t = self._z_sample(logp, self.gen_train)
            g_t = torch.sigmoid(g_logits).clamp(0, 1)
            first = torch.zeros_like(first)
            alive = alive * (g_t >= c.discount_threshold).float()
            zs.append(z_t)
            acts.append(a_t)
            rews.append(r_t)
            discs.append(g_t * alive)
            weights.append(alive)
        self.dynamics.train(was_training)
        return torch.stack(zs), torch.stack(acts), torch.stack(rews), torch.stack(discs), torch.stack(weights)

    def _behaviour(self, reward: Tensor, z: Tensor, action: Tensor, is_first: Tensor) -> dict[str, Tensor]:
        c = self.config
        B, T = reward.shape
        flat = torch.randint(0, B * (T - 1), (c.ac_batch,), generator=self.gen_train, device=self.device)
        starts = torch.stack([flat // (T - 1), flat % (T - 1) + 1], -1)
        zs, acts, rews, discs, weights = self.imagine(reward, z, action, is_first, starts)
        with torch.no_grad():
            value = self.critic(zs).squeeze(-1)
            ret = lambda_return(
                rews, discs, value, 1.0, c.lam
            )  # discounts already hold gamma (discount head)
            adv = ret - value[:-1]
        w = weights[:-1]
        value_pred = self.critic(zs[:-1]).squeeze(-1)
        critic_loss = (w * 0.5 * (value_pred - ret).square()).mean()
        logits = torch.log_softmax(self.actor(zs[:-1]), -1)
        logp = logits.gather(-1, acts[..., None]).squeeze(-1)
        entropy = categorical_entropy(logits)
        norm_entropy = (w * entropy).mean() / math.log(self.act_dim)
        actor_loss = -(w * logp * adv).mean() + c.actent * torch.relu(c.actent_threshold - norm_entropy)
        self._step(self.critic_opt, critic_loss, self.critic, c.ac_clip)
        self._step(self.actor_opt, actor_loss, self.actor, c.ac_clip)
        return {
            "loss/actor": actor_loss.detach(),
            "loss/critic": critic_loss.detach(),
            "imag/return": ret.mean(),
            "imag/reward": rews.mean(),
            "policy/norm_entropy": norm_entropy.detach(),
            "imag/alive": weights[-1].mean(),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "preset": self.config.preset,
            "memory_length": self.config.memory_length,
            "config": to_dict(self.config),
            "nets": self.nets.state_dict(),
            "obs_opt": self.obs_opt.state_dict(),
            "dyn_opt": self.dyn_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "acted": self.acted,
            "pretrained": self.pretrained,
            "visits": torch.from_numpy(self.visits.copy()),
            "gen_train": self.gen_train.get_state(),
            "gen_act": self.gen_act.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        c = self.config
        if state.get("memory_length") != c.memory_length:
            raise MethodError(
                f"twm checkpoint was written with memory_length={state.get('memory_length')} (the transformer's "
                f"context) but this run uses memory_length={c.memory_length}; run with --set "
                f"memory_length={state.get('memory_length')} or use a new run directory"
            )
        load_networks("twm", self.nets, c, state)
        self.obs_opt.load_state_dict(state["obs_opt"])
        self.dyn_opt.load_state_dict(state["dyn_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates, self.acted = int(state["updates"]), int(state["acted"])
        # checkpoints from before pre-training existed: a run already past its prefill is not pre-trained mid-run
        self.pretrained = bool(state.get("pretrained", self.updates > 0))
        self.visits = state["visits"].numpy().copy()
        self.gen_train.set_state(state["gen_train"])
        self.gen_act.set_state(state["gen_act"])


def build_networks(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, c: TWMConfig
) -> nn.ModuleDict:
    image_shape = tuple(obs_space["image"].shape) if "image" in obs_space else None
    vector_dim = int(obs_space["vector"].shape[0]) if "vector" in obs_space else None
    act_dim = int(act_space.n)
    obs_model = ObservationModel(image_shape, vector_dim, c)
    return nn.ModuleDict(
        {
            "obs_model": obs_model,
            "dynamics": Dynamics(obs_model.z_dim, act_dim, c),
            "actor": MLP(obs_model.z_dim, c.actor_units, c.actor_layers, out_dim=act_dim, norm="none"),
            "critic": MLP(obs_model.z_dim, c.actor_units, c.actor_layers, out_dim=1, norm="none"),
        }
    )


def parameter_counts(
    obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, config: TWMConfig
) -> dict[str, int]:
    """Trained parameters per network (built on the meta device)."""
    with torch.device("meta"):
        nets = build_networks(obs_space, act_space, config)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    counts["total"] = sum(counts.values())
    return counts


__all__ = ["TWM", "TWMConfig", "build_networks", "parameter_counts", "stack_frames"]
