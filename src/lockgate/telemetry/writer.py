"""The batched record writer: every answered request leaves a record, through a storage outage
and through a crash of the process.

``record`` (called on the request path, as the answer completes) appends the record to an
in-memory queue and, at once, to this process's local spool file: one ``os.write`` of one line.
The write only copies into the kernel's page cache (a few microseconds, no fsync), so once the
answer's last byte has gone out its record survives a ``kill -9`` of the process. (A write once
per event-loop turn for all of its records saved a syscall under load, but left the records of
that turn to a kill that came before the turn ended: under load, after their clients had their
answers.) A background task writes the queue to storage in batches every ``interval_s`` and
then empties the spool (truncates it): everything in it is stored.

When storage fails, records stay in the spool (the memory queue is dropped: it would only
duplicate it) and the spool is fsynced on every turn, so a machine crash loses at most one turn
of records too; when a probe says storage is back, the spool is replayed in batches and
emptied. Storage ignores a record it already has (by the record's own id), so a record that is
replayed after being stored (a lost acknowledgement, a crash between the write and the
truncation) is not counted twice.

Memory stays bounded whatever the outage lasts: past ``max_queue`` records, new ones are kept
only in the spool, and the next turn replays them from there.

Each process spools to its own file in ``spill_dir`` and holds an exclusive lock on it. A file
nobody holds a lock on belongs to a process that is gone (a crash, a restart, another worker
count): any writer adopts it, replays it and deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import orjson

from lockgate.core.record import RequestRecord

log = logging.getLogger("lockgate")


class RecordSink(Protocol):
    async def insert_records(self, records: Sequence[RequestRecord]) -> int: ...

    async def ping(self) -> bool: ...


class RecordWriter:
    def __init__(self, sink: RecordSink, spill_dir: str | Path, *, batch_size: int = 2000,
                 interval_s: float = 0.25, max_queue: int = 10_000, write_timeout_s: float = 5.0,
                 recent: int = 1000) -> None:
        self._sink = sink
        self._dir = Path(spill_dir)
        self._spill = self._dir / f"spill-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._lock_fd: int | None = None
        self._batch_size = batch_size
        self._interval = interval_s
        self._max_queue = max_queue
        self._write_timeout = write_timeout_s
        self._queue: deque[RequestRecord] = deque()
        self._unspooled: list[RequestRecord] = []  # recorded, not in the spool yet (a failed append)
        self._behind = False  # the spool holds records the queue does not: replay it
        self._dirty = False  # appended since the spool was last emptied
        self._unsynced = False  # appended since the last fsync
        self._wake = asyncio.Event()
        self._synced: list[asyncio.Future[None]] = []  # sync() callers waiting for the next turn
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.storage_up = True
        # The newest records, for tests and the dashboard's live view.
        self.records: deque[RequestRecord] = deque(maxlen=recent)

    # --- request path ----------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        # The recent records are kept without a logged body: up to 1000 of them would hold
        # ~100 MB of sealed bodies for a view that shows none.
        self.records.append(record if record.body is None else replace(record, body=None))
        self._unspooled.append(record)
        self._append_unspooled()
        if self.storage_up and len(self._queue) < self._max_queue:
            self._queue.append(record)
            if len(self._queue) >= self._batch_size:
                self._wake.set()
        else:
            self._behind = True  # only the spool has it: the next turn replays the spool

    def _append_unspooled(self) -> None:
        """Appends the records finished since the last call to the spool (on the loop: a write
        into the page cache, microseconds)."""
        if not self._unspooled:
            return
        records, self._unspooled = self._unspooled, []
        # orjson serialises the dataclass itself, field by field, without asdict()'s copies
        data = b"".join([orjson.dumps(r) + b"\n" for r in records])
        try:
            self._own_spill_file()
            assert self._lock_fd is not None
            _write_all(self._lock_fd, data)
        except OSError as exc:
            log.error("cannot append %d records to the spool %s: %s", len(records), self._spill, exc)
            return
        self._dirty = self._unsynced = True

    # --- background ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="record-writer")

    def _own_spill_file(self) -> None:
        """Creates and locks this process's spill file (first spill only). It is locked under a
        name no writer scans for, then renamed: a writer looking for orphans must never find it
        unlocked, or it would replay and delete it, and what is spilled after would be lost."""
        if self._lock_fd is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            hidden = self._spill.with_name(f".{self._spill.name}")
            fd = os.open(hidden, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, self._spill)
            self._lock_fd = fd

    async def stop(self) -> None:
        """Writes everything still queued; an empty spool file is removed, a full one (storage
        is down) stays locked until the process ends, for the next start to replay."""
        if self._task is not None:
            # Not cancelled: a cancel in the middle of a write would drop the batch it had taken
            # from the queue, and the flush below would then empty the spool that still held it.
            # The task finishes its turn (a write is bounded by ``write_timeout_s``) and ends.
            self._stopping = True
            self._wake.set()
            await self._task
        await self.flush()
        self._append_unspooled()
        if (self._lock_fd is not None and not self._behind and not self._queue
                and os.fstat(self._lock_fd).st_size == 0):
            self._spill.unlink(missing_ok=True)  # unlinked while still locked: never adopted
            os.close(self._lock_fd)
            self._lock_fd = None

    async def sync(self, timeout_s: float = 2.0) -> None:
        """Returns once the records queued before the call are written (or spilled), or after
        ``timeout_s``: a budget restored from storage then includes this process's requests."""
        if self._task is None or self._task.done():
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._synced.append(done)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), timeout_s)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """One turn: probe storage if it was down; adopt the spool files of dead processes;
        replay our own spool if it holds what the queue does not; write the queue in batches;
        then empty the spool (or, while storage is down, fsync it)."""
        self._append_unspooled()
        if not self.storage_up and await self._sink_alive():
            self.storage_up = True
            log.warning("storage is back; replaying spooled records")
        if self.storage_up:
            for path in await asyncio.to_thread(self._replayable):
                if not await self._replay(path):
                    break
        if self.storage_up and self._behind:
            await self._replay_own()
        while self.storage_up and self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            await self._write(batch)
        if not self.storage_up:
            self._queue.clear()  # every record of it is in the spool
            self._behind = True
            await self._sync_spool()
        elif not self._queue and not self._behind:
            self._empty_spool()  # no await since the check: all the spool holds is stored

    async def _replay_own(self) -> None:
        """Replays this process's spool as it is now; what is recorded meanwhile is queued
        (and spooled) as usual, and written after."""
        self._append_unspooled()
        assert self._lock_fd is not None  # _behind is set only by records, which own the file
        size = os.fstat(self._lock_fd).st_size
        self._queue.clear()  # all of it is in the spool, up to ``size``
        self._behind = False
        records = await asyncio.to_thread(_read_spill, self._spill, size)
        for start in range(0, len(records), self._batch_size):
            if not await self._write(records[start:start + self._batch_size]):
                self._behind = True  # storage went away again; replayed on a later turn
                return
        if records:
            log.warning("replayed %d spooled records", len(records))

    def _empty_spool(self) -> None:
        if self._lock_fd is not None and self._dirty:
            os.ftruncate(self._lock_fd, 0)  # on the loop, on purpose: nothing may come between
            self._dirty = self._unsynced = False

    async def _sync_spool(self) -> None:
        """While storage is down the spool is the only copy: fsynced once a turn (in a thread),
        so that a machine crash, not only a killed process, loses at most one turn."""
        if self._lock_fd is not None and self._unsynced:
            self._unsynced = False
            await asyncio.to_thread(os.fsync, self._lock_fd)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval if self.storage_up else 1.0):
                    await self._wake.wait()
            self._wake.clear()
            waiting, self._synced = self._synced, []
            try:
                await self.flush()
            except Exception:  # never let the writer die: records would pile up unwritten
                log.exception("record writer turn failed")
            for done in waiting:
                if not done.done():
                    done.set_result(None)

    async def _write(self, batch: list[RequestRecord]) -> bool:
        try:
            async with asyncio.timeout(self._write_timeout):
                await self._sink.insert_records(batch)
            return True
        except asyncio.CancelledError:
            self._behind = True  # the batch is in the spool only: never empty it unreplayed
            raise
        except Exception as exc:
            if self.storage_up:
                log.warning("storage write failed (%s); keeping records in the spool %s",
                            type(exc).__name__, self._spill)
            self.storage_up = False
            return False

    async def _sink_alive(self) -> bool:
        try:
            async with asyncio.timeout(self._write_timeout):
                return await self._sink.ping()
        except Exception:
            return False

    def _replayable(self) -> list[Path]:
        """The spool files whose owner is gone (no lock held on them); never our own."""
        if not self._dir.is_dir():
            return []
        return [path for path in sorted(self._dir.glob("spill-*.jsonl"))
                if path != self._spill and _adopt(path)]

    async def _replay(self, path: Path) -> bool:
        """Replays a dead process's spool file, then deletes it."""
        records = await asyncio.to_thread(_read_spill, path)
        for start in range(0, len(records), self._batch_size):
            if not await self._write(records[start:start + self._batch_size]):
                return False  # storage went away again; the file stays and is replayed later
        await asyncio.to_thread(path.unlink, True)
        log.warning("replayed %d spooled records from %s", len(records), path.name)
        return True


def _adopt(path: Path) -> bool:
    """True when no live process holds ``path``'s lock (checked by taking it for a moment)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_spill(path: Path, size: int | None = None) -> list[RequestRecord]:
    """The records in ``path`` (its first ``size`` bytes)."""
    records = []
    with path.open("rb") as f:
        data = f.read() if size is None else f.read(size)
        for line in data.splitlines():
            if line.strip():
                with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                    records.append(RequestRecord(**orjson.loads(line)))  # a torn last line is skipped
    return records


