"""DreamerV3 method (tiny preset): spaces, one update, schedule, checkpoints, determinism, NaN handling.

The runner-level checks (runs, deterministic, exact resume, weights_only checkpoints) are in
tests/test_method_contract.py, which runs every registered method through wmbench.testing.check_method.
"""

import io
import math

import gymnasium
import numpy as np
import pytest
import torch
from wmbench_baselines.dreamerv3 import DreamerV3, DreamerV3Config, NonFiniteLossError

from wmbench.config import make_config
from wmbench.method import MethodError, get_method

FAST = ["preset=tiny", "batch_size=2", "batch_length=8", "imag_horizon=4"]
VEC = {"vector": gymnasium.spaces.Box(-2, 2, (2,), np.float32)}
IMG = {**VEC, "image": gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)}
DISC = gymnasium.spaces.Discrete(3)
CONT = gymnasium.spaces.Box(-1, 1, (2,), np.float32)


def _agent(obs=VEC, act=DISC, extra=(), seed=0):
    return DreamerV3(obs, act, make_config(DreamerV3Config, FAST + list(extra)), seed=seed)


def _batch(obs, act, B=2, T=8, seed=0):
    rng = np.random.default_rng(seed)
    data = {
        "vector": rng.normal(size=(B, T, 2)).astype(np.float32),
        "reward": rng.normal(size=(B, T)).astype(np.float32),
        "is_first": np.zeros((B, T), bool),
        "is_last": np.zeros((B, T), bool),
        "is_terminal": rng.uniform(size=(B, T)) < 0.1,
    }
    if "image" in obs:
        data["image"] = rng.integers(0, 256, (B, T, 16, 16, 3), dtype=np.uint8)
    if isinstance(act, gymnasium.spaces.Discrete):
        data["action"] = rng.integers(0, act.n, (B, T))
    else:
        data["action"] = rng.uniform(-1, 1, (B, T, act.shape[0])).astype(np.float32)
    return data


class FakeReplay:
    def __init__(self, obs, act, size):
        self.obs, self.act, self.size, self.calls = obs, act, size, 0

    def __len__(self):
        return self.size

    def sample(self, batch, length, **kw):
        self.calls += 1
        return _batch(self.obs, self.act, batch, length, seed=self.calls)


def test_registered_and_supports():
    assert get_method("dreamerv3") is DreamerV3
    assert DreamerV3.supports(VEC, DISC) is None and DreamerV3.supports(IMG, CONT) is None
    assert "[-1, 1]" in DreamerV3.supports(VEC, gymnasium.spaces.Box(-2, 2, (1,), np.float32))
    assert "not supported" in DreamerV3.supports(VEC, gymnasium.spaces.MultiDiscrete([2, 2]))
    assert "depth" in DreamerV3.supports({**VEC, "depth": IMG["image"]}, DISC)
    with pytest.raises(MethodError, match="cannot run"):
        _agent(act=gymnasium.spaces.MultiBinary(3))
    with pytest.raises(Exception, match="mults"):
        _agent(IMG, CONT, extra=["mults=2,2,2,2"])  # 16 px cannot pool 4 times


