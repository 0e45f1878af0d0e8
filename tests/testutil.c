/* testutil.c - the harness behind testutil.h. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int test_finish(void) {
    printf("%d checks, %d failed\n", test_checks, test_failures);
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
    static char dir[64];
    if (!dir[0]) {
        strcpy(dir, "/tmp/rein-test-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return dir;
}
