"""The YAML schema of ackd's configuration, as pydantic models.

These mirror the file exactly (key names, nesting, optionality) and reject unknown keys and
wrong types; config/build/ turns them into the domain's frozen dataclasses after the checks that
span the whole file (references between sections, matcher syntax, Apprise URLs).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from receiver.core.durations import parse_duration
from receiver.core.limits import DEFAULT_MAX_ALERTS, DEFAULT_MAX_GROUPS, DEFAULT_MAX_LABELS


def _duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        # YAML 1.1 reads an unquoted on/off/yes/no/true/false as a boolean, which pydantic
        # would take as 1 s or 0 s: `every: on` meant something, but not a second.
        raise ValueError(f"a duration needs a unit, e.g. 30s or 5m (YAML read this as "
                         f"{str(value).lower()})")
    if isinstance(value, int | float):
        raise ValueError("a duration needs a unit, e.g. 30s or 5m")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _clock_time(value: object) -> object:
    # YAML 1.1 reads an unquoted 09:00 as the sexagesimal integer 540; accept it as intended.
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        return time(hours, minutes) if hours < 24 else value
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# What the code divides by or waits on in a loop (a link's life, a delivery's timeout).
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Name = Annotated[str, Field(min_length=1, pattern=NAME_PATTERN)]
SHIFT_PATTERN = r"^[1-9][0-9]*(s|m|h|d|w)$"
# What a key's pattern means, for check-config's message in place of the regex.
PATTERN_MEANING = {
    NAME_PATTERN: "a name is letters, digits, '_', '.' and '-', starting with a letter or digit",
    SHIFT_PATTERN: "a shift is a whole number above 0 and one unit of s, m, h, d, w (e.g. 1w)",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class BasicAuthSpec(Strict):
    username: str
    password: str | None = None
    password_file: str | None = None


class WebhookSpec(Strict):
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuthSpec | None = None
    max_body_bytes: Annotated[int, Field(gt=0)] = 1024 * 1024
    # The memory that remembering webhooks seen before may take (grouping.MemoBytes).
    memo_bytes: Annotated[int, Field(ge=0)] = 64 * 1024 * 1024
    # What one webhook may ask of the event loop (receiver/core/limits.py); past them, a 400.
    max_alerts: Annotated[int, Field(gt=0)] = DEFAULT_MAX_ALERTS
    max_labels: Annotated[int, Field(gt=0)] = DEFAULT_MAX_LABELS
    max_groups: Annotated[int, Field(gt=0)] = DEFAULT_MAX_GROUPS


ScopeName = Literal["read", "respond", "admin"]
# A named token may also be a heartbeat token (receiver/heartbeats/): it only posts heartbeats.
TokenScopeName = Literal["read", "respond", "admin", "heartbeat"]


class ApiTokenSpec(Strict):
    name: Name
    token: str | None = None
    token_file: str | None = None
    # admin by default: before scopes, every named token could do everything.
    scope: TokenScopeName = "admin"


class ApiSpec(Strict):
    tokens: list[ApiTokenSpec] = []


class LinksSpec(Strict):
    secret: str | None = None
    secret_file: str | None = None
    ttl: PositiveDuration = timedelta(hours=24)


class PostgresSpec(Strict):
    dsn: str | None = None
    dsn_file: str | None = None
    # Connections each replica holds to the database.
    pool_size: Annotated[int, Field(ge=2, le=200)] = 10
    # How long opening one connection may take (TCP, TLS, authentication) before it fails.
    connect_timeout: PositiveDuration = timedelta(seconds=10)


class StorageSpec(Strict):
    path: str = "ackd.db"
    synchronous: Literal["full", "normal"] = "full"
    # A PostgreSQL database instead of the SQLite file: for several replicas of ackd.
    postgres: PostgresSpec | None = None


class RetrySpec(Strict):
    attempts: Annotated[int, Field(ge=1, le=20)] = 3
    backoff: Duration = timedelta(seconds=2)
    max_backoff: Duration = timedelta(minutes=1)


class RateLimitSpec(Strict):
    max: Annotated[int, Field(ge=1)] = 10
    window: PositiveDuration = timedelta(minutes=10)


class TemplateSpec(Strict):
    title: str | None = None
    body: str | None = None


class NotificationsSpec(Strict):
    workers: Annotated[int, Field(ge=1, le=256)] = 8
    timeout: PositiveDuration = timedelta(seconds=10)
    retry: RetrySpec = RetrySpec()
    bundle_window: Duration = timedelta(seconds=30)
    max_hold: Duration = timedelta(seconds=5)
    rate_limit: RateLimitSpec = RateLimitSpec()
    templates: dict[str, TemplateSpec] = {}


class SeveritySpec(Strict):
    name: Name
    description: str = ""
    urgency: Literal["high", "low"] = "high"
    stakeholders: list[str] = []
    # How often an open incident of this severity needs a status update (incidents/cadence.py).
    status_every: Duration | None = None


class ContactSpec(Strict):
    url: str | None = None
    url_file: str | None = None
    delay: Duration = timedelta(0)
    short: bool = False


class UserSpec(Strict):
    name: Name
    full_name: str = ""
    contacts: Annotated[list[ContactSpec], Field(min_length=1)]
    # The person's own API token: what they do through the API is recorded as them.
    token: str | None = None
    token_file: str | None = None
    scope: ScopeName = "respond"


class ChannelSpec(Strict):
    name: Name
    urls: Annotated[list[ContactSpec], Field(min_length=1)]


class RestrictionSpec(Strict):
    days: str = "mon-sun"
    start: ClockTime
    end: ClockTime


class RotationSpec(Strict):
    name: str = ""
    users: Annotated[list[str], Field(min_length=1)]
    shift: Annotated[str, Field(pattern=SHIFT_PATTERN)]
    start: datetime
    restrictions: list[RestrictionSpec] = []
    timezone: str | None = None  # the rotation's own zone, for its start and restrictions


class LayerSpec(Strict):
    name: Name
    rotations: Annotated[list[RotationSpec], Field(min_length=1)]


class OverrideSpec(Strict):
    user: str
    start: datetime
    end: datetime
    layer: str | None = None
    replaces: str | None = None


class ScheduleSpec(Strict):
    name: Name
    timezone: str
    layers: Annotated[list[LayerSpec], Field(min_length=1)]
    overrides: list[OverrideSpec] = []
    handoff_notices: bool = False


class WorkingHoursSpec(Strict):
    timezone: str
    days: str = "mon-fri"
    start: ClockTime
    end: ClockTime


class TeamSpec(Strict):
    name: Name
    schedule: str | None = None
    lead: str | None = None
    working_hours: WorkingHoursSpec | None = None


class TargetSpec(Strict):
    """Exactly one of: a schedule's layer, the owning team's on-call layer, a user, a channel."""

    schedule: str | None = None
    oncall: str | None = None
    lead: bool = False
    user: str | None = None
    channel: str | None = None
    layer: str = "primary"

    @model_validator(mode="after")
    def _exactly_one(self) -> TargetSpec:
        chosen = [self.schedule, self.oncall, self.user, self.channel, self.lead or None]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError("a target names exactly one of schedule, oncall, lead, user, channel")
        return self


class StepSpec(Strict):
    after: Duration | None = None
    delay: Duration | None = None
    notify: Annotated[list[TargetSpec], Field(min_length=1)]
    mode: Literal["all", "round_robin"] = "all"
    severities: list[str] | None = None

    @model_validator(mode="after")
    def _one_timing(self) -> StepSpec:
        if self.after is not None and self.delay is not None:
            raise ValueError("give either after (from the start) or delay (from the previous step)")
        return self


class PolicySpec(Strict):
    name: Name
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    repeat: Annotated[int, Field(ge=0, le=100)] = 0
    repeat_after: PositiveDuration = timedelta(minutes=15)
    reack_after: Duration | None = None

    @model_validator(mode="after")
    def _positive_reack(self) -> PolicySpec:
        if self.reack_after is not None and self.reack_after <= timedelta(0):
            raise ValueError("reack_after must be longer than 0s (leave it out: no re-escalation)")
        return self


class SeverityFromSpec(Strict):
    label: str = "severity"
    map: dict[str, str] = {}
    default: str


class RouteSpecModel(Strict):
    name: str | None = None
    matchers: list[str] = []
    team: str | None = None
    policy: str | None = None
    severity: str | None = None
    severity_from: SeverityFromSpec | None = None
    group_by: list[str] | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[RouteSpecModel] = []
    stale_after: Duration | None = None
    stale_action: Literal["notify", "resolve"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    @field_validator("stale_after")
    @classmethod
    def _positive_stale_after(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("stale_after must be longer than 0s (leave it out: never stale)")
        return value


class HeartbeatSpec(Strict):
    """A dead man's switch (receiver/heartbeats/): late after `every` without an arrival."""

    name: Name
    every: Duration
    team: str
    severity: str
    policy: str | None = None  # the root route's when left out
    matchers: list[str] = []  # alerts that are its arrivals; none: only its API endpoint
    summary: str = ""

    @field_validator("every")
    @classmethod
    def _positive_every(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("every must be longer than 0s")
        return value


class MaintenanceSpec(Strict):
    """A maintenance window (receiver/maintenance/): pages held from start to end."""

    name: Name
    team: str | None = None
    matchers: list[str] = []
    start: datetime
    end: datetime
    comment: str = ""


class ConfigSpec(Strict):
    listen: str = "127.0.0.1:9095"
    external_url: str = "http://127.0.0.1:9095"
    data_dir: str = "./data"
    storage: StorageSpec = StorageSpec()
    webhook: WebhookSpec = WebhookSpec()
    api: ApiSpec = ApiSpec()
    links: LinksSpec = LinksSpec()
    notifications: NotificationsSpec = NotificationsSpec()
    severities: list[SeveritySpec] | None = None
    users: list[UserSpec] = []
    channels: list[ChannelSpec] = []
    schedules: list[ScheduleSpec] = []
    teams: Annotated[list[TeamSpec], Field(min_length=1)]
    policies: Annotated[list[PolicySpec], Field(min_length=1)]
    route: RouteSpecModel
    heartbeats: list[HeartbeatSpec] = []
    maintenance: list[MaintenanceSpec] = []

    @field_validator("external_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        # Pages carry links under it (`Acknowledge: {external_url}/l/TOKEN`).
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an absolute http(s) URL such as https://ackd.example.com,"
                             f" got {value!r}")
        return value
