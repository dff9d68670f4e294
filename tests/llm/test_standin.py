"""The stand-in provider, served by a real uvicorn on a loopback port: both API shapes, its
limits, its rate-limit headers and its answers to bad requests. Its clock is a VirtualClock,
so refills happen when the test says."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from prioritize.llm.standin import StandIn, count_tokens, prompt_tokens, serve
from prioritize.llm.tokens import stream_usage
from prioritize.testing import VirtualClock

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def provider(clock: VirtualClock) -> StandIn:
    return StandIn(rpm=3, tpm=1000, clock=clock)


@pytest.fixture
def client(provider: StandIn) -> Iterator[httpx.Client]:
    with serve(provider) as url, httpx.Client(base_url=url) as http:
        yield http


def ask(text: str = "hello there", max_tokens: int = 10) -> dict[str, object]:
    return {"model": "m", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


def test_openai_shape_answers_with_usage_and_rate_limit_headers(client: httpx.Client) -> None:
    response = client.post(CHAT, json=ask())
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 10, "total_tokens": 16}
    assert response.headers["x-ratelimit-limit-requests"] == "3"
    assert response.headers["x-ratelimit-remaining-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-tokens"] == str(1000 - 16)
    assert response.headers["x-ratelimit-reset-requests"] == "20s"


def test_anthropic_shape_answers_with_usage_and_its_headers(client: httpx.Client) -> None:
    response = client.post(MESSAGES, json={**ask("hi"), "system": "be brief"})
    assert response.status_code == 200
    body = response.json()
    assert body["content"] == [{"type": "text", "text": "echo: hi"}]
    # 3 for the message, 1 for "hi", 2 for "be brief"; max_tokens 10 of output
    assert body["usage"] == {"input_tokens": 6, "output_tokens": 10}
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "2"
    assert response.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")


def test_asked_to_stream_it_answers_in_each_providers_event_stream(client: httpx.Client) -> None:
    chat = client.post(CHAT, json={**ask(), "stream": True})
    assert chat.headers["content-type"].startswith("text/event-stream")
    assert chat.headers["x-ratelimit-remaining-requests"] == "2"
    data = [line[6:] for line in chat.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert '"content":"echo: hello there"' in data[1]
    assert stream_usage(chat.content) is None  # usage only when asked for
    with_usage = {**ask(), "stream": True, "stream_options": {"include_usage": True}}
    assert stream_usage(client.post(CHAT, json=with_usage).content) == 16
    messages = client.post(MESSAGES, json={**ask("hi"), "stream": True})
    names = [line[7:] for line in messages.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert stream_usage(messages.content) == 4 + 10


def test_requests_over_the_rpm_get_429_with_retry_after(
    client: httpx.Client, clock: VirtualClock, provider: StandIn
) -> None:
    assert [client.post(CHAT, json=ask()).status_code for _ in range(3)] == [200] * 3
    refused = client.post(CHAT, json=ask())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"
    assert refused.headers["retry-after-ms"] == "20000"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    clock.advance(20)
    assert client.post(CHAT, json=ask()).status_code == 200
    assert (provider.served, provider.refused) == (4, 1)
    assert client.get("/stats").json() == {"served": 4, "refused": 1, "tokens": 4 * 16}


def test_max_tokens_counts_against_the_tpm_until_answered(client: httpx.Client) -> None:
    # 6 + 900 charged, 6 + 16 (the answer) kept: 978 left, 18 short of the next 6 + 990
    assert client.post(MESSAGES, json=ask(max_tokens=900)).status_code == 200
    refused = client.post(MESSAGES, json=ask(max_tokens=990))
    assert refused.status_code == 429
    assert refused.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached; try again in 1.08s"},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{", "the body is not JSON"),
        ("[]", "'messages' must be an array"),
        ('{"messages": [], "max_tokens": 0}', "'max_tokens' must be an integer ≥ 1"),
        (
            '{"messages": [], "max_tokens": 5000}',
            "5000 tokens is more than the limit of 1000 per minute",
        ),
    ],
)
def test_bad_requests_get_400_in_the_providers_error_shape(
    client: httpx.Client, body: str, message: str
) -> None:
    response = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_tokens_are_counted_by_characters_and_messages() -> None:
    assert [count_tokens(t) for t in ("", "abc", "abcd", "abcde")] == [0, 1, 1, 2]
    blocks = {"messages": [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}]}
    assert prompt_tokens(blocks) == 3 + 2


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match=r"rpm = 0: expected a number > 0"):
        StandIn(rpm=0)
    with pytest.raises(ValueError, match=r"latency = -1: expected seconds ≥ 0"):
        StandIn(latency=-1)


def test_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "prioritize.llm.standin", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--rpm" in out.stdout
    assert "--tpm" in out.stdout
