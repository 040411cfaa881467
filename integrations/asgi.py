"""ASGI wiring for provider webhooks: the same handlers as :mod:`.flask`, translated.

    from chatwoot_mirror.integrations.asgi import create_provider_app
    app.mount("/uazapi", create_provider_app(mirror, UazapiAdapter.from_env(), my_bot_fn))
"""

from __future__ import annotations

from typing import Any

from chatwoot_mirror import redaction
from chatwoot_mirror.asgi import App, Route
from chatwoot_mirror.mirror import Mirror

from .base import BotFunction, ChannelAdapter
from .inbound import InboundHandler
from .typebot import TypebotHandoffHandler


def create_provider_app(mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction,
                        **options: Any) -> App:
    """``POST /webhook`` for ``adapter``'s webhooks (see :class:`~.inbound.InboundHandler`)."""
    handler = InboundHandler(mirror, adapter, bot_fn, **options)
    return App({("POST", "/webhook"): Route(handler.handle, handler.max_bytes)})


def create_typebot_app(mirror: Mirror, token: str) -> App:
    """``POST /handoff`` for a Typebot HTTP Request block (see
    :class:`~.typebot.TypebotHandoffHandler`)."""
    handler = TypebotHandoffHandler(mirror, token)
    redaction.install([token])  # it may arrive as ?token= in a logged request line
    return App({("POST", "/handoff"): Route(handler.handle, 64 * 1024)})
