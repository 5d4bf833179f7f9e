"""URLs fit to print: every message, log line and command output that names a storage, Redis
or upstream URL shows it through ``redact_url``, so that a password never leaves the config."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """``url`` with its password and query values hidden (``redis://:***@host``; a
    ``?password=`` or ``?key=`` would be a secret too)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an unreadable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username or parts.password:
        netloc = f"{parts.username or ''}{':***' if parts.password else ''}@{netloc}"
    query = "&".join(f"{p.partition('=')[0]}=***" for p in parts.query.split("&") if p)
    # Built by hand: urlunsplit would turn sqlite:///x.db (an empty host) into sqlite:/x.db.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
