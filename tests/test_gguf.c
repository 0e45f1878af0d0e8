/* test_gguf.c - the GGUF reader, validator and writer.
 *
 * 1. Round trip: write a file with a key of every value type and tensors of every type, read it
 *    back and check every value; re-write it from what was read and check the bytes are identical.
 * 2. The reader on a file rein did not write (fixtures/gguf/quant.gguf, from gguf-py), v2 and v3.
 * 3. Hostile files: a small good file, byte-patched field by field (huge counts and lengths, bad
 *    dimensions, types, offsets, alignment, magic, version) and truncated at every byte; each must
 *    fail with the right status and a message naming the field.
 * 4. Every allocation failing in turn while opening and while writing: REIN_ERR_NOMEM, no crash,
 *    no leak (under `make asan`).
 * 5. Real files when present: the tokenizer vocabularies in ../shared/data and the default model.
 */
#include "base/base.h"
#include "testutil.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE "tests/fixtures/gguf/quant.gguf"

/* ---- helpers ------------------------------------------------------------------------------ */

static char *tmp_path(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", test_tmpdir(), name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *n) {
    rein_buf b = {0};
    if (rein_read_file(path, &b)) {
        *n = 0;
        return NULL;
    }
    *n = b.len;
    return (uint8_t *)b.data; /* freed with rein_free */
}

static void spit(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n)) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

/* Offset of the first occurrence of the string s in the file bytes (the test's names are unique).
 */
static size_t find(const uint8_t *data, size_t n, const char *s) {
    size_t l = strlen(s);
    for (size_t i = 0; i + l <= n; i++)
        if (!memcmp(data + i, s, l)) return i;
    fprintf(stderr, "'%s' not found in the test file\n", s);
    exit(2);
}

static void put_u32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}

static void put_u64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    rein_free(x);
    rein_free(y);
    return same;
}

/* ---- 1. round trip ------------------------------------------------------------------------ */

#define N_TOKENS 5
static const char *const tokens[N_TOKENS] = {"hello", "", "wörld", "a\nb", "<|im_end|>"};

static float ramp(int64_t i) {
    return (float)((i * 37 % 101) - 50) * 0.037f;
}

/* The tensors of the round-trip file: name, type, shape (PyTorch order). */
static const struct {
    const char *name;
    rein_type type;
    int n_dims;
    int64_t shape[4];
} rt_tensors[] = {
    {"f32.vec", REIN_TYPE_F32, 1, {7}},           {"f16.mat", REIN_TYPE_F16, 2, {3, 5}},
    {"bf16.cube", REIN_TYPE_BF16, 3, {2, 3, 4}},  {"q8_0.w", REIN_TYPE_Q8_0, 2, {3, 64}},
    {"q4_0.w", REIN_TYPE_Q4_0, 4, {1, 2, 1, 32}}, {"q4_1.w", REIN_TYPE_Q4_1, 2, {2, 96}},
};
#define N_RT (int)(sizeof rt_tensors / sizeof rt_tensors[0])

