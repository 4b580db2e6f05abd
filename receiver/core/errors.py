"""Every exception ackd raises on purpose, in one place.

    AckdError
    ├── ConfigError          a configuration file is wrong; carries every problem found
    ├── PayloadError         a request body breaks its format; names the offending field
    ├── NotFound             an incident (or other record) does not exist
    ├── Forbidden            the credential lacks the scope the request needs; names it
    ├── InvalidTransition    an incident cannot go from its state to the one asked for
    ├── LinkError            a signed link is forged, tampered with or expired
    ├── StoreUnavailable     the store cannot take writes right now; callers answer 503
    └── StartupError         the daemon cannot start; the message is one line naming the cause
        ├── StoreCorrupt     the database file is damaged: restore it from a backup
        └── SchemaBehind     started with --no-migrate on a store `ackd migrate` has not run on
"""

from __future__ import annotations

from receiver.core.frozen import frozen


class AckdError(Exception):
    """Base of every error ackd raises deliberately."""


@frozen(slots=True)
class ConfigProblem:
    """One thing wrong with a configuration file, located precisely enough to fix it."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}"


class ConfigError(AckdError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PayloadError(AckdError):
    """A request body that can never succeed; `field` is a dotted path such as alerts[3].labels."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class NotFound(AckdError):
    """An incident (or other record) asked for does not exist: answered 404."""


class Forbidden(AckdError):
    """The credential is valid but lacks `scope` for this request: answered 403 naming it."""

    def __init__(self, scope: str, message: str) -> None:
        self.scope = scope
        self.message = message
        super().__init__(message)


class InvalidTransition(AckdError):
    """The incident's state does not allow the action (acknowledging a resolved one): 409."""


class LinkError(AckdError):
    """A signed link is forged, tampered with or expired: answered 403, nothing changes."""


class StoreUnavailable(AckdError):
    """Transient: the write did not happen and may be retried (Alertmanager retries on 5xx)."""


class StartupError(AckdError):
    """The daemon cannot start (port in use, data directory unwritable, example secrets on an
    open address). Whatever had started is stopped again; `ackd serve` prints the message, one
    line naming the cause, and exits 1."""


class StoreCorrupt(StartupError):
    """The database file fails SQLite's check: restore it from a backup. Not transient."""


class SchemaBehind(StartupError):
    """The store's schema is older than this ackd and ackd was told not to migrate it."""

    def __init__(self, store: str, version: int, needed: int) -> None:
        super().__init__(
            f"the store {store} is at schema migration {version}, this ackd needs {needed}:"
            " run `ackd migrate` first (or start without --no-migrate)"
        )
