"""Versioned schema migrations, applied in order at start; PRAGMA user_version records the last.

Times are integer microseconds since the Unix epoch (UTC): exact, sortable, cheap to compare.
Never edit a released migration; append a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: incidents, their alerts and timeline, durable deadlines, the notification outbox.
    """
    CREATE TABLE incidents (
        id               INTEGER PRIMARY KEY,
        group_key        TEXT    NOT NULL,
        route_id         TEXT    NOT NULL,
        team             TEXT    NOT NULL,
        severity         TEXT    NOT NULL,
        policy           TEXT    NOT NULL,
        group_labels     TEXT    NOT NULL,
        state            TEXT    NOT NULL,
        opened_at        INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        acknowledged_at  INTEGER,
        acknowledged_by  TEXT,
        resolved_at      INTEGER,
        resolved_by      TEXT,
        previous_id      INTEGER REFERENCES incidents(id),
        truncated_alerts INTEGER NOT NULL DEFAULT 0,
        external_url     TEXT    NOT NULL DEFAULT '',
        summary          TEXT    NOT NULL DEFAULT '',
        escalation       TEXT
    );
    -- At most one open incident per group: the invariant grouping relies on.
    CREATE UNIQUE INDEX incidents_open_group ON incidents(group_key) WHERE state != 'resolved';
    CREATE INDEX incidents_by_group ON incidents(group_key, id);
    CREATE INDEX incidents_by_state ON incidents(state, team, severity);

    CREATE TABLE alerts (
        incident_id   INTEGER NOT NULL REFERENCES incidents(id),
        fingerprint   TEXT    NOT NULL,
        starts_at     INTEGER NOT NULL,
        ends_at       INTEGER,
        status        TEXT    NOT NULL,
        labels        TEXT    NOT NULL,
        annotations   TEXT    NOT NULL,
        generator_url TEXT    NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (incident_id, fingerprint, starts_at)
    ) WITHOUT ROWID;

    CREATE TABLE timeline (
        id          INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at          INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        actor       TEXT    NOT NULL,
        detail      TEXT    NOT NULL
    );
    CREATE INDEX timeline_by_incident ON timeline(incident_id, id);

    CREATE TABLE deadlines (
        id          INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        due         INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        UNIQUE (incident_id, kind, key)
    );

    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        incident_id     INTEGER NOT NULL REFERENCES incidents(id),
        created_at      INTEGER NOT NULL,
        payload         TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL
    );

    CREATE TABLE round_robin (
        policy TEXT    NOT NULL,
        step   INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        PRIMARY KEY (policy, step)
    );
    """,
    # 2: the outbox by due time and by incident. The dispatcher asks for the rows due, and when
    # the next one is, on every pass, up to one a commit; a storm leaves thousands of rows
    # waiting (held back by the rate limit, or retried), and without the index each pass read
    # every one of them: 0.3 ms and 0.5 ms at 8,000 rows, growing with the storm.
    """
    CREATE INDEX outbox_due ON outbox(next_attempt_at, id);
    CREATE INDEX outbox_by_incident ON outbox(incident_id);
    """,
    # 3: what Grafana adds to an alert (model.GrafanaDetails, as JSON); null for Alertmanager's.
    """
    ALTER TABLE alerts ADD COLUMN grafana TEXT;
    """,
    # 4: outbox rows name their contact instead of holding its Apprise URL (credentials). A
    # row written before keeps its place and its fate: its URL becomes the index of that URL
    # among the recipient's contacts in the config ackd starts with (null if it has no such
    # contact any more: the row then fails visibly when it is due). The store registers
    # ackd_contact_index() for this; after it, the store VACUUMs once so that the URLs do not
    # linger in free pages, and truncates the WAL.
    """
    UPDATE outbox SET payload = json_set(json_remove(payload, '$.url'), '$.contact',
        ackd_contact_index(json_extract(payload, '$.recipient'),
                           json_extract(payload, '$.recipient_kind'),
                           json_extract(payload, '$.url')))
    WHERE json_type(payload, '$.url') IS NOT NULL;
    """,
    # 5: leases. A row handed to a send is leased: its due time moves to LEASED (far beyond any
    # real time) and the time it had is kept in leased_from, so no later pass reads it again
    # while it is in flight (in a storm every pass re-read, decoded and threw away thousands of
    # rows in flight). Its result ends the lease (the row is deleted or rescheduled); a lease
    # left by a crash is undone when the store opens.
    """
    ALTER TABLE outbox ADD COLUMN leased_from INTEGER;
    """,
    # 6: on-call changes made at run time (receiver/oncall/overrides.py), laid over the
    # config's schedules: one row a leg, the two legs of a swap naming each other. AUTOINCREMENT:
    # a deleted override's id is never given to another, so a listing or a log line that names
    # #7 always means the same change. And the handoff notices planned and sent: one row per
    # (schedule, layer, handoff instant), `sent_at` set in the transaction that sends it, so a
    # restart never sends one twice.
    """
    CREATE TABLE schedule_overrides (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule   TEXT    NOT NULL,
        layer      TEXT,
        user       TEXT    NOT NULL,
        replaces   TEXT,
        start_at   INTEGER NOT NULL,
        end_at     INTEGER NOT NULL,
        swap_with  INTEGER,
        created_by TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        note       TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX schedule_overrides_by_end ON schedule_overrides(end_at);

    CREATE TABLE handoff_notices (
        id       INTEGER PRIMARY KEY,
        schedule TEXT    NOT NULL,
        layer    TEXT    NOT NULL,
        at       INTEGER NOT NULL,
        user     TEXT    NOT NULL,
        sent_at  INTEGER,
        UNIQUE (schedule, layer, at)
    );
    """,
    # 7: heartbeats (receiver/heartbeats/): when each last arrived, so a restart keeps it. A
    # row is kept for a name the config no longer has (it may come back with a reload).
    """
    CREATE TABLE heartbeats (
        name         TEXT    PRIMARY KEY,
        last_arrival INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 8: maintenance windows made through the API (receiver/maintenance/); the config's live in
    # the config. An ended window stays, for the record; a deleted one goes.
    """
    CREATE TABLE maintenance (
        id         INTEGER PRIMARY KEY,
        team       TEXT,
        matchers   TEXT    NOT NULL,
        starts_at  INTEGER NOT NULL,
        ends_at    INTEGER NOT NULL,
        comment    TEXT    NOT NULL,
        created_by TEXT    NOT NULL,
        created_at INTEGER NOT NULL
    );
    """,
    # 9: who holds each role of an incident now (receiver/incidents/roles.py): one row a held
    # role. The timeline keeps every assignment and hand-over; this is the current state.
    """
    CREATE TABLE incident_roles (
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        role        TEXT    NOT NULL,
        user        TEXT    NOT NULL,
        since       INTEGER NOT NULL,
        assigned_by TEXT    NOT NULL,
        PRIMARY KEY (incident_id, role)
    ) WITHOUT ROWID;
    """,
    # 10: which replica holds an outbox row's lease (PostgreSQL's replicas, see
    # store/postgres/replicas.py); one SQLite store has one holder, so it stays NULL here.
    """
    ALTER TABLE outbox ADD COLUMN leased_by INTEGER;
    CREATE INDEX outbox_leased ON outbox(leased_by) WHERE leased_by IS NOT NULL;
    """,
    # 11: when Alertmanager last reported an open incident, for replicas sharing a store
    # (escalation/staleness.py): one replica may take the webhooks and another fire the stale
    # deadline. A row lives from a report until that deadline fires; one ackd alone keeps
    # this in memory and never writes it.
    """
    CREATE TABLE stale_reports (
        incident_id INTEGER PRIMARY KEY REFERENCES incidents(id),
        at          INTEGER NOT NULL
    );
    """,
    # 12: calendar feed generations (notify/links.FeedLinks): a row once a feed was revoked;
    # an address signed for an older generation stops.
    """
    CREATE TABLE calendar_feeds (
        kind       TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        generation INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID;
    """,
    # 13: noise control's history of each channel URL (delivery/noise.py), so replicas share
    # one budget and a restart keeps it. Keyed by a digest of the URL, never the URL (it holds
    # credentials); `addressee` names the contact (an outbox message) the held-back summary
    # goes to, and `summary_at` when it may go, so any replica finds the summaries due. An
    # outbox row that passed the gate is `gated`: sent again after a crash, it is not counted
    # (or held back) twice.
    """
    ALTER TABLE outbox ADD COLUMN gated INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE channel_histories (
        channel    TEXT    PRIMARY KEY,
        history    TEXT    NOT NULL,
        addressee  TEXT,
        summary_at INTEGER
    );
    CREATE INDEX channel_histories_by_summary ON channel_histories(summary_at);
    -- The incidents a channel's held-back messages were about, apart from its history: a
    -- storm adds thousands within one rate window, and a pass writes only those it adds.
    CREATE TABLE held_back (
        channel     TEXT    NOT NULL,
        incident_id INTEGER NOT NULL,
        held_at     INTEGER NOT NULL,
        PRIMARY KEY (channel, incident_id)
    ) WITHOUT ROWID;
    """,
    # 14: PostgreSQL's group indexes hold an MD5 of the key (a B-tree entry there holds at
    # most 2,704 bytes, and a group label may be longer: see store/postgres/schema.py). A
    # SQLite index holds a key of any length, and these stay as they are.
    "",
    # 15: deadlines by due time: PostgreSQL's replicas look for deadlines left overdue there
    # (store/postgres/late.py). One SQLite process holds every deadline in its timer and asks
    # no such thing: the index is here so that both dialects keep the same indexes.
    """
    CREATE INDEX deadlines_due ON deadlines(due);
    """,
    # 16: outbox ids are never given again (AUTOINCREMENT), as PostgreSQL's sequence never
    # gives one again: a row's id names that row for as long as anything holds it (a send's
    # rows in the dispatcher's memory, a pending bundle's rows in a channel history, a log
    # line). Without it a row took the id of the last row just deleted: a failed page's
    # escalation enqueued rows with its ids, which a pass took for the failed send's still
    # queued rows and left leased, never sent (session 11). SQLite cannot add AUTOINCREMENT
    # to a table: the outbox is copied into a new one, ids, rows and leases as they were.
    """
    CREATE TABLE outbox_new (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id     INTEGER NOT NULL REFERENCES incidents(id),
        created_at      INTEGER NOT NULL,
        payload         TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        leased_from     INTEGER,
        leased_by       INTEGER,
        gated           INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO outbox_new (id, incident_id, created_at, payload, attempts, next_attempt_at,
                            leased_from, leased_by, gated)
        SELECT id, incident_id, created_at, payload, attempts, next_attempt_at,
               leased_from, leased_by, gated FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox(next_attempt_at, id);
    CREATE INDEX outbox_by_incident ON outbox(incident_id);
    CREATE INDEX outbox_leased ON outbox(leased_by) WHERE leased_by IS NOT NULL;
    """,
)
