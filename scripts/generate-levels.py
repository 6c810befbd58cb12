#!/usr/bin/env python3
"""Writes the instruction-set level files from the tile shapes listed at the bottom:
Sources/PTKernelsAVX512/AVX512.swift, Sources/PTKernelsAVX2/AVX2.swift, Sources/PTKernels/Baseline.swift.
Each level instantiates the generic tiles of Sources/PTKernelsCore/Tiles.swift for its shapes (a
switch from runtime shape to the specialised tile). Usage: scripts/generate-levels.py .  (from the
repository root); then rebuild.
"""
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
    for i,(mr,nv,mc) in enumerate(gemm):
        pat = "default" if i==len(gemm)-1 else f"case ({mr}, {nv})"
        o.append(f"        {pat}: GemmTile<Self, {mr}, {nv}>.run(kc: kc, a: a, b: b, c: c, ldc: ldc, accumulate: accumulate)")
    o.append("        }\n    }")
    o.append("\n    public static let convTileShapes: [(mr: Int, nv: Int)] = [" + ", ".join(f"({a}, {b})" for a,b in conv) + "]")
    o.append(f"    public static let convSingleRowVectors = {single}")
    o.append("""
    public static func convTiles(mr: Int, nv: Int, count: Int, k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>,
                                 input: UnsafePointer<Float>, inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>,
                                 outPos: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
        switch (mr, nv) {""")
    cases=[]
    for (mr,nvmax) in conv+[(1,single)]:
        for n in range(1,nvmax+1):
            if (mr,n) not in cases: cases.append((mr,n))
    for i,(mr,n) in enumerate(cases):
        pat = "default" if i==len(cases)-1 else f"case ({mr}, {n})"
        o.append(f"        {pat}: ConvTile<Self, {mr}, {n}>.runTiles(count: count, k: k, a: a, offsets: offsets, input: input, inPos: inPos, out: out, outPos: outPos, ldo: ldo, bias: bias, rows: rows)")
    o.append("        }\n    }")
    o.append(f"""
    public static func weightsTileShape(oc: Int) -> (groups: Int, nv: Int) {{
{weights_fn}
    }}

    public static func weightsTile(groups tg: Int, nv: Int, img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>,
                                   dyT: UnsafePointer<Float>, ldy: Int, oh: Int, ow: Int, rowStep: Int, colStep: Int,
                                   acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int) {{
        switch (tg, nv) {{""")
    for i,(g,nv) in enumerate(wshapes):
        pat = "default" if i==len(wshapes)-1 else f"case ({g}, {nv})"
        o.append(f"        {pat}: WeightsTile<Self, {g}, {nv}>.run(img: img, groupOffsets: groupOffsets, dyT: dyT, ldy: ldy, oh: oh, ow: ow, rowStep: rowStep, colStep: colStep, acc: acc, ldacc: ldacc, groups: groups)")
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
# AVX-512 convolution tiles: 8x3, 6x4, and 6x2 for LeNet conv1 (6 channels x 53 vectors: 6x4 pads to 56
# vectors, 6x2 to 54; see docs/ARCHITECTURE.md).
avx512 = level("PTKernelsAVX512","AVX512","avx512","SIMD16<Float>","acc.addingProduct(x, y)","acc.addingProduct(x, y)",True,
  [(14,2,112),(8,3,96),(6,4,96)], [(8,3),(6,4),(6,2)], 8,
  "        let v = oc / 16\n        if v % 4 == 0 { return (2, 4) }\n        if v % 3 == 0 { return (3, 3) }\n        return (4, 2)",
  [(2,4),(3,3),(4,2)], (4,6), 24,
  "import PTKernelsCore\n\n/// The AVX-512 kernel table. Call only on a CPU with every feature of the level (`InstructionSet`).\npublic func avx512KernelTable() -> KernelTable { makeKernelTable(AVX512.self) }",
  hdr+"// The AVX-512 level (x86-64-v4 class; built with -target-cpu skylake-avx512): 32 zmm registers, so\n// tiles of up to 28 SIMD16 accumulators.\n")
avx2 = level("PTKernelsAVX2","AVX2","avx2","SIMD8<Float>","acc.addingProduct(x, y)","acc.addingProduct(x, y)",True,
  [(6,2,120),(4,3,120)], [(6,2),(4,3)], 12,
  "        (2, 2)   // 12 ymm accumulators; 16 output channels per tile (oc is a multiple of 16)",
  [(2,2)], (2,3), 12,
  "import PTKernelsCore\n\n/// The AVX2 kernel table. Call only on a CPU with every feature of the level (`InstructionSet`).\npublic func avx2KernelTable() -> KernelTable { makeKernelTable(AVX2.self) }",
  hdr+"// The AVX2 + FMA level (x86-64-v3 class; built with -target-cpu haswell): 16 ymm registers, so\n// tiles of at most 12 SIMD8 accumulators (12 x 256 bits; 16-lane reductions take two ymm each).\n")
base = level("PTKernels","Baseline","baseline","SIMD4<Float>","acc + x * y","acc + x * y",False,
  [(6,2,120)], [(6,2),(4,3)], 12,
  "        (2, 2)   // 12 xmm accumulators",
  [(2,2)], (1,3), 12,
  "import PTKernelsCore\n\n/// The baseline kernel table (any x86-64-v2 CPU).\nfunc baselineKernelTable() -> KernelTable { makeKernelTable(Baseline.self) }",
  hdr+"// The baseline level (x86-64-v2: SSE4.2, no FMA), compiled with the rest of the program: 16 xmm\n// registers; multiply and add round separately, so its results differ from the FMA levels' in the last bits.\n")
base = base.replace("public enum Baseline","enum Baseline")
import os
root=sys.argv[1]
open(os.path.join(root,"Sources/PTKernelsAVX512/AVX512.swift"),"w").write(avx512)
open(os.path.join(root,"Sources/PTKernelsAVX2/AVX2.swift"),"w").write(avx2)
open(os.path.join(root,"Sources/PTKernels/Baseline.swift"),"w").write(base)
