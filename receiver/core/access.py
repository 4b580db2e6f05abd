"""Who may do what through the API: the principal a token names and the scope it carries.

Scopes are ranked, each granting those below it: `read` sees incidents, `respond` acts on
them (acknowledge, resolve, roles, notes, declare), `admin` may do everything (reload the
config, declare drills for any team). A person's token acts as that person, so the timeline
names who did what; a script's named token acts under its name.
"""

from __future__ import annotations

import enum

from receiver.core.frozen import frozen


class Scope(enum.StrEnum):
    READ = "read"
    RESPOND = "respond"
    ADMIN = "admin"
    # Outside the ranking: a named token that may only post heartbeats (a cron job's, so
    # that a leaked one can read nothing and page nobody); admin may post them too.
    HEARTBEAT = "heartbeat"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def grants(self, needed: Scope) -> bool:
        if Scope.HEARTBEAT in (self, needed):
            return self is needed or self is Scope.ADMIN
        return self.rank >= needed.rank


class PrincipalKind(enum.StrEnum):
    USER = "user"  # a person of the config's users: its name is a user's name
    TOKEN = "token"  # a named token for scripts and the CLI
    ANONYMOUS = "anonymous"  # nobody: reads on an ackd with no tokens at all


@frozen(slots=True)
class Principal:
    """The one acting; `name` is what the timeline records as the actor."""

    name: str
    scope: Scope
    kind: PrincipalKind

    @property
    def is_user(self) -> bool:
        return self.kind is PrincipalKind.USER

    def describe(self) -> str:
        return f"{self.kind.value} {self.name!r}"


ANONYMOUS = Principal("anonymous", Scope.READ, PrincipalKind.ANONYMOUS)
