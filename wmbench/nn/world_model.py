"""The Gaussian-latent pixel world model of PlaNet (Hafner et al. 2019), which Dreamer v1 (Hafner et al. 2020,
Sec. 3 and App. A: "we use the RSSM of PlaNet") learns unchanged.

Owns: the network set (stride-2 ReLU CNN encoder, Gaussian GRU RSSM, transposed-CNN image decoder, reward MLP), the
image preprocessing, the belief update for acting, the per-step negative ELBO (PlaNet Eq. 3, Dreamer Eq. 10):

    loss_t = image_scale * -log p(o_t | s_t) + reward_scale * -log p(r_t | s_t)
             + kl_scale * max(free_nats, KL[q(s_t | h_t, o_t) || p(s_t | h_t)])

(or, `free_nats_mean`, the KL term max(free_nats, mean over the batch's steps of the KL), as Dreamer v1's code does)

with unit-variance Gaussian image and reward likelihoods (half the squared error, constants dropped). With
`latent="categorical"` the same network set holds DreamerV2's categorical RSSM as the Director code configures it
(danijar/director a6a649e, configs.yaml `rssm`: `stoch` groups of `classes` one-hot classes, straight-through, no
uniform mix; dense GRU core; LayerNorm (eps 1e-3) and ELU on every RSSM layer, no biases before a norm; learned
initial state h_0 = tanh(w), z_0 = the prior's mode), and `kl_balance` gives DreamerV2's KL balancing (Algorithm 2)
in place of the plain KL (the class keeps its historical name). Methods own
their optimiser, their schedule and any extra terms (PlaNet's latent overshooting); they read the posterior
sequence that `loss` returns.

Also shared by both methods: the input check (`pixel_control_support`), the data-collection schedule of their
Algorithm 1 (`EpisodeSchedule`: S seed episodes, then C updates after every collected episode), the non-finite
loss check and the checkpoint loading of their networks. `StepSchedule`: the DreamerV2 code's schedule (random
prefill, pretraining, then updates every few agent steps), shared by DreamerV2 and DreamerPro.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from wmbench.config import differing_keys
from wmbench.method import MethodError
from wmbench.nn.networks import MLP, Norm, StridedConvDecoder, StridedConvEncoder
from wmbench.nn.rssm import RSSM

# Encoder / decoder kernels per square image size: 64 is PlaNet's (conv_ha); the others keep its stride-2 design.
KERNELS = {64: ((4, 4, 4, 4), (5, 5, 6, 6)), 32: ((4, 4, 4), (5, 6, 6)), 16: ((4, 4), (6, 6))}


def image_kernels(
    shape: Sequence[int], enc_kernels: Sequence[int] = (), dec_kernels: Sequence[int] = ()
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The given kernels, or the defaults for this square image size (ValueError naming both keys otherwise)."""
    h, w = shape[:2]
    if enc_kernels and dec_kernels:
        return tuple(enc_kernels), tuple(dec_kernels)
    if h != w or h not in KERNELS:
        raise ValueError(
            f"no default CNN kernels for {h}x{w} images (known sizes: {sorted(KERNELS)}); set "
            "enc_kernels=... and dec_kernels=... (stride-2 'valid' convolutions; the decoder must grow 1x1 to the size)"
        )
    enc, dec = KERNELS[h]
    return tuple(enc_kernels) or enc, tuple(dec_kernels) or dec


def preprocess_image(image: Tensor, bits: int, generator: torch.Generator | None, dequantise: bool = True) -> Tensor:
    """uint8 pixels -> values centred on 0. PlaNet (App. A, following Kingma & Dhariwal 2018; official
    `tools/preprocess.py`): `bits`-bit values in [-0.5, 0.5) plus uniform dequantisation noise. `dequantise=False`
    (Dreamer v1's `preprocess`): image / 255 - 0.5, no noise (`bits` must then be 8)."""
    if not dequantise:
        return image.float() / 255.0 - 0.5
    bins = 2**bits
    x = torch.floor(image.float() / 2 ** (8 - bits)) / bins
    return x + torch.rand(x.shape, generator=generator, device=x.device) / bins - 0.5


