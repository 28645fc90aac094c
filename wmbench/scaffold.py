"""`wmbench new-method NAME`: scaffold an installable method package that plugs into the harness.

The package registers its class in the entry-point group `wmbench.methods`, so after `pip install -e DIR` it is
listed by `wmbench list methods` and runs with `wmbench run NAME PROTOCOL ...` without touching wmbench itself.
The generated method is a working uniform-random policy with the contract's hooks marked where the algorithm goes,
plus a test that runs it through the harness's shared method checks (`wmbench.testing.check_method`).
"""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path

from wmbench.errors import WmbenchError

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{name}: a world-model RL method for wmbench"
requires-python = ">=3.11"
dependencies = ["wmbench"]

[project.entry-points."wmbench.methods"]
{name} = "{module}.method:{cls}"

[tool.setuptools]
packages = ["{module}"]
"""

_METHOD = '''\
"""{cls}: <one line on the method and its paper>.

The harness calls `policy` every env step and `update` after it; everything else (env, protocol, replay,
checkpoints, scores) is the harness's. Shared blocks (RSSM, distributions, lambda-returns, ensembles, planners)
come from `wmbench.nn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from wmbench.method import Method
from wmbench.seeding import derive_seed, generator_state, set_generator_state


@dataclass(frozen=True)
class {cls}Config:
    """Defaults are the paper's; presets are named bundles of dotted overrides."""

    preset: str = "default"
    batch_size: int = 16
    train_every: int = 1
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {{"tiny": {{"batch_size": 4}}}}


class {cls}(Method):
    name = "{name}"
    Config = {cls}Config

    @classmethod
    def supports(cls, obs_space, act_space):
        return None  # return a reason string for spaces this method cannot handle

    def __init__(self, obs_space, act_space, config, device="cpu", seed=0):
        super().__init__(obs_space, act_space, config, device, seed)
        self.rng = np.random.default_rng(derive_seed(seed, "{name}"))
        self.updates = 0

    def policy(self, obs, state, mode="train"):
        # Replace with the method's policy; obs entries are batched (leading dim = number of envs).
        batch = len(obs["is_first"])
        if hasattr(self.act_space, "n"):
            return self.rng.integers(0, self.act_space.n, size=batch), state
        low, high = self.act_space.low, self.act_space.high
        return self.rng.uniform(low, high, size=(batch, *self.act_space.shape)).astype(np.float32), state

    def update(self, replay, step):
        # The method owns its schedule: e.g. train every `train_every` steps once enough data is stored.
        if step % self.config.train_every or len(replay) < 2:
            return {{}}
        self.updates += 1
        return {{"updates": float(self.updates)}}

    def state_dict(self):
        return {{"rng": generator_state(self.rng), "updates": self.updates}}

    def load_state_dict(self, state):
        set_generator_state(self.rng, state["rng"])
        self.updates = int(state["updates"])
'''

_TEST = '''\
from wmbench.testing import check_method


def test_{name}_passes_the_shared_method_checks(tmp_path):
    check_method("{name}", root=tmp_path, overrides=["preset=tiny"])
'''

_README = """\
# {name}

A method package for [wmbench](https://example.invalid/wmbench). Install and run:

```
pip install -e .
wmbench list methods            # shows {name}
wmbench run {name} fake@1 --task vector_discrete --seed 0 --smoke
pytest tests
```
"""


def scaffold(name: str, directory: Path) -> Path:
    """Write the package for method `name` into `directory`/wmbench-<name>/ and return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise WmbenchError(
            f"method name {name!r} must be a lowercase Python identifier (letters, digits, underscores), e.g. my_dreamer"
        )
    module = f"wmbench_{name}"
    cls = "".join(part.capitalize() for part in name.split("_")) or name
    target = Path(directory) / f"wmbench-{name.replace('_', '-')}"
    if target.exists():
        raise WmbenchError(f"{target} already exists; choose another --dir or remove it")
    (target / module).mkdir(parents=True)
    (target / "tests").mkdir()
    fields = {"name": name, "module": module, "cls": cls, "dist": f"wmbench-{name.replace('_', '-')}"}
    (target / "pyproject.toml").write_text(_PYPROJECT.format(**fields))
    (target / "README.md").write_text(_README.format(**fields))
    (target / module / "__init__.py").write_text(f'"""{name}: a wmbench method package."""\n')
    (target / module / "method.py").write_text(_METHOD.format(**fields))
    (target / "tests" / f"test_{name}.py").write_text(_TEST.format(**fields))
    return target


def cli_new_method(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wmbench new-method", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="method name, a lowercase identifier (e.g. my_dreamer)")
    parser.add_argument("--dir", default=".", help="where to create the package folder (default: .)")
    args = parser.parse_args(argv)
    target = scaffold(args.name, Path(args.dir))
    print(f"created {target}")
    print(f"next: pip install -e {target} && wmbench run {args.name} fake@1 --task vector_discrete --seed 0 --smoke")
    return 0
