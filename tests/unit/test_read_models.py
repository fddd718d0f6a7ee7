"""The read routes' response models: their examples are answers of the model, and the OpenAPI
document names each read route's model, camelCase throughout, with its example."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from hwledger.query import read_models
from hwledger.query.api import create_app
from hwledger.query.service import QueryService, make_engine

READ_ROUTES: dict[str, type[BaseModel]] = {
    "/v1/providers": read_models.Providers,
    "/v1/providers/{owner}": read_models.Provider,
    "/v1/providers/{owner}/runs/{run_id}": read_models.Run,
    "/v1/runs/{run_id}": read_models.Run,
    "/v1/hardware/{system_hardware_id}": read_models.Hardware,
    "/v1/gpus": read_models.Gpus,
    "/readyz": read_models.Ready,
    "/healthz": read_models.Health,
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def document() -> Any:
    service = QueryService(make_engine("postgresql://nobody@127.0.0.1:1/none"))
    with TestClient(create_app(service)) as client:
        yield client.get("/openapi.json").json()
    service.engine.dispose()


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("model", list(dict.fromkeys(READ_ROUTES.values())))
def test_each_example_is_an_answer_of_its_model_with_one_timestamp_format(
        model: type[BaseModel]) -> None:
    [example] = model.model_json_schema()["examples"]
    model.model_validate(example)
    times = [s for s in _strings(example) if re.match(r"^\d{4}-\d\d-\d\dT", s)]
    assert all(TIMESTAMP.match(t) for t in times), times


def test_every_read_route_documents_its_answer_with_an_example(document: Any) -> None:
    for path, model in READ_ROUTES.items():
        ok = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}, path
        if model is not read_models.Health:
            model.model_validate(ok["example"])
            assert {"404", "503"} & set(document["paths"][path]["get"]["responses"]), path


def test_the_answer_schemas_are_camel_case_and_require_every_key(document: Any) -> None:
    schemas = document["components"]["schemas"]
    for name in ("Run", "RunMetrics", "Software", "Hardware", "HardwareGpu", "GpuSpec",
                 "Provider", "Totals", "Node", "Gpus", "Providers", "AsOf"):
        properties = schemas[name]["properties"]
        assert all("_" not in key for key in properties), name
        assert set(schemas[name]["required"]) == set(properties), name
    assert {"peakVramBytes", "tflopsUtilizationPct"} <= set(schemas["RunMetrics"]["properties"])
    assert schemas["Totals"]["properties"]["leasedIp"]["anyOf"][1] == {"type": "null"}


def test_an_answer_key_the_model_lacks_is_refused() -> None:
    [example] = read_models.Run.model_json_schema()["examples"]
    with pytest.raises(ValueError, match="extra"):
        read_models.Run.model_validate({**example, "peakVram": 1})
