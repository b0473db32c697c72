"""The pure pipeline: packets in, routed output payloads and classified failures out.

    decode → validate JSON → [muxer] → on_preprocess → on_data (or on_data_batch) → encode → route

It does no I/O: the Redis worker, the gRPC/HTTP ingest and BlockTester all drive this same
code, so a block that passes BlockTester behaves identically in production. Every outcome is
classified here (``_classify_*``) and handed back; the caller decides what to do with it
(push outputs, dead-letter failures, count everything).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import _json
from ..errors import PacketDecodeError, RoutingError
from ..packet import AIOSPacket, MuxedData, decode_packet, encode_output
from ..results import OnDataResult, PreProcessResult
from ..routing import Destination, Router

__all__ = ["Failure", "Outcome", "Output", "Pipeline", "PipelineResult"]

log = logging.getLogger(__name__)


class Outcome(str, enum.Enum):
    """How one job (or one entry of a job) ended."""

    OUTPUT = "output"  # an output packet was produced and routed
    HELD = "held"  # the block held it back: on_data → (True, None), or no entries
    WAITING = "waiting"  # buffered by the muxer until its group completes
    BAD_INPUT = "bad_input"  # undecodable protobuf or non-JSON data
    USER_ERROR = "user_error"  # (False, reason), an exception, or an unusable return value
    ROUTING_ERROR = "routing_error"  # output_ptr names no usable destination
    EXPIRED = "expired"  # a muxer group that never completed


class Output(NamedTuple):
    """One output packet, serialized, with where it goes and the input bytes it came from."""

    payload: bytes
    destinations: tuple[Destination, ...]
    session_id: str
    seq_no: int
    ts: float
    sources: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """A job (or entry) that produced no output, and why; ``packets`` are the input's bytes
    (several for a muxed group)."""

    outcome: Outcome
    stage: str
    reason: str
    session_id: str = ""
    seq_no: int = 0
    traceback: str | None = None
    packets: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """Everything a batch of packets produced.

    ``waiting_raws`` are inputs the muxer now buffers (not finished: do not acknowledge);
    ``released_raws`` are inputs buffered by earlier calls whose group ended in this one.
    """

    outputs: tuple[Output, ...] = ()
    failures: tuple[Failure, ...] = ()
    held: int = 0
    waiting_raws: tuple[bytes, ...] = ()
    released_raws: tuple[bytes, ...] = ()
    phase_s: dict[str, float] = field(default_factory=dict)


class _Job(NamedTuple):
    """An entry on its way to on_data, with the packet and bytes it came from."""

    entry: PreProcessResult
    source: AIOSPacket
    raws: tuple[bytes, ...]


@dataclass(slots=True)
class _Acc:
    """Mutable accumulator for one call; frozen into a PipelineResult at the end."""

    outputs: list[Output] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    held: int = 0
    waiting_raws: list[bytes] = field(default_factory=list)
    released_raws: list[bytes] = field(default_factory=list)
    phase_s: dict[str, float] = field(default_factory=dict)

    def fail(
        self,
        outcome: Outcome,
        stage: str,
        reason: str,
        pkt: AIOSPacket | None,
        raws: tuple[bytes, ...],
    ) -> None:
        tb = traceback.format_exc() if outcome is Outcome.USER_ERROR else None
        if tb is not None and tb.startswith("NoneType: None"):
            tb = None
        sid, seq = (pkt.session_id, pkt.seq_no) if pkt is not None else ("", 0)
        self.failures.append(Failure(outcome, stage, reason, sid, seq, tb, raws))

    def freeze(self) -> PipelineResult:
        return PipelineResult(
            tuple(self.outputs),
            tuple(self.failures),
            self.held,
            tuple(self.waiting_raws),
            tuple(self.released_raws),
            self.phase_s,
        )


def accepts_is_ws(fn: Callable[..., Any]) -> bool:
    """Whether ``on_data`` takes the older ``is_ws`` argument (inspected once, at start)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "is_ws" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _find_time_batchers(block: Any) -> list[Any]:
    """TimeBasedBatchers the block keeps as attributes, so the runtime can flush them on time."""
    from ..tools import TimeBasedBatcher

    attrs = getattr(block, "__dict__", {})
    return [value for value in attrs.values() if isinstance(value, TimeBasedBatcher)]


