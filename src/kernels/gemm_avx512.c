/* gemm_avx512.c - the AVX-512 kernels of the blocked product (gemm.h), f32 and BF16.
 *
 * A task owns a chunk of rows of y and a group of panels of 32 columns (at most NCP when it packs
 * them; every panel when f32 panels are read in place from B's own rows, NN and TN). For each
 * block of the reduction it packs its panels of B once (W^T transposed in 16 x 16 register
 * blocks), so that one reduction step of a panel is two 16-wide loads, then walks its rows in
 * blocks of MC, and multiplies each block by every panel, 8 rows at a time into 16 accumulator
 * registers (8 rows x 32 columns); with panels in place, row blocks are the outer loop instead
 * (task_f32). Each block of the reduction is summed from zero and added to y afterwards, so
 * products are rounded at the size of a dot product, not of what y already holds (a large
 * residual stream).
 *
 * f32: rows of A that are contiguous in the reduction (NT, NN) are read in place, a broadcast per
 * row and step; A read across rows (TN: dW = dY^T X, where a step of the reduction jumps a whole
 * row of dY, 196 KB for the output head) is packed per row block into (k, 8) micro-panels, so the
 * kernel never walks a page per step.
 *
 * BF16 (rein_matmul_set_bf16): both operands are rounded to bfloat16 (round to nearest even) while
 * they are packed, as pairs along the reduction, and `vdpbf16ps` adds the two products of a pair
 * into f32 accumulators: twice the f32 peak, with the f32 accumulation of f32 products. The packing
 * is the only extra work; the master values stay f32.
 */
#include "kernels/gemm.h"
#include "base/base.h"
#include "kernels/vtranspose.h"

#include <string.h>

/* f32 panels read in place from B's rows (NN, TN; task_f32) need no pack buffer: a task may take
 * every panel, so that it reads its rows of A once. */
static int panels_in_place(const rein_gemm *g) {
    return !g->bf16 && g->b_cs == 1 && g->cols % 32 == 0;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define PANEL 32 /* columns of B per packed panel: two 16-wide vectors */
#define MR 8     /* rows of A per micro-kernel call */
#define MC 128   /* rows of A per block */
#define NCP 12   /* panels per task at most */
#define KC 256   /* f32 reduction block: a packed panel is 32 KiB, kept in L1 */
#define KCB 512  /* BF16 reduction block (256 pairs): the same 32 KiB */

#define AVX512 __attribute__((target("avx512f,avx512vl,fma")))
#define AVX512BF __attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16,fma")))
#define INLINE static inline __attribute__((always_inline))

/* ---- shared ---------------------------------------------------------------------------------- */

/* y rows [i0, i0 + rows) x panel columns [c0, c0 + cols) (+)= acc. */
AVX512 INLINE void store_tile(const rein_gemm *g, int i0, int rows, int c0, int cols, int add,
                              __m512 acc[MR][2]) {
    __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
    __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
    float *yb = g->y + (int64_t)i0 * g->ldy + c0;
    for (int r = 0; r < rows; r++) {
        float *y0 = yb + r * g->ldy;
        if (add) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(m0, y0));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(m1, y0 + 16));
        }
        _mm512_mask_storeu_ps(y0, m0, acc[r][0]);
        _mm512_mask_storeu_ps(y0 + 16, m1, acc[r][1]);
    }
}

/* Fetch the y tile a micro-kernel call will add to or store, while it computes. */
INLINE void prefetch_tile(const rein_gemm *g, int i0, int rows, int c0) {
    const float *yb = g->y + (int64_t)i0 * g->ldy + c0;
    for (int r = 0; r < rows; r++) {
        _mm_prefetch((const char *)(yb + r * g->ldy), _MM_HINT_T0);
        _mm_prefetch((const char *)(yb + r * g->ldy + 16), _MM_HINT_T0);
    }
}

/* The reduction in blocks of at most `most`, all but the last of one even length, so that no small
 * remainder block costs a pass over y of its own (576 = 288 + 288, not 256 + 256 + 64). */
