"""A lean HTTP client for calls between the composed services.

`bentoml.depends()` decides WHERE a stage runs: in process, as a dependency process started by
`bentoml serve` (reached over a unix socket), or as a separate deployment (RECSYS_*_URL). For the
two out-of-process cases BentoML's own client (httpx) costs about 2 ms per call here, the largest
line of the request budget; the same call through aiohttp costs about 1 ms (DESIGN.md, measured
with `recsys bench service`). `StageClient` is that aiohttp client: one keep-alive session per
stage, JSON in and out (encoded by pydantic-core), the stage's own timeout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pydantic_core import from_json, to_json

from data.errors import RecsysError

if TYPE_CHECKING:  # aiohttp is imported by the first remote call: embedded stages never need it
    import aiohttp

logger = logging.getLogger(__name__)

JSON_HEADERS = {"content-type": "application/json"}


class StageUnavailable(RecsysError):
    """A composed stage did not answer, or answered with an error."""


class StageClient:
    """Calls the APIs of one remote stage: `await client.retrieve(user_id=1, k=100)`."""

    def __init__(self, name: str, url: str, timeout_s: float) -> None:
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        parsed = urlparse(self.url)
        if parsed.scheme == "file":  # bentoml serve's dependency sockets: file:///tmp/....sock
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=unquote(parsed.path))
            base = "http://localhost"
        elif parsed.scheme == "tcp":
            connector, base = aiohttp.TCPConnector(), f"http://{parsed.netloc}"
        else:
            connector, base = aiohttp.TCPConnector(), self.url.rstrip("/")
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        return aiohttp.ClientSession(base, connector=connector, timeout=timeout)

    async def call(self, api: str, **payload: Any) -> Any:
        """POST `payload` as JSON to the stage's `api` route and return the decoded answer.

        Raises:
            StageUnavailable: the stage could not be reached, timed out or did not answer 200.
        """
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = self._open()
        try:
            async with self._session.post(
                f"/{api}", data=to_json(payload), headers=JSON_HEADERS
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise StageUnavailable(
                        f"{self.name} /{api} answered {response.status}: {body[:300]!r}"
                    )
                return from_json(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StageUnavailable(f"{self.name} at {self.url} /{api}: {exc!r}") from exc

    def __getattr__(self, api: str) -> Any:
        if api.startswith("_"):
            raise AttributeError(api)

        async def method(**payload: Any) -> Any:
            return await self.call(api, **payload)

        return method

    async def close(self) -> None:
        """Close the keep-alive session."""
        if self._session is not None:
            await self._session.close()


def stage(service: Any, attribute: str, timeout_s: float) -> Any:
    """The object to call a `bentoml.depends()` stage through.

    Args:
        service: the service instance declaring the dependency.
        attribute: the class attribute holding the `bentoml.depends()` declaration.
        timeout_s: timeout of each call when the stage is remote.

    Returns:
        The in-process service instance when BentoML composed it in process, else a
        `StageClient` for the address BentoML resolved (dependency socket or configured URL).
    """
    resolved = getattr(service, attribute)  # resolves the dependency (BentoML's descriptor)
    dependency = type(service).__dict__.get(attribute)
    url = getattr(dependency, "url", None)
    if url is None:
        return resolved
    logger.info("stage %s reached at %s", attribute, url)
    return StageClient(attribute, url, timeout_s)
