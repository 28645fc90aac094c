"""Masked autoencoding of images with Vision Transformers (He et al. 2022, "Masked Autoencoders Are Scalable Vision
Learners"), in the form Masked World Models use it (Seo et al. 2022, "Masked World Models for Visual Control",
CoRL; official code younggyoseo/MWM `mwm/common/mae.py`, `mae_utils.py`).

Owns:
- `patchify` / `unpatchify`: images [N, H, W, C] <-> non-overlapping p x p patches [N, L, p*p*C], patches in
  row-major order, pixels inside a patch ordered (row, column, channel) (TF `extract_patches`, the official target).
- `random_masking`: keep a uniformly random subset of (1 - ratio) x L tokens per sample; returns the kept tokens,
  the binary mask (1 = removed) and the permutation that restores the original order.
- `sincos_pos_embed_2d`: fixed 2-D sine-cosine position embeddings on a G x G grid (MAE's), optionally with one
  extra position (the official code's `add_token`: the (G, G) corner of a (G+1) x (G+1) grid).
- the ViTs' blocks are `wmbench.nn.transformer.bidirectional_blocks` (pre-norm, LayerNorm eps 1e-6, attention with
  biased projections, MLP ratio 4 with GELU: the block of the `tfimm` ViT that the official code uses).
- `MaskedViTEncoder`: the MWM image encoder. With `conv_stages` > 0 (MWM's "early convolution", Sec. 3.1) a stem
  of stride-2 4x4 convolutions (ReLU; channels embed/2^(stages-i)) turns the image into a feature map, then a k x k
  stride-k convolution (k = patch / 2^stages; 1x1 in the paper) makes one token per patch: the mask is applied to
  convolutional features, not to pixels. `conv_stages = 0` is the plain ViT patch embedding (the ablation).
- `MaskedViTDecoder`: mask tokens fill the removed positions, an extra token predicts the reward (MWM's auxiliary
  reward prediction, Sec. 3.1), and a linear layer predicts each patch's pixels.
- `TokenViTEncoder` / `TokenViTDecoder`: the small ViTs of MWM's latent dynamics model (`wm_flat_vit`): encode the
  autoencoder's token features into one vector (mean over tokens), and decode a model state back into all token
  features (the world model's reconstruction target).

Errors: a mask ratio outside [0, 1) (training uses (0, 1); 0 = no masking, for acting), a patch size that does not
divide the image or the convolutional feature map: ValueError naming the value and the fix.

"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from wmbench.nn.networks import StridedConvEncoder
from wmbench.nn.transformer import bidirectional_blocks

LN_EPS = 1e-6  # official `layer_norm_eps_1e-6`


# ---------------------------------------------------------------------------------------------- patches and masks
def check_patch_size(height: int, width: int, patch: int) -> int:
    """Patches per side of an image; ValueError unless `patch` divides both sides."""
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch size must be a positive integer, got {patch!r}")
    if height % patch or width % patch:
        raise ValueError(
            f"patch size {patch} does not divide the {height}x{width} image (the reconstruction target is the image "
            f"cut into {patch}x{patch} patches); use a divisor of both sides, e.g. patch_size=8 for 64x64 images"
        )
    return height // patch


def patchify(images: Tensor, patch: int) -> Tensor:
    """[N, H, W, C] -> [N, (H/p)(W/p), p*p*C]: row-major patches, each flattened as (row, column, channel)."""
    n, h, w, c = images.shape
    check_patch_size(h, w, patch)
    x = images.reshape(n, h // patch, patch, w // patch, patch, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: Tensor, patch: int, height: int, width: int) -> Tensor:
    """Inverse of `patchify`: [N, L, p*p*C] -> [N, H, W, C]."""
    n, length, dim = patches.shape
    gh, gw = height // patch, width // patch
    c = dim // (patch * patch)
    if gh * gw != length or c * patch * patch != dim:
        raise ValueError(
            f"{length} patches of {dim} values do not make a {height}x{width} image of {patch}-patches"
        )
    x = patches.reshape(n, gh, gw, patch, patch, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, height, width, c)


def check_mask_ratio(ratio: float, allow_zero: bool = True) -> float:
    """The mask ratio as a float; ValueError unless 0 < ratio < 1 (0 allowed for the unmasked forward pass)."""
    low_ok = ratio >= 0 if allow_zero else ratio > 0
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (low_ok and ratio < 1):
        raise ValueError(
            f"mask ratio must lie in (0, 1) (the fraction of tokens removed), got {ratio!r}; MWM uses 0.75 "
            "(Seo et al. 2022, official configs.yaml mask_ratio): set mask_ratio=0.75"
        )
    return float(ratio)


def random_masking(
    tokens: Tensor, ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep int(L (1 - ratio)) tokens of each sample, chosen uniformly at random (argsort of uniform noise, MAE):
    (kept [N, K, D] in shuffled order, mask [N, L] with 1 where removed, restore [N, L] such that gathering the
    shuffled sequence with it gives the original order). ratio 0 keeps every token in order."""
    ratio = check_mask_ratio(ratio)
    n, length, dim = tokens.shape
    if ratio == 0:
        restore = torch.arange(length, device=tokens.device).expand(n, length)
        return tokens, torch.zeros(n, length, device=tokens.device), restore
    keep = int(length * (1 - ratio))
    if keep < 1:
        raise ValueError(f"mask ratio {ratio} removes all {length} tokens; use a smaller ratio")
    noise = torch.rand(n, length, generator=generator, device=tokens.device)
    shuffle = noise.argsort(1)
    restore = shuffle.argsort(1)
    kept = tokens.gather(1, shuffle[:, :keep, None].expand(-1, -1, dim))
    mask = torch.ones(n, length, device=tokens.device)
    mask[:, :keep] = 0
    return kept, mask.gather(1, restore), restore


