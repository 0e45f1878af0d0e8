/* adamw.c - the elementwise AdamW update: a plain loop and an AVX-512 one giving the same bits
 * (each operation rounds once in both, in the same order; see adamw.h). */
#include "kernels/adamw.h"
#include "kernels/matmul.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

void rein_adamw_update_ref(float *w, const float *g, float *m, float *v, int64_t n,
                           const rein_adamw_coef *c) {
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * c->gscale;
        m[i] = m[i] + (gi - m[i]) * c->c1;
        v[i] = v[i] * c->b2 + gi * gi * c->c2;
        float denom = sqrtf(v[i]) / c->bc2_sqrt + c->eps;
        w[i] = w[i] * c->decay - c->step * m[i] / denom;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void update_avx512(float *w, const float *g, float *m,
                                                             float *v, int64_t n,
                                                             const rein_adamw_coef *c) {
    const __m512 c1 = _mm512_set1_ps(c->c1), b2 = _mm512_set1_ps(c->b2), c2 = _mm512_set1_ps(c->c2);
    const __m512 bc = _mm512_set1_ps(c->bc2_sqrt), eps = _mm512_set1_ps(c->eps);
    const __m512 step = _mm512_set1_ps(c->step), decay = _mm512_set1_ps(c->decay);
    const __m512 gscale = _mm512_set1_ps(c->gscale);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_mul_ps(_mm512_loadu_ps(g + i), gscale), mv = _mm512_loadu_ps(m + i), vv = _mm512_loadu_ps(v + i);
        mv = _mm512_add_ps(mv, _mm512_mul_ps(_mm512_sub_ps(gv, mv), c1));
        vv = _mm512_add_ps(_mm512_mul_ps(vv, b2), _mm512_mul_ps(_mm512_mul_ps(gv, gv), c2));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), bc), eps);
        __m512 wv = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(w + i), decay),
                                  _mm512_div_ps(_mm512_mul_ps(step, mv), denom));
        _mm512_storeu_ps(m + i, mv);
        _mm512_storeu_ps(v + i, vv);
        _mm512_storeu_ps(w + i, wv);
    }
    rein_adamw_update_ref(w + i, g + i, m + i, v + i, n - i, c);
}
#endif

void rein_adamw_update(float *w, const float *g, float *m, float *v, int64_t n,
                       const rein_adamw_coef *c) {
#if defined(__x86_64__)
    if (rein_kernels_use_avx512()) {
        update_avx512(w, g, m, v, n, c);
        return;
    }
#endif
    rein_adamw_update_ref(w, g, m, v, n, c);
}
