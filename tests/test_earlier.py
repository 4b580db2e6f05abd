"""A page of a later step says whom the run paged before it (notify/earlier.py, pure), and the
person escalated to reads it in the page that reaches them: the daemon in-process on a fake
clock, its pages through real Apprise to a local HTTP sink."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import EventKind, TimelineEvent
from receiver.incidents.facts import LetGo, let_go
from receiver.notify.earlier import (
    SHOWN,
    EarlierPage,
    PagedBefore,
    ahead_in_run,
    paged_before,
)
from receiver.notify.messages import SHORT_LIMIT
from receiver.testing import FakeClock
from tests.harness import write_config
from tests.sinks import HttpSink, SinkMode
from tests.test_api import LABELS, Api

T0 = datetime(2026, 1, 5, 2, 14, 5, tzinfo=UTC)
MIN = timedelta(minutes=1)


def fired(at: datetime, step: int, *names: str, run: int = 0, cycle: int = 0) -> TimelineEvent:
    return TimelineEvent(at, EventKind.STEP_FIRED, detail={
        "step": step, "number": step + 1, "cycle": cycle, "run": run, "reason": "x",
        "recipients": list(names), "unresolved": []})


def delivery(at: datetime, name: str, step: int, ok: bool, run: int = 0) -> TimelineEvent:
    kind = EventKind.NOTIFICATION_SENT if ok else EventKind.NOTIFICATION_FAILED
    return TimelineEvent(at, kind, detail={"recipient": name, "step": step, "cycle": 0,
                                           "run": run, "reason": "escalated"})


def held(at: datetime, name: str, step: int) -> TimelineEvent:
    return TimelineEvent(at, EventKind.PAGE_SUPPRESSED, "maintenance",
                         {"recipient": name, "step": step, "window": "#1"})


def before(events: list[TimelineEvent], step: int = 1, cycle: int = 0, run: int = 0,
           recipient: str = "bo", now: datetime = T0 + 5 * MIN) -> PagedBefore:
    return paged_before(events, run=run, cycle=cycle, step=step, recipient=recipient, now=now)


def test_the_person_escalated_to_reads_who_was_paged_before_and_how_long_ago() -> None:
    got = before([fired(T0, 0, "ana"), delivery(T0, "ana", 0, True), fired(T0 + 5 * MIN, 1, "bo")])
    assert got == PagedBefore((EarlierPage("ana", 1, T0, 5 * MIN),))


def test_a_first_page_has_nobody_before_it() -> None:
    assert before([fired(T0, 0, "ana")], step=0, recipient="ana", now=T0) == PagedBefore()


def test_the_latest_paged_come_first_and_the_rest_are_counted() -> None:
    events = [fired(T0 + n * MIN, n, f"p{n}") for n in range(SHOWN + 2)]
    got = before(events, step=SHOWN + 2, now=T0 + 10 * MIN)
    assert [p.name for p in got.shown] == [f"p{n}" for n in range(SHOWN + 1, 1, -1)]
    assert got.more == 2


def test_a_person_paged_again_is_named_once_from_their_first_page() -> None:
    """A repeat cycle: bo's reminder at step 2 of round 2 names ana once, first paged 15
    minutes ago and again 5; bo's own page of round 1 is not news to bo."""
    events = [fired(T0, 0, "ana"), fired(T0 + 5 * MIN, 1, "bo"),
              fired(T0 + 10 * MIN, 0, "ana", cycle=1)]
    got = before(events, step=1, cycle=1, now=T0 + 15 * MIN)
    assert got == PagedBefore((EarlierPage("ana", 1, T0, 15 * MIN, 5 * MIN),))


