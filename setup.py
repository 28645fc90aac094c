"""Package discovery: `wmbench/` as `wmbench`, `baselines/` as `wmbench_baselines` (with all subpackages), and the
shipped data as package data: `protocols/` as `wmbench/data/protocols/`, `results/published/` as
`wmbench/data/published/` (found by `wmbench.shipped`; the repository keeps one copy of each)."""

from setuptools import find_packages, setup

harness = find_packages(".", include=["wmbench", "wmbench.*"])
methods = ["wmbench_baselines"] + [f"wmbench_baselines.{p}" for p in find_packages("baselines")]
data = {"wmbench.data.protocols": "protocols", "wmbench.data.published": "results/published"}

setup(
    # only the package_data below: folders of data files (recipes/<method>/, published/curves/) are not packages, and
    # setuptools' implicit inclusion would warn that they are missing from `packages`
    include_package_data=False,
    packages=harness + methods + list(data),
    package_dir={"wmbench_baselines": "baselines", **data},
    # recipes are data files beside their method (wmbench.recipes finds them through the method's package)
    package_data={
        "wmbench": ["py.typed"],
        "wmbench_baselines": ["recipes/*/*.toml"],
        "wmbench.data.protocols": ["*.toml"],
        "wmbench.data.published": ["*.csv", "*.md", "curves/*.csv.gz"],
    },
)
