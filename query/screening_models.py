"""The screening routes' query parameters, each defined once: read by it and documented by it.

A `Parameter` is one query parameter of POST /v1/bid-screening or POST /v1/prefilter: its
name, description, default and bounds. The same object reads a raw value (a bad one is
`InvalidParameter` naming it, an absent one its default) and writes its OpenAPI parameter
document (`document`), so the OpenAPI document cannot drift from the validation.
`ScreeningQuery` holds the parameters both routes take, `BidScreeningQuery` adds bid
screening's own `exact` and `packing`. Pure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from hwledger.query.binpacker import Packing
from hwledger.query.cursor import InvalidCursor, decode_cursor
from hwledger.query.service import DEFAULT_LIMIT

MAX_LIMIT = 10_000

V = TypeVar("V")

_BOOLEANS = {**dict.fromkeys(("true", "1", "yes", "on", "t", "y"), True),
             **dict.fromkeys(("false", "0", "no", "off", "f", "n"), False)}


class InvalidParameter(Exception):
    """A query parameter that cannot be used; the message names it (`query.<name>: ...`)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"query.{name}: {message}")


@dataclass(frozen=True)
class Parameter(ABC, Generic[V]):
    """One optional query parameter: `parse` reads it from a request's query, `document`
    describes it in the OpenAPI document."""

    name: str
    description: str
    default: V

    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """The JSON schema of the value, with its bounds and default."""

    @abstractmethod
    def read(self, value: str) -> V:
        """The raw value read, or InvalidParameter."""

    def invalid(self, message: str) -> InvalidParameter:
        return InvalidParameter(self.name, message)

    def parse(self, query: Mapping[str, str]) -> V:
        value = query.get(self.name)
        return self.default if value is None else self.read(value)

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "in": "query", "required": False,
                "description": self.description, "schema": self.schema()}


@dataclass(frozen=True)
class Flag(Parameter[bool]):
    """A boolean: true/false, 1/0, yes/no, on/off, t/f, y/n in any case; absent is false."""

    default: bool = False

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean", "default": self.default}

    def read(self, value: str) -> bool:
        try:
            return _BOOLEANS[value.strip().lower()]
        except KeyError:
            raise self.invalid("expected a boolean (true or false)") from None


@dataclass(frozen=True)
class Integer(Parameter[int | None]):
    """An integer from `minimum` to `maximum`; absent is `default` (None: none given)."""

    minimum: int
    maximum: int

    def schema(self) -> dict[str, Any]:
        found: dict[str, Any] = {"type": "integer", "minimum": self.minimum,
                                 "maximum": self.maximum}
        if self.default is not None:
            found["default"] = self.default
        return found

    def read(self, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise self.invalid("expected an integer") from None
        if not self.minimum <= number <= self.maximum:
            raise self.invalid(f"must be between {self.minimum} and {self.maximum}")
        return number


@dataclass(frozen=True)
class PackingChoice(Parameter[Packing]):
    """A `Packing` by its name, in any case."""

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(Packing), "default": self.default}

    def read(self, value: str) -> Packing:
        try:
            return Packing(value.strip().lower())
        except ValueError:
            raise self.invalid(f"expected one of {', '.join(Packing)}") from None


@dataclass(frozen=True)
class Cursor(Parameter[str | None]):
    """A page's cursor (`cursor.encode_cursor`), read as the owner the page starts after."""

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def read(self, value: str) -> str:
        try:
            return decode_cursor(value)
        except InvalidCursor as exc:
            raise self.invalid(str(exc)) from None


EXPLAIN = Flag("explain", "add the computed filter, SQL and rejections")
LIMIT = Integer("limit", "most providers returned", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
MIN_POSITION = Integer("minPosition",
                       "wait (bounded) until the projection position reaches this value", None,
                       minimum=0, maximum=2**62)
EXACT = Flag("exact", "run the bin-packer and return the first `limit` placeable providers "
                      "(by owner), reading candidates until that many are placed or none are "
                      "left")
PACKING = PackingChoice("packing", "with exact=true: `search` tries the other unit orders and "
                                   "GPU models a unit could freeze when Akash's greedy rule "
                                   "fails; `greedy` is Akash's rule alone", Packing.SEARCH)
CURSOR = Cursor("cursor", "the `cursor` of the previous answer: the next page", None)
PAGED = Flag("paged", "list the candidates by owner, so that a truncated answer carries the "
                      "`cursor` of the next page (implied by `cursor` and by exact=true; "
                      "without it the first `limit` matches the scan finds are returned, which "
                      "is faster, and `cursor` is null)")


@dataclass(frozen=True)
class ScreeningQuery:
    """The query parameters both screening routes take."""

    PARAMETERS: ClassVar[tuple[Parameter[Any], ...]] = (EXPLAIN, LIMIT, PAGED, CURSOR,
                                                        MIN_POSITION)

    explain: bool
    limit: int
    min_position: int | None
    after: str | None
    paged: bool

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> ScreeningQuery:
        limit = LIMIT.parse(query)
        assert limit is not None  # LIMIT has a default
        return cls(explain=EXPLAIN.parse(query), limit=limit,
                   min_position=MIN_POSITION.parse(query), after=CURSOR.parse(query),
                   paged=PAGED.parse(query))


@dataclass(frozen=True)
class BidScreeningQuery:
    """Bid screening's query parameters: `exact`, `packing` and the `ScreeningQuery` ones."""

    PARAMETERS: ClassVar[tuple[Parameter[Any], ...]] = (EXACT, PACKING,
                                                        *ScreeningQuery.PARAMETERS)

    exact: bool
    packing: Packing
    options: ScreeningQuery

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> BidScreeningQuery:
        exact = EXACT.parse(query)
        packing = PACKING.parse(query)
        return cls(exact, packing, ScreeningQuery.parse(query))
