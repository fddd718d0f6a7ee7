"""Prometheus metrics of the projector: events by type, dead letters, parked, lag, batches.

Each `Metrics` owns its registry (with the standard process, platform and GC collectors of
`standard_registry`), so tests and benchmarks can build several side by side; `serve` exposes
one on an HTTP port (0 = off), with the projector's /healthz and /readyz.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from hwledger.projectors.health import Health, liveness, readiness
from hwledger.projectors.plan import Plan
from hwledger.schemas.errors import UserError
from hwledger.schemas.prometheus import standard_registry


class Metrics:
    def __init__(self) -> None:
        self.registry = standard_registry()
        r = self.registry
        self.events = Counter("hwledger_projector_events_total",
                              "events projected, by event type", ["type"], registry=r)
        self.duplicates = Counter("hwledger_projector_duplicates_total",
                                  "events skipped as already applied", registry=r)
        self.dead_letters = Counter("hwledger_projector_dead_letters_total",
                                    "messages sent to dead_letters", registry=r)
        self.parked = Counter("hwledger_projector_parked_total",
                              "events parked waiting for a reference", registry=r)
        self.lag = Gauge("hwledger_projector_lag_messages",
                         "high watermark minus the stored next offset", ["partition"],
                         registry=r)
        self.batch_size = Histogram("hwledger_projector_batch_messages", "messages per batch",
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
                                    registry=r)
        self.batch_seconds = Histogram("hwledger_projector_batch_seconds",
                                       "seconds to project and commit one batch", registry=r)
        self.retries = Counter("hwledger_projector_retries_total",
                               "transient database errors retried", registry=r)
        self.log_lost = Gauge("hwledger_projector_log_lost",
                              "1 while a partition is stopped because its log no longer holds "
                              "the stored offset (lost or truncated)", ["partition"], registry=r)
        self.fenced = Counter("hwledger_projector_fenced_total",
                              "batches dropped because the partition moved on elsewhere",
                              registry=r)

    def observe_batch(self, plan: Plan, messages: int, seconds: float) -> None:
        for event_type, count in plan.projected.items():
            self.events.labels(event_type).inc(count)
        self.duplicates.inc(plan.duplicates)
        self.dead_letters.inc(len(plan.dead_letters))
        self.parked.inc(len(plan.newly_parked))
        self.batch_size.observe(messages)
        self.batch_seconds.observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1", health: Health | None = None) -> None:
        """Expose /metrics, and with `health` the probes /healthz and /readyz (JSON `status`,
        `reason`; 503 when failing), on `host`:`port` (0 = off; loopback unless configured, like
        the query service); a busy port is a one-line UserError."""
        if not port:
            return
        try:
            server = ThreadingHTTPServer((host, port), _handler(self.registry, health))
        except OSError as exc:
            raise UserError(f"cannot serve metrics on port {port} (HWLEDGER_METRICS_PORT): "
                            f"{exc.strerror}") from exc
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def _handler(registry: CollectorRegistry, health: Health | None
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/readyz") and health is not None:
                ok, reason = (liveness(health, time.monotonic()) if path == "/healthz"
                              else readiness(health))
                body = json.dumps({"status": "ok" if ok else "failing", "reason": reason})
                self._send(200 if ok else 503, "application/json", body.encode())
            else:
                body = json.dumps({"error": "not_found", "message": f"no route {path}"})
                self._send(404, "application/json", body.encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds are not worth a log line."""

    return Handler
