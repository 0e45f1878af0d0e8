/* test_pref_resume.c - `rein rm` and `rein dpo` end to end on a tiny model: exact resume after
 * kill -9 and after a kill inside a checkpoint save (LoRA and full, both trainers), the reward
 * model saved with its head and loaded back (rein_rm_load, `rm score`, `rm eval`, `rein export
 * --adapter`), rankings with ties and margins, and bad data reported with file and line.
 *
 * "Exact" means the loss of every step, printed with 9 significant digits, is the same string in a
 * run that went straight through and in one that was killed and resumed. For DPO the reference
 * log-probabilities are recomputed on resume from the model as loaded (before the checkpoint), so
 * this also shows the cache is the same in both.
 */
#include "base/base.h"
#include "testutil.h"
#include "train/reward.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static const char *bin;
static const char *model = "tests/fixtures/model/tiny_f32.gguf";
static char data[256], ranking[256];

/* `rein <cmd> -m model --plain <args>` with env before it; stdout and stderr into out. */
static int run(const char *env, const char *cmd, const char *args, rein_buf *out) {
    char line[4096];
    snprintf(line, sizeof line, "%s %s %s -m %s --plain %s", env ? env : "", bin, cmd, model, args);
    return test_run(line, 1, out);
}


static void write_data(void) {
    snprintf(data, sizeof data, "%s/pref.jsonl", test_tmpdir());
    FILE *f = fopen(data, "w");
    const char *q[] = {"hello there", "what is up", "tell me a joke", "name a colour",
                       "say something", "how are you", "count to three", "pick a fruit"};
    const char *good[] = {"hi", "not much", "a cat sat", "red", "something", "fine thanks",
                          "one two three", "an apple"};
    const char *bad[] = {"go away", "no", "bad joke here", "none", "nothing at all", "awful",
                         "four five", "a rock"};
    for (int i = 0; i < 24; i++)
        fprintf(f, "{\"prompt\":[{\"role\":\"user\",\"content\":\"%s %d\"}],"
                   "\"chosen\":[{\"role\":\"assistant\",\"content\":\"%s\"}],"
                   "\"rejected\":[{\"role\":\"assistant\",\"content\":\"%s\"}]}\n",
                q[i % 8], i, good[i % 8], bad[(i * 3) % 8]);
    fclose(f);
    snprintf(ranking, sizeof ranking, "%s/ranking.jsonl", test_tmpdir());
    f = fopen(ranking, "w");
    for (int i = 0; i < 6; i++)
        fprintf(f, "{\"prompt\":\"%s: \",\"responses\":[\"%s\",\"%s\",\"maybe\",\"meh\"],"
                   "\"ranking\":[0,[2,3],1],\"margin\":0.5}\n",
                q[i], good[i], bad[i]);
    fclose(f);
}

static void resume_case(const char *cmd, const char *name, const char *mode) {
    char a[256], b[256], c[256], args[1024];
    rein_buf out = {0};
    snprintf(a, sizeof a, "%s/%s-straight-%s", test_tmpdir(), cmd, name);
    snprintf(b, sizeof b, "%s/%s-killed-%s", test_tmpdir(), cmd, name);
    snprintf(c, sizeof c, "%s/%s-killed-in-save-%s", test_tmpdir(), cmd, name);
    const char *sub = !strcmp(cmd, "rm") ? "rm train" : "dpo";
    int failures = test_failures;
    const char *common = "--max-steps 14 --epochs 3 --batch-tokens 128 --max-len 64 --save-every 4 "
                         "--lr 5e-3 --warmup 2";
    snprintf(args, sizeof args, "--data %s --out %s %s %s", data, a, common, mode);
    CHECKF(run(NULL, sub, args, &out) == 0, "%s", out.data);

    /* kill -9 after step 10: the checkpoint of step 8 is the one to resume from */
    snprintf(args, sizeof args, "--data %s --out %s %s %s", data, b, common, mode);
    int rc = run("REIN_TEST_KILL_AFTER_STEP=10", sub, args, &out);
    CHECKF(rc == 128 + 9, "expected SIGKILL, got %d: %s", rc, out.data);
    snprintf(args, sizeof args, "--data %s --out %s %s %s --resume", data, b, common, mode);
    CHECKF(run(NULL, sub, args, &out) == 0, "%s", out.data);
    CHECKF(strstr(out.data, "resuming") && strstr(out.data, "from step 8"), "%s", out.data);
    CHECKF(test_same_losses(a, b, 14), "%s %s: 14 steps straight vs 10 + kill -9 + resume differ", cmd,
           mode);

    /* killed while writing the step-8 checkpoint: the one before it survives */
    snprintf(args, sizeof args, "--data %s --out %s %s %s", data, c, common, mode);
    rc = run("REIN_TEST_KILL_IN_SAVE=8", sub, args, &out);
    CHECKF(rc == 128 + 9, "expected SIGKILL during the save, got %d", rc);
    snprintf(args, sizeof args, "--data %s --out %s %s %s --resume", data, c, common, mode);
    CHECKF(run(NULL, sub, args, &out) == 0, "%s", out.data);
    CHECKF(strstr(out.data, "resuming") && !strstr(out.data, "from step 8"), "%s", out.data);
    CHECKF(test_same_losses(a, c, 14), "%s %s: a kill during a save changed the losses", cmd, mode);
    if (test_failures == failures)
        printf("%s %s: 14 steps straight == killed after step 10 + resume == killed inside the "
               "step-8 save + resume (losses identical to the last digit)\n", cmd, mode);
    rein_buf_free(&out);
}

