"""Return estimation and normalisation for actor-critic learning in imagination.

Owns: the TD(lambda) return of imagined and of replayed sequences, DreamerV3's percentile return normaliser (Sec. 3, "Actor learning": scale
S = EMA(Per(R, 95) - Per(R, 5)), decay 0.99, returns divided by max(1, S)) and the slow (EMA) copy of a network used
as the critic regulariser target (Sec. 3, "Critic learning").

Also the Director code's (danijar/director a6a649e, `embodied/agents/director/tfutils.py`) two running controls of
actor-critic learning: `MomentNormalizer` (its `Normalize`: returns divided by a running std, `retnorm`; advantages
centred and divided by a running std, `advnorm`) and `AdaptiveScale` (its `AutoAdapt` with impl `mult`: the weight of
a regulariser such as the actor entropy or a KL term steered multiplicatively towards a target value of the
regulariser, `actent`, `wmkl`, `encdec_kl`).
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


class MomentNormalizer(nn.Module):
    """Running normaliser of the Director code (`Normalize`): EMAs (decay d) of the batch mean and the batch mean
    square of every tensor given to `update`, bias-corrected by 1 - d^n after n updates; `forward` multiplies by
    1 / sqrt(max(var, 1 / max_scale^2)) (so a near-constant input is scaled up at most `max_scale` times) after
    subtracting the mean when `center` (impl `mean_std`; `std` without). The statistics carry no gradient; the
    input keeps its own (a dynamics-backpropagation objective stays differentiable). Before the first update the
    input passes unchanged. The code's `retnorm` is (decay 0.999, max 100, std), `advnorm` (0.99, 1e8, mean_std)."""

    def __init__(self, decay: float, max_scale: float, center: bool):
        super().__init__()
        self.decay, self.max_scale, self.center = decay, max_scale, center
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("sqrs", torch.zeros(()))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, values: Tensor) -> None:
        x = values.detach().float()
        self.step.add_(1)
        self.mean.mul_(self.decay).add_((1 - self.decay) * x.mean())
        self.sqrs.mul_(self.decay).add_((1 - self.decay) * x.square().mean())

    def stats(self) -> tuple[Tensor, Tensor]:
        """(mean, 1 / std) as `forward` applies them; (0, 1) before the first update."""
        correction = 1 - self.decay ** self.step.float()
        started = self.step > 0
        mean = torch.where(started, self.mean / correction.clamp(min=1e-12), 0.0)
        var = torch.where(started, self.sqrs / correction.clamp(min=1e-12) - mean.square(), 1.0)
        return mean, torch.rsqrt(var.clamp(min=1 / self.max_scale**2))

    def forward(self, values: Tensor, update: bool = True) -> Tensor:
        if update:
            self.update(values)
        mean, inv_std = self.stats()
        return ((values - mean) if self.center else values) * inv_std


class AdaptiveScale(nn.Module):
    """The weight of a regulariser, adapted towards a target value of it (the Director code's `AutoAdapt`, impl
    `mult`): on each call the batch mean of the regulariser (one mean per trailing dimension of `shape`, e.g. per
    action dimension) is compared with the target; above target (1 + thres) the scale grows by (1 + vel), below
    target / (1 + thres) it shrinks by that factor, in between it stays; then it is clipped to [low, high].
    `inverse` swaps the two directions: for a bonus such as the actor entropy, whose weight must grow while the
    entropy is *below* its target. The code starts every such scale at 1 (its `scale` key is read only by impl
    `fixed`); here it starts at `init`. Returns the scale after the update, without gradient."""

    def __init__(
        self, shape: tuple[int, ...], init: float, target: float, low: float, high: float, vel: float = 0.1,
        thres: float = 0.1, inverse: bool = False
    ):
        super().__init__()
        self.shape, self.target, self.low, self.high = tuple(shape), target, low, high
        self.vel, self.thres, self.inverse = vel, thres, inverse
        self.register_buffer("scale", torch.full(self.shape, float(init)))

    @torch.no_grad()
    def update(self, reg: Tensor) -> None:
        avg = reg.detach().float().reshape(-1, *self.shape).mean(0)
        above = avg > (1 + self.thres) * self.target
        below = avg < self.target / (1 + self.thres)
        if self.inverse:
            above, below = below, above
        factor = torch.where(above, 1 + self.vel, torch.where(below, 1 / (1 + self.vel), 1.0))
        self.scale.copy_((self.scale * factor).clamp(self.low, self.high))

    def forward(self, reg: Tensor, update: bool = True) -> Tensor:
        if update:
            self.update(reg)
        return self.scale.clone()


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, fraction: float) -> None:
    """target <- (1 - fraction) target + fraction source, parameter-wise (slow critic, fraction 0.02)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, fraction)
