"""What a page says: titles and bodies for every notification ackd sends.

The defaults are written for someone woken at 3 AM: the severity and the incident up front,
then what is firing, where to look (runbook, dashboard, source), and the one-click links to
acknowledge and resolve. Config may override any title or body per reason with a Jinja2
template; templates run in a sandbox, and an override that fails at render time falls back to
the default with a logged warning, because a broken template must never lose a page.

Variables a template sees:
    reason, incident, severity, alerts, ack_url, resolve_url, incident_url, silence_url,
    actor, recipient, step, cycle        the MessageContext's fields (step: the page's place
                                         in its escalation run, from 0; cycle: its round)
    number                               the page's step as the reports number it: the
                                         policy's own, from 1; none outside a step, and for
                                         the person a reassignment put ahead of the policy
                                         (the policy's first step behind them is 1); a
                                         template printing step + 1 is warned of at
                                         check-config (config/build/notifications.py)
    changed_to                           reassigned, severity_raised, taken_over: the team
                                         ("team X"), person or severity a person changed the
                                         incident to;
                                         after_maintenance: when the hold began (ISO 8601)
    held_since                           after_maintenance: that time, as `since` shows one
                                         (actor is the window: "#3" or the config's name)
    summary                              one line saying what is wrong
    alert_count, firing_count, resolved_count, truncated   (truncated: left out by Alertmanager)
    alerts_counted                       the headline's count: "3 alerts", or "2 firing, 1
                                         resolved" where any is resolved (`counted_alerts`)
    shown_alerts, more_alerts            the first few alerts, and how many are not shown
    runbooks, dashboards, sources        distinct annotation links and generatorURLs (and
                                         Grafana's dashboardURLs among the dashboards)
    panels, images, silences             Grafana's panelURLs, imageURLs and silenceURLs; where
                                         no alert has its own, silences is [silence_url];
                                         every list holds http(s) URLs only
    open_for                             how long the incident was open, once resolved
    acknowledged_by, acknowledged_at     re_escalated: who acknowledged it before its run
    unacknowledged_by, unacknowledged_at began, and who unacknowledged it (empty when nobody
                                         did: left alone, a snooze ended), times as `since`
    snoozed_by, snoozed_at               re_escalated: who snoozed it, if a snooze's end
                                         (or an unack of it) began the run
    paged_before, paged_before_more      pages of a later step: whom the earlier steps of the
                                         run paged, the latest first (each: name, step (as
                                         `number`: from 1, none for the person a reassignment
                                         put ahead), at, ago, again (how long since the last
                                         page to them, if paged again), failed (no delivery
                                         to them went out)), and how many more
Filters: `alert | describe` (name, labels, state) and `mapping | labels` ("k=v, k=v").

Every value a template prints is shown on one line, its control characters escaped
(`oneline.one_line`, applied by the environment's `finalize`, so overrides get it too): an
alert's label or annotation cannot add lines of its own, such as a forged `Acknowledge:` link.

Short messages (a per-contact `short: true`, for SMS gateways) are built here, not templated:
one body that fits one SMS, 160 GSM-7 septets (`sms_length`: the brackets of "[SEV1]" take
two each), or 70 UCS-2 units for a summary in a script GSM-7 lacks where the link leaves it
room (else spelled in GSM-7's letters: notify/sms.py), that always keeps its link, and no
title, because SMS plugins prepend the title to the body. A later step's short page names
whom the run paged before in what room the whole summary and the link leave
(`short_paged_before`); a re-escalated one after an unack, before them, whose
acknowledgement it let go (`short_let_go`).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, SupportsIndex, overload
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range

from receiver.core.frozen import frozen
from receiver.core.model import (
    Alert,
    AlertStatus,
    GrafanaDetails,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
)
from receiver.core.oneline import one_line, one_line_value
from receiver.incidents.facts import LetGo
from receiver.notify import sms
from receiver.notify.earlier import NOBODY, EarlierPage, PagedBefore
from receiver.notify.notifier import Message, NotifyType

log = logging.getLogger(__name__)

REASONS = tuple(MessageReason)
PAGE_REASONS = tuple(reason for reason in REASONS if reason.is_page)
PARTS = ("title", "body")

SHORT_LIMIT = 160
ALERTS_SHOWN = 5
LABELS_SHOWN = 30
LINKS_SHOWN = 3
# Prometheus rules put the figures in `description` ("5xx ratio 43% for 5m"); a page shows
# one, on one line, cut here: the alerts' list and the links must stay in view.
DESCRIPTION_SHOWN = 400
BUNDLE_SHOWN = 5
NOTES_SHOWN = 10
HELD_BACK_SHOWN = 10

_RUNBOOK_KEYS = ("runbook_url", "runbook")
_DASHBOARD_KEYS = ("dashboard", "dashboard_url", "grafana_url")
# A cut text ends in three dots, not "…": an SMS keeps to the GSM-7 alphabet to go as 160
# characters a segment, and one character outside it (the ellipsis is one) sends the whole
# text as UCS-2, 70 characters a segment. A full page can reach an SMS too (`short: false`).
_ELLIPSIS = "..."
_WEB_LINK = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)


@frozen
class MessageContext:
    """Everything one message is about: the incident, why it is sent, and its links."""

    reason: MessageReason
    incident: Incident
    severity: Severity
    alerts: Sequence[Alert]
    ack_url: str
    resolve_url: str
    incident_url: str
    silence_url: str
    actor: str = ""
    changed_to: str = ""  # reassigned, severity_raised: the team, person or severity
    recipient: str = ""
    step: int | None = None
    cycle: int = 0
    # Steps a reassignment to a person put ahead of the policy's own in the page's run (the
    # renderer reads them from the run's events): the reports' step number is step - ahead + 1.
    ahead: int = 0
    stale_after: timedelta | None = None  # a stale message: how long Alertmanager was silent
    status_every: timedelta | None = None  # a status_due message: the severity's cadence
    paged_before: PagedBefore = NOBODY  # a later step's page: whom the run paged before
    paged: Sequence[str] = ()  # stakeholder_exhausted: whom the escalation paged
    # re_escalated: the acknowledgement its run began after, and the unack that let it go
    let_go: LetGo | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown message reason {self.reason!r}: "
                             f"expected one of {', '.join(REASONS)}")


@frozen(slots=True)
class Unshown:
    """A bundle's entry past those its text shows (BUNDLE_SHOWN pages, NOTES_SHOWN notes): the
    bundle counts it, colours by it and lists its incident's number; nothing else of it is
    read, so its incident, alerts and links need not be."""

    incident_id: int
    reason: MessageReason
    severity: Severity


# -- default templates -------------------------------------------------------------------

_SEV = "[{{ severity.name }}] "
_HEADLINE = ("#{{ incident.id }} {{ incident.team }}: {{ summary }} "
             "({{ alerts_counted }})")

_ABOUT = """\
{{ severity.name }}{% if severity.description %} - {{ severity.description }}{% endif +%}
Team: {{ incident.team }}
{{ summary }}
{% if description %}
{{ description }}
{% endif %}
Firing since {{ since }}
"""

_ALERTS = """\

