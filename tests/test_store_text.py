"""What an alert may hold, taken in alike by both stores: NUL (U+0000) in its labels and
annotations, and a group label of some KB.

PostgreSQL's text refuses NUL and a B-tree entry holds at most 2,704 bytes; SQLite minds
neither. Each was a 500 on PostgreSQL, which Alertmanager retries for ever. The PostgreSQL
store escapes NUL (store/postgres/text.py) and indexes an MD5 of the group key (its schema's
migration 14): what is read back is what was sent, on both."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.config import build as config_module
from receiver.config.model import Config
from receiver.core.errors import PayloadError
from receiver.core.model import Alert, AlertStatus, EventKind, TimelineEvent
from receiver.escalation.plan import PageFate
from receiver.incidents.service import Incidents
from receiver.maintenance.domain import Window
from receiver.oncall.overrides import Change, Leg
from receiver.store.base import Store
from receiver.store.postgres.store import PostgresStore
from receiver.store.postgres.text import escape, unescape
from receiver.store.records import IncidentFilter
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock
from tests.test_store import NOW
from tests.test_store import store as store  # both stores, each test on each

ROOT = Path(__file__).resolve().parent.parent
NUL = "a\x00b\x01c\x00"  # NUL, and SOH (the escape's own mark), as stored by PostgreSQL


def grouping_config(tmp_path: Path) -> Config:
    """tests/config/good/minimal.yaml, its route grouping by alertname and cluster."""
    text = (ROOT / "tests/config/good/minimal.yaml").read_text()
    path = tmp_path / "grouping.yaml"
    path.write_text(text + "  group_by: [alertname, cluster]\n")
    return config_module.load(path)


def incidents_of(store: Store, config: Config) -> Incidents:
    return Incidents(store, FakeClock(NOW), Metrics(), config,
                     shared=isinstance(store, PostgresStore))


def disk(cluster: str, **annotations: str) -> Alert:
    labels = {"alertname": "Disk", "cluster": cluster, "instance": f"h{NUL}:9100"}
    return Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, annotations,
                 NOW - timedelta(minutes=3), None, f"http://prom/graph?g0.expr={NUL}")


@pytest.mark.parametrize("text", ["", "plain", "\x00", "\x01", "\x010", "\x011", NUL,
                                  "\x01\x00\x01\x01", "é\x00☃"])
def test_the_escape_holds_no_nul_and_reads_back_as_written(text: str) -> None:
    assert "\x00" not in escape(text)
    assert unescape(escape(text)) == text


def test_a_soh_an_older_ackd_stored_reads_as_it_was() -> None:
    assert unescape("x\x01y") == "x\x01y"


async def test_nul_in_labels_annotations_and_the_summary_is_stored_and_read_back(
    store: Store, tmp_path: Path
) -> None:
    """A webhook whose group label, other labels, annotations (the summary) and generator URL
    hold NUL: answered, its incident, group key and alerts read back as sent; the next
    webhook of the group finds the incident; the group's lookups and the pages' reads work."""
    config = grouping_config(tmp_path)
    incidents = incidents_of(store, config)
    alert = disk(NUL, summary=f"disk {NUL} full", runbook=NUL)
    body = json.dumps(build_webhook([alert], group_labels={"alertname": "Disk", "cluster": NUL}))
    opened = await incidents.ingest_body(body.encode())
    [(key, incident_id)] = opened.groups.items()
    assert NUL in key
    incident = await store.incident(incident_id)
    assert incident.group_key == key
    assert incident.group_labels == {"alertname": "Disk", "cluster": NUL}
    assert incident.summary == f"disk {NUL} full"
    assert await store.alerts(incident_id) == [alert]
    assert [i.id for i in await store.incidents(IncidentFilter(open_only=True))] == [incident_id]
    assert await store.open_incidents_by_group([key, "other"]) == {key: incident_id}
    assert await store.write(lambda tx: tx.open_incident_ids([key])) == {key: incident_id}
    # The pages' reads look inside the outbox's and timeline's JSON, which holds \u0000.
    assert await store.write(lambda tx: tx.paged_recipients(incident_id)) == []
    fates = await store.write(lambda tx: tx.step_pages(incident_id, 0, 0, 0))
    assert PageFate.SENT not in {fate for _, fate in fates}

    again = await incidents.ingest_body(body.encode())
    assert again.groups == {key: incident_id}
    assert again.opened == []
    assert await store.alerts(incident_id) == [alert]

    await store.write(lambda tx: tx.append(
        incident_id, [TimelineEvent(NOW, EventKind.NOTE, f"ana{NUL}", {"text": NUL})]))
    last = (await store.timeline(incident_id))[-1]
    assert (last.actor, last.detail) == (f"ana{NUL}", {"text": NUL})


async def test_nul_in_a_comment_and_a_note_is_stored_and_read_back(store: Store) -> None:
    """The API's free text (a maintenance window's comment, an override's note) alike."""
    window = Window(NOW, NOW + timedelta(hours=1), "ops", (), f"db {NUL}", "ana",
                    created_at=NOW)
    number = await store.write(lambda tx: tx.add_window(window))
    assert [w.comment for w in await store.maintenance_windows() if w.id == number] \
        == [f"db {NUL}"]
    change = Change((Leg("bob", NOW, NOW + timedelta(hours=8), "day", "ana"),), note=NUL)
    [made] = await store.write(lambda tx: tx.add_overrides("ops", change, "ana", NOW))
    assert made.note == NUL
    assert await store.write(lambda tx: tx.current_overrides(NOW)) == [made]


async def test_a_group_label_of_3_kb_opens_one_incident_the_next_webhook_finds(
    store: Store, tmp_path: Path
) -> None:
    """3 KB of random hex as the group's label: more than a B-tree entry holds."""
    config = grouping_config(tmp_path)
    incidents = incidents_of(store, config)
    cluster = secrets.token_hex(1500)
    body = json.dumps(build_webhook([disk(cluster)])).encode()
    opened = await incidents.ingest_body(body)
    [(key, incident_id)] = opened.groups.items()
    assert cluster in key
    assert opened.opened != []
    again = await incidents.ingest_body(body)
    assert again.groups == {key: incident_id}
    assert again.opened == []
    other = json.dumps(build_webhook([disk(cluster[:-1] + "x")])).encode()
    assert (await incidents.ingest_body(other)).groups.values() != {incident_id}
    assert len(await store.incidents(IncidentFilter(open_only=True))) == 2
    assert await store.open_incidents_by_group([key]) == {key: incident_id}


async def test_a_fingerprint_holding_nul_is_refused_naming_it(store: Store, tmp_path: Path) -> None:
    """Alertmanager's fingerprints are 16 hex digits; one holding NUL is a bad request."""
    incidents = incidents_of(store, grouping_config(tmp_path))
    body = build_webhook([disk("c")])
    body["alerts"][0]["fingerprint"] = "00ff\x00"
    with pytest.raises(PayloadError) as refused:
        await incidents.ingest_body(json.dumps(body).encode())
    assert refused.value.field == "alerts[0].fingerprint"
