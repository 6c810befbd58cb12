// bf16 rounding, packing and the GEMM on AVX512_BF16 (vdpbf16ps), which the convolution and dense passes use
// (bf16_internal.h lists the files).
//
// GEMM, BLIS style: C[M][N] over a reduction of length R. Operands are bf16 pairs along the reduction:
// a packed A panel is [R/2][MR] 32-bit words (row m's pair (r, r+1): element r in the high half,
// r+1 in the low half, so vdpbf16ps, which adds the odd (high) product before the even one, runs the
// reduction in increasing order); a packed B panel is [R/2][NR] words laid out the same way, so one
// zmm load feeds 16 columns x 2 reduction steps and one A word is broadcast. Register tile MR x NR =
// 8 x 32: 16 zmm accumulators (vdpbf16ps latency 6 on Zen 4 needs >= 6 chains per port), 2 B loads
// and 8 broadcasts per 16 vdpbf16ps. No blocking of the reduction: each tile runs its whole chain.
// Operands come from bf16 sources through offset tables (element (row, r) at src[base[row] + roff[r]]),
// which lets one packer read weights, activations and convolution patches (no im2col buffer).
#include "bf16_internal.h"

void pt_bf16_round(const float *src, uint16_t *dst, long count) { round_row(src, dst, count); }

// MARK: packing

/// Packs rows [m0, m0 + MR) (rows >= M zero) of the whole reduction R into [ceil(R/2)][MR] words.
static void pack_a(pt_view v, int m0, int M, int R, uint32_t *dst) {
    int kp = (R + 1) / 2;
    int rows = M - m0 < MR ? M - m0 : MR;
    if (!v.roff && rows == MR) {
        // Pairs are adjacent: one 8-lane gather of 32-bit words per pair, halves swapped.
        __m256i base = _mm256_loadu_si256((const __m256i *)(v.base + m0));
        int full = R / 2;
        for (int p = 0; p < full; p++) {
            __m256i w = _mm256_i32gather_epi32((const int *)(v.src + 2 * p), base, 2);
            _mm256_store_si256((__m256i *)(dst + p * MR), _mm256_ror_epi32(w, 16));
        }
        if (R & 1) {
            __m256i w = _mm256_i32gather_epi32((const int *)(v.src + R - 1), base, 2);
            _mm256_store_si256((__m256i *)(dst + full * MR), _mm256_slli_epi32(w, 16));
        }
        return;
    }
    for (int p = 0; p < kp; p++) {
        int r0 = 2 * p, r1 = 2 * p + 1;
        for (int i = 0; i < MR; i++) {
            uint32_t w = 0;
            if (i < rows) {
                const uint16_t *s = v.src + v.base[m0 + i];
                uint32_t hi = s[v.roff ? v.roff[r0] : r0];
                uint32_t lo = r1 < R ? s[v.roff ? v.roff[r1] : r1] : 0;
                w = hi << 16 | lo;
            }
            dst[p * MR + i] = w;
        }
    }
}

/// Word l = (element 2l of the second source (high), element 2l of the first (low)).
static const uint16_t even_interleave[32] = {
    0, 32, 2, 34, 4, 36, 6, 38, 8, 40, 10, 42, 12, 44, 14, 46, 16, 48, 18, 50, 20, 52, 22, 54, 24, 56, 26, 58, 28, 60, 30, 62 };

/// Whether lanes 0-7 and lanes 8-15 (of `count`) each step by two elements.
static int stride2_halves(const int32_t *lane, int count) {
    for (int l = 1; l < count; l++)
        if (l != 8 && lane[l] != lane[l - 1] + 2) return 0;
    return 1;
}

/// Runs of adjacent offsets among `count` lanes.
static int runs_of(const int32_t *lane, int count) {
    int runs = 1;
    for (int l = 1; l < count; l++) runs += lane[l] != lane[l - 1] + 1;
    return runs;
}

