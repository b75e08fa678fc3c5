"""HTTP bodies and response items (pydantic at the edge), each with an example for /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from kerbside.core.instants import InstantError, format_instant, parse_instant

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_RIGHT_DAYS = 400  # an annual permit with a little slack; longer is a typo
MAX_SUSPENSION_DAYS = 400
MAX_SUSPENSION_BAYS = 1000
_DAY_MS = 86_400_000

Id = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]


def _instant(value: str) -> str:
    try:
        return format_instant(parse_instant(value))
    except InstantError as exc:
        raise ValueError("expected an ISO 8601 UTC instant like 2026-11-26T08:00:05.120Z") from exc


IsoInstant = Annotated[
    str, Field(max_length=40, examples=["2026-11-26T08:00:00.000Z"]), AfterValidator(_instant)
]


def _end_after_start(end: str, info: ValidationInfo, max_days: int) -> str:
    start = info.data.get("start")
    if start is None:  # start itself failed; its own error says why
        return end
    span = parse_instant(end) - parse_instant(start)
    if span <= 0:
        raise ValueError("end must be after start")
    if span > max_days * _DAY_MS:
        raise ValueError(f"end must be within {max_days} days of start")
    return end


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=2000)


class RightBody(_Body):
    """A payment or permit (the journal's ``right`` record). A known ``right_id`` replaces it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "right_id": "ringgo-8812731",
                    "kind": "payment",
                    "bay_id": "CA-F-PKW-001",
                    "start": "2026-11-26T08:00:00.000Z",
                    "end": "2026-11-26T10:00:00.000Z",
                }
            ]
        }
    )

    type: Literal["right"] = "right"
    right_id: Id
    kind: Literal["payment", "permit"]
    bay_id: Id | None = None
    zone_id: Annotated[Id | None, Field(validate_default=True)] = None
    start: IsoInstant
    end: IsoInstant

    @field_validator("zone_id")
    @classmethod
    def _one_place(cls, zone_id: str | None, info: ValidationInfo) -> str | None:
        has_bay = info.data.get("bay_id") is not None
        if has_bay == (zone_id is not None):
            if "bay_id" not in info.data:  # bay_id was invalid: its own error names it
                return zone_id
            raise ValueError("give exactly one of bay_id and zone_id")
        return zone_id

    @field_validator("end")
    @classmethod
    def _span(cls, end: str, info: ValidationInfo) -> str:
        return _end_after_start(end, info, MAX_RIGHT_DAYS)

    def journal(self) -> dict[str, Any]:
        record = self.model_dump(exclude_none=True)
        record["type"] = "right"
        return record


class SuspensionBody(_Body):
    """Bays taken out of use over ``[start, end)`` whatever the hours (journal ``suspension``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "suspension_id": "sus-2026-0142",
                    "bay_ids": ["CA-F-PKW-001", "CA-F-PKW-002"],
                    "start": "2026-11-27T07:00:00.000Z",
                    "end": "2026-11-27T19:00:00.000Z",
                    "reason": "streetworks",
                }
            ]
        }
    )

    type: Literal["suspension"] = "suspension"
    suspension_id: Id
    bay_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_SUSPENSION_BAYS)]
    start: IsoInstant
    end: IsoInstant
    reason: Annotated[str | None, Field(max_length=200)] = None

    @field_validator("end")
    @classmethod
    def _span(cls, end: str, info: ValidationInfo) -> str:
        return _end_after_start(end, info, MAX_SUSPENSION_DAYS)

    def journal(self) -> dict[str, Any]:
        record = self.model_dump()
        record["type"] = "suspension"
        return record


Outcome = Literal["pcn_issued", "no_contravention", "vehicle_gone"]
_OFFICER_EXAMPLE: dict[str, Any] = {
    "outcome": "pcn_issued",
    "note": "PCN 0051234",
}


# The officer recorded is always the caller's token name; a name in the body (older clients send
# one) is accepted and ignored, so no one can act under another officer's name.
_IgnoredOfficer = Annotated[
    str | None,
    Field(
        max_length=64,
        deprecated=True,
        description="ignored: the officer recorded is the name of the caller's token",
    ),
]


class AckBody(_Body):
    """An officer takes the alert (on their way, or at the bay)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "on my way"}]})

    officer: _IgnoredOfficer = None
    outcome: Outcome | None = None
    note: Annotated[str | None, Field(max_length=1000)] = None


