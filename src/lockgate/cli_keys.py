"""``lockgate keys create|list|revoke`` and ``lockgate migrate``: the control plane from the
shell, against the storage the config names (as ``serve`` would use it).

Each command brings the schema up to date first, then runs the same operation as the admin API
(``admin.control``), so a key made here is made, validated and audited exactly as one made over
HTTP. Heavy modules (SQLAlchemy, the drivers) are imported only when a command runs.

Exit codes: 0 done; 1 the operation failed (bad input, unknown id, storage unusable); 2 the
config is invalid (as for ``serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from lockgate.config import Config, ConfigError, find_config_path, load_config
from lockgate.safe_url import redact_url

if TYPE_CHECKING:
    from lockgate.admin.control import Control

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2

Subcommands = argparse._SubParsersAction  # argparse's own (private) name for it


def add_commands(commands: Subcommands[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke keys in the configured storage")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print its secret, once")
    create.add_argument("--name", required=True)
    create.add_argument("--team", help="the team's id or name")
    create.add_argument("--models", help="comma-separated model names (default: every model)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--max-parallel", type=int, help="requests in flight at once")
    create.add_argument("--budget-usd", type=float, help="spend cap in USD")
    create.add_argument("--budget-period", choices=("total", "daily", "monthly"))
    create.add_argument("--expires", help="expiry: ISO 8601 date or date-time (UTC), or epoch seconds")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    listing = actions.add_parser("list", help="list the keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help='print {"data": [...]}')
    revoke = actions.add_parser("revoke", help="revoke a key: refused everywhere within a second")
    revoke.add_argument("id")
    migrate = commands.add_parser("migrate", help="bring the storage schema up to date")
    for parser in (create, listing, revoke, migrate):
        parser.add_argument("--config", help="config file (default: $LOCKGATE_CONFIG, ./lockgate.yaml)")


# The only section whose variables these commands need: a provider's secret or a config key's
# need not be set in the shell that lists or creates keys (unset, they keep their ${NAME} text).
_SECTIONS = frozenset({"storage"})


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(find_config_path(args.config, os.environ), sections=_SECTIONS)
    except ConfigError as exc:
        return _fail(f"invalid config: {exc.problems[0]} (run 'lockgate check')", EXIT_BAD_CONFIG)
    if args.command == "migrate":
        return _run(config, _migrate, args)
    command = {"create": _create, "list": _list, "revoke": _revoke}[args.keys_command]
    if args.keys_command != "create" and (missing := _missing_sqlite_file(config.storage)):
        return _fail(f"no database at {missing}: nothing to {args.keys_command} (check the config's "
                     "storage, or create a key or run 'lockgate migrate' to start one there)")
    # On stderr: which database answered, so that a wrong folder or URL shows (stdout stays JSON).
    print(f"storage: {redact_url(config.storage)}", file=sys.stderr)
    return _run(config, command, args)


Command = Callable[["Control", argparse.Namespace], Awaitable[int]]


def _run(config: Config, command: Command, args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from lockgate.admin.control import Control
    from lockgate.errors import GatewayError
    from lockgate.state.migrate import SchemaError
    from lockgate.state.store import Store

    async def run() -> int:
        store = Store(config.storage)
        try:
            await store.migrate()
            return await command(Control(store, config), args)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        return _fail(exc.message)
    except SchemaError as exc:
        return _fail(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        return _fail(f"cannot use the storage {redact_url(config.storage)}: {_reason(exc)}")


async def _create(control: Control, args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from lockgate.admin.schemas import KeyCreate, describe
    from lockgate.admin.views import key_view

    options = {"name": args.name, "team": args.team, "rpm": args.rpm, "tpm": args.tpm,
               "max_parallel": args.max_parallel, "budget_usd": args.budget_usd,
               "budget_period": args.budget_period, "expires_at": args.expires,
               "models": _split(args.models)}
    try:
        body = KeyCreate.model_validate({k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        return _fail(f"invalid key: {describe(exc)}")
    key, secret = await control.create_key(body, _actor())
    view = key_view(key)
    if args.json:
        _print_json({"id": view.pop("id"), "key": secret, **view})
    else:
        print(f"created key {key['id']} ({key['name']})\n\n    {secret}\n\n"
              "This secret is shown only now: lockgate keeps only its hash.")
    return 0


async def _list(control: Control, args: argparse.Namespace) -> int:
    from lockgate.admin.views import key_view

    keys = [key_view(k) for k in await control.list_keys()]
    if args.json:
        _print_json({"data": keys})
    else:
        _print_table(keys)
    return 0


async def _revoke(control: Control, args: argparse.Namespace) -> int:
    before = await control.get_key(args.id)
    key = await control.revoke_key(args.id, _actor())
    already = " (it already was)" if before["revoked_at"] is not None else ""
    print(f"revoked key {key['id']} ({key['name']}){already}")
    return 0


async def _migrate(control: Control, args: argparse.Namespace) -> int:
    from lockgate.state.migrate import head_revision

    print(f"{redact_url(control.store.url)}: schema at revision {head_revision()}")
    return 0


# --- output ------------------------------------------------------------------------------------

_COLUMNS = ("id", "name", "source", "key_prefix", "status", "team_id", "models", "limits",
            "expires_at")


def _print_table(keys: list[dict[str, Any]]) -> None:
    if not keys:
        print("no keys")
        return
    rows = [[_cell(column, key) for column in _COLUMNS] for key in keys]
    headers = [c.upper() for c in _COLUMNS]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(_COLUMNS))]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cell(column: str, key: dict[str, Any]) -> str:
    if column == "limits":
        parts = [f"{name}={key[name]}" for name in ("rpm", "tpm", "max_parallel") if key[name] is not None]
        if key["budget_usd"] is not None:
            parts.append(f"budget=${key['budget_usd']}/{key['budget_period']}")
        return ",".join(parts) or "-"
    value = key[column]
    if isinstance(value, list):
        return ",".join(value)
    return "-" if value is None else str(value)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


# --- helpers -----------------------------------------------------------------------------------


def _split(models: str | None) -> list[str] | None:
    return None if models is None else [m.strip() for m in models.split(",") if m.strip()]


def _actor() -> str:
    """``cli:<os user>`` in the audit log: who ran the command, as far as the shell knows."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _reason(exc: BaseException) -> str:
    """The driver's own first line: SQLAlchemy's full text would repeat the statement."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


def _missing_sqlite_file(url: str) -> str | None:
    """The SQLite file ``url`` names, if it does not exist: opening it would create it empty."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None  # the storage error will say what is wrong with it
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if os.path.exists(database) else database


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"lockgate: {message}", file=sys.stderr)
    return code
