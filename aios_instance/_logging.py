"""Logging for a block process: one format, the level from ``AIOS_LOG_LEVEL``.

The library never configures handlers when it is imported; the entry points that own the
process do (``Block(...).run()``, the CLI), and only when the program has not configured
logging itself (the root logger has no handler), so an embedding application keeps its own.
"""

from __future__ import annotations

import logging

__all__ = ["FORMAT", "configure"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> bool:
    """Send log records to stderr at ``level``, unless logging is configured already;
    whether it did."""
    root = logging.getLogger()
    if root.handlers:
        return False
    logging.basicConfig(level=level.upper(), format=FORMAT)
    return True
