"""The runtime's side of the block's own batchers.

A `TimeBasedBatcher` falls due with no packet to carry it out, so the
pipeline must know every one its block holds. `TimeBatchers` knows them two ways:

- at start, those the block keeps as attributes (for the startup warning, and for a batcher
  the block feeds from a thread of its own);
- the moment a batcher starts holding a batch while the pipeline runs the block's callbacks:
  `TimeBatchers` is a context manager the pipeline enters around every call into the block; it
  sets ``tools._batch_claims.claim`` for the thread, and the batcher calls it. So a batcher
  created later (lazily, per session, in a dict, inside a helper object) is found when it first
  holds something, which is the first moment it can fall due, and at no cost per packet.

The batchers are held weakly: one the block drops goes with it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..packet import AIOSPacket
from ..tools import TimeBasedBatcher, _batch_claims
from .outcome import Accumulator, Outcome

__all__ = ["TimeBatchers", "batch_packets", "packet_of", "reencode", "report_unflushed"]

log = logging.getLogger(__name__)


class TimeBatchers:
    """The block's TimeBasedBatchers (see the module docstring for how they are found).

    ``on_time``: the block has on_batch_timeout, so a due batch can be flushed by tick();
    without it a due batch stays in its batcher (the block's next add_to_batch returns it)
    and is no deadline, since nobody could act on it. drain() flushes every batcher anyway.
    """

    def __init__(self, block: Any, *, on_time: bool) -> None:
        self.on_time = on_time
        self._block_name = type(block).__name__
        self._known: weakref.WeakValueDictionary[int, TimeBasedBatcher] = (
            weakref.WeakValueDictionary()
        )
        self._outer: list[Callable[[TimeBasedBatcher], None] | None] = []
        self._claim = self.claim  # bound once: entering costs no allocation
        self._warned = False
        for value in list(getattr(block, "__dict__", {}).values()):
            if isinstance(value, TimeBasedBatcher):
                self.claim(value)

    def claim(self, batcher: TimeBasedBatcher) -> None:
        """Know this batcher from now on (called by the batcher itself; idempotent)."""
        if id(batcher) in self._known:
            return
        self._known[id(batcher)] = batcher
        if not self.on_time and not self._warned:
            self._warned = True
            log.warning(
                "block %s keeps a TimeBasedBatcher but defines no on_batch_timeout(batch): a "
                "due batch is not flushed on time; it stays in the batcher until the block's "
                "next add_to_batch() returns it, and items still held at shutdown are "
                "dead-lettered. Define on_batch_timeout(batch) to flush due batches on time.",
                self._block_name,
            )

    def __enter__(self) -> None:
        self._outer.append(_batch_claims.claim)
        _batch_claims.claim = self._claim

    def __exit__(self, *exc_info: object) -> None:
        _batch_claims.claim = self._outer.pop()

    def known(self) -> list[TimeBasedBatcher]:
        """The batchers known so far, in the order they became known."""
        return list(self._known.values())

    def due(self, now: float) -> Iterator[list[Any]]:
        """Take the batches due by ``now``, one by one (none without on_batch_timeout)."""
        if self.on_time:
            for batcher in self.known():
                batch = batcher.poll(now)
                if batch:
                    yield batch

    def flush_all(self) -> Iterator[list[Any]]:
        """At shutdown: take every held batch, one by one."""
        for batcher in self.known():
            batch = batcher.flush()
            if batch:
                yield batch

    def next_deadline(self) -> float | None:
        """When due() has work to do (None: nothing pending, or no on_batch_timeout)."""
        if not self.on_time or not self._known:
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


def report_unflushed(batch: list[Any], acc: Accumulator) -> None:
    """Shutdown, no on_batch_timeout: the held batch becomes one failure with its packets."""
    sources = [packet_of(item) for item in batch]
    packets = batch_packets(sources)
    reason = (
        f"time-based batch of {len(batch)} items still buffered at shutdown and the block "
        "defines no on_batch_timeout"
    )
    if len(packets) < len(batch):
        reason += f" ({len(batch) - len(packets)} of them are not packets: not kept)"
    first = next((p for p in sources if p is not None), None)
    acc.fail(Outcome.USER_ERROR, "batch", reason, first, packets)


def reencode(packet: AIOSPacket) -> bytes:
    """A packet's bytes, for one that was never seen serialized (b"" if it cannot be)."""
    try:
        return packet.SerializeToString()
    except Exception:
        return b""