static int block_len(int red, int most) {
    int n = (red + most - 1) / most;
    return REIN_MIN(most, ((red + n - 1) / n + 1) & ~1);
}

/* The task's rows [*i_begin, *i_end) and panels [*p0, *p1). */
static void task_range(const rein_gemm *g, int t, int *i_begin, int *i_end, int *p0, int *p1) {
    int pt = t / g->n_row_chunks, rc = t % g->n_row_chunks;
    *i_begin = rc * g->row_chunk;
    *i_end = REIN_MIN(g->rows, *i_begin + g->row_chunk);
    *p0 = pt * g->panels_per_task;
    *p1 = REIN_MIN(g->n_panels, *p0 + g->panels_per_task);
}

/* ---- f32 ------------------------------------------------------------------------------------- */

/* acc(rows, 32) += A[rows, 0:kc] @ panel[kc, 32], A(r, k) = a[r * rs + k * ks]; rows <= MR.
 * Inlined with constant strides (in place: ks == 1; packed: rs == 1, ks == MR), so that the
 * accumulators stay in registers. */
AVX512 INLINE void micro_f32(const float *a, int64_t rs, int64_t ks, int rows, const float *panel,
                             int64_t ldp, int kc, __m512 acc[MR][2]) {
    const float *ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : 0) * rs;
    if (rows == MR) {
        for (int k = 0; k < kc; k++) {
            __m512 b0 = _mm512_loadu_ps(panel + k * ldp);
            __m512 b1 = _mm512_loadu_ps(panel + k * ldp + 16);
#define ROW(r)                                                                                 \
    {                                                                                          \
        __m512 av = _mm512_set1_ps(ar[r][k * ks]);                                             \
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);                                        \
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);                                        \
    }
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
        }
    } else {
        for (int k = 0; k < kc; k++) {
            __m512 b0 = _mm512_loadu_ps(panel + k * ldp);
            __m512 b1 = _mm512_loadu_ps(panel + k * ldp + 16);
            for (int r = 0; r < rows; r++) {
                __m512 av = _mm512_set1_ps(ar[r][k * ks]);
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            }
        }
    }
}

/* The same for a panel of at most 16 columns (a LoRA adapter's rank): one vector a row, so that
 * the padding half of the panel costs nothing. */
AVX512 INLINE void micro_f32_16(const float *a, int64_t rs, int64_t ks, int rows,
                                const float *panel, int64_t ldp, int kc, __m512 acc[MR][2]) {
    const float *ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + (r < rows ? r : 0) * rs;
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(panel + k * ldp);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
            acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(ar[r][k * ks]), b0, acc[r][0]);
    }
}

/* Packing B's columns (NT: rows of W, streamed from memory once) asks for the same bytes of the
 * columns two panels ahead, so that they are in cache when their turn comes. */
#define PREFETCH_COLS (2 * PANEL)
INLINE void prefetch_ahead(const float *p) {
    _mm_prefetch((const char *)p, _MM_HINT_T0);
    _mm_prefetch((const char *)(p + 16), _MM_HINT_T0);
}

/* Pack B[k0:k0+kc, c0:c0+cols] into pack (kc, 32), zero-padding the columns past `cols`. */
AVX512 static void pack_b_f32(float *pack, const rein_gemm *g, int k0, int kc, int c0, int cols) {
    __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
    __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
    if (g->b_cs == 1) { /* B rows contiguous: copy row pieces */
        for (int k = 0; k < kc; k++) {
            const float *br = g->b + (int64_t)(k0 + k) * g->b_ks + c0;
            _mm512_store_ps(pack + k * PANEL, _mm512_maskz_loadu_ps(m0, br));
            _mm512_store_ps(pack + k * PANEL + 16, _mm512_maskz_loadu_ps(m1, br + 16));
        }
        return;
    }
    /* B columns contiguous (b_ks == 1): 16 x 16 blocks of columns and steps, transposed */
    for (int half = 0; half < 2; half++)
        for (int k = 0; k < kc; k += 16) {
            int nk = REIN_MIN(16, kc - k);
            __mmask16 km = (__mmask16)(nk >= 16 ? 0xffff : (1u << nk) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                int c = 16 * half + i;
                const float *src = g->b + (int64_t)(c0 + c) * g->b_cs + k0 + k;
                r[i] = c < cols ? _mm512_maskz_loadu_ps(km, src) : _mm512_setzero_ps();
                if (c0 + c + PREFETCH_COLS < g->cols) prefetch_ahead(src + PREFETCH_COLS * g->b_cs);
            }
            transpose16(r);
            for (int j = 0; j < nk; j++) _mm512_store_ps(pack + (k + j) * PANEL + 16 * half, r[j]);
        }
}

