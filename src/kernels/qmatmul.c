/* qmatmul.c - decoding's matrix products: few activation rows times weights in their file types.
 *
 * The work is split over the rows of W (out): a task takes a run of rows of one weight of the
 * call, or the end of one and the start of the next. A weight with a repacked copy
 * (rein_qmatmul_pack) goes to qpack.c's kernel, in whole groups of 16 rows; in the int8 mode
 * (rein_qmatmul_set_int8) a weight with an int8 copy goes to qpack_vnni.c's instead, x quantized
 * once per call for all the weights of the call. F32, F16 and BF16 weights (converted exactly to
 * f32 as they are loaded) have kernels of their own below: they are vectorized over weight rows
 * (16 x 16 blocks transposed in registers) below batch 8 and over
 * activation rows from 8 on, each output one FMA chain per span of the reduction like qpack.c, so
 * the three give the same bits for the same values. The other block types are multiplied four
 * rows at a time by the activation rows, up to four at a time, while the next four rows are
 * prefetched. The reduction goes in chunks of 32 elements (one block of the 32-element formats,
 * one sub-block of the 256-element K formats): a chunk of each of the four weight rows is
 * dequantized into two registers, exactly as quant.c's scalar code computes it (same operations in
 * the same order, no contraction), and multiplied into one accumulator per (activation row, weight
 * row). The accumulator of an output only ever sees its own chunks in reduction order, then one
 * horizontal sum, so grouping rows differently (another N, another thread count) cannot change a
 * bit.
 */
#include "kernels/qmatmul.h"
#include "base/base.h"
#include "kernels/vtranspose.h"
#include "kernels/matmul.h"
#include "kernels/qpack.h"
#include "kernels/qpack_vnni.h"
#include "kernels/quant.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define CH 32      /* reduction chunk */
#define RW 4       /* weight rows per tile */
#define RN 4       /* activation rows per tile */
#define MAX_W 8    /* weights of one multi call */
#define PORT_N 16  /* activation rows per pass of the portable path */

