"""gRPC sink: outputs to ``port: 0`` destinations go to an InferenceProxy ``infer`` call.

``host`` is the gRPC target; the destination's ``block_id`` travels as ``x-service-name``
metadata. One channel per target, reused; a ``False`` reply counts as a failed push.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import TransportError
from ..routing import Destination

__all__ = ["GrpcSink"]

_METHOD = "/InferenceProxy/infer"


class GrpcSink:
    """Calls ``InferenceProxy.infer`` once per payload on one channel."""

    def __init__(self, target: str, *, timeout_s: float = 5.0) -> None:
        try:
            import grpc
        except ImportError as exc:  # pragma: no cover - grpcio is a dependency
            raise TransportError("grpcio is not installed; gRPC outputs need it") from exc
        from .._proto import inference_proxy_pb2 as pb

        self._grpc = grpc
        self._pb = pb
        self.target = target
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(target)
        self._infer = self._channel.unary_unary(
            _METHOD,
            request_serializer=pb.InferenceMessage.SerializeToString,
            response_deserializer=pb.InferenceRespose.FromString,
        )

    def push(self, batches: Mapping[Destination, Sequence[bytes]]) -> Mapping[Destination, str]:
        """Send each payload; raises TransportError on the first failure (the whole batch is
        retried: payloads sent before it may arrive twice)."""
        for dest, payloads in batches.items():
            metadata = (("x-service-name", dest.block_id),)
            for payload in payloads:
                self._call(payload, metadata)
        return {}

    def _call(self, payload: bytes, metadata: Any) -> None:
        try:
            reply = self._infer(
                self._pb.InferenceMessage(rpc_data=payload),
                timeout=self.timeout_s,
                metadata=metadata,
            )
        except self._grpc.RpcError as exc:
            raise TransportError(f"gRPC {self.target} failed: {exc.code()}") from exc
        if not reply.message:
            raise TransportError(f"gRPC {self.target} refused the packet")

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
