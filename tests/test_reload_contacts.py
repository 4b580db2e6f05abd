"""A reload that inserts, reorders or removes a person's contacts while something for them
waits, in-process on a fake clock: a delayed contact (SMS 5 s after push) and an outbox row
waiting for its retry still go to the URL they were meant for, wherever the contact is now;
one the reload removed fails visibly ("no longer has contact"), never re-targeted to the
contact now at its old position."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.escalation.keys import contact_digest
from receiver.escalation.policy import Channel, Contact, User
from receiver.notify.contacts import Destination, resolve
from receiver.notify.notifier import DeliveryStatus
from receiver.store.codec import decode_message
from receiver.store.records import OutboxMessage
from receiver.testing import FakeClock, Outcome, RecordingNotifier
from tests.harness import write_config
from tests.test_api import Api
from tests.test_reload_targets import Edit, reload, rewrite

SINK = "127.0.0.1:9"
PUSH = f'{{url: "json://{SINK}/ana"}}'
SMS = f'{{url: "json://{SINK}/ana-sms", delay: 5s, short: true}}'
VOICE = f'{{url: "json://{SINK}/ana-voice", delay: 30s}}'


def contacts(*specs: str) -> Edit:
    """ana's contacts, in this order."""
    def edit(text: str) -> str:
        lines = text.splitlines()
        [at] = [i for i, line in enumerate(lines) if "name: ana," in line]
        head = lines[at].split("contacts: [", 1)[0]
        lines[at] = f"{head}contacts: [{', '.join(specs)}]}}"
        return "\n".join(lines) + "\n"
    return edit


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """ana is paged on push at once, by SMS 5 s later; the first send to the push fails."""
    path = write_config(tmp_path / "ackd.yaml", SINK, step_delay="5m")
    rewrite(path, contacts(PUSH, SMS))
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    notifier = RecordingNotifier({f"json://{SINK}/ana": [Outcome(DeliveryStatus.FAILURE),
                                                        Outcome()]})
    clock = FakeClock()
    daemon = Daemon(loaded, clock=clock, notifier=notifier, config_path=path)
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


async def failures(api: Api, number: int) -> list[str]:
    """Why each notification failed, but for the push's failed first attempt."""
    status, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert status == 200, body
    return [e["detail"]["error"] for e in body["timeline"]
            if e["kind"] == "notification_failed" and "simulated" not in e["detail"]["error"]]


def sent(api: Api) -> list[tuple[str, bool]]:
    """Where each send went, and whether its message was the short form (it has no title)."""
    return [(url.rsplit("/", 1)[1], not message.title) for url, message in api.notifier.sent]


MOVES: list[Any] = [
    pytest.param(contacts(SMS, PUSH), id="reordered"),
    pytest.param(contacts(VOICE, PUSH, SMS), id="inserted"),
]


@pytest.mark.parametrize("edit", MOVES)
async def test_a_delayed_contact_the_reload_moved_still_goes_to_its_url(
    api: Api, edit: Edit
) -> None:
    number = await api.fire()
    await api.settle()
    api.clock.advance(timedelta(seconds=2))
    assert await api.paged_once(2) == ["ana", "ana"]  # the push, failed, then its retry
    await reload(api, edit)
    api.clock.advance(timedelta(seconds=3))
    assert await api.paged_once(3) == ["ana", "ana", "ana-sms"]
    assert sent(api)[-1] == ("ana-sms", True)
    assert await failures(api, number) == []


async def test_a_delayed_contact_the_reload_removed_fails_visibly(api: Api) -> None:
    """The SMS is gone and the voice call has its place: nothing goes to the voice call (nor
    to the push, now where the SMS was), and the timeline says the SMS is gone."""
    number = await api.fire()
    await api.settle()
    api.clock.advance(timedelta(seconds=2))
    assert await api.paged_once(2) == ["ana", "ana"]
    await reload(api, contacts(VOICE, PUSH))
    api.clock.advance(timedelta(seconds=3))
    await api.settle()
    assert api.paged() == ["ana", "ana"]
    assert await failures(api, number) == ["user ana no longer has contact 2"]


@pytest.mark.parametrize("edit", MOVES)
async def test_an_outbox_row_waiting_for_its_retry_keeps_its_url_across_a_reload(
    api: Api, edit: Edit
) -> None:
    """The push failed once and its row waits 200 ms for the retry; a reload moves the push:
    the retry goes to the push, in full, not to whatever is ana's first contact now."""
    number = await api.fire()
    await api.settle()
    assert sent(api) == [("ana", False)]  # failed; the row waits for its retry
    await reload(api, edit)
    api.clock.advance(timedelta(seconds=1))
    assert await api.paged_once(2) == ["ana", "ana"]
    assert sent(api) == [("ana", False), ("ana", False)]
    assert await failures(api, number) == []


async def test_an_outbox_row_whose_contact_the_reload_removed_fails_visibly(api: Api) -> None:
    """The push is gone and the SMS is ana's first contact now: the retry of the push goes
    nowhere (not to the SMS, in full), and fails on the timeline."""
    number = await api.fire()
    await api.settle()
    assert sent(api) == [("ana", False)]
    await reload(api, contacts(SMS))
    api.clock.advance(timedelta(seconds=1))
    await api.settle()
    assert sent(api) == [("ana", False)]
    assert await failures(api, number) == ["user ana no longer has contact 1"]


# -- the reference an outbox row holds, resolved against the running config ------------------

A, B, C = "json://x/a", "json://x/b", "json://x/c"
RESOLVED: list[Any] = [
    pytest.param("channel", (A, B), (C, A, B), 1, B, id="channel-url-inserted"),
    pytest.param("channel", (A, B), (B,), 1, B, id="channel-url-moved"),
    pytest.param("channel", (A, B), (A, C), 1, "channel ops no longer has url 2",
                 id="channel-url-removed"),
    pytest.param("user", (A, B), (B, A), 0, A, id="contact-reordered"),
    pytest.param("user", (A, B), (B,), 0, "user ops no longer has contact 1",
                 id="contact-removed"),
    pytest.param("user", (A, A), (C, A, A), 1, A, id="same-url-twice"),
]


@pytest.mark.parametrize(("kind", "before", "after", "index", "found"), RESOLVED)
def test_a_reference_names_its_url_wherever_a_reload_moved_it(
    kind: str, before: tuple[str, ...], after: tuple[str, ...], index: int, found: str
) -> None:
    """A row written against `before` names contact `index` and its URL's digest; against
    `after` it resolves to that URL, or to why it cannot go."""
    digest = contact_digest(before[index])
    users = {"ops": User("ops", tuple(Contact(url) for url in after))}
    channels = {"ops": Channel("ops", after)}
    resolved = resolve("ops", kind, index, users, channels, digest)
    assert (resolved.url if isinstance(resolved, Destination) else resolved) == found


def test_a_row_written_before_digests_goes_by_its_index() -> None:
    """An outbox row of an earlier release has no digest: its index names the contact, as
    it always did (after a reorder, whatever is there now)."""
    row = decode_message('{"recipient": "ops", "recipient_kind": "user", "contact": 1,'
                         ' "reason": "triggered"}')
    assert isinstance(row, OutboxMessage)
    assert row.url_digest == ""
    users = {"ops": User("ops", (Contact(A), Contact(B, short=True)))}
    assert resolve("ops", "user", row.contact, users, {}, row.url_digest) == Destination(B, True)
    assert resolve("ops", "user", 2, users, {}, "") == "user ops no longer has contact 3"
