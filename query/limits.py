"""The bounds on one screening request's work, and the errors of going past them.

`Limits` are the service's settings (HWLEDGER_QUERY_*): placement steps, the time budget, the
answer's size and the worker pool. `Budget` is one request's deadline on the monotonic clock.
A request too costly by its shape is `TooCostly` (HTTP 422 `too_costly`), one out of time is
`BudgetExceeded` (HTTP 503 `over_budget`). Pure, but for reading the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


class TooCostly(Exception):
    """The request, as shaped, needs more work or a larger answer than `Limits` allow."""


class BudgetExceeded(Exception):
    """The request's time budget ran out (a slow database, or the workers busy under load)."""


@dataclass(frozen=True)
class Limits:
    """The bounds on one screening request's work (HWLEDGER_QUERY_* settings)."""

    max_placement_steps: int = 100_000
    time_budget_seconds: float = 2.0
    max_answer_bytes: int = 16 * 2**20
    workers: int = 2


DEFAULT_LIMITS = Limits()
"""The bounds when no HWLEDGER_QUERY_* setting changes them."""


@dataclass(frozen=True)
class Budget:
    """One request's deadline on the monotonic clock."""

    seconds: float
    deadline: float

    @classmethod
    def start(cls, seconds: float) -> Budget:
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self, stage: str) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"the {self.seconds:g} s time budget of the request ran out "
                                 f"({stage}); try again later")


def check_answer_size(providers_json: str, limits: Limits) -> None:
    size = len(providers_json.encode())
    if size > limits.max_answer_bytes:
        raise TooCostly(f"the answer would be {size} bytes, over the cap of "
                        f"{limits.max_answer_bytes}: lower `limit` or narrow the request")
