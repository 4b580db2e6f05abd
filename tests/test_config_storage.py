"""storage.postgres: the DSN from the file, a file or the environment, checked with file, line
and key, and its password never in a repr, an error or a log line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from receiver.config import build as config
from receiver.config.storage import CONNECT_TIMEOUT, address, dsn_problem, masked_dsn
from receiver.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BODY = """\
links: {secret: a-long-shared-link-secret}
teams: [{name: ops}]
users: [{name: ana, contacts: [{url: "json://127.0.0.1:9/ana"}]}]
policies: [{name: p, steps: [{notify: [{user: ana}]}]}]
route: {team: ops, policy: p, severity: SEV1}
"""


def write(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "ackd.yaml"
    path.write_text(storage + BODY)
    return path


def test_no_postgres_keeps_sqlite() -> None:
    loaded = config.load(ROOT / "config.example.yaml", environ={})
    assert loaded.postgres is None
    assert loaded.store_kind == "sqlite"


def test_a_dsn_from_a_file_is_read_and_kept_out_of_the_repr() -> None:
    loaded = config.load(ROOT / "tests/config/good/postgres.yaml")
    assert loaded.store_kind == "postgres"
    assert loaded.postgres is not None
    assert loaded.postgres.dsn == "postgresql://ackd:s3cret-pg@db.example:5432/ackd"
    assert loaded.postgres.pool_size == 4
    assert "s3cret-pg" not in repr(loaded)
    assert loaded.postgres.masked == "postgresql://ackd:***@db.example:5432/ackd"


def test_a_dsn_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "storage: {postgres: {dsn: '${ACKD_DSN}'}}\n")
    loaded = config.load(path, environ={"ACKD_DSN": "postgres://u:pw@127.0.0.1/ackd"})
    assert loaded.postgres is not None
    assert loaded.postgres.dsn == "postgres://u:pw@127.0.0.1/ackd"


@pytest.mark.parametrize(
    ("dsn", "wanted"),
    [
        ("mysql://ackd:hunter2@db/ackd", "must be a URL of the form"),
        ("postgresql://ackd:hunter2@db:99999/ackd", "is not a DSN of the form"),
        ("postgresql://ackd:hunter2@:5432/ackd", "names no host"),
        ("host=db password=hunter2", "must be a URL of the form"),
    ],
)
def test_a_bad_dsn_is_named_by_key_and_line_never_shown(
    tmp_path: Path, dsn: str, wanted: str
) -> None:
    path = write(tmp_path, f"storage:\n  postgres:\n    dsn: '{dsn}'\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    text = str(caught.value)
    assert f"{path}:3: storage.postgres.dsn: {wanted}" in text
    assert "hunter2" not in text


def test_both_dsn_and_dsn_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text("postgresql://u@db/ackd")
    path = write(tmp_path, "storage: {postgres: {dsn: 'postgresql://u@db/a', dsn_file: dsn}}\n")
    with pytest.raises(ConfigError, match="storage.postgres.dsn_file: give dsn or dsn_file"):
        config.load(path)


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://ackd:pw@db:5432/ackd", "postgresql://ackd:***@db:5432/ackd"),
        ("postgresql://ackd@db/ackd", "postgresql://ackd@db/ackd"),
        ("postgresql://ackd:p%40ss@db/ackd?sslmode=require&password=x",
         "postgresql://ackd:***@db/ackd?sslmode=require&password=***"),
        ("postgresql://a:b:c@[::1]:5432/ackd", "postgresql://a:***@[::1]:5432/ackd"),
    ],
)
def test_the_masked_dsn_hides_every_password(dsn: str, masked: str) -> None:
    assert dsn_problem(dsn) is None
    assert masked_dsn(dsn) == masked


def test_the_connect_timeout_is_ten_seconds_unless_set(tmp_path: Path) -> None:
    path = write(tmp_path, "storage: {postgres: {dsn: 'postgresql://u:pw@db/ackd'}}\n")
    loaded = config.load(path)
    assert loaded.postgres is not None
    assert loaded.postgres.connect_timeout == CONNECT_TIMEOUT == 10.0  # asyncpg's own: 60
    path = write(tmp_path, "storage: {postgres: {dsn: 'postgresql://u:pw@db/ackd',"
                           " connect_timeout: 2500ms}}\n")
    assert config.load(path).postgres == replace(loaded.postgres, connect_timeout=2.5)
    path = write(tmp_path, "storage: {postgres: {dsn: 'postgresql://u:pw@db/ackd',"
                           " connect_timeout: 0s}}\n")
    with pytest.raises(ConfigError, match="storage.postgres.connect_timeout"):
        config.load(path)


@pytest.mark.parametrize(
    ("dsn", "where"),
    [
        ("postgresql://ackd:pw@db.example:6432/ackd", "db.example:6432"),
        ("postgres://ackd:pw@10.0.0.5/ackd", "10.0.0.5:5432"),
        ("postgresql://ackd:pw@[::1]:5433/ackd", "[::1]:5433"),
        ("postgresql://ackd@/ackd?host=/run/postgresql&password=pw", "/run/postgresql"),
    ],
)
def test_the_address_a_message_names_holds_no_credentials(dsn: str, where: str) -> None:
    assert address(dsn) == where


# The password of tester-ha's report, as an operator pastes it: '@', '/', '#', '%', ':'.
RAW = "postgresql://sp:p@ss/w#rd%:x@127.0.0.1:15532/ackd"
ENCODED = "postgresql://sp:p%40ss%2Fw%23rd%25%3Ax@127.0.0.1:15532/ackd"


@pytest.mark.parametrize(
    "dsn",
    [
        pytest.param(RAW, id="at-slash-hash"),
        pytest.param("postgresql://sp:p@ss@db/ackd", id="at"),
        pytest.param("postgresql://sp:pa#ss@db/ackd", id="hash"),
        pytest.param("postgresql://sp:pa/ss@db/ackd", id="slash"),
        pytest.param("postgresql://sp:100%sure@db/ackd", id="percent"),
        pytest.param("postgresql://sp:p@ss@db/ackd?application_name=a@b", id="at-and-query"),
    ],
)
def test_a_dsn_whose_password_holds_raw_reserved_characters_is_refused_unshown(
    tmp_path: Path, dsn: str
) -> None:
    """urlsplit (asyncpg's, libpq's) reads such a DSN's host out of the password: check-config
    said OK, and serve printed most of the password. Refused at load, by file, line and key,
    saying to percent-encode; not a character of the password shown."""
    (tmp_path / "dsn").write_text(dsn + "\n")
    path = write(tmp_path, "storage:\n  postgres:\n    dsn_file: dsn\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    text = str(caught.value)
    assert f"{path}:3: storage.postgres.dsn_file: holds a raw" in text, text
    assert "percent-encode" in text
    assert "'@' is %40" in text
    password = dsn.partition("sp:")[2].rpartition("@")[0].partition("?")[0]
    for piece in (password, password[1:4], "ss/w", "rd%", "100%"):
        assert piece not in text, piece


def test_the_mask_covers_a_raw_password_up_to_the_last_at_before_the_host() -> None:
    assert masked_dsn(RAW) == "postgresql://sp:***@127.0.0.1:15532/ackd"
    assert masked_dsn("postgresql://sp:p@ss@db/ackd?password=x&application_name=a@b") == (
        "postgresql://sp:***@db/ackd?password=***&application_name=a@b")


def test_a_percent_encoded_password_is_taken(tmp_path: Path) -> None:
    assert dsn_problem(ENCODED) is None
    assert masked_dsn(ENCODED) == "postgresql://sp:***@127.0.0.1:15532/ackd"
    assert dsn_problem("postgresql://ackd@db/ackd?application_name=a@b") is None
    (tmp_path / "dsn").write_text(ENCODED + "\n")
    loaded = config.load(write(tmp_path, "storage:\n  postgres:\n    dsn_file: dsn\n"))
    assert loaded.postgres is not None
    assert loaded.postgres.dsn == ENCODED
