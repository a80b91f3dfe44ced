#!/usr/bin/env bash
# Generates the Go client (generate.sh) and vets and builds the examples into $1 (default
# clients/go/build), in GOPATH mode against Debian's Go libraries: no module proxy needed.
# GOCACHE defaults to $1/cache, so rebuilds are quick.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
mkdir -p "$out/bin"
out=$(cd "$out" && pwd)
"$here/generate.sh" "$out/gopath" >/dev/null
export GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOCACHE=${GOCACHE:-$out/cache}
cd "$here"
go vet ./examples/...
go build -o "$out/bin/" ./examples/...
echo "built the Go examples into $out/bin: $(ls "$out/bin" | tr '\n' ' ')"
