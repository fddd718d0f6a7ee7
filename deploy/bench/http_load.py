"""The query benchmark's HTTP side: `hwledger serve` in its own process, a keep-alive load
client that costs far less CPU than the service it measures, and CPU accounting of both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psutil
import uvloop

from hwledger.schemas.errors import UserError


@contextmanager
def http_server(database_url: str, schema: str, port: int, workers: int
                ) -> Iterator[psutil.Process]:
    """`hwledger serve` in its own process on the bench schema."""
    env = {**os.environ, "HWLEDGER_QUERY_DATABASE_URL": database_url,
           "HWLEDGER_DATABASE_URL": database_url, "HWLEDGER_DB_SCHEMA": schema,
           "HWLEDGER_QUERY_ALLOW_WRITABLE_ROLE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hwledger.deploy.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning"], env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise UserError("the query service (`hwledger serve`) did not start")
            time.sleep(0.2)
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(10)


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a process and its children (the server's workers)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


async def _keep_alive_client(port: int, requests: Sequence[bytes], counter: Iterator[int],
                            latencies: list[float]) -> int:
    """One keep-alive connection sending requests until `counter` runs out; non-200 count.

    HTTP/1.1 over a plain stream (the service always answers with a Content-Length): the
    load generator should cost far less CPU than the service it measures, as wrk would.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    failures = 0
    try:
        for index in counter:
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = _CONTENT_LENGTH.search(head)
            if length is None:
                raise UserError("the query service answered without a Content-Length")
            await reader.readexactly(int(length[1]))
            latencies.append(time.perf_counter() - started)
            failures += head[9:12] != b"200"
    finally:
        writer.close()
    return failures


_CONTENT_LENGTH = re.compile(rb"(?im)^content-length: *(\d+)")


def postgres_cpu_seconds() -> float:
    """User + system CPU of this machine's Postgres processes (0 when the server runs
    elsewhere): the database's share of each HTTP request."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if "postgres" in (process.info["name"] or ""):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def time_http(port: int, bodies: Sequence[bytes], clients: int, total: int
              ) -> tuple[float, list[float], int]:
    """(requests/s, per-request seconds, non-200 count) of `total` screening requests over
    `clients` keep-alive connections."""
    requests = [b"POST /v1/bid-screening HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body) for body in bodies]
    latencies: list[float] = []
    counter = iter(range(total))

    async def run() -> int:
        return sum(await asyncio.gather(*(
            _keep_alive_client(port, requests, counter, latencies) for _ in range(clients))))

    started = time.perf_counter()
    failures = uvloop.run(run())
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, failures
