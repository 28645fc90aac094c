"""Protocols: versioned data files (`protocols/<name>@<version>.toml`) that fix what makes scores comparable.

A method never overrides a protocol. `load_protocol("atari100k@1")` parses and validates a file into a frozen
`Protocol`; the run records `protocol.id` and `protocol.hash` (sha256 of the resolved content), so a run made under
another version or an edited file is detected. Variants (sticky actions, distractors, stand-ins) are separate
files, never flags.

Validation is strict: unknown keys, wrong types, unknown suites, and env settings the suite's adapter does not
declare all raise `ProtocolError` naming the file, the field and the allowed values.

Stages (optional `[[stages]]` tables): a protocol may split its budget into named stages, e.g. Plan2Explore's
task-agnostic exploration and then adaptation with the task reward. Each stage has `name`, `agent_steps` and
`task_reward` (false: the method must collect its data without using the task reward; rewards are still recorded,
for zero-shot evaluation). The stages' agent steps must add up to `budget.agent_steps`. `stage_schedule(budget)`
gives each stage's agent-step range for a run of any budget (smoke, --steps: scaled in proportion). The name is
not "phase" because `phase` already means train/eval in scores.csv and `[score]`.

Per-task action repeat (optional `[env.action_repeat_per_task]` table, e.g. PlaNet's DMC protocol): task ->
repeat for the tasks that do not use `env.action_repeat`. The budget stays one number of env steps for every task:
`budget.agent_steps` (and `smoke.agent_steps`) are counted at `env.action_repeat`, and a task with repeat r takes
budget.agent_steps x env.action_repeat / r agent steps (which must be a whole number). `for_task(task)` gives the
protocol as one task's run sees it (its repeat in `env.action_repeat`, its agent-step budgets; same id and hash);
the runner and `make_env` use it. `to_unit` / `from_unit` take `task=` to convert a run's steps; without a task they
use `env.action_repeat`, which is exact for the budgets (task-independent in env steps) and for protocols without
the table.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wmbench.errors import WmbenchError
from wmbench.shipped import protocols_dir

PROTOCOL_DIR = Path(os.environ.get("WMBENCH_PROTOCOLS", protocols_dir()))
STEP_UNITS = ("agent_steps", "env_steps", "frames", "episodes")
SCORE_RULES = ("window_mean", "eval_mean", "last_episodes_mean", "success_geomean", "success_rate")
PHASES = ("train", "eval")


class ProtocolError(WmbenchError, ValueError):
    """A protocol file or a request against a protocol is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class Budget:
    agent_steps: int
    # Unit in which score records count steps (`env_step` column). Atari records frames (agent steps x action
    # repeat), DMC records env steps (control steps incl. action repeat): the published files do the same.
    step_unit: str = "agent_steps"


@dataclass(frozen=True)
class ScoreRule:
    """How a run's final score is computed from its score records (one function: `wmbench.results.final_score`).

    window_mean: mean of `phase` episode returns whose end lies in (budget - window, budget] (in step_unit);
        if none does and fallback == "last", the last episode ending at or before the budget.
    eval_mean: mean of the `episodes` eval episodes run at the budget.
    last_episodes_mean: mean of the last `episodes` episodes of `phase` ending at or before the budget.
    success_geomean: the Crafter score (Hafner 2021, Sec. 3): over the `phase` episodes that window_mean would
        average (same window and fallback), the success rate s_i of each of the protocol's `achievements` (percent
        of those episodes that unlocked it at least once) and S = exp(mean_i ln(1 + s_i)) - 1, in percent. Needs
        the per-episode `achievements` column the runner records for this rule.
    success_rate: the fraction (0-1) of the `phase` episodes that window_mean would average in which the one event
        named in `achievements` happened (e.g. Meta-World's `success`, Seo et al. 2022), from the same
        `achievements` column; rows without that column (published curves, whose points already are success
        rates) contribute their score.
    """

    rule: str = "window_mean"
    phase: str = "train"
    window: int = 0
    episodes: int = 10
    fallback: str = "last"
    normaliser: str = "none"
    aggregates: tuple[str, ...] = ("iqm", "mean", "median", "optimality_gap")
    achievements: tuple[str, ...] = ()

    @property
    def scored_phase(self) -> str:
        """The phase of the episodes the rule reads: "eval" for eval_mean, else `phase`."""
        return "eval" if self.rule == "eval_mean" else self.phase


