"""Reproduction verdicts: do our runs of a method reproduce its published scores under a protocol?

Owns the decision rule and the `wmbench reproduce` command. Final scores come from `wmbench.results.final_scores`
(the protocol's one rule, applied identically to our runs and to the published curves), normalisation from
`wmbench.results.normalise`, aggregates and bootstrap intervals from `wmbench.stats`; nothing here recomputes them.

The test is an equivalence test, not a difference test (Schuirmann 1987, "two one-sided tests", TOST): the claim
"reproduced" needs evidence that the normalised difference d = ours - published lies inside (-margin, margin).
TOST at level alpha rejects both one-sided nulls (d <= -margin, d >= margin) exactly when the (1 - 2 alpha) interval
of d lies inside (-margin, margin). Hence, with that interval [low, high]:

    reproduced       -margin < low and high < margin
    not reproduced   low > margin or high < -margin      (the interval excludes the whole equivalence region)
    inconclusive     otherwise: the data cannot tell (typically too few seeds for the margin)

Per task the interval is Welch's t interval (unequal variances, Welch-Satterthwaite degrees of freedom) on
normalised per-seed finals. In aggregate it is a stratified bootstrap over seeds (resampling runs within each
task, ours and published independently: Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice")
of the difference of the normalised IQM (default; robust to the few tasks with huge normalised scores) or mean.
Margin and alpha are declared by the protocol (`[reproduce]`), so a verdict is comparable across methods.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from wmbench.errors import WmbenchError
from wmbench.protocols import Protocol, load_protocol

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_COMPARABLE = "not comparable"
AGGREGATE_METRICS = ("iqm", "mean")
MIN_SEEDS = 2  # a variance (Welch) or a non-degenerate bootstrap needs at least two runs per side


class ReproduceError(WmbenchError, ValueError):
    """Bad input to a reproduction check (no runs, unknown source, mixed methods, ...)."""


def decide(low: float, high: float, margin: float) -> str:
    """The verdict for a (1 - 2 alpha) interval [low, high] of the difference and an equivalence margin."""
    if -margin < low and high < margin:
        return REPRODUCED
    if low > margin or high < -margin:
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclass(frozen=True)
class TaskVerdict:
    """One task: normalised per-seed finals of ours vs published, Welch interval of the difference."""

    task: str
    n_ours: int
    n_published: int
    ours_mean: float  # normalised
    published_mean: float
    ours_raw_mean: float  # raw episode return, for the reader
    published_raw_mean: float
    difference: float  # ours - published, normalised
    low: float  # (1 - 2 alpha) Welch interval of the difference
    high: float
    df: float  # Welch-Satterthwaite degrees of freedom
    p_equivalence: float  # TOST p-value: the larger of the two one-sided p-values
    verdict: str
    reason: str = ""
    margin: float = math.nan  # the margin this task was decided with (at most half the published gain)
    above_untrained: tuple[float, float, float] | None = None  # ours - untrained: (difference, low, high)


@dataclass(frozen=True)
class AggregateVerdict:
    """All compared tasks together: normalised aggregates with bootstrap CIs and the verdict on `metric`."""

    metric: str
    tasks: tuple[str, ...]
    n_ours: int  # seeds per task entering the score matrix
    n_published: int
    ours: dict[str, tuple[float, float, float]]  # metric -> (point, low, high), 95% CI
    published: dict[str, tuple[float, float, float]]
    difference: dict[str, tuple[float, float, float]]  # metric -> ours - published, (1 - 2 alpha) CI
    probability_of_improvement: tuple[float, float, float] | None  # P(ours > published), 95% CI (None: skipped)
    verdict: str
    reason: str = ""
    published_gain: float | None = None  # metric(published) - metric(untrained): what the published method learned
    above_untrained: tuple[float, float, float] | None = None  # metric(ours) - metric(untrained), (1 - 2 alpha) CI


@dataclass
class Verdict:
    """A reproduction verdict: per task and in aggregate, with everything needed to read and audit it."""

    method: str
    protocol: str
    source: str  # published source compared against
    budget: float  # in `unit` (the protocol budget, or --at-step)
    unit: str
    at_step: float | None
    margin: float
    alpha: float
    normaliser: str
    tasks: list[TaskVerdict]
    aggregate: AggregateVerdict | None
    notes: list[str] = field(default_factory=list)
    reps: int = 2000
    seed: int = 0
    min_seeds: int = 0  # seeds per task on each side below which a verdict is inconclusive
    untrained: str = ""  # what the untrained level is (published first points, random runs, normaliser)
    # The source's recipe vs our runs' resolved settings (`recipe_check`): `differences` make the verdict
    # "not comparable"; `reduced` lists the differences the user allowed (--allow-reduced), stated in the text.
    recipe: str = ""
    differences: list[str] = field(default_factory=list)
    reduced: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.differences:
            return NOT_COMPARABLE
        return self.aggregate.verdict if self.aggregate is not None else INCONCLUSIVE

    @property
    def text(self) -> str:
        """One paragraph stating the verdict, budget, unit, seeds, margin and the numbers behind it (caveats about
        the inputs are in `notes`)."""
        conf = f"{100 * (1 - 2 * self.alpha):.0f}%"
        head = (
            f"{self.method} on {self.protocol} at {self.budget:,.0f} {self.unit}"
            f"{' (early comparison, --at-step)' if self.at_step is not None else ''}, "
            f"vs published {self.source or 'scores'}: {self.verdict.upper()}."
        )
        if self.differences:
            head += (f" Our runs did not use the settings of recipe {self.recipe}, which produced this source: "
                     + "; ".join(self.differences)
                     + ". Run with --recipe (or pass --allow-reduced to compare a documented reduced recipe).")
        elif self.reduced:
            head += f" Reduced recipe ({self.recipe}): " + "; ".join(self.reduced) + "."
        if self.aggregate is None:
            return f"{head} No task has finals on both sides."
        a = self.aggregate
        m = a.metric
        name = {"iqm": "IQM", "mean": "mean"}[m]
        o, p, d = a.ours[m], a.published[m], a.difference[m]
        poi = a.probability_of_improvement
        poi_text = "" if poi is None else f" P(ours > published) = {poi[0]:.2f} [{poi[1]:.2f}, {poi[2]:.2f}]."
        body = (
            f" {name} of {self.normaliser}-normalised finals over {len(a.tasks)} tasks: ours {o[0]:.3f} "
            f"[{o[1]:.3f}, {o[2]:.3f}] ({a.n_ours} seeds/task) vs published {p[0]:.3f} [{p[1]:.3f}, {p[2]:.3f}] "
            f"({a.n_published} seeds/task); difference {d[0]:+.3f}, {conf} CI [{d[1]:+.3f}, {d[2]:+.3f}] vs "
            f"equivalence margin ±{self.margin:.3g} (TOST, alpha {self.alpha:g}; stratified bootstrap, "
            f"{self.reps} reps).{poi_text}"
        )
        if a.published_gain is not None and a.above_untrained is not None:
            u = a.above_untrained
            body += (f" Untrained level: {self.untrained}; published {name} gain over it {a.published_gain:+.3f}, "
                     f"ours minus untrained {u[0]:+.3f} [{u[1]:+.3f}, {u[2]:+.3f}].")
        body += f" At least {self.min_seeds} seeds per task on each side are required."
        if a.reason:
            body += f" {a.reason}"
        counts = {v: sum(t.verdict == v for t in self.tasks) for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)}
        body += (
            f" Per task (Welch {conf} interval vs ±{self.margin:.3g}, or half the task's published gain if smaller): "
            f"{counts[REPRODUCED]} reproduced, "
            f"{counts[NOT_REPRODUCED]} not reproduced, {counts[INCONCLUSIVE]} inconclusive."
        )
        return head + body

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict
        d["text"] = self.text
        return _jsonable(d)

    def table(self) -> str:
        """Plain-text per-task table plus the aggregate lines, for the terminal."""
        conf = f"{100 * (1 - 2 * self.alpha):.0f}% CI"
        header = (
            f"{'task':<24} {'ours':>5} {'pub':>5} {'ours raw':>10} {'pub raw':>10} {'ours norm':>9} "
            f"{'pub norm':>9} {'diff':>8} {conf:>19}  verdict"
        )
        lines = [header, "-" * len(header)]
        for t in self.tasks:
            ci = f"[{t.low:+.3f}, {t.high:+.3f}]" if math.isfinite(t.low) else "n/a"
            lines.append(
                f"{t.task:<24} {t.n_ours:>5} {t.n_published:>5} {_fmt(t.ours_raw_mean, 10)} "
                f"{_fmt(t.published_raw_mean, 10)} {_fmt(t.ours_mean, 9, 3)} {_fmt(t.published_mean, 9, 3)} "
                f"{_fmt(t.difference, 8, 3, sign=True)} {ci:>19}  {t.verdict}"
                + (f" ({t.reason})" if t.reason else "")
            )
        if self.aggregate is not None:
            a = self.aggregate
            lines.append("-" * len(header))
            for m in a.ours:
                o, p, d = a.ours[m], a.published[m], a.difference[m]
                mark = "  <- verdict" if m == a.metric else ""
                decision = a.verdict if m == a.metric else "(not deciding)"
                lines.append(
                    f"{'aggregate ' + m:<24} {a.n_ours:>5} {a.n_published:>5} {'':>10} {'':>10} "
                    f"{o[0]:>9.3f} {p[0]:>9.3f} {d[0]:>+8.3f} {f'[{d[1]:+.3f}, {d[2]:+.3f}]':>19}  "
                    f"{decision}{mark}"
                )
        return "\n".join(lines)


def _fmt(value: float, width: int, digits: int = 1, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return f"{'n/a':>{width}}"
    return f"{value:>{'+' if sign else ''}{width}.{digits}f}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def welch_interval(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float, float, float, float]:
    """Welch's (1 - 2 alpha) interval of mean(x) - mean(y): (difference, low, high, df, TOST p for margin 0).

    Returns the pieces `task_verdict` needs; the TOST p-value depends on the margin and is computed there.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    difference = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0.0:  # identical scores on every seed (e.g. freeway at 0): the interval is the point itself
        return difference, difference, difference, math.inf, se
    # Welch-Satterthwaite approximation of the degrees of freedom of the difference's t statistic.
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(scipy_stats.t.ppf(1 - alpha, df)) * se
    return difference, difference - half, difference + half, float(df), se


