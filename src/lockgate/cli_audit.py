"""``lockgate audit verify``: checks the audit log's hash chain in the configured storage.

Exit codes: 0 the chain holds; 1 it does not (the first bad entry is named) or the storage
cannot be read; 2 the config is invalid. The schema is checked, never migrated: verifying
changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from lockgate.cli_keys import EXIT_BAD_CONFIG, Subcommands, _fail, _missing_sqlite_file, _reason
from lockgate.config import ConfigError, find_config_path, load_config
from lockgate.safe_url import redact_url


def add_commands(commands: Subcommands[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the audit log of admin acts")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser("verify", help="check the audit log's hash chain; exit 1 if broken")
    verify.add_argument("--config", help="config file (default: $LOCKGATE_CONFIG, ./lockgate.yaml)")


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(find_config_path(args.config, os.environ), sections=frozenset({"storage"}))
    except ConfigError as exc:
        return _fail(f"invalid config: {exc.problems[0]} (run 'lockgate check')", EXIT_BAD_CONFIG)
    if missing := _missing_sqlite_file(config.storage):
        return _fail(f"no database at {missing}: no audit log to verify")
    from sqlalchemy.exc import SQLAlchemyError

    from lockgate.state.migrate import SchemaError, check_schema
    from lockgate.state.store import Store

    async def run() -> int:
        store = Store(config.storage)
        try:
            await check_schema(store.engine)
            verdict = await store.verify_audit()
        finally:
            await store.close()
        where = redact_url(config.storage)
        if not verdict.ok:
            return _fail(f"{where}: the audit log is broken at entry {verdict.bad_seq}: {verdict.reason}")
        print(f"{where}: the audit log's chain holds ({verdict.entries} entries)")
        return 0

    try:
        return asyncio.run(run())
    except SchemaError as exc:
        return _fail(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        return _fail(f"cannot use the storage {redact_url(config.storage)}: {_reason(exc)}")
