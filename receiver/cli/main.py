"""The `ackd` command line. It only builds a Config and calls into the daemon or the API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import queue
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uvloop

from receiver.app import hangups
from receiver.cli import learning, respond
from receiver.cli.client import ApiError, Client
from receiver.config import build as config_module
from receiver.config.build.server import parse_listen
from receiver.config.model import Config
from receiver.core.errors import ConfigError, StartupError, StoreUnavailable
from receiver.core.model import Action
from receiver.core.oneline import EscapeArgs
from receiver.oncall.schedules import next_change, on_call
from receiver.routing.tree import describe, route
from receiver.telemetry.logformat import FORMATS, formatter

log = logging.getLogger("ackd")

# What `ackd --help` says: written for the person at the terminal, not for developers.
USAGE = """\
ackd receives Prometheus Alertmanager's webhooks, pages the owning team's on-call person,
escalates until somebody acknowledges, and measures how long that took.

Start the daemon with `ackd serve --config FILE`; `ackd COMMAND --help` explains each command.
"""
EPILOG = """\
The commands that act on incidents (ack, resolve, snooze, unack, incidents) talk to a running
ackd: they read its address from ACKD_URL (default http://127.0.0.1:9095) and an API token
from ACKD_API_TOKEN (one of the config's api.tokens; with config.example.yaml, change-me-too),
or take --url and --token.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ackd", description=USAGE, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ackd {_version()}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the daemon",
        description="Run the daemon: take Alertmanager's webhooks, escalate, deliver pages. "
        "SIGHUP or POST /-/reload (with an API token) reloads the config; SIGTERM or Ctrl-C "
        "stops it gracefully.",
    )
    serve.add_argument("--config", required=True, help="YAML configuration file")
    serve.add_argument("--listen", help="HOST:PORT, overrides the file's `listen`")
    serve.add_argument("--data-dir", help="directory of the store, overrides `data_dir`")
    serve.add_argument(
        "--no-migrate", dest="migrate", action="store_false",
        help="do not migrate the store's schema at start: refuse to start on a store that "
        "`ackd migrate` has not brought up to this version",
    )
    serve.add_argument(
        "--log-format", choices=FORMATS, default="text",
        help="text (for people, the default) or json (one object a line: time, level, "
        "logger, message, and event, incident and team where the line is about one)",
    )

    backup = sub.add_parser(
        "backup", help="copy the store to PATH, consistently, while ackd runs or not",
        description="Copy the store to PATH with SQLite's online backup API: the database as "
        "of one commit, taken beside a running ackd without holding it up. Restoring is in "
        "the README (Backup and restore).",
    )
    backup.add_argument("path", help="the file to write (replaced whole once complete)")
    backup.add_argument("--config", required=True, help="the config whose store to copy")
    backup.add_argument("--data-dir", help="directory of the store, overrides `data_dir`")

    migrate = sub.add_parser(
        "migrate", help="bring the store's schema up to this version, then exit",
        description="Apply the schema migrations this version of ackd needs to the config's "
        "store (the SQLite file in data_dir, or the PostgreSQL database of storage.postgres), "
        "then exit: for a deploy pipeline, before the new version starts. `ackd serve` does "
        "the same at start unless given --no-migrate. Safe beside running replicas: each "
        "migration is applied once, and migrations only add.",
    )
    migrate.add_argument("--config", required=True, help="the config whose store to migrate")
    migrate.add_argument("--data-dir", help="directory of the store, overrides `data_dir`")

    check = sub.add_parser(
        "check-config", help="validate configuration files (exit 1 on errors)",
        description="Validate configuration files: every problem, with file, line and key. "
        "Exit 1 if any file has one; run it in CI before a config is merged. Each file is "
        "checked as `ackd serve` would run it: with the environment's ${VARIABLES}, the "
        "files its *_file keys name, and the --listen and --data-dir given here as serve "
        "would be given them (a problem in a flag names the flag; one in a value a variable "
        "set names the variable). A schedule layer with nobody on call for part of the next "
        "4 weeks is a warning (exit 0).",
    )
    check.add_argument("files", nargs="+")
    check.add_argument("--listen", help="HOST:PORT, as `ackd serve --listen` would be given")
    check.add_argument("--data-dir", help="as `ackd serve --data-dir` would be given")
    check.add_argument(
        "--since", type=_iso_instant, metavar="ISO",
        help="look for on-call gaps from this time (default: now); without a zone, UTC",
    )

    routes = sub.add_parser(
        "routes", help="route tree tools",
        description="Try the config's route tree: `ackd routes test` shows where labels go.",
    )
    routes_sub = routes.add_subparsers(dest="routes_command", required=True)
    test = routes_sub.add_parser(
        "test", help="show where a label set is routed",
        description="Show the route, team, severity and policy an alert with these labels "
        "gets, as the running daemon would route it.",
    )
    test.add_argument("--config", required=True)
    test.add_argument("labels", nargs="+", metavar="name=value")

    oncall = sub.add_parser(
        "oncall", help="who is on call for a team, per layer",
        description="Who is on call for a team in each layer of its schedule, and until when.",
    )
    oncall.add_argument("team")
    oncall.add_argument("--config", help="the config file: its plan alone, when no --url")
    oncall.add_argument("--at", help="ISO time (default: now); without a zone, UTC")
    oncall.add_argument(
        "--url", default=os.environ.get("ACKD_URL"),
        help="a running ackd (env ACKD_URL): its answer includes run-time overrides and "
        "swaps, and needs no config file; without it, the --config file's plan alone",
    )
    oncall.add_argument("--token", default=os.environ.get("ACKD_API_TOKEN", ""),
                        help="an API token (env ACKD_API_TOKEN)")

    override = sub.add_parser(
        "override", help="change who is on call at run time: overrides and swaps",
        description="Change who is on call without editing the config: a person covers a "
        "time range (`add`), two people swap shifts (`swap`); `list` and `delete` them. "
        "Kept by the running ackd across restarts and reloads; times are ISO 8601, local to "
        "the schedule's zone when they carry no offset.", epilog=EPILOG,
    )
    override_sub = override.add_subparsers(dest="override_command", required=True)
    listed = override_sub.add_parser("list", help="the run-time overrides not yet ended",
                                     description="List a schedule's run-time overrides.")
    listed.add_argument("schedule")
    add = override_sub.add_parser(
        "add", help="USER is on call from --from to --to",
        description="USER is on call from --from to --to: in --layer (default: every layer), "
        "in place of --replaces (default: whoever is on call). 'Take my shift' is "
        "--replaces ME.",
    )
    add.add_argument("schedule")
    add.add_argument("user")
    add.add_argument("--from", dest="start", required=True, help="ISO time")
    add.add_argument("--to", dest="end", required=True, help="ISO time")
    add.add_argument("--layer")
    add.add_argument("--replaces", help="only in place of this person")
    add.add_argument("--note", default="")
    swap = override_sub.add_parser(
        "swap", help="two people swap shifts",
        description="USER1's shift FROM1..TO1 goes to USER2, and USER2's FROM2..TO2 to USER1.",
    )
    swap.add_argument("schedule")
    for n in ("1", "2"):
        swap.add_argument(f"user{n}", metavar=f"USER{n}")
        swap.add_argument(f"from{n}", metavar=f"FROM{n}")
        swap.add_argument(f"to{n}", metavar=f"TO{n}")
    swap.add_argument("--layer")
    swap.add_argument("--note", default="")
    delete = override_sub.add_parser("delete", help="delete one (a swap's leg: the swap)",
                                     description="Delete a run-time override by its number.")
    delete.add_argument("schedule")
    delete.add_argument("id", type=int)
    for each in (listed, add, swap, delete):
        _api_flags(each)

    feed = sub.add_parser(
        "feed", help="the address of an on-call calendar to subscribe to",
        description="Print the signed address of a person's (`user NAME`) or a schedule's "
        "(`schedule NAME`) on-call calendar. A calendar app (Google Calendar, Outlook, Apple "
        "Calendar) subscribes to it with no token. --revoke gives a new address and stops "
        "every earlier one (a person their own feed; admins any).", epilog=EPILOG,
    )
    feed.add_argument("kind", choices=("user", "schedule"))
    feed.add_argument("name")
    feed.add_argument("--revoke", action="store_true",
                      help="a new address; every earlier one stops")
    _api_flags(feed)

    for name, text in ACTIONS.items():
        action = sub.add_parser(name.value, help=text, description=f"{text.capitalize()}.",
                                epilog=EPILOG)
        action.add_argument("incident", type=int, help="its number, as `ackd incidents` shows")
        _api_flags(action)
        if name == "snooze":
            action.add_argument("--for", dest="length", required=True, help="e.g. 30m, 2h")
    sink = sub.add_parser(
        "sink", help="print the pages sent to 127.0.0.1:9099 (the example's contacts)",
        description="Listen on a local address and print every page posted to it. "
        "config.example.yaml pages people at json://127.0.0.1:9099/NAME: run this beside "
        "`make run` to watch the pages arrive. Ctrl-C stops it.",
    )
    sink.add_argument("--listen", default="127.0.0.1:9099", help="HOST:PORT (127.0.0.1:9099)")
    listing = sub.add_parser(
        "incidents", help="list incidents (newest first)",
        description="List incidents, newest first, one JSON object a line.", epilog=EPILOG,
    )
    listing.add_argument("--state", help="open, triggered, acknowledged or resolved")
    listing.add_argument("--team")
    listing.add_argument("--severity")
    _api_flags(listing)
    learning.add_commands(sub, _api_flags, EPILOG)
    beats = sub.add_parser(
        "heartbeats", help="list heartbeats (dead man's switches) and when each last arrived",
        description="List the configured heartbeats: state (ok, waiting, late), last arrival, "
        "when it is late without one, and the incident open for it.", epilog=EPILOG,
    )
    _api_flags(beats)
    reload = sub.add_parser(
        "reload", help="reload the running ackd's config file (exit 1 if it is refused)",
        description="Ask the running ackd to read its config file again (POST /-/reload, a "
        "token of scope admin), as SIGHUP does. Prints whether the config changed and every "
        "warning the reload found, with file, line and key (the file's own, as check-config "
        "warns, and what it does to the open incidents); exit 0. A refused file is kept out, "
        "the running config stays, its problems are printed: exit 1.", epilog=EPILOG,
    )
    _api_flags(reload)
    _maintenance_parser(sub)
    respond.add_parsers(sub, _api_flags, EPILOG)  # each sets its own `run`
    return parser


def _maintenance_parser(sub: Any) -> None:
    windows = sub.add_parser(
        "maintenance", help="maintenance windows: add, list, delete",
        description="Maintenance windows: while one covers an incident (its team, or every "
        "firing alert matching its matchers), alerts are recorded and grouped but nobody is "
        "paged; each held page is on the incident's timeline. When it ends, what still fires "
        "escalates from its first step.", epilog=EPILOG,
    )
    commands = windows.add_subparsers(dest="maintenance_command", required=True)
    add = commands.add_parser("add", help="open a window (now, or from --start)",
                              epilog=EPILOG)
    add.add_argument("--team", help="the team whose incidents it holds")
    add.add_argument("--matcher", action="append", default=[], dest="matchers",
                     metavar="MATCHER", help="e.g. 'cluster=\"eu1\"' (repeat: all must match)")
    add.add_argument("--start", help="ISO time with a zone (default: now)")
    length = add.add_mutually_exclusive_group(required=True)
    length.add_argument("--end", help="ISO time with a zone")
    length.add_argument("--for", dest="length", help="a duration, e.g. 2h")
    add.add_argument("--comment", default="")
    _api_flags(add)
    listing = commands.add_parser("list", help="windows active or to come", epilog=EPILOG)
    _api_flags(listing)
    delete = commands.add_parser("delete", help="end a window made through the API now",
                                 epilog=EPILOG)
    delete.add_argument("id", type=int)
    _api_flags(delete)


ACTIONS = {
    Action.ACK: "acknowledge an incident",
    Action.RESOLVE: "resolve an incident",
    Action.SNOOZE: "snooze an incident",
    Action.UNACK: "take back an acknowledgement (escalation starts again)",
}


def _api_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("ACKD_URL", "http://127.0.0.1:9095"),
        help="ackd's address (env ACKD_URL)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("ACKD_API_TOKEN", ""),
        help="an API token from the config (env ACKD_API_TOKEN); its name is the actor",
    )


