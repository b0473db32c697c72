"""State dictionaries: `MemoryStateDict` (in this process) and `StateDict` (one Redis hash).

Both are ``MutableMapping[str, Any]`` and hold JSON values only. Each value is stored as its
JSON encoding, so both backends accept exactly the same values and hand back fresh objects
that compare equal to what was stored, with the same types: ``int`` stays ``int``, ``1.0``
stays ``float``; ``bool``, ``None``, ``str``, lists and dicts with ``str`` keys round-trip.
Three conversions are made silently, as JSON has no other spelling for them: a tuple comes
back as a list, an ``Enum`` member as its value and a ``UUID`` as its string. Anything else
that is not JSON (bytes, sets, objects, datetimes, non-``str`` dict keys, NaN or infinity,
integers beyond 64 bits) raises ``TypeError`` when stored; a non-``str`` key raises
``TypeError`` too. Nothing is ever pickled.

`StateDict` keeps namespace ``ns`` in the Redis hash ``aios:state:ns``, one field per key, so
every replica of a block that uses the same namespace shares the state. Each method is one
round trip and atomic on its own (``pop`` and ``setdefault`` run as MULTI/EXEC); ``items()``,
``values()`` and iteration work on a snapshot. Redis being unreachable raises
``TransportError``.

Without ``redis=`` or ``url=``, a `StateDict` uses the client the runtime registered with
:func:`set_default_redis`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from contextlib import contextmanager
from typing import Any, Protocol

import orjson
import redis
from redis import Redis

from . import _json, keys
from .errors import ConfigError, TransportError

__all__ = [
    "STATE_KEY",
    "MemoryStateDict",
    "StateDict",
    "decode_value",
    "encode_value",
    "get_default_redis",
    "set_default_redis",
]

STATE_KEY = "aios:state:{namespace}"  # kept for importers; the name is keys.state()
"""Redis key template of a `StateDict`'s hash."""

# Refuse what orjson would otherwise turn silently into something else.
_STRICT = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_MISSING: Any = object()
_default_redis: Redis | None = None


class _SupportsKeys(Protocol):
    def keys(self) -> Iterable[str]: ...
    def __getitem__(self, key: str, /) -> Any: ...


def set_default_redis(client: Redis | None) -> None:
    """Set (or, with None, unset) the client that `StateDict` uses when given none."""
    global _default_redis
    _default_redis = client


def get_default_redis() -> Redis | None:
    """The client registered with `set_default_redis`, if any."""
    return _default_redis


def encode_value(value: Any) -> bytes:
    """JSON-encode a state value; raises TypeError for what would not round-trip."""
    try:
        raw = orjson.dumps(value, option=_STRICT)
    except TypeError as exc:
        raise TypeError(
            "state values must be JSON values (str, int, float, bool, None, and lists or "
            f"dicts with str keys of those); got {type(value).__name__}: {exc}"
        ) from None
    if b"null" in raw and _has_non_finite(value):  # orjson writes NaN/inf as null
        raise TypeError("state values cannot hold NaN or infinity (JSON has no spelling)")
    return raw


def decode_value(raw: bytes | str) -> Any:
    """Decode a value written by `encode_value` (ValueError when it is not JSON)."""
    return _json.loads(raw)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(v) for v in value)
    return False


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"state keys must be str, got {type(key).__name__}: {key!r}")
    return key


def _pairs(other: Any, kwargs: Mapping[str, Any]) -> dict[str, bytes]:
    """Validate and encode everything ``update`` was given before anything is stored."""
    keys = getattr(other, "keys", None)
    items = ((k, other[k]) for k in keys()) if keys is not None else other
    encoded = {_check_key(k): encode_value(v) for k, v in items}
    encoded.update({k: encode_value(v) for k, v in kwargs.items()})
    return encoded


class _StateMapping(MutableMapping[str, Any]):
    """What both backends share: snapshot views built from `to_dict`."""

    namespace: str

    def to_dict(self) -> dict[str, Any]:
        """A snapshot of the whole state as a plain dict."""
        raise NotImplementedError

    def items(self) -> ItemsView[str, Any]:
        """A snapshot of the (key, value) pairs, read in one step."""
        return self.to_dict().items()

    def values(self) -> ValuesView[Any]:
        """A snapshot of the values, read in one step."""
        return self.to_dict().values()

    def update(
        self, other: _SupportsKeys | Iterable[tuple[str, Any]] = (), /, **kwargs: Any
    ) -> None:
        """Store several keys at once; nothing is stored if any key or value is invalid."""
        encoded = _pairs(other, kwargs)
        if encoded:
            self._store_many(encoded)

    def _store_many(self, encoded: dict[str, bytes]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, keys={len(self)})"


