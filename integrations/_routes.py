"""The provider routes, framework-neutral: the Flask blueprints (:mod:`.flask`) and the
ASGI apps (:mod:`.asgi`) serve these tables and only translate."""

from __future__ import annotations

from typing import Any

from chatwoot_mirror import redaction
from chatwoot_mirror.mirror import Mirror
from chatwoot_mirror.routes import Route

from .base import BotFunction, ChannelAdapter
from .inbound import InboundHandler
from .typebot import TypebotHandoffHandler

#: a Typebot HTTP Request block's body is a handful of variables
TYPEBOT_MAX_BYTES = 64 * 1024


def provider_routes(mirror: Mirror, adapter: ChannelAdapter, bot_fn: BotFunction,
                    **options: Any) -> list[Route]:
    """``POST /webhook`` for ``adapter``'s webhooks (see :class:`~.inbound.InboundHandler`)."""
    handler = InboundHandler(mirror, adapter, bot_fn, **options)
    return [Route("POST", "/webhook", handler.handle, handler.max_bytes)]


def typebot_routes(mirror: Mirror, token: str) -> list[Route]:
    """``POST /handoff`` for a Typebot HTTP Request block (see
    :class:`~.typebot.TypebotHandoffHandler`)."""
    handler = TypebotHandoffHandler(mirror, token)
    redaction.install([token])  # it may arrive as ?token= in a logged request line
    return [Route("POST", "/handoff", handler.handle, TYPEBOT_MAX_BYTES)]