def task_verdict(
    task: str, ours: np.ndarray, published: np.ndarray, ours_raw: np.ndarray, published_raw: np.ndarray,
    margin: float, alpha: float, untrained: np.ndarray | None = None, min_seeds: int = MIN_SEEDS,
    explicit_margin: bool = False,
) -> TaskVerdict:
    """Welch-interval TOST for one task on normalised per-seed finals, under the rule that makes a verdict
    un-foolable: with the untrained level (normalised finals of untrained runs) given, the margin is at most half of
    what the published runs gained over it (unless `explicit_margin`), and "reproduced" also needs ours above it
    (Welch interval of ours - untrained entirely above 0). Without an untrained level there is no "reproduced"."""
    n_o, n_p = len(ours), len(published)
    means = (
        float(np.mean(ours)) if n_o else math.nan,
        float(np.mean(published)) if n_p else math.nan,
        float(np.mean(ours_raw)) if n_o else math.nan,
        float(np.mean(published_raw)) if n_p else math.nan,
    )
    if n_o < min_seeds or n_p < min_seeds:
        diff = means[0] - means[1] if n_o and n_p else math.nan
        return TaskVerdict(
            task, n_o, n_p, *means, diff, math.nan, math.nan, math.nan, math.nan, INCONCLUSIVE,
            reason=f"needs >= {min_seeds} seeds on each side (ours {n_o}, published {n_p})", margin=margin,
        )
    reason = ""
    gain = float(np.mean(published) - np.mean(untrained)) if untrained is not None and len(untrained) else None
    if gain is not None and 0 < gain and margin > gain / 2 and not explicit_margin:
        margin = gain / 2
    diff, low, high, df, se = welch_interval(ours, published, alpha)
    if se == 0.0:
        p = 0.0 if abs(diff) < margin else 1.0
    else:
        # TOST: H0a d <= -margin rejected for large (d + margin)/se, H0b d >= margin for small (d - margin)/se.
        p = max(scipy_stats.t.sf((diff + margin) / se, df), scipy_stats.t.cdf((diff - margin) / se, df))
    decision = decide(low, high, margin)
    above = None
    if gain is None:
        if decision == REPRODUCED:
            decision, reason = INCONCLUSIVE, "no untrained level to show that ours learned (pass --untrained-runs)"
    else:
        a_diff, a_low, a_high, _, _ = welch_interval(ours, np.asarray(untrained, float), alpha)
        above = (a_diff, a_low, a_high)
        if gain <= 0:
            decision = INCONCLUSIVE
            reason = f"the published runs do not rise above the untrained level here (gain {gain:+.3f})"
        elif decision == REPRODUCED and not a_low > 0:
            decision = INCONCLUSIVE
            reason = (f"ours is not above the untrained level (ours - untrained {a_diff:+.3f}, "
                      f"CI [{a_low:+.3f}, {a_high:+.3f}])")
    return TaskVerdict(task, n_o, n_p, *means, diff, low, high, df, float(p), decision, reason=reason,
                       margin=margin, above_untrained=above)


