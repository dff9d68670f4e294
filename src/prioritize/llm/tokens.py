"""Counting tokens before a call (the estimate) and reading them after it (the usage).

An estimate must be cheap and never low by much, since the budget is
charged with it until the provider's ``usage`` says what the call cost:
the prompt's characters over four (English text runs about four
characters a token; the stand-in provider counts the same way), a few
tokens per message, plus the most the answer may use (``max_tokens`` /
``max_completion_tokens``), which is what providers themselves count
against a tokens-per-minute limit when a request arrives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

__all__ = [
    "count_tokens",
    "estimate_tokens",
    "prompt_tokens",
    "stream_usage",
    "text_of",
    "usage_tokens",
]

_PER_MESSAGE = 3
#: what an answer is assumed to take when a request does not say (OpenAI's may not)
DEFAULT_MAX_TOKENS = 1024


def count_tokens(text: str) -> int:
    """Tokens of a text: one per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def prompt_tokens(body: Mapping[str, object]) -> int:
    """The prompt's tokens: each message's text (a string or text blocks) and ``system``."""
    total = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else ""
        total += _PER_MESSAGE + count_tokens(text_of(content))
    return total + count_tokens(text_of(body.get("system", "")))


def estimate_tokens(content: bytes, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> int:
    """A request body's estimate: its prompt plus the most its answer may take.

    0 for a body that is not a JSON object (not a generation call).
    """
    try:
        body = json.loads(content) if content else None
    except ValueError:
        return 0
    if not isinstance(body, dict):
        return 0
    most = body.get("max_completion_tokens", body.get("max_tokens", default_max_tokens))
    if not isinstance(most, int) or isinstance(most, bool) or most < 0:
        most = default_max_tokens
    return prompt_tokens(body) + most


def usage_tokens(payload: object) -> int | None:
    """The tokens an answer reports: OpenAI's ``usage.total_tokens`` (or prompt + completion),
    Anthropic's ``usage.input_tokens + output_tokens``; None if it reports none."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if _is_count(total):
        return total
    parts = [
        usage.get(key)
        for key in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    ]
    counted = [p for p in parts if _is_count(p)]
    return sum(counted) if counted else None  # type: ignore[arg-type]


def stream_usage(events: bytes) -> int | None:
    """The tokens reported in a server-sent event stream, or None.

    OpenAI sends ``usage`` in its last chunk (with ``stream_options =
    {"include_usage": true}``); Anthropic sends the input tokens in
    ``message_start`` and the output tokens so far in each ``message_delta``.
    """
    total: int | None = None
    seen_input = seen_output = 0
    for line in events.splitlines():
        if not line.startswith(b"data:"):
            continue
        try:
            event = json.loads(line[5:])
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        message = event.get("message")
        if event.get("type") == "message_start" and isinstance(message, dict):
            usage = message.get("usage")
            found = usage.get("input_tokens") if isinstance(usage, dict) else None
            seen_input = found if _is_count(found) else 0  # type: ignore[assignment]
        elif event.get("type") == "message_delta":
            usage = event.get("usage")
            output = usage.get("output_tokens") if isinstance(usage, dict) else None
            seen_output = output if _is_count(output) else seen_output  # type: ignore[assignment]
        elif (found := usage_tokens(event)) is not None:
            total = found
    if total is None and (seen_input or seen_output):
        total = seen_input + seen_output
    return total


def text_of(content: object) -> str:
    """The text of a message's content: a string, or the text of its blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
