"""The query service's HTTP metrics (/metrics): `HttpMetrics` counts and times every request
by its route template, and counts the screening answers' candidates, placements and
bin-packer rejections, on the app's own registry (`hwledger.schemas.prometheus` merges every
worker's figures with `serve --workers`; docs/operations.md, "Metrics").
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Match

from hwledger.query.asgi import ASGIApp, Message, Receive, Scope, Send
from hwledger.schemas.prometheus import standard_registry

if TYPE_CHECKING:
    from hwledger.query.screening_http import Screened

UNMATCHED_ROUTE = "unmatched"
"""The `route` label of a request no route matched (a 404), whatever its path."""
COUNT_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 10_000)
"""Buckets of the providers-per-request histograms (the answer's `limit` is at most 10,000)."""


def route_label(scope: Scope, routes: Sequence[BaseRoute], own: Collection[str]) -> str:
    """The `route` label of a request: the template of the route it is for (e.g.
    `/v1/providers/{owner}/runs/{run_id}`, `/console/{path}`), never its raw path (unbounded
    values) or a function name; UNMATCHED_ROUTE when none matches. A path in `own` (a
    plain-ASGI route's) is its own template; others are matched against `routes` as the router
    does (a full match, else the first partial one: a wrong method)."""
    if scope["path"] in own:
        return str(scope["path"])
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return _template(route)
        if match is Match.PARTIAL and partial is None:
            partial = route
    return UNMATCHED_ROUTE if partial is None else _template(partial)


def _template(route: BaseRoute) -> str:
    return str(getattr(route, "path_format", UNMATCHED_ROUTE))


class HttpMetrics:
    """Request counts and latencies per route, and bid screening's candidates, placements and
    bin-packer rejections, on the app's own registry (with the standard collectors)."""

    def __init__(self) -> None:
        self.registry = r = standard_registry()
        self.requests = Counter("hwledger_query_requests_total", "HTTP requests",
                                ["route", "status"], registry=r)
        self.latency = Histogram("hwledger_query_request_seconds", "HTTP request latency",
                                 ["route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1, 5))
        self.workers = Gauge("hwledger_query_workers", "worker processes serving requests",
                             registry=r, multiprocess_mode="livesum")
        self.workers.set(1)
        self.candidates = Histogram(
            "hwledger_query_screening_candidates",
            "prefilter candidates per screening answer (with exact=true, before the bin-packer)",
            ["route", "exact"], registry=r, buckets=COUNT_BUCKETS)
        self.placements = Histogram(
            "hwledger_query_screening_placements",
            "providers the bin-packer placed the request on, per exact=true answer",
            registry=r, buckets=COUNT_BUCKETS)
        self.rejections = Counter(
            "hwledger_query_binpacker_rejections_total",
            "candidates the bin-packer could not place (prefilter false positives)", registry=r)

    def observe_screening(self, route: str, screened: Screened) -> None:
        """Count one screening answer's candidates, and with `exact` its placements and
        rejections."""
        answer = screened.answer
        self.candidates.labels(route, "true" if screened.exact else "false").observe(
            answer.candidates)
        if screened.exact:
            self.placements.observe(answer.candidates - len(answer.rejected))
            self.rejections.inc(len(answer.rejected))

    def middleware(self, app: ASGIApp, routes: Sequence[BaseRoute], own: Collection[str]
                   ) -> ASGIApp:
        """`app` with each HTTP request counted and timed by `route_label` over `routes` and
        the plain-ASGI paths `own`."""
        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            route = route_label(scope, routes, own)  # before the app: mounts rewrite the scope
            status = [0]
            failed = True

            async def capture(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, capture)
                failed = False
            finally:  # no answer: 500 when the app raised, 499 when the client went away
                code = status[0] or (500 if failed else 499)
                self.requests.labels(route, str(code)).inc()
                self.latency.labels(route).observe(time.perf_counter() - started)
        return observed
