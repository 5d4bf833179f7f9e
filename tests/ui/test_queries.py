"""The dashboard's API answers over known records, on SQLite and PostgreSQL: totals, hourly
series by dimension, live traffic, the request log (filters and cursor pages), the request
detail, and provider/deployment health with quotas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from lockgate.core.record import RequestRecord
from lockgate.ui import queries
from services import emptied_session_database
from ui.dashboard import Dashboard, dashboard

NOW = 1_800_001_800.0  # half past an hour
MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini", "rpm": 3}]},
          "idle": {"targets": [{"provider": "oai", "model": "idle-model", "tpm": 1000}]}}


def record(request_id: str, ago_s: float, *, key: str = "key_a", model: str = "gpt",
           route: str = "oai/gpt-4o-mini", status: int = 200, latency_ms: float = 40.0) -> RequestRecord:
    return RequestRecord(request_id=request_id, ts=NOW - ago_s, endpoint="chat/completions", key_id=key,
                         team_id="team_1" if key == "key_a" else None, model=model, route=route,
                         status=status, error_code="upstream_error" if status == 502 else None,
                         prompt_tokens=11, completion_tokens=7, cost_usd=0.01, latency_ms=latency_ms,
                         stream=False)


RECORDS = [
    record("req-now-1", 10), record("req-now-2", 20), record("req-now-3", 30),
    record("req-bad", 100, key="key_b", model="claude", route="claude/sonnet", status=502, latency_ms=900),
    record("req-old-1", 2 * 3600), record("req-old-2", 2 * 3600 + 5),
    record("req-days-ago", 3 * 86400),
]


# The tests only read: one dashboard over one set of records per storage, for the whole module.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def ui(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> AsyncIterator[tuple[Dashboard, dict[str, str]]]:
    if request.param == "sqlite":
        storage = f"sqlite:///{tmp_path_factory.mktemp('ui')}/ui.db"
    else:
        storage = await emptied_session_database(request.config)
    async with dashboard(storage, models=MODELS) as board:
        board.clock.now = NOW
        await board.store.insert_records(RECORDS)
        yield board, await board.sign_in()


async def get(ui: tuple[Dashboard, dict[str, str]], path: str) -> Any:
    board, headers = ui
    answer = await board.client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_overview_totals(ui: tuple[Dashboard, dict[str, str]]) -> None:
    day = await get(ui, "/ui/api/overview?range=24h")
    assert (day["requests"], day["errors"], day["tokens"]) == (6, 1, 6 * 18)
    assert day["cost_usd"] == pytest.approx(0.06) and day["error_rate"] == pytest.approx(1 / 6)
    assert day["latency_ms"] == {"p50": 50.0, "p95": 1000.0, "p99": 1000.0}  # histogram bucket bounds
    assert (await get(ui, "/ui/api/overview?range=30d"))["requests"] == 7


async def test_series_by_model_and_by_key(ui: tuple[Dashboard, dict[str, str]]) -> None:
    series = await get(ui, "/ui/api/series?range=24h&by=model")
    assert len(series["t"]) == 24 and series["t"][-1] == int(NOW // 3600) * 3600
    groups = {g["name"]: g for g in series["groups"]}
    assert set(groups) == {"gpt", "claude"}
    assert groups["gpt"]["requests"][-1] == 3 and groups["gpt"]["requests"][-3] == 2
    assert groups["claude"]["errors"][-1] == 1 and groups["claude"]["cost_usd"][-1] == pytest.approx(0.01)
    assert groups["claude"]["p95"][-1] == 1000.0 and groups["gpt"]["p95"][-1] == 50.0  # each its own
    assert groups["gpt"]["p95"][0] is None  # no requests that hour
    assert series["total"]["requests"][-1] == 4 and series["total"]["p95"][-1] == 1000.0
    by_key = await get(ui, "/ui/api/series?range=7d&by=key_id")
    assert {g["name"] for g in by_key["groups"]} == {"key_a", "key_b"}
    assert sum(by_key["total"]["requests"]) == 7 and by_key["step_s"] == 3600
    month = await get(ui, "/ui/api/series?range=30d&by=team_id")  # past a week: day by day
    assert month["step_s"] == 86400 and len(month["t"]) in (30, 31)
    teams = {g["name"]: sum(g["requests"]) for g in month["groups"]}
    assert teams == {"team_1": 6, "(none)": 1}


async def test_groups_past_the_top_are_summed_as_other(
        ui: tuple[Dashboard, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "TOP_GROUPS", 1)
    series = await get(ui, "/ui/api/series?range=24h&by=model")
    gpt, other = series["groups"]
    assert (gpt["name"], other["name"]) == ("gpt", "other")
    assert (other["requests"][-1], other["errors"][-1], other["p95"][-1]) == (1, 1, 1000.0)


async def test_live_traffic(ui: tuple[Dashboard, dict[str, str]]) -> None:
    live = await get(ui, "/ui/api/live")
    assert (sum(live["requests"]), sum(live["errors"]), live["sampled"]) == (4, 1, False)
    assert len(live["t"]) == len(live["p50"]) == 900 // live["step_s"]
    assert sorted(p for p in live["p95"] if p is not None) == [40.0, 40.0, 900.0]  # 3 in 2 buckets, 1 slow


async def test_the_request_log_pages_by_cursor_and_filters(ui: tuple[Dashboard, dict[str, str]]) -> None:
    seen: list[str] = []
    cursor = ""
    while True:
        page = await get(ui, f"/ui/api/logs?limit=2{cursor}")
        seen += [row["request_id"] for row in page["data"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [r.request_id for r in RECORDS]  # newest first, each once
    assert [r["request_id"] for r in (await get(ui, "/ui/api/logs?status=5xx"))["data"]] == ["req-bad"]
    assert len((await get(ui, "/ui/api/logs?status=200"))["data"]) == 6
    assert len((await get(ui, "/ui/api/logs?key_id=key_a"))["data"]) == 6
    assert [r["request_id"] for r in (await get(ui, "/ui/api/logs?model=claude"))["data"]] == ["req-bad"]
    window = await get(ui, f"/ui/api/logs?since={NOW - 7300}&until={NOW - 3600}")
    assert [r["request_id"] for r in window["data"]] == ["req-old-1", "req-old-2"]


async def test_a_filter_without_an_index_reads_a_bounded_window_per_page(
        ui: tuple[Dashboard, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "SCAN_BUDGET", 3)  # records a page may read for model/status filters
    first = await get(ui, "/ui/api/logs?model=claude")
    assert first["data"] == [] and first["next_cursor"] and first["scanned_to"]  # 3 newest: none match
    second = await get(ui, f"/ui/api/logs?model=claude&cursor={first['next_cursor']}")
    assert [r["request_id"] for r in second["data"]] == ["req-bad"] and second["next_cursor"]
    last = await get(ui, f"/ui/api/logs?model=claude&cursor={second['next_cursor']}")
    assert last == {"data": [], "next_cursor": None, "scanned_to": None}


async def test_request_detail(ui: tuple[Dashboard, dict[str, str]]) -> None:
    found = (await get(ui, "/ui/api/requests/req-bad"))["data"]
    assert len(found) == 1
    assert found[0] | {"latency_ms": 900.0, "status": 502, "error_code": "upstream_error",
                       "route": "claude/sonnet", "key_id": "key_b"} == found[0]
    assert (await get(ui, "/ui/api/requests/no-such-id"))["data"] == []


async def test_health_per_route_and_quota(ui: tuple[Dashboard, dict[str, str]]) -> None:
    rows = {h["route"]: h for h in (await get(ui, "/ui/api/health?range=1h"))["data"]}
    gpt, claude, idle = rows["oai/gpt-4o-mini"], rows["claude/sonnet"], rows["oai/idle-model"]
    assert (gpt["requests"], gpt["error_rate"], gpt["rpm"], gpt["last_minute"]["requests"]) == (3, 0.0, 3, 3)
    assert gpt["at_quota"] is True  # 3 requests in the last minute against rpm 3
    assert (claude["requests"], claude["errors"], claude["configured"]) == (1, 1, False)
    assert claude["at_quota"] is False
    assert claude["latency_ms"]["p95"] == 1000.0
    assert (idle["requests"], idle["tpm"], idle["at_quota"]) == (0, 1000, False)


async def test_bad_queries_get_400(ui: tuple[Dashboard, dict[str, str]]) -> None:
    board, headers = ui
    for query in ("/ui/api/overview?range=2y", "/ui/api/series?by=secret", "/ui/api/logs?status=abc",
                      "/ui/api/logs?cursor=x:y", "/ui/api/logs?limit=many", "/ui/api/health?range=1y"):
        answer = await board.client.get(query, headers=headers)
        assert answer.status_code == 400, query
        assert answer.json()["error"]["code"] == "invalid_request"
