"""Redis addresses and URLs: one place that builds, normalises and redacts them.

Hosts may be names, IPv4 or IPv6 addresses; an IPv6 host is always bracketed in a URL
(``redis://[::1]:6379/0``). Passwords are percent-encoded when a URL is built and never
appear in what :func:`redact` or :func:`location` return (those are for logs and errors).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from .errors import ConfigError

__all__ = [
    "DEFAULT_PORT",
    "SCHEMES",
    "as_redis_url",
    "bracket",
    "location",
    "redact",
    "redis_url",
    "same_host",
]

DEFAULT_PORT = 6379
SCHEMES = ("redis", "rediss", "unix")


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"})


def same_host(host: str) -> str:
    """The form in which two spellings of one host compare equal: case and a trailing dot
    ignored, IPv6 brackets dropped, and every spelling of this machine's loopback address
    (``localhost``, ``127.0.0.1``, ``::1``) one. Used to compare and dedupe destinations,
    never to connect: ``localhost`` may resolve to either loopback address."""
    canonical = host.strip().strip("[]").rstrip(".").lower()
    return "localhost" if canonical in _LOOPBACK else canonical


def bracket(host: str) -> str:
    """``host`` as it goes in a URL's authority (IPv6 addresses bracketed)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def redis_url(host: str, port: int = DEFAULT_PORT, db: int = 0, password: str = "") -> str:
    """The ``redis://`` URL of a server (the password percent-encoded)."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{bracket(host)}:{port}/{db}"


def as_redis_url(value: str, default_port: int = DEFAULT_PORT) -> str:
    """Normalise ``host``, ``host:port``, ``[ipv6]:port``, a bare IPv6 address or a Redis URL
    to a Redis URL; ConfigError (one line, naming the value) for anything else."""
    value = value.strip()
    if "://" in value:
        if urlsplit(value).scheme not in SCHEMES:
            raise ConfigError(f"not a Redis URL: {value!r} (use redis://, rediss:// or unix://)")
        _check_port(value)
        return value
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") > 1:  # a bare IPv6 address
        host, port = value, ""
    else:
        host, _, port = value.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ConfigError(f"not a Redis address: {value!r} (use host, host:port or a URL)")
    return redis_url(host, int(port or default_port))


def _check_port(url: str) -> None:
    """ConfigError for a URL whose port is not a number in 1..65535 (urllib says ValueError)."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"not a Redis URL: {url!r} (the port must be 1-65535)")


def redact(url: str) -> str:
    """The URL with its credentials replaced by ``***`` (``user:***`` when there is a user
    name). The credentials end at the *last* ``@`` before the host, so a password holding
    ``/``, ``@`` or ``:`` unencoded is masked whole (one holding ``?`` or ``#`` cannot be
    told from a query: encode it)."""
    scheme, sep, rest = url.partition("//")
    if not sep:
        return url
    host_start = rest.rfind("@", 0, _authority_end(rest))
    if host_start < 0:
        return url
    user, colon, _ = rest[:host_start].partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}//{masked}{rest[host_start:]}"


def _authority_end(rest: str) -> int:
    """Where the credentials can end at the latest: before a query or a fragment."""
    ends = [i for i in (rest.find("?"), rest.find("#")) if i >= 0]
    return min(ends, default=len(rest))


def location(url: str) -> str:
    """``host:port/db`` of a Redis URL (the socket path for ``unix://``), for logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{bracket(host)}:{parts.port or DEFAULT_PORT}{parts.path or ''}"
