"""The access policy of the mutating endpoints (``access.py``): the pure predicates and the
policy's decisions. Over real HTTP: tests/unit/control/test_api.py."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios_instance.control.access import (
    AccessPolicy,
    is_local_caller,
    is_loopback,
    names_a_proxy,
)
from aios_instance.settings import Settings


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"]
)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [None, "", "10.0.0.1", "192.0.2.2", "0.0.0.0", "::", "::ffff:10.0.0.1", "fe80::1%eth0",
     "localhost", "128.0.0.1", "not an address"],
)  # fmt: skip
def test_other_addresses_are_not_loopback(host: str | None) -> None:
    assert not is_loopback(host)


@given(st.ip_addresses(v=4))
def test_ipv4_is_loopback_exactly_in_127_8(address: ipaddress.IPv4Address) -> None:
    in_127 = address in ipaddress.ip_network("127.0.0.0/8")
    assert is_loopback(str(address)) is in_127
    assert is_loopback(f"::ffff:{address}") is in_127  # IPv4-mapped, as a dual-stack socket


@pytest.mark.parametrize(
    "name",
    [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-real-ip",
        "via",
        "x-envoy-peer-metadata",
    ],
)
def test_a_forwarded_request_is_never_local(name: str) -> None:
    assert names_a_proxy([name])
    assert not is_local_caller("127.0.0.1", ["host", name])


def test_a_direct_loopback_caller_is_local() -> None:
    assert is_local_caller("127.0.0.1", ["host", "content-type", "authorization"])
    assert is_local_caller("::1", [])
    assert not is_local_caller("10.1.2.3", ["host"])
    assert not is_local_caller(None, [])


def settings(**values: object) -> Settings:
    return Settings(block_id="access", **values)  # type: ignore[arg-type]


def test_the_policy_follows_the_settings() -> None:
    assert AccessPolicy.from_settings(settings()).mode == "loopback"
    assert AccessPolicy.from_settings(settings(control_auth="none")).mode == "open"
    token = AccessPolicy.from_settings(settings(control_token="t0k"))
    assert (token.mode, token.token) == ("token", "t0k")
    assert "t0k" not in repr(token)
    assert "loopback" in AccessPolicy("loopback").describe()
    assert "AIOS_CONTROL_AUTH=none" in AccessPolicy("open").describe()


def test_loopback_policy_refuses_remote_and_proxied_callers_with_what_to_do() -> None:
    policy = AccessPolicy("loopback")
    assert policy.refusal(authorization="", peer="127.0.0.1", header_names=["host"]) is None
    for peer, headers in (("203.0.113.7", ["host"]), ("127.0.0.1", ["x-forwarded-for"])):
        refusal = policy.refusal(authorization="", peer=peer, header_names=headers)
        assert refusal is not None
        assert (refusal.status, refusal.reason) == (403, "not_loopback")
        for remedy in ("AIOS_CONTROL_TOKEN", "Bearer", "AIOS_CONTROL_BIND=127.0.0.1"):
            assert remedy in refusal.message
        assert "AIOS_CONTROL_AUTH=none" in refusal.message


def test_token_policy_asks_everyone_for_the_token() -> None:
    policy = AccessPolicy("token", "s3cret")
    ok = policy.refusal(authorization="Bearer s3cret", peer="203.0.113.7", header_names=[])
    assert ok is None
    for auth in ("", "Bearer nope", "Basic s3cret", "bearer"):
        refusal = policy.refusal(authorization=auth, peer="127.0.0.1", header_names=[])
        assert refusal is not None
        assert (refusal.status, refusal.reason) == (401, "unauthenticated")
        assert refusal.headers == {"WWW-Authenticate": "Bearer"}


def test_open_policy_lets_anyone_in() -> None:
    policy = AccessPolicy("open")
    forwarded = ["x-forwarded-for"]
    assert policy.refusal(authorization="", peer="203.0.113.7", header_names=forwarded) is None
