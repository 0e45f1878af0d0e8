/* qpack.c - Q8_0, Q4_1 and F32 weights repacked for decoding, and the AVX-512 kernel that reads them.
 *
 * Decoding streams every weight once per token, so its speed is the rate at which the kernel turns
 * weight bytes into products. In the file's layout a kernel must read several rows at once, 34 or
 * 20 bytes of each at a time, and end every output with a horizontal sum; here each weight is
 * copied once, at load time, into groups of QPACK_G = 16 rows interleaved element by element, so
 * that one vector holds one element of 16 rows and a group is one stream of bytes. For each group
 * and each block of 32 columns, in order:
 *   Q8_0 (544 bytes): the 16 rows' f16 scales d, then for k = 0..31 the 16 rows' int8 q[k];
 *   Q4_1 (320 bytes): the 16 rows' f16 d, their f16 m, then for j = 0..15 16 bytes, byte r holding
 *                     row r's elements 2j (low nibble) and 2j + 1 (high);
 *   F32 (2048 bytes): for k = 0..31 the 16 rows' values (without the copy, a kernel reading rows
 *                     must transpose them in registers to keep the order of the sums below, and
 *                     at batch 1 on one thread that work, not memory, set the speed).
 * Rows past the end of the weight are zero. The values are the file's, moved, never requantized.
 * The copy lives in huge pages where the system gives them: a token reads all of it, and with
 * 4 KiB pages every 4 KiB would cost a TLB miss.
 *
 * The kernel dequantizes element k of 16 rows into one vector exactly as quant.c does (q * d, or
 * q * d + m, no contraction) and multiplies it into one sum per activation row:
 *   sum[i] = fma(x[i][k], w[k], sum[i])  for k in order through a span (qpack_span), from zero,
 * and adds each span's sum to y (to zero first unless accumulating): the spans and the order of
 * the prefill GEMM, which reads the same values dequantized, so both paths round alike. That chain
 * is the same whatever N, the tile, the thread or the task, so each output row has the same bits
 * as it would alone. At batch 1 a tile runs four groups side by side (four independent chains); at
 * batch 16 one dequantized vector feeds 16 activation rows, so each weight element is dequantized
 * once per call. While a tile runs, the next tile's bytes are prefetched in address order, as far
 * through as the tile is through its own (a few KB ahead in each group's stream instead read
 * markedly slower, and one thread most of all).
 *
 * This is the exact mode's layout. rein_qmatmul_pack, here, also makes the int8 mode's
 * (qpack_vnni.c) when that mode is on: each in a field of its own (packed, packed_int8), so a copy
 * is never read as the other.
 */
#include "kernels/qpack.h"
#include "base/base.h"
#include "kernels/qpack_vnni.h"
#include "kernels/quant.h"
#include "kernels/vtranspose.h"

#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BLK 32

static int64_t packed_block_bytes(int type) {
    switch (type) {
    case REIN_TYPE_Q8_0: return 2 * QPACK_G + BLK * QPACK_G;     /* 544 */
    case REIN_TYPE_Q4_1: return 4 * QPACK_G + BLK * QPACK_G / 2; /* 320 */
    case REIN_TYPE_F32: return 4 * BLK * QPACK_G;                /* 2048 */
    default: return 0;
    }
}

size_t qpack_size(const rein_qweight *w) {
    int64_t bb = packed_block_bytes(w->type);
    if (!bb || w->cols % BLK) return 0;
    /* F32 is read unpacked as well (rows_float, qmatmul.c), in spans of qpack_span elements: the
     * packed copy's spans, whole blocks, must be the same ones */
    if (w->type == REIN_TYPE_F32 && qpack_span(w->cols) % BLK) return 0;
    int64_t groups = (w->rows + QPACK_G - 1) / QPACK_G;
    return (size_t)(groups * (w->cols / BLK) * bb);
}

/* Element k (0..31) of a Q4_1 block's 16 bytes of nibbles: the low nibbles hold 0..15, the high
 * ones 16..31. */
static int nibble(const uint8_t *qs, int k) {
    return k < 16 ? qs[k] & 15 : qs[k - 16] >> 4;
}

#if defined(__x86_64__)
/* F32's copy, 16 x 16 blocks transposed in registers (a scalar copy of 540 MB, the F32 model's
 * weights, took over a second on one thread). */
