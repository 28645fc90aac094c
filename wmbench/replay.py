"""Replay buffer: steps stored once in a byte-bounded ring, fixed-length sequence sampling, episodic views, and
persistence as append-only chunk files that a checkpoint can cover exactly.

Layout (embodied convention, docs/contracts.md): stored step t holds the observation entries at t, the `reward`
received on arriving at t, the flags `is_first/is_last/is_terminal` at t and the `action` chosen at t.

- Storage: one preallocated array per key with `capacity` rows (capacity = `capacity_bytes` // bytes of one step,
  bookkeeping included), written in place; the oldest step is overwritten when full. Images stay uint8 and are
  never copied per sequence: `sample` gathers rows by index (numpy fancy indexing), so a [B, T] batch costs one
  gather per key.
- Several env workers may add interleaved steps: each slot links to the same worker's next slot, so a sequence
  follows one worker's stream. Sequences are contiguous in time and may cross episode boundaries (`is_first`
  marks the resets, as in DreamerV3's replay); a method that starts from a zero state treats t=0 as a start.
- `transitions()` and `episodes()` give the (s, a, r, s', terminal) pairs and the completed episodes that
  episodic model-based methods (PETS, PILCO, MBMF) fit their models to.
- Persistence: with a `directory`, every step also goes to `chunk_000000.tar.zst`, `chunk_000001.tar.zst`, ... of
  `chunk_size` steps each, each written once (atomically) when full and never rewritten. A chunk file is a
  zstd-compressed tar of one `<key>.npy` per key plus `worker.npy` (`zstd -d < f | tar x`, then `np.load`; or
  `read_chunk(path)`); chunks of runs from before this format (`chunk_000000.npz`, deflated) are still read. A
  chunk is compressed straight from the ring's rows (no per-step copy, no staging array): the ring must hold at least
  one chunk, and a step is not overwritten while a chunk write that reads it is in flight. `state_dict()` records the
  number of complete chunks plus the steps of the partial chunk still in memory; `load_state_dict` rebuilds exactly
  that replay (the same ring slots, hence the same samples) and deletes chunk files written after the checkpoint.
  The sha256 of each chunk file is computed once, as it is written, and travels with the state dict; reloading a
  chunk checks it (the bytes are read anyway), so a chunk changed or swapped after it was written is refused.
  Without a directory the state dict carries the stored steps themselves.

- Annotations (DreamerV3 2024 replay context): a method may attach per-step values that are not part of the
  experience, e.g. the latent state its policy or its last training pass computed at that step, with
  `annotate(index, values)`; `sample(..., annotations=True)` returns them beside the steps (and `index`, each
  step's global index, to write fresher values back). They are mutable, so they live in memory and travel whole
  with `state_dict()`, never in the append-only chunk files. A step never annotated reads as NaN.
- Online queue (DreamerV3 2024 `replay.online`): `sample(batch, length, online=True)` first hands out, once each and
  in the order they completed, the non-overlapping windows of `length` steps of each worker's stream (window k
  covers stream positions [k*length, (k+1)*length)) that were not handed out before, then fills the batch uniformly.
  A window whose first step was evicted before it was handed out is skipped. The cursor is saved in `state_dict()`.

Sampling uses the replay's own `np.random.Generator` (PCG64), saved in `state_dict()`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import re
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zstandard

from wmbench.errors import WmbenchError
from wmbench.io import atomic_open
from wmbench.seeding import generator_state, set_generator_state

FLAG_KEYS = ("is_first", "is_last", "is_terminal")
NON_OBS_KEYS = ("action", "reward", *FLAG_KEYS)
# Per-slot bookkeeping bytes, counted against capacity_bytes: worker (int32), seqno, next slot, global index (int64).
_BOOKKEEPING_BYTES = 4 + 8 + 8 + 8
_CHUNK_RE = re.compile(r"chunk_(\d{6,})\.(?:tar\.zst|npz)$")
# zstd level -1 (the fast levels): ~5x faster than deflate level 1 on Atari and DMC frames at a better ratio, and ~2-3.6 us
# per 64x64x3 frame cheaper than level 1 at a 2-6% lower ratio (measured on pong, ms_pacman, boxing and DMC cartpole:
# level 1 6.2-7.1 us/frame, level -1 2.6-4.6; ratios 25-199 against 25-198), about 1% of an Atari step (~365 us)
_ZSTD_LEVEL = -1


class ReplayError(WmbenchError, RuntimeError):
    """The replay cannot do what was asked (too few steps, missing or damaged chunk files); says which and why."""


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


class Replay:
    def __init__(
        self, capacity_bytes: int, directory: Path | str | None = None, chunk_size: int = 1024, seed: int = 0
    ):
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.capacity_bytes = int(capacity_bytes)
        self.directory = Path(directory) if directory is not None else None
        self.chunk_size = int(chunk_size)
        self.rng = np.random.default_rng(seed)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._reset_storage()

    # ------------------------------------------------------------------ storage
    def _reset_storage(self) -> None:
        self._data: dict[str, np.ndarray] = {}
        self._keys: tuple[str, ...] = ()
        self._keyset: frozenset[str] = frozenset()
        self._committed = 0  # ring slots whose pages are committed or being committed (_commit_ahead)
        self._commit_trigger = 0  # the slot at which _put asks for the next range to be committed
        self.capacity = 0  # steps; known once the first step fixes the layout
        self.step_bytes = 0
        self._size = 0
        self.total = 0  # steps ever added: the global index of the next step
        self._worker = np.zeros(0, np.int32)
        self._seqno = np.zeros(0, np.int64)  # position of the slot in its worker's stream
        self._next = np.zeros(0, np.int64)  # slot of the same worker's next step + 1; 0: none yet
        self._gidx = np.zeros(0, np.int64)
        self._last_slot: dict[int, int] = {}  # newest stored slot of each worker
        self._stream_len = np.zeros(0, np.int64)  # steps each worker has added (seqno of its next step)
        self._stored = np.zeros(0, np.int64)  # stored steps of each worker
        self._chunks = 0  # complete chunk files written (or being written by the background writer)
        # chunk writes in flight, with the first global step each reads from the ring; state_dict() waits for them
        self._writes: list[tuple[Future, int]] = []
        self._unsafe_from: float = np.inf  # overwriting a step >= this waits: a write in flight may still read it
        self._writer: ThreadPoolExecutor | None = None
        self._hashes: dict[int, str] = {}  # chunk index -> sha256 of its file (set by the writer thread)
        # annotations: key -> [capacity, ...] values and [capacity] written flags (np.zeros: pages are committed
        # only where written, as for the steps)
        self._notes: dict[str, np.ndarray] = {}
        self._noted: dict[str, np.ndarray] = {}
        self._online_cursor: dict[tuple[int, int], int] = {}  # (worker, window length) -> next window to hand out

    def _allocate(self, step: Mapping[str, Any]) -> None:
        if not self._keys:
            self._keys = tuple(sorted(step))
        missing = [k for k in ("action", "reward", *FLAG_KEYS) if k not in step]
        if missing:
            raise ReplayError(f"replay steps need the keys {missing} (embodied step layout, docs/contracts.md)")
        arrays = {k: np.asarray(step[k]) for k in self._keys}
        for k in FLAG_KEYS:
            arrays[k] = arrays[k].astype(bool)
        self._keyset = frozenset(self._keys)
        self.step_bytes = sum(a.nbytes for a in arrays.values()) + _BOOKKEEPING_BYTES
        self.capacity = max(1, self.capacity_bytes // self.step_bytes)
        if self.directory is not None and self.capacity < self.chunk_size:
            raise ReplayError(
                f"a replay of {self.capacity_bytes} bytes holds {self.capacity} steps of {self.step_bytes} bytes, fewer "
                f"than one chunk file ({self.chunk_size} steps), which is written from the ring: raise the replay's "
                "capacity (config replay_bytes) or lower its chunk size (config replay_chunk)"
            )
        # np.zeros is lazily committed by the OS, so an unfilled replay costs little resident memory.
        self._data = {k: _ring_zeros((self.capacity, *a.shape), a.dtype) for k, a in arrays.items()}
        self._worker = _ring_zeros(self.capacity, np.int32)
        self._seqno = _ring_zeros(self.capacity, np.int64)
        self._next = _ring_zeros(self.capacity, np.int64)  # zeros, not -1: untouched pages stay uncommitted
        self._gidx = _ring_zeros(self.capacity, np.int64)

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored steps (bounded by capacity_bytes)."""
        return self._size * self.step_bytes

    @property
    def keys(self) -> tuple[str, ...]:
        return self._keys

    def add(self, step: Mapping[str, Any], worker: int = 0) -> None:
        """Store one env step of one worker (copied; the caller may reuse its arrays)."""
        self._put(step, worker)
        if self.directory is not None and self.total - self._chunks * self.chunk_size == self.chunk_size:
            self._write_chunk()

    def _grow_workers(self, count: int) -> None:
        """Per-worker counters for at least `count` workers (new ones at zero)."""
        grow = count - len(self._stream_len)
        if grow > 0:
            self._stream_len = np.concatenate([self._stream_len, np.zeros(grow, np.int64)])
            self._stored = np.concatenate([self._stored, np.zeros(grow, np.int64)])

    def _put(self, step: Mapping[str, Any], worker: int) -> None:
        if self.capacity == 0:
            self._allocate(step)
        elif step.keys() != self._keyset:
            extra, missing = sorted(set(step) - set(self._keys)), sorted(set(self._keys) - set(step))
            raise ReplayError(f"replay step keys changed: missing {missing}, unexpected {extra}")
        worker = int(worker)
        if worker < 0:
            raise ValueError(f"worker must be >= 0, got {worker}")
        if worker >= len(self._stream_len):
            self._grow_workers(worker + 1)
        slot = self.total % self.capacity
        if slot >= self._commit_trigger:
            self._commit_ahead(slot)
        if self.total - self.capacity >= self._unsafe_from:
            self._wait_for_writes_reading(self.total - self.capacity)
        if self._size == self.capacity:  # evict the oldest step, which lives in this slot
            old = int(self._worker[slot])
            self._stored[old] -= 1
            if self._last_slot.get(old) == slot:
                del self._last_slot[old]
        for k in self._keys:
            self._data[k][slot] = step[k]
        for v in self._noted.values():  # an annotation belongs to the step it was written for, not to its slot
            v[slot] = False
        self._worker[slot] = worker
        self._seqno[slot] = self._stream_len[worker]
        self._next[slot] = 0
        self._gidx[slot] = self.total
        prev = self._last_slot.get(worker)
        if prev is not None:
            self._next[prev] = slot + 1
        self._last_slot[worker] = slot
        self._stream_len[worker] += 1
        self._stored[worker] += 1
        self.total += 1
        self._size = min(self._size + 1, self.capacity)

    def _commit_ahead(self, slot: int) -> None:
        """Keep the pages of the next ~2 MiB of rows committed before the first pass over the ring writes them.
        An untouched np.zeros page faults on its first write, one trap per 4 KiB page; MADV_POPULATE_WRITE commits a
        range in one call, and with a run directory the writer thread does it one range ahead of the write cursor,
        off the env loop's thread. With the ring in 4 KiB pages (`_ring_zeros`) committing costs ~3-4 us of system
        time per 64x64x3 frame here, and committing ahead or not measured the same in CPU time (docs/benchmarks.md).
        A row written before its commit has finished simply faults in as before. The replay stays lazily committed:
        it holds what it stored plus at most two ranges ahead."""
        rows = max(1, _COMMIT_BYTES // max(a[0].nbytes for a in self._data.values()))
        if slot >= self._committed:  # no commit covers this row (the first step, or a reload): commit its range now
            self._committed = min(self.capacity, slot + rows)
            _populate_rows(self._ring_arrays(), slot, self._committed)
        end = min(self.capacity, self._committed + rows)
        if end > self._committed:
            if self.directory is not None:
                self._executor().submit(_populate_rows, self._ring_arrays(), self._committed, end)
            else:  # an in-memory replay has no writer thread
                _populate_rows(self._ring_arrays(), self._committed, end)
            self._committed = end
        # ask for the next range when the cursor enters the last one requested; never again once all are
        self._commit_trigger = self._committed - rows if self._committed < self.capacity else self.capacity

    def _ring_arrays(self) -> tuple[np.ndarray, ...]:
        return (*self._data.values(), self._worker, self._seqno, self._next, self._gidx)

    def _executor(self) -> ThreadPoolExecutor:
        """The background thread that writes chunk files and commits ring pages ahead, in submission order."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="replay-writer")
        return self._writer

    # ----------------------------------------------------------------- sampling
    def _chronological_slots(self) -> np.ndarray:
        oldest = self.total - self._size
        return (oldest + np.arange(self._size)) % max(self.capacity, 1)

    def sample(
        self, batch: int, length: int, online: bool = False, annotations: bool = False, index: bool = False,
        start_weights: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """`batch` sequences of `length` consecutive steps of one worker, uniformly over valid start steps.

        `online`: the batch first takes the online queue's windows (module docstring). `annotations`: adds each
        annotation key. `index`: adds `index` [B, T], the global step index of every step (for `annotate`).
        `start_weights`: non-negative weights of the stored steps as start steps, oldest first (global indices
        `total - len(replay)` ... `total - 1`), renormalised over the valid starts (TWM's balanced sampling).
        """
        valid_starts = int(np.maximum(self._stored - length + 1, 0).sum()) if self._size else 0
        if valid_starts == 0:
            raise ReplayError(
                f"replay holds {self._size} steps, too few for sequences of length {length}; "
                "start training later (e.g. a larger train start / prefill)"
            )
        starts = np.empty(batch, np.int64)
        filled = self._take_online(starts, length) if online else 0
        # Rejection sampling keeps starts uniform over valid ones; almost all stored steps are valid starts.
        last_seqno = self._stream_len - 1
        if start_weights is not None and filled < batch:
            filled = self._weighted_starts(starts, filled, length, np.asarray(start_weights, np.float64), last_seqno)
        while filled < batch:
            cand = self.rng.integers(0, self._size, size=batch - filled)
            ok = self._seqno[cand] + (length - 1) <= last_seqno[self._worker[cand]]
            take = cand[ok]
            starts[filled : filled + len(take)] = take
            filled += len(take)
        slots = np.empty((batch, length), np.int64)
        slots[:, 0] = starts
        for t in range(1, length):
            slots[:, t] = self._next[slots[:, t - 1]] - 1
        out = {k: np.take(v, slots, axis=0) for k, v in self._data.items()}
        if annotations:
            out.update({k: self._read_notes(k, slots) for k in self._notes})
        if index:
            out["index"] = self._gidx[slots]
        return out

    def _weighted_starts(self, starts: np.ndarray, filled: int, length: int, weights: np.ndarray,
                         last_seqno: np.ndarray) -> int:
        if weights.shape != (self._size,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ReplayError(
                f"start_weights must be {self._size} finite non-negative weights (one per stored step, oldest "
                f"first), got shape {weights.shape}"
            )
        slots = self._chronological_slots()
        valid = self._seqno[slots] + (length - 1) <= last_seqno[self._worker[slots]]
        probs = np.where(valid, weights, 0.0)
        if probs.sum() <= 0:  # no weight on any valid start: uniform over the valid ones
            probs = valid.astype(np.float64)
        pick = self.rng.choice(self._size, size=len(starts) - filled, p=probs / probs.sum())
        starts[filled:] = slots[pick]
        return len(starts)

    def _take_online(self, starts: np.ndarray, length: int) -> int:
        """Fill `starts` with the slots of the oldest complete windows not handed out yet; returns how many."""
        if self._size == 0:
            return 0
        pending = []  # (window number, worker) of every complete window not handed out yet
        for worker in range(len(self._stream_len)):
            complete = int(self._stream_len[worker]) // length  # windows whose last step was added
            oldest = int(self._stream_len[worker] - self._stored[worker])  # seqno of the worker's oldest stored step
            first = max(self._online_cursor.get((worker, length), 0), -(-oldest // length))
            for k in range(first, complete):
                pending.append((k, worker))
        if not pending:
            return 0
        # Each worker's windows in stream order; across workers by the global index of the window's first step.
        slot_of = self._stream_slots(pending, length)
        order = sorted(range(len(pending)), key=lambda i: self._gidx[slot_of[i]])
        taken = 0
        for i in order[: len(starts)]:
            k, worker = pending[i]
            starts[taken] = slot_of[i]
            self._online_cursor[(worker, length)] = k + 1
            taken += 1
        return taken

    def _stream_slots(self, windows: list[tuple[int, int]], length: int) -> list[int]:
        """Ring slot of the first step of each (window number, worker) window, all of them still stored."""
        if len(self._stream_len) == 1:  # one worker: its stream position is the global index
            return [(k * length) % self.capacity for k, _ in windows]
        slots = self._chronological_slots()
        out = []
        cache: dict[int, np.ndarray] = {}
        for k, worker in windows:
            if worker not in cache:
                cache[worker] = slots[self._worker[slots] == worker]
            stream = cache[worker]
            oldest = int(self._stream_len[worker] - self._stored[worker])
            out.append(int(stream[k * length - oldest]))
        return out

    # -------------------------------------------------------------- annotations
    def _read_notes(self, key: str, slots: np.ndarray) -> np.ndarray:
        values = np.take(self._notes[key], slots, axis=0)
        values[~self._noted[key][slots]] = np.nan
        return values

    def annotate(self, index: np.ndarray, values: Mapping[str, np.ndarray]) -> int:
        """Attach values to stored steps by global index (`sample(..., index=True)`); steps evicted since are
        skipped. `values[key]` has shape [*index.shape, ...]. Returns how many steps were written."""
        index = np.asarray(index, np.int64)
        if self.capacity == 0:
            raise ReplayError("annotate() needs a replay that holds steps")
        flat = index.reshape(-1)
        slots = flat % self.capacity
        live = (flat >= self.total - self._size) & (flat < self.total) & (self._gidx[slots] == flat)
        for key, value in values.items():
            if key in self._data or key == "index":
                raise ReplayError(f"annotation key {key!r} is taken by the replay's steps; use another name")
            value = np.asarray(value)
            if value.shape[: index.ndim] != index.shape:
                raise ReplayError(f"annotation {key!r} has shape {value.shape}; expected {index.shape} + entry shape")
            value = value.reshape(len(flat), *value.shape[index.ndim :])
            if key not in self._notes:
                dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.float32
                self._notes[key] = _ring_zeros((self.capacity, *value.shape[1:]), dtype)
                self._noted[key] = _ring_zeros(self.capacity, bool)
            self._notes[key][slots[live]] = value[live]
            self._noted[key][slots[live]] = True
        return int(live.sum())

    # ----------------------------------------------------------- episodic views
    def _worker_streams(self) -> list[np.ndarray]:
        slots = self._chronological_slots()
        workers = self._worker[slots]
        return [slots[workers == w] for w in np.unique(workers)]

    def transitions(self) -> dict[str, np.ndarray]:
        """All stored (obs, action, reward, next_obs, terminal) pairs that lie within one episode.

        Keys: each observation entry (e.g. `vector`, `image`) at t, `action` at t, `reward` and `terminal`
        (is_terminal) on arriving at t+1, and `next_<entry>` at t+1. Chronological per worker.
        """
        if self._size == 0:
            return {}
        slots = self._chronological_slots()
        nxt = self._next[slots] - 1
        keep = nxt >= 0
        keep[keep] &= ~self._data["is_last"][slots[keep]]
        s, n = slots[keep], nxt[keep]
        obs_keys = [k for k in self._keys if k not in NON_OBS_KEYS]
        out = {k: self._data[k][s] for k in obs_keys}
        out["action"] = self._data["action"][s]
        out["reward"] = self._data["reward"][n]
        out["terminal"] = self._data["is_terminal"][n]
        out.update({f"next_{k}": self._data[k][n] for k in obs_keys})
        return out

    def episodes(self) -> list[dict[str, np.ndarray]]:
        """Completed episodes whose every step is still stored (is_first ... is_last), time-major arrays."""
        episodes = []
        for stream in self._worker_streams():
            first = np.flatnonzero(self._data["is_first"][stream])
            last = np.flatnonzero(self._data["is_last"][stream])
            for f in first:
                j = np.searchsorted(last, f)
                if j == len(last):
                    break  # episode still running
                idx = stream[f : last[j] + 1]
                episodes.append({k: v[idx] for k, v in self._data.items()})
        return episodes

    # -------------------------------------------------------------- persistence
    def _chunk_path(self, index: int) -> Path:
        """Where chunk `index` is written; `_existing_chunk_path` also finds chunks of the older .npz format."""
        assert self.directory is not None
        return self.directory / f"chunk_{index:06d}.tar.zst"

    def _existing_chunk_path(self, index: int) -> Path:
        path = self._chunk_path(index)
        legacy = path.with_name(f"chunk_{index:06d}.npz")
        return legacy if not path.exists() and legacy.exists() else path

    def _write_chunk(self) -> None:
        """Hand the newest complete chunk to the background writer, as views of the ring's rows where they are
        contiguous. Compressing costs about as much as simulating the steps on a fast simulator, so a thread does it
        (zstd releases the GIL); `_put` waits before overwriting a row a write in flight still reads, and
        state_dict() waits for all of them, so a checkpoint only ever counts complete files."""
        start = self._chunks * self.chunk_size
        if start < self.total - self._size:
            raise ReplayError(
                f"the replay no longer holds steps {start}... of chunk {self._chunks} (it was reloaded with a capacity "
                f"of {self.capacity} steps, below its saved partial chunk): it can be read but not extended; reload it "
                f"with capacity_bytes >= {self.chunk_size * self.step_bytes}"
            )
        first = start % self.capacity
        if first + self.chunk_size <= self.capacity:
            rows: slice | np.ndarray = slice(first, first + self.chunk_size)
        else:  # the chunk wraps around the ring's end: a copy (once per pass over the ring)
            rows = (start + np.arange(self.chunk_size)) % self.capacity
        arrays = {k: v[rows] for k, v in self._data.items()}
        arrays["worker"] = self._worker[rows]
        # finished writes leave the list; a failed one stays until flush() reports it
        self._writes = [(f, s) for f, s in self._writes if not f.done() or f.exception() is not None]
        self._writes.append((self._executor().submit(self._write_chunk_file, self._chunks, arrays), start))
        self._unsafe_from = min(self._unsafe_from, start)
        self._chunks += 1

    def _wait_for_writes_reading(self, step: int) -> None:
        """Wait for the chunk writes in flight that read global step `step`'s row, which is about to be overwritten."""
        for future, start in self._writes:
            if start <= step < start + self.chunk_size:
                future.exception()  # waits; a failure is re-raised by flush()
        pending = [start for future, start in self._writes if not future.done()]
        self._unsafe_from = min(pending, default=np.inf)

    def _write_chunk_file(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
        with compressor.stream_writer(buffer, closefd=False) as stream:
            for key in sorted(arrays):
                _write_tar_npy(stream, f"{key}.npy", arrays[key])
            stream.write(bytes(2 * tarfile.BLOCKSIZE))  # end of archive
        data = buffer.getvalue()
        with atomic_open(self._chunk_path(index), "wb") as f:
            f.write(data)
        self._hashes[index] = hashlib.sha256(data).hexdigest()

    def flush(self) -> None:
        """Wait for chunk files being written; re-raise a failed write (e.g. disk full)."""
        writes, self._writes = self._writes, []
        self._unsafe_from = np.inf
        for future, _ in writes:
            future.result()

    def close(self) -> None:
        """Wait for chunk files still being written and stop the writer thread, so that nothing is written into the
        run directory after the run has returned or raised. A failed write is not re-raised here (the run is ending,
        possibly with its own error); `flush` is where writes report."""
        writes, self._writes = self._writes, []
        self._unsafe_from = np.inf
        for future, _ in writes:
            future.exception()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def chunk_files(self) -> list[Path]:
        if self.directory is None or not self.directory.exists():
            return []
        return sorted(p for p in self.directory.iterdir() if _CHUNK_RE.fullmatch(p.name))

    def discard_chunks_after(self, count: int | None = None) -> list[Path]:
        """Delete chunk files with index >= count (default: those this replay did not write); return them."""
        self.flush()
        count = self._chunks if count is None else count
        removed = []
        if self.directory is not None and self.directory.exists():  # temp files of writes cut short by a crash
            for p in self.directory.glob(".chunk_*.tmp-*"):
                p.unlink()
        for p in self.chunk_files():
            m = _CHUNK_RE.fullmatch(p.name)
            if m and int(m.group(1)) >= count:
                p.unlink()
                removed.append(p)
        return removed

    @property
    def chunks(self) -> int:
        """Complete chunks of the stream: chunk i holds global steps [i * chunk_size, (i + 1) * chunk_size)."""
        return self._chunks

    def stored_chunk(self, index: int) -> dict[str, np.ndarray]:
        """Chunk `index` as its file holds it (sha256 checked against the one recorded when it was written): every
        stored key plus `worker`, `chunk_size` steps. The steps ever added stay readable this way after the ring has
        evicted them, for a method whose data set outgrows RAM (World Models' 10,000 rollouts)."""
        if self.directory is None:
            raise ReplayError("this replay has no directory, so no chunk files: only the steps in RAM can be read")
        if not 0 <= index < self._chunks:
            raise ReplayError(f"chunk {index} does not exist: the replay has written {self._chunks} complete chunks "
                              f"of {self.chunk_size} steps ({self.total} steps added)")
        self.flush()
        return self._read_chunk(index)

    def _read_chunk(self, index: int) -> dict[str, np.ndarray]:
        path = self._existing_chunk_path(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ReplayError(f"replay chunk {path} is missing but the checkpoint covers it") from None
        except OSError as e:
            raise ReplayError(f"replay chunk {path} cannot be read ({e}); the checkpoint that covers it is unusable") from e
        recorded, found = self._hashes.get(index), hashlib.sha256(data).hexdigest()
        if recorded and recorded != found:
            raise ReplayError(
                f"replay chunk {path} is not the chunk the checkpoint covers (sha256 {recorded[:12]}... when written, "
                f"{found[:12]}... now): it was changed or swapped afterwards, and training on it would use other "
                "experience. Restore the original file, or start the run over (wmbench run ... --restart)"
            )
        try:
            arrays = _chunk_arrays(data, path.name.endswith(".npz"))
        except (OSError, ValueError, zipfile.BadZipFile, tarfile.TarError, zstandard.ZstdError, EOFError) as e:
            raise ReplayError(f"replay chunk {path} is damaged ({e}); the checkpoint that covers it is unusable") from e
        n = len(arrays.get("worker", ()))
        keys = set(arrays) - {"worker"}
        if n != self.chunk_size or (self._keys and keys != set(self._keys)):
            raise ReplayError(f"replay chunk {path} holds {n} steps with keys {sorted(arrays)}; expected "
                              f"{self.chunk_size} steps with keys {sorted(self._keys)}")
        return arrays

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild exactly this replay (tensors and primitives only)."""
        if self.directory is not None:
            self.flush()
            # Complete chunks are on disk already; only the partial chunk travels with the checkpoint.
            # (a replay reloaded below its saved partial chunk holds only its newest steps: the state says so)
            tail_start = max(self._chunks * self.chunk_size, self.total - self._size)
            slots = np.arange(tail_start, self.total) % max(self.capacity, 1)
            tail_arrays = {k: v[slots] for k, v in self._data.items()} if len(slots) else {}
            if tail_arrays:
                tail_arrays["worker"] = self._worker[slots]
        else:
            slots = self._chronological_slots()
            tail_arrays = {k: v[slots] for k, v in self._data.items()}
            tail_arrays["worker"] = self._worker[slots]
            tail_start = self.total - self._size
        return {
            "format": 1,
            "capacity_bytes": self.capacity_bytes,
            "chunk_size": self.chunk_size,
            "total": self.total,
            "chunks": self._chunks if self.directory is not None else None,
            "chunk_sha256": [self._hashes.get(i, "") for i in range(self._chunks)] if self.directory is not None else None,
            "tail_start": tail_start,
            "tail": {k: _to_tensor(v) for k, v in tail_arrays.items()},
            "rng": generator_state(self.rng),
            "stream_len": self._stream_len.tolist(),  # steps each worker ever added (evicted ones included)
            "online_cursor": [[w, n, k] for (w, n), k in sorted(self._online_cursor.items())],
            # annotations of the stored steps, oldest first (they change after they are written: never in chunks)
            "annotations": {k: _to_tensor(self._read_notes(k, self._chronological_slots())) for k in self._notes},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rebuild the replay a checkpoint describes (chunks [0, chunks) + tail); delete later chunk files.

        With the capacity it was saved with, the rebuilt replay equals the saved one slot for slot (same samples).
        """
        self.flush()
        if state.get("format") != 1:
            raise ReplayError(f"unknown replay state format {state.get('format')!r}")
        # The chunk files' layout is the saved one. A different capacity is allowed (e.g. reading a finished run's
        # experience): the newest steps that fit are reloaded, and only the same capacity samples identically.
        self.chunk_size = int(state["chunk_size"])
        chunks = state["chunks"]
        if (chunks is None) != (self.directory is None):
            raise ReplayError("replay state and replay disagree on whether steps live in a directory")
        self._reset_storage()
        self._hashes = dict(enumerate(state.get("chunk_sha256") or ()))  # absent in states of older versions
        tail = {k: v.numpy() for k, v in state["tail"].items()}
        total = int(state["total"])
        tail_start = int(state["tail_start"])
        if tail:
            self._keys = tuple(sorted(k for k in tail if k != "worker"))
        # Layout first (capacity), then re-add only the steps that still fit, each at its original ring slot.
        if tail:
            self._allocate({k: tail[k][0] for k in self._keys})
        elif chunks:
            last = self._read_chunk(chunks - 1)
            self._keys = tuple(sorted(k for k in last if k != "worker"))
            self._allocate({k: last[k][0] for k in self._keys})
        if self.capacity:
            first_kept = max(0, total - self.capacity)
            self.total = first_kept
            if chunks:
                for c in range(first_kept // self.chunk_size, chunks):
                    arrays = self._read_chunk(c)
                    begin = max(first_kept - c * self.chunk_size, 0)
                    self._put_many(arrays, begin)
            if tail:
                self._put_many(tail, max(first_kept - tail_start, 0))
            if self.total != total:
                raise ReplayError(f"replay state covers {total} steps but its chunks and tail hold {self.total}")
        if chunks is not None:
            self._chunks = int(chunks)
            # Only once the covered chunks loaded: chunks from after the checkpoint belong to the abandoned
            # continuation; the resumed run writes them again.
            self.discard_chunks_after(self._chunks)
        set_generator_state(self.rng, state["rng"])
        if "stream_len" in state and self._size:  # stream positions count the steps evicted before the save
            saved = np.asarray(state["stream_len"], np.int64)
            self._grow_workers(len(saved))
            slots = self._chronological_slots()
            self._seqno[slots] += (saved - self._stream_len)[self._worker[slots]]
            self._stream_len = saved
        self._online_cursor = {(int(w), int(n)): int(k) for w, n, k in state.get("online_cursor", ())}
        notes = {k: v.numpy() for k, v in state.get("annotations", {}).items()}
        if notes and self.capacity:
            saved = len(next(iter(notes.values())))  # the saved replay's stored steps, ending at `total`
            keep = min(saved, self._size)
            slots = self._chronological_slots()[self._size - keep :]
            for k, v in notes.items():
                v = v[saved - keep :]
                written = ~np.isnan(v.reshape(len(v), -1)).any(1)
                self._notes[k] = _ring_zeros((self.capacity, *v.shape[1:]), v.dtype)
                self._noted[k] = _ring_zeros(self.capacity, bool)
                self._notes[k][slots[written]] = v[written]
                self._noted[k][slots[written]] = True

    def _put_many(self, arrays: Mapping[str, np.ndarray], begin: int) -> None:
        """Re-add saved steps [begin:] in bulk: one vectorised block per run of steps from the same worker."""
        workers = np.asarray(arrays["worker"])
        i = begin
        while i < len(workers):
            j = i + 1
            while j < len(workers) and workers[j] == workers[i]:
                j += 1
            self._put_block(arrays, i, j, int(workers[i]))
            i = j

    def _put_block(self, arrays: Mapping[str, np.ndarray], begin: int, end: int, worker: int) -> None:
        """Same effect as `_put` of steps [begin, end) of one worker; only for reloading, which never evicts."""
        n = end - begin
        if self._size + n > self.capacity:
            raise AssertionError("a reload re-adds at most `capacity` steps")
        self._grow_workers(worker + 1)
        slots = (self.total + np.arange(n)) % self.capacity
        for k in self._keys:
            self._data[k][slots] = arrays[k][begin:end]
        self._worker[slots] = worker
        self._seqno[slots] = self._stream_len[worker] + np.arange(n)
        self._gidx[slots] = self.total + np.arange(n)
        self._next[slots[:-1]] = slots[1:] + 1
        self._next[slots[-1]] = 0
        prev = self._last_slot.get(worker)
        if prev is not None:
            self._next[prev] = slots[0] + 1
        self._last_slot[worker] = int(slots[-1])
        self._stream_len[worker] += n
        self._stored[worker] += n
        self.total += n
        self._size += n


def _write_tar_npy(stream: Any, name: str, array: np.ndarray) -> None:
    """One tar member `name` holding `array` as a .npy file, written without copying the array's bytes."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    size = header.tell() + array.nbytes
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644  # mtime 0: the same steps give the same bytes
    stream.write(info.tobuf(format=tarfile.USTAR_FORMAT))
    stream.write(header.getvalue())
    stream.write(memoryview(array.reshape(-1).view(np.uint8)))
    stream.write(bytes(-size % tarfile.BLOCKSIZE))


def _chunk_arrays(data: bytes, npz: bool) -> dict[str, np.ndarray]:
    if npz:  # chunks written before the .tar.zst format
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    arrays = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(".npy"):
                raise ValueError(f"unexpected member {member.name!r}")
            entry = archive.extractfile(member)
            assert entry is not None
            arrays[member.name[: -len(".npy")]] = np.load(io.BytesIO(entry.read()), allow_pickle=False)
    return arrays


def read_chunk(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of one replay chunk file (key -> [chunk_size, ...], plus `worker`), either format."""
    path = Path(path)
    return _chunk_arrays(path.read_bytes(), path.name.endswith(".npz"))



_COMMIT_BYTES = 2 << 20
_MADV_NOHUGEPAGE = 15
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def _ring_zeros(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.zeros for a ring array, in 4 KiB pages. numpy asks Linux for transparent huge pages for arrays of 4 MiB or
    more, and a fresh 2 MiB page can be far slower to commit than 512 small ones: on virtual machines that hand free
    guest memory back to the host in huge blocks (free page reporting; this project's machines), the host backs a
    fresh huge page on first touch, measured here at ~0.15 GB/s (~25 us of system time per 64x64x3 frame) against
    ~1.5 GB/s for 4 KiB pages from the guest's own free lists (benchmarks/env_overhead.py, docs/benchmarks.md).
    Sampling reads whole rows, so small pages cost it little. Best effort: a no-op where madvise is unavailable."""
    array = np.zeros(shape, dtype)
    if _libc is not None and array.nbytes >= 4 << 20:
        start = array.ctypes.data
        aligned = start - start % 4096
        _libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(array.nbytes + start - aligned), _MADV_NOHUGEPAGE)
    return array


def _populate_rows(arrays: Sequence[np.ndarray], begin: int, end: int) -> None:
    for array in arrays:
        _populate(array, begin, end)


def _populate(array: np.ndarray, begin: int, end: int) -> None:
    """Commit the pages of rows [begin, end) of a C-contiguous array. Best effort: where the call is unsupported
    (not Linux, a kernel before 5.14) it is switched off and pages fault in one by one as before."""
    global _libc
    if _libc is None or end <= begin:
        return
    row = array[0].nbytes
    start = array.ctypes.data + begin * row
    aligned = start - start % 4096
    length = (end - begin) * row + (start - aligned)
    if _libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(length), _MADV_POPULATE_WRITE) != 0:
        _libc = None
