"""Sidecars: URL rules, pushes to real Redis servers, retry-once, and the consumer loop."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aios_instance._proto import aios_packet_pb2
from aios_instance.embedded import EmbeddedRedis, free_port
from aios_instance.errors import ConfigError
from aios_instance.packet import AIOSPacket, decode_packet, make_packet
from aios_instance.sidecars import BlockSideCars, SidecarConsumer, sidecar_url
from tests.support import FakeClock, eventually

Factory = Callable[[], EmbeddedRedis]


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, protocol=2)


def _inputs(server: EmbeddedRedis) -> list[bytes]:
    client = _client(server)
    try:
        return [raw for raw in client.lrange("INPUTS", 0, -1) if isinstance(raw, bytes)]
    finally:
        client.close()


def _external(port: int) -> dict[str, object]:
    return {"external": True, "external_redis_url": f"127.0.0.1:{port}"}


# -- addresses -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis-host", "redis://redis-host:6379/0"),
        ("redis-host:6380", "redis://redis-host:6380/0"),
        (" 10.0.0.5:7000 ", "redis://10.0.0.5:7000/0"),
        ("redis://:pw@h:1/2", "redis://:pw@h:1/2"),
        ("rediss://h", "rediss://h"),
        ("[::1]:7001", "redis://[::1]:7001/0"),
        ("[::1]", "redis://[::1]:6379/0"),
        ("fe80::1", "redis://[fe80::1]:6379/0"),
    ],
)
def test_external_url_forms(given: str, expected: str) -> None:
    assert sidecar_url("x", "b", {"external": True, "external_redis_url": given}) == expected


@pytest.mark.parametrize("bad", ["host:port", "http://h:80", ":6379"])
def test_bad_external_addresses_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        sidecar_url("x", "b", {"external": True, "external_redis_url": bad})


def test_internal_sidecars_use_the_cluster_service_name() -> None:
    expected = "redis://saver-blk-1-svc.sidecars.svc.cluster.local:6379/0"
    assert sidecar_url("saver", "blk-1", {"external": False}) == expected
    assert sidecar_url("saver", "blk-1", None) == expected
    assert sidecar_url("saver", "blk-1", {"external": "false"}) == expected
    side_cars = BlockSideCars("blk-1", {"saver": {}}, port=6390)
    assert side_cars.url_for("saver").endswith("cluster.local:6390/0")


def test_external_flag_may_be_a_string() -> None:
    settings = {"external": "true", "external_redis_url": "h:1"}
    assert sidecar_url("x", "b", settings) == "redis://h:1/0"


@pytest.mark.parametrize(
    "config",
    [{"x": {"external": True}}, {"x": {"external": True, "external_redis_url": ""}}, {"x": 3}],
)
def test_invalid_config_fails_at_construction(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="'x'"):
        BlockSideCars("b", config)


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError):
        BlockSideCars("b", ["a", "b"])  # type: ignore[arg-type]


def test_names_keep_configuration_order_and_empty_config_is_fine() -> None:
    assert BlockSideCars("b", {"z": {}, "a": {}}).names == ["z", "a"]
    empty = BlockSideCars("b")
    assert empty.names == [] and empty.push_to_all_sidecars(make_packet({"a": 1})) == {}


# -- pushing -------------------------------------------------------------------------------
def test_push_lands_in_inputs(redis_factory: Factory) -> None:
    server = redis_factory()
    side_cars = BlockSideCars("b", {"saver": _external(server.port)})
    packet = make_packet({"value": 1}, files=[({"name": "a"}, b"\x00\x01")], session_id="s")
    assert side_cars.push_to_sidecar("saver", packet) is True
    assert side_cars.push_to_sidecar("saver", make_packet({"value": 2}, seq_no=2)) is True
    raw = _inputs(server)
    assert decode_packet(raw[0]) == packet
    assert decode_packet(raw[1]).seq_no == 2
    assert side_cars.pushed == {"saver": 2} and side_cars.failures == {"saver": 0}
    side_cars.close()


def test_generated_protobuf_messages_are_accepted(redis_factory: Factory) -> None:
    server = redis_factory()
    side_cars = BlockSideCars("b", {"s": {"external": True, "external_redis_url": server.url}})
    message = aios_packet_pb2.AIOSPacket(session_id="p", seq_no=4, data="{}")
    assert side_cars.push_to_sidecar("s", message)
    assert _inputs(server) == [message.SerializeToString()]
    side_cars.close()


def test_one_client_per_sidecar_is_reused(redis_factory: Factory) -> None:
    server = redis_factory()
    side_cars = BlockSideCars("b", {"s": _external(server.port)})
    observer = _client(server)
    before = int(observer.info("stats")["total_connections_received"])
    for i in range(20):
        assert side_cars.push_to_sidecar("s", make_packet(i))
    assert int(observer.info("stats")["total_connections_received"]) == before + 1
    observer.close()
    side_cars.close()


def test_a_dead_sidecar_does_not_stop_the_others(
    redis_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = redis_factory(), redis_factory()
    failed: list[str] = []
    config = {
        "a": _external(first.port),
        "dead": _external(free_port()),
        "b": _external(second.port),
    }
    side_cars = BlockSideCars("blk", config, on_failure=failed.append)
    packet = make_packet({"x": 1}, session_id="s1")
    with caplog.at_level(logging.ERROR, logger="aios_instance.sidecars"):
        assert side_cars.push_to_all_sidecars(packet) == {"a": True, "dead": False, "b": True}
    assert [decode_packet(r) for r in _inputs(first)] == [packet]
    assert [decode_packet(r) for r in _inputs(second)] == [packet]
    assert side_cars.failures == {"a": 0, "dead": 1, "b": 0}
    assert side_cars.retries == {"a": 0, "dead": 1, "b": 0}  # the dead one was tried twice
    assert failed == ["dead"]
    assert "'dead'" in caplog.text and "127.0.0.1:" in caplog.text
    side_cars.close()


def test_unknown_sidecar_returns_false_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    side_cars = BlockSideCars("b", {"known": {}})
    with caplog.at_level(logging.ERROR, logger="aios_instance.sidecars"):
        assert side_cars.push_to_sidecar("nope", make_packet(1)) is False
    assert "'nope'" in caplog.text and "known" in caplog.text
    assert side_cars.failures["nope"] == 1


def test_a_command_error_is_not_retried(redis_factory: Factory) -> None:
    server = redis_factory()
    client = _client(server)
    client.set("INPUTS", b"not a list")
    side_cars = BlockSideCars("b", {"s": _external(server.port)})
    assert side_cars.push_to_sidecar("s", make_packet(1)) is False
    assert side_cars.retries == {"s": 0} and side_cars.failures == {"s": 1}
    client.close()
    side_cars.close()


class DropFirstConnection:
    """A TCP proxy to a real redis-server that hangs up on the first connection it accepts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._serve)]
        self._threads[0].start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted == 1:
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                thread = threading.Thread(target=_pump, args=(src, dst))
                self._threads.append(thread)
                thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept() (close alone does not)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def flaky(redis_factory: Factory) -> Iterator[tuple[DropFirstConnection, EmbeddedRedis]]:
    """A real server behind a proxy whose first connection fails."""
    server = redis_factory()
    proxy = DropFirstConnection(server.port)
    yield proxy, server
    proxy.close()