class GaussianWorldModel(nn.Module):
    """Encoder, RSSM, image decoder and reward head; `act` is the RSSM's and the reward MLP's nonlinearity (ReLU in
    PlaNet, ELU in Dreamer v1's code), the CNNs use ReLU in both. `latent`: Gaussian latents of `stoch` dims
    (default) or categorical ones of `stoch` x `classes` (module docstring; `min_std` then unused)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        action_dim: int,
        *,
        deter: int = 200,
        stoch: int = 30,
        hidden: int = 200,
        min_std: float = 0.1,
        depth: int = 32,
        enc_kernels: Sequence[int] = (),
        dec_kernels: Sequence[int] = (),
        reward_units: int = 100,
        reward_layers: int = 2,
        act: str = "relu",
        image_bits: int = 5,
        dequantise: bool = True,
        latent: Literal["gaussian", "categorical"] = "gaussian",
        classes: int = 32,
    ):
        super().__init__()
        self.image_bits, self.dequantise = image_bits, dequantise
        shape = tuple(image_shape)
        enc_k, dec_k = image_kernels(shape, enc_kernels, dec_kernels)
        # registration order = parameter order (optimiser state, checkpoints): encoder, rssm, decoder, reward
        self.encoder = StridedConvEncoder(shape, depth, enc_k, act="relu")
        if latent == "gaussian":
            self.rssm = RSSM(
                self.encoder.out_dim, action_dim, deter, hidden, stoch, latent="gaussian", blocks=1, norm="none",
                img_layers=1, obs_layers=1, min_std=min_std, core="gru", act=act, fan="avg",
            )
        elif latent == "categorical":
            self.rssm = RSSM(
                self.encoder.out_dim, action_dim, deter, hidden, stoch, classes, latent="categorical", blocks=1,
                norm="layer", unimix=0.0, img_layers=1, obs_layers=1, core="dense", initial="learned", bias=False,
                fan="avg", act=act, gru_norm="layer",
            )
            for module in self.rssm.modules():
                if isinstance(module, Norm):
                    module.eps = 1e-3  # the Director code's Norm (tf.nn.batch_normalization with 1e-3)
        else:
            raise ValueError(f"latent must be 'gaussian' or 'categorical', got {latent!r}")
        self.decoder = StridedConvDecoder(self.rssm.feat_dim, shape, depth, dec_k, act="relu")
        self.reward = MLP(self.rssm.feat_dim, reward_units, reward_layers, out_dim=1, norm="none", act=act, fan="avg")
        self.action_dim = action_dim

    def preprocess(self, pixels: Any, generator: torch.Generator | None) -> Tensor:
        """uint8 HWC pixels (array or tensor, any strides: DMC renders flipped views) -> model input."""
        device = self.reward.out.weight.device
        pixels = torch.as_tensor(np.ascontiguousarray(pixels), device=device)
        return preprocess_image(pixels, self.image_bits, generator, self.dequantise)

    def filter(
        self, pixels: Any, state: tuple[Tensor, Tensor, Tensor] | None, is_first: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """The belief q(s_t | o_<=t, a_<t) for acting: (deter, stoch) after observing o_t from `state` = (deter,
        stoch, last action), None at the start."""
        image = self.preprocess(pixels, generator)
        if state is None:
            deter, stoch = self.rssm.initial(image.shape[0], image.device)
            prev_action = torch.zeros(image.shape[0], self.action_dim, device=image.device)
        else:
            deter, stoch, prev_action = state
        deter, stoch, _ = self.rssm.obs_step(deter, stoch, prev_action, self.encoder(image), is_first, generator)
        return deter, stoch

    @staticmethod
    def feat(deter: Tensor, stoch: Tensor) -> Tensor:
        return torch.cat([deter, stoch], -1)

    def predict_reward(self, deter: Tensor, stoch: Tensor) -> Tensor:
        """Mean of p(r | s) (the mode of the unit-variance Gaussian)."""
        return self.reward(self.feat(deter, stoch)).squeeze(-1)

    def loss(
        self,
        data: dict[str, np.ndarray],
        generator: torch.Generator | None = None,
        *,
        free_nats: float = 3.0,
        free_nats_mean: bool = False,
        kl_scale: float | Callable[[Tensor], Tensor] = 1.0,
        image_scale: float = 1.0,
        reward_scale: float = 1.0,
        reward_grad: bool = True,
        kl_balance: float | None = None,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Negative ELBO of a replayed [B, L] batch: (mean loss, per-term means, posterior sequence).

        `reward_grad=False`: the reward head learns from sg(s_t), so the reward shapes no latent state (Plan2Explore's
        task-agnostic world model; its code's `freeze_extrinsic_heads`). `free_nats_mean`: clip the batch's mean KL
        below `free_nats` (Dreamer v1's released code) instead of each step's (PlaNet): with it no step's KL gets a
        gradient while the mean is below the free nats, and every step's does once the mean is above them.
        `kl_balance` (alpha): DreamerV2's KL balancing, alpha KL[sg(q) || p] + (1 - alpha) KL[q || sg(p)] with the
        free nats on each part's batch mean (`RSSM.balanced_kl_loss`; `free_nats_mean` is then implied).
        `kl_scale` may be a callable: it receives the KL term (the batch quantity the loss weights, detached) and
        returns its weight, e.g. an `AdaptiveScale` that updates on it first (the Director code's `wmkl`).

        data["action"][:, t] is the action chosen at step t (the replay's convention); the RSSM is fed a_{t-1} -> o_t.
        The sequence holds deter/stoch/post/prior [B, L, .], `prev_action` [B, L, A], `is_first` [B, L] and the
        encoder's `embed` [B, L, E] of the observations."""
        image = self.preprocess(data["image"], generator)
        shape, device = image.shape[:2], image.device
        action = torch.as_tensor(data["action"], device=device).float().reshape(*shape, self.action_dim)
        reward = torch.as_tensor(data["reward"], device=device).float().reshape(shape)
        is_first = torch.as_tensor(data["is_first"], device=device).bool().reshape(shape)
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
        embed = self.encoder(image)
        seq = self.rssm.observe(embed, prev_action, is_first, generator=generator)
        seq.update(prev_action=prev_action, is_first=is_first, embed=embed)
        feat = self.feat(seq["deter"], seq["stoch"])
        image_nll = 0.5 * (self.decoder(feat) - image).square().sum((-3, -2, -1))
        reward_nll = 0.5 * (self.reward(feat if reward_grad else feat.detach()).squeeze(-1) - reward).square()
        kl = self.rssm.kl(seq["post"], seq["prior"])
        if kl_balance is not None or callable(kl_scale):
            if kl_balance is not None:
                kl_term, _ = self.rssm.balanced_kl_loss(seq["post"], seq["prior"], kl_balance, free_nats)
            elif free_nats_mean:
                kl_term = kl.mean().clamp(min=free_nats)
            else:
                kl_term = kl.clamp(min=free_nats).mean()
            weight = kl_scale(kl_term.detach()) if callable(kl_scale) else kl_scale
            loss = (image_scale * image_nll + reward_scale * reward_nll).mean() + weight * kl_term
        elif free_nats_mean:
            loss = (image_scale * image_nll + reward_scale * reward_nll).mean() + kl_scale * kl.mean().clamp(
                min=free_nats
            )
        else:
            kl_free = kl.clamp(min=free_nats)  # free nats: no gradient while the KL is below them
            loss = (image_scale * image_nll + reward_scale * reward_nll + kl_scale * kl_free).mean()
        terms = {"loss/image": image_nll.mean(), "loss/reward": reward_nll.mean(), "kl": kl.mean()}
        return loss, terms, seq


