"""Prometheus metrics: counted from real deliveries, handoffs and the store; served by the
blueprint; a missing prometheus-client fails at start-up naming the package."""

from __future__ import annotations

import sys

import pytest
from flask import Flask

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.errors import ConfigError
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.testing import FakeChatwoot


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_and_are_served(tmp_path):
    with FakeChatwoot(webhook_secret="s") as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token, webhook_secret="s",
                        db_path=str(tmp_path / "m.db"), metrics=True,
                        max_requests_per_minute=0, retry_base_seconds=0.01,
                        retry_max_seconds=0.02)
        with Mirror(config) as mirror:
            app = Flask(__name__)
            app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
            client = app.test_client()
            mirror.log_exchange("5511988887777", "oi", "olá")
            assert mirror.flush()
            cw.faults.outage = True
            mirror.log_incoming("5511988887777", "alguém?")
            while mirror.stats()["retried"] < 2:
                mirror.workers.wait_for_progress(0.05)
            page = client.get("/chatwoot/metrics")
            assert page.status_code == 200
            assert page.content_type.startswith("text/plain")
            text = page.get_data(as_text=True)
            assert sample(text, "chatwoot_mirror_messages_total", direction="incoming",
                          outcome="delivered") == 1
            assert sample(text, "chatwoot_mirror_messages_total", direction="outgoing",
                          outcome="delivered") == 1
            assert sample(text, "chatwoot_mirror_retries_total", direction="incoming") >= 2
            assert sample(text, "chatwoot_mirror_queue_messages") == 1
            assert sample(text, "chatwoot_mirror_queue_oldest_age_seconds") > 0
            assert sample(text, "chatwoot_mirror_dead_letters") == 0
            # two or more 503s: Chatwoot half-works, or (six in a row) is down
            assert sample(text, "chatwoot_mirror_chatwoot_health", state="ok") == 0
            assert (sample(text, "chatwoot_mirror_chatwoot_health", state="degraded")
                    + sample(text, "chatwoot_mirror_chatwoot_health", state="down")) == 1
            failed_at = sample(text, "chatwoot_mirror_chatwoot_last_error_timestamp_seconds")
            assert 0 < failed_at <= mirror.stats()["chatwoot_last_error_at"]
            cw.faults.outage = False
            assert mirror.flush()
            mirror.handoff("5511988887777", "keyword_detected")
            mirror.resume("5511988887777")
            assert mirror.flush() and mirror.flush()
            text = client.get("/chatwoot/metrics").get_data(as_text=True)
            assert sample(text, "chatwoot_mirror_handoffs_total", reason="keyword_detected",
                          outcome="to_humans") == 1
            assert sample(text, "chatwoot_mirror_handoffs_total", reason="explicit",
                          outcome="to_bot") == 1
            assert sample(text, "chatwoot_mirror_queue_messages") == 0


def test_no_metrics_route_unless_enabled(tmp_path):
    config = Config(url="http://127.0.0.1:9", inbox_identifier="x", webhook_insecure=True,
                    db_path=str(tmp_path / "m.db"))
    with Mirror(config, start=False) as mirror:
        app = Flask(__name__)
        app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
        assert app.test_client().get("/chatwoot/metrics").status_code == 404


def test_missing_prometheus_client_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    config = Config(url="http://127.0.0.1:9", inbox_identifier="x", metrics=True,
                    db_path=str(tmp_path / "m.db"))
    with pytest.raises(ConfigError) as error:
        Mirror(config, start=False)
    assert error.value.variable == "CHATWOOT_METRICS"
    assert "pip install 'chatwoot-mirror[metrics]'" in str(error.value)
