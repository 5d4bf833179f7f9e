"""What a request costs: the shipped price list, lookups by the names each provider uses, and a
config's ``price:`` override."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from lockgate import pricing
from lockgate.config import ModelConfig, Price
from lockgate.core.chat import Usage
from lockgate.pipeline.route import _price
from lockgate.pricing import UnitPrice, from_config, lookup


def test_cost_of_input_and_output_tokens() -> None:
    price = UnitPrice(input=3.0, output=15.0)
    assert price.cost(Usage(prompt_tokens=1_000_000, completion_tokens=0)) == pytest.approx(3.0)
    assert price.cost(Usage(prompt_tokens=2000, completion_tokens=1000)) == pytest.approx(0.021)
    assert price.cost(Usage()) == 0.0


def test_cached_input_is_billed_at_its_own_rate() -> None:
    price = UnitPrice(input=2.0, output=8.0, cached_input=0.5)
    # 1000 prompt tokens of which 800 were read from the cache
    usage = Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=800)
    assert price.cost(usage) == pytest.approx((200 * 2.0 + 800 * 0.5) / 1e6)
    # no cached rate: cached tokens cost the input rate
    assert UnitPrice(input=2.0).cost(usage) == pytest.approx(1000 * 2.0 / 1e6)
    # a provider reporting more cached than prompt tokens is not billed negative input
    odd = Usage(prompt_tokens=100, completion_tokens=0, cached_tokens=500)
    assert price.cost(odd) == pytest.approx(100 * 0.5 / 1e6)


def test_per_request_prices() -> None:
    price = UnitPrice(per_1k_requests=2.0)
    assert price.cost(Usage()) == pytest.approx(0.002)
    assert UnitPrice(input=1.0, per_1k_requests=1.0).cost(Usage(1000, 0)) == pytest.approx(0.002)


@pytest.mark.parametrize(("provider", "model", "same_as"), [
    ("openai", "gpt-4o-mini", ("openai", "gpt-4o-mini")),
    ("openai", "gpt-4o-mini-2024-07-18", ("openai", "gpt-4o-mini")),
    ("azure", "gpt-4o", ("openai", "gpt-4o")),  # another type serving the same model
    ("anthropic", "claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5")),
    ("vertex", "claude-sonnet-4-5@20250929", ("anthropic", "claude-sonnet-4-5")),
    ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", ("anthropic", "claude-sonnet-4-5")),
    ("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", ("anthropic", "claude-haiku-4-5")),
    ("gemini", "gemini-2.5-flash", ("gemini", "gemini-2.5-flash")),
])
def test_lookup_by_the_names_providers_use(provider: str, model: str, same_as: tuple[str, str]) -> None:
    expected = pricing._table()[same_as[0]][same_as[1]]
    assert lookup(provider, model) == expected


def test_an_unknown_model_has_no_price() -> None:
    assert lookup("openai", "my-finetune") is None
    assert lookup("ollama", "llama3.2") is None


def test_the_shipped_list_is_sane() -> None:
    raw = json.loads(files("lockgate.pricing").joinpath("prices.json").read_text())
    assert pricing.list_date() == raw["_date"]
    table = pricing._table()
    assert {"openai", "anthropic", "gemini"} <= set(table)
    for provider, models in table.items():
        for model, price in models.items():
            where = f"{provider}/{model}"
            assert 0 <= price.input < 100 and 0 <= price.output < 200, where
            assert price.input > 0 or price.output > 0, where
            if price.cached_input is not None:
                assert price.cached_input <= price.input, where


def test_a_config_price_overrides_the_list() -> None:
    assert from_config(1.0, 2.0, None, None) == UnitPrice(input=1.0, output=2.0)
    assert from_config(None, None, None, 3.0) == UnitPrice(per_1k_requests=3.0)

    class _Provider:
        type_name = "openai"

    listed = ModelConfig.model_validate({"targets": [{"provider": "oai"}]})
    assert _price(listed, _Provider(), "gpt-4o-mini") == lookup("openai", "gpt-4o-mini")  # type: ignore[arg-type]
    priced = ModelConfig.model_validate({"targets": [{"provider": "oai"}],
                                         "price": Price(input_per_mtok_usd=0.5).model_dump()})
    assert _price(priced, _Provider(), "gpt-4o-mini") == UnitPrice(input=0.5)  # type: ignore[arg-type]
