"""The pure pipeline: packets in, routed output payloads and classified failures out.

    decode → validate JSON → [muxer] → on_preprocess → on_data (or on_data_batch) → encode → route

It does no I/O: the Redis worker, the gRPC/HTTP ingest and BlockTester all drive this same
code, so a block that passes BlockTester behaves identically in production. This module is the
chain only, one short method per step. What user code returned is judged in `outcome`
(which also holds the result values, re-exported here); the muxer's bookkeeping and the time
batchers are in `muxing`. Every outcome is handed back; the caller decides what to do with it
(push outputs, dead-letter failures, count everything).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from .. import _json
from ..contract import accepts_is_ws
from ..errors import PacketDecodeError, PacketError, RoutingError
from ..packet import AIOSPacket, MuxedData, decode_packet, encode_output, hops_of
from ..results import OnDataResult, PreProcessResult
from ..routing import Router
from ..tools import TimeBasedBatcher
from .batching import TimeBatchers, batch_output, batch_packets, packet_of
from .muxing import Muxing
from .outcome import (
    Accumulator,
    Failure,
    OnDataVerdict,
    Outcome,
    Output,
    PipelineResult,
    Problem,
    classify_on_data,
    classify_preprocess,
    per_entry,
    raised,
    unshare_packets,
)
from .watchdog import Running

__all__ = ["Failure", "Outcome", "Output", "Pipeline", "PipelineResult"]


class _Job(NamedTuple):
    """An entry on its way to on_data, with the packet and bytes it came from."""

    entry: PreProcessResult
    source: AIOSPacket
    raws: tuple[bytes, ...]


class Pipeline:
    """Drives one block instance. Its entry points take ``lock``, so the worker and the
    in-process ingest (HTTP, WebSocket) can share it: user code is never called by two
    threads at once, and the muxer and batchers see every job whichever way it came."""

    def __init__(
        self, block: Any, router: Router, *, validate_json: bool = True, max_hops: int = 64
    ) -> None:
        self.block = block
        self.max_hops = max_hops  # 0: no limit
        self._route = router.route
        self._validate_json = validate_json
        self._on_preprocess = block.on_preprocess
        self._on_data = block.on_data
        self._on_data_batch = getattr(block, "on_data_batch", None)
        self._on_batch_timeout = getattr(block, "on_batch_timeout", None)
        self.on_data_takes_is_ws = accepts_is_ws(block.on_data)
        get_muxer = getattr(block, "get_muxer", None)
        self.muxer: Any = get_muxer() if get_muxer is not None else None  # once, never per packet
        name = type(block).__name__
        self._muxing = Muxing(self.muxer, name) if self.muxer is not None else None
        self._batchers = TimeBatchers(block)
        self.running = Running()  # the call of user code in progress, for the watchdog
        self.lock = threading.Lock()
        self._answering = False  # process_packet: outputs answered to the caller, not routed

    @property
    def time_batchers(self) -> list[TimeBasedBatcher]:
        """The block's TimeBasedBatchers known so far (see `batching.TimeBatchers`)."""
        return self._batchers.known()

    # -- entry points ----------------------------------------------------------------------
    def process(self, raw: bytes) -> PipelineResult:
        """Run one serialized packet through the block."""
        return self.process_batch((raw,))

    def process_packet(
        self, packet: AIOSPacket, raw: bytes = b"", *, is_ws: bool = False, answer: bool = True
    ) -> PipelineResult:
        """Run an already-decoded packet through the block (in-process ingest); ``raw`` is
        its serialized form, for a dead-letter record; ``is_ws`` is passed to an on_data
        that takes it; ``answer``: outputs carry their JSON text, neither serialized nor
        routed (``Output.data``)."""
        acc = Accumulator()
        with self.lock, self._batchers:
            self._answering = answer
            try:
                t0 = time.perf_counter()
                jobs = self._admit(packet, raw, acc)
                acc.phase_s["preprocess"] = time.perf_counter() - t0
                self._run_jobs(jobs, acc, is_ws)
            finally:
                self._answering = False
                self.running.call = None
        return acc.freeze()

    def process_batch(self, raws: Sequence[bytes]) -> PipelineResult:
        """Run a claimed batch; on_data_batch (if the block has it) sees all its entries at once."""
        acc = Accumulator()
        with self.lock, self._batchers:
            t0 = time.perf_counter()
            jobs = self._decode_and_admit(raws, acc)
            acc.phase_s["preprocess"] = time.perf_counter() - t0
            self._run_jobs(jobs, acc)
            self.running.call = None
        return acc.freeze()

    def tick(self, now: float | None = None) -> PipelineResult:
        """Expire stale muxer groups and flush due time-based batches (call at next_deadline)."""
        now = time.monotonic() if now is None else now
        acc = Accumulator()
        with self.lock, self._batchers:
            self._stamp("flush", ())
            if self._muxing is not None:
                self._muxing.expire(now, acc)
            for batcher, batch in self._batchers.due(now):
                self._flush_batch(batcher, batch, acc)
            self.running.call = None
        return acc.freeze()

    def drain(self) -> PipelineResult:
        """At shutdown: flush every held time-based batch, as tick() does a due one."""
        acc = Accumulator()
        with self.lock, self._batchers:
            self._stamp("flush", ())
            for batcher, batch in self._batchers.flush_all():
                self._flush_batch(batcher, batch, acc)
            self.running.call = None
        return acc.freeze()

    def hand_back(self) -> list[bytes]:
        """At shutdown: empty the muxer and return the inputs it buffered, to requeue them."""
        if self._muxing is None:
            return []
        with self.lock:
            return self._muxing.hand_back()

    def next_deadline(self) -> float | None:
        """The monotonic time at which tick() has work to do (None: nothing pending)."""
        due = self._batchers.next_deadline()
        if self._muxing is not None:
            mux = self._muxing.next_deadline()
            if mux is not None and (due is None or mux < due):
                return mux
        return due

    def call_on_data(self, entry: PreProcessResult, *, is_ws: bool = False) -> Any:
        """Call on_data in whichever signature the block declared."""
        if self.on_data_takes_is_ws:
            return self._on_data(entry, is_ws=is_ws)
        return self._on_data(entry)

    def _stamp(self, phase: str, raws: tuple[bytes, ...]) -> None:
        """Say which user call begins now (read by the watchdog; cleared by the entry points)."""
        self.running.call = (time.monotonic(), phase, raws)

    # -- steps -----------------------------------------------------------------------------
    def _decode_and_admit(self, raws: Sequence[bytes], acc: Accumulator) -> list[_Job]:
        """Decode each packet and admit it: the jobs for on_data."""
        jobs: list[_Job] = []
        admit, extend = self._admit, jobs.extend
        for raw in raws:
            try:
                packet = decode_packet(raw)
            except PacketDecodeError as exc:
                acc.fail(Outcome.BAD_INPUT, "decode", exc.message, None, (raw,))
                continue
            extend(admit(packet, raw, acc))
        return jobs

    def _admit(self, packet: AIOSPacket, raw: bytes, acc: Accumulator) -> list[_Job]:
        """Validate, mux and preprocess one packet into jobs for on_data (``raw`` empty:
        an ingest job whose bytes were not made; its failures carry none)."""
        raws: tuple[bytes, ...] = (raw,) if raw else ()
        self._stamp("on_preprocess", raws)
        if self.max_hops and not self._below_hop_limit(packet, raws, acc):
            return []
        if self._validate_json and not self._data_is_json(packet, raws, acc):
            return []
        if self._muxing is not None:
            merged = self._muxing.feed(packet, raw, acc)
            if merged is None:
                return []
            packet, raws = merged
        try:
            ret = self._on_preprocess(packet)
        except Exception as exc:
            acc.reject("preprocess", raised("on_preprocess", exc), packet, raws)
            return []
        entries = classify_preprocess(ret)
        if type(entries) is list and len(entries) == 1:  # the common shape, (True, [entry])
            entry = entries[0]
            if entry.packet is None:
                entry.packet = packet
            return [_Job(entry, packet, raws)]
        return self._preprocess(packet, raws, entries, acc)

    def _below_hop_limit(
        self, packet: AIOSPacket, raws: tuple[bytes, ...], acc: Accumulator
    ) -> bool:
        """A packet output by ``max_hops`` blocks already is going round in circles, most
        likely (an ``output_ptr`` that leads back): it is dead-lettered, not processed."""
        try:
            hops = hops_of(packet)
        except PacketError as exc:
            acc.fail(Outcome.BAD_INPUT, "decode", exc.message, packet, raws)
            return False
        if hops < self.max_hops:
            return True
        reason = (
            f"routing loop: the packet has passed through {hops} blocks, the limit is "
            f"AIOS_MAX_HOPS={self.max_hops} (does an output_ptr lead back to a block it came from?)"
        )
        acc.fail(Outcome.ROUTING_LOOP, "route", reason, packet, raws)
        return False

    def _data_is_json(self, packet: AIOSPacket, raws: tuple[bytes, ...], acc: Accumulator) -> bool:
        data = packet.data
        if not isinstance(data, str) or not data:
            return True  # empty data (files-only jobs) is the block's to judge
        try:
            _json.validate(data)
        except ValueError as exc:
            if type(data) is MuxedData:
                return True  # JSON by construction (orjson reads only exact str)
            reason = f"data is not valid JSON: {exc}"
            acc.fail(Outcome.BAD_INPUT, "decode", reason, packet, raws)
            return False
        return True

    def _preprocess(
        self,
        packet: AIOSPacket,
        raws: tuple[bytes, ...],
        entries: list[PreProcessResult] | Problem,
        acc: Accumulator,
    ) -> list[_Job]:
        """Any on_preprocess verdict but one entry: a failure, held, or several jobs."""
        if isinstance(entries, Problem):
            acc.reject("preprocess", entries, packet, raws)
            return []
        if not entries:
            acc.held += 1
            return []
        unshare_packets(entries, packet)
        return [_Job(entry, packet, raws) for entry in entries]

    def _run_jobs(self, jobs: list[_Job], acc: Accumulator, is_ws: bool = False) -> None:
        if not jobs:
            return
        t0 = time.perf_counter()
        rets = self._infer(jobs, is_ws)
        t1 = time.perf_counter()
        encode_route, settle = self._encode_route, self._settle
        for job, ret in zip(jobs, rets, strict=True):
            verdict = classify_on_data(ret)
            if type(verdict) is OnDataResult:  # the common shape: straight to encode and route
                packet = job.entry.packet
                if type(packet) is not AIOSPacket:
                    packet = job.source
                encode_route(packet, verdict, job.raws, acc, None, job.source)
            else:
                settle(job, verdict, acc)
        acc.phase_s["on_data"] = t1 - t0
        acc.phase_s["route"] = time.perf_counter() - t1

    def _infer(self, jobs: list[_Job], is_ws: bool = False) -> list[Any]:
        """on_data per entry, or one on_data_batch call for all; exceptions become problems."""
        if self._on_data_batch is not None:
            return self._infer_batch(jobs)
        rets: list[Any] = []
        append = rets.append
        on_data = self._on_data
        if self.on_data_takes_is_ws:
            on_data = functools.partial(on_data, is_ws=is_ws)
        running, clock = self.running, time.monotonic
        for job in jobs:
            running.call = (clock(), "on_data", job.raws)
            try:
                append(on_data(job.entry))
            except Exception as exc:
                append(raised("on_data", exc))
        return rets

    def _infer_batch(self, jobs: list[_Job]) -> list[Any]:
        self._stamp("on_data_batch", tuple(raw for job in jobs for raw in job.raws))
        try:
            rets = list(self._on_data_batch([job.entry for job in jobs]))  # type: ignore[misc]
        except Exception as exc:
            return [raised("on_data_batch", exc)] * len(jobs)
        return per_entry(rets, len(jobs))

    def _settle(
        self,
        job: _Job,
        verdict: OnDataVerdict,
        acc: Accumulator,
        failed_raws: tuple[bytes, ...] | None = None,
    ) -> None:
        """Act on an on_data verdict: outputs to encode and route, held, or a user error.
        A failure carries ``failed_raws`` when given, else the job's input bytes."""
        packet = job.entry.packet if isinstance(job.entry.packet, AIOSPacket) else job.source
        if verdict is None:
            acc.held += 1
        elif isinstance(verdict, Problem):
            acc.reject("on_data", verdict, packet, job.raws if failed_raws is None else failed_raws)
        else:
            results = (verdict,) if isinstance(verdict, OnDataResult) else verdict
            for result in results:
                self._encode_route(packet, result, job.raws, acc, failed_raws, job.source)

    def _encode_route(
        self,
        packet: AIOSPacket,
        result: OnDataResult,
        raws: tuple[bytes, ...],
        acc: Accumulator,
        failed_raws: tuple[bytes, ...] | None = None,
        origin: AIOSPacket | None = None,
    ) -> None:
        """Serialize one output and find its destinations; ``raws`` are its sources. An
        output counts at least one hop more than the packet it came from (``origin``), even
        when the block built a new packet for it."""
        try:
            text = _json.dumps(result.output)
            if self._answering:  # for an ingest caller: its JSON text, not serialized nor routed
                ids = (packet.session_id, packet.seq_no, packet.ts)
                acc.outputs.append(Output(b"", (), *ids, raws, text))
                return
            floor = hops_of(origin) if origin is not None and origin is not packet else 0
            payload = encode_output(packet, text, result.files, floor)
        except Exception as exc:
            reason = f"output cannot be encoded: {exc}"
            failed = raws if failed_raws is None else failed_raws
            acc.fail(Outcome.USER_ERROR, "encode", reason, packet, failed)
            return
        try:
            destinations = self._route(packet.output_ptr)
        except RoutingError as exc:
            failed = raws if failed_raws is None else failed_raws
            acc.fail(Outcome.ROUTING_ERROR, "route", exc.message, packet, failed)
            return
        acc.outputs.append(
            Output(payload, destinations, packet.session_id, packet.seq_no, packet.ts, raws)
        )

    def _flush_batch(self, batcher: TimeBasedBatcher, batch: list[Any], acc: Accumulator) -> None:
        """A time-based batch fell due (or shutdown came): hand it to the batcher's
        flush_callback, else the block's on_batch_timeout, and route what it returns like
        on_data's result; with neither, route the spec's ``{"batch": [...]}`` output when the
        batch holds packets (the spec's pattern: the block wrote its result into each packet's
        data), and fail it when it holds anything else (entries nobody ran inference on must
        not come out as if they were results)."""
        sources = [packet_of(item) for item in batch]
        source = next((p for p in reversed(sources) if p is not None), AIOSPacket())
        callback = batcher.flush_callback
        flush = callback if callback is not None else self._on_batch_timeout
        name = "flush_callback" if callback is not None else "on_batch_timeout"
        try:
            if flush is None and all(isinstance(item, AIOSPacket) for item in batch):
                ret: Any = (True, batch_output(batch))
            elif flush is None:
                ret = (False, _NO_FLUSH)
            else:
                ret = flush(batch)
                if ret is None and callback is not None:
                    ret = (True, None)  # a flush_callback that returns nothing: no output
        except Exception as exc:
            ret = raised(name, exc)
        # Outputs carry no sources (the batch's inputs were acknowledged when they were held);
        # a failure carries the batch's packets, so the dead letter can be replayed.
        job = _Job(PreProcessResult(source), source, ())
        self._settle(job, classify_on_data(ret), acc, batch_packets(sources))


_NO_FLUSH = (
    "a time-based batch fell due holding items that are not packets, and the block defines "
    "neither on_batch_timeout(batch) nor the batcher's flush_callback: define one to run the "
    "batch (its packets are in this record)"
)
