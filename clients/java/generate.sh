#!/usr/bin/env bash
# Generates the Java client from proto/ into clients/java/gen (or $1): package com.mspgateway.v1
# (the protos' java_package, one class per message, *Grpc stubs). Needs protoc and the grpc-java
# plugin from Debian (clients/install-deps.sh java).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
out=${1:-$here/gen}
plugin=$(command -v protoc-gen-grpc-java || command -v grpc_java_plugin || true)
[ -n "$plugin" ] || { echo "the grpc-java protoc plugin is missing: clients/install-deps.sh java" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
protoc -I "$proto_root" -I /usr/include \
  --plugin=protoc-gen-grpc-java="$plugin" \
  --java_out="$out" --grpc-java_out="$out" \
  "$proto_root"/msp/gateway/v1/*.proto
echo "generated the Java client (package com.mspgateway.v1) in $out"
