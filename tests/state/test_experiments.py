"""``state.experiments`` on every storage backend: the sums the analysis reads, checked
against the same sums computed in Python; the shared state; feedback."""

from __future__ import annotations

import bisect
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lockgate.core.record import RequestRecord
from lockgate.state.experiments import RUNNING, ExperimentStore
from lockgate.state.schema import HISTOGRAM_COLUMNS, LATENCY_BUCKETS_MS
from lockgate.state.store import Store
from services import postgres_clean_url  # noqa: F401  (fixture)

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lockgate.db"
    else:
        yield request.getfixturevalue("postgres_clean_url")  # one database, emptied per test


@pytest.fixture
async def rows(store_url: str) -> AsyncIterator[ExperimentStore]:
    store = Store(store_url)
    await store.migrate()
    yield ExperimentStore(store)
    await store.close()


def record(i: int, variant: str | None, rng: random.Random, *, model: str = "summarizer",
           ts: float = T0 + 10, key: str | None = "key_a") -> RequestRecord:
    return RequestRecord(
        request_id=f"req-{i}", ts=ts + i, endpoint="/v1/chat/completions", key_id=key,
        team_id=None, model=model, route="oai/gpt-4o-mini", status=rng.choice([200, 200, 200, 502]),
        error_code=None, prompt_tokens=rng.randint(1, 50), completion_tokens=rng.randint(1, 50),
        cost_usd=rng.random() / 100, latency_ms=rng.lognormvariate(5, 1), stream=False,
        variant=variant)


async def test_the_figures_are_the_sums_of_the_variants_records(rows: ExperimentStore) -> None:
    rng = random.Random(7)
    mine = [record(i, rng.choice(["control", "candidate"]), rng) for i in range(300)]
    others = [record(1000, "control", rng, model="other"),  # another model
              record(1001, "control", rng, ts=T0 - 5000),  # before the experiment started
              record(1002, None, rng), record(1003, "shadow:mirror", rng)]
    await rows._store.insert_records([*mine, *others])
    got = await rows.figures("summarizer", ["control", "candidate"], T0)
    for variant in ("control", "candidate"):
        rs = [r for r in mine if r.variant == variant]
        tokens = [r.prompt_tokens + r.completion_tokens for r in rs]
        expected = {
            "requests": len(rs), "errors": sum(r.status >= 500 for r in rs),
            "latency_sum": sum(r.latency_ms for r in rs),
            "latency_squares": sum(r.latency_ms ** 2 for r in rs),
            "cost_sum": sum(r.cost_usd for r in rs), "cost_squares": sum(r.cost_usd ** 2 for r in rs),
            "tokens_sum": sum(tokens), "tokens_squares": sum(t * t for t in tokens),
            "prompt_tokens": sum(r.prompt_tokens for r in rs),
            "completion_tokens": sum(r.completion_tokens for r in rs),
        }
        histogram = [0] * len(HISTOGRAM_COLUMNS)
        for r in rs:
            histogram[bisect.bisect_left(LATENCY_BUCKETS_MS, r.latency_ms)] += 1
        expected.update(zip(HISTOGRAM_COLUMNS, histogram, strict=True))
        assert got[variant] == pytest.approx(expected)
    shadow = await rows.figures("summarizer", ["shadow:mirror"], T0)
    assert shadow["shadow:mirror"]["requests"] == 1


async def test_the_state_is_created_once_and_a_rollback_happens_once(rows: ExperimentStore) -> None:
    await rows.ensure(["trial"])
    first = (await rows.states())["trial"]
    await rows.ensure(["trial"])  # another process starting: the start time stays
    assert (await rows.states())["trial"] == first and first["status"] == RUNNING
    assert await rows.decide("trial", "rolled_back", "control", "why", only_if_running=True)
    assert not await rows.decide("trial", "rolled_back", "control", "again", only_if_running=True)
    state = (await rows.states())["trial"]
    assert (state["status"], state["variant"], state["reason"]) == ("rolled_back", "control", "why")
    assert await rows.decide("trial", "promoted", "candidate", "by the operator")


async def test_feedback_finds_only_the_keys_own_request_and_keeps_the_latest(
        rows: ExperimentStore) -> None:
    rng = random.Random(1)
    mine = record(1, "candidate", rng)
    await rows._store.insert_records([mine, record(2, "control", rng, key="key_b"),
                                      record(3, "shadow:x", rng)])
    assert await rows.find_request("req-2", "key_a") is None  # key_b's request
    assert await rows.find_request("req-3", None) is None  # a shadow copy is no request
    found = await rows.find_request("req-1", "key_a")
    assert found == {"id": mine.id, "model": "summarizer", "variant": "candidate"}
    row = {"record_id": mine.id, "request_id": "req-1", "key_id": "key_a", "model": "summarizer",
           "variant": "candidate", "label": None}
    await rows.put_feedback({**row, "score": 2.0, "ts": T0 + 20})
    await rows.put_feedback({**row, "score": 5.0, "ts": T0 + 21})
    await rows.put_feedback({**row, "score": None, "label": "great", "ts": T0 + 22})
    got = await rows.feedback_figures("summarizer", ["candidate", "control"], T0)
    assert got == {"candidate": (1, 5.0, 25.0, {"great": 1})}


async def test_erasing_a_user_erases_the_feedback_on_their_requests(rows: ExperimentStore) -> None:
    rng = random.Random(2)
    theirs, others = record(1, "control", rng), record(2, "control", rng)
    theirs = replace(theirs, user="erase-me")
    await rows._store.insert_records([theirs, others])
    for r in (theirs, others):
        await rows.put_feedback({"record_id": r.id, "request_id": r.request_id, "key_id": "key_a",
                                 "model": "summarizer", "variant": "control", "score": 1.0,
                                 "label": "said something personal", "ts": T0 + 20})
    assert await rows._store.erase_user("erase-me") == (1, 0)  # (records, stored bodies)
    got = await rows.feedback_figures("summarizer", ["control"], T0)
    assert got == {"control": (1, 1.0, 1.0, {"said something personal": 1})}
