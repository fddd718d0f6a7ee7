"""The one way tests wait for something: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], seconds: float, what: str,
               interval: float = 0.05) -> float:
    """Poll `condition` every `interval` until it is truthy; the seconds it took. Fails the
    test with "timed out after S s waiting for `what`" when `seconds` pass first."""
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(interval)
    return time.monotonic() - started
