/* test_sft_resume.c - `rein sft` end to end on a tiny model: exact resume after kill -9 (LoRA and
 * full fine-tuning), a kill in the middle of writing a checkpoint, NaN steps skipped and counted,
 * a run stopped by too many of them, corrupt and mismatched checkpoints, bad data.
 *
 * "Exact" means the loss of every step, printed with 9 significant digits, is the same string in
 * a run that went straight through and in one that was killed and resumed.
 */
#include "base/base.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static const char *bin;
static const char *model = "tests/fixtures/model/tiny_f32.gguf";
static char data[256];

static int run(const char *env, const char *args, rein_buf *out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s sft -m %s --data %s --plain %s", env ? env : "", bin, model,
             data, args);
    return test_run(cmd, 1, out);
}


static void write_data(void) {
    snprintf(data, sizeof data, "%s/data.jsonl", test_tmpdir());
    FILE *f = fopen(data, "w");
    const char *q[] = {"hello there", "what is up", "tell me a joke", "name a colour",
                       "say something", "how are you", "count to three", "pick a fruit"};
    const char *a[] = {"hi", "not much", "a cat sat", "red", "something", "fine thanks",
                       "one two three", "an apple"};
    for (int i = 0; i < 24; i++)
        fprintf(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s %d\"},"
                   "{\"role\":\"assistant\",\"content\":\"%s\"}]}\n",
                q[i % 8], i, a[(i * 3) % 8]);
    fclose(f);
}

static void resume_case(const char *name, const char *mode) {
    char a[256], b[256], c[256], args[1024];
    rein_buf out = {0};
    snprintf(a, sizeof a, "%s/straight-%s", test_tmpdir(), name);
    snprintf(b, sizeof b, "%s/killed-%s", test_tmpdir(), name);
    snprintf(c, sizeof c, "%s/killed-in-save-%s", test_tmpdir(), name);
    int failures = test_failures;
    const char *common = "--max-steps 20 --epochs 3 --batch-tokens 128 --max-len 64 --save-every 5 "
                         "--lr 5e-3 --warmup 2";
    snprintf(args, sizeof args, "--out %s %s %s", a, common, mode);
    CHECKF(run(NULL, args, &out) == 0, "%s", out.data);

    /* kill -9 after step 12: the checkpoint of step 10 is the one to resume from */
    snprintf(args, sizeof args, "--out %s %s %s", b, common, mode);
    int rc = run("REIN_TEST_KILL_AFTER_STEP=12", args, &out);
    CHECKF(rc == 128 + 9, "expected SIGKILL, got %d: %s", rc, out.data);
    snprintf(args, sizeof args, "--out %s %s %s --resume", b, common, mode);
    CHECKF(run(NULL, args, &out) == 0, "%s", out.data);
    CHECK(strstr(out.data, "resuming") && strstr(out.data, "from step 10"));
    CHECKF(test_same_losses(a, b, 20), "%s: 20 steps straight vs 12 + kill -9 + resume differ", mode);

    /* killed while writing the step-10 checkpoint: the previous one (step 8, the end of the
     * first epoch) survives and the run goes on */
    snprintf(args, sizeof args, "--out %s %s %s", c, common, mode);
    rc = run("REIN_TEST_KILL_IN_SAVE=10", args, &out);
    CHECKF(rc == 128 + 9, "expected SIGKILL during the save, got %d", rc);
    snprintf(args, sizeof args, "--out %s %s %s --resume", c, common, mode);
    CHECKF(run(NULL, args, &out) == 0, "%s", out.data);
    CHECK(strstr(out.data, "from step 8")); /* the end of epoch 1 was saved too */
    CHECKF(test_same_losses(a, c, 20), "%s: a kill during a save changed the losses", mode);
    if (test_failures == failures)
        printf("%s: 20 steps straight == killed after step 12 + resume == killed inside the step-10 "
           "save + resume (losses identical to the last digit)\n", mode);
    rein_buf_free(&out);
}

int main(void) {
    bin = getenv("REIN_BIN") ? getenv("REIN_BIN") : "build/rein";
    if (access(bin, X_OK) != 0) test_skip("the rein program is not built (make rein)");
    write_data();
    resume_case("lora", "--lora-rank 4");
    resume_case("full", "--full");

    rein_buf out = {0};
    char dir[256], args[1024];
    /* an existing run is never overwritten without --resume */
    snprintf(args, sizeof args, "--out %s/straight-full --max-steps 20 --full", test_tmpdir());
    CHECK(run(NULL, args, &out) == 1 && strstr(out.data, "already holds a run"));
    /* resuming with other settings is refused, naming the difference */
    snprintf(args, sizeof args,
             "--out %s/straight-full --max-steps 20 --epochs 3 --batch-tokens 128 --max-len 64 "
             "--save-every 5 --lr 1e-3 --warmup 2 --full --resume", test_tmpdir());
    CHECK(run(NULL, args, &out) == 1 && strstr(out.data, "settings differ"));
    /* a corrupt checkpoint is refused */
    char ck[512];
    snprintf(ck, sizeof ck, "%s/straight-lora/checkpoint.bin", test_tmpdir());
    FILE *f = fopen(ck, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 200, SEEK_SET);
        fputc(0x5a, f);
        fclose(f);
    }
    snprintf(args, sizeof args,
             "--out %s/straight-lora --max-steps 20 --epochs 3 --batch-tokens 128 --max-len 64 "
             "--save-every 5 --lr 5e-3 --warmup 2 --lora-rank 4 --resume", test_tmpdir());
    CHECK(run(NULL, args, &out) == 1 && strstr(out.data, "checksum mismatch"));

    /* non-finite steps: skipped and counted; too many in a row stop the run, nothing poisoned */
    snprintf(dir, sizeof dir, "%s/nan", test_tmpdir());
    snprintf(args, sizeof args, "--out %s --max-steps 8 --batch-tokens 48 --max-len 48 --lora-rank 4",
             dir);
    CHECKF(run("REIN_TEST_NAN_STEPS=3,4", args, &out) == 0, "%s", out.data);
    CHECK(strstr(out.data, "8 steps, 2 skipped"));
    snprintf(dir, sizeof dir, "%s/nan-stop", test_tmpdir());
    snprintf(args, sizeof args,
             "--out %s --max-steps 20 --batch-tokens 48 --max-len 48 --lora-rank 4 --save-every 2",
             dir);
    CHECK(run("REIN_TEST_NAN_STEPS=5,6,7,8,9,10", args, &out) == 1 &&
          strstr(out.data, "5 steps in a row had a non-finite"));
    snprintf(args, sizeof args,
             "--out %s --max-steps 20 --batch-tokens 48 --max-len 48 --lora-rank 4 --save-every 2 "
             "--resume", dir);
    CHECKF(run(NULL, args, &out) == 0 && strstr(out.data, "from step 4"), "%s", out.data);

    /* bad data: every problem listed with file and line, nothing trained */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", test_tmpdir());
    f = fopen(bad, "w");
    fputs("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n"
          "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}\n"
          "not json\n", f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s sft -m %s --data %s --out %s/badrun", bin, model, bad,
             test_tmpdir());
    int rc = test_run(cmd, 1, &out);
    CHECKF(rc == 1 && strstr(out.data, "bad.jsonl:2") && strstr(out.data, "bad.jsonl:3"), "%s",
           out.data);
    rein_buf_free(&out);
    return test_finish();
}
