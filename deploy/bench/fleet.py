"""The synthetic fleet every benchmark and test draws from: event histories and read-model rows.

`history` produces a plausible fleet log: providers register (and get audited), nodes publish
snapshots of 1-8 catalog GPUs (sometimes a card swap), runs start on free GPU slots of the
snapshot in effect and finish later. Per provider the events are in event-time order, as a
runner would publish them. Deterministic for a given seed. With `conflicting`, producers
disagree about the same hardware the way real agents do (a GPU's name and interface, the
spelling of a CPU model, its vendor string and core count) without changing its identity.

`synthetic_provider` is the same fleet one step further, for benchmarks that need 100,000
providers in seconds: a `provider_inventory` row as the projector would write it and the nodes
it sums, COPYed straight into the read model instead of projected. `demo_snapshots` are the
demo fleet's node snapshots, the templates the soak and the heartbeat day publish.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hwledger.query.inventory import GpuGroup, NodeInventory, ProviderNodes, provider_totals
from hwledger.schemas.events import EventData
from hwledger.schemas.tokens import gpu_tokens
from hwledger.schemas.units import GiB
from hwledger.seeds import GpuModel, load_gpu_models
from hwledger.seeds.demo import demo_fleet_events

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCER = {"name": "hwledger-synthetic", "version": "1"}


@dataclass
class _Node:
    provider_id: str
    node_id: str
    kind: GpuModel
    gpu_count: int
    snapshot_id: str = ""
    busy: set[int] = field(default_factory=set)


@dataclass
class _Provider:
    provider_id: str
    clock: datetime
    nodes: list[_Node]
    open_runs: dict[str, tuple[_Node, list[int]]] = field(default_factory=dict)


CPU_MODEL = "AMD EPYC 9654 96-Core Processor"
CPU_SPELLINGS = (CPU_MODEL, CPU_MODEL.upper(), f" {CPU_MODEL.lower()} ")
"""Spellings of one CPU model that its system identity (stripped, lowercased) treats as one."""


class _Generator:
    def __init__(self, seed: int, conflicting: bool = False) -> None:
        self.rng = random.Random(seed)
        self.catalog = load_gpu_models()
        self.counter = 0
        self.conflicting = conflicting

    def spelling(self, usual: Any, *others: Any) -> Any:
        """`usual`, or with `conflicting` any of the spellings."""
        return self.rng.choice((usual, *others)) if self.conflicting else usual

    def event_id(self) -> str:
        self.counter += 1
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def tick(self, provider: _Provider) -> datetime:
        provider.clock += timedelta(seconds=self.rng.randint(1, 120))
        return provider.clock

    def base(self, provider: _Provider) -> dict[str, Any]:
        return {"event_id": self.event_id(), "occurred_at": self.tick(provider),
                "producer": PRODUCER, "provider_id": provider.provider_id}

    def gpu(self, kind: GpuModel, slot: int) -> dict[str, Any]:
        link = "SXM5" if kind.interface == "sxm" else "PCIe 4.0 x16"
        other_interface = "pcie" if kind.interface == "sxm" else "sxm"
        return {"slot_index": slot, "vendor": kind.vendor, "model": kind.model,
                "name": self.spelling(kind.name, kind.name.upper(), f"{kind.name} (rev a1)"),
                "pci_vendor_id": kind.pci_vendor_id,
                "pci_device_id": kind.pci_device_id, "pci_subsystem_id": None,
                "vram_bytes": kind.vram_bytes,
                "interface": self.spelling(kind.interface, other_interface),
                "slot_native_interface": link, "actual_interface": link,
                "power_limit_w": 300 + 50 * (slot % 4)}

    def snapshot(self, provider: _Provider, node: _Node) -> EventData:
        data = self.base(provider) | {
            "node_id": node.node_id,
            "system": {"cpu_model": self.spelling(*CPU_SPELLINGS),
                       "cpu_vendor": self.spelling("amd", "AuthenticAMD"),
                       "cpu_cores": self.spelling(96, 192), "cpu_threads": 192,
                       "ram_bytes": 1024 * GiB, "architecture": self.spelling("amd64", "AMD64"),
                       "motherboard": None},
            "software": {"os": "Ubuntu 22.04.4 LTS", "kernel_version": "5.15.0-105-generic",
                         "python_version": "3.11.7", "gpu_driver_version": "550.54.15",
                         "cuda_version": "12.4", "rocm_version": None,
                         "runner_version": "0.1.0"},
            "gpus": [self.gpu(node.kind, i) for i in range(node.gpu_count)],
            "allocatable": {"cpu_millicores": 190_000, "memory_bytes": 900 * GiB,
                            "ephemeral_storage_bytes": 2000 * GiB},
            "storage": [{"class": "beta3", "bytes": 4000 * GiB}],
        }
        node.snapshot_id = data["event_id"]
        return "HardwareSnapshotted", data

    def register(self, provider: _Provider) -> EventData:
        region = self.rng.choice(["us-west", "us-east", "eu-central"])
        return "ProviderRegistered", self.base(provider) | {
            "host_uri": f"https://{provider.provider_id}.example.net:8443",
            "attributes": [{"key": "region", "value": region}, {"key": "host", "value": "akash"}]}

    def audit(self, provider: _Provider) -> EventData:
        tier = self.rng.choice([[], [{"key": "tier", "value": "community"}]])
        return "ProviderAudited", self.base(provider) | {
            "auditor": self.rng.choice(["akash1auditor", "akash1other"]), "attributes": tier}

    def start(self, provider: _Provider, node: _Node) -> EventData | None:
        free = [s for s in range(node.gpu_count) if s not in node.busy]
        if not free:
            return None
        slots = self.rng.sample(free, self.rng.randint(1, min(2, len(free))))
        run_id = f"run-{self.event_id()}"
        node.busy.update(slots)
        provider.open_runs[run_id] = (node, slots)
        return "RunStarted", self.base(provider) | {
            "run_id": run_id, "node_id": node.node_id, "snapshot_event_id": node.snapshot_id,
            "resources": {"cpu_millicores": 8000, "memory_bytes": 64 * GiB,
                          "ephemeral_storage_bytes": 100 * GiB, "gpu_slots": slots},
            "task_ref": None, "model_ref": None}

    def finish(self, provider: _Provider) -> EventData | None:
        if not provider.open_runs:
            return None
        run_id = self.rng.choice(sorted(provider.open_runs))
        node, slots = provider.open_runs.pop(run_id)
        node.busy.difference_update(slots)
        return "RunFinished", self.base(provider) | {
            "run_id": run_id, "status": self.rng.choice(["succeeded", "failed"]),
            "wall_clock_seconds": self.rng.uniform(10, 3600), "seconds_to_first_token": None,
            "tokens_per_second": self.rng.uniform(100, 3000), "peak_vram_bytes": GiB,
            "power_limit_w": 300, "measured_tflops": None, "gpu_sm_utilization_pct": 50.0,
            "energy_wh": 10.0, "error_message": None}

    def step(self, provider: _Provider, snapshot_weight: float) -> EventData | None:
        node = self.rng.choice(provider.nodes)
        roll = self.rng.random()
        if roll < snapshot_weight:
            if not node.busy and self.rng.random() < 0.05:
                node.kind = self.rng.choice(self.catalog)
            return self.snapshot(provider, node)
        if roll < snapshot_weight + (1 - snapshot_weight) / 2:
            return self.start(provider, node)
        if roll < 0.995:
            return self.finish(provider)
        return self.audit(provider)


def history(seed: int, providers: int, events: int, *, nodes_per_provider: int = 3,
            snapshot_weight: float = 0.3, conflicting: bool = False) -> Iterator[EventData]:
    """About `events` events for `providers` providers, in per-provider event-time order."""
    gen = _Generator(seed, conflicting)
    fleet = []
    for p in range(providers):
        provider = _Provider(f"provider-{p:04d}", T0, [])
        provider.nodes = [
            _Node(provider.provider_id, f"node-{n}", gen.rng.choice(gen.catalog),
                  gen.rng.randint(1, 8)) for n in range(nodes_per_provider)]
        fleet.append(provider)
    emitted = 0
    for provider in fleet:
        if emitted >= events:
            return
        yield gen.register(provider)
        emitted += 1
        for node in provider.nodes:
            yield gen.snapshot(provider, node)
            emitted += 1
    while emitted < events:
        event = gen.step(gen.rng.choice(fleet), snapshot_weight)
        if event is not None:
            yield event
            emitted += 1


GPU_MIX = (  # (vendor, model, weight, GPUs per node choices)
    ("nvidia", "h100", 18, (8,)), ("nvidia", "a100", 16, (4, 8)), ("nvidia", "h200", 4, (8,)),
    ("nvidia", "l40s", 8, (2, 4, 8)), ("nvidia", "rtx4090", 14, (1, 2, 4, 8)),
    ("nvidia", "rtx3090", 8, (1, 2, 4)), ("nvidia", "a6000", 5, (2, 4)),
    ("nvidia", "t4", 7, (1, 2, 4)), ("nvidia", "a10", 4, (1, 4)),
    ("amd", "mi300x", 3, (8,)), ("amd", "mi250x", 2, (4, 8)), ("nvidia", "b200", 1, (8,)),
)
REGIONS = ("us-west", "us-east", "eu-central", "eu-west", "ap-south", "ap-northeast")
AUDITORS = ("akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63",
            "akash18qa2a2ltfyvkyj0ggj3hkvuj6twzyumuaru9s4")
CLASSES = ("beta1", "beta2", "beta3")


def synthetic_provider(rng: random.Random, index: int, now: datetime
                       ) -> tuple[dict[str, Any], ProviderNodes]:
    """One provider_inventory row as the projector would write it, and the nodes it sums:
    random per-node free capacity, summed by `provider_totals` (the rule the projector's row
    follows). Half the A100 nodes have 40 GB ones, and three in four of the 80 GB ones are
    PCIe: the prefilter's false positives for an `a100/ram/80Gi/interface/sxm` request (its
    node tokens see the ram, only the bin-packer the interface)."""
    installed: set[str] = set()
    nodes = []
    for node in range(rng.randint(1, 8)):
        node_cpu = rng.choice((16, 32, 64, 96, 128, 192)) * 1000
        node_memory = rng.choice((64, 128, 256, 512, 1024, 2048)) * GiB
        used = rng.random() * 0.8
        free: tuple[GpuGroup, ...] = ()
        if rng.random() < 0.7:
            vendor, model, _, counts = rng.choices(GPU_MIX, weights=[m[2] for m in GPU_MIX])[0]
            count = rng.choice(counts)
            free_count = count - rng.randint(0, count) if rng.random() < 0.4 else count
            installed.update(gpu_tokens(vendor, model))
            vram = rng.choice((40, 80)) * GiB if model == "a100" else 80 * GiB
            interface = "pcie" if model == "a100" and rng.random() < 0.75 else "sxm"
            free = (GpuGroup(vendor, model, vram, interface, tuple(range(free_count))),) \
                if free_count else ()
        nodes.append(NodeInventory(f"node-{node}", int(node_cpu * (1 - used)),
                                   int(node_memory * (1 - used)),
                                   rng.choice((500, 1000, 4000)) * GiB, free))
    classes = sorted(rng.sample(CLASSES, rng.randint(0, 2)))
    audited = sorted(a for a in AUDITORS if rng.random() < 0.5)
    provider_id = f"akash1provider{index:07d}"
    inventory = ProviderNodes(provider_id, tuple(nodes), dict.fromkeys(classes, 10_000 * GiB))
    totals = provider_totals(inventory)
    return {
        "provider_id": provider_id, "host_uri": f"https://{provider_id}.example.net:8443",
        "last_seen_at": now - timedelta(seconds=rng.randint(0, 600) if rng.random() < 0.95
                                        else rng.randint(3600, 86400)),
        **totals, "gpu_models": sorted(installed),
        "self_attributes": {"region": rng.choice(REGIONS), "host": "akash",
                            f"capabilities/gpu/vendor/{'nvidia' if installed else 'none'}":
                                "true",
                            "tier": rng.choice(("community", "datacenter"))},
        "signed_attributes": {a: {"tier": "verified"} for a in audited},
        "audited_by": audited, "reclamation_window": None,
        "created_at": now - timedelta(days=rng.randint(1, 400)), "location": None,
        "organization": None,
    }, inventory


def demo_snapshots() -> list[dict[str, Any]]:
    """Snapshot templates (the demo fleet's nodes) that the load cycles through."""
    return [d for t, d in demo_fleet_events(datetime.now(UTC)) if t == "HardwareSnapshotted"]
