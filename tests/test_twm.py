"""TWM (baselines/twm.py): frame stacking, the dynamics' cached imagination path, balanced sampling, the paper size,
bad inputs, and a smoke run on images."""

import gymnasium
import numpy as np
import pytest
import torch
from wmbench_baselines.twm import TWM, TWMConfig, parameter_counts, stack_frames

from wmbench.config import ConfigError, make_config
from wmbench.method import MethodError
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
    check_method("twm", tmp_path, task="image_discrete", overrides=["preset=tiny", *SMALL_KERNELS])
