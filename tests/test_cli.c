/* test_cli.c - the `rein` program end to end, as a user runs it.
 *
 * Greedy output of the default model for fixed prompts must equal what HF transformers generates
 * (tests/fixtures/cli/NAME.txt, written by tools/gen_cli_fixture.py), through `rein generate` and
 * through a scripted `rein chat`; `rein tokenize` must give llama.cpp's ids; bad invocations must
 * fail with a message and the right exit status. The program is $REIN_BIN (default build/rein).
 */
#include "base/base.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static const char *bin;

static char *fixture(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/cli/%s.txt", name);
    rein_buf b = {0};
    if (rein_read_file(path, &b) != REIN_OK) {
        fprintf(stderr, "%s\n", rein_last_error());
        return NULL;
    }
    return b.data;
}

int main(void) {
    bin = getenv("REIN_BIN") ? getenv("REIN_BIN") : "build/rein";
    if (access(bin, X_OK) != 0) test_skip("the rein program is not built (make rein)");
    rein_buf out = {0};
    char cmd[2048];

    /* help and usage errors need no model */
    snprintf(cmd, sizeof cmd, "%s --help", bin);
    CHECK(test_run(cmd, 0, &out) == 0 && strstr(out.data, "generate") && strstr(out.data, "tokenize"));
    const char *cmds[] = {"info", "tokenize", "generate", "chat", "sft", "export", "rm", "dpo",
                          "ppo", "grpo", "align", "selfinstruct", "redteam"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        /* every command has a help page and is listed in the program's */
        CHECKF(strstr(out.data, cmds[i]) != NULL, "rein --help does not list %s", cmds[i]);
        rein_buf page = {0};
        snprintf(cmd, sizeof cmd, "%s %s --help", bin, cmds[i]);
        CHECKF(test_run(cmd, 0, &page) == 0 && strstr(page.data, "Usage: rein"), "%s --help", cmds[i]);
        rein_buf_free(&page);
    }
    snprintf(cmd, sizeof cmd, "%s frobnicate", bin);
    CHECK(test_run(cmd, 1, &out) == 2 && strstr(out.data, "unknown command 'frobnicate'"));
    snprintf(cmd, sizeof cmd, "%s generate -m /nonexistent.gguf -p hi", bin);
    CHECK(test_run(cmd, 1, &out) == 1 && strstr(out.data, "/nonexistent.gguf"));
    snprintf(cmd, sizeof cmd, "%s generate -m /dev/null --temp hot -p hi", bin);
    CHECK(test_run(cmd, 1, &out) == 2 && strstr(out.data, "--temp expects a number"));
    snprintf(cmd, sizeof cmd, "%s generate -m /dev/null", bin);
    CHECK(test_run(cmd, 1, &out) == 2 && strstr(out.data, "prompt is required"));
    snprintf(cmd, sizeof cmd, "%s info /etc/hostname", bin);
    CHECK(test_run(cmd, 1, &out) == 1 && strstr(out.data, "/etc/hostname"));

    const char *model = test_default_model();
    if (!model) {
        printf("SKIP (rest): default model not downloaded (make model)\n");
        return test_finish();
    }

    snprintf(cmd, sizeof cmd, "%s info -m %s 2>&1 || %s info %s", bin, model, bin, model);
    CHECK(test_run(cmd, 0, &out) == 0);
    CHECK(strstr(out.data, "llama") && strstr(out.data, "Q4_1") && strstr(out.data, "smollm") &&
          strstr(out.data, "30 layers") && strstr(out.data, "chatml"));

    /* ids from llama.cpp's tokenizer (llama-cpp-python, vocab_only) for the same strings */
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s 'Hello world! 12345 café 🦙'", bin, model);
    CHECK(test_run(cmd, 0, &out) == 0);
    CHECKF(!strcmp(out.data, "19556 905 17 216 33 34 35 36 37 37366 15107 116 243\n"), "got %s",
           out.data);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --special '<|im_start|>user'", bin, model);
    CHECK(test_run(cmd, 0, &out) == 0 && !strcmp(out.data, "1 4093\n"));
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --json 'Hi'", bin, model);
    CHECK(test_run(cmd, 0, &out) == 0 && strstr(out.data, "\"piece\": \"Hi\""));

    /* greedy generation equals transformers' */
    char *want = fixture("raw_fox");
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'The quick brown fox' -n 32 --temp 0", bin,
             model);
    CHECK(test_run(cmd, 0, &out) == 0);
    CHECKF(want && out.len == strlen(want) + 1 && !strncmp(out.data, want, strlen(want)),
           "\n got: %s\nwant: %s", out.data, want ? want : "?");
    free(want);
    want = fixture("chat_capital");
    snprintf(cmd, sizeof cmd,
             "%s generate -m %s --chat -p 'What is the capital of France?' -n 48 --temp 0", bin,
             model);
    CHECK(test_run(cmd, 0, &out) == 0);
    CHECKF(want && !strncmp(out.data, want, strlen(want)) &&
               !strcmp(out.data + strlen(want), "\n"),
           "\n got: %s\nwant: %s", out.data, want ? want : "?");

    /* --int8-decode runs (llama.cpp's arithmetic: its greedy text may part from the exact one) */
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'The quick brown fox' -n 8 --temp 0 --int8-decode",
             bin, model);
    CHECK(test_run(cmd, 1, &out) == 0 && out.len > 8);

    /* the same question as the first turn of a scripted chat; a second turn follows on from the
     * cached conversation */
    snprintf(cmd, sizeof cmd,
             "printf 'What is the capital of France?\\nAnd of Italy?\\n' | %s chat -m %s --temp 0 "
             "-n 48",
             bin, model);
    CHECK(test_run(cmd, 0, &out) == 0);
    CHECKF(want && !strncmp(out.data, want, strlen(want)) && out.data[strlen(want)] == '\n' &&
               strlen(out.data) > strlen(want) + 2,
           "\n got: %s\nwant first line: %s", out.data, want ? want : "?");
    printf("chat transcript:\n%s", out.data);
    free(want);

    /* same seed, same text; sampling flags are honoured */
    rein_buf out2 = {0};
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'Once upon a time' -n 24 --seed 5", bin, model);
    CHECK(test_run(cmd, 0, &out) == 0 && test_run(cmd, 0, &out2) == 0 && !strcmp(out.data, out2.data));
    /* a stop string ends the text before it */
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'The quick brown fox' -n 32 --temp 0 --stop bear",
             bin, model);
    CHECK(test_run(cmd, 0, &out) == 0 && !strcmp(out.data, " with a quick brown \n"));
    rein_buf_free(&out);
    rein_buf_free(&out2);
    return test_finish();
}
