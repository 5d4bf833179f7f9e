"""Storage outages as an operator lives through them, with a PostgreSQL of the test's own: storage
stopped mid-traffic (requests keep being served, every record reaches the database exactly once
when it returns), a worker killed while storage is down, a start while storage is down, and
``kill -9`` right after the last answer (the next start replays the spool: no record lost)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import OPENAI_KEY, GatewayFactory
from fakes import FakeOpenAI
from faults.ledger import ANSWER_USD, PRICE
from faults.servers import PrivatePostgres
from gateway import GatewayServer, wait_for
from lockgate.pipeline.auth import digest
from lockgate.server import SHORT_LIFE_S, RestartBackoff
from test_cli import Serving, lockgate, write_config

GPT = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0}}
PRICED = {"gpt": {**GPT["gpt"], "price": PRICE}}
BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def chat(gw: GatewayServer, key: str | None = None, request_id: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(f"{gw.openai_base_url}/chat/completions", json=BODY, headers=headers, timeout=10)


def stored_counts(url: str, request_ids: list[str]) -> dict[str, int]:
    """How many rows of ``requests`` each request id has."""
    import asyncpg

    async def query() -> dict[str, int]:
        conn = await asyncpg.connect(url, timeout=3)
        try:
            rows = await conn.fetch("SELECT request_id, count(*) AS n FROM requests "
                                    "WHERE request_id = ANY($1::text[]) GROUP BY request_id", request_ids)
        finally:
            await conn.close()
        return {row["request_id"]: row["n"] for row in rows}

    return asyncio.run(query())


def spilled_lines(spill_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in spill_dir.glob("spill-*.jsonl"))


def test_a_storage_outage_loses_no_record_and_blocks_no_request(
        gateway: GatewayFactory, private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    gw = gateway(models=PRICED, storage=private_postgres.url, server={"spill_dir": str(spill_dir)})
    run = secrets.token_hex(4)
    sent: list[str] = []

    def send(count: int) -> float:
        """Sends ``count`` requests, each must succeed; the slowest one's seconds."""
        slowest = 0.0
        for _ in range(count):
            request_id = f"outage-{run}-{len(sent)}"
            started = time.monotonic()
            response = chat(gw, request_id=request_id)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200, response.text
            assert response.headers["x-request-id"] == request_id
            sent.append(request_id)
        return slowest

    send(5)
    wait_for(lambda: len(stored_counts(private_postgres.url, sent)) == 5, 5, "the first records")

    private_postgres.stop()
    assert send(10) < 1.0  # the request path never waits on storage
    wait_for(lambda: spilled_lines(spill_dir) >= 10, 5, "the records to be spilled to disk")
    ready = httpx.get(f"{gw.url}/readyz", timeout=10)
    assert ready.status_code == 503 and "storage" in ready.json()["down"]

    private_postgres.start()
    send(5)
    wait_for(lambda: len(stored_counts(private_postgres.url, sent)) == len(sent), 15,
             "every record to reach the database")
    counts = stored_counts(private_postgres.url, sent)
    assert counts == dict.fromkeys(sent, 1)  # every request exactly once
    assert stored_cost(private_postgres.url, sent) == pytest.approx(len(sent) * ANSWER_USD)
    wait_for(lambda: spilled_lines(spill_dir) == 0, 5, "the spill file to be emptied")
    assert list(spill_dir.glob("spill-*.jsonl")), "the spill file was never used"
    assert httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 200


# --- worker processes -------------------------------------------------------------------------


def serve_config(tmp_path: Path, fake_openai: FakeOpenAI, storage: str, **extra: Any) -> Path:
    return write_config(tmp_path, {
        "storage": storage, "server": {"spill_dir": str(tmp_path / "spill"), "drain_s": 2},
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": fake_openai.base_url}},
        "models": GPT, **extra})


def workers_of(gw: Serving) -> list[int]:
    assert gw.proc is not None
    children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children")
    if not children.exists():
        pytest.skip("this kernel does not list a process's children in /proc")
    return [int(pid) for pid in children.read_text().split()]


def status_of_chat(port: int, request_id: str | None = None) -> int:
    """The status of one chat request; 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"content-type": "application/json", **({"x-request-id": request_id} if request_id else {})}
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(BODY), headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def spooling(spill_dir: Path, pid: int) -> bool:
    """Whether worker ``pid``'s spool holds records (storage is down: only the spool has them)."""
    return any(p.stat().st_size for p in spill_dir.glob(f"spill-{pid}-*.jsonl"))


