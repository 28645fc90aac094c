"""Crash-safe file primitives of a run directory: atomic writes, durable appends, truncation, and the run lock.

Every file the runner writes either appears whole or not at all (temp file in the same directory, flush, fsync,
rename, fsync of the directory: POSIX rename is atomic within a file system), or is an append-only log whose
length the checkpoint records, so resume can cut it back to exactly what the checkpoint covers.

A full disk (ENOSPC/EDQUOT) while writing raises `DiskFullError` after removing the partial temp file, so the
previous version of the file (e.g. the previous checkpoint) stays intact.

`RunLock` keeps two processes out of one run directory. The lock file holds host, pid and a heartbeat that a
daemon thread refreshes; a lock is stale when its process is gone (same host) or its heartbeat is older than
`stale_after` seconds (any host, e.g. a dead node of a cluster sharing the file system).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(WmbenchError, OSError):
    """No space left while writing a run file; the previous version of the file is intact."""


class RunLocked(WmbenchError, RuntimeError):
    """Another live process holds the run directory's lock."""


def _raise_disk_full(path: Path, e: OSError) -> None:
    if e.errno in _DISK_FULL:
        raise DiskFullError(
            f"no space left on the device while writing {path} ({e.strerror}); the previous version is intact. "
            "Free disk space (or use another --root) and run the same command again to resume."
        ) from e


def fsync_dir(directory: Path) -> None:
    """Make a rename or file creation in `directory` durable."""
    with contextlib.suppress(OSError):  # some file systems (and Windows) cannot open directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator[Any]:
    """Open a temp file next to `path`; on success fsync and rename it over `path`, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            _raise_disk_full(path, e)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def append_text(path: Path | str, text: str) -> int:
    """Append `text` (flushed to the OS, not fsynced: `fsync_file` before recording the length in a checkpoint)."""
    path = Path(path)
    try:
        with open(path, "ab") as f:
            f.write(text.encode())
            return f.tell()
    except OSError as e:
        _raise_disk_full(path, e)
        raise


def fsync_file(path: Path | str) -> int:
    """Make a file's content durable; return its length (what a checkpoint may then rely on)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def file_length(path: Path | str) -> int:
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0


def truncate(path: Path | str, length: int) -> None:
    """Cut an append-only log back to `length` bytes (what a checkpoint covers); create it if missing."""
    path = Path(path)
    if not path.exists():
        if length:
            raise FileNotFoundError(f"{path} is missing but the checkpoint covers {length} bytes of it")
        path.touch()
        return
    if path.stat().st_size < length:
        raise ValueError(f"{path} has {path.stat().st_size} bytes, fewer than the {length} its checkpoint covers")
    with open(path, "r+b") as f:
        f.truncate(length)
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # A killed process stays in the table as a zombie until its parent (or init) reaps it; it holds nothing.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    return stat[stat.rindex(")") + 2 :].split(" ", 1)[0] != "Z"


class RunLock:
    """Exclusive lock on a run directory: `lock.json` with host, pid, started and heartbeat (Unix time)."""

    def __init__(self, directory: Path | str, heartbeat_every: float = 30.0, stale_after: float = 300.0):
        self.path = Path(directory) / "lock.json"
        self.heartbeat_every = heartbeat_every
        self.stale_after = stale_after
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    def _record(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self._started, "heartbeat": time.time()}

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return None

    def is_stale(self, info: dict[str, Any] | None) -> bool:
        if info is None:  # unreadable: a crash between create and write; only the heartbeat age can tell
            try:
                return time.time() - self.path.stat().st_mtime > self.stale_after
            except FileNotFoundError:
                return True
        age = time.time() - float(info.get("heartbeat", 0))
        if info.get("host") == self.host and not _pid_alive(int(info.get("pid", -1))):
            return True
        return age > self.stale_after

    def acquire(self) -> None:
        self._started = time.time()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is not None and info.get("host") == self.host and info.get("pid") == self.pid:
                    break  # re-entrant within one process
                if not self.is_stale(info):
                    who = f"pid {info.get('pid')} on {info.get('host')}" if info else "another process"
                    raise RunLocked(
                        f"run directory {self.path.parent} is in use by {who} (lock {self.path}). Wait for it to "
                        f"finish, or if that process is dead, delete {self.path} (stale locks are taken over "
                        f"automatically after {self.stale_after:.0f} s without a heartbeat)."
                    ) from None
                # Stale: take it over by replacing it atomically, then check no one else did the same.
                atomic_write_json(self.path, self._record())
                time.sleep(0.05)
                info = self.holder()
                if info and info.get("host") == self.host and info.get("pid") == self.pid:
                    break
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._record(), f)
                f.flush()
                os.fsync(f.fileno())
            break
        else:
            raise RunLocked(f"could not take the lock {self.path}: other processes keep taking it")
        self._held = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="wmbench-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            with contextlib.suppress(OSError):
                atomic_write_json(self.path, self._record())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._held:
            info = self.holder()
            if info and info.get("pid") == self.pid and info.get("host") == self.host:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self._held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
