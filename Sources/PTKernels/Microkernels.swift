// Register-tile microkernels for the packed GEMM (BLIS style): C[MR][NR] (+)= Apanel[kc][MR] x Bpanel[kc][NR].
// Written out by hand-unrolled form (one variable per accumulator) so LLVM keeps every accumulator in a
// register. No loops over m or n inside. `accumulate` loads C first, otherwise the tile starts at zero.
// Every C element sees the same sequence of fused multiply-adds (p = 0, 1, ..., kc-1) in every kernel
// and every lane, so the choice of kernel never changes results.

/// 14x32 register tile (28 accumulators of SIMD16<Float>); see `_microkernel` notes.
@inline(never)
func _micro14x32(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V()
    var c1_0 = V(), c1_1 = V()
    var c2_0 = V(), c2_1 = V()
    var c3_0 = V(), c3_1 = V()
    var c4_0 = V(), c4_1 = V()
    var c5_0 = V(), c5_1 = V()
    var c6_0 = V(), c6_1 = V()
    var c7_0 = V(), c7_1 = V()
    var c8_0 = V(), c8_1 = V()
    var c9_0 = V(), c9_1 = V()
    var c10_0 = V(), c10_1 = V()
    var c11_0 = V(), c11_1 = V()
    var c12_0 = V(), c12_1 = V()
    var c13_0 = V(), c13_1 = V()
    if accumulate {
        do { let r = UnsafeRawPointer(c + 0 * ldc); c0_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c0_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 1 * ldc); c1_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c1_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 2 * ldc); c2_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c2_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 3 * ldc); c3_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c3_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 4 * ldc); c4_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c4_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 5 * ldc); c5_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c5_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 6 * ldc); c6_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c6_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 7 * ldc); c7_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c7_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 8 * ldc); c8_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c8_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 9 * ldc); c9_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c9_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 10 * ldc); c10_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c10_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 11 * ldc); c11_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c11_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 12 * ldc); c12_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c12_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
        do { let r = UnsafeRawPointer(c + 13 * ldc); c13_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c13_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self) }
    }
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = pb.load(fromByteOffset: 0, as: V.self)
        let b1 = pb.load(fromByteOffset: 64, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[6]); c6_0 = c6_0.addingProduct(x, b0); c6_1 = c6_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[7]); c7_0 = c7_0.addingProduct(x, b0); c7_1 = c7_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[8]); c8_0 = c8_0.addingProduct(x, b0); c8_1 = c8_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[9]); c9_0 = c9_0.addingProduct(x, b0); c9_1 = c9_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[10]); c10_0 = c10_0.addingProduct(x, b0); c10_1 = c10_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[11]); c11_0 = c11_0.addingProduct(x, b0); c11_1 = c11_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[12]); c12_0 = c12_0.addingProduct(x, b0); c12_1 = c12_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[13]); c13_0 = c13_0.addingProduct(x, b0); c13_1 = c13_1.addingProduct(x, b1) }
        pa += 14; pb += 128
    }
    do { let r = UnsafeMutableRawPointer(c + 0 * ldc); r.storeBytes(of: c0_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c0_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 1 * ldc); r.storeBytes(of: c1_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c1_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 2 * ldc); r.storeBytes(of: c2_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c2_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 3 * ldc); r.storeBytes(of: c3_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c3_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 4 * ldc); r.storeBytes(of: c4_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c4_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 5 * ldc); r.storeBytes(of: c5_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c5_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 6 * ldc); r.storeBytes(of: c6_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c6_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 7 * ldc); r.storeBytes(of: c7_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c7_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 8 * ldc); r.storeBytes(of: c8_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c8_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 9 * ldc); r.storeBytes(of: c9_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c9_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 10 * ldc); r.storeBytes(of: c10_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c10_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 11 * ldc); r.storeBytes(of: c11_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c11_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 12 * ldc); r.storeBytes(of: c12_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c12_1, toByteOffset: 64, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 13 * ldc); r.storeBytes(of: c13_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c13_1, toByteOffset: 64, as: V.self) }
}

