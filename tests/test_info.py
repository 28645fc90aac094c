"""`wmbench list` / `wmbench doctor`: what they print, that `list` stays light, and how failures read."""

import subprocess
import sys
import types

import pytest

from wmbench import cli, envs
from wmbench.envs import SuiteNotInstalled
from wmbench.info import InfoError, cli_doctor, cli_list
from wmbench.protocols import list_protocols, load_protocol


def test_list_protocols_shows_id_suite_tasks_budget_and_hash(capsys):
    assert cli_list(["protocols"]) == 0
    out = capsys.readouterr().out
    for pid in list_protocols():
        p = load_protocol(pid)
        line = next(line for line in out.splitlines() if line.startswith(pid + " "))
        assert p.suite in line and p.hash in line and f" {len(p.tasks)} " in line
    atari = next(line for line in out.splitlines() if line.startswith("atari100k@1 "))
    assert "100k agent steps = 400k frames" in atari  # 100,000 decisions x action repeat 4
    dmc = next(line for line in out.splitlines() if line.startswith("dmc_vision@1 "))
    assert "500k agent steps = 1M env_steps" in dmc  # 500,000 decisions x action repeat 2
    assert " yes" in next(line for line in out.splitlines() if line.startswith("fake@1 "))


def test_list_protocols_says_which_suites_are_missing(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "minerl" else real(name, *a))
    assert cli_list(["protocols"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("minecraft_diamond@1 "))
    assert line.endswith("no (wmbench doctor)")


def test_list_suites_and_methods(capsys):
    assert cli_list(["suites"]) == 0
    out = capsys.readouterr().out
    atari = next(line for line in out.splitlines() if line.startswith("atari "))
    assert " 55 " in atari and "atari100k@1, atari100k_twm@1, atari200m@1" in atari and "pip install" in atari  # 55: atari200m
    assert cli_list(["methods"]) == 0
    out = capsys.readouterr().out
    random_line = next(line for line in out.splitlines() if line.startswith("random "))
    assert "wmbench_baselines.random_agent:RandomAgent" in random_line and "(none)" in random_line


def test_list_everything_imports_no_simulator_or_torch():
    code = (
        "import sys; from wmbench.info import cli_list; cli_list([]); "
        "print('HEAVY', sorted(m for m in ('torch', 'ale_py', 'dm_control', 'mujoco') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "protocols:" in out and "suites:" in out and "methods" in out
    assert "HEAVY []" in out


def test_unknown_list_target_names_the_choices(capsys):
    with pytest.raises(InfoError, match="Did you mean: protocols"):
        cli_list(["protocol"])
    assert cli.main(["list", "nonsense"]) == 2
    assert "protocols, suites, methods" in capsys.readouterr().err


def test_doctor_reports_every_suite_with_its_install_command(capsys, monkeypatch):
    missing = types.ModuleType("wmbench_test_missing_suite")
    missing.INSTALL_HINT = "pip install imaginary-sim==1.0"

    def check_installed():
        raise SuiteNotInstalled(f"imaginary-sim is missing. Install: {missing.INSTALL_HINT}")

    missing.check_installed = check_installed
    monkeypatch.setitem(sys.modules, "wmbench_test_missing_suite", missing)
    monkeypatch.setitem(envs._registry(), "imaginary", "wmbench_test_missing_suite")
    assert cli_doctor([]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line for line in out.splitlines() if line and line.split()[0] in envs.suite_names()
    }
    assert set(rows) == set(envs.suite_names())
    assert "not installed" in rows["imaginary"] and "pip install imaginary-sim==1.0" in rows["imaginary"]
    assert rows["imaginary"].count("pip install imaginary-sim==1.0") == 1  # in the install column, not twice
    assert " installed " in rows["fake"]
    for name in envs.suite_names():  # every suite, installed or not, with the command that installs it
        assert envs.suite_module(name).INSTALL_HINT in rows[name], name
    assert "MUJOCO_GL" in out
    import torch

    assert f"torch {torch.__version__}" in out
    assert "CUDA" in out and "bf16" in out


def test_missing_memory_maze_shows_in_list_and_doctor_with_its_install_command(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "memory_maze" else real(name, *a))
    assert cli_list(["protocols"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("memory_maze@1 "))
    assert " memory_maze " in line and " 4 " in line and line.endswith("no (wmbench doctor)")
    assert cli_doctor([]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("memory_maze "))
    assert "not installed" in row and "needs memory_maze" in row and "pip install 'wmbench[memory_maze]'" in row


def test_list_protocols_names_missing_video_folders(capsys, monkeypatch, tmp_path):
    from wmbench.info import suite_available

    if suite_available("distracting") != "yes":
        pytest.skip("dm_control is not installed: distractor protocols show the suite as missing instead")
    monkeypatch.setenv("WMBENCH_VIDEO_DIR", str(tmp_path))
    assert cli_list(["protocols"]) == 0
    lines = capsys.readouterr().out.splitlines()
    natural = next(line for line in lines if line.startswith("dmc_natural_bg@2 "))
    assert f"no: missing {tmp_path / 'kinetics_driving_car'}, {tmp_path / 'kinetics_driving_car_test'}" in natural
    assert next(line for line in lines if line.startswith("dmc_natural_bg_procedural@2 ")).endswith(" yes")
    (tmp_path / "kinetics_driving_car").mkdir()
    (tmp_path / "kinetics_driving_car_test").mkdir()
    assert cli_list(["protocols"]) == 0
    assert next(line for line in capsys.readouterr().out.splitlines() if line.startswith("dmc_natural_bg@2 ")).endswith(
        " yes"
    )