/* The metrics lines carry the objective's fields. */
static void check_metrics(const char *dir, const char *const *fields, int n) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    rein_buf b = {0};
    CHECK_OK(rein_read_file(path, &b));
    for (int i = 0; i < n; i++) CHECKF(b.data && strstr(b.data, fields[i]), "%s lacks %s", path, fields[i]);
    rein_buf_free(&b);
}

static void reward_model_use(void) {
    char dir[256], cmd[2048], args[1024];
    rein_buf out = {0};
    snprintf(dir, sizeof dir, "%s/rm-straight-lora", test_tmpdir());
    static const char *const rm_fields[] = {"\"acc\":", "\"margin\":"};
    check_metrics(dir, rm_fields, 2);
    snprintf(cmd, sizeof cmd, "%s rm eval --rm %s --data %s", bin, dir, data);
    CHECKF(test_run(cmd, 1, &out) == 0 && strstr(out.data, "pairwise accuracy") &&
           strstr(out.data, "within 7 tokens") && strstr(out.data, "24 pairs"), "%s", out.data);
    double acc = -1;
    const char *p = strstr(out.data, "pairwise accuracy");
    if (p) sscanf(p, "pairwise accuracy %lf", &acc);
    printf("rm (LoRA, 14 steps): pairwise accuracy on its training pairs %.3f\n", acc);
    CHECK(acc > 0.6);
    snprintf(cmd, sizeof cmd, "%s rm score --rm %s --data %s", bin, dir, data);
    CHECK(test_run(cmd, 0, &out) == 0);
    int lines = 0;
    double c0 = NAN, r0 = NAN;
    for (char *s = out.data; s && (s = strstr(s, "{\"line\":")); s++) {
        if (!lines) sscanf(s, "{\"line\":1,\"chosen\":%lf,\"rejected\":%lf}", &c0, &r0);
        lines++;
    }
    CHECKF(lines == 24 && isfinite(c0) && isfinite(r0), "%s", out.data);

    /* the library: load the folder and score one sequence, as PPO will */
    rein_reward_model *rm;
    CHECK_OK(rein_rm_load(dir, NULL, &rm));
    if (rm) {
        float mean = NAN, sd = NAN, r[2] = {NAN, NAN};
        rein_rm_norm(rm, &mean, &sd);
        CHECK(isfinite(mean) && sd > 0);
        int32_t toks[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, cu[3] = {0, 5, 12};
        CHECK_OK(rein_rm_score(rm, toks, cu, 2, r));
        float r1;
        int32_t cu1[2] = {0, 7};
        CHECK_OK(rein_rm_score(rm, toks + 5, cu1, 1, &r1));
        CHECKF(isfinite(r[0]) && fabsf(r[1] - r1) < 1e-5, "%g %g", r[1], r1); /* packing-proof */
        rein_rm_free(rm);
    }
    CHECK_ERR(rein_rm_load(test_tmpdir(), NULL, &rm), REIN_ERR_IO, "not a reward model folder");
    /* exportable like any model: the adapter merged into a GGUF */
    snprintf(cmd, sizeof cmd, "%s export -m %s --adapter %s/adapter --out %s/rm-merged.gguf",
             bin, model, dir, test_tmpdir());
    CHECKF(test_run(cmd, 1, &out) == 0, "%s", out.data);

    /* full fine-tuning saves model.gguf; rankings: ties give no pair, margins are read */
    snprintf(dir, sizeof dir, "%s/rm-ranking", test_tmpdir());
    snprintf(args, sizeof args, "--data %s --out %s --batch-tokens 256 --max-len 64 --full "
             "--center 0.01", ranking, dir);
    CHECKF(run(NULL, "rm train", args, &out) == 0 &&
           strstr(out.data, "6 prompts, 30 pairs (6 tied pairs left out)") &&
           strstr(out.data, "6 records give a margin"), "%s", out.data);
    snprintf(cmd, sizeof cmd, "%s rm score --rm %s --data %s", bin, dir, ranking);
    CHECKF(test_run(cmd, 1, &out) == 0 && strstr(out.data, "{\"line\":6,\"rewards\":["), "%s", out.data);
    snprintf(cmd, sizeof cmd, "%s/model.gguf", dir);
    CHECK(access(cmd, R_OK) == 0);
    snprintf(cmd, sizeof cmd, "%s rm eval --rm %s --data %s --json", bin, dir, ranking);
    CHECKF(test_run(cmd, 1, &out) == 0 && strstr(out.data, "\"pairs\":30,\"data_ties\":6"), "%s", out.data);
    rein_buf_free(&out);
}

static void dpo_metrics(void) {
    char dir[256];
    static const char *const fields[] = {"\"acc\":", "\"reward_chosen\":", "\"reward_rejected\":",
                                         "\"margin\":", "\"kl\":"};
    snprintf(dir, sizeof dir, "%s/dpo-straight-lora", test_tmpdir());
    check_metrics(dir, fields, 5);
    snprintf(dir, sizeof dir, "%s/dpo-straight-lora/adapter/adapter_model.safetensors",
             test_tmpdir());
    CHECK(access(dir, R_OK) == 0);
    /* `dpo eval` of the trained adapter against its base */
    rein_buf out = {0};
    char args[1024], cmd[2048];
    snprintf(cmd, sizeof cmd, "%s dpo eval -m %s --adapter %s/dpo-straight-lora/adapter --data %s",
             bin, model, test_tmpdir(), data);
    CHECKF(test_run(cmd, 1, &out) == 0 && strstr(out.data, "\"pairs\":24,") &&
               strstr(out.data, "\"acc\":"),
           "%s", out.data);
    /* the other losses and an evaluation set run too */
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--data %s --eval %s --out %s/dpo-%s --max-steps 3 "
                 "--batch-tokens 128 --max-len 64 --lora-rank 4 --loss %s", data, data,
                 test_tmpdir(), i ? "hinge" : "ipo", i ? "hinge" : "ipo");
        CHECKF(run(NULL, "dpo", args, &out) == 0 && strstr(out.data, "eval_acc"), "%s", out.data);
    }
    snprintf(args, sizeof args, "--data %s --out %s/dpo-x --loss ipo --label-smoothing 0.1", data,
             test_tmpdir());
    CHECK(run(NULL, "dpo", args, &out) == 2 && strstr(out.data, "sigmoid loss only"));
    rein_buf_free(&out);
}

