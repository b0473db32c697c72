"""How many packets to claim at once.

Claims adapt to how long the block takes per packet, so that a claim holds about
``target_s`` of work: fast blocks get full batches, a slow one does not sit on packets
another instance could serve, and a drain stays short. The first claim is small, until the
block's speed is known.
"""

from __future__ import annotations

__all__ = ["ClaimSize"]

_FIRST_CLAIM = 8  # packets in the first claim, before the block's speed is known


class ClaimSize:
    """The size of the next claim, from the time the last full one took."""

    def __init__(self, max_count: int, target_s: float) -> None:
        self.max_count = max_count
        self.target_s = target_s
        self.next = min(max_count, _FIRST_CLAIM)

    def observe(self, seconds: float, count: int) -> None:
        """A claim of ``count`` packets took ``seconds`` to process."""
        if count < self.next:
            return  # a short claim (the input ran dry) says little about speed
        per_packet_s = seconds / count
        if per_packet_s * self.max_count <= self.target_s:
            self.next = self.max_count
        else:
            fits = int(self.target_s / per_packet_s)
            self.next = max(1, min(self.max_count, fits))
