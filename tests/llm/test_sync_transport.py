"""SyncBudgetTransport under the official sync openai and anthropic clients, against the
stand-in provider served by a real uvicorn: levels, order, reconciled usage (JSON and event
streams), the provider's headers and 429s, shedding, and misuse."""

from __future__ import annotations

import math
from collections.abc import Iterator

import anthropic
import httpx
import httpx2
import openai
import pytest

from prioritize import Rejected, UnknownLevelError, level_scope
from prioritize.core import DEFAULT_LEVELS, Reason
from prioritize.llm import Budget, BudgetLevelPolicy, BudgetPolicy, SyncBudget
from prioritize.llm.standin import StandIn, serve
from prioritize.llm.tokens import estimate_tokens
from prioritize.llm.transport import BudgetTransport, SyncBudgetTransport
from prioritize.testing import VirtualClock
from tests.process.children import eventually, in_thread

FOREVER = BudgetLevelPolicy(max_wait=math.inf)
ASK = [{"role": "user", "content": "hello there"}]  # 6 tokens as the stand-in counts


@pytest.fixture
def provider() -> StandIn:
    return StandIn(rpm=600, tpm=100_000)


@pytest.fixture
def url(provider: StandIn) -> Iterator[str]:
    with serve(provider) as base:
        yield base


def budget(clock: VirtualClock | None = None, **knobs: object) -> SyncBudget:
    levels = knobs.pop("levels", {"critical": FOREVER, "low": FOREVER})
    policy = BudgetPolicy(levels=levels, **knobs)  # type: ignore[arg-type]
    return SyncBudget(policy) if clock is None else SyncBudget(policy, clock=clock)


def openai_client(url: str, b: SyncBudget, **kw: object) -> openai.OpenAI:
    http = httpx.Client(transport=SyncBudgetTransport(b, **kw))  # type: ignore[arg-type]
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", http_client=http, max_retries=0)


def anthropic_client(url: str, b: SyncBudget, **kw: object) -> anthropic.Anthropic:
    # anthropic 2 is built on httpx2: the transport sends with httpx2's own
    transport = SyncBudgetTransport(b, httpx2.HTTPTransport(), **kw)  # type: ignore[arg-type]
    http = httpx2.Client(transport=transport)  # type: ignore[arg-type]
    return anthropic.Anthropic(base_url=url, api_key="x", http_client=http, max_retries=0)


def test_openai_calls_are_charged_their_reported_usage(url: str, provider: StandIn) -> None:
    b = budget(rpm=600, tpm=100_000)
    with openai_client(url, b) as client:
        used = []
        for _ in range(3):
            answer = client.chat.completions.create(model="m", messages=ASK, max_tokens=50)
            assert answer.usage is not None
            used.append(answer.usage.total_tokens)
    assert used == [6 + 16] * 3
    spent = b.stats().levels[2].spent  # no level given: the default, normal
    assert spent == {"requests": 3.0, "tokens": pytest.approx(3 * 22)}
    assert provider.tokens == 3 * 22


def test_anthropic_calls_are_charged_their_reported_usage(url: str) -> None:
    b = budget(tpm=100_000)
    with anthropic_client(url, b, level="low") as client:
        answer = client.messages.create(model="m", max_tokens=500, messages=ASK)
    assert answer.usage.input_tokens + answer.usage.output_tokens == 22
    assert b.stats().levels[3].spent["tokens"] == pytest.approx(22)  # 506 were reserved


def test_the_level_comes_from_the_header_extension_then_the_current_level(
    url: str, provider: StandIn
) -> None:
    b = budget(rpm=600)
    with openai_client(url, b) as client:
        client.chat.completions.create(
            model="m", messages=ASK, max_tokens=5, extra_headers={"x-priority": "critical"}
        )
        assert "x-priority" not in provider.last_headers  # never sent to the provider
        with level_scope(DEFAULT_LEVELS["low"]):
            client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
    with httpx.Client(transport=SyncBudgetTransport(b), base_url=url) as http:
        body = {"messages": ASK, "max_tokens": 5}
        http.post("/v1/chat/completions", json=body, extensions={"priority": "high"})
    granted = {lv.level: lv.granted for lv in b.stats().levels if lv.granted}
    assert granted == {"critical": 1, "high": 1, "low": 1}


def test_a_critical_call_goes_before_a_queued_low_batch(url: str) -> None:
    clock = VirtualClock()
    b = budget(clock, rpm=60, burst=1)  # one call at once, then one a second of the clock
    done: list[str] = []

    with openai_client(url, b) as client:

        def call(level: str) -> None:
            headers = {"x-priority": level}
            client.chat.completions.create(
                model="m", messages=ASK, max_tokens=5, extra_headers=headers
            )
            done.append(level)

        call("low")  # spends the burst
        threads = []
        for n, level in enumerate(["low"] * 5 + ["critical"], 1):
            threads.append(in_thread(lambda level=level: call(level))[0])
            eventually(lambda n=n: b.scheduler.waiting == n, f"{level} waits")
        for n in range(2, 8):
            clock.advance(1.0)
            b.advance()
            eventually(lambda n=n: len(done) == n, "the next call is answered")
        for thread in threads:
            thread.join()
    assert done == ["low", "critical", "low", "low", "low", "low", "low"]


def test_a_429_backs_the_budget_off_and_the_clients_retry_waits_in_it() -> None:
    provider = StandIn(rpm=30, tpm=100_000)
    b = budget(rpm=600)  # it does not know someone else spent the provider's minute
    with serve(provider) as url:
        with httpx.Client(base_url=url) as other:
            for _ in range(30):  # another service drains the provider
                other.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 5})
        with openai_client(url, b).with_options(max_retries=2) as client:
            answer = client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
    assert answer.choices[0].message.content == "echo: hello there"
    assert provider.refused == 1  # one 429; the client's retry waited in the budget's pause
    assert b.stats().factor < 1.0


