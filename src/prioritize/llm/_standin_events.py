"""The stand-in provider's answers as server-sent events, for a request with ``"stream": true``.

Each provider streams in its own shape, and each reports usage in its own
place, which is what a budget transport reads when the stream closes:

* OpenAI: ``chat.completion.chunk`` events, then, only if the request asked
  with ``stream_options = {"include_usage": true}``, a last chunk with no
  choices and the ``usage``, then ``data: [DONE]``;
* Anthropic: ``message_start`` (with the input tokens), the text block's
  events, ``message_delta`` (with the output tokens), ``message_stop``.

The whole answer is known before the first event (the stand-in echoes), so
it is built at once from the answer the stand-in would have sent as JSON.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["events"]


def events(kind: str, answer: dict[str, Any], include_usage: bool) -> bytes:
    """The event stream of ``answer`` (the JSON answer of an ``"openai"`` or Anthropic call)."""
    if kind == "openai":
        return _openai(answer, include_usage)
    return _anthropic(answer)


def _event(data: object, name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name is not None else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _openai(answer: dict[str, Any], include_usage: bool) -> bytes:
    common = {
        "id": answer["id"],
        "object": "chat.completion.chunk",
        "created": answer["created"],
        "model": answer["model"],
    }
    text = answer["choices"][0]["message"]["content"]

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _event({**common, "choices": [choice]})

    out = chunk({"role": "assistant", "content": ""}, None)
    out += chunk({"content": text}, None) + chunk({}, "stop")
    if include_usage:
        out += _event({**common, "choices": [], "usage": answer["usage"]})
    return out + b"data: [DONE]\n\n"


def _anthropic(answer: dict[str, Any]) -> bytes:
    usage = answer["usage"]
    start = {**answer, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
    text = answer["content"][0]["text"]
    return b"".join(
        [
            _event({"type": "message_start", "message": start}, "message_start"),
            _event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            _event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
                "content_block_delta",
            ),
            _event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
                "message_delta",
            ),
            _event({"type": "message_stop"}, "message_stop"),
        ]
    )
