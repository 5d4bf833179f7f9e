"""What the admin API accepts: request bodies and query strings, as pydantic models.

Bodies are validated strictly (a string is not a number, ``true`` is not an integer) and reject
unknown fields, so a typo such as ``"rmp": 10`` is a 400, not a key without a limit. Query
strings are text by nature, so they are converted, but still reject unknown parameters; an empty
parameter (``?key_id=``) means "no filter". ``describe`` turns pydantic's errors into one
message that names each field.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from lockgate.config import PrivacyOverride
from lockgate.pipeline.limits import BudgetPeriod
from lockgate.state.store import GROUP_BY_FIELDS, LogQuery, UsageQuery

# Epoch seconds past this (year 5138) are almost surely milliseconds: refuse rather than guess.
_MAX_EPOCH_S = 1e11


def parse_time(value: object) -> float:
    """An ISO 8601 date or date-time (UTC when it names no zone) or epoch seconds -> epoch seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected an ISO 8601 date-time or epoch seconds")
    if isinstance(value, str):
        return _parse_time_text(value.strip())
    return _epoch(float(value))


def _parse_time_text(text: str) -> float:
    try:
        return _epoch(float(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _epoch(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("epoch seconds must be a finite, non-negative number")
    if seconds > _MAX_EPOCH_S:
        raise ValueError("epoch seconds expected (this looks like milliseconds)")
    return seconds


def _in_future(seconds: float) -> float:
    if seconds <= time.time():
        raise ValueError("must be in the future (to stop a key now, revoke it)")
    return seconds


Timestamp = Annotated[float, BeforeValidator(parse_time)]
Expiry = Annotated[float, BeforeValidator(parse_time), AfterValidator(_in_future)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
PositiveInt = Annotated[int, Field(gt=0, le=2**31 - 1)]  # the columns are 32-bit on PostgreSQL
Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _storable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``metadata`` as the API can give it back: JSON's integers have no bound, but stored
    values are rendered (and audited) with orjson, which takes 64-bit ones only; one larger
    would have made the key, and every audit listing after it, a 500."""
    if value is not None:
        try:
            orjson.dumps(value)
        except TypeError as exc:
            raise ValueError(f"cannot be stored: {exc}") from None
    return value


Metadata = Annotated[dict[str, Any] | None, AfterValidator(_storable)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Limits(_Body):
    models: list[ModelName] | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_parallel: PositiveInt | None = None
    budget_usd: Usd | None = None
    budget_period: BudgetPeriod = "total"
    metadata: Metadata = None


class TeamCreate(_Limits):
    name: Name


def _privacy(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A key's ``privacy``: the config's own rules (§10), stored as given, without nulls."""
    if value is None:
        return None
    try:
        checked = PrivacyOverride.model_validate(value)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None
    return checked.model_dump(mode="json", exclude_none=True)


class KeyCreate(_Limits):
    name: Name
    team: Name | None = None  # a team's id or name
    expires_at: Expiry | None = None
    privacy: Annotated[dict[str, Any] | None, AfterValidator(_privacy)] = None


class _Update(_Body):
    """A PATCH body: only the fields it names change; ``null`` removes a limit."""

    @field_validator("name", "budget_period", mode="before", check_fields=False)
    @classmethod
    def _required(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value

    @model_validator(mode="after")
    def _some_change(self) -> _Update:
        if not self.model_fields_set:
            raise ValueError("the body names no field to change")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class TeamUpdate(_Update):
    name: Name | None = None
    models: list[ModelName] | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_parallel: PositiveInt | None = None
    budget_usd: Usd | None = None
    budget_period: BudgetPeriod | None = None
    metadata: Metadata = None


class KeyUpdate(TeamUpdate):
    team: Name | None = None
    expires_at: Expiry | None = None
    privacy: Annotated[dict[str, Any] | None, AfterValidator(_privacy)] = None


# --- query strings -----------------------------------------------------------------------------


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data


def _group_by(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise ValueError("expected a comma-separated list")
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in GROUP_BY_FIELDS]
    if unknown:
        raise ValueError(f"unknown {', '.join(map(repr, unknown))} (known: {', '.join(GROUP_BY_FIELDS)})")
    return names


class UsageParams(_Query):
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    group_by: Annotated[tuple[str, ...], BeforeValidator(_group_by)] = ()

    def query(self) -> UsageQuery:
        return UsageQuery(key_id=self.key_id, team_id=self.team_id, model=self.model,
                          since=self.since, until=self.until, group_by=self.group_by)


class LogParams(_Query):
    limit: int = Field(default=100, ge=1, le=1000)
    key_id: str | None = None
    model: str | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    user: str | None = None

    def query(self) -> LogQuery:
        return LogQuery(limit=self.limit, key_id=self.key_id, model=self.model, status=self.status,
                        user=self.user)


class AuditParams(_Query):
    limit: int = Field(default=100, ge=1, le=1000)
    before: int | None = Field(default=None, ge=1)  # an entry's seq: only older entries


class EraseParams(_Query):
    user: str = Field(min_length=1)


# --- errors ------------------------------------------------------------------------------------


def describe(exc: ValidationError) -> str:
    """One line naming every bad field: ``rpm: must be greater than 0; foo: unknown field``."""
    return "; ".join(_describe_one(error) for error in exc.errors(include_url=False))


def _describe_one(error: Any) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "json_invalid":
        return f"the body is not valid JSON ({error['ctx']['error']})"
    if kind == "model_type" and not error["loc"]:
        return "the body must be a JSON object"
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    elif kind == "missing":
        message = "required"
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {message}" if where else message
