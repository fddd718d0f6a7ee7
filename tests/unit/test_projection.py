"""The pure projection: event -> row changes, duplicates, parking, dead letters, event time."""

from __future__ import annotations

from typing import Any

from hwledger.projectors.batch import latest_event_times, references
from hwledger.projectors.offsets import fence_for
from hwledger.projectors.plan import Record, State, decode_all
from hwledger.projectors.projection import project
from hwledger.projectors.rows import GpuHardware, RunGpuUsage, SystemHardware, merge_key
from hwledger.projectors.service import backoff
from hwledger.projectors.snapshot_rows import gpu_row, snapshot_content, system_row
from hwledger.schemas.events import HardwareSnapshotted
from hwledger.schemas.identity import system_hardware_id
from hwledger.schemas.units import GiB
from tests import factories as f
from tests.projecting import TTL, batch, run


def test_snapshot_rows_are_content_addressed_and_tokenized() -> None:
    a = f.snapshot("p", "n1", gpus=[f.gpu(0, "h100-sxm"), f.gpu(1, "h100-sxm")])
    b = f.snapshot("p", "n2", gpus=[f.gpu(0, "h100-sxm"), f.gpu(1, "h100-sxm")], minutes=1)
    plan, _ = run(("HardwareSnapshotted", a), ("HardwareSnapshotted", b))
    assert len(plan.gpu_hardware) == 1
    assert len(plan.system_hardware) == 1 and len(plan.system_software) == 1
    assert len(plan.system_gpu_links) == 2 and len(plan.snapshots) == 2
    (gpu,) = plan.gpu_hardware.values()
    assert (gpu.vendor, gpu.model) == ("nvidia", "h100")
    assert set(plan.nodes) == {("p", "n1"), ("p", "n2")}


def test_card_swap_is_a_new_system_but_the_same_software() -> None:
    a = f.snapshot(gpus=[f.gpu(0, "mi300x")])
    b = f.snapshot(gpus=[f.gpu(0, "mi250x")], minutes=5)
    plan, _ = run(("HardwareSnapshotted", a), ("HardwareSnapshotted", b))
    assert len(plan.system_hardware) == 2 and len(plan.system_software) == 1
    assert plan.nodes[("provider-a", "node-1")].snapshot_event_id == b["event_id"]


def test_late_older_snapshot_does_not_become_current() -> None:
    new = f.snapshot(minutes=10)
    old = f.snapshot(minutes=1, gpus=[f.gpu(0, "rtx4090")])
    plan, _ = run(("HardwareSnapshotted", new), ("HardwareSnapshotted", old))
    node = plan.nodes[("provider-a", "node-1")]
    assert node.snapshot_event_id == new["event_id"]
    assert (node.first_seen_at, node.last_seen_at) == (f.at(1), f.at(10))


def test_duplicate_event_id_changes_nothing() -> None:
    s = f.snapshot()
    plan, state = run(("HardwareSnapshotted", s), ("HardwareSnapshotted", s))
    assert len(plan.snapshots) == 1 and plan.duplicates == 1
    again, _ = run(("HardwareSnapshotted", s), state=state)
    assert again.snapshots == [] and again.applied == [] and again.duplicates == 1


def test_run_before_its_snapshot_is_parked_then_applied_in_order() -> None:
    s = f.snapshot()
    started = f.run_started(s, gpu_slots=[0, 1])
    finished = f.run_finished(started)
    plan, state = run(("RunStarted", started), ("RunFinished", finished))
    assert plan.runs == [] and len(plan.newly_parked) == 2
    assert {p.waiting_for for p in plan.newly_parked} == {
        f"snapshot {s['event_id']}", "run run-1"}
    later, _ = run(("HardwareSnapshotted", s), state=State(parked=state.parked))
    assert [r.run_id for r in later.runs] == ["run-1"]
    assert later.run_gpu_usage == [
        RunGpuUsage(run_id="run-1", slot_index=s, provider_id="provider-a") for s in (0, 1)]
    assert [r.status for r in later.run_finishes] == ["succeeded"]
    assert later.newly_parked == []


