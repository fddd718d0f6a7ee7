"""The read routes' answers: one provider, one run, one system_hardware row, the fleet
console's GPU counts and provider list, and readiness, as JSON-ready dicts (None when not
found), each read in one snapshot of the active schema (`QueryService.snapshot`).

`Reads` holds what these answers need beyond the service's plumbing: the short-lived cache of
`/v1/gpus` answers. The SQL of the detail reads is text over `search_path`; the fleet
console's is `repository`'s, its JSON shaping `fleet`'s. Database trouble raises
`service.Unavailable` (from the snapshot).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, text

from hwledger.query import fleet, repository
from hwledger.query.fleet import FleetFilter, iso
from hwledger.query.inventory import NodeInventory
from hwledger.query.placement_run import provider_nodes
from hwledger.query.service import QueryService, read_as_of
from hwledger.schemas import gpu_specs
from hwledger.schemas.cache import BoundedCache

GPU_ANSWER_SECONDS = 10.0
GPU_ANSWERS = 256


class AmbiguousRun(Exception):
    """`GET /v1/runs/{run_id}` names a run id that several providers use."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} exists for more than one provider; ask "
                         f"/v1/providers/{{owner}}/runs/{run_id}")


class Reads:
    """The read routes' answers over one QueryService (blocking: the routes call them in a
    thread)."""

    def __init__(self, service: QueryService) -> None:
        self.service = service
        self._gpu_answers: BoundedCache[FleetFilter, tuple[float, dict[str, Any]]] = \
            BoundedCache(GPU_ANSWERS)
        self._gpu_lock = threading.Lock()

    def gpus(self, wanted: FleetFilter) -> dict[str, Any]:
        """Installed and free GPUs of the online providers, per GPU kind and in total
        (`fleet.gpu_availability`), with `asOf` and the `onlineSince` cut-off.

        Counting a large fleet takes seconds (docs/performance.md), so an answer is reused for
        GPU_ANSWER_SECONDS (its `asOf` tells its age) and one count runs at a time: repeated
        console requests cannot each load the database with it."""
        with self._gpu_lock:
            cached = self._gpu_answers.get(wanted)
            if cached is not None and time.monotonic() - cached[0] < GPU_ANSWER_SECONDS:
                return cached[1]
            answer = self.count_gpus(wanted)
            self._gpu_answers.put(wanted, (time.monotonic(), answer))
            return answer

    def count_gpus(self, wanted: FleetFilter) -> dict[str, Any]:
        """`gpus`, counted now."""
        since = self.service.online_since()
        statement, params = repository.gpu_availability_statement(wanted, since)
        with self.service.repeatable_read() as (conn, schema):
            as_of = read_as_of(conn)
            conn.execute(text(repository.GPU_AVAILABILITY_SESSION))
            rows = conn.execute(statement, params).all()
        return {**fleet.gpu_availability(rows), "onlineSince": iso(since),
                "asOf": {"schema": schema, **as_of.to_json()}}

    def providers(self, limit: int) -> dict[str, Any]:
        """The first `limit` providers by owner, online or not, with their staleness
        (`fleet.provider_list`), the service clock `now`, `onlineSince` and `asOf`."""
        now = self.service.clock()
        with self.service.repeatable_read() as (conn, schema):
            as_of = read_as_of(conn)
            rows = conn.execute(repository.provider_list_statement(limit)).all()
        return {**fleet.provider_list(rows, limit, now, self.service.online_ttl), "now": iso(now),
                "onlineSince": iso(now - self.service.online_ttl),
                "asOf": {"schema": schema, **as_of.to_json()}}

    def provider(self, provider_id: str) -> dict[str, Any] | None:
        if not storable(provider_id):
            return None
        with self.service.repeatable_read_on_search_path() as conn:
            row = conn.execute(text(
                "SELECT * FROM provider_inventory WHERE provider_id = :p"), {"p": provider_id}
            ).mappings().first()
            if row is None:
                return None
            node_rows = conn.execute(text(
                "SELECT n.node_id, n.current_snapshot_event_id, n.first_seen_at, "
                "n.last_seen_at, s.system_hardware_id, s.system_software_id "
                "FROM nodes n JOIN hardware_snapshots s "
                "ON s.event_id = n.current_snapshot_event_id "
                "WHERE n.provider_id = :p ORDER BY n.node_id"), {"p": provider_id}).mappings().all()
            inventory = provider_nodes(conn, [provider_id]).get(provider_id)
        free = {n.node_id: n for n in (inventory.nodes if inventory else ())}
        return {
            "owner": row["provider_id"], "hostUri": row["host_uri"],
            "lastSeenAt": iso(row["last_seen_at"]), "createdAt": iso(row["created_at"]),
            "location": row["location"], "organization": row["organization"],
            "reclamationWindow": row["reclamation_window"], "nodeCount": row["node_count"],
            "totals": {to_camel(k.removeprefix("total_available_")): row[k] for k in row
                       if k.startswith("total_available_")},
            "maxNodeFree": {to_camel(k.removeprefix("max_node_free_")): row[k] for k in row
                            if k.startswith("max_node_free_")},
            "gpuModels": list(row["gpu_models"]), "gpuModelsFree": list(row["gpu_models_free"]),
            "storageClasses": list(row["storage_classes"]),
            "attributes": row["self_attributes"], "signedAttributes": row["signed_attributes"],
            "auditedBy": list(row["audited_by"]),
            "nodes": [_node_json(n, free.get(n["node_id"])) for n in node_rows],
        }

    def hardware(self, system_hardware_id: str) -> dict[str, Any] | None:
        ident = _uuid(system_hardware_id)
        if ident is None:
            return None
        with self.service.repeatable_read_on_search_path() as conn:
            return _hardware(conn, ident)

    def run(self, provider_id: str | None, run_id: str) -> dict[str, Any] | None:
        """Provider `provider_id`'s run `run_id`; with none, the one run of that id
        (AmbiguousRun when several providers have one)."""
        if not storable(run_id) or (provider_id is not None and not storable(provider_id)):
            return None
        with self.service.repeatable_read_on_search_path() as conn:
            rows = conn.execute(text(
                "SELECT r.*, s.system_hardware_id, s.system_software_id, "
                "array(SELECT u.slot_index FROM run_gpu_usage u WHERE (u.provider_id, u.run_id) "
                "= (r.provider_id, r.run_id) ORDER BY 1) AS gpu_slots FROM runs r "
                "JOIN hardware_snapshots s ON s.event_id = r.snapshot_event_id "
                "WHERE r.run_id = :r"
                + ("" if provider_id is None else " AND r.provider_id = :p")
                + " LIMIT 2"), {"r": run_id, "p": provider_id}).mappings().all()
            if not rows:
                return None
            if len(rows) > 1:
                raise AmbiguousRun(run_id)
            row = rows[0]
            software = conn.execute(text(
                "SELECT * FROM system_software WHERE system_software_id = :s"),
                {"s": row["system_software_id"]}).mappings().first()
            metrics = conn.execute(text(
                "SELECT m.*, u.peak_tflops, u.tflops_utilization_pct FROM run_hardware_metrics m "
                "JOIN run_tflops_utilization u USING (provider_id, run_id) "
                "WHERE m.provider_id = :p AND m.run_id = :r"),
                {"p": row["provider_id"], "r": run_id}).mappings().first()
            hardware = _hardware(conn, str(row["system_hardware_id"]))
        return {
            "runId": row["run_id"], "owner": row["provider_id"], "node": row["node_id"],
            "status": row["status"], "startedAt": iso(row["started_at"]),
            "finishedAt": iso(row["finished_at"]), "taskRef": row["task_ref"],
            "modelRef": row["model_ref"], "snapshotEventId": str(row["snapshot_event_id"]),
            "resources": {"cpuMillicores": row["cpu_millicores"],
                          "memoryBytes": row["memory_bytes"],
                          "ephemeralStorageBytes": row["ephemeral_storage_bytes"],
                          "gpuSlots": list(row["gpu_slots"])},
            "hardware": hardware,
            "software": _plain(software, drop=("system_software_id",)),
            "metrics": _plain(metrics, drop=("provider_id", "run_id", "system_hardware_id",
                                             "system_software_id")),
        }

    def ready(self) -> dict[str, Any]:
        with self.service.repeatable_read_on_search_path() as conn:
            as_of = read_as_of(conn)
            conn.execute(text("SELECT 1 FROM provider_inventory LIMIT 1")).all()
        return {"status": "ready", "schema": self.service.active_schema(),
                "position": as_of.position}


