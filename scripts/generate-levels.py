#!/usr/bin/env python3
"""Writes the instruction-set level files from the tile shapes listed at the bottom:
Sources/PTKernelsAVX512/AVX512.swift, Sources/PTKernelsAVX2/AVX2.swift, Sources/PTKernels/Baseline.swift,
and the table of every level's shapes together, Sources/PTKernelsCore/LevelShapes.swift (scratch is
sized once for any level). Each level instantiates the generic tiles of Sources/PTKernelsCore/Tiles.swift
for its shapes: a switch from runtime shape to the specialised tile, which traps on a shape it does not
list (fatalError, which -Ounchecked keeps).

Usage (from anywhere): scripts/generate-levels.py [ROOT]   writes the files, then rebuild;
                       scripts/generate-levels.py --check [ROOT]   exits 1, naming the files, when
                       the checked-in files differ from what it would write (CI runs it).
ROOT defaults to the repository holding this script.
"""
import os
import sys
def level(modname, enum, name, V, madd_vec, madd_s, fused, gemm, conv, single, weights_fn, wshapes, dot, peak, imports, doc):
    o=[]
    o.append(doc)
    o.append(imports)
    o.append(f"""
/// The {name} level: `{V}` vectors.
public enum {enum}: KernelLevel {{
    public typealias V = {V}
    public static let name = "{name}"
    @inline(__always)
    public static func madd<T: SIMD>(_ acc: T, _ x: T, _ y: T) -> T where T.Scalar == Float {{ {madd_vec} }}
    @inline(__always)
    public static func madd(_ acc: Float, _ x: Float, _ y: Float) -> Float {{ {madd_s} }}
    public static let hasFusedMultiplyAdd = {str(fused).lower()}

    public static let gemmShapes: [GemmBlocking] = [""")
    for (mr,nv,mc) in gemm:
        o.append(f"        GemmBlocking(level: name, mr: {mr}, nv: {nv}, width: V.scalarCount, mc: {mc}),")
    o.append("    ]")
    o.append("""
    public static func gemmMicro(_ shape: GemmBlocking, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        switch (shape.mr, shape.nv) {""")
    for (mr,nv,mc) in gemm:
        o.append(f"        case ({mr}, {nv}): GemmTile<Self, {mr}, {nv}>.run(kc: kc, a: a, b: b, c: c, ldc: ldc, accumulate: accumulate)")
    o.append(f'        default: fatalError("{name}: unlisted GEMM tile \\(shape.mr)x\\(shape.nv)")')
    o.append("        }\n    }")
    o.append("\n    public static let convTileShapes: [(mr: Int, nv: Int)] = [" + ", ".join(f"({a}, {b})" for a,b in conv) + "]")
    o.append(f"    public static let convSingleRowVectors = {single}")
    o.append("""
    public static func convTiles(mr: Int, nv: Int, count: Int, span: TapSpan, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>,
                                 input: UnsafePointer<Float>, inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>,
                                 outPos: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
        switch (mr, nv) {""")
    cases=[]
    for (mr,nvmax) in conv+[(1,single)]:
        for n in range(1,nvmax+1):
            if (mr,n) not in cases: cases.append((mr,n))
    for (mr,n) in cases:
        o.append(f"        case ({mr}, {n}): ConvTile<Self, {mr}, {n}>.runTiles(count: count, span: span, a: a, offsets: offsets, input: input, inPos: inPos, out: out, outPos: outPos, ldo: ldo, bias: bias, rows: rows)")
    o.append(f'        default: fatalError("{name}: unlisted convolution tile \\(mr)x\\(nv)")')
    o.append("        }\n    }")
    o.append(f"""
    public static func weightsTileShape(oc: Int, kw: Int) -> (groups: Int, nv: Int) {{
{weights_fn}
    }}

    public static func weightsTile(kw: Int, groups tg: Int, nv: Int, img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>,
                                   dyT: UnsafePointer<Float>, ldy: Int, oh: Int, ow: Int, rowStep: Int, colStep: Int,
                                   acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int) {{
        switch (kw, tg, nv) {{""")
    for (kw,g,nv) in wshapes:
        o.append(f"        case ({kw}, {g}, {nv}): WeightsTile<Self, {g}, {kw}, {nv}>.run(img: img, groupOffsets: groupOffsets, dyT: dyT, ldy: ldy, oh: oh, ow: ow, rowStep: rowStep, colStep: colStep, acc: acc, ldacc: ldacc, groups: groups)")
    o.append(f'        default: fatalError("{name}: unlisted weights tile \\(kw)-wide \\(tg)x\\(nv)")')
    o.append("        }\n    }")
    r,c=dot
    o.append(f"""
    public static let dotShape = (rows: {r}, cols: {c})

    public static func dotTile(transposed: Bool, k: Int, a: UnsafePointer<Float>, lda: Int, rows: Int,
                               b: UnsafePointer<Float>, ldb: Int, cols: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {{
        if transposed {{
            DotTile<Self, {c}, {r}>.run(k: k, a: a, lda: lda, rows: rows, b: b, ldb: ldb, cols: cols, c: c, ldc: ldc)
        }} else {{
            DotTile<Self, {r}, {c}>.run(k: k, a: a, lda: lda, rows: rows, b: b, ldb: ldb, cols: cols, c: c, ldc: ldc)
        }}
    }}

    public static func directWeightsTile(transposed: Bool, samples: Int, length: Int, a: UnsafePointer<Float>, lda: Int,
                                         aStride: Int, rows: Int, b: UnsafePointer<Float>, bStride: Int,
                                         offsets: UnsafePointer<Int>, cols: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {{
        if transposed {{
            DotTile<Self, {c}, {r}>.runStrided(samples: samples, length: length, a: a, lda: lda, aStride: aStride, rows: rows,
                                           b: b, bStride: bStride, offsets: offsets, cols: cols, c: c, ldc: ldc)
        }} else {{
            DotTile<Self, {r}, {c}>.runStrided(samples: samples, length: length, a: a, lda: lda, aStride: aStride, rows: rows,
                                           b: b, bStride: bStride, offsets: offsets, cols: cols, c: c, ldc: ldc)
        }}
    }}

    public static let peakChains = {peak}
    public static func peakLoop(_ iterations: Int) -> Float {{ PeakTile<Self, {peak // 2}>.run(iterations) }}
}}
""")
    return "\n".join(o)

