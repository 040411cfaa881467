"""Verification for providers that sign nothing (360dialog's number webhooks, Z-PRO)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from ._payload import header


class SharedSecretWebhooks:
    """Verification for providers that sign nothing (360dialog's number webhooks, Z-PRO):
    the webhook must carry a secret we chose, in a header set in the provider's panel
    (``secret_header``, a ``Bearer`` prefix allowed) or as ``?token=`` in the URL."""

    webhook_secret: str | None
    insecure: bool
    secret_header: str

    @property
    def verifies(self) -> bool:
        return bool(self.webhook_secret) or self.insecure

    def verify(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> bool:
        if not self.webhook_secret:
            return self.insecure
        given = header(headers, self.secret_header) or (query or {}).get("token") or ""
        if given.lower().startswith("bearer "):
            given = given[7:]
        return hmac.compare_digest(given.encode(), self.webhook_secret.encode())
