"""Channel adapters, installed as ``chatwoot_mirror.integrations``: one module per provider,
one shared interface (:mod:`.base`).

* :class:`~.dialog360.Dialog360Adapter` (360dialog, Cloud API and On-Premise)
* :class:`~.uazapi.UazapiAdapter` (uazapiGO v2)
* :class:`~.zpro.ZproAdapter` (Z-PRO; partly inferred, see the module)
* :class:`~.typebot.TypebotBot` (Typebot's Chat API as the bot function)

:func:`~.inbound.handle_inbound` ties a parsed event, the host's bot function and the
mirror together; :mod:`.flask` mounts it as a webhook route.
"""

from chatwoot_mirror.relay import AgentAttachment, AgentMessage

from ._http import ProviderError, ProviderRejected, ProviderUnavailable
from .base import BotReply, ChannelAdapter, InboundEvent
from .dialog360 import Dialog360Adapter
from .inbound import InboundHandler, connect, handle_inbound, queue_inbound, register_bot
from .typebot import TypebotBot, TypebotHandoffHandler
from .uazapi import UazapiAdapter
from .zpro import ZproAdapter

__all__ = [
    "AgentAttachment",
    "AgentMessage",
    "BotReply",
    "ChannelAdapter",
    "Dialog360Adapter",
    "InboundEvent",
    "InboundHandler",
    "ProviderError",
    "ProviderRejected",
    "ProviderUnavailable",
    "TypebotBot",
    "TypebotHandoffHandler",
    "UazapiAdapter",
    "ZproAdapter",
    "connect",
    "handle_inbound",
    "queue_inbound",
    "register_bot",
]
