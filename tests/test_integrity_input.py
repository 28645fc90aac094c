"""Bad input (issue 29.3, 29.4): every value below gives one `error: ...` line naming the value and the fix, exit
code 2, no traceback, and leaves nothing behind that blocks --root. Config value ranges are declared once per field
(wmbench.config.bounded) and checked by the config system for every method."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest
from integrity_support import METHOD, PROTOCOL, TASK, cli, one_error_line, run_argv

from wmbench.config import ConfigError, bounded, make_config
from wmbench.runner import run_dir_for


def test_root_that_is_a_file(tmp_path, capsys):
    root = tmp_path / "afile"
    root.write_text("mine")
    code, _, err = cli(run_argv(root), capsys)
    assert code == 2
    assert one_error_line(err) == (
        f"error: cannot use the run directory {run_dir_for(root, PROTOCOL, TASK, METHOD, 0)} under --root "
        f"{str(root)!r}: {root} is a file, not a directory; move it away or pass another --root"
    )
    assert root.read_text() == "mine"


def test_root_in_proc_self(capsys):
    code, _, err = cli(run_argv("/proc/self"), capsys)
    assert code == 2
    line = one_error_line(err)
    assert "cannot use the run directory /proc/self/fake@1/" in line and "pass a writable directory as --root" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_root(tmp_path, capsys):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        code, _, err = cli(run_argv(root), capsys)
    finally:
        root.chmod(0o755)
    assert code == 2 and "Permission denied; pass a writable directory as --root" in one_error_line(err)
    assert list(root.iterdir()) == []


def test_read_only_run_directory(tmp_path, capsys, monkeypatch):
    """As root (CI containers) chmod does not stop writes: the lock file's creation is made to fail instead."""
    import wmbench.io

    real_open = os.open

    def deny(path, flags, *args):
        if str(path).endswith("lock.json"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(wmbench.io.os, "open", deny)
    code, _, err = cli(run_argv(tmp_path), capsys)
    assert code == 2
    assert "Permission denied; pass a writable directory as --root (e.g. --root runs)" in one_error_line(err)


def test_seed_directory_that_is_a_file(tmp_path, capsys):
    seed_dir = run_dir_for(tmp_path, PROTOCOL, TASK, METHOD, 0)
    seed_dir.parent.mkdir(parents=True)
    seed_dir.write_text("not a run")
    code, _, err = cli(run_argv(tmp_path), capsys)
    assert code == 2
    assert f"{seed_dir} is a file, not a directory; move it away or pass another --root" in one_error_line(err)
    code, _, err = cli(run_argv(tmp_path, "--steps", "60", seed="1"), capsys)  # the root is not blocked
    assert code == 0, err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "is damaged: it holds list [1, 2], not a JSON object"),
        ('{"config": "fast"}', "is damaged: 'config' is 'fast', expected an object"),
        ('{"resumes": "many"}', "is damaged: 'resumes' is 'many', expected an integer"),
        ('{"status": "done"}', "is damaged: 'status' is 'done', expected running/paused/finished/failed"),
        ("{not json", "is damaged (not JSON: "),
    ],
)
def test_run_json_of_the_wrong_shape(tmp_path, capsys, content, message):
    d = run_dir_for(tmp_path, PROTOCOL, TASK, METHOD, 0)
    d.mkdir(parents=True)
    (d / "run.json").write_text(content)
    code, _, err = cli(run_argv(tmp_path), capsys)
    line = one_error_line(err)
    assert code == 2 and f"error: {d / 'run.json'} {message}" in line
    assert f"move {d} aside (or delete it) to start that run over, or use a new --root" in line
    assert (d / "run.json").read_text() == content


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "-1"], "--threads must be at least 1, got -1; omit it to let torch choose"),
        (["--threads", "0"], "--threads must be at least 1, got 0; omit it to let torch choose"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1 agent step, got 0; omit it for the "
                                      "default (10% of the budget)"),
        (["--checkpoint-minutes", "0"], "--checkpoint-minutes must be a positive number of minutes, got 0.0; omit "
                                          "it for the default (5)"),
        (["--checkpoint-minutes", "nan"], "--checkpoint-minutes must be a positive number of minutes, got nan; omit "
                                            "it for the default (5)"),
        (["--device", "tpu"], "--device 'tpu' is not a device wmbench runs on; use cpu, cuda, cuda:N or mps"),
        (["--steps", "0"], "--steps must be between 1 and 2**53 agent steps, got 0"),
        (["--set", "lr=nan"], "config key 'lr': nan is not a finite number; set a finite value (e.g. --set lr=0.001)"),
    ],
)
def test_run_arguments_out_of_range(tmp_path, capsys, argv, message):
    code, _, err = cli(run_argv(tmp_path, *argv), capsys)
    assert code == 2 and one_error_line(err) == f"error: {message}"
    assert not (tmp_path / PROTOCOL).exists()


