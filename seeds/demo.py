"""The demo fleet: `demo_fleet.json` turned into a plausible event history ending at `now`.

The file describes providers, their nodes (GPUs by PCI id from the catalog), audits and runs;
events are generated at demo time so the providers are online. Ids are derived from the
provider, the fact and `now`, so one demo run is idempotent and a later run is a new history.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hwledger.schemas.events import EventData
from hwledger.schemas.units import GiB
from hwledger.seeds import SeedError, gpu_catalog, read_seed_document

PRODUCER = {"name": "hwledger-demo", "version": "1"}
DEMO_NS = uuid.UUID("6f2d3c1e-3b0a-5f1e-9a59-0c6b5f2e7aff")



def _gpu(slot: int, pci: str) -> dict[str, Any]:
    vendor_id, device_id = pci.split(":")
    entry = gpu_catalog().get((vendor_id, device_id))
    if entry is None:
        raise SeedError(f"seeds/demo_fleet.json: GPU {pci} is not in seeds/gpu_models.json")
    link = "SXM5" if entry.interface == "sxm" else "PCIe 4.0 x16"
    return {"slot_index": slot, "vendor": entry.vendor, "model": entry.model, "name": entry.name,
            "pci_vendor_id": vendor_id, "pci_device_id": device_id, "pci_subsystem_id": None,
            "vram_bytes": entry.vram_bytes, "interface": entry.interface,
            "slot_native_interface": link, "actual_interface": link, "power_limit_w": None}


class _History:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.events: list[EventData] = []

    def add(self, event_type: str, key: str, minutes_ago: float, **data: Any) -> dict[str, Any]:
        event_id = str(uuid.uuid5(DEMO_NS, f"{key}@{self.now.isoformat()}"))
        payload = {"event_id": event_id,
                   "occurred_at": self.now - timedelta(minutes=minutes_ago),
                   "producer": PRODUCER, **data}
        self.events.append((event_type, payload))
        return payload


def _provider(history: _History, p: dict[str, Any]) -> None:
    pid = p["provider_id"]
    history.add("ProviderRegistered", f"{pid}/registered", 30, provider_id=pid,
                host_uri=p["host_uri"],
                attributes=[{"key": k, "value": v} for k, v in p["attributes"].items()])
    for auditor, attrs in p["audits"].items():
        history.add("ProviderAudited", f"{pid}/audit/{auditor}", 29, provider_id=pid,
                    auditor=auditor,
                    attributes=[{"key": k, "value": v} for k, v in attrs.items()])
    snapshots = {}
    for node in p["nodes"]:
        threads = node["cpu_threads"]
        snapshots[node["node_id"]] = history.add(
            "HardwareSnapshotted", f"{pid}/{node['node_id']}/snapshot", 5, provider_id=pid,
            node_id=node["node_id"],
            system={"cpu_model": "AMD EPYC 9654 96-Core Processor", "cpu_vendor": "amd",
                    "cpu_cores": threads // 2, "cpu_threads": threads,
                    "ram_bytes": node["ram_gib"] * GiB, "architecture": "amd64",
                    "motherboard": None},
            software={"os": "Ubuntu 22.04.4 LTS", "kernel_version": "5.15.0-105-generic",
                      "python_version": "3.11.7", "gpu_driver_version": "550.54.15",
                      "cuda_version": "12.4", "rocm_version": None, "runner_version": "0.1.0"},
            gpus=[_gpu(slot, pci) for slot, pci in enumerate(node["gpus"])],
            allocatable={"cpu_millicores": threads * 1000 - 2000,
                         "memory_bytes": (node["ram_gib"] - 16) * GiB,
                         "ephemeral_storage_bytes": node["ephemeral_gib"] * GiB},
            storage=[{"class": c, "bytes": 2000 * GiB} for c in p["storage_classes"]],
        )
    for index, run in enumerate(p["runs"]):
        snapshot = snapshots[run["node_id"]]
        run_id = f"{pid}-run-{index}"
        history.add("RunStarted", f"{run_id}/started", 4, run_id=run_id, provider_id=pid,
                    node_id=run["node_id"], snapshot_event_id=snapshot["event_id"],
                    resources={"cpu_millicores": 8000, "memory_bytes": 64 * GiB,
                               "ephemeral_storage_bytes": 100 * GiB,
                               "gpu_slots": run["gpu_slots"]},
                    task_ref="demo/llm-serving", model_ref=None)
        if run["finished"]:
            history.add("RunFinished", f"{run_id}/finished", 1, run_id=run_id, provider_id=pid,
                        status="succeeded", wall_clock_seconds=180.0, tokens_per_second=1850.0)


def demo_fleet_events(now: datetime, path: Path | None = None) -> list[EventData]:
    """The demo history as (event type, Avro payload) pairs, oldest facts first per provider."""
    label, doc = read_seed_document(path, "demo_fleet.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("providers"), list):
        raise SeedError(f"{label}: missing list 'providers'")
    history = _History(now)
    for provider in doc["providers"]:
        try:
            _provider(history, provider)
        except (KeyError, TypeError, ValueError) as exc:
            raise SeedError(f"{label}: provider {provider.get('provider_id')!r}: bad entry "
                            f"({type(exc).__name__}: {exc})") from exc
    return history.events
