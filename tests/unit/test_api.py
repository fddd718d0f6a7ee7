"""The HTTP layer without a database: bad input is 422/413/415 with {"error","message"}, as are
unknown routes and wrong methods, a missing database is 503, and the OpenAPI document
describes the routes of DESIGN section 6."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hwledger.query.api import create_app
from hwledger.query.fleet import FleetFilter
from hwledger.query.reads import GPU_ANSWER_SECONDS, Reads
from hwledger.query.screening_http import MAX_BODY_BYTES, UNAVAILABLE_MESSAGE
from hwledger.query.service import QueryService, make_engine

NOWHERE = "postgresql://nobody@127.0.0.1:1/none"
GPU_UNIT = {"resource": {"cpu": {"units": {"val": "1000"}},
                         "gpu": {"units": {"val": "1"},
                                 "attributes": [{"key": "vendor/nvidia", "value": "true"}]}},
            "count": 1}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    service = QueryService(make_engine(NOWHERE), schema="hwledger")
    with TestClient(create_app(service)) as found:
        yield found


def post(client: TestClient, body: Any, path: str = "/v1/bid-screening") -> tuple[int, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"\xff\xfe", "body"),
    (b'{"resources": ' + b"1" * 5000 + b"}", "body"),
    (b"[" * 30_000 + b"]" * 30_000, "body"),
    ([1, 2], "body"),
    ({"resources": "many"}, "resources"),
    ({"resources": [{**GPU_UNIT, "count": 0}]}, "resources[0].count"),
    ({"resources": [{"resource": {"cpu": {"units": {"val": "-1"}}}, "count": 1}]},
     "resources[0].resource.cpu.units.val"),
    ({"resources": [{"resource": {"memory": {"quantity": {"val": "9" * 30}}}, "count": 1}]},
     "resources[0].resource.memory.quantity.val"),
    ({"resources": [{"resource": {"gpu": {"units": {"val": "1"}, "attributes": [
        {"key": "model/h100", "value": "true"}]}}, "count": 1}]},
     "resources[0].resource.gpu.attributes[0].key"),
    ({"resources": [{"resource": {"gpu": {"units": {"val": "1"}, "attributes": [
        {"key": "vendor/nvidia/model/h100/interface/nvlink9", "value": "true"}]}}, "count": 1}]},
     "resources[0].resource.gpu.attributes[0].key"),
    ({"resources": [GPU_UNIT], "requirements": {"attributes": [{"key": "a'; --", "value": 1}]}},
     "requirements.attributes[0].value"),
    ({"resources": [GPU_UNIT], "requirements": {"attributes": [{"key": "x\u0000", "value": "y"}]}},
     "requirements.attributes[0].key"),
])
def test_bad_bodies_are_422_naming_the_field(client: TestClient, body: Any, field: str) -> None:
    status, answer = post(client, body)
    assert status == 422
    assert set(answer) == {"error", "message"}
    assert answer["message"].startswith(f"{field}:")


def test_bad_filter_bodies_are_422(client: TestClient) -> None:
    status, answer = post(client, {"total_gpu": -3}, "/v1/prefilter")
    assert status == 422 and answer["message"].startswith("total_gpu:")


@pytest.mark.parametrize(("path", "query", "field"), [
    ("/v1/bid-screening", "exact=maybe&limit=5", "query.exact"),
    ("/v1/bid-screening", "explain=2", "query.explain"),
    ("/v1/bid-screening", "limit=0", "query.limit"),
    ("/v1/bid-screening", "limit=" + "9" * 5000, "query.limit"),
    ("/v1/prefilter", "limit=10001", "query.limit"),
    ("/v1/prefilter", "minPosition=-1", "query.minPosition"),
    ("/v1/prefilter", "minPosition=1.5", "query.minPosition"),
])
def test_bad_query_parameters_keep_the_error_shape(client: TestClient, path: str, query: str,
                                                   field: str) -> None:
    response = client.post(f"{path}?{query}", json={"resources": [GPU_UNIT]})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_parameter"
    assert response.json()["message"].startswith(f"{field}:")


@pytest.mark.parametrize(("query", "field"), [
    ("vendor=", "query.vendor"), ("vendor=nv%20idia", "query.vendor"),
    ("model=" + "h" * 65, "query.model"), ("model=-h100", "query.model"),
    ("region=us%00west", "query.region"), ("auditor=" + "a" * 257, "query.auditor"),
])
def test_bad_gpu_filters_are_422(client: TestClient, query: str, field: str) -> None:
    response = client.get(f"/v1/gpus?{query}")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_parameter"
    assert response.json()["message"].startswith(f"{field}:")


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_the_provider_list_is_bounded(client: TestClient, limit: str) -> None:
    response = client.get(f"/v1/providers?limit={limit}")
    assert response.status_code == 422
    assert response.json()["message"].startswith("query.limit:")


def test_the_console_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="gpu-table"' in page.text
    for asset, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        response = client.get(f"/console/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/console/nothing.js").json()["error"] == "not_found"


def test_bodies_over_64_kib_are_413(client: TestClient) -> None:
    padding = "x" * MAX_BODY_BYTES
    status, answer = post(client, {"name": padding, "resources": [GPU_UNIT]})
    assert status == 413 and answer["error"] == "body_too_large"


def test_valid_request_without_database_is_503_not_500(client: TestClient) -> None:
    status, answer = post(client, {"resources": [GPU_UNIT]})
    assert status == 503 and answer == {"error": "unavailable", "message": UNAVAILABLE_MESSAGE}
    assert client.get("/readyz").json() == answer
    assert client.get("/v1/gpus").json() == answer
    assert client.get("/v1/providers").json() == answer
    assert client.get("/healthz").json() == {"status": "ok"}


def test_keys_postgres_cannot_store_are_not_found(client: TestClient) -> None:
    assert client.get("/v1/providers/a%00b").status_code == 404
    assert client.get("/v1/runs/a%00b").status_code == 404
    assert client.get("/v1/providers/a%00b/runs/r").status_code == 404
    assert client.get("/v1/hardware/a%00b").status_code == 404


def test_openapi_lists_the_routes_with_body_schemas(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert {"/v1/bid-screening", "/v1/prefilter", "/v1/providers/{owner}", "/v1/runs/{run_id}",
            "/v1/providers/{owner}/runs/{run_id}",
            "/v1/hardware/{system_hardware_id}", "/healthz", "/readyz",
            "/metrics", "/v1/gpus", "/v1/providers"} <= set(document["paths"])
    assert {p["name"] for p in document["paths"]["/v1/gpus"]["get"]["parameters"]} == {
        "vendor", "model", "region", "auditor"}
    operation = document["paths"]["/v1/bid-screening"]["post"]
    body = operation["requestBody"]
    assert body["content"]["application/json"]["schema"]["title"] == "GroupSpec"
    assert {p["name"] for p in operation["parameters"]} == {
        "exact", "packing", "explain", "limit", "paged", "cursor", "minPosition"}
    prefilter = document["paths"]["/v1/prefilter"]["post"]
    assert {p["name"] for p in prefilter["parameters"]} == {"explain", "limit", "paged",
                                                            "cursor", "minPosition"}
    assert client.get("/docs").status_code == 200


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    post(client, b"{")
    text = client.get("/metrics").text
    assert 'hwledger_query_requests_total{route="/v1/bid-screening",status="422"}' in text


def test_screening_routes_take_only_post(client: TestClient) -> None:
    response = client.get("/v1/bid-screening")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


def test_a_client_gone_before_its_body_gets_no_answer_and_counts_as_499() -> None:
    app = create_app(QueryService(make_engine(NOWHERE), schema="hwledger"))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    async def request(method: str, path: str) -> None:
        await app({"type": "http", "method": method, "path": path, "query_string": b"",
                   "headers": []}, receive, send)

    asyncio.run(request("POST", "/v1/bid-screening"))
    assert sent == []
    asyncio.run(request("GET", "/metrics"))
    metrics = b"".join(m.get("body", b"") for m in sent).decode()
    assert 'hwledger_query_requests_total{route="/v1/bid-screening",status="499"} 1.0' in metrics


def test_every_route_answers_a_wrong_method_with_the_error_shape(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        concrete = path.replace("{", "").replace("}", "")
        wrong = "DELETE" if "delete" not in operations else "PATCH"
        response = client.request(wrong, concrete)
        assert response.status_code == 405, path
        assert set(response.json()) == {"error", "message"}, path
        assert response.json()["error"] == "method_not_allowed"
        assert response.headers["allow"], path


def test_unknown_routes_are_404_with_the_error_shape(client: TestClient) -> None:
    response = client.get("/v2/bid-screening")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "/v2/bid-screening: not found"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx",
                                          "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("path", ["/v1/bid-screening", "/v1/prefilter"])
def test_screening_bodies_must_be_json_or_415(client: TestClient, path: str,
                                              content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post(path, content=json.dumps({"resources": [GPU_UNIT]}), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert response.json()["message"].startswith("body: Content-Type must be application/json")
    charset = client.post(path, content=b"{", headers={
        "Content-Type": "Application/JSON; charset=utf-8"})
    assert charset.status_code == 422


def test_openapi_documents_the_counted_placement(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/bid-screening"]["post"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    placement = answer["properties"]["providers"]["items"]["properties"]["placement"]
    assert placement["items"]["required"] == ["unit", "node", "count", "gpuSlots"]
    assert {"413", "415", "422", "503"} <= set(operation["responses"])


def test_openapi_documents_the_screening_fields(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/bid-screening"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    resource = body["properties"]["resources"]["items"]["properties"]["resource"]
    kinds = resource["properties"]["endpoints"]["items"]["properties"]["kind"]["enum"]
    assert kinds == ["SHARED_HTTP", "RANDOM_PORT", "LEASED_IP"]
    assert body["properties"]["reclamationWindow"]["minimum"] == 1
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    provider = answer["properties"]["providers"]["items"]["properties"]
    assert {"createdAt", "location", "organization"} <= set(provider)
    assert provider["location"]["type"] == ["string", "null"]


class Failing(QueryService):
    """A service whose reads hit a bug."""

    def repeatable_read_on_search_path(self) -> Any:
        raise RuntimeError("bug")

    async def bid_screening(self, *_: Any, **__: Any) -> Any:
        raise RuntimeError("bug")


def test_a_bug_is_500_in_the_error_shape() -> None:
    app = create_app(Failing(make_engine(NOWHERE), schema="hwledger"))
    with TestClient(app, raise_server_exceptions=False) as failing:
        for response in (failing.get("/v1/providers/p"),
                         failing.post("/v1/bid-screening", json={"resources": [GPU_UNIT]})):
            assert response.status_code == 500
            assert response.json()["error"] == "internal_error"


def test_a_gpu_answer_is_reused_for_its_window_and_counted_once_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    service = QueryService(make_engine("postgresql://nobody@127.0.0.1:1/none"))
    reads = Reads(service)
    counted: list[FleetFilter] = []

    def count(wanted: FleetFilter) -> dict[str, Any]:
        counted.append(wanted)
        return {"count": len(counted)}

    monkeypatch.setattr(reads, "count_gpus", count)
    clock = [100.0]
    monkeypatch.setattr("hwledger.query.reads.time.monotonic", lambda: clock[0])
    nvidia = FleetFilter(vendor="nvidia")
    assert reads.gpus(nvidia) == reads.gpus(nvidia) == {"count": 1}
    assert reads.gpus(FleetFilter()) == {"count": 2}
    clock[0] += GPU_ANSWER_SECONDS + 1
    assert reads.gpus(nvidia) == {"count": 3}
    service.engine.dispose()
