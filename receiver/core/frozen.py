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

`replace(value, **changes)`, the same split: to mypy it is `dataclasses.replace` (whose calls
it checks, field by field), at run time a copy function made once for each class, where
`dataclasses.replace` walks the class's fields at every call. See `replace` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform, overload

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


if TYPE_CHECKING:
    from dataclasses import replace as replace
else:

    def replace(obj: Any, /, **changes: Any) -> Any:
        """`dataclasses.replace(obj, **changes)`: a new value of obj's class, its fields
        obj's but for `changes`. dataclasses.replace looks each field up and tests it at
        every call, 22,000 instructions for an EscalationState (11 fields) on Python 3.11;
        the class's copy function, written once, 9,700. A new incident's escalation makes
        four copies, each change to an incident one (store: `update_incident`)."""
        copy = _COPIES.get(type(obj))
        if copy is None:
            copy = _COPIES[type(obj)] = _copy_function(type(obj))
        return copy(obj, **changes)


_COPIES: dict[type, Callable[..., Any]] = {}
_KEEP = object()  # a field not in the changes


def _copy_function(cls: type) -> Callable[..., Any]:
    """`def copy(obj, /, *, a=KEEP, b=KEEP): return cls(obj.a if a is KEEP else a, ...)`
    for the class's fields that __init__ takes (keyword-only ones by keyword). A name that
    is not one of them is a TypeError (dataclasses.replace: a ValueError for a field that
    __init__ does not take)."""
    taken = [f for f in fields(cls) if f.init]
    params = ", ".join(f"{f.name}=__keep" for f in taken)
    args = ", ".join(
        f"{f.name + '=' if f.kw_only else ''}__obj.{f.name} if {f.name} is __keep else {f.name}"
        for f in taken
    )
    name = f"replace_{cls.__name__}"  # what a TypeError names
    source = f"def {name}(__obj, /, *, {params}):\n    return __cls({args})\n"
    namespace: dict[str, Any] = {"__cls": cls, "__keep": _KEEP}
    exec(source, namespace)  # the class's own field names, nothing else
    copy: Callable[..., Any] = namespace[name]
    return copy
