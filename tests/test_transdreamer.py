"""TransDreamer (baselines/transdreamer.py) and its TSSM (wmbench/nn/tssm.py): the cached acting and imagination
paths reproduce the parallel sequence pass, bad inputs are clear errors, the method meets the contract on pixels
with continuous actions, and a tiny run on the real atari100k@1 ends episodes and trains."""

import gymnasium
import numpy as np
import pytest
import torch
from atari_support import needs_atari, tiny_atari_run
from wmbench_baselines.transdreamer import TransDreamer, TransDreamerConfig, parameter_counts

from wmbench.config import ConfigError, make_config
from wmbench.method import MethodError
from wmbench.nn.tssm import TSSM
from wmbench.testing import check_method


def _tssm():
    torch.manual_seed(0)
    return (
        TSSM(
            embed_dim=12,
            act_dim=3,
            stoch=4,
            classes=4,
            width=16,
            depth=2,
            heads=4,
            ff_dim=24,
            memory=10,
            hidden=16,
            dropout=0.1,
        )
        .eval()
        .float()
    )


def _sequence(B=2, T=7):
    embed = torch.randn(
        B,
        T,
        12,
    )
    action = torch.nn.functional.one_hot(torch.randint(0, 3, (B, T)), 3).float()
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 4] = True
    return embed, action, is_first


def test_step_by_step_acting_reproduces_the_sequence_pass():
    tssm = _tssm()
    embed, action, is_first = _sequence()
    with torch.no_grad():
        seq = tssm.observe(embed, action, is_first, torch.Generator().manual_seed(0))
        cache, deter = (
            tssm.transformer.empty_cache(2),
            torch.zeros(
                2,
                16,
            ),
        )
        for t in range(embed.shape[1]):
            deter = torch.where(is_first[:, t, None], torch.zeros_like(deter), deter)
            torch.testing.assert_close(deter, seq["deter"][:, t], rtol=1e-5, atol=1e-5)
            deter, _, cache = tssm.img_step(cache, seq["stoch"][:, t], action[:, t], None, is_first[:, t])


def test_imagination_from_every_step_sees_exactly_its_history():
    """Imagining one step from (b, t) with the replayed action a_t gives the sequence pass's h_t+1."""
    tssm = _tssm()
    embed, action, is_first = _sequence()
    B, T = is_first.shape
    with torch.no_grad():
        seq = tssm.observe(embed, action, is_first, torch.Generator().manual_seed(0))
        deter, stoch, streams = TSSM.imagination_start(seq)
        torch.testing.assert_close(deter, seq["deter"].reshape(B * T, -1))
        next_deter, _, _ = tssm.img_step(streams, stoch, action.reshape(B * T, -1), None)
    next_deter = next_deter.reshape(B, T, -1)
    inside = ~is_first[:, 1:]  # h_t+1 of the pass is zero at an episode start
    torch.testing.assert_close(next_deter[:, :-1][inside], seq["deter"][:, 1:][inside], rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_clear_errors():
    space = {"vector": gymnasium.spaces.Box(-1, 1, (2,), np.float32)}
    act = gymnasium.spaces.Discrete(2)
    tiny = lambda *extra: make_config(TransDreamerConfig, ["preset=tiny", *extra])  # noqa: E731
    with pytest.raises(ConfigError, match="memory=3 is smaller than imag_horizon=4"):
        TransDreamer(space, act, tiny("memory=3"))
    with pytest.raises(ConfigError, match="memory=8 is smaller than batch_length=12"):
        TransDreamer(space, act, tiny("batch_length=12", "memory=8"))
    with pytest.raises(ConfigError, match="heads=3 does not divide width=16"):
        TransDreamer(space, act, tiny("heads=3"))
    state = TransDreamer(space, act, tiny("memory=20")).state_dict()
    with pytest.raises(MethodError, match="memory=20 .* this run uses memory=16"):
        TransDreamer(space, act, tiny()).load_state_dict(state)


def test_paper_size_parameter_count():
    """The TSSM at the official Atari sizes: 4 pre-norm layers of width 600 (4 W^2 attention + W^2 position projection +
    2 x 600 x 1024 feed-forward + biases + 2 LayerNorms), plus u, v."""
    obs = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    counts = parameter_counts(obs, gymnasium.spaces.Discrete(18), TransDreamerConfig())
    per_layer = 5 * 600 * 600 + 2 * 600 * 1024 + 1024 + 600 + 4 * 600
    agent_tssm = TSSM(4096, 18, 32, 32, 600, 4, 8, 1024, 64, 600)
    assert sum(p.numel() for p in agent_tssm.transformer.parameters()) == 4 * per_layer + 2 * 600
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_image_continuous_task_meets_the_contract(tmp_path):
    check_method("transdreamer", tmp_path, task="image_continuous", overrides=["preset=tiny"])


@needs_atari
def test_tiny_preset_runs_on_atari100k(tmp_path):
    """Through `wmbench run` on the real ALE: discrete actions, 64x64 RGB frames."""
    tiny_atari_run("transdreamer", tmp_path)
