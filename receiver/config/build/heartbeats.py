"""Heartbeats (receiver/heartbeats/): each one's team, severity and policy must exist (the
policy defaults to the root route's), and its matchers parse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from receiver.alertmanager.matchers import parse_matcher
from receiver.config.build.builder import Builder
from receiver.config.model import Team
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.model import Severity
from receiver.escalation.policy import Policy
from receiver.heartbeats.domain import Heartbeat


def heartbeats(
    b: Builder,
    teams: Mapping[str, Team],
    policies: Mapping[str, Policy],
    severities: Sequence[Severity],
) -> tuple[Heartbeat, ...]:
    built = []
    known = {s.name for s in severities}
    b.unique(("heartbeats",), [h.name for h in b.spec.heartbeats])
    for i, h in enumerate(b.spec.heartbeats):
        at: KeyPath = ("heartbeats", i)
        policy = h.policy if h.policy is not None else b.spec.route.policy
        if h.team not in teams:
            b.fail((*at, "team"), f"unknown team {h.team!r}")
        if h.severity not in known:
            b.fail((*at, "severity"), f"unknown severity {h.severity!r}")
        if h.policy is not None and h.policy not in policies:
            b.fail((*at, "policy"), f"unknown policy {h.policy!r}")
        matchers = [b.attempt((*at, "matchers", j), partial(parse_matcher, text))
                    for j, text in enumerate(h.matchers)]
        if policy is None or None in matchers:
            continue
        built.append(Heartbeat(h.name, h.every, h.team, h.severity, policy,
                               tuple(m for m in matchers if m is not None), h.summary))
    return tuple(built)
