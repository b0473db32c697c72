"""keys: every Redis key name, and the existing SDK's fixed list names."""

from __future__ import annotations

from aios_instance import keys


def test_per_block_and_per_instance_names() -> None:
    assert keys.inputs("det") == "det_inputs"
    assert keys.dead_letters("det") == "det_dead"
    assert keys.processing("det", "i-1") == "aios:det:processing:i-1"
    assert keys.lease("det", "i-1") == "aios:det:lease:i-1"
    assert keys.instances("det") == "aios:det:instances"
    assert keys.attempts("det") == "aios:det:attempts"
    assert keys.state("ns") == "aios:state:ns"
    assert keys.reply("t0k") == "aios:reply:t0k"


def test_the_platforms_fixed_lists_keep_their_names() -> None:
    fixed = (keys.PARAMETER_UPDATES, keys.EVENTS_QUEUE, keys.NODE_METRICS, keys.SIDECAR_INPUTS)
    assert fixed == ("PARAMETER_UPDATES", "EVENTS_QUEUE", "NODE_METRICS", "INPUTS")
    assert keys.DEFAULT_OUTPUT == "OUTPUT"
