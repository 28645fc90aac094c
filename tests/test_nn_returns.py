"""wmbench.nn.returns: lambda-returns by hand, percentile normaliser, EMA."""

import torch

from wmbench.nn.returns import PercentileNormalizer, ema_update, lambda_return, replay_lambda_return


def _traj():
    reward = torch.tensor([1.0, 2.0])
    value = torch.tensor([0.0, 10.0, 20.0])
    return reward, value


def test_lambda_return_hand_values():
    reward, value = _traj()
    cont = torch.ones(2)
    # lam = 0: one-step TD targets r_t + gamma v_{t+1}
    assert torch.allclose(lambda_return(reward, cont, value, 0.5, 0.0), torch.tensor([6.0, 12.0]))
    # lam = 1: Monte Carlo with bootstrap v_H: R1 = 2 + .5*20 = 12, R0 = 1 + .5*12 = 7
    assert torch.allclose(lambda_return(reward, cont, value, 0.5, 1.0), torch.tensor([7.0, 12.0]))
    # lam = .5: R0 = 1 + .5 * (.5*10 + .5*12) = 6.5
    assert torch.allclose(lambda_return(reward, cont, value, 0.5, 0.5), torch.tensor([6.5, 12.0]))


def test_lambda_return_stops_at_terminal_and_batches():
    reward, value = _traj()
    ret = lambda_return(reward, torch.tensor([0.0, 1.0]), value, 0.5, 0.5)
    assert torch.isclose(ret[0], torch.tensor(1.0))  # nothing after a terminal transition
    batch = lambda_return(reward[:, None].repeat(1, 3), torch.ones(2, 3), value[:, None].repeat(1, 3), 0.5, 0.5)
    assert batch.shape == (2, 3) and torch.allclose(batch[:, 1], torch.tensor([6.5, 12.0]))


def test_percentile_normaliser_ema_and_floor():
    norm = PercentileNormalizer(decay=0.99, limit=1.0)
    returns = torch.linspace(0, 100, 101)  # P5 = 5, P95 = 95
    offset, scale = norm(returns)
    assert torch.isclose(offset, torch.tensor(0.05)) and torch.isclose(norm.high, torch.tensor(0.95))
    assert scale == 1.0  # max(1, 0.9)
    for _ in range(199):
        norm(returns)
    assert torch.isclose(norm.scale(), torch.tensor(90.0 * (1 - 0.99**200)), rtol=1e-4)
    small = PercentileNormalizer()
    for _ in range(20):
        small(torch.linspace(0, 0.5, 11))
    assert small.scale() == 1.0  # small returns are not scaled up
    restored = PercentileNormalizer()
    restored.load_state_dict(norm.state_dict())
    assert torch.equal(restored.scale(), norm.scale())


def test_ema_update():
    target, source = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    ema_update(target, source, 0.02)
    assert torch.allclose(target.weight, 0.98 * before + 0.02 * source.weight)


def test_replay_lambda_return_hand_values_and_relation_to_lambda_return():
    """2024 repl_loss returns: reward/flags stored with the arriving step, bootstrapped with `boot`; an episode's last
    step stops the recursion at its bootstrap."""
    reward = torch.tensor([[9.0, 1.0, 2.0]])  # reward[0] (arriving at step 0) is never used
    boot = torch.tensor([[5.0, 10.0, 20.0]])
    zeros = torch.zeros(1, 3)
    ret = replay_lambda_return(reward, zeros, zeros, boot, 0.5, 0.5)
    # R1 = 2 + .5 * 20 = 12; R0 = 1 + .5 * (.5 * 10 + .5 * 12) = 6.5 (the lambda_return hand values above)
    assert torch.allclose(ret, torch.tensor([[6.5, 12.0]]))
    same = lambda_return(reward[0, 1:], torch.ones(2), boot[0], 0.5, 0.5)
    assert torch.allclose(ret[0], same)
    last = torch.tensor([[0.0, 1.0, 0.0]])  # step 1 ends its episode: R0 = 1 + .5 * boot_1
    assert torch.allclose(replay_lambda_return(reward, last, zeros, boot, 0.5, 0.5)[0, 0], torch.tensor(6.0))
    term = torch.tensor([[0.0, 1.0, 0.0]])  # step 1 is terminal: nothing after the reward
    assert torch.allclose(replay_lambda_return(reward, zeros, term, boot, 0.5, 0.5)[0, 0], torch.tensor(1.0))
