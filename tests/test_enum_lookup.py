"""receiver/__init__ drops EnumType.__getattr__ on Python 3.11, as 3.12 does."""

from __future__ import annotations

from receiver.core.model import AlertStatus, EventKind
from receiver.ingest.grouping import AlertOutcome


def test_enum_members_are_found_without_enum_getattr() -> None:
    """receiver/__init__ drops EnumType.__getattr__ on Python 3.11 (as 3.12 does): every member
    is still an attribute of its class, and a name that is none is still an AttributeError."""
    assert "__getattr__" not in vars(type(AlertStatus))
    assert AlertStatus.FIRING is AlertStatus("firing")
    assert EventKind.RESOLVED.value == "resolved"
    assert AlertOutcome.MERGED is AlertOutcome("merged")
    assert not hasattr(AlertStatus, "PENDING")
