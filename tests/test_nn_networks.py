"""wmbench.nn.networks and wmbench.nn.rssm: shapes, exact refactorings, resets, KL balancing, gradients."""

import pytest
import torch

from wmbench.nn.networks import (
    MLP,
    BlockLinear,
    ConvDecoder,
    ConvEncoder,
    Norm,
    count_params,
    linear,
    rms_norm_lastdim,
)
from wmbench.nn.rssm import RSSM


def test_norms_normalise():
    x = torch.randn(64, 32) * 5 + 3
    rms = Norm(32, "rms")(x)
    assert torch.allclose(rms.square().mean(-1), torch.ones(64), atol=1e-3)
    ln = Norm(32, "layer")(x)
    assert torch.allclose(ln.mean(-1), torch.zeros(64), atol=1e-4)
    assert torch.allclose(ln.var(-1, unbiased=False), torch.ones(64), atol=1e-3)
    maps = torch.randn(2, 8, 4, 4)  # NCHW: each pixel's channel vector is normalised
    out = Norm(8, "rms", channel_dim=1)(maps)
    assert torch.allclose(out.square().mean(1), torch.ones(2, 4, 4), atol=1e-3)


def test_rms_norm_lastdim_equals_torch_rms_norm_forward_and_backward():
    """The speed device is the same function as F.rms_norm: values and both gradients equal to rounding (float32),
    and its hand-written backward passes gradcheck (float64), with and without each input needing a gradient."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 5, 16, generator=gen) * 3 + 1).requires_grad_()
    w = torch.randn(16, generator=gen).requires_grad_()
    grad = torch.randn(3, 5, 16, generator=gen)
    ours = rms_norm_lastdim(x, w, 1e-4)
    theirs = F.rms_norm(x, (16,), w, 1e-4)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    gx, gw = torch.autograd.grad(ours, (x, w), grad)
    tx, tw = torch.autograd.grad(theirs, (x, w), grad)
    torch.testing.assert_close(gx, tx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, tw, rtol=1e-5, atol=1e-6)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: rms_norm_lastdim(a, b, 1e-3), (x64, w64))
    (only_w,) = torch.autograd.grad(rms_norm_lastdim(x.detach(), w, 1e-4), (w,), grad)
    torch.testing.assert_close(only_w, tw, rtol=1e-5, atol=1e-6)
    (only_x,) = torch.autograd.grad(rms_norm_lastdim(x, w.detach(), 1e-4), (x,), grad)
    torch.testing.assert_close(only_x, tx, rtol=1e-5, atol=1e-6)


def test_mlp_shapes_zero_output_and_params():
    mlp = MLP(10, 16, 2, out_dim=3, outscale=0.0)
    assert mlp(torch.randn(5, 7, 10)).shape == (5, 7, 3)
    assert torch.all(mlp(torch.randn(4, 10)) == 0)  # zero-initialised output layer
    # hand count: (10*16 + 16 + 16 norm) + (16*16 + 16 + 16) + (16*3 + 3)
    assert count_params(mlp) == 192 + 288 + 51


def test_block_linear_equals_block_diagonal_dense():
    layer = BlockLinear(12, 6, 3)
    x = torch.randn(5, 12)
    dense = torch.block_diag(*layer.weight.detach())  # [12, 6]
    assert torch.allclose(layer(x), x @ dense + layer.bias, atol=1e-6)
    assert count_params(layer) == 3 * 4 * 2 + 6


def test_conv_encoder_decoder_shapes_and_gradients():
    enc = ConvEncoder((64, 64, 3), depth=2, mults=(2, 3, 4, 4))
    img = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    emb = enc(img)
    assert emb.shape == (2, 3, 4 * 4 * 8) and enc.out_dim == 128
    dec = ConvDecoder(deter=16, stoch=12, shape=(64, 64, 3), depth=2, units=8, bspace=4)
    out = dec(torch.randn(2, 3, 16), torch.randn(2, 3, 12))
    assert out.shape == (2, 3, 64, 64, 3) and out.min() >= 0 and out.max() <= 1
    out.sum().backward()
    assert all(p.grad is not None for p in dec.parameters())
    with pytest.raises(ValueError, match="divisible"):
        ConvEncoder((20, 20, 3), depth=2)


def _rssm(latent="categorical", **kw):
    torch.manual_seed(0)
    return RSSM(embed_dim=6, action_dim=2, deter=16, hidden=8, stoch=3, classes=4, latent=latent, blocks=4, **kw)


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_observe_matches_step_by_step_filtering(latent):
    rssm = _rssm(latent)
    B, T = 2, 5
    embed, act = torch.randn(B, T, 6), torch.randn(B, T, 2)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 3] = True
    seq = rssm.observe(embed, act, is_first, generator=torch.Generator().manual_seed(1))
    stoch_dim = 12 if latent == "categorical" else 3
    assert seq["deter"].shape == (B, T, 16) and seq["stoch"].shape == (B, T, stoch_dim)
    # the batched precomputations in observe are exact: the same as one obs_step per time step
    gen = torch.Generator().manual_seed(1)
    deter, stoch = rssm.initial(B)
    for t in range(T):
        deter, stoch, stats = rssm.obs_step(deter, stoch, act[:, t], embed[:, t], is_first[:, t], gen)
        assert torch.allclose(seq["deter"][:, t], deter, atol=1e-6)
        assert torch.allclose(seq["stoch"][:, t], stoch, atol=1e-6)
        assert torch.allclose(seq["post"][:, t], stats, atol=1e-6)
    assert torch.allclose(seq["prior"], torch.stack([rssm.prior(seq["deter"][:, t]) for t in range(T)], 1), atol=1e-6)
    if latent == "categorical":
        z = seq["stoch"].reshape(B, T, 3, 4)
        assert torch.all(z.sum(-1) == 1)


def test_reset_forgets_history():
    rssm = _rssm()
    is_first = torch.zeros(1, 4, dtype=torch.bool)
    is_first[0, 2] = True
    a = rssm.observe(torch.randn(1, 4, 6), torch.randn(1, 4, 2), is_first)
    b = rssm.observe(torch.randn(1, 4, 6), torch.randn(1, 4, 2), is_first)
    # after a reset h_t = f(0, 0, 0): independent of everything before
    assert torch.allclose(a["deter"][:, 2], b["deter"][:, 2])
    assert not torch.allclose(a["deter"][:, 1], b["deter"][:, 1])


def test_kl_balancing_and_free_bits():
    rssm = _rssm()
    post_raw = torch.randn(4, 12, requires_grad=True)
    prior_raw = torch.randn(4, 12, requires_grad=True)
    post, prior = rssm.dist_stats(post_raw), rssm.dist_stats(prior_raw)
    dyn, rep = rssm.kl_losses(post, prior, free=0.0)
    kl = rssm.kl(post, prior)
    assert torch.allclose(dyn, kl) and torch.allclose(rep, kl)
    # dyn trains only the prior, rep only the posterior (stop-gradients of Eq. 5)
    (g_post,) = torch.autograd.grad(dyn.sum(), post_raw, allow_unused=True, retain_graph=True) or (None,)
    assert g_post is None or torch.all(g_post == 0)
    (g_prior,) = torch.autograd.grad(rep.sum(), prior_raw, allow_unused=True, retain_graph=True) or (None,)
    assert g_prior is None or torch.all(g_prior == 0)
    # free bits: below 1 nat the loss is constant 1 and passes no gradient
    same = rssm.dist_stats(post_raw)
    dyn, rep = rssm.kl_losses(same, same, free=1.0)
    assert torch.all(dyn == 1.0) and torch.all(rep == 1.0)
    (g,) = torch.autograd.grad(rep.sum(), post_raw)
    assert torch.all(g == 0)


def test_img_step_passes_action_gradient():
    rssm = _rssm("gaussian")
    deter, stoch = rssm.initial(3)
    action = torch.zeros(3, 2, requires_grad=True)
    deter, stoch, _ = rssm.img_step(deter, stoch, action, torch.Generator().manual_seed(0))
    (deter.sum() + stoch.sum()).backward()
    assert action.grad.abs().sum() > 0


def test_onehot_matmul_equals_dense_product_and_weight_gradient():
    from wmbench.nn.networks import onehot_matmul

    torch.manual_seed(0)
    groups, classes, out = 6, 5, 7
    index = torch.randint(0, classes, (11, groups)) + torch.arange(groups) * classes
    onehot = torch.nn.functional.one_hot(index, groups * classes).sum(-2).float()
    w1 = torch.randn(out, groups * classes, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    g = torch.randn(11, out)
    dense = onehot @ w1.t()
    gathered = onehot_matmul(index, w2)
    assert torch.allclose(dense, gathered, atol=1e-5)
    dense.backward(g)
    gathered.backward(g)
    assert torch.allclose(w1.grad, w2.grad, atol=1e-5)
    assert onehot_matmul(index.reshape(11, 1, groups), w1).shape == (11, 1, out)  # leading dims kept


def test_mlp_forward_feat_index_path_equals_dense_path():
    torch.manual_seed(0)
    mlp = MLP(4 + 12, 8, 2, out_dim=3)
    rssm = RSSM(5, 2, deter=8, hidden=8, stoch=3, classes=4, blocks=2)
    deter = torch.randn(9, 4)
    index = rssm.sample(torch.log_softmax(torch.randn(9, 3, 4), -1), torch.Generator().manual_seed(1), index=True)
    dense = torch.nn.functional.one_hot(index, 12).sum(-2).float()
    a = mlp.forward_feat(deter, dense)
    grads_a = torch.autograd.grad(a.square().sum(), list(mlp.parameters()))
    b = mlp.forward_feat(deter, index)
    grads_b = torch.autograd.grad(b.square().sum(), list(mlp.parameters()))
    assert torch.allclose(a, b, atol=1e-5)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(grads_a, grads_b, strict=True))


def test_index_latents_follow_the_dense_rollout_exactly():
    """img_step with index latents samples the same classes as with straight-through one-hots (same generator) and
    gives the same deterministic states: the REINFORCE imagination path is an exact refactoring."""
    torch.manual_seed(0)
    rssm = RSSM(5, 2, deter=8, hidden=8, stoch=3, classes=4, blocks=2)
    deter = torch.randn(6, 8)
    stoch = rssm.sample(rssm.prior(deter), torch.Generator().manual_seed(2))
    index = rssm.to_index(stoch)
    assert torch.equal(torch.nn.functional.one_hot(index, 12).sum(-2).float(), stoch)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    d1, s1, d2, s2 = deter, stoch, deter, index
    for _ in range(4):
        action = torch.randn(6, 2)
        d1, s1, _ = rssm.img_step(d1, s1, action, g1)
        with torch.no_grad():
            d2, s2, _ = rssm.img_step(d2, s2, action, g2)
        assert s2.dtype == torch.long
        assert torch.allclose(d1, d2, atol=1e-5)
        assert torch.equal(rssm.to_index(s1), s2)
    with pytest.raises(ValueError, match="categorical"):
        _rssm("gaussian").sample(torch.randn(2, 8), index=True)


def _dense_rssm(initial="learned"):
    torch.manual_seed(0)
    return RSSM(6, 2, deter=8, hidden=5, stoch=3, classes=4, norm="layer", core="dense", initial=initial, bias=False,
                img_layers=1, obs_layers=1)


def test_dense_core_is_the_2023_gru_with_layernorm():
    """core='dense': x = SiLU(LN(W_in [z, a])), gates = LN(W_gru [h, x]) split into reset, candidate, update (the
    2023 nets.py RSSM); our two halves of each matrix are one concatenated matrix."""
    rssm = _dense_rssm()
    h, z, a = torch.randn(4, 8), torch.randn(4, 12), torch.rand(4, 2) * 2 - 1  # |a| <= 1: no action rescale
    w_in = torch.cat([rssm.dynin_stoch[0].weight, rssm.dynin_action.weight], 1)  # [hidden, z + a]
    ln = torch.nn.functional.layer_norm
    x = torch.nn.functional.silu(ln(torch.cat([z, a], -1) @ w_in.T, (5,), rssm.img_in_norm.weight, rssm.img_in_norm.bias, 1e-4))
    w_gru = torch.cat([rssm.gru_h.weight, rssm.gru_x.weight], 1)  # [3 deter, h + x]
    gates = ln(torch.cat([h, x], -1) @ w_gru.T, (24,), rssm.gru_norm.weight, rssm.gru_norm.bias, 1e-4)
    reset, cand, update = torch.sigmoid(gates[:, :8]), gates[:, 8:16], torch.sigmoid(gates[:, 16:] - 1)
    want = update * torch.tanh(reset * cand) + (1 - update) * h
    assert torch.allclose(rssm.core(h, z, rssm.action_features(a)), want, atol=1e-6)
    # no biases before a norm (the 2023 Linear); count: img_in, GRU, img_out, obs_out, their LNs, stats, initial
    assert rssm.dynin_stoch[0].bias is None and rssm.gru_x.bias is None and rssm.obs_deter.bias is None
    n = sum(p.numel() for p in rssm.parameters())
    assert n == (12 + 2) * 5 + 2 * 5 + (8 + 5) * 24 + 2 * 24 + 8 * 5 + 2 * 5 + 5 * 12 + 12 + (8 + 6) * 5 + 2 * 5 + 5 * 12 + 12 + 8
    # the index (gather) path of REINFORCE rollouts is exact for the dense core too
    stoch = rssm.sample(rssm.prior(h), torch.Generator().manual_seed(2))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    d1, s1, _ = rssm.img_step(h, stoch, a, g1)
    with torch.no_grad():
        d2, s2, _ = rssm.img_step(h, rssm.to_index(stoch), a, g2)
    assert torch.allclose(d1, d2, atol=1e-5) and torch.equal(rssm.to_index(s1), s2)


def test_learned_initial_state_starts_sequences_and_resets():
    """initial='learned' (2023): h_0 = tanh(w), z_0 = mode of the prior at h_0; it replaces the state at is_first,
    and w receives a gradient."""
    rssm = _dense_rssm()
    with torch.no_grad():
        rssm.initial_deter.normal_()
    deter0, stoch0 = rssm.initial(3)
    assert torch.allclose(deter0, torch.tanh(rssm.initial_deter).expand(3, -1))
    assert torch.equal(stoch0[0], rssm.sample(rssm.prior(deter0[:1]), mode=True)[0])
    is_first = torch.zeros(2, 4, dtype=torch.bool)
    is_first[:, 0] = is_first[1, 2] = True
    embed, act = torch.randn(2, 4, 6), torch.randn(2, 4, 2)
    seq = rssm.observe(embed, act, is_first, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    deter, stoch = torch.randn(2, 8), torch.randn(2, 12)  # anything: is_first at t=0 replaces it
    for t in range(4):
        deter, stoch, _ = rssm.obs_step(deter, stoch, act[:, t], embed[:, t], is_first[:, t], gen)
        assert torch.allclose(seq["deter"][:, t], deter, atol=1e-6)
    # after the reset at t=2, row 1 follows from the initial state and a zero previous action
    want = rssm.core(deter0[:1], stoch0[:1], rssm.action_features(torch.zeros(1, 2)))
    assert torch.allclose(seq["deter"][1, 2], want[0], atol=1e-6)
    seq["deter"].sum().backward()
    assert rssm.initial_deter.grad is not None and rssm.initial_deter.grad.abs().sum() > 0
    assert _rssm().initial(2)[0].abs().sum() == 0  # default: zeros, no parameter
    assert not hasattr(_rssm(), "initial_deter")


def test_mlp_without_bias_keeps_the_output_bias():
    mlp = MLP(4, 8, 2, out_dim=3, norm="layer", bias=False)
    assert mlp.hidden[0].bias is None and mlp.hidden[3].bias is None and mlp.out.bias is not None
    assert count_params(mlp) == 4 * 8 + 2 * 8 + 8 * 8 + 2 * 8 + 8 * 3 + 3


def test_fan_average_initialisation():
    """fan='avg' (2023 DreamerV3 `Initializer(fan='avg')`): weight variance 1/mean(fan_in, fan_out); the dense RSSM's
    split halves use the whole layer's fans."""
    torch.manual_seed(0)
    assert abs(linear(400, 100).weight.std().item() / (1 / 400) ** 0.5 - 1) < 0.05
    assert abs(linear(400, 100, fan="avg").weight.std().item() / (1 / 250) ** 0.5 - 1) < 0.05
    assert abs(MLP(400, 100, 1, fan="avg").hidden[0].weight.std().item() / (1 / 250) ** 0.5 - 1) < 0.05
    rssm = RSSM(6, 2, deter=200, hidden=100, stoch=10, classes=10, core="dense", fan="avg")
    want = (1 / ((200 + 100 + 3 * 200) / 2)) ** 0.5  # gru over [h, x] -> 3 deter
    assert abs(rssm.gru_h.weight.std().item() / want - 1) < 0.05
    with pytest.raises(ValueError, match="fan"):
        linear(3, 3, fan="out")


