"""The commands that work from a config file on this machine: check-config, routes test,
oncall from the file's plan, migrate, backup; and serve, which runs the daemon, and sink.

They import the config builder (and, through a config's contacts, Apprise); only serve and
sink import the daemon (tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import queue
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path

from receiver.config import build as config_module
from receiver.config.build.server import parse_listen
from receiver.config.model import Config
from receiver.core.errors import ConfigError, StartupError, StoreUnavailable
from receiver.oncall.schedules import next_change, on_call
from receiver.routing.tree import describe, route


def load(path: str) -> Config | None:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def overrides(args: argparse.Namespace) -> config_module.Overrides:
    """The flags of serve (and of the commands that share some) over the file's keys."""
    return config_module.Overrides(getattr(args, "listen", None), getattr(args, "data_dir", None))


def serve(args: argparse.Namespace) -> int:
    # The daemon (its stores, aiohttp's server, the notifier) and uvloop: serve's alone.
    import uvloop

    from receiver.app import daemon

    try:
        # The document too: the start logs the file's warnings from it, never reading the
        # file twice (it may be a pipe).
        located, config = config_module.load_located(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        config = overrides(args).apply(config)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        with _logging_off_the_loop(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            # uvloop: libuv's event loop and transports in C, the same asyncio API.
            return runner.run(daemon.serve(config, args.config, migrate=args.migrate,
                                           source=located))
    except StartupError as exc:
        print(f"ackd: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        # The store could not be closed safely (SqliteStore.close): leave without closing it,
        # as the interpreter's exit would; what was committed is in the WAL.
        print(f"ackd: stopped without closing the store: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)


def migrate(args: argparse.Namespace) -> int:
    # The stores (aiosqlite, asyncpg), for this command and serve alone.
    from receiver.app import stores
    from receiver.notify.contacts import index_of

    config = load(args.config)
    if config is None:
        return 1
    config = overrides(args).apply(config)
    found = config  # the contacts that migration 4 matches older outbox rows against

    def contact_index(name: str, kind: str, url: str) -> int | None:
        return index_of(url, name, kind, found.users, found.channels)

    try:
        store, before, after = asyncio.run(stores.migrate(config, contact_index))
    except (StartupError, OSError, sqlite3.Error) as exc:
        print(f"ackd migrate: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{store}: at schema migration {after}, nothing to do")
    else:
        print(f"{store}: migrated from schema migration {before} to {after}")
    return 0


def backup(args: argparse.Namespace) -> int:
    from receiver.store.sqlite import backup as sqlite_backup  # for this command alone

    config = load(args.config)
    if config is None:
        return 1
    config = overrides(args).apply(config)
    if config.postgres is not None:
        # A SQLite file left in data_dir from before the move would be copied, stale, and
        # a cron backup would say "backed up" every night.
        print("ackd backup: the store is PostgreSQL (storage.postgres): back it up with"
              " pg_dump; ackd backup copies the embedded SQLite store only", file=sys.stderr)
        return 1
    try:
        done = sqlite_backup.backup(config.db_path, Path(args.path))
    except sqlite_backup.BackupError as exc:
        print(f"ackd backup: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {config.db_path} to {done.path}: {done.incidents} incidents,"
          f" {done.size / 1024:,.0f} KiB")
    return 0


class _Handoff(QueueHandler):
    """Queues the record as it is, to be formatted once, on the log thread. The stdlib's
    handler formats and copies it first, on the loop, so that arguments changed after the call
    cannot change the line; ours are numbers, strings and exceptions, which do not change."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        """As Handler.handle and QueueHandler.emit: the record through this handler's filters
        (none in ackd) and onto the queue, without the handler's I/O lock around the put (the
        queue takes its own) and the calls between: 37,100 instructions a record on the loop
        instead of 41,300."""
        if self.filters and not self.filter(record):
            return False
        self.queue.put_nowait(record)
        return True


@contextmanager
def _logging_off_the_loop() -> Iterator[None]:
    """The daemon's log lines are written by a thread of their own: a slow stderr (a pipe to a
    busy journald) must not stall the event loop, and with it every webhook.

    Records are made without what neither format prints (`logformat`: time, level, logger,
    message and the record's fields): the calling function and line, which logging finds by
    walking the stack, and the thread's and the process's ids and names (the switches the
    logging docs give for this, under Optimization). A record made on the loop cost 59,000
    instructions with them and 42,000 without; the ingest mix logs half a line a webhook."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, *handlers, respect_handler_level=True)
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(_Handoff(records))
    switches = _record_switches(None, False, False, False)
    listener.start()
    try:
        yield
    finally:
        listener.stop()  # writes what is still queued
        root.handlers[:] = handlers
        _record_switches(*switches)


def _record_switches(
    srcfile: str | None, threads: bool, processes: bool, multiprocessing: bool
) -> tuple[str | None, bool, bool, bool]:
    """Set what every LogRecord looks up as it is made; the settings it replaced."""
    before = (logging._srcfile, logging.logThreads, logging.logProcesses,
              logging.logMultiprocessing)
    logging._srcfile = srcfile
    logging.logThreads, logging.logProcesses = threads, processes
    logging.logMultiprocessing = multiprocessing
    return before


def check_config(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            config = config_module.check(file, overrides(args))
        except ConfigError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            print(f"{file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        else:
            # Holes in the coming weeks' on-call, and teams nothing reaches, are worth a
            # look, not a failed deploy.
            try:
                gaps = config_module.warnings(config, args.since or datetime.now(UTC))
            except OverflowError:
                print(f"--since: {args.since.isoformat()} is too far from now for the "
                      "schedules' calendar", file=sys.stderr)
                return 2
            for gap in gaps:
                print(gap, file=sys.stderr)
            print(f"{file}: OK" + (f", {len(gaps)} warning(s)" if gaps else ""))
    return 1 if failed else 0


def routes_test(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config is None:
        return 1
    labels: dict[str, str] = {}
    for pair in args.labels:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            print(f"not a label: {pair!r} (use name=value)", file=sys.stderr)
            return 2
        labels[name] = value.strip('"')
    print(describe(route(config.route, labels)))
    return 0


def oncall_planned(args: argparse.Namespace, at: datetime) -> int:
    """Who the config file's plan puts on call, without the running ackd's overrides."""
    config = load(args.config)
    if config is None:
        return 1
    team = config.teams.get(args.team)
    if team is None:
        print(f"unknown team {args.team!r}; teams: {', '.join(config.teams)}", file=sys.stderr)
        return 2
    if team.schedule is None:
        print(f"team {team.name!r} has no on-call schedule", file=sys.stderr)
        return 1
    schedule = config.schedules[team.schedule]
    print(f"{team.name} (schedule {schedule.name}, {schedule.tz.key}) at {at.isoformat()}:")
    for layer in schedule.layers:
        try:
            who = on_call(schedule, layer.name, at) or "nobody"
            until = next_change(schedule, layer.name, at)
            when = f"until {until.astimezone(schedule.tz).isoformat()}" if until else "for good"
        except OverflowError:
            print(f"--at: {at.isoformat()} is too far from now for the schedule's calendar",
                  file=sys.stderr)
            return 2
        print(f"  {layer.name:<10} {who:<12} {when}")
    print("(the config's plan: give --url or ACKD_URL to include run-time overrides)",
          file=sys.stderr)
    return 0


def sink(args: argparse.Namespace) -> int:
    from receiver.cli import sink as printer  # aiohttp's server, for this command alone

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return 2
    from receiver.app.daemon import bind_failure

    try:
        asyncio.run(printer.run(host, port))
    except OSError as exc:
        print(f"ackd sink: cannot listen on {host}:{port}: {bind_failure(exc)}", file=sys.stderr)
        return 1
    return 0

