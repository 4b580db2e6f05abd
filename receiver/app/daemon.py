"""The daemon's lifecycle: build from config, start, reload (SIGHUP, POST /-/reload), stop.

Shaped after uvicorn's server: signals only set events; the main coroutine starts everything,
waits, and shuts down in order (stop accepting, let in-flight webhooks finish, stop the timer
loop, drain the store's queue, close). A second SIGINT forces exit. A reload builds the new
config whole and swaps it in; a bad file keeps the old one running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import secrets
import signal
import tempfile
from collections import Counter
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from receiver.app import hangups
from receiver.app.sdnotify import SystemdNotify
from receiver.app.stores import OPEN_ERRORS, STORES, reason
from receiver.config import build
from receiver.config.coordinator import Asker, Coordinator, Looked, Reloaded, ReloadWarning
from receiver.config.model import Config, example_secrets_in_use
from receiver.config.yamlsource import Located
from receiver.core.clock import Clock, SystemClock
from receiver.core.errors import ConfigError, ConfigProblem, StartupError
from receiver.core.refresh import Refresh
from receiver.core.tasks import cancel
from receiver.delivery.channels import lost_summaries
from receiver.delivery.dispatch import Dispatcher
from receiver.escalation.codec import state_from_dict
from receiver.escalation.keys import contact_digest
from receiver.escalation.plan import EscalationStatus
from receiver.escalation.responder import ConfigDirectory, Responder
from receiver.escalation.unreached import lost_contacts, reload_findings
from receiver.heartbeats.service import Heartbeats
from receiver.incidents import cadence, follow
from receiver.incidents.desk import IncidentDesk
from receiver.incidents.service import Incidents
from receiver.ingest.regroup import regroup_line, regrouped
from receiver.maintenance.service import Maintenance
from receiver.notify.contacts import index_of, unsendable
from receiver.notify.notifier import AppriseNotifier, Notifier
from receiver.oncall.handoffs import HandoffNotices
from receiver.oncall.schedules import OnCallMemo
from receiver.oncall.service import OnCallService
from receiver.store import private_dir
from receiver.store.postgres.store import PostgresStore
from receiver.store.records import Shared, Waiting
from receiver.store.sqlite.owner import StoreOwner
from receiver.telemetry.logformat import fields
from receiver.telemetry.metrics import Metrics
from receiver.web.actions import act, add_link_routes
from receiver.web.api import get_incident, list_incidents
from receiver.web.auth import FailureThrottle
from receiver.web.errors import JsonErrorRunner
from receiver.web.feeds import (
    feed_calendar,
    revoke_schedule_feed,
    revoke_user_feed,
    schedule_feed,
    user_feed,
)
from receiver.web.health import healthy, last_reload, metrics, ready, reload
from receiver.web.heartbeats import heartbeat_arrived, list_heartbeats
from receiver.web.incidents import (
    add_responder,
    assign_role,
    change_severity,
    clear_role,
    declare_incident,
    post_note,
    reassign,
)
from receiver.web.learning import get_drill, get_postmortem, get_report, post_drill
from receiver.web.maintenance import add_window, delete_window, list_windows
from receiver.web.openapi import openapi
from receiver.web.schedules import (
    coverage_gaps,
    create_override,
    delete_override,
    list_overrides,
    schedule_calendar,
    team_on_call,
    user_calendar,
    who_is_on_call,
)
from receiver.web.services import SERVICES, Services, links_for
from receiver.web.ui.pages import add_routes as add_ui_routes
from receiver.web.webhook import BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT, THROTTLE, receive_alerts

log = logging.getLogger(__name__)
T = TypeVar("T")

GC_YOUNG_THRESHOLD = 100_000
# An escalation whose delayed contacts are still sent when due (escalation.engine).
WAITING = (EscalationStatus.ACTIVE, EscalationStatus.EXHAUSTED)
# Open incidents the start looks at for what the config does to them (Daemon._look_at_open).
START_LOOK_LIMIT = 10_000
SHUTDOWN_TIMEOUT = 10.0
# aiohttp's AppRunner keeps a connection that has not sent a whole request for an hour by
# default; this is web.run_app's default instead. It is also what bounds a client that sends
# its headers a byte at a time (aiohttp has no separate header timeout).
KEEPALIVE_TIMEOUT = 75.0


def build_web_app(
    services: Services, *, body_timeout: float = DEFAULT_BODY_TIMEOUT
) -> web.Application:
    # aiohttp refuses a body longer than client_max_size (413, web/errors.py answers it in
    # JSON): the API's bodies and the web page's forms. The webhook counts its own.
    app = web.Application(client_max_size=services.config.max_body_bytes)
    app[SERVICES] = services
    app[BODY_TIMEOUT] = body_timeout
    app[THROTTLE] = FailureThrottle()
    # Every route here is described in web/openapi.py (tests/test_openapi.py checks).
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_post("/api/v1/alerts", receive_alerts)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_post("/api/v1/incidents", declare_incident)
    app.router.add_get("/api/v1/incidents/{id}", get_incident)
    # The incident layer's routes first: `{action}` below would take /notes too.
    app.router.add_post("/api/v1/incidents/{id}/notes", post_note)
    app.router.add_post("/api/v1/incidents/{id}/reassign", reassign)
    app.router.add_post("/api/v1/incidents/{id}/responders", add_responder)
    app.router.add_put("/api/v1/incidents/{id}/severity", change_severity)
    app.router.add_put("/api/v1/incidents/{id}/roles/{role}", assign_role)
    app.router.add_delete("/api/v1/incidents/{id}/roles/{role}", clear_role)
    app.router.add_post("/api/v1/incidents/{id}/{action}", act)
    app.router.add_get("/api/v1/schedules/{name}.ics", schedule_calendar)
    app.router.add_get("/api/v1/schedules/{name}/overrides", list_overrides)
    app.router.add_post("/api/v1/schedules/{name}/overrides", create_override)
    app.router.add_delete("/api/v1/schedules/{name}/overrides/{id}", delete_override)
    app.router.add_get("/api/v1/schedules/{name}/oncall", who_is_on_call)
    app.router.add_get("/api/v1/schedules/{name}/gaps", coverage_gaps)
    app.router.add_get("/api/v1/teams/{name}/oncall", team_on_call)
    app.router.add_get("/api/v1/users/{name}.ics", user_calendar)
    app.router.add_get("/api/v1/users/{name}/feed", user_feed)
    app.router.add_delete("/api/v1/users/{name}/feed", revoke_user_feed)
    app.router.add_get("/api/v1/schedules/{name}/feed", schedule_feed)
    app.router.add_delete("/api/v1/schedules/{name}/feed", revoke_schedule_feed)
    app.router.add_get("/feeds/{token}.ics", feed_calendar)
    app.router.add_get("/api/v1/heartbeats", list_heartbeats)
    app.router.add_post("/api/v1/heartbeats/{name}", heartbeat_arrived)
    app.router.add_get("/api/v1/maintenance", list_windows)
    app.router.add_post("/api/v1/maintenance", add_window)
    app.router.add_delete("/api/v1/maintenance/{id}", delete_window)
    add_link_routes(app.router)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/-/reload", last_reload)
    app.router.add_get("/api/v1/incidents/{id}/postmortem", get_postmortem)
    app.router.add_get("/api/v1/reports", get_report)
    app.router.add_post("/api/v1/drills", post_drill)
    app.router.add_get("/api/v1/drills/{id}", get_drill)
    add_ui_routes(app.router)
    return app


def prepare_data_dir(path: Path) -> None:
    """Create the data directory and prove it takes writes before anything else uses it, so a
    failure names the directory instead of surfacing later as an SQLite error."""
    try:
        private_dir(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise StartupError(
            f"data directory {path.absolute()} is not writable: {exc.strerror or exc}"
        ) from exc


def with_link_secret(config: Config) -> Config:
    """The config with its link secret: the configured one, else one kept in the data dir so
    links survive restarts."""
    if config.link_secret:
        return config
    return replace(config, link_secret=_stored_secret(config))


def _stored_secret(config: Config) -> bytes:
    path = config.data_dir / "link-secret"
    if not path.exists():
        private_dir(config.data_dir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        metrics_: Metrics | None = None,
        notifier: Notifier | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        config_path: str | Path | None = None,
        migrate: bool = True,
        systemd: SystemdNotify | None = None,
        source: Located | None = None,
    ) -> None:
        """`source`: the document `config` was built from (build.load_located), for the file's
        warnings at start; without it (a Config built otherwise) the start checks none."""
        prepare_data_dir(config.data_dir)
        self.config_path = config_path
        # Under systemd (Type=notify): told when ackd is ready, reloads and stops.
        self.systemd = systemd or SystemdNotify(None)
        self._status = "starting"
        config = with_link_secret(config)
        # Every reload goes through it; the components below hear of each new config.
        self.coordinator = Coordinator(config, self._load)
        self._keepalive_timeout = keepalive_timeout
        self._body_timeout = body_timeout
        self.clock = clock or SystemClock()
        self.metrics = metrics_ or Metrics()
        self.metrics.config_loaded(True, self.clock.now().timestamp(),
                                   config.published_digest())
        self._store_kind = kind = STORES[config.store_kind]
        self.store = kind.make(
            config, migrate, lambda name, kind, url: index_of(
                url, name, kind, self.config.users, self.config.channels),
        )
        # One daemon per SQLite file; replicas share a PostgreSQL database.
        self.owner = None if kind.shared else StoreOwner(config.db_path)
        self.store.stats.on_commit.append(self.metrics.observe_commit)
        current = self.coordinator.current
        self.responder = Responder(self.store, self.clock, self.metrics, current)
        # Another replica may fire the stale check: reports are saved for it.
        self.responder.store_reports = kind.shared
        self.incidents = Incidents(
            self.store, self.clock, self.metrics, config, self.responder, self.responder.reports,
            shared=kind.shared,
        )
        settings = config.notifications
        self.notifier = notifier or AppriseNotifier(settings.workers, settings.timeout)
        self.dispatcher = Dispatcher(
            self.store, self.notifier, self.clock, self.metrics, current,
            self.responder.delivery_failed,
        )
        self.heartbeats = Heartbeats(
            self.store, self.clock, self.metrics, lambda: self.config, self.incidents)
        self.incidents.heartbeats = self.heartbeats.arrived
        self.maintenance = Maintenance(self.store, self.clock, lambda: self.config,
                                       self.responder.maintenance_changed)
        self.responder.windows = self.maintenance.windows
        self.responder.outbox_listeners.append(self.dispatcher.wake)
        if isinstance(self.store, PostgresStore):
            # What other replicas commit: a deadline armed earlier than this timer knows, a
            # page enqueued that this dispatcher may send.
            self.store.deadline_listeners.append(self.responder.scheduler.arm)
            # Each due step is tried first by one replica alive, the others a moment later.
            self.responder.scheduler.first_try = self.store.first_to_try
            self.store.outbox_listeners.append(self.dispatcher.wake)
        # What the API changes at run time, read again when another replica changed it.
        self._refresh = {Shared.MAINTENANCE: Refresh("maintenance windows", self.maintenance.load),
                         Shared.ONCALL: Refresh("on-call overrides", self._load_roster)}
        if isinstance(self.store, PostgresStore):
            self.store.change_listeners.append(lambda what: self._refresh[what]())
        self.handoffs = HandoffNotices(
            self.store, self.clock, self.notifier, self.responder.roster, current)
        self.responder.resolution_listeners.append(self.incidents.held.forget)
        self.responder.stale_listeners.append(self.incidents.held.forget)
        desk = IncidentDesk(self.store, self.clock, current, self.responder, self.metrics)
        self.services = Services(
            config=config,
            store=self.store,
            incidents=self.incidents,
            metrics=self.metrics,
            clock=self.clock,
            responder=self.responder,
            links=links_for(config),
            reload=self.try_reload,
            last_reload=lambda: self.reloaded,
            oncall=OnCallService(
                self.store, self.clock, self.responder.roster, current),
            heartbeats=self.heartbeats,
            maintenance=self.maintenance,
            desk=desk,
        )
        # A more urgent alert joining an open incident raises it as a person would.
        self.incidents.raise_severity = desk.set_severity
        self._count_exhaustions(config)
        self.coordinator.subscribe(
            self._count_exhaustions,
            self.incidents.use_config,
            self.services.use_config,
            lambda _: self.handoffs.replan(),  # another config: other handoffs, or none
            lambda _: self.heartbeats.rearm(),  # another `every`, other heartbeats
            self._maintenance_config,
            # Its memo of contact URLs holds their credentials: none a reload rotated away.
            lambda _: contact_digest.cache_clear(),
        )
        self._runner: JsonErrorRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._saving: asyncio.Task[None] | None = None
        # WATCHDOG=1 to systemd from this loop, from READY=1 until the stop has finished.
        self._watchdog: asyncio.Task[None] | None = None
        self._windows = config.maintenance
        # The document the running file was read into (at start, then Daemon._load's), until
        # the start or try_reload takes it for the file's warnings.
        self._loaded: Located | None = source
        self.port: int | None = None
        # The looks at what a config does to the open incidents, one at a time
        # (_look_at_open), and the digest of the one running.
        self._looking = asyncio.Lock()
        self._looking_at: str | None = None
        self._looking_by: Asker = "start"
        # The last reload that took, else the start's checks, for GET /-/reload
        # (web/health.py).
        self.reloaded: Reloaded | None = None
        self._warned: dict[str, Counter[str]] = {}

    def _count_exhaustions(self, config: Config) -> None:
        self.metrics.teams_and_severities(config.teams, (s.name for s in config.severities))

    @property
    def config(self) -> Config:
        """The running config (the coordinator's)."""
        return self.coordinator.current()

    async def start(self) -> None:
        """Start everything or nothing. On failure whatever did start is stopped again (its
        threads too: a live worker thread would keep the process from exiting) and the error
        propagates; a cause we can name is a StartupError of one line."""
        try:
            await self._start()
        except BaseException:
            try:
                await self.stop()
            except Exception:
                log.debug("stopping after a failed start failed too", exc_info=True)
            raise

    async def _start(self) -> None:
        # Before the store opens: a second daemon must not touch the first's leases.
        if self.owner is not None:
            self.owner.acquire()
        try:
            await self.store.open()
        except OPEN_ERRORS as exc:
            raise StartupError(
                f"cannot open the store {self._store_kind.describe(self.config)}: {reason(exc)}"
            ) from exc
        # Run-time on-call changes before anything escalates: a page goes to whoever they
        # put on call.
        await self._load_roster()
        # Deadlines that passed while ackd was down are due at once: they fire first.
        self.responder.scheduler.load(await self.store.deadlines())
        self.responder.scheduler.start()
        await self.heartbeats.load()
        await self.maintenance.load()
        self.heartbeats.timer.start()
        self.dispatcher.start()
        if self.responder.store_reports:
            self._saving = asyncio.create_task(
                self.responder.save_reports_every(), name="ackd-save-reports")
        await self.handoffs.start()
        app = build_web_app(self.services, body_timeout=self._body_timeout)
        self._runner = JsonErrorRunner(
            app, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None, handle_signals=False,
            keepalive_timeout=self._keepalive_timeout,
            # The webhook inflates a compressed body itself, with a bound (web/encoding.py).
            auto_decompress=False,
        )
        await self._runner.setup()
        host, port = self.config.listen_host, self.config.listen_port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {bind_failure(exc)}") from exc
        self.port = _bound_port(self._runner)
        self.services.ready = True
        # What check-config warns of, logged as a reload logs it; and the file may have
        # changed while ackd was down. GET /-/reload gives them until a reload takes: what
        # the last check of the running config found, which ackd_config_warnings counts.
        located, self._loaded = self._loaded, None
        checks = (None if located is None
                  else self._background(self._check_file(self.config, located)))
        digest = self.config.published_digest()
        look = self._background(self._look_at_open(self.config, at_start=True))
        self.reloaded = Reloaded(digest, digest, checks, look, at=self.clock.now(),
                                 by="start", look_by="start")
        # Everything built at start lives as long as the daemon: keep it out of the garbage
        # collector's full passes, which otherwise stall every connection at once (~40 ms).
        gc.freeze()
        # A webhook makes thousands of short-lived objects. Collecting the young generation
        # every 700 net allocations (the default) took 3.7% of the loop's time under the
        # benchmark's load, re-scanning objects about to be freed anyway; every 20,000, 1.6% of
        # ingest's instructions; every 100,000, too little to measure (and at most a few MiB
        # of young objects wait for it).
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        replica = (f", replica {self.store.replica}"
                   if isinstance(self.store, PostgresStore) else "")
        self._status = (f"listening on {self.config.listen_host}:{self.port}, store "
                        f"{self._store_kind.describe(self.config)}{replica}")
        log.info("ackd %s", self._status)
        self.systemd.ready(self._status)  # listening, the store open: /-/ready answers 200
        self._watchdog = asyncio.create_task(self.systemd.keep_alive(), name="ackd-watchdog")

    async def _load_roster(self) -> None:
        self.responder.roster.load(await self.store.write(
            lambda tx: tx.current_overrides(self.clock.now())))

    async def _look_at_open(self, config: Config, at_start: bool = False) -> Looked:
        """A WARNING for each schedule, layer, lead, user or channel the open incidents'
        policies name and `config` lacks (escalation/unreached.py), one for the open
        incidents whose alerts `config` groups elsewhere (ingest/regroup.py), and one for
        each recipient `config` lacks of what still waits to be sent: a delayed contact, a
        follow-up or status reminder of the incident layer, a queued notification
        (_waiting_warnings). A reload never
        refuses a file for them (an incident may stay open for days), but the operator hears
        of them now, not when a step pages nobody or an alert pages twice. In the background
        after each reload and start, the decoding and routing on a thread of their own: with
        100,000 open incidents they take seconds, which held /-/ready (12.7 s against 1.9 s)
        and the overdue steps behind them. At start, only up to START_LOOK_LIMIT open
        incidents: past it, even in the background, the look cost 500 MiB of RSS and made
        100,000 overdue steps seconds late (bench/run.py's restart and timer legs): the look
        is `skipped`, and the next reload looks (an unchanged file's too, try_reload).

        One look at a time (`_looking`): a reload while a look runs swaps its config in at
        once, and its look follows the running one's (a thread cannot be stopped, and two
        at 100,000 open incidents would share the cores and double the memory); a look
        whose config a later reload replaced, before it began or while it ran, is
        `superseded`: its findings are about a config no longer running, so they are
        neither logged as warnings nor counted (one INFO line says so)."""
        async with self._looking:
            if config is not self.config:
                log.info("not looking at the open incidents under config hash %s: a later"
                         " reload swapped in %s, whose look follows",
                         config.published_digest()[:12], self.config.published_digest()[:12],
                         extra=fields("config_look_superseded"))
                return Looked("superseded")
            self._looking_at = config.published_digest()
            self._looking_by = "start" if at_start else "reload"
            try:
                return await self._look(config, at_start)
            finally:
                self._looking_at = None

    async def _look(self, config: Config, at_start: bool) -> Looked:
        try:
            if at_start:
                count = sum(n for *_, n in await self.store.count_open())
                if count > START_LOOK_LIMIT:
                    why = (f"{count} open incident(s) at start, more than the"
                           f" {START_LOOK_LIMIT} the start looks at: the next reload (SIGHUP,"
                           " ackd reload) looks at them")
                    log.info("not looking at what the config does to the open incidents: %s",
                             why, extra=fields("config_look_skipped"))
                    return Looked("skipped", why=why)
            escalations = await self.store.open_escalations()
            alerts = await self.store.open_firing_alerts()
            contacts = await self.store.open_contacts()
            waiting = await self.store.waiting_messages()
            directory = ConfigDirectory(config, OnCallMemo(), self.responder.roster)
            found = await asyncio.to_thread(_open_warnings, escalations, alerts, contacts,
                                            config, directory)
            found += await asyncio.to_thread(_waiting_warnings, waiting, config)
        except Exception as exc:  # only a warning is lost: the reload or start goes on
            failed = ReloadWarning("unchecked", config.source, None, "(open incidents)",
                                   f"cannot look at the open incidents: {exc}")
            log.warning("%s", failed.message, extra=fields(failed.kind))
            if config is self.config:  # what the previous config's look found holds no more
                self._count_warnings("open_incidents", [failed])
            return Looked("failed")
        if config is not self.config:
            log.info("the look at the open incidents under config hash %s ended after a later"
                     " reload swapped in %s: its %d finding(s) are not given, the look under"
                     " the running config follows", config.published_digest()[:12],
                     self.config.published_digest()[:12], len(found),
                     extra=fields("config_look_superseded"))
            return Looked("superseded")
        for warning in found:
            log.warning("%s", warning.message, extra=fields(warning.kind))
        self._count_warnings("open_incidents", found)
        return Looked("checked", tuple(found))

    def _count_warnings(self, source: str, found: list[ReloadWarning]) -> None:
        """ackd_config_warnings: the running config's, its file's (`file`) and what it does
        to the open incidents (`open_incidents`), each replaced by its latest check."""
        self._warned[source] = Counter(warning.kind for warning in found)
        self.metrics.config_warnings(sum(self._warned.values(), Counter()))

    async def _check_file(
        self, config: Config, located: Located | None
    ) -> list[ReloadWarning]:
        """The warnings `ackd check-config` gives for the file ackd starts with or reloads
        (teams no route leads to, holes in the coming weeks' on-call), logged and returned.
        On a thread: the schedules' weeks take ~0.1 s for config.example.yaml, more for
        hourly rotations."""
        try:
            found = await asyncio.to_thread(build.warnings, config, self.clock.now(), located)
        except Exception as exc:  # a check broken by an odd value: said, not raised
            found = [ReloadWarning("unchecked", config.source, None, "(file)",
                                   f"cannot check for warnings: {type(exc).__name__}: {exc}")]
        for warning in found:
            log.warning("%s", warning, extra=fields(warning.kind))
        if config is self.config:  # not a file a later reload replaced meanwhile
            self._count_warnings("file", found)
        return found

    def _maintenance_config(self, config: Config) -> None:
        """Held incidents look again when the file's windows changed: a window it shortened
        or dropped lets go of what it held."""
        if config.maintenance != self._windows:
            self._windows = config.maintenance
            self._background(self.responder.maintenance_changed())

    def _background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # reloaded outside the daemon's loop (a test): nothing is held
            work.close()
            return None
        task = loop.create_task(work)
        self._tasks.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        self.systemd.stopping()
        self.services.draining = True
        if self._runner is not None:
            # Stops accepting, then waits up to SHUTDOWN_TIMEOUT for in-flight requests.
            await self._runner.cleanup()
        self.incidents.close()
        for refresh in self._refresh.values():
            await refresh.stop()
        await self.responder.scheduler.stop()
        await self.handoffs.stop()
        await self.heartbeats.timer.stop()
        await self.dispatcher.stop()
        await self.notifier.close()
        if self._saving is not None:
            await cancel(self._saving)
            await self.responder.save_reports()  # the last second's, for the other replicas
        try:
            await self.store.close()
        finally:
            if self.owner is not None:
                self.owner.release()
            await cancel(self._watchdog)
            self._watchdog = None
        log.info("ackd stopped")

    def reload(self, path: str | Path | None = None) -> bool:
        """SIGHUP's reload: True if the file was swapped in."""
        return isinstance(self.try_reload(path), Reloaded)

    def try_reload(self, path: str | Path | None = None) -> ConfigError | Reloaded:
        """Load `path` (default: the file ackd started with) and swap it in whole; a refused
        file keeps the running config and is returned as the ConfigError naming each problem
        (file, line, key), for the log and for POST /-/reload's answer. A file swapped in
        gives what it changed and the looks that follow the swap (config.coordinator's
        Reloaded): the file's warnings, and what it does to the open incidents (in the
        background: with 100,000 open incidents that takes seconds), both logged. A file
        whose published digest is the running config's is not swapped in and the open
        incidents are not looked at again (unless the start skipped its look: _look), but its
        own warnings are given as check-config would give them now: a coverage gap of a
        schedule comes nearer as time passes."""
        path = path if path is not None else self.config_path
        before = self.config.published_digest()
        # systemd hears of reloads between READY=1 and STOPPING=1 only.
        running = self.services.ready and not self.services.draining
        if running:
            self.systemd.reloading()
        refused: ConfigError | None
        if path is None:
            refused = ConfigError(
                [ConfigProblem("(none)", None, "(file)", "ackd was started without a file")])
        else:
            refused = self.coordinator.reload(path)
        after = self.config.published_digest()
        self.metrics.config_loaded(refused is None, self.clock.now().timestamp(), after)
        config, located, self._loaded = self.config, self._loaded, None
        previous = self.reloaded
        # The running config's look, the reload's that swapped it in or the start's: an
        # unchanged reload's own (none when ackd ran outside its loop, in a test)
        look, look_by = ((previous.look, previous.look_by)
                         if previous is not None and previous.after == after
                         else (None, "reload"))
        _log_reload(path, refused, before, after, _skipped(look))
        outcome = "configuration reloaded" if refused is None else "reload refused, see the log"
        if running:
            self.systemd.ready(f"{self._status}; {outcome}")
        if refused is not None:
            return refused
        checks = self._background(self._check_file(config, located))
        behind, behind_by = self._looking_at, self._looking_by
        if after == before:  # the running config, not swapped in (config.coordinator): the
            # file's text is the running one's, so its warnings are the running config's;
            # the open incidents' are those of the look the reload that swapped it in (or
            # the start) began, running or done (ackd_config_warnings counts them until
            # another look ends): an unchanged reload must not hide them from GET /-/reload
            if _skipped(look):  # the start did not look (too many open incidents): its log
                # line and answer said the next reload would
                look, look_by = self._background(self._look_at_open(config)), "unchanged"
            self.reloaded = Reloaded(before, after, checks, look, at=self.clock.now(),
                                     look_by=look_by)
        else:
            if behind is not None:
                log.info("configuration %s swapped in while the look at the open incidents"
                         " under %s runs: its own look follows that one", after[:12],
                         behind[:12], extra=fields("config_look_queued"))
            self.reloaded = Reloaded(before, after, checks,
                                     self._background(self._look_at_open(config)),
                                     behind=behind, at=self.clock.now(),
                                     behind_by=behind_by)
        return self.reloaded

    def _load(self, path: str | Path) -> Config:
        """A reload's file, built whole: where ackd listens and keeps its data stay as they
        are (they need a restart); secrets that config.example.yaml publishes are refused."""
        located, fresh = build.load_located(path)
        running = self.config
        kept = with_link_secret(
            replace(
                fresh,
                listen_host=running.listen_host,
                listen_port=running.listen_port,
                data_dir=running.data_dir,
                db_file=running.db_file,
                postgres=running.postgres,  # the store a daemon opened is the one it keeps
            )
        )
        refused = example_secrets_in_use(kept)
        if refused is not None:
            raise ConfigError([ConfigProblem(str(path), None, "(secrets)", refused)])
        self._loaded = located  # for the reload's warnings (try_reload), the lines it read
        return kept


def _log_reload(
    path: str | Path | None, refused: ConfigError | None, before: str, after: str,
    skipped: bool,
) -> None:
    """A reload's log line; `skipped`: the running config's look was the start's, skipped."""
    if refused is not None:
        log.error("reload refused, keeping the running config:\n%s", refused)
    elif after == before and skipped:
        log.info("configuration reloaded from %s: unchanged (config hash %s), the running"
                 " config is kept; the start did not look at the open incidents, this reload"
                 " does", path, after[:12], extra=fields("config_unchanged"))
    elif after == before:
        log.info("configuration reloaded from %s: unchanged (config hash %s), the running"
                 " config is kept and the open incidents are not looked at again", path,
                 after[:12], extra=fields("config_unchanged"))
    else:
        log.info("configuration reloaded from %s: changed (config hash %s -> %s)", path,
                 before[:12], after[:12], extra=fields("config_changed"))


def _skipped(look: asyncio.Future[Looked] | None) -> bool:
    """The look ended `skipped` (the start's, past START_LOOK_LIMIT)."""
    return (look is not None and look.done() and not look.cancelled()
            and look.exception() is None and look.result().status == "skipped")


def bind_failure(exc: OSError) -> str:
    """Why a listening socket could not be opened, in words that say what to do."""
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another ackd? choose a free port with --listen)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return None


