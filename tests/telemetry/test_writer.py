"""The record writer against a scripted storage: batches, spills while storage is down, replays
when it is back, never counts a record twice, and adopts the spill files of dead processes."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest

from lockgate.core.record import RequestRecord
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.record import record_of
from lockgate.state.store import LogQuery, Store, UsageQuery
from lockgate.telemetry.writer import RecordWriter


class ScriptedSink:
    """Storage that fails its next ``failures`` writes, is reachable only while ``alive``, and
    keeps what it is given by record id, as the real store does."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.alive = True
        self.lost_acks = 0  # writes that are stored but whose answer never arrives
        self.stored: dict[str, RequestRecord] = {}
        self.batches: list[int] = []
        self.wrote = asyncio.Event()

    async def insert_records(self, records: Sequence[RequestRecord]) -> int:
        if self.failures or not self.alive:
            self.failures = max(0, self.failures - 1)
            raise ConnectionError("storage is down")
        new = {r.id: r for r in records if r.id not in self.stored}
        self.stored.update(new)
        self.batches.append(len(records))
        self.wrote.set()
        if self.lost_acks:
            self.lost_acks -= 1
            raise TimeoutError("the answer was lost")
        return len(new)

    async def ping(self) -> bool:
        return self.alive


def context(n: int) -> RequestContext:
    return RequestContext(request_id=f"req-{n}", started=time.perf_counter(), ts=time.time(),
                          endpoint="/v1/chat/completions", key_id="key_a", model="gpt", status=200)


def record_some(writer: RecordWriter, count: int, start: int = 0) -> list[str]:
    """Records ``count`` requests; their record ids, in order."""
    for n in range(start, start + count):
        writer.record(record_of(context(n)))
    return [r.id for r in list(writer.records)[-count:]]


def spill_files(spill_dir: Path) -> list[Path]:
    return sorted(spill_dir.glob("spill-*.jsonl"))


def spill_lines(spill_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in spill_files(spill_dir))


@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    return tmp_path / "spill"


async def test_records_are_written_in_batches(spill_dir: Path) -> None:
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir, batch_size=3)
    ids = record_some(writer, 7)
    assert writer.pending == 7
    await writer.flush()
    assert sink.batches == [3, 3, 1]
    assert list(sink.stored) == ids
    assert writer.pending == 0
    assert spill_lines(spill_dir) == 0  # storage was up: the spool was emptied once stored


async def test_storage_failing_a_few_times_loses_nothing(spill_dir: Path) -> None:
    sink = ScriptedSink(failures=3)
    writer = RecordWriter(sink, spill_dir, batch_size=2)
    ids = record_some(writer, 4)
    await writer.flush()
    assert not writer.storage_up
    assert spill_lines(spill_dir) == 4 and sink.stored == {}

    sink.alive = False
    ids += record_some(writer, 2, start=4)  # recorded while storage is down
    await writer.flush()
    assert spill_lines(spill_dir) == 6

    sink.alive = True  # the probe says storage is back, but the replay's first write fails
    await writer.flush()
    assert spill_lines(spill_dir) == 6
    await writer.flush()  # the last failure is used up too
    await writer.flush()
    assert writer.storage_up
    assert sorted(sink.stored) == sorted(ids)
    assert spill_lines(spill_dir) == 0  # replayed and emptied


async def test_past_max_queue_records_go_to_disk_not_memory(spill_dir: Path) -> None:
    sink = ScriptedSink()
    sink.alive = False
    writer = RecordWriter(sink, spill_dir, batch_size=100, max_queue=3)
    ids = record_some(writer, 10)
    await writer.flush()
    assert writer.pending == 0 and spill_lines(spill_dir) == 10
    sink.alive = True
    await writer.flush()
    assert sorted(sink.stored) == sorted(ids)
    assert spill_lines(spill_dir) == 0


async def test_overflow_spills_even_while_storage_is_up(spill_dir: Path) -> None:
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir, batch_size=100, max_queue=3)
    ids = record_some(writer, 10)
    await writer.flush()
    assert spill_files(spill_dir), "the overflow never reached the disk"
    assert sorted(sink.stored) == sorted(ids)
    assert spill_lines(spill_dir) == 0


