"""No password spelling ever reaches an output: the real commands (`hwledger status`, `db
migrate`, `screen`, `serve`) against the real PostgreSQL, up and unreachable, with the password
in each place a URL or DSN can carry it. The password is made of five-character tokens, and
no token may appear in stdout, stderr or an HTTP body, so a fragment would be caught too."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from hwledger.query.screening_http import UNAVAILABLE_MESSAGE
from tests.cli import run
from tests.integration.query_support import client
from tests.servers import Servers

pytestmark = pytest.mark.slow

TOKENS = ("Zq7Xk", "Yv3Wj", "Tn5Rm", "Ls8Pd", "Qh2Gc", "Bf6Nt")
PASSWORD = "Zq7Xk:Yv3Wj/Tn5Rm@Ls8Pd Qh2Gc'Bf6Nt"  # every character a URL or DSN must escape
PLAIN = "Zq7Xk:Yv3Wj/Tn5Rm@Ls8Pd"  # no space or quote: an unquoted DSN value, a raw userinfo
ENCODED = quote(PASSWORD, safe="")
QUOTED = "'" + PASSWORD.replace("\\", "\\\\").replace("'", "\\'") + "'"
REQUEST = {"resources": [{"resource": {"cpu": {"units": {"val": "1000"}}}, "count": 1}]}

Spelling = Callable[[int], str]
URL_SPELLINGS: dict[str, Spelling] = {
    "userinfo": lambda port: f"postgresql://postgres:{ENCODED}@127.0.0.1:{port}/hwledger",
    "empty user": lambda port: f"postgresql://:{ENCODED}@127.0.0.1:{port}/hwledger",
    "query parameter": lambda port: (
        f"postgresql://postgres@127.0.0.1:{port}/hwledger?password={ENCODED}"),
    "sslpassword parameter": lambda port: (
        f"postgres://postgres@127.0.0.1:{port}/hwledger?sslmode=disable&sslpassword={ENCODED}"),
}
OTHER_SPELLINGS: dict[str, Spelling] = {
    "key=value quoted": lambda port: (
        f"host=127.0.0.1 port={port} dbname=hwledger user=postgres password={QUOTED}"),
    "key=value plain": lambda port: (
        f"host=127.0.0.1 port={port} user=postgres password={PLAIN} dbname=hwledger"),
    "unencoded userinfo": lambda port: f"postgresql://postgres:{PLAIN}@127.0.0.1:{port}/hw",
    "unencoded space": lambda port: (
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/hwledger"),
}
SPELLINGS = URL_SPELLINGS | OTHER_SPELLINGS
CLOSED_PORT = 1


def assert_no_token(*outputs: str) -> None:
    for output in outputs:
        assert not [t for t in TOKENS if t in output], output


def pg_port(servers: Servers) -> int:
    port = urlsplit(servers.database_url).port
    assert port is not None
    return port


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_status_and_migrate_never_print_the_password(
        spelling: str, servers: Servers, db_schema: str, home: Path) -> None:
    for port in (pg_port(servers), CLOSED_PORT):
        url = SPELLINGS[spelling](port)
        env = {"HWLEDGER_DATABASE_URL": url, "HWLEDGER_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
               "HWLEDGER_DB_SCHEMA": db_schema}
        status = run(["status"], home, COLUMNS="400", **env)
        migrate = run(["db", "migrate"], home, **env)
        assert_no_token(status.stdout, status.stderr, migrate.stdout, migrate.stderr)
        if port == CLOSED_PORT:
            assert migrate.returncode in (1, 2)
            assert len(migrate.stderr.strip().splitlines()) == 1, migrate.stderr


def test_the_spellings_libpq_accepts_do_connect(servers: Servers, db_schema: str,
                                                home: Path) -> None:
    """The matrix above is not vacuous: trust authentication ignores the password, so these
    spellings reach the database, and status shows it (masked)."""
    for spelling in ("userinfo", "query parameter", "sslpassword parameter",
                     "key=value quoted", "key=value plain"):
        env = {"HWLEDGER_DATABASE_URL": SPELLINGS[spelling](pg_port(servers)),
               "HWLEDGER_DB_SCHEMA": db_schema}
        migrate = run(["db", "migrate"], home, **env)
        assert migrate.returncode == 0 and "up to date" in migrate.stdout, migrate.stderr
        status = run(["status"], home, COLUMNS="400", **env)
        assert "***" in status.stdout, status.stdout


@pytest.mark.parametrize("spelling", URL_SPELLINGS)
def test_503_bodies_and_log_never_carry_the_password(
        spelling: str, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The query service's answers while its database is unreachable (in process: `serve`
    itself refuses to start without its database, see test_query_role.py), and `screen`."""
    url = URL_SPELLINGS[spelling](CLOSED_PORT)
    with caplog.at_level(logging.WARNING), client(url, "hwledger", datetime.now(UTC)) as http:
        answers = [http.post("/v1/bid-screening", json=REQUEST), http.get("/readyz"),
                   http.get("/v1/providers/p-one")]
    for answer in answers:
        assert (answer.status_code, answer.json()) == (
            503, {"error": "unavailable", "message": UNAVAILABLE_MESSAGE})
        assert_no_token(answer.text)
    assert "database unavailable" in caplog.text
    assert_no_token(caplog.text)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUEST))
    screen = run(["screen", str(request)], home, HWLEDGER_QUERY_DATABASE_URL=url)
    assert screen.returncode == 1 and "database" in screen.stderr
    assert_no_token(screen.stdout, screen.stderr)


@pytest.mark.parametrize("spelling", OTHER_SPELLINGS)
def test_serve_refuses_other_spellings_in_one_line_without_the_password(
        spelling: str, home: Path) -> None:
    env = {"HWLEDGER_QUERY_DATABASE_URL": OTHER_SPELLINGS[spelling](CLOSED_PORT),
           "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE": "1"}
    result = run(["serve", "--port", "0"], home, **env)
    assert result.returncode in (1, 2) and len(result.stderr.strip().splitlines()) == 1
    assert_no_token(result.stdout, result.stderr)
