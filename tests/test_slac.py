"""SLAC (baselines/slac.py) and the shared SAC pieces (wmbench/nn/sac.py): the temperature update's direction, the
latent model's KL term, the actor's history in training and acting, what one update trains, the schedule, bad
input and the recipe, the model pre-training in slices and its exact resume from a checkpoint inside it. The
run-level contract (determinism, exact resume, weights_only) is tests/test_method_contract.py; the learning check is
tests/test_slac_learning.py (slow)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from test_planet import BOX2, IMAGE16, IMAGE64, batch, obs  # the same fake pixel batches as PlaNet's tests
from wmbench_baselines.slac import SLAC, SLACConfig, conv_stack, history

from wmbench.config import ConfigError, make_config
from wmbench.method import MethodError
from wmbench.nn.sac import TanhGaussianActor, TwinQ, target_entropy, temperature_loss


def tiny(*overrides: str) -> SLACConfig:
    return make_config(SLACConfig, ["preset=tiny", *overrides])


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


# ---------------------------------------------------------------- SAC temperature (wmbench.nn.sac)


@pytest.mark.parametrize("entropy, direction", [(5.0, -1), (-6.0, +1)])
def test_temperature_loss_moves_log_alpha_towards_the_target_entropy(entropy, direction):
    # target -2 (|A| = 2): a policy with entropy above it needs less entropy bonus (alpha down), below it more
    target = target_entropy(2)
    assert target == -2.0
    log_alpha = torch.zeros((), requires_grad=True)
    log_prob = torch.full((64,), -entropy)  # E[-log pi] = entropy
    temperature_loss(log_alpha, log_prob, target).backward()
    assert math.isclose(float(log_alpha.grad), entropy - target, rel_tol=1e-6)  # dJ/dlog_alpha = H - H_target
    opt = torch.optim.SGD([log_alpha], lr=0.1)
    opt.step()
    assert np.sign(float(log_alpha.detach())) == direction


def test_target_entropy_of_the_wrong_sign_is_refused_with_the_fix():
    for bad in (1.0, 0.0):
        with pytest.raises(ValueError, match="target_entropy_per_dim=-1.0"):
            target_entropy(3, bad)
        with pytest.raises(ConfigError, match=f"slac: .*got {bad!r}.*target_entropy_per_dim=-1.0"):
            make_config(SLACConfig, [f"target_entropy_per_dim={bad}"])
    assert target_entropy(6) == -6.0 and target_entropy(6, -0.5) == -3.0


def test_actor_samples_in_bounds_with_consistent_log_density_and_twin_q_targets_are_frozen():
    torch.manual_seed(0)
    actor = TanhGaussianActor(5, 2, units=8)
    with torch.no_grad():
        actor.net.out.bias[:2].fill_(30.0)  # pre-tanh means far outside: actions must still lie in (-1, 1]
    action, logp = actor.sample(torch.zeros(100, 5), torch.Generator().manual_seed(0))
    assert action.shape == (100, 2) and logp.shape == (100,) and torch.all(action.abs() <= 1)
    assert torch.all(torch.isfinite(logp))
    critic = TwinQ(5, 2, units=8)
    q1, q2 = critic(torch.randn(3, 5), torch.randn(3, 2))
    assert q1.shape == (3,) and not torch.equal(q1, q2)  # two independently initialised critics
    target = critic.target_copy()
    assert all(not p.requires_grad for p in target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), critic.parameters(), strict=True))


def test_slac_temperature_update_follows_the_policy_entropy():
    # the method's own update: an actor forced to tanh(N(0, 1)) (about +1.1 nats) or to a near-deterministic
    # Gaussian (std e^-20) has entropy above (below) the target -|A| = -2
    for log_std, direction in ((0.0, -1), (-20.0, +1)):
        agent = SLAC(IMAGE16, BOX2, tiny(), seed=0)
        with torch.no_grad():
            agent.actor.net.out.weight.zero_()
            agent.actor.net.out.bias.copy_(torch.tensor([0.0, 0.0, log_std, log_std]))
        before = float(agent.log_alpha.detach())
        metrics = agent.train_actor_critic(batch(4, 4))
        assert (metrics["entropy"] > -2.0) == (direction < 0)
        assert np.sign(float(agent.log_alpha.detach()) - before) == direction


# ---------------------------------------------------------------- the latent model


def set_gaussian_head(head, mean: float, std: float) -> None:
    """Make a GaussianHead output (mean, std) whatever its input."""
    with torch.no_grad():
        head.net.out.weight.zero_()
        half = head.net.out.bias.shape[0] // 2
        head.net.out.bias[:half].fill_(mean)
        head.net.out.bias[half:].fill_(math.log(math.expm1(std - 1e-5)))  # softplus^-1 of std - 1e-5


def test_kl_is_zero_when_posterior_equals_prior_and_positive_otherwise():
    agent = SLAC(IMAGE16, BOX2, tiny(), seed=0)
    model = agent.model
    data = batch(3, 6)
    data["is_first"][1, 3] = True  # an episode start inside a window: the prior restarts at N(0, I) there
    # q(z1_1 | x_1) = p(z1_1) = N(0, I) and q(z1_t+1 | x, z2, a) = p(z1_t+1 | z2, a) = N(0, I) for every input
    for head in (model.z1_first_post, model.z1_post, model.z1_prior):
        set_gaussian_head(head, 0.0, 1.0)
    kl = model.kl(data, torch.Generator().manual_seed(0))
    assert kl.shape == (3, 6) and torch.allclose(kl, torch.zeros_like(kl), atol=1e-5)
    # a posterior that differs after first steps only: KL > 0 exactly there
    set_gaussian_head(model.z1_post, 0.5, 1.0)
    kl = model.kl(data, torch.Generator().manual_seed(0))
    first = torch.as_tensor(data["is_first"]).clone()
    first[:, 0] = True
    assert torch.allclose(kl[first], torch.zeros(()), atol=1e-5)
    assert torch.allclose(kl[~first], torch.full((), 0.5 * 0.25 * model.latent1), atol=1e-4)  # 0.5 mean^2 per dim
    # a first-step posterior that differs from N(0, I): KL > 0 at first steps (std 2: 0.5 (4 - 1 - ln 4) per dim)
    set_gaussian_head(model.z1_first_post, 0.0, 2.0)
    kl = model.kl(data, torch.Generator().manual_seed(0))
    assert torch.allclose(kl[first], torch.full((), 0.5 * (4 - 1 - math.log(4)) * model.latent1), atol=1e-4)
    loss, terms, _ = model.loss(data, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and float(terms["model/kl_z1"].detach()) > 0


def test_conv_stack_is_the_papers_on_64x64_and_shrinks_for_small_images():
    enc, dec = conv_stack(64, 32)
    assert enc == {"kernels": (5, 3, 3, 3, 4), "strides": (2, 2, 2, 2, 1), "paddings": (2, 1, 1, 1, 0),
                   "channels": (32, 64, 128, 256, 256)}
    assert dec == {"kernels": (4, 3, 3, 3, 5), "strides": (1, 2, 2, 2, 2), "paddings": (0, 1, 1, 1, 2),
                   "channels": (256, 128, 64, 32)}
    agent = SLAC(IMAGE64, BOX2, SLACConfig(), seed=0)
    assert agent.model.encoder.out_dim == 256  # 64x64 -> 1x1x256 features
    z = torch.zeros(2, 3, 32 + 256)
    assert agent.model.decoder(z).shape == (2, 3, 64, 64, 3)
    with pytest.raises(ConfigError, match="24x24"):
        SLAC({"image": gymnasium.spaces.Box(0, 255, (24, 24, 3), np.uint8)}, BOX2, tiny())


# ---------------------------------------------------------------- acting and the actor's history


@pytest.mark.parametrize("padding", ["zeros", "first"])
def test_policy_history_equals_the_training_history_across_an_episode_start(padding):
    c = tiny("initial_collect_steps=0", "sequence_length=4", f"history_padding={padding}")
    agent = SLAC(IMAGE16, BOX2, c, seed=0)
    firsts = [True, False, False, True, False]  # an episode of 3 steps, then a new one
    seen = []  # the actor's inputs, as `policy` builds them
    sample = agent.actor.sample
    agent.actor.sample = lambda inp, gen: (seen.append(inp.clone()), sample(inp, gen))[1]
    images, actions, state = [], [], None
    for t, first in enumerate(firsts):
        o = obs(first=first, seed=t)
        action, state = agent.policy(o, state, mode="train")
        assert action.shape == (1, 2) and np.all(np.abs(action) <= 1)
        images.append(o["image"][0])
        actions.append(action[0])
    inputs = seen
    with torch.no_grad():
        feat = agent.model.encode(np.stack(images)[None])
    action = torch.as_tensor(np.stack(actions))[None]
    is_first = torch.tensor([firsts])
    for t in (3, 4):  # windows ending at the new episode's first and second step
        window = slice(t - 3, t + 1)
        expected = history(feat[:, window], action[:, window], is_first[:, window], padding)
        assert torch.allclose(inputs[t], expected, atol=1e-6)
    # the new episode's first step sees nothing of the old one: zero actions, and zero features or its own repeated
    n_feat = feat.shape[-1]
    assert torch.count_nonzero(inputs[3][:, 4 * n_feat:]) == 0
    pad = torch.zeros(3 * n_feat) if padding == "zeros" else feat[0, 3].repeat(3)
    assert torch.allclose(inputs[3][0, : 3 * n_feat], pad, atol=1e-6)
    # the first acting step (state None) is an episode start, also after the random phase (not an episode start)
    _, state = agent.policy(obs(first=False, seed=9), None, mode="train")
    first = agent.model.encode(obs(first=False, seed=9)["image"])
    assert torch.allclose(state[0][0, :3], torch.zeros(3, n_feat) if padding == "zeros" else first.repeat(3, 1),
                          atol=1e-6)


def test_history_padding_before_an_episode_start_is_the_released_codes_with_first():
    # a window of 4 steps whose last episode starts at step 2: steps 0-1 belong to the previous episode
    feat = torch.arange(1.0, 5.0)[None, :, None].repeat(1, 1, 2)  # features 1, 2, 3, 4 (2 dims each)
    action = torch.arange(10.0, 14.0)[None, :, None]  # actions 10 ... 13 (13: chosen at the last step, not input)
    is_first = torch.tensor([[False, False, True, False]])
    zeros = history(feat, action, is_first, "zeros")
    first = history(feat, action, is_first, "first")
    assert zeros.tolist() == [[0, 0, 0, 0, 3, 3, 4, 4, 0, 0, 12]]
    # released slac_agent.py filter_before_first_step: earlier steps take the start's observation, actions zeros
    assert first.tolist() == [[3, 3, 3, 3, 3, 3, 4, 4, 0, 0, 12]]
    inside = torch.zeros(1, 4, dtype=torch.bool)  # no start inside (or only at step 0): nothing is padded
    assert history(feat, action, inside, "first").tolist() == history(feat, action, inside).tolist() == [
        [1, 1, 2, 2, 3, 3, 4, 4, 10, 11, 12]]
    with pytest.raises(ConfigError, match=r"history_padding 'last' must be one of \('zeros', 'first'\)"):
        tiny("history_padding=last")


def short_episodes_replay(length: int = 4, episodes: int = 30, seed: int = 0):
    """A replay of `episodes` episodes of `length` steps of 16x16 frames (step i of the stream has pixel value i % 256)."""
    from wmbench.replay import Replay

    replay = Replay(10**7, seed=seed)
    for i in range(length * episodes):
        t = i % length
        replay.add({"image": np.full((16, 16, 3), i % 256, np.uint8), "action": np.zeros(2, np.float32),
                    "reward": np.float32(0.0), "is_first": t == 0, "is_last": t == length - 1,
                    "is_terminal": False})
    return replay


@pytest.mark.parametrize("resample", [False, True])
def test_windows_crossing_an_episode_end_are_drawn_again_as_the_released_code_filters_them(resample):
    # tiny: tau 3, windows of 4 steps; episodes of 4 steps, so 1 in 4 windows ends on an episode's first step
    agent = SLAC(IMAGE16, BOX2, tiny(f"resample_boundary_windows={str(resample).lower()}"), seed=0)
    replay = short_episodes_replay()
    data = agent.sample(replay, 256)
    assert data["image"].shape[:2] == (256, 4)
    last_starts = data["is_first"][:, -1]
    inner_starts = data["is_first"][:, 1:-1].any(1)
    if resample:  # released train_eval.py: windows kept only when their last transition lies in one episode
        assert not last_starts.any()
    else:
        assert 30 < last_starts.sum() < 100  # about a quarter, kept (their critic term masked)
    assert inner_starts.any()  # an episode start before the last step does not drop the window (released too)
    # the windows are still consecutive steps of the stream (pixel value = step index)
    pixel = data["image"][:, :, 0, 0, 0].astype(int)
    assert np.all(np.diff(pixel, axis=1) % 256 == 1)
    # deterministic under the replay's seed
    again = agent.sample(short_episodes_replay(), 256)
    assert all(np.array_equal(data[k], again[k]) for k in data)


def test_without_a_valid_window_the_resampling_stops_and_the_critic_mask_remains():
    agent = SLAC(IMAGE16, BOX2, tiny("sequence_length=1", "resample_boundary_windows=true"), seed=0)
    data = agent.sample(short_episodes_replay(length=1, episodes=8), 4)  # every step starts an episode
    assert data["is_first"][:, -1].all()
    assert np.isfinite(agent.train_actor_critic(data)["loss/critic"])


def test_shapes_metrics_and_what_each_update_trains():
    agent = SLAC(IMAGE16, BOX2, tiny(), seed=0)
    action, state = agent.policy(obs(), None, mode="eval")
    assert action.shape == (1, 2) and action.dtype == np.float32 and state[0].shape == (1, 3, 32)
    model, actor, critic, target = (params(agent.model), params(agent.actor), params(agent.critic),
                                    params(agent.critic_target))
    metrics = agent.train_model(batch(4, 4))
    assert {"loss/model", "model/image_ll", "model/reward_ll", "model/kl_z1"} <= set(metrics)
    assert changed(model, agent.model) and not changed(actor, agent.actor) and not changed(critic, agent.critic)
    model = params(agent.model)
    metrics = agent.train_actor_critic(batch(4, 4))
    assert {"loss/critic", "loss/actor", "loss/alpha", "alpha", "entropy", "q"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    # SAC trains actor and critics; the model only through its own loss; the targets move by Polyak averaging
    assert not changed(model, agent.model) and changed(actor, agent.actor) and changed(critic, agent.critic)
    assert changed(target, agent.critic_target)
    for t, new, old in zip(target, agent.critic_target.parameters(), agent.critic.parameters(), strict=True):
        assert torch.allclose(new, 0.995 * t + 0.005 * old, atol=1e-6)


class BatchReplay:
    """A stand-in replay of 100 steps whose windows are `batch`'s."""

    total = 100

    def __len__(self):
        return 100

    def sample(self, b, t):
        return batch(b, t)


