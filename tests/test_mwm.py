"""Masked World Models: masking, the patch reconstruction target, the autoencoder's reward token, the world model
predicting the autoencoder's features, the schedule, checkpoints and bad input."""

from __future__ import annotations

import io

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, IMAGE64, batch, obs
from wmbench_baselines.mwm import DMC_VISION, MWM, MWMConfig, mae_pixel_target, parameter_counts, standardise

from wmbench.config import ConfigError, make_config
from wmbench.method import MethodError, method_config
from wmbench.nn.mae import (
    MaskedViTEncoder,
    check_mask_ratio,
    patchify,
    random_masking,
    sincos_pos_embed_2d,
    unpatchify,
)
from wmbench.protocols import load_protocol

DISCRETE3 = gymnasium.spaces.Discrete(3)


def tiny(*overrides: str) -> MWMConfig:
    return make_config(MWMConfig, ["preset=tiny", "prefill=0", *overrides])


class FakeReplay:
    def __len__(self):
        return 1000

    def sample(self, b, t):
        return batch(b, t)


# ------------------------------------------------------------------------------------------------ patches, masks
def test_patchify_cuts_row_major_patches_of_row_column_channel_pixels_and_unpatchify_inverts_it():
    images = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).reshape(2, 8, 12, 3)
    patches = patchify(images, 4)
    assert patches.shape == (2, 2 * 3, 4 * 4 * 3)
    # patch 1 is the second patch of the first patch row: rows 0-3, columns 4-7, flattened row, column, channel
    assert torch.equal(patches[1, 1], images[1, 0:4, 4:8].reshape(-1))
    assert torch.equal(patches[0, 3], images[0, 4:8, 0:4].reshape(-1))  # first patch of the second patch row
    assert torch.equal(unpatchify(patches, 4, 8, 12), images)


def test_random_masking_keeps_a_quarter_removes_the_rest_and_restores_the_order():
    tokens = torch.randn(3, 16, 5)
    kept, mask, restore = random_masking(tokens, 0.75, torch.Generator().manual_seed(1))
    assert kept.shape == (3, 4, 5) and mask.shape == (3, 16)
    assert torch.equal(mask.sum(1), torch.full((3,), 12.0))
    for i in range(3):  # the kept tokens are exactly the unmasked ones, in some order
        unmasked = tokens[i, mask[i] == 0]
        assert sorted(map(tuple, unmasked.tolist())) == sorted(map(tuple, kept[i].tolist()))
    # restore undoes the shuffle: kept tokens followed by placeholders, gathered, put each kept one back in place
    filled = torch.cat([kept, torch.zeros(3, 12, 5)], 1).gather(1, restore[..., None].expand(-1, -1, 5))
    assert torch.equal(filled[mask == 0], tokens[mask == 0]) and torch.all(filled[mask == 1] == 0)
    # different samples get different masks; the same generator state gives the same mask
    assert not torch.equal(mask[0], mask[1])
    again = random_masking(tokens, 0.75, torch.Generator().manual_seed(1))[1]
    assert torch.equal(mask, again)
    kept0, mask0, restore0 = random_masking(tokens, 0.0)
    assert torch.equal(kept0, tokens) and mask0.sum() == 0 and torch.equal(restore0[0], torch.arange(16))


@pytest.mark.parametrize("bad", [0, 1.0, 1.5, -0.25, float("nan")])
def test_mask_ratio_outside_zero_one_is_a_clear_error(bad):
    with pytest.raises(
        ConfigError, match=r"mask_ratio.*mask_ratio=0.75"
    ) as e:  # nan: the shared finiteness check
        make_config(MWMConfig, [f"mask_ratio={bad}"])
    assert bad != bad or "must lie in (0, 1)" in str(e.value)
    with pytest.raises(ValueError, match="mask_ratio=0.75"):
        check_mask_ratio(bad, allow_zero=bad != 0)
        random_masking(torch.zeros(1, 4, 2), bad)


def test_patch_size_must_divide_the_image_and_the_convolutional_feature_map():
    with pytest.raises(ConfigError, match=r"patch size 5 does not divide the 16x16 image.*patch_size=8"):
        MWM(IMAGE16, BOX2, tiny("patch_size=5"))
    with pytest.raises(ConfigError, match=r"patch size 4 does not divide the 8x8 convolutional feature map"):
        MWM(
            IMAGE64, BOX2, make_config(MWMConfig, ["patch_size=4"])
        )  # 3 conv stages: tokens are 8x8-pixel cells
    with pytest.raises(ValueError, match="does not divide"):
        patchify(torch.zeros(1, 10, 10, 3), 4)