static void write_round_trip(const char *path) {
    rein_gguf_writer *w;
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_writer_set_alignment(w, 64));
    CHECK_OK(rein_gguf_set_str(w, "general.architecture", "llama"));
    uint8_t u8 = 250;
    int8_t i8 = -120;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    int64_t i64 = -1234567890123LL;
    double f64 = 3.0e-200;
    CHECK_OK(rein_gguf_set_scalar(w, "t.u8", REIN_GGUF_UINT8, &u8));
    CHECK_OK(rein_gguf_set_scalar(w, "t.i8", REIN_GGUF_INT8, &i8));
    CHECK_OK(rein_gguf_set_scalar(w, "t.u16", REIN_GGUF_UINT16, &u16));
    CHECK_OK(rein_gguf_set_scalar(w, "t.i16", REIN_GGUF_INT16, &i16));
    CHECK_OK(rein_gguf_set_u32(w, "t.u32", 7)); /* replaced below: keeps its place */
    CHECK_OK(rein_gguf_set_i32(w, "t.i32", -7));
    CHECK_OK(rein_gguf_set_f32(w, "t.f32", 1.5f));
    CHECK_OK(rein_gguf_set_bool(w, "t.bool", 1));
    CHECK_OK(rein_gguf_set_str(w, "t.str", "ünïcode\ttext"));
    CHECK_OK(rein_gguf_set_u64(w, "t.u64", UINT64_MAX));
    CHECK_OK(rein_gguf_set_scalar(w, "t.i64", REIN_GGUF_INT64, &i64));
    CHECK_OK(rein_gguf_set_scalar(w, "t.f64", REIN_GGUF_FLOAT64, &f64));
    CHECK_OK(rein_gguf_set_u32(w, "t.u32", 4000000000u));
    uint8_t au8[3] = {1, 2, 3};
    int32_t ai32[4] = {-1, 0, 1, INT32_MAX};
    float af32[2] = {0.25f, -8.0f};
    uint8_t abool[2] = {1, 0};
    int64_t ai64[2] = {INT64_MIN, 5};
    double af64[1] = {-0.5};
    CHECK_OK(rein_gguf_set_arr(w, "a.u8", REIN_GGUF_UINT8, au8, 3));
    CHECK_OK(rein_gguf_set_arr(w, "a.i32", REIN_GGUF_INT32, ai32, 4));
    CHECK_OK(rein_gguf_set_arr(w, "a.f32", REIN_GGUF_FLOAT32, af32, 2));
    CHECK_OK(rein_gguf_set_arr(w, "a.bool", REIN_GGUF_BOOL, abool, 2));
    CHECK_OK(rein_gguf_set_arr(w, "a.i64", REIN_GGUF_INT64, ai64, 2));
    CHECK_OK(rein_gguf_set_arr(w, "a.f64", REIN_GGUF_FLOAT64, af64, 1));
    CHECK_OK(rein_gguf_set_arr(w, "a.empty", REIN_GGUF_UINT16, NULL, 0));
    CHECK_OK(rein_gguf_set_arr_str(w, "a.str", tokens, NULL, N_TOKENS));
    size_t lens[2] = {3, 1};
    const char *raw[2] = {"x\0y", "z"};
    CHECK_OK(rein_gguf_set_arr_str(w, "a.str_nul", raw, lens, 2));
    /* bad arguments */
    CHECK_ERR(rein_gguf_writer_set_alignment(w, 48), REIN_ERR_INVALID, "power of two");
    CHECK_ERR(rein_gguf_set_arr(w, "a.bad", REIN_GGUF_STRING, au8, 1), REIN_ERR_INVALID, "a.bad");
    CHECK_ERR(rein_gguf_set_scalar(w, "a.bad", REIN_GGUF_ARRAY, au8), REIN_ERR_INVALID, "a.bad");

    for (int k = 0; k < N_RT; k++) {
        int64_t n = 1;
        for (int d = 0; d < rt_tensors[k].n_dims; d++)
            n *= rt_tensors[k].shape[d];
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++)
            x[i] = ramp(i + k);
        CHECK_OK(rein_gguf_add_tensor(w, rt_tensors[k].name, rt_tensors[k].type,
                                      rt_tensors[k].n_dims, rt_tensors[k].shape, x));
        free(x);
    }
    /* a raw Q6_K tensor: one block of arbitrary bytes with a finite scale */
    uint8_t q6[210];
    for (int i = 0; i < 210; i++)
        q6[i] = (uint8_t)(i * 7);
    put_u32(q6 + 206, 0x2e660000u); /* bytes 208-209: f16 0x2e66 */
    int64_t q6_shape[1] = {256};
    CHECK_OK(rein_gguf_add_tensor_raw(w, "q6_k.raw", REIN_TYPE_Q6_K, 1, q6_shape, q6, 210));
    CHECK_ERR(rein_gguf_add_tensor_raw(w, "q6_k.bad", REIN_TYPE_Q6_K, 1, q6_shape, q6, 209),
              REIN_ERR_INVALID, "209 bytes");
    float x32[32] = {0};
    int64_t s33[2] = {2, 33}, s0[1] = {0};
    CHECK_ERR(rein_gguf_add_tensor(w, "bad", REIN_TYPE_Q8_0, 2, s33, x32), REIN_ERR_INVALID,
              "block size");
    CHECK_ERR(rein_gguf_add_tensor(w, "bad", REIN_TYPE_F32, 1, s0, x32), REIN_ERR_INVALID,
              "dimension 0");
    CHECK_ERR(rein_gguf_add_tensor(w, "bad", REIN_TYPE_F32, 5, s33, x32), REIN_ERR_INVALID,
              "n_dims");
    CHECK_ERR(rein_gguf_add_tensor(w, "f32.vec", REIN_TYPE_F32, 1, s33, x32), REIN_ERR_INVALID,
              "twice");
    CHECK_ERR(rein_gguf_add_tensor(w, "bad", REIN_TYPE_Q4_K, 1, q6_shape, x32),
              REIN_ERR_UNSUPPORTED, "Q4_K");
    CHECK_ERR(rein_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), REIN_ERR_IO, "nonexistent");
    CHECK_OK(rein_gguf_writer_write(w, path));
    rein_gguf_writer_free(w);
}

