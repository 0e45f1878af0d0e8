/* test_gguf_quant.c - the tensor types: names and sizes, f16 / bf16 conversion, and quantization
 * and dequantization of every block format against gguf-py (an independent implementation), then
 * the default model's tensors against gguf-py's dequantization of the same file.
 *
 * The reference values live in tests/fixtures/gguf/{quant,model_samples}.gguf, written by
 * tools/gen_quant_fixture.py with gguf-py's GGUFWriter and gguf.quants. Both sides compute in f32
 * with the same operations in the same order, so every comparison is bit-exact (no tolerance).
 */
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QUANT_FIXTURE "tests/fixtures/gguf/quant.gguf"
#define SAMPLES_FIXTURE "tests/fixtures/gguf/model_samples.gguf"

static void test_types(void) {
    static const struct {
        int type;
        const char *name;
        int bs;
        size_t bb;
    } want[] = {{REIN_TYPE_F32, "F32", 1, 4},       {REIN_TYPE_F16, "F16", 1, 2},
                {REIN_TYPE_BF16, "BF16", 1, 2},     {REIN_TYPE_Q8_0, "Q8_0", 32, 34},
                {REIN_TYPE_Q4_0, "Q4_0", 32, 18},   {REIN_TYPE_Q4_1, "Q4_1", 32, 20},
                {REIN_TYPE_Q4_K, "Q4_K", 256, 144}, {REIN_TYPE_Q6_K, "Q6_K", 256, 210}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(!strcmp(rein_type_name(want[i].type), want[i].name));
        CHECK(rein_type_block_size(want[i].type) == want[i].bs);
        CHECK(rein_type_block_bytes(want[i].type) == want[i].bb);
        rein_type t;
        CHECK_OK(rein_type_from_name(want[i].name, &t));
        CHECK((int)t == want[i].type);
    }
    rein_type t;
    CHECK_OK(rein_type_from_name("q4_k", &t));
    CHECK(t == REIN_TYPE_Q4_K);
    CHECK_OK(rein_type_from_name("bf16", &t));
    CHECK(t == REIN_TYPE_BF16);
    CHECK_ERR(rein_type_from_name("Q5_0", &t), REIN_ERR_UNSUPPORTED, "Q5_0");
    CHECK_ERR(rein_type_from_name("F3", &t), REIN_ERR_UNSUPPORTED, "F3");
    CHECK(rein_type_name(6) == NULL && rein_type_block_size(6) == 0 &&
          rein_type_block_bytes(-1) == 0);

    float f[32];
    uint8_t b[64];
    CHECK_ERR(rein_dequantize(99, b, f, 32), REIN_ERR_UNSUPPORTED, "99");
    CHECK_ERR(rein_dequantize(REIN_TYPE_Q8_0, b, f, 33), REIN_ERR_INVALID, "block size");
    for (int i = 0; i < 32; i++)
        f[i] = (float)i;
    CHECK_ERR(rein_quantize(REIN_TYPE_Q6_K, f, b, 256), REIN_ERR_UNSUPPORTED, "Q6_K");
    f[5] = NAN;
    CHECK_ERR(rein_quantize(REIN_TYPE_Q4_0, f, b, 32), REIN_ERR_NUMERIC, "element 5");
}

