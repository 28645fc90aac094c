"""PlaNet (baselines/planet.py): shapes, one update, free nats, CEM in latent space, determinism, bad input, sizes.

The run-level contract (determinism, exact resume, weights_only checkpoints) is tests/test_method_contract.py."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from pixel_batches import pixel_batch
from wmbench_baselines.planet import PlaNet, PlaNetConfig, parameter_counts, preprocess_image

from wmbench.config import ConfigError, make_config
from wmbench.errors import WmbenchError
from wmbench.method import MethodError
from wmbench.nn.rssm import RSSM

IMAGE16 = {"image": gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)}
IMAGE64 = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
BOX2 = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


def tiny(*overrides: str) -> PlaNetConfig:
    return make_config(PlaNetConfig, ["preset=tiny", *overrides])


def batch(b: int = 4, t: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    return pixel_batch(b, t, seed)


def obs(n: int = 1, first: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
        "is_first": np.full(n, first),
        "is_last": np.zeros(n, bool),
    }


def test_shapes_and_metrics():
    agent = PlaNet(IMAGE16, BOX2, tiny(), seed=0)
    action, state = agent.policy(obs(), None, mode="eval")
    assert action.shape == (1, 2) and action.dtype == np.float32
    deter, stoch, prev = state
    assert deter.shape == (1, 16) and stoch.shape == (1, 4) and prev.shape == (1, 2)
    seq = agent.rssm.observe(agent.encoder(preprocess_image(torch.zeros(2, 5, 16, 16, 3, dtype=torch.uint8), 5, None)),
                             torch.zeros(2, 5, 2), torch.zeros(2, 5, dtype=torch.bool))
    assert seq["deter"].shape == (2, 5, 16) and seq["post"].shape == (2, 5, 8)  # (mean, std) of 4 dims
    assert agent.decoder(torch.cat([seq["deter"], seq["stoch"]], -1)).shape == (2, 5, 16, 16, 3)
    metrics = agent.train_batch(batch())
    assert set(metrics) == {"loss/image", "loss/reward", "kl", "loss/model", "grad_norm", "lr"}
    assert all(np.isfinite(v) for v in metrics.values())


def test_preprocess_is_5_bit_with_dequantisation_noise():
    image = torch.arange(256, dtype=torch.uint8)
    x = preprocess_image(image, 5, torch.Generator().manual_seed(0))
    assert float(x.min()) >= -0.5 and float(x.max()) < 0.5
    bins = torch.floor((x + 0.5) * 32)  # the noise stays inside one of the 32 bins
    assert torch.equal(bins, torch.floor(image.float() / 8))


def test_one_update_lowers_the_loss_on_a_fixed_batch():
    agent = PlaNet(IMAGE16, BOX2, tiny(), seed=0)
    data = batch()
    noise = agent.gen_train.get_state()
    before = agent.train_batch(data)["loss/model"]  # the loss before the step it takes
    agent.gen_train.set_state(noise)  # same dequantisation noise and latent samples
    after = agent.train_batch(data)["loss/model"]
    assert after < before


def test_learning_rate_warms_up_linearly_as_the_released_code():
    """configs.py: lr x min(step / 10000, 1) with the step counting sequences, 50 an update: 0 at the first update,
    lr / 200 x k at update k, lr from update 200 on; the first update leaves the weights as they were."""
    assert PlaNetConfig().lr_warmup == 200 and tiny().lr_warmup == 0  # the tests' preset trains at once
    agent = PlaNet(IMAGE16, BOX2, tiny("lr_warmup=4"), seed=0)
    before = [p.detach().clone() for p in agent.nets.parameters()]
    lrs = [agent.train_batch(batch())["lr"] for _ in range(6)]
    assert lrs == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    agent2 = PlaNet(IMAGE16, BOX2, tiny("lr_warmup=4"), seed=0)
    agent2.train_batch(batch())
    assert all(torch.equal(a, b) for a, b in zip(before, agent2.nets.parameters(), strict=True))


def test_free_nats_clamp_stops_kl_gradients_below_the_threshold():
    # only the KL term: above the KL the clamp is flat (no gradient at all), at 0 free nats the KL is trained
    flat = PlaNet(IMAGE16, BOX2, tiny("image_scale=0", "reward_scale=0", "free_nats=1000"), seed=0)
    m = flat.train_batch(batch())
    assert m["kl"] < 1000 and m["loss/model"] == pytest.approx(1000.0) and m["grad_norm"] == 0.0
    live = PlaNet(IMAGE16, BOX2, tiny("image_scale=0", "reward_scale=0", "free_nats=0"), seed=0)
    m = live.train_batch(batch())
    assert m["loss/model"] == pytest.approx(m["kl"]) and m["grad_norm"] > 0.0


def test_latent_overshooting_option():
    agent = PlaNet(IMAGE16, BOX2, tiny("overshooting=3"), seed=0)
    m = agent.train_batch(batch())
    assert np.isfinite(m["loss/overshooting"]) and m["loss/overshooting"] >= 3.0  # free nats 3 per (t, d) pair
    assert "loss/overshooting" not in PlaNet(IMAGE16, BOX2, tiny(), seed=0).train_batch(batch())
    with pytest.raises(ConfigError, match="overshooting"):
        PlaNet(IMAGE16, BOX2, tiny("overshooting=8"), seed=0)  # must be < batch_length 8


def test_cem_plans_in_bounds_with_the_learned_reward():
    agent = PlaNet(IMAGE16, BOX2, tiny("horizon=4", "population=32", "elites=8", "iterations=3"), seed=0)
    _, (deter, stoch, _) = agent.policy(obs(), None, mode="eval")
    plan = agent.planner.plan((deter, stoch), agent._plan_return, 4, agent.act_space)
    assert plan.shape == (4, 2) and float(plan.abs().max()) <= 1.0
    # PlaNet's CEM settings (std 1, clipped samples, no smoothing, no warm start) find a known optimum
    target = torch.tensor([0.7, -0.4])
    best = agent.planner.plan(None, lambda _, a: -(a - target).square().sum((-2, -1)), 4, agent.act_space)
    assert torch.allclose(best, target.expand(4, 2), atol=0.15)
    # exploration noise only in training, and actions always clipped to [-1, 1]
    agent.schedule.episodes_started = 10
    for seed in range(5):
        action, _ = agent.policy(obs(seed=seed), None, mode="train")
        assert np.all(np.abs(action) <= 1.0)


def test_seed_episodes_act_uniformly_at_random_and_training_waits_for_them():
    agent = PlaNet(IMAGE16, BOX2, tiny("seed_episodes=2"), seed=0)
    action, state = agent.policy(obs(), None, mode="train")
    assert state is None and agent.schedule.episodes_started == 1  # random phase keeps no belief

    class Replay:
        def __len__(self):
            return 100

        def sample(self, b, t):
            return batch(b, t)

    last = {**obs(first=False), "is_last": np.ones(1, bool)}
    agent.policy(last, None, mode="train")
    assert agent.update(Replay(), 10) == {}  # 1 of 2 seed episodes finished: no training yet
    agent.policy(obs(), None, mode="train")
    agent.policy(last, None, mode="train")
    metrics = agent.update(Replay(), 20)
    assert agent.updates == agent.config.updates_per_episode == 2 and "loss/model" in metrics
    assert agent.update(Replay(), 21) == {}  # C updates per collected episode, then wait for the next one


def test_deterministic_under_a_seed():
    def trace(seed):
        agent = PlaNet(IMAGE16, BOX2, tiny(), seed=seed)
        metrics = agent.train_batch(batch())
        action, _ = agent.policy(obs(), None, mode="eval")
        return metrics["loss/model"], action

    (l1, a1), (l2, a2), (l3, a3) = trace(0), trace(0), trace(1)
    assert l1 == l2 and np.array_equal(a1, a2)
    assert l1 != l3 or not np.array_equal(a1, a3)


def test_state_dict_round_trip_continues_identically():
    a = PlaNet(IMAGE16, BOX2, tiny(), seed=0)
    a.train_batch(batch())
    b = PlaNet(IMAGE16, BOX2, tiny(), seed=5)
    state = a.state_dict()
    torch.save(state, buf := __import__("io").BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(batch(seed=1)) == b.train_batch(batch(seed=1))
    other = PlaNet(IMAGE16, BOX2, tiny("deter=8"), seed=0)
    with pytest.raises(MethodError, match="deter"):
        other.load_state_dict(state)


def test_bad_input_names_the_setting():
    with pytest.raises(ConfigError, match="horizon"):
        make_config(PlaNetConfig, ["horizon=12.5"])
    with pytest.raises(ConfigError, match="population"):
        PlaNet(IMAGE16, BOX2, PlaNetConfig(population="1000"))  # a config built in code, bypassing --set
    with pytest.raises(ConfigError, match="horizon"):
        PlaNet(IMAGE16, BOX2, PlaNetConfig(horizon=12.0))
    with pytest.raises(ConfigError, match="elites"):
        PlaNet(IMAGE16, BOX2, tiny("elites=100"))
    # discrete-latent settings on a Gaussian-latent method
    for key in ("classes=32", "unimix=0.01", "latent=categorical"):
        with pytest.raises(ConfigError, match="Gaussian") as e:
            make_config(PlaNetConfig, [key])
        assert key.split("=")[0] in str(e.value)
    # a pixel method on a vector-only protocol
    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in PlaNet.supports(vector, BOX2)
    with pytest.raises(WmbenchError, match="image"):
        PlaNet(vector, BOX2, tiny())
    assert "continuous" in PlaNet.supports(IMAGE16, gymnasium.spaces.Discrete(3))
    odd = {"image": gymnasium.spaces.Box(0, 255, (24, 24, 3), np.uint8)}
    with pytest.raises(ConfigError, match="enc_kernels"):
        PlaNet(odd, BOX2, tiny())
    with pytest.raises(ConfigError, match="decoder kernels"):
        PlaNet(IMAGE16, BOX2, tiny("enc_kernels=4,4", "dec_kernels=5,5"))


def test_gru_core_is_a_standard_gru_cell():
    rssm = RSSM(8, 2, deter=6, hidden=5, stoch=3, latent="gaussian", blocks=1, norm="none", img_layers=1,
                core="gru", act="relu")
    deter, stoch, action = torch.randn(4, 6), torch.randn(4, 3), torch.rand(4, 2) * 2 - 1
    x = torch.relu(rssm.dynin_stoch(stoch) + rssm.dynin_action(action))  # img_in: dense([z, a]), ReLU, no norm
    cell = rssm.gru_cell  # the GRU equations (Cho et al. 2014, as TF's GRUBlockCell and torch's GRUCell)
    gi = x @ cell.weight_ih.T + cell.bias_ih
    gh = deter @ cell.weight_hh.T + cell.bias_hh
    r = torch.sigmoid(gi[:, :6] + gh[:, :6])
    u = torch.sigmoid(gi[:, 6:12] + gh[:, 6:12])
    n = torch.tanh(gi[:, 12:] + r * gh[:, 12:])
    expected = (1 - u) * n + u * deter
    assert torch.allclose(rssm.core(deter, stoch, rssm.action_features(action)), expected, atol=1e-6)


def official_count(action_dim: int) -> dict[str, int]:
    """Hand count of the released PlaNet layers (google-research/planet: networks/conv_ha.py, models/rssm.py with
    TF's GRUBlockCell, networks/basic.py feed_forward) for 64x64x3 images; ours differs only in torch's GRUCell,
    which has a second bias vector (3 x deter) where TF's cell has one."""
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    dense = lambda i, o: i * o + o  # noqa: E731
    encoder = conv(3, 32, 4) + conv(32, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4)
    feat = 200 + 30
    decoder = dense(feat, 1024) + conv(1024, 128, 5) + conv(128, 64, 5) + conv(64, 32, 6) + conv(32, 3, 6)
    gru = dense(400, 400) + dense(400, 200)  # GRUBlockCell: [x, h] -> r, u; [x, r * h] -> candidate
    rssm = dense(30 + action_dim, 200) + gru + dense(200, 200) + 2 * dense(200, 30) + dense(200 + 1024, 200) + 2 * dense(200, 30)
    reward = dense(feat, 100) + dense(100, 100) + dense(100, 1)
    return {"encoder": encoder, "rssm": rssm, "decoder": decoder, "reward": reward}


@pytest.mark.parametrize("action_dim", [1, 2, 6])
def test_paper_size_parameter_count(action_dim):
    ours = parameter_counts(IMAGE64, gymnasium.spaces.Box(-1, 1, (action_dim,), np.float32), PlaNetConfig())
    official = official_count(action_dim)
    assert ours["encoder"] == official["encoder"] == 690_144  # 1024 features from 2x2x256
    assert ours["decoder"] == official["decoder"] == 3_795_555
    assert ours["reward"] == official["reward"] == 33_301
    assert ours["rssm"] == official["rssm"] + 600  # torch GRUCell's second bias
    assert ours["total"] == 5_075_920 + 200 * (action_dim - 1)


def test_recipe_is_the_paper_defaults_and_names_the_published_planet_finals():
    from wmbench.protocols import load_protocol
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names, resolve_config
    from wmbench.results import published

    assert recipe_names("planet") == [f"planet_2019_dmc_vision@{v}" for v in (1, 2, 3)]
    old = load_recipe("planet", "planet_2019_dmc_vision@1")  # repeat 2 for every task; kept for runs made with it
    r = load_recipe("planet", "planet_2019_dmc_vision")  # the latest: the paper's action repeat per task, warm-up
    assert old.protocol == "dmc_vision@1" and r.id == "planet_2019_dmc_vision@3"
    assert r.protocol == "dmc_vision_planet@1" and r.sources == old.sources == ("dreamer_v1:scores/baselines.json",)
    # the same settings on the paper's repeats, plus the learning-rate warm-up the method lacked before
    assert r.config == {**old.config, "lr_warmup": 200} and set(r.provenance) == set(old.provenance) | {"lr_warmup"}
    for protocol in ("dmc_vision", "dmc_vision_planet"):
        rows = published(protocol=protocol, source=r.sources[0], method="planet")
        assert len(rows) == 6 and set(rows.point_type) == {"final_mean"}  # publisher means: no per-seed verdict
    assert set(rows.task) == set(load_protocol(r.protocol).tasks) and set(rows.protocol) == {"dmc_vision_planet"}
    assert "final_mean" in r.description and "cartpole_swingup 8" in r.description
    assert recipe_differences(PlaNetConfig(), r) == {}  # the recipe is the paper: the method's defaults
    config, record = resolve_config(PlaNet, load_protocol("dmc_vision_planet@1"), ["preset=tiny"], r.id)
    assert record["name"] == r.id and config.batch_size == 4
    agent = PlaNet(IMAGE64, BOX2, config, seed=0)
    assert agent.encoder.out_dim == 2 * 2 * config.depth * 8  # 64x64 -> a 2x2 map of depth x 8 channels


def test_policy_accepts_views_with_negative_strides():
    # DMC's renderer hands out flipped views; torch cannot wrap negative strides without a copy
    agent = PlaNet(IMAGE16, BOX2, tiny(), seed=0)
    flipped = {**obs(), "image": obs()["image"][:, ::-1]}
    action, _ = agent.policy(flipped, None, mode="eval")
    assert action.shape == (1, 2)
    data = batch()
    data["image"] = data["image"][:, :, ::-1]
    assert np.isfinite(agent.train_batch(data)["loss/model"])
