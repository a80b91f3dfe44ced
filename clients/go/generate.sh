#!/usr/bin/env bash
# Generates the Go client from proto/ into a GOPATH: package gatewayv1, import path
# mspgateway/gen/msp/gateway/v1 (the protos' go_package), under $1/src (default clients/go/gen).
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc (clients/install-deps.sh go).
#
# Build in GOPATH mode against Debian's Go libraries (no module proxy needed):
#   GO111MODULE=off GOPATH=$PWD/gen:/usr/share/gocode go build ./examples/...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
gopath=${1:-$here/gen}
out=$gopath/src

rm -rf "$out/mspgateway/gen"
mkdir -p "$out"
# --go_opt=paths=import places each file by its go_package import path.
protoc -I "$proto_root" -I /usr/include \
  --go_out="$out" --go_opt=paths=import \
  --go-grpc_out="$out" --go-grpc_opt=paths=import \
  "$proto_root"/msp/gateway/v1/*.proto
echo "generated the Go client (mspgateway/gen/msp/gateway/v1, package gatewayv1) in $out"
