"""``telemetry.metrics``: what a Prometheus scrape of ``GET /metrics`` shows after known traffic
through the official OpenAI SDK — fixed names, bounded labels, counts — and the
``x-lockgate-overhead-ms`` header."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import OPENAI_KEY, GatewayFactory
from fakes import Fail, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for
from lockgate.config import ConfigError, parse_config
from lockgate.telemetry.metrics import MAX_SEEN_NAMES, OVERHEAD_BUCKETS, Labels, Tally
from test_cli import Serving, clean_env, write_config

KEY = "sk-lockgate-metrics-test-0123456789"
MASTER = "sk-lockgate-master-metrics-0123456789"
MODELS = {
    "chat": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}],
             "price": {"input_per_mtok_usd": 1.0, "output_per_mtok_usd": 2.0}},
    "flaky": {"targets": [{"provider": "oai", "model": "gpt-4o"}], "retries": 1},
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gw: GatewayServer | Serving, key: str | None = None) -> Samples:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    # A new connection each time: with several workers, any of them may answer.
    response = httpx.get(f"{gw.url}/metrics", headers={**headers, "connection": "close"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=gw.openai_base_url, max_retries=0)


def requests_counted(gw: GatewayServer | Serving, count: float) -> None:
    """A request is counted as it is recorded, just after its answer was sent."""
    wait_for(lambda: sum(v for (n, _), v in scrape(gw).items()
                         if n == "lockgate_requests_total") >= count, 2, f"{count} requests counted")


def test_known_traffic_shows_in_the_fixed_names_with_bounded_labels(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY, "rpm": 3}])
    fake_openai.enqueue(Reply(prompt_tokens=10, completion_tokens=5),
                        Reply(prompt_tokens=10, completion_tokens=5), Fail(503), Fail(503))
    with client(gw) as oai:
        for _ in range(2):
            oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.APIStatusError):  # two attempts, both 503: 502 to the client
            oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.NotFoundError):  # a name nobody configured
            oai.chat.completions.create(model=f"made-up-{KEY}", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError):  # the key's fourth reserved request in the minute
            oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    requests_counted(gw, 5)
    m = scrape(gw)
    assert value(m, "lockgate_requests_total", model="chat", route="oai/gpt-4o-mini", status="2xx") == 2
    assert value(m, "lockgate_requests_total", model="flaky", route="oai/gpt-4o", status="5xx") == 1
    assert value(m, "lockgate_requests_total", model="other", route="none", status="4xx") == 1
    assert value(m, "lockgate_requests_total", model="chat", route="none", status="4xx") == 1
    assert value(m, "lockgate_tokens_total", model="chat", kind="prompt") == 20
    assert value(m, "lockgate_tokens_total", model="chat", kind="completion") == 10
    assert value(m, "lockgate_cost_usd_total", model="chat") == pytest.approx(2 * (10 + 10) / 1e6)
    assert value(m, "lockgate_upstream_errors_total", route="oai/gpt-4o", code="503") == 2
    assert value(m, "lockgate_rate_limited_total", reason="rate_limit_exceeded") == 1
    assert value(m, "lockgate_request_duration_seconds_count", model="chat") == 3  # refused too
    assert value(m, "lockgate_overhead_seconds_count") == 5
    assert value(m, "lockgate_overhead_seconds_bucket", le="+Inf") == 5
    # No secret and no request id is ever a label value.
    text = httpx.get(f"{gw.url}/metrics").text
    assert KEY not in text and "made-up" not in text
    assert not any(r.request_id in text for r in gw.records)


def test_a_path_no_endpoint_serves_is_counted_but_not_stored(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}])
    for path in ("/v1/chat/complete", "/wp-login.php"):
        assert httpx.post(f"{gw.url}{path}", json={}).status_code == 404
    assert value(scrape(gw), "lockgate_requests_total", model="none", route="none", status="4xx") == 2
    assert gw.records == []  # a scanner's guesses never reach the database


def test_a_non_streamed_answer_tells_the_gateway_s_own_time(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}])
    fake_openai.enqueue(Reply(headers_delay_s=0.2))
    with client(gw) as oai:
        raw = oai.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}])
        stream = oai.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "x-lockgate-overhead-ms" not in stream.headers  # told for whole answers only
        list(stream.parse())
    overhead_ms = float(raw.headers["x-lockgate-overhead-ms"])
    # The upstream took 200 ms of the answer; the gateway's own part excludes it.
    assert 0 < overhead_ms < 50
    requests_counted(gw, 2)
    record = next(r for r in gw.records if not r.stream)
    assert record.upstream_ms >= 200 and record.overhead_ms == overhead_ms
    assert record.latency_ms >= record.upstream_ms + record.overhead_ms - 1


def test_metrics_auth_needs_the_master_key(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}],
                 server={"master_key": MASTER, "metrics_auth": True})
    for headers in ({}, {"authorization": f"Bearer {KEY}"}, {"x-api-key": "wrong"}):
        refused = httpx.get(f"{gw.url}/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
    assert "lockgate_overhead_seconds" in httpx.get(f"{gw.url}/metrics",
                                                    headers={"x-api-key": MASTER}).text
    assert scrape(gw, MASTER) is not None


def test_metrics_are_open_without_metrics_auth(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}], server={"master_key": MASTER})
    assert httpx.get(f"{gw.url}/metrics").status_code == 200


def test_metrics_auth_without_a_master_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"server\.metrics_auth.*master_key"):
        parse_config("server: {metrics_auth: true}\n", {})


def test_names_beyond_the_config_are_bounded() -> None:
    labels = Labels(["chat"], ["oai/gpt-4o-mini"], open_names=True)
    assert labels.name("chat", served=False) == "chat"
    assert labels.name(None, served=True) == "none"
    assert labels.name("openai/gpt-x", served=False) == "other"  # refused: never admitted
    admitted = [labels.name(f"openai/m{i}", served=True) for i in range(MAX_SEEN_NAMES + 5)]
    assert admitted[:MAX_SEEN_NAMES] == [f"openai/m{i}" for i in range(MAX_SEEN_NAMES)]
    assert set(admitted[MAX_SEEN_NAMES:]) == {"other"}
    assert labels.name("openai/m0", served=False) == "openai/m0"  # once admitted, kept
    closed = Labels(["chat"], [], open_names=False)  # a configured gateway serves no other name
    assert closed.name("openai/gpt-x", served=True) == "other"
    assert [Labels.status(s) for s in (200, 404, 429, 499, 502)] == ["2xx", "4xx", "4xx", "4xx", "5xx"]


def test_with_several_workers_every_scrape_tells_the_whole_gateway(
        fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    config = write_config(tmp_path, {
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": fake_openai.base_url}},
        "models": MODELS,
    })
    scratch = tmp_path / "tmp"  # where the workers share their figures
    scratch.mkdir()
    with Serving("--config", str(config), "--workers", "2", cwd=tmp_path,
                 env=clean_env(TMPDIR=str(scratch))) as gw:
        def ask() -> None:
            with openai.OpenAI(api_key="none", base_url=f"{gw.url}/v1", max_retries=0) as oai:
                oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

        threads = [threading.Thread(target=ask) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        requests_counted(gw, 10)
        # Whichever worker answers a scrape (each on a new connection), it sums both.
        for _ in range(8):
            m = scrape(gw)
            assert value(m, "lockgate_requests_total", model="chat", route="oai/gpt-4o-mini",
                         status="2xx") == 10
            assert value(m, "lockgate_tokens_total", model="chat", kind="prompt") == 110
            assert value(m, "lockgate_overhead_seconds_count") == 10
        assert [p.name[:17] for p in scratch.iterdir()] == ["lockgate-metrics-"]
        gw.terminate()
        code, _, err = gw.wait(timeout=10)
    assert code == 0, err
    assert list(scratch.iterdir()) == []  # the shared folder goes with the gateway


def test_a_tally_buckets_like_prometheus_and_sums_across_workers() -> None:
    one, two = Tally(), Tally()
    one.observe("overhead", (), 0.0005)  # on a bound: in that bucket (le is inclusive)
    one.observe("overhead", (), 5.0)  # past every bound: +Inf only
    two.observe("overhead", (), 0.00001)
    two.counters["requests"]["chat", "oai/gpt-4o-mini", "2xx"] = 3
    whole = Tally()
    for part in (one, Tally.loads(two.dumps())):  # another worker's, as it shared them
        whole.add(part)
    series = whole.histograms["overhead"][()]
    assert series[OVERHEAD_BUCKETS.index(0.0005)] == 1 and series[0] == 1 and series[-2] == 1
    assert sum(series[:-1]) == 3 and series[-1] == pytest.approx(5.00051)
    assert whole.counters["requests"] == {("chat", "oai/gpt-4o-mini", "2xx"): 3}
