"""Child processes of the benchmark: ackd (`python -m receiver serve`) and the bare server.

Everything listens on 127.0.0.1 on free ports. Each child writes its output to a log file in
the benchmark's temporary directory; a child that dies or never gets ready raises with the
tail of that log, so a failed run says why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
READY_WITHIN = 60.0
STOP_WITHIN = 60.0
POLL = 0.01


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One child process with its log file and readiness URL."""

    def __init__(self, name: str, argv: list[str], log: Path, port: int) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=ROOT, env=os.environ.copy(),
            )

    async def start_ready(self) -> float:
        """Start and wait for /-/ready; the seconds from spawning the process to ready."""
        self.start()
        deadline = time.monotonic() + READY_WITHIN
        timeout = aiohttp.ClientTimeout(total=1)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                self._check_alive()
                if await _ready(session, f"{self.url}/-/ready"):
                    return time.perf_counter() - self.started_at
                await asyncio.sleep(POLL)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {READY_WITHIN}s:\n{self.tail()}")

    def rss_kib(self) -> int:
        """Resident set size from /proc/PID/status (VmRSS, in KiB)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.name} (pid {self.proc.pid})")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process used so far (/proc/PID/stat)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM (graceful: ackd drains its store queue), SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_WITHIN)
        self.proc = None

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.proc = None
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def _ready(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def ackd(workdir: Path, config: Path, data_dir: Path, log_level: str = "INFO") -> Child:
    """ackd exactly as deployed: the `serve` command on a config file and a data directory."""
    port = free_port()
    argv = [
        sys.executable, "-m", "receiver", "--log-level", log_level, "serve",
        "--config", str(config), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
    ]
    return Child("ackd", argv, workdir / "ackd.log", port)


def bare(workdir: Path, name: str) -> Child:
    port = free_port()
    argv = [sys.executable, str(BENCH / "bare_server.py"), str(port)]
    return Child(name, argv, workdir / f"{name}.log", port)
