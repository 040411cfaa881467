"""pytest plugin: the ``fake_chatwoot`` fixture (registered through the ``pytest11`` entry point).

    def test_my_bot(fake_chatwoot):
        mirror = Mirror(Config(url=fake_chatwoot.url,
                               inbox_identifier=fake_chatwoot.inbox_identifier, ...))
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeChatwoot


@pytest.fixture
def fake_chatwoot() -> Iterator[FakeChatwoot]:
    """A started :class:`FakeChatwoot` on a free loopback port, stopped after the test."""
    with FakeChatwoot() as chatwoot:
        yield chatwoot
