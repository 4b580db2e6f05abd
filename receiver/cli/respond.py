"""The incident layer's commands: `ackd declare`, `role`, `note`, `reassign`, `responder`
and `severity`.

Each talks to a running ackd through the API, as `ackd ack` does, and prints one line saying
what is now true; an API error prints the status, the field or scope it names, and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from receiver.cli.client import Client, ask
from receiver.incidents.roles import Role

ApiFlags = Callable[[argparse.ArgumentParser], None]


def add_parsers(sub: Any, api_flags: ApiFlags, epilog: str) -> None:
    """Add the commands to `sub` (argparse's subparsers), each with its handler as `run`."""
    role = sub.add_parser(
        "role", help="assign or hand over an incident role", epilog=epilog,
        description="Make USER the incident's ROLE (handing it over from whoever held it), "
        "or --clear it. Roles: " + ", ".join(r.value for r in Role) + ".",
    )
    role.add_argument("incident", type=int)
    role.add_argument("role", choices=[r.value for r in Role])
    who = role.add_mutually_exclusive_group(required=True)
    who.add_argument("user", nargs="?", help="a user of the config")
    who.add_argument("--clear", action="store_true", help="nobody holds the role any more")
    note = sub.add_parser(
        "note", help="post a note (a status update from the communications lead)",
        epilog=epilog,
        description="Add a note to the incident's timeline. A note from the communications "
        "lead (or the commander while there is none) is a status update.",
    )
    note.add_argument("incident", type=int)
    note.add_argument("text", help="the note; quote it")
    declare = sub.add_parser(
        "declare", help="declare an incident no alert raised", epilog=epilog,
        description="Open an incident by hand (a customer reported it, or you saw it): it "
        "pages the team's on-call through its escalation policy like any other and counts "
        "as reported, not detected.",
    )
    declare.add_argument("team")
    declare.add_argument("severity", help="e.g. SEV1")
    declare.add_argument("summary", help="what is wrong, in one line; quote it")
    declare.add_argument("--source", choices=["customer", "observed"], default="observed",
                         help="who noticed: a customer, or one of us (default)")
    reassign = sub.add_parser(
        "reassign", help="reassign an incident to a team or a person", epilog=epilog,
        description="Reassign to a team (its escalation policy takes over) or a person (paged "
        "alone); escalation starts over either way. Reassigning to yourself takes it: no page, "
        "and acknowledged by you if nobody had.",
    )
    reassign.add_argument("incident", type=int)
    to = reassign.add_mutually_exclusive_group(required=True)
    to.add_argument("--team")
    to.add_argument("--user")
    responder = sub.add_parser(
        "responder", help="page someone into an incident", epilog=epilog,
        description="Page USER into the incident at once; who owns it does not change.",
    )
    responder.add_argument("incident", type=int)
    responder.add_argument("user")
    severity = sub.add_parser(
        "severity", help="change an incident's severity", epilog=epilog,
        description="Raising the severity starts escalation over under the new severity's "
        "steps; lowering it pages nobody.",
    )
    severity.add_argument("incident", type=int)
    severity.add_argument("severity", help="e.g. SEV1")
    for parser, run in ((role, _role), (note, _note), (declare, _declare),
                        (reassign, _reassign), (responder, _responder),
                        (severity, _severity)):
        api_flags(parser)
        parser.set_defaults(run=run)


def _role(args: argparse.Namespace) -> int:
    client = Client(args.url, args.token)
    if args.clear:
        call = client.clear_role(args.incident, args.role)
    else:
        call = client.assign_role(args.incident, args.role, args.user)
    answer = run_call(args, call)
    if answer is None:
        return 1
    held = answer["roles"].get(args.role)
    print(f"#{args.incident} {args.role}: {held['user'] if held else 'nobody'}")
    return 0


def _note(args: argparse.Namespace) -> int:
    answer = run_call(args, Client(args.url, args.token).note(args.incident, args.text))
    if answer is None:
        return 1
    kind = "status update" if answer["kind"] == "status_update" else "note"
    print(f"#{args.incident} {kind} by {answer['actor']}")
    return 0


def _declare(args: argparse.Namespace) -> int:
    body = {"team": args.team, "severity": args.severity, "summary": args.summary,
            "source": args.source}
    answer = run_call(args, Client(args.url, args.token).declare(body))
    if answer is None:
        return 1
    print(f"#{answer['id']} declared: {answer['severity']} {answer['team']}: "
          f"{answer['summary']}")
    return 0


def _reassign(args: argparse.Namespace) -> int:
    body = {"team": args.team} if args.team else {"user": args.user}
    return _show(args, Client(args.url, args.token).reassign(args.incident, body))


def _responder(args: argparse.Namespace) -> int:
    return _show(args, Client(args.url, args.token).add_responder(args.incident, args.user))


def _severity(args: argparse.Namespace) -> int:
    return _show(args, Client(args.url, args.token).set_severity(args.incident, args.severity))


def _show(args: argparse.Namespace, call: Awaitable[dict[str, Any]]) -> int:
    """One line: the incident as it is now."""
    answer = run_call(args, call)
    if answer is None:
        return 1
    print(f"#{answer['id']} {answer['state']} {answer['severity']} {answer['team']}")
    return 0


def run_call(
    args: argparse.Namespace, call: Awaitable[dict[str, Any]]
) -> dict[str, Any] | None:
    """The API's answer, or None once the reason is printed: no token, the API's error, or
    ackd out of reach."""
    if not args.token:
        print(f"{args.command}: no API token: set ACKD_API_TOKEN or pass --token",
              file=sys.stderr)
        if isinstance(call, Coroutine):
            call.close()  # never sent: say so to Python too, not as "never awaited"
        return None
    what = f" #{args.incident}" if hasattr(args, "incident") else ""
    return ask(_await(call), f"{args.command}{what}", args.url)


async def _await(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    return await call
