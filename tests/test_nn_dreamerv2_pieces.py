"""The DreamerV2 pieces shared by `dreamerv2` and `dreamerpro` (moved out of baselines/dreamerv2.py): lambda-targets
and state weights, the weighted actor and critic losses (wmbench/nn/behaviour.py), KL balancing and the `sigmoid2`
Gaussian std (wmbench/nn/rssm.py), the decoupled Adam (wmbench/nn/optim.py) and the step schedule
(wmbench/nn/world_model.py). DreamerV2's own tests (tests/test_dreamerv2.py) pin that it still behaves as before."""

from __future__ import annotations

import pytest
import torch

from wmbench.nn.behaviour import discounted_lambda_targets, weighted_actor_loss, weighted_critic_loss
from wmbench.nn.optim import decoupled_adamw
from wmbench.nn.rssm import RSSM
from wmbench.nn.world_model import StepSchedule


def test_lambda_targets_by_hand_and_state_weights():
    reward = torch.tensor([[1.0], [2.0]])
    disc = torch.tensor([[0.5], [0.8]])
    value = torch.tensor([[10.0], [20.0], [30.0]])
    lam = 0.5
    ret, weight = discounted_lambda_targets(reward, disc, value, lam)
    v1 = 2.0 + 0.8 * ((1 - lam) * 30.0 + lam * 30.0)  # V_1 = r_1 + d_1 ((1 - l) v_2 + l V_2), V_2 = v_2
    v0 = 1.0 + 0.5 * ((1 - lam) * 20.0 + lam * v1)
    assert torch.allclose(ret[:, 0], torch.tensor([v0, v1]))
    assert torch.allclose(weight[:, 0], torch.tensor([1.0, 0.5, 0.4]))  # prod_{k<t} d_k
    assert not weight.requires_grad


def test_weighted_losses_mask_states_and_train_only_their_network():
    torch.manual_seed(0)
    critic = torch.nn.Linear(3, 1)
    feat = torch.randn(4, 5, 3, requires_grad=True)
    ret = torch.randn(3, 5)
    weight = torch.ones(4, 5)
    plain = (0.5 * (critic(feat[:3]).squeeze(-1) - ret).square()).mean()
    loss = weighted_critic_loss(critic, feat, ret, weight)
    assert torch.allclose(loss, plain)
    loss.backward()
    assert feat.grad is None  # the critic sees sg(z)
    weight[1:] = 0.0  # only state 0 counts
    masked = weighted_critic_loss(critic, feat, ret, weight)
    assert torch.allclose(masked, (0.5 * (critic(feat[0]).squeeze(-1) - ret[0]).square()).sum() / 15)
    objective, entropy = torch.randn(2, 5), torch.rand(2, 5)
    actor = weighted_actor_loss(objective, entropy, torch.ones(4, 5), 0.1)
    assert torch.allclose(actor, -(objective + 0.1 * entropy).mean())
    assert torch.allclose(
        weighted_actor_loss(objective, entropy, weight, 0.1), -(objective[0] + 0.1 * entropy[0]).sum() / 10
    )


def rssm(**kwargs) -> RSSM:
    return RSSM(
        8, 2, deter=6, hidden=5, stoch=3, latent="gaussian", blocks=1, norm="none", core="dense", **kwargs
    )


def test_sigmoid2_std_and_bad_std_act():
    torch.manual_seed(0)
    raw = torch.randn(4, 6) * 10
    stats = rssm(std_act="sigmoid2", min_std=0.1).dist_stats(raw)
    assert torch.allclose(stats[:, 3:], 2 * torch.sigmoid(raw[:, 3:] / 2) + 0.1)
    assert stats[:, 3:].max() <= 2.1 and stats[:, 3:].min() >= 0.1
    soft = rssm().dist_stats(raw)  # the default is unchanged: softplus + min_std
    assert torch.allclose(soft[:, 3:], torch.nn.functional.softplus(raw[:, 3:]) + 0.1)
    with pytest.raises(ValueError, match="std_act must be 'softplus' or 'sigmoid2', got 'relu'"):
        rssm(std_act="relu")


