"""Argument types shared by the command-line programs."""

from __future__ import annotations

import argparse


def port_number(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535; anything else is a usage error, not a
    random port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535; 0 = any free)")
    return value
