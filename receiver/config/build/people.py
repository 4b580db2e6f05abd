"""Who and where: severities and their stakeholders, users and their contacts, channels. An
Apprise URL that Apprise cannot load is a problem here, not a failed page later; an SMS
contact that would get the full page is a warning (`sms_not_short`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from receiver.config.build.builder import Builder
from receiver.config.model import DEFAULT_SEVERITIES, Config
from receiver.config.schema import ContactSpec
from receiver.config.yamlsource import Located
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.errors import ConfigProblem
from receiver.core.model import Severity
from receiver.escalation.policy import Channel, Contact, User
from receiver.notify.notifier import scheme, sms_limit, validate_url


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


def sms_not_short(config: Config, source: Located) -> list[ConfigProblem]:
    """A warning for each person's contact whose URL sends SMS (notifier.sms_limit: Apprise's
    own metadata for its plugin) and that does not say `short`: it would get the full page,
    600 to 700 characters, five or more SMS segments (ten and more in Unicode), each paid for
    and arriving in pieces. A warning, not an error: the file still loads as before, and
    `short: false` says the full text is meant (a WhatsApp number, say). `source` is the
    document `config` was built from: whether the key is written is the document's."""
    found = []
    for i, spec in enumerate(source.data.get("users") or []):
        user = config.users.get(spec["name"])
        if user is None:
            continue
        for j, (raw, contact) in enumerate(zip(spec["contacts"], user.contacts, strict=False)):
            if "short" in raw:
                continue
            limit = sms_limit(contact.url)
            if limit is None:
                continue
            key = "url" if "url" in raw else "url_file"
            found.append(source.problem(
                ("users", i, "contacts", j, key),
                f"warning: this {scheme(contact.url)}:// contact sends SMS (Apprise: at most "
                f"{limit} characters a message, no title) and does not set short: each page "
                "goes as the full text, 600 to 700 characters, 5 or more SMS; set short: true "
                "for one SMS with the acknowledge link, or short: false to keep the full text"))
    return found
