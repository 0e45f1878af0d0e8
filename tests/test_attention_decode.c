/* test_attention_decode.c - decoding's attention (rein_attention_forward) against a plain
 * reference in double, on both paths, for the head sizes and grouped-query shapes of Llama-family
 * models; the batch invariant: a row computed in a batch of 16 (whole KV groups a task) has the
 * bits it has alone (a head a task); a prefix read where another sequence holds it (shared
 * rows) gives the bits of the same prefix copied into the row's own; each KV head's keys apart
 * (the cache's layout) give the bits of all heads side by side; and f16 rows give the bits of f32
 * rows holding their values.
 */
#include "testutil.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

static rein_rng rng;

/* out[i,h] for every row and head, in double, the softmax over all of a row's keys at once. */
static void reference(double *ref, const float *q, int N, int H, int KVH, int D,
                      const float *const *k, const float *const *v, const int *n_keys,
                      int64_t stride, float scale) {
    double *s = rein_malloc(sizeof(double) * 4096);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / KVH);
            double mx = -INFINITY, den = 0;
            for (int t = 0; t < n_keys[i]; t++) {
                s[t] = 0;
                for (int d = 0; d < D; d++)
                    s[t] += (double)q[((int64_t)i * H + h) * D + d] * k[i][t * stride + g * D + d];
                s[t] *= scale;
                mx = fmax(mx, s[t]);
            }
            for (int t = 0; t < n_keys[i]; t++) den += exp(s[t] - mx);
            double *r = ref + ((int64_t)i * H + h) * D;
            for (int d = 0; d < D; d++) r[d] = 0;
            for (int t = 0; t < n_keys[i]; t++)
                for (int d = 0; d < D; d++) r[d] += exp(s[t] - mx) / den * v[i][t * stride + g * D + d];
        }
    rein_free(s);
}

