"""The SSRF guard: a provider ``base_url`` may not point at a link-local or cloud-metadata
address (where a cloud VM's instance credentials are served) unless its provider says
``allow_private_network: true``.

Two checks, both off the request path:

* at config time, ``refused_host`` on the URL's host: an IP literal in any notation the
  resolver would accept (``169.254.169.254``, ``[fe80::1]``, ``::ffff:169.254.169.254``, and the
  old ``inet_aton`` forms ``2852039166`` / ``0xa9fea9fe`` that getaddrinfo also takes) or a
  known metadata name (``metadata.google.internal``);
* at connect time, ``GuardedResolver`` drops such addresses from what a DNS name resolves to,
  so a name that resolves to 169.254.169.254 is refused too. aiohttp caches resolutions
  (``ttl_dns_cache``) and pools connections, so this runs once per host and cache period,
  never per request.

Loopback and RFC 1918 addresses stay allowed: a local vLLM or Ollama server is the common case.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
# AWS's IPv6 instance metadata service (in the unique-local range, which stays allowed).
_METADATA_IPS = frozenset({ipaddress.ip_address("fd00:ec2::254")})
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})


def refused_address(ip: _IP) -> bool:
    """True for a link-local or cloud-metadata address, also when IPv4 is wrapped in IPv6."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is not None:
            return refused_address(inner)
        ip = ipaddress.IPv6Address(ip.packed)  # drops a zone id (fe80::1%eth0)
    return ip in _METADATA_IPS or any(ip in net for net in _LINK_LOCAL)


def literal_address(host: str) -> _IP | None:
    """The IP a host name is literally, in any notation getaddrinfo would read as one."""
    host = host.strip().rstrip(".").strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:  # 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refused_host(host: str) -> str | None:
    """Why a ``base_url`` host is refused, or None when it may be used."""
    name = host.strip().rstrip(".").lower()
    if name in _METADATA_NAMES:
        return f"{host!r} is a cloud metadata service"
    ip = literal_address(name)
    if ip is not None and refused_address(ip):
        return f"{host!r} is a link-local or cloud-metadata address ({ip})"
    return None


class GuardedResolver(AbstractResolver):
    """The default resolver, minus link-local and metadata addresses for hosts not in
    ``allowed()`` (the hosts of providers that set ``allow_private_network``; asked on each
    resolution, which is rare, so that a reloaded config counts at once)."""

    def __init__(self, allowed: Callable[[], Iterable[str]] = tuple) -> None:
        self._inner = DefaultResolver()
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if host.lower().rstrip(".") in {h.lower().rstrip(".") for h in self._allowed()}:
            return found
        kept = [r for r in found if not refused_address(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise OSError(f"{host} resolves only to link-local or cloud-metadata addresses; "
                          "set allow_private_network: true on its provider to reach it")
        return kept

    async def close(self) -> None:
        await self._inner.close()
