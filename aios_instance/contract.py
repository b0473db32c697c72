"""The user contract: what a block class provides. Users need not inherit from anything.

Only ``__init__(context)``, ``on_preprocess`` and ``on_data`` are required; the runtime supplies
defaults for the rest (see ``defaults`` below). The Protocols are for type checkers and docs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import ConfigError

if TYPE_CHECKING:
    from .packet import AIOSPacket
    from .results import OnDataResult, PreProcessResult

__all__ = [
    "BatchBlockProtocol",
    "BlockProtocol",
    "OnDataReturn",
    "PreprocessReturn",
    "accepts_is_ws",
    "check_block_class",
]

PreprocessReturn = tuple[bool, Any]
"""``(True, [PreProcessResult, ...])``, ``(True, PreProcessResult)`` or ``(False, "reason")``."""

OnDataReturn = tuple[bool, Any]
"""``(True, OnDataResult)``, ``(True, None)`` (held back) or ``(False, "reason")``."""


@runtime_checkable
class BlockProtocol(Protocol):
    """A block: constructed once with a Context, then called for every job."""

    def on_preprocess(self, packet: AIOSPacket) -> PreprocessReturn:
        """Called for every incoming (or muxer-merged) packet; splits it into entries."""

    def on_data(self, preprocessed_entry: PreProcessResult) -> OnDataReturn:
        """Called for every entry on_preprocess returned; produces the output."""

    def on_update(self, updated_parameters: dict[str, Any]) -> tuple[bool, Any]:
        """Called when parameters change (HTTP /setParameters or PARAMETER_UPDATES)."""

    def health(self) -> Any:
        """Called by GET /health; returns a JSON-serializable status."""

    def management(self, action: str, data: Any) -> Any:
        """Called by POST /mgmt with the action name and its data."""

    def get_muxer(self) -> Any:
        """Called once at start; returns a Muxer or None."""


class BatchBlockProtocol(Protocol):
    """A block that infers on many entries at once (optional ``on_data_batch``)."""

    def on_data_batch(
        self, entries: Sequence[PreProcessResult]
    ) -> Sequence[tuple[bool, OnDataResult | str | None]]:
        """Called with every entry of a claimed batch; returns one on_data-style tuple each."""


_REQUIRED = {
    "on_preprocess": "on_preprocess(self, packet) -> (True, [PreProcessResult, ...])",
    "on_data": "on_data(self, entry) -> (True, OnDataResult)",
}


def check_block_class(block_class: type[Any]) -> None:
    """Raise ConfigError naming the contract when ``block_class`` lacks a required callback
    (before it is constructed: a model is not loaded for nothing)."""
    missing = [name for name in _REQUIRED if not callable(getattr(block_class, name, None))]
    if not missing:
        return
    name = getattr(block_class, "__name__", repr(block_class))
    needs = "; ".join(_REQUIRED[m] for m in missing)
    raise ConfigError(
        f"{name} is not a block: it defines no {' and no '.join(missing)}. A block class "
        f"needs {needs} (see docs/pipeline.md)"
    )


def accepts_is_ws(fn: Callable[..., Any]) -> bool:
    """Whether ``on_data`` takes the older ``is_ws`` argument (inspected once, at start)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "is_ws" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