@pytest.mark.parametrize("obs,act", [(VEC, DISC), (IMG, CONT)], ids=["vector-discrete", "image-continuous"])
def test_one_update_and_policy(obs, act):
    agent = _agent(obs, act)
    feat = torch.randn(5, agent.rssm.feat_dim)
    # zero-initialised output layers: reward and value predictions start at exactly 0 (DreamerV3 Sec. 2)
    from wmbench.nn.distributions import twohot_mean

    assert torch.allclose(twohot_mean(agent.reward_head(feat), agent.bins), torch.zeros(5), atol=1e-6)
    assert torch.allclose(twohot_mean(agent.critic(feat), agent.bins), torch.zeros(5), atol=1e-6)
    before = {k: v.clone() for k, v in agent.nets.state_dict().items()}
    metrics = agent.train_batch(_batch(obs, act))
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"loss/reward", "loss/cont", "loss/dyn", "loss/rep", "loss/actor", "loss/critic"} <= set(metrics)
    assert metrics["loss/dyn"] >= 1.0 and metrics["loss/rep"] >= 1.0  # free bits
    changed = [k for k, v in agent.nets.state_dict().items() if not torch.equal(v, before[k])]
    for prefix in ("encoder", "rssm", "decoder", "reward", "cont", "actor", "critic"):
        assert any(k.startswith(prefix) for k in changed), f"{prefix} did not train"
    step = {k: v[:, 0] for k, v in _batch(obs, act, B=3).items()}
    step["is_first"][:] = True
    action, state = agent.policy(step, None, "train")
    if isinstance(act, gymnasium.spaces.Discrete):
        assert action.shape == (3,) and set(action.tolist()) <= {0, 1, 2}
    else:
        assert action.shape == (3, 2) and np.all(np.abs(action) <= 1)
    action2, _ = agent.policy(step, state, "eval")
    assert action2.shape == action.shape


def test_train_ratio_schedule(monkeypatch):
    agent = _agent(extra=["train_ratio=4"])  # B*T = 16 replayed steps per update -> 1 update per 4 agent steps
    calls = []
    monkeypatch.setattr(agent, "train_batch", lambda data: calls.append(1) or agent.__dict__.update(updates=agent.updates + 1) or {"x": 1.0})
    empty = FakeReplay(VEC, DISC, size=5)  # fewer steps than batch_length: no training yet
    assert agent.update(empty, 0) == {} and not calls
    replay = FakeReplay(VEC, DISC, size=100)
    for step in range(10, 30):
        agent.update(replay, step)
    # first training step at 10 does 1 update; then floor((step - 10) * 4 / 16) more by step 29 -> 1 + 4
    assert len(calls) == 1 + (29 - 10) * 4 // 16


def test_checkpoint_round_trip_and_determinism():
    a, b = _agent(IMG, CONT), _agent(IMG, CONT)
    m1, m2 = a.train_batch(_batch(IMG, CONT)), b.train_batch(_batch(IMG, CONT))
    assert m1 == m2  # same seed, same data -> same numbers
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = _agent(IMG, CONT, seed=5)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert a.train_batch(_batch(IMG, CONT, seed=1)) == c.train_batch(_batch(IMG, CONT, seed=1))
    other = DreamerV3(IMG, CONT, make_config(DreamerV3Config, ["preset=xs", "mults=2,2"]), seed=0)
    with pytest.raises(MethodError, match="'tiny'.*'xs'"):
        other.load_state_dict(a.state_dict())


def test_nan_loss_names_update_and_term():
    agent = _agent()
    data = _batch(VEC, DISC)
    data["reward"][0, 3] = np.nan
    before = {k: v.clone() for k, v in agent.nets.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"'loss/reward'.*update 0.*checkpoint"):
        agent.train_batch(data)
    assert all(torch.equal(v, before[k]) for k, v in agent.nets.state_dict().items())  # weights untouched


def test_backprop_actor_option_trains_through_the_dynamics():
    """actor_grad_cont=backprop (the 2023 release's continuous-action gradient) still trains every network, and it
    differs from the default REINFORCE update."""
    a, b = _agent(VEC, CONT), _agent(VEC, CONT, extra=["actor_grad_cont=backprop"])
    assert not a.backprop_actor and b.backprop_actor
    before = {k: v.clone() for k, v in b.actor.state_dict().items()}
    ma, mb = a.train_batch(_batch(VEC, CONT)), b.train_batch(_batch(VEC, CONT))
    assert all(math.isfinite(v) for v in mb.values())
    assert any(not torch.equal(v, before[k]) for k, v in b.actor.state_dict().items())
    assert ma["loss/model"] == mb["loss/model"] and ma["loss/actor"] != mb["loss/actor"]