static void check_round_trip(const char *path) {
    rein_gguf *g;
    rein_status st = rein_gguf_open(path, &g);
    CHECK_OK(st);
    if (st) return;
    CHECK(rein_gguf_version(g) == 3);
    CHECK(rein_gguf_n_kv(g) == 23);
    CHECK(!strcmp(rein_gguf_kv_key(g, 0), "general.alignment"));
    CHECK(!strcmp(rein_gguf_kv_key(g, 5), "t.i16") && rein_gguf_kv_type(g, 5) == REIN_GGUF_INT16);
    CHECK(!strcmp(rein_gguf_kv_key(g, 6), "t.u32")); /* replaced, kept its place */
    CHECK(rein_gguf_kv_key(g, 23) == NULL && rein_gguf_find_kv(g, "nope") == -1);

    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f32;
    double f64;
    int b;
    const char *s;
    size_t len;
    CHECK_OK(rein_gguf_get_u32(g, "general.alignment", &u32));
    CHECK(u32 == 64);
    CHECK_OK(rein_gguf_get_u32(g, "t.u32", &u32));
    CHECK(u32 == 4000000000u);
    CHECK_OK(rein_gguf_get_u32(g, "t.u8", &u32));
    CHECK(u32 == 250);
    CHECK_OK(rein_gguf_get_i64(g, "t.i8", &i64));
    CHECK(i64 == -120);
    CHECK_OK(rein_gguf_get_i64(g, "t.u16", &i64));
    CHECK(i64 == 65000);
    CHECK_OK(rein_gguf_get_i64(g, "t.i16", &i64));
    CHECK(i64 == -32000);
    CHECK_OK(rein_gguf_get_i64(g, "t.i32", &i64));
    CHECK(i64 == -7);
    CHECK_OK(rein_gguf_get_i64(g, "t.i64", &i64));
    CHECK(i64 == -1234567890123LL);
    CHECK_OK(rein_gguf_get_f32(g, "t.f32", &f32));
    CHECK(f32 == 1.5f);
    CHECK_OK(rein_gguf_get_f32(g, "t.f64", &f32));
    CHECK(f32 == 0.0f); /* 3e-200 narrowed */
    CHECK_OK(rein_gguf_get_bool(g, "t.bool", &b));
    CHECK(b == 1);
    CHECK_OK(rein_gguf_get_str(g, "t.str", &s, &len));
    CHECK(len == strlen("ünïcode\ttext") && !memcmp(s, "ünïcode\ttext", len));
    /* by index, widened */
    int64_t k = rein_gguf_find_kv(g, "t.u64");
    CHECK_OK(rein_gguf_kv_uint(g, k, &u64));
    CHECK(u64 == UINT64_MAX);
    CHECK_ERR(rein_gguf_kv_int(g, k, &i64), REIN_ERR_RANGE, "does not fit in int64");
    CHECK_OK(rein_gguf_kv_int(g, rein_gguf_find_kv(g, "t.bool"), &i64));
    CHECK(i64 == 1);
    CHECK_OK(rein_gguf_kv_float(g, rein_gguf_find_kv(g, "t.f64"), &f64));
    CHECK(f64 == 3.0e-200);
    CHECK_ERR(rein_gguf_kv_uint(g, rein_gguf_find_kv(g, "t.i8"), &u64), REIN_ERR_RANGE, "-120");
    CHECK_OK(rein_gguf_kv_str(g, rein_gguf_find_kv(g, "general.architecture"), &s, &len));
    CHECK(len == 5 && !memcmp(s, "llama", 5));
    CHECK_ERR(rein_gguf_kv_int(g, 99, &i64), REIN_ERR_RANGE, "index 99");
    /* getter errors */
    CHECK_ERR(rein_gguf_get_u32(g, "missing.key", &u32), REIN_ERR_RANGE, "missing.key");
    CHECK_ERR(rein_gguf_get_u32(g, "t.i8", &u32), REIN_ERR_RANGE, "t.i8");
    CHECK_ERR(rein_gguf_get_u32(g, "t.u64", &u32), REIN_ERR_RANGE, "uint32");
    CHECK_ERR(rein_gguf_get_u32(g, "t.str", &u32), REIN_ERR_FORMAT, "t.str");
    CHECK_ERR(rein_gguf_get_i64(g, "t.bool", &i64), REIN_ERR_FORMAT, "bool");
    CHECK_ERR(rein_gguf_get_f32(g, "t.u8", &f32), REIN_ERR_FORMAT, "float");
    CHECK_ERR(rein_gguf_get_bool(g, "t.u8", &b), REIN_ERR_FORMAT, "t.u8");
    CHECK_ERR(rein_gguf_get_str(g, "a.u8", &s, &len), REIN_ERR_FORMAT, "array");
    CHECK_ERR(rein_gguf_get_arr(g, "t.str", NULL, NULL, NULL), REIN_ERR_FORMAT, "string");
    /* arrays */
    rein_gguf_value_type at;
    int64_t n;
    const void *data;
    CHECK_OK(rein_gguf_get_arr(g, "a.u8", &at, &n, &data));
    CHECK(at == REIN_GGUF_UINT8 && n == 3 && !memcmp(data, "\1\2\3", 3));
    int32_t ai32[4];
    CHECK_OK(rein_gguf_get_arr(g, "a.i32", &at, &n, &data));
    memcpy(ai32, data, sizeof ai32);
    CHECK(at == REIN_GGUF_INT32 && n == 4 && ai32[0] == -1 && ai32[3] == INT32_MAX);
    float af32[2];
    CHECK_OK(rein_gguf_get_arr(g, "a.f32", &at, &n, &data));
    memcpy(af32, data, sizeof af32);
    CHECK(at == REIN_GGUF_FLOAT32 && n == 2 && af32[0] == 0.25f && af32[1] == -8.0f);
    CHECK_OK(rein_gguf_get_arr(g, "a.bool", &at, &n, &data));
    CHECK(at == REIN_GGUF_BOOL && n == 2 && !memcmp(data, "\1\0", 2));
    int64_t ai64[2];
    CHECK_OK(rein_gguf_get_arr(g, "a.i64", &at, &n, &data));
    memcpy(ai64, data, sizeof ai64);
    CHECK(at == REIN_GGUF_INT64 && n == 2 && ai64[0] == INT64_MIN && ai64[1] == 5);
    double af64;
    CHECK_OK(rein_gguf_get_arr(g, "a.f64", &at, &n, &data));
    memcpy(&af64, data, 8);
    CHECK(at == REIN_GGUF_FLOAT64 && n == 1 && af64 == -0.5);
    CHECK_OK(rein_gguf_get_arr(g, "a.empty", &at, &n, &data));
    CHECK(at == REIN_GGUF_UINT16 && n == 0);
    CHECK_OK(rein_gguf_get_arr(g, "a.str", &at, &n, &data));
    CHECK(at == REIN_GGUF_STRING && n == N_TOKENS && data == NULL);
    for (int i = 0; i < N_TOKENS; i++) {
        CHECK_OK(rein_gguf_get_arr_str(g, "a.str", i, &s, &len));
        CHECK(len == strlen(tokens[i]) && !memcmp(s, tokens[i], len));
    }
    CHECK_ERR(rein_gguf_get_arr_str(g, "a.str", N_TOKENS, &s, &len), REIN_ERR_RANGE, "index 5");
    CHECK_ERR(rein_gguf_get_arr_str(g, "a.u8", 0, &s, &len), REIN_ERR_FORMAT, "array of strings");
    CHECK_OK(rein_gguf_kv_arr_str(g, rein_gguf_find_kv(g, "a.str_nul"), 0, &s, &len));
    CHECK(len == 3 && !memcmp(s, "x\0y", 3));

    /* tensors: shape, placement, values */
    CHECK(rein_gguf_n_tensors(g) == N_RT + 1);
    CHECK(rein_gguf_tensor_at(g, N_RT + 1) == NULL && rein_gguf_find_tensor(g, "nope") == NULL);
    for (int t = 0; t < N_RT; t++) {
        const rein_gguf_tensor *ti = rein_gguf_tensor_at(g, t);
        CHECK(ti == rein_gguf_find_tensor(g, rt_tensors[t].name));
        CHECK(!strcmp(ti->name, rt_tensors[t].name) && ti->type == rt_tensors[t].type);
        CHECK(ti->n_dims == rt_tensors[t].n_dims);
        int64_t n_el = 1;
        for (int d = 0; d < ti->n_dims; d++) {
            CHECK(ti->shape[d] == rt_tensors[t].shape[d]);
            n_el *= ti->shape[d];
        }
        CHECK(ti->n_elements == n_el && ti->offset % 64 == 0 &&
              (const uint8_t *)ti->data - (const uint8_t *)NULL != 0);
        /* the values: what quantizing then dequantizing the input gives */
        float *x = malloc((size_t)n_el * 4), *want = malloc((size_t)n_el * 4),
              *got = malloc((size_t)n_el * 4);
        void *q = malloc((size_t)n_el * 4);
        for (int64_t i = 0; i < n_el; i++)
            x[i] = ramp(i + t);
        CHECK_OK(rein_quantize(ti->type, x, q, n_el));
        CHECK(!memcmp(q, ti->data, ti->n_bytes));
        CHECK_OK(rein_dequantize(ti->type, q, want, n_el));
        CHECK_OK(rein_gguf_tensor_f32(ti, got));
        CHECK(!memcmp(want, got, (size_t)n_el * 4));
        if (ti->type == REIN_TYPE_F32) CHECK(!memcmp(x, got, (size_t)n_el * 4));
        free(x), free(want), free(got), free(q);
    }
    const rein_gguf_tensor *q6 = rein_gguf_find_tensor(g, "q6_k.raw");
    CHECK(q6 && q6->type == REIN_TYPE_Q6_K && q6->n_bytes == 210 && q6->shape[0] == 256);
    rein_gguf_free(g);
}

