"""Materialization: write a feature snapshot into Redis under its version, then switch to it.

Steps: (1) MSET the rows in pipelined batches under ``rs:v1:{<version>}:…`` (keys in `keys`),
reporting progress; (2) write the version's metadata; (3) read back a sample of users and items
and compare bytes; (4) switch ``rs:v1:active`` with one atomic ``SET … GET``; (5) delete the
previous version's keys. Readers see either the old version or the new one, never a mix.
Re-running the same version rewrites identical values and leaves the pointer as it was, so it
is safe. A failed verification leaves the active version untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from data.snapshot import FeatureSnapshot
from feature_store import keys
from feature_store.config import RedisSettings
from feature_store.errors import FeatureStoreUnavailable, MaterializationError
from feature_store.redis_store import RedisClient, make_client

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of rows just written


@dataclass(frozen=True)
class MaterializeReport:
    """What one materialization did."""

    version: str
    users: int
    items: int
    verified: int
    previous_version: str | None
    deleted_keys: int
    seconds: float


def materialize(
    snapshot: FeatureSnapshot,
    settings: RedisSettings,
    progress: Progress | None = None,
    verify_sample: int = 200,
    seed: int = 0,
) -> MaterializeReport:
    """Write `snapshot` into Redis, verify a sample, make it active, drop the old version.

    Args:
        snapshot: the feature snapshot to serve.
        settings: where Redis is; `materialize_batch_size` rows go in each MSET.
        progress: called after each batch with the rows it wrote (total = users + items).
        verify_sample: users and items each read back and compared before the switch.
        seed: for the verification sample.

    Returns:
        The version written, counts, the previous active version and the keys deleted.

    Raises:
        FeatureStoreUnavailable: Redis could not be reached or failed mid-way.
        MaterializationError: the read-back sample differs from the snapshot.
    """
    start = time.perf_counter()
    client = make_client(settings, socket_timeout_s=settings.materialize_timeout_s)
    version = snapshot.version
    try:
        node = version_node(client, version)
        _write_rows(
            node,
            version,
            "u",
            snapshot.user_ids,
            snapshot.user_matrix,
            settings.materialize_batch_size,
            progress,
        )
        _write_rows(
            node,
            version,
            "i",
            snapshot.item_ids,
            snapshot.item_matrix,
            settings.materialize_batch_size,
            progress,
        )
        node.set(keys.meta_key(version), _meta_json(snapshot))
        verified = _verify(node, snapshot, verify_sample, seed)
        raw_previous = client.set(keys.ACTIVE_KEY, version, get=True)  # atomic switch
        previous = raw_previous.decode() if raw_previous is not None else None
        deleted = 0
        if previous is not None and previous != version:
            deleted = delete_version(client, previous)
    except (RedisError, RedisClusterException) as exc:
        raise FeatureStoreUnavailable(f"materializing version {version}: {exc}") from exc
    finally:
        client.close()
    report = MaterializeReport(
        version,
        len(snapshot.user_ids),
        len(snapshot.item_ids),
        verified,
        previous,
        deleted,
        time.perf_counter() - start,
    )
    logger.info(
        "materialized feature version %s (%d users, %d items) in %.2f s; previous %s, "
        "%d keys deleted",
        version,
        report.users,
        report.items,
        report.seconds,
        previous,
        deleted,
    )
    return report


def version_node(client: RedisClient, version: str) -> redis.Redis:
    """A plain client for the node holding `version`'s slot (the client itself if not a cluster).

    Every key of a version shares its hash tag, hence one slot on one node; talking to that node
    directly allows pipelined MSETs (which redis-py's cluster pipeline refuses) and a SCAN of
    one node instead of all.
    """
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(keys.meta_key(version))
        return client.get_redis_connection(node)
    return client


def _write_rows(
    client: redis.Redis,
    version: str,
    kind: str,
    ids: np.ndarray,
    matrix: np.ndarray,
    batch_size: int,
    progress: Progress | None,
) -> None:
    prefix = f"{keys.version_prefix(version)}{kind}:"
    # All keys share the version's hash tag, so each MSET is legal on a cluster too; several
    # MSETs go in one pipeline round trip.
    per_pipeline = 8
    for outer in range(0, len(ids), batch_size * per_pipeline):
        pipe = client.pipeline(transaction=False)
        written = 0
        for lo in range(outer, min(outer + batch_size * per_pipeline, len(ids)), batch_size):
            chunk_ids = ids[lo : lo + batch_size].tolist()
            values = keys.pack_rows(matrix[lo : lo + batch_size])
            pipe.mset({f"{prefix}{i}": v for i, v in zip(chunk_ids, values, strict=True)})
            written += len(chunk_ids)
        pipe.execute()
        if progress is not None:
            progress(written)


def _meta_json(snapshot: FeatureSnapshot) -> str:
    return json.dumps(
        {
            "version": snapshot.version,
            "user_columns": list(snapshot.user_columns),
            "item_columns": list(snapshot.item_columns),
            "default_user": snapshot.default_user.tolist(),
            "default_item": snapshot.default_item.tolist(),
            "users": len(snapshot.user_ids),
            "items": len(snapshot.item_ids),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def _verify(client: redis.Redis, snapshot: FeatureSnapshot, sample: int, seed: int) -> int:
    """Read back `sample` users and items (first and last included) and compare bytes."""
    rng = np.random.default_rng(seed)
    checked = 0
    for kind, ids, matrix in (
        ("u", snapshot.user_ids, snapshot.user_matrix),
        ("i", snapshot.item_ids, snapshot.item_matrix),
    ):
        if len(ids) == 0:
            continue
        rows = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
        rows = np.unique(np.concatenate([rows, [0, len(ids) - 1]]))
        prefix = f"{keys.version_prefix(snapshot.version)}{kind}:"
        got = client.mget([f"{prefix}{ids[r]}" for r in rows])
        for r, value in zip(rows.tolist(), got, strict=True):
            expected = keys.pack_row(matrix[r])
            if value != expected:
                raise MaterializationError(
                    snapshot.version,
                    f"{prefix}{ids[r]} = {len(expected)} bytes of the snapshot's row",
                    "missing" if value is None else f"{len(value)} different bytes",
                )
        checked += len(rows)
    return checked


def delete_version(client: redis.Redis, version: str, batch: int = 1000) -> int:
    """Delete every key of `version` (SCAN + UNLINK in batches) on its node; returns how many."""
    deleted = 0
    pending: list[bytes] = []
    for key in client.scan_iter(match=keys.version_pattern(version), count=batch):
        pending.append(key)
        if len(pending) >= batch:
            deleted += client.unlink(*pending)
            pending = []
    if pending:
        deleted += client.unlink(*pending)
    return deleted