class Pipeline:
    """Drives one block instance; not thread-safe (one pipeline per worker thread)."""

    def __init__(self, block: Any, router: Router, *, validate_json: bool = True) -> None:
        self.block = block
        self._route = router.route
        self._validate_json = validate_json
        self._on_preprocess = block.on_preprocess
        self._on_data = block.on_data
        self._on_data_batch = getattr(block, "on_data_batch", None)
        self._on_batch_timeout = getattr(block, "on_batch_timeout", None)
        self.on_data_takes_is_ws = accepts_is_ws(block.on_data)
        get_muxer = getattr(block, "get_muxer", None)
        self.muxer: Any = get_muxer() if get_muxer is not None else None  # once, never per packet
        # The packets (and their bytes) the muxer buffers, by group key, until the group ends:
        # merged, expired, evicted, or handed back at shutdown. Only what is_buffered() confirms
        # goes in, so a packet the muxer filters out is never kept.
        self._mux_raws: dict[tuple[str, int], list[tuple[AIOSPacket, bytes]]] = {}
        self._mux_is_buffered: Callable[[AIOSPacket], bool] | None = getattr(
            self.muxer, "is_buffered", None
        )
        self._mux_take_evicted: Callable[[], Iterable[Any]] | None = getattr(
            self.muxer, "take_evicted", None
        )
        if self.muxer is not None and self._mux_is_buffered is None:
            log.warning(
                "the muxer %s of block %s has no is_buffered(packet): every packet it returns "
                "None for is acknowledged as taken by it, so what it buffers is lost if the "
                "process stops (at-least-once delivery ends at this muxer)",
                type(self.muxer).__name__,
                type(block).__name__,
            )
        self.time_batchers = _find_time_batchers(block)
        # The batchers tick() may flush: only a block with on_batch_timeout can take a due
        # batch. Without it a due batch stays in its batcher (the block's next add_to_batch
        # returns it) and is not a deadline: nobody could act on it.
        self._timed_batchers = self.time_batchers if self._on_batch_timeout is not None else []
        if self.time_batchers and self._on_batch_timeout is None:
            log.warning(
                "block %s keeps a TimeBasedBatcher but defines no on_batch_timeout(batch): a "
                "due batch is not flushed on time; it stays in the batcher until the block's "
                "next add_to_batch() returns it, and items still held at shutdown are "
                "dead-lettered. Define on_batch_timeout(batch) to flush due batches on time.",
                type(block).__name__,
            )

    # -- entry points ----------------------------------------------------------------------
    def process(self, raw: bytes) -> PipelineResult:
        """Run one serialized packet through the block."""
        return self.process_batch((raw,))

    def process_packet(self, packet: AIOSPacket) -> PipelineResult:
        """Run an already-decoded packet through the block (in-process ingest)."""
        acc = _Acc()
        self._run_jobs(self._admit(packet, b"", acc), acc)
        return acc.freeze()

    def process_batch(self, raws: Sequence[bytes]) -> PipelineResult:
        """Run a claimed batch; on_data_batch (if the block has it) sees all its entries at once."""
        acc = _Acc()
        t0 = time.perf_counter()
        jobs: list[_Job] = []
        admit, extend = self._admit, jobs.extend
        for raw in raws:
            try:
                packet = decode_packet(raw)
            except PacketDecodeError as exc:
                acc.fail(Outcome.BAD_INPUT, "decode", exc.message, None, (raw,))
                continue
            extend(admit(packet, raw, acc))
        acc.phase_s["preprocess"] = time.perf_counter() - t0
        self._run_jobs(jobs, acc)
        return acc.freeze()

    def tick(self, now: float | None = None) -> PipelineResult:
        """Expire stale muxer groups and flush due time-based batches (call at next_deadline)."""
        now = time.monotonic() if now is None else now
        acc = _Acc()
        expire = getattr(self.muxer, "expire", None)
        if expire is not None:
            self._report_expired(expire(now), acc)
        for batcher in self._timed_batchers:
            batch = batcher.poll(now)
            if batch:
                self._flush_batch(batch, acc)
        return acc.freeze()

    def drain(self) -> PipelineResult:
        """At shutdown: flush every time-based batch through on_batch_timeout (a block without
        it gets each held batch back as a failure carrying its packets, to dead-letter)."""
        acc = _Acc()
        for batcher in self.time_batchers:
            batch = batcher.flush()
            if batch:
                self._flush_batch(batch, acc)
        return acc.freeze()

    def hand_back(self) -> list[bytes]:
        """At shutdown: empty the muxer and return the inputs it buffered, to requeue them."""
        drain = getattr(self.muxer, "drain", None)
        raws: list[bytes] = []
        if drain is not None:
            for group in drain():
                raws.extend(self._group_raws(group))
        # Whatever is still unacknowledged but was not in a drained group goes back too.
        for entries in self._mux_raws.values():
            raws.extend(raw for _, raw in entries if raw)
        self._mux_raws.clear()
        return raws

    def next_deadline(self) -> float | None:
        """The monotonic time at which tick() has work to do (None: nothing pending)."""
        candidates = [b.next_deadline() for b in self._timed_batchers]
        muxer_deadline = getattr(self.muxer, "next_deadline", None)
        if muxer_deadline is not None:
            candidates.append(muxer_deadline())
        due = [d for d in candidates if d is not None]
        return min(due) if due else None

    def call_on_data(self, entry: PreProcessResult, *, is_ws: bool = False) -> Any:
        """Call on_data in whichever signature the block declared."""
        if self.on_data_takes_is_ws:
            return self._on_data(entry, is_ws=is_ws)
        return self._on_data(entry)

    # -- steps -----------------------------------------------------------------------------
    def _admit(self, packet: AIOSPacket, raw: bytes, acc: _Acc) -> list[_Job]:
        """Validate, mux and preprocess one packet into jobs for on_data."""
        if self._validate_json and not self._data_is_json(packet, raw, acc):
            return []
        raws: tuple[bytes, ...] = (raw,)
        if self.muxer is not None:
            merged = self._mux(packet, raw, acc)
            if merged is None:
                return []
            packet, raws = merged
        try:
            ret = self._on_preprocess(packet)
        except Exception as exc:
            reason = f"on_preprocess raised {exc!r}"
            acc.fail(Outcome.USER_ERROR, "preprocess", reason, packet, raws)
            return []
        # The common shape, (True, [one PreProcessResult]), without the general walk.
        if type(ret) is tuple and len(ret) == 2 and ret[0] is True:
            value = ret[1]
            if type(value) is list and len(value) == 1 and type(value[0]) is PreProcessResult:
                entry = value[0]
                if entry.packet is None:
                    entry.packet = packet
                return [_Job(entry, packet, raws)]
        return self._preprocess(packet, raws, ret, acc)

    def _data_is_json(self, packet: AIOSPacket, raw: bytes, acc: _Acc) -> bool:
        data = packet.data
        if not isinstance(data, str) or not data:
            return True  # empty data (files-only jobs) is the block's to judge
        try:
            _json.validate(data)
        except ValueError as exc:
            if type(data) is MuxedData:
                return True  # JSON by construction (orjson reads only exact str)
            reason = f"data is not valid JSON: {exc}"
            acc.fail(Outcome.BAD_INPUT, "decode", reason, packet, (raw,))
            return False
        return True

    def _mux(
        self, packet: AIOSPacket, raw: bytes, acc: _Acc
    ) -> tuple[AIOSPacket, tuple[bytes, ...]] | None:
        """Feed the muxer; remember the bytes of buffered packets until their group ends."""
        key = (packet.session_id, packet.seq_no)
        try:
            merged: AIOSPacket | None = self.muxer.process_packet(packet)
        except Exception as exc:
            raws = (*self._release_orphans(key, acc), raw)
            acc.fail(Outcome.USER_ERROR, "mux", f"muxer failed: {exc!r}", packet, raws)
            self._collect_evicted(acc)
            return None
        if merged is None:
            self._buffer_or_drop(packet, raw, key, acc)
            return None
        if merged is packet:
            return merged, (raw,)
        entries = self._mux_raws.pop(key, None)
        if not entries:
            return merged, (raw,)
        earlier = [r for _, r in entries]
        acc.released_raws.extend(earlier)
        return merged, (*earlier, raw)

    def _buffer_or_drop(
        self, packet: AIOSPacket, raw: bytes, key: tuple[str, int], acc: _Acc
    ) -> None:
        """process_packet returned None: the muxer buffers the packet, or it dropped it."""
        is_buffered = self._mux_is_buffered
        if is_buffered is not None:
            try:
                buffered = is_buffered(packet)
            except Exception:
                log.exception("muxer is_buffered() failed; the packet is kept as buffered")
                buffered = True
            if buffered:
                self._mux_raws.setdefault(key, []).append((packet, raw))
                acc.waiting_raws.append(raw)
            else:
                # Filtered out by the muxer: finished (acknowledged), counted as held.
                acc.held += 1
                acc.held += len(self._release_orphans(key, acc))
            self._collect_evicted(acc)
            return
        acc.held += 1  # a muxer that cannot say: it owns what it took (logged at start)

    def _release_orphans(self, key: tuple[str, int], acc: _Acc) -> list[bytes]:
        """Earlier packets of ``key`` whose group ended without a merged packet (the muxer
        raised while merging, or a custom merge returned None): release and return them."""
        entries = self._mux_raws.get(key)
        is_buffered = self._mux_is_buffered
        if not entries or is_buffered is None:
            return []
        try:
            if is_buffered(entries[0][0]):
                return []  # the group is still open: nothing ended
        except Exception:
            return []
        del self._mux_raws[key]
        acc.released_raws.extend(raw for _, raw in entries if raw)
        return [raw or _reencode(pkt) for pkt, raw in entries]

    def _collect_evicted(self, acc: _Acc) -> None:
        """Report groups the muxer evicted just now, before a late packet reuses their key."""
        take = self._mux_take_evicted
        if take is not None:
            groups = take()
            if groups:
                self._report_expired(groups, acc)

    def _preprocess(
        self, packet: AIOSPacket, raws: tuple[bytes, ...], ret: Any, acc: _Acc
    ) -> list[_Job]:
        """Classify what on_preprocess returned into jobs (or a failure, or held)."""
        entries, problem = _classify_preprocess(ret)
        if problem is not None:
            acc.fail(Outcome.USER_ERROR, "preprocess", problem, packet, raws)
            return []
        if not entries:
            acc.held += 1
            return []
        _unshare_packets(entries, packet)
        return [_Job(entry, packet, raws) for entry in entries]

    def _run_jobs(self, jobs: list[_Job], acc: _Acc) -> None:
        if not jobs:
            return
        t0 = time.perf_counter()
        rets = self._infer(jobs)
        t1 = time.perf_counter()
        emit, encode_route = self._emit, self._encode_route
        for job, ret in zip(jobs, rets, strict=True):
            # The common shape, (True, OnDataResult), straight to encode and route.
            if type(ret) is tuple and len(ret) == 2 and ret[0] is True:
                result = ret[1]
                if type(result) is OnDataResult:
                    packet = job.entry.packet
                    if type(packet) is not AIOSPacket:
                        packet = job.source
                    encode_route(packet, result, job.raws, acc)
                    continue
            emit(job, ret, acc)
        acc.phase_s["on_data"] = t1 - t0
        acc.phase_s["route"] = time.perf_counter() - t1

    def _infer(self, jobs: list[_Job]) -> list[Any]:
        """on_data per entry, or one on_data_batch call for all; exceptions become results."""
        if self._on_data_batch is not None:
            return self._infer_batch(jobs)
        rets: list[Any] = []
        append = rets.append
        on_data = self._on_data
        if self.on_data_takes_is_ws:
            on_data = functools.partial(on_data, is_ws=False)
        for job in jobs:
            try:
                append(on_data(job.entry))
            except Exception as exc:
                append(_Raised(exc, traceback.format_exc()))
        return rets

    def _infer_batch(self, jobs: list[_Job]) -> list[Any]:
        try:
            rets = list(self._on_data_batch([job.entry for job in jobs]))  # type: ignore[misc]
        except Exception as exc:
            return [_Raised(exc, traceback.format_exc())] * len(jobs)
        if len(rets) != len(jobs):
            problem = f"on_data_batch returned {len(rets)} results for {len(jobs)} entries"
            return [(False, problem)] * len(jobs)
        return rets

    def _emit(self, job: _Job, ret: Any, acc: _Acc) -> None:
        """Classify one on_data return and turn a success into a routed output."""
        outcome, value = _classify_on_data(ret)
        packet = job.entry.packet if isinstance(job.entry.packet, AIOSPacket) else job.source
        if outcome is Outcome.HELD:
            acc.held += 1
        elif outcome is Outcome.USER_ERROR:
            tb = value.traceback if isinstance(value, _Raised) else None
            reason = value.describe() if isinstance(value, _Raised) else str(value)
            sid, seq = packet.session_id, packet.seq_no
            acc.failures.append(Failure(outcome, "on_data", reason, sid, seq, tb, job.raws))
        else:
            for result in value:
                self._encode_route(packet, result, job.raws, acc)

    def _encode_route(
        self, packet: AIOSPacket, result: OnDataResult, raws: tuple[bytes, ...], acc: _Acc
    ) -> None:
        try:
            payload = encode_output(packet, _json.dumps(result.output), result.files)
        except Exception as exc:
            reason = f"output cannot be encoded: {exc}"
            sid, seq = packet.session_id, packet.seq_no
            acc.failures.append(Failure(Outcome.USER_ERROR, "encode", reason, sid, seq, None, raws))
            return
        try:
            destinations = self._route(packet.output_ptr)
        except RoutingError as exc:
            acc.fail(Outcome.ROUTING_ERROR, "route", exc.message, packet, raws)
            return
        acc.outputs.append(
            Output(payload, destinations, packet.session_id, packet.seq_no, packet.ts, raws)
        )

    def _group_raws(self, group: Any) -> list[bytes]:
        """The input bytes of a muxer group (re-encoded if they were never seen as bytes)."""
        key: tuple[str, int] = getattr(group, "key", ("", 0))
        packets = tuple(getattr(group, "packets", ()))
        entries = self._mux_raws.pop(key, None)
        if not entries:
            return [raw for raw in map(_reencode, packets) if raw]
        ids = {id(pkt) for pkt in packets}
        mine = [entry for entry in entries if id(entry[0]) in ids]
        if not mine:
            mine = entries  # a muxer that reports copies: the key is all there is to go by
        elif len(mine) < len(entries):
            self._mux_raws[key] = [entry for entry in entries if id(entry[0]) not in ids]
        return [raw for raw in (r or _reencode(pkt) for pkt, r in mine) if raw]

    def _report_expired(self, groups: Iterable[Any], acc: _Acc) -> None:
        for group in groups:
            packets = list(getattr(group, "packets", ()))
            raws = tuple(self._group_raws(group))
            acc.released_raws.extend(raws)
            reason = (
                f"muxer group {getattr(group, 'key', '?')} {getattr(group, 'reason', 'expired')}"
                f" with {len(packets)} of {getattr(group, 'expected', '?')} packets"
            )
            first = packets[0] if packets else None
            acc.fail(Outcome.EXPIRED, "mux", reason, first, raws)

    def _flush_batch(self, batch: list[Any], acc: _Acc) -> None:
        """A time-based batch fell due (or shutdown came): hand it to on_batch_timeout and route
        what it returns; without that hook (only at shutdown) it becomes a failure."""
        sources = [_packet_of(item) for item in batch]
        on_batch_timeout = self._on_batch_timeout
        if on_batch_timeout is None:
            self._report_unflushed(batch, sources, acc)
            return
        source = next((p for p in reversed(sources) if p is not None), AIOSPacket())
        try:
            ret = on_batch_timeout(batch)
        except Exception as exc:
            ret = _Raised(exc, traceback.format_exc())
        before = len(acc.failures)
        # Outputs carry no sources: the batch's inputs were acknowledged when they were held.
        self._emit(_Job(PreProcessResult(source), source, ()), ret, acc)
        if len(acc.failures) > before:
            # A failure carries the batch's packets, so the dead letter can be replayed.
            packets = _batch_packets(sources)
            acc.failures[before:] = [
                dataclasses.replace(f, packets=packets) for f in acc.failures[before:]
            ]

    def _report_unflushed(
        self, batch: list[Any], sources: list[AIOSPacket | None], acc: _Acc
    ) -> None:
        """Shutdown, no on_batch_timeout: the held batch becomes one failure with its packets."""
        packets = _batch_packets(sources)
        reason = (
            f"time-based batch of {len(batch)} items still buffered at shutdown and the block "
            "defines no on_batch_timeout"
        )
        if len(packets) < len(batch):
            reason += f" ({len(batch) - len(packets)} of them are not packets: not kept)"
        first = next((p for p in sources if p is not None), None)
        acc.fail(Outcome.USER_ERROR, "batch", reason, first, packets)


