"""The commands that ask a running ackd, through its API (receiver.cli.client): ack, resolve,
snooze, unack, incidents, heartbeats, reload, maintenance, override, feed, `oncall --url`, and
the token check of postmortem, report and drill (receiver.cli.learning).

Nothing here builds a config: these commands import the client and what they print, not the
config builder, Apprise or the daemon (tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from receiver.cli import learning, respond
from receiver.cli.client import Client, ask
from receiver.core.model import Action


def oncall_asked(args: argparse.Namespace, at: datetime) -> int:
    """Ask the running ackd: it knows the team's schedule and zone, so no config file is
    needed, and its answer includes the run-time overrides and swaps."""
    answer = ask(Client(args.url, args.token).oncall(args.team, at.isoformat()),
                 f"oncall: asking ackd at {args.url}", args.url)
    if answer is None:
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


def override(args: argparse.Namespace) -> int:
    if no_token(args):
        return 1
    client = Client(args.url, args.token)
    command = args.override_command
    if command == "list":
        call = client.overrides(args.schedule)
    elif command == "delete":
        call = client.delete_override(args.schedule, args.id)
    else:
        call = client.add_override(args.schedule, _override_body(args))
    answer = ask(call, f"override {command}", args.url)
    if answer is None:
        return 1
    if command == "delete":
        print("deleted " + ", ".join(f"#{i}" for i in answer["deleted"]))
    for o in answer.get("overrides", []):
        print(_override_line(o))
    _warn_gaps(args.schedule, answer.get("gaps", []))  # what a change leaves uncovered
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


def no_token(args: argparse.Namespace) -> bool:
    if args.token:
        return False
    print(f"{args.command}: no API token: set ACKD_API_TOKEN to one of the config's api.tokens "
          "(config.example.yaml: change-me-too), or pass --token", file=sys.stderr)
    return True


def with_token(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    return lambda args: 1 if no_token(args) else run(args)


def act(args: argparse.Namespace) -> int:
    if no_token(args):
        return 1
    body = {"for": args.length} if args.command == Action.SNOOZE else None
    incident = ask(Client(args.url, args.token).act(args.incident, args.command, body),
                   f"{args.command} #{args.incident}", args.url)
    if incident is None:
        return 1
    print(f"#{incident['id']} {incident['state']}")
    return 0


def incidents(args: argparse.Namespace) -> int:
    if no_token(args):
        return 1
    query = {k: v for k in ("state", "team", "severity") if (v := getattr(args, k))}
    found = ask(Client(args.url, args.token).incidents(**query), "incidents", args.url)
    if found is None:
        return 1
    for i in found["incidents"]:
        print(json.dumps({k: i[k] for k in ("id", "state", "severity", "team", "summary")}))
    return 0


def heartbeats(args: argparse.Namespace) -> int:
    if no_token(args):
        return 1
    found = ask(Client(args.url, args.token).heartbeats(), "heartbeats", args.url)
    if found is None:
        return 1
    rows = [("NAME", "STATE", "LAST ARRIVAL", "LATE AT", "INCIDENT")]
    rows += [(h["name"], h["state"], h["last_arrival"] or "never", h["due"],
              f"#{h['incident']}" if h["incident"] else "-") for h in found["heartbeats"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


# The answer waits up to 5 s for the checks after the swap (web/health.py's REPLY_WAIT),
# after the file's load: more than the API client's usual 10 s would be a hung ackd.
RELOAD_TIMEOUT = 30.0


def reload(args: argparse.Namespace) -> int:
    """Warnings and problems on stderr, as check-config prints them; what changed on stdout.
    A deploy script fails on a refusal, never on a warning. --status: the last reload that
    took (else the start's checks of the config ackd started with), its checks as they
    stand now, printed the same way."""
    if no_token(args):
        return 1
    client = Client(args.url, args.token, RELOAD_TIMEOUT)
    if args.status:
        last = ask(client.last_reload(), "reload --status", args.url)
        if last is None:
            return 1
        if last.get("status") == "started":
            _print_reloaded(last, f"no reload since ackd started at {last.get('at')}")
        else:
            _print_reloaded(last, f"last reload at {last.get('at')}")
        return 0
    asked = ask(client.reload(), "reload", args.url)
    if asked is None:
        return 1
    took, answer = asked
    if not took:
        for problem in answer["problems"]:
            print(_located(problem), file=sys.stderr)
        print(f"reload refused, the running config is kept: {len(answer['problems'])}"
              " problem(s)", file=sys.stderr)
        return 1
    _print_reloaded(answer, "reloaded")
    return 0


def _print_reloaded(answer: dict[str, Any], head: str) -> None:
    for warning in answer.get("warnings", []):
        print(_located(warning), file=sys.stderr)
    for part, name in (("file_checks", "file checks"), ("open_incidents", "open incidents")):
        checked = answer.get(part, {})
        if checked.get("status") not in ("checked", "unchanged", None):
            print(f"{name}: {checked.get('status')}: {checked.get('message')}",
                  file=sys.stderr)
    hashes = answer.get("config_hash", {})
    state = "changed" if answer.get("changed") else "unchanged"
    config = (f"config hash {str(hashes.get('after'))[:12]}"
              if answer.get("status") == "started"
              else f"{state} (config hash {str(hashes.get('before'))[:12]} ->"
                   f" {str(hashes.get('after'))[:12]})")
    print(f"{head}, {config}" + (
        f", {len(answer['warnings'])} warning(s)" if answer.get("warnings") else ""))


def _located(found: dict[str, Any]) -> str:
    """A problem or warning of the API's answer as `ackd check-config` prints one."""
    line = found.get("line")
    where = f"{found.get('file')}:{line}" if line is not None else str(found.get("file"))
    return f"{where}: {found.get('key')}: {found.get('message')}"


def maintenance(args: argparse.Namespace) -> int:
    if no_token(args):
        return 1
    client = Client(args.url, args.token)
    command = args.maintenance_command
    if command == "add":
        body = {k: v for k, v in (("team", args.team), ("start", args.start),
                                  ("end", args.end), ("for", args.length)) if v}
        body.update(matchers=args.matchers, comment=args.comment)
        call = client.add_maintenance(body)
    elif command == "delete":
        call = client.delete_maintenance(args.id)
    else:
        call = client.maintenance()
    answer = ask(call, "maintenance", args.url)
    if answer is None:
        return 1
    if command == "add":
        print(f"maintenance window #{answer['id']} from {answer['start']} to {answer['end']}")
    elif command == "delete":
        print(f"maintenance window #{args.id} deleted")
    else:
        for w in answer["windows"]:
            print(json.dumps({k: w[k] for k in ("id", "name", "team", "matchers", "start",
                                                 "end", "active", "comment")}))
    return 0



# The commands that say which token is missing, and where to find one, before they start.
feed = with_token(_feed)
postmortem = with_token(learning.run_postmortem)
report = with_token(learning.run_report)
drill = with_token(learning.run_drill)
