#!/usr/bin/env bash
# Builds the Go examples into $1/bin (default clients/go/build/bin) as the module in go.mod, in
# module mode and offline: it copies the module (go.mod, examples) to $1/module, generates the
# client into it (generate.sh), and vendors Debian's Go libraries (/usr/share/gocode/src, from
# clients/install-deps.sh go) as its vendor/ directory at the versions go.mod requires, so no
# module proxy is needed. Then go vet and go build with -mod=vendor. GOCACHE defaults to $1/cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
mkdir -p "$out/bin"
out=$(cd "$out" && pwd)
gocode=/usr/share/gocode/src
[ -d "$gocode/google.golang.org/grpc" ] || { echo "missing $gocode/google.golang.org/grpc: clients/install-deps.sh go" >&2; exit 1; }

module=$out/module
rm -rf "$module"
mkdir -p "$module/vendor"
cp "$here/go.mod" "$module/"
cp -R "$here/examples" "$module/"
"$here/generate.sh" "$module" >/dev/null

# vendor/: Debian's source trees, and modules.txt naming go.mod's requirements as vendored.
for dir in "$gocode"/*; do ln -s "$dir" "$module/vendor/$(basename "$dir")"; done
awk '/^require \(/ { block = 1; next } block && /^\)/ { block = 0; next }
     block && NF >= 2 && $1 !~ /^\/\// { print "# " $1 " " $2; print "## explicit" }
     /^require [^(]/ { print "# " $2 " " $3; print "## explicit" }' "$module/go.mod" >"$module/vendor/modules.txt"
for required in $(sed -n 's/^# \([^ ]*\) .*/\1/p' "$module/vendor/modules.txt"); do
  [ -f "$gocode/$required/go.mod" ] || { echo "go.mod requires $required, which is not in $gocode" >&2; exit 1; }
done

export GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off GOCACHE=${GOCACHE:-$out/cache}
cd "$module"
go vet ./...
go build -o "$out/bin/" ./examples/...
echo "built the Go examples into $out/bin: $(ls "$out/bin" | tr '\n' ' ')"
