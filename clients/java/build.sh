#!/usr/bin/env bash
# Generates the Java client (generate.sh) and compiles it with the examples into $1 (default
# clients/java/build) with javac and Debian's jars under /usr/share/java: no Maven Central.
# Writes $1/classpath, so the examples run with
#   java -cp "$(cat clients/java/build/classpath)" com.mspgateway.examples.ListCustomers
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
mkdir -p "$out"
out=$(cd "$out" && pwd)

jars=(grpc-api grpc-context grpc-core grpc-stub grpc-protobuf grpc-protobuf-lite grpc-netty
  protobuf guava perfmark-api geronimo-annotation-1.3-spec
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common)
classpath=""
for jar in "${jars[@]}"; do
  [ -f "/usr/share/java/$jar.jar" ] || { echo "missing /usr/share/java/$jar.jar: clients/install-deps.sh java" >&2; exit 1; }
  classpath+="/usr/share/java/$jar.jar:"
done

"$here/generate.sh" "$out/gen" >/dev/null
rm -rf "$out/classes"
mkdir -p "$out/classes"
find "$out/gen" "$here/src" -name '*.java' > "$out/sources.txt"
javac -nowarn -Xlint:none -encoding UTF-8 --release 11 -d "$out/classes" -cp "$classpath" @"$out/sources.txt"
printf '%s' "$out/classes:${classpath%:}" > "$out/classpath"
echo "built the Java client and examples into $out/classes (classpath in $out/classpath)"
