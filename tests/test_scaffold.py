import sys
import tomllib

import pytest

from wmbench.errors import WmbenchError
from wmbench.method import get_method, register
from wmbench.scaffold import scaffold
from wmbench.testing import check_method


def test_scaffolded_package_plugs_into_the_harness(tmp_path):
    pkg = scaffold("my_dreamer", tmp_path)
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    entry = meta["project"]["entry-points"]["wmbench.methods"]["my_dreamer"]
    assert entry == "wmbench_my_dreamer.method:MyDreamer"
    sys.path.insert(0, str(pkg))
    try:
        register("my_dreamer", entry)  # what `pip install -e` does through the entry point
        assert get_method("my_dreamer").Config().batch_size == 16
        check_method("my_dreamer", tmp_path / "runs", overrides=["preset=tiny"])
    finally:
        sys.path.remove(str(pkg))


@pytest.mark.parametrize("bad", ["MyMethod", "1x", "class", "a-b"])
def test_bad_names_are_rejected(tmp_path, bad):
    with pytest.raises(WmbenchError, match="lowercase Python identifier"):
        scaffold(bad, tmp_path)


def test_existing_target_is_not_overwritten(tmp_path):
    scaffold("x1", tmp_path)
    with pytest.raises(WmbenchError, match="already exists"):
        scaffold("x1", tmp_path)