DISCRETE_LATENT_KEYS = ("classes", "unimix", "latent", "blocks", "loss_dyn", "loss_rep", "kl_balance", "free_bits")


def gaussian_latent_key_notes(method: str, paper: str, stoch: int = 30) -> dict[str, str]:
    """Config `KEY_NOTES` of a Gaussian-latent method: discrete-latent keys refused with the reason."""
    return {
        key: f"{method}'s latents are Gaussian (stoch={stoch} dims, {paper}); {key!r} is a discrete-latent "
        "(DreamerV2/V3) setting. Use `wmbench run dreamerv3 ...` for categorical latents."
        for key in DISCRETE_LATENT_KEYS
    }


def pixel_control_support(
    method: str, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space, allow_discrete: bool = False
) -> str | None:
    """`Method.supports` of a pixel world model acting with continuous actions (PlaNet, Dreamer v1), or also with
    discrete ones (`allow_discrete`, DreamerV2)."""
    if "image" not in obs_space:
        return (
            f"{method} learns from pixels and needs an 'image' observation, but these observations are "
            f"{sorted(obs_space)} (a vector-only protocol, [env] obs = 'vector', e.g. dmc_proprio@1); use a "
            "pixel protocol such as dmc_vision@1"
        )
    s = obs_space["image"]
    if len(s.shape) != 3 or s.dtype != np.uint8:
        return f"'image' must be uint8 HxWxC, got shape {s.shape} dtype {s.dtype}"
    if allow_discrete and isinstance(act_space, gymnasium.spaces.Discrete):
        return None
    if allow_discrete and not isinstance(act_space, gymnasium.spaces.Box):
        return f"{method} acts with Discrete actions or a 1-D Box in [-1, 1], got {act_space}"
    if not isinstance(act_space, gymnasium.spaces.Box) or len(act_space.shape) != 1:
        return (
            f"{method} acts with continuous actions (a 1-D Box), got {act_space}; for discrete actions (e.g. "
            "atari100k@1) use dreamerv3"
        )
    if not (np.all(act_space.low == -1) and np.all(act_space.high == 1)):
        return "Box actions must lie in [-1, 1] (the env contract normalises them)"
    return None


