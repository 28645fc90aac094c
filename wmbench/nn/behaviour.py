"""Behaviour learning in imagination by analytic gradients, as in Dreamer v1 (Hafner et al. 2020, Sec. 3-4), for any
reward defined on imagined latent states: Dreamer v1's task reward, Plan2Explore's disagreement (Sekar et al. 2020).

Owns: the tanh-Normal action head of the released Dreamer code (`tanh_normal_params`: mean 5 tanh(x / 5), std
softplus(x + softplus^-1(5)) + 1e-4), the imagined rollout of a latent model under a policy (`imagine`), and the
actor and value losses of Eq. 7-8 from V_lambda (Eq. 6) along that rollout (`analytic_behaviour_losses`). A method
owns its networks, optimisers and which reward it feeds in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.nn.returns import lambda_return


def tanh_normal_params(raw: Tensor, raw_init_std: float, min_std: float, mean_scale: float) -> tuple[Tensor, Tensor]:
    """(mean, std) of the pre-tanh Normal from an action network's raw output [..., 2A]: mean = mean_scale *
    tanh(x / mean_scale), std = softplus(x + raw_init_std) + min_std (raw_init_std = softplus^-1(initial std))."""
    raw_mean, raw_std = raw.chunk(2, -1)
    mean = mean_scale * torch.tanh(raw_mean / mean_scale)
    return mean, F.softplus(raw_std + raw_init_std) + min_std


def imagine(
    rssm: nn.Module,
    start_deter: Tensor,
    start_stoch: Tensor,
    horizon: int,
    act: Callable[[Tensor, Tensor], Tensor],
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """s_0..s_H from the start states under `act(deter, stoch) -> action` (which decides what the policy sees, e.g.
    sg(s)): deter, stoch [H+1, N, .] and the actions a_0..a_H-1 [H, N, A]; differentiable through the prior
    (`rssm.img_step`) and the reparameterised actions."""
    deters, stochs, actions = [start_deter], [start_stoch], []
    deter, stoch = start_deter, start_stoch
    for _ in range(horizon):
        action = act(deter, stoch)
        deter, stoch, _ = rssm.img_step(deter, stoch, action, generator)
        deters.append(deter)
        stochs.append(stoch)
        actions.append(action)
    return torch.stack(deters), torch.stack(stochs), torch.stack(actions)


def analytic_behaviour_losses(
    value_net: nn.Module, feat: Tensor, reward: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(actor loss, value loss, V_lambda) of one imagined rollout, time-major: feat [H+1, N, F] of s_0..s_H,
    reward [H, N] (reward[tau] for the step from s_tau; Dreamer v1's E[q(r_tau | s_tau)]).

    V_lambda(s_tau) = r_tau + gamma ((1 - lambda) v(s_tau+1) + lambda V_lambda(s_tau+1)), V_lambda(s_H) = v(s_H)
    (Eq. 6, no terminal states); actor loss -mean V_lambda, differentiated through the rollout and v (Eq. 7); value
    loss: v(sg(s_tau)) regressed to sg(V_lambda) with half the squared error (Eq. 8)."""
    value = value_net(feat).squeeze(-1)
    lambda_ret = lambda_return(reward, torch.ones_like(reward), value, gamma, lam)
    actor_loss = -lambda_ret.mean()
    value_pred = value_net(feat[:-1].detach()).squeeze(-1)
    value_loss = (0.5 * (value_pred - lambda_ret.detach()).square()).mean()
    return actor_loss, value_loss, lambda_ret


__all__ = ["analytic_behaviour_losses", "imagine", "tanh_normal_params"]
