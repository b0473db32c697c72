"""`RuntimeTarget`: the control plane's view of a ``Runtime`` (implements ``ControlTarget``).

HTTP (``POST /setParameters``) and Redis (``PARAMETER_UPDATES``) parameter updates both go
through ``apply_parameters``, serialized by one lock; readiness is judged from state alone
(``readiness``); the NODE_METRICS exporter takes ``snapshot``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from .. import _json
from ..context import Context
from ..control.target import DRAINING, STARTING
from ..errors import ParameterLimitError, UpdateResultError
from ..metrics import AIOSMetrics
from ..settings import Settings
from .deadletter import DeadLetters
from .hardware import hardware_snapshot

__all__ = ["Adapted", "RuntimeTarget", "readiness"]

log = logging.getLogger(__name__)


class Adapted(Protocol):
    """What the adapter reads of a ``Runtime`` (which also gets a ``lease`` once its block is
    constructed: ``lease.renewed_at``, monotonic seconds, or None before the first renewal)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def block(self) -> Any: ...  # None until the block's constructor returns
    @property
    def draining(self) -> bool: ...
    @property
    def context(self) -> Context: ...
    @property
    def metrics(self) -> AIOSMetrics: ...
    @property
    def live_problem(self) -> str: ...  # set by the job watchdog; "" = live


def readiness(
    *, constructed: bool, draining: bool, renewed_at: float | None, ttl_s: float, now: float
) -> str:
    """Why an instance is not ready ("" when it is).

    Ready means constructed, serving (the lease keeper runs: ``renewed_at`` is set), not
    draining, and the lease renewed within its TTL, i.e. the instance Redis answered recently
    (renewals run every TTL/3). ``renewed_at`` and ``now`` are ``time.monotonic()`` seconds.
    """
    if not constructed:
        return STARTING
    if draining:
        return DRAINING
    if renewed_at is None:
        return "starting: not serving yet"
    age = now - renewed_at
    if age > ttl_s:
        return f"Redis unreachable: the lease was last renewed {age:.1f}s ago"
    return ""


class RuntimeTarget:
    """Adapts a Runtime to ``ControlTarget``; one per Runtime (it holds the parameter lock)."""

    def __init__(self, runtime: Adapted) -> None:
        self.runtime = runtime
        self._param_lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """The runtime's settings."""
        return self.runtime.settings

    def constructed(self) -> bool:
        """Whether the block's constructor has returned."""
        return self.runtime.block is not None

    @property
    def metrics(self) -> AIOSMetrics:
        """The block's registry (``context.metrics``)."""
        return self.runtime.metrics

    def not_live(self) -> str:
        """The runtime's ``live_problem`` ("" while live)."""
        return self.runtime.live_problem

    def not_ready(self) -> str:
        """``readiness`` of the runtime now."""
        rt = self.runtime
        lease = getattr(rt, "lease", None)  # set once the block is constructed
        return readiness(
            constructed=rt.block is not None,
            draining=rt.draining,
            renewed_at=None if lease is None else lease.renewed_at,
            ttl_s=rt.settings.lease_ttl_s,
            now=time.monotonic(),
        )

    def health(self) -> Any:
        """The block's health() (default: healthy)."""
        health = getattr(self.runtime.block, "health", None)
        return health() if health is not None else {"status": "healthy"}

    def management(self, action: str, data: Any) -> Any:
        """The block's management(action, data); without one, a message saying so."""
        management = getattr(self.runtime.block, "management", None)
        if management is None:
            return {"message": f"block defines no management(); action {action!r} ignored"}
        return management(action, data)

    def apply_parameters(self, update: dict[str, Any]) -> tuple[bool, Any]:
        """Validate with on_update first; only on success change block_init_parameters.

        Raises UpdateResultError, changing nothing, when on_update accepts the update with a
        value that is not JSON (it could not be sent back as ``updated_parameters``).
        """
        on_update = getattr(self.runtime.block, "on_update", None)
        with self._param_lock:
            if on_update is None:
                ok, value = True, update
            else:
                try:
                    ok, value = on_update(update)
                except Exception as exc:
                    log.exception("on_update raised")
                    return False, f"on_update raised {exc!r}"
            if ok:
                _check_json(update, value)
                changed = value if isinstance(value, dict) else update
                params = self.runtime.context.block_init_parameters
                _check_bounds({**params, **changed})
                params.update(changed)
            return bool(ok), value

    def exposition(self) -> bytes:
        """The Prometheus text exposition of the block's registry."""
        return self.runtime.metrics.expose()

    def dead_letter(self, raw: bytes, *, outcome: str, stage: str, reason: str) -> bytes:
        """A dead-letter record of this instance holding ``raw`` as its packet."""
        s = self.runtime.settings
        return DeadLetters(s.block_id, s.instance_id).record(outcome, stage, reason, [raw]).data

    def snapshot(self) -> dict[str, Any]:
        """The NODE_METRICS document: the block's metrics and this host's hardware."""
        return self.runtime.metrics.snapshot(self.settings.node_id, hardware_snapshot())


MAX_PARAMETER_KEYS = 1024
MAX_PARAMETERS_BYTES = 1 << 20


def _check_bounds(merged: dict[str, Any]) -> None:
    """Raise ParameterLimitError unless the merged parameters stay within their bounds:
    updates come from the network, and every one is kept for the life of the process."""
    if len(merged) > MAX_PARAMETER_KEYS:
        raise ParameterLimitError(
            f"the parameters would hold {len(merged)} keys (at most {MAX_PARAMETER_KEYS}); "
            "nothing changed"
        )
    size = len(_json.dumps_bytes(merged))
    if size > MAX_PARAMETERS_BYTES:
        raise ParameterLimitError(
            f"the parameters would be {size} bytes as JSON (at most {MAX_PARAMETERS_BYTES}); "
            "nothing changed"
        )


def _check_json(update: dict[str, Any], value: Any) -> None:
    """Raise UpdateResultError unless ``value`` (what on_update accepted with) is JSON."""
    try:
        _json.dumps_bytes(value)
    except (TypeError, ValueError) as exc:
        msg = f"on_update returned a value that is not JSON ({exc}); nothing changed"
        log.error("parameter update %s: %s", sorted(update), msg)
        raise UpdateResultError(msg) from None
