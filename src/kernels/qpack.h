/* qpack.h - decode weights repacked at load time for the AVX-512 kernels (internal to kernels/).
 *
 * rein_qmatmul_pack (qmatmul.h) copies Q8_0 and Q4_1 weights into this layout (in the exact
 * mode; the int8 mode's layout is qpack_vnni.h's); rein_qmatmul_nt reads it through qpack_rows
 * when a weight carries a packed copy and the AVX-512 kernels run.
 */
#ifndef REIN_KERNELS_QPACK_H
#define REIN_KERNELS_QPACK_H

#include "kernels/qmatmul.h"

#include <stddef.h>

#define QPACK_G 16     /* weight rows per group: one vector lane each */
#define QPACK_SPAN 256 /* most elements of one span of the reduction */

/* The length of the spans of a reduction of K elements that the decode kernels sum from zero
 * before adding them to the output: K in even spans of at most QPACK_SPAN elements, the spans of
 * the prefill GEMM (gemm_avx512.c), so that decoding and prefill round alike. */
int qpack_span(int K);

/* How many of the `rest` groups left a tile takes side by side, at most `most`: a group alone is
 * one chain, bound by the FMA's latency, so 5 or 6 left at 4 a tile go as 3 + 2 or 3 + 3, not
 * 4 + 1 or 4 + 2. Both decode kernels (here and qpack_vnni.c) walk their groups so. */
static inline int qpack_tile_groups(int rest, int most) {
    if (most == 4 && (rest == 5 || rest == 6)) return 3;
    return rest < most ? rest : most;
}

/* The tiles of NX activation rows by NP groups that both decode kernels (here and
 * qpack_vnni.c) run with at most 8 accumulators, as the cases of `switch (nx * 16 + np)` calling
 * TILE(NX, NP), TILE(1, 1) the default: constant shapes, so that the sums stay in registers. */
#define QPACK_SMALL_TILES(TILE)                                                                \
    case 4 * 16 + 2: TILE(4, 2); break;                                                        \
    case 4 * 16 + 1: TILE(4, 1); break;                                                        \
    case 2 * 16 + 4: TILE(2, 4); break;                                                        \
    case 2 * 16 + 3: TILE(2, 3); break;                                                        \
    case 2 * 16 + 2: TILE(2, 2); break;                                                        \
    case 2 * 16 + 1: TILE(2, 1); break;                                                        \
    case 1 * 16 + 4: TILE(1, 4); break;                                                        \
    case 1 * 16 + 3: TILE(1, 3); break;                                                        \
    case 1 * 16 + 2: TILE(1, 2); break;                                                        \
    default: TILE(1, 1); break

/* Bytes of the packed copy of w, or 0 when its type has no packed layout. */
size_t qpack_size(const rein_qweight *w);

/* Write w's packed copy into dst (qpack_size bytes, 64-byte aligned). */
void qpack_write(const rein_qweight *w, void *dst);

/* y (N, w->rows) (+)= x (N, w->cols) @ W^T for the weight rows of groups [g0, g1), reading
 * w->packed (AVX-512 only). */
void qpack_rows(const rein_qweight *w, const float *x, int N, float *y, int accumulate, int g0,
                int g1);

#endif
