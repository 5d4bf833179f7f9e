"""Experiments end to end (§8): a real gateway over the fake upstreams, driven with the
openai SDK as a client would, and the admin API as an operator would."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from fakes import Fail, FakeAnthropic, Hang
from gateway import GatewayServer, wait_for, wait_for_records
from lockgate.experiments import service
from lockgate.pipeline import feedback as feedback_endpoint
from lockgate.routing.assignment import Assigner

MASTER = "lg-test-master-key-experiments-0123"
OTHER_KEY = "lg-test-other-client-key-0123456789"
KEYS = [{"name": "app", "key": CLIENT_KEY}, {"name": "other", "key": OTHER_KEY}]
MODELS: dict[str, Any] = {
    "summarizer": {
        "versions": {
            "v1": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0},
            "v2": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}], "retries": 0},
        },
        "default_version": "v1"},
    "plain": {"targets": [{"provider": "oai", "model": "gpt-4o"}]},
    "mirror": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}], "retries": 0,
               "timeout_s": 1.5},
}
TRIAL = {"model": "summarizer", "variants": {"control": {"use": "summarizer@v1", "weight": 50},
                                             "candidate": {"use": "summarizer@v2", "weight": 50}}}


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state poll and the rollback check every 0.1 s instead of 1 s and 5 s; feedback for
    an unknown request waits for it 0.3 s instead of 1 s."""
    monkeypatch.setattr(service, "POLL_S", 0.1)
    monkeypatch.setattr(service, "CHECK_S", 0.1)
    monkeypatch.setattr(feedback_endpoint, "WAIT_S", 0.3)


def start(gateway: GatewayFactory, tmp_path: Any = None, **trial: Any) -> GatewayServer:
    sections: dict[str, Any] = {"models": MODELS, "keys": KEYS, "server": {"master_key": MASTER},
                                "experiments": {"trial": {**TRIAL, **trial}}}
    if tmp_path is not None:
        sections["storage"] = f"sqlite:///{tmp_path}/lockgate.db"
    return gateway(**sections)


_clients: dict[tuple[str, str], openai.OpenAI] = {}


def ask(gw: GatewayServer, user: str | None = None, model: str = "summarizer",
        key: str = CLIENT_KEY) -> tuple[Any, dict[str, str]]:
    client = _clients.get((gw.url, key))
    if client is None:
        client = _clients[gw.url, key] = openai.OpenAI(base_url=gw.openai_base_url, api_key=key,
                                                       max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "summarize this"}],
        user=user if user is not None else openai.omit)
    return raw.parse(), dict(raw.headers)


def admin(gw: GatewayServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.url}/admin{path}",
                         headers={"authorization": f"Bearer {MASTER}"}, timeout=10, **kwargs)