def verdict(
    ours_finals: pd.DataFrame,
    published_finals: pd.DataFrame,
    protocol: Protocol | str,
    *,
    untrained_finals: pd.DataFrame | None = None,
    untrained: str = "",
    margin: float | None = None,
    alpha: float | None = None,
    metric: str = "iqm",
    reps: int = 2000,
    seed: int = 0,
    at_step: float | None = None,
    source: str = "",
    tasks: Sequence[str] | None = None,
    improvement: bool = True,
    min_seeds: int | None = None,
    allow_mixed_scoring: bool = False,
) -> Verdict:
    """Compare per-seed finals (`results.final_scores` tables: method, task, seed, final, ...) of ours vs published.

    "reproduced" needs all of: the equivalence test passes within the margin; the margin is at most half of what the
    published runs gained over the untrained level on the deciding metric (narrowed to that unless `margin` is given,
    which then only warns); ours is above the untrained level with its (1 - 2 alpha) CI; at least `min_seeds` seeds
    per task on each side (default: the protocol's minimum; a lower explicit value is stated in the verdict); finals
    scored by one rule on both sides (`scoring`; `allow_mixed_scoring` compares anyway and says so). Runs that stopped
    early are left out on both sides by `results.usable_finals`. `untrained_finals` (per-seed finals of untrained
    runs: the published curves' first points, or `random` runs at the same step) is described by `untrained`;
    without it, Atari's human normalisation supplies its random-policy level (0) and other protocols get no
    "reproduced". `at_step` labels the verdict and is the budget the completeness rule uses.
    improvement=False skips P(ours > published), which does not enter the verdict.
    """
    from wmbench import results, stats

    protocol = load_protocol(protocol) if isinstance(protocol, str) else protocol
    explicit_margin = margin is not None
    margin = protocol.reproduce.margin if margin is None else float(margin)
    alpha = protocol.reproduce.alpha if alpha is None else float(alpha)
    if not 0 < alpha < 0.5:
        raise ReproduceError(f"alpha must be in (0, 0.5), got {alpha}")
    if not margin > 0:
        raise ReproduceError(f"margin must be positive (normalised score units), got {margin}")
    if metric not in AGGREGATE_METRICS:
        raise ReproduceError(f"metric {metric!r} not one of {AGGREGATE_METRICS}")
    notes: list[str] = []
    if min_seeds is None:
        min_seeds = protocol.seeds.minimum
    else:
        if min_seeds < MIN_SEEDS:
            raise ReproduceError(f"--min-seeds {min_seeds}: a variance needs at least {MIN_SEEDS} seeds per side")
        if min_seeds < protocol.seeds.minimum:
            notes.append(f"The minimum of seeds per task was lowered by the user to {min_seeds} (protocol "
                         f"{protocol.id}: {protocol.seeds.minimum}).")
    tasks = list(tasks) if tasks is not None else list(protocol.tasks)
    for t in tasks:
        protocol.check_task(t)
    unit = protocol.budget.step_unit
    budget = float(at_step) if at_step is not None else float(protocol.to_unit(protocol.budget.agent_steps))

    ours_finals = _per_seed(ours_finals, "ours", notes)
    published_finals = _per_seed(published_finals, "published", notes)
    _check_scoring(ours_finals, published_finals, allow_mixed_scoring, notes)
    ours_finals, dropped = results.usable_finals(ours_finals, protocol, budget)
    notes += [f"ours: {n}" for n in dropped]
    published_finals, dropped = results.usable_finals(published_finals, protocol, budget)
    notes += [f"published: {n}" for n in dropped]
    method = str(ours_finals["method"].iloc[0]) if len(ours_finals) else ""
    published_method = str(published_finals["method"].iloc[0]) if len(published_finals) else ""
    if method != published_method:
        notes.append(f"Ours is {method!r}, the published runs are {published_method!r}.")
    if untrained_finals is None and protocol.score.normaliser == "atari_human":
        untrained_finals = _normaliser_random_level(tasks, published_method)
        untrained = "the random-policy scores of the human normalisation (normalised 0)"
    if untrained_finals is None:
        notes.append("No untrained level (no published curve, no --untrained-runs): nothing shows that ours learned, "
                     "so no verdict here can be 'reproduced'.")

    def normalised(finals: pd.DataFrame | None, task: str) -> tuple[np.ndarray, np.ndarray]:
        if finals is None:
            return np.array([]), np.array([])
        raw = finals.loc[finals["task"] == task, "final"].to_numpy(float)
        return raw, np.asarray(results.normalise(raw, task, protocol), float)

    per_task: list[TaskVerdict] = []
    for task in tasks:
        raw_o, norm_o = normalised(ours_finals, task)
        raw_p, norm_p = normalised(published_finals, task)
        if not len(raw_o) and not len(raw_p):
            continue
        _, norm_u = normalised(untrained_finals, task)
        per_task.append(task_verdict(
            task, norm_o, norm_p, raw_o, raw_p, margin, alpha, untrained=norm_u if len(norm_u) else None,
            min_seeds=min_seeds, explicit_margin=explicit_margin,
        ))

    both = [t.task for t in per_task if t.n_ours and t.n_published]
    missing = [t for t in tasks if t not in both]
    if missing:
        notes.append(f"No finals on both sides for {len(missing)} of {len(tasks)} tasks ({', '.join(missing)}): "
                     "the aggregate covers the others only.")
    base = dict(
        method=method, protocol=protocol.id, source=source, budget=budget, unit=unit, at_step=at_step,
        alpha=alpha, normaliser=protocol.score.normaliser, tasks=per_task, notes=notes,
        reps=reps, seed=seed, min_seeds=min_seeds, untrained=untrained,
    )
    if not both:
        return Verdict(aggregate=None, margin=margin, **base)

    # Score matrices need the same number of runs on every task: the first n runs of each task, n the fewest.
    counts = {"ours": [t.n_ours for t in per_task if t.task in both],
              "published": [t.n_published for t in per_task if t.task in both]}
    for side, n in counts.items():
        if min(n) != max(n):
            notes.append(f"{side}: seed counts differ across tasks ({min(n)}..{max(n)}); the aggregate uses the "
                         f"first {min(n)} seeds of each task.")
    n_o, n_p = min(counts["ours"]), min(counts["published"])
    normaliser = protocol.score.normaliser
    (x,) = stats.score_matrix(ours_finals, normaliser, tasks=both, allow_missing="min_runs").values()
    (y,) = stats.score_matrix(published_finals, normaliser, tasks=both, allow_missing="min_runs").values()
    ours_ci = stats.aggregate(x, metrics=AGGREGATE_METRICS, reps=reps, seed=seed)
    pub_ci = stats.aggregate(y, metrics=AGGREGATE_METRICS, reps=reps, seed=seed)
    confidence = 1 - 2 * alpha
    diffs = {m: stats.difference(x, y, m, reps=reps, seed=seed, confidence=confidence) for m in AGGREGATE_METRICS}
    poi = stats.probability_of_improvement(x, y, reps=reps, seed=seed) if improvement else None

    gain = above = None
    covered = untrained_finals is not None and set(both) <= set(untrained_finals["task"])
    if covered:
        (u,) = stats.score_matrix(untrained_finals.assign(method="untrained"), normaliser, tasks=both,
                                  allow_missing="min_runs").values()
        # The published gain on the DECIDING metric: the margin must be well inside what the method learned.
        gain = float(stats.METRICS[metric](y) - stats.METRICS[metric](u))
        above = _triple(stats.difference(x, u, metric, reps=reps, seed=seed, confidence=confidence))
        if gain > 0 and margin > gain / 2:
            if explicit_margin:
                notes.append(f"Warning: the margin ±{margin:g} exceeds half of the published {metric.upper()} gain "
                             f"over the untrained level ({gain:.3f}): an agent that learns nothing may come close.")
            else:
                notes.append(f"The protocol's margin ±{margin:g} exceeds half of the published {metric.upper()} "
                             f"gain over the untrained level ({gain:.3f} at this step), so an agent that learns "
                             f"nothing could come out 'reproduced'; the margin used is half that gain, "
                             f"±{gain / 2:.3g} (pass --margin to override).")
                margin = gain / 2
    elif untrained_finals is not None:
        notes.append("The untrained level does not cover every compared task: no aggregate 'reproduced'.")

    name = metric.upper() if metric == "iqm" else metric
    aggregate_verdict = decide(diffs[metric][1], diffs[metric][2], margin)
    reason = ""
    if n_o < min_seeds or n_p < min_seeds:
        aggregate_verdict = INCONCLUSIVE
        reason = (f"Inconclusive by rule: a verdict needs >= {min_seeds} seeds per task on each side "
                  f"(ours {n_o}, published {n_p}).")
    elif gain is not None and gain <= 0:
        aggregate_verdict = INCONCLUSIVE
        reason = (f"The published runs do not rise above the untrained level by this step ({name} gain "
                  f"{gain:+.3f}): no verdict can tell learning from none.")
    elif aggregate_verdict == REPRODUCED and above is None:
        aggregate_verdict = INCONCLUSIVE
        reason = "Equivalent within the margin, but there is no untrained level to show that ours learned."
    elif aggregate_verdict == REPRODUCED and not above[1] > 0:
        aggregate_verdict = INCONCLUSIVE
        reason = (f"Equivalent within the margin, but ours is not above the untrained level ({name} of ours minus "
                  f"untrained {above[0]:+.3f}, {100 * confidence:.0f}% CI [{above[1]:+.3f}, {above[2]:+.3f}]): "
                  "a run that did not learn is never 'reproduced'.")
    elif aggregate_verdict == INCONCLUSIVE:
        reason = (f"The interval straddles the margin: more seeds (protocol recommends "
                  f"{protocol.seeds.recommended}) would narrow it.")
    aggregate = AggregateVerdict(
        metric=metric, tasks=tuple(both), n_ours=n_o, n_published=n_p,
        ours={m: _triple(ours_ci[m]) for m in AGGREGATE_METRICS},
        published={m: _triple(pub_ci[m]) for m in AGGREGATE_METRICS},
        difference={m: _triple(diffs[m]) for m in AGGREGATE_METRICS},
        probability_of_improvement=None if poi is None else _triple(poi), verdict=aggregate_verdict, reason=reason,
        published_gain=gain, above_untrained=above,
    )
    return Verdict(aggregate=aggregate, margin=margin, **base)


