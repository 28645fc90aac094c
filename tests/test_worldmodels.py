"""World Models (baselines/worldmodels.py) and its shared blocks (wmbench/nn/vae.py, mdn.py, evolution.py):
V reconstructs, M learns a likelihood, CMA-ES resumes exactly, the paper's sizes, the method contract, bad input,
the CarRacing and VizDoom adapters, the paper-table verdict, candidate rollouts on task pools (the same numbers
inline, on local workers and on Ray; a dead worker named by its candidate). No learning check yet: see
docs/worldmodels.md."""

from __future__ import annotations

import importlib.util
import math
import os
import signal

import gymnasium
import numpy as np
import pytest
import torch

from wmbench.config import ConfigError
from wmbench.envs import SuiteNotInstalled
from wmbench.method import get_method, method_config
from wmbench.nn.evolution import CMAES, EvolutionError
from wmbench.nn.mdn import MDN, MDNRNN
from wmbench.nn.networks import count_params
from wmbench.nn.vae import ConvVAE
from wmbench.protocols import load_protocol
from wmbench.runner import run
from wmbench.seeding import derive_seed
from wmbench.testing import check_method

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
HAS_CMA = importlib.util.find_spec("cma") is not None
needs_cma = pytest.mark.skipif(not HAS_CMA, reason="cma not installed: pip install 'wmbench[worldmodels]'")


