"""What pages say: default titles and bodies, short SMS bodies, overrides, bundles."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.core.model import (
    Alert,
    AlertStatus,
    EventKind,
    GrafanaDetails,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
    TimelineEvent,
)
from receiver.incidents.facts import LetGo
from receiver.notify.earlier import EarlierPage, PagedBefore
from receiver.notify.messages import (
    BUNDLE_SHOWN,
    DEFAULTS,
    NOTES_SHOWN,
    PAGE_REASONS,
    REASONS,
    SHORT_LIMIT,
    HeldIncident,
    MessageContext,
    Templates,
    Unshown,
    format_duration,
    held_pages,
    render_bundle,
    render_held_back,
    render_notes,
    web_link,
)
from receiver.notify.notifier import NotifyType

AT = datetime(2024, 3, 10, 3, 0, tzinfo=UTC)
SEV1 = Severity("SEV1", 0, "customer-facing outage")
SEV2 = Severity("SEV2", 1, "degraded service")
SEV3 = Severity("SEV3", 2, "")
ACK = "https://ackd.example.com/l/AQABZf3-bx_AAAAAAAAAKmFuYQ8xXv2Ab3kLmN0pQrStUv"
RESOLVE = "https://ackd.example.com/l/AQEBZf3-bx_AAAAAAAAAKmFuYQ3Yz-_Ab3kLmN0pQrStUv"
INCIDENT_URL = "https://ackd.example.com/incidents/42"
SILENCE = "https://am.example.com/#/silences/new?filter=%7Balertname%3D%22HighErrorRate%22%7D"


def alert(n: int, status: AlertStatus = AlertStatus.FIRING, **annotations: str) -> Alert:
    return Alert(
        fingerprint=f"{n:016x}",
        status=status,
        labels={"alertname": "HighErrorRate", "instance": f"api-{n}", "job": "api"},
        annotations=annotations,
        starts_at=AT,
        ends_at=None if status is AlertStatus.FIRING else AT + timedelta(minutes=5),
        generator_url=f"https://prometheus.example.com/graph?g0.expr=errors{n}",
    )


ALERTS = (
    alert(1, runbook_url="https://runbooks.example.com/api", dashboard="https://grafana/d/api"),
    alert(2, runbook_url="https://runbooks.example.com/api"),
    alert(3, AlertStatus.RESOLVED),
)


def incident(**changes: Any) -> Incident:
    base = Incident(
        id=42, group_key="k", route_id="0", team="payments", severity="SEV1", policy="default",
        group_labels={"alertname": "HighErrorRate"}, state=IncidentState.TRIGGERED,
        opened_at=AT, updated_at=AT, summary="Payment API down",
    )
    return replace(base, **changes)


def ctx(reason: str = "triggered", **changes: Any) -> MessageContext:
    base = MessageContext(
        reason=reason, incident=incident(), severity=SEV1, alerts=ALERTS, ack_url=ACK,
        resolve_url=RESOLVE, incident_url=INCIDENT_URL, silence_url=SILENCE, actor="ana",
        recipient="ana", step=1, cycle=0,
    )
    return replace(base, **changes)


TEMPLATES = Templates()


# -- titles and types --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "title"),
    [
        pytest.param(ctx("triggered"),
                     "[SEV1] #42 payments: Payment API down (2 firing, 1 resolved)",
                     id="triggered"),
        pytest.param(ctx("triggered", alerts=ALERTS[:1]),
                     "[SEV1] #42 payments: Payment API down (1 alert)", id="one-alert"),
        pytest.param(ctx("triggered", alerts=ALERTS[:2]),
                     "[SEV1] #42 payments: Payment API down (2 alerts)", id="all-firing"),
        pytest.param(ctx("reminder", alerts=tuple(replace(a, status=AlertStatus.RESOLVED)
                                                  for a in ALERTS)),
                     "[SEV1] REMINDER #42 payments: Payment API down (0 firing, 3 resolved)",
                     id="all-resolved"),
        pytest.param(ctx("escalated"),
                     "[SEV1] ESCALATED #42 payments: Payment API down (2 firing, 1 resolved)",
                     id="escalated"),
        pytest.param(ctx("reminder"),
                     "[SEV1] REMINDER #42 payments: Payment API down (2 firing, 1 resolved)",
                     id="reminder"),
        pytest.param(ctx("re_escalated"),
                     "[SEV1] RE-ESCALATED #42 payments: Payment API down (2 firing, 1 resolved)",
                     id="re-escalated"),
        pytest.param(ctx("reassigned", changed_to="team platform"),
                     "[SEV1] REASSIGNED #42 payments: Payment API down (2 firing, 1 resolved)",
                     id="reassigned"),
        pytest.param(ctx("severity_raised", changed_to="SEV1"),
                     "[SEV1] SEVERITY RAISED #42 payments: Payment API down (2 firing, 1 resolved)",
                     id="severity-raised"),
        pytest.param(ctx("acknowledged"), "#42 acknowledged by ana", id="acknowledged"),
        pytest.param(ctx("resolved"), "#42 resolved", id="resolved"),
        pytest.param(ctx("taken_over", actor="cy", changed_to="cy"), "#42 taken over by cy",
                     id="taken-over"),
        pytest.param(ctx("taken_over", actor="cy", changed_to="bo"),
                     "#42 reassigned to bo by cy", id="taken-over-by-a-reassignment"),
        pytest.param(ctx("stakeholder_declared"),
                     "[SEV1] Incident #42 opened: payments: Payment API down",
                     id="stakeholder-opened-by-an-alert"),
        pytest.param(ctx("stakeholder_declared", incident=incident(group_key="declared:7")),
                     "[SEV1] Incident #42 declared: payments: Payment API down",
                     id="stakeholder-declared-by-a-person"),
        pytest.param(ctx("stakeholder_exhausted"),
                     "[SEV1] Incident #42 unanswered: escalation ran out: payments:"
                     " Payment API down", id="stakeholder-exhausted"),
        pytest.param(ctx("stakeholder_resolved"),
                     "Incident #42 resolved: payments: Payment API down",
                     id="stakeholder-resolved"),
        pytest.param(ctx(incident=incident(summary="")),
                     "[SEV1] #42 payments: HighErrorRate (2 firing, 1 resolved)",
                     id="summary-from-alert"),
        pytest.param(ctx(incident=incident(summary="line one\n  line two")),
                     "[SEV1] #42 payments: line one line two (2 firing, 1 resolved)",
                     id="one-line"),
    ],
)
def test_titles(context: MessageContext, title: str) -> None:
    assert TEMPLATES.render(context).title == title


@pytest.mark.parametrize(
    ("reason", "severity", "kind"),
    [
        pytest.param("triggered", SEV1, NotifyType.FAILURE, id="sev1"),
        pytest.param("escalated", SEV2, NotifyType.FAILURE, id="sev2"),
        pytest.param("triggered", SEV3, NotifyType.WARNING, id="sev3"),
        pytest.param("stakeholder_declared", SEV3, NotifyType.WARNING, id="stakeholder-sev3"),
        pytest.param("acknowledged", SEV1, NotifyType.INFO, id="acknowledged"),
        pytest.param("taken_over", SEV1, NotifyType.INFO, id="taken-over-sev1"),
        pytest.param("taken_over", SEV3, NotifyType.INFO, id="taken-over-sev3"),
        pytest.param("resolved", SEV1, NotifyType.SUCCESS, id="resolved"),
        pytest.param("stakeholder_resolved", SEV2, NotifyType.SUCCESS, id="stakeholder-resolved"),
    ],
)
@pytest.mark.parametrize("short", [False, True], ids=["long", "short"])
def test_notify_types(reason: str, severity: Severity, kind: NotifyType, short: bool) -> None:
    assert TEMPLATES.render(ctx(reason, severity=severity), short=short).notify_type is kind


# -- bodies ------------------------------------------------------------------------------

PAGE_BODY_HAS = [
    "SEV1 - customer-facing outage",
    "Team: payments",
    "Payment API down",
    "3 alerts (2 firing, 1 resolved):",
    "- HighErrorRate (instance=api-1, job=api)",
    "- HighErrorRate (instance=api-3, job=api) [resolved]",
    "Runbook: https://runbooks.example.com/api",
    "Dashboard: https://grafana/d/api",
    "Source: https://prometheus.example.com/graph?g0.expr=errors2",
    f"Silence: {SILENCE}",
    f"Acknowledge: {ACK}",
    f"Resolve: {RESOLVE}",
    f"Incident: {INCIDENT_URL}",
]


@pytest.mark.parametrize("line", PAGE_BODY_HAS)
@pytest.mark.parametrize("reason", PAGE_REASONS)
def test_page_bodies_carry_what_a_responder_needs(reason: str, line: str) -> None:
    assert line in TEMPLATES.render(ctx(reason)).body.splitlines()


@pytest.mark.parametrize(
    ("context", "line"),
    [
        pytest.param(ctx("escalated"), "ESCALATED: nobody has acknowledged yet (step 2).",
                     id="escalated-step"),
        pytest.param(ctx("reminder", cycle=2, step=0),
                     "REMINDER: still not acknowledged (step 1, round 3).", id="reminder-round"),
        pytest.param(ctx("acknowledged"), "Acknowledged by ana; escalation has stopped.",
                     id="acknowledged"),
        pytest.param(ctx("reassigned", changed_to="team platform", step=0),
                     "REASSIGNED to team platform by ana (step 1).", id="reassigned-team"),
        # The person a reassignment put ahead of the policy is no step of it (the reports
        # name their page `reassigned`); the policy's first step behind them is step 1.
        pytest.param(ctx("reassigned", changed_to="cy", step=0, ahead=1),
                     "REASSIGNED to cy by ana.", id="reassigned-person"),
        # Its repeat names it as every other repeat names its step, and says it went
        # unanswered, as every later page of the run does.
        pytest.param(ctx("reassigned", changed_to="cy", step=0, cycle=1, ahead=1),
                     "REASSIGNED to cy by ana; nobody has acknowledged yet (reassigned, round 2).",
                     id="reassigned-person-round"),
        pytest.param(ctx("reassigned", changed_to="team platform", step=0, cycle=1),
                     "REASSIGNED to team platform by ana; nobody has acknowledged yet"
                     " (step 1, round 2).", id="reassigned-team-round"),
        # A later run that keeps the person ahead (an unack by someone else): the same.
        pytest.param(ctx("re_escalated", step=0, ahead=1),
                     "RE-ESCALATED: acknowledged earlier but still not resolved.",
                     id="re-escalated-reassigned-person"),
        pytest.param(ctx("re_escalated", step=0, cycle=2, ahead=1),
                     "RE-ESCALATED: acknowledged earlier but still not resolved"
                     " (reassigned, round 3).", id="re-escalated-reassigned-person-round"),
        pytest.param(ctx("reassigned", changed_to="cy", step=1, ahead=1),
                     "REASSIGNED to cy by ana; nobody has acknowledged yet (step 1).",
                     id="behind-reassigned-person"),
        pytest.param(ctx("severity_raised", changed_to="SEV1", step=0),
                     "SEVERITY RAISED to SEV1 by ana (step 1).", id="severity-raised"),
        # A re-escalation names whose acknowledgement it let go, and when, as the other
        # runs' leads name whose change began them.
        pytest.param(ctx("re_escalated", step=0, let_go=LetGo(
            TimelineEvent(AT + timedelta(minutes=2), EventKind.ACKNOWLEDGED, "ana"),
            TimelineEvent(AT + timedelta(minutes=31), EventKind.UNACKNOWLEDGED, "bo"))),
            "RE-ESCALATED: acknowledged by ana at 2024-03-10 03:02:00 UTC, unacknowledged by"
            " bo at 2024-03-10 03:31:00 UTC (step 1).", id="re-escalated-after-an-unack"),
        pytest.param(ctx("re_escalated", step=1, let_go=LetGo(
            TimelineEvent(AT + timedelta(minutes=2), EventKind.ACKNOWLEDGED, "ana"))),
            "RE-ESCALATED: acknowledged by ana at 2024-03-10 03:02:00 UTC but still not"
            " resolved (step 2).", id="re-escalated-left-alone"),
        pytest.param(ctx("re_escalated", step=0),
                     "RE-ESCALATED: acknowledged earlier but still not resolved (step 1).",
                     id="re-escalated-nobody-known"),
        # A snooze over an incident nobody acknowledged ended: it was never acknowledged.
        pytest.param(ctx("re_escalated", step=0, let_go=LetGo(None, snoozed=TimelineEvent(
            AT + timedelta(minutes=21), EventKind.SNOOZED, "cy"))),
            "RE-ESCALATED: snoozed by cy at 2024-03-10 03:21:00 UTC without an acknowledgement;"
            " the snooze is over (step 1).", id="re-escalated-after-a-snooze-unacknowledged"),
        # Such a snooze un-acknowledged before it ran out: whoever ended it, not "over".
        pytest.param(ctx("re_escalated", step=0, let_go=LetGo(
            None, TimelineEvent(AT + timedelta(minutes=25), EventKind.UNACKNOWLEDGED, "bo"),
            TimelineEvent(AT + timedelta(minutes=21), EventKind.SNOOZED, "cy"))),
            "RE-ESCALATED: snoozed by cy at 2024-03-10 03:21:00 UTC without an acknowledgement,"
            " unacknowledged by bo at 2024-03-10 03:25:00 UTC (step 1).",
            id="re-escalated-after-a-snooze-unacknowledged-early"),
        pytest.param(ctx("resolved", incident=incident(
            state=IncidentState.RESOLVED, resolved_at=AT + timedelta(hours=1, minutes=12))),
            "Resolved by ana after 1h12m.", id="resolved"),
        pytest.param(ctx("triggered", alerts=ALERTS[:2]), "2 alerts:", id="all-firing"),
        pytest.param(ctx("triggered", incident=incident(truncated_alerts=40)),
                     "(Alertmanager left out 40 more)", id="truncated"),
    ],
)
def test_body_lines(context: MessageContext, line: str) -> None:
    assert line in TEMPLATES.render(context).body.splitlines()


@pytest.mark.parametrize("reason", ["reassigned", "severity_raised"])
def test_a_change_by_a_person_is_not_called_a_re_escalation(reason: str) -> None:
    message = TEMPLATES.render(ctx(reason, changed_to="SEV1"))
    assert "RE-ESCALATED" not in message.title
    assert "acknowledged earlier" not in message.body
    assert MessageReason(reason).is_page  # the noise gate sends and bundles it as a page
    short = TEMPLATES.render(ctx(reason, changed_to="SEV1"), short=True).body
    assert short.startswith(("[SEV1] REASSIGNED #42", "[SEV1] RAISED #42"))


def test_long_alert_lists_show_the_first_five() -> None:
    body = TEMPLATES.render(ctx(alerts=tuple(alert(n) for n in range(1, 13)))).body

    shown = [line for line in body.splitlines() if line.startswith("- ")]
    assert shown == [f"- HighErrorRate (instance=api-{n}, job=api)" for n in range(1, 6)]
    assert "and 7 more" in body.splitlines()


def test_empty_sections_leave_no_gaps() -> None:
    bare = ctx(alerts=(replace(alert(1), generator_url=""),), silence_url="",
               severity=SEV3)
    body = TEMPLATES.render(bare).body

    assert "\n\n\n" not in body
    assert "Runbook" not in body
    assert body.splitlines()[0] == "SEV3"


HOSTILE_URLS = ["javascript:alert(1)", "JavaScript://%0aalert(1)", "data:text/html,<b>x</b>",
                " https://padded.example.com", "https://", "http://[broken", "vbscript:x",
                "/relative/path", "https://ok.example.com/a b"]


def test_only_web_links_reach_a_page() -> None:
    hostile = [
        replace(alert(n, runbook_url=url, dashboard=url), generator_url=url,
                grafana=GrafanaDetails(silence_url=url, dashboard_url=url, panel_url=url,
                                       image_url=url))
        for n, url in enumerate(HOSTILE_URLS, 1)
    ]
    body = TEMPLATES.render(ctx(alerts=(*hostile, alert(99)), silence_url="javascript:x")).body
    kinds = ("Runbook:", "Dashboard:", "Panel:", "Source:", "Silence:")
    # No alert's own silence link, and the fallback is not a web link either.
    assert [line for line in body.splitlines() if line.startswith(kinds)] == [
        "Source: https://prometheus.example.com/graph?g0.expr=errors99"]
    assert "javascript" not in body.lower()
    assert not any(web_link(url) for url in HOSTILE_URLS)
    assert web_link(SILENCE)
    assert web_link("HTTP://PROM:9090/graph")


# -- short bodies ------------------------------------------------------------------------

LONG_SUMMARY = "Payment API returns 5xx for 40% of requests in eu-west-1 " * 5


@pytest.mark.parametrize(
    "context",
    [
        pytest.param(ctx(), id="plain"),
        pytest.param(ctx(incident=incident(summary=LONG_SUMMARY)), id="long-summary"),
        pytest.param(ctx(incident=incident(summary=LONG_SUMMARY, team="t" * 120)),
                     id="long-team"),
        pytest.param(ctx("escalated", incident=incident(summary=LONG_SUMMARY)), id="escalated"),
        pytest.param(ctx("reminder", incident=incident(summary=LONG_SUMMARY)), id="reminder"),
        pytest.param(ctx("re_escalated", incident=incident(summary=LONG_SUMMARY)),
                     id="re-escalated"),
    ],
)
def test_short_pages_fit_an_sms_and_keep_the_ack_link(context: MessageContext) -> None:
    message = TEMPLATES.render(context, short=True)

    assert len(message.body) <= SHORT_LIMIT
    assert message.body.endswith(f"Ack: {ACK}")
    assert f"#{context.incident.id}" in message.body
    assert message.title == ""  # SMS plugins prepend the title to the body


@pytest.mark.parametrize("reason", REASONS)
def test_every_short_body_fits(reason: str) -> None:
    context = ctx(reason, incident=incident(summary=LONG_SUMMARY))

    body = TEMPLATES.render(context, short=True).body

    assert len(body) <= SHORT_LIMIT
    assert "#42" in body
    # The link to act on (a status reminder's and an exhausted escalation's stakeholder
    # note's: the incident's page) never gives way.
    assert body.endswith("...") or RESOLVE in body or ACK in body or (
        reason in ("status_due", "stakeholder_exhausted", "taken_over")
        and body.endswith(INCIDENT_URL))


@pytest.mark.parametrize(
    ("changed_to", "said", "short"),
    [("cy", "Taken over by cy", "#42 taken over by cy: "),
     ("bo", "Reassigned to bo by cy", "#42 reassigned to bo by cy: ")],
    ids=["taken", "reassigned"],
)
def test_a_takeover_note_tells_whoever_held_it_that_it_is_not_theirs(
    changed_to: str, said: str, short: str,
) -> None:
    context = ctx("taken_over", actor="cy", changed_to=changed_to)
    body = TEMPLATES.render(context).body
    assert body.splitlines()[:2] == ["#42 payments: Payment API down",
                                     f"{said}; you no longer hold it."]
    assert body.endswith(f"Incident: {INCIDENT_URL}")
    assert TEMPLATES.render(context, short=True).body == (
        f"{short}Payment API down {INCIDENT_URL}")


# GSM 03.38: the basic character set, and the extension table (each of its characters
# takes two of a segment's 160 septets). A text with any other character goes as UCS-2.
GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = "\f^{}\\[~]|€"


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def septets(text: str) -> int:
    """How much of an SMS segment (160 septets) a GSM-7 text takes."""
    return sum(2 if char in GSM7_EXTENSION else 1 for char in text)


def test_the_gsm7_check_knows_the_alphabet() -> None:
    assert len(GSM7_BASIC) == 128
    assert is_gsm7("[SEV1] #42 payments: 5xx at 40% (eu-west-1) Ack: https://a.b/l/x_y-z")
    assert not is_gsm7("cut here…")
    assert not is_gsm7("Zahlungs-API “down”")
    assert septets("[SEV1] a") == 10


@pytest.mark.parametrize("reason", REASONS)
def test_a_cut_sms_stays_one_gsm7_sms(reason: str) -> None:
    """A summary cut to fit ends in "...": one character outside GSM-7 (an ellipsis) would
    send the whole text as UCS-2, 70 characters a segment instead of 160. And it is cut to
    160 septets, not characters: "[" and "]" take two each, so a 160-character page that
    starts "[SEV1]" would be two SMS."""
    context = ctx(reason, incident=incident(summary=LONG_SUMMARY))

    body = TEMPLATES.render(context, short=True).body

    assert "..." in body  # the summary was cut
    assert is_gsm7(body)
    assert septets(body) in (SHORT_LIMIT - 1, SHORT_LIMIT)  # full: a space may be cut too


def test_a_cut_short_note_bundle_stays_in_the_gsm7_alphabet() -> None:
    body = render_notes(notes(["stakeholder_resolved"] * 200), short=True).body

    assert body.endswith("...")
    assert is_gsm7(body)
    assert septets(body) <= SHORT_LIMIT


def test_a_short_page_bundle_stays_one_gsm7_sms() -> None:
    body = render_bundle(bundle(40, SEV1), short=True).body
    assert body.endswith(" and 39 more")
    assert is_gsm7(body)
    assert septets(body) <= SHORT_LIMIT


def test_a_short_summary_is_kept_whole() -> None:
    body = TEMPLATES.render(ctx(), short=True).body

    assert body == f"[SEV1] #42 payments: Payment API down Ack: {ACK}"


# -- overrides ---------------------------------------------------------------------------


PAGED_BEFORE = PagedBefore((
    EarlierPage("cy", 2, AT + timedelta(minutes=5), timedelta(minutes=1)),
    EarlierPage("ana", 1, AT, timedelta(minutes=6), timedelta(minutes=2), failed=True),
), more=2)


def test_a_later_step_says_who_was_paged_before_under_its_lead() -> None:
    lines = TEMPLATES.render(ctx("escalated", step=2, paged_before=PAGED_BEFORE)).body
    assert lines.splitlines()[:6] == [
        "ESCALATED: nobody has acknowledged yet (step 3).",
        "Paged before, not acknowledged:",
        "- cy (step 2) at 2024-03-10 03:05:00 UTC, 1m ago",
        "- ana (step 1) at 2024-03-10 03:00:00 UTC, 6m ago, again 2m ago; the page to them"
        " failed",
        "- and 2 more",
        "",
    ]
    # The person a reassignment put ahead of the policy is named as the reports name them.
    behind = PagedBefore((EarlierPage("cy", None, AT, timedelta(minutes=5)),))
    assert TEMPLATES.render(ctx("reassigned", step=1, ahead=1, paged_before=behind)).body \
        .splitlines()[1:3] == ["Paged before, not acknowledged:",
                               "- cy (reassigned) at 2024-03-10 03:00:00 UTC, 5m ago"]
    # Nobody before (a first page): not a word of it, long or short.
    assert "Paged before" not in TEMPLATES.render(ctx("escalated")).body
    assert "paged before" not in TEMPLATES.render(ctx("escalated"), short=True).body


def test_a_later_steps_sms_names_who_was_paged_before_where_it_fits() -> None:
    short = TEMPLATES.render(ctx("escalated", paged_before=PAGED_BEFORE), short=True).body
    assert short == ("[SEV1] ESC #42 payments: Payment API down (paged before: cy, ana +2)"
                     f" Ack: {ACK}")


# An SMS page's fixed parts around its summary: "[SEV1] ESC #42 payments: " and the link, in
# septets (each bracket takes two).
_FIXED = septets("[SEV1] ESC #42 payments: ") + septets(f" Ack: {ACK}")
_NAMES = " (paged before: cy, ana +2)"
_ONE = " (paged before: cy +3)"
_COUNT = " (4 paged before)"


@pytest.mark.parametrize(
    ("spare", "earlier"),
    [
        pytest.param(len(_NAMES), _NAMES, id="names-fit-exactly"),
        pytest.param(len(_NAMES) - 1, _ONE, id="one-name-fewer"),
        pytest.param(len(_ONE), _ONE, id="one-name-fits-exactly"),
        pytest.param(len(_ONE) - 1, _COUNT, id="the-count"),
        pytest.param(len(_COUNT), _COUNT, id="the-count-fits-exactly"),
        pytest.param(len(_COUNT) - 1, "", id="no-room"),
        pytest.param(0, "", id="the-summary-fills-it"),
    ],
)
def test_who_was_paged_before_takes_only_the_room_an_sms_page_leaves(
    spare: int, earlier: str
) -> None:
    """The summary and the link come first: "paged before" takes what room they leave over
    the 160 septets, in the longest form that fits, and never shortens the summary."""
    what = "x" * (SHORT_LIMIT - _FIXED - spare)
    context = ctx("escalated", incident=incident(summary=what), paged_before=PAGED_BEFORE)
    body = TEMPLATES.render(context, short=True).body
    assert body == f"[SEV1] ESC #42 payments: {what}{earlier} Ack: {ACK}"
    assert septets(body) == SHORT_LIMIT - spare + len(earlier) <= SHORT_LIMIT


UNACKED = LetGo(TimelineEvent(AT, EventKind.ACKNOWLEDGED, "ana"),
               TimelineEvent(AT + timedelta(minutes=9), EventKind.UNACKNOWLEDGED, "bo"))
_RE_ESC = "[SEV1] RE-ESC #42 payments: "


@pytest.mark.parametrize(
    ("spare", "note"),
    [
        pytest.param(None, " (ack'd by ana, unack'd by bo)", id="room-for-both"),
        pytest.param(len(" (unack'd by bo)"), " (unack'd by bo)", id="who-let-go-fits-exactly"),
        pytest.param(len(" (unack'd by bo)") - 1, "", id="no-room"),
    ],
)
def test_a_re_escalated_sms_says_whose_acknowledgement_an_unack_let_go(
    spare: int | None, note: str
) -> None:
    """In the room the summary and the link leave, as the long page's lead says it: who
    acknowledged and who let it go, else who let it go, else nothing."""
    what = ("Payment API down" if spare is None else
            "x" * (SHORT_LIMIT - septets(_RE_ESC) - septets(f" Ack: {ACK}") - spare))
    context = ctx("re_escalated", incident=incident(summary=what), let_go=UNACKED)
    body = TEMPLATES.render(context, short=True).body
    assert body == f"{_RE_ESC}{what}{note} Ack: {ACK}"
    assert septets(body) <= SHORT_LIMIT
    # It comes before whom the run paged before, who get what room it leaves (none here);
    # left alone (nobody let go of it), not a word.
    both = TEMPLATES.render(replace(context, paged_before=PAGED_BEFORE), short=True).body
    assert both == body
    alone = replace(context, let_go=LetGo(UNACKED.acknowledged))
    assert TEMPLATES.render(alone, short=True).body == f"{_RE_ESC}{what} Ack: {ACK}"


def test_a_re_escalated_sms_says_who_unacknowledged_a_snooze_before_it_ran_out() -> None:
    """A snooze sets the incident acknowledged, so an unack may end one nobody acknowledged:
    the short page names the snooze it let go, as the long page's lead does; a snooze that
    ran out is let go by nobody, and the short page adds nothing."""
    snoozed = TimelineEvent(AT, EventKind.SNOOZED, "cy")
    unacked = LetGo(None, TimelineEvent(AT + timedelta(minutes=4), EventKind.UNACKNOWLEDGED,
                                        "bo"), snoozed)
    context = ctx("re_escalated", incident=incident(summary="Payment API down"), let_go=unacked)
    assert TEMPLATES.render(context, short=True).body == (
        f"{_RE_ESC}Payment API down (snoozed by cy, unack'd by bo) Ack: {ACK}")
    ran_out = replace(context, let_go=LetGo(None, snoozed=snoozed))
    assert TEMPLATES.render(ran_out, short=True).body == (
        f"{_RE_ESC}Payment API down Ack: {ACK}")


def test_a_summary_too_long_for_an_sms_leaves_no_room_for_who_was_paged_before() -> None:
    what = "x" * (SHORT_LIMIT - _FIXED + 1)
    context = ctx("escalated", incident=incident(summary=what), paged_before=PAGED_BEFORE)
    body = TEMPLATES.render(context, short=True).body
    assert body == f"[SEV1] ESC #42 payments: {what[:-4]}... Ack: {ACK}"
    assert septets(body) == SHORT_LIMIT


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="plain"),
        pytest.param({"step": 2, "paged_before": PAGED_BEFORE}, id="paged-before"),
        pytest.param({"step": None, "actor": None, "changed_to": "team platform"}, id="no-step"),
        pytest.param({"alerts": (alert(1, description="5xx ratio 43% for 5m"),)},
                     id="description"),
        pytest.param({"alerts": tuple(alert(n) for n in range(8)), "cycle": 2}, id="many"),
        pytest.param({"let_go": LetGo(TimelineEvent(AT, EventKind.ACKNOWLEDGED, "ana"),
                                      TimelineEvent(AT, EventKind.UNACKNOWLEDGED, "bo"))},
                     id="let-go"),
    ],
)
def test_the_compiled_defaults_render_their_text(reason: str, changes: dict[str, Any]) -> None:
    # The pages' shared body is compiled once for every reason, the lead chosen by reason (a
    # start's cost): what a page says is still exactly what its text in DEFAULTS says.
    context = ctx(reason, **changes)
    assert TEMPLATES.render(context) == _from_text().render(context)


@functools.cache
def _from_text() -> Templates:
    """The defaults' text compiled as overrides are, each on its own: once for the module's
    75 cases above (1-1.7 s each time, checked and compiled)."""
    return Templates(DEFAULTS)


def test_overrides_see_who_was_paged_before() -> None:
    source = ("{% for p in paged_before %}{{ p.name }}@{{ p.step }} {{ p.ago }}"
              "{{ ' failed' if p.failed else '' }}; {% endfor %}+{{ paged_before_more }}")
    assert Templates.check({"escalated": {"body": source}}) == []
    templates = Templates({"escalated": {"body": source}})
    assert templates.render(ctx("escalated", paged_before=PAGED_BEFORE)).body == (
        "cy@2 1m; ana@1 6m failed; +2")


def test_overrides_see_whose_acknowledgement_a_re_escalation_let_go() -> None:
    source = ("{{ acknowledged_by }}@{{ acknowledged_at }} "
              "{{ unacknowledged_by }}@{{ unacknowledged_at }}")
    assert Templates.check({"re_escalated": {"body": source}}) == []
    templates = Templates({"re_escalated": {"body": source}})
    let_go = LetGo(TimelineEvent(AT, EventKind.ACKNOWLEDGED, "ana"),
                   TimelineEvent(AT + timedelta(minutes=1), EventKind.UNACKNOWLEDGED, "bo"))
    assert templates.render(ctx("re_escalated", let_go=let_go)).body == (
        "ana@2024-03-10 03:00:00 UTC bo@2024-03-10 03:01:00 UTC")
    assert templates.render(ctx("re_escalated")).body == "@ @"


def test_overrides_replace_only_what_they_name() -> None:
    templates = Templates({"triggered": {"title": "PAGE {{ incident.id }} for {{ recipient }}"}})

    message = templates.render(ctx())

    assert message.title == "PAGE 42 for ana"
    assert message.body == TEMPLATES.render(ctx()).body
    assert templates.render(ctx("escalated")).title == TEMPLATES.render(ctx("escalated")).title


def test_overrides_see_the_documented_variables() -> None:
    source = ("{{ alert_count }}/{{ firing_count }}/{{ resolved_count }} {{ summary }} "
              "({{ alerts_counted }}) "
              "{{ shown_alerts[0] | describe }} {{ incident.group_labels | labels }} "
              "{{ runbooks | join(',') }} {{ more_alerts }} {{ ack_url }}")
    templates = Templates({"triggered": {"body": source}})

    assert Templates.check({"triggered": {"body": source}}) == []
    assert templates.render(ctx()).body == (
        "3/2/1 Payment API down (2 firing, 1 resolved) HighErrorRate (instance=api-1, job=api) "
        f"alertname=HighErrorRate https://runbooks.example.com/api 0 {ACK}"
    )


def test_a_template_that_fails_at_render_falls_back_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Fine on the sample incident (step 0) that check() tries; breaks when step is None.
    templates = Templates({"triggered": {"title": "step {{ step + 1 }}"}})

    with caplog.at_level(logging.WARNING, logger="receiver.notify.messages"):
        message = templates.render(ctx(step=None))

    assert message.title == "[SEV1] #42 payments: Payment API down (2 firing, 1 resolved)"
    assert "template triggered.title failed, using the default" in caplog.text
    assert templates.render(ctx(step=2)).title == "step 3"


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        pytest.param({"triggered": {"title": "{{ incident.id }}"}}, [], id="fine"),
        # What depends on the incident is no mistake: the sample has one alert and three
        # labels, a real incident has its own.
        pytest.param({"triggered": {"title": "{{ alerts[0].labels.cluster }}",
                                    "body": "{{ incident.group_labels.service }}"
                                            " {{ alerts[0].annotations.description }}"}},
                     [], id="a-label-the-sample-lacks"),
        pytest.param({"triggered": {"title": "{{ alerts[5].labels.alertname }} {{ panels[0] }}"}},
                     [], id="an-index-past-the-sample"),
        pytest.param({"resolved": {"body": "{{ alerts[0].labelz.x }}"}}, ["resolved.body"],
                     id="misspelt-alert-attribute"),
        pytest.param({"resolved": {"body": "{{ alerts[0].labels.__class__ }}"}},
                     ["resolved.body"], id="sandboxed-label-map"),
        pytest.param({"triggred": {"title": "x"}}, ["triggred"], id="unknown-reason"),
        pytest.param({"triggered": {"subject": "x"}}, ["triggered.subject"], id="unknown-part"),
        pytest.param({"resolved": {"body": "{% if %}"}}, ["resolved.body"], id="syntax"),
        pytest.param({"resolved": {"body": "{{ incident.idd }}"}}, ["resolved.body"],
                     id="misspelt-attribute"),
        pytest.param({"resolved": {"body": "{{ incidnet.id }}"}}, ["resolved.body"],
                     id="misspelt-variable"),
        pytest.param({"resolved": {"title": "{{ incident.__class__.__mro__ }}"}},
                     ["resolved.title"], id="sandboxed"),
        pytest.param({"escalated": {"title": "{{ x }}", "body": "{{ y }}"},
                      "reminder": {"body": "{{ summary }}"}},
                     ["escalated.title", "escalated.body"], id="several"),
    ],
)
def test_check_names_each_broken_template(
    overrides: dict[str, dict[str, str]], keys: list[str]
) -> None:
    assert [key for key, _ in Templates.check(overrides)] == keys


def test_a_label_an_incident_lacks_sends_the_default_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """check-config lets `labels.cluster` through; an incident without it gets the default."""
    templates = Templates({"triggered": {"title": "{{ alerts[0].labels.cluster }} down"}})

    with caplog.at_level(logging.WARNING, logger="receiver.notify.messages"):
        message = templates.render(ctx())

    assert message.title == TEMPLATES.render(ctx()).title
    assert "'cluster'" in caplog.text


@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param("{% if %}", "line 1: Expected an expression", id="syntax"),
        pytest.param("{{ incident.idd }}", "has no attribute 'idd'", id="undefined"),
        pytest.param("{{ incident.__class__ }}", "unsafe", id="sandbox"),
    ],
)
def test_check_says_what_is_wrong(source: str, error: str) -> None:
    [(_, message)] = Templates.check({"triggered": {"body": source}})

    assert error in message


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
                     "{% endfor %}", "loops more than 100000 times", id="nested-loops"),
        pytest.param("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}", "loops more than 100000 times", id="silent-loops"),
        pytest.param("{% for i in range(90000) %}xxxxxxxxxx{% endfor %}",
                     "writes more than 262144 characters", id="output"),
        pytest.param("{{ 'x' * 10**12 }}", "a sequence longer than", id="repeat"),
        pytest.param("{{ 9**99999999 }}", "a number of more than", id="power"),
    ],
)
def test_a_template_without_end_is_refused_not_run_for_ever(source: str, error: str) -> None:
    """The trial render runs on the event loop (check-config, a reload): a template that
    loops for ever froze the daemon."""
    [(_, message)] = Templates.check({"triggered": {"title": source}})

    assert message.startswith("fails on a sample incident: ")
    assert error in message


def test_a_template_within_the_bounds_renders_whole() -> None:
    source = "{% for i in range(1000) %}{{ i % 10 }}{% endfor %}"
    templates = Templates({"triggered": {"body": source}})
    assert Templates.check({"triggered": {"body": source}}) == []
    assert templates.render(ctx()).body == "0123456789" * 100


def test_broken_overrides_are_refused_when_building() -> None:
    with pytest.raises(ValueError, match=r"templates\.triggered\.body: line 1"):
        Templates({"triggered": {"body": "{{ oops"}})


def test_unknown_reasons_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown message reason 'paged'"):
        ctx("paged")


# -- bundles and held-back summaries -----------------------------------------------------


def bundle(count: int, severity: Severity = SEV1) -> list[MessageContext]:
    return [
        ctx(incident=incident(id=41 + n, summary=f"Problem {n}"), severity=severity,
            ack_url=f"{ACK}{n}")
        for n in range(count)
    ]


def test_a_bundle_lists_each_incident_with_its_ack_link() -> None:
    message = render_bundle(bundle(3), short=False)

    assert message.title == "3 incidents need you: #41, #42, #43"
    for n in range(3):
        assert f"[SEV1] #{41 + n} payments: Problem {n} (2 firing, 1 resolved)" in message.body
        assert f"  Acknowledge: {ACK}{n}" in message.body.splitlines()
    assert message.notify_type is NotifyType.FAILURE


def test_a_long_bundle_is_capped() -> None:
    message = render_bundle(bundle(8), short=False)

    assert message.title == "8 incidents need you: #41, #42, #43, #44, #45 and 3 more"
    assert message.body.splitlines()[-1] == "and 3 more"
    assert "#46" not in message.body


@pytest.mark.parametrize("count", [2, 3, 6, 40])
def test_a_short_bundle_fits_an_sms(count: int) -> None:
    message = render_bundle(bundle(count), short=True)

    assert len(message.body) <= SHORT_LIMIT
    assert message.body.startswith(f"{count} incidents need you: #41 Ack: {ACK}0")
    assert message.body.endswith(f"and {count - 1} more")
    assert message.title == ""


def test_a_bundle_takes_the_most_urgent_type() -> None:
    mixed = bundle(2, SEV3) + [ctx("escalated", severity=SEV2)]

    assert render_bundle(mixed, short=False).notify_type is NotifyType.FAILURE
    assert render_bundle(bundle(2, SEV3), short=False).notify_type is NotifyType.WARNING


def unshown(contexts: list[MessageContext]) -> list[Unshown]:
    return [Unshown(c.incident.id, c.reason, c.severity) for c in contexts]


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("count", [6, 8, 40])
def test_a_bundle_past_what_it_shows_reads_only_ids_reasons_and_severities(
    count: int, short: bool
) -> None:
    """A storm's bundle carries hundreds of rows and shows its first few: the others are
    handed as Unshown (no incident, alerts or links), and the message is the same."""
    pages = bundle(count - 1, SEV3) + [ctx("escalated", severity=SEV2)]  # the last colours it
    assert (render_bundle(pages[:BUNDLE_SHOWN], short, unshown(pages[BUNDLE_SHOWN:]))
            == render_bundle(pages, short))
    every = notes(["resolved", "acknowledged"] * count)
    assert (render_notes(every[:NOTES_SHOWN], short, unshown(every[NOTES_SHOWN:]))
            == render_notes(every, short))


def test_an_empty_bundle_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        render_bundle([], short=False)
    with pytest.raises(ValueError, match="at least one"):
        render_notes([], short=False)


def notes(reasons: list[str]) -> list[MessageContext]:
    done = incident(state=IncidentState.RESOLVED, resolved_at=AT + timedelta(minutes=12))
    return [ctx(reason, incident=replace(done, id=12 + n, summary=f"Problem {n}"))
            for n, reason in enumerate(reasons)]


def test_a_burst_of_resolutions_is_one_note() -> None:
    message = render_notes(notes(["resolved"] * 31), short=False)

    assert message.title == ("31 incidents resolved: #12, #13, #14, #15, #16, #17, #18, #19, "
                             "#20, #21 and 21 more")
    lines = message.body.splitlines()
    assert lines[:2] == ["#12 payments: Problem 0: resolved by ana after 12m",
                         f"  Incident: {INCIDENT_URL}"]
    assert lines[-1] == "and 21 more"
    assert message.notify_type is NotifyType.SUCCESS


def test_mixed_notes_say_what_happened_to_each() -> None:
    message = render_notes(
        notes(["resolved", "acknowledged", "resolved", "stakeholder_declared"]), short=False)

    assert message.title == "4 incident updates (2 resolved, 1 acknowledged, 1 opened): " \
                            "#12, #13, #14, #15"
    assert "#13 payments: Problem 1: acknowledged by ana" in message.body.splitlines()
    assert "[SEV1] #15 payments: Problem 3: opened" in message.body.splitlines()
    assert message.notify_type is NotifyType.FAILURE  # a declared SEV1 is in it


@pytest.mark.parametrize("count", [2, 31, 200])
def test_a_short_note_bundle_fits_an_sms(count: int) -> None:
    message = render_notes(notes(["stakeholder_resolved"] * count), short=True)

    assert message.title == ""
    assert len(message.body) <= SHORT_LIMIT
    assert message.body.startswith(f"{count} incidents resolved: #12, #13")


@pytest.mark.parametrize(
    ("count", "window", "ids", "title", "body"),
    [
        pytest.param(12, timedelta(minutes=10), [41, 42, 42, 43],
                     "12 notifications were held back",
                     "12 notifications were held back in the last 10m: incidents #41, #42, #43.",
                     id="several"),
        pytest.param(1, timedelta(hours=1, minutes=30), [7], "1 notification was held back",
                     "1 notification was held back in the last 1h30m: incident #7.", id="one"),
        pytest.param(30, timedelta(minutes=5), list(range(1, 13)),
                     "30 notifications were held back",
                     "30 notifications were held back in the last 5m: incidents #1, #2, #3, #4, "
                     "#5, #6, #7, #8, #9, #10 and 2 more.", id="capped"),
    ],
)
def test_held_back_summary(
    count: int, window: timedelta, ids: list[int], title: str, body: str
) -> None:
    message = render_held_back(count, window, ids)

    assert (message.title, message.body) == (title, body)
    assert message.notify_type is NotifyType.WARNING


def test_held_back_summary_says_what_was_held() -> None:
    reasons = [("triggered", 2), ("resolved", 5), ("escalated", 1), ("stakeholder_resolved", 1),
               ("acknowledged", 1)]
    message = render_held_back(10, timedelta(minutes=10), [1, 2], reasons)

    assert message.body == ("10 notifications were held back in the last 10m (3 pages, "
                            "6 resolved, 1 acknowledged): incidents #1, #2.")


def test_held_back_summary_names_each_incident_and_its_ack_link() -> None:
    held = [HeldIncident(58, "SEV1", "pay", "Payment API down\nsince 9", "http://x/l/58"),
            HeldIncident(59, "SEV3", "pay", "Disk 80% full")]
    message = render_held_back(3, timedelta(seconds=40), [58, 59],
                               [("triggered", 2), ("resolved", 1)], held)

    assert message.body.splitlines() == [
        "3 notifications were held back in the last 40s (2 pages, 1 resolved):"
        " incidents #58, #59.",
        "[SEV1] #58 pay: Payment API down since 9",
        "  Acknowledge: http://x/l/58",
        "[SEV3] #59 pay: Disk 80% full",
    ]


def test_a_short_held_back_summary_carries_the_ack_links_that_fit() -> None:
    held = [HeldIncident(n, "SEV3", "pay", f"Down{n}", f"http://ackd.example/l/{'x' * 40}{n}")
            for n in (58, 59, 60)] + [HeldIncident(61, "SEV3", "pay", "Resolved", None)]
    message = render_held_back(5, timedelta(minutes=10), [58, 59, 60, 61],
                               [("triggered", 4), ("resolved", 1)], held, short=True)

    assert message.title == ""
    assert message.body == ("5 notifications were held back: incidents #58, #59, #60, #61."
                            f" #58 Ack: http://ackd.example/l/{'x' * 40}58")
    assert len(message.body) <= SHORT_LIMIT


_HELD_HEAD = re.compile(r"(\d+) notifications? (?:was|were) held back"
                        r"(?:: incidents? ((?:#\d+, )*#\d+)(?: \+(\d+))?|: (\d+) incidents?)?\.")


@pytest.mark.parametrize("count", range(1, 61))
def test_a_short_held_back_summary_is_one_sms(count: int) -> None:
    """The count, the first acknowledge link whole, and as many incident numbers as fit
    beside them, the others counted ("+N"): one GSM-7 SMS whatever the count (ten numbers
    and the link made 177 characters for 40 incidents)."""
    ids = [1000 + n for n in range(count)]
    held = [HeldIncident(i, "SEV1", "payments", "Payment API down", f"{ACK}{i}")
            for i in ids[:10]]

    body = render_held_back(2 * count, timedelta(minutes=10), ids, [("triggered", 2 * count)],
                            held, short=True).body

    assert is_gsm7(body)
    assert septets(body) <= SHORT_LIMIT
    head, link, _ = body.partition(f" #1000 Ack: {ACK}1000")
    assert link  # the first acknowledge link, whole
    match = _HELD_HEAD.fullmatch(head)
    assert match is not None, head
    assert match[1] == str(2 * count)
    listed = match[2].split(", ")
    assert listed == [f"#{i}" for i in ids[:len(listed)]]
    assert len(listed) + int(match[3] or 0) == count
    if match[3]:  # cut: one more number would not have fitted
        assert septets(body) + len(f", #{ids[len(listed)]}") > SHORT_LIMIT


def test_a_short_held_back_summary_leaves_out_a_link_too_long_to_fit() -> None:
    long_ack = f"https://ackd.example.com/{'x' * 120}/l/{'y' * 44}"
    held = [HeldIncident(7, "SEV1", "pay", "Down", long_ack)]

    body = render_held_back(40, timedelta(minutes=10), list(range(7, 47)),
                            [("triggered", 40)], held, short=True).body

    assert body == ("40 notifications were held back: incidents #7, #8, #9, #10, #11, #12, "
                    "#13, #14, #15, #16 +30.")


@pytest.mark.parametrize(
    ("reasons", "paged"),
    [
        pytest.param([("triggered", 1)], True, id="page"),
        pytest.param([("resolved", 3), ("reminder", 1)], True, id="mixed"),
        pytest.param([("resolved", 3), ("stakeholder_declared", 1)], False, id="notes"),
        pytest.param([], False, id="unknown"),
    ],
)
def test_held_pages(reasons: list[tuple[str, int]], paged: bool) -> None:
    assert held_pages(reasons) is paged


@pytest.mark.parametrize(
    ("span", "text"),
    [
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=45), "45s", id="seconds"),
        pytest.param(timedelta(minutes=10), "10m", id="minutes"),
        pytest.param(timedelta(hours=1, minutes=12, seconds=5), "1h12m", id="two-largest"),
        pytest.param(timedelta(days=2, seconds=5), "2d5s", id="gap"),
    ],
)
def test_format_duration(span: timedelta, text: str) -> None:
    assert format_duration(span) == text


# -- stale incidents ---------------------------------------------------------------------


def test_a_stale_message_asks_whether_it_still_fires() -> None:
    message = TEMPLATES.render(ctx("stale", stale_after=timedelta(hours=3)))
    assert message.title == "#42 not reported for 3h: still firing?"
    assert "Alertmanager has not reported these alerts for 3h; still firing?" in message.body
    assert f"Resolve: {RESOLVE}" in message.body  # whoever holds it can close it at once
    short = TEMPLATES.render(ctx("stale", stale_after=timedelta(hours=3)), short=True).body
    assert short == f"#42 not reported for 3h, still firing? Payment API down Resolve: {RESOLVE}"


def test_a_stale_message_says_when_ackd_resolved_it() -> None:
    resolved = incident(state=IncidentState.RESOLVED, resolved_by="stale", resolved_at=AT)
    context = ctx("stale", incident=resolved, stale_after=timedelta(minutes=90))
    message = TEMPLATES.render(context)
    assert message.title == "#42 not reported for 1h30m: resolved as stale"
    assert "for 1h30m; ackd resolved the incident as stale." in message.body
    assert RESOLVE not in message.body
    assert TEMPLATES.render(context, short=True).body == (
        "#42 not reported for 1h30m, resolved as stale: Payment API down"
    )


def test_stale_notes_bundle_with_how_long_alertmanager_was_silent() -> None:
    three = timedelta(hours=3)
    message = render_notes(
        [ctx("stale", stale_after=three), ctx("resolved", incident=incident(id=43))], False
    )
    assert message.title == "2 incident updates (1 stale, 1 resolved): #42, #43"
    assert "#42 payments: Payment API down: stale (not reported for 3h), still firing?" \
        in message.body


def test_a_page_says_what_the_description_adds_and_since_when() -> None:
    """Prometheus rules put the figures in `description`; a reminder half an hour in must not
    read like a new problem."""
    later = replace(ALERTS[1], starts_at=AT + timedelta(minutes=3))
    described = replace(ALERTS[0], starts_at=AT + timedelta(minutes=1), annotations={
        **ALERTS[0].annotations, "description": "5xx ratio 43%\nfor 5m"})
    body = TEMPLATES.render(ctx(alerts=(later, described, ALERTS[2]))).body.splitlines()

    assert body[body.index("Payment API down") + 1] == "5xx ratio 43% for 5m"
    assert f"Firing since {(AT + timedelta(minutes=1)):%Y-%m-%d %H:%M:%S} UTC" in body


def test_a_description_that_repeats_the_summary_or_runs_long_is_not_doubled() -> None:
    same = replace(ALERTS[0], annotations={"description": "Payment API down"})
    long = replace(ALERTS[0], annotations={"description": "x" * 1000})

    body = TEMPLATES.render(ctx(alerts=(same,))).body.splitlines()
    assert body[body.index("Payment API down") + 1].startswith("Firing since ")
    shown = next(line for line in TEMPLATES.render(ctx(alerts=(long,))).body.splitlines()
                 if line.startswith("xxx"))
    assert len(shown) == 400
    assert shown.endswith("...")
    assert is_gsm7(shown)


def test_an_exhausted_escalations_note_says_whom_it_paged_and_links_the_incident() -> None:
    body = TEMPLATES.render(ctx("stakeholder_exhausted", paged=("ana", "bo", "cy"))).body
    assert body.startswith("Nobody has acknowledged incident #42: every step of its escalation"
                           " has paged (ana, bo, cy) and nobody answered. Find someone to take"
                           " it.\n")
    assert body.endswith(f"Incident: {INCIDENT_URL}")
    assert ACK not in body  # a channel's stakeholders are told, not asked to act as one