__attribute__((target("avx512f"))) static void write_f32(const rein_qweight *w, void *dst) {
    const int nb = w->cols / BLK, ng = (w->rows + QPACK_G - 1) / QPACK_G;
    float *o = dst;
    for (int g = 0; g < ng; g++)
        for (int c = 0; c < nb; c++)
            for (int half = 0; half < 2; half++, o += 16 * QPACK_G) {
                __m512 r[16];
                for (int i = 0; i < 16; i++) {
                    const int64_t row = (int64_t)g * QPACK_G + i;
                    r[i] = row < w->rows ? _mm512_loadu_ps((const float *)((const uint8_t *)w->data +
                                                                         row * w->row_bytes) +
                                                           c * BLK + 16 * half)
                                         : _mm512_setzero_ps();
                }
                transpose16(r);
                for (int k = 0; k < 16; k++) _mm512_store_ps(o + QPACK_G * k, r[k]);
            }
}
#endif

void qpack_write(const rein_qweight *w, void *dst) {
#if defined(__x86_64__)
    if (w->type == REIN_TYPE_F32) {
        write_f32(w, dst);
        return;
    }
#endif
    REIN_ASSERT(w->type != REIN_TYPE_F32); /* packed only where the AVX-512 kernels run */
    const int64_t bb = packed_block_bytes(w->type), sb = (int64_t)rein_type_block_bytes(w->type);
    const int nb = w->cols / BLK, ng = (w->rows + QPACK_G - 1) / QPACK_G;
    for (int g = 0; g < ng; g++) {
        for (int c = 0; c < nb; c++) {
            uint8_t *o = (uint8_t *)dst + ((int64_t)g * nb + c) * bb;
            memset(o, 0, (size_t)bb);
            for (int r = 0; r < QPACK_G && g * QPACK_G + r < w->rows; r++) {
                const int64_t row = (int64_t)g * QPACK_G + r;
                const uint8_t *b = (const uint8_t *)w->data + row * w->row_bytes + c * sb;
                memcpy(o + 2 * r, b, 2); /* d */
                if (w->type == REIN_TYPE_Q8_0) {
                    for (int k = 0; k < BLK; k++) o[2 * QPACK_G + QPACK_G * k + r] = b[2 + k];
                } else {
                    memcpy(o + 2 * QPACK_G + 2 * r, b + 2, 2); /* m */
                    for (int j = 0; j < BLK / 2; j++) o[4 * QPACK_G + QPACK_G * j + r] =
                        (uint8_t)(nibble(b + 4, 2 * j) | nibble(b + 4, 2 * j + 1) << 4);
                }
            }
        }
    }
}

typedef struct pack_job {
    rein_qweight *w;
    uint8_t *block;
    const size_t *off; /* (n) each weight's place in block, or SIZE_MAX */
    int int8;          /* the int8 mode's layout (qpack_vnni.c), else this file's */
} pack_job;

static void pack_task(void *ctx, int i, int n) {
    pack_job *j = ctx;
    if (j->off[i] == SIZE_MAX) return;
    uint8_t *at = j->block + j->off[i];
    if (j->int8) {
        qvnni_write(&j->w[i], at);
        j->w[i].packed_int8 = at;
    } else {
        qpack_write(&j->w[i], at);
        j->w[i].packed = at;
    }
}

rein_status rein_qmatmul_pack(rein_qweight *w, int n, void **block) {
    enum { HUGE_PAGE = 2 << 20 };
    *block = NULL;
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl")) return REIN_OK;
#else
    return REIN_OK; /* only the AVX-512 kernels read packed copies */
#endif
    const int int8 = rein_qmatmul_int8();
    size_t *off = rein_malloc(sizeof(size_t) * (size_t)(n ? n : 1)), total = 0;
    if (!off) return REIN_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        const int has = int8 ? w[i].packed_int8 != NULL : w[i].packed != NULL;
        size_t b = has ? 0 : int8 ? qvnni_size(&w[i]) : qpack_size(&w[i]);
        off[i] = b ? total : SIZE_MAX;
        total += (b + 63) / 64 * 64;
    }
    if (total) {
        /* a large copy in whole huge pages: the block is the allocation, the weights start at its
         * first huge page boundary */
        const size_t align = total >= HUGE_PAGE ? HUGE_PAGE : 64;
        total = (total + align - 1) / align * align;
        *block = rein_malloc(total + align);
        if (!*block) {
            rein_free(off);
            return REIN_ERR_NOMEM;
        }
        uint8_t *at = (uint8_t *)(((uintptr_t)*block + align - 1) / align * align);
        if (align == HUGE_PAGE) madvise(at, total, MADV_HUGEPAGE); /* a hint */
        pack_job j = {w, at, off, int8};
        rein_parallel_for(n, pack_task, &j);
    }
    rein_free(off);
    return REIN_OK;
}

