"""Gaussian-process regression and closed-form Gaussian moment matching (PILCO's approximate inference).

What this module owns:

- `GP`: multi-output GP regression, one independent GP per output dimension with a squared-exponential ARD kernel
  k_a(x, x') = sf_a^2 exp(-1/2 (x - x')^T Lambda_a^-1 (x - x')), Lambda_a = diag(ell_a^2), Gaussian noise sn_a^2.
  Hyper-parameters are log-parameterised and fitted by L-BFGS on the negative log marginal likelihood plus
  PILCO's soft "curb" penalty (pilcoV0.9 `hypCurb`) that keeps length-scales below `curb_ls` times the input std
  and the signal-to-noise ratio sf/sn below `curb_snr`. Above `max_full` training points it switches to the
  sparse FITC / SPGP approximation (Snelson & Ghahramani 2006) with `n_inducing` pseudo-inputs, initialised from
  a data subset and optimised jointly with the hyper-parameters (as PILCO does for long experience).
- `cholesky`: Cholesky factorisation with jitter escalation (warns naming the jitter; raises `GPError` naming the
  matrix size and the largest jitter tried).
- `GPPosterior`: the prediction-ready form shared by the full and the sparse GP and by PILCO's RBF controller:
  support points P, weights beta_a and a matrix iK_a, so that mean_a(x) = sum_i beta_ai k_a(x, p_i) and
  var_a(x) = sf_a^2 - k_a(x)^T iK_a k_a(x) (+ sn_a^2). Full GP: P = X, iK = (K + sn^2 I)^-1. FITC: P = pseudo
  inputs, iK = Kmm^-1 - (Kmm + Kmn Lam^-1 Knm)^-1.
- `moment_match`: exact mean, covariance and input-output covariance of the GP prediction at a Gaussian input
  x ~ N(m, S) for SE kernels (PILCO paper Sec. 2.2; Deisenroth's thesis, prediction at uncertain inputs).
- Exact moments of trigonometric features (`trig_augment`), of PILCO's sine squashing (`sin_squash`) and the
  expected saturating cost (`expected_saturating_cost`) under a Gaussian.

Every moment-matching function returns (M, V, Ct) with Ct = S^-1 cov[x, f(x)] (PILCO's convention, = E[df/dx]^T
for Gaussian x by Stein's lemma), so that `gaussian_append` can extend a joint Gaussian with the new variables'
cross-covariances to *all* other variables without inverting S. Gradients come from autograd, not from
hand-derived derivatives as in the MATLAB code.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from wmbench.errors import WmbenchError


class GPError(WmbenchError, RuntimeError):
    """A GP computation failed in a way the user can act on (e.g. a covariance matrix that is not positive definite)."""


# ----------------------------------------------------------------------------------------------------------------
# Cholesky with jitter escalation


def cholesky(matrix: Tensor, max_tries: int = 6, first_jitter: float = 1e-8, warn: bool = True) -> Tensor:
    """Lower Cholesky factor of a (batch of) symmetric positive-definite matrix.

    If the factorisation fails, jitter * mean(diag) is added to the diagonal, starting at `first_jitter` and growing
    10x per try, up to `max_tries` tries; each jittered success warns (naming the jitter). When all fail, raises
    `GPError` naming the matrix size and the largest jitter tried.
    """
    L, info = torch.linalg.cholesky_ex(matrix)
    if not bool((info > 0).any()) and bool(torch.isfinite(L).all()):
        return L
    n = matrix.shape[-1]
    eye = torch.eye(n, dtype=matrix.dtype, device=matrix.device)
    scale = (
        matrix.diagonal(dim1=-2, dim2=-1).abs().mean(-1, keepdim=True).unsqueeze(-1).detach().clamp_min(1e-12)
    )
    jitter = first_jitter
    tried = 0.0
    for _ in range(max_tries):
        tried = jitter
        L, info = torch.linalg.cholesky_ex(matrix + jitter * scale * eye)
        if not bool((info > 0).any()) and bool(torch.isfinite(L).all()):
            if warn:
                warnings.warn(
                    f"Cholesky of a {n}x{n} matrix needed jitter {jitter:.1e} x mean(diag) on the diagonal",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return L
        jitter *= 10.0
    finite = bool(torch.isfinite(matrix).all())
    raise GPError(
        f"Cholesky of a {n}x{n} matrix failed even with jitter {tried:.1e} x mean(diag) on the diagonal "
        f"({'not positive definite' if finite else 'it contains NaN/inf'}). Fix: remove duplicate inputs, raise "
        "the noise floor, or rescale the inputs."
    )


# ----------------------------------------------------------------------------------------------------------------
# Kernel


def se_kernel(x1: Tensor, x2: Tensor, log_ls: Tensor, log_sf: Tensor) -> Tensor:
    """SE ARD kernel per output: x1 [n1, D], x2 [n2, D], log_ls [E, D], log_sf [E] -> [E, n1, n2]."""
    a = x1.unsqueeze(0) / log_ls.exp().unsqueeze(1)  # [E, n1, D]
    b = x2.unsqueeze(0) / log_ls.exp().unsqueeze(1)
    d2 = (
        a.pow(2).sum(-1).unsqueeze(-1) + b.pow(2).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
    ).clamp_min(0)
    return (2 * log_sf).exp()[:, None, None] * torch.exp(-0.5 * d2)


# ----------------------------------------------------------------------------------------------------------------
# Posterior form shared by full GP, FITC and the RBF controller


@dataclass
class GPPosterior:
    """mean_a(x) = sum_i beta[a, i] k_a(x, points_i); var_a(x) = sf_a^2 - k_a(x)^T iK[a] k_a(x) (+ sn_a^2).

    `iK` is None for a deterministic RBF network (PILCO's controller: no model uncertainty term).
    """

    points: Tensor  # [n, D]
    beta: Tensor  # [E, n]
    iK: Tensor | None  # [E, n, n]
    log_ls: Tensor  # [E, D]
    log_sf: Tensor  # [E]
    log_sn: Tensor  # [E]

    def predict(self, x: Tensor, include_noise: bool = True) -> tuple[Tensor, Tensor]:
        """Mean [N, E] and variance [N, E] at deterministic inputs x [N, D]."""
        k = se_kernel(x, self.points, self.log_ls, self.log_sf)  # [E, N, n]
        mean = (k * self.beta.unsqueeze(1)).sum(-1).T
        if self.iK is None:
            return mean, torch.zeros_like(mean)
        var = (2 * self.log_sf).exp()[:, None] - ((k @ self.iK) * k).sum(-1)
        if include_noise:
            var = var + (2 * self.log_sn).exp()[:, None]
        return mean, var.T.clamp_min(0)


# ----------------------------------------------------------------------------------------------------------------
# GP regression


class GP:
    """Independent SE-ARD GPs for each column of `targets`, fitted by (penalised) marginal likelihood.

    gp = GP(inputs [n, D], targets [n, E]); gp.fit(); post = gp.posterior(); mean, var = gp.predict(x)
    With n > max_full the sparse FITC approximation with n_inducing pseudo-inputs is used.
    """

    def __init__(
        self,
        inputs: Tensor,
        targets: Tensor,
        max_full: int = 300,
        n_inducing: int = 300,
        curb_ls: float = 100.0,
        curb_snr: float = 500.0,
        curb_power: float = 30.0,
        seed: int = 0,
        init: dict[str, Tensor] | None = None,
    ):
        self.X = torch.as_tensor(inputs, dtype=torch.float64)
        self.Y = torch.as_tensor(targets, dtype=torch.float64)
        if self.Y.dim() == 1:
            self.Y = self.Y[:, None]
        if self.X.dim() != 2 or self.X.shape[0] != self.Y.shape[0]:
            raise GPError(
                f"GP inputs {tuple(self.X.shape)} and targets {tuple(self.Y.shape)} must be [n, D] and [n, E]"
            )
        n, D = self.X.shape
        E = self.Y.shape[1]
        self.curb_ls, self.curb_snr, self.curb_power = curb_ls, curb_snr, curb_power
        self.sparse = n > max_full
        x_std = self.X.std(0).clamp_min(1e-6) if n > 1 else torch.ones(D, dtype=torch.float64)
        y_std = self.Y.std(0).clamp_min(1e-6) if n > 1 else torch.ones(E, dtype=torch.float64)
        self.log_x_std = x_std.log()
        # PILCO's initialisation (train.m): length-scales = input std, sf = target std, sn = sf / 10.
        self.log_ls = x_std.log().repeat(E, 1).clone()
        self.log_sf = y_std.log().clone()
        self.log_sn = (y_std / 10).log().clone()
        self.inducing: Tensor | None = None
        if self.sparse:
            gen = torch.Generator().manual_seed(int(seed))
            index = torch.randperm(n, generator=gen)[: min(n_inducing, n)]
            self.inducing = self.X[index].clone()
        if init is not None:
            self.log_ls = init["log_ls"].clone().to(torch.float64)
            self.log_sf = init["log_sf"].clone().to(torch.float64)
            self.log_sn = init["log_sn"].clone().to(torch.float64)
            if self.sparse and init.get("inducing") is not None and init["inducing"].shape[1] == D:
                self.inducing = init["inducing"].clone().to(torch.float64)
        self._post: GPPosterior | None = None

    # -- objective --------------------------------------------------------------------------------------------

    def penalty(self, log_ls: Tensor, log_sf: Tensor, log_sn: Tensor) -> Tensor:
        """PILCO's hyper-parameter curb: ((log ell - log std_x)/log curb_ls)^p + ((log sf - log sn)/log curb_snr)^p."""
        p = self.curb_power
        ls = (((log_ls - self.log_x_std) / math.log(self.curb_ls)) ** p).sum()
        snr = (((log_sf - log_sn) / math.log(self.curb_snr)) ** p).sum()
        return ls + snr

    def nlml(self, log_ls: Tensor, log_sf: Tensor, log_sn: Tensor, inducing: Tensor | None = None) -> Tensor:
        """Negative log marginal likelihood summed over outputs (FITC's if `inducing` is given)."""
        X, Y = self.X, self.Y
        n = X.shape[0]
        sn2 = (2 * log_sn).exp()
        y = Y.T.unsqueeze(-1)  # [E, n, 1]
        if inducing is None:
            K = se_kernel(X, X, log_ls, log_sf) + sn2[:, None, None] * torch.eye(n, dtype=X.dtype)
            L = cholesky(K, warn=False)
            alpha = torch.cholesky_solve(y, L)
            fit = 0.5 * (y * alpha).sum((-1, -2))
            logdet = L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            return (fit + logdet + 0.5 * n * math.log(2 * math.pi)).sum()
        # FITC: cov = Qnn + Lam, Qnn = Knm Kmm^-1 Kmn, Lam = diag(Knn - Qnn) + sn^2 (Snelson & Ghahramani 2006).
        m = inducing.shape[0]
        Kmm = se_kernel(inducing, inducing, log_ls, log_sf)
        Kmn = se_kernel(inducing, X, log_ls, log_sf)
        Lm = cholesky(
            Kmm + 1e-8 * (2 * log_sf).exp()[:, None, None] * torch.eye(m, dtype=X.dtype), warn=False
        )
        V = torch.linalg.solve_triangular(Lm, Kmn, upper=False)  # [E, m, n]
        lam = ((2 * log_sf).exp()[:, None] - V.pow(2).sum(-2)).clamp_min(0) + sn2[:, None]  # [E, n]
        Vs = V / lam.sqrt().unsqueeze(-2)
        A = torch.eye(m, dtype=X.dtype) + Vs @ Vs.transpose(-1, -2)
        LA = cholesky(A, warn=False)
        ys = y / lam.sqrt().unsqueeze(-1)
        c = torch.linalg.solve_triangular(LA, Vs @ ys, upper=False)
        fit = 0.5 * (ys.pow(2).sum((-1, -2)) - c.pow(2).sum((-1, -2)))
        logdet = 0.5 * lam.log().sum(-1) + LA.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return (fit + logdet + 0.5 * n * math.log(2 * math.pi)).sum()

    # -- fitting ----------------------------------------------------------------------------------------------

    def fit(self, max_iter: int = 300) -> dict[str, float]:
        """Fit hyper-parameters (and pseudo-inputs when sparse) by L-BFGS on the penalised NLML."""
        params = [
            self.log_ls.clone().requires_grad_(),
            self.log_sf.clone().requires_grad_(),
            self.log_sn.clone().requires_grad_(),
        ]
        if self.sparse:
            params.append(self.inducing.clone().requires_grad_())
        n = self.X.shape[0]
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            history_size=20,
        )

        best = {"loss": math.inf, "params": [p.detach().clone() for p in params]}

        def objective() -> Tensor:
            opt.zero_grad()
            induce = params[3] if self.sparse else None
            loss = (self.nlml(params[0], params[1], params[2], induce) + self.penalty(*params[:3])) / n
            loss.backward()
            if bool(torch.isfinite(loss)) and float(loss.detach()) < best["loss"]:
                best["loss"] = float(loss.detach())
                best["params"] = [p.detach().clone() for p in params]
            return loss

        start = float(objective().detach())
        try:
            opt.step(objective)
        except GPError:
            pass  # a line-search step into an ill-conditioned region: the best parameters seen are kept below
        end_params = best["params"]
        self.log_ls, self.log_sf, self.log_sn = end_params[:3]
        if self.sparse:
            self.inducing = end_params[3]
        self._post = None
        with torch.no_grad():
            final = float(self.nlml(self.log_ls, self.log_sf, self.log_sn, self.inducing) / n)
        return {"gp_nlml_start": start, "gp_nlml": final, "gp_sparse": float(self.sparse)}

    # -- prediction -------------------------------------------------------------------------------------------

    def posterior(self) -> GPPosterior:
        """Support points, weights and iK for predictions (cached until the next fit)."""
        if self._post is not None:
            return self._post
        X, Y = self.X, self.Y
        sn2 = (2 * self.log_sn).exp()
        y = Y.T.unsqueeze(-1)
        if not self.sparse:
            n = X.shape[0]
            K = se_kernel(X, X, self.log_ls, self.log_sf) + sn2[:, None, None] * torch.eye(n, dtype=X.dtype)
            L = cholesky(K)
            beta = torch.cholesky_solve(y, L).squeeze(-1)
            iK = torch.cholesky_inverse(L)
            self._post = GPPosterior(X, beta, iK, self.log_ls, self.log_sf, self.log_sn)
            return self._post
        Z = self.inducing
        m = Z.shape[0]
        eye = torch.eye(m, dtype=X.dtype)
        Kmm = se_kernel(Z, Z, self.log_ls, self.log_sf) + 1e-8 * (2 * self.log_sf).exp()[:, None, None] * eye
        Kmn = se_kernel(Z, X, self.log_ls, self.log_sf)
        Lm = cholesky(Kmm)
        V = torch.linalg.solve_triangular(Lm, Kmn, upper=False)
        lam = ((2 * self.log_sf).exp()[:, None] - V.pow(2).sum(-2)).clamp_min(0) + sn2[:, None]
        # Q = Kmm + Kmn Lam^-1 Knm;  beta = Q^-1 Kmn Lam^-1 y;  iK = Kmm^-1 - Q^-1 (FITC predictive equations).
        Q = Kmm + (Kmn / lam.unsqueeze(-2)) @ Kmn.transpose(-1, -2)
        LQ = cholesky(Q)
        beta = torch.cholesky_solve((Kmn / lam.unsqueeze(-2)) @ y, LQ).squeeze(-1)
        iK = torch.cholesky_inverse(Lm) - torch.cholesky_inverse(LQ)
        self._post = GPPosterior(Z, beta, iK, self.log_ls, self.log_sf, self.log_sn)
        return self._post

    def predict(self, x: Tensor, include_noise: bool = True) -> tuple[Tensor, Tensor]:
        """Predictive mean and variance [N, E] at deterministic inputs [N, D]."""
        return self.posterior().predict(torch.as_tensor(x, dtype=torch.float64), include_noise)

    def hyperparameters(self) -> dict[str, Tensor]:
        out = {"log_ls": self.log_ls, "log_sf": self.log_sf, "log_sn": self.log_sn}
        if self.inducing is not None:
            out["inducing"] = self.inducing
        return out


