"""Test doubles, in one public place (as trio.testing): FakeClock (virtual time) and
RecordingNotifier (a Notifier that remembers). Production code never imports this package;
tests/test_layers.py fails if it does.
"""

from receiver.testing.clock import FakeClock, wait_all_tasks_blocked
from receiver.testing.notifier import Outcome, RecordingNotifier

__all__ = ["FakeClock", "Outcome", "RecordingNotifier", "wait_all_tasks_blocked"]