/* Pack A[i0:i0+mc, k0:k0+kc] of a TN product (a_rs == 1: a step of the reduction is a row of a)
 * into micro-panels of MR rows, (kc, MR) each, zero-padding rows past mc. Each step's mc values
 * are one contiguous piece of a row of a, read whole, PF_ROWS steps fetched ahead (a row of the
 * output head's dY is 196 KB, so every step is a page of its own). */
#define PF_ROWS 8
AVX512 static void pack_a_f32(float *pack, const rein_gemm *g, int i0, int mc, int k0, int kc) {
    const int nv = (mc + 15) / 16;
    for (int k = 0; k < kc; k++) {
        const float *src = g->a + (int64_t)(k0 + k) * g->a_ks + i0;
        if (k + PF_ROWS < kc) {
            const char *nx = (const char *)(src + PF_ROWS * g->a_ks);
            for (int l = 0; l < nv; l++) _mm_prefetch(nx + 64 * l, _MM_HINT_T0);
        }
        for (int v = 0; v < nv; v++) {
            int n = REIN_MIN(16, mc - 16 * v);
            __m512 x = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), src + 16 * v);
            /* micro-panels 2v and 2v + 1; rows past mc are zero */
            _mm256_store_ps(pack + (int64_t)(2 * v) * kc * MR + k * MR, _mm512_castps512_ps256(x));
            if (16 * v + MR < mc)
                _mm256_store_ps(pack + (int64_t)(2 * v + 1) * kc * MR + k * MR,
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
        }
    }
}

/* Where a task's panel p of reduction block k0 lies: in place in B's rows (direct), in the copy
 * packed once for every task (g->b_packed), or in the task's own pack. */
typedef struct panels_f32 {
    const float *own; /* the task's own pack, panel p at own + (p - p0) * KC * PANEL */
    int direct, kb, p0;
} panels_f32;

INLINE const float *panel_f32(const rein_gemm *g, const panels_f32 *ps, int p, int k0,
                              int64_t *ldp) {
    *ldp = PANEL;
    if (ps->direct) {
        *ldp = g->b_ks;
        return g->b + (int64_t)k0 * g->b_ks + p * PANEL;
    }
    if (g->b_packed)
        return (const float *)g->b_packed + ((int64_t)(k0 / ps->kb) * g->n_panels + p) * ps->kb * PANEL;
    return ps->own + (int64_t)(p - ps->p0) * KC * PANEL;
}

/* Rows [i0, i0 + mc) of y, panels [p0, p1), (+)= the product over reduction block [k0, k0 + kc). */
AVX512 static void block_f32(const rein_gemm *g, const panels_f32 *ps, int i0, int mc, int k0,
                             int kc, int p1, float *apack) {
    const int packed_a = g->a_ks != 1, add = k0 > 0 || g->acc;
    if (packed_a) pack_a_f32(apack, g, i0, mc, k0, kc);
    for (int p = ps->p0; p < p1; p++) {
        int64_t ldp;
        const float *panel = panel_f32(g, ps, p, k0, &ldp);
        int c0 = p * PANEL, cols = REIN_MIN(PANEL, g->cols - c0);
        for (int ir = 0; ir < mc; ir += MR) {
            int rows = REIN_MIN(MR, mc - ir);
            __m512 acc[MR][2];
            for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            prefetch_tile(g, i0 + ir, rows, c0);
            const float *ai = g->a + (int64_t)(i0 + ir) * g->a_rs + k0;
            if (cols <= 16 && packed_a)
                micro_f32_16(apack + (int64_t)ir * kc, 1, MR, MR, panel, ldp, kc, acc);
            else if (cols <= 16)
                micro_f32_16(ai, g->a_rs, 1, rows, panel, ldp, kc, acc);
            else if (packed_a)
                micro_f32(apack + (int64_t)ir * kc, 1, MR, MR, panel, ldp, kc, acc);
            else
                micro_f32(ai, g->a_rs, 1, rows, panel, ldp, kc, acc);
            store_tile(g, i0 + ir, rows, c0, cols, add, acc);
        }
    }
}

