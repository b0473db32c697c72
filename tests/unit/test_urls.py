from __future__ import annotations

import pytest

from aios_instance._urls import as_redis_url, bracket, location, redact, redis_url, same_host
from aios_instance.errors import ConfigError


def test_redis_url_brackets_ipv6_and_encodes_the_password() -> None:
    assert redis_url("::1", 6380, 2) == "redis://[::1]:6380/2"
    assert redis_url("h", password="p@ss/w") == "redis://:p%40ss%2Fw@h:6379/0"
    assert bracket("[::1]") == "[::1]"
    assert bracket("10.0.0.1") == "10.0.0.1"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("redis-host", "redis://redis-host:6379/0"),
        ("redis-host:6390", "redis://redis-host:6390/0"),
        ("[::1]:6390", "redis://[::1]:6390/0"),
        ("[::1]", "redis://[::1]:6379/0"),
        ("::1", "redis://[::1]:6379/0"),
        ("redis://u:p@h:1/2", "redis://u:p@h:1/2"),
        (" unix:///tmp/r.sock ", "unix:///tmp/r.sock"),
    ],
)
def test_as_redis_url_normalises_every_spelling(value: str, url: str) -> None:
    assert as_redis_url(value) == url


@pytest.mark.parametrize("value", ["http://h:1", "h:port", ":6379", ""])
def test_as_redis_url_refuses_what_is_not_an_address(value: str) -> None:
    with pytest.raises(ConfigError, match="not a Redis"):
        as_redis_url(value)


def test_redact_and_location_never_show_the_password() -> None:
    assert redact("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert redact("redis://token@h:1/0") == "redis://***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    assert location("redis://:secret@[::1]:6390/3") == "[::1]:6390/3"
    assert location("redis://h") == "h:6379"
    assert location("unix:///tmp/r.sock") == "/tmp/r.sock"


def test_redact_masks_passwords_that_hold_url_characters() -> None:
    assert redact("redis://:pa/ss@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("redis://u:p@ss@h:1/0") == "redis://u:***@h:1/0"
    assert redact("rediss://user:x:y@[::1]:6380/2?a=b") == "rediss://user:***@[::1]:6380/2?a=b"
    assert redact("redis://:p@h/0?next=@q") == "redis://:***@h/0?next=@q"
    assert redact("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


@pytest.mark.parametrize("value", ["localhost:99999", "redis://localhost:99999/0", "h:0"])
def test_a_port_out_of_range_is_one_clear_error(value: str) -> None:
    with pytest.raises(ConfigError, match="not a Redis"):
        as_redis_url(value)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("localhost", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("127.0.0.1", "localhost"),
        ("::1", "localhost"),
        ("[::1]", "localhost"),
        ("Redis.Example.", "redis.example"),
        ("[fe80::1]", "fe80::1"),
        ("127.0.0.2", "127.0.0.2"),  # another address: a server bound to 127.0.0.1 refuses it
    ],
)
def test_same_host_compares_spellings_of_one_host(spelling: str, canonical: str) -> None:
    assert same_host(spelling) == canonical