def test_a_run_id_is_scoped_to_its_provider() -> None:
    a, b = f.snapshot("provider-a"), f.snapshot("provider-b")
    started_a, started_b = f.run_started(a, "run-1"), f.run_started(b, "run-1")
    plan, state = run(("HardwareSnapshotted", a), ("HardwareSnapshotted", b),
                      ("RunStarted", started_a), ("RunStarted", started_b),
                      ("RunFinished", f.run_finished(started_b, "failed")))
    assert plan.dead_letters == []
    assert [(r.provider_id, r.run_id) for r in plan.runs] == [("provider-a", "run-1"),
                                                             ("provider-b", "run-1")]
    assert [(r.provider_id, r.run_id) for r in plan.run_finishes] == [("provider-b", "run-1")]
    assert state.runs[("provider-a", "run-1")].status is None
    again, _ = run(("RunStarted", f.run_started(a, "run-1")), state=state)
    assert "run run-1 of provider-a was already started" in again.dead_letters[0].reason


def test_parked_event_ages_into_a_dead_letter_by_event_time() -> None:
    s = f.snapshot()
    started = f.run_started(s, minutes=1)
    later = f.provider_registered(minutes=1 + 61)
    plan, _ = run(("RunStarted", started), ("ProviderRegistered", later))
    assert plan.newly_parked == []
    (dead,) = plan.dead_letters
    assert "parked for more than 3600s" in dead.reason and dead.event_type == "RunStarted"


def test_impossible_values_are_dead_letters_with_reasons() -> None:
    s = f.snapshot(gpus=[f.gpu(0), f.gpu(1)])
    bad_slot = f.run_started(s, "run-x", gpu_slots=[5])
    ok = f.run_started(s, "run-y", gpu_slots=[0])
    first = f.run_finished(ok, "succeeded")
    second = f.run_finished(ok, "failed", minutes=40)
    same = f.run_finished(ok, "succeeded", minutes=41)
    negative = f.snapshot(node_id="n2", allocatable={
        "cpu_millicores": -2, "memory_bytes": 1, "ephemeral_storage_bytes": 1})  # -1: unlimited
    plan, _ = run(("HardwareSnapshotted", s), ("RunStarted", bad_slot), ("RunStarted", ok),
                  ("RunFinished", first), ("RunFinished", second), ("RunFinished", same),
                  ("HardwareSnapshotted", negative))
    reasons = [d.reason for d in plan.dead_letters]
    assert len(reasons) == 3
    assert "GPU slot(s) [5]" in reasons[0]
    assert "finished twice with different outcomes" in reasons[1]
    assert "allocatable.cpu_millicores must not be negative" in reasons[2]
    assert len(plan.run_finishes) == 1


def test_undecodable_bytes_are_dead_letters() -> None:
    items = decode_all([Record("t", 1, 7, b"\xc3\x01" + b"\x00" * 8 + b"x"),
                        Record("t", 1, 8, b"{json}")])
    plan = project(items, State(), TTL)
    assert [d.record.offset for d in plan.dead_letters] == [7, 8]
    assert "unknown schema fingerprint" in plan.dead_letters[0].reason


def test_providers_and_audits_are_last_writer_wins_by_event_time() -> None:
    new = f.provider_registered(minutes=5, attributes={"region": "eu"})
    old = f.provider_registered(minutes=1, attributes={"region": "us"})
    revoke = f.provider_audited(minutes=3, attributes={})
    grant = f.provider_audited(minutes=2)
    plan, _ = run(("ProviderRegistered", new), ("ProviderRegistered", old),
                  ("ProviderAudited", revoke), ("ProviderAudited", grant))
    assert plan.providers["provider-a"].attributes == '{"region": "eu"}'
    assert plan.audits[("provider-a", "akash1auditor")].attributes == "{}"
    assert plan.last_seen == {"provider-a": f.at(5)}


def test_an_audit_touches_the_inventory_but_is_no_sign_of_life() -> None:
    s = f.snapshot(minutes=1)
    plan, _ = run(("HardwareSnapshotted", s), ("ProviderAudited", f.provider_audited(minutes=9)),
                  ("ProviderAudited", f.provider_audited("provider-b", minutes=9)))
    assert plan.touched == {"provider-a", "provider-b"}
    assert plan.last_seen == {"provider-a": f.at(1)}


