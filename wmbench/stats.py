"""Aggregate statistics with stratified-bootstrap confidence intervals (Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice"), computed by rliable; a small functional API in rliable's style: arrays in, point
estimates and intervals out, no hidden state.

A score matrix is [runs x tasks] of normalised final scores (rows are runs, i.e. seeds; the bootstrap resamples runs
within each task: "stratified"). `score_matrix` builds these from `wmbench.results.final_scores` and refuses to
average over missing (method, task, seed) cells unless told how to handle them.

Reproducibility: rliable 1.2 draws its bootstrap indices from NumPy's *global* RNG (`np.random.choice` in
`StratifiedBootstrap.update_indices`; its `random_state` argument does not reach those draws), so every function
here seeds the global RNG with `seed` for the duration of the call and restores the caller's state afterwards.
Each method of a {method: matrix} call is estimated from its own stream seeded with `seed`: its intervals do not
depend on which other methods are in the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics as rly_metrics

from wmbench.results import ResultsError, normalise

METRICS: dict[str, Callable[[np.ndarray], float]] = {
    # Interquartile mean over all runs x tasks: robust to outlier runs, more efficient than the median (sec. 4.3).
    "iqm": rly_metrics.aggregate_iqm,
    "mean": rly_metrics.aggregate_mean,
    "median": rly_metrics.aggregate_median,
    # Amount by which the algorithm falls short of normalised score 1 (gamma = 1), scores above 1 clipped.
    "optimality_gap": rly_metrics.aggregate_optimality_gap,
}
DEFAULT_METRICS = ("iqm", "mean", "median", "optimality_gap")


class Interval(NamedTuple):
    """A point estimate and its confidence interval (a plain tuple: `point, low, high = interval`)."""

    point: float
    low: float
    high: float


class Curve(NamedTuple):
    """Estimates at several x values (thresholds or steps): arrays of equal length."""

    x: np.ndarray
    point: np.ndarray
    low: np.ndarray
    high: np.ndarray


@contextlib.contextmanager
def _seeded(seed: int, reps: int = 1, confidence: float = 0.5) -> Iterator[None]:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ResultsError(f"reps must be a positive integer (bootstrap replications), got {reps!r}")
    if not 0 < confidence < 1:
        raise ResultsError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _per_method(data: dict, seed: int, reps: int, confidence: float, estimate: Callable[[dict], tuple]) -> tuple:
    """Run an rliable estimator once per method, each from the same `seed`: a method's intervals are those it gets
    alone, whatever other methods share the call (rliable draws all methods from one global stream in turn, so
    adding a method would otherwise change the others' intervals)."""
    points, intervals = {}, {}
    for key, matrix in data.items():
        with _seeded(seed, reps, confidence):
            p, i = estimate({key: matrix})
        points[key], intervals[key] = p[key], i[key]
    return points, intervals


def check_matrix(scores: np.ndarray | pd.DataFrame, name: str = "scores", ndim: int = 2) -> np.ndarray:
    """Return `scores` as a float array [runs x tasks (x ...)]; raise ResultsError naming NaN/inf cells."""
    labels = None
    if isinstance(scores, pd.DataFrame):
        labels = (list(scores.index), list(scores.columns))
    try:
        arr = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as e:
        raise ResultsError(f"{name}: not a numeric matrix ({e})") from e
    if arr.ndim != ndim:
        shape = "[runs x tasks]" if ndim == 2 else "[runs x tasks x steps]"
        raise ResultsError(f"{name}: expected a {ndim}-D array {shape}, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ResultsError(f"{name}: empty score matrix (shape {arr.shape}); need at least one run and one task")
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        if labels is not None and ndim == 2:
            cells = [f"(run {labels[0][i]!r}, task {labels[1][j]!r})" for i, j in bad[:10]]
        else:
            cells = [str(tuple(int(v) for v in idx)) for idx in bad[:10]]
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ResultsError(f"{name}: NaN or inf at {', '.join(cells)}{more}; remove those runs or fix their scores")
    return arr


def _as_dict(scores: np.ndarray | pd.DataFrame | Mapping[str, np.ndarray], ndim: int = 2) -> tuple[dict, bool]:
    if isinstance(scores, Mapping):
        if not scores:
            raise ResultsError("no methods given (empty dict of score matrices)")
        return {str(k): check_matrix(v, f"scores[{k!r}]", ndim) for k, v in scores.items()}, True
    return {"scores": check_matrix(scores, "scores", ndim)}, False


def _metric_functions(metrics: Sequence[str]) -> list[Callable[[np.ndarray], float]]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ResultsError(f"unknown metric(s) {unknown}; metrics: {', '.join(METRICS)}")
    return [METRICS[m] for m in metrics]


def aggregate(
    scores: np.ndarray | pd.DataFrame | Mapping[str, np.ndarray],
    metrics: Sequence[str] = DEFAULT_METRICS,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    task_bootstrap: bool = False,
) -> dict[str, Interval] | dict[str, dict[str, Interval]]:
    """Aggregate metrics with stratified-bootstrap percentile CIs.

    `scores`: one matrix [runs x tasks] -> {metric: Interval}; or {method: matrix} -> {method: {metric: Interval}}.
    All metrics of a method come from the same bootstrap resamples (one rliable call per method).
    """
    data, many = _as_dict(scores)
    funcs = _metric_functions(metrics)

    def all_metrics(x: np.ndarray) -> np.ndarray:
        return np.array([f(x) for f in funcs])

    points, intervals = _per_method(
        data, seed, reps, confidence,
        lambda one: rly.get_interval_estimates(
            one, all_metrics, reps=reps, confidence_interval_size=confidence, task_bootstrap=task_bootstrap
        ),
    )
    out = {
        key: {m: Interval(float(points[key][i]), float(intervals[key][0, i]), float(intervals[key][1, i]))
              for i, m in enumerate(metrics)}
        for key in data
    }
    return out if many else out["scores"]


def mann_whitney_poi(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over tasks of P(X > Y) + P(X = Y) / 2 for [runs x tasks] arrays: the Mann-Whitney U statistic over
    n*m, as rliable's `probability_of_improvement`, computed for all pairs at once instead of one SciPy test per
    task (which made bootstrap CIs take ~0.1 s per replicate on 26 tasks)."""
    diff = x[:, None, :] - y[None, :, :]
    return float(np.mean((diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))))


def probability_of_improvement(
    x: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.DataFrame,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """P(X > Y): the Mann-Whitney probability that a run of X beats a run of Y on a task, averaged over tasks;
    x and y are [runs x tasks] with the same tasks (runs may differ) and are resampled independently."""
    x = check_matrix(x, "x")
    y = check_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ResultsError(f"x has {x.shape[1]} tasks, y has {y.shape[1]}; both need the same tasks in the same order")
    with _seeded(seed, reps, confidence):
        points, intervals = rly.get_interval_estimates(
            {"x_vs_y": [x, y]}, lambda a, b: np.array([mann_whitney_poi(a, b)]),
            reps=reps, confidence_interval_size=confidence,
        )
    return Interval(float(points["x_vs_y"][0]), float(intervals["x_vs_y"][0, 0]), float(intervals["x_vs_y"][1, 0]))


def difference(
    x: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.DataFrame,
    metric: str = "iqm",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """metric(x) - metric(y) with a CI: x and y are [runs x tasks] with the same tasks; their runs are unpaired (and
    may differ in number), so each is resampled independently within each task, as for probability_of_improvement."""
    x = check_matrix(x, "x")
    y = check_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ResultsError(f"x has {x.shape[1]} tasks, y has {y.shape[1]}; both need the same tasks in the same order")
    func = _metric_functions([metric])[0]
    with _seeded(seed, reps, confidence):
        points, intervals = rly.get_interval_estimates(
            {"d": [x, y]}, lambda a, b: np.array([func(a) - func(b)]), reps=reps, confidence_interval_size=confidence
        )
    return Interval(float(points["d"][0]), float(intervals["d"][0, 0]), float(intervals["d"][1, 0]))


def performance_profile(
    scores: np.ndarray | pd.DataFrame | Mapping[str, np.ndarray],
    taus: Sequence[float] | np.ndarray,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    use_score_distribution: bool = True,
) -> Curve | dict[str, Curve]:
    """Fraction of runs (or, with use_score_distribution=False, of run-averaged tasks) scoring above each tau,
    with CIs: the run score distribution of sec. 4.2."""
    data, many = _as_dict(scores)
    taus = np.asarray(taus, dtype=float)
    if taus.ndim != 1 or not len(taus) or not np.isfinite(taus).all():
        raise ResultsError(f"taus must be a non-empty 1-D list of finite thresholds, got {taus!r}")
    points, intervals = _per_method(
        data, seed, reps, confidence,
        lambda one: rly.create_performance_profile(
            one, taus, use_score_distribution=use_score_distribution, reps=reps, confidence_interval_size=confidence
        ),
    )
    out = {k: Curve(taus, np.asarray(points[k]), intervals[k][0], intervals[k][1]) for k in data}
    return out if many else out["scores"]


def sample_efficiency(
    curves: np.ndarray | Mapping[str, np.ndarray],
    steps: Sequence[float] | np.ndarray,
    metric: str = "iqm",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Curve | dict[str, Curve]:
    """An aggregate metric at each step with CIs: `curves` is [runs x tasks x len(steps)] of normalised scores
    (e.g. each run's score-rule value at several budgets), or {method: such an array}."""
    data, many = _as_dict(curves, ndim=3)
    steps = np.asarray(steps, dtype=float)
    for key, arr in data.items():
        if arr.shape[2] != len(steps):
            raise ResultsError(f"curves[{key!r}] has {arr.shape[2]} points per run, steps has {len(steps)}")
    func = _metric_functions([metric])[0]

    def per_step(x: np.ndarray) -> np.ndarray:
        return np.array([func(x[:, :, j]) for j in range(x.shape[2])])

    points, intervals = _per_method(
        data, seed, reps, confidence,
        lambda one: rly.get_interval_estimates(one, per_step, reps=reps, confidence_interval_size=confidence),
    )
    out = {k: Curve(steps, np.asarray(points[k]), intervals[k][0], intervals[k][1]) for k in data}
    return out if many else out["scores"]


def score_matrix(
    final_scores: pd.DataFrame,
    normaliser: str,
    tasks: Sequence[str] | None = None,
    allow_missing: str = "error",
) -> dict[str, np.ndarray]:
    """{method: normalised [runs x tasks] matrix} from `results.final_scores` output (columns method, task, seed,
    final). Columns follow `tasks` (default: all tasks in the table, sorted); rows are seeds in sorted order.

    Missing (method, task, seed) cells are never averaged over silently. allow_missing:
    - "error" (default): raise, listing the missing cells;
    - "drop_seeds": keep only the seeds a method has on every task;
    - "min_runs": per method, keep the first n runs of each task (n = fewest runs over its tasks), for
      sources whose run labels are not shared across tasks.
    A task a method has no run on at all is always an error (select tasks explicitly).
    """
    if allow_missing not in ("error", "drop_seeds", "min_runs"):
        raise ResultsError(f"allow_missing={allow_missing!r}; choose 'error', 'drop_seeds' or 'min_runs'")
    missing_cols = [c for c in ("method", "task", "seed", "final") if c not in final_scores.columns]
    if missing_cols:
        raise ResultsError(f"final scores table lacks columns {missing_cols}; build it with results.final_scores")
    if final_scores.empty:
        raise ResultsError("final scores table is empty")
    df = final_scores.assign(seed=final_scores["seed"].astype(str))
    bad = df.index[~np.isfinite(df["final"].to_numpy(dtype=float))]
    if len(bad):
        raise ResultsError(f"final score NaN or inf in rows {list(bad[:10])}")
    dup = df[df.duplicated(["method", "task", "seed"], keep=False)]
    if len(dup):
        cells = sorted(set(zip(dup["method"], dup["task"], dup["seed"], strict=True)))[:10]
        hint = " (several sources: select one, e.g. table[table.source == ...])" if "source" in df.columns else ""
        raise ResultsError(f"several final scores for (method, task, seed) {cells}{hint}")
    tasks = list(tasks) if tasks is not None else sorted(df["task"].unique())
    out, problems = {}, []
    for method, group in df.groupby("method", sort=True):
        group = group[group["task"].isin(tasks)]
        absent = [t for t in tasks if t not in set(group["task"])]
        if absent:
            problems.append(f"method {method!r} has no runs on tasks {absent} (pass tasks=... to select tasks)")
            continue
        group = group.assign(value=normalise(group["final"].to_numpy(), group["task"].to_numpy(), normaliser))
        if allow_missing == "min_runs":
            # Rows are runs: only the runs within a task are exchangeable, so take the same count from every task.
            ranked = group.sort_values(["task", "seed"], key=_seed_key)
            n = ranked.groupby("task").size().min()
            out[str(method)] = np.stack([ranked[ranked.task == t]["value"].to_numpy()[:n] for t in tasks], axis=1)
            continue
        wide = group.pivot(index="seed", columns="task", values="value").reindex(columns=tasks)
        wide = wide.sort_index(key=_seed_key)
        holes = wide.isna()
        if holes.to_numpy().any():
            if allow_missing == "error":
                cells = [(method, t, s) for s in wide.index for t in tasks if holes.at[s, t]]
                more = f" and {len(cells) - 20} more" if len(cells) > 20 else ""
                problems.append(f"missing (method, task, seed) cells {cells[:20]}{more}")
                continue
            wide = wide[~holes.any(axis=1)]
            if wide.empty:
                problems.append(f"method {method!r}: no seed has a score on every task (allow_missing='drop_seeds')")
                continue
        out[str(method)] = wide.to_numpy(dtype=float)
    if problems:
        raise ResultsError(
            "; ".join(problems) + ". Run the missing cells, select tasks, or pass allow_missing='drop_seeds' / "
            "'min_runs' to state how to handle them"
        )
    return out


def _seed_key(values: pd.Series) -> pd.Series:
    """Sort seeds numerically where they are numbers ('2' < '10'), text otherwise."""
    if values.name != "seed":
        return values
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric.fillna(np.inf) if numeric.notna().all() else values.astype(str)
