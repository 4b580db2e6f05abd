"""The `ackd` command line: its parser, and the dispatch to each command's module.

A command imports what it needs once it is chosen, from its module: `local` (the commands
that read a config file here, and serve), `remote` (those that ask a running ackd through its
API), `learning` and `respond`. So `ackd --help` and every command's --help import almost
nothing, `ackd ack 12` the API client alone, `ackd check-config` the config builder, and only
serve the daemon (tests/test_cli_imports.py holds this). The parser's own imports stay small.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from receiver.app import hangups
from receiver.cli import learning, respond
from receiver.core.model import Action
from receiver.core.oneline import EscapeArgs
from receiver.telemetry.logformat import FORMATS, formatter

log = logging.getLogger("ackd")


# What `ackd --help` says: written for the person at the terminal, not for developers.
USAGE = """\
ackd receives Prometheus Alertmanager's webhooks, pages the owning team's on-call person,
escalates until somebody acknowledges, and measures how long that took.

Start the daemon with `ackd serve --config FILE`; `ackd COMMAND --help` explains each command.
"""
# How the commands that ask a running ackd find it: the end of their --help, and of
# `ackd --help` after their names (_talking reads them from the parser: each has --url).
REACHING = (
    "Its address comes from ACKD_URL (default http://127.0.0.1:9095) and the API token from "
    "ACKD_API_TOKEN (one of the config's api.tokens, or a user's own token; with "
    "config.example.yaml, change-me-too), unless --url and --token are given."
)
EPILOG = f"This command talks to a running ackd. {REACHING}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ackd", description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
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

    for name in Action:  # every action a command: one added without its help fails here
        text = ACTIONS[name]
        action = sub.add_parser(name.value, help=text, description=f"{text.capitalize()}.",
                                epilog=EPILOG)
        action.add_argument("incident", type=int, help="its number, as `ackd incidents` shows")
        _api_flags(action)
        if name is Action.SNOOZE:
            action.add_argument("--for", dest="length", required=True, help="e.g. 30m, 2h")
    sink = sub.add_parser(
        "sink", help="print the messages sent to 127.0.0.1:9099 (the example's contacts)",
        description="Listen on a local address and print every message posted to it: pages "
        "and notes alike, each as 'message to PATH' (what arrives does not say which it "
        "is). config.example.yaml reaches people at json://127.0.0.1:9099/NAME: run this "
        "beside `make run` to watch the messages arrive. Ctrl-C stops it.",
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
        "warns, and what it does to the open incidents) within 5 s, and which checks still "
        "run past that; exit 0. A refused file is kept out, the running config stays, its "
        "problems are printed: exit 1. With --status, reload nothing: print the last reload "
        "that took (before any, the start's checks of the config ackd started with) with its "
        "checks as they stand now (GET /-/reload).", epilog=EPILOG,
    )
    reload.add_argument(
        "--status", action="store_true",
        help="reload nothing: the last reload and its checks now, those that ran past its "
        "answer included",
    )
    _api_flags(reload)
    _maintenance_parser(sub)
    respond.add_parsers(sub, _api_flags, EPILOG)  # each sets its own `run`
    parser.epilog = _wrap(
        f"These commands talk to a running ackd: {', '.join(_talking(sub))}. {REACHING} "
        "oncall asks it only given --url (or ACKD_URL); otherwise it reads --config."
    )
    return parser


def _talking(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """The commands that ask a running ackd, by name: those with --url, themselves or in a
    command of theirs (`ackd override add`)."""
    def asks(parser: argparse.ArgumentParser) -> bool:
        return any("--url" in a.option_strings or (
            isinstance(a, argparse._SubParsersAction) and any(map(asks, a.choices.values())))
            for a in parser._actions)
    return sorted(name for name, parser in sub.choices.items() if asks(parser))


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=92, break_on_hyphens=False) + "\n"


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


# The help of each action's command (`ackd ack 42`), one per core/model.Action.
ACTIONS: Mapping[Action, str] = {
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


class _Version(argparse._VersionAction):
    """argparse's --version, with the version looked up when it is asked for: the lookup's
    importlib.metadata (email, zipfile, csv: 0.08 s of CPU) is for --version alone."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        self.version = f"ackd {_version()}"
        super().__call__(parser, namespace, values, option_string)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ackd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"




# Each command's handler, as "module:function" in receiver.cli, imported once chosen (the
# commands of respond set their own `run`).
COMMANDS = {
    "serve": "local:serve", "backup": "local:backup", "migrate": "local:migrate",
    "check-config": "local:check_config", "routes": "local:routes_test", "sink": "local:sink",
    "incidents": "remote:incidents", "override": "remote:override", "feed": "remote:feed",
    "heartbeats": "remote:heartbeats", "maintenance": "remote:maintenance",
    "reload": "remote:reload", **{action.value: "remote:act" for action in Action},
    "postmortem": "remote:postmortem", "report": "remote:report", "drill": "remote:drill",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        hangups.restore()  # held only for the daemon's reload (receiver.app.hangups)
    logging.basicConfig(level=args.log_level.upper())
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(getattr(args, "log_format", "text")))
        handler.addFilter(EscapeArgs())  # outside text cannot start a log line of its own
    run = _oncall if args.command == "oncall" else (
        _handler(COMMANDS[args.command]) if args.command in COMMANDS else args.run)
    try:
        result: int = run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`ackd oncall ... | head -1`), having read what it wanted: no
        # traceback, and stdout on /dev/null so the interpreter's last flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result


def _handler(where: str) -> Callable[..., int]:
    """The function of COMMANDS' "module:function", its module imported now."""
    module, _, name = where.partition(":")
    run: Callable[..., int] = getattr(importlib.import_module(f"receiver.cli.{module}"), name)
    return run


def _oncall(args: argparse.Namespace) -> int:
    """A running ackd's answer with --url (or ACKD_URL), else the --config file's plan."""
    try:
        at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    except ValueError:
        print(f"--at: not an ISO time: {args.at!r}", file=sys.stderr)
        return 2
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if args.url:
        return _handler("remote:oncall_asked")(args, at)
    if args.config is None:
        print("oncall: give --config FILE or --url URL (or ACKD_URL)", file=sys.stderr)
        return 2
    return _handler("local:oncall_planned")(args, at)


def _iso_instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
