"""The shipped contract fixtures: present, and still the reference set's when it is here."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, SHARED_CONTRACTS


def test_fixtures_are_in_the_repository():
    for folder in ("chatwoot/webhooks", "chatwoot/public_api", "chatwoot/application_api",
                   "dialog360", "uazapi", "typebot", "zpro"):
        assert list((FIXTURES / folder).glob("*.json")), folder
        assert (FIXTURES / folder.split("/")[0] / "README.md").exists()  # sources cited


@pytest.mark.skipif(not SHARED_CONTRACTS.is_dir(),
                    reason="the reference set (../shared/contracts) is not beside this clone")
def test_fixtures_match_the_reference_set():
    stale = [str(path.relative_to(FIXTURES)) for path in FIXTURES.rglob("*")
             if path.is_file() and path.name != "README.md"
             and (SHARED_CONTRACTS / path.relative_to(FIXTURES)).exists()
             and path.read_bytes() != (SHARED_CONTRACTS / path.relative_to(FIXTURES)).read_bytes()]
    assert stale == []
    missing = [str(path.relative_to(SHARED_CONTRACTS)) for folder in (
        "chatwoot/webhooks", "chatwoot/public_api", "chatwoot/application_api", "dialog360",
        "uazapi", "typebot", "zpro") for path in (SHARED_CONTRACTS / folder).glob("*.json")
        if not (FIXTURES / path.relative_to(SHARED_CONTRACTS)).exists()]
    assert missing == []  # a new reference payload must be copied (and tested)
