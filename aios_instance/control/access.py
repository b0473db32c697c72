"""Who may call the mutating endpoints (``POST /setParameters``, ``POST /mgmt``).

Three policies, from the settings (``AccessPolicy.from_settings``):

* ``token``: ``AIOS_CONTROL_TOKEN`` is set; every caller sends ``Authorization: Bearer``.
* ``loopback`` (no token, ``AIOS_CONTROL_AUTH=auto``, the default): only callers on this
  host, i.e. a loopback peer (127.0.0.0/8, ::1, IPv4-mapped loopback) whose request carries
  no forwarding header.
* ``open`` (``AIOS_CONTROL_AUTH=none``): anyone; the API logs a warning when it starts.

The caller's address is the socket's peer; forwarded-for headers are never believed. A
reverse proxy or mesh sidecar on this host connects from loopback on behalf of remote
callers, so a request that names a forwarding hop (``Forwarded``, ``X-Forwarded-*``,
``X-Real-IP``, ``Via``, ...) is treated as remote: such headers can take loopback status
away, never grant it. A proxy that forwards remote callers without any such header still
looks local: docs/security.md says so and recommends a token in production.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AccessPolicy", "Refusal", "is_local_caller", "is_loopback", "names_a_proxy"]

Mode = Literal["token", "loopback", "open"]

# Headers a proxy adds when it forwards a request (a client talking to us directly sends none).
_PROXY_HEADERS = frozenset(
    {"forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip", "cf-connecting-ip"}
)
_PROXY_PREFIXES = ("x-forwarded-", "x-envoy-")  # Envoy (Istio's sidecar) sets x-envoy-*

_WHAT_TO_DO = (
    "set AIOS_CONTROL_TOKEN and send 'Authorization: Bearer <token>', bind the API to "
    "loopback (AIOS_CONTROL_BIND=127.0.0.1), or turn the check off with {switch}=none"
)


@functools.lru_cache(maxsize=1024)  # called per request: a peer's answer never changes
def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.x.y.z."""
    if not host:
        return False  # no peer address (e.g. a Unix socket): not known to be local
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def names_a_proxy(header_names: Iterable[str]) -> bool:
    """Whether any of the (lower-case) header names is one a forwarding proxy adds."""
    return any(n in _PROXY_HEADERS or n.startswith(_PROXY_PREFIXES) for n in header_names)


def is_local_caller(peer: str | None, header_names: Iterable[str]) -> bool:
    """A caller on this host: a loopback peer, and no sign of a proxy in between."""
    return is_loopback(peer) and not names_a_proxy(header_names)


@dataclass(frozen=True)
class Refusal:
    """Why a mutating request is refused: HTTP status, the metric's reason, the message."""

    status: int
    reason: Literal["unauthenticated", "not_loopback"]
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccessPolicy:
    """Who may call the mutating endpoints (see the module docstring)."""

    mode: Mode
    token: str | None = field(default=None, repr=False)
    guards: str = "POST /setParameters and /mgmt"  # for the refusal's message
    switch: str = "AIOS_CONTROL_AUTH"  # the setting that turns the check off

    @classmethod
    def from_settings(cls, settings: Any) -> AccessPolicy:
        """The policy ``control_token`` and ``control_auth`` ask for."""
        if settings.control_token:
            return cls("token", settings.control_token)
        return cls("open" if settings.control_auth == "none" else "loopback")

    @classmethod
    def for_ingest(cls, settings: Any) -> AccessPolicy:
        """Who may send jobs (``POST /infer``, WebSocket, gRPC): ``ingest_auth=none`` opens
        the ingest alone (a token still guards the mutations), else the same rule."""
        guards = "the ingest (POST /infer, WebSocket, gRPC)"
        if settings.ingest_auth == "none":
            return cls("open", None, guards, "AIOS_INGEST_AUTH")
        if settings.control_token:
            return cls("token", settings.control_token, guards, "AIOS_INGEST_AUTH")
        return cls("loopback", None, guards, "AIOS_INGEST_AUTH")

    def describe(self) -> str:
        """One phrase for the start-up log line."""
        return {
            "token": "mutations need the bearer token",
            "loopback": "mutations from loopback callers only (no AIOS_CONTROL_TOKEN)",
            "open": "mutations open to every caller (AIOS_CONTROL_AUTH=none)",
        }[self.mode]

    def refusal(
        self, *, authorization: str, peer: str | None, header_names: Iterable[str]
    ) -> Refusal | None:
        """None when the caller may mutate; else why not."""
        if self.mode == "token":
            return None if self._token_ok(authorization) else _UNAUTHENTICATED
        if self.mode == "loopback" and not is_local_caller(peer, header_names):
            return Refusal(
                403,
                "not_loopback",
                f"without AIOS_CONTROL_TOKEN, {self.guards} answers callers on "
                f"this host only (this one is {peer or 'unknown'}"
                f"{', through a proxy' if is_loopback(peer) else ''}): "
                + _WHAT_TO_DO.format(switch=self.switch),
            )
        return None

    def _token_ok(self, authorization: str) -> bool:
        assert self.token is not None
        scheme, _, supplied = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            supplied.strip().encode("latin-1"), self.token.encode()
        )


_UNAUTHENTICATED = Refusal(
    401, "unauthenticated", "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
)
