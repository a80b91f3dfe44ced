#!/usr/bin/env bash
# Generates the Go client from proto/ into the module in $1 (default clients/go): package
# gatewayv1 at the import path github.com/mspgateway/msp-gateway/clients/go/gen/msp/gateway/v1,
# the protos' go_package, i.e. under $1/gen/msp/gateway/v1. The module path comes from go.mod, and
# every proto's go_package must lie inside it. Needs protoc, protoc-gen-go and protoc-gen-go-grpc
# (clients/install-deps.sh go); build.sh builds the examples with it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
out=${1:-$here}
module=$(sed -n 's/^module[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$here/go.mod")
[ -n "$module" ] || { echo "no module line in $here/go.mod" >&2; exit 1; }

# The protos and go.mod must agree, or the generated files would land outside the module.
for proto in "$proto_root"/msp/gateway/v1/*.proto; do
  go_package=$(sed -n 's/^option go_package = "\([^";]*\).*/\1/p' "$proto")
  case $go_package in
    "$module"/*) ;;
    *) echo "$proto: go_package '$go_package' is not inside the module $module (go.mod)" >&2; exit 1 ;;
  esac
done

rm -rf "$out/gen"
mkdir -p "$out"
# --go_opt=module=… places each file at its go_package import path relative to the module root.
protoc -I "$proto_root" -I /usr/include \
  --go_out="$out" --go_opt=module="$module" \
  --go-grpc_out="$out" --go-grpc_opt=module="$module" \
  "$proto_root"/msp/gateway/v1/*.proto
echo "generated the Go client ($module/gen/msp/gateway/v1, package gatewayv1) in $out/gen"
