"""The runner library: one runner process's hardware snapshot and its runs.

`SnapshotTracker` publishes a HardwareSnapshotted at start and afterwards only when a re-probe
has a new fingerprint (a GPU swap, a driver upgrade), so runs always name the snapshot in
effect; between them, `publish_heartbeat` sends the small NodeHeartbeated naming it.
`Runner` adds runs: `with runner.run(...) as run:` publishes RunStarted (resources, GPU slots,
the snapshot in effect) and, when the block ends, RunFinished with the status (succeeded,
failed with the error, cancelled on Ctrl-C) and the metrics: the measured duration and, while
the block is open, a sampler thread's figures of the run's GPUs (NVML, amdgpu sysfs;
`producers.telemetry`), under the metrics set on `run`, which win.

    from hwledger.deploy.config import Settings
    from hwledger.producers.runner import Runner

    with Runner.from_settings(Settings.from_env()) as runner:
        with runner.run(gpu_slots=[0, 1], cpu_millicores=16_000, memory_bytes=64 * 2**30,
                        task_ref="bench/llama3-70b") as run:
            ...  # the work
            run.metrics.update(tokens_per_second=2310.0, peak_vram_bytes=71 * 2**30)
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from hwledger.producers.events import ProducerSettings, now
from hwledger.producers.probe import Prober, fingerprint, node_id
from hwledger.producers.probe_options import ProbeOptions
from hwledger.producers.publisher import Publisher
from hwledger.producers.telemetry import DEFAULT_SAMPLE_HZ, Sample, Sampler, summarize
from hwledger.schemas.errors import UserError

log = logging.getLogger(__name__)


def require_provider_id(settings: ProducerSettings) -> str:
    if not settings.provider_id:
        raise UserError("no provider id: set HWLEDGER_PROVIDER_ID to the provider this host "
                        "publishes under")
    return settings.provider_id


def heartbeat_of(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A NodeHeartbeated of the snapshot's node naming it (a fresh event id and time; no
    producer: the snapshot it names has one)."""
    return {"event_id": str(uuid.uuid4()), "occurred_at": now(),
            "provider_id": snapshot["provider_id"], "node_id": snapshot["node_id"],
            "snapshot_event_id": str(snapshot["event_id"])}


class SnapshotTracker:
    """Publishes this node's snapshot when it changed; remembers the one in effect."""

    def __init__(self, prober: Prober, publisher: Publisher) -> None:
        self.prober = prober
        self.publisher = publisher
        self.snapshot: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._warned: set[str] = set()

    def _require_snapshot(self) -> dict[str, Any]:
        if self.snapshot is None:
            raise UserError("no snapshot published yet: call start() first")
        return self.snapshot

    @property
    def snapshot_event_id(self) -> str:
        return str(self._require_snapshot()["event_id"])

    def _probe(self) -> dict[str, Any]:
        result = self.prober.probe()
        for warning in result.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning("%s", warning)
        return result.snapshot

    def _publish(self, snapshot: dict[str, Any]) -> None:
        self.publisher.publish("HardwareSnapshotted", snapshot)
        self.snapshot = snapshot
        self._fingerprint = fingerprint(snapshot)

    def publish_current(self) -> dict[str, Any]:
        """Probe and publish unconditionally (process start, heartbeat)."""
        snapshot = self._probe()
        self._publish(snapshot)
        return snapshot

    def publish_heartbeat(self) -> str:
        """Publish a NodeHeartbeated naming the snapshot in effect; returns its event id."""
        heartbeat = heartbeat_of(self._require_snapshot())
        self.publisher.publish("NodeHeartbeated", heartbeat)
        return str(heartbeat["event_id"])

    def refresh(self) -> bool:
        """Re-probe; publish a new snapshot only when the fingerprint changed."""
        snapshot = self._probe()
        if fingerprint(snapshot) == self._fingerprint:
            return False
        self._publish(snapshot)
        return True


