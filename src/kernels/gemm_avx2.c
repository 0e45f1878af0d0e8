/* gemm_avx2.c - the AVX2+FMA kernel of the blocked product (gemm.h), f32, for CPUs without AVX-512.
 *
 * matmul.c runs it where the CPU has AVX2 and FMA but not AVX-512F/VL (or REIN_KERNEL=avx2 asks).
 * It has gemm_avx512.c's shape with registers half as wide and half as many: a task owns a chunk
 * of rows of y and a group of panels of 16 columns. For each block of the reduction it packs its
 * panels of B into (kc, 16) (NT's W^T transposed in 8 x 8 register blocks, NN's and TN's rows
 * copied), then walks its rows in blocks of MC, packs each block of A into micro-panels of 6 rows,
 * (kc, 6) each, and multiplies every micro-panel by every panel: 6 rows x 16 columns are 12 of the
 * 16 ymm registers as accumulators, two more hold the panel's step and one the broadcast of A.
 * Both operands packed, the micro-kernel reads two streams at unit stride whatever the product
 * (NT, NN or TN), and only the packing knows the strides.
 *
 * Summation order: the reduction is cut into blocks whose length depends on its length alone
 * (block_len), each block of an output is one chain of FMAs from zero in reduction order, and the
 * blocks are added to y in order. So an output's bits do not depend on where it falls in the
 * tiling, on the number of rows, tasks or threads: a row of a batch equals the row alone.
 */
#include "kernels/gemm.h"
#include "base/base.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define NR 16   /* columns of B per packed panel: two 8-wide vectors */
#define MR 6    /* rows of A per micro-kernel call */
#define MC 240  /* rows of A per block (a multiple of MR): a packed block is 240 KiB, kept in L2 */
#define NCP 24  /* panels per task at most: 384 columns */
#define KC 256  /* reduction block: a packed panel is 16 KiB, kept in L1 */

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* Lanes [0, n) set, for maskload/maskstore (n clamped to [0, 8]). */
AVX2 INLINE __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* r[i][j] <- r[j][i] for an 8 x 8 block in 8 registers. */
AVX2 INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

/* The reduction in blocks of at most `most`, all but the last of one even length, so that no small
 * remainder block costs a pass over y of its own (576 = 288 + 288, not 256 + 256 + 64). */
static int block_len(int red, int most) {
    int n = (red + most - 1) / most;
    return REIN_MIN(most, ((red + n - 1) / n + 1) & ~1);
}

/* Pack B[k0:k0+kc, c0:c0+cols] into pack (kc, 16), zero-padding the columns past `cols`. */
AVX2 static void pack_b(float *pack, const rein_gemm *g, int k0, int kc, int c0, int cols) {
    if (g->b_cs == 1) { /* B rows contiguous (NN, TN): copy row pieces */
        __m256i m0 = lanes(cols), m1 = lanes(cols - 8);
        for (int k = 0; k < kc; k++) {
            const float *br = g->b + (int64_t)(k0 + k) * g->b_ks + c0;
            _mm256_store_ps(pack + k * NR, _mm256_maskload_ps(br, m0));
            _mm256_store_ps(pack + k * NR + 8, _mm256_maskload_ps(br + 8, m1));
        }
        return;
    }
    /* B columns contiguous (NT, b_ks == 1): 8 x 8 blocks of columns and steps, transposed */
    for (int half = 0; half < 2; half++)
        for (int k = 0; k < kc; k += 8) {
            int nk = REIN_MIN(8, kc - k);
            __m256i km = lanes(nk);
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                int c = 8 * half + i;
                const float *src = g->b + (int64_t)(c0 + c) * g->b_cs + k0 + k;
                r[i] = c >= cols ? _mm256_setzero_ps()
                       : nk == 8 ? _mm256_loadu_ps(src)
                                 : _mm256_maskload_ps(src, km);
            }
            transpose8(r);
            for (int j = 0; j < nk; j++) _mm256_store_ps(pack + (k + j) * NR + 8 * half, r[j]);
        }
}

/* Pack A[i0:i0+mc, k0:k0+kc] into micro-panels of MR rows, (kc, MR) each, zero-padding the rows
 * past mc. The buffer needs 2 floats of slack at its end: a step is written as 8 floats, the last
 * 2 of which the next step (or micro-panel) overwrites. */
AVX2 static void pack_a(float *pack, const rein_gemm *g, int i0, int mc, int k0, int kc) {
    for (int m = 0; m * MR < mc; m++) {
        int n = REIN_MIN(MR, mc - m * MR);
        float *dst = pack + (int64_t)m * kc * MR;
        if (g->a_ks == 1) { /* rows contiguous along k (NT, NN): 8 x 8 blocks, transposed */
            const float *src = g->a + (int64_t)(i0 + m * MR) * g->a_rs + k0;
            for (int k = 0; k < kc; k += 8) {
                int nk = REIN_MIN(8, kc - k);
                __m256i km = lanes(nk);
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = i >= n    ? _mm256_setzero_ps()
                           : nk == 8 ? _mm256_loadu_ps(src + i * g->a_rs + k)
                                     : _mm256_maskload_ps(src + i * g->a_rs + k, km);
                transpose8(r);
                for (int j = 0; j < nk; j++) _mm256_storeu_ps(dst + (k + j) * MR, r[j]);
            }
        } else { /* a_rs == 1 (TN): a step of the reduction is a row of a */
            __m256i rm = lanes(n);
            const float *src = g->a + (int64_t)k0 * g->a_ks + i0 + m * MR;
            for (int k = 0; k < kc; k++)
                _mm256_storeu_ps(dst + k * MR, _mm256_maskload_ps(src + (int64_t)k * g->a_ks, rm));
        }
    }
}