def _conflicting_snapshots() -> list[tuple[str, dict[str, Any]]]:
    """Three nodes reporting one GPU model and one host spec, spelled differently."""
    spellings = [("NVIDIA H100 80GB HBM3", "sxm", "AMD EPYC 9654 96-Core Processor", "amd", 96),
                 ("nvidia h100", "pcie", "amd epyc 9654 96-core processor", "AuthenticAMD", 192),
                 ("H100 SXM5", "sxm", "AMD EPYC 9654 96-CORE PROCESSOR", "amd", 96)]
    events = []
    for i, (name, interface, cpu, vendor, cores) in enumerate(spellings):
        s = f.snapshot(f"p{i}", gpus=[f.gpu(0, "h100-sxm", name=name, interface=interface)],
                       minutes=i)
        s["system"] |= {"cpu_model": cpu, "cpu_vendor": vendor, "cpu_cores": cores}
        events.append(("HardwareSnapshotted", s))
    return events


def test_conflicting_reports_of_one_hardware_keep_the_least_whatever_the_order() -> None:
    events = _conflicting_snapshots()
    rows: set[tuple[GpuHardware, SystemHardware]] = set()
    for order in (events, events[::-1], events[1:] + events[:1]):
        plan, _ = run(*order)
        ((gpu_kind,), (system_kind,)) = plan.gpu_hardware.values(), plan.system_hardware.values()
        rows.add((gpu_kind, system_kind))
    ((gpu, system),) = rows
    assert (gpu.name, gpu.interface) == ("H100 SXM5", "sxm")
    assert (system.cpu_model, system.cpu_vendor, system.cpu_cores) == (
        "AMD EPYC 9654 96-CORE PROCESSOR", "amd", 96)


def test_merge_key_orders_by_code_point_with_a_null_motherboard_as_empty() -> None:
    system = system_row({"cpu_model": "x", "cpu_vendor": "v", "cpu_cores": 1, "cpu_threads": 1,
                         "ram_bytes": 1, "architecture": "a", "motherboard": None}, [])
    assert merge_key("system_hardware", system) == ("x", "v", 1, "a", "")
    assert merge_key("gpu_hardware", gpu_row(f.gpu(0, name="Z"))) < \
        merge_key("gpu_hardware", gpu_row(f.gpu(0, name="a")))


def test_host_identity_inputs_are_stored_and_part_of_the_system_id() -> None:
    plain, rich = f.snapshot(), f.host_identity_snapshot()
    base, stored = system_row(plain["system"], plain["gpus"]), system_row(rich["system"],
                                                                           rich["gpus"])
    identity = ("cpu_base_clock_mhz", "cpu_peak_clock_mhz", "memory_speed_mhz",
                "memory_channels", "memory_interleave_profile", "bar_size_mb")
    assert [getattr(base, name) for name in identity] == [None] * 6
    assert [getattr(stored, name) for name in identity] == [2400, 3700, 4800, 12, "NPS1", 131072]
    assert stored.system_hardware_id == system_hardware_id(
        rich["system"], rich["gpus"]) != base.system_hardware_id
    assert base.system_hardware_id == system_hardware_id(plain["system"], plain["gpus"])
    rest = [n for n in SystemHardware._fields if n not in identity and n != "system_hardware_id"]
    assert [getattr(stored, n) for n in rest] == [getattr(base, n) for n in rest]


def test_references_name_what_the_batch_needs() -> None:
    s = f.snapshot()
    started = f.run_started(s)
    refs = references(batch(("RunStarted", started), ("RunFinished", f.run_finished(started))))
    assert refs.snapshot_ids == {s["event_id"]} and refs.runs == {("provider-a", "run-1")}
    assert refs.providers == {"provider-a"} and len(refs.event_ids) == 2


def test_gpu_identity_ignores_slot_and_name_case() -> None:
    assert gpu_row(f.gpu(0)).gpu_hardware_id == gpu_row(
        f.gpu(3, name="nvidia h100 80gb hbm3")).gpu_hardware_id


