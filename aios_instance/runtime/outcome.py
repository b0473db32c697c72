"""What a pipeline call produced, and the one place that judges what user code returned.

The values (`Outcome`, `Output`, `Failure`, `PipelineResult`) are what the worker, the hooks,
the dead-letter records and `BlockTester` read. The judging is here too, in three functions:

- `classify_preprocess(ret)`: on_preprocess's return → its entries (empty: held) or a `Problem`;
- `classify_on_data(ret)`: on_data's (or on_batch_timeout's) return → one `OnDataResult`,
  a tuple of them, ``None`` (held) or a `Problem`;
- `raised(what, exc)`: an exception from user code → a `Problem` with its traceback.

Each checks the spec's common shape first and hands back the user's own object for it, so the
hot path allocates nothing to be judged. A `Failure` is built in one place,
`Accumulator.fail`, whichever path found it.
"""

from __future__ import annotations

import copy
import enum
import traceback as _traceback
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

from ..packet import AIOSPacket
from ..results import OnDataResult, PreProcessResult
from ..routing import Destination

__all__ = [
    "Accumulator",
    "Failure",
    "OnDataVerdict",
    "Outcome",
    "Output",
    "PipelineResult",
    "Problem",
    "classify_on_data",
    "classify_preprocess",
    "per_entry",
    "raised",
    "unshare_packets",
]


class Outcome(str, enum.Enum):
    """How one job (or one entry of a job) ended."""

    OUTPUT = "output"  # an output packet was produced and routed
    HELD = "held"  # the block held it back: on_data → (True, None), or no entries
    WAITING = "waiting"  # buffered by the muxer until its group completes
    BAD_INPUT = "bad_input"  # undecodable protobuf or non-JSON data
    USER_ERROR = "user_error"  # (False, reason), an exception, or an unusable return value
    ROUTING_ERROR = "routing_error"  # output_ptr names no usable destination
    EXPIRED = "expired"  # a muxer group that never completed
    ROUTING_LOOP = "routing_loop"  # passed through AIOS_MAX_HOPS blocks: a loop, most likely


class Output(NamedTuple):
    """One output packet, serialized, with where it goes and the input bytes it came from.
    An output answered to an ingest caller (``Pipeline.process_packet``) is not serialized
    nor routed: ``payload`` is empty and ``data`` holds its JSON text."""

    payload: bytes
    destinations: tuple[Destination, ...]
    session_id: str
    seq_no: int
    ts: float
    sources: tuple[bytes, ...]
    data: str = ""


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


@dataclass(frozen=True, slots=True)
class Problem:
    """Why user code's answer is a ``user_error``; ``traceback`` when it raised."""

    reason: str
    traceback: str | None = None


def raised(what: str, exc: BaseException) -> Problem:
    """An exception from user code (call it in the ``except`` block: it keeps the traceback)."""
    return Problem(f"{what} raised {exc!r}", _traceback.format_exc())


@dataclass(slots=True)
class Accumulator:
    """Mutable accumulator for one pipeline call; frozen into a PipelineResult at the end."""

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
        packet: AIOSPacket | None,
        raws: tuple[bytes, ...],
        traceback: str | None = None,
    ) -> None:
        """Record a failure: the one place a `Failure` is built."""
        sid, seq = (packet.session_id, packet.seq_no) if packet is not None else ("", 0)
        self.failures.append(Failure(outcome, stage, reason, sid, seq, traceback, raws))

    def reject(
        self, stage: str, problem: Problem, packet: AIOSPacket | None, raws: tuple[bytes, ...]
    ) -> None:
        """Record a ``user_error`` found by the classifiers below."""
        self.fail(Outcome.USER_ERROR, stage, problem.reason, packet, raws, problem.traceback)

    def freeze(self) -> PipelineResult:
        """The immutable result of the call."""
        return PipelineResult(
            tuple(self.outputs),
            tuple(self.failures),
            self.held,
            tuple(self.waiting_raws),
            tuple(self.released_raws),
            self.phase_s,
        )


def classify_preprocess(ret: Any) -> list[PreProcessResult] | Problem:
    """on_preprocess's return → its entries (empty: held) or the problem with it.

    For ``(True, [entry])`` the user's own list comes back, so the common shape costs nothing.
    """
    if type(ret) is tuple and len(ret) == 2 and ret[0] is True:
        value = ret[1]
        if type(value) is list and len(value) == 1 and type(value[0]) is PreProcessResult:
            return value
    value = _accepted(ret, "on_preprocess", "[PreProcessResult]", "rejected the packet")
    if value is None or isinstance(value, Problem):
        return [] if value is None else value
    items = [value] if isinstance(value, PreProcessResult) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(e, PreProcessResult) for e in items
    ):
        return Problem(f"on_preprocess returned (True, {_kind(value)}); expected PreProcessResults")
    return list(items)


OnDataVerdict: TypeAlias = OnDataResult | tuple[OnDataResult, ...] | Problem | None
"""What `classify_on_data` says: one output, several outputs, a problem, or None (held)."""


def classify_on_data(ret: Any) -> OnDataVerdict:
    """on_data's return (or on_batch_timeout's, or a `Problem` from `raised`) → its verdict.

    For ``(True, OnDataResult)`` the user's own result comes back, so the common shape costs
    nothing.
    """
    if type(ret) is tuple and len(ret) == 2 and ret[0] is True and type(ret[1]) is OnDataResult:
        result: OnDataResult = ret[1]
        return result
    if type(ret) is Problem:
        return ret
    value = _accepted(ret, "on_data", "OnDataResult", "failed")
    if value is None or isinstance(value, (OnDataResult, Problem)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, OnDataResult) for v in value):
        return tuple(value) if value else None
    if isinstance(value, dict):
        return OnDataResult(output=value)  # lenient: a bare output dict
    return Problem(f"on_data returned (True, {_kind(value)}); expected OnDataResult")


def per_entry(rets: list[Any], count: int) -> list[Any]:
    """on_data_batch's returns, one per entry; a count that does not match fails them all."""
    if len(rets) == count:
        return rets
    return [Problem(f"on_data_batch returned {len(rets)} results for {count} entries")] * count


def _accepted(ret: Any, callback: str, expected: str, refused: str) -> Any:
    """``(True, value)`` → value; ``(False, why)`` or another shape → the `Problem` with it."""
    if not (isinstance(ret, tuple) and len(ret) == 2):
        return Problem(f"{callback} returned {_kind(ret)}; expected (bool, {expected})")
    ok, value = ret
    return value if ok else Problem(f"{callback} {refused}: {value}")


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}"


def unshare_packets(entries: list[PreProcessResult], packet: AIOSPacket) -> None:
    """Give each entry its own packet object.

    Blocks routinely build several entries around one packet and then rewrite
    ``entry.packet.data`` in on_data (the spec's Batcher sample does); with one shared object
    every earlier entry would see the last write.
    """
    seen: set[int] = set()
    for entry in entries:
        if entry.packet is None:
            entry.packet = packet
        if id(entry.packet) in seen:
            entry.packet = copy.copy(entry.packet)
        seen.add(id(entry.packet))
