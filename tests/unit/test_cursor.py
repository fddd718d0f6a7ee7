"""The screening cursor codec: what `encode_cursor` writes, `decode_cursor` reads back; anything
else is refused with a reason."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwledger.query.cursor import InvalidCursor, decode_cursor, encode_cursor


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_a_cursor_names_its_owner(owner: str) -> None:
    cursor = encode_cursor(owner)
    assert decode_cursor(cursor) == owner
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(("cursor", "why"), [
    ("", "1 to 1024 characters"),
    ("x" * 1025, "1 to 1024 characters"),
    ("!!!", "bad encoding"),
    ("a", "bad encoding"),
    (_b64(b"not json"), "bad encoding"),
    (_b64(b"[1]"), "not a version 1 cursor"),
    (_b64(b'{"v": 2, "after": "p"}'), "not a version 1 cursor"),
    (_b64(b'{"v": 1}'), "no owner"),
    (_b64(b'{"v": 1, "after": 5}'), "no owner"),
    (_b64(b'{"v": 1, "after": ""}'), "no owner"),
    (_b64(b'{"v": 1, "after": "a\\u0000"}'), "no owner"),
    (_b64(b'{"v": 1, "after": "p", "x": 1}'), "no owner"),
])
def test_anything_else_is_refused_with_a_reason(cursor: str, why: str) -> None:
    with pytest.raises(InvalidCursor, match=why):
        decode_cursor(cursor)