/* Re-write a file from what was read: copy_kv + add_tensor_raw. */
static rein_status rewrite(const char *src, const char *dst) {
    rein_gguf *g;
    REIN_TRY(rein_gguf_open(src, &g));
    rein_gguf_writer *w = NULL;
    rein_status st = rein_gguf_writer_new(&w);
    uint32_t align = 32;
    if (!st && rein_gguf_find_kv(g, "general.alignment") >= 0) {
        st = rein_gguf_get_u32(g, "general.alignment", &align);
        if (!st) st = rein_gguf_writer_set_alignment(w, align);
    }
    if (!st) st = rein_gguf_copy_kv(w, g);
    for (int64_t i = 0; !st && i < rein_gguf_n_tensors(g); i++) {
        const rein_gguf_tensor *t = rein_gguf_tensor_at(g, i);
        st =
            rein_gguf_add_tensor_raw(w, t->name, t->type, t->n_dims, t->shape, t->data, t->n_bytes);
    }
    if (!st) st = rein_gguf_writer_write(w, dst);
    rein_gguf_writer_free(w);
    rein_gguf_free(g);
    return st;
}

static void test_round_trip(void) {
    const char *a = tmp_path("rt_a.gguf"), *b = tmp_path("rt_b.gguf");
    write_round_trip(a);
    check_round_trip(a);
    CHECK_OK(rewrite(a, b));
    CHECKF(same_file(a, b), "%s and %s differ", a, b);
    /* a file written by gguf-py: read, re-written by rein, read again: same keys and tensors */
    const char *c = tmp_path("rt_c.gguf");
    CHECK_OK(rewrite(FIXTURE, c));
    rein_gguf *g1, *g2;
    CHECK_OK(rein_gguf_open(FIXTURE, &g1));
    CHECK_OK(rein_gguf_open(c, &g2));
    if (g1 && g2) {
        CHECK(rein_gguf_n_kv(g1) == rein_gguf_n_kv(g2));
        CHECK(rein_gguf_n_tensors(g1) == rein_gguf_n_tensors(g2));
        for (int64_t i = 0; i < rein_gguf_n_tensors(g1) && i < rein_gguf_n_tensors(g2); i++) {
            const rein_gguf_tensor *x = rein_gguf_tensor_at(g1, i), *y = rein_gguf_tensor_at(g2, i);
            CHECK(!strcmp(x->name, y->name) && x->n_bytes == y->n_bytes &&
                  !memcmp(x->data, y->data, x->n_bytes));
        }
    }
    rein_gguf_free(g1);
    rein_gguf_free(g2);
    /* and that file re-written again is byte-identical to rein's first re-write */
    const char *d = tmp_path("rt_d.gguf");
    CHECK_OK(rewrite(c, d));
    CHECK(same_file(c, d));
    /* an empty writer makes a valid empty file */
    rein_gguf_writer *w;
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_writer_write(w, tmp_path("empty.gguf")));
    rein_gguf_writer_free(w);
    rein_gguf *g;
    CHECK_OK(rein_gguf_open(tmp_path("empty.gguf"), &g));
    CHECK(g && rein_gguf_n_kv(g) == 0 && rein_gguf_n_tensors(g) == 0);
    rein_gguf_free(g);
}

/* ---- 2. the reader on gguf-py's file; version 2 ------------------------------------------- */

