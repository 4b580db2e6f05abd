"""What every section's build shares: the problems found so far, and the small checks.

Every check appends a ConfigProblem (file, line, key, message) and carries on, so one run
reports every problem of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from receiver.config.schema import ConfigSpec
from receiver.config.yamlsource import Located, render_path
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.errors import ConfigProblem
from receiver.escalation.policy import User

T = TypeVar("T")


class Builder:
    def __init__(
        self,
        located: Located,
        spec: ConfigSpec,
        base_dir: Path,
        origin: Callable[[KeyPath], KeyPath] | None = None,
    ) -> None:
        self.located = located
        self.spec = spec
        self.base_dir = base_dir
        # The spec may be built from the file less the parts that broke the schema
        # (config.problems.Pruned): `origin` turns its paths back into the file's.
        self.origin = origin or (lambda path: path)
        self.problems: list[ConfigProblem] = []
        # The contents of the `*_file`s read, by key (`links.secret_file`): part of what the
        # config runs with, so part of its digest (Config.digest).
        self.files: dict[str, str] = {}

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.located.problem(self.origin(path), message))

    def attempt(self, path: KeyPath, make: Callable[[], T]) -> T | None:
        try:
            return make()
        except KeyError as exc:
            self.fail(path, str(exc.args[0]) if exc.args else "missing key")
            return None
        except (ValueError, OSError) as exc:
            self.fail(path, str(exc))
            return None

    def secret(self, at: KeyPath, key: str, inline: str | None, file: str | None) -> str | None:
        """A secret given inline or in a file (`{key}_file`, relative to the config's own
        directory), never both."""
        if inline is not None and file is not None:
            self.fail((*at, f"{key}_file"), f"give {key} or {key}_file, not both")
            return None
        if file is None:
            return inline
        path = (self.base_dir / file) if not Path(file).is_absolute() else Path(file)
        value = self.attempt((*at, f"{key}_file"), lambda: _read_secret(path))
        if value is not None:
            self.files[render_path(self.origin((*at, f"{key}_file")))] = value
        return value

    def unique(self, at: KeyPath, names: Sequence[str]) -> None:
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                self.fail((*at, i, "name"), f"{name!r} is defined twice")
            seen.add(name)

    def known_users(self, at: KeyPath, names: Sequence[str], users: Mapping[str, User]) -> None:
        for j, name in enumerate(names):
            if name not in users:
                self.fail((*at, j) if len(names) > 1 or at[-1] == "users" else at,
                          f"unknown user {name!r}")


def _read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()
