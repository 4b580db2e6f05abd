"""`ackd serve --log-format json`: one JSON object a line, for Loki, Elasticsearch and journald's
readers, beside the human format.

Each object has `time` (RFC 3339, UTC, milliseconds), `level`, `logger` and `message`, and the
fields the record carries: `event` (what happened, a stable name to filter on), `incident`
and `team` when it is about one. A record tells them through `extra=fields(...)`; the
message stays what the human format prints, so the two formats say the same things.

Nothing here reveals more than the human format: the message is built from the same record
after the same handler filters (`oneline.EscapeArgs`) and logger filters (the Apprise URL
masking in `notify/notifier.py`) ran, and a traceback is `oneline.format_exception`'s.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from receiver.core.oneline import format_exception

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The record attributes a line may carry beyond the standard ones, in output order.
FIELDS = ("event", "incident", "team")


def fields(event: str, incident: int | None = None, team: str | None = None) -> dict[str, Any]:
    """The `extra=` of a log call about an incident: what the JSON format adds to the line."""
    found: dict[str, Any] = {"event": event}
    if incident is not None:
        found["incident"] = incident
    if team is not None:
        found["team"] = team
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = record.exc_text or format_exception(record.exc_info[1])
        # ensure_ascii: a line separator or an escape sequence in data stays an escape.
        return json.dumps(line, ensure_ascii=True, default=str)


def formatter(name: str) -> logging.Formatter:
    if name == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)
