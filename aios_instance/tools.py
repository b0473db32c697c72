"""Job grouping tools: `Muxer`, `Batcher` and `TimeBasedBatcher`.

The API is the one in the SDK spec (``process_packet`` / ``add_to_batch``), with what a
long-running runtime needs on top of it:

- ``Muxer`` groups packets by ``(session_id, seq_no)`` and merges a full group into one packet
  whose ``data`` is ``{"inputs": [...]}`` as a `MuxedData` (the JSON text, readable as the
  dict). ``_merge_packets(packets)`` is the overridable merge step; ``store``/``counts`` are
  read-only views of the open groups; ``is_buffered(packet)`` tells a packet the muxer holds
  from one it filtered out. Incomplete groups expire after ``ttl_s`` and at most
  ``max_groups`` are held; expired and evicted groups are handed back by ``expire()`` (evicted
  ones also by ``take_evicted()``) so the runtime can report them (never kept forever, never
  dropped silently).
- ``Batcher`` and ``TimeBasedBatcher`` live in `aios_instance.batchers` and are re-exported
  here, where the spec imports them from.
- Every class is thread-safe behind one lock, held only for the bookkeeping.

Clocks are injectable (``clock=``) and must not go backwards; the default is
``time.monotonic``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from .batchers import Batcher, Clock, TimeBasedBatcher, _check_count, _check_seconds
from .packet import AIOSPacket, FileList, MuxedData, packet_json

__all__ = ["Batcher", "ExpiredGroup", "GroupKey", "MuxedData", "Muxer", "TimeBasedBatcher"]

logger = logging.getLogger(__name__)

GroupKey = tuple[str, int]
"""What the Muxer groups by: ``(session_id, seq_no)``."""

Reason = Literal["expired", "evicted", "drained"]
_V = TypeVar("_V")


@dataclass(frozen=True)
class ExpiredGroup:
    """An incomplete Muxer group that was removed: by age, by eviction or by ``drain()``."""

    key: GroupKey
    packets: tuple[AIOSPacket, ...]
    received: int
    expected: int
    age_s: float
    reason: Reason = "expired"

    @property
    def session_id(self) -> str:
        """The group's session_id."""
        return self.key[0]

    @property
    def seq_no(self) -> int:
        """The group's seq_no."""
        return self.key[1]


@dataclass
class _Group:
    started: float
    due: float  # started + ttl_s, stored so expire() agrees exactly with next_deadline()
    packets: list[AIOSPacket] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)

    def close(self, key: GroupKey, expected: int, now: float, reason: Reason) -> ExpiredGroup:
        packets = tuple(self.packets)
        return ExpiredGroup(key, packets, len(packets), expected, now - self.started, reason)


def _parse(packet: AIOSPacket) -> Any:
    # An empty payload is what make_packet(None) produces; JSON has no empty document, so
    # it becomes None rather than an error.
    if isinstance(packet.data, (str, bytes)) and not packet.data:
        return None
    return packet_json(packet)


def _merge(packets: list[AIOSPacket], inputs: list[Any]) -> AIOSPacket:
    merged = copy.deepcopy(packets[0])
    merged.data = MuxedData({"inputs": inputs})
    merged.files = FileList(f for p in packets for f in p.files)
    return merged


class _GroupsView(Mapping[GroupKey, _V], Generic[_V]):
    """A live, read-only view of a Muxer's open groups (each read takes the muxer's lock)."""

    __slots__ = ("_muxer", "_value")

    def __init__(self, muxer: Muxer, value: Callable[[_Group], _V]) -> None:
        self._muxer = muxer
        self._value = value

    def __getitem__(self, key: GroupKey) -> _V:
        with self._muxer._lock:
            return self._value(self._muxer._groups[key])

    def __iter__(self) -> Iterator[GroupKey]:
        with self._muxer._lock:
            keys = list(self._muxer._groups)
        return iter(keys)

    def __len__(self) -> int:
        with self._muxer._lock:
            return len(self._muxer._groups)

    def __repr__(self) -> str:
        with self._muxer._lock:
            items = {k: self._value(g) for k, g in self._muxer._groups.items()}
        return f"<read-only view {items!r}>"


