"""Flask wiring for provider webhooks: translates requests, nothing else.

    app.register_blueprint(
        create_provider_blueprint(mirror, UazapiAdapter(url, token), my_bot),
        url_prefix="/uazapi")                       # POST /uazapi/webhook
    app.register_blueprint(create_typebot_blueprint(mirror, token), url_prefix="/typebot")
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from chatwoot_mirror.flask import blueprint_for
from chatwoot_mirror.mirror import Mirror

from ._routes import provider_routes, typebot_routes
from .base import BotFunction, ChannelAdapter


def create_provider_blueprint(
    mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction, *,
    name: str | None = None, **options: Any,
) -> Blueprint:
    """``POST /webhook`` for ``adapter``'s webhooks (see :class:`InboundHandler`)."""
    return blueprint_for(provider_routes(mirror, adapter, bot_fn, **options),
                         name or f"{adapter.name}_webhook")


def create_typebot_blueprint(mirror: Mirror, token: str, *,
                             name: str = "typebot_handoff") -> Blueprint:
    """``POST /handoff`` for a Typebot HTTP Request block (see
    :class:`~chatwoot_mirror.integrations.typebot.TypebotHandoffHandler`)."""
    return blueprint_for(typebot_routes(mirror, token), name)
