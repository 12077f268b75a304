"""A minimal keep-alive HTTP/1.1 JSON POST client for load generation (`recsys bench service`).

Why not httpx: on this 2-core machine its AsyncClient spends ~2 ms of CPU per request, so 16
clients measured the client as much as the server (≈240 req/s against a trivial service). This
client pre-encodes each body and parses only the status line and Content-Length (or chunked
framing), which costs a small fraction of that. It is for benchmarks only: one request at a time
per connection, no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 we understand."""


def encode_posts(
    url: str, path: str, bodies: list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> list[bytes]:
    """Complete HTTP/1.1 POST requests, one per JSON body, ready to write on a connection."""
    host = urlsplit(url).netloc
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    requests = []
    for body in bodies:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\n{extra}Content-Length: {len(payload)}\r\n\r\n"
        )
        requests.append(head.encode() + payload)
    return requests


class Connection:
    """One keep-alive connection; reconnects after an error or `Connection: close`."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one encoded request; return (status, body).

        Raises:
            HttpError: connection refused, reset, timed out or malformed answer.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(raw)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        chunks = []
        while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await self._reader.readexactly(size + 2))
            chunks[-1] = chunks[-1][:-2]
        await self._reader.readuntil(b"\r\n")  # the empty trailer
        return b"".join(chunks)

    async def close(self) -> None:
        """Close the socket (the next request reconnects)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
