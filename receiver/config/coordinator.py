"""The running config, and the one place a new one goes through (SIGHUP, POST /-/reload).

As Alertmanager's config coordinator: each component that derives something from the config
(the ingest memos, the web's links) subscribes once with a function that takes the whole new
Config; those that read it as they act (the responder, the dispatcher) read `current`. The app
hands over the function that loads a file (receiver.config.build, which the config's own layers
never import). A file that does not build changes nothing and reaches no subscriber; nor does
one that builds into the running config again (the same published digest: the file, its
variables and its `*_file`s as they were), so a deploy that reloads on every run costs nothing
when nothing changed. Any other becomes `current` and is handed to every subscriber, in the
order they subscribed.

What a reload that took tells whoever asked for it (`Reloaded`: the config's published digest
before and after, and the warnings of the file and of the look at the open incidents, which
the daemon finds off the loop after the swap) is defined here, below the web layer that
answers POST /-/reload with it and the daemon that makes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from receiver.config.model import Config
from receiver.core.errors import ConfigError, ConfigProblem

Subscriber = Callable[[Config], None]


@dataclass(frozen=True, slots=True)
class ReloadWarning:
    """One thing a reload found worth a warning, located as a refused file's problems are
    (file, line, key; line None and a key in brackets where no line says it), with what kind
    of finding it is (the `event` of its log line) and the open incidents it is about."""

    # unrouted_team, coverage_gap, sms_not_short, template_step_number, unchecked (the
    # file's); config_regrouped, config_unreached, config_contact_lost, config_message_lost,
    # config_queued_lost (the open incidents', and what waits to be sent), unchecked (a look
    # that could not read them)
    kind: str
    file: str
    line: int | None
    key: str
    message: str
    incidents: tuple[int, ...] = ()

    @classmethod
    def of(cls, kind: str, problem: ConfigProblem) -> ReloadWarning:
        return cls(kind, problem.file, problem.line, problem.key, problem.message)

    def __str__(self) -> str:
        return str(ConfigProblem(self.file, self.line, self.key, self.message))


@dataclass(frozen=True, slots=True)
class Looked:
    """How a look at what a config does to the open incidents ended: `checked` (its
    `warnings`, each logged), `failed` (the log says why), `superseded`: a later reload
    swapped another config in before it began or while it ran, so what it found is about a
    config no longer running and is neither logged nor given (the running config's look
    follows it), or `skipped`: the start did not look, `why` says why (too many open
    incidents: the next reload looks)."""

    status: Literal["checked", "failed", "superseded", "skipped"]
    warnings: tuple[ReloadWarning, ...] = ()
    why: str = ""


# Who asked for a Reloaded, or began a look: a reload that took, or the start.
Asker = Literal["reload", "start"]
# Who began the look a Reloaded gives: the reload that swapped its config in, the start, or
# an unchanged reload after the start skipped its look (Looked `skipped`).
LookBegun = Literal["reload", "start", "unchanged"]


@dataclass(frozen=True, slots=True)
class Reloaded:
    """A reload that took. `before` and `after` are the running config's published digests
    (Config.published_digest, what ackd_config_hash shows): equal when the file, its
    variables and its `*_file`s are as they were. `checks` gives the file's own warnings
    (what `ackd check-config` warns of); `look` what the new config does to the open
    incidents. Both run after the swap, off the loop, and log what they find whether or not
    anyone awaits them (the answer waits for them a bounded time, then says what still
    runs; the daemon keeps the last Reloaded for GET /-/reload); they are None when the
    reload ran outside the daemon's loop (a test). When nothing `changed`, nothing was
    swapped in and `look` is the running config's own look, running or done: the one the
    reload that swapped it in began, or the start's (a new one when the start skipped its
    look); `checks` still runs (a coverage gap comes nearer with time, as check-config
    would say). `behind`: the config hash whose look was still running when
    this one swapped its config in (looks run one at a time: this one follows it). `at`:
    when the reload was asked (the clock's now).

    `by` `start`: not a reload but the start's own checks of the config ackd started with
    (`before` equals `after`), which the daemon keeps until a reload takes, so that GET
    /-/reload gives what the last check of the running config found; `checks` is None when
    the start had no document to check (a Daemon built without `source`, in a test).
    `look_by` says who began `look` (an unchanged reload's is the start's when ackd started
    with the running config, or an unchanged reload's when the start skipped its look),
    `behind_by` who began the look `behind`."""

    before: str
    after: str
    checks: asyncio.Future[list[ReloadWarning]] | None = None
    look: asyncio.Future[Looked] | None = None
    behind: str | None = None
    at: datetime | None = None
    by: Asker = "reload"
    look_by: LookBegun = "reload"
    behind_by: Asker = "reload"

    @property
    def changed(self) -> bool:
        return self.before != self.after


def unexpected(file: str, exc: BaseException) -> ConfigProblem:
    """An exception no check foresaw, as a problem of the whole file: a config error is a
    line of text for the person who wrote the file, never a traceback."""
    return ConfigProblem(file, None, "(file)",
                         f"cannot be loaded: {type(exc).__name__}: {exc}"[:500])


class Coordinator:
    def __init__(self, config: Config, load: Callable[[str | Path], Config]) -> None:
        """`load` builds a file into a Config or raises ConfigError naming every problem."""
        self._config = config
        self._load = load
        self._subscribers: list[Subscriber] = []

    def current(self) -> Config:
        return self._config

    def subscribe(self, *subscribers: Subscriber) -> None:
        """Hand each subscriber every config swapped in from now on."""
        self._subscribers.extend(subscribers)

    def reload(self, path: str | Path) -> ConfigError | None:
        """Load `path` and swap it in whole: None, or the ConfigError that refused it (the
        running config stays). A file that builds into the running config's published digest
        is the running config: it is not swapped in, and no subscriber hears of it."""
        try:
            fresh = self._load(path)
        except ConfigError as exc:
            return exc
        except Exception as exc:  # whatever broke the load refuses the file, as a problem
            return ConfigError([unexpected(str(path), exc)])
        if fresh.published_digest() != self._config.published_digest():
            self.swap(fresh)
        return None

    def swap(self, config: Config) -> None:
        self._config = config
        for subscriber in self._subscribers:
            subscriber(config)