def stored_cost(url: str, request_ids: list[str]) -> float:
    """What the stored records of these requests cost in all."""
    import asyncpg

    async def query() -> float:
        conn = await asyncpg.connect(url, timeout=3)
        try:
            return float(await conn.fetchval("SELECT coalesce(sum(cost_usd), 0) FROM requests "
                                             "WHERE request_id = ANY($1::text[])", request_ids))
        finally:
            await conn.close()

    return asyncio.run(query())


def test_a_worker_killed_while_storage_is_down_is_replaced_and_loses_no_record(
        fake_openai: FakeOpenAI, private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    config = serve_config(tmp_path, fake_openai, private_postgres.url, models=PRICED)
    spill = tmp_path / "spill"
    run = secrets.token_hex(4)
    sent: list[str] = []  # answered 200: each must leave exactly one record

    def send(count: int) -> list[int]:
        """``count`` requests at once (so that both workers take some)."""
        ids = [f"killed-{run}-{len(sent) + n}-{secrets.token_hex(2)}" for n in range(count)]
        with ThreadPoolExecutor(count) as pool:
            statuses = list(pool.map(lambda rid: status_of_chat(gw.port, rid), ids))
        sent.extend(rid for rid, status in zip(ids, statuses, strict=True) if status == 200)
        return statuses

    with Serving("--config", str(config), "--workers", "2", cwd=tmp_path) as gw:
        private_postgres.stop()
        # Without the local key snapshot, a replacement cannot start while storage is down
        # (keys only in storage: it must not start open): it fails, and is tried again.
        (spill / "keys-snapshot.json").unlink()
        workers = workers_of(gw)
        wait_for(lambda: set(send(4)) == {200} and all(spooling(spill, pid) for pid in workers), 10,
                 "both workers to hold records in their spools")
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)  # its spooled records are in its spool file only
        statuses: list[int] = []
        until = time.monotonic() + 3
        while time.monotonic() < until:
            statuses += send(2)
        assert statuses and set(statuses) == {200}, statuses  # the other worker serves
        assert len(workers_of(gw)) <= 2
        private_postgres.start()
        wait_for(lambda: len(workers_of(gw)) == 2 and victim not in workers_of(gw), 20,
                 "a replacement worker")
        assert status_of_chat(gw.port) == 200
        # The dead worker's spool is adopted (by whichever writer looks first) and replayed.
        wait_for(lambda: len(stored_counts(private_postgres.url, sent)) == len(sent), 20,
                 "every answered request's record")
        assert stored_counts(private_postgres.url, sent) == dict.fromkeys(sent, 1)
        assert stored_cost(private_postgres.url, sent) == pytest.approx(len(sent) * ANSWER_USD)
        assert not list(spill.glob(f"spill-{victim}-*.jsonl"))
        gw.terminate()
        code, _, err = gw.wait(timeout=15)
    assert code == 0, err
    assert err.count("could not start; starting another in") >= 2, err  # retried, with a delay


