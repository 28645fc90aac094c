"""The run loop: one method on one task of a protocol, with scores, metrics, checkpoints and exact resume.

`run(...)` owns a run directory `<root>/<name>@<version>/<task>/<method>/seed_<n>/` (smoke runs:
`<method>/smoke/seed_<n>/`; docs/contracts.md):

  run.json       what ran (method, resolved config, protocol id + hash, seeds, budget, versions, status, times)
  scores.csv     one row per finished episode: env_step, step_unit, episode, score, length, phase (train/eval),
                 and `achievements` (unlocked names joined by ';') for protocols scored by success_geomean
  metrics.jsonl  means of the method's update metrics every `log_every` agent steps (no wall time)
  timing.csv     env_step, wall_s, steps_per_s (wall time lives only here, so resumed logs equal fresh ones)
  checkpoint/    state.pt: method state, replay state, global RNG states, counters, env episode counters and the
                 byte lengths of the three logs; checkpoint.prev/ is the one before
  replay/        append-only replay chunks (wmbench.replay)
  lock.json      run lock (wmbench.io.RunLock); error.txt: traceback of a failed attempt

Loop (embodied convention): the policy sees step t (batch of 1) and returns the action for it; the step with its
action goes to replay; the env steps (one agent step); `method.update(replay, step)` runs after every env step.
Checkpoints are taken at the first episode boundary at or after every `checkpoint_every` agent steps, so the env
itself need not be saved: `ContractEnv` reseeds episode k from (seed, k), and resume restarts at episode k. The
policy state is reset to None at every episode start, checkpointed or not, so both paths see the same inputs.
Resume reloads the checkpoint, cuts the logs back to the lengths it recorded and continues; the logs then equal
an uninterrupted run's byte for byte (tested in tests/test_resume.py). A failure (exception, SIGTERM) records
status `failed` and `error.txt`; running the same command again resumes from the last checkpoint.

Integrity: run.json and every checkpoint record the run's identity (`run_identity`), compared by
`identity_differences` before anything resumes; the checkpoint also holds sha256 hashes of the logs' covered
prefixes and of every replay chunk, checked on resume. A changed config needs `allow_config_change` (recorded), a
run whose checkpoints are gone needs `restart`, and a run is `finished` only with a final score.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmbench import expectations, tracking, video
from wmbench.config import flatten, to_dict
from wmbench.errors import WmbenchError
from wmbench.io import (
    DiskFullError,
    RunLock,
    RunLocked,
    append_text,
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    fsync_dir,
    fsync_file,
    read_json,
    truncate,
)
from wmbench.protocols import Protocol, load_protocol
from wmbench.replay import Replay, ReplayError
from wmbench.seeding import derive_seed, rng_state, seed_everything, set_rng_state

__all__ = [
    "run", "run_dir_for", "RunResult", "CheckpointError", "RunDirError", "RunLocked", "DiskFullError", "Terminated",
    "cli_run", "load_checkpoint", "save_checkpoint",
]

CHECKPOINT_FORMAT = 1
SCORES_HEADER = "env_step,step_unit,episode,score,length,phase\n"
# Protocols scored by success_geomean (Crafter) or success_rate (Meta-World) record each episode's unlocked
# achievements (events) in one more column.
ACHIEVEMENTS_HEADER = "env_step,step_unit,episode,score,length,phase,achievements\n"
TIMING_HEADER = "env_step,wall_s,steps_per_s\n"
LOGS = ("scores.csv", "metrics.jsonl", "timing.csv")
# Replay memory unless the method's config sets `replay_bytes`: holds e.g. Atari100k's 100k 64x64x3 steps (~1.2 GB).
DEFAULT_REPLAY_BYTES = 4 * 2**30
DEFAULT_REPLAY_CHUNK = 1024


class CheckpointError(WmbenchError, RuntimeError):
    """A checkpoint (or the replay it covers) cannot be loaded; the message names the file."""


class RunDirError(WmbenchError, ValueError):
    """The run directory holds a different run (other protocol, method, config, ...) or is unreadable."""


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str
    final_score: float | None
    resumed: bool


def run_dir_for(
    root: Path | str, protocol: Protocol | str, task: str, method: str, seed: int, smoke: bool = False
) -> Path:
    """`<root>/<name>@<version>/<task>/<method>/seed_<n>/`; smoke runs under `<method>/smoke/seed_<n>/`, so a smoke
    run and a full run of the same seed never share a directory."""
    proto_id = protocol.id if isinstance(protocol, Protocol) else str(protocol)
    base = Path(root) / proto_id / task / method
    return (base / "smoke" if smoke else base) / f"seed_{int(seed)}"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for dist in ("wmbench", "gymnasium", "ale-py", "dm-control", "mujoco"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# ------------------------------------------------------------------------------------------ run identity
IDENTITY_KEYS = ("protocol", "protocol_hash", "method", "task", "seed", "smoke", "budget_agent_steps")


def run_identity(
    method: str, protocol: Protocol, task: str, seed: int, config: Any, smoke: bool, budget: int,
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What makes a run this run: recorded in run.json and in every checkpoint, compared before any resume. The
    recipe (`--recipe`) is recorded for the reader; its settings are compared through `config`, which holds them."""
    identity = {
        "method": method,
        "protocol": protocol.id,
        "protocol_hash": protocol.hash,
        "task": task,
        "seed": int(seed),
        "smoke": bool(smoke),
        "budget_agent_steps": int(budget),
        "config": config if isinstance(config, dict) else to_dict(config),
    }
    if recipe is not None:
        identity["recipe"] = recipe
    return identity


