/* files.c - whole-file reads and atomic writes (temporary file, fsync, rename). */
#include "base/base.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

rein_status rein_read_file(const char *path, rein_buf *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return rein_error(REIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char chunk[65536];
    size_t n;
    rein_status st = REIN_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        st = rein_buf_append(out, chunk, n);
        if (st) break;
    }
    if (!st && ferror(f)) st = rein_error(REIN_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (!st && !out->data) st = rein_buf_append(out, "", 0);
    fclose(f);
    return st;
}

rein_status rein_atomic_open(rein_atomic_file *af, const char *path) {
    af->fp = NULL;
    af->path = rein_strdup(path);
    af->tmp = rein_malloc(strlen(path) + 32);
    if (!af->path || !af->tmp) {
        rein_free(af->path);
        rein_free(af->tmp);
        return REIN_ERR_NOMEM;
    }
    sprintf(af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        rein_status st = rein_error(REIN_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
        rein_free(af->path);
        rein_free(af->tmp);
        af->path = af->tmp = NULL;
        return st;
    }
    return REIN_OK;
}

rein_status rein_atomic_commit(rein_atomic_file *af) {
    rein_status st = REIN_OK;
    if (fflush(af->fp) != 0 || ferror(af->fp))
        st = rein_error(REIN_ERR_IO, "%s: write error: %s", af->tmp, strerror(errno));
    else if (fsync(fileno(af->fp)) != 0)
        st = rein_error(REIN_ERR_IO, "%s: fsync: %s", af->tmp, strerror(errno));
    if (fclose(af->fp) != 0 && !st)
        st = rein_error(REIN_ERR_IO, "%s: close: %s", af->tmp, strerror(errno));
    af->fp = NULL;
    if (!st && rename(af->tmp, af->path) != 0)
        st = rein_error(REIN_ERR_IO, "%s: cannot rename to %s: %s", af->tmp, af->path,
                        strerror(errno));
    if (st) remove(af->tmp);
    rein_free(af->path);
    rein_free(af->tmp);
    af->path = af->tmp = NULL;
    return st;
}

void rein_atomic_abort(rein_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp) remove(af->tmp);
    rein_free(af->path);
    rein_free(af->tmp);
    af->fp = NULL;
    af->path = af->tmp = NULL;
}