{{ alert_count }} alert{{ '' if alert_count == 1 else 's' }}\
{% if resolved_count %} ({{ firing_count }} firing, {{ resolved_count }} resolved){% endif %}:
{% for a in shown_alerts %}
- {{ a | describe }}
{% endfor %}
{% if more_alerts %}
and {{ more_alerts }} more
{% endif %}
{% if truncated %}
(Alertmanager left out {{ truncated }} more)
{% endif %}
"""

_WHERE = """\

{% for url in runbooks %}
Runbook: {{ url }}
{% endfor %}
{% for url in dashboards %}
Dashboard: {{ url }}
{% endfor %}
{% for url in panels %}
Panel: {{ url }}
{% endfor %}
{% for url in sources %}
Source: {{ url }}
{% endfor %}
{% for url in silences %}
Silence: {{ url }}
{% endfor %}
"""

_ACT = """\

Acknowledge: {{ ack_url }}
Resolve: {{ resolve_url }}
Incident: {{ incident_url }}
"""

# The page's step as the reports and drills name it: the policy's own by its number, with
# the round once the policy repeats. The person a reassignment put ahead of the policy is no
# step of it: their first page names none ("REASSIGNED to cy by ana."); a repeat of it is
# named as "Paged before" and the reports name it, "(reassigned, round 2)", as every other
# repeat names its step (a bare "(round 2)" said neither whose page it was nor why).
_STEP = "{% if number is not none %} (step {{ number }}{% if cycle %}, round {{ cycle + 1 }}" \
        "{% endif %}){% elif step is not none and cycle %} (reassigned, round {{ cycle + 1 }})" \
        "{% endif %}"

# A later step, or a repeat, of a run a person's change began: a page went unanswered.
_NOT_YET = "{% if step or cycle %}; nobody has acknowledged yet{% endif %}"

# Whom the run's earlier steps paged, so the person escalated to can call them or take it.
_EARLIER = """\
{% if paged_before %}
Paged before, not acknowledged:
{% for p in paged_before %}
- {{ p.name }} ({% if p.step is none %}reassigned{% else %}step {{ p.step }}{% endif %})\
 at {{ p.at }}, {{ p.ago }} ago\
{% if p.again %}, again {{ p.again }} ago{% endif %}\
{% if p.failed %}; the page to them failed{% endif %}

{% endfor %}
{% if paged_before_more %}
- and {{ paged_before_more }} more
{% endif %}

