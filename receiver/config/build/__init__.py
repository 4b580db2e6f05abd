"""From a YAML file to a Config, or a ConfigError naming every problem with file, line and key.

Loading is strict (unknown keys, wrong types and dangling references are errors) and complete
(all problems are reported at once, so `ackd check-config` in GitOps CI shows the whole list).
Secrets come inline, from `${ENV}` / `${ENV:-default}`, or from a `*_file` key.

The schema (receiver.config.schema) checks each key alone; each section's module here checks
what spans the file and builds that section's runtime values, appending every problem to the
one Builder: server (listen, auth, tokens, links, limits), people (severities, users,
channels), schedules (schedules, teams), policies, routes, notifications, storage. Only the
daemon and the CLI import this package: everything else is handed a built Config.

`ackd serve` runs the file with its command line's overrides (`Overrides`: --listen,
--data-dir) and refuses at start what config.model.example_secrets_in_use refuses; `check`
builds the config as serve would and reports those too, so `ackd check-config` given the same
flags and environment passes exactly what serve would run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
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
from receiver.config.coordinator import ReloadWarning, unexpected
from receiver.config.model import Config, example_secrets_in_use
from receiver.config.yamlsource import Located
from receiver.config.yamlsource import load as load_yaml
from receiver.core.errors import ConfigError, ConfigProblem
from receiver.notify.messages import Templates


@dataclass(frozen=True, slots=True)
class Overrides:
    """What `ackd serve` is given on its command line over the file's keys (an empty value
    is no override, as for serve)."""

    listen: str | None = None  # --listen HOST:PORT, over `listen`
    data_dir: str | None = None  # --data-dir DIR, over `data_dir`

    def problems(self, file: str) -> list[ConfigProblem]:
        """Each bad value, named by its flag, for this file's report."""
        if self.listen:
            try:
                server.parse_listen(self.listen)
            except ValueError as exc:
                return [ConfigProblem(file, None, "--listen", str(exc))]
        return []

    def apply(self, config: Config) -> Config:
        """The config with these laid over it; ValueError names the flag whose value is bad."""
        for problem in self.problems(config.source):
            raise ValueError(f"{problem.key}: {problem.message}")
        if self.listen:
            host, port = server.parse_listen(self.listen)
            config = replace(config, listen_host=host, listen_port=port)
        if self.data_dir:
            config = replace(config, data_dir=Path(self.data_dir))
        return config


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    return load_located(path, environ)[1]


def load_located(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[Located, Config]:
    """`load`, with the document it read (its data and lines), for `warnings`: the file is
    read once (it may be a pipe, or change again before it would be read twice)."""
    return _parse(str(path), _read(path), environ)


def check(
    path: str | Path, overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The Config `ackd serve` would run from this file with these overrides, or ConfigError
    with every problem: the file's (file, line, key), a flag's (named by the flag), and what
    serve refuses at start: the example's published secrets when it would listen beyond
    loopback, located at the flag that set where, else at the file's `listen`."""
    file = str(path)
    overrides = overrides or Overrides()
    flags = overrides.problems(file)
    try:
        located, config = _parse(file, _read(path), environ)
    except ConfigError as exc:
        raise ConfigError(exc.problems + flags) from exc
    if flags:
        raise ConfigError(flags)
    config = overrides.apply(config)
    refused = example_secrets_in_use(config)
    if refused is not None:
        where = (ConfigProblem(file, None, "--listen", refused) if overrides.listen
                 else located.problem(("listen",), refused))
        raise ConfigError([where])
    return config


def warnings(
    config: Config, since: datetime, source: Located | None = None
) -> list[ReloadWarning]:
    """What a file that builds is still worth a look for, not a failed deploy: each team no
    route leads to, each schedule layer's first hole in the coming weeks from `since`,
    each SMS contact that does not set `short`, and each template that prints `step + 1`
    (`number` is the step as the reports name it). `ackd check-config` prints them, the start
    and a reload log them, a reload answers them. `source` is the document `config` was
    built from (`load_located`), else config.source is read again for the lines.
    OverflowError when `since` is too far from now for the schedules' calendar."""
    if source is None:
        source = schedules.located(config)
    return ([ReloadWarning.of("unrouted_team", p)
             for p in schedules.unrouted_teams(config, source)]
            + [ReloadWarning.of("coverage_gap", p)
               for p in schedules.coverage_gaps(config, since, source=source)]
            + [ReloadWarning.of("sms_not_short", p)
               for p in people.sms_not_short(config, source)]
            + [ReloadWarning.of("template_step_number", p)
               for p in notifications.step_plus_one(source)])


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        unread = ConfigProblem(str(path), None, "(file)", f"cannot read: {exc}")
        raise ConfigError([unread]) from exc


def parse(file: str, text: str, environ: Mapping[str, str] | None = None) -> Config:
    """The Config, or ConfigError with every problem of the file: unset variables, the
    schema's, and the cross-reference checks on what the schema let through."""
    return _parse(file, text, environ)[1]


def _parse(
    file: str, text: str, environ: Mapping[str, str] | None
) -> tuple[Located, Config]:
    try:
        return _parse_text(file, text, environ)
    except ConfigError:
        raise
    except Exception as exc:  # a check that broke on an odd value: the file's problem still
        raise ConfigError([unexpected(file, exc)]) from exc


def _parse_text(
    file: str, text: str, environ: Mapping[str, str] | None
) -> tuple[Located, Config]:
    unset: list[ConfigProblem] = []
    env = os.environ if environ is None else environ
    located = load_yaml(file, text, env, collect=unset)
    spec, problems, pruned = schema_problems.validate(located)
    config = None
    files: dict[str, str] = {}
    if spec is not None:
        builder = Builder(located, spec, Path(file).parent, pruned.original)
        config = build(builder)
        files = builder.files
        problems += [p for p in builder.problems if not pruned.cascade(p.message)]
    # An unset variable reads as "": what that empty value breaks is the same problem.
    said = {p.key for p in unset}
    problems = [*unset, *(p for p in problems if p.key not in said)]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assert config is not None
    return located, replace(config, digest=_digest(text, located, env, files))


def _digest(
    text: str, located: Located, env: Mapping[str, str], files: Mapping[str, str]
) -> str:
    """SHA-256 (hex) of what the config runs with: the file's text, the value of each
    `${VARIABLE}` the environment set for it, and the contents of each `*_file` read. It
    holds secrets (a guess at one can be checked against it): never shown as it is, see
    Config.published_digest."""
    names = sorted({name for used in located.variables.values() for name in used})
    material = {"text": text, "variables": {name: env[name] for name in names},
                "files": dict(files)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


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