class Muxer:
    """Merge every N packets that share ``(session_id, seq_no)`` into one packet."""

    def __init__(
        self,
        N: int,
        ttl_s: float = 60.0,
        max_groups: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        _check_count("N", N)
        _check_seconds("ttl_s", ttl_s)
        _check_count("max_groups", max_groups)
        self.N = N
        self.ttl_s = float(ttl_s)
        self.max_groups = max_groups
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is start order (clock read under the lock), so the oldest group is
        # always first: expiry and eviction look only at the front.
        self._groups: dict[GroupKey, _Group] = {}
        self._evicted: list[tuple[float, ExpiredGroup]] = []
        # A subclass's _merge_packets is called; ours is bypassed for the merge that reuses
        # the values parsed on arrival.
        self._custom_merge = type(self)._merge_packets is not Muxer._merge_packets

    def process_packet(self, packet: AIOSPacket) -> AIOSPacket | None:
        """Buffer a packet; return the merged packet when its group is complete, else None."""
        if self.N == 1:
            return packet
        value = _parse(packet)  # raises DataDecodeError before any state changes
        key: GroupKey = (packet.session_id, packet.seq_no)
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._open(key)
            group.packets.append(packet)
            group.inputs.append(value)
            if len(group.packets) < self.N:
                return None
            del self._groups[key]
        if not self._custom_merge:
            return _merge(group.packets, group.inputs)
        merged = self._merge_packets(list(group.packets))
        if isinstance(merged, AIOSPacket) and type(merged.data) is dict:
            # The spec's reference merge assigns a plain dict: give it the text form too, so
            # json.loads(packet.data) works downstream as it does on our own merge.
            with contextlib.suppress(TypeError, ValueError):  # not JSON: left a plain dict
                merged.data = MuxedData(merged.data)
        return merged

    def _merge_packets(self, packets: Sequence[AIOSPacket]) -> AIOSPacket | None:
        """Merge one complete group (N packets, in arrival order) into the packet returned.

        Override it to merge differently; ``process_packet`` calls it once per complete group,
        outside the lock. The default: a deep copy of the first packet whose ``data`` is
        ``{"inputs": [each packet's data, parsed]}`` and whose files are all the group's files.
        A plain dict in the returned ``data`` becomes a `MuxedData` (when JSON can hold it).
        """
        group = list(packets)
        return _merge(group, [_parse(p) for p in group])

    @property
    def store(self) -> Mapping[GroupKey, list[AIOSPacket]]:
        """Read-only live view: open group key → its packets so far (a copy per read).

        A subclass written like the spec's reference class assigns its own ``store`` and
        ``counts`` (and keeps its groups there): what it assigns is what it reads back."""
        own: Mapping[GroupKey, list[AIOSPacket]] | None = self.__dict__.get("_own_store")
        return own if own is not None else _GroupsView(self, lambda group: list(group.packets))

    @store.setter
    def store(self, value: Mapping[GroupKey, list[AIOSPacket]]) -> None:
        self.__dict__["_own_store"] = value

    @property
    def counts(self) -> Mapping[GroupKey, int]:
        """Read-only live view: open group key → number of packets received so far."""
        own: Mapping[GroupKey, int] | None = self.__dict__.get("_own_counts")
        return own if own is not None else _GroupsView(self, lambda group: len(group.packets))

    @counts.setter
    def counts(self, value: Mapping[GroupKey, int]) -> None:
        self.__dict__["_own_counts"] = value

    def is_buffered(self, packet: AIOSPacket) -> bool:
        """Whether this very packet object waits in an open group.

        After ``process_packet`` returned None it tells a buffered packet (True) from one the
        muxer dropped (False: a subclass that filters packets out). A subclass that buffers
        packets somewhere else must override it.
        """
        key = (packet.session_id, packet.seq_no)
        with self._lock:
            group = self._groups.get(key)
            return group is not None and any(p is packet for p in group.packets)

    def take_evicted(self) -> list[ExpiredGroup]:
        """Remove and return the groups evicted (``max_groups``) since the last call or
        ``expire()``; the runtime collects them right away, before another group can reuse
        their key."""
        with self._lock:
            if not self._evicted:
                return []
            out = [group for _, group in self._evicted]
            self._evicted.clear()
        return out

    def _open(self, key: GroupKey) -> _Group:
        now = self._clock()
        if len(self._groups) >= self.max_groups:
            old_key = next(iter(self._groups))
            old = self._groups.pop(old_key).close(old_key, self.N, now, "evicted")
            self._evicted.append((now, old))
            logger.debug("muxer evicted group %r (max_groups=%d)", old_key, self.max_groups)
        group = self._groups[key] = _Group(now, now + self.ttl_s)
        return group

    def expire(self, now: float | None = None) -> list[ExpiredGroup]:
        """Remove and return evicted groups and groups whose age reached ``ttl_s``."""
        with self._lock:
            now = self._clock() if now is None else now
            out = [group for _, group in self._evicted]
            self._evicted.clear()
            while self._groups:
                key, group = next(iter(self._groups.items()))
                if now < group.due:
                    break
                del self._groups[key]
                out.append(group.close(key, self.N, now, "expired"))
        return out

    def next_deadline(self) -> float | None:
        """Clock time at which ``expire()`` has something to return; None when nothing is held."""
        with self._lock:
            if self._evicted:
                return self._evicted[0][0]  # already due: collect evictions right away
            if not self._groups:
                return None
            return next(iter(self._groups.values())).due

    @property
    def open_groups(self) -> int:
        """Number of incomplete groups currently buffered (evicted ones not included)."""
        with self._lock:
            return len(self._groups)

    def pending_packets(self) -> list[AIOSPacket]:
        """Every packet still held (open and evicted-but-unreported groups), oldest first."""
        with self._lock:
            held = [p for _, g in self._evicted for p in g.packets]
            held.extend(p for g in self._groups.values() for p in g.packets)
        return held

    def drain(self) -> list[ExpiredGroup]:
        """Remove and return every held group (evicted ones first), e.g. at shutdown."""
        with self._lock:
            now = self._clock()
            out = [group for _, group in self._evicted]
            out.extend(g.close(k, self.N, now, "drained") for k, g in self._groups.items())
            self._evicted.clear()
            self._groups.clear()
        return out
