"""The sample bot's wiring: mirror, Chatwoot blueprint, provider routes, demo phone, console.

Without ``CHATWOOT_URL`` it starts the Chatwoot emulator in this process and points its
API inbox's webhook at this app, so the whole loop runs on one machine. With
``CHATWOOT_URL`` (and the other ``CHATWOOT_*`` settings) the same bot mirrors into that
Chatwoot; set its inbox's webhook URL to this app's ``/chatwoot/webhook``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request, send_from_directory

from chatwoot_mirror import Config, Mirror, redaction
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.integrations import Dialog360Adapter, UazapiAdapter
from chatwoot_mirror.integrations.flask import create_provider_blueprint
from chatwoot_mirror.testing import FakeChatwoot

from .faq import answer
from .phone import DemoPhone

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class SampleBot:
    app: Flask
    mirror: Mirror
    phone: DemoPhone
    chatwoot: FakeChatwoot | None
    base_url: str
    #: required by the console and /demo routes once anything real is configured
    console_token: str | None = None
    #: a temporary folder this sample made for its store, removed by close()
    scratch: str | None = None
    #: the 360dialog webhook secret this sample generated (None: the operator's own)
    d360_secret: str | None = None

    def urls(self) -> dict[str, str]:
        console = f"{self.base_url}/"
        if self.console_token:
            console += f"?token={self.console_token}"
        shown = {
            "console": console,
            "Chatwoot webhook": f"{self.base_url}/chatwoot/webhook",
            "uazapi webhook": f"{self.base_url}/uazapi/webhook",
            # the header is preferred (X-Webhook-Secret); ?token= is what a URL can carry
            "360dialog webhook": f"{self.base_url}/360dialog/webhook?token="
                                 + (self.d360_secret or "<D360_WEBHOOK_SECRET>"),
        }
        if self.chatwoot is not None:
            shown["Chatwoot (emulator)"] = self.chatwoot.url
        return shown

    def close(self) -> None:
        self.mirror.close(timeout=2)
        if self.chatwoot is not None:
            self.chatwoot.stop()
        if self.scratch is not None:  # the emulator-mode store: nothing worth keeping
            shutil.rmtree(self.scratch, ignore_errors=True)


def build(port: int, environ: Mapping[str, str] | None = None,
          host: str = "127.0.0.1") -> SampleBot:
    """Everything the sample runs, for an app that will listen on ``host:port``."""
    env = dict(os.environ if environ is None else environ)
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    chatwoot = None
    scratch = None
    if not env.get("CHATWOOT_URL"):
        secret = secrets.token_hex(16)
        # bot_active: the sample's Agent Bot is connected to the inbox, as it would be in a
        # real Chatwoot, so a conversation the bot holds is "pending", not "open"
        chatwoot = FakeChatwoot(webhook_secret=secret, lock_to_single_conversation=True,
                                bot_active=True,
                                webhook_url=f"{base_url}/chatwoot/webhook").start()
        env.update(chatwoot.env())
        env["CHATWOOT_API_TOKEN"] = chatwoot.user_token  # delivery receipts in the console
        if "CHATWOOT_MIRROR_DB" not in env:
            scratch = tempfile.mkdtemp(prefix="chatwoot-mirror-sample-")
            env["CHATWOOT_MIRROR_DB"] = os.path.join(scratch, "mirror.db")
        env.setdefault("CHATWOOT_RETRY_BASE_SECONDS", "0.2")
    mirror = Mirror(Config.from_env(env, dotenv=False))

    # The demo phone plays a uazapi instance unless a real one is configured.
    token = env.get("UAZAPI_TOKEN") or secrets.token_hex(16)
    phone = DemoPhone(f"{base_url}/uazapi/webhook", token)
    uazapi = (UazapiAdapter.from_env(env) if env.get("UAZAPI_URL") else
              UazapiAdapter(f"{base_url}/demo/uazapi", token))
    d360_secret = None  # one this sample makes up, to print (the operator's own is not)
    if env.get("D360_API_KEY"):
        dialog360 = Dialog360Adapter.from_env(env)
    else:
        if not env.get("D360_WEBHOOK_SECRET"):
            d360_secret = secrets.token_hex(16)
        dialog360 = Dialog360Adapter("demo", f"{base_url}/demo/360dialog",
                                     webhook_secret=env.get("D360_WEBHOOK_SECRET") or d360_secret)

    # With a real provider or a real Chatwoot configured, the demo phone can message a real
    # number and post into a real inbox: the console then needs a token printed at start.
    emulator_only = chatwoot is not None and not env.get("UAZAPI_URL") and not env.get(
        "D360_API_KEY")
    console_token = None if emulator_only else secrets.token_urlsafe(16)

    app = Flask(__name__, static_folder=None)
    if console_token:
        _require_console_token(app, console_token)
        redaction.install([console_token])  # it travels as ?token= in logged request lines
    app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
    app.register_blueprint(create_provider_blueprint(mirror, uazapi, answer),
                           url_prefix="/uazapi")
    app.register_blueprint(create_provider_blueprint(mirror, dialog360, answer),
                           url_prefix="/360dialog")
    app.register_blueprint(phone.blueprint(), url_prefix="/demo")
    _console(app, mirror, phone, chatwoot)
    return SampleBot(app, mirror, phone, chatwoot, base_url, console_token, scratch,
                     d360_secret)


_CONSOLE_PATHS = ("/demo/state", "/demo/agent/", "/demo/phone/")


def _require_console_token(app: Flask, token: str) -> None:
    @app.before_request
    def check() -> Any:
        path = request.path
        if path != "/" and not path.startswith(_CONSOLE_PATHS):
            return None  # the bot's webhooks and the stand-in providers have their own checks
        given = request.headers.get("X-Console-Token") or request.args.get("token") or ""
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        return jsonify({"error": "open the console URL printed at start (it carries the "
                                 "token)"}), 401


def _console(app: Flask, mirror: Mirror, phone: DemoPhone,
             chatwoot: FakeChatwoot | None) -> None:
    """The web console: a static page and the agent's side of the emulator."""

    @app.get("/")
    def console() -> Any:
        return send_from_directory(STATIC, "console.html")

    @app.get("/demo/state")
    def state() -> Any:
        contact = mirror.identify(phone.number)
        stats = mirror.stats()
        paused = mirror.is_paused(contact.raw)
        record = mirror.handoff_state.record(contact.key) if paused else None
        reason = record.reason if record is not None else None
        return jsonify({
            "emulator": chatwoot is not None,
            "bot_paused": paused,
            "pause_reason": reason,
            "pause_reason_text": mirror.texts.reason(reason)
            if reason else None,
            "queued": stats.get("queued", 0),
            "dead_letters": stats.get("dead_letters", 0),
            "conversations": _conversations(chatwoot) if chatwoot is not None else [],
        })

    @app.post("/demo/agent/<action>")
    def agent(action: str) -> Any:
        if chatwoot is None:
            return jsonify({"error": "agents act in your Chatwoot"}), 404
        body = request.get_json(silent=True) or {}
        try:
            conversation = int(body.get("conversation_id"))
        except (TypeError, ValueError):
            return jsonify({"error": "conversation_id is required"}), 400
        text = str(body.get("text") or "").strip()
        if action in ("reply", "note") and not text:
            return jsonify({"error": "text is required"}), 400
        try:
            if action == "reply":
                chatwoot.agent_reply(conversation, text)
            elif action == "note":
                chatwoot.private_note(conversation, text)
            elif action == "take_over":
                chatwoot.assign(conversation, 3)
            elif action == "resolve":
                chatwoot.resolve(conversation)
            else:
                return jsonify({"error": f"unknown action {action}"}), 404
        except KeyError:
            return jsonify({"error": "no such conversation"}), 404
        return jsonify({"ok": True})


def _conversations(chatwoot: FakeChatwoot) -> list[dict[str, Any]]:
    result = []
    for conv in chatwoot.conversations():
        meta = conv.get("meta") or {}
        assignee = meta.get("assignee") or {}
        result.append({
            "id": conv["id"], "status": conv.get("status"),
            "contact": (meta.get("sender") or {}).get("name"),
            "assignee": assignee.get("name"),
            "labels": conv.get("labels") or [],
            "messages": [{
                "id": m["id"], "content": m.get("content") or "",
                "who": _who(m), "private": bool(m.get("private")),
                "status": m.get("status"),
            } for m in chatwoot.messages(conv["id"])],
        })
    return result


def _who(message: dict[str, Any]) -> str:
    sender = message.get("sender") or {}
    kind = sender.get("type")
    if message.get("message_type") == 0:
        return "customer"
    if kind == "agent_bot":
        return "bot"
    if kind == "user":
        return f"agent {sender.get('name') or ''}".strip()
    return "system"
