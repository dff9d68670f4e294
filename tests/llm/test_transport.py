"""BudgetTransport under the official openai and anthropic clients, against the stand-in
provider served by a real uvicorn: levels, reconciled usage, the provider's headers and 429s."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import anthropic
import httpx
import httpx2
import openai
import pytest

from prioritize import Rejected, level_scope
from prioritize.core import DEFAULT_LEVELS, Reason
from prioritize.llm import Budget, BudgetLevelPolicy, BudgetPolicy
from prioritize.llm.standin import StandIn, serve
from prioritize.llm.tokens import estimate_tokens, stream_usage
from prioritize.llm.transport import BudgetTransport, remaining_of

FOREVER = BudgetLevelPolicy(max_wait=math.inf)
ASK = [{"role": "user", "content": "hello there"}]  # 6 tokens as the stand-in counts


@pytest.fixture
def provider() -> StandIn:
    return StandIn(rpm=600, tpm=100_000)


@pytest.fixture
def url(provider: StandIn) -> Iterator[str]:
    with serve(provider) as base:
        yield base


def budget(**knobs: object) -> Budget:
    levels = knobs.pop("levels", {"critical": FOREVER, "low": FOREVER})
    return Budget(BudgetPolicy(levels=levels, **knobs))  # type: ignore[arg-type]


def openai_client(url: str, b: Budget, **kw: object) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=BudgetTransport(b, **kw))  # type: ignore[arg-type]
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", http_client=http, max_retries=0)


def test_openai_calls_are_charged_their_reported_usage(url: str, provider: StandIn) -> None:
    b = budget(rpm=600, tpm=100_000)

    async def main() -> list[int]:
        client = openai_client(url, b)
        out = []
        for _ in range(3):
            answer = await client.chat.completions.create(model="m", messages=ASK, max_tokens=50)
            assert answer.usage is not None
            out.append(answer.usage.total_tokens)
        await client.close()
        return out

    assert asyncio.run(main()) == [6 + 16] * 3
    spent = b.stats().levels[2].spent  # no level given: the default, normal
    assert spent == {"requests": 3.0, "tokens": pytest.approx(3 * 22)}
    assert provider.tokens == 3 * 22


def test_anthropic_calls_are_charged_their_reported_usage(url: str) -> None:
    b = budget(tpm=100_000)

    async def main() -> int:
        # anthropic 2 is built on httpx2: the transport sends with httpx2's own
        transport = BudgetTransport(b, httpx2.AsyncHTTPTransport(), level="low")
        http = httpx2.AsyncClient(transport=transport)  # type: ignore[arg-type]
        client = anthropic.AsyncAnthropic(base_url=url, api_key="x", http_client=http)
        answer = await client.messages.create(model="m", max_tokens=500, messages=ASK)
        await client.close()
        return answer.usage.input_tokens + answer.usage.output_tokens

    assert asyncio.run(main()) == 22
    assert b.stats().levels[3].spent["tokens"] == pytest.approx(22)


def test_the_level_comes_from_the_header_then_the_current_level(
    url: str, provider: StandIn
) -> None:
    b = budget(rpm=600)

    async def main() -> None:
        client = openai_client(url, b)
        await client.chat.completions.create(
            model="m", messages=ASK, max_tokens=5, extra_headers={"x-priority": "critical"}
        )
        assert "x-priority" not in provider.last_headers  # never sent to the provider
        with level_scope(DEFAULT_LEVELS["low"]):
            await client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
        await client.close()

    asyncio.run(main())
    granted = {lv.level: lv.granted for lv in b.stats().levels if lv.granted}
    assert granted == {"critical": 1, "low": 1}


def test_a_critical_call_goes_before_a_queued_low_batch(url: str) -> None:
    b = budget(rpm=120, burst=1)  # 2 calls at once, then one every 0.5 s

    async def main() -> list[str]:
        client = openai_client(url, b)
        done: list[str] = []

        async def call(level: str) -> None:
            headers = {"x-priority": level}
            await client.chat.completions.create(
                model="m", messages=ASK, max_tokens=5, extra_headers=headers
            )
            done.append(level)

        lows = [asyncio.ensure_future(call("low")) for _ in range(8)]
        while b.scheduler.waiting < 6:  # the batch is queued in the budget
            await asyncio.sleep(0.01)
        await call("critical")
        await asyncio.gather(*lows)
        await client.close()
        return done

    done = asyncio.run(main())
    # the two sent at once, at most one slot granted while the critical call was being made;
    # in FIFO order it would come after all eight
    assert done.index("critical") <= 3


def test_a_429_backs_the_budget_off_and_the_clients_retry_waits_in_it() -> None:
    provider = StandIn(rpm=30, tpm=100_000)
    b = budget(rpm=600)  # it does not know someone else spent the provider's minute

    async def main(url: str) -> str:
        async with httpx.AsyncClient(base_url=url) as other:
            for _ in range(30):  # another service drains the provider
                await other.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 5})
        client = openai_client(url, b).with_options(max_retries=2)
        answer = await client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
        await client.close()
        return str(answer.choices[0].message.content)

    with serve(provider) as url:
        assert asyncio.run(main(url)) == "echo: hello there"
    assert provider.refused == 1  # one 429; the client's retry waited in the budget's pause
    assert b.stats().factor < 1.0


def test_the_providers_remaining_headers_lower_the_budget(url: str) -> None:
    b = budget(rpm=6000, tpm=1_000_000)

    async def main() -> None:
        client = openai_client(url, b)
        await client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
        await client.close()

    asyncio.run(main())
    available = b.stats().available
    # our own count would be 5999 and 999989; the provider's headers said 599 and 99989
    assert available["requests"] < 1000
    assert available["tokens"] < 200_000


def test_a_shed_call_raises_rejected_from_the_client(url: str) -> None:
    b = budget(rpm=60, burst=1, levels={"bulk": BudgetLevelPolicy(max_wait=0)})

    async def main() -> Rejected:
        client = openai_client(url, b, level="bulk")
        await client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
        with pytest.raises(Rejected) as info:
            await client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
        await client.close()
        return info.value

    rejected = asyncio.run(main())
    assert (rejected.level, rejected.reason) == ("bulk", Reason.LIMIT)
    assert 0 < rejected.retry_after <= 1.0  # the next request slot, at 60 rpm


def test_event_streams_are_reconciled_when_they_close(url: str) -> None:
    b = budget(rpm=600, tpm=100_000)

    async def main() -> str:
        client = openai_client(url, b, level="critical")
        stream = await client.chat.completions.create(
            model="m",
            messages=ASK,
            max_tokens=500,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            assert [c.usage.total_tokens for c in [c async for c in stream] if c.usage] == [22]
        await client.close()
        transport = BudgetTransport(b, httpx2.AsyncHTTPTransport(), level="low")
        http = httpx2.AsyncClient(transport=transport)  # type: ignore[arg-type]
        messages = anthropic.AsyncAnthropic(base_url=url, api_key="x", http_client=http)
        async with messages.messages.stream(model="m", max_tokens=500, messages=ASK) as events:
            text = "".join([t async for t in events.text_stream])
        await messages.close()
        return text

    assert asyncio.run(main()) == "echo: hello there"
    critical, low = b.stats().levels[0], b.stats().levels[3]
    assert critical.spent == {"requests": 1.0, "tokens": pytest.approx(22)}  # 506 reserved
    assert low.spent == {"requests": 1.0, "tokens": pytest.approx(22)}
    assert b.stats().in_flight == 0


def test_estimates_count_the_prompt_and_max_tokens() -> None:
    body = b'{"messages": [{"role": "user", "content": "abcdefgh"}], "max_tokens": 100}'
    assert estimate_tokens(body) == 3 + 2 + 100
    assert estimate_tokens(b'{"max_completion_tokens": 7, "messages": []}') == 7
    assert estimate_tokens(b'{"messages": []}') == 1024  # no limit given: assume 1024
    assert estimate_tokens(b"not json") == 0


def test_usage_is_read_from_both_providers_event_streams() -> None:
    openai_stream = (
        b'data: {"choices": []}\n\ndata: {"usage": {"total_tokens": 42}}\n\ndata: [DONE]\n'
    )
    anthropic_stream = (
        b'event: message_start\ndata: {"type": "message_start", "message": '
        b'{"usage": {"input_tokens": 10, "output_tokens": 1}}}\n\n'
        b'event: message_delta\ndata: {"type": "message_delta", "usage": {"output_tokens": 30}}\n'
    )
    assert stream_usage(openai_stream) == 42
    assert stream_usage(anthropic_stream) == 10 + 30  # output counts are cumulative
    assert stream_usage(b"data: {}\n") is None


def test_remaining_headers_of_both_providers_are_read() -> None:
    headers = httpx.Headers(
        {"x-ratelimit-remaining-tokens": "900", "anthropic-ratelimit-requests-remaining": "5"}
    )
    assert remaining_of(headers, ("requests", "tokens")) == {"requests": 5.0, "tokens": 900.0}
    assert remaining_of(httpx.Headers({"x-ratelimit-remaining-tokens": "soon"}), ("tokens",)) == {}


def test_a_transport_needs_a_budget() -> None:
    with pytest.raises(TypeError, match=r"BudgetTransport\(\) takes a Budget, not str"):
        BudgetTransport("openai")  # type: ignore[arg-type]
