"""Return estimation and normalisation for actor-critic learning in imagination.

Owns: the TD(lambda) return of imagined and of replayed sequences, DreamerV3's percentile return normaliser (Sec. 3, "Actor learning": scale
S = EMA(Per(R, 95) - Per(R, 5)), decay 0.99, returns divided by max(1, S)) and the slow (EMA) copy of a network used
as the critic regulariser target (Sec. 3, "Critic learning").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def lambda_return(reward: Tensor, cont: Tensor, value: Tensor, gamma: float, lam: float) -> Tensor:
    """TD(lambda) returns R_0..R_{H-1} of an imagined trajectory, time-major.

    reward[t], cont[t]: received / continuation on arriving at state t+1 (shape [H, ...]); value: v(s_0..s_H)
    ([H+1, ...]). R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = v_H (DreamerV3 Eq. 7)."""
    disc = gamma * cont
    interm = reward + disc * value[1:] * (1 - lam)
    out = []
    last = value[-1]
    for t in reversed(range(reward.shape[0])):
        last = interm[t] + disc[t] * lam * last
        out.append(last)
    return torch.stack(out[::-1])


def replay_lambda_return(reward: Tensor, is_last: Tensor, is_terminal: Tensor, boot: Tensor, gamma: float, lam: float
                         ) -> Tensor:
    """TD(lambda) returns of a *replayed* sequence, batch-major [B, T] -> [B, T-1], bootstrapped with `boot`
    (DreamerV3 2024 `repl_loss`: the imagined lambda-return of each replayed state).

    reward[:, t], is_terminal[:, t], is_last[:, t]: as stored with step t (reward received on arriving at t).
    R_t = r_{t+1} + gamma (1 - term_{t+1}) ((1 - l_{t+1}) boot_{t+1} + l_{t+1} R_{t+1}), l_{t+1} = lam (1 - last_{t+1}),
    R_{T-1} = boot_{T-1}: at an episode's last step the return stops at that step's bootstrap. Without `is_last`
    this is `lambda_return` of (reward[:, 1:], 1 - is_terminal[:, 1:], boot) in batch-major layout."""
    live = (1.0 - is_terminal[:, 1:].float()) * gamma
    cont = (1.0 - is_last[:, 1:].float()) * lam
    interm = reward[:, 1:] + (1 - cont) * live * boot[:, 1:]
    out = []
    last = boot[:, -1]
    for t in reversed(range(live.shape[1])):
        last = interm[:, t] + live[:, t] * cont[:, t] * last
        out.append(last)
    return torch.stack(out[::-1], 1)


class PercentileNormalizer(nn.Module):
    """EMA of the 5th and 95th return percentiles; `scale` = max(limit, high - low) (limit 1 keeps small returns
    unscaled so that the entropy bonus does not dominate sparse-reward tasks). State is saved in state_dict."""

    def __init__(self, decay: float = 0.99, limit: float = 1.0, low: float = 5.0, high: float = 95.0):
        super().__init__()
        self.decay, self.limit, self.q = decay, limit, (low / 100, high / 100)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: Tensor) -> None:
        q = torch.quantile(returns.detach().float().flatten(), torch.tensor(self.q, device=returns.device))
        self.low.mul_(self.decay).add_((1 - self.decay) * q[0])
        self.high.mul_(self.decay).add_((1 - self.decay) * q[1])

    def scale(self) -> Tensor:
        return torch.clamp(self.high - self.low, min=self.limit)

    def forward(self, returns: Tensor, update: bool = True) -> tuple[Tensor, Tensor]:
        """(offset, scale) so that (R - offset) / scale is the normalised return."""
        if update:
            self.update(returns)
        return self.low.clone(), self.scale()


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, fraction: float) -> None:
    """target <- (1 - fraction) target + fraction source, parameter-wise (slow critic, fraction 0.02)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, fraction)
