// The AMX tile unit (tdpbf16ps): its GEMM, its peak loop and its direct convolution passes.
#include "bf16_internal.h"

// The AMX unit (Intel Sapphire Rapids and later: AMX-TILE + AMX-BF16). Same operands as the vector
// unit: B packed by `pack_b` ([pairs][NR] words, element r in the high half of its pair word), rows
// past the reduction zero up to whole blocks of KB pairs; A packed by `pack_a_tiles` as 16-row tiles,
// [row tile][block][16 rows][KB words]. Register tile 32 x 32: C in tmm0-3, A in tmm4-5, B in tmm6-7.
// One tdpbf16ps per block of 32 reduction elements (16 pairs) computes, per output element (measured
// on Intel Xeon family 6 model 207 against this model, 768k elements per sweep, exponents spread up
// to +-130, NaNs compared as NaN; it is also the SDM's current pseudocode): an fp32 chain over the
// block's even elements from 0 and one over its odd elements from 0 (each step one rounding to
// nearest even, products exact, denormals flushed), then acc + (even + odd), two more roundings.
// So the order depends only on the shapes, as with the vector unit, but the bits differ from it.

/// Packs A (rows >= M and pairs past the reduction zero) into 16-row tiles of KB pair words per block.
void pack_a_tiles(pt_view v, int M, int R, uint32_t *dst) {
    int kpp = packed_pairs(R), blocks = kpp / KB, tilesM = (M + 15) / 16;
    for (int t = 0; t < tilesM; t++)
        for (int i = 0; i < 16; i++) {
            int m = t * 16 + i;
            const uint16_t *s = m < M ? v.src + v.base[m] : NULL;
            for (int b = 0; b < blocks; b++) {
                uint32_t *d = dst + (((size_t)t * blocks + b) * 16 + i) * KB;
                int r0 = b * 2 * KB, n = R - r0;
                if (!s || n <= 0) { _mm512_storeu_si512(d, _mm512_setzero_si512()); continue; }
                if (!v.roff) {
                    __mmask32 mk = n >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << n) - 1);
                    _mm512_storeu_si512(d, _mm512_ror_epi32(_mm512_maskz_loadu_epi16(mk, s + r0), 16));
                    continue;
                }
                for (int p = 0; p < KB; p++) {
                    int r = r0 + 2 * p;
                    uint32_t hi = r < R ? s[v.roff[r]] : 0, lo = r + 1 < R ? s[v.roff[r + 1]] : 0;
                    d[p] = hi << 16 | lo;
                }
            }
        }
}

typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } pt_tile_config;

/// Loads the one tile shape every kernel here uses (all eight tiles 16 rows x 64 bytes) on the calling thread.
static void configure_tiles(void) {
    pt_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
}

/// C tile (rows x cols valid of 16 x 16 at c, row stride ldc) into a 16 x 16 buffer, zero elsewhere.
static void c_to_buffer(const float *c, long ldc, int rows, int cols, float *buf) {
    __mmask16 m = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    for (int r = 0; r < 16; r++) _mm512_store_ps(buf + r * 16, r < rows ? _mm512_maskz_loadu_ps(m, c + r * ldc) : _mm512_setzero_ps());
}

/// The valid part of a 16 x 16 buffer back into C, + bias[row] if bias.
static void buffer_to_c(const float *buf, float *c, long ldc, int rows, int cols, const float *bias) {
    __mmask16 m = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    for (int r = 0; r < rows; r++) {
        __m512 x = _mm512_load_ps(buf + r * 16);
        if (bias) x = _mm512_add_ps(x, _mm512_set1_ps(bias[r]));
        _mm512_mask_storeu_ps(c + r * ldc, m, x);
    }
}

#define TILE_IN(T, ti, tj) { \
        int rows_ = mrows - 16 * (ti), cols_ = ncols - 16 * (tj); \
        if (rows_ > 16) rows_ = 16; if (cols_ > 16) cols_ = 16; \
        float *cp_ = c + (long)16 * (ti) * ldc + 16 * (tj); \
        if (!load) _tile_zero(T); \
        else if (rows_ == 16 && cols_ == 16) _tile_loadd(T, cp_, ldc * 4); \
        else { c_to_buffer(cp_, ldc, rows_, cols_, buf); _tile_loadd(T, buf, 64); } }
