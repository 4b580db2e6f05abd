"""Start-up: every failure ends `ackd serve` within seconds, exit code 1, with one line naming
the cause; the example's published secrets are refused beyond loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from receiver.config import build as config_module
from receiver.config.model import EXAMPLE_SECRETS, example_secrets_in_use
from tests.harness import ROOT, free_port

EXAMPLE = ROOT / "config.example.yaml"


def serve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ackd serve`, which must end by itself within seconds (a hang fails the test)."""
    return subprocess.run(
        [sys.executable, "-m", "receiver", "serve", *argv], cwd=ROOT, capture_output=True,
        text=True, timeout=20, check=False, env=env,
        stdin=subprocess.DEVNULL,
    )


def cause(result: subprocess.CompletedProcess[str]) -> str:
    """The one line that names the cause: the last on stderr, and no traceback before it."""
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_busy_port_ends_the_process(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve("--config", str(EXAMPLE), "--listen", f"127.0.0.1:{port}",
                       "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert cause(result) == (
        f"ackd: cannot listen on 127.0.0.1:{port}: the address is already in use"
        " (another ackd? choose a free port with --listen)"
    )


def test_a_second_ackd_on_the_same_store_ends_and_leaves_the_first_alone(tmp_path: Path) -> None:
    # Two daemons on one store both send its outbox: the second's start ended the leases of
    # the first's sends in flight and sent them again (the same page twice), even when its own
    # port turned out busy, since the store opened first.
    data = tmp_path / "data"
    port = free_port()
    first = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--config", str(EXAMPLE),
         "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(port, first)
        for listen in (f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}"):  # free, then busy
            result = serve("--config", str(EXAMPLE), "--listen", listen, "--data-dir", str(data))
            assert result.returncode == 1
            assert cause(result) == (
                f"ackd: the store {data / 'ackd.db'} is in use by another ackd (pid {first.pid}):"
                " stop it, or give this one a data directory of its own (--data-dir)"
            )
            assert "in flight" not in result.stderr  # it never opened the store
    finally:
        first.terminate()
        _, errors = first.communicate(timeout=20)
    assert first.returncode == 0, errors
    # Stopped, the first leaves the store to whoever starts next: this one gets as far as
    # its (busy) port.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = serve("--config", str(EXAMPLE), "--listen", f"127.0.0.1:{taken}",
                       "--data-dir", str(data))
    assert cause(result).startswith(f"ackd: cannot listen on 127.0.0.1:{taken}: ")


def _wait_ready(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("ackd did not become ready within 20s")


def test_an_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    # Root may write anywhere its permission bits forbid; below a plain file nobody can.
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    result = serve("--config", str(EXAMPLE), "--listen", f"127.0.0.1:{free_port()}",
                   "--data-dir", str(data))
    assert result.returncode == 1
    assert cause(result) == f"ackd: data directory {data} is not writable: Not a directory"


def test_an_unreadable_config_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = serve("--config", str(missing))
    assert result.returncode == 1
    assert cause(result).startswith(f"{missing}: (file): cannot read: ")


def test_example_secrets_are_refused_beyond_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACKD_")}
    # 0.0.0.0 is refused before anything binds, so nothing is opened to the network.
    result = serve("--config", str(EXAMPLE), "--listen", f"0.0.0.0:{free_port()}",
                   "--data-dir", str(tmp_path / "data"), env=env)
    assert result.returncode == 1
    line = cause(result)
    assert line.startswith("ackd: refusing to listen on 0.0.0.0:")
    assert "webhook.bearer_token" in line
    assert "set ACKD_WEBHOOK_TOKEN and set ACKD_API_TOKEN" in line


@pytest.mark.parametrize(
    ("host", "environ", "refused"),
    [
        ("127.0.0.1", {}, False),
        ("127.0.0.53", {}, False),
        ("::1", {}, False),
        ("localhost", {}, False),
        ("0.0.0.0", {}, True),
        ("::", {}, True),
        ("10.1.2.3", {}, True),
        ("ackd.example.com", {}, True),
        ("0.0.0.0", {"ACKD_WEBHOOK_TOKEN": "w-9f2c"}, True),  # the API token is still known
        ("0.0.0.0", {"ACKD_WEBHOOK_TOKEN": "w-9f2c", "ACKD_API_TOKEN": "a-77e1"}, False),
    ],
)
def test_which_listeners_are_refused(host: str, environ: dict[str, str], refused: bool) -> None:
    loaded = replace(config_module.load(EXAMPLE, environ=environ), listen_host=host)
    assert (example_secrets_in_use(loaded) is not None) == refused


def test_the_example_publishes_no_link_secret() -> None:
    """Without ACKD_LINK_SECRET the links are signed with the random secret kept in data_dir,
    never with one anybody can read in the example."""
    assert config_module.load(EXAMPLE, environ={}).link_secret == b""


def test_every_secret_default_in_the_example_is_known() -> None:
    defaults = re.findall(r"\$\{ACKD_\w*(?:TOKEN|SECRET|PASSWORD)\w*:-([^}]*)\}",
                          EXAMPLE.read_text())
    assert defaults
    assert set(defaults) <= EXAMPLE_SECRETS


@pytest.mark.parametrize("manifest", ["ackd.yaml", "ackd-replicas.yaml"])
def test_the_kubernetes_placeholders_are_refused_beyond_loopback(manifest: str) -> None:
    """The manifests' Secrets ship `replace-with-...` values: applied as they are, a pod on
    0.0.0.0 would take webhooks, API calls and signed links anybody can forge."""
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes" / manifest).read_text()))
    [secret] = [doc["stringData"] for doc in docs if doc["kind"] == "Secret"]
    tokens = {"ACKD_WEBHOOK_TOKEN": "w-9f2c", "ACKD_API_TOKEN": "a-77e1"}
    for key, value in secret.items():
        if key not in tokens:
            continue
        loaded = replace(config_module.load(EXAMPLE, environ={**tokens, key: value}),
                         listen_host="0.0.0.0")
        refused = example_secrets_in_use(loaded)
        assert refused is not None, key
        assert "deploy/" in refused
    if "ACKD_LINK_SECRET" in secret:
        loaded = replace(config_module.load(EXAMPLE, environ=tokens), listen_host="0.0.0.0",
                         link_secret=secret["ACKD_LINK_SECRET"].encode())
        assert "links.secret" in (example_secrets_in_use(loaded) or "")


def test_the_earlier_examples_link_secret_is_refused_too() -> None:
    """Copies of earlier examples carry ${ACKD_LINK_SECRET:-change-me-link-secret}."""
    tokens = {"ACKD_WEBHOOK_TOKEN": "w-9f2c", "ACKD_API_TOKEN": "a-77e1"}
    loaded = replace(config_module.load(EXAMPLE, environ=tokens), listen_host="0.0.0.0",
                     link_secret=b"change-me-link-secret")
    refused = example_secrets_in_use(loaded)
    assert refused is not None
    assert "links.secret" in refused


def test_the_daemon_starts_without_what_only_a_calendar_needs() -> None:
    # A restart is when the pager is blind: the calendar's library is imported when a
    # calendar is asked for (receiver/oncall/calendar.py), not on the way to /-/ready.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, receiver.cli.main, receiver.app.daemon;"
         " print(sorted(m for m in ('icalendar', 'dateutil') if m in sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert loaded.stdout.strip() == "[]"