async def serve(
    config: Config, config_path: str | Path, *, migrate: bool = True,
    source: Located | None = None,
) -> int:
    """Run until SIGTERM or SIGINT. A start that fails raises (StartupError for the causes we
    can name) after stopping whatever had started. `source`: the document the file was read
    into, whose warnings (check-config's) the start logs."""
    refused = example_secrets_in_use(config)
    if refused is not None:
        raise StartupError(refused)
    systemd = SystemdNotify.from_environment()
    systemd.status("starting: opening the store")
    daemon = Daemon(config, config_path=config_path, migrate=migrate, systemd=systemd,
                    source=source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            log.warning("second interrupt: exiting now")
            os._exit(1)
        stop.set()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    try:
        await daemon.start()
        if hangups.take():  # asked before the handler above was installed
            daemon.reload()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await daemon.stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        hangups.defer()  # a reload asked while stopping must not end the process either
    return 0


def _open_warnings(
    escalations: list[tuple[int, dict[str, Any]]],
    alerts: list[tuple[int, str, dict[str, str]]],
    contacts: list[tuple[int, str]],
    config: Config,
    directory: ConfigDirectory,
) -> list[ReloadWarning]:
    """What `config` does to the open incidents (Daemon._look_at_open), each warning with the
    incidents it is about."""
    where = config.source, None, "(open incidents)"
    moved = regrouped(alerts, config.route)
    found = [ReloadWarning("config_regrouped", *where, regroup_line(moved), tuple(moved))
             ] if moved else []
    states = [(number, state_from_dict(raw)) for number, raw in escalations]
    found += [ReloadWarning("config_unreached", *where, line, tuple(numbers))
              for line, numbers in reload_findings(
                  [(number, state.policy) for number, state in states], directory)]
    runs = {number: state.run for number, state in states if state.status in WAITING}
    return found + [ReloadWarning("config_contact_lost", *where, line, tuple(numbers))
                    for line, numbers in lost_contacts(contacts, runs, directory)]


def _waiting_warnings(waiting: Waiting, config: Config) -> list[ReloadWarning]:
    """What `config` does to the messages still to go that name their recipient: the
    incident layer's delayed ones (a follow-up's person or contact gone, a status reminder's
    person gone: `config_message_lost`) and the queued notifications whose contact it
    removes or gives another URL (`config_queued_lost`: they fail at their turn, never go to
    another URL), and so the rate limit's held-back summaries (`config_queued_lost` too: they
    are dropped at their turn), each warning with the incidents it is about."""
    where = config.source, None, "(open incidents)"
    tokens = frozenset(p.name for p in config.api_tokens.values() if not p.is_user)
    lost = (follow.lost_at_reload(waiting.follow_ups, config.users)
            + cadence.unreminded(waiting.reminders, config.severity, frozenset(config.users),
                                 tokens))
    queued = [(number, m.recipient, m.recipient_kind, m.contact, m.url_digest)
              for number, m in waiting.queued]
    return ([ReloadWarning("config_message_lost", *where, line, tuple(numbers))
             for line, numbers in lost]
            + [ReloadWarning("config_queued_lost", *where, line, tuple(numbers))
               for line, numbers in unsendable(queued, config.users, config.channels)
               + lost_summaries(waiting.summaries, config.users, config.channels)])
