"""The generated protobuf classes under the module path blocks written for the existing SDK
import (``from aios_instance.aios_packet_pb2 import AIOSPacket``).

These are the plain protobuf messages (``data`` is a ``str``); the runtime hands blocks
`aios_instance.AIOSPacket`, which has the same fields and wire format.
"""

from ._proto.aios_packet_pb2 import DESCRIPTOR, AIOSPacket, FileInfo

__all__ = ["DESCRIPTOR", "AIOSPacket", "FileInfo"]
