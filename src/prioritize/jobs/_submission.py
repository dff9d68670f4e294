"""The body of ``POST /v1/jobs``: parsed, then checked field by field into a `Submission`.

Pure: no web framework and no broker, so every rule is tested without a
server. Every problem found is reported, not only the first, each as a
`FieldError` naming the field by its path in the body (``kwargs.when``,
``args[2].id``), so a client can fix its request in one round.

Python's JSON parser accepts ``NaN`` and ``Infinity`` and reads ``1e999``
as infinity. None of these is JSON another program can read back, so they
are refused here, with their path in the body, rather than later by the
serializer with a path into its own wrapping of the arguments.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import final

from ..core.levels import LevelSet
from ..errors import did_you_mean

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_SECONDS",
    "MAX_TEXT",
    "FieldError",
    "InvalidSubmission",
    "MalformedBody",
    "Submission",
    "check_arguments",
    "header_idempotency_key",
    "parse_json",
    "read_submission",
]

#: the fields a submission may have, in the order they are documented
FIELDS = ("task", "args", "kwargs", "level", "flow", "delay", "deadline", "idempotency_key")
#: longest task name, flow or idempotency key, in characters
MAX_TEXT = 255
#: deepest nesting of arrays and objects in the arguments
MAX_DEPTH = 64
#: longest delay or deadline, in seconds (3650 days): later is a mistake, not a schedule
MAX_SECONDS = 315_360_000
#: the header of draft-ietf-httpapi-idempotency-key-header
IDEMPOTENCY_HEADER = "Idempotency-Key"

_SF_STRING = re.compile(r'"((?:[^"\\]|\\["\\])*)"')
_PLAIN_KEY = re.compile(r"[\x21-\x7e]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@final
@dataclass(frozen=True, slots=True)
class FieldError:
    """One thing wrong with a request: the field (its path in the body) and why."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@final
@dataclass(frozen=True, slots=True)
class Submission:
    """A checked submission: what `JobQueue.enqueue` is called with."""

    task: str
    args: list[object]
    kwargs: dict[str, object]
    level: str | None = None
    flow: str | None = None
    delay: float | None = None
    deadline: float | None = None
    idempotency_key: str | None = None


class MalformedBody(ValueError):
    """The body is not JSON at all (HTTP 400): the message says where it broke."""


class InvalidSubmission(ValueError):
    """The body is JSON but not a valid submission (HTTP 422); ``errors`` names each field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


def parse_json(raw: bytes) -> object:
    """The JSON value of ``raw``; `MalformedBody` naming the line and column where it breaks."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(
            f"the body is not UTF-8: byte {exc.start} is {raw[exc.start]:#04x}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedBody("the body is not JSON this service reads: nested too deeply") from None


def read_submission(
    data: object, *, levels: LevelSet, tasks: Collection[str] | None, header_key: str | None
) -> Submission:
    """Check every field of a submission body; `InvalidSubmission` listing all that are wrong.

    ``tasks`` are the accepted task names, or None to accept any (the
    workers have the code). ``header_key`` is the ``Idempotency-Key``
    header's value, already read: a body key must then be the same.
    """
    if not isinstance(data, dict):
        raise InvalidSubmission(
            [FieldError("body", f"expected a JSON object with a 'task', got {_shown(data)}")]
        )
    errors = [
        FieldError(
            name, f"unknown field; {did_you_mean(name, FIELDS)}accepted: {', '.join(FIELDS)}"
        )
        for name in data
        if name not in FIELDS
    ]
    task = _task(data, tasks, errors)
    args = data.get("args", [])
    if not isinstance(args, list):
        errors.append(FieldError("args", f"expected an array of arguments, got {_shown(args)}"))
        args = []
    kwargs = data.get("kwargs", {})
    if not isinstance(kwargs, dict):
        message = f"expected an object of keyword arguments, got {_shown(kwargs)}"
        errors.append(FieldError("kwargs", message))
        kwargs = {}
    errors += _unwritable(args, "args") + _unwritable(kwargs, "kwargs")
    level = _optional_text(data, "level", errors, "a level name")
    if level is not None and level not in levels:
        hint = did_you_mean(level, levels.names)
        message = f"unknown level {level!r}; {hint}valid levels are {levels.names}"
        errors.append(FieldError("level", message))
    flow = _optional_text(data, "flow", errors, "a string naming the flow (tenant, user, ...)")
    key = _optional_text(data, "idempotency_key", errors, "a non-empty string")
    if key is not None and header_key is not None and key != header_key:
        message = (
            f"{key!r} differs from the {IDEMPOTENCY_HEADER} header ({header_key!r}); "
            "send the key once, or the same in both"
        )
        errors.append(FieldError("idempotency_key", message))
    delay, deadline = _seconds(data, "delay", errors), _seconds(data, "deadline", errors)
    if errors:
        raise InvalidSubmission(errors)
    assert task is not None  # an error was recorded otherwise
    return Submission(task, args, kwargs, level, flow, delay, deadline, key or header_key)


