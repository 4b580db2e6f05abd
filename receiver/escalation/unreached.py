"""What the log says when a page reaches nobody, or reaches a team's current schedule or lead
because a reload removed the one an incident's policy snapshot was bound to: at the step that
fired (from its timeline events), and at a reload, for every open incident the new config
affects. A page to nobody is the worst a pager can do, and it must never pass unsaid.

Pure: lines of text from events, or from the open incidents' policies and a `Directory` of
the new config; the daemon and the responder write them to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from receiver.core.model import EventKind, TimelineEvent
from receiver.escalation.keys import find_contact, parse_contact_key
from receiver.escalation.policy import Directory, Policy, TargetKind
from receiver.escalation.targets import dead_end, rebind

# Incident numbers a reload's line names at most; the count says how many in all.
NAMED = 10


def step_lines(incident_id: int, events: Iterable[TimelineEvent]) -> list[tuple[int, str]]:
    """(level, line) for each step in `events` that reached nobody (ERROR), missed some of
    its targets (WARNING) or reached one through the team (WARNING), for each delayed
    contact a reload removed (WARNING), and for each step whose every page failed
    (ERROR: `engine.delivery_failed`, escalating now or the repeat on its time)."""
    lines: list[tuple[int, str]] = []
    for event in events:
        detail = event.detail
        if event.kind is EventKind.STEP_FIRED:
            lines.extend(_step(incident_id, detail))
        elif event.kind is EventKind.NOTIFICATION_FAILED and "error" in detail:
            lines.append((logging.WARNING, f"incident #{incident_id} step"
                          f" {int(detail['step']) + 1}: {detail['error']}: not paged"))
        elif event.kind is EventKind.NOTIFICATION_FAILED and detail.get("unreachable"):
            # Every page of the step failed: it reached nobody, as one that paged nobody.
            lines.append((logging.ERROR, _unreachable(incident_id, detail)))
    return lines


def _unreachable(incident_id: int, detail: Mapping[str, Any]) -> str:
    cycle = int(detail.get("cycle", 0))
    step = f"incident #{incident_id} step {int(detail.get('step', 0)) + 1}" + (
        f" (cycle {cycle + 1})" if cycle else "")
    return f"{step}: {all_failed(detail)}"


def all_failed(detail: Mapping[str, Any]) -> str:
    """What escalation's account of a step whose every page failed (`engine.delivery_failed`'s
    `notification_failed` with `unreachable`) says: whose pages failed, and what follows (the
    next step now, or the repeat on its time). The log line's and a drill report's words."""
    failed = f"every page to {', '.join(_texts(detail.get('unreachable')))} failed"
    if detail.get("escalating_early"):
        return f"{failed}, nobody it paged can be reached: escalating now"
    return (f"{failed}, nobody it paged can be reached; the repeat keeps its time"
            f" ({detail.get('repeat_at')}): it reminds those the earlier steps paged")


def paged_nobody(detail: Mapping[str, Any]) -> str | None:
    """What a `step_fired` event that reached nobody says of it ("paged nobody: " and its dead
    ends: nobody on call, a user without contacts, an unknown channel...), as its ERROR line
    does; None for a step that reached someone, or only the person who needed no page
    (`not_paged`: they began the run by their own hand)."""
    if detail.get("recipients") or isinstance(detail.get("not_paged"), dict):
        return None
    ends = _texts(detail.get("unresolved"))
    return "paged nobody" + (": " + "; ".join(ends) if ends else "")


def _step(incident_id: int, detail: Mapping[str, Any]) -> list[tuple[int, str]]:
    if not detail.get("unresolved") and not detail.get("rebound"):
        return []  # the usual case, checked first: a step on every incident of a storm
    unresolved, rebound = _texts(detail.get("unresolved")), _texts(detail.get("rebound"))
    cycle = int(detail.get("cycle", 0))
    step = f"incident #{incident_id} step {detail.get('number')}" + (
        f" (cycle {cycle + 1})" if cycle else "")
    lines = [(logging.WARNING, f"{step}: {note}") for note in rebound]
    if unresolved:
        reached = _texts(detail.get("recipients"))
        knows = detail.get("not_paged")
        if isinstance(knows, dict):  # reached, and not paged: they raised it, unacked it...
            lines.append((logging.WARNING, f"{step} paged {', '.join(reached) or 'nobody'}"
                          f" ({knows.get('user')}, who {knows.get('why')}, was not paged) and"
                          " missed: " + "; ".join(unresolved)))
        elif reached:
            lines.append((logging.WARNING, f"{step} paged {', '.join(reached)} but not: "
                          + "; ".join(unresolved)))
        else:
            lines.append((logging.ERROR, f"{step} {paged_nobody(detail)}"))
    return lines


def _texts(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def reload_lines(open_policies: Sequence[tuple[int, Policy]], directory: Directory) -> list[str]:
    """One line for each change the config in `directory` makes to the open incidents'
    policies (incident number, policy snapshot): a schedule or lead it removed that they
    reach through their team now, and a target that reaches nobody whoever is on call. Every
    step counts, fired or not: an acknowledged incident may escalate again hours later."""
    return [line for line, _ in reload_findings(open_policies, directory)]


def reload_findings(
    open_policies: Sequence[tuple[int, Policy]], directory: Directory
) -> list[tuple[str, list[int]]]:
    """`reload_lines`' lines, each with the numbers of every incident it counts."""
    found: dict[str, list[int]] = {}
    for incident_id, policy in open_policies:
        for line in _policy_lines(policy, directory):
            found.setdefault(line, []).append(incident_id)
    return [(counted(line, numbers), numbers) for line, numbers in found.items()]


