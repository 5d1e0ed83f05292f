#!/bin/sh
# Installs what Levain needs to build, test and run on Debian 12 (as root).
# Idempotent: installs only what is missing, so it is cheap to run before
# every `make` target. Usage: Tools/install-deps.sh [--bench]
set -eu

# Build and runtime: libseccomp, libcap and libsqlite3 headers (the session
# log: GRDB links the system SQLite), a C toolchain, pkg-config.
# Tests: python3 (hostile payloads, the demo), gcc (C payloads compiled during
# the tests), git, make; python3-venv and curl for the gateway and egress
# tests (Tools/python-venv.sh makes the tests' venv from PyPI).
# libcurl4-openssl-dev: the MCP swift-sdk links Foundation's URLSession,
# which a --static-swift-stdlib build links against libcurl (levain-ctl then
# loads libcurl.so.4 at start; the harness and `levain` do not).
# e2fsprogs: mkfs.ext4 makes the workspace images (a workspace_size), debugfs
# reads them in the demo and tests; mount: losetup, in the tests.
# python-is-python3: `python` as well as `python3` in jails (their /usr is the
# host's): agent frameworks' sandbox helpers call either.
# Benchmarks: bubblewrap and runc as references.
PACKAGES="libseccomp-dev libcap-dev libsqlite3-dev pkg-config gcc libc6-dev make git python3 python3-venv curl libcurl4-openssl-dev procps util-linux mount e2fsprogs python-is-python3"
if [ "${1:-}" = "--bench" ]; then
    PACKAGES="$PACKAGES bubblewrap runc"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing Debian packages:$missing; run as root (or: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "install-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || apt-get update
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# The Swift toolchain: on PATH, or the usual /opt/swift.
if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        echo "install-deps: Swift is at /opt/swift/usr/bin (the Makefile adds it to PATH)"
    else
        echo "install-deps: no Swift toolchain found. Install Swift 6.x (https://www.swift.org/install/linux/debian/12/)" >&2
        echo "              to /opt/swift or put it on PATH, then rerun." >&2
        exit 1
    fi
fi
