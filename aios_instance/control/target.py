"""`ControlTarget`: what the control plane needs from a running block, and nothing more.

The HTTP API (``api.py``) and the ``PARAMETER_UPDATES`` listener (``params.py``) depend on this
protocol, never on the runtime: ``aios_instance.runtime.target.RuntimeTarget`` implements it
over a ``Runtime``, and a test or another host may pass anything with these members.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..metrics import AIOSMetrics
from ..settings import Settings

__all__ = ["DRAINING", "STARTING", "ControlTarget"]

STARTING = "starting: the block is being constructed"
"""Why ``/ready``, ``/health``, ``/setParameters`` and ``/mgmt`` answer 503 while the block's
constructor runs."""

DRAINING = "draining: not taking new work"
"""Why ``/ready`` answers 503 once the instance is stopping."""


class ControlTarget(Protocol):
    """A running block as the control plane sees it."""

    @property
    def settings(self) -> Settings:
        """Called when the API or the listener starts: bind address, port, token, Redis URL."""
        ...

    @property
    def metrics(self) -> AIOSMetrics:
        """Called when the API starts: the block's registry, where the control plane's own
        series go (open connections, refused connections and requests)."""
        ...

    def constructed(self) -> bool:
        """Called before ``/health``, ``/setParameters`` and ``/mgmt``: False while the
        block's constructor runs (they answer 503 ``STARTING`` until then)."""
        ...

    def not_live(self) -> str:
        """Called on ``GET /live``, on the event loop: why the process should be restarted
        ("" when it is live, e.g. a job hung). From state alone: no I/O, nothing that blocks."""
        ...

    def not_ready(self) -> str:
        """Called on ``GET /ready``, on the event loop: why the instance should get no traffic
        ("" when it should). From state alone: no I/O, nothing that blocks."""
        ...

    def health(self) -> Any:
        """Called on ``GET /health``, on the health thread: the block's health() value."""
        ...

    def management(self, action: str, data: Any) -> Any:
        """Called on ``POST /mgmt``, on a callback thread: the block's answer to ``action``."""
        ...

    def apply_parameters(self, update: dict[str, Any]) -> tuple[bool, Any]:
        """Called on ``POST /setParameters`` and for each ``PARAMETER_UPDATES`` item:
        ``(accepted, value or reason)``; raises ``UpdateResultError`` when an accepted value
        is not JSON (nothing is changed then)."""
        ...

    def exposition(self) -> bytes:
        """Called on ``GET /metrics``, on the metrics thread: the Prometheus text exposition."""
        ...

    def dead_letter(self, raw: bytes, *, outcome: str, stage: str, reason: str) -> bytes:
        """Called when the listener drops an item: the record it pushes to ``{BLOCK_ID}_dead``."""
        ...
