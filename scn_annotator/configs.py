"""Dataclasses to and from the plain dicts that JSON columns and model files hold.

One reader for every config and record, so that each class does not hand-write its
own: a file written by an older version (a field it did not have yet) or a newer
one (a field this version does not know) still reads, lists come back as the
tuples the fields declare, and nested configs come back as their classes.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any, TypeVar

__all__ = ["Record", "TextEnum", "from_dict", "to_dict"]

T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data (nested dataclasses as dicts), as JSON and ``torch.save`` take it."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """``cls`` from ``values``: unknown keys ignored, absent ones left at their defaults."""
    hints = _hints(cls)
    known = {f.name: _convert(hints[f.name], values[f.name]) for f in dataclasses.fields(cls) if f.name in values}  # type: ignore[arg-type]
    return cls(**known)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A class's resolved field types, once: the store reads a config per model version on every poll."""
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None) and _fits(arg, value):
                return _convert(arg, value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        reader = getattr(hint, "from_dict", None)  # a class's own reader (one that accepts an older layout)
        return reader(value) if reader is not None else from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    if origin is list and args and isinstance(value, list):
        return [_convert(args[0], v) for v in value]
    return value


def _fits(hint: Any, value: Any) -> bool:
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    origin = typing.get_origin(hint) or hint
    return (isinstance(origin, type) and isinstance(value, origin)) or (origin is tuple and isinstance(value, list))


class Record:
    """``replace``, ``to_dict`` and ``from_dict`` for a (frozen) dataclass."""

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        return from_dict(cls, values)


class TextEnum(str, enum.Enum):
    """An enum whose members are their text: stored, compared, printed and written as the value.

    ``str(LandmarkState.PLACED)`` is ``placed``, not ``LandmarkState.PLACED``, so a
    member can go into a CSV cell, a message or JSON as it is, and compares equal to
    the string a file or an older record holds.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