@dataclass(frozen=True)
class EvalSchedule:
    """Evaluation episodes (policy in `eval` mode, not stored in replay); `every` counts the budget's `step_unit`
    (e.g. env steps for DMC); every=0 means only at the end if episodes > 0."""

    every: int = 0
    episodes: int = 0


@dataclass(frozen=True)
class Seeds:
    minimum: int = 5
    recommended: int = 10


@dataclass(frozen=True)
class Reproduce:
    """Equivalence margin for `wmbench reproduce` (in normalised score units) and the reference generation.
    `published_name`: the bare name of the published data this protocol reads (`results/published/curves/
    <name>.csv.gz`) when it is not the protocol's own name: a protocol that states how one paper ran a benchmark reads
    that benchmark's data, restricted to its `published_sources` (atari100k_twm@1 reads `atari100k`, PlaNet's
    `dmc_vision_planet` reads `dmc_vision`); "" = the protocol's name."""

    margin: float = 0.1
    alpha: float = 0.05
    published_sources: tuple[str, ...] = ()
    published_name: str = ""


@dataclass(frozen=True)
class Stage:
    """A named part of a protocol's budget (see the module docstring); `agent_steps` of the full budget."""

    name: str
    agent_steps: int
    task_reward: bool = True
    description: str = ""


