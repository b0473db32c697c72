"""The runtime's ingest: ``POST /infer`` on the control API, the WebSocket server, the gRPC
``InferenceProxy`` server, and the stream hub ``context.write_ws`` writes to.

The ``/infer`` route is mounted when the control API starts (before the block is built: it
answers 503 "starting" until then); the invoker and the other servers start with the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute

from ..control.access import AccessPolicy
from ..ingest.grpc_server import GrpcIngest
from ..ingest.http import InferRoutes
from ..ingest.metrics import IngestMetrics
from ..ingest.streams import StreamHub
from ..ingest.ws import WsServer
from ..metrics import AIOSMetrics
from ..settings import Settings
from .deadletter import DeadLetters
from .instruments import RuntimeMetrics
from .invoke import RuntimeInvoker
from .pipeline import Pipeline

__all__ = ["Ingress"]


class Ingress:
    """Every way in besides the input list, for one runtime."""

    def __init__(self, settings: Settings, metrics: AIOSMetrics) -> None:
        self.settings = s = settings
        self.metrics = IngestMetrics(metrics)
        self.hub = StreamHub(self.metrics)
        self.policy = AccessPolicy.for_ingest(s)
        self.invoker: RuntimeInvoker | None = None
        self.http = InferRoutes(
            lambda: self.invoker,
            self.hub,
            self.metrics,
            self.policy,
            timeout_s=s.infer_timeout_s,
            max_concurrency=s.infer_max_concurrency,
        )
        self.ws_port: int | None = None
        self.grpc_port: int | None = None

    def routes(self) -> list[BaseRoute]:
        """The routes mounted on the control API."""
        return list(self.http.routes())

    def start(
        self,
        pipeline: Pipeline,
        redis: Any,
        records: DeadLetters,
        runtime_metrics: RuntimeMetrics,
    ) -> list[Callable[[], None]]:
        """Take jobs from now on; the closers, in start order."""
        s = self.settings
        self.invoker = RuntimeInvoker(pipeline, redis, records, runtime_metrics)
        closers: list[Callable[[], None]] = [self.http.close]
        try:
            if s.ws_port:
                ws = WsServer(
                    lambda: self.invoker,
                    self.hub,
                    self.metrics,
                    self.policy,
                    self.http.runner,
                    host=s.control_bind,
                    port=s.ws_port,
                    max_connections=s.ws_max_connections,
                    timeout_s=s.infer_timeout_s,
                ).start()
                self.ws_port = ws.port
                closers.append(ws.close)
            if s.grpc_port:
                closers.append(self._start_grpc(redis, records))
        except BaseException:
            for close in reversed(closers):
                close()
            raise
        return closers

    def _start_grpc(self, redis: Any, records: DeadLetters) -> Callable[[], None]:
        s = self.settings
        server = GrpcIngest(
            redis=redis,
            block_id=records.block_id,
            instance_id=records.instance_id,
            metrics=self.metrics,
            policy=self.policy,
            host=s.control_bind,
            port=s.grpc_port,
        ).start()
        self.grpc_port = server.port
        return server.close
