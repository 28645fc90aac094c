"""Environment suites: the registry of adapters and the env contract the runner relies on.

A suite is a module (registered here or through the entry-point group `wmbench.suites`) that defines:

- `ENV_SCHEMA: dict[str, type]`   protocol `[env]` keys it understands, with their types (others are errors)
- `TASKS: frozenset[str] | None`  tasks it knows (None: not checked)
- `INSTALL_HINT: str`             the exact command that installs it
- `make(protocol, task, seed[, mode]) -> gymnasium.Env`  an env whose observation space is a `Dict` with `image`
  (uint8 HWC) and/or `vector` (float32) entries, built only from the protocol's settings; `mode` ("train" or
  "eval", optional) lets a suite build its evaluation env differently where the protocol says so (distractor DMC's
  held-out `eval_videos`); a suite without the parameter makes the same env for both
- `check_installed() -> None`     raises `SuiteNotInstalled` (with the install hint) when it cannot run
- `missing_data(protocol) -> list[str]` (optional)  user-supplied data the protocol needs that is absent (e.g.
  distractor video folders), shown by `wmbench list protocols`; cheap, imports no simulator

Suite modules import their heavy libraries lazily, inside `make`/`check_installed`, so that listing, validating
and testing protocols never needs the suite installed. The runner wraps the gymnasium env with
`wmbench.envs.wrappers.ContractEnv` into dict steps with `reward`, `is_first`, `is_last`, `is_terminal`
(terminal != time-limit truncation).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from wmbench.errors import WmbenchError

BUILTIN_SUITES: dict[str, str] = {
    "atari": "wmbench.envs.atari",
    "dmc": "wmbench.envs.dmc",
    "control": "wmbench.envs.control",
    "fake": "wmbench.envs.fake",
    "minecraft": "wmbench.envs.minecraft",
    "dmlab": "wmbench.envs.dmlab",
    "crafter": "wmbench.envs.crafter",
    "distracting": "wmbench.envs.distracting",
    "memory_maze": "wmbench.envs.memory_maze",
    "box2d": "wmbench.envs.box2d",
    "vizdoom": "wmbench.envs.vizdoom",
    "metaworld": "wmbench.envs.metaworld",
}


class SuiteNotInstalled(WmbenchError, RuntimeError):
    """The suite's simulator is missing; the message holds the exact install command."""


@cache
def _registry() -> dict[str, str]:
    suites = dict(BUILTIN_SUITES)
    for ep in entry_points(group="wmbench.suites"):
        suites.setdefault(ep.name, ep.value)
    return suites


def suite_names() -> list[str]:
    return sorted(_registry())


def suite_module(suite: str) -> ModuleType:
    registry = _registry()
    if suite not in registry:
        raise KeyError(f"unknown suite {suite!r}; suites: {', '.join(sorted(registry))}")
    return importlib.import_module(registry[suite].split(":")[0])


def suite_tasks(suite: str) -> frozenset[str] | None:
    return getattr(suite_module(suite), "TASKS", None)


def validate_env_settings(suite: str, env: Mapping[str, Any], where: str) -> None:
    """Check protocol `[env]` keys and types against the suite's declared schema."""
    from wmbench.protocols import ProtocolError, _typecheck

    schema: dict[str, Any] = getattr(suite_module(suite), "ENV_SCHEMA", {})
    for key, value in env.items():
        if key not in schema:
            import difflib

            close = difflib.get_close_matches(key, list(schema), n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ProtocolError(
                f"{where}: unknown setting {key!r} for suite {suite!r}.{hint} Allowed: {', '.join(schema)}"
            )
        _typecheck(value, schema[key], f"{where}.{key}")


def import_legacy_gym_quietly() -> None:
    """Import the legacy `gym` package, when installed, with its import-time notice (gym 0.26.2 prints "Gym has been
    unmaintained since 2022 ..." to stderr on every import) swallowed. memory-maze needs gym and crafter imports it
    when present; adapters call this before importing them, so users do not see a warning they cannot act on."""
    import contextlib
    import importlib.util
    import io
    import sys

    if "gym" in sys.modules or importlib.util.find_spec("gym") is None:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        import gym  # noqa: F401


def check_installed(suite: str) -> None:
    suite_module(suite).check_installed()


MODES = ("train", "eval")


def make_env(protocol: Any, task: str, seed: int, mode: str = "train"):
    """Build the contract env (`ContractEnv`) for one task of a protocol; `mode` "eval" for the runner's evaluation
    env (passed to suites whose `make` takes a `mode`)."""
    import inspect

    from wmbench.envs.wrappers import ContractEnv

    if mode not in MODES:
        raise ValueError(f"make_env mode {mode!r} is not one of {MODES}")
    protocol.check_task(task)
    if hasattr(protocol, "for_task"):
        protocol = protocol.for_task(task)  # the task's own action repeat, where the protocol sets one per task
    module = suite_module(protocol.suite)
    module.check_installed()
    if "mode" in inspect.signature(module.make).parameters:
        return ContractEnv(module.make(protocol, task, seed, mode=mode), seed=seed)
    return ContractEnv(module.make(protocol, task, seed), seed=seed)


class EnvFactory:
    """Fresh contract envs of one protocol task, made anywhere: `factory(seed, mode="train") -> ContractEnv`.

    The runner hands one to its method (`Method.set_env_factory`) so that a method may run episodes of its own
    outside the runner's env, e.g. World Models' CMA-ES candidate rollouts on pool workers. It is plain data (the
    protocol's file or id, its hash and the task) so it pickles to a spawned process, a Ray worker or a Slurm job;
    there the protocol is loaded again and refused if its content (hash) differs from the run's. The runner does not
    count the steps of these envs in the run's budget: a method that uses them reports them in its own metrics.
    """

    def __init__(self, protocol: Any, task: str):
        protocol.check_task(task)
        self.protocol_id, self.protocol_path, self.protocol_hash = protocol.id, protocol.path, protocol.hash
        self.task = task
        self._protocol = protocol

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_protocol"}  # Protocol holds a mappingproxy

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _protocol=None)

    @property
    def protocol(self) -> Any:
        if self._protocol is None:
            import os

            from wmbench.protocols import load_protocol

            spec = (
                self.protocol_path
                if self.protocol_path and os.path.exists(self.protocol_path)
                else self.protocol_id
            )
            protocol = load_protocol(spec)
            if protocol.hash != self.protocol_hash:
                raise WmbenchError(
                    f"env factory: protocol {spec} here has hash {protocol.hash}, the run's has {self.protocol_hash}: "
                    "this worker has another version of the protocol file; install the same wmbench on every worker"
                )
            self._protocol = protocol
        return self._protocol

    def __call__(self, seed: int, mode: str = "train") -> Any:
        return make_env(self.protocol, self.task, seed, mode=mode)

    def __repr__(self) -> str:
        return f"EnvFactory({self.protocol_id}, task={self.task!r})"