@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**70)])
def test_seed_out_of_range(tmp_path, capsys, seed):
    code, _, err = cli(run_argv(tmp_path, seed=seed), capsys)
    assert code == 2 and one_error_line(err) == (
        f"error: --seed {int(seed)} is out of range: a seed index is an integer from 0 to 2**63-1 (e.g. --seed 0)"
    )
    assert not (tmp_path / PROTOCOL).exists()


def test_empty_root(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(run_argv(""), capsys)
    assert code == 2 and one_error_line(err) == (
        "error: --root '' is empty; pass the directory that holds run directories, e.g. --root runs"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=-4", "config key 'batch_size': -4 is out of range; it must be >= 1 and <= 65536 (e.g. --set "
                          "batch_size=16)"),
        ("batch_size=0", "config key 'batch_size': 0 is out of range; it must be >= 1 and <= 65536"),
        ("batch_size=99999999999999999999", "config key 'batch_size': 99999999999999999999 is out of range"),
        ("model_lr=nan", "config key 'model_lr': nan is not a finite number; set a finite value (e.g. --set "
                         "model_lr=0.0001)"),
        ("model_lr=-1", "config key 'model_lr': -1.0 is out of range; it must be >= 0 and <= 1"),
        ("batch_length=1000000", "config key 'batch_length': 1000000 is out of range; it must be >= 2 and <= 4096"),
    ],
)
def test_dreamerv3_settings_out_of_range(tmp_path, capsys, override, message):
    argv = ["run", "dreamerv3", PROTOCOL, "--task", TASK, "--seed", "0", "--root", str(tmp_path), "--no-progress",
            "--set", override]
    code, _, err = cli(argv, capsys)
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / PROTOCOL).exists()


def test_ranges_are_declared_once_per_field_and_checked_for_any_config():
    @dataclass(frozen=True)
    class AnyMethodConfig:
        units: int = bounded(8, low=1, high=64)
        rate: float = bounded(0.5, low=0, high=1)
        free: float = 2.0  # no declared range: finite is still required
        big: int = 3  # no declared range: 64-bit is still required

    assert make_config(AnyMethodConfig, ["units=64", "rate=0", "free=-7.5"]).free == -7.5
    for override, message in [
        ("units=65", "'units': 65 is out of range; it must be >= 1 and <= 64 (e.g. --set units=8)"),
        ("rate=1.5", "'rate': 1.5 is out of range; it must be >= 0 and <= 1"),
        ("free=inf", "'free': inf is not a finite number"),
        ("big=9223372036854775808", "'big': 9223372036854775808 does not fit in a 64-bit integer"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            make_config(AnyMethodConfig, [override])


def test_unversioned_protocol_names_its_version(tmp_path, capsys):
    argv = ["run", METHOD, "fake", "--task", TASK, "--seed", "0", "--root", str(tmp_path), "--no-progress",
            "--steps", "60"]
    code, _, err = cli(argv, capsys)
    assert code == 0
    assert "note: protocol 'fake' resolved to fake@1, its latest version; name fake@1 to pin it" in err
    code, _, err = cli(run_argv(tmp_path, "--steps", "60"), capsys)
    assert code == 0 and "note: protocol" not in err


def test_errors_leave_run_json_readable_by_other_tools(tmp_path, capsys):
    """The damaged run.json is reported, never rewritten: the user's file is evidence."""
    d = run_dir_for(tmp_path, PROTOCOL, TASK, METHOD, 0)
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"config": "fast"}))
    cli(run_argv(tmp_path), capsys)
    assert json.loads((d / "run.json").read_text()) == {"config": "fast"}
    assert sorted(p.name for p in d.iterdir()) == ["run.json"]  # no lock, no logs: nothing else was started
