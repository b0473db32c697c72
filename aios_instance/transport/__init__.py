"""Transports: where jobs come from (sources) and where outputs go (sinks).

``base`` holds the interfaces; ``redis`` is the reliable production source with pooled Redis
sinks, ``grpc`` the InferenceProxy sink, ``memory`` an in-process source for tests and
embedding, and ``pool`` the per-endpoint sink cache.
"""

from .base import Claim, Sent, Sink, Source

__all__ = ["Claim", "Sent", "Sink", "Source"]
