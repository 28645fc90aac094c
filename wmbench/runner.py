"""The run loop: one method on one task of a protocol, with scores, metrics, checkpoints and exact resume.

`run(...)` owns a run directory `<root>/<name>@<version>/<task>/<method>/seed_<n>/` (docs/contracts.md):

  run.json       what ran (method, resolved config, protocol id + hash, seeds, budget, versions, status, times)
  scores.csv     one row per finished episode: env_step, step_unit, episode, score, length, phase (train/eval)
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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
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

from wmbench.config import to_dict
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


def run_dir_for(root: Path | str, protocol: Protocol | str, task: str, method: str, seed: int) -> Path:
    proto_id = protocol.id if isinstance(protocol, Protocol) else str(protocol)
    return Path(root) / proto_id / task / method / f"seed_{int(seed)}"


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


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _check_same_run(info: Mapping[str, Any], want: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse to continue a run directory made with other settings (protocol version/hash, method, config...)."""
    diffs = []
    for key in ("protocol", "protocol_hash", "method", "task", "seed", "smoke", "budget_agent_steps"):
        if info.get(key) != want[key]:
            diffs.append(f"{key}: directory has {info.get(key)!r}, requested {want[key]!r}")
    old, new = _flatten(info.get("config", {})), _flatten(want["config"])
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"config.{key}: directory has {old.get(key)!r}, requested {new.get(key)!r}")
    if diffs:
        raise RunDirError(
            f"run directory {run_dir} holds a different run ({'; '.join(diffs[:6])}"
            f"{'; ...' if len(diffs) > 6 else ''}). A run directory is never reused for other settings: pass a new "
            "--root (e.g. --root runs_new) to keep both, or delete the directory to start over."
        )


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
    """A progress line on stderr at most every `interval` seconds: steps/s, ETA, last return."""

    def __init__(self, label: str, total: int, enabled: bool, interval: float = 5.0):
        self.label, self.total, self.enabled, self.interval = label, total, enabled, interval
        self.t0 = self.last = time.monotonic()
        self.step0: int | None = None

    def __call__(self, step: int, last_return: float | None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.step0 is None:
            self.step0 = step
        if not force and now - self.last < self.interval:
            return
        self.last = now
        rate = (step - self.step0) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        eta_s = "?" if not math.isfinite(eta) else str(_dt.timedelta(seconds=int(eta)))
        ret = "-" if last_return is None else f"{last_return:.4g}"
        print(
            f"{self.label}: {step}/{self.total} agent steps ({100 * step / self.total:.0f}%), "
            f"{rate:.1f} steps/s, ETA {eta_s}, last return {ret}",
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


def _final_score(run_dir: Path, protocol: Protocol) -> tuple[float | None, str | None]:
    """The protocol's final score via the one implementation (wmbench.results.final_score)."""
    try:
        import pandas as pd

        from wmbench.results import final_score
    except ImportError as e:
        return None, f"wmbench.results is not available ({e})"
    try:
        episodes = pd.read_csv(run_dir / "scores.csv")
        value = float(final_score(episodes, protocol))
    except Exception as e:  # the run itself finished; a scoring problem must not discard it
        return None, f"{type(e).__name__}: {e}"
    return (None if math.isnan(value) else value), None


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
    recipe: str | None = None,
) -> RunResult:
    """Train `method` on `task` of `protocol` for the protocol's budget (or `steps`), resuming if interrupted.
    `recipe` (see wmbench.recipes) is applied before `overrides`; run.json records it under `recipe`."""
    from wmbench.envs import check_installed, make_env
    from wmbench.method import get_method
    from wmbench.recipes import resolve_config

    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    proto.check_task(task)
    check_installed(proto.suite)  # before anything is created on disk
    cls = get_method(method)
    config, recipe_record = resolve_config(cls, proto, overrides, recipe)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WmbenchError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    if steps is not None and steps <= 0:
        raise WmbenchError(f"--steps must be positive, got {steps}")
    budget = int(steps) if steps is not None else proto.budget_steps(smoke)
    unit = proto.budget.step_unit
    run_seed = derive_seed(proto.id, task, seed)
    run_dir = run_dir_for(root, proto, task, method, seed)
    identity = {
        "method": method,
        "protocol": proto.id,
        "protocol_hash": proto.hash,
        "task": task,
        "seed": int(seed),
        "smoke": bool(smoke),
        "budget_agent_steps": budget,
        "config": to_dict(config),
    }
    if recipe_record is not None:
        identity["recipe"] = recipe_record

    info_path = run_dir / "run.json"
    info: dict[str, Any] | None = None
    if info_path.exists():
        try:
            info = read_json(info_path)
        except (json.JSONDecodeError, OSError) as e:
            raise RunDirError(f"{info_path} is unreadable ({e}); move the directory aside or use a new --root") from e
        _check_same_run(info, identity, run_dir)
        if info.get("status") == "finished":
            if progress:
                print(f"{run_dir} finished on {info.get('finished')}; not re-run", file=sys.stderr)
            return RunResult(run_dir, "finished", info.get("final_score"), resumed=False)

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        with _sigterm_as_exception():
            if info_path.exists():  # re-read under the lock: another process may have finished it meanwhile
                info = read_json(info_path)
                _check_same_run(info, identity, run_dir)
                if info.get("status") == "finished":
                    return RunResult(run_dir, "finished", info.get("final_score"), resumed=False)
            return _run_locked(
                cls, config, proto, task, seed, run_seed, run_dir, identity, info, budget, unit, smoke, device,
                checkpoint_every, progress, threads, make_env,
            )
    finally:
        lock.release()


def _run_locked(
    cls, config, proto, task, seed, run_seed, run_dir, identity, info, budget, unit, smoke, device,
    checkpoint_every, progress, threads, make_env,
) -> RunResult:
    checkpoint, checkpoint_dir = _find_checkpoint(run_dir)
    damaged = run_dir / "checkpoint"
    if checkpoint_dir is not None and checkpoint_dir.name == "checkpoint.prev" and damaged.exists():
        aside = run_dir / f"checkpoint.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(damaged, aside)
        print(f"warning: {damaged} was unusable (kept as {aside}); resuming from {checkpoint_dir}", file=sys.stderr)

    if threads:
        torch.set_num_threads(int(threads))
    seed_everything(run_seed)
    env = make_env(proto, task, run_seed)
    eval_env = make_env(proto, task, derive_seed(run_seed, "eval")) if proto.eval.episodes > 0 else None
    agent = cls(env.obs_space, env.act_space, config, device, run_seed)
    replay = Replay(
        int(getattr(config, "replay_bytes", DEFAULT_REPLAY_BYTES)),
        run_dir / "replay",
        int(getattr(config, "replay_chunk", DEFAULT_REPLAY_CHUNK)),
        seed=derive_seed(run_seed, "replay"),
    )

    # Default: ~10% of the budget; taken at the next episode end, so at least one episode apart.
    every = int(checkpoint_every) if checkpoint_every else max(1, budget // 10)
    log_every = max(1, min(1000, budget // 50))
    eval_every = int(proto.from_unit(proto.eval.every, unit)) if proto.eval.every and unit != "episodes" else 0
    counters = {
        "step": 0, "train_episodes": 0, "eval_episodes": 0, "last_eval_step": -1,
        "next_eval": eval_every if eval_every else budget + 1, "next_log": log_every, "wall_s": 0.0,
        "last_return": None,
    }
    metric_sums: dict[str, list[float]] = {}
    resumed = checkpoint is not None
    if checkpoint is not None:
        try:
            agent.load_state_dict(checkpoint["method"])
            replay.load_state_dict(checkpoint["replay"])
        except ReplayError as e:
            raise CheckpointError(f"{checkpoint_dir}: {e}") from e
        counters.update(checkpoint["counters"])
        metric_sums = {k: [float(s), float(n)] for k, (s, n) in checkpoint["metric_sums"].items()}
        env.episode = int(checkpoint["env_episode"])
        if eval_env is not None:
            eval_env.episode = int(checkpoint["eval_env_episode"])
        for name in LOGS:
            try:
                truncate(run_dir / name, int(checkpoint["logs"][name]))
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{checkpoint_dir} covers {name} but {e}; restore the file or use a new --root") from e
        set_rng_state(checkpoint["rng"])
        if progress:
            print(f"resuming {run_dir} from {checkpoint_dir} at agent step {counters['step']}", file=sys.stderr)
        recorded = (info or {}).get("threads")
        if recorded and recorded != torch.get_num_threads():
            print(
                f"warning: this run used {recorded} torch threads before and {torch.get_num_threads()} now; "
                f"results may differ in the last bits from an uninterrupted run (pass --threads {recorded})",
                file=sys.stderr,
            )
    else:
        replay.discard_chunks_after(0)
        atomic_write_text(run_dir / "scores.csv", SCORES_HEADER)
        atomic_write_text(run_dir / "metrics.jsonl", "")
        atomic_write_text(run_dir / "timing.csv", TIMING_HEADER)

    record = dict(info or {})
    record.update(identity)
    record.update(
        {
            "run_seed": run_seed,
            "step_unit": unit,
            "device": device,
            "threads": torch.get_num_threads(),
            "steps_override": budget != proto.budget_steps(smoke),
            "replay_bytes": replay.capacity_bytes,
            "status": "running",
            "error": None,
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
    atomic_write_json(run_dir / "run.json", record)

    label = f"{identity['method']} {proto.id} {task} seed {seed}"
    show = _Progress(label, budget, progress)
    t_start = time.monotonic()
    wall0 = float(counters["wall_s"])
    timing_mark = [t_start, counters["step"]]

    def wall() -> float:
        return wall0 + time.monotonic() - t_start

    def env_step_of(step: int) -> int | float:
        if unit == "episodes":
            return counters["train_episodes"]
        return proto.to_unit(step, unit)

    def score_row(step: int, episode: int, score: float, length: int, phase: str) -> None:
        append_text(
            run_dir / "scores.csv", f"{_fmt(env_step_of(step))},{unit},{episode},{_fmt(score)},{length},{phase}\n"
        )

    def log(step: int) -> None:
        if metric_sums:
            row = {"step": step, "env_step": env_step_of(step)}
            row.update({k: s / n for k, (s, n) in sorted(metric_sums.items())})
            append_text(run_dir / "metrics.jsonl", json.dumps(row) + "\n")
            metric_sums.clear()
        now = time.monotonic()
        rate = (step - timing_mark[1]) / max(now - timing_mark[0], 1e-9)
        timing_mark[:] = [now, step]
        append_text(run_dir / "timing.csv", f"{_fmt(env_step_of(step))},{wall():.3f},{rate:.2f}\n")

    def evaluate(step: int) -> None:
        assert eval_env is not None
        for _ in range(proto.eval.episodes):
            obs, state, ret, length = eval_env.reset(), None, 0.0, 0
            while True:
                action, state = agent.policy(_batch(obs), state, "eval")
                if obs["is_last"]:
                    break
                obs = eval_env.step(np.asarray(action)[0])
                ret += float(obs["reward"])
                length += 1
            counters["eval_episodes"] += 1
            score_row(step, counters["eval_episodes"], ret, length, "eval")
        counters["last_eval_step"] = step

    verified: list[bool] = []

    def save(final: bool) -> None:
        counters["wall_s"] = wall()
        state = {
            "format": CHECKPOINT_FORMAT,
            "final": final,
            "step": counters["step"],
            "counters": dict(counters),
            "metric_sums": {k: list(v) for k, v in metric_sums.items()},
            "env_episode": env.episode,
            "eval_env_episode": eval_env.episode if eval_env is not None else 0,
            "method": agent.state_dict(),
            "replay": replay.state_dict(),
            "rng": rng_state(),
            "logs": {name: fsync_file(run_dir / name) for name in LOGS},
        }
        save_checkpoint(run_dir, state)
        if not verified:  # once per process: fail early if the state cannot be loaded back safely
            load_checkpoint(run_dir / "checkpoint")
            verified.append(True)
        record.update({"agent_steps": counters["step"], "updated": _now()})
        atomic_write_json(run_dir / "run.json", record)

    try:
        if not (checkpoint is not None and checkpoint.get("final")):
            step = counters["step"]
            next_checkpoint = (step // every + 1) * every
            obs, state = env.reset(), None
            ret, length = 0.0, 0
            while True:
                action, state = agent.policy(_batch(obs), state, "train")
                action = np.asarray(action)[0]
                replay.add({**obs, "action": action})
                if obs["is_last"]:
                    counters["train_episodes"] += 1
                    counters["last_return"] = ret
                    score_row(step, counters["train_episodes"], ret, length, "train")
                    if eval_env is not None and step >= counters["next_eval"]:
                        evaluate(step)
                        while counters["next_eval"] <= step:
                            counters["next_eval"] += eval_every
                    if step >= budget:
                        break
                    if step >= next_checkpoint:
                        save(final=False)
                        next_checkpoint = (step // every + 1) * every
                    obs, state, ret, length = env.reset(), None, 0.0, 0
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
            if eval_env is not None and counters["last_eval_step"] != step:
                evaluate(step)  # the protocol's evaluation at the budget
            if metric_sums or step != counters["next_log"] - log_every:
                log(step)
            save(final=True)
        show(counters["step"], counters["last_return"], force=True)
        score, score_error = _final_score(run_dir, _run_protocol(proto, smoke, budget))
        record.update(
            {"status": "finished", "finished": _now(), "updated": _now(), "final_score": score,
             "agent_steps": counters["step"], "wall_s": round(wall(), 3)}
        )
        if score_error:
            record["final_score_error"] = score_error
            print(f"warning: final score not computed: {score_error}", file=sys.stderr)
        atomic_write_json(run_dir / "run.json", record)
        return RunResult(run_dir, "finished", score, resumed)
    except BaseException as e:
        record.update({"status": "failed", "error": f"{type(e).__name__}: {e}", "updated": _now()})
        with contextlib.suppress(Exception):
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())
            atomic_write_json(run_dir / "run.json", record)
        raise
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()


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
    p.add_argument("--seed", type=int, required=True, help="seed index (the run seed is derived from it)")
    p.add_argument("--smoke", action="store_true", help="the protocol's tiny smoke budget (tests, demos)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set preset=size12m --set batch_size=16)")
    p.add_argument("--recipe", default=None, metavar="NAME", help="a recipe of the method (wmbench list methods), "
                   "applied before --set; recorded in run.json")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--root", default="runs", help="root of run directories (default ./runs)")
    p.add_argument("--steps", type=int, default=None, help="agent-step budget instead of the protocol's (recorded)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="agent steps between checkpoints "
                   "(default 10%% of the budget; taken at the next episode end)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    return p


def cli_run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    result = run(
        args.method, args.protocol, args.task, args.seed, root=args.root, overrides=args.overrides,
        smoke=args.smoke, device=args.device, steps=args.steps, checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress, threads=args.threads, recipe=args.recipe,
    )
    score = "n/a" if result.final_score is None else f"{result.final_score:.6g}"
    print(f"run directory: {result.run_dir}")
    print(f"final score: {score}")
    return 0
