"""Bounded work per request and one error shape, through the real service (uvicorn with
`JsonErrorsProtocol`) over a real database of 40 providers.

The amplification request of issue 21 (`exact=true&limit=10000`, 4 units x count 10,000) used
to run for minutes and stall `/healthz`; it must answer within a second while `/healthz`
keeps answering within 50 ms. Each limit, set small, refuses with its documented error.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from hwledger.query.limits import Limits
from hwledger.schemas.events import EventData
from tests.cli import serving
from tests.factories import at, gpu, snapshot
from tests.integration.query_support import schema_with, service_thread

NOW = at(10)
PROVIDERS = 40
AMPLIFIER = orjson.dumps({"resources": [
    {"count": 10_000, "resource": {"cpu": {"units": {"val": "1"}}}}] * 4})
AMPLIFIER_PATH = "/v1/bid-screening?exact=true&limit=10000"
JSON = {"content-type": "application/json"}


def fleet() -> list[EventData]:
    return [("HardwareSnapshotted", snapshot(f"p-{p:02d}", f"node-{n}",
                                             gpus=[gpu(i) for i in range(8)]))
            for p in range(PROVIDERS) for n in range(2)]


@pytest.fixture(scope="module")
def fleet_schema(database_url: str) -> Iterator[str]:
    with schema_with(database_url, fleet()) as schema:
        yield schema


@pytest.fixture(scope="module")
def base(database_url: str, fleet_schema: str) -> Iterator[str]:
    with service_thread(database_url, fleet_schema, NOW) as url:
        yield url


def ask(url: str, path: str = AMPLIFIER_PATH) -> tuple[int, Any]:
    """The amplification request: status and body."""
    response = httpx.post(url + path, content=AMPLIFIER, headers=JSON, timeout=10)
    return response.status_code, response.json()


@pytest.fixture(scope="module")
def served(database_url: str, fleet_schema: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    """`hwledger serve` in its own process, as deployed (the test's threads share no GIL with
    it), over the fleet; the online TTL spans the fleet's event times."""
    with serving(tmp_path_factory.mktemp("serve"), HWLEDGER_DB_SCHEMA=fleet_schema,
                         HWLEDGER_QUERY_DATABASE_URL=database_url,
                         HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE="1",
                         HWLEDGER_ONLINE_TTL_SECONDS=str(10**9)) as (_, url):
        yield url


def test_the_amplification_request_is_fast_and_healthz_keeps_answering(served: str) -> None:
    base = served
    health: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=base, timeout=5) as http:
            while not stop.is_set():
                started = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        with httpx.Client(base_url=base, timeout=5) as http:
            for _ in range(5):
                started = time.perf_counter()
                response = http.post(AMPLIFIER_PATH, content=AMPLIFIER, headers=JSON)
                assert time.perf_counter() - started < 1.0
                assert response.status_code == 200, response.text
                assert len(response.content) < 100_000
    finally:
        stop.set()
        poller.join(5)
    providers = response.json()["providers"]
    assert len(providers) == PROVIDERS
    assert providers[0]["placement"] == [{"unit": u, "node": "node-0", "count": 10_000,
                                          "gpuSlots": []} for u in range(4)]
    assert health and max(health) < 0.05, sorted(health)[-5:]


def test_a_request_over_the_placement_steps_bound_is_422(database_url: str,
                                                         fleet_schema: str) -> None:
    limits = Limits(max_placement_steps=4 * 2 * 39)
    with service_thread(database_url, fleet_schema, NOW, limits) as url:
        status, body = ask(url)
        assert status == 422 and body["error"] == "too_costly"
        assert body["message"].startswith("placing the request on 40 candidates takes 320 "
                                          "steps (units x nodes), over the bound of 312")
        assert ask(url, AMPLIFIER_PATH + "&limit=39")[0] == 200


def test_an_answer_over_the_cap_is_422(database_url: str, fleet_schema: str) -> None:
    with service_thread(database_url, fleet_schema, NOW, Limits(max_answer_bytes=1000)) as url:
        status, body = ask(url)
        assert status == 422 and body["error"] == "too_costly"
        assert "over the cap of 1000" in body["message"]


def test_a_spent_time_budget_is_503(database_url: str, fleet_schema: str) -> None:
    with service_thread(database_url, fleet_schema, NOW, Limits(time_budget_seconds=1e-6)) as url:
        status, body = ask(url)
        assert status == 503 and body["error"] == "over_budget"
        assert "time budget" in body["message"]


def test_every_error_answer_has_the_one_shape(base: str) -> None:
    with httpx.Client(base_url=base, timeout=5) as http:
        answers = {
            "unknown route": (404, http.get("/v1/nothing-here")),
            "unknown provider": (404, http.get("/v1/providers/nobody")),
            "wrong method": (405, http.post("/healthz")),
            "screening wrong method": (405, http.get("/v1/prefilter")),
            "text body": (415, http.post("/v1/bid-screening", content=b"{}",
                                         headers={"content-type": "text/plain"})),
            "no content type": (415, http.post("/v1/prefilter", content=b"{}")),
            "large body": (413, http.post("/v1/prefilter", content=b" " * 70_000,
                                          headers=JSON)),
            "path parameter": (422, http.get("/v1/hardware/" + "x" * 65)),
        }
    for what, (status, response) in answers.items():
        assert response.status_code == status, what
        assert set(response.json()) == {"error", "message"}, what
    assert answers["wrong method"][1].headers["allow"] == "GET"


def test_the_http_parsers_400_is_json(base: str) -> None:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    answer = orjson.loads(body)
    assert answer["error"] == "bad_request" and answer["message"].startswith("http: ")
