"""Every client format x every provider case x every feature, through a real gateway.

Each provider's fake and the gateway in front of it start once per session; a cell only resets
the fake's script and records. A feature the provider declares unsupported must be refused
with a 400 before anything reaches the upstream. ``scripts/conformance_matrix.py`` turns the
results into ``docs/conformance.md``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes import FakeServer
from gateway import GatewayServer, make_config
from lockgate.providers.registry import provider_class

from .case import ProviderCase
from .clients import CLIENT_FORMATS, ClientFormat
from .features import FEATURES, Cell, Feature, gateway_models
from .providers import all_cases

CASES = all_cases()


class Stack:
    """The session's running fakes, gateways and SDK clients, started on first use."""

    def __init__(self) -> None:
        self._fakes: dict[str, FakeServer] = {}
        self._gateways: dict[str, GatewayServer] = {}
        self._clients: dict[tuple[str, str], ClientFormat] = {}

    def cell(self, fmt: type[ClientFormat], case: ProviderCase) -> Cell:
        fake = self._fake(case)
        fake.reset()
        key = (fmt.name, case.type)
        if key not in self._clients:
            self._clients[key] = fmt(self._gateway(case))
        return Cell(self._clients[key], case, fake)

    def _fake(self, case: ProviderCase) -> FakeServer:
        if case.type not in self._fakes:
            self._fakes[case.type] = case.fake(case.api_key).start()
        return self._fakes[case.type]

    def _gateway(self, case: ProviderCase) -> GatewayServer:
        if case.type not in self._gateways:
            raw = {"providers": {case.type: case.provider_entry(self._fake(case))},
                   "models": gateway_models(case)}
            self._gateways[case.type] = GatewayServer(make_config(raw)).start()
        return self._gateways[case.type]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for gateway in self._gateways.values():
            gateway.stop()
        for fake in self._fakes.values():
            fake.stop()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = Stack()
    yield running
    running.close()


def _cells() -> Iterator[object]:
    for fmt in CLIENT_FORMATS:
        for case in CASES:
            for feature in FEATURES.values():
                if feature.name in fmt.lacks:
                    continue
                bug = case.known_bugs.get((fmt.name, feature.name))
                marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
                yield pytest.param(fmt, case, feature, marks=marks,
                                   id=f"{fmt.name}-{case.type}-{feature.name}")


@pytest.mark.parametrize(("fmt", "case", "feature"), list(_cells()))
def test_cell(fmt: type[ClientFormat], case: ProviderCase, feature: Feature, stack: Stack) -> None:
    cell = stack.cell(fmt, case)
    if feature.name in case.unsupported:
        _assert_refused(cell, feature)
    else:
        feature.check(cell)


def _assert_refused(cell: Cell, feature: Feature) -> None:
    """An unsupported feature gets a clear 400, and the upstream is never called."""
    failure = cell.client.failure(lambda: feature.check(cell))
    assert (failure.kind, failure.status) == ("BadRequestError", 400), failure
    assert cell.case.type in failure.message, "the refusal should name what cannot do it"
    assert cell.fake.requests == []


def test_every_case_is_complete() -> None:
    """A case names only features that exist, and client formats that exist."""
    formats = {fmt.name for fmt in CLIENT_FORMATS}
    for case in CASES:
        assert set(case.unsupported) <= set(FEATURES), case.type
        # The matrix's "unsupported" embeddings cells are what the provider's capabilities say.
        provider = provider_class(case.type)
        assert provider is not None, case.type
        assert ("embeddings" in case.unsupported) == ("embed" not in provider.capabilities), case.type
        assert {f for _, f in case.known_bugs} <= set(FEATURES), case.type
        assert {c for c, _ in case.known_bugs} <= formats, case.type