int rein_qmatmul_supports(int type) {
    switch (type) {
    case REIN_TYPE_F32: case REIN_TYPE_F16: case REIN_TYPE_BF16: case REIN_TYPE_Q8_0:
    case REIN_TYPE_Q4_0: case REIN_TYPE_Q4_1: case REIN_TYPE_Q4_K: case REIN_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

static int int8_wanted;

void rein_qmatmul_set_int8(int on) {
    int8_wanted = on;
}

int rein_qmatmul_int8(void) {
    static int cpu = -1;
    if (!int8_wanted || !rein_kernels_use_avx512()) return 0;
    if (cpu < 0) cpu = qvnni_cpu();
    return cpu;
}

/* ---- plain reference and portable path ---------------------------------------------------- */

void rein_qmatmul_nt_ref(float *y, const float *x, const rein_qweight *w, int N, int accumulate) {
    const int K = w->cols, M = w->rows;
    float *row = rein_malloc(sizeof(float) * (size_t)(K ? K : 1));
    REIN_ASSERT(row != NULL);
    for (int j = 0; j < M; j++) {
        rein_status st = rein_dequantize(w->type, (const uint8_t *)w->data + j * w->row_bytes, row, K);
        REIN_ASSERT(st == REIN_OK);
        for (int i = 0; i < N; i++) {
            float s = 0;
            for (int k = 0; k < K; k++) s += x[(int64_t)i * K + k] * row[k];
            float *yo = y + (int64_t)i * M + j;
            *yo = accumulate ? *yo + s : s;
        }
    }
    rein_free(row);
}

typedef struct qjob {
    float *const *y;
    const float *x;
    const rein_qweight *w;
    int n_w, N, acc;
    int64_t per;
    int fast;             /* AVX-512 path */
    const qvnni_x *xq;    /* x quantized, in the int8 mode (for the weights with packed_int8) */
    /* The weights' rows end to end, each weight's padded to whole tiles (`align` rows): weight i
     * holds [start[i], start[i + 1]), and task t the rows [t * per, (t + 1) * per) of that. */
    int64_t start[MAX_W + 1];
} qjob;

/* Portable: each weight row dequantized piece by piece (whole blocks), then a sequential dot
 * product per activation row, as the reference does, for PORT_N activation rows at a time. */
static void rows_portable(const qjob *j, const rein_qweight *w, float *y, int r0, int r1) {
    enum { PIECE = 2048 }; /* a multiple of every block size */
    float buf[PIECE], s[PORT_N];
    const int K = w->cols, M = w->rows, bs = rein_type_block_size(w->type);
    const size_t bb = rein_type_block_bytes(w->type);
    for (int i0 = 0; i0 < j->N; i0 += PORT_N) {
        int ni = REIN_MIN(PORT_N, j->N - i0);
        for (int r = r0; r < r1; r++) {
            const uint8_t *wr = (const uint8_t *)w->data + r * w->row_bytes;
            for (int i = 0; i < ni; i++) s[i] = 0;
            for (int k0 = 0; k0 < K; k0 += PIECE) {
                int kn = REIN_MIN(PIECE, K - k0);
                rein_dequantize(w->type, wr + (size_t)(k0 / bs) * bb, buf, kn);
                for (int i = 0; i < ni; i++) {
                    const float *xi = j->x + (int64_t)(i0 + i) * K + k0;
                    float acc = s[i];
                    for (int k = 0; k < kn; k++) acc += xi[k] * buf[k];
                    s[i] = acc;
                }
            }
            for (int i = 0; i < ni; i++) {
                float *yo = y + (int64_t)(i0 + i) * M + r;
                *yo = j->acc ? *yo + s[i] : s[i];
            }
        }
    }
}

#if defined(__x86_64__)
/* ---- AVX-512 -------------------------------------------------------------------------------- */

#define AVX512 __attribute__((target("avx512f,avx512vl,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* f16 -> f32 with F16C, inline (a call here would spill every vector register); exact, as
 * rein_fp16_to_fp32 is. */
AVX512 INLINE float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

INLINE int32_t load_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

AVX512 INLINE __m512i u8x16(const uint8_t *p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

AVX512 INLINE __m512 cvt(__m512i v) {
    return _mm512_cvtepi32_ps(v);
}

/* The 6-bit scale and min of sub-block j of a Q4_K block (quant.c's q4k_scale_min). */
INLINE void q4k_sm(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Chunk c (elements 32c .. 32c+31) of a weight row of a block `type`, as two vectors. */
AVX512 INLINE void deq(int type, const uint8_t *row, int c, __m512 *lo, __m512 *hi) {
    const __m512i m4 = _mm512_set1_epi32(15);
    switch (type) {
    case REIN_TYPE_Q8_0: {
        const uint8_t *b = row + (int64_t)c * 34;
        __m512 d = _mm512_set1_ps(h2f(b));
        *lo = _mm512_mul_ps(cvt(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)))), d);
        *hi = _mm512_mul_ps(cvt(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)))), d);
        break;
    }
    /* The 4-bit formats: the block's 16 possible values, computed once as quant.c computes each
     * element, then looked up by nibble (vpermps reads only an index's low 4 bits). */
    case REIN_TYPE_Q4_0: {
        const uint8_t *b = row + (int64_t)c * 18;
        __m512 table = _mm512_mul_ps(_mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6,
                                                   -7, -8),
                                     _mm512_set1_ps(h2f(b)));
        __m512i q = u8x16(b + 2);
        *lo = _mm512_permutexvar_ps(q, table);
        *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
        break;
    }
    case REIN_TYPE_Q4_1: {
        const uint8_t *b = row + (int64_t)c * 20;
        __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(load_i32(b))); /* d, m */
        __m512 table = _mm512_add_ps(_mm512_mul_ps(_mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                                 5, 4, 3, 2, 1, 0),
                                                   _mm512_broadcastss_ps(dm)),
                                     _mm512_broadcastss_ps(_mm_movehdup_ps(dm)));
        __m512i q = u8x16(b + 4);
        *lo = _mm512_permutexvar_ps(q, table);
        *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
        break;
    }
    case REIN_TYPE_Q4_K: {
        const uint8_t *b = row + (int64_t)(c >> 3) * 144;
        int sub = c & 7, sc, mn;
        q4k_sm(sub, b + 4, &sc, &mn);
        __m512 d1 = _mm512_set1_ps(h2f(b) * sc), m1 = _mm512_set1_ps(h2f(b + 2) * mn);
        const uint8_t *q = b + 16 + 32 * (sub >> 1);
        __m512i a = u8x16(q), e = u8x16(q + 16);
        if (sub & 1) {
            a = _mm512_srli_epi32(a, 4);
            e = _mm512_srli_epi32(e, 4);
        } else {
            a = _mm512_and_si512(a, m4);
            e = _mm512_and_si512(e, m4);
        }
        *lo = _mm512_sub_ps(_mm512_mul_ps(d1, cvt(a)), m1);
        *hi = _mm512_sub_ps(_mm512_mul_ps(d1, cvt(e)), m1);
        break;
    }
    case REIN_TYPE_Q6_K: {
        const uint8_t *b = row + (int64_t)(c >> 3) * 210;
        int cc = c & 7, half = cc >> 2, qq = cc & 3;
        const uint8_t *ql = b + 64 * half + (qq & 1) * 32, *qh = b + 128 + 32 * half;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * half + 2 * qq;
        float d = h2f(b + 208);
        const __m512i three = _mm512_set1_epi32(3), off = _mm512_set1_epi32(32);
        __m512 out[2];
        for (int v = 0; v < 2; v++) {
            __m512i l = u8x16(ql + 16 * v), h = u8x16(qh + 16 * v);
            l = (qq >> 1) ? _mm512_srli_epi32(l, 4) : _mm512_and_si512(l, m4);
            h = _mm512_and_si512(_mm512_srl_epi32(h, _mm_cvtsi32_si128(2 * qq)), three);
            __m512i q = _mm512_sub_epi32(_mm512_or_si512(l, _mm512_slli_epi32(h, 4)), off);
            out[v] = _mm512_mul_ps(_mm512_set1_ps(d * sc[v]), cvt(q));
        }
        *lo = out[0];
        *hi = out[1];
        break;
    }
    default:
        REIN_ASSERT(0);
    }
}

