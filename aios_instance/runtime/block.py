"""`Block`: wires settings, block data, the context, the user's class, the worker and the
background services (lease, metrics, control API) into one running instance.

``Block(MyBlock).run()`` serves until SIGTERM/SIGINT, then stops claiming, finishes or hands
back what it holds, and returns (exit code 0). ``Block(MyBlock).start()`` does the same on a
background thread and returns the ``Runtime`` handle (embedding, tests).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .. import _logging, keys, state
from .._connections import ConnectionBounds
from .._urls import as_redis_url, redact
from ..blockdata import BlockData, load_block_data
from ..context import Context
from ..contract import check_block_class
from ..control.api import start_api, start_listener
from ..control.exporter import MetricsExporter
from ..errors import ConfigError, TransportError
from ..events import BlockEvents
from ..metrics import AIOSMetrics, MetricsServer
from ..routing import Router, destination_from_url
from ..sessions import SessionsManager
from ..settings import Settings
from ..sidecars import BlockSideCars
from ..transport.pool import SinkPool
from ..transport.redis import RedisSource, connect
from .giveup import give_up
from .hooks import Hooks, MetricsHooks
from .ingress import Ingress
from .instruments import RuntimeMetrics
from .lease import LeaseKeeper
from .loghooks import LoggingHooks
from .pipeline import Pipeline
from .startup import (
    age_s,
    allocation_of,
    construct,
    export_gpus,
    unreachable,
    wait_for_redis,
)
from .target import RuntimeTarget
from .trim import Trimmer
from .watchdog import Abandoned, Stuck, Watchdog
from .worker import Worker

__all__ = ["Block", "Runtime"]

log = logging.getLogger(__name__)

_HAND_BACK_WAIT_S = 60.0  # how long a returning worker waits for the watchdog's hand-back
_CLOSE_GRACE_S = 2.0  # past the drain deadline, for closing the services before the watchdog acts


class Block:
    """The entry point of a block process: ``Block(MyBlock).run()``."""

    def __init__(
        self,
        block_class: type[Any],
        settings: Settings | None = None,
        *,
        block_data: BlockData | None = None,
    ) -> None:
        self.block_class = block_class
        self._settings = settings
        self._block_data = block_data
        self.runtime: Runtime | None = None

    def run(self, *, on_serving: Callable[[Runtime], None] | None = None) -> None:
        """Serve until SIGTERM/SIGINT, then drain and return.

        A signal while the block is still being constructed (a model loading) ends the
        start at once: nothing is claimed yet, so ``run()`` just returns. ``on_serving`` is
        called once the instance serves (the CLI prints its ports then).
        """
        self._settings = self._settings or Settings.from_env()
        _logging.configure(self._settings.log_level)  # the spec's `python block.py` logs too
        previous = _install_signals(_stop_starting)
        try:
            try:
                runtime = self._build()
                runtime.exit_on_give_up = True  # the process is the block's: exit when stuck
                _install_signals(runtime.stop)
            except _StopWhileStarting:
                log.info("stop requested while the block was starting; exiting")
                return
            runtime.serve(on_serving)
        finally:
            _restore_signals(previous)

    def start(self) -> Runtime:
        """Serve on a background thread; returns the running Runtime (call ``stop()``)."""
        runtime = self._build()
        runtime.thread = threading.Thread(target=runtime.serve, name="aios-worker", daemon=True)
        runtime.thread.start()
        return runtime

    def _build(self) -> Runtime:
        settings = self._settings or Settings.from_env()
        self.runtime = Runtime(self.block_class, settings, self._block_data)
        return self.runtime


class Runtime:
    """A running instance: the user's block, its pipeline, worker and background services."""

    def __init__(
        self, block_class: type[Any], settings: Settings, block_data: BlockData | None = None
    ) -> None:
        check_block_class(block_class)  # before anything starts or a model loads
        self.settings = s = settings
        self.block_data = block_data or load_block_data(
            s.block_id,
            file=s.block_data_file,
            blocks_db_uri=s.blocks_db_uri,
            custom_init_data=s.custom_init_data,
        )
        self.thread: threading.Thread | None = None
        self.draining = False
        self.live_problem = ""  # why /live answers 503 (a job past AIOS_JOB_TIMEOUT_S); "" = live
        self._crashed = False
        self.started_at = time.time()
        self._services: list[Callable[[], None]] = []  # closers, run in reverse at shutdown
        # Checked before anything starts: a bad address is a one-line error, not a crash.
        metrics_host = s.metrics_redis_host
        self._metrics_url = as_redis_url(metrics_host) if metrics_host else None
        self.redis = connect(s.redis_url, socket_timeout_s=s.idle_wait_s + 5.0)
        self.metrics = AIOSMetrics(block_id=s.block_id, instance_id=s.instance_id)
        self.runtime_metrics = RuntimeMetrics(self.metrics, map(str, self.block_data.sidecars))
        self.ingress = Ingress(s, self.metrics)  # POST /infer answers 503 until it serves
        self.context = self._make_context()
        self.context.attach_streams(self.ingress.hub.write)
        export_gpus(allocation_of(s, self.block_data))
        state.set_default_redis(self.redis)
        self.block: Any = None  # until the constructor returns, the control API says "starting"
        self.control = RuntimeTarget(self)  # what the control API and listener see of it
        self.control_port: int | None = None  # the control API's bound port, once it serves
        self._start_control(api=True)  # /live answers while Redis is awaited, a model loads
        try:
            self._wait_for_redis()
            self.block = construct(block_class, self.context)  # models load here
            default = destination_from_url(s.redis_url, s.default_output)
            self.router = Router(s.block_id, (default,))
            self.pipeline = Pipeline(  # calls the block's get_muxer()
                self.block,
                self.router,
                validate_json=s.validate_json,
                max_hops=s.max_hops,
            )
        except BaseException:
            for close in reversed(self._services):  # the control API started above
                close()
            raise
        self.source = RedisSource(self.redis, s.block_id, s.instance_id, lease_ttl_s=s.lease_ttl_s)
        self.sinks = SinkPool()
        self.worker = Worker(
            self.pipeline,
            self.source,
            self.sinks,
            block_id=s.block_id,
            instance_id=s.instance_id,
            claim_batch=s.claim_batch,
            max_deliveries=s.max_deliveries,
            idle_wait_s=s.idle_wait_s,
            delivery_timeout_s=s.delivery_timeout_s,
            hooks=Hooks.combine(
                MetricsHooks(self.runtime_metrics),
                LoggingHooks(keys.dead_letters(s.block_id), block_id=s.block_id),
            ),
        )
        self.lease = LeaseKeeper(self.source.lease, s.lease_ttl_s, on_renewed=self._sample)
        self.watchdog = Watchdog(self.pipeline.running, s.job_timeout_s, self._stuck)
        self.trimmer = Trimmer()  # gives memory back after a burst of large packets
        self.exit_on_give_up = False  # Block.run: the process ends when it gives up
        self.gave_up = False
        self.handed_back = threading.Event()  # set once a give-up handed back what was held
        self._stop_deadline = 0.0  # monotonic; set by stop()

    def _wait_for_redis(self) -> None:
        """Before the block is built: the instance Redis answers (waited for with backoff)."""
        s = self.settings
        try:
            wait_for_redis(self.redis, s.startup_timeout_s, redact(s.redis_url))
        except TransportError as exc:
            raise ConfigError(unreachable(s, exc)) from None

    def _make_context(self) -> Context:
        s, data, m = self.settings, self.block_data, self.runtime_metrics
        allocation = allocation_of(s, data)
        events_url = s.events_redis_url or s.redis_url
        context = Context(
            block_id=s.block_id,
            instance_id=s.instance_id,
            block_data=data.document,
            block_init_data=data.init_data,
            block_init_settings=data.init_settings,
            block_init_parameters=dict(data.parameters),
            allocation_info=dict(allocation) if allocation is not None else None,
            metrics=self.metrics,
            sessions=SessionsManager(idle_ttl_s=s.session_ttl_s or None),
            events=BlockEvents(s.block_id, events_url, on_failure=m.event_push_failed),
            side_cars=BlockSideCars(s.block_id, data.sidecars, on_failure=m.sidecar_push_failed),
        )
        self.metrics.node_id = s.node_id or str(context.allocation_info.get("node_id") or "")
        return context

    # -- lifecycle -------------------------------------------------------------------------
    def serve(self, on_serving: Callable[[Runtime], None] | None = None) -> None:
        """Start the services, run the worker on this thread until stopped, then drain."""
        s = self.settings
        try:
            self.source.start()
        except TransportError as exc:
            raise ConfigError(unreachable(s, exc)) from None
        try:
            self._start_services()
            log.info(
                "block %s instance %s serving %s on %s (claim batch %d)",
                s.block_id,
                s.instance_id,
                keys.inputs(s.block_id),
                redact(s.redis_url),
                s.claim_batch,
            )
            # Everything built so far (the model, the libraries) lives as long as the process:
            # keep it out of the collector's way, so a full collection does not walk it in
            # the middle of a job (pauses of tens of ms with a large model or many imports).
            gc.freeze()
            if on_serving is not None:
                on_serving(self)
            self.watchdog.start()
            self.worker.run()
        except Abandoned:  # user code returned after a give-up: let the watchdog finish
            self.handed_back.wait(_HAND_BACK_WAIT_S)  # (Block.run: it exits the process)
            return
        except BaseException:
            # Unexpected (a bug, or user code raising SystemExit): the claimed packets are
            # handed back as one more delivery each, so a packet that crashes the process
            # every time reaches max_deliveries and is dead-lettered instead of looping.
            self._crashed = True
            log.exception("the worker loop failed; handing back its claimed packets")
            raise
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Stop claiming; serve() then drains and returns, within AIOS_DRAIN_TIMEOUT_S (past
        it, hung user code or not, the watchdog hands back what is held and ends the instance).
        Only sets values (safe from a signal handler)."""
        if not self.draining:
            log.info("stopping: no new packets are claimed; finishing the ones held")
            self._stop_deadline = time.monotonic() + self.settings.drain_timeout_s
            self.watchdog.stop_by(self._stop_deadline + _CLOSE_GRACE_S)
        self.draining = True
        self.worker.stop()
        if self.gave_up and not self.exit_on_give_up:
            self._close_services()  # an embedded runtime that gave up: its thread is stuck

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for a background runtime (start()) to finish; True if it did."""
        if self.thread is None:
            return True
        self.thread.join(timeout_s)
        return not self.thread.is_alive()

    def _start_services(self) -> None:
        self.lease.start()
        self._services.append(self.lease.stop)
        s = self.settings
        if s.metrics_port:
            try:
                bounds = ConnectionBounds.from_settings(s)
                server: MetricsServer = self.metrics.serve_http(
                    s.metrics_port, s.control_bind, bounds
                )
            except OSError as exc:
                msg = (
                    f"cannot serve metrics on METRICS_PORT={s.metrics_port}: {exc}. Set "
                    "METRICS_PORT to a free port (or 0: /metrics stays on the control API)"
                )
                raise ConfigError(msg) from None
            self._services.append(server.close)
        url = self._metrics_url
        if url is not None:
            exporter = MetricsExporter(
                self.control.snapshot, lambda: connect(url), interval_s=s.metrics_interval_s
            ).start()
            self._services.append(exporter.stop)
        self._start_control()
        ingest = (self.pipeline, self.redis, self.worker.records, self.runtime_metrics)
        self._services.extend(self.ingress.start(*ingest))

    def _start_control(self, *, api: bool = False) -> None:
        """``api``: the HTTP control API (from __init__, so that it answers while the block is
        constructed; stores the bound port); else the PARAMETER_UPDATES listener (from serve).
        Both see this runtime through ``self.control`` (see control/api.py)."""
        if api:
            self.control_port, closers = start_api(self.control, self.ingress.routes())
        else:
            closers = start_listener(self.control)
        self._services.extend(closers)

    def _shutdown(self) -> None:
        if self.worker.gate.closed:
            return  # the watchdog gives the instance up (giveup.py): it hands back what is held
        t0 = time.monotonic()
        try:
            self._drain(t0)
        except Abandoned:  # past the stop's deadline: the watchdog took over (giveup.py)
            self.handed_back.wait(_HAND_BACK_WAIT_S)
            return
        self.watchdog.stop()
        self.sinks.close()
        self.context.events.close()
        self.context.side_cars.close()
        self.redis.close()
        state.set_default_redis(None)
        log.info("stopped in %.2fs", time.monotonic() - t0)

    def _drain(self, t0: float) -> None:
        if not self._crashed:  # after a crash the pipeline's state is not to be trusted
            left_s = self._stop_deadline - t0 if self._stop_deadline else None
            self.worker.shutdown(self.settings.drain_timeout_s if left_s is None else left_s)
        self._close_services()
        with self.worker.gate:  # a watchdog past the deadline waits for it, or takes over
            self.source.close(count_attempts=self._crashed)

    def _close_services(self) -> None:
        services, self._services = self._services, []
        for close in reversed(services):
            try:
                close()
            except Exception:
                log.exception("error while stopping a service")

    def _stuck(self, stuck: Stuck) -> bool:
        """Called by the watchdog: give the instance up (see giveup.py); whether it did."""
        gave_up = give_up(self, stuck)
        if gave_up and self.draining:  # stop() came first: nobody else will close them
            self._close_services()
        return gave_up

    def _sample(self) -> None:
        """After each lease renewal: expire idle sessions, sample the autoscaling gauges."""
        sessions = self.context.sessions
        if isinstance(sessions, SessionsManager):  # frees idle sessions no call touches
            expired = sessions.expire()
            if expired:
                log.debug("expired %d idle session(s)", len(expired))
        m, backlog = self.runtime_metrics, self.source.backlog
        m.set_queue_depth(backlog.depth())
        m.set_in_flight(self.worker.in_flight + self.worker.parked)
        outbox = self.worker.outbox
        m.set_outbox(outbox.parked_outputs, outbox.parked_bytes, outbox.endpoints)
        m.set_routing_cache(self.router.cache_info().currsize)
        muxer = self.pipeline.muxer
        if muxer is not None and hasattr(muxer, "open_groups"):
            m.set_muxer_open_groups(muxer.open_groups)
        m.set_oldest_age_s(age_s(backlog.oldest()))
        self.trimmer.maybe_trim()


class _StopWhileStarting(BaseException):
    """Raised by the signal handler installed while the block is constructed (a
    BaseException, so that user code catching Exception does not swallow it)."""


def _stop_starting() -> None:
    raise _StopWhileStarting


def _install_signals(stop: Callable[[], None]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
