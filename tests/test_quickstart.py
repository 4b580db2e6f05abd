"""The README's quick start, followed literally: its commands are read from README.md (so this
breaks when the README drifts) and run as a new user would, in a copy of the working tree:
`make run` in one terminal, `.venv/bin/ackd sink` in a second, the rest in a third. A page
must reach the sink and the CLI must acknowledge the incident.

The quick start names fixed ports (9095, 9099). To run it as written without taking those
ports from anyone on this machine, everything runs in a network namespace of its own
(`unshare -n`, loopback only), where they are free. The copy shares this tree's .venv: the
`make run` set-up step itself is what `make test` ran before this test.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import ROOT

SECTION = "## Quick start"
# SIOCSIFFLAGS on lo with IFF_UP | IFF_LOOPBACK | IFF_RUNNING: a new namespace's loopback is
# down, and `ip` (iproute2) may not be installed.
LOOPBACK_UP = (
    "import fcntl, socket, struct; "
    "fcntl.ioctl(socket.socket(), 0x8914, struct.pack('16sH14s', b'lo', 0x49, b''))"
)
WITHIN = 60.0


def quick_start_blocks(readme: str) -> list[list[str]]:
    """The commands of each ```sh block in the quick start section, comments and blank lines
    left out, backslash continuations joined."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + 1)
    section = readme[start:end if end != -1 else None]
    blocks = []
    for body in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        joined = body.replace("\\\n", " ")
        lines = [line.strip() for line in joined.splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def test_the_quick_start_has_three_terminals() -> None:
    """Two long-running commands (the daemon, the sink), then the commands that page and ack."""
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    assert [len(b) for b in blocks[:2]] == [1, 1], blocks
    assert len(blocks) == 3, blocks
    assert blocks[0] == ["make run"]
    assert any("ackd ack" in line for line in blocks[2])


def _needs(what: str, available: bool) -> None:
    if available:
        return
    message = f"the quick start test needs {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _own_namespace_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def _copy_tree(to: Path) -> None:
    """The files a clone would have (and this tree's edits), with their times, so make sees
    the shared .venv as up to date."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    (to / ".venv").symlink_to(ROOT / ".venv")


def _script(blocks: list[list[str]]) -> str:
    daemon, sink, steps = blocks[0][0], blocks[1][0], blocks[2]
    third = "\n".join(f"echo '$ '{shlex.quote(line)}\n{line}" for line in steps)
    return f"""set -eu
python3 -c {shlex.quote(LOOPBACK_UP)}
{daemon} > daemon.log 2>&1 &
{sink} > sink.log 2>&1 &
for i in $(seq 300); do
    if curl -sf http://127.0.0.1:9095/-/ready >/dev/null && grep -q 'ackd sink:' sink.log
    then break; fi
    sleep 0.1
done
{third}
for i in $(seq 100); do
    grep -q 'acknowledged by' sink.log && break
    sleep 0.1
done
"""


def test_the_readme_quick_start_pages_and_acknowledges(tmp_path: Path) -> None:
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    _needs("a network namespace of its own (unshare -n, as root)", _own_namespace_works())
    _needs("curl", shutil.which("curl") is not None)
    _needs("the .venv that `make run` installs", (ROOT / ".venv/bin/ackd").exists())
    tree = tmp_path / "clone"
    _copy_tree(tree)
    # An out-of-date .venv would make `make run` reinstall into the shared .venv, from the
    # copy, with no network in the namespace: refuse instead.
    stale = subprocess.run(["make", "-q", ".venv/.installed"], cwd=tree, check=False)
    _needs("an up-to-date .venv (run `make .venv/.installed`)", stale.returncode == 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACKD_")}
    with (tmp_path / "steps.log").open("wb") as out:
        shell = subprocess.Popen(
            ["unshare", "-n", "bash", "-c", _script(blocks)], cwd=tree, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = shell.wait(timeout=WITHIN)
        finally:
            _stop_group(shell.pid)
    steps = (tmp_path / "steps.log").read_text()
    daemon = (tree / "daemon.log").read_text()
    sink = (tree / "sink.log").read_text()
    story = f"--- steps\n{steps}\n--- make run\n{daemon}\n--- sink\n{sink}"
    assert code == 0, story
    # The on-call person's page with its links reached the sink, then the acknowledgement.
    assert re.search(r"--- .* message to /\w+\n\[SEV1\] #1 payments: Payment API is down",
                     sink), story
    assert "Acknowledge: http://127.0.0.1:9095/l/" in sink, story
    # The SEV1's note to the example's stakeholder channel, as the README says.
    assert ("message to /exec-status\n[SEV1] Incident #1 opened: payments: Payment API is down"
            in sink), story
    assert "#1 acknowledged by ops-cli" in sink, story
    assert "#1 acknowledged" in steps.splitlines(), story
    # ackd's log, as the README says: two lines per delivery (Apprise's, and ackd's naming
    # incident, recipient and result) and one for the ack.
    assert re.search(r"incident #1 triggered to \w+ via json \(json://127\.0\.0\.1:9099/\S+\),"
                     r" attempt 1 of \d+: delivered in", daemon), story
    assert "Sent JSON POST notification." in daemon, story
    assert "incident #1 acknowledged by ops-cli" in daemon, story


def _stop_group(pgid: int) -> None:
    """Stop what the quick start left running (make, ackd, the sink): the process group this
    test started, by its id."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
