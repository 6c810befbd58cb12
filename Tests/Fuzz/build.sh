#!/bin/sh
# Builds the libFuzzer harness for the IDX reader: PTTensor and PTData compiled from source with
# coverage instrumentation and AddressSanitizer (bounds and overflow checks on: no -Ounchecked).
# Usage: Tests/Fuzz/build.sh [OUT_DIR]   (default ${TMPDIR:-/tmp}/ptrain-fuzz); then see docs/FUZZING.md.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-${TMPDIR:-/tmp}/ptrain-fuzz}
mkdir -p "$OUT"
swiftc_fuzz() { swiftc -sanitize=fuzzer,address -O -g -parse-as-library "$@"; }
swiftc_fuzz -module-name PTTensor -emit-library -static -emit-module -emit-module-path "$OUT/PTTensor.swiftmodule" \
    Sources/PTTensor/*.swift -o "$OUT/libPTTensor.a"
swiftc_fuzz -module-name PTData -I "$OUT" -I Sources/CZlib -emit-library -static -emit-module \
    -emit-module-path "$OUT/PTData.swiftmodule" Sources/PTData/*.swift -o "$OUT/libPTData.a"
swiftc_fuzz -I "$OUT" -I Sources/CZlib Tests/Fuzz/IDXFuzzer.swift -L "$OUT" -lPTData -lPTTensor -lz -o "$OUT/idx-fuzzer"
echo "built $OUT/idx-fuzzer"
