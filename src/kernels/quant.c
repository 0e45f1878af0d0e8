/* quant.c - the tensor element types: their names and sizes, f16 / bf16 conversion, and
 * dequantization (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) and quantization (F32, F16, BF16,
 * Q8_0, Q4_0, Q4_1) of the ggml block formats.
 *
 * The arithmetic follows ggml's reference (scalar) code operation by operation, in the same order
 * and in f32, so that results are bit-exact with ggml and with gguf-py's numpy port (tested against
 * fixtures written by gguf-py). The build must not use fast-math or FMA contraction for that to
 * hold (-std=c11 turns contraction off in gcc).
 */
#include "kernels/quant.h"
#include "base/base.h"
#include "kernels/matmul.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---- scalar conversions ------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float rein_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t rein_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff); /* NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to infinity (>= 65520) */
    if (ax < 0x38800000u) {
        /* below the smallest normal half (2^-14): a subnormal, i.e. round(|f| * 2^24) to nearest
         * even; the scaling is exact, and 1024 carries into the smallest normal correctly. */
        float v = nearbyintf(bits_f32(ax) * 0x1p24f);
        return sign | (uint16_t)v;
    }
    /* normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even; a
     * carry out of the mantissa moves to the next binade as it should. */
    uint32_t m = ax + 0xc8000fffu + ((ax >> 13) & 1);
    return sign | (uint16_t)(m >> 13);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static int64_t to_fp16_avx512(uint16_t *dst, const float *src,
                                                               int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) /* to nearest even, as the scalar conversion */
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return i;
}
#endif

void rein_fp32_to_fp16_row(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
#if defined(__x86_64__)
    if (rein_kernels_use_avx512()) i = to_fp16_avx512(dst, src, n);
#endif
    for (; i < n; i++) dst[i] = rein_fp32_to_fp16(src[i]);
}

float rein_bf16_to_fp32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t rein_fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

static float load_fp16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return rein_fp16_to_fp32(h);
}

static void store_fp16(uint8_t *p, float f) {
    uint16_t h = rein_fp32_to_fp16(f);
    memcpy(p, &h, 2);
}

/* ---- dequantization: one block in, block_size floats out ---------------------------------- */

static void dequant_q8_0(const uint8_t *b, float *y) { /* y: (32) */
    float d = load_fp16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int i = 0; i < 32; i++)
        y[i] = qs[i] * d;
}

static void dequant_q4_0(const uint8_t *b, float *y) { /* y: (32) */
    float d = load_fp16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0x0f) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}

static void dequant_q4_1(const uint8_t *b, float *y) { /* y: (32) */
    float d = load_fp16(b), m = load_fp16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0x0f) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}

/* The j-th (0..7) 6-bit scale and min of a Q4_K block, from its 12 packed bytes: sub-blocks 0-3
 * keep theirs in the low 6 bits of bytes 0-3 (scale) and 4-7 (min); sub-blocks 4-7 put their low
 * 4 bits in bytes 8-11 and their top 2 bits in the spare top bits of bytes 0-7. */
static void q4k_scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void dequant_q4_k(const uint8_t *b, float *y) { /* y: (256) */
    float d = load_fp16(b), dmin = load_fp16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int is = 0; is < 8; is += 2, q += 32, y += 64) {
        int sc, m;
        q4k_scale_min(is, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        q4k_scale_min(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++)
            y[l] = d1 * (q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; l++)
            y[32 + l] = d2 * (q[l] >> 4) - m2;
    }
}