#define TILE_OUT(T, ti, tj) { \
        int rows_ = mrows - 16 * (ti), cols_ = ncols - 16 * (tj); \
        if (rows_ > 16) rows_ = 16; if (cols_ > 16) cols_ = 16; \
        float *cp_ = c + (long)16 * (ti) * ldc + 16 * (tj); \
        if (rows_ == 16 && cols_ == 16 && !bias) _tile_stored(T, cp_, ldc * 4); \
        else { _tile_stored(T, buf, 64); buffer_to_c(buf, cp_, ldc, rows_, cols_, bias ? bias + 16 * (ti) : NULL); } }

/// C[0..<mrows][0..<ncols] (mrows <= 32, ncols <= 32; ldc) = (load ? C : 0) + blocks of A (two row
/// tiles at a, a + ablock) x B (two column tiles at b, b + 16; rows NR words apart), + bias[row].
static void tiles_kernel(int blocks, const uint32_t *a, size_t ablock, const uint32_t *b, float *c, long ldc,
                         int mrows, int ncols, int load, const float *bias) {
    float buf[256] __attribute__((aligned(64)));
    int two_m = mrows > 16, two_n = ncols > 16;
    const long bstride = NR * 4;
    if (two_m && two_n) {
        TILE_IN(0, 0, 0) TILE_IN(1, 0, 1) TILE_IN(2, 1, 0) TILE_IN(3, 1, 1)
        for (int k = 0; k < blocks; k++) {
            const uint32_t *ak = a + (size_t)k * 16 * KB, *bk = b + (size_t)k * KB * NR;
            _tile_loadd(4, ak, 64); _tile_loadd(5, ak + ablock, 64);
            _tile_loadd(6, bk, bstride); _tile_loadd(7, bk + 16, bstride);
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
        }
        TILE_OUT(0, 0, 0) TILE_OUT(1, 0, 1) TILE_OUT(2, 1, 0) TILE_OUT(3, 1, 1)
    } else if (two_n) {
        TILE_IN(0, 0, 0) TILE_IN(1, 0, 1)
        for (int k = 0; k < blocks; k++) {
            const uint32_t *ak = a + (size_t)k * 16 * KB, *bk = b + (size_t)k * KB * NR;
            _tile_loadd(4, ak, 64); _tile_loadd(6, bk, bstride); _tile_loadd(7, bk + 16, bstride);
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
        }
        TILE_OUT(0, 0, 0) TILE_OUT(1, 0, 1)
    } else if (two_m) {
        TILE_IN(0, 0, 0) TILE_IN(2, 1, 0)
        for (int k = 0; k < blocks; k++) {
            const uint32_t *ak = a + (size_t)k * 16 * KB, *bk = b + (size_t)k * KB * NR;
            _tile_loadd(4, ak, 64); _tile_loadd(5, ak + ablock, 64); _tile_loadd(6, bk, bstride);
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(2, 5, 6);
        }
        TILE_OUT(0, 0, 0) TILE_OUT(2, 1, 0)
    } else {
        TILE_IN(0, 0, 0)
        for (int k = 0; k < blocks; k++) {
            _tile_loadd(4, a + (size_t)k * 16 * KB, 64); _tile_loadd(6, b + (size_t)k * KB * NR, bstride);
            _tile_dpbf16ps(0, 4, 6);
        }
        TILE_OUT(0, 0, 0)
    }
}
#undef TILE_IN
#undef TILE_OUT

/// `gemm_packed_a` on AMX tiles: A packed by `pack_a_tiles`, B by `pack_b` with zero rows to whole blocks.
void gemm_tiles(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane,
                       const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb) {
    int kp = (R + 1) / 2, kpp = packed_pairs(R), blocks = kpp / KB;
    int nb = column_block(R);
    size_t ablock = (size_t)blocks * 16 * KB;
    configure_tiles();
    for (int n0 = 0; n0 < N; n0 += nb) {
        int ncols = N - n0 < nb ? N - n0 : nb;
        for (int j = 0; j < ncols; j += NR) {
            uint32_t *panel = pb + (size_t)j * kpp;
            pack_b(bsrc, lane, roff, n0 + j, N, R, panel);
            for (int p = kp; p < kpp; p++) _mm512_store_si512(panel + (size_t)p * NR, _mm512_setzero_si512()),
                                          _mm512_store_si512(panel + (size_t)p * NR + 16, _mm512_setzero_si512());
        }
        for (int m0 = 0; m0 < M; m0 += 32) {
            int mrows = M - m0 < 32 ? M - m0 : 32;
            for (int j = 0; j < ncols; j += NR) {
                int nr = ncols - j < NR ? ncols - j : NR;
                tiles_kernel(blocks, pa + (size_t)(m0 / 16) * ablock, ablock, pb + (size_t)j * kpp, c + (long)m0 * ldc + n0 + j,
                             ldc, mrows, nr, load, bias ? bias + m0 : NULL);
            }
        }
    }
}