def storable(key: str) -> bool:
    """Could Postgres text hold this key? (No NUL, valid UTF-8.) Others cannot be found."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in key


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _plain(row: Mapping[Any, Any] | None, drop: Sequence[str] = ()) -> dict[str, Any] | None:
    """A row as JSON: camelCase keys (its column names), UUIDs as text, times as `iso`."""
    if row is None:
        return None
    return {to_camel(str(k)): (str(v) if isinstance(v, uuid.UUID)
                               else iso(v) if isinstance(v, datetime) else v)
            for k, v in row.items() if k not in drop}


def _node_json(row: Mapping[Any, Any], free: NodeInventory | None) -> dict[str, Any]:
    return {
        "node": row["node_id"], "snapshotEventId": str(row["current_snapshot_event_id"]),
        "systemHardwareId": str(row["system_hardware_id"]),
        "systemSoftwareId": str(row["system_software_id"]),
        "firstSeenAt": iso(row["first_seen_at"]), "lastSeenAt": iso(row["last_seen_at"]),
        "free": None if free is None else {
            "cpuMillicores": free.cpu_millicores, "memoryBytes": free.memory_bytes,
            "ephemeralStorageBytes": free.ephemeral_bytes,
            "gpuSlots": sorted(slot for g in free.gpus for slot in g.slots)},
    }


def _hardware(conn: Connection, system_hardware_id: str) -> dict[str, Any] | None:
    row = conn.execute(text("SELECT * FROM system_hardware WHERE system_hardware_id = :h"),
                       {"h": system_hardware_id}).mappings().first()
    if row is None:
        return None
    gpus = conn.execute(text(
        "SELECT l.slot_index, g.*, n.name AS slot_native_interface, "
        "a.name AS actual_interface FROM system_gpu_link l "
        "JOIN gpu_hardware g USING (gpu_hardware_id) "
        "LEFT JOIN interface_type n ON n.interface_type_id = l.slot_native_interface_type_id "
        "LEFT JOIN interface_type a ON a.interface_type_id = l.actual_interface_type_id "
        "WHERE l.system_hardware_id = :h ORDER BY l.slot_index"),
        {"h": system_hardware_id}).mappings().all()
    models = sorted({(g["pci_vendor_id"], g["pci_device_id"]) for g in gpus})
    specs = gpu_specs.spec_documents(
        conn.execute(gpu_specs.specs_statement(models)).mappings().all(),
        conn.execute(gpu_specs.tflops_statement(models)).mappings().all(),
        conn.execute(gpu_specs.formats_statement()).scalars().all())
    found = _plain(row) or {}
    found["gpus"] = [{**(_plain(g) or {}),
                      "spec": _plain(specs.get((g["pci_vendor_id"], g["pci_device_id"])))}
                     for g in gpus]
    return json.loads(json.dumps(found, default=str))  # type: ignore[no-any-return]