/// B operand: element (r, n) at src[lane[n] + roff[r]]. Packs columns [n0, n0 + NR) (columns >= N zero)
/// of the whole reduction into [ceil(R/2)][NR] words. Per 16 columns: two 16-element loads and one
/// permute when the lanes are adjacent in memory; otherwise gathers (one when the pair is adjacent).
void pack_b(const uint16_t *src, const int32_t *lane, const int32_t *roff, int n0, int N, int R, uint32_t *dst) {
    int kp = (R + 1) / 2;
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    for (int h = 0; h < NR; h += 16) {
        int first = n0 + h;
        int count = N - first; if (count > 16) count = 16;
        uint32_t *d = dst + h;
        if (count <= 0) {
            for (int p = 0; p < kp; p++) _mm512_store_si512(d + p * NR, _mm512_setzero_si512());
            continue;
        }
        __mmask16 m = (__mmask16)(count == 16 ? 0xFFFF : (1u << count) - 1);
        __m512i idx = _mm512_maskz_loadu_epi32(m, lane + first);
        __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        __mmask16 adjacent = _mm512_mask_cmpeq_epi32_mask(m, idx, _mm512_add_epi32(_mm512_set1_epi32(lane[first]), iota));
        if (adjacent == m) {
            const uint16_t *s = src + lane[first];
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                __m256i hi = _mm256_maskz_loadu_epi16(m, s + roff[r0]);
                __m256i lo = r1 < R ? _mm256_maskz_loadu_epi16(m, s + roff[r1]) : _mm256_setzero_si256();
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                _mm512_store_si512(d + p * NR, _mm512_permutexvar_epi16(perm, z));
            }
        } else if (stride2_halves(lane + first, count)) {
            // Each 8 lanes two elements apart (stride-2 convolutions; 8 pixels of one row, or 16 of one
            // row): 16 adjacent elements per half and row of the pair, the even ones picked by one
            // two-source permute.
            const __m512i pick = _mm512_loadu_si512(even_interleave);
            int c1 = count < 8 ? count : 8, c2 = count - c1;
            __mmask16 h1 = (__mmask16)((1u << (2 * c1 - 1)) - 1), h2 = (__mmask16)(c2 > 0 ? (1u << (2 * c2 - 1)) - 1 : 0);
            const uint16_t *s1 = src + lane[first], *s2 = src + (c2 > 0 ? lane[first + 8] : lane[first]);
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi16(h1, s1 + roff[r0])),
                                                _mm256_maskz_loadu_epi16(h2, s2 + roff[r0]), 1);
                __m512i lo = _mm512_setzero_si512();
                if (r1 < R)
                    lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi16(h1, s1 + roff[r1])),
                                            _mm256_maskz_loadu_epi16(h2, s2 + roff[r1]), 1);
                _mm512_store_si512(d + p * NR, _mm512_permutex2var_epi16(lo, pick, hi));
            }
        } else if (runs_of(lane + first, count) <= 4) {
            // Lanes in a few runs of adjacent elements (e.g. 8x8 planes: 16 pixels in two rows): one
            // masked load per run instead of a gather.
            int start[4], len[4], n = 0;
            for (int l = 0; l < count; n++) {
                int e = l + 1;
                while (e < count && lane[first + e] == lane[first + e - 1] + 1) e++;
                start[n] = l; len[n] = e - l; l = e;
            }
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                __m256i hi = _mm256_setzero_si256(), lo = _mm256_setzero_si256();
                for (int t = 0; t < n; t++) {
                    __mmask16 rm = (__mmask16)(((1u << len[t]) - 1) << start[t]);
                    const uint16_t *base = src + lane[first + start[t]] - start[t];
                    hi = _mm256_mask_loadu_epi16(hi, rm, base + roff[r0]);
                    if (r1 < R) lo = _mm256_mask_loadu_epi16(lo, rm, base + roff[r1]);
                }
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                _mm512_store_si512(d + p * NR, _mm512_permutexvar_epi16(perm, z));
            }
        } else {
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                const int *s0 = (const int *)(src + roff[r0]);
                __m512i w;
                if (r1 < R && roff[r1] == roff[r0] + 1) {
                    w = _mm512_ror_epi32(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, s0, 2), 16);
                } else {
                    __m512i hi = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, s0, 2);
                    __m512i lo = r1 < R ? _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, (const int *)(src + roff[r1]), 2)
                                        : _mm512_setzero_si512();
                    w = _mm512_or_si512(_mm512_slli_epi32(hi, 16), _mm512_and_si512(lo, low16));
                }
                _mm512_store_si512(d + p * NR, w);
            }
        }
    }
}

/// Columns of B packed at a time: the packed block (R x NB) stays within ~384 KiB of L2.
int column_block(int R) {
    long words = packed_pairs(R);
    long nb = 98304 / (words > 0 ? words : 1) / NR * NR;
    if (nb < NR) nb = NR;
    if (nb > 512) nb = 512;
    return (int)nb;
}

size_t packed_a_bytes(int M, int R) {
    int rows = use_tiles() ? (M + 15) / 16 * 16 : (M + MR - 1) / MR * MR;
    return (size_t)rows * (size_t)packed_pairs(R) * 4;
}
size_t packed_b_bytes(int N, int R) {
    int nb = column_block(R);
    if (nb > (N + NR - 1) / NR * NR) nb = (N + NR - 1) / NR * NR;
    return (size_t)nb * (size_t)packed_pairs(R) * 4;
}

/// C[M][N] (ldc) = (load == C_LOAD ? C : 0) + A x B (+ bias[m]) with A packed whole in `pa` (pack_a panels in order);
/// `load` is C_ZERO, C_LOAD or C_STREAM (see `ukernel`).
void gemm_packed_a(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane,
                          const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb) {
    if (use_tiles()) { gemm_tiles(M, N, R, pa, bsrc, lane, roff, c, ldc, load == C_LOAD, bias, pb); return; }
    int kp = (R + 1) / 2;
    int nb = column_block(R);
    for (int n0 = 0; n0 < N; n0 += nb) {
        int ncols = N - n0 < nb ? N - n0 : nb;
        for (int j = 0; j < ncols; j += NR) pack_b(bsrc, lane, roff, n0 + j, N, R, pb + (size_t)j * kp);
        for (int j = 0; j < ncols; j += NR) {
            int nr = ncols - j < NR ? ncols - j : NR;
            for (int m0 = 0; m0 < M; m0 += MR) {
                int mr = M - m0 < MR ? M - m0 : MR;
                ukernel(kp, pa + (size_t)(m0 / MR) * MR * kp, pb + (size_t)j * kp, c + (long)m0 * ldc + n0 + j, ldc,
                        mr, nr, load, bias ? bias + m0 : NULL);
            }
        }
    }
}

/// The whole A operand packed for the unit: MR-row panels (`pack_a`), or AMX tiles (`pack_a_tiles`).
void pack_a_all(pt_view v, int M, int R, uint32_t *dst) {
    if (use_tiles()) { pack_a_tiles(v, M, R, dst); return; }
    int kp = (R + 1) / 2;
    for (int m0 = 0; m0 < M; m0 += MR) pack_a(v, m0, M, R, dst + (size_t)(m0 / MR) * MR * kp);
}

// MARK: peak

float pt_bf16_peak_loop(long iterations) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x00000000);
    for (long it = 0; it < iterations; it++) {
        __asm__ volatile("" : "+v"(b));
#pragma clang loop unroll(full)
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

long pt_bf16_peak_flops_per_iteration(void) { return 24L * 64; }