/* A task's blocks in one of two orders, with the same sums either way (each block of the
 * reduction summed from zero, then added to y in reduction order):
 * - reduction blocks outside: each block of panels (packed by the task, or read in place) serves
 *   every row of the task while it is in cache, and the task's y is read and written again for
 *   each reduction block;
 * - row blocks outside, when B needs no packing by the task and its rows of y outnumber the
 *   reduction: a block of y (MC rows of the task's panels) stays in cache through the whole
 *   reduction, and B (the smaller) is read again for each block of rows. The output head's weight
 *   gradient is 113 MB of y against a B of 2.4 MB (69-75% of peak the other way round); its
 *   input gradient's slices are 2.4 MB of y against 9.4 MB of B (the reverse). */
AVX512 static void task_f32(const rein_gemm *g, int t) {
    static _Thread_local float bpack[NCP * KC * PANEL] __attribute__((aligned(64))); /* 384 KiB */
    static _Thread_local float apack[MC * KC] __attribute__((aligned(64)));          /* 128 KiB */
    int i_begin, i_end, p0, p1;
    task_range(g, t, &i_begin, &i_end, &p0, &p1);
    panels_f32 ps = {bpack, g->b_cs == 1 && !g->b_packed && p1 * PANEL <= g->cols,
                     block_len(g->red, KC), p0};
    const int own_pack = !ps.direct && !g->b_packed;
    if (!own_pack && i_end - i_begin > g->red) {
        for (int i0 = i_begin; i0 < i_end; i0 += MC)
            for (int k0 = 0; k0 < g->red; k0 += ps.kb)
                block_f32(g, &ps, i0, REIN_MIN(MC, i_end - i0), k0, REIN_MIN(ps.kb, g->red - k0),
                          p1, apack);
        return;
    }
    REIN_ASSERT(!own_pack || p1 - p0 <= NCP); /* rein_gemm_plan's groups */
    for (int k0 = 0; k0 < g->red; k0 += ps.kb) {
        int kc = REIN_MIN(ps.kb, g->red - k0);
        for (int p = p0; p < p1 && own_pack; p++)
            pack_b_f32(bpack + (p - p0) * KC * PANEL, g, k0, kc, p * PANEL,
                       REIN_MIN(PANEL, g->cols - p * PANEL));
        for (int i0 = i_begin; i0 < i_end; i0 += MC)
            block_f32(g, &ps, i0, REIN_MIN(MC, i_end - i0), k0, kc, p1, apack);
    }
}

/* ---- BF16 ------------------------------------------------------------------------------------ */

/* A pair of bfloat16 values (lo, hi) is one 32-bit lane: the layout vdpbf16ps multiplies. */

/* n (<= 32) floats from src as up to 16 pairs, zero-padded. */
AVX512BF INLINE __m512 pairs16(const float *src, int n) {
    __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
    __mmask16 m1 = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, src + 16),
                                     _mm512_maskz_loadu_ps(m0, src));
    return (__m512)v;
}

/* Interleave x[0:16] and y[0:16] (bfloat16 of two consecutive reduction steps) into 16 pairs. */
AVX512BF INLINE __m512i zip16(__m512 x, __m512 y) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                         8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(y, x));
}