class EpisodeSchedule:
    """Algorithm 1 of PlaNet (kept by Dreamer v1): the first `seed_episodes` (S) training episodes act uniformly at
    random; after every completed training episode, from the S-th on, `updates` (C) gradient steps on batches of
    `batch_size` x `batch_length` replayed steps. Episodes are counted from the flags the policy sees."""

    def __init__(self, seed_episodes: int, updates: int, batch_size: int, batch_length: int):
        self.seed_episodes, self.updates = seed_episodes, updates
        self.batch_size, self.batch_length = batch_size, batch_length
        self.episodes_started = 0  # training episodes begun (policy sees is_first)
        self.episodes_finished = 0  # training episodes ended (policy sees is_last)
        self.pending_train = False

    def observe(self, obs: dict[str, Any], mode: str) -> bool:
        """Count the training episodes of this policy call; True while the seed episodes act at random."""
        if mode != "train":
            return False
        self.episodes_started += int(np.asarray(obs["is_first"]).sum())
        finished = int(np.asarray(obs["is_last"]).sum())
        if finished:
            self.episodes_finished += finished
            self.pending_train = True  # trained at the next update, once the replay holds the episode
        return self.episodes_started <= self.seed_episodes

    def train(self, replay: Any, train_batch: Callable[[dict[str, np.ndarray]], dict[str, float]]) -> dict[str, float]:
        """C calls of `train_batch` when an episode has been collected since the last call; their mean metrics."""
        if not self.pending_train:
            return {}
        self.pending_train = False
        if self.episodes_finished < max(1, self.seed_episodes) or len(replay) < self.batch_length:
            return {}
        metrics = [train_batch(replay.sample(self.batch_size, self.batch_length)) for _ in range(self.updates)]
        if not metrics:
            return {}
        return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}

    def state_dict(self) -> dict[str, Any]:
        return {"episodes_started": self.episodes_started, "episodes_finished": self.episodes_finished,
                "pending_train": self.pending_train}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes_started = int(state["episodes_started"])
        self.episodes_finished = int(state["episodes_finished"])
        self.pending_train = bool(state["pending_train"])