void rein_qmatmul_pack_free(void *block) {
    rein_free(block);
}

int qpack_span(int K) {
    const int n = (K + QPACK_SPAN - 1) / QPACK_SPAN;
    return REIN_MAX(1, REIN_MIN(QPACK_SPAN, ((K + n - 1) / n + 1) / 2 * 2));
}

/* The blocks of one span of a packed weight (a span of whole blocks). */
static int span_blocks(int nb) {
    return REIN_MAX(1, qpack_span(nb * BLK) / BLK);
}

#if defined(__x86_64__)

#define AVX512 __attribute__((target("avx512f,avx512vl,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* Groups p < NP starting at pk (gs bytes apart) against activation rows i < NX of x (rows K
 * apart): y rows row0 + 16p .. (of M; those past M are neither read nor written). The products of
 * each span are summed from zero in sum[], then added to tot[] (which starts from y when
 * accumulating), in registers for 8 or fewer outputs, else in an L1 buffer (the 16 partial sums
 * take the registers). */
AVX512 INLINE void tile(int type, const uint8_t *pk, int64_t gs, int nb, int span, const float *x,
                        int K, int NX, int NP, float *y, int M, int row0, int accumulate) {
    const int64_t bb = packed_block_bytes(type);
    const int NA = NX * NP, in_regs = NA <= 8;
    __m512 tot[8], sum[16];
    float buf[16][16] __attribute__((aligned(64)));
    __mmask16 mk[4];
#pragma GCC unroll 4
    for (int p = 0; p < NP; p++) {
        int n = REIN_MAX(0, REIN_MIN(QPACK_G, M - row0 - QPACK_G * p));
        mk[p] = (__mmask16)((1u << n) - 1);
    }
#pragma GCC unroll 16
    for (int a = 0; a < NA; a++) {
        const int i = a / NP, p = a % NP;
        const float *yo = y + (int64_t)i * M + row0 + QPACK_G * p;
        __m512 v = accumulate ? _mm512_maskz_loadu_ps(mk[p], yo) : _mm512_setzero_ps();
        if (in_regs) tot[a] = v;
        else _mm512_store_ps(buf[a], v);
        sum[a] = _mm512_setzero_ps();
    }
    for (int c = 0, left = span; c < nb; c++) {
        const float *xc = x + c * BLK;
        __m512 d[8], m[8];
#pragma GCC unroll 8
        for (int p = 0; p < NP; p++) {
            const uint8_t *b = pk + p * gs + c * bb;
            /* the next tile's groups, in address order, as far as this tile is through its own */
            const uint8_t *nt = pk + NP * gs + (c * NP + p) * bb;
#pragma GCC unroll 16
            for (int64_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)nt + o, _MM_HINT_T0);
            if (type == REIN_TYPE_F32) continue;
            d[p] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
            if (type == REIN_TYPE_Q4_1)
                m[p] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 2 * QPACK_G)));
        }
        if (type == REIN_TYPE_F32) {
            for (int k = 0; k < BLK; k++) {
#pragma GCC unroll 8
                for (int p = 0; p < NP; p++) {
                    const __m512 w = _mm512_load_ps((const float *)(pk + p * gs + c * bb) + QPACK_G * k);
#pragma GCC unroll 16
                    for (int i = 0; i < NX; i++)
                        sum[i * NP + p] = _mm512_fmadd_ps(_mm512_set1_ps(xc[(int64_t)i * K + k]), w,
                                                          sum[i * NP + p]);
                }
            }
        } else if (type == REIN_TYPE_Q8_0) {
            for (int k = 0; k < BLK; k++) {
#pragma GCC unroll 8
                for (int p = 0; p < NP; p++) {
                    const uint8_t *q = pk + p * gs + c * bb + 2 * QPACK_G + QPACK_G * k;
                    __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q));
                    __m512 w = _mm512_mul_ps(_mm512_cvtepi32_ps(v), d[p]);
#pragma GCC unroll 16
                    for (int i = 0; i < NX; i++)
                        sum[i * NP + p] = _mm512_fmadd_ps(_mm512_set1_ps(xc[(int64_t)i * K + k]), w,
                                                          sum[i * NP + p]);
                }
            }
        } else {
            const __m512i m4 = _mm512_set1_epi32(15);
            for (int j = 0; j < BLK / 2; j++) {
#pragma GCC unroll 8
                for (int p = 0; p < NP; p++) {
                    const uint8_t *q = pk + p * gs + c * bb + 4 * QPACK_G + QPACK_G * j;
                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q));
                    __m512 lo = _mm512_add_ps(
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, m4)), d[p]), m[p]);
                    __m512 hi = _mm512_add_ps(
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), d[p]), m[p]);
#pragma GCC unroll 16
                    for (int i = 0; i < NX; i++) {
                        __m512 *s = &sum[i * NP + p];
                        const float *xk = xc + (int64_t)i * K + 2 * j;
                        *s = _mm512_fmadd_ps(_mm512_set1_ps(xk[0]), lo, *s);
                        *s = _mm512_fmadd_ps(_mm512_set1_ps(xk[1]), hi, *s);
                    }
                }
            }
        }
        if (--left && c + 1 < nb) continue; /* the span goes on */
        left = span;