class _Raised(NamedTuple):
    """An exception from user code, kept with its traceback for the dead-letter record."""

    exc: BaseException
    traceback: str

    def describe(self) -> str:
        return f"on_data raised {self.exc!r}"


def _classify_preprocess(ret: Any) -> tuple[list[PreProcessResult], str | None]:
    """on_preprocess's return → (entries, problem). One place decides what is acceptable."""
    if not (isinstance(ret, tuple) and len(ret) == 2):
        return [], f"on_preprocess returned {_kind(ret)}; expected (bool, [PreProcessResult])"
    ok, value = ret
    if not ok:
        return [], f"on_preprocess rejected the packet: {value}"
    if value is None:
        return [], None
    items = [value] if isinstance(value, PreProcessResult) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(e, PreProcessResult) for e in items
    ):
        return [], f"on_preprocess returned (True, {_kind(value)}); expected PreProcessResults"
    return list(items), None


def _classify_on_data(ret: Any) -> tuple[Outcome, Any]:
    """on_data's return → (outcome, value): OUTPUT with a list of OnDataResult, HELD, or
    USER_ERROR with a reason (or the _Raised exception)."""
    if isinstance(ret, _Raised):
        return Outcome.USER_ERROR, ret
    if not (isinstance(ret, tuple) and len(ret) == 2):
        return Outcome.USER_ERROR, f"on_data returned {_kind(ret)}; expected (bool, OnDataResult)"
    ok, value = ret
    if not ok:
        return Outcome.USER_ERROR, f"on_data failed: {value}"
    if value is None:
        return Outcome.HELD, None
    if isinstance(value, OnDataResult):
        return Outcome.OUTPUT, (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, OnDataResult) for v in value):
        return (Outcome.OUTPUT, tuple(value)) if value else (Outcome.HELD, None)
    if isinstance(value, dict):
        return Outcome.OUTPUT, (OnDataResult(output=value),)  # lenient: a bare output dict
    return Outcome.USER_ERROR, f"on_data returned (True, {_kind(value)}); expected OnDataResult"


