"""TWM (baselines/twm.py): frame stacking, the dynamics' cached imagination path, balanced sampling, the paper size,
bad inputs, a smoke run on images and a tiny run on the real atari100k@1."""

import gymnasium
import numpy as np
import pytest
import torch
from atari_support import needs_atari, tiny_atari_run
from wmbench_baselines.twm import TWM, TWMConfig, parameter_counts, stack_frames

from wmbench.config import ConfigError, make_config
from wmbench.method import MethodError
from wmbench.nn.distributions import categorical_entropy
from wmbench.replay import Replay
from wmbench.testing import check_method

IMAGE_16 = {"image": gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)}
SMALL_KERNELS = ["kernels=[4, 4]", "dec_kernels=[6, 6]"]


def _tiny(*extra):
    return make_config(TWMConfig, ["preset=tiny", *extra])


def test_stack_frames_repeats_an_episodes_first_frame_and_never_looks_before_it():
    frames = torch.arange(6.0).reshape(1, 6, 1, 1, 1)  # frame t has value t
    is_first = torch.tensor([[False, False, False, True, False, False]])
    out = stack_frames(frames, is_first, 3)[0, :, 0, 0]  # steps 2..5, oldest frame first
    assert out.tolist() == [[0, 1, 2], [3, 3, 3], [3, 3, 4], [3, 4, 5]]


def test_cached_imagination_equals_the_training_pass():
    """The dynamics fed one step at a time with the KV cache (as in imagination) give the same hidden states as the
    full causal pass used for training, also across an episode start."""
    torch.manual_seed(0)
    agent = TWM(IMAGE_16, gymnasium.spaces.Discrete(3), _tiny(*SMALL_KERNELS, "dropout=0.0"), seed=1)
    dyn = agent.dynamics.eval().double()
    B, T, Z = 2, 9, agent.obs_model.z_dim
    reward, z = torch.randn(B, T, dtype=torch.float64), torch.randn(B, T, Z, dtype=torch.float64)
    action = torch.randint(0, 3, (B, T))
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 4] = True
    with torch.no_grad():
        full, _ = dyn(reward, z, action, is_first)
        cache, steps = None, []
        for t in range(T):
            h, cache = dyn(
                reward[:, t : t + 1], z[:, t : t + 1], action[:, t : t + 1], is_first[:, t : t + 1], cache
            )
            steps.append(h)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-10, atol=1e-10)
    # the window is memory_length past steps: the cache never grows past it
    assert cache.length == 3 * (agent.config.memory_length + 1) - 1


def test_balanced_sampling_prefers_unvisited_starts():
    agent = TWM(
        {"vector": gymnasium.spaces.Box(-1, 1, (2,), np.float32)},
        gymnasium.spaces.Discrete(2),
        _tiny("buffer_temperature=0.5", "batch_size=200"),
        seed=0,
    )
    replay = Replay(10**7, seed=0)
    for t in range(40):
        replay.add(
            {
                "vector": np.zeros(2, np.float32),
                "action": np.int64(0),
                "reward": np.float32(0),
                "is_first": t == 0,
                "is_last": False,
                "is_terminal": False,
            }
        )
    agent.visits = np.zeros(40, np.int64)
    agent.visits[:20] = 10  # the first half has been visited often
    starts = agent._sample(replay, 5)["index"][:, 0]
    assert starts.min() >= 20  # weight exp(-10 / 0.5) ~ 2e-9 on the visited half
    assert agent.visits.sum() == 200 + 200  # every drawn start counted


