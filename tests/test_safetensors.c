/* test_safetensors.c - the safetensors reader and writer: a file from the python reference read
 * exactly, rein's writer matching the reference's bytes, round trips in every dtype, and hostile
 * files (each rejected with a message that names the field). */
#include "base/base.h"
#include "formats/safetensors.h"
#include "kernels/quant.h"
#include "testutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE "tests/fixtures/safetensors/python.safetensors"

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

/* A file with header length `n_decl`, the header text, then `n_data` bytes of data. */
static const char *write_raw(const char *name, uint64_t n_decl, const char *hdr, size_t n_data) {
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(n_decl >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(hdr, 1, strlen(hdr), f);
    for (size_t i = 0; i < n_data; i++) fputc((int)i, f);
    fclose(f);
    return path;
}

static const char *write_hdr(const char *name, const char *hdr, size_t n_data) {
    return write_raw(name, strlen(hdr), hdr, n_data);
}

static void check_bad(const char *hdr, size_t n_data, rein_status want, const char *needle) {
    rein_safetensors *st = (rein_safetensors *)1;
    test_check_err(rein_safetensors_open(write_hdr("bad.safetensors", hdr, n_data), &st), want,
                   needle, hdr, __FILE__, __LINE__);
    CHECK(st == NULL);
}

static void test_python_file(void) {
    rein_safetensors *st;
    CHECK_OK(rein_safetensors_open(FIXTURE, &st));
    if (!st) return;
    CHECK(rein_safetensors_n_tensors(st) == 5);
    CHECK(rein_safetensors_n_meta(st) == 1);
    const char *fmt = rein_safetensors_get_meta(st, "format");
    CHECK(fmt && !strcmp(fmt, "pt"));
    CHECK(rein_safetensors_get_meta(st, "nope") == NULL);
    float v[16];
    const rein_safetensors_tensor *a = rein_safetensors_find(st, "a");
    CHECK(a && !strcmp(a->dtype, "F32") && a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 3);
    if (a) {
        CHECK_OK(rein_safetensors_tensor_f32(a, v));
        for (int i = 0; i < 6; i++) CHECKF(v[i] == 0.25f * i - 1, "a[%d] = %g", i, v[i]);
    }
    const rein_safetensors_tensor *s = rein_safetensors_find(st, "s");
    CHECK(s && s->n_dims == 0 && s->n_elements == 1);
    if (s) {
        CHECK_OK(rein_safetensors_tensor_f32(s, v));
        CHECK(v[0] == 3.5f);
    }
    const rein_safetensors_tensor *z = rein_safetensors_find(st, "z");
    CHECK(z && z->n_elements == 0 && z->n_bytes == 0 && z->shape[0] == 0 && z->shape[1] == 4);
    const rein_safetensors_tensor *b = rein_safetensors_find(st, "b");
    CHECK(b && !strcmp(b->dtype, "BF16") && b->n_elements == 5);
    if (b) {
        CHECK_OK(rein_safetensors_tensor_f32(b, v));
        for (int i = 0; i < 5; i++) CHECKF(v[i] == -2 + 0.5f * i, "b[%d] = %g", i, v[i]);
    }
    const rein_safetensors_tensor *c = rein_safetensors_find(st, "c");
    CHECK(c && !strcmp(c->dtype, "F16") && c->n_dims == 3 && c->shape[2] == 2);
    if (c) {
        CHECK_OK(rein_safetensors_tensor_f32(c, v));
        for (int i = 0; i < 12; i++) CHECKF(v[i] == (i - 6) / 8.0f, "c[%d] = %g", i, v[i]);
    }
    rein_safetensors_free(st);

    /* the same tensors through rein's writer, in the reference's order: the same bytes */
    float av[6], bv[5], cv[12], sv = 3.5f;
    for (int i = 0; i < 6; i++) av[i] = 0.25f * i - 1;
    for (int i = 0; i < 5; i++) bv[i] = -2 + 0.5f * i;
    for (int i = 0; i < 12; i++) cv[i] = (i - 6) / 8.0f;
    rein_safetensors_writer *w;
    CHECK_OK(rein_safetensors_writer_new(&w));
    CHECK_OK(rein_safetensors_set_meta(w, "format", "pt"));
    CHECK_OK(rein_safetensors_add(w, "a", REIN_TYPE_F32, 2, (int64_t[]){2, 3}, av));
    CHECK_OK(rein_safetensors_add(w, "s", REIN_TYPE_F32, 0, NULL, &sv));
    CHECK_OK(rein_safetensors_add(w, "z", REIN_TYPE_F32, 2, (int64_t[]){0, 4}, NULL));
    CHECK_OK(rein_safetensors_add(w, "b", REIN_TYPE_BF16, 1, (int64_t[]){5}, bv));
    CHECK_OK(rein_safetensors_add(w, "c", REIN_TYPE_F16, 3, (int64_t[]){3, 2, 2}, cv));
    const char *out = tmp_path("rein.safetensors");
    CHECK_OK(rein_safetensors_write(w, out));
    rein_safetensors_writer_free(w);
    rein_buf x = {0}, y = {0};
    CHECK_OK(rein_read_file(FIXTURE, &x));
    CHECK_OK(rein_read_file(out, &y));
    CHECKF(x.len == y.len && !memcmp(x.data, y.data, x.len),
           "rein's file (%zu bytes) differs from python's (%zu bytes)", y.len, x.len);
    rein_buf_free(&x);
    rein_buf_free(&y);
}

static void test_round_trip(void) {
    enum { R = 7, C = 13 };
    float src[R * C];
    for (int i = 0; i < R * C; i++) src[i] = (float)(i * 0.37 - 11.1) * (i % 3 ? 1 : -1e-3f);
    src[5] = 65504.0f;
    src[6] = -1e-7f;
    rein_safetensors_writer *w;
    CHECK_OK(rein_safetensors_writer_new(&w));
    CHECK_OK(rein_safetensors_set_meta(w, "note", "quote \" backslash \\ newline \n tab \t \x01 é"));
    CHECK_OK(rein_safetensors_set_meta(w, "k2", "first"));
    CHECK_OK(rein_safetensors_set_meta(w, "k2", "second"));
    const rein_type types[3] = {REIN_TYPE_BF16, REIN_TYPE_F32, REIN_TYPE_F16};
    const char *names[3] = {"model.layers.0.w \"odd\" name", "f32", "half"};
    for (int k = 0; k < 3; k++)
        CHECK_OK(rein_safetensors_add(w, names[k], types[k], 2, (int64_t[]){R, C}, src));
    CHECK_ERR(rein_safetensors_add(w, "f32", REIN_TYPE_F32, 1, (int64_t[]){1}, src),
              REIN_ERR_INVALID, "added twice");
    CHECK_ERR(rein_safetensors_add(w, "q", REIN_TYPE_Q8_0, 1, (int64_t[]){32}, src),
              REIN_ERR_UNSUPPORTED, "Q8_0");
    const char *path = tmp_path("rt.safetensors");
    CHECK_OK(rein_safetensors_write(w, path));
    rein_safetensors_writer_free(w);

    rein_safetensors *st;
    CHECK_OK(rein_safetensors_open(path, &st));
    if (!st) return;
    CHECK(rein_safetensors_n_tensors(st) == 3);
    CHECK(rein_safetensors_n_meta(st) == 2);
    const char *note = rein_safetensors_get_meta(st, "note");
    CHECK(note && !strcmp(note, "quote \" backslash \\ newline \n tab \t \x01 é"));
    const char *k2 = rein_safetensors_get_meta(st, "k2");
    CHECK(k2 && !strcmp(k2, "second"));
    /* tensors come back in the order of their data, which is the order they were added */
    float got[R * C];
    for (int k = 0; k < 3; k++) {
        const rein_safetensors_tensor *t = rein_safetensors_tensor_at(st, k);
        CHECK(t && !strcmp(t->name, names[k]) && t->shape[0] == R && t->shape[1] == C);
        if (!t) continue;
        CHECK(t->offset % 8 == 0 || k > 0); /* the header is padded to 8 */
        CHECK_OK(rein_safetensors_tensor_f32(t, got));
        int bad = 0;
        for (int i = 0; i < R * C; i++) {
            float want = types[k] == REIN_TYPE_F32   ? src[i]
                         : types[k] == REIN_TYPE_F16 ? rein_fp16_to_fp32(rein_fp32_to_fp16(src[i]))
                                                     : rein_bf16_to_fp32(rein_fp32_to_bf16(src[i]));
            bad += memcmp(&want, &got[i], 4) != 0;
        }
        CHECKF(bad == 0, "%s: %d values differ", names[k], bad);
    }
    rein_safetensors_free(st);
    /* an empty file list is a valid file */
    CHECK_OK(rein_safetensors_writer_new(&w));
    CHECK_OK(rein_safetensors_write(w, path));
    rein_safetensors_writer_free(w);
    CHECK_OK(rein_safetensors_open(path, &st));
    CHECK(st && rein_safetensors_n_tensors(st) == 0);
    rein_safetensors_free(st);
}

static void test_hostile(void) {
    rein_safetensors *st = NULL;
    CHECK_ERR(rein_safetensors_open(tmp_path("does-not-exist"), &st), REIN_ERR_IO, "cannot open");
    FILE *f = fopen(tmp_path("short"), "wb");
    fwrite("\x02\0\0", 1, 3, f);
    fclose(f);
    CHECK_ERR(rein_safetensors_open(tmp_path("short"), &st), REIN_ERR_FORMAT, "8-byte header");
    /* a header length far beyond the file */
    CHECK_ERR(rein_safetensors_open(write_raw("huge", UINT64_MAX / 2, "{}", 0), &st),
              REIN_ERR_FORMAT, "header length");
    CHECK_ERR(rein_safetensors_open(write_raw("huge2", 3, "{}", 0), &st), REIN_ERR_FORMAT,
              "header length 3 exceeds");
    /* a header length beyond the reference's 100 MB cap, in a (sparse) file that is long enough */
    const char *big = write_raw("big", 150000000, "{}", 0);
    int fd = open(big, O_WRONLY);
    CHECK(fd >= 0 && ftruncate(fd, 160000000) == 0);
    close(fd);
    CHECK_ERR(rein_safetensors_open(big, &st), REIN_ERR_FORMAT, "limit");
    unlink(big);

    check_bad("{\"a\":{", 0, REIN_ERR_FORMAT, "not valid JSON");
    check_bad("[1, 2]", 0, REIN_ERR_FORMAT, "JSON object");
    check_bad("{}  x", 0, REIN_ERR_FORMAT, "after the JSON header");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 20,
              REIN_ERR_FORMAT, "'a': field 'data_offsets': [0, 24] outside the 20 bytes");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 28,
              REIN_ERR_FORMAT, "cover 24 bytes of data, the file has 28");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
              REIN_ERR_FORMAT, "'a': field 'data_offsets': [0, 20] holds 20 bytes; dtype F32");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
              24, REIN_ERR_FORMAT, "'b': field 'data_offsets': begins at 8, expected 16 (it overlaps");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
              24, REIN_ERR_FORMAT, "'b': field 'data_offsets': begins at 16, expected 8 (a gap");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
              REIN_ERR_FORMAT, "ends before it begins");
    check_bad("{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,32]}}", 32,
              REIN_ERR_UNSUPPORTED, "'a': field 'dtype': unknown dtype 'F128'");
    check_bad("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, REIN_ERR_FORMAT,
              "field 'dtype'");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
              REIN_ERR_FORMAT, "'shape'[1]");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
              REIN_ERR_FORMAT, "'shape'[0]");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
              "\"data_offsets\":[0,8]}}", 8, REIN_ERR_FORMAT, "overflows");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, REIN_ERR_FORMAT,
              "[begin, end]");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8,
              REIN_ERR_FORMAT, "data_offsets");
    check_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              16, REIN_ERR_FORMAT, "'a' appears twice");
    check_bad("{\"__metadata__\":{\"x\":1}}", 0, REIN_ERR_FORMAT, "'__metadata__.x'");
    check_bad("{\"a\":[1]}", 0, REIN_ERR_FORMAT, "tensor 'a': expected an object");
    /* an I64 tensor is read (for its shape) but not converted */
    const char *p = write_hdr("i64", "{\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
    CHECK_OK(rein_safetensors_open(p, &st));
    if (st) {
        float v[2];
        CHECK_ERR(rein_safetensors_tensor_f32(rein_safetensors_find(st, "i"), v),
                  REIN_ERR_UNSUPPORTED, "I64");
        rein_safetensors_free(st);
    }
}

int main(void) {
    test_python_file();
    test_round_trip();
    test_hostile();
    return test_finish();
}
