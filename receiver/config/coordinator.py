"""The running config, and the one place a new one goes through (SIGHUP, POST /-/reload).

As Alertmanager's config coordinator: each component that derives something from the config
(the ingest memos, the web's links) subscribes once with a function that takes the whole new
Config; those that read it as they act (the responder, the dispatcher) read `current`. The app
hands over the function that loads a file (receiver.config.build, which the config's own layers
never import). A file that does not build changes nothing and reaches no subscriber; one that
does becomes `current` and is handed to every subscriber, in the order they subscribed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from receiver.config.model import Config
from receiver.core.errors import ConfigError, ConfigProblem

Subscriber = Callable[[Config], None]


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
        running config stays)."""
        try:
            fresh = self._load(path)
        except ConfigError as exc:
            return exc
        except Exception as exc:  # whatever broke the load refuses the file, as a problem
            return ConfigError([unexpected(str(path), exc)])
        self.swap(fresh)
        return None

    def swap(self, config: Config) -> None:
        self._config = config
        for subscriber in self._subscribers:
            subscriber(config)
