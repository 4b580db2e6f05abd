"""`ackd postmortem ID` and `ackd report --since 30d`: the API's answers, for people."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from receiver.cli.client import Client, ask
from receiver.core.durations import parse_duration
from receiver.core.model import Action

POLL_SECONDS = 0.5


def add_commands(
    sub: Any, api_flags: Callable[[argparse.ArgumentParser], None], epilog: str
) -> None:
    postmortem = sub.add_parser(
        "postmortem", help="print an incident's post-mortem draft (Markdown)",
        description="Print the draft post-mortem of an incident as Markdown: summary, "
        "response times, escalation, timeline, earlier incidents of the same alerts, and the "
        "headings of a blameless review.", epilog=epilog,
    )
    postmortem.add_argument("incident", type=int, help="its number, as `ackd incidents` shows")
    api_flags(postmortem)
    report = sub.add_parser(
        "report", help="MTTD, MTTA, MTTR and more over a window",
        description="Print the report of the incidents opened in a window: MTTD, MTTA and "
        "MTTR per team and severity (mean, p50, p90), incidents per severity per week, "
        "repeat-incident and escalation rates, acknowledgement by step, detected versus "
        "reported. Drills are counted apart.", epilog=epilog,
    )
    report.add_argument("--since", default="30d", help="how far back, e.g. 7d, 30d (30d)")
    api_flags(report)
    drill = sub.add_parser(
        "drill", help="send a test incident through a team's escalation path",
        description="Start a drill: a test incident, marked DRILL in every page, sent through "
        "the team's real escalation policy. Waits until someone acknowledges it (or --wait "
        "runs out), resolves it, and prints who was reached, through which channel and how "
        "fast they acknowledged. Exit 0 when someone the drill paged acknowledged it; 1 when "
        "nobody acknowledged it (or ackd could not be asked); 3 when it was acknowledged only "
        "by someone the drill never paged (a take, a script's token): that answers none of "
        "its pages, so it shows nothing of the path. Drills are kept out of the reports' "
        "figures and the response-time metrics.", epilog=epilog,
    )
    drill.add_argument("team")
    drill.add_argument("--severity", help="default: the most severe, which pages at any hour")
    drill.add_argument("--wait", default="10m", help="how long to wait for an acknowledgement")
    api_flags(drill)


def run_postmortem(args: argparse.Namespace) -> int:
    text = ask(Client(args.url, args.token).postmortem(args.incident),
               f"postmortem #{args.incident}", args.url)
    if text is None:
        return 1
    sys.stdout.write(text)
    return 0


def run_report(args: argparse.Namespace) -> int:
    report = ask(Client(args.url, args.token).report(args.since), "report", args.url)
    if report is None:
        return 1
    print("\n".join(report_lines(report)))
    return 0


def run_drill(args: argparse.Namespace) -> int:
    try:
        wait = parse_duration(args.wait).total_seconds()
    except ValueError as exc:
        print(f"--wait: {exc}", file=sys.stderr)
        return 2
    report = ask(_drill(Client(args.url, args.token), args, wait), f"drill {args.team}",
                 args.url)
    if report is None:
        return 1
    print("\n".join(drill_lines(report)))
    return drill_exit(report)


# `ackd drill`'s exit when someone acknowledged the drill who was never paged by it: not 0,
# since the drill showed nothing of the path, and not 1, nobody answering, for a script that
# tells a failed drill from one to run again.
ACKNOWLEDGED_UNPAGED = 3


def drill_exit(r: Mapping[str, Any]) -> int:
    if not r["acknowledged_by"]:
        return 1
    # An ackd from before `answered` reports no such field: its acknowledgement counts.
    return 0 if r.get("answered", True) else ACKNOWLEDGED_UNPAGED


async def _drill(client: Client, args: argparse.Namespace, wait: float) -> dict[str, Any]:
    import asyncio  # imported by now (ask); not with this module, which builds the parser

    started = await client.drill(args.team, args.severity)
    number = started["incident"]
    print(f"drill #{number} started for {started['team']} ({started['severity']}, policy "
          f"{started['policy']}); waiting up to {args.wait} for an acknowledgement", flush=True)
    deadline = time.monotonic() + wait
    report = started
    while not report["acknowledged_by"] and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        report = await client.drill_report(number)
    # Over either way: the drill stops paging; what its pages did is in the report.
    await client.act(number, Action.RESOLVE)
    await asyncio.sleep(POLL_SECONDS)  # the resolution's own notes, for the record
    return await client.drill_report(number)


def drill_lines(r: Mapping[str, Any]) -> list[str]:
    lines = [f"Drill #{r['incident']} of team {r['team']} ({r['severity']}, policy "
             f"{r['policy']}):"]
    steps = [[(step["after_seconds"], f"step {step['step']} paged "
               f"{', '.join(step['paged']) or 'nobody'}")] for step in r["steps"]]
    # A step that reached nobody: its line under the step's last firing by then (an ackd
    # from before `unreached` reports none).
    for u in r.get("unreached", ()):
        fired = [i for i, step in enumerate(r["steps"])
                 if step["step"] == u["step"] and step["after_seconds"] <= u["after_seconds"]]
        line = (u["after_seconds"], f"step {u['step']} REACHED NOBODY: {u['why']}")
        if fired:
            steps[fired[-1]].append(line)
        else:
            steps.append([line])
    lines += [f"  +{after:.1f}s {text}" for group in steps for after, text in group]
    for x in r["reached"]:
        how = "reached" if x["delivered"] else f"NOT reached ({x.get('error', '')})"
        what = f"step {x['step']} {x['reason']}" if x["step"] else x["reason"]
        lines.append(f"  +{x['after_seconds']:.1f}s {how}: {x['recipient']} via "
                     f"{x['channel']} ({what})")
    if r["acknowledged_by"] and not r.get("answered", True):
        paged = ", ".join(r["paged"]) or "nobody"
        lines.append(f"Acknowledged by {r['acknowledged_by']} after "
                     f"{r['acknowledged_after_seconds']:.1f}s, whom the drill never paged "
                     f"(it paged: {paged}): no answer to its pages.")
    elif r["acknowledged_by"]:
        lines.append(f"Acknowledged by {r['acknowledged_by']} after "
                     f"{r['acknowledged_after_seconds']:.1f}s.")
    else:
        lines.append("Nobody acknowledged it.")
    return lines


def report_lines(r: Mapping[str, Any]) -> list[str]:
    """The API's report as plain text tables."""
    lines = [f"Incidents opened {r['since']} to {r['until']}: {r['incidents']}"
             f" (drills apart: {r['drills']})", ""]
    rows = [["team", "severity", "incidents", *(f"{m} {s}" for m in ("MTTD", "MTTA", "MTTR")
                                                for s in ("mean", "p50", "p90"))]]
    for row in r["by_team_severity"]:
        rows.append([row["team"], row["severity"], str(row["incidents"]), *(
            seconds(row[m][s]) for m in ("mttd", "mtta", "mttr") for s in ("mean", "p50", "p90"))])
    lines += table(rows) + [""]
    severities = sorted({sev for week in r["per_week"].values() for sev in week})
    weeks = [["week", *severities]] + [
        [week, *(str(counts.get(sev, 0)) for sev in severities)]
        for week, counts in r["per_week"].items()]
    lines += table(weeks) + [""]
    # An ackd from before `resolved_unacknowledged` (a CLI upgraded first) reports none.
    unheld = r.get("resolved_unacknowledged")
    lines += [
        f"Repeat incidents (alerts seen within 30 days): {share(r['repeat_rate'])}",
        f"Escalated (needed step 2 or later): {share(r['escalation_rate'])}",
        *([f"Resolved unacknowledged (nobody held it when resolved): {share(unheld)}"]
          if unheld is not None else []),
        "Acknowledged at step: " + (", ".join(
            f"{step}: {n}" for step, n in r["acknowledged_by_step"].items()) or "none"),
        f"Detected by monitoring: {r['detected']}, reported by people: {r['reported']}",
    ]
    return lines


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    whole = round(value)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def share(value: Mapping[str, Any]) -> str:
    rate = value["rate"]
    percent = "-" if rate is None else f"{rate * 100:.1f}%"
    return f"{value['count']} of {value['incidents']} ({percent})"


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]
