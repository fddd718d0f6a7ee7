"""What `hwledger serve` logs, for log collectors: JSON lines on request and an access log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import call, serving
from tests.integration.projector_support import fresh_schema


def test_json_access_log_lines(database_url: str, home: Path) -> None:
    settings = {"HWLEDGER_QUERY_DATABASE_URL": database_url,
                "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE": "1", "HWLEDGER_LOG_FORMAT": "json",
                "HWLEDGER_ACCESS_LOG": "1"}
    with fresh_schema(database_url) as schema, \
            serving(home, "info", HWLEDGER_DB_SCHEMA=schema, **settings) as (process, base):
        assert call(base, "/readyz")[0] == 200
        assert call(base, "/v1/nothing-here")[0] == 404
        process.terminate()
        _, err = process.communicate(timeout=10)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any('"GET /readyz HTTP/1.1" 200' in m for m in access), access
    assert any('"GET /v1/nothing-here HTTP/1.1" 404' in m for m in access), access
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
