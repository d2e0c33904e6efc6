"""Field checks the format parsers share: a prompt, a response, a chat message, a required key.

Each raises `DataError` naming the record's origin, the field, the problem and the fix.
"""

from __future__ import annotations

from typing import Any, Mapping

from .schema import DataError, Message

_ROLES = ("system", "user", "assistant")


def json_type(value: Any) -> str:
    """The JSON name of a value's type ("object", "array", ...), for error messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def require(record: Mapping, key: str, origin: str, fix: str) -> Any:
    """``record[key]``; missing or null raises ``missing_field`` with `fix`."""
    if key not in record or record[key] is None:
        raise DataError(origin, key, "missing", fix, "missing_field")
    return record[key]


def parse_message(value: Any, origin: str, fname: str) -> dict[str, str]:
    """One chat message ``{"role", "content"}``, checked and copied to a plain dict."""
    if not isinstance(value, Mapping):
        raise DataError(origin, fname, f"message is a {json_type(value)}", 'give each message as '
                        '{"role": "user" | "assistant" | "system", "content": "..."}', "bad_message")
    role, content = value.get("role"), value.get("content")
    if role not in _ROLES:
        raise DataError(origin, f"{fname}.role", f"role {role!r} is not one of {', '.join(_ROLES)}",
                        "use role system, user or assistant", "bad_message")
    if not isinstance(content, str):
        raise DataError(origin, f"{fname}.content", f"content is a {json_type(content)}",
                        "give the message content as a string", "bad_message")
    return {"role": role, "content": content}


def parse_messages(value: Any, origin: str, fname: str) -> list[dict[str, str]]:
    """A list of chat messages, each checked by `parse_message`."""
    return [parse_message(m, origin, f"{fname}[{i}]") for i, m in enumerate(value)]


def parse_prompt(value: Any, origin: str, fname: str = "prompt") -> tuple[Message, ...]:
    """A prompt: a string (one user message) or a list of chat messages not ending in assistant."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(origin, fname, "prompt is empty", "give the prompt text", "empty_prompt")
        return ({"role": "user", "content": value},)
    if isinstance(value, (list, tuple)):
        msgs = parse_messages(value, origin, fname)
        if not msgs:
            raise DataError(origin, fname, "prompt has no messages", "give at least one user message",
                            "empty_prompt")
        if msgs[-1]["role"] == "assistant":
            raise DataError(origin, f"{fname}[{len(msgs) - 1}]", "prompt ends with an assistant message",
                            "end the prompt with the user's turn; put replies in the responses",
                            "bad_message")
        return tuple(msgs)
    raise DataError(origin, fname, f"prompt is a {json_type(value)}",
                    'give a string, or a list of {"role", "content"} messages', "bad_prompt_type")


def parse_response(value: Any, origin: str, fname: str) -> str:
    """A response: a string, or an assistant message (alone, or last of a list); returns its text."""
    fix = ("give the response as a string, or as one assistant message "
           '{"role": "assistant", "content": "..."}')
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and value):
        last = (parse_message(value, origin, fname) if isinstance(value, Mapping)
                else parse_message(value[-1], origin, f"{fname}[{len(value) - 1}]"))
        if last["role"] == "assistant":
            return last["content"]
        raise DataError(origin, fname, f"the last message has role {last['role']!r}, not 'assistant'",
                        fix, "bad_response_type")
    what = "an empty array" if isinstance(value, (list, tuple)) else f"a {json_type(value)}"
    raise DataError(origin, fname, f"response is {what}", fix, "bad_response_type")