def squares(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 frames [n, size, size, 3] of an orange 5x5 square at a random place on black."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, size - 5, 2)
        frames[i, y:y + 5, x:x + 5] = (255, 200, 80)
    return torch.as_tensor(frames)


# ---------------------------------------------------------------------------------------------- V
def test_vae_reconstructs_small_generated_frames():
    torch.manual_seed(0)
    frames = squares(256)
    vae = ConvVAE((16, 16, 3), z_dim=8, depth=8)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    target = ConvVAE.pixels(frames)
    mean_image_error = (target - target.mean(0)).square().sum((-3, -2, -1)).mean().item()

    def error() -> float:
        with torch.no_grad():
            return (vae.decode(vae.encode(frames)[0]) - target).square().sum((-3, -2, -1)).mean().item()

    before = error()
    for _ in range(600):
        batch = frames[torch.randint(0, len(frames), (32,), generator=gen)]
        loss, _ = vae.loss(batch, gen, kl_tolerance=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = error()
    # it reconstructs each frame, not the average frame: well below the error of the mean image
    assert after < 0.5 * mean_image_error, (before, after, mean_image_error)
    assert after < 0.25 * before


def test_vae_parameter_counts_are_the_papers():
    # Ha & Schmidhuber 2018, parameter tables: V 4,348,547 (CarRacing, z 32) and 4,446,915 (Doom, z 64)
    assert count_params(ConvVAE((64, 64, 3), z_dim=32)) == 4_348_547
    assert count_params(ConvVAE((64, 64, 3), z_dim=64)) == 4_446_915


def test_vae_kl_tolerance_floors_the_kl_term():
    vae = ConvVAE((16, 16, 3), z_dim=4, depth=4)
    frames = squares(8)
    _, terms = vae.loss(frames, torch.Generator().manual_seed(0), kl_tolerance=0.5)
    loss, _ = vae.loss(frames, torch.Generator().manual_seed(0), kl_tolerance=0.5)
    # a fresh VAE's KL is far below 0.5 x 4 nats: the loss holds the floor instead
    assert terms["vae/kl"].item() < 2.0
    assert loss.item() == pytest.approx(terms["vae/recon"].item() + 2.0, rel=1e-5)


# ---------------------------------------------------------------------------------------------- M
def test_mdn_log_prob_is_the_mixture_density():
    torch.manual_seed(0)
    mdn = MDN(6, 3, mixtures=4)
    params = mdn(torch.randn(5, 6))
    x = torch.randn(5, 3)
    logpi, mean, logstd = params
    expected = torch.logsumexp(logpi + torch.distributions.Normal(mean, logstd.exp()).log_prob(x[..., None]), -1)
    torch.testing.assert_close(MDN.log_prob(params, x), expected)
    assert torch.allclose(logpi.exp().sum(-1), torch.ones(5, 3))


def test_mdn_temperature_sharpens_and_widens():
    # two components: weight 0.9 at -3, 0.1 at +3, std 0.1
    logpi = torch.log(torch.tensor([0.9, 0.1])).expand(20000, 1, 2)
    mean = torch.tensor([-3.0, 3.0]).expand(20000, 1, 2)
    logstd = torch.full((20000, 1, 2), math.log(0.1))
    gen = torch.Generator().manual_seed(0)
    cold = MDN.sample((logpi, mean, logstd), 0.5, gen)
    warm = MDN.sample((logpi, mean, logstd), 2.0, gen)
    share = lambda s: (s > 0).float().mean().item()  # noqa: E731
    assert share(cold) < 0.05 and 0.15 < share(warm) < 0.35  # 0.1 -> 0.1^2/(0.9^2+0.1^2)=0.012 and 0.25
    assert cold[cold < 0].std().item() == pytest.approx(0.1 * math.sqrt(0.5), rel=0.1)
    with pytest.raises(ValueError, match="temperature"):
        MDN.sample((logpi, mean, logstd), 0.0, gen)


def test_mdn_rnn_learns_the_likelihood_of_generated_sequences():
    """z_{t+1} = 0.8 z_t + a_t (+ small noise), done when |z| > 2: M's next-z NLL falls well below that of the best
    unconditional Gaussian of z, and the done head separates done from not-done steps."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    batch, steps = 64, 20
    z = torch.zeros(batch, steps + 1, 2)
    action = torch.rand(batch, steps, 1, generator=gen) * 2 - 1
    for t in range(steps):
        z[:, t + 1] = 0.8 * z[:, t] + action[:, t] + 0.05 * torch.randn(batch, 2, generator=gen)
    done = (z[:, 1:].abs().amax(-1) > 1.5).float()
    rnn = MDNRNN(2, 1, units=32, mixtures=3, predict_done=True)
    opt = torch.optim.Adam(rnn.parameters(), lr=1e-2)
    for _ in range(300):
        loss, terms = rnn.loss(z[:, :-1], action, z[:, 1:], done)
        opt.zero_grad()
        loss.backward()
        opt.step()
    target = z[:, 1:]
    gaussian_nll = -torch.distributions.Normal(target.mean((0, 1)), target.std((0, 1))).log_prob(target).mean()
    assert terms["rnn/z_nll"].item() < gaussian_nll.item() - 1.5, (terms, gaussian_nll)
    with torch.no_grad():
        h, _ = rnn(z[:, :-1], action)
        p = torch.sigmoid(rnn.done(h).squeeze(-1))
    assert p[done == 1].mean() > 0.7 and p[done == 0].mean() < 0.3


def test_mdn_rnn_mask_leaves_padding_out():
    torch.manual_seed(0)
    rnn = MDNRNN(3, 2, units=8, mixtures=2)
    z, a, nz = torch.randn(2, 5, 3), torch.randn(2, 5, 2), torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).float()
    loss, _ = rnn.loss(z, a, nz, mask=mask)
    garbage = nz.clone()
    garbage[0, 3:] = 1e3  # padded steps may hold anything
    assert rnn.loss(z, a, garbage, mask=mask)[0].item() == pytest.approx(loss.item())


# ---------------------------------------------------------------------------------------------- CMA-ES
@needs_cma
def test_cmaes_maximises_and_resumes_exactly_through_a_weights_only_checkpoint(tmp_path):
    def fitness(x: np.ndarray) -> np.ndarray:
        return -((x - 1.5) ** 2).sum(-1)

    es = CMAES(5, 8, 0.5, seed=3)
    for _ in range(6):
        es.tell(fitness(es.ask()))
    es.ask()  # asked, not told: the checkpoint falls inside a generation
    torch.save({"es": es.state_dict()}, tmp_path / "state.pt")
    resumed = CMAES(5, 8, 0.5, seed=3)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True)["es"])
    for _ in range(30):
        a, b = es.ask(), resumed.ask()
        np.testing.assert_array_equal(a, b)
        es.tell(fitness(a))
        resumed.tell(fitness(b))
    np.testing.assert_array_equal(es.mean, resumed.mean)
    assert fitness(es.mean) > -0.05  # found the optimum at 1.5 (a start at 0 scores -11.25)
    # numpy's global generator is left alone (resume restores the runner's own capture of it)
    state = np.random.get_state()[1].copy()
    CMAES(5, 8, 0.5, seed=3).ask()
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@needs_cma
def test_cmaes_bad_input():
    with pytest.raises(EvolutionError, match=r"population=1: CMA-ES needs a population of at least 2"):
        CMAES(4, 1, 0.1, seed=0)
    es = CMAES(4, 4, 0.1, seed=0)
    with pytest.raises(EvolutionError, match="one fitness per candidate"):
        es.tell([1.0, 2.0])
    with pytest.raises(EvolutionError, match="finite"):
        es.tell([1.0, 2.0, float("nan"), 0.0])
    other = CMAES(4, 6, 0.1, seed=0)
    with pytest.raises(EvolutionError, match="cannot load"):
        other.load_state_dict(es.state_dict())


# ---------------------------------------------------------------------------------------------- sizes, bad input
CAR_OBS = {"image": gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
CAR_ACT = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)


def _method(protocol: str, overrides=(), act=CAR_ACT):
    cls = get_method("worldmodels")
    config = method_config(cls, load_protocol(protocol), list(overrides))
    return cls(CAR_OBS, act, config, "cpu", 0)


@needs_cma
def test_carracing_controller_has_867_parameters_and_the_papers_sizes():
    agent = _method("carracing@1")
    counts = agent.parameter_counts()
    assert counts["controller"] == 867 == (32 + 256) * 3 + 3  # paper Sec. 3.2 / its CarRacing table
    assert counts["vae"] == 4_348_547
    # the paper's M has 422,368 (one LSTM bias vector as TensorFlow's; torch's LSTM has two: +1,024)
    assert abs(counts["mdn_rnn"] - 422_368) / 422_368 < 0.02
    assert agent.es.dim == 867
    no_bias = _method("carracing@1", ["controller_bias=false"])
    assert no_bias.controller.size == 864
    with pytest.raises(Exception, match=r"size 867 does not fit a controller with 288 inputs and 3 outputs \(864"):
        no_bias.controller.act(torch.zeros(867), torch.zeros(1, 288))


@needs_cma
def test_doom_sizes_follow_the_protocol_defaults():
    agent = _method("vizdoom_takecover@1", act=gymnasium.spaces.Discrete(3))
    c = agent.config
    assert (c.z_dim, c.rnn_units, c.predict_done, c.evolve, c.temperature) == (64, 512, True, "dream", 1.15)
    counts = agent.parameter_counts()
    assert counts["vae"] == 4_446_915
    assert counts["mdn_rnn"] == 1_678_785  # the paper's Doom M, exactly
    assert counts["controller"] == 1_088 == 64 + 512 + 512  # [z, h, c] -> 1 output, no bias (released model.py)
    assert (c.done_weight, c.controller_bias) == (10.0, False)


@needs_cma
def test_bad_controller_size_and_population_are_refused():
    with pytest.raises(ConfigError, match=r"controller_params=866 does not match the sizes: .* = 867 parameters"):
        _method("carracing@1", ["controller_params=866"])
    assert _method("carracing@1", ["controller_params=867"]).controller.size == 867
    with pytest.raises(EvolutionError, match=r"population=1: CMA-ES needs a population of at least 2"):
        _method("carracing@1", ["population=1"])
    with pytest.raises(ConfigError, match="evolve='dream' needs predict_done=true"):
        _method("carracing@1", ["evolve=dream"])
    with pytest.raises(ConfigError, match="controller_input 'zz'"):
        _method("carracing@1", ["controller_input=zz"])
    agent = _method("carracing@1")
    with pytest.raises(Exception, match=r"size 10 does not fit a controller with 288 inputs and 3 outputs"):
        agent.controller.act(torch.zeros(10), torch.zeros(1, 288))


def test_missing_suites_name_the_install_command(monkeypatch):
    from wmbench.envs import box2d, vizdoom

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("Box2D", "vizdoom") else real(name, *a))
    for module in (box2d, vizdoom):
        with pytest.raises(SuiteNotInstalled, match=r"pip install 'wmbench\[worldmodels\]'"):
            module.check_installed()


def test_protocols_load_and_state_their_rule():
    for name, suite in (("carracing@1", "box2d"), ("vizdoom_takecover@1", "vizdoom")):
        p = load_protocol(name)
        assert p.suite == suite and p.score.rule == "eval_mean" and p.eval.episodes == 100
        assert p.budget.step_unit == "env_steps"


# ---------------------------------------------------------------------------------------------- contract
@needs_cma
@pytest.mark.parametrize("overrides", [
    ["preset=tiny"],  # real-env evolution, each training episode one rollout of a candidate
    ["preset=tiny", "evolve=dream", "predict_done=true", "controller_input=zch"],  # evolution inside M
    ["preset=tiny", "rollout_backend=inline"],  # real-env rollouts as pool tasks in fresh envs of the factory
    ["preset=tiny", "evolve=dream", "predict_done=true", "controller_input=zch", "rollout_backend=inline"],
    # the released code's options: M's learning rate decays, acting reads z drawn from q (from a saved generator)
    ["preset=tiny", "rnn_lr_decay=0.9", "sample_z=true"],
    # the data set read from the replay's chunk files, V from pools of 2 chunks
    ["preset=tiny", "data_source=disk", "replay_chunk=16", "vae_pool_chunks=2"],
], ids=["real", "dream", "real-pool", "dream-pool", "real-released", "real-disk"])
def test_contract_deterministic_and_exact_resume_with_the_cma_state(tmp_path, overrides):
    result = check_method("worldmodels", tmp_path, task="image_continuous", overrides=overrides, steps=400,
                          checkpoint_every=150)
    metrics = (tmp_path / "a").rglob("metrics.jsonl").__next__().read_text()
    # every stage ran: V, M and at least two CMA-ES generations (so the resumed run replayed a told generation)
    assert "vae/recon" in metrics and "rnn/z_nll" in metrics and '"es/generation": 2.0' in metrics
    assert math.isfinite(result["final_score"])


DREAM = ["evolve=dream", "predict_done=true", "controller_input=zch"]


def _pool_run(root, evolve, backend, workers=1):
    overrides = ["preset=tiny", f"rollout_backend={backend}", f"rollout_workers={workers}", "generations=3"]
    result = run("worldmodels", "fake@1", "image_continuous", 0, root, steps=400, progress=False,
                 overrides=overrides + (DREAM if evolve == "dream" else []))
    assert result.status == "finished"
    return {name: (result.run_dir / name).read_text() for name in ("scores.csv", "metrics.jsonl")}


@needs_cma
@pytest.mark.parametrize("evolve", ["real", "dream"])
@pytest.mark.parametrize("backend", [
    "local",
    pytest.param("ray", marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                                 reason="ray not installed: pip install 'wmbench[sweep]'")),
])
def test_candidate_rollouts_give_the_same_run_inline_and_on_two_workers(tmp_path, evolve, backend):
    inline = _pool_run(tmp_path / "inline", evolve, "inline")
    # the search ran its three generations on the pool, each logging the steps of its rollouts
    assert '"es/generation": 3.0' in inline["metrics.jsonl"] and "es/rollout_steps" in inline["metrics.jsonl"]
    assert _pool_run(tmp_path / backend, evolve, backend, workers=2) == inline  # byte for byte


class DyingFactory:
    """The run's env factory, except that the env of one seed kills its worker process (SIGKILL) when made."""

    def __init__(self, factory, seed: int):
        self.factory, self.seed = factory, seed

    def __call__(self, seed: int, mode: str = "train"):
        if seed == self.seed:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.factory(seed, mode)


def _fake_agent(overrides):
    from wmbench.envs import EnvFactory, make_env

    proto = load_protocol("fake@1")
    env = make_env(proto, "image_continuous", 0)
    cls = get_method("worldmodels")
    agent = cls(env.obs_space, env.act_space, method_config(cls, proto, overrides), "cpu", 0)
    return agent, EnvFactory(proto, "image_continuous")


@needs_cma
def test_a_dead_rollout_worker_fails_the_run_naming_its_candidate_and_the_generation_is_not_told():
    from wmbench_baselines.worldmodels import RolloutError

    agent, factory = _fake_agent(["preset=tiny", "rollout_backend=local", "rollout_workers=2"])
    agent.stage = "evolve"
    dying = derive_seed(agent.seed, "worldmodels/rollout", 0, 2, 0)  # generation 0, candidate 2, rollout 0
    agent.set_env_factory(DyingFactory(factory, dying))
    with pytest.raises(RolloutError, match=rf"generation 1: candidate 2, rollout 0 \(env seed {dying}\) failed on "
                                           r"the local rollout pool .*killed by signal SIGKILL"):
        agent._pool_generation(None)
    assert agent.es.generation == 0 and agent._pool is None  # nothing told; the next try starts fresh workers


@needs_cma
def test_bad_rollout_settings_are_refused():
    with pytest.raises(ConfigError, match=r"rollout_backend 'threads' must be one of \('runner', 'inline', 'local'"):
        _method("carracing@1", ["rollout_backend=threads"])
    agent, _ = _fake_agent(["preset=tiny", "rollout_backend=local"])  # built outside the runner: no env factory
    agent.stage = "evolve"
    with pytest.raises(Exception, match=r"rollout_backend='local' runs real-env rollouts in envs of the runner's env "
                                        r"factory .* none was given"):
        agent._pool_generation(None)


@needs_cma
def test_checkpoint_resumes_at_the_stage_it_reached(tmp_path):
    agent = _method("carracing@1", ["preset=tiny"])
    agent.stage, agent.vae_steps = "rnn", 6
    state = agent.state_dict()
    torch.save(state, tmp_path / "s.pt")
    other = _method("carracing@1", ["preset=tiny"])
    other.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert (other.stage, other.vae_steps) == ("rnn", 6)
    bad = dict(state, stage="train")
    with pytest.raises(Exception, match="stage 'train'"):
        other.load_state_dict(bad)


# ---------------------------------------------------------------------------------------------- released-code options
class EpisodesReplay:
    """The part of the replay the data set reads: complete episodes of 16x16 frames with continuous actions."""

    def __init__(self, episodes: int = 2, length: int = 12):
        rng = np.random.default_rng(0)
        self._episodes = [{"image": rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8),
                           "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                           "is_terminal": np.zeros(length, bool)} for _ in range(episodes)]

    def episodes(self):
        return self._episodes


SMALL_OBS = {"image": gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)}
SMALL_ACT = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _small(overrides=()):
    cls = get_method("worldmodels")
    return cls(SMALL_OBS, SMALL_ACT, method_config(cls, load_protocol("fake@1"), ["preset=tiny", *overrides]), "cpu", 0)


@needs_cma
def test_m_learning_rate_decays_as_the_released_doom_code():
    # released doomrnn/rnn_train.py: lr = (learning_rate - min_learning_rate) * decay_rate ** step + min_learning_rate
    doom = _method("vizdoom_takecover@1", ["rnn_lr_decay=0.99999"], act=gymnasium.spaces.Discrete(3))
    assert doom.rnn_learning_rate(0) == pytest.approx(1e-3, rel=1e-12)
    assert doom.rnn_learning_rate(100_000) == pytest.approx(9.9e-4 * 0.99999**100_000 + 1e-5, rel=1e-12)
    assert doom.rnn_learning_rate(100_000) == pytest.approx(3.7420e-4, rel=1e-4)
    assert doom.rnn_learning_rate(10**8) == pytest.approx(1e-5, rel=1e-9)  # the floor
    assert _method("carracing@1").rnn_learning_rate(10**6) == 1e-3  # no decay: exactly rnn_lr (the default)
    # the optimiser steps with that rate, step after step, and the weights follow it
    replay = EpisodesReplay()
    decayed, constant = _small(["rnn_lr_decay=0.5", "rnn_lr_min=1e-4"]), _small()
    rates = [decayed._rnn_step(replay)["rnn/lr"] for _ in range(4)]
    assert rates == pytest.approx([1e-3, 5.5e-4, 3.25e-4, 2.125e-4], rel=1e-12)
    assert decayed.rnn_opt.param_groups[0]["lr"] == rates[-1]
    assert [constant._rnn_step(replay)["rnn/lr"] for _ in range(4)] == [1e-3] * 4
    changed = [not torch.equal(a, b) for a, b in zip(decayed.rnn.parameters(), constant.rnn.parameters(), strict=True)]
    assert any(changed)  # same seed and batches: only the rates differ
    with pytest.raises(ConfigError, match=r"rnn_lr_min=0.01 is above rnn_lr=0.001"):
        _small(["rnn_lr_min=0.01"])
    with pytest.raises(ConfigError, match="rnn_lr_decay"):
        _small(["rnn_lr_decay=1.5"])


@needs_cma
def test_acting_with_sampled_z_differs_from_the_mean_and_is_deterministic_under_the_seed():
    params = torch.as_tensor(np.random.default_rng(1).normal(size=_small().controller.size), dtype=torch.float32)
    frames = {"image": np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
              "is_first": np.ones(3, bool)}

    @torch.no_grad()
    def act(agent, seed, state=None):
        return agent._act(params, frames, state, torch.Generator().manual_seed(seed))

    mean, sampled = _small(), _small(["sample_z=true"])
    a_mean, s_mean = act(mean, 0)
    assert np.array_equal(act(mean, 1)[0], a_mean)  # the mean ignores the generator
    a0, s0 = act(sampled, 0)
    assert not np.allclose(a0, a_mean) and not torch.allclose(s0[0], s_mean[0])  # C and M both read the draw
    a0_again, s0_again = act(sampled, 0)
    assert np.array_equal(a0_again, a0) and torch.equal(s0_again[0], s0[0])
    assert not np.array_equal(act(sampled, 1)[0], a0)
    with torch.no_grad():  # the draw is z = mean + std x noise of q(z | frame)
        z_mean, logvar = sampled.vae.encode(torch.as_tensor(frames["image"]))
        z, _ = sampled._features(frames["image"], sampled.rnn.initial(3, sampled.device), torch.Generator().manual_seed(0))
    assert torch.equal(z, ConvVAE.sample(z_mean, logvar, torch.Generator().manual_seed(0)))
    # the runner's env draws from the method's own generator, saved in its state: a reload draws the same
    sampled.stage = "evolve"
    state = sampled.state_dict()
    first = sampled.policy(dict(frames, is_last=np.zeros(3, bool)), None, mode="eval")[0]
    other = _small(["sample_z=true"])
    other.stage = "evolve"
    other.load_state_dict(state)
    assert np.array_equal(other.policy(dict(frames, is_last=np.zeros(3, bool)), None, mode="eval")[0], first)


@needs_cma
def test_pool_rollouts_with_sampled_z_depend_on_their_seed_only():
    agent, factory = _fake_agent(["preset=tiny", "sample_z=true"])
    agent.set_env_factory(factory)
    params = np.random.default_rng(3).normal(size=agent.controller.size)

    def rollout(agent, seed):
        ret, steps = agent.real_rollout(params, seed)
        return float(ret[0]), steps

    first = rollout(agent, 11)
    rollout(agent, 12)  # a worker that ran another rollout before draws the same for seed 11
    assert rollout(agent, 11) == first
    mean, _ = _fake_agent(["preset=tiny"])
    mean.set_env_factory(factory)
    assert rollout(mean, 11) != first  # the draws change the episode


# ---------------------------------------------------------------------------------------------- adapters
needs_box2d = pytest.mark.skipif(importlib.util.find_spec("Box2D") is None, reason="gymnasium[box2d] not installed")
needs_vizdoom = pytest.mark.skipif(importlib.util.find_spec("vizdoom") is None, reason="vizdoom not installed")


@needs_box2d
def test_carracing_adapter_frames_actions_and_time_limit():
    from wmbench.envs.box2d import CarRacingEnv

    env = CarRacingEnv(max_steps=30)
    obs, _ = env.reset(seed=4)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, _ = env.step(np.array([0.0, 1.0, -1.0]))  # full gas, no brake
        steps += 1
        assert not terminated
    assert steps == 30
    again, _ = env.reset(seed=4)
    first, _ = CarRacingEnv().reset(seed=4)
    np.testing.assert_array_equal(again["image"], first["image"])  # a track is a function of its seed
    env.close()


@needs_vizdoom
def test_takecover_adapter_actions_and_survival_reward():
    from wmbench.envs.vizdoom import TakeCoverEnv

    env = TakeCoverEnv(max_steps=40)
    obs, _ = env.reset(seed=1)
    assert obs["image"].shape == (64, 64, 3) and env.action_space.n == 3
    raw = env.env.unwrapped
    names = [str(b).split(".")[-1].split(":")[0] for b in raw.game.get_available_buttons()]
    pressed = [dict(zip(names, raw.button_map[i], strict=True)) for i in env._actions]
    assert pressed[0]["MOVE_LEFT"] == 1 and not any(pressed[1].values()) and pressed[2]["MOVE_RIGHT"] == 1
    total, truncated, terminated = 0.0, False, False
    while not (truncated or terminated):
        obs, reward, terminated, truncated, _ = env.step(1)
        total += reward
    assert truncated and total == 40.0  # +1 per step alive
    env.close()


# ---------------------------------------------------------------------------------------------- published figures
def test_paper_tables_hold_the_papers_figures():
    from wmbench.recipes import load_recipe, published_source_ids
    from wmbench.results import paper_tables

    table = paper_tables(method="worldmodels").set_index("protocol")
    assert tuple(table.loc["carracing", ["mean", "sd", "n"]]) == (906, 21, 100)
    assert tuple(table.loc["vizdoom_takecover", ["mean", "sd", "n"]]) == (1092, 556, 100)
    assert set(table["source"]) <= published_source_ids()
    assert load_recipe("worldmodels", "worldmodels_2018_carracing").config["controller_params"] == 867
    assert len(paper_tables(protocol="carracing@1")) == 1 and paper_tables(protocol="atari100k").empty


def test_recipes_version_2_add_the_released_codes_options_and_nothing_else():
    from wmbench_baselines.worldmodels import WorldModelsConfig

    from wmbench.recipes import load_recipe, recipe_differences, recipe_names, resolve_config

    assert recipe_names("worldmodels") == [
        "worldmodels_2018_carracing@1", "worldmodels_2018_carracing@2", "worldmodels_2018_carracing@3",
        "worldmodels_2018_vizdoom_takecover@1", "worldmodels_2018_vizdoom_takecover@2",
        "worldmodels_2018_vizdoom_takecover@3"]
    released = {  # carracing/rnn_train.py and model.py; doomrnn/rnn_train.py and doomreal.py (commit fd982b9)
        "worldmodels_2018_carracing": {"rnn_lr_decay": 1.0, "rnn_lr_min": 1e-5, "sample_z": True},
        "worldmodels_2018_vizdoom_takecover": {"rnn_lr_decay": 0.99999, "rnn_lr_min": 1e-5, "sample_z": True},
    }
    for name, keys in released.items():
        old, new = load_recipe("worldmodels", f"{name}@1"), load_recipe("worldmodels", f"{name}@2")
        assert new.version == 2 and new.sources == old.sources and new.protocol == old.protocol
        assert new.config == {**old.config, **keys}  # version 1 keeps its meaning (the method's defaults there)
        config, _ = resolve_config(get_method("worldmodels"), load_protocol(new.protocol), (), new.id)
        assert (config.rnn_lr_decay, config.rnn_lr_min, config.sample_z) == tuple(keys.values())
        # a run made with version 1 (the method's defaults for these keys) differs from version 2 in them only
        config_v1, _ = resolve_config(get_method("worldmodels"), load_protocol(old.protocol), (), old.id)
        defaults = WorldModelsConfig()
        assert recipe_differences(config_v1, new) == {
            k: (getattr(defaults, k), v) for k, v in keys.items() if getattr(defaults, k) != v}
    default = method_config(get_method("worldmodels"), load_protocol("vizdoom_takecover@1"), [])
    assert (default.rnn_lr_decay, default.sample_z) == (1.0, False)  # the method's default: unchanged
    # version 3: the data set on disk (both), and Doom's M on the released 500-frame pieces (499 transitions)
    version_3 = {"worldmodels_2018_carracing": {"data_source": "disk"},
                 "worldmodels_2018_vizdoom_takecover": {"data_source": "disk", "rnn_seq": 499}}
    for name, keys in version_3.items():
        old, new = load_recipe("worldmodels", f"{name}@2"), load_recipe("worldmodels", name)
        assert new.version == 3 and new.sources == old.sources and new.config == {**old.config, **keys}
        assert set(keys) <= set(new.provenance)
        config_v2, _ = resolve_config(get_method("worldmodels"), load_protocol(old.protocol), (), old.id)
        assert set(recipe_differences(config_v2, new)) == set(keys)


def _finals(values, method="worldmodels", task="car_racing"):
    import pandas as pd

    return pd.DataFrame({"method": method, "task": task, "seed": [str(i) for i in range(len(values))],
                         "final": np.asarray(values, float)})


def test_summary_verdict_against_a_mean_and_spread():
    from wmbench.reproduce import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, summary_verdict
    from wmbench.results import paper_tables

    entry = paper_tables(protocol="carracing").iloc[0]
    ours = [895.0, 910.0, 902.0, 915.0, 899.0]
    random_runs = _finals([-60.0, -55.0, -58.0], method="random")
    v = summary_verdict(_finals(ours), entry, "carracing@1", untrained_finals=random_runs)
    assert v.verdict == REPRODUCED, v.text
    # the interval: our between-run variance plus the published mean's standard error (SD / sqrt(n))
    se = math.sqrt(np.var(ours, ddof=1) / 5 + 21.0**2 / 100)
    assert v.high - v.low == pytest.approx(2 * float(__import__("scipy").stats.t.ppf(0.95, v.df)) * se)
    assert v.difference == pytest.approx(np.mean(ours) - 906)
    assert "episodes of one agent" in v.text and "not in the interval" in v.text
    # no untrained level: equivalence alone never says reproduced
    v = summary_verdict(_finals(ours), entry, "carracing@1")
    assert v.verdict == INCONCLUSIVE and "--untrained-runs" in v.reason
    # far below: the whole interval is outside the margin
    assert summary_verdict(_finals([500.0, 520.0, 480.0]), entry, "carracing@1",
                           untrained_finals=random_runs).verdict == NOT_REPRODUCED
    # fewer runs than the protocol's minimum (3)
    v = summary_verdict(_finals([905.0, 907.0]), entry, "carracing@1", untrained_finals=random_runs)
    assert v.verdict == INCONCLUSIVE and "needs >= 3 runs" in v.reason


def test_reproduce_cli_compares_runs_with_a_paper_table_entry(tmp_path, monkeypatch, capsys):
    """`wmbench reproduce` end to end on finished runs, against a table entry (here a stand-in entry for fake@1, so
    the runs take seconds: the same path serves carracing@1 and vizdoom_takecover@1)."""
    import pandas as pd

    from wmbench import results
    from wmbench.reproduce import cli_reproduce
    from wmbench.runner import run

    entry = pd.DataFrame([{
        "source": "test:table", "method": "random", "protocol": "fake", "task": "vector_discrete", "mean": 1000.0,
        "sd": 50.0, "n": 100, "spread_over": "episodes of one agent", "step_unit": "env_steps", "paper": "test",
        "location": "test", "notes": "",
    }])
    monkeypatch.setattr(results, "_paper_tables", lambda: entry)
    for seed in range(3):
        run("random", "fake@1", "vector_discrete", seed, tmp_path / "runs", progress=False)
    assert cli_reproduce(["random", "fake@1", "--tasks", "vector_discrete", "--root", str(tmp_path / "runs"),
                          "--json", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "vs test:table: NOT REPRODUCED" in out and "SD over 100 episodes of one agent" in out
    import json

    (verdict,) = json.loads((tmp_path / "v.json").read_text())
    assert verdict["n_ours"] == 3 and verdict["published_mean"] == 1000.0


@needs_cma
def test_a_data_set_larger_than_the_replay_is_refused():
    class Replay:
        def episodes(self):
            return [{"image": np.zeros((3, 64, 64, 3), np.uint8), "action": np.zeros((3, 3), np.float32),
                     "is_terminal": np.zeros(3, bool)}] * 2

    agent = _method("carracing@1", ["data_episodes=5"])
    with pytest.raises(Exception, match="holds 2 complete episodes, fewer than data_episodes=5"):
        agent.data(Replay())
    agent = _method("carracing@1", ["data_episodes=2"])
    assert len(agent.data(Replay())["all"]) == 6


# ---------------------------------------------------------------------------------------------- data set on disk
def _stream(directory, episodes, chunk=8, capacity_steps=10**5):
    """A replay of `episodes` (lengths) of 16x16 frames and 2-D actions, one env; `capacity_steps` small: it evicts."""
    from wmbench.replay import Replay

    rng = np.random.default_rng(3)
    probe_step = {"image": np.zeros((16, 16, 3), np.uint8), "action": np.zeros(2, np.float32), "reward": 0.0,
                  "is_first": True, "is_last": False, "is_terminal": False}
    probe = Replay(10**6)
    probe.add(probe_step)
    replay = Replay(capacity_steps * probe.nbytes, directory, chunk_size=chunk, seed=0)
    for length in episodes:
        for t in range(length):
            replay.add({"image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
                        "action": rng.uniform(-1, 1, 2).astype(np.float32), "reward": float(t),
                        "is_first": t == 0, "is_last": t == length - 1, "is_terminal": t == length - 1 == 6})
    return replay


@needs_cma
def test_data_set_on_disk_equals_the_one_in_memory_and_survives_eviction(tmp_path):
    lengths = [7, 12, 5, 9, 20]  # 53 steps in 7 chunk files of 8 (6 complete, 5 steps in RAM only)
    whole = _stream(tmp_path / "a", lengths)
    evicting = _stream(tmp_path / "b", lengths, capacity_steps=10)  # RAM holds the last 10 steps only
    memory = _small(["data_episodes=4"])
    disk = _small(["data_episodes=4", "data_source=disk"])
    with pytest.raises(Exception, match="holds 0 complete episodes, fewer than data_episodes=4"):
        _small(["data_episodes=4"]).data(evicting)  # in RAM, the evicted episodes are gone
    a, b = memory.data(whole), disk.data(evicting)
    assert b["lengths"].tolist() == a["lengths"].tolist() == [7, 12, 5, 9]
    assert b["offsets"].tolist() == a["offsets"].tolist()
    for key in ("actions", "dones"):
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key], strict=True))
    assert [d.sum().item() for d in b["dones"]] == [1.0, 0.0, 0.0, 0.0]
    frames = torch.cat(list(disk._frame_chunks(evicting)))
    assert torch.equal(frames, a["all"])  # the 33 data-set frames, read back from 5 chunk files
    # M trains on the same encoded data set, batch for batch (same seed, same V)
    assert memory._rnn_step(whole) == disk._rnn_step(evicting)
    with pytest.raises(Exception, match="chunk files hold 4 complete episodes, fewer than data_episodes=5"):
        _small(["data_episodes=5", "data_source=disk"]).data(evicting)  # the 5th episode's end is not in a file yet


@needs_cma
def test_v_pools_cover_the_data_set_each_epoch_and_follow_the_step_count(tmp_path):
    replay = _stream(tmp_path / "r", [7, 12, 5, 9, 20], capacity_steps=10)
    agent = _small(["data_episodes=4", "data_source=disk", "vae_pool_chunks=2", "vae_batch=4"])
    data_frames = torch.cat(list(agent._frame_chunks(replay)))  # 33 frames in chunks of 8, 8, 8, 8, 1
    seen, pools = [], []
    for step in range(0, 12, 4):  # a pool of 2 chunks serves 2 x 8 / 4 = 4 updates; 5 chunks: 3 pools an epoch
        agent.vae_steps = step
        pool = agent._vae_frames(replay)
        assert agent._vae_frames(replay) is pool  # kept while its updates last
        agent.vae_steps = step + 3
        assert agent._vae_frames(replay) is pool
        pools.append(pool)
        seen.append(pool)
    epoch = torch.cat(seen)
    assert len(epoch) == len(data_frames) == 33
    assert sorted(map(bytes, epoch.flatten(1).numpy())) == sorted(map(bytes, data_frames.flatten(1).numpy()))
    # a resumed method (fresh object, same step count) reads the same pool
    other = _small(["data_episodes=4", "data_source=disk", "vae_pool_chunks=2", "vae_batch=4"])
    other.vae_steps = 5
    assert torch.equal(other._vae_frames(replay), pools[1])
    before = [p.clone() for p in agent.vae.parameters()]
    agent.vae_steps = 0
    assert math.isfinite(agent._vae_step(replay)["vae/loss"])
    assert any(not torch.equal(x, y) for x, y in zip(before, agent.vae.parameters(), strict=True))


@needs_cma
def test_data_on_disk_needs_chunk_files_and_one_env(tmp_path):
    with pytest.raises(ConfigError, match="data_source 'ssd' must be one of"):
        _small(["data_source=ssd"])
    with pytest.raises(Exception, match="data_source='disk' reads the data set from the replay's chunk files"):
        _small(["data_source=disk"]).data(EpisodesReplay())
    replay = _stream(tmp_path / "r", [7, 12])
    replay.add({"image": np.zeros((16, 16, 3), np.uint8), "action": np.zeros(2, np.float32), "reward": 0.0,
                "is_first": True, "is_last": False, "is_terminal": False}, worker=1)
    for _ in range(8):
        replay.add({"image": np.zeros((16, 16, 3), np.uint8), "action": np.zeros(2, np.float32), "reward": 0.0,
                    "is_first": False, "is_last": False, "is_terminal": False})
    with pytest.raises(Exception, match="several envs"):
        _small(["data_episodes=3", "data_source=disk"]).data(replay)