/* Bad comparisons: every problem listed as FILE:LINE, nothing trained, by both commands. */
static void bad_data(void) {
    char bad[256], args[1024];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", test_tmpdir());
    FILE *f = fopen(bad, "w");
    fputs("{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
          "{\"prompt\":\"q\",\"chosen\":\"same\",\"rejected\":\"same\"}\n"
          "{\"prompt\":\"q\",\"chosen\":\"\",\"rejected\":\"b\"}\n"
          "{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],"
          "\"chosen\":[{\"role\":\"user\",\"content\":\"other\"},{\"role\":\"assistant\",\"content\":\"a\"}],"
          "\"rejected\":[{\"role\":\"assistant\",\"content\":\"b\"}]}\n", f);
    fclose(f);
    char badr[256];
    snprintf(badr, sizeof badr, "%s/bad-ranking.jsonl", test_tmpdir());
    f = fopen(badr, "w");
    fputs("{\"prompt\":\"q\",\"responses\":[\"a\",\"b\",\"c\"],\"ranking\":[0,1,1]}\n", f);
    fclose(f);
    rein_buf out = {0};
    const char *cmds[] = {"rm train", "dpo"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--data %s --out %s/badrun%d", bad, test_tmpdir(), i);
        int rc = run(NULL, cmds[i], args, &out);
        CHECKF(rc == 1 && strstr(out.data, "bad.jsonl:2") && strstr(out.data, "bad.jsonl:3") &&
               strstr(out.data, "bad.jsonl:4") && !strstr(out.data, "bad.jsonl:1:"),
               "%s: %s", cmds[i], out.data);
        if (i == 0) printf("bad data, as rein rm train reports it:\n%s", out.data);
        snprintf(args, sizeof args, "--data %s --out %s/badrank%d", badr, test_tmpdir(), i);
        rc = run(NULL, cmds[i], args, &out);
        CHECKF(rc == 1 && strstr(out.data, "bad-ranking.jsonl:1") && strstr(out.data, "ranking"),
               "%s: %s", cmds[i], out.data);
    }
    rein_buf_free(&out);
}

int main(void) {
    bin = getenv("REIN_BIN") ? getenv("REIN_BIN") : "build/rein";
    if (access(bin, X_OK) != 0) test_skip("the rein program is not built (make rein)");
    write_data();
    resume_case("rm", "lora", "--lora-rank 4");
    resume_case("rm", "full", "--full");
    resume_case("dpo", "lora", "--lora-rank 4");
    resume_case("dpo", "full", "--full");
    reward_model_use();
    dpo_metrics();
    bad_data();
    return test_finish();
}