def test_bf16_update_is_finite():
    agent = _agent(IMG, CONT, extra=["precision=bf16"])
    assert all(math.isfinite(v) for v in agent.train_batch(_batch(IMG, CONT)).values())


def _step(first):
    return {"vector": np.zeros((1, 2), np.float32), "is_first": np.array([first])}


def test_prefill_acts_uniformly_at_random_then_the_policy_acts():
    """prefill=N (the 2023 release's random-agent prefill): the first N train-mode actions are uniform in [-1, 1];
    eval actions do not count; the counter is checkpointed."""
    agent = _agent(VEC, CONT, extra=["prefill=200", "minstd=0.01", "maxstd=0.01"])  # policy actions ~ 0 +- 0.01
    state, first = None, True
    prefill = []
    for _ in range(200):
        action, state = agent.policy(_step(first), state, "train")
        agent.policy(_step(first), None, "eval")
        prefill.append(action[0])
        first = False
    prefill = np.abs(np.array(prefill))
    assert agent.acted == 200 and prefill.max() > 0.9 and (prefill > 0.5).mean() > 0.3
    after = [np.abs(agent.policy(_step(False), state, "train")[0]).max() for _ in range(20)]
    assert max(after) < 0.2
    restored = _agent(VEC, CONT, extra=["prefill=200", "minstd=0.01", "maxstd=0.01"])
    restored.load_state_dict(agent.state_dict())
    assert restored.acted == agent.acted


def test_2024_options_contdisc_and_laprop():
    """contdisc (continue target (1 - terminal) x gamma, imagined discount = continue probability) and LaProp with
    warm-up (the first update leaves the weights as they are) train finitely and resume."""
    agent = _agent(VEC, DISC, extra=["contdisc=true", "optimizer=laprop", "warmup=5", "loss_dyn=1.0"])
    assert agent.disc == 1.0 and type(agent.model_opt).__name__ == "LaProp"
    deter, stoch, start = torch.randn(3, 4, 64), torch.randn(3, 4, 16), torch.full((4,), 0.5)
    logits = agent.cont_head.forward_feat(deter, stoch).squeeze(-1)
    assert torch.allclose(agent._imag_cont(deter, stoch, start), torch.sigmoid(logits))  # the start state's too
    default = _agent()
    logits = default.cont_head.forward_feat(deter, stoch).squeeze(-1)
    want = torch.cat([start[None], (logits[1:] > 0).float()])  # default: data at the start, then the mode
    assert torch.equal(default._imag_cont(deter, stoch, start), want)
    before = {k: v.clone() for k, v in agent.nets.state_dict().items()}
    m = agent.train_batch(_batch(VEC, DISC))
    assert all(math.isfinite(v) for v in m.values())
    assert all(torch.equal(v, before[k]) for k, v in agent.nets.state_dict().items())  # lr 0 at the first update
    agent.train_batch(_batch(VEC, DISC, seed=1))
    assert any(not torch.equal(v, before[k]) for k, v in agent.nets.state_dict().items())
    c = _agent(VEC, DISC, extra=["contdisc=true", "optimizer=laprop", "warmup=5", "loss_dyn=1.0"], seed=3)
    buf = io.BytesIO()  # through a file, as a checkpoint (load_state_dict would alias the optimiser's tensors)
    torch.save(agent.state_dict(), buf)
    buf.seek(0)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert agent.train_batch(_batch(VEC, DISC, seed=2)) == c.train_batch(_batch(VEC, DISC, seed=2))


def test_critic_loss_terms_are_reported_separately():
    agent = _agent(extra=["slowreg=0.5"])
    m = agent.train_batch(_batch(VEC, DISC))
    assert m["loss/critic"] == pytest.approx(m["loss/critic_return"] + 0.5 * m["loss/critic_slowreg"], rel=1e-5)