/* acc(6, 16) = A micro-panel (kc, 6) @ panel (kc, 16), one FMA chain per output from zero. The
 * accumulators are named locals, not an array: GCC keeps an array indexed in a loop on the stack
 * and stores it every step. */
AVX2 INLINE void micro(const float *ap, const float *bp, int kc, __m256 acc[MR][2]) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++, ap += MR, bp += NR) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), av;
#define ROW(r)                                                                                 \
    av = _mm256_broadcast_ss(ap + r);                                                          \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                                                \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
    }
    acc[0][0] = c00, acc[0][1] = c01, acc[1][0] = c10, acc[1][1] = c11, acc[2][0] = c20;
    acc[2][1] = c21, acc[3][0] = c30, acc[3][1] = c31, acc[4][0] = c40, acc[4][1] = c41;
    acc[5][0] = c50, acc[5][1] = c51;
}

/* y rows [i0, i0 + rows) x columns [c0, c0 + cols) (+)= acc. */
AVX2 INLINE void store_tile(const rein_gemm *g, int i0, int rows, int c0, int cols, int add,
                            __m256 acc[MR][2]) {
    float *yb = g->y + (int64_t)i0 * g->ldy + c0;
    if (cols == NR) {
        for (int r = 0; r < rows; r++) {
            float *y0 = yb + r * g->ldy;
            if (add) {
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(y0));
                acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(y0 + 8));
            }
            _mm256_storeu_ps(y0, acc[r][0]);
            _mm256_storeu_ps(y0 + 8, acc[r][1]);
        }
        return;
    }
    __m256i m0 = lanes(cols), m1 = lanes(cols - 8);
    for (int r = 0; r < rows; r++) {
        float *y0 = yb + r * g->ldy;
        if (add) {
            acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_maskload_ps(y0, m0));
            acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_maskload_ps(y0 + 8, m1));
        }
        _mm256_maskstore_ps(y0, m0, acc[r][0]);
        _mm256_maskstore_ps(y0 + 8, m1, acc[r][1]);
    }
}

/* Fetch the y tile a micro-kernel call will add to or store, while it computes. */
INLINE void prefetch_tile(const rein_gemm *g, int i0, int rows, int c0) {
    const float *yb = g->y + (int64_t)i0 * g->ldy + c0;
    for (int r = 0; r < rows; r++) _mm_prefetch((const char *)(yb + r * g->ldy), _MM_HINT_T0);
}

AVX2 void rein_gemm_task_avx2(void *ctx, int t, int n_tasks) {
    static _Thread_local float bpack[NCP * KC * NR] __attribute__((aligned(64))); /* 384 KiB */
    static _Thread_local float apack[MC * KC + 8] __attribute__((aligned(64)));   /* 240 KiB */
    const rein_gemm *g = ctx;
    REIN_ASSERT(!g->bf16 && g->panels_per_task <= NCP && g->row_chunk % MR == 0);
    int pt = t / g->n_row_chunks, rc = t % g->n_row_chunks;
    int i_begin = rc * g->row_chunk, i_end = REIN_MIN(g->rows, i_begin + g->row_chunk);
    int p0 = pt * g->panels_per_task, p1 = REIN_MIN(g->n_panels, p0 + g->panels_per_task);
    const int kb = block_len(g->red, KC);
    for (int k0 = 0; k0 < g->red; k0 += kb) {
        int kc = REIN_MIN(kb, g->red - k0), add = k0 > 0 || g->acc;
        for (int p = p0; p < p1; p++)
            pack_b(bpack + (p - p0) * KC * NR, g, k0, kc, p * NR, REIN_MIN(NR, g->cols - p * NR));
        for (int i0 = i_begin; i0 < i_end; i0 += MC) {
            int mc = REIN_MIN(MC, i_end - i0);
            pack_a(apack, g, i0, mc, k0, kc);
            for (int p = p0; p < p1; p++) {
                const float *panel = bpack + (p - p0) * KC * NR;
                int c0 = p * NR, cols = REIN_MIN(NR, g->cols - c0);
                for (int ir = 0; ir < mc; ir += MR) {
                    int rows = REIN_MIN(MR, mc - ir);
                    __m256 acc[MR][2];
                    prefetch_tile(g, i0 + ir, rows, c0);
                    micro(apack + (int64_t)ir * kc, panel, kc, acc);
                    store_tile(g, i0 + ir, rows, c0, cols, add, acc);
                }
            }
        }
    }
}
int rein_gemm_plan_avx2(rein_gemm *g, int n_threads) {
    /* panels of NR, at most NCP a task (its pack buffer), row chunks of at least 10 micro-tiles */
    return rein_gemm_plan_tiles(g, n_threads, NR, NCP, MR, 10 * MR);
}
#endif /* __x86_64__ */