def test_random_phase_then_pretraining_then_updates_every_step():
    # pretrain_updates_per_step 0 (the default, the released schedule): the whole pre-training in one update call
    agent = SLAC(IMAGE16, BOX2, tiny("initial_collect_steps=3", "initial_model_train_steps=4"), seed=0)
    Replay = BatchReplay

    for step in range(1, 4):
        action, state = agent.policy(obs(first=step == 1), None, mode="train")
        assert state is None  # uniform random actions, no history kept
        assert agent.update(Replay(), step) == {}
    _, state = agent.policy(obs(first=False), None, mode="train")
    assert state is not None
    metrics = agent.update(Replay(), 4)
    assert agent.pretrained and "pretrain/loss/model" in metrics and "loss/critic" in metrics and agent.updates == 1
    agent.policy(obs(first=False), state, mode="train")
    assert "pretrain/loss/model" not in agent.update(Replay(), 5) and agent.updates == 2


def test_pretraining_runs_in_slices_while_the_agent_acts_at_random():
    c = tiny("initial_collect_steps=3", "initial_model_train_steps=5", "pretrain_updates_per_step=2")
    agent = SLAC(IMAGE16, BOX2, c, seed=0)
    for step in range(1, 4):  # the random phase
        agent.policy(obs(first=step == 1), None, mode="train")
        assert agent.update(BatchReplay(), step) == {}
    _, state = agent.policy(obs(first=False), None, mode="train")  # the first actor step, as before slices existed
    assert state is not None
    done = []
    for step in range(4, 7):
        metrics = agent.update(BatchReplay(), step)
        done.append(agent.pretrain_updates)
        assert "pretrain/loss/model" in metrics
        if step < 6:  # still pre-training: no actor-critic update, and the next action is uniformly random
            assert "loss/critic" not in metrics and agent.updates == 0 and agent.pretraining
            _, state = agent.policy(obs(first=False), state, mode="train")
            assert state is None
    # 2 + 2 + 1 updates; the last slice's call goes on to the first model and actor-critic update, as one call did
    assert done == [2, 4, 5] and agent.pretrained and not agent.pretraining
    assert "loss/critic" in metrics and agent.updates == 1
    assert agent.state_dict()["counters"]["pretrain_updates"] == 5
    _, state = agent.policy(obs(first=False), None, mode="train")
    assert state is not None  # the actor acts again (its history starts as at an episode start)


