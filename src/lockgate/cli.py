"""The ``lockgate`` command: argument parsing and ``serve`` / ``check`` / ``version``; ``keys`` and
``migrate`` live in ``cli_keys``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lockgate import __version__, cli_audit, cli_keys
from lockgate.config import (
    Config,
    ConfigError,
    ConfigProblem,
    find_config_path,
    line_numbers,
    load_config,
)

EXIT_REFUSED = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockgate", description="The lockgate AI gateway.")
    parser.add_argument("--version", action="version", version=f"lockgate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $LOCKGATE_CONFIG, ./lockgate.yaml)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=4000, help="port to listen on (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port (default: %(default)s)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow an open gateway (no keys) on a non-loopback address")
    check = commands.add_parser("check", help="validate the config without serving")
    check.add_argument("--config")
    commands.add_parser("version", help="print the version")
    cli_keys.add_commands(commands)
    cli_audit.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"lockgate {__version__}")
        return 0
    if args.command == "check":
        return _check(args.config)
    if args.command in ("keys", "migrate"):
        return cli_keys.main(args)
    if args.command == "audit":
        return cli_audit.main(args)
    return _serve(args)


def _load(explicit: str | None) -> Config:
    return load_config(find_config_path(explicit, os.environ))


def _check(explicit: str | None) -> int:
    """Every problem at once on stderr (exit 1); else the warnings on stderr and OK on stdout."""
    path = find_config_path(explicit, os.environ)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    from lockgate.checkup import warnings

    found = warnings(config)
    lines = line_numbers(Path(path).read_text()) if path and found else {}
    for where, message in found:
        print(f"{path or 'built-in defaults'}: warning: "
              f"{ConfigProblem(where, message, lines.get(tuple(where.split('.'))))}", file=sys.stderr)
    where = path or "built-in defaults"
    print(f"{where}: OK ({len(config.providers)} providers, {len(config.models)} models, "
          f"{len(config.keys)} keys{f', {len(found)} warnings' if found else ''})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more; run 'lockgate check')" if len(exc.problems) > 1 else ""
        return _refuse(f"invalid config: {first}{more}")
    reason = refusal(config, args.host, args.workers, args.insecure, stored_key_count(config))
    if reason:
        return _refuse(reason)
    # imported late: `check` and `version` stay fast
    from sqlalchemy.exc import SQLAlchemyError

    from lockgate.safe_url import redact_url
    from lockgate.server import bind, serve
    from lockgate.state.migrate import SchemaError

    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        return _refuse(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    try:
        return serve(config, sock, args.workers, find_config_path(args.config, os.environ))
    except (SchemaError, OSError, SQLAlchemyError) as exc:
        return _refuse(f"storage {redact_url(config.storage)} is not usable: {exc}")


def stored_key_count(config: Config) -> int | None:
    """Keys ever stored in the configured storage, counted as the gateway counts them when it
    decides at start-up whether it is open; None when the storage cannot be read."""
    import asyncio

    from sqlalchemy.engine import make_url

    from lockgate.state.store import Store

    url = make_url(config.storage)
    if url.get_backend_name() == "sqlite" and not os.path.exists(url.database or ""):
        return 0  # holds no key; not created just to look

    async def count() -> int:
        store = Store(config.storage)
        try:
            return await store.key_count()
        finally:
            await store.close()

    try:
        return asyncio.run(count())
    except Exception:
        return None  # the gateway, unable to count either, starts closed


def refusal(config: Config, host: str, workers: int, insecure: bool,
            stored_keys: int | None = 0) -> str | None:
    """Why ``serve`` must not start with these settings (§1), or None. ``stored_keys``: as
    ``stored_key_count``; a gateway with stored keys is not open, wherever it listens."""
    if workers < 1:
        return "--workers must be at least 1"
    open_gateway = not config.keys and not config.server.master_key and stored_keys == 0
    if open_gateway and host not in ("127.0.0.1", "localhost", "::1") and not insecure:
        return (f"refusing to serve an open gateway (no keys, no master key) on {host}; "
                "configure keys or server.master_key, or pass --insecure")
    if (workers > 1 and config.has_limits() and not config.redis
            and not config.server.per_worker_limits):
        return (f"refusing --workers {workers}: limits are configured but no redis is set, so each "
                "worker would enforce them separately; set redis or server.per_worker_limits: true")
    return None


def _refuse(message: str) -> int:
    print(f"lockgate: {message}", file=sys.stderr)
    return EXIT_REFUSED