# ---------------------------------------------------------------------------------------------- position embeddings
def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", positions.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], 1)


def sincos_pos_embed_2d(dim: int, grid: int, cls: bool = False, extra: bool = False) -> Tensor:
    """[(cls) + grid^2 + (extra), dim] fixed embeddings: half the dims encode the row, half the column (MAE). `cls`
    prepends a zero row (the class token's); `extra` appends the position (grid, grid) of a (grid+1)^2 grid (the
    official `add_token`: the reward token, or the autoencoder's class token inside the world model's ViT)."""
    if dim % 4:
        raise ValueError(f"sine-cosine position embeddings need a width divisible by 4, got {dim}")
    size = grid + 1
    cols, rows = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    emb = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], 1).reshape(size, size, dim)
    out = [emb[:grid, :grid].reshape(grid * grid, dim)]
    if cls:
        out.insert(0, np.zeros((1, dim)))
    if extra:
        out.append(emb[grid, grid][None])
    return torch.as_tensor(np.concatenate(out), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------- transformer
def init_vit_(module: nn.Module) -> None:
    """timm/MAE initialisation: Linear weights truncated normal std 0.02, zero biases; LayerNorm 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention):  # its q, k, v projection is one parameter, not an nn.Linear
            nn.init.trunc_normal_(m.in_proj_weight, std=0.02)
            nn.init.zeros_(m.in_proj_bias)
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _blocks(dim: int, depth: int, heads: int) -> nn.ModuleList:
    return bidirectional_blocks(dim, heads, depth, eps=LN_EPS)


# ---------------------------------------------------------------------------------------------- the autoencoder
def token_grid(image_size: int, patch: int, conv_stages: int) -> int:
    """Tokens per side for square images; ValueError when the patch does not divide the image or the feature map."""
    grid = check_patch_size(image_size, image_size, patch)
    if conv_stages:
        stride = 2**conv_stages
        feature = image_size // stride
        if image_size % stride or patch % stride or feature % (patch // stride):
            raise ValueError(
                f"patch size {patch} does not divide the {feature}x{feature} convolutional feature map of "
                f"{conv_stages} stride-2 stages on {image_size}x{image_size} images (each token must be a whole "
                f"number of feature cells: patch_size must be a multiple of {stride} that divides {image_size}); "
                f"MWM uses patch_size=8 with 3 stages on 64x64 images (one token per feature cell)"
            )
    return grid


class MaskedViTEncoder(nn.Module):
    """Image [N, H, W, C] (float, standardised) -> tokens [N, 1 + K, dim]: class token first, then the K kept
    tokens, after `depth` ViT blocks and a final LayerNorm."""

    def __init__(self, image_shape, patch: int, dim: int, depth: int, heads: int, conv_stages: int = 3):
        super().__init__()
        h, w, c = image_shape
        if h != w:
            raise ValueError(f"the masked autoencoder takes square images, got {h}x{w}")
        self.grid = token_grid(h, patch, conv_stages)
        self.patch, self.dim, self.conv_stages = patch, dim, conv_stages
        if conv_stages:
            channels = tuple(max(1, dim // 2 ** (conv_stages - i)) for i in range(conv_stages))
            # stride-2 4x4 'same' convolutions with ReLU (official early_conv_i), then one token per patch
            self.stem = StridedConvEncoder(
                (h, w, c),
                kernels=(4,) * conv_stages,
                strides=(2,) * conv_stages,
                paddings=(1,) * conv_stages,
                channels=channels,
                act="relu",
            ).net
            cells = patch // 2**conv_stages
            self.to_tokens = nn.Conv2d(channels[-1], dim, cells, stride=cells)
        else:
            self.stem = nn.Identity()
            self.to_tokens = nn.Conv2d(c, dim, patch, stride=patch)  # ViT patch embedding
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, self.grid, cls=True), persistent=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        init_vit_(self)
        nn.init.normal_(self.cls_token, std=0.02)

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward(
        self, image: Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(tokens [N, 1 + K, dim], mask [N, L], restore [N, L]) as `random_masking` returns them."""
        x = self.to_tokens(self.stem(image.permute(0, 3, 1, 2)))  # [N, dim, G, G]
        x = x.flatten(2).transpose(1, 2) + self.pos_embed[1:]
        x, mask, restore = random_masking(x, mask_ratio, generator)
        cls = (self.cls_token + self.pos_embed[:1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, restore


class MaskedViTDecoder(nn.Module):
    """Encoder tokens -> (pixel predictions [N, L, p*p*C], reward prediction [N] or None)."""

    def __init__(
        self,
        grid: int,
        patch: int,
        channels: int,
        in_dim: int,
        dim: int,
        depth: int,
        heads: int,
        reward_pred: bool = True,
    ):
        super().__init__()
        self.grid, self.reward_pred = grid, reward_pred
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_pos_embed_2d(dim, grid, cls=True, extra=reward_pred)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pixels = nn.Linear(dim, patch * patch * channels)
        self.reward = nn.Linear(dim, 1) if reward_pred else None
        init_vit_(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: Tensor, restore: Tensor) -> tuple[Tensor, Tensor | None]:
        x = self.embed(tokens)
        n, length = restore.shape
        fill = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], fill], 1)  # kept tokens in shuffled order, then mask tokens
        x_ = x_.gather(1, restore[..., None].expand(-1, -1, x.shape[-1]))  # unshuffle
        parts = [x[:, :1], x_]
        if self.reward_pred:  # the same mask token, at its own position, carries the reward prediction
            parts.append(self.mask_token.expand(n, 1, -1))
        x = torch.cat(parts, 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        pixels = self.pixels(x[:, 1 : 1 + length])
        reward = self.reward(x[:, -1]).squeeze(-1) if self.reward is not None else None
        return pixels, reward


class TokenViTEncoder(nn.Module):
    """Autoencoder tokens [N, G*G + 1, in_dim] (grid tokens, then the class token) -> [N, dim]: Linear embedding, fixed
    position embeddings (the class token at the extra position), ViT blocks, LayerNorm, mean over tokens."""

    def __init__(self, grid: int, in_dim: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, grid, extra=True), persistent=False)
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.out_dim = dim
        init_vit_(self)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x).mean(1)


class TokenViTDecoder(nn.Module):
    """Model state [N, in_dim] -> predicted autoencoder tokens [N, G*G + 1, out_dim] (same order as the encoder's
    input): the state is one token followed by G*G + 1 mask tokens; after the blocks a Linear maps each of the
    mask-token positions to a token feature (official `ViTDecoder`)."""

    def __init__(self, grid: int, in_dim: int, out_dim: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.tokens = grid * grid + 1
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(dim, grid, cls=True, extra=True), persistent=False
        )
        self.blocks = _blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.out = nn.Linear(dim, out_dim)
        init_vit_(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, state: Tensor) -> Tensor:
        x = self.embed(state)[:, None]
        x = torch.cat([x, self.mask_token.expand(x.shape[0], self.tokens, -1)], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x)[:, 1:])


__all__ = [
    "LN_EPS",
    "MaskedViTDecoder",
    "MaskedViTEncoder",
    "TokenViTDecoder",
    "TokenViTEncoder",
    "check_mask_ratio",
    "check_patch_size",
    "init_vit_",
    "patchify",
    "random_masking",
    "sincos_pos_embed_2d",
    "token_grid",
    "unpatchify",
]
