#!/usr/bin/env bash
# Usage: Tools/fuzz/run.sh [SECONDS]    (default 60)
#
# Builds the fuzzer, then fuzzes a copy of Tools/fuzz/corpus/protocol for
# SECONDS. Exits non-zero on a crash, a timeout or running out of memory;
# the input that did it lands in .build/fuzz/artifacts/ (reproduce with
# .build/fuzz/fuzz-protocol FILE). New inputs found stay in
# .build/fuzz/corpus-run/ (copy interesting ones into the seed corpus).
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/.build/fuzz"

"$root/Tools/fuzz/build.sh"

work="$out/corpus-run"
artifacts="$out/artifacts"
log="$out/run.log"
rm -rf "$work"
mkdir -p "$work" "$artifacts"
cp "$root"/Tools/fuzz/corpus/protocol/* "$work/"

echo "fuzzing for ${seconds}s (log: $log)"
set +e
"$out/fuzz-protocol" "$work" \
    -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/Tools/fuzz/protocol.dict" -artifact_prefix="$artifacts/" \
    -print_final_stats=1 >"$log" 2>&1
status=$?
set -e

grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
runs="$(awk '/stat::number_of_executed_units/ {print $2}' "$log")"
rate="$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")"
echo "fuzz-protocol: ${runs:-?} executions in ${seconds}s, ${rate:-?} exec/s"

if [ "$status" -ne 0 ]; then
    echo "FAILED (exit status $status): the fuzzer found a crash, a timeout or an out-of-memory input." >&2
    tail -n 60 "$log" >&2
    ls -1 "$artifacts" >&2 || true
    exit 1
fi
echo "no crashes"
