"""The Gaussian-latent pixel world model of PlaNet (Hafner et al. 2019), which Dreamer v1 (Hafner et al. 2020,
Sec. 3 and App. A: "we use the RSSM of PlaNet") learns unchanged.

Owns: the network set (stride-2 ReLU CNN encoder, Gaussian GRU RSSM, transposed-CNN image decoder, reward MLP), the
image preprocessing and the per-step negative ELBO (PlaNet Eq. 3, Dreamer Eq. 10):

    loss_t = image_scale * -log p(o_t | s_t) + reward_scale * -log p(r_t | s_t)
             + kl_scale * max(free_nats, KL[q(s_t | h_t, o_t) || p(s_t | h_t)])

with unit-variance Gaussian image and reward likelihoods (half the squared error, constants dropped). Methods own
their optimiser, their schedule and any extra terms (PlaNet's latent overshooting); they read the posterior
sequence that `loss` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wmbench.nn.networks import MLP, StridedConvDecoder, StridedConvEncoder
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
    PlaNet, ELU in Dreamer v1's code), the CNNs use ReLU in both."""

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
    ):
        super().__init__()
        shape = tuple(image_shape)
        enc_k, dec_k = image_kernels(shape, enc_kernels, dec_kernels)
        # registration order = parameter order (optimiser state, checkpoints): encoder, rssm, decoder, reward
        self.encoder = StridedConvEncoder(shape, depth, enc_k, act="relu")
        self.rssm = RSSM(
            self.encoder.out_dim, action_dim, deter, hidden, stoch, latent="gaussian", blocks=1, norm="none",
            img_layers=1, obs_layers=1, min_std=min_std, core="gru", act=act, fan="avg",
        )
        self.decoder = StridedConvDecoder(self.rssm.feat_dim, shape, depth, dec_k, act="relu")
        self.reward = MLP(self.rssm.feat_dim, reward_units, reward_layers, out_dim=1, norm="none", act=act, fan="avg")
        self.action_dim = action_dim

    @staticmethod
    def feat(deter: Tensor, stoch: Tensor) -> Tensor:
        return torch.cat([deter, stoch], -1)

    def predict_reward(self, deter: Tensor, stoch: Tensor) -> Tensor:
        """Mean of p(r | s) (the mode of the unit-variance Gaussian)."""
        return self.reward(self.feat(deter, stoch)).squeeze(-1)

    def loss(
        self,
        image: Tensor,
        action: Tensor,
        reward: Tensor,
        is_first: Tensor,
        generator: torch.Generator | None = None,
        *,
        free_nats: float = 3.0,
        kl_scale: float = 1.0,
        image_scale: float = 1.0,
        reward_scale: float = 1.0,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Negative ELBO of a preprocessed [B, L] batch: (mean loss, per-term means, posterior sequence).

        action[:, t] is the action chosen at step t (the replay's convention); the RSSM is fed a_{t-1} -> o_t. The
        sequence holds deter/stoch/post/prior [B, L, .] and `prev_action` [B, L, A]."""
        prev_action = torch.cat([torch.zeros_like(action[:, :1]), action[:, :-1]], 1)
        seq = self.rssm.observe(self.encoder(image), prev_action, is_first, generator=generator)
        seq["prev_action"] = prev_action
        feat = self.feat(seq["deter"], seq["stoch"])
        image_nll = 0.5 * (self.decoder(feat) - image).square().sum((-3, -2, -1))
        reward_nll = 0.5 * (self.reward(feat).squeeze(-1) - reward).square()
        kl = self.rssm.kl(seq["post"], seq["prior"])
        kl_free = kl.clamp(min=free_nats)  # free nats: no gradient while the KL is below them
        loss = (image_scale * image_nll + reward_scale * reward_nll + kl_scale * kl_free).mean()
        terms = {"loss/image": image_nll.mean(), "loss/reward": reward_nll.mean(), "kl": kl.mean()}
        return loss, terms, seq


def parameter_counts(nets: nn.Module) -> dict[str, int]:
    """Trained parameters per child network and in total."""
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.named_children()}
    counts["total"] = sum(counts.values())
    return counts


__all__ = ["KERNELS", "GaussianWorldModel", "image_kernels", "parameter_counts", "preprocess_image"]