{% endif %}
"""

# Whose acknowledgement a re-escalation let go, as the other leads name whose change began
# their run: an unack's ("acknowledged by ana at ..., unacknowledged by bo at ..."), else one
# left alone past reack_after or a snooze's end ("acknowledged by ana at ... but still not
# resolved"); who snoozed it where a snooze over an incident nobody acknowledged ended ("snoozed
# by cy at ... without an acknowledgement; the snooze is over") or an unack ended it early
# ("snoozed by cy at ... without an acknowledgement, unacknowledged by bo at ..."); and
# "acknowledged earlier" where the context knows neither (an override's test, a context
# built by hand).
_LET_GO = ("{% if acknowledged_by %}acknowledged by {{ acknowledged_by }} at {{ acknowledged_at }}"
           "{% if unacknowledged_by %}, unacknowledged by {{ unacknowledged_by }} at "
           "{{ unacknowledged_at }}{% else %} but still not resolved{% endif %}"
           "{% elif snoozed_by %}snoozed by {{ snoozed_by }} at {{ snoozed_at }} without an"
           " acknowledgement{% if unacknowledged_by %}, unacknowledged by {{ unacknowledged_by }}"
           " at {{ unacknowledged_at }}{% else %}; the snooze is over{% endif %}"
           "{% else %}acknowledged earlier but still not resolved{% endif %}")

_LEADS = {
    "triggered": "",
    "escalated": "ESCALATED: nobody has acknowledged yet" + _STEP + ".\n",
    "reminder": "REMINDER: still not acknowledged" + _STEP + ".\n",
    "re_escalated": "RE-ESCALATED: " + _LET_GO + _STEP + ".\n",
    "responder_added": "{{ actor or 'Someone' }} asks you to join this incident.\n",
    "reassigned": "REASSIGNED to {{ changed_to or 'you' }} by {{ actor or 'someone' }}"
                  + _NOT_YET + _STEP + ".\n",
    "severity_raised": "SEVERITY RAISED to {{ changed_to or severity.name }} by "
                       "{{ actor or 'someone' }}" + _NOT_YET + _STEP + ".\n",
    "after_maintenance": "AFTER MAINTENANCE: held by "
                         "{% if actor %}maintenance window {{ actor }}"
                         "{% else %}a maintenance window{% endif %}"
                         "{% if held_since %} since {{ held_since }}{% endif %}"
                         + _NOT_YET + _STEP + ".\n",
}

_TITLE_TAGS = {"triggered": "", "escalated": "ESCALATED ", "reminder": "REMINDER ",
               "re_escalated": "RE-ESCALATED ", "responder_added": "JOIN ",
               "reassigned": "REASSIGNED ", "severity_raised": "SEVERITY RAISED ",
               "after_maintenance": "AFTER MAINTENANCE "}

# A takeover's note: "taken over by cy" (she took it), "reassigned to bo by cy" or
# "reassigned to team platform by cy".
_REASSIGNED_TO = "{% if changed_to and changed_to != actor %}"

# What every page's body says after its lead: the same text for each reason in _LEADS.
_PAGE = _EARLIER + _ABOUT + _ALERTS + _WHERE + _ACT

DEFAULTS: dict[str, dict[str, str]] = {
    **{
        reason: {
            "title": _SEV + tag + _HEADLINE,
            "body": _LEADS[reason] + _PAGE,
        }
        for reason, tag in _TITLE_TAGS.items()
    },
    "acknowledged": {
        "title": "#{{ incident.id }} acknowledged by {{ actor or 'someone' }}",
        "body": "#{{ incident.id }} {{ incident.team }}: {{ summary }}\n"
                "Acknowledged by {{ actor or 'someone' }}; escalation has stopped.\n"
                "\nResolve: {{ resolve_url }}\nIncident: {{ incident_url }}\n",
    },
    # Whoever held it, when another took it over (actor) or reassigned it to a person or a
    # team (changed_to: "team X").
    "taken_over": {
        "title": "#{{ incident.id }} " + _REASSIGNED_TO + "reassigned to {{ changed_to }} by "
                 "{{ actor or 'someone' }}{% else %}taken over by {{ actor or 'someone' }}"
                 "{% endif %}",
        "body": "#{{ incident.id }} {{ incident.team }}: {{ summary }}\n"
                + _REASSIGNED_TO + "Reassigned to {{ changed_to }} by {{ actor or 'someone' }}"
                "{% else %}Taken over by {{ actor or 'someone' }}{% endif %}"
                "; you no longer hold it.\n\nIncident: {{ incident_url }}\n",
    },
    "resolved": {
        "title": "#{{ incident.id }} resolved",
        "body": "#{{ incident.id }} {{ incident.team }}: {{ summary }}\n"
                "Resolved{% if actor %} by {{ actor }}{% endif %}"
                "{% if open_for %} after {{ open_for }}{% endif %}.\n"
                "\nIncident: {{ incident_url }}\n",
    },
    # Also sent when a person raises an open incident to a severity with stakeholders its
    # earlier severities did not have (changed_to: the severity, actor: who raised it).
    "stakeholder_declared": {
        "title": _SEV + "Incident #{{ incident.id }} "
                 "{% if changed_to %}raised to {{ changed_to }}"
                 "{% elif incident.detection == 'reported' %}declared{% else %}opened{% endif %}"
                 ": {{ incident.team }}: {{ summary }}",
        "body": "Incident #{{ incident.id }} is open and the team is being paged.\n"
                "{% if changed_to %}Its severity was raised to {{ changed_to }} by "
                "{{ actor or 'someone' }}.\n{% endif %}"
                + _ABOUT + _ALERTS + "\nIncident: {{ incident_url }}\n",
    },
    "stakeholder_resolved": {
        "title": "Incident #{{ incident.id }} resolved: {{ incident.team }}: {{ summary }}",
        "body": "Incident #{{ incident.id }} ({{ severity.name }}, {{ incident.team }}) is "
                "resolved{% if open_for %} after {{ open_for }}{% endif %}.\n{{ summary }}\n"
                "\nIncident: {{ incident_url }}\n",
    },
    # The severity's stakeholder channels, when an incident's escalation ran out: every step
    # and repeat paged and nobody acknowledged (paged: whom it paged).
    "stakeholder_exhausted": {
        "title": _SEV + "Incident #{{ incident.id }} unanswered: escalation ran out: "
                 "{{ incident.team }}: {{ summary }}",
        "body": "Nobody has acknowledged incident #{{ incident.id }}: every step of its "
                "escalation has paged{% if paged %} ({{ paged | join(', ') }}){% endif %}"
                " and nobody answered. Find someone to take it.\n"
                + _ABOUT + _ALERTS + "\nIncident: {{ incident_url }}\n",
    },
    # Whoever is accountable for an open incident's status updates, when one is overdue.
    "status_due": {
        "title": "#{{ incident.id }}: a status update is due",
        "body": "#{{ incident.id }} {{ incident.team }}: {{ summary }}\n"
                "No status update for {{ status_every }}. Post one on the incident page or "
                "with `ackd note {{ incident.id }} \"...\"`.\n\nIncident: {{ incident_url }}\n",
    },
    # Whoever holds an incident whose alerts Alertmanager stopped reporting (staleness.py).
    "stale": {
        "title": "#{{ incident.id }} not reported for {{ stale_after }}"
                 "{% if incident.resolved_by == 'stale' %}: resolved as stale"
                 "{% else %}: still firing?{% endif %}",
        "body": "#{{ incident.id }} {{ incident.team }}: {{ summary }}\n"
                "Alertmanager has not reported these alerts for {{ stale_after }}; "
                "{% if incident.resolved_by == 'stale' %}ackd resolved the incident as stale."
                "{% else %}still firing?{% endif %}\n"
                + _ALERTS + "{% if incident.resolved_by != 'stale' %}" + _ACT + "{% else %}"
                "\nIncident: {{ incident_url }}\n{% endif %}",
    },
}


# -- the template set --------------------------------------------------------------------


class Templates:
    """The compiled templates: config overrides over the defaults, compiled once."""

    def __init__(self, overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        problems = self.check(overrides or {})
        if problems:
            raise ValueError("; ".join(f"templates.{key}: {error}" for key, error in problems))
        env = _environment()
        self._defaults = _compiled_defaults()
        self._custom = {(r, p): env.from_string(src)
                        for r, parts in (overrides or {}).items() for p, src in parts.items()}

    @staticmethod
    def check(overrides: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str]]:
        """(key, error) for each override that names an unknown reason or part, does not
        compile, or fails on a sample incident (a misspelt variable, an unsafe attribute).
        What depends on the incident (a label, an annotation, the sixth alert) is there in
        the sample, whatever its name: see _sample_variables."""
        env = _environment()
        sample = _sample_variables()
        problems: list[tuple[str, str]] = []
        for reason, parts in overrides.items():
            if reason not in REASONS:
                problems.append((reason, f"unknown reason; expected one of {', '.join(REASONS)}"))
                continue
            for part, source in parts.items():
                key = f"{reason}.{part}"
                if part not in PARTS:
                    problems.append((key, "unknown part; expected title or body"))
                    continue
                error = _trial(env, source, sample)
                if error:
                    problems.append((key, error))
        return problems

    def render(self, ctx: MessageContext, short: bool = False) -> Message:
        kind = notify_type(ctx)
        if short:
            return Message("", short_body(ctx), kind)
        variables = _variables(ctx)
        title = _one_line(self._part(ctx.reason, "title", variables))
        body = _tidy(self._part(ctx.reason, "body", variables))
        return Message(title, body, kind)

    def _part(self, reason: str, part: str, variables: Mapping[str, Any]) -> str:
        custom = self._custom.get((reason, part))
        if custom is not None:
            try:
                return bounded_render(custom, variables)
            except Exception as exc:  # any failure of a user's template: the default speaks
                log.warning("template %s.%s failed, using the default: %s", reason, part, exc)
        return self._defaults[(reason, part)].render(variables)


def notify_type(ctx: MessageContext | Unshown) -> NotifyType:
    """Apprise's colour for the message: failure for SEV1/SEV2 pages, warning below them;
    info for a note of who holds it now (acknowledged, taken over: no page, whatever the
    severity), success for a resolution."""
    if ctx.reason in ("acknowledged", "taken_over"):
        return NotifyType.INFO
    if ctx.reason in ("resolved", "stakeholder_resolved"):
        return NotifyType.SUCCESS
    return _severity_type(ctx.severity)


def _severity_type(severity: Severity) -> NotifyType:
    return NotifyType.FAILURE if severity.rank <= 1 else NotifyType.WARNING


@functools.cache
def _compiled_defaults() -> dict[tuple[str, str], Template]:
    """The defaults never change: compiled once per process, not once per config loaded,
    now that every Config carries its compiled Templates. Compiling is on the start's path
    (Jinja parses, generates and compiles Python): the pages' body, the same text (_PAGE)
    after each reason's lead, is compiled once for all of them, the lead chosen by `reason`,
    not once per reason (8 times: the defaults took 180 ms of a start, now 70 ms). A page
    renders what its text in DEFAULTS renders."""
    env = _environment()
    compiled = {(r, p): env.from_string(src) for r, parts in DEFAULTS.items()
                for p, src in parts.items() if not (p == "body" and r in _LEADS)}
    leads = "".join(f"{{% {'elif' if i else 'if'} reason == '{reason}' %}}{lead}"
                    for i, (reason, lead) in enumerate(_LEADS.items()))
    pages = env.from_string(leads + "{% endif %}" + _PAGE)
    return compiled | {(reason, "body"): pages for reason in _LEADS}


# What one render of a config's template may cost: a template runs on the event loop (the
# trial at check-config and reload, every page after), and one that loops for ever (two nested
# range(100000)) froze the daemon. The loop steps that range() hands out, the length of a
# sequence built by `*`, the size of a number built by `**`, and the text written are bounded.
MAX_STEPS = 100_000
MAX_OUTPUT = 256 * 1024
MAX_POWER_BITS = 4096
_steps_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_steps")


class _BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) \
                        and len(seq) * count > MAX_OUTPUT:
                    raise SecurityError(f"a sequence longer than {MAX_OUTPUT} items")
            return left * right
        if isinstance(left, int) and isinstance(right, int) and right > 0 \
                and abs(left).bit_length() * right > MAX_POWER_BITS:
            raise SecurityError(f"a number of more than {MAX_POWER_BITS} bits")
        return left**right


def _bounded_range(*args: int) -> range:
    steps = safe_range(*args)
    left = _steps_left.get(None)
    if left is not None:
        left[0] -= len(steps)
        if left[0] < 0:
            raise SecurityError(f"the template loops more than {MAX_STEPS} times")
    return steps


def bounded_render(template: Template, variables: Mapping[str, Any]) -> str:
    """A config template's text, or SecurityError once it takes more than MAX_STEPS loop
    steps or writes more than MAX_OUTPUT characters."""
    token = _steps_left.set([MAX_STEPS])
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the template writes more than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)
    finally:
        _steps_left.reset(token)


def _environment() -> SandboxedEnvironment:
    env = _BoundedEnvironment(
        autoescape=False, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        finalize=one_line_value,
    )
    env.globals["range"] = _bounded_range
    env.filters["describe"] = describe
    env.filters["labels"] = format_labels
    return env


def _trial(env: SandboxedEnvironment, source: str, sample: Mapping[str, Any]) -> str:
    try:
        template: Template = env.from_string(source)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    try:
        bounded_render(template, sample)
    except Exception as exc:  # whatever a template can raise, report it at config load
        return f"fails on a sample incident: {exc}"
    return ""


# -- template variables ------------------------------------------------------------------


def _variables(ctx: MessageContext) -> dict[str, Any]:
    alerts = list(ctx.alerts)
    resolved = sum(1 for a in alerts if a.status is AlertStatus.RESOLVED)
    # Grafana links each alert to its own silence form; Alertmanager's is built from labels.
    silences = _distinct(a.grafana.silence_url for a in alerts if a.grafana) or _distinct(
        [ctx.silence_url])
    return {
        "reason": ctx.reason,
        "incident": ctx.incident,
        "severity": ctx.severity,
        "alerts": alerts,
        "ack_url": ctx.ack_url,
        "resolve_url": ctx.resolve_url,
        "incident_url": ctx.incident_url,
        "silence_url": silences[0] if silences else "",
        "actor": ctx.actor,
        "changed_to": ctx.changed_to,
        "recipient": ctx.recipient,
        "step": ctx.step,
        "cycle": ctx.cycle,
        "number": (None if ctx.step is None or ctx.step < ctx.ahead
                   else ctx.step - ctx.ahead + 1),
        "summary": summary(ctx.incident, alerts),
        "description": description(ctx.incident, alerts),
        "since": _since(ctx.incident, alerts),
        "held_since": _held_since(ctx),
        "alert_count": len(alerts),
        "firing_count": len(alerts) - resolved,
        "resolved_count": resolved,
        "alerts_counted": counted_alerts(alerts),
        "truncated": ctx.incident.truncated_alerts,
        "shown_alerts": alerts[:ALERTS_SHOWN],
        "more_alerts": max(0, len(alerts) - ALERTS_SHOWN),
        "runbooks": _distinct(_annotation(a, _RUNBOOK_KEYS) for a in alerts),
        "dashboards": _distinct(
            [_annotation(a, _DASHBOARD_KEYS) for a in alerts]
            + [a.grafana.dashboard_url for a in alerts if a.grafana]
        ),
        "panels": _distinct(a.grafana.panel_url for a in alerts if a.grafana),
        "images": _distinct(a.grafana.image_url for a in alerts if a.grafana),
        "silences": silences,
        "sources": _distinct(a.generator_url for a in alerts),
        "open_for": _open_for(ctx.incident),
        "stale_after": format_duration(ctx.stale_after) if ctx.stale_after else "",
        "status_every": format_duration(ctx.status_every) if ctx.status_every else "",
        "paged_before": [_earlier(p) for p in ctx.paged_before.shown],
        "paged_before_more": ctx.paged_before.more,
        "paged": list(ctx.paged),
        **_let_go(ctx.let_go),
    }


def _let_go(let_go: LetGo | None) -> dict[str, str]:
    """acknowledged_by and _at, unacknowledged_by and _at, snoozed_by and _at: each empty
    where that did not happen."""
    found = let_go or LetGo(None)
    variables: dict[str, str] = {}
    for what, event in (("acknowledged", found.acknowledged),
                        ("unacknowledged", found.unacknowledged), ("snoozed", found.snoozed)):
        variables[f"{what}_by"] = event.actor if event else ""
        variables[f"{what}_at"] = _utc(event.at) if event else ""
    return variables


def _earlier(page: EarlierPage) -> dict[str, Any]:
    return {"name": page.name, "step": page.step, "at": _utc(page.at),
            "ago": format_duration(page.ago),
            "again": format_duration(page.again_ago) if page.again_ago is not None else "",
            "failed": page.failed}


def summary(incident: Incident, alerts: Sequence[Alert]) -> str:
    """One line saying what is wrong: the incident's summary, else the first alert's."""
    if incident.summary:
        return _one_line(incident.summary)
    for alert in alerts:
        text = (alert.annotations.get("summary") or alert.annotations.get("description")
                or alert.labels.get("alertname", ""))
        if text:
            return _one_line(text)
    if incident.group_labels:
        return format_labels(incident.group_labels)
    return f"incident #{incident.id}"


def counted_alerts(alerts: Sequence[Alert]) -> str:
    """How many alerts a headline counts: "3 alerts" while all fire, else the firing and the
    resolved apart ("2 firing, 1 resolved"): a page's count is read as what is wrong now, and
    Alertmanager keeps the group's resolved alerts in it until they age out."""
    resolved = sum(1 for a in alerts if a.status is AlertStatus.RESOLVED)
    if resolved:
        return f"{len(alerts) - resolved} firing, {resolved} resolved"
    return f"{len(alerts)} alert{'' if len(alerts) == 1 else 's'}"


