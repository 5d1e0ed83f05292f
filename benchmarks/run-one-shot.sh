#!/bin/sh
# `make bench`: one-shot jail latency against bubblewrap and runc (see README.md here).
set -eu
cd "$(dirname "$0")/.."
exec python3 benchmarks/one_shot.py --levain "${1:-.build/release/levain}" --runs "${RUNS:-200}" --json "${JSON:-/tmp/levain-bench-one-shot.json}"