def _version() -> str:
    try:
        return version("ackd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        hangups.restore()  # held only for the daemon's reload (receiver.app.hangups)
    logging.basicConfig(level=args.log_level.upper())
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(getattr(args, "log_format", "text")))
        handler.addFilter(EscapeArgs())  # outside text cannot start a log line of its own
    command = {
        "serve": _serve, "backup": _backup, "migrate": _migrate, "check-config": _check_config,
        "routes": _routes_test, "oncall": _oncall, "incidents": _incidents, "sink": _sink,
        "override": _override, "feed": _with_token(_feed),
        "heartbeats": _heartbeats, "maintenance": _maintenance, "reload": _reload,
        **{action.value: _act for action in ACTIONS},
        "postmortem": _with_token(learning.run_postmortem),
        "report": _with_token(learning.run_report),
        "drill": _with_token(learning.run_drill),
    }
    run = command.get(args.command) or args.run
    try:
        result: int = run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`ackd oncall ... | head -1`), having read what it wanted: no
        # traceback, and stdout on /dev/null so the interpreter's last flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


def _load(path: str) -> Config | None:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _overrides(args: argparse.Namespace) -> config_module.Overrides:
    """The flags of serve (and of the commands that share some) over the file's keys."""
    return config_module.Overrides(getattr(args, "listen", None), getattr(args, "data_dir", None))