static void test_foreign_file(void) {
    rein_gguf *g;
    rein_status st = rein_gguf_open(FIXTURE, &g);
    CHECK_OK(st);
    if (st) return;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f32;
    double f64;
    int b;
    const char *s;
    size_t len;
    CHECK_OK(rein_gguf_get_u32(g, "test.u8", &u32));
    CHECK(u32 == 200);
    CHECK_OK(rein_gguf_get_i64(g, "test.i8", &i64));
    CHECK(i64 == -100);
    CHECK_OK(rein_gguf_get_u32(g, "test.u16", &u32));
    CHECK(u32 == 60000);
    CHECK_OK(rein_gguf_get_i64(g, "test.i16", &i64));
    CHECK(i64 == -30000);
    CHECK_OK(rein_gguf_get_u32(g, "test.u32", &u32));
    CHECK(u32 == 4000000000u);
    CHECK_OK(rein_gguf_get_i64(g, "test.i32", &i64));
    CHECK(i64 == -2000000000);
    CHECK_OK(rein_gguf_get_f32(g, "test.f32", &f32));
    CHECK(f32 == 0.15625f);
    CHECK_OK(rein_gguf_get_bool(g, "test.bool", &b));
    CHECK(b == 1);
    CHECK_OK(rein_gguf_get_str(g, "test.str", &s, &len));
    CHECK(len == strlen("héllo gguf") && !memcmp(s, "héllo gguf", len));
    CHECK_OK(rein_gguf_kv_uint(g, rein_gguf_find_kv(g, "test.u64"), &u64));
    CHECK(u64 == 18000000000000000000u);
    CHECK_OK(rein_gguf_get_i64(g, "test.i64", &i64));
    CHECK(i64 == -9000000000000000000LL);
    CHECK_OK(rein_gguf_kv_float(g, rein_gguf_find_kv(g, "test.f64"), &f64));
    CHECK(f64 == -2.5e300);
    static const struct {
        const char *key;
        rein_gguf_value_type type;
        int64_t n;
        const char *bytes;
        size_t nb;
    } arrs[] = {
        {"test.arr_u8", REIN_GGUF_UINT8, 3, "\x01\x02\xff", 3},
        {"test.arr_i8", REIN_GGUF_INT8, 3, "\xff\x02\x80", 3},
        {"test.arr_u16", REIN_GGUF_UINT16, 2, "\x01\x00\xff\xff", 4},
        {"test.arr_i16", REIN_GGUF_INT16, 2, "\x00\x80\x07\x00", 4},
        {"test.arr_u32", REIN_GGUF_UINT32, 2, "\x01\0\0\0\xff\xff\xff\xff", 8},
        {"test.arr_i32", REIN_GGUF_INT32, 3, "\xfb\xff\xff\xff\x06\0\0\0\xf9\xff\xff\xff", 12},
        {"test.arr_f32", REIN_GGUF_FLOAT32, 2, "\0\0\0\x3f\0\0\xa0\xbf", 8},
        {"test.arr_bool", REIN_GGUF_BOOL, 3, "\1\0\1", 3},
        {"test.arr_u64", REIN_GGUF_UINT64, 1, "\xff\xff\xff\xff\xff\xff\xff\xff", 8},
        {"test.arr_i64", REIN_GGUF_INT64, 2, "\0\0\0\0\0\0\0\x80\3\0\0\0\0\0\0\0", 16},
        {"test.arr_f64", REIN_GGUF_FLOAT64, 2, NULL, 16},
    };
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        rein_gguf_value_type at;
        int64_t n;
        const void *data;
        CHECK_OK(rein_gguf_get_arr(g, arrs[i].key, &at, &n, &data));
        CHECKF(at == arrs[i].type && n == arrs[i].n, "%s", arrs[i].key);
        if (arrs[i].bytes)
            CHECKF(data && !memcmp(data, arrs[i].bytes, arrs[i].nb), "%s", arrs[i].key);
    }
    double d2[2];
    const void *data;
    CHECK_OK(rein_gguf_get_arr(g, "test.arr_f64", NULL, NULL, &data));
    memcpy(d2, data, 16);
    CHECK(d2[0] == 1e-300 && d2[1] == 2.0);
    const char *want[3] = {"a", "", "ccc"};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(rein_gguf_get_arr_str(g, "test.arr_str", i, &s, &len));
        CHECK(len == strlen(want[i]) && !memcmp(s, want[i], len));
    }
    rein_gguf_free(g);
}

/* ---- 3. hostile files --------------------------------------------------------------------- */

/* A small good file: two keys (a string array, a u32) and two tensors, alignment set explicitly. */
static const char *small_file(void) {
    const char *path = tmp_path("small.gguf");
    rein_gguf_writer *w;
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_writer_set_alignment(w, 32));
    const char *strs[2] = {"x", "yz"};
    CHECK_OK(rein_gguf_set_arr_str(w, "key.str", strs, NULL, 2));
    CHECK_OK(rein_gguf_set_u32(w, "key.num", 42));
    float x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (float)i;
    int64_t s1[2] = {2, 32}, s2[1] = {8};
    CHECK_OK(rein_gguf_add_tensor(w, "tensor.one", REIN_TYPE_Q8_0, 2, s1, x));
    CHECK_OK(rein_gguf_add_tensor(w, "tensor.two", REIN_TYPE_F32, 1, s2, x));
    CHECK_OK(rein_gguf_writer_write(w, path));
    rein_gguf_writer_free(w);
    return path;
}

/* Offsets of the fields of the small file, found from its unique names. */
typedef struct layout {
    size_t align_val, strs_key, strs_elem_type, strs_len, num_type, num_val;
    size_t t1_name, t1_ndims, t1_ne0, t1_ne1, t1_type, t1_off;
    size_t t2_name, t2_ndims, t2_ne0, t2_type, t2_off;
} layout;

static layout find_layout(const uint8_t *f, size_t n) {
    layout l;
    l.align_val = find(f, n, "general.alignment") + 17 + 4;
    l.strs_key = find(f, n, "key.str") - 8;
    l.strs_elem_type = l.strs_key + 8 + 7 + 4;
    l.strs_len = l.strs_elem_type + 4;
    l.num_type = find(f, n, "key.num") + 7;
    l.num_val = l.num_type + 4;
    l.t1_name = find(f, n, "tensor.one");
    l.t1_ndims = l.t1_name + 10;
    l.t1_ne0 = l.t1_ndims + 4;
    l.t1_ne1 = l.t1_ne0 + 8;
    l.t1_type = l.t1_ne1 + 8;
    l.t1_off = l.t1_type + 4;
    l.t2_name = find(f, n, "tensor.two");
    l.t2_ndims = l.t2_name + 10;
    l.t2_ne0 = l.t2_ndims + 4;
    l.t2_type = l.t2_ne0 + 8;
    l.t2_off = l.t2_type + 4;
    return l;
}

typedef enum { P8, P32, P64, PBYTES } patch_kind;

/* Patch one field of a copy of the good file, open it, and check status and message. */
static void expect_bad(const uint8_t *good, size_t n, const char *what, patch_kind kind, size_t at,
                       uint64_t v, const char *bytes, rein_status want, const char *needle) {
    uint8_t *f = malloc(n);
    memcpy(f, good, n);
    if (kind == P8)
        f[at] = (uint8_t)v;
    else if (kind == P32)
        put_u32(f + at, (uint32_t)v);
    else if (kind == P64)
        put_u64(f + at, v);
    else
        memcpy(f + at, bytes, strlen(bytes));
    const char *path = tmp_path("bad.gguf");
    spit(path, f, n);
    free(f);
    rein_gguf *g = (rein_gguf *)&g; /* must be reset to NULL on failure */
    rein_status st = rein_gguf_open(path, &g);
    CHECK_ERR(st, want, needle);
    CHECKF(st == REIN_OK || g == NULL, "%s: out-pointer not cleared", what);
    CHECKF(st == REIN_OK || strstr(rein_last_error(), path), "%s: message lacks the path: %s", what,
           rein_last_error());
    if (st != want) fprintf(stderr, "  (case: %s)\n", what);
    if (st == REIN_OK) rein_gguf_free(g);
}

