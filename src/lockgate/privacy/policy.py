"""A caller's privacy policy: the config's defaults, then its team's changes, then its key's,
field by field (§10), resolved once when the key is loaded (``pipeline.auth``), never per
request.

Policies with the same settings are one object (``Policies.resolve``), so that the keys of a
gateway share a handful of them, each with its detector built once; and a caller whose policy
changes nothing is given ``OFF``, which the request path tests by identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lockgate.config import PII_KINDS, PIIMode, PrivacyConfig, PrivacyOverride
from lockgate.privacy.detect import Detector
from lockgate.privacy.redact import Finder


@dataclass(frozen=True, slots=True)
class Policy:
    mode: PIIMode = "off"
    entities: tuple[str, ...] = ()
    restore: bool = True
    log_bodies: bool = False
    retention_days: int | None = 30
    finder: Finder = field(default=Detector(()), compare=False, repr=False)
    # Whether the guard has anything to do for this caller's requests: a plain field, read
    # once per request, where a property would be a call.
    active: bool = False


OFF = Policy()


class Policies:
    """Resolves policies from the config's defaults, sharing equal ones."""

    def __init__(self, defaults: PrivacyConfig) -> None:
        self.defaults = defaults
        self._known: dict[tuple[Any, ...], Policy] = {}
        self.default = self.resolve()
        # For a stored key whose settings cannot be read: the strictest reading, not none.
        self.unreadable = self._shared("block", PII_KINDS, False, False, defaults.retention_days)

    def resolve(self, *overrides: PrivacyOverride | Mapping[str, Any] | None) -> Policy:
        """The defaults with each override applied in turn (team first, then key). A stored
        key's override is the JSON the admin API validated; it is checked again here."""
        d = self.defaults
        mode, entities, restore = d.pii.mode, d.pii.entities, d.pii.restore
        log_bodies, retention = d.log_bodies, d.retention_days
        for raw in overrides:
            if raw is None:
                continue
            o = raw if isinstance(raw, PrivacyOverride) else PrivacyOverride.model_validate(raw)
            if o.pii is not None:
                mode = o.pii.mode if o.pii.mode is not None else mode
                entities = o.pii.entities if o.pii.entities is not None else entities
                restore = o.pii.restore if o.pii.restore is not None else restore
            log_bodies = o.log_bodies if o.log_bodies is not None else log_bodies
            retention = o.retention_days if o.retention_days is not None else retention
        return self._shared(mode, entities, restore, log_bodies, retention)

    def _shared(self, mode: PIIMode, entities: tuple[str, ...], restore: bool, log_bodies: bool,
                retention: int | None) -> Policy:
        key = (mode, entities, restore, log_bodies, retention)
        policy = self._known.get(key)
        if policy is None:
            if mode == "off" and not log_bodies and retention == OFF.retention_days:
                policy = OFF
            else:
                policy = Policy(mode, entities, restore, log_bodies, retention, finder_for(entities),
                                active=mode != "off" or log_bodies)
            self._known[key] = policy
        return policy


def finder_for(entities: tuple[str, ...]) -> Finder:
    """The built-in detector, joined by Presidio where the entities ask for what only it finds
    (imported only then: the config refused those entities where it is not installed)."""
    detector = Detector(entities)
    if not any(k in ("person", "location") for k in entities):
        return detector
    from lockgate.privacy.presidio import PresidioFinder

    return PresidioFinder(detector, entities)