/* Bytes of one chunk of 32 elements (the K formats: the mean over their block). */
INLINE int64_t chunk_bytes(int type) {
    switch (type) {
    case REIN_TYPE_Q8_0: return 34;
    case REIN_TYPE_Q4_0: return 18;
    case REIN_TYPE_Q4_1: return 20;
    case REIN_TYPE_Q4_K: return 18;
    default: return 26; /* Q6_K */
    }
}

/* out[i][q] = x row i . weight row q for nx (<= RN) activation rows and RW weight rows (rows
 * past the real ones point at a real row and are computed but not used). `next`, unless NULL, is
 * where the next tile's rows start: they are prefetched while this tile runs. */
AVX512 INLINE void tile(int type, int nx, const float *x, int K, const uint8_t *const *wr,
                        const uint8_t *next, float out[RN][RW]) {
    __m512 acc[RN][RW];
#pragma GCC unroll 4
    for (int i = 0; i < nx; i++)
#pragma GCC unroll 4
        for (int q = 0; q < RW; q++) acc[i][q] = _mm512_setzero_ps();
    const int nc = K / CH; /* whole chunks: the loader checks that rows hold whole blocks */
    const int64_t bytes = chunk_bytes(type);
    for (int c = 0; c < nc; c++) {
        __m512 wl[RW], wh[RW];
        if (next) /* the next tile's rows, as far through as this one is through its own */
            for (int64_t o = 0; o < RW * bytes; o += 64)
                _mm_prefetch((const char *)next + c * RW * bytes + o, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int q = 0; q < RW; q++) deq(type, wr[q], c, &wl[q], &wh[q]);
#pragma GCC unroll 4
        for (int i = 0; i < nx; i++) {
            const float *xi = x + (int64_t)i * K + c * CH;
            __m512 xl = _mm512_loadu_ps(xi), xh = _mm512_loadu_ps(xi + 16);
#pragma GCC unroll 4
            for (int q = 0; q < RW; q++) {
                acc[i][q] = _mm512_fmadd_ps(xl, wl[q], acc[i][q]);
                acc[i][q] = _mm512_fmadd_ps(xh, wh[q], acc[i][q]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nx; i++)
#pragma GCC unroll 4
        for (int q = 0; q < RW; q++) out[i][q] = _mm512_reduce_add_ps(acc[i][q]);
}

/* Rows [r0, r1) of one weight against every activation row. */
AVX512 INLINE void rows_generic(int type, const qjob *j, const rein_qweight *w, float *y, int r0,
                                int r1) {
    const int K = w->cols, M = w->rows;
    const uint8_t *base = w->data;
    float out[RN][RW];
    for (int r = r0; r < r1; r += RW) {
        int nr = REIN_MIN(RW, r1 - r);
        const uint8_t *wr[RW];
        for (int q = 0; q < RW; q++) wr[q] = base + (int64_t)(r + (q < nr ? q : 0)) * w->row_bytes;
        for (int i0 = 0; i0 < j->N; i0 += RN) {
            int nx = REIN_MIN(RN, j->N - i0);
            const float *x = j->x + (int64_t)i0 * K;
            /* the first pass over these rows prefetches the next RW (within the weight) */
            const uint8_t *nt = i0 == 0 && r + 2 * RW <= M ? base + (r + RW) * w->row_bytes : NULL;
            switch (nx) { /* constant row counts, so that the accumulators stay in registers */
            case 1: tile(type, 1, x, K, wr, nt, out); break;
            case 2: tile(type, 2, x, K, wr, nt, out); break;
            case 3: tile(type, 3, x, K, wr, nt, out); break;
            default: tile(type, 4, x, K, wr, nt, out); break;
            }
            for (int i = 0; i < nx; i++) {
                float *yo = y + (int64_t)(i0 + i) * M + r;
                for (int q = 0; q < nr; q++) yo[q] = j->acc ? yo[q] + out[i][q] : out[i][q];
            }
        }
    }
}

/* xt (kc, 16) = columns [k0, k0 + kc) of the n (<= 16) rows of x, K apart; lanes past n zero. */
AVX512 static void x_columns(float *xt, const float *x, int K, int n, int k0, int kc) {
    for (int k = 0; k < kc; k += 16) {
        const int nk = REIN_MIN(16, kc - k);
        const __mmask16 mk = (__mmask16)((1u << nk) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = _mm512_maskz_loadu_ps(i < n ? mk : 0, x + (int64_t)(i < n ? i : 0) * K + k0 + k);
        transpose16(r);
        for (int q = 0; q < nk; q++) _mm512_store_ps(xt + 16 * (k + q), r[q]);
    }
}

/* 16 elements (nk of them, the rest zero) of a row of F32, F16 or BF16 at p, exactly as f32. */
AVX512 INLINE __m512 load_float16(int type, const uint8_t *p, int nk) {
    if (type == REIN_TYPE_F32) return _mm512_maskz_loadu_ps((__mmask16)((1u << nk) - 1), p);
    __m256i h;
    if (nk == 16) {
        h = _mm256_loadu_si256((const __m256i *)p);
    } else {
        uint16_t t[16] = {0};
        memcpy(t, p, 2 * (size_t)nk);
        h = _mm256_loadu_si256((const __m256i *)t);
    }
    if (type == REIN_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* BF16 */
}

/* Float weights (F32, F16, BF16) at batch < 8: y rows [r, r + nr) (nr <= 16) for NX activation
 * rows, vectorized over the 16 weight rows (rb bytes apart, from w0): each 16 x 16 block of
 * weights is transposed in registers, then element k of the 16 rows is one vector, multiplied
 * into one sum per activation row. The same chains as float_by_x below, so either gives every
 * output the same bits, and the three types the same bits for the same values. `next` (or NULL):
 * the next 16 rows, prefetched meanwhile in address order (one line per row and step, 16 rows
 * apart, streams markedly slower). */
AVX512 INLINE void float_by_rows(int type, int NX, const float *x, int K, int span,
                                 const uint8_t *w0, int64_t rb, int nr, const uint8_t *next,
                                 float *y, int M, int from_y) {
    const int es = type == REIN_TYPE_F32 ? 4 : 2;
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    __m512 tot[4], sum[4];
#pragma GCC unroll 4
    for (int i = 0; i < NX; i++)
        tot[i] = from_y ? _mm512_maskz_loadu_ps(rows, y + (int64_t)i * M) : _mm512_setzero_ps();
    const uint8_t *pf = next, *pf_end = next ? next + 16 * rb : NULL;
    for (int s0 = 0; s0 < K; s0 += span) {
        const int s1 = REIN_MIN(K, s0 + span);
#pragma GCC unroll 4
        for (int i = 0; i < NX; i++) sum[i] = _mm512_setzero_ps();
        for (int k = s0; k < s1; k += 16) {
            const int nk = REIN_MIN(16, s1 - k);
            __m512 b[16];
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) {
                if (pf < pf_end) _mm_prefetch((const char *)pf, _MM_HINT_T0);
                pf += 64;
                b[q] = load_float16(type, w0 + (q < nr ? q : 0) * rb + (int64_t)k * es, nk);
            }
            transpose16(b);
            const float *xk = x + k;
#define FMA_COLUMN(c)                                                                          \
    _Pragma("GCC unroll 4") for (int i = 0; i < NX; i++)                                       \
        sum[i] = _mm512_fmadd_ps(_mm512_set1_ps(xk[(int64_t)i * K + (c)]), b[c], sum[i])
            if (nk == 16) {
#pragma GCC unroll 16
                for (int c = 0; c < 16; c++) FMA_COLUMN(c);
            } else {
                for (int c = 0; c < nk; c++) FMA_COLUMN(c);
            }
#undef FMA_COLUMN
        }
#pragma GCC unroll 4
        for (int i = 0; i < NX; i++) tot[i] = _mm512_add_ps(tot[i], sum[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + (int64_t)i * M, rows, tot[i]);
}

/* Float weights, vectorized over activation rows (16 lanes: up to 16 rows of x) rather than the
 * reduction: each weight element is the broadcast operand of one FMA, so nothing is transposed or
 * reduced, and batched decoding fills every lane. Each output is one FMA chain per span of the
 * reduction (qpack_span), summed from zero and added to y span by span: the order of the packed
 * kernels and of the prefill GEMM. A task transposes up to XV_K columns of its x rows at a time
 * and walks its weight rows eight at a time (F16 and BF16 converted to f32 first), prefetching
 * the next eight in address order. */
AVX512 INLINE void float_by_x(int type, const qjob *j, const rein_qweight *w, float *y, int r0,
                              int r1) {
    enum { RX = 8, XV_K = 1024 };
    float xt[16 * XV_K] __attribute__((aligned(64)));     /* 64 KiB */
    float wf[RX][XV_K] __attribute__((aligned(64)));      /* 32 KiB: F16, BF16 rows as f32 */
    const int K = w->cols, M = w->rows, span = qpack_span(K), chunk = XV_K / span * span;
    const int64_t rb = w->row_bytes, es = type == REIN_TYPE_F32 ? 4 : 2;
    float buf[RX][16] __attribute__((aligned(64)));
    for (int i0 = 0; i0 < j->N; i0 += 16) {
        const int n = REIN_MIN(16, j->N - i0);
        const float *x = j->x + (int64_t)i0 * K;
        float *yi = y + (int64_t)i0 * M;
        for (int k0 = 0; k0 < K; k0 += chunk) {
            const int kc = REIN_MIN(chunk, K - k0), from_y = k0 > 0 || j->acc;
            if (n > 1) x_columns(xt, x, K, n, k0, kc);
            for (int r = r0; r < r1; r += RX) {
                const int nr = REIN_MIN(RX, r1 - r);
                const uint8_t *row0 = (const uint8_t *)w->data + (int64_t)r * rb + k0 * es;
                const float *wq[RX];
                for (int q = 0; q < RX; q++) {
                    const uint8_t *wr = row0 + (q < nr ? q : 0) * rb;
                    if (type == REIN_TYPE_F32) {
                        wq[q] = (const float *)wr;
                        continue;
                    }
                    for (int k = 0; k < kc; k += 16)
                        _mm512_storeu_ps(wf[q] + k, load_float16(type, wr + k * es,
                                                                 REIN_MIN(16, kc - k)));
                    wq[q] = wf[q];
                }
                const uint8_t *next = r + 2 * RX <= r1 ? row0 + RX * rb : NULL;
                __m512 tot[RX];
                for (int q = 0; q < RX; q++) {
                    for (int i = 0; i < 16; i++)
                        buf[q][i] = from_y && i < n && q < nr ? yi[(int64_t)i * M + r + q] : 0.0f;
                    tot[q] = _mm512_load_ps(buf[q]);
                }
                int pr = 0, pc = 0; /* the next rows' prefetch, row by row through the chunk */
                for (int s0 = 0; s0 < kc; s0 += span) {
                    const int s1 = REIN_MIN(kc, s0 + span);
                    __m512 acc[RX];
#pragma GCC unroll 8
                    for (int q = 0; q < RX; q++) acc[q] = _mm512_setzero_ps();
                    for (int k = s0; k < s1; k++) {
                        if (next && !(k & 15))
#pragma GCC unroll 8
                            for (int q = 0; q < RX && pr < RX; q++) {
                                _mm_prefetch((const char *)next + pr * rb + pc, _MM_HINT_T0);
                                if ((pc += 64) >= kc * es) pc = 0, pr++;
                            }
                        const __m512 xv =
                            n > 1 ? _mm512_load_ps(xt + 16 * k) : _mm512_set1_ps(x[k0 + k]);
#pragma GCC unroll 8
                        for (int q = 0; q < RX; q++)
                            acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(wq[q][k]), xv, acc[q]);
                    }
#pragma GCC unroll 8
                    for (int q = 0; q < RX; q++) tot[q] = _mm512_add_ps(tot[q], acc[q]);
                }
#pragma GCC unroll 8
                for (int q = 0; q < RX; q++) _mm512_store_ps(buf[q], tot[q]);
                for (int i = 0; i < n; i++)
                    for (int q = 0; q < nr; q++) yi[(int64_t)i * M + r + q] = buf[q][i];
            }
        }
    }
}

/* Float weights: by activation rows from batch 8 on, else by weight rows, 16 at a time. */
AVX512 INLINE void rows_float(int type, const qjob *j, const rein_qweight *w, float *y, int r0,
                              int r1) {
    if (j->N >= 8) {
        float_by_x(type, j, w, y, r0, r1);
        return;
    }
    const int K = w->cols, M = w->rows, span = qpack_span(K);
    const int64_t rb = w->row_bytes;
    for (int i0 = 0; i0 < j->N;) {
        const int nx = j->N - i0 >= 4 ? 4 : j->N - i0 >= 2 ? 2 : 1;
        const float *x = j->x + (int64_t)i0 * K;
        for (int r = r0; r < r1; r += 16) {
            const int nr = REIN_MIN(16, r1 - r);
            const uint8_t *w0 = (const uint8_t *)w->data + r * rb;
            const uint8_t *next = r + 32 <= r1 ? w0 + 16 * rb : NULL;
            float *yo = y + (int64_t)i0 * M + r;
            switch (nx) { /* constant row counts, so that the sums stay in registers */
            case 4: float_by_rows(type, 4, x, K, span, w0, rb, nr, next, yo, M, j->acc); break;
            case 2: float_by_rows(type, 2, x, K, span, w0, rb, nr, next, yo, M, j->acc); break;
            default: float_by_rows(type, 1, x, K, span, w0, rb, nr, next, yo, M, j->acc); break;
            }
        }
        i0 += nx;
    }
}

#define ROWS_FN(T, name)                                                                       \
    AVX512 static void rows_##name(const qjob *j, const rein_qweight *w, float *y, int r0,     \
                                   int r1) {                                                   \
        rows_generic(T, j, w, y, r0, r1);                                                      \
    }
#define FLOAT_FN(T, name)                                                                      \
    AVX512 static void rows_##name(const qjob *j, const rein_qweight *w, float *y, int r0,     \
                                   int r1) {                                                   \
        rows_float(T, j, w, y, r0, r1);                                                        \
    }
FLOAT_FN(REIN_TYPE_F32, f32)
FLOAT_FN(REIN_TYPE_F16, f16)
FLOAT_FN(REIN_TYPE_BF16, bf16)
ROWS_FN(REIN_TYPE_Q8_0, q8_0)
ROWS_FN(REIN_TYPE_Q4_0, q4_0)
ROWS_FN(REIN_TYPE_Q4_1, q4_1)
ROWS_FN(REIN_TYPE_Q4_K, q4_k)
ROWS_FN(REIN_TYPE_Q6_K, q6_k)

static void rows_avx512(const qjob *j, const rein_qweight *w, float *y, int r0, int r1) {
    switch (w->type) {
    case REIN_TYPE_F32: rows_f32(j, w, y, r0, r1); break;
    case REIN_TYPE_F16: rows_f16(j, w, y, r0, r1); break;
    case REIN_TYPE_BF16: rows_bf16(j, w, y, r0, r1); break;
    case REIN_TYPE_Q8_0: rows_q8_0(j, w, y, r0, r1); break;
    case REIN_TYPE_Q4_0: rows_q4_0(j, w, y, r0, r1); break;
    case REIN_TYPE_Q4_1: rows_q4_1(j, w, y, r0, r1); break;
    case REIN_TYPE_Q4_K: rows_q4_k(j, w, y, r0, r1); break;
    case REIN_TYPE_Q6_K: rows_q6_k(j, w, y, r0, r1); break;
    default: REIN_ASSERT(0);
    }
}
#endif /* __x86_64__ */

/* The rows of one weight, [r0, r1), against every activation row. */
static void weight_rows(const qjob *j, int i, int r0, int r1) {
    const rein_qweight *w = &j->w[i];
#if defined(__x86_64__)
    if (j->xq && w->packed_int8) {
        qvnni_rows(w, j->xq, j->N, j->y[i], j->acc, r0 / QPACK_G, (r1 + QPACK_G - 1) / QPACK_G);
        return;
    }
    if (j->fast && w->packed) {
        qpack_rows(w, j->x, j->N, j->y[i], j->acc, r0 / QPACK_G, (r1 + QPACK_G - 1) / QPACK_G);
        return;
    }
    if (j->fast) {
        rows_avx512(j, w, j->y[i], r0, r1);
        return;
    }
#endif
    rows_portable(j, w, j->y[i], r0, r1);
}

static void qtask(void *ctx, int t, int n_tasks) {
    const qjob *j = ctx;
    const int64_t b = (int64_t)t * j->per, e = b + j->per;
    for (int i = 0; i < j->n_w; i++) {
        int64_t r0 = REIN_MAX(b, j->start[i]) - j->start[i];
        int64_t r1 = REIN_MIN(e, j->start[i + 1]) - j->start[i];
        r1 = REIN_MIN(r1, j->w[i].rows);
        if (r0 < r1) weight_rows(j, i, (int)r0, (int)r1);
    }
}

/* x quantized for the int8 mode, task p of n the p-th stretch of its blocks (block c of all rows
 * is one contiguous stretch of each array, so no two tasks write one cache line). */
typedef struct quant_job {
    const float *x;
    int K;
    const qvnni_x *xq;
} quant_job;

static void quant_task(void *ctx, int p, int n) {
    const quant_job *q = ctx;
    const int nb = q->xq->nb;
    qvnni_quantize_blocks(q->x, q->K, q->xq, p * nb / n, (p + 1) * nb / n);
}

void rein_qmatmul_nt_multi(float *const *y, const float *x, const rein_qweight *w, int n_w, int N,
                           int accumulate) {
    REIN_ASSERT(n_w >= 1 && n_w <= MAX_W);
    if (N <= 0) return;
    qjob j = {.y = y, .x = x, .w = w, .n_w = n_w, .N = N, .acc = accumulate};
    int64_t align = RW;
    for (int i = 0; i < n_w; i++) {
        if (w[i].packed || w[i].packed_int8) align = QPACK_G;
        REIN_ASSERT(rein_qmatmul_supports(w[i].type) && w[i].cols == w[0].cols);
        REIN_ASSERT(w[i].cols % rein_type_block_size(w[i].type) == 0);
    }
    j.start[0] = 0;
    for (int i = 0; i < n_w; i++)
        j.start[i + 1] = j.start[i] + (w[i].rows + align - 1) / align * align;
    if (w[0].cols == 0) { /* an empty reduction */
        for (int i = 0; i < n_w && !accumulate; i++)
            memset(y[i], 0, sizeof(float) * (size_t)N * (size_t)w[i].rows);
        return;
    }
    /* two tasks a thread over all the weights' rows, in whole tiles (whole groups of a repacked
     * weight), at least 16 rows each: a task's first bytes come before its prefetching does, so
     * fewer tasks stream better (measured against four and eight), and a second one each still
     * evens out the end */
    const int64_t total = j.start[n_w];
    const int nt = rein_get_threads();
    int64_t per = (total + 2 * nt - 1) / (2 * nt);
    per = REIN_MAX(16, (per + align - 1) / align * align);
    j.per = per;
    j.fast = rein_kernels_use_avx512();
    /* the int8 mode: x quantized once for all the weights of the call that read it (when the
     * buffer cannot be had, the exact path runs) */
    void *xmem = NULL;
    qvnni_x xq;
    int int8 = 0;
    for (int i = 0; i < n_w; i++) int8 |= w[i].packed_int8 != NULL;
    if (int8 && rein_qmatmul_int8())
        xmem = rein_malloc_aligned(qvnni_x_size(N, w[0].cols), 64);
    if (xmem) {
        /* a batch is quantized on all the threads, one stretch of blocks each: 1-5% faster at
         * batch 16 on 2 threads (best of 6 runs; at the edge of this machine's noise). A row a
         * thread was slower than one thread: a row's blocks interleave with the other rows'. */
        qvnni_layout(xmem, N, w[0].cols, &xq);
        j.xq = &xq;
        quant_job qj = {x, w[0].cols, &xq};
        rein_parallel_for(N > 1 ? REIN_MIN(nt, xq.nb) : 1, quant_task, &qj);
    }
    rein_parallel_for((int)((total + per - 1) / per), qtask, &j);
    rein_free_aligned(xmem);
}

void rein_qmatmul_nt(float *y, const float *x, const rein_qweight *w, int N, int accumulate) {
    rein_qmatmul_nt_multi(&y, x, w, 1, N, accumulate);
}
