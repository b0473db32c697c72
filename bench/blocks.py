"""The blocks the runtime variants run (imported only by the runtime's process)."""

from __future__ import annotations

import json
import time
from typing import Any

from aios_instance import OnDataResult, PreProcessResult

from .common import THRESHOLD

__all__ = ["SleepyBlock", "ThresholdBlock"]


class ThresholdBlock:
    """The spec's SimpleBlock, reduced to the callbacks the runtime calls per packet."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", THRESHOLD)

    def on_preprocess(self, packet: Any) -> Any:
        try:
            data = json.loads(packet.data)
            return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry: PreProcessResult) -> Any:
        try:
            value = preprocessed_entry.extra_data["input"].get("value", 0)
            return True, OnDataResult(output={"value": value, "passed": value > self.threshold})
        except Exception as e:
            return False, str(e)


class SleepyBlock(ThresholdBlock):
    """ThresholdBlock whose on_data first waits on I/O (a sleep of ``sleep_s``)."""

    sleep_s = 0.005

    def on_data(self, preprocessed_entry: PreProcessResult) -> Any:
        time.sleep(self.sleep_s)
        return super().on_data(preprocessed_entry)
