"""The gRPC sink against a real InferenceProxy server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from aios_instance._proto import inference_proxy_pb2 as pb
from aios_instance.embedded import free_port
from aios_instance.errors import TransportError
from aios_instance.routing import Destination
from aios_instance.transport.grpc import GrpcSink


class Proxy:
    """Answers ``/InferenceProxy/infer`` with ``message=accept``; records what it got."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        self.accept = True

    def infer(self, request: Any, context: grpc.ServicerContext) -> Any:
        service = dict(context.invocation_metadata()).get("x-service-name", "")
        self.received.append((request.rpc_data, str(service)))
        return pb.InferenceRespose(message=self.accept)


@pytest.fixture
def proxy() -> Iterator[tuple[Proxy, str]]:
    servicer = Proxy()
    handler = grpc.method_handlers_generic_handler(
        "InferenceProxy",
        {
            "infer": grpc.unary_unary_rpc_method_handler(
                servicer.infer,
                request_deserializer=pb.InferenceMessage.FromString,
                response_serializer=pb.InferenceRespose.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def test_each_payload_is_one_call_naming_the_target_block(proxy: tuple[Proxy, str]) -> None:
    servicer, target = proxy
    sink = GrpcSink(target)
    dest = Destination("grpc", target, 0, "next_inputs", "next")
    try:
        assert sink.push({dest: [b"a", b"b"]}) == {}
    finally:
        sink.close()
    assert servicer.received == [(b"a", "next"), (b"b", "next")]


def test_a_refusal_is_a_failed_push(proxy: tuple[Proxy, str]) -> None:
    servicer, target = proxy
    servicer.accept = False
    sink = GrpcSink(target)
    try:
        with pytest.raises(TransportError, match="refused"):
            sink.push({Destination("grpc", target, 0, "n_inputs", "n"): [b"a"]})
    finally:
        sink.close()


def test_an_unreachable_target_is_a_transport_error() -> None:
    target = f"127.0.0.1:{free_port()}"
    sink = GrpcSink(target, timeout_s=1.0)
    try:
        with pytest.raises(TransportError, match="failed"):
            sink.push({Destination("grpc", target, 0, "n_inputs", "n"): [b"a"]})
    finally:
        sink.close()