@dataclass(frozen=True)
class SummaryVerdict:
    """Ours vs a paper's table entry (a mean and its spread, no per-run scores; `results.paper_tables`), one task."""

    method: str
    protocol: str
    source: str
    task: str
    n_ours: int  # our seeds (runs), each scored by the protocol's rule
    ours_mean: float  # mean of our per-seed finals
    ours_sd: float  # standard deviation of our per-seed finals (between runs)
    published_mean: float
    published_sd: float
    published_n: int
    spread_over: str  # what the published spread is over ("episodes of one agent")
    difference: float
    low: float  # (1 - 2 alpha) interval of the difference
    high: float
    df: float
    margin: float
    alpha: float
    verdict: str
    reason: str = ""
    above_untrained: tuple[float, float, float] | None = None
    notes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        lines = [
            f"{self.method} on {self.protocol} {self.task} vs {self.source}: {self.verdict.upper()}",
            f"ours {self.ours_mean:.1f} (SD {self.ours_sd:.1f} over {self.n_ours} runs); published "
            f"{self.published_mean:g} +- {self.published_sd:g} (SD over {self.published_n} {self.spread_over}); "
            f"difference {self.difference:+.1f}, {100 * (1 - 2 * self.alpha):.0f}% interval "
            f"[{self.low:+.1f}, {self.high:+.1f}], margin +-{self.margin:g}.",
            "How a table entry is compared: it is one mean with a spread, not per-run finals, so no test over "
            "training runs exists for it. The interval combines our between-run variance (var/n of our per-seed "
            "finals) with the standard error of the published mean (SD / sqrt(n)); when the published SD is over "
            "episodes of one agent, the published method's run-to-run variance is unknown and not in the interval, "
            "which is then too narrow on its side. 'reproduced' needs the interval inside the margin, our runs "
            "above the untrained level (--untrained-runs) and at least the protocol's minimum of seeds.",
        ]
        if self.reason:
            lines.append(f"Reason: {self.reason}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def summary_verdict(
    ours_finals: pd.DataFrame,
    entry: Any,
    protocol: Protocol | str,
    *,
    untrained_finals: pd.DataFrame | None = None,
    margin: float | None = None,
    alpha: float | None = None,
    min_seeds: int | None = None,
) -> SummaryVerdict:
    """TOST of our per-seed finals (a `results.final_scores` table) against one paper-table entry (a row of
    `results.paper_tables`: mean, sd, n). The difference's standard error is sqrt(var(ours)/k + sd^2/n) with
    Welch-Satterthwaite degrees of freedom (n - 1 on the published side); margin and alpha are the protocol's, the
    margin narrowed to half of the published gain over the untrained level when that level is given (as
    `task_verdict`). Without an untrained level, or with fewer than `min_seeds` runs (default: the protocol's
    minimum), the verdict cannot be 'reproduced'."""
    from wmbench import results

    protocol = load_protocol(protocol) if isinstance(protocol, str) else protocol
    explicit_margin = margin is not None
    margin = protocol.reproduce.margin if margin is None else float(margin)
    alpha = protocol.reproduce.alpha if alpha is None else float(alpha)
    min_seeds = protocol.seeds.minimum if min_seeds is None else int(min_seeds)
    if not 0 < alpha < 0.5:
        raise ReproduceError(f"alpha must be in (0, 0.5), got {alpha}")
    if not margin > 0:
        raise ReproduceError(f"margin must be positive (normalised score units), got {margin}")
    task = str(entry["task"])
    raw = ours_finals.loc[ours_finals["task"] == task, "final"].to_numpy(float)
    x = np.asarray(results.normalise(raw, task, protocol), float)
    mean_p = float(results.normalise(np.array([float(entry["mean"])]), task, protocol)[0])
    scale = (mean_p / float(entry["mean"])) if float(entry["mean"]) else 1.0  # linear normalisers only
    sd_p, n_p = float(entry["sd"]) * abs(scale), int(entry["n"])
    notes: list[str] = []
    methods = sorted(set(ours_finals["method"])) if len(ours_finals) else []
    k = len(x)
    base = dict(method=", ".join(methods), protocol=protocol.id, source=str(entry["source"]), task=task, n_ours=k,
                ours_mean=float(x.mean()) if k else math.nan, ours_sd=float(x.std(ddof=1)) if k > 1 else math.nan,
                published_mean=mean_p, published_sd=sd_p, published_n=n_p, spread_over=str(entry["spread_over"]),
                alpha=alpha)
    if k < max(MIN_SEEDS, min_seeds):
        diff = float(x.mean() - mean_p) if k else math.nan
        return SummaryVerdict(**base, difference=diff, low=math.nan, high=math.nan, df=math.nan, margin=margin,
                              verdict=INCONCLUSIVE, reason=f"needs >= {max(MIN_SEEDS, min_seeds)} runs of ours "
                              f"(have {k})", notes=tuple(notes))
    vx, vp = x.var(ddof=1) / k, sd_p**2 / n_p
    se = math.sqrt(vx + vp)
    diff = float(x.mean() - mean_p)
    if se == 0.0:
        low = high = diff
        df = math.inf
    else:
        df = (vx + vp) ** 2 / ((vx**2 / (k - 1) if vx else 0.0) + (vp**2 / (n_p - 1) if vp and n_p > 1 else 0.0))
        half = float(scipy_stats.t.ppf(1 - alpha, df)) * se
        low, high = diff - half, diff + half
    reason, above = "", None
    untrained = None
    if untrained_finals is not None:
        u_raw = untrained_finals.loc[untrained_finals["task"] == task, "final"].to_numpy(float)
        untrained = np.asarray(results.normalise(u_raw, task, protocol), float) if len(u_raw) else None
    if untrained is not None and len(untrained) >= MIN_SEEDS:
        gain = mean_p - float(untrained.mean())
        if 0 < gain and margin > gain / 2 and not explicit_margin:
            notes.append(f"margin narrowed from {margin:g} to half the published gain over the untrained level "
                         f"({gain / 2:.3g})")
            margin = gain / 2
    decision = decide(low, high, margin)
    if untrained is None or len(untrained) < MIN_SEEDS:
        if decision == REPRODUCED:
            decision, reason = INCONCLUSIVE, "no untrained level to show that ours learned (pass --untrained-runs)"
    else:
        a_diff, a_low, a_high, _, _ = welch_interval(x, untrained, alpha)
        above = (a_diff, a_low, a_high)
        if decision == REPRODUCED and not a_low > 0:
            decision = INCONCLUSIVE
            reason = f"ours is not above the untrained level (ours - untrained {a_diff:+.3f}, CI [{a_low:+.3f}, {a_high:+.3f}])"
    return SummaryVerdict(**base, difference=diff, low=low, high=high, df=float(df), margin=margin, verdict=decision,
                          reason=reason, above_untrained=above, notes=tuple(notes))


