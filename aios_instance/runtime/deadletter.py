"""Dead-letter records: one JSON object per job that could not be processed.

A record says why (outcome, stage, reason, traceback), which job (session_id, seq_no, the
packet bytes in base64 — several for a muxed group), where (block, instance) and when, so
``aios-instance dead show`` can explain it and ``dead replay`` can push it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..deadletters import dead_letter_record, record_packets
from ..errors import PacketDecodeError
from ..packet import decode_packet
from ..transport.base import Claim
from .outcome import Failure

__all__ = ["DeadLetters", "Record", "dead_letter_record", "record_packets"]


class Record(NamedTuple):
    """A dead-letter record on its way to the list, with its outcome and reason (for the
    metrics and the log without parsing it again)."""

    outcome: str
    reason: str
    data: bytes


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """Builds the records of one instance: a failed job, a packet past its delivery limit,
    outputs that could not be delivered."""

    block_id: str
    instance_id: str

    def failure(self, failure: Failure, attempts: int = 1) -> Record:
        """A job the pipeline could not process (bad input, user error, routing, expiry)."""
        data = dead_letter_record(
            outcome=failure.outcome.value,
            stage=failure.stage,
            reason=failure.reason,
            packets=failure.packets,
            block_id=self.block_id,
            instance_id=self.instance_id,
            session_id=failure.session_id,
            seq_no=failure.seq_no,
            traceback=failure.traceback,
            attempts=attempts,
        )
        return Record(failure.outcome.value, failure.reason, data)

    def poison(self, claim: Claim, max_deliveries: int) -> Record:
        """A packet delivered more than ``max_deliveries`` times without completing."""
        reason = (
            f"delivered {claim.attempt} times without completing (max_deliveries={max_deliveries})"
        )
        return self.record("max_deliveries", "claim", reason, (claim.raw,), claim.attempt)

    def undelivered(self, sources: Sequence[bytes], reason: str, attempts: int = 1) -> Record:
        """Inputs whose outputs could not be pushed (rejected, or an endpoint down too long)."""
        return self.record("delivery_error", "push", reason, sources, attempts)

    def record(
        self, outcome: str, stage: str, reason: str, packets: Sequence[bytes], attempts: int = 1
    ) -> Record:
        """Any record of this instance; the job (session, seq) is read from the first packet."""
        session_id, seq_no = _job_of(packets[0] if packets else b"")
        data = dead_letter_record(
            outcome=outcome,
            stage=stage,
            reason=reason,
            packets=packets,
            block_id=self.block_id,
            instance_id=self.instance_id,
            session_id=session_id,
            seq_no=seq_no,
            attempts=attempts,
        )
        return Record(outcome, reason, data)


def _job_of(raw: bytes) -> tuple[str, int]:
    """(session_id, seq_no) of a packet, for a dead-letter record (blank if undecodable)."""
    try:
        packet = decode_packet(raw)
    except PacketDecodeError:
        return "", 0
    return packet.session_id, packet.seq_no