def test_strided_conv_stacks_take_per_layer_strides_paddings_and_channels():
    from wmbench.nn.networks import StridedConvDecoder, StridedConvEncoder

    # the defaults are unchanged: PlaNet's 64x64 stack, 1024 features, the decoder back to 64x64
    planet = StridedConvEncoder((64, 64, 3))
    assert planet.out_dim == 1024 and [m.padding for m in planet.net if hasattr(m, "padding")] == [(0, 0)] * 4
    # SLAC's stack (Lee et al. 2020): 'same'-size stride-2 layers, a final 4x4 'valid' one, leaky ReLU
    enc = StridedConvEncoder((64, 64, 3), kernels=(5, 3, 3, 3, 4), strides=(2, 2, 2, 2, 1), paddings=(2, 1, 1, 1, 0),
                             channels=(32, 64, 128, 256, 256), act="leaky_relu")
    image = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    assert enc(image).shape == (2, 256) and isinstance(enc.net[1], torch.nn.LeakyReLU)
    dec = StridedConvDecoder(288, (64, 64, 3), kernels=(4, 3, 3, 3, 5), strides=(1, 2, 2, 2, 2),
                             paddings=(0, 1, 1, 1, 2), channels=(256, 128, 64, 32), act="leaky_relu", linear_in=False)
    assert dec(torch.randn(2, 3, 288)).shape == (2, 3, 64, 64, 3) and not any(p.shape == (1024, 288) for p in dec.parameters())
    with pytest.raises(ValueError, match="strides .* one value per kernel"):
        StridedConvEncoder((64, 64, 3), kernels=(4, 4), strides=(2,))
    with pytest.raises(ValueError, match="channels .* one value per hidden layer"):
        StridedConvDecoder(8, (16, 16, 3), kernels=(6, 6), channels=(4, 4))
    with pytest.raises(ValueError, match="grow a 1x1 map to 10x10"):
        StridedConvDecoder(8, (16, 16, 3), kernels=(4, 5), strides=(1, 2), paddings=(0, 1))
