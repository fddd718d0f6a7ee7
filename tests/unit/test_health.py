"""The projector's probe verdicts: alive while its loop goes round, ready once assigned and
while its database answers."""

from __future__ import annotations

from hwledger.projectors.health import Health, liveness, readiness


def test_liveness_fails_once_the_loop_stalls_past_its_limit() -> None:
    health = Health(stall_seconds=60, last_loop=1000.0)
    assert liveness(health, 1059.0) == (True, "the loop polls")
    ok, reason = liveness(health, 1061.0)
    assert not ok and "has not completed a poll for 61s (limit 60s" in reason


def test_readiness_needs_an_assignment_and_a_database() -> None:
    assert readiness(Health())[0] is False
    assert readiness(Health(assigned=True)) == (True, "assigned and the database answers")
    assert readiness(Health(assigned=True, database_ok=False)) == (
        False, "the database does not answer (retrying)")