def test_replay_value_loss_trains_the_critic_on_replayed_states():
    """loss_repval (2024): reported as loss/repval and added to the critic's loss with its weight; the world-model
    update is unchanged (its gradient reaches the critic only)."""
    a, b = _agent(), _agent(extra=["loss_repval=0.3"])
    ma, mb = a.train_batch(_batch(VEC, DISC)), b.train_batch(_batch(VEC, DISC))
    assert "loss/repval" not in ma and math.isfinite(mb["loss/repval"]) and mb["loss/repval"] > 0
    assert mb["loss/model"] == ma["loss/model"] and mb["loss/actor"] == ma["loss/actor"]
    assert mb["loss/critic"] == pytest.approx(ma["loss/critic"] + 0.3 * mb["loss/repval"], rel=1e-5)


def test_carry_state_starts_each_batch_from_the_previous_batch():
    """carry_state (2023): the next batch's rows start from the last posterior state and action of the previous
    batch; the carried state is checkpointed."""
    a, b = _agent(), _agent(extra=["carry_state=true"])
    assert a.train_batch(_batch(VEC, DISC)) == b.train_batch(_batch(VEC, DISC))  # first batch: initial state
    assert a.carry is None and b.carry[0].shape == (2, 64) and b.carry[2].shape == (2, 3)
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    c = _agent(extra=["carry_state=true"], seed=4)
    c.load_state_dict(torch.load(buf, weights_only=True))
    ma, mb, mc = (x.train_batch(_batch(VEC, DISC, seed=1)) for x in (a, b, c))
    assert mb == mc and ma["loss/model"] != mb["loss/model"]


def test_joint_update_imagines_with_the_world_model_before_its_step():
    """joint_update (2024): behaviour losses are computed with the world model before its step, so the first update's
    behaviour numbers equal those of a sequential (2023-order) agent whose world model does not move (lr 0); with
    the replay-value loss the world model's gradient gains its part (repval_grad)."""
    joint, frozen = _agent(extra=["joint_update=true"]), _agent(extra=["model_lr=0"])
    mj, mf = joint.train_batch(_batch(VEC, DISC)), frozen.train_batch(_batch(VEC, DISC))
    for key in ("loss/actor", "loss/critic", "imag/return", "imag/reward", "grad_norm/actor", "grad_norm/critic"):
        assert mj[key] == mf[key], key
    moved = _agent()
    assert moved.train_batch(_batch(VEC, DISC))["imag/reward"] != mj["imag/reward"]
    plain, repval = (_agent(extra=["joint_update=true", f"loss_repval={w}"]) for w in (0.0, 0.3))
    sequential = _agent(extra=["loss_repval=0.3"])
    for seed in (0, 1):  # the critic's output layer starts at zero: no gradient reaches its inputs at update 0
        mp, mr, ms = (x.train_batch(_batch(VEC, DISC, seed=seed)) for x in (plain, repval, sequential))
    assert mp["loss/model"] == mr["loss/model"] and mp["grad_norm/model"] != mr["grad_norm/model"]
    assert ms["grad_norm/model"] == mp["grad_norm/model"]  # sequential: the replay-value loss trains the critic only
    bp = _agent(VEC, CONT, extra=["joint_update=true", "loss_repval=0.3", "actor_grad_cont=backprop"])
    assert all(math.isfinite(v) for v in bp.train_batch(_batch(VEC, CONT)).values())


def _ctx_batch(seed=0, first=False):
    """A [2, 1 + 8] replayed batch with stored latents for replay_context=1 (tiny preset: deter 64, stoch 4 x 4)."""
    data = _batch(VEC, DISC, B=2, T=9, seed=seed)
    rng = np.random.default_rng(seed + 100)
    data["ctx_deter"] = rng.uniform(-1, 1, (2, 9, 64)).astype(np.float16)
    data["ctx_stoch"] = np.eye(4, dtype=np.float16)[rng.integers(0, 4, (2, 9, 4))].reshape(2, 9, 16)
    data["index"] = np.arange(18).reshape(2, 9)
    data["is_first"][:, 1] = first
    return data