def _serve(args: argparse.Namespace) -> int:
    from receiver.app.daemon import serve

    try:
        # The document too: the start logs the file's warnings from it, never reading the
        # file twice (it may be a pipe).
        located, config = config_module.load_located(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        config = _overrides(args).apply(config)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        with _logging_off_the_loop(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            # uvloop: libuv's event loop and transports in C, the same asyncio API.
            return runner.run(serve(config, args.config, migrate=args.migrate,
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


def _migrate(args: argparse.Namespace) -> int:
    from receiver.app.stores import migrate
    from receiver.notify.contacts import index_of

    config = _load(args.config)
    if config is None:
        return 1
    config = _overrides(args).apply(config)
    found = config  # the contacts that migration 4 matches older outbox rows against

    def contact_index(name: str, kind: str, url: str) -> int | None:
        return index_of(url, name, kind, found.users, found.channels)

    try:
        store, before, after = asyncio.run(migrate(config, contact_index))
    except (StartupError, OSError, sqlite3.Error) as exc:
        print(f"ackd migrate: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{store}: at schema migration {after}, nothing to do")
    else:
        print(f"{store}: migrated from schema migration {before} to {after}")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from receiver.store.sqlite.backup import BackupError, backup

    config = _load(args.config)
    if config is None:
        return 1
    config = _overrides(args).apply(config)
    if config.postgres is not None:
        # A SQLite file left in data_dir from before the move would be copied, stale, and
        # a cron backup would say "backed up" every night.
        print("ackd backup: the store is PostgreSQL (storage.postgres): back it up with"
              " pg_dump; ackd backup copies the embedded SQLite store only", file=sys.stderr)
        return 1
    try:
        done = backup(config.db_path, Path(args.path))
    except BackupError as exc:
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


def _iso_instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _check_config(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            config = config_module.check(file, _overrides(args))
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


def _routes_test(args: argparse.Namespace) -> int:
    config = _load(args.config)
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


def _oncall(args: argparse.Namespace) -> int:
    try:
        at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    except ValueError:
        print(f"--at: not an ISO time: {args.at!r}", file=sys.stderr)
        return 2
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if args.url:
        return _oncall_asked(args, at)
    if args.config is None:
        print("oncall: give --config FILE or --url URL (or ACKD_URL)", file=sys.stderr)
        return 2
    config = _load(args.config)
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


def _oncall_asked(args: argparse.Namespace, at: datetime) -> int:
    """Ask the running ackd: it knows the team's schedule and zone, so no config file is
    needed, and its answer includes the run-time overrides and swaps."""
    try:
        answer = asyncio.run(Client(args.url, args.token).oncall(args.team, at.isoformat()))
    except (ApiError, OSError) as exc:
        print(f"oncall: asking ackd at {args.url}: {exc}", file=sys.stderr)
        return 1
    tz = ZoneInfo(answer["tz"])
    print(f"{answer['team']} (schedule {answer['schedule']}, {tz.key}) at {at.isoformat()}:")
    for line in oncall_lines(answer["layers"], tz):
        print(line)
    return 0


def oncall_lines(layers: list[dict[str, Any]], tz: ZoneInfo) -> list[str]:
    """ackd's answer per layer, saying what decided it: a run-time override names itself and
    the config override it overrules (run time wins)."""
    lines = []
    for layer in layers:
        until = layer["until"]
        when = (f"until {datetime.fromisoformat(until).astimezone(tz).isoformat()}"
                if until else "for good")
        line = f"  {layer['layer']:<10} {layer['user'] or 'nobody':<12} {when}"
        if layer["by"]:
            line += f"  ({layer['by']}"
            line += "".join(f"; overrules the config's {o['user']}" for o in layer["overrules"])
            line += ")"
        lines.append(line)
    return lines


def _override(args: argparse.Namespace) -> int:
    if _no_token(args):
        return 1
    client = Client(args.url, args.token)
    command = args.override_command
    gaps: list[dict[str, Any]] = []
    try:
        if command == "list":
            found = asyncio.run(client.overrides(args.schedule))["overrides"]
        elif command == "delete":
            answer = asyncio.run(client.delete_override(args.schedule, args.id))
            print("deleted " + ", ".join(f"#{i}" for i in answer["deleted"]))
            _warn_gaps(args.schedule, answer.get("gaps", []))
            return 0
        else:
            answer = asyncio.run(client.add_override(args.schedule, _override_body(args)))
            found, gaps = answer["overrides"], answer.get("gaps", [])
    except ApiError as exc:
        print(f"override {command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot reach ackd at {args.url}: {exc}", file=sys.stderr)
        return 1
    for o in found:
        print(_override_line(o))
    _warn_gaps(args.schedule, gaps)
    return 0


def _feed(args: argparse.Namespace) -> int:
    client = Client(args.url, args.token)
    answer = respond.run_call(args, client.feed(args.kind, args.name, revoke=args.revoke))
    if answer is None:
        return 1
    print(answer["url"])
    if args.revoke:
        print("every earlier address of this feed stops now", file=sys.stderr)
    return 0


def _warn_gaps(schedule: str, gaps: list[dict[str, Any]]) -> None:
    """What the change leaves uncovered in the coming weeks, as check-config words it."""
    for gap in gaps:
        span = f"from {gap['from']} to {gap['until']}" if gap["until"] else \
            f"from {gap['from']} on"
        print(f"warning: nobody is on call in layer {gap['layer']!r} of schedule "
              f"{schedule!r} {span}", file=sys.stderr)


def _override_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.override_command == "swap":
        shifts = [{"user": getattr(args, f"user{n}"), "start": getattr(args, f"from{n}"),
                   "end": getattr(args, f"to{n}")} for n in ("1", "2")]
        body: dict[str, Any] = {"swap": shifts}
    else:
        body = {"user": args.user, "start": args.start, "end": args.end}
        if args.replaces:
            body["replaces"] = args.replaces
    if args.layer:
        body["layer"] = args.layer
    if args.note:
        body["note"] = args.note
    return body


def _override_line(o: dict[str, Any]) -> str:
    line = (f"#{o['id']} {o['user']} on call {o['start']} to {o['end']}"
            f" in {o['layer'] or 'every layer'}")
    if o["replaces"]:
        line += f" in place of {o['replaces']}"
    if o["swap_with"]:
        line += f" (swap with #{o['swap_with']})"
    line += f", by {o['created_by']}"
    line += "".join(f"; overrules the config's {c['user']} {c['start']} to {c['end']}"
                    for c in o["overrules"])
    return line


def _sink(args: argparse.Namespace) -> int:
    from receiver.cli import sink

    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return 2
    from receiver.app.daemon import bind_failure

    try:
        asyncio.run(sink.run(host, port))
    except OSError as exc:
        print(f"ackd sink: cannot listen on {host}:{port}: {bind_failure(exc)}", file=sys.stderr)
        return 1
    return 0


def _no_token(args: argparse.Namespace) -> bool:
    if args.token:
        return False
    print(f"{args.command}: no API token: set ACKD_API_TOKEN to one of the config's api.tokens "
          "(config.example.yaml: change-me-too), or pass --token", file=sys.stderr)
    return True


def _with_token(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    return lambda args: 1 if _no_token(args) else run(args)


def _act(args: argparse.Namespace) -> int:
    if _no_token(args):
        return 1
    body = {"for": args.length} if args.command == "snooze" else None
    client = Client(args.url, args.token)
    try:
        incident = asyncio.run(client.act(args.incident, args.command, body))
    except ApiError as exc:
        print(f"{args.command} #{args.incident}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot reach ackd at {args.url}: {exc}", file=sys.stderr)
        return 1
    print(f"#{incident['id']} {incident['state']}")
    return 0


def _incidents(args: argparse.Namespace) -> int:
    if _no_token(args):
        return 1
    query = {k: v for k in ("state", "team", "severity") if (v := getattr(args, k))}
    try:
        found = asyncio.run(Client(args.url, args.token).incidents(**query))
    except (ApiError, OSError) as exc:
        print(f"incidents: {exc}", file=sys.stderr)
        return 1
    for i in found["incidents"]:
        print(json.dumps({k: i[k] for k in ("id", "state", "severity", "team", "summary")}))
    return 0


def _heartbeats(args: argparse.Namespace) -> int:
    if _no_token(args):
        return 1
    try:
        found = asyncio.run(Client(args.url, args.token).heartbeats())
    except (ApiError, OSError) as exc:
        print(f"heartbeats: {exc}", file=sys.stderr)
        return 1
    rows = [("NAME", "STATE", "LAST ARRIVAL", "LATE AT", "INCIDENT")]
    rows += [(h["name"], h["state"], h["last_arrival"] or "never", h["due"],
              f"#{h['incident']}" if h["incident"] else "-") for h in found["heartbeats"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


# The answer waits up to 5 s for the look at the open incidents (web/health.py's LOOK_WAIT),
# after the file's load: more than the API client's usual 10 s would be a hung ackd.
RELOAD_TIMEOUT = 30.0


def _reload(args: argparse.Namespace) -> int:
    """Warnings and problems on stderr, as check-config prints them; what changed on stdout.
    A deploy script fails on a refusal, never on a warning."""
    if _no_token(args):
        return 1
    try:
        took, answer = asyncio.run(Client(args.url, args.token, RELOAD_TIMEOUT).reload())
    except (ApiError, OSError) as exc:
        print(f"reload: {exc}", file=sys.stderr)
        return 1
    if not took:
        for problem in answer["problems"]:
            print(_located(problem), file=sys.stderr)
        print(f"reload refused, the running config is kept: {len(answer['problems'])}"
              " problem(s)", file=sys.stderr)
        return 1
    for warning in answer.get("warnings", []):
        print(_located(warning), file=sys.stderr)
    looked = answer.get("open_incidents", {})
    if looked.get("status") not in ("checked", "unchanged"):
        print(f"open incidents: {looked.get('status')}: {looked.get('message')}",
              file=sys.stderr)
    hashes = answer.get("config_hash", {})
    state = "changed" if answer.get("changed") else "unchanged"
    print(f"reloaded, {state} (config hash {str(hashes.get('before'))[:12]} ->"
          f" {str(hashes.get('after'))[:12]})" + (
              f", {len(answer['warnings'])} warning(s)" if answer.get("warnings") else ""))
    return 0


def _located(found: dict[str, Any]) -> str:
    """A problem or warning of the API's answer as `ackd check-config` prints one."""
    line = found.get("line")
    where = f"{found.get('file')}:{line}" if line is not None else str(found.get("file"))
    return f"{where}: {found.get('key')}: {found.get('message')}"


def _maintenance(args: argparse.Namespace) -> int:
    if _no_token(args):
        return 1
    client = Client(args.url, args.token)
    try:
        if args.maintenance_command == "add":
            body = {k: v for k, v in (("team", args.team), ("start", args.start),
                                      ("end", args.end), ("for", args.length)) if v}
            body.update(matchers=args.matchers, comment=args.comment)
            window = asyncio.run(client.add_maintenance(body))
            print(f"maintenance window #{window['id']} from {window['start']} to {window['end']}")
        elif args.maintenance_command == "delete":
            asyncio.run(client.delete_maintenance(args.id))
            print(f"maintenance window #{args.id} deleted")
        else:
            for w in asyncio.run(client.maintenance())["windows"]:
                print(json.dumps({k: w[k] for k in ("id", "name", "team", "matchers", "start",
                                                     "end", "active", "comment")}))
    except (ApiError, OSError) as exc:
        print(f"maintenance: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
