"""Rules for hostile input, pure: what a request body and its strings must be before anything
parses further, publishes or stores them.

The services face phones in the open and the internet; every rule here turns something that
would otherwise crash a handler (a 500) or slip through into storage into a plain refusal.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from typing import Any

# Days a request may name: EARLIEST_DAY to LATEST_DAY, defined with the periods (which obey
# them too) and re-exported here, with the rule for days.
from shared.domain.periods import EARLIEST_DAY as EARLIEST_DAY
from shared.domain.periods import LATEST_DAY as LATEST_DAY
from shared.domain.periods import LOCAL_TZ

# Unicode's control characters (category Cc: C0, DEL, C1) and the surrogate range. A regex,
# not a loop over unicodedata: it runs on every id of every event of a 1,000-event batch.
_UNSAFE_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# A surrogate escape anywhere in the body: only then is the (slower) walk over strings needed.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class UnsafeInput(ValueError):
    """The body cannot be accepted at all; the message says why, never echoing the input."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers (or a validator and a store) disagreeing on which duplicate wins is the
    # classic way to smuggle a field past validation: refuse duplicates outright.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise UnsafeInput(f"duplicate key {json.dumps(key)} in an object")
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise UnsafeInput(f"{name} is not a JSON number")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def strict_json(body: bytes) -> Any:
    """Parse a request body as RFC 8259 JSON, refusing what a lenient parser lets through:
    invalid UTF-8, duplicate keys, NaN and Infinity, numbers too long to convert, nesting
    deep enough to exhaust the parser, and escaped lone surrogates (they cannot be encoded
    again, so the first store or log line that tried would fail)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeInput(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        payload = json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constant
        )
    except UnsafeInput:
        raise
    except RecursionError:
        raise UnsafeInput("body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise UnsafeInput(f"body is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError:
        # int() refusing a number of thousands of digits (CPython's conversion limit).
        raise UnsafeInput("body holds a number too long to be one") from None
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(payload):
        raise UnsafeInput("body holds a string that is not valid Unicode (a lone surrogate)")
    return payload


def unsafe_text_reason(text: str) -> str | None:
    """Why a client-chosen string (an id, a name) must not be stored, or None. Control
    characters (NUL, newlines, escapes) and lone surrogates have no place in ids and names: they
    break logs, terminals, CSV cells and encoders downstream."""
    found = _UNSAFE_CHAR.search(text)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "must be valid Unicode (found a lone surrogate)"
    return f"must not contain control characters (found U+{ord(char):04X})"


def local_day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=LOCAL_TZ)


def occurred_at_reason(value: datetime, not_before: datetime | None) -> str | None:
    """The lower bound of `occurred_at` (the upper one, 5 minutes ahead, is in events.py)."""
    if not_before is not None and value < not_before:
        first = not_before.astimezone(LOCAL_TZ).date().isoformat()
        return f"occurred_at is before {first}, the earliest day accepted"
    return None


def day_reason(day: date) -> str | None:
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        return f"must be a day from {EARLIEST_DAY} to {LATEST_DAY}"
    return None