static void dequant_q6_k(const uint8_t *b, float *y) { /* y: (256) */
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = load_fp16(b + 208);
    for (int n = 0; n < 2; n++, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

/* ---- quantization: block_size floats in, one block out ------------------------------------ */

/* ggml's MIN(15, (int8_t)v) for the v >= 0.5 the 4-bit quantizers produce, made total so that no
 * input can reach an undefined float-to-int conversion. */
static int nibble(float v) {
    if (!(v >= 0)) return 0;
    return v >= 15 ? 15 : (int)v;
}

static void quant_q8_0(const float *x, uint8_t *b) { /* x: (32) */
    float amax = 0;
    for (int i = 0; i < 32; i++)
        amax = REIN_MAX(amax, fabsf(x[i]));
    float d = amax / 127;
    float id = d ? 1.0f / d : 0.0f;
    store_fp16(b, d);
    for (int i = 0; i < 32; i++) {
        float v = x[i] * id;
        ((int8_t *)(b + 2))[i] = (int8_t)roundf(v); /* half away from zero, as ggml */
    }
}

static void quant_q4_0(const float *x, uint8_t *b) { /* x: (32) */
    /* the value of largest magnitude (the first one on a tie) maps to -8 */
    float amax = 0, max = 0;
    for (int i = 0; i < 32; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    float d = max / -8;
    float id = d ? 1.0f / d : 0.0f;
    store_fp16(b, d);
    for (int j = 0; j < 16; j++) {
        float x0 = x[j] * id + 8.5f, x1 = x[j + 16] * id + 8.5f;
        int q0 = nibble(x0), q1 = nibble(x1);
        b[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void quant_q4_1(const float *x, uint8_t *b) { /* x: (32) */
    float min = INFINITY, max = -INFINITY;
    for (int i = 0; i < 32; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
    }
    float d = (max - min) / 15;
    float id = d ? 1.0f / d : 0.0f;
    store_fp16(b, d);
    store_fp16(b + 2, min);
    for (int j = 0; j < 16; j++) {
        float x0 = (x[j] - min) * id + 0.5f, x1 = (x[j + 16] - min) * id + 0.5f;
        int q0 = nibble(x0), q1 = nibble(x1);
        b[4 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* ---- the type table and the whole-array entry points ------------------------------------- */

/* Block types have a function per block each way (quant NULL where there is no quantizer);
 * the scalar types F32, F16, BF16 are converted element by element in the loops below. */
typedef struct type_info {
    int type;
    const char *name;
    int block_size;
    size_t block_bytes;
    void (*dequant)(const uint8_t *block, float *y);
    void (*quant)(const float *x, uint8_t *block);
} type_info;

static const type_info types[] = {
    {REIN_TYPE_F32, "F32", 1, 4, NULL, NULL},
    {REIN_TYPE_F16, "F16", 1, 2, NULL, NULL},
    {REIN_TYPE_Q4_0, "Q4_0", 32, 18, dequant_q4_0, quant_q4_0},
    {REIN_TYPE_Q4_1, "Q4_1", 32, 20, dequant_q4_1, quant_q4_1},
    {REIN_TYPE_Q8_0, "Q8_0", 32, 34, dequant_q8_0, quant_q8_0},
    {REIN_TYPE_Q4_K, "Q4_K", 256, 144, dequant_q4_k, NULL},
    {REIN_TYPE_Q6_K, "Q6_K", 256, 210, dequant_q6_k, NULL},
    {REIN_TYPE_BF16, "BF16", 1, 2, NULL, NULL},
};

static const type_info *find_type(int type) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].type == type) return &types[i];
    return NULL;
}

const char *rein_type_name(int type) {
    const type_info *t = find_type(type);
    return t ? t->name : NULL;
}

int rein_type_block_size(int type) {
    const type_info *t = find_type(type);
    return t ? t->block_size : 0;
}

size_t rein_type_block_bytes(int type) {
    const type_info *t = find_type(type);
    return t ? t->block_bytes : 0;
}

rein_status rein_type_from_name(const char *name, rein_type *out) {
    if (!name) return rein_error(REIN_ERR_INVALID, "type name is NULL");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const char *a = types[i].name, *b = name;
        while (*a && *b && toupper((unsigned char)*a) == toupper((unsigned char)*b))
            a++, b++;
        if (!*a && !*b) {
            *out = (rein_type)types[i].type;
            return REIN_OK;
        }
    }
    return rein_error(REIN_ERR_UNSUPPORTED,
                      "unknown tensor type '%s' (expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K "
                      "or Q6_K)",
                      name);
}

static rein_status check_n(const char *what, int type, int64_t n, const type_info **ti) {
    *ti = find_type(type);
    if (!*ti) return rein_error(REIN_ERR_UNSUPPORTED, "%s: unknown tensor type id %d", what, type);
    if (n < 0 || n % (*ti)->block_size != 0)
        return rein_error(REIN_ERR_INVALID,
                          "%s: %lld elements is not a multiple of the %s block size %d", what,
                          (long long)n, (*ti)->name, (*ti)->block_size);
    return REIN_OK;
}

rein_status rein_dequantize(int type, const void *src, float *dst, int64_t n) {
    const type_info *ti;
    REIN_TRY(check_n("dequantize", type, n, &ti));
    const uint8_t *s = src;
    if (type == REIN_TYPE_F32) {
        memcpy(dst, src, (size_t)n * 4);
    } else if (type == REIN_TYPE_F16) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = load_fp16(s + 2 * i);
    } else if (type == REIN_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = rein_bf16_to_fp32(h);
        }
    } else {
        int64_t nb = n / ti->block_size;
        for (int64_t i = 0; i < nb; i++)
            ti->dequant(s + (size_t)i * ti->block_bytes, dst + i * ti->block_size);
    }
    return REIN_OK;
}

rein_status rein_quantize(int type, const float *src, void *dst, int64_t n) {
    const type_info *ti;
    REIN_TRY(check_n("quantize", type, n, &ti));
    uint8_t *d = dst;
    if (type == REIN_TYPE_F32) {
        memcpy(dst, src, (size_t)n * 4);
    } else if (type == REIN_TYPE_F16) {
        for (int64_t i = 0; i < n; i++)
            store_fp16(d + 2 * i, src[i]);
    } else if (type == REIN_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = rein_fp32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
    } else if (!ti->quant) {
        return rein_error(REIN_ERR_UNSUPPORTED,
                          "quantize: no quantizer for %s (F32, F16, BF16, Q8_0, Q4_0 and Q4_1 "
                          "have one)",
                          ti->name);
    } else {
        /* a block's scale comes from all its values: one NaN or Inf would spoil the block */
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(src[i]))
                return rein_error(REIN_ERR_NUMERIC, "quantize to %s: element %lld is %g", ti->name,
                                  (long long)i, src[i]);
        int64_t nb = n / ti->block_size;
        for (int64_t i = 0; i < nb; i++)
            ti->quant(src + i * ti->block_size, d + (size_t)i * ti->block_bytes);
    }
    return REIN_OK;
}
