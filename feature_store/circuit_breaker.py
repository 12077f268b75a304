"""A small, synchronous circuit breaker with an injectable clock.

States: ``closed`` (calls go through) → ``open`` after `failure_threshold` consecutive failures
(calls are refused at once, no waiting on the broken dependency) → ``half_open`` once
`reset_timeout_s` has passed (one trial call goes through) → ``closed`` on its success, back to
``open`` on its failure.

Why not pybreaker: it stamps states with the wall clock (``datetime.now``), so tests cannot drive
time, and it wraps calls (``breaker.call(fn)``) where the store needs an allow/record pair around
a pipelined read. This class is ~80 lines with every transition under test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    """Breaker states; the value is what /health and the metrics show."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


TransitionHook = Callable[[CircuitState, CircuitState], None]


class CircuitBreaker:
    """Counts consecutive failures and refuses calls while the dependency is deemed down.

    Args:
        failure_threshold: consecutive failures that open the circuit.
        reset_timeout_s: how long the circuit stays open before one trial call.
        clock: monotonic seconds; tests inject a fake one.
        on_transition: called with (old, new) state on every change (metrics, logs).
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionHook | None = None,
    ) -> None:
        if failure_threshold < 1 or reset_timeout_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_timeout_s > 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None

    @property
    def state(self) -> CircuitState:
        """The current state (an open circuit whose timeout has passed still reads ``open``)."""
        return self._state

    def allow(self) -> bool:
        """Whether a call may go through now; the caller must then report its outcome.

        In ``half_open`` only one trial call is let through at a time; a trial that never
        reports back is abandoned after `reset_timeout_s` so the breaker cannot stick.
        """
        if self._state is CircuitState.CLOSED:  # fast path, no lock
            return True
        with self._lock:
            now = self._clock()
            if self._state is CircuitState.OPEN:
                if now - self._opened_at < self.reset_timeout_s:
                    return False
                self._set(CircuitState.HALF_OPEN)
            if self._state is CircuitState.HALF_OPEN:
                if self._trial_started is not None and now - self._trial_started < (
                    self.reset_timeout_s
                ):
                    return False
                self._trial_started = now
            return True

    def record_success(self) -> None:
        """A call went through: reset the failure count and close a half-open circuit."""
        if self._state is CircuitState.CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._trial_started = None
            if self._state is not CircuitState.CLOSED:
                self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """A call failed: open the circuit at the threshold, or again after a failed trial."""
        with self._lock:
            self._failures += 1
            self._trial_started = None
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._opened_at = self._clock()
                self._set(CircuitState.OPEN)

    def _set(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        if self._on_transition is not None and old is not new:
            self._on_transition(old, new)