def test_a_failed_connection_is_retried_once(
    flaky: tuple[DropFirstConnection, EmbeddedRedis],
) -> None:
    proxy, server = flaky
    side_cars = BlockSideCars("b", {"s": _external(proxy.port)})
    packet = make_packet({"retried": True})
    assert side_cars.push_to_sidecar("s", packet) is True
    assert side_cars.retries == {"s": 1} and side_cars.failures == {"s": 0}
    assert proxy.accepted == 2
    assert [decode_packet(r) for r in _inputs(server)] == [packet]  # exactly once
    side_cars.close()


def test_concurrent_pushes(redis_factory: Factory) -> None:
    server = redis_factory()
    side_cars = BlockSideCars("b", {"s": _external(server.port)})

    def work(worker: int) -> None:
        for i in range(100):
            side_cars.push_to_sidecar("s", make_packet(i, session_id=str(worker)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_inputs(server)) == 600 and side_cars.pushed == {"s": 600}
    side_cars.close()


# -- consuming -----------------------------------------------------------------------------
def _fill(client: redis.Redis, *packets: AIOSPacket | bytes) -> None:
    for p in packets:
        client.rpush("INPUTS", p if isinstance(p, bytes) else p.SerializeToString())


def test_consumer_hands_packets_over_in_order(redis_client: redis.Redis) -> None:
    seen: list[AIOSPacket] = []
    consumer = SidecarConsumer(redis_client, seen.append, batch_size=3)
    _fill(redis_client, *(make_packet({"i": i}, seq_no=i) for i in range(5)))
    assert consumer.run_once(timeout_s=1) == 3
    assert consumer.run_once(timeout_s=1) == 2
    assert [p.seq_no for p in seen] == [0, 1, 2, 3, 4]
    assert seen[4].json() == {"i": 4}
    assert consumer.handled == 5


def test_consumer_without_waiting_returns_at_once(redis_client: redis.Redis) -> None:
    consumer = SidecarConsumer(redis_client, lambda p: None)
    assert consumer.run_once(timeout_s=0) == 0
    _fill(redis_client, make_packet(1))
    assert consumer.run_once(timeout_s=0) == 1


def test_bad_packets_and_failing_handlers_do_not_stop_the_loop(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[int] = []

    def handler(packet: AIOSPacket) -> None:
        if packet.seq_no == 2:
            raise RuntimeError("handler bug")
        handled.append(packet.seq_no)

    consumer = SidecarConsumer(redis_client, handler)
    _fill(redis_client, make_packet(1, seq_no=1), b"\xff\xff garbage", make_packet(2, seq_no=2))
    _fill(redis_client, make_packet(3, seq_no=3))
    assert consumer.run_once(timeout_s=1) == 4
    assert handled == [1, 3]
    assert (consumer.handled, consumer.malformed, consumer.errors) == (2, 1, 1)
    assert "handler bug" in caplog.text and "malformed" in caplog.text


def test_run_until_stopped(redis_client: redis.Redis) -> None:
    stop = threading.Event()
    seen: list[int] = []

    def handler(packet: AIOSPacket) -> None:
        seen.append(packet.seq_no)
        if len(seen) == 3:
            stop.set()

    consumer = SidecarConsumer(redis_client, handler, batch_size=1)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(consumer.run(stop, poll_s=0.2)))
    thread.start()
    _fill(redis_client, *(make_packet(i, seq_no=i) for i in range(3)))
    thread.join(10)
    assert not thread.is_alive() and result == [3] and seen == [0, 1, 2]


class StopWhenWaiting(threading.Event):
    """Stops the loop the first time it backs off."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_run_survives_an_unreachable_redis(caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis(port=free_port(), protocol=2, retry=Retry(NoBackoff(), 0))
    consumer = SidecarConsumer(client, lambda p: None)
    assert consumer.run(StopWhenWaiting(), poll_s=0.1) == 0
    assert consumer.connection_errors == 1 and "unreachable" in caplog.text
    client.close()


def test_batch_size_must_be_positive(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        SidecarConsumer(redis_client, lambda p: None, batch_size=0)


# -- backoff -------------------------------------------------------------------------------
class Hung:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)  # kept open, never read from or written to
            self.accepted += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)
        for conn in self._conns:
            conn.close()


@pytest.fixture
def hung() -> Iterator[Hung]:
    server = Hung()
    yield server
    server.close()


def test_a_hung_sidecar_is_backed_off_and_never_throttles_the_others(
    hung: Hung, redis_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    good = redis_factory()
    failed: list[str] = []
    clock = FakeClock()  # the backoff's time; the push timeouts stay real (0.2 s)
    side_cars = BlockSideCars(
        "b",
        {"hung": _external(hung.port), "good": _external(good.port)},
        timeout_s=0.2,
        retry_after_s=1.0,
        max_retry_after_s=2.0,
        on_failure=failed.append,
        clock=clock,
    )
    packet = make_packet({"x": 1})
    both = {"hung": False, "good": True}
    with caplog.at_level(logging.DEBUG, logger="aios_instance.sidecars"):
        assert side_cars.push_to_all_sidecars(packet) == both  # a timeout, and the retry
        eventually(lambda: hung.accepted == 2)
        assert side_cars.retries["hung"] == 1
        for _ in range(20):  # backed off: the hung sidecar is not even connected to
            assert side_cars.push_to_all_sidecars(packet) == both
        assert hung.accepted == 2
        assert side_cars.failures["hung"] == 21 and side_cars.skipped["hung"] == 20
        assert len(failed) == 21
        clock.advance(1.0)  # retry_after_s: one push probes it, once (no retry)
        assert side_cars.push_to_sidecar("hung", packet) is False
        eventually(lambda: hung.accepted == 3)
        assert side_cars.retries["hung"] == 1
        clock.advance(1.0)  # the interval doubled to 2 s: still backed off
        assert side_cars.push_to_sidecar("hung", packet) is False
        assert side_cars.skipped["hung"] == 21
        clock.advance(1.0)
        assert side_cars.push_to_sidecar("hung", packet) is False
        eventually(lambda: hung.accepted == 4)
    assert hung.accepted == 4
    assert len(_inputs(good)) == 21
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "'hung'" in errors[0].getMessage()  # once per outage
    side_cars.close()


def test_a_sidecar_that_comes_back_is_used_again(caplog: pytest.LogCaptureFixture) -> None:
    server = EmbeddedRedis(port=free_port())  # not started yet: connections are refused
    side_cars = BlockSideCars("b", {"s": _external(server.port)}, retry_after_s=0.05)
    packet = make_packet({"back": True})
    with caplog.at_level(logging.INFO, logger="aios_instance.sidecars"):
        assert side_cars.push_to_sidecar("s", packet) is False
        with server:
            eventually(lambda: side_cars.push_to_sidecar("s", packet))
            assert [decode_packet(r) for r in _inputs(server)] == [packet]
        assert side_cars.push_to_sidecar("s", packet) is False  # a new outage
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == ["ERROR", "INFO", "ERROR"], messages
    assert "reachable again" in messages[1][1]
    side_cars.close()