def test_steps_behind_a_reassigned_person_are_numbered_as_the_reports_number_them() -> None:
    """A reassignment to cy put her ahead of the policy's steps: the run's events say `ahead`.
    bo's page at the policy's step 2 names ana at the policy's step 1 (the page said "step 2",
    her place in the run) and cy by no step number (it said "step 1"), as the reports and
    drills name them: "1" and "reassigned"."""
    events = [replace(e, detail={**e.detail, "ahead": 1}) for e in (
        fired(T0, 0, "cy", run=1), fired(T0 + 5 * MIN, 1, "ana", run=1))]
    got = before(events, step=2, run=1, now=T0 + 10 * MIN)
    assert got == PagedBefore((EarlierPage("ana", 1, T0 + 5 * MIN, 5 * MIN),
                               EarlierPage("cy", None, T0, 10 * MIN)))
    assert (ahead_in_run(events, 1), ahead_in_run(events, 0)) == (1, 0)


def test_other_runs_and_pages_a_window_held_are_left_out() -> None:
    """Run 0 paged ana and was acknowledged; run 1 (after an unack) paged cy at its first step
    while a window held dan's page of that step: bo's page at run 1 step 2 names cy only."""
    events = [fired(T0, 0, "ana"), fired(T0 + MIN, 0, "cy", "dan", run=1),
              held(T0 + MIN, "dan", 0)]
    assert [p.name for p in before(events, run=1).shown] == ["cy"]


# -- whose acknowledgement a re-escalation let go (incidents/facts.let_go) ------------------


def person(at: datetime, kind: EventKind, actor: str) -> TimelineEvent:
    return TimelineEvent(at, kind, actor)


ACK_ANA = person(T0 + MIN, EventKind.ACKNOWLEDGED, "ana")
UNACK_BO = person(T0 + 20 * MIN, EventKind.UNACKNOWLEDGED, "bo")
RUN_1 = fired(T0 + 20 * MIN, 0, "ana", run=1)
SNOOZE_CY = person(T0 + 21 * MIN, EventKind.SNOOZED, "cy")


@pytest.mark.parametrize(
    ("events", "run", "expected"),
    [
        pytest.param([fired(T0, 0, "ana"), ACK_ANA, UNACK_BO, RUN_1],
                     1, LetGo(ACK_ANA, UNACK_BO), id="unack"),
        # Left alone past reack_after: nobody let go of it, and the run says so.
        pytest.param([fired(T0, 0, "ana"), ACK_ANA,
                      TimelineEvent(T0 + 30 * MIN, EventKind.RE_ESCALATED, detail={"after": 1800}),
                      fired(T0 + 30 * MIN, 0, "ana", run=1)],
                     1, LetGo(ACK_ANA), id="left-alone"),
        # ana let go of it herself, bo took it again and cy let go of his: bo's is the one.
        pytest.param([fired(T0, 0, "ana"), ACK_ANA,
                      person(T0 + 2 * MIN, EventKind.UNACKNOWLEDGED, "ana"),
                      fired(T0 + 2 * MIN, 0, "ana", run=1),
                      person(T0 + 3 * MIN, EventKind.ACKNOWLEDGED, "bo"), UNACK_BO,
                      fired(T0 + 20 * MIN, 0, "ana", run=2)],
                     2, LetGo(person(T0 + 3 * MIN, EventKind.ACKNOWLEDGED, "bo"), UNACK_BO),
                     id="the-latest"),
        # The run after bo's unack paged, then cy snoozed it unacknowledged: the run its end
        # begins let go of nobody's acknowledgement, only of cy's snooze.
        pytest.param([fired(T0, 0, "ana"), ACK_ANA, UNACK_BO, RUN_1,
                      SNOOZE_CY, TimelineEvent(T0 + 51 * MIN, EventKind.SNOOZE_ENDED),
                      fired(T0 + 51 * MIN, 0, "ana", run=2)],
                     2, LetGo(None, snoozed=SNOOZE_CY), id="a-snooze-unacknowledged"),
        # Snoozed unacknowledged, and bo un-acknowledged it before the snooze ran out (a
        # snooze sets the incident acknowledged): the run names bo's unack, not a snooze over.
        pytest.param([fired(T0, 0, "ana"), SNOOZE_CY,
                      person(T0 + 25 * MIN, EventKind.UNACKNOWLEDGED, "bo"),
                      fired(T0 + 25 * MIN, 0, "ana", run=1)],
                     1, LetGo(None, person(T0 + 25 * MIN, EventKind.UNACKNOWLEDGED, "bo"),
                              SNOOZE_CY), id="a-snooze-unacknowledged-early"),
        # Acknowledged, then snoozed: the acknowledgement stood when the snooze ended.
        pytest.param([fired(T0, 0, "ana"), ACK_ANA, SNOOZE_CY,
                      TimelineEvent(T0 + 51 * MIN, EventKind.SNOOZE_ENDED),
                      fired(T0 + 51 * MIN, 0, "ana", run=1)],
                     1, LetGo(ACK_ANA, snoozed=SNOOZE_CY), id="acknowledged-then-snoozed"),
        # A snooze the last run's steps came after is that run's story, not this one's.
        pytest.param([fired(T0, 0, "ana"), SNOOZE_CY, RUN_1,
                      fired(T0 + 40 * MIN, 0, "ana", run=2)],
                     2, None, id="a-snooze-before-the-run-before"),
        # Read as the run's first step found it: what came after is another run's story.
        pytest.param([fired(T0, 0, "ana"), ACK_ANA, UNACK_BO, RUN_1,
                      person(T0 + 22 * MIN, EventKind.ACKNOWLEDGED, "cy")],
                     1, LetGo(ACK_ANA, UNACK_BO), id="as-the-run-began"),
        pytest.param([fired(T0, 0, "ana")], 0, None, id="the-first-run"),
    ],
)
def test_a_re_escalation_knows_whose_acknowledgement_it_let_go(
    events: list[TimelineEvent], run: int, expected: LetGo | None
) -> None:
    assert let_go(events, run) == expected


