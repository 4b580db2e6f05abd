"""Which open incidents a new route tree takes alerts away from.

An incident is found by its group key: the route's id (its matchers and its place in the
tree) and the alert's `group_by` values. A reload that edits a route's matchers or
`group_by`, or removes the route, gives the same alerts another key: Alertmanager's next
resend of them finds no open incident under it and opens one (paging again), or joins another
group's, and their resolution goes there too, so the incident that held them is never resolved
by Alertmanager and escalates until a person resolves it. A reload is not refused for that
(an incident may stay open for days, and the change may be meant), but the log says so at
once, naming the incidents, rather than when the second page arrives.

Pure: the open incidents' firing alerts and a route tree in, incident numbers and a line out;
the daemon reads the alerts (`Store.open_firing_alerts`) and writes the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from receiver.core.model import DECLARED_KEY_PREFIX, DRILL_KEY_PREFIX
from receiver.heartbeats.domain import ROUTE_PREFIX
from receiver.routing.tree import Route, route_all

# Group keys no route tree makes: their incidents hold alerts the tree never routes.
_OWN_KEYS = (DRILL_KEY_PREFIX, DECLARED_KEY_PREFIX, ROUTE_PREFIX)

# Incident numbers the line names at most; the count says how many in all.
NAMED = 10


def regrouped(
    firing: Iterable[tuple[int, str, Mapping[str, str]]], root: Route
) -> list[int]:
    """The open incidents (from (incident, group key, labels) of each firing alert they hold)
    that `root` would not give every one of their firing alerts back to: at least one of
    them lands under another group key. With `continue` routes an alert has several keys;
    the incident's being one of them keeps it."""
    held = [(number, key, labels) for number, key, labels in firing
            if not key.startswith(_OWN_KEYS)]
    routed = route_all(root, [labels for _, _, labels in held])
    moved: dict[int, None] = {}
    for (number, key, _), matches in zip(held, routed, strict=True):
        if all(match.group_key != key for match in matches):
            moved[number] = None
    return list(moved)


def regroup_line(numbers: list[int]) -> str:
    """What the operator should know and do about the incidents `regrouped` found."""
    named = ", ".join(f"#{n}" for n in numbers[:NAMED])
    more = f" and {len(numbers) - NAMED} more" if len(numbers) > NAMED else ""
    return (
        f"{len(numbers)} open incident(s) hold firing alerts this config groups under another"
        " key (a route's matchers or group_by changed, or its route is gone): Alertmanager's"
        " next resend of each such alert opens a new incident, paging again (or joins another"
        " open one), and its resolution goes there, so these are never resolved by"
        " Alertmanager and escalate until someone does it; acknowledge them, and resolve each"
        f" once its alerts' new incident is open ({named}{more})"
    )