/* N rows of H heads over KVH KV heads of size D; row i has its own keys (n_keys[i] of them). */
static void check_shape(int N, int H, int KVH, int D, int max_keys) {
    const int64_t stride = (int64_t)KVH * D + 16; /* KV rows need not be packed */
    float *q = test_randn(&rng, (int64_t)N * H * D, 1);
    float *kb = test_randn(&rng, (int64_t)N * max_keys * stride, 1);
    float *vb = test_randn(&rng, (int64_t)N * max_keys * stride, 1);
    const float *k[16], *v[16];
    int n_keys[16];
    static const int lens[] = {1, 15, 16, 17, 128, 129, 300, 2, 33, 255, 64, 7, 200, 31, 144, 99};
    for (int i = 0; i < N; i++) {
        k[i] = kb + (int64_t)i * max_keys * stride;
        v[i] = vb + (int64_t)i * max_keys * stride;
        n_keys[i] = REIN_MIN(max_keys, lens[i % 16]);
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t n = (int64_t)N * H * D;
    double *ref = rein_malloc(sizeof(double) * (size_t)n);
    float *o = rein_malloc(sizeof(float) * (size_t)n), *alone = rein_malloc(sizeof(float) * (size_t)(H * D));
    reference(ref, q, N, H, KVH, D, k, v, n_keys, stride, scale);
    rein_kv_rows rows[16], shared[16];
    /* the shared form: each row's first half of keys from a copy elsewhere, its own rows there
     * overwritten with garbage that must not be read */
    float *sk = rein_malloc(sizeof(float) * (size_t)(N * max_keys * stride));
    float *sv = rein_malloc(sizeof(float) * (size_t)(N * max_keys * stride));
    float *ok = rein_malloc(sizeof(float) * (size_t)(N * max_keys * stride));
    float *ov = rein_malloc(sizeof(float) * (size_t)(N * max_keys * stride));
    memcpy(sk, kb, sizeof(float) * (size_t)(N * max_keys * stride));
    memcpy(sv, vb, sizeof(float) * (size_t)(N * max_keys * stride));
    memcpy(ok, kb, sizeof(float) * (size_t)(N * max_keys * stride));
    memcpy(ov, vb, sizeof(float) * (size_t)(N * max_keys * stride));
    for (int i = 0; i < N; i++) {
        rows[i] = (rein_kv_rows){.k = k[i], .v = v[i], .n_keys = n_keys[i]};
        const int64_t at = (int64_t)i * max_keys * stride, nsh = (n_keys[i] + 1) / 2;
        for (int64_t e = 0; e < nsh * stride; e++) ok[at + e] = ov[at + e] = NAN;
        shared[i] = (rein_kv_rows){.k = ok + at, .v = ov + at, .k_shared = sk + at,
                                   .v_shared = sv + at, .n_keys = n_keys[i], .n_shared = (int)nsh};
    }
    float *o2 = rein_malloc(sizeof(float) * (size_t)n);
    /* the same keys and values with each row's KV heads apart */
    float *hmk = rein_malloc(sizeof(float) * (size_t)(N * KVH * max_keys * D));
    float *hmv = rein_malloc(sizeof(float) * (size_t)(N * KVH * max_keys * D));
    rein_kv_rows hm_rows[16];
    for (int i = 0; i < N; i++) {
        const int64_t at = (int64_t)i * KVH * max_keys * D;
        for (int g = 0; g < KVH; g++)
            for (int t = 0; t < max_keys; t++)
                for (int d = 0; d < D; d++) {
                    hmk[at + ((int64_t)g * max_keys + t) * D + d] = k[i][t * stride + g * D + d];
                    hmv[at + ((int64_t)g * max_keys + t) * D + d] = v[i][t * stride + g * D + d];
                }
        hm_rows[i] = (rein_kv_rows){.k = hmk + at, .v = hmv + at, .n_keys = n_keys[i]};
    }
    for (int portable = 0; portable <= 1; portable++) {
        rein_matmul_force_portable(portable);
        rein_attention_forward(o, q, N, H, KVH, D, rows, stride, D, 0, scale);
        rein_attention_forward(o2, q, N, H, KVH, D, shared, stride, D, 0, scale);
        CHECKF(!memcmp(o, o2, sizeof(float) * (size_t)n),
               "N=%d H=%d KVH=%d D=%d %s: shared rows differ from own rows", N, H, KVH, D,
               portable ? "portable" : "fast");
        int bad = 0;
        for (int64_t e = 0; e < n && !bad; e++)
            if (!(fabs(o[e] - ref[e]) <= 2e-6 + 2e-5 * fabs(ref[e]))) {
                fprintf(stderr, "N=%d H=%d KVH=%d D=%d %s: element %lld: %.9g vs %.9g\n", N, H,
                        KVH, D, portable ? "portable" : "fast", (long long)e, o[e], ref[e]);
                bad = 1;
            }
        CHECK(!bad);
        /* the cache's layout, each KV head's keys contiguous (heads max_keys * D apart, keys D
         * apart): the same bits as the heads side by side */
        rein_attention_forward(o2, q, N, H, KVH, D, hm_rows, D, (int64_t)max_keys * D, 0, scale);
        CHECKF(!memcmp(o, o2, sizeof(float) * (size_t)n),
               "N=%d H=%d KVH=%d D=%d %s: heads apart differ from heads side by side", N, H, KVH,
               D, portable ? "portable" : "fast");
        for (int i = 0; i < N; i++) { /* each row alone: the same bits */
            rein_attention_forward(alone, q + (int64_t)i * H * D, 1, H, KVH, D, rows + i, stride,
                                   D, 0, scale);
            CHECKF(!memcmp(alone, o + (int64_t)i * H * D, sizeof(float) * (size_t)(H * D)),
                   "N=%d H=%d KVH=%d D=%d row %d: batched and alone differ", N, H, KVH, D, i);
        }
    }
    /* f16 rows, as a cache may hold them: the bits of f32 rows holding the same (rounded)
     * values, on both paths, batched or alone, own or shared */
    const int64_t ne = (int64_t)N * max_keys * stride;
    uint16_t *hk = rein_malloc(2 * (size_t)ne), *hv = rein_malloc(2 * (size_t)ne);
    uint16_t *hok = rein_malloc(2 * (size_t)ne), *hov = rein_malloc(2 * (size_t)ne);
    rein_fp32_to_fp16_row(hk, kb, ne);
    rein_fp32_to_fp16_row(hv, vb, ne);
    for (int64_t e = 0; e < ne; e++) { /* the f32 rows of the rounded values */
        sk[e] = rein_fp16_to_fp32(hk[e]);
        sv[e] = rein_fp16_to_fp32(hv[e]);
        hok[e] = isnan(ok[e]) ? 0x7e00 : hk[e]; /* the garbage where shared rows are read */
        hov[e] = isnan(ov[e]) ? 0x7e00 : hv[e];
    }
    rein_kv_rows hrows[16], hshared[16];
    for (int i = 0; i < N; i++) {
        const int64_t at = (int64_t)i * max_keys * stride;
        rows[i] = (rein_kv_rows){.k = sk + at, .v = sv + at, .n_keys = n_keys[i]};
        hrows[i] = (rein_kv_rows){.k = hk + at, .v = hv + at, .n_keys = n_keys[i]};
        hshared[i] = (rein_kv_rows){.k = hok + at, .v = hov + at, .k_shared = hk + at,
                                    .v_shared = hv + at, .n_keys = n_keys[i],
                                    .n_shared = shared[i].n_shared};
    }
    for (int portable = 0; portable <= 1; portable++) {
        rein_matmul_force_portable(portable);
        const char *path = portable ? "portable" : "fast";
        rein_attention_forward(o, q, N, H, KVH, D, rows, stride, D, 0, scale);
        rein_attention_forward(o2, q, N, H, KVH, D, hrows, stride, D, 1, scale);
        CHECKF(!memcmp(o, o2, sizeof(float) * (size_t)n),
               "N=%d H=%d KVH=%d D=%d %s: f16 rows differ from f32 rows of their values", N, H,
               KVH, D, path);
        rein_attention_forward(o2, q, N, H, KVH, D, hshared, stride, D, 1, scale);
        CHECKF(!memcmp(o, o2, sizeof(float) * (size_t)n),
               "N=%d H=%d KVH=%d D=%d %s: shared f16 rows differ", N, H, KVH, D, path);
        for (int i = 0; i < N; i++) {
            rein_attention_forward(alone, q + (int64_t)i * H * D, 1, H, KVH, D, hrows + i, stride,
                                   D, 1, scale);
            CHECKF(!memcmp(alone, o + (int64_t)i * H * D, sizeof(float) * (size_t)(H * D)),
                   "N=%d H=%d KVH=%d D=%d %s row %d: f16 batched and alone differ", N, H, KVH, D,
                   path, i);
        }
    }
    rein_matmul_force_portable(0);
    rein_free(q), rein_free(kb), rein_free(vb), rein_free(ref), rein_free(o), rein_free(alone);
    rein_free(sk), rein_free(sv), rein_free(ok), rein_free(ov), rein_free(o2);
    rein_free(hk), rein_free(hv), rein_free(hok), rein_free(hov), rein_free(hmk), rein_free(hmv);
}

int main(void) {
    rein_rng_seed(&rng, 77);
    rein_set_threads(2);
    /* SmolLM2 (9 heads over 3), Llama 3 (D 128, groups of 4), groups larger than a task takes
     * (6 and 8: tasks of 3 and 4 heads), no grouping (H == KVH), multi-query (KVH 1), and head
     * sizes off the unrolled ones (48: the generic vector loop; 40: the portable loop) */
    static const int shapes[][3] = {{9, 3, 64},  {8, 2, 128}, {12, 2, 64}, {16, 2, 64},
                                    {4, 4, 64},  {4, 1, 128}, {6, 3, 48},  {4, 2, 40},
                                    {8, 8, 256}, {2, 1, 16}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int N = 1; N <= 16; N += 15)
            check_shape(N, shapes[s][0], shapes[s][1], shapes[s][2], 300);
    return test_finish();
}
