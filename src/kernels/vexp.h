/* vexp.h - exp of 16 floats at once with AVX-512, for the softmax loops of attention.c and
 * loss.c (private to src/kernels).
 *
 * exp(x) = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 split in two parts so that r
 * is exact), e^r from the Cephes expf polynomial on |r| <= ln(2)/2 (about 1 ulp), and 2^n applied
 * with vscalefps, which underflows to 0 and overflows to inf as exp does. x is clamped to
 * [-104, 89] first so that n stays finite (exp(-104) is already 0 in float); NaN passes through.
 */
#ifndef REIN_KERNELS_VEXP_H
#define REIN_KERNELS_VEXP_H

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f,avx512vl,fma"))) static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* x second: a NaN x is returned as is */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#endif

#endif