static void test_hostile(void) {
    const char *path = small_file();
    size_t n;
    uint8_t *good = slurp(path, &n);
    CHECK(good != NULL);
    if (!good) return;
    layout l = find_layout(good, n);
    rein_gguf *g;
    CHECK_OK(rein_gguf_open(path, &g));
    uint64_t t1_rel = 0, t2_rel = 0;
    memcpy(&t1_rel, good + l.t1_off, 8);
    memcpy(&t2_rel, good + l.t2_off, 8);
    CHECK(g && rein_gguf_n_tensors(g) == 2 && t1_rel == 0 && t2_rel == 96);
    rein_gguf_free(g);
    const uint64_t huge = 1ULL << 62;
    char msg[64];

    expect_bad(good, n, "magic", PBYTES, 0, 0, "GGUX", REIN_ERR_FORMAT, "offset 0: magic");
    expect_bad(good, n, "version 1", P32, 4, 1, NULL, REIN_ERR_UNSUPPORTED, "version 1 ");
    expect_bad(good, n, "version 4", P32, 4, 4, NULL, REIN_ERR_UNSUPPORTED, "version 4 ");
    expect_bad(good, n, "big-endian", P32, 4, 0x03000000, NULL, REIN_ERR_UNSUPPORTED, "big-endian");
    snprintf(msg, sizeof msg, "offset 8: tensor_count %llu cannot fit", (unsigned long long)huge);
    expect_bad(good, n, "tensor count", P64, 8, huge, NULL, REIN_ERR_FORMAT, msg);
    expect_bad(good, n, "tensor count max", P64, 8, UINT64_MAX, NULL, REIN_ERR_FORMAT,
               "tensor_count");
    expect_bad(good, n, "kv count", P64, 16, huge, NULL, REIN_ERR_FORMAT, "offset 16: kv_count");
    expect_bad(good, n, "tensor count too big by one", P64, 8, 3, NULL, REIN_ERR_FORMAT,
               "tensor 2 name");
    expect_bad(good, n, "key length", P64, l.strs_key, huge, NULL, REIN_ERR_FORMAT, "key 1 length");
    expect_bad(good, n, "string element length", P64, l.strs_len + 8, huge, NULL, REIN_ERR_FORMAT,
               "key 'key.str' string 0 length");
    expect_bad(good, n, "array length", P64, l.strs_len, huge, NULL, REIN_ERR_FORMAT,
               "key 'key.str' array length");
    expect_bad(good, n, "nested array", P32, l.strs_elem_type, REIN_GGUF_ARRAY, NULL,
               REIN_ERR_UNSUPPORTED, "arrays of arrays");
    expect_bad(good, n, "unknown array type", P32, l.strs_elem_type, 13, NULL, REIN_ERR_UNSUPPORTED,
               "element type 13");
    expect_bad(good, n, "unknown kv type", P32, l.num_type, 13, NULL, REIN_ERR_UNSUPPORTED,
               "key 'key.num' has unknown value type 13");
    expect_bad(good, n, "bad alignment", P32, l.align_val, 48, NULL, REIN_ERR_FORMAT,
               "general.alignment 48 is not a power of two");
    expect_bad(good, n, "zero alignment", P32, l.align_val, 0, NULL, REIN_ERR_FORMAT,
               "general.alignment 0");
    expect_bad(good, n, "alignment type", P32, l.align_val - 4, REIN_GGUF_INT32, NULL,
               REIN_ERR_FORMAT, "general.alignment has type int32");
    expect_bad(good, n, "n_dims 5", P32, l.t1_ndims, 5, NULL, REIN_ERR_FORMAT,
               "tensor 'tensor.one' n_dims 5");
    expect_bad(good, n, "n_dims 0", P32, l.t1_ndims, 0, NULL, REIN_ERR_FORMAT, "n_dims 0");
    expect_bad(good, n, "zero dimension", P64, l.t1_ne1, 0, NULL, REIN_ERR_FORMAT,
               "tensor 'tensor.one' dimension 1 is 0");
    expect_bad(good, n, "dimension > int64", P64, l.t2_ne0, UINT64_MAX, NULL, REIN_ERR_FORMAT,
               "tensor 'tensor.two' dimension 0");
    { /* product overflows int64: 2^32 x 2^32 */
        uint8_t *f = malloc(n);
        memcpy(f, good, n);
        put_u64(f + l.t1_ne0, 1ULL << 32);
        put_u64(f + l.t1_ne1, 1ULL << 32);
        spit(tmp_path("prod.gguf"), f, n);
        CHECK_ERR(rein_gguf_open(tmp_path("prod.gguf"), &g), REIN_ERR_FORMAT,
                  "dimension 1 (4294967296) makes the element count overflow int64");
        /* 2^31 x 2^31 f32 elements: the element count fits int64, the byte count does not fit */
        put_u64(f + l.t1_ne0, 1ULL << 31);
        put_u64(f + l.t1_ne1, 1ULL << 31);
        put_u32(f + l.t1_type, REIN_TYPE_F32);
        spit(tmp_path("prod.gguf"), f, n);
        CHECK_ERR(rein_gguf_open(tmp_path("prod.gguf"), &g), REIN_ERR_FORMAT,
                  "tensor 'tensor.one' byte size overflows");
        /* 2^20 x 2^20: sizes fit, the data lies far beyond the file */
        put_u64(f + l.t1_ne0, 1ULL << 20);
        put_u64(f + l.t1_ne1, 1ULL << 20);
        spit(tmp_path("prod.gguf"), f, n);
        CHECK_ERR(rein_gguf_open(tmp_path("prod.gguf"), &g), REIN_ERR_FORMAT,
                  "tensor 'tensor.one' data offset 0 + 4398046511104 bytes lies beyond the end");
        free(f);
    }
    expect_bad(good, n, "row not a multiple of the block", P64, l.t1_ne0, 33, NULL, REIN_ERR_FORMAT,
               "not a multiple of the Q8_0 block size 32");
    expect_bad(good, n, "unknown tensor type", P32, l.t1_type, 99, NULL, REIN_ERR_UNSUPPORTED,
               "tensor 'tensor.one' has unknown type id 99");
    expect_bad(good, n, "offset beyond the file", P64, l.t2_off, 1u << 20, NULL, REIN_ERR_FORMAT,
               "tensor 'tensor.two' data offset 1048576");
    expect_bad(good, n, "offset overflow", P64, l.t2_off, UINT64_MAX - 31, NULL, REIN_ERR_FORMAT,
               "beyond the end");
    expect_bad(good, n, "data ends past the file", P64, l.t2_off, 128, NULL, REIN_ERR_FORMAT,
               "beyond the end");
    expect_bad(good, n, "overlap", P64, l.t2_off, 64, NULL, REIN_ERR_FORMAT,
               "tensor 'tensor.two' data [64, 96) overlaps tensor 'tensor.one' [0, 68)");
    expect_bad(good, n, "same offset", P64, l.t2_off, 0, NULL, REIN_ERR_FORMAT, "overlaps");
    expect_bad(good, n, "misaligned", P64, l.t2_off, 100, NULL, REIN_ERR_FORMAT,
               "data offset 100 is not a multiple of the alignment 32");
    expect_bad(good, n, "duplicate tensor", PBYTES, l.t2_name, 0, "tensor.one", REIN_ERR_FORMAT,
               "duplicate tensor name 'tensor.one'");
    expect_bad(good, n, "duplicate key", PBYTES, l.num_type - 7, 0, "key.str", REIN_ERR_FORMAT,
               "duplicate key");
    expect_bad(good, n, "NUL in key", P8, l.num_type - 2, 0, NULL, REIN_ERR_FORMAT,
               "key 'key.n?m' contains a NUL byte");
    expect_bad(good, n, "NUL in tensor name", P8, l.t2_name, 0, NULL, REIN_ERR_FORMAT,
               "contains a NUL byte");
    /* version 2 has the same layout: it opens */
    {
        uint8_t *f = malloc(n);
        memcpy(f, good, n);
        put_u32(f + 4, 2);
        spit(tmp_path("v2.gguf"), f, n);
        free(f);
        CHECK_OK(rein_gguf_open(tmp_path("v2.gguf"), &g));
        CHECK(g && rein_gguf_version(g) == 2 && rein_gguf_n_tensors(g) == 2);
        rein_gguf_free(g);
    }
    /* truncated at every byte: each rejected cleanly, as a format error naming the file */
    int bad = 0;
    const char *tp = tmp_path("trunc.gguf");
    for (size_t cut = 0; cut < n; cut++) {
        spit(tp, good, cut);
        g = NULL;
        rein_status st = rein_gguf_open(tp, &g);
        const char *m = rein_last_error();
        if (st != REIN_ERR_FORMAT || g != NULL || !strstr(m, tp) ||
            !(strstr(m, "truncated") || strstr(m, "cannot fit") || strstr(m, "beyond the end"))) {
            if (bad++ < 5)
                fprintf(stderr, "truncated at %zu: %s: %s\n", cut, rein_status_str(st), m);
            rein_gguf_free(g);
        }
    }
    CHECKF(bad == 0, "%d of %zu truncations not rejected as expected", bad, n);
    /* random corruption of the header: opens or fails with a message, never crashes; what opens
     * has its tensors inside the file (ASan would see a read outside the mapping) */
    rein_rng rng;
    rein_rng_seed(&rng, 42);
    size_t header_end = l.t2_off + 8;
    int n_opened = 0, n_quiet = 0;
    float *buf = malloc(64 * sizeof *buf);
    for (int it = 0; it < 3000; it++) {
        uint8_t *f = malloc(n);
        memcpy(f, good, n);
        int flips = 1 + (int)(rein_rng_u64(&rng) % 4);
        for (int k = 0; k < flips; k++)
            f[rein_rng_u64(&rng) % header_end] = (uint8_t)rein_rng_u64(&rng);
        spit(tp, f, n);
        free(f);
        g = NULL;
        rein_status st = rein_gguf_open(tp, &g);
        if (st == REIN_OK) {
            n_opened++;
            for (int64_t i = 0; i < rein_gguf_n_tensors(g); i++) {
                const rein_gguf_tensor *t = rein_gguf_tensor_at(g, i);
                if (t->n_elements <= 64) rein_gguf_tensor_f32(t, buf);
            }
            rein_gguf_free(g);
        } else if (!strstr(rein_last_error(), tp)) {
            n_quiet++;
        }
    }
    free(buf);
    CHECKF(n_quiet == 0, "%d corrupted files failed without naming the file", n_quiet);
    printf("hostile files: %zu truncations rejected; 3000 corruptions, %d still valid\n", n,
           n_opened);
    spit(tp, good, 10);
    CHECK_ERR(rein_gguf_open(tp, &g), REIN_ERR_FORMAT, "offset 8: tensor_count needs 8 bytes");
    CHECK_ERR(rein_gguf_open(tmp_path("does-not-exist.gguf"), &g), REIN_ERR_IO, "cannot open");
    CHECK_ERR(rein_gguf_open(test_tmpdir(), &g), REIN_ERR_IO, "not a regular file");
    rein_free(good);
}