def test_users_are_split_by_weight_and_stay_on_their_variant(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    assigner = Assigner("trial", {"control": 50, "candidate": 50})
    seen: dict[str, set[str]] = {}
    for i in range(10):
        for _ in range(2):
            answer, headers = ask(gw, user=f"user-{i}")
            seen.setdefault(f"user-{i}", set()).add(headers["x-lockgate-variant"])
            assert answer.model == "summarizer"  # the name the client asked for
            version = {"control": "v1", "candidate": "v2"}[headers["x-lockgate-variant"]]
            assert headers["x-lockgate-version"] == version
    assert all(len(variants) == 1 for variants in seen.values())  # sticky
    assert {user: variants.pop() for user, variants in seen.items()} == {
        user: assigner.assign(f"user:{user}") for user in seen}  # the same hash on every process
    assert {r.variant for r in wait_for_records(gw, 20)} == {"control", "candidate"}


def test_models_without_an_experiment_and_pinned_versions_are_not_split(
        gateway: GatewayFactory) -> None:
    gw = start(gateway)
    for model in ("plain", "summarizer@v2"):
        _, headers = ask(gw, user="someone", model=model)
        assert "x-lockgate-variant" not in headers


@pytest.mark.parametrize("sticky", ["key", "none"])
def test_stickiness_by_key_or_by_nothing(gateway: GatewayFactory, sticky: str) -> None:
    gw = start(gateway, sticky=sticky)
    variants = {ask(gw, user=f"user-{i}")[1]["x-lockgate-variant"] for i in range(14)}
    # by key: one key, one variant whoever the user; by nothing: both, whatever the user
    assert len(variants) == (1 if sticky == "key" else 2)


def metric(gw: GatewayServer, line_start: str) -> float | None:
    for line in httpx.get(f"{gw.url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_per_variant_figures_are_in_the_metrics(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    variants = [ask(gw, user=f"user-{i}")[1]["x-lockgate-variant"] for i in range(6)]
    wait_for_records(gw, 6)
    for variant in set(variants):
        count = metric(gw, f'lockgate_experiment_requests_total{{experiment="trial",'
                           f'status="2xx",variant="{variant}"}}')
        assert count == variants.count(variant)


# --- shadow traffic ---------------------------------------------------------------------------

OPENAI_ONLY = {"control": {"use": "summarizer@v1", "weight": 1}, "candidate": {"use": "plain", "weight": 1}}


def test_a_slow_or_failing_shadow_changes_nothing_for_the_client(
        gateway: GatewayFactory, fake_anthropic: FakeAnthropic) -> None:
    gw = start(gateway, variants=OPENAI_ONLY, shadow=["mirror"])
    fake_anthropic.enqueue(Hang(5.0), Fail(500))  # the shadow hangs past its 1.5 s timeout, then fails
    began = time.perf_counter()
    answer, _ = ask(gw, user="first")
    elapsed = time.perf_counter() - began
    assert answer.choices[0].message.content == "Hello from the fake!"
    assert elapsed < 1.2, "the client waited for its shadow"
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=CLIENT_KEY, max_retries=0)
    with client.chat.completions.create(model="summarizer", stream=True, user="second",
                                        messages=[{"role": "user", "content": "stream it"}]) as chunks:
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake!"

    def shadows() -> list[Any]:
        return [r for r in gw.records if r.variant == "shadow:mirror"]

    wait_for(lambda: len(shadows()) == 2, 5, "both shadow records")
    assert sorted(r.status for r in shadows()) == [502, 504]  # recorded, never returned
    assert all(r.key_id is None and r.model == "summarizer" for r in shadows())
    live = [r for r in gw.records if r.variant in ("control", "candidate")]
    assert [r.status for r in live] == [200, 200]
    copies = [r.json for r in fake_anthropic.requests]
    assert [c["messages"][0]["content"][0]["text"] for c in copies] == ["summarize this", "stream it"]
    assert not any(c.get("stream") for c in copies)  # a shadow copy is a whole answer


def test_shadow_copies_are_capped(gateway: GatewayFactory, fake_anthropic: FakeAnthropic) -> None:
    gw = start(gateway, variants=OPENAI_ONLY, shadow=["mirror"], shadow_max_parallel=1)
    fake_anthropic.enqueue(Hang(5.0))
    for i in range(3):
        assert ask(gw, user=f"user-{i}")[0].choices[0].message.content == "Hello from the fake!"
    assert metric(gw, 'lockgate_experiment_shadow_total{experiment="trial",result="dropped",'
                      'target="mirror"}') == 2
    wait_for(lambda: metric(gw, 'lockgate_experiment_shadow_total{experiment="trial",'
                                'result="5xx",target="mirror"}') == 1, 5, "the shadow's timeout")
    assert len(fake_anthropic.requests) == 1


# --- feedback ---------------------------------------------------------------------------------


def feedback(gw: GatewayServer, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.openai_base_url}/feedback", json=body,
                      headers={"authorization": f"Bearer {key}"}, timeout=10)


