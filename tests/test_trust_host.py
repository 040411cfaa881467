"""The host is never hurt: log_to_chatwoot never raises, never hangs, never leaks threads,
and a mirror that cannot work says so once, where even a host without logging sees it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT

import chatwoot_mirror
from chatwoot_mirror import Config, ConfigError, Mirror, StoreError, log_to_chatwoot
from chatwoot_mirror.testing import FakeChatwoot

GOOD = {"CHATWOOT_URL": "https://chat.example.com", "CHATWOOT_INBOX_ID": "Hk2uR9bWq7mZcX4tYp1sLe8D",
        "CHATWOOT_MAX_REQUESTS_PER_MINUTE": "0"}


def mirror_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith("chatwoot-mirror-") or "APScheduler" in t.name]


def _store_path(tmp_path: Path, case: str) -> str:
    if case == "directory":
        return str(tmp_path)
    if case == "under_a_file":
        (tmp_path / "file").write_text("x")
        return str(tmp_path / "file" / "mirror.db")
    if case == "corrupt":
        (tmp_path / "mirror.db").write_bytes(b"this is not a database" * 100)
        return str(tmp_path / "mirror.db")
    if case == "read_only":  # a read-only filesystem: root's permissions do not help there
        path = "/proc/chatwoot-mirror-test.db"
        return path
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["directory", "under_a_file", "corrupt", "read_only"])
def test_unusable_store_is_reported_once_and_never_raises(tmp_path, monkeypatch, caplog, case):
    monkeypatch.setattr(os, "environ", {**GOOD, "CHATWOOT_MIRROR_DB": _store_path(tmp_path, case)})
    builds = []
    real = Mirror.from_env.__func__

    def counting(cls, **kwargs):
        builds.append(1)
        return real(cls, **kwargs)

    monkeypatch.setattr(Mirror, "from_env", classmethod(counting))
    before = len(mirror_threads())
    with caplog.at_level(logging.ERROR, logger="chatwoot_mirror"):
        assert log_to_chatwoot("5511987654321", "oi", "olá") is False
        assert log_to_chatwoot("5511987654321", "oi de novo", "olá") is False
    assert builds == [1]  # kept, not rebuilt and failed again on every call
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "StoreError" in errors[0].getMessage()
    assert len(mirror_threads()) == before
    with pytest.raises(StoreError):
        chatwoot_mirror.get_default_mirror()  # the same error again, for a fail-fast start


@pytest.mark.parametrize("variable,value", [
    ("CHATWOOT_MEDIA_MAX_MB", "nan"),
    ("CHATWOOT_MEDIA_MAX_MB", "1e400"),
    ("CHATWOOT_MEDIA_MAX_MB", "5000"),
    ("CHATWOOT_URL", "http://[::1"),
    ("CHATWOOT_URL", "http://chat.example.com:99999"),
    ("CHATWOOT_CLAIM_TTL_SECONDS", "inf"),
    ("CHATWOOT_CLAIM_TTL_SECONDS", "1e9"),
    ("CHATWOOT_DRAIN_SECONDS", "nan"),
    ("CHATWOOT_READ_TIMEOUT", "-inf"),
    ("CHATWOOT_WORKERS", "0"),
    ("CHATWOOT_WORKERS", "65"),
    ("CHATWOOT_RETRY_MAX_SECONDS", "1e300"),
    ("CHATWOOT_RESUME_AFTER_MINUTES", "Infinity"),
])
def test_wrong_numbers_and_urls_fail_at_start_up_naming_the_variable(
    monkeypatch, variable, value
):
    with pytest.raises(ConfigError) as info:
        Config.from_env({**GOOD, variable: value}, dotenv=False)
    assert info.value.variable == variable
    monkeypatch.setattr(os, "environ", {**GOOD, variable: value})
    before = len(mirror_threads())
    assert log_to_chatwoot("5511987654321", "oi", "olá") is False
    assert log_to_chatwoot("5511987654321", "oi", "olá") is False
    assert len(mirror_threads()) == before  # no worker started, none leaked


@pytest.mark.parametrize("field", ["drain_seconds", "claim_ttl_seconds", "media_max_mb",
                                   "read_timeout", "retry_base_seconds"])
def test_direct_config_rejects_non_finite_numbers(field):
    with pytest.raises(ConfigError) as info:
        Config(url="https://chat.example.com", inbox_identifier="abc", **{field: float("nan")})
    assert info.value.variable == "CHATWOOT_" + field.upper()


def test_workers_zero_is_an_error_not_four():
    with pytest.raises(ConfigError, match="CHATWOOT_WORKERS"):
        Config.from_env({**GOOD, "CHATWOOT_WORKERS": "0"}, dotenv=False)
    assert Config.from_env({**GOOD, "CHATWOOT_WORKERS": "1"}, dotenv=False).workers == 1


def test_a_failed_start_stops_every_thread_it_started(tmp_path, monkeypatch):
    from apscheduler.schedulers.background import BackgroundScheduler

    def broken(self, *args, **kwargs):
        raise RuntimeError("scheduler cannot start")

    monkeypatch.setattr(BackgroundScheduler, "start", broken)
    before = len(mirror_threads())
    config = Config(url="https://chat.example.com", inbox_identifier="abc",
                    db_path=str(tmp_path / "m.db"))
    with pytest.raises(RuntimeError):
        Mirror(config)
    assert len(mirror_threads()) == before
    monkeypatch.setattr(os, "environ", {**GOOD, "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db")})
    assert log_to_chatwoot("5511987654321", "oi", "olá") is False
    assert len(mirror_threads()) == before


def test_unknown_variable_is_a_warning_with_a_suggestion_and_mirroring_stays_on(
    tmp_path, monkeypatch, caplog
):
    with FakeChatwoot() as cw:
        env = {**cw.env(), "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db"),
               "CHATWOOT_BOT_TOKN": "typo", "CHATWOOT_MAX_REQUESTS_PER_MINUTE": "0"}
        monkeypatch.setattr(os, "environ", env)
        with caplog.at_level(logging.WARNING, logger="chatwoot_mirror"):
            assert log_to_chatwoot("5511987654321", "oi", "olá") is True
            assert chatwoot_mirror.get_default_mirror().flush()
        [warning] = [r for r in caplog.records if "CHATWOOT_BOT_TOKN" in r.getMessage()]
        assert warning.levelno == logging.WARNING
        assert "did you mean CHATWOOT_BOT_TOKEN?" in warning.getMessage()
        assert [m["content"] for m in cw.messages()] == ["oi", "olá"]
        chatwoot_mirror.get_default_mirror().close()


SCRIPT = """
import logging, sys
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.WARNING, format="LOGGED %(levelname)s %(message)s")
from chatwoot_mirror import log_to_chatwoot
print(log_to_chatwoot("5511987654321", "oi", "olá"), log_to_chatwoot("5511987654321", "a", "b"))
"""


@pytest.mark.parametrize("logging_setup", ["none", "configured"])
def test_a_mirror_that_cannot_work_says_so_once_on_stderr(tmp_path, logging_setup):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWOOT_")}
    env.update(GOOD, CHATWOOT_MEDIA_MAX_MB="nan", CHATWOOT_BOT_TOKN="x",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SCRIPT, logging_setup], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.stdout.strip() == "False False"
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if "CHATWOOT_MEDIA_MAX_MB" in line]
    warnings = [line for line in lines if "CHATWOOT_BOT_TOKN" in line]
    assert len(errors) == 1 and "ERROR" in errors[0] and "finite" in errors[0]
    assert len(warnings) == 1 and "did you mean CHATWOOT_BOT_TOKEN?" in warnings[0]
    prefix = "LOGGED" if logging_setup == "configured" else "chatwoot-mirror:"
    assert errors[0].startswith(prefix) and warnings[0].startswith(prefix)
    assert len(lines) == 2, done.stderr
