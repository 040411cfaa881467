"""When the bot should hand a contact to humans by itself: keywords, too many bot turns,
outside business hours. Each trigger names its reason (``keyword_detected``,
``max_turns``, ``after_hours``)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def fold(text: str) -> str:
    """Lowercase without accents: "Atendênte" and "atendente" are the same word."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Keywords:
    """Whole-word, accent- and case-insensitive matching of handoff keywords."""

    def __init__(self, words: Iterable[str]) -> None:
        folded = sorted({fold(w).strip() for w in words if w.strip()}, key=len, reverse=True)
        self.words = tuple(folded)
        self._pattern = (
            re.compile(r"(?<!\w)(" + "|".join(
                r"\s+".join(map(re.escape, w.split())) for w in folded) + r")(?!\w)")
            if folded else None
        )

    def find(self, text: str) -> str | None:
        if self._pattern is None or not text:
            return None
        match = self._pattern.search(fold(text))
        return " ".join(match.group(1).split()) if match else None


@dataclass(frozen=True)
class BusinessHours:
    """``mon-fri 08:00-18:00;sat 09:00-12:00`` in a named timezone."""

    windows: dict[int, tuple[tuple[time, time], ...]]
    zone: ZoneInfo
    spec: str

    @classmethod
    def parse(cls, spec: str, timezone: str | None) -> BusinessHours:
        if not timezone:
            raise ConfigError("CHATWOOT_TIMEZONE",
                              "is required with CHATWOOT_BUSINESS_HOURS, e.g. America/Sao_Paulo")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("CHATWOOT_TIMEZONE",
                              f"{timezone!r} is not a timezone name like America/Sao_Paulo"
                              ) from None
        windows: dict[int, list[tuple[time, time]]] = {}
        for part in filter(None, (p.strip() for p in spec.split(";"))):
            match = re.fullmatch(
                r"([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", part.lower()
            )
            if not match or match.group(1) not in DAYS or (
                match.group(2) and match.group(2) not in DAYS
            ):
                raise ConfigError(
                    "CHATWOOT_BUSINESS_HOURS",
                    f"cannot read {part!r}; write e.g. 'mon-fri 08:00-18:00;sat 09:00-12:00'",
                )
            first = DAYS.index(match.group(1))
            last = DAYS.index(match.group(2) or match.group(1))
            try:
                start = time(int(match.group(3)), int(match.group(4)))
                end = time(int(match.group(5)), int(match.group(6)))
            except ValueError:
                raise ConfigError("CHATWOOT_BUSINESS_HOURS", f"bad time in {part!r}") from None
            if end <= start:
                raise ConfigError("CHATWOOT_BUSINESS_HOURS",
                                  f"{part!r} ends before it starts")
            days = range(first, last + 1) if first <= last else [*range(first, 7),
                                                                    *range(0, last + 1)]
            for day in days:
                windows.setdefault(day, []).append((start, end))
        if not windows:
            raise ConfigError("CHATWOOT_BUSINESS_HOURS", "is empty")
        return cls({d: tuple(w) for d, w in windows.items()}, zone, spec)

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        now = local.time()
        return any(start <= now < end for start, end in self.windows.get(local.weekday(), ()))
