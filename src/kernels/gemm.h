/* gemm.h - the blocked, threaded product behind matmul.c's NT, NN and TN (internal).
 *
 * One product y (rows, cols) (+)= A (rows, red) @ B (red, cols), where A and B are read through
 * strides, so that the three products of a linear layer are one loop nest (see matmul.c). The
 * output is cut into tasks of (row chunk, group of 32-column panels); gemm_avx512.c runs a task
 * with f32 or BF16 products. gemm_avx2.c, for CPUs with AVX2 and FMA but not AVX-512, runs f32
 * products on a tiling of its own (groups of 16-column panels, row chunks in multiples of 6).
 */
#ifndef REIN_KERNELS_GEMM_H
#define REIN_KERNELS_GEMM_H

#include <stdint.h>

/* A(r, k) = a[r * a_rs + k * a_ks] and B(k, c) = b[k * b_ks + c * b_cs]; either a_ks or a_rs is 1,
 * and either b_cs or b_ks is 1. y rows are ldy apart. */
typedef struct rein_gemm {
    float *y;
    int64_t ldy;
    const float *a, *b;
    int64_t a_rs, a_ks, b_ks, b_cs;
    int rows, red, cols, acc;
    int bf16; /* inputs rounded to bfloat16, products accumulated in f32 */
    const uint32_t *a_packed; /* BF16: all of A packed once (rein_gemm_prepack), or NULL */
    const void *b_packed;     /* all of B packed once (rein_gemm_prepack_b), or NULL */
    /* the tiling, set by rein_gemm_plan */
    int n_panels, panels_per_task; /* column panels of 32, grouped into tasks */
    int row_chunk, n_row_chunks;   /* rows per task (a multiple of 8) */
} rein_gemm;

/* Cut g's output into tasks for n_threads threads; returns the number of tasks. */
int rein_gemm_plan(rein_gemm *g, int n_threads);

/* The tiling both kernels use: panels of `panel` columns in as few even groups of at most
 * `max_panels` as there can be, and when that makes fewer than 4 tasks a thread, the rows cut
 * too, into chunks that are multiples of `row_unit` and at least `min_rows` long. Returns the
 * number of tasks. */
int rein_gemm_plan_tiles(rein_gemm *g, int n_threads, int panel, int max_panels, int row_unit,
                         int min_rows);

#if defined(__x86_64__)
/* Task t of a planned product, with AVX-512 (BF16 products need AVX512_BF16). */
void rein_gemm_task_avx512(void *ctx, int t, int n_tasks);

/* The AVX2+FMA kernel (gemm_avx2.c), f32 only: its own tiling (panels of 16 columns, rows in
 * multiples of 6), so a product it runs is planned by rein_gemm_plan_avx2, not rein_gemm_plan. */
int rein_gemm_plan_avx2(rein_gemm *g, int n_threads);
void rein_gemm_task_avx2(void *ctx, int t, int n_tasks);
#endif

#if defined(__x86_64__)
/* BF16: A packed once for all tasks instead of once per task and group of panels (worth it when
 * there are several groups). rein_gemm_prepack_size gives the 32-bit words the packed A takes
 * (rows rounded up to 8, times the reduction's pairs per block, times the blocks);
 * rein_gemm_prepack packs it into buf (aligned to 64 bytes), in parallel, and points g at it. */
int64_t rein_gemm_prepack_size(const rein_gemm *g);
void rein_gemm_prepack(rein_gemm *g, uint32_t *buf);
/* The same for B, once for all tasks instead of once per task and chunk of rows (worth it when
 * rows are split between tasks); after rein_gemm_plan. Size in bytes. */
int64_t rein_gemm_prepack_b_size(const rein_gemm *g);
void rein_gemm_prepack_b(rein_gemm *g, void *buf);

/* A long reduction into a small output (the output head's input gradient: 49152 into 256 x 576)
 * runs as slices of the reduction, each a task computing every output into its own partial
 * product, then a pass adding the partials in slice order (the result does not depend on the
 * thread count). rein_gemm_split_slices gives the number of slices, 0 when the tiling is better;
 * rein_gemm_run_split runs the product with partial holding slices x rows x cols floats. */
int rein_gemm_split_slices(const rein_gemm *g);
void rein_gemm_run_split(rein_gemm *g, float *partial, int n_slices);
#endif

/* 1 when the CPU can run BF16 products (AVX512_BF16), else 0. */
int rein_gemm_cpu_has_bf16(void);

#endif
