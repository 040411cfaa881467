"""ASGI wiring for provider webhooks: the same handlers as :mod:`.flask`, translated.

    from chatwoot_mirror.integrations.asgi import create_provider_app
    app.mount("/uazapi", create_provider_app(mirror, UazapiAdapter.from_env(), my_bot_fn))
"""

from __future__ import annotations

from typing import Any

from chatwoot_mirror.asgi import App
from chatwoot_mirror.mirror import Mirror

from ._routes import provider_routes, typebot_routes
from .base import BotFunction, ChannelAdapter


def create_provider_app(mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction,
                        **options: Any) -> App:
    """``POST /webhook`` for ``adapter``'s webhooks (see :class:`~.inbound.InboundHandler`)."""
    return App(provider_routes(mirror, adapter, bot_fn, **options))


def create_typebot_app(mirror: Mirror, token: str) -> App:
    """``POST /handoff`` for a Typebot HTTP Request block (see
    :class:`~.typebot.TypebotHandoffHandler`)."""
    return App(typebot_routes(mirror, token))
