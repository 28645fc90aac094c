"""Behaviour learning in imagination, for any reward defined on imagined latent states: Dreamer v1's task reward,
Plan2Explore's disagreement (Sekar et al. 2020), DreamerV2's and DreamerPro's reward head.

Owns: the tanh-Normal action head of the released Dreamer code (`tanh_normal_params`: mean 5 tanh(x / 5), std
softplus(x + softplus^-1(5)) + 1e-4), the imagined rollout of a latent model under a policy (`imagine`), and
- Dreamer v1 (Hafner et al. 2020, Sec. 3-4): the actor and value losses of Eq. 7-8 from V_lambda (Eq. 6) along that
  rollout (`analytic_behaviour_losses`);
- DreamerV2 (Hafner et al. 2021, Sec. 3): lambda-targets from a slow critic with per-step discounts and the weight
  of each imagined state (`discounted_lambda_targets`, Eq. 4), the weighted actor loss (`weighted_actor_loss`, Eq. 6,
  for either actor gradient) and the weighted critic regression (`weighted_critic_loss`, Eq. 5), used by
  `dreamerv2` and `dreamerpro`.
A method owns its networks, optimisers and which reward it feeds in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.nn.distributions import (
    categorical_entropy,
    mode_onehot,
    sample_onehot,
    trunc_normal_entropy,
    trunc_normal_log_prob,
    trunc_normal_mode,
    trunc_normal_sample,
)
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


def discounted_lambda_targets(
    reward: Tensor, disc: Tensor, target_value: Tensor, lam: float
) -> tuple[Tensor, Tensor]:
    """DreamerV2's lambda-targets and state weights of one imagined rollout, time-major: reward [T, N] (r(z_t)),
    disc [T, N] (the discount gamma c_t into z_t+1, predicted or constant), target_value [T+1, N] (the slow critic
    v'(z_0..z_T)).

    V_t = r_t + d_t ((1 - lambda) v'(z_t+1) + lambda V_t+1), V_T = v'(z_T) (Eq. 4), t = 0..T-1; weight of state t:
    prod_{k<t} d_k (the probability of still being in the episode; official `weight`), no gradient; [T+1, N]."""
    ret = lambda_return(reward, disc, target_value, 1.0, lam)
    weight = torch.cumprod(torch.cat([torch.ones_like(disc[:1]), disc]), 0).detach()
    return ret, weight


def weighted_actor_loss(objective: Tensor, entropy: Tensor, weight: Tensor, entropy_scale: float) -> Tensor:
    """-mean_t weight_t (objective_t + eta H[pi(. | z_t)]) over the first len(objective) states (Eq. 6): the
    objective is the lambda-target (dynamics backpropagation), ln pi(a_t | z_t) sg(advantage) (REINFORCE) or a mix."""
    return -(weight[: objective.shape[0]] * (objective + entropy_scale * entropy)).mean()


def weighted_critic_loss(critic: nn.Module, feat: Tensor, ret: Tensor, weight: Tensor) -> Tensor:
    """The critic v(sg(z_t)) regressed to sg(V_t) by half the squared error, weighted per state (Eq. 5), over the
    first len(ret) states of `feat` [T+1, N, F]."""
    steps = ret.shape[0]
    value = critic(feat[:steps].detach()).squeeze(-1)
    return (weight[:steps] * 0.5 * (value - ret.detach()).square()).mean()


def trunc_normal_params(raw: Tensor, init_std: float = 0.0, min_std: float = 0.1) -> tuple[Tensor, Tensor]:
    """(mean, std) of DreamerV2's Normal truncated to [-1, 1] from an actor's raw output [..., 2A]: mean tanh(x),
    std 2 sigmoid((x + init_std) / 2) + min_std (official `DistLayer` 'trunc_normal'); used by dreamerv2 and mwm."""
    raw_mean, raw_std = raw.chunk(2, -1)
    return torch.tanh(raw_mean), 2 * torch.sigmoid((raw_std + init_std) / 2) + min_std


def onehot_or_trunc_normal_sample(
    dist: tuple[Tensor, ...], generator: torch.Generator, mode: bool = False
) -> Tensor:
    """An action of DreamerV2's actor: from (log-probs,) a one-hot (straight-through), from (mean, std) a Normal
    truncated to [-1, 1] (reparameterised); `mode`: the most likely one. Used by dreamerv2 and mwm."""
    if len(dist) == 1:
        return mode_onehot(dist[0]) if mode else sample_onehot(dist[0], generator)
    mean, std = dist
    return trunc_normal_mode(mean) if mode else trunc_normal_sample(mean, std, -1.0, 1.0, generator)


def onehot_or_trunc_normal_terms(dist: tuple[Tensor, ...], action: Tensor) -> tuple[Tensor, Tensor]:
    """(log pi(action), entropy) per state of the same actor."""
    if len(dist) == 1:
        return (dist[0] * action).sum(-1), categorical_entropy(dist[0])
    mean, std = dist
    return trunc_normal_log_prob(action, mean, std), trunc_normal_entropy(mean, std)


__all__ = [
    "analytic_behaviour_losses", "discounted_lambda_targets", "imagine", "onehot_or_trunc_normal_sample",
    "onehot_or_trunc_normal_terms", "tanh_normal_params", "trunc_normal_params", "weighted_actor_loss",
    "weighted_critic_loss",
]