/// 8x48 register tile (24 accumulators of SIMD16<Float>); see `_microkernel` notes.
@inline(never)
func _micro8x48(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V(), c0_2 = V()
    var c1_0 = V(), c1_1 = V(), c1_2 = V()
    var c2_0 = V(), c2_1 = V(), c2_2 = V()
    var c3_0 = V(), c3_1 = V(), c3_2 = V()
    var c4_0 = V(), c4_1 = V(), c4_2 = V()
    var c5_0 = V(), c5_1 = V(), c5_2 = V()
    var c6_0 = V(), c6_1 = V(), c6_2 = V()
    var c7_0 = V(), c7_1 = V(), c7_2 = V()
    if accumulate {
        do { let r = UnsafeRawPointer(c + 0 * ldc); c0_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c0_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c0_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 1 * ldc); c1_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c1_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c1_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 2 * ldc); c2_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c2_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c2_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 3 * ldc); c3_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c3_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c3_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 4 * ldc); c4_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c4_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c4_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 5 * ldc); c5_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c5_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c5_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 6 * ldc); c6_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c6_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c6_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
        do { let r = UnsafeRawPointer(c + 7 * ldc); c7_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c7_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c7_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self) }
    }
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = pb.load(fromByteOffset: 0, as: V.self)
        let b1 = pb.load(fromByteOffset: 64, as: V.self)
        let b2 = pb.load(fromByteOffset: 128, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1); c0_2 = c0_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1); c1_2 = c1_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1); c2_2 = c2_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1); c3_2 = c3_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1); c4_2 = c4_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1); c5_2 = c5_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[6]); c6_0 = c6_0.addingProduct(x, b0); c6_1 = c6_1.addingProduct(x, b1); c6_2 = c6_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[7]); c7_0 = c7_0.addingProduct(x, b0); c7_1 = c7_1.addingProduct(x, b1); c7_2 = c7_2.addingProduct(x, b2) }
        pa += 8; pb += 192
    }
    do { let r = UnsafeMutableRawPointer(c + 0 * ldc); r.storeBytes(of: c0_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c0_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c0_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 1 * ldc); r.storeBytes(of: c1_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c1_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c1_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 2 * ldc); r.storeBytes(of: c2_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c2_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c2_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 3 * ldc); r.storeBytes(of: c3_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c3_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c3_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 4 * ldc); r.storeBytes(of: c4_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c4_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c4_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 5 * ldc); r.storeBytes(of: c5_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c5_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c5_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 6 * ldc); r.storeBytes(of: c6_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c6_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c6_2, toByteOffset: 128, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 7 * ldc); r.storeBytes(of: c7_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c7_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c7_2, toByteOffset: 128, as: V.self) }
}

/// 6x64 register tile (24 accumulators of SIMD16<Float>); see `_microkernel` notes.
@inline(never)
func _micro6x64(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V(), c0_2 = V(), c0_3 = V()
    var c1_0 = V(), c1_1 = V(), c1_2 = V(), c1_3 = V()
    var c2_0 = V(), c2_1 = V(), c2_2 = V(), c2_3 = V()
    var c3_0 = V(), c3_1 = V(), c3_2 = V(), c3_3 = V()
    var c4_0 = V(), c4_1 = V(), c4_2 = V(), c4_3 = V()
    var c5_0 = V(), c5_1 = V(), c5_2 = V(), c5_3 = V()
    if accumulate {
        do { let r = UnsafeRawPointer(c + 0 * ldc); c0_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c0_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c0_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self); c0_3 = r.loadUnaligned(fromByteOffset: 192, as: V.self) }
        do { let r = UnsafeRawPointer(c + 1 * ldc); c1_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c1_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c1_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self); c1_3 = r.loadUnaligned(fromByteOffset: 192, as: V.self) }
        do { let r = UnsafeRawPointer(c + 2 * ldc); c2_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c2_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c2_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self); c2_3 = r.loadUnaligned(fromByteOffset: 192, as: V.self) }
        do { let r = UnsafeRawPointer(c + 3 * ldc); c3_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c3_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c3_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self); c3_3 = r.loadUnaligned(fromByteOffset: 192, as: V.self) }
        do { let r = UnsafeRawPointer(c + 4 * ldc); c4_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c4_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c4_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self); c4_3 = r.loadUnaligned(fromByteOffset: 192, as: V.self) }
        do { let r = UnsafeRawPointer(c + 5 * ldc); c5_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c5_1 = r.loadUnaligned(fromByteOffset: 64, as: V.self); c5_2 = r.loadUnaligned(fromByteOffset: 128, as: V.self); c5_3 = r.loadUnaligned(fromByteOffset: 192, as: V.self) }
    }
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = pb.load(fromByteOffset: 0, as: V.self)
        let b1 = pb.load(fromByteOffset: 64, as: V.self)
        let b2 = pb.load(fromByteOffset: 128, as: V.self)
        let b3 = pb.load(fromByteOffset: 192, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1); c0_2 = c0_2.addingProduct(x, b2); c0_3 = c0_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1); c1_2 = c1_2.addingProduct(x, b2); c1_3 = c1_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1); c2_2 = c2_2.addingProduct(x, b2); c2_3 = c2_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1); c3_2 = c3_2.addingProduct(x, b2); c3_3 = c3_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1); c4_2 = c4_2.addingProduct(x, b2); c4_3 = c4_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1); c5_2 = c5_2.addingProduct(x, b2); c5_3 = c5_3.addingProduct(x, b3) }
        pa += 6; pb += 256
    }
    do { let r = UnsafeMutableRawPointer(c + 0 * ldc); r.storeBytes(of: c0_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c0_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c0_2, toByteOffset: 128, as: V.self); r.storeBytes(of: c0_3, toByteOffset: 192, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 1 * ldc); r.storeBytes(of: c1_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c1_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c1_2, toByteOffset: 128, as: V.self); r.storeBytes(of: c1_3, toByteOffset: 192, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 2 * ldc); r.storeBytes(of: c2_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c2_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c2_2, toByteOffset: 128, as: V.self); r.storeBytes(of: c2_3, toByteOffset: 192, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 3 * ldc); r.storeBytes(of: c3_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c3_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c3_2, toByteOffset: 128, as: V.self); r.storeBytes(of: c3_3, toByteOffset: 192, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 4 * ldc); r.storeBytes(of: c4_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c4_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c4_2, toByteOffset: 128, as: V.self); r.storeBytes(of: c4_3, toByteOffset: 192, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 5 * ldc); r.storeBytes(of: c5_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c5_1, toByteOffset: 64, as: V.self); r.storeBytes(of: c5_2, toByteOffset: 128, as: V.self); r.storeBytes(of: c5_3, toByteOffset: 192, as: V.self) }
}