@dataclass
class Run:
    """A run in progress: set `metrics` (RunFinished field names: `measured_tflops` with its
    `compute_format`, ...) and optionally `status`."""

    run_id: str
    gpu_slots: list[int]
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str | None = None


def finished_metrics(duration_s: float, samples: Sequence[Sample],
                     stated: dict[str, Any]) -> dict[str, Any]:
    """RunFinished's metrics: the measured duration and the samples' figures, under the
    metrics the caller stated (a stated key wins, even a stated None)."""
    return {"wall_clock_seconds": duration_s, **summarize(samples), **stated}


class Runner:
    """One runner process: snapshot at start, re-probe before each run, RunStarted/Finished.

    `sample_hz` is the rate the run's GPUs are sampled at while a run is open (0: not at all).
    Closing the runner closes the publisher and prober it was given.
    """

    def __init__(self, prober: Prober, publisher: Publisher, *,
                 sample_hz: float = DEFAULT_SAMPLE_HZ) -> None:
        if sample_hz < 0:
            raise UserError(f"the GPU sample rate must be 0 (off) or positive, not {sample_hz}")
        self.tracker = SnapshotTracker(prober, publisher)
        self.publisher = publisher
        self.sample_hz = sample_hz

    @classmethod
    def from_settings(cls, settings: ProducerSettings,
                      options: ProbeOptions | None = None) -> Runner:
        prober = Prober(require_provider_id(settings), node_id(settings.node_id, settings.home),
                        options or ProbeOptions.from_env())
        return cls(prober, Publisher.from_settings(settings), sample_hz=settings.gpu_sample_hz)

    def start(self) -> None:
        self.tracker.publish_current()

    @contextlib.contextmanager
    def run(self, *, gpu_slots: Sequence[int] = (), cpu_millicores: int = 0,
            memory_bytes: int = 0, ephemeral_storage_bytes: int = 0,
            leased_ips: int = 0, task_ref: str | None = None, model_ref: str | None = None,
            run_id: str | None = None) -> Iterator[Run]:
        """Publish RunStarted now and RunFinished when the block ends; `leased_ips` are the
        provider's leased IPs the run holds until then."""
        if self.tracker.snapshot is None:
            self.start()
        else:
            self.tracker.refresh()
        snapshot = self.tracker.snapshot
        assert snapshot is not None
        installed = {g["slot_index"] for g in snapshot["gpus"]}
        missing = sorted(set(gpu_slots) - installed)
        if missing:
            raise UserError(f"GPU slots {missing} are not installed on this node "
                            f"(installed: {sorted(installed)})")
        run = Run(run_id or str(uuid.uuid4()), list(gpu_slots))
        ids = {"provider_id": snapshot["provider_id"], "run_id": run.run_id}
        self.publisher.publish("RunStarted", {
            **ids, "node_id": snapshot["node_id"],
            "snapshot_event_id": self.tracker.snapshot_event_id,
            "resources": {"cpu_millicores": cpu_millicores, "memory_bytes": memory_bytes,
                          "ephemeral_storage_bytes": ephemeral_storage_bytes,
                          "gpu_slots": run.gpu_slots},
            "task_ref": task_ref, "model_ref": model_ref, "leased_ips": leased_ips,
        })
        source = (self.tracker.prober.telemetry_source(run.gpu_slots)
                  if self.sample_hz > 0 else None)
        sampler = None if source is None else Sampler(source, self.sample_hz).start()
        started = time.monotonic()
        error: str | None = None
        status = "succeeded"
        try:
            yield run
        except KeyboardInterrupt:
            status = "cancelled"
            raise
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            samples = [] if sampler is None else sampler.stop()
            metrics = finished_metrics(time.monotonic() - started, samples, run.metrics)
            self.publisher.publish("RunFinished", {
                **ids, **metrics, "status": run.status or status, "error_message": error})

    def close(self) -> None:
        self.publisher.close()
        self.tracker.prober.close()

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
