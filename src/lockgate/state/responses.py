"""Stored Responses answers: what ``POST /v1/responses`` keeps when ``store`` is true (the
default, as at OpenAI), so that a later request of the same key may continue from it
(``previous_response_id``) or point at its items (``item_reference``), and ``GET`` / ``DELETE
/v1/responses/{id}`` may read or remove it.

The request path never waits for a write. ``keep`` (called as the answer is rendered) puts the
entry in this process's pending map and wakes a background writer, which seals the entries
(``lockgate.sealing``) and writes them to the shared backend (``state.responses_backends``) as
soon as it can, together with any others that finished meanwhile; an entry leaves the pending
map only once it is written. Reading your own writes holds:

* on this process: ``find`` looks in the pending map before the backend;
* on another worker or replica: the writer starts at once, so the row is there within a write's
  time of the answer; a miss is looked up once more after ``settle_s``, for a follow-up that
  arrived faster than that.

Each entry belongs to the key that made it (its ``owner``): another key finds nothing, exactly
as if there were nothing. It expires ``ttl_s`` after it was made (``server.responses_ttl_s``):
an expired entry is never returned, and expired rows are purged every ``purge_every_s``. While
the backend cannot be written, entries wait in the pending map (at most ``max_pending``, the
oldest dropped first) and the writer retries with a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lockgate.errors import GatewayError
from lockgate.sealing import Sealer, SealError
from lockgate.state.responses_backends import ResponseRows, SealedRow

log = logging.getLogger("lockgate")

JSON = dict[str, Any]

_WRITE_CHUNK = 256


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    user: str | None
    created_at: float
    expires_at: float
    input: list[JSON]  # every input item the answer was made from, references resolved
    response: JSON  # the response object as the client got it

    @property
    def output(self) -> list[JSON]:
        output = self.response.get("output")
        return output if isinstance(output, list) else []


class StoredResponsesUnavailable(GatewayError):
    status = 503
    code = "storage_unavailable"

    def __init__(self) -> None:
        super().__init__("stored responses cannot be read right now; retry the request",
                         retry_after=1)


class ResponseStore:
    def __init__(self, rows: ResponseRows, sealer: Sealer, ttl_s: float, *,
                 clock: Callable[[], float] = time.time, settle_s: float = 0.1,
                 purge_every_s: float = 600.0, max_pending: int = 10_000,
                 retry_first_s: float = 0.5, retry_max_s: float = 5.0) -> None:
        self.rows = rows
        self.ttl_s = ttl_s
        self.clock = clock
        self._sealer = sealer
        self._settle_s = settle_s
        self._purge_every_s = purge_every_s
        self._max_pending = max_pending
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._pending: dict[str, StoredResponse] = {}
        self._lock = asyncio.Lock()  # a write, a delete, an erasure: one at a time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    # --- the request path ------------------------------------------------------------------

    def keep(self, owner: str | None, user: str | None, input_items: list[JSON],
             response: JSON) -> None:
        """Keeps ``response`` (and the input it answered) for ``owner``; no I/O."""
        now = self.clock()
        entry = StoredResponse(str(response["id"]), owner or "", user, now, now + self.ttl_s,
                               input_items, response)
        if len(self._pending) >= self._max_pending:
            self._pending.pop(next(iter(self._pending)))
            log.warning("stored responses: %d waiting to be written; the oldest was dropped",
                        self._max_pending)
        self._pending[entry.id] = entry
        self._wake.set()

    async def find(self, owner: str | None, ids: Iterable[str]) -> dict[str, StoredResponse]:
        """The responses among ``ids`` that ``owner`` stored and that have not expired."""
        owner, now = owner or "", self.clock()
        found: dict[str, StoredResponse] = {}
        missing: list[str] = []
        for response_id in dict.fromkeys(ids):
            entry = self._pending.get(response_id)
            if entry is None:
                missing.append(response_id)
            elif entry.owner == owner and entry.expires_at > now:
                found[response_id] = entry
        if missing:
            found.update(await self._read(owner, missing, now))
            missing = [i for i in missing if i not in found]
        if missing and self._settle_s > 0:
            # Made on another worker an instant ago, and still being written there?
            await asyncio.sleep(self._settle_s)
            found.update(await self._read(owner, missing, self.clock()))
        return found

    async def _read(self, owner: str, ids: Sequence[str], now: float) -> dict[str, StoredResponse]:
        try:
            rows = await self.rows.get(ids)
        except Exception as exc:
            log.warning("stored responses cannot be read: %s", type(exc).__name__)
            raise StoredResponsesUnavailable() from None
        entries = (self._open(row) for row in rows if row.owner == owner and row.expires_at > now)
        return {entry.id: entry for entry in entries if entry is not None}

    # --- the API and erasure ---------------------------------------------------------------

    async def delete(self, owner: str | None, response_id: str) -> bool:
        owner = owner or ""
        async with self._lock:  # after a write that holds it: the row is there to delete
            entry = self._pending.get(response_id)
            pending = entry is not None and entry.owner == owner
            if pending:
                del self._pending[response_id]
            return await self.rows.delete(response_id, owner) or pending

    async def erase_user(self, user: str) -> int:
        """Deletes every stored response made for the end user ``user`` (right to erasure)."""
        async with self._lock:
            mine = [i for i, entry in self._pending.items() if entry.user == user]
            for response_id in mine:
                del self._pending[response_id]
            return await self.rows.erase_user(user) + len(mine)

    # --- the writer ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stored-responses")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the writer and writes what is still pending (for up to ``timeout_s``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush()
        if self._pending:
            log.warning("stored responses: %d could not be written before stopping", len(self._pending))
        await self.rows.close()

    async def _run(self) -> None:
        delay = self._retry_first_s
        next_purge = self.clock() + self._purge_every_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._purge_every_s):
                    await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(delay)
                delay = min(self._retry_max_s, delay * 2)
                self._wake.set()
                continue
            delay = self._retry_first_s
            if self.clock() >= next_purge:
                next_purge = self.clock() + self._purge_every_s
                await self.purge()

    async def flush(self) -> bool:
        """Writes every pending entry; False when the backend refused (they stay pending)."""
        async with self._lock:
            batch = list(self._pending.values())
            try:
                for start in range(0, len(batch), _WRITE_CHUNK):
                    await self.rows.put([self._seal(e) for e in batch[start:start + _WRITE_CHUNK]])
            except Exception as exc:
                if not self._failing:
                    log.warning("stored responses cannot be written (%s): %d kept in memory, "
                                "retrying", type(exc).__name__, len(self._pending))
                self._failing = True
                return False
            for entry in batch:
                if self._pending.get(entry.id) is entry:
                    del self._pending[entry.id]
        if self._failing:
            log.warning("stored responses are written again")
            self._failing = False
        return True

    async def purge(self) -> int:
        """Deletes what has expired, here and in the backend."""
        now = self.clock()
        for response_id in [i for i, e in self._pending.items() if e.expires_at <= now]:
            del self._pending[response_id]
        try:
            return await self.rows.purge(now)
        except Exception as exc:
            log.warning("stored responses: the purge of expired ones failed (%s)", type(exc).__name__)
            return 0

    # --- sealing ---------------------------------------------------------------------------

    def _seal(self, entry: StoredResponse) -> SealedRow:
        body = orjson.dumps({"input": entry.input, "response": entry.response})
        return SealedRow(entry.id, entry.owner, entry.user, entry.created_at, entry.expires_at,
                         self._sealer.seal(body, _context(entry.id, entry.owner)))

    def _open(self, row: SealedRow) -> StoredResponse | None:
        try:
            body = orjson.loads(self._sealer.open(row.body, _context(row.id, row.owner)))
        except SealError as exc:
            log.warning("stored response %s cannot be opened (%s): ignored", row.id, exc)
            return None
        except orjson.JSONDecodeError:
            log.warning("stored response %s is not readable JSON: ignored", row.id)
            return None
        return StoredResponse(row.id, row.owner, row.user, row.created_at, row.expires_at,
                              body["input"], body["response"])


def _context(response_id: str, owner: str) -> bytes:
    """What a sealed body is bound to: a body copied into another row, or given to another key,
    does not open."""
    return f"{response_id}\n{owner}".encode()