class StepSchedule:
    """The DreamerV2 code's training schedule (`train.py`): the first `prefill` training agent steps act uniformly at
    random; once the replay holds them, 1 + `pretrain` updates, then `train_steps` updates every `train_every` agent
    steps, each on a batch of `batch_size` x `batch_length` replayed steps. Evaluation steps do not count."""

    def __init__(self, prefill: int, pretrain: int, train_every: int, train_steps: int, batch_size: int,
                 batch_length: int):
        self.prefill, self.pretrain, self.train_every, self.train_steps = prefill, pretrain, train_every, train_steps
        self.batch_size, self.batch_length = batch_size, batch_length
        self.acted = 0  # agent steps acted outside evaluation (the prefill counts them)
        self.next_train = -1  # agent step of the next scheduled training (-1: training has not begun)

    def act_randomly(self, batch: int, mode: str) -> bool:
        """Count this policy call's training steps; True while they are still in the random prefill."""
        if mode == "eval":
            return False
        self.acted += batch
        return self.acted <= self.prefill

    def train(self, replay: Any, step: int, train_batch: Callable[[dict[str, np.ndarray]], dict[str, float]]
              ) -> dict[str, float]:
        """The scheduled calls of `train_batch` at agent step `step`; their mean metrics ({} when none is due)."""
        if self.acted < self.prefill or len(replay) < self.batch_length:
            return {}
        if self.next_train < 0:
            count, self.next_train = 1 + self.pretrain, int(step) + self.train_every
        elif int(step) >= self.next_train:
            count, self.next_train = self.train_steps, self.next_train + self.train_every
        else:
            return {}
        metrics = [train_batch(replay.sample(self.batch_size, self.batch_length)) for _ in range(count)]
        return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}


def finite_values(method: str, terms: dict[str, Tensor], update: int, lr_keys: Sequence[str]) -> list[float]:
    """The terms as floats, checked before any optimiser step so that a NaN never reaches the weights."""
    values = torch.stack([t.detach() for t in terms.values()]).tolist()
    for name, value in zip(terms, values, strict=True):
        if not np.isfinite(value):
            flags = " ".join(f"--set {key}=..." for key in lr_keys)
            raise FloatingPointError(
                f"{method}: loss term {name!r} is not finite at update {update}; resume from the run's last "
                f"checkpoint (the same wmbench run command) with a lower learning rate: add {flags} and "
                "--allow-config-change (run.json records the change)"
            )
    return values


def load_networks(method: str, nets: nn.Module, config: Any, state: dict[str, Any]) -> None:
    """nets.load_state_dict(state["nets"]), or a MethodError naming the config keys that differ."""
    try:
        nets.load_state_dict(state["nets"])
    except RuntimeError as e:
        diff = differing_keys(config, state.get("config", {}))
        raise MethodError(
            f"{method} checkpoint (preset {state.get('preset')!r}) does not fit this config (preset "
            f"{config.preset!r}; differing keys: {', '.join(diff) or 'none'}): {str(e).splitlines()[0]}"
        ) from e


def parameter_counts(nets: nn.Module) -> dict[str, int]:
    """Trained parameters per child network and in total."""
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.named_children()}
    counts["total"] = sum(counts.values())
    return counts


__all__ = [
    "KERNELS", "EpisodeSchedule", "GaussianWorldModel", "StepSchedule", "finite_values", "gaussian_latent_key_notes", "image_kernels",
    "load_networks", "parameter_counts", "pixel_control_support", "preprocess_image",
]
