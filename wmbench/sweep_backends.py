"""Where a sweep's runs execute: local subprocesses, Ray tasks or submitit (Slurm) jobs, behind one small interface.

Every backend runs the same worker function, `execute(job)`, which calls the run target (`wmbench.runner:run`
unless a test injects another) and turns its result or exception into an `Outcome`. The driver in
`wmbench.sweep` decides what to launch, when to retry and what to report; a backend only launches jobs and says
which ended and how (`submit`, `wait`, `close`). A worker that dies without reporting (kill -9, OOM killer, lost
node) comes back as status `crashed`, so the driver can retry it and the runner resumes it from its checkpoint.

Backends
- `local`: `python -m wmbench.sweep_backends --serve` worker subprocesses fed job lines on stdin; a fresh one per
  run by default, or reused run after run (`reuse`). Own subprocesses (rather than a `ProcessPoolExecutor`)
  isolate faults: kill -9 of one worker takes down its run only (a pool marks itself broken and terminates the
  other workers). Workers die with the driver (Linux `PR_SET_PDEATHSIG`), so killing the driver leaves no orphan
  holding a run lock; the runs resume on the next invocation.
- `ray`: `ray.init(address=...)` for a cluster, else a local instance (no dashboard, temp dir under /tmp, CPUs
  bounded by workers x threads). Each run asks for `threads` CPUs and an optional GPU fraction.
- `submitit`: Slurm job arrays via `AutoExecutor` (array parallelism = workers), or `LocalExecutor` for tests and
  machines without Slurm. Jobs are requeued by submitit on timeout/preemption (the runner resumes them).

Ray and submitit are optional (`pip install 'wmbench[sweep]'`).

Task pools (`make_pool`: inline, local processes, Ray) spread the work *inside* one run over workers, e.g. World
Models' CMA-ES candidate rollouts; see the section "task pools" below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError

DEFAULT_TARGET = "wmbench.runner:run"
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class BackendError(WmbenchError, RuntimeError):
    """A sweep backend cannot be used as asked (not installed, bad option); the message says how to fix it."""


@dataclass(frozen=True)
class RunJob:
    """Everything a worker needs to execute one run; plain data so it travels as JSON, pickle or cloudpickle."""

    method: str
    protocol: str  # "name@version" or an absolute path to a protocol file
    task: str
    seed: int
    root: str
    overrides: tuple[str, ...] = ()
    smoke: bool = False
    steps: int | None = None
    device: str = "cpu"
    checkpoint_every: int | None = None
    threads: int = 1
    target: str = DEFAULT_TARGET
    run_dir: str = ""  # where the runner puts it (for the error file of a failed attempt)
    recipe: str | None = None  # the method recipe (`wmbench run --recipe`), applied before the overrides
    pause_at: int | None = None  # `wmbench run --pause-at`: stop at this agent step's episode end, resumable

    @property
    def key(self) -> tuple[str, int]:
        return (self.task, self.seed)

    @property
    def label(self) -> str:
        return f"{self.task}/seed_{self.seed}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunJob:
        data = json.loads(text)
        data["overrides"] = tuple(data["overrides"])
        return cls(**data)


@dataclass
class Outcome:
    """How one attempt ended. status: finished | failed (the run raised) | locked (a live process holds the run:
    running elsewhere) | crashed (the worker died without reporting)."""

    status: str
    run_dir: str | None = None
    error: str | None = None
    traceback: str | None = None
    error_file: str | None = None
    final_score: float | None = None
    resumed: bool = False
    deterministic: bool = False  # failed with an error that a retry would meet again (bad input, other run there)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise BackendError(f"run target {target!r} must be 'module:function', e.g. {DEFAULT_TARGET!r}")
    return getattr(importlib.import_module(module_name), attr)


def limit_threads(threads: int) -> None:
    """Cap this process's BLAS/torch threads so N concurrent runs use N x threads cores, not N x all cores."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    if "torch" in sys.modules:  # already imported (Ray workers are reused): the env vars came too late
        sys.modules["torch"].set_num_threads(threads)


def _is_run_locked(error: BaseException) -> bool:
    # By class name, so an injected target (tests) can signal it without importing the runner.
    return any(cls.__name__ == "RunLocked" for cls in type(error).__mro__)


# WmbenchErrors that may pass: a full disk can be freed, a SIGTERM (pre-emption) is not the run's fault.
TRANSIENT_ERRORS = ("DiskFullError", "Terminated", "RunLocked")


