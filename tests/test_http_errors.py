"""Every error a real daemon answers is JSON naming the field, aiohttp's own refusals included,
and a refused header never reaches the log."""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.testing import RecordingNotifier
from tests.harness import API_TOKEN, ROOT, write_config

HOST = "127.0.0.1"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    path = write_config(tmp_path / "ackd.yaml", f"{HOST}:9", step_delay="1h")
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    started = Daemon(loaded, notifier=RecordingNotifier())
    await started.start()
    yield started
    await started.stop()


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (every error answer closes the connection or
    carries a Content-Length)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = (line.partition(":") for line in lines[1:] if line)
        headers = {k.lower(): v.strip() for k, _, v in fields}
        body = await reader.readexactly(int(headers["content-length"]))
        return status, headers, body
    finally:
        writer.close()


def request(method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes = b"") -> bytes:
    sent = {"Host": "ackd", "Authorization": f"Bearer {API_TOKEN}",
            "Content-Length": str(len(body)), **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in sent.items()), "", ""]
    return "\r\n".join(lines).encode() + body


def refusal(answer: tuple[int, dict[str, str], bytes], status: int, field: str) -> Any:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"].startswith("application/json"), (headers, body)
    document = json.loads(body)
    assert document["field"] == field, document
    assert document["error"]
    return document


async def test_a_header_over_the_limit_gets_json_and_stays_out_of_the_log(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t" + "a" * 9000
    answer = await exchange(daemon.port or 0, request(
        "GET", "/api/v1/incidents", headers={"Authorization": f"Bearer {secret}"}))
    refusal(answer, 400, "headers")
    assert "s3cr3t" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


async def test_a_broken_request_line_gets_json(daemon: Daemon) -> None:
    answer = await exchange(daemon.port or 0, b"GET /\x01 HTTP/1.1\r\nHost: ackd\r\n\r\n")
    refusal(answer, 400, "request")


async def test_unknown_path_and_wrong_method_get_json(daemon: Daemon) -> None:
    refusal(await exchange(daemon.port or 0, request("GET", "/api/v1/nowhere")), 404, "path")
    _, headers, _ = answer = await exchange(daemon.port or 0, request("GET", "/api/v1/alerts"))
    document = refusal(answer, 405, "method")
    assert headers["allow"] == "POST"
    assert "POST" in document["error"]


async def test_an_api_body_over_the_limit_gets_json_413(daemon: Daemon) -> None:
    body = b" " * (2 * daemon.config.max_body_bytes)
    answer = await exchange(daemon.port or 0, request(
        "POST", "/api/v1/incidents/1/notes", headers={"Content-Type": "application/json"},
        body=body))
    refusal(answer, 413, "body")


@pytest.mark.parametrize(("extra", "status", "field"), [(0, 404, "id"), (1, 413, "body")],
                         ids=["at the limit", "one byte over"])
async def test_an_api_body_is_refused_from_one_byte_over_the_limit(
    daemon: Daemon, extra: int, status: int, field: str
) -> None:
    """The limit is exact, as the webhook's: a body of max_body_bytes is read and parsed (the
    note's incident does not exist: 404 naming the id), one byte more is 413 naming it."""
    limit = daemon.config.max_body_bytes
    note = b'{"text": "a note"}'
    body = note + b" " * (limit + extra - len(note))  # valid JSON either way
    answer = await exchange(daemon.port or 0, request(
        "POST", "/api/v1/incidents/1/notes", headers={"Content-Type": "application/json"},
        body=body))
    document = refusal(answer, status, field)
    if status == 413:
        assert document["error"] == f"the body is larger than {limit} bytes"


def test_aiohttp_is_bounded_to_the_minor_version_whose_internals_errors_py_uses() -> None:
    """web/errors.py subclasses aiohttp's connection handler through undocumented parts, which
    another minor version may change: pyproject admits the minor these tests run on, none
    after it, and no release before 3.14.4 (client_max_size bypassed by a multipart part)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = next(r for r in map(Requirement, project["dependencies"]) if r.name == "aiohttp")
    installed = Version(aiohttp.__version__)
    assert installed in wanted.specifier
    assert Version(f"{installed.major}.{installed.minor + 1}.0") not in wanted.specifier
    assert Version("3.14.3") not in wanted.specifier
