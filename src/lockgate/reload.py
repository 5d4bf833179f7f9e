"""Hot reload of the config file, on SIGHUP and when the file changes (INTERFACE §1).

Each worker runs one ``ConfigReloader`` task: it polls the file's (inode, size, mtime) once a
second off the request path, and wakes at once on SIGHUP (``request``). A new config is read
and validated in a thread, compared with the one served, and handed to the gateway's
``apply_config``, which builds everything off to the side and swaps it in at once
(``Gateway.apply_config``). An invalid file, or a change that only a restart can apply, is
refused with one log line and the old config keeps serving. Every attempt that finds a
different config is audited (action ``config.reload``), applied or refused.

Only the sections in ``LIVE_SECTIONS`` are applied live; any other difference refuses the whole
reload ("restart needed for: ...") rather than applying half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from lockgate.config import Config, ConfigError, load_config

log = logging.getLogger("lockgate")

ACTION = "config.reload"
LIVE_SECTIONS = ("providers", "models", "keys", "teams")
POLL_S = 1.0

Fingerprint = tuple[int, int, int] | None
Audit = Callable[[str, str, str | None, Any], Awaitable[None]]


class ReloadRefused(Exception):
    """The new config is valid but cannot be applied live; the message says why."""


class Reloadable(Protocol):
    config: Config

    async def apply_config(self, new: Config) -> None: ...


def restart_needed(old: Config, new: Config) -> list[str]:
    """What differs outside the live sections, by name (``server.master_key``, ``storage``)."""
    needed: list[str] = []
    for name in type(old).model_fields:
        if name in LIVE_SECTIONS or getattr(old, name) == getattr(new, name):
            continue
        if name == "server":  # name the setting: "restart needed for: server" helps nobody
            needed.extend(f"server.{field}" for field in type(old.server).model_fields
                          if getattr(old.server, field) != getattr(new.server, field))
        else:
            needed.append(name)
    # An experiment's state (splits, promotion, rollback) is bound to the models it was
    # started with: rebinding it live is not done yet.
    if (old.experiments or new.experiments) and (old.models != new.models
                                                 or old.providers != new.providers):
        needed.append("models/providers while experiments are configured")
    return needed


def changes(old: Config, new: Config) -> dict[str, dict[str, list[str]]]:
    """What a reload changes, by section and name: never a value (keys are named, not shown)."""
    found: dict[str, dict[str, list[str]]] = {}
    for section in LIVE_SECTIONS:
        before, after = _named(old, section), _named(new, section)
        diff = {
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": sorted(n for n in before.keys() & after.keys() if before[n] != after[n]),
        }
        diff = {what: names for what, names in diff.items() if names}
        if diff:
            found[section] = diff
    return found


def _named(config: Config, section: str) -> dict[str, Any]:
    value = getattr(config, section)
    return dict(value) if isinstance(value, dict) else {item.name: item for item in value}


def fingerprint(path: str) -> Fingerprint:
    """Changes whenever the file is written or replaced (an editor's rename, a ConfigMap's
    symlink swap: ``stat`` follows the link); None while it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read(path: str) -> tuple[str, Config]:
    """The file's digest (sha256, as ``sha256sum`` prints it, shortened) and its config,
    substituted and validated as at start-up."""
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        digest = ""  # load_config says why
    return digest, load_config(path)


class ConfigReloader:
    def __init__(self, path: str, gateway: Reloadable, audit: Audit, *,
                 poll_s: float | None = None) -> None:
        self.path = path
        self._gateway = gateway
        self._audit = audit
        self._poll_s = poll_s if poll_s is not None else POLL_S
        # False until the first poll, which reads the file once: a worker forked again after a
        # reload starts with the config the supervisor was given and catches up here.
        self._seen: Fingerprint | bool = False
        self._signalled = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0  # applied so far
        self.refusals = 0  # refused so far (invalid, or a restart needed)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="config-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def request(self) -> None:
        """A reload asked by SIGHUP; safe to call from any thread or a signal handler."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._signalled.set)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._signalled.wait()
            try:
                if self._signalled.is_set():
                    self._signalled.clear()
                    await self.reload("sighup")
                elif await asyncio.to_thread(fingerprint, self.path) != self._seen:
                    await self.reload("config")
            except Exception:  # the watcher must outlive any one failed reload
                log.exception("config reload failed; still serving the previous config")

    async def reload(self, actor: str) -> bool:
        """Reads the file and applies it if it differs; True when a new config was applied."""
        self._seen = await asyncio.to_thread(fingerprint, self.path)
        try:
            digest, new = await asyncio.to_thread(_read, self.path)
        except ConfigError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            log.error("config reload refused: %s is not valid (%s); still serving the previous "
                      "config", self.path, problems)
            self.refusals += 1
            await self._record(actor, {"result": "refused", "reason": "invalid config",
                                       "problems": [p.path for p in exc.problems]})
            return False
        old = self._gateway.config
        if new == old:
            return False
        detail: dict[str, Any] = {"digest": digest, "changes": changes(old, new)}
        try:
            await self._gateway.apply_config(new)
        except ReloadRefused as exc:
            log.error("config reload refused (%s): %s; still serving the previous config",
                      self.path, exc)
            self.refusals += 1
            await self._record(actor, {**detail, "result": "refused", "reason": str(exc)})
            return False
        self.reloads += 1
        log.info("worker %d: config reloaded from %s (sha256 %s, by %s): %s", os.getpid(),
                 self.path, digest, actor, _summary(detail["changes"]))
        await self._record(actor, {**detail, "result": "applied"})
        return True

    async def _record(self, actor: str, detail: dict[str, Any]) -> None:
        detail = {"file": self.path, "worker": os.getpid(), **detail}
        try:
            await self._audit(actor, ACTION, self.path[-200:], detail)  # the column's width
        except Exception as exc:  # storage down: the reload stands, the log line tells it
            log.warning("config reload: cannot write the audit entry (%s)", type(exc).__name__)


def _summary(found: dict[str, dict[str, list[str]]]) -> str:
    parts = [f"{section} {what} {', '.join(names)}"
             for section, diff in found.items() for what, names in diff.items()]
    return "; ".join(parts) or "no section/model names changed"
