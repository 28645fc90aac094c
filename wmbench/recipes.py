"""Recipes: the complete method settings behind one published source, stored as data beside the method.

A protocol fixes what makes scores comparable; a recipe fixes what made one published curve (docs/design.md,
"Recipes"). A recipe is a TOML file `<name>@<version>.toml` in the folder `recipes/<method>/` of the package that
holds the method's module (for the shipped methods `baselines/recipes/<method>/`, installed as package data of
`wmbench_baselines`):

    name = "dreamerv3_2023_dmc_proprio"      # must equal the file name's stem before '@'
    version = 1                              # and its version after '@'
    method = "dreamerv3"                     # registered method name
    protocol = "dmc_proprio@1"               # the protocol the source's runs correspond to
    sources = ["dreamerv3_2023:dmcproprio_dreamerv3"]   # published source ids (results/published/SOURCES.csv)
    origin = "danijar/dreamerv3 commit 8fa35f8, dreamerv3/configs.yaml"   # where the values were read
    description = "..."
    [config]                                 # method config keys (as --set takes them) -> values
    preset = "size1m"
    train_ratio = 512
    [provenance]                             # one entry per [config] key: where that value comes from
    train_ratio = "configs.yaml dmc_proprio: run.train_ratio 512"

`wmbench run METHOD PROTOCOL --recipe NAME` resolves the config as: paper defaults, the method's per-protocol
defaults, then the recipe, then `--set` on top (`resolve_config`); run.json records under `recipe` the recipe's id,
file, content hash, sources and the `--set` items applied on top (`Recipe.record`). `recipe_differences(resolved_config, recipe)` lists the keys where a run's resolved
config differs from the recipe: `wmbench reproduce` uses it to call a run "not comparable" with a source the
recipe reproduces (or to state the reduced keys when a reduced recipe is allowed).

Method-agnostic: a method's recipes are found through its class's module (`get_method(name).__module__`), so a
third-party method package ships its own `recipes/<method>/` folder the same way.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmbench.config import ConfigError, all_keys, flatten, make_config, to_dict
from wmbench.errors import WmbenchError


class RecipeError(WmbenchError, ValueError):
    """A recipe file is missing or invalid; the message names the file, the bad value and close matches."""


FIELDS = ("name", "version", "method", "protocol", "sources", "origin", "description", "config", "provenance")
REQUIRED = ("name", "version", "method", "protocol", "sources", "origin", "config", "provenance")


@dataclass(frozen=True)
class Recipe:
    """One validated recipe file (see the module docstring); `id` is `name@version`."""

    name: str
    version: int
    method: str
    protocol: str
    sources: tuple[str, ...]
    origin: str
    description: str
    config: Mapping[str, Any]  # dotted config key -> value, in file order
    provenance: Mapping[str, str]  # dotted config key -> where the value comes from
    path: Path = field(compare=False)
    hash: str = ""  # sha256 of the file's bytes, first 16 hex digits

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def overrides(self) -> list[tuple[str, Any]]:
        """(key, value) pairs in the order of `make_config` overrides."""
        return list(self.config.items())

    def record(self) -> dict[str, Any]:
        """What run.json stores under `recipe`."""
        return {"name": self.id, "file": self.path.name, "hash": self.hash, "sources": list(self.sources)}


def _close(value: str, choices: Sequence[str], n: int = 4) -> str:
    close = difflib.get_close_matches(value, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def recipe_dir(method: str) -> Path:
    """The folder holding `method`'s recipe files: `recipes/<method>/` beside the method's module."""
    from wmbench.method import get_method

    cls = get_method(method)
    module = importlib.import_module(cls.__module__)
    package_root = Path(module.__file__).resolve().parent
    return package_root / "recipes" / method


def _files(method: str) -> dict[str, Path]:
    folder = recipe_dir(method)
    return {p.stem: p for p in sorted(folder.glob("*@*.toml"))} if folder.is_dir() else {}


def recipe_names(method: str) -> list[str]:
    """Recipe ids (`name@version`) a method ships; empty if none."""
    return list(_files(method))


def published_source_ids() -> set[str]:
    """Every published source id shipped in results/published/: SOURCES.csv (curves and finals) and
    paper_tables.csv (a paper's table entries: mean and spread, no per-run scores)."""
    from wmbench.results import PUBLISHED_DIR, paper_tables

    with open(PUBLISHED_DIR / "SOURCES.csv", newline="") as f:
        return {row["source"] for row in csv.DictReader(f)} | set(paper_tables()["source"])


def parse_recipe(path: Path | str, method: str | None = None) -> Recipe:
    """Load and validate one recipe file: required fields, name/version = file name, method registered and equal to
    `method` (if given), protocol loadable, every source id present in results/published/SOURCES.csv, every config
    key a valid key of the method's config (unknown keys name close matches), every key with a provenance entry and
    every provenance entry with a key, and the values accepted by the method's config."""
    from wmbench.method import get_method
    from wmbench.protocols import load_protocol

    path = Path(path)
    where = f"recipe {path}"
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise RecipeError(f"{where} does not exist") from e
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{where} is not valid TOML: {e}") from e
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise RecipeError(f"{where}: unknown field {unknown[0]!r}.{_close(unknown[0], FIELDS)} Fields: {', '.join(FIELDS)}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise RecipeError(f"{where}: missing field {missing[0]!r} (required: {', '.join(REQUIRED)})")
    stem = f"{raw['name']}@{raw['version']}"
    if path.stem != stem:
        raise RecipeError(f"{where}: name and version say {stem!r} but the file is named {path.name!r}")
    if method is not None and raw["method"] != method:
        raise RecipeError(f"{where} is a recipe for method {raw['method']!r}, not {method!r}")
    try:
        cls = get_method(raw["method"])
    except WmbenchError as e:
        raise RecipeError(f"{where}: {e}") from e
    try:
        load_protocol(raw["protocol"])
    except WmbenchError as e:
        raise RecipeError(f"{where}: protocol {raw['protocol']!r}: {e}") from e
    sources = raw["sources"]
    if isinstance(sources, str) or not sources:
        raise RecipeError(f"{where}: 'sources' must be a non-empty list of published source ids")
    known = published_source_ids()
    for source in sources:
        if source not in known:
            raise RecipeError(
                f"{where}: published source {source!r} does not exist in results/published/SOURCES.csv."
                f"{_close(source, sorted(known))}"
            )
    config = flatten(raw["config"])
    provenance = flatten(raw["provenance"])
    keys = all_keys(cls.Config) + ["preset"]
    for key in config:
        if key not in keys:
            raise RecipeError(f"{where}: unknown config key {key!r} for method {raw['method']!r}.{_close(key, keys)}")
    for key in config:
        if key not in provenance:
            raise RecipeError(f"{where}: config key {key!r} has no [provenance] entry saying where its value comes from")
    for key in provenance:
        if key not in config:
            raise RecipeError(f"{where}: [provenance] names {key!r}, which is not in [config].{_close(key, list(config))}")
    try:
        make_config(cls.Config, list(config.items()))
    except ConfigError as e:
        raise RecipeError(f"{where}: {e}") from e
    return Recipe(
        name=raw["name"], version=int(raw["version"]), method=raw["method"], protocol=raw["protocol"],
        sources=tuple(sources), origin=raw["origin"], description=raw.get("description", ""),
        config=config, provenance={k: str(v) for k, v in provenance.items()}, path=path,
        hash=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    )


def load_recipe(method: str, name: str | Path) -> Recipe:
    """A method's recipe by id (`name@version`), by bare name (its highest version), or by path to a file."""
    if isinstance(name, Path) or str(name).endswith(".toml"):
        return parse_recipe(name, method)
    files = _files(method)
    if name in files:
        return parse_recipe(files[name], method)
    versions = sorted((int(k.rsplit("@", 1)[1]), k) for k in files if k.rsplit("@", 1)[0] == name)
    if versions:
        return parse_recipe(files[versions[-1][1]], method)
    bare = sorted({k.rsplit("@", 1)[0] for k in files})
    raise RecipeError(
        f"method {method!r} has no recipe {name!r}.{_close(str(name), list(files) + bare)} "
        f"Recipes: {', '.join(files) or '(none)'} (in {recipe_dir(method)})"
    )


def resolve_config(cls: type, protocol: Any, overrides: Sequence[Any] = (), recipe: str | Path | None = None
                   ) -> tuple[Any, dict[str, Any] | None]:
    """A run's resolved config and the recipe's run.json record (None without a recipe): paper defaults, the method's
    per-protocol defaults, the recipe's values (a preset it names applied where it stands), then `overrides`
    (`--set`) on top, so `--set preset=tiny` after a recipe shrinks it. Without a recipe this is
    `wmbench.method.method_config`. The one call the runner makes."""
    from wmbench.method import method_config

    if not recipe:
        return method_config(cls, protocol, overrides), None
    r = load_recipe(cls.name, recipe)
    if r.protocol != protocol.id:
        raise RecipeError(
            f"recipe {r.id} reproduces {', '.join(r.sources)} on protocol {r.protocol}, not {protocol.id}; "
            f"choose one of {', '.join(recipe_names(cls.name))} or run without --recipe"
        )
    defaults = [*getattr(cls.Config, "PROTOCOL_DEFAULTS", {}).get(protocol.name, {}).items(), *r.overrides()]
    config = make_config(cls.Config, list(overrides), defaults=defaults)
    return config, {**r.record(), "set": [o if isinstance(o, str) else f"{o[0]}={o[1]}" for o in overrides]}


def recipe_differences(resolved_config: Mapping[str, Any] | Any, recipe: Recipe | str | Path, method: str | None = None
                       ) -> dict[str, tuple[Any, Any]]:
    """Keys where a run's resolved config differs from what `recipe` resolves to: {key: (run_value, recipe_value)}.

    `resolved_config` is run.json's `config` (nested dict) or a config dataclass. The recipe is resolved exactly as
    a run with `--recipe` and no `--set` (paper defaults, the method's per-protocol defaults for the recipe's
    protocol, the recipe), so keys a recipe leaves at their defaults are compared too. An empty dict means the run
    used the recipe's settings: `wmbench reproduce` compares a run with a source of `recipe.sources` only then,
    and otherwise answers "not comparable" naming these keys (or "reduced: key=value ..." when a reduced recipe is
    explicitly allowed). Keys that only one side has (e.g. a run written by an older version) count as differences
(value None on the missing side); keys in the method's `Config.RECIPE_IGNORED` (e.g. DreamerV3's `compile`) are
not compared."""
    from wmbench.method import get_method
    from wmbench.protocols import load_protocol

    if not isinstance(recipe, Recipe):
        if method is None:
            raise RecipeError("recipe_differences needs `method` when the recipe is given by name")
        recipe = load_recipe(method, recipe)
    cls = get_method(recipe.method)
    config, _ = resolve_config(cls, load_protocol(recipe.protocol), (), recipe.path)
    want = flatten(to_dict(config))
    have = flatten(resolved_config if isinstance(resolved_config, Mapping) else to_dict(resolved_config))
    ignored = getattr(cls.Config, "RECIPE_IGNORED", frozenset())
    # both sides are in run.json's JSON form (tuples as lists), so plain equality compares them
    return {
        key: (have.get(key), want.get(key))
        for key in sorted(set(want) | set(have))
        if key not in ignored and (key not in have or key not in want or have[key] != want[key])
    }


def method_recipes_text(method: str) -> str:
    """Comma-separated recipe ids of a method for `wmbench list methods` ('-' if none)."""
    return ", ".join(recipe_names(method)) or "-"


__all__ = [
    "Recipe",
    "RecipeError",
    "load_recipe",
    "method_recipes_text",
    "parse_recipe",
    "published_source_ids",
    "recipe_differences",
    "recipe_dir",
    "recipe_names",
    "resolve_config",
]
