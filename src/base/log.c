/* log.c - levelled logging to stderr (REIN_LOG=error|warn|info|debug sets the level). */
#include "base/base.h"

#include <stdarg.h>
#include <string.h>

static int level = -1;

void rein_log_set_level(int l) {
    level = l;
}

static int current_level(void) {
    if (level < 0) {
        const char *e = getenv("REIN_LOG");
        level = REIN_LOG_WARN;
        if (e) {
            if (!strcmp(e, "error")) level = REIN_LOG_ERROR;
            else if (!strcmp(e, "info")) level = REIN_LOG_INFO;
            else if (!strcmp(e, "debug")) level = REIN_LOG_DEBUG;
        }
    }
    return level;
}

void rein_log(int l, const char *fmt, ...) {
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (l > current_level()) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rein: %s: ", names[l]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
