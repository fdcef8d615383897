"""Rules for hostile input, pure: what a request body and its strings must be before anything
parses further, publishes or stores them.

The services face phones in the open and the internet; every rule here turns something that
would otherwise crash a handler (a 500) or slip through into storage into a plain refusal.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime, time
from typing import Any

# Days a request may name: EARLIEST_DAY to LATEST_DAY, defined with the periods (which obey
# them too) and re-exported here, with the rule for days.
from shared.domain.periods import EARLIEST_DAY as EARLIEST_DAY
from shared.domain.periods import LATEST_DAY as LATEST_DAY
from shared.domain.periods import LOCAL_TZ

# The characters no client-chosen id or name may hold, by Unicode general category (as of
# Unicode 14, Python 3.11's; tests/unit/test_security_input_hardening.py checks this class
# against unicodedata, code point by code point):
# - Cc, control (C0, DEL, C1): they break logs, terminals, CSV cells;
# - Cs, surrogates: not encodable, the first store or log line that tried would fail;
# - Cf, format: invisible, so two ids that look the same differ (zero-width space and
#   joiners, soft hyphen, word joiner, BOM), or text displays in another order than it is
#   stored (the bidirectional marks, embeddings, overrides and isolates: U+061C, U+200E-200F,
#   U+202A-202E, U+2066-2069);
# - Zs other than the space U+0020, Zl, Zp: no-break, wide, thin and ideographic spaces, line
#   and paragraph separators look like a space (or nothing) and are not one.
# A precompiled class, not a loop over unicodedata: it runs on every id of a 1,000-event batch.
# The class's body is shared with the spreadsheet cells' formula check (shared/adapters/tables.py).
UNSAFE_CHAR_CLASS = (
    "\x00-\x1f\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u1680"
    "\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ud800-\udfff"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_UNSAFE_CHAR = re.compile(f"[{UNSAFE_CHAR_CLASS}]")
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
    """Why a client-chosen string (an id, a name, an attribute value) must not be stored, or
    None: it holds a character of `_UNSAFE_CHAR` (controls, surrogates, format and
    bidirectional characters, separators other than the space), or starts or ends with a
    space (invisible, yet another id or name than the one without it)."""
    found = _UNSAFE_CHAR.search(text)
    if found is None:
        if text[:1] == " " or text[-1:] == " ":
            return "must not start or end with a space"
        return None
    char = found.group()
    category = unicodedata.category(char)
    if category == "Cs":
        return "must be valid Unicode (found a lone surrogate)"
    if category == "Cc":
        return f"must not contain control characters (found U+{ord(char):04X})"
    if category == "Cf":
        return f"must not contain format or bidirectional characters (found U+{ord(char):04X})"
    return f"must not contain separators other than the space (found U+{ord(char):04X})"


def unsafe_id_reason(text: str) -> str | None:
    """Why a client-chosen id (`event_id`, `subject_id`, the `voids` attribute) must not be
    accepted, or None: the text rule, and Unicode NFC. An id in NFD (a decomposed "ế", as
    some keyboards and macOS file names write it) looks the same as its NFC form and would be
    counted as another event; refusing it, rather than normalising silently, keeps an id
    exactly what the client sent (and what it will send again to deduplicate or void)."""
    reason = unsafe_text_reason(text)
    if reason is None and not unicodedata.is_normalized("NFC", text):
        return "must be in Unicode NFC form"
    return reason


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