/// 6x16 register tile (12 accumulators of SIMD8<Float>); see `_microkernel` notes.
@inline(never)
func _micro6x16(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    typealias V = SIMD8<Float>
    var c0_0 = V(), c0_1 = V()
    var c1_0 = V(), c1_1 = V()
    var c2_0 = V(), c2_1 = V()
    var c3_0 = V(), c3_1 = V()
    var c4_0 = V(), c4_1 = V()
    var c5_0 = V(), c5_1 = V()
    if accumulate {
        do { let r = UnsafeRawPointer(c + 0 * ldc); c0_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c0_1 = r.loadUnaligned(fromByteOffset: 32, as: V.self) }
        do { let r = UnsafeRawPointer(c + 1 * ldc); c1_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c1_1 = r.loadUnaligned(fromByteOffset: 32, as: V.self) }
        do { let r = UnsafeRawPointer(c + 2 * ldc); c2_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c2_1 = r.loadUnaligned(fromByteOffset: 32, as: V.self) }
        do { let r = UnsafeRawPointer(c + 3 * ldc); c3_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c3_1 = r.loadUnaligned(fromByteOffset: 32, as: V.self) }
        do { let r = UnsafeRawPointer(c + 4 * ldc); c4_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c4_1 = r.loadUnaligned(fromByteOffset: 32, as: V.self) }
        do { let r = UnsafeRawPointer(c + 5 * ldc); c5_0 = r.loadUnaligned(fromByteOffset: 0, as: V.self); c5_1 = r.loadUnaligned(fromByteOffset: 32, as: V.self) }
    }
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = pb.load(fromByteOffset: 0, as: V.self)
        let b1 = pb.load(fromByteOffset: 32, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1) }
        pa += 6; pb += 64
    }
    do { let r = UnsafeMutableRawPointer(c + 0 * ldc); r.storeBytes(of: c0_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c0_1, toByteOffset: 32, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 1 * ldc); r.storeBytes(of: c1_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c1_1, toByteOffset: 32, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 2 * ldc); r.storeBytes(of: c2_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c2_1, toByteOffset: 32, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 3 * ldc); r.storeBytes(of: c3_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c3_1, toByteOffset: 32, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 4 * ldc); r.storeBytes(of: c4_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c4_1, toByteOffset: 32, as: V.self) }
    do { let r = UnsafeMutableRawPointer(c + 5 * ldc); r.storeBytes(of: c5_0, toByteOffset: 0, as: V.self); r.storeBytes(of: c5_1, toByteOffset: 32, as: V.self) }
}