def test_feedback_is_taken_only_from_the_key_that_made_the_request(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    _, headers = ask(gw, user="fan")
    request_id, variant = headers["x-request-id"], headers["x-lockgate-variant"]
    scored = feedback(gw, CLIENT_KEY, request_id=request_id, score=4.5)  # before its record is stored
    assert scored.status_code == 200, scored.text
    assert (scored.json()["variant"], scored.json()["score"]) == (variant, 4.5)
    assert feedback(gw, CLIENT_KEY, request_id=request_id, label="helpful").status_code == 200
    stolen = feedback(gw, OTHER_KEY, request_id=request_id, score=0)
    assert stolen.status_code == 404
    assert stolen.json()["error"]["code"] == "request_not_found"
    assert feedback(gw, CLIENT_KEY, request_id="never-made", score=1).status_code == 404
    for bad in ({"request_id": request_id, "score": "great"}, {"request_id": request_id},
                {"request_id": request_id, "score": 1, "stars": 5}, {"score": 1}):
        refused = httpx.post(f"{gw.openai_base_url}/feedback", json=bad,
                             headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request"
    assert feedback(gw, "lg-not-a-key-0123456789", request_id=request_id, score=1).status_code == 401
    report = admin(gw, "GET", "/experiments/trial").json()
    [mine] = [v for v in report["variants"] if v["name"] == variant]
    assert mine["feedback"]["count"] == 1
    assert mine["feedback"]["mean"]["estimate"] == 4.5
    assert mine["feedback"]["labels"] == {"helpful": 1}


# --- analysis, promote, stop, rollback ----------------------------------------------------------


def test_the_analysis_names_its_method_and_counts_each_variant(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    variants = [ask(gw, user=f"user-{i}")[1]["x-lockgate-variant"] for i in range(10)]
    wait_for(lambda: sum(v["requests"] for v in admin(gw, "GET", "/experiments/trial").json()[
        "variants"]) == 10, 3, "the records in storage")
    report = admin(gw, "GET", "/experiments/trial").json()
    assert report["status"] == "running" and "confidence sequences" in report["method"]
    assert {v["name"]: v["requests"] for v in report["variants"]} == {
        name: variants.count(name) for name in ("control", "candidate")}
    assert set(report["verdicts"]["candidate"]) == {
        "error_rate", "latency_p50", "latency_p95", "cost", "tokens", "feedback"}
    listed = admin(gw, "GET", "/experiments").json()["data"]
    assert [(e["name"], e["status"], e["control"]) for e in listed] == [("trial", "running", "control")]
    assert admin(gw, "GET", "/experiments/nope").status_code == 404
    assert httpx.get(f"{gw.url}/admin/experiments/trial").status_code == 401


def test_promote_and_stop(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    promoted = admin(gw, "POST", "/experiments/trial/promote", json={"variant": "candidate"})
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["status"], promoted.json()["variant"]) == ("promoted", "candidate")
    served = [ask(gw, user=f"user-{i}")[1] for i in range(6)]
    assert {(h["x-lockgate-variant"], h["x-lockgate-version"]) for h in served} == {("candidate", "v2")}
    assert admin(gw, "POST", "/experiments/trial/promote", json={"variant": "nope"}).status_code == 400
    assert admin(gw, "POST", "/experiments/trial/promote", json={}).status_code == 400
    assert admin(gw, "POST", "/experiments/nope/stop").status_code == 404
    assert admin(gw, "POST", "/experiments/trial/stop").json()["status"] == "stopped"
    served = [ask(gw, user=f"user-{i}")[1] for i in range(6)]
    assert all("x-lockgate-variant" not in h and h["x-lockgate-version"] == "v1" for h in served)
    actions = [e["action"] for e in admin(gw, "GET", "/audit").json()["data"]]
    assert actions[:2] == ["experiment.stop", "experiment.promote"]


def test_a_failing_canary_is_rolled_back_by_itself_under_live_traffic(
        gateway: GatewayFactory, fake_anthropic: FakeAnthropic) -> None:
    gw = start(gateway, rollback={"max_error_rate": 0.2, "min_requests": 20})
    fake_anthropic.enqueue(*[Fail(500)] * 300)  # the candidate (v2, on Anthropic) always fails
    split = gw.app.experiments

    def serve(user: str) -> tuple[int, str | None]:
        try:
            _, headers = ask(gw, user=user)
            return 200, headers.get("x-lockgate-variant")
        except openai.APIStatusError as err:
            return err.status_code, err.response.headers.get("x-lockgate-variant")

    seen = [serve(f"user-{i}") for i in range(40)]
    assert (502, "candidate") in seen and (200, "control") in seen
    i = 40
    while split.state("trial")["status"] == "running":
        assert i < 300, "the failing canary was never rolled back"
        serve(f"user-{i}")
        i += 1
    after = [serve(f"user-{n}") for n in range(12)]  # candidate users among them
    assert set(after) == {(200, "control")}
    report = admin(gw, "GET", "/experiments/trial").json()
    assert (report["status"], report["variant"]) == ("rolled_back", "control")
    assert report["reason"].startswith("candidate: error rate at least")
    assert metric(gw, 'lockgate_experiment_rollbacks_total{experiment="trial"}') == 1
    audit = admin(gw, "GET", "/audit").json()["data"]
    assert [e["target"] for e in audit if e["action"] == "experiment.rollback"] == ["trial"]


def test_the_state_is_shared_by_every_gateway_and_survives_a_restart(
        gateway: GatewayFactory, tmp_path: Any) -> None:
    one, two = start(gateway, tmp_path), start(gateway, tmp_path)
    _, headers = ask(one, user="fan")
    # feedback reaches another process before the record may be stored: it waits for it
    scored = feedback(two, CLIENT_KEY, request_id=headers["x-request-id"], score=1)
    assert scored.status_code == 200, scored.text
    assert admin(one, "POST", "/experiments/trial/promote", json={"variant": "candidate"}).is_success
    wait_for(lambda: ask(two, user="anyone")[1]["x-lockgate-variant"] == "candidate", 3,
             "the other gateway to follow the promotion")
    one.stop()
    two.stop()
    three = start(gateway, tmp_path)
    assert ask(three, user="anyone")[1]["x-lockgate-variant"] == "candidate"  # from its first request
    assert admin(three, "GET", "/experiments/trial").json()["status"] == "promoted"


def test_anthropic_clients_are_sticky_by_their_metadata_user_id(gateway: GatewayFactory) -> None:
    gw = start(gateway)
    client = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)
    assigner = Assigner("trial", {"control": 50, "candidate": 50})
    for user in ("ada", "bob", "cy"):
        raw = client.messages.with_raw_response.create(
            model="summarizer", max_tokens=50, metadata={"user_id": user},
            messages=[{"role": "user", "content": "summarize this"}])
        assert raw.headers["x-lockgate-variant"] == assigner.assign(f"user:{user}")


def test_classical_models_are_split_and_shadowed_too(gateway: GatewayFactory) -> None:
    from classical import models  # scikit-learn and ONNX: imported by the one test that uses them

    m = models()
    gw = gateway(
        providers={"v1": {"type": "sklearn", "path": m.path("iris-v1.skops")},
                   "v2": {"type": "sklearn", "path": m.path("iris-v2.joblib")}},
        models={"iris": {"versions": {"1": {"targets": [{"provider": "v1"}]},
                                      "2": {"targets": [{"provider": "v2"}]}}, "default_version": "1"}},
        keys=KEYS, experiments={"iris-trial": {
            "model": "iris", "shadow": ["iris@2"],
            "variants": {"control": {"use": "iris@1"}, "candidate": {"use": "iris@2"}}}})
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(m.rows.shape),
                        "data": m.rows.tolist()}]}
    expected = {"control": m.v1.predict(m.rows).tolist(), "candidate": m.v2.predict(m.rows).tolist()}
    for user in ("ada", "bob", "cy", "dee"):
        answer = httpx.post(f"{gw.url}/v2/models/iris/infer", json=body,
                            headers={"authorization": f"Bearer {CLIENT_KEY}", "x-lockgate-user": user})
        variant = answer.headers["x-lockgate-variant"]
        assert variant == Assigner("iris-trial", {"control": 1, "candidate": 1}).assign(f"user:{user}")
        [predicted] = [o["data"] for o in answer.json()["outputs"] if o["name"] == "predict"]
        assert predicted == expected[variant]
    wait_for(lambda: len([r for r in gw.records if r.variant == "shadow:iris@2"]) == 4, 5,
             "the shadow predictions")
    assert {(r.status, r.version) for r in gw.records if r.variant == "shadow:iris@2"} == {(200, "2")}


def test_embeddings_are_split_and_shadowed_too(gateway: GatewayFactory) -> None:
    embed = {"targets": [{"provider": "oai", "model": "text-embedding-3-small"}]}
    gw = gateway(models={"embed": embed, "embed-next": embed, "embed-shadow": embed}, keys=KEYS,
                 experiments={"e": {"model": "embed", "shadow": ["embed-shadow"],
                                    "variants": {"control": {"use": "embed"},
                                                 "candidate": {"use": "embed-next"}}}})
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=CLIENT_KEY, max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="embed", input="hello", user="ada")
    assert raw.headers["x-lockgate-variant"] == Assigner("e", {"control": 1, "candidate": 1}).assign(
        "user:ada")
    assert raw.parse().model == "embed"
    wait_for(lambda: [r.status for r in gw.records if r.variant == "shadow:embed-shadow"] == [200], 5,
             "the shadow embedding")
