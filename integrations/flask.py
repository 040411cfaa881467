"""Flask wiring for provider webhooks: translates requests, nothing else.

    app.register_blueprint(
        create_provider_blueprint(mirror, UazapiAdapter(url, token), my_bot),
        url_prefix="/uazapi")                       # POST /uazapi/webhook
    app.register_blueprint(create_typebot_blueprint(mirror, token), url_prefix="/typebot")
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from chatwoot_mirror import redaction
from chatwoot_mirror.flask import translate
from chatwoot_mirror.mirror import Mirror

from .base import BotFunction, ChannelAdapter
from .inbound import InboundHandler
from .typebot import TypebotHandoffHandler


def create_provider_blueprint(
    mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction, *,
    name: str | None = None, **options: Any,
) -> Blueprint:
    """``POST /webhook`` for ``adapter``'s webhooks (see :class:`InboundHandler`)."""
    handler = InboundHandler(mirror, adapter, bot_fn, **options)
    blueprint = Blueprint(name or f"{adapter.name}_webhook", __name__)
    blueprint.add_url_rule("/webhook", "webhook",
                           lambda: translate(handler.handle, handler.max_bytes),
                           methods=["POST"])
    return blueprint


def create_typebot_blueprint(mirror: Mirror, token: str, *,
                             name: str = "typebot_handoff") -> Blueprint:
    """``POST /handoff`` for a Typebot HTTP Request block (see
    :class:`~chatwoot_mirror.integrations.typebot.TypebotHandoffHandler`)."""
    handler = TypebotHandoffHandler(mirror, token)
    redaction.install([token])  # it may arrive as ?token= in a logged request line
    blueprint = Blueprint(name, __name__)
    blueprint.add_url_rule("/handoff", "handoff",
                           lambda: translate(handler.handle, 64 * 1024), methods=["POST"])
    return blueprint
