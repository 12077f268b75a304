"""API keys, the keys file and in-process token buckets (issue 18)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.auth import (
    AuthConfigError,
    AuthSettings,
    KeyRing,
    RateLimit,
    hash_key,
    new_key,
    parse_keys,
    presented_key,
)
from services.rate_limit import LocalBuckets, lease_size

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2


def test_the_stored_hash_is_sha256_hex() -> None:
    assert hash_key("abc") == ABC_SHA256


def test_new_keys_are_prefixed_random_tokens() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"rsk_[A-Za-z0-9_-]{43}", key), key


def test_keys_new_prints_the_key_then_one_line_per_scope() -> None:
    from services.tooling.cli import app

    result = CliRunner().invoke(app, ["keys", "new", "--scope", "admin", "--scope", "recommend"])
    assert result.exit_code == 0, result.output
    key, *lines = result.output.splitlines()
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert lines == [f"recommend:{digest}", f"admin:{digest}"]
    bad = CliRunner().invoke(app, ["keys", "new", "--scope", "root"])
    assert bad.exit_code != 0
    assert "unknown scope 'root'" in bad.output


def test_keys_file_lines_comments_and_several_scopes() -> None:
    a, b = "a" * 64, "b" * 64
    text = f"# rotated 2026-12-01\n\nrecommend:{a}\n  admin:{a}  \nevents:{b}\n"
    assert parse_keys(text) == {a: {"recommend", "admin"}, b: {"events"}}


@pytest.mark.parametrize(
    "line",
    [
        "root:" + "a" * 64,  # unknown scope
        "recommend:" + "a" * 63,  # a hash one character short
        "recommend:" + "A" * 64,  # uppercase hex (we write lowercase)
        "recommend " + "a" * 64,  # no colon
        "rsk_plainkeyinthefile",  # a key instead of its hash
    ],
)
def test_bad_keys_file_lines_name_their_line(line: str) -> None:
    with pytest.raises(AuthConfigError, match="line 2: expected `scope:sha256-hex`"):
        parse_keys(f"# ok\n{line}\n")


def test_enabled_without_a_keys_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RECSYS_AUTH__KEYS_FILE"):
        AuthSettings(enabled=True)
    with pytest.raises(AuthConfigError, match="does not exist"):
        KeyRing(tmp_path / "missing")


def test_keyring_follows_the_file_rotation_and_revocation(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    path = tmp_path / "keys"
    path.write_text(f"recommend:{hash_key(old)}\n")
    ring = KeyRing(path, reload_every_s=0.01)
    assert ring.scopes(hash_key(old)) == {"recommend"}
    assert ring.scopes(hash_key(new)) is None

    path.write_text(
        f"recommend:{hash_key(old)}\nrecommend:{hash_key(new)}\nevents:{hash_key(new)}\n"
    )
    _touch_later(path)
    assert ring.scopes(hash_key(new)) == {"recommend", "events"}  # added without a restart

    path.write_text(f"recommend:{hash_key(new)}\nevents:{hash_key(new)}\n")
    _touch_later(path)
    assert ring.scopes(hash_key(old)) is None  # revoked

    path.write_text("this is not a keys file\n")
    _touch_later(path)
    assert ring.scopes(hash_key(new)) == {"recommend", "events"}  # a broken file keeps the keys
    assert ring.summary()["per_scope"] == {"recommend": 1, "events": 1, "admin": 0}


def _touch_later(path: Path) -> None:
    """Make the change visible to the reload check (new mtime, past the reload interval)."""
    stamp = time.time_ns() + 10_000_000
    os.utime(path, ns=(stamp, stamp))
    time.sleep(0.02)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", b"Bearer rsk_x")], "rsk_x"),
        ([(b"authorization", b"bearer   rsk_x ")], "rsk_x"),  # scheme is case-insensitive
        ([(b"x-api-key", b"rsk_y")], "rsk_y"),
        ([(b"authorization", b"Basic dXNlcjpwdw==")], None),  # not a bearer token
        ([(b"authorization", b"Bearer ")], None),  # empty
        ([], None),
    ],
)
def test_the_key_comes_from_bearer_or_x_api_key(headers, key) -> None:
    assert presented_key({"type": "http", "headers": headers}) == key


def test_local_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [100.0]
    buckets = LocalBuckets(clock=lambda: now[0])
    limit = RateLimit(per_second=2.0, burst=5)
    waits = [buckets.take("k1", "recommend", limit) for _ in range(7)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(0.5)  # one token takes 1 / 2 s
    assert buckets.take("k2", "recommend", limit) == 0.0  # another key has its own bucket
    now[0] += 1.0  # two tokens back
    assert [buckets.take("k1", "recommend", limit) for _ in range(3)] == [
        0.0,
        0.0,
        pytest.approx(0.5),
    ]
    now[0] += 3600  # never more than the burst
    assert sum(buckets.take("k1", "recommend", limit) == 0.0 for _ in range(10)) == 5


@pytest.mark.parametrize(("burst", "lease"), [(1, 1), (2, 1), (20, 2), (1000, 16)])
def test_a_worker_leases_at_most_an_eighth_of_the_burst(burst: int, lease: int) -> None:
    assert lease_size(RateLimit(per_second=1.0, burst=burst)) == lease
