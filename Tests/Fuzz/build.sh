#!/bin/sh
# Builds the libFuzzer harnesses: PTTensor and PTData compiled from source with coverage
# instrumentation and AddressSanitizer (bounds and overflow checks on: no -Ounchecked), then one
# executable per harness:
#   idx-fuzzer     IDX.load (raw and gzip) and MNISTFolder.loadPair   (IDXFuzzer.swift)
#   packed-fuzzer  PackedFile (the packed data format), as given and with its CRCs repaired (PackedFuzzer.swift)
#   image-fuzzer   ImageCodec.decode (PNG through libpng, JPEG through TurboJPEG) and resizeAndCrop (ImageFuzzer.swift)
# Usage: Tests/Fuzz/build.sh [OUT_DIR]   (default ${TMPDIR:-/tmp}/ptrain-fuzz); then see docs/FUZZING.md.
# Needs what the package needs (scripts/setup.sh: zlib, libpng, libturbojpeg); libpng and libjpeg-turbo
# are the system's, not instrumented: the harnesses cover the Swift around them and catch what they
# return wrongly (sizes, messages), and ASan still sees their out-of-bounds writes into Swift buffers.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${1:-${TMPDIR:-/tmp}/ptrain-fuzz}
mkdir -p "$OUT/CPTSupport"
# SwiftPM makes CPTSupport's module map itself; here one is written beside the build (header-only
# use: PTData calls only its inline atomics).
cat > "$OUT/CPTSupport/module.modulemap" <<EOF
module CPTSupport {
    umbrella header "$ROOT/Sources/CPTSupport/include/CPTSupport.h"
    export *
}
EOF
# Every C module PTData imports: zlib, libpng, TurboJPEG (system libraries), CPTSupport.
C_MODULES="-I Sources/CZlib -I Sources/CPNG -I Sources/CTurboJPEG -I $OUT/CPTSupport"
LIBS="-lz -lpng16 -lturbojpeg"
swiftc_fuzz() { swiftc -sanitize=fuzzer,address -O -g -parse-as-library "$@"; }
# shellcheck disable=SC2086 # C_MODULES and LIBS are lists of flags
{
    swiftc_fuzz -module-name PTTensor -emit-library -static -emit-module -emit-module-path "$OUT/PTTensor.swiftmodule" \
        Sources/PTTensor/*.swift -o "$OUT/libPTTensor.a"
    swiftc_fuzz -module-name PTData -I "$OUT" $C_MODULES -emit-library -static -emit-module \
        -emit-module-path "$OUT/PTData.swiftmodule" Sources/PTData/*.swift -o "$OUT/libPTData.a"
    for harness in IDX Packed Image; do
        name=$(echo "$harness" | tr '[:upper:]' '[:lower:]')-fuzzer
        swiftc_fuzz -I "$OUT" $C_MODULES "Tests/Fuzz/${harness}Fuzzer.swift" -L "$OUT" -lPTData -lPTTensor $LIBS -o "$OUT/$name"
        echo "built $OUT/$name"
    done
}