/* Pack B[k0:k0+kc, c0:c0+cols] as pairs along k: pack (ceil(kc/2), 32), zero-padded. */
AVX512BF static void pack_b_bf16(uint32_t *pack, const rein_gemm *g, int k0, int kc, int c0,
                                 int cols) {
    int kp = (kc + 1) / 2;
    if (g->b_cs == 1) { /* rows of B contiguous: zip two rows */
        __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xffff : (1u << cols) - 1);
        __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0);
        for (int q = 0; q < kp; q++) {
            const float *r0 = g->b + (int64_t)(k0 + 2 * q) * g->b_ks + c0;
            const float *r1 = r0 + g->b_ks;
            int two = 2 * q + 1 < kc;
            __m512 x0 = _mm512_maskz_loadu_ps(m0, r0), x1 = _mm512_maskz_loadu_ps(m1, r0 + 16);
            __m512 y0 = two ? _mm512_maskz_loadu_ps(m0, r1) : _mm512_setzero_ps();
            __m512 y1 = two ? _mm512_maskz_loadu_ps(m1, r1 + 16) : _mm512_setzero_ps();
            _mm512_store_si512(pack + q * PANEL, zip16(x0, y0));
            _mm512_store_si512(pack + q * PANEL + 16, zip16(x1, y1));
        }
    } else { /* columns of B contiguous (b_ks == 1): 16 columns' pairs, transposed */
        for (int half = 0; half < 2; half++)
            for (int q0 = 0; q0 < kp; q0 += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; i++) {
                    int c = 16 * half + i;
                    const float *src = g->b + (int64_t)(c0 + c) * g->b_cs + k0 + 2 * q0;
                    r[i] = c < cols ? pairs16(src, REIN_MIN(32, kc - 2 * q0)) : _mm512_setzero_ps();
                    if (c0 + c + PREFETCH_COLS < g->cols) prefetch_ahead(src + PREFETCH_COLS * g->b_cs);
                }
                transpose16(r);
                int nq = REIN_MIN(16, kp - q0);
                for (int j = 0; j < nq; j++)
                    _mm512_store_ps((float *)(pack + (q0 + j) * PANEL + 16 * half), r[j]);
            }
    }
}

/* Pack A[i0:i0+mc, k0:k0+kc] as pairs along k into micro-panels of MR rows, (ceil(kc/2), MR)
 * each, zero-padding rows past mc. */
AVX512BF static void pack_a_bf16(uint32_t *pack, const rein_gemm *g, int i0, int mc, int k0,
                                 int kc) {
    int kp = (kc + 1) / 2;
    for (int m = 0; m * MR < mc; m++) {
        int n = REIN_MIN(MR, mc - m * MR);
        uint32_t *dst = pack + (int64_t)m * kp * MR;
        if (g->a_ks == 1) { /* rows contiguous along k: 16 rows' pairs (two micro-panels), transposed */
            if (m & 1) continue; /* written with the micro-panel before */
            int two = (m + 1) * MR < mc;
            for (int q0 = 0; q0 < kp; q0 += 16) {
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = m * MR + i < mc ? pairs16(g->a + (int64_t)(i0 + m * MR + i) * g->a_rs +
                                                         k0 + 2 * q0,
                                                     REIN_MIN(32, kc - 2 * q0))
                                           : _mm512_setzero_ps();
                transpose16(r);
                int nq = REIN_MIN(16, kp - q0);
                for (int j = 0; j < nq; j++) {
                    __m512i v = _mm512_castps_si512(r[j]);
                    _mm256_store_si256((__m256i *)(dst + (q0 + j) * MR), _mm512_castsi512_si256(v));
                    if (two)
                        _mm256_store_si256((__m256i *)(dst + (int64_t)kp * MR + (q0 + j) * MR),
                                           _mm512_extracti64x4_epi64(v, 1));
                }
            }
        } else { /* a_rs == 1 (TN): a step of the reduction is a row of a; zip two of them */
            __mmask16 mask = (__mmask16)((1u << n) - 1);
            const float *src = g->a + (int64_t)k0 * g->a_ks + i0 + m * MR;
            for (int q = 0; q < kp; q++) {
                const float *r0 = src + (int64_t)(2 * q) * g->a_ks;
                __m512 x = _mm512_maskz_loadu_ps(mask, r0);
                __m512 y = 2 * q + 1 < kc ? _mm512_maskz_loadu_ps(mask, r0 + g->a_ks)
                                          : _mm512_setzero_ps();
                /* the first 8 pairs are rows 0..7 */
                _mm256_store_si256((__m256i *)(dst + q * MR), _mm512_castsi512_si256(zip16(x, y)));
            }
        }
    }
}

