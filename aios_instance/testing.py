"""`BlockTester` and `TestContext`: run a block in-process, through the production pipeline.

``BlockTester(MyBlock).run({"value": 0.9})`` builds an AIOSPacket, runs it through the same
``Pipeline`` the runtime uses (muxer, on_preprocess, on_data, encoding, routing) and returns
the outputs as JSON-parsed dicts. Failures are not raised by default (a block's error path is
worth testing too): they are logged and kept in ``tester.last_result.failures``; pass
``raise_errors=True`` to get a ``BlockTestError`` instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from . import _json, keys
from ._urls import DEFAULT_PORT
from .context import Context
from .contract import check_block_class
from .errors import BlockTestError
from .packet import HOPS_HEADER, AIOSPacket, decode_packet, make_packet
from .routing import Destination, Router
from .runtime.pipeline import Failure, Pipeline, PipelineResult

__all__ = ["BlockTestError", "BlockTester", "TestContext"]

log = logging.getLogger(__name__)

TEST_BLOCK_ID = "test-block"


class TestContext(Context):
    """A Context with in-memory metrics, sessions, events and sidecars; every field assignable."""

    __test__ = False  # not a pytest test class

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("block_id", TEST_BLOCK_ID)
        kwargs.setdefault("instance_id", "test-instance")
        super().__init__(**kwargs)
        #: What the block sent with ``write_ws``: ``(session_id, message)`` in order.
        self.ws_messages: list[tuple[str, Any]] = []
        self.attach_streams(self._record_ws)

    def _record_ws(self, session_id: str, message: Any) -> bool:
        self.ws_messages.append((session_id, message))
        return True


class BlockTester:
    """Instantiates a block with a TestContext and runs jobs through the production pipeline."""

    __test__ = False

    def __init__(self, block_class: type[Any], context: Context | None = None) -> None:
        check_block_class(block_class)  # the contract named, not an AttributeError later
        self.context = context if context is not None else TestContext()
        self.block = block_class(self.context)
        block_id = self.context.block_id or TEST_BLOCK_ID
        default = (Destination("redis", "localhost", DEFAULT_PORT, keys.DEFAULT_OUTPUT, ""),)
        self.pipeline = Pipeline(self.block, Router(block_id, default))
        self.last_result = PipelineResult()

    @classmethod
    def init_with_context(cls, block_class: type[Any], context: Context) -> BlockTester:
        """A tester whose block is constructed with the given (pre-built) context."""
        return cls(block_class, context)

    def run(
        self,
        data: Any = None,
        files: Iterable[tuple[Any, bytes]] | None = None,
        *,
        session_id: str = "test-session",
        seq_no: int = 0,
        output_ptr: Any = "",
        ts: float | None = None,
        raise_errors: bool = False,
        is_ws: bool = False,
    ) -> list[Any]:
        """Run one job built from Python values; returns the outputs' data, JSON-parsed.

        Equal ``session_id``/``seq_no`` across calls let a Muxer group them. ``is_ws``: as
        if the job came by WebSocket (an ``on_data(entry, is_ws)`` sees True); what the block
        sends with ``context.write_ws`` is in ``TestContext.ws_messages``.
        """
        packet = make_packet(
            data,
            files=files or (),
            session_id=session_id,
            seq_no=seq_no,
            ts=time.time() if ts is None else ts,
            output_ptr=output_ptr,
        )
        raw = packet.SerializeToString()
        if is_ws:
            result = self.pipeline.process_packet(decode_packet(raw), raw, is_ws=True, answer=False)
            return self._finish(result, raise_errors)
        return self._finish(self.pipeline.process(raw), raise_errors)

    def run_packet(self, packet: AIOSPacket | bytes, *, raise_errors: bool = False) -> list[Any]:
        """Run a ready-made packet (or its serialized bytes) through the pipeline."""
        raw = packet if isinstance(packet, bytes) else packet.SerializeToString()
        return self._finish(self.pipeline.process(raw), raise_errors)

    def tick(self, now: float | None = None, *, raise_errors: bool = False) -> list[Any]:
        """Let time pass: expire muxer groups and flush due time-based batches."""
        return self._finish(self.pipeline.tick(now), raise_errors)

    def output_packets(self) -> list[AIOSPacket]:
        """The last run's outputs as decoded AIOSPackets (data still a JSON string)."""
        return [_without_hops(decode_packet(out.payload)) for out in self.last_result.outputs]

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Failures of the last run."""
        return self.last_result.failures

    def _finish(self, result: PipelineResult, raise_errors: bool) -> list[Any]:
        self.last_result = result
        for failure in result.failures:
            log.warning(
                "block failed a job: %s in %s: %s",
                failure.outcome.value,
                failure.stage,
                failure.reason,
            )
        if raise_errors and result.failures:
            raise BlockTestError(result.failures)
        return [_json.loads(decode_packet(out.payload).data) for out in result.outputs]


def _without_hops(packet: AIOSPacket) -> AIOSPacket:
    """An output as the block made it: without the runtime's hop count, so that a test may
    compare it with the packet it expects."""
    packet.headers.pop(HOPS_HEADER, None)
    return packet
