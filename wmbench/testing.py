"""Shared method checks: every method (ours or a submitted package) must pass these through the real harness.

`check_method(name, root, ...)` runs the method on a small protocol and asserts the contract's promises:
1. it runs to the end and writes scores with a finite final score;
2. it is deterministic under a seed (two fresh runs give byte-identical scores.csv and metrics.jsonl);
3. it resumes exactly: a run that crashes after its first checkpoint and is started again ends with the same
   scores.csv and metrics.jsonl, byte for byte, as the uninterrupted run;
4. its state_dict loads with `torch.load(weights_only=True)` (a run directory must not execute code).
The crash is injected by registering, under the same method name, a subclass whose `update` raises a few steps
after the run's first checkpoint appeared (so work is lost and redone); then the real class is registered back
and the same command resumes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from wmbench import method as method_registry
from wmbench.runner import run, run_dir_for


class InjectedCrash(RuntimeError):
    """Raised by the crashing wrapper to simulate a process dying mid-run."""


def _crashing_subclass(cls: type, checkpoint: Path, after: int) -> type:
    """`cls` whose update raises `after` agent steps past the moment its run's first checkpoint appeared."""

    class Crashing(cls):  # type: ignore[misc, valid-type]
        seen_at: int | None = None

        def update(self, replay: Any, step: int) -> dict[str, float]:
            if checkpoint.exists():
                if Crashing.seen_at is None:
                    Crashing.seen_at = step
                if step >= Crashing.seen_at + after:
                    raise InjectedCrash(f"injected crash at agent step {step}")
            return super().update(replay, step)

    Crashing.__name__ = f"Crashing{cls.__name__}"
    return Crashing


def _files(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in ("scores.csv", "metrics.jsonl")}


def _first_difference(a: Path, b: Path) -> str:
    """The first differing line of scores.csv / metrics.jsonl between two run directories, for the message."""
    for name in ("scores.csv", "metrics.jsonl"):
        x, y = (a / name).read_text().splitlines(), (b / name).read_text().splitlines()
        for i in range(max(len(x), len(y))):
            u = x[i] if i < len(x) else "<missing>"
            v = y[i] if i < len(y) else "<missing>"
            if u != v:
                return f"{name} line {i + 1}:\n  {u[:400]}\n  {v[:400]}"
    return "no difference"


def run_returns(run_dir: Path | str) -> tuple[list[float], list[float]]:
    """(train returns in order, returns of the last evaluation) from a run's scores.csv: what learning checks
    assert on besides the protocol score."""
    import csv

    with open(Path(run_dir) / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    evals = [r for r in rows if r["phase"] == "eval"]
    last_step = max((int(r["env_step"]) for r in evals), default=None)
    final = [float(r["score"]) for r in evals if int(r["env_step"]) == last_step]
    return [float(r["score"]) for r in rows if r["phase"] == "train"], final


def assert_learns(
    method: str, protocol: str, task: str, root: Path | str, overrides: Any, at_least: float, random: str,
    seed: int = 0, final_too: bool = True, final_label: str = "final evaluation returns",
    final_at_least: float | None = None,
) -> Any:
    """The slow learning checks' common body: run `method` on `task` (one thread, no progress line), print its train
    returns and last evaluation, and assert that the protocol score is at least `at_least` and, with `final_too`,
    the mean of the last evaluation's returns at least `final_at_least` (default: `at_least`); `random` is the random
    policy's range on that task, for the message. Returns the run's RunResult."""
    result = run(method, protocol, task, seed, root, overrides=overrides, progress=False, threads=1)
    assert result.status == "finished"
    train, final = run_returns(result.run_dir)
    print("train returns:", [round(x, 1) for x in train])
    print(f"{final_label}:", final, "protocol score:", result.final_score)
    assert result.final_score >= at_least, f"protocol score {result.final_score} < {at_least} (random: {random})"
    if final_too:
        bar = at_least if final_at_least is None else final_at_least
        assert sum(final) / len(final) >= bar, f"{final_label} {final} average < {bar} (random: {random})"
    return result


def check_method(
    name: str,
    root: Path | str,
    protocol: str = "fake@1",
    task: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    steps: int = 240,
    checkpoint_every: int = 60,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the shared checks for method `name`; raise AssertionError naming the broken promise."""
    from wmbench.protocols import load_protocol

    proto = load_protocol(protocol)
    cls = method_registry.get_method(name)
    if task is None:
        from wmbench.envs import make_env

        for candidate in proto.tasks:
            env = make_env(proto, candidate, 0)
            reason = cls.supports(env.obs_space, env.act_space)
            env.close()
            if reason is None:
                task = candidate
                break
        if task is None:
            raise AssertionError(f"method {name!r} supports no task of {proto.id}")
    root = Path(root)
    kwargs = dict(overrides=list(overrides), steps=steps, checkpoint_every=checkpoint_every, progress=False)

    first = run(name, proto, task, seed, root / "a", **kwargs)
    assert first.status == "finished", f"{name}: run ended with status {first.status}"
    assert first.final_score is not None and math.isfinite(first.final_score), (
        f"{name}: final score {first.final_score!r} is not finite"
    )
    scores = (first.run_dir / "scores.csv").read_text().strip().splitlines()
    assert len(scores) > 1, f"{name}: scores.csv has no episodes after {steps} steps"

    second = run(name, proto, task, seed, root / "b", **kwargs)
    assert _files(first.run_dir) == _files(second.run_dir), (
        f"{name}: two runs with seed {seed} differ; {_first_difference(first.run_dir, second.run_dir)}"
    )

    target = method_registry.method_targets()[name]
    crash_name = f"_crashing_{name}"
    crash_dir = run_dir_for(root / "c", proto, task, name, seed)
    globals()[crash_name] = _crashing_subclass(cls, crash_dir / "checkpoint" / "state.pt", after=max(1, steps // 20))
    method_registry.register(name, f"{__name__}:{crash_name}")
    try:
        try:
            run(name, proto, task, seed, root / "c", **kwargs)
        except InjectedCrash:
            pass
        else:
            raise AssertionError(
                f"{name}: the injected crash did not fire: no checkpoint before the end of {steps} steps "
                f"(checkpoints are taken at episode ends after every {checkpoint_every} steps); give more steps"
            )
    finally:
        method_registry.register(name, target)
        globals().pop(crash_name, None)
    resumed = run(name, proto, task, seed, root / "c", **kwargs)
    assert resumed.resumed, f"{name}: the second start did not resume from a checkpoint"
    assert _files(resumed.run_dir) == _files(first.run_dir), (
        f"{name}: resumed run's scores.csv/metrics.jsonl differ from the uninterrupted run's; "
        f"{_first_difference(first.run_dir, resumed.run_dir)}"
    )

    checkpoints = sorted((first.run_dir).glob("checkpoint*/*.pt"))
    assert checkpoints, f"{name}: no checkpoint written in {first.run_dir}"
    for path in checkpoints:
        torch.load(path, weights_only=True)
    return {"task": task, "final_score": first.final_score, "run_dir": str(first.run_dir)}