def description(incident: Incident, alerts: Sequence[Alert]) -> str:
    """The first alert's `description` that says more than the summary, on one line."""
    said = summary(incident, alerts)
    for alert in alerts:
        text = _one_line(alert.annotations.get("description", ""))
        if text and text != said:
            return text if len(text) <= DESCRIPTION_SHOWN else (
                text[:DESCRIPTION_SHOWN - len(_ELLIPSIS)] + _ELLIPSIS)
    return ""


def _since(incident: Incident, alerts: Sequence[Alert]) -> str:
    """When the problem began: its earliest firing alert's start (Alertmanager's startsAt,
    before any group_wait), else the incident's opening. An absolute time, so that a reminder
    half an hour in does not read like a new problem, and a bundle held a while stays true."""
    starts = [a.starts_at for a in alerts if a.status is AlertStatus.FIRING]
    at = min(starts) if starts else incident.opened_at
    return _utc(at)


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _held_since(ctx: MessageContext) -> str:
    """When a maintenance window began holding the pages of an after_maintenance page."""
    if ctx.reason != MessageReason.AFTER_MAINTENANCE or not ctx.changed_to:
        return ""
    try:
        at = datetime.fromisoformat(ctx.changed_to)
    except ValueError:
        return ""
    return _utc(at)