hdr = "// GENERATED by scripts/generate-levels.py from the shapes listed there; do not edit by hand.\n"

# Each level's shapes: (name, floats per vector, GEMM tiles (mr, nv, mc), convolution tiles (mr, nv),
# vectors of the single-channel tile, backward-weights tiles (kernel width, groups, nv), dot tile (rows, cols)).
# Backward-weights tiles of 5x5 kernels (oc a multiple of 16): 5 groups x 5 columns x 1 vector (25 zmm) at
# AVX-512, 1 x 5 x 2 (10 ymm / xmm) on the others; of 3-wide kernels with 16 output channels: 8 x 3 x 1 (24 zmm)
# at AVX-512, the others' 2 x 3 x 2.
# AVX-512 convolution tiles: 8x3, 6x4, and 6x2 for LeNet conv1 (6 channels x 53 vectors: 6x4 pads to 56
# vectors, 6x2 to 54; see docs/ARCHITECTURE.md).
LEVELS = [
    ("avx512", 16, [(14,2,112),(8,3,96),(6,4,96)], [(8,3),(6,4),(6,2)], 8, [(3,2,4),(3,3,3),(3,4,2),(3,8,1),(5,5,1)], (4,6)),
    ("avx2", 8, [(6,2,120),(4,3,120)], [(6,2),(4,3)], 12, [(3,2,2),(5,1,2)], (2,3)),
    ("baseline", 4, [(6,2,120)], [(6,2),(4,3)], 12, [(3,2,2),(5,1,2)], (1,3)),
]
SHAPES = {l[0]: l[2:] for l in LEVELS}   # gemm, conv, single, weights tiles, dot
VECTOR = {l[0]: f"SIMD{l[1]}<Float>" for l in LEVELS}

avx512 = level("PTKernelsAVX512","AVX512","avx512",VECTOR["avx512"],"acc.addingProduct(x, y)","acc.addingProduct(x, y)",True,
  *SHAPES["avx512"][:3],
  "        if kw == 5 { return (5, 1) }   // 25 zmm accumulators\n        let v = oc / 16\n        if v == 1 { return (8, 1) }    // 24 zmm accumulators\n        if v % 4 == 0 { return (2, 4) }\n        if v % 3 == 0 { return (3, 3) }\n        return (4, 2)",
  *SHAPES["avx512"][3:], 24,
  "import PTKernelsCore\n\n/// The AVX-512 kernel table. Call only on a CPU with every feature of the level (`InstructionSet`).\npublic func avx512KernelTable() -> KernelTable { makeKernelTable(AVX512.self) }",
  hdr+"// The AVX-512 level (x86-64-v4 class; built with -target-cpu skylake-avx512): 32 zmm registers, so\n// tiles of up to 28 SIMD16 accumulators.\n")