/// GFLOP-counting AMX peak loop: `iterations` x 4 independent tdpbf16ps (16 x 16 x 32 products each).
float pt_bf16_tiles_peak_loop(long iterations) {
    static const uint16_t zeros[16 * 32] __attribute__((aligned(64))) = { 0 };
    float out[256] __attribute__((aligned(64)));
    configure_tiles();
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, zeros, 64); _tile_loadd(5, zeros, 64); _tile_loadd(6, zeros, 64); _tile_loadd(7, zeros, 64);
    for (long it = 0; it < iterations; it++) {
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    return out[0];
}

long pt_bf16_tiles_peak_flops_per_iteration(void) { return 4L * 16 * 16 * 32 * 2; }

// MARK: AMX direct convolution

// With AMX tiles, convolutions whose two strides are equal skip the packing of `gemm_tiles`: the
// sample is copied once into a zero-padded channels-last bf16 image X[e][c] (e = Y * piw + X over the
// padded plane, channels padded to icp, a multiple of 16), and output pixels are taken "wide": q =
// y * piw + x for x < piw, so that tap (i, j) of every output pixel reads X at e = s * q + i * piw + j.
// Sixteen consecutive wide pixels are then sixteen tile rows at a constant stride, loaded straight
// from X (the columns x >= ow are computed and dropped, or carry a zero gradient).
// - Forward (and the stride-1 input gradient, the transposed convolution's forward): for kernel row i
//   the reduction elements (j, c) of one output pixel lie contiguous in X (kw * icp of them from
//   e = s * q + i * piw), so A is 16 pixels x 32 of them and B the matching weights (zero for j >= kw
//   or c >= ic): per output, kernel rows in order, each row's run in blocks of 32, one tdpbf16ps each.
// - Weight gradient: dW of kernel row i, rows o, columns (j, c) = chain over samples, and over each
//   sample's wide pixels (Q of them, rounded up to 32) in blocks of 32 (dout zero at x >= ow and past
//   the last row), one tdpbf16ps
//   per block; B comes from a pair image PI[e][c] = (X[e][c], X[e + s][c]), columns (j, c) of one
//   pixel pair contiguous.

int tiles_direct(pt_bf16_conv_geometry g) { return use_tiles() && g.sh == g.sw; }

typedef struct { int s, icp, rowlen, rblocks, ntiles, Q, Qt; long E, reach; } tile_dims;

/// icp: ic padded to 16; rowlen: a kernel row's kw * icp elements padded to whole 32-blocks (rblocks);
/// ntiles: 16-wide tiles of oc; Q: wide output pixels; Qt: Q padded to whole 64-pixel steps; reach:
/// pixels of X that Qt wide pixels read; E: pixels the X copy holds (>= the padded plane, reach + s).
static tile_dims tiles_dims(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    tile_dims t;
    t.s = g.sh; t.icp = (g.ic + 15) / 16 * 16; t.rowlen = (g.kw * t.icp + 31) / 32 * 32; t.rblocks = t.rowlen / 32;
    t.ntiles = (g.oc + 15) / 16; t.Q = g.oh * d.piw; t.Qt = (t.Q + 63) / 64 * 64;
    t.reach = (long)t.s * t.Qt + (long)(g.kh - 1) * d.piw + t.rowlen / t.icp + 1;
    t.E = t.reach + t.s > d.plane ? t.reach + t.s : d.plane;
    return t;
}

