#!/usr/bin/env bash
# Regenerates aios_instance/_proto from proto/*.proto. `--check` fails if the committed code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
out=aios_instance/_proto
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$py" -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" proto/*.proto
  for f in aios_packet_pb2.py aios_packet_pb2.pyi inference_proxy_pb2.py inference_proxy_pb2.pyi; do
    if ! diff -q "$tmp/$f" "$out/$f" >/dev/null; then
      echo "generated protobuf code is stale: run scripts/gen_proto.sh" >&2; exit 1
    fi
  done
  echo "generated protobuf code is current"
else
  "$py" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" proto/*.proto
fi
