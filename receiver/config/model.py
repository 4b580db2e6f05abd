"""The validated config: frozen values, every one checked against the whole file.

receiver.config.build makes a Config from a file (or reports every problem with file, line and
key); nothing here reads a file or builds. The values are the domain's own nouns (policies,
schedules, the route tree, the compiled message templates), so this module sits above the
packages that define them and no domain package imports it: they take values as arguments.
The running Config reaches the services through receiver.config.coordinator. Secrets are kept
out of every repr so they never reach a log.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from receiver.config.storage import PostgresSettings
from receiver.core.access import Principal
from receiver.core.frozen import frozen
from receiver.core.limits import WebhookLimits
from receiver.core.model import Severity
from receiver.escalation.policy import Channel, Policy, Target, User
from receiver.heartbeats.domain import Heartbeat
from receiver.maintenance.domain import Window
from receiver.notify.messages import Templates
from receiver.notify.notifier import NotificationSettings
from receiver.oncall.schedules import Schedule, WorkingHours
from receiver.routing.tree import Route

# A shared policy's targets that each team fills in: its own schedule, its own lead.
TEAM_SCHEDULE = "@team"
TEAM_LEAD = "@lead"

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
# The placeholders deploy/kubernetes's Secrets ship ("replace-with-a-long-random-token"): as
# public as the example's, and a pod listens on 0.0.0.0.
PLACEHOLDER_PREFIX = "replace-with-"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@frozen
class WebhookAuth:
    bearer_token: str | None = field(default=None, repr=False)
    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)

    @property
    def required(self) -> bool:
        return self.bearer_token is not None or self.basic_username is not None


@frozen
class Team:
    name: str
    schedule: str | None = None
    lead: str | None = None
    working_hours: WorkingHours | None = None


@frozen
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
    # Each (policy, team) pair the route tree gives, bound (bind_policy) when the file was
    # built: every new incident asks for one.
    team_policies: Mapping[tuple[str, str], Policy] = field(repr=False)
    # notifications.templates compiled, once per file.
    templates: Templates = field(repr=False, compare=False)
    # storage.postgres: None keeps the SQLite store in data_dir.
    postgres: PostgresSettings | None = None
    heartbeats: tuple[Heartbeat, ...] = ()
    maintenance: tuple[Window, ...] = ()
    # SHA-256 (hex) of what this config runs with: the file's text, the values its
    # ${VARIABLES} took and the contents of its `*_file`s (config/build._digest). It holds
    # the secrets: show only published_digest().
    digest: str = ""

    def published_digest(self) -> str:
        """What ackd_config_hash shows (hex): `digest` under HMAC-SHA256 keyed by the link
        secret. Replicas that run the same file, environment and secret files show the same
        value, and a changed token, contact URL or DSN changes it; a different link secret
        changes it too (itself an inconsistency: links signed by one replica fail on the
        others). Keyed, so that the metric is no oracle for guessing a secret offline (a
        phone number in an SMS URL has far fewer than 48 bits): without the link secret
        no guess can be checked, and the link secret is no more exposed than by any link
        it signs."""
        return hmac.new(self.link_secret, self.digest.encode(), hashlib.sha256).hexdigest()

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
        bound = self.team_policies.get((name, team))
        if bound is None:
            # A pair no route gives now (an incident routed by an earlier file): bound anew.
            bound = bind_policy(self.policies[name], self.teams[team])
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
    known = [(key, fix) for key, value, fix in secrets if published(value)]
    if not known:
        return None
    keys = ", ".join(key for key, _ in known)
    fixes = " and ".join(dict.fromkeys(fix for _, fix in known))
    return (
        f"refusing to listen on {config.listen_host}:{config.listen_port} with secrets "
        f"published in config.example.yaml or deploy/ ({keys}): {fixes}, or listen on "
        f"127.0.0.1"
    )


def published(secret: str | None) -> bool:
    """A secret anybody can read in this repository: the example's, or a manifest's
    placeholder."""
    return secret is not None and (secret in EXAMPLE_SECRETS
                                   or secret.startswith(PLACEHOLDER_PREFIX))


def _token_fix(who: Principal) -> str:
    if who.is_user:
        return f"change the token of user {who.name!r}"
    return "set ACKD_API_TOKEN"


def bind_policy(policy: Policy, team: Team) -> Policy:
    """Fill a shared policy's `oncall`/`lead` targets with this team's schedule and lead. Each
    keeps the team's name: an incident holds this policy until it is resolved, and should a
    reload remove the schedule or lead bound here, its steps reach the team's current one."""

    def bind(target: Target) -> Target:
        if target.name == TEAM_SCHEDULE and team.schedule is not None:
            return replace(target, name=team.schedule, team=team.name)
        if target.name == TEAM_LEAD and team.lead is not None:
            return replace(target, name=team.lead, team=team.name)
        return target

    steps = tuple(replace(s, targets=tuple(bind(t) for t in s.targets)) for s in policy.steps)
    return replace(policy, steps=steps)