@pytest.mark.parametrize(
    ("outcomes", "failed"),
    [([], False), ([True], False), ([False], True), ([False, True], False)],
    ids=["pending", "sent", "failed", "failed-then-sent"],
)
def test_a_person_no_page_reached_is_said_to_have_failed(
    outcomes: list[bool], failed: bool
) -> None:
    events = [fired(T0, 0, "ana"), *(delivery(T0, "ana", 0, ok) for ok in outcomes)]
    [ana] = before(events).shown
    assert ana.failed is failed


def test_a_step_whose_every_page_failed_marks_nobody_by_its_account() -> None:
    """Escalation's account of a step whose every page failed (engine.delivery_failed) names
    the people in `unreachable` and no recipient: it marks nobody. It used to mark "None",
    the name of a person called None as failed, whose own page was still to go."""
    account = TimelineEvent(T0, EventKind.NOTIFICATION_FAILED, detail={
        "escalating_early": True, "step": 0, "cycle": 0, "run": 0, "next_step": 1,
        "unreachable": ["ana"]})
    events = [fired(T0, 0, "ana", "None"), delivery(T0, "ana", 0, False), account]
    shown = {page.name: page.failed for page in before(events).shown}
    assert shown == {"ana": True, "None": False}


# -- the page bo gets, through real Apprise ---------------------------------------------------


async def _daemon(tmp_path: Path, sink: HttpSink, broken: HttpSink | None = None, *,
                  short: str = "") -> Api:
    """The harness's policy: ana (primary) at once, bo (secondary) 5 minutes on, then cy, the
    lead; every contact a json:// URL on the sink (ana's on `broken`, if given; `short`'s
    an SMS-sized one), sent by ackd's own Apprise notifier. Nothing records the pages but
    the sinks."""
    path = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay="5m")
    if broken is not None:
        path.write_text(path.read_text().replace(f"json://127.0.0.1:{sink.port}/ana",
                                                 f"json://127.0.0.1:{broken.port}/ana"))
    if short:
        url = f'url: "json://127.0.0.1:{sink.port}/{short}"'
        path.write_text(path.read_text().replace(url, f"{url}, short: true"))
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock = FakeClock(T0)
    daemon = Daemon(loaded, clock=clock)  # no notifier given: the real Apprise adapter
    await daemon.start()
    return Api(daemon, None, clock)  # type: ignore[arg-type]


