"""Score tables: our run directories and the shipped published data in one tidy schema, and the final-score rule.

Owns
- `SCORE_COLUMNS`, the schema shared by our runs and the published data (DESIGN.md "Score table");
- `published(...)`: the curves and finals shipped in `results/published/` (loaded once per protocol file, cached);
- `load_scores(...)`: our run directories (`run.json` + `scores.csv`) or score-table CSVs -> the schema;
- `final_score(...)`: THE one implementation of a protocol's score rule (`ScoreRule` in wmbench/protocols.py);
- `final_scores(...)`: per-run finals of a table (published `final` rows where a source ships them, else the rule);
- `convert_units(...)`: the only place record units are converted (explicitly, never silently);
- `normalise(...)`: atari_human, dmc (raw / 1000), dmlab30 and procgen ([low, high]), none;
- `wmbench validate SCORES.csv` (`cli_validate`).

Published protocol names are bare (`atari100k`), ours are versioned (`atari100k@1`). The link between the two is
explicit: a protocol file names the published sources it reproduces in `reproduce.published_sources`
(`protocol_sources(...)`), and the bare name of a versioned protocol is its `name`, or its
`reproduce.published_name` where it states how one paper ran a benchmark (atari100k_twm@1 reads `atari100k`).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wmbench.errors import WmbenchError
from wmbench.protocols import (
    PROTOCOL_ID,
    STEP_UNITS,
    Protocol,
    ProtocolError,
    list_protocols,
    load_protocol,
    load_registered,
)
from wmbench.shipped import published_dir

SCORE_COLUMNS = ["source", "method", "protocol", "task", "seed", "env_step", "score", "step_unit", "point_type"]
POINT_TYPES = ("curve", "final", "final_mean")
RUN_SCORE_COLUMNS = ["env_step", "step_unit", "episode", "score", "length", "phase"]
PUBLISHED_DIR = Path(os.environ.get("WMBENCH_PUBLISHED", published_dir()))
NORMALISERS = ("atari_human", "dmc", "dmlab30", "procgen", "none")
_TEXT_COLUMNS = ["source", "method", "protocol", "task", "seed", "step_unit", "point_type"]


class ResultsError(WmbenchError, ValueError):
    """A score table, run directory or selection is invalid; the message names the rows or values and the fix."""


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else {str(v) for v in value}


def _rows(index: Iterable[int], limit: int = 12) -> str:
    """Row numbers of a table as a compact list (first `limit` shown)."""
    idx = list(index)
    shown = ", ".join(str(i) for i in idx[:limit])
    return shown + (f", ... ({len(idx) - limit} more)" if len(idx) > limit else "")


def _suggest(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(set(choices)), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _protocol(protocol: str | Protocol) -> Protocol:
    return protocol if isinstance(protocol, Protocol) else load_protocol(protocol)


def check_schema(table: pd.DataFrame, where: str = "score table") -> pd.DataFrame:
    """Raise ResultsError naming missing columns, bad point types / units, and NaN/inf or non-numeric values (rows)."""
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing:
        raise ResultsError(f"{where}: missing columns {missing}; a score table has columns {SCORE_COLUMNS}")
    problems = []
    for col in ("env_step", "score"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
        if len(bad):
            problems.append(f"{col} is NaN, inf or not a number in rows {_rows(table.index[bad])}")
    bad = np.flatnonzero(~table["point_type"].isin(POINT_TYPES).to_numpy())
    if len(bad):
        problems.append(f"point_type not one of {POINT_TYPES} in rows {_rows(table.index[bad])}")
    bad = np.flatnonzero(~table["step_unit"].isin(STEP_UNITS).to_numpy())
    if len(bad):
        problems.append(f"step_unit not one of {STEP_UNITS} in rows {_rows(table.index[bad])}")
    if problems:
        raise ResultsError(f"{where}: " + "; ".join(problems))
    return table


def check_units(table: pd.DataFrame, unit: str | None = None, where: str = "selection") -> str:
    """Return the one step unit of `table`; raise naming the rows if it mixes units or differs from `unit`."""
    units = table["step_unit"].unique().tolist()
    expected = unit or (units[0] if units else None)
    bad = np.flatnonzero((table["step_unit"] != expected).to_numpy())
    if len(bad):
        counts = table["step_unit"].value_counts().to_dict()
        raise ResultsError(
            f"{where}: step units {counts} where {expected!r} is needed (rows {_rows(table.index[bad])}). "
            f"Convert explicitly with wmbench.results.convert_units(table, protocol, {expected!r}) or select one unit."
        )
    return expected


# ----------------------------------------------------------------------------------------------------------------
# published data


@functools.cache
def _published_file(name: str) -> pd.DataFrame:
    path = PUBLISHED_DIR / "curves" / f"{name}.csv.gz"
    if not path.exists():
        raise ResultsError(f"{path} is missing; rebuild results/published with scripts/convert_published.py")
    dtypes = dict.fromkeys(_TEXT_COLUMNS + ["method_raw"], str)
    return pd.read_csv(path, dtype={**dtypes, "env_step": "float64", "score": "float64"}, keep_default_na=False)


PAPER_TABLE_COLUMNS = ["source", "method", "protocol", "task", "mean", "sd", "n", "spread_over", "step_unit", "paper",
                       "location", "notes"]


@functools.cache
def _paper_tables() -> pd.DataFrame:
    path = PUBLISHED_DIR / "paper_tables.csv"
    if not path.exists():
        return pd.DataFrame(columns=PAPER_TABLE_COLUMNS)
    table = pd.read_csv(path, dtype={c: str for c in PAPER_TABLE_COLUMNS if c not in ("mean", "sd", "n")},
                        keep_default_na=False)
    if list(table.columns) != PAPER_TABLE_COLUMNS:
        raise ResultsError(f"{path}: columns {list(table.columns)}, expected {PAPER_TABLE_COLUMNS}")
    return table


def paper_tables(
    method: str | Iterable[str] | None = None,
    protocol: str | Iterable[str] | None = None,
    task: str | Iterable[str] | None = None,
    source: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Published figures that exist only as a paper's table entry, a mean and its spread with no per-run scores
    (`results/published/paper_tables.csv`: one row per source and task with `mean`, `sd`, `n` and what the spread is
    over, e.g. World Models' 906 +- 21 over 100 episodes of one agent). `protocol`: bare name or versioned id.
    `wmbench reproduce` compares runs with them by `wmbench.reproduce.summary_verdict`."""
    table = _paper_tables()
    mask = np.ones(len(table), dtype=bool)
    protocols = _as_set(protocol)
    if protocols is not None:
        protocols = {p.split("@")[0] for p in protocols}
    for column, wanted in (("method", _as_set(method)), ("protocol", protocols), ("task", _as_set(task)),
                           ("source", _as_set(source))):
        if wanted is not None:
            mask &= table[column].isin(wanted).to_numpy()
    return table[mask].reset_index(drop=True)


