"""The SSRF guard (interface §1): a provider ``base_url`` on a link-local or cloud-metadata
address is a config error unless the provider sets ``allow_private_network: true``; at connect
time a DNS name resolving only to such addresses is refused."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import ResolveResult

from lockgate.config import ConfigError, ConfigProblem, parse_config
from lockgate.providers import _ssrf
from lockgate.providers._ssrf import GuardedResolver


def problems(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {})
    return caught.value.problems


def provider(base_url: str, extra: str = "", type_name: str = "openai") -> str:
    return f"providers:\n  up:\n    type: {type_name}\n    base_url: '{base_url}'\n{extra}"


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.0.1:8000/v1",
    "http://[fe80::1]/v1",
    "http://[fe80::1%25eth0]:80/v1",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",                   # 169.254.169.254 as one number
    "http://0xa9fea9fe/",                   # ... in hex
    "http://0251.0376.0251.0376/",          # ... in octal parts
    "http://169.254.169.254./",             # with the root's trailing dot
    "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.google.internal./",
])
def test_a_link_local_or_metadata_base_url_is_a_config_error_at_its_path(url: str) -> None:
    [problem] = problems(provider(url))
    assert problem.path == "providers.up.base_url"
    assert problem.line == 4
    assert "allow_private_network" in problem.message


def test_every_network_provider_type_is_guarded() -> None:
    for type_name in ("anthropic", "gemini", "ollama", "vllm", "kserve", "torchserve", "cohere"):
        [problem] = problems(provider("http://169.254.169.254", type_name=type_name))
        assert problem.path == "providers.up.base_url", type_name


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/",
])
def test_allow_private_network_lets_the_provider_use_it(url: str) -> None:
    config = parse_config(provider(url, "    allow_private_network: true\n"), {})
    assert config.providers["up"].base_url == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:11434/v1",            # Ollama on loopback
    "http://localhost:8000/v1",
    "http://10.0.0.5:8000/v1",              # RFC 1918: a vLLM server on the private network
    "http://192.168.1.20/v1",
    "http://172.16.0.9/v1",
    "http://[::1]:8000/v1",
    "http://[fd12:3456::1]/v1",             # unique-local other than AWS's metadata address
    "https://api.openai.com/v1",
    "http://169.254.example.com/v1",        # a name, not an address
])
def test_loopback_private_and_public_addresses_stay_allowed(url: str) -> None:
    assert parse_config(provider(url), {}).providers["up"].base_url == url


def test_the_setting_must_be_a_boolean() -> None:
    [problem] = problems(provider("http://10.0.0.1", "    allow_private_network: perhaps\n"))
    assert problem.path == "providers.up.allow_private_network"


# --- connect time ---------------------------------------------------------------------------


def answer(*ips: str) -> list[ResolveResult]:
    return [ResolveResult(hostname="h", host=ip, port=80, family=socket.AF_INET, proto=0,
                          flags=0) for ip in ips]


class Scripted:
    def __init__(self, ips: tuple[str, ...]) -> None:
        self.ips = ips

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return answer(*self.ips)

    async def close(self) -> None:
        pass


def scripted(*ips: str, allowed: tuple[str, ...] = ()) -> GuardedResolver:
    resolver = GuardedResolver(lambda: allowed)
    resolver._inner = Scripted(ips)  # type: ignore[assignment]
    return resolver


async def test_a_name_resolving_only_to_metadata_addresses_is_refused_at_connect() -> None:
    with pytest.raises(OSError, match="allow_private_network"):
        await scripted("169.254.169.254").resolve("sneaky.example", 80)


async def test_metadata_addresses_are_dropped_from_a_mixed_answer() -> None:
    found = await scripted("169.254.169.254", "93.184.216.34").resolve("mixed.example", 80)
    assert [r["host"] for r in found] == ["93.184.216.34"]


async def test_an_allowed_providers_host_resolves_as_is() -> None:
    found = await scripted("169.254.169.254", allowed=("Meta.Example",)).resolve("meta.example")
    assert [r["host"] for r in found] == ["169.254.169.254"]


def test_refused_address_covers_ipv4_inside_ipv6() -> None:
    assert _ssrf.refused_host("::ffff:a9fe:a9fe") is not None
    assert _ssrf.refused_host("2002:a9fe:a9fe::1") is not None  # 6to4 of 169.254.169.254
    assert _ssrf.refused_host("127.0.0.1") is None