def describe(alert: Alert) -> str:
    """`HighErrorRate (instance=api-1, job=api)`, with `[resolved]` once it stopped firing,
    and the values Grafana says fired it (`values: B=44.24, C=1`)."""
    name = one_line(alert.labels.get("alertname", "alert"))
    others = sorted((k, v) for k, v in alert.labels.items() if k != "alertname")
    # A page is read by a person: thousands of labels would bury the links, and rendering
    # them held the loop (31,000 labels: tens of ms).
    labels = format_labels(dict(others[:LABELS_SHOWN]))
    if len(others) > LABELS_SHOWN:
        labels += f" and {len(others) - LABELS_SHOWN} more labels"
    text = f"{name} ({labels})" if labels else name
    if alert.grafana is not None and (values := _values(alert.grafana)):
        text = f"{text} values: {values}"
    return f"{text} [resolved]" if alert.status is AlertStatus.RESOLVED else text


def _values(details: GrafanaDetails) -> str:
    if details.values:
        return ", ".join(f"{one_line(k)}={'none' if v is None else f'{v:.6g}'}"
                         for k, v in sorted(details.values.items()))
    return one_line(details.value_string)


def format_labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{one_line(k)}={one_line(v)}" for k, v in sorted(labels.items()))


def _annotation(alert: Alert, keys: Sequence[str]) -> str:
    return next((alert.annotations[k] for k in keys if alert.annotations.get(k)), "")


def _distinct(values: Iterable[str]) -> list[str]:
    """The first few distinct links, web links only: an alert's URLs come from whoever wrote
    the rule or sent the webhook, and a `javascript:` or `data:` URL must not reach a page
    (HTML-capable channels would make it a link)."""
    return list(dict.fromkeys(v for v in values if web_link(v)))[:LINKS_SHOWN]


def web_link(text: str) -> bool:
    """An absolute http(s) URL with a host, and no space or control character anywhere."""
    if _WEB_LINK.fullmatch(text) is None:
        return False
    try:
        return bool(urlsplit(text).hostname)
    except ValueError:  # "http://[" and the like
        return False


def _open_for(incident: Incident) -> str:
    if incident.state is not IncidentState.RESOLVED or incident.resolved_at is None:
        return ""
    return format_duration(incident.resolved_at - incident.opened_at)


def format_duration(span: timedelta) -> str:
    """`1h12m`, `10m`, `45s`: whole units, the two largest that are not zero."""
    seconds = max(0, int(span.total_seconds()))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    parts = []
    for name, size in units:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{name}")
    return "".join(parts[:2]) or "0s"


def _one_line(text: str) -> str:
    """Prose (a summary, a title) on one line: whitespace runs folded, other controls escaped."""
    return one_line(" ".join(text.split()))


