"""read_json: a document, or one line naming why the file is not one, as the caller's error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwledger.producers.bakeoff import BakeoffError
from hwledger.schemas.errors import UserError
from hwledger.schemas.json_file import read_json


def test_a_json_file_reads_as_its_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"a": [1, "é"]}', "utf-8")
    assert read_json(path) == {"a": [1, "é"]}


@pytest.mark.parametrize(("content", "cause"), [
    (None, "cannot read: No such file or directory"),
    (b"{nope", "not valid JSON: Expecting property name enclosed in double quotes"),
    (b"\xff\xfe", "not valid JSON: 'utf-8' codec can't decode byte 0xff"),
])
def test_a_bad_file_is_the_callers_error_with_one_line(
        tmp_path: Path, content: bytes | None, cause: str) -> None:
    path = tmp_path / "doc.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as plain:
        read_json(path)
    with pytest.raises(BakeoffError) as bakeoff:
        read_json(path, BakeoffError)
    for raised in (plain.value, bakeoff.value):
        assert str(raised).startswith(cause) and "\n" not in str(raised)
        assert raised.__cause__ is None and raised.__suppress_context__
