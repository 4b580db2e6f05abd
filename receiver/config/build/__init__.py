"""From a YAML file to a Config, or a ConfigError naming every problem with file, line and key.

Loading is strict (unknown keys, wrong types and dangling references are errors) and complete
(all problems are reported at once, so `ackd check-config` in GitOps CI shows the whole list).
Secrets come inline, from `${ENV}` / `${ENV:-default}`, or from a `*_file` key.

The schema (receiver.config.schema) checks each key alone; each section's module here checks
what spans the file and builds that section's runtime values, appending every problem to the
one Builder: server (listen, auth, tokens, links, limits), people (severities, users,
channels), schedules (schedules, teams), policies, routes, notifications, storage. Only the
daemon and the CLI import this package: everything else is handed a built Config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from receiver.config import problems as schema_problems
from receiver.config.build import (
    heartbeats,
    maintenance,
    notifications,
    people,
    policies,
    routes,
    schedules,
    server,
    storage,
)
from receiver.config.build.builder import Builder
from receiver.config.model import Config
from receiver.config.yamlsource import load as load_yaml
from receiver.core.errors import ConfigError, ConfigProblem
from receiver.notify.messages import Templates


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
    spec, problems, pruned = schema_problems.validate(located)
    config = None
    if spec is not None:
        builder = Builder(located, spec, Path(file).parent, pruned.original)
        config = build(builder)
        problems += [p for p in builder.problems if not pruned.cascade(p.message)]
    # An unset variable reads as "": what that empty value breaks is the same problem.
    said = {p.key for p in unset}
    problems = [*unset, *(p for p in problems if p.key not in said)]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assert config is not None
    return replace(config, digest=hashlib.sha256(text.encode()).hexdigest())


def build(b: Builder) -> Config | None:
    """The whole file, section by section (each may lean on those before it); None if any
    problem was found, all of them in `b.problems`."""
    listen = server.listen(b)
    severities = people.severities(b)
    users = people.users(b)
    channels = people.channels(b)
    built_schedules = schedules.schedules(b, users)
    teams = schedules.teams(b, users)
    built_policies = policies.policies(b, users, channels, built_schedules, severities)
    policies.check_bindings(b, teams, built_schedules)
    route = routes.route(b, teams, built_policies, severities)
    beats = heartbeats.heartbeats(b, teams, built_policies, severities)
    windows = maintenance.windows(b, teams)
    auth = server.webhook_auth(b)
    tokens = server.api_tokens(b)
    link = server.link_secret(b)
    people.check_stakeholders(b, channels)
    overrides = notifications.template_overrides(b)
    postgres = storage.postgres(b, link)
    if b.problems or listen is None or route is None:
        return None
    spec = b.spec
    return Config(
        source=b.located.file,
        listen_host=listen[0],
        listen_port=listen[1],
        external_url=spec.external_url.rstrip("/"),
        data_dir=Path(spec.data_dir),
        db_file=spec.storage.path,
        synchronous=spec.storage.synchronous.upper(),
        webhook_auth=auth,
        max_body_bytes=spec.webhook.max_body_bytes,
        memo_bytes=spec.webhook.memo_bytes,
        limits=server.webhook_limits(b),
        api_tokens=tokens,
        link_secret=(link or "").encode(),
        link_ttl=spec.links.ttl,
        notifications=notifications.settings(b, overrides),
        severities=severities,
        stakeholders=people.stakeholders(b),
        users=users,
        channels=channels,
        schedules=built_schedules,
        teams=teams,
        policies=built_policies,
        route=route,
        team_policies=policies.team_policies(b, teams, built_policies),
        templates=Templates(overrides),
        postgres=postgres,
        heartbeats=beats,
        maintenance=windows,
    )