def _tidy(body: str) -> str:
    """Trailing spaces gone and runs of blank lines (left by empty sections) folded to one."""
    lines = [line.rstrip() for line in body.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


# -- short bodies ------------------------------------------------------------------------

_SHORT_TAGS = {"triggered": "", "escalated": "ESC ", "reminder": "REMINDER ",
               "re_escalated": "RE-ESC ", "responder_added": "JOIN ",
               "reassigned": "REASSIGNED ", "severity_raised": "RAISED ",
               "after_maintenance": "AFTER MAINT "}


def short_body(ctx: MessageContext) -> str:
    """One SMS (SHORT_LIMIT septets, `sms_length`); the summary gives way, the link never
    does."""
    what = summary(ctx.incident, ctx.alerts)
    i = ctx.incident
    if ctx.reason in ("acknowledged", "taken_over"):
        return _short_held(ctx, what)
    if ctx.reason == "resolved":
        return _fit(f"#{i.id} resolved: ", what, "")
    if ctx.reason == "stakeholder_declared" and ctx.changed_to:
        return _fit(f"[{ctx.severity.name}] #{i.id} {i.team} raised to "
                    f"{one_line(ctx.changed_to)}: ", what, "")
    if ctx.reason == "stakeholder_declared":
        return _fit(f"[{ctx.severity.name}] New incident #{i.id} {i.team}: ", what, "")
    if ctx.reason == "stakeholder_resolved":
        return _fit(f"Incident #{i.id} resolved: {i.team}: ", what, "")
    if ctx.reason == "stakeholder_exhausted":
        return _fit(f"[{ctx.severity.name}] #{i.id} {i.team} UNANSWERED, escalation ran out: ",
                    what, f" {ctx.incident_url}")
    if ctx.reason == "stale":
        return _short_stale(ctx, what)
    if ctx.reason == "status_due":
        every = format_duration(ctx.status_every) if ctx.status_every else "a while"
        return _fit(f"#{i.id} no status update for {every}: ", what, f" {ctx.incident_url}")
    head = f"[{ctx.severity.name}] {_SHORT_TAGS[ctx.reason]}#{i.id} {i.team}: "
    tail = f" Ack: {ctx.ack_url}"
    if sms_length(head) + sms_length(tail) > SHORT_LIMIT - 1:
        head = f"#{i.id} "
    # The summary as it will go (spelled in GSM-7's letters if UCS-2 leaves it no room), so
    # that whom the run paged before takes only the room it leaves in that alphabet.
    head, what, tail = sms.as_sent(head, what, tail)
    text = head + what + tail
    room = sms.limit(text) - sms.length(text)
    # Why the run began comes before whom it paged: an unack is why this page comes at all.
    released = short_let_go(ctx.let_go, room)
    earlier = short_paged_before(ctx.paged_before, room - sms_length(released))
    return _fit(head, what + released + earlier, tail)


def short_let_go(let_go: LetGo | None, room: int) -> str:
    """Whose acknowledgement (or snooze) an unack let go, in at most `room` septets, for a
    short re-escalated page: " (ack'd by ana, unack'd by bo)" or " (snoozed by cy, unack'd by
    bo)", else " (unack'd by bo)", else nothing; nothing either when nobody let go of it
    (left alone, or a snooze that ran out). It only ever takes room left over: the summary
    and the link come first."""
    if let_go is None or let_go.unacknowledged is None:
        return ""
    unacked = one_line(let_go.unacknowledged.actor)
    # What the unack let go: an acknowledgement, or a snooze nobody acknowledged.
    held = (f"ack'd by {one_line(let_go.acknowledged.actor)}" if let_go.acknowledged
            else f"snoozed by {one_line(let_go.snoozed.actor)}" if let_go.snoozed else "")
    both = [f" ({held}, unack'd by {unacked})"] if held else []
    for text in (*both, f" (unack'd by {unacked})"):
        if sms_length(text) <= room:
            return text
    return ""


def _short_held(ctx: MessageContext, what: str) -> str:
    """Who holds it now: an acknowledgement (to the others paged), or a takeover (to whoever
    held it, as its default template says it)."""
    i, actor = ctx.incident, one_line(ctx.actor) or "someone"
    if ctx.reason == "acknowledged":
        return _fit(f"#{i.id} ack'd by {actor}: ", what, f" Resolve: {ctx.resolve_url}")
    if ctx.changed_to and ctx.changed_to != ctx.actor:
        return _fit(f"#{i.id} reassigned to {one_line(ctx.changed_to)} by {actor}: ", what,
                    f" {ctx.incident_url}")
    return _fit(f"#{i.id} taken over by {actor}: ", what, f" {ctx.incident_url}")


def short_paged_before(paged: PagedBefore, room: int) -> str:
    """Whom the run paged before, in at most `room` septets, for a short page: the
    names (the latest first) and how many more, " (paged before: bo, ana +2)"; fewer names
    and a larger count where they do not fit; the count alone, " (4 paged before)"; or
    nothing. It only ever takes room left over: the summary and the link come first."""
    names = [one_line(p.name) for p in paged.shown]
    total = len(names) + paged.more
    for count in range(len(names), 0, -1):
        rest = total - count
        text = f" (paged before: {', '.join(names[:count])}{f' +{rest}' if rest else ''})"
        if sms_length(text) <= room:
            return text
    text = f" ({total} paged before)" if total else ""
    return text if sms_length(text) <= room else ""


def _short_stale(ctx: MessageContext, what: str) -> str:
    silent = format_duration(ctx.stale_after) if ctx.stale_after else "long"
    i = ctx.incident
    if i.resolved_by == "stale":
        return _fit(f"#{i.id} not reported for {silent}, resolved as stale: ", what, "")
    return _fit(f"#{i.id} not reported for {silent}, still firing? ", what,
                f" Resolve: {ctx.resolve_url}")


def _fit(head: str, middle: str, tail: str) -> str:
    """head + middle + tail in one SMS, shortening middle (then head) only: SHORT_LIMIT
    septets in GSM-7; in a script GSM-7 lacks (a Cyrillic or CJK summary), one UCS-2
    segment, 70 units, where that leaves the summary room, else GSM-7 with it spelled in
    GSM-7's letters (notify/sms.py's `as_sent`)."""
    head, middle, tail = sms.as_sent(head, middle, tail)
    gsm7 = sms.is_gsm7(head + middle + tail)
    # A cut in UCS-2 may end in "…": one unit, where GSM-7 needs three dots.
    limit, ellipsis = (SHORT_LIMIT, _ELLIPSIS) if gsm7 else (sms.UCS2_LIMIT, "…")
    room = limit - sms_length(head, gsm7) - sms_length(tail, gsm7)
    if room >= sms_length(middle, gsm7):
        return head + middle + tail
    if room > len(ellipsis):
        return (head + sms.cut(middle, room - len(ellipsis), gsm7=gsm7).rstrip() + ellipsis
                + tail)
    # The link alone fills the limit: send what fits of the head, and the whole link.
    return (sms.cut(head, max(0, limit - sms_length(tail, gsm7)), gsm7=gsm7).rstrip()
            + tail).strip()


def sms_length(text: str, gsm7: bool = True) -> int:
    """How many of an SMS segment's septets `text` takes in GSM-7 (one a character, two for
    one of the extension table's), or with `gsm7` false its UTF-16 units in UCS-2, the
    alphabet of a text that holds a character GSM-7 lacks (notify/sms.py)."""
    return sms.septets(text) if gsm7 else sms.ucs2_units(text)


# -- bundles and summaries ---------------------------------------------------------------


def render_bundle(
    contexts: Sequence[MessageContext], short: bool, unshown: Sequence[Unshown] = ()
) -> Message:
    """One message for several pages to one person within the bundle window: `contexts`,
    then `unshown`, the entries past the BUNDLE_SHOWN its text shows. Only the first
    BUNDLE_SHOWN contexts' alerts are read (the others' may be empty)."""
    if not contexts:
        raise ValueError("a bundle needs at least one message")
    every: list[MessageContext | Unshown] = [*contexts, *unshown]
    kind = min((notify_type(c) for c in every), key=_urgency)
    total = len(every)
    if short:
        return Message("", _short_bundle(contexts, total), kind)
    ids = ", ".join(f"#{i}" for i in _ids(contexts, unshown)[:BUNDLE_SHOWN])
    more = total - BUNDLE_SHOWN
    title = f"{total} incidents need you: {ids}" + (f" and {more} more" if more > 0 else "")
    lines = []
    for c in contexts[:BUNDLE_SHOWN]:
        what = summary(c.incident, c.alerts)
        lines += [f"[{c.severity.name}] #{c.incident.id} {c.incident.team}: {what} "
                  f"({counted_alerts(c.alerts)})",
                  f"  Acknowledge: {c.ack_url}", f"  Incident: {c.incident_url}", ""]
    if more > 0:
        lines.append(f"and {more} more")
    return Message(title, _tidy("\n".join(lines)), kind)


def _urgency(kind: NotifyType) -> int:
    order = (NotifyType.FAILURE, NotifyType.WARNING, NotifyType.INFO, NotifyType.SUCCESS)
    return order.index(kind)


def _ids(contexts: Sequence[MessageContext], unshown: Sequence[Unshown]) -> list[int]:
    return [c.incident.id for c in contexts] + [u.incident_id for u in unshown]


def _short_bundle(contexts: Sequence[MessageContext], total: int) -> str:
    """`total` pages, of which `contexts` come first: as many ack links as fit, never more
    than BUNDLE_SHOWN (a link alone is over 40 characters: no more fit in SHORT_LIMIT)."""
    body = f"{total} incidents need you:"
    for shown, c in enumerate(contexts[:BUNDLE_SHOWN]):
        entry = f" #{c.incident.id} Ack: {c.ack_url}"
        left = total - shown - 1
        tail = f" and {left} more" if left else ""
        # The first entry goes in regardless: a bundle without one ack link is useless.
        if shown and sms_length(body + entry + tail) > SHORT_LIMIT:
            return body + f" and {total - shown} more"
        body += entry
    shown = min(len(contexts), BUNDLE_SHOWN)
    return body + (f" and {total - shown} more" if total > shown else "")


# What a note did to its incident, as a bundle or a held-back summary names it.
_NOTE_VERBS = {"acknowledged": "acknowledged", "resolved": "resolved",
               "taken_over": "taken over from you",
               "status_due": "due a status update",
               "stakeholder_declared": "opened", "stakeholder_resolved": "resolved",
               "stakeholder_exhausted": "unanswered (escalation ran out)"}


def _verb(reason: str) -> str:
    return _NOTE_VERBS.get(reason, reason)


def render_notes(
    contexts: Sequence[MessageContext], short: bool, unshown: Sequence[Unshown] = ()
) -> Message:
    """One message for several notes to one URL within the bundle window:
    `31 incidents resolved: #12, #13, ...`: `contexts`, then `unshown`, the entries past the
    NOTES_SHOWN its text describes. Only the first NOTES_SHOWN contexts' alerts are read (the
    others' may be empty)."""
    if not contexts:
        raise ValueError("a bundle needs at least one message")
    every: list[MessageContext | Unshown] = [*contexts, *unshown]
    kind = min((notify_type(c) for c in every), key=_urgency)
    verbs = dict.fromkeys(_verb(c.reason) for c in every)
    if len(verbs) == 1:
        head = f"{len(every)} incidents {next(iter(verbs))}"
    else:
        counts = {v: sum(1 for c in every if _verb(c.reason) == v) for v in verbs}
        parts = ", ".join(f"{n} {verb}" for verb, n in counts.items())
        head = f"{len(every)} incident updates ({parts})"
    ids = [f"#{i}" for i in _ids(contexts, unshown)]
    if short:
        return Message("", _fit(f"{head}: ", _listed(ids, len(ids)), ""), kind)
    lines = []
    for c in contexts[:NOTES_SHOWN]:
        lines += [f"{_note_line(c)}", f"  Incident: {c.incident_url}"]
    if len(every) > NOTES_SHOWN:
        lines.append(f"and {len(every) - NOTES_SHOWN} more")
    return Message(f"{head}: {_listed(ids, NOTES_SHOWN)}", _tidy("\n".join(lines)), kind)


def _listed(ids: Sequence[str], shown: int) -> str:
    more = len(ids) - shown
    return ", ".join(ids[:shown]) + (f" and {more} more" if more > 0 else "")


def _note_line(c: MessageContext) -> str:
    """`#12 payments: Payment API down: resolved by ana after 12m`."""
    i = c.incident
    verb = _verb(c.reason)
    if c.reason == "stakeholder_declared" and c.changed_to:
        verb = f"raised to {one_line(c.changed_to)}"
    elif c.reason == "stakeholder_declared" and i.detection == "reported":
        verb = "declared"  # by a person, not opened by an alert
    what = f"#{i.id} {i.team}: {summary(i, c.alerts)}: {verb}"
    if c.reason.startswith("stakeholder_"):
        what = f"[{c.severity.name}] {what}"
    if c.actor and c.reason in ("acknowledged", "resolved"):
        what += f" by {one_line(c.actor)}"
    if c.reason.endswith("resolved") and (open_for := _open_for(i)):
        what += f" after {open_for}"
    if c.reason == "stale":
        silent = format_duration(c.stale_after) if c.stale_after else "long"
        verdict = "resolved as stale" if i.resolved_by == "stale" else "still firing?"
        what += f" (not reported for {silent}), {verdict}"
    return what


@frozen(slots=True)
class HeldIncident:
    """What a held-back summary says of one incident it names: its severity and headline,
    and the acknowledge link when pages of it were held and it still waits for one."""

    id: int
    severity: str
    team: str
    headline: str
    ack_url: str | None = None


def render_held_back(
    count: int, window: timedelta, incident_ids: Sequence[int],
    reasons: Sequence[tuple[str, int]] = (), incidents: Sequence[HeldIncident] = (),
    short: bool = False,
) -> Message:
    """The one summary sent when a rate-limit window ends with notifications held back;
    `reasons`: how many of each message reason (pages, resolutions...) were held;
    `incidents`: the first HELD_BACK_SHOWN incidents' facts, one entry each under the count
    (the count alone tells nobody what they missed); `short`: one text for an SMS-like
    contact (`_short_held_back`)."""
    if count < 1:
        raise ValueError(f"held-back count must be at least 1, got {count}")
    ids = list(dict.fromkeys(incident_ids))
    noun = "notification was" if count == 1 else "notifications were"
    title = f"{count} {noun} held back"
    if short:
        return Message("", _short_held_back(title, ids, incidents), NotifyType.WARNING)
    listed = _listed([f"#{i}" for i in ids], HELD_BACK_SHOWN)
    about = f": incident{'' if len(ids) == 1 else 's'} {listed}" if ids else ""
    lines = [f"{count} {noun} held back in the last {format_duration(window)}"
             f"{_held_kinds(reasons)}{about}."]
    for held in incidents[:HELD_BACK_SHOWN]:
        lines.append(f"[{held.severity}] #{held.id} {held.team}: {_one_line(held.headline)}")
        if held.ack_url:
            lines.append(f"  Acknowledge: {held.ack_url}")
    return Message(title, "\n".join(lines), NotifyType.WARNING)


def _short_held_back(title: str, ids: Sequence[int], incidents: Sequence[HeldIncident]) -> str:
    """The held-back summary as one SMS (SHORT_LIMIT septets, `sms_length`): the count; the
    first acknowledge link, whole, if it fits beside the count; as many of the first
    HELD_BACK_SHOWN incident numbers as then fit, the others counted ("#41, #42 +38", or
    "40 incidents" when none fits); then further acknowledge links while they fit. The link
    comes before the numbers: it is what the reader can act on."""
    acks = [f" #{held.id} Ack: {held.ack_url}" for held in incidents if held.ack_url]
    body = _short_held_head(title, ids, acks[0]) if acks else None
    if body is None:  # no link, or one too long even beside the count alone: none is cut
        return _short_held_head(title, ids, "") or title
    for entry in acks[1:]:
        if sms_length(body + entry) > SHORT_LIMIT:
            break
        body += entry
    return body


def _short_held_head(title: str, ids: Sequence[int], link: str) -> str | None:
    """The count, the most incident numbers that fit beside `link`, and `link`; None if
    `link` does not fit even beside the count alone."""
    for shown in range(min(len(ids), HELD_BACK_SHOWN), -1, -1):
        body = f"{title}{_short_ids(ids, shown)}.{link}"
        if sms_length(body) <= SHORT_LIMIT:
            return body
    return None


def _short_ids(ids: Sequence[int], shown: int) -> str:
    """`: incidents #41, #42 +38`, `: 40 incidents` (none shown), or nothing (no ids)."""
    if not ids:
        return ""
    noun = "incident" if len(ids) == 1 else "incidents"
    if not shown:
        return f": {len(ids)} {noun}"
    rest = len(ids) - shown
    return f": {noun} {', '.join(f'#{i}' for i in ids[:shown])}" + (f" +{rest}" if rest else "")


def held_pages(reasons: Sequence[tuple[str, int]]) -> bool:
    """Pages were among the held-back messages (their summary carries acknowledge links)."""
    return any(reason in PAGE_REASONS and n for reason, n in reasons)


def _held_kinds(reasons: Sequence[tuple[str, int]]) -> str:
    """` (3 pages, 28 resolved)`; nothing when no reasons are known."""
    counts: dict[str, int] = {}
    for reason, n in reasons:
        label = "page" if reason in PAGE_REASONS else _verb(reason)
        counts[label] = counts.get(label, 0) + n
    parts = [f"{n} page{'' if n == 1 else 's'}" if label == "page" else f"{n} {label}"
             for label, n in counts.items()]
    return f" ({', '.join(parts)})" if parts else ""


# -- the sample a template is tried on at config load --------------------------------------


class _AnyName(dict[str, str]):
    """The sample's labels and annotations: any name a template reads is there. Real alerts
    carry labels no sample can guess (`cluster`, `service`), so `alerts[0].labels.cluster` is
    not a mistake to refuse at config load; on an incident whose alerts lack it, that render
    fails and the default message goes instead (Templates._part)."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


class _AnyIndex(list[Any]):
    """The sample's lists: any index a template reads is there (the sample has one alert, an
    incident has as many as Alertmanager sent)."""

    def __init__(self, items: Iterable[Any], filler: Any) -> None:
        super().__init__(items)
        self._filler = filler

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        if isinstance(index, slice):
            return super().__getitem__(index)
        try:
            return super().__getitem__(index)
        except IndexError:
            return self._filler


def _sample_variables() -> dict[str, Any]:
    variables = _variables(_sample_context())
    for name, value in variables.items():
        if isinstance(value, list):
            variables[name] = _AnyIndex(value, value[0] if value else f"<{name}>")
    return variables


def _sample_context() -> MessageContext:
    at = datetime(2024, 1, 1, 3, 0, tzinfo=UTC)
    alert = Alert(
        fingerprint="0123456789abcdef",
        status=AlertStatus.FIRING,
        labels=_AnyName(alertname="HighErrorRate", instance="api-1", job="api"),
        annotations=_AnyName(summary="Payment API down", runbook_url="https://runbooks/api",
                             dashboard="https://grafana/d/api"),
        starts_at=at,
        ends_at=None,
        generator_url="https://prometheus/graph",
    )
    incident = Incident(
        id=42, group_key="{}:{alertname=\"HighErrorRate\"}", route_id="0", team="payments",
        severity="SEV1", policy="default", group_labels=_AnyName(alertname="HighErrorRate"),
        state=IncidentState.TRIGGERED, opened_at=at, updated_at=at, summary="Payment API down",
    )
    return MessageContext(
        reason=MessageReason.TRIGGERED, incident=incident, severity=Severity("SEV1", 0, "Critical"),
        alerts=(alert,), ack_url="https://ackd/l/ack", resolve_url="https://ackd/l/resolve",
        incident_url="https://ackd/incidents/42", silence_url="https://am/#/silences/new",
        actor="ana", recipient="ana", step=0, cycle=0, paged=("ana", "bo"),
        paged_before=PagedBefore((EarlierPage("bo", 1, at, timedelta(minutes=5)),)),
    )
