"""The recurrent state-space model (RSSM) shared by Dreamer-style methods: one class, two latent kinds.

State = (deter h_t, stoch z_t). Sequence model h_t = f(h_{t-1}, z_{t-1}, a_{t-1}); prior p(z_t | h_t) (dynamics
predictor); posterior q(z_t | h_t, embed(x_t)) (encoder). Latents are either
- `categorical`: `stoch` one-hot vectors of `classes` classes, 1% uniform mix, straight-through samples
  (DreamerV2/V3), or
- `gaussian`: a diagonal Normal of `stoch` dims with std = softplus(x) + min_std, reparameterised (PlaNet, Dreamer
  v1), or with `std_act="sigmoid2"` std = 2 sigmoid(x / 2) + min_std (the DreamerV2 code's `sigmoid2`, used by its
  Gaussian DMC variant and by DreamerPro).

The deterministic core is one of two generations of the official DreamerV3 code:
- `core="block"` (2024 release, `rssm.py`): (h, z, a) are each projected by Linear -> Norm -> SiLU, concatenated and
  combined with h through a block-diagonal layer, then a GRU-style update with `blocks` block-diagonal gates
  (reset r, candidate tanh(r * c), update sigmoid(u - 1)).
- `core="dense"` (2023 release, `nets.py` RSSM): x = SiLU(Norm(Linear([z, a]))) (`img_in`), then the gates are
  Norm(Linear([h, x])) (one dense GRU layer with LayerNorm on its 3 x deter outputs), same update rule. The two
  input matrices of each concatenation are kept as two exact halves (`dynin_stoch` + `dynin_action`, `gru_h` +
  `gru_x`) so that z can enter as gathered rows (index latents) and the action part is batched over time.
  With `norm="none"`, `gru_norm="layer"` and `act="elu"` this is DreamerV2's RSSM (Hafner et al. 2021; official
  `EnsembleRSSM` with one prior and `GRUCell(norm=True)`): no norm in img_in, prior and posterior layers, LayerNorm
  only on the GRU gates. `gru_norm` (default: `norm`) sets the GRU gates' norm alone.
- `core="gru"` (PlaNet, Hafner et al. 2019; Dreamer v1): the same img_in, then a standard GRU cell (torch's
  `GRUCell`, the equations of TF's `GRUBlockCell` in the official PlaNet code). With `norm="none"` and `act="relu"`
  (hidden-layer nonlinearity of img_in, prior and posterior) this is PlaNet's RSSM: dense([z, a]) -> GRU -> prior
  dense -> (mean, softplus std + 0.1); posterior dense([h, embed]) -> (mean, std).
The initial state is zero (2024) or, with `initial="learned"` (2023), h_0 = tanh(w) for a trained vector w and
z_0 = the mode of the prior p(z | h_0); it also replaces the state where `is_first` marks a reset. Two exact refactorings keep it fast in a Python time loop: the action projection and the
embedding part of the posterior layer do not depend on the recurrent state, so `observe` computes them for all time
steps in one batched call, and the prior logits of a training sequence are computed after the loop in one call.

KL losses (DreamerV3 Sec. 2, Eq. 5): dyn = max(free, KL[sg(q) || p]), rep = max(free, KL[q || sg(p)]) per time step,
free bits 1 nat; the method weights them (0.5 and 0.1 in the paper). `balanced_kl_loss`: DreamerV2's KL balancing
(Algorithm 2) with free nats on the batch means (DreamerV2, DreamerPro).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.nn.distributions import (
    categorical_entropy,
    categorical_kl,
    mode_onehot,
    normal_entropy,
    normal_kl,
    normal_sample,
    sample_index,
    sample_index_probs,
    sample_onehot,
    unimix_logits,
    unimix_probs,
)
from wmbench.nn.networks import (
    MLP,
    BlockLinear,
    Norm,
    activation,
    fan_out_for,
    init_trunc_normal_,
    linear,
    split_linear,
)


class RSSM(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter: int = 4096,
        hidden: int = 512,
        stoch: int = 32,
        classes: int = 32,
        latent: Literal["categorical", "gaussian"] = "categorical",
        blocks: int = 8,
        norm: str = "rms",
        unimix: float = 0.01,
        img_layers: int = 2,
        obs_layers: int = 1,
        dyn_layers: int = 1,
        min_std: float = 0.1,
        core: Literal["block", "dense", "gru"] = "block",
        initial: Literal["zeros", "learned"] = "zeros",
        bias: bool = True,
        fan: str = "in",
        act: str = "silu",
        gru_norm: str | None = None,
        std_act: Literal["softplus", "sigmoid2"] = "softplus",
    ):
        super().__init__()
        if std_act not in ("softplus", "sigmoid2"):
            raise ValueError(f"std_act must be 'softplus' or 'sigmoid2', got {std_act!r}")
        self.std_act = std_act
        if latent not in ("categorical", "gaussian"):
            raise ValueError(f"latent must be 'categorical' or 'gaussian', got {latent!r}")
        if core not in ("block", "dense", "gru"):
            raise ValueError(f"core must be 'block', 'dense' or 'gru', got {core!r}")
        if initial not in ("zeros", "learned"):
            raise ValueError(f"initial must be 'zeros' or 'learned', got {initial!r}")
        if deter % blocks:
            raise ValueError(f"deter {deter} must be divisible by blocks {blocks}")
        self.deter, self.hidden, self.stoch, self.classes = deter, hidden, stoch, classes
        self.latent, self.blocks, self.unimix, self.min_std = latent, blocks, unimix, min_std
        self.core_kind, self.initial_kind = core, initial
        self.stoch_dim = stoch * classes if latent == "categorical" else stoch
        stats_dim = stoch * classes if latent == "categorical" else 2 * stoch
        self.feat_dim = deter + self.stoch_dim
        self.action_dim = action_dim
        if initial == "learned":
            self.initial_deter = nn.Parameter(torch.zeros(deter))  # h_0 = tanh(w): 0 at initialisation
        if core in ("dense", "gru"):
            self._init_dense(hidden, norm, bias, fan, act, gru_norm or norm)
        else:
            self._init_block(hidden, norm, blocks, dyn_layers)
        # prior (img) and posterior (obs) heads; the posterior's first layer is split into h and embed parts
        # `fan` ("in" / "avg") sets the initialisation of the dense layers (the block core keeps fan-in, as 2024)
        self.prior_net = MLP(deter, hidden, img_layers, out_dim=stats_dim, norm=norm, bias=bias, fan=fan, act=act)
        if obs_layers < 1:
            raise ValueError("obs_layers must be >= 1")
        self.obs_deter = linear(deter, hidden, bias=bias)
        self.obs_embed = linear(embed_dim, hidden, bias=False)
        init_trunc_normal_(self.obs_deter.weight, deter + embed_dim, fan_out=fan_out_for(fan, hidden))
        init_trunc_normal_(self.obs_embed.weight, deter + embed_dim, fan_out=fan_out_for(fan, hidden))
        self.obs_net = nn.Sequential(
            Norm(hidden, norm), activation(act),
            MLP(hidden, hidden, obs_layers - 1, out_dim=stats_dim, norm=norm, bias=bias, fan=fan, act=act),
        )

    def _init_dense(self, hidden: int, norm: str, bias: bool, fan: str, act: str, gru_norm: str) -> None:
        """2023 core: img_in over [z, a] (no bias before its norm, as the 2023 `Linear`), GRU layer over [h, x]; each
        half initialised with the fans of the whole layer. `gru` core: the same img_in, then a standard GRU cell."""
        deter, fan_in = self.deter, self.stoch_dim + self.action_dim
        self.dynin_stoch = nn.Sequential(linear(self.stoch_dim, hidden, bias=bias))  # z half of img_in
        self.dynin_action = linear(self.action_dim, hidden, bias=False)  # a half of img_in
        init_trunc_normal_(self.dynin_stoch[0].weight, fan_in, fan_out=fan_out_for(fan, hidden))
        init_trunc_normal_(self.dynin_action.weight, fan_in, fan_out=fan_out_for(fan, hidden))
        self.img_in_norm = Norm(hidden, norm)
        self.img_in_act = activation(act)
        if self.core_kind == "gru":
            self.gru_cell = nn.GRUCell(hidden, deter)
            return
        self.gru_h = linear(deter, 3 * deter, bias=False)  # h half of the GRU layer
        self.gru_x = linear(hidden, 3 * deter, bias=bias)  # x half
        init_trunc_normal_(self.gru_h.weight, deter + hidden, fan_out=fan_out_for(fan, 3 * deter))
        init_trunc_normal_(self.gru_x.weight, deter + hidden, fan_out=fan_out_for(fan, 3 * deter))
        self.gru_norm = Norm(3 * deter, gru_norm)

    def _init_block(self, hidden: int, norm: str, blocks: int, dyn_layers: int) -> None:
        deter = self.deter
        # sequence model inputs: Linear -> Norm -> SiLU of h, z and a
        self.dynin_deter = nn.Sequential(linear(deter, hidden), Norm(hidden, norm), nn.SiLU())
        self.dynin_stoch = nn.Sequential(linear(self.stoch_dim, hidden), Norm(hidden, norm), nn.SiLU())
        self.dynin_action = nn.Sequential(linear(self.action_dim, hidden), Norm(hidden, norm), nn.SiLU())
        # first hidden layer: the official BlockLinear over [h_g, x] per group g, where x = the 3 projections repeated
        # in every group. Split exactly into a dense map of x (shared input) plus a block-diagonal map of h.
        fan_in = deter + 3 * hidden * blocks  # the official initialiser's fan-in of that BlockLinear
        self.dynhid_x = nn.Linear(3 * hidden, deter, bias=True)
        init_trunc_normal_(self.dynhid_x.weight, fan_in)
        nn.init.zeros_(self.dynhid_x.bias)
        self.dynhid_h = BlockLinear(deter, deter, blocks, bias=False, fan_in=fan_in)
        self.dynhid_norm = Norm(deter, norm)
        self.dynhid_more = nn.ModuleList(
            nn.Sequential(BlockLinear(deter, deter, blocks), Norm(deter, norm), nn.SiLU()) for _ in range(dyn_layers - 1)
        )
        self.gru = BlockLinear(deter, 3 * deter, blocks)

    # ------------------------------------------------------------------ state and distributions
    def initial(self, batch: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """(h_0, z_0) for `batch` sequences: zeros, or the learned initial state (see the module docstring)."""
        if self.initial_kind == "zeros":
            return torch.zeros(batch, self.deter, device=device), torch.zeros(batch, self.stoch_dim, device=device)
        deter = torch.tanh(self.initial_deter)
        stoch = self.sample(self.prior(deter), mode=True).to(deter.dtype)
        return deter.expand(batch, -1), stoch.expand(batch, -1)

    def reset(
        self, deter: Tensor, stoch: Tensor, keep: Tensor, initial: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """The state where `keep` ([N, 1] float) is 1, the initial state where it is 0 (an episode starts);
        `initial` = `self.initial(1)` computed once by a caller that resets many times."""
        if self.initial_kind == "zeros":
            return deter * keep, stoch * keep
        deter0, stoch0 = initial if initial is not None else self.initial(1, deter.device)
        return deter * keep + deter0 * (1 - keep), stoch * keep + stoch0 * (1 - keep)

    def dist_stats(self, raw: Tensor) -> Tensor:
        """Raw head output -> distribution statistics: unimix log-probs [.., stoch, classes] or (mean, std)."""
        if self.latent == "categorical":
            return unimix_logits(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), self.unimix)
        mean, std = raw.float().chunk(2, -1)
        std = F.softplus(std) if self.std_act == "softplus" else 2 * torch.sigmoid(std / 2)
        return torch.cat([mean, std + self.min_std], -1)

    def sample(
        self, stats: Tensor, generator: torch.Generator | None = None, mode: bool = False, index: bool = False
    ) -> Tensor:
        """A latent sample: dense (straight-through one-hot or reparameterised Normal), or with `index=True` (categorical
        only, no gradient) the long tensor [..., stoch] of hot positions in the flat stoch vector (group g's class c
        at g * classes + c), which every network taking the state accepts in place of the one-hot vector."""
        if index:
            if self.latent != "categorical":
                raise ValueError("index samples exist only for categorical latents")
            k = stats.argmax(-1) if mode else sample_index(stats, generator)
            return k + self._offsets(k.device)
        if self.latent == "categorical":
            z = mode_onehot(stats) if mode else sample_onehot(stats, generator)
            return z.reshape(*z.shape[:-2], self.stoch_dim)
        mean, std = stats.chunk(2, -1)
        return mean if mode else normal_sample(mean, std, generator)

    def _offsets(self, device: torch.device) -> Tensor:
        return torch.arange(self.stoch, device=device) * self.classes

    def to_index(self, stoch: Tensor) -> Tensor:
        """One-hot categorical stoch [..., stoch * classes] -> hot positions [..., stoch] (see `sample`)."""
        k = stoch.reshape(*stoch.shape[:-1], self.stoch, self.classes).argmax(-1)
        return k + self._offsets(k.device)

    def stoch_input(self, stoch: Tensor) -> Tensor:
        """First sequence-model projection of z: a gather for index latents, a matmul for dense ones."""
        if stoch.dtype != torch.long:
            return self.dynin_stoch(stoch)
        return self.dynin_stoch[1:](split_linear(self.dynin_stoch[0], stoch))

    def kl(self, lhs: Tensor, rhs: Tensor) -> Tensor:
        if self.latent == "categorical":
            return categorical_kl(lhs, rhs).sum(-1)
        return normal_kl(*lhs.chunk(2, -1), *rhs.chunk(2, -1))

    def entropy(self, stats: Tensor) -> Tensor:
        if self.latent == "categorical":
            return categorical_entropy(stats).sum(-1)
        return normal_entropy(stats.chunk(2, -1)[1])

    def kl_losses(self, post: Tensor, prior: Tensor, free: float = 1.0) -> tuple[Tensor, Tensor]:
        """(dyn, rep) per time step with free bits: the prior learns towards the posterior (dyn) and the
        representation is regularised towards the prior (rep); both are clipped below at `free` nats so that
        neither is pushed once it is already small (DreamerV3 Eq. 5)."""
        dyn = self.kl(post.detach(), prior)
        rep = self.kl(post, prior.detach())
        return dyn.clamp(min=free), rep.clamp(min=free)

    def balanced_kl_loss(self, post: Tensor, prior: Tensor, balance: float, free: float) -> tuple[Tensor, Tensor]:
        """DreamerV2's KL balancing (Hafner et al. 2021, Algorithm 2): balance KL[sg(q) || p] + (1 - balance)
        KL[q || sg(p)], each clipped below `free` nats on its batch mean (official `kl.free_avg`), so the prior moves
        towards the posterior faster than the posterior towards the prior. Returns (loss, KL[q || sg(p)] per step)."""
        dyn, rep = self.kl_losses(post, prior, free=0.0)
        loss = balance * dyn.mean().clamp(min=free) + (1 - balance) * rep.mean().clamp(min=free)
        return loss, rep

    # ------------------------------------------------------------------ sequence model
    def action_features(self, action: Tensor) -> Tensor:
        # scale actions with |a| > 1 back to unit range (official `_core`), without a gradient through the scale
        action = action / torch.clamp(action.detach().abs(), min=1.0)
        return self.dynin_action(action)

    def core(self, deter: Tensor, stoch: Tensor, action_feat: Tensor) -> Tensor:
        if self.core_kind in ("dense", "gru"):
            return self._core_dense(deter, stoch, action_feat)
        stoch_feat = self.stoch_input(stoch)
        x = torch.cat([self.dynin_deter(deter), stoch_feat.to(action_feat.dtype), action_feat], -1)
        x = F.silu(self.dynhid_norm(self.dynhid_x(x) + self.dynhid_h(deter)))
        for layer in self.dynhid_more:
            x = layer(x)
        g, d = self.blocks, self.deter // self.blocks
        gates = self.gru(x).reshape(*x.shape[:-1], g, 3, d)
        reset, cand, update = gates.unbind(-2)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)  # bias towards keeping the old state (official code)
        new = update * cand + (1 - update) * deter.reshape(*deter.shape[:-1], g, d)
        return new.reshape(deter.shape)

    def _core_dense(self, deter: Tensor, stoch: Tensor, action_feat: Tensor) -> Tensor:
        x = self.img_in_act(self.img_in_norm(self.stoch_input(stoch).to(action_feat.dtype) + action_feat))  # img_in
        if self.core_kind == "gru":
            lead = deter.shape[:-1]
            return self.gru_cell(x.reshape(-1, x.shape[-1]), deter.reshape(-1, self.deter)).reshape(*lead, self.deter)
        gates = self.gru_norm(self.gru_h(deter) + self.gru_x(x))  # Norm(Linear([h, x]))
        reset, cand, update = gates.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1)
        return update * cand + (1 - update) * deter

    def prior(self, deter: Tensor) -> Tensor:
        return self.dist_stats(self.prior_net(deter))

    def embed_features(self, embed: Tensor) -> Tensor:
        return self.obs_embed(embed)

    def posterior(self, deter: Tensor, embed_feat: Tensor) -> Tensor:
        return self.dist_stats(self.obs_net(self.obs_deter(deter) + embed_feat))

    def img_step(
        self, deter: Tensor, stoch: Tensor, action: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One imagined step: (h, z, a) -> (h', z' ~ p(z' | h'), prior stats). A long `stoch` (index latents, see
        `sample`) makes the step gradient-free and returns z' as indices too, and no stats (None): the fast path for
        REINFORCE rollouts."""
        deter = self.core(deter, stoch, self.action_features(action))
        if stoch.dtype == torch.long:  # no log-probs needed: sample from the probabilities; stats are not returned
            raw = self.prior_net(deter)
            probs = unimix_probs(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), self.unimix)
            return deter, sample_index_probs(probs, generator) + self._offsets(deter.device), None
        stats = self.prior(deter)
        return deter, self.sample(stats, generator), stats

    def obs_step(
        self,
        deter: Tensor,
        stoch: Tensor,
        prev_action: Tensor,
        embed: Tensor,
        is_first: Tensor,
        generator: torch.Generator | None = None,
        mode: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One filtering step for acting: resets state and previous action where `is_first`."""
        keep = (~is_first.bool()).to(deter.dtype).unsqueeze(-1)
        (deter, stoch), prev_action = self.reset(deter, stoch, keep), prev_action * keep
        deter = self.core(deter, stoch, self.action_features(prev_action))
        stats = self.posterior(deter, self.embed_features(embed))
        return deter, self.sample(stats, generator, mode), stats

    def observe(
        self,
        embed: Tensor,
        prev_action: Tensor,
        is_first: Tensor,
        state: tuple[Tensor, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Filter a [B, T] sequence. `prev_action[:, t]` is the action that led to step t (zero at t=0 and at
        resets). Returns deter/stoch [B, T, .] and post/prior stats [B, T, ...]."""
        batch, length = embed.shape[:2]
        deter, stoch = state if state is not None else self.initial(batch, embed.device)
        keep = (~is_first.bool()).to(deter.dtype).unsqueeze(-1)
        act_feat = self.action_features(prev_action * keep)  # all steps at once: independent of the state
        embed_feat = self.embed_features(embed)
        initial = self.initial(1, embed.device) if self.initial_kind == "learned" else None
        deters, stochs, posts = [], [], []
        for t in range(length):
            deter = self.core(*self.reset(deter, stoch, keep[:, t], initial), act_feat[:, t])
            stats = self.posterior(deter, embed_feat[:, t])
            stoch = self.sample(stats, generator)
            deters.append(deter)
            stochs.append(stoch)
            posts.append(stats)
        deter_seq = torch.stack(deters, 1)
        return {
            "deter": deter_seq,
            "stoch": torch.stack(stochs, 1),
            "post": torch.stack(posts, 1),
            "prior": self.prior(deter_seq),  # p(z_t | h_t) needs only h_t: one batched call after the loop
        }
