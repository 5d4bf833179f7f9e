"""What a request costs: the price list shipped with the package, and the config's overrides.

Prices are looked up once, when routes are built: by the provider's type and upstream model id,
then by the model id alone across providers (Azure, Vertex and Bedrock serve the same models
under their own types), with dated suffixes stripped (``gpt-4o-mini-2024-07-18``,
``claude-sonnet-4-5@20250929``, ``claude-sonnet-4-5-20250929``). A model's ``price:`` in the
config wins over the list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from lockgate.core.chat import Usage

_DATED = re.compile(r"(@\d{8}|-\d{4}-\d{2}-\d{2}|-\d{8}|-v\d+(:\d+)?)$")
_PREFIXES = re.compile(r"^(us\.|eu\.|apac\.|global\.)?(anthropic\.|meta\.|mistral\.|amazon\.|cohere\.)?")


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """USD per million tokens, and per thousand requests (classical ML models)."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    per_1k_requests: float = 0.0

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        tokens = ((usage.prompt_tokens - cached) * self.input + cached * cached_rate
                  + usage.completion_tokens * self.output)
        return tokens / 1_000_000 + self.per_1k_requests / 1000


@cache
def _table() -> dict[str, dict[str, UnitPrice]]:
    raw: dict[str, Any] = json.loads(files(__package__).joinpath("prices.json").read_text())
    return {provider: {model: UnitPrice(**entry) for model, entry in models.items()}
            for provider, models in raw.items() if not provider.startswith("_")}


def list_date() -> str:
    return str(json.loads(files(__package__).joinpath("prices.json").read_text())["_date"])


def lookup(provider_type: str, model: str) -> UnitPrice | None:
    table = _table()
    base = _base_name(model)
    for name in (model, base):
        if name in table.get(provider_type, {}):
            return table[provider_type][name]
    for prices in table.values():
        for name in (model, base):
            if name in prices:
                return prices[name]
    return None


def _base_name(model: str) -> str:
    """The model id without region/vendor prefixes and without every trailing version or date:
    Bedrock's ``anthropic.claude-sonnet-4-5-20250929-v1:0`` carries both a date and a version."""
    base = _PREFIXES.sub("", model)
    while (shorter := _DATED.sub("", base)) != base:
        base = shorter
    return base


def from_config(input_per_mtok: float | None, output_per_mtok: float | None,
                cached_per_mtok: float | None, per_1k_requests: float | None) -> UnitPrice:
    return UnitPrice(input=input_per_mtok or 0.0, output=output_per_mtok or 0.0,
                     cached_input=cached_per_mtok, per_1k_requests=per_1k_requests or 0.0)