/* acc(8, 32) += A pairs (kp, 8) @ B pairs (kp, 32). */
AVX512BF INLINE void micro_bf16(const uint32_t *ap, const uint32_t *bp, int kp,
                                __m512 acc[MR][2]) {
    for (int q = 0; q < kp; q++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp + q * PANEL);
        __m512bh b1 = (__m512bh)_mm512_load_si512(bp + q * PANEL + 16);
#define ROW(r)                                                                                 \
    {                                                                                          \
        __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[q * MR + r]);                        \
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);                                       \
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);                                       \
    }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
    }
}

AVX512BF static void task_bf16(const rein_gemm *g, int t) {
    static _Thread_local uint32_t bpack[NCP * (KCB / 2) * PANEL] __attribute__((aligned(64)));
    static _Thread_local uint32_t apack[MC * (KCB / 2)] __attribute__((aligned(64)));
    int i_begin, i_end, p0, p1;
    task_range(g, t, &i_begin, &i_end, &p0, &p1);
    const int kb = block_len(g->red, KCB), rows_pad = (g->rows + MR - 1) / MR * MR;
    for (int k0 = 0; k0 < g->red; k0 += kb) {
        int kc = REIN_MIN(kb, g->red - k0), kp = (kc + 1) / 2, add = k0 > 0 || g->acc;
        const uint32_t *bp = bpack; /* panel p at bp + (p - p0) * stride */
        int64_t stride = (KCB / 2) * PANEL;
        if (g->b_packed) { /* packed once for every task */
            stride = (int64_t)(kb / 2) * PANEL;
            bp = (const uint32_t *)g->b_packed + ((int64_t)(k0 / kb) * g->n_panels + p0) * stride;
        } else {
            for (int p = p0; p < p1; p++)
                pack_b_bf16(bpack + (p - p0) * (KCB / 2) * PANEL, g, k0, kc, p * PANEL,
                            REIN_MIN(PANEL, g->cols - p * PANEL));
        }
        for (int i0 = i_begin; i0 < i_end; i0 += MC) {
            int mc = REIN_MIN(MC, i_end - i0);
            const uint32_t *ab = apack;
            if (g->a_packed) /* packed once for every task: block k0, row i0 */
                ab = g->a_packed + (int64_t)rows_pad * (k0 / kb) * (kb / 2) + (int64_t)i0 * kp;
            else
                pack_a_bf16(apack, g, i0, mc, k0, kc);
            for (int p = p0; p < p1; p++) {
                const uint32_t *panel = bp + (p - p0) * stride;
                int c0 = p * PANEL, cols = REIN_MIN(PANEL, g->cols - c0);
                for (int ir = 0; ir < mc; ir += MR) {
                    __m512 acc[MR][2];
                    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
                    prefetch_tile(g, i0 + ir, REIN_MIN(MR, mc - ir), c0);
                    micro_bf16(ab + (int64_t)ir * kp, panel, kp, acc);
                    store_tile(g, i0 + ir, REIN_MIN(MR, mc - ir), c0, cols, add, acc);
                }
            }
        }
    }
}

