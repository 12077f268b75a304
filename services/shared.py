"""What the services of one process share: the feature snapshot and the feature store.

With embedded stages (RECSYS_STAGES=embedded) the RecommendationService, RetrieverService and
RankerService live in one process. Each used to load the snapshot, and the two stages each built
a feature store that followed the event log on every request: two copies of the features and
two log checks per request. Here each is made once per process, keyed by what defines it (an
exact snapshot tag never changes; a store by its mode, Redis settings, snapshot version and
event log). With remote stages every process asks once, so nothing changes there.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from feature_store.resilient import ResilientFeatureStore, build_feature_store
from models import artifacts

if TYPE_CHECKING:
    from data.snapshot import FeatureSnapshot
    from services.settings import Settings

_lock = threading.Lock()
_snapshots: dict[str, FeatureSnapshot] = {}
_stores: dict[tuple[str, str, str, str], ResilientFeatureStore] = {}


def snapshot(tag: str) -> FeatureSnapshot:
    """The feature snapshot stored under `tag` (``name:latest`` resolved now), loaded once."""
    exact = str(artifacts.get_model(tag).tag)
    with _lock:
        if exact not in _snapshots:
            _snapshots[exact] = artifacts.load_snapshot(exact)
        return _snapshots[exact]


def feature_store(settings: Settings, served: FeatureSnapshot) -> ResilientFeatureStore:
    """The process's feature store for `served` in the settings' mode, following its event log."""
    events = settings.replica_events()
    key = (
        settings.feature_store_mode,
        settings.redis.model_dump_json(),
        served.version,
        str(events.dir),
    )
    with _lock:
        if key not in _stores:
            _stores[key] = build_feature_store(
                settings.feature_store_mode, settings.redis, served, events
            )
        return _stores[key]
