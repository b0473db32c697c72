"""Blocks written the existing SDK's way: the star import, the spec's sample bodies, the old
method names, a reference-style Muxer subclass, TimeBasedBatchers with no hook."""

# ruff: noqa: F403, F405
from __future__ import annotations

import copy
import json
import time
from collections import defaultdict

from aios_instance import *
from aios_instance import aios_packet_pb2


class OldStyleBlock:
    """The spec's SimpleBlock with the existing SDK's calls: sessions, metrics, events,
    sidecars (from ``blockInitData.side_cars``) and a management() that reads its data."""

    def __init__(self, context):
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", 0.5)
        context.metrics.register_counter("values_total", "Values seen", labelnames=["passed"])

    def on_preprocess(self, packet):
        try:
            data = json.loads(packet.data)
            return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry):
        try:
            packet = preprocessed_entry.packet
            value = preprocessed_entry.extra_data["input"].get("value", 0)
            seen = self.context.sessions.get_session_data(packet.session_id) or {}
            count = seen.get("count", 0) + 1
            self.context.sessions.update_session_object(packet.session_id, {"count": count})
            passed = value > self.threshold
            self.context.metrics.increment_counter(
                "values_total", labelnames={"passed": str(passed)}
            )
            self.context.events.push_event("value_seen", {"value": value})
            result = {"value": value, "passed": passed, "count": count}
            copy_for_sidecars = aios_packet_pb2.AIOSPacket(
                session_id=packet.session_id, seq_no=packet.seq_no, data=json.dumps(result)
            )
            self.context.side_cars.push_to_all_sidecars(input_proto=copy_for_sidecars)
            return True, OnDataResult(output=result)
        except Exception as e:
            return False, str(e)

    def on_update(self, updated_parameters):
        if "threshold" in updated_parameters:
            self.threshold = updated_parameters["threshold"]
        return True, updated_parameters

    def health(self):
        return {"status": "healthy"}

    def management(self, action, data):
        if action == "forget":
            removed = self.context.sessions.remove_sessions_data(data.get("sessions", []))
            return {"removed": removed}
        return {"message": f"Unknown action: {action}", "data": data}

    def get_muxer(self):
        return None


class ReferenceMuxer(Muxer):
    """The spec's reference Muxer, written as a subclass of ours."""

    def __init__(self, N: int):
        self.N = N
        self.store = defaultdict(list)
        self.counts = defaultdict(int)

    def process_packet(self, packet):
        if self.N == 1:
            return packet  # No merging needed

        key = (packet.session_id, packet.seq_no)
        self.store[key].append(packet)
        self.counts[key] += 1

        if self.counts[key] == self.N:
            merged_packet = self._merge_packets(self.store[key])
            del self.store[key]
            del self.counts[key]
            return merged_packet

        return None

    def _merge_packets(self, packets):
        merged_data = {"inputs": [json.loads(p.data) for p in packets]}
        merged_files = [file for p in packets for file in p.files]

        base_packet = copy.deepcopy(packets[0])
        base_packet.data = merged_data
        base_packet.files = merged_files

        return base_packet


class MuxedBlock:
    """The spec's YourCustomBlock bodies (on_data reads ``json.loads(packet.data)``) behind a
    reference-style Muxer subclass."""

    def __init__(self, context):
        self.context = context
        self.merge_count = 3

    def on_preprocess(self, packet):
        try:
            data = packet.data
            if isinstance(data, str):
                data = json.loads(data)

            if "inputs" in data:
                return True, [
                    PreProcessResult(packet=packet, extra_data={"input": d}) for d in data["inputs"]
                ]
            return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry):
        try:
            input_data = json.loads(preprocessed_entry.packet.data)
            output = {
                "input_summary": input_data,
                "processed_at": time.time(),
                "metadata": preprocessed_entry.extra_data,
            }
            return True, OnDataResult(output=output)
        except Exception as e:
            return False, str(e)

    def get_muxer(self):
        return ReferenceMuxer(N=self.merge_count)


class TimedBlock:
    """The spec's BlockWithMuxerAndBatcher on_data, with a TimeBasedBatcher and no hook."""

    def __init__(self, context):
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", 0.5)
        self.batcher = TimeBasedBatcher(N=4, T=0.5)

    def on_preprocess(self, packet):
        try:
            data = packet.data
            if isinstance(data, str):
                data = json.loads(data)
            return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry):
        try:
            input_data = preprocessed_entry.extra_data["input"]
            value = input_data.get("value", 0)
            result = {"value": value, "passed": value > self.threshold}
            packet = preprocessed_entry.packet
            packet.data = json.dumps(result)
            batch = self.batcher.add_to_batch(packet)
            if batch:
                return True, OnDataResult(output={"batch": [json.loads(p.data) for p in batch]})
            return True, None
        except Exception as e:
            return False, str(e)


class CallbackTimedBlock(TimedBlock):
    """The existing SDK's ``TimeBasedBatcher(N, T, flush_callback=...)``."""

    def __init__(self, context):
        super().__init__(context)
        self.batcher = TimeBasedBatcher(4, 0.5, flush_callback=self.flush)

    def flush(self, batch):
        return True, OnDataResult(output={"flushed": [json.loads(p.data) for p in batch]})
