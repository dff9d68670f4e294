"""How a job's arguments and result become bytes, and back.

JSON by default: readable in the store, the same in every language, and
it refuses what it cannot represent faithfully instead of pickling it.
A value that does not fit fails *at enqueue*, in the caller's code, with
the path to it (``args[1]['when']``), not later in a worker.

Any object with ``dumps(value) -> bytes`` and ``loads(bytes) -> value``
can take its place (msgpack, pickle for trusted stores only, ...).
"""

from __future__ import annotations

import json
import math
from typing import Protocol, final

from .model import SerializationError

__all__ = ["JsonSerializer", "Serializer"]


class Serializer(Protocol):
    """Turns arguments and results into bytes for the broker, and back."""

    def dumps(self, value: object) -> bytes: ...

    def loads(self, data: bytes) -> object: ...


@final
class JsonSerializer:
    """JSON: dicts with string keys, lists, tuples (read as lists), str, int, float, bool, None.

    Floats must be finite; NaN and infinity are not JSON.
    """

    def dumps(self, value: object) -> bytes:
        _check(value, "")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> object:
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationError(f"stored data is not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return "JsonSerializer()"


_SCALARS = (str, int, bool, type(None))


def _check(value: object, path: str) -> None:
    """Raise SerializationError naming the first value JSON cannot carry faithfully."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{path or 'value'} = {value!r}: JSON has no NaN or infinity")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path or 'value'} has key {key!r} ({type(key).__name__}): "
                    "JSON object keys must be strings"
                )
            _check(item, f"{path}[{key!r}]")
        return
    raise SerializationError(
        f"{path or 'value'} = {value!r} is a {type(value).__name__}, which JSON cannot carry: "
        "use str, int, float, bool, None, lists and dicts with string keys, "
        "or give the JobQueue another serializer"
    )
