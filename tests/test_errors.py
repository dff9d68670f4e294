"""The error types: messages, builtin bases, and Rejected built from a shed ticket."""

from __future__ import annotations

import pickle

import pytest

from prioritize import (
    ConfigError,
    GatePolicy,
    PrioritizeError,
    Reason,
    Rejected,
    Scheduler,
    TicketStateError,
)
from prioritize.errors import Problem


def test_rejected_carries_level_reason_and_retry_after_of_the_shed_ticket() -> None:
    s = Scheduler(GatePolicy(capacity=1, queue=0))
    s.submit(s.ticket("normal"), 0.0)
    shed = s.ticket("bulk")
    s.submit(shed, 0.0)
    error = Rejected.from_ticket(shed)
    assert (error.level, error.reason, error.retry_after) == ("bulk", Reason.QUEUE_FULL, 1.0)
    assert str(error) == "bulk request shed (queue_full); retry after 1s"
    assert isinstance(error, PrioritizeError)


def test_rejected_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(Rejected("high", Reason.TIMEOUT, 2.5)))
    assert (error.level, error.reason, error.retry_after) == ("high", Reason.TIMEOUT, 2.5)
    assert repr(error) == "Rejected('high', <Reason.TIMEOUT: 'timeout'>, 2.5)"


def test_a_ticket_that_was_not_shed_cannot_be_rejected() -> None:
    s = Scheduler(GatePolicy(capacity=1))
    granted = s.ticket("normal")
    s.submit(granted, 0.0)
    with pytest.raises(TicketStateError, match="was not shed; only a shed ticket is rejected"):
        Rejected.from_ticket(granted)


def test_config_error_is_a_value_error_listing_every_problem() -> None:
    error = ConfigError([Problem("a", "x"), Problem("b", "y")])
    assert isinstance(error, ValueError)
    assert str(error) == "2 problems in the policy:\n  - a: x\n  - b: y"