/* Pack task t of rein_gemm_prepack: MC rows of one block of the reduction. */
static void prepack_task(void *ctx, int t, int n_tasks) {
    const rein_gemm *g = ctx;
    const int kb = block_len(g->red, KCB), rows_pad = (g->rows + MR - 1) / MR * MR;
    const int n_row_blocks = (g->rows + MC - 1) / MC;
    int b = t / n_row_blocks, i0 = (t % n_row_blocks) * MC, k0 = b * kb;
    int kc = REIN_MIN(kb, g->red - k0), kp = (kc + 1) / 2;
    uint32_t *dst = (uint32_t *)g->a_packed + (int64_t)rows_pad * b * (kb / 2) + (int64_t)i0 * kp;
    pack_a_bf16(dst, g, i0, REIN_MIN(MC, g->rows - i0), k0, kc);
}

int64_t rein_gemm_prepack_size(const rein_gemm *g) {
    if (!g->bf16) return 0;
    const int kb = block_len(g->red, KCB), n_blocks = (g->red + kb - 1) / kb;
    return (int64_t)((g->rows + MR - 1) / MR * MR) * n_blocks * (kb / 2);
}

/* Pack task t of rein_gemm_prepack_b: one panel of one block of the reduction. */
static void prepack_b_task(void *ctx, int t, int n_tasks) {
    const rein_gemm *g = ctx;
    const int kb = block_len(g->red, g->bf16 ? KCB : KC);
    int b = t / g->n_panels, p = t % g->n_panels, k0 = b * kb, kc = REIN_MIN(kb, g->red - k0);
    int cols = REIN_MIN(PANEL, g->cols - p * PANEL);
    if (g->bf16)
        pack_b_bf16((uint32_t *)g->b_packed + (int64_t)t * (kb / 2) * PANEL, g, k0, kc, p * PANEL, cols);
    else
        pack_b_f32((float *)g->b_packed + (int64_t)t * kb * PANEL, g, k0, kc, p * PANEL, cols);
}

int64_t rein_gemm_prepack_b_size(const rein_gemm *g) {
    const int kb = block_len(g->red, g->bf16 ? KCB : KC), n_blocks = (g->red + kb - 1) / kb;
    return (int64_t)n_blocks * g->n_panels * (g->bf16 ? kb / 2 : kb) * PANEL * 4;
}

void rein_gemm_prepack_b(rein_gemm *g, void *buf) {
    g->b_packed = buf;
    const int kb = block_len(g->red, g->bf16 ? KCB : KC), n_blocks = (g->red + kb - 1) / kb;
    rein_parallel_for(n_blocks * g->n_panels, prepack_b_task, g);
}

void rein_gemm_prepack(rein_gemm *g, uint32_t *buf) {
    g->a_packed = buf;
    const int kb = block_len(g->red, KCB), n_blocks = (g->red + kb - 1) / kb;
    rein_parallel_for(n_blocks * ((g->rows + MC - 1) / MC), prepack_task, g);
}

void rein_gemm_task_avx512(void *ctx, int t, int n_tasks) {
    const rein_gemm *g = ctx;
    if (g->bf16)
        task_bf16(g, t);
    else
        task_f32(g, t);
}

/* ---- split reduction -------------------------------------------------------------------------- */

typedef struct split_job {
    const rein_gemm *g;
    float *partial; /* (n_slices, rows, cols) */
    int slice, n_slices, rows_per_task;
} split_job;

/* Slice s of the reduction, every row and column, into its own partial product. */
static void slice_task(void *ctx, int s, int n_tasks) {
    const split_job *j = ctx;
    const rein_gemm *g = j->g;
    int k0 = s * j->slice;
    rein_gemm sub = *g;
    sub.y = j->partial + (int64_t)s * g->rows * g->cols;
    sub.ldy = g->cols;
    sub.a = g->a + (int64_t)k0 * g->a_ks;
    sub.b = g->b + (int64_t)k0 * g->b_ks;
    sub.red = REIN_MIN(j->slice, g->red - k0);
    sub.acc = 0;
    sub.a_packed = NULL;
    sub.b_packed = NULL;
    /* every panel at once when they are read in place (as rein_gemm_plan does): A once */
    int n_groups = panels_in_place(g) ? 1 : (sub.n_panels + NCP - 1) / NCP;
    sub.panels_per_task = (sub.n_panels + n_groups - 1) / n_groups;
    sub.row_chunk = (g->rows + MR - 1) / MR * MR;
    sub.n_row_chunks = 1;
    for (int t = 0; t * sub.panels_per_task < sub.n_panels; t++) rein_gemm_task_avx512(&sub, t, 1);
}