async def test_a_replay_keeps_each_records_id(spill_dir: Path) -> None:
    sink = ScriptedSink()
    sink.lost_acks = 1  # stored, but the writer cannot know: it spills and replays the batch
    writer = RecordWriter(sink, spill_dir)
    ids = record_some(writer, 5)
    originals = {r.id: r for r in writer.records}
    await writer.flush()
    assert spill_lines(spill_dir) == 5
    await writer.flush()
    assert sink.batches == [5, 5]  # written twice ...
    assert sorted(sink.stored) == sorted(ids)  # ... and the same records both times
    assert all(sink.stored[i] == originals[i] for i in ids)  # every field survives the file
    assert spill_lines(spill_dir) == 0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/lockgate.db")
    await s.migrate()
    yield s
    await s.close()


async def test_a_replayed_batch_is_counted_once_by_real_storage(spill_dir: Path, store: Store) -> None:
    class LosesOneAnswer:
        """The real store, whose first acknowledgement is lost after its commit."""

        lost = False

        async def insert_records(self, records: Sequence[RequestRecord]) -> int:
            count = await store.insert_records(records)
            if not self.lost:
                self.lost = True
                raise TimeoutError("the answer was lost")
            return count

        async def ping(self) -> bool:
            return await store.ping()

    writer = RecordWriter(LosesOneAnswer(), spill_dir)
    record_some(writer, 5)
    await writer.flush()
    await writer.flush()
    assert len(await store.logs(LogQuery())) == 5
    assert (await store.usage(UsageQuery()))[0]["requests"] == 5
    assert spill_lines(spill_dir) == 0


def write_orphan(spill_dir: Path, records: list[RequestRecord], name: str = "spill-1-dead.jsonl",
                 torn_tail: bool = True) -> Path:
    """A spill file as a process that crashed leaves it: no lock held, maybe a torn last line."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    path = spill_dir / name
    lines = b"".join(orjson.dumps(dataclasses.asdict(r)) + b"\n" for r in records)
    path.write_bytes(lines + (b'{"request_id": "torn' if torn_tail else b""))
    return path


def orphan_records(count: int) -> list[RequestRecord]:
    return [record_of(context(100 + n)) for n in range(count)]


async def test_an_orphan_spill_file_is_adopted(spill_dir: Path) -> None:
    orphans = orphan_records(3)
    path = write_orphan(spill_dir, orphans)
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir)
    await writer.flush()
    assert sorted(sink.stored) == sorted(r.id for r in orphans)  # the torn line is skipped
    assert not path.exists()


async def test_a_spill_file_of_a_live_process_is_left_alone(spill_dir: Path) -> None:
    orphans = orphan_records(2)
    path = write_orphan(spill_dir, orphans, torn_tail=False)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its owner is alive
        sink = ScriptedSink()
        writer = RecordWriter(sink, spill_dir)
        await writer.flush()
        assert sink.stored == {} and path.exists()
    finally:
        os.close(fd)  # the owner dies
    await writer.flush()
    assert sorted(sink.stored) == sorted(r.id for r in orphans)
    assert not path.exists()


async def test_two_writers_never_take_each_others_live_file(spill_dir: Path) -> None:
    down, up = ScriptedSink(), ScriptedSink()
    down.alive = False
    spilling = RecordWriter(down, spill_dir)
    healthy = RecordWriter(up, spill_dir)
    record_some(spilling, 3)
    await spilling.flush()
    await healthy.flush()
    assert up.stored == {} and spill_lines(spill_dir) == 3
    down.alive = True
    await spilling.flush()
    assert len(down.stored) == 3 and spill_lines(spill_dir) == 0


async def test_the_background_task_writes_without_being_asked(spill_dir: Path) -> None:
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir, interval_s=0.05)
    writer.start()
    try:
        ids = record_some(writer, 2)
        async with asyncio.timeout(2):
            await sink.wrote.wait()  # no flush asked for: the task's own turn wrote them
        assert sorted(sink.stored) == sorted(ids)
    finally:
        await writer.stop()


async def test_sync_returns_once_what_was_queued_is_written(spill_dir: Path) -> None:
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir, interval_s=60)  # its own turn would come much later
    await writer.sync()  # not started: nothing to wait for
    writer.start()
    try:
        ids = record_some(writer, 3)
        await writer.sync()
        assert sorted(sink.stored) == sorted(ids)  # a budget read from storage now includes them
    finally:
        await writer.stop()


async def test_stopping_writes_what_is_still_queued(spill_dir: Path) -> None:
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir, interval_s=60)
    writer.start()
    ids = record_some(writer, 3)
    await writer.stop()
    assert sorted(sink.stored) == sorted(ids)


class SlowSink(ScriptedSink):
    """Storage that takes ``delay_s`` over each write, saying when one has begun."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.writing = asyncio.Event()

    async def insert_records(self, records: Sequence[RequestRecord]) -> int:
        self.writing.set()
        await asyncio.sleep(self.delay_s)
        return await super().insert_records(records)


