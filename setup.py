"""Package discovery: `wmbench/` as `wmbench`, `baselines/` as `wmbench_baselines` (with all subpackages)."""

from setuptools import find_packages, setup

harness = find_packages(".", include=["wmbench", "wmbench.*"])
methods = ["wmbench_baselines"] + [f"wmbench_baselines.{p}" for p in find_packages("baselines")]

setup(
    packages=harness + methods,
    package_dir={"wmbench_baselines": "baselines"},
    # recipes are data files beside their method (wmbench.recipes finds them through the method's package)
    package_data={"wmbench": ["py.typed"], "wmbench_baselines": ["recipes/*/*.toml"]},
)