def test_pretraining_windows_come_from_the_random_phase_only():
    # `before`: windows of the steps before that global index; the replay has grown past it (the steps acted during
    # the pre-training). Pixel value = step index (short_episodes_replay).
    for resample in (False, True):
        agent = SLAC(IMAGE16, BOX2, tiny(f"resample_boundary_windows={str(resample).lower()}"), seed=0)
        data = agent.sample(short_episodes_replay(episodes=30), 256, before=40)
        pixel = data["image"][:, :, 0, 0, 0].astype(int)
        assert pixel.max() == 39 and pixel.min() == 0 and "index" not in data
        assert np.all(np.diff(pixel, axis=1) == 1)
        assert not resample or not data["is_first"][:, -1].any()
    # while the replay holds no later step, the draws are those without `before` (one-slice runs are unchanged)
    agent = SLAC(IMAGE16, BOX2, tiny(), seed=0)
    with_limit = agent.sample(short_episodes_replay(episodes=10), 64, before=40)
    without = agent.sample(short_episodes_replay(episodes=10), 64)
    assert all(np.array_equal(with_limit[k], without[k]) for k in without)
    # pre-training data evicted from the replay: the error names the fix
    from wmbench.replay import Replay

    small = Replay(16 * 16 * 3 * 20, seed=0)  # about 20 steps
    for i in range(100):
        small.add({"image": np.zeros((16, 16, 3), np.uint8), "action": np.zeros(2, np.float32),
                   "reward": np.float32(0.0), "is_first": i == 0, "is_last": False, "is_terminal": False})
    with pytest.raises(MethodError, match="pretrain_updates_per_step"):
        agent.sample(small, 4, before=40)