def _unshare_packets(entries: list[PreProcessResult], packet: AIOSPacket) -> None:
    """Give each entry its own packet object.

    Blocks routinely build several entries around one packet and then rewrite
    ``entry.packet.data`` in on_data (the spec's Batcher sample does); with one shared object
    every earlier entry would see the last write.
    """
    if len(entries) == 1:
        if entries[0].packet is None:
            entries[0].packet = packet
        return
    seen: set[int] = set()
    for entry in entries:
        if entry.packet is None:
            entry.packet = packet
        if id(entry.packet) in seen:
            entry.packet = copy.copy(entry.packet)
        seen.add(id(entry.packet))


def _packet_of(item: Any) -> AIOSPacket | None:
    if isinstance(item, AIOSPacket):
        return item
    packet = getattr(item, "packet", None)
    return packet if isinstance(packet, AIOSPacket) else None


def _batch_packets(sources: Iterable[AIOSPacket | None]) -> tuple[bytes, ...]:
    """The serialized packets of a batch's items (items that are no packet are left out)."""
    raws = (_reencode(pkt) for pkt in sources if pkt is not None)
    return tuple(raw for raw in raws if raw)


def _reencode(packet: AIOSPacket) -> bytes:
    try:
        return packet.SerializeToString()
    except Exception:
        return b""


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}"