def header_idempotency_key(raw: str) -> str:
    """The key an ``Idempotency-Key`` header carries; `InvalidSubmission` if it carries none.

    The draft makes it a structured-field string (``"8e03-..."``, quoted);
    a bare token, as many clients send, is taken as it is.
    """
    value = raw.strip()
    quoted = _SF_STRING.fullmatch(value)
    if quoted is not None:
        value = re.sub(r"\\([\"\\])", r"\1", quoted.group(1))
    elif not _PLAIN_KEY.fullmatch(value):
        message = (
            f'{raw!r} is not a key: send a quoted string ("8e03978e-...") '
            "or visible ASCII characters without spaces"
        )
        raise InvalidSubmission([FieldError(IDEMPOTENCY_HEADER, message)])
    if not value or len(value) > MAX_TEXT:
        message = f"a key is 1 to {MAX_TEXT} characters, got {len(value)}"
        raise InvalidSubmission([FieldError(IDEMPOTENCY_HEADER, message)])
    return value


def check_arguments(
    name: str, function: Callable[..., object], args: list[object], kwargs: dict[str, object]
) -> list[FieldError]:
    """The arguments do not fit the registered task's signature: why, else nothing."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as exc:
        field = "args" if "positional" in str(exc) else "kwargs"
        return [FieldError(field, f"task {name}: {exc}")]
    return []


def _task(
    data: dict[str, object], tasks: Collection[str] | None, errors: list[FieldError]
) -> str | None:
    if "task" not in data:
        errors.append(FieldError("task", "required: the name of the task to run"))
        return None
    task = data["task"]
    if not isinstance(task, str) or not task or len(task) > MAX_TEXT:
        message = f"expected a task name of 1 to {MAX_TEXT} characters, got {_shown(task)}"
        errors.append(FieldError("task", message))
        return None
    if tasks is not None and task not in tasks:
        accepted = ", ".join(sorted(tasks))
        message = f"unknown task {task!r}; {did_you_mean(task, tasks)}accepted tasks: {accepted}"
        errors.append(FieldError("task", message))
        return None
    return task


def _optional_text(
    data: dict[str, object], name: str, errors: list[FieldError], expected: str
) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        message = f"expected {expected} of 1 to {MAX_TEXT} characters, got {_shown(value)}"
        errors.append(FieldError(name, message))
        return None
    return value


def _seconds(data: dict[str, object], name: str, errors: list[FieldError]) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value <= MAX_SECONDS:  # type: ignore[operator]  # NaN fails too
        message = (
            f"expected a number of seconds from 0 to {MAX_SECONDS} (3650 days), got {_shown(value)}"
        )
        errors.append(FieldError(name, message))
        return None
    return float(value)  # type: ignore[arg-type]


def _unwritable(value: object, root: str) -> list[FieldError]:
    """Numbers that are not finite, and nesting deeper than `MAX_DEPTH`, with their paths.

    Walked with a stack, not recursion: a body may nest as deep as the
    parser allows, which is deeper than this request's own stack can go.
    """
    errors: list[FieldError] = []
    stack: list[tuple[object, str, int]] = [(value, root, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            message = f"{_shown(item)} is not a finite number, which is all JSON can carry"
            errors.append(FieldError(path, message))
        elif isinstance(item, list | dict) and depth >= MAX_DEPTH:
            errors.append(FieldError(path, f"nested deeper than {MAX_DEPTH} arrays and objects"))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            stack.extend((v, _member(path, k), depth + 1) for k, v in reversed(item.items()))
    return errors


def _member(path: str, key: str) -> str:
    """``kwargs.when``, or ``kwargs["odd key"]`` for a key that is not a name."""
    return f"{path}.{key}" if _NAME.fullmatch(key) else f"{path}[{json.dumps(key)}]"


def _shown(value: object) -> str:
    """A JSON value as a message names it: numbers as written, the rest by their kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return "NaN"
        if isinstance(value, float) and math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        if not value:
            return "an empty string"
        return f"a string of {len(value)} characters" if len(value) > MAX_TEXT else "a string"
    return "an array" if isinstance(value, list) else "an object"
