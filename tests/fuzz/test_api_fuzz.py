"""Fuzzing the running gateway from its own ``/openapi.json`` with schemathesis: every client,
V2 and admin operation, with a valid client key (the master key for ``/admin``), valid-ish and
invalid requests. No answer may be a 5xx other than the upstream statuses (502/503/504, the
fakes behind it are healthy, so those would be bugs too and are not allowed here), every answer
must come within the per-request timeout, and status codes and content types must be ones the
document declares.

Bounded and derandomized: the same few cases per operation on every CI run.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance

from fakes.anthropic import FakeAnthropic
from fakes.openai import FakeOpenAI
from gateway import GatewayServer, make_config
from lockgate.openapi import build_spec

CLIENT_KEY = "lg-fuzz-client-0123456789"
MASTER = "lg-fuzz-master-0123456789"
MODELS = ["gpt-4o-mini", "claude", "embed"]
# CI's bound; LOCKGATE_FUZZ_EXAMPLES=200 (and LOCKGATE_FUZZ_SEED) searches deeper by hand.
EXAMPLES_PER_OPERATION = int(os.environ.get("LOCKGATE_FUZZ_EXAMPLES", "6"))
SEED = os.environ.get("LOCKGATE_FUZZ_SEED")
TIMEOUT_S = 10


def fuzz_spec() -> dict[str, Any]:
    """The served document, with ``model`` narrowed to the models this gateway serves, so that
    most generated requests reach the upstream instead of stopping at 404."""
    spec = copy.deepcopy(build_spec())
    for schema in spec["components"]["schemas"].values():
        model = schema.get("properties", {}).get("model")
        if model is not None and model.get("description") == "a model name the gateway serves":
            schema["properties"]["model"] = {"type": "string", "enum": MODELS}
    return spec


schema = schemathesis.openapi.from_dict(fuzz_spec())
CASES_RUN = [0]  # requests sent, printed at the end (pytest -s) for the README's figures


@pytest.fixture(scope="module")
def fuzz_gw() -> Iterator[GatewayServer]:
    with FakeOpenAI() as openai_fake, FakeAnthropic() as anthropic_fake:
        config = make_config({
            "server": {"master_key": MASTER},
            "providers": {
                "oai": {"type": "openai", "api_key": "sk-fuzz", "base_url": openai_fake.base_url},
                "ant": {"type": "anthropic", "api_key": "sk-ant-fuzz", "base_url": anthropic_fake.base_url},
            },
            "models": {
                "gpt-4o-mini": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
                "claude": {"targets": [{"provider": "ant", "model": "claude-sonnet-4-5"}]},
                "embed": {"targets": [{"provider": "oai", "model": "text-embedding-3-small"}]},
            },
            "keys": [{"name": "fuzz", "key": CLIENT_KEY}],
        })
        with GatewayServer(config) as server:
            yield server
    print(f"\nfuzz: {CASES_RUN[0]} requests over {len(list(schema.get_all_operations()))} operations")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=SEED is None, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_gateway_fail(case: schemathesis.Case[Any], fuzz_gw: GatewayServer) -> None:
    CASES_RUN[0] += 1
    key = MASTER if case.path.startswith("/admin") else CLIENT_KEY
    response = case.call(base_url=fuzz_gw.url, headers={"authorization": f"Bearer {key}"},
                         timeout=TIMEOUT_S)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance])
