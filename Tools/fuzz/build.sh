#!/usr/bin/env bash
# Builds the LevainProtocol libFuzzer target, .build/fuzz/fuzz-protocol:
# Tools/fuzz/FuzzProtocol.swift compiled with Sources/LevainProtocol/*.swift
# as one module (no SwiftPM), with libFuzzer and AddressSanitizer.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/.build/fuzz"
swiftc="${SWIFTC:-swiftc}"
mkdir -p "$out"

if ! command -v "$swiftc" >/dev/null 2>&1; then
    echo "error: $swiftc not found; put a Swift toolchain on PATH (or set SWIFTC)" >&2
    exit 2
fi

# lld links the sanitizer runtimes without gold's "cannot export local
# symbol" noise; fall back to the default linker if the toolchain has none.
linker=()
if command -v ld.lld >/dev/null 2>&1 || [ -x "$(dirname "$(command -v "$swiftc")")/ld.lld" ]; then
    linker=(-use-ld=lld)
fi

# A toolchain without libFuzzer (Xcode's, some distribution packages) fails
# here; say so plainly instead of drowning it in the real build's output.
probe="$out/probe"
printf '@_cdecl("LLVMFuzzerTestOneInput")\npublic func probe(_ d: UnsafePointer<UInt8>?, _ n: Int) -> CInt { 0 }\n' >"$probe.swift"
if ! "$swiftc" -sanitize=fuzzer,address -parse-as-library "${linker[@]}" "$probe.swift" -o "$probe" >"$probe.log" 2>&1; then
    echo "error: this Swift toolchain cannot build libFuzzer targets ('swiftc -sanitize=fuzzer,address' failed)." >&2
    echo "       Use a swift.org toolchain for Linux, which ships libFuzzer. Compiler output:" >&2
    sed 's/^/       /' "$probe.log" >&2
    exit 2
fi
rm -f "$probe" "$probe.swift" "$probe.log"

# LevainJSON (the lexer the protocol's reader uses) first, as a module of
# its own, instrumented the same way; then the protocol with the target.
json="$out/json"
rm -rf "$json"
mkdir -p "$json"
"$swiftc" -sanitize=fuzzer,address -parse-as-library -O -swift-version 6 \
    -module-name LevainJSON -emit-module -emit-module-path "$json/LevainJSON.swiftmodule" \
    -emit-library -static -o "$json/libLevainJSON.a" \
    "$root"/Sources/LevainJSON/*.swift

"$swiftc" -sanitize=fuzzer,address -parse-as-library -O -swift-version 6 \
    -module-name LevainProtocolFuzz "${linker[@]}" -I "$json" \
    "$root"/Sources/LevainProtocol/*.swift "$root/Tools/fuzz/FuzzProtocol.swift" \
    "$json/libLevainJSON.a" \
    -o "$out/fuzz-protocol"
echo "built $out/fuzz-protocol"