# fake@1 image_continuous: 25-agent-step episodes; 40 random agent steps, then 60 pre-training updates, one per agent
# step (agent steps 39-98), then the usual updates
SLICED = ["preset=tiny", "initial_model_train_steps=60", "pretrain_updates_per_step=1"]


def test_a_run_stopped_inside_the_pretraining_resumes_it_exactly(tmp_path):
    from wmbench.runner import load_checkpoint, run
    from wmbench.testing import check_method

    # check_method's checkpoints come at episode ends after every 60 agent steps: its first at agent step 75, and its
    # injected crash 240 // 20 = 12 agent steps later (87), both inside the pre-training. The resumed run's
    # scores.csv and metrics.jsonl must equal the uninterrupted run's byte for byte (it asserts that).
    result = check_method("slac", tmp_path / "contract", protocol="fake@1", task="image_continuous",
                          overrides=SLICED, steps=240, checkpoint_every=60)
    rows = {r["step"]: r for r in map(json.loads, open(f"{result['run_dir']}/metrics.jsonl"))}  # every 4 agent steps
    for step in (76, 88):  # the log rows covering the checkpoint and the crash: pre-training, no actor-critic yet
        assert "pretrain/loss/model" in rows[step] and "loss/critic" not in rows[step]
    assert "loss/critic" in rows[100] and "pretrain/loss/model" not in rows[104]

    # the checkpoint holds the pre-training's progress: a run paused inside it, then continued, ends as the others
    kwargs = dict(overrides=SLICED, steps=240, checkpoint_every=60, progress=False)
    paused = run("slac", "fake@1", "image_continuous", 0, tmp_path / "paused", pause_at=50, **kwargs)
    assert paused.status == "paused"
    counters = load_checkpoint(paused.run_dir / "checkpoint")["method"]["counters"]
    assert 0 < counters["pretrain_updates"] < 60 and counters["pretrain_data_end"] > 40
    done = run("slac", "fake@1", "image_continuous", 0, tmp_path / "paused", **kwargs)
    assert done.status == "finished" and done.resumed
    assert load_checkpoint(done.run_dir / "checkpoint")["method"]["counters"]["pretrain_updates"] == 60
    for name in ("scores.csv", "metrics.jsonl"):
        assert (done.run_dir / name).read_bytes() == (Path(result["run_dir"]) / name).read_bytes()


