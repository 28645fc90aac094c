"""Per-protocol method defaults sit between the paper's defaults and the preset/overrides, and are recorded."""

from dataclasses import dataclass
from typing import ClassVar

from wmbench_baselines.random_agent import RandomAgent

from wmbench.method import get_method, method_config
from wmbench.protocols import load_protocol


def test_dreamerv3_train_ratio_follows_the_protocol_then_preset_then_set():
    cls = get_method("dreamerv3")
    base = cls.Config().train_ratio
    dmc, atari, fake = (load_protocol(p) for p in ("dmc_proprio@1", "atari100k@1", "fake@1"))
    assert method_config(cls, dmc).train_ratio == 512.0 != base
    assert method_config(cls, atari).train_ratio == 1024.0
    assert method_config(cls, fake).train_ratio == base  # no declared default for this protocol
    tiny = cls.Config.PRESETS["tiny"]["train_ratio"]
    assert method_config(cls, dmc, ["preset=tiny"]).train_ratio == tiny  # a preset is more specific
    assert method_config(cls, dmc, ["preset=tiny", "train_ratio=64"]).train_ratio == 64.0


@dataclass(frozen=True)
class _Cfg:
    preset: str = "default"
    ratio: float = 1.0
    PROTOCOL_DEFAULTS: ClassVar[dict] = {"fake": {"ratio": 7.0}}


class _WithDefaults(RandomAgent):
    Config = _Cfg


def test_runner_uses_and_records_the_protocol_default(tmp_path):
    import json

    from wmbench.method import register
    from wmbench.runner import run

    register("with_protocol_defaults", f"{__name__}:_WithDefaults")
    res = run("with_protocol_defaults", "fake@1", "vector_discrete", 0, tmp_path, steps=60, progress=False)
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["config"] == {"preset": "default", "ratio": 7.0}
