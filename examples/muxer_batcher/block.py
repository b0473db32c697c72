"""The spec's BlockWithMuxerAndBatcher, unchanged but for the import lines (see README.md)."""

from collections import deque

from aios_instance import *  # also provides json and time, which the spec's code uses
from aios_instance.tools import Muxer, Batcher  # the spec writes `from .tools import ...`

class BlockWithMuxerAndBatcher:
    def __init__(self, context):
        """
        Initializes the block with parameters and sets up both a Muxer and a Batcher.

        - context: The standard AIOS block context containing config, sessions, and metrics.
        - threshold: A configurable float parameter used for logic checks.
        - batcher: Collects N outputs from on_data before emitting a final result.
        """
        self.context = context
        self.threshold = context.block_init_parameters.get("threshold", 0.5)

        # Create a batcher to group 4 processed packets before final output
        self.batcher = Batcher(N=4)

    def on_preprocess(self, packet):
        """
        Parses the packet and handles muxed or single-packet inputs.

        - packet: An AIOSPacket; may contain either a single JSON string or a merged dict with "inputs".

        Returns:
        - (True, List[PreProcessResult]) if parsing is successful.
        - (False, error message) if parsing fails.
        """
        try:
            data = packet.data
            if isinstance(data, str):
                data = json.loads(data)

            # If data has been muxed, it will have a list under the 'inputs' key
            if "inputs" in data:
                return True, [
                    PreProcessResult(packet=packet, extra_data={"input": item})
                    for item in data["inputs"]
                ]
            else:
                # Normal case: just one input
                return True, [PreProcessResult(packet=packet, extra_data={"input": data})]
        except Exception as e:
            return False, str(e)

    def on_data(self, preprocessed_entry):
        """
        Processes one PreProcessResult and appends the output to the Batcher.

        - preprocessed_entry: Contains original packet and extracted input.
        - If a batch is ready (size N), it emits all results as a single dictionary.
        - If not, returns None to indicate hold-back.

        Returns:
        - (True, OnDataResult) when a batch is emitted.
        - (True, None) when batch is still collecting.
        - (False, error message) on failure.
        """
        try:
            input_data = preprocessed_entry.extra_data["input"]
            value = input_data.get("value", 0)

            # Apply threshold logic
            result = {"value": value, "passed": value > self.threshold}

            # Update the original packet's data field
            packet = preprocessed_entry.packet
            packet.data = json.dumps(result)

            # Add to batcher and check if batch is full
            batch = self.batcher.add_to_batch(packet)

            if batch:
                # Emit the complete batch
                return True, OnDataResult(output={"batch": [json.loads(p.data) for p in batch]})

            # No output yet; waiting for batch to fill
            return True, None

        except Exception as e:
            return False, str(e)

    def on_update(self, updated_parameters):
        """
        Dynamically updates block configuration (e.g., threshold).

        - updated_parameters: Dictionary of parameters to apply.

        Returns:
        - (True, dict) if update was applied.
        - (False, error message) on failure.
        """
        try:
            if "threshold" in updated_parameters:
                self.threshold = updated_parameters["threshold"]
            return True, updated_parameters
        except Exception as e:
            return False, str(e)

    def health(self):
        """
        Responds to /health endpoint with status information.

        Returns:
        - Dictionary representing the current health status of the block.
        """
        return {"status": "healthy"}

    def management(self, action, data):
        """
        Handles runtime management commands sent to /mgmt endpoint.

        - action: A string representing the management command.
        - data: Optional dictionary of command-specific parameters.

        Returns:
        - Dictionary describing the result of the command.
        """
        if action == "get_threshold":
            return {"threshold": self.threshold}
        elif action == "reset":
            self.threshold = 0.5
            return {"message": "Threshold reset to default"}
        else:
            return {"message": f"Unknown action: {action}"}

    def get_muxer(self):
        """
        Returns a Muxer instance to enable merging of N packets with same session ID and sequence number.

        - This Muxer collects 3 packets before forwarding them as one combined packet.

        Returns:
        - Muxer instance
        """
        return Muxer(N=3)


if __name__ == "__main__":
    block = Block(BlockWithMuxerAndBatcher)
    block.run()
