"""`Context`: what a block receives in ``__init__``.

Every attribute always holds a working object (never a placeholder): metrics, sessions,
events and side_cars work in memory when no Redis is configured, so a block can be constructed
anywhere. The runtime builds it from settings and block data; tests use ``TestContext``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .events import BlockEvents
from .metrics import AIOSMetrics
from .sessions import SessionsManager
from .sidecars import BlockSideCars

__all__ = ["Context", "default_allocation_info"]


def default_allocation_info() -> dict[str, Any]:
    """The allocation of a block given no GPUs: ``{"gpus": [], "node_id", "cluster_id"}``.

    It also fills the keys a partial ``allocation_info`` leaves out (or sets to null).
    """
    return {"gpus": [], "node_id": "", "cluster_id": ""}


class Context:
    """Configuration and services handed to a block's constructor.

    Attributes are plain and assignable (the spec's tests replace them).
    """

    def __init__(
        self,
        *,
        block_id: str = "",
        instance_id: str = "",
        block_data: dict[str, Any] | None = None,
        block_init_data: dict[str, Any] | None = None,
        block_init_settings: dict[str, Any] | None = None,
        block_init_parameters: dict[str, Any] | None = None,
        allocation_info: dict[str, Any] | None = None,
        metrics: AIOSMetrics | None = None,
        sessions: SessionsManager | None = None,
        events: BlockEvents | None = None,
        side_cars: BlockSideCars | None = None,
    ) -> None:
        self.block_id = block_id
        self.instance_id = instance_id
        self.block_data: dict[str, Any] = block_data if block_data is not None else {}
        self.block_init_data = block_init_data if block_init_data is not None else {}
        self.block_init_settings = block_init_settings if block_init_settings is not None else {}
        self.block_init_parameters = (
            block_init_parameters if block_init_parameters is not None else {}
        )
        # A partial allocation is completed with the defaults for its missing keys.
        self.allocation_info = default_allocation_info()
        if allocation_info:
            self.allocation_info.update({k: v for k, v in allocation_info.items() if v is not None})
        # `is None`, not `or`: an empty SessionsManager (or sidecar set) is falsy but valid.
        if metrics is None:
            metrics = AIOSMetrics(block_id=block_id, instance_id=instance_id)
        self.metrics = metrics
        self.sessions = sessions if sessions is not None else SessionsManager()
        self.events = events if events is not None else BlockEvents(block_id=block_id)
        self.side_cars = side_cars if side_cars is not None else BlockSideCars(block_id, {})
        self._ws_writer: Callable[[str, Any], bool] | None = None

    def write_ws(self, session_id: str, message: Any) -> bool:
        """Send ``message`` (a JSON value, by convention ``{"delta": "..."}`` and at the end
        ``{"delta": "[END_OF_STREAM]"}``) to the clients streaming ``session_id``: its
        WebSocket connections and a ``POST /infer?stream=true`` request for it. Never blocks:
        True when at least one client's send queue took it, False when no client streams
        this session here (or every one's queue was full; see docs/ingest.md)."""
        writer = self._ws_writer
        return writer(session_id, message) if writer is not None else False

    def attach_streams(self, writer: Callable[[str, Any], bool] | None) -> None:
        """Called by the runtime: where ``write_ws`` sends (None: nowhere)."""
        self._ws_writer = writer

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(block_id={self.block_id!r}, instance_id={self.instance_id!r})"
        )