class MemoryStateDict(_StateMapping):
    """In-process, thread-safe state with exactly the value rules of `StateDict`."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Any:
        return decode_value(self._data[_check_key(key)])

    def __setitem__(self, key: str, value: Any) -> None:
        raw = encode_value(value)
        with self._lock:
            self._data[_check_key(key)] = raw

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._data[_check_key(key)]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (or ``default``; KeyError without one)."""
        with self._lock:
            raw = self._data.pop(_check_key(key), None)
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return decode_value(raw)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, storing ``default`` first when it is absent."""
        raw = encode_value(default)
        with self._lock:
            return decode_value(self._data.setdefault(_check_key(key), raw))

    def increment(self, key: str, amount: int = 1) -> int:
        """Atomically add ``amount`` to an int value (absent counts as 0); returns the sum."""
        with self._lock:
            raw = self._data.get(_check_key(key))
            current = 0 if raw is None else decode_value(raw)
            if type(current) is not int:
                raise TypeError(f"state value {key!r} is not an int: {current!r}")
            total = current + amount
            self._data[key] = encode_value(total)
            return total

    def clear(self) -> None:
        """Remove every key."""
        with self._lock:
            self._data.clear()

    def to_dict(self) -> dict[str, Any]:
        """A snapshot of the whole state as a plain dict."""
        with self._lock:
            snapshot = dict(self._data)
        return {k: decode_value(v) for k, v in snapshot.items()}

    def _store_many(self, encoded: dict[str, bytes]) -> None:
        with self._lock:
            self._data.update(encoded)


class StateDict(_StateMapping):
    """State kept in the Redis hash ``aios:state:{namespace}``, shared by all replicas."""

    def __init__(
        self, namespace: str, redis: Redis | None = None, *, url: str | None = None
    ) -> None:
        if not namespace or not isinstance(namespace, str):
            raise ValueError("StateDict needs a non-empty str namespace")
        self.namespace = namespace
        self.key = keys.state(namespace)
        self._owns_client = redis is None and url is not None
        self.redis = _resolve_client(redis, url)

    @contextmanager
    def _io(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransportError(f"state {self.namespace!r}: Redis unreachable: {exc}") from exc

    def __getitem__(self, key: str) -> Any:
        with self._io():
            raw = self.redis.hget(self.key, _check_key(key))
        if raw is None:
            raise KeyError(key)
        return decode_value(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        raw = encode_value(value)
        with self._io():
            self.redis.hset(self.key, _check_key(key), raw)

    def __delitem__(self, key: str) -> None:
        with self._io():
            removed = self.redis.hdel(self.key, _check_key(key))
        if not removed:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        with self._io():
            fields = self.redis.hkeys(self.key)
        return iter([_text(f) for f in fields])

    def __len__(self) -> int:
        with self._io():
            return self.redis.hlen(self.key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._io():
            return bool(self.redis.hexists(self.key, key))

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (or ``default``; KeyError without one)."""
        with self._io(), self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.key, _check_key(key))
            pipe.hdel(self.key, key)
            raw, _ = pipe.execute()
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return decode_value(raw)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, storing ``default`` first when it is absent."""
        raw = encode_value(default)
        with self._io(), self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.key, _check_key(key), raw)
            pipe.hget(self.key, key)
            _, stored = pipe.execute()
        return decode_value(stored)

    def increment(self, key: str, amount: int = 1) -> int:
        """Atomically add ``amount`` to an int value (absent counts as 0); returns the sum."""
        try:
            with self._io():
                return int(self.redis.hincrby(self.key, _check_key(key), amount))
        except redis.ResponseError:
            raise TypeError(f"state value {key!r} is not an int") from None

    def clear(self) -> None:
        """Remove every key (deletes the hash)."""
        with self._io():
            self.redis.delete(self.key)

    def to_dict(self) -> dict[str, Any]:
        """A snapshot of the whole state as a plain dict (one HGETALL)."""
        with self._io():
            raw = self.redis.hgetall(self.key)
        return {_text(k): decode_value(v) for k, v in raw.items()}

    def close(self) -> None:
        """Close the client if this StateDict created it from ``url``."""
        if self._owns_client:
            self.redis.close()

    def _store_many(self, encoded: dict[str, bytes]) -> None:
        with self._io():
            self.redis.hset(self.key, mapping=encoded)  # type: ignore[arg-type]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _resolve_client(client: Redis | None, url: str | None) -> Redis:
    if client is not None:
        return client
    if url is not None:
        return Redis.from_url(url, protocol=2, decode_responses=False)
    if _default_redis is None:
        raise ConfigError(
            "StateDict has no Redis: pass redis=<client> or url='redis://host:port/db', or "
            "run it inside a block (the runtime registers its Redis with "
            "aios_instance.state.set_default_redis)"
        )
    return _default_redis
