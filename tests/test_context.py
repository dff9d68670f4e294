"""The current level follows the work: per task, restored after, and checked."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from prioritize import DEFAULT_LEVELS, current_level, level_scope
from prioritize.context import enter_level, exit_level

HIGH = DEFAULT_LEVELS["high"]
BULK = DEFAULT_LEVELS["bulk"]


def test_outside_any_scope_there_is_no_level() -> None:
    assert current_level() is None


def test_a_scope_sets_the_level_and_restores_the_previous_one_even_on_error() -> None:
    inside: list[object] = []

    def fail_at_bulk() -> None:
        with level_scope(BULK):
            inside.append(current_level())
            raise RuntimeError("boom")

    with level_scope(HIGH):
        assert current_level() is HIGH
        with pytest.raises(RuntimeError):
            fail_at_bulk()
        assert inside == [BULK]
        assert current_level() is HIGH
    assert current_level() is None


def test_concurrent_tasks_each_see_their_own_level() -> None:
    seen: dict[str, object] = {}

    async def work(name: str, level: object) -> None:
        with level_scope(level):  # type: ignore[arg-type]
            await asyncio.sleep(0)  # the other task runs in between
            seen[name] = current_level()

    async def main() -> None:
        await asyncio.gather(work("a", HIGH), work("b", BULK))

    asyncio.run(main())
    assert seen == {"a": HIGH, "b": BULK}


def test_a_thread_sees_the_level_of_the_context_it_is_given() -> None:
    seen: list[object] = []
    with level_scope(HIGH):
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(lambda: seen.append(current_level()),))
    thread.start()
    thread.join()
    assert seen == [HIGH]


def test_a_level_name_is_refused_with_what_is_accepted() -> None:
    with pytest.raises(TypeError, match=r"takes a Level .* not 'high'"), level_scope("high"):  # type: ignore[arg-type]
        pass


def test_enter_and_exit_level_pair_up_like_a_scope() -> None:
    token = enter_level(HIGH)
    inner = enter_level(BULK)
    assert current_level() is BULK
    exit_level(inner)
    assert current_level() is HIGH
    exit_level(token)
    assert current_level() is None