def test_position_embeddings_are_maes_sine_cosine_table_with_the_extra_corner_token():
    emb = sincos_pos_embed_2d(8, 3, cls=True, extra=True)
    assert emb.shape == (1 + 9 + 1, 8) and torch.all(emb[0] == 0)
    # the first half encodes the column (w goes first in the official meshgrid), the second the row
    assert torch.allclose(
        emb[1 + 1, 0], torch.sin(torch.tensor(1.0))
    )  # position (row 0, col 1): sin(col * 1)
    assert torch.allclose(
        emb[1 + 3, 4], torch.sin(torch.tensor(1.0))
    )  # position (row 1, col 0): sin(row * 1)
    assert torch.allclose(
        emb[-1, 0], torch.sin(torch.tensor(3.0))
    )  # extra token: corner (3, 3) of a 4x4 grid


# ------------------------------------------------------------------------------------------------ the autoencoder
def test_masking_applies_to_early_convolution_features_one_token_per_patch():
    encoder = MaskedViTEncoder((64, 64, 3), 8, 32, 1, 2, conv_stages=3)
    assert encoder.grid == 8 and encoder.num_tokens == 64
    tokens, mask, _ = encoder(torch.randn(2, 64, 64, 3), 0.75, torch.Generator().manual_seed(0))
    assert tokens.shape == (2, 1 + 16, 32) and mask.sum(1).tolist() == [48.0, 48.0]
    # a pixel change inside one 8x8 patch reaches only that patch's token before attention mixes: the stem is local
    x = torch.randn(1, 64, 64, 3)
    stem = lambda img: encoder.to_tokens(encoder.stem(img.permute(0, 3, 1, 2))).flatten(2)[0].T  # noqa: E731
    y = x.clone()
    y[0, 40:48, 16:24] += 1.0  # patch (row 5, col 2)
    changed = (stem(x) - stem(y)).abs().sum(1) > 0
    assert (
        changed[5 * 8 + 2] and changed.sum() <= 9
    )  # its own token (and at most the 8 neighbours' receptive fields)


def test_patch_reconstruction_target_is_the_standardised_image_in_patches():
    image = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    target = mae_pixel_target(image, 4)
    expected = (image.float() / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225]
    )
    assert torch.allclose(standardise(image), expected)
    assert torch.allclose(target[1, 5], expected[1, 4:8, 4:8].reshape(-1))
    # the pixel loss is the mean squared error against this target over every patch, masked or not
    agent = MWM(IMAGE16, BOX2, tiny(), seed=0)
    data = batch(2, 2)
    agent.mae_decoder.forward = lambda tokens, restore: (  # a decoder that reproduces the target exactly
        mae_pixel_target(torch.as_tensor(data["image"]).flatten(0, 1), 4),
        torch.zeros(4),
    )
    _, terms = agent.mae_loss(data)
    assert float(terms["mae/pixels"]) == 0.0


def test_reward_token_trains_the_autoencoder_and_the_world_model_never_does():
    agent = MWM(IMAGE16, BOX2, tiny(), seed=0)
    loss, terms = agent.mae_loss(batch())
    assert {"mae/pixels", "mae/reward"} <= set(terms)
    terms["mae/reward"].backward()
    assert agent.mae_decoder.reward.weight.grad.abs().sum() > 0
    assert agent.mae_encoder.cls_token.grad.abs().sum() > 0  # the reward shapes the representation
    agent.nets.zero_grad(set_to_none=True)
    model_loss, _, _ = agent.world_model_loss(batch())
    model_loss.backward()
    assert all(p.grad is None for p in agent.autoencoder.parameters())  # features enter as sg(z)
    assert (
        agent.wm_encoder.embed.weight.grad.abs().sum() > 0
        and agent.wm_decoder.out.weight.grad.abs().sum() > 0
    )
    no_reward = MWM(IMAGE16, BOX2, tiny("mae_reward_pred=false"), seed=0)
    assert "mae/reward" not in no_reward.mae_loss(batch())[1] and no_reward.mae_decoder.reward is None


