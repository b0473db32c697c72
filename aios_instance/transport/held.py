"""What a source holds claimed, kept by claim rather than by packet (one entry per claim on
the hot path): enough to acknowledge a whole claim by position, and to know when the caller
keeps up, so that the next claim can be made ahead.

It is a belief, not the truth: the processing list in Redis is. The trim script checks the
claim's ends before it trims, so a belief gone wrong (a list requeued by another instance,
identical packets) costs a fallback to acknowledging by name, never a packet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Claim

__all__ = ["HeldClaims"]


@dataclass(eq=False, slots=True)
class _Held:
    """One claim whose packets are all still held, in claim order. ``first``: it holds no
    redelivery (a redelivery's attempt count is cleared by an acknowledgement by name);
    ``full``: it also holds as many packets as were asked for (the input is not dry)."""

    raws: list[bytes]
    first: bool
    full: bool


class HeldClaims:
    """The claims a source holds, oldest first, and the batches claimed ahead."""

    def __init__(self) -> None:
        self._whole: deque[_Held] = deque()  # claims with every packet still held
        self._loose = 0  # held packets of claims acknowledged in part
        self._ahead: deque[list[Claim]] = deque()  # claimed ahead, not handed out yet

    def add(self, claims: list[Claim], asked: int, *, ahead: bool = False) -> None:
        """A claim was made (``ahead``: before the caller asked for it)."""
        if claims:
            first = all(c.attempt == 1 for c in claims)
            self._whole.append(_Held([c.raw for c in claims], first, len(claims) >= asked))
            if ahead:
                self._ahead.append(claims)

    def take_ahead(self) -> list[Claim]:
        """The oldest batch claimed ahead ([] when there is none)."""
        return self._ahead.popleft() if self._ahead else []

    def drop_ahead(self) -> list[bytes]:
        """Every batch claimed ahead, to hand back (it was never handed out)."""
        raws = [c.raw for claims in self._ahead for c in claims]
        self._ahead.clear()
        return raws

    def side_of(self, acks: list[bytes]) -> str | None:
        """Where ``acks`` lie in the processing list when they are one whole claim: 'tail'
        (the oldest claim, nothing older held) or 'head' (the latest); else None."""
        if not acks or not self._whole:
            return None
        oldest, latest = self._whole[0], self._whole[-1]
        if self._loose == 0 and oldest.first and acks == oldest.raws:
            return "tail"
        return "head" if latest.first and acks == latest.raws else None

    def caller_keeps_up(self) -> bool:
        """The caller holds one claim (the one it was just given, or the one being
        acknowledged), full and without a redelivery: nothing it holds must come first."""
        handed_out = len(self._whole) - len(self._ahead)
        return handed_out == 1 and self._loose == 0 and self._whole[0].first and self._whole[0].full

    def acknowledged(self, acks: list[bytes], side: str | None) -> None:
        """``acks`` were acknowledged (``side``: by position)."""
        if side == "tail":
            self._whole.popleft()
        elif side == "head":
            self._whole.pop()
        elif acks:
            self.forget(acks)

    def forget(self, raws: Sequence[bytes]) -> None:
        """Packets acknowledged or released by name: the claims they belong to are no
        longer whole (their other packets count as loose)."""
        named = set(raws)
        matched = 0
        for held in [h for h in self._whole if not named.isdisjoint(h.raws)]:
            self._whole.remove(held)
            hits = sum(1 for raw in held.raws if raw in named)
            matched += hits
            self._loose += len(held.raws) - hits
        self._loose = max(0, self._loose - (len(raws) - matched))

    def clear(self) -> None:
        """Everything was handed back."""
        self._whole.clear()
        self._ahead.clear()
        self._loose = 0
