"""The transformer state-space model (TSSM) of TransDreamer (Chen et al. 2022, "TransDreamer: Reinforcement Learning
with Transformer World Models", Sec. 3): the RSSM with its GRU replaced by the shared causal transformer
(wmbench/nn/transformer.py).

Owns: the posterior q(z_t | x_t) from the observation embedding alone (no recurrence, so a whole sequence is
inferred in parallel), the token u_t = W [z_t, a_t], the deterministic state h_t = transformer(u_<t) (the output at
token t-1 within the episode; zeros at an episode's first step), the prior p(z_t | h_t), DreamerV3's KL terms with
free bits, and the cached steps of acting and imagination. Latents are categorical (straight-through samples, unimix).

State conventions: `deter` h_t [.., width], `stoch` z_t flat one-hot [.., stoch * classes], log-probabilities
`post`/`prior` [.., stoch, classes]. `observe` returns the transformer's cache of the sequence; `imagination_start`
turns it into one stream per step (KVCache.prefix_caches), so imagination from step t sees exactly the steps before
t of its episode, as TransDreamer imagines from every posterior state with its history.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wmbench.nn.distributions import categorical_kl, sample_onehot, unimix_logits
from wmbench.nn.networks import MLP
from wmbench.nn.transformer import KVCache, TransformerXL


class TSSM(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        act_dim: int,
        stoch: int = 32,
        classes: int = 32,
        width: int = 600,
        depth: int = 4,
        heads: int = 8,
        ff_dim: int = 1024,
        memory: int = 64,
        hidden: int = 600,
        dropout: float = 0.1,
        unimix: float = 0.01,
        norm: str = "rms",
    ):
        super().__init__()
        self.stoch, self.classes, self.deter, self.unimix = stoch, classes, width, unimix
        self.stoch_dim = stoch * classes
        self.feat_dim = width + self.stoch_dim
        self.act_dim = act_dim
        self.posterior = MLP(embed_dim, hidden, 1, out_dim=self.stoch_dim, norm=norm)
        self.token = nn.Linear(self.stoch_dim + act_dim, width)
        self.transformer = TransformerXL(
            width,
            depth,
            heads,
            ff_dim,
            memory,
            dropout=dropout,
            positions="relative",
            act="relu",
            prenorm=True,
        )
        self.prior = MLP(width, hidden, 1, out_dim=self.stoch_dim, norm=norm)

    def _logp(self, logits: Tensor) -> Tensor:
        return unimix_logits(logits.unflatten(-1, (self.stoch, self.classes)).float(), self.unimix)

    def sample(self, logp: Tensor, generator: torch.Generator | None) -> Tensor:
        return sample_onehot(logp, generator).flatten(-2)

    def post_stats(self, embed: Tensor) -> Tensor:
        return self._logp(self.posterior(embed))

    def prior_stats(self, deter: Tensor) -> Tensor:
        return self._logp(self.prior(deter))

    def kl_losses(self, post: Tensor, prior: Tensor, free: float = 1.0) -> tuple[Tensor, Tensor]:
        """(dyn, rep) per step, DreamerV3 Eq. 5: the prior towards sg(posterior), the posterior towards sg(prior), each
        clipped below at `free` nats."""
        dyn = categorical_kl(post.detach(), prior).sum(-1)
        rep = categorical_kl(post, prior.detach()).sum(-1)
        return dyn.clamp(min=free), rep.clamp(min=free)

    def observe(
        self, embed: Tensor, action: Tensor, is_first: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor | KVCache]:
        """A replayed sequence in one pass: embed [B, T, E], action [B, T, A] (chosen at t), is_first [B, T]."""
        post = self.post_stats(embed)
        stoch = self.sample(post, generator)
        out, cache = self.transformer(self.token(torch.cat([stoch, action], -1)), is_first=is_first)
        # h_t is the output at token t-1 of the same episode; no history at t = 0 or at an episode's first step
        deter = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], 1)
        deter = torch.where(is_first[..., None].bool(), torch.zeros_like(deter), deter)
        return {
            "deter": deter,
            "stoch": stoch,
            "post": post,
            "prior": self.prior_stats(deter),
            "cache": cache,
        }

    def img_step(
        self,
        cache: KVCache,
        stoch: Tensor,
        action: Tensor,
        generator: torch.Generator | None,
        is_first: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, KVCache]:
        """Token (z_t, a_t) appended to each stream: h_t+1, z_t+1 ~ p(. | h_t+1) and the cache; O(memory)."""
        out, cache = self.transformer(
            self.token(torch.cat([stoch, action], -1))[:, None],
            cache,
            None if is_first is None else is_first[:, None],
        )
        deter = out[:, 0]
        return deter, self.sample(self.prior_stats(deter), generator), cache

    @staticmethod
    def imagination_start(seq: dict[str, Tensor | KVCache]) -> tuple[Tensor, Tensor, KVCache]:
        """(h, z, streams) of every step of an observed [B, T] sequence, flattened to B*T starts."""
        cache = seq["cache"]
        B, T = seq["stoch"].shape[:2]
        if cache.length != T:
            raise ValueError(
                f"the sequence cache holds {cache.length} of its {T} steps: the transformer memory must "
                "be at least the batch length to imagine from every step with its history"
            )
        return seq["deter"].reshape(B * T, -1), seq["stoch"].reshape(B * T, -1), cache.prefix_caches()


__all__ = ["TSSM"]