async def test_the_escalated_page_names_who_was_paged_before(
    tmp_path: Path, sink: HttpSink
) -> None:
    api = await _daemon(tmp_path, sink)
    try:
        number = await api.fire(LABELS)
        await api.settle()
        await sink.wait_for(1)
        await api.clock.jump(5 * MIN)
        await api.settle()
        requests = await sink.wait_for(2)
        assert [r.path for r in requests] == ["/ana", "/bo"]
        page = requests[1].json
        assert page["title"].startswith(f"[SEV1] ESCALATED #{number} payments:")
        assert page["message"].splitlines()[:4] == [
            "ESCALATED: nobody has acknowledged yet (step 2).",
            "Paged before, not acknowledged:",
            "- ana (step 1) at 2026-01-05 02:14:05 UTC, 5m ago",
            "",
        ]
        await api.clock.jump(5 * MIN)  # cy, the lead, at step 3: bo, the latest, first
        await api.settle()
        requests = await sink.wait_for(3)
        assert requests[2].path == "/cy"
        assert requests[2].json["message"].splitlines()[:4] == [
            "ESCALATED: nobody has acknowledged yet (step 3).",
            "Paged before, not acknowledged:",
            "- bo (step 2) at 2026-01-05 02:19:05 UTC, 5m ago",
            "- ana (step 1) at 2026-01-05 02:14:05 UTC, 10m ago",
        ]
        assert "Paged before" not in requests[0].json["message"]  # the first page: nobody
    finally:
        await api.daemon.stop()


async def test_an_escalated_page_says_when_the_page_before_never_reached_its_person(
    tmp_path: Path, sink: HttpSink
) -> None:
    """ana's endpoint answers 500 to both tries: nobody step 1 paged can be reached, so step 2
    pages bo at once, and bo's page says ana's failed: she has not seen it."""
    async with HttpSink(SinkMode.ERROR) as broken:
        api = await _daemon(tmp_path, sink, broken)
        try:
            await api.fire(LABELS)
            await api.settle()
            await broken.wait_for(1)
            await api.clock.jump(timedelta(seconds=1))  # past the retry's 200 ms backoff
            await api.settle()
            [page] = await sink.wait_for(1)
            assert page.path == "/bo"
            assert len(broken.requests) == 2
            assert page.json["message"].splitlines()[:3] == [
                "ESCALATED: nobody has acknowledged yet (step 2).",
                "Paged before, not acknowledged:",
                "- ana (step 1) at 2026-01-05 02:14:05 UTC, 1s ago; the page to them failed",
            ]
        finally:
            await api.daemon.stop()


async def test_an_escalated_sms_names_who_was_paged_before(
    tmp_path: Path, sink: HttpSink
) -> None:
    """bo's contact is SMS-sized: his step-2 page still says ana was paged before him, in
    the room its summary and link leave."""
    api = await _daemon(tmp_path, sink, short="bo")
    try:
        number = await api.fire(LABELS)
        await api.settle()
        await sink.wait_for(1)
        await api.clock.jump(5 * MIN)
        await api.settle()
        [_, page] = await sink.wait_for(2)
        assert page.path == "/bo"
        body = page.json["message"]
        assert body.startswith(f"[SEV1] ESC #{number} payments: PaymentApiDown"
                               " (paged before: ana) Ack: http")
        assert len(body) <= SHORT_LIMIT
    finally:
        await api.daemon.stop()
