"""Where the store lives: `storage.postgres` checked (a DSN asyncpg can use, given once, and a
links secret beside it that every replica shares)."""

from __future__ import annotations

from receiver.config.build.builder import Builder
from receiver.config.storage import PostgresSettings, dsn_problem
from receiver.config.yamlsource import Path as KeyPath


def postgres(b: Builder, link_secret: str | None) -> PostgresSettings | None:
    spec = b.spec.storage.postgres
    if spec is None:
        return None
    at: KeyPath = ("storage", "postgres")
    dsn = b.secret(at, "dsn", spec.dsn, spec.dsn_file)
    if dsn is None:
        if spec.dsn is None and spec.dsn_file is None:
            b.fail(at, "needs dsn or dsn_file")
        return None
    problem = dsn_problem(dsn)
    if problem is not None:
        b.fail((*at, "dsn" if spec.dsn_file is None else "dsn_file"), problem)
        return None
    if link_secret is None:
        # Without one, each replica would sign links with a random secret of its own,
        # and a link signed by one would be refused by the others.
        b.fail(at, "needs links.secret or links.secret_file beside it: every replica"
               " must sign and check links with the same secret")
    return PostgresSettings(dsn, spec.pool_size, spec.connect_timeout.total_seconds())
