"""Comparison reports: `wmbench report` (Markdown + self-contained HTML) and `wmbench leaderboard` (static HTML).

Owns how results are gathered into comparable groups and presented. A report compares *entries* (our method's
runs, a score table's method, or a published method's runs) under ONE protocol: final scores by the protocol's
rule (`results.final_scores`), normalised score matrices (`stats.score_matrix`), aggregates, performance profiles
and probabilities of improvement with stratified-bootstrap CIs (`wmbench.stats`), figures from `wmbench.plots`.

Nothing is averaged silently: runs of another protocol or version, edited protocol files (hash mismatch),
unfinished or smoke runs are left out with a warning; tasks missing from some entry are dropped from the aggregate
for every entry (aggregates over different task sets are not comparable), and differing seed counts are reported.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import datetime as _dt
import html
import io
import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wmbench.errors import WmbenchError
from wmbench.protocols import Protocol, ProtocolError, load_protocol

CURVE_BINS = 40


class ReportError(WmbenchError, ValueError):
    """Bad input to a report or leaderboard (no data, ambiguous protocol, unknown --against, ...)."""


@dataclass
class Entry:
    """One compared group: a method's runs from one origin (ours, a score table, or a published source)."""

    label: str
    method: str
    kind: str  # "ours" (run directories), "table" (score CSV) or "published"
    sources: tuple[str, ...]
    table: pd.DataFrame
    finals: pd.DataFrame | None = None  # results.final_scores output
    matrix: np.ndarray | None = None  # normalised [runs x tasks] over the report's common tasks
    budget: int | None = None  # agent steps of smoke / reduced-budget runs (None: the protocol's budget)