def _triple(v: Sequence[float]) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def _check_scoring(ours: pd.DataFrame, published: pd.DataFrame, allow: bool, notes: list[str]) -> None:
    """Finals measured by different rules (e.g. the protocol's training window vs the authors' end-of-training
    evaluation) are different measurements: refuse the comparison, or with `allow` compare and say so."""
    if "scoring" not in ours.columns or "scoring" not in published.columns:
        return
    kinds = sorted(set(ours["scoring"]) | set(published["scoring"]))
    if len(kinds) <= 1:
        return
    text = (f"ours are scored by {', '.join(sorted(set(ours['scoring'])))}; the published finals by "
            f"{', '.join(sorted(set(published['scoring'])))}")
    if not allow:
        raise ReproduceError(
            f"{text}: different measurements, not one comparison. Compare against a source scored by the protocol's "
            "rule, or pass --allow-mixed-scoring to compare anyway (the verdict then says so)"
        )
    notes.append(f"Mixed scoring rules ({text}), compared by the user's choice (--allow-mixed-scoring): the "
                 "difference includes the difference of measurements.")


def _normaliser_random_level(tasks: Sequence[str], method: str) -> pd.DataFrame:
    """Atari: the human normalisation's random-policy score per task as an untrained level (two equal runs, so that a
    variance exists and is zero)."""
    from wmbench import results

    table = results._atari_normalisers()
    rows = [{"method": method, "task": t, "seed": str(s), "final": float(table.at[t, "random"]), "source": "random",
             "basis": "normaliser"} for t in tasks if t in table.index for s in range(2)]
    return pd.DataFrame(rows)


