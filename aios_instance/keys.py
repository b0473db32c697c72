"""Every Redis key and list name the runtime uses, in one place."""

from __future__ import annotations

__all__ = [
    "DEFAULT_OUTPUT",
    "EVENTS_QUEUE",
    "NODE_METRICS",
    "PARAMETER_UPDATES",
    "SIDECAR_INPUTS",
    "attempts",
    "dead_letters",
    "inputs",
    "instances",
    "lease",
    "processing",
    "reply",
]

PARAMETER_UPDATES = "PARAMETER_UPDATES"  # JSON parameter updates, applied like /setParameters
EVENTS_QUEUE = "EVENTS_QUEUE"  # block events (RPUSH)
NODE_METRICS = "NODE_METRICS"  # metric snapshots (LPUSH) on the metrics Redis
SIDECAR_INPUTS = "INPUTS"  # a sidecar's input list
DEFAULT_OUTPUT = "OUTPUT"  # where outputs of packets with an empty output_ptr go


def inputs(block_id: str) -> str:
    """The block's input list: producers LPUSH, instances consume from the right (FIFO)."""
    return f"{block_id}_inputs"


def dead_letters(block_id: str) -> str:
    """Dead-letter list: JSON records of jobs that could not be processed."""
    return f"{block_id}_dead"


def processing(block_id: str, instance_id: str) -> str:
    """Packets an instance has claimed and not yet acknowledged."""
    return f"aios:{block_id}:processing:{instance_id}"


def parked(block_id: str, instance_id: str) -> str:
    """Packets an instance set aside: processed, their outputs still waiting for an endpoint
    (kept out of the processing list, which is acknowledged by position)."""
    return f"aios:{block_id}:parked:{instance_id}"


def lease(block_id: str, instance_id: str) -> str:
    """An instance's heartbeat key (expires when the instance stops renewing it)."""
    return f"aios:{block_id}:lease:{instance_id}"


def instances(block_id: str) -> str:
    """Set of instance ids that may own a processing list."""
    return f"aios:{block_id}:instances"


def attempts(block_id: str) -> str:
    """Hash: sha1 of a requeued packet → how many times it was handed back."""
    return f"aios:{block_id}:attempts"


def state(namespace: str) -> str:
    """A ``StateDict``'s hash."""
    return f"aios:state:{namespace}"


def reply(token: str) -> str:
    """A list ``aios-instance send --wait`` creates for one call's outputs (then deletes)."""
    return f"aios:reply:{token}"