#pragma GCC unroll 16
        for (int a = 0; a < NA; a++) {
            if (in_regs) tot[a] = _mm512_add_ps(tot[a], sum[a]);
            else _mm512_store_ps(buf[a], _mm512_add_ps(_mm512_load_ps(buf[a]), sum[a]));
            sum[a] = _mm512_setzero_ps();
        }
    }
#pragma GCC unroll 16
    for (int a = 0; a < NA; a++) {
        const int i = a / NP, p = a % NP;
        _mm512_mask_storeu_ps(y + (int64_t)i * M + row0 + QPACK_G * p, mk[p],
                              in_regs ? tot[a] : _mm512_load_ps(buf[a]));
    }
}

/* Groups [g0, g1) against activation rows [0, N): tiles of 16, 8, 4, 2 or 1 rows by as many
 * groups side by side as the registers allow (at batch 1 and 2 four, a task's last ones three or
 * two, as even as they go: a group alone is one chain, bound by the FMA's latency). */
AVX512 INLINE void rows_of(int type, const rein_qweight *w, const float *x, int N, float *y,
                           int accumulate, int g0, int g1) {
    const int K = w->cols, M = w->rows, nb = K / BLK, span = span_blocks(nb);
    const int64_t gs = nb * packed_block_bytes(type);
    for (int i0 = 0; i0 < N;) {
        const int left = N - i0;
        const int nx = left >= 16 ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        const int most = nx >= 16 ? 1 : nx >= 4 ? 2 : 4;
        const float *xi = x + (int64_t)i0 * K;
        float *yi = y + (int64_t)i0 * M;
        for (int g = g0; g < g1;) {
            const int np = qpack_tile_groups(g1 - g, most);
            const uint8_t *pk = (const uint8_t *)w->packed + g * gs;
            const int r0 = g * QPACK_G;
#define TILE(NX, NP) tile(type, pk, gs, nb, span, xi, K, NX, NP, yi, M, r0, accumulate)
            switch (nx * 16 + np) { /* constant shapes, so that the sums stay in registers */
            case 16 * 16 + 1: TILE(16, 1); break;
            case 8 * 16 + 2: TILE(8, 2); break;
            case 8 * 16 + 1: TILE(8, 1); break;
            QPACK_SMALL_TILES(TILE);
            }
#undef TILE
            g += np;
        }
        i0 += nx;
    }
}

AVX512 static void rows_q8_0(const rein_qweight *w, const float *x, int N, float *y, int acc,
                             int g0, int g1) {
    rows_of(REIN_TYPE_Q8_0, w, x, N, y, acc, g0, g1);
}

AVX512 static void rows_q4_1(const rein_qweight *w, const float *x, int N, float *y, int acc,
                             int g0, int g1) {
    rows_of(REIN_TYPE_Q4_1, w, x, N, y, acc, g0, g1);
}

AVX512 static void rows_f32(const rein_qweight *w, const float *x, int N, float *y, int acc,
                            int g0, int g1) {
    rows_of(REIN_TYPE_F32, w, x, N, y, acc, g0, g1);
}

void qpack_rows(const rein_qweight *w, const float *x, int N, float *y, int accumulate, int g0,
                int g1) {
    if (w->type == REIN_TYPE_Q8_0) rows_q8_0(w, x, N, y, accumulate, g0, g1);
    else if (w->type == REIN_TYPE_Q4_1) rows_q4_1(w, x, N, y, accumulate, g0, g1);
    else rows_f32(w, x, N, y, accumulate, g0, g1);
}

#else

void qpack_rows(const rein_qweight *w, const float *x, int N, float *y, int accumulate, int g0,
                int g1) {
    REIN_ASSERT(0); /* packed copies are read by the AVX-512 kernels only */
}

#endif