/* ---- 4. allocation failures --------------------------------------------------------------- */

/* Build and write a small file through the writer (every step may fail). */
static rein_status write_small(const char *path) {
    rein_gguf_writer *w;
    REIN_TRY(rein_gguf_writer_new(&w));
    const char *strs[3] = {"a", "bb", "ccc"};
    float x[32] = {1, 2, 3};
    int64_t shape[1] = {32};
    rein_status st = rein_gguf_set_str(w, "k.s", "v");
    if (!st) st = rein_gguf_set_u32(w, "k.u", 1);
    if (!st) st = rein_gguf_set_u32(w, "k.u", 2);
    if (!st) st = rein_gguf_set_arr_str(w, "k.a", strs, NULL, 3);
    if (!st) st = rein_gguf_add_tensor(w, "t.q", REIN_TYPE_Q4_1, 1, shape, x);
    if (!st) st = rein_gguf_add_tensor_raw(w, "t.f", REIN_TYPE_F32, 1, shape, x, sizeof x);
    if (!st) st = rein_gguf_writer_write(w, path);
    rein_gguf_writer_free(w);
    return st;
}

static void test_alloc_failures(void) {
    const char *path = tmp_path("alloc.gguf");
    int i, ok = 0;
    for (i = 1; i < 200 && !ok; i++) {
        test_alloc_install(i);
        rein_status st = write_small(path);
        if (st == REIN_OK)
            ok = 1;
        else
            CHECK_ERR(st, REIN_ERR_NOMEM, "");
    }
    CHECKF(ok, "writing never succeeded");
    int write_allocs = i - 1;
    ok = 0;
    for (i = 1; i < 200 && !ok; i++) {
        test_alloc_install(i);
        rein_gguf *g = (rein_gguf *)&g;
        rein_status st = rein_gguf_open(FIXTURE, &g);
        if (st == REIN_OK) {
            ok = 1;
            rein_gguf_free(g);
        } else {
            CHECK_ERR(st, REIN_ERR_NOMEM, "out of memory");
            CHECK(g == NULL);
        }
    }
    CHECKF(ok, "opening never succeeded");
    test_alloc_uninstall();
    printf("allocation failures: writer survived %d, reader %d failure points\n", write_allocs - 1,
           i - 2);
    /* what the writer wrote after all those failures is a good file */
    rein_gguf *g;
    CHECK_OK(rein_gguf_open(path, &g));
    CHECK(g && rein_gguf_n_kv(g) == 3 && rein_gguf_n_tensors(g) == 2);
    rein_gguf_free(g);
    /* and no temporary file was left behind */
    DIR *d = opendir(test_tmpdir());
    struct dirent *e;
    int tmp_left = 0;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) tmp_left++;
    if (d) closedir(d);
    CHECKF(tmp_left == 0, "%d temporary files left", tmp_left);
}

