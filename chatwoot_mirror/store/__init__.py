"""Local state behind one interface (:class:`Store`); SQLite is the embedded default."""

from __future__ import annotations

from .base import ContactRecord, HandoffRecord, OutboxCounts, OutboxRow, Store
from .sqlite import SQLiteStore

__all__ = ["ContactRecord", "HandoffRecord", "OutboxCounts", "OutboxRow", "SQLiteStore", "Store"]
