"""Convolutional variational autoencoder of single frames: World Models' V (Ha & Schmidhuber 2018, agent model and
appendix), built from the shared stride-2 CNN encoder and transposed-CNN decoder (`wmbench.nn.networks`).

On 64x64 RGB frames: four stride-2 ReLU convolutions (32, 64, 128, 256 channels, kernel 4) to 2x2x256 = 1024
features, two linear heads for the mean and log-variance of a diagonal Gaussian z, then a linear layer to 1024 and
four stride-2 transposed ReLU convolutions (128, 64, 32 channels, kernels 5, 5, 6, 6) with a sigmoid output. z of 32
dims gives 4,348,547 parameters and z of 64 gives 4,446,915: the paper's parameter counts (CarRacing and Doom).
Loss (the released code's `vae.py`): squared error summed over pixels plus the KL to N(0, I) summed over z, the KL
held at no less than `kl_tolerance * z_dim` nats (no gradient below it), both averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from wmbench.nn.networks import StridedConvDecoder, StridedConvEncoder
from wmbench.nn.world_model import image_kernels


class ConvVAE(nn.Module):
    def __init__(self, image_shape: Sequence[int], z_dim: int = 32, depth: int = 32, enc_kernels: Sequence[int] = (),
                 dec_kernels: Sequence[int] = ()):
        super().__init__()
        shape = tuple(image_shape)
        enc_k, dec_k = image_kernels(shape, enc_kernels, dec_kernels)
        self.z_dim = int(z_dim)
        self.encoder = StridedConvEncoder(shape, depth, enc_k, act="relu")
        self.mean = nn.Linear(self.encoder.out_dim, self.z_dim)
        self.logvar = nn.Linear(self.encoder.out_dim, self.z_dim)
        self.decoder = StridedConvDecoder(self.z_dim, shape, depth, dec_k, act="relu")

    @staticmethod
    def pixels(image: Tensor) -> Tensor:
        """uint8 HWC -> float in [0, 1] (the released code's input and reconstruction target)."""
        return image.float() / 255.0

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 HWC frames [..., H, W, C] -> (mean, log-variance) of q(z | frame), each [..., z_dim]."""
        feat = self.encoder(self.pixels(image))
        return self.mean(feat), self.logvar(feat)

    def decode(self, z: Tensor) -> Tensor:
        """z [..., z_dim] -> frame in [0, 1], float HWC."""
        return torch.sigmoid(self.decoder(z))

    @staticmethod
    def sample(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise

    def loss(self, image: Tensor, generator: torch.Generator | None = None, kl_tolerance: float = 0.5
             ) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative ELBO of a batch of uint8 frames [B, H, W, C] (see the module docstring)."""
        mean, logvar = self.encode(image)
        recon = self.decode(self.sample(mean, logvar, generator))
        recon_loss = (recon - self.pixels(image)).square().sum((-3, -2, -1)).mean()
        kl = (-0.5 * (1 + logvar - mean.square() - logvar.exp()).sum(-1)).mean()
        kl_loss = kl.clamp(min=kl_tolerance * self.z_dim)
        return recon_loss + kl_loss, {"vae/recon": recon_loss, "vae/kl": kl}


__all__ = ["ConvVAE"]