def test_fence_covers_each_partition_from_its_stored_offset() -> None:
    records = [Record("t", 0, 5, b""), Record("t", 2, 9, b""), Record("t", 0, 6, b"")]
    assert fence_for(records, {0: 5, 2: None}, "t") == {("t", 0): (5, 7), ("t", 2): (None, 10)}


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n, 0.5, 3) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_latest_event_time_per_partition_ignores_undecodable_records() -> None:
    items = batch(("HardwareSnapshotted", f.snapshot(minutes=9)),
                  ("HardwareSnapshotted", f.snapshot(node_id="n2", minutes=3)))
    items.append(decode_all([Record("t", 1, 0, b"junk")])[0])
    assert latest_event_times(items) == {("t", 0): f.at(9)}


def test_snapshots_with_the_same_content_share_their_projected_rows() -> None:
    gpus = [f.gpu(0, "a100-sxm"), f.gpu(1, "a100-sxm", power_limit_w=None)]
    a = f.snapshot("p", "n1", gpus=gpus)
    b = f.snapshot("p", "n2", gpus=gpus, minutes=1)
    items = batch(("HardwareSnapshotted", a), ("HardwareSnapshotted", b))
    plan = project(items, State(), TTL)
    first, second = (item.event for item in items)
    assert isinstance(first, HardwareSnapshotted) and isinstance(second, HardwareSnapshotted)
    assert snapshot_content(first) is snapshot_content(second)  # computed once
    assert [(r.event_id, r.provider_id, r.node_id) for r in plan.snapshots] == [
        (a["event_id"], "p", "n1"), (b["event_id"], "p", "n2")]
    assert (plan.snapshots[0].storage, plan.snapshots[0].gpu_power_limits_w) == (
        '[{"bytes": 7516192768000, "class": "beta3"}]', '{"0": 700}')
    assert len(plan.system_gpu_links) == 2 and len(plan.gpu_hardware) == 1


def test_a_snapshot_with_cached_content_still_has_its_envelope_checked() -> None:
    good = f.snapshot("p", "n1")
    nameless = f.snapshot("  ", "n1", minutes=1)
    plan, _ = run(("HardwareSnapshotted", good), ("HardwareSnapshotted", nameless))
    assert len(plan.snapshots) == 1
    assert [d.reason for d in plan.dead_letters] == ["provider_id must not be empty"]


def test_every_snapshot_with_an_impossible_content_is_dead_lettered() -> None:
    gpus = [f.gpu(0, "t4", vram_bytes=0)]
    plan, _ = run(("HardwareSnapshotted", f.snapshot(gpus=gpus)),
                  ("HardwareSnapshotted", f.snapshot(gpus=gpus, minutes=1)))
    assert not plan.snapshots
    assert [d.reason for d in plan.dead_letters] == [
        "gpus[slot 0].vram_bytes must be positive (got 0)"] * 2


def test_an_unlimited_allocatable_is_stored_as_the_largest_bigint() -> None:
    unlimited = f.snapshot(allocatable={"cpu_millicores": -1, "memory_bytes": 4 * GiB,
                                        "ephemeral_storage_bytes": -1})
    plan, _ = run(("HardwareSnapshotted", unlimited))
    assert not plan.dead_letters
    snapshot = plan.snapshots[0]
    assert (snapshot.allocatable_cpu_millicores, snapshot.allocatable_memory_bytes,
            snapshot.allocatable_ephemeral_storage_bytes) == (2**63 - 1, 4 * GiB, 2**63 - 1)


def test_registrations_and_runs_carry_leased_ips_and_the_reclamation_window() -> None:
    s = f.snapshot(minutes=2)
    plan, _ = run(("ProviderRegistered", f.provider_registered(
                      minutes=3, leased_ip_capacity=8, reclamation_window=3600)),
                  ("HardwareSnapshotted", s),
                  ("RunStarted", f.run_started(s, minutes=4, leased_ips=2)))
    provider = plan.providers["provider-a"]
    assert (provider.leased_ip_capacity, provider.reclamation_window) == (8, 3600)
    assert plan.runs[0].leased_ips == 2
    assert (plan.first_seen, plan.last_seen) == ({"provider-a": f.at(2)},
                                                 {"provider-a": f.at(4)})
