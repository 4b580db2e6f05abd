"""Where the store lives: SQLite in data_dir (the default), or a PostgreSQL database that
several replicas share (`storage.postgres`). Its DSN may hold a password: it is kept out of
every repr and error, and logged only through `masked_dsn`."""

from __future__ import annotations

from dataclasses import field
from urllib.parse import urlsplit, urlunsplit

from receiver.core.frozen import frozen

SCHEMES = ("postgresql", "postgres")
DSN_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
DEFAULT_PORT = 5432
# Seconds one connection may take to open (TCP, TLS, startup, authentication). asyncpg's own
# default is 60: a database that accepts TCP and never answers (a firewall that drops, a hung
# server) held `ackd serve` a minute before it exited, and a pool connection replaced while
# running kept its job waiting as long. A healthy server answers in milliseconds, even a
# remote one over TLS; failing in 10 s lets systemd's Restart= try again sooner.
CONNECT_TIMEOUT = 10.0


@frozen
class PostgresSettings:
    dsn: str = field(repr=False)
    pool_size: int = 10
    connect_timeout: float = CONNECT_TIMEOUT  # seconds

    @property
    def masked(self) -> str:
        return masked_dsn(self.dsn)


def dsn_problem(dsn: str) -> str | None:
    """Why `dsn` is no DSN asyncpg can use, without repeating it (it may hold a password)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port  # raises on a port that is no number or out of range
    except ValueError as exc:
        return f"is not a DSN of the form {DSN_FORM} ({exc}; the value is not shown)"
    if parts.scheme not in SCHEMES:
        return (f"must be a URL of the form {DSN_FORM} (scheme postgresql or postgres;"
                " the value is not shown)")
    if not parts.hostname and "host=" not in parts.query:
        return f"names no host: {DSN_FORM} (the value is not shown)"
    del port
    return None


def address(dsn: str) -> str:
    """Where the DSN connects, HOST:PORT (a `?host=` of the query, such as a socket's
    directory, as given), for a message: no user, no password."""
    parts = urlsplit(dsn)
    host = parts.hostname
    if not host:
        hosts = [v for k, _, v in (i.partition("=") for i in parts.query.split("&"))
                 if k == "host"]
        return hosts[0] if hosts else "?"
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{parts.port or DEFAULT_PORT}"


def masked_dsn(dsn: str) -> str:
    """The DSN with its password (in the address or as ?password=) replaced by ***."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostinfo}"
    query = "&".join(
        "password=***" if item.partition("=")[0] == "password" else item
        for item in parts.query.split("&")
    ) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