def test_world_model_reconstructs_the_autoencoders_token_features():
    agent = MWM(IMAGE16, BOX2, tiny(), seed=0)
    data = batch()
    tokens, _ = agent.embed(torch.as_tensor(data["image"]).flatten(0, 1))
    assert tokens.shape == (32, 16 + 1, 16)  # 4x4 tokens + [CLS] (moved last), autoencoder width
    _, terms, seq = agent.world_model_loss(data)
    feat = torch.cat([seq["deter"], seq["stoch"]], -1).flatten(0, 1)
    expected = (agent.wm_decoder(feat) - tokens).square().sum(-1).mean()
    assert torch.allclose(terms["loss/feature"], expected)


def test_kl_term_is_balanced_and_clipped_per_step_below_at_kl_min():
    agent = MWM(IMAGE16, BOX2, tiny("kl_min=50.0"), seed=0)
    _, terms, seq = agent.world_model_loss(batch())
    assert float(terms["loss/kl"].detach()) == 50.0  # every step below the floor: the clip holds it there
    assert terms["loss/kl"].grad_fn is not None
    prior = seq["prior"]
    grads = torch.autograd.grad(terms["loss/kl"], prior, allow_unused=True)[0]
    assert grads is None or torch.all(grads == 0)  # no gradient below the floor
    # above the floor: alpha KL[sg(q) || p] + (1 - alpha) KL[q || sg(p)]
    agent = MWM(IMAGE16, BOX2, tiny("kl_min=0.0", "kl_balance=0.8", "loss_kl=2.0"), seed=0)
    _, terms, seq = agent.world_model_loss(batch())
    kl = agent.rssm.kl(seq["post"], seq["prior"])
    assert torch.allclose(terms["loss/kl"], 2.0 * kl.clamp(max=50.0).mean(), rtol=1e-5)


# ------------------------------------------------------------------------------------------------ behaviour
def test_dynamics_backprop_trains_the_actor_through_the_model_and_reward_norm_follows_its_momentum():
    agent = MWM(IMAGE16, BOX2, tiny("reward_norm_momentum=0.5"), seed=0)
    _, _, seq = agent.world_model_loss(batch())
    actor_loss, critic_loss, _ = agent.behaviour_losses(seq)
    actor_loss.backward(inputs=list(agent.actor.parameters()))
    assert agent.actor.out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in agent.world_model.parameters())
    assert float(agent.reward_mag) != 1.0  # updated towards mean |r|
    off = MWM(IMAGE16, BOX2, tiny("reward_norm_momentum=1.0"), seed=0)
    r = torch.tensor([3.0, -5.0])
    assert torch.allclose(off.normalise_reward(r), r / (1 + 1e-8)) and float(off.reward_mag) == 1.0


# ------------------------------------------------------------------------------------------------ method
@pytest.mark.parametrize("act_space", [BOX2, DISCRETE3], ids=["continuous", "discrete"])
def test_shapes_actions_and_metrics(act_space):
    agent = MWM(IMAGE16, act_space, tiny(), seed=0)
    action, state = agent.policy(obs(2), None, mode="train")
    assert action.shape == ((2, 2) if act_space is BOX2 else (2,))
    metrics = {
        **agent.train_mae_batch(batch()),
        **agent.train_batch(batch() if act_space is BOX2 else _discrete()),
    }
    for key in (
        "loss/mae",
        "mae/pixels",
        "mae/reward",
        "loss/feature",
        "loss/reward",
        "loss/kl",
        "loss/actor",
        "loss/critic",
    ):
        assert np.isfinite(metrics[key]), key


def _discrete() -> dict[str, np.ndarray]:
    data = batch()
    data["action"] = np.random.default_rng(0).integers(0, 3, data["reward"].shape)
    return data


def test_prefill_then_autoencoder_pretraining_then_both_schedules():
    agent = MWM(
        IMAGE16,
        BOX2,
        tiny("prefill=3", "mae_pretrain=4", "pretrain=2", "train_every=4", "train_mae_every=2"),
        seed=0,
    )
    for step in range(1, 4):
        action, state = agent.policy(obs(first=step == 1, seed=step), None, mode="train")
        assert state is None and np.all(np.abs(action) <= 1)
        assert (agent.update(FakeReplay(), step) != {}) == (step == 3)
    # one of each, then mae_pretrain - pretrain autoencoder updates, then pretrain x (autoencoder + world model)
    assert (agent.mae_updates, agent.updates) == (1 + 4, 1 + 2)
    for step in range(4, 12):
        agent.update(FakeReplay(), step)
    assert (agent.mae_updates, agent.updates) == (5 + 4, 3 + 2)  # steps 5, 7, 9, 11 and 7, 11