def _per_seed(finals: pd.DataFrame, side: str, notes: list[str]) -> pd.DataFrame:
    """Drop `final_mean` rows (one publisher-averaged value per task, no seeds): they cannot enter a test over seeds."""
    if "basis" in finals.columns and (finals["basis"] == "final_mean").any():
        dropped = sorted(set(finals.loc[finals["basis"] == "final_mean", "task"]))
        notes.append(f"{side}: {len(dropped)} task(s) have only a publisher-averaged final (no per-seed values) "
                     f"and are left out: {', '.join(dropped)}.")
        finals = finals[finals["basis"] != "final_mean"]
    if finals["method"].nunique() > 1:
        if side == "ours":
            raise ReproduceError(f"our finals mix methods {sorted(set(finals['method']))}: one method at a time")
        raise ReproduceError(f"published finals mix methods {sorted(set(finals['method']))}: select one source")
    return finals


def finals_at(table: pd.DataFrame, protocol: Protocol | str, at_step: float | None = None) -> pd.DataFrame:
    """Per-seed finals by the protocol's one rule (`results.final_scores`), at the budget or at `at_step`.

    At an earlier step only curve points can say anything: a source's shipped `final` rows hold the score at the
    full budget, so they are set aside and the rule is applied to the curve with the budget replaced by `at_step`
    (record unit). A run with no curve then has no final and `final_scores` names it.
    """
    from wmbench import results

    if at_step is None:
        return results.final_scores(table, protocol)
    curves = table[table["point_type"] == "curve"]
    check_on_grid(curves, protocol, at_step)
    return results.final_scores(curves, protocol, budget=at_step)


def check_on_grid(curves: pd.DataFrame, protocol: Protocol | str, at_step: float) -> None:
    """Refuse an `at_step` that falls between the points of curves that go on past it. The rule's window at a step
    holds the points recorded up to it, so on a curve logged every 10,000 env steps the score "at 16,000" is the
    point at 10,000 and would be compared with our runs at 16,000. A run counts as on the grid when its last point
    at or before `at_step` is within the completeness tolerance of it (`results.completion_threshold`: an episode's
    length or 10%); runs that stop before `at_step` are the completeness rule's (`usable_finals`) to set aside."""
    from wmbench import results

    protocol = load_protocol(protocol) if isinstance(protocol, str) else protocol
    if "phase" in curves.columns:  # as the rule reads them (results._rule_finals)
        curves = curves[curves["phase"] == protocol.score.scored_phase]
    if curves.empty:
        return
    runs = curves.groupby(results.RUN_KEY, sort=True).size().index
    last = curves[curves["env_step"] <= at_step].groupby(results.RUN_KEY)["env_step"].max().reindex(runs)
    after = curves[curves["env_step"] > at_step].groupby(results.RUN_KEY)["env_step"].min().reindex(runs)
    threshold = results.completion_threshold(protocol, at_step)
    off = runs[(last.fillna(-np.inf) < threshold).to_numpy() & after.notna().to_numpy()]
    if not len(off):
        return
    run = off[0]
    spacing = float(np.median(np.diff(np.sort(curves.set_index(results.RUN_KEY).loc[[run], "env_step"].unique()))))
    prev = f"{last[run]:,.0f}" if np.isfinite(last[run]) else "none"
    unit = protocol.budget.step_unit
    grid = [x for x in (last[run], after[run]) if np.isfinite(x)]
    raise ReproduceError(
        f"--at-step {at_step:,.0f} falls between the curve points of {len(off)} run(s) that go on past it (e.g. "
        f"{' '.join(map(str, run))}: last point at or before it {prev}, next {after[run]:,.0f} {unit}; points every "
        f"~{spacing:,.0f}), so their score 'at {at_step:,.0f}' would stand for an earlier step than ours. Compare at "
        f"a step on their grid, e.g. --at-step {' or '.join(f'{x:.0f}' for x in grid)}"
    )


def first_points(published: pd.DataFrame) -> pd.DataFrame | None:
    """The untrained level of published runs: each run's first curve point (its score before learning), as a finals
    table; None when the source ships no curves."""
    curve = published[published["point_type"] == "curve"]
    if curve.empty:
        return None
    first = curve.loc[curve.groupby(["source", "method", "task", "seed"])["env_step"].idxmin()]
    return first.assign(final=first["score"].astype(float))[["method", "task", "seed", "final", "source"]]


def compare(
    ours: pd.DataFrame,
    published: pd.DataFrame,
    protocol: Protocol | str,
    *,
    at_step: float | None = None,
    source: str = "",
    untrained_runs: pd.DataFrame | None = None,
    **kwargs: Any,
) -> Verdict:
    """Score tables (score schema) in, verdict out: both validated by `results.check_table` (the check behind
    `wmbench validate`), finals by the protocol's rule on both sides, the untrained level from `untrained_runs`
    (e.g. `random` runs on the same protocol, scored at the same step) or else the published curves' first points,
    then `verdict`."""
    from wmbench import results

    protocol = load_protocol(protocol) if isinstance(protocol, str) else protocol
    if at_step is not None:
        budget = protocol.to_unit(protocol.budget.agent_steps)
        if not 0 < at_step <= budget:
            raise ReproduceError(
                f"--at-step {at_step:g} must be in (0, {budget:g}] ({protocol.budget.step_unit}, the record unit of "
                f"{protocol.id})"
            )
    # Errors refuse the tables as `wmbench validate` would; its warnings (seeds, runs that stop early) are stated by
    # the verdict itself (task reasons, `usable_finals` notes), so they are not repeated.
    results.check_table(ours, protocol, "ours", at_step)
    results.check_table(published, protocol, "published", at_step)
    ours_f = finals_at(ours, protocol, at_step)
    pub_f = finals_at(published, protocol, at_step)
    if untrained_runs is not None:
        untrained_f = finals_at(untrained_runs, protocol, at_step)
        label = (f"{', '.join(sorted(set(untrained_f['method'])))} runs at the same step "
                 f"({untrained_f['seed'].nunique()} seeds)")
    else:
        untrained_f = first_points(published)
        label = "the published runs' first curve points" if untrained_f is not None else ""
    result = verdict(ours_f, pub_f, protocol, at_step=at_step, source=source, untrained_finals=untrained_f,
                     untrained=label, **kwargs)
    return result


