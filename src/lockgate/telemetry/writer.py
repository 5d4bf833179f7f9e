"""The batched record writer: every request's record reaches storage, even through an outage.

``record`` (called on the request path) only appends to an in-memory queue. A background task
writes the queue to storage in batches. When storage fails, the batch goes to a local
append-only spill file (JSON lines, written in a thread so the loop never blocks) and the
writer keeps spilling until a probe says storage is back; then it replays the file in batches
and truncates it. Storage ignores a record it already has (by the record's own id), so a batch
that was written but whose acknowledgement was lost, and is replayed, is not counted twice.

The queue is bounded: past ``max_queue`` records, new ones go straight to the spill buffer,
which the task writes to disk on its next turn, so memory stays bounded by the time between
two turns, whatever the outage lasts.

Each process spills to its own file in ``spill_dir`` and holds an exclusive lock on it. A file
nobody holds a lock on belongs to a process that is gone (a crash, a restart, another worker
count): any writer adopts it and replays it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import orjson

from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.record import RequestRecord

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
        self._overflow: list[RequestRecord] = []
        self._wake = asyncio.Event()
        self._synced: list[asyncio.Future[None]] = []  # sync() callers waiting for the next turn
        self._task: asyncio.Task[None] | None = None
        self.storage_up = True
        # The newest records, for tests and the dashboard's live view.
        self.records: deque[RequestRecord] = deque(maxlen=recent)

    # --- request path ----------------------------------------------------------------------

    def record(self, ctx: RequestContext) -> None:
        record = RequestRecord.of(ctx)
        self.records.append(record)
        if len(self._queue) < self._max_queue:
            self._queue.append(record)
        else:
            self._overflow.append(record)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

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
        """Writes (or spills) everything still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

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
        return len(self._queue) + len(self._overflow)

    async def flush(self) -> None:
        """One turn: spill any overflow, replay the spill file if storage is back, then write
        the queue in batches."""
        if self._overflow:
            overflow, self._overflow = self._overflow, []
            await self._spill_records(overflow)
        if not self.storage_up and await self._sink_alive():
            self.storage_up = True
            log.warning("storage is back; replaying spilled records")
        if self.storage_up:
            for path in await asyncio.to_thread(self._replayable):
                if not await self._replay(path):
                    break
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            if not self.storage_up or not await self._write(batch):
                await self._spill_records(batch)

    async def _run(self) -> None:
        while True:
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
        except Exception as exc:
            if self.storage_up:
                log.warning("storage write failed (%s); spilling records to %s", type(exc).__name__,
                            self._spill)
            self.storage_up = False
            return False

    async def _sink_alive(self) -> bool:
        try:
            async with asyncio.timeout(self._write_timeout):
                return await self._sink.ping()
        except Exception:
            return False

    async def _spill_records(self, records: list[RequestRecord]) -> None:
        lines = b"".join(orjson.dumps(dataclasses.asdict(r)) + b"\n" for r in records)
        self._own_spill_file()
        assert self._lock_fd is not None
        await asyncio.to_thread(_append, self._lock_fd, lines)

    def _replayable(self) -> list[Path]:
        """Our own spill file, and any file whose owner is gone (no lock held on it)."""
        if not self._dir.is_dir():
            return []
        found = []
        for path in sorted(self._dir.glob("spill-*.jsonl")):
            if path == self._spill:
                if path.stat().st_size:
                    found.append(path)
            elif _adopt(path):
                found.append(path)
        return found

    async def _replay(self, path: Path) -> bool:
        records = await asyncio.to_thread(_read_spill, path)
        for start in range(0, len(records), self._batch_size):
            if not await self._write(records[start:start + self._batch_size]):
                return False  # storage went away again; the file stays and is replayed later
        if path == self._spill:
            await asyncio.to_thread(os.ftruncate, self._lock_fd or -1, 0)
        else:
            await asyncio.to_thread(path.unlink, True)
        log.warning("replayed %d spilled records from %s", len(records), path.name)
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


def _append(fd: int, lines: bytes) -> None:
    os.write(fd, lines)
    os.fsync(fd)


def _read_spill(path: Path) -> list[RequestRecord]:
    records = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                    records.append(RequestRecord(**orjson.loads(line)))  # a torn last line is skipped
    return records