def test_mae_learning_rate_warms_up_linearly():
    agent = MWM(IMAGE16, BOX2, tiny("mae_warmup=4", "mae_lr=0.001"), seed=0)
    lrs = []
    for _ in range(6):
        agent.train_mae_batch(batch())
        lrs.append(agent.mae_opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.0, 0.00025, 0.0005, 0.00075, 0.001, 0.001])


def test_state_dict_round_trip_continues_identically():
    a = MWM(IMAGE16, BOX2, tiny("reward_norm_momentum=0.9"), seed=0)
    a.train_mae_batch(batch())
    a.train_batch(batch())
    b = MWM(IMAGE16, BOX2, tiny("reward_norm_momentum=0.9"), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_mae_batch(batch(seed=1)) == b.train_mae_batch(batch(seed=1))
    assert a.train_batch(batch(seed=1)) == b.train_batch(batch(seed=1))
    assert np.array_equal(a.policy(obs(), None)[0], b.policy(obs(), None)[0])
    with pytest.raises(MethodError, match="units"):
        MWM(IMAGE16, BOX2, tiny("units=8"), seed=0).load_state_dict(a.state_dict())


def test_defaults_are_the_official_metaworld_config_and_dmc_vision_its_own():
    c = MWMConfig()
    assert (c.mask_ratio, c.patch_size, c.conv_stages, c.mae_dim, c.mae_depth, c.mae_decoder_depth) == (
        0.75,
        8,
        3,
        256,
        4,
        3,
    )
    assert (c.deter, c.stoch, c.classes, c.batch_size, c.batch_length, c.mae_batch, c.mae_length) == (
        1024,
        32,
        32,
        50,
        50,
        32,
        32,
    )
    assert (c.loss_kl, c.actor_ent, c.kl_min, c.reward_norm_momentum) == (1.0, 1e-4, 0.01, 0.99)
    dmc = method_config(MWM, load_protocol("dmc_vision@1"), [])
    assert (dmc.batch_size, dmc.reward_norm_momentum) == (16, 1.0) and DMC_VISION["batch_size"] == 16


def test_parameter_counts_of_the_official_sizes():
    counts = parameter_counts(IMAGE64, gymnasium.spaces.Box(-1, 1, (4,), np.float32), MWMConfig())
    # ViT-style blocks: 12 d^2 + 13 d weights each; the autoencoder's encoder has 4 of width 256
    assert counts["mae_encoder"] > 4 * 12 * 256**2 and counts["rssm"] > 3 * 1024 * 1024 * 2
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_bad_input_names_the_setting():
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in MWM.supports(vector, BOX2)
    with pytest.raises(ConfigError, match="pretrain=3 must not exceed mae_pretrain=2"):
        make_config(MWMConfig, ["preset=tiny", "pretrain=3"])
    with pytest.raises(ConfigError, match="kl_min"):
        make_config(MWMConfig, ["kl_min=100.0"])  # the official clip's ceiling is 100 nats
    with pytest.raises(ConfigError, match="mae_heads"):
        make_config(MWMConfig, ["mae_heads=0"])
    with pytest.raises(ConfigError, match="divisible"):
        MWM(IMAGE16, BOX2, tiny("mae_heads=3"))


def test_recipe_is_the_method_default_on_metaworld_and_names_the_published_curves():
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names, resolve_config
    from wmbench.results import published

    assert recipe_names("mwm") == ["mwm_2022_metaworld@1"]
    r = load_recipe("mwm", "mwm_2022_metaworld@1")
    assert set(r.provenance) == set(r.config) and r.protocol == "metaworld@1"
    assert len(published(protocol="metaworld", source=r.sources[0], method="mwm")) > 0
    config, record = resolve_config(MWM, load_protocol("metaworld@1"), (), r.id)
    assert recipe_differences(config, r) == {} and record["name"] == "mwm_2022_metaworld@1"
    assert recipe_differences(method_config(MWM, load_protocol("metaworld@1"), []), r) == {}
    dmc = recipe_differences(method_config(MWM, load_protocol("dmc_vision@1"), []), r)
    assert dmc == {"batch_size": (16, 50), "reward_norm_momentum": (1.0, 0.99)}