def test_paper_size_parameter_count():
    """The official default config on 64x64x4 grayscale stacks and 6 actions; the paper states no total, so this
    pins the count reported in docs/twm.md."""
    obs = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    counts = parameter_counts(obs, gymnasium.spaces.Discrete(6), TWMConfig())
    # transformer: 10 layers x (4 W^2 attention + W^2 position projection + 2 x 256 x 1024 feed-forward + biases,
    # 2 LayerNorms) with W = 256, plus u and v
    per_layer = 5 * 256 * 256 + 2 * 256 * 1024 + 1024 + 256 + 4 * 256
    transformer = sum(
        p.numel()
        for p in TWM(obs, gymnasium.spaces.Discrete(6), TWMConfig()).dynamics.transformer.parameters()
    )
    assert transformer == 10 * per_layer + 2 * 256
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_bad_inputs_are_clear_errors(tmp_path):
    space = {"vector": gymnasium.spaces.Box(-1, 1, (2,), np.float32)}
    with pytest.raises(ConfigError, match="memory_length=3 is smaller than imag_horizon=4"):
        TWM(space, gymnasium.spaces.Discrete(2), _tiny("memory_length=3"))
    with pytest.raises(ConfigError, match="heads=3 does not divide embed_dim=16"):
        TWM(space, gymnasium.spaces.Discrete(2), _tiny("heads=3"))
    with pytest.raises(MethodError, match="discrete actions only"):
        TWM(space, gymnasium.spaces.Box(-1, 1, (2,), np.float32), _tiny())
    with pytest.raises(ConfigError, match="kernels"):
        TWM(IMAGE_16, gymnasium.spaces.Discrete(2), _tiny())  # 64x64 kernels on 16x16 images
    state = TWM(space, gymnasium.spaces.Discrete(2), _tiny("memory_length=8")).state_dict()
    other = TWM(space, gymnasium.spaces.Discrete(2), _tiny())
    with pytest.raises(MethodError, match="memory_length=8 .* this run uses memory_length=6"):
        other.load_state_dict(state)


def test_image_task_meets_the_contract(tmp_path):
    # with a short pre-training phase, so that its state (done or not, sampling, optimisers) resumes exactly too
    check_method("twm", tmp_path, task="image_discrete",
                 overrides=["preset=tiny", *SMALL_KERNELS, "pretrain_budget=300"])


@needs_atari
def test_tiny_preset_runs_on_atari100k(tmp_path):
    """Through `wmbench run` on the real ALE at the protocol's 64x64 RGB frames (TWM stacks them as grayscale)."""
    tiny_atari_run("twm", tmp_path)


def _prefilled(agent: TWM, steps: int = 60, episode: int = 20) -> Replay:
    """A replay of random IMAGE_16 steps: reward 1 on arriving at every step but an episode's first, episodes of
    `episode` steps ending terminal."""
    rng = np.random.default_rng(0)
    replay = Replay(10**7, seed=0)
    for t in range(steps):
        replay.add({"image": rng.integers(0, 255, (16, 16, 3), np.uint8), "action": np.int64(rng.integers(3)),
                    "reward": np.float32(1.0 if t % episode else 0.0), "is_first": t % episode == 0,
                    "is_last": t % episode == episode - 1, "is_terminal": t % episode == episode - 1})
    agent.acted = steps
    return replay


def _changed(agent: TWM, before: dict) -> set[str]:
    return {name for name, net in agent.nets.items()
            if any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True))}


def _params(agent: TWM) -> dict:
    return {name: [p.detach().clone() for p in net.parameters()] for name, net in agent.nets.items()}


def test_pretraining_runs_once_with_each_phase_s_share_of_the_budget_in_order():
    """The official `_pretrain`: budgets in samples per phase (world-model batch 2 x 6 = 12 samples, actor-critic
    4 x 4 = 16), before the first regular update, once."""
    agent = TWM(IMAGE_16, gymnasium.spaces.Discrete(3), _tiny(*SMALL_KERNELS, "pretrain_budget=240"), seed=0)
    replay = _prefilled(agent)
    calls = []
    for name in ("obs_opt", "dyn_opt", "actor_opt", "critic_opt"):
        opt = getattr(agent, name)
        opt.step = (lambda f, n: lambda *a, **k: (calls.append(n), f(*a, **k))[1])(opt.step, name)
    prefill = agent.config.prefill  # the first update's step
    metrics = agent.update(replay, step=prefill)
    # 240 x 0.6 / 12 = 12 observation updates, 240 x 0.3 / 12 = 6 dynamics updates, 240 x 0.7 / 16 = 10.5 -> 11
    # actor-critic updates, in that order; then the first regular update (all four).
    assert calls[:40] == ["obs_opt"] * 12 + ["dyn_opt"] * 6 + ["actor_opt", "critic_opt"] * 11
    assert sorted(calls[40:]) == ["actor_opt", "critic_opt", "dyn_opt", "obs_opt"]
    assert metrics["pretrain/updates"] == 29 and agent.pretrained and agent.updates == 1
    assert "loss/obs" in metrics and np.isfinite(metrics["pretrain/critic"])
    calls.clear()
    assert "pretrain/updates" not in agent.update(replay, step=prefill + 8)  # once only
    assert calls.count("obs_opt") == 2  # train_every 4: two regular updates


