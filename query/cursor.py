"""Screening cursors: the opaque `cursor` of a truncated answer, naming where the next page starts.

Pure. A cursor is the unpadded base64url text of `{"v": 1, "after": <owner>}`: the screening
answers list providers by owner, so the next page is the candidates after that owner (the
prefilter's `after` condition). `decode_cursor` refuses anything `encode_cursor` would not
write with `InvalidCursor` saying why.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

CURSOR_VERSION = 1
MAX_CURSOR_CHARS = 1024


class InvalidCursor(ValueError):
    """A `cursor` that this service did not write."""


def encode_cursor(after: str) -> str:
    body = orjson.dumps({"v": CURSOR_VERSION, "after": after})
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> str:
    """The owner a cursor names; InvalidCursor when it is not one `encode_cursor` wrote."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor(f"expected the cursor of a previous answer (1 to "
                            f"{MAX_CURSOR_CHARS} characters)")
    try:
        body = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found: Any = orjson.loads(body)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidCursor("not a cursor of this service (bad encoding)") from None
    if not isinstance(found, dict) or found.get("v") != CURSOR_VERSION:
        raise InvalidCursor(f"not a version {CURSOR_VERSION} cursor of this service")
    after = found.get("after")
    if not isinstance(after, str) or not after or "\x00" in after or set(found) != {"v", "after"}:
        raise InvalidCursor("not a cursor of this service (no owner)")
    return after