avx2 = level("PTKernelsAVX2","AVX2","avx2",VECTOR["avx2"],"acc.addingProduct(x, y)","acc.addingProduct(x, y)",True,
  *SHAPES["avx2"][:3],
  "        // 12 ymm accumulators, 16 output channels per tile (oc is a multiple of 16); 5-wide: 10\n        kw == 5 ? (1, 2) : (2, 2)",
  *SHAPES["avx2"][3:], 12,
  "import PTKernelsCore\n\n/// The AVX2 kernel table. Call only on a CPU with every feature of the level (`InstructionSet`).\npublic func avx2KernelTable() -> KernelTable { makeKernelTable(AVX2.self) }",
  hdr+"// The AVX2 + FMA level (x86-64-v3 class; built with -target-cpu haswell): 16 ymm registers, so\n// tiles of at most 12 SIMD8 accumulators (12 x 256 bits; 16-lane reductions take two ymm each).\n")
base = level("PTKernels","Baseline","baseline",VECTOR["baseline"],"acc + x * y","acc + x * y",False,
  *SHAPES["baseline"][:3],
  "        kw == 5 ? (1, 2) : (2, 2)   // 10 or 12 xmm accumulators",
  *SHAPES["baseline"][3:], 12,
  "import PTKernelsCore\n\n/// The baseline kernel table (any x86-64-v2 CPU).\nfunc baselineKernelTable() -> KernelTable { makeKernelTable(Baseline.self) }",
  hdr+"// The baseline level (x86-64-v2: SSE4.2, no FMA), compiled with the rest of the program: 16 xmm\n// registers; multiply and add round separately, so its results differ from the FMA levels' in the last bits.\n")
base = base.replace("public enum Baseline","enum Baseline")

def level_shapes():
    o=[hdr+"""// Every level's shapes together: PTKernelsCore sizes scratch once for any level (a workspace built at
// one level serves another), so it needs the largest tile of each kind over all levels.

extension GemmBlocking {
    /// Every GEMM tile of every level (workspace sizes cover them all, so one buffer serves any level).
    public static let allLevels: [GemmBlocking] = ["""]
    for (name,width,gemm,_,_,_,_) in LEVELS:
        for (mr,nv,mc) in gemm:
            o.append(f'        GemmBlocking(level: "{name}", mr: {mr}, nv: {nv}, width: {width}, mc: {mc}),')
    o.append("    ]\n}\n")
    rows=sorted({mr for (_,_,_,conv,_,_,_) in LEVELS for (mr,_) in conv} | {1}, reverse=True)
    dot=max(max(d) for (*_,d) in LEVELS)
    narrow=min(w for (_,w,*_) in LEVELS)
    o.append(f"""/// The extremes of every level's register tiles.
enum AllLevels {{
    /// Channels (rows) of every convolution tile of every level, and 1 (the single-channel tiles).
    static let convTileRows = {rows}
    /// Most columns of a 16-lane dot-product tile, either orientation.
    static let maxDotColumns = {dot}
    /// Floats per vector of the narrowest level.
    static let narrowestWidth = {narrow}
}}
""")
    return "\n".join(o)

def main(argv):
    check = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    if any(a.startswith("-") for a in rest) or len(rest) > 1:
        sys.exit("usage: scripts/generate-levels.py [--check] [ROOT]")
    root = rest[0] if rest else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    files = {
        "Sources/PTKernelsAVX512/AVX512.swift": avx512,
        "Sources/PTKernelsAVX2/AVX2.swift": avx2,
        "Sources/PTKernels/Baseline.swift": base,
        "Sources/PTKernelsCore/LevelShapes.swift": level_shapes(),
    }
    stale = []
    for path, text in files.items():
        full = os.path.join(root, path)
        if check:
            try:
                with open(full) as f:
                    if f.read() == text:
                        continue
            except FileNotFoundError:
                pass
            stale.append(path)
        else:
            with open(full, "w") as f:
                f.write(text)
    if stale:
        print("generate-levels: differs from scripts/generate-levels.py (run it and commit): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
