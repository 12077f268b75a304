"""Prometheus metrics of the feature store (one set per process, in the default registry).

- ``recsys_feature_store_reads_total{backend}``: reads served, by who answered
  (``redis``, ``memory``, or ``redis+memory`` when some rows came from the fallback)
- ``recsys_feature_store_fallbacks_total{reason}``: reads or rows the embedded store answered
  instead of Redis, by reason (see `FallbackReason`)
- ``recsys_feature_store_read_seconds{backend}``: read latency, as the caller saw it
- ``recsys_feature_store_circuit_state``: 0 closed, 1 half-open, 2 open
- ``recsys_feature_store_circuit_transitions_total{from_state,to_state}``
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram

from feature_store.circuit_breaker import CircuitState


class FallbackReason(StrEnum):
    """Why the embedded store answered (a label value of the fallback counter)."""

    CIRCUIT_OPEN = "circuit_open"  # no Redis call at all
    UNAVAILABLE = "unavailable"  # refused, reset, cluster down
    TIMEOUT = "timeout"  # Redis slower than socket_timeout_s
    NO_ACTIVE_VERSION = "no_active_version"  # rs:v1:active missing or its metadata missing
    VERSION_MISMATCH = "version_mismatch"  # active version is not the one the models expect
    MISSING_KEY = "missing_key"  # a user/item row the snapshot has is absent from Redis
    BAD_VALUE = "bad_value"  # a row of the wrong byte length


READS = Counter(
    "recsys_feature_store_reads", "Feature reads served, by the backend that answered", ["backend"]
)
FALLBACKS = Counter(
    "recsys_feature_store_fallbacks",
    "Reads (or rows) the embedded store answered instead of Redis, by reason",
    ["reason"],
)
READ_SECONDS = Histogram(
    "recsys_feature_store_read_seconds",
    "Feature read latency (one user + N items)",
    ["backend"],
    buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25),
)
CIRCUIT_STATE = Gauge(
    "recsys_feature_store_circuit_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open"
)
CIRCUIT_TRANSITIONS = Counter(
    "recsys_feature_store_circuit_transitions",
    "Circuit breaker state changes",
    ["from_state", "to_state"],
)

STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


def record_transition(old: CircuitState, new: CircuitState) -> None:
    """Breaker hook: count the transition and update the state gauge."""
    CIRCUIT_TRANSITIONS.labels(from_state=old.value, to_state=new.value).inc()
    CIRCUIT_STATE.set(STATE_VALUE[new])
