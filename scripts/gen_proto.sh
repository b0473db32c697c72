#!/usr/bin/env bash
# Regenerates aios_instance/_proto from proto/*.proto. `--check` fails if the committed code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
out=aios_instance/_proto
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$py" -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" proto/*.proto
  # Every generated file, whatever protos there are, must be committed and identical; and
  # no generated file may be left over from a proto that is gone.
  cp "$out/__init__.py" "$tmp/__init__.py"
  if ! diff -r -q -x __pycache__ "$tmp" "$out" >/dev/null; then
    diff -r -q -x __pycache__ "$tmp" "$out" >&2 || true
    echo "generated protobuf code is stale: run scripts/gen_proto.sh" >&2; exit 1
  fi
  echo "generated protobuf code is current"
else
  "$py" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" proto/*.proto
fi