def test_state_dict_round_trip_continues_identically():
    a = SLAC(IMAGE16, BOX2, tiny(), seed=0)
    a.train_model(batch(4, 4))
    a.train_actor_critic(batch(4, 4))
    b = SLAC(IMAGE16, BOX2, tiny(), seed=5)
    torch.save(a.state_dict(), buf := io.BytesIO())
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_model(batch(4, 4, seed=1)) == b.train_model(batch(4, 4, seed=1))
    assert a.train_actor_critic(batch(4, 4, seed=2)) == b.train_actor_critic(batch(4, 4, seed=2))
    with pytest.raises(MethodError, match="units"):
        SLAC(IMAGE16, BOX2, tiny("units=8"), seed=0).load_state_dict(a.state_dict())


# ---------------------------------------------------------------- bad input and the recipe


def test_a_vector_only_protocol_is_refused_with_the_reason(tmp_path):
    from wmbench.runner import run

    vector = {"vector": gymnasium.spaces.Box(-np.inf, np.inf, (5,), np.float32)}
    assert "vector-only" in SLAC.supports(vector, BOX2) and "dmc_vision@1" in SLAC.supports(vector, BOX2)
    with pytest.raises(MethodError, match="vector-only"):
        run("slac", "fake@1", "vector_continuous", 0, tmp_path, overrides=["preset=tiny"], steps=10, progress=False)
    with pytest.raises(MethodError, match="continuous actions"):
        SLAC(IMAGE16, gymnasium.spaces.Discrete(3), tiny())


