"""Careful readers of what strangers send: webhook bodies and the text inside them.

Every webhook body, Chatwoot's or a provider's, is parsed by :func:`parse_json`, so that
no shape of hostile input can turn into a 500: deep nesting (``RecursionError`` in the
parser), ``NaN``/``Infinity`` and numbers too large for a float (which would poison the
handoff clock, or overflow where a time is read), invalid UTF-8. Every number it returns
is therefore a finite float or an int that converts to one. Text
is made storable by :func:`repair_text`: half an emoji (a lone UTF-16 surrogate, which
JavaScript-based providers produce when they cut a string) cannot be encoded as UTF-8,
and once made SQLite and every HTTP client refuse the whole message.
"""

from __future__ import annotations

import json
from typing import Any


class UntrustedInput(ValueError):
    """The body is not JSON we are willing to read; ``reason`` is a short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refuse_constant(name: str) -> Any:
    raise UntrustedInput("non_finite_number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400 overflows to infinity
        raise UntrustedInput("non_finite_number")
    return value


def _float_sized_int(text: str) -> int:
    value = int(text)
    try:
        float(value)  # 400 digits parse as an int and overflow wherever a time is read
    except OverflowError:
        raise UntrustedInput("non_finite_number") from None
    return value


def parse_json(body: bytes | str) -> Any:
    """The JSON value of ``body``; raises :class:`UntrustedInput` (a ``ValueError``) for
    invalid JSON or UTF-8, ``NaN``/``Infinity``/numbers beyond a float, or nesting too
    deep for the parser."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_float_sized_int)
    except UntrustedInput:
        raise
    except RecursionError:
        raise UntrustedInput("too_deep") from None
    except (ValueError, UnicodeDecodeError, TypeError):
        raise UntrustedInput("invalid_json") from None


def repair_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (and a split pair joined
    again); ``text`` itself when it is already valid, which is the cheap common case."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
