"""`@frozen`: how ackd declares a value, a dataclass whose fields are never reassigned.

To mypy (--strict, in `make lint` and CI) a `@frozen` class is exactly a
`@dataclass(frozen=True)`: assigning to a field is a type error, and it is hashable by its
fields. At run time it is built as a plain dataclass with the same `__eq__` and `__hash__`
(`unsafe_hash=True`: the hash frozen would give), whose `__init__` sets each field as any slots
class does. A frozen dataclass's `__init__` sets each one through `object.__setattr__`, to get
past its own `__setattr__` that refuses: about 0.35 µs a field on Python 3.11, 3.5 µs for an
Alert. A webhook builds about 33 such values (57 for a new incident: its alerts, their events,
the escalation's plan and state), and that was 15% of the event loop's instructions on the
ingest path (bench/instructions.py: 1,511,000 to 1,287,000 per webhook of the ingest leg's
mix at 8 in flight; 2,457,000 to 2,071,000 per new incident). The type checker, which reads
every line of receiver/, keeps the fields unassigned; nothing at run time has to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field
from typing import TypeVar, dataclass_transform, overload

_T = TypeVar("_T")


@overload
def frozen(cls: type[_T], /) -> type[_T]: ...


@overload
def frozen(*, slots: bool = False, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def frozen(
    cls: type[_T] | None = None, /, *, slots: bool = False, kw_only: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """`@dataclass(frozen=True, slots=..., kw_only=...)` to the type checker; see the module."""

    def build(c: type[_T]) -> type[_T]:
        return dataclass(c, slots=slots, kw_only=kw_only, unsafe_hash=True)

    return build if cls is None else build(cls)