/* ---- 5. real files ------------------------------------------------------------------------ */

static void test_tokenizer_vocabs(void) {
    const char *data = test_shared_data();
    if (!data) {
        printf("SKIP part: ../shared/data absent: tokenizer vocabularies not checked\n");
        return;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tokenizer-vectors", data);
    DIR *d = opendir(dir);
    if (!d) {
        printf("SKIP part: %s absent\n", dir);
        return;
    }
    int n_files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".gguf")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rein_gguf *g;
        rein_status st = rein_gguf_open(path, &g);
        CHECK_OK(st);
        if (st) continue;
        n_files++;
        rein_gguf_value_type t;
        int64_t n, n_types;
        const void *types;
        CHECK_OK(rein_gguf_get_arr(g, "tokenizer.ggml.tokens", &t, &n, NULL));
        CHECKF(t == REIN_GGUF_STRING && n > 1000, "%s: %lld tokens", path, (long long)n);
        size_t total = 0;
        int64_t failed = 0;
        for (int64_t i = 0; i < n; i++) {
            const char *s;
            size_t len = 0;
            failed += rein_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len) != REIN_OK;
            total += len;
        }
        CHECKF(failed == 0 && total > 0, "%s: %lld tokens unreadable", path, (long long)failed);
        if (rein_gguf_find_kv(g, "tokenizer.ggml.token_type") >= 0) {
            CHECK_OK(rein_gguf_get_arr(g, "tokenizer.ggml.token_type", &t, &n_types, &types));
            CHECK(t == REIN_GGUF_INT32 && n_types == n);
        }
        if (rein_gguf_find_kv(g, "tokenizer.ggml.merges") >= 0) {
            int64_t nm;
            const char *s;
            size_t len;
            CHECK_OK(rein_gguf_get_arr(g, "tokenizer.ggml.merges", &t, &nm, NULL));
            CHECK(t == REIN_GGUF_STRING && nm > 0);
            CHECK_OK(rein_gguf_get_arr_str(g, "tokenizer.ggml.merges", nm - 1, &s, &len));
            CHECK(memchr(s, ' ', len) != NULL);
        }
        rein_gguf_free(g);
    }
    closedir(d);
    CHECKF(n_files >= 7, "only %d vocabularies opened", n_files);
    printf("tokenizer vocabularies: %d opened, every token read\n", n_files);
}

static void test_default_model_file(void) {
    const char *path = test_default_model();
    if (!path) {
        printf("SKIP part: default model absent (run `make model`)\n");
        return;
    }
    rein_gguf *g;
    rein_status st = rein_gguf_open(path, &g);
    CHECK_OK(st);
    if (st) return;
    CHECK(rein_gguf_version(g) == 3 && rein_gguf_n_tensors(g) == 272);
    const char *s;
    size_t len;
    uint32_t u;
    float f;
    CHECK_OK(rein_gguf_get_str(g, "general.architecture", &s, &len));
    CHECK(len == 5 && !memcmp(s, "llama", 5));
    CHECK_OK(rein_gguf_get_u32(g, "llama.block_count", &u));
    CHECK(u == 30);
    CHECK_OK(rein_gguf_get_f32(g, "llama.rope.freq_base", &f));
    CHECK(f > 0);
    const rein_gguf_tensor *t = rein_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == REIN_TYPE_Q8_0 && t->n_dims == 2 && t->shape[0] == 49152 &&
          t->shape[1] == 576);
    rein_gguf_free(g);
}

int main(void) {
    test_round_trip();
    test_foreign_file();
    test_hostile();
    test_alloc_failures();
    test_tokenizer_vocabs();
    test_default_model_file();
    return test_finish();
}