def is_deterministic(error: BaseException) -> bool:
    """A user-fixable error (WmbenchError: run directory of another run, bad config, damaged file) recurs on every
    retry, so the sweep reports it at once instead of retrying; bugs and transient errors are retried."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, WmbenchError) and not names & set(TRANSIENT_ERRORS)


def execute(job: RunJob) -> Outcome:
    """Run one job in this process and report how it ended (never raises for a failing run)."""
    limit_threads(job.threads)
    started = time.time()
    try:
        target = resolve_target(job.target)
        result = target(
            job.method,
            job.protocol,
            job.task,
            job.seed,
            root=job.root,
            overrides=list(job.overrides),
            smoke=job.smoke,
            device=job.device,
            steps=job.steps,
            checkpoint_every=job.checkpoint_every,
            progress=False,
            threads=job.threads,
            **({"recipe": job.recipe} if job.recipe else {}),
            **({"pause_at": job.pause_at} if job.pause_at else {}),
        )
    except Exception as e:
        if _is_run_locked(e):
            return Outcome("locked", error=str(e))
        # The runner's traceback of this attempt (an older error.txt belongs to an earlier attempt).
        error_file = Path(job.run_dir) / "error.txt" if job.run_dir else None
        fresh = error_file is not None and error_file.exists() and error_file.stat().st_mtime >= started - 1
        return Outcome(
            "failed",
            run_dir=job.run_dir or None,
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
            error_file=str(error_file) if fresh else None,
            deterministic=is_deterministic(e),
        )
    status = str(getattr(result, "status", "finished"))
    return Outcome(
        status if status in ("finished", "paused") else "failed",
        run_dir=str(result.run_dir),
        error=None if status in ("finished", "paused") else f"run ended with status {status!r}",
        final_score=getattr(result, "final_score", None),
        resumed=bool(getattr(result, "resumed", False)),
    )


def optional_import(name: str, backend: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise BackendError(
            f"--backend {backend} needs the package {name!r}, which is not installed ({e}). "
            "Install the sweep extra: pip install 'wmbench[sweep]' (or use --backend local)."
        ) from e


Finished = tuple[RunJob, int, Outcome]  # job, attempt number, how it ended


class Backend:
    """Interface: `capacity` concurrent jobs; `submit(jobs)`; `wait(timeout)` returns the ones that ended."""

    name = "?"
    capacity: int = 1

    def submit(self, jobs: Sequence[tuple[RunJob, int]]) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> list[Finished]:
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- local subprocesses


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM when the driver dies, even by kill -9, so no orphan run
    # keeps a run lock that the next sweep invocation would report as "running elsewhere".
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class _Worker:
    proc: subprocess.Popen
    threads: int
    task: tuple[RunJob, int, Path, Path] | None = None  # job, attempt, result file, log file


class LocalBackend(Backend):
    """Worker subprocesses that read jobs (one JSON line each) from stdin. By default a worker serves one run and
    exits (fresh process per run: no state, memory or CUDA context carried over); with `reuse` it serves run after
    run, which saves the Python + torch start-up (seconds) per run for sweeps of many short runs. Either way a
    worker that dies takes only its current run with it, and the driver starts another."""

    name = "local"

    def __init__(self, workers: int, log_dir: Path, reuse: bool = False):
        self.capacity = max(1, workers)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.reuse = reuse
        self._workers: list[_Worker] = []
        self._exiting: list[subprocess.Popen] = []
        self._started = 0

    @property
    def in_flight(self) -> int:
        return sum(w.task is not None for w in self._workers)

    def _start_worker(self, threads: int) -> _Worker:
        self._started += 1
        env = dict(os.environ, **{var: str(threads) for var in THREAD_ENV_VARS})
        with open(self.log_dir / f"worker.{os.getpid()}.{self._started}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "wmbench.sweep_backends", "--serve"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        worker = _Worker(proc, threads)
        self._workers.append(worker)
        return worker

    def submit(self, jobs: Sequence[tuple[RunJob, int]]) -> None:
        for job, attempt in jobs:
            stem = f"{job.task}.seed_{job.seed}.attempt_{attempt}.{os.getpid()}"
            log_path = self.log_dir / f"{stem}.log"
            result_path = self.log_dir / f"{stem}.result.json"
            idle = [w for w in self._workers if w.task is None and w.threads == job.threads] if self.reuse else []
            worker = idle[0] if idle else self._start_worker(job.threads)
            request = {"job": job.to_json(), "result": str(result_path), "log": str(log_path)}
            assert worker.proc.stdin is not None
            worker.proc.stdin.write(json.dumps(request) + "\n")
            worker.proc.stdin.flush()
            if not self.reuse:
                worker.proc.stdin.close()  # end of input: the worker exits after this run
            worker.task = (job, attempt, result_path, log_path)

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            self._exiting = [p for p in self._exiting if p.poll() is None]
            busy = [w for w in self._workers if w.task is not None]
            # The result file is written atomically, so its existence means the run reported; check it before
            # the process, since a fresh worker exits right after reporting.
            done = [w for w in busy if w.task[2].exists() or w.proc.poll() is not None]
            if done or time.monotonic() >= deadline or not busy:
                break
            time.sleep(0.01)
        finished = []
        for worker in done:
            job, attempt, result_path, log_path = worker.task
            worker.task = None
            try:
                outcome = Outcome(**json.loads(result_path.read_text()))
                result_path.unlink()
            except (FileNotFoundError, json.JSONDecodeError, TypeError):
                code = worker.proc.wait()
                how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                outcome = Outcome("crashed", error=f"worker {how} before reporting; log: {log_path}")
            if not self.reuse or worker.proc.poll() is not None:
                self._workers.remove(worker)
                self._exiting.append(worker.proc)
            if outcome.status != "finished" and outcome.error_file is None:
                outcome.error_file = str(log_path)
            finished.append((job, attempt, outcome))
        return finished

    def close(self) -> None:
        procs = [w.proc for w in self._workers] + self._exiting
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):
                worker.proc.stdin.close()  # idle reused workers exit at end of input
            if worker.task is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._workers.clear()
        self._exiting.clear()


# ---------------------------------------------------------------- ray


def ray_temp_dir() -> str:
    # Ray puts unix sockets under its temp dir; their paths must stay under ~107 bytes, so a deep sweep root
    # would break it. /tmp is short everywhere.
    return os.path.join(tempfile.gettempdir(), f"ray-wmbench-{os.getuid()}")


def _ray_start(ray: Any, workers: int, threads: int, address: str | None) -> bool:
    """Connect to the cluster at `address`, or start a local Ray instance, unless Ray is running in this process
    already; True when this call started it (so its owner shuts it down)."""
    if ray.is_initialized():
        return False
    if address:
        # A cluster's resources are its own (num_cpus etc. may not be passed); workers there need wmbench
        # installed and --root on a file system every node shares.
        ray.init(address=address, log_to_driver=False)
    else:
        cores = os.cpu_count() or 1
        ray.init(
            num_cpus=max(cores, workers * threads),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            _temp_dir=ray_temp_dir(),
        )
    return True


class RayBackend(Backend):
    name = "ray"

    def __init__(self, workers: int, threads: int, address: str | None = None, gpus_per_run: float = 0.0):
        self.ray = optional_import("ray", "ray")
        self.capacity = max(1, workers)
        self._owned = _ray_start(self.ray, self.capacity, threads, address)
        # max_retries=0: retries are the driver's, identical on every backend (and counted in attempts.jsonl).
        self._remote = self.ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=0)(execute)
        self._refs: dict[Any, tuple[RunJob, int]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def submit(self, jobs: Sequence[tuple[RunJob, int]]) -> None:
        for job, attempt in jobs:
            self._refs[self._remote.remote(job)] = (job, attempt)

    def wait(self, timeout: float) -> list[Finished]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is ready too, without waiting
            ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        finished = []
        for ref in ready:
            job, attempt = self._refs.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except Exception as e:  # WorkerCrashedError, node lost, ...: the run resumes on retry
                outcome = Outcome("crashed", error=f"{type(e).__name__}: {e}".strip()[:2000])
            finished.append((job, attempt, outcome))
        return finished

    def close(self) -> None:
        for ref in self._refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owned:
            self.ray.shutdown()


# ---------------------------------------------------------------- submitit


def _submitit_callable(submitit: Any) -> Any:
    # A Checkpointable's `checkpoint` makes submitit requeue the same job on a Slurm timeout or preemption; the
    # runner then resumes the run from its checkpoint. Defined here because submitit is an optional import.
    class SubmititRun(submitit.helpers.Checkpointable):
        def __call__(self, job: RunJob) -> Outcome:
            return execute(job)

    return SubmititRun()


class SubmititBackend(Backend):
    name = "submitit"

    def __init__(
        self,
        folder: Path,
        workers: int,
        threads: int,
        local: bool = False,
        gpus_per_run: float = 0.0,
        timeout_min: int = 24 * 60,
        partition: str | None = None,
        parameters: dict[str, Any] | None = None,
    ):
        self.submitit = optional_import("submitit", "submitit")
        folder = Path(folder) / "%j"
        if local:
            self.executor = self.submitit.LocalExecutor(folder=folder)
            self.executor.update_parameters(timeout_min=timeout_min, gpus_per_node=math.ceil(gpus_per_run))
            self.on_slurm = False
        else:
            self.executor = self.submitit.AutoExecutor(folder=folder)
            self.on_slurm = self.executor.cluster == "slurm"
            params: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": threads, "name": "wmbench"}
            if gpus_per_run:
                params["gpus_per_node"] = math.ceil(gpus_per_run)
            if self.on_slurm:
                params["slurm_array_parallelism"] = max(1, workers)
                if partition:
                    params["slurm_partition"] = partition
            params.update(parameters or {})
            self.executor.update_parameters(**params)
        # On Slurm the scheduler bounds concurrency (array parallelism), so the driver submits everything at once;
        # a local executor starts every submitted job immediately, so the driver meters them out.
        self.capacity = 10**9 if self.on_slurm else max(1, workers)
        self._fn = _submitit_callable(self.submitit)
        self._jobs: list[tuple[Any, RunJob, int]] = []

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    def submit(self, jobs: Sequence[tuple[RunJob, int]]) -> None:
        if not jobs:
            return
        with self.executor.batch():  # one Slurm array per batch
            handles = [self.executor.submit(self._fn, job) for job, _ in jobs]
        if not self.on_slurm:
            for handle in handles:
                # A local job that died has no result to wait for (submitit waits up to 15 s for a lagging
                # network file system); on Slurm keep submitit's default.
                with contextlib.suppress(AttributeError):
                    handle._results_timeout_s = 0
        self._jobs += [(h, job, attempt) for h, (job, attempt) in zip(handles, jobs, strict=True)]

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            done = [entry for entry in self._jobs if entry[0].done()]
            if done or time.monotonic() >= deadline or not self._jobs:
                break
            time.sleep(0.05 if not self.on_slurm else 1.0)
        finished = []
        for entry in done:
            self._jobs.remove(entry)
            handle, job, attempt = entry
            try:
                outcome = handle.result()
            except Exception as e:  # the job died (killed, timed out beyond requeues, node failure)
                outcome = Outcome("crashed", error=f"{type(e).__name__}: {str(e)[-1500:]}")
            if outcome.status != "finished" and outcome.error_file is None:
                with contextlib.suppress(Exception):
                    outcome.error_file = str(handle.paths.stderr)
            finished.append((job, attempt, outcome))
        return finished

    def close(self) -> None:
        for handle, *_ in self._jobs:
            with contextlib.suppress(Exception):
                handle.cancel(check=False)
        self._jobs.clear()


# ---------------------------------------------------------------- task pools (work inside one run)
#
# The backends above run whole runs. A method may also spread work of one run over workers: World Models scores
# each CMA-ES candidate by rollouts in fresh envs (`wmbench_baselines.worldmodels`). A `TaskPool` maps a pure
# function over tasks: `setup(context)` builds a worker's state once per worker (e.g. networks from their frozen
# weights), `run(state, task)` computes one task's result. Both are given as "module:function" so that any worker
# (a spawned process, a Ray worker on another node) can import them. `map(tasks)` returns one `TaskResult` per task,
# in task order whatever order they finished in, so a caller's result never depends on the backend or the number
# of workers. A task that raised, or whose worker died, has `error` set (naming the exception or the signal); the
# pool never drops a task silently.

POOL_BACKENDS = ("inline", "local", "ray")


@dataclass
class TaskResult:
    value: Any = None
    error: str | None = None


_POOL_STATES: dict[str, Any] = {}  # worker side: state built by `setup`, per pool key (Ray reuses workers)


def _pool_state(key: str, setup: str, context: Any) -> Any:
    if key not in _POOL_STATES:
        _POOL_STATES.clear()  # one pool's state at a time per worker process
        _POOL_STATES[key] = resolve_target(setup)(context)
    return _POOL_STATES[key]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()


class TaskPool:
    """Interface: `map(tasks) -> [TaskResult]` (task order), `close()`; `backend`, `workers`."""

    backend = "?"
    workers = 1

    def map(self, tasks: Sequence[Any]) -> list[TaskResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InlinePool(TaskPool):
    """The tasks one after another in this process, through the same setup and run functions as the workers, with
    torch limited to `threads` threads meanwhile (so the numbers match a worker's bit for bit)."""

    backend = "inline"

    def __init__(self, setup: str, run: str, context: Any, threads: int = 1):
        self.threads = int(threads)
        self._run = resolve_target(run)
        with self._threads():
            self._state = resolve_target(setup)(context)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def map(self, tasks: Sequence[Any]) -> list[TaskResult]:
        results = []
        with self._threads():
            for task in tasks:
                try:
                    results.append(TaskResult(self._run(self._state, task)))
                except Exception as e:  # reported per task, as a worker's would be
                    results.append(TaskResult(error=_describe(e) + "\n" + traceback.format_exc()))
        return results


def _send(conn: Any, obj: Any) -> None:
    # plain pickle, not multiprocessing's: torch's multiprocessing reductions would share tensors through a
    # resource sharer that only processes started by multiprocessing may connect to
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(conn: Any) -> Any:
    return pickle.loads(conn.recv_bytes())


def _pool_serve(read_fd: int, write_fd: int) -> int:  # pragma: no cover - runs in a local pool worker
    """A local pool worker: reads the driver's sys.path, then (key, setup, run, context, threads), builds its state,
    then answers (index, task) messages with (index, ok, value or error text) until it reads None or its pipe closes."""
    from multiprocessing.connection import Connection

    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        sys.path[:] = _receive(inbox)  # before the context is unpickled: its classes may live on the driver's path
        key, setup, run, context, threads = _receive(inbox)
        limit_threads(threads)
        state = _pool_state(key, setup, context)
        fn = resolve_target(run)
    except EOFError:
        return 0
    except Exception as e:
        _send(outbox, (-1, False, f"worker setup failed: {_describe(e)}\n{traceback.format_exc()}"))
        return 1
    while True:
        try:
            message = _receive(inbox)
        except EOFError:
            return 0
        if message is None:
            return 0
        index, task = message
        try:
            _send(outbox, (index, True, fn(state, task)))
        except Exception as e:
            _send(outbox, (index, False, _describe(e) + "\n" + traceback.format_exc()))


@dataclass
class _PoolWorker:
    proc: subprocess.Popen
    inbox: Any  # the driver's end: results come in here
    outbox: Any  # tasks go out here


class LocalPool(TaskPool):
    """`workers` Python subprocesses (own processes, as the local sweep backend's, rather than multiprocessing's:
    no re-import of the driver's main script, and the pool knows which task each worker holds, so a worker that
    dies fails exactly its task, with its signal or exit code). They die with this process (PR_SET_PDEATHSIG) and
    live until `close`; the context is sent to each once, when it starts. Their output goes to this process's."""

    backend = "local"

    def __init__(self, setup: str, run: str, context: Any, workers: int, threads: int = 1):
        self.workers = max(1, int(workers))
        self.threads = int(threads)
        self._args = (f"{os.getpid()}.{time.monotonic_ns()}", setup, run, context, self.threads)
        self._workers: list[_PoolWorker] = []

    def _start(self) -> _PoolWorker:
        from multiprocessing.connection import Connection

        to_child, from_child = os.pipe(), os.pipe()
        child_fds = (to_child[0], from_child[1])
        env = dict(os.environ, **{var: str(self.threads) for var in THREAD_ENV_VARS})
        code = f"import sys; from wmbench.sweep_backends import _pool_serve; sys.exit(_pool_serve{child_fds})"
        proc = subprocess.Popen(
            [sys.executable, "-c", code], pass_fds=child_fds, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        for fd in child_fds:
            os.close(fd)
        worker = _PoolWorker(proc, Connection(from_child[0], writable=False), Connection(to_child[1], readable=False))
        _send(worker.outbox, list(sys.path))
        _send(worker.outbox, self._args)
        return worker

    def _drop(self, worker: _PoolWorker) -> None:
        self._workers.remove(worker)
        for conn in (worker.inbox, worker.outbox):
            with contextlib.suppress(OSError):
                conn.close()

    def map(self, tasks: Sequence[Any]) -> list[TaskResult]:
        from multiprocessing.connection import wait as wait_any

        results: list[TaskResult | None] = [None] * len(tasks)
        while len(self._workers) < min(self.workers, max(1, len(tasks))):
            self._workers.append(self._start())
        pending = list(range(len(tasks)))[::-1]  # popped from the end: task order
        busy: dict[Any, tuple[_PoolWorker, int]] = {}  # inbox -> (worker, task index)
        idle = list(self._workers)
        failed = False
        while (pending and not failed) or busy:
            while idle and pending and not failed:
                worker, index = idle.pop(), pending.pop()
                try:
                    _send(worker.outbox, (index, tasks[index]))
                    busy[worker.inbox] = (worker, index)
                except OSError as e:
                    results[index] = TaskResult(error=f"could not reach its worker process ({_describe(e)})")
                    self._drop(worker)
                    failed = True
            if not busy:
                break
            for inbox in wait_any(list(busy)):
                worker, index = busy.pop(inbox)
                try:
                    got, ok, value = _receive(inbox)
                except (EOFError, OSError):
                    try:
                        code = worker.proc.wait(timeout=10)
                        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                    except subprocess.TimeoutExpired:
                        how = "closed its pipe"
                    results[index] = TaskResult(
                        error=f"its worker process (pid {worker.proc.pid}) {how} before returning a result")
                    self._drop(worker)
                    failed = True
                    continue
                if got == -1:  # the worker's setup failed: this task never ran
                    results[index] = TaskResult(error=str(value))
                    self._drop(worker)
                    failed = True
                    continue
                results[index] = TaskResult(value) if ok else TaskResult(error=str(value))
                failed = failed or not ok
                idle.append(worker)
        for index in pending:
            results[index] = TaskResult(error="not run: the pool stopped at an earlier task's failure")
        return [r if r is not None else TaskResult(error="no result") for r in results]

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):
                _send(worker.outbox, None)
        for worker in list(self._workers):
            try:
                worker.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            self._drop(worker)


def _ray_task(key: str, setup: str, run: str, boxed_context: list[Any], task: Any, threads: int) -> Any:
    limit_threads(threads)
    context = boxed_context[0]
    if key not in _POOL_STATES:
        import ray

        context = ray.get(context)  # fetched once per worker and pool (the box keeps Ray from resolving it per task)
    return resolve_target(run)(_pool_state(key, setup, context), task)


class RayPool(TaskPool):
    """Tasks as Ray tasks of `threads` CPUs each, on a cluster (`address`) or a local Ray instance of `workers` x
    `threads` CPUs. The context is put in Ray's object store once; each worker fetches it once."""

    backend = "ray"

    def __init__(self, setup: str, run: str, context: Any, workers: int, threads: int = 1, address: str = ""):
        self.ray = optional_import("ray", "ray")
        self.workers = max(1, int(workers))
        self._owned = _ray_start(self.ray, self.workers, int(threads), address or None)
        self._args = (f"{os.getpid()}.{time.monotonic_ns()}", setup, run, [self.ray.put(context)])
        self.threads = int(threads)
        self._remote = self.ray.remote(num_cpus=self.threads, max_retries=0)(_ray_task)

    def map(self, tasks: Sequence[Any]) -> list[TaskResult]:
        refs = [self._remote.remote(*self._args, task, self.threads) for task in tasks]
        results = []
        for ref in refs:
            try:
                results.append(TaskResult(self.ray.get(ref)))
            except Exception as e:  # RayTaskError (the task raised), WorkerCrashedError, node lost, ...
                results.append(TaskResult(error=_describe(e)[:4000]))
        return results

    def close(self) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False


def make_pool(backend: str, setup: str, run: str, context: Any, workers: int = 1, threads: int = 1,
              address: str = "") -> TaskPool:
    """A task pool on `backend` (inline | local | ray); `workers` processes or concurrent Ray tasks."""
    if backend == "inline":
        return InlinePool(setup, run, context, threads)
    if backend == "local":
        return LocalPool(setup, run, context, workers, threads)
    if backend == "ray":
        return RayPool(setup, run, context, workers, threads, address)
    raise BackendError(f"task pool backend {backend!r} is not one of {POOL_BACKENDS}")


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors, so C libraries' output too) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def serve() -> int:
    """Local worker loop: one JSON request per stdin line ({job, result, log}); exits at end of input."""
    from wmbench.io import atomic_write_json

    while line := sys.stdin.readline():
        request = json.loads(line)
        with _output_to(request["log"]):
            outcome = execute(RunJob.from_json(request["job"]))
            if outcome.traceback:
                print(outcome.traceback, file=sys.stderr, flush=True)
        atomic_write_json(request["result"], outcome.to_dict())
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--serve"]:
        sys.exit("usage: python -m wmbench.sweep_backends --serve   (a local sweep worker; jobs on stdin)")
    sys.exit(serve())
