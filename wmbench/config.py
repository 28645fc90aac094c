"""Method configuration: frozen dataclasses with named size presets and dotted `--set key=value` overrides.

A method's config class is a frozen dataclass (fields may be nested frozen dataclasses) whose defaults are the
paper's. It may declare `PRESETS: ClassVar[dict[str, dict[str, Any]]]`, named bundles of dotted overrides
(e.g. DreamerV3 `size12m`). `make_config(cls, ["preset=size12m", "lr=1e-4"])` applies the preset first, then the
other overrides in order. Unknown keys and values of the wrong type raise `ConfigError` naming the key, the
expected type and close matches; a config class may explain keys it deliberately lacks in `KEY_NOTES`.

Value ranges belong to the field that holds the value: `batch_size: int = bounded(16, low=1)` declares it once, and
every value set through this module (defaults per protocol, presets, `--set`) is checked against it, for every
method. Two rules hold for every field without a declaration: a float is finite (a NaN or infinite setting is never
meaningful) and an integer fits in 64 bits (torch and numpy cannot hold more).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from wmbench.errors import WmbenchError


class ConfigError(WmbenchError, ValueError):
    """A configuration key or value is invalid; the message says which and how to fix it."""


INT64 = (-(2**63), 2**63 - 1)


def bounded(default: Any, *, low: float | None = None, high: float | None = None, above: float | None = None) -> Any:
    """A dataclass field with a declared value range: `low <= value <= high`, `value > above` (e.g. a learning
    rate: `bounded(1e-4, above=0, high=1)`). The config system checks it whenever the field is set."""
    return dataclasses.field(default=default, metadata={"range": (low, high, above)})


def _describe_range(low: float | None, high: float | None, above: float | None) -> str:
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if low is not None:
        parts.append(f">= {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return " and ".join(parts)


def check_value(f: dataclasses.Field, value: Any, key: str) -> None:
    """Raise ConfigError if `value` is outside field `f`'s declared range (or not finite / not a 64-bit int)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    low, high, above = f.metadata.get("range", (None, None, None))
    example = f"--set {key}={f.default!r}" if f.default is not dataclasses.MISSING else f"--set {key}=..."
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"config key {key!r}: {v} is not a finite number; set a finite value (e.g. {example})")
        if (low is not None and v < low) or (high is not None and v > high) or (above is not None and v <= above):
            raise ConfigError(
                f"config key {key!r}: {v!r} is out of range; it must be {_describe_range(low, high, above)} "
                f"(e.g. {example})"
            )
        if isinstance(v, int) and not INT64[0] <= v <= INT64[1]:
            raise ConfigError(f"config key {key!r}: {v} does not fit in a 64-bit integer; set a smaller value (e.g. {example})")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a config class accepts (nested dataclasses expanded)."""
    keys = []
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += all_keys(tp, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown_key(cls: type, key: str) -> ConfigError:
    # a method may explain keys that users carry over from a related method (e.g. discrete-latent settings given
    # to a Gaussian-latent method): `KEY_NOTES: ClassVar[dict[str, str]]` on its config class
    note = getattr(cls, "KEY_NOTES", {}).get(key)
    if note:
        return ConfigError(f"config key {key!r} is not a {cls.__name__} setting: {note}")
    keys = all_keys(cls) + ["preset"]
    close = difflib.get_close_matches(key, keys, n=4, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r} for {cls.__name__}.{hint} Valid keys: {', '.join(keys)}")


def coerce(value: Any, tp: Any, key: str = "?") -> Any:
    """Convert `value` (often a string from the command line) to type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key {key!r}: value {value!r} matches none of {tp}")
    if origin is typing.Literal:
        for arg in args:
            if value == arg or (isinstance(value, str) and str(arg) == value):
                return arg
        raise ConfigError(f"config key {key!r}: value {value!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"config key {key!r}: cannot parse {value!r} as a list ({e})") from e
            elif text.startswith("("):
                value = [v for v in text.strip("()").split(",") if v.strip()]
            else:
                value = [v for v in text.split(",") if v.strip()] if text else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list like 1,2,3, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"config key {key!r}: expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
        inner = args[0] if args else Any
        seq = [coerce(v, inner, key) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config key {key!r} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    f = None
                if f is not None and f.is_integer():
                    return int(f)
        raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} expects a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"config key {key!r}: cannot convert {value!r} to {tp}")


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """`["a.b=1", "c=x"]` or a mapping -> ordered (key, raw value) pairs."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        return list(items.items())
    pairs = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            pairs.append(item)
            continue
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. --set batch_size=16)")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value.strip()))
    return pairs


def _set(config: Any, key: str, value: Any, root_cls: type, full_key: str) -> Any:
    head, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(config)}
    if head not in names:
        raise _unknown_key(root_cls, full_key)
    hints = _field_types(type(config))
    tp = hints[head]
    if rest:
        sub = getattr(config, head)
        if not dataclasses.is_dataclass(sub):
            raise _unknown_key(root_cls, full_key)
        return dataclasses.replace(config, **{head: _set(sub, rest, value, root_cls, full_key)})
    if dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return dataclasses.replace(config, **{head: apply_overrides(getattr(config, head), value)})
        raise ConfigError(f"config key {full_key!r} is a group; set its fields, e.g. {full_key}.<field>=...")
    value = coerce(value, tp, full_key)
    check_value(next(f for f in dataclasses.fields(config) if f.name == head), value, full_key)
    return dataclasses.replace(config, **{head: value})


def apply_overrides(config: Any, overrides: Iterable[str] | Mapping[str, Any] | None) -> Any:
    """Return a copy of frozen dataclass `config` with dotted overrides applied (presets via key `preset`)."""
    cls = type(config)
    for key, value in parse_overrides(overrides):
        if key == "preset":
            presets = getattr(cls, "PRESETS", {})
            if value not in presets:
                close = difflib.get_close_matches(str(value), list(presets), n=3, cutoff=0.4)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"unknown preset {value!r} for {cls.__name__}.{hint} Presets: {', '.join(presets) or '(none)'}"
                )
            config = apply_overrides(config, presets[value])
            if "preset" in {f.name for f in dataclasses.fields(config)}:
                config = dataclasses.replace(config, preset=value)
            continue
        config = _set(config, key, value, cls, key)
    return config


def make_config(
    cls: type,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Any:
    """Default config of `cls`, then `defaults` (e.g. a method's per-protocol defaults), then the preset if one is
    named anywhere, then the other overrides in order."""
    pairs = parse_overrides(overrides)
    presets = [(k, v) for k, v in pairs if k == "preset"]
    others = [(k, v) for k, v in pairs if k != "preset"]
    return apply_overrides(apply_overrides(cls(), defaults), presets[-1:] + others)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict (`to_dict`, run.json) as {dotted key: value}, the keys `--set` takes."""
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready nested dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def differing_keys(config: Any, recorded: Mapping[str, Any]) -> list[str]:
    """Top-level keys whose value in `config` differs from `recorded` (a `to_dict` output, e.g. a checkpoint's);
    keys `recorded` lacks are skipped. For messages that say why a checkpoint does not fit a config."""
    ours = to_dict(config)
    return sorted(k for k in ours if k in recorded and recorded[k] != ours[k])


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config from `to_dict` output (unknown keys are errors)."""
    flat: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, Mapping):
                walk(v, prefix + k + ".")
            else:
                flat[prefix + k] = v

    walk(data, "")
    preset = flat.pop("preset", None)
    config = apply_overrides(cls(), flat)
    if preset is not None:
        config = dataclasses.replace(config, preset=preset)
    return config
