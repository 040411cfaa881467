"""``python -m chatwoot_mirror``: the ``chatwoot-mirror`` command."""

from .cli import main

raise SystemExit(main())
