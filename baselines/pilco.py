"""PILCO (Deisenroth & Rasmussen, ICML 2011): GP dynamics + analytic policy search, for the cart-pole swing-up.

Algorithm box (paper Alg. 1), one "trial" = one episode of the protocol:

    apply random controls for `random_trials` episodes
    repeat after every episode:
        fit a GP to all transitions seen:  (x_t, sin theta_t, cos theta_t, u_t) -> x_{t+1} - x_t   (Sec. 2.1)
        improve the controller: minimise J = sum_{t=1..T} E[c(x_t)] over its parameters, where p(x_t) comes from
            analytic moment-matched rollouts through the GP (Sec. 2.2) and dJ/dparams from autograd
            (the paper derives it by hand, Sec. 2.3)
        run the controller in the env

Rollout step (pilcoV0.9 `propagate.m`), with one joint Gaussian over every variable so cross-covariances stay exact:
    state N(m, S) over [x, x_dot, theta, theta_dot]
    -> append (sin theta, cos theta)                                (`trig_augment`)
    -> append the controller's pre-squash output at the policy inputs [x, x_dot, theta_dot, sin, cos]
       (RBF network = deterministic GP mean, or linear)              (`moment_match` / linear moments)
    -> append u = u_max (9 sin(.) + sin(3 .))/8                      (`sin_squash`, PILCO's gSat)
    -> GP prediction of the state change at [x, x_dot, theta_dot, sin, cos, u]   (`moment_match`)
    -> next state = state + change, cov = S + V + C + C^T with C = cov[state, change]
Cost: PILCO's saturating cost of the pole tip distance to the upright target (`expected_saturating_cost` of the
linear map [x, sin, cos] -> tip), with the env's own constants (`wmbench.envs.control.CARTPOLE`).

The method needs the known cost (PILCO assumes it), so it supports the `control` suite's `cartpole_swingup` spaces
only: a 4-D `vector` observation [x, x_dot, theta, theta_dot] and one action in [-1, 1] scaled by the max force.

PILCO computes on the CPU in float64 whatever `device` is: its matrices are small (n <= a few hundred) and the
moment matching needs double precision to stay well conditioned.

Timing within the runner's loop: learning happens in `update` once the finished episode is complete in the replay,
which is after the first env step of the next episode; that episode's first action therefore still comes from
the previous controller (one step of 200).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
import torch
from torch import Tensor

from wmbench.envs.control import CARTPOLE, CartPoleParams
from wmbench.method import Method, MethodError
from wmbench.nn.gp import (
    GP,
    GPPosterior,
    cholesky,
    expected_saturating_cost,
    gaussian_append,
    moment_match,
    sin_squash,
    squash,
    trig_augment,
)
from wmbench.seeding import derive_seed, generator_state, set_generator_state

# Cart-pole state layout of the control suite: [x, x_dot, theta, theta_dot]; theta unwrapped, 0 = hanging down.
ANGLE = 2
STATE_DIM = 4
# Indices in the augmented joint [x, x_dot, theta, theta_dot, sin, cos, u_raw, u]:
POLICY_INPUTS = [0, 1, 3, 4, 5]  # pilcoV0.9 `poli`: the angle enters only through sin/cos
DYNAMICS_INPUTS = [0, 1, 3, 4, 5, 7]  # `dyni` plus the squashed control


@dataclass(frozen=True)
class PILCOConfig:
    preset: str = "default"
    horizon: int = 25  # T: 2.5 s at dt = 0.1 s (the paper's cart-pole horizon)
    random_trials: int = 1  # J = 1 initial episode with uniformly random forces (pilcoV0.9 settings_cp)
    controller: Literal["rbf", "linear"] = "rbf"
    n_basis: int = 50  # RBF controller basis functions (see docs/pilco.md on this figure)
    policy_iters: int = 150  # L-BFGS iterations per policy search (pilcoV0.9 opt.length = 150 line searches)
    gp_iters: int = 300  # L-BFGS iterations for GP hyper-parameters (pilcoV0.9 trainOpt(1) = 300)
    max_full: int = 300  # above this many transitions use FITC (pilcoV0.9: 300 shared inducing inputs)
    n_inducing: int = 300
    curb_ls: float = 100.0  # hyper-parameter curb (pilcoV0.9 hypCurb): ell <= 100 std(x), sf/sn <= 500
    curb_snr: float = 500.0
    init_std: float = 0.1  # S0 = 0.1^2 I, the start-state distribution the rollouts begin from
    rollout_noise: bool = True  # add the GP noise variance to each predicted state change
    replay_bytes: int = 2**26  # the runner's replay capacity: PILCO's data are tiny

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # Tests: a few seconds per trial.
        "tiny": {
            "horizon": 5,
            "n_basis": 5,
            "policy_iters": 3,
            "gp_iters": 5,
            "max_full": 60,
            "n_inducing": 20,
        },
        # The learning check on CPU: a third of the L-BFGS iterations (see docs/pilco.md).
        "fast": {"policy_iters": 50, "gp_iters": 100},
    }


class RBFController:
    """PILCO's RBF network `congp`: pi(x) = sum_i beta_i k(x, c_i), beta = (K + sn^2 I)^-1 t, sf = 1, sn = 0.01.

    Parameters: centres c [N, D], pseudo-targets t [N, U], log length-scales [U, D] (sf and sn fixed, as in PILCO).
    """

    def __init__(self, n_basis: int, in_dim: int, out_dim: int, centres: Tensor, gen: torch.Generator):
        self.params = {
            "centres": centres.clone(),
            "targets": 0.1 * torch.randn(n_basis, out_dim, generator=gen, dtype=torch.float64),
            "log_ls": torch.log(torch.tensor([1.0, 1.0, 1.0, 0.7, 0.7], dtype=torch.float64))[:in_dim]
            .repeat(out_dim, 1)
            .clone(),
        }
        self.out_dim = out_dim

    def posterior(self, params: dict[str, Tensor]) -> GPPosterior:
        c, t, log_ls = params["centres"], params["targets"], params["log_ls"]
        U = self.out_dim
        log_sf = torch.zeros(U, dtype=torch.float64)
        log_sn = torch.full((U,), math.log(0.01), dtype=torch.float64)
        sq = ((c.unsqueeze(0) - c.unsqueeze(1)).unsqueeze(0) / log_ls.exp()[:, None, None, :]).pow(2).sum(-1)
        K = torch.exp(-0.5 * sq) + 1e-4 * torch.eye(c.shape[0], dtype=torch.float64)  # sf = 1, sn^2 = 1e-4
        beta = torch.cholesky_solve(t.T.unsqueeze(-1), cholesky(K)).squeeze(-1)  # [U, N]
        return GPPosterior(c, beta, None, log_ls, log_sf, log_sn)

    def prepare(self, params: dict[str, Tensor]) -> GPPosterior:
        """The parameters in the form `moments` uses (solved once per rollout, not once per step)."""
        return self.posterior(params)

    def moments(self, prepared: GPPosterior, m: Tensor, S: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return moment_match(prepared, m, S)

    def __call__(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return self.posterior(params).predict(x)[0]


class LinearController:
    """pi(x) = W x + b: mean W m + b, covariance W S W^T, S^-1 cov[x, pi] = W^T (pilcoV0.9 `conlin`)."""

    def __init__(self, in_dim: int, out_dim: int, gen: torch.Generator):
        self.params = {
            "W": 0.1 * torch.randn(out_dim, in_dim, generator=gen, dtype=torch.float64),
            "b": torch.zeros(out_dim, dtype=torch.float64),
        }

    def prepare(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        return params

    def moments(self, params: dict[str, Tensor], m: Tensor, S: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        W, b = params["W"], params["b"]
        return W @ m + b, W @ S @ W.T, W.T

    def __call__(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return x @ params["W"].T + params["b"]


def policy_inputs(state: Tensor) -> Tensor:
    """[x, x_dot, theta, theta_dot] -> [x, x_dot, theta_dot, sin theta, cos theta] for batches [N, 4]."""
    theta = state[:, ANGLE]
    return torch.stack([state[:, 0], state[:, 1], state[:, 3], torch.sin(theta), torch.cos(theta)], 1)


def augment(m: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
    """State N(m, S) -> joint N over [x, x_dot, theta, theta_dot, sin theta, cos theta] (pilcoV0.9 `gTrig`)."""
    Mt, Vt, Ct = trig_augment(m, S, [ANGLE])
    return gaussian_append(m, S, [ANGLE], Mt, Vt, Ct)


def tip_cost_moments(ma: Tensor, Sa: Tensor, p: CartPoleParams) -> Tensor:
    """Expected saturating cost of the pole tip (x + l sin theta, -l cos theta) vs the upright target, at the
    augmented state N(ma, Sa) (`augment`): the tip is linear in [x, sin, cos] (pilcoV0.9 `loss_cp`)."""
    length = p.pole_length
    C = torch.zeros(2, ma.shape[0], dtype=ma.dtype)
    C[0, 0], C[0, 4], C[1, 5] = 1.0, length, -length
    target = torch.tensor(p.target, dtype=ma.dtype)
    return expected_saturating_cost(C @ ma, C @ Sa @ C.T, target, p.cost_width)


class PILCO(Method):
    name = "pilco"
    Config = PILCOConfig

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        vector = obs_space.get("vector")
        if vector is None or tuple(vector.shape) != (STATE_DIM,) or "image" in obs_space:
            return (
                "PILCO needs the known cost of the task; it is implemented for the control suite's "
                "cartpole_swingup (vector observation [x, x_dot, theta, theta_dot], no image), "
                f"got observation spaces {obs_space}"
            )
        if not isinstance(act_space, gymnasium.spaces.Box) or tuple(act_space.shape) != (1,):
            return f"PILCO's cart-pole needs one continuous action in [-1, 1], got {act_space}"
        return None

    def __init__(self, obs_space, act_space, config: PILCOConfig, device: str = "cpu", seed: int = 0):
        super().__init__(obs_space, act_space, config, device, seed)
        if config.controller not in ("rbf", "linear"):
            raise MethodError(f"PILCO controller {config.controller!r} unknown; use controller=rbf or linear")
        self.params_env = CARTPOLE
        self.u_max = torch.tensor([self.params_env.max_force], dtype=torch.float64)
        self.rng = np.random.default_rng(derive_seed(seed, "pilco", "random_actions"))
        gen = torch.Generator().manual_seed(derive_seed(seed, "pilco", "init"))
        std = config.init_std
        self.m0 = torch.zeros(STATE_DIM, dtype=torch.float64)
        self.S0 = torch.eye(STATE_DIM, dtype=torch.float64) * std**2
        in_dim = len(POLICY_INPUTS)
        if config.controller == "rbf":
            # Centres ~ the start distribution of the policy inputs (pilcoV0.9: gaussian(mm(poli), ss(poli,poli), nc)).
            Mt, Vt, Ct = trig_augment(self.m0, self.S0, [ANGLE])
            ma, Sa = gaussian_append(self.m0, self.S0, [ANGLE], Mt, Vt, Ct)
            mp, Sp = ma[POLICY_INPUTS], Sa[POLICY_INPUTS][:, POLICY_INPUTS]
            Lp = torch.linalg.cholesky(Sp + 1e-10 * torch.eye(in_dim, dtype=torch.float64))
            centres = mp + torch.randn(config.n_basis, in_dim, generator=gen, dtype=torch.float64) @ Lp.T
            self.controller: RBFController | LinearController = RBFController(
                config.n_basis, in_dim, 1, centres, gen
            )
        else:
            self.controller = LinearController(in_dim, 1, gen)
        self.gp: GP | None = None
        self.trials = 0  # episodes learned from
        self.pending = False  # an episode ended; learn once it is complete in the replay
        self.last_timing: dict[str, float] = {}

    # -- acting -------------------------------------------------------------------------------------------------

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[np.ndarray, Any]:
        vector = np.asarray(obs["vector"], dtype=np.float64).reshape(-1, STATE_DIM)
        if mode == "train" and bool(np.any(obs["is_last"])):
            self.pending = True  # evaluation episodes never enter the replay
        if self.trials < self.config.random_trials:
            action = self.rng.uniform(-1.0, 1.0, size=(len(vector), 1))
        else:
            with torch.no_grad():
                x = policy_inputs(torch.as_tensor(vector))
                u = squash(self.controller(self.controller.params, x), self.u_max)
            action = (u / self.u_max).numpy()
        return action.astype(np.float32), state

    # -- learning -----------------------------------------------------------------------------------------------

    def update(self, replay: Any, step: int) -> dict[str, float]:
        if not self.pending:
            return {}
        episodes = replay.episodes()
        if len(episodes) <= self.trials:
            return {}  # the finished episode is not complete in the replay yet
        self.pending = False
        self.trials = len(episodes)
        if self.trials < self.config.random_trials:
            return {"pilco_trials": float(self.trials)}
        inputs, targets = self.dataset(episodes)
        metrics = self.learn(inputs, targets)
        metrics["pilco_trials"] = float(self.trials)
        return metrics

    @staticmethod
    def dataset(episodes: list[dict[str, np.ndarray]]) -> tuple[Tensor, Tensor]:
        """GP training pairs: ([x, x_dot, theta_dot, sin, cos, u], state_{t+1} - state_t) over all episodes."""
        xs, ys = [], []
        for ep in episodes:
            s = torch.as_tensor(np.asarray(ep["vector"], np.float64))
            a = torch.as_tensor(np.asarray(ep["action"], np.float64)).reshape(len(s), -1)
            u = a.clamp(-1, 1) * CARTPOLE.max_force
            xs.append(torch.cat([policy_inputs(s[:-1]), u[:-1]], 1))
            ys.append(s[1:] - s[:-1])
        return torch.cat(xs), torch.cat(ys)

    def learn(self, inputs: Tensor, targets: Tensor) -> dict[str, float]:
        """One PILCO iteration: fit the GP dynamics on all data, then optimise the controller."""
        cfg = self.config
        t0 = time.perf_counter()
        init = self.gp.hyperparameters() if self.gp is not None else None
        self.gp = GP(
            inputs,
            targets,
            max_full=cfg.max_full,
            n_inducing=cfg.n_inducing,
            curb_ls=cfg.curb_ls,
            curb_snr=cfg.curb_snr,
            seed=derive_seed(self.seed, "pilco", "inducing", self.trials),
            init=init,
        )
        metrics = self.gp.fit(cfg.gp_iters)
        t1 = time.perf_counter()
        metrics.update(self.optimise_policy())
        t2 = time.perf_counter()
        metrics["gp_points"] = float(len(inputs))
        # Wall-clock stays out of the metrics: metrics.jsonl must be identical between runs of one seed.
        self.last_timing = {"gp_seconds": t1 - t0, "policy_seconds": t2 - t1}
        return metrics

    def rollout(
        self, params: dict[str, Tensor], post: GPPosterior, horizon: int | None = None
    ) -> tuple[Tensor, list]:
        """Expected cost sum_t E[c(x_t)], t = 1..T, and the predicted state means/covariances."""
        horizon = self.config.horizon if horizon is None else horizon
        m, S = self.m0, self.S0
        total = torch.zeros((), dtype=torch.float64)
        trajectory = []
        controller = self.controller.prepare(params)
        ma, Sa = augment(m, S)
        for _ in range(horizon):
            m, S = self.step(ma, Sa, post, controller)
            ma, Sa = augment(m, S)  # shared by the cost at t and the next step
            total = total + tip_cost_moments(ma, Sa, self.params_env)
            trajectory.append((m, S))
        return total, trajectory

    def step(self, m: Tensor, S: Tensor, post: GPPosterior, controller: Any) -> tuple[Tensor, Tensor]:
        """One moment-matched time step p(x_t) -> p(x_{t+1}) (paper Sec. 2.2), from the augmented state."""
        Mu, Vu, Cu = self.controller.moments(controller, m[POLICY_INPUTS], S[POLICY_INPUTS][:, POLICY_INPUTS])
        m, S = gaussian_append(m, S, POLICY_INPUTS, Mu, Vu, Cu)  # + u_raw (index 6)
        Ms, Vs, Cs = sin_squash(m[6:7], S[6:7, 6:7], self.u_max)
        m, S = gaussian_append(m, S, [6], Ms, Vs, Cs)  # + u (index 7)
        Md, Vd, Cd = moment_match(
            post,
            m[DYNAMICS_INPUTS],
            S[DYNAMICS_INPUTS][:, DYNAMICS_INPUTS],
            include_noise=self.config.rollout_noise,
        )
        C = S[:STATE_DIM, DYNAMICS_INPUTS] @ Cd  # cov[state, change]
        S_next = S[:STATE_DIM, :STATE_DIM] + Vd + C + C.T
        return m[:STATE_DIM] + Md, 0.5 * (S_next + S_next.T)

    def optimise_policy(self) -> dict[str, float]:
        """Minimise the predicted expected cost over the controller parameters with L-BFGS (paper Sec. 2.3)."""
        assert self.gp is not None
        post = self.gp.posterior()
        post = GPPosterior(
            *(
                t.detach() if isinstance(t, Tensor) else t
                for t in (post.points, post.beta, post.iK, post.log_ls, post.log_sf, post.log_sn)
            )
        )
        params = {k: v.clone().requires_grad_() for k, v in self.controller.params.items()}
        best = {"cost": math.inf, "params": {k: v.detach().clone() for k, v in params.items()}}
        opt = torch.optim.LBFGS(
            list(params.values()),
            lr=1.0,
            max_iter=self.config.policy_iters,
            line_search_fn="strong_wolfe",
            history_size=20,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )
        evaluations = [0]

        def objective() -> Tensor:
            opt.zero_grad()
            cost, _ = self.rollout(params, post)
            evaluations[0] += 1
            if not torch.isfinite(cost):
                # A step into a region where the moment matching is ill-conditioned: push the line search back.
                return torch.tensor(1e10, dtype=torch.float64)
            cost.backward()
            if float(cost.detach()) < best["cost"]:
                best["cost"] = float(cost.detach())
                best["params"] = {k: v.detach().clone() for k, v in params.items()}
            return cost

        with torch.no_grad():
            start = float(self.rollout(params, post)[0])
        try:
            opt.step(objective)
        except (RuntimeError, ValueError):
            pass  # a numerical failure deep in a line search (GPError, LinAlgError): the best parameters seen stay
        self.controller.params = best["params"]  # the start parameters if no evaluation was finite
        return {
            "policy_cost_start": start,
            "policy_cost": best["cost"],
            "policy_evals": float(evaluations[0]),
        }

    # -- checkpointing ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "controller": {k: v.clone() for k, v in self.controller.params.items()},
            "trials": self.trials,
            "pending": self.pending,
            "rng": generator_state(self.rng),
            "gp": None,
        }
        if self.gp is not None:
            state["gp"] = {
                "inputs": self.gp.X.clone(),
                "targets": self.gp.Y.clone(),
                **{k: v.clone() for k, v in self.gp.hyperparameters().items()},
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.params = {k: v.clone().to(torch.float64) for k, v in state["controller"].items()}
        self.trials = int(state["trials"])
        self.pending = bool(state["pending"])
        set_generator_state(self.rng, state["rng"])
        self.gp = None
        if state.get("gp") is not None:
            g = state["gp"]
            cfg = self.config
            self.gp = GP(
                g["inputs"],
                g["targets"],
                max_full=cfg.max_full,
                n_inducing=cfg.n_inducing,
                curb_ls=cfg.curb_ls,
                curb_snr=cfg.curb_snr,
                init=g,
            )
