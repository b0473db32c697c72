"""aios-instance: write blocks (on_preprocess → on_data), run them on Redis, test them in-process.

Everything a block author needs is importable from here (``from aios_instance import *``),
including the stdlib ``json`` and ``time`` modules the spec's sample blocks use with only that
import line.
"""

from __future__ import annotations

import json
import time

from .blockdata import BlockData, load_block_data
from .context import Context
from .contract import BatchBlockProtocol, BlockProtocol
from .errors import (
    AIOSError,
    ConfigError,
    DataDecodeError,
    PacketDecodeError,
    PacketError,
    RoutingError,
    TransportError,
)
from .events import BlockEvents
from .metrics import AIOSMetrics
from .packet import AIOSPacket, FileInfo, decode_packet, make_packet
from .results import OnDataResult, PreProcessResult
from .routing import Destination, Router
from .runtime.block import Block, Runtime
from .runtime.pipeline import Failure, Outcome, Output, Pipeline, PipelineResult
from .sessions import SessionsManager
from .settings import Settings
from .sidecars import BlockSideCars, SidecarConsumer
from .state import MemoryStateDict, StateDict
from .testing import BlockTester, BlockTestError, TestContext
from .tools import Batcher, Muxer, TimeBasedBatcher

__version__ = "0.1.0"

__all__ = [
    "AIOSError",
    "AIOSMetrics",
    "AIOSPacket",
    "BatchBlockProtocol",
    "Batcher",
    "Block",
    "BlockData",
    "BlockEvents",
    "BlockProtocol",
    "BlockSideCars",
    "BlockTestError",
    "BlockTester",
    "ConfigError",
    "Context",
    "DataDecodeError",
    "Destination",
    "Failure",
    "FileInfo",
    "MemoryStateDict",
    "Muxer",
    "OnDataResult",
    "Outcome",
    "Output",
    "PacketDecodeError",
    "PacketError",
    "Pipeline",
    "PipelineResult",
    "PreProcessResult",
    "Router",
    "RoutingError",
    "Runtime",
    "SessionsManager",
    "Settings",
    "SidecarConsumer",
    "StateDict",
    "TestContext",
    "TimeBasedBatcher",
    "TransportError",
    "decode_packet",
    "json",
    "load_block_data",
    "make_packet",
    "time",
]
