"""Routing: turn a packet's ``output_ptr`` into the destinations its result is pushed to.

Grammar (a JSON string, or an already-decoded dict)::

    output_ptr := ""  |  whitespace  |  "{}"  |  None      -> the router's default destinations
                | direct | graph
    direct     := {"outputs": [output, ...]}
    graph      := {"is_graph": true,
                   "graph": {"<block_id>": node, ..., "final": node}}
    node       := {"outputs": [output, ...]} | output | [output, ...] | {} | null
    output     := {"host": str,                  required, non-empty
                   "port": int | "digits",       default 6379, 0..65535; 0 means gRPC
                   "queue_name": str,            default "<block_id>_inputs"
                   "block_id": str,              required when queue_name is absent or port is 0
                   "db": int | "digits",         default 0
                   ...}                          other keys are ignored

A graph uses the node of the router's own block id; when that node is absent or names no
output, it uses ``graph["final"]``; when neither names an output, that is a `RoutingError`.
An output with ``port`` 0 is a gRPC destination: ``host`` is the target ("host:port") of the
``InferenceProxy`` service and ``block_id`` travels as the ``x-service-name`` metadata.
Destinations are de-duplicated, first occurrence first.

Every malformed pointer raises `RoutingError` naming the problem and quoting the pointer.
`Router` parses each distinct string once (a thread-safe LRU cache of 4,096 entries, failures
included, holding pointers up to 4,096 characters: bounded by bytes as well as entries), so
routing a packet whose pointer was seen before costs one dictionary lookup; a longer pointer
is parsed every time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from . import _json, keys
from ._json import type_name
from ._urls import DEFAULT_PORT, bracket, redact, same_host
from .errors import ConfigError, RoutingError

__all__ = ["DEFAULT_REDIS_PORT", "Destination", "Router", "destination_from_url"]

DEFAULT_REDIS_PORT: Final = DEFAULT_PORT
"""The port of an output that names none."""

_MAX_PORT: Final = 65535
_QUOTE_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one result goes: a Redis list, or a block behind the gRPC ``InferenceProxy``."""

    kind: Literal["redis", "grpc"]
    host: str
    port: int
    queue_name: str
    block_id: str
    db: int = 0
    password: str | None = field(default=None, repr=False)
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Hashed on every push and ack bookkeeping step: compute it once.
        key = (self.kind, self.host, self.port, self.queue_name, self.block_id, self.db)
        object.__setattr__(self, "_hash", hash((*key, self.password)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def place(self) -> tuple[object, ...]:
        """What two destinations share when they are one list however their host is spelt
        (case, a trailing dot, brackets, ``localhost``/``127.0.0.1``/``::1``). For gRPC the
        block id is the destination (it travels as ``x-service-name``)."""
        if self.kind == "grpc":
            return (self.kind, self.host.lower(), self.block_id)
        return (self.kind, same_host(self.host), self.port, self.queue_name, self.db, self.password)

    @property
    def address(self) -> str:
        """``host:port`` to connect to (for gRPC, ``host`` already is the target)."""
        if self.kind == "grpc":
            return self.host
        return f"{bracket(self.host)}:{self.port}"


class _Failure:
    """A cached parse failure: the message of the `RoutingError` to raise (fresh each time)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


_Parsed: TypeAlias = "tuple[Destination, ...] | _Failure"


class _MalformedError(Exception):
    """Internal: one problem found while walking a pointer (wrapped into a RoutingError)."""


class Router:
    """Maps ``output_ptr`` values to destinations for one block; safe to share between threads."""

    __slots__ = ("_parse", "_parse_cached", "block_id", "cache_size", "default", "max_cached_chars")

    def __init__(
        self,
        block_id: str,
        default: tuple[Destination, ...],
        cache_size: int = 4096,
        max_cached_chars: int = 4096,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.block_id = block_id
        self.default = tuple(default)
        self.cache_size = cache_size
        # Pointers come from producers: only short ones are cached, so the cache holds at
        # most cache_size * max_cached_chars characters (16 MiB by default), whatever is sent.
        self.max_cached_chars = max_cached_chars
        self._parse = functools.partial(_parse_text, block_id, self.default)
        self._parse_cached = functools.lru_cache(maxsize=cache_size)(self._parse)

    def route(self, output_ptr: str | dict[str, Any] | None) -> tuple[Destination, ...]:
        """Return the destinations for ``output_ptr``; raises `RoutingError` if it is malformed."""
        if not output_ptr:
            return self.default
        if isinstance(output_ptr, str):
            if len(output_ptr) <= self.max_cached_chars:
                result = self._parse_cached(output_ptr)
            else:
                result = self._parse(output_ptr)
        elif isinstance(output_ptr, dict):
            result = _parse_value(self.block_id, self.default, output_ptr, output_ptr)
        else:
            raise RoutingError(
                f"bad output_ptr: expected a JSON string, a dict or None, "
                f"got {type(output_ptr).__name__}; output_ptr={_quote(output_ptr)}"
            )
        if isinstance(result, _Failure):
            raise RoutingError(result.message)
        return result

    def cache_info(self) -> functools._CacheInfo:
        """Hits, misses, maximum and current size of the parse cache."""
        return self._parse_cached.cache_info()

    def cache_clear(self) -> None:
        """Forget every parsed pointer."""
        self._parse_cached.cache_clear()

    def __repr__(self) -> str:
        return f"Router(block_id={self.block_id!r}, default={self.default!r})"


def _parse_text(block_id: str, default: tuple[Destination, ...], text: str) -> _Parsed:
    """Parse one pointer string (the cached function; never raises)."""
    if not text.strip():
        return default
    try:
        value = _json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _Failure(_message(f"not valid JSON ({exc})", text))
    return _parse_value(block_id, default, value, text)


def _parse_value(
    block_id: str, default: tuple[Destination, ...], value: object, shown: object
) -> _Parsed:
    """Turn a decoded pointer into destinations, or a failure quoting ``shown``."""
    try:
        return _destinations(block_id, default, value)
    except _MalformedError as exc:
        return _Failure(_message(str(exc), shown))


def _destinations(
    block_id: str, default: tuple[Destination, ...], value: object
) -> tuple[Destination, ...]:
    if not isinstance(value, dict):
        raise _MalformedError(f"expected a JSON object, got {type_name(value)}")
    if not value:
        return default
    if _is_graph(value):
        found = _graph_outputs(value, block_id)
    elif "outputs" in value:
        found = _outputs_list(value["outputs"], "outputs")
    else:
        raise _MalformedError("expected an 'outputs' list or 'is_graph': true")
    # One push per list, however often or however its host is spelt (a pointer naming its
    # own input three ways would otherwise triple the packets on every pass).
    unique: dict[tuple[object, ...], Destination] = {}
    for dest in found:
        unique.setdefault(dest.place, dest)
    return tuple(unique.values())


def _is_graph(value: dict[str, Any]) -> bool:
    flag = value.get("is_graph", False)
    if not isinstance(flag, bool):
        raise _MalformedError(f"'is_graph' must be true or false, got {type_name(flag)}")
    return flag


def _graph_outputs(value: dict[str, Any], block_id: str) -> list[Destination]:
    graph = value.get("graph")
    if not isinstance(graph, dict):
        raise _MalformedError(f"'graph' must be an object of block ids, got {type_name(graph)}")
    found = _node_outputs(graph.get(block_id), f"graph[{block_id!r}]")
    if not found:
        found = _node_outputs(graph.get("final"), "graph['final']")
    if not found:
        raise _MalformedError(f"graph has no entry for block {block_id!r} and no final")
    return found


def _node_outputs(node: object, where: str) -> list[Destination]:
    """The outputs of one graph node: ``{"outputs": [...]}``, one output, a list, or nothing."""
    if node is None:
        return []
    if isinstance(node, list):
        return _outputs_list(node, where)
    if not isinstance(node, dict):
        raise _MalformedError(f"{where} must be an object or an array, got {type_name(node)}")
    if "outputs" in node:
        return _outputs_list(node["outputs"], f"{where}.outputs")
    if not node:
        return []
    return [_output(node, where)]


def _outputs_list(items: object, where: str) -> list[Destination]:
    if not isinstance(items, list):
        raise _MalformedError(f"{where} must be an array, got {type_name(items)}")
    return [_output(item, f"{where}[{index}]") for index, item in enumerate(items)]


def _output(item: object, where: str) -> Destination:
    if not isinstance(item, dict):
        raise _MalformedError(f"{where} must be an object, got {type_name(item)}")
    host = _host(item.get("host"), where)
    port = _int_field(item, "port", DEFAULT_REDIS_PORT, _MAX_PORT, where)
    db = _int_field(item, "db", 0, None, where)
    block_id = _optional_str(item, "block_id", where)
    queue_name = _optional_str(item, "queue_name", where)
    if not queue_name:
        if not block_id:
            raise _MalformedError(f"{where} has neither 'queue_name' nor 'block_id'")
        queue_name = keys.inputs(block_id)
    if port == 0 and not block_id:
        raise _MalformedError(f"{where} is a gRPC output (port 0) and needs a 'block_id'")
    return Destination("grpc" if port == 0 else "redis", host, port, queue_name, block_id, db)


def _host(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        shown = "is missing" if raw is None else f"must be a non-empty string, got {_short(raw)}"
        raise _MalformedError(f"{where}.host {shown}")
    return raw.strip()


def _int_field(
    item: dict[str, Any], key: str, default: int, maximum: int | None, where: str
) -> int:
    """An int (or a string of digits) in 0..maximum; ``default`` when absent or null."""
    raw = item.get(key)
    if raw is None:
        return default
    value = _as_int(raw)
    if value is None:
        raise _MalformedError(f"{where}.{key} must be an integer, got {_short(raw)}")
    if value < 0 or (maximum is not None and value > maximum):
        limit = f"0..{maximum}" if maximum is not None else ">= 0"
        raise _MalformedError(f"{where}.{key} {value} is out of range ({limit})")
    return value


def _as_int(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.isascii() and text.isdigit() and len(text) <= 20:
            return int(text)
    return None


def _optional_str(item: dict[str, Any], key: str, where: str) -> str:
    raw = item.get(key)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise _MalformedError(f"{where}.{key} must be a string, got {_short(raw)}")
    return raw


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def _quote(pointer: object) -> str:
    """The pointer as it appears in error messages: repr'd and cut to ~200 characters."""
    if isinstance(pointer, str):
        text = pointer
    else:
        try:
            text = _json.dumps(pointer)
        except (TypeError, ValueError):
            text = repr(pointer)
    if len(text) <= _QUOTE_CHARS:
        return repr(text)
    return f"{text[:_QUOTE_CHARS]!r}… ({len(text)} chars)"


def _message(problem: str, pointer: object) -> str:
    return f"bad output_ptr: {problem}; output_ptr={_quote(pointer)}"


def destination_from_url(url: str, queue_name: str, *, block_id: str = "") -> Destination:
    """A Redis destination from ``redis://[[user]:password@]host[:port][/db][?db=N]``.

    For configured defaults (e.g. the ``OUTPUT`` list). Host defaults to ``localhost``, port to
    6379, db to 0 (``?db=`` wins over the path, as in redis-py). The password is kept on the
    destination (out of its repr); a user name is ignored. Raises `ConfigError`.
    """
    shown = redact(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {shown!r}: {exc}") from None
    if parts.scheme != "redis":
        raise ConfigError(f"bad Redis URL {shown!r}: expected the redis:// scheme")
    if port == 0:
        raise ConfigError(f"bad Redis URL {shown!r}: port 0")
    if not queue_name:
        raise ConfigError(f"no queue name given for Redis URL {shown!r}")
    password = unquote(parts.password) if parts.password else None
    return Destination(
        kind="redis",
        host=parts.hostname or "localhost",
        port=DEFAULT_REDIS_PORT if port is None else port,
        queue_name=queue_name,
        block_id=block_id,
        db=_url_db(parts, shown),
        password=password,
    )


def _url_db(parts: SplitResult, shown: str) -> int:
    values = parse_qs(parts.query).get("db")
    text = values[0] if values else parts.path.strip("/")
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"bad Redis URL {shown!r}: db {text!r} is not a number")
    return int(text)
