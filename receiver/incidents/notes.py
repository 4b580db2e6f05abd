"""Notes on an incident's timeline, and which of them are status updates.

A note from the communications lead (or from the commander while there is none) is a status
update: it restarts the status cadence (cadence.py). Notes may be added after resolution too,
for the review; they are never status updates then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.core.errors import PayloadError
from receiver.core.model import EventKind, Incident, TimelineEvent
from receiver.incidents.roles import Holders, speaks_for

MAX_NOTE_CHARS = 4000


def note_text(body: Any) -> str:
    """The note's text from a request body {"text": "..."}; PayloadError naming the field."""
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object with a text field")
    unknown = sorted(set(body) - {"text"})
    if unknown:
        raise PayloadError(unknown[0], "unknown field; known: text")
    text = body.get("text")
    if not isinstance(text, str):
        raise PayloadError("text", "must be a string")
    text = text.strip()
    if not text:
        raise PayloadError("text", "must not be empty")
    if len(text) > MAX_NOTE_CHARS:
        raise PayloadError("text", f"must be at most {MAX_NOTE_CHARS} characters")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise PayloadError("text", "holds an unpaired surrogate")
    return text


def note(incident: Incident, holders: Holders, text: str, author: str,
         now: datetime) -> TimelineEvent:
    """The timeline event of a note: a status update when its author speaks for the incident."""
    status = incident.is_open and speaks_for(holders, author)
    kind = EventKind.STATUS_UPDATE if status else EventKind.NOTE
    return TimelineEvent(now, kind, author, {"text": text})
