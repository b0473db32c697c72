"""The runtime's side of the block's own batchers.

A `TimeBasedBatcher` falls due with no packet to carry it out, so the
pipeline must know every one its block holds. `TimeBatchers` knows them two ways:

- at start, those the block keeps as attributes (for a batcher the block feeds from a thread
  of its own);
- the moment a batcher starts holding a batch while the pipeline runs the block's callbacks:
  `TimeBatchers` is a context manager the pipeline enters around every call into the block; it
  sets ``batchers._batch_claims.claim`` for the thread, and the batcher calls it. So a batcher
  created later (lazily, per session, in a dict, inside a helper object) is found when it first
  holds something, which is the first moment it can fall due, and at no cost per packet.

The batchers are held weakly: one the block drops goes with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import _json
from ..batchers import TimeBasedBatcher, _batch_claims
from ..packet import AIOSPacket
from ..results import OnDataResult

__all__ = ["TimeBatchers", "batch_output", "batch_packets", "packet_of", "reencode"]


class TimeBatchers:
    """The block's TimeBasedBatchers (see the module docstring for how they are found).

    Every batcher's due batch is taken by tick() (the pipeline hands it to the batcher's
    ``flush_callback``, the block's ``on_batch_timeout`` or the spec's ``{"batch": [...]}``
    output); drain() takes whatever is held at shutdown the same way.
    """

    def __init__(self, block: Any) -> None:
        self._known: weakref.WeakValueDictionary[int, TimeBasedBatcher] = (
            weakref.WeakValueDictionary()
        )
        self._outer: list[Callable[[TimeBasedBatcher], None] | None] = []
        self._claim = self.claim  # bound once: entering costs no allocation
        for value in list(getattr(block, "__dict__", {}).values()):
            if isinstance(value, TimeBasedBatcher):
                self.claim(value)

    def claim(self, batcher: TimeBasedBatcher) -> None:
        """Know this batcher from now on (called by the batcher itself; idempotent)."""
        self._known.setdefault(id(batcher), batcher)

    def __enter__(self) -> None:
        self._outer.append(_batch_claims.claim)
        _batch_claims.claim = self._claim

    def __exit__(self, *exc_info: object) -> None:
        _batch_claims.claim = self._outer.pop()

    def known(self) -> list[TimeBasedBatcher]:
        """The batchers known so far, in the order they became known."""
        return list(self._known.values())

    def due(self, now: float) -> Iterator[tuple[TimeBasedBatcher, list[Any]]]:
        """Take the batches due by ``now``, one by one, each with its batcher."""
        for batcher in self.known():
            batch = batcher.poll(now)
            if batch:
                yield batcher, batch

    def flush_all(self) -> Iterator[tuple[TimeBasedBatcher, list[Any]]]:
        """At shutdown: take every held batch, one by one, each with its batcher."""
        for batcher in self.known():
            batch = batcher.flush()
            if batch:
                yield batcher, batch

    def next_deadline(self) -> float | None:
        """When due() has work to do (None: nothing pending)."""
        if not self._known:
            return None
        deadlines = [b.next_deadline() for b in self.known()]
        return min((d for d in deadlines if d is not None), default=None)


def packet_of(item: Any) -> AIOSPacket | None:
    """The packet a batch item stands for: the item itself, or its ``.packet``."""
    if isinstance(item, AIOSPacket):
        return item
    packet = getattr(item, "packet", None)
    return packet if isinstance(packet, AIOSPacket) else None


def batch_packets(sources: Iterable[AIOSPacket | None]) -> tuple[bytes, ...]:
    """The serialized packets of a batch's items (items that are no packet are left out)."""
    raws = (reencode(pkt) for pkt in sources if pkt is not None)
    return tuple(raw for raw in raws if raw)


def batch_output(batch: list[Any]) -> OnDataResult:
    """A due batch's output when nobody takes it: the spec's ``{"batch": [...]}``, one value per
    item (a packet's data parsed from JSON, an OnDataResult's output, or the item itself)."""
    return OnDataResult(output={"batch": [_value(item) for item in batch]})


def _value(item: Any) -> Any:
    if isinstance(item, OnDataResult):
        return item.output
    packet = packet_of(item)
    if packet is None:
        return item
    if isinstance(packet.data, str):
        try:
            return _json.loads(packet.data) if packet.data else None
        except ValueError:
            return packet.data
    return packet.data


def reencode(packet: AIOSPacket) -> bytes:
    """A packet's bytes, for one that was never seen serialized (b"" if it cannot be)."""
    try:
        return packet.SerializeToString()
    except Exception:
        return b""
