"""Shared by the tests/test_integrity_*.py files (no tests here): a random-action method that stops when told.

`Stopper.stop_at` (agent step) and `Stopper.stop_with` (an exception instance) make `update` raise there, so a test
can leave a run directory as a crash, a Ctrl-C or a SIGTERM at a known step. Its config has a float `lr` (read by
nothing) to change a setting between attempts, and small replay chunks so that several chunk files exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from wmbench_baselines.random_agent import RandomAgent

from wmbench.cli import main as cli_main
from wmbench.method import register
from wmbench.runner import run, run_dir_for

PROTOCOL = "fake@1"
TASK = "vector_discrete"
METHOD = "stopper"


@dataclass(frozen=True)
class StopperConfig:
    preset: str = "default"
    lr: float = 1e-3
    replay_chunk: int = 32


class Stopper(RandomAgent):
    Config = StopperConfig
    stop_at: ClassVar[int | None] = None
    stop_with: ClassVar[BaseException | None] = None

    def update(self, replay, step):
        if step == Stopper.stop_at:
            raise Stopper.stop_with or RuntimeError(f"stop for the test at step {step}")
        return {"replay_len": float(len(replay))}


register(METHOD, "integrity_support:Stopper")


def reset() -> None:
    Stopper.stop_at = None
    Stopper.stop_with = None


def go(root: Path, seed: int = 0, **kw):
    kw = {"steps": 400, "checkpoint_every": 100, "progress": False, **kw}
    return run(METHOD, PROTOCOL, TASK, seed, root=root, **kw)


def stopped_run(root: Path, at: int = 250, error: BaseException | None = None, **kw) -> Path:
    """A run directory left by an attempt that raised at agent step `at` (RuntimeError unless `error`)."""
    Stopper.stop_at, Stopper.stop_with = at, error
    try:
        go(root, **kw)
    except BaseException as e:  # noqa: BLE001 - whatever was asked for
        assert type(e) is type(error or RuntimeError()), e
    else:
        raise AssertionError("the run did not stop")
    finally:
        reset()
    return run_dir_for(root, PROTOCOL, TASK, METHOD, 0)


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_argv(root: Path | str, *extra: str, seed: str = "0") -> list[str]:
    return ["run", METHOD, PROTOCOL, "--task", TASK, "--seed", seed, "--root", str(root), "--no-progress", *extra]


def one_error_line(err: str) -> str:
    """The CLI's error output must be one `error: ...` line: no traceback."""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()