def test_recipe_is_the_paper_defaults_and_names_the_published_slac_curves():
    from wmbench.protocols import load_protocol
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names, resolve_config
    from wmbench.results import published

    assert recipe_names("slac") == ["slac_2020_dmc_vision@1", "slac_2020_dmc_vision@2", "slac_2020_dmc_vision@3"]
    old = load_recipe("slac", "slac_2020_dmc_vision@1")  # repeat 2 for every task; kept for runs made with it
    v2 = load_recipe("slac", "slac_2020_dmc_vision@2")  # the curves' repeats; kept for runs made with it
    r = load_recipe("slac", "slac_2020_dmc_vision")  # the latest: and the released code's episode boundaries
    assert old.protocol == "dmc_vision@1" and r.id == "slac_2020_dmc_vision@3" and len(r.sources) == 6
    assert r.protocol == v2.protocol == "dmc_vision_slac@1" and r.sources == v2.sources == old.sources
    assert v2.config == old.config and v2.provenance == old.provenance  # the same settings on the curves' repeats
    # version 3 adds the released code's boundary handling, nothing else (the earlier versions mean what they meant)
    assert r.config == {**v2.config, "history_padding": "first", "resample_boundary_windows": True}
    assert recipe_differences(SLACConfig(), v2) == {}  # versions 1 and 2: the method's defaults
    assert recipe_differences(SLACConfig(), r) == {
        "history_padding": ("zeros", "first"), "resample_boundary_windows": (False, True)}
    # the temperature as released slac_agent.py starts it: log alpha 0 (alpha 1), target entropy -|A|
    for recipe in (old, v2, r):
        assert recipe.config["init_alpha"] == 1.0 and recipe.config["target_entropy_per_dim"] == -1.0
    assert "not checked" not in r.provenance["init_alpha"] + r.provenance["target_entropy_per_dim"]
    agent = SLAC(IMAGE16, gymnasium.spaces.Box(-1.0, 1.0, (6,), np.float32),
                 resolve_config(SLAC, load_protocol(r.protocol), ["preset=tiny"], r.id)[0])
    assert agent.target_entropy == -6.0 and float(agent.log_alpha.detach()) == 0.0
    assert agent.config.history_padding == "first" and agent.config.resample_boundary_windows
    rows = published(protocol="dmc_vision", method="slac")
    rows = rows[rows.source.str.startswith("slac:")]  # (Dreamer v1's baselines.json also holds SLAC final means)
    assert set(rows.source) == set(r.sources) and rows.task.nunique() == 6
    assert rows.groupby("task").seed.nunique().eq(10).all()
    ours = published(protocol=r.protocol, method="slac")  # the same rows, read through published_name
    assert set(ours.source) == set(r.sources) and len(ours) == len(rows) and set(ours.protocol) == {"dmc_vision_slac"}
    protocol = load_protocol(r.protocol)
    assert {t: protocol.repeat_for(t) for t in sorted(protocol.tasks)} == {
        "ball_in_cup_catch": 4, "cartpole_swingup": 4, "cheetah_run": 4, "finger_spin": 1, "reacher_easy": 4,
        "walker_walk": 2,
    }  # the action_repeat column of each source CSV
    config, record = resolve_config(SLAC, protocol, ["preset=tiny"], r.id)
    assert record["name"] == r.id and config.batch_size == 4
    # the quoted figures at 50k env steps (mean over the 10 published trials)
    at_50k = rows[rows.env_step == 50000].groupby("task").score.mean()
    assert round(at_50k["cartpole_swingup"]) == 228 and round(at_50k["walker_walk"]) == 233


def test_contract_with_the_released_boundary_handling(tmp_path):
    from wmbench.testing import check_method

    # the keys of recipe slac_2020_dmc_vision@3 keep the run deterministic and its resume exact (the resampled
    # windows come from the replay's own generator, saved with it)
    check_method("slac", tmp_path, protocol="fake@1", task="image_continuous",
                 overrides=["preset=tiny", "history_padding=first", "resample_boundary_windows=true"])
