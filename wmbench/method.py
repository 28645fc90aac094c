"""The Method contract and the method registry.

A method is a class registered under a name in the entry-point group `wmbench.methods` (so a method package
installed from anywhere plugs in without touching the harness). Entries are imported lazily: listing methods never
imports torch models.

Contract (what the runner calls; see docs/contracts.md):

    cls.Config                                 frozen dataclass, paper defaults, optional PRESETS
    cls.supports(obs_space, act_space) -> str | None    None if usable, else the reason it is not
    m = cls(obs_space, act_space, config, device, seed)
    action, state = m.policy(obs, state, mode)  obs: dict of batched arrays (leading dim = number of envs,
                                                 entries as in the env contract); mode "train" (explore) or
                                                 "eval"; state None at the start; returns a batched action
                                                 array and the next state. `is_first` in obs marks resets.
    metrics = m.update(replay, step)            called once after every env step with the replay buffer and the
                                                 agent-step count; the method runs its own schedule (train
                                                 ratio, per-episode model fitting, ...) and returns a dict of
                                                 float metrics (empty if it did nothing this step)
    m.state_dict() / m.load_state_dict(d)       everything needed to resume: weights, optimisers, counters.
                                                 Only tensors, numbers, strings, lists, dicts
                                                 (torch.load(weights_only=True) must load it).

Envs of its own (optional; added for World Models' candidate rollouts on pool workers):
    m.set_env_factory(factory)                  a `wmbench.envs.EnvFactory`: factory(seed, mode="train") makes a fresh
                                                 env of the run's protocol task; picklable, so a method may ship it
                                                 to worker processes (`wmbench.sweep_backends.make_pool`). Called by
                                                 the runner once per process, after the method is built and before
                                                 its checkpoint (if any) is loaded. Steps taken in these envs are not
                                                 in the run's budget; the method logs them (World Models:
                                                 `es/rollout_env_steps`). The default ignores the factory.

Protocols with stages (`[[stages]]`, e.g. task-agnostic exploration, then adaptation with the task reward):
    cls.follows_stages                          True if the method implements set_stage; the runner refuses a
                                                 staged protocol for any other method (`supports_protocol`)
    cls.supports_protocol(protocol) -> str | None   None if the method can follow the protocol, else why not
    m.set_stage(stage)                          a `wmbench.protocols.ScheduledStage` (name, task_reward, start,
                                                 end in agent steps of this run): called before the first training
                                                 step of every stage and again after a resume, so it must be
                                                 idempotent (the method's state_dict already holds what a stage
                                                 changed)
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

import gymnasium

from wmbench.errors import WmbenchError


class MethodError(WmbenchError, ValueError):
    """A method cannot be used as asked (unknown name, unsupported spaces, bad state); the message says why."""


class Method:
    """Base class with the contract's defaults. Subclasses set `name` and `Config`."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    follows_stages: ClassVar[bool] = False

    def __init__(
        self,
        obs_space: dict[str, gymnasium.Space],
        act_space: gymnasium.Space,
        config: Any,
        device: str = "cpu",
        seed: int = 0,
    ):
        reason = self.supports(obs_space, act_space)
        if reason is not None:
            raise MethodError(f"method {self.name!r} cannot run on these spaces: {reason}")
        self.obs_space = obs_space
        self.act_space = act_space
        self.config = config
        self.device = device
        self.seed = seed

    @classmethod
    def supports(cls, obs_space: dict[str, gymnasium.Space], act_space: gymnasium.Space) -> str | None:
        return None

    @classmethod
    def supports_protocol(cls, protocol: Any) -> str | None:
        """None if the method can follow `protocol`, else the reason. Default: a protocol with stages needs a method
        that follows them (`follows_stages`); any other protocol is fine."""
        stages = getattr(protocol, "stages", ())
        if stages and not cls.follows_stages:
            parts = ", ".join(
                f"{s.name} ({s.agent_steps} agent steps, {'with' if s.task_reward else 'without'} the task reward)"
                for s in stages
            )
            return (
                f"protocol {protocol.id} splits its budget into stages ({parts}) that the method must follow, and "
                f"method {cls.name!r} does not take stages (Method.follows_stages is False); use a method that does "
                "(e.g. plan2explore), or a protocol without stages"
            )
        return None

    def set_env_factory(self, factory: Any) -> None:
        """A `wmbench.envs.EnvFactory` for the run's protocol task (see the module docstring); ignored by default."""

    def set_stage(self, stage: Any) -> None:
        """The protocol stage the coming training steps belong to (see the module docstring)."""

    def policy(self, obs: dict[str, Any], state: Any, mode: str = "train") -> tuple[Any, Any]:
        raise NotImplementedError

    def update(self, replay: Any, step: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@cache
def _registry() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="wmbench.methods")}


def register(name: str, target: str) -> None:
    """Register a method at run time (`module:Class`), e.g. from tests or notebooks."""
    _registry()[name] = target


def method_config(cls: type[Method], protocol: Any, overrides: Any = ()) -> Any:
    """A method's resolved config on a protocol: the paper's defaults, then the method's own per-protocol defaults
    (`Config.PROTOCOL_DEFAULTS[protocol.name]`: method settings the paper tuned per benchmark, such as DreamerV3's
    train ratio; never protocol settings), then a named preset, then the user's overrides."""
    from wmbench.config import make_config

    defaults = getattr(cls.Config, "PROTOCOL_DEFAULTS", {}).get(protocol.name, {})
    return make_config(cls.Config, list(overrides), defaults=defaults)


def method_targets() -> dict[str, str]:
    """Registered methods as name -> "module:Class" (nothing imported)."""
    return dict(sorted(_registry().items()))


def method_names() -> list[str]:
    return sorted(_registry())


def get_method(name: str) -> type[Method]:
    registry = _registry()
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=4, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise MethodError(
            f"unknown method {name!r}.{hint} Methods: {', '.join(sorted(registry))}. "
            "A method package registers itself in the entry-point group 'wmbench.methods'."
        )
    module_name, _, attr = registry[name].partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, attr)
    if not cls.name:
        cls.name = name
    return cls