/* Every half and bfloat16 value survives a round trip through f32; some values by hand. */
static void test_scalars(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int nan16 = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (!nan16 && rein_fp32_to_fp16(rein_fp16_to_fp32((uint16_t)h)) != h) bad16++;
        if (nan16 && !isnan(rein_fp16_to_fp32((uint16_t)h))) bad16++;
        int nanbf = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (!nanbf && rein_fp32_to_bf16(rein_bf16_to_fp32((uint16_t)h)) != h) badbf++;
    }
    CHECKF(bad16 == 0, "%d f16 values do not round-trip", bad16);
    CHECKF(badbf == 0, "%d bf16 values do not round-trip", badbf);
    CHECK(rein_fp32_to_fp16(1.0f) == 0x3c00);
    CHECK(rein_fp32_to_fp16(-2.0f) == 0xc000);
    CHECK(rein_fp32_to_fp16(65504.0f) == 0x7bff);
    CHECK(rein_fp32_to_fp16(65520.0f) == 0x7c00);        /* rounds up to infinity */
    CHECK(rein_fp32_to_fp16(0x1p-24f) == 0x0001);        /* smallest subnormal */
    CHECK(rein_fp32_to_fp16(0x1p-25f) == 0x0000);        /* tie to even: down to zero */
    CHECK(rein_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00); /* tie to even: down */
    CHECK(rein_fp32_to_fp16(1.0f + 0x3p-11f) == 0x3c02); /* tie to even: up */
    CHECK(rein_fp16_to_fp32(0x0001) == 0x1p-24f);
    CHECK(isnan(rein_fp16_to_fp32(rein_fp32_to_fp16(NAN))));
    CHECK(rein_fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80); /* tie to even: down */
    CHECK(rein_fp32_to_bf16(1.0f + 0x3p-8f) == 0x3f82); /* tie to even: up */
    CHECK(isnan(rein_bf16_to_fp32(rein_fp32_to_bf16(NAN))));

    /* the row conversion (vectorized where AVX-512 runs) against the scalar one: every f32 whose
     * low 13 bits are a tie, just below or above one, across every exponent, signs, NaN and
     * infinities, at lengths off the vector's 16 */
    enum { NR = 4099 };
    static float row[NR];
    static uint16_t got[NR];
    for (int i = 0; i < NR; i++) {
        const uint32_t low[] = {0x1000, 0x0fff, 0x1001, 0x3000, 0x0000, 0x1fff};
        uint32_t u = ((uint32_t)(i % 2) << 31) | ((uint32_t)((i / 2) % 256) << 23) |
                     ((uint32_t)(i * 2654435761u) & 0x7fe000u) | low[(i / 512) % 6];
        memcpy(&row[i], &u, 4);
    }
    for (int portable = 0; portable <= 1; portable++) {
        rein_matmul_force_portable(portable);
        for (int n = NR; n >= NR - 17; n -= 17) {
            int bad = 0;
            rein_fp32_to_fp16_row(got, row, n);
            for (int i = 0; i < n; i++) {
                uint16_t want = rein_fp32_to_fp16(row[i]);
                bad += got[i] != want && !(isnan(row[i]) && (got[i] & 0x7e00) == 0x7e00);
            }
            CHECKF(bad == 0, "%s: %d of %d f16 row conversions differ from the scalar one",
                   portable ? "portable" : "fast", bad, n);
        }
    }
    rein_matmul_force_portable(0);
}

/* Compare n floats bit for bit; report the first difference. */
static int same_bits(const char *what, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], 4) != 0) {
            fprintf(stderr, "%s: element %lld: got %.9g, want %.9g\n", what, (long long)i, a[i],
                    b[i]);
            return 0;
        }
    }
    return 1;
}

static void test_against_gguf_py(void) {
    rein_gguf *g;
    rein_status st = rein_gguf_open(QUANT_FIXTURE, &g);
    CHECK_OK(st);
    if (st) return;
    static const int quantizable[] = {REIN_TYPE_F32,  REIN_TYPE_F16,  REIN_TYPE_BF16,
                                      REIN_TYPE_Q8_0, REIN_TYPE_Q4_0, REIN_TYPE_Q4_1};
    static const int all[] = {REIN_TYPE_F32,  REIN_TYPE_F16,  REIN_TYPE_BF16, REIN_TYPE_Q8_0,
                              REIN_TYPE_Q4_0, REIN_TYPE_Q4_1, REIN_TYPE_Q4_K, REIN_TYPE_Q6_K};
    char name[64];
    float got[1024];
    uint8_t bytes[4096];
    for (size_t k = 0; k < sizeof quantizable / sizeof quantizable[0]; k++) {
        int type = quantizable[k];
        const char *tn = rein_type_name(type);
        snprintf(name, sizeof name, "%s.input", tn);
        const rein_gguf_tensor *in = rein_gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "%s.quant", tn);
        const rein_gguf_tensor *q = rein_gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "%s.dequant", tn);
        const rein_gguf_tensor *dq = rein_gguf_find_tensor(g, name);
        CHECK(in && q && dq);
        if (!in || !q || !dq) continue;
        CHECK(in->type == REIN_TYPE_F32 && (int)q->type == type && in->n_elements == 256);
        float x[256];
        memcpy(x, in->data, sizeof x);
        /* quantize: the same bytes as gguf.quants.quantize */
        CHECK_OK(rein_quantize(type, x, bytes, 256));
        CHECKF(!memcmp(bytes, q->data, q->n_bytes), "quantize to %s differs from gguf-py", tn);
        /* dequantize gguf-py's bytes: the same floats as gguf.quants.dequantize */
        CHECK_OK(rein_gguf_tensor_f32(q, got));
        CHECKF(same_bits(tn, got, dq->data, 256), "dequantize %s differs from gguf-py", tn);
    }
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        int type = all[k];
        const char *tn = rein_type_name(type);
        snprintf(name, sizeof name, "%s.rand", tn);
        const rein_gguf_tensor *r = rein_gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "%s.rand_dq", tn);
        const rein_gguf_tensor *dq = rein_gguf_find_tensor(g, name);
        CHECK(r && dq && (int)r->type == type && r->n_elements == dq->n_elements);
        if (!r || !dq || r->n_elements > 1024) continue;
        CHECK_OK(rein_dequantize(type, r->data, got, r->n_elements));
        CHECKF(same_bits(tn, got, dq->data, r->n_elements),
               "dequantize random %s blocks differs from gguf-py", tn);
    }
    rein_gguf_free(g);
}

