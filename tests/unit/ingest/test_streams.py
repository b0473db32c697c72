"""StreamHub and Subscriber: messages reach a session's subscribers in order, a full queue
marks its subscriber overflowed (bounded by entries and by bytes), nothing blocks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aios_instance.ingest.streams import StreamHub, Subscriber


def test_writes_reach_the_sessions_subscribers_in_order() -> None:
    async def main() -> list[bytes]:
        hub = StreamHub()
        sub, other = Subscriber(asyncio.get_running_loop()), Subscriber(asyncio.get_running_loop())
        assert hub.subscribe("s", sub) and hub.subscribe("t", other)
        writer = threading.Thread(target=lambda: [hub.write("s", {"i": i}) for i in range(5)])
        writer.start()
        got: list[bytes] = []
        while len(got) < 5:
            got += await asyncio.wait_for(sub.get(), 5)
        writer.join(5)
        assert other.pending() == 0
        return got

    assert asyncio.run(main()) == [b'{"i":%d}' % i for i in range(5)]


def test_a_write_to_a_session_nobody_streams_is_dropped() -> None:
    hub = StreamHub()
    assert hub.write("nobody", {"delta": "x"}) is False
    with pytest.raises(TypeError):
        hub.write("nobody", {"not json": object()})


@pytest.mark.parametrize(("max_messages", "max_bytes"), [(3, 1 << 20), (100, 20)])
def test_a_full_queue_overflows_and_takes_nothing_more(max_messages: int, max_bytes: int) -> None:
    async def main() -> None:
        hub = StreamHub()
        sub = Subscriber(asyncio.get_running_loop(), max_messages, max_bytes)
        hub.subscribe("s", sub)
        taken = [hub.write("s", {"i": i}) for i in range(5)]
        assert taken[0] and not taken[-1] and sub.overflowed
        first = await asyncio.wait_for(sub.get(), 5)
        assert first and await asyncio.wait_for(sub.get(), 5) == []  # then the end

    asyncio.run(main())


def test_unsubscribe_forgets_the_sessions() -> None:
    async def main() -> None:
        hub = StreamHub()
        sub = Subscriber(asyncio.get_running_loop())
        hub.subscribe("a", sub)
        hub.subscribe("b", sub)
        assert hub.sessions() == 2
        hub.unsubscribe(sub)
        assert hub.sessions() == 0 and not hub.write("a", 1)

    asyncio.run(main())


def test_block_tester_runs_a_job_as_if_it_came_by_websocket() -> None:
    from aios_instance import BlockTester
    from tests.unit.ingest.blocks import END, Streamer

    tester = BlockTester(Streamer)
    assert tester.run({"words": 2}, session_id="t", is_ws=True)[0]["is_ws"] is True
    assert tester.context.ws_messages == [  # type: ignore[attr-defined]
        ("t", {"delta": "w0"}),
        ("t", {"delta": "w1"}),
        ("t", {"delta": END}),
    ]
    assert tester.run({"words": 0})[0]["is_ws"] is False
