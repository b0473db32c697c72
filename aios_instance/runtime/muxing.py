"""The runtime's side of a muxer: what the pipeline uses of it, and its bookkeeping.

**Muxers.** `RuntimeMuxer` is what the pipeline uses of a muxer; `tools.Muxer` implements all
of it. A block's own muxer (the spec's reference class, or one written for the older SDK) may
have only ``process_packet`` (`PacketMuxer`): `Muxing` resolves the optional methods once, when
it is built, and puts a default in for each one missing (nothing evicted, expired or drained,
no deadline; no ``is_buffered``: the muxer owns what it takes, said once in a warning). Per
packet it then calls stored bound methods, and never asks the muxer what it has.

A `tools.Muxer` subclass written like the spec's reference class (its own ``__init__``; Muxer's
state never set up) is used the same way, through its ``process_packet`` only. A merged packet
whose ``data`` is a dict or list (the reference merge assigns a dict) gets its JSON text once,
when it is handed over (a dict becomes a `MuxedData`).

`Muxing` keeps the bytes of the packets the muxer buffers, by group key, until the group ends:
merged, expired, evicted or handed back at shutdown. Only what ``is_buffered`` confirms goes
in, so a packet the muxer filters out is never kept, and a group that ends is reported once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from .. import _json
from ..packet import AIOSPacket, MuxedData
from ..tools import GroupKey, Muxer
from .batching import reencode
from .outcome import Accumulator, Outcome, raised

__all__ = [
    "MuxGroup",
    "Muxing",
    "PacketMuxer",
    "RuntimeMuxer",
]

log = logging.getLogger(__name__)

Buffered = dict[GroupKey, list[tuple[AIOSPacket, bytes]]]


@runtime_checkable
class MuxGroup(Protocol):
    """A group a muxer removed (expired, evicted or drained), as `tools.ExpiredGroup`."""

    @property
    def key(self) -> GroupKey:
        """Called to know the group's ``(session_id, seq_no)``."""

    @property
    def packets(self) -> Sequence[AIOSPacket]:
        """Called to know the packets the group held."""

    @property
    def expected(self) -> int:
        """Called to say how many packets the group waited for."""

    @property
    def reason(self) -> str:
        """Called to say why it ended: ``expired``, ``evicted`` or ``drained``."""


@runtime_checkable
class PacketMuxer(Protocol):
    """What a block's ``get_muxer()`` must return: the spec's reference Muxer has only this."""

    def process_packet(self, packet: AIOSPacket) -> AIOSPacket | None:
        """Called with each packet; returns the merged packet when a group completes."""


@runtime_checkable
class RuntimeMuxer(PacketMuxer, Protocol):
    """Everything the pipeline uses of a muxer (`tools.Muxer` has it all)."""

    def is_buffered(self, packet: AIOSPacket) -> bool:
        """Called after process_packet returned None: does the muxer hold this packet?"""

    def take_evicted(self) -> Iterable[MuxGroup]:
        """Called after each packet: groups evicted since the last call."""

    def expire(self, now: float) -> Iterable[MuxGroup]:
        """Called at the muxer's deadline: evicted groups and groups older than their TTL."""

    def drain(self) -> Iterable[MuxGroup]:
        """Called at shutdown: every group still held."""

    def next_deadline(self) -> float | None:
        """Called to know when expire() has work (None: never)."""


def _no_groups() -> tuple[MuxGroup, ...]:
    return ()


def _none_expire(now: float) -> tuple[MuxGroup, ...]:
    return ()


def _no_deadline() -> None:
    return None


def _owned_by_muxer(packet: AIOSPacket) -> bool:
    return False  # a muxer without is_buffered: what it takes is its own (warned at start)


class _Group(NamedTuple):
    """A removed group, read once from whatever the muxer returned."""

    key: GroupKey | None
    packets: tuple[AIOSPacket, ...]
    expected: Any
    reason: Any

    @classmethod
    def of(cls, group: Any) -> _Group:
        # Read leniently: a user muxer's own group type may have only part of MuxGroup.
        packets = tuple(getattr(group, "packets", ()))
        key = getattr(group, "key", None)
        if key is None and packets:  # what the muxer groups by, so the kept bytes are found
            key = (packets[0].session_id, packets[0].seq_no)
        expected = getattr(group, "expected", "?")
        return cls(key, packets, expected, getattr(group, "reason", "expired"))


