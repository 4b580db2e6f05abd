"""Where the store lives: SQLite in data_dir (the default), or a PostgreSQL database that
several replicas share (`storage.postgres`). Its DSN may hold a password: it is kept out of
every repr and error, and logged only through `masked_dsn`."""

from __future__ import annotations

import re
from dataclasses import field
from urllib.parse import urlsplit

from receiver.core.frozen import frozen

SCHEMES = ("postgresql", "postgres")
DSN_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
DEFAULT_PORT = 5432
ENCODE = ("percent-encode the user and password: '@' is %40, '/' %2F, '#' %23, '?' %3F,"
          " '%' %25, ':' in the user %3A")
# What a user or password must not hold raw: urlsplit (asyncpg's) and libpq read the host out
# of the password then, and a check would pass a DSN whose message shows most of it.
_RESERVED = "@/#?"
_RAW_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
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
    userinfo = _userinfo(dsn)
    if userinfo is not None and (
            any(c in userinfo for c in _RESERVED) or _RAW_PERCENT.search(userinfo)):
        return (f"holds a raw '@', '/', '#', '?' or '%' in its user or password: {ENCODE}"
                " (the value is not shown)")
    try:
        parts = urlsplit(dsn)
        port = parts.port  # raises on a port that is no number or out of range
    except ValueError as exc:
        return (f"is not a DSN of the form {DSN_FORM} ({exc}; if the password holds"
                f" reserved characters, {ENCODE}; the value is not shown)")
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
    """The DSN with its password (everything between `://USER:` and the last `@` before the
    host, and ?password=) replaced by ***: an unencoded '@', '/' or '#' in the password is
    masked too, though dsn_problem refuses such a DSN."""
    scheme, sep, rest = dsn.partition("://")
    userinfo = _userinfo(dsn)
    if userinfo is not None:
        hostinfo = rest[len(userinfo) + 1:]
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{hostinfo}" if colon else f"{userinfo}@{hostinfo}"
    base, question, query = rest.partition("?")
    if query:
        query = "&".join("password=***" if item.partition("=")[0] == "password" else item
                         for item in query.split("&"))
    return f"{scheme}{sep}{base}{question}{query}"


def _userinfo(dsn: str) -> str | None:
    """What the DSN holds between `://` and the last `@` before its host, or None. An '@'
    after a '?' with none before it is the query's (a value may hold one)."""
    _, sep, rest = dsn.partition("://")
    query = rest.find("?")
    head = rest[:query] if query >= 0 else rest
    userinfo, at, _ = head.rpartition("@")
    return userinfo if sep and at else None
