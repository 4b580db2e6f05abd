"""Maintenance windows of the file (receiver/maintenance/): each names a known team or
matchers (or both), and an end after its start, both with a time zone (a window is a range of
instants, not of local times)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from functools import partial

from receiver.alertmanager.matchers import parse_matcher
from receiver.config.build.builder import Builder
from receiver.config.model import Team
from receiver.config.yamlsource import Path as KeyPath
from receiver.maintenance.domain import Window


def windows(b: Builder, teams: Mapping[str, Team]) -> tuple[Window, ...]:
    built = []
    b.unique(("maintenance",), [m.name for m in b.spec.maintenance])
    for i, m in enumerate(b.spec.maintenance):
        at: KeyPath = ("maintenance", i)
        if m.team is not None and m.team not in teams:
            b.fail((*at, "team"), f"unknown team {m.team!r}")
        if m.team is None and not m.matchers:
            b.fail(at, "a window needs a team, matchers, or both")
        naive = [key for key, value in (("start", m.start), ("end", m.end))
                 if value.tzinfo is None]
        for key in naive:
            b.fail((*at, key), "give the time zone too (e.g. 2026-12-01T22:00:00Z)")
        if not naive and m.end <= m.start:
            b.fail((*at, "end"), "end must be after start")
        matchers = [b.attempt((*at, "matchers", j), partial(parse_matcher, text))
                    for j, text in enumerate(m.matchers)]
        if naive or None in matchers or m.end <= m.start or (m.team is None and not m.matchers):
            continue
        built.append(Window(m.start.astimezone(UTC), m.end.astimezone(UTC), m.team,
                            tuple(x for x in matchers if x is not None), m.comment,
                            name=m.name))
    return tuple(built)
