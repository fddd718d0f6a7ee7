"""The query service's /metrics over a real database: bid screening's domain figures move
with each answer, and `hwledger serve --workers 2` shows every worker's counts in one scrape.

The fleet holds one provider the bin-packer places the request on and one prefilter false
positive: enough GPUs in total and on its largest node, but no two nodes with 3 free each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hwledger.schemas.events import EventData
from tests.cli import serving
from tests.factories import at, gpu, snapshot
from tests.integration.query_support import client, gpu_unit, group_spec, schema_with
from tests.waiting import wait_until

NOW = at(10)
REQUEST = group_spec(gpu_unit(3, "vendor/nvidia", count=2))
SCREENING = "/v1/bid-screening"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fleet() -> list[EventData]:
    return [("HardwareSnapshotted", snapshot("p-fits", "node-1", gpus=[gpu(i) for i in range(8)])),
            ("HardwareSnapshotted", snapshot("p-split", "node-1",
                                             gpus=[gpu(i) for i in range(4)])),
            ("HardwareSnapshotted", snapshot("p-split", "node-2",
                                             gpus=[gpu(i) for i in range(2)]))]


@pytest.fixture(scope="module")
def fleet_schema(database_url: str) -> Iterator[str]:
    with schema_with(database_url, fleet()) as schema:
        yield schema


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_screening_answers_move_candidates_placements_and_rejections(
        database_url: str, fleet_schema: str) -> None:
    with client(database_url, fleet_schema, NOW) as http:
        before = samples(http.get("/metrics").text)
        exact = http.post(SCREENING + "?exact=true&explain=true", json=REQUEST).json()
        assert [p["owner"] for p in exact["providers"]] == ["p-fits"]
        assert [r["owner"] for r in exact["rejected"]] == ["p-split"]
        loose = http.post(SCREENING, json=REQUEST).json()
        assert [p["owner"] for p in loose["providers"]] == ["p-fits", "p-split"]
        after = samples(http.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    candidates = "hwledger_query_screening_candidates"
    assert moved(f"{candidates}_count", route=SCREENING, exact="true") == 1
    assert moved(f"{candidates}_sum", route=SCREENING, exact="true") == 2
    assert moved(f"{candidates}_sum", route=SCREENING, exact="false") == 2
    assert moved("hwledger_query_screening_placements_sum") == 1
    assert moved("hwledger_query_screening_placements_count") == 1
    assert moved("hwledger_query_binpacker_rejections_total") == 1


def scrape(base: str) -> Samples:
    return samples(httpx.get(base + "/metrics", timeout=10).text)


@pytest.mark.slow
def test_one_scrape_of_serve_with_two_workers_counts_every_workers_requests(
        database_url: str, fleet_schema: str, home: Path, tmp_path: Path) -> None:
    requests, threads = 40, 4
    with serving(home, "warning", "--workers", "2", TMPDIR=str(tmp_path),
                 HWLEDGER_DB_SCHEMA=fleet_schema,
                 HWLEDGER_QUERY_DATABASE_URL=database_url,
                 HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE="1",
                 HWLEDGER_ONLINE_TTL_SECONDS=str(10**9)) as (process, base):
        [directory] = tmp_path.glob("hwledger-metrics-*")
        wait_until(lambda: value(scrape(base), "hwledger_query_workers") == 2, 60,
                   "the second worker to start", interval=0.2)

        def send() -> None:
            for _ in range(requests // threads):  # a connection each: either worker answers
                response = httpx.post(base + SCREENING + "?exact=true", json=REQUEST, timeout=10)
                assert response.status_code == 200, response.text

        senders = [threading.Thread(target=send) for _ in range(threads)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        for _ in range(5):  # each scrape may reach either worker
            found = scrape(base)
            assert value(found, "hwledger_query_requests_total", route=SCREENING,
                         status="200") == requests
            assert value(found, "hwledger_query_screening_candidates_count", route=SCREENING,
                         exact="true") == requests
            assert value(found, "hwledger_query_binpacker_rejections_total") == requests
            pids = {dict(labels)["pid"] for name, labels in found
                    if name == "process_resident_memory_bytes"}
            assert len(pids) == 2 and str(process.pid) not in pids, pids
            assert "python_info" in {name for name, _ in found}
    assert not directory.exists()
