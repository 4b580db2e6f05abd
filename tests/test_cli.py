"""The command line as a new user meets it: help written for them, a version, a clear word
when the API token is missing, and `ackd sink`, which prints the pages it receives."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import version

import aiohttp
import pytest

from receiver.cli import main, sink
from tests.harness import ROOT, free_port

COMMANDS = ["serve", "migrate", "check-config", "routes", "oncall", "ack", "resolve", "snooze",
            "unack", "incidents", "sink", "postmortem", "report", "drill", "role", "note",
            "declare", "reassign", "responder", "severity"]


def ackd(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=30, check=False, env=env,
    )


def test_version() -> None:
    result = ackd("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"ackd {version('ackd')}")


def test_help_is_written_for_users() -> None:
    result = ackd("--help")
    assert result.returncode == 0
    text = result.stdout
    assert "It only builds a Config" not in text
    description = text.split("\n\n")[1]
    assert description.startswith("ackd receives Prometheus Alertmanager's webhooks")
    assert "ACKD_API_TOKEN" in text
    for command in COMMANDS:
        assert command in text


# Every command that asks a running ackd through its API (with --url and --token).
TALKING = ["ack", "declare", "drill", "feed", "heartbeats", "incidents", "maintenance", "note",
           "oncall", "override", "postmortem", "reassign", "reload", "report", "resolve",
           "responder", "role", "severity", "snooze", "unack"]


def test_help_names_every_command_that_talks_to_a_running_ackd() -> None:
    """In-process: the parser's help is what `ackd --help` prints (the subprocess above)."""
    text = main._parser().format_help()
    epilog = " ".join(text.split("\n\n")[-1].split())
    listed = epilog.split("talk to a running ackd: ", 1)[1].split(". ", 1)[0]
    assert listed.split(", ") == TALKING
    assert "ACKD_URL" in epilog
    assert "ACKD_API_TOKEN" in epilog
    assert "change-me-too" in epilog


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command: str) -> None:
    result = ackd(command, "--help")
    assert result.returncode == 0
    assert result.stdout.split("\n\n")[1].strip()  # a description, not just the usage line


@pytest.mark.parametrize("argv", [("ack", "1"), ("incidents",), ("feed", "user", "ana")])
def test_a_missing_api_token_is_named(argv: tuple[str, ...]) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = ackd(*argv, "--url", f"http://127.0.0.1:{free_port()}", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{argv[0]}: no API token: set ACKD_API_TOKEN to one of the config's api.tokens "
        "(config.example.yaml: change-me-too), or pass --token"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("oncall", "payments", "--config", "config.example.yaml", "--at",
          "9999-12-31T23:59:59Z"),
         "--at: 9999-12-31T23:59:59+00:00 is too far from now for the schedule's calendar"),
        (("check-config", "--since", "9999-12-31T00:00:00Z", "config.example.yaml"),
         "--since: 9999-12-31T00:00:00+00:00 is too far from now for the schedules' calendar"),
    ],
)
def test_a_time_past_the_calendar_is_a_usage_error(argv: tuple[str, ...], said: str) -> None:
    result = ackd(*argv)
    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (2, said)


def test_sink_prints_a_json_page() -> None:
    body = b'{"version": "1.0", "title": "[SEV1] #4 db down", "message": "line 1\\nline 2"}'
    at = datetime(2026, 3, 2, 10, 4, 5)
    assert sink.describe("/ana", body, at) == (
        "--- 10:04:05 message to /ana\n[SEV1] #4 db down\n    line 1\n    line 2\n"
    )


def test_sink_calls_a_note_no_page() -> None:
    """What Apprise posts does not say whether it is a page or a note (its `type` is a colour,
    "failure" for a SEV1's stakeholder note as for its page): each is a message."""
    for title, kind in (("#1 acknowledged by ops-cli", "info"),
                        ("[SEV1] Incident #1 opened: payments: db down", "failure")):
        body = json.dumps({"version": "1.0", "title": title, "message": "m", "type": kind})
        printed = sink.describe("/bo", body.encode(), datetime(2026, 1, 1))
        assert printed == f"--- 00:00:00 message to /bo\n{title}\n    m\n"