class Muxing:
    """The pipeline's side of one muxer: feeds it and keeps the bytes of what it buffers."""

    def __init__(self, muxer: PacketMuxer, block_name: str) -> None:
        self.muxer = muxer
        self._process: Callable[[AIOSPacket], AIOSPacket | None] = muxer.process_packet
        # A Muxer subclass written like the spec's reference class (its own __init__, which
        # never runs Muxer's) has only its process_packet to go by: Muxer's others need state.
        spec_style = isinstance(muxer, Muxer) and "_groups" not in vars(muxer)
        has = object() if spec_style else muxer
        self._is_buffered: Callable[[AIOSPacket], bool] = _resolve(
            has, "is_buffered", _owned_by_muxer
        )
        self._take_evicted: Callable[[], Iterable[Any]] = _resolve(has, "take_evicted", _no_groups)
        self._expire: Callable[[float], Iterable[Any]] = _resolve(has, "expire", _none_expire)
        self._drain: Callable[[], Iterable[Any]] = _resolve(has, "drain", _no_groups)
        self._next_deadline: Callable[[], float | None] = _resolve(
            has, "next_deadline", _no_deadline
        )
        self._buffered: Buffered = {}
        if self._is_buffered is _owned_by_muxer:
            log.warning(
                "the muxer %s of block %s has no is_buffered(packet): every packet it returns "
                "None for is acknowledged as taken by it, so what it buffers is lost if the "
                "process stops (at-least-once delivery ends at this muxer)",
                type(muxer).__name__,
                block_name,
            )

    def feed(
        self, packet: AIOSPacket, raw: bytes, acc: Accumulator
    ) -> tuple[AIOSPacket, tuple[bytes, ...]] | None:
        """Hand a packet to the muxer: the packet to go on with and the bytes it stands for,
        or None when the muxer kept it (or failed, recorded in ``acc``)."""
        key = (packet.session_id, packet.seq_no)
        try:
            merged = self._process(packet)
        except Exception as exc:
            raws = (*self._release_orphans(key, acc), raw)
            acc.reject("mux", raised("muxer", exc), packet, raws)
            self._collect_evicted(acc)
            return None
        if merged is None:
            self._buffer_or_drop(packet, raw, key, acc)
            return None
        if merged is packet:
            return merged, (raw,)
        _json_text(merged)
        entries = self._buffered.pop(key, None)
        if not entries:
            return merged, (raw,)
        earlier = [r for _, r in entries]
        acc.released_raws.extend(earlier)
        return merged, (*earlier, raw)

    def expire(self, now: float, acc: Accumulator) -> None:
        """Report the groups that expired by ``now`` (each once: the muxer removes them)."""
        self._report(self._expire(now), acc)

    def next_deadline(self) -> float | None:
        """When expire() has work to do (None: nothing pending)."""
        return self._next_deadline()

    def hand_back(self) -> list[bytes]:
        """At shutdown: empty the muxer and return the inputs it buffered, to requeue them."""
        raws: list[bytes] = []
        for group in self._drain():
            raws.extend(self._group_raws(_Group.of(group)))
        # Whatever is still unacknowledged but was not in a drained group goes back too.
        for entries in self._buffered.values():
            raws.extend(raw for _, raw in entries if raw)
        self._buffered.clear()
        return raws

    def buffered_raws(self) -> list[bytes]:
        """The bytes kept for packets the muxer buffers (oldest group first)."""
        return [raw for entries in self._buffered.values() for _, raw in entries]

    def _buffer_or_drop(
        self, packet: AIOSPacket, raw: bytes, key: GroupKey, acc: Accumulator
    ) -> None:
        """process_packet returned None: the muxer buffers the packet, or it dropped it."""
        try:
            buffered = self._is_buffered(packet)
        except Exception:
            log.exception("muxer is_buffered() failed; the packet is kept as buffered")
            buffered = True
        if buffered:
            self._buffered.setdefault(key, []).append((packet, raw))
            acc.waiting_raws.append(raw)
        else:
            # Filtered out (or owned) by the muxer: finished (acknowledged), counted as held.
            acc.held += 1 + len(self._release_orphans(key, acc))
        self._collect_evicted(acc)

    def _release_orphans(self, key: GroupKey, acc: Accumulator) -> list[bytes]:
        """Earlier packets of ``key`` whose group ended without a merged packet (the muxer
        raised while merging, or a custom merge returned None): release and return them."""
        entries = self._buffered.get(key)
        if not entries:
            return []
        try:
            if self._is_buffered(entries[0][0]):
                return []  # the group is still open: nothing ended
        except Exception:
            return []
        del self._buffered[key]
        acc.released_raws.extend(raw for _, raw in entries if raw)
        return [raw or reencode(pkt) for pkt, raw in entries]

    def _collect_evicted(self, acc: Accumulator) -> None:
        """Report groups the muxer evicted just now, before a late packet reuses their key."""
        groups = self._take_evicted()
        if groups:
            self._report(groups, acc)

    def _report(self, groups: Iterable[Any], acc: Accumulator) -> None:
        for removed in groups:
            group = _Group.of(removed)
            raws = tuple(self._group_raws(group))
            acc.released_raws.extend(raws)
            key = "?" if group.key is None else group.key
            reason = (
                f"muxer group {key} {group.reason} with {len(group.packets)} of "
                f"{group.expected} packets"
            )
            first = group.packets[0] if group.packets else None
            acc.fail(Outcome.EXPIRED, "mux", reason, first, raws)

    def _group_raws(self, group: _Group) -> list[bytes]:
        """The input bytes of a removed group (re-encoded if they were never seen as bytes)."""
        key = ("", 0) if group.key is None else group.key
        entries = self._buffered.pop(key, None)
        if not entries:
            return [raw for raw in map(reencode, group.packets) if raw]
        ids = {id(pkt) for pkt in group.packets}
        mine = [entry for entry in entries if id(entry[0]) in ids]
        if not mine:
            mine = entries  # a muxer that reports copies: the key is all there is to go by
        elif len(mine) < len(entries):
            self._buffered[key] = [entry for entry in entries if id(entry[0]) not in ids]
        return [raw for raw in (r or reencode(pkt) for pkt, r in mine) if raw]


def _json_text(merged: Any) -> None:
    """Give a merged packet's dict or list ``data`` (the spec's reference merge assigns a dict)
    its JSON text, so ``json.loads(packet.data)`` works downstream: a dict becomes a
    `MuxedData` (still readable as the dict). Data JSON cannot hold is left as it is."""
    data = getattr(merged, "data", None)
    if type(data) is dict or type(data) is list:
        with contextlib.suppress(TypeError, ValueError):
            merged.data = MuxedData(data) if type(data) is dict else _json.dumps(data)


def _resolve(muxer: object, name: str, default: Callable[..., Any]) -> Any:
    """The muxer's optional method ``name``, or the default (looked up once, at start)."""
    method = getattr(muxer, name, None)
    return method if callable(method) else default
