"""Records that map themselves to SQLite rows and DynamoDB items, from their own field types.

A stored record is a frozen dataclass that inherits :class:`Stored`. Its fields say how each
value is kept, once, for every adapter:

==================  =========================  ==============================================
field type          SQLite column              DynamoDB attribute
==================  =========================  ==============================================
``str``             TEXT                       S
``int``             INTEGER                    N
``float``           REAL                       N (``Decimal(str(x))``, exact as written)
``Decimal``         TEXT (exact decimal)       N
``datetime``        TEXT (ISO 8601 UTC)        S (ISO 8601 UTC, sortable)
``Mapping``         TEXT (JSON, sorted keys)   S (JSON, sorted keys)
``X | None``        NULL when None             attribute omitted when None
==================  =========================  ==============================================

A field may name its column/attribute (``field(metadata={"column": "ts"})``) where the stored
name differs from the Python one. Adapters add only their keys (``pk``, ``sk``, GSI and TTL
attributes) and never write a mapper of their own. Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, ClassVar, Self

from aimaas.storage.clock import iso, utc


@dataclass(frozen=True)
class _Codec:
    name: str  # the dataclass field
    column: str  # the column / attribute
    to_row: Callable[[Any], Any]
    from_row: Callable[[Any], Any]
    to_item: Callable[[Any], Any]
    from_item: Callable[[Any], Any]
    optional: bool


def _same(value: Any) -> Any:
    return value


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _time(value: Any) -> datetime:
    return utc(value) if isinstance(value, datetime) else datetime.fromisoformat(value)


def _json(value: Any) -> str:
    return json.dumps(dict(value), sort_keys=True, default=str)


def _mapping(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


#: (to_row, from_row, to_item, from_item) by field type.
_CODECS: Mapping[Any, tuple[Callable[[Any], Any], ...]] = {
    str: (str, str, str, str),
    int: (int, int, int, int),
    float: (float, float, lambda v: Decimal(str(v)), float),
    Decimal: (str, _decimal, _decimal, _decimal),
    datetime: (iso, _time, iso, _time),
    Mapping: (_json, _mapping, _json, _mapping),
    dict: (_json, _mapping, _json, _mapping),
}


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """The stored type of a hint, and whether None is allowed."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner, _ = _unwrap(args[0])
        return inner, len(args) < len(typing.get_args(hint))
    if origin is typing.Literal:
        return type(typing.get_args(hint)[0]), False
    if origin is not None:  # Mapping[str, Any], dict[...]
        return (Mapping if origin in (Mapping, dict, typing.Mapping) else origin), False
    return hint, False


@cache
def _codecs(cls: type) -> tuple[_Codec, ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, optional = _unwrap(hints[f.name])
        try:
            to_row, from_row, to_item, from_item = _CODECS[kind]
        except KeyError:
            raise TypeError(f"{cls.__name__}.{f.name}: cannot store a {kind!r}") from None
        found.append(
            _Codec(
                f.name,
                f.metadata.get("column", f.name),
                to_row,
                from_row,
                to_item,
                from_item,
                optional,
            )
        )
    return tuple(found)


class Stored:
    """Mixin of a frozen dataclass that SQLite and DynamoDB adapters store as it is.

    Examples
    --------
    >>> @dataclass(frozen=True)
    ... class Note(Stored):
    ...     note_id: str
    ...     at: datetime
    >>> Note.columns()
    ('note_id', 'at')
    """

    #: Set by subclasses that are dataclasses (declared here for type checkers).
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Column (attribute) names, in field order."""
        return tuple(c.column for c in _codecs(cls))

    def to_row(self) -> dict[str, Any]:
        """``{column: SQLite value}`` of every field."""
        return {
            c.column: None if (value := getattr(self, c.name)) is None else c.to_row(value)
            for c in _codecs(type(self))
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """The record of a SQLite row (a ``sqlite3.Row`` or a mapping)."""
        values = {}
        for c in _codecs(cls):
            value = row[c.column]
            values[c.name] = None if value is None else c.from_row(value)
        return cls(**values)

    def to_item(self) -> dict[str, Any]:
        """``{attribute: value}`` for boto3's ``TypeSerializer``; None values are left out."""
        return {
            c.column: c.to_item(value)
            for c in _codecs(type(self))
            if (value := getattr(self, c.name)) is not None
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self:
        """The record of a deserialized DynamoDB item; extra attributes (keys, TTL) are ignored,
        a missing optional attribute is None and a missing defaulted one takes its default."""
        values = {}
        for c in _codecs(cls):
            if c.column in item:
                values[c.name] = c.from_item(item[c.column])
            elif c.optional:
                values[c.name] = None
        return cls(**values)
