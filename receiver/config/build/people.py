"""Who and where: severities and their stakeholders, users and their contacts, channels. An
Apprise URL that Apprise cannot load is a problem here, not a failed page later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from receiver.config.build.builder import Builder
from receiver.config.model import DEFAULT_SEVERITIES
from receiver.config.schema import ContactSpec
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.model import Severity
from receiver.escalation.policy import Channel, Contact, User
from receiver.notify.notifier import validate_url


def severities(b: Builder) -> tuple[Severity, ...]:
    specs = b.spec.severities
    if specs is None:
        return DEFAULT_SEVERITIES
    b.unique(("severities",), [s.name for s in specs])
    if not specs:
        b.fail(("severities",), "define at least one severity")
        return DEFAULT_SEVERITIES
    for i, s in enumerate(specs):
        if s.status_every is not None and s.status_every <= timedelta(0):
            b.fail(("severities", i, "status_every"), "must be longer than 0s")
    return tuple(Severity(s.name, i, s.description, s.urgency, s.status_every)
                 for i, s in enumerate(specs))


def check_stakeholders(b: Builder, channels: Mapping[str, Any]) -> None:
    for i, s in enumerate(b.spec.severities or ()):
        for j, name in enumerate(s.stakeholders):
            if name not in channels:
                b.fail(("severities", i, "stakeholders", j), f"unknown channel {name!r}")


def stakeholders(b: Builder) -> dict[str, tuple[str, ...]]:
    """severity -> the channels told of its incidents"""
    return {s.name: tuple(s.stakeholders) for s in b.spec.severities or ()}


def users(b: Builder) -> dict[str, User]:
    b.unique(("users",), [u.name for u in b.spec.users])
    return {
        u.name: User(u.name, _contacts(b, ("users", i, "contacts"), u.contacts))
        for i, u in enumerate(b.spec.users)
    }


def channels(b: Builder) -> dict[str, Channel]:
    b.unique(("channels",), [c.name for c in b.spec.channels])
    built = {}
    for i, c in enumerate(b.spec.channels):
        contacts = _contacts(b, ("channels", i, "urls"), c.urls)
        built[c.name] = Channel(c.name, tuple(x.url for x in contacts))
    return built


def _contacts(b: Builder, at: KeyPath, specs: Sequence[ContactSpec]) -> tuple[Contact, ...]:
    contacts = []
    for j, c in enumerate(specs):
        url = b.secret((*at, j), "url", c.url, c.url_file)
        if url is None:
            b.fail((*at, j), "needs url or url_file")
            continue
        problem = validate_url(url)
        if problem is not None:
            b.fail((*at, j, "url"), problem)
            continue
        contacts.append(Contact(url, c.delay, c.short))
    return tuple(contacts)