# ----------------------------------------------------------------------------------------------------------------
# Moment matching at Gaussian inputs


def moment_match(
    post: GPPosterior, m: Tensor, S: Tensor, include_noise: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact moments of the GP prediction f(x) at x ~ N(m, S) for SE kernels.

    Returns mean M [E], covariance V [E, E] and Ct = S^-1 cov[x, f(x)] [D, E]. With `post.iK` None (RBF network)
    the model-uncertainty term E_x[var f(x)] is left out (PILCO's `congp`). PILCO paper Sec. 2.2.
    """
    P, beta, log_ls = post.points, post.beta, post.log_ls
    E, D = log_ls.shape
    eye = torch.eye(D, dtype=m.dtype, device=m.device)
    ls2 = (2 * log_ls).exp()  # [E, D], diagonal of Lambda_a
    sf2 = (2 * post.log_sf).exp()
    nu = P - m  # [n, D]
    # Mean: q_ai = sf_a^2 |S Lambda_a^-1 + I|^-1/2 exp(-1/2 nu_i^T (S + Lambda_a)^-1 nu_i).
    B = S.unsqueeze(0) + torch.diag_embed(ls2)  # [E, D, D]
    LB = torch.linalg.cholesky(B)
    tB = torch.cholesky_solve(nu.T.unsqueeze(0).expand(E, D, -1), LB)  # (S + Lambda_a)^-1 nu^T  [E, D, n]
    logdet_ratio = 2 * LB.diagonal(dim1=-2, dim2=-1).log().sum(-1) - ls2.log().sum(-1)  # log|S Lambda^-1 + I|
    q = sf2[:, None] * torch.exp(
        -0.5 * logdet_ratio[:, None] - 0.5 * (nu.T.unsqueeze(0) * tB).sum(1)
    )  # [E, n]
    bq = beta * q
    M = bq.sum(-1)
    # Input-output covariance: cov[x, f_a] = S (S + Lambda_a)^-1 sum_i beta_ai q_ai nu_i.
    Ct = (tB @ bq.unsqueeze(-1)).squeeze(-1).T  # [D, E]
    # Second moments: Q_ij = k_a(x_i, m) k_b(x_j, m) |R|^-1/2 exp(1/2 z_ij^T R^-1 S z_ij),
    # R = S (Lambda_a^-1 + Lambda_b^-1) + I, z_ij = Lambda_a^-1 nu_i + Lambda_b^-1 nu_j.
    # Only the pairs a <= b are computed (Q_ba = Q_ab^T), and the n x n work is one bmm, one add and one exp per
    # pair: this is the rollout's hot loop.
    ia, ib = torch.triu_indices(E, E, device=m.device)
    iL = 1.0 / ls2  # [E, D]
    U = nu.unsqueeze(0) * iL.unsqueeze(1)  # Lambda_a^-1 nu_i  [E, n, D]
    log_k = (2 * post.log_sf)[:, None] - 0.5 * (nu.unsqueeze(0) * U).sum(-1)  # log k_a(x_i, m)  [E, n]
    R = S.unsqueeze(0) * (iL[ia] + iL[ib]).unsqueeze(1) + eye  # [P, D, D]
    T = torch.linalg.solve(R, S.expand(len(ia), D, D))  # R^-1 S (symmetric)
    T = 0.5 * (T + T.transpose(-1, -2))
    logdet_R = torch.linalg.slogdet(R)[1]  # [P]
    Ua, Ub = U[ia], U[ib]  # [P, n, D]
    UaT, UbT = Ua @ T, Ub @ T
    row = log_k[ia] + 0.5 * (UaT * Ua).sum(-1) - 0.5 * logdet_R[:, None]  # [P, n]
    col = log_k[ib] + 0.5 * (UbT * Ub).sum(-1)
    Q = torch.exp(UaT @ Ub.transpose(-1, -2) + (row.unsqueeze(-1) + col.unsqueeze(-2)))  # [P, n, n]
    pair = ((beta[ia].unsqueeze(1) @ Q) * beta[ib].unsqueeze(1)).sum(
        (-1, -2)
    )  # E[f_a f_b] = beta_a^T Q beta_b
    second = torch.zeros(E, E, dtype=m.dtype, device=m.device).index_put((ia, ib), pair)
    second = second + torch.triu(second, diagonal=1).T
    V = second - M[:, None] * M[None, :]
    if post.iK is not None:
        # Expected model variance E_x[sf_a^2 - k_a(x)^T iK_a k_a(x)] = sf_a^2 - tr(iK_a Q_aa).
        diag = (ia == ib).nonzero().squeeze(-1)
        V = V + torch.diag(sf2 - (post.iK * Q[diag]).sum((-1, -2)))
        if include_noise:
            V = V + torch.diag((2 * post.log_sn).exp())
    V = 0.5 * (V + V.T)
    return M, V, Ct


def gaussian_append(
    m: Tensor, S: Tensor, idx: list[int] | Tensor, M: Tensor, V: Tensor, Ct: Tensor
) -> tuple[Tensor, Tensor]:
    """Extend the joint Gaussian N(m, S) with new variables y = f(x[idx]) of moments (M, V, Ct).

    cov[x_all, y] = S[:, idx] Ct: exact for Gaussian x when Ct = S_idx^-1 cov[x_idx, y] (Stein's lemma), which is how
    PILCO joins the state, the control and the GP prediction into one Gaussian.
    """
    cross = S[:, idx] @ Ct  # [N, E]
    top = torch.cat([S, cross], dim=1)
    bottom = torch.cat([cross.T, V], dim=1)
    return torch.cat([m, M]), torch.cat([top, bottom], dim=0)


def _expected_cos_sin(mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """E[cos y], E[sin y] for y ~ N(mean, var): exp(-var/2) cos(mean), exp(-var/2) sin(mean)."""
    decay = torch.exp(-0.5 * var)
    return decay * torch.cos(mean), decay * torch.sin(mean)


def trig_augment(m: Tensor, S: Tensor, angle_idx: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Exact moments of [sin(theta_1), cos(theta_1), sin(theta_2), ...] for theta = x[angle_idx], x ~ N(m, S).

    Returns (M [2k], V [2k, 2k], Ct [k, 2k]) with Ct = S_theta^-1 cov[theta, (sin, cos)] (PILCO's `gTrig`).
    Uses E[cos(a +- b)] = exp(-Var(a +- b)/2) cos(E a +- E b) and the product-to-sum identities.
    """
    mu = m[angle_idx]
    St = S[angle_idx][:, angle_idx]
    k = mu.shape[0]
    d = St.diagonal()
    cos_m, sin_m = _expected_cos_sin(mu, d)
    var_minus = d[:, None] + d[None, :] - 2 * St
    var_plus = d[:, None] + d[None, :] + 2 * St
    c_minus, s_minus = _expected_cos_sin(mu[:, None] - mu[None, :], var_minus)
    c_plus, s_plus = _expected_cos_sin(mu[:, None] + mu[None, :], var_plus)
    ss = 0.5 * (c_minus - c_plus) - sin_m[:, None] * sin_m[None, :]
    cc = 0.5 * (c_minus + c_plus) - cos_m[:, None] * cos_m[None, :]
    sc = 0.5 * (s_plus + s_minus) - sin_m[:, None] * cos_m[None, :]  # cov[sin a_i, cos a_j]
    M = torch.stack([sin_m, cos_m], dim=1).reshape(2 * k)
    V = torch.stack([torch.stack([ss, sc], -1), torch.stack([sc.T, cc], -1)], 1).reshape(2 * k, 2 * k)
    # E[d sin/d theta] = E[cos theta], E[d cos/d theta] = -E[sin theta].
    Ct = torch.zeros(k, 2 * k, dtype=m.dtype, device=m.device)
    Ct[torch.arange(k), 2 * torch.arange(k)] = cos_m
    Ct[torch.arange(k), 2 * torch.arange(k) + 1] = -sin_m
    return M, 0.5 * (V + V.T), Ct


# PILCO's squashing (gSat): u = u_max (9 sin x + sin 3x) / 8, a smooth saturation of x into [-u_max, u_max].
SQUASH_WEIGHTS = (9.0 / 8.0, 1.0 / 8.0)
SQUASH_FREQS = (1.0, 3.0)


def squash(x: Tensor, u_max: Tensor | float) -> Tensor:
    """Deterministic sine squashing u_max (9 sin x + sin 3x) / 8."""
    return u_max * sum(w * torch.sin(a * x) for w, a in zip(SQUASH_WEIGHTS, SQUASH_FREQS, strict=True))


def sin_squash(m: Tensor, S: Tensor, u_max: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact moments of u_i = u_max_i (9 sin x_i + sin 3x_i)/8 for x ~ N(m, S) (PILCO's `gSat`).

    Returns (M [U], V [U, U], Ct [U, U]) with Ct = S^-1 cov[x, u] = diag(E[du_i/dx_i]).
    """
    w = torch.tensor(SQUASH_WEIGHTS, dtype=m.dtype, device=m.device)
    f = torch.tensor(SQUASH_FREQS, dtype=m.dtype, device=m.device)
    d = S.diagonal()
    # Per-term means E[sin(f_k x_i)] = exp(-f_k^2 S_ii / 2) sin(f_k m_i).
    cos_k, sin_k = _expected_cos_sin(f[None, :] * m[:, None], f[None, :] ** 2 * d[:, None])  # [U, K]
    M = u_max * (w * sin_k).sum(-1)
    # E[sin(f_k x_i) sin(f_l x_j)] = 1/2 (E cos(f_k x_i - f_l x_j) - E cos(f_k x_i + f_l x_j)).
    a = (f[None, :] * m[:, None])[:, None, :, None]  # f_k m_i  [U, 1, K, 1]
    b = (f[None, :] * m[:, None])[None, :, None, :]  # f_l m_j  [1, U, 1, K]
    va = (f[None, :] ** 2 * d[:, None])[:, None, :, None]
    vb = (f[None, :] ** 2 * d[:, None])[None, :, None, :]
    cab = f[None, None, :, None] * f[None, None, None, :] * S[:, :, None, None]  # f_k f_l S_ij
    c_minus, _ = _expected_cos_sin(a - b, va + vb - 2 * cab)
    c_plus, _ = _expected_cos_sin(a + b, va + vb + 2 * cab)
    prod = 0.5 * (c_minus - c_plus)  # [U, U, K, K]
    second = (w[:, None] * w[None, :] * prod).sum((-1, -2)) * u_max[:, None] * u_max[None, :]
    V = second - M[:, None] * M[None, :]
    Ct = torch.diag(u_max * (w * f * cos_k).sum(-1))
    return M, 0.5 * (V + V.T), Ct


def expected_saturating_cost(m: Tensor, S: Tensor, target: Tensor, width: float) -> Tensor:
    """E[1 - exp(-|z - target|^2 / (2 width^2))] for z ~ N(m, S), in closed form (PILCO paper, Sec. 2.2):

    1 - |I + S W|^-1/2 exp(-1/2 (m - t)^T W (I + S W)^-1 (m - t)),  W = I / width^2.
    """
    k = m.shape[0]
    eye = torch.eye(k, dtype=m.dtype, device=m.device)
    W = eye / width**2
    A = eye + S @ W
    diff = (m - target).unsqueeze(-1)
    quad = (diff.T @ W @ torch.linalg.solve(A, diff)).squeeze()
    return 1 - torch.exp(-0.5 * quad) / torch.sqrt(torch.linalg.det(A))
