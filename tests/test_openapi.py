"""The OpenAPI document names every route the application registers, and only those, and is a
valid OpenAPI 3.1 document. Adding a route? Describe it in receiver/web/openapi.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from receiver.app.daemon import Daemon, build_web_app
from receiver.config import build as config_module
from receiver.web.openapi import DOCUMENT
from tests.harness import ROOT
from tests.test_api import Api, start_api


def registered(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route of the application ackd serves; aiohttp's HEAD twins of
    GET routes left out, and the links' routes for any method (`*`), which only answer 404 and
    405 as the router would (web/actions.py)."""
    config = replace(config_module.load(ROOT / "config.example.yaml"), data_dir=tmp_path)
    app = build_web_app(Daemon(config).services)
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }


def documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in DOCUMENT["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    routes = registered(tmp_path)
    missing = sorted(routes - documented())
    assert not missing, f"routes not in receiver/web/openapi.py: {missing}"
    stale = sorted(documented() - routes)
    assert not stale, f"documented in receiver/web/openapi.py but not served: {stale}"


def test_the_document_is_valid_openapi() -> None:
    validate(DOCUMENT)


def test_every_path_parameter_is_declared() -> None:
    for path, item in DOCUMENT["paths"].items():
        names = {part[1:-1].split("}")[0] for part in path.replace(".", "/").split("/")
                 if part.startswith("{")}
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def test_the_document_is_served_without_a_token(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert status == 200
    assert body == json.loads(json.dumps(DOCUMENT))