@dataclass(frozen=True)
class ScheduledStage:
    """A stage as one run meets it: agent steps [start, end) of that run's budget."""

    name: str
    task_reward: bool
    start: int
    end: int
    description: str = ""


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    suite: str
    tasks: tuple[str, ...]
    env: Mapping[str, Any]
    budget: Budget
    score: ScoreRule
    eval: EvalSchedule
    seeds: Seeds
    smoke: Budget
    reproduce: Reproduce
    description: str = ""
    path: str = ""
    hash: str = field(default="", compare=False)
    stages: tuple[Stage, ...] = ()
    # task -> action repeat for tasks whose repeat differs from env.action_repeat (see the module docstring)
    action_repeat_per_task: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def published_name(self) -> str:
        """Bare name of the published data this protocol reads: `reproduce.published_name`, else its name."""
        return self.reproduce.published_name or self.name

    @property
    def action_repeat(self) -> int:
        """`env.action_repeat`: every task's repeat, or on a protocol with per-task repeats the repeat its budgets
        are counted at (`repeat_for(task)` gives a task's own)."""
        return int(self.env.get("action_repeat", 1))

    def repeat_for(self, task: str | None = None) -> int:
        """The action repeat a run of `task` acts with (`action_repeat` when task is None or not in the table)."""
        if task is None or not self.action_repeat_per_task:
            return self.action_repeat
        self.check_task(task)
        return int(self.action_repeat_per_task.get(task, self.action_repeat))

    def for_task(self, task: str) -> Protocol:
        """This protocol as a run of `task` sees it: `env.action_repeat` is the task's repeat and the budgets are
        that task's agent steps (the same env steps for every task); id, hash, everything else unchanged. The
        protocol itself when it has no per-task repeats."""
        self.check_task(task)
        if not self.action_repeat_per_task:
            return self
        base, repeat = self.action_repeat, self.repeat_for(task)
        return dataclasses.replace(
            self,
            env=MappingProxyType({**self.env, "action_repeat": repeat}),
            budget=dataclasses.replace(self.budget, agent_steps=self.budget.agent_steps * base // repeat),
            smoke=dataclasses.replace(self.smoke, agent_steps=self.smoke.agent_steps * base // repeat),
            action_repeat_per_task=MappingProxyType({}),
        )

    def budget_steps(self, smoke: bool = False) -> int:
        """Agent steps (decisions) the run takes."""
        return (self.smoke if smoke else self.budget).agent_steps

    def to_unit(self, agent_steps: int | float, unit: str | None = None, task: str | None = None) -> float:
        """Convert agent steps (of a run of `task`, see `repeat_for`) to the record unit (explicit; never done
        silently elsewhere)."""
        unit = unit or self.budget.step_unit
        if unit == "agent_steps":
            return agent_steps
        if unit in ("env_steps", "frames"):
            return agent_steps * self.repeat_for(task)
        raise ProtocolError(f"protocol {self.id}: cannot convert agent steps to unit {unit!r}; units: {STEP_UNITS}")

    @property
    def episode_cap(self) -> float:
        """Longest possible episode in the record unit (Atari `max_frames`, DMC `time_limit` env steps); 0 when the
        protocol does not fix one. A run's last recorded episode can end up to this far before its budget."""
        unit = self.budget.step_unit
        if "max_frames" in self.env and unit == "frames":
            return float(self.env["max_frames"])
        if "time_limit" in self.env and unit in ("env_steps", "agent_steps"):
            steps = float(self.env["time_limit"])
            return steps if unit == "env_steps" else steps / self.action_repeat
        return 0.0

    def from_unit(self, value: int | float, unit: str, task: str | None = None) -> float:
        """Convert a record-unit count (of a run of `task`, see `repeat_for`) back to agent steps."""
        if unit == "agent_steps":
            return value
        if unit in ("env_steps", "frames"):
            return value / self.repeat_for(task)
        raise ProtocolError(f"protocol {self.id}: cannot convert unit {unit!r} to agent steps; units: {STEP_UNITS}")

    def stage_schedule(self, agent_steps: int | None = None) -> tuple[ScheduledStage, ...]:
        """The protocol's stages over a run of `agent_steps` (default: the full budget), as agent-step ranges that
        tile [0, agent_steps). At the full budget each stage has its own `agent_steps`; any other budget (smoke,
        --steps) keeps their proportions, each boundary rounded to the nearest agent step. () without stages."""
        if not self.stages:
            return ()
        total = self.budget.agent_steps
        steps = total if agent_steps is None else int(agent_steps)
        out, done = [], 0
        for stage in self.stages:
            done += stage.agent_steps
            out.append((stage, (done * steps + total // 2) // total))
        starts = [0] + [end for _, end in out[:-1]]
        return tuple(
            ScheduledStage(stage.name, stage.task_reward, start, end, stage.description)
            for (stage, end), start in zip(out, starts, strict=True)
        )

    def check_task(self, task: str) -> str:
        if task not in self.tasks:
            close = difflib.get_close_matches(task, self.tasks, n=4, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ProtocolError(
                f"unknown task {task!r} for protocol {self.id}.{hint} Tasks: {', '.join(self.tasks)}"
            )
        return task

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env"] = dict(self.env)
        d.pop("path")
        d.pop("hash")
        if not self.stages:
            d.pop("stages")
        return d


_SECTIONS: dict[str, type] = {
    "budget": Budget,
    "score": ScoreRule,
    "eval": EvalSchedule,
    "seeds": Seeds,
    "smoke": Budget,
    "reproduce": Reproduce,
}
_TOP_KEYS = {"name", "version", "suite", "tasks", "description", "env", "stages", *_SECTIONS}


def _typecheck(value: Any, expected: Any, where: str) -> Any:
    if expected in (int,):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{where} must be an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"{where} must be a number, got {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{where} must be a string, got {value!r}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where} must be true or false, got {value!r}")
        return value
    if expected == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProtocolError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    if expected == tuple[int, ...]:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ProtocolError(f"{where} must be a list of integers, got {value!r}")
        return tuple(value)
    raise ProtocolError(f"{where}: unsupported type {expected}")


def _section(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{where} must be a table, got {data!r}")
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    import typing

    hints = typing.get_type_hints(cls)
    unknown = set(data) - set(hints)
    if unknown:
        key = sorted(unknown)[0]
        close = difflib.get_close_matches(key, list(hints), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ProtocolError(f"{where}: unknown key {key!r}.{hint} Allowed: {', '.join(hints)}")
    values = {k: _typecheck(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def _stages(data: Any, budget: Budget, where: str) -> tuple[Stage, ...]:
    """`[[stages]]` tables, checked: known keys, unique names, positive agent steps adding up to the budget."""
    if not isinstance(data, list) or not data:
        raise ProtocolError(f"{where}: stages must be a non-empty list of [[stages]] tables, got {data!r}")
    stages = tuple(_section(Stage, item, f"{where}: stages[{i}]") for i, item in enumerate(data))
    for i, stage in enumerate(stages):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", stage.name):
            raise ProtocolError(f"{where}: stages[{i}].name {stage.name!r} must be lowercase letters, digits and "
                                "underscores, e.g. 'explore'")
        if stage.agent_steps <= 0:
            raise ProtocolError(f"{where}: stages[{i}] ({stage.name!r}).agent_steps must be positive, got "
                                f"{stage.agent_steps}")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ProtocolError(f"{where}: duplicate stage names {dup}; give each stage its own name")
    total = sum(s.agent_steps for s in stages)
    if total != budget.agent_steps:
        parts = " + ".join(f"{s.agent_steps} ({s.name})" for s in stages)
        raise ProtocolError(
            f"{where}: the stages add up to {parts} = {total} agent steps, but budget.agent_steps is "
            f"{budget.agent_steps}; the stages split the budget, so make them add up to it (change a stage's "
            f"agent_steps by {budget.agent_steps - total:+d}, or set budget.agent_steps = {total})"
        )
    return stages


def _repeats_per_task(table: Any, env: Mapping[str, Any], tasks: tuple[str, ...], budget: Budget, smoke: Budget,
                      where: str) -> dict[str, int]:
    """`[env.action_repeat_per_task]`, checked: a table of the protocol's tasks to integer repeats >= 1 beside an
    `env.action_repeat` (the repeat the budgets are counted at), each dividing the budgets' env steps."""
    at = f"{where}: env.action_repeat_per_task"
    if not isinstance(table, Mapping) or not table:
        raise ProtocolError(f"{at} must be a non-empty table of task = repeat, got {table!r}")
    if "action_repeat" not in env:
        raise ProtocolError(f"{at} needs env.action_repeat beside it: the repeat budget.agent_steps is counted at "
                            "(and the repeat of tasks the table leaves out)")
    if budget.step_unit not in ("env_steps", "frames"):
        raise ProtocolError(f"{at} needs budget.step_unit 'env_steps' or 'frames' (got {budget.step_unit!r}): records "
                            "must count steps that mean the same for every task, whatever its repeat")
    base = _typecheck(env["action_repeat"], int, f"{where}: env.action_repeat")
    repeats = {}
    for task, repeat in table.items():
        if task not in tasks:
            close = difflib.get_close_matches(task, tasks, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ProtocolError(f"{at}: {task!r} is not a task of this protocol.{hint} Tasks: {', '.join(tasks)}")
        repeat = _typecheck(repeat, int, f"{at}.{task}")
        if repeat < 1:
            raise ProtocolError(f"{at}.{task} must be >= 1 (control steps per agent step), got {repeat}")
        for b, label in ((budget, "budget"), (smoke, "smoke")):
            if b.agent_steps * base % repeat:
                raise ProtocolError(
                    f"{at}.{task} = {repeat} does not divide the {label}'s {b.agent_steps * base} env steps "
                    f"({label}.agent_steps {b.agent_steps} x env.action_repeat {base}): each task gets the same env "
                    f"steps, so make {label}.agent_steps x {base} a multiple of {repeat}"
                )
        repeats[task] = repeat
    return repeats


def content_hash(content: Mapping[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_protocol(data: Mapping[str, Any], where: str = "<protocol>") -> Protocol:
    """Validate a parsed protocol mapping; raise ProtocolError naming the field on any problem."""
    from wmbench import envs  # local import: envs imports this module

    unknown = set(data) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        close = difflib.get_close_matches(key, sorted(_TOP_KEYS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ProtocolError(f"{where}: unknown key {key!r}.{hint} Allowed: {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "version", "suite", "tasks", "budget"):
        if key not in data:
            raise ProtocolError(f"{where}: missing required key {key!r}")
    name = _typecheck(data["name"], str, f"{where}: name")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ProtocolError(f"{where}: name {name!r} must be lowercase letters, digits and underscores")
    version = _typecheck(data["version"], int, f"{where}: version")
    suite = _typecheck(data["suite"], str, f"{where}: suite")
    suites = envs.suite_names()
    if suite not in suites:
        raise ProtocolError(f"{where}: unknown suite {suite!r}; suites: {', '.join(suites)}")
    tasks = _typecheck(data["tasks"], tuple[str, ...], f"{where}: tasks")
    if not tasks:
        raise ProtocolError(f"{where}: tasks must not be empty")
    if len(set(tasks)) != len(tasks):
        dup = sorted({t for t in tasks if tasks.count(t) > 1})
        raise ProtocolError(f"{where}: duplicate tasks {dup}")
    known = envs.suite_tasks(suite)
    if known is not None:
        bad = [t for t in tasks if t not in known]
        if bad:
            close = difflib.get_close_matches(bad[0], sorted(known), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ProtocolError(
                f"{where}: tasks: {bad[0]!r} is not a task of suite {suite!r}.{hint} Known: {', '.join(sorted(known))}"
            )
    env = dict(data.get("env", {}))
    per_task = env.pop("action_repeat_per_task", None)
    envs.validate_env_settings(suite, env, f"{where}: env")
    budget = _section(Budget, data["budget"], f"{where}: budget")
    smoke = _section(Budget, data.get("smoke", {"agent_steps": min(budget.agent_steps, 1000)}), f"{where}: smoke")
    smoke = dataclasses.replace(smoke, step_unit=budget.step_unit)
    repeats = {} if per_task is None else _repeats_per_task(per_task, env, tasks, budget, smoke, where)
    if repeats and "stages" in data:
        raise ProtocolError(f"{where}: env.action_repeat_per_task and [[stages]] cannot be combined (stages count "
                            "agent steps, which differ per task there); drop one of them")
    score = _section(ScoreRule, data.get("score", {}), f"{where}: score")
    for b, label in ((budget, "budget"), (smoke, "smoke")):
        if b.agent_steps <= 0:
            raise ProtocolError(f"{where}: {label}.agent_steps must be positive, got {b.agent_steps}")
        if b.step_unit not in STEP_UNITS:
            raise ProtocolError(f"{where}: {label}.step_unit {b.step_unit!r} not one of {STEP_UNITS}")
    if score.rule not in SCORE_RULES:
        raise ProtocolError(f"{where}: score.rule {score.rule!r} not one of {SCORE_RULES}")
    if score.phase not in PHASES:
        raise ProtocolError(f"{where}: score.phase {score.phase!r} not one of {PHASES}")
    if score.fallback not in ("last", "none"):
        raise ProtocolError(f"{where}: score.fallback {score.fallback!r} not one of ('last', 'none')")
    evals = _section(EvalSchedule, data.get("eval", {}), f"{where}: eval")
    if score.rule == "success_geomean":
        if not score.achievements:
            raise ProtocolError(f"{where}: score.rule 'success_geomean' needs score.achievements, the list of "
                                "achievements whose success rates it averages (e.g. Crafter's 22)")
        dup = sorted({a for a in score.achievements if score.achievements.count(a) > 1})
        if dup:
            raise ProtocolError(f"{where}: score.achievements lists {dup} more than once")
        bad = [a for a in score.achievements if not re.fullmatch(r"[A-Za-z0-9_]+", a)]
        if bad:
            raise ProtocolError(f"{where}: score.achievements {bad[0]!r} must be letters, digits and underscores")
    elif score.rule == "success_rate":
        if len(score.achievements) != 1 or not re.fullmatch(r"[A-Za-z0-9_]+", score.achievements[0]):
            raise ProtocolError(f"{where}: score.rule 'success_rate' needs score.achievements = one event name "
                                f"(letters, digits, underscores), e.g. [\"success\"]; got {list(score.achievements)}")
    elif score.achievements:
        raise ProtocolError(f"{where}: score.achievements is used only by score.rules 'success_geomean' and "
                            f"'success_rate', not by {score.rule!r}; remove it or change the rule")
    if score.rule == "eval_mean" and evals.episodes <= 0:
        raise ProtocolError(f"{where}: score.rule 'eval_mean' needs eval.episodes > 0")
    seeds = _section(Seeds, data.get("seeds", {}), f"{where}: seeds")
    reproduce = _section(Reproduce, data.get("reproduce", {}), f"{where}: reproduce")
    if reproduce.published_name:
        if not re.fullmatch(r"[a-z0-9_]+", reproduce.published_name):
            raise ProtocolError(f"{where}: reproduce.published_name {reproduce.published_name!r} must be a "
                                "bare published protocol name (lowercase letters, digits, underscores), e.g. 'dmc_vision'")
        if not reproduce.published_sources:
            raise ProtocolError(f"{where}: reproduce.published_name needs reproduce.published_sources: the sources "
                                f"of {reproduce.published_name!r} this protocol reproduces")
    reproduce_content = dataclasses.asdict(reproduce)
    if not reproduce.published_name:  # absent unless set, so older protocols keep their hashes
        reproduce_content.pop("published_name")
    score_content = dataclasses.asdict(score)
    if not score.achievements:  # absent from rules that do not use it, so older protocols keep their hashes
        score_content.pop("achievements")
    stages = _stages(data["stages"], budget, where) if "stages" in data else ()
    content = {
        "name": name,
        "version": version,
        "suite": suite,
        "tasks": list(tasks),
        # the table enters the hashed content only when present: the hashes of protocols without it stay the same
        "env": {**env, "action_repeat_per_task": repeats} if repeats else env,
        "budget": dataclasses.asdict(budget),
        "smoke": dataclasses.asdict(smoke),
        "score": score_content,
        "eval": dataclasses.asdict(evals),
        "seeds": dataclasses.asdict(seeds),
        "reproduce": reproduce_content,
    }
    if stages:  # only then: the hashes of protocols without stages stay what they were
        content["stages"] = [dataclasses.asdict(s) for s in stages]
    return Protocol(
        name=name,
        version=version,
        suite=suite,
        tasks=tasks,
        env=MappingProxyType(env),
        action_repeat_per_task=MappingProxyType(repeats),
        budget=budget,
        score=score,
        eval=evals,
        seeds=seeds,
        smoke=smoke,
        reproduce=reproduce,
        description=str(data.get("description", "")),
        path=where,
        hash=content_hash(content),
        stages=stages,
    )


def protocol_files(directory: Path | None = None) -> dict[str, Path]:
    """Map `name@version` -> file for every protocol file in the directory."""
    directory = Path(directory or PROTOCOL_DIR)
    out = {}
    for p in sorted(directory.glob("*.toml")):
        out[p.stem] = p
    return out


def list_protocols(directory: Path | None = None) -> list[str]:
    return sorted(protocol_files(directory))


PROTOCOL_ID = re.compile(r"^[a-z][a-z0-9_]*@[0-9]+$")


def load_registered(protocol_id: str, directory: Path | None = None) -> Protocol:
    """Load a protocol named in DATA (a score table's `protocol` column, a run.json): only `name@version` ids of the
    registry resolve; a path, a bare name or anything else is refused, so a data file cannot point the check at a
    forged protocol file (e.g. one with a smaller budget)."""
    spec = str(protocol_id)
    if not PROTOCOL_ID.match(spec):
        raise ProtocolError(
            f"protocol {spec!r} is not a registered protocol id (name@version, e.g. atari100k@1); protocol ids in "
            f"data resolve only to the shipped protocols ({', '.join(protocol_files(directory))}), never to a path"
        )
    return load_protocol(spec, directory)


def load_protocol(spec: str | Path, directory: Path | None = None) -> Protocol:
    """Load `name@version`, `name` (latest version) or a path to a .toml file."""
    spec_str = str(spec)
    if spec_str.endswith(".toml") or os.sep in spec_str:
        path = Path(spec_str)
        if not path.exists():
            raise ProtocolError(f"protocol file {path} does not exist")
    else:
        files = protocol_files(directory)
        if "@" in spec_str:
            path = files.get(spec_str)
        else:
            versions = sorted(
                (int(k.split("@")[1]), p) for k, p in files.items() if k.split("@")[0] == spec_str
            )
            path = versions[-1][1] if versions else None
        if path is None:
            close = difflib.get_close_matches(spec_str, list(files), n=4, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ProtocolError(f"unknown protocol {spec_str!r}.{hint} Protocols: {', '.join(files)}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ProtocolError(f"{path}: not valid TOML ({e})") from e
    protocol = parse_protocol(data, str(path))
    if path.stem != protocol.id:
        raise ProtocolError(f"{path}: file name must be {protocol.id}.toml (name@version from its content)")
    return protocol