def identity_differences(recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(differences outside the config, config differences) between a recorded identity and a requested one, as
    `key: directory has X, requested Y` lines. THE comparison behind run.json, checkpoint and sweep checks."""
    diffs = [
        f"{key}: directory has {recorded.get(key)!r}, requested {requested[key]!r}"
        for key in IDENTITY_KEYS
        if recorded.get(key) != requested[key]
    ]
    config = recorded.get("config")
    old, new = flatten(config if isinstance(config, Mapping) else {}), flatten(requested["config"])
    config_diffs = [
        f"config.{key}: directory has {old.get(key)!r}, requested {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    return diffs, config_diffs


def _config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    a, b = flatten(old), flatten(new)
    return {key: [a.get(key), b.get(key)] for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def _check_same_run(
    recorded: Mapping[str, Any], requested: Mapping[str, Any], run_dir: Path, where: str = "run.json",
    allow_config_change: bool = False,
) -> None:
    """Refuse to continue a run directory made with other settings (protocol version/hash, method, config...).
    With `allow_config_change`, config differences are accepted (recorded by the caller); nothing else is."""
    diffs, config_diffs = identity_differences(recorded, requested)
    if not allow_config_change:
        diffs += config_diffs
    if diffs:
        shown = "; ".join(diffs[:6]) + ("; ..." if len(diffs) > 6 else "")
        hint = (
            " To continue this run with changed config settings instead (e.g. a lower learning rate after a "
            "non-finite loss), add --allow-config-change: the change and the agent step it applies from are "
            "recorded in run.json's config_changes."
            if config_diffs and len(diffs) == len(config_diffs) and not allow_config_change else ""
        )
        raise RunDirError(
            f"run directory {run_dir} holds a different run (by its {where}: {shown}). A run directory is never "
            "reused for other settings: pass a new --root (e.g. --root runs_new) to keep both, or delete the "
            f"directory to start over.{hint}"
        )


# run.json keys the runner (and the sweep) read back, with the JSON types they must have.
_RUN_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "method": (str,), "protocol": (str,), "protocol_hash": (str,), "task": (str,), "seed": (int,),
    "smoke": (bool,), "budget_agent_steps": (int,), "config": (dict,), "status": (str,), "resumes": (int,),
    "agent_steps": (int,), "threads": (int,), "started": (str,), "finished": (str,), "checkpoint_step": (int,),
    "config_changes": (list,), "logs_sha256": (dict,), "final_score": (int, float), "wall_s": (int, float),
    "paused_at": (int,),
}
_JSON_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true/false", dict: "an object", list: "a list",
                    float: "a number"}


def read_run_json(path: Path) -> dict[str, Any]:
    """run.json, checked to have the shape the runner wrote (RunDirError naming the bad key otherwise)."""
    fix = f"move {path.parent} aside (or delete it) to start that run over, or use a new --root"
    try:
        info = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} is damaged (not JSON: {e}); {fix}") from None
    except OSError as e:
        raise RunDirError(f"{path} cannot be read ({e.strerror or e}); {fix}") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{path} is damaged: it holds {type(info).__name__} {str(info)[:60]}, not a JSON object; {fix}")
    for key, types in _RUN_JSON_TYPES.items():
        value = info.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            want = " or ".join(_JSON_TYPE_NAMES[t] for t in types)
            raise RunDirError(f"{path} is damaged: {key!r} is {value!r}, expected {want}; {fix}")
    if info.get("status") not in (None, "running", "paused", "finished", "failed"):
        raise RunDirError(f"{path} is damaged: 'status' is {info['status']!r}, expected running/paused/finished/failed; "
                          f"{fix}")
    return info


def _logs_sha256(run_dir: Path, names: Sequence[str] = ("scores.csv",)) -> dict[str, str]:
    out = {}
    for name in names:
        with open(run_dir / name, "rb") as f:
            out[name] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def finished_problem(run_dir: Path, info: Mapping[str, Any]) -> str | None:
    """Why a run.json that says `finished` cannot be trusted (its scores.csv changed since), or None."""
    recorded = info.get("logs_sha256") or {}
    for name, digest in recorded.items():
        try:
            now = _logs_sha256(run_dir, [name])[name]
        except OSError as e:
            return f"{name} of the finished run cannot be read ({e.strerror or e})"
        if now != digest:
            return (f"{name} was changed after the run finished (sha256 {digest[:12]}... when it finished, "
                    f"{now[:12]}... now)")
    return None


# ------------------------------------------------------------------------------------------ checkpoints
def _checkpoint_file(directory: Path) -> Path:
    return directory / "state.pt"


def save_checkpoint(run_dir: Path, state: Mapping[str, Any]) -> None:
    """Write checkpoint.tmp/, then rotate checkpoint/ -> checkpoint.prev/ and checkpoint.tmp/ -> checkpoint/.

    A crash or a full disk at any point leaves at least one complete checkpoint (checkpoint/ or checkpoint.prev/).
    """
    tmp, cur, prev, old = (run_dir / n for n in ("checkpoint.tmp", "checkpoint", "checkpoint.prev", "checkpoint.old"))
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with atomic_open(_checkpoint_file(tmp), "wb") as f:
            torch.save(dict(state), f)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(tmp)
    if cur.exists():
        if prev.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(prev, old)
        os.replace(cur, prev)
    os.replace(tmp, cur)
    fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path) -> dict[str, Any]:
    """Load checkpoint `directory`/state.pt with weights_only=True (no code from a run directory is executed)."""
    path = _checkpoint_file(directory)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except Exception as e:  # truncated zip, bad pickle, forbidden global: all mean "unusable file"
        first_line = (str(e).splitlines() or [""])[0][:300]
        if "weights_only" in str(e).lower() or "Unsupported global" in str(e):
            raise CheckpointError(
                f"checkpoint {path} holds objects that torch.load(weights_only=True) refuses ({first_line}); a "
                "method's state_dict may contain only tensors, numbers, strings, lists and dicts"
            ) from e
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({type(e).__name__}: {first_line})") from e
    needed = {"format", "step", "method", "replay", "rng", "counters", "logs"}
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or needed - set(state):
        raise CheckpointError(f"checkpoint {path} is not a wmbench checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def _find_checkpoint(run_dir: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """Newest loadable checkpoint. If checkpoint/ is damaged, fall back to checkpoint.prev/ only when it loads;
    the damaged one is set aside (renamed, never deleted). If none loads, raise naming the files."""
    cur, prev = run_dir / "checkpoint", run_dir / "checkpoint.prev"
    candidates = [d for d in (cur, prev) if d.exists()]
    if not candidates:
        return None, None
    errors = []
    for d in candidates:
        try:
            return load_checkpoint(d), d
        except CheckpointError as e:
            errors.append(e)
    raise CheckpointError(
        "; ".join(str(e) for e in errors)
        + f". Nothing was changed in {run_dir}. Restore a good checkpoint there, or start over with a new --root."
    )


# ------------------------------------------------------------------------------------------ the loop
def _batch(step: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[None] for k, v in step.items()}


def _fmt(x: float) -> str:
    """Shortest exact text of a float (repr round-trips), so files compare byte for byte."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


class _Progress:
    """A progress line on stderr at most every `interval` seconds: steps/s, ETA, last return.

    The rate is measured over the last `window` seconds, not since the start: a run's speed changes (fast random
    prefill, then training; other jobs starting and ending on the machine), and a rate since the start would keep
    the prefill in the ETA for hours."""

    def __init__(self, label: str, total: int, enabled: bool, interval: float = 5.0, window: float = 600.0,
                 clock=time.monotonic):
        self.label, self.total, self.enabled, self.interval, self.window = label, total, enabled, interval, window
        self.clock = clock
        self.last = clock()
        self.samples: collections.deque[tuple[float, int]] = collections.deque()  # (time, step), oldest first
        self.last_eval: float | None = None  # mean return of the last evaluation (protocols with eval episodes)

    def rate(self, now: float, step: int) -> float:
        """Agent steps per second since the oldest sample inside the window (the first sample if none is)."""
        self.samples.append((now, step))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        t0, s0 = self.samples[0]
        return (step - s0) / max(now - t0, 1e-9)

    def __call__(self, step: int, last_return: float | None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not self.samples:
            self.samples.append((now, step))
        if not force and now - self.last < self.interval:
            return
        self.last = now
        rate = self.rate(now, step)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        eta_s = "?" if not math.isfinite(eta) else str(_dt.timedelta(seconds=int(eta)))
        ret = "-" if last_return is None else f"{last_return:.4g}"
        evaluated = "" if self.last_eval is None else f", last eval return {self.last_eval:.4g}"
        print(
            f"{self.label}: {step}/{self.total} agent steps ({100 * step / self.total:.0f}%), "
            f"{rate:.1f} steps/s, ETA {eta_s}, last return {ret}{evaluated}",
            file=sys.stderr,
            flush=True,
        )


class Terminated(WmbenchError, RuntimeError):
    """The process received SIGTERM (e.g. a cluster pre-empting the job); the run resumes when restarted."""


@contextlib.contextmanager
def _sigterm_as_exception():
    """Turn SIGTERM into an exception so a terminated run records `failed` and releases its lock."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated by SIGTERM; run the same command again to resume from the last checkpoint")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_protocol(protocol: Protocol, smoke: bool, budget: int) -> Protocol:
    """The protocol as the final-score rule must see this run: its budget is the one the run actually used."""
    b = dataclasses.replace(protocol.budget, agent_steps=budget)
    return dataclasses.replace(protocol, budget=b)


def _achievements_field(info: Mapping[str, Any], protocol: Protocol, phase: str, episode: int) -> str:
    """The scores.csv `achievements` field of an episode: the names its adapter reported unlocked, joined by ';'."""
    unlocked = info.get("achievements")
    if unlocked is None:
        raise WmbenchError(
            f"protocol {protocol.id} is scored by {protocol.score.rule}, which needs the achievements each episode "
            f"unlocked, but suite {protocol.suite!r} reported no info['achievements'] at the end of {phase} episode "
            f"{episode}; use a suite whose adapter reports them (crafter) or another score rule"
        )
    names = sorted(str(a) for a in unlocked)
    unknown = [a for a in names if a not in protocol.score.achievements]
    if unknown:
        raise WmbenchError(
            f"{phase} episode {episode} unlocked {unknown}, which are not in protocol {protocol.id}'s "
            f"score.achievements ({', '.join(protocol.score.achievements)}); the protocol's list and the suite differ"
        )
    return ";".join(names)


def _final_score(run_dir: Path, protocol: Protocol) -> tuple[float | None, str | None]:
    """The protocol's final score via the one implementation (wmbench.results.final_score), or why there is none."""
    try:
        import pandas as pd

        from wmbench.results import final_score
    except ImportError as e:
        return None, f"wmbench.results is not available ({e})"
    try:
        episodes = pd.read_csv(run_dir / "scores.csv", dtype={"achievements": str})
        value = float(final_score(episodes, protocol))
    except Exception as e:  # noqa: BLE001 - any scoring failure is reported, with its type, as the run's error
        return None, f"{type(e).__name__}: {e}"
    if math.isnan(value):
        return None, "the protocol's score rule gave NaN"
    return value, None


# ------------------------------------------------------------------------------------------ arguments
DEFAULT_CHECKPOINT_MINUTES = 5.0
MAX_SEED = 2**63 - 1
MAX_STEPS = 2**53
_DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?|mps")


def check_run_args(
    seed: Any, root: Any, device: str = "cpu", steps: int | None = None, checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None, threads: int | None = None, pause_at: int | None = None,
) -> None:
    """Refuse values that a run would otherwise accept silently (and mean nothing) or fail on with a traceback.
    `seed` None: not checked (a sweep checks its --seeds itself)."""
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED
    ):
        raise WmbenchError(f"--seed {seed!r} is out of range: a seed index is an integer from 0 to 2**63-1 "
                           "(e.g. --seed 0)")
    if not str(root).strip():
        raise WmbenchError(f"--root {str(root)!r} is empty; pass the directory that holds run directories, e.g. "
                           "--root runs")
    if not _DEVICE_RE.fullmatch(str(device)):
        raise WmbenchError(f"--device {device!r} is not a device wmbench runs on; use cpu, cuda, cuda:N or mps")
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise WmbenchError(f"--steps must be between 1 and 2**53 agent steps, got {steps}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise WmbenchError(f"--checkpoint-every must be at least 1 agent step, got {checkpoint_every}; omit it for "
                           "the default (10% of the budget)")
    if checkpoint_minutes is not None and not (math.isfinite(checkpoint_minutes) and checkpoint_minutes > 0):
        raise WmbenchError(f"--checkpoint-minutes must be a positive number of minutes, got {checkpoint_minutes}; "
                           f"omit it for the default ({DEFAULT_CHECKPOINT_MINUTES:g})")
    if threads is not None and threads < 1:
        raise WmbenchError(f"--threads must be at least 1, got {threads}; omit it to let torch choose")
    if pause_at is not None and not 1 <= pause_at <= MAX_STEPS:
        raise WmbenchError(f"--pause-at must be an agent step from 1 to 2**53, got {pause_at}; omit it to run to "
                           "the budget")


def note_protocol_version(text: str, protocol: Protocol) -> None:
    """Say which version an unversioned protocol name resolved to (a newer version may change what scores mean)."""
    if "@" not in str(text) and not str(text).endswith(".toml") and os.sep not in str(text):
        print(f"note: protocol {text!r} resolved to {protocol.id}, its latest version; name {protocol.id} to pin it",
              file=sys.stderr)


def _unusable_dir(run_dir: Path, root: Path | str, e: OSError) -> RunDirError:
    """The error for a run directory that cannot be created or written (root a file, read-only, not creatable)."""
    blocker = next((p for p in [run_dir, *run_dir.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        why = f"{blocker} is a file, not a directory; move it away or pass another --root"
    else:
        why = f"{e.strerror or e}; pass a writable directory as --root (e.g. --root runs)"
    return RunDirError(f"cannot use the run directory {run_dir} under --root {str(root)!r}: {why}")


def _remove_leftovers(run_dir: Path) -> None:
    """Temp files of atomic writes cut short by a kill (`.run.json.tmp-<pid>-...`): ours are never left behind."""
    for p in run_dir.glob(".*.tmp-*"):
        if p.name.partition(".tmp-")[2].split("-")[0] != str(os.getpid()):
            with contextlib.suppress(OSError):
                p.unlink()


def _record_failure(run_dir: Path, record: Mapping[str, Any], trace: str) -> None:
    """Write status `failed` even on a full disk: a new file may not fit, the old run.json's blocks do."""
    with contextlib.suppress(OSError):
        atomic_write_text(run_dir / "error.txt", trace)
    try:
        atomic_write_json(run_dir / "run.json", record)
    except OSError as e:
        try:
            with open(run_dir / "run.json", "r+b") as f:
                f.write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            print(f"warning: could not record the failure in {run_dir / 'run.json'} ({e}); it may still say "
                  "'running'", file=sys.stderr)


def _earlier_work(run_dir: Path, info: Mapping[str, Any] | None) -> str | None:
    """What shows that an earlier attempt got past its first checkpoint (or, without run.json, ran at all)."""
    if info is not None:
        step = info.get("checkpoint_step", info.get("agent_steps"))
        return f"run.json records a checkpoint at agent step {step}" if step else None
    scores = run_dir / "scores.csv"
    if (scores.exists() and scores.read_bytes().count(b"\n") > 1) or any((run_dir / "replay").glob("chunk_*")):
        return "scores.csv or replay/ of an earlier attempt, and no run.json"
    return None


def _log_prefix(path: Path, length: int) -> Any:
    """sha256 of the first `length` bytes of a log (ValueError/FileNotFoundError when it has fewer)."""
    digest = hashlib.sha256()
    if length == 0 and not path.exists():
        return digest
    with open(path, "rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(remaining, 1 << 20))
            if not block:
                raise ValueError(f"{path} has fewer than the {length} bytes its checkpoint covers")
            digest.update(block)
            remaining -= len(block)
    return digest


def _finished(run_dir: Path, info: Mapping[str, Any], progress: bool) -> RunResult:
    problem = finished_problem(run_dir, info)
    if problem:
        raise RunDirError(f"run directory {run_dir} says finished, but {problem}. Restore the file, or delete the "
                          "directory to run it again")
    if progress:
        print(f"{run_dir} finished on {info.get('finished')}; not re-run", file=sys.stderr)
    return RunResult(run_dir, "finished", info.get("final_score"), resumed=False)


# ------------------------------------------------------------------------------------------ run
def run(
    method: str,
    protocol: str | Protocol,
    task: str,
    seed: int,
    root: Path | str = "runs",
    overrides: Sequence[str] = (),
    smoke: bool = False,
    device: str = "cpu",
    steps: int | None = None,
    checkpoint_every: int | None = None,
    progress: bool = True,
    threads: int | None = None,
    checkpoint_minutes: float | None = None,
    restart: bool = False,
    allow_config_change: bool = False,
    recipe: str | None = None,
    video_every: int = 0,
    pause_at: int | None = None,
) -> RunResult:
    """Train `method` on `task` of `protocol` for the protocol's budget (or `steps`), resuming if interrupted.

    `restart`: start over from agent step 0 in a directory whose checkpoints are gone (or discard them).
    `allow_config_change`: resume with config settings that differ from the recorded ones (run.json records the
    change and the agent step it applies from); protocol, method, task, seed, smoke and budget never change.
    `recipe` (see wmbench.recipes) is applied before `overrides`; run.json records it under `recipe`.
    `video_every` N > 0: every N-th training episode of a pixel protocol is saved as `videos/train_<episode>.gif`
    (derived output: it changes nothing the run computes).
    `pause_at` N: stop at the first training episode end at or after agent step N, with a checkpoint there; the
    result's status and run.json's are "paused", and the same call without `pause_at` (or with a later one) goes
    on as if it had never stopped (a checkpoint changes nothing the run computes). Long runs in slices: e.g. every
    seed to 20k env steps first, compared there with `reproduce --at-step`, then on to the budget.
    """
    from wmbench.envs import check_installed, make_env
    from wmbench.method import get_method
    from wmbench.recipes import resolve_config

    check_run_args(seed, root, device, steps, checkpoint_every, checkpoint_minutes, threads, pause_at)
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    video.check_request(video_every, proto)
    proto = proto.for_task(task)  # the task's action repeat and agent-step budgets (itself without per-task repeats)
    check_installed(proto.suite)  # before anything is created on disk
    cls = get_method(method)
    reason = cls.supports_protocol(proto)
    if reason is not None:
        from wmbench.method import MethodError

        raise MethodError(f"method {method!r} cannot run {proto.id}: {reason}")
    config, recipe_record = resolve_config(cls, proto, overrides, recipe)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WmbenchError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    budget = int(steps) if steps is not None else proto.budget_steps(smoke)
    if pause_at is not None and pause_at >= budget:
        raise WmbenchError(f"--pause-at {pause_at} is not before the run's budget of {budget} agent steps: the run "
                           "would finish first; omit --pause-at, or give an earlier agent step")
    unit = proto.budget.step_unit
    run_seed = derive_seed(proto.id, task, seed)
    run_dir = run_dir_for(root, proto, task, method, seed, smoke)
    identity = run_identity(method, proto, task, seed, config, smoke, budget, recipe_record)

    info_path = run_dir / "run.json"
    info: dict[str, Any] | None = None
    if info_path.exists():
        info = read_run_json(info_path)
        finished = info.get("status") == "finished"
        _check_same_run(info, identity, run_dir, allow_config_change=allow_config_change and not finished)
        if finished:
            return _finished(run_dir, info, progress)

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)
        lock.acquire()
    except OSError as e:
        if isinstance(e, WmbenchError):
            raise
        raise _unusable_dir(run_dir, root, e) from None
    try:
        with _sigterm_as_exception():
            _remove_leftovers(run_dir)
            if info_path.exists():  # re-read under the lock: another process may have finished it meanwhile
                info = read_run_json(info_path)
                finished = info.get("status") == "finished"
                _check_same_run(info, identity, run_dir, allow_config_change=allow_config_change and not finished)
                if finished:
                    return _finished(run_dir, info, progress=False)
            return _run_locked(
                cls, config, proto, task, seed, run_seed, run_dir, identity, info, budget, unit, smoke, device,
                checkpoint_every, progress, threads, make_env,
                checkpoint_minutes if checkpoint_minutes is not None else DEFAULT_CHECKPOINT_MINUTES,
                restart, allow_config_change, video_every, pause_at,
            )
    finally:
        lock.release()


def _run_locked(
    cls, config, proto, task, seed, run_seed, run_dir, identity, info, budget, unit, smoke, device,
    checkpoint_every, progress, threads, make_env, checkpoint_minutes, restart, allow_config_change, video_every=0,
    pause_at=None,
) -> RunResult:
    try:
        checkpoint, checkpoint_dir = _find_checkpoint(run_dir)
    except CheckpointError:
        if not restart:
            raise
        checkpoint, checkpoint_dir = None, None  # unusable anyway; discarded below
    damaged = run_dir / "checkpoint"
    if checkpoint_dir is not None and checkpoint_dir.name == "checkpoint.prev" and damaged.exists():
        aside = run_dir / f"checkpoint.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(damaged, aside)
        print(f"warning: {damaged} was unusable (kept as {aside}); resuming from {checkpoint_dir}", file=sys.stderr)

    previous_config = (info or {}).get("config")
    if checkpoint is not None:
        recorded = checkpoint.get("identity")
        if isinstance(recorded, dict):
            _check_same_run(recorded, identity, run_dir, where=f"{checkpoint_dir.name}/state.pt",
                            allow_config_change=allow_config_change)
            previous_config = recorded.get("config")
        elif info is None and not restart:
            raise CheckpointError(
                f"{checkpoint_dir} records no run identity (an older wmbench wrote it) and {run_dir / 'run.json'} is "
                "missing: nothing says which run it belongs to. Restore run.json, or start over with --restart"
            )
    if restart:  # only now: a checkpoint of another run is refused above, never discarded
        for name in ("checkpoint", "checkpoint.prev"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
        checkpoint = checkpoint_dir = None
    if checkpoint is None:
        earlier = _earlier_work(run_dir, info)
        if earlier and not restart:
            raise RunDirError(
                f"{run_dir} holds an earlier attempt ({earlier}) but no checkpoint to resume it from (checkpoint/ and "
                "checkpoint.prev/ are missing). Starting over rewrites its logs and replay from agent step 0: pass "
                "--restart to do that, or restore the checkpoint"
            )
        if progress and (earlier or info is not None):
            why = "--restart" if restart else "no checkpoint was written by the earlier attempt"
            print(f"note: {run_dir} starts over from agent step 0 ({why}); its earlier logs and replay are rewritten",
                  file=sys.stderr)

    if threads:
        torch.set_num_threads(int(threads))
    seed_everything(run_seed)
    env = make_env(proto, task, run_seed)
    eval_env = make_env(proto, task, derive_seed(run_seed, "eval"), mode="eval") if proto.eval.episodes > 0 else None
    agent = cls(env.obs_space, env.act_space, config, device, run_seed)
    if hasattr(agent, "set_env_factory"):  # fresh envs for the method's own episodes (Method.set_env_factory)
        from wmbench.envs import EnvFactory

        agent.set_env_factory(EnvFactory(proto, task))
    replay = Replay(
        int(getattr(config, "replay_bytes", DEFAULT_REPLAY_BYTES)),
        run_dir / "replay",
        int(getattr(config, "replay_chunk", DEFAULT_REPLAY_CHUNK)),
        seed=derive_seed(run_seed, "replay"),
    )

    # Default: ~10% of the budget, or every `checkpoint_minutes` of wall time if that comes first; taken at the next
    # episode end, so at least one episode apart.
    every = int(checkpoint_every) if checkpoint_every else max(1, budget // 10)
    log_every = max(1, min(1000, budget // 50))
    eval_every = int(proto.from_unit(proto.eval.every, unit)) if proto.eval.every and unit != "episodes" else 0
    counters = {
        "step": 0, "train_episodes": 0, "eval_episodes": 0, "last_eval_step": -1,
        "next_eval": eval_every if eval_every else budget + 1, "next_log": log_every, "wall_s": 0.0,
        "last_return": None,
    }
    achievements_rule = proto.score.rule in ("success_geomean", "success_rate")
    # Protocol stages over this run's budget; the method is told the stage of every training step (set_stage).
    stages = proto.stage_schedule(budget)
    current_stage: list[int] = [-1]
    metric_sums: dict[str, list[float]] = {}
    log_hashes: dict[str, list[Any]] = {}  # name -> [sha256 of the covered prefix, its length]
    resumed = checkpoint is not None
    saved_step: list[int | None] = [None]  # agent step of the newest checkpoint on disk
    try:
        if checkpoint is not None:
            # Logs are checked first: replay loading discards the chunks written after the checkpoint, and a refused
            # resume must leave the directory as it was.
            recorded_hashes = checkpoint.get("logs_sha256") or {}
            for name in LOGS:
                length = int(checkpoint["logs"][name])
                try:
                    digest = _log_prefix(run_dir / name, length)
                except (OSError, ValueError) as e:
                    raise CheckpointError(
                        f"{checkpoint_dir} covers {name} but {e}; restore the file, or start over with --restart"
                    ) from e
                if name in recorded_hashes and digest.hexdigest() != recorded_hashes[name]:
                    raise CheckpointError(
                        f"{run_dir / name} does not match {checkpoint_dir}: its first {length} bytes had sha256 "
                        f"{recorded_hashes[name][:12]}... when the checkpoint was written and {digest.hexdigest()[:12]}"
                        "... now, so it was changed afterwards. Restore the file, or start over with --restart"
                    )
                log_hashes[name] = [digest, length]
            try:
                agent.load_state_dict(checkpoint["method"])
                replay.load_state_dict(checkpoint["replay"])
            except ReplayError as e:
                raise CheckpointError(f"{checkpoint_dir}: {e}") from e
            for name in LOGS:
                truncate(run_dir / name, log_hashes[name][1])
            counters.update(checkpoint["counters"])
            metric_sums = {k: [float(s), float(n)] for k, (s, n) in checkpoint["metric_sums"].items()}
            env.episode = int(checkpoint["env_episode"])
            if eval_env is not None:
                eval_env.episode = int(checkpoint["eval_env_episode"])
            set_rng_state(checkpoint["rng"])
            saved_step[0] = int(checkpoint["step"])
            if progress:
                print(f"resuming {run_dir} from {checkpoint_dir} at agent step {counters['step']}", file=sys.stderr)
            recorded_threads = (info or {}).get("threads")
            if recorded_threads and recorded_threads != torch.get_num_threads():
                print(
                    f"warning: this run used {recorded_threads} torch threads before and {torch.get_num_threads()} "
                    f"now; results may differ in the last bits from an uninterrupted run (pass --threads "
                    f"{recorded_threads})",
                    file=sys.stderr,
                )
        else:
            replay.discard_chunks_after(0)
            atomic_write_text(run_dir / "scores.csv", ACHIEVEMENTS_HEADER if achievements_rule else SCORES_HEADER)
            atomic_write_text(run_dir / "metrics.jsonl", "")
            atomic_write_text(run_dir / "timing.csv", TIMING_HEADER)
            log_hashes = {name: [hashlib.sha256(), 0] for name in LOGS}
    except BaseException:
        env.close()
        if eval_env is not None:
            eval_env.close()
        raise

    record = dict(info or {})
    record.pop("paused_at", None)  # set again only if this process pauses
    record.update(identity)
    changes = _config_changes(previous_config, identity["config"]) if resumed and previous_config else {}
    if changes:
        record["config_changes"] = [
            *(info or {}).get("config_changes", []),
            {"from_agent_step": counters["step"], "changes": changes, "time": _now()},
        ]
        print(f"note: {run_dir} continues from agent step {counters['step']} with changed config "
              f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changes.items())}); recorded in run.json's "
              "config_changes", file=sys.stderr)
    record.update(
        {
            "run_seed": run_seed,
            "step_unit": unit,
            "device": device,
            "threads": torch.get_num_threads(),
            "steps_override": budget != proto.budget_steps(smoke),
            "replay_bytes": replay.capacity_bytes,
            "checkpoint_every": every,
            "checkpoint_minutes": checkpoint_minutes,
            "video_every": video_every,
            "checkpoint_step": saved_step[0],
            **({"stages": [dataclasses.asdict(x) for x in stages]} if stages else {}),
            "status": "running",
            "error": None,
            "interrupted": False,
            "started": (info or {}).get("started") or _now(),
            "updated": _now(),
            "finished": None,
            "agent_steps": counters["step"],
            "resumes": int((info or {}).get("resumes", -1)) + 1,
            "versions": _versions(),
            "git_sha": _git_sha(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
    )

    label = f"{identity['method']} {proto.id} {task} seed {seed}"
    show = _Progress(label, budget, progress)
    note = expectations.gpu_scale_note(identity["method"], config, budget - counters["step"], device)
    if note and progress:
        print(note, file=sys.stderr, flush=True)
    if counters["step"] and tracking.available():
        # Events are derived data: rebuilt from the resumed logs, then appended to; they never stop a run.
        try:
            tracking.export_run(run_dir)
        except (WmbenchError, OSError) as e:
            print(f"note: TensorBoard events not rebuilt on resume ({e}); `wmbench plot {run_dir} --tensorboard` "
                  "rebuilds them", file=sys.stderr)
    tb = tracking.open_writer(run_dir)
    t_start = time.monotonic()
    wall0 = float(counters["wall_s"])
    timing_mark = [t_start, counters["step"]]
    last_save = [t_start]

    def wall() -> float:
        return wall0 + time.monotonic() - t_start

    def env_step_of(step: int) -> int | float:
        if unit == "episodes":
            return counters["train_episodes"]
        return proto.to_unit(step, unit)

    def score_row(step: int, episode: int, score: float, length: int, phase: str, ended: Any) -> None:
        row = f"{_fmt(env_step_of(step))},{unit},{episode},{_fmt(score)},{length},{phase}"
        if achievements_rule:
            row += "," + _achievements_field(ended.episode_info, proto, phase, episode)
        append_text(run_dir / "scores.csv", row + "\n")
        if tb is not None:
            tb.episode(env_step_of(step), score, phase)

    def log(step: int) -> None:
        if metric_sums:
            row = {"step": step, "env_step": env_step_of(step)}
            row.update({k: s / n for k, (s, n) in sorted(metric_sums.items())})
            append_text(run_dir / "metrics.jsonl", json.dumps(row) + "\n")
            if tb is not None:
                tb.metrics(step, row)
            metric_sums.clear()
        now = time.monotonic()
        rate = (step - timing_mark[1]) / max(now - timing_mark[0], 1e-9)
        timing_mark[:] = [now, step]
        append_text(run_dir / "timing.csv", f"{_fmt(env_step_of(step))},{wall():.3f},{rate:.2f}\n")

    def evaluate(step: int) -> None:
        assert eval_env is not None
        returns = []
        for _ in range(proto.eval.episodes):
            obs, state, ret, length = eval_env.reset(), None, 0.0, 0
            while True:
                action, state = agent.policy(_batch(obs), state, "eval")
                if obs["is_last"]:
                    if eval_env.episode_info.get("score_continues"):
                        obs, state = eval_env.reset(), None  # a lost life: the game and its score go on
                        continue
                    break
                obs = eval_env.step(np.asarray(action)[0])
                ret += float(obs["reward"])
                length += 1
            counters["eval_episodes"] += 1
            score_row(step, counters["eval_episodes"], ret, length, "eval", eval_env)
            returns.append(ret)
        counters["last_eval_step"] = step
        if returns:
            show.last_eval = float(np.mean(returns))

    def enter_stage(step: int) -> None:
        """Tell the method the stage of training step `step` when it differs from the one it was last told (first
        call of this process included: after a resume the method hears its stage again)."""
        if not stages:
            return
        index = next((i for i, x in enumerate(stages) if step < x.end), len(stages) - 1)
        if index != current_stage[0]:
            current_stage[0] = index
            agent.set_stage(stages[index])

    def hash_logs() -> tuple[dict[str, int], dict[str, str]]:
        """Lengths of the (fsynced) logs and the sha256 of each: only the bytes appended since the last call are read."""
        lengths = {name: fsync_file(run_dir / name) for name in LOGS}
        for name, length in lengths.items():
            digest, done = log_hashes[name]
            with open(run_dir / name, "rb") as f:
                f.seek(done)
                digest.update(f.read(length - done))
            log_hashes[name][1] = length
        return lengths, {name: log_hashes[name][0].hexdigest() for name in LOGS}

    verified: list[bool] = []

    def save(final: bool) -> None:
        counters["wall_s"] = wall()
        lengths, digests = hash_logs()
        state = {
            "format": CHECKPOINT_FORMAT,
            "identity": identity,
            "final": final,
            "step": counters["step"],
            "counters": dict(counters),
            "metric_sums": {k: list(v) for k, v in metric_sums.items()},
            "env_episode": env.episode,
            "eval_env_episode": eval_env.episode if eval_env is not None else 0,
            "method": agent.state_dict(),
            "replay": replay.state_dict(),
            "rng": rng_state(),
            "logs": lengths,
            "logs_sha256": digests,
        }
        save_checkpoint(run_dir, state)
        saved_step[0] = counters["step"]
        last_save[0] = time.monotonic()
        if not verified:  # once per process: fail early if the state cannot be loaded back safely
            load_checkpoint(run_dir / "checkpoint")
            verified.append(True)
        record.update({"agent_steps": counters["step"], "checkpoint_step": counters["step"], "updated": _now()})
        atomic_write_json(run_dir / "run.json", record)

    def resume_note() -> str:
        if saved_step[0] is None:
            return (f"nothing was saved yet (checkpoints come every {every} agent steps or {checkpoint_minutes:g} "
                    "minutes, at an episode end): running the same command starts this run over from agent step 0")
        return (f"saved: the checkpoint at agent step {saved_step[0]} ({run_dir / 'checkpoint'}); running the same "
                f"command resumes from agent step {saved_step[0]}")

    try:
        atomic_write_json(run_dir / "run.json", record)
        # Paused (pause_at): at a training episode end at or after that agent step; a resumed run already there
        # pauses again at once.
        final = checkpoint is not None and bool(checkpoint.get("final"))
        paused = pause_at is not None and resumed and counters["step"] >= pause_at and not final
        if not paused and not final:
            step = counters["step"]
            next_checkpoint = (step // every + 1) * every
            obs, state = env.reset(), None
            ret, length = 0.0, 0
            recorder = video.Recorder(run_dir, video_every)
            recorder.start(counters["train_episodes"] + 1)
            while True:
                enter_stage(step)
                action, state = agent.policy(_batch(obs), state, "train")
                action = np.asarray(action)[0]
                replay.add({**obs, "action": action})
                recorder.frame(obs)
                if obs["is_last"] and env.episode_info.get("score_continues"):
                    # The episode ended, the scored game goes on (Atari `episodic_lives`: a lost life; docs/contracts.md):
                    # no score row, no evaluation, no checkpoint until the game ends (a resume restarts at a game).
                    if step >= budget:
                        break
                    obs, state = env.reset(), None
                    continue
                if obs["is_last"]:
                    counters["train_episodes"] += 1
                    counters["last_return"] = ret
                    score_row(step, counters["train_episodes"], ret, length, "train", env)
                    recorder.finish()
                    if eval_env is not None and step >= counters["next_eval"]:
                        evaluate(step)
                        while counters["next_eval"] <= step:
                            counters["next_eval"] += eval_every
                    if step >= budget:
                        break
                    if pause_at is not None and step >= pause_at:
                        paused = True
                        break
                    if step >= next_checkpoint or time.monotonic() - last_save[0] >= 60 * checkpoint_minutes:
                        save(final=False)
                        next_checkpoint = (step // every + 1) * every
                    obs, state, ret, length = env.reset(), None, 0.0, 0
                    recorder.start(counters["train_episodes"] + 1)
                    continue
                if step >= budget:
                    break  # the budget ends mid-episode: that episode is not scored
                obs = env.step(action)
                step += 1
                counters["step"] = step
                ret += float(obs["reward"])
                length += 1
                for k, v in agent.update(replay, step).items():
                    acc = metric_sums.setdefault(k, [0.0, 0.0])
                    acc[0] += float(v)
                    acc[1] += 1.0
                if step >= counters["next_log"]:
                    log(step)
                    counters["next_log"] += log_every
                show(step, counters["last_return"])
            if paused:  # at an episode end the loop reached after this process started: not saved yet
                save(final=False)
            else:
                if eval_env is not None and counters["last_eval_step"] != step:
                    evaluate(step)  # the protocol's evaluation at the budget
                if metric_sums or step != counters["next_log"] - log_every:
                    log(step)
                save(final=True)
        show(counters["step"], counters["last_return"], force=True)
        if paused:
            step = counters["step"]
            # agent_steps and checkpoint_step are the checkpoint's already (save(), or the resumed one's)
            record.update({"status": "paused", "paused_at": step, "updated": _now(), "wall_s": round(wall(), 3)})
            atomic_write_json(run_dir / "run.json", record)
            if progress:
                print(f"paused at agent step {step} ({_fmt(env_step_of(step))} {unit}), the first episode end at or "
                      f"after --pause-at {pause_at}; checkpoint {run_dir / 'checkpoint'}. Run the same command "
                      "without --pause-at (or with a later one) to go on", file=sys.stderr)
            return RunResult(run_dir, "paused", None, resumed)
        score, score_error = _final_score(run_dir, _run_protocol(proto, smoke, budget))
        if score_error:
            raise RunDirError(
                f"{run_dir} completed its {budget} agent steps, but its final score cannot be computed "
                f"({score_error}), so the run is not finished. Check its scores.csv against the protocol's score "
                "rule; run the same command again once fixed, or start over with --restart"
            )
        record.update(
            {"status": "finished", "finished": _now(), "updated": _now(), "final_score": score,
             "agent_steps": counters["step"], "wall_s": round(wall(), 3), "logs_sha256": _logs_sha256(run_dir)}
        )
        atomic_write_json(run_dir / "run.json", record)
        return RunResult(run_dir, "finished", score, resumed)
    except BaseException as e:
        interrupted = isinstance(e, (KeyboardInterrupt, Terminated))
        message = f"{type(e).__name__}: {e}"
        if interrupted:
            how = "terminated by SIGTERM" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
            message = f"{how} at agent step {counters['step']}; {resume_note()}"
        record.update({"status": "failed", "error": message, "interrupted": interrupted, "updated": _now()})
        _record_failure(run_dir, record, traceback.format_exc())
        if isinstance(e, Terminated):
            raise Terminated(message) from None
        if isinstance(e, KeyboardInterrupt):
            print(message, file=sys.stderr)
        raise
    finally:
        replay.close()  # no chunk file lands in the run directory after run() has returned or raised
        env.close()
        if eval_env is not None:
            eval_env.close()
        if tb is not None:
            tb.close()


# ------------------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wmbench run",
        description="Train and evaluate METHOD on one task of PROTOCOL. Re-running the same command resumes an "
        "interrupted run from its checkpoint; a finished run is never re-run.",
    )
    p.add_argument("method", help="method name (wmbench list methods)")
    p.add_argument("protocol", help="protocol, e.g. atari100k@1 (wmbench list protocols)")
    p.add_argument("--task", required=True, help="task of the protocol, e.g. pong")
    p.add_argument("--seed", type=int, required=True, help="seed index 0 ... 2**63-1 (the run seed is derived from it)")
    p.add_argument("--smoke", action="store_true", help="the protocol's tiny smoke budget (tests, demos); smoke runs "
                   "live in <method>/smoke/seed_<n>/, apart from full runs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set preset=size12m --set batch_size=16)")
    p.add_argument("--recipe", default=None, metavar="NAME", help="a recipe of the method (wmbench list methods), "
                   "applied before --set; recorded in run.json")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--root", default="runs", help="root of run directories (default ./runs)")
    p.add_argument("--steps", type=int, default=None, help="agent-step budget instead of the protocol's (recorded)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="agent steps between checkpoints "
                   "(default 10%% of the budget; taken at the next episode end)")
    p.add_argument("--checkpoint-minutes", type=float, default=None, help="also checkpoint after this much wall "
                   f"time (default {DEFAULT_CHECKPOINT_MINUTES:g}; at the next episode end; recorded)")
    p.add_argument("--video-every", type=int, default=0, metavar="N",
                   help="save every N-th training episode of a pixel protocol as videos/train_<episode>.gif (needs "
                   "imageio: pip install 'wmbench[video]'); 0: none (default)")
    p.add_argument("--restart", action="store_true", help="start this run over from agent step 0, discarding its "
                   "checkpoints, logs and replay (when its checkpoints are missing or its files fail their checks)")
    p.add_argument("--allow-config-change", action="store_true", help="resume with --set values that differ from "
                   "the recorded config (e.g. a lower learning rate after a non-finite loss); recorded in run.json")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (at least 1)")
    p.add_argument("--pause-at", type=int, default=None, metavar="STEP", help="stop at the first training episode "
                   "end at or after this agent step, with a checkpoint (run.json status 'paused'); the same command "
                   "without it continues exactly. E.g. take every seed to an early step first")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    return p


def cli_run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    check_run_args(args.seed, args.root, args.device, args.steps, args.checkpoint_every, args.checkpoint_minutes,
                   args.threads, args.pause_at)
    proto = load_protocol(args.protocol)
    note_protocol_version(args.protocol, proto)
    result = run(
        args.method, proto, args.task, args.seed, root=args.root, overrides=args.overrides,
        smoke=args.smoke, device=args.device, steps=args.steps, checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress, threads=args.threads, checkpoint_minutes=args.checkpoint_minutes,
        video_every=args.video_every, pause_at=args.pause_at,
        restart=args.restart, allow_config_change=args.allow_config_change, recipe=args.recipe,
    )
    print(f"run directory: {result.run_dir}")
    if result.status == "paused":
        print("status: paused (no final score yet)")
    else:
        print(f"final score: {'n/a' if result.final_score is None else f'{result.final_score:.6g}'}")
    return 0
