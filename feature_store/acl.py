"""Least-privilege Redis ACL users: the commands each role of the project sends, on its keys only.

One source of truth for the Helm chart (tests check that its users carry these exact rules), the
README and ``recsys redis acl``. Each list is what the code sends, found with MONITOR and
``INFO commandstats`` while the Redis tests and the served API ran, and proven by
tests/integration/feature_store/test_acl.py, which runs the real code as each user:

=============  ==============================================================================
role           may run (on keys ``rs:v1:*`` only, no Pub/Sub channels)
=============  ==============================================================================
serving        GET/MGET (the active pointer, its metadata, feature rows), LRANGE (a user's
               events since the snapshot), WATCH/MULTI/EXEC/UNWATCH + SET/RPUSH/XADD
               (POST /events: one optimistic transaction), EVALSHA + SCRIPT LOAD and the
               script's HMGET/HSET/PEXPIRE (the rate limiter's token bucket, ``rs:v1:rl:*``;
               Redis checks a script's calls against the caller's ACL too)
materialize    MSET/MGET/SET (rows in batches, their read-back, the metadata and the
               ``SET … GET`` switch of the pointer), SCAN/UNLINK (drop the previous version),
               GET/XRANGE (read the event stream back: ``recsys events export``,
               ``recsys train --events redis://…``)
=============  ==============================================================================

Neither role gets FLUSH*, CONFIG, KEYS, DEBUG, SHUTDOWN, ACL, MONITOR, CLIENT or EVAL (which
would run any script text). Redis 6.2 has no selectors, so the key pattern applies to every
command of a user. Two leaks remain by Redis' design: SCAN (materialize) lists key names outside
the pattern, and AUTH/HELLO are always allowed. redis-py also sends ``CLIENT SETINFO`` /
``CLIENT MAINT_NOTIFICATIONS`` on connect; it ignores their NOPERM, which Redis records in
``ACL LOG``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, get_args

from feature_store.keys import PREFIX

Role = Literal["serving", "materialize"]
ROLES: tuple[Role, ...] = get_args(Role)

KEY_PATTERN = f"~{PREFIX}*"
COMMANDS: dict[Role, tuple[str, ...]] = {
    "serving": (
        "get", "mget", "lrange",
        "watch", "multi", "exec", "unwatch", "set", "rpush", "xadd",
        "evalsha", "script|load", "hmget", "hset", "pexpire",
    ),
    "materialize": ("mset", "mget", "set", "scan", "unlink", "get", "xrange"),
}  # fmt: skip
# What redis-py's cluster client asks each node when it connects (slot map, command table).
CLUSTER_COMMANDS = ("cluster|slots", "command")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def acl_rules(role: Role, *, cluster: bool = False) -> str:
    """The ACL rules of `role`: its key pattern, no channels, nothing but its commands.

    Args:
        role: ``serving`` (the API pods) or ``materialize`` (the materialization job).
        cluster: add what a Redis Cluster client needs on connect (`CLUSTER_COMMANDS`).

    Returns:
        Rules for ``ACL SETUSER`` or an ACL file line, e.g.
        ``resetkeys ~rs:v1:* resetchannels -@all +get +mget …``.

    Raises:
        ValueError: `role` is not one of `ROLES`.
    """
    if role not in COMMANDS:
        raise ValueError(f"unknown Redis ACL role {role!r}: expected one of {', '.join(ROLES)}")
    commands = COMMANDS[role] + (CLUSTER_COMMANDS if cluster else ())
    return " ".join(
        ["resetkeys", KEY_PATTERN, "resetchannels", "-@all"] + [f"+{c}" for c in commands]
    )


def password_sha256(password: str) -> str:
    """Lowercase hex SHA-256 of a password, as ACL files store it (``#<hex>``)."""
    return hashlib.sha256(password.encode()).hexdigest()


def acl_file_line(
    username: str, password_sha256_hex: str, role: Role, *, cluster: bool = False
) -> str:
    """One ACL file line (``aclfile``): ``user NAME on #<sha256> <rules>``.

    Args:
        username: the Redis user (letters, digits, ``.``, ``_``, ``-``).
        password_sha256_hex: `password_sha256` of its password; the password itself never
            appears in the file.
        role: whose rules it gets (`acl_rules`).
        cluster: as in `acl_rules`.

    Raises:
        ValueError: a malformed username or hash, or an unknown role.
    """
    if not _USERNAME.fullmatch(username):
        raise ValueError(f"Redis username {username!r}: use letters, digits, '.', '_', '-'")
    if not _SHA256_HEX.fullmatch(password_sha256_hex):
        raise ValueError("password_sha256_hex must be 64 lowercase hex digits (a SHA-256)")
    return f"user {username} on #{password_sha256_hex} {acl_rules(role, cluster=cluster)}"
