"""Mixture density networks and the MDN-RNN: World Models' M (Ha & Schmidhuber 2018, agent model and appendix;
Graves 2013, Bishop 1994).

`MDN` maps features to a mixture of `mixtures` diagonal Gaussians per output dimension (each dimension of z has its
own mixture weights, as in the paper's released `rnn.py`), with its log-likelihood and a temperature-controlled
sampler: the mixture logits are divided by tau and the standard deviations scaled by sqrt(tau) (paper: VizDoom experiment).
`MDNRNN` is an LSTM over [z_t, a_t] whose hidden state h_t parameterises p(z_{t+1} | a_t, z_t, h_t) with an MDN,
and optionally a done flag (the Doom model). Trained by the negative log-likelihood of the next z (plus
the done flag's binary cross-entropy).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MDN(nn.Module):
    """Linear head: features [..., in_dim] -> (log mixture weights, means, log stds), each [..., out_dim, K]."""

    def __init__(self, in_dim: int, out_dim: int, mixtures: int = 5):
        super().__init__()
        if mixtures < 1:
            raise ValueError(f"an MDN needs at least one mixture component, got mixtures={mixtures}")
        self.out_dim, self.mixtures = int(out_dim), int(mixtures)
        self.linear = nn.Linear(in_dim, 3 * self.out_dim * self.mixtures)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.linear(feat).reshape(*feat.shape[:-1], self.out_dim, 3, self.mixtures)
        logit, mean, logstd = out.unbind(-2)
        return F.log_softmax(logit, -1), mean, logstd

    @staticmethod
    def log_prob(params: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
        """log p(x) [..., out_dim] per dimension: logsumexp_k (log pi_k + log N(x; mu_k, sigma_k))."""
        logpi, mean, logstd = params
        x = x.unsqueeze(-1)
        log_normal = -0.5 * ((x - mean) / logstd.exp()).square() - logstd - LOG_SQRT_2PI
        return torch.logsumexp(logpi + log_normal, -1)

    @staticmethod
    def sample(params: tuple[Tensor, Tensor, Tensor], temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """One draw per dimension [..., out_dim]; temperature tau > 1 makes the mixture choice and the Gaussians
        more uncertain (logits / tau, sigma * sqrt(tau))."""
        if not temperature > 0:
            raise ValueError(f"MDN temperature must be > 0, got {temperature}")
        logpi, mean, logstd = params
        probs = F.softmax(logpi / temperature, -1)
        flat = probs.reshape(-1, probs.shape[-1])
        k = torch.multinomial(flat, 1, generator=generator).reshape(*probs.shape[:-1], 1)
        mu = mean.gather(-1, k).squeeze(-1)
        std = logstd.gather(-1, k).squeeze(-1).exp() * math.sqrt(temperature)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + std * noise


class MDNRNN(nn.Module):
    """LSTM over [z_t, a_t] -> h_t -> MDN over z_{t+1} (and a done logit with `predict_done`)."""

    def __init__(self, z_dim: int, action_dim: int, units: int = 256, mixtures: int = 5, predict_done: bool = False):
        super().__init__()
        self.z_dim, self.action_dim, self.units = int(z_dim), int(action_dim), int(units)
        self.lstm = nn.LSTM(self.z_dim + self.action_dim, self.units, batch_first=True)
        self.mdn = MDN(self.units, self.z_dim, mixtures)
        self.done = nn.Linear(self.units, 1) if predict_done else None

    def initial(self, batch: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(1, batch, self.units, device=device)
        return zeros, zeros.clone()

    def forward(self, z: Tensor, action: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """z [B, T, z_dim], action [B, T, A] -> LSTM outputs h [B, T, units] and the final (h, c)."""
        out, state = self.lstm(torch.cat([z, action], -1), state)
        return out, state

    def step(self, z: Tensor, action: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One step for a batch [B, .]: returns h_{t+1} [B, units] and the new (h, c)."""
        out, state = self.lstm(torch.cat([z, action], -1).unsqueeze(1), state)
        return out[:, 0], state

    def loss(self, z: Tensor, action: Tensor, next_z: Tensor, done: Tensor | None = None, mask: Tensor | None = None,
             done_weight: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean negative log-likelihood per z dimension of next_z [B, T, z_dim] given the sequence so far (the
        released code averages over dimensions and steps), plus the done flag's cross-entropy with done steps weighted
        `done_weight` (rare: the released Doom code weighs them 10); `mask` [B, T] leaves padded steps out."""
        h, _ = self(z, action)
        nll = -MDN.log_prob(self.mdn(h), next_z).mean(-1)
        mask = torch.ones_like(nll) if mask is None else mask.float()
        count = mask.sum().clamp(min=1.0)
        z_loss = (nll * mask).sum() / count
        terms = {"rnn/z_nll": z_loss}
        loss = z_loss
        if self.done is not None:
            if done is None:
                raise ValueError("this MDN-RNN predicts the done flag: pass `done`")
            bce = F.binary_cross_entropy_with_logits(self.done(h).squeeze(-1), done.float(), reduction="none")
            bce = bce * (1 + done.float() * (done_weight - 1))
            done_loss = (bce * mask).sum() / count
            terms["rnn/done_bce"] = done_loss
            loss = loss + done_loss
        return loss, terms


__all__ = ["MDN", "MDNRNN"]
