"""The load generator's HTTP/1.1 client and how it reads answers."""

from __future__ import annotations

import asyncio

import pytest

from prioritize.demo.client import HttpClient, ProtocolError, Response, parse_head
from prioritize.demo.driver import Kind, classify_response

PROBLEM = {"content-type": "application/problem+json"}


def test_a_response_head_is_read_into_status_and_lowercase_headers() -> None:
    status, headers = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\n\r\n")
    assert status == 503
    assert headers == {"retry-after": "2"}


@pytest.mark.parametrize("head", [b"SMTP 220 hello\r\n\r\n", b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n"])
def test_a_head_that_is_not_http_is_a_protocol_error(head: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_head(head)


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


def test_a_response_without_content_length_is_a_protocol_error() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def run() -> None:
        server = await asyncio.start_server(chunked, "127.0.0.1", 0)
        client = HttpClient("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            await client.get("/")
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    with pytest.raises(ProtocolError, match="without Content-Length"):
        asyncio.run(run())
