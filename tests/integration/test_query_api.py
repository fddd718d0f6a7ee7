"""Issue 5 "Done when", through HTTP, on a fleet loaded by publishing events and projecting them.

One data set for the module (publishing and projecting once keeps the suite lean); every
assertion checks that specific providers are in or out of the answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.query import read_models
from hwledger.query.aggregator import parse_group_spec
from hwledger.query.prefilter_conditions import Shares
from hwledger.query.prefilter_sql import prefilter
from hwledger.query.repository import compiled
from hwledger.query.screening_filter import screening_filter
from hwledger.schemas.db import connect
from hwledger.schemas.events import EventData
from hwledger.schemas.units import GiB
from tests.factories import at, gpu, provider_audited, provider_registered, run_started, snapshot
from tests.integration.query_support import (
    Screen,
    client,
    cpu_unit,
    fresh_schema,
    gpu_unit,
    group_spec,
    load,
    owners,
    screener,
)

NOW = at(10)  # the service's clock; TTL 900 s -> online since at(-5)
AUDITOR_A, AUDITOR_B = "akash1auditora", "akash1auditorb"


def node(provider: str, name: str, gpus: list[dict[str, Any]], *, minutes: float = 0,
         cpu: int = 190_000, memory: int = 1400 * GiB,
         storage: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return snapshot(provider, name, gpus=gpus, minutes=minutes,
                    allocatable={"cpu_millicores": cpu, "memory_bytes": memory,
                                 "ephemeral_storage_bytes": 3000 * GiB},
                    storage=[{"class": "beta3", "bytes": 7000 * GiB}] if storage is None
                    else storage)


def fleet() -> list[EventData]:
    events: list[EventData] = []

    def register(provider: str, attributes: dict[str, str]) -> None:
        events.append(("ProviderRegistered", provider_registered(provider,
                                                                 attributes=attributes)))

    register("p-mixed", {"region": "us-west", "host/gpu": "akash"})
    events.append(("HardwareSnapshotted", node(
        "p-mixed", "node-1", [gpu(0, "h100-sxm"), gpu(1, "h100-sxm"), gpu(2, "a100-sxm"),
                              gpu(3, "a100-sxm")], storage=[
            {"class": "beta2", "bytes": 1000 * GiB}, {"class": "beta3", "bytes": 1000 * GiB}])))
    register("p-h100", {"region": "us-west", "host/gpu/foo": "akash"})
    events.append(("HardwareSnapshotted", node("p-h100", "node-1",
                                               [gpu(i, "h100-sxm") for i in range(8)])))
    register("p-a100", {"region": "US-WEST", "host/gpu": "akash"})
    events.append(("HardwareSnapshotted", node("p-a100", "node-1",
                                               [gpu(i, "a100-pcie") for i in range(8)])))
    events.append(("HardwareSnapshotted", node("p-amd", "node-1",
                                               [gpu(i, "mi300x") for i in range(8)])))
    events.append(("HardwareSnapshotted", node("p-multi", "node-1",
                                               [gpu(0, "h100-sxm"), gpu(1, "h100-sxm")])))
    events.append(("HardwareSnapshotted", node("p-multi", "node-2",
                                               [gpu(0, "mi300x"), gpu(1, "mi300x")])))
    events.append(("HardwareSnapshotted", node("p-cpu", "node-1", [])))
    for name in ("node-1", "node-2"):
        events.append(("HardwareSnapshotted", node(
            "p-two", name, [], cpu=10_000, memory=8 * GiB,
            storage=[{"class": "beta2", "bytes": 500 * GiB}])))
    busy = node("p-busy", "node-1", [gpu(0, "h100-sxm"), gpu(1, "h100-sxm")])
    events.append(("HardwareSnapshotted", busy))
    events.append(("RunStarted", run_started(busy, "run-busy", gpu_slots=[0, 1], minutes=2,
                                             resources={"cpu_millicores": 1000,
                                                        "memory_bytes": GiB,
                                                        "ephemeral_storage_bytes": GiB,
                                                        "gpu_slots": [0, 1]})))
    events.append(("HardwareSnapshotted", node("p-stale", "node-1",
                                               [gpu(i, "h100-sxm") for i in range(8)],
                                               minutes=-30)))
    events.append(("ProviderAudited", provider_audited("p-h100", AUDITOR_A)))
    events.append(("ProviderAudited", provider_audited("p-h100", AUDITOR_B)))
    events.append(("ProviderAudited", provider_audited("p-a100", AUDITOR_A)))
    return events


@pytest.fixture(scope="module")
def loaded(database_url: str, kafka_config: dict[str, Any]) -> Iterator[str]:
    topic = f"hwledger.test.query.{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka_config, topic, 3)
    with fresh_schema(database_url) as schema:
        load(database_url, schema, kafka_config, topic, fleet())
        yield schema


@pytest.fixture(scope="module")
def http(database_url: str, loaded: str) -> Iterator[TestClient]:
    with client(database_url, loaded, NOW) as found:
        yield found


@pytest.fixture(scope="module")
def screen(http: TestClient) -> Screen:
    return screener(http)


def test_vendor_only_matches_mixed_models_and_excludes_other_vendors(screen: Screen) -> None:
    found = owners(screen(group_spec(gpu_unit(1, "vendor/nvidia/model/*"))))
    assert {"p-mixed", "p-h100", "p-a100", "p-multi"} <= found
    assert "p-amd" not in found and "p-cpu" not in found


def test_alternatives_in_one_unit_are_ored(screen: Screen) -> None:
    found = owners(screen(group_spec(gpu_unit(1, "vendor/nvidia/model/h100",
                                              "vendor/amd/model/mi300x"))))
    assert {"p-h100", "p-amd", "p-multi", "p-mixed"} <= found
    assert "p-a100" not in found


def test_two_units_with_different_gpus_need_a_provider_with_both(screen: Screen) -> None:
    found = owners(screen(group_spec(gpu_unit(1, "vendor/nvidia/model/h100"),
                                     gpu_unit(1, "vendor/amd/model/mi300x"))))
    assert "p-multi" in found
    assert not {"p-h100", "p-amd", "p-mixed"} & found


def test_unit_without_gpus_adds_no_clause_and_keeps_gpu_less_providers(screen: Screen) -> None:
    answer = screen(group_spec(cpu_unit(1000)), explain=True)
    assert {"p-cpu", "p-two", "p-h100"} <= owners(answer)
    assert "gpu_models_free" not in answer["sql"]
    mixed = screen(group_spec(cpu_unit(1000), gpu_unit(1, "vendor/nvidia/model/h100")),
                   explain=True)
    assert mixed["sql"].count("gpu_models_free &&") == 1
    assert "p-cpu" not in owners(mixed)


def test_node_tokens_keep_providers_with_one_replicas_gpus_on_one_node(
        screen: Screen, http: TestClient) -> None:
    two = owners(screen(group_spec(gpu_unit(2, "vendor/nvidia/model/h100"))))
    three = screen(group_spec(gpu_unit(3, "vendor/nvidia/model/h100")), explain=True)
    four = screen(group_spec(gpu_unit(4, "vendor/nvidia/model/h100")), explain=True)
    assert {"p-h100", "p-mixed", "p-multi"} <= two  # two H100s on one node each
    assert three["filter"]["units"][0]["gpuNodeTokens"] == ["nvidia/h100#2"]  # the step <= 3
    assert "p-h100" in owners(four) and not {"p-mixed", "p-multi"} & owners(four)
    assert four["filter"]["units"][0]["gpuNodeTokens"] == ["nvidia/h100#4"]
    assert "gpu_node_tokens_free &&" in four["sql"]
    by_ram = owners(screen(group_spec(gpu_unit(1, "vendor/nvidia/model/mi300x/ram/80Gi",
                                               "vendor/amd/model/mi300x/ram/192Gi"))))
    assert {"p-amd", "p-multi"} <= by_ram and "p-h100" not in by_ram
    assert not owners(screen(group_spec(gpu_unit(1, "vendor/amd/model/mi300x/ram/80Gi"))))
    posted = http.post("/v1/prefilter", json={"units": [{"gpuNodeTokens": ["NVIDIA/H100#4"]}]})
    assert posted.status_code == 200 and owners(posted.json()) == owners(four)


def test_model_token_is_case_insensitive(screen: Screen) -> None:
    assert "p-a100" in owners(screen(group_spec(gpu_unit(1, "vendor/NVIDIA/model/A100"))))


def test_gpus_held_by_unfinished_runs_exclude_the_provider(screen: Screen) -> None:
    assert "p-busy" not in owners(screen(group_spec(gpu_unit(1, "vendor/nvidia/model/h100"))))
    assert "p-busy" in owners(screen(group_spec(cpu_unit(1000))))


def test_capacity_totals_and_largest_node(screen: Screen) -> None:
    exactly = owners(screen(group_spec(cpu_unit(10_000, count=2))))
    short = owners(screen(group_spec(cpu_unit(7_000, count=3))))
    too_big_for_a_node = owners(screen(group_spec(cpu_unit(15_000))))
    assert "p-two" in exactly
    assert "p-two" not in short
    assert "p-two" not in too_big_for_a_node and "p-cpu" in too_big_for_a_node


def test_memory_plus_ram_volume_counts(screen: Screen) -> None:
    fits = owners(screen(group_spec(cpu_unit(1000, memory=6 * GiB, ram_volume=2 * GiB))))
    over = owners(screen(group_spec(cpu_unit(1000, memory=6 * GiB, ram_volume=3 * GiB))))
    assert "p-two" in fits and "p-two" not in over


def test_signed_by(screen: Screen) -> None:
    all_of = owners(screen(group_spec(cpu_unit(1000), all_of=[AUDITOR_A, AUDITOR_B])))
    any_of = owners(screen(group_spec(cpu_unit(1000), any_of=[AUDITOR_B, "akash1nobody"])))
    any_a = owners(screen(group_spec(cpu_unit(1000), any_of=[AUDITOR_A])))
    empty = owners(screen(group_spec(cpu_unit(1000))))
    assert "p-h100" in all_of and "p-a100" not in all_of
    assert "p-h100" in any_of and "p-a100" not in any_of
    assert {"p-h100", "p-a100"} <= any_a and "p-cpu" not in any_a
    assert "p-cpu" in empty


def test_attributes_exact_glob_and_case(screen: Screen) -> None:
    glob = owners(screen(group_spec(cpu_unit(1000), attributes={"host/*": "akash"})))
    assert {"p-mixed", "p-a100"} <= glob and "p-h100" not in glob
    both = owners(screen(group_spec(cpu_unit(1000), attributes={"region": "us-west",
                                                                "host/*": "akash"})))
    assert "p-mixed" in both and "p-a100" not in both and "p-h100" not in both
    exact = owners(screen(group_spec(cpu_unit(1000), attributes={"region": "us-west"})))
    assert {"p-mixed", "p-h100"} <= exact and "p-a100" not in exact


def test_storage_classes_are_contained(screen: Screen) -> None:
    def persistent(*classes: str) -> list[dict[str, Any]]:
        return [{"name": f"data-{c}", "quantity": {"val": str(GiB)}, "attributes": [
            {"key": "persistent", "value": "true"}, {"key": "class", "value": c}]}
            for c in classes]
    beta3 = owners(screen(group_spec(cpu_unit(1000, storage=persistent("beta3")))))
    both = owners(screen(group_spec(cpu_unit(1000, storage=persistent("beta2", "beta3")))))
    assert "p-h100" in beta3 and "p-two" not in beta3
    assert "p-mixed" in both and "p-h100" not in both and "p-two" not in both


def test_absurd_but_valid_quantities_find_nobody(screen: Screen) -> None:
    assert owners(screen(group_spec(gpu_unit(2**40, "vendor/nvidia", count=10_000)))) == set()


def test_provider_not_seen_within_ttl_is_excluded(screen: Screen) -> None:
    assert "p-stale" not in owners(screen(group_spec(gpu_unit(1, "vendor/nvidia"))))


def test_exact_keeps_only_placeable_providers_with_their_placement(screen: Screen) -> None:
    request = group_spec(gpu_unit(4, "vendor/nvidia/model/*"))
    exact = screen(request, exact=True, explain=True)
    placed = {p["owner"]: p["placement"] for p in exact["providers"]}
    assert placed["p-h100"] == [{"unit": 0, "node": "node-1", "count": 1,
                                 "gpuSlots": [0, 1, 2, 3]}]
    # p-mixed's node has two H100s and two A100s: its node tokens say no four of one model
    assert "p-mixed" not in owners(screen(request)) and "p-mixed" not in placed
    sxm = group_spec(gpu_unit(4, "vendor/nvidia/model/a100/interface/sxm"))
    assert "p-a100" in owners(screen(sxm))  # PCIe A100s: the interface is the bin-packer's
    strict = screen(sxm, exact=True, explain=True)
    assert "p-a100" not in owners(strict) and {r["owner"] for r in strict["rejected"]} >= {
        "p-a100"}


def test_as_of_tells_the_projection_position_and_min_position_waits(screen: Screen) -> None:
    answer = screen(group_spec(cpu_unit(1000)))
    as_of = answer["asOf"]
    assert as_of["position"] == len(fleet())
    assert as_of["lastEventAt"] is not None
    reached = screen(group_spec(cpu_unit(1000)), minPosition=as_of["position"])
    assert reached["asOf"]["minPositionReached"] is True
    ahead = screen(group_spec(cpu_unit(1000)), minPosition=as_of["position"] + 1)
    assert ahead["asOf"]["minPositionReached"] is False


def test_limit_truncates_and_the_answer_is_ordered_json(screen: Screen) -> None:
    full = screen(group_spec(cpu_unit(1000)))
    assert full["truncated"] is False and len(full["providers"]) >= 3
    assert [p["owner"] for p in full["providers"]] == sorted(owners(full))
    first = full["providers"][0]
    assert set(first) == {"owner", "hostUri", "auditedBy", "gpuModels", "lastSeenAt", "createdAt",
                          "location", "organization"}
    assert datetime.fromisoformat(first["lastSeenAt"]).utcoffset() == timedelta(0)
    cut = screen(group_spec(cpu_unit(1000)), limit=2)
    assert cut["truncated"] is True and len(cut["providers"]) == 2
    assert owners(cut) <= owners(full)


def test_common_conditions_behind_the_fence_give_the_same_answers(
        database_url: str, loaded: str) -> None:
    """Statistics decide which conditions use a GIN index; never what the answer is."""
    requests = [group_spec(gpu_unit(1, "vendor/nvidia/model/h100", "vendor/amd/model/mi300x"),
                           attributes={"region": "us-west"}),
                group_spec(gpu_unit(1, "vendor/nvidia/model/h100"),
                           gpu_unit(1, "vendor/amd/model/mi300x")),
                group_spec(cpu_unit(1000), any_of=[AUDITOR_A], attributes={"host/*": "akash"}),
                group_spec(gpu_unit(4, "vendor/nvidia/model/h100"))]
    common = Shares(gpu_tokens=dict.fromkeys(("nvidia/h100", "amd/mi300x"), 1.0),
                    attributes={("region", "us-west"): 1.0},
                    gpu_node_tokens={"nvidia/h100#4": 1.0})
    with connect(database_url, loaded, autocommit=True) as conn:
        for request in requests:
            screen = screening_filter(parse_group_spec(request))
            answers = []
            for shares in (Shares(), common):
                query = prefilter(screen, NOW - timedelta(seconds=900), 101, shares)
                row = conn.execute(*query.answer_sql(loaded)).fetchone()
                assert row is not None
                answers.append(json.loads(row[3]))
            assert answers[0] == answers[1] and answers[0]
            assert "OFFSET" in compiled(prefilter(screen, None, 101, common).statement)[0]


@pytest.mark.parametrize("body", [
    {"totalGpu": 8, "units": [{"gpuTokens": ["amd"], "storageClasses": []}]},
    {"total_gpu": 8, "units": [{"gpu_tokens": ["amd"], "storage_classes": []}]},
], ids=["camelCase", "snake_case as DESIGN writes it"])
def test_prefilter_route_takes_the_filter(http: TestClient, body: dict[str, Any]) -> None:
    response = http.post("/v1/prefilter", json=body)
    assert response.status_code == 200
    assert "p-amd" in owners(response.json()) and "p-h100" not in owners(response.json())


def test_the_explained_filter_is_camel_case_and_posts_back(screen: Screen,
                                                            http: TestClient) -> None:
    answer = screen(group_spec(gpu_unit(1, "vendor/nvidia/model/h100")), explain=True)
    echo = answer["filter"]
    assert echo["totalGpu"] == 1 and echo["units"][0]["gpuTokens"] == ["nvidia/h100"]
    assert not [key for key in (*echo, *echo["units"][0], *echo["signedBy"]) if "_" in key]
    again = http.post("/v1/prefilter", params={"explain": "true"}, json=echo).json()
    assert again["filter"] == echo and owners(again) == owners(answer)


def test_detail_routes(http: TestClient) -> None:
    provider = http.get("/v1/providers/p-busy").json()
    read_models.Provider.model_validate(provider)
    assert provider["nodes"][0]["free"]["gpuSlots"] == []
    run = http.get("/v1/providers/p-busy/runs/run-busy").json()
    assert http.get("/v1/runs/run-busy").json() == run
    read_models.Run.model_validate(run)
    assert run["resources"]["gpuSlots"] == [0, 1]
    assert [g["slotIndex"] for g in run["hardware"]["gpus"]] == [0, 1]
    assert run["software"]["os"].startswith("Ubuntu")
    hardware_id = provider["nodes"][0]["systemHardwareId"]
    hardware = http.get(f"/v1/hardware/{hardware_id}").json()
    read_models.Hardware.model_validate(hardware)
    assert hardware["gpuCount"] == 2 and hardware["gpus"][0]["model"] == "h100"
    assert http.get("/v1/providers/nobody").status_code == 404
    assert http.get("/v1/runs/nope").status_code == 404
    assert http.get("/v1/hardware/not-a-uuid").status_code == 404
    assert http.get("/readyz").status_code == 200