/* The default model: 272 tensors, all dequantizing to finite values, and a few hundred values
 * equal to gguf-py's. */
static void test_default_model_tensors(void) {
    const char *path = test_default_model();
    if (!path) {
        printf("SKIP part: default model absent (run `make model`)\n");
        return;
    }
    rein_gguf *g;
    rein_status st = rein_gguf_open(path, &g);
    CHECK_OK(st);
    if (st) return;
    CHECK(rein_gguf_n_tensors(g) == 272);
    int64_t max_n = 0;
    for (int64_t i = 0; i < rein_gguf_n_tensors(g); i++)
        if (rein_gguf_tensor_at(g, i)->n_elements > max_n)
            max_n = rein_gguf_tensor_at(g, i)->n_elements;
    float *buf = malloc((size_t)max_n * sizeof *buf);
    int64_t non_finite = 0;
    for (int64_t i = 0; i < rein_gguf_n_tensors(g); i++) {
        const rein_gguf_tensor *t = rein_gguf_tensor_at(g, i);
        CHECK_OK(rein_gguf_tensor_f32(t, buf));
        for (int64_t j = 0; j < t->n_elements; j++)
            non_finite += !isfinite(buf[j]);
    }
    CHECKF(non_finite == 0, "%lld non-finite values", (long long)non_finite);

    rein_gguf *s;
    st = rein_gguf_open(SAMPLES_FIXTURE, &s);
    CHECK_OK(st);
    int n_cmp = 0;
    for (int64_t k = 0; !st && k < rein_gguf_n_kv(s); k++) {
        const char *key = rein_gguf_kv_key(s, k);
        size_t kl = strlen(key);
        if (strncmp(key, "sample.", 7) || kl < 13 || strcmp(key + kl - 6, ".index")) continue;
        char tname[128], vkey[160];
        snprintf(tname, sizeof tname, "%.*s", (int)(kl - 13), key + 7);
        snprintf(vkey, sizeof vkey, "sample.%s.value", tname);
        const rein_gguf_tensor *t = rein_gguf_find_tensor(g, tname);
        rein_gguf_value_type it, vt;
        int64_t ni, nv;
        const void *ip, *vp;
        CHECK(t != NULL);
        CHECK_OK(rein_gguf_kv_arr(s, k, &it, &ni, &ip));
        CHECK_OK(rein_gguf_get_arr(s, vkey, &vt, &nv, &vp));
        if (!t || it != REIN_GGUF_UINT64 || vt != REIN_GGUF_FLOAT32 || ni != nv) {
            CHECK(0);
            continue;
        }
        CHECK_OK(rein_gguf_tensor_f32(t, buf));
        for (int64_t j = 0; j < ni; j++) {
            uint64_t idx;
            float want;
            memcpy(&idx, (const char *)ip + 8 * j, 8);
            memcpy(&want, (const char *)vp + 4 * j, 4);
            CHECKF(idx < (uint64_t)t->n_elements && !memcmp(&buf[idx], &want, 4),
                   "%s[%llu]: got %.9g, gguf-py %.9g", tname, (unsigned long long)idx, buf[idx],
                   want);
            n_cmp++;
        }
    }
    CHECKF(n_cmp >= 400, "only %d sampled values compared", n_cmp);
    printf("default model: 272 tensors finite, %d values equal to gguf-py's\n", n_cmp);
    rein_gguf_free(s);
    free(buf);
    rein_gguf_free(g);
}

int main(void) {
    test_types();
    test_scalars();
    test_against_gguf_py();
    test_default_model_tensors();
    return test_finish();
}
