"""Validators of a request's JSON fields, shared by the GroupSpec and the filter document.

Pure. Each takes the decoded JSON value and its JSON path (`field`) and returns the typed value
or raises `InvalidRequest` naming the field (`resources[0].resource.gpu.attributes[1].key:
...`): objects, bounded lists and texts, Akash quantities (`{"val": "2500"}`, a decimal string
or base64 of one), attribute lists, counts and the reclamation window.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic.alias_generators import to_camel

from hwledger.query.group_request import Attribute
from hwledger.schemas.errors import UserError

MAX_QUANTITY = 2**50  # ~1 PiB of bytes, ~1e15 millicores: anything larger is a typo
MAX_TOTAL = 2**63 - 1
"""The largest total (or per-node maximum) a request may ask for: the largest Postgres bigint,
which the read model's totals saturate at
(docs/adr/0038-unlimited-allocatable-and-saturated-totals.md)."""
MAX_RECLAMATION_WINDOW = MAX_TOTAL
MAX_ITEMS = 64
MAX_TEXT = 256


class InvalidRequest(UserError):
    """A request field that cannot be used; `field` is its JSON path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.detail = message


def expect_object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(field, f"expected an object, got {kind_of(value)}")
    return value


def expect_list(value: Any, field: str, limit: int = MAX_ITEMS) -> Sequence[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(field, f"expected a list, got {kind_of(value)}")
    if len(value) > limit:
        raise InvalidRequest(field, f"at most {limit} items allowed, got {len(value)}")
    return value


def expect_text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(field, f"expected a string, got {kind_of(value)}")
    if not value and not allow_empty:
        raise InvalidRequest(field, "must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidRequest(field, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise InvalidRequest(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(field, "is not valid Unicode text") from None
    return value


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def pick(obj: Mapping[str, Any], *names: str) -> Any:
    """The first present key among aliases (camelCase as in DESIGN, snake_case as in Akash)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


Field = tuple[Any, str]
"""A field of a request object: its value and its JSON path as the caller spelled it, the
arguments of the validators here (`count(*field)`)."""


def camel_fields(value: Any, field: str, known: Sequence[str]) -> dict[str, Field]:
    """An object's fields by camelCase name. snake_case spellings are accepted too (DESIGN
    writes the filter's fields that way), but not both for one field; unknown fields are
    refused. An absent field reads as its camelCase path and None."""
    found: dict[str, Field] = {name: (None, f"{field}.{name}" if field else name)
                               for name in known}
    given: set[str] = set()
    for key, item in expect_object(value, field or "body").items():
        name, path = to_camel(key), f"{field}.{key}" if field else key
        if name not in found:
            raise InvalidRequest(path, "unknown field")
        if name in given:
            raise InvalidRequest(path, f"given twice, also as {found[name][1]}")
        found[name] = (item, path)
        given.add(name)
    return found


def parse_quantity(value: Any, field: str) -> int:
    """An Akash quantity: `{"val": ...}` or the bare value; a decimal string, base64 of a
    decimal string, or a non-negative integer."""
    if isinstance(value, dict):
        if "val" not in value:
            raise InvalidRequest(field, "expected an object with 'val'")
        value = value["val"]
        field = f"{field}.val"
    if isinstance(value, bool) or value is None:
        raise InvalidRequest(field, f"expected a quantity, got {kind_of(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        number = _decimal_or_base64(value, field)
    else:
        raise InvalidRequest(field, f"expected a decimal string or integer, got {kind_of(value)}")
    if number < 0:
        raise InvalidRequest(field, f"must not be negative, got {number}")
    if number > MAX_QUANTITY:
        raise InvalidRequest(field, f"{number} is absurdly large (limit {MAX_QUANTITY})")
    return number


def _decimal_or_base64(text: str, field: str) -> int:
    stripped = text.strip()
    if re.fullmatch(r"-?\d{1,19}", stripped):
        return int(stripped)
    try:
        decoded = base64.b64decode(stripped, validate=True).decode("ascii").strip()
    except (binascii.Error, ValueError):
        decoded = ""
    if re.fullmatch(r"\d{1,19}", decoded):
        return int(decoded)
    raise InvalidRequest(field, f"{text[:40]!r} is not a decimal quantity or base64 of one")


def attributes(value: Any, field: str) -> tuple[Attribute, ...]:
    found = []
    for index, item in enumerate(expect_list(value, field)):
        here = f"{field}[{index}]"
        obj = expect_object(item, here)
        found.append(Attribute(expect_text(obj.get("key"), f"{here}.key"),
                               expect_text(obj.get("value"), f"{here}.value", allow_empty=True)))
    return tuple(found)


def glob_attributes(value: Any, field: str) -> tuple[Attribute, ...]:
    """Attributes a provider must have, whose keys may end in one `*` (a prefix)."""
    found = attributes(value, field)
    for index, attr in enumerate(found):
        if "*" in attr.key[:-1]:
            raise InvalidRequest(f"{field}[{index}].key",
                                 "'*' is only allowed as the last character")
    return found


def names(value: Any, field: str) -> tuple[str, ...]:
    return tuple(sorted({expect_text(v, f"{field}[{i}]")
                         for i, v in enumerate(expect_list(value, field))}))


def count(value: Any, field: str) -> int:
    """A non-negative integer at most MAX_TOTAL; absent = 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"expected an integer, got {kind_of(value)}")
    if not 0 <= value <= MAX_TOTAL:
        raise InvalidRequest(field, f"must be between 0 and {MAX_TOTAL}, got {value}")
    return value


def reclamation_window(value: Any, field: str = "reclamationWindow") -> int | None:
    """`reclamationWindow`: seconds the provider must give notice for at least (as the peer's
    field); absent or null = none asked for."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"expected seconds as an integer, got {kind_of(value)}")
    if not 1 <= value <= MAX_RECLAMATION_WINDOW:
        raise InvalidRequest(field,
                             f"must be between 1 and {MAX_RECLAMATION_WINDOW} seconds, got "
                             f"{value}")
    return value
