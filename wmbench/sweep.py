"""Seeded sweeps: one run per (task, seed) of a method under a protocol, on local processes, Ray or Slurm.

This module owns the sweep spec (`<root>/sweeps/<id>/sweep.json`), its expansion into runs, the driver loop
(bounded retries; a run locked by a live process is "running elsewhere", not a failure), the status table and the
sweep's score table (`<root>/sweeps/<id>/scores.csv`). Everything about one run (seed derivation, resume from a
checkpoint, the run lock, run.json) belongs to `wmbench.runner.run`; backends live in `wmbench.sweep_backends`.

Idempotence: the sweep id is a hash of what defines the runs (method, protocol id + hash, tasks, seeds, overrides,
smoke, steps), so the same command finds its sweep again. Runs live in the ordinary run-directory layout, so a
finished run is skipped whichever sweep (or `wmbench run`) produced it, and a run's seed is derived by the runner
from (protocol, task, seed index): a sweep on 1 machine and on 100 gives the same runs.

Every attempt is appended to `<sweep>/attempts.jsonl` (durably) with how it ended and where its traceback is; the
status table (`wmbench sweep --status`) is computed from that log and the run directories alone, so it works from
any machine sharing the file system, while or after the sweep runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError
from wmbench.sweep_backends import DEFAULT_TARGET, Backend, Outcome, RunJob

SPEC_VERSION = 1
BACKENDS = ("local", "ray", "submitit")
MAX_SEEDS = 10_000  # seed indices per sweep: more is a typo (0-100000000), not a sweep


class SweepError(WmbenchError, ValueError):
    """A sweep request or sweep directory is invalid; the message names the bad value and the fix."""


# ---------------------------------------------------------------- spec and expansion


def parse_seeds(text: str) -> tuple[int, ...]:
    """`0-9`, `0,3,5`, `0-2,7` -> seed indices in the given order, duplicates dropped."""
    seeds: dict[int, None] = {}  # ordered set
    for part in str(text).replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep else range(int(part), int(part) + 1)
        except ValueError:
            raise SweepError(f"--seeds: {part!r} in {text!r} is not a seed or a range; use e.g. 0-9, 0,3,5 or 0-2,7") from None
        if sep and int(hi) < int(lo):
            raise SweepError(f"--seeds: range {part!r} is empty (end before start); write it as {hi}-{lo}")
        if values.start < 0 or values.stop - 1 > 2**63 - 1:
            raise SweepError(f"--seeds: seed indices are integers from 0 to 2**63-1, got {part!r}")
        if len(seeds) + len(values) > MAX_SEEDS:
            raise SweepError(f"--seeds {text!r} selects more than {MAX_SEEDS} seeds; a sweep takes at most {MAX_SEEDS} "
                             "(e.g. --seeds 0-9)")
        seeds.update(dict.fromkeys(values))
    if not seeds:
        raise SweepError(f"--seeds {text!r} selects no seeds")
    return tuple(seeds)


def parse_tasks(text: str, protocol: Any) -> tuple[str, ...]:
    """`all` -> the protocol's tasks; `a,b` -> those tasks (each checked against the protocol)."""
    if text.strip() == "all":
        return tuple(protocol.tasks)
    tasks: list[str] = []
    for task in (t.strip() for t in text.split(",")):
        if task and task not in tasks:
            tasks.append(protocol.check_task(task))
    if not tasks:
        raise SweepError(f"--tasks {text!r} selects no tasks; use 'all' or a comma-separated list")
    return tuple(tasks)


