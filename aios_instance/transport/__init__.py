"""Transports: where jobs come from (sources) and where outputs go (sinks).

``base`` holds the interfaces; ``redis`` is the reliable production source (with its lease)
and pooled Redis sinks, ``grpc`` the InferenceProxy sink, ``memory`` an in-process source
for tests and embedding, and ``pool`` the per-endpoint sink cache.
"""

from .base import Backlog, Claim, Commit, Lease, Rejected, Sink, Source

__all__ = ["Backlog", "Claim", "Commit", "Lease", "Rejected", "Sink", "Source"]
