/* error.c - per-thread error messages and the status names.
 *
 * A failing function sets a message with rein_error() and returns the status; callers add context
 * with rein_error_wrap() on the way up, so the final message reads like
 * "loading m.gguf: tensor 'blk.0.attn_q.weight' (offset 1234): data beyond end of file".
 */
#include "base/base.h"

#include <stdarg.h>
#include <string.h>

#define REIN_ERRMSG_CAP 1024

static _Thread_local char errmsg[REIN_ERRMSG_CAP];

const char *rein_status_str(rein_status s) {
    switch (s) {
    case REIN_OK: return "ok";
    case REIN_ERR_INVALID: return "invalid argument";
    case REIN_ERR_IO: return "I/O error";
    case REIN_ERR_FORMAT: return "format error";
    case REIN_ERR_UNSUPPORTED: return "unsupported";
    case REIN_ERR_NOMEM: return "out of memory";
    case REIN_ERR_RANGE: return "out of range";
    case REIN_ERR_NUMERIC: return "numeric error";
    }
    return "unknown status";
}

const char *rein_last_error(void) {
    return errmsg;
}

rein_status rein_error(rein_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return s;
}

rein_status rein_error_wrap(rein_status s, const char *fmt, ...) {
    char prefix[REIN_ERRMSG_CAP];
    char old[REIN_ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    size_t pl = strlen(prefix);
    memcpy(errmsg, prefix, pl + 1);
    /* the message is cut at the buffer's end rather than overflowing it */
    snprintf(errmsg + pl, sizeof errmsg - pl, "%.*s", (int)(sizeof errmsg - pl - 1), old);
    return s;
}

void rein_assert_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "rein: internal error at %s:%d: assertion failed: %s\n", file, line, what);
    abort();
}