def published_protocols() -> list[str]:
    """Bare protocol names of the shipped published curves (`atari100k`, `dmc_proprio`, ...), and the names of
    protocols whose sources are filed under one of them (`reproduce.published_name`, e.g. `dmc_vision_planet`)."""
    files = _published_files()
    return sorted({*files, *(name for name, filed in _published_aliases().items() if filed in files)})


def _published_files() -> list[str]:
    return sorted(p.name.removesuffix(".csv.gz") for p in (PUBLISHED_DIR / "curves").glob("*.csv.gz"))


def _published_aliases() -> dict[str, str]:
    """Protocol name -> the published name its sources are filed under, for protocols that set
    `reproduce.published_name` (latest version of each name)."""
    out = {}
    for spec in dict.fromkeys(k.split("@")[0] for k in list_protocols()):
        p = load_protocol(spec)
        if p.reproduce.published_name:
            out[p.name] = p.reproduce.published_name
    return out


def protocol_sources(protocol: str | Protocol) -> tuple[str, ...]:
    """Published sources a versioned protocol reproduces (its `reproduce.published_sources`)."""
    return _protocol(protocol).reproduce.published_sources


def published(
    method: str | Iterable[str] | None = None,
    protocol: str | Iterable[str] | None = None,
    task: str | Iterable[str] | None = None,
    source: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Published scores (SCORE_COLUMNS + `method_raw`), filtered; each filter takes a value or a list.

    `protocol` is either a bare published name (`atari100k`: every source of that benchmark) or a versioned id
    (`atari100k@1`: only the sources that protocol file lists in `reproduce.published_sources`).
    """
    available = published_protocols()
    aliases = _published_aliases()
    names: list[str] = []
    frames: list[pd.DataFrame] = []
    sources = _as_set(source)
    for spec in sorted(_as_set(protocol) or _published_files()):
        if "@" in spec:
            p = load_protocol(spec)
            listed = set(p.reproduce.published_sources)
            if not listed:
                raise ResultsError(
                    f"protocol {p.id} lists no reproduce.published_sources; use the bare name {p.published_name!r}")
            sources = listed if sources is None else sources & listed
            spec = p.name  # filed under another name (reproduce.published_name): read through its alias below
        if spec not in available:
            raise ResultsError(f"no published data for protocol {spec!r}.{_suggest(spec, available)} "
                               f"Published: {', '.join(available)}")
        if spec in names:
            continue
        names.append(spec)
        if spec in aliases:  # filed under another name: its listed sources on its tasks, labelled with its name
            p = load_protocol(spec)
            listed = set(p.reproduce.published_sources)
            sources = listed if sources is None else sources & listed
            frame = _published_file(aliases[spec])
            frames.append(frame[frame["task"].isin(p.tasks)].assign(protocol=spec))
        else:
            frames.append(_published_file(spec))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    mask = np.ones(len(df), dtype=bool)
    for column, wanted in (("method", _as_set(method)), ("task", _as_set(task)), ("source", sources)):
        if wanted is None:
            continue
        present = set(df[column].unique())
        unknown = sorted(wanted - present)
        if unknown:
            raise ResultsError(
                f"published {column} {unknown[0]!r} not found for protocol(s) {', '.join(names)}."
                f"{_suggest(unknown[0], present)} Available: {', '.join(sorted(present))}"
            )
        mask &= df[column].isin(wanted).to_numpy()
    out = df[mask].reset_index(drop=True)
    if out.empty:
        raise ResultsError(
            f"published selection is empty (method={method!r}, protocol={protocol!r}, task={task!r}, "
            f"source={source!r}); list what exists with wmbench.results.published(protocol=...)"
        )
    return out


@functools.cache
def _atari_normalisers() -> pd.DataFrame:
    return pd.read_csv(PUBLISHED_DIR / "atari_normalisers.csv").set_index("game")


@functools.cache
def _other_normalisers() -> pd.DataFrame:
    df = pd.read_csv(PUBLISHED_DIR / "other_normalisers.csv")
    # baselines.yaml calls the Procgen table procgen_hard; the protocol and normaliser name is procgen.
    df["suite"] = df["suite"].replace({"procgen_hard": "procgen"})
    return df.set_index(["suite", "task"])


def headline() -> pd.DataFrame:
    """The shipped headline aggregates (`headline.csv`), with the rule each was computed by."""
    return pd.read_csv(PUBLISHED_DIR / "headline.csv", dtype={"n_seeds": str})


# ----------------------------------------------------------------------------------------------------------------
# our runs


def read_run_info(run_dir: Path) -> dict:
    """A run directory's run.json, with the keys every reader of runs needs (method, protocol, task, seed)."""
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{run_dir / 'run.json'}: cannot read ({e}); is this a wmbench run directory?") from e
    missing = [k for k in ("method", "protocol", "task", "seed") if k not in info]
    if missing:
        raise ResultsError(f"{run_dir / 'run.json'}: missing keys {missing}; not a run directory the runner wrote")
    return info


def _load_run(run_dir: Path) -> pd.DataFrame:
    info = read_run_info(run_dir)
    path = run_dir / "scores.csv"
    if not path.exists() or path.stat().st_size == 0:
        scores = pd.DataFrame(columns=RUN_SCORE_COLUMNS)
    else:
        try:
            scores = pd.read_csv(path, dtype={"step_unit": str, "phase": str, "achievements": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ResultsError(f"{path}: not a readable CSV ({e})") from e
    missing = [c for c in RUN_SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {missing}; scores.csv has {RUN_SCORE_COLUMNS}")
    out = pd.DataFrame(
        {
            "source": f"wmbench:{run_dir}",
            "method": str(info["method"]),
            "protocol": str(info["protocol"]),
            "task": str(info["task"]),
            "seed": str(info["seed"]),
            "env_step": pd.to_numeric(scores["env_step"], errors="coerce").astype(float),
            "score": pd.to_numeric(scores["score"], errors="coerce").astype(float),
            "step_unit": scores["step_unit"].astype(object),
            "point_type": "curve",
            "phase": scores["phase"].astype(object),
            "episode": scores["episode"],
            "length": scores["length"],
            "smoke": bool(info.get("smoke", False)),
            "status": str(info.get("status", "")),
        },
        index=scores.index,
    )
    if "achievements" in scores.columns:  # protocols scored by success_geomean record them per episode
        out["achievements"] = scores["achievements"].fillna("").astype(object)
    # scores.csv row i is file line i + 2 (header is line 1): name that line in errors.
    return check_schema(out.set_axis(out.index + 2), where=str(path)).reset_index(drop=True)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a readable CSV ({e})") from e
    # Report file line numbers (header = line 1).
    return check_schema(df.set_axis(df.index + 2), where=str(path)).reset_index(drop=True)


def load_scores(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Our run directories (a run dir, or any folder holding run dirs) and/or score-table CSVs -> one table.

    Run episodes become `point_type` "curve" rows with `source` "wmbench:<run_dir>"; `phase` (train/eval),
    `episode`, `length`, `smoke` and `status` are kept as extra columns, and `achievements` where the run recorded
    them (protocols scored by success_geomean).
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    frames = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            runs = [path] if (path / "run.json").exists() else sorted(p.parent for p in path.rglob("run.json"))
            if not runs:
                raise ResultsError(f"{path}: no run.json found in it or below; pass run directories or score CSVs")
            frames += [_load_run(r) for r in runs]
        elif path.is_file():
            frames.append(_read_table(path))
        else:
            raise ResultsError(f"{path} does not exist; pass run directories or score-table CSV files")
    if not frames:
        raise ResultsError("load_scores: no paths given")
    table = pd.concat(frames, ignore_index=True)
    return table


# ----------------------------------------------------------------------------------------------------------------
# units


def convert_units(table: pd.DataFrame, protocol: str | Protocol, to_unit: str) -> pd.DataFrame:
    """Return a copy of `table` with `env_step` in `to_unit`, via agent steps and the protocol's action repeat (each
    task's own where the protocol sets one per task)."""
    p = _protocol(protocol)
    if to_unit not in STEP_UNITS:
        raise ResultsError(f"unknown step unit {to_unit!r}; units: {STEP_UNITS}")
    out = table.copy()
    for unit in out["step_unit"].unique():
        if unit == to_unit:
            continue
        rows = out["step_unit"] == unit
        if "episodes" in (unit, to_unit):
            raise ResultsError(
                f"cannot convert {unit!r} to {to_unit!r} (rows {_rows(out.index[rows])}): episodes are not steps"
            )
        # one group per task where the protocol sets per-task action repeats, else all rows at once
        groups = out.loc[rows].groupby("task").groups.items() if p.action_repeat_per_task else [(None, out.index[rows])]
        for task, index in groups:
            try:
                agent_steps = p.from_unit(out.loc[index, "env_step"].to_numpy(dtype=float), unit, task=task)
            except ProtocolError as e:
                raise ResultsError(f"rows {_rows(index)}: {e}") from e
            out.loc[index, "env_step"] = p.to_unit(agent_steps, to_unit, task=task)
        out.loc[rows, "step_unit"] = to_unit
    return out


# ----------------------------------------------------------------------------------------------------------------
# the score rule

RUN_KEY = ["source", "method", "task", "seed"]


def success_rates(episodes: Iterable[Iterable[str]], achievements: Sequence[str]) -> dict[str, float]:
    """Percent of `episodes` (each the set of achievements it unlocked) in which each achievement was unlocked at
    least once (Crafter paper, Sec. 3 "success rates")."""
    sets = [set(e) for e in episodes]
    if not sets:
        raise ResultsError("success rates need at least one episode")
    unknown = sorted(set().union(*sets) - set(achievements))
    if unknown:
        raise ResultsError(
            f"unknown achievements {unknown}: the protocol's score.achievements are {', '.join(achievements)}"
        )
    return {a: 100.0 * sum(a in e for e in sets) / len(sets) for a in achievements}


def success_geomean(episodes: Iterable[Iterable[str]], achievements: Sequence[str]) -> float:
    """The Crafter score in percent: S = exp(mean_i ln(1 + s_i)) - 1 over the success rates s_i (percent) of
    `achievements` in `episodes` (Hafner 2021, "Benchmarking the Spectrum of Agent Capabilities", Sec. 3)."""
    rates = np.array(list(success_rates(episodes, achievements).values()))
    return float(np.exp(np.mean(np.log1p(rates))) - 1.0)


def parse_achievements(value: object) -> tuple[str, ...]:
    """One scores.csv `achievements` field (names joined by ';', empty: none) -> the names."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    return tuple(a for a in str(value).split(";") if a)


def _window_rows(data: pd.DataFrame, limit: float, rule, keys: list[str]) -> pd.DataFrame:
    """Rows of episodes ending in (limit - window, limit] per run; with fallback "last", a run that has none there
    contributes its last episode ending at or before the limit. `data` is sorted and cut at `limit`."""
    in_window = data[data["env_step"] > limit - rule.window]
    if rule.fallback != "last":
        return in_window
    last = data.groupby(keys, sort=True).tail(1)
    have = pd.MultiIndex.from_frame(in_window[keys].drop_duplicates())
    missing = ~pd.MultiIndex.from_frame(last[keys]).isin(have)
    return pd.concat([in_window, last[missing]]).sort_index(kind="stable")


def _rule_finals(data: pd.DataFrame, p: Protocol, limit: float, keys: list[str]) -> tuple[pd.Series, list[str]]:
    """The protocol's score rule applied to every run (`keys`) of `data` at once: (finals by run, problems).

    Vectorised over runs so that thousands of published runs take milliseconds; `final_score` is this function on
    one run, so there is one implementation of the rule.
    """
    rule = p.score
    unit = p.budget.step_unit
    phase = rule.scored_phase
    runs = data[keys].drop_duplicates()
    if "phase" in data.columns:  # rows without a phase column (published curves) are of the rule's phase
        data = data[data["phase"] == phase]
    order = keys + (["env_step", "episode"] if "episode" in data.columns else ["env_step"])
    data = data[data["env_step"] <= limit].sort_values(order, kind="stable")
    if rule.rule == "window_mean":
        # Mean over episodes ending in (budget - window, budget]: averages out episode noise at the budget.
        finals = _window_rows(data, limit, rule, keys).groupby(keys, sort=True)["score"].mean()
    elif rule.rule == "success_geomean":
        if "achievements" not in data.columns:
            raise ResultsError(
                f"protocol {p.id} scores by success_geomean, which needs each episode's unlocked achievements (the "
                "`achievements` column that `wmbench run` writes to scores.csv for this protocol); this table has "
                "no such column. Score run directories (wmbench.results.load_scores(run_dir)), not a score table"
            )
        chosen = _window_rows(data, limit, rule, keys)
        sets = chosen["achievements"].map(parse_achievements)
        finals = sets.groupby([chosen[k] for k in keys], sort=True).agg(
            lambda episodes: success_geomean(episodes, rule.achievements)
        )
    elif rule.rule == "success_rate":
        chosen = _window_rows(data, limit, rule, keys)
        event = rule.achievements[0]
        value = chosen["score"].astype(float)
        if "achievements" in chosen.columns:  # our runs: 1 where the episode's event happened; published: the rate
            recorded = chosen["achievements"].map(lambda v: isinstance(v, str))
            happened = chosen["achievements"].map(lambda v: float(event in parse_achievements(v)))
            value = value.where(~recorded, happened)
        finals = value.groupby([chosen[k] for k in keys], sort=True).mean()
    elif rule.rule in ("eval_mean", "last_episodes_mean"):
        tail = data.groupby(keys, sort=True).tail(rule.episodes)
        finals = tail.groupby(keys, sort=True)["score"].mean()
        if rule.rule == "eval_mean":
            counts = tail.groupby(keys, sort=True).size()
            finals = finals[counts >= rule.episodes]
    else:
        raise ResultsError(f"protocol {p.id}: unknown score rule {rule.rule!r}")
    problems = []
    index = pd.MultiIndex.from_frame(runs) if len(keys) > 1 else pd.Index(runs[keys[0]])
    for run in index.difference(finals.index):
        label = " ".join(str(v) for v in (run if isinstance(run, tuple) else (run,)))
        if rule.rule == "eval_mean":
            why = f"fewer than {rule.episodes} eval episodes at or before {limit:g} {unit}"
        elif rule.rule in ("window_mean", "success_geomean", "success_rate") and rule.fallback == "none":
            why = f"no {phase} episode ends in ({limit - rule.window:g}, {limit:g}] {unit} (fallback none)"
        else:
            why = f"no {phase} episode ends at or before the budget {limit:g} {unit}; no score yet"
        problems.append(f"{label}: {why}")
    return finals, problems


def final_score(episodes: pd.DataFrame, protocol: str | Protocol, *, budget: float | None = None) -> float:
    """Final score of ONE run by the protocol's rule (see `ScoreRule`); `budget` in the record unit (default: the
    protocol budget; pass the smoke budget for smoke runs).

    `episodes` holds `env_step` (episode end, record unit), `score`, `step_unit`, and optionally `phase` and
    `episode`. Rows without a `phase` column (published curves) are taken to be of the rule's phase.
    """
    p = _protocol(protocol)
    if "step_unit" in episodes.columns:
        check_units(episodes, p.budget.step_unit, where=f"final_score({p.id})")
    limit = float(p.to_unit(p.budget.agent_steps)) if budget is None else float(budget)
    finals, problems = _rule_finals(episodes.assign(_run=0), p, limit, ["_run"])
    if problems or finals.empty:
        raise ResultsError(f"final_score({p.id}): " + (problems[0].removeprefix("0: ") if problems else "no episodes"))
    return float(finals.iloc[0])


def _check_protocol_rows(table: pd.DataFrame, p: Protocol) -> None:
    bad = np.flatnonzero(~table["protocol"].isin([p.id, p.name, p.published_name]).to_numpy())
    if len(bad):
        found = sorted(table["protocol"].iloc[bad].unique())
        raise ResultsError(f"rows {_rows(table.index[bad])} belong to protocol(s) {found}, not {p.id}; select one protocol")
    unknown = sorted(set(table["task"]) - set(p.tasks))
    if unknown:
        rows = np.flatnonzero(table["task"].isin(unknown).to_numpy())
        raise ResultsError(
            f"tasks {unknown} (rows {_rows(table.index[rows])}) are not tasks of {p.id}.{_suggest(unknown[0], p.tasks)} "
            f"Select the protocol's tasks: table[table.task.isin(protocol.tasks)]"
        )


def _smoke_flag(table: pd.DataFrame, p: Protocol) -> bool:
    """Smoke runs (run.json `smoke`) are scored at the protocol's smoke budget; never mixed with full runs."""
    if "smoke" not in table.columns:
        return False
    flags = table["smoke"].fillna(False).astype(bool)
    if flags.any() and not flags.all():
        raise ResultsError(
            f"final_scores({p.id}): the table mixes smoke runs (rows {_rows(table.index[flags])}) with full runs; "
            f"select one kind: table[~table.smoke] or table[table.smoke]"
        )
    return bool(flags.all())


COMPLETE_FRACTION = 0.9
"""A run is complete at a budget B when its curve reaches B - max((1 - COMPLETE_FRACTION) B, the protocol's longest
episode). Published curves were binned into 200 bins (a bin's mean x sits up to half a bin before the run's end), and
curves record episodes when they end (the episode straddling the budget is never recorded; an Atari episode may last
108k frames, which is why three published DreamerV3 up_n_down runs end at 326k-360k of 400k frames), so a finished
run's last point lies somewhat before the budget; a run that stopped early (a published cartpole_swingup_sparse run
ending at 390k of 1M env steps) lies far before it. One rule for published runs and ours; `usable_finals` applies
it."""


def completion_threshold(p: Protocol, budget: float) -> float:
    """The step (record unit) a run's curve must reach to count as complete at `budget` (see COMPLETE_FRACTION)."""
    return budget - max((1 - COMPLETE_FRACTION) * budget, p.episode_cap)

AUTHORS_EVAL = "authors_eval"
PUBLISHER_MEAN = "publisher_mean"


def scoring_label(p: Protocol) -> str:
    """The name of a protocol's score rule as recorded in a finals table (`scoring` column), e.g.
    `window_mean(train, 10000 frames)`: two finals are the same measurement only when their labels are equal."""
    r = p.score
    unit = p.budget.step_unit
    if r.rule == "window_mean":
        return f"window_mean({r.phase}, {r.window:g} {unit}, fallback {r.fallback})"
    if r.rule == "eval_mean":
        return f"eval_mean({r.episodes} episodes)"
    if r.rule == "success_geomean":
        return f"success_geomean({r.phase}, {len(r.achievements)} achievements, {r.window:g} {unit}, fallback {r.fallback})"
    if r.rule == "success_rate":
        return f"success_rate({r.phase}, {r.achievements[0]}, {r.window:g} {unit}, fallback {r.fallback})"
    return f"{r.rule}({r.phase}, {r.episodes} episodes)"


def final_scores(table: pd.DataFrame, protocol: str | Protocol, *, budget: float | None = None) -> pd.DataFrame:
    """Per-run final scores: columns [method, task, seed, final, source, basis, scoring, reached, complete].

    A run is (source, method, task, seed). Where a source ships `final` rows (published per-run finals, computed by
    its authors or from full-resolution logs) they are used as published (`basis` "final"); `final_mean` rows become
    one row with seed "mean" (`basis` "final_mean"); otherwise the protocol rule is applied to the curve
    (`basis` "rule"). All rows must be in the protocol's record unit (see `convert_units`); `budget` (record unit)
    defaults to the protocol budget, or its smoke budget for a table of smoke runs (`smoke` column of load_scores).

    `scoring` names the measurement behind each final: the protocol's rule (`scoring_label`) for finals computed from
    a curve, by us or by the data collection from the source's full-resolution log (a `final` row of a run that also
    ships a curve); `authors_eval` for per-run finals published without a curve (the authors' own end-of-training
    evaluation: TWM, IRIS, STORM, DIAMOND, ...), except where the protocol scores by `eval_mean` and lists the
    source in `reproduce.published_sources`: that protocol states the authors' evaluation as its own rule
    (atari100k_twm@1: TWM's 100 final evaluation episodes), so those finals carry its label; under a protocol that
    reads another benchmark's data (`reproduce.published_name`), the rule applied to the curve of a source it does
    not list is labelled `<rule> over a curve of other rules` (that curve was recorded under the benchmark's other
    rules: DreamerV3's atari100k training returns are no TWM evaluation games); `publisher_mean` for
    `final_mean` rows. Finals of different `scoring` are different measurements and are never compared as one
    (`reproduce`, `report`).

    `reached` is the last curve point of the run (NaN without a curve) and `complete` says whether it reaches
    `completion_threshold` of the budget (True without a curve: nothing says otherwise). Incomplete runs are kept here and
    flagged; `usable_finals` is the one rule that sets them aside.
    """
    p = _protocol(protocol)
    if table.empty:
        raise ResultsError(f"final_scores({p.id}): the table is empty (nothing selected?)")
    check_schema(table)
    _check_protocol_rows(table, p)
    unit = check_units(table, p.budget.step_unit, where=f"final_scores({p.id})")
    smoke = _smoke_flag(table, p)
    limit = float(p.to_unit(p.budget_steps(smoke), unit)) if budget is None else float(budget)
    table = table.astype({k: str for k in RUN_KEY})
    kinds = table.groupby(RUN_KEY, sort=True)["point_type"].agg(set)
    problems: list[str] = []
    parts = []
    for kind in ("final", "final_mean"):
        runs = kinds.index[kinds.map(lambda s, kind=kind: kind in s and (kind == "final" or "final" not in s))]
        if not len(runs):
            continue
        rows = table[table["point_type"] == kind].set_index(RUN_KEY).loc[runs]
        at_budget = rows[rows["env_step"] == limit]
        counts = at_budget.groupby(level=RUN_KEY, sort=True).size().reindex(runs, fill_value=0)
        for run in counts.index[counts != 1]:
            steps = sorted(rows.loc[[run], "env_step"].unique())
            problems.append(f"{' '.join(run)}: {counts[run]} {kind} rows at the budget {limit:g} {unit} (at {steps})")
        good = at_budget[counts.reindex(at_budget.index).to_numpy() == 1]
        parts.append(good["score"].rename("final").to_frame().assign(basis=kind))
    curve_runs = kinds.index[kinds.map(lambda s: not (s & {"final", "final_mean"}))]
    if len(curve_runs):
        curves = table.set_index(RUN_KEY).loc[curve_runs].reset_index()
        finals, rule_problems = _rule_finals(curves, p, limit, RUN_KEY)
        problems += rule_problems
        parts.append(finals.rename("final").to_frame().assign(basis="rule"))
    if problems:
        raise ResultsError(
            f"final_scores({p.id}): {len(problems)} run(s) (source method task seed) have no final score:\n  "
            + "\n  ".join(problems[:30])
        )
    out = pd.concat(parts)
    reached = table[table["point_type"] == "curve"].groupby(RUN_KEY, sort=True)["env_step"].max()
    out["reached"] = reached.reindex(out.index).to_numpy(dtype=float)
    has_curve = np.isfinite(out["reached"].to_numpy())
    out["complete"] = ~has_curve | (out["reached"].to_numpy() >= completion_threshold(p, limit))
    listed = out.index.get_level_values("source").isin(p.reproduce.published_sources)
    own_rule = listed & (p.score.rule == "eval_mean")
    rule_label = np.where(listed | (p.published_name == p.name) | out.index.get_level_values("source").str.startswith(
        "wmbench:"), scoring_label(p), f"{scoring_label(p)} over a curve of other rules")
    out["scoring"] = np.where(
        out["basis"] == "final_mean", PUBLISHER_MEAN,
        np.where((out["basis"] == "final") & ~has_curve & ~own_rule, AUTHORS_EVAL, rule_label),
    )
    out = out.reset_index()
    return out[["method", "task", "seed", "final", "source", "basis", "scoring", "reached", "complete"]].sort_values(
        ["method", "task", "source", "seed"], ignore_index=True
    )


def usable_finals(finals: pd.DataFrame, protocol: Protocol, budget: float) -> tuple[pd.DataFrame, list[str]]:
    """THE rule for runs that stopped early, for published runs and ours alike: runs whose curve ends before
    `completion_threshold` of the compared budget (record unit) are set aside; returns (kept finals, notes naming
    the set-aside runs). `reproduce` and `report` both call this, and say what it set aside."""
    unit, threshold = protocol.budget.step_unit, completion_threshold(protocol, budget)
    if "complete" not in finals.columns:
        return finals, []
    short = finals[~finals["complete"].astype(bool)]
    if short.empty:
        return finals, []
    listed = "; ".join(
        f"{r.method} {r.task} seed {r.seed} ({r.source}) ends at {r.reached:,.0f}"
        for r in short.head(12).itertuples()
    ) + (f"; ... ({len(short) - 12} more)" if len(short) > 12 else "")
    note = (f"{len(short)} run(s) stopped early: their curve ends before {threshold:,.0f} of the compared budget "
            f"{budget:,.0f} {unit} and they are left out (their curve ends early; a `final` row at the budget cannot "
            f"stand for a run that never got there): {listed}.")
    return finals[finals["complete"].astype(bool)], [note]


# ----------------------------------------------------------------------------------------------------------------
# normalisation


def _normaliser_name(protocol_or_normaliser: str | Protocol) -> str:
    if isinstance(protocol_or_normaliser, Protocol):
        return protocol_or_normaliser.score.normaliser
    if protocol_or_normaliser in NORMALISERS:
        return protocol_or_normaliser
    if protocol_or_normaliser == "procgen_hard":
        return "procgen"
    try:
        return load_protocol(protocol_or_normaliser).score.normaliser
    except ProtocolError as e:
        raise ResultsError(
            f"{protocol_or_normaliser!r} is neither a normaliser ({', '.join(NORMALISERS)}) nor a protocol ({e})"
        ) from e


def normalise(
    scores: float | Sequence[float] | np.ndarray | pd.Series,
    task: str | Sequence[str] | np.ndarray | pd.Series,
    protocol_or_normaliser: str | Protocol,
) -> np.ndarray:
    """Normalised scores: `task` is one task or one task per score.

    atari_human: (s - random) / (human - random), human-gamer scores of danijar/dreamerv3 baselines.yaml;
    dmc: s / 1000 (the maximum episode return); dmlab30 / procgen: (s - low) / (high - low) from baselines.yaml;
    none: s.
    """
    name = _normaliser_name(protocol_or_normaliser)
    values = np.asarray(scores, dtype=float)
    if name == "none":
        return values.copy()
    if name == "dmc":
        return values / 1000.0
    tasks = np.broadcast_to(np.asarray(task, dtype=object), values.shape)
    if name == "atari_human":
        table = _atari_normalisers()
        low_col, high_col, keys = "random", "human", list(table.index)
        lookup = {t: (table.at[t, low_col], table.at[t, high_col]) for t in keys}
    else:
        table = _other_normalisers().loc[name]
        lookup = {t: (row.low, row.high) for t, row in table.iterrows()}
    unknown = sorted({str(t) for t in np.unique(tasks) if t not in lookup})
    if unknown:
        raise ResultsError(
            f"no {name} normaliser for task {unknown[0]!r}.{_suggest(unknown[0], lookup)} Known: {', '.join(sorted(lookup))}"
        )
    low = np.vectorize(lambda t: lookup[t][0], otypes=[float])(tasks) if tasks.size else np.zeros(values.shape)
    high = np.vectorize(lambda t: lookup[t][1], otypes=[float])(tasks) if tasks.size else np.ones(values.shape)
    return (values - low) / (high - low)


# ----------------------------------------------------------------------------------------------------------------
# wmbench validate


@dataclass
class Validation:
    """What `validate` found: `errors` make a table unusable (validate exits 1; report and reproduce refuse it);
    `warnings` are accepted but stated (validate prints them; report and reproduce carry them as notes)."""

    protocol: Protocol | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate(table: pd.DataFrame, protocol: str | Protocol | None = None, *, at_step: float | None = None) -> Validation:
    """THE check of a score table against its protocol, shared by `wmbench validate`, `report` and `reproduce`: a
    table one of them accepts, the others accept too.

    Errors: schema (columns, numbers, point types, units), empty keys, duplicates, negative steps, a protocol that is
    not a registered `name@version` (never a path), tasks outside the protocol, `final`/`final_mean` rows anywhere but
    exactly at the budget or more than one per run. Warnings: fewer seeds than the protocol's minimum (verdicts are
    then inconclusive), runs that stop before the budget (`usable_finals` leaves them out), smoke runs. `protocol`
    given: rows may carry its id or its bare published name (published data is stored bare). `at_step` (record unit)
    checks completeness at that step instead of the budget. Row numbers are CSV lines when read by `cli_validate`.
    """
    out = Validation(protocol=None)
    errors, warnings = out.errors, out.warnings
    missing = [c for c in SCORE_COLUMNS if c not in table.columns]
    if missing:
        errors.append(f"missing columns {missing}; a score table has columns {SCORE_COLUMNS}")
        return out
    if table.empty:
        errors.append("the table has no rows")
        return out
    steps = pd.to_numeric(table["env_step"], errors="coerce")
    for col, values in (("env_step", steps), ("score", pd.to_numeric(table["score"], errors="coerce"))):
        bad = table.index[~np.isfinite(values.to_numpy(dtype=float))]
        if len(bad):
            errors.append(f"{col}: NaN, inf or not a number in lines {_rows(bad)}")
    negative = table.index[steps.to_numpy(dtype=float) < 0]
    if len(negative):
        errors.append(f"env_step: negative in lines {_rows(negative)}; steps count from 0")
    for col, allowed in (("point_type", POINT_TYPES), ("step_unit", STEP_UNITS)):
        bad = table.index[~table[col].isin(allowed)]
        if len(bad):
            errors.append(f"{col}: {sorted(set(table.loc[bad, col].astype(str)))} not one of {allowed} (lines {_rows(bad)})")
    for col in ("method", "task", "seed", "protocol"):
        bad = table.index[table[col].isna() | (table[col].astype(str).str.strip() == "")]
        if len(bad):
            errors.append(f"{col}: empty in lines {_rows(bad)}")
    key = ["method", "task", "seed", "env_step", "point_type"]
    key += [c for c in ("source", "phase", "episode") if c in table.columns]  # eval episodes share env_step
    dup = table.index[table.duplicated(key, keep=False)]
    if len(dup):
        errors.append(f"duplicate rows of ({', '.join(key)}) in lines {_rows(dup)}")

    ids = sorted(set(table["protocol"].dropna().astype(str)))
    if protocol is not None:
        try:
            p = protocol if isinstance(protocol, Protocol) else load_registered(protocol)
        except ProtocolError as e:
            errors.append(f"--protocol: {e}")
            return out
        bad = table.index[~table["protocol"].isin([p.id, p.name, p.published_name])]
        if len(bad):
            errors.append(f"protocol: rows of {sorted(set(table.loc[bad, 'protocol'].astype(str)))} while validating "
                          f"against {p.id} (lines {_rows(bad)})")
    elif len(ids) != 1:
        errors.append(f"protocol: the table mixes protocols {ids}; validate one protocol at a time (--protocol)")
        return out
    elif "@" not in ids[0] and PROTOCOL_ID.match(f"{ids[0]}@1"):
        errors.append(f"protocol: {ids[0]!r} has no version; use name@version (e.g. {ids[0]}@1)")
        return out
    else:
        try:
            p = load_registered(ids[0])
        except ProtocolError as e:
            errors.append(f"protocol: {e}")
            return out
    out.protocol = p

    rows = table[table["protocol"].isin([p.id, p.name, p.published_name])]
    unknown = sorted(set(rows["task"].astype(str)) - set(p.tasks))
    for t in unknown:
        errors.append(f"task {t!r} is not a task of {p.id}.{_suggest(t, p.tasks)} (lines {_rows(rows.index[rows.task == t])})")
    unit = p.budget.step_unit
    bad = rows.index[rows["step_unit"] != unit]
    if len(bad):
        found = sorted(set(rows.loc[bad, "step_unit"].astype(str)))
        errors.append(f"step_unit: {found} where {p.id} records {unit!r} (lines {_rows(bad)}); "
                      f"convert with wmbench.results.convert_units")
    known = rows[rows["task"].isin(p.tasks) & (rows["step_unit"] == unit)]
    known = known.assign(_step=pd.to_numeric(known["env_step"], errors="coerce"))
    smoke = _smoke_flag(known, p) if "smoke" in known.columns else False
    if smoke:
        warnings.append("smoke runs: a check that the code runs, not a "
                        "result; reports label them as smoke")
    budget = float(p.to_unit(p.budget_steps(smoke), unit))
    limit = budget if at_step is None else float(at_step)
    run_key = ["method", "task", "seed"] + (["source"] if "source" in known.columns else [])
    finals = known[known["point_type"].isin(["final", "final_mean"])]
    off_budget = finals.index[finals["_step"] != budget]
    if len(off_budget):
        found = ", ".join(f"{v:g}" for v in sorted(set(finals.loc[off_budget, "_step"].astype(float)))[:5])
        errors.append(f"final rows must stand at the budget {budget:g} {unit}; found at {found} "
                      f"(lines {_rows(off_budget)})")
    per_run = finals.groupby(run_key)["point_type"].transform("size")
    several = finals.index[per_run.to_numpy() > 1]
    if len(several):
        errors.append(f"several final rows for one run (method, task, seed) in lines {_rows(several)}; a run has one "
                      "final score")
    for (method, task), group in known.groupby(["method", "task"], sort=True):
        n = group.loc[group["point_type"] != "final_mean", "seed"].nunique()
        if 0 < n < p.seeds.minimum:
            warnings.append(f"{method} {task}: {n} seed(s), fewer than {p.id}'s minimum of {p.seeds.minimum}: a "
                            f"verdict on it is inconclusive (lines {_rows(group.index)})")
    curves = known[known["point_type"] == "curve"]
    threshold = completion_threshold(p, limit)
    reached = curves.groupby(run_key, sort=True)["_step"].max()
    for run, last in reached.items():
        if last < threshold:
            method, task, seed = run[:3]
            group = curves.index[(curves[run_key] == pd.Series(run, index=run_key)).all(axis=1)]
            warnings.append(f"{method} {task} seed {seed}: stops early (reaches {last:g} {unit}, budget {limit:g}; "
                            f"complete means reaching {threshold:g}): left out of reports and verdicts "
                            f"(lines {_rows(group)})")
    return out


def validate_table(table: pd.DataFrame, protocol: str | None = None) -> list[str]:
    """The errors of `validate` (empty list: the table is usable)."""
    return validate(table, protocol).errors


def check_table(table: pd.DataFrame, protocol: Protocol, where: str, at_step: float | None = None) -> list[str]:
    """`validate`, for report and reproduce: raise ResultsError listing the errors, else return the warnings."""
    found = validate(table, protocol, at_step=at_step)
    if found.errors:
        raise ResultsError(f"{where}: {len(found.errors)} problem(s) (as `wmbench validate` reports them):\n  "
                           + "\n  ".join(found.errors[:20]))
    return found.warnings


def cli_validate(argv: list[str]) -> int:
    """`wmbench validate SCORES.csv [--protocol ID]`: print every problem; exit 1 if any, 0 if valid."""
    parser = argparse.ArgumentParser(prog="wmbench validate", description="check a score table against its protocol")
    parser.add_argument("scores", type=Path, help="score-table CSV (columns: " + ", ".join(SCORE_COLUMNS) + ")")
    parser.add_argument("--protocol", help="protocol id (name@version); default: the table's protocol column")
    args = parser.parse_args(argv)
    if not args.scores.is_file():
        print(f"{args.scores}: file not found")
        return 1
    try:
        table = pd.read_csv(args.scores, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        print(f"{args.scores}: not a readable CSV: {e}")
        return 1
    table = table.set_axis(table.index + 2)  # CSV line numbers (header = line 1)
    found = validate(table, args.protocol)
    for line in found.errors:
        print(f"{args.scores}: {line}")
    for line in found.warnings:
        print(f"{args.scores}: warning: {line}")
    if found.errors:
        print(f"{len(found.errors)} problem(s): not valid")
        return 1
    runs = table.groupby(["method", "task", "seed"]).ngroups
    print(f"{args.scores}: valid ({len(table)} rows, {runs} runs, protocol {found.protocol.id}"
          + (f"; {len(found.warnings)} warning(s): accepted, and stated by report and reproduce" if found.warnings else "")
          + ")")
    return 0
