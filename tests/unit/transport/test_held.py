"""HeldClaims: the source's belief about what it holds, by claim."""

from __future__ import annotations

from aios_instance.transport.base import Claim
from aios_instance.transport.held import HeldClaims


def _claims(*raws: bytes, attempt: int = 1) -> list[Claim]:
    return [Claim(raw, attempt) for raw in raws]


def test_the_oldest_whole_claim_is_at_the_tail_and_the_latest_at_the_head() -> None:
    held = HeldClaims()
    held.add(_claims(b"a", b"b"), 2)
    held.add(_claims(b"c"), 4)
    assert held.side_of([b"a", b"b"]) == "tail"
    assert held.side_of([b"c"]) == "head"
    assert held.side_of([b"b", b"a"]) is None  # not in claim order: by name
    assert held.side_of([b"a"]) is None  # part of a claim: by name


def test_a_claim_acknowledged_in_part_makes_the_rest_loose_and_blocks_the_tail() -> None:
    held = HeldClaims()
    held.add(_claims(b"a", b"b"), 2)
    held.add(_claims(b"c", b"d"), 2)
    held.acknowledged([b"a"], None)  # b still held, no longer as a whole claim
    assert held.side_of([b"c", b"d"]) == "head"  # still the latest
    held.acknowledged([b"c", b"d"], "head")
    assert not held.caller_keeps_up()  # b is held: it must come first
    held.forget([b"b"])
    held.add(_claims(b"e", b"f"), 2)
    assert held.side_of([b"e", b"f"]) == "tail" and held.caller_keeps_up()


def test_only_a_full_first_delivery_claim_lets_the_next_be_claimed_ahead() -> None:
    short, redelivered, full = HeldClaims(), HeldClaims(), HeldClaims()
    short.add(_claims(b"a"), 4)
    redelivered.add(_claims(b"a", attempt=2), 1)
    full.add(_claims(b"a", b"b"), 2)
    assert (short.caller_keeps_up(), redelivered.caller_keeps_up()) == (False, False)
    assert full.caller_keeps_up()
    assert redelivered.side_of([b"a"]) is None  # a redelivery is acknowledged by name


def test_batches_claimed_ahead_are_handed_out_in_order_or_dropped() -> None:
    held = HeldClaims()
    held.add(_claims(b"a", b"b"), 2)
    held.add(_claims(b"c", b"d"), 2, ahead=True)
    held.add(_claims(b"e"), 2, ahead=True)
    assert held.caller_keeps_up()  # the batches ahead are not the caller's yet
    assert held.take_ahead() == _claims(b"c", b"d")
    assert held.drop_ahead() == [b"e"]
    assert held.take_ahead() == []
    held.clear()
    assert held.side_of([b"a", b"b"]) is None
