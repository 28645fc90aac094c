"""Transformers of wmbench: the causal Transformer-XL with a key/value cache of every transformer world model (TWM,
Robine et al. 2023; TransDreamer's TSSM, Chen et al. 2022), and the bidirectional pre-norm blocks of Vision
Transformer encoders that see a whole set of tokens at once (`bidirectional_blocks`: Masked World Models' autoencoder
and token ViTs, Seo et al. 2022).

Owns: Transformer-XL layers (Dai et al. 2019) with relative positions (sinusoidal distance encodings projected per
layer plus the content and position biases u, v shared by all layers, Sec. 3.3), or a learned per-head bias per
distance; a sliding attention window of `memory` past tokens (the Transformer-XL recurrence: a token sees itself and
the `memory` tokens before it, across calls); segment masking (a token never attends across an episode start); and
`KVCache`, the keys and values of the last `memory` tokens of every layer, so that continuing a sequence token by
token (imagination, acting) costs O(memory) per token instead of re-running the O(context^2) pass.

Exactness: feeding a sequence in one call, or in any split into consecutive calls that pass the returned cache on,
gives the same outputs (tests/test_nn_transformer.py), because both paths attend over the same keys with the same
mask: keys depend on a token's own input only (positions enter through the relative term), so caching keys and
values equals Transformer-XL's caching of the layer inputs.

Layout follows TWM's TransformerXLDecoderLayer (jrobine/twm nets.py): attention projections without bias, post-norm
residual blocks (LayerNorm eps 1e-5), a two-layer feed-forward block, dropout after attention and feed-forward.
`prenorm=True` gives the pre-norm variant (GTrXL-style ordering without gates) for methods that want it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from wmbench.nn.networks import activation


@dataclass
class KVCache:
    """Keys and values of the last `memory` tokens of each layer ([B, heads, M, head_dim] each), with the tokens'
    positions `pos` [B, M], their segments `seg` [B, M] (episode counters) and validity `valid` [B, M]; `next_pos`
    [B] is the position of each stream's next token and `last_seg` [B] the segment of its last token. Streams may be
    at different positions (e.g. imagination started from every step of a replayed sequence: `prefix_caches`)."""

    keys: list[Tensor]
    values: list[Tensor]
    pos: Tensor
    seg: Tensor
    valid: Tensor
    next_pos: Tensor
    last_seg: Tensor

    @property
    def length(self) -> int:
        return int(self.pos.shape[1])

    @property
    def batch(self) -> int:
        return int(self.seg.shape[0])

    def detach(self) -> KVCache:
        return KVCache(
            [k.detach() for k in self.keys],
            [v.detach() for v in self.values],
            self.pos,
            self.seg,
            self.valid,
            self.next_pos,
            self.last_seg,
        )

    def repeat(self, times: int) -> KVCache:
        """Each batch row `times` times in a row (row i -> rows i*times ... i*times+times-1), e.g. to imagine several
        futures from one context."""
        rep = lambda t: t.repeat_interleave(times, 0)  # noqa: E731
        return KVCache(
            [rep(k) for k in self.keys],
            [rep(v) for v in self.values],
            rep(self.pos),
            rep(self.seg),
            rep(self.valid),
            rep(self.next_pos),
            rep(self.last_seg),
        )

    def prefix_caches(self) -> KVCache:
        """One stream per (row, token) of this cache, holding the row's tokens *before* that token: stream b * M + t
        continues exactly as row b would after its first t cached tokens, and its next token takes token t's position
        and segment. Used to imagine from every step of a replayed sequence at once (TransDreamer); the cache must
        hold every token of its rows (memory >= their length)."""
        M, dev = self.length, self.pos.device
        out = self.repeat(M)
        start = torch.arange(M, device=dev).repeat(self.batch)  # the start token index of each stream
        out.valid = out.valid & (torch.arange(M, device=dev)[None, :] < start[:, None])
        out.next_pos = out.pos.gather(1, start[:, None])[:, 0]
        # the start token is fed again with is_first False: it must land in its own segment
        out.last_seg = out.seg.gather(1, start[:, None])[:, 0]
        return out


def sinusoid_table(length: int, dim: int, device=None) -> Tensor:
    """[length, dim] sinusoidal encodings of 0 ... length-1 (Vaswani et al. 2017, Sec. 3.5)."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return table


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention over cached plus new keys, scores = ((q + u) k + (q + v) r_d) / sqrt(width) with r_d
    the projected encoding of the distance d = i - j (relative), or (q k) / sqrt(width) + b[h, d] (learned); the scale
    1/sqrt(width) is TWM's."""

    def __init__(self, width: int, heads: int, memory: int, positions: str, dropout: float):
        super().__init__()
        self.width, self.heads, self.head_dim, self.memory = width, heads, width // heads, memory
        self.positions = positions
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        if positions == "relative":
            self.pos_proj = nn.Linear(width, width, bias=False)
        else:
            self.pos_bias = nn.Parameter(torch.zeros(heads, memory + 1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scale = 1.0 / math.sqrt(width)

    def forward(
        self,
        x: Tensor,
        past_k: Tensor | None,
        past_v: Tensor | None,
        dist: Tensor,
        allowed: Tensor,
        table: Tensor | None,
        u: Tensor | None,
        v: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, T, W]; past_k/v [B, H, M, D] or None; dist [B, T, M+T] distances clamped to 0..memory; allowed
        [B, T, M+T]. Returns (output [B, T, W], keys, values [B, H, M+T, D])."""
        B, T, _ = x.shape
        q, k, val = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if past_k is not None:
            k, val = torch.cat([past_k, k], 2), torch.cat([past_v, val], 2)
        if self.positions == "relative":
            r = self.pos_proj(table).view(-1, self.heads, self.head_dim)  # [memory+1, H, D]
            content = torch.einsum("bhid,bhjd->bhij", q + u[:, None], k)
            by_dist = torch.einsum("bhid,rhd->bhir", q + v[:, None], r)  # score per distance
            position = by_dist.gather(-1, dist[:, None].expand(B, self.heads, *dist.shape[1:]))
            scores = (content + position) * self.scale
        else:
            scores = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale + self.pos_bias[:, dist].transpose(
                0, 1
            )
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        # a token always sees itself, so no row is all -inf
        weights = self.dropout(torch.softmax(scores, -1))
        out = torch.einsum("bhij,bhjd->bhid", weights, val).transpose(1, 2).reshape(B, T, self.width)
        return self.out(out), k, val


class TransformerXLLayer(nn.Module):
    """Attention and feed-forward residual blocks, post-norm (TWM) or pre-norm."""

    def __init__(
        self,
        width: int,
        heads: int,
        ff_dim: int,
        memory: int,
        positions: str,
        dropout: float,
        act: str,
        prenorm: bool,
    ):
        super().__init__()
        self.attn = RelativeSelfAttention(width, heads, memory, positions, dropout)
        self.ff = nn.Sequential(
            nn.Linear(width, ff_dim),
            activation(act),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(ff_dim, width),
        )
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-5), nn.LayerNorm(width, eps=1e-5)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.prenorm = prenorm

    def forward(self, x: Tensor, past_k, past_v, dist, allowed, table, u, v) -> tuple[Tensor, Tensor, Tensor]:
        if self.prenorm:
            out, k, val = self.attn(self.norm1(x), past_k, past_v, dist, allowed, table, u, v)
            x = x + self.dropout(out)
            return x + self.dropout(self.ff(self.norm2(x))), k, val
        out, k, val = self.attn(x, past_k, past_v, dist, allowed, table, u, v)
        x = self.norm1(x + self.dropout(out))
        return self.norm2(x + self.dropout(self.ff(x))), k, val


def bidirectional_blocks(width: int, heads: int, depth: int, mlp_ratio: float = 4.0, eps: float = 1e-6) -> nn.ModuleList:
    """`depth` pre-norm ViT blocks over [N, L, width] tokens, every token attending to every other: x + Attn(LN(x)),
    then x + MLP(LN(x)) with GELU and hidden width mlp_ratio x width, attention with biased projections and scale
    1/sqrt(head width) (timm's `Block`, which MWM's official code uses). Built from torch's TransformerEncoderLayer
    (norm_first), so no second attention implementation lives here; exactness: tests/test_nn_transformer.py."""
    if width <= 0 or heads <= 0 or width % heads:
        raise ValueError(f"transformer width {width} must be divisible by its {heads} heads; choose a head count that "
                         "divides it")  # fmt: skip
    return nn.ModuleList(
        nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu", layer_norm_eps=eps,
            batch_first=True, norm_first=True,
        )  # fmt: skip
        for _ in range(depth)
    )


class TransformerXL(nn.Module):
    """Causal Transformer-XL over token embeddings [B, T, width] with a sliding window of `memory` past tokens.

    `forward(x, cache=None, is_first=None) -> (y, cache)`: `cache` None starts new streams; `is_first` [B, T] marks
    tokens that start a new episode (they and later tokens never attend to earlier ones). The returned cache holds
    the last `memory` tokens and continues the streams exactly."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        ff_dim: int,
        memory: int,
        dropout: float = 0.0,
        positions: str = "relative",
        act: str = "silu",
        prenorm: bool = False,
    ):
        super().__init__()
        if width <= 0 or heads <= 0 or width % heads:
            raise ValueError(
                f"attention heads ({heads}) must divide the transformer width ({width}); choose a head count that "
                f"divides it (e.g. {', '.join(str(h) for h in (1, 2, 4, 8) if width > 0 and width % h == 0)})"
            )
        if depth < 1 or ff_dim < 1:
            raise ValueError(f"transformer depth ({depth}) and feed-forward width ({ff_dim}) must be >= 1")
        if memory < 0:
            raise ValueError(f"transformer memory must be >= 0 tokens, got {memory}")
        if positions not in ("relative", "learned"):
            raise ValueError(f"positions must be 'relative' (Transformer-XL) or 'learned', got {positions!r}")
        self.width, self.depth, self.heads, self.memory, self.positions = (
            width,
            depth,
            heads,
            memory,
            positions,
        )
        self.layers = nn.ModuleList(
            TransformerXLLayer(width, heads, ff_dim, memory, positions, dropout, act, prenorm)
            for _ in range(depth)
        )
        if positions == "relative":  # u, v of Transformer-XL Sec. 3.3, shared by all layers
            self.u = nn.Parameter(torch.zeros(heads, width // heads))
            self.v = nn.Parameter(torch.zeros(heads, width // heads))
            self.register_buffer("table", sinusoid_table(memory + 1, width), persistent=False)
        else:
            self.u = self.v = self.table = None

    def empty_cache(self, batch: int, device=None) -> KVCache:
        device = device if device is not None else next(self.parameters()).device
        h, d = self.heads, self.width // self.heads
        empty = torch.zeros(batch, h, 0, d, device=device)
        return KVCache(
            [empty] * self.depth,
            [empty] * self.depth,
            torch.zeros(batch, 0, dtype=torch.long, device=device),
            torch.zeros(batch, 0, dtype=torch.long, device=device),
            torch.zeros(batch, 0, dtype=torch.bool, device=device),
            torch.zeros(batch, dtype=torch.long, device=device),
            torch.zeros(batch, dtype=torch.long, device=device),
        )

    def forward(
        self,
        x: Tensor,
        cache: KVCache | None = None,
        is_first: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, KVCache]:
        """x [B, T, width]; is_first, valid [B, T] bool (valid False: a padding token nobody attends to)."""
        B, T, W = x.shape
        if W != self.width:
            raise ValueError(f"transformer input width {W} differs from the model's width {self.width}")
        cache = cache if cache is not None else self.empty_cache(B, x.device)
        if cache.batch != B:
            raise ValueError(f"cache holds {cache.batch} streams but the input has batch {B}")
        first = (
            is_first.bool() if is_first is not None else torch.zeros(B, T, dtype=torch.bool, device=x.device)
        )
        ok = valid.bool() if valid is not None else torch.ones(B, T, dtype=torch.bool, device=x.device)
        new_pos = cache.next_pos[:, None] + torch.arange(T, device=x.device)  # [B, T]
        new_seg = cache.last_seg[:, None] + first.long().cumsum(1)
        pos = torch.cat([cache.pos, new_pos], 1)
        seg = torch.cat([cache.seg, new_seg], 1)
        key_ok = torch.cat([cache.valid, ok], 1)
        delta = new_pos[:, :, None] - pos[:, None, :]  # [B, T, M+T]
        in_window = (delta >= 0) & (delta <= self.memory)
        allowed = in_window & (seg[:, None, :] == new_seg[:, :, None]) & key_ok[:, None, :]
        # a token always attends to itself (padding tokens too, so their rows stay finite); only to its own key, not
        # to a cached token at the same position (prefix_caches re-feeds a cached token)
        itself = torch.eye(T, dtype=torch.bool, device=x.device)
        allowed = allowed | torch.cat(
            [torch.zeros(T, cache.length, dtype=torch.bool, device=x.device), itself], 1
        )
        dist = delta.clamp(0, self.memory)
        keys, values = [], []
        h = x
        for i, layer in enumerate(self.layers):
            past_k = cache.keys[i] if cache.length else None
            past_v = cache.values[i] if cache.length else None
            h, k, v = layer(h, past_k, past_v, dist, allowed, self.table, self.u, self.v)
            keys.append(k[:, :, -self.memory :] if self.memory else k[:, :, :0])
            values.append(v[:, :, -self.memory :] if self.memory else v[:, :, :0])
        keep = slice(-self.memory, None) if self.memory else slice(0, 0)
        out_cache = KVCache(
            keys, values, pos[:, keep], seg[:, keep], key_ok[:, keep], cache.next_pos + T, new_seg[:, -1]
        )
        return h, out_cache


__all__ = ["KVCache", "RelativeSelfAttention", "TransformerXL", "TransformerXLLayer", "sinusoid_table"]