def test_the_providers_remaining_headers_lower_the_budget(url: str) -> None:
    b = budget(rpm=6000, tpm=1_000_000)
    with anthropic_client(url, b) as client:
        client.messages.create(model="m", max_tokens=5, messages=ASK)
    available = b.stats().available
    # our own count would be 5999 and 999989; the provider's headers said 599 and 99989
    assert available["requests"] < 1000
    assert available["tokens"] < 200_000


def test_a_shed_call_raises_rejected_from_the_client(url: str) -> None:
    b = budget(rpm=60, burst=1, levels={"bulk": BudgetLevelPolicy(max_wait=0)})
    with openai_client(url, b, level="bulk") as client:
        client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
        with pytest.raises(Rejected) as shed:
            client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
    # the anthropic client wraps whatever its transport raises as a connection error
    with (
        anthropic_client(url, b, level="bulk") as client,
        pytest.raises(anthropic.APIConnectionError) as wrapped,
    ):
        client.messages.create(model="m", max_tokens=5, messages=ASK)
    for rejected in (shed.value, wrapped.value.__cause__):
        assert isinstance(rejected, Rejected)
        assert (rejected.level, rejected.reason) == ("bulk", Reason.LIMIT)
        assert 0 < rejected.retry_after <= 1.0  # the next request slot, at 60 rpm


def test_event_streams_are_reconciled_when_they_close(url: str) -> None:
    b = budget(rpm=600, tpm=100_000)
    with openai_client(url, b, level="critical") as client:
        stream = client.chat.completions.create(
            model="m",
            messages=ASK,
            max_tokens=500,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 22
    with (
        anthropic_client(url, b, level="low") as client,
        client.messages.stream(model="m", max_tokens=500, messages=ASK) as events,
    ):
        text = "".join(events.text_stream)
    assert text == "echo: hello there"
    critical, low = b.stats().levels[0], b.stats().levels[3]
    assert critical.spent == {"requests": 1.0, "tokens": pytest.approx(22)}  # 506 reserved
    assert low.spent == {"requests": 1.0, "tokens": pytest.approx(22)}
    assert b.stats().in_flight == 0


def test_a_stream_left_unfinished_is_settled_when_the_client_closes_it(url: str) -> None:
    b = budget(rpm=600, tpm=100_000)
    with openai_client(url, b) as client:
        stream = client.chat.completions.create(
            model="m", messages=ASK, max_tokens=500, stream=True
        )
        with stream:
            next(iter(stream))
            assert b.stats().in_flight == 1  # held while the stream is open
    assert b.stats().in_flight == 0
    assert b.stats().levels[2].spent["requests"] == 1.0


def test_a_call_that_fails_before_an_answer_keeps_its_estimate() -> None:
    b = budget(rpm=600, tpm=100_000)
    with serve(StandIn()) as url:
        pass  # the server is gone: its port refuses connections
    body = {"model": "m", "messages": ASK, "max_tokens": 50}
    with openai_client(url, b) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**body)  # type: ignore[call-overload]
    estimate = estimate_tokens(httpx.Request("POST", url, json=body).content)
    assert b.stats().levels[2].spent == {"requests": 1.0, "tokens": float(estimate)}
    assert b.stats().in_flight == 0


def test_misuse_is_named(url: str) -> None:
    sync_budget = budget(rpm=60)
    async_budget = Budget(BudgetPolicy(rpm=60))
    with pytest.raises(TypeError, match=r"SyncBudgetTransport\(\) takes a SyncBudget, not str$"):
        SyncBudgetTransport("openai")  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"SyncBudgetTransport\(\) takes a SyncBudget, not Budget "
        r"\(a Budget goes with BudgetTransport\)",
    ):
        SyncBudgetTransport(async_budget)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"BudgetTransport\(\) takes a Budget, not SyncBudget "
        r"\(a SyncBudget goes with SyncBudgetTransport\)",
    ):
        BudgetTransport(sync_budget)  # type: ignore[arg-type]
    with pytest.raises(UnknownLevelError, match=r"unknown level 'urgent'; valid levels are"):
        SyncBudgetTransport(sync_budget, level="urgent")
    with pytest.raises(TypeError, match=r"estimate = 5: expected a function of the request"):
        SyncBudgetTransport(sync_budget, estimate=5)  # type: ignore[arg-type]
    with (
        openai_client(url, sync_budget) as client,
        pytest.raises(UnknownLevelError, match=r"unknown level 'urgent'; valid levels are"),
    ):
        client.chat.completions.create(
            model="m", messages=ASK, max_tokens=5, extra_headers={"x-priority": "urgent"}
        )
    assert sync_budget.stats().in_flight == 0


def test_one_transport_serves_many_threads(url: str, provider: StandIn) -> None:
    b = budget(rpm=6000, tpm=1_000_000, burst=0.1)  # ten calls at once, then one each 10 ms
    with openai_client(url, b) as client:

        def calls() -> int:
            total = 0
            for _ in range(5):
                answer = client.chat.completions.create(model="m", messages=ASK, max_tokens=5)
                assert answer.usage is not None
                total += answer.usage.total_tokens
            return total

        workers = [in_thread(calls) for _ in range(6)]
        for thread, _ in workers:
            thread.join()
    assert [outcome for _, outcome in workers] == [[5 * 11]] * 6
    stats = b.stats()
    assert (stats.levels[2].granted, stats.in_flight, stats.waiting) == (30, 0, 0)
    assert provider.served == 30
