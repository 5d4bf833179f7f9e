"""Where stored Responses answers live, shared by every worker and replica: the storage table
``responses`` (SQLite, PostgreSQL), or Redis when ``redis:`` is set.

A backend keeps sealed rows and knows nothing of their content: ``state.responses`` seals and
opens them, checks the owner and the expiry, and decides when to write. Expired rows are
invisible to readers there; here they are purged (``purge`` for storage; Redis expires its keys
by itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from lockgate.state import schema
from lockgate.state.store import Store


@dataclass(frozen=True, slots=True)
class SealedRow:
    id: str
    owner: str  # the key id that made it ('' on an open gateway)
    user: str | None  # the end user it was made for, for erasure
    created_at: float
    expires_at: float
    body: bytes  # sealed


class ResponseRows(Protocol):
    """One backend. ``put`` may be given a row it already has (a write retried after a lost
    acknowledgement): it is kept once."""

    async def put(self, rows: Sequence[SealedRow]) -> None: ...

    async def get(self, ids: Sequence[str]) -> list[SealedRow]: ...

    async def delete(self, response_id: str, owner: str) -> bool: ...

    async def erase_user(self, user: str) -> int: ...

    async def purge(self, now: float) -> int: ...

    async def close(self) -> None: ...


class SqlResponseRows:
    """The ``responses`` table of the gateway's storage."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._insert = postgresql.insert if store.engine.dialect.name == "postgresql" else sqlite.insert

    async def put(self, rows: Sequence[SealedRow]) -> None:
        if not rows:
            return
        statement = self._insert(schema.responses).on_conflict_do_nothing(index_elements=["id"])
        values = [{"id": r.id, "owner": r.owner, "end_user": r.user, "created_at": r.created_at,
                   "expires_at": r.expires_at, "body": r.body} for r in rows]
        async with self._engine.begin() as conn:
            await conn.execute(statement, values)

    async def get(self, ids: Sequence[str]) -> list[SealedRow]:
        t = schema.responses
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(t).where(t.c.id.in_(list(ids))))).mappings().all()
        return [SealedRow(r["id"], r["owner"], r["end_user"], r["created_at"], r["expires_at"],
                          bytes(r["body"])) for r in rows]

    async def delete(self, response_id: str, owner: str) -> bool:
        t = schema.responses
        return await self._delete(t.delete().where(t.c.id == response_id, t.c.owner == owner)) > 0

    async def erase_user(self, user: str) -> int:
        return await self._delete(schema.responses.delete().where(schema.responses.c.end_user == user))

    async def purge(self, now: float) -> int:
        return await self._delete(schema.responses.delete().where(schema.responses.c.expires_at <= now))

    async def _delete(self, statement: sa.Delete) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount or 0)

    async def close(self) -> None:
        """The engine is the storage's: closed with it."""


# Deletes a response only for its owner.
_DELETE_OWNED = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisResponseRows:
    """One hash per response, ``<prefix>response:<id>``, that Redis expires ``ttl_s`` after it
    was written; a set per end user (named by a digest of the id, never the id itself) lists
    their responses, for erasure."""

    def __init__(self, url: str, ttl_s: float, prefix: str = "lockgate:") -> None:
        import redis.asyncio as aioredis  # only where Redis is used

        self._redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0,
                                        health_check_interval=15)
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._delete_owned = self._redis.register_script(_DELETE_OWNED)

    def _key(self, response_id: str) -> str:
        return f"{self._prefix}response:{response_id}"

    def _user_key(self, user: str) -> str:
        return f"{self._prefix}response-user:{hashlib.sha256(user.encode()).hexdigest()}"

    async def put(self, rows: Sequence[SealedRow]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for r in rows:
            key = self._key(r.id)
            pipe.hset(key, mapping={"owner": r.owner, "user": r.user or "", "created_at": r.created_at,
                                    "expires_at": r.expires_at, "body": r.body})
            pipe.pexpire(key, self._ttl_ms)
            if r.user:
                pipe.sadd(self._user_key(r.user), r.id)
                pipe.pexpire(self._user_key(r.user), self._ttl_ms)
        await pipe.execute()

    async def get(self, ids: Sequence[str]) -> list[SealedRow]:
        pipe = self._redis.pipeline(transaction=False)
        for response_id in ids:
            pipe.hgetall(self._key(response_id))
        found = []
        for response_id, fields in zip(ids, await pipe.execute(), strict=True):
            if fields:
                found.append(SealedRow(response_id, fields[b"owner"].decode(),
                                       fields[b"user"].decode() or None,
                                       float(fields[b"created_at"]), float(fields[b"expires_at"]),
                                       fields[b"body"]))
        return found

    async def delete(self, response_id: str, owner: str) -> bool:
        return bool(await self._delete_owned(keys=[self._key(response_id)], args=[owner]))

    async def erase_user(self, user: str) -> int:
        ids = await self._redis.smembers(self._user_key(user))
        keys = [self._key(i.decode() if isinstance(i, bytes) else i) for i in ids]
        deleted = int(await self._redis.delete(*keys)) if keys else 0
        await self._redis.delete(self._user_key(user))
        return deleted

    async def purge(self, now: float) -> int:
        return 0  # Redis expires each key by itself

    async def close(self) -> None:
        await self._redis.aclose()