def test_replay_context_starts_from_the_stored_latent_of_the_step_before():
    """replay_context=1 (2024): the batch trains on steps 1..T and starts from the latent stored with step 0 and
    its action; when step 1 starts an episode the stored latent is irrelevant, so the pass equals a context-free
    pass on steps 1..T; a row whose latent was never stored starts from the initial state."""
    plain, ctx = _agent(), _agent(extra=["replay_context=1"])
    data = _ctx_batch(first=True)
    sliced = {k: v[:, 1:] for k, v in data.items() if not k.startswith("ctx_") and k != "index"}
    assert ctx.train_batch(data) == plain.train_batch(sliced)
    assert ctx.fresh_latents["ctx_deter"].shape == (2, 8, 64) and ctx.fresh_latents["ctx_deter"].dtype == np.float16
    known, unknown = _agent(extra=["replay_context=1"]), _agent(extra=["replay_context=1"])
    data, blank = _ctx_batch(seed=1), _ctx_batch(seed=1)
    blank["ctx_deter"][:] = np.nan
    mk, mu = known.train_batch(data), unknown.train_batch(blank)
    assert mk["loss/model"] != mu["loss/model"]
    zero = _agent(extra=["replay_context=1"])
    blank["ctx_deter"][:], blank["ctx_stoch"][:] = 0, 0  # the tiny preset's initial state is zeros
    assert zero.train_batch(blank)["loss/model"] == mu["loss/model"]


def test_replay_context_stores_acting_latents_and_refreshes_them_after_training():
    """With a real replay: each acted step gets the policy's posterior latent; a training pass overwrites the
    replayed steps' latents with its own posteriors (official replay.update); the online queue hands the newest
    window to the first batch."""
    from wmbench.replay import Replay

    agent = _agent(extra=["replay_context=1", "replay_online=true", "train_ratio=16"])
    replay = Replay(10**7, seed=0)
    rng = np.random.default_rng(0)
    state, latents = None, []
    for t in range(12):
        obs = {"vector": rng.normal(size=(1, 2)).astype(np.float32), "is_first": np.array([t == 0]),
               "is_last": np.array([False]), "is_terminal": np.array([False]), "reward": np.zeros(1, np.float32)}
        action, state = agent.policy(obs, state, "train")
        latents.append(state[0][0].numpy())
        replay.add({k: v[0] for k, v in obs.items()} | {"action": action[0]})
        if t < 8:  # below batch_length + context: latents are stored, no training yet
            assert agent.update(replay, t + 1) == {} and agent.updates == 0
    stored = replay.sample(12, 1, annotations=True, index=True)
    index, deter = stored["index"][:, 0], stored["ctx_deter"][:, 0].astype(np.float32)
    seen = index < 8  # later steps' latents wait in the agent until its next update
    assert seen.any() and np.isnan(deter[~seen]).all()
    np.testing.assert_allclose(deter[seen], np.stack(latents)[index[seen]], atol=2e-3)
    def by_step():  # every stored step's latent (200 draws cover the 12 steps)
        draw = replay.sample(200, 1, annotations=True, index=True)
        return {int(i): d.tobytes() for i, d in zip(draw["index"][:, 0], draw["ctx_deter"][:, 0], strict=True)}

    before = by_step()
    metrics = agent.update(replay, 12)
    assert agent.updates >= 1 and np.isfinite(metrics["loss/model"])
    after = by_step()
    assert sorted(before) == sorted(after) == list(range(12))
    changed = {i for i in before if before[i] != after[i]}
    assert changed and min(changed) >= 1  # step 0 is only ever context, never trained on


def test_replay_context_and_carry_state_are_exclusive():
    with pytest.raises(MethodError, match="carry_state .* replay_context"):
        _agent(extra=["replay_context=1", "carry_state=true"])


def test_replay_context_and_online_queue_meet_the_method_contract(tmp_path):
    """Determinism and exact resume with stored latents (in the replay's and the agent's state) and the queue."""
    from wmbench.testing import check_method

    check_method("dreamerv3", tmp_path, overrides=["preset=tiny", "replay_context=1", "replay_online=true"])