def test_replacements_that_keep_dying_young_wait_longer_up_to_a_cap() -> None:
    backoff = RestartBackoff(first_s=0.5, cap_s=4.0)
    assert [backoff.delay(lived_s=1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(lived_s=SHORT_LIFE_S + 1) == 0.0  # it served a while: replaced at once
    assert backoff.delay(lived_s=1.0) == 0.5  # and the next short life starts over


# --- starting while storage is down -----------------------------------------------------------

CONFIG_KEY = "lg-outage-config-key-0003"


def create_stored_key(storage: str, name: str) -> str:
    """A key created in storage, as ``lockgate keys create`` does; its secret."""
    from lockgate.pipeline.auth import digest
    from lockgate.state.store import Store

    secret = f"lg-stored-{secrets.token_hex(8)}"

    async def create() -> None:
        store = Store(storage)
        try:
            await store.create_key({"name": name}, digest(secret), secret[:8])
        finally:
            await store.close()

    asyncio.run(create())
    return secret


def call(gw: Serving, key: str, request_id: str | None = None) -> int:
    headers = {"authorization": f"Bearer {key}"}
    if request_id:
        headers["x-request-id"] = request_id
    return httpx.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=headers, timeout=10).status_code


def test_serve_starts_while_storage_is_down_with_the_last_known_keys_then_catches_up(
        fake_openai: FakeOpenAI, private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    config = serve_config(tmp_path, fake_openai, private_postgres.url,
                          keys=[{"name": "ci", "key": CONFIG_KEY}])
    with Serving("--config", str(config), cwd=tmp_path) as gw:  # migrates; keys loaded, snapshot kept
        stored = create_stored_key(private_postgres.url, "stored")
        wait_for(lambda: call(gw, stored) == 200, 5, "the stored key to be served")
        # A new key is served at once (looked up); the snapshot follows on the next key poll.
        snapshot = tmp_path / "spill" / "keys-snapshot.json"
        wait_for(lambda: snapshot.exists() and digest(stored) in snapshot.read_text(), 5,
                 "the local key snapshot to hold the stored key")
        gw.terminate()
        gw.wait(timeout=15)
    private_postgres.stop()

    with Serving("--config", str(config), cwd=tmp_path) as gw:
        run = secrets.token_hex(4)
        sent = [f"degraded-{run}-{n}" for n in range(6)]
        assert [call(gw, stored if n % 2 else CONFIG_KEY, rid) for n, rid in enumerate(sent)] == [200] * 6
        assert call(gw, "lg-made-up-key-000000") == 401
        assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200  # alive
        ready = httpx.get(f"{gw.url}/readyz", timeout=5)
        assert ready.status_code == 503 and "storage" in ready.json()["down"]

        private_postgres.start()  # catch up: schema checked, keys reloaded, spool replayed
        wait_for(lambda: httpx.get(f"{gw.url}/readyz", timeout=5).status_code == 200, 15,
                 "storage to be usable again")
        wait_for(lambda: len(stored_counts(private_postgres.url, sent)) == len(sent), 10,
                 "the records spooled while storage was down")
        assert stored_counts(private_postgres.url, sent) == dict.fromkeys(sent, 1)
        newer = create_stored_key(private_postgres.url, "created-after")
        wait_for(lambda: call(gw, newer) == 200, 5, "a key created after the catch-up")
        gw.terminate()
        code, _, err = gw.wait(timeout=15)
    assert code == 0, err
    assert "unreachable" in err


def test_serve_refuses_to_start_open_when_storage_is_down_and_no_key_is_known(
        fake_openai: FakeOpenAI, private_postgres: PrivatePostgres, tmp_path: Path) -> None:
    # Keys live only in storage, which is down, and there is no local snapshot of them: the
    # gateway cannot tell valid keys, nor whether it is meant to be open. It must not serve open.
    config = serve_config(tmp_path, fake_openai, private_postgres.url)
    private_postgres.stop()
    result = lockgate("serve", "--config", str(config), "--port", "0", cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stdout
    assert "no local key snapshot" in result.stderr
    assert "Traceback" not in result.stderr


# --- kill -9 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("storage_down", [True, False], ids=["storage-down", "storage-up"])
def test_kill_9_loses_no_record_of_an_answered_request(
        storage_down: bool, fake_openai: FakeOpenAI, private_postgres: PrivatePostgres,
        tmp_path: Path) -> None:
    config = serve_config(tmp_path, fake_openai, private_postgres.url,
                          keys=[{"name": "ci", "key": CONFIG_KEY}])
    run = secrets.token_hex(4)
    sent = [f"kill-{run}-{n}" for n in range(30)]
    with Serving("--config", str(config), cwd=tmp_path) as gw:
        if storage_down:
            private_postgres.stop()
        assert [call(gw, CONFIG_KEY, rid) for rid in sent] == [200] * len(sent)
        gw.kill()  # SIGKILL right after the last answer: no drain, no flush
        assert gw.proc is not None
        gw.proc.wait(timeout=10)
    if storage_down:
        private_postgres.start()
    with Serving("--config", str(config), cwd=tmp_path) as gw:  # adopts the dead one's spool
        # What is asserted is that none is lost, not how soon: a loaded machine replays slowly.
        wait_for(lambda: len(stored_counts(private_postgres.url, sent)) == len(sent), 60,
                 "the records of every answered request")
        assert stored_counts(private_postgres.url, sent) == dict.fromkeys(sent, 1)
        gw.terminate()
        code, _, err = gw.wait(timeout=15)
    assert code == 0, err
    assert spilled_lines(tmp_path / "spill") == 0