@dataclass
class Collection:
    """Everything a report or leaderboard shows, for one protocol."""

    protocol: Protocol
    entries: list[Entry]
    tasks: list[str]  # tasks every entry has finals on (aggregate columns)
    warnings: list[str] = field(default_factory=list)
    aggregates: dict[str, dict[str, tuple[float, float, float]]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ gathering data


def _published_entry(protocol: Protocol, spec: str) -> Entry:
    """`METHOD` (the protocol's listed source for it, or its only one) or `METHOD=SOURCE`."""
    from wmbench import results
    from wmbench.reproduce import select_source

    method, _, source = spec.partition("=")
    source = select_source(protocol, method, source or None)
    table = results.published(protocol=protocol.published_name, method=method, source=source)
    return Entry(f"{method} (published)", method, "published", (source,), table)


def _resolve_protocol(table: pd.DataFrame | None, protocol: str | None) -> Protocol:
    if protocol is not None:
        return load_protocol(protocol)
    ids = sorted(set(table["protocol"])) if table is not None else []
    versioned = [p for p in ids if "@" in p]
    if len(versioned) == 1:
        return load_protocol(versioned[0])
    if not ids:
        raise ReportError("no protocol: give --protocol ID (e.g. atari100k@1) when only published methods are compared")
    raise ReportError(
        f"the inputs hold scores of protocols {ids}; a report compares one protocol: choose it with --protocol "
        "(the others are then left out with a warning)"
    )


def collect(
    paths: Sequence[str | Path] = (),
    published: Sequence[str] = (),
    protocol: str | None = None,
    tasks: Sequence[str] | None = None,
    table: pd.DataFrame | None = None,
    include_smoke: bool = False,
) -> Collection:
    """Load runs / score tables (`paths`, or an already loaded `table`) and published methods, keep one protocol,
    compute finals and the common task set.

    Runs below the protocol's budget (`--smoke` or `--steps`) form their own entries, labelled `METHOD (smoke, N agent
    steps)` and scored at their own budget, with a warning; beside full runs they are left out, unless
    `include_smoke` (the leaderboard lists them, unranked)."""
    from wmbench import results, stats
    from wmbench.reproduce import run_info, run_problem

    warnings: list[str] = []
    if paths:
        table = results.load_scores(list(paths))
    proto = _resolve_protocol(table, protocol)
    entries: list[Entry] = []
    if table is not None:
        other = ~table["protocol"].isin([proto.id, proto.name, proto.published_name])
        if other.any():
            left = table[other].groupby("protocol")["source"].nunique()
            warnings.append(
                f"Left out: {', '.join(f'{n} run(s)/table(s) of {p}' for p, n in left.items())} "
                f"(this report is for {proto.id}; other protocols or versions are never mixed in)."
            )
            table = table[~other]
        ours = table["source"].str.startswith("wmbench:")
        bad_sources = []
        reduced: dict[str, int] = {}  # source -> agent-step budget of an included smoke / --steps run
        for source in sorted(set(table.loc[ours, "source"])):
            info = run_info(Path(source.removeprefix("wmbench:")))
            problem = run_problem(info, proto, allow_smoke=True)
            budget = _reduced_budget(info, proto)
            if budget is not None and not problem:
                reduced[source] = budget
            if problem:
                bad_sources.append(source)
                warnings.append(f"Left out {source.removeprefix('wmbench:')}: {problem}.")
        table = table[~table["source"].isin(bad_sources)]
        ours = table["source"].str.startswith("wmbench:")
        smoke = table["source"].map(reduced).notna()  # smoke or --steps runs below the protocol's budget
        if (ours & smoke).any() and (ours & ~smoke).any() and not include_smoke:
            n = table.loc[ours & smoke, "source"].nunique()
            warnings.append(f"Left out {n} smoke run(s): full runs are present, and the two are never mixed.")
            table = table[~(ours & smoke)]
            ours, smoke = ours[table.index], smoke[table.index]
        for kind, rows in (("ours", table[ours]), ("table", table[~ours])):
            budgets = rows["source"].map(reduced).fillna(0).astype(int)  # 0: the protocol's budget
            for (method, budget), group in rows.groupby([rows["method"], budgets], sort=True):
                label = f"{method} (smoke, {budget:,} agent steps)" if budget else str(method)
                entries.append(Entry(label, str(method), kind, tuple(sorted(set(group["source"]))), group,
                                     budget=int(budget) or None))
    entries += [_published_entry(proto, spec) for spec in published]
    if not entries:
        raise ReportError("nothing to compare: pass run directories / score tables and/or --published METHOD")
    labels = [e.label for e in entries]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ReportError(f"entries {dup} appear twice (e.g. in runs and in a score table): pass each once")

    wanted = [proto.check_task(t) for t in tasks] if tasks else list(proto.tasks)
    kept = []
    for e in entries:
        e.table = e.table[e.table["task"].isin(wanted)]
        if e.table.empty:
            warnings.append(f"{e.label}: no rows on the selected tasks; left out.")
            continue
        # The check behind `wmbench validate`: a table report accepts, validate accepts, and the reverse.
        # (its warnings, seeds below the minimum, smoke runs, runs that stop early, are stated below in the
        # report's own words: not repeated here)
        results.check_table(e.table, proto, e.label)
        try:
            finals = results.final_scores(
                e.table, proto, budget=None if e.budget is None else float(proto.to_unit(e.budget)))
        except WmbenchError as err:
            warnings.append(f"{e.label}: no final scores under {proto.id} ({err}); left out.")
            continue
        budget = float(proto.to_unit(e.budget if e.budget is not None else proto.budget.agent_steps))
        finals, dropped = results.usable_finals(finals, proto, budget)
        warnings += [f"{e.label}: {d}" for d in dropped]
        if (finals["basis"] == "final_mean").any():
            warnings.append(f"{e.label}: only publisher-averaged finals (one value per task, no seeds) on "
                            f"{(finals['basis'] == 'final_mean').sum()} task(s); left out of the statistics.")
            finals = finals[finals["basis"] != "final_mean"]
        if finals.empty:
            continue
        e.finals = finals
        kept.append(e)
        if e.budget is not None:
            warnings.append(
                f"{e.label}: smoke run(s) at {e.budget:,} agent steps, not the protocol's budget of "
                f"{proto.budget.agent_steps:,}: they show that the pipeline works; their scores are not results, "
                "comparable only with runs at the same budget, and never to be cited.")
    if not kept:
        raise ReportError("no entry has per-seed final scores: " + " ".join(warnings))
    scorings = {e.label: sorted(set(e.finals["scoring"])) for e in kept}
    if len({s for v in scorings.values() for s in v}) > 1:
        warnings.append(
            "The entries' finals come from different scoring rules ("
            + "; ".join(f"{label}: {', '.join(v)}" for label, v in scorings.items())
            + "): authors' end-of-training evaluations, the protocol's rule and a rule applied to a curve recorded "
            "under other rules are different measurements, so aggregates and probabilities of improvement across "
            "them compare unlike things."
        )
    common = [t for t in wanted if all(t in set(e.finals["task"]) for e in kept)]
    for e in kept:
        absent = [t for t in wanted if t not in set(e.finals["task"])]
        if absent:
            warnings.append(f"{e.label}: no runs on {len(absent)} of {len(wanted)} tasks ({', '.join(absent)}); "
                            "these tasks are left out of every aggregate.")
    if not common:
        raise ReportError("the entries share no task with final scores; nothing can be aggregated")
    for e in kept:
        counts = e.finals[e.finals["task"].isin(common)].groupby("task").size()
        if counts.min() < proto.seeds.minimum:
            few = counts[counts < proto.seeds.minimum]
            warnings.append(
                f"{e.label}: fewer seeds than the protocol's minimum of {proto.seeds.minimum} on {len(few)} task(s) "
                f"({', '.join(f'{t}: {n}' for t, n in few.items())})."
            )
        if counts.min() != counts.max():
            warnings.append(f"{e.label}: seed counts differ across tasks ({counts.min()}..{counts.max()}); "
                            f"aggregates use the first {counts.min()} seeds of each task.")
        (e.matrix,) = stats.score_matrix(
            e.finals, proto.score.normaliser, tasks=common, allow_missing="min_runs"
        ).values()
    return Collection(proto, kept, common, warnings)


def _reduced_budget(info: dict, proto: Protocol) -> int | None:
    """Agent-step budget of a run below the protocol's (a smoke or `--steps` run, from its run.json), else None;
    counted at the protocol's `action_repeat` as `budget.agent_steps` is (a task's own agent steps differ from it
    only under per-task action repeats)."""
    task = info.get("task")
    p = proto.for_task(task) if task in proto.tasks else proto
    budget = info.get("budget_agent_steps")
    if info.get("smoke"):
        steps = int(budget) if budget else p.smoke.agent_steps
    elif budget is not None and int(budget) < p.budget.agent_steps:
        steps = int(budget)
    else:
        return None
    return steps * p.action_repeat // proto.action_repeat


def compute_aggregates(c: Collection, reps: int, seed: int) -> None:
    from wmbench import stats

    c.aggregates = {
        label: {m: tuple(v) for m, v in per.items()}
        for label, per in stats.aggregate(
            {e.label: e.matrix for e in c.entries}, metrics=c.protocol.score.aggregates, reps=reps, seed=seed
        ).items()
    }


def mean_ci(values: np.ndarray, reps: int = 1000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` (seeds) with a percentile-bootstrap CI over seeds; one value gives a zero-width interval."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    return float(v.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def curve_bands(
    curves: pd.DataFrame, budget: float, bins: int = CURVE_BINS, reps: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Learning curve of one entry on one task: x, mean over seeds, and its 95% bootstrap CI over seeds.

    Each seed's episode returns are averaged within `bins` equal-width step bins over (0, budget] (episodes end at
    irregular steps); bins where no seed has an episode are dropped, and a seed without an episode in a bin does
    not enter that bin's mean or interval. The band is a percentile bootstrap of the mean over seeds (`mean_ci`):
    where the mean curve is, not the range the runs span.
    """
    edges = np.linspace(0.0, budget, bins + 1)
    per_seed = []
    for _, run in curves.groupby("seed"):
        x = run["env_step"].to_numpy(float)
        y = run["score"].to_numpy(float)
        idx = np.clip(np.searchsorted(edges, x, side="left") - 1, 0, bins - 1)
        inside = (x > 0) & (x <= budget)
        sums = np.bincount(idx[inside], weights=y[inside], minlength=bins)
        counts = np.bincount(idx[inside], minlength=bins)
        per_seed.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    values = np.array(per_seed)
    keep = ~np.all(np.isnan(values), axis=0)
    centres = (edges[:-1] + edges[1:]) / 2
    bands = np.array([mean_ci(values[:, j], reps, seed + int(j)) for j in np.flatnonzero(keep)]).reshape(-1, 3)
    return centres[keep], bands[:, 0], bands[:, 1], bands[:, 2]


def sample_efficiency(c: Collection, reps: int, seed: int, points: int = 10) -> dict[str, tuple]:
    """IQM of normalised scores at `points` budgets up to the protocol's (the rule applied at each budget), with
    stratified-bootstrap CIs (`stats.sample_efficiency`), per entry that has curves on every compared task with the
    same runs at every budget; entries with finals only (no curves) and smoke entries have no such curve."""
    from wmbench import results, stats

    p = c.protocol
    budget = float(p.to_unit(p.budget.agent_steps))
    out = {}
    for e in c.entries:
        if e.budget is not None:  # smoke / reduced-budget entries: no curve up to the protocol's budget
            continue
        keys = set(zip(e.finals["task"].astype(str), e.finals["seed"].astype(str), strict=True))
        curve = e.table[(e.table["point_type"] == "curve")]
        if curve.empty:
            continue
        curve = curve[np.array([k in keys for k in zip(curve["task"].astype(str), curve["seed"].astype(str),
                                                          strict=True)], dtype=bool)]
        if set(curve["task"]) != set(c.tasks):
            continue
        per_step, usable = [], []
        for step in np.arange(1, points + 1) / points * budget:
            try:
                finals = results.final_scores(curve, p, budget=step)
            except WmbenchError:
                continue  # some run has no episode yet by this step
            (m,) = stats.score_matrix(finals, p.score.normaliser, tasks=c.tasks, allow_missing="min_runs").values()
            if per_step and m.shape != per_step[0].shape:
                continue
            per_step.append(m)
            usable.append(step)
        if len(per_step) >= 2:
            eff = stats.sample_efficiency(np.stack(per_step, axis=2), usable, metric="iqm", reps=reps, seed=seed)
            out[e.label] = (eff.x, eff.point, eff.low, eff.high)
    return out


def _curves(c: Collection, tasks: Sequence[str]) -> dict[str, dict[str, tuple]]:
    budget = float(c.protocol.to_unit(c.protocol.budget.agent_steps))
    phase = c.protocol.score.scored_phase
    out: dict[str, dict[str, tuple]] = {}
    for task in tasks:
        for e in c.entries:
            rows = e.table[(e.table["task"] == task) & (e.table["point_type"] == "curve")]
            if "phase" in rows.columns:
                rows = rows[rows["phase"].isna() | (rows["phase"] == phase)]
            if rows.empty:
                continue
            x, mean, low, high = curve_bands(rows, budget)
            if len(x):
                out.setdefault(task, {})[e.label] = (x, mean, low, high)
    return out


# ----------------------------------------------------------------------------------------------------- rendering

CSS = """
.csv{font-size:.85em;margin:.1em 0 1em}.tw{overflow-x:auto;max-width:100%}details{margin:.5em 0}summary{cursor:pointer;color:#0072B2}
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.45;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #ddd;
padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.3em .6em;
text-align:right;white-space:nowrap}th{background:#f4f4f4}td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafafa}
.warn{background:#fff4e5;border-left:4px solid #e69f00;padding:.6em 1em;margin:.8em 0}
.warn li{margin:.2em 0}.meta{color:#555;font-size:.92em}img{max-width:100%;height:auto;display:block;
margin:.5em 0}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}.note{color:#555;font-size:.9em}
"""


def _ci(v: tuple[float, float, float], digits: int = 3) -> str:
    return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"


def _seed_span(e: Entry, tasks: Sequence[str]) -> str:
    counts = e.finals[e.finals["task"].isin(tasks)].groupby("task").size()
    return f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}–{counts.max()}"


def _source_names(e: Entry) -> list[tuple[str, str]]:
    """(text, link key) per source; our runs are summarised by their common folder and count."""
    if e.kind != "ours":
        return [(s, s) for s in e.sources]
    dirs = [s.removeprefix("wmbench:") for s in e.sources]
    if len(dirs) == 1:
        return [(dirs[0], dirs[0])]
    common = os.path.commonpath(dirs)
    return [(f"{common}/ ({len(dirs)} runs)", common)]


def methods_rows(c: Collection) -> list[list[str]]:
    """Per entry: origin, sources, protocol, seeds/task, tasks covered, budget reached, unit, finals basis."""
    unit = c.protocol.budget.step_unit
    budget = c.protocol.to_unit(c.protocol.budget.agent_steps)
    rows = []
    for e in c.entries:
        curve = e.table[e.table["point_type"] == "curve"]
        reached = f"{curve['env_step'].max():,.0f}" if len(curve) else "—"
        basis = ", ".join(f"{b} ({n})" for b, n in e.finals["scoring"].value_counts().items())
        protocols = ", ".join(sorted(set(e.table["protocol"])))
        src = ", ".join(name for name, _ in _source_names(e))
        rows.append([e.label, e.kind, src, protocols, _seed_span(e, c.tasks),
                     f"{e.finals['task'].nunique()}/{len(c.protocol.tasks)}", reached, f"{budget:,.0f}", unit, basis])
    return rows


METHOD_HEADER = ["entry", "origin", "source", "protocol", "seeds/task", "tasks", "last curve step", "budget", "unit",
                 "scoring rule (runs)"]


def per_task_rows(c: Collection, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Per task and entry: mean raw final over seeds with its 95% bootstrap CI over seeds (`mean_ci`), the
    normalised mean and the number of seeds."""
    from wmbench import results

    header = ["task"] + [e.label for e in c.entries]
    rows = []
    for task in c.protocol.tasks:
        cells = [task]
        present = False
        for e in c.entries:
            f = e.finals[e.finals["task"] == task]["final"].to_numpy(float)
            if len(f):
                present = True
                norm = float(np.mean(results.normalise(f, task, c.protocol)))
                mean, low, high = mean_ci(f, seed=seed)
                cells.append(f"{mean:,.1f} [{low:,.1f}, {high:,.1f}] ({norm:.2f}, n={len(f)})")
            else:
                cells.append("—")
        if present:
            rows.append(cells)
    return header, rows


RUN_HEADER = ["entry", "task", "seed", "final", "normalised", "scoring rule", "curve reached", "source"]


def per_run_rows(c: Collection) -> list[list[str]]:
    """Every run's final score as it entered the statistics (after the completeness rule)."""
    from wmbench import results

    rows = []
    for e in c.entries:
        f = e.finals
        norm = results.normalise(f["final"].to_numpy(float), f["task"].to_numpy(), c.protocol)
        for r, n in zip(f.itertuples(), norm, strict=True):
            reached = f"{r.reached:,.0f}" if np.isfinite(r.reached) else "—"
            rows.append([e.label, r.task, str(r.seed), f"{r.final:.6g}", f"{n:.4f}", r.scoring, reached,
                         str(r.source).removeprefix("wmbench:")])
    return rows


META_HEADER = ["entry", "run", "status", "recipe", "config sha256", "git sha", "wmbench", "torch", "device",
               "threads", "resumes"]


def run_metadata_rows(c: Collection) -> list[list[str]]:
    """What each of our runs was made with, from its run.json: recipe, a hash of its resolved config (equal hashes =
    identical settings), code version (git sha, package versions), device, threads and resumes."""
    import hashlib
    import json

    from wmbench.reproduce import run_info

    rows = []
    for e in c.entries:
        if e.kind != "ours":
            continue
        for source in e.sources:
            run_dir = Path(source.removeprefix("wmbench:"))
            info = run_info(run_dir)
            config = json.dumps(info.get("config"), sort_keys=True)
            versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
            recipe = info.get("recipe") if isinstance(info.get("recipe"), dict) else {}
            rows.append([e.label, str(run_dir), str(info.get("status", "")), str(recipe.get("name", "—")),
                         hashlib.sha256(config.encode()).hexdigest()[:12], str(info.get("git_sha") or "—")[:12],
                         str(versions.get("wmbench", "—")), str(versions.get("torch", "—")),
                         str(info.get("device", "—")), str(info.get("threads", "—")), str(info.get("resumes", "—"))])
    return rows


def _csv_link(name: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A download link holding the table as CSV inside the page (no script, no external file)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    data = base64.b64encode(buf.getvalue().encode()).decode("ascii")
    return (f"<p class='csv'><a download='{html.escape(name)}' href='data:text/csv;base64,{data}'>"
            f"download {html.escape(name)}</a></p>")


_MD_SPECIAL = str.maketrans({ch: "\\" + ch for ch in "\\`*_[]|#"})


def _md(text: object) -> str:
    """Text for Markdown: HTML-escaped as in the HTML report (a label like `<script>` stays text), and Markdown's
    own markup characters backslash-escaped (a label cannot open a link, emphasis or a table cell)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").translate(_MD_SPECIAL)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_code(text: str) -> str:
    """A fenced code block whose content cannot close the fence."""
    fence = "```"
    return f"{fence}\n{text.replace(fence, '~~~')}\n{fence}"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    th = "".join(f"<th class='{'l' if i < left else ''}'>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{html.escape(str(v))}</td>"
                         for i, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<div class='tw'><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"


def _resolve_against(c: Collection, against: str | None) -> str | None:
    if against is None:
        return None
    labels = [e.label for e in c.entries]
    if against in labels:
        return against
    by_method = [e.label for e in c.entries if e.method == against]
    if len(by_method) == 1:
        return by_method[0]
    import difflib

    close = difflib.get_close_matches(against, labels + sorted({e.method for e in c.entries}), n=3, cutoff=0.4)
    if by_method:
        raise ReportError(f"--against {against!r} matches {by_method}: give the full label")
    raise ReportError(f"--against {against!r} is not a compared entry." + (
        f" Did you mean: {', '.join(close)}?" if close else "") + f" Entries: {', '.join(labels)}")


@dataclass
class Report:
    """Computed report content (numbers and figures), rendered to Markdown and HTML."""

    collection: Collection
    against: str | None
    improvement: dict[str, tuple[float, float, float]]
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    taus: np.ndarray
    curves: dict[str, dict[str, tuple]]
    reps: int
    poi_reps: int
    seed: int
    command: str
    verdicts: list = field(default_factory=list)  # reproduce.Verdict per (our method, its published runs)
    efficiency: dict = field(default_factory=dict)  # label -> (steps, IQM, low, high): `sample_efficiency`

    def aggregate_rows(self) -> tuple[list[str], list[list[str]]]:
        metrics = list(self.collection.protocol.score.aggregates)
        header = ["entry", "runs × tasks"] + [f"{m} [95% CI]" for m in metrics]
        rows = [
            [e.label, f"{e.matrix.shape[0]} × {e.matrix.shape[1]}"]
            + [_ci(self.collection.aggregates[e.label][m]) for m in metrics]
            for e in self.collection.entries
        ]
        return header, rows

    def improvement_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["comparison", "P(X > Y) [95% CI]", "reading"]
        rows = []
        for label, v in self.improvement.items():
            reading = ("X better" if v[1] > 0.5 else "Y better" if v[2] < 0.5 else "no clear difference")
            rows.append([f"P({label} > {self.against})", _ci(v, 2), reading])
        return header, rows

    def header_lines(self) -> list[str]:
        p = self.collection.protocol
        budget = p.to_unit(p.budget.agent_steps)
        budget_text = f"{p.budget.agent_steps:,} agent steps = {budget:,.0f} {p.budget.step_unit}"
        if p.action_repeat_per_task:  # the same env steps for every task, agent steps by the task's repeat
            budget_text = (f"{budget:,.0f} {p.budget.step_unit} for every task (action repeat per task: "
                           f"{', '.join(f'{t} {p.repeat_for(t)}' for t in p.tasks)})")
        return [
            f"Protocol {p.id} (hash {p.hash}): {len(p.tasks)} tasks, budget {budget_text}; final score rule {p.score.rule} (phase {p.score.phase}, window "
            f"{p.score.window:,} {p.budget.step_unit}); normaliser {p.score.normaliser}.",
            f"Aggregates over the {len(self.collection.tasks)} tasks every entry has: stratified bootstrap over runs "
            f"(Agarwal et al. 2021), {self.reps} replications, seed {self.seed}; probability of improvement "
            f"{self.poi_reps} replications.",
            f"Generated {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by `{self.command}`.",
        ]

    def markdown(self) -> str:
        c = self.collection
        out = [f"# wmbench report: {_md(c.protocol.id)}", ""] + [f"- {_md(line)}" for line in self.header_lines()]
        out += [""]
        if c.warnings:
            out += ["## Warnings", ""] + [f"- {_md(w)}" for w in c.warnings] + [""]
        out += ["## Entries", "", _md_table(METHOD_HEADER, methods_rows(c)), ""]
        out += ["## Aggregate normalised scores", "", _md_table(*self.aggregate_rows()), ""]
        if self.efficiency:
            out += ["## Sample efficiency: IQM over steps", "", _md_table(*self.efficiency_rows()), ""]
        if self.improvement:
            out += [f"## Probability of improvement vs {_md(self.against)}", "", _md_table(*self.improvement_rows()), ""]
        for v in self.verdicts:
            out += [f"## Reproduction: {_md(v.method)} vs {_md(v.source)}", "", _md(v.text), "", _md_code(v.table()), ""]
        out += ["## Per task: mean raw final [95% CI over seeds] (normalised mean, seeds)", "",
                _md_table(*per_task_rows(c, self.seed)), ""]
        out += ["## Per-run finals", "", _md_table(RUN_HEADER, per_run_rows(c)), ""]
        meta = run_metadata_rows(c)
        if meta:
            out += ["## Our runs: settings and code", "", _md_table(META_HEADER, meta), ""]
        out += ["Figures (intervals, sample efficiency, performance profiles, learning curves) are in the HTML report.", ""]
        return "\n".join(out)

    def efficiency_rows(self) -> tuple[list[str], list[list[str]]]:
        unit = self.collection.protocol.budget.step_unit
        header = ["entry"] + [f"{x:,.0f} {unit}" for x in next(iter(self.efficiency.values()))[0]]
        rows = []
        for label, (x, point, low, high) in self.efficiency.items():
            cells = {f"{xi:,.0f} {unit}": _ci((p_, lo, hi), 2) for xi, p_, lo, hi in zip(x, point, low, high, strict=True)}
            rows.append([label] + [cells.get(h, "—") for h in header[1:]])
        return header, rows

    def html(self) -> str:
        from wmbench import plots

        c = self.collection
        labels = [e.label for e in c.entries]
        colour_of = plots.method_colours(labels)
        normaliser = c.protocol.score.normaliser
        norm_label = "raw score (no normaliser)" if normaliser == "none" else f"{normaliser}-normalised score"
        figs = {
            "intervals": plots.to_png_base64(plots.interval_plot(
                c.aggregates, list(c.protocol.score.aggregates), xlabel=norm_label, colour_of=colour_of)),
            "profiles": plots.to_png_base64(plots.performance_profile_plot(
                self.taus, self.profiles, xlabel=f"{norm_label} (τ)", colour_of=colour_of)),
        }
        if self.improvement:
            figs["improvement"] = plots.to_png_base64(plots.improvement_plot(
                self.improvement, self.against, colour_of=colour_of))
        if self.curves:
            p = c.protocol
            figs["curves"] = plots.to_png_base64(plots.learning_curves(
                self.curves, xlabel=p.budget.step_unit, ylabel="episode return", colour_of=colour_of,
                budget=float(p.to_unit(p.budget.agent_steps))))
        if self.efficiency:
            p = c.protocol
            figs["efficiency"] = plots.to_png_base64(plots.sample_efficiency_plot(
                self.efficiency, xlabel=p.budget.step_unit, ylabel=f"IQM of {norm_label}", colour_of=colour_of))

        def img(key: str, alt: str) -> str:
            return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{figs[key]}'>"

        parts = [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>wmbench report: {html.escape(c.protocol.id)}</title><style>{CSS}</style></head><body>",
            f"<h1>wmbench report: {html.escape(c.protocol.id)}</h1>",
            "".join(f"<p class='meta'>{_inline(line)}</p>" for line in self.header_lines()),
        ]
        if c.warnings:
            parts.append("<div class='warn'><strong>Warnings</strong><ul>"
                         + "".join(f"<li>{html.escape(w)}</li>" for w in c.warnings) + "</ul></div>")
        slug = c.protocol.id.replace("@", "_")
        parts += ["<h2>Entries</h2>", _html_table(METHOD_HEADER, methods_rows(c), left=4),
                  _csv_link(f"{slug}_entries.csv", METHOD_HEADER, methods_rows(c))]
        parts += ["<h2>Aggregate normalised scores</h2>",
                  "<p class='note'>Bar: 95% stratified-bootstrap CI; tick: point estimate (an interval too narrow to "
                  "see is drawn at a minimum width, outlined). Optimality gap: lower is better.</p>",
                  img("intervals", "aggregate intervals"), _html_table(*self.aggregate_rows()),
                  _csv_link(f"{slug}_aggregates.csv", *self.aggregate_rows())]
        if self.efficiency:
            parts += ["<h2>Sample efficiency</h2>",
                      "<p class='note'>IQM of normalised scores, the protocol's score rule applied at each step; "
                      "band: 95% stratified-bootstrap CI. Entries with published finals only have no curve.</p>",
                      img("efficiency", "sample efficiency"), _html_table(*self.efficiency_rows()),
                      _csv_link(f"{slug}_sample_efficiency.csv", *self.efficiency_rows())]
        parts += ["<h2>Performance profiles</h2>",
                  "<p class='note'>Fraction of runs (all tasks) whose normalised final score exceeds τ; band: 95% "
                  "CI.</p>", img("profiles", "performance profiles")]
        if self.improvement:
            parts += [f"<h2>Probability of improvement vs {html.escape(self.against)}</h2>",
                      "<p class='note'>P(X &gt; Y): chance that a run of X beats a run of Y on a random task "
                      "(Mann-Whitney), averaged over tasks; 0.5 = no difference.</p>",
                      img("improvement", "probability of improvement"), _html_table(*self.improvement_rows()),
                      _csv_link(f"{slug}_improvement.csv", *self.improvement_rows())]
        for v in self.verdicts:
            parts += [f"<h2>Reproduction: {html.escape(v.method)} vs {html.escape(v.source)}</h2>",
                      f"<p>{html.escape(v.text)}</p>", f"<pre>{html.escape(v.table())}</pre>"]
        parts += ["<h2>Per task</h2>", "<p class='note'>Mean raw final score over seeds [95% bootstrap CI over seeds] "
                  "(normalised mean, number of seeds).</p>", _html_table(*per_task_rows(c, self.seed)),
                  _csv_link(f"{slug}_per_task.csv", *per_task_rows(c, self.seed))]
        runs = per_run_rows(c)
        parts += ["<h2>Per-run finals</h2>",
                  f"<details><summary>{len(runs)} runs: the final of every run as it entered the statistics, with "
                  "its scoring rule</summary>", _html_table(RUN_HEADER, runs, left=3), "</details>",
                  _csv_link(f"{slug}_finals.csv", RUN_HEADER, runs)]
        meta = run_metadata_rows(c)
        if meta:
            parts += ["<h2>Our runs: settings and code</h2>",
                      "<p class='note'>From each run's run.json: equal config hashes mean identical resolved settings."
                      "</p>", _html_table(META_HEADER, meta, left=4), _csv_link(f"{slug}_runs.csv", META_HEADER, meta)]
        if self.curves:
            parts += ["<h2>Learning curves</h2>",
                      f"<p class='note'>Episode returns of phase '{html.escape(c.protocol.score.phase)}' averaged in "
                      f"{CURVE_BINS} step bins per seed; line: mean over seeds, band: 95% bootstrap CI of that mean over "
                      "seeds; "
                      "dotted line: budget.</p>", img("curves", "learning curves")]
        parts.append("</body></html>")
        return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape text and render `code` spans."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def build_report(
    c: Collection, against: str | None, reps: int = 2000, poi_reps: int = 2000, seed: int = 0, command: str = ""
) -> Report:
    from wmbench import stats

    compute_aggregates(c, reps, seed)
    against = _resolve_against(c, against)
    improvement = {}
    if against is not None:
        ref = next(e for e in c.entries if e.label == against)
        for e in c.entries:
            if e.label != against:
                improvement[e.label] = tuple(
                    stats.probability_of_improvement(e.matrix, ref.matrix, reps=poi_reps, seed=seed))
    pooled = np.concatenate([e.matrix.ravel() for e in c.entries])
    # Profile range: from the lowest score (or 0) to the 95th percentile of all runs, so a few huge normalised
    # scores (e.g. Atari games far above human) do not squash the informative part of the curve.
    high = float(np.quantile(pooled, 0.95))
    low = min(0.0, float(pooled.min()))
    taus = np.linspace(low, high if high > low else low + 1.0, 81)
    prof = stats.performance_profile({e.label: e.matrix for e in c.entries}, taus, reps=reps, seed=seed)
    profiles = {label: (curve.point, curve.low, curve.high) for label, curve in prof.items()}
    # Our runs of a method next to its published runs: state the reproduction verdict (wmbench reproduce's rule).
    from wmbench import reproduce

    verdicts = [
        reproduce.verdict(ours.finals, pub.finals, c.protocol, tasks=c.tasks, reps=reps, seed=seed,
                          source=pub.sources[0], improvement=False, untrained_finals=reproduce.first_points(pub.table),
                          untrained="the published runs' first curve points")
        for ours in c.entries if ours.kind == "ours" and ours.budget is None
        for pub in c.entries if pub.kind == "published" and pub.method == ours.method
    ]
    return Report(c, against, improvement, profiles, taus, _curves(c, c.tasks), reps, poi_reps, seed, command,
                  verdicts, sample_efficiency(c, reps, seed))


def cli_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wmbench report",
        description="Compare runs, score tables and published methods under one protocol: Markdown summary and a "
        "self-contained HTML report (aggregates with CIs, performance profiles, probability of improvement, "
        "learning curves).",
    )
    parser.add_argument("inputs", nargs="*", type=Path, help="run directories, folders of runs, or score-table CSVs")
    parser.add_argument("--published", nargs="+", default=[], metavar="METHOD[=SOURCE]",
                        help="published methods to include (source: the protocol's listed one unless given)")
    parser.add_argument("--protocol", help="protocol id (default: the one protocol of the inputs)")
    parser.add_argument("--tasks", help="comma-separated subset of the protocol's tasks (default: all)")
    parser.add_argument("--against", help="entry to compare every other entry with (probability of improvement)")
    parser.add_argument("--include-smoke", action="store_true",
                        help="show runs below the protocol's budget (--smoke, --steps) as their own entries, labelled "
                        "'(smoke, N agent steps)', even beside full runs (default: only when no full run is present)")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="HTML report (default: report.html)")
    parser.add_argument("--md", type=Path, help="Markdown summary (default: the HTML path with .md)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    parser.add_argument("--poi-reps", type=int, default=2000,
                        help="replications for probability of improvement (default 2000; vectorised Mann-Whitney, milliseconds each)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    if not args.inputs and not args.published:
        parser.error("give run directories / score tables and/or --published METHOD")

    tasks = args.tasks.split(",") if args.tasks else None
    print("loading scores ...", file=sys.stderr)
    c = collect(args.inputs, args.published, args.protocol, tasks, include_smoke=args.include_smoke)
    print(f"computing statistics for {len(c.entries)} entries x {len(c.tasks)} tasks ({args.reps} bootstrap reps) ...",
          file=sys.stderr)
    command = "wmbench report " + " ".join(shlex.quote(a) for a in argv)
    report = build_report(c, args.against, args.reps, args.poi_reps, args.seed, command)
    md_path = args.md or args.out.with_suffix(".md")
    for path, text in ((args.out, report.html()), (md_path, report.markdown())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for w in c.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {args.out} and {md_path}")
    return 0


# --------------------------------------------------------------------------------------------------- leaderboard
#
# A leaderboard ranks only entries with final scores on every task of the page (all of the protocol's, or the
# --tasks subset): an aggregate over fewer tasks is not comparable, and ranking over the intersection would let one
# 2-task entry shrink a 26-game table. Entries with fewer tasks and smoke runs are listed below the ranking, unranked,
# with the reason. Links to our runs are relative to the output directory, so the folder can be moved or served.

LEADERBOARD_CSS = (".sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;"
                   "vertical-align:baseline}td.src{white-space:normal;overflow-wrap:anywhere;max-width:24em}"
                   "td.why{white-space:normal;max-width:30em}")


def _source_links() -> dict[str, str]:
    from wmbench import results

    path = results.PUBLISHED_DIR / "SOURCES.csv"
    if not path.exists():
        return {}
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {r.source: f"https://github.com/{r.repo}/blob/{r.commit}/{r.path}" for r in df.itertuples()}


METRIC_NAMES = {"iqm": "IQM", "optimality_gap": "optimality gap"}


def rank_metric(p: Protocol) -> str:
    """The aggregate a leaderboard ranks by: IQM when the protocol lists it (Agarwal et al. 2021), else the
    protocol's first aggregate (e.g. control@1 aggregates mean and median only)."""
    aggregates = list(p.score.aggregates)
    return "iqm" if "iqm" in aggregates else aggregates[0]


@dataclass
class Board:
    """One protocol's leaderboard: ranked entries (finals on every task) and the entries that are not ranked."""

    collection: Collection  # the ranked entries only, aggregated over all `tasks`
    metric: str
    unranked: list[tuple[Entry, str]]  # (entry, why it is not ranked)
    subset: bool  # tasks are a --tasks subset of the protocol's


def build_board(protocol: str, published: Sequence[str] = (), tasks: Sequence[str] | None = None,
                table: pd.DataFrame | None = None, reps: int = 2000, seed: int = 0) -> Board:
    proto = load_protocol(protocol)
    wanted = [proto.check_task(t) for t in tasks] if tasks else list(proto.tasks)
    first = collect((), published, proto.id, wanted, table=table, include_smoke=True)

    def why_not(e: Entry) -> str:
        if e.budget is not None:
            return f"smoke run(s) at {e.budget:,} agent steps (the protocol's budget is {proto.budget.agent_steps:,})"
        have = set(e.finals["task"])
        missing = [t for t in wanted if t not in have]
        if missing:
            shown = ", ".join(missing[:6]) + (f", ... ({len(missing) - 6} more)" if len(missing) > 6 else "")
            return f"final scores on {len(wanted) - len(missing)} of {len(wanted)} tasks (missing: {shown})"
        return ""

    unranked = [(e, why) for e in first.entries if (why := why_not(e))]
    ranked = {e.label for e in first.entries} - {e.label for e, _ in unranked}
    c = first
    if unranked:
        rows = [e.table for e in first.entries if e.label in ranked and e.kind != "published"]
        specs = [s for s in published if f"{s.partition('=')[0]} (published)" in ranked]
        if ranked:
            c = collect((), specs, proto.id, wanted, table=pd.concat(rows) if rows else None)
            # Keep what the first pass said about runs left out and about unranked entries; drop its statements about
            # the intersection of tasks (the ranking does not use it) and what the second pass recomputed.
            kept = [w for w in first.warnings if w not in c.warnings and " no runs on " not in w
                    and not any(w.startswith(f"{label}: ") for label in ranked)]
            c.warnings = kept + c.warnings
        else:
            c = Collection(proto, [], wanted, [w for w in first.warnings if " no runs on " not in w])
    c.tasks = wanted if c.entries else c.tasks
    if c.entries:
        compute_aggregates(c, reps, seed)
    return Board(c, rank_metric(proto), unranked, subset=len(wanted) < len(proto.tasks))


def _source_cell(e: Entry, links: dict[str, str], out_dir: Path) -> str:
    """Source links of an entry; our runs are linked relative to `out_dir` (the folder can move or be served)."""
    from urllib.parse import quote

    cells = []
    for name, key in _source_names(e):
        href = links.get(key, "")
        if e.kind == "ours":
            rel = Path(os.path.relpath(Path(key).resolve(), out_dir.resolve())).as_posix()
            name, href = name.replace(key, rel, 1), quote(rel)
        cells.append(f"<a href='{html.escape(href)}'>{html.escape(name)}</a>" if href else html.escape(name))
    return ", ".join(cells)


def _swatch(label: str) -> str:
    from wmbench import plots

    return f"<span class='sw' style='background:{plots.method_colour(label)}'></span>"


def _sorted_entries(board: Board) -> list[Entry]:
    c, metric = board.collection, board.metric
    sign = 1.0 if metric == "optimality_gap" else -1.0  # optimality gap: lower is better
    return sorted(c.entries, key=lambda e: (sign * c.aggregates[e.label][metric][0], e.label))


def leaderboard_page(board: Board, links: dict[str, str], out_dir: Path) -> str:
    """One protocol's leaderboard page: ranked entries with every aggregate of the protocol, then unranked ones."""
    c, metric = board.collection, board.metric
    p = c.protocol
    metrics = [metric] + [m for m in p.score.aggregates if m != metric]
    names = METRIC_NAMES
    head = ("<tr><th>#</th><th class='l'>method</th><th class='l'>origin</th>"
            + "".join(f"<th>{html.escape(names.get(m, m))} [95% CI]</th>" for m in metrics)
            + "<th>seeds/task</th><th class='l'>source</th></tr>")
    rows = []
    for rank, e in enumerate(_sorted_entries(board), 1):
        agg = c.aggregates[e.label]
        rows.append(
            f"<tr><td>{rank}</td><td class='l'>{_swatch(e.label)}{html.escape(e.label)}</td><td class='l'>{e.kind}</td>"
            + "".join(f"<td>{_ci(agg[m])}</td>" for m in metrics)
            + f"<td>{_seed_span(e, c.tasks)}</td><td class='l src'>{_source_cell(e, links, out_dir)}</td></tr>"
        )
    budget = p.to_unit(p.budget.agent_steps)
    scope = (f"the {len(c.tasks)} selected tasks (--tasks; the protocol has {len(p.tasks)})" if board.subset
             else f"all {len(p.tasks)} tasks" if len(p.tasks) > 1 else "the protocol's one task")
    scores = "raw" if p.score.normaliser == "none" else f"{html.escape(p.score.normaliser)}-normalised"
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(p.id)} leaderboard</title>"
        f"<style>{CSS}{LEADERBOARD_CSS}</style></head><body><p><a href='index.html'>all protocols</a></p>",
        f"<h1>{html.escape(p.id)} leaderboard</h1><p class='meta'>{html.escape(p.description)}</p>",
        f"<p class='meta'>Ranked by {html.escape(names.get(metric, metric))} of {scores} final scores over {scope} "
        f"at {budget:,.0f} "
        f"{html.escape(p.budget.step_unit)}, with 95% stratified-bootstrap CIs. Only entries with final scores on "
        "every one of these tasks are ranked; entries with fewer tasks, and smoke runs, are listed below without a "
        "rank (an aggregate over other tasks or another budget is not comparable). Overlapping intervals: the order "
        "between those entries is not established."
        + (" Optimality gap: lower is better." if "optimality_gap" in metrics else "") + "</p>",
    ]
    if c.warnings:
        parts.append("<div class='warn'><strong>Warnings</strong><ul>"
                     + "".join(f"<li>{html.escape(w)}</li>" for w in c.warnings) + "</ul></div>")
    if rows:
        parts.append(f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        parts.append(f"<p><strong>No entry has final scores on all {len(c.tasks)} tasks at the protocol's budget; "
                     "nothing is ranked.</strong></p>")
    if board.unranked:
        parts.append("<h2>Not ranked</h2><table><thead><tr><th class='l'>method</th><th class='l'>origin</th>"
                     "<th class='l'>why not ranked</th><th>tasks</th><th class='l'>source</th></tr></thead><tbody>")
        for e, why in board.unranked:
            parts.append(
                f"<tr><td class='l'>{_swatch(e.label)}{html.escape(e.label)}</td><td class='l'>{e.kind}</td>"
                f"<td class='l why'>{html.escape(why)}</td><td>{e.finals['task'].nunique()}/{len(c.tasks)}</td>"
                f"<td class='l src'>{_source_cell(e, links, out_dir)}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "".join(parts)


def _index_page(rows: Sequence[str], notes: Sequence[str]) -> str:
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>wmbench leaderboards</title>"
        f"<style>{CSS}{LEADERBOARD_CSS}</style></head><body><h1>wmbench leaderboards</h1><table><thead><tr>"
        "<th class='l'>protocol</th><th>ranked</th><th>not ranked</th><th class='l'>top entry</th>"
        f"<th class='l'>score [95% CI]</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
        + f"<p class='meta'>Generated {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p></body></html>"
    )


def cli_leaderboard(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wmbench leaderboard",
        description="Static HTML leaderboard per protocol: entries with final scores on every task ranked by IQM "
        "(or the protocol's first aggregate) with 95% CIs; entries with fewer tasks and smoke runs listed unranked.",
    )
    parser.add_argument("results", nargs="*", type=Path, help="run directories, folders of runs, score-table CSVs")
    parser.add_argument("--out", type=Path, required=True, help="output directory (index.html + one page per protocol)")
    parser.add_argument("--published", nargs="+", default=[], metavar="METHOD[=SOURCE]",
                        help="published methods to include on every page that has them")
    parser.add_argument("--protocol", nargs="+", default=[],
                        help="only these protocol ids (default: every protocol of the results)")
    parser.add_argument("--tasks", help="comma-separated subset of tasks (default: all of each protocol)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from wmbench import results

    table = results.load_scores(args.results) if args.results else None
    found = sorted({p for p in table["protocol"] if "@" in p}) if table is not None else []
    protocols = list(args.protocol) or found
    if not protocols:
        parser.error("no protocol: give results of versioned protocols or --protocol ID")
    notes = []
    if args.protocol and table is not None:
        chosen = set()
        for pid in args.protocol:
            with contextlib.suppress(ProtocolError):
                proto = load_protocol(pid)
                chosen |= {proto.id, proto.name, proto.published_name}
        other = table[~table["protocol"].isin(chosen)]
        if len(other):
            note = (f"Left out by --protocol: {other['source'].nunique()} run(s)/table(s) of "
                    f"{', '.join(sorted(set(other['protocol'])))}.")
            notes.append(note)
            print(f"note: {note}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    links = _source_links()
    index_rows, failed = [], 0
    for pid in protocols:
        try:
            proto = load_protocol(pid)
            published = [m for m in args.published if _has_published(proto, m.partition("=")[0])]
            rows = None if table is None else table[table["protocol"].isin([proto.id, proto.name, proto.published_name])]
            rows = None if rows is None or rows.empty else rows
            print(f"{proto.id}: {0 if rows is None else rows['source'].nunique()} run(s)/table(s), "
                  f"{len(published)} published method(s) ...", file=sys.stderr)
            board = build_board(proto.id, published, args.tasks.split(",") if args.tasks else None, rows,
                                args.reps, args.seed)
            page = args.out / f"{proto.id}.html"
            page.write_text(leaderboard_page(board, links, args.out))
        except WmbenchError as e:  # this protocol's page is not built; the others and the index still are
            failed += 1
            print(f"error: {pid}: {e}", file=sys.stderr)
            index_rows.append(f"<tr><td class='l'>{html.escape(pid)}</td><td colspan='4' class='l'>not built: "
                              f"{html.escape(str(e))}</td></tr>")
            continue
        c = board.collection
        ranked = _sorted_entries(board)
        top = (f"<td class='l'>{_swatch(ranked[0].label)}{html.escape(ranked[0].label)}</td>"
               f"<td class='l'>{METRIC_NAMES.get(board.metric, board.metric)} "
               f"{_ci(c.aggregates[ranked[0].label][board.metric])}</td>"
               if ranked else "<td class='l'>—</td><td class='l'>—</td>")
        index_rows.append(f"<tr><td class='l'><a href='{html.escape(page.name)}'>{html.escape(proto.id)}</a></td>"
                          f"<td>{len(ranked)}</td><td>{len(board.unranked)}</td>{top}</tr>")
    (args.out / "index.html").write_text(_index_page(index_rows, notes))
    print(f"wrote {args.out / 'index.html'} and {len(index_rows) - failed} protocol page(s)"
          + (f"; {failed} failed (see above)" if failed else ""))
    return 1 if failed else 0


def _has_published(proto: Protocol, method: str) -> bool:
    from wmbench import results

    try:
        return method in set(results.published(protocol=proto.published_name)["method"])
    except results.ResultsError:
        return False
