"""Row <-> domain conversions shared by the store's reader and writer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import msgspec

from receiver.alertmanager.matchers import Matcher, MatcherError, parse_matcher
from receiver.core.model import (
    Alert,
    AlertStatus,
    EventKind,
    GrafanaDetails,
    Incident,
    IncidentState,
    TimelineEvent,
)
from receiver.delivery.noise import ChannelHistory
from receiver.escalation.keys import parse_contact_key
from receiver.escalation.plan import PageFate
from receiver.maintenance.domain import Window
from receiver.store.records import (
    ArmedDeadline,
    ChannelRecord,
    OutboxMessage,
    OutboxRow,
    Waiting,
)

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

INCIDENT_COLUMNS = (
    "id, group_key, route_id, team, severity, policy, group_labels, state, opened_at,"
    " updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, previous_id,"
    " truncated_alerts, external_url, summary"
)
ALERT_COLUMNS = (
    "fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, grafana"
)


def to_us(when: datetime) -> int:
    return (when - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + us * _US


def opt_from_us(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def dumps(value: Mapping[str, Any]) -> str:
    """JSON text for a column, with sorted keys so equal values are equal text."""
    return _ENCODER.encode(value).decode()


def loads(text: str | bytes) -> Any:
    return msgspec.json.decode(text)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):  # e.g. a read-only MappingProxyType
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


# msgspec, because the store encodes a dozen small objects per webhook.
_ENCODER = msgspec.json.Encoder(order="sorted", enc_hook=_plain)


def deadlines_in_order(
    deadline_ids: Sequence[int], rows: Iterable[Any]
) -> list[ArmedDeadline]:
    """Deadline rows (id, incident_id, due, kind, key) in the order their ids were asked for
    (a DELETE's RETURNING promises none)."""
    order = {deadline_id: n for n, deadline_id in enumerate(deadline_ids)}
    taken = [ArmedDeadline(int(r[0]), int(r[1]), from_us(r[2]), r[3], r[4]) for r in rows]
    taken.sort(key=lambda d: order[d.id])
    return taken


# Earlier releases recorded an action through a page's signed link with the actor
# "NAME (link)": an incident's acknowledged_by and resolved_by, its events' actor. Read as
# the person (and the event's detail {"via": "link"}, as written now), so that an incident
# an earlier release stored, or that a replica not yet replaced in a rolling deploy writes,
# counts its acknowledger as the person everywhere a name is checked. A user's name cannot
# hold a space or a parenthesis (config/schema.NAME_PATTERN), so no name reads otherwise.
EARLIER_LINK_ACTOR = " (link)"


def person(actor: str | None) -> str | None:
    """The person an incident's acknowledged_by or resolved_by names, in either form."""
    if actor is None or not actor.endswith(EARLIER_LINK_ACTOR):
        return actor
    return actor[:-len(EARLIER_LINK_ACTOR)]


# A state column's member by its text, without the enum's call (Python functions) per row
# (incident_from_row: a text that is none still raises as IncidentState() does).
INCIDENT_STATES = {state.value: state for state in IncidentState}


def incident_from_row(row: tuple[Any, ...]) -> Incident:
    return Incident(
        id=row[0],
        group_key=row[1],
        route_id=row[2],
        team=row[3],
        severity=row[4],
        policy=row[5],
        group_labels=loads(row[6]),
        state=INCIDENT_STATES.get(row[7]) or IncidentState(row[7]),
        opened_at=from_us(row[8]),
        updated_at=from_us(row[9]),
        acknowledged_at=opt_from_us(row[10]),
        acknowledged_by=person(row[11]),
        resolved_at=opt_from_us(row[12]),
        resolved_by=person(row[13]),
        previous_id=row[14],
        truncated_alerts=row[15],
        external_url=row[16],
        summary=row[17],
    )


def alert_from_row(row: tuple[Any, ...]) -> Alert:
    return Alert(
        fingerprint=row[0],
        status=AlertStatus(row[1]),
        labels=loads(row[2]),
        annotations=loads(row[3]),
        starts_at=from_us(row[4]),
        ends_at=opt_from_us(row[5]),
        generator_url=row[6],
        grafana=None if row[7] is None else msgspec.json.decode(row[7], type=GrafanaDetails),
    )


def grafana_column(details: GrafanaDetails | None) -> str | None:
    return None if details is None else _ENCODER.encode(details).decode()


# The kinds a change writes one event of per alert (ingest/grouping.py): ten alerts opening an
# incident are ten alert_added events of one instant and actor. A run of them in one append
# is stored as one row (timeline_rows), its first event's detail carrying the others' under
# PACKED; every read expands it (events_from_row). An object, not an array, so that an ackd
# of before (a replica not yet replaced in a rolling deploy, a rollback) still reads the row,
# as one event whose detail lists the others, and its pages and API show them all. No detail
# of these kinds holds PACKED otherwise (grouping._event writes them), and a row of one event
# is as it always was: databases written before need no migration.
PACKED_KINDS = frozenset({
    EventKind.ALERT_ADDED, EventKind.ALERT_RESOLVED, EventKind.ALERT_REFIRED,
    EventKind.ALERT_MERGED,
})
PACKED = "packed"


def timeline_rows(
    incident_id: int, events: Iterable[TimelineEvent]
) -> list[tuple[int, int, str, str, str]]:
    """The rows (incident, at in µs, kind, actor, detail) of events appended together, in
    their order: consecutive events of one of PACKED_KINDS that share their instant and actor
    in one row, every other event in a row of its own."""
    rows: list[tuple[int, int, str, str, str]] = []
    head: TimelineEvent | None = None  # the first event of the run being packed
    packed: list[Mapping[str, Any]] = []  # the details of the run's later events
    at, us = None, 0
    # A change's events share one instant, one datetime: `is` before `==` (an aware
    # datetime's comparison asks both for their offsets), its µs converted once.
    for e in events:
        if head is not None:
            if e.kind is head.kind and (e.at is head.at or e.at == head.at) \
                    and e.actor == head.actor:
                if PACKED in e.detail:
                    _refuse_packed()
                packed.append(e.detail)
                continue
            rows.append(_packed_row(incident_id, us, head, packed))
            head = None
        if e.at is not at:
            at, us = e.at, to_us(e.at)
        if e.kind in PACKED_KINDS:
            if PACKED in e.detail:
                _refuse_packed()
            head, packed = e, []
            continue
        # str(): the StrEnum's value, without `.value`'s descriptor (see write_alerts).
        rows.append((incident_id, us, str(e.kind), e.actor, dumps(e.detail)))
    if head is not None:
        rows.append(_packed_row(incident_id, us, head, packed))
    return rows


def each_rows(
    events: Sequence[tuple[int, TimelineEvent]]
) -> list[tuple[int, int, str, str, str]]:
    """The rows of one event to each of several incidents (TimelineRecords.append_each), in
    their order: an event object given for several incidents (a bundle's rows share their
    result's) is converted and encoded once, its instant too."""
    rows: list[tuple[int, int, str, str, str]] = []
    # By id(): `events` holds each event until the end, so no id is given again meanwhile.
    made: dict[int, tuple[int, str, str, str]] = {}
    at, us = None, 0
    for incident_id, e in events:
        if e.kind in PACKED_KINDS:
            rows.extend(timeline_rows(incident_id, [e]))
            continue
        row = made.get(id(e))
        if row is None:
            if e.at is not at:
                at, us = e.at, to_us(e.at)
            row = made[id(e)] = (us, str(e.kind), e.actor, dumps(e.detail))
        rows.append((incident_id, *row))
    return rows


def _refuse_packed() -> NoReturn:
    # A per-alert event's detail holding PACKED would read back as events of its own.
    raise ValueError(f"a detail of a per-alert event must not hold {PACKED!r}")


def _packed_row(
    incident_id: int, us: int, head: TimelineEvent, packed: list[Mapping[str, Any]]
) -> tuple[int, int, str, str, str]:
    detail = {**head.detail, PACKED: packed} if packed else head.detail
    return (incident_id, us, str(head.kind), head.actor, dumps(detail))


def events_from_row(row: Sequence[Any]) -> list[TimelineEvent]:
    """The events of a row (at, kind, actor, detail): one, or a packed row's, in order."""
    at, kind, actor, detail = from_us(row[0]), EventKind(row[1]), row[2], loads(row[3])
    if actor.endswith(EARLIER_LINK_ACTOR):
        actor = actor[:-len(EARLIER_LINK_ACTOR)]
        detail.setdefault("via", "link")
    if kind in PACKED_KINDS and PACKED in detail:
        packed = detail.pop(PACKED)
        return [TimelineEvent(at, kind, actor, detail),
                *(TimelineEvent(at, kind, actor, d) for d in packed)]
    return [TimelineEvent(at, kind, actor, detail)]


def events_from_rows(rows: Iterable[Any]) -> list[TimelineEvent]:
    """The events of timeline rows (at, kind, actor, detail: a tuple, an asyncpg Record) read
    in the order of their ids."""
    events: list[TimelineEvent] = []
    for row in rows:
        events.extend(events_from_row(row))
    return events


def first_seen(names: Iterable[object]) -> list[str]:
    """The names in the order each first appears, once each (None, a row without one, left
    out): the two dialects merge what the timeline and the outbox say was paged alike."""
    return list(dict.fromkeys(str(n) for n in names if n is not None))


# The timeline's kinds that record a page's fate, and what each says of it.
PAGE_FATE_KINDS = {
    EventKind.NOTIFICATION_SENT.value: PageFate.SENT,
    EventKind.NOTIFICATION_FAILED.value: PageFate.FAILED,
    EventKind.NOTIFICATION_SUPPRESSED.value: PageFate.SUPPRESSED,
}
# What the two dialects' `step_pages` name a row that is still to go: an outbox row, or a
# delayed contact's deadline (its key names the person).
OUTBOX_ROW, CONTACT_DEADLINE = "outbox", "contact"


def page_fates(rows: Iterable[Any]) -> list[tuple[str, PageFate]]:
    """`step_pages` rows (a person, or a contact deadline's key; where the row came from) as
    (person, fate), once each."""
    fates: dict[tuple[str, PageFate], None] = {}
    for who, source in rows:
        if source == CONTACT_DEADLINE:
            fates[(parse_contact_key(str(who))[3], PageFate.PENDING)] = None
        elif source == OUTBOX_ROW:
            fates[(str(who), PageFate.PENDING)] = None
        else:
            fates[(str(who), PAGE_FATE_KINDS[source])] = None
    return list(fates)


def encode_message(message: OutboxMessage) -> str:
    """An outbox row's payload column."""
    return _ENCODER.encode(message).decode()


_MESSAGE = msgspec.json.Decoder(OutboxMessage)


def decode_message(text: str | bytes) -> OutboxMessage | str:
    """The message an outbox row's payload holds, or why it cannot be read."""
    try:
        return _MESSAGE.decode(text)
    except msgspec.DecodeError as exc:  # ValidationError included: it names the field
        return f"its stored payload cannot be read: {exc}"


def outbox_rows(
    rows: Iterable[Any],
    decode: Callable[[str | bytes], OutboxMessage | str] = decode_message,
) -> list[OutboxRow]:
    """Outbox rows as both stores read them (id, incident, created, payload, attempts, due,
    gated), each distinct time converted once (a conversion is about 4,000 instructions): a
    fresh row falls due as it is made, and the rows deferred to one bundle fall due at its
    one time, so a storm's lease holds about one distinct time a row, not two."""
    times: dict[int, datetime] = {}
    found = []
    for r in rows:
        created = times.get(r[2]) or times.setdefault(r[2], from_us(r[2]))
        due = times.get(r[5]) or times.setdefault(r[5], from_us(r[5]))
        message = decode(r[3])
        if isinstance(message, str):
            found.append(OutboxRow(int(r[0]), int(r[1]), created, None, int(r[4]), due,
                                   unreadable=message, gated=bool(r[6])))
        else:
            found.append(OutboxRow(int(r[0]), int(r[1]), created, message, int(r[4]), due,
                                   gated=bool(r[6])))
    return found


def encode_history(history: ChannelHistory) -> str:
    """A channel's noise-control history as its column holds it."""
    return _ENCODER.encode(history).decode()


_HISTORY = msgspec.json.Decoder(ChannelHistory)


def decode_history(channel: str, text: str | bytes) -> ChannelHistory:
    """The history a channel's row holds. One that cannot be read starts afresh (with a
    warning): a broken row must not stop every message to its URL."""
    try:
        return _HISTORY.decode(text)
    except msgspec.DecodeError as exc:
        log.warning("the noise-control history of channel %s cannot be read, starting afresh:"
                    " %s", channel[:12], exc)
        return ChannelHistory()


def channel_columns(record: ChannelRecord) -> tuple[str, str, str | None, int | None]:
    """A record as the columns of its row."""
    addressee = None if record.addressee is None else encode_message(record.addressee)
    at = None if record.summary_at is None else to_us(record.summary_at)
    return record.channel, encode_history(record.history), addressee, at


def channel_record(row: Sequence[Any]) -> ChannelRecord:
    """A row (channel, history, addressee, summary_at) as a record."""
    addressee = None if row[2] is None else decode_message(row[2])
    return ChannelRecord(
        str(row[0]), decode_history(str(row[0]), row[1]),
        None if isinstance(addressee, str) else addressee,
        None if row[3] is None else from_us(int(row[3])),
    )


# What a reload (and a start) reads of the open incidents to say what a new config does to
# them (app/daemon.py): one statement on both stores, decoded alike.
OPEN_ESCALATIONS = ("SELECT id, escalation FROM incidents"
                    " WHERE state != 'resolved' AND escalation IS NOT NULL ORDER BY id")
OPEN_FIRING_ALERTS = ("SELECT i.id, i.group_key, a.labels FROM incidents i"
                      " JOIN alerts a ON a.incident_id = i.id"
                      " WHERE i.state != 'resolved' AND a.status = 'firing' ORDER BY i.id")


# The delayed contacts (SMS after a push) still waiting of every triggered incident: what a
# reload looks up in the new config (escalation/unreached.py's lost_contacts).
OPEN_CONTACTS = ("SELECT d.incident_id, d.key FROM deadlines d"
                 " JOIN incidents i ON i.id = d.incident_id"
                 " WHERE d.kind = 'contact' AND i.state = 'triggered' ORDER BY d.incident_id, d.id")


# What is still to be sent and names its recipient, for a reload to look up in the new config
# (incidents/follow.py, incidents/cadence.py, notify/contacts.py): the incident layer's
# delayed messages of every open incident (a follow-up's key names its person and contact; a
# status reminder goes to the commander, else whoever holds the acknowledgement: nobody once
# it is triggered again, roles.accountable), every outbox row, and
# each incident held back from a channel whose summary waits (its addressee, and in the
# fourth column the channel's digest). One statement on both stores, decoded alike
# (waiting_from_rows).
WAITING_MESSAGES = (
    "SELECT d.incident_id, d.kind, d.key, i.severity, r.\"user\","
    " CASE WHEN i.state = 'acknowledged' THEN i.acknowledged_by END, d.id"
    " FROM deadlines d JOIN incidents i ON i.id = d.incident_id"
    " LEFT JOIN incident_roles r ON r.incident_id = d.incident_id AND r.role = 'commander'"
    " WHERE d.kind IN ('follow', 'cadence') AND i.state != 'resolved'"
    " UNION ALL SELECT incident_id, 'outbox', payload, NULL, NULL, NULL, id FROM outbox"
    " UNION ALL SELECT h.incident_id, 'summary', c.addressee, c.channel, NULL, NULL, h.held_at"
    " FROM held_back h JOIN channel_histories c ON c.channel = h.channel"
    " WHERE c.addressee IS NOT NULL"
    " ORDER BY 1, 2, 7")


def waiting_from_rows(rows: Iterable[Any]) -> Waiting:
    """WAITING_MESSAGES' rows; an outbox row or a summary's addressee that cannot be read is
    left out (the row fails at its turn whatever the config; the summary is dropped)."""
    found = Waiting()
    for number, kind, key, severity, commander, acknowledged_by, _ in rows:
        if kind == "follow":
            found.follow_ups.append((int(number), str(key)))
        elif kind == "cadence":
            # An earlier release's "ana (link)" is ana, as incident_from_row reads it.
            found.reminders.append((int(number), str(severity), commander,
                                    person(acknowledged_by)))
        else:
            message = decode_message(key)
            if isinstance(message, str):
                continue
            if kind == "summary":
                found.summaries.append((int(number), str(severity), message))
            else:
                found.queued.append((int(number), message))
    return found


def escalations_from_rows(rows: Iterable[Any]) -> list[tuple[int, dict[str, Any]]]:
    """OPEN_ESCALATIONS' rows: (incident id, escalation state)."""
    return [(int(r[0]), loads(r[1])) for r in rows]


def firing_alerts_from_rows(rows: Iterable[Any]) -> list[tuple[int, str, dict[str, str]]]:
    """OPEN_FIRING_ALERTS' rows: (incident id, group key, labels)."""
    return [(int(r[0]), r[1], loads(r[2])) for r in rows]


# The columns maintenance_windows reads, in the order windows_from_rows takes them.
WINDOW_COLUMNS = "id, team, matchers, starts_at, ends_at, comment, created_by, created_at"


def windows_from_rows(rows: Iterable[Any]) -> list[Window]:
    """The API's maintenance windows as stored. A window whose matchers this release refuses
    (a pattern an earlier one took, such as a backreference RE2 does not have) is left out
    with a warning, not raised: it would otherwise stop the daemon at start, and a window
    that mutes nothing lets pages through, which is the safe side for a pager."""
    windows = []
    for r in rows:
        matchers = _stored_matchers(int(r[0]), r[2])
        if matchers is not None:
            windows.append(Window(from_us(r[3]), from_us(r[4]), r[1], matchers, r[5], r[6],
                                  int(r[0]), created_at=from_us(r[7])))
    return windows


def _stored_matchers(window_id: int, text: str) -> tuple[Matcher, ...] | None:
    try:
        return tuple(parse_matcher(m) for m in msgspec.json.decode(text))
    except MatcherError as exc:
        log.warning("maintenance window %d is left out: %s (delete it with"
                    " DELETE /api/v1/maintenance/%d and add it again)", window_id, exc,
                    window_id)
        return None
