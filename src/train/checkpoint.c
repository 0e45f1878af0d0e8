/* checkpoint.c - saving and loading training checkpoints, atomically and checksummed. */
#include "train/checkpoint.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define CKPT_MAGIC "REINCKPT"
#define CKPT_VERSION 1u

uint64_t rein_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t rein_param_layout_hash(const rein_param_list *pl) {
    uint64_t h = REIN_FNV_INIT;
    for (int i = 0; i < pl->n; i++) {
        h = rein_fnv1a(h, pl->spans[i].name, strlen(pl->spans[i].name) + 1);
        h = rein_fnv1a(h, &pl->spans[i].n, sizeof pl->spans[i].n);
    }
    return h;
}

/* Header fields, serialised one by one so the layout does not depend on struct padding. */
static void put(rein_buf *b, const void *p, size_t n) {
    rein_buf_append(b, p, n);
}

static rein_status header_bytes(const rein_ckpt_state *s, rein_buf *b) {
    put(b, s->kind, sizeof s->kind);
    put(b, &s->step, 8);
    put(b, &s->epoch, 8);
    put(b, &s->micro, 8);
    put(b, &s->bad_streak, 8);
    put(b, &s->n_skipped, 8);
    put(b, s->rng.s, sizeof s->rng.s);
    put(b, &s->layout_hash, 8);
    put(b, &s->data_hash, 8);
    put(b, s->config, sizeof s->config);
    return b->data ? REIN_OK : REIN_ERR_NOMEM;
}

/* Write with the checksum running; a short write is an error. */
static rein_status wr(FILE *f, uint64_t *h, const void *p, size_t n, const char *path) {
    *h = rein_fnv1a(*h, p, n);
    if (n && fwrite(p, 1, n, f) != n)
        return rein_error(REIN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return REIN_OK;
}

static rein_status write_array(FILE *f, uint64_t *h, const float *p, int64_t n, const char *path) {
    const int64_t chunk = 1 << 20;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t k = REIN_MIN(chunk, n - i);
        REIN_TRY(wr(f, h, p + i, sizeof(float) * (size_t)k, path));
    }
    return REIN_OK;
}

rein_status rein_ckpt_save(const char *path, const rein_ckpt_state *s, const rein_param_list *pl,
                           const rein_adamw *opt) {
    REIN_ASSERT(opt->n == pl->total);
    rein_buf hb = {0};
    REIN_TRY(header_bytes(s, &hb));
    rein_atomic_file af;
    rein_status st = rein_atomic_open(&af, path);
    if (st) {
        rein_buf_free(&hb);
        return st;
    }
    uint64_t h = REIN_FNV_INIT;
    uint32_t ver = CKPT_VERSION, hl = (uint32_t)hb.len;
    int64_t n = pl->total;
    st = wr(af.fp, &h, CKPT_MAGIC, 8, path);
    if (!st) st = wr(af.fp, &h, &ver, 4, path);
    if (!st) st = wr(af.fp, &h, &hl, 4, path);
    if (!st) st = wr(af.fp, &h, hb.data, hb.len, path);
    if (!st) st = wr(af.fp, &h, &n, 8, path);
    for (int i = 0; i < pl->n && !st; i++) st = write_array(af.fp, &h, pl->spans[i].w, pl->spans[i].n, path);
    /* tests of crash safety kill the process here, halfway through the file */
    const char *kill_env = getenv("REIN_TEST_KILL_IN_SAVE");
    if (!st && kill_env && atoll(kill_env) == s->step) {
        fflush(af.fp);
        raise(SIGKILL);
    }
    if (!st) st = write_array(af.fp, &h, opt->m, n, path);
    if (!st) st = write_array(af.fp, &h, opt->v, n, path);
    if (!st) st = wr(af.fp, &h, &opt->step, 8, path);
    uint64_t sum = h;
    if (!st) st = wr(af.fp, &h, &sum, 8, path);
    rein_buf_free(&hb);
    if (st) {
        rein_atomic_abort(&af);
        return st;
    }
    return rein_atomic_commit(&af);
}

typedef struct rd {
    const unsigned char *p;
    size_t n, off;
    uint64_t h;
    const char *path;
} rd;

static rein_status get(rd *r, void *out, size_t n, const char *what) {
    if (n > r->n - r->off)
        return rein_error(REIN_ERR_FORMAT, "%s: truncated at byte %zu reading %s (%zu bytes left)",
                          r->path, r->off, what, r->n - r->off);
    memcpy(out, r->p + r->off, n);
    r->h = rein_fnv1a(r->h, r->p + r->off, n);
    r->off += n;
    return REIN_OK;
}

