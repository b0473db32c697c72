"""The user contract: what a block class provides. Users need not inherit from anything.

Only ``__init__(context)``, ``on_preprocess`` and ``on_data`` are required; the runtime supplies
defaults for the rest (see ``defaults`` below). The Protocols are for type checkers and docs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .packet import AIOSPacket
    from .results import OnDataResult, PreProcessResult

__all__ = ["BatchBlockProtocol", "BlockProtocol", "OnDataReturn", "PreprocessReturn"]

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