/// One sample (NCHW fp32) into the channels-last copy X (border and channels >= ic stay as they are:
/// zero). Per 16 channels x 16 pixels: rounded rows interleaved into channel-pair words, transposed.
static void channels_last_sample(pt_bf16_conv_geometry g, conv_dims d, tile_dims t, const float *in, uint16_t *X) {
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    for (int c0 = 0; c0 < g.ic; c0 += 16)
        for (int y = 0; y < g.ih; y++)
            for (int x0 = 0; x0 < g.iw; x0 += 16) {
                int n = g.iw - x0 < 16 ? g.iw - x0 : 16;
                __mmask16 m = (__mmask16)((1u << n) - 1);
                __m512i r[16];
                for (int k = 0; k < 8; k++) {
                    int ca = c0 + 2 * k;
                    __m256i lo = ca < g.ic ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + ((long)ca * g.ih + y) * g.iw + x0))
                                           : _mm256_setzero_si256();
                    __m256i hi = ca + 1 < g.ic ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + ((long)(ca + 1) * g.ih + y) * g.iw + x0))
                                               : _mm256_setzero_si256();
                    r[k] = _mm512_permutexvar_epi16(perm, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
                }
                for (int k = 8; k < 16; k++) r[k] = _mm512_setzero_si512();
                transpose16(r);
                uint16_t *dst = X + ((long)(y + g.ph) * d.piw + x0 + g.pw) * t.icp + c0;
                for (int x = 0; x < n; x++) _mm256_storeu_si256((__m256i *)(dst + (long)x * t.icp), _mm512_castsi512_si256(r[x]));
            }
}

size_t tiles_forward_bytes(pt_bf16_conv_geometry g) {
    tile_dims t = tiles_dims(g);
    return align64((size_t)t.E * t.icp * 2 + 64) + align64((size_t)g.kh * t.rblocks * t.ntiles * 256 * 4) + 64;
}

/// out[o][y][x] for the valid pixels of one C tile (16 wide pixels from q0 x 16 channels from o0,
/// in buf[q][o]), + bias: transposed in registers; each output row's run of lanes l0.. is one masked
/// store at the row's address less l0 (masked-off lanes are not written).
static void store_wide_tile(pt_bf16_conv_geometry g, int piw, const float *buf, int q0, int o0, const float *bias, float *out) {
    __mmask16 seg_mask[16];
    long seg_off[16];
    int segs = 0;
    for (int l = 0; l < 16;) {
        int q = q0 + l, y = q / piw, x = q % piw;
        int run = piw - x < 16 - l ? piw - x : 16 - l;
        if (y < g.oh && x < g.ow) {
            int valid = g.ow - x < run ? g.ow - x : run;
            seg_mask[segs] = (__mmask16)(((1u << valid) - 1) << l);
            seg_off[segs++] = (long)y * g.ow + x - l;
        }
        l += run;
    }
    if (!segs) return;
    __m512i r[16];
    for (int q = 0; q < 16; q++) r[q] = _mm512_load_si512(buf + q * 16);
    transpose16(r);
    long P = (long)g.oh * g.ow;
    for (int k = 0; k < 16 && o0 + k < g.oc; k++) {
        __m512 v = _mm512_castsi512_ps(r[k]);
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[o0 + k]));
        float *row = out + (long)(o0 + k) * P;
        for (int sgi = 0; sgi < segs; sgi++) _mm512_mask_storeu_ps(row + seg_off[sgi], seg_mask[sgi], v);
    }
}

