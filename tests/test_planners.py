"""Planner tests: each planner finds the optimum of a known concave return, bad settings raise clear errors."""

import gymnasium
import numpy as np
import pytest
import torch

from wmbench.nn.planners import CEMPlanner, MPPIPlanner, PlannerError, RandomShootingPlanner

TARGET = torch.tensor([[0.3, -0.5], [0.6, 0.2], [-0.4, 0.1]])  # optimum [H=3, A=2], inside [-1, 1]


def quadratic_return(state, actions):
    # Known maximiser: actions == TARGET + state; the state shift checks that initial_state reaches the rollout.
    return -((actions - (TARGET + state)) ** 2).sum(dim=(1, 2))


SPACE = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.mark.parametrize(
    "planner, tol",
    [
        (CEMPlanner(population=200, elites=20, iterations=8, seed=0), 0.05),
        (CEMPlanner(population=200, elites=20, iterations=8, sampling="clip", seed=0), 0.05),
        (MPPIPlanner(population=500, iterations=8, noise_std=0.3, temperature=0.05, seed=0), 0.1),
        # Uniform search over 6 dims: only coarse accuracy is expected.
        (RandomShootingPlanner(population=4000, seed=0), 0.6),
    ],
)
def test_planner_finds_quadratic_optimum(planner, tol):
    state = torch.tensor(0.1)
    plan = planner.plan(state, quadratic_return, 3, SPACE)
    assert plan.shape == (3, 2)
    assert torch.max(torch.abs(plan - (TARGET + 0.1))) < tol


def test_cem_respects_bounds_with_optimum_outside():
    # Maximiser at +3 lies outside [-1, 1]: the plan must sit at the bound, never beyond.
    # Truncated sampling keeps 2 std inside the bounds, so it approaches a bound more slowly than clipping.
    for sampling, closest in (("truncated", 0.5), ("clip", 0.85)):
        plan = CEMPlanner(population=100, elites=10, iterations=5, sampling=sampling).plan(
            None, lambda s, a: -((a - 3.0) ** 2).sum(dim=(1, 2)), 4, (np.full(1, -1.0), np.full(1, 1.0))
        )
        assert plan.max() <= 1.0 and plan.min() > closest


def test_warm_start_shifts_previous_solution():
    planner = CEMPlanner(population=4000, elites=2, iterations=1)
    planner.previous = torch.arange(4.0).reshape(4, 1) / 10
    seen = {}

    def rollout(state, actions):
        seen["actions"] = actions
        return torch.zeros(actions.shape[0])

    planner.plan(None, rollout, 4, (np.full(1, -1.0), np.full(1, 1.0)))
    # All-equal returns: the mean moves to the elite mean, but the sampling centre was the shifted previous plan.
    centre = seen["actions"].mean(0).squeeze(-1)
    assert torch.allclose(centre[:3], torch.tensor([0.1, 0.2, 0.3]), atol=0.03)
    assert abs(float(centre[3])) < 0.03  # the new last step starts at the bounds' centre
    planner.reset()
    assert planner.previous is None


def test_planet_cem_starts_every_search_at_the_centre_with_its_init_std():
    # PlaNet's CEM: no warm start, first-iteration std `init_std` (1), plain clipped samples
    planner = CEMPlanner(population=4000, elites=2, iterations=1, sampling="clip", alpha=0.0, init_std=1.0,
                         warm_start=False)
    planner.previous = torch.full((4, 1), 0.5)
    seen = {}

    def rollout(state, actions):
        seen["actions"] = actions
        return torch.zeros(actions.shape[0])

    bounds = (np.full(1, -10.0), np.full(1, 10.0))  # wide bounds: the clip does not bias the spread
    planner.plan(None, rollout, 4, bounds)
    assert torch.allclose(seen["actions"].mean(0), torch.zeros(4, 1), atol=0.06)  # not the shifted previous plan
    assert torch.allclose(seen["actions"].std(0), torch.ones(4, 1), atol=0.05)
    pets = CEMPlanner(population=4000, elites=2, iterations=1, sampling="clip")
    pets.plan(None, rollout, 4, bounds)
    assert bool((seen["actions"].std(0) > 4.5).all())  # PETS: range / 4 = 5 (slightly less after the clip)


def test_resume_generator_state_reproduces_plan():
    a = CEMPlanner(population=50, elites=5, iterations=2, seed=3)
    a.plan(torch.tensor(0.0), quadratic_return, 3, SPACE)
    state = a.state_dict()
    first = a.plan(torch.tensor(0.0), quadratic_return, 3, SPACE)
    b = CEMPlanner(population=50, elites=5, iterations=2, seed=99)
    b.load_state_dict(state)
    assert torch.equal(first, b.plan(torch.tensor(0.0), quadratic_return, 3, SPACE))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"population": 0}, "population"),
        ({"population": 10, "elites": 11}, "elites"),
        ({"population": 10.0}, "population"),
        ({"elites": True}, "elites"),
        ({"iterations": -1}, "iterations"),
        ({"alpha": 1.5}, "alpha"),
        ({"init_std": 0.0}, "init_std"),
        ({"init_std": "1"}, "init_std"),
    ],
)
def test_bad_cem_settings_raise(kwargs, match):
    with pytest.raises(PlannerError, match=match):
        CEMPlanner(**kwargs)


def test_bad_horizon_and_rollout_shape_raise():
    planner = RandomShootingPlanner(population=8)
    with pytest.raises(PlannerError, match="horizon"):
        planner.plan(None, quadratic_return, 0, SPACE)
    with pytest.raises(PlannerError, match="one return per action sequence"):
        planner.plan(None, lambda s, a: torch.zeros(3), 2, SPACE)


def test_nan_returns_never_win():
    # Half the samples "diverge" (NaN return): the plan must come from the finite ones, all near +0.5.
    def rollout(state, actions):
        r = -((actions - 0.5) ** 2).sum(dim=(1, 2))
        return torch.where(actions[:, 0, 0] < 0, torch.full_like(r, float("nan")), r)

    for planner in (
        CEMPlanner(population=100, elites=10, iterations=3),
        RandomShootingPlanner(population=200),
    ):
        plan = planner.plan(None, rollout, 2, SPACE)
        assert torch.all(torch.isfinite(plan)) and plan[0, 0] >= 0
    all_nan = MPPIPlanner(population=10).plan(
        None, lambda s, a: torch.full((a.shape[0],), float("nan")), 2, SPACE
    )
    assert torch.all(all_nan == 0)  # nothing finite to learn from: the bounds' centre stays