/* y rows (+)= the sum of the partial products, slice by slice in order. */
AVX512 static void reduce_task(void *ctx, int t, int n_tasks) {
    const split_job *j = ctx;
    const rein_gemm *g = j->g;
    int r1 = REIN_MIN(g->rows, (t + 1) * j->rows_per_task);
    for (int r = t * j->rows_per_task; r < r1; r++) {
        float *y = g->y + (int64_t)r * g->ldy;
        for (int c = 0; c < g->cols; c += 16) {
            __mmask16 m = (__mmask16)(g->cols - c >= 16 ? 0xffff : (1u << (g->cols - c)) - 1);
            __m512 acc = g->acc ? _mm512_maskz_loadu_ps(m, y + c) : _mm512_setzero_ps();
            for (int s = 0; s < j->n_slices; s++)
                acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(
                                             m, j->partial + ((int64_t)s * g->rows + r) * g->cols + c));
            _mm512_mask_storeu_ps(y + c, m, acc);
        }
    }
}

int rein_gemm_split_slices(const rein_gemm *g) {
    enum { SLICE = 4096 };
    /* a long reduction into a small output (the output head's dX = dlogits W): tasks that split
     * rows or columns would each read most of A or B again; slices read each once */
    if (g->red < 4 * SLICE || (int64_t)g->red < 16 * (int64_t)REIN_MAX(g->rows, g->cols)) return 0;
    return (g->red + SLICE - 1) / SLICE;
}

void rein_gemm_run_split(rein_gemm *g, float *partial, int n_slices) {
    split_job j = {g, partial, (g->red + n_slices - 1) / n_slices, n_slices, 0};
    g->n_panels = (g->cols + PANEL - 1) / PANEL;
    rein_parallel_for(n_slices, slice_task, &j);
    j.rows_per_task = REIN_MAX(1, (g->rows + 15) / 16);
    rein_parallel_for((g->rows + j.rows_per_task - 1) / j.rows_per_task, reduce_task, &j);
}
#endif /* __x86_64__ */

int rein_gemm_plan_tiles(rein_gemm *g, int n_threads, int panel, int max_panels, int row_unit,
                         int min_rows) {
    g->n_panels = (g->cols + panel - 1) / panel;
    int n_groups = (g->n_panels + max_panels - 1) / max_panels;
    g->panels_per_task = (g->n_panels + n_groups - 1) / n_groups;
    n_groups = (g->n_panels + g->panels_per_task - 1) / g->panels_per_task;
    int chunks = REIN_MAX(1, REIN_MIN((4 * n_threads + n_groups - 1) / n_groups, g->rows / min_rows));
    g->row_chunk = ((g->rows + chunks - 1) / chunks + row_unit - 1) / row_unit * row_unit;
    g->n_row_chunks = (g->rows + g->row_chunk - 1) / g->row_chunk;
    return n_groups * g->n_row_chunks;
}

int rein_gemm_plan(rein_gemm *g, int n_threads) {
    /* panels of 32 for 8-row tiles, at most 12 a task where the task packs them (NCP, its
     * buffer's size), every one where they are read in place; row chunks of at least 64 */
    enum { PANEL_COLS = 32, MAX_PANELS = 12, ROW_UNIT = 8, MIN_ROWS = 64 };
    const int n_panels = (g->cols + PANEL_COLS - 1) / PANEL_COLS;
    return rein_gemm_plan_tiles(g, n_threads, PANEL_COLS,
                                panels_in_place(g) ? REIN_MAX(1, n_panels) : MAX_PANELS, ROW_UNIT,
                                MIN_ROWS);
}

int rein_gemm_cpu_has_bf16(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}
