"""A 3-node Redis Cluster started from the same redis-server binary: materialize and read."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
import redis

from feature_store import keys
from feature_store.config import RedisSettings
from feature_store.local_redis import cluster_port, find_redis_binary
from feature_store.materialize import materialize
from feature_store.resilient import build_feature_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # cluster creation takes 3-8 s


def test_materialize_and_read_on_a_three_node_cluster(
    snapshot, other_snapshot, private_redis, tmp_path
) -> None:
    nodes = []
    for _ in range(3):
        port = cluster_port()
        conf = tmp_path / f"nodes-{port}.conf"
        nodes.append(private_redis(port, "--cluster-enabled", "yes", "--cluster-config-file",
                                   str(conf), "--dir", str(tmp_path)))  # fmt: skip
    addresses = [f"127.0.0.1:{node.port}" for node in nodes]
    subprocess.run(
        [str(find_redis_binary("redis-cli")), "--cluster", "create", *addresses,
         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    probe = redis.Redis(port=nodes[0].port)
    deadline = time.monotonic() + 20
    while b"cluster_state:ok" not in probe.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "cluster did not become ready"
        time.sleep(0.1)
    probe.close()

    settings = RedisSettings(url=nodes[1].url, cluster=True, active_version_ttl_s=0.0)
    materialize(snapshot, settings)
    report = materialize(other_snapshot, settings)  # switch; the old version is deleted
    assert report.deleted_keys == len(snapshot.user_ids) + len(snapshot.item_ids) + 1

    store = build_feature_store("redis", settings, other_snapshot)
    rows = store.read(int(other_snapshot.user_ids[5]), other_snapshot.item_ids)
    assert rows.backend == "redis"
    np.testing.assert_array_equal(rows.user, other_snapshot.user_matrix[5])
    np.testing.assert_array_equal(rows.items, other_snapshot.item_matrix)
    store.close()
    # The active pointer and the version's keys may live on different nodes; both were found.
    cluster = redis.cluster.RedisCluster.from_url(nodes[0].url)
    assert cluster.get(keys.ACTIVE_KEY) == other_snapshot.version.encode()
    cluster.close()
