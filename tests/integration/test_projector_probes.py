"""The projector's probes on its metrics port: /readyz once the group assigned it partitions,
/healthz failing while the main loop is wedged although the HTTP thread (and /metrics) lives."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

import pytest

from hwledger.deploy.local_processes import free_port
from hwledger.projectors.metrics import Metrics
from hwledger.projectors.service import Projector
from tests.integration.projector_support import fresh_schema, projector_config
from tests.waiting import wait_until


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
def test_probes_follow_assignment_and_a_wedged_loop(
        database_url: str, kafka_config: dict[str, Any], topic: str) -> None:
    with fresh_schema(database_url) as schema:
        config = replace(projector_config(database_url, schema, topic, kafka_config),
                         idle_exit_seconds=None, exit_when_caught_up=False, stall_seconds=1.0)
        metrics = Metrics()
        projector = Projector(config, metrics)
        port = free_port()
        metrics.serve(port, health=projector.health)
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/readyz") == 503  # not assigned yet
        wedge = threading.Event()
        poll = projector._poll_batch

        def wedged_poll() -> Any:
            while wedge.is_set():  # a consumer call that never returns
                time.sleep(0.05)
            return poll()

        projector._poll_batch = wedged_poll  # type: ignore[method-assign]
        runner = threading.Thread(target=projector.run, daemon=True)
        runner.start()
        try:
            wait_until(lambda: _get(base + "/readyz") == 200, 30, "ready")
            assert _get(base + "/healthz") == 200
            wedge.set()
            wait_until(lambda: _get(base + "/healthz") == 503, 10, "/healthz to fail")
            assert _get(base + "/metrics") == 200
            wedge.clear()
            wait_until(lambda: _get(base + "/healthz") == 200, 10, "/healthz to recover")
        finally:
            wedge.clear()
            projector.stop()
            runner.join(30)
