from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Real specs and payloads, shipped with the tests (see tests/fixtures/contracts/README.md).
FIXTURES = ROOT / "tests" / "fixtures" / "contracts"
CONTRACTS = Path(os.environ.get("MIRROR_TEST_CONTRACTS", FIXTURES))
#: The project's reference set, when a checkout has it beside the clone (optional).
SHARED_CONTRACTS = ROOT.parent / "shared" / "contracts"


def contract(relative: str) -> Any:
    """A real payload from tests/fixtures/contracts (a deep copy, safe to modify)."""
    path = CONTRACTS / relative
    if not path.exists():
        pytest.fail(f"contract file missing: {path}")
    return copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))


def eventually(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for work done by threads,
    webhooks and other processes); its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def emulator_config(cw: Any, db: Path | str, **extra: Any) -> Any:
    """A Config pointing at emulator ``cw`` with its bot token, fast retries, no pacing."""
    from chatwoot_mirror import Config

    values = dict(url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
                  bot_token=cw.bot_token, db_path=str(db), max_requests_per_minute=0,
                  retry_base_seconds=0.02, retry_max_seconds=0.1)
    return Config(**{**values, **extra})


def serve_wsgi(app: Any, host: str = "127.0.0.1"):
    """``app`` on a real threaded WSGI server on a free port of ``host``, serving in a
    daemon thread; call ``.shutdown()`` on the result when done."""
    import threading

    from werkzeug.serving import make_server

    server = make_server(host, 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "mirror.db")


@pytest.fixture(autouse=True)
def _reset_default_mirror():
    import chatwoot_mirror

    chatwoot_mirror.set_default_mirror(None)
    yield
    chatwoot_mirror.set_default_mirror(None)


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="chatwoot_mirror")
    return caplog