rein_status rein_ckpt_load(const char *path, const rein_ckpt_state *want, rein_ckpt_state *s,
                           const rein_param_list *pl, rein_adamw *opt) {
    rein_buf file = {0};
    REIN_TRY(rein_read_file(path, &file));
    rd r = {(const unsigned char *)file.data, file.len, 0, REIN_FNV_INIT, path};
    rein_status st = REIN_OK;
    char magic[8];
    uint32_t ver = 0, hl = 0;
    int64_t n = 0;
    memset(s, 0, sizeof *s);
    /* the checksum first: a torn or corrupted file is reported as such, not as a field error */
    if (file.len < 8 + 4 + 4 + 8 + 8) {
        st = rein_error(REIN_ERR_FORMAT, "%s: %zu bytes is too short for a checkpoint", path, file.len);
        goto done;
    }
    uint64_t stored;
    memcpy(&stored, file.data + file.len - 8, 8);
    if (rein_fnv1a(REIN_FNV_INIT, file.data, file.len - 8) != stored) {
        st = rein_error(REIN_ERR_FORMAT, "%s: checksum mismatch: the checkpoint is corrupt or "
                        "incomplete", path);
        goto done;
    }
    if ((st = get(&r, magic, 8, "magic"))) goto done;
    if (memcmp(magic, CKPT_MAGIC, 8)) {
        st = rein_error(REIN_ERR_FORMAT, "%s: not a rein checkpoint (bad magic)", path);
        goto done;
    }
    if ((st = get(&r, &ver, 4, "version")) || (st = get(&r, &hl, 4, "header length"))) goto done;
    if (ver != CKPT_VERSION) {
        st = rein_error(REIN_ERR_UNSUPPORTED, "%s: checkpoint version %u, this rein reads %u", path,
                        ver, CKPT_VERSION);
        goto done;
    }
    size_t expect_hl = sizeof s->kind + 5 * 8 + sizeof s->rng.s + 2 * 8 + sizeof s->config;
    if (hl != expect_hl) {
        st = rein_error(REIN_ERR_FORMAT, "%s: header of %u bytes, expected %zu", path, hl, expect_hl);
        goto done;
    }
    if ((st = get(&r, s->kind, sizeof s->kind, "kind")) || (st = get(&r, &s->step, 8, "step")) ||
        (st = get(&r, &s->epoch, 8, "epoch")) || (st = get(&r, &s->micro, 8, "micro")) ||
        (st = get(&r, &s->bad_streak, 8, "bad_streak")) ||
        (st = get(&r, &s->n_skipped, 8, "n_skipped")) ||
        (st = get(&r, s->rng.s, sizeof s->rng.s, "rng")) ||
        (st = get(&r, &s->layout_hash, 8, "layout_hash")) ||
        (st = get(&r, &s->data_hash, 8, "data_hash")) ||
        (st = get(&r, s->config, sizeof s->config, "config")) || (st = get(&r, &n, 8, "n_params")))
        goto done;
    s->kind[sizeof s->kind - 1] = 0;
    s->config[sizeof s->config - 1] = 0;
    if (strcmp(s->kind, want->kind)) {
        st = rein_error(REIN_ERR_INVALID, "%s: a '%s' checkpoint cannot resume a '%s' run", path,
                        s->kind, want->kind);
        goto done;
    }
    if (n != pl->total || s->layout_hash != rein_param_layout_hash(pl)) {
        st = rein_error(REIN_ERR_INVALID, "%s: the checkpoint trains %lld parameters in another "
                        "layout than this run (%lld): another model, adapter rank or targets?",
                        path, (long long)n, (long long)pl->total);
        goto done;
    }
    if (strcmp(s->config, want->config)) {
        st = rein_error(REIN_ERR_INVALID, "%s: the run's settings differ from the checkpoint's:\n"
                        "  checkpoint: %s\n  this run:   %s", path, s->config, want->config);
        goto done;
    }
    if (s->data_hash != want->data_hash) {
        st = rein_error(REIN_ERR_INVALID, "%s: the training data differs from the data the "
                        "checkpoint was trained on", path);
        goto done;
    }
    if (file.len - r.off != 3 * sizeof(float) * (size_t)n + 16) {
        st = rein_error(REIN_ERR_FORMAT, "%s: %zu bytes of data, expected %zu", path,
                        file.len - r.off, 3 * sizeof(float) * (size_t)n + 16);
        goto done;
    }
    for (int i = 0; i < pl->n && !st; i++)
        st = get(&r, pl->spans[i].w, sizeof(float) * (size_t)pl->spans[i].n, "weights");
    if (!st) st = get(&r, opt->m, sizeof(float) * (size_t)n, "first moments");
    if (!st) st = get(&r, opt->v, sizeof(float) * (size_t)n, "second moments");
    if (!st) st = get(&r, &opt->step, 8, "optimizer step");
done:
    rein_buf_free(&file);
    return st;
}
