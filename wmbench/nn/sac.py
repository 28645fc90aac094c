"""Soft actor-critic pieces (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", arXiv
1812.05905): what any method that runs SAC on some state (SLAC's latents, a proprioceptive vector, an encoder's
features) needs, with the losses left to the method.

Owns:
- `TanhGaussianActor`: MLP -> (mean, std) of a Normal squashed by tanh into (-1, 1), log-std clipped to [-20, 2]
  (the SAC reference implementations' bounds); samples and log-densities from `wmbench.nn.distributions`.
- `TwinQ`: two independent Q networks Q_1, Q_2(s, a) (clipped double-Q, Sec. 5 / Fujimoto et al. 2018), each an MLP
  on [s, a]; `target_copy` gives their target networks, moved by `wmbench.nn.returns.ema_update` (Polyak averaging,
  tau = 0.005 in the paper).
- The automatic temperature (Sec. 5): J(alpha) = E_a~pi[-alpha (log pi(a|s) + H_target)], optimised over
  log alpha (`temperature_loss`), with the target entropy H_target = -|A| (`target_entropy`, Sec. 5 / App. D: "-dim
  of the action space"). A positive target asks a squashed Gaussian for more entropy than it can have per dimension
  (at most log 2) and drives alpha up without bound, so a target of the wrong sign is refused.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from wmbench.nn.distributions import tanh_normal_log_prob, tanh_normal_sample
from wmbench.nn.networks import MLP

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def target_entropy(action_dim: int, per_dim: float = -1.0) -> float:
    """H_target = per_dim x |A| (SAC: per_dim = -1). ValueError naming the value and the fix when per_dim >= 0."""
    if not per_dim < 0:
        raise ValueError(
            f"SAC target entropy per action dimension must be negative, got {per_dim!r} (a target >= 0 asks the "
            "tanh-squashed policy for entropy it cannot reach, so alpha grows without bound); SAC's heuristic is -1 "
            "per dimension (H_target = -|A|, Haarnoja et al. 2018, Sec. 5): set target_entropy_per_dim=-1.0"
        )
    return float(per_dim * action_dim)


def temperature_loss(log_alpha: Tensor, log_prob: Tensor, target: float) -> Tensor:
    """J(alpha) of Sec. 5 on sampled actions' log pi(a|s) (no gradient to the policy), as a function of log alpha:
    -log_alpha * mean(log pi + H_target). Its gradient mean(-log pi) - H_target = entropy - target moves log alpha
    down when the policy's entropy is above the target and up when below."""
    return -(log_alpha * (log_prob.detach() + target)).mean()


class TanhGaussianActor(nn.Module):
    """pi(a | s): `layers` hidden layers of `units` (no norm) -> mean and log-std of u ~ N, a = tanh(u)."""

    def __init__(self, in_dim: int, action_dim: int, units: int = 256, layers: int = 2, act: str = "relu"):
        super().__init__()
        self.net = MLP(in_dim, units, layers, out_dim=2 * action_dim, norm="none", act=act, fan="avg")

    def dist(self, state: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(state).chunk(2, -1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def sample(self, state: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(a, log pi(a | s)) with a reparameterised (gradients reach the actor through a)."""
        mean, std = self.dist(state)
        action, u = tanh_normal_sample(mean, std, generator)
        return action, tanh_normal_log_prob(u, mean, std)

    def mode(self, state: Tensor) -> Tensor:
        """tanh(mean): the deterministic action for evaluation."""
        return torch.tanh(self.dist(state)[0])


class TwinQ(nn.Module):
    """Q_1(s, a), Q_2(s, a): two MLPs on [s, a] with one output each; `forward` returns both ([..., ] each)."""

    def __init__(self, in_dim: int, action_dim: int, units: int = 256, layers: int = 2, act: str = "relu"):
        super().__init__()
        self.q1 = MLP(in_dim + action_dim, units, layers, out_dim=1, norm="none", act=act, fan="avg")
        self.q2 = MLP(in_dim + action_dim, units, layers, out_dim=1, norm="none", act=act, fan="avg")

    def forward(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([state, action], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def target_copy(self) -> TwinQ:
        """A frozen copy (the target networks Q-bar), trained only by Polyak averaging."""
        target = copy.deepcopy(self)
        target.requires_grad_(False)
        return target


__all__ = ["LOG_STD_MAX", "LOG_STD_MIN", "TanhGaussianActor", "TwinQ", "target_entropy", "temperature_loss"]
