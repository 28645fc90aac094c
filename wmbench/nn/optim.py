"""Optimisers of world-model methods that torch does not ship, and the DreamerV2 code's Adam.

Also owns `decoupled_adamw`: Adam with the decoupled weight decay of the DreamerV2 code (`Optimizer` with `wd`,
used by DreamerV2 and DreamerPro), which multiplies every variable by (1 - wd) per step; and `step_each`: several
losses that each train only their own network, clipped separately, stepped after all gradients are taken (the
actor-critic update of DreamerV2, DreamerPro and Director).

Owns `LaProp` with adaptive gradient clipping and a linear learning-rate warm-up: the optimiser of the 2024
DreamerV3 release (danijar/dreamerv3 commit e3f0224, `embodied/jax/opt.py` and `Agent._make_opt`: the chain
clip_by_agc -> scale_by_rms -> scale_by_momentum -> linear warm-up of the learning rate). LaProp (Ziyin et al.
2020) normalises each gradient by its running RMS *before* the momentum average, unlike Adam which averages first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


class LaProp(torch.optim.Optimizer):
    """Per parameter tensor p with gradient g, at update t = 1, 2, ...:

        g <- g / max(1, ||g|| / (agc * max(pmin, ||p||)))       adaptive gradient clipping (agc=0: off)
        v <- beta2 v + (1 - beta2) g^2,    u = g / (sqrt(v / (1 - beta2^t)) + eps)
        m <- beta1 m + (1 - beta1) u,      p <- p - lr_t m / (1 - beta1^t)
        lr_t = lr * min(1, (t - 1) / warmup)                      (warmup=0: lr_t = lr)

    The warm-up follows optax's `linear_schedule(0, lr, warmup)` evaluated at the update count before the update,
    so the first update moves nothing when `warmup > 0`, as in the official code. Official defaults: lr 4e-5,
    eps 1e-20, betas (0.9, 0.999), agc 0.3, pmin 1e-3, warmup 1000.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 4e-5,
        eps: float = 1e-20,
        betas: tuple[float, float] = (0.9, 0.999),
        agc: float = 0.3,
        pmin: float = 1e-3,
        warmup: int = 0,
    ):
        if lr < 0 or eps < 0 or agc < 0 or warmup < 0:
            raise ValueError(f"LaProp: lr, eps, agc and warmup must be >= 0, got {lr}, {eps}, {agc}, {warmup}")
        super().__init__(params, dict(lr=lr, eps=eps, betas=tuple(betas), agc=agc, pmin=pmin, warmup=warmup))

    def lr_at(self, group: dict, step: int) -> float:
        """Learning rate of update `step` (1-based) after the warm-up ramp."""
        warmup = group["warmup"]
        return group["lr"] * (min(1.0, (step - 1) / warmup) if warmup else 1.0)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 (documented on the class)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["agc"]:
                gnorm = torch.stack(torch._foreach_norm(grads))
                pnorm = torch.stack(torch._foreach_norm(params)).clamp(min=group["pmin"])
                scale = 1.0 / torch.clamp(gnorm / (group["agc"] * pnorm), min=1.0)
                grads = [g * s for g, s in zip(grads, scale.unbind(), strict=True)]
            for p, g in zip(params, grads, strict=True):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                v, m = state["exp_avg_sq"], state["exp_avg"]
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                u = g / ((v / (1 - beta2**t)).sqrt_().add_(group["eps"]))
                m.mul_(beta1).add_(u, alpha=1 - beta1)
                lr = self.lr_at(group, t)
                if lr:
                    p.add_(m, alpha=-lr / (1 - beta1**t))
        return loss


def global_norm(params: Iterable[Tensor]) -> Tensor:
    """sqrt(sum ||grad||^2) over the parameters that have a gradient (for metrics; no clipping)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))




def decoupled_adamw(params: Iterable[Tensor], lr: float, eps: float, weight_decay: float) -> torch.optim.AdamW:
    """Adam whose decay multiplies every variable by (1 - weight_decay) per step, as the DreamerV2 code's
    `Optimizer` (wd 1e-6): torch's AdamW multiplies by (1 - lr * wd'), so wd' = weight_decay / lr (0 when lr = 0)."""
    return torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay / lr if lr > 0 else 0.0)



def step_each(
    updates: Sequence[tuple[Tensor, Sequence[Tensor], torch.optim.Optimizer]], clip: float, retain_graph: bool = False
) -> list[Tensor]:
    """For each (loss, params, optimiser): zero the params' gradients, backpropagate the loss into those params only
    (gradients may pass through other networks without reaching them) and clip their global norm at `clip`; then
    step every optimiser, so every loss saw the parameters before any update. Returns the pre-clip norms."""
    norms = []
    for loss, params, opt in updates:
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(params), retain_graph=retain_graph)
        norms.append(torch.nn.utils.clip_grad_norm_(params, clip))
    for _, _, opt in updates:
        opt.step()
    return norms


__all__ = ["LaProp", "decoupled_adamw", "global_norm", "step_each"]
