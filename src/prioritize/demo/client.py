"""A small keep-alive HTTP/1.1 client for the load generator: h11 on asyncio streams.

Why not httpx: measured on two shared cores, httpx spent 4 to 10 ms of CPU
per request, most of it in its connection pool, so at the demo's 640
requests a second the load generator alone would saturate a core and the
latencies would measure it rather than the server. The demo only ever talks
to its own server, so this client needs very little: one request per
connection at a time, connections reused from a stack. The HTTP itself —
framing, headers, bodies by length or chunked, keep-alive — is h11's, the
sans-I/O HTTP/1.1 implementation uvicorn and httpx are built on.

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

import h11

__all__ = ["HttpClient", "ProtocolError", "Response"]

_READ = 64 * 1024


class ProtocolError(Exception):
    """The server's answer was not an HTTP/1.1 response this client can read."""


@final
@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: header names in lower case; a repeated header keeps its last value
    headers: Mapping[str, str]
    body: bytes


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]


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
        for _, writer, _ in idle:
            with suppress(OSError):
                await writer.wait_closed()

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.connects += 1
        return reader, writer, h11.Connection(h11.CLIENT)

    def _close(self, connection: _Connection) -> None:
        connection[1].close()

    async def _exchange(self, connection: _Connection, target: str) -> tuple[Response, bool]:
        reader, writer, http = connection
        request = h11.Request(method="GET", target=target, headers=[("host", self.host)])
        writer.write(http.send(request) + (http.send(h11.EndOfMessage()) or b""))
        received = False
        status, headers, body = 0, {}, bytearray()
        try:
            await writer.drain()
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(_READ)
                    if not data and not received:
                        raise _ClosedBeforeAnswer
                    received = True
                    http.receive_data(data)  # b"": the server closed the connection
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ProtocolError("the server closed the connection mid-response")
        except h11.RemoteProtocolError as error:
            raise ProtocolError(f"not an HTTP/1.1 response this client can read: {error}") from None
        except ConnectionError:
            if not received:
                raise _ClosedBeforeAnswer from None
            raise
        keep = http.our_state is h11.DONE and http.their_state is h11.DONE
        if keep:
            http.start_next_cycle()
        return Response(status, MappingProxyType(headers), bytes(body)), keep


class _ClosedBeforeAnswer(Exception):
    """The connection ended before the first byte of a response."""
