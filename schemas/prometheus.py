"""Prometheus plumbing shared by the projector and the query service: registries with the
standard process, platform and GC collectors, and the multiprocess mode of `serve --workers`.

With one process, a service's registry holds its own metrics and the standard collectors
(`process_cpu_seconds_total`, `process_resident_memory_bytes`, `python_info`, `python_gc_*`).
With `serve --workers N`, `multiprocess_directory` gives each start its own
PROMETHEUS_MULTIPROC_DIR, where every worker's prometheus_client keeps its values in files;
a scrape of any worker (`scrape_registry`) merges all of them, so one scrape counts every
worker's requests, and reports each live worker's process figures labelled by `pid`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LIVE_WORKER_FILES = "gauge_livesum_*.db"
"""The files of a `livesum` gauge, one per live worker (`mark_process_dead` removes them)."""


def standard_registry() -> CollectorRegistry:
    """A new registry holding the process, platform and GC collectors of this process."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def multiprocess_dir() -> str | None:
    """The multiprocess directory of this process, None when it runs alone."""
    return os.environ.get(MULTIPROC_ENV) or None


@contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the worker processes started inside the block
    (they inherit the environment), removed with its files afterwards. A directory left over
    from an earlier start would add that start's counts, so any preset value is replaced."""
    before = os.environ.get(MULTIPROC_ENV)
    path = Path(tempfile.mkdtemp(prefix="hwledger-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(path, ignore_errors=True)


def forget_worker(pid: int, path: str) -> None:
    """Drop the live gauges of worker `pid` from the multiprocess directory `path` (its
    counters and histograms stay: they are counts so far)."""
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def worker_exited() -> None:
    """Forget this worker in the multiprocess directory (a no-op alone)."""
    path = multiprocess_dir()
    if path is not None:
        forget_worker(os.getpid(), path)


def live_workers(path: str) -> list[int]:
    """The pids of the workers with live gauges in `path` that still run; a worker that died
    without `worker_exited` (killed, crashed) is marked dead here."""
    found = []
    for pid in sorted({int(f.stem.rsplit("_", 1)[1]) for f in Path(path).glob(LIVE_WORKER_FILES)}):
        if running(pid):
            found.append(pid)
        else:
            forget_worker(pid, path)
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a process of this user (a worker's pid taken by another user's process
    is a dead worker)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def process_figures(pid: int) -> Iterable[Metric]:
    """ProcessCollector's figures of process `pid` (none once it is gone)."""
    return ProcessCollector(pid=lambda: pid, registry=None).collect()


class WorkerProcesses(Collector):
    """The `process_*` figures of every live worker of a multiprocess directory, labelled by
    `pid` (ProcessCollector reads any pid's /proc entry)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for pid in live_workers(self.path):
            for family in process_figures(pid):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation,
                                                             family.type))
                into.samples.extend(s._replace(labels={**s.labels, "pid": str(pid)})
                                    for s in family.samples)
        return merged.values()


def scrape_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What /metrics exposes: `own` when the process runs alone; in multiprocess mode every
    worker's metrics merged, each live worker's process figures and the platform's."""
    path = multiprocess_dir()
    if path is None:
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    registry.register(WorkerProcesses(path))
    PlatformCollector(registry=registry)
    return registry