class ResolveBody(_Body):
    """An officer closes the alert with what they found."""

    model_config = ConfigDict(json_schema_extra={"examples": [_OFFICER_EXAMPLE]})

    officer: _IgnoredOfficer = None
    outcome: Outcome
    note: Annotated[str | None, Field(max_length=1000)] = None


# Responses (documentation of the shapes; the routes send the service's dicts as they are).


class Location(BaseModel):
    lat: float
    lon: float


class Bay(BaseModel):
    model_config = ConfigDict(extra="allow")

    bay_id: str
    zone_id: str
    street: str | None = None
    kind: str
    location: Location | None = None
    state: Literal["occupied", "vacant", "unknown"]
    since: str | None = None
    gateway_id: str | None = None


class BayPage(BaseModel):
    items: list[Bay]
    next_cursor: str | None = None


class Session(BaseModel):
    model_config = ConfigDict(extra="allow")

    bay_id: str
    zone_id: str
    start: str
    end: str | None = None
    alerts: int


class SessionPage(BaseModel):
    items: list[Session]
    next_cursor: str | None = None


class AlertAction(BaseModel):
    at: str
    action: Literal["ack", "resolve"]
    officer: str
    outcome: str | None = None
    note: str | None = None


class Alert(BaseModel):
    """The alert record (docs/rules.md) plus, for a bay's alert, the bay's kind and maximum
    stay and the right held; ``history`` only on ``GET /api/v1/alerts/{id}``."""

    model_config = ConfigDict(extra="allow")

    v: int = 1
    alert_id: str
    kind: str
    status: Literal["open", "acknowledged", "cleared", "resolved"]
    bay_id: str | None = None
    zone_id: str | None = None
    street: str | None = None
    location: Location | None = None
    session_start: str | None = None
    raised_at: str
    cleared_at: str | None = None
    clear_reason: str | None = None
    bay_kind: str | None = Field(
        default=None, description="the bay's kind (paid, resident, limited, ...); API only"
    )
    max_stay_minutes: int | None = Field(
        default=None, description="the bay's maximum stay, null for none; API only"
    )
    right_kind: Literal["payment", "permit"] | None = Field(
        default=None,
        description="the payment or permit held during the stay (the latest-running), null for "
        "none; API only",
    )
    right_until: str | None = Field(
        default=None, description="when that right ends (or ended); API only"
    )
    history: list[AlertAction] | None = None


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None = None


class Zone(BaseModel):
    zone_id: str
    name: str | None = None


class OccupancyBucket(BaseModel):
    start: str
    end: str
    partial: bool = Field(
        description="the bucket is not over: its figures count its time up to as_of only"
    )
    rate: float | None = Field(description="occupied time / (occupied + vacant time)")
    occupied_s: float
    vacant_s: float
    unknown_s: float
    bays: int = Field(description="bays that existed during the time counted")


class Occupancy(BaseModel):
    zone_id: str | None
    interval: str
    as_of: str = Field(description="the collector's time: no later time is counted")
    buckets: list[OccupancyBucket] = Field(
        description="buckets that have begun by as_of (none in the future)"
    )


class Accepted(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    field: str | None = Field(description="the first offending field, dotted (body.end)")
    detail: list[ErrorItem] | str


class SessionBody(_Body):
    """A sign-in link's one-time code (the part after ``#signin=``). Without it, the session is
    opened for the officer's token in the Authorization header."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "q3Zx0Yk2v8m1..."}]})

    code: Annotated[str, Field(min_length=16, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class SessionInfo(BaseModel):
    name: str
    role: str
    expires_at: str | None = Field(description="when the session ends (null for a bearer token)")


class SignInLinkBody(_Body):
    """Make a one-time sign-in link for an officer who has a token."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "pc-1234", "minutes": 15}]})

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
    minutes: Annotated[float | None, Field(gt=0, le=7 * 24 * 60)] = None


class SignInLink(BaseModel):
    name: str
    url: str = Field(description="open on the officer's phone; it works once")
    expires_at: str
    qr_svg: str = Field(description="the url as a QR code, an SVG document")
