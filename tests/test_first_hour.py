"""The first hour: .env.example documents every variable anything reads, logs say what is
true, and the sample bot leaves nothing behind."""

from __future__ import annotations

import glob
import logging
import re
import socket
import subprocess
import sys
import tempfile

import pytest
from conftest import ROOT

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.testing import FakeChatwoot


def test_env_example_lists_every_variable_the_adapters_and_the_sample_read():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example")
                                .read_text(encoding="utf-8"), re.M))
    read: set[str] = set()
    for path in [*glob.glob(str(ROOT / "integrations" / "*.py")),
                 *glob.glob(str(ROOT / "sample_bot" / "*.py"))]:
        text = open(path, encoding="utf-8").read()
        read.update(re.findall(r'env_(?:value|flag)\(environ, "([A-Z0-9_]+)"', text))
        read.update(re.findall(r'env(?:iron)?\.get\("([A-Z0-9_]+)"', text))
    read = {name for name in read if not name.startswith("CHATWOOT_")}
    assert {"D360_WEBHOOK_INSECURE", "ZPRO_WEBHOOK_INSECURE", "PORT"} <= read
    assert read - documented == set()


def test_a_bot_reply_is_not_logged_as_an_agent_message_with_zero_ids(tmp_path, caplog):
    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
        with Mirror(config) as mirror:
            mirror.on_agent_message(lambda message: "wamid.1")
            caplog.set_level(logging.INFO, logger="chatwoot_mirror")
            assert mirror.notify_customer("5511987654321", "Olá! Como posso ajudar?",
                                          kind="bot")
            assert mirror.flush()
    relayed = [r.getMessage() for r in caplog.records if "relayed" in r.getMessage()]
    assert relayed == []
    assert not [r for r in caplog.records if "conversation=0" in r.getMessage()]


def test_the_sample_bot_removes_its_temporary_store(tmp_path, monkeypatch):
    from chatwoot_mirror.sample_bot.app import build

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bot = build(5998, {})
    assert glob.glob(str(tmp_path / "chatwoot-mirror-sample-*"))
    bot.close()
    assert glob.glob(str(tmp_path / "chatwoot-mirror-sample-*")) == []


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("program", [["-m", "chatwoot_mirror.testing"], ["-m", "sample_bot"],
                                     ["-m", "chatwoot_mirror.cli", "emulator"]])
def test_a_port_out_of_range_is_an_error_not_a_random_port(program):
    done = _run(*program, "--port", "99999")
    assert done.returncode == 2
    assert "99999 is not a port" in done.stderr


