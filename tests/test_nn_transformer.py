"""The shared transformer (wmbench/nn/transformer.py): cached continuation equals the full causal pass, and the
attention masks (causal, window, episode start, padding) hide exactly what they should."""

import pytest
import torch

from wmbench.nn.transformer import TransformerXL


def _model(positions="relative", memory=5, prenorm=False, seed=0):
    torch.manual_seed(seed)
    model = TransformerXL(
        width=16, depth=2, heads=4, ff_dim=24, memory=memory, positions=positions, prenorm=prenorm
    )
    with torch.no_grad():  # non-zero position biases, so the test sees them
        for p in model.parameters():
            if p.dim() <= 2 and p.shape[-1] != 16:
                p.normal_(0, 0.5)
    return model.eval().double()


@pytest.mark.parametrize("positions", ["relative", "learned"])
@pytest.mark.parametrize("prenorm", [False, True])
def test_cached_steps_equal_the_full_pass(positions, prenorm):
    model = _model(positions, memory=5, prenorm=prenorm)
    x = torch.randn(3, 13, 16, dtype=torch.float64)
    is_first = torch.zeros(3, 13, dtype=torch.bool)
    is_first[1, 6] = True  # an episode starts inside row 1
    with torch.no_grad():
        full, full_cache = model(x, is_first=is_first)
        cache, outs = None, []
        for t in range(13):
            y, cache = model(x[:, t : t + 1], cache, is_first[:, t : t + 1])
            outs.append(y)
        stepwise = torch.cat(outs, 1)
        # uneven chunks, crossing the window boundary
        cache, chunks = None, []
        for a, b in [(0, 4), (4, 5), (5, 11), (11, 13)]:
            y, cache = model(x[:, a:b], cache, is_first[:, a:b])
            chunks.append(y)
    torch.testing.assert_close(stepwise, full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.cat(chunks, 1), full, rtol=1e-10, atol=1e-10)
    assert cache.length == 5 and full_cache.length == 5  # only the window is kept
    for k1, k2 in zip(cache.keys, full_cache.keys, strict=True):
        torch.testing.assert_close(k1, k2, rtol=1e-10, atol=1e-10)


def test_cache_continues_a_long_context_at_constant_size():
    model = _model(memory=4)
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    with torch.no_grad():
        full, _ = model(x)
        _, cache = model(x[:, :30])
        rest, cache = model(x[:, 30:], cache)
    torch.testing.assert_close(rest, full[:, 30:], rtol=1e-10, atol=1e-10)
    assert cache.length == 4 and cache.next_pos.tolist() == [40, 40]


def _changed_outputs(model, x, t_change, is_first=None, valid=None):
    """Indices of the time steps whose outputs change when input t_change is perturbed."""
    with torch.no_grad():
        a, _ = model(x, is_first=is_first, valid=valid)
        x2 = x.clone()
        x2[:, t_change] += 1.0
        b, _ = model(x2, is_first=is_first, valid=valid)
    return [t for t in range(x.shape[1]) if not torch.allclose(a[:, t], b[:, t], rtol=0, atol=1e-12)]


def test_attention_is_causal_and_windowed():
    model = _model(memory=3)  # 2 layers: influence reaches 2 x 3 tokens ahead
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    assert _changed_outputs(model, x, 4) == [4, 5, 6, 7, 8, 9, 10]
    one_layer = TransformerXL(16, 1, 4, 24, memory=3).eval().double()
    assert _changed_outputs(one_layer, x, 4) == [4, 5, 6, 7]


def test_no_attention_across_an_episode_start_or_to_padding():
    model = _model(memory=8)
    x = torch.randn(1, 10, 16, dtype=torch.float64)
    is_first = torch.zeros(1, 10, dtype=torch.bool)
    is_first[0, 5] = True
    assert _changed_outputs(model, x, 2, is_first=is_first) == [2, 3, 4]
    valid = torch.ones(1, 10, dtype=torch.bool)
    valid[0, 2] = False
    assert _changed_outputs(model, x, 2, valid=valid) == [2]


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match=r"heads \(3\) must divide the transformer width \(16\)"):
        TransformerXL(16, 1, 3, 8, memory=4)
    with pytest.raises(ValueError, match="positions"):
        TransformerXL(16, 1, 4, 8, memory=4, positions="absolute")
    model = TransformerXL(16, 1, 4, 8, memory=4)
    with pytest.raises(ValueError, match="width 8"):
        model(torch.zeros(1, 2, 8))
    _, cache = model(torch.zeros(2, 3, 16))
    with pytest.raises(ValueError, match="2 streams"):
        model(torch.zeros(3, 1, 16), cache)


@pytest.mark.parametrize("positions", ["relative", "learned"])
def test_prefix_caches_continue_each_step_as_the_full_pass(positions):
    """From one pass over [B, T] tokens, stream b*T+t of `prefix_caches` fed token t again gives the full pass's output
    at (b, t): every step of a sequence can start an imagined continuation with its exact history."""
    model = _model(positions, memory=8)
    B, T = 2, 6
    x = torch.randn(B, T, 16, dtype=torch.float64)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[0, 3] = True
    with torch.no_grad():
        full, cache = model(x, is_first=is_first)
        streams = cache.prefix_caches()
        again, _ = model(x.reshape(B * T, 1, 16), streams)
    torch.testing.assert_close(again.reshape(B, T, 16), full, rtol=1e-10, atol=1e-10)


def test_bidirectional_blocks_compute_the_pre_norm_vit_block():
    """Each block is x + W_o Attn(LN1(x)) then + MLP(LN2(.)) with GELU, attention softmax(q k^T / sqrt(head width))
    over every token (no mask), all projections biased: written out by hand here and compared."""
    from wmbench.nn.transformer import bidirectional_blocks

    torch.manual_seed(0)
    width, heads, tokens = 16, 4, 7
    (block,) = bidirectional_blocks(width, heads, 1, mlp_ratio=2.0, eps=1e-6)
    for p in block.parameters():  # non-trivial norms and biases
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, tokens, width)
    attn = block.self_attn
    h = torch.nn.functional.layer_norm(x, (width,), block.norm1.weight, block.norm1.bias, 1e-6)
    q, k, v = (h @ attn.in_proj_weight.T + attn.in_proj_bias).chunk(3, -1)
    split = lambda t: t.view(3, tokens, heads, width // heads).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (width // heads) ** 0.5, -1)
    mixed = (weights @ split(v)).transpose(1, 2).reshape(3, tokens, width)
    y = x + mixed @ attn.out_proj.weight.T + attn.out_proj.bias
    h = torch.nn.functional.layer_norm(y, (width,), block.norm2.weight, block.norm2.bias, 1e-6)
    want = y + block.linear2(torch.nn.functional.gelu(block.linear1(h)))
    assert torch.allclose(block(x), want, atol=1e-5)
    with torch.no_grad():  # torch's fused inference path (eval, no grad) computes the same
        assert torch.allclose(block.eval()(x), want, atol=1e-5)
    assert block.linear1.out_features == 2 * width
    with pytest.raises(ValueError, match="width 16 must be divisible by its 3 heads"):
        bidirectional_blocks(16, 3, 1)