def test_sink_escapes_control_characters() -> None:
    body = b'{"title": "x\\u001b[2Jy", "message": "a\\tb"}'
    printed = sink.describe("/ana", body, datetime(2026, 1, 1))
    assert "\x1b" not in printed
    assert "x\\x1b[2Jy" in printed
    assert "a\tb" in printed


def test_sink_prints_other_bodies_as_they_came() -> None:
    printed = sink.describe("/form", b"title=a&message=b", datetime(2026, 1, 1))
    assert printed.endswith("message to /form\ntitle=a&message=b\n")


async def test_sink_answers_200_and_prints_each_delivery() -> None:
    out = io.StringIO()
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(sink.run("127.0.0.1", port, out, stop))
    try:
        for _ in range(100):
            if "ackd sink:" in out.getvalue():
                break
            await asyncio.sleep(0.02)
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/bo", json={"title": "t", "message": "m"}
        ) as response:
            assert response.status == 200
    finally:
        stop.set()
        await server
    assert "message to /bo\nt\n    m\n" in out.getvalue()


def test_sink_on_a_busy_port_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ackd("sink", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"ackd sink: cannot listen on 127.0.0.1:{port}: the address is already in use"
        " (another ackd? choose a free port with --listen)"
    )


def test_an_address_that_is_not_a_url_is_named_without_a_traceback() -> None:
    for url in ("not-a-url", "http://[broken"):
        result = ackd("ack", "2", "--url", url, "--token", "t")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"cannot reach ackd at {url}: not a"), result.stderr


def test_usage_errors_list_commands_by_name() -> None:
    result = ackd("--url", "x", "ack", "2")
    assert result.returncode == 2
    assert "'ack', 'resolve', 'snooze', 'unack'" in result.stderr
    assert "Action" not in result.stderr


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    # `ackd oncall payments | head -1`: head exits, ackd's next write meets a closed pipe.
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "oncall", "payments", "--config",
         "config.example.yaml"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipe" not in stderr, stderr
    assert proc.returncode == 1


# Every command that asks a running ackd, and what its error line starts with (the command,
# and what it was about) when the API refuses it.
ASKING = [
    (["ack", "12"], "ack #12"), (["snooze", "12", "--for", "10m"], "snooze #12"),
    (["incidents"], "incidents"), (["heartbeats"], "heartbeats"), (["reload"], "reload"),
    (["maintenance", "list"], "maintenance"), (["maintenance", "delete", "3"], "maintenance"),
    (["override", "list", "payments"], "override list"),
    (["override", "delete", "payments", "3"], "override delete"),
    (["oncall", "payments"], "oncall: asking ackd at {url}"), (["feed", "user", "ana"], "feed"),
    (["postmortem", "12"], "postmortem #12"), (["report"], "report"),
    (["drill", "payments"], "drill payments"), (["note", "12", "hi"], "note #12"),
    (["declare", "payments", "SEV1", "down"], "declare"),
]


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An ackd that refuses every request for want of the admin scope."""

    def _refuse(self) -> None:
        body = json.dumps({"error": "needs scope 'admin'", "scope": "admin"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def refusing() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("argv", "what"), ASKING, ids=[" ".join(a) for a, _ in ASKING])
def test_every_command_asking_ackd_says_why_it_could_not_in_one_line(
    argv: list[str], what: str, refusing: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """One wrapper (client.ask) answers for them all: ackd out of reach is "cannot reach ackd
    at URL: why"; the API's refusal is the command and what it was about, then the status and
    the reason."""
    closed = "http://127.0.0.1:1"
    assert main.main([*argv, "--url", closed, "--token", "t"]) == 1
    said = capsys.readouterr()
    assert said.err.startswith(f"cannot reach ackd at {closed}: "), said.err
    assert (said.out, said.err.count("\n")) == ("", 1)

    assert main.main([*argv, "--url", refusing, "--token", "t"]) == 1
    said = capsys.readouterr()
    assert said.err.startswith(f"{what.format(url=refusing)}: HTTP 403: "), said.err
    assert said.err.endswith("needs scope 'admin'\n"), said.err
    assert (said.out, said.err.count("\n")) == ("", 1)
