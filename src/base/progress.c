/* progress.c - a one-line progress bar on a terminal, plain log lines elsewhere. */
#include "base/base.h"

#include <string.h>
#include <unistd.h>

void rein_progress_init(rein_progress *p, const char *label, int64_t total, int force_plain) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->tty = !force_plain && isatty(2);
    p->start = rein_time_now();
    p->last_print = 0;
}

static void fmt_time(char *out, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(out, n, "?");
    else if (s < 60) snprintf(out, n, "%.0fs", s);
    else if (s < 3600) snprintf(out, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

void rein_progress_update(rein_progress *p, int64_t done, const char *info) {
    double now = rein_time_now(), el = now - p->start;
    int last = done >= p->total;
    if (!p->tty && !last && now - p->last_print < p->plain_every_s) return;
    if (p->tty && !last && now - p->last_print < 0.1) return;
    p->last_print = now;
    double frac = p->total > 0 ? (double)done / p->total : 0;
    char eta[32], elapsed[32];
    fmt_time(eta, sizeof eta, frac > 0 ? el / frac - el : -1);
    fmt_time(elapsed, sizeof elapsed, el);
    if (p->tty) {
        char bar[26];
        int w = (int)(frac * 24 + 0.5);
        for (int i = 0; i < 24; i++) bar[i] = i < w ? '=' : (i == w ? '>' : ' ');
        bar[24] = 0;
        fprintf(stderr, "\r%s %lld/%lld [%s] %s | %s | ETA %s\033[K", p->label, (long long)done,
                (long long)p->total, bar, info ? info : "", elapsed, eta);
        if (last) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %lld/%lld %s | elapsed %s | ETA %s\n", p->label, (long long)done,
                (long long)p->total, info ? info : "", elapsed, eta);
    }
    fflush(stderr);
}
