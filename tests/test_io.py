"""Crash-safe writes and the run lock."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from wmbench.io import (
    DiskFullError,
    RunLock,
    RunLocked,
    atomic_open,
    atomic_write_text,
    truncate,
)


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new content")
    assert p.read_text() == "new content"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_previous_version_and_no_temp_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")
    with pytest.raises(KeyError), atomic_open(p, "w") as f:
        f.write("half")
        raise KeyError("crash mid-write")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_disk_full_is_a_clear_error_and_keeps_previous_version(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")
    with pytest.raises(DiskFullError, match="a.txt"), atomic_open(p, "w") as f:
        f.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_truncate_cuts_back_and_refuses_short_files(tmp_path):
    p = tmp_path / "log"
    p.write_text("line1\nline2\n")
    truncate(p, 6)
    assert p.read_text() == "line1\n"
    with pytest.raises(ValueError, match="fewer"):
        truncate(p, 100)


def _write_lock(directory, **info):
    (directory / "lock.json").write_text(json.dumps(info))


def test_live_lock_refuses_second_holder(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write_lock(tmp_path, host=socket.gethostname(), pid=sleeper.pid, started=0, heartbeat=time.time())
        with pytest.raises(RunLocked, match=f"pid {sleeper.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_of_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path, host=socket.gethostname(), pid=dead.pid, started=0, heartbeat=time.time())
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / "lock.json").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "lock.json").exists()


def test_other_host_lock_stale_only_by_heartbeat_age(tmp_path):
    _write_lock(tmp_path, host="elsewhere", pid=1, started=0, heartbeat=time.time())
    with pytest.raises(RunLocked, match="elsewhere"):
        RunLock(tmp_path, stale_after=60).acquire()
    _write_lock(tmp_path, host="elsewhere", pid=1, started=0, heartbeat=time.time() - 61)
    with RunLock(tmp_path, stale_after=60):
        assert json.loads((tmp_path / "lock.json").read_text())["host"] == socket.gethostname()


def test_heartbeat_refreshes(tmp_path):
    with RunLock(tmp_path, heartbeat_every=0.05):
        first = json.loads((tmp_path / "lock.json").read_text())["heartbeat"]
        time.sleep(0.3)
        later = json.loads((tmp_path / "lock.json").read_text())["heartbeat"]
    assert later > first


def test_zombie_process_does_not_hold_a_lock():
    from wmbench.io import _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while time.time() < deadline:  # exited but not reaped: a zombie
        if open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    assert not _pid_alive(child.pid)
    child.wait()
    assert _pid_alive(os.getpid())
