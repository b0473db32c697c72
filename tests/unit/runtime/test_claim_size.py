"""ClaimSize: about target_s of work per claim; small until the block's speed is known."""

from __future__ import annotations

from aios_instance.runtime.claim_size import ClaimSize


def test_the_first_claim_is_small_then_a_fast_block_gets_full_claims() -> None:
    size = ClaimSize(64, 0.1)
    assert size.next == 8
    size.observe(8 * 0.0001, 8)  # 0.1 ms per packet
    assert size.next == 64


def test_a_slow_block_claims_what_it_finishes_in_the_target_time() -> None:
    size = ClaimSize(64, 0.1)
    size.observe(8 * 0.02, 8)  # 20 ms per packet: 5 fit in 0.1 s
    assert size.next == 5
    size.observe(5 * 1.0, 5)  # slower than the target per packet: still one at a time
    assert size.next == 1


def test_a_short_claim_says_nothing_about_speed() -> None:
    size = ClaimSize(64, 0.1)
    size.observe(3 * 0.5, 3)  # the input ran dry: 3 < 8 asked
    assert size.next == 8
    assert ClaimSize(4, 0.1).next == 4  # never more than the maximum
