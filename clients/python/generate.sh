#!/usr/bin/env bash
# Generates the Python client from proto/ into clients/python/gen (or $1): the package
# msp.gateway.v1 (messages *_pb2.py with .pyi type stubs, stubs *_pb2_grpc.py).
# Needs grpcio-tools (clients/install-deps.sh python, or pip install -r requirements.txt).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
out=${1:-$here/gen}

rm -rf "$out"
mkdir -p "$out"
python3 -m grpc_tools.protoc -I "$proto_root" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$proto_root"/msp/gateway/v1/*.proto
# Regular packages (not namespace packages), so `pip install clients/python` and type checkers
# find them.
for d in msp msp/gateway msp/gateway/v1; do
  touch "$out/$d/__init__.py" "$out/$d/py.typed"
done
echo "generated the Python client (package msp.gateway.v1) in $out"
