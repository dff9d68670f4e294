"""The load generator's HTTP/1.1 client and how it reads answers."""

from __future__ import annotations

import asyncio

import pytest

from prioritize.demo.client import HttpClient, ProtocolError, Response
from prioritize.demo.driver import Kind, classify_response

PROBLEM = {"content-type": "application/problem+json"}


async def _one_get(answer: bytes) -> Response:
    """GET / from a server that reads the request and writes ``answer`` back, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = HttpClient("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        return await client.get("/")
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


def test_a_response_is_read_into_status_lowercase_headers_and_body() -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nbusy"
    response = asyncio.run(_one_get(answer))
    assert (response.status, response.headers["retry-after"], response.body) == (503, "2", b"busy")


def test_a_chunked_response_is_read_too() -> None:
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    assert asyncio.run(_one_get(answer)).body == b"ok"


@pytest.mark.parametrize(
    "answer", [b"SMTP 220 hello\r\n\r\n", b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n"]
)
def test_an_answer_that_is_not_http_is_a_protocol_error(answer: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.1 response this client can read"):
        asyncio.run(_one_get(answer))


def test_answers_are_served_shed_or_errors() -> None:
    body = b'{"type":"urn:prioritize:problem:shed","status":503,"reason":"evicted"}'
    assert classify_response(Response(200, {}, b'{"level":"high"}')) == (Kind.SERVED, "")
    assert classify_response(Response(503, PROBLEM, body)) == (Kind.SHED, "evicted")
    html = Response(503, {"content-type": "text/html"}, b"<h1>busy</h1>")
    assert classify_response(html)[0] is Kind.ERROR
    assert classify_response(Response(503, PROBLEM, b"{}"))[0] is Kind.ERROR
    assert classify_response(Response(503, PROBLEM, b"not json"))[0] is Kind.ERROR
    assert classify_response(Response(500, {}, b"")) == (Kind.ERROR, "status 500")


def test_a_request_on_a_connection_closed_while_idle_is_sent_again_on_a_new_one() -> None:
    async def answer_once_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # no "connection: close": the client finds out on its next request
        await writer.wait_closed()

    async def run() -> tuple[list[int], int]:
        server = await asyncio.start_server(answer_once_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient("127.0.0.1", port)
        try:
            statuses = [(await client.get("/a")).status, (await client.get("/b")).status]
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()
        return statuses, client.connects

    assert asyncio.run(run()) == ([200, 200], 2)