async def test_stopping_in_the_middle_of_a_write_loses_nothing(spill_dir: Path) -> None:
    """The shutdown of a gateway whose last answer's record is being written: the write
    finishes and the record is stored (once lost, a restarted budget forgot that spend)."""
    sink = SlowSink(delay_s=0.2)
    writer = RecordWriter(sink, spill_dir, interval_s=0.01)
    writer.start()
    ids = record_some(writer, 2)
    await asyncio.wait_for(sink.writing.wait(), 5)
    await writer.stop()
    assert sorted(sink.stored) == sorted(ids)
    assert spill_files(spill_dir) == []  # all of it stored: nothing left to replay


async def test_stopping_while_storage_is_down_spills(spill_dir: Path) -> None:
    sink = ScriptedSink()
    sink.alive = False
    writer = RecordWriter(sink, spill_dir, interval_s=60)
    writer.start()
    record_some(writer, 3)
    await writer.stop()
    assert spill_lines(spill_dir) == 3  # the next start (or another worker) replays them
    successor = RecordWriter(ScriptedSink(), spill_dir)
    await successor.flush()
    assert spill_lines(spill_dir) == 3, "adopted while its writer's process is still alive"


async def test_the_newest_records_are_kept_for_the_live_view(spill_dir: Path) -> None:
    writer = RecordWriter(ScriptedSink(), spill_dir, recent=2)
    record_some(writer, 5)
    assert [r.request_id for r in writer.records] == ["req-3", "req-4"]


async def test_a_new_spill_file_is_never_seen_unlocked(spill_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer scanning for orphans at the very moment a spill file is created must not
    find it unlocked: it would replay it and delete it, and every record spilled to it after
    would be written to a file nobody can find."""
    sink = ScriptedSink()
    sink.alive = False
    spilling = RecordWriter(sink, spill_dir)
    scanner = RecordWriter(ScriptedSink(), spill_dir)
    adopted: list[Path] = []
    real_flock = fcntl.flock

    def flock_while_another_scans(fd: int, operation: int) -> None:
        monkeypatch.setattr(fcntl, "flock", real_flock)  # once: the scan below locks too
        adopted.extend(scanner._replayable())
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_while_another_scans)
    record_some(spilling, 3)
    await spilling.flush()
    assert adopted == []
    assert spill_lines(spill_dir) == 3


# --- the spool: what a killed process leaves behind ---------------------------------------------


def die(writer: RecordWriter) -> None:
    """The process is killed: nothing more is flushed, its lock goes with it."""
    assert writer._lock_fd is not None
    os.close(writer._lock_fd)
    writer._lock_fd = None


async def test_a_record_is_in_the_spool_as_soon_as_it_is_made(spill_dir: Path) -> None:
    """Before the event loop runs anything else: a kill -9 right after an answer (its client
    has it) finds its record in the spool, whatever the load."""
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir, interval_s=60)  # no storage write comes soon
    record_some(writer, 3)
    assert spill_lines(spill_dir) == 3 and sink.stored == {}


async def test_records_a_killed_process_never_wrote_are_replayed_once_by_the_next(
        spill_dir: Path) -> None:
    sink = ScriptedSink()
    killed = RecordWriter(sink, spill_dir, interval_s=60)
    ids = record_some(killed, 4)
    await asyncio.sleep(0)
    die(killed)
    successor = RecordWriter(sink, spill_dir)
    await successor.flush()
    await successor.flush()
    assert sorted(sink.stored) == sorted(ids) and sink.batches == [4]  # once
    assert spill_lines(spill_dir) == 0


async def test_records_already_stored_are_not_left_in_the_spool(spill_dir: Path) -> None:
    sink = ScriptedSink()
    writer = RecordWriter(sink, spill_dir)
    record_some(writer, 3)
    await writer.flush()
    record_some(writer, 2, start=3)
    await asyncio.sleep(0)
    die(writer)  # killed with two records queued, not yet stored
    successor = RecordWriter(sink, spill_dir)
    await successor.flush()
    assert sink.batches == [3, 2]  # the first three were not replayed
    assert len(sink.stored) == 5


async def test_a_clean_stop_leaves_no_spool_file(spill_dir: Path) -> None:
    writer = RecordWriter(ScriptedSink(), spill_dir)
    writer.start()
    record_some(writer, 3)
    await asyncio.sleep(0)
    await writer.stop()
    assert spill_files(spill_dir) == []
