"""`ackd serve` under systemd's `Type=notify` (deploy/systemd/ackd.service): READY=1 once it
answers /-/ready, RELOADING=1 and READY=1 around each reload, STOPPING=1 when it stops, on the
datagram socket NOTIFY_SOCKET names (app/sdnotify.py). A real process, a real socket."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from receiver.app.sdnotify import SystemdNotify, socket_address, watchdog_every
from tests.harness import API_TOKEN, READY_WITHIN, Ackd, write_config


def _datagram_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


async def _message(sock: socket.socket) -> dict[str, str]:
    """The next datagram as its KEY=VALUE lines."""
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), READY_WITHIN)
    lines = data.decode().split("\n")
    assert all("=" in line for line in lines), data
    return dict(line.split("=", 1) for line in lines)


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


async def _ready_status(ackd: Ackd) -> int:
    """/-/ready's status, waited for as long as a loaded machine may take to answer."""
    async with aiohttp.ClientSession() as session, session.get(
        f"{ackd.url}/-/ready", timeout=aiohttp.ClientTimeout(total=READY_WITHIN)
    ) as response:
        return response.status


async def _reload_over_http(ackd: Ackd) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        f"{ackd.url}/-/reload", headers={"Authorization": f"Bearer {API_TOKEN}"}
    ) as response:
        return response.status


async def test_ackd_serve_tells_systemd_ready_reloading_and_stopping(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    with _datagram_socket(str(tmp_path / "notify")) as notify:
        ackd = Ackd(tmp_path, config)
        ackd.env["NOTIFY_SOCKET"] = str(tmp_path / "notify")
        ackd.start()
        try:
            starting = await _message(notify)
            assert starting == {"STATUS": "starting: opening the store"}
            ready = await _message(notify)
            # systemd counts the unit started now: ackd must already take requests.
            assert await _ready_status(ackd) == 200
            assert ready["READY"] == "1"
            assert ready["STATUS"].startswith(f"listening on 127.0.0.1:{ackd.port}, store ")

            assert ackd.proc is not None
            asked = _monotonic_usec()
            ackd.proc.send_signal(signal.SIGHUP)  # what ExecReload sends
            reloading = await _message(notify)
            assert reloading["RELOADING"] == "1"
            # CLOCK_MONOTONIC is the machine's: the reload began after it was asked.
            assert asked <= int(reloading["MONOTONIC_USEC"]) <= _monotonic_usec()
            reloaded = await _message(notify)
            assert reloaded["READY"] == "1"
            assert reloaded["STATUS"].endswith("; configuration reloaded")

            # POST /-/reload of a broken file: bracketed the same way, and the status says so.
            config.write_text(config.read_text().replace("policy: standard\n", "policy: gone\n"))
            assert await _reload_over_http(ackd) == 422
            assert (await _message(notify))["RELOADING"] == "1"
            refused = await _message(notify)
            assert refused["READY"] == "1"
            assert refused["STATUS"].endswith("; reload refused, see the log")

            ackd.proc.send_signal(signal.SIGTERM)
            stopping = await _message(notify)
            assert stopping["STOPPING"] == "1"
            assert ackd.proc.wait(timeout=20) == 0
        finally:
            ackd.stop()


def test_an_abstract_notify_socket_is_reached_by_its_at_name(tmp_path: Path) -> None:
    name = f"ackd-test-{tmp_path.name}-{time.monotonic_ns()}"
    with _datagram_socket("\0" + name) as notify:
        notify.setblocking(True)
        notify.settimeout(5)
        SystemdNotify(f"@{name}").ready("up\nand running")
        assert notify.recv(4096) == b"READY=1\nSTATUS=up and running"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotify(None)
    assert notifier.address is None
    notifier.ready("up")  # no socket to send to, no error
    notifier.stopping()


@pytest.mark.parametrize(("value", "address"), [
    (None, None),
    ("", None),
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@/org/freedesktop/systemd1/notify/123", "\0/org/freedesktop/systemd1/notify/123"),
    ("@", None),
    ("vsock:2:1234", None),  # systemd 253's VM form: not ours to speak
    ("relative/path", None),
])
def test_notify_socket_addresses(value: str | None, address: str | None) -> None:
    assert socket_address(value) == address


def test_a_missing_socket_is_logged_not_fatal(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    SystemdNotify(str(tmp_path / "gone")).ready("up")
    assert "could not tell systemd READY=1" in caplog.text


async def _watchdog_pings(sock: socket.socket, count: int) -> list[float]:
    """When each of the next `count` datagrams came (monotonic), each a lone WATCHDOG=1."""
    times = []
    for _ in range(count):
        assert await _message(sock) == {"WATCHDOG": "1"}
        times.append(time.monotonic())
    return times


def _pending(sock: socket.socket) -> list[bytes]:
    found = []
    while True:
        try:
            found.append(sock.recv(4096))
        except BlockingIOError:
            return found


async def test_ackd_serve_keeps_systemds_watchdog_fed_from_its_loop_and_not_when_stopped(
    tmp_path: Path,
) -> None:
    """Under WatchdogSec (WATCHDOG_USEC), WATCHDOG=1 every half of it from READY=1 on; a
    process SIGSTOPped (a replica hung) sends none, so systemd would abort and restart it,
    and sends again once resumed."""
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    with _datagram_socket(str(tmp_path / "notify")) as notify:
        ackd = Ackd(tmp_path, config)
        ackd.env["NOTIFY_SOCKET"] = str(tmp_path / "notify")
        ackd.env["WATCHDOG_USEC"] = "600000"  # pings every 0.3 s
        ackd.start()
        try:
            assert (await _message(notify))["STATUS"].startswith("starting")
            assert (await _message(notify))["READY"] == "1"
            pings = await _watchdog_pings(notify, 4)
            gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
            assert all(0.15 < gap < 1.5 for gap in gaps), gaps  # 0.3 s, on a loaded machine

            assert ackd.proc is not None
            ackd.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.2)
            _pending(notify)  # a ping sent before the stop took effect
            await asyncio.sleep(1.5)  # five intervals: systemd would have given up
            assert _pending(notify) == []
            ackd.proc.send_signal(signal.SIGCONT)
            await _watchdog_pings(notify, 2)

            ackd.proc.send_signal(signal.SIGTERM)
            while "STOPPING" not in (stopping := await _message(notify)):
                assert stopping == {"WATCHDOG": "1"}  # fed until the stop is done
            assert ackd.proc.wait(timeout=20) == 0
        finally:
            if ackd.proc is not None:
                ackd.proc.send_signal(signal.SIGCONT)
            ackd.stop()


@pytest.mark.parametrize(("usec", "pid", "every"), [
    (None, None, None),
    ("", None, None),
    ("30000000", None, 15.0),
    ("30000000", "4242", 15.0),  # this process's pid
    ("30000000", "1", None),  # meant for another process
    ("0", None, None),
    ("soon", None, None),
])
def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    usec: str | None, pid: str | None, every: float | None
) -> None:
    assert watchdog_every(usec, pid, 4242) == every


def test_without_notify_socket_no_watchdog_is_fed() -> None:
    assert SystemdNotify(None, 15.0).watchdog_every is None
