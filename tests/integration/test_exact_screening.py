"""Issue 15, points 1 and 6, through HTTP: `exact=true` reads candidates until it has `limit`
placeable providers, both screening routes page with a cursor, and the search placement finds
what Akash's greedy rule turns away; every answer is valid under the documented answer schema.

The fleet: 60 providers with two 80 GB PCIe A100s (`fp-*`) first by owner and first in scan
order, then 5 with two 80 GB SXM A100s (`zz-*`): every one is a prefilter candidate for
`a100/ram/80Gi/interface/sxm` (the interface stays with the bin-packer), only the last five are
placeable. `mix` has an H100 and an H200 on one node and an H200 on another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from hwledger.schemas.events import EventData
from hwledger.schemas.units import GiB
from tests.factories import at, gpu, snapshot
from tests.integration.query_support import client, gpu_unit, group_spec, schema_with

NOW = at(10)
FALSE_POSITIVES = [f"fp-{p:02d}" for p in range(60)]
PLACEABLE = [f"zz-{p:02d}" for p in range(5)]
A100_80 = group_spec(gpu_unit(2, "vendor/nvidia/model/a100/ram/80Gi/interface/sxm"))
ANY_MODEL_TWICE = group_spec(gpu_unit(1, "vendor/nvidia/model/*", count=2))


def a100s(kind: str) -> list[dict[str, Any]]:
    return [gpu(i, kind, vram_bytes=80 * GiB) for i in range(2)]


def h200(slot: int) -> dict[str, Any]:
    return gpu(slot, "h100-sxm", name="NVIDIA H200", pci_device_id="2335",
               vram_bytes=141 * GiB)


def fleet() -> list[EventData]:
    events: list[EventData] = [
        ("HardwareSnapshotted", snapshot(p, "node-1", gpus=a100s("a100-pcie")))
        for p in FALSE_POSITIVES]
    events += [("HardwareSnapshotted", snapshot(p, "node-1", gpus=a100s("a100-sxm")))
               for p in PLACEABLE]
    events += [("HardwareSnapshotted", snapshot("mix", "node-1", gpus=[gpu(0), h200(1)])),
               ("HardwareSnapshotted", snapshot("mix", "node-2", gpus=[h200(0)]))]
    return events


@pytest.fixture(scope="module")
def http(database_url: str) -> Iterator[TestClient]:
    with schema_with(database_url, fleet()) as schema, \
            client(database_url, schema, NOW, online_ttl_seconds=10**9) as found:
        yield found


def post(http: TestClient, spec: dict[str, Any], path: str = "/v1/bid-screening",
         **query: Any) -> dict[str, Any]:
    """The 200 answer, checked against the answer schema the OpenAPI document gives."""
    response = http.post(path, json=spec, params=query)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    documented = http.get("/openapi.json").json()["paths"][path]["post"]["responses"]["200"]
    jsonschema_rs.validator_for(documented["content"]["application/json"]["schema"]
                                ).validate(answer)
    return answer


def walk(http: TestClient, spec: dict[str, Any], path: str = "/v1/bid-screening",
         **query: Any) -> list[list[str]]:
    """Every page, following the cursors: the owners of each."""
    pages, cursor = [], None
    while True:
        answer = post(http, spec, path, **query, **({} if cursor is None else {"cursor": cursor}))
        pages.append([p["owner"] for p in answer["providers"]])
        assert answer["truncated"] == (answer["cursor"] is not None)
        if not answer["truncated"]:
            return pages
        cursor = answer["cursor"]
        assert len(pages) < 100, "the walk does not end"


def test_exact_reads_past_false_positives_until_limit_are_placed(http: TestClient) -> None:
    answer = post(http, A100_80, exact="true", limit="3", explain="true")
    assert [p["owner"] for p in answer["providers"]] == PLACEABLE[:3]
    assert answer["truncated"] is True and answer["cursor"]
    # a false positive costs its greedy pass alone: no other model matches, nothing to search
    assert answer["cost"] == {"candidatesExamined": 63, "batches": 5,  # 3 + 6 + 12 + 24 + 48
                              "placementSteps": 60 + 3}
    assert {r["owner"] for r in answer["rejected"]} == set(FALSE_POSITIVES)
    rest = post(http, A100_80, exact="true", limit="3", cursor=answer["cursor"])
    assert [p["owner"] for p in rest["providers"]] == PLACEABLE[3:]
    assert rest["truncated"] is False and rest["cursor"] is None


def test_exact_pages_give_every_placeable_provider_once(http: TestClient) -> None:
    pages = walk(http, A100_80, exact="true", limit="2")
    assert pages == [PLACEABLE[:2], PLACEABLE[2:4], PLACEABLE[4:]]


def test_exact_says_not_truncated_when_every_candidate_was_examined(http: TestClient) -> None:
    answer = post(http, A100_80, exact="true", limit="5", explain="true")
    assert [p["owner"] for p in answer["providers"]] == PLACEABLE
    assert answer["cost"]["candidatesExamined"] == 65 and answer["truncated"] is False


@pytest.mark.parametrize("path", ["/v1/bid-screening", "/v1/prefilter"])
def test_candidate_pages_give_every_candidate_once(http: TestClient, path: str) -> None:
    spec = A100_80 if path == "/v1/bid-screening" else {"units": [
        {"gpu_tokens": ["nvidia/a100"]}]}
    pages = walk(http, spec, path, limit="7", paged="true")
    found = [owner for page in pages for owner in page]
    assert found == sorted(FALSE_POSITIVES + PLACEABLE) and len(pages) == 10
    assert all(len(page) == 7 for page in pages[:-1])


@pytest.mark.parametrize("path", ["/v1/bid-screening", "/v1/prefilter"])
def test_an_answer_not_paged_is_the_scan_order_fast_path_without_a_cursor(
        http: TestClient, path: str) -> None:
    spec = A100_80 if path == "/v1/bid-screening" else {"units": [
        {"gpu_tokens": ["nvidia/a100"]}]}
    answer = post(http, spec, path, limit="7", explain="true")
    assert answer["truncated"] is True and answer["cursor"] is None
    assert len(answer["providers"]) == 7
    assert "ORDER BY provider_inventory.provider_id" not in answer["sql"]
    paged = post(http, spec, path, limit="7", explain="true", paged="true")
    assert "ORDER BY provider_inventory.provider_id" in paged["sql"]
    assert [p["owner"] for p in paged["providers"]] == sorted(FALSE_POSITIVES + PLACEABLE)[:7]


def test_search_places_what_greedy_turns_away(http: TestClient) -> None:
    searched = post(http, ANY_MODEL_TWICE, exact="true", limit="1000", explain="true")
    mix = {p["owner"]: p for p in searched["providers"]}["mix"]
    assert mix["placement"] == [{"unit": 0, "node": "node-1", "count": 1, "gpuSlots": [1]},
                                {"unit": 0, "node": "node-2", "count": 1, "gpuSlots": [0]}]
    greedy = post(http, ANY_MODEL_TWICE, exact="true", limit="1000", explain="true",
                  packing="greedy")
    assert "mix" not in {p["owner"] for p in greedy["providers"]}
    assert {r["owner"]: r["reason"] for r in greedy["rejected"]}["mix"].startswith(
        "resources[0] replica 2 of 2: no node has")


@pytest.mark.parametrize("path", ["/v1/bid-screening", "/v1/prefilter"])
def test_an_answer_waiting_for_a_position_says_whether_it_was_reached(http: TestClient,
                                                                      path: str) -> None:
    spec = A100_80 if path == "/v1/bid-screening" else {}
    reached = post(http, spec, path, minPosition="0", limit="1")
    assert reached["asOf"]["minPositionReached"] is True
    unreached = post(http, spec, path, minPosition=str(2**62), limit="1")  # waits max_wait
    assert unreached["asOf"]["minPositionReached"] is False
    assert "minPositionReached" not in post(http, spec, path, limit="1")["asOf"]


@pytest.mark.parametrize(("query", "message"), [
    ({"cursor": "not-a-cursor"}, "query.cursor: not a cursor of this service"),
    ({"cursor": ""}, "query.cursor: expected the cursor of a previous answer"),
    ({"packing": "best"}, "query.packing: expected one of search, greedy"),
])
def test_a_bad_cursor_or_packing_is_422(http: TestClient, query: dict[str, str],
                                        message: str) -> None:
    for path in ("/v1/bid-screening", "/v1/prefilter"):
        if path == "/v1/prefilter" and "packing" in query:
            continue
        response = http.post(path, json=A100_80 if "bid" in path else {}, params=query)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == "invalid_parameter" and body["message"].startswith(message)
