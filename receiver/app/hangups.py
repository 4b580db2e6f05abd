"""SIGHUP before the daemon can answer it: held, not fatal.

A SIGHUP (`kill -HUP`, `docker kill -s HUP`, and `systemctl reload` under the old
`Type=exec` unit; the `Type=notify` unit sends none before READY=1, app/sdnotify.py) may come
as soon as the process exists, and ackd installs its reload handler only after its imports and
the config load (seconds on a loaded machine). The default action of SIGHUP ends the
process, and systemd counts that as a clean exit and does not restart it. So the entry points
note a hangup from their first line, and the daemon reloads once for any noted before it was
ready. Standard library only: it runs before anything else is imported.
"""

from __future__ import annotations

import signal
from types import FrameType

_noted = False
_deferred = False


def defer() -> None:
    """From now on a SIGHUP is noted for `take`, not fatal."""
    global _deferred
    signal.signal(signal.SIGHUP, _note)
    _deferred = True


def restore() -> None:
    """SIGHUP's default again, if `defer` changed it (a command other than serve ends when
    its terminal closes)."""
    global _noted, _deferred
    if _deferred:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    _noted = _deferred = False


def take() -> bool:
    """Whether a SIGHUP came since `defer` (and forget it)."""
    global _noted
    noted, _noted = _noted, False
    return noted


def _note(signum: int, frame: FrameType | None) -> None:
    global _noted
    _noted = True