def test_pretraining_phases_train_only_their_networks():
    for shares, trained in (((1, 0, 0), {"obs_model"}), ((0, 1, 0), {"dynamics"}), ((0, 0, 1), {"actor", "critic"})):
        sets = [f"pretrain_{k}_p={v}" for k, v in zip(("obs", "dyn", "ac"), shares, strict=True)]
        agent = TWM(IMAGE_16, gymnasium.spaces.Discrete(3), _tiny(*SMALL_KERNELS, "pretrain_budget=48", *sets),
                    seed=0)
        replay, before = _prefilled(agent), _params(agent)
        agent.pretrain(replay)
        assert _changed(agent, before) == trained, shares


def test_pretraining_fits_the_critic_to_real_returns_and_raises_the_policy_entropy():
    """Reward tanh(1) on every step of 20-step episodes (gamma 0.9): on random images the critic can only learn the
    mean discounted return over an episode's steps, ~4.6 (0.76 x mean of (1 - 0.9^n) / 0.1 over n = 1..20), from its
    start near 0; an actor made far from uniform is pushed back towards maximal entropy."""
    agent = TWM(IMAGE_16, gymnasium.spaces.Discrete(3), _tiny(*SMALL_KERNELS, "pretrain_budget=6400",
                "pretrain_obs_p=0", "pretrain_dyn_p=0", "critic_lr=3e-3", "actor_lr=3e-3", "gamma=0.9"), seed=0)
    replay = _prefilled(agent, steps=200)
    with torch.no_grad():
        agent.actor.out.weight.mul_(20.0)
    data = replay.sample(64, 1 + 3)  # frame stack 4

    def measure() -> tuple[float, float]:
        obs, *_ = agent._tensors(data)
        with torch.no_grad():
            z = agent._z_sample(agent.obs_model.encode(obs), agent.gen_train)
            ent = categorical_entropy(torch.log_softmax(agent.actor(z), -1)).mean().item() / np.log(3)
            return agent.critic(z).mean().item(), ent

    (v0, e0), metrics = measure(), agent.pretrain(replay)
    v1, e1 = measure()
    assert abs(v0) < 1.0 and 3.0 < v1 < 6.5, (v0, v1)
    assert e0 < 0.8 and e1 > e0 + 0.1, (e0, e1)
    assert metrics["pretrain/updates"] == 280  # 6400 x 0.7 / 16


def test_pretraining_shares_must_fit_and_old_checkpoints_are_not_pretrained_mid_run():
    with pytest.raises(ConfigError, match="pretrain_obs_p=0.8 \\+ pretrain_dyn_p=0.3 exceeds 1"):
        TWM(IMAGE_16, gymnasium.spaces.Discrete(3), _tiny(*SMALL_KERNELS, "pretrain_obs_p=0.8"))
    agent = TWM(IMAGE_16, gymnasium.spaces.Discrete(3), _tiny(*SMALL_KERNELS), seed=0)
    state = agent.state_dict()
    assert state["pretrained"] is False
    del state["pretrained"]  # a checkpoint written before pre-training existed, past its prefill
    state["updates"] = 5
    agent.load_state_dict(state)
    assert agent.pretrained