def test_balanced_kl_moves_the_prior_more_and_respects_free_nats():
    model = rssm()
    torch.manual_seed(0)
    post = torch.randn(2, 3, 6, requires_grad=True)
    prior = torch.randn(2, 3, 6, requires_grad=True)
    loss, kl = model.balanced_kl_loss(post, prior, balance=1.0, free=0.0)
    loss.backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() > 0  # balance 1: only the prior learns
    assert kl.shape == (2, 3) and torch.allclose(loss, kl.mean())
    post.grad = prior.grad = None
    loss, _ = model.balanced_kl_loss(post, prior, balance=0.0, free=0.0)
    loss.backward()
    assert prior.grad.abs().sum() == 0 and post.grad.abs().sum() > 0
    same = torch.cat([torch.zeros(2, 3, 3), torch.ones(2, 3, 3)], -1).requires_grad_(True)
    loss, _ = model.balanced_kl_loss(same, same, balance=0.8, free=1.0)  # KL 0 < 1 free nat: constant 1
    assert loss.item() == pytest.approx(1.0)


def test_decoupled_adamw_decays_every_variable_by_the_factor():
    param = torch.nn.Parameter(torch.full((3,), 2.0))
    opt = decoupled_adamw([param], lr=1e-3, eps=1e-5, weight_decay=0.1)
    param.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(
        param.detach(), torch.full((3,), 1.8)
    )  # x (1 - 0.1), independent of the learning rate
    frozen = decoupled_adamw([torch.nn.Parameter(torch.ones(1))], lr=0.0, eps=1e-5, weight_decay=0.1)
    assert frozen.param_groups[0]["weight_decay"] == 0.0


class CountingReplay:
    def __init__(self, size: int):
        self.size, self.samples = size, 0

    def __len__(self) -> int:
        return self.size

    def sample(self, batch: int, length: int) -> dict:
        self.samples += 1
        return {"batch": batch, "length": length}


def test_step_schedule_prefill_pretrain_then_every_k_steps():
    schedule = StepSchedule(prefill=3, pretrain=2, train_every=2, train_steps=1, batch_size=4, batch_length=5)
    replay = CountingReplay(size=10)
    calls = []

    def train(batch):
        calls.append(batch)
        return {"loss": float(len(calls))}

    randomly = [schedule.act_randomly(1, "train") for _ in range(3)]
    assert randomly == [True, True, True] and not schedule.act_randomly(1, "eval") and schedule.acted == 3
    assert schedule.train(replay, 3, train) == {"loss": 2.0}  # 1 + pretrain updates, mean metrics
    assert len(calls) == 3 and calls[0] == {"batch": 4, "length": 5}
    assert schedule.train(replay, 4, train) == {}
    assert schedule.train(replay, 5, train) == {"loss": 4.0} and len(calls) == 4
    assert StepSchedule(3, 0, 1, 1, 4, 50).train(CountingReplay(100), 1, train) == {}  # prefill not acted yet
    short = StepSchedule(0, 0, 1, 1, 4, 50)
    assert short.train(CountingReplay(10), 1, train) == {}  # replay shorter than one sequence


def test_step_each_trains_every_network_from_its_own_loss_only_and_clips_separately():
    from wmbench.nn.optim import step_each

    a = torch.nn.Parameter(torch.tensor([1.0]))
    b = torch.nn.Parameter(torch.tensor([2.0]))
    opt_a, opt_b = torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)
    loss_a = (a * b).sum()  # d/da = b = 2 (b gets no update from this loss)
    loss_b = 30.0 * (a * b).sum()  # d/db = 30 a = 30, clipped to 10; evaluated before a moves
    norms = step_each([(loss_a, [a], opt_a), (loss_b, [b], opt_b)], clip=10.0)
    assert [float(n) for n in norms] == pytest.approx([2.0, 30.0])  # norms before clipping
    assert a.item() == pytest.approx(1.0 - 0.1 * 2.0)
    assert b.item() == pytest.approx(2.0 - 0.1 * 10.0)