/// Forward on AMX tiles (see the section comment): wbf [oc][ic][kh][kw] rounded.
void tiles_forward(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias,
                          float *out, char *s) {
    conv_dims d = dims(g);
    tile_dims t = tiles_dims(g);
    int khw = g.kh * g.kw;
    s = (char *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    uint16_t *X = bump(&s, (size_t)t.E * t.icp * 2 + 64);
    uint32_t *W = bump(&s, (size_t)g.kh * t.rblocks * t.ntiles * 256 * 4);
    // W[i][row block][n tile][pair p][16 words]: word (p, n) = elements r, r + 1 (r = 32 * block + 2p) of
    // kernel row i's run (j, c) = (r / icp, r % icp), low and high; zero past kw, ic or oc.
    for (int i = 0; i < g.kh; i++)
        for (int b = 0; b < t.rblocks; b++)
            for (int nt = 0; nt < t.ntiles; nt++)
                for (int p = 0; p < 16; p++)
                    for (int n = 0; n < 16; n++) {
                        int o = nt * 16 + n, r = b * 32 + 2 * p;
                        uint32_t half[2];
                        for (int h = 0; h < 2; h++) {
                            int j = (r + h) / t.icp, c = (r + h) % t.icp;
                            half[h] = o < g.oc && j < g.kw && c < g.ic ? wbf[((long)o * g.ic + c) * khw + i * g.kw + j] : 0;
                        }
                        W[((((long)i * t.rblocks + b) * t.ntiles + nt) * 16 + p) * 16 + n] = half[1] << 16 | half[0];
                    }
    memset(X, 0, (size_t)t.E * t.icp * 2 + 64);
    configure_tiles();
    float buf[256] __attribute__((aligned(64)));
    const long astride = (long)t.s * t.icp * 2, rowstep = (long)d.piw * t.icp, m16 = 16L * t.s * t.icp;
    for (int n = 0; n < mb; n++) {
        channels_last_sample(g, d, t, in + (long)n * g.ic * g.ih * g.iw, X);
        float *o = out + (long)n * g.oc * d.P;
        for (int q0 = 0; q0 < t.Q; q0 += 64) {
            int nt = 0;
            // Pairs of n tiles: 32 pixels x 32 channels a step (tiles 0-3).
            for (; nt + 1 < t.ntiles; nt += 2)
                for (int qa = q0; qa < q0 + 64 && qa < t.Q; qa += 32) {
                    const uint16_t *a = X + (long)t.s * qa * t.icp;
                    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                    for (int i = 0; i < g.kh; i++)
                        for (int b = 0; b < t.rblocks; b++) {
                            const uint16_t *ab = a + i * rowstep + b * 32;
                            const uint32_t *w = W + (((long)i * t.rblocks + b) * t.ntiles + nt) * 256;
                            _tile_loadd(4, ab, astride); _tile_loadd(5, ab + m16, astride);
                            _tile_loadd(6, w, 64); _tile_loadd(7, w + 256, 64);
                            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
                        }
                    _tile_stored(0, buf, 64); store_wide_tile(g, d.piw, buf, qa, nt * 16, bias, o);
                    _tile_stored(1, buf, 64); store_wide_tile(g, d.piw, buf, qa, nt * 16 + 16, bias, o);
                    _tile_stored(2, buf, 64); store_wide_tile(g, d.piw, buf, qa + 16, nt * 16, bias, o);
                    _tile_stored(3, buf, 64); store_wide_tile(g, d.piw, buf, qa + 16, nt * 16 + 16, bias, o);
                }
            if (nt < t.ntiles) {
                // The last single n tile: 64 pixels x 16 channels (tiles 0-3, A alternating in 4 and 5).
                const uint16_t *a = X + (long)t.s * q0 * t.icp;
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                for (int i = 0; i < g.kh; i++)
                    for (int b = 0; b < t.rblocks; b++) {
                        const uint16_t *ab = a + i * rowstep + b * 32;
                        _tile_loadd(6, W + (((long)i * t.rblocks + b) * t.ntiles + nt) * 256, 64);
                        _tile_loadd(4, ab, astride); _tile_dpbf16ps(0, 4, 6);
                        _tile_loadd(5, ab + m16, astride); _tile_dpbf16ps(1, 5, 6);
                        _tile_loadd(4, ab + 2 * m16, astride); _tile_dpbf16ps(2, 4, 6);
                        _tile_loadd(5, ab + 3 * m16, astride); _tile_dpbf16ps(3, 5, 6);
                    }
                _tile_stored(0, buf, 64); store_wide_tile(g, d.piw, buf, q0, nt * 16, bias, o);
                _tile_stored(1, buf, 64); store_wide_tile(g, d.piw, buf, q0 + 16, nt * 16, bias, o);
                _tile_stored(2, buf, 64); store_wide_tile(g, d.piw, buf, q0 + 32, nt * 16, bias, o);
                _tile_stored(3, buf, 64); store_wide_tile(g, d.piw, buf, q0 + 48, nt * 16, bias, o);
            }
        }
    }
}

size_t tiles_weights_bytes(pt_bf16_conv_geometry g) {
    tile_dims t = tiles_dims(g);
    int ocp = t.ntiles * 16;
    return align64((size_t)t.E * t.icp * 2 + 64) + align64((size_t)t.E * t.icp * 4 + 64) + align64((size_t)ocp * t.Qt * 2)
         + align64((size_t)g.kh * ocp * g.kw * t.icp * 4) + 64;
}

/// Weight gradient on AMX tiles (see the section comment); dw [oc][ic][kh][kw] added to.
void tiles_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw, char *s) {
    conv_dims d = dims(g);
    tile_dims t = tiles_dims(g);
    int ocp = t.ntiles * 16, ncols = g.kw * t.icp, ctiles = ncols / 16, khw = g.kh * g.kw;
    uint16_t *X = bump(&s, (size_t)t.E * t.icp * 2 + 64);
    uint32_t *PI = bump(&s, (size_t)t.E * t.icp * 4 + 64);
    uint16_t *D = bump(&s, (size_t)ocp * t.Qt * 2);
    float *acc = bump(&s, (size_t)g.kh * ocp * ncols * 4);   // [i][o][j * icp + c]
    memset(X, 0, (size_t)t.E * t.icp * 2 + 64);
    memset(D, 0, (size_t)ocp * t.Qt * 2);
    memset(acc, 0, (size_t)g.kh * ocp * ncols * 4);
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int i = 0; i < g.kh; i++)
                for (int j = 0; j < g.kw; j++)
                    acc[((long)i * ocp + o) * ncols + j * t.icp + c] = dw[((long)o * g.ic + c) * khw + i * g.kw + j];
    configure_tiles();
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    const long dstride = (long)t.Qt * 2, bstride = 2L * t.s * t.icp * 4, cstride = (long)ncols * 4;
    for (int n = 0; n < mb; n++) {
        channels_last_sample(g, d, t, in + (long)n * g.ic * g.ih * g.iw, X);
        for (long e = 0; e < t.reach; e++)
            for (int c0 = 0; c0 < t.icp; c0 += 16) {
                __m256i lo = _mm256_loadu_si256((const __m256i *)(X + e * t.icp + c0));
                __m256i hi = _mm256_loadu_si256((const __m256i *)(X + (e + t.s) * t.icp + c0));
                _mm512_storeu_si512(PI + e * t.icp + c0, _mm512_permutexvar_epi16(perm, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)));
            }
        const float *dn = dout + (long)n * g.oc * d.P;
        for (int o = 0; o < g.oc; o++)
            for (int y = 0; y < g.oh; y++) round_row(dn + ((long)o * g.oh + y) * g.ow, D + (long)o * t.Qt + (long)y * d.piw, g.ow);
        for (int i = 0; i < g.kh; i++) {
            const uint32_t *brow = PI + (long)i * d.piw * t.icp;
            for (int ot = 0; ot < t.ntiles; ot += 2) {
                int two_o = ot + 1 < t.ntiles;
                const uint16_t *a0 = D + (long)ot * 16 * t.Qt, *a1 = a0 + 16L * t.Qt;
                for (int ct = 0; ct < ctiles; ct += 2) {
                    int two_c = ct + 1 < ctiles;
                    float *c00 = acc + ((long)i * ocp + ot * 16) * ncols + ct * 16, *c10 = c00 + 16L * ncols;
                    const uint32_t *b0 = brow + ct * 16;
                    _tile_loadd(0, c00, cstride);
                    if (two_c) _tile_loadd(1, c00 + 16, cstride);
                    if (two_o) { _tile_loadd(2, c10, cstride); if (two_c) _tile_loadd(3, c10 + 16, cstride); }
                    for (int kb = 0; kb < (t.Q + 31) / 32; kb++) {
                        const uint32_t *bk = b0 + 32L * t.s * kb * t.icp;
                        _tile_loadd(4, a0 + kb * 32, dstride);
                        _tile_loadd(6, bk, bstride);
                        _tile_dpbf16ps(0, 4, 6);
                        if (two_c) { _tile_loadd(7, bk + 16, bstride); _tile_dpbf16ps(1, 4, 7); }
                        if (two_o) {
                            _tile_loadd(5, a1 + kb * 32, dstride);
                            _tile_dpbf16ps(2, 5, 6);
                            if (two_c) _tile_dpbf16ps(3, 5, 7);
                        }
                    }
                    _tile_stored(0, c00, cstride);
                    if (two_c) _tile_stored(1, c00 + 16, cstride);
                    if (two_o) { _tile_stored(2, c10, cstride); if (two_c) _tile_stored(3, c10 + 16, cstride); }
                }
            }
        }
    }
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int i = 0; i < g.kh; i++)
                for (int j = 0; j < g.kw; j++)
                    dw[((long)o * g.ic + c) * khw + i * g.kw + j] = acc[((long)i * ocp + o) * ncols + j * t.icp + c];
}

