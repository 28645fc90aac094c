"""Output distributions of world-model methods as plain tensor functions (no torch.distributions objects).

Owns: symlog/symexp squashing, two-hot regression over symlog-spaced bins, categorical latents/actions with
uniform mixing and straight-through samples, the Bernoulli continue head, the bounded Normal (DreamerV3), the
tanh-squashed Normal (Dreamer v1) and the truncated Normal on [-1, 1] (DreamerV2) for continuous actions. Everything is a function of tensors so that a training
step builds no per-call Python objects (DreamerV3, Hafner et al. 2023, Sec. 2-3 and Appendix C; the official
code's `outs.py`/`heads.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def symlog(x: Tensor) -> Tensor:
    """sign(x) ln(|x| + 1): compresses large magnitudes, identity-like near 0 (DreamerV3 Eq. 1)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of symlog: sign(x) (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


# --- two-hot regression (DreamerV3 Sec. 2, "Robust predictions") -------------------------------------------------


def symlog_bins(num: int = 255, low: float = -20.0, high: float = 20.0, device=None) -> Tensor:
    """Bin centres in symlog space: `num` equally spaced values in [low, high] (255 in [-20, 20] in the paper).

    Symmetric ranges are built by mirroring one half, so the centre bin is exactly 0 and a uniform (zero-logit)
    head predicts 0 up to rounding (as the official code ensures)."""
    if low == -high and num % 2 == 1:
        half = torch.linspace(low, 0.0, (num + 1) // 2, device=device)
        half[-1] = 0.0
        return torch.cat([half, -half[:-1].flip(0)])
    return torch.linspace(low, high, num, device=device)


def twohot(x: Tensor, bins: Tensor) -> Tensor:
    """Two-hot encoding of `x` (already in bin space) over sorted `bins`: weights on the two nearest bins,
    inversely proportional to the distance, summing to one; values outside the range go to the end bin."""
    x = x.clamp(bins[0], bins[-1])
    # index of the bin just above x (right side), kept within [1, K-1] so below = above - 1 is valid.
    above = torch.searchsorted(bins, x.detach().contiguous(), right=True).clamp(1, len(bins) - 1)
    below = above - 1
    lo, hi = bins[below], bins[above]
    weight_above = ((x - lo) / (hi - lo)).clamp(0, 1)
    out = torch.zeros(*x.shape, len(bins), dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), (1 - weight_above).unsqueeze(-1))
    out.scatter_add_(-1, above.unsqueeze(-1), weight_above.unsqueeze(-1))
    return out


def twohot_mean(logits: Tensor, bins: Tensor) -> Tensor:
    """Prediction of a two-hot symlog head in raw space: symexp(E_softmax(logits)[bins])."""
    # elementwise product + sum rather than a matmul, which bf16 autocast would run in bf16 (bins reach +-20)
    return symexp((torch.softmax(logits.float(), -1) * bins).sum(-1))


def twohot_loss(logits: Tensor, target: Tensor, bins: Tensor, weights: tuple[float, ...] = ()) -> Tensor:
    """Cross-entropy of the softmax over bins against twohot(symlog(target)); one value per leading element.

    With `weights`, `target` is a sequence of targets and the result is sum_i weights[i] * loss(target[i]) computed
    with one log-softmax (cross-entropy is linear in the target distribution)."""
    if weights:
        dist = sum(w * twohot(symlog(t.detach().float()), bins) for w, t in zip(weights, target, strict=True))
    else:
        dist = twohot(symlog(target.detach().float()), bins)
    return -(dist * torch.log_softmax(logits.float(), -1)).sum(-1)


def twohot_losses(logits: Tensor, targets: tuple[Tensor, ...], bins: Tensor) -> tuple[Tensor, ...]:
    """`twohot_loss` of the same head against several targets, one value per target and leading element, sharing
    one log-softmax (e.g. DreamerV3's critic: the return term and the slow-critic regulariser)."""
    logp = torch.log_softmax(logits.float(), -1)
    return tuple(-(twohot(symlog(t.detach().float()), bins) * logp).sum(-1) for t in targets)


def symlog_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error in symlog space summed over the last dim (DreamerV3 vector decoder)."""
    return (pred.float() - symlog(target.float())).square().sum(-1)


# --- categoricals with unimix (DreamerV3 Sec. 2: "1% uniform mixture") ---------------------------------------------


def softmax(x: Tensor) -> Tensor:
    """Softmax over the last dim. For few classes (< 16, e.g. the 4-class latents of `size1m`) torch's kernel is ~4x
    slower on CPU than the plain formula, which is used there instead (same values up to rounding)."""
    if x.shape[-1] >= 16:
        return torch.softmax(x, -1)
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def unimix_probs(logits: Tensor, unimix: float = 0.01) -> Tensor:
    """(1 - unimix) softmax(logits) + unimix / K over the last dim, in float32."""
    probs = softmax(logits.float())
    return (1 - unimix) * probs + unimix / logits.shape[-1] if unimix > 0 else probs


def unimix_logits(logits: Tensor, unimix: float = 0.01) -> Tensor:
    """Log-probabilities of (1 - unimix) softmax(logits) + unimix / K, which bounds every log-prob from below and
    so keeps KL terms and REINFORCE gradients finite."""
    if unimix <= 0:
        return torch.log_softmax(logits.float(), -1)
    return torch.log(unimix_probs(logits, unimix))


def sample_index_probs(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Class indices ~ Categorical(probs) over the last dim by inverse-CDF sampling: one uniform number from
    `generator` per distribution (reproducible; 32x less noise to draw than Gumbel-max for 32 classes)."""
    cdf = probs.detach().float().cumsum(-1)
    u = torch.rand((*cdf.shape[:-1], 1), device=cdf.device, generator=generator) * cdf[..., -1:]
    # counting in int32 skips the bool -> int64 conversion of the whole comparison (~1 of 3 ms for [1024, 32, 32])
    return torch.le(cdf, u).sum(-1, dtype=torch.int32).clamp_(max=probs.shape[-1] - 1).long()


def sample_index(logprobs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Class indices ~ Categorical(exp(logprobs)); the same draw as `sample_index_probs` on the probabilities, so
    for one generator state the dense (one-hot) and index paths pick exactly the same classes."""
    return sample_index_probs(logprobs.detach().exp(), generator)


def sample_onehot(logprobs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One-hot sample with straight-through gradients (Bengio et al. 2013), as DreamerV3 uses for latents/actions.

    Sampling: `sample_index` (inverse CDF on uniform noise from `generator`, reproducible)."""
    probs = logprobs.exp()
    index = sample_index_probs(probs, generator)  # = sample_index(logprobs, generator), without a second exp
    onehot = F.one_hot(index, logprobs.shape[-1]).to(logprobs.dtype)
    return onehot + (probs - probs.detach())  # exactly one-hot in value


def mode_onehot(logprobs: Tensor) -> Tensor:
    return F.one_hot(logprobs.argmax(-1), logprobs.shape[-1]).to(logprobs.dtype)


def categorical_entropy(logprobs: Tensor) -> Tensor:
    return -(logprobs.exp() * logprobs).sum(-1)


def categorical_kl(lhs_logprobs: Tensor, rhs_logprobs: Tensor) -> Tensor:
    """KL(lhs || rhs) over the last (class) dim."""
    return (lhs_logprobs.exp() * (lhs_logprobs - rhs_logprobs)).sum(-1)


# --- Bernoulli continue head ------------------------------------------------------------------------------------


def bernoulli_loss(logits: Tensor, target: Tensor) -> Tensor:
    """-log p(target) of a Bernoulli with these logits (binary cross-entropy), elementwise."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")


def bernoulli_mode(logits: Tensor) -> Tensor:
    return (logits > 0).float()


# --- Gaussians ---------------------------------------------------------------------------------------------------

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def bounded_normal(raw_mean: Tensor, raw_std: Tensor, minstd: float = 0.1, maxstd: float = 1.0) -> tuple[Tensor, Tensor]:
    """Mean tanh(raw_mean) in [-1, 1] and std in [minstd, maxstd] via a shifted sigmoid, as the official
    `bounded_normal` action head (sigmoid(x + 2) starts the std near its maximum for exploration)."""
    std = (maxstd - minstd) * torch.sigmoid(raw_std.float() + 2.0) + minstd
    return torch.tanh(raw_mean.float()), std


def normal_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std) summed over the last dim."""
    return (-0.5 * ((x - mean) / std).square() - torch.log(std) - _HALF_LOG_2PI).sum(-1)


def normal_entropy(std: Tensor) -> Tensor:
    """Entropy of a diagonal Normal, summed over the last dim."""
    return (torch.log(std) + 0.5 + _HALF_LOG_2PI).sum(-1)


def normal_kl(mean1: Tensor, std1: Tensor, mean2: Tensor, std2: Tensor) -> Tensor:
    """KL(N1 || N2) of diagonal Normals, summed over the last dim (Gaussian RSSM latents, PlaNet/Dreamer v1)."""
    var_ratio = (std1 / std2).square()
    return 0.5 * (var_ratio + ((mean1 - mean2) / std2).square() - 1 - torch.log(var_ratio)).sum(-1)


def normal_sample(mean: Tensor, std: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised sample mean + std * eps (gradients flow to mean and std)."""
    eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
    return mean + std * eps


# --- tanh-squashed Gaussians (Dreamer v1/v2 continuous actors, SAC-style policies) -------------------------------

_LOG_2 = math.log(2.0)


def tanh_normal_sample(mean: Tensor, std: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(tanh(u), u) for a reparameterised u ~ N(mean, std): the action in (-1, 1) and its pre-squash value, which
    `tanh_normal_log_prob` needs (inverting tanh near +-1 is unstable)."""
    u = normal_sample(mean, std, generator)
    return torch.tanh(u), u


def tanh_normal_log_prob(u: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log density of a = tanh(u), u ~ N(mean, std), summed over the last dim: log N(u) - sum log(1 - tanh(u)^2),
    with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) (exact and stable for large |u|)."""
    return normal_log_prob(u, mean, std) - (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)


def tanh_normal_entropy(mean: Tensor, std: Tensor, generator: torch.Generator | None = None, samples: int = 1) -> Tensor:
    """Monte-Carlo entropy estimate -E[log p(a)] of the squashed Gaussian (it has no closed form), differentiable
    w.r.t. mean and std through reparameterised samples (Dreamer v1's actor entropy)."""
    total = torch.zeros(mean.shape[:-1], device=mean.device, dtype=mean.dtype)
    for _ in range(samples):
        _, u = tanh_normal_sample(mean, std, generator)
        total = total - tanh_normal_log_prob(u, mean, std)
    return total / samples


# --- truncated Normal on [low, high] (DreamerV2 continuous actor, official `TruncNormalDist`) -----------------------

_SQRT2 = math.sqrt(2.0)


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / _SQRT2))


def _std_normal_log_pdf(x: Tensor) -> Tensor:
    return -0.5 * x.square() - _HALF_LOG_2PI


def trunc_normal_sample(
    mean: Tensor, std: Tensor, low: float = -1.0, high: float = 1.0, generator: torch.Generator | None = None,
    clip: float = 1e-6,
) -> Tensor:
    """Reparameterised sample of N(mean, std) truncated to [low, high], elementwise: inverse-CDF sampling
    x = mean + std Phi^-1(Phi(alpha) + u (Phi(beta) - Phi(alpha))), u ~ U(0, 1), differentiable w.r.t. mean and
    std (the same gradient as implicit reparameterisation, which TFP's TruncatedNormal uses). The value is then
    clipped into [low + clip, high - clip] with a straight-through gradient, as DreamerV2's `TruncNormalDist`.
    The CDF arithmetic runs in float64 so that tails do not round to 0 or 1."""
    m, s = mean.double(), std.double()
    cdf_low = _std_normal_cdf((low - m) / s)
    cdf_high = _std_normal_cdf((high - m) / s)
    u = torch.rand(mean.shape, device=mean.device, dtype=torch.float64, generator=generator)
    p = (cdf_low + u * (cdf_high - cdf_low)).clamp(1e-12, 1 - 1e-12)
    x = (m + s * _SQRT2 * torch.erfinv(2 * p - 1)).to(mean.dtype)
    clipped = x.detach().clamp(low + clip, high - clip)
    return x + (clipped - x.detach())


def _trunc_normal_parts(mean: Tensor, std: Tensor, low: float, high: float) -> tuple[Tensor, Tensor, Tensor]:
    alpha, beta = (low - mean) / std, (high - mean) / std
    mass = (_std_normal_cdf(beta) - _std_normal_cdf(alpha)).clamp(min=1e-12)  # Z = Phi(beta) - Phi(alpha)
    return alpha, beta, mass


def trunc_normal_log_prob(x: Tensor, mean: Tensor, std: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """log density of the truncated Normal at x in [low, high], summed over the last dim:
    log phi((x - mean) / std) - log std - log Z."""
    _, _, mass = _trunc_normal_parts(mean, std, low, high)
    return (_std_normal_log_pdf((x - mean) / std) - torch.log(std) - torch.log(mass)).sum(-1)


def trunc_normal_entropy(mean: Tensor, std: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """Closed-form entropy of the truncated Normal, summed over the last dim:
    log(sqrt(2 pi e) std Z) + (alpha phi(alpha) - beta phi(beta)) / (2 Z)."""
    alpha, beta, mass = _trunc_normal_parts(mean, std, low, high)
    pdf_a, pdf_b = _std_normal_log_pdf(alpha).exp(), _std_normal_log_pdf(beta).exp()
    return (0.5 + _HALF_LOG_2PI + torch.log(std) + torch.log(mass) + (alpha * pdf_a - beta * pdf_b) / (2 * mass)).sum(-1)


def trunc_normal_mode(mean: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """The most likely value: the mean clipped into [low, high]."""
    return mean.clamp(low, high)