@dataclass(frozen=True)
class SweepSpec:
    """What defines a sweep's runs. Execution choices (backend, workers, device, retries) are not part of it."""

    method: str
    protocol: str  # protocol id, "name@version"
    protocol_hash: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    smoke: bool = False
    steps: int | None = None
    protocol_source: str | None = None  # absolute path when the protocol came from a file, not the registry
    name: str | None = None
    recipe: str | None = None  # `--recipe` (applied before the overrides); part of the identity when given

    def identity(self) -> dict[str, Any]:
        identity = {
            "method": self.method,
            "protocol": self.protocol,
            "protocol_hash": self.protocol_hash,
            "tasks": list(self.tasks),
            "seeds": list(self.seeds),
            "overrides": list(self.overrides),
            "smoke": self.smoke,
            "steps": self.steps,
        }
        if self.recipe:  # only when given, so the ids of sweeps without a recipe stay what they were
            identity["recipe"] = self.recipe
        return identity

    @property
    def id(self) -> str:
        if self.name:
            return self.name
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.method}-{self.protocol}-{digest}"

    def runs(self) -> list[tuple[str, int]]:
        return [(task, seed) for task in self.tasks for seed in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        return {**self.identity(), "protocol_source": self.protocol_source, "name": self.name, "id": self.id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        if not isinstance(data, dict):
            raise TypeError(f"holds {type(data).__name__}, not a JSON object")
        return cls(
            method=data["method"],
            protocol=data["protocol"],
            protocol_hash=data["protocol_hash"],
            tasks=tuple(data["tasks"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            overrides=tuple(data.get("overrides", ())),
            smoke=bool(data.get("smoke", False)),
            steps=data.get("steps"),
            protocol_source=data.get("protocol_source"),
            name=data.get("name"),
            recipe=data.get("recipe"),
        )


def make_spec(
    method: str,
    protocol: str,
    seeds: str | Sequence[int],
    tasks: str | Sequence[str] = "all",
    overrides: Sequence[str] = (),
    smoke: bool = False,
    steps: int | None = None,
    name: str | None = None,
    recipe: str | None = None,
) -> SweepSpec:
    """Validate a sweep request (protocol, tasks, method, recipe, config overrides) and build its spec."""
    from wmbench.method import get_method
    from wmbench.protocols import load_protocol
    from wmbench.recipes import resolve_config

    proto = load_protocol(protocol)
    task_list = parse_tasks(tasks, proto) if isinstance(tasks, str) else tuple(proto.check_task(t) for t in tasks)
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else tuple(int(s) for s in seeds)
    if steps is not None and steps <= 0:
        raise SweepError(f"--steps must be positive, got {steps}")
    if name is not None and (not name or "/" in name or name.startswith(".")):
        raise SweepError(f"--name {name!r} must be a plain directory name (no '/', not starting with '.')")
    # Fail the whole sweep at once on an unknown method or a bad `--set`, before launching N runs that would
    # each fail the same way (resolved exactly as the runner will).
    resolve_config(get_method(method), proto, overrides, recipe)
    source = None
    if str(protocol).endswith(".toml") or os.sep in str(protocol):
        source = str(Path(protocol).resolve())
    return SweepSpec(
        method=method,
        protocol=proto.id,
        protocol_hash=proto.hash,
        tasks=task_list,
        seeds=seed_list,
        overrides=tuple(overrides),
        smoke=smoke,
        steps=steps,
        protocol_source=source,
        name=name,
        recipe=recipe or None,
    )


def run_dir(root: Path | str, spec: SweepSpec, task: str, seed: int) -> Path:
    from wmbench.runner import run_dir_for

    return Path(run_dir_for(root, spec.protocol, task, spec.method, seed, spec.smoke))


def sweeps_dir(root: Path | str) -> Path:
    return Path(root) / "sweeps"


def sweep_dir(root: Path | str, spec: SweepSpec) -> Path:
    return sweeps_dir(root) / spec.id


def write_spec(root: Path | str, spec: SweepSpec, argv: Sequence[str] = ()) -> Path:
    """Create `<root>/sweeps/<id>/sweep.json`, or check that the one there describes the same runs."""
    from wmbench.io import atomic_write_json

    directory = sweep_dir(root, spec)
    path = directory / "sweep.json"
    if path.exists():
        old = load_spec(directory)
        if old.identity() != spec.identity():
            diff = [k for k, v in spec.identity().items() if old.identity().get(k) != v]
            raise SweepError(
                f"sweep {spec.id!r} in {directory} was created with different {', '.join(diff)}. "
                "Use another --name (or none: the id is then derived from the sweep's content)."
            )
        return directory
    runs = [
        {"task": task, "seed": seed, "run_dir": os.path.relpath(run_dir(root, spec, task, seed), root)}
        for task, seed in spec.runs()
    ]
    atomic_write_json(
        path,
        {
            "spec_version": SPEC_VERSION,
            **spec.to_dict(),
            "runs": runs,
            "created": _now(),
            "command": ["wmbench", "sweep", *argv],
        },
    )
    return directory


def load_spec(directory: Path | str) -> SweepSpec:
    path = Path(directory) / "sweep.json"
    if not path.exists():
        raise SweepError(f"{directory} is not a sweep directory (no sweep.json); sweeps live in <root>/sweeps/<id>/")
    try:
        return SweepSpec.from_dict(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        what = f"key {e} is missing" if isinstance(e, KeyError) else str(e)
        raise SweepError(
            f"{path} is damaged ({what}). Move {Path(directory)} aside (or delete it) and run the sweep command "
            "again: the runs live under --root, not in the sweep directory, and finished ones are reused"
        ) from None


def find_sweeps(root: Path | str) -> list[Path]:
    return sorted(p.parent for p in sweeps_dir(root).glob("*/sweep.json"))


# ---------------------------------------------------------------- attempts log and status


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append_attempt(directory: Path, record: dict[str, Any]) -> None:
    from wmbench.io import append_text

    append_text(directory / "attempts.jsonl", json.dumps(record, sort_keys=True) + "\n")


def read_attempts(directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / "attempts.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut by a crash mid-append
            records.append(json.loads(line))
    return records


@dataclass
class RunStatus:
    task: str
    seed: int
    state: str  # finished | running | failed | pending
    reason: str = ""
    steps: int | None = None
    budget: int | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    attempts: int = 0
    run_dir: str = ""
    error_file: str | None = None
    final_score: float | None = None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


def _rate(run: Path) -> float | None:
    """Recent agent steps per second from timing.csv (the runner's own measurement, last row)."""
    try:
        with open(run / "timing.csv") as f:
            rows = list(csv.DictReader(f))
    except (FileNotFoundError, OSError):
        return None
    with contextlib.suppress(KeyError, ValueError, IndexError):
        value = float(rows[-1]["steps_per_s"])
        return value if value > 0 and math.isfinite(value) else None
    return None


def _lock_holder(run: Path) -> dict[str, Any] | None:
    """The live holder of the run's lock, or None if unlocked or stale (dead pid / old heartbeat)."""
    from wmbench.io import RunLock

    lock = RunLock(run)
    if not lock.path.exists():
        return None
    info = lock.holder()
    return None if lock.is_stale(info) else (info or {})


def run_status(root: Path | str, spec: SweepSpec, task: str, seed: int, attempts: Sequence[dict[str, Any]] = ()) -> RunStatus:
    """State of one run of a sweep from its run directory and the sweep's attempt records for it."""
    from wmbench.runner import RunDirError, finished_problem, read_run_json

    directory = run_dir(root, spec, task, seed)
    status = RunStatus(task, seed, "pending", run_dir=str(directory), attempts=len(attempts))
    info: dict[str, Any] = {}
    if (directory / "run.json").exists():
        try:
            info = read_run_json(directory / "run.json")
        except RunDirError as e:
            status.state, status.reason = "failed", str(e)
            return status
    status.steps = info.get("agent_steps")
    status.budget = info.get("budget_agent_steps")
    last = attempts[-1] if attempts else None
    state = info.get("status")
    gave_up = last is not None and last.get("gave_up")
    if gave_up and state == "finished" and str(info.get("finished") or "") <= str(last.get("ended") or ""):
        # run.json says finished, but this sweep's last attempt at it failed after that (e.g. the directory holds a
        # run with other settings): the run is not this sweep's finished run
        state = None
    problem = finished_problem(directory, info) if state == "finished" else None
    if problem:
        status.state, status.reason = "failed", f"run.json says finished, but {problem}"
        return status
    if state == "finished":
        status.state = "finished"
        status.final_score = info.get("final_score")
        with contextlib.suppress(KeyError, TypeError, ValueError, ZeroDivisionError):
            status.steps_per_s = float(info["agent_steps"]) / float(info["wall_s"])
        return status
    holder = _lock_holder(directory) if directory.exists() else None
    if holder is not None:
        status.state = "running"
        where = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "locked"
        status.reason = where
        status.steps_per_s = _rate(directory)
        if status.steps_per_s and status.steps is not None and status.budget is not None:
            status.eta_s = max(0, status.budget - status.steps) / status.steps_per_s
        return status
    if gave_up:
        assert last is not None
        tries = "not retried: the same error would recur" if last.get("deterministic") else f"after {last.get('attempt')} attempts"
        status.state = "failed"
        status.reason = f"{last.get('status')} ({tries}): {last.get('error') or ''}".strip()
        status.error_file = last.get("error_file")
        return status
    if state == "paused":  # `wmbench run --pause-at`: a checkpoint at that step, the rest to come
        status.reason = f"paused at agent step {info.get('paused_at')}; resumes from its checkpoint on re-run"
        return status
    if state == "failed" and info.get("interrupted"):  # SIGTERM or Ctrl-C (e.g. the driver was killed)
        status.reason = f"interrupted: {info.get('error')}"
        return status
    if state == "failed":
        status.state = "failed"
        status.reason = str(info.get("error") or "run failed")
        error_file = directory / "error.txt"
        status.error_file = str(error_file) if error_file.exists() else None
        return status
    if state == "running":  # run.json says running but no live lock: the process died; resumes on re-run
        status.reason = f"interrupted at step {status.steps}; resumes from its checkpoint on re-run"
    elif last is not None:
        status.reason = f"last attempt {last.get('status')}: {last.get('error') or ''}".strip()
    else:
        status.reason = "not started"
    return status


def sweep_status(root: Path | str, spec: SweepSpec) -> list[RunStatus]:
    by_run: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in read_attempts(sweep_dir(root, spec)):
        by_run.setdefault((record["task"], int(record["seed"])), []).append(record)
    return [run_status(root, spec, task, seed, by_run.get((task, seed), [])) for task, seed in spec.runs()]


def summarize(statuses: Sequence[RunStatus]) -> dict[str, int]:
    counts = {"finished": 0, "running": 0, "failed": 0, "pending": 0}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    return counts


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def status_table(spec: SweepSpec, statuses: Sequence[RunStatus], limit: int | None = None) -> Any:
    """A rich Table of runs. With `limit`, running and failed runs are listed first and the rest summarised."""
    from rich.markup import escape
    from rich.table import Table

    counts = summarize(statuses)
    title = f"sweep {spec.id}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
    table = Table(title=title, title_justify="left")
    for column in ("task", "seed", "state", "steps", "steps/s", "ETA", "tries", "reason / traceback"):
        table.add_column(column, overflow="fold")
    order = {"running": 0, "failed": 1, "pending": 2, "finished": 3}
    rows = sorted(statuses, key=lambda s: order.get(s.state, 9)) if limit else list(statuses)
    colour = {"finished": "green", "running": "cyan", "failed": "red", "pending": "yellow"}
    for s in rows[: limit or None]:
        steps = "" if s.steps is None else f"{s.steps}/{s.budget if s.budget is not None else '?'}"
        reason = s.reason + (f" [{s.error_file}]" if s.error_file else "")
        if s.state == "finished" and s.final_score is not None:
            reason = f"final score {s.final_score:.4g}"
        table.add_row(
            escape(s.task),
            str(s.seed),
            f"[{colour.get(s.state, 'white')}]{s.state}[/]",
            steps,
            "" if s.steps_per_s is None else f"{s.steps_per_s:.1f}",
            _fmt_eta(s.eta_s),
            str(s.attempts) if s.attempts else "",
            escape(reason),
        )
    if limit and len(rows) > limit:
        table.caption = f"... {len(rows) - limit} more (wmbench sweep --status lists all)"
    return table


# ---------------------------------------------------------------- driver


@dataclass
class ExecOptions:
    """How (not what) to run: backend, concurrency, retries. Not part of the sweep's identity."""

    backend: str = "local"
    workers: int | None = None
    threads: int | None = None
    retries: int = 2
    device: str = "cpu"
    checkpoint_every: int | None = None
    target: str = DEFAULT_TARGET
    ray_address: str | None = None
    gpus_per_run: float = 0.0
    submitit_local: bool = False
    slurm_partition: str | None = None
    timeout_min: int = 24 * 60
    reuse_workers: bool = False
    progress: bool = True
    poll_s: float = 0.5
    pause_at: int | None = None  # every run stops at its first episode end at or after this agent step (resumable)


@dataclass
class SweepResult:
    sweep_dir: Path
    finished: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    elsewhere: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    paused: list[tuple[str, int]] = field(default_factory=list)  # stopped at --pause-at, as asked
    scores_csv: Path | None = None

    @property
    def complete(self) -> bool:
        """Nothing failed and nothing is held elsewhere (paused runs stopped where they were asked to)."""
        return not self.failed and not self.elsewhere


def cpu_cores() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(device: str) -> int:
    # One run per core on CPU; one per GPU device otherwise (several runs on one GPU: --workers + --gpus-per-run).
    return cpu_cores() if device == "cpu" else 1


def threads_per_run(workers: int) -> int:
    """max(1, cores // workers): N concurrent runs together use the cores once, without oversubscription."""
    return max(1, cpu_cores() // max(1, workers))


def make_backend(options: ExecOptions, directory: Path, workers: int, threads: int) -> Backend:
    from wmbench import sweep_backends as sb

    if options.backend == "local":
        return sb.LocalBackend(workers, directory / "logs", reuse=options.reuse_workers)
    if options.backend == "ray":
        return sb.RayBackend(workers, threads, options.ray_address, options.gpus_per_run)
    if options.backend == "submitit":
        return sb.SubmititBackend(
            directory / "submitit",
            workers,
            threads,
            local=options.submitit_local,
            gpus_per_run=options.gpus_per_run,
            timeout_min=options.timeout_min,
            partition=options.slurm_partition,
        )
    raise SweepError(f"unknown backend {options.backend!r}; backends: {', '.join(BACKENDS)}")


def run_sweep(
    spec: SweepSpec,
    root: Path | str = "runs",
    options: ExecOptions | None = None,
    argv: Sequence[str] = (),
    backend: Backend | None = None,
) -> SweepResult:
    """Run every not-yet-finished run of the sweep; retry failures up to `options.retries` times; write the
    sweep's score table. Safe to call again after any interruption: finished runs are skipped, crashed ones
    resume (the runner does), runs held by a live process elsewhere are reported, not started twice."""
    options = options or ExecOptions()
    if options.retries < 0:
        raise SweepError(f"--retries must be >= 0, got {options.retries}")
    root = Path(root)
    try:
        directory = write_spec(root, spec, argv)
    except OSError as e:
        if isinstance(e, WmbenchError):
            raise
        raise SweepError(f"cannot write the sweep directory {sweep_dir(root, spec)} under --root {str(root)!r} "
                         f"({e.strerror or e}); pass a writable directory as --root") from None
    workers = options.workers if options.workers is not None else default_workers(options.device)
    if workers < 1:
        raise SweepError(f"--workers must be >= 1, got {workers}")
    threads = options.threads or threads_per_run(workers)
    result = SweepResult(directory)
    protocol_arg = spec.protocol_source or spec.protocol

    todo: deque[tuple[RunJob, int]] = deque()
    expected = _expected_identities(spec)
    if options.pause_at is not None:
        budgets = {task: expected[task, seed]["budget_agent_steps"] for task, seed in spec.runs()}
        past = sorted(task for task, b in budgets.items() if options.pause_at >= b)
        if past:
            raise SweepError(f"--pause-at {options.pause_at} is not before the budget of {', '.join(past)} "
                             f"({min(budgets[t] for t in past)} agent steps): those runs would finish first; give "
                             "an earlier agent step or omit --pause-at")
    for task, seed in spec.runs():
        if _finished_same_run(run_dir(root, spec, task, seed), expected[(task, seed)]):
            # The runner would also return at once; skipping here saves starting a worker for it.
            result.skipped.append((task, seed))
            result.finished.append((task, seed))
            continue
        job = RunJob(
            method=spec.method,
            protocol=protocol_arg,
            task=task,
            seed=seed,
            root=str(root.resolve()),
            overrides=spec.overrides,
            smoke=spec.smoke,
            steps=spec.steps,
            device=options.device,
            checkpoint_every=options.checkpoint_every,
            threads=threads,
            target=options.target,
            run_dir=str(run_dir(root.resolve(), spec, task, seed)),
            recipe=spec.recipe,
            pause_at=options.pause_at,
        )
        todo.append((job, 1))

    invocation = f"{socket.gethostname()}:{os.getpid()}:{_now()}"
    live = _LiveView(root, spec, enabled=options.progress)
    started: dict[tuple[str, int], float] = {}
    for job, attempt in list(todo):
        holder = _lock_holder(Path(job.run_dir)) if Path(job.run_dir).exists() else None
        if holder is not None:
            # Held by a live process (another driver sharing this root, a `wmbench run`): don't start a worker
            # just to be refused. Several drivers running the same command thus share out the work.
            todo.remove((job, attempt))
            who = f"pid {holder.get('pid')} on {holder.get('host')}"
            _handle(job, attempt, Outcome("locked", error=f"run held by {who}"), options, directory, invocation,
                    started, todo, result, live)
    if todo and backend is None:
        backend = make_backend(options, directory, workers, threads)
    try:
        with live:
            while todo or (backend is not None and backend.in_flight):
                assert backend is not None
                room = backend.capacity - backend.in_flight
                batch = [todo.popleft() for _ in range(min(room, len(todo)))]
                if batch:
                    for job, attempt in batch:
                        started[job.key] = time.time()
                        live.in_flight[job.key] = attempt
                    backend.submit(batch)
                for job, attempt, outcome in backend.wait(options.poll_s):
                    live.in_flight.pop(job.key, None)
                    _handle(job, attempt, outcome, options, directory, invocation, started, todo, result, live)
                live.refresh()
    except KeyboardInterrupt:
        print(
            "sweep interrupted: running runs are stopped; each resumes from its last checkpoint (or starts over "
            "where none was written yet) when the same command is run again (wmbench sweep --status shows where "
            "each stands)",
            file=sys.stderr,
        )
        raise
    finally:
        if backend is not None:
            backend.close()
    result.scores_csv = write_scores(root, spec, directory)
    return result


def _expected_identities(spec: SweepSpec) -> dict[tuple[str, int], dict[str, Any]]:
    """Each run's identity as the runner records it (wmbench.runner.run_identity)."""
    from wmbench.method import get_method
    from wmbench.protocols import load_protocol
    from wmbench.recipes import resolve_config
    from wmbench.runner import run_identity

    proto = load_protocol(spec.protocol_source or spec.protocol)
    config, recipe = resolve_config(get_method(spec.method), proto, spec.overrides, spec.recipe)
    def budget(task: str) -> int:  # a task's own agent steps where the protocol sets its action repeat per task
        return spec.steps if spec.steps is not None else proto.for_task(task).budget_steps(spec.smoke)

    return {
        (task, seed): run_identity(spec.method, proto, task, seed, config, spec.smoke, budget(task), recipe)
        for task, seed in spec.runs()
    }


def _finished_same_run(directory: Path, expected: dict[str, Any]) -> bool:
    """A finished run made by this sweep's settings (and intact) may be skipped without starting a worker; any
    difference goes to the runner, which reports it (a run directory never silently changes meaning)."""
    from wmbench.runner import RunDirError, finished_problem, identity_differences, read_run_json

    try:
        info = read_run_json(directory / "run.json") if (directory / "run.json").exists() else None
    except RunDirError:
        return False
    if info is None or info.get("status") != "finished" or finished_problem(directory, info):
        return False
    diffs, config_diffs = identity_differences(info, expected)
    return not diffs and not config_diffs


def _handle(
    job: RunJob,
    attempt: int,
    outcome: Outcome,
    options: ExecOptions,
    directory: Path,
    invocation: str,
    started: dict[tuple[str, int], float],
    todo: deque[tuple[RunJob, int]],
    result: SweepResult,
    live: _LiveView,
) -> None:
    gave_up = outcome.status in ("failed", "crashed") and (attempt > options.retries or outcome.deterministic)
    record = {
        "task": job.task,
        "seed": job.seed,
        "attempt": attempt,
        "invocation": invocation,
        "backend": options.backend,
        "status": outcome.status,
        "error": outcome.error,
        "error_file": outcome.error_file,
        "resumed": outcome.resumed,
        "final_score": outcome.final_score,
        "started": datetime.fromtimestamp(started.get(job.key, time.time()), UTC).isoformat(timespec="seconds"),
        "ended": _now(),
        "gave_up": gave_up,
        "deterministic": outcome.deterministic,
    }
    if outcome.traceback and outcome.error_file is None:
        # Ray/submitit return the traceback in the outcome; keep it in a file the status table can point to.
        path = directory / "logs" / f"{job.task}.seed_{job.seed}.attempt_{attempt}.traceback.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outcome.traceback)
        record["error_file"] = str(path)
    append_attempt(directory, record)
    from rich.markup import escape

    label, error = escape(job.label), escape(str(outcome.error))
    if outcome.status == "finished":
        result.finished.append(job.key)
        live.note(f"finished {label}" + (" (resumed)" if outcome.resumed else ""))
    elif outcome.status == "paused":
        result.paused.append(job.key)
        live.note(f"paused {label} at its first episode end at or after agent step {options.pause_at}")
    elif outcome.status == "locked":
        result.elsewhere.append(job.key)
        live.note(f"{label} is running elsewhere (locked); not started twice")
    elif gave_up:
        result.failed.append(job.key)
        tries = "not retried: the same error would recur" if outcome.deterministic else f"after {attempt} attempts"
        live.note(f"[red]gave up on {label}[/] ({tries}): {error} ({escape(str(record['error_file']))})")
    else:
        todo.append((job, attempt + 1))
        live.note(f"{label} attempt {attempt} {outcome.status}: {error}; retrying")


class _LiveView:
    """rich Live table refreshed from the run directories (at most every `every` seconds), or plain lines when
    progress is off or stderr is not a terminal."""

    def __init__(self, root: Path, spec: SweepSpec, enabled: bool, every: float = 1.0):
        from rich.console import Console

        self.root, self.spec = root, spec
        self.console = Console(stderr=True)
        self.live_mode = enabled and self.console.is_terminal
        self.enabled = enabled
        self.every = every
        self._last = 0.0
        self._live: Any = None
        self.in_flight: dict[tuple[str, int], int] = {}  # the driver's launched attempts

    def __enter__(self) -> _LiveView:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)

    def _render(self) -> Any:
        statuses = sweep_status(self.root, self.spec)
        for s in statuses:
            attempt = self.in_flight.get((s.task, s.seed))
            if attempt is not None and s.state == "pending":  # launched, not yet holding its lock (imports)
                s.state, s.reason = "running", f"starting (attempt {attempt})"
        return status_table(self.spec, statuses, limit=20)

    def refresh(self) -> None:
        if self._live is not None and time.monotonic() - self._last > self.every:
            self._last = time.monotonic()
            self._live.update(self._render())

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)


# ---------------------------------------------------------------- aggregation


def write_scores(root: Path, spec: SweepSpec, directory: Path) -> Path | None:
    """One tidy score table (score-table schema, for `wmbench report`) of ALL the sweep's finished runs, whichever
    driver ran them: built under a lock from the run directories, so with several drivers on one root the one that
    ends last writes the complete table."""
    import fcntl

    try:
        from wmbench.results import load_scores
    except ImportError:  # results.py not installed in this checkout: runs are intact, the table can be rebuilt
        return None
    from wmbench.io import atomic_write_text

    with open(directory / "scores.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        finished = [(s.task, s.seed) for s in sweep_status(root, spec) if s.state == "finished"]
        if not finished:
            return None
        dirs = [run_dir(root, spec, task, seed) for task, seed in finished]
        try:
            table = load_scores(dirs)
        except WmbenchError as e:  # the runs are done and intact; only the summary table could not be built
            print(f"warning: the sweep's score table was not written: {e}", file=sys.stderr)
            return None
        path = directory / "scores.csv"
        atomic_write_text(path, table.to_csv(index=False))
    return path


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wmbench sweep",
        description="Seeded sweep over tasks x seeds. Re-running the same command skips finished runs, resumes "
        "crashed ones and retries failures; --status shows where a sweep stands.",
    )
    p.add_argument("method", nargs="?", help="method name (wmbench list methods)")
    p.add_argument("protocol", nargs="?", help="protocol id, e.g. atari100k@1 (wmbench list protocols)")
    p.add_argument("--seeds", default=None, help="seed indices: 0-9, 0,3,5 or 0-2,7 (default: the protocol's recommended count)")
    p.add_argument("--tasks", default="all", help="'all' or a comma-separated list of the protocol's tasks")
    p.add_argument("--recipe", default=None, metavar="NAME", help="a recipe of the method (wmbench list methods), "
                   "applied before --set in every run; recorded in run.json and the sweep's identity")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--smoke", action="store_true", help="the protocol's tiny smoke budget")
    p.add_argument("--steps", type=int, default=None, help="agent steps per run (overrides the budget; for tests)")
    p.add_argument("--device", default="cpu", help="torch device for every run (cpu, cuda, cuda:1, ...)")
    p.add_argument("--root", default="runs", help="root of run directories (default: runs)")
    p.add_argument("--name", default=None, help="sweep id (default: derived from method, protocol and a content hash)")
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--workers", type=int, default=None, help="concurrent runs (default: one per core on cpu, 1 on gpu)")
    p.add_argument("--threads", type=int, default=None, help="torch/BLAS threads per run (default: cores // workers)")
    p.add_argument("--retries", type=int, default=2, help="retries of a failed or crashed run (default 2)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="agent steps between checkpoints (runner default)")
    p.add_argument("--reuse-workers", action="store_true", help="local: a worker process serves run after run "
                   "(saves seconds of start-up per run; default: a fresh process per run)")
    p.add_argument("--ray-address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs per run: a fraction shares a GPU (ray); rounded up for Slurm")
    p.add_argument("--submitit-local", action="store_true", help="submitit's LocalExecutor instead of Slurm")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="submitit/Slurm time limit per job (requeued on timeout)")
    p.add_argument("--status", action="store_true", help="show the sweep's runs (all sweeps under --root without METHOD)")
    p.add_argument("--dry-run", action="store_true", help="print the runs the sweep expands to and exit")
    p.add_argument("--no-progress", action="store_true", help="no live table")
    p.add_argument("--pause-at", type=int, default=None, metavar="STEP", help="every run stops at its first "
                   "episode end at or after this agent step, with a checkpoint (wmbench run --pause-at); the same "
                   "command without it continues them: e.g. all seeds to an early comparison step first")
    p.add_argument("--target", default=DEFAULT_TARGET, help=argparse.SUPPRESS)  # tests inject a stand-in runner
    return p


def cli_sweep(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160)  # logs of batch jobs: rich's 80-column default folds every path
    from wmbench.protocols import load_protocol
    from wmbench.runner import check_run_args, note_protocol_version

    check_run_args(None, args.root, args.device, args.steps, args.checkpoint_every, None, args.threads, args.pause_at)
    if args.status and not args.method:
        return _print_all_status(console, Path(args.root), args.name)
    if not args.method or not args.protocol:
        raise SweepError("wmbench sweep needs METHOD and PROTOCOL (or --status to list the sweeps under --root)")
    proto = load_protocol(args.protocol)
    note_protocol_version(args.protocol, proto)
    seeds = args.seeds if args.seeds is not None else f"0-{proto.seeds.recommended - 1}"
    spec = make_spec(args.method, args.protocol, seeds, args.tasks, args.overrides, args.smoke, args.steps, args.name,
                     args.recipe)
    if args.status:
        if not (sweep_dir(args.root, spec) / "sweep.json").exists():
            console.print(f"no sweep {spec.id} under {args.root} yet; all {len(spec.runs())} runs pending")
        console.print(status_table(spec, sweep_status(args.root, spec)))
        return 0
    if args.dry_run:
        for task, seed in spec.runs():
            console.print(f"{task} seed {seed} -> {run_dir(args.root, spec, task, seed)}", markup=False)
        console.print(f"{len(spec.runs())} runs; sweep id {spec.id}")
        return 0
    options = ExecOptions(
        backend=args.backend,
        workers=args.workers,
        threads=args.threads,
        retries=args.retries,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        target=args.target,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
        submitit_local=args.submitit_local,
        slurm_partition=args.slurm_partition,
        timeout_min=args.timeout_min,
        reuse_workers=args.reuse_workers,
        progress=not args.no_progress,
        pause_at=args.pause_at,
    )
    result = run_sweep(spec, args.root, options, argv=argv)
    if not (options.progress and Console(stderr=True).is_terminal):  # else the live table is still on screen
        console.print(status_table(spec, sweep_status(args.root, spec), limit=50))
    paused = f", {len(result.paused)} paused at agent step {args.pause_at}" if result.paused else ""
    console.print(
        f"{len(result.finished)} finished ({len(result.skipped)} already done){paused}, {len(result.failed)} failed, "
        f"{len(result.elsewhere)} running elsewhere. Sweep: {result.sweep_dir}"
    )
    if result.paused:
        console.print("paused runs go on from their checkpoints when the same command runs without --pause-at (or "
                      "with a later one); `wmbench reproduce --at-step` compares them at a step they have reached")
    if result.scores_csv:
        console.print(f"scores: {result.scores_csv}  (wmbench report {result.scores_csv})")
    if result.elsewhere:
        console.print("runs held by another live process were not started twice; run the same command later")
    return 0 if result.complete else 1


def _print_all_status(console: Any, root: Path, name: str | None) -> int:
    dirs = [sweeps_dir(root) / name] if name else find_sweeps(root)
    if not dirs:
        console.print(f"no sweeps under {sweeps_dir(root)}")
        return 0
    for directory in dirs:
        spec = load_spec(directory)
        console.print(status_table(spec, sweep_status(root, spec)))
    return 0
