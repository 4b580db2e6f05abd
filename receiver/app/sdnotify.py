"""systemd's readiness protocol (sd_notify(3)) for `ackd serve` under `Type=notify`.

READY=1 once ackd listens with its store open: systemd counts the unit started only then, and
runs no ExecReload (SIGHUP) before it. RELOADING=1 with MONOTONIC_USEC before a config
reload and READY=1 after it, STOPPING=1 when the stop begins, and a STATUS= line with each
for `systemctl status`. Each is one datagram of `KEY=VALUE` lines to the Unix socket that
NOTIFY_SOCKET names (a path, or `@name` for an abstract socket); without NOTIFY_SOCKET (not
under systemd) nothing is sent.

With `WatchdogSec=` (WATCHDOG_USEC), WATCHDOG=1 every half of it from the event loop
(`keep_alive`): a process stopped (SIGSTOP, a paused VM) or a loop blocked sends none, and
systemd aborts and restarts it. A replica hung while still connected otherwise kept its
leased pages for the lease's 60 s, and a lone ackd hung held every escalation for good.

Ours rather than a library's: the protocol is one sendto, and PyPI's packages are either
unmaintained since 2017 (sdnotify) or bindings of libsystemd in C (systemd-python, cysystemd:
a compiler and libsystemd's headers at install, for one datagram).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger(__name__)

# systemd reads its notify socket at once; a send blocks only while the socket's queue is
# full. Not long on the event loop, and never fatal: ackd runs on without systemd's word.
SEND_TIMEOUT = 1.0


class SystemdNotify:
    """Tells systemd the daemon's state; does nothing when `address` is None."""

    def __init__(self, address: str | None, watchdog_every: float | None = None) -> None:
        self.address = socket_address(address)
        # Seconds between two WATCHDOG=1; None: systemd watches for none.
        self.watchdog_every = watchdog_every if self.address is not None else None

    @classmethod
    def from_environment(cls) -> SystemdNotify:
        """NOTIFY_SOCKET's and the watchdog's, taken out of the environment as sd_notify(3)
        advises: a child process (an Apprise plugin's) must not speak for ackd."""
        address = os.environ.pop("NOTIFY_SOCKET", None)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        return cls(address, watchdog_every(usec, pid, os.getpid()))

    def status(self, status: str) -> None:
        self._send(_status(status))

    def ready(self, status: str) -> None:
        self._send("READY=1", _status(status))

    def reloading(self) -> None:
        """Before a reload. MONOTONIC_USEC (CLOCK_MONOTONIC, µs) tells systemd 253+ this
        RELOADING=1 is newer than its reload request; older versions ignore it."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={now}",
                   _status("reloading the configuration"))

    def stopping(self) -> None:
        self._send("STOPPING=1", _status("stopping: finishing in-flight requests"))

    async def keep_alive(self) -> None:
        """WATCHDOG=1 every `watchdog_every` seconds, for as long as the event loop runs
        this task (until cancelled); nothing without a watchdog."""
        if self.watchdog_every is None:
            return
        while True:
            self._send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_every)

    def _send(self, *lines: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.warning("could not tell systemd %s (NOTIFY_SOCKET): %s", lines[0], exc)


def socket_address(value: str | None) -> str | None:
    """NOTIFY_SOCKET as an AF_UNIX address: a path, or `@name` for the abstract socket
    `\\0name`. Anything else (unset, empty, systemd 253's `vsock:`) is None, logged when set."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    log.warning("NOTIFY_SOCKET=%r is neither a path nor @name: systemd is not told", value)
    return None


def watchdog_every(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Half of WatchdogSec (WATCHDOG_USEC, µs), as sd_watchdog_enabled(3) advises; None when
    unset, not a positive integer (logged), or meant for another process (WATCHDOG_PID)."""
    if not usec:
        return None
    if pid and pid.strip() != str(own_pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("WATCHDOG_USEC=%r is not a positive number of µs: no watchdog", usec)
        return None
    return value / 2_000_000


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line: a newline would start another key
