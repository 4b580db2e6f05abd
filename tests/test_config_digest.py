"""ackd_config_hash covers what a replica runs with: the file, the values of its ${VARIABLES}
and the contents of its `*_file`s, so that replicas started before and after a Secret changed
report different values; and it is keyed by the link secret, so that the metric is no oracle
for guessing a secret."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.config.coordinator import Reloaded
from receiver.config.model import Config
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import TOKEN, write_config
from tests.test_api import Api
from tests.test_operations import sample, scrape

URL = "json://127.0.0.1:9/ana"
ENV = {"ANA_URL": URL, "LINK_SECRET": "a-link-secret-of-the-cluster", "TOKEN_DIR": "."}


def with_variables(path: Path) -> Path:
    """The harness's file with ana's contact URL and the link secret from the environment,
    and the webhook token from a file beside it (as deploy/kubernetes does with a Secret)."""
    text = path.read_text()
    text = text.replace(f'url: "{URL}"', 'url: "${ANA_URL}"')
    text = text.replace("secret: e2e-link-secret", "secret: \"${LINK_SECRET}\"")
    token = "webhook: {bearer_token_file: token}"
    text = text.replace(f"webhook: {{bearer_token: {TOKEN}}}", token)
    path.write_text(text)
    (path.parent / "token").write_text(f"{TOKEN}\n")
    return path


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return with_variables(write_config(tmp_path / "ackd.yaml", "127.0.0.1:9"))


def load(path: Path, **env: str) -> Config:
    return config_module.load(path, {**ENV, **env})


def test_the_file_reads_its_secrets_from_the_environment_and_a_file(path: Path) -> None:
    config = load(path)
    assert config.users["ana"].contacts[0].url == URL
    assert config.link_secret == b"a-link-secret-of-the-cluster"
    assert config.webhook_auth.bearer_token == TOKEN


def test_equal_configs_have_equal_digests(path: Path) -> None:
    assert load(path).digest == load(path).digest
    assert load(path).published_digest() == load(path).published_digest()
    # A variable the file does not use is no part of it.
    assert load(path, UNUSED="x").published_digest() == load(path).published_digest()


@pytest.mark.parametrize("change", [
    {"ANA_URL": "json://127.0.0.1:9/ana-new-phone"},  # a contact URL in the Secret
    {"LINK_SECRET": "another-link-secret"},  # links signed here fail on the others
])
def test_a_variables_value_changes_the_digest(path: Path, change: dict[str, str]) -> None:
    assert load(path, **change).digest != load(path).digest
    assert load(path, **change).published_digest() != load(path).published_digest()


def test_a_secret_files_contents_change_the_digest(path: Path) -> None:
    before = load(path)
    (path.parent / "token").write_text("the-rotated-webhook-token\n")
    after = load(path)
    assert after.digest != before.digest
    assert after.published_digest() != before.published_digest()


def test_the_file_itself_still_counts(path: Path) -> None:
    before = load(path)
    path.write_text(path.read_text() + "# a comment\n")
    assert load(path).published_digest() != before.published_digest()


def test_the_metric_is_keyed_by_the_link_secret_and_shows_no_secret(path: Path) -> None:
    """The published value cannot be checked against a guess without the link secret: the
    material's plain SHA-256 (what a guesser could compute) is not it, and the same material
    under another key gives another value."""
    config = load(path)
    material = {"text": path.read_text(), "variables": {k: ENV[k] for k in ("ANA_URL",
                                                                          "LINK_SECRET")},
                "files": {"webhook.bearer_token_file": TOKEN}}
    plain = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    assert config.digest == plain  # what it covers, exactly
    published = config.published_digest()
    assert published != plain
    assert replace(config, link_secret=b"guess").published_digest() != published

    metrics = Metrics()
    metrics.config_loaded(True, 0.0, published)
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "ackd_config_hash") == float(int(published[:12], 16))
    assert str(float(int(plain[:12], 16))) not in text
    for secret in [URL, ENV["LINK_SECRET"], TOKEN, plain[:12]]:
        assert secret not in text


@pytest.fixture
async def api(path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    loaded = replace(config_module.load(path), listen_port=0, data_dir=path.parent / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier, config_path=path)
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


async def test_a_reload_after_a_secret_changed_shows_a_new_hash(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica reloaded (or restarted) after its Secret changed reports another value than
    one still running with the old Secret, though the file is the same."""
    before = sample(await scrape(api), "ackd_config_hash")
    same = api.daemon.try_reload()
    assert isinstance(same, Reloaded)
    assert not same.changed
    assert sample(await scrape(api), "ackd_config_hash") == before  # nothing changed

    monkeypatch.setenv("ANA_URL", "json://127.0.0.1:9/ana-new-phone")
    other = api.daemon.try_reload()
    assert isinstance(other, Reloaded)
    assert other.changed
    assert (other.before, other.after) == (same.after, api.daemon.config.published_digest())
    assert api.daemon.config.users["ana"].contacts[0].url.endswith("ana-new-phone")
    after = sample(await scrape(api), "ackd_config_hash")
    assert after is not None
    assert after != before
