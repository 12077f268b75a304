"""Circuit breaker transitions, driven by an injected clock."""

from __future__ import annotations

import pytest

from feature_store.circuit_breaker import CircuitBreaker, CircuitState


def _breaker(clock, transitions=None) -> CircuitBreaker:
    hook = None if transitions is None else (lambda old, new: transitions.append((old, new)))
    return CircuitBreaker(failure_threshold=3, reset_timeout_s=5.0, clock=clock, on_transition=hook)


def test_stays_closed_below_threshold_and_success_resets_count(clock) -> None:
    breaker = _breaker(clock)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()


def test_opens_after_consecutive_failures_and_refuses_until_reset_timeout(clock) -> None:
    transitions: list[tuple[CircuitState, CircuitState]] = []
    breaker = _breaker(clock, transitions)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    clock.advance(4.9)
    assert not breaker.allow()
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN)]


def test_half_open_lets_one_trial_through_then_closes_on_success(clock) -> None:
    transitions: list[tuple[CircuitState, CircuitState]] = []
    breaker = _breaker(clock, transitions)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()  # the trial
    assert breaker.state is CircuitState.HALF_OPEN
    assert not breaker.allow()  # a second caller while the trial is in flight
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()
    assert transitions == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_failed_trial_reopens_for_a_full_reset_timeout(clock) -> None:
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state is CircuitState.OPEN
    clock.advance(4.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_abandoned_trial_does_not_stick_the_breaker(clock) -> None:
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()  # trial taken, never reported
    clock.advance(5.0)
    assert breaker.allow()  # another trial after a reset timeout


@pytest.mark.parametrize(
    ("threshold", "reset"),
    [
        (0, 5.0),  # a zero threshold would open on no failure at all
        (3, 0.0),  # a zero reset timeout would never keep the circuit open
        (3, -1.0),  # negative reset timeout
    ],
)
def test_rejects_nonsense_settings(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(threshold, reset)
