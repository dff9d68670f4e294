"""QueueState on its own: the paths the adapters reach only when their timer is late."""

from __future__ import annotations

from prioritize import GatePolicy, LevelPolicy, Reason, TicketState
from prioritize.queues._state import QueueState


def test_a_late_take_sheds_overdue_items_and_returns_the_next_one() -> None:
    q = QueueState(GatePolicy(capacity=1, levels={"high": LevelPolicy(max_wait=5)}))
    q.start(0.0)
    q.put("stale-1", "high", None, 0.0)
    q.put("stale-2", "high", None, 1.0)
    q.put("fresh", "low", None, 2.0)
    ticket = q.take(10.0)  # nobody called expire() at 5 and 6
    assert ticket is not None
    assert ticket.data == "fresh"
    assert [(t.data, t.reason) for t in q.shed] == [
        ("stale-1", Reason.TIMEOUT),
        ("stale-2", Reason.TIMEOUT),
    ]
    assert q.unfinished == 1
    assert ticket.state is TicketState.RELEASED  # pulled: it holds no seat
    assert q.scheduler.in_use == 1  # the plug still holds the one seat


def test_a_late_take_with_only_overdue_items_returns_none_and_keeps_the_seat() -> None:
    q = QueueState(GatePolicy(capacity=1, levels={"high": LevelPolicy(max_wait=5)}))
    q.start(0.0)
    q.put("stale", "high", None, 0.0)
    assert q.take(10.0) is None
    assert [t.data for t in q.shed] == ["stale"]
    assert q.unfinished == 0
    assert q.holder is not None
    assert q.holder.state is TicketState.GRANTED  # plugged again: the next put queues
    q.put("next", "high", None, 11.0)
    assert q.qsize() == 1


def test_a_late_claim_in_the_serve_layout_sheds_overdue_items() -> None:
    q = QueueState(GatePolicy(capacity=2, levels={"high": LevelPolicy(max_wait=5)}))
    q.start(0.0)
    q.put("stale", "high", None, 0.0)
    q.put("fresh", "low", None, 1.0)
    q.start_serving(1, 2.0)
    ticket = q.claim(10.0)
    assert ticket is not None
    assert ticket.data == "fresh"
    assert [t.data for t in q.shed] == ["stale"]


def test_the_plug_level_is_named_apart_from_the_policys_levels() -> None:
    from prioritize import LevelSet

    levels = LevelSet(["plug", "plug-0", "work"])
    q = QueueState(GatePolicy(capacity=1, level_set=levels))
    q.start(0.0)
    q.put("a", "plug-0", None, 0.0)
    q.start_serving(1, 0.0)
    assert q.scheduler.levels.names == ["plug-1", "plug", "plug-0", "work"]
    claimed = q.claim(0.0)
    assert claimed is not None
    assert claimed.data == "a"
    assert claimed.level.name == "plug-0"
    assert repr(q) == "<QueueState serving, 0 queued, 1 unfinished>"
