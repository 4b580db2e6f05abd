"""Configuration: YAML in, frozen runtime objects out, or every problem with file, line and key.

Loading is strict (unknown keys, wrong types and dangling references are errors) and complete
(all problems are reported at once, so `ackd check-config` in GitOps CI shows the whole list).
Secrets come inline, from `${ENV}` / `${ENV:-default}`, or from a `*_file` key, and are kept
out of every repr so they never reach a log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from receiver.config import build as configbuild
from receiver.config import problems as configproblems
from receiver.config.storage import PostgresSettings
from receiver.config.yamlsource import load as load_yaml
from receiver.core.access import Principal
from receiver.core.errors import ConfigError, ConfigProblem
from receiver.core.limits import WebhookLimits
from receiver.core.model import Severity
from receiver.escalation.engine import Channel, Policy, User
from receiver.notify.notifier import NotificationSettings
from receiver.oncall.schedules import Schedule, WorkingHours
from receiver.routing.tree import Route

DEFAULT_SEVERITIES = (
    Severity("SEV1", 0, "Critical: customers are affected now", "high"),
    Severity("SEV2", 1, "Major: a significant function is degraded", "high"),
    Severity("SEV3", 2, "Minor: limited impact, a workaround exists", "low"),
    Severity("SEV4", 3, "Low: no user impact yet", "low"),
)

# The secrets config.example.yaml falls back to (change-me-link-secret: in copies of earlier
# examples), so known to anyone who read it. Good enough on a loopback address (the quick
# start), nowhere else.
EXAMPLE_SECRETS = frozenset({"change-me", "change-me-too", "change-me-link-secret"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class WebhookAuth:
    bearer_token: str | None = field(default=None, repr=False)
    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)

    @property
    def required(self) -> bool:
        return self.bearer_token is not None or self.basic_username is not None


@dataclass(frozen=True)
class Team:
    name: str
    schedule: str | None = None
    lead: str | None = None
    working_hours: WorkingHours | None = None


@dataclass(frozen=True)
class Config:
    source: str
    listen_host: str
    listen_port: int
    external_url: str
    data_dir: Path
    db_file: str
    synchronous: str
    webhook_auth: WebhookAuth
    max_body_bytes: int
    memo_bytes: int
    limits: WebhookLimits
    api_tokens: Mapping[str, Principal] = field(repr=False)  # token -> who it acts as
    link_secret: bytes = field(repr=False)
    link_ttl: timedelta
    notifications: NotificationSettings
    severities: tuple[Severity, ...]
    stakeholders: Mapping[str, tuple[str, ...]]  # severity -> channel names
    users: Mapping[str, User] = field(repr=False)
    channels: Mapping[str, Channel] = field(repr=False)
    schedules: Mapping[str, Schedule]
    teams: Mapping[str, Team]
    policies: Mapping[str, Policy]
    route: Route
    # storage.postgres: None keeps the SQLite store in data_dir.
    postgres: PostgresSettings | None = None
    # Policies bound to a team, made on first use: every new incident asks for one.
    _bound: dict[tuple[str, str], Policy] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.db_file

    @property
    def store_kind(self) -> str:
        """The name of the store in app.stores.STORES."""
        return "sqlite" if self.postgres is None else "postgres"

    def severity(self, name: str) -> Severity:
        for severity in self.severities:
            if severity.name == name:
                return severity
        return self.severities[-1]

    def policy_for(self, name: str, team: str) -> Policy:
        """The policy with the team's own on-call schedule and lead filled in."""
        bound = self._bound.get((name, team))
        if bound is None:
            bound = configbuild.bind_policy(self.policies[name], self.teams[team])
            self._bound[(name, team)] = bound
        return bound

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to an address others can reach


def example_secrets_in_use(config: Config) -> str | None:
    """One line saying what to set, when the config listens beyond loopback with a secret
    that config.example.yaml publishes; None when it is safe to listen."""
    if is_loopback(config.listen_host):
        return None
    # (key, value, what to do about it): the variables are the ones the example reads.
    secrets = [
        ("webhook.bearer_token", config.webhook_auth.bearer_token, "set ACKD_WEBHOOK_TOKEN"),
        ("webhook.basic_auth.password", config.webhook_auth.basic_password,
         "change webhook.basic_auth.password"),
        *((f"api token of {who.describe()}", token, _token_fix(who))
          for token, who in config.api_tokens.items()),
        ("links.secret", config.link_secret.decode(errors="replace"),
         "remove links.secret (ackd keeps a random one in data_dir)"),
    ]
    known = [(key, fix) for key, value, fix in secrets if value in EXAMPLE_SECRETS]
    if not known:
        return None
    keys = ", ".join(key for key, _ in known)
    fixes = " and ".join(dict.fromkeys(fix for _, fix in known))
    return (
        f"refusing to listen on {config.listen_host}:{config.listen_port} with secrets "
        f"published in config.example.yaml ({keys}): {fixes}, or listen on 127.0.0.1"
    )


def _token_fix(who: Principal) -> str:
    if who.is_user:
        return f"change the token of user {who.name!r}"
    return "set ACKD_API_TOKEN"


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(file, None, "(file)", f"cannot read: {exc}")]) from exc
    return parse(file, text, environ)


def parse(file: str, text: str, environ: Mapping[str, str] | None = None) -> Config:
    """The Config, or ConfigError with every problem of the file: unset variables, the
    schema's, and the cross-reference checks on what the schema let through."""
    unset: list[ConfigProblem] = []
    located = load_yaml(file, text, environ, collect=unset)
    spec, problems, pruned = configproblems.validate(located)
    config = None
    if spec is not None:
        builder = configbuild.Builder(located, spec, Path(file).parent, pruned.original)
        config = builder.build()
        problems += [p for p in builder.problems if not pruned.cascade(p.message)]
    # An unset variable reads as "": what that empty value breaks is the same problem.
    said = {p.key for p in unset}
    problems = [*unset, *(p for p in problems if p.key not in said)]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assert config is not None
    return config