def _policy_lines(policy: Policy, directory: Directory) -> list[str]:
    lines: list[str] = []
    for target in {t for step in policy.steps for t in step.targets}:
        moved, note = rebind(target, directory)
        if note:
            role = "schedule" if target.kind is TargetKind.SCHEDULE else "lead"
            lines.append(f"name {target.kind} {target.name}, which this config removes: they"
                         f" page team {target.team}'s {role} {moved.name} instead")
        why = dead_end(moved, directory)
        if why is not None:
            lines.append(f"page nobody at a step of their policy after this config: {why}")
    return sorted(set(lines))  # two targets rebound alike make one line


def lost_contacts(
    waiting: Iterable[tuple[int, str]], runs: Mapping[int, int], directory: Directory
) -> list[tuple[str, list[int]]]:
    """A line, with its incidents, for each delayed contact still waiting (incident number,
    its CONTACT deadline's key) that the config in `directory` no longer has: its person is
    gone, or none of their contacts has its URL now (the URL's digest names a contact, so a
    changed URL is another contact). When it comes due it is not sent, and the timeline and
    the step's log line say so then; the reload says so now. `runs` holds the run of each
    incident whose escalation still waits on its steps: a contact of another run, or of an
    incident not waiting, does nothing anyway (escalation.engine's `_fire_contact`)."""
    found: dict[str, list[int]] = {}
    for number, key in waiting:
        try:
            run, _, _, name, index, digest = parse_contact_key(key)
        except ValueError:
            continue  # not a key this release arms: the engine ignores it too
        if runs.get(number) != run:
            continue
        user = directory.user(name)
        if user is None:
            line = f"wait to page {name}, whom this config removes, through a delayed contact"
        elif find_contact([c.url for c in user.contacts], index, digest) is None:
            line = (f"wait to page {name} through a delayed contact (contact {index + 1}) that"
                    " this config removes or gives another URL")
        else:
            continue
        found_once(found, line + ": it will not be sent", number)
    return [(counted(line, numbers), numbers) for line, numbers in found.items()]


def counted(line: str, numbers: list[int], of: str = "open incident(s)") -> str:
    """A reload's line: how many incidents it is about, what of them, the first few."""
    named = ", ".join(f"#{n}" for n in numbers[:NAMED])
    more = f" and {len(numbers) - NAMED} more" if len(numbers) > NAMED else ""
    return f"{len(numbers)} {of} {line} ({named}{more})"


def found_once(found: dict[str, list[int]], line: str, number: int) -> None:
    """`number` under `line`, once: the waiting things come by incident."""
    numbers = found.setdefault(line, [])
    if not numbers or numbers[-1] != number:
        numbers.append(number)