def test_a_busy_port_gets_the_friendly_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _run("-m", "chatwoot_mirror.testing", "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_emulator_prints_a_dotenv_block_that_survives_a_restart(tmp_path):
    def start() -> tuple[subprocess.Popen, dict[str, str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatwoot_mirror.testing", "--port", "0",
             "--inbox-identifier", "FixedInbox123456", "--bot-token", "fixed-bot-token",
             "--user-token", "fixed-user-token"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        block: dict[str, str] = {}
        for line in process.stdout:
            if line.startswith("CHATWOOT_"):
                name, _, value = line.strip().partition("=")
                block[name] = value
                if name == "CHATWOOT_API_TOKEN":
                    break
        return process, block

    blocks = []
    for _ in range(2):
        process, block = start()
        try:
            config = Config.from_env({**block, "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db")},
                                     dotenv=False)
            with Mirror(config) as mirror:
                assert mirror.log_exchange("5511987654321", "oi", "olá") and mirror.flush()
            blocks.append({k: v for k, v in block.items() if k != "CHATWOOT_URL"})
        finally:
            process.terminate()
            process.wait(10)
    assert blocks[0] == blocks[1]
    assert blocks[0]["CHATWOOT_BOT_TOKEN"] == "fixed-bot-token"


def test_the_package_builds_cleanly_with_one_version(tmp_path):
    import zipfile

    from chatwoot_mirror import __version__

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "absent from the `packages` configuration" not in done.stdout + done.stderr
    [wheel] = list(tmp_path.glob("chatwoot_mirror-*.whl"))
    assert wheel.name.startswith(f"chatwoot_mirror-{__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "chatwoot_mirror/py.typed" in names
    assert "chatwoot_mirror/sample_bot/static/console.html" in names
    assert "chatwoot_mirror/integrations/uazapi.py" in names
    # nothing under generic top-level names, no tests
    assert {n.split("/")[0] for n in names if not n.startswith("chatwoot_mirror-")} == {
        "chatwoot_mirror"}
    assert f"Version: {__version__}" in metadata and "License-File: LICENSE" in metadata
    for python in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {python}" in metadata
    assert (ROOT / "CHANGELOG.md").exists()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("program", [["-m", "chatwoot_mirror"], ["-m", "chatwoot_mirror.cli"]])
def test_version_and_python_m(program):
    from chatwoot_mirror import __version__

    done = _run(*program, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"chatwoot-mirror {__version__}"
    assert "doctor" in _run(*program, "--help").stdout


def test_giving_the_customer_back_to_the_bot_unassigns_the_agent(tmp_path):
    from conftest import eventually, serve_wsgi
    from flask import Flask

    from chatwoot_mirror.flask import create_blueprint

    with FakeChatwoot(webhook_secret="s", bot_active=True) as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token, webhook_secret="s",
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0,
                        retry_base_seconds=0.05, retry_max_seconds=0.2)
        with Mirror(config) as mirror:
            mirror.on_agent_message(lambda message: "wamid.1")
            app = Flask(__name__)
            app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
            server = serve_wsgi(app)
            cw.webhook_url = f"http://127.0.0.1:{server.server_port}/chatwoot/webhook"
            try:
                assert mirror.log_incoming("5511987654321", "quero um atendente")
                assert eventually(lambda: mirror.is_paused("5511987654321"))
                assert mirror.flush()
                [conv] = cw.conversations()
                cw.assign(conv["id"], 3)
                cw.resolve(conv["id"])
                assert eventually(lambda: not mirror.is_paused("5511987654321"))
                assert mirror.flush()
                assert eventually(lambda: cw.conversations()[0]["meta"]["assignee"] is None)
                assert mirror.log_exchange("5511987654321", "voltei", "oi de novo")
                assert mirror.flush()
                [after] = cw.conversations()
                # Chatwoot shows what is true: the bot's (pending), nobody assigned
                assert after["status"] == "pending" and after["meta"]["assignee"] is None
            finally:
                server.shutdown()


def test_the_handoff_note_names_the_reason_in_the_agents_language():
    from chatwoot_mirror.texts import DEFAULTS

    assert DEFAULTS["pt-BR"].reason("keyword_detected") == "o cliente pediu um atendente"
    assert DEFAULTS["es"].reason("after_hours") == "fuera del horario de atención"
    assert DEFAULTS["en"].reason("max_turns") == "too many bot replies in a row"
    assert DEFAULTS["en"].reason("my_own_reason") == "my_own_reason"
    for texts in DEFAULTS.values():
        assert set(texts.reasons) == set(DEFAULTS["pt-BR"].reasons)


def test_a_host_with_its_own_integrations_package_still_imports_ours(tmp_path):
    (tmp_path / "integrations").mkdir()
    (tmp_path / "integrations" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "sample_bot.py").write_text("MINE = True\n")
    done = subprocess.run([sys.executable, "-c",
                           "import integrations, sample_bot; assert integrations.MINE and "
                           "sample_bot.MINE\n"
                           "from chatwoot_mirror.integrations import UazapiAdapter\n"
                           "from chatwoot_mirror.integrations.flask import "
                           "create_provider_blueprint\nprint('ok')"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


TYPED_USE = """
from chatwoot_mirror import Config
from chatwoot_mirror.integrations import UazapiAdapter

url: int = Config(url="https://chat.example.com", inbox_identifier="abc").url
adapter: str = UazapiAdapter("https://x.uazapi.com", "token")
"""


def test_py_typed_is_honoured_in_a_strict_editable_install(tmp_path):
    """A type checker sees our types in an editable install made as the README says for
    type checking (editable_mode=strict: a tree of links, where py.typed is a real file)."""
    import shutil
    import venv

    # a venv of its own (inside a user's venv, "system" packages would be the base
    # interpreter's, without ours or mypy): mypy runs here and reads the venv's packages
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    python = str(tmp_path / "venv" / "bin" / "python")
    links = ROOT / "build"
    existed = links.exists()
    try:
        done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-e",
                               str(ROOT), "--config-settings", "editable_mode=strict"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        (tmp_path / "use.py").write_text(TYPED_USE)
        checked = subprocess.run([sys.executable, "-m", "mypy", "--python-executable", python,
                                  "--no-incremental", "use.py"], capture_output=True,
                                 text=True, timeout=300, cwd=tmp_path)
    finally:
        if not existed:
            shutil.rmtree(links, ignore_errors=True)
    assert 'expression has type "str", variable has type "int"' in checked.stdout
    assert 'expression has type "UazapiAdapter", variable has type "str"' in checked.stdout
    assert "Cannot find implementation" not in checked.stdout