def recipe_check(method: str, source: str, infos: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """The recipe of `method` that reproduces `source` and, per differing key, `key=ours (recipe: theirs)` over our
    runs (run.json dicts). ("", []) when the method has no recipe for that source: nothing to check against.

    Several versions of a recipe may name the source: a later version adds a setting of the released code that the
    method lacked before, so it supersedes the earlier ones. Runs are checked against the latest version on their
    protocol (else the latest): a run made with an earlier version is not comparable, and the differences name the
    settings it lacks. (Before wave 2's fix the first version by name was taken, so runs of the latest version,
    e.g. `dreamerv1_2020_dmc_vision@2`, were 'not comparable'.)"""
    from wmbench.config import flatten
    from wmbench.recipes import load_recipe, recipe_differences, recipe_names

    try:
        names = recipe_names(method)
    except WmbenchError:
        return "", []
    recipes = [r for r in (load_recipe(method, n) for n in names) if source in r.sources]
    if not recipes:
        return "", []
    protocols = {info.get("protocol") for info in infos}
    recipe = max([r for r in recipes if protocols == {r.protocol}] or recipes, key=lambda r: r.version)
    found: dict[str, tuple[Any, Any]] = {}
    for info in infos:
        config = info.get("config")
        if not isinstance(config, dict):
            found.setdefault("config", (None, "(the recipe's)"))
            continue
        recorded = flatten(config)
        for key, (ours, theirs) in recipe_differences(config, recipe).items():
            found.setdefault(key, (ours if key in recorded else _NOT_RECORDED, theirs))
    return recipe.id, [f"{k}={ours!r} (recipe: {theirs!r})" for k, (ours, theirs) in sorted(found.items())]


class _NotRecorded:
    """A key that a run's config lacks (its code predates the key): shown as such, not as the value None."""

    def __repr__(self) -> str:
        return "<not recorded: the run's code predates the key>"


_NOT_RECORDED = _NotRecorded()


# ----------------------------------------------------------------------------------------------------------- CLI


def find_runs(root: Path, protocol: Protocol, method: str, tasks: Sequence[str]) -> dict[str, list[Path]]:
    """Run directories of `method` per task, in the runner's layout (`runner.run_dir_for`), that have a run.json."""
    from wmbench.runner import run_dir_for

    found: dict[str, list[Path]] = {}
    for task in tasks:
        base = run_dir_for(root, protocol, task, method, 0).parent
        found[task] = sorted(
            (p for p in base.glob("seed_*") if (p / "run.json").is_file()),
            key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30,
        )
    return found


def run_info(run_dir: Path) -> dict[str, Any]:
    """The run.json of a run directory (the runner writes it; see docs/contracts.md)."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReproduceError(f"{run_dir}/run.json cannot be read ({e}); remove the run or re-run it") from e


def select_source(protocol: Protocol, method: str, source: str | None) -> str:
    """The published source to compare against: --against-source, else the protocol's listed source for method."""
    from wmbench import results

    tables = results.paper_tables(protocol=protocol.published_name)
    if source in set(tables["source"]):
        return source
    if source is None and protocol.published_name not in results.published_protocols():
        of_method = sorted(set(tables.loc[tables["method"] == method, "source"]))
        if of_method:
            return of_method[0]
        raise ReproduceError(f"no published {protocol.published_name} scores of method {method!r} (no curves and no paper-table "
                             f"entry in results/published/)")
    available = results.published(protocol=protocol.published_name)
    pairs = available[["source", "method"]].drop_duplicates()
    if source is not None:
        if source not in set(pairs["source"]):
            import difflib

            close = difflib.get_close_matches(source, sorted(set(pairs["source"])), n=4, cutoff=0.4)
            raise ReproduceError(
                f"unknown published source {source!r} for protocol {protocol.published_name}."
                + (f" Did you mean: {', '.join(close)}?" if close else "")
                + f" Sources: {', '.join(sorted(set(pairs['source'])))}"
            )
        return source
    of_method = set(pairs.loc[pairs["method"] == method, "source"])
    listed = [s for s in protocol.reproduce.published_sources if s in of_method]
    if listed:
        return listed[0]
    if len(of_method) == 1:
        return next(iter(of_method))
    if not of_method:
        have = sorted(set(pairs["method"]))
        raise ReproduceError(
            f"no published {protocol.published_name} scores of method {method!r}. Published methods: {', '.join(have)}; "
            "compare against one of them with --against-source SOURCE"
        )
    raise ReproduceError(
        f"several published sources of {method!r} for {protocol.published_name} ({', '.join(sorted(of_method))}) and none is "
        f"listed in the protocol's reproduce.published_sources: choose one with --against-source"
    )


def cli_reproduce(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wmbench reproduce",
        description="Compare our runs of METHOD with its published scores under PROTOCOL: per-task and aggregate "
        "equivalence verdicts (TOST on normalised scores, margin and alpha from the protocol).",
    )
    parser.add_argument("method")
    parser.add_argument("protocol", help="protocol id, e.g. atari100k@1")
    parser.add_argument("--tasks", help="comma-separated subset of the protocol's tasks (default: all)")
    parser.add_argument("--runs", nargs="+", type=Path,
                        help="run directories or folders holding them (default: discover under --root)")
    parser.add_argument("--root", type=Path, default=Path("runs"), help="root of run directories (default: runs)")
    parser.add_argument("--against-source", dest="source", help="published source id (default: the protocol's)")
    parser.add_argument("--at-step", type=float, help="compare at this step (record unit) instead of the budget")
    parser.add_argument("--margin", type=float, help="equivalence margin in normalised units (default: protocol's)")
    parser.add_argument("--alpha", type=float, help="TOST level (default: protocol's)")
    parser.add_argument("--metric", choices=AGGREGATE_METRICS, default="iqm", help="aggregate deciding the verdict")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--min-seeds", type=int,
                        help="seeds per task on each side below which a verdict is inconclusive (default: the "
                        "protocol's minimum; a lower value is stated in the verdict)")
    parser.add_argument("--untrained-runs", nargs="+", type=Path, metavar="PATH",
                        help="run directories (or folders) of an untrained baseline, e.g. `random`, on the same "
                        "protocol: the level ours must rise above (default: the published curves' first points)")
    parser.add_argument("--allow-reduced", action="store_true",
                        help="compare runs whose settings differ from the source's recipe (e.g. a smaller model on "
                        "CPU); the verdict lists every differing key as 'reduced: key=value'")
    parser.add_argument("--allow-mixed-scoring", action="store_true",
                        help="compare finals scored by different rules (e.g. authors' evaluation vs the protocol's "
                        "training window); the verdict says so")
    parser.add_argument("--json", type=Path, help="also write the verdict as JSON here")
    args = parser.parse_args(argv)

    from wmbench import results

    protocol = load_protocol(args.protocol)
    tasks = [protocol.check_task(t.strip()) for t in args.tasks.split(",")] if args.tasks else list(protocol.tasks)
    source = select_source(protocol, args.method, args.source)

    notes: list[str] = []
    if args.runs:
        run_dirs = []
        for path in args.runs:
            if (path / "run.json").is_file():
                run_dirs.append(path)
                continue
            # A folder of runs: take this method's runs of this protocol and task selection, quietly.
            for found_dir in sorted(q.parent for q in path.rglob("run.json")):
                info = run_info(found_dir)
                if (info.get("method"), info.get("protocol")) == (args.method, protocol.id) and info.get("task") in tasks:
                    run_dirs.append(found_dir)
    else:
        run_dirs = [p for paths in find_runs(args.root, protocol, args.method, tasks).values() for p in paths]
    if not run_dirs:
        where = (f"in {', '.join(map(str, args.runs))}" if args.runs
                 else f"under {args.root}/{protocol.id}/<task>/{args.method}/")
        raise ReproduceError(
            f"no runs of {args.method} on {protocol.id} ({len(tasks)} task(s)) found {where}; produce them with "
            f"`wmbench sweep {args.method} {protocol.id} --seeds 0-{protocol.seeds.minimum - 1} --root {args.root}`"
            ", or pass run directories with --runs"
        )
    usable: dict[str, list[Path]] = {t: [] for t in tasks}
    for run_dir in run_dirs:
        info = run_info(run_dir)
        problem = run_problem(info, protocol, args.method, args.at_step)
        if not problem and info.get("task") not in usable:
            problem = f"task {info.get('task')!r} is not among the selected tasks"
        if problem:
            notes.append(f"skipped {run_dir}: {problem}.")
        else:
            usable[info["task"]].append(run_dir)
    short = {t: len(p) for t, p in usable.items() if len(p) < protocol.seeds.minimum}
    if short:
        # Running missing seeds is the sweep's job; it skips finished runs and resumes unfinished ones.
        print(
            f"{len(short)} of {len(tasks)} tasks have fewer usable runs than the protocol's minimum of "
            f"{protocol.seeds.minimum} seeds (" + ", ".join(f"{t}: {n}" for t, n in short.items())
            + f"). To produce them:\n  wmbench sweep {args.method} {protocol.id} --seeds 0-{protocol.seeds.minimum - 1}"
            f" --tasks {','.join(short)} --root {args.root}\n"
        )
    usable_dirs = [p for paths in usable.values() for p in paths]
    if not usable_dirs:
        raise ReproduceError("no usable runs: " + " ".join(notes))

    ours = results.load_scores(usable_dirs)
    ours = ours[ours["task"].isin(tasks)]
    entries = results.paper_tables(protocol=protocol.published_name, source=source)
    if len(entries):  # a paper's table entry (mean and spread): one summary verdict per task
        untrained_f = None
        if args.untrained_runs:
            untrained_f = finals_at(results.load_scores(args.untrained_runs), protocol, args.at_step)
        results.check_table(ours, protocol, "ours", args.at_step)
        ours_f = finals_at(ours, protocol, args.at_step)
        recipe, differences = recipe_check(args.method, source, [run_info(p) for p in usable_dirs])
        for note in notes:
            print(f"note: {note}")
        out = []
        for _, entry in entries[entries["task"].isin(tasks)].iterrows():
            v = summary_verdict(ours_f, entry, protocol, untrained_finals=untrained_f, margin=args.margin,
                                alpha=args.alpha, min_seeds=args.min_seeds)
            if differences and not args.allow_reduced:
                v = dataclasses.replace(v, verdict=NOT_COMPARABLE, reason=f"settings differ from recipe {recipe}: "
                                        + "; ".join(differences) + " (--allow-reduced compares anyway)")
            elif differences:
                v = dataclasses.replace(v, notes=v.notes + tuple(f"reduced: {d}" for d in differences))
            print(v.text)
            print()
            out.append(_jsonable(dataclasses.asdict(v)))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))
            print(f"wrote {args.json}")
        return 0
    published = results.published(method=None, protocol=protocol.published_name, source=source)
    published = published[published["task"].isin(tasks)]
    untrained_runs = None
    if args.untrained_runs:
        untrained_runs = results.load_scores(args.untrained_runs)
        untrained_runs = untrained_runs[untrained_runs["task"].isin(tasks) & (untrained_runs["protocol"] == protocol.id)]
        if untrained_runs.empty:
            raise ReproduceError(f"--untrained-runs: no runs of {protocol.id} on the selected tasks in "
                                 f"{', '.join(map(str, args.untrained_runs))}")
    result = compare(
        ours, published, protocol, at_step=args.at_step, source=source, margin=args.margin, alpha=args.alpha,
        metric=args.metric, reps=args.reps, seed=args.seed, tasks=tasks, untrained_runs=untrained_runs,
        min_seeds=args.min_seeds, allow_mixed_scoring=args.allow_mixed_scoring,
    )
    result.notes[:0] = notes
    result.recipe, differences = recipe_check(args.method, source, [run_info(p) for p in usable_dirs])
    if not result.recipe:
        result.notes.append(f"{args.method} has no recipe for {source}: the runs' settings were not checked against "
                            "the configuration that produced it.")
    elif args.allow_reduced:
        result.reduced = differences
    else:
        result.differences = differences
    print(result.table())
    print()
    for note in result.notes:
        print(f"note: {note}")
    print()
    print(result.text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
        print(f"\nwrote {args.json}")
    return 0


def run_problem(info: dict[str, Any], protocol: Protocol, method: str | None = None,
                at_step: float | None = None, allow_smoke: bool = False) -> str:
    """Why a run (its run.json) cannot enter a comparison under `protocol` ('' if it can): other protocol or
    version, edited protocol file, other method, smoke budget (unless `allow_smoke`: reports show smoke runs,
    labelled as such; verdicts never use them), or unfinished (unless it has reached `at_step`).
    Shared by `wmbench reproduce` and `wmbench report`, which print the reason: runs are never mixed silently."""
    if info.get("protocol") != protocol.id:
        return f"protocol {info.get('protocol')!r}, not {protocol.id}"
    if info.get("protocol_hash") and info["protocol_hash"] != protocol.hash:
        return (f"protocol hash {info['protocol_hash']} differs from the current {protocol.id} file's {protocol.hash} "
                "(the protocol file was edited after the run)")
    if method is not None and info.get("method") != method:
        return f"method {info.get('method')!r}, not {method!r}"
    if info.get("smoke") and not allow_smoke:
        return "smoke run (tiny budget)"
    if info.get("status") != "finished":
        done = protocol.to_unit(info.get("agent_steps") or 0, task=info.get("task"))
        if at_step is None or done < at_step:
            return f"unfinished (status {info.get('status')!r} at {done:,.0f} {protocol.budget.step_unit})"
    return ""
