"""A small keep-alive HTTP/1.1 client for the load generator, on asyncio streams.

Why not httpx: measured on two shared cores, httpx spent 4 to 10 ms of CPU
per request, most of it in its connection pool, so at the demo's 640
requests a second the load generator alone would saturate a core and the
latencies would measure it rather than the server. The demo only ever talks
to its own server, which answers every GET with a ``Content-Length`` body,
so this client needs very little: one request per connection at a time,
connections reused from a stack, a ``Content-Length`` body, nothing else.

A connection reused from the stack may have been closed by the server while
idle; if it fails before a single byte of the response arrives, the request
is sent once more on a new connection (a GET is safe to repeat). Any other
failure is raised, for the caller to count as an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from types import MappingProxyType
from typing import final

__all__ = ["HttpClient", "ProtocolError", "Response", "parse_head"]

_MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The server's answer was not an HTTP/1.1 response this client can read."""


@final
@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: header names in lower case; a repeated header keeps its last value
    headers: Mapping[str, str]
    body: bytes


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@final
class HttpClient:
    """GET requests to one server at ``host:port``, at most ``limit`` connections open.

    A request waiting for a connection because ``limit`` are busy waits in
    the client, and that wait counts in its latency. ``timeout`` bounds a
    whole request, connection included; it raises `TimeoutError`.
    """

    def __init__(self, host: str, port: int, *, limit: int = 512, timeout: float = 30.0) -> None:
        if limit < 1:
            raise ValueError(f"limit = {limit!r}: expected a whole number of connections ≥ 1")
        self.host = host
        self.port = port
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        #: connections opened so far, for the curious
        self.connects = 0

    async def prepare(self, connections: int) -> None:
        """Open ``connections`` idle connections now, so a run does not pay for them."""
        missing = connections - len(self._idle)
        opened = await asyncio.gather(*(self._connect() for _ in range(max(missing, 0))))
        self._idle.extend(opened)

    async def get(self, target: str) -> Response:
        async with self._slots, asyncio.timeout(self.timeout):
            while True:
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                try:
                    response, keep = await self._exchange(connection, target)
                except _ClosedBeforeAnswer:
                    self._close(connection)
                    if reused:
                        continue
                    raise ConnectionResetError("the server closed the connection") from None
                except BaseException:
                    self._close(connection)
                    raise
                if keep:
                    self._idle.append(connection)
                else:
                    self._close(connection)
                return response

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            self._close(connection)
        for _, writer in idle:
            with suppress(OSError):
                await writer.wait_closed()

    async def _connect(self) -> _Connection:
        connection = await asyncio.open_connection(self.host, self.port, limit=_MAX_HEAD)
        self.connects += 1
        return connection

    def _close(self, connection: _Connection) -> None:
        connection[1].close()

    async def _exchange(self, connection: _Connection, target: str) -> tuple[Response, bool]:
        reader, writer = connection
        writer.write(f"GET {target} HTTP/1.1\r\nhost: {self.host}\r\n\r\n".encode("latin-1"))
        try:
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise _ClosedBeforeAnswer from None
            raise ProtocolError("the response ended inside its headers") from None
        except ConnectionError:
            raise _ClosedBeforeAnswer from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"response headers longer than {_MAX_HEAD} bytes") from None
        status, headers = parse_head(head)
        if "content-length" not in headers:
            raise ProtocolError(f"a {status} response without Content-Length")
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError(f"Content-Length {headers['content-length']!r}") from None
        body = await reader.readexactly(length)
        keep = headers.get("connection", "").lower() != "close"
        return Response(status, MappingProxyType(headers), body), keep


class _ClosedBeforeAnswer(Exception):
    """The connection ended before the first byte of a response."""


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers of a response head (the bytes up to the blank line)."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line!r}")
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"not a header line: {line!r}")
            headers[name.strip().lower()] = value.strip()
    return int(code), headers
