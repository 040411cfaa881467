"""A runnable sample: a pt-BR FAQ bot behind uazapi/360dialog routes, mirrored into Chatwoot
(or the built-in emulator), with a web console. ``python -m sample_bot``."""

from .app import SampleBot, build

__all__ = ["SampleBot", "build"]
