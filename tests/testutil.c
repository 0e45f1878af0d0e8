/* testutil.c - the harness behind testutil.h. */
#include "testutil.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int test_failures;
int test_checks;

void test_check_err(rein_status got, rein_status want, const char *needle, const char *expr,
                    const char *file, int line) {
    test_checks++;
    const char *msg = rein_last_error();
    if (got != want) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s -> %s (want %s): %s\n", file, line, expr, rein_status_str(got),
                rein_status_str(want), msg);
    } else if (needle && !strstr(msg, needle)) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s: message lacks \"%s\": %s\n", file, line, expr, needle, msg);
    }
}

static char tmpdir_path[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* The temporary directory goes when the test passes; a failing test keeps it for inspection. */
int test_finish(void) {
    printf("%d checks, %d failed\n", test_checks, test_failures);
    if (tmpdir_path[0] && !test_failures)
        nftw(tmpdir_path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_failures ? 1 : 0;
}

void test_skip(const char *why) {
    printf("SKIP: %s\n", why);
    fflush(stdout);
    exit(77);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *test_shared_data(void) {
    const char *e = getenv("REIN_SHARED_DATA");
    if (e && is_dir(e)) return e;
    return is_dir("../shared/data") ? "../shared/data" : NULL;
}

const char *test_default_model(void) {
    const char *e = getenv("REIN_MODEL");
    const char *p = e ? e : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    return access(p, R_OK) == 0 ? p : NULL;
}

const char *test_tmpdir(void) {
    if (!tmpdir_path[0]) {
        strcpy(tmpdir_path, "/tmp/rein-test-XXXXXX");
        if (!mkdtemp(tmpdir_path)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmpdir_path;
}

static long alloc_fail_at, alloc_count, alloc_live;

static void *failing_realloc(void *ud, void *p, size_t size) {
    (void)ud;
    if (size == 0) {
        if (p) alloc_live--;
        free(p);
        return NULL;
    }
    if (++alloc_count == alloc_fail_at) return NULL;
    void *q = realloc(p, size);
    if (q && !p) alloc_live++;
    return q;
}

void test_alloc_install(long fail_at) {
    alloc_fail_at = fail_at;
    alloc_count = alloc_live = 0;
    rein_set_allocator(failing_realloc, NULL);
}

void test_alloc_uninstall(void) {
    rein_set_allocator(NULL, NULL);
}

long test_alloc_count(void) {
    return alloc_count;
}

long test_alloc_live(void) {
    return alloc_live;
}

int test_run(const char *cmd, int merge_stderr, rein_buf *out) {
    char *full = malloc(strlen(cmd) + 16);
    if (!full) return -1;
    sprintf(full, "%s%s", cmd, merge_stderr ? " 2>&1" : " 2>/dev/null");
    FILE *f = popen(full, "r");
    free(full);
    if (!f) return -1;
    rein_buf_clear(out);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) rein_buf_append(out, chunk, n);
    rein_buf_append(out, "", 0);
    int st = pclose(f);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The loss string of each step in dir/metrics.jsonl; returns the highest step found. */
static int metrics_losses(const char *dir, char out[][32], int max) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    rein_buf b = {0};
    if (rein_read_file(path, &b) != REIN_OK) return 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int step;
        char *l = strstr(line, "\"loss\":");
        if (!l || sscanf(line, "{\"step\":%d", &step) != 1 || step < 1 || step > max) continue;
        sscanf(l + 7, "%31[^,}]", out[step - 1]);
        if (step > n) n = step;
    }
    rein_buf_free(&b);
    return n;
}

int test_same_losses(const char *a, const char *b, int steps) {
    char la[256][32], lb[256][32];
    memset(la, 0, sizeof la);
    memset(lb, 0, sizeof lb);
    int na = metrics_losses(a, la, 256), nb = metrics_losses(b, lb, 256);
    CHECKF(na == steps && nb == steps, "%s has %d steps, %s has %d, expected %d", a, na, b, nb, steps);
    int same = na == steps && nb == steps;
    for (int i = 0; i < steps && i < 256; i++)
        if (strcmp(la[i], lb[i])) {
            fprintf(stderr, "step %d: %s vs %s\n", i + 1, la[i], lb[i]);
            same = 0;
        }
    return same;
}

float *test_randn(rein_rng *rng, int64_t n, float std) {
    float *x = rein_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; x && i < n; i++) x[i] = rein_rng_normal(rng) * std;
    return x;
}

double *test_to_double(const float *x, int64_t n) {
    double *d = rein_malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; d && i < n; i++) d[i] = x[i];
    return d;
}
